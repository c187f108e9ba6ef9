/* test_pg_sink_admin.c - the `cohortgate sink` commands that set a database up, against the
 * real PostgreSQL server (labels kafka and pg; skipped, exit 77, unless COHORTGATE_TEST_BOOTSTRAP
 * and COHORTGATE_TEST_PG are both set):
 *
 *   init:       --init twice is idempotent (cdm_source too); a config of the other id type is
 *               refused.
 *   load vocab: --load-vocab DIR loads Athena's files: quotes in names are data, the version
 *               reaches cdm_source, a second load replaces the rows; a file the database refuses
 *               is named with its line and leaves the tables as they were.
 *   reload:     a schema of an earlier --init gains the sink's newer tables and columns at
 *               start; SIGHUP reads the config again: live settings taken, others refused, a
 *               broken file named, the sink loading throughout.
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
#include <signal.h>
#include <unistd.h>

static void run_new(pt_run_t *r, const char *prefix, int partitions, int txn_max)
{
    pt_run_new(r, prefix, "records", partitions);
    pt_write_config(r, r->config, txn_max, 200, ", \"batch_rows\": 300", "");
}

/* Runs `cohortgate sink` with args, its log in sink.log; returns its exit status. */
static int sink(const pt_run_t *r, const char *extra, int idle_exit)
{
    char log[400];
    snprintf(log, sizeof(log), "%s/sink.log", r->dir);
    return pt_sink(r->config, extra, idle_exit, log);
}

static void test_init(void **state)
{
    (void)state;
    pt_run_t r;
    run_new(&r, "cg-it-sink-init", 1, 100);
    assert_int_equal(sink(&r, "--init", 0), 0);
    /* cdm_source: one row, which a second --init leaves as it is (not even rewritten) */
    char cdm_sql[256];
    snprintf(cdm_sql, sizeof(cdm_sql),
             "SELECT count(*)::text || ' ' || string_agg(ctid::text || xmin::text, ',') FROM "
             "%s.cdm_source",
             r.schema);
    char *cdm0 = pt_q_text(cdm_sql);
    assert_int_equal(strncmp(cdm0, "1 ", 2), 0);
    assert_int_equal(sink(&r, "--init", 0), 0);
    char *cdm1 = pt_q_text(cdm_sql);
    assert_string_equal(cdm0, cdm1);
    free(cdm0);
    free(cdm1);
    assert_int_equal(pt_q_int("SELECT count(*) FROM information_schema.tables WHERE table_schema = "
                              "'%s' AND table_name IN ('person', 'measurement', 'cg_offsets', "
                              "'cg_id_map', 'cg_rejects')",
                              r.schema),
                     5);
    /* the other id type is refused with a reason */
    char cmd[1024];
    snprintf(cmd, sizeof(cmd),
             "sed -i 's/\"batch_rows\"/\"id_type\": \"bigint\", \"batch_rows\"/' '%s'", r.config);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(sink(&r, "--init", 0), 1);
    char log[400];
    snprintf(log, sizeof(log), "%s/sink.log", r.dir);
    assert_true(tk_file_count(log, "pg.id_type is bigint") > 0);
    pt_run_end(&r);
}

/* sink --load-vocab DIR; its output in r->dir/vocab.log. */
static int load_vocab(const pt_run_t *r, const char *dir)
{
    char log[400];
    snprintf(log, sizeof(log), "%s/vocab.log", r->dir);
    char *argv[] = {(char *)CG_GATEWAY_BIN, (char *)"sink", (char *)"-c", (char *)r->config,
                    (char *)"--load-vocab", (char *)dir,    NULL};
    pid_t pid = tk_spawn(argv, log, NULL);
    assert_true(pid > 0);
    return pt_wait_status(pid, log);
}

/* Athena's files into the vocabulary tables: quotes in names are data, the version reaches
 * cdm_source, a second load replaces the rows; a file the database refuses is named with its
 * line and leaves the tables as they were. */
static void test_load_vocab(void **state)
{
    (void)state;
    pt_run_t r;
    run_new(&r, "cg-it-sink-vocab", 1, 100);
    assert_int_equal(sink(&r, "--init", 0), 0);
    char dir[400];
    snprintf(dir, sizeof(dir), "%s/athena", r.dir);
    pt_sh("mkdir -p '%s' && cp %s/tests/fixtures/vocab/athena/*.csv '%s'/ && printf "
          "'vocabulary_id\\tvocabulary_name\\tvocabulary_reference\\tvocabulary_version\\t"
          "vocabulary_concept_id\\nNone\\tOMOP Standardized Vocabularies\\tOMOP generated\\t"
          "v5.0 20-NOV-26\\t44819096\\n' > '%s/VOCABULARY.csv' && printf "
          "'1\\tA \"quoted\" name\\tCondition\\tSNOMED\\tClinical Finding\\tS\\t1\\t"
          "19700101\\t20991231\\t\\n' >> '%s/CONCEPT.csv'",
          dir, CG_SOURCE_DIR, dir, dir, dir);
    for (int round = 0; round < 2; round++) { /* the second replaces, it does not add */
        assert_int_equal(load_vocab(&r, dir), 0);
        assert_int_equal(pt_q_int("SELECT count(*) FROM %s.concept", r.schema), 14);
        assert_int_equal(pt_q_int("SELECT count(*) FROM %s.concept_relationship", r.schema), 12);
        assert_int_equal(pt_q_int("SELECT count(*) FROM %s.concept WHERE concept_id = 1 AND "
                                  "concept_name = 'A \"quoted\" name' AND valid_start_date = "
                                  "DATE '1970-01-01' AND invalid_reason IS NULL",
                                  r.schema),
                         1);
    }
    char sql[400];
    snprintf(sql, sizeof(sql), "SELECT vocabulary_version FROM %s.cdm_source", r.schema);
    char *v = pt_q_text(sql);
    assert_string_equal(v, "v5.0 20-NOV-26");
    free(v);
    /* the cohorts are evaluated anew at the next start: their state is gone */
    pt_q_exec("INSERT INTO %s.cg_cohort_state (cohort_definition_id, definition_version, sql_md5) "
              "VALUES (1, 1, 'x')",
              r.schema);
    assert_int_equal(load_vocab(&r, dir), 0);
    assert_int_equal(pt_q_int("SELECT count(*) FROM %s.cg_cohort_state", r.schema), 0);
    /* a refused line: FILE:LINE, and nothing changed */
    assert_int_equal(load_vocab(&r, CG_SOURCE_DIR "/tests/fixtures/vocab/athena_bad"), 1);
    char log[400];
    snprintf(log, sizeof(log), "%s/vocab.log", r.dir);
    assert_int_equal(tk_file_count(log, "athena_bad/CONCEPT.csv:3: invalid input syntax for type "
                                        "date"),
                     1);
    assert_int_equal(pt_q_int("SELECT count(*) FROM %s.concept", r.schema), 14);
    /* a folder without vocabulary files */
    assert_int_equal(load_vocab(&r, r.dir), 1);
    assert_true(tk_file_count(log, "no vocabulary file") > 0);
    pt_run_end(&r);
}

/* One person row for person id i to r's topic. */
static void person(const pt_run_t *r, int i)
{
    char v[400], key[32];
    snprintf(v, sizeof(v),
             "{\"standard\":\"omop-cdm-5.4\",\"table\":\"person\",\"op\":\"upsert\",\"row\":{"
             "\"person_id\":%d,\"gender_concept_id\":8532,\"year_of_birth\":1970,"
             "\"race_concept_id\":0,\"ethnicity_concept_id\":0}}",
             940000 + i);
    snprintf(key, sizeof(key), "%d", i);
    rd_kafka_t *p = tk_producer();
    pt_produce(p, r->topic, key, v);
    pt_producer_close(p);
}

/* Waits for needle in log (up to 10 s); how many times it is there. */
static int wait_log(const char *log, const char *needle)
{
    for (int i = 0; i < 100 && tk_file_count(log, needle) == 0; i++)
        usleep(100000);
    return tk_file_count(log, needle);
}

/* SIGHUP reads the config file again: live settings are taken (log.level, pg.batch_rows), a
 * setting that needs a restart or a broken file is refused and the sink goes on as it was. */
static void test_reload(void **state)
{
    (void)state;
    pt_run_t r;
    run_new(&r, "cg-it-sink-hup", 1, 1);
    assert_int_equal(sink(&r, "--init", 0), 0);
    /* a schema made by an --init of before cg_row_doc and cg_id_map.t: the start adds them */
    pt_q_exec("ALTER TABLE %s.cg_id_map DROP COLUMN t; DROP TABLE %s.cg_row_doc", r.schema,
              r.schema);
    pid_t pid = pt_sink_start(&r, "sink.log", 0);
    char log[400];
    snprintf(log, sizeof(log), "%s/sink.log", r.dir);
    person(&r, 1);
    pt_wait_committed(&r, 1);
    assert_int_equal(pt_q_int("SELECT count(*) FROM information_schema.columns WHERE "
                              "table_schema = '%s' AND ((table_name = 'cg_id_map' AND "
                              "column_name = 't') OR (table_name = 'cg_row_doc' AND column_name = "
                              "'doc'))",
                              r.schema),
                     2);
    assert_int_equal(tk_file_count(log, "\"level\":\"debug\""), 0);
    /* live: the log level and the batch size */
    pt_sh("sed -i 's/\"batch_rows\": 300/\"batch_rows\": 40/; s/\"level\": \"info\"/\"level\": "
          "\"debug\"/' '%s'",
          r.config);
    kill(pid, SIGHUP);
    assert_int_equal(wait_log(log, "settings taken: pg.batch_rows"), 1);
    person(&r, 2);
    pt_wait_committed(&r, 2);
    assert_true(wait_log(log, "\"level\":\"debug\"") > 0);
    /* a setting the sink made its connection of: refused, the sink goes on */
    pt_sh("sed -i 's/\"schema\": \"%s\"/\"schema\": \"elsewhere\"/' '%s'", r.schema, r.config);
    kill(pid, SIGHUP);
    assert_int_equal(wait_log(log, "'pg.schema' changed: a restart takes it"), 1);
    person(&r, 3);
    pt_wait_committed(&r, 3);
    /* a broken file: its place, and the sink goes on */
    pt_sh("printf '{\n  \"pg\": \n' > '%s'", r.config);
    kill(pid, SIGHUP);
    char where[500];
    snprintf(where, sizeof(where), "%s:3:", r.config);
    assert_int_equal(wait_log(log, where), 1);
    person(&r, 4);
    pt_wait_committed(&r, 4);
    assert_int_equal(pt_q_int("SELECT count(*) FROM %s.person", r.schema), 4);
    pt_sink_stop(pid, log);
    pt_run_end(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init),
        cmocka_unit_test(test_load_vocab),
        cmocka_unit_test(test_reload),
    };
    return PT_RUN_TESTS(tests);
}
