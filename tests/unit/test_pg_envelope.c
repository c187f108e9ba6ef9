/* test_pg_envelope.c - the sink's in-place envelope reader (pg_envelope.c): every value it reads
 * is the text the general path (jansson and cg_omop_json_text) gives, and what it cannot read
 * that way it leaves to that path. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "pg/pg_int.h"

/* Scans env; when it is read, each row member's text must be the general path's. */
static int scan_agrees(const char *env)
{
    static pg_envelope_t e;
    int fast = pg_envelope_scan(env, strlen(env), &e);
    if (!fast)
        return 0;
    json_error_t err;
    json_t *j = json_loads(env, 0, &err);
    if (!j)
        fail_msg("read, but jansson refuses it: %s", env);
    json_t *row = json_object_get(j, "row");
    assert_true(json_is_object(row));
    for (size_t i = 0; i < e.n_row; i++) {
        char key[128], buf[64];
        snprintf(key, sizeof(key), "%.*s", (int)e.row[i].key.len, e.row[i].key.ptr);
        const char *text;
        size_t len;
        bool quoted;
        assert_true(
            cg_omop_json_text(json_object_get(row, key), buf, sizeof(buf), &text, &len, &quoted));
        int later = 0; /* a key named twice: the later one is jansson's */
        for (size_t k = i + 1; k < e.n_row; k++)
            later |= e.row[k].key.len == e.row[i].key.len &&
                     !memcmp(e.row[k].key.ptr, e.row[i].key.ptr, e.row[i].key.len);
        if (later)
            continue;
        if (!text || !e.row[i].value) {
            if (text || e.row[i].value)
                fail_msg("%s: %s is null on one path only", env, key);
            continue;
        }
        if (len != e.row[i].len || memcmp(text, e.row[i].value, len))
            fail_msg("%s: %s is '%s' by jansson, '%.*s' in place", env, key, text,
                     (int)e.row[i].len, e.row[i].value);
    }
    json_decref(j);
    return 1;
}

static char *env_with(const char *value)
{
    static char buf[512];
    snprintf(buf, sizeof(buf),
             "{\"standard\":\"omop-cdm-5.4\",\"table\":\"measurement\",\"op\":\"upsert\","
             "\"row\":{\"measurement_id\":1,\"value_as_number\":%s}}",
             value);
    return buf;
}

static void test_common_envelope(void **state)
{
    (void)state;
    const char *env =
        " {\"standard\":\"omop-cdm-5.4\",\"table\":\"measurement\",\"op\":\"upsert\","
        "\"cohorts\":[\"t2dm\", {\"a\": [1, 2.5, true, null]}],\"row\":{\"measurement_id\":"
        "4000000000000000000,\"person_id\":\"-12\",\"measurement_date\":\"2024-03-14\","
        "\"value_as_number\":7.2,\"value_source_value\":\"\xe7\x97\x85 >\",\"range_low\":null,"
        "\"range_high\":0.0005,\"unit_source_value\":false},\"source\":{\"topic\":\"t\","
        "\"offset\":5}}\n";
    static pg_envelope_t e;
    assert_int_equal(pg_envelope_scan(env, strlen(env), &e), 1);
    assert_int_equal(e.n_row, 8);
    assert_int_equal(e.table.len, strlen("measurement"));
    assert_int_equal(scan_agrees(env), 1);
}

static void test_numbers(void **state)
{
    (void)state;
    /* read in place: their text is their shortest spelling */
    const char *fast[] = {"0",
                          "-1",
                          "7",
                          "123456789012345678",
                          "9223372036854775807",
                          "-9223372036854775808",
                          "7.2",
                          "-0.5",
                          "0.0001",
                          "0.00012",
                          "7.0",
                          "-7.0",
                          "0.0",
                          "-0.0",
                          "12345.0",
                          "101.0",
                          "100.5",
                          "1234567.25",
                          "0.1",
                          "99999999999999.9",
                          "-7.125",
                          "3.141592653589"};
    for (size_t i = 0; i < sizeof(fast) / sizeof(fast[0]); i++)
        if (!scan_agrees(env_with(fast[i])))
            fail_msg("%s was not read in place", fast[i]);
    /* left to jansson: an exponent, a trailing zero, too many digits, -0, 0.00001 (%g's
     * exponent), an integer beyond 64 bits, N0.0 (%g's exponent) */
    const char *slow[] = {"1e3",
                          "1.50",
                          "-0",
                          "0.00001",
                          "9223372036854775808",
                          "-9223372036854775809",
                          "0.1234567890123456",
                          "10.0",
                          "-100.0",
                          "1234567890123456.0",
                          "1.",
                          "01",
                          "-",
                          "1E5",
                          "2.5e-3"};
    for (size_t i = 0; i < sizeof(slow) / sizeof(slow[0]); i++)
        if (scan_agrees(env_with(slow[i])))
            fail_msg("%s was read in place", slow[i]);
    /* every decimal of up to 15 digits it reads agrees with the general path */
    srand(7);
    for (int i = 0; i < 20000; i++) {
        char num[40];
        int ip = rand() % 4 == 0 ? 0 : rand() % 100000;
        int zeros = rand() % 5, frac = rand() % 3 ? 1 + rand() % 999999 : 0;
        snprintf(num, sizeof(num), "%s%d.%.*s%d", rand() % 2 ? "-" : "", ip, zeros, "0000", frac);
        scan_agrees(env_with(num));
    }
}

static void test_left_to_jansson(void **state)
{
    (void)state;
    const char *slow[] = {
        "{\"standard\":\"omop-cdm-5.4\",\"table\":\"measurement\",\"op\":\"upsert\","
        "\"row\":{\"measurement_source_value\":\"a\\\"b\"}}", /* an escape */
        "{\"standard\":\"omop-cdm-5.4\",\"table\":\"measurement\",\"op\":\"upsert\","
        "\"row\":{\"measurement_id\":{\"x\":1}}}", /* not a scalar */
        "{\"standard\":\"omop-cdm-5.4\",\"table\":\"measurement\",\"op\":\"upsert\"}", /* no row */
        "{\"standard\":\"omop-cdm-5.4\",\"table\":\"measurement\",\"op\":\"upsert\","
        "\"row\":{}} x", /* trailing bytes */
        "{\"standard\":\"omop-cdm-5.4\",\"table\":\"measurement\",\"op\":\"upsert\","
        "\"row\":{\"a\":\"\xff\"}}", /* not UTF-8 */
        "{\"standard\":1,\"table\":\"measurement\",\"op\":\"upsert\",\"row\":{}}",
        "{\"standard\":\"omop-cdm-5.4\",\"table\":\"measurement\",\"op\":\"upsert\","
        "\"row\":{\"a\":1,}}",
        "[]",
        "{}",
        "",
    };
    for (size_t i = 0; i < sizeof(slow) / sizeof(slow[0]); i++) {
        static pg_envelope_t e;
        if (pg_envelope_scan(slow[i], strlen(slow[i]), &e))
            fail_msg("read in place: %s", slow[i]);
    }
    /* a key named twice: the later value, as jansson */
    assert_int_equal(scan_agrees("{\"standard\":\"omop-cdm-5.4\",\"table\":\"measurement\","
                                 "\"op\":\"upsert\",\"row\":{\"value_as_number\":1.5,"
                                 "\"value_as_number\":null}}"),
                     1);
}

/* source.time is read beside the row (the stale-record rule), and checked as a time. */
static void test_source_time(void **state)
{
    (void)state;
    static pg_envelope_t e;
    const char *env = "{\"standard\":\"omop-cdm-5.4\",\"table\":\"person\",\"op\":\"upsert\","
                      "\"row\":{\"person_id\":1},\"meta\":{\"time\":\"no\"},\"source\":{"
                      "\"message_id\":\"ab\",\"time\":\"2024-03-15T10:15:00-05:00\","
                      "\"spec\":\"s\",\"spec_version\":1,\"rule\":\"r\"}}";
    assert_int_equal(pg_envelope_scan(env, strlen(env), &e), 1);
    assert_int_equal(e.time.len, strlen("2024-03-15T10:15:00-05:00"));
    assert_memory_equal(e.time.ptr, "2024-03-15T10:15:00-05:00", e.time.len);
    const char *no_source = "{\"standard\":\"omop-cdm-5.4\",\"table\":\"person\",\"op\":"
                            "\"upsert\",\"row\":{\"person_id\":1}}";
    assert_int_equal(pg_envelope_scan(no_source, strlen(no_source), &e), 1);
    assert_null(e.time.ptr);
    static const char *const good[] = {"2024-03-15",
                                       "2024-03-15T10:15",
                                       "2024-03-15T10:15:00",
                                       "2024-03-15T10:15:00.123",
                                       "2024-03-15T10:15:00Z",
                                       "2024-03-15T10:15:00+01",
                                       "2024-03-15T10:15-0500",
                                       "2024-03-15T10:15:00.5+05:30"};
    static const char *const bad[] = {"",
                                      "2024-3-15",
                                      "2024-03-15 10:15",
                                      "2024-03-15T10",
                                      "2024-03-15T10:15:0",
                                      "2024-03-15T10:15:00.",
                                      "2024-03-15T10:15:00X",
                                      "2024-03-15T10:15:00+1",
                                      "2024-03-15T10:15:00+05:3",
                                      "20240315101500"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        if (!pg_time_text_ok(good[i], strlen(good[i])))
            fail_msg("refused: %s", good[i]);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (pg_time_text_ok(bad[i], strlen(bad[i])))
            fail_msg("taken: %s", bad[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_common_envelope),
        cmocka_unit_test(test_numbers),
        cmocka_unit_test(test_left_to_jansson),
        cmocka_unit_test(test_source_time),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
