/* test_hl7_path.c - the path language: compile errors and evaluation. */
#include "test_hl7_util.h"

static void compile_ok(const char *text, const char *canonical)
{
    cg_hl7_path_t p;
    cg_error_t e;
    char buf[64];
    if (cg_hl7_path_compile(&p, text, strlen(text), &e) != CG_OK)
        fail_msg("%s: %s", text, e.text);
    assert_string_equal(cg_hl7_path_format(&p, buf, sizeof(buf)), canonical);
}

static void compile_bad(const char *text, int column, const char *why)
{
    cg_hl7_path_t p;
    cg_error_t e;
    assert_int_equal(cg_hl7_path_compile(&p, text, strlen(text), &e), CG_ERR_SPEC);
    assert_int_equal(e.code, CG_ERR_SPEC);
    if (e.column != column)
        fail_msg("%s: column %d, expected %d (%s)", text, e.column, column, e.text);
    if (!strstr(e.text, why))
        fail_msg("%s: \"%s\" lacks \"%s\"", text, e.text, why);
}

static void test_compile(void **state)
{
    (void)state;
    compile_ok("PID-5", "PID-5");
    compile_ok("PID-5.1", "PID-5.1");
    compile_ok("PID-5.1.1", "PID-5.1.1");
    compile_ok("PID-3[2].1", "PID-3[2].1");
    compile_ok("PID-3[*].1", "PID-3[*].1");
    compile_ok("OBX[*]-5", "OBX[*]-5");
    compile_ok("OBX[3]-5", "OBX[3]-5");
    compile_ok("OBX[*]", "OBX[*]");
    compile_ok("ZPI-12[10].3.2", "ZPI-12[10].3.2");
    compile_bad("", 1, "expected a segment name");
    compile_bad("pid-5", 1, "expected a segment name");
    compile_bad("PI-5", 3, "3 capital letters");
    compile_bad("PID-", 5, "expected a field number");
    compile_bad("PID-x", 5, "found 'x'");
    compile_bad("PID-0", 5, "expected a field number");
    compile_bad("PID-5.", 7, "component number");
    compile_bad("PID-5.1.", 9, "subcomponent number");
    compile_bad("PID-5.1.1.1", 10, "unexpected character");
    compile_bad("PID-3[", 7, "expected an index");
    compile_bad("PID-3[0]", 7, "expected an index");
    compile_bad("PID-3[2", 8, "expected ']'");
    compile_bad("PID-5.1[2]", 8, "only segments and fields take an index");
    compile_bad("PID 5", 4, "expected '-'");
    compile_bad("PID-5 ", 6, "unexpected character");
    compile_bad("PID-999999", 10, "too large");
    cg_error_t e;
    cg_hl7_path_t p;
    cg_hl7_path_compile(&p, "PID-x", 5, &e);
    assert_string_equal(e.text, "path \"PID-x\": expected a field number (1, 2, ...) after '-', "
                                "found 'x' at column 5");
    assert_int_equal(cg_hl7_path_compile(&p, "PID-5", 5, NULL), CG_OK); /* err may be NULL */
}

static void test_eval_scopes(void **state)
{
    (void)state;
    const char in[] = "MSH|^~\\&|A|B|C|D|1||ORU^R01|P1|P|2.5\r"
                      "PID|1||ID1~ID2~ID3||DOE^JANE\r"
                      "OBR|1||||A\r"
                      "OBX|1|NM|X||1\r"
                      "OBX|2|NM|Y||2\r"
                      "OBR|2||||B\r"
                      "OBX|3|NM|Z||3~3b\r";
    cg_hl7_msg_t *m = cg_hl7_msg_new(NULL);
    cg_error_t e;
    assert_int_equal(cg_hl7_parse(m, in, sizeof(in) - 1, &e), CG_OK);
    assert_get(m, "OBX-5", "1");
    assert_get(m, "OBX[*]-5", "1~2~3");
    assert_get(m, "OBX[*]-5[*]", "1~2~3~3b");
    assert_get(m, "OBX[3]-5[2]", "3b");
    assert_get(m, "PID-3[*]", "ID1~ID2~ID3");
    assert_no_match(m, "OBX[4]-5");
    assert_get(m, "OBR[*]", "OBR|1||||A~OBR|2||||B");
    /* cursor at the third OBX (segment 6) */
    cg_hl7_path_t p;
    cg_hl7_match_t mt;
    cg_hl7_path_compile(&p, "OBR-5", 5, NULL);
    assert_true(cg_hl7_path_first(m, &p, cg_hl7_scope_at(m, 6), &mt));
    assert_int_equal(mt.seg, 5);
    assert_memory_equal(mt.raw.ptr, "B", 1);
    assert_true(cg_hl7_path_first(m, &p, cg_hl7_scope_at(m, 3), &mt));
    assert_int_equal(mt.seg, 2);
    /* a cursor before any OBR falls back to the first in the range */
    assert_true(cg_hl7_path_first(m, &p, cg_hl7_scope_at(m, 1), &mt));
    assert_int_equal(mt.seg, 2);
    /* "this OBX" */
    cg_hl7_path_compile(&p, "OBX-1", 5, NULL);
    assert_true(cg_hl7_path_first(m, &p, cg_hl7_scope_at(m, 4), &mt));
    assert_int_equal(mt.seg, 4);
    assert_int_equal(mt.field, 1);
    assert_int_equal(mt.rep, 1);
    /* an explicit index counts within the range */
    cg_hl7_path_compile(&p, "OBX[1]-1", 8, NULL);
    cg_hl7_scope_t sc = {CG_HL7_NO_SEG, 5, 7};
    assert_true(cg_hl7_path_first(m, &p, sc, &mt));
    assert_int_equal(mt.seg, 6);
    assert_int_equal(cg_hl7_seg_next(m, 0, "OBX"), 3);
    assert_int_equal(cg_hl7_seg_prev(m, 3, "OBX"), CG_HL7_NO_SEG);
    cg_hl7_msg_destroy(m);
}

/* [C=V|V…]: a repetition by a component's value, in order of preference (specs/PATHS.md). */
static void test_selector(void **state)
{
    (void)state;
    compile_ok("PID-3[5=MR].1", "PID-3[5=MR].1");
    compile_ok("PID-3[5=NNCHN|MR|*].1", "PID-3[5=NNCHN|MR|*].1");
    compile_ok("PID-3[4.1=GHH].4.2", "PID-3[4.1=GHH].4.2");
    compile_ok("PID[*]-3[5=MR]", "PID[*]-3[5=MR]");
    compile_bad("PID-3[5=]", 9, "expected a value");
    compile_bad("PID-3[5=MR|]", 12, "expected a value");
    compile_bad("PID-3[5=*|MR]", 10, "selector's last value");
    compile_bad("PID-3[5=MR", 11, "expected ']'");
    compile_bad("PID-3[5=M[R]", 10, "expected ']'");
    compile_bad("PID-5.1[5=MR]", 8, "only segments and fields take an index");

    /* equal paths, also by their selectors' values (the spec engine memoizes by equality) */
    cg_hl7_path_t a, b, c, d;
    cg_hl7_path_compile(&a, "PID-3[5=MR].1", 13, NULL);
    cg_hl7_path_compile(&b, "PID-3[5=MR].1", 13, NULL);
    cg_hl7_path_compile(&c, "PID-3[5=PI].1", 13, NULL);
    cg_hl7_path_compile(&d, "PID-3.1", 7, NULL);
    assert_true(cg_hl7_path_equal(&a, &b));
    assert_false(cg_hl7_path_equal(&a, &c));
    assert_false(cg_hl7_path_equal(&a, &d));

    const char in[] =
        "MSH|^~\\&|A|B|C|D|1||ADT^A01|P1|P|2.5\r"
        "PID|1||H77^^^HOSP&1.2.3&ISO^MR~110101199003077777^^^CHN^NNCHN~~X^^^^\\T\\||DOE\r"
        "PID|2||K1^^^B^PI\r"
        "PID|3\r";
    cg_hl7_msg_t *m = cg_hl7_msg_new(NULL);
    cg_error_t e;
    assert_int_equal(cg_hl7_parse(m, in, sizeof(in) - 1, &e), CG_OK);
    assert_get(m, "PID-3[5=NNCHN].1", "110101199003077777");
    assert_get(m, "PID-3[5=NNCHN].4", "CHN");
    assert_get(m, "PID-3[5=NNCHN|MR].1", "110101199003077777");
    assert_get(m, "PID-3[5=PI|MR|NNCHN].1", "H77");
    assert_get(m, "PID-3[5=MR].4.2", "1.2.3");
    assert_get(m, "PID-3[4.1=HOSP].5", "MR");
    assert_get(m, "PID-3[5=XX|*].1", "H77");
    assert_no_match(m, "PID-3[5=XX].1");
    assert_no_match(m, "PID-3[5=mr].1"); /* case counts */
    /* compared with the raw bytes: the escape as written matches, what it decodes to not */
    assert_get(m, "PID-3[5=\\T\\].1", "X");
    assert_no_match(m, "PID-3[5=&].1");
    /* one chosen repetition per segment; segments without one give nothing */
    assert_get(m, "PID[*]-3[5=PI|MR].1", "H77~K1");
    assert_get(m, "PID[*]-3[5=MR|*].1", "H77~K1");
    assert_get(m, "PID[2]-3[5=PI].1", "K1");
    assert_no_match(m, "PID[3]-3[5=*].1");
    /* the match says which repetition */
    cg_hl7_path_t p;
    cg_hl7_match_t mt;
    cg_hl7_path_compile(&p, "PID-3[5=NNCHN].1", 16, NULL);
    assert_true(cg_hl7_path_first(m, &p, cg_hl7_scope_message(m), &mt));
    assert_int_equal(mt.rep, 2);
    cg_hl7_msg_destroy(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_compile),
        cmocka_unit_test(test_eval_scopes),
        cmocka_unit_test(test_selector),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
