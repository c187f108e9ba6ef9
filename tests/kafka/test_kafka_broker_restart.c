/* test_kafka_broker_restart.c - the broker stopped and started again while the `cohortgate run`
 * process is mid-stream: the gateway rides through (it is still running afterwards), finishes
 * the input, commits to its end, and no input is lost.
 *
 * Stopping the shared test broker would disturb the other tests, so this test starts a broker
 * of its own with tests/scripts/kafka-broker.sh (start, stop, then restart: same ports, same
 * state) and stops it at the end, passed or failed. It needs the broker jars that
 * `kafka-broker.sh fetch` caches (tests/scripts/test.sh fetches them), and is skipped like the
 * other Kafka tests when COHORTGATE_TEST_BOOTSTRAP is unset.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gw_harness.h"

static gw_run_t run;
static char home[256], broker[300]; /* home holds the script's output and the broker's DIR */
static int broker_up;

/* Runs tests/scripts/kafka-broker.sh CMD DIR; returns its exit status. */
static int broker_script(const char *cmd)
{
    char out[300];
    snprintf(out, sizeof(out), "%s/kafka-broker.out", home);
    char *argv[] = {"/bin/bash", CG_SOURCE_DIR "/tests/scripts/kafka-broker.sh", (char *)cmd,
                    broker, NULL};
    pid_t pid = tk_spawn(argv, out, NULL);
    assert_true(pid > 0);
    int st;
    assert_int_equal(tk_wait_pid(pid, GW_HANG_MS, &st), 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static int teardown(void **state)
{
    (void)state;
    gw_run_end(&run);
    if (broker_up)
        broker_script("stop");
    broker_up = 0;
    if (run.passed && !getenv("CG_TEST_KEEP")) {
        char cmd[400];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", home);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", home);
    } else if (home[0]) {
        fprintf(stderr, "the broker's logs are kept in %s\n", broker);
    }
    return 0;
}

static void test_broker_restart_mid_stream(void **state)
{
    (void)state;
    if (!tk_bootstrap())
        skip();
    const int n = 3000;
    snprintf(home, sizeof(home), "/tmp/cg-it-broker-XXXXXX");
    assert_non_null(mkdtemp(home));
    snprintf(broker, sizeof(broker), "%s/broker", home);
    broker_up = 1;
    int64_t t0 = tk_now_ms();
    assert_int_equal(broker_script("start"), 0);
    char path[400], bootstrap[128] = "";
    snprintf(path, sizeof(path), "%s/bootstrap", broker);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    assert_non_null(fgets(bootstrap, sizeof(bootstrap), f));
    fclose(f);
    bootstrap[strcspn(bootstrap, "\n")] = '\0';
    printf("own broker on %s, up in %lld ms\n", bootstrap, (long long)(tk_now_ms() - t0));
    /* from here on, every helper talks to this broker */
    setenv("COHORTGATE_TEST_BOOTSTRAP", bootstrap, 1);

    gw_run_init(&run, "broker-restart", 3, n);
    gw_write_config(&run, "at-least-once", NULL, NULL);
    char log[300];
    gw_log_path(&run, "gw.log", log, sizeof(log));
    pid_t a = gw_start(&run, "gw.log", NULL);
    gw_wait_log(&run, a, "gw.log", "partition.assigned", 1);
    /* the feed streams on while the broker is away (its producer holds on to the inputs) */
    gw_feed_start(&run, 0, n, n / 6);
    gw_wait_outputs(&run, n / 10);

    int errors_before = tk_file_count(log, "\"event\":\"kafka.error\"");
    t0 = tk_now_ms();
    assert_int_equal(broker_script("stop"), 0);
    /* the gateway notices the broker is gone before it comes back */
    gw_wait_log(&run, a, "gw.log", "\"event\":\"kafka.error\"", errors_before + 1);
    assert_int_equal(broker_script("restart"), 0);
    printf("broker away for %lld ms; the gateway logged %d Kafka error(s) meanwhile\n",
           (long long)(tk_now_ms() - t0),
           tk_file_count(log, "\"event\":\"kafka.error\"") - errors_before);

    gw_feed_join();
    gw_wait_committed_end(&run, n);
    gw_signal(a, SIGTERM); /* fails if the gateway gave up and is gone */
    assert_int_equal(gw_wait_exit(a, GW_DRAIN_BOUND_MS), 0);
    gw_recon_t rc;
    gw_reconcile(&run, "broker restart", NULL, &rc);
    assert_int_equal(rc.lost, 0);
    run.passed = 1;
}

int main(void)
{
    if (!tk_bootstrap())
        printf("SKIPPED: COHORTGATE_TEST_BOOTSTRAP is not set; tests/scripts/test.sh starts a "
               "broker\n");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_broker_restart_mid_stream, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
