/* test_cohort.c - cohort files compile with located errors and route rows by their columns. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <string.h>

#include "cg_cohort.h"

static void test_row_value(void **state)
{
    (void)state;
    cg_slice_t row =
        CG_SLICE_LIT("{\"measurement_id\":12,\"value_as_number\":7.2,\"unit_source_value\":\"%\","
                     "\"measurement_source_value\":\"4548-4\",\"operator_concept_id\":null,"
                     "\"value_source_value\":\"a \\\"q\\\" ,x\",\"range_low\":4}");
    cg_slice_t v;
    int s;
    assert_true(cg_cohort_row_value(row, "value_as_number", &v, &s));
    assert_false(s);
    assert_int_equal(v.len, 3);
    assert_memory_equal(v.ptr, "7.2", 3);
    assert_true(cg_cohort_row_value(row, "measurement_source_value", &v, &s));
    assert_true(s);
    assert_memory_equal(v.ptr, "4548-4", 6);
    assert_false(cg_cohort_row_value(row, "operator_concept_id", &v, &s)); /* null */
    assert_false(cg_cohort_row_value(row, "nope", &v, &s));
    assert_false(cg_cohort_row_value(row, "measurement", &v, &s)); /* a prefix of a key */
    /* a key-like text inside a string value is not a key */
    assert_true(cg_cohort_row_value(row, "range_low", &v, &s));
    assert_memory_equal(v.ptr, "4", 1);
    assert_false(cg_cohort_row_value(row, "x", &v, &s));
}

static void test_shipped_cohorts_route(void **state)
{
    (void)state;
    cg_error_t errs[8];
    size_t n = 0;
    cg_cohortset_t *cs = cg_cohortset_load(CG_SOURCE_DIR "/specs/cohorts", errs, 8, &n);
    assert_non_null(cs);
    assert_int_equal(cg_cohortset_count(cs), 2);
    cg_cohort_router_t *r = cg_cohort_router_new(cs);
    const char *const *names;
    assert_int_equal(cg_cohort_route(r, "condition_occurrence",
                                     CG_SLICE_LIT("{\"condition_source_value\":\"E11.9\"}"),
                                     &names),
                     1);
    assert_string_equal(names[0], "t2dm");
    assert_int_equal(cg_cohort_route(r, "condition_occurrence",
                                     CG_SLICE_LIT("{\"condition_source_value\":\"E110\"}"), &names),
                     0); /* the regex wants E11 then a dot or the end */
    assert_int_equal(cg_cohort_route(r, "measurement",
                                     CG_SLICE_LIT("{\"value_as_number\":6.5,"
                                                  "\"measurement_source_value\":\"4548-4\"}"),
                                     &names),
                     1);
    assert_int_equal(cg_cohort_route(r, "measurement",
                                     CG_SLICE_LIT("{\"value_as_number\":6.4,"
                                                  "\"measurement_source_value\":\"4548-4\"}"),
                                     &names),
                     0);
    assert_int_equal(cg_cohort_route(r, "measurement",
                                     CG_SLICE_LIT("{\"value_as_number\":null,"
                                                  "\"measurement_source_value\":\"4548-4\"}"),
                                     &names),
                     0);
    assert_int_equal(cg_cohort_route(r, "measurement",
                                     CG_SLICE_LIT("{\"value_as_number\":45,"
                                                  "\"measurement_source_value\":\"62238-1\"}"),
                                     &names),
                     1);
    assert_string_equal(names[0], "ckd");
    /* the right column in the wrong table is no match */
    assert_int_equal(cg_cohort_route(r, "observation",
                                     CG_SLICE_LIT("{\"condition_source_value\":\"E11.9\"}"),
                                     &names),
                     0);
    cg_cohort_router_destroy(r);
    cg_cohortset_destroy(cs);
}

static void test_errors_located(void **state)
{
    (void)state;
    cg_error_t errs[8];
    size_t n = 0;
    assert_null(cg_cohortset_load_string(
        "{\"cohort\":\"Bad Name\",\"version\":1,\n\"match\":[{\"table\":\"measurment\",\"column\":"
        "\"x\"},\n{\"table\":\"measurement\",\"column\":\"nope\"},\n{\"table\":\"measurement\","
        "\"column\":\"value_as_number\",\"regex\":\"(\"},\n{\"table\":\"measurement\",\"column\":"
        "\"measurement_source_value\",\"at_least\":1}]}",
        "c.json", errs, 8, &n));
    assert_int_equal(n, 5);
    assert_int_equal(errs[0].line, 1);
    assert_non_null(strstr(errs[0].text, "lower-case"));
    assert_int_equal(errs[1].line, 2);
    assert_non_null(strstr(errs[1].text, "'measurment'"));
    assert_int_equal(errs[2].line, 3);
    assert_non_null(strstr(errs[2].text, "no column 'nope'"));
    assert_int_equal(errs[3].line, 4);
    assert_non_null(strstr(errs[3].text, "does not compile"));
    assert_int_equal(errs[4].line, 5);
    assert_non_null(strstr(errs[4].text, "needs \"value\""));
    assert_string_equal(errs[4].file, "c.json");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_row_value),
        cmocka_unit_test(test_shipped_cohorts_route),
        cmocka_unit_test(test_errors_located),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
