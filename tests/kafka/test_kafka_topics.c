/* test_kafka_topics.c - the gateway makes its destination topics ready (topics.*), against the
 * real broker.
 *
 * The record topic does not exist and the gateway's clients may not have the broker auto-create
 * it (allow.auto.create.topics false, as on a cluster with auto.create.topics.enable off): with
 * topics.create the gateway creates it, with topics.partitions partitions, before its first
 * record, and every record reaches it. Without topics.create nothing creates it: the gateway says
 * so and the records wait (test_kafka_drain.c covers the bounded stop that then follows).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "feed_util.h"

static void test_missing_topic_is_created(void **state)
{
    (void)state;
    if (!tk_bootstrap())
        skip();
    feed_t f;
    feed_new(&f, "topics");
    snprintf(f.out + strlen(f.out), sizeof(f.out) - strlen(f.out), ".created");
    assert_int_equal(tk_partitions(f.out), 0);
    const int n = 40;
    feed_produce(&f, 0, n);
    cg_config_t *cfg =
        feed_config_top(&f, "\"semantics\":\"at-least-once\"", 1,
                        "\"allow.auto.create.topics\":false,", "\"topics\":{\"partitions\":5},");
    cg_gateway_stats_t st = feed_run_until_idle(cfg, 0);
    assert_int_equal(st.consumed, n);
    /* created by the gateway, as asked, and every input is there once (the junk as a dead
     * letter) */
    assert_int_equal(tk_partitions(f.out), 5);
    feed_assert_exactly_once(&f, n);
    cg_config_destroy(cfg);
}

int main(void)
{
    if (!tk_bootstrap())
        printf("SKIPPED: COHORTGATE_TEST_BOOTSTRAP is not set; tests/scripts/test.sh starts a "
               "broker\n");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_missing_topic_is_created),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
