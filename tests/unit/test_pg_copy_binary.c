/* test_pg_copy_binary.c - COPY's binary format for the sink's direct path (pg_copy_binary.c):
 * each field's bytes against hand-computed ones, and the spellings it must leave to the
 * server's text input (-1). Without a database; test_pg_sink_direct's binary case compares
 * whole tables loaded both ways against the real server. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "pg/pg_int.h"

/* The field of v as type t, as a hex string ("" with rc -1). */
static int field_hex(pg_bin_type_t t, const char *v, char *hex, size_t size)
{
    cg_buf_t b;
    cg_buf_init(&b);
    int rc = pg_bin_field(&b, t, v, strlen(v));
    hex[0] = '\0';
    for (size_t i = 0; !rc && i < b.len && 2 * i + 2 < size; i++)
        snprintf(hex + 2 * i, 3, "%02x", (unsigned char)b.data[i]);
    cg_buf_free(&b);
    return rc;
}

static void expect(pg_bin_type_t t, const char *v, const char *want)
{
    char hex[512];
    if (field_hex(t, v, hex, sizeof(hex)))
        fail_msg("'%s' was not encoded", v);
    if (strcmp(hex, want))
        fail_msg("'%s': %s, not %s", v, hex, want);
}

static void refused(pg_bin_type_t t, const char *v)
{
    char hex[512];
    if (!field_hex(t, v, hex, sizeof(hex)))
        fail_msg("'%s' was encoded (%s): it is the server's to read", v, hex);
}

static void test_integers(void **state)
{
    (void)state;
    expect(PG_BIN_INT4, "42", "000000040000002a");
    expect(PG_BIN_INT4, "-1", "00000004ffffffff");
    expect(PG_BIN_INT2, "-32768", "000000028000");
    expect(PG_BIN_INT8, "9223372036854775807", "000000087fffffffffffffff");
    expect(PG_BIN_INT8, "-9223372036854775808", "000000088000000000000000");
    expect(PG_BIN_INT4, "\\N", "ffffffff");
    refused(PG_BIN_INT4, "2147483648"); /* out of range: the server says so */
    refused(PG_BIN_INT2, "40000");
    refused(PG_BIN_INT8, "9223372036854775808");
    refused(PG_BIN_INT4, "+5"); /* int4in reads these; left to it */
    refused(PG_BIN_INT4, " 5");
    refused(PG_BIN_INT4, "5.0");
    refused(PG_BIN_INT4, "");
    refused(PG_BIN_INT4, "-");
}

static void test_numeric(void **state)
{
    (void)state;
    /* length, ndigits, weight, sign, dscale, base-10000 digits */
    expect(PG_BIN_NUMERIC, "123456.789",
           "0000000e"
           "0003"
           "0001"
           "0000"
           "0003"
           "000c0d801ed2");
    expect(PG_BIN_NUMERIC, "-0.001",
           "0000000a"
           "0001"
           "ffff"
           "4000"
           "0003"
           "000a");
    expect(PG_BIN_NUMERIC, "5.0",
           "0000000c"
           "0002"
           "0000"
           "0000"
           "0001"
           "00050000");
    expect(PG_BIN_NUMERIC, "0",
           "00000008"
           "0000"
           "ffff"
           "0000"
           "0000");
    expect(PG_BIN_NUMERIC, "-0",
           "00000008"
           "0000"
           "ffff"
           "0000"
           "0000"); /* no negative zero */
    /* exponents move the point; the scale is the digits after it, as numeric_in has it */
    expect(PG_BIN_NUMERIC, "1.50e1",
           "0000000c"
           "0002"
           "0000"
           "0000"
           "0001"
           "000f0000");
    expect(PG_BIN_NUMERIC, "1e+01",
           "0000000a"
           "0001"
           "0000"
           "0000"
           "0000"
           "000a");
    expect(PG_BIN_NUMERIC, "-2.5E-3",
           "0000000a"
           "0001"
           "ffff"
           "4000"
           "0004"
           "0019");
    expect(PG_BIN_NUMERIC, "12345",
           "0000000c"
           "0002"
           "0001"
           "0000"
           "0000"
           "00010929");
    refused(PG_BIN_NUMERIC, "5.");
    refused(PG_BIN_NUMERIC, ".");
    refused(PG_BIN_NUMERIC, "1e");
    refused(PG_BIN_NUMERIC, "1e1000");
    refused(PG_BIN_NUMERIC, "NaN");
    refused(PG_BIN_NUMERIC, "Infinity");
    refused(PG_BIN_NUMERIC, "+1");
    refused(PG_BIN_NUMERIC, "1,5");
}

static void test_dates(void **state)
{
    (void)state;
    expect(PG_BIN_DATE, "2000-01-01", "0000000400000000");
    expect(PG_BIN_DATE, "1999-12-31", "00000004ffffffff");
    expect(PG_BIN_DATE, "2024-02-29", "0000000400002279"); /* 8825 days */
    expect(PG_BIN_DATE, "0001-01-01", "00000004fff4dbf9");
    refused(PG_BIN_DATE, "2023-02-29");
    refused(PG_BIN_DATE, "2024-13-01");
    refused(PG_BIN_DATE, "0000-01-01");
    refused(PG_BIN_DATE, "2024-1-01");
    refused(PG_BIN_DATE, "infinity");
    refused(PG_BIN_DATE, "2024-03-14T10:00:00"); /* date_in reads it; left to it */
}

static void test_timestamps(void **state)
{
    (void)state;
    expect(PG_BIN_TIMESTAMP, "2000-01-01T00:00:01.5", "00000008000000000016e360");
    expect(PG_BIN_TIMESTAMP, "2000-01-01 00:00:01.5", "00000008000000000016e360");
    expect(PG_BIN_TIMESTAMP, "2000-01-02", "00000008000000141dd76000");
    expect(PG_BIN_TIMESTAMP, "2000-01-01T00:01", "000000080000000003938700");
    /* a zone is ignored by timestamp, applied by timestamptz */
    expect(PG_BIN_TIMESTAMP, "2000-01-01T01:00:00+01:00", "0000000800000000d693a400");
    expect(PG_BIN_TIMESTAMPTZ_UTC, "2000-01-01T01:00:00+01:00", "000000080000000000000000");
    expect(PG_BIN_TIMESTAMPTZ_UTC, "2000-01-01T01:00:00+0100", "000000080000000000000000");
    expect(PG_BIN_TIMESTAMPTZ_UTC, "2000-01-01T01:00:00+01", "000000080000000000000000");
    expect(PG_BIN_TIMESTAMPTZ_UTC, "1999-12-31T23:00:00-01:00", "000000080000000000000000");
    expect(PG_BIN_TIMESTAMPTZ_UTC, "2000-01-01T00:00:00Z", "000000080000000000000000");
    expect(PG_BIN_TIMESTAMP, "1999-12-31T23:59:59.999999", "00000008ffffffffffffffff");
    refused(PG_BIN_TIMESTAMP, "2024-03-14T24:00:00");
    refused(PG_BIN_TIMESTAMP, "2024-03-14T10:00:60");
    refused(PG_BIN_TIMESTAMP, "2024-03-14T10:00:00.1234567"); /* rounded by the server */
    refused(PG_BIN_TIMESTAMP, "2024-03-14T10:00:00.");
    refused(PG_BIN_TIMESTAMP, "2024-03-14T10");
    refused(PG_BIN_TIMESTAMP, "2024-03-14T10:00:00 CET");
    refused(PG_BIN_TIMESTAMP, "2024-03-14T10:00:00+16:00");
    refused(PG_BIN_TIMESTAMP, "epoch");
    /* a zone straight after a date: the server reads "-05" as a fourth part of the date */
    refused(PG_BIN_TIMESTAMP, "2020-01-01-05");
    refused(PG_BIN_TIMESTAMPTZ_UTC, "2020-01-01-05:30");
    refused(PG_BIN_TIMESTAMPTZ_UTC, "2020-01-01-0530");
    refused(PG_BIN_TIMESTAMPTZ_UTC, "2020-01-01Z");
    refused(PG_BIN_TIMESTAMPTZ_UTC, "2000-01-01T01:00:00+05:");
}

static void test_text(void **state)
{
    (void)state;
    expect(PG_BIN_TEXT, "abc", "00000003616263");
    expect(PG_BIN_TEXT, "", "00000000");
    expect(PG_BIN_TEXT, "a\\tb\\\\c\\nd\\re",
           "00000009610962"
           "5c630a640d65");
    expect(PG_BIN_TEXT, "\\b\\f\\v", "00000003080c0b");
    expect(PG_BIN_TEXT, "\xc3\xbc", "00000002c3bc");
    expect(PG_BIN_TEXT, "\\N", "ffffffff");
    refused(PG_BIN_TEXT, "\\101"); /* octal */
    refused(PG_BIN_TEXT, "\\x41");
    refused(PG_BIN_TEXT, "\\q");
    refused(PG_BIN_TEXT, "ends\\");
}

static void test_types_and_frame(void **state)
{
    (void)state;
    assert_int_equal(pg_bin_type_of(23, 1), PG_BIN_INT4);
    assert_int_equal(pg_bin_type_of(1700, 1), PG_BIN_NUMERIC);
    assert_int_equal(pg_bin_type_of(1043, 1), PG_BIN_TEXT);
    assert_int_equal(pg_bin_type_of(1184, 1), PG_BIN_TIMESTAMPTZ_UTC);
    assert_int_equal(pg_bin_type_of(1184, 0), PG_BIN_NONE); /* the session's zone unknown */
    assert_int_equal(pg_bin_type_of(701, 1), PG_BIN_NONE);  /* float8: not encoded */
    assert_true(pg_bin_zone_is_utc("Etc/UTC"));
    assert_true(pg_bin_zone_is_utc("UTC"));
    assert_false(pg_bin_zone_is_utc("Europe/Berlin"));
    assert_false(pg_bin_zone_is_utc("utc+1"));
    cg_buf_t b;
    cg_buf_init(&b);
    pg_bin_header(&b);
    pg_bin_tuple(&b, 2);
    assert_int_equal(pg_bin_int(&b, PG_BIN_INT4, 7), 0);
    pg_bin_null(&b);
    pg_bin_trailer(&b);
    static const unsigned char want[] = {'P',  'G', 'C',  'O',  'P',  'Y',  '\n', 0xff, '\r',
                                         '\n', 0,   0,    0,    0,    0,    0,    0,    0,
                                         0,    0,   2,    0,    0,    0,    4,    0,    0,
                                         0,    7,   0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    assert_int_equal(b.len, sizeof(want));
    assert_memory_equal(b.data, want, sizeof(want));
    assert_int_equal(pg_bin_int(&b, PG_BIN_INT4, INT64_C(1) << 40), -1);
    cg_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_integers), cmocka_unit_test(test_numeric),
        cmocka_unit_test(test_dates),    cmocka_unit_test(test_timestamps),
        cmocka_unit_test(test_text),     cmocka_unit_test(test_types_and_frame),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
