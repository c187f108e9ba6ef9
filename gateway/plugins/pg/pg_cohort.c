/* pg_cohort.c - cohort membership kept current by the sink, in each batch's transaction.
 *
 * The Circe definitions of pg.cohorts.definitions are loaded and compiled once at start into SQL
 * that evaluates only the persons of the temporary table pg_temp.cg_changed_persons (pg_apply.c
 * fills it with every person whose rows a batch inserted, updated, deleted or merged) into
 * pg_temp.cg_cohort_new. Before the batch commits, one set-based statement compares those rows
 * with the persons' rows in `cohort`, replaces the rows of each (definition, person) whose
 * periods differ and writes an enter, exit or change event per such pair into the outbox table
 * cg_cohort_events, in the same transaction as the rows and the offsets. A Circe expression
 * correlates every criterion by person, so a person's rows from the restricted evaluation are
 * the rows a full recomputation gives them.
 *
 * After the commit, the publisher sends the outbox's unsent events to the events topic (keyed
 * by definition and person) with an idempotent producer, waits for the broker's
 * acknowledgements, then marks them sent: at least once (specs/cohorts/CIRCE.md, "Membership
 * events from the sink").
 */
#include "pg_int.h"

#include "cg_circe.h"
#include "cg_kafka.h"
#include "cg_log.h"
#include "cg_metrics.h"
#include "cg_metrics_gw.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define PUBLISH_BATCH 1000
#define N_EVENTS      4

typedef struct pg_def {
    char *path;
    cg_circe_t *circe;
    long long id, version;
    char *sql;      /* the restricted evaluation into pg_temp.cg_cohort_new */
    char *full_sql; /* the same for every person: a new or changed definition at start */
} pg_def_t;

struct pg_cohorts {
    const pg_conf_t *conf;
    pg_def_t *defs;
    size_t n_defs;
    char *diff_sql, *full_diff_sql;
    rd_kafka_t *producer;
    cg_kafka_topics_t *ready; /* the event topic, made ready before its first event */
    int topic_ensured;
    volatile int delivery_failed; /* a delivery report of the current publish failed */
    uint64_t published, events;
    uint64_t txn_events[N_EVENTS]; /* of each kind, written by the open transaction */
    cg_metric_series_t *m_events[N_EVENTS], *m_published;
    double next_lapse_s;              /* cg_metrics_now() of the next look for lapsed periods */
    double next_withdrawal_s;         /* of the next look for withdrawals between batches */
    double next_prune_s;              /* of the next pruning of published outbox rows */
    double next_sweep_s;              /* of the next idle look at the outbox (pg_cohorts_sweep) */
    cg_metric_t *m_members, *m_small; /* per definition name */
    char **disease_sql;               /* per pg.cohorts.databases entry (pg_disease.c) */
    size_t n_disease;
    pg_members_dest_t *rows_dests; /* per entry, with pg.cohorts.rows_topic (pg_members.c) */
    int rows_ensured;
    uint64_t rows_published;
    double next_count_s; /* cg_metrics_now() of the next member count */
};

/* lapse: a member's last period ended (its end date passed) since the last look */
static const char *const event_names[N_EVENTS] = {"enter", "exit", "change", "lapse"};

/* Whether a periodic look is due: every interval_ms at most (then the next one is armed). */
static int due(double *next_s, int interval_ms)
{
    double now = cg_metrics_now();
    if (now < *next_s)
        return 0;
    *next_s = now + interval_ms / 1000.0;
    return 1;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The definition files: the file itself, or a folder's *.json in name order. */
static int list_files(const char *path, char ***out, size_t *n, char *errstr, size_t errstr_size)
{
    struct stat st;
    if (stat(path, &st)) {
        snprintf(errstr, errstr_size, "pg.cohorts.definitions: %s: %s", path, strerror(errno));
        return -1;
    }
    *n = 0;
    *out = NULL;
    if (!S_ISDIR(st.st_mode)) {
        *out = malloc(sizeof(char *));
        if (!*out || !((*out)[0] = strdup(path)))
            return -1;
        *n = 1;
        return 0;
    }
    DIR *d = opendir(path);
    if (!d) {
        snprintf(errstr, errstr_size, "pg.cohorts.definitions: %s: %s", path, strerror(errno));
        return -1;
    }
    struct dirent *e;
    size_t cap = 0;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (e->d_name[0] == '.' || len < 6 || strcmp(e->d_name + len - 5, ".json"))
            continue;
        if (*n == cap) {
            cap = cap ? cap * 2 : 8;
            char **v = realloc(*out, cap * sizeof(*v));
            if (!v)
                break;
            *out = v;
        }
        char *full = malloc(strlen(path) + len + 2);
        if (!full)
            break;
        sprintf(full, "%s/%s", path, e->d_name);
        (*out)[(*n)++] = full;
    }
    closedir(d);
    if (*n)
        qsort(*out, *n, sizeof(char *), by_name);
    return 0;
}

void pg_cohorts_destroy(pg_cohorts_t *cs)
{
    if (!cs)
        return;
    for (size_t i = 0; i < cs->n_defs; i++) {
        free(cs->defs[i].path);
        cg_circe_destroy(cs->defs[i].circe);
        free(cs->defs[i].sql);
        free(cs->defs[i].full_sql);
    }
    free(cs->defs);
    /* every entry: one that failed half-way may hold a part */
    for (size_t i = 0; cs->disease_sql && i < cs->conf->n_disease_dbs; i++)
        free(cs->disease_sql[i]);
    free(cs->disease_sql);
    for (size_t i = 0; cs->rows_dests && i < cs->conf->n_disease_dbs; i++)
        free(cs->rows_dests[i].topic);
    free(cs->rows_dests);
    free(cs->diff_sql);
    free(cs->full_diff_sql);
    if (cs->producer) {
        rd_kafka_flush(cs->producer, 5000);
        rd_kafka_destroy(cs->producer);
    }
    cg_kafka_topics_destroy(cs->ready);
    free(cs);
}

/* The statement that applies the difference between the changed persons' new rows and their
 * rows in `cohort`, and writes the events (enter: no rows before; exit: none after; change: the
 * periods moved). One statement: its CTEs see one snapshot, so the DELETE never sees what the
 * INSERT adds. */
static char *diff_sql(const pg_cohorts_t *cs, int full)
{
    const char *sc = cs->conf->schema;
    cg_buf_t b;
    cg_buf_init(&b);
    cg_buf_puts(&b, "WITH defs(id, version) AS (VALUES ");
    for (size_t i = 0; i < cs->n_defs; i++)
        cg_buf_printf(&b, "%s(%lld::bigint, %lld::bigint)", i ? ", " : "", cs->defs[i].id,
                      cs->defs[i].version);
    cg_buf_puts(&b, "),\nold AS (SELECT c.cohort_definition_id AS d, c.subject_id AS p, "
                    "c.cohort_start_date AS s, c.cohort_end_date AS e FROM ");
    pg_qual(&b, sc, "cohort");
    /* a batch's few persons through the index; everyone (full) by a join */
    cg_buf_puts(&b, full ? " c WHERE c.cohort_definition_id IN (SELECT id FROM defs) AND "
                           "c.subject_id IN (SELECT person_id FROM pg_temp.cg_changed_persons)),\n"
                         : " c WHERE c.cohort_definition_id IN (SELECT id FROM defs) AND "
                           "c.subject_id = ANY (ARRAY(SELECT person_id FROM "
                           "pg_temp.cg_changed_persons))),\n");
    cg_buf_puts(&b, ""
                    "new AS (SELECT cohort_definition_id AS d, subject_id AS p, cohort_start_date "
                    "AS s, cohort_end_date AS e FROM pg_temp.cg_cohort_new),\n"
                    "oldp AS (SELECT d, p, min(s) AS s, max(e) AS e, jsonb_agg(jsonb_build_array("
                    "s, e) ORDER BY s, e) AS periods FROM old GROUP BY d, p),\n"
                    "newp AS (SELECT d, p, min(s) AS s, max(e) AS e, jsonb_agg(jsonb_build_array("
                    "s, e) ORDER BY s, e) AS periods FROM new GROUP BY d, p),\n"
                    "changes AS (SELECT coalesce(n.d, o.d) AS d, coalesce(n.p, o.p) AS p, CASE "
                    "WHEN o.d IS NULL THEN 'enter' WHEN n.d IS NULL THEN 'exit' ELSE 'change' END "
                    "AS ev, coalesce(n.s, o.s) AS s, coalesce(n.e, o.e) AS e, coalesce(n.periods, "
                    "'[]'::jsonb) AS periods FROM newp n FULL JOIN oldp o ON n.d = o.d AND n.p = "
                    "o.p WHERE n.periods IS DISTINCT FROM o.periods),\n"
                    "gone AS (DELETE FROM ");
    pg_qual(&b, sc, "cohort");
    cg_buf_puts(&b, " c USING changes x WHERE c.cohort_definition_id = x.d AND c.subject_id = "
                    "x.p),\nadded AS (INSERT INTO ");
    pg_qual(&b, sc, "cohort");
    cg_buf_puts(&b, " (cohort_definition_id, subject_id, cohort_start_date, cohort_end_date) "
                    "SELECT n.d, n.p, n.s, n.e FROM new n JOIN changes x ON x.d = n.d AND x.p = "
                    "n.p)\nINSERT INTO ");
    pg_qual(&b, sc, "cg_cohort_events");
    cg_buf_puts(&b, " (cohort_definition_id, definition_version, person_id, person_source_value, "
                    "event, cohort_start_date, cohort_end_date, periods, source_topic, "
                    "source_partition, source_offset) SELECT x.d, defs.version, x.p, "
                    "coalesce(pe.person_source_value, (SELECT v.person_source_value FROM ");
    pg_qual(&b, sc, "cg_cohort_events");
    /* an exit's person row may be gone (a merge, a person delete): the pseudonym its enter
     * event named */
    cg_buf_puts(&b, " v WHERE v.cohort_definition_id = x.d AND v.person_id = x.p AND "
                    "v.person_source_value IS NOT NULL ORDER BY v.event_id DESC LIMIT 1)), x.ev, "
                    "x.s, x.e, x.periods::text, cp.topic, cp.part, cp.off FROM changes x JOIN defs "
                    "ON defs.id = x.d JOIN pg_temp.cg_changed_persons cp ON cp.person_id = x.p "
                    "LEFT JOIN ");
    pg_qual(&b, sc, "person");
    cg_buf_puts(&b, " pe ON pe.person_id = x.p ORDER BY x.p, x.d RETURNING event");
    cg_buf_putc(&b, '\0');
    return b.data;
}

/* pg.cohorts.databases: each names a definition (by its header's name or id) and a schema of
 * its own; the statements that keep it are made once here. */
static int disease_load(pg_cohorts_t *cs, char *errstr, size_t errstr_size)
{
    const pg_conf_t *conf = cs->conf;
    if (!conf->n_disease_dbs)
        return 0;
    if (!(cs->disease_sql = calloc(conf->n_disease_dbs, sizeof(*cs->disease_sql))) ||
        !(cs->rows_dests = calloc(conf->n_disease_dbs, sizeof(*cs->rows_dests))))
        return -1;
    for (size_t i = 0; i < conf->n_disease_dbs; i++) {
        const cg_config_kv_t *kv = &conf->disease_dbs[i];
        const pg_def_t *d = NULL;
        for (size_t k = 0; k < cs->n_defs && !d; k++) {
            char id[24];
            snprintf(id, sizeof(id), "%lld", cs->defs[k].id);
            if (!strcmp(cg_circe_header(cs->defs[k].circe)->name, kv->key) || !strcmp(id, kv->key))
                d = &cs->defs[k];
        }
        if (!d) {
            snprintf(errstr, errstr_size,
                     "pg.cohorts.databases: no definition of pg.cohorts.definitions is named or "
                     "numbered '%s'",
                     kv->key);
            return -1;
        }
        if (!strcmp(kv->value, conf->schema) || !*kv->value) {
            snprintf(errstr, errstr_size,
                     "pg.cohorts.databases: '%s' needs a schema of its own, not '%s'", kv->key,
                     kv->value);
            return -1;
        }
        for (size_t k = 0; k < i; k++)
            if (!strcmp(conf->disease_dbs[k].value, kv->value)) {
                snprintf(errstr, errstr_size,
                         "pg.cohorts.databases: '%s' and '%s' both name schema '%s'",
                         conf->disease_dbs[k].key, kv->key, kv->value);
                return -1;
            }
        int rows = conf->cohort_rows_topic && *conf->cohort_rows_topic;
        if (!(cs->disease_sql[i] = pg_disease_sql(conf->schema, kv->value, d->id, rows)))
            return -1;
        if (rows && !(cs->rows_dests[i].topic = pg_members_topic(conf->cohort_rows_topic, kv->key)))
            return -1;
        cs->rows_dests[i].def = d->id;
        cs->n_disease++;
    }
    return 0;
}

int pg_cohorts_load(const pg_conf_t *conf, pg_cohorts_t **out, char *errstr, size_t errstr_size)
{
    *out = NULL;
    if (!conf->cohort_definitions || !*conf->cohort_definitions)
        return 0;
    char **files = NULL;
    size_t n = 0;
    if (list_files(conf->cohort_definitions, &files, &n, errstr, errstr_size))
        return -1;
    pg_cohorts_t *cs = calloc(1, sizeof(*cs));
    int rc = cs ? 0 : -1;
    if (cs) {
        cs->conf = conf;
        cs->defs = calloc(n ? n : 1, sizeof(*cs->defs));
        rc = cs->defs ? 0 : -1;
    }
    if (!rc && !n) {
        snprintf(errstr, errstr_size, "pg.cohorts.definitions: %s holds no .json definition",
                 conf->cohort_definitions);
        rc = -1;
    }
    for (size_t i = 0; i < n && !rc; i++) {
        cg_error_t err;
        memset(&err, 0, sizeof(err)); /* formatted even when the loader wrote none */
        size_t n_errs = 0;
        cg_circe_t *c = cg_circe_load(files[i], &err, 1, &n_errs);
        if (!c) {
            char buf[512];
            snprintf(errstr, errstr_size, "%s%s", cg_error_format(&err, buf, sizeof(buf)),
                     n_errs > 1 ? " (and more: `cohortgate cohort check` lists them)" : "");
            rc = -1;
            break;
        }
        const cg_circe_header_t *h = cg_circe_header(c);
        pg_def_t *d = &cs->defs[cs->n_defs++];
        d->circe = c;
        d->path = strdup(files[i]);
        if (!h->present) {
            snprintf(errstr, errstr_size,
                     "%s: a definition the sink keeps needs a cohortgate header (its id and "
                     "version, specs/cohorts/CIRCE.md); this is a bare Circe expression",
                     files[i]);
            rc = -1;
            break;
        }
        d->id = h->id;
        d->version = h->version;
        for (size_t k = 0; k + 1 < cs->n_defs; k++)
            if (cs->defs[k].id == d->id) {
                snprintf(errstr, errstr_size, "%s: cohort id %lld is also %s's", files[i], d->id,
                         cs->defs[k].path);
                rc = -1;
            }
        cg_circe_sql_options_t o = {conf->schema,
                                    conf->schema,
                                    d->id,
                                    NULL,
                                    "pg_temp.cg_cohort_new",
                                    "pg_temp.cg_changed_persons"};
        cg_buf_t sql;
        cg_buf_init(&sql);
        if (!rc && cg_circe_compile(c, &o, &sql) != CG_OK) {
            snprintf(errstr, errstr_size, "%s: does not compile (`cohortgate cohort check`)",
                     files[i]);
            rc = -1;
        }
        cg_buf_putc(&sql, '\0');
        d->sql = sql.data;
        o.only_persons = NULL;
        cg_buf_init(&sql);
        if (!rc && cg_circe_compile(c, &o, &sql) != CG_OK)
            rc = -1;
        cg_buf_putc(&sql, '\0');
        d->full_sql = sql.data;
        if (!rc && (!d->sql || !d->full_sql))
            rc = -1;
    }
    for (size_t i = 0; i < n; i++)
        free(files[i]);
    free(files);
    if (!rc && (!(cs->diff_sql = diff_sql(cs, 0)) || !(cs->full_diff_sql = diff_sql(cs, 1))))
        rc = -1;
    if (!rc)
        rc = disease_load(cs, errstr, errstr_size);
    if (rc) {
        if (!*errstr)
            snprintf(errstr, errstr_size, "out of memory");
        pg_cohorts_destroy(cs);
        return -1;
    }
    *out = cs;
    return 0;
}

void pg_cohorts_metrics(pg_cohorts_t *cs, cg_metrics_gw_t *metrics)
{
    cg_metrics_t *reg = cs && metrics ? cg_metrics_gw_registry(metrics) : NULL;
    if (!reg)
        return;
    cg_metric_t *ev = cg_metrics_counter(reg, "cohortgate_sink_cohort_events_total",
                                         "Cohort membership events the sink committed to its "
                                         "outbox, by event (enter, exit, change, lapse)",
                                         "event");
    for (int k = 0; k < N_EVENTS; k++)
        cs->m_events[k] = cg_metric_get1(ev, event_names[k]);
    cg_metric_t *pub = cg_metrics_counter(reg, "cohortgate_sink_cohort_events_published_total",
                                          "Cohort membership events sent to the events topic "
                                          "and marked published",
                                          "");
    cs->m_published = cg_metric_get(pub, NULL);
    cs->m_members = cg_metrics_gauge(reg, "cohortgate_sink_cohort_members",
                                     "Distinct persons with a row in `cohort` per definition, "
                                     "counted every pg.cohorts.count_interval_ms; 0 for a small "
                                     "cell (see cohortgate_sink_cohort_small_cell)",
                                     "definition");
    cs->m_small = cg_metrics_gauge(reg, "cohortgate_sink_cohort_small_cell",
                                   "1 when the definition has members but fewer than "
                                   "pg.cohorts.small_cell: its members gauge shows 0",
                                   "definition");
}

int pg_cohorts_count_members(pg_cohorts_t *cs, PGconn *c, int force, char *errstr,
                             size_t errstr_size)
{
    if (!cs || !cs->n_defs || !cs->m_members || !cs->conf->cohort_count_ms)
        return 0;
    double now = cg_metrics_now();
    if (!force && now < cs->next_count_s)
        return 0;
    cs->next_count_s = now + cs->conf->cohort_count_ms / 1000.0;
    cg_buf_t b;
    cg_buf_init(&b);
    cg_buf_puts(&b, "SELECT cohort_definition_id, count(DISTINCT subject_id) FROM ");
    pg_qual(&b, cs->conf->schema, "cohort");
    cg_buf_puts(&b, " WHERE cohort_definition_id IN (");
    for (size_t i = 0; i < cs->n_defs; i++)
        cg_buf_printf(&b, "%s%lld", i ? ", " : "", cs->defs[i].id);
    cg_buf_puts(&b, ") GROUP BY 1");
    cg_buf_putc(&b, '\0');
    PGresult *r = b.data ? PQexec(c, b.data) : NULL;
    cg_buf_free(&b);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        pg_message(r, c, errstr, errstr_size);
        PQclear(r);
        return -1;
    }
    long long k = cs->conf->cohort_small_cell;
    for (size_t i = 0; i < cs->n_defs; i++) {
        long long n = 0; /* a definition without rows has no row in the result */
        for (int t = 0; t < PQntuples(r); t++)
            if (strtoll(PQgetvalue(r, t, 0), NULL, 10) == cs->defs[i].id)
                n = strtoll(PQgetvalue(r, t, 1), NULL, 10);
        const char *name = cg_circe_header(cs->defs[i].circe)->name;
        int small = n > 0 && n < k;
        cg_metric_set(cg_metric_get1(cs->m_members, name), small ? 0 : (double)n);
        cg_metric_set(cg_metric_get1(cs->m_small, name), small);
    }
    PQclear(r);
    return 0;
}

void pg_cohorts_bind(pg_cohorts_t *cs, const pg_conf_t *conf)
{
    cs->conf = conf;
}

void pg_cohorts_swap(pg_cohorts_t *cs, pg_cohorts_t *fresh)
{
    /* the definitions' part of the struct, whole; the rest (publisher, metrics, counts,
     * timers) is cs's and stays */
    pg_cohorts_t t = *cs;
    cs->defs = fresh->defs;
    cs->n_defs = fresh->n_defs;
    cs->diff_sql = fresh->diff_sql;
    cs->full_diff_sql = fresh->full_diff_sql;
    cs->disease_sql = fresh->disease_sql;
    cs->n_disease = fresh->n_disease;
    cs->rows_dests = fresh->rows_dests;
    fresh->defs = t.defs;
    fresh->n_defs = t.n_defs;
    fresh->diff_sql = t.diff_sql;
    fresh->full_diff_sql = t.full_diff_sql;
    fresh->disease_sql = t.disease_sql;
    fresh->n_disease = t.n_disease;
    fresh->rows_dests = t.rows_dests;
    cs->topic_ensured = 0; /* a new definition's rows topic is made ready too */
}

void pg_cohorts_txn_end(pg_cohorts_t *cs, int committed)
{
    if (!cs)
        return;
    for (int k = 0; k < N_EVENTS; k++) {
        if (committed) {
            cs->events += cs->txn_events[k];
            cg_metric_inc(cs->m_events[k], cs->txn_events[k]);
        }
        cs->txn_events[k] = 0;
    }
}

size_t pg_cohorts_count(const pg_cohorts_t *cs)
{
    return cs ? cs->n_defs : 0;
}

int pg_cohorts_prepare(pg_cohorts_t *cs, PGconn *c, char *errstr, size_t errstr_size)
{
    cg_buf_t b;
    cg_buf_init(&b);
    pg_cohort_ddl(&b, cs->conf->schema);
    if (cs->n_disease) { /* the disease schemas, as --init makes them */
        cg_buf_puts(&b, "SET client_min_messages = warning;\n");
        for (size_t i = 0; i < cs->n_disease; i++)
            pg_omop_ddl(&b, cs->conf->disease_dbs[i].value, cs->conf->id_type);
        pg_disease_ddl(&b);
        cg_buf_puts(&b, "RESET client_min_messages;\n");
    }
    cg_buf_puts(&b, "CREATE TEMP TABLE IF NOT EXISTS cg_cohort_new (cohort_definition_id bigint, "
                    "subject_id bigint, cohort_start_date date, cohort_end_date date);\n");
    cg_buf_putc(&b, '\0');
    int rc = b.data ? pg_exec(c, b.data, errstr, errstr_size) : -1;
    cg_buf_free(&b);
    return rc;
}

/* Runs a statement with parameters; 0, or -1 with the message. */
static int exec_params(PGconn *c, const char *sql, int n, const char *const *p, char *errstr,
                       size_t errstr_size)
{
    PGresult *r = PQexecParams(c, sql, n, NULL, p, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(r);
    int ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
    if (!ok)
        pg_message(r, c, errstr, errstr_size);
    PQclear(r);
    return ok ? 0 : -1;
}

/* full: every person is in cg_changed_persons (pg_cohorts_sync): the unrestricted SQL, planned
 * as `cohortgate cohort run` plans it. */
static int evaluate(pg_cohorts_t *cs, PGconn *c, int full, char *errstr, size_t errstr_size)
{
    char q[512];
    cg_buf_t b;
    cg_buf_init(&b);
    /* a withdrawal not yet honoured: the person is re-evaluated now, and leaves every cohort */
    cg_buf_puts(&b, "WITH w AS (UPDATE ");
    pg_qual(&b, cs->conf->schema, "cg_withdrawn");
    cg_buf_puts(&b, " SET applied_at = now() WHERE applied_at IS NULL RETURNING "
                    "person_source_value) INSERT INTO pg_temp.cg_changed_persons (person_id, "
                    "seq) SELECT pe.person_id, 0 FROM ");
    pg_qual(&b, cs->conf->schema, "person");
    cg_buf_puts(&b, " pe JOIN w ON w.person_source_value = pe.person_source_value ON CONFLICT DO "
                    "NOTHING");
    cg_buf_putc(&b, '\0');
    int rc = b.data ? pg_exec(c, b.data, errstr, errstr_size) : -1;
    cg_buf_free(&b);
    if (rc)
        return -1;
    PGresult *r = PQexec(c, "SELECT count(*) FROM pg_temp.cg_changed_persons");
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        pg_message(r, c, errstr, errstr_size);
        PQclear(r);
        return -1;
    }
    long long changed = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    if (!changed)
        return 0;
    /* two instances may evaluate one person at once (a merge's persons on two partitions, a
     * rebalance): each would delete the rows it saw and insert its own, leaving both. Persons
     * are locked in 1,024 buckets, in order (no deadlock between evaluations), until commit */
    cg_buf_init(&b);
    cg_buf_puts(&b, "SELECT count(pg_advisory_xact_lock(hashtext('cohortgate:cohort:' || $1), "
                    "x.b)) FROM (SELECT DISTINCT (person_id % 1024)::integer AS b FROM "
                    "pg_temp.cg_changed_persons ORDER BY 1) x");
    cg_buf_putc(&b, '\0');
    const char *p1[1] = {cs->conf->schema};
    rc = b.data ? exec_params(c, b.data, 1, p1, errstr, errstr_size) : -1;
    cg_buf_free(&b);
    if (rc)
        return -1;
    if (pg_exec(c, "TRUNCATE pg_temp.cg_cohort_new", errstr, errstr_size))
        return -1;
    /* Circe's steps are CTEs the planner estimates at a row or two: with nested loops it joins
     * them to themselves in time quadratic in the batch's events (a batch of 1,000 persons took
     * minutes). Without, every step is a hash join over the batch's rows, which the criteria
     * read through the person_id indexes (= ANY of the changed persons): linear in the batch,
     * flat in the size of the database. The full evaluation too (4-6 s per definition over
     * 1.2M rows, where nested loops took over ten minutes). Only for these statements. */
    if (pg_exec(c,
                "SELECT set_config('cohortgate.nestloop', "
                "current_setting('enable_nestloop'), true), set_config('enable_nestloop', "
                "'off', true)",
                errstr, errstr_size))
        return -1;
    for (size_t i = 0; i < cs->n_defs; i++)
        if (pg_exec(c, full ? cs->defs[i].full_sql : cs->defs[i].sql, errstr, errstr_size))
            return -1;
    if (pg_exec(c,
                "SELECT set_config('enable_nestloop', "
                "current_setting('cohortgate.nestloop'), true)",
                errstr, errstr_size))
        return -1;
    /* a withdrawn person is in no cohort */
    cg_buf_init(&b);
    cg_buf_puts(&b, "DELETE FROM pg_temp.cg_cohort_new n USING ");
    pg_qual(&b, cs->conf->schema, "person");
    cg_buf_puts(&b, " pe, ");
    pg_qual(&b, cs->conf->schema, "cg_withdrawn");
    cg_buf_puts(&b, " w WHERE pe.person_id = n.subject_id AND w.person_source_value = "
                    "pe.person_source_value");
    cg_buf_putc(&b, '\0');
    rc = b.data ? pg_exec(c, b.data, errstr, errstr_size) : -1;
    cg_buf_free(&b);
    if (rc)
        return -1;
    r = PQexec(c, full ? cs->full_diff_sql : cs->diff_sql);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        pg_message(r, c, errstr, errstr_size);
        PQclear(r);
        return -1;
    }
    for (int i = 0; i < PQntuples(r); i++)
        for (int k = 0; k < N_EVENTS; k++)
            if (!strcmp(PQgetvalue(r, i, 0), event_names[k]))
                cs->txn_events[k]++;
    PQclear(r);
    /* the disease schemas follow `cohort` for the same persons (pg_disease.c) */
    for (size_t i = 0; i < cs->n_disease; i++)
        if (pg_exec(c, cs->disease_sql[i], errstr, errstr_size))
            return -1;
    snprintf(q, sizeof(q), "TRUNCATE pg_temp.cg_changed_persons, pg_temp.cg_cohort_new");
    return pg_exec(c, q, errstr, errstr_size);
}

int pg_cohorts_evaluate(pg_cohorts_t *cs, PGconn *c, char *errstr, size_t errstr_size)
{
    return evaluate(cs, c, 0, errstr, errstr_size);
}

int pg_cohorts_withdrawals(pg_cohorts_t *cs, PGconn *c, char *errstr, size_t errstr_size)
{
    if (!cs || !cs->n_defs || !cs->conf->cohort_withdrawal_ms)
        return 0;
    if (!due(&cs->next_withdrawal_s, cs->conf->cohort_withdrawal_ms))
        return 0;
    /* the partial index cg_withdrawn_pending makes the look cheap */
    cg_buf_t b;
    cg_buf_init(&b);
    cg_buf_puts(&b, "SELECT 1 FROM ");
    pg_qual(&b, cs->conf->schema, "cg_withdrawn");
    cg_buf_puts(&b, " WHERE applied_at IS NULL LIMIT 1");
    cg_buf_putc(&b, '\0');
    PGresult *r = b.data ? PQexec(c, b.data) : NULL;
    cg_buf_free(&b);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        pg_message(r, c, errstr, errstr_size);
        PQclear(r);
        return -1;
    }
    int pending = PQntuples(r) > 0;
    PQclear(r);
    if (!pending)
        return 0;
    /* the batch's evaluation with no batch: it takes the pending withdrawals as its changed
     * persons, and their disease schemas follow */
    int rc = pg_exec(c, "BEGIN", errstr, errstr_size);
    if (!rc)
        rc = evaluate(cs, c, 0, errstr, errstr_size);
    if (!rc)
        rc = pg_exec(c, "COMMIT", errstr, errstr_size);
    if (rc)
        PQclear(PQexec(c, "ROLLBACK"));
    long long exits = (long long)cs->txn_events[1];
    pg_cohorts_txn_end(cs, !rc);
    if (rc)
        return -1;
    cg_log(CG_LOG_INFO, "pg.cohort_withdrawals",
           "schema %s: withdrawals honoured between batches (%lld exit event(s))",
           cs->conf->schema ? cs->conf->schema : "(search_path)", exits);
    return 1;
}

/* The definitions whose id, version or compiled SQL differ from what the schema was last
 * evaluated with (cg_cohort_state) are evaluated for every person, in one transaction with their
 * `cohort_definition` rows: from then on, the batches keep them current. */
int pg_cohorts_sync(pg_cohorts_t *cs, PGconn *c, char *errstr, size_t errstr_size)
{
    const char *sc = cs->conf->schema;
    cg_buf_t b;
    cg_buf_init(&b);
    int rc = pg_exec(c, "BEGIN", errstr, errstr_size);
    /* one instance at a time: the others wait, then find the state current */
    cg_buf_puts(&b, "SELECT pg_advisory_xact_lock(hashtext('cohortgate:cohorts:' || $1))");
    cg_buf_putc(&b, '\0');
    const char *p1[1] = {sc};
    if (!rc)
        rc = exec_params(c, b.data, 1, p1, errstr, errstr_size);
    int stale = 0;
    for (size_t i = 0; i < cs->n_defs && !rc; i++) {
        pg_def_t *d = &cs->defs[i];
        char id[24], ver[24];
        snprintf(id, sizeof(id), "%lld", d->id);
        snprintf(ver, sizeof(ver), "%lld", d->version);
        cg_buf_reset(&b);
        cg_buf_puts(&b, "SELECT 1 FROM ");
        pg_qual(&b, sc, "cg_cohort_state");
        cg_buf_puts(&b, " WHERE cohort_definition_id = $1::bigint AND definition_version = "
                        "$2::bigint AND sql_md5 = md5($3)");
        cg_buf_putc(&b, '\0');
        const char *p3[3] = {id, ver, d->sql};
        PGresult *r = PQexecParams(c, b.data, 3, NULL, p3, NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_TUPLES_OK) {
            pg_message(r, c, errstr, errstr_size);
            rc = -1;
        } else if (!PQntuples(r))
            stale = 1;
        PQclear(r);
    }
    if (!rc && stale) {
        /* everyone the definitions could concern: every person, and every member */
        cg_buf_reset(&b);
        cg_buf_puts(&b, "INSERT INTO pg_temp.cg_changed_persons (person_id, seq) SELECT "
                        "person_id, 0 FROM ");
        pg_qual(&b, sc, "person");
        cg_buf_puts(&b, " UNION SELECT subject_id, 0 FROM ");
        pg_qual(&b, sc, "cohort");
        cg_buf_puts(&b, " WHERE cohort_definition_id IN (");
        for (size_t i = 0; i < cs->n_defs; i++)
            cg_buf_printf(&b, "%s%lld", i ? ", " : "", cs->defs[i].id);
        cg_buf_puts(&b, ") ON CONFLICT DO NOTHING");
        cg_buf_putc(&b, '\0');
        rc = pg_exec(c, b.data, errstr, errstr_size);
        if (!rc)
            rc = evaluate(cs, c, 1, errstr, errstr_size);
        for (size_t i = 0; i < cs->n_defs && !rc; i++) {
            pg_def_t *d = &cs->defs[i];
            const cg_circe_header_t *h = cg_circe_header(d->circe);
            char id[24], ver[24];
            snprintf(id, sizeof(id), "%lld", d->id);
            snprintf(ver, sizeof(ver), "%lld", d->version);
            char *syntax = cg_circe_expression_json(d->circe);
            const char *desc = cg_circe_description(d->circe);
            cg_buf_reset(&b);
            cg_buf_puts(&b, "WITH gone AS (DELETE FROM ");
            pg_qual(&b, sc, "cohort_definition");
            cg_buf_puts(&b, " WHERE cohort_definition_id = $1::bigint) INSERT INTO ");
            pg_qual(&b, sc, "cohort_definition");
            cg_buf_puts(&b, " (cohort_definition_id, cohort_definition_name, "
                            "cohort_definition_description, definition_type_concept_id, "
                            "cohort_definition_syntax, subject_concept_id, "
                            "cohort_initiation_date) VALUES ($1::bigint, $2, $3, 0, $4, 0, "
                            "CURRENT_DATE)");
            cg_buf_putc(&b, '\0');
            const char *p4[4] = {id, h->name, desc, syntax};
            rc = syntax ? exec_params(c, b.data, 4, p4, errstr, errstr_size) : -1;
            free(syntax);
            cg_buf_reset(&b);
            cg_buf_puts(&b, "INSERT INTO ");
            pg_qual(&b, sc, "cg_cohort_state");
            cg_buf_puts(&b, " (cohort_definition_id, definition_version, sql_md5) VALUES "
                            "($1::bigint, $2::bigint, md5($3)) ON CONFLICT (cohort_definition_id) "
                            "DO UPDATE SET definition_version = EXCLUDED.definition_version, "
                            "sql_md5 = EXCLUDED.sql_md5, evaluated_at = now()");
            cg_buf_putc(&b, '\0');
            const char *p3[3] = {id, ver, d->sql};
            if (!rc)
                rc = exec_params(c, b.data, 3, p3, errstr, errstr_size);
        }
        if (!rc)
            cg_log(CG_LOG_INFO, "pg.cohorts_evaluated",
                   "schema %s: %zu cohort definitions evaluated for every person (new or "
                   "changed definitions)",
                   sc, cs->n_defs);
    }
    if (!rc) {
        /* definitions this schema holds that the config no longer names: their rows are no
         * longer kept current; retiring them is an operator's decision, not a config typo's */
        cg_buf_reset(&b);
        cg_buf_puts(&b, "SELECT string_agg(cohort_definition_id::text, ', ' ORDER BY "
                        "cohort_definition_id) FROM ");
        pg_qual(&b, sc, "cg_cohort_state");
        cg_buf_puts(&b, " WHERE cohort_definition_id NOT IN (");
        for (size_t i = 0; i < cs->n_defs; i++)
            cg_buf_printf(&b, "%s%lld", i ? ", " : "", cs->defs[i].id);
        cg_buf_puts(&b, ")");
        cg_buf_putc(&b, '\0');
        PGresult *r = PQexec(c, b.data);
        if (PQresultStatus(r) == PGRES_TUPLES_OK && !PQgetisnull(r, 0, 0))
            cg_log(CG_LOG_WARN, "pg.cohorts_unconfigured",
                   "schema %s holds cohort definition(s) %s, which pg.cohorts.definitions no "
                   "longer names: their `cohort` rows are no longer kept current (`cohortgate "
                   "cohort retire` takes them out, with exit events)",
                   sc, PQgetvalue(r, 0, 0));
        PQclear(r);
    }
    cg_buf_free(&b);
    if (!rc)
        rc = pg_exec(c, "COMMIT", errstr, errstr_size);
    if (rc)
        PQclear(PQexec(c, "ROLLBACK"));
    pg_cohorts_txn_end(cs, !rc);
    return rc;
}

/* Lapse events: once a day (looked for every pg.cohorts.lapse_interval_ms), each member whose
 * last period's end date has passed since the last look gets a "lapse" event (its periods
 * unchanged): "no longer a member today". cg_cohort_state.lapse_through is the day up to which
 * that was said, set in the same transaction, under the lock of pg_cohorts_sync, so that of
 * several instances one says it, once. A definition's first look only starts the count: periods
 * that ended before it were never announced as current. */
int pg_cohorts_lapse(pg_cohorts_t *cs, PGconn *c, char *errstr, size_t errstr_size)
{
    if (!cs || !cs->n_defs || !cs->conf->cohort_lapse_ms)
        return 0;
    if (!due(&cs->next_lapse_s, cs->conf->cohort_lapse_ms))
        return 0;
    const char *sc = cs->conf->schema;
    cg_buf_t b, ids;
    cg_buf_init(&b);
    cg_buf_init(&ids);
    for (size_t i = 0; i < cs->n_defs; i++)
        cg_buf_printf(&ids, "%s%lld", i ? ", " : "", cs->defs[i].id);
    cg_buf_puts(&b, "UPDATE ");
    pg_qual(&b, sc, "cg_cohort_state");
    cg_buf_printf(&b,
                  " SET lapse_through = CURRENT_DATE - 1 WHERE lapse_through IS NULL AND "
                  "cohort_definition_id IN (%s);\nWITH due AS (SELECT cohort_definition_id AS d, "
                  "definition_version AS v, lapse_through AS since FROM ",
                  ids.data ? ids.data : "0");
    pg_qual(&b, sc, "cg_cohort_state");
    cg_buf_printf(&b,
                  " WHERE cohort_definition_id IN (%s) AND lapse_through < CURRENT_DATE - 1), "
                  "per AS (SELECT c.cohort_definition_id AS d, c.subject_id AS p, "
                  "min(c.cohort_start_date) AS s, max(c.cohort_end_date) AS e, jsonb_agg("
                  "jsonb_build_array(c.cohort_start_date, c.cohort_end_date) ORDER BY "
                  "c.cohort_start_date, c.cohort_end_date) AS periods FROM ",
                  ids.data ? ids.data : "0");
    pg_qual(&b, sc, "cohort");
    cg_buf_puts(&b, " c JOIN due ON due.d = c.cohort_definition_id GROUP BY 1, 2 HAVING "
                    "max(c.cohort_end_date) > min(due.since) AND max(c.cohort_end_date) < "
                    "CURRENT_DATE), said AS (INSERT INTO ");
    pg_qual(&b, sc, "cg_cohort_events");
    cg_buf_puts(&b, " (cohort_definition_id, definition_version, person_id, person_source_value, "
                    "event, cohort_start_date, cohort_end_date, periods) SELECT per.d, due.v, "
                    "per.p, pe.person_source_value, 'lapse', per.s, per.e, per.periods::text FROM "
                    "per JOIN due ON due.d = per.d LEFT JOIN ");
    pg_qual(&b, sc, "person");
    cg_buf_puts(&b, " pe ON pe.person_id = per.p ORDER BY per.p, per.d RETURNING 1) UPDATE ");
    pg_qual(&b, sc, "cg_cohort_state");
    cg_buf_puts(&b, " SET lapse_through = CURRENT_DATE - 1 WHERE cohort_definition_id IN (SELECT d "
                    "FROM due) RETURNING (SELECT count(*) FROM said)");
    cg_buf_putc(&b, '\0');
    cg_buf_free(&ids);
    int rc = b.data ? pg_exec(c, "BEGIN", errstr, errstr_size) : -1;
    const char *p1[1] = {sc};
    if (!rc)
        rc = exec_params(c, "SELECT pg_advisory_xact_lock(hashtext('cohortgate:cohorts:' || $1))",
                         1, p1, errstr, errstr_size);
    long long said = 0;
    if (!rc) {
        /* the statements before the last, then the last for its count */
        char *last = strrchr(b.data, '\n');
        *last = '\0';
        rc = pg_exec(c, b.data, errstr, errstr_size);
        PGresult *r = rc ? NULL : PQexec(c, last + 1);
        if (!rc && PQresultStatus(r) != PGRES_TUPLES_OK) {
            pg_message(r, c, errstr, errstr_size);
            rc = -1;
        } else if (!rc && PQntuples(r))
            said = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
        PQclear(r);
    }
    cg_buf_free(&b);
    if (!rc)
        rc = pg_exec(c, "COMMIT", errstr, errstr_size);
    if (rc) {
        PQclear(PQexec(c, "ROLLBACK"));
        return -1;
    }
    if (said) {
        cs->events += (uint64_t)said;
        cg_metric_inc(cs->m_events[3], (uint64_t)said);
        cg_log(CG_LOG_INFO, "pg.cohort_lapses", "schema %s: %lld member(s) whose last period ended",
               sc, said);
    }
    return 0;
}

/* ---- the publisher ---- */

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    pg_cohorts_t *cs = opaque;
    if (m->err) {
        cs->delivery_failed = 1;
        cg_log(CG_LOG_WARN, "pg.cohort_event_failed", "%s: %s (sent again later)",
               rd_kafka_topic_name(m->rkt), rd_kafka_err2str(m->err));
    }
}

int pg_cohorts_publisher(pg_cohorts_t *cs, const cg_config_t *cfg, char *errstr, size_t errstr_size)
{
    if (!cs || !cs->conf->cohort_publish || !cs->conf->cohort_topic)
        return 0;
    const char *bootstrap = cg_kafka_get(cg_kafka_conf(cfg), "bootstrap.servers");
    /* the sink's Kafka settings, but an idempotent producer, not a transactional one: the
     * outbox, not a Kafka transaction, ties the events to the database */
    cg_config_t plain = *cfg;
    plain.semantics = CG_DELIVERY_AT_LEAST_ONCE;
    cs->producer = cg_kafka_producer_new(&plain, bootstrap, on_delivery, cs, errstr, errstr_size);
    if (cs->producer && !(cs->ready = cg_kafka_topics_new(cfg, bootstrap))) {
        snprintf(errstr, errstr_size, "out of memory");
        return -1;
    }
    return cs->producer ? 0 : -1;
}

static int event_row(void *ctx, const PGresult *r, int i, char *errstr, size_t errstr_size)
{
    const pg_cohorts_t *cs = ctx;
    const char *hdrs[] = {"cg.cohort.event_id", PQgetvalue(r, i, 0)};
    return pg_outbox_produce(cs->producer, cs->conf->cohort_topic, PQgetvalue(r, i, 1),
                             PQgetvalue(r, i, 2), hdrs, 2, errstr, errstr_size);
}

static int publish_events(pg_cohorts_t *cs, PGconn *c, char *errstr, size_t errstr_size)
{
    const char *sc = cs->conf->schema;
    cg_buf_t b;
    cg_buf_init(&b);
    cg_buf_puts(&b, "SELECT event_id, cohort_definition_id::text || ':' || "
                    "coalesce(person_source_value, 'person_id:' || person_id::text), "
                    "jsonb_build_object('event_id', event_id, 'event', event, "
                    "'cohort_definition_id', cohort_definition_id, 'definition_version', "
                    "definition_version, 'person_id', person_id, 'person_source_value', "
                    "person_source_value, 'cohort_start_date', cohort_start_date, "
                    "'cohort_end_date', cohort_end_date, 'periods', periods::jsonb, "
                    "'source', CASE WHEN source_topic IS NULL THEN NULL ELSE "
                    "jsonb_build_object('topic', source_topic, 'partition', source_partition, "
                    "'offset', source_offset) END, 'time', created_at)::text FROM ");
    pg_qual(&b, sc, "cg_cohort_events");
    cg_buf_printf(&b,
                  " WHERE published_at IS NULL ORDER BY event_id LIMIT %d FOR UPDATE SKIP "
                  "LOCKED",
                  PUBLISH_BATCH);
    cg_buf_putc(&b, '\0');
    if (!b.data)
        return -1;
    int n;
    do { /* compaction keeps each key's last event: the lock keeps them in event_id order */
        n = pg_outbox_batch(c, cs->producer, &cs->delivery_failed, "cohortgate:publish:", sc,
                            b.data, "cg_cohort_events", "event_id", event_row, cs, errstr,
                            errstr_size);
        if (n > 0) {
            cs->published += (uint64_t)n;
            cg_metric_inc(cs->m_published, (uint64_t)n);
        }
    } while (n == PUBLISH_BATCH);
    cg_buf_free(&b);
    return n < 0 ? -1 : 0;
}

int pg_cohorts_sweep(pg_cohorts_t *cs, PGconn *c, char *errstr, size_t errstr_size)
{
    if (!cs || !cs->producer || !due(&cs->next_sweep_s, PG_OUTBOX_SWEEP_MS))
        return 0;
    return pg_cohorts_publish(cs, c, errstr, errstr_size);
}

int pg_cohorts_publish(pg_cohorts_t *cs, PGconn *c, char *errstr, size_t errstr_size)
{
    if (!cs || !cs->producer)
        return 0;
    int rows = cs->rows_dests && cs->n_disease && cs->rows_dests[0].topic;
    if (!cs->topic_ensured) { /* once, before any lock is taken */
        cs->topic_ensured = 1;
        cg_kafka_topics_ensure(cs->ready, cs->conf->cohort_topic, NULL, NULL);
        for (size_t i = 0; rows && i < cs->n_disease; i++)
            cg_kafka_topics_ensure(cs->ready, cs->rows_dests[i].topic, NULL, NULL);
    }
    if (publish_events(cs, c, errstr, errstr_size))
        return -1;
    if (rows && pg_members_publish(c, cs->producer, cs->conf->schema, cs->rows_dests, cs->n_disease,
                                   &cs->delivery_failed, &cs->rows_published, errstr, errstr_size))
        return -1;
    cs->next_sweep_s = cg_metrics_now() + PG_OUTBOX_SWEEP_MS / 1000.0; /* the outbox is empty */
    /* what was published and is old enough goes, every 10 minutes at most */
    if (!due(&cs->next_prune_s, 600000))
        return 0;
    long long deleted = 0;
    if (pg_outbox_prune(c, cs->conf->schema, cs->conf->cohort_rows_keep_h,
                        cs->conf->cohort_events_keep_d, &deleted, errstr, errstr_size))
        return -1;
    if (deleted)
        cg_log(CG_LOG_INFO, "pg.cohort_outbox_pruned",
               "%lld published outbox row(s) past pg.cohorts.rows_keep_hours / "
               "events_keep_days deleted",
               deleted);
    return 0;
}
