/* pg_apply.c - a batch of records into the open database transaction, set-based:
 *
 *   1. COPY every table's staged rows (text columns, plus sequence, op and source position)
 *      into a temporary staging table of its own;
 *   2. per table in foreign-key order: new row ids into the id map (integer ids), then one
 *      INSERT ... SELECT the latest record per key ... ON CONFLICT DO UPDATE ... WHERE the row
 *      changed, then one DELETE of the keys whose latest record is a delete;
 *   3. a statement the database refuses for a data or constraint error (SQLSTATE class 22, 23)
 *      is retried row by row under savepoints, and the rows it still refuses go to cg_rejects
 *      with the reason and their topic, partition and offset; the batch goes on.
 *
 * Any other error (a lost connection, a deadlock) fails the transaction: the engine aborts it
 * and consumes its inputs again, so nothing is lost or applied twice. */
#include "pg_int.h"

#include "cg_log.h"
#include "cg_metrics.h"
#include "cg_metrics_gw.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define STAGE_COLS "cg_seq, cg_op, cg_topic, cg_part, cg_off, cg_raw"

typedef struct stage {
    cg_buf_t copy; /* COPY text rows */
    size_t n;
    char *upsert_sql, *delete_sql, *idmap_sql; /* built on first use */
    char *before_sql, *after_sql;              /* the persons it touches (track) */
} stage_t;

/* Rows of the open transaction released under one policy version, of one table and level:
 * the release audit's line (pg_apply_audit). */
typedef struct audit_line {
    char *policy;
    size_t table;
    int level;
    int64_t rows; /* staged, less those the database refused */
} audit_line_t;

typedef struct pending_reject {
    char table[64];
    char sqlstate[8];
    uint64_t n;
} pending_reject_t;

struct pg_apply {
    const pg_conf_t *conf;
    stage_t *stages; /* per pg_table_at() */
    size_t n_stages;
    size_t pending;
    cg_buf_t rejects; /* COPY text rows of cg_rejects */
    size_t n_rejects;
    int64_t seq;
    pg_apply_stats_t st;
    cg_metric_t *m_rows, *m_rejects;
    /* what the open transaction applied, counted in the metrics when it commits */
    uint64_t *txn_upserted, *txn_deleted; /* per table */
    pending_reject_t *txn_rejects;
    size_t n_txn_rejects, cap_txn_rejects;
    char *periods_sql;   /* observation_period made anew for some persons of a batch */
    char *widen_sql;     /* ... and widened for the others (both built once) */
    int remake;          /* a delete or a person row is staged: some periods are made anew */
    int track;           /* touched persons into pg_temp.cg_changed_persons (cohorts) */
    audit_line_t *audit; /* the open transaction's; a staged row names its line (cg_audit) */
    size_t n_audit, cap_audit;
};

/* ---- COPY text ---- */

static void copy_value(cg_buf_t *b, const char *v, size_t n)
{
    if (!v) {
        cg_buf_puts(b, "\\N");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        char ch = v[i];
        switch (ch) {
        case '\\':
            cg_buf_puts(b, "\\\\");
            break;
        case '\t':
            cg_buf_puts(b, "\\t");
            break;
        case '\n':
            cg_buf_puts(b, "\\n");
            break;
        case '\r':
            cg_buf_puts(b, "\\r");
            break;
        default:
            cg_buf_putc(b, ch);
        }
    }
}

static void copy_str(cg_buf_t *b, const char *v)
{
    copy_value(b, v, v ? strlen(v) : 0);
}

pg_apply_t *pg_apply_new(const pg_conf_t *conf, cg_metrics_gw_t *metrics)
{
    pg_apply_t *a = calloc(1, sizeof(*a));
    if (!a)
        return NULL;
    a->conf = conf;
    a->n_stages = pg_table_count();
    a->stages = calloc(a->n_stages, sizeof(*a->stages));
    a->txn_upserted = calloc(a->n_stages, sizeof(*a->txn_upserted));
    a->txn_deleted = calloc(a->n_stages, sizeof(*a->txn_deleted));
    if (!a->stages || !a->txn_upserted || !a->txn_deleted) {
        free(a->stages);
        free(a->txn_upserted);
        free(a->txn_deleted);
        free(a);
        return NULL;
    }
    for (size_t i = 0; i < a->n_stages; i++)
        cg_buf_init(&a->stages[i].copy);
    cg_buf_init(&a->rejects);
    cg_metrics_t *reg = metrics ? cg_metrics_gw_registry(metrics) : NULL;
    if (reg) {
        a->m_rows = cg_metrics_counter(reg, "cohortgate_sink_rows_total",
                                       "Rows the sink applied, by table and result (upserted, "
                                       "unchanged, deleted)",
                                       "table,result");
        a->m_rejects = cg_metrics_counter(reg, "cohortgate_sink_rejects_total",
                                          "Records the sink put in cg_rejects, by table and reason "
                                          "(SQLSTATE, or CG* for the sink's own)",
                                          "table,reason");
    }
    return a;
}

void pg_apply_destroy(pg_apply_t *a)
{
    if (!a)
        return;
    for (size_t i = 0; i < a->n_stages; i++) {
        cg_buf_free(&a->stages[i].copy);
        free(a->stages[i].upsert_sql);
        free(a->stages[i].delete_sql);
        free(a->stages[i].idmap_sql);
        free(a->stages[i].before_sql);
        free(a->stages[i].after_sql);
    }
    free(a->stages);
    free(a->txn_upserted);
    free(a->txn_deleted);
    free(a->txn_rejects);
    for (size_t i = 0; i < a->cap_audit; i++)
        free(a->audit[i].policy);
    free(a->audit);
    cg_buf_free(&a->rejects);
    free(a->periods_sql);
    free(a->widen_sql);
    free(a);
}

void pg_apply_get_stats(const pg_apply_t *a, pg_apply_stats_t *out)
{
    *out = a->st;
}

/* A reject of the open transaction, counted when it commits. */
static void note_reject(pg_apply_t *a, const char *table, const char *sqlstate)
{
    if (!a->m_rejects)
        return;
    for (size_t i = 0; i < a->n_txn_rejects; i++) {
        pending_reject_t *p = &a->txn_rejects[i];
        if (!strncmp(p->table, table, sizeof(p->table) - 1) &&
            !strncmp(p->sqlstate, sqlstate, sizeof(p->sqlstate) - 1)) {
            p->n++;
            return;
        }
    }
    if (a->n_txn_rejects == a->cap_txn_rejects) {
        size_t cap = a->cap_txn_rejects ? a->cap_txn_rejects * 2 : 8;
        pending_reject_t *p = realloc(a->txn_rejects, cap * sizeof(*p));
        if (!p)
            return; /* the count is lost, the reject is not */
        a->txn_rejects = p;
        a->cap_txn_rejects = cap;
    }
    pending_reject_t *p = &a->txn_rejects[a->n_txn_rejects++];
    snprintf(p->table, sizeof(p->table), "%s", table);
    snprintf(p->sqlstate, sizeof(p->sqlstate), "%s", sqlstate);
    p->n = 1;
}

void pg_apply_txn_counted(pg_apply_t *a, int committed)
{
    for (size_t i = 0; i < a->n_stages; i++) {
        if (committed && a->m_rows) {
            const char *name = pg_table_at(i)->name;
            if (a->txn_upserted[i])
                cg_metric_inc(cg_metric_get2(a->m_rows, name, "upserted"), a->txn_upserted[i]);
            if (a->txn_deleted[i])
                cg_metric_inc(cg_metric_get2(a->m_rows, name, "deleted"), a->txn_deleted[i]);
        }
        a->txn_upserted[i] = a->txn_deleted[i] = 0;
    }
    a->n_audit = 0; /* the lines' policy strings are kept for reuse */
    for (size_t i = 0; committed && i < a->n_txn_rejects; i++)
        cg_metric_inc(
            cg_metric_get2(a->m_rejects, a->txn_rejects[i].table, a->txn_rejects[i].sqlstate),
            a->txn_rejects[i].n);
    a->n_txn_rejects = 0;
}

size_t pg_apply_pending(const pg_apply_t *a)
{
    return a->pending + a->n_rejects;
}

void pg_apply_clear(pg_apply_t *a)
{
    for (size_t i = 0; i < a->n_stages; i++) {
        cg_buf_reset(&a->stages[i].copy);
        a->stages[i].n = 0;
    }
    cg_buf_reset(&a->rejects);
    a->n_rejects = 0;
    a->pending = 0;
    a->remake = 0;
}

static void stage_name(cg_buf_t *b, const cg_omop_table_t *t)
{
    cg_buf_printf(b, "pg_temp.cg_stg_%s", t->name);
}

void pg_apply_track_persons(pg_apply_t *a, int on)
{
    a->track = on;
}

int pg_apply_prepare(pg_apply_t *a, PGconn *c, char *errstr, size_t errstr_size)
{
    cg_buf_t b;
    cg_buf_init(&b);
    cg_buf_puts(&b, "SET client_min_messages = warning;\n");
    if (a->track) /* seq: the last record that touched the person names it */
        cg_buf_puts(&b, "CREATE TEMP TABLE IF NOT EXISTS cg_changed_persons (person_id bigint "
                        "PRIMARY KEY, topic text, part integer, off bigint, seq bigint NOT "
                        "NULL);\n");
    for (size_t i = 0; i < a->n_stages; i++) {
        const cg_omop_table_t *t = pg_table_at(i);
        cg_buf_puts(&b, "CREATE TEMP TABLE IF NOT EXISTS ");
        cg_buf_printf(&b, "cg_stg_%s", t->name);
        cg_buf_puts(&b, " (cg_seq bigint, cg_op \"char\", cg_topic text, cg_part integer, "
                        "cg_off bigint, cg_raw text, cg_audit integer");
        for (size_t k = 0; k < t->n_columns; k++) {
            cg_buf_puts(&b, ", ");
            pg_ident(&b, t->columns[k].name);
            /* ids were checked when staged (pg_sink.c): typed here, the id map and the
             * statements below neither test nor cast them row by row */
            cg_buf_puts(&b, pg_column_is_id(&t->columns[k]) ? " bigint" : " text");
        }
        cg_buf_puts(&b, ");\n");
    }
    cg_buf_putc(&b, '\0');
    int rc = b.data ? pg_exec(c, b.data, errstr, errstr_size) : -1;
    cg_buf_free(&b);
    return rc;
}

/* The open transaction's audit line of (policy, table, level), made when new: its index, or -1
 * when out of memory. */
static long audit_line(pg_apply_t *a, const char *policy, size_t table, int level)
{
    for (size_t i = 0; i < a->n_audit; i++)
        if (a->audit[i].table == table && a->audit[i].level == level &&
            !strcmp(a->audit[i].policy, policy))
            return (long)i;
    if (a->n_audit == a->cap_audit) {
        size_t cap = a->cap_audit ? a->cap_audit * 2 : 16;
        audit_line_t *v = realloc(a->audit, cap * sizeof(*v));
        if (!v)
            return -1;
        memset(v + a->cap_audit, 0, (cap - a->cap_audit) * sizeof(*v));
        a->audit = v;
        a->cap_audit = cap;
    }
    audit_line_t *l = &a->audit[a->n_audit];
    if (!l->policy || strcmp(l->policy, policy)) {
        char *p = strdup(policy);
        if (!p)
            return -1;
        free(l->policy);
        l->policy = p;
    }
    l->table = table;
    l->level = level;
    l->rows = 0;
    return (long)a->n_audit++;
}

int pg_apply_stage(pg_apply_t *a, size_t table, int del, const char *const *values,
                   const size_t *lens, const pg_pos_t *pos, const char *raw, size_t raw_len,
                   const char *policy, int level)
{
    stage_t *s = &a->stages[table];
    const cg_omop_table_t *t = pg_table_at(table);
    long line = -1;
    if (policy && level > 0 && (line = audit_line(a, policy, table, level)) < 0)
        return -1;
    cg_buf_t *b = &s->copy;
    cg_buf_printf(b, "%" PRId64 "\t%c\t", ++a->seq, del ? 'd' : 'u');
    copy_str(b, pos->topic);
    cg_buf_printf(b, "\t%" PRId32 "\t%" PRId64 "\t", pos->partition, pos->offset);
    copy_value(b, raw, raw_len);
    if (line >= 0)
        cg_buf_printf(b, "\t%ld", line);
    else
        cg_buf_puts(b, "\t\\N");
    for (size_t k = 0; k < t->n_columns; k++) {
        cg_buf_putc(b, '\t');
        copy_value(b, values[k], lens[k]);
    }
    if (cg_buf_putc(b, '\n') != CG_OK)
        return -1;
    s->n++;
    a->pending++;
    if (line >= 0)
        a->audit[line].rows++;
    if (del || !strcmp(t->name, "person"))
        a->remake = 1;
    return 0;
}

/* Whether bytes can go into a text column: UTF-8 without NUL. */
static int text_ok(const char *v, size_t n)
{
    for (size_t i = 0; i < n;) {
        size_t k = v[i] ? cg_utf8_seq_len((const unsigned char *)v + i, n - i) : 0;
        if (!k)
            return 0;
        i += k;
    }
    return 1;
}

/* The original bytes of a rejected record: as they are when they are text, else "hex:" and
 * their hex digits (a text column takes no NUL or invalid UTF-8, and nothing is dropped). */
static void copy_raw(cg_buf_t *b, const char *raw, size_t n)
{
    if (!raw || text_ok(raw, n)) {
        copy_value(b, raw ? raw : "", n);
        return;
    }
    static const char hex[] = "0123456789abcdef";
    cg_buf_puts(b, "hex:");
    for (size_t i = 0; i < n; i++) {
        cg_buf_putc(b, hex[(unsigned char)raw[i] >> 4]);
        cg_buf_putc(b, hex[(unsigned char)raw[i] & 15]);
    }
}

int pg_apply_reject(pg_apply_t *a, const char *table, const char *sqlstate, const char *reason,
                    const pg_pos_t *pos, const char *raw, size_t raw_len)
{
    cg_buf_t *b = &a->rejects;
    copy_str(b, pos->topic);
    cg_buf_printf(b, "\t%" PRId32 "\t%" PRId64 "\t", pos->partition, pos->offset);
    copy_str(b, table);
    cg_buf_putc(b, '\t');
    copy_str(b, sqlstate);
    cg_buf_putc(b, '\t');
    copy_str(b, reason);
    cg_buf_putc(b, '\t');
    copy_raw(b, raw, raw_len);
    if (cg_buf_putc(b, '\n') != CG_OK)
        return -1;
    a->n_rejects++;
    a->st.rejected++;
    note_reject(a, table ? table : "", sqlstate);
    /* PostgreSQL's text may quote the value (22P02, 23505): it stays in cg_rejects, as
     * sensitive as the rows; the log gets the sink's own reasons only */
    int own = !strncmp(sqlstate, "CG", 2);
    cg_log(CG_LOG_WARN, "sink.rejected",
           "%s [%" PRId32 "] offset %" PRId64 ": %s: %s (SQLSTATE %s)", pos->topic, pos->partition,
           pos->offset, table ? table : "?",
           own ? reason : "refused by PostgreSQL, the reason is in cg_rejects", sqlstate);
    return 0;
}

/* ---- statements ---- */

/* The row id a staged id column names, as the target column stores it: the id map's compact
 * id, or the row id itself (bigint). person_id follows a person merge to the survivor. */
static void id_expr(cg_buf_t *b, const pg_conf_t *conf, const cg_omop_table_t *t,
                    const cg_omop_column_t *col)
{
    cg_buf_t src;
    cg_buf_init(&src);
    if (!strcmp(col->name, "person_id") && strcmp(t->name, "person")) {
        cg_buf_puts(&src, "COALESCE((SELECT g.survivor_source_id FROM ");
        pg_qual(&src, conf->schema, "cg_person_merge");
        cg_buf_puts(&src, " g WHERE g.merged_source_id = s.person_id), s.person_id)");
    } else {
        cg_buf_puts(&src, "s.");
        pg_ident(&src, col->name);
    }
    cg_buf_putc(&src, '\0');
    if (conf->id_type == PG_IDS_BIGINT) {
        cg_buf_puts(b, src.data);
    } else {
        cg_buf_puts(b, "(SELECT m.id FROM ");
        pg_qual(b, conf->schema, "cg_id_map");
        cg_buf_printf(b, " m WHERE m.source_id = %s)", src.data);
    }
    cg_buf_free(&src);
}

static void value_expr(cg_buf_t *b, const pg_conf_t *conf, const cg_omop_table_t *t,
                       const cg_omop_column_t *col)
{
    if (pg_column_is_id(col)) {
        id_expr(b, conf, t, col);
        return;
    }
    cg_buf_puts(b, "s.");
    pg_ident(b, col->name);
    switch (col->cdm_type) {
    case CG_OMOP_INTEGER:
        cg_buf_puts(b, "::integer");
        break;
    case CG_OMOP_BIGINT:
        cg_buf_puts(b, "::bigint");
        break;
    case CG_OMOP_FLOAT:
        cg_buf_puts(b, "::numeric");
        break;
    case CG_OMOP_DATE:
        cg_buf_puts(b, "::date");
        break;
    case CG_OMOP_DATETIME:
        cg_buf_puts(b, "::timestamp");
        break;
    default: /* text into varchar(n): the assignment refuses what is too long */
        break;
    }
}

/* The rows a statement works on: the latest staged record per key (bulk), or one record. */
static void rows_from(cg_buf_t *b, const cg_omop_table_t *t, int64_t one_seq)
{
    if (one_seq > 0) {
        cg_buf_puts(b, "(SELECT * FROM ");
        stage_name(b, t);
        cg_buf_printf(b, " WHERE cg_seq = %" PRId64 ") s", one_seq);
        return;
    }
    const cg_omop_column_t *key = pg_table_key(t);
    cg_buf_puts(b, "(SELECT DISTINCT ON (");
    pg_ident(b, key->name);
    cg_buf_puts(b, ") * FROM ");
    stage_name(b, t);
    cg_buf_puts(b, " ORDER BY ");
    pg_ident(b, key->name);
    cg_buf_puts(b, ", cg_seq DESC) s");
}

static char *upsert_sql(const pg_conf_t *conf, const cg_omop_table_t *t, int64_t one_seq)
{
    const cg_omop_column_t *key = pg_table_key(t);
    cg_buf_t b;
    cg_buf_init(&b);
    cg_buf_puts(&b, "INSERT INTO ");
    pg_qual(&b, conf->schema, t->name);
    cg_buf_puts(&b, " AS t (");
    for (size_t k = 0; k < t->n_columns; k++) {
        cg_buf_puts(&b, k ? ", " : "");
        pg_ident(&b, t->columns[k].name);
    }
    cg_buf_puts(&b, ") SELECT ");
    for (size_t k = 0; k < t->n_columns; k++) {
        cg_buf_puts(&b, k ? ", " : "");
        value_expr(&b, conf, t, &t->columns[k]);
    }
    cg_buf_puts(&b, " FROM ");
    rows_from(&b, t, one_seq);
    cg_buf_puts(&b, " WHERE s.cg_op = 'u'");
    if (!strcmp(t->name, "person")) { /* a merged person stays merged */
        cg_buf_puts(&b, " AND NOT EXISTS (SELECT 1 FROM ");
        pg_qual(&b, conf->schema, "cg_person_merge");
        cg_buf_puts(&b, " g WHERE g.merged_source_id = s.person_id)");
    }
    cg_buf_puts(&b, " ON CONFLICT (");
    pg_ident(&b, key->name);
    cg_buf_puts(&b, ")");
    if (t->n_columns < 2) {
        cg_buf_puts(&b, " DO NOTHING");
    } else {
        /* only a changed row is written: a replay leaves the table (and its dead tuples) be */
        cg_buf_puts(&b, " DO UPDATE SET ");
        int first = 1;
        for (size_t k = 0; k < t->n_columns; k++) {
            if (&t->columns[k] == key)
                continue;
            cg_buf_puts(&b, first ? "" : ", ");
            pg_ident(&b, t->columns[k].name);
            cg_buf_puts(&b, " = EXCLUDED.");
            pg_ident(&b, t->columns[k].name);
            first = 0;
        }
        cg_buf_puts(&b, " WHERE (");
        first = 1;
        for (size_t k = 0; k < t->n_columns; k++) {
            if (&t->columns[k] == key)
                continue;
            cg_buf_puts(&b, first ? "t." : ", t.");
            pg_ident(&b, t->columns[k].name);
            first = 0;
        }
        cg_buf_puts(&b, ") IS DISTINCT FROM (");
        first = 1;
        for (size_t k = 0; k < t->n_columns; k++) {
            if (&t->columns[k] == key)
                continue;
            cg_buf_puts(&b, first ? "EXCLUDED." : ", EXCLUDED.");
            pg_ident(&b, t->columns[k].name);
            first = 0;
        }
        cg_buf_puts(&b, ")");
    }
    cg_buf_putc(&b, '\0');
    return b.data;
}

/* The keys whose latest record is a delete, as the table stores them. */
static void deleted_keys(cg_buf_t *b, const pg_conf_t *conf, const cg_omop_table_t *t,
                         int64_t one_seq)
{
    cg_buf_puts(b, "(SELECT ");
    value_expr(b, conf, t, pg_table_key(t));
    cg_buf_puts(b, " FROM ");
    rows_from(b, t, one_seq);
    cg_buf_puts(b, " WHERE s.cg_op = 'd')");
}

/* A delete; a person's takes every row of that person_id with it, a visit's leaves no row
 * naming it (README "What goes out"). */
static char *delete_sql(const pg_conf_t *conf, const cg_omop_table_t *t, int64_t one_seq)
{
    const cg_omop_column_t *key = pg_table_key(t);
    int person = !strcmp(t->name, "person"), visit = !strcmp(t->name, "visit_occurrence");
    cg_buf_t b;
    cg_buf_init(&b);
    for (size_t i = 0; (person || visit) && i < pg_table_count(); i++) {
        const cg_omop_table_t *o = pg_table_at(i);
        if (o == t || !cg_omop_column(o, person ? "person_id" : "visit_occurrence_id", NULL))
            continue;
        if (person) {
            cg_buf_puts(&b, "DELETE FROM ");
            pg_qual(&b, conf->schema, o->name);
            cg_buf_puts(&b, " WHERE person_id IN ");
        } else {
            cg_buf_puts(&b, "UPDATE ");
            pg_qual(&b, conf->schema, o->name);
            cg_buf_puts(&b, " SET visit_occurrence_id = NULL WHERE visit_occurrence_id IN ");
        }
        deleted_keys(&b, conf, t, one_seq);
        cg_buf_puts(&b, ";\n");
    }
    cg_buf_puts(&b, "DELETE FROM ");
    pg_qual(&b, conf->schema, t->name);
    cg_buf_puts(&b, " WHERE ");
    pg_ident(&b, key->name);
    cg_buf_puts(&b, " IN ");
    deleted_keys(&b, conf, t, one_seq);
    cg_buf_putc(&b, '\0');
    return b.data;
}

/* New row ids of the staged rows into the id map, in order (two instances never wait on each
 * other in a cycle); ids already there are not offered, so the identity has no gaps. */
static char *idmap_sql(const pg_conf_t *conf, const cg_omop_table_t *t)
{
    cg_buf_t b;
    cg_buf_init(&b);
    cg_buf_puts(&b, "INSERT INTO ");
    pg_qual(&b, conf->schema, "cg_id_map");
    cg_buf_puts(&b, " (source_id) SELECT v FROM (SELECT DISTINCT v FROM (");
    int first = 1;
    for (size_t k = 0; k < t->n_columns; k++) {
        const cg_omop_column_t *col = &t->columns[k];
        if (!pg_column_is_id(col))
            continue;
        cg_buf_puts(&b, first ? "SELECT " : " UNION ALL SELECT ");
        pg_ident(&b, col->name);
        cg_buf_puts(&b, " FROM ");
        stage_name(&b, t);
        first = 0;
    }
    if (first) {
        cg_buf_free(&b);
        return NULL;
    }
    cg_buf_puts(&b, ") x(v) WHERE v IS NOT NULL) y WHERE NOT EXISTS (SELECT 1 FROM ");
    pg_qual(&b, conf->schema, "cg_id_map");
    cg_buf_puts(&b, " m WHERE m.source_id = y.v) ORDER BY v ON CONFLICT DO NOTHING");
    cg_buf_putc(&b, '\0');
    return b.data;
}

/* The INSERT of touched persons (a SELECT of person_id, cg_topic, cg_part, cg_off, cg_seq as
 * `src`) into pg_temp.cg_changed_persons, the latest record per person winning. */
static void track_insert(cg_buf_t *b, const char *src)
{
    cg_buf_printf(b,
                  "INSERT INTO pg_temp.cg_changed_persons AS c (person_id, topic, part, off, seq) "
                  "SELECT DISTINCT ON (pid) pid, cg_topic, cg_part, cg_off, cg_seq FROM (%s) x "
                  "WHERE pid IS NOT NULL ORDER BY pid, cg_seq DESC ON CONFLICT (person_id) DO "
                  "UPDATE SET topic = EXCLUDED.topic, part = EXCLUDED.part, off = EXCLUDED.off, "
                  "seq = EXCLUDED.seq WHERE EXCLUDED.seq > c.seq",
                  src);
}

/* The persons of the rows the staged keys name before the batch (an update may move a row to
 * another person, a delete takes it from one), or after it (the staged rows' own person_id). */
static char *track_sql(const pg_conf_t *conf, const cg_omop_table_t *t, int after)
{
    const cg_omop_column_t *pid = cg_omop_column(t, "person_id", NULL);
    if (!pid)
        return NULL;
    cg_buf_t src, b;
    cg_buf_init(&src);
    cg_buf_init(&b);
    if (after) {
        cg_buf_puts(&src, "SELECT ");
        id_expr(&src, conf, t, pid);
        cg_buf_puts(&src, " AS pid, s.cg_topic, s.cg_part, s.cg_off, s.cg_seq FROM ");
        stage_name(&src, t);
        cg_buf_puts(&src, " s");
    } else {
        const cg_omop_column_t *key = pg_table_key(t);
        cg_buf_puts(&src, "SELECT t.person_id AS pid, s.cg_topic, s.cg_part, s.cg_off, s.cg_seq "
                          "FROM ");
        stage_name(&src, t);
        cg_buf_puts(&src, " s JOIN ");
        pg_qual(&src, conf->schema, t->name);
        cg_buf_puts(&src, " t ON t.");
        pg_ident(&src, key->name);
        cg_buf_puts(&src, " = ");
        value_expr(&src, conf, t, key);
    }
    cg_buf_putc(&src, '\0');
    if (src.data)
        track_insert(&b, src.data);
    cg_buf_free(&src);
    cg_buf_putc(&b, '\0');
    return b.data;
}

static int track_stage(pg_apply_t *a, PGconn *c, size_t ti, int after, char *errstr,
                       size_t errstr_size)
{
    stage_t *s = &a->stages[ti];
    const cg_omop_table_t *t = pg_table_at(ti);
    if (!a->track || !s->n || !cg_omop_column(t, "person_id", NULL))
        return 0;
    char **sql = after ? &s->after_sql : &s->before_sql;
    if (!*sql)
        *sql = track_sql(a->conf, t, after);
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

static int copy_in(PGconn *c, const char *sql, const cg_buf_t *data, char *errstr,
                   size_t errstr_size)
{
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_COPY_IN) {
        pg_message(r, c, errstr, errstr_size);
        PQclear(r);
        return -1;
    }
    PQclear(r);
    int ok = PQputCopyData(c, data->data, (int)data->len) == 1 && PQputCopyEnd(c, NULL) == 1;
    r = PQgetResult(c);
    if (!ok || PQresultStatus(r) != PGRES_COMMAND_OK) {
        pg_message(r, c, errstr, errstr_size);
        ok = 0;
    }
    PQclear(r);
    while ((r = PQgetResult(c)))
        PQclear(r);
    return ok ? 0 : -1;
}

/* Runs a bulk statement under a savepoint. 1 done (*affected), 0 the rows' fault (rolled back
 * to the savepoint), -1 the transaction's. */
static int run_guarded(PGconn *c, const char *sql, uint64_t *affected, char *errstr,
                       size_t errstr_size)
{
    if (pg_exec(c, "SAVEPOINT cg_stmt", errstr, errstr_size))
        return -1;
    PGresult *r = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(r);
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
        if (affected)
            *affected = strtoull(PQcmdTuples(r), NULL, 10);
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
    cg_buf_puts(&q, "SELECT cg_seq, cg_topic, cg_part, cg_off, cg_raw, cg_audit FROM ");
    rows_from(&q, t, 0);
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
        char *sql = del ? delete_sql(a->conf, t, seq) : upsert_sql(a->conf, t, seq);
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
        const char *raw = PQgetvalue(rows, i, 4);
        if (!PQgetisnull(rows, i, 5)) { /* refused: not loaded, not in the audit */
            long line = strtol(PQgetvalue(rows, i, 5), NULL, 10);
            if (line >= 0 && (size_t)line < a->n_audit)
                a->audit[line].rows--;
        }
        rc = pg_apply_reject(a, t->name, state, why, &pos, raw, strlen(raw));
    }
    PQclear(rows);
    return rc;
}

/* One table's staged rows: ids, upserts, deletes. */
static int apply_table(pg_apply_t *a, PGconn *c, size_t ti, char *errstr, size_t errstr_size)
{
    stage_t *s = &a->stages[ti];
    const cg_omop_table_t *t = pg_table_at(ti);
    if (a->conf->id_type == PG_IDS_INTEGER) {
        if (!s->idmap_sql)
            s->idmap_sql = idmap_sql(a->conf, t);
        if (s->idmap_sql && pg_exec(c, s->idmap_sql, errstr, errstr_size))
            return -1;
    }
    if (!s->upsert_sql)
        s->upsert_sql = upsert_sql(a->conf, t, 0);
    if (!s->delete_sql)
        s->delete_sql = delete_sql(a->conf, t, 0);
    if (!s->upsert_sql || !s->delete_sql)
        return -1;
    uint64_t upserted0 = a->st.upserted, deleted0 = a->st.deleted;
    uint64_t n = 0;
    int rc = run_guarded(c, s->upsert_sql, &n, errstr, errstr_size);
    if (rc < 0)
        return -1;
    if (rc == 0 && row_by_row(a, c, ti, 0, errstr, errstr_size))
        return -1;
    if (rc == 1)
        a->st.upserted += n;
    n = 0;
    rc = run_guarded(c, s->delete_sql, &n, errstr, errstr_size);
    if (rc < 0)
        return -1;
    if (rc == 0 && row_by_row(a, c, ti, 1, errstr, errstr_size))
        return -1;
    if (rc == 1)
        a->st.deleted += n;
    /* row by row counts in st too; the metrics count them at the commit */
    a->txn_upserted[ti] += a->st.upserted - upserted0;
    a->txn_deleted[ti] += a->st.deleted - deleted0;
    return 0;
}

/* Where each clinical table's dates are: a row spans [start, end or start]. */
static const struct {
    const char *table, *start, *end;
} period_dates[] = {
    {"visit_occurrence", "visit_start_date", "visit_end_date"},
    {"visit_detail", "visit_detail_start_date", "visit_detail_end_date"},
    {"condition_occurrence", "condition_start_date", "condition_end_date"},
    {"drug_exposure", "drug_exposure_start_date", "drug_exposure_end_date"},
    {"procedure_occurrence", "procedure_date", "procedure_end_date"},
    {"device_exposure", "device_exposure_start_date", "device_exposure_end_date"},
    {"measurement", "measurement_date", NULL},
    {"observation", "observation_date", NULL},
    {"specimen", "specimen_date", NULL},
    {"note", "note_date", NULL},
    {"death", "death_date", NULL},
};

/* The statements that make each touched person's observation_period one span from the first to
 * the last date of their rows (id: the person's own id; type 32817, EHR); a person with no
 * dated row, or no person row, has none. touched: a SELECT of person ids as stored. */
static char *periods_sql(const pg_conf_t *conf, const char *touched)
{
    const char *sc = conf->schema;
    cg_buf_t b;
    cg_buf_init(&b);
    cg_buf_printf(&b,
                  "WITH touched AS (SELECT DISTINCT pid FROM (%s) u(pid) WHERE pid IS NOT "
                  "NULL), spans AS (",
                  touched);
    int first = 1;
    for (size_t i = 0; i < sizeof(period_dates) / sizeof(period_dates[0]); i++) {
        const cg_omop_table_t *t = cg_omop_table(period_dates[i].table);
        if (!t || !cg_omop_column(t, period_dates[i].start, NULL))
            continue;
        const char *end = period_dates[i].end && cg_omop_column(t, period_dates[i].end, NULL)
                              ? period_dates[i].end
                              : period_dates[i].start;
        cg_buf_printf(&b,
                      "%sSELECT person_id, %s AS d0, greatest(%s, coalesce(%s, %s)) AS d1 FROM ",
                      first ? "" : " UNION ALL ", period_dates[i].start, period_dates[i].start, end,
                      period_dates[i].start);
        pg_qual(&b, sc, t->name);
        cg_buf_puts(&b, " WHERE person_id IN (SELECT pid FROM touched)");
        first = 0;
    }
    cg_buf_puts(&b, "), agg AS (SELECT g.person_id, min(g.d0) AS d0, max(g.d1) AS d1 FROM spans g "
                    "WHERE EXISTS (SELECT 1 FROM ");
    pg_qual(&b, sc, "person");
    cg_buf_puts(&b,
                " p WHERE p.person_id = g.person_id) GROUP BY g.person_id), gone AS (DELETE FROM ");
    pg_qual(&b, sc, "observation_period");
    cg_buf_puts(&b, " o WHERE o.person_id IN (SELECT pid FROM touched) AND (o.person_id NOT IN "
                    "(SELECT person_id FROM agg) OR o.observation_period_id <> o.person_id)) "
                    "INSERT INTO ");
    pg_qual(&b, sc, "observation_period");
    cg_buf_puts(&b, " AS o (observation_period_id, person_id, observation_period_start_date, "
                    "observation_period_end_date, period_type_concept_id) SELECT person_id, "
                    "person_id, d0, d1, 32817 FROM agg ON CONFLICT (observation_period_id) DO "
                    "UPDATE SET person_id = EXCLUDED.person_id, observation_period_start_date = "
                    "EXCLUDED.observation_period_start_date, observation_period_end_date = "
                    "EXCLUDED.observation_period_end_date WHERE (o.person_id, "
                    "o.observation_period_start_date, o.observation_period_end_date) IS DISTINCT "
                    "FROM (EXCLUDED.person_id, EXCLUDED.observation_period_start_date, "
                    "EXCLUDED.observation_period_end_date)");
    cg_buf_putc(&b, '\0');
    return b.data;
}

/* The persons whose period is made anew from all their rows: those a staged delete names (a
 * period may shrink) and those whose person row came (their earlier rows count from now). */
static char *touched_sql(const pg_conf_t *conf)
{
    cg_buf_t b;
    cg_buf_init(&b);
    int first = 1;
    for (size_t i = 0; i < pg_table_count(); i++) {
        const cg_omop_table_t *t = pg_table_at(i);
        const cg_omop_column_t *col = cg_omop_column(t, "person_id", NULL);
        if (!col)
            continue;
        cg_buf_puts(&b, first ? "SELECT " : " UNION ALL SELECT ");
        id_expr(&b, conf, t, col);
        cg_buf_puts(&b, " FROM ");
        stage_name(&b, t);
        cg_buf_puts(&b, strcmp(t->name, "person") ? " s WHERE s.cg_op = 'd'" : " s");
        first = 0;
    }
    cg_buf_putc(&b, '\0');
    return b.data;
}

/* The periods of the persons whose rows a batch upserted, widened to those rows' dates (read
 * back from the tables by key, so a row PostgreSQL refused counts for nothing): one pass over
 * the batch, not over each person's history. */
static char *widen_sql(const pg_conf_t *conf)
{
    const char *sc = conf->schema;
    cg_buf_t b;
    cg_buf_init(&b);
    cg_buf_puts(&b, "WITH spans AS (");
    int first = 1;
    for (size_t i = 0; i < sizeof(period_dates) / sizeof(period_dates[0]); i++) {
        const cg_omop_table_t *t = cg_omop_table(period_dates[i].table);
        const cg_omop_column_t *key = t ? pg_table_key(t) : NULL;
        if (!key || pg_table_index(t) < 0 || !cg_omop_column(t, period_dates[i].start, NULL))
            continue;
        const char *end = period_dates[i].end && cg_omop_column(t, period_dates[i].end, NULL)
                              ? period_dates[i].end
                              : period_dates[i].start;
        cg_buf_printf(&b,
                      "%sSELECT t.person_id, t.%s AS d0, greatest(t.%s, coalesce(t.%s, t.%s)) AS "
                      "d1 FROM ",
                      first ? "" : " UNION ALL ", period_dates[i].start, period_dates[i].start, end,
                      period_dates[i].start);
        pg_qual(&b, sc, t->name);
        cg_buf_puts(&b, " t WHERE t.");
        pg_ident(&b, key->name);
        cg_buf_puts(&b, " IN (SELECT ");
        value_expr(&b, conf, t, key);
        cg_buf_puts(&b, " FROM ");
        stage_name(&b, t);
        cg_buf_puts(&b, " s WHERE s.cg_op = 'u')");
        first = 0;
    }
    cg_buf_puts(&b, "), agg AS (SELECT g.person_id, min(g.d0) AS d0, max(g.d1) AS d1 FROM spans g "
                    "WHERE EXISTS (SELECT 1 FROM ");
    pg_qual(&b, sc, "person");
    cg_buf_puts(&b, " p WHERE p.person_id = g.person_id) GROUP BY g.person_id) INSERT INTO ");
    pg_qual(&b, sc, "observation_period");
    cg_buf_puts(&b,
                " AS o (observation_period_id, person_id, observation_period_start_date, "
                "observation_period_end_date, period_type_concept_id) SELECT person_id, "
                "person_id, d0, d1, 32817 FROM agg ON CONFLICT (observation_period_id) DO "
                "UPDATE SET observation_period_start_date = "
                "least(o.observation_period_start_date, "
                "EXCLUDED.observation_period_start_date), observation_period_end_date = "
                "greatest(o.observation_period_end_date, EXCLUDED.observation_period_end_date) "
                "WHERE EXCLUDED.observation_period_start_date < o.observation_period_start_date "
                "OR EXCLUDED.observation_period_end_date > o.observation_period_end_date");
    cg_buf_putc(&b, '\0');
    return b.data;
}

static int derive_periods(pg_apply_t *a, PGconn *c, char *errstr, size_t errstr_size)
{
    if (!a->periods_sql) {
        char *touched = touched_sql(a->conf);
        a->periods_sql = touched ? periods_sql(a->conf, touched) : NULL;
        a->widen_sql = widen_sql(a->conf);
        free(touched);
        if (!a->periods_sql || !a->widen_sql)
            return -1;
    }
    /* widen first: a person made anew after it is then exact; the remake reads each touched
     * person's history, so it runs only when a batch has someone to remake */
    if (pg_exec(c, a->widen_sql, errstr, errstr_size))
        return -1;
    if (a->remake && pg_exec(c, a->periods_sql, errstr, errstr_size))
        return -1;
    a->remake = 0;
    return 0;
}

int pg_apply_flush(pg_apply_t *a, PGconn *c, char *errstr, size_t errstr_size)
{
    cg_buf_t sql;
    cg_buf_init(&sql);
    int rc = 0;
    for (size_t i = 0; i < a->n_stages && !rc; i++) {
        if (!a->stages[i].n)
            continue;
        cg_buf_reset(&sql);
        cg_buf_puts(&sql, "COPY ");
        stage_name(&sql, pg_table_at(i));
        cg_buf_puts(&sql, " FROM STDIN");
        cg_buf_putc(&sql, '\0');
        rc = copy_in(c, sql.data, &a->stages[i].copy, errstr, errstr_size);
    }
    for (size_t i = 0; i < a->n_stages && !rc; i++)
        rc = track_stage(a, c, i, 0, errstr, errstr_size);
    for (size_t i = 0; i < a->n_stages && !rc; i++)
        if (a->stages[i].n)
            rc = apply_table(a, c, i, errstr, errstr_size);
    for (size_t i = 0; i < a->n_stages && !rc; i++)
        rc = track_stage(a, c, i, 1, errstr, errstr_size);
    if (!rc)
        rc = derive_periods(a, c, errstr, errstr_size);
    /* the staging tables are the session's: emptied for the next batch */
    cg_buf_reset(&sql);
    for (size_t i = 0; i < a->n_stages && !rc; i++) {
        if (!a->stages[i].n)
            continue;
        cg_buf_puts(&sql, sql.len ? ", " : "TRUNCATE ");
        stage_name(&sql, pg_table_at(i));
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
        rc = copy_in(c, sql.data, &a->rejects, errstr, errstr_size);
    }
    cg_buf_free(&sql);
    if (!rc)
        pg_apply_clear(a);
    return rc;
}

int pg_apply_merge(pg_apply_t *a, PGconn *c, const char *merged, const char *survivor,
                   const pg_pos_t *pos, char *errstr, size_t errstr_size)
{
    const pg_conf_t *conf = a->conf;
    int ints = conf->id_type == PG_IDS_INTEGER;
    cg_buf_t b;
    cg_buf_init(&b);
    /* $1 merged, $2 survivor: their ids as the tables store them */
    const char *m_id = "$1::bigint", *s_id = "$2::bigint";
    cg_buf_t mid, sid;
    cg_buf_init(&mid);
    cg_buf_init(&sid);
    if (ints) {
        cg_buf_puts(&mid, "(SELECT id FROM ");
        pg_qual(&mid, conf->schema, "cg_id_map");
        cg_buf_puts(&mid, " WHERE source_id = $1::bigint)");
        cg_buf_puts(&sid, "(SELECT id FROM ");
        pg_qual(&sid, conf->schema, "cg_id_map");
        cg_buf_puts(&sid, " WHERE source_id = $2::bigint)");
    } else {
        cg_buf_puts(&mid, m_id);
        cg_buf_puts(&sid, s_id);
    }
    cg_buf_putc(&mid, '\0');
    cg_buf_putc(&sid, '\0');
    /* statements one by one: the extended protocol takes one per call */
    const char *params[2] = {merged, survivor};
    const Oid types[2] = {20, 20}; /* int8: typed, so a statement may leave one out */
    int rc = 0;
    char *stmts[64];
    size_t n = 0;
    if (ints) {
        cg_buf_reset(&b);
        cg_buf_puts(&b, "INSERT INTO ");
        pg_qual(&b, conf->schema, "cg_id_map");
        cg_buf_puts(&b, " (source_id) SELECT v FROM (VALUES ($2::bigint), ($1::bigint)) x(v) "
                        "WHERE NOT EXISTS (SELECT 1 FROM ");
        pg_qual(&b, conf->schema, "cg_id_map");
        cg_buf_puts(&b, " m WHERE m.source_id = x.v) ON CONFLICT DO NOTHING");
        cg_buf_putc(&b, '\0');
        stmts[n++] = strdup(b.data);
    }
    cg_buf_reset(&b);
    cg_buf_puts(&b, "INSERT INTO ");
    pg_qual(&b, conf->schema, "cg_person_merge");
    cg_buf_puts(&b, " (merged_source_id, survivor_source_id) VALUES ($1::bigint, $2::bigint) ON "
                    "CONFLICT (merged_source_id) DO UPDATE SET survivor_source_id = "
                    "EXCLUDED.survivor_source_id");
    cg_buf_putc(&b, '\0');
    stmts[n++] = strdup(b.data);
    for (size_t i = 0; i < pg_table_count() && n + 4 < sizeof(stmts) / sizeof(stmts[0]); i++) {
        const cg_omop_table_t *t = pg_table_at(i);
        if (!strcmp(t->name, "person") || !cg_omop_column(t, "person_id", NULL))
            continue;
        if (!strcmp(t->name, "observation_period")) { /* derived: the survivor's is made anew */
            cg_buf_reset(&b);
            cg_buf_puts(&b, "DELETE FROM ");
            pg_qual(&b, conf->schema, "observation_period");
            cg_buf_printf(&b, " WHERE person_id = %s", mid.data);
            cg_buf_putc(&b, '\0');
            stmts[n++] = strdup(b.data);
            continue;
        }
        if (!strcmp(t->name, "death")) { /* one per person: the survivor's own stays */
            cg_buf_reset(&b);
            cg_buf_puts(&b, "DELETE FROM ");
            pg_qual(&b, conf->schema, "death");
            cg_buf_printf(&b, " WHERE person_id = %s AND EXISTS (SELECT 1 FROM ", mid.data);
            pg_qual(&b, conf->schema, "death");
            cg_buf_printf(&b, " WHERE person_id = %s)", sid.data);
            cg_buf_putc(&b, '\0');
            stmts[n++] = strdup(b.data);
        }
        cg_buf_reset(&b);
        cg_buf_puts(&b, "UPDATE ");
        pg_qual(&b, conf->schema, t->name);
        cg_buf_printf(&b, " SET person_id = %s WHERE person_id = %s", sid.data, mid.data);
        cg_buf_putc(&b, '\0');
        stmts[n++] = strdup(b.data);
    }
    cg_buf_reset(&b);
    cg_buf_puts(&b, "DELETE FROM ");
    pg_qual(&b, conf->schema, "person");
    cg_buf_printf(&b, " WHERE person_id = %s", mid.data);
    cg_buf_putc(&b, '\0');
    stmts[n++] = strdup(b.data);
    cg_buf_reset(&b);
    cg_buf_printf(&b, "SELECT %s", sid.data);
    cg_buf_putc(&b, '\0');
    stmts[n++] = periods_sql(conf, b.data);
    if (a->track) { /* both persons: the merged one leaves its cohorts, the survivor may join */
        char *topic = PQescapeLiteral(c, pos->topic, strlen(pos->topic));
        cg_buf_t src;
        cg_buf_init(&src);
        cg_buf_printf(&src,
                      "SELECT v AS pid, %s::text AS cg_topic, %" PRId32 " AS cg_part, %" PRId64
                      "::bigint AS cg_off, %" PRId64 "::bigint AS cg_seq FROM (VALUES (%s), "
                      "(%s)) p(v)",
                      topic ? topic : "NULL", pos->partition, pos->offset, ++a->seq, mid.data,
                      sid.data);
        cg_buf_putc(&src, '\0');
        cg_buf_reset(&b);
        track_insert(&b, src.data);
        cg_buf_putc(&b, '\0');
        stmts[n++] = strdup(b.data);
        cg_buf_free(&src);
        PQfreemem(topic);
    }
    for (size_t i = 0; i < n; i++) {
        if (rc || !stmts[i]) {
            rc = -1;
            free(stmts[i]);
            continue;
        }
        PGresult *r = PQexecParams(c, stmts[i], 2, types, params, NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            pg_message(r, c, errstr, errstr_size);
            rc = -1;
        }
        PQclear(r);
        free(stmts[i]);
    }
    cg_buf_free(&b);
    cg_buf_free(&mid);
    cg_buf_free(&sid);
    if (!rc)
        a->st.merged++;
    return rc;
}

/* An element of a PostgreSQL array literal: quoted, with its quotes and backslashes escaped. */
static void array_elem(cg_buf_t *b, const char *v)
{
    cg_buf_putc(b, '"');
    for (; *v; v++) {
        if (*v == '"' || *v == '\\')
            cg_buf_putc(b, '\\');
        cg_buf_putc(b, *v);
    }
    cg_buf_putc(b, '"');
}

int pg_apply_audit(pg_apply_t *a, PGconn *c, const char *subscriber, char *errstr,
                   size_t errstr_size)
{
    cg_buf_t pol, tab, lev, cnt;
    cg_buf_init(&pol);
    cg_buf_init(&tab);
    cg_buf_init(&lev);
    cg_buf_init(&cnt);
    size_t n = 0;
    for (size_t i = 0; i < a->n_audit; i++) {
        const audit_line_t *l = &a->audit[i];
        if (l->rows <= 0)
            continue;
        cg_buf_putc(&pol, n ? ',' : '{');
        array_elem(&pol, l->policy);
        cg_buf_putc(&tab, n ? ',' : '{');
        array_elem(&tab, pg_table_at(l->table)->name);
        cg_buf_printf(&lev, "%c%d", n ? ',' : '{', l->level);
        cg_buf_printf(&cnt, "%c%" PRId64, n ? ',' : '{', l->rows);
        n++;
    }
    int rc = 0;
    if (n) {
        cg_buf_puts(&pol, "}");
        cg_buf_puts(&tab, "}");
        cg_buf_puts(&lev, "}");
        cg_buf_puts(&cnt, "}");
        cg_buf_t q;
        cg_buf_init(&q);
        cg_buf_puts(&q, "INSERT INTO ");
        pg_qual(&q, a->conf->schema, "cohortgate_release_audit");
        cg_buf_puts(&q, " (subscriber, policy, table_name, level, rows) SELECT $1, u.p, u.t, "
                        "u.l, u.n FROM unnest($2::text[], $3::text[], $4::smallint[], "
                        "$5::bigint[]) AS u(p, t, l, n)");
        int oom = cg_buf_putc(&q, '\0') != CG_OK || cg_buf_putc(&pol, '\0') != CG_OK ||
                  cg_buf_putc(&tab, '\0') != CG_OK || cg_buf_putc(&lev, '\0') != CG_OK ||
                  cg_buf_putc(&cnt, '\0') != CG_OK;
        if (oom) {
            snprintf(errstr, errstr_size, "out of memory");
            rc = -1;
        } else {
            const char *p[5] = {subscriber, pol.data, tab.data, lev.data, cnt.data};
            PGresult *r = PQexecParams(c, q.data, 5, NULL, p, NULL, NULL, 0);
            if (PQresultStatus(r) != PGRES_COMMAND_OK) {
                pg_message(r, c, errstr, errstr_size);
                rc = -1;
            }
            PQclear(r);
        }
        cg_buf_free(&q);
    }
    cg_buf_free(&pol);
    cg_buf_free(&tab);
    cg_buf_free(&lev);
    cg_buf_free(&cnt);
    return rc;
}
