/* test_err.c - every status code has a name, a text and a class. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "cg_err.h"

static void test_every_code_described(void **state)
{
    (void)state;
    for (int e = 0; e < CG_ERR__COUNT; e++) {
        assert_non_null(cg_err_name((cg_err_t)e));
        assert_non_null(cg_err2str((cg_err_t)e));
        assert_string_not_equal(cg_err_name((cg_err_t)e), "UNKNOWN");
    }
    assert_string_equal(cg_err_name(CG_ERR__COUNT), "UNKNOWN");
}

static void test_classes(void **state)
{
    (void)state;
    assert_int_equal(cg_err_classify(CG_OK), CG_ERR_CLASS_NONE);
    assert_int_equal(cg_err_classify(CG_ERR_NOT_HL7), CG_ERR_CLASS_DEADLETTER);
    assert_int_equal(cg_err_classify(CG_ERR_KAFKA_RETRY), CG_ERR_CLASS_RETRY);
    assert_int_equal(cg_err_classify(CG_ERR_CONFIG), CG_ERR_CLASS_FATAL);
    assert_string_equal(cg_err_class_name(CG_ERR_CLASS_DEADLETTER), "dead-letter");
}

static void test_error_set(void **state)
{
    (void)state;
    cg_error_t e;
    assert_int_equal(cg_error_set(&e, CG_ERR_SPEC, "x.json", 3, 7, "bad %s", "thing"), CG_ERR_SPEC);
    assert_string_equal(e.file, "x.json");
    assert_int_equal(e.line, 3);
    assert_int_equal(e.column, 7);
    assert_string_equal(e.text, "bad thing");
    assert_int_equal(cg_error_set(NULL, CG_ERR_IO, NULL, 0, 0, "x"), CG_ERR_IO);
}

/* The one writer of errors: the place, a label when asked, the rule when known, the text. */
static void test_error_format(void **state)
{
    (void)state;
    cg_error_t e;
    char buf[CG_ERROR_FORMAT_SIZE];
    cg_error_set(&e, CG_ERR_SPEC, "x.json", 3, 7, "bad");
    assert_string_equal(cg_error_format(&e, buf, sizeof(buf)), "x.json:3:7: bad");
    assert_string_equal(cg_error_format_as(&e, "error", buf, sizeof(buf)),
                        "x.json:3:7: error: bad");
    cg_error_set(&e, CG_ERR_SPEC, NULL, 0, 0, "bad");
    assert_string_equal(cg_error_format_as(&e, "warning", buf, sizeof(buf)), "warning: bad");
    snprintf(e.rule, sizeof(e.rule), "r1");
    assert_string_equal(cg_error_format_as(&e, "error", buf, sizeof(buf)), "error: rule r1: bad");
    assert_string_equal(cg_error_format(&e, buf, sizeof(buf)), "rule r1: bad");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_code_described),
        cmocka_unit_test(test_classes),
        cmocka_unit_test(test_error_set),
        cmocka_unit_test(test_error_format),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
