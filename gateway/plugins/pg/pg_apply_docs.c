/* pg_apply_docs.c - which document (or order) stated each row, and its retraction.
 *
 * A record the gateway made from a document (an XML input: C-CDA) carries the document's id in
 * its cg.document header. The sink keeps, per such row, the document that stated its current
 * version (cg_row_doc: table, row id as records carry it, document id), written with the batch.
 * A document that replaces another sends a cohortgate.document_retraction record first: in its
 * place in the stream, every row of that person whose current version the replaced document
 * stated is deleted, then the replacing document's rows follow (README, "retract").
 *
 * An order's results carry "order:" and the order's id there instead (meta order_id; the
 * gateway's jobs.c), and an order cancel (cohortgate.order_retraction) retracts them alike.
 * Only those rows are kept: other messages' rows cost nothing. Row ids of documents and
 * of messages never meet in the shipped specs (ids derive from each spec's own identities), so a
 * message's upsert of a row a document stated does not take it out of cg_row_doc.
 */
#include "pg_int.h"

#include "cg_log.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

int pg_apply_doc(pg_apply_t *a, size_t table, const char *const *values, const size_t *lens,
                 const char *doc, int del, const char *time, size_t time_len)
{
    const stage_t *s = &a->stages[table];
    cg_buf_t *b = &a->docs;
    /* names and ids need no COPY escaping: a table name, digits (checked when parsed) */
    cg_buf_puts(b, pg_table_at(table)->name);
    cg_buf_putc(b, '\t');
    cg_buf_append(b, values[s->key_col], lens[s->key_col]);
    cg_buf_putc(b, '\t');
    pg_copy_value(b, doc, strlen(doc));
    cg_buf_printf(b, "\t%" PRId64 "\t%c\t", a->seq, del ? 't' : 'f');
    pg_copy_value(b, time, time_len);
    /* its person, for cg_doc_retracted (the person table's rows are never left out) */
    long pk = s->person_col;
    cg_buf_putc(b, '\t');
    if (pk >= 0 && pk != (long)s->key_col && values[pk] && lens[pk])
        cg_buf_append(b, values[pk], lens[pk]);
    else
        cg_buf_append(b, "\\N", 2);
    cg_buf_putc(b, '\n');
    if (b->failed)
        return -1;
    a->n_docs++;
    return 0;
}

static int cmp_seq(const void *x, const void *y)
{
    int64_t a = *(const int64_t *)x, b = *(const int64_t *)y;
    return (a > b) - (a < b);
}

/* Takes the records seqs[0..n) (sorted) out of the tables' stages: rows of documents a
 * retraction replaced, which came after it. Counted as unchanged: nothing of theirs applies. */
static void unstage(pg_apply_t *a, const int64_t *seqs, size_t n)
{
    for (size_t i = 0; i < a->n_stages; i++) {
        stage_t *s = &a->stages[i];
        if (!s->n)
            continue;
        const char *p = s->copy.data, *end = p + s->copy.len;
        size_t w = 0;
        while (p < end) {
            const char *nl = memchr(p, '\n', (size_t)(end - p));
            size_t len = nl ? (size_t)(nl - p) + 1 : (size_t)(end - p);
            int64_t seq = strtoll(p, NULL, 10); /* the line's first field, cg_seq */
            if (!bsearch(&seq, seqs, n, sizeof(*seqs), cmp_seq)) {
                memmove(s->copy.data + w, p, len);
                w += len;
                p += len;
                continue;
            }
            /* seq, op, topic, part, off, audit line, time: its counts go with it */
            const char *f[7];
            f[0] = p;
            for (int k = 1; k < 7; k++) {
                const char *tab = memchr(f[k - 1], '\t', (size_t)(p + len - f[k - 1]));
                f[k] = tab ? tab + 1 : p + len;
            }
            s->n--;
            s->n_del -= f[1][0] == 'd';
            s->timed -= !(f[6][0] == '\\' && f[6][1] == 'N');
            if (f[5][0] != '\\') {
                long line = strtol(f[5], NULL, 10);
                if (line >= 0 && (size_t)line < a->n_audit)
                    a->audit[line].rows--;
            }
            a->pending--;
            a->st.unchanged++;
            p += len;
        }
        s->copy.len = w;
    }
}

/* A statement built once: b's text into *slot (NUL-ended), or -1 (out of memory, b freed). */
static int keep_sql(cg_buf_t *b, char **slot, char *errstr, size_t errstr_size)
{
    cg_buf_putc(b, '\0');
    *slot = b->failed ? NULL : b->data;
    if (*slot)
        return 0;
    cg_buf_free(b);
    snprintf(errstr, errstr_size, "out of memory");
    return -1;
}

/* The staged documents' rows whose document a retraction replaced for their person
 * (cg_doc_retracted): out of cg_stg_docs and out of the tables' stages, before anything of
 * theirs applies. A replaced version that comes after its replacement (a replay, the records
 * and a cohort's topic read in no common order) then brings back nothing it dropped. */
static int drop_retracted(pg_apply_t *a, PGconn *c, char *errstr, size_t errstr_size)
{
    if (!a->retracted_sql) {
        cg_buf_t b;
        cg_buf_init(&b);
        cg_buf_puts(&b, "WITH x AS (DELETE FROM pg_temp.cg_stg_docs s WHERE s.person IS NOT NULL "
                        "AND EXISTS (SELECT 1 FROM ");
        pg_qual(&b, a->conf->schema, "cg_doc_retracted");
        cg_buf_puts(&b, " r WHERE r.doc = s.doc AND r.person_id = s.person) RETURNING s.seq) "
                        "SELECT seq FROM x ORDER BY seq");
        if (keep_sql(&b, &a->retracted_sql, errstr, errstr_size))
            return -1;
    }
    PGresult *r = PQexec(c, a->retracted_sql);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        pg_message(r, c, errstr, errstr_size);
        PQclear(r);
        return -1;
    }
    size_t n = (size_t)PQntuples(r);
    int64_t *seqs = n ? malloc(n * sizeof(*seqs)) : NULL;
    if (n && !seqs) {
        PQclear(r);
        snprintf(errstr, errstr_size, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        seqs[i] = strtoll(PQgetvalue(r, (int)i, 0), NULL, 10);
    PQclear(r);
    if (n) { /* in order (the query's ORDER BY), for unstage's bsearch */
        unstage(a, seqs, n);
        cg_log(CG_LOG_INFO, "pg.retracted_rows",
               "%zu record(s) of replaced documents left out: they came after the retraction", n);
    }
    free(seqs);
    return 0;
}

int pg_apply_docs_flush(pg_apply_t *a, PGconn *c, char *errstr, size_t errstr_size)
{
    if (!a->n_docs)
        return 0;
    if (!a->docs_sql) {
        /* per row, its record of the batch that holds (the newest by source time, then the
         * last), unless stale, as the tables' statements decide (pg_apply_sql.c): a delete
         * forgets the row, an upsert names its document */
        const char *sc = a->conf->schema;
        cg_buf_t b;
        cg_buf_init(&b);
        cg_buf_puts(&b, "WITH l0 AS (SELECT DISTINCT ON (table_name, row_id) table_name, row_id, "
                        "doc, del, t FROM pg_temp.cg_stg_docs ORDER BY table_name, row_id, t DESC "
                        "NULLS LAST, seq DESC), l AS (SELECT * FROM l0 WHERE true");
        pg_not_stale(&b, a->conf, "l0.row_id", "l0.t");
        cg_buf_puts(&b, "), gone AS (DELETE FROM ");
        pg_qual(&b, sc, "cg_row_doc");
        cg_buf_puts(&b, " x USING l WHERE l.del AND x.table_name = l.table_name AND x.row_id = "
                        "l.row_id) INSERT INTO ");
        pg_qual(&b, sc, "cg_row_doc");
        cg_buf_puts(&b, " (table_name, row_id, doc) SELECT table_name, row_id, doc FROM l WHERE "
                        "NOT del ON CONFLICT (table_name, row_id) DO UPDATE SET doc = "
                        "EXCLUDED.doc WHERE ");
        pg_qual(&b, sc, "cg_row_doc");
        cg_buf_puts(&b, ".doc IS DISTINCT FROM EXCLUDED.doc");
        if (keep_sql(&b, &a->docs_sql, errstr, errstr_size))
            return -1;
    }
    int rc =
        pg_copy_in(c, "COPY pg_temp.cg_stg_docs FROM STDIN", &a->docs, NULL, errstr, errstr_size);
    if (!rc)
        rc = drop_retracted(a, c, errstr, errstr_size);
    if (!rc)
        rc = pg_exec(c, a->docs_sql, errstr, errstr_size);
    if (!rc)
        rc = pg_exec(c, "TRUNCATE pg_temp.cg_stg_docs", errstr, errstr_size);
    cg_buf_reset(&a->docs);
    a->n_docs = 0;
    return rc;
}

/* Runs one statement with the retraction's parameters ($1 person, $2 document); its row count
 * into *n when n is not NULL. */
static int run(PGconn *c, const char *sql, const char *const *params, long long *n, char *errstr,
               size_t errstr_size)
{
    static const Oid types[2] = {20, 25}; /* int8, text: typed, so a statement may leave one out */
    PGresult *r = PQexecParams(c, sql, 2, types, params, NULL, NULL, 0);
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    if (!ok)
        pg_message(r, c, errstr, errstr_size);
    else if (n)
        *n = strtoll(PQcmdTuples(r), NULL, 10);
    PQclear(r);
    return ok ? 0 : -1;
}

int pg_apply_retract(pg_apply_t *a, PGconn *c, const char *person, const char *doc, int remember,
                     const pg_pos_t *pos, long long *n, char *errstr, size_t errstr_size)
{
    const pg_conf_t *conf = a->conf;
    const char *sc = conf->schema;
    int ints = conf->id_type == PG_IDS_INTEGER;
    const char *params[2] = {person, doc};
    *n = 0;
    errstr[0] = '\0';
    /* the person as the tables store them: followed through a merge, then the id map */
    cg_buf_t pid, b;
    cg_buf_init(&pid);
    cg_buf_init(&b);
    if (ints) {
        cg_buf_puts(&pid, "(SELECT id FROM ");
        pg_qual(&pid, sc, "cg_id_map");
        cg_buf_puts(&pid, " WHERE source_id = ");
    }
    cg_buf_puts(&pid, "COALESCE((SELECT survivor_source_id FROM ");
    pg_qual(&pid, sc, "cg_person_merge");
    cg_buf_puts(&pid, " WHERE merged_source_id = $1), $1)");
    if (ints)
        cg_buf_putc(&pid, ')');
    cg_buf_putc(&pid, '\0');
    int rc = pid.failed ? -1 : 0;
    long long visits = 0;
    if (!rc && remember) { /* the replaced version's records may still come (drop_retracted) */
        cg_buf_puts(&b, "INSERT INTO ");
        pg_qual(&b, sc, "cg_doc_retracted");
        cg_buf_puts(&b, " (doc, person_id) VALUES ($2, $1) ON CONFLICT DO NOTHING");
        cg_buf_putc(&b, '\0');
        rc = b.failed ? -1 : run(c, b.data, params, NULL, errstr, errstr_size);
    }
    /* the events before the visits they name: no row is left naming a visit this deletes */
    for (size_t i = pg_table_count(); i-- > 0 && !rc;) {
        const cg_omop_table_t *t = pg_table_at(i);
        if (!strcmp(t->name, "person") || !strcmp(t->name, "observation_period") ||
            !cg_omop_column(t, "person_id", NULL))
            continue;
        const char *key = pg_table_key(t)->name;
        cg_buf_reset(&b);
        cg_buf_puts(&b, "WITH gone AS (DELETE FROM ");
        pg_qual(&b, sc, t->name);
        cg_buf_puts(&b, " t USING ");
        pg_qual(&b, sc, "cg_row_doc");
        if (ints) {
            cg_buf_puts(&b, " d, ");
            pg_qual(&b, sc, "cg_id_map");
            cg_buf_puts(&b, " m WHERE m.source_id = d.row_id AND t.");
            pg_ident(&b, key);
            cg_buf_puts(&b, " = m.id");
        } else {
            cg_buf_puts(&b, " d WHERE t.");
            pg_ident(&b, key);
            cg_buf_puts(&b, " = d.row_id");
        }
        cg_buf_printf(&b,
                      " AND d.table_name = '%s' AND d.doc = $2 AND t.person_id = %s RETURNING "
                      "d.row_id) DELETE FROM ",
                      t->name, pid.data);
        pg_qual(&b, sc, "cg_row_doc");
        cg_buf_printf(&b, " WHERE table_name = '%s' AND row_id IN (SELECT row_id FROM gone)",
                      t->name);
        cg_buf_putc(&b, '\0');
        long long k = 0;
        rc = b.failed ? -1 : run(c, b.data, params, &k, errstr, errstr_size);
        if (!rc && k) {
            a->txn_deleted[i] += (uint64_t)k;
            a->st.deleted += (uint64_t)k;
            *n += k;
            if (!strcmp(t->name, "visit_occurrence") || !strcmp(t->name, "visit_detail"))
                visits += k;
        }
    }
    /* rows of the person's other sources that named a retracted visit: as a visit's delete
     * leaves them */
    for (size_t i = 0; i < pg_table_count() && !rc && visits; i++) {
        const cg_omop_table_t *t = pg_table_at(i);
        static const char *const refs[][2] = {{"visit_occurrence_id", "visit_occurrence"},
                                              {"visit_detail_id", "visit_detail"}};
        for (size_t r = 0; r < 2 && !rc; r++) {
            if (!strcmp(t->name, refs[r][1]) || !cg_omop_column(t, refs[r][0], NULL) ||
                !cg_omop_column(t, "person_id", NULL))
                continue;
            cg_buf_reset(&b);
            cg_buf_puts(&b, "UPDATE ");
            pg_qual(&b, sc, t->name);
            cg_buf_printf(&b,
                          " x SET %s = NULL WHERE x.person_id = %s AND x.%s IS NOT NULL AND "
                          "NOT EXISTS (SELECT 1 FROM ",
                          refs[r][0], pid.data, refs[r][0]);
            pg_qual(&b, sc, refs[r][1]);
            cg_buf_printf(&b, " v WHERE v.%s = x.%s)", refs[r][0], refs[r][0]);
            cg_buf_putc(&b, '\0');
            rc = b.failed ? -1 : run(c, b.data, params, NULL, errstr, errstr_size);
        }
    }
    if (!rc && *n) {
        cg_buf_reset(&b);
        cg_buf_printf(&b, "SELECT %s", pid.data);
        cg_buf_putc(&b, '\0');
        char *periods = b.failed ? NULL : pg_periods_sql(conf, b.data);
        rc = periods ? run(c, periods, params, NULL, errstr, errstr_size) : -1;
        free(periods);
    }
    if (!rc && *n && a->track) { /* the person may leave cohorts */
        char *topic = PQescapeLiteral(c, pos->topic, strlen(pos->topic));
        cg_buf_t src;
        cg_buf_init(&src);
        cg_buf_printf(&src,
                      "SELECT %s AS pid, %s::text AS cg_topic, %" PRId32 " AS cg_part, %" PRId64
                      "::bigint AS cg_off, %" PRId64 "::bigint AS cg_seq",
                      pid.data, topic ? topic : "NULL", pos->partition, pos->offset, ++a->seq);
        cg_buf_putc(&src, '\0');
        cg_buf_reset(&b);
        pg_track_insert(&b, src.data);
        cg_buf_putc(&b, '\0');
        rc = b.failed || src.failed ? -1 : run(c, b.data, params, NULL, errstr, errstr_size);
        cg_buf_free(&src);
        PQfreemem(topic);
    }
    if (rc && !errstr[0])
        snprintf(errstr, errstr_size, "out of memory");
    cg_buf_free(&pid);
    cg_buf_free(&b);
    return rc;
}
