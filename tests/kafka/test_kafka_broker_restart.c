/* test_kafka_broker_restart.c - the broker stopped and started again while the `cohortgate run`
 * process is mid-stream: the gateway rides through (it is still running afterwards), finishes
 * the input, commits to its end, and no input is lost. And SIGTERM with the broker gone (killed)
 * or unreachable (stopped with SIGSTOP: requests go unanswered): the gateway still ends within
 * delivery.drain_timeout_ms plus the close margin config/README.md documents, with the exit
 * status it documents, and nothing is lost once the broker is back.
 *
 * Stopping the shared test broker would disturb the other tests, so this test starts a broker
 * of its own with tests/scripts/kafka-broker.sh (start, stop, then restart: same ports, same
 * state), shared by its cases, and stops it at the end, passed or failed. It needs the broker jars
 * that `kafka-broker.sh fetch` caches (tests/scripts/test.sh fetches them), and is skipped like the
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
static tk_own_broker_t own; /* shared by the cases, stopped at the end */

static int all_passed = 1;

/* After each test: its gateways and folder; the broker stays for the next test. */
static int teardown(void **state)
{
    (void)state;
    if (!run.passed)
        all_passed = 0;
    gw_run_end(&run);
    return 0;
}

/* After the group: the broker is stopped, passed or failed, and its folder removed on a pass. */
static int group_teardown(void **state)
{
    (void)state;
    tk_own_broker_end(&own, all_passed);
    return 0;
}

/* Starts this test's own broker once for all the tests (the helpers keep clients of the first
 * bootstrap they see), and points every helper at it. */
static void own_broker_start(void)
{
    assert_int_equal(tk_own_broker_start(&own), 0);
}

static void own_broker_signal(int sig)
{
    assert_int_equal(tk_own_broker_signal(&own, sig), 0);
}

static int broker_script(const char *cmd)
{
    return tk_own_broker_script(&own, cmd);
}

static void test_broker_restart_mid_stream(void **state)
{
    (void)state;
    if (!tk_bootstrap())
        skip();
    const int n = 3000;
    own_broker_start();

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
    int64_t t0 = tk_now_ms();
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

/* The broker gone (killed) or unreachable (stopped), then SIGTERM: everything consumed was
 * delivered and committed before, so the gateway exits 0, and within delivery.drain_timeout_ms
 * plus the close margin config/README.md gives, not after the consumer's session timeout or
 * longer while it tries to leave its group. Nothing is lost once the broker is back. */
#define GONE_DRAIN_MS 2000
#define GONE_CLOSE_MS 5000 /* the margin config/README.md documents */
/* plus 1.5 s for the exit itself (the clients destroyed, memory freed) in slow (sanitized)
 * builds on a loaded machine */
#define GONE_BOUND_MS (GONE_DRAIN_MS + GONE_CLOSE_MS + 1500)

static void broker_away_sigterm(const char *what, int sig)
{
    if (!tk_bootstrap())
        skip();
    const int n = 600;
    own_broker_start();

    gw_run_init(&run, what, 3, n);
    run.drain_timeout_ms = GONE_DRAIN_MS;
    /* librdkafka's session timeout (45 s): a close that waited for it could not pass; no other
     * gateway has to take the partitions over here */
    run.session_timeout_ms = -1;
    gw_write_config(&run, "at-least-once", NULL, NULL);
    pid_t a = gw_start(&run, "gw.log", NULL);
    gw_wait_log(&run, a, "gw.log", "partition.assigned", 1);
    gw_feed(&run, 0, n);
    gw_wait_committed_end(&run, n);

    own_broker_signal(sig);
    usleep(500 * 1000); /* the gateway has its connections, to a broker that is away */
    int64_t t0 = tk_now_ms();
    gw_signal(a, SIGTERM);
    int code = gw_wait_exit(a, GW_HANG_MS);
    int64_t took = tk_now_ms() - t0;
    printf("%s, SIGTERM: exit %d after %lld ms (drain_timeout_ms %d, bound %d ms)\n", what, code,
           (long long)took, GONE_DRAIN_MS, GONE_BOUND_MS);
    if (sig == SIGKILL)
        assert_int_equal(broker_script("restart"), 0);
    else
        own_broker_signal(SIGCONT);
    assert_int_equal(code, 0);
    assert_true(took <= GONE_BOUND_MS);
    if (sig != SIGKILL) { /* the close waited for its LeaveGroup request, and says so */
        char log[300];
        gw_log_path(&run, "gw.log", log, sizeof(log));
        assert_int_equal(tk_file_count(log, "leaving the group took"), 1);
    }

    /* the commits made before the broker went away stand, at the input's end */
    gw_wait_committed_end(&run, n);
    gw_recon_t rc;
    gw_reconcile(&run, what, NULL, &rc);
    assert_int_equal(rc.lost, 0);
    run.passed = 1;
}

/* The broker unreachable mid-stream, with records undelivered and commits unanswered: SIGTERM
 * still ends the gateway within the bound; it exits 1 when the drain could not commit what it
 * consumed (0 if it happened to have committed everything), and a second gateway, once the broker
 * is back, consumes what was left uncommitted: nothing is lost (duplicates are allowed). */
static void test_broker_unreachable_mid_stream_sigterm(void **state)
{
    (void)state;
    if (!tk_bootstrap())
        skip();
    const int n = 3000;
    own_broker_start();

    gw_run_init(&run, "broker-unreachable-mid", 3, n);
    run.drain_timeout_ms = GONE_DRAIN_MS;
    gw_write_config(&run, "at-least-once", NULL, NULL);
    pid_t a = gw_start(&run, "gw.log", NULL);
    gw_wait_log(&run, a, "gw.log", "partition.assigned", 1);
    gw_feed_start(&run, 0, n, 1000); /* its producer holds on to the inputs while away */
    gw_wait_outputs(&run, n / 5);

    own_broker_signal(SIGSTOP);
    usleep(500 * 1000);
    int64_t t0 = tk_now_ms();
    gw_signal(a, SIGTERM);
    int code = gw_wait_exit(a, GW_HANG_MS);
    int64_t took = tk_now_ms() - t0;
    printf("broker unreachable mid-stream, SIGTERM: exit %d after %lld ms (drain_timeout_ms %d, "
           "bound %d ms)\n",
           code, (long long)took, GONE_DRAIN_MS, GONE_BOUND_MS);
    own_broker_signal(SIGCONT);
    assert_true(code == 0 || code == 1);
    assert_true(took <= GONE_BOUND_MS);

    gw_feed_join();
    pid_t b = gw_start(&run, "gw-b.log", NULL);
    gw_wait_committed_end(&run, n);
    gw_signal(b, SIGTERM);
    assert_int_equal(gw_wait_exit(b, GW_DRAIN_BOUND_MS), 0);
    gw_recon_t rc;
    gw_reconcile(&run, "broker unreachable mid-stream", NULL, &rc);
    assert_int_equal(rc.lost, 0);
    run.passed = 1;
}

static void test_broker_killed_sigterm(void **state)
{
    (void)state;
    broker_away_sigterm("broker-killed", SIGKILL);
}

static void test_broker_unreachable_sigterm(void **state)
{
    (void)state;
    broker_away_sigterm("broker-unreachable", SIGSTOP);
}

int main(void)
{
    if (!tk_bootstrap())
        printf("SKIPPED: COHORTGATE_TEST_BOOTSTRAP is not set; tests/scripts/test.sh starts a "
               "broker\n");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_broker_restart_mid_stream, teardown),
        cmocka_unit_test_teardown(test_broker_killed_sigterm, teardown),
        cmocka_unit_test_teardown(test_broker_unreachable_sigterm, teardown),
        cmocka_unit_test_teardown(test_broker_unreachable_mid_stream_sigterm, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, group_teardown);
}
