/* test_delivery_txn.c - the exactly-once side of the delivery bookkeeping: a transaction sends
 * the offsets of sealed inputs, and an abort rewinds to the last commit (or to where the
 * assignment started). Needs no broker (label unit). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "cg_delivery.h"

typedef struct seen {
    int n;
    int32_t partition[4];
    int64_t offset[4];
} seen_t;

static void collect(const char *topic, int32_t partition, int64_t offset, void *opaque)
{
    seen_t *s = opaque;
    assert_string_equal(topic, "raw");
    assert_true(s->n < 4);
    s->partition[s->n] = partition;
    s->offset[s->n++] = offset;
}

static seen_t sealed(cg_delivery_t *d)
{
    seen_t s;
    memset(&s, 0, sizeof(s));
    cg_delivery_foreach_sealed(d, collect, &s);
    return s;
}

static void test_sealed_offsets_before_delivery(void **state)
{
    (void)state;
    cg_delivery_t *d = cg_delivery_new();
    cg_delivery_msg_t *m[3];
    for (int i = 0; i < 3; i++) {
        m[i] = cg_delivery_begin(d, "raw", 0, 40 + i);
        cg_delivery_add(m[i]);
    }
    assert_int_equal(sealed(d).n, 0);
    cg_delivery_seal(d, m[0]);
    cg_delivery_seal(d, m[1]);
    /* sealed, not yet delivered: a transaction commit delivers them, so they may go with it */
    seen_t s = sealed(d);
    assert_int_equal(s.n, 1);
    assert_int_equal(s.offset[0], 42);
    cg_delivery_committed(d, "raw", 0, 42);
    assert_int_equal(sealed(d).n, 0);
    cg_delivery_seal(d, m[2]);
    assert_int_equal(sealed(d).offset[0], 43);
    cg_delivery_destroy(d);
}

static void test_rewind_to_commit_or_start(void **state)
{
    (void)state;
    cg_delivery_t *d = cg_delivery_new();
    /* partition 0: 10..14 begun, 10..11 committed; partition 1: 7..8 begun, nothing committed;
     * partition 2: 3 begun and committed */
    for (int64_t o = 10; o < 15; o++)
        cg_delivery_seal(d, cg_delivery_begin(d, "raw", 0, o));
    cg_delivery_committed(d, "raw", 0, 12);
    cg_delivery_msg_t *a = cg_delivery_begin(d, "raw", 1, 7);
    cg_delivery_add(a);
    cg_delivery_seal(d, a);
    cg_delivery_begin(d, "raw", 1, 8); /* not even sealed */
    cg_delivery_seal(d, cg_delivery_begin(d, "raw", 2, 3));
    cg_delivery_committed(d, "raw", 2, 4);
    assert_int_equal(cg_delivery_in_flight(d), 2);

    seen_t s;
    memset(&s, 0, sizeof(s));
    assert_int_equal(cg_delivery_rewind(d, collect, &s), 3 + 2);
    assert_int_equal(s.n, 2);
    for (int i = 0; i < s.n; i++)
        assert_int_equal(s.offset[i], s.partition[i] == 0 ? 12 : 7);
    assert_int_equal(cg_delivery_in_flight(d), 0);
    assert_int_equal(sealed(d).n, 0);

    /* consumed again from there: the next transaction sends the new prefix */
    cg_delivery_seal(d, cg_delivery_begin(d, "raw", 1, 7));
    s = sealed(d);
    assert_int_equal(s.n, 1);
    assert_int_equal(s.partition[0], 1);
    assert_int_equal(s.offset[0], 8);
    /* a second abort before any commit still goes back to where the assignment started */
    memset(&s, 0, sizeof(s));
    assert_int_equal(cg_delivery_rewind(d, collect, &s), 1);
    assert_int_equal(s.n, 1);
    assert_int_equal(s.offset[0], 7);
    memset(&s, 0, sizeof(s));
    assert_int_equal(cg_delivery_rewind(d, collect, &s), 0); /* nothing new: nothing to do */
    assert_int_equal(s.n, 0);
    cg_delivery_destroy(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sealed_offsets_before_delivery),
        cmocka_unit_test(test_rewind_to_commit_or_start),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
