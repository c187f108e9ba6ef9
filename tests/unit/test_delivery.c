/* test_delivery.c - commit offsets follow the fully-delivered prefix of each partition. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "cg_delivery.h"

typedef struct seen {
    int n;
    char topic[64];
    int32_t partition;
    int64_t next;
} seen_t;

static void collect(const char *topic, int32_t partition, int64_t next, void *opaque)
{
    seen_t *s = opaque;
    s->n++;
    snprintf(s->topic, sizeof(s->topic), "%s", topic);
    s->partition = partition;
    s->next = next;
}

static seen_t committable(cg_delivery_t *d)
{
    seen_t s;
    memset(&s, 0, sizeof(s));
    cg_delivery_foreach_committable(d, collect, &s);
    return s;
}

static void test_out_of_order_reports_hold_the_commit(void **state)
{
    (void)state;
    cg_delivery_t *d = cg_delivery_new();
    cg_delivery_msg_t *m[3];
    for (int i = 0; i < 3; i++) {
        m[i] = cg_delivery_begin(d, "raw", 0, 10 + i);
        cg_delivery_add(m[i]);
        cg_delivery_add(m[i]); /* two records each */
        cg_delivery_seal(d, m[i]);
    }
    assert_int_equal(cg_delivery_in_flight(d), 3);
    assert_int_equal(committable(d).n, 0);

    /* later messages complete first: nothing may be committed past offset 10 */
    cg_delivery_done(d, m[2]);
    cg_delivery_done(d, m[2]);
    cg_delivery_done(d, m[1]);
    cg_delivery_done(d, m[1]);
    assert_int_equal(committable(d).n, 0);
    cg_delivery_done(d, m[0]);
    assert_int_equal(committable(d).n, 0); /* one record of 10 still out */
    cg_delivery_done(d, m[0]);
    seen_t s = committable(d);
    assert_int_equal(s.n, 1);
    assert_string_equal(s.topic, "raw");
    assert_int_equal(s.next, 13);
    assert_int_equal(cg_delivery_in_flight(d), 0);

    cg_delivery_committed(d, "raw", 0, 13);
    assert_int_equal(committable(d).n, 0);
    cg_delivery_destroy(d);
}

static void test_unsealed_message_holds_commit(void **state)
{
    (void)state;
    cg_delivery_t *d = cg_delivery_new();
    cg_delivery_msg_t *a = cg_delivery_begin(d, "raw", 1, 0);
    cg_delivery_add(a);
    cg_delivery_done(d, a); /* delivered before the mapper finished emitting */
    assert_int_equal(committable(d).n, 0);
    cg_delivery_seal(d, a);
    assert_int_equal(committable(d).next, 1);

    /* a message with no records completes when sealed */
    cg_delivery_msg_t *b = cg_delivery_begin(d, "raw", 1, 1);
    cg_delivery_seal(d, b);
    assert_int_equal(committable(d).next, 2);

    /* a produce that failed synchronously is taken back */
    cg_delivery_msg_t *c = cg_delivery_begin(d, "raw", 1, 2);
    cg_delivery_add(c);
    cg_delivery_unadd(d, c);
    cg_delivery_seal(d, c);
    assert_int_equal(committable(d).next, 3);
    cg_delivery_destroy(d);
}

static void test_partitions_are_independent_and_droppable(void **state)
{
    (void)state;
    cg_delivery_t *d = cg_delivery_new();
    cg_delivery_msg_t *a = cg_delivery_begin(d, "raw", 0, 5);
    cg_delivery_msg_t *b = cg_delivery_begin(d, "raw", 1, 7);
    cg_delivery_add(a);
    cg_delivery_seal(d, a);
    cg_delivery_add(b);
    cg_delivery_seal(d, b);
    cg_delivery_done(d, b);
    seen_t s = committable(d);
    assert_int_equal(s.n, 1);
    assert_int_equal(s.partition, 1);
    assert_int_equal(s.next, 8);
    assert_int_equal(cg_delivery_drop_partition(d, "raw", 0), 1);
    assert_int_equal(cg_delivery_in_flight(d), 0);
    assert_int_equal(cg_delivery_drop_partition(d, "raw", 9), 0);
    cg_delivery_destroy(d);
    cg_delivery_destroy(NULL);
}

static void test_many_messages_reuse_the_pool(void **state)
{
    (void)state;
    cg_delivery_t *d = cg_delivery_new();
    for (int64_t off = 0; off < 100000; off++) {
        cg_delivery_msg_t *m = cg_delivery_begin(d, "raw", 2, off);
        assert_non_null(m);
        cg_delivery_add(m);
        cg_delivery_seal(d, m);
        cg_delivery_done(d, m);
    }
    assert_int_equal(committable(d).next, 100000);
    cg_delivery_destroy(d);
}

/* A revoke whose flush ran out of time drops a partition with records still out: their late
 * reports must find their message (not freed memory, not a message reused for another input),
 * and a job still producing for it may add and seal after the drop. Under ASan, a report read
 * the freed partition before. */
static void test_reports_after_a_drop(void **state)
{
    (void)state;
    cg_delivery_t *d = cg_delivery_new();
    cg_delivery_msg_t *m = cg_delivery_begin(d, "t", 0, 10);
    cg_delivery_msg_t *job = cg_delivery_begin(d, "t", 0, 11);
    cg_delivery_add(m);
    cg_delivery_add(m);
    cg_delivery_seal(d, m);
    cg_delivery_add(job);
    assert_int_equal(cg_delivery_drop_partition(d, "t", 0), 2);
    assert_int_equal(cg_delivery_in_flight(d), 0);
    /* new inputs do not get the orphans' slots while their reports are out */
    cg_delivery_msg_t *other[4];
    for (int i = 0; i < 4; i++) {
        other[i] = cg_delivery_begin(d, "t", 1, i);
        assert_ptr_not_equal(other[i], m);
        assert_ptr_not_equal(other[i], job);
    }
    const char *topic;
    int32_t part;
    int64_t off;
    cg_delivery_msg_pos(m, &topic, &part, &off);
    assert_string_equal(topic, "");
    assert_int_equal(off, 10);
    cg_delivery_done(d, m); /* the late reports */
    cg_delivery_done(d, m);
    cg_delivery_add(job); /* the job goes on, then seals */
    cg_delivery_seal(d, job);
    cg_delivery_done(d, job);
    cg_delivery_done(d, job);
    /* partition 1 is untouched by all this */
    for (int i = 0; i < 4; i++)
        cg_delivery_seal(d, other[i]);
    seen_t c = committable(d);
    assert_int_equal(c.n, 1);
    assert_int_equal(c.partition, 1);
    assert_int_equal(c.next, 4);
    cg_delivery_destroy(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_out_of_order_reports_hold_the_commit),
        cmocka_unit_test(test_unsealed_message_holds_commit),
        cmocka_unit_test(test_partitions_are_independent_and_droppable),
        cmocka_unit_test(test_many_messages_reuse_the_pool),
        cmocka_unit_test(test_reports_after_a_drop),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
