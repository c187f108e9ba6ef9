/* test_circe.c - Circe cohort expressions: the subset loads, everything else is refused at
 * file:line:column naming the element, and the compiled SQL says what each element asks for
 * (the database side is tests/pg/test_pg_circe.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "cg_circe.h"

/* A definition with one primary criterion (crit, a JSON object member) and extra top-level
 * members (more, starting with a comma or empty). */
#define DEF(crit, more)                                                                            \
    "{\n"                                                                                          \
    "  \"ConceptSets\": [{\"id\": 0, \"name\": \"t2dm\", \"expression\": {\"items\": [\n"          \
    "    {\"concept\": {\"CONCEPT_ID\": 201826, \"CONCEPT_NAME\": \"Type 2 diabetes\"},\n"         \
    "     \"includeDescendants\": true},\n"                                                        \
    "    {\"concept\": {\"CONCEPT_ID\": 4058243}, \"isExcluded\": true}]}}],\n"                    \
    "  \"PrimaryCriteria\": {\"CriteriaList\": [" crit "],\n"                                      \
    "    \"ObservationWindow\": {\"PriorDays\": 30, \"PostDays\": 0},\n"                           \
    "    \"PrimaryCriteriaLimit\": {\"Type\": \"First\"}}" more "\n}\n"

static char *compile_text(const char *text, long long id)
{
    cg_error_t errs[4];
    size_t n = 99;
    cg_circe_t *c = cg_circe_load_string(text, "def.json", errs, 4, &n);
    if (!c)
        fail_msg("refused: %s:%d:%d: %s", errs[0].file, errs[0].line, errs[0].column, errs[0].text);
    assert_int_equal(n, 0);
    cg_buf_t b;
    cg_buf_init(&b);
    cg_circe_sql_options_t o = {"cdm", "results", id, NULL, NULL, NULL};
    assert_int_equal(cg_circe_compile(c, &o, &b), CG_OK);
    cg_circe_destroy(c);
    return b.data;
}

/* Loading text must fail; the first error is returned for inspection. */
static cg_error_t refuse(const char *text)
{
    cg_error_t errs[8];
    size_t n = 0;
    memset(errs, 0, sizeof errs);
    cg_circe_t *c = cg_circe_load_string(text, "def.json", errs, 8, &n);
    if (c)
        fail_msg("loaded, but should have been refused:\n%s", text);
    assert_true(n >= 1);
    return errs[0];
}

static void test_compiles_the_steps(void **state)
{
    (void)state;
    char *sql = compile_text(
        DEF("{\"ConditionOccurrence\": {\"CodesetId\": 0, \"First\": true, \"Age\": {\"Value\": "
            "18, \"Extent\": 75, \"Op\": \"bt\"}, \"Gender\": [{\"CONCEPT_ID\": 8532}]}}",
            ",\n  \"EndStrategy\": {\"DateOffset\": {\"DateField\": \"StartDate\", \"Offset\": "
            "365}},\n  \"CollapseSettings\": {\"CollapseType\": \"ERA\", \"EraPad\": 30},\n"
            "  \"CensorWindow\": {\"StartDate\": \"2020-01-01\"}"),
        42);
    /* one definition's rows replaced, in the results schema */
    assert_non_null(strstr(sql, "DELETE FROM \"results\".cohort WHERE cohort_definition_id = 42;"));
    assert_non_null(strstr(sql, "INSERT INTO \"results\".cohort (cohort_definition_id, "
                                "subject_id, cohort_start_date, cohort_end_date)"));
    /* the concept set: explicit, descendants, the excluded concept taken out */
    assert_non_null(strstr(sql, "VALUES (201826)"));
    assert_non_null(strstr(sql, "ca.ancestor_concept_id IN (201826)"));
    assert_non_null(strstr(sql, "WHERE I.concept_id NOT IN (SELECT v.concept_id FROM (VALUES "
                                "(4058243))"));
    /* the criterion: its table in the CDM schema, first occurrence, age and gender */
    assert_non_null(strstr(sql, "FROM \"cdm\".condition_occurrence T JOIN codesets cs"));
    assert_non_null(strstr(sql, "AND C.ordinal = 1"));
    assert_non_null(strstr(sql, "(EXTRACT(YEAR FROM C.condition_start_date) - PE.year_of_birth) "
                                ">= 18 AND (EXTRACT(YEAR FROM C.condition_start_date) - "
                                "PE.year_of_birth) <= 75"));
    assert_non_null(strstr(sql, "PE.gender_concept_id IN (8532)"));
    /* observation window, primary limit, end strategy, era pad, censor window */
    assert_non_null(strstr(sql, "OP.observation_period_start_date + 30 <= E.start_date"));
    assert_non_null(strstr(sql, ") P WHERE P.ordinal = 1"));
    assert_non_null(strstr(sql, "CASE WHEN start_date + 365 > op_end_date"));
    assert_non_null(strstr(sql, "end_date + 30 AS event_date"));
    assert_non_null(strstr(sql, "GREATEST(start_date, DATE '2020-01-01')"));
    assert_non_null(strstr(sql, "SELECT 42, person_id"));
    free(sql);
}

static void test_groups_and_windows(void **state)
{
    (void)state;
    char *sql = compile_text(
        DEF("{\"Measurement\": {\"CodesetId\": 0, \"ValueAsNumber\": {\"Value\": 6.5, \"Op\": "
            "\"gte\"}}}",
            ",\n  \"InclusionRules\": [{\"name\": \"no insulin\", \"expression\": {\"Type\": "
            "\"AT_MOST\", \"Count\": 0, \"CriteriaList\": [{\"Criteria\": {\"DrugExposure\": "
            "{\"CodesetId\": 0}}, \"StartWindow\": {\"Start\": {\"Days\": 365, \"Coeff\": -1}, "
            "\"End\": {\"Days\": 0, \"Coeff\": 1}}, \"Occurrence\": {\"Type\": 2, \"Count\": 1}}],"
            " \"DemographicCriteriaList\": [{\"Age\": {\"Value\": 18, \"Op\": \"gte\"}}], "
            "\"Groups\": []}}],\n  \"ExpressionLimit\": {\"Type\": \"Last\"},\n"
            "  \"CensoringCriteria\": [{\"Death\": {}}]"),
        7);
    assert_non_null(strstr(sql, "C.value_as_number >= 6.5"));
    /* the window: 365 days before to 0 days after the index start */
    assert_non_null(strstr(sql, "A.start_date >= P.start_date + -365"));
    assert_non_null(strstr(sql, "A.start_date <= P.start_date + 0"));
    assert_non_null(strstr(sql, "HAVING COUNT(cc.cc_event_id) >= 1"));
    /* AT_MOST keeps events with no match (LEFT JOIN) */
    assert_non_null(strstr(sql, "LEFT JOIN (\n"));
    assert_non_null(strstr(sql, "HAVING COUNT(CQ.index_id) <= 0"));
    assert_non_null(strstr(sql, "inclusion_0 AS"));
    assert_non_null(strstr(sql, "FROM qualified_events E JOIN \"cdm\".person PE"));
    assert_non_null(strstr(sql, "ORDER BY Q.start_date DESC"));
    assert_non_null(strstr(sql, "FROM \"cdm\".death T"));
    assert_non_null(strstr(sql, "MIN(C.start_date) AS end_date"));
    free(sql);

    /* a criterion's own correlated criteria: its events, with their observation period, are
     * the index events of the nested group */
    sql = compile_text(DEF("{\"ConditionOccurrence\": {\"CodesetId\": 0, \"CorrelatedCriteria\": "
                           "{\"Type\": \"ALL\", \"CriteriaList\": [{\"Criteria\": {\"Death\": "
                           "{}}, \"StartWindow\": {\"Start\": {\"Days\": 0, \"Coeff\": 1}, "
                           "\"End\": {\"Days\": 30, \"Coeff\": 1}}, \"Occurrence\": {\"Type\": "
                           "2, \"Count\": 1}}]}}}",
                           ""),
                       9);
    assert_non_null(strstr(sql, "SELECT PE.person_id, PE.event_id, PE.start_date"));
    assert_non_null(
        strstr(sql, ") CC ON CC.person_id = PE.person_id AND CC.event_id = PE.event_id"));
    assert_non_null(strstr(sql, "A.start_date <= P.start_date + 30"));
    free(sql);

    /* era attributes: a length, a count, the age at the era's start */
    sql = compile_text(DEF("{\"DrugEra\": {\"CodesetId\": 0, \"EraLength\": {\"Value\": 90, "
                           "\"Op\": \"gte\"}, \"OccurrenceCount\": {\"Value\": 2, \"Op\": "
                           "\"gt\"}, \"AgeAtStart\": {\"Value\": 65, \"Op\": \"lt\"}}}",
                           ""),
                       10);
    assert_non_null(strstr(sql, "(C.drug_era_end_date - C.drug_era_start_date) >= 90"));
    assert_non_null(strstr(sql, "C.drug_exposure_count > 2"));
    assert_non_null(strstr(sql, "JOIN \"cdm\".person PE ON PE.person_id = C.person_id"));
    assert_non_null(
        strstr(sql, "(EXTRACT(YEAR FROM C.drug_era_start_date) - PE.year_of_birth) < 65"));
    free(sql);

    /* text filters as Circe writes them, the visit's type, the provider's specialty */
    sql = compile_text(DEF("{\"DrugExposure\": {\"CodesetId\": 0, \"StopReason\": {\"Text\": "
                           "\"side effect's\", \"Op\": \"!contains\"}, \"LotNumber\": "
                           "{\"Text\": \"AB\", \"Op\": \"startsWith\"}, \"VisitType\": "
                           "[{\"CONCEPT_ID\": 9201}], \"ProviderSpecialty\": [{\"CONCEPT_ID\": "
                           "38004456}]}}",
                           ""),
                       11);
    assert_non_null(strstr(sql, "C.stop_reason NOT LIKE '%side effect''s%'"));
    assert_non_null(strstr(sql, "C.lot_number LIKE 'AB%'"));
    assert_non_null(strstr(sql, "JOIN \"cdm\".visit_occurrence V ON V.visit_occurrence_id = "
                                "C.visit_occurrence_id"));
    assert_non_null(strstr(sql, "V.visit_concept_id IN (9201)"));
    assert_non_null(strstr(sql, "LEFT JOIN \"cdm\".provider PR ON PR.provider_id = C.provider_id"));
    assert_non_null(strstr(sql, "PR.specialty_concept_id IN (38004456)"));
    free(sql);

    /* ratio ranges, a visit's place of service */
    sql = compile_text(DEF("{\"Measurement\": {\"CodesetId\": 0, \"RangeHighRatio\": "
                           "{\"Value\": 2, \"Op\": \"gt\"}}}, {\"VisitOccurrence\": "
                           "{\"PlaceOfService\": [{\"CONCEPT_ID\": 8756}]}}",
                           ""),
                       12);
    assert_non_null(strstr(sql, "(C.value_as_number / NULLIF(C.range_high, 0)) > 2"));
    assert_non_null(strstr(sql, "JOIN \"cdm\".care_site CSI ON CSI.care_site_id = C.care_site_id"));
    assert_non_null(strstr(sql, "CSI.place_of_service_concept_id IN (8756)"));
    free(sql);

    /* CustomEra: drug eras with GapDays, moved by Offset */
    sql = compile_text(DEF("{\"DrugExposure\": {\"CodesetId\": 0}}",
                           ",\n  \"EndStrategy\": {\"CustomEra\": {\"DrugCodesetId\": 0, "
                           "\"GapDays\": 30, \"Offset\": 7}}"),
                       8);
    assert_non_null(strstr(sql, "D.end_date + 7 AS era_end"));
    assert_non_null(strstr(sql, "event_date - 30 AS end_date"));
    assert_non_null(strstr(sql, "de.drug_source_concept_id = cs.concept_id"));
    assert_non_null(strstr(sql, "SELECT event_id, person_id, end_date FROM strategy_ends"));
    free(sql);
}

static void test_refusals_are_located(void **state)
{
    (void)state;
    /* an unsupported criterion: the line and column of its value */
    cg_error_t e = refuse(DEF("{\"ConditionEra\": {\"CodesetId\": 0}},\n"
                              "      {\"PayerPlanPeriod\": {}}",
                              ""));
    assert_string_equal(e.file, "def.json");
    assert_int_equal(e.line, 7);
    assert_int_equal(e.column, 27);
    assert_non_null(strstr(e.text, "'PayerPlanPeriod' is not supported"));

    /* an unsupported attribute of a supported criterion */
    e = refuse(DEF("{\"ConditionOccurrence\": {\"CodesetId\": 0,\n"
                   "        \"DateAdjustment\": {\"StartWith\": \"START_DATE\"}}}",
                   ""));
    assert_int_equal(e.line, 7);
    assert_int_equal(e.column, 27);
    assert_non_null(strstr(e.text, "ConditionOccurrence: element 'DateAdjustment'"));

    /* an empty unsupported element says nothing and is accepted */
    free(compile_text(DEF("{\"ConditionOccurrence\": {\"CodesetId\": 0, \"PlaceOfService\": "
                          "[], \"DateAdjustment\": null}}",
                          ""),
                      1));

    /* unsupported strategies and settings */
    e = refuse(DEF("{\"DrugExposure\": {\"CodesetId\": 0}}",
                   ",\n  \"EndStrategy\": {\"CustomEra\": {\"GapDays\": 30}}"));
    assert_int_equal(e.line, 9);
    assert_non_null(strstr(e.text, "CustomEra: 'DrugCodesetId' is required"));
    e = refuse(DEF("{\"DrugExposure\": {\"CodesetId\": 0}}",
                   ",\n  \"EndStrategy\": {\"DateOffset\": {\"DateField\": \"StartDate\"}, "
                   "\"CustomEra\": {\"DrugCodesetId\": 0}}"));
    assert_non_null(strstr(e.text, "cannot both be given"));
    e = refuse(DEF("{\"DrugExposure\": {\"CodesetId\": 0}}",
                   ",\n  \"CollapseSettings\": {\"CollapseType\": \"COLLAPSE\"}"));
    assert_non_null(strstr(e.text, "CollapseType 'COLLAPSE' is not supported"));

    /* an observation period has no concept set */
    e = refuse(DEF("{\"ObservationPeriod\": {\"CodesetId\": 0}}", ""));
    assert_non_null(strstr(e.text, "ObservationPeriod: element 'CodesetId' is not supported"));

    /* a concept set that is not defined */
    e = refuse(DEF("{\"DrugExposure\": {\"CodesetId\": 3}}", ""));
    assert_non_null(strstr(e.text, "concept set 3, which ConceptSets does not define"));

    /* bad values */
    e = refuse(DEF("{\"DrugExposure\": {\"CodesetId\": 0, \"OccurrenceStartDate\": {\"Value\": "
                   "\"2020-13-01\", \"Op\": \"gt\"}}}",
                   ""));
    assert_non_null(strstr(e.text, "must be a date"));
    e = refuse(DEF("{\"DrugExposure\": {\"CodesetId\": 0, \"Age\": {\"Value\": 18, \"Op\": "
                   "\"about\"}}}",
                   ""));
    assert_non_null(strstr(e.text, "Op 'about'"));
    e = refuse(DEF("{\"DrugExposure\": {}}", ",\n  \"AdditionalCriteria\": {\"Type\": \"ALL\", "
                                             "\"CriteriaList\": [{\"Criteria\": {\"Death\": {}}, "
                                             "\"Occurrence\": {\"Type\": 7, \"Count\": 1}}]}"));
    assert_non_null(strstr(e.text, "Occurrence 'Type' must be 0"));

    /* integers are Circe's (32 bits); a whole real is an integer */
    e = refuse(DEF("{\"DrugExposure\": {}}", ",\n  \"AdditionalCriteria\": {\"Type\": \"ALL\", "
                                             "\"CriteriaList\": [{\"Criteria\": {\"Death\": {}}, "
                                             "\"StartWindow\": {\"Start\": {\"Days\": 1e300, "
                                             "\"Coeff\": -1}}, \"Occurrence\": {\"Type\": 2, "
                                             "\"Count\": 1}}]}"));
    assert_non_null(strstr(e.text, "'Days' must be an integer (32 bits)"));
    char *sql =
        compile_text(DEF("{\"DrugExposure\": {}}",
                         ",\n  \"AdditionalCriteria\": {\"Type\": \"ALL\", \"CriteriaList\": "
                         "[{\"Criteria\": {\"Death\": {}}, \"StartWindow\": {\"Start\": "
                         "{\"Days\": 30.0, \"Coeff\": -1}}, \"Occurrence\": {\"Type\": 2, "
                         "\"Count\": 1}}]}"),
                     1);
    assert_non_null(strstr(sql, "A.start_date >= P.start_date + -30"));
    free(sql);

    /* no primary criteria, and text that is not JSON */
    e = refuse("{\"ConceptSets\": [], \"PrimaryCriteria\": {\"CriteriaList\": []}}");
    assert_non_null(strstr(e.text, "needs at least one criterion"));
    e = refuse("{\"ConceptSets\": [,]}");
    assert_int_equal(e.line, 1);
    assert_true(e.column > 0);
}

static void test_shipped_definitions_load(void **state)
{
    (void)state;
    const char *defs[] = {CG_SOURCE_DIR "/specs/cohorts/circe/t2dm.json",
                          CG_SOURCE_DIR "/specs/cohorts/circe/ckd.json",
                          CG_SOURCE_DIR "/specs/cohorts/circe/t2dm-trial-precohort.json"};
    for (size_t i = 0; i < sizeof defs / sizeof defs[0]; i++) {
        cg_error_t errs[4];
        size_t n = 0;
        cg_circe_t *c = cg_circe_load(defs[i], errs, 4, &n);
        if (!c)
            fail_msg("%s:%d:%d: %s", errs[0].file, errs[0].line, errs[0].column, errs[0].text);
        cg_circe_summary_t s;
        cg_circe_summarize(c, &s);
        assert_true(s.concept_sets >= 1);
        assert_true(s.primary_criteria >= 1);
        const cg_circe_header_t *h = cg_circe_header(c);
        assert_int_equal(h->present, 1);
        assert_int_equal(h->id, (long long)i + 1);
        assert_string_equal(h->kind, i == 2 ? "precohort" : "disease");
        cg_circe_destroy(c);
    }
}

static void test_header(void **state)
{
    (void)state;
    static const char def[] =
        "{\"cohortgate\": {\"id\": 12, \"name\": \"t2dm-trial\", \"version\": 3, \"kind\": "
        "\"precohort\", \"draws_from\": \"t2dm\", \"sponsor\": \"Acme\"},\n"
        " \"expression\": {\"PrimaryCriteria\": {\"CriteriaList\": [{\"Death\": {}}]}}}";
    cg_error_t errs[4];
    size_t n = 0;
    cg_circe_t *c = cg_circe_load_string(def, "def.json", errs, 4, &n);
    assert_non_null(c);
    const cg_circe_header_t *h = cg_circe_header(c);
    assert_int_equal(h->present, 1);
    assert_int_equal(h->id, 12);
    assert_int_equal(h->version, 3);
    assert_string_equal(h->name, "t2dm-trial");
    assert_string_equal(h->kind, "precohort");
    assert_string_equal(h->draws_from, "t2dm");
    assert_string_equal(h->sponsor, "Acme");
    assert_null(cg_circe_description(c));
    char *syntax = cg_circe_expression_json(c);
    assert_string_equal(syntax, "{\"PrimaryCriteria\":{\"CriteriaList\":[{\"Death\":{}}]}}");
    free(syntax);
    cg_circe_destroy(c);

    /* a bare expression has no header */
    c = cg_circe_load_string("{\"PrimaryCriteria\": {\"CriteriaList\": [{\"Death\": {}}]}}",
                             "bare.json", errs, 4, &n);
    assert_non_null(c);
    assert_int_equal(cg_circe_header(c)->present, 0);
    cg_circe_destroy(c);

    /* refusals, located */
    cg_error_t e = refuse("{\"cohortgate\": {\"id\": 1, \"name\": \"x\", \"version\": 1, "
                          "\"kind\": \"trial\"},\n \"expression\": {\"PrimaryCriteria\": "
                          "{\"CriteriaList\": [{\"Death\": {}}]}}}");
    assert_int_equal(e.line, 1);
    assert_int_equal(e.column, 61);
    assert_non_null(strstr(e.text, "'kind' is \"disease\" or \"precohort\""));
    e = refuse("{\"cohortgate\": {\"id\": 1, \"name\": \"x\", \"version\": 1, \"kind\": "
               "\"precohort\"},\n \"expression\": {\"PrimaryCriteria\": {\"CriteriaList\": "
               "[{\"Death\": {}}]}}}");
    assert_non_null(strstr(e.text, "a precohort needs 'draws_from'"));
    e = refuse("{\"cohortgate\": {\"id\": 1, \"name\": \"X Y\", \"version\": 1, \"kind\": "
               "\"disease\"},\n \"expression\": {\"PrimaryCriteria\": {\"CriteriaList\": "
               "[{\"Death\": {}}]}}}");
    assert_non_null(strstr(e.text, "'name' takes lower-case letters"));
    /* an error in the expression under a header is located in the file */
    e = refuse("{\"cohortgate\": {\"id\": 1, \"name\": \"x\", \"version\": 1, \"kind\": "
               "\"disease\"},\n \"expression\": {\"PrimaryCriteria\": {\"CriteriaList\": "
               "[{\"VisitDetail\": {}}]}}}");
    assert_int_equal(e.line, 2);
    assert_non_null(strstr(e.text, "'VisitDetail' is not supported"));
}

/* Small-cell suppression: below k is "<k", never the count. */
static void test_count_suppression(void **state)
{
    (void)state;
    char b[32];
    assert_string_equal(cg_circe_count_format(0, CG_CIRCE_SUPPRESS_K, b, sizeof b), "<10");
    assert_string_equal(cg_circe_count_format(9, CG_CIRCE_SUPPRESS_K, b, sizeof b), "<10");
    assert_string_equal(cg_circe_count_format(10, CG_CIRCE_SUPPRESS_K, b, sizeof b), "10");
    assert_string_equal(cg_circe_count_format(12345, 10, b, sizeof b), "12345");
    assert_string_equal(cg_circe_count_format(4, 5, b, sizeof b), "<5");
    assert_string_equal(cg_circe_count_format(5, 5, b, sizeof b), "5");
    assert_string_equal(cg_circe_count_format(1, 1, b, sizeof b), "1");
    assert_string_equal(cg_circe_count_format(0, 0, b, sizeof b), "<1"); /* k < 1 counts as 1 */
    assert_true(cg_circe_count_suppressed(9, 10));
    assert_false(cg_circe_count_suppressed(10, 10));

    /* a header's description */
    cg_error_t errs[4];
    size_t n = 0;
    cg_circe_t *c = cg_circe_load_string(
        "{\"cohortgate\": {\"id\": 2, \"name\": \"ckd\", \"version\": 1, \"kind\": \"disease\", "
        "\"description\": \"eGFR below 60\"}, \"expression\": {\"PrimaryCriteria\": "
        "{\"CriteriaList\": [{\"Death\": {}}]}}}",
        "d.json", errs, 4, &n);
    assert_non_null(c);
    assert_string_equal(cg_circe_description(c), "eGFR below 60");
    cg_circe_destroy(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_compiles_the_steps),
        cmocka_unit_test(test_groups_and_windows),
        cmocka_unit_test(test_refusals_are_located),
        cmocka_unit_test(test_shipped_definitions_load),
        cmocka_unit_test(test_header),
        cmocka_unit_test(test_count_suppression),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
