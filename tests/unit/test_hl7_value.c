/* test_hl7_value.c - reading values: escape sequences and character sets. */
#include "test_hl7_util.h"

static cg_hl7_msg_t *parse_with(const char *file, char **buf, const char *default_charset)
{
    size_t len;
    *buf = th_fixture(file, &len);
    cg_hl7_options_t o;
    cg_hl7_options_default(&o);
    if (default_charset)
        o.default_charset = default_charset;
    cg_hl7_msg_t *m = cg_hl7_msg_new(&o);
    cg_error_t e;
    if (cg_hl7_parse(m, *buf, len, &e) != CG_OK)
        fail_msg("%s: %s", file, e.text);
    return m;
}

static void test_escapes(void **state)
{
    (void)state;
    char *buf;
    cg_hl7_msg_t *m = parse_with("escapes.hl7", &buf, NULL);
    assert_get(m, "OBX[1]-5", "pipe|caret^amp&tilde~back\\end");
    assert_get(m, "OBX[2]-5",
               "hexABCD and \xc3\xa9x"
               "");
    assert_get(m, "OBX[3]-5", "line one\nline two bold normal");
    assert_get(m, "OBX[4]-5", "unknown \\Zfoo\\ kept, lone \\ stays");
    assert_get(m, "OBX[5]-5", "bad hex \\XZZ\\ kept");
    cg_hl7_msg_destroy(m);
    free(buf);
}

static void test_escape_edges(void **state)
{
    (void)state;
    const char in[] = "MSH|^~\\&|A|B|C|D|1||ADT^A01|E1|P|2.5\r"
                      "NTE|1||\\|trailing\\|\\E\\\\E\\|\\X41\\|\\X4\\|\\\\|\\.sp\\|\\H\\\\N\\\r";
    cg_hl7_msg_t *m = cg_hl7_msg_new(NULL);
    cg_error_t e;
    assert_int_equal(cg_hl7_parse(m, in, sizeof(in) - 1, &e), CG_OK);
    assert_get(m, "NTE-3", "\\");         /* a lone escape character */
    assert_get(m, "NTE-4", "trailing\\"); /* lone at the end */
    assert_get(m, "NTE-5", "\\\\");       /* two \E\ */
    assert_get(m, "NTE-6", "A");
    assert_get(m, "NTE-7", "\\X4\\");  /* odd hex digits: kept */
    assert_get(m, "NTE-8", "\\\\");    /* empty sequence: kept */
    assert_get(m, "NTE-9", "\\.sp\\"); /* not one we decode: kept */
    assert_get(m, "NTE-10", "");       /* highlighting only */
    cg_hl7_msg_destroy(m);
}

static void test_gb18030(void **state)
{
    (void)state;
    char *buf;
    cg_hl7_msg_t *m = parse_with("adt_a01_gb18030.hl7", &buf, NULL);
    assert_string_equal(cg_hl7_msg_charset(m), "GB18030");
    /* 億 is 0x83 0x7C in GB 18030: its trail byte is '|' but must not split the field */
    assert_get(m, "PID-5.1", "王");
    assert_get(m, "PID-5.2", "億華");
    assert_get(m, "PID-5.7", "L");
    assert_get(m, "PID-7", "19900307");
    /* 圽 is 0x88 0x5C: its trail byte is the escape character */
    assert_get(m, "PID-11.1", "朝阳区圽路1号");
    assert_get(m, "PID-11.3", "北京市");
    assert_get(m, "MSH-4", "北京协和医院");
    assert_get(m, "PV1-3.1", "内科");
    cg_hl7_msg_destroy(m);
    free(buf);
}

static void test_undeclared_gb18030_default(void **state)
{
    (void)state;
    /* Chinese feeds often leave MSH-18 empty: the configured default applies */
    const char in[] = "MSH|^~\\&|HIS|H|EMR|H|1||ADT^A01|C1|P|2.4\rPID|1||1||\xcd\xf5^\xc3\xf7\r";
    cg_hl7_options_t o;
    cg_hl7_options_default(&o);
    o.default_charset = "GB 18030-2000";
    cg_hl7_msg_t *m = cg_hl7_msg_new(&o);
    cg_error_t e;
    assert_int_equal(cg_hl7_parse(m, in, sizeof(in) - 1, &e), CG_OK);
    assert_get(m, "PID-5", "王^明");
    cg_hl7_msg_destroy(m);
    /* the same bytes under the UTF-8 default are an error naming the byte */
    m = cg_hl7_msg_new(NULL);
    assert_int_equal(cg_hl7_parse(m, in, sizeof(in) - 1, &e), CG_OK);
    cg_hl7_path_t p;
    cg_buf_t out;
    cg_buf_init(&out);
    cg_hl7_path_compile(&p, "PID-5", 5, NULL);
    assert_int_equal(cg_hl7_path_get(m, &p, cg_hl7_scope_message(m), '~', &out, NULL, &e),
                     CG_ERR_CHARSET);
    assert_int_equal(e.offset, (size_t)(strstr(in, "\xcd") - in));
    assert_int_equal(e.segment, 2);
    assert_string_equal(e.seg_name, "PID");
    assert_int_equal(e.field, 5);
    assert_int_equal(e.message, 1);
    assert_non_null(strstr(e.text, "0xcd"));
    cg_buf_free(&out);
    cg_hl7_msg_destroy(m);
}

/* One topic's feed sends GBK undeclared, the others UTF-8 (inputs[].charset): the default can
 * change between messages on one parser and back, and an empty MSH-18 follows it each time. */
static void test_default_charset_per_input(void **state)
{
    (void)state;
    const char in[] = "MSH|^~\\&|HIS|H|EMR|H|1||ADT^A01|C1|P|2.4\rPID|1||1||\xcd\xf5^\xc3\xf7\r";
    const char utf8[] = "MSH|^~\\&|HIS|H|EMR|H|1||ADT^A01|C2|P|2.4\rPID|1||1||\xe7\x8e\x8b\r";
    cg_hl7_msg_t *m = cg_hl7_msg_new(NULL); /* UTF-8 by default */
    cg_error_t e;
    for (int round = 0; round < 2; round++) {
        cg_hl7_msg_set_default_charset(m, "GBK");
        assert_int_equal(cg_hl7_parse(m, in, sizeof(in) - 1, &e), CG_OK);
        assert_string_equal(cg_hl7_msg_charset(m), "GBK");
        assert_get(m, "PID-5", "王^明");
        cg_hl7_msg_set_default_charset(m, NULL); /* back to the options' default */
        assert_int_equal(cg_hl7_parse(m, utf8, sizeof(utf8) - 1, &e), CG_OK);
        assert_string_equal(cg_hl7_msg_charset(m), "UTF-8");
        assert_get(m, "PID-5", "王");
    }
    /* a name iconv does not know fails the message, as a bad default does */
    cg_hl7_msg_set_default_charset(m, "NO-SUCH-CHARSET");
    assert_int_equal(cg_hl7_parse(m, in, sizeof(in) - 1, &e), CG_ERR_CHARSET);
    cg_hl7_msg_destroy(m);
}

static void test_latin1_and_utf8(void **state)
{
    (void)state;
    char *buf;
    cg_hl7_msg_t *m = parse_with("adt_a01_latin1.hl7", &buf, NULL);
    assert_string_equal(cg_hl7_msg_charset(m), "ISO-8859-1");
    assert_get(m, "PID-5", "Müller^Jürgen^^^^^L");
    assert_get(m, "PID-11.1", "Hauptstraße 5");
    assert_get(m, "PID-11.3", "Köln");
    cg_hl7_msg_destroy(m);
    free(buf);

    m = parse_with("bad_utf8.hl7", &buf, NULL);
    cg_hl7_path_t p;
    cg_buf_t out;
    cg_error_t e;
    cg_buf_init(&out);
    cg_hl7_path_compile(&p, "PID-5", 5, NULL);
    assert_int_equal(cg_hl7_path_get(m, &p, cg_hl7_scope_message(m), '~', &out, NULL, &e),
                     CG_ERR_CHARSET);
    assert_int_equal(e.offset, 80);
    assert_int_equal(e.field, 5);
    char loc[512];
    assert_string_equal(cg_error_format(&e, loc, sizeof(loc)),
                        "segment 2 PID, field 5, byte 80: invalid UTF-8 byte 0xff (the message "
                        "declares or defaults to UTF-8)");
    cg_buf_free(&out);
    cg_hl7_msg_destroy(m);
    free(buf);
}

static void test_charset_names(void **state)
{
    (void)state;
    char b[64];
    static const char *const map[][2] = {
        {"ASCII", "ASCII"},           {"8859/1", "ISO-8859-1"},
        {"8859/15", "ISO-8859-15"},   {"UNICODE UTF-8", "UTF-8"},
        {"GB 18030-2000", "GB18030"}, {"KS X 1001", "EUC-KR"},
        {"ISO IR87", "ISO-2022-JP"},  {"ISO IR159", "ISO-2022-JP-2"},
        {" 8859/2 ", "ISO-8859-2"},   {"GBK", "GBK"},
        {"unicode utf-8", "UTF-8"},
    };
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
        assert_string_equal(cg_hl7_charset_iconv_name(map[i][0], strlen(map[i][0]), b, sizeof(b)),
                            map[i][1]);
    /* an unknown MSH-18 is an error at parse time, pointing at MSH-18 */
    const char in[] = "MSH|^~\\&|A|B|C|D|1||ADT^A01|X|P|2.5||||||NOSUCH-CHARSET\rPID|1\r";
    cg_hl7_msg_t *m = cg_hl7_msg_new(NULL);
    cg_error_t e;
    assert_int_equal(cg_hl7_parse(m, in, sizeof(in) - 1, &e), CG_ERR_CHARSET);
    assert_int_equal(e.field, 18);
    assert_int_equal(e.offset, (size_t)(strstr(in, "NOSUCH") - in));
    /* ASCII declared, 8-bit byte found */
    const char in2[] = "MSH|^~\\&|A|B|C|D|1||ADT^A01|X|P|2.5||||||ASCII\rPID|1||\xe9\r";
    assert_int_equal(cg_hl7_parse(m, in2, sizeof(in2) - 1, &e), CG_OK);
    cg_buf_t out;
    cg_buf_init(&out);
    cg_slice_t raw;
    assert_true(cg_hl7_get_raw(m, 1, 3, 1, 1, 1, &raw));
    assert_int_equal(cg_hl7_decode(m, raw, &out, &e), CG_ERR_CHARSET);
    assert_int_equal(e.offset, sizeof(in2) - 3);
    /* repeated MSH-18: the first repetition is the message's charset */
    const char in3[] = "MSH|^~\\&|A|B|C|D|1||ADT^A01|X|P|2.5||||||8859/1~ISO IR87\rPID|1||\xe9\r";
    assert_int_equal(cg_hl7_parse(m, in3, sizeof(in3) - 1, &e), CG_OK);
    assert_string_equal(cg_hl7_msg_charset(m), "ISO-8859-1");
    cg_buf_reset(&out);
    assert_true(cg_hl7_get_raw(m, 1, 3, 0, 0, 0, &raw));
    assert_int_equal(cg_hl7_decode(m, raw, &out, &e), CG_OK);
    assert_string_equal(out.data, "\xc3\xa9");
    cg_buf_free(&out);
    cg_hl7_msg_destroy(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_escapes),
        cmocka_unit_test(test_escape_edges),
        cmocka_unit_test(test_gb18030),
        cmocka_unit_test(test_undeclared_gb18030_default),
        cmocka_unit_test(test_default_charset_per_input),
        cmocka_unit_test(test_latin1_and_utf8),
        cmocka_unit_test(test_charset_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
