/* pg_apply_flush.c - running a batch's statements in the open transaction: per table the rows
 * of new keys COPY'd straight in (pg_apply_direct.c), the others through the COPY into its
 * staging table, the id map, the bulk upsert and delete under a savepoint (row by row when the
 * database refuses the bulk one for the rows' fault); the touched persons, the observation
 * periods, then the rejects. A flush's last COPY of new rows may be left running
 * (pg_apply_settle waits for it, and puts its rows through the statements if it was refused).
 */
#include "pg_int.h"

#include "cg_log.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int track_stage(pg_apply_t *a, PGconn *c, size_t ti, int after, char *errstr,
                       size_t errstr_size)
{
    stage_t *s = &a->stages[ti];
    const cg_omop_table_t *t = pg_table_at(ti);
    if (!a->track || !s->n || !cg_omop_column(t, "person_id", NULL))
        return 0;
    char **sql = after ? &s->after_sql : &s->before_sql;
    if (!*sql)
        *sql = pg_track_sql(a->conf, t, after);
    return *sql ? pg_exec(c, *sql, errstr, errstr_size) : -1;
}

/* ---- running them ---- */

/* Whether a failed statement is the rows' fault (data or constraint: reject them) rather than
 * the transaction's (connection, deadlock, a bug: abort and retry). */
static int rows_fault(const PGresult *r)
{
    const char *st = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    return st && (!strncmp(st, "22", 2) || !strncmp(st, "23", 2));
}

/* Runs a bulk statement under a savepoint. 1 done (*affected: the rows it wrote, or the number
 * it answers), 0 the rows' fault (rolled back to the savepoint), -1 the transaction's. */
static int run_guarded(PGconn *c, const char *sql, uint64_t *affected, char *errstr,
                       size_t errstr_size)
{
    if (pg_exec(c, "SAVEPOINT cg_stmt", errstr, errstr_size))
        return -1;
    PGresult *r = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(r);
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
        if (affected)
            *affected = strtoull(st == PGRES_TUPLES_OK && PQntuples(r) == 1 && PQnfields(r) == 1
                                     ? PQgetvalue(r, 0, 0)
                                     : PQcmdTuples(r),
                                 NULL, 10);
        PQclear(r);
        return pg_exec(c, "RELEASE SAVEPOINT cg_stmt", errstr, errstr_size) ? -1 : 1;
    }
    pg_message(r, c, errstr, errstr_size);
    int mine = rows_fault(r);
    PQclear(r);
    if (pg_exec(c, "ROLLBACK TO SAVEPOINT cg_stmt", errstr + strlen(errstr),
                errstr_size - strlen(errstr)))
        return -1;
    return mine ? 0 : -1;
}

/* After a bulk statement of table t was refused: its rows one by one, the refused ones to the
 * rejects. */
static int row_by_row(pg_apply_t *a, PGconn *c, size_t ti, int del, char *errstr,
                      size_t errstr_size)
{
    const cg_omop_table_t *t = pg_table_at(ti);
    cg_buf_t q;
    cg_buf_init(&q);
    cg_buf_puts(&q, "SELECT cg_seq, cg_topic, cg_part, cg_off, cg_audit FROM ");
    pg_rows_from(&q, t, 0);
    cg_buf_printf(&q, " WHERE s.cg_op = '%c' ORDER BY cg_seq", del ? 'd' : 'u');
    cg_buf_putc(&q, '\0');
    PGresult *rows = PQexec(c, q.data);
    cg_buf_free(&q);
    if (PQresultStatus(rows) != PGRES_TUPLES_OK) {
        pg_message(rows, c, errstr, errstr_size);
        PQclear(rows);
        return -1;
    }
    int rc = 0;
    for (int i = 0; i < PQntuples(rows) && !rc; i++) {
        int64_t seq = strtoll(PQgetvalue(rows, i, 0), NULL, 10);
        char *sql = del ? pg_delete_sql(a->conf, t, seq) : pg_upsert_sql(a->conf, t, seq);
        if (!sql)
            return -1;
        PGresult *r;
        if (pg_exec(c, "SAVEPOINT cg_row", errstr, errstr_size)) {
            free(sql);
            rc = -1;
            break;
        }
        r = PQexec(c, sql);
        free(sql);
        ExecStatusType st = PQresultStatus(r);
        if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
            uint64_t n = strtoull(PQcmdTuples(r), NULL, 10);
            if (del)
                a->st.deleted += n;
            else if (n)
                a->st.upserted += n;
            else
                a->st.unchanged++;
            PQclear(r);
            rc = pg_exec(c, "RELEASE SAVEPOINT cg_row", errstr, errstr_size);
            continue;
        }
        char why[768];
        pg_message(r, c, why, sizeof(why));
        const char *sqlstate = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        char state[8];
        snprintf(state, sizeof(state), "%s", sqlstate ? sqlstate : "?");
        int mine = rows_fault(r);
        PQclear(r);
        if (!mine) {
            snprintf(errstr, errstr_size, "%s", why);
            rc = -1;
            break;
        }
        if (pg_exec(c, "ROLLBACK TO SAVEPOINT cg_row", errstr, errstr_size)) {
            rc = -1;
            break;
        }
        pg_pos_t pos = {PQgetvalue(rows, i, 1), (int32_t)atoi(PQgetvalue(rows, i, 2)),
                        strtoll(PQgetvalue(rows, i, 3), NULL, 10)};
        size_t raw_len;
        const char *raw = pg_apply_raw(a, seq, &raw_len);
        if (!PQgetisnull(rows, i, 4)) { /* refused: not loaded, not in the audit */
            long line = strtol(PQgetvalue(rows, i, 4), NULL, 10);
            if (line >= 0 && (size_t)line < a->n_audit)
                a->audit[line].rows--;
        }
        rc = pg_apply_reject(a, t->name, state, why, &pos, raw, raw_len);
    }
    PQclear(rows);
    return rc;
}

/* One table's staged rows: ids, upserts, deletes (each statement only when the batch has rows
 * for it; the plain read of the staging table when no key comes twice). */
static int apply_table(pg_apply_t *a, PGconn *c, size_t ti, char *errstr, size_t errstr_size)
{
    stage_t *s = &a->stages[ti];
    const cg_omop_table_t *t = pg_table_at(ti);
    int unique = !s->dup_keys, all_new = 0;
    if (a->conf->id_type == PG_IDS_INTEGER) {
        if (!s->idmap_sql)
            s->idmap_sql = pg_idmap_sql(a->conf, t, 0);
        if (!s->idmap_fast_sql)
            s->idmap_fast_sql = pg_idmap_sql(a->conf, t, 1);
        uint64_t new_keys = 0;
        int rc = s->idmap_fast_sql
                     ? run_guarded(c, s->idmap_fast_sql, &new_keys, errstr, errstr_size)
                     : 1;
        if (rc < 0 || (rc == 0 && pg_exec(c, s->idmap_sql, errstr, errstr_size)))
            return -1;
        /* a key not in the id map before names no row: every staged row is a plain insert */
        all_new = rc == 1 && s->idmap_fast_sql && unique && !s->n_del && new_keys == s->n;
    }
    char **ups = unique ? &s->upsert1_sql : &s->upsert_sql;
    char **dels = unique ? &s->delete1_sql : &s->delete_sql;
    if (!*ups)
        *ups = pg_upsert_sql(a->conf, t, unique ? PG_ROWS_UNIQUE : 0);
    if (!*dels)
        *dels = pg_delete_sql(a->conf, t, unique ? PG_ROWS_UNIQUE : 0);
    if (all_new && !s->insert_sql)
        s->insert_sql = pg_insert_sql(a->conf, t);
    if (!*ups || !*dels || (all_new && !s->insert_sql))
        return -1;
    uint64_t upserted0 = a->st.upserted, deleted0 = a->st.deleted;
    uint64_t n = 0;
    int rc = all_new ? run_guarded(c, s->insert_sql, &n, errstr, errstr_size) : 0;
    if (rc == 0) /* not all new, or refused (a row's fault, or a key there after all) */
        rc = s->n_del < s->n ? run_guarded(c, *ups, &n, errstr, errstr_size) : 1;
    if (rc < 0)
        return -1;
    if (rc == 0 && row_by_row(a, c, ti, 0, errstr, errstr_size))
        return -1;
    if (rc == 1)
        a->st.upserted += n;
    n = 0;
    rc = s->n_del ? run_guarded(c, *dels, &n, errstr, errstr_size) : 1;
    if (rc < 0)
        return -1;
    if (rc == 0 && row_by_row(a, c, ti, 1, errstr, errstr_size))
        return -1;
    if (rc == 1)
        a->st.deleted += n;
    /* the applied versions' source times, for the next batches' stale records */
    if (s->timed) {
        char **times = unique ? &s->time1_sql : &s->time_sql;
        if (!*times)
            *times = pg_time_sql(a->conf, t, unique ? PG_ROWS_UNIQUE : 0);
        if (!*times || pg_exec(c, *times, errstr, errstr_size))
            return -1;
    }
    /* row by row counts in st too; the metrics count them at the commit */
    a->txn_upserted[ti] += a->st.upserted - upserted0;
    a->txn_deleted[ti] += a->st.deleted - deleted0;
    return 0;
}

/* A table's staged rows into its staging table, for the statements. */
static int stage_copy(pg_apply_t *a, PGconn *c, size_t ti, char *errstr, size_t errstr_size)
{
    cg_buf_t sql;
    cg_buf_init(&sql);
    cg_buf_puts(&sql, "COPY ");
    pg_stage_name(&sql, pg_table_at(ti));
    cg_buf_puts(&sql, " FROM STDIN");
    cg_buf_putc(&sql, '\0');
    int rc =
        sql.data ? pg_copy_in(c, sql.data, &a->stages[ti].copy, NULL, errstr, errstr_size) : -1;
    cg_buf_free(&sql);
    a->stages[ti].staged = 1;
    return rc;
}

/* A running COPY refused for a row's fault: its rows back to the savepoint (their ids stay
 * mapped), then through the staging table and the statements, which reject the bad rows alone,
 * before anything of the batch staged since. */
static int settle_refused(pg_apply_t *a, PGconn *c, char *errstr, size_t errstr_size)
{
    size_t ti = a->inflight_ti;
    stage_t *s = &a->stages[ti];
    /* PostgreSQL's text may quote a value: the rejects keep it, the log does not */
    cg_log(CG_LOG_DEBUG, "pg.direct_refused",
           "%s: the COPY was refused (a row; found when its answer was awaited): %zu rows by "
           "the statements",
           pg_table_at(ti)->name, a->inflight_n);
    if (pg_exec(c, "ROLLBACK TO SAVEPOINT cg_direct; RELEASE SAVEPOINT cg_direct", errstr,
                errstr_size))
        return -1;
    /* the table's rows staged since step aside; the periods' remake is theirs */
    cg_buf_t next = s->copy;
    size_t n = s->n, n_del = s->n_del, timed = s->timed;
    int dup_keys = s->dup_keys, remake = a->remake;
    s->copy = a->held_copy;
    s->n = a->inflight_n;
    s->n_del = 0, s->dup_keys = 0, a->remake = 0;
    s->timed = 1; /* not counted for the held rows: their times are written if they have any */
    cg_buf_t sql;
    cg_buf_init(&sql);
    cg_buf_puts(&sql, "TRUNCATE ");
    pg_stage_name(&sql, pg_table_at(ti));
    cg_buf_putc(&sql, '\0');
    int rc = !sql.data || stage_copy(a, c, ti, errstr, errstr_size) ||
             apply_table(a, c, ti, errstr, errstr_size) ||
             pg_derive_periods(a, c, errstr, errstr_size) ||
             pg_exec(c, sql.data, errstr, errstr_size);
    cg_buf_free(&sql);
    a->held_copy = s->copy;
    s->copy = next;
    s->n = n, s->n_del = n_del, s->dup_keys = dup_keys, a->remake = remake;
    s->timed = timed;
    s->staged = 0;
    return rc ? -1 : 0;
}

int pg_apply_settle(pg_apply_t *a, PGconn *c, char *errstr, size_t errstr_size)
{
    if (!a->inflight)
        return 0;
    a->inflight = 0;
    int rc = -1, fault = 0;
    const char *name = pg_table_at(a->inflight_ti)->name;
    if (!c || PQstatus(c) != CONNECTION_OK) {
        snprintf(errstr, errstr_size, "%s: no answer to the rows' COPY (connection lost)", name);
    } else if (!pg_copy_result(c, &fault, errstr, errstr_size)) {
        rc = pg_exec(c, "RELEASE SAVEPOINT cg_direct", errstr, errstr_size);
        a->st.upserted += a->inflight_n;
        a->txn_upserted[a->inflight_ti] += a->inflight_n;
        cg_log(CG_LOG_DEBUG, "pg.direct",
               "%s: %zu rows copied (%s), 0 by the statements (answer awaited after the flush)",
               name, a->inflight_n, a->direct_binary ? "binary" : "text");
    } else if (fault) {
        pg_bin_forget(a);
        rc = settle_refused(a, c, errstr, errstr_size);
    }
    cg_buf_reset(&a->held_copy);
    a->held_n_raw = 0;
    return rc;
}

static int any_staged(const pg_apply_t *a)
{
    for (size_t i = 0; i < a->n_stages; i++)
        if (a->stages[i].staged)
            return 1;
    return 0;
}

int pg_apply_flush(pg_apply_t *a, PGconn *c, int run_on, char *errstr, size_t errstr_size)
{
    if (pg_apply_settle(a, c, errstr, errstr_size) ||
        pg_apply_docs_flush(a, c, errstr, errstr_size))
        return -1;
    cg_buf_t sql;
    cg_buf_init(&sql);
    int rc = 0;
    if (a->track) {
        /* new keys' rows straight into their table (they name no row the batch changes),
         * then every table's rest staged: the persons before the batch are read from the
         * tables as they were */
        for (size_t i = 0; i < a->n_stages && !rc; i++)
            if (a->stages[i].n && pg_apply_direct(a, c, i, 0, errstr, errstr_size) < 0)
                rc = -1;
        for (size_t i = 0; i < a->n_stages && !rc; i++)
            if (a->stages[i].n)
                rc = stage_copy(a, c, i, errstr, errstr_size);
        for (size_t i = 0; i < a->n_stages && !rc; i++)
            rc = track_stage(a, c, i, 0, errstr, errstr_size);
        for (size_t i = 0; i < a->n_stages && !rc; i++)
            if (a->stages[i].n)
                rc = apply_table(a, c, i, errstr, errstr_size);
        for (size_t i = 0; i < a->n_stages && !rc; i++)
            rc = track_stage(a, c, i, 1, errstr, errstr_size);
    } else {
        /* new keys' rows straight into their table, the rest through the staging table; the
         * last table's COPY may be left running when no statement follows it (defer) */
        size_t last = a->n_stages;
        while (last > 0 && !a->stages[last - 1].n)
            last--;
        for (size_t i = 0; i < a->n_stages && !rc; i++) {
            if (!a->stages[i].n)
                continue;
            int defer = run_on && i + 1 == last && !any_staged(a) && !a->remake && !a->n_rejects;
            int done = pg_apply_direct(a, c, i, defer, errstr, errstr_size);
            if (done < 0)
                rc = -1;
            else if (!done && !(rc = stage_copy(a, c, i, errstr, errstr_size)))
                rc = apply_table(a, c, i, errstr, errstr_size);
        }
    }
    /* the periods of the rows that took the statements (the staging tables are empty else) */
    if (!rc && (any_staged(a) || a->remake))
        rc = pg_derive_periods(a, c, errstr, errstr_size);
    /* the staging tables are the session's: emptied for the next batch */
    cg_buf_reset(&sql);
    for (size_t i = 0; i < a->n_stages && !rc; i++) {
        if (!a->stages[i].staged)
            continue;
        cg_buf_puts(&sql, sql.len ? ", " : "TRUNCATE ");
        pg_stage_name(&sql, pg_table_at(i));
    }
    if (!rc && sql.len) {
        cg_buf_putc(&sql, '\0');
        rc = pg_exec(c, sql.data, errstr, errstr_size);
    }
    if (!rc && a->n_rejects) {
        cg_buf_reset(&sql);
        cg_buf_puts(&sql, "COPY ");
        pg_qual(&sql, a->conf->schema, "cg_rejects");
        cg_buf_puts(&sql, " (topic, partition, \"offset\", table_name, sqlstate, reason, record) "
                          "FROM STDIN");
        cg_buf_putc(&sql, '\0');
        rc = pg_copy_in(c, sql.data, &a->rejects, NULL, errstr, errstr_size);
    }
    cg_buf_free(&sql);
    if (!rc)
        pg_apply_clear(a);
    return rc;
}
