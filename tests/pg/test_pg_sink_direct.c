/* test_pg_sink_direct.c - the sink's direct path (pg_apply_direct.c: rows whose keys are new to
 * the id map COPY'd straight into their table) against the real broker and PostgreSQL server
 * (labels kafka and pg; skipped, exit 77, unless both are set), one partition, small batches.
 *
 *   new:    40 persons, then 1,200 new measurements, 3 of which the database refuses (a source
 *           value too long): the 1,197 others loaded with their persons' compact ids and
 *           values, the 3 in cg_rejects once each, every person's observation_period spanning
 *           its measurements' dates, no gap in the id map's integers; the log says rows were
 *           copied, and that the batches with a bad row took the statements.
 *   running: the same in one long transaction: each full batch's COPY left running while the
 *           next is read; those refused found when the answer is awaited, their rows then
 *           through the statements (the same rejects, no gap, exact periods).
 *   mixed:  a new process (nothing cached) gets 300 updates of those measurements interleaved
 *           with 300 new ones at later dates: the first batch's keys, guessed new, are refused
 *           by the id map and looked up (the log says so; the first run, all new, never
 *           guessed wrong); the new keys copied and the others upserted in the same batches
 *           (the log says so): values updated, new rows in, one compact id per row id and
 *           still no gap (the refused guess's ids given out again), periods widened.
 *   merge:  person 2 merged into person 1, then 50 new measurements of person 2: they belong
 *           to person 1.
 *   spans:  persons loaded, then one batch with a person's dates out of order: the period is
 *           widened from the first to the last date.
 *   columns: 300 new measurements without unit_source_value, then 300 with it, in one run:
 *           the direct COPY (which names only the columns its rows were given) takes the new
 *           column in.
 *   cohorts: with the shipped t2dm definition, persons with HbA1c rows of 5 % (nobody enters),
 *           then new measurements alone: copied straight in, and their persons evaluated: the
 *           10 given an HbA1c of 7 % enter, the 30 still at 5 % do not.
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

#define PERSON0 5000000000000LL
#define MEAS0   6000000000000LL
#define PERSONS 40
#define FIRST   1200
#define BAD(i)  ((i) == 100 || (i) == 600 || (i) == 1100)

/* delivery: the config's "delivery" object; pg_more: more "pg" members, each after a comma,
 * or "" */
static void config_delivery(const pt_run_t *r, const char *delivery, const char *pg_more)
{
    FILE *f = fopen(r->config, "w");
    assert_non_null(f);
    fprintf(f,
            "{\"group_id\": \"%s\", \"inputs\": [{\"topic\": \"%s\"}],\n"
            " \"output\": {\"sink\": \"pg\"},\n"
            " \"delivery\": %s,\n"
            " \"kafka\": {\"bootstrap.servers\": \"%s\", \"session.timeout.ms\": 6000},\n"
            " \"pg\": {\"conninfo_env\": \"COHORTGATE_TEST_PG\", \"schema\": \"%s\", "
            "\"batch_rows\": 300%s},\n"
            " \"metrics\": {\"listen\": \"off\"}, \"log\": {\"level\": \"debug\"}}\n",
            r->name, r->topic, delivery, tk_bootstrap(), r->schema, pg_more);
    assert_int_equal(fclose(f), 0);
}

static void config(const pt_run_t *r, const char *pg_more)
{
    config_delivery(r, "{\"transaction_max_messages\": 500, \"commit_interval_ms\": 200}", pg_more);
}

/* An HbA1c (LOINC 4548-4, in %: the shipped t2dm definition's measurement). */
static void measurement(rd_kafka_t *p, const pt_run_t *r, long long i, long long person,
                        const char *date, long long value, int bad)
{
    char buf[1024];
    snprintf(buf, sizeof(buf),
             "{\"standard\":\"omop-cdm-5.4\",\"table\":\"measurement\",\"op\":\"upsert\","
             "\"row\":{\"measurement_id\":%lld,\"person_id\":%lld,\"measurement_concept_id\":"
             "3004410,\"measurement_date\":\"%s\",\"measurement_type_concept_id\":32856,"
             "\"value_as_number\":%lld,\"unit_concept_id\":8554,\"measurement_source_value\":"
             "\"%s\"}}",
             MEAS0 + i, PERSON0 + person, date, value,
             bad ? "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx" : "4548-4");
    pt_produce(p, r->topic, "1", buf);
}

static void persons(rd_kafka_t *p, const pt_run_t *r, int n)
{
    for (int i = 0; i < n; i++) {
        char buf[512];
        snprintf(buf, sizeof(buf),
                 "{\"standard\":\"omop-cdm-5.4\",\"table\":\"person\",\"op\":\"upsert\","
                 "\"row\":{\"person_id\":%lld,\"gender_concept_id\":8507,\"year_of_birth\":1970,"
                 "\"race_concept_id\":0,\"ethnicity_concept_id\":0}}",
                 PERSON0 + i);
        pt_produce(p, r->topic, "1", buf);
    }
}

/* Runs the sink to its idle end, its log in DIR/name. */
static void run_sink(const pt_run_t *r, const char *name)
{
    char log[400];
    snprintf(log, sizeof(log), "%s/%s", r->dir, name);
    assert_int_equal(pt_sink(r->config, NULL, 1, log), 0);
}

/* Persons whose observation_period is exactly the span of their measurements' dates. */
static long long periods_exact(const pt_run_t *r)
{
    return pt_q_int("SELECT count(*) FROM %s.observation_period o JOIN (SELECT person_id, "
                    "min(measurement_date) d0, max(measurement_date) d1 FROM %s.measurement "
                    "GROUP BY 1) g ON g.person_id = o.person_id WHERE "
                    "o.observation_period_start_date = g.d0 AND o.observation_period_end_date "
                    "= g.d1 AND o.observation_period_id = o.person_id",
                    r->schema, r->schema);
}

/* Measurements whose row id (through the id map) is i and value v, for i in [from, to). */
static long long values_are(const pt_run_t *r, long long from, long long to, const char *v)
{
    return pt_q_int("SELECT count(*) FROM %s.measurement m JOIN %s.cg_id_map k ON k.id = "
                    "m.measurement_id WHERE k.source_id >= %lld AND k.source_id < %lld AND "
                    "m.value_as_number = %s",
                    r->schema, r->schema, MEAS0 + from, MEAS0 + to, v);
}

/* --init, then new persons (the statements) and FIRST new measurements (copied; BAD ones too
 * long for their column) loaded by one sink run: every offset committed, the bad ones left out. */
static void load_first(pt_run_t *r)
{
    char log[400];
    snprintf(log, sizeof(log), "%s/init.log", r->dir);
    assert_int_equal(pt_sink(r->config, "--init", 0, log), 0);
    rd_kafka_t *p = tk_producer();
    persons(p, r, PERSONS);
    for (int i = 0; i < FIRST; i++) {
        char date[16];
        snprintf(date, sizeof(date), "2024-01-%02d", 1 + i % 28);
        measurement(p, r, i, i % PERSONS, date, i, BAD(i));
    }
    pt_producer_close(p);
    run_sink(r, "sink-1.log");
    assert_int_equal(pt_committed(r), PERSONS + FIRST);
    assert_int_equal(pt_q_int("SELECT count(*) FROM %s.measurement", r->schema), FIRST - 3);
}

static void test_direct(void **state)
{
    (void)state;
    pt_run_t r;
    pt_run_new(&r, "cg-it-sink-direct", "records", 1);
    config(&r, "");
    load_first(&r);
    assert_int_equal(pt_q_int("SELECT count(DISTINCT \"offset\") FROM %s.cg_rejects WHERE "
                              "sqlstate = '22001' AND table_name = 'measurement'",
                              r.schema),
                     3);
    assert_int_equal(pt_q_int("SELECT count(*) FROM %s.cg_rejects", r.schema), 3);
    /* every row with its own value and its person's compact id */
    assert_int_equal(pt_q_int("SELECT count(*) FROM %s.measurement m JOIN %s.cg_id_map k ON k.id "
                              "= m.measurement_id JOIN %s.cg_id_map q ON q.id = m.person_id "
                              "WHERE q.source_id = %lld + (k.source_id - %lld) %% %d AND "
                              "m.value_as_number = k.source_id - %lld",
                              r.schema, r.schema, r.schema, PERSON0, MEAS0, PERSONS, MEAS0),
                     FIRST - 3);
    assert_int_equal(periods_exact(&r), PERSONS);
    /* a refused row cost its batch's compact ids nothing */
    assert_int_equal(pt_q_int("SELECT max(id) FROM %s.cg_id_map", r.schema),
                     pt_q_int("SELECT count(*) FROM %s.cg_id_map", r.schema));
    pt_sh("grep -q 'measurement: [0-9]* rows copied' '%s/sink-1.log'", r.dir);
    pt_sh("grep -q 'pg.direct_refused.*measurement' '%s/sink-1.log'", r.dir);
    pt_sh("! grep -q 'pg.direct_guess' '%s/sink-1.log'", r.dir);

    /* mixed: updates and new keys in the same batches, from a process with nothing cached */
    rd_kafka_t *p = tk_producer();
    for (int i = 0; i < 300; i++) {
        measurement(p, &r, i, i % PERSONS, "2024-03-01", 10000 + i, 0);
        measurement(p, &r, FIRST + i, i % PERSONS, "2024-04-01", FIRST + i, 0);
    }
    pt_producer_close(p);
    run_sink(&r, "sink-2.log");
    assert_int_equal(pt_committed(&r), PERSONS + FIRST + 600);
    /* id 100 was refused before: its update is its first row */
    assert_int_equal(pt_q_int("SELECT count(*) FROM %s.measurement", r.schema), FIRST - 3 + 301);
    assert_int_equal(values_are(&r, 0, 300, "10000 + k.source_id - 6000000000000"), 300);
    assert_int_equal(values_are(&r, 300, FIRST, "k.source_id - 6000000000000"), FIRST - 300 - 2);
    assert_int_equal(values_are(&r, FIRST, FIRST + 300, "k.source_id - 6000000000000"), 300);
    assert_int_equal(pt_q_int("SELECT count(*) FROM %s.cg_id_map", r.schema),
                     PERSONS + FIRST + 300);
    assert_int_equal(pt_q_int("SELECT max(id) FROM %s.cg_id_map", r.schema), PERSONS + FIRST + 300);
    assert_int_equal(pt_q_int("SELECT count(*) FROM %s.observation_period WHERE "
                              "observation_period_end_date = '2024-04-01'",
                              r.schema),
                     PERSONS);
    assert_int_equal(periods_exact(&r), PERSONS);
    assert_int_equal(pt_q_int("SELECT count(*) FROM %s.cg_rejects", r.schema), 3);
    pt_sh("grep -q 'measurement: [0-9]* rows copied (binary), [1-9]' '%s/sink-2.log'", r.dir);
    pt_sh("grep -q 'pg.direct_guess.*measurement' '%s/sink-2.log'", r.dir);
    assert_int_equal(pt_q_int("SELECT count(DISTINCT id) FROM %s.cg_id_map", r.schema),
                     PERSONS + FIRST + 300);

    /* merge: person 2's new rows follow the merge to person 1 */
    p = tk_producer();
    char buf[512];
    snprintf(buf, sizeof(buf),
             "{\"standard\":\"cohortgate\",\"table\":\"cohortgate.person_merge\",\"op\":\"merge\","
             "\"row\":{\"person_merge_id\":1,\"person_id\":%lld,\"merged_person_id\":%lld,"
             "\"merge_date\":\"2024-04-11\"}}",
             PERSON0 + 1, PERSON0 + 2);
    pt_produce(p, r.topic, "1", buf);
    for (int i = 0; i < 50; i++)
        measurement(p, &r, 2000 + i, 2, "2024-05-01", i, 0);
    pt_producer_close(p);
    run_sink(&r, "sink-3.log");
    assert_int_equal(pt_committed(&r), PERSONS + FIRST + 600 + 51);
    assert_int_equal(pt_q_int("SELECT count(*) FROM %s.measurement m JOIN %s.cg_id_map k ON k.id "
                              "= m.measurement_id WHERE k.source_id >= %lld AND m.person_id = "
                              "(SELECT id FROM %s.cg_id_map WHERE source_id = %lld)",
                              r.schema, r.schema, MEAS0 + 2000, r.schema, PERSON0 + 1),
                     50);
    assert_int_equal(pt_q_int("SELECT count(*) FROM %s.measurement WHERE person_id = (SELECT id "
                              "FROM %s.cg_id_map WHERE source_id = %lld)",
                              r.schema, r.schema, PERSON0 + 2),
                     0);
    assert_int_equal(pt_q_int("SELECT count(*) FROM %s.cg_rejects", r.schema), 3);
    pt_run_end(&r);
}

/* A new case (one partition, --init done) whose two persons are loaded by a run of their own:
 * a batch with a person row derives its persons' periods anew from the tables rather than
 * widening them, so the next runs' rows take the direct path's widening. */
static void two_persons(pt_run_t *r, const char *prefix)
{
    pt_run_new(r, prefix, "records", 1);
    config(r, "");
    char log[400];
    snprintf(log, sizeof(log), "%s/init.log", r->dir);
    assert_int_equal(pt_sink(r->config, "--init", 0, log), 0);
    rd_kafka_t *p = tk_producer();
    persons(p, r, 2);
    pt_producer_close(p);
    run_sink(r, "persons.log");
}

/* One batch of new rows, a person's dates out of order (the last first, the first last): the
 * period is widened from the batch's first to its last date, read per person. */
static void test_direct_spans(void **state)
{
    (void)state;
    pt_run_t r;
    two_persons(&r, "cg-it-sink-spans");
    rd_kafka_t *p = tk_producer();
    static const char *const dates[] = {"2024-06-15", "2024-06-30", "2024-06-01", "2024-06-20"};
    for (int i = 0; i < 8; i++)
        measurement(p, &r, i, i % 2, dates[i / 2], i, 0);
    pt_producer_close(p);
    run_sink(&r, "sink.log");
    pt_sh("grep -q 'measurement: [0-9]* rows copied' '%s/sink.log'", r.dir);
    assert_int_equal(pt_q_int("SELECT count(*) FROM %s.observation_period WHERE "
                              "observation_period_start_date = '2024-06-01' AND "
                              "observation_period_end_date = '2024-06-30'",
                              r.schema),
                     2);
    assert_int_equal(periods_exact(&r), 2);
    pt_run_end(&r);
}

/* One sink run: 300 new measurements without unit_source_value, then 300 with it. The direct
 * COPY names only the columns its rows were given so far: the second batches' new column must
 * widen it, never be dropped. */
static void test_direct_columns(void **state)
{
    (void)state;
    pt_run_t r;
    two_persons(&r, "cg-it-sink-cols");
    char log[400];
    rd_kafka_t *p = tk_producer();
    for (int i = 0; i < 600; i++) {
        char buf[1024];
        snprintf(buf, sizeof(buf),
                 "{\"standard\":\"omop-cdm-5.4\",\"table\":\"measurement\",\"op\":\"upsert\","
                 "\"row\":{\"measurement_id\":%lld,\"person_id\":%lld,\"measurement_concept_id\":"
                 "3004410,\"measurement_date\":\"2024-02-01\",\"measurement_type_concept_id\":"
                 "32856,\"value_as_number\":%d%s}}",
                 MEAS0 + i, PERSON0 + i % 2, i, i < 300 ? "" : ",\"unit_source_value\":\"%\"");
        pt_produce(p, r.topic, "1", buf);
    }
    pt_producer_close(p);
    run_sink(&r, "sink.log");
    snprintf(log, sizeof(log), "%s/sink.log", r.dir);
    int copies = tk_file_count(log, "\"event\":\"pg.direct\",\"msg\":\"measurement: ");
    fprintf(stderr, "%d batch(es) of measurements copied\n", copies);
    assert_true(copies >= 2); /* the column came in a later batch than the first */
    /* and no COPY was refused (its rows would have taken the statements instead) */
    assert_int_equal(tk_file_count(log, "pg.direct_refused"), 0);
    assert_int_equal(pt_q_int("SELECT count(*) FROM %s.measurement", r.schema), 600);
    assert_int_equal(pt_q_int("SELECT count(*) FROM %s.measurement WHERE unit_source_value = '%%' "
                              "AND value_as_number >= 300",
                              r.schema),
                     300);
    assert_int_equal(
        pt_q_int("SELECT count(*) FROM %s.measurement WHERE unit_source_value IS NULL AND "
                 "value_as_number < 300",
                 r.schema),
        300);
    pt_run_end(&r);
}

/* With cohorts (the shipped t2dm definition): new measurements still go straight in, and their
 * persons are evaluated all the same: those with an HbA1c of 6.5 % or more enter (cohort rows
 * and enter events), the others do not. */
static void test_direct_cohorts(void **state)
{
    (void)state;
    pt_run_t r;
    pt_run_new(&r, "cg-it-sink-direct-cohort", "records", 1);
    char defs[400], more[1000];
    snprintf(defs, sizeof(defs), "%s/defs", r.dir);
    pt_sh("mkdir -p '%s' && cp %s/specs/cohorts/circe/t2dm.json '%s'/", defs, CG_SOURCE_DIR, defs);
    snprintf(more, sizeof(more),
             ", \"cohorts\": {\"definitions\": \"%s\", \"topic\": \"%s.cohort.events\"}", defs,
             r.name);
    config(&r, more);
    char log[400];
    snprintf(log, sizeof(log), "%s/init.log", r.dir);
    assert_int_equal(pt_sink(r.config, "--init", 0, log), 0);
    /* the persons, each with HbA1c rows of 5 %: nobody enters */
    rd_kafka_t *p = tk_producer();
    persons(p, &r, PERSONS);
    for (int i = 0; i < 200; i++)
        measurement(p, &r, i, i % PERSONS, "2024-02-01", 5, 0);
    pt_producer_close(p);
    run_sink(&r, "sink-1.log");
    assert_int_equal(pt_q_int("SELECT count(*) FROM %s.cohort", r.schema), 0);
    /* then new measurements alone (no person row in their batches, which would track the
     * persons anyway): 7 % for persons 0-9, copied straight in, and those 10 enter */
    p = tk_producer();
    for (int i = 200; i < 400; i++)
        measurement(p, &r, i, i % PERSONS, "2024-03-01", i % PERSONS < 10 ? 7 : 5, 0);
    pt_producer_close(p);
    run_sink(&r, "sink-2.log");
    assert_int_equal(pt_committed(&r), PERSONS + 400);
    assert_int_equal(pt_q_int("SELECT count(*) FROM %s.measurement", r.schema), 400);
    pt_sh("grep -q 'measurement: [0-9]* rows copied' '%s/sink-2.log'", r.dir);
    assert_int_equal(pt_q_int("SELECT count(*) FROM %s.cohort c JOIN %s.cg_id_map k ON k.id = "
                              "c.subject_id WHERE c.cohort_definition_id = 1 AND k.source_id < "
                              "%lld",
                              r.schema, r.schema, PERSON0 + 10),
                     10);
    assert_int_equal(pt_q_int("SELECT count(*) FROM %s.cohort", r.schema), 10);
    assert_int_equal(
        pt_q_int("SELECT count(*) FROM %s.cg_cohort_events WHERE event = 'enter'", r.schema), 10);
    pt_run_end(&r);
}

/* Batches of new measurements inside one long transaction: each batch's COPY is left running
 * while the next is read; the two whose COPY is refused (a bad row) find it when the answer is
 * awaited, and their rows take the statements then, before the next batch: the bad rows alone
 * rejected, once each, no gap in the id map, the periods exact. */
static void test_direct_running(void **state)
{
    (void)state;
    pt_run_t r;
    pt_run_new(&r, "cg-it-sink-direct-run", "records", 1);
    config_delivery(&r, "{\"transaction_max_messages\": 100000, \"commit_interval_ms\": 60000}",
                    "");
    load_first(&r);
    assert_int_equal(pt_q_int("SELECT count(DISTINCT \"offset\") FROM %s.cg_rejects WHERE "
                              "sqlstate = '22001' AND table_name = 'measurement' AND record LIKE "
                              "'%%xxxxxxxx%%'",
                              r.schema),
                     3);
    assert_int_equal(pt_q_int("SELECT count(*) FROM %s.cg_rejects", r.schema), 3);
    assert_int_equal(pt_q_int("SELECT count(*) FROM %s.measurement m JOIN %s.cg_id_map k ON k.id "
                              "= m.measurement_id WHERE m.value_as_number = k.source_id - %lld",
                              r.schema, r.schema, MEAS0),
                     FIRST - 3);
    assert_int_equal(periods_exact(&r), PERSONS);
    assert_int_equal(pt_q_int("SELECT max(id) FROM %s.cg_id_map", r.schema),
                     pt_q_int("SELECT count(*) FROM %s.cg_id_map", r.schema));
    pt_sh("grep -q 'measurement: [0-9]* rows copied (binary), 0 by the statements (answer awaited' "
          "'%s/sink-1.log'",
          r.dir);
    pt_sh("grep -q 'pg.direct_refused.*found when its answer was awaited' '%s/sink-1.log'", r.dir);
    pt_run_end(&r);
}

/* pg.copy_format: the direct path's binary COPY (pg_copy_binary.c) gives the rows the text COPY
 * gives, value for value. Awkward spellings of every type the binary format encodes (numbers
 * with exponents, negative zero, trailing zeros, times with zones and fractions, dates before
 * 2000 and at the ends of the range, text with escapes and UTF-8), and in one batch a time with
 * seven fraction digits, which the binary path does not encode: that batch goes as text. The
 * same records are loaded into a schema with "text": the two agree on every column (compared
 * through the id map, whose compact ids differ, and its source times). */
static const char *const bin_numbers[] = {"0",      "-0",       "5.0",     "-12.345",
                                          "1e+01",  "1.50e1",   "-2.5E-3", "123456789012.000100",
                                          "0.0001", "99999999", "1e100",   "-7"};
static const char *const bin_datetimes[] = {
    "2024-03-14T10:00:00", "2024-03-14T10:00:00.5",     "2024-03-14T10:00:00.123456",
    "2024-03-14T10:00",    "2024-03-14T23:59:59+05:00", "2024-03-14T10:00:00Z",
    "1899-12-31T00:00:00", "2024-02-29T12:00:00-0330",  "2024-03-14 10:00:00",
    "2024-03-14",          "0001-01-01T00:00:00",       "9999-12-31T23:59:59.999999"};
static const char *const bin_dates[] = {"2024-02-29", "1900-01-01", "1999-12-31",
                                        "2000-01-01", "9999-12-31", "0001-01-01"};
static const char *const bin_texts[] = {
    "a\\tb",     "back\\\\slash", "line\\nbreak", "\u00fcn\u00efc\u00f8d\u00e9 \u20ac",
    "quote\\\"", "\\r\\f\\b",     "plain",        ""};
#define BIN_ROWS 900

static void bin_records(const pt_run_t *r)
{
    rd_kafka_t *p = tk_producer();
    for (int i = 0; i < BIN_ROWS; i++) {
        char buf[2048];
        const char *nb = bin_numbers[i % 12], *dt = bin_datetimes[(i / 3) % 12];
        /* the batch of rows 300..599 holds one time the binary path leaves to the server */
        if (i == 450)
            dt = "2024-03-14T10:00:00.1234567";
        snprintf(buf, sizeof(buf),
                 "{\"standard\":\"omop-cdm-5.4\",\"table\":\"measurement\",\"op\":\"upsert\","
                 "\"row\":{\"measurement_id\":%lld,\"person_id\":%lld,\"measurement_concept_id\":"
                 "3004410,\"measurement_date\":\"%s\",\"measurement_datetime\":\"%s\","
                 "\"measurement_time\":\"10:00\",\"measurement_type_concept_id\":32856,"
                 "\"value_as_number\":%s,\"range_low\":%s,\"range_high\":%s,"
                 "\"unit_concept_id\":8554,\"measurement_source_value\":\"%s\","
                 "\"value_source_value\":\"%s\"},"
                 "\"source\":{\"time\":\"%s\"}}",
                 MEAS0 + i, PERSON0 + i % 2, bin_dates[i % 6], dt, nb, bin_numbers[(i + 5) % 12],
                 bin_numbers[(i + 7) % 12], bin_texts[i % 8], bin_texts[(i + 3) % 8],
                 bin_datetimes[(i + 1) % 12]);
        pt_produce(p, r->topic, "1", buf);
    }
    pt_producer_close(p);
}

/* r's measurements by their row ids and persons' (through the id map), every other column as
 * its jsonb text (numbers keep their scale), and the id map's source time. */
static void bin_rows_sql(char *buf, size_t size, const char *schema)
{
    snprintf(buf, size,
             "SELECT k.source_id, q.source_id AS person, k.t, (to_jsonb(m) - 'measurement_id' - "
             "'person_id')::text AS rest FROM %s.measurement m JOIN %s.cg_id_map k ON k.id = "
             "m.measurement_id JOIN %s.cg_id_map q ON q.id = m.person_id",
             schema, schema, schema);
}

static void test_direct_binary(void **state)
{
    (void)state;
    pt_run_t bin, text;
    two_persons(&bin, "cg-it-sink-bin");
    bin_records(&bin);
    run_sink(&bin, "sink.log");
    char log[400];
    snprintf(log, sizeof(log), "%s/sink.log", bin.dir);
    int n_bin = tk_file_count(log, "rows copied (binary)");
    int n_text = tk_file_count(log, "rows copied (text)");
    fprintf(stderr, "batches copied: %d binary, %d text\n", n_bin, n_text);
    assert_true(n_bin >= 2);
    assert_int_equal(n_text, 1); /* the batch with seven fraction digits */
    assert_int_equal(tk_file_count(log, "pg.direct_refused"), 0);
    assert_int_equal(pt_q_int("SELECT count(*) FROM %s.measurement", bin.schema), BIN_ROWS);

    /* the same records, as text, into a schema of their own */
    pt_run_new(&text, "cg-it-sink-bintext", "unused", 1);
    snprintf(text.topic, sizeof(text.topic), "%s", bin.topic);
    config(&text, ", \"copy_format\": \"text\"");
    snprintf(log, sizeof(log), "%s/init.log", text.dir);
    assert_int_equal(pt_sink(text.config, "--init", 0, log), 0);
    run_sink(&text, "sink.log");
    snprintf(log, sizeof(log), "%s/sink.log", text.dir);
    assert_int_equal(tk_file_count(log, "rows copied (binary)"), 0);
    assert_true(tk_file_count(log, "rows copied (text)") >= 3);
    assert_int_equal(pt_q_int("SELECT count(*) FROM %s.measurement", text.schema), BIN_ROWS);

    char a[512], b[512];
    bin_rows_sql(a, sizeof(a), bin.schema);
    bin_rows_sql(b, sizeof(b), text.schema);
    assert_int_equal(pt_q_int("SELECT count(*) FROM (%s) x", a), BIN_ROWS);
    assert_int_equal(pt_q_int("SELECT count(*) FROM (%s EXCEPT %s) d", a, b), 0);
    assert_int_equal(pt_q_int("SELECT count(*) FROM (%s EXCEPT %s) d", b, a), 0);
    /* and the values are the ones sent: a few read back */
    assert_int_equal(pt_q_int("SELECT count(*) FROM %s.measurement WHERE value_as_number::text = "
                              "'15.0'",
                              bin.schema),
                     BIN_ROWS / 12);
    assert_int_equal(pt_q_int("SELECT count(*) FROM %s.measurement WHERE "
                              "measurement_datetime = '2024-03-14 23:59:59'",
                              bin.schema),
                     BIN_ROWS / 12);
    assert_int_equal(pt_q_int("SELECT count(*) FROM %s.measurement WHERE "
                              "measurement_source_value = E'a\\tb'",
                              bin.schema),
                     BIN_ROWS / 8 + (BIN_ROWS % 8 > 0));
    assert_int_equal(pt_q_int("SELECT count(*) FROM %s.cg_id_map k JOIN %s.measurement m ON "
                              "m.measurement_id = k.id WHERE k.t = '2024-03-14 18:59:59+00'",
                              bin.schema, bin.schema),
                     BIN_ROWS / 12);
    pt_run_end(&text);
    pt_run_end(&bin);
}

/* A column's type altered under a running sink (integer to bigint): the binary COPY of the
 * types it had asked for is refused as a protocol error (4 bytes for an 8-byte type), which
 * aborts the transaction; the sink asks for the types again and the transaction's retry goes
 * binary: nothing lost, nothing rejected, one abort (not one per try). */
static void test_direct_binary_altered(void **state)
{
    (void)state;
    pt_run_t r;
    two_persons(&r, "cg-it-sink-binalt");
    pid_t pid = pt_sink_start(&r, "sink.log", 0);
    rd_kafka_t *p = tk_producer();
    for (int i = 0; i < 300; i++)
        measurement(p, &r, i, i % 2, "2024-02-01", i, 0);
    pt_producer_close(p);
    pt_wait_committed(&r, 2 + 300);
    pt_q_exec("ALTER TABLE %s.measurement ALTER COLUMN measurement_concept_id TYPE bigint",
              r.schema);
    p = tk_producer();
    for (int i = 300; i < 1200; i++)
        measurement(p, &r, i, i % 2, "2024-02-02", i, 0);
    pt_producer_close(p);
    pt_wait_committed(&r, 2 + 1200);
    char log[400];
    snprintf(log, sizeof(log), "%s/sink.log", r.dir);
    pt_sink_stop(pid, log);
    assert_int_equal(pt_q_int("SELECT count(*) FROM %s.measurement", r.schema), 1200);
    assert_int_equal(pt_q_int("SELECT count(*) FROM %s.cg_rejects", r.schema), 0);
    assert_int_equal(pt_q_int("SELECT count(*) FROM %s.measurement WHERE measurement_concept_id "
                              "= 3004410",
                              r.schema),
                     1200);
    int aborted = tk_file_count(log, "\"event\":\"transaction.aborted\"");
    int binary = tk_file_count(log, "rows copied (binary)");
    fprintf(stderr, "after the ALTER: %d aborted transaction(s), %d binary batch(es) in all\n",
            aborted, binary);
    assert_int_equal(aborted, 1);
    assert_int_equal(tk_file_count(log, "rows copied (text)"), 0);
    assert_true(binary >= 3); /* the first batch, and the retried ones after the abort */
    pt_run_end(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_direct),
        cmocka_unit_test(test_direct_running),
        cmocka_unit_test(test_direct_cohorts),
        cmocka_unit_test(test_direct_spans),
        cmocka_unit_test(test_direct_columns),
        cmocka_unit_test(test_direct_binary),
        cmocka_unit_test(test_direct_binary_altered),
    };
    return PT_RUN_TESTS(tests);
}
