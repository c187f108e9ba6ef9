/* pg_apply_sql.c - the statements that apply one table's staged rows, built from the OMOP
 * table's columns: the upsert of the latest record per key (or of one record, row by row), the
 * delete (with what a person's or a visit's delete takes along), the id map's new ids, and the
 * persons a batch touches (for the cohorts). Text only: pg_apply_flush.c runs them.
 */
#include "pg_int.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/* The row id a staged id column names, as the target column stores it: the id map's compact
 * id, or the row id itself (bigint). person_id follows a person merge to the survivor. */
void pg_id_expr(cg_buf_t *b, const pg_conf_t *conf, const cg_omop_table_t *t,
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
    } else if (!col->required) {
        /* most optional ids are null: no index probe for them */
        cg_buf_puts(b, "CASE WHEN s.");
        pg_ident(b, col->name);
        cg_buf_puts(b, " IS NOT NULL THEN (SELECT m.id FROM ");
        pg_qual(b, conf->schema, "cg_id_map");
        cg_buf_printf(b, " m WHERE m.source_id = %s) END", src.data);
    } else {
        cg_buf_puts(b, "(SELECT m.id FROM ");
        pg_qual(b, conf->schema, "cg_id_map");
        cg_buf_printf(b, " m WHERE m.source_id = %s)", src.data);
    }
    cg_buf_free(&src);
}

void pg_value_expr(cg_buf_t *b, const pg_conf_t *conf, const cg_omop_table_t *t,
                   const cg_omop_column_t *col)
{
    if (pg_column_is_id(col)) {
        pg_id_expr(b, conf, t, col);
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
void pg_rows_from(cg_buf_t *b, const cg_omop_table_t *t, int64_t one_seq)
{
    if (one_seq > 0) {
        cg_buf_puts(b, "(SELECT * FROM ");
        pg_stage_name(b, t);
        cg_buf_printf(b, " WHERE cg_seq = %" PRId64 ") s", one_seq);
        return;
    }
    if (one_seq == PG_ROWS_UNIQUE) { /* no key twice: no sort for the latest */
        pg_stage_name(b, t);
        cg_buf_puts(b, " s");
        return;
    }
    const cg_omop_column_t *key = pg_table_key(t);
    cg_buf_puts(b, "(SELECT DISTINCT ON (");
    pg_ident(b, key->name);
    cg_buf_puts(b, ") * FROM ");
    pg_stage_name(b, t);
    cg_buf_puts(b, " ORDER BY ");
    pg_ident(b, key->name);
    /* the newest by source time (none: the oldest), then the last to arrive */
    cg_buf_puts(b, ", cg_time DESC NULLS LAST, cg_seq DESC) s");
}

void pg_not_stale(cg_buf_t *b, const pg_conf_t *conf, const char *key, const char *time)
{
    /* the applied versions' times: the id map's with integer ids, cg_row_time's with bigint */
    cg_buf_puts(b, " AND NOT EXISTS (SELECT 1 FROM ");
    pg_qual(b, conf->schema, conf->id_type == PG_IDS_INTEGER ? "cg_id_map" : "cg_row_time");
    cg_buf_printf(b, " m0 WHERE m0.source_id = %s AND m0.t > coalesce(%s, '-infinity'))", key,
                  time);
}

/* pg_not_stale of a staged row `s` of t. */
static void not_stale(cg_buf_t *b, const pg_conf_t *conf, const cg_omop_table_t *t)
{
    cg_buf_t key;
    cg_buf_init(&key);
    cg_buf_puts(&key, "s.");
    pg_ident(&key, pg_table_key(t)->name);
    cg_buf_putc(&key, '\0');
    pg_not_stale(b, conf, key.data ? key.data : "NULL", "s.cg_time");
    cg_buf_free(&key);
}

/* plain: a plain INSERT, for rows whose keys are new (no conflict to look for). */
static char *upsert_sql(const pg_conf_t *conf, const cg_omop_table_t *t, int64_t one_seq, int plain)
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
        pg_value_expr(&b, conf, t, &t->columns[k]);
    }
    cg_buf_puts(&b, " FROM ");
    pg_rows_from(&b, t, one_seq);
    cg_buf_puts(&b, " WHERE s.cg_op = 'u'");
    if (!strcmp(t->name, "person")) { /* a merged person stays merged */
        cg_buf_puts(&b, " AND NOT EXISTS (SELECT 1 FROM ");
        pg_qual(&b, conf->schema, "cg_person_merge");
        cg_buf_puts(&b, " g WHERE g.merged_source_id = s.person_id)");
    }
    if (plain) {
        cg_buf_putc(&b, '\0');
        return b.data;
    }
    not_stale(&b, conf, t);
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

char *pg_upsert_sql(const pg_conf_t *conf, const cg_omop_table_t *t, int64_t one_seq)
{
    return upsert_sql(conf, t, one_seq, 0);
}

char *pg_insert_sql(const pg_conf_t *conf, const cg_omop_table_t *t)
{
    return upsert_sql(conf, t, PG_ROWS_UNIQUE, 1);
}

/* The keys whose latest record is a delete, as the table stores them. */
static void deleted_keys(cg_buf_t *b, const pg_conf_t *conf, const cg_omop_table_t *t,
                         int64_t one_seq)
{
    cg_buf_puts(b, "(SELECT ");
    pg_value_expr(b, conf, t, pg_table_key(t));
    cg_buf_puts(b, " FROM ");
    pg_rows_from(b, t, one_seq);
    cg_buf_puts(b, " WHERE s.cg_op = 'd'");
    not_stale(b, conf, t);
    cg_buf_puts(b, ")");
}

/* A delete; a person's takes every row of that person_id with it, a visit's leaves no row
 * naming it (README "What goes out"). */
char *pg_delete_sql(const pg_conf_t *conf, const cg_omop_table_t *t, int64_t one_seq)
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
 * other in a cycle); ids already there are not offered, so the identity has no gaps. One scan of
 * the staging table for every id column. fast: without ON CONFLICT (a speculative insertion
 * per id costs a lock and a WAL record more), and it answers how many of the staged keys were
 * new; a concurrent instance's same new id then fails it (23505) and the other is run. */
char *pg_idmap_sql(const pg_conf_t *conf, const cg_omop_table_t *t, int fast)
{
    cg_buf_t b;
    cg_buf_init(&b);
    if (fast)
        cg_buf_puts(&b, "WITH ins AS (");
    cg_buf_puts(&b, "INSERT INTO ");
    pg_qual(&b, conf->schema, "cg_id_map");
    cg_buf_puts(&b, " (source_id) SELECT v FROM (SELECT DISTINCT x.v FROM ");
    pg_stage_name(&b, t);
    cg_buf_puts(&b, " s CROSS JOIN LATERAL (VALUES ");
    int first = 1;
    for (size_t k = 0; k < t->n_columns; k++) {
        const cg_omop_column_t *col = &t->columns[k];
        if (!pg_column_is_id(col))
            continue;
        cg_buf_puts(&b, first ? "(s." : ", (s.");
        pg_ident(&b, col->name);
        cg_buf_putc(&b, ')');
        first = 0;
    }
    if (first) {
        cg_buf_free(&b);
        return NULL;
    }
    cg_buf_puts(&b, ") x(v) WHERE x.v IS NOT NULL) y WHERE NOT EXISTS (SELECT 1 FROM ");
    pg_qual(&b, conf->schema, "cg_id_map");
    cg_buf_puts(&b, " m WHERE m.source_id = y.v) ORDER BY v");
    if (fast) {
        cg_buf_puts(&b, " RETURNING source_id) SELECT count(*) FROM ins WHERE source_id IN "
                        "(SELECT ");
        pg_ident(&b, pg_table_key(t)->name);
        cg_buf_puts(&b, " FROM ");
        pg_stage_name(&b, t);
        cg_buf_puts(&b, ")");
    } else {
        cg_buf_puts(&b, " ON CONFLICT DO NOTHING");
    }
    cg_buf_putc(&b, '\0');
    return b.data;
}

char *pg_time_sql(const pg_conf_t *conf, const cg_omop_table_t *t, int64_t one_seq)
{
    cg_buf_t b;
    cg_buf_init(&b);
    if (conf->id_type != PG_IDS_INTEGER) { /* one row per key (pg_rows_from) */
        cg_buf_puts(&b, "INSERT INTO ");
        pg_qual(&b, conf->schema, "cg_row_time");
        cg_buf_puts(&b, " AS m (source_id, t) SELECT s.");
        pg_ident(&b, pg_table_key(t)->name);
        cg_buf_puts(&b, ", s.cg_time FROM ");
        pg_rows_from(&b, t, one_seq);
        /* in key order: two instances never wait on each other in a cycle */
        cg_buf_puts(&b, " WHERE s.cg_time IS NOT NULL ORDER BY 1 ON CONFLICT (source_id) DO "
                        "UPDATE SET t = EXCLUDED.t WHERE m.t < EXCLUDED.t");
        cg_buf_putc(&b, '\0');
        return b.data;
    }
    cg_buf_puts(&b, "UPDATE ");
    pg_qual(&b, conf->schema, "cg_id_map");
    cg_buf_puts(&b, " m SET t = s.cg_time FROM ");
    pg_rows_from(&b, t, one_seq);
    cg_buf_puts(&b, " WHERE m.source_id = s.");
    pg_ident(&b, pg_table_key(t)->name);
    cg_buf_puts(&b, " AND s.cg_time IS NOT NULL AND (m.t IS NULL OR m.t < s.cg_time)");
    cg_buf_putc(&b, '\0');
    return b.data;
}

/* The INSERT of touched persons (a SELECT of person_id, cg_topic, cg_part, cg_off, cg_seq as
 * `src`) into pg_temp.cg_changed_persons, the latest record per person winning. */
void pg_track_insert(cg_buf_t *b, const char *src)
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
char *pg_track_sql(const pg_conf_t *conf, const cg_omop_table_t *t, int after)
{
    const cg_omop_column_t *pid = cg_omop_column(t, "person_id", NULL);
    if (!pid)
        return NULL;
    cg_buf_t src, b;
    cg_buf_init(&src);
    cg_buf_init(&b);
    if (after) {
        cg_buf_puts(&src, "SELECT ");
        pg_id_expr(&src, conf, t, pid);
        cg_buf_puts(&src, " AS pid, s.cg_topic, s.cg_part, s.cg_off, s.cg_seq FROM ");
        pg_stage_name(&src, t);
        cg_buf_puts(&src, " s");
    } else {
        const cg_omop_column_t *key = pg_table_key(t);
        cg_buf_puts(&src, "SELECT t.person_id AS pid, s.cg_topic, s.cg_part, s.cg_off, s.cg_seq "
                          "FROM ");
        pg_stage_name(&src, t);
        cg_buf_puts(&src, " s JOIN ");
        pg_qual(&src, conf->schema, t->name);
        cg_buf_puts(&src, " t ON t.");
        pg_ident(&src, key->name);
        cg_buf_puts(&src, " = ");
        pg_value_expr(&src, conf, t, key);
    }
    cg_buf_putc(&src, '\0');
    if (src.data)
        pg_track_insert(&b, src.data);
    cg_buf_free(&src);
    cg_buf_putc(&b, '\0');
    return b.data;
}
