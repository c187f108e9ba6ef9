/* test_buf.c - buffers, JSON strings and the arena. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cg_buf.h"

static void json_str(const char *in, size_t n, const char *want)
{
    cg_buf_t b;
    cg_buf_init(&b);
    assert_int_equal(cg_buf_put_json_str(&b, in, n), CG_OK);
    assert_string_equal(b.data, want);
    cg_buf_free(&b);
}

static void test_json_escapes(void **state)
{
    (void)state;
    json_str("plain", 5, "\"plain\"");
    json_str("a\"b\\c", 5, "\"a\\\"b\\\\c\"");
    json_str("\r\n\t\x01", 4, "\"\\r\\n\\t\\u0001\"");
    json_str("\xE5\xBC\xA0\xE4\xB8\x89", 6, "\"\xE5\xBC\xA0\xE4\xB8\x89\""); /* valid UTF-8 kept */
    json_str("a\xFF"
             "b",
             3,
             "\"a\xEF\xBF\xBD"
             "b\"");                                         /* invalid → U+FFFD */
    json_str("\xE5\xBC", 2, "\"\xEF\xBF\xBD\xEF\xBF\xBD\""); /* truncated sequence */
    json_str("\xED\xA0\x80", 3, "\"\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\""); /* surrogate */
    json_str("nul\0x", 5, "\"nul\\u0000x\"");
}

/* cg_buf_json_plain against a byte at a time: every length to 24 (the word, the two overlapping
 * halves, the three single bytes) with each kind of byte at each place; exact-size buffers, so
 * that a read past the end shows under the sanitizers. */
static void test_json_plain(void **state)
{
    (void)state;
    static const unsigned char kinds[] = {0x00, 0x1f, 0x20, '"', '\\', 'a', 0x7e, 0x7f, 0x80, 0xff};
    for (size_t n = 0; n <= 24; n++) {
        for (size_t at = 0; at < (n ? n : 1); at++) {
            for (size_t k = 0; k < sizeof(kinds); k++) {
                unsigned char *s = malloc(n ? n : 1);
                assert_non_null(s);
                memset(s, 'x', n);
                if (n)
                    s[at] = kinds[k];
                int want = 1;
                for (size_t i = 0; i < n; i++)
                    if (s[i] < 0x20 || s[i] >= 0x80 || s[i] == '"' || s[i] == '\\')
                        want = 0;
                assert_int_equal(cg_buf_json_plain((const char *)s, n), want);
                free(s);
            }
        }
    }
}

static void test_buf_growth_and_reset(void **state)
{
    (void)state;
    cg_buf_t b;
    cg_buf_init(&b);
    for (int i = 0; i < 10000; i++)
        cg_buf_printf(&b, "%d,", i);
    assert_true(b.len > 40000);
    assert_memory_equal(b.data, "0,1,2,", 6);
    size_t cap = b.cap;
    cg_buf_reset(&b);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.cap, cap); /* capacity kept for reuse */
    cg_buf_free(&b);
    cg_buf_free(NULL);
}

static void test_arena(void **state)
{
    (void)state;
    cg_arena_t a;
    cg_arena_init(&a, 1024);
    char *p1 = cg_arena_alloc(&a, 10);
    char *p2 = cg_arena_alloc(&a, 10);
    assert_non_null(p1);
    assert_true(((uintptr_t)p2 % _Alignof(max_align_t)) == 0);
    assert_true(p2 >= p1 + 10);
    char *big = cg_arena_alloc(&a, 5000); /* larger than a chunk */
    assert_non_null(big);
    memset(big, 'x', 5000);
    char *s = cg_arena_strndup(&a, "hello world", 5);
    assert_string_equal(s, "hello");
    cg_arena_reset(&a);
    assert_int_equal(a.used_total, 0);
    char *p3 = cg_arena_alloc(&a, 10);
    assert_non_null(p3);
    cg_arena_destroy(&a);
    cg_arena_destroy(NULL);
}

static void test_read_file(void **state)
{
    (void)state;
    cg_buf_t b;
    cg_buf_init(&b);
    assert_int_equal(cg_buf_read_file(&b, CG_SOURCE_DIR "/tests/golden/key"), CG_OK);
    assert_int_equal(b.len, strlen("cohortgate-golden-test-key-do-not-use-in-production\n"));
    assert_int_equal(b.data[b.len], '\0');
    cg_buf_reset(&b);
    assert_int_equal(cg_buf_read_file(&b, "/dev/null"), CG_OK); /* empty: still NUL-terminated */
    assert_int_equal(b.len, 0);
    assert_non_null(b.data);
    assert_int_equal(b.data[0], '\0');
    assert_int_equal(cg_buf_read_file(&b, "/nonexistent/file"), CG_ERR_IO);
    cg_buf_free(&b);
}

/* cg_fmt_int64 against snprintf: the edges, every digit count, both signs. */
static void check_int(int64_t v)
{
    char want[32], got[32];
    snprintf(want, sizeof(want), "%" PRId64, v);
    size_t n = cg_fmt_int64(got, v);
    got[n] = '\0';
    assert_string_equal(got, want);
}

static void test_fmt_int64(void **state)
{
    (void)state;
    const int64_t edges[] = {0,        1,         9,         10,        99,        100,
                             99999999, 100000000, 100000001, INT64_MAX, INT64_MIN, INT64_MIN + 1};
    for (size_t i = 0; i < sizeof(edges) / sizeof(edges[0]); i++) {
        check_int(edges[i]);
        if (edges[i] != INT64_MIN)
            check_int(-edges[i]);
    }
    /* either side of every power of ten: the digit count is worked out before any digit */
    int64_t p = 1;
    for (int k = 0; k < 19; k++) {
        p = k ? p * 10 : 1; /* 10^k, up to 10^18 */
        check_int(p - 1);
        check_int(p);
        check_int(p + 1);
        check_int(-p);
        check_int(1 - p);
        for (int b = 0; b < 63; b++) /* and either side of each power of two */
            if (((int64_t)1 << b) > p / 2 && ((int64_t)1 << b) < p * 2) {
                check_int(((int64_t)1 << b) - 1);
                check_int((int64_t)1 << b);
            }
    }
    uint64_t x = 88172645463325252ULL; /* xorshift: values of every length */
    for (int i = 0; i < 200000; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        check_int((int64_t)(x >> (i % 64)));
        check_int(-(int64_t)(x >> (1 + i % 63)));
    }
    cg_buf_t b;
    cg_buf_init(&b);
    cg_buf_puts(&b, "id=");
    cg_buf_put_int64(&b, -42);
    assert_string_equal(b.data, "id=-42");
    cg_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_escapes), cmocka_unit_test(test_buf_growth_and_reset),
        cmocka_unit_test(test_arena),        cmocka_unit_test(test_fmt_int64),
        cmocka_unit_test(test_read_file),    cmocka_unit_test(test_json_plain),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
