/* test_kafka_backpressure.c - the output side holding the gateway back, against the real broker:
 * nothing is dropped, consumption really waits, and long waits pause the partitions.
 *
 * - A producer queue of 5 records (kafka.queue.buffering.max.messages), two workers: records
 *   keep meeting a full queue, each wait outlasts delivery.pause_after_ms (50), so the gateway
 *   pauses its partitions until the producer drains.
 * - Exactly-once with delivery.max_in_flight 3: consumption waits whenever 3 inputs wait for
 *   their delivery reports (briefly: no pause needed).
 * Either way every input comes out exactly once and its offset is committed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>

#include "feed_util.h"

#define N_INPUTS 1500

static void test_full_producer_queue_pauses(void **state)
{
    (void)state;
    if (!tk_bootstrap())
        skip();
    feed_t f;
    feed_new(&f, "bp-queue");
    feed_produce(&f, 0, N_INPUTS);
    cg_config_t *cfg = feed_config(&f, "\"commit_interval_ms\":100,\"pause_after_ms\":50", 2,
                                   "\"queue.buffering.max.messages\":5,");
    cg_gateway_stats_t st = feed_run_until_idle(cfg, 0);
    fprintf(stderr, "queue full %llu time(s), waited %llu and paused %llu time(s)\n",
            (unsigned long long)st.queue_full, (unsigned long long)st.stalls,
            (unsigned long long)st.pauses);
    assert_true(st.queue_full > 0);
    assert_true(st.stalls > 0);
    assert_true(st.pauses > 0 && st.pauses <= st.stalls);
    assert_int_equal(st.consumed, N_INPUTS);
    assert_int_equal(st.records_out + st.dead_lettered, N_INPUTS);
    feed_assert_exactly_once(&f, N_INPUTS);
    assert_int_equal(feed_committed(&f), N_INPUTS);
    cg_config_destroy(cfg);
}

static void test_max_in_flight_waits_exactly_once(void **state)
{
    (void)state;
    if (!tk_bootstrap())
        skip();
    feed_t f;
    feed_new(&f, "bp-inflight");
    feed_produce(&f, 0, N_INPUTS);
    cg_config_t *cfg = feed_config(&f, "\"semantics\":\"exactly-once\",\"max_in_flight\":3", 1, "");
    cg_gateway_stats_t st = feed_run_until_idle(cfg, 0);
    fprintf(stderr, "waited %llu time(s)\n", (unsigned long long)st.stalls);
    assert_true(st.stalls > 0);
    assert_int_equal(st.consumed, N_INPUTS);
    assert_int_equal(st.transactions_aborted, 0);
    assert_int_equal(feed_assert_exactly_once(&f, N_INPUTS), N_INPUTS);
    assert_int_equal(feed_committed(&f), N_INPUTS);
    cg_config_destroy(cfg);
}

int main(void)
{
    if (!tk_bootstrap())
        printf("SKIPPED: COHORTGATE_TEST_BOOTSTRAP is not set; tests/scripts/test.sh starts a "
               "broker\n");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_producer_queue_pauses),
        cmocka_unit_test(test_max_in_flight_waits_exactly_once),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
