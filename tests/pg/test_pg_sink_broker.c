/* test_pg_sink_broker.c - `cohortgate sink` while the Kafka broker is killed (SIGKILL: gone at
 * once, no clean shutdown) and started again mid-stream (labels kafka and pg; skipped, exit 77,
 * unless COHORTGATE_TEST_BOOTSTRAP and COHORTGATE_TEST_PG are both set). The sink rides through: it
 * is still running once the broker is back, loads the rest, and the database ends in the stream's
 * one end state (sink_stream.h): nothing lost, nothing applied twice.
 *
 * Stopping the shared test broker would disturb the other tests, so this test starts a broker
 * of its own (tests/scripts/kafka-broker.sh start, stop, restart: same ports, same state) before
 * any Kafka client is made, and stops it at the end.
 */
#include "sink_stream.h"

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

static tk_own_broker_t own;

/* The stream's first half is loaded, the broker killed, started again, and the second half
 * produced to it: the sink must reconnect to see any of it. */
static void test_broker_restart(void **state)
{
    (void)state;
    assert_int_equal(tk_own_broker_start(&own), 0);
    pt_run_t r;
    pt_stream_run_new(&r, "cg-it-sink-kafkarestart", 3, 200);
    const int half = PT_STREAM_INPUTS / 2;
    pt_stream_produce(&r, 0, half);
    assert_int_equal(pt_stream_sink(&r, "--init", 0), 0);
    char log[400];
    snprintf(log, sizeof(log), "%s/sink-1.log", r.dir);
    pid_t pid = pt_sink_start(&r, "sink-1.log", 0);
    pt_wait_committed(&r, half);
    int errors_before = tk_file_count(log, "\"event\":\"kafka.error\"");
    int64_t t0 = tk_now_ms();
    assert_int_equal(tk_own_broker_signal(&own, SIGKILL), 0);
    /* the sink notices the broker is gone before it comes back */
    for (int i = 0; i < 600 && tk_file_count(log, "\"event\":\"kafka.error\"") == errors_before;
         i++)
        usleep(100000);
    int errors = tk_file_count(log, "\"event\":\"kafka.error\"") - errors_before;
    assert_int_equal(tk_own_broker_script(&own, "restart"), 0);
    fprintf(stderr,
            "broker killed and away for %lld ms; the sink logged %d Kafka error(s) meanwhile\n",
            (long long)(tk_now_ms() - t0), errors);
    assert_true(errors > 0);
    assert_int_equal(pt_committed(&r), half);
    pt_stream_produce(&r, half, PT_STREAM_INPUTS);
    pt_wait_committed(&r, PT_STREAM_INPUTS);
    assert_int_equal(kill(pid, 0), 0); /* it rode through: still running */
    pt_sink_stop(pid, log);
    pt_stream_check(&r);
    pt_run_end(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_broker_restart)};
    int rc = PT_RUN_TESTS(tests);
    tk_own_broker_end(&own, rc == 0);
    return rc;
}
