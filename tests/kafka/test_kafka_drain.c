/* test_kafka_drain.c - a stop drains within delivery.drain_timeout_ms even when the records
 * cannot be delivered, against the real broker.
 *
 * The record topic does not exist and may not be created (allow.auto.create.topics false,
 * topics.wait_ms 0: the gateway neither creates it nor waits for it), so every
 * record waits in the producer for topic.metadata.propagation.max.ms (30 s). A stop (what
 * SIGTERM does) must not wait for that: the gateway gives up after the 2 s drain timeout, says
 * so, returns CG_ERR_KAFKA_RETRY (the daemon exits 1) and commits nothing undelivered.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "feed_util.h"

typedef struct bg {
    cg_gateway_t *gw;
    cg_err_t rc;
    char err[512];
    int finished;
} bg_t;

static void *bg_main(void *arg)
{
    bg_t *b = arg;
    b->rc = cg_gateway_run(b->gw, b->err, sizeof(b->err));
    __atomic_store_n(&b->finished, 1, __ATOMIC_RELEASE);
    return NULL;
}

static void stop_with_undeliverable_records(const char *semantics)
{
    if (!tk_bootstrap())
        skip();
    feed_t f;
    feed_new(&f, "drain");
    snprintf(f.out + strlen(f.out), sizeof(f.out) - strlen(f.out), ".missing");
    feed_produce(&f, 0, 7); /* no junk: every input's record goes to the refusing topic */
    char delivery[256];
    snprintf(delivery, sizeof(delivery), "\"semantics\":\"%s\",\"drain_timeout_ms\":2000",
             semantics);
    /* nor does the gateway create it */
    cg_config_t *cfg = feed_config_top(&f, delivery, 1, "\"allow.auto.create.topics\":false,",
                                       "\"topics\":{\"wait_ms\":0},");
    bg_t b = {0};
    b.gw = cg_gateway_new(cfg, NULL, b.err, sizeof(b.err));
    assert_non_null(b.gw);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, bg_main, &b), 0);
    cg_gateway_stats_t st;
    for (int waited = 0;; waited += 10) { /* every input taken, its record stuck */
        cg_gateway_get_stats(b.gw, &st);
        if (st.consumed == 7)
            break;
        assert_true(waited < 120000 && !__atomic_load_n(&b.finished, __ATOMIC_ACQUIRE));
        usleep(10000);
    }
    cg_gateway_stop(b.gw); /* what SIGTERM does */
    /* a hang guard: an unbounded drain would wait 30 s, then fail the records */

    for (int waited = 0; !__atomic_load_n(&b.finished, __ATOMIC_ACQUIRE); waited += 10) {
        assert_true(waited < 25000);
        usleep(10000);
    }
    pthread_join(th, NULL);
    cg_gateway_get_stats(b.gw, &st);
    fprintf(stderr, "%s: %s (records %llu, errors %llu)\n", semantics, b.err,
            (unsigned long long)st.records_out, (unsigned long long)st.delivery_errors);
    assert_int_equal(b.rc, CG_ERR_KAFKA_RETRY);
    assert_non_null(strstr(b.err, "delivery.drain_timeout_ms"));
    cg_gateway_get_stats(b.gw, &st);
    assert_int_equal(st.records_out, 0);
    cg_gateway_destroy(b.gw);
    assert_int_equal(feed_committed(&f), 0); /* nothing undelivered is committed */
    cg_config_destroy(cfg);
}

static void test_drain_is_bounded_at_least_once(void **state)
{
    (void)state;
    stop_with_undeliverable_records("at-least-once");
}

static void test_drain_is_bounded_exactly_once(void **state)
{
    (void)state;
    stop_with_undeliverable_records("exactly-once");
}

int main(void)
{
    if (!tk_bootstrap())
        printf("SKIPPED: COHORTGATE_TEST_BOOTSTRAP is not set; tests/scripts/test.sh starts a "
               "broker\n");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_drain_is_bounded_at_least_once),
        cmocka_unit_test(test_drain_is_bounded_exactly_once),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
