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
#include "pg_test_util.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define POLICY "v1+0123456789ab.ba9876543210"

/* The sink's config for a database of subscriber (pg.subscriber is on line 6 of the file). */
static void write_config(const pt_run_t *r, const char *path, const char *subscriber)
{
    char pg_more[128], release[1024];
    snprintf(pg_more, sizeof(pg_more), ",\n        \"subscriber\": \"%s\"", subscriber);
    snprintf(release, sizeof(release),
             " \"release\": {\"subscribers\": [\n"
             "   {\"name\": \"sponsor-a\", \"topic\": \"%s\", \"agreement\": \"DUA-A\",\n"
             "    \"expires\": \"2020-01-31\", \"max_level\": 3},\n"
             "   {\"name\": \"sponsor-b\", \"topic\": \"%s.b\", \"agreement\": \"DUA-B\",\n"
             "    \"expires\": \"2099-12-31\", \"max_level\": 5}]},\n",
             r->topic, r->topic);
    pt_write_config(r, path, 100, 200, pg_more, release);
}

static void run_new(pt_run_t *r, const char *prefix)
{
    pt_run_new(r, prefix, "sponsor-a", 1);
    write_config(r, r->config, "sponsor-a");
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

static long long audited(const pt_run_t *r, const char *table, int level)
{
    return pt_q_int("SELECT coalesce(sum(rows), 0) FROM %s.cohortgate_release_audit WHERE "
                    "subscriber = 'sponsor-a' AND policy = '" POLICY "' AND table_name = '%s' AND "
                    "level = %d",
                    r->schema, table, level);
}

static long long rejected(const pt_run_t *r, int id, const char *reason)
{
    return pt_q_int("SELECT count(*) FROM %s.cg_rejects WHERE sqlstate = 'CGREL' AND reason LIKE "
                    "'%s' AND record LIKE '%%\"measurement_id\":%d,%%'",
                    r->schema, reason, id);
}

static void test_release(void **state)
{
    (void)state;
    pt_run_t r;
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
    pt_producer_close(p);

    char log[400];
    snprintf(log, sizeof(log), "%s/init.log", r.dir);
    assert_int_equal(pt_sink(r.config, "--init", 0, log), 0);
    snprintf(log, sizeof(log), "%s/sink.log", r.dir);
    assert_int_equal(pt_sink(r.config, NULL, 1, log), 0);
    assert_true(tk_file_count(log, "release.agreement_expired") > 0);

    assert_int_equal(pt_q_int("SELECT count(*) FROM %s.person", r.schema), 1);
    assert_int_equal(pt_q_int("SELECT count(*) FROM %s.measurement", r.schema), 3);
    /* the loaded ones are the source ids 10, 11 and 16 (ids through the id map) */
    assert_int_equal(pt_q_int("SELECT count(*) FROM %s.measurement m JOIN %s.cg_id_map i ON i.id = "
                              "m.measurement_id WHERE i.source_id IN (10, 11, 16)",
                              r.schema, r.schema),
                     3);
    assert_int_equal(
        pt_q_int("SELECT count(*) FROM %s.cg_id_map WHERE source_id IN (13, 14, 15, 17)", r.schema),
        0);
    assert_int_equal(pt_q_int("SELECT count(*) FROM %s.cg_rejects", r.schema), 5);
    assert_int_equal(rejected(&r, 13, "record level 5 above this subscriber''s max_level 3"), 1);
    assert_int_equal(rejected(&r, 14,
                              "record released for subscriber ''sponsor-b'', this database is "
                              "''sponsor-a''"),
                     1);
    assert_int_equal(
        rejected(&r, 15, "record has no cg.subscriber header: not released under a policy%%"), 1);
    assert_int_equal(rejected(&r, 17, "record has no cg.level header (1 to 5)"), 1);
    assert_int_equal(pt_q_int("SELECT count(*) FROM %s.cg_rejects WHERE table_name = 'measurement' "
                              "AND sqlstate = 'CGREL'",
                              r.schema),
                     3); /* the one without headers has no cg.table */
    assert_int_equal(
        pt_q_int("SELECT count(*) FROM %s.cg_rejects WHERE sqlstate NOT LIKE 'CG%%' AND "
                 "record LIKE '%%\"measurement_id\":12,%%'",
                 r.schema),
        1);

    /* the audit: per (subscriber, policy, table, level), the rows loaded */
    assert_int_equal(audited(&r, "person", 2), 1);
    assert_int_equal(audited(&r, "measurement", 3), 2);
    assert_int_equal(audited(&r, "measurement", 2), 1);
    assert_int_equal(pt_q_int("SELECT sum(rows) FROM %s.cohortgate_release_audit", r.schema), 4);
    assert_int_equal(pt_q_int("SELECT count(*) FROM %s.cohortgate_release_audit WHERE loaded_at IS "
                              "NULL OR rows <= 0",
                              r.schema),
                     0);

    /* a second run: nothing new, nothing audited twice */
    snprintf(log, sizeof(log), "%s/sink2.log", r.dir);
    assert_int_equal(pt_sink(r.config, NULL, 1, log), 0);
    assert_int_equal(pt_q_int("SELECT sum(rows) FROM %s.cohortgate_release_audit", r.schema), 4);
    assert_int_equal(pt_q_int("SELECT count(*) FROM %s.cg_rejects", r.schema), 5);
    pt_run_end(&r);
}

/* pg.subscriber naming no declared subscriber: the sink refuses to start, located. */
static void test_undeclared(void **state)
{
    (void)state;
    pt_run_t r;
    run_new(&r, "cg-it-sink-release-bad");
    char bad[400], log[400];
    snprintf(bad, sizeof(bad), "%s/bad.json", r.dir);
    write_config(&r, bad, "sponsor-c");
    snprintf(log, sizeof(log), "%s/bad.log", r.dir);
    assert_int_equal(pt_sink(bad, NULL, 1, log), 1);
    assert_true(tk_file_count(log, "bad.json:6:") > 0);
    assert_true(tk_file_count(log, "'pg.subscriber' names 'sponsor-c'") > 0);
    pt_run_end(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_release),
        cmocka_unit_test(test_undeclared),
    };
    return PT_RUN_TESTS(tests);
}
