/* pg_sink.c - the PostgreSQL sink (output.sink "pg", `cohortgate sink`): OMOP record envelopes
 * from the record topics into an OMOP CDM v5.4 schema, exactly once.
 *
 * The engine runs it in pass-through mode with exactly-once delivery: each input (one record)
 * is parsed here into a staged row of its table (pg_apply.c) inside the engine's transaction,
 * which is one database transaction; txn_commit applies what is staged and stores the inputs'
 * next offsets in cg_offsets in that same transaction, so rows and offsets commit together.
 * On an assignment the source starts each partition at the offset the database holds
 * (stored_positions). A second instance that took a partition over moves its offset on; an old
 * owner's commit then finds the offset past its batch and aborts (the offsets row is its
 * fence). */
#include "pg_int.h"

#include "cg_delivery.h"
#include "cg_log.h"
#include "cg_metrics.h"
#include "cg_metrics_gw.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PG_RECONNECT_MS  1000  /* between attempts while the database is away */
#define PG_START_TRIES   5     /* a start that meets a deadlock: tries in all */
#define PG_CDM_SOURCE_MS 60000 /* cdm_source kept current at most this often */

typedef struct part_start {
    char *topic;
    int32_t partition;
    int64_t first; /* the first offset of the open transaction */
} part_start_t;

typedef struct pg_sink {
    cg_engine_t *engine;
    const pg_conf_t *conf;
    PGconn *conn;
    pg_apply_t *apply;
    pg_cohorts_t *cohorts;  /* NULL: no cohort definitions configured */
    int cohorts_synced;     /* the definitions were brought up to date on this run */
    pg_cohorts_t *reloaded; /* SIGHUP's definitions, taken into use between transactions */
    int in_txn;
    int64_t next_connect_ms;
    void **tokens; /* staged records not yet reported delivered */
    size_t n_tokens, cap_tokens;
    part_start_t *starts;
    size_t n_starts, cap_starts;
    int fatal;
    char fatal_reason[512];
    uint64_t commits;
    int began;               /* a transaction was begun and has not ended */
    double txn_apply_s;      /* seconds the open transaction spent applying batches */
    int64_t cdm_source_next; /* mono_ms when cdm_source is next refreshed; 0 at start */
    int cdm_source_due;      /* the open transaction refreshed it: the time moves on at commit */
    cg_metric_t *m_latency;
    cg_metric_series_t *m_committed, *m_aborted;
    pg_envelope_t env;      /* the record being read (stage_fast) */
    pg_tinfo_t *tinfo;      /* per pg_table_at(): what stage_fast looks up per record */
    const char *subscriber; /* pg.subscriber: only its records load; NULL: any record */
    int max_level;          /* that subscriber's */
} pg_sink_t;

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void set_fatal(pg_sink_t *s, const char *reason)
{
    if (!s->fatal)
        snprintf(s->fatal_reason, sizeof(s->fatal_reason), "%s", reason);
    s->fatal = 1;
}

/* A connection ready for a transaction; after a loss, tries again at most every second. */
static int ensure_conn(pg_sink_t *s, char *errstr, size_t errstr_size)
{
    if (s->conn && PQstatus(s->conn) == CONNECTION_OK)
        return 0;
    if (s->conn) {
        PQfinish(s->conn);
        s->conn = NULL;
        s->in_txn = 0;
        cg_log(CG_LOG_WARN, "pg.disconnected", "connection to PostgreSQL lost; reconnecting");
    }
    int64_t now = mono_ms();
    if (now < s->next_connect_ms) {
        snprintf(errstr, errstr_size, "waiting to reconnect to PostgreSQL");
        return -1;
    }
    s->next_connect_ms = now + PG_RECONNECT_MS;
    PGconn *c = pg_connect(s->conf, errstr, errstr_size);
    if (!c)
        return -1;
    if (pg_schema_verify(c, s->conf, errstr, errstr_size)) {
        set_fatal(s, errstr); /* the schema is not (any more) one the sink can write */
        PQfinish(c);
        return -1;
    }
    { /* tables of a schema made before they existed: the documents' rows, the audit */
        cg_buf_t ddl;
        cg_buf_init(&ddl);
        pg_upgrade_ddl(&ddl, s->conf->schema);
        if (s->subscriber)
            pg_release_ddl(&ddl, s->conf->schema);
        cg_buf_putc(&ddl, '\0');
        int bad = !ddl.data || pg_exec(c, ddl.data, errstr, errstr_size);
        cg_buf_free(&ddl);
        if (bad) {
            PQfinish(c);
            return -1;
        }
    }
    if (pg_apply_prepare(s->apply, c, errstr, errstr_size) ||
        (s->cohorts && pg_cohorts_prepare(s->cohorts, c, errstr, errstr_size))) {
        PQfinish(c);
        return -1;
    }
    if (s->cohorts && !s->cohorts_synced) {
        if (pg_cohorts_sync(s->cohorts, c, errstr, errstr_size)) {
            PQfinish(c);
            return -1;
        }
        s->cohorts_synced = 1;
    }
    char cerr[512];
    if (s->cohorts && pg_cohorts_count_members(s->cohorts, c, 1, cerr, sizeof(cerr)))
        cg_log(CG_LOG_WARN, "pg.cohort_count_failed", "%s (counted after a later commit)", cerr);
    s->conn = c;
    cg_log(CG_LOG_INFO, "pg.connected", "host %s, port %s, database %s, user %s, schema %s",
           PQhost(c), PQport(c), PQdb(c), PQuser(c), s->conf->schema);
    return 0;
}

static void pgs_destroy(void *ctx)
{
    pg_sink_t *s = ctx;
    if (!s)
        return;
    if (s->conn)
        PQfinish(s->conn);
    pg_apply_destroy(s->apply);
    pg_cohorts_destroy(s->cohorts);
    pg_cohorts_destroy(s->reloaded);
    free(s->tinfo);
    for (size_t i = 0; i < s->n_starts; i++)
        free(s->starts[i].topic);
    free(s->starts);
    free(s->tokens);
    free(s);
}

/* An agreement past its expiry day (UTC) is logged at start: the gateway stops its feed, so
 * nothing new should come; what comes is still held to the subscriber's level. */
static void agreement_at_start(const cg_config_subscriber_t *sub)
{
    char today[16];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(today, sizeof(today), "%Y-%m-%d", &tm);
    if (sub->expires && strlen(sub->expires) == 10 && strcmp(sub->expires, today) < 0)
        cg_log(CG_LOG_ERROR, "release.agreement_expired",
               "subscriber %s: agreement %s expired on %s (the gateway stops its feed)", sub->name,
               sub->agreement ? sub->agreement : "?", sub->expires);
}

static void *pgs_init(const cg_plugin_env_t *env, char *errstr, size_t errstr_size)
{
    if (!env->exactly_once) {
        snprintf(errstr, errstr_size,
                 "the pg sink stores offsets in its database transactions: it runs with "
                 "delivery.semantics exactly-once (`cohortgate sink` sets it)");
        return NULL;
    }
    pg_sink_t *s = calloc(1, sizeof(*s));
    if (!s || !(s->apply = pg_apply_new(env->conf, env->metrics))) {
        free(s);
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    s->engine = env->engine;
    s->conf = env->conf;
    if (!(s->tinfo = pg_envelope_tables())) {
        pgs_destroy(s);
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    if (pg_cohorts_load(s->conf, &s->cohorts, errstr, errstr_size) ||
        pg_cohorts_publisher(s->cohorts, env->cfg, errstr, errstr_size)) {
        pgs_destroy(s);
        return NULL;
    }
    const cg_config_subscriber_t *sub = pg_config_subscriber(s->conf, env->cfg);
    if (s->conf->subscriber && *s->conf->subscriber && !sub) { /* validate refused it already */
        snprintf(errstr, errstr_size,
                 "'pg.subscriber' names no subscriber of release.subscribers[]");
        pgs_destroy(s);
        return NULL;
    }
    if (sub) {
        s->subscriber = sub->name;
        s->max_level = sub->max_level;
        agreement_at_start(sub);
        cg_log(CG_LOG_INFO, "pg.subscriber",
               "this database is subscriber %s's (max_level %d): only records released to it "
               "load, with their counts in cohortgate_release_audit",
               sub->name, sub->max_level);
    }
    pg_apply_track_persons(s->apply, s->cohorts != NULL);
    pg_cohorts_metrics(s->cohorts, env->metrics);
    if (s->cohorts)
        cg_log(CG_LOG_INFO, "pg.cohorts", "%zu cohort definitions from %s, events to %s",
               pg_cohorts_count(s->cohorts), s->conf->cohort_definitions,
               s->conf->cohort_publish ? s->conf->cohort_topic : "the outbox only");
    cg_metrics_t *reg = env->metrics ? cg_metrics_gw_registry(env->metrics) : NULL;
    if (reg) {
        static const double bounds[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                        0.25,  0.5,    1,     2.5,  5,     10};
        s->m_latency = cg_metrics_histogram(
            reg, "cohortgate_sink_batch_seconds",
            "Time a committed transaction of the sink spent in PostgreSQL: COPY to staging, "
            "upserts and deletes, offsets and COMMIT",
            "", bounds, sizeof(bounds) / sizeof(bounds[0]));
        cg_metric_t *b = cg_metrics_counter(reg, "cohortgate_sink_batches_total",
                                            "Transactions of the sink, by result (committed, "
                                            "aborted)",
                                            "result");
        s->m_committed = cg_metric_get1(b, "committed");
        s->m_aborted = cg_metric_get1(b, "aborted");
    }
    return s;
}

/* Notes the first offset of each partition in the open transaction (the offsets fence). */
static void note_start(pg_sink_t *s, const char *topic, int32_t partition, int64_t offset)
{
    for (size_t i = 0; i < s->n_starts; i++)
        if (s->starts[i].partition == partition && !strcmp(s->starts[i].topic, topic)) {
            if (s->starts[i].first < 0)
                s->starts[i].first = offset;
            return;
        }
    if (s->n_starts == s->cap_starts) {
        size_t cap = s->cap_starts ? s->cap_starts * 2 : 8;
        part_start_t *p = realloc(s->starts, cap * sizeof(*p));
        if (!p)
            return; /* the fence is then the no-going-back rule alone */
        s->starts = p;
        s->cap_starts = cap;
    }
    char *t = strdup(topic);
    if (t)
        s->starts[s->n_starts++] = (part_start_t){t, partition, offset};
}

static int64_t start_of(const pg_sink_t *s, const char *topic, int32_t partition)
{
    for (size_t i = 0; i < s->n_starts; i++)
        if (s->starts[i].partition == partition && !strcmp(s->starts[i].topic, topic))
            return s->starts[i].first;
    return -1;
}

/* A record that went wrong in the open transaction: the engine aborts it. */
static cg_sink_result_t txn_broken(pg_sink_t *s, const char *what, const char *why)
{
    char msg[900];
    snprintf(msg, sizeof(msg), "PostgreSQL: %s: %s", what, why);
    cg_engine_txn_failed(s->engine, msg);
    (void)s;
    return CG_SINK_FAILED;
}

/* What is staged applied, and the connection free for the caller's statements; run_on: the
 * last COPY may be left running (the batch was full: the engine reads the next one meanwhile,
 * and the next use of the connection waits for it). */
static int flush_staged(pg_sink_t *s, int run_on, char *errstr, size_t errstr_size)
{
    double t0 = cg_metrics_now();
    /* a refused COPY's rows leave rejects pending: the flush writes them */
    int rc = pg_apply_settle(s->apply, s->conn, errstr, errstr_size);
    if (!rc && pg_apply_pending(s->apply))
        rc = pg_apply_flush(s->apply, s->conn, run_on, errstr, errstr_size);
    s->txn_apply_s += cg_metrics_now() - t0;
    return rc;
}

/* cdm_source kept current: at the first commit after start, then at most once a minute, by one
 * instance at a time (the others skip it rather than wait). Under a savepoint: a cdm_source the
 * sink cannot write (changed by hand) is logged and never stalls the rows. */
static int refresh_cdm_source(pg_sink_t *s, char *errstr, size_t errstr_size)
{
    if (s->cdm_source_next && mono_ms() < s->cdm_source_next)
        return 0;
    cg_buf_t q;
    cg_buf_init(&q);
    cg_buf_puts(&q, "SELECT pg_try_advisory_xact_lock(hashtext('cohortgate:cdm_source:' || $1))");
    cg_buf_putc(&q, '\0');
    const char *p[1] = {s->conf->schema};
    PGresult *r = PQexecParams(s->conn, q.data, 1, NULL, p, NULL, NULL, 0);
    cg_buf_free(&q);
    int ok = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1;
    int locked = ok && !strcmp(PQgetvalue(r, 0, 0), "t");
    if (!ok)
        pg_message(r, s->conn, errstr, errstr_size);
    PQclear(r);
    if (!ok)
        return -1;
    s->cdm_source_due = 1; /* tried: another instance holding it does it now */
    if (!locked)
        return 0;
    if (pg_exec(s->conn, "SAVEPOINT cg_cdm_source", errstr, errstr_size))
        return -1;
    char why[768];
    if (pg_cdm_source_write(s->conn, s->conf, 1, why, sizeof(why))) {
        if (pg_conn_lost(s->conn)) {
            snprintf(errstr, errstr_size, "%s", why);
            return -1;
        }
        cg_log(CG_LOG_WARN, "pg.cdm_source_failed",
               "schema %s: cdm_source could not be written (tried again in a minute): %s",
               s->conf->schema, why);
        return pg_exec(s->conn, "ROLLBACK TO SAVEPOINT cg_cdm_source", errstr, errstr_size);
    }
    return pg_exec(s->conn, "RELEASE SAVEPOINT cg_cdm_source", errstr, errstr_size);
}

/* A header's value, or NULL. */
static const char *header(const cg_sink_record_t *rec, const char *name)
{
    for (size_t i = 0; i + 1 < rec->n_headers; i += 2)
        if (rec->headers[i] && !strcmp(rec->headers[i], name))
            return rec->headers[i + 1];
    return NULL;
}

/* Graded release (pg.subscriber): whether the record was released to this database's
 * subscriber at a level it may hold. 0 with *policy and *level set, or -1 with why. */
static int released_here(const pg_sink_t *s, const cg_sink_record_t *rec, const char **policy,
                         int *level, char *why, size_t why_size)
{
    const char *sub = header(rec, "cg.subscriber"), *lv = header(rec, "cg.level");
    const char *pol = header(rec, "cg.policy");
    if (!sub) {
        snprintf(why, why_size,
                 "record has no cg.subscriber header: not released under a policy (this "
                 "database is subscriber '%s')",
                 s->subscriber);
        return -1;
    }
    if (strcmp(sub, s->subscriber)) {
        snprintf(why, why_size, "record released for subscriber '%.100s', this database is '%s'",
                 sub, s->subscriber);
        return -1;
    }
    if (!lv || lv[0] < '1' || lv[0] > '5' || lv[1]) {
        snprintf(why, why_size, "record has %s cg.level header (1 to 5)", lv ? "an invalid" : "no");
        return -1;
    }
    if (!pol || !*pol) {
        snprintf(why, why_size, "record has no cg.policy header: not released under a policy");
        return -1;
    }
    *level = lv[0] - '0';
    if (*level > s->max_level) {
        snprintf(why, why_size, "record level %d above this subscriber's max_level %d", *level,
                 s->max_level);
        return -1;
    }
    *policy = pol;
    return 0;
}

/* Stages a parsed row of table t (index ti), applying what is staged when the batch is full. */
static int stage_row(pg_sink_t *s, const cg_omop_table_t *t, int ti, int del,
                     const char *const *vals, const size_t *lens, const pg_pos_t *pos,
                     const char *raw, size_t raw_len, const char *policy, int level,
                     const char *doc, cg_slice_t time, char *errstr, size_t errstr_size)
{
    /* a person's or a visit's delete reaches into other tables: applied in its place */
    int barrier = del && (!strcmp(t->name, "person") || !strcmp(t->name, "visit_occurrence"));
    if (barrier && flush_staged(s, 0, errstr, errstr_size))
        return -1;
    /* a time the database could not read is no time: the record still applies, in order */
    if (time.ptr && !pg_time_text_ok(time.ptr, time.len))
        time = (cg_slice_t){NULL, 0};
    if (pg_apply_stage(s->apply, (size_t)ti, del, vals, lens, pos, raw, raw_len, policy, level,
                       time.ptr, time.len) ||
        (doc && pg_apply_doc(s->apply, (size_t)ti, vals, lens, doc, del, time.ptr, time.len))) {
        snprintf(errstr, errstr_size, "out of memory");
        return -1;
    }
    if ((barrier || pg_apply_pending(s->apply) >= (size_t)s->conf->batch_rows) &&
        flush_staged(s, !barrier, errstr, errstr_size))
        return -1;
    return 0;
}

/* The common envelope read in place (pg_envelope.c) and staged: 1 (*rc says how it went), or 0
 * when the record takes the general path (every record that path would reject does). */
static int stage_fast(pg_sink_t *s, const char *raw, size_t raw_len, const pg_pos_t *pos,
                      const char *policy, int level, const char *doc, int *rc, char *errstr,
                      size_t errstr_size)
{
    const char *vals[PG_MAX_COLUMNS] = {0};
    size_t lens[PG_MAX_COLUMNS] = {0};
    const cg_omop_table_t *t;
    int ti, del;
    if (!pg_envelope_scan(raw, raw_len, &s->env) ||
        !pg_envelope_values(&s->env, s->tinfo, &t, &ti, &del, vals, lens))
        return 0;
    *rc = stage_row(s, t, ti, del, vals, lens, pos, raw, raw_len, policy, level, doc, s->env.time,
                    errstr, errstr_size);
    return 1;
}

/* Parses one envelope and stages it (or applies a merge). 0, or -1 when the transaction broke
 * (errstr); a record the sink cannot apply is rejected and counts as handled. */
static int stage_record(pg_sink_t *s, const cg_sink_record_t *rec, const pg_pos_t *pos,
                        char *errstr, size_t errstr_size)
{
    const char *raw = rec->value ? rec->value : "";
    size_t raw_len = rec->value_len;
    const char *policy = NULL;
    int level = 0;
    if (s->subscriber) {
        char rwhy[400];
        if (released_here(s, rec, &policy, &level, rwhy, sizeof(rwhy))) {
            if (pg_apply_reject(s->apply, header(rec, "cg.table"), "CGREL", rwhy, pos, raw,
                                raw_len)) {
                snprintf(errstr, errstr_size, "out of memory");
                return -1;
            }
            return 0;
        }
    }
    /* a document's row (the gateway's cg.document header): which document stated it is kept
     * for a retraction of that document */
    const char *doc = header(rec, "cg.document");
    if (doc && !*doc)
        doc = NULL;
    int rc = 0;
    if (stage_fast(s, raw, raw_len, pos, policy, level, doc, &rc, errstr, errstr_size))
        return rc;
    json_error_t jerr;
    json_t *env = json_loadb(raw, raw_len, 0, &jerr);
    char why[512];
    const char *state = "CGENV", *tname = NULL;
    if (!env || !json_is_object(env)) {
        snprintf(why, sizeof(why), "not a JSON object: %s", env ? "another JSON value" : jerr.text);
        goto reject;
    }
    const char *standard = json_string_value(json_object_get(env, "standard"));
    tname = json_string_value(json_object_get(env, "table"));
    const char *op = json_string_value(json_object_get(env, "op"));
    json_t *row = json_object_get(env, "row");
    if (!standard || !tname || !op || !json_is_object(row)) {
        snprintf(why, sizeof(why),
                 "an envelope needs \"standard\", \"table\", \"op\" and a \"row\" "
                 "object");
        goto reject;
    }
    if (!strcmp(standard, "cohortgate") && !strcmp(tname, "cohortgate.person_merge") &&
        !strcmp(op, "merge")) {
        pg_id_buf_t merged, survivor;
        state = "CGKEY";
        if (pg_record_merge(row, &merged, &survivor, why, sizeof(why)))
            goto reject;
        /* what came before the merge is applied first: a person's order holds */
        rc =
            flush_staged(s, 0, errstr, errstr_size) ||
            pg_apply_merge(s->apply, s->conn, merged.text, survivor.text, pos, errstr, errstr_size);
        json_decref(env);
        return rc ? -1 : 0;
    }
    int order = !strcmp(tname, CG_ROW_ORDER_RETRACTION);
    if (!strcmp(standard, "cohortgate") &&
        (order || !strcmp(tname, "cohortgate.document_retraction")) && !strcmp(op, "retract")) {
        pg_id_buf_t person;
        char docid[1040]; /* "order:" and 255 characters of UTF-8 at most, as the tables allow */
        int remember;
        state = "CGKEY";
        if (pg_record_retraction(row, order, &person, docid, sizeof(docid), &remember, why,
                                 sizeof(why)))
            goto reject;
        /* what came before it is applied first, then the replaced document's (the cancelled
         * order's) rows go */
        long long gone = 0;
        rc = flush_staged(s, 0, errstr, errstr_size) ||
             pg_apply_retract(s->apply, s->conn, person.text, docid, remember, pos, &gone, errstr,
                              errstr_size);
        if (!rc)
            cg_log(CG_LOG_INFO, order ? "sink.order_retracted" : "sink.document_retracted",
                   "%s [%" PRId32 "] offset %" PRId64 ": %lld row(s) of the %s retracted",
                   pos->topic, pos->partition, pos->offset, gone,
                   order ? "cancelled order" : "replaced document");
        json_decref(env);
        return rc ? -1 : 0;
    }
    if (strcmp(standard, "omop-cdm-5.4")) {
        state = "CGSTD";
        snprintf(why, sizeof(why),
                 "standard \"%s\" / table \"%s\" / op \"%s\" is not applied by "
                 "the sink",
                 standard, tname, op);
        goto reject;
    }
    const cg_omop_table_t *t = cg_omop_table(tname);
    int ti = t ? pg_table_index(t) : -1;
    if (ti < 0) {
        state = "CGTBL";
        snprintf(why, sizeof(why),
                 "%s is not an OMOP CDM v5.4 table the sink applies records to "
                 "(a clinical table with a key)",
                 tname);
        goto reject;
    }
    if (!strcmp(tname, "observation_period")) { /* the sink derives it from the rows */
        state = "CGTBL";
        snprintf(why, sizeof(why),
                 "observation_period is derived by the sink from each person's "
                 "rows, not taken from records");
        goto reject;
    }
    int del = !strcmp(op, "delete");
    if (!del && strcmp(op, "upsert")) {
        state = "CGOP";
        snprintf(why, sizeof(why), "op \"%s\" is not upsert or delete", op);
        goto reject;
    }
    if (t->n_columns > PG_MAX_COLUMNS) {
        state = "CGTBL";
        snprintf(why, sizeof(why), "%s has too many columns", tname);
        goto reject;
    }
    const char *vals[PG_MAX_COLUMNS] = {0};
    size_t lens[PG_MAX_COLUMNS] = {0};
    char nums[PG_MAX_COLUMNS][64];
    const char *k;
    json_t *v;
    json_object_foreach(row, k, v)
    {
        size_t ci;
        if (!cg_omop_column(t, k, &ci)) {
            state = "CGCOL";
            snprintf(why, sizeof(why), "%s has no column %s", tname, k);
            goto reject;
        }
        bool quoted;
        if (!cg_omop_json_text(v, nums[ci], sizeof(nums[ci]), &vals[ci], &lens[ci], &quoted)) {
            state = "CGVAL";
            snprintf(why, sizeof(why), "%s.%s is an object or an array", tname, k);
            goto reject;
        }
    }
    for (size_t ci = 0; ci < t->n_columns; ci++)
        if (vals[ci] && pg_column_is_id(&t->columns[ci]) && !pg_id_text_ok(vals[ci], lens[ci])) {
            state = "CGVAL";
            snprintf(why, sizeof(why), "%s.%s is not a 64-bit integer id", tname,
                     t->columns[ci].name);
            goto reject;
        }
    size_t key_i;
    const cg_omop_column_t *key = pg_table_key(t);
    cg_omop_column(t, key->name, &key_i);
    if (!vals[key_i]) {
        state = "CGKEY";
        snprintf(why, sizeof(why), "%s record without its key %s", tname, key->name);
        goto reject;
    }
    json_t *tj = json_object_get(json_object_get(env, "source"), "time");
    cg_slice_t time = {json_string_value(tj), json_string_length(tj)};
    rc = stage_row(s, t, ti, del, vals, lens, pos, raw, raw_len, policy, level, doc, time, errstr,
                   errstr_size);
    json_decref(env);
    return rc;
reject:
    /* tname lives in env */
    rc = pg_apply_reject(s->apply, tname, state, why, pos, raw, raw_len);
    json_decref(env);
    if (rc)
        snprintf(errstr, errstr_size, "out of memory");
    return rc;
}

static cg_sink_result_t pgs_produce(void *ctx, const cg_sink_record_t *rec)
{
    pg_sink_t *s = ctx;
    if (!s->in_txn || !s->conn)
        return txn_broken(s, "a record outside a transaction", "no open transaction");
    if (s->n_tokens == s->cap_tokens) {
        size_t cap = s->cap_tokens ? s->cap_tokens * 2 : 1024;
        void **t = realloc(s->tokens, cap * sizeof(*t));
        if (!t)
            return CG_SINK_FULL;
        s->tokens = t;
        s->cap_tokens = cap;
    }
    pg_pos_t pos = {"", 0, 0};
    cg_delivery_msg_pos(rec->token, &pos.topic, &pos.partition, &pos.offset);
    note_start(s, pos.topic, pos.partition, pos.offset);
    char err[768];
    if (stage_record(s, rec, &pos, err, sizeof(err)))
        return txn_broken(s, "applying a batch", err);
    s->tokens[s->n_tokens++] = rec->token;
    return CG_SINK_OK;
}

/* A staged record is delivered: it is in the open transaction, as a Kafka transactional
 * producer's record is once acknowledged; the commit makes it visible. */
static void report_delivered(pg_sink_t *s)
{
    size_t n = s->n_tokens;
    s->n_tokens = 0;
    for (size_t i = 0; i < n; i++)
        cg_engine_delivered(s->engine, s->tokens[i], 0);
}

/* The definitions a SIGHUP loaded, in place of the running ones: the running publisher,
 * metrics and counts stay; new and changed definitions are evaluated for every person now (a
 * reconnect does it again if this fails). */
static void take_reloaded(pg_sink_t *s)
{
    pg_cohorts_swap(s->cohorts, s->reloaded);
    pg_cohorts_destroy(s->reloaded);
    s->reloaded = NULL;
    char err[768];
    s->cohorts_synced = 0;
    if (pg_cohorts_prepare(s->cohorts, s->conn, err, sizeof(err)) ||
        pg_cohorts_sync(s->cohorts, s->conn, err, sizeof(err))) {
        cg_log(CG_LOG_WARN, "pg.cohorts_sync_failed", "%s (again at the next connection)", err);
        return;
    }
    s->cohorts_synced = 1;
    cg_log(CG_LOG_INFO, "pg.cohorts_reloaded", "%zu cohort definitions from %s in use",
           pg_cohorts_count(s->cohorts), s->conf->cohort_definitions);
}

/* SIGHUP: the config file read again (cfg; NULL: it did not load); its live settings
 * (pg_config_reload: the batch size, cdm_source's names, the cohort engine's intervals and small
 * cell, the definitions' path) and log.level taken, and the cohort definitions loaded and compiled
 * now, taken into use between transactions (take_reloaded). Anything refused (a bad file, a setting
 * that needs a restart, a definition that does not compile) keeps everything running as it was. */
static int pgs_reload(void *ctx, const cg_config_t *cfg, char *errstr, size_t errstr_size)
{
    pg_sink_t *s = ctx;
    const pg_conf_t *fresh = cfg ? cg_config_plugin_conf(cfg, cg_pg_config_map) : s->conf;
    char changed[512] = "";
    pg_cohorts_t *defs = NULL;
    int rc = 0;
    /* the definitions compiled before any setting is taken: a refusal changes nothing */
    if (s->cohorts && fresh->cohort_definitions)
        rc = pg_cohorts_load(fresh, &defs, errstr, errstr_size);
    if (!rc && cfg)
        rc = pg_config_reload((pg_conf_t *)s->conf, fresh, changed, sizeof(changed), errstr,
                              errstr_size);
    if (!rc && s->cohorts && !defs) {
        snprintf(errstr, errstr_size, "pg.cohorts.definitions: no definitions");
        rc = -1;
    }
    if (rc) {
        pg_cohorts_destroy(defs);
        return -1;
    }
    /* fresh goes with the config file read again; the settings it was compiled under that a
     * reload may not change are the running ones' */
    if (defs)
        pg_cohorts_bind(defs, s->conf);
    if (cfg)
        cg_log_set_level((cg_log_level_t)cfg->log_level);
    if (changed[0])
        cg_log(CG_LOG_INFO, "pg.reloaded", "settings taken: %s", changed);
    if (defs) {
        pg_cohorts_destroy(s->reloaded); /* two SIGHUPs before a pause: the later files win */
        s->reloaded = defs;
    }
    return 0;
}

/* The outbox's unsent membership events to their topic; what fails stays for the next try. */
static void publish_events(pg_sink_t *s)
{
    char err[768];
    if (s->cohorts && s->conn && pg_cohorts_publish(s->cohorts, s->conn, err, sizeof(err)))
        cg_log(CG_LOG_WARN, "pg.cohort_publish_failed",
               "%s (sent again after the next commit, or within seconds while idle)", err);
}

static void pgs_poll(void *ctx, int timeout_ms)
{
    pg_sink_t *s = ctx;
    if (s->n_tokens) {
        report_delivered(s);
        return;
    }
    /* between batches: definitions a SIGHUP loaded go into use, new and changed ones
     * evaluated for every person; withdrawals need no record to be honoured, then their exit
     * events go out (both rate-limited inside) */
    if (s->reloaded && s->conn && !s->in_txn)
        take_reloaded(s);
    if (s->cohorts && s->conn && !s->in_txn) {
        char err[768];
        int w = pg_cohorts_withdrawals(s->cohorts, s->conn, err, sizeof(err));
        if (w < 0)
            cg_log(CG_LOG_WARN, "pg.cohort_withdrawals_failed", "%s (looked for again later)", err);
        else if (w > 0)
            publish_events(s);
        else if (pg_cohorts_sweep(s->cohorts, s->conn, err, sizeof(err)))
            cg_log(CG_LOG_WARN, "pg.cohort_publish_failed", "%s (sent again within seconds)", err);
    }
    if (timeout_ms > 0) { /* nothing to report: the engine's wait, kept short */
        struct timespec ts = {0, (long)(timeout_ms < 5 ? timeout_ms : 5) * 1000000L};
        nanosleep(&ts, NULL);
    }
}

static int pgs_flush(void *ctx, int timeout_ms)
{
    (void)timeout_ms;
    report_delivered(ctx);
    return 0;
}

static int pgs_queue_len(void *ctx)
{
    pg_sink_t *s = ctx;
    return (int)__atomic_load_n(&s->n_tokens, __ATOMIC_RELAXED);
}

static int pgs_fatal(void *ctx, char *reason, size_t size)
{
    pg_sink_t *s = ctx;
    if (s->fatal && reason)
        snprintf(reason, size, "%s", s->fatal_reason);
    return s->fatal;
}

static cg_txn_result_t pgs_txn_init(void *ctx, char *errstr, size_t errstr_size)
{
    pg_sink_t *s = ctx;
    /* another instance starting or loading beside this one may deadlock with its start (the
     * definitions' evaluation): tried again, a few times, before the start fails */
    for (int attempt = 1;; attempt++) {
        s->next_connect_ms = 0;
        if (!ensure_conn(s, errstr, errstr_size))
            break;
        if (s->fatal || attempt == PG_START_TRIES || !pg_last_error_transient())
            return CG_TXN_FATAL;
        cg_log(CG_LOG_WARN, "pg.start_retry", "%s (trying again, %d of %d)", errstr, attempt + 1,
               PG_START_TRIES);
        struct timespec ts = {0, 200000000L * attempt};
        nanosleep(&ts, NULL);
    }
    publish_events(s); /* events a previous run committed and did not send */
    return CG_TXN_OK;
}

static cg_txn_result_t pgs_txn_begin(void *ctx)
{
    pg_sink_t *s = ctx;
    char err[768];
    if (ensure_conn(s, err, sizeof(err)) || pg_exec(s->conn, "BEGIN", err, sizeof(err))) {
        if (strcmp(err, "waiting to reconnect to PostgreSQL"))
            cg_log(CG_LOG_WARN, "pg.begin_failed", "%s (retrying)", err);
        return CG_TXN_ABORT;
    }
    s->in_txn = 1;
    s->began = 1;
    s->txn_apply_s = 0;
    s->cdm_source_due = 0;
    for (size_t i = 0; i < s->n_starts; i++)
        s->starts[i].first = -1;
    return CG_TXN_OK;
}

/* After a commit whose answer was lost: did it happen? The offsets say. */
static int commit_happened(pg_sink_t *s, const cg_source_pos_t *pos, size_t n)
{
    char err[512];
    s->next_connect_ms = 0;
    if (ensure_conn(s, err, sizeof(err)) || !n)
        return 0;
    cg_buf_t q;
    cg_buf_init(&q);
    cg_buf_puts(&q, "SELECT next_offset FROM ");
    pg_qual(&q, s->conf->schema, "cg_offsets");
    cg_buf_puts(&q, " WHERE topic = $1 AND partition = $2::integer");
    cg_buf_putc(&q, '\0');
    char part[16];
    snprintf(part, sizeof(part), "%" PRId32, pos[0].partition);
    const char *p[2] = {pos[0].topic, part};
    PGresult *r = PQexecParams(s->conn, q.data, 2, NULL, p, NULL, NULL, 0);
    cg_buf_free(&q);
    int yes = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 &&
              strtoll(PQgetvalue(r, 0, 0), NULL, 10) == pos[0].offset;
    PQclear(r);
    return yes;
}

/* A transaction committed: its counts go into the metrics. t0: when its commit step began. */
static void txn_committed(pg_sink_t *s, double t0)
{
    s->commits++;
    s->began = 0;
    cg_metric_inc(s->m_committed, 1);
    cg_metric_observe(cg_metric_get(s->m_latency, NULL), s->txn_apply_s + (cg_metrics_now() - t0));
    pg_apply_txn_counted(s->apply, 1);
    pg_cohorts_txn_end(s->cohorts, 1);
    if (s->cdm_source_due)
        s->cdm_source_next = mono_ms() + PG_CDM_SOURCE_MS;
    /* lapsed periods (at most every pg.cohorts.lapse_interval_ms), then the membership events
     * the commits made, to their topic; what fails stays in the outbox for the next try */
    char err[768];
    if (s->cohorts && s->conn && pg_cohorts_lapse(s->cohorts, s->conn, err, sizeof(err)))
        cg_log(CG_LOG_WARN, "pg.cohort_lapse_failed", "%s (looked for again later)", err);
    publish_events(s);
    if (s->cohorts && s->conn && pg_cohorts_count_members(s->cohorts, s->conn, 0, err, sizeof(err)))
        cg_log(CG_LOG_WARN, "pg.cohort_count_failed", "%s (counted after a later commit)", err);
}

static cg_txn_result_t pgs_txn_commit(void *ctx, const cg_source_pos_t *pos, size_t n,
                                      const struct cg_source *source)
{
    (void)source;
    pg_sink_t *s = ctx;
    char err[768];
    if (!s->in_txn || !s->conn)
        return CG_TXN_ABORT;
    if (flush_staged(s, 0, err, sizeof(err))) {
        cg_log(CG_LOG_WARN, "pg.batch_failed", "%s (the transaction is aborted)", err);
        return CG_TXN_ABORT;
    }
    if (s->subscriber && pg_apply_audit(s->apply, s->conn, s->subscriber, err, sizeof(err))) {
        cg_log(CG_LOG_WARN, "pg.batch_failed", "%s (the transaction is aborted)", err);
        return CG_TXN_ABORT;
    }
    double t0 = cg_metrics_now();
    if (s->cohorts && pg_cohorts_evaluate(s->cohorts, s->conn, err, sizeof(err))) {
        cg_log(CG_LOG_WARN, "pg.cohorts_failed", "%s (the transaction is aborted)", err);
        return CG_TXN_ABORT;
    }
    if (refresh_cdm_source(s, err, sizeof(err))) {
        cg_log(CG_LOG_WARN, "pg.batch_failed", "%s (the transaction is aborted)", err);
        return CG_TXN_ABORT;
    }
    /* the offsets, fenced: never backwards, and only from where this batch began */
    cg_buf_t q;
    cg_buf_init(&q);
    cg_buf_puts(&q, "INSERT INTO ");
    pg_qual(&q, s->conf->schema, "cg_offsets");
    cg_buf_puts(&q, " AS o (topic, partition, next_offset) VALUES ($1, $2::integer, $3::bigint) "
                    "ON CONFLICT (topic, partition) DO UPDATE SET next_offset = "
                    "EXCLUDED.next_offset, updated_at = now() WHERE o.next_offset <= $4::bigint");
    cg_buf_putc(&q, '\0');
    for (size_t i = 0; i < n; i++) {
        char part[16], next[24], from[24];
        int64_t first = start_of(s, pos[i].topic, pos[i].partition);
        snprintf(part, sizeof(part), "%" PRId32, pos[i].partition);
        snprintf(next, sizeof(next), "%" PRId64, pos[i].offset);
        snprintf(from, sizeof(from), "%" PRId64, first >= 0 ? first : pos[i].offset);
        const char *p[4] = {pos[i].topic, part, next, from};
        PGresult *r = PQexecParams(s->conn, q.data, 4, NULL, p, NULL, NULL, 0);
        int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
        int moved = ok && !strcmp(PQcmdTuples(r), "1");
        if (!ok)
            pg_message(r, s->conn, err, sizeof(err));
        PQclear(r);
        if (!ok || !moved) {
            cg_buf_free(&q);
            if (!ok)
                cg_log(CG_LOG_WARN, "pg.offsets_failed", "%s (the transaction is aborted)", err);
            else
                cg_log(CG_LOG_WARN, "pg.fenced",
                       "%s [%" PRId32 "]: the database's offset is past this batch's first "
                       "offset %s: another instance applied it (the transaction is aborted)",
                       pos[i].topic, pos[i].partition, from);
            return CG_TXN_ABORT;
        }
    }
    cg_buf_free(&q);
    PGresult *r = PQexec(s->conn, "COMMIT");
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    if (!ok)
        pg_message(r, s->conn, err, sizeof(err));
    PQclear(r);
    s->in_txn = 0;
    if (!ok) {
        if (pg_conn_lost(s->conn) && commit_happened(s, pos, n)) {
            cg_log(CG_LOG_WARN, "pg.commit_unknown",
                   "the connection was lost at COMMIT, which "
                   "had happened (the offsets say so)");
            txn_committed(s, t0);
            return CG_TXN_OK;
        }
        cg_log(CG_LOG_WARN, "pg.commit_failed", "%s (the transaction is aborted)", err);
        return CG_TXN_ABORT;
    }
    txn_committed(s, t0);
    return CG_TXN_OK;
}

static cg_txn_result_t pgs_txn_abort(void *ctx)
{
    pg_sink_t *s = ctx;
    char err[768];
    pg_apply_settle(s->apply, NULL, err, sizeof(err)); /* a running COPY's answer: dropped */
    if (s->conn && PQstatus(s->conn) == CONNECTION_OK && s->in_txn)
        PQclear(PQexec(s->conn, "ROLLBACK"));
    s->in_txn = 0;
    s->n_tokens = 0; /* purged: nothing to report */
    pg_apply_clear(s->apply);
    pg_apply_txn_counted(s->apply, 0);
    pg_cohorts_txn_end(s->cohorts, 0);
    if (s->began)
        cg_metric_inc(s->m_aborted, 1);
    s->began = 0;
    return CG_TXN_OK;
}

static int pgs_stored_positions(void *ctx, cg_source_pos_t *pos, size_t n, char *errstr,
                                size_t errstr_size)
{
    pg_sink_t *s = ctx;
    /* mid-transaction (a cooperative assignment): a running COPY's answer first; when the
     * transaction cannot go on, it is over (the engine aborts it): the committed offsets hold */
    char err[768];
    if (s->conn && s->in_txn && pg_apply_settle(s->apply, s->conn, err, sizeof(err))) {
        cg_engine_txn_failed(s->engine, err);
        PQclear(PQexec(s->conn, "ROLLBACK"));
        s->in_txn = 0;
    }
    if (ensure_conn(s, errstr, errstr_size)) {
        s->next_connect_ms = 0; /* one more try at once: an assignment cannot wait */
        if (ensure_conn(s, errstr, errstr_size))
            return -1;
    }
    cg_buf_t q;
    cg_buf_init(&q);
    cg_buf_puts(&q, "SELECT next_offset FROM ");
    pg_qual(&q, s->conf->schema, "cg_offsets");
    cg_buf_puts(&q, " WHERE topic = $1 AND partition = $2::integer");
    cg_buf_putc(&q, '\0');
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        char part[16];
        snprintf(part, sizeof(part), "%" PRId32, pos[i].partition);
        const char *p[2] = {pos[i].topic, part};
        PGresult *r = PQexecParams(s->conn, q.data, 2, NULL, p, NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_TUPLES_OK) {
            pg_message(r, s->conn, errstr, errstr_size);
            rc = -1;
        } else {
            pos[i].offset = PQntuples(r) ? strtoll(PQgetvalue(r, 0, 0), NULL, 10) : -1;
        }
        PQclear(r);
    }
    cg_buf_free(&q);
    return rc;
}

const cg_sink_plugin_t cg_pg_sink_plugin = {
    .name = "pg",
    .desc = "PostgreSQL OMOP CDM v5.4 tables, exactly once (`cohortgate sink`)",
    .config_map = cg_pg_config_map,
    .conf_size = sizeof(pg_conf_t),
    .validate = pg_config_validate,
    .init = pgs_init,
    .produce = pgs_produce,
    .poll = pgs_poll,
    .flush = pgs_flush,
    .queue_len = pgs_queue_len,
    .fatal = pgs_fatal,
    .destroy = pgs_destroy,
    .txn_init = pgs_txn_init,
    .txn_begin = pgs_txn_begin,
    .txn_commit = pgs_txn_commit,
    .txn_abort = pgs_txn_abort,
    .stored_positions = pgs_stored_positions,
    .reload = pgs_reload,
};
