/* pg_schema.c - the database side of `cohortgate sink --init`: the OMOP CDM v5.4 tables as
 * OHDSI's DDL has them (from the CDM's field-level CSV, compiled in: cg_omop.h), their primary
 * keys and the indexes the sink and cohort queries need, and the sink's own tables; the check
 * that a schema holds no other CDM version; and the tables in the order the sink applies them. */
#include "pg_int.h"

#include <stdlib.h>
#include <string.h>

#define PG_CDM_VERSION "5.4"

/* Parents before children, so that a batch never writes a row before the row it names. */
static const char *const fk_first[] = {
    "location",           "care_site",        "provider",     "person",
    "observation_period", "visit_occurrence", "visit_detail", NULL};

static const cg_omop_table_t *order[128];
static size_t n_order;

const cg_omop_column_t *pg_table_key(const cg_omop_table_t *t)
{
    const cg_omop_column_t *pk = cg_omop_primary_key(t, NULL);
    if (pk)
        return pk;
    if (!strcmp(t->name, "death")) /* one row per person */
        return cg_omop_column(t, "person_id", NULL);
    return NULL;
}

static void order_init(void)
{
    if (n_order)
        return;
    for (size_t i = 0; fk_first[i]; i++) {
        const cg_omop_table_t *t = cg_omop_table(fk_first[i]);
        if (t)
            order[n_order++] = t;
    }
    const cg_omop_table_t *t;
    for (size_t i = 0; (t = cg_omop_table_at(i)) && n_order < sizeof(order) / sizeof(order[0]);
         i++) {
        if (strcmp(t->schema, "CDM") || !pg_table_key(t) || pg_table_index(t) >= 0)
            continue;
        order[n_order++] = t;
    }
}

size_t pg_table_count(void)
{
    order_init();
    return n_order;
}

const cg_omop_table_t *pg_table_at(size_t i)
{
    order_init();
    return i < n_order ? order[i] : NULL;
}

int pg_table_index(const cg_omop_table_t *t)
{
    for (size_t i = 0; i < n_order; i++)
        if (order[i] == t)
            return (int)i;
    return -1;
}

int pg_column_is_id(const cg_omop_column_t *col)
{
    size_t n = strlen(col->name);
    return !col->concept_id && n > 3 && !strcmp(col->name + n - 3, "_id") &&
           (col->cdm_type == CG_OMOP_INTEGER || col->cdm_type == CG_OMOP_BIGINT);
}

/* The column's type: the stock DDL's, ids bigint when the schema keeps the row ids as they are. */
static const char *column_type(const cg_omop_column_t *col, int id_type, char *buf, size_t size)
{
    if (pg_column_is_id(col))
        return id_type == PG_IDS_BIGINT || col->cdm_type == CG_OMOP_BIGINT ? "bigint" : "integer";
    if (col->cdm_type == CG_OMOP_INTEGER)
        return "integer";
    return cg_omop_pg_type(col, buf, size);
}

/* One CREATE TABLE IF NOT EXISTS, with its primary key (and death's one row per person). */
static void table_ddl(cg_buf_t *b, const char *schema, const cg_omop_table_t *t, int id_type)
{
    char ty[64];
    cg_buf_puts(b, "CREATE TABLE IF NOT EXISTS ");
    pg_qual(b, schema, t->name);
    cg_buf_puts(b, " (");
    for (size_t i = 0; i < t->n_columns; i++) {
        const cg_omop_column_t *col = &t->columns[i];
        cg_buf_puts(b, i ? ", " : "");
        pg_ident(b, col->name);
        cg_buf_printf(b, " %s%s", column_type(col, id_type, ty, sizeof(ty)),
                      col->required ? " NOT NULL" : "");
    }
    const cg_omop_column_t *pk = cg_omop_primary_key(t, NULL);
    if (pk) {
        cg_buf_puts(b, ", PRIMARY KEY (");
        pg_ident(b, pk->name);
        cg_buf_putc(b, ')');
    }
    cg_buf_puts(b, ");\n");
    if (!pk && !strcmp(t->name, "death")) {
        pg_index_ddl(b, schema, "cg_death_person", "death", 1, "(person_id)");
    }
}

/* The indexes of OHDSI's DDL that the sink's statements and cohort queries lean on. */
static void table_indexes(cg_buf_t *b, const char *schema, const cg_omop_table_t *t)
{
    const cg_omop_column_t *pk = cg_omop_primary_key(t, NULL);
    int concept_done = 0;
    for (size_t i = 0; i < t->n_columns; i++) {
        const cg_omop_column_t *col = &t->columns[i];
        int want = col != pk &&
                   (!strcmp(col->name, "person_id") || !strcmp(col->name, "visit_occurrence_id"));
        if (!want && col->concept_id && col != pk && !concept_done) {
            want = 1; /* the table's own concept, its first concept column */
            concept_done = 1;
        }
        if (!want || (!strcmp(t->name, "death") && !strcmp(col->name, "person_id")))
            continue;
        char name[160];
        cg_buf_t def;
        cg_buf_init(&def);
        cg_buf_putc(&def, '(');
        pg_ident(&def, col->name);
        cg_buf_putc(&def, ')');
        snprintf(name, sizeof(name), "idx_%s_%s", t->name, col->name);
        pg_index_ddl(b, schema, name, t->name, 0, def.data ? def.data : "()");
        cg_buf_free(&def);
    }
}

/* With bigint ids, the source time of the version (or delete) applied for each row id: the
 * stale-record rule's memory, which cg_id_map.t is with integer ids (README, "Order"). Made in
 * every schema (empty with integer ids), so a schema's id type never lacks it. */
static void row_time_ddl(cg_buf_t *b, const char *s)
{
    cg_buf_puts(b, "CREATE TABLE IF NOT EXISTS ");
    pg_qual(b, s, "cg_row_time");
    cg_buf_puts(b, " (source_id bigint PRIMARY KEY, t timestamptz NOT NULL);\n");
}

/* The sink's own tables. */
static void sink_ddl(cg_buf_t *b, const char *s, int id_type)
{
    cg_buf_puts(b, "CREATE TABLE IF NOT EXISTS ");
    pg_qual(b, s, "cg_sink_meta");
    cg_buf_puts(b, " (key text PRIMARY KEY, value text NOT NULL);\n");
    /* the next offset to consume per partition, written in the transaction of the rows */
    cg_buf_puts(b, "CREATE TABLE IF NOT EXISTS ");
    pg_qual(b, s, "cg_offsets");
    cg_buf_puts(b, " (topic text NOT NULL, partition integer NOT NULL, next_offset bigint NOT "
                   "NULL, updated_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (topic, "
                   "partition));\n");
    /* 63-bit row identity -> compact id; an identity column: collision-free by construction,
     * every id being drawn from its sequence (by the default, or by the direct path's nextval),
     * so no unique index on id is kept: it cost a third of the map's inserts. A look-up the
     * other way (compact id -> identity) scans, or a site adds an index of its own. */
    cg_buf_puts(b, "CREATE TABLE IF NOT EXISTS ");
    pg_qual(b, s, "cg_id_map");
    /* t: the source time of the row version (or delete) applied for the id, when it is a
     * row's key (the stale-record rule, README "Order") */
    cg_buf_printf(b,
                  " (source_id bigint PRIMARY KEY, id %s GENERATED BY DEFAULT AS IDENTITY "
                  "NOT NULL, t timestamptz);\n",
                  id_type == PG_IDS_BIGINT ? "bigint" : "integer");
    cg_buf_puts(b, "CREATE TABLE IF NOT EXISTS ");
    pg_qual(b, s, "cg_person_merge");
    cg_buf_puts(b, " (merged_source_id bigint PRIMARY KEY, survivor_source_id bigint NOT NULL, "
                   "merged_at timestamptz NOT NULL DEFAULT now());\n");
    cg_buf_puts(b, "CREATE TABLE IF NOT EXISTS ");
    pg_qual(b, s, "cg_rejects");
    cg_buf_puts(b, " (reject_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, rejected_at "
                   "timestamptz NOT NULL DEFAULT now(), topic text, partition integer, "
                   "\"offset\" bigint, table_name text, sqlstate text, reason text NOT NULL, "
                   "record text);\n");
    pg_index_ddl(b, s, "cg_rejects_table", "cg_rejects", 0, "(table_name, sqlstate)");
    pg_docs_ddl(b, s);
    row_time_ddl(b, s);
}

void pg_upgrade_ddl(cg_buf_t *b, const char *s)
{
    pg_docs_ddl(b, s);
    row_time_ddl(b, s);
    /* cg_id_map.t, in a schema made before it: added only when missing (ALTER TABLE would
     * wait for every sink's open transaction even when there is nothing to do) */
    cg_buf_t q;
    cg_buf_init(&q);
    pg_qual(&q, s, "cg_id_map");
    cg_buf_putc(&q, '\0');
    cg_buf_puts(b, "DO $cg$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = '");
    for (const char *p = q.data ? q.data : ""; *p; p++) {
        if (*p == '\'')
            cg_buf_putc(b, '\'');
        cg_buf_putc(b, *p);
    }
    cg_buf_puts(b, "'::regclass AND attname = 't' AND NOT attisdropped) THEN ALTER TABLE ");
    cg_buf_puts(b, q.data ? q.data : "");
    cg_buf_puts(b, " ADD COLUMN t timestamptz; END IF; END $cg$;\n");
    cg_buf_free(&q);
}

void pg_docs_ddl(cg_buf_t *b, const char *s)
{
    /* a retraction looks rows up by document, so its index leads with doc */
    cg_buf_puts(b, "CREATE TABLE IF NOT EXISTS ");
    pg_qual(b, s, "cg_row_doc");
    cg_buf_puts(b, " (table_name text NOT NULL, row_id bigint NOT NULL, doc text NOT NULL, "
                   "PRIMARY KEY (table_name, row_id));\n");
    pg_index_ddl(b, s, "cg_row_doc_doc", "cg_row_doc", 0, "(doc)");
    /* the documents a retraction replaced, per person (senders reuse document ids across
     * patients): a replaced version's records that come after its retraction are left out */
    cg_buf_puts(b, "CREATE TABLE IF NOT EXISTS ");
    pg_qual(b, s, "cg_doc_retracted");
    cg_buf_puts(b, " (doc text NOT NULL, person_id bigint NOT NULL, retracted_at timestamptz NOT "
                   "NULL DEFAULT now(), PRIMARY KEY (doc, person_id));\n");
}

void pg_release_ddl(cg_buf_t *b, const char *s)
{
    /* graded release: the rows each transaction loaded, per subscriber, policy version, table
     * and level (pg.subscriber) */
    cg_buf_puts(b, "CREATE TABLE IF NOT EXISTS ");
    pg_qual(b, s, "cohortgate_release_audit");
    cg_buf_puts(b, " (loaded_at timestamptz NOT NULL DEFAULT now(), subscriber text NOT NULL, "
                   "policy text NOT NULL, table_name text NOT NULL, level smallint NOT NULL, "
                   "rows bigint NOT NULL);\n");
}

void pg_cohort_ddl(cg_buf_t *b, const char *s)
{
    pg_members_ddl(b, s);
    /* the outbox: one row per enter, exit or change, written with the rows that caused it */
    cg_buf_puts(b, "CREATE TABLE IF NOT EXISTS ");
    pg_qual(b, s, "cg_cohort_events");
    cg_buf_puts(b, " (event_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
                   "cohort_definition_id bigint NOT NULL, definition_version bigint NOT NULL, "
                   "person_id bigint NOT NULL, person_source_value text, event text NOT NULL, "
                   "cohort_start_date date, cohort_end_date date, periods text NOT NULL, "
                   "source_topic text, source_partition integer, source_offset bigint, "
                   "created_at timestamptz NOT NULL DEFAULT now(), published_at timestamptz);\n");
    pg_index_ddl(b, s, "cg_cohort_events_unsent", "cg_cohort_events", 0,
                 "(event_id) WHERE published_at IS NULL");
    pg_index_ddl(b, s, "cg_cohort_events_person", "cg_cohort_events", 0,
                 "(cohort_definition_id, person_id)");
    /* what each definition was last evaluated with in full */
    cg_buf_puts(b, "CREATE TABLE IF NOT EXISTS ");
    pg_qual(b, s, "cg_cohort_state");
    cg_buf_puts(b, " (cohort_definition_id bigint PRIMARY KEY, definition_version bigint NOT "
                   "NULL, sql_md5 text NOT NULL, evaluated_at timestamptz NOT NULL DEFAULT "
                   "now());\n");
    /* the day up to which lapsed periods were announced (pg_cohorts_lapse); added to schemas
     * made before it */
    cg_buf_puts(b, "ALTER TABLE ");
    pg_qual(b, s, "cg_cohort_state");
    cg_buf_puts(b, " ADD COLUMN IF NOT EXISTS lapse_through date;\n");
    /* withdrawn consent, by pseudonym: honoured by the next batch's commit */
    cg_buf_puts(b, "CREATE TABLE IF NOT EXISTS ");
    pg_qual(b, s, "cg_withdrawn");
    cg_buf_puts(b, " (person_source_value text PRIMARY KEY, withdrawn_at timestamptz NOT NULL "
                   "DEFAULT now(), applied_at timestamptz);\n");
    pg_index_ddl(b, s, "cg_withdrawn_pending", "cg_withdrawn", 0,
                 "(person_source_value) WHERE applied_at IS NULL");
    pg_index_ddl(b, s, "cg_cohort_definition_subject", "cohort", 0,
                 "(cohort_definition_id, subject_id)");
}

void pg_omop_ddl(cg_buf_t *b, const char *schema, int id_type)
{
    cg_buf_puts(b, "CREATE SCHEMA IF NOT EXISTS ");
    pg_ident(b, schema);
    cg_buf_puts(b, ";\n");
    const cg_omop_table_t *t;
    for (size_t i = 0; (t = cg_omop_table_at(i)); i++)
        table_ddl(b, schema, t, id_type);
    for (size_t i = 0; (t = pg_table_at(i)); i++)
        table_indexes(b, schema, t);
}

typedef struct existing_col {
    char *table, *column, *type;
} existing_col_t;

/* What the schema holds now; refuses another CDM version or id type. 0 when it may be used. */
static int check_existing(PGconn *c, const pg_conf_t *conf, int *has_meta, char *errstr,
                          size_t errstr_size)
{
    const char *p[1] = {conf->schema};
    PGresult *r = PQexecParams(c,
                               "SELECT table_name, column_name, data_type FROM "
                               "information_schema.columns WHERE table_schema = $1",
                               1, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        pg_message(r, c, errstr, errstr_size);
        PQclear(r);
        return -1;
    }
    int rc = 0, n = PQntuples(r);
    *has_meta = 0;
    const char *const want_id = conf->id_type == PG_IDS_BIGINT ? "bigint" : "integer";
    for (int i = 0; i < n && !rc; i++) {
        const char *tn = PQgetvalue(r, i, 0), *cn = PQgetvalue(r, i, 1), *ty = PQgetvalue(r, i, 2);
        if (!strcmp(tn, "cg_sink_meta"))
            *has_meta = 1;
        if (!strcmp(tn, "person") && !strcmp(cn, "person_id") && strcmp(ty, want_id)) {
            snprintf(errstr, errstr_size,
                     "schema %s: person.person_id is %s, but pg.id_type is %s: use pg.id_type "
                     "\"%s\" or another schema",
                     conf->schema, ty, want_id, ty);
            rc = -1;
        }
    }
    /* every table of CDM v5.4 that is there must have every 5.4 column (v5.3's visit tables,
     * for one, have admitting_source_concept_id where 5.4 has admitted_from_concept_id) */
    const cg_omop_table_t *t;
    for (size_t ti = 0; !rc && (t = cg_omop_table_at(ti)); ti++) {
        int present = 0;
        for (int i = 0; i < n; i++)
            if (!strcmp(PQgetvalue(r, i, 0), t->name))
                present = 1;
        if (!present)
            continue;
        for (size_t ci = 0; !rc && ci < t->n_columns; ci++) {
            int found = 0;
            for (int i = 0; i < n && !found; i++)
                found = !strcmp(PQgetvalue(r, i, 0), t->name) &&
                        !strcmp(PQgetvalue(r, i, 1), t->columns[ci].name);
            if (!found) {
                snprintf(
                    errstr, errstr_size,
                    "schema %s holds a table %s without the column %s of OMOP CDM v" PG_CDM_VERSION
                    ": it is another CDM version (or not a CDM); the sink "
                    "writes v" PG_CDM_VERSION " only: use another pg.schema, or migrate it",
                    conf->schema, t->name, t->columns[ci].name);
                rc = -1;
            }
        }
    }
    int has_cdm_source = 0;
    for (int i = 0; i < n; i++)
        if (!strcmp(PQgetvalue(r, i, 0), "cdm_source"))
            has_cdm_source = 1;
    PQclear(r);
    if (rc || !has_cdm_source)
        return rc;
    /* what the CDM says of itself */
    cg_buf_t q;
    cg_buf_init(&q);
    cg_buf_puts(&q, "SELECT cdm_version FROM ");
    pg_qual(&q, conf->schema, "cdm_source");
    cg_buf_puts(&q, " WHERE cdm_version IS NOT NULL AND ltrim(lower(cdm_version), 'v') NOT LIKE "
                    "'" PG_CDM_VERSION "%' LIMIT 1");
    cg_buf_putc(&q, '\0');
    r = PQexec(c, q.data);
    cg_buf_free(&q);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        pg_message(r, c, errstr, errstr_size);
        rc = -1;
    } else if (PQntuples(r) > 0) {
        snprintf(errstr, errstr_size,
                 "schema %s holds OMOP CDM version %s (cdm_source.cdm_version); the sink writes "
                 "v" PG_CDM_VERSION " only: use another pg.schema",
                 conf->schema, PQgetvalue(r, 0, 0));
        rc = -1;
    }
    PQclear(r);
    return rc;
}

/* The sink's record of what --init made: version and id type. */
static int check_meta(PGconn *c, const pg_conf_t *conf, char *errstr, size_t errstr_size)
{
    cg_buf_t q;
    cg_buf_init(&q);
    cg_buf_puts(&q, "SELECT key, value FROM ");
    pg_qual(&q, conf->schema, "cg_sink_meta");
    cg_buf_putc(&q, '\0');
    PGresult *r = PQexec(c, q.data);
    cg_buf_free(&q);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        pg_message(r, c, errstr, errstr_size);
        PQclear(r);
        return -1;
    }
    int rc = 0;
    const char *want_id = conf->id_type == PG_IDS_BIGINT ? "bigint" : "integer";
    for (int i = 0; i < PQntuples(r) && !rc; i++) {
        const char *k = PQgetvalue(r, i, 0), *v = PQgetvalue(r, i, 1);
        if (!strcmp(k, "cdm_version") && strcmp(v, PG_CDM_VERSION)) {
            snprintf(errstr, errstr_size,
                     "schema %s was made for OMOP CDM v%s; the sink writes v" PG_CDM_VERSION,
                     conf->schema, v);
            rc = -1;
        } else if (!strcmp(k, "id_type") && strcmp(v, want_id)) {
            snprintf(errstr, errstr_size,
                     "schema %s was made with pg.id_type \"%s\", the config says \"%s\"",
                     conf->schema, v, want_id);
            rc = -1;
        }
    }
    PQclear(r);
    return rc;
}

int pg_schema_create(PGconn *c, const pg_conf_t *conf, char *summary, size_t summary_size,
                     char *errstr, size_t errstr_size)
{
    char err[768];
    /* one --init at a time per schema; all or nothing */
    if (pg_exec(c, "BEGIN", err, sizeof(err)))
        goto fail;
    const char *p[1] = {conf->schema};
    PGresult *r = PQexecParams(c, "SELECT pg_advisory_xact_lock(hashtext('cohortgate:' || $1))", 1,
                               NULL, p, NULL, NULL, 0);
    int locked = PQresultStatus(r) == PGRES_TUPLES_OK;
    if (!locked)
        pg_message(r, c, err, sizeof(err));
    PQclear(r);
    if (!locked)
        goto fail;
    int has_meta = 0;
    if (check_existing(c, conf, &has_meta, err, sizeof(err)))
        goto fail;
    if (has_meta && check_meta(c, conf, err, sizeof(err)))
        goto fail;
    cg_buf_t b;
    cg_buf_init(&b);
    cg_buf_puts(&b, "SET LOCAL client_min_messages = warning;\n");
    size_t n_tables = cg_omop_table_count();
    pg_omop_ddl(&b, conf->schema, conf->id_type);
    for (size_t i = 0; i < conf->n_disease_dbs; i++) /* pg.cohorts.databases */
        pg_omop_ddl(&b, conf->disease_dbs[i].value, conf->id_type);
    sink_ddl(&b, conf->schema, conf->id_type);
    pg_cohort_ddl(&b, conf->schema);
    pg_release_ddl(&b, conf->schema);
    cg_buf_puts(&b, "INSERT INTO ");
    pg_qual(&b, conf->schema, "cg_sink_meta");
    cg_buf_printf(&b,
                  " VALUES ('cdm_version', '" PG_CDM_VERSION "'), ('id_type', '%s') ON "
                  "CONFLICT (key) DO NOTHING;\n",
                  conf->id_type == PG_IDS_BIGINT ? "bigint" : "integer");
    cg_buf_putc(&b, '\0');
    int rc = b.data ? pg_exec(c, b.data, err, sizeof(err)) : -1;
    cg_buf_free(&b);
    if (!rc)
        rc = pg_cdm_source_write(c, conf, 0, err, sizeof(err));
    if (rc || pg_exec(c, "COMMIT", err, sizeof(err)))
        goto fail;
    if (summary)
        snprintf(
            summary, summary_size,
            "schema %s: %zu OMOP CDM v" PG_CDM_VERSION " tables (%s ids, the sink applies %zu "
            "of them) and the sink's tables cg_offsets, cg_id_map, cg_person_merge, cg_row_doc, "
            "cg_doc_retracted, cg_row_time, "
            "cg_rejects, cg_sink_meta, cohortgate_release_audit%s",
            conf->schema, n_tables, conf->id_type == PG_IDS_BIGINT ? "bigint" : "integer",
            pg_table_count(), has_meta ? " (already there: nothing changed that existed)" : "");
    return 0;
fail:
    PQclear(PQexec(c, "ROLLBACK"));
    snprintf(errstr, errstr_size, "%s", err);
    return -1;
}

int pg_schema_verify(PGconn *c, const pg_conf_t *conf, char *errstr, size_t errstr_size)
{
    const char *p[1] = {conf->schema};
    PGresult *r = PQexecParams(c,
                               "SELECT 1 FROM information_schema.tables WHERE table_schema = $1 "
                               "AND table_name = 'cg_sink_meta'",
                               1, NULL, p, NULL, NULL, 0);
    int ok = PQresultStatus(r) == PGRES_TUPLES_OK, found = ok && PQntuples(r) > 0;
    if (!ok)
        pg_message(r, c, errstr, errstr_size);
    PQclear(r);
    if (!ok)
        return -1;
    if (!found) {
        snprintf(errstr, errstr_size,
                 "schema %s has no cohortgate sink tables: run `cohortgate sink --init -c "
                 "CONFIG` first",
                 conf->schema);
        return -1;
    }
    return check_meta(c, conf, errstr, errstr_size);
}

/* ---- cdm_source ---- */

/* The vocabulary's version as the vocabulary table says ('None' row, as Athena ships it), or ""
 * when the table is not there or empty; cut to cdm_source's 20 characters. */
static int vocabulary_version(PGconn *c, const char *schema, char *out, size_t size, char *errstr,
                              size_t errstr_size)
{
    cg_buf_t q;
    cg_buf_init(&q);
    pg_qual(&q, schema, "vocabulary");
    cg_buf_putc(&q, '\0');
    const char *p[1] = {q.data};
    PGresult *r = PQexecParams(c, "SELECT to_regclass($1) IS NOT NULL", 1, NULL, p, NULL, NULL, 0);
    int ok = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1;
    int present = ok && !strcmp(PQgetvalue(r, 0, 0), "t");
    if (!ok)
        pg_message(r, c, errstr, errstr_size);
    PQclear(r);
    out[0] = '\0';
    if (!ok || !present) {
        cg_buf_free(&q);
        return ok ? 0 : -1;
    }
    cg_buf_t s;
    cg_buf_init(&s);
    cg_buf_puts(&s, "SELECT left(vocabulary_version, 20) FROM ");
    pg_qual(&s, schema, "vocabulary");
    cg_buf_puts(&s, " WHERE vocabulary_id = 'None' AND vocabulary_version IS NOT NULL");
    cg_buf_putc(&s, '\0');
    cg_buf_free(&q);
    r = PQexec(c, s.data);
    cg_buf_free(&s);
    ok = PQresultStatus(r) == PGRES_TUPLES_OK;
    if (!ok)
        pg_message(r, c, errstr, errstr_size);
    else if (PQntuples(r) > 0)
        snprintf(out, size, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    return ok ? 0 : -1;
}

int pg_cdm_source_write(PGconn *c, const pg_conf_t *conf, int loaded, char *errstr,
                        size_t errstr_size)
{
    const char *sc = conf->schema;
    char name[300], vocab[32];
    if (conf->cdm_source_name && *conf->cdm_source_name)
        snprintf(name, sizeof(name), "%s", conf->cdm_source_name);
    else
        snprintf(name, sizeof(name), "cohortgate OMOP CDM (schema %s)", sc);
    const char *abbr = conf->cdm_source_abbreviation && *conf->cdm_source_abbreviation
                           ? conf->cdm_source_abbreviation
                           : sc;
    const char *holder = conf->cdm_holder && *conf->cdm_holder ? conf->cdm_holder : "cohortgate";
    if (vocabulary_version(c, sc, vocab, sizeof(vocab), errstr, errstr_size))
        return -1;
    cg_buf_t b;
    cg_buf_init(&b);
    if (loaded) { /* the date of the first batch: source_release_date from then on */
        cg_buf_puts(&b, "INSERT INTO ");
        pg_qual(&b, sc, "cg_sink_meta");
        cg_buf_puts(&b, " VALUES ('first_load_date', current_date::text) ON CONFLICT (key) DO "
                        "NOTHING");
        cg_buf_putc(&b, '\0');
        int rc = pg_exec(c, b.data, errstr, errstr_size);
        cg_buf_reset(&b);
        if (rc) {
            cg_buf_free(&b);
            return -1;
        }
    }
    /* the row it should be; one statement keeps the first row that says it and deletes every
     * other, the next inserts it when none is left (min(ctid): PostgreSQL 14 or later) */
    cg_buf_puts(&b, "WITH v AS (SELECT left($1::text, 255) AS n, left($2::text, 25) AS a, "
                    "left($3::text, 255) AS h, 'Records of the cohortgate topics, loaded by "
                    "cohortgate sink'::text AS d, 'cohortgate sink'::text AS e, coalesce((SELECT "
                    "value::date FROM ");
    pg_qual(&b, sc, "cg_sink_meta");
    cg_buf_puts(&b, " WHERE key = 'first_load_date'), current_date) AS s, current_date AS r, "
                    "'v5.4'::text AS cv, 756265 AS cvc, $4::text AS vv), keep AS (SELECT "
                    "min(c.ctid) AS ctid FROM ");
    pg_qual(&b, sc, "cdm_source");
    cg_buf_puts(&b, " c, v WHERE (c.cdm_source_name, c.cdm_source_abbreviation, c.cdm_holder, "
                    "c.source_description, c.cdm_etl_reference, c.source_release_date, "
                    "c.cdm_release_date, c.cdm_version, c.cdm_version_concept_id, "
                    "c.vocabulary_version) IS NOT DISTINCT FROM (v.n, v.a, v.h, v.d, v.e, v.s, "
                    "v.r, v.cv, v.cvc, v.vv)) ");
    size_t with_len = b.len;
    cg_buf_puts(&b, "DELETE FROM ");
    pg_qual(&b, sc, "cdm_source");
    cg_buf_puts(&b, " c WHERE c.ctid IS DISTINCT FROM (SELECT ctid FROM keep)");
    cg_buf_putc(&b, '\0');
    const char *p[4] = {name, abbr, holder, vocab};
    PGresult *r = PQexecParams(c, b.data, 4, NULL, p, NULL, NULL, 0);
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    if (!ok)
        pg_message(r, c, errstr, errstr_size);
    PQclear(r);
    if (ok) {
        b.len = with_len; /* the same row, inserted when the table is empty */
        cg_buf_puts(&b, "INSERT INTO ");
        pg_qual(&b, sc, "cdm_source");
        cg_buf_puts(&b, " (cdm_source_name, cdm_source_abbreviation, cdm_holder, "
                        "source_description, cdm_etl_reference, source_release_date, "
                        "cdm_release_date, cdm_version, cdm_version_concept_id, "
                        "vocabulary_version) SELECT n, a, h, d, e, s, r, cv, cvc, vv FROM v WHERE "
                        "NOT EXISTS (SELECT 1 FROM ");
        pg_qual(&b, sc, "cdm_source");
        cg_buf_puts(&b, ")");
        cg_buf_putc(&b, '\0');
        r = PQexecParams(c, b.data, 4, NULL, p, NULL, NULL, 0);
        ok = PQresultStatus(r) == PGRES_COMMAND_OK;
        if (!ok)
            pg_message(r, c, errstr, errstr_size);
        PQclear(r);
    }
    cg_buf_free(&b);
    return ok ? 0 : -1;
}
