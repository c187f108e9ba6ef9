/* test_pg_release.c - graded release in `cohortgate sink` (pg.subscriber, issue 18), against the
 * real broker and the real PostgreSQL server (labels kafka and pg; skipped, exit 77, unless
 * COHORTGATE_TEST_BOOTSTRAP and COHORTGATE_TEST_PG are both set). Drives the built binary.
 *
 * Records produced with a real producer and the release headers the gateway writes
 * (cg.subscriber, cg.policy, cg.level, ...) to a sink whose pg.subscriber is "sponsor-a"
 * (max_level 3, its agreement expired):
 *   - its records at levels 2 and 3 load; the audit table holds their counts per policy, table
 *     and level;
 *   - a record of sponsor-b, one at level 5, one without headers, one with no cg.level are in
 *     cg_rejects (SQLSTATE CGREL) with the reason, never in the tables;
 *   - a row PostgreSQL refuses (a bad date) is in cg_rejects and not in the audit;
 *   - the expired agreement is logged at start (release.agreement_expired);
 *   - a second run over the same topic adds nothing (exactly once, audit included);
 *   - a pg.subscriber naming no declared subscriber stops the sink at start, located.
 */
#include "kafka_util.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <libpq-fe.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef CG_GATEWAY_BIN
#error "CG_GATEWAY_BIN must name the cohortgate binary"
#endif

#define HANG_MS 120000
#define POLICY  "v1+0123456789ab.ba9876543210"

static PGconn *pg;

static long long q_int(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static long long q_int(const char *fmt, ...)
{
    char sql[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sql, sizeof(sql), fmt, ap);
    va_end(ap);
    PGresult *r = PQexec(pg, sql);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        fprintf(stderr, "query failed: %s\n%s\n", sql, PQerrorMessage(pg));
        PQclear(r);
        fail();
    }
    long long v = PQgetisnull(r, 0, 0) ? -1 : strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return v;
}

typedef struct run {
    char name[96], topic[128], schema[96], dir[256], config[320];
} run_t;

static void write_config(const run_t *r, const char *path, const char *subscriber)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f,
            "{\"group_id\": \"%s\", \"inputs\": [{\"topic\": \"%s\"}],\n"
            " \"output\": {\"sink\": \"pg\"},\n"
            " \"delivery\": {\"transaction_max_messages\": 100, \"commit_interval_ms\": 200},\n"
            " \"kafka\": {\"bootstrap.servers\": \"%s\", \"session.timeout.ms\": 6000},\n"
            " \"pg\": {\"conninfo_env\": \"COHORTGATE_TEST_PG\", \"schema\": \"%s\",\n"
            "        \"subscriber\": \"%s\"},\n"
            " \"release\": {\"subscribers\": [\n"
            "   {\"name\": \"sponsor-a\", \"topic\": \"%s\", \"agreement\": \"DUA-A\",\n"
            "    \"expires\": \"2020-01-31\", \"max_level\": 3},\n"
            "   {\"name\": \"sponsor-b\", \"topic\": \"%s.b\", \"agreement\": \"DUA-B\",\n"
            "    \"expires\": \"2099-12-31\", \"max_level\": 5}]},\n"
            " \"metrics\": {\"listen\": \"off\"}, \"log\": {\"level\": \"info\"}}\n",
            r->name, r->topic, tk_bootstrap(), r->schema, subscriber, r->topic, r->topic);
    fclose(f);
}

static void run_new(run_t *r, const char *prefix)
{
    tk_unique_name(r->name, sizeof(r->name), prefix);
    snprintf(r->topic, sizeof(r->topic), "%s.sponsor-a", r->name);
    snprintf(r->schema, sizeof(r->schema), "%s", r->name);
    for (char *p = r->schema; *p; p++)
        if (*p == '-' || *p == '.')
            *p = '_';
    snprintf(r->dir, sizeof(r->dir), "/tmp/%s", r->name);
    assert_int_equal(mkdir(r->dir, 0700), 0);
    snprintf(r->config, sizeof(r->config), "%s/sink.json", r->dir);
    assert_int_equal(tk_create_topic(r->topic, 1), 0);
    write_config(r, r->config, "sponsor-a");
}

static void run_end(const run_t *r)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", r->dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", r->dir);
    char sql[256];
    snprintf(sql, sizeof(sql), "DROP SCHEMA IF EXISTS %s CASCADE", r->schema);
    PQclear(PQexec(pg, sql));
}

/* `cohortgate sink -c config EXTRA` (NULL: --idle-exit 1500): its exit status; its log in log. */
static int sink(const char *config, const char *extra, const char *log)
{
    char *argv[8] = {(char *)CG_GATEWAY_BIN, (char *)"sink", (char *)"-c", (char *)config};
    int n = 4;
    if (extra) {
        argv[n++] = (char *)extra;
    } else {
        argv[n++] = (char *)"--idle-exit";
        argv[n++] = (char *)"1500";
    }
    argv[n] = NULL;
    pid_t pid = tk_spawn(argv, log, NULL);
    assert_true(pid > 0);
    int st;
    if (tk_wait_pid(pid, HANG_MS, &st)) {
        kill(pid, SIGKILL);
        fprintf(stderr, "sink hung; log in %s\n", log);
        fail();
    }
    int rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    if (rc)
        fprintf(stderr, "sink exited %d; log in %s\n", rc, log);
    return rc;
}

/* One envelope with the release headers of subscriber at level (level "": no cg.level;
 * subscriber NULL: no headers at all). */
static void produce(rd_kafka_t *p, const char *topic, const char *table, const char *row,
                    const char *subscriber, const char *level)
{
    char value[1024];
    snprintf(value, sizeof(value),
             "{\"standard\":\"omop-cdm-5.4\",\"table\":\"%s\",\"op\":\"upsert\",\"row\":%s}", table,
             row);
    rd_kafka_headers_t *h = rd_kafka_headers_new(8);
    if (subscriber) {
        rd_kafka_header_add(h, "cg.spec", -1, "hl7v2-oru", -1);
        rd_kafka_header_add(h, "cg.spec.version", -1, "1", -1);
        rd_kafka_header_add(h, "cg.table", -1, table, -1);
        rd_kafka_header_add(h, "cg.rule", -1, "r1", -1);
        rd_kafka_header_add(h, "cg.op", -1, "upsert", -1);
        rd_kafka_header_add(h, "cg.subscriber", -1, subscriber, -1);
        rd_kafka_header_add(h, "cg.policy", -1, POLICY, -1);
        if (*level)
            rd_kafka_header_add(h, "cg.level", -1, level, -1);
    }
    assert_int_equal(rd_kafka_producev(p, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY("k", 1),
                                       RD_KAFKA_V_VALUE(value, strlen(value)),
                                       RD_KAFKA_V_HEADERS(h),
                                       RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END),
                     0);
}

#define MEAS(id, date)                                                                             \
    "{\"measurement_id\":" #id ",\"person_id\":1,\"measurement_concept_id\":3004410,"              \
    "\"measurement_date\":\"" date "\",\"measurement_type_concept_id\":32817}"

static long long audited(const run_t *r, const char *table, int level)
{
    return q_int("SELECT coalesce(sum(rows), 0) FROM %s.cohortgate_release_audit WHERE "
                 "subscriber = 'sponsor-a' AND policy = '" POLICY "' AND table_name = '%s' AND "
                 "level = %d",
                 r->schema, table, level);
}

static long long rejected(const run_t *r, int id, const char *reason)
{
    return q_int("SELECT count(*) FROM %s.cg_rejects WHERE sqlstate = 'CGREL' AND reason LIKE "
                 "'%s' AND record LIKE '%%\"measurement_id\":%d,%%'",
                 r->schema, reason, id);
}

static void test_release(void **state)
{
    (void)state;
    run_t r;
    run_new(&r, "cg-it-sink-release");
    rd_kafka_t *p = tk_producer();
    produce(p, r.topic, "person",
            "{\"person_id\":1,\"gender_concept_id\":8507,\"year_of_birth\":1980,"
            "\"race_concept_id\":0,\"ethnicity_concept_id\":0}",
            "sponsor-a", "2");
    produce(p, r.topic, "measurement", MEAS(10, "2024-01-02"), "sponsor-a", "3");
    produce(p, r.topic, "measurement", MEAS(11, "2024-01-03"), "sponsor-a", "3");
    produce(p, r.topic, "measurement", MEAS(16, "2024-01-04"), "sponsor-a", "2");
    /* PostgreSQL refuses it: rejected, not audited */
    produce(p, r.topic, "measurement", MEAS(12, "2024-13-45"), "sponsor-a", "3");
    /* the sink refuses these */
    produce(p, r.topic, "measurement", MEAS(13, "2024-01-05"), "sponsor-a", "5");
    produce(p, r.topic, "measurement", MEAS(14, "2024-01-06"), "sponsor-b", "2");
    produce(p, r.topic, "measurement", MEAS(15, "2024-01-07"), NULL, NULL);
    produce(p, r.topic, "measurement", MEAS(17, "2024-01-08"), "sponsor-a", "");
    assert_int_equal(rd_kafka_flush(p, 30000), 0);
    rd_kafka_destroy(p);

    char log[400];
    snprintf(log, sizeof(log), "%s/init.log", r.dir);
    assert_int_equal(sink(r.config, "--init", log), 0);
    snprintf(log, sizeof(log), "%s/sink.log", r.dir);
    assert_int_equal(sink(r.config, NULL, log), 0);
    assert_true(tk_file_count(log, "release.agreement_expired") > 0);

    assert_int_equal(q_int("SELECT count(*) FROM %s.person", r.schema), 1);
    assert_int_equal(q_int("SELECT count(*) FROM %s.measurement", r.schema), 3);
    /* the loaded ones are the source ids 10, 11 and 16 (ids through the id map) */
    assert_int_equal(q_int("SELECT count(*) FROM %s.measurement m JOIN %s.cg_id_map i ON i.id = "
                           "m.measurement_id WHERE i.source_id IN (10, 11, 16)",
                           r.schema, r.schema),
                     3);
    assert_int_equal(
        q_int("SELECT count(*) FROM %s.cg_id_map WHERE source_id IN (13, 14, 15, 17)", r.schema),
        0);
    assert_int_equal(q_int("SELECT count(*) FROM %s.cg_rejects", r.schema), 5);
    assert_int_equal(rejected(&r, 13, "record level 5 above this subscriber''s max_level 3"), 1);
    assert_int_equal(rejected(&r, 14,
                              "record released for subscriber ''sponsor-b'', this database is "
                              "''sponsor-a''"),
                     1);
    assert_int_equal(
        rejected(&r, 15, "record has no cg.subscriber header: not released under a policy%%"), 1);
    assert_int_equal(rejected(&r, 17, "record has no cg.level header (1 to 5)"), 1);
    assert_int_equal(q_int("SELECT count(*) FROM %s.cg_rejects WHERE table_name = 'measurement' "
                           "AND sqlstate = 'CGREL'",
                           r.schema),
                     3); /* the one without headers has no cg.table */
    assert_int_equal(q_int("SELECT count(*) FROM %s.cg_rejects WHERE sqlstate NOT LIKE 'CG%%' AND "
                           "record LIKE '%%\"measurement_id\":12,%%'",
                           r.schema),
                     1);

    /* the audit: per (subscriber, policy, table, level), the rows loaded */
    assert_int_equal(audited(&r, "person", 2), 1);
    assert_int_equal(audited(&r, "measurement", 3), 2);
    assert_int_equal(audited(&r, "measurement", 2), 1);
    assert_int_equal(q_int("SELECT sum(rows) FROM %s.cohortgate_release_audit", r.schema), 4);
    assert_int_equal(q_int("SELECT count(*) FROM %s.cohortgate_release_audit WHERE loaded_at IS "
                           "NULL OR rows <= 0",
                           r.schema),
                     0);

    /* a second run: nothing new, nothing audited twice */
    snprintf(log, sizeof(log), "%s/sink2.log", r.dir);
    assert_int_equal(sink(r.config, NULL, log), 0);
    assert_int_equal(q_int("SELECT sum(rows) FROM %s.cohortgate_release_audit", r.schema), 4);
    assert_int_equal(q_int("SELECT count(*) FROM %s.cg_rejects", r.schema), 5);
    run_end(&r);
}

/* pg.subscriber naming no declared subscriber: the sink refuses to start, located. */
static void test_undeclared(void **state)
{
    (void)state;
    run_t r;
    run_new(&r, "cg-it-sink-release-bad");
    char bad[400], log[400];
    snprintf(bad, sizeof(bad), "%s/bad.json", r.dir);
    write_config(&r, bad, "sponsor-c");
    snprintf(log, sizeof(log), "%s/bad.log", r.dir);
    assert_int_equal(sink(bad, NULL, log), 1);
    assert_true(tk_file_count(log, "bad.json:6:") > 0);
    assert_true(tk_file_count(log, "'pg.subscriber' names 'sponsor-c'") > 0);
    run_end(&r);
}

int main(void)
{
    if (!tk_bootstrap() || !getenv("COHORTGATE_TEST_PG")) {
        printf("skipped: set COHORTGATE_TEST_BOOTSTRAP and COHORTGATE_TEST_PG\n");
        return 77;
    }
    pg = PQconnectdb(getenv("COHORTGATE_TEST_PG"));
    if (PQstatus(pg) != CONNECTION_OK) {
        fprintf(stderr, "cannot connect: %s\n", PQerrorMessage(pg));
        return 1;
    }
    PQclear(PQexec(pg, "SET client_min_messages = warning"));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_release),
        cmocka_unit_test(test_undeclared),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    PQfinish(pg);
    return rc;
}
