/* test_cohort.c - cohort files compile with located errors and route rows by their columns. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <string.h>

#include "cg_cohort.h"
#include "cg_target.h"
#include "test_rows.h"

static void test_shipped_cohorts_route(void **state)
{
    (void)state;
    cg_error_t errs[8];
    size_t n = 0;
    cg_value_t vals[64];
    cg_cohortset_t *cs = cg_cohortset_load(CG_SOURCE_DIR "/specs/cohorts", errs, 8, &n);
    assert_non_null(cs);
    assert_int_equal(cg_cohortset_count(cs), 2);
    cg_cohort_router_t *r = cg_cohort_router_new(cs);
    const char *const *names;
    cg_row_t row =
        ROW("condition_occurrence", {"condition_source_value", CG_VALUE_STRING, "E11.9"});
    assert_int_equal(cg_cohort_route(r, &row, &names), 1);
    assert_string_equal(names[0], "t2dm");
    row = ROW("condition_occurrence", {"condition_source_value", CG_VALUE_STRING, "E110"});
    assert_int_equal(cg_cohort_route(r, &row, &names), 0); /* E11 then a dot or the end */
    row = ROW("measurement", {"value_as_number", CG_VALUE_NUMBER, "6.5"},
              {"measurement_source_value", CG_VALUE_STRING, "4548-4"});
    assert_int_equal(cg_cohort_route(r, &row, &names), 1);
    row = ROW("measurement", {"value_as_number", CG_VALUE_NUMBER, "6.4"},
              {"measurement_source_value", CG_VALUE_STRING, "4548-4"});
    assert_int_equal(cg_cohort_route(r, &row, &names), 0);
    row = ROW("measurement", {"value_as_number", CG_VALUE_NULL, NULL},
              {"measurement_source_value", CG_VALUE_STRING, "4548-4"});
    assert_int_equal(cg_cohort_route(r, &row, &names), 0);
    row = ROW("measurement", {"measurement_source_value", CG_VALUE_STRING, "4548-4"});
    assert_int_equal(cg_cohort_route(r, &row, &names), 0); /* value absent */
    row = ROW("measurement", {"value_as_number", CG_VALUE_INTEGER, "45"},
              {"measurement_source_value", CG_VALUE_STRING, "62238-1"});
    assert_int_equal(cg_cohort_route(r, &row, &names), 1);
    assert_string_equal(names[0], "ckd");
    /* the same code in another table is no match */
    row = ROW("observation", {"observation_source_value", CG_VALUE_STRING, "E11.9"});
    assert_int_equal(cg_cohort_route(r, &row, &names), 0);
    /* a delete (a withdrawn result: its id and person only), a person's delete, a merge and a
     * retraction say nothing by their values: every cohort gets them, so that a cohort's
     * database undoes what it holds */
    static const char *const undo[] = {"measurement", "person", "cohortgate.person_merge",
                                       "cohortgate.order_retraction"};
    static const uint8_t ops[] = {CG_ROW_DELETE, CG_ROW_DELETE, CG_ROW_MERGE, CG_ROW_RETRACT};
    for (size_t i = 0; i < 4; i++) {
        row = ROW(undo[i], {"person_id", CG_VALUE_INTEGER, "5"});
        row.op = ops[i];
        assert_int_equal(cg_cohort_route(r, &row, &names), 2);
        assert_true((!strcmp(names[0], "t2dm") && !strcmp(names[1], "ckd")) ||
                    (!strcmp(names[0], "ckd") && !strcmp(names[1], "t2dm")));
        assert_non_null(cg_cohort_route_why(r, 1));
    }
    cg_cohort_router_destroy(r);
    cg_cohortset_destroy(cs);
}

/* The shipped cohorts judge a row by its standard concept, so a local code a vocabulary mapped
 * joins; a source code counts only while the row is unmapped (concept 0). */
static void test_shipped_cohorts_on_concepts(void **state)
{
    (void)state;
    cg_error_t errs[8];
    size_t n = 0;
    cg_value_t vals[64];
    cg_cohortset_t *cs = cg_cohortset_load(CG_SOURCE_DIR "/specs/cohorts", errs, 8, &n);
    assert_non_null(cs);
    cg_cohort_router_t *r = cg_cohort_router_new(cs);
    const char *const *names;
    /* a hospital's own HbA1c code mapped to LOINC 4548-4's concept */
    cg_row_t row = ROW("measurement", {"measurement_concept_id", CG_VALUE_INTEGER, "3004410"},
                       {"value_as_number", CG_VALUE_NUMBER, "7.1"},
                       {"measurement_source_value", CG_VALUE_STRING, "GLYHB"});
    assert_int_equal(cg_cohort_route(r, &row, &names), 1);
    assert_string_equal(names[0], "t2dm");
    /* unmapped: the source code decides */
    row = ROW("measurement", {"measurement_concept_id", CG_VALUE_INTEGER, "0"},
              {"value_as_number", CG_VALUE_NUMBER, "7.1"},
              {"measurement_source_value", CG_VALUE_STRING, "4548-4"});
    assert_int_equal(cg_cohort_route(r, &row, &names), 1);
    /* mapped to something else: the source code no longer decides */
    row = ROW("measurement", {"measurement_concept_id", CG_VALUE_INTEGER, "3004501"},
              {"value_as_number", CG_VALUE_NUMBER, "7.1"},
              {"measurement_source_value", CG_VALUE_STRING, "4548-4"});
    assert_int_equal(cg_cohort_route(r, &row, &names), 0);
    row = ROW("measurement", {"measurement_concept_id", CG_VALUE_INTEGER, "3049187"},
              {"value_as_number", CG_VALUE_INTEGER, "48"},
              {"measurement_source_value", CG_VALUE_STRING, "EGFR"});
    assert_int_equal(cg_cohort_route(r, &row, &names), 1);
    assert_string_equal(names[0], "ckd");
    row = ROW("condition_occurrence", {"condition_concept_id", CG_VALUE_INTEGER, "201826"},
              {"condition_source_value", CG_VALUE_STRING, "DM2-LOCAL"});
    assert_int_equal(cg_cohort_route(r, &row, &names), 1);
    assert_string_equal(names[0], "t2dm");
    cg_cohort_router_destroy(r);
    cg_cohortset_destroy(cs);

    /* "unmapped" names a concept column of the rule's table */
    assert_null(cg_cohortset_load_string(
        "{\"cohort\":\"x\",\"version\":1,\"match\":[{\"table\":\"measurement\","
        "\"column\":\"measurement_source_value\",\"in\":[\"a\"],"
        "\"unmapped\":\"value_as_number\"}]}",
        "u.json", errs, 8, &n));
    assert_int_equal(n, 1);
    assert_non_null(strstr(errs[0].text, "*_concept_id column of measurement"));
}

/* A value is matched as its text, not as its JSON spelling (a quote is a quote). */
static void test_route_text_not_json(void **state)
{
    (void)state;
    cg_value_t vals[64];
    size_t n = 0;
    cg_cohortset_t *cs = cg_cohortset_load_string(
        "{\"cohort\":\"q\",\"version\":1,\"match\":[{\"table\":\"observation\","
        "\"column\":\"value_as_string\",\"in\":[\"a\\\"b\"]}]}",
        "q.json", NULL, 0, &n);
    assert_non_null(cs);
    cg_cohort_router_t *r = cg_cohort_router_new(cs);
    const char *const *names;
    cg_row_t row = ROW("observation", {"value_as_string", CG_VALUE_STRING, "a\"b"});
    assert_int_equal(cg_cohort_route(r, &row, &names), 1);
    row = ROW("observation", {"value_as_string", CG_VALUE_STRING, "a\\\"b"});
    assert_int_equal(cg_cohort_route(r, &row, &names), 0);
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
    assert_string_equal(errs[1].text,
                        "cohort '?': \"table\" must name an OMOP CDM v5.4 table, not 'measurment'");
    assert_int_equal(errs[2].line, 3);
    assert_non_null(strstr(errs[2].text, "no column 'nope'"));
    assert_int_equal(errs[3].line, 4);
    assert_non_null(strstr(errs[3].text, "does not compile"));
    assert_int_equal(errs[4].line, 5);
    assert_non_null(strstr(errs[4].text, "needs \"value\""));
    assert_string_equal(errs[4].file, "c.json");
    /* another target's table of events (a merge) joins no cohort */
    assert_null(cg_cohortset_load_string("{\"cohort\":\"m\",\"version\":1,\"match\":[{\"table\":"
                                         "\"cohortgate.person_merge\",\"column\":\"person_id\","
                                         "\"in\":[\"1\"]}]}",
                                         "m.json", errs, 8, &n));
    assert_int_equal(n, 1);
    assert_non_null(strstr(errs[0].text, "not 'cohortgate.person_merge'"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {

        cmocka_unit_test(test_shipped_cohorts_route),
        cmocka_unit_test(test_shipped_cohorts_on_concepts),
        cmocka_unit_test(test_route_text_not_json),
        cmocka_unit_test(test_errors_located),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
