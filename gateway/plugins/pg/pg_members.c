/* pg_members.c - the members' complete rows on per-cohort Kafka topics (pg.cohorts.rows_topic),
 * for subscribers that do not share the database.
 *
 * The disease schemas' statements (pg_disease.c) write every row they copy in or remove to the
 * outbox cg_cohort_rows, in the batch's transaction; after the commit the unsent ones go to
 * their definition's topic, then are marked sent: at least once, like the membership events. A
 * record's key is the row's, "TABLE:ID": a row that moves from one person to another (a result
 * re-attributed) is deleted and upserted under one key, so its messages stay in order on one
 * partition, which a person's key would not give. A value is {"row_event_id",
 * "cohort_definition_id", "table", "op": "upsert"|"delete", "person_id", "person_source_value",
 * "row"}: an upsert carries the row as the disease schema holds it, a delete its key; a consumer
 * that applies each key's messages in order holds the members' rows.
 */
#include "pg_int.h"

#include "cg_log.h"

#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MEMBERS_BATCH 5000

char *pg_members_topic(const char *tmpl, const char *cohort)
{
    char name[512];
    cg_config_topic_name(tmpl, cohort, NULL, name, sizeof(name));
    return strdup(name);
}

void pg_members_ddl(cg_buf_t *b, const char *s)
{
    cg_buf_puts(b, "CREATE TABLE IF NOT EXISTS ");
    pg_qual(b, s, "cg_cohort_rows");
    cg_buf_puts(b, " (row_event_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
                   "cohort_definition_id bigint NOT NULL, person_id bigint NOT NULL, "
                   "table_name text NOT NULL, row_key text NOT NULL, op text NOT NULL, "
                   "row jsonb NOT NULL, "
                   "created_at timestamptz NOT NULL DEFAULT now(), published_at timestamptz);\n");
    pg_index_ddl(b, s, "cg_cohort_rows_unsent", "cg_cohort_rows", 0,
                 "(row_event_id) WHERE published_at IS NULL");
}

static const char *topic_of(const pg_members_dest_t *d, size_t n, long long def)
{
    for (size_t i = 0; i < n; i++)
        if (d[i].def == def)
            return d[i].topic;
    return NULL;
}

int pg_outbox_mark_sent(PGconn *c, const char *schema, const char *table, const char *id,
                        const PGresult *r, int n, char *errstr, size_t errstr_size)
{
    /* by id: a batch that took an id inside the range sent may commit after its SELECT */
    cg_buf_t b, ids;
    cg_buf_init(&b);
    cg_buf_init(&ids);
    cg_buf_puts(&b, "UPDATE ");
    pg_qual(&b, schema, table);
    cg_buf_printf(&b, " SET published_at = now() WHERE %s = ANY($1::bigint[])", id);
    cg_buf_putc(&b, '\0');
    for (int i = 0; i < n; i++)
        cg_buf_printf(&ids, "%s%s", i ? "," : "{", PQgetvalue(r, i, 0));
    cg_buf_puts(&ids, "}");
    cg_buf_putc(&ids, '\0');
    int rc = -1;
    if (b.data && ids.data) {
        const char *p1[1] = {ids.data};
        PGresult *u = PQexecParams(c, b.data, 1, NULL, p1, NULL, NULL, 0);
        rc = PQresultStatus(u) == PGRES_COMMAND_OK ? 0 : -1;
        if (rc)
            pg_message(u, c, errstr, errstr_size);
        PQclear(u);
    }
    cg_buf_free(&ids);
    cg_buf_free(&b);
    return rc;
}

int pg_outbox_produce(rd_kafka_t *producer, const char *topic, const char *key, const char *val,
                      const char *const *hdrs, size_t n_hdrs, char *errstr, size_t errstr_size)
{
    for (;;) {
        rd_kafka_headers_t *h = rd_kafka_headers_new(n_hdrs / 2);
        for (size_t k = 0; k + 1 < n_hdrs; k += 2)
            rd_kafka_header_add(h, hdrs[k], -1, hdrs[k + 1], -1);
        rd_kafka_resp_err_t e = rd_kafka_producev(
            producer, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, strlen(key)),
            RD_KAFKA_V_VALUE((void *)val, strlen(val)), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_END);
        if (!e)
            return 0;
        rd_kafka_headers_destroy(h);
        if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            snprintf(errstr, errstr_size, "%s: %s", topic, rd_kafka_err2str(e));
            return -1;
        }
        rd_kafka_poll(producer, 100); /* the queue drains as deliveries come back */
    }
}

int pg_outbox_batch(PGconn *c, rd_kafka_t *producer, volatile int *failed, const char *lock,
                    const char *schema, const char *select_sql, const char *table, const char *id,
                    pg_outbox_row_fn *fn, void *ctx, char *errstr, size_t errstr_size)
{
    /* one publisher at a time, so each key's records reach the topic in id order; another
     * instance's batch is short: wait for it */
    int rc = pg_exec(c, "BEGIN", errstr, errstr_size);
    if (!rc) {
        const char *p2[2] = {lock, schema ? schema : ""};
        PGresult *lr = PQexecParams(c, "SELECT pg_advisory_xact_lock(hashtext($1 || $2))", 2, NULL,
                                    p2, NULL, NULL, 0);
        if (PQresultStatus(lr) != PGRES_TUPLES_OK) {
            pg_message(lr, c, errstr, errstr_size);
            rc = -1;
        }
        PQclear(lr);
    }
    PGresult *r = rc ? NULL : PQexec(c, select_sql);
    if (!rc && PQresultStatus(r) != PGRES_TUPLES_OK) {
        pg_message(r, c, errstr, errstr_size);
        rc = -1;
    }
    int n = rc ? 0 : PQntuples(r);
    *failed = 0;
    for (int i = 0; i < n && !rc; i++)
        rc = fn(ctx, r, i, errstr, errstr_size);
    /* every record acknowledged by the broker before its row is marked sent */
    if (!rc && n && (rd_kafka_flush(producer, 30000) || *failed)) {
        snprintf(errstr, errstr_size, "%s: not every record was acknowledged", table);
        rc = -1;
    }
    if (!rc && n)
        rc = pg_outbox_mark_sent(c, schema, table, id, r, n, errstr, errstr_size);
    PQclear(r);
    if (rc) {
        PQclear(PQexec(c, "ROLLBACK"));
        return -1;
    }
    return pg_exec(c, "COMMIT", errstr, errstr_size) ? -1 : n;
}

typedef struct members_ctx {
    rd_kafka_t *producer;
    const pg_members_dest_t *dests;
    size_t n_dests;
} members_ctx_t;

static int members_row(void *ctx, const PGresult *r, int i, char *errstr, size_t errstr_size)
{
    const members_ctx_t *m = ctx;
    const char *topic = topic_of(m->dests, m->n_dests, strtoll(PQgetvalue(r, i, 1), NULL, 10));
    if (!topic)
        return 0; /* a definition no longer kept: marked sent, never published */
    const char *hdrs[] = {"cg.table", PQgetvalue(r, i, 4), "cg.op", PQgetvalue(r, i, 5)};
    return pg_outbox_produce(m->producer, topic, PQgetvalue(r, i, 2), PQgetvalue(r, i, 3), hdrs, 4,
                             errstr, errstr_size);
}

int pg_members_publish(PGconn *c, rd_kafka_t *producer, const char *schema,
                       const pg_members_dest_t *dests, size_t n_dests, volatile int *failed,
                       uint64_t *published, char *errstr, size_t errstr_size)
{
    cg_buf_t b;
    cg_buf_init(&b);
    cg_buf_puts(&b, "SELECT r.row_event_id, r.cohort_definition_id, r.table_name || ':' || "
                    "r.row_key, jsonb_build_object('row_event_id', r.row_event_id, "
                    "'cohort_definition_id', r.cohort_definition_id, 'table', r.table_name, "
                    "'op', r.op, 'person_id', r.person_id, 'person_source_value', "
                    "pe.person_source_value, 'row', r.row)::text, r.table_name, r.op FROM ");
    pg_qual(&b, schema, "cg_cohort_rows");
    cg_buf_puts(&b, " r LEFT JOIN ");
    pg_qual(&b, schema, "person");
    cg_buf_printf(&b,
                  " pe ON pe.person_id = r.person_id WHERE r.published_at IS NULL ORDER BY "
                  "r.row_event_id LIMIT %d FOR UPDATE OF r SKIP LOCKED",
                  MEMBERS_BATCH);
    cg_buf_putc(&b, '\0');
    if (!b.data)
        return -1;
    members_ctx_t m = {producer, dests, n_dests};
    int n;
    do {
        n = pg_outbox_batch(c, producer, failed, "cohortgate:rows:", schema, b.data,
                            "cg_cohort_rows", "row_event_id", members_row, &m, errstr, errstr_size);
        if (n > 0)
            *published += (uint64_t)n;
    } while (n == MEMBERS_BATCH);
    cg_buf_free(&b);
    return n < 0 ? -1 : 0;
}

/* One table's published rows older than the cut, a bounded number a time. */
static int prune_one(PGconn *c, const char *schema, const char *table, const char *id,
                     const char *age, long long *deleted, char *errstr, size_t errstr_size)
{
    cg_buf_t b;
    cg_buf_init(&b);
    cg_buf_puts(&b, "DELETE FROM ");
    pg_qual(&b, schema, table);
    cg_buf_printf(&b, " WHERE %s IN (SELECT %s FROM ", id, id);
    pg_qual(&b, schema, table);
    cg_buf_printf(&b, " WHERE published_at < now() - interval '%s' ORDER BY %s LIMIT 50000)", age,
                  id);
    cg_buf_putc(&b, '\0');
    PGresult *r = b.data ? PQexec(c, b.data) : NULL;
    cg_buf_free(&b);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        pg_message(r, c, errstr, errstr_size);
        PQclear(r);
        return -1;
    }
    *deleted += atoll(PQcmdTuples(r));
    PQclear(r);
    return 0;
}

int pg_outbox_prune(PGconn *c, const char *schema, int rows_keep_h, int events_keep_d,
                    long long *deleted, char *errstr, size_t errstr_size)
{
    char age[48];
    *deleted = 0;
    if (rows_keep_h > 0) {
        snprintf(age, sizeof(age), "%d hours", rows_keep_h);
        if (prune_one(c, schema, "cg_cohort_rows", "row_event_id", age, deleted, errstr,
                      errstr_size))
            return -1;
    }
    if (events_keep_d > 0) {
        snprintf(age, sizeof(age), "%d days", events_keep_d);
        if (prune_one(c, schema, "cg_cohort_events", "event_id", age, deleted, errstr, errstr_size))
            return -1;
    }
    return 0;
}
