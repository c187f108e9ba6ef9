/* test_pg_sink_order.c - the stale-record rule (README, "Order"): last writer by source time,
 * against the real broker and PostgreSQL server (labels kafka and pg; exit 77 without them).
 * Records carry source.time; the sink skips a record older than the row version (or delete)
 * already applied for its id.
 *
 *   later:      a corrected result (newer) loaded before its preliminary (older), in separate
 *               transactions: the correction stays (the first went the direct COPY, the second
 *               the statements); a delete before the upsert it retracts: the row stays away; a
 *               newer upsert brings it back; a person's delete (A29) and a stale person row.
 *   same batch: both versions in one transaction, the older last: the newer wins.
 *   two topics: the delete on one topic, the older upsert on another (a cohort topic beside
 *               the records topic) read after it: the row stays away.
 *   no time:    records without source.time apply in their order, as before.
 *
 * The first three again with bigint ids (pg.id_type), whose applied times live in cg_row_time
 * instead of the id map.
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

#define PERSON 930000001LL
#define RESULT 931000001LL

/* the cases' "pg" members: "" (integer ids), or bigint ids for the *_bigint cases */
static const char *pg_more = "";

static void run_new(pt_run_t *r, const char *prefix, int txn_max)
{
    char name[96];
    snprintf(name, sizeof(name), "%s%s", prefix, *pg_more ? "-b" : "");
    pt_run_new(r, name, "records", 1);
    pt_write_config(r, r->config, txn_max, 100, pg_more, "");
    char log[400];
    snprintf(log, sizeof(log), "%s/init.log", r->dir);
    assert_int_equal(pt_sink(r->config, "--init", 0, log), 0);
}

static void sink_pass(const pt_run_t *r)
{
    char log[400];
    snprintf(log, sizeof(log), "%s/sink.log", r->dir);
    assert_int_equal(pt_sink(r->config, NULL, 1500, log), 0);
}

/* An envelope of table with row (JSON members) and source time (NULL: no source). */
static void produce(const char *topic, const char *table, const char *op, const char *row,
                    const char *time)
{
    char v[1024], src[200] = "";
    if (time)
        snprintf(src, sizeof(src),
                 ",\"source\":{\"message_id\":\"m\",\"time\":\"%s\",\"spec\":\"t\","
                 "\"spec_version\":1,\"rule\":\"r\"}",
                 time);
    snprintf(v, sizeof(v),
             "{\"standard\":\"omop-cdm-5.4\",\"table\":\"%s\",\"op\":\"%s\",\"row\":{%s}%s}", table,
             op, row, src);
    rd_kafka_t *p = tk_producer();
    pt_produce(p, topic, "psn", v);
    pt_producer_close(p);
}

static void person(const char *topic, const char *op, const char *time)
{
    char row[200];
    snprintf(row, sizeof(row), "\"person_id\":%lld%s", PERSON,
             strcmp(op, "upsert") ? ""
                                  : ",\"gender_concept_id\":8532,\"year_of_birth\":1970,"
                                    "\"race_concept_id\":0,\"ethnicity_concept_id\":0");
    produce(topic, "person", op, row, time);
}

/* The result's upsert with value v, or its delete (v < 0). */
static void result(const char *topic, double v, const char *time)
{
    char row[400];
    if (v < 0)
        snprintf(row, sizeof(row), "\"measurement_id\":%lld,\"person_id\":%lld", RESULT, PERSON);
    else
        snprintf(row, sizeof(row),
                 "\"measurement_id\":%lld,\"person_id\":%lld,\"measurement_concept_id\":3004410,"
                 "\"measurement_date\":\"2024-03-01\",\"measurement_type_concept_id\":32856,"
                 "\"value_as_number\":%.1f",
                 RESULT, PERSON, v);
    produce(topic, "measurement", v < 0 ? "delete" : "upsert", row, time);
}

/* The result's value (-1: no row). */
static double value(const pt_run_t *r)
{
    char q[300];
    snprintf(q, sizeof(q), "SELECT coalesce(max(value_as_number)::text, '-1') FROM %s.measurement",
             r->schema);
    char *t = pt_q_text(q);
    double v = atof(t);
    free(t);
    return v;
}

static void test_later(void **state)
{
    (void)state;
    pt_run_t r;
    run_new(&r, "cg-it-order", 10);
    person(r.topic, "upsert", "2024-03-01T08:00:00Z");
    result(r.topic, 7.5, "2024-03-02T10:00:00+01:00"); /* the correction, first */
    sink_pass(&r);
    assert_true(value(&r) == 7.5);
    result(r.topic, 6.0, "2024-03-01T12:00:00+01:00"); /* its preliminary, late */
    sink_pass(&r);
    assert_true(value(&r) == 7.5);
    /* a delete, then an upsert older than it: the row stays retracted */
    result(r.topic, -1, "2024-03-03T09:00:00Z");
    sink_pass(&r);
    assert_true(value(&r) == -1);
    result(r.topic, 8.0, "2024-03-02T23:00:00Z");
    sink_pass(&r);
    assert_true(value(&r) == -1);
    /* a newer version brings it back */
    result(r.topic, 8.5, "2024-03-04");
    sink_pass(&r);
    assert_true(value(&r) == 8.5);
    /* the person deleted (A29), then a stale person row: no person */
    person(r.topic, "delete", "2024-03-05T00:00:00Z");
    sink_pass(&r);
    person(r.topic, "upsert", "2024-03-04T00:00:00Z");
    sink_pass(&r);
    assert_int_equal(pt_q_int("SELECT count(*) FROM %s.person", r.schema), 0);
    person(r.topic, "upsert", "2024-03-06T00:00:00Z");
    sink_pass(&r);
    assert_int_equal(pt_q_int("SELECT count(*) FROM %s.person", r.schema), 1);
    assert_int_equal(pt_q_int("SELECT count(*) FROM %s.cg_rejects", r.schema), 0);
    pt_run_end(&r);
}

static void test_same_batch(void **state)
{
    (void)state;
    pt_run_t r;
    run_new(&r, "cg-it-order1", 1000);
    person(r.topic, "upsert", "2024-03-01T08:00:00Z");
    result(r.topic, 7.5, "2024-03-02T10:00:00Z");
    result(r.topic, 6.0, "2024-03-01T12:00:00Z");
    sink_pass(&r);
    assert_true(value(&r) == 7.5);
    /* and a delete older than the row, in one batch with a newer upsert */
    result(r.topic, 9.0, "2024-03-05T10:00:00Z");
    result(r.topic, -1, "2024-03-04T10:00:00Z");
    sink_pass(&r);
    assert_true(value(&r) == 9.0);
    pt_run_end(&r);
}

static void test_two_topics(void **state)
{
    (void)state;
    pt_run_t r;
    run_new(&r, "cg-it-order2", 10);
    char other[200];
    snprintf(other, sizeof(other), "%s.cohort.t2dm", r.name);
    assert_int_equal(tk_create_topic(other, 1), 0);
    pt_sh("sed -i 's/\"inputs\": \\[{\"topic\": \"%s\"}\\]/\"inputs\": [{\"topic\": \"%s\"}, "
          "{\"topic\": \"%s\"}]/' '%s'",
          r.topic, r.topic, other, r.config);
    /* the delete on the records topic read first, the older upsert on the cohort topic
     * after it */
    person(r.topic, "upsert", "2024-03-01T08:00:00Z");
    result(r.topic, -1, "2024-03-03T09:00:00Z");
    sink_pass(&r);
    result(other, 7.0, "2024-03-02T09:00:00Z");
    sink_pass(&r);
    assert_true(value(&r) == -1);
    /* a newer upsert on the cohort topic applies */
    result(other, 7.2, "2024-03-04T09:00:00Z");
    sink_pass(&r);
    assert_true(value(&r) == 7.2);
    assert_int_equal(pt_q_int("SELECT count(*) FROM %s.cg_offsets", r.schema), 2);
    pt_run_end(&r);
}

static void test_no_time(void **state)
{
    (void)state;
    pt_run_t r;
    run_new(&r, "cg-it-order3", 10);
    person(r.topic, "upsert", NULL);
    result(r.topic, 7.5, NULL);
    sink_pass(&r);
    result(r.topic, 6.0, NULL);
    sink_pass(&r);
    assert_true(value(&r) == 6.0); /* the last to arrive */
    pt_run_end(&r);
}

static int bigint_ids(void **state)
{
    (void)state;
    pg_more = ", \"id_type\": \"bigint\"";
    return 0;
}

static int integer_ids(void **state)
{
    (void)state;
    pg_more = "";
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_later),
        cmocka_unit_test(test_same_batch),
        cmocka_unit_test(test_two_topics),
        cmocka_unit_test(test_no_time),
        cmocka_unit_test_setup_teardown(test_later, bigint_ids, integer_ids),
        cmocka_unit_test_setup_teardown(test_same_batch, bigint_ids, integer_ids),
        cmocka_unit_test_setup_teardown(test_two_topics, bigint_ids, integer_ids),
    };
    return PT_RUN_TESTS(tests);
}
