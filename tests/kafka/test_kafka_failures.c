/* test_kafka_failures.c - the `cohortgate run` process against the real broker when things go
 * wrong: kill -9 and a restart, two gateways in one group with one of them stopped (SIGTERM)
 * or killed (SIGKILL), SIGTERM's drain and commit, SIGHUP with a broken spec and then a good one.
 *
 * Each case has fresh topics, a group and a config in a temporary folder (see gw_harness.h); the
 * gateway is the built binary, started as a separate process. Inputs are a mixed feed of ORU and
 * ADT messages, junk and unmappable HL7; every case reconciles each input against the records
 * and dead letters it must have caused. The exactly-once kill -9 case is test_kafka_failures_eos
 * and the broker restart is test_kafka_broker_restart (it runs its own broker).
 * CG_TEST_FILTER='*group*' runs only the cases whose names match.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gw_harness.h"

static gw_run_t run;

static int teardown(void **state)
{
    (void)state;
    gw_run_end(&run);
    return 0;
}

/* 1. kill -9 mid-stream, then a restart: at-least-once loses nothing (duplicates are counted). */
static void test_kill9_restart_at_least_once(void **state)
{
    (void)state;
    if (!tk_bootstrap())
        skip();
    gw_run_init(&run, "kill9", 3, GW_KILL_INPUTS);
    gw_write_config(&run, "at-least-once", NULL, NULL);
    gw_case_kill_restart(&run, "kill -9, at-least-once", 0);
    run.passed = 1;
}

/* 4. Two gateways in one group; one is stopped (SIGTERM) or killed (SIGKILL) mid-stream and the
 * other takes its partitions over. No input is lost; after a clean SIGTERM none is repeated. */
static void two_in_a_group(const char *what, int sig)
{
    const int n = 3000;
    gw_run_init(&run, sig == SIGKILL ? "pair-kill" : "pair-term", 4, n);
    gw_write_config(&run, "at-least-once", NULL, NULL);
    pid_t a = gw_start(&run, "a.log", NULL);
    gw_wait_log(&run, a, "a.log", "partition.assigned", 1);
    pid_t b = gw_start(&run, "b.log", NULL);
    /* b is in the group once it holds partitions; a then holds the others */
    gw_wait_log(&run, b, "b.log", "partition.assigned", 1);
    char blog[300];
    int b_before =
        tk_file_count(gw_log_path(&run, "b.log", blog, sizeof(blog)), "partition.assigned");

    gw_feed_start(&run, 0, n / 2, GW_FEED_RATE);
    gw_wait_outputs(&run, n / 10);
    gw_signal(a, sig);
    if (sig == SIGTERM)
        assert_int_equal(gw_wait_exit(a, GW_DRAIN_BOUND_MS), 0);
    gw_feed_join();
    gw_feed(&run, n / 2, n);
    gw_wait_committed_end(&run, n);
    /* the survivor took a's partitions over */
    assert_true(tk_file_count(blog, "partition.assigned") > b_before);
    gw_signal(b, SIGTERM);
    assert_int_equal(gw_wait_exit(b, GW_DRAIN_BOUND_MS), 0);

    gw_recon_t rc;
    gw_reconcile(&run, what, NULL, &rc);
    assert_int_equal(rc.lost, 0);
    if (sig == SIGTERM)
        assert_int_equal(rc.duplicates, 0);
    run.passed = 1;
}

static void test_two_in_a_group_one_stopped(void **state)
{
    (void)state;
    if (!tk_bootstrap())
        skip();
    two_in_a_group("two in a group, one SIGTERMed", SIGTERM);
}

static void test_two_in_a_group_one_killed(void **state)
{
    (void)state;
    if (!tk_bootstrap())
        skip();
    two_in_a_group("two in a group, one SIGKILLed", SIGKILL);
}

/* 5. SIGTERM mid-stream: exit 0 within the bound, with the committed offsets exactly at what was
 * delivered; a second run consumes exactly the rest, and nothing is repeated. */
static void test_sigterm_drains_and_commits(void **state)
{
    (void)state;
    if (!tk_bootstrap())
        skip();
    const int n = 3000;
    const char *idle[] = {"--idle-exit", "2000", NULL};
    gw_run_init(&run, "drain", 3, n);
    gw_write_config(&run, "at-least-once", NULL, NULL);
    pid_t a = gw_start(&run, "gw1.log", NULL);
    gw_wait_log(&run, a, "gw1.log", "partition.assigned", 1);
    gw_feed_start(&run, 0, n / 2, GW_FEED_RATE);
    gw_wait_outputs(&run, n / 10);
    int64_t t0 = tk_now_ms();
    gw_signal(a, SIGTERM);
    assert_int_equal(gw_wait_exit(a, GW_DRAIN_BOUND_MS), 0);
    printf("SIGTERM: exit 0 after %lld ms\n", (long long)(tk_now_ms() - t0));
    gw_feed_join();

    /* what is committed is exactly what has output: all below, nothing at or above */
    int64_t c[3], committed = 0;
    gw_committed(&run, c);
    for (int p = 0; p < 3; p++)
        committed += c[p] > 0 ? c[p] : 0;
    run.n_inputs = n / 2;
    gw_recon_t rc;
    gw_reconcile(&run, "after SIGTERM", c, &rc);
    assert_int_equal(rc.lost, 0);
    assert_int_equal(rc.duplicates, 0);
    assert_true(rc.committed_inputs > 0);
    assert_int_equal(rc.delivered_inputs, rc.committed_inputs);
    assert_int_equal(rc.committed_inputs, committed);

    /* the rest: a second run consumes exactly what was not committed */
    gw_feed(&run, n / 2, n);
    run.n_inputs = n;
    pid_t b = gw_start(&run, "gw2.log", idle);
    assert_int_equal(gw_wait_exit(b, GW_HANG_MS), 0);
    long consumed = gw_log_last_int(&run, "gw2.log", "\"msg\":\"consumed ");
    printf("second run consumed %ld, %d inputs in all, %lld committed by the first\n", consumed, n,
           (long long)committed);
    assert_int_equal(consumed, n - committed);
    gw_wait_committed_end(&run, n);
    gw_reconcile(&run, "SIGTERM, then the rest", NULL, &rc);
    assert_int_equal(rc.lost, 0);
    assert_int_equal(rc.duplicates, 0);
    run.passed = 1;
}

/* 6. SIGHUP with a broken spec keeps the old specs mapping; a fixed one is then taken. */
static void copy_file(const char *from, const char *to, int version, int broken)
{
    FILE *in = fopen(from, "rb");
    assert_non_null(in);
    static char text[1 << 20];
    size_t n = fread(text, 1, sizeof(text) - 1, in);
    fclose(in);
    text[n] = '\0';
    if (version) {
        char *v = strstr(text, "\"version\": 1");
        assert_non_null(v);
        v[11] = (char)('0' + version);
    }
    char tmp[600];
    snprintf(tmp, sizeof(tmp), "%s.tmp", to);
    FILE *out = fopen(tmp, "wb");
    assert_non_null(out);
    /* broken: the file cut short in the middle of its JSON */
    fwrite(text, 1, broken ? n / 3 : n, out);
    fclose(out);
    assert_int_equal(rename(tmp, to), 0); /* the gateway never sees a half-written file */
}

/* The spec_version of every ORU record of inputs [from, to): all must be want. */
static void check_oru_versions(int from, int to, int want)
{
    rd_kafka_t *q = tk_query_handle();
    char prefix[128], hb[64];
    snprintf(prefix, sizeof(prefix), "%s.", run.name);
    char **topics;
    size_t nt = tk_list_topics(q, prefix, &topics), seen = 0;
    tk_msg_t *msgs[64];
    size_t counts[64];
    assert_true(nt <= 64);
    assert_int_equal(tk_read_many((const char *const *)topics, nt, msgs, counts), 0);
    for (size_t t = 0; t < nt; t++) {
        tk_msg_t *m = msgs[t];
        size_t n = counts[t];
        if (strcmp(topics[t], run.in) && strcmp(topics[t], run.dlq))
            for (size_t j = 0; j < n; j++) {
                int i = atoi(strstr(m[j].value, "\"message_id\":\"G") + 15);
                if (i < from || i >= to ||
                    strcmp(tk_header(&m[j], "cg.spec", hb, sizeof(hb)), "hl7v2-oru-omop"))
                    continue;
                char v[64];
                snprintf(v, sizeof(v), "\"spec\":\"hl7v2-oru-omop\",\"spec_version\":%d", want);
                if (!strstr(m[j].value, v))
                    fail_msg("input %d: want ORU spec version %d: %s", i, want, m[j].value);
                seen++;
            }
        tk_msgs_free(m, n);
    }
    tk_strv_free(topics, nt);
    rd_kafka_destroy(q);
    printf("inputs %d to %d: %zu ORU record(s), all of spec version %d\n", from, to - 1, seen,
           want);
    assert_true(seen > 0);
}

static void test_sighup_broken_spec_keeps_old(void **state)
{
    (void)state;
    if (!tk_bootstrap())
        skip();
    const int n = 600;
    gw_run_init(&run, "sighup", 3, n);
    char specs[300], oru[400], src[400];
    snprintf(specs, sizeof(specs), "%s/specs", run.dir);
    assert_int_equal(mkdir(specs, 0755), 0);
    const char *names[] = {"hl7v2-adt-omop.json", "hl7v2-oru-omop.json",
                           "hl7v2-pharmacy-omop.json"};
    for (size_t k = 0; k < 3; k++) {
        snprintf(src, sizeof(src), "%s/specs/%s", CG_SOURCE_DIR, names[k]);
        snprintf(oru, sizeof(oru), "%s/%s", specs, names[k]);
        copy_file(src, oru, 0, 0);
    }
    snprintf(src, sizeof(src), "%s/specs/hl7v2-oru-omop.json", CG_SOURCE_DIR);
    snprintf(oru, sizeof(oru), "%s/hl7v2-oru-omop.json", specs);
    gw_write_config(&run, "at-least-once", specs, NULL);
    char log[300];
    gw_log_path(&run, "gw.log", log, sizeof(log));

    pid_t a = gw_start(&run, "gw.log", NULL);
    gw_wait_log(&run, a, "gw.log", "partition.assigned", 1);
    gw_feed(&run, 0, n / 3);
    gw_wait_committed_end(&run, n / 3);

    /* broken: the reload fails, is logged, and the running specs keep mapping */
    copy_file(src, oru, 2, 1);
    gw_signal(a, SIGHUP);
    gw_wait_log(&run, a, "gw.log", "\"event\":\"reload.failed\"", 1);
    assert_int_equal(tk_file_count(log, "\"event\":\"reload.done\""), 0);
    assert_true(tk_file_count(log, "hl7v2-oru-omop.json") > 0); /* the error names the file */
    gw_feed(&run, n / 3, 2 * n / 3);
    gw_wait_committed_end(&run, 2 * n / 3);

    /* fixed, as version 2: the reload succeeds and the new version maps what comes next */
    copy_file(src, oru, 2, 0);
    gw_signal(a, SIGHUP);
    gw_wait_log(&run, a, "gw.log", "\"event\":\"reload.done\"", 1);
    gw_feed(&run, 2 * n / 3, n);
    gw_wait_committed_end(&run, n);
    gw_signal(a, SIGTERM);
    assert_int_equal(gw_wait_exit(a, GW_DRAIN_BOUND_MS), 0);
    assert_int_equal(tk_file_count(log, "\"event\":\"reload.failed\""), 1);

    gw_recon_t rc;
    gw_reconcile(&run, "SIGHUP", NULL, &rc);
    assert_int_equal(rc.lost, 0);
    assert_int_equal(rc.duplicates, 0);
    check_oru_versions(0, 2 * n / 3, 1);
    check_oru_versions(2 * n / 3, n, 2);
    run.passed = 1;
}

int main(void)
{
    if (!tk_bootstrap())
        printf("SKIPPED: COHORTGATE_TEST_BOOTSTRAP is not set; tests/scripts/test.sh starts a "
               "broker\n");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_kill9_restart_at_least_once, teardown),
        cmocka_unit_test_teardown(test_two_in_a_group_one_stopped, teardown),
        cmocka_unit_test_teardown(test_two_in_a_group_one_killed, teardown),
        cmocka_unit_test_teardown(test_sigterm_drains_and_commits, teardown),
        cmocka_unit_test_teardown(test_sighup_broken_spec_keeps_old, teardown),
    };
    if (getenv("CG_TEST_FILTER")) /* e.g. CG_TEST_FILTER='*group*' runs those cases only */
        cmocka_set_test_filter(getenv("CG_TEST_FILTER"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
