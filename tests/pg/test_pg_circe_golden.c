/* test_pg_circe_golden.c - cohortgate's Circe compiler on a small OMOP database whose cohort
 * memberships were computed by hand (golden definitions), and `cohortgate cohort run` / `count`
 * against a real PostgreSQL (label pg). circe-be's own conformance cases are test_pg_circe.c.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <libpq-fe.h>

#include "circe_db.h"
#include "cg_buf.h"
#include "cg_circe.h"
#include "cg_omop.h"

#ifndef CG_CIRCE_CONFORMANCE
#define CG_CIRCE_CONFORMANCE "../shared/cohorts/circe-conformance"
#endif

/* ---- golden definitions: a small OMOP database with hand-computed memberships ---- */

/* Vocabulary: 10 "diabetes" with children 11 and 12, 40 a source concept that maps to 11;
 * 20 HbA1c; 30 an insulin class with drug 31; 50 eGFR; 60 a censoring observation; 201826
 * and 3004410 for the shipped T2DM definition. Persons (observed 2010-2020): 1 woman born
 * 1960 (diabetes 11, HbA1c 8.0 and 9.0 at visits 100 and 101), 2 man born 1990 (only the
 * excluded 12; HbA1c 8.0 outside any visit), 3 (the mapped source concept 40), 4 (eGFR below
 * 60 twice 120 days apart; insulin three times; the censoring observation), 5 (eGFR below 60
 * twice 45 days apart), 6 (died 2018-05-05), 7 (the shipped definition's concepts). */
static const char golden_rows[] =
    "{\"cdm.concept_ancestor\": ["
    "  {\"ancestor_concept_id\": 10, \"descendant_concept_id\": 11, \"min_levels_of_separation\": "
    "1, \"max_levels_of_separation\": 1},"
    "  {\"ancestor_concept_id\": 10, \"descendant_concept_id\": 12, \"min_levels_of_separation\": "
    "1, \"max_levels_of_separation\": 1},"
    "  {\"ancestor_concept_id\": 30, \"descendant_concept_id\": 31, \"min_levels_of_separation\": "
    "1, \"max_levels_of_separation\": 1}],"
    " \"cdm.concept_relationship\": [{\"concept_id_1\": 40, \"concept_id_2\": 11, "
    "\"relationship_id\": \"Maps to\", \"valid_start_date\": \"1970-01-01\", \"valid_end_date\": "
    "\"2099-12-31\"}],"
    " \"cdm.person\": ["
    "  {\"person_id\": 1, \"gender_concept_id\": 8532, \"year_of_birth\": 1960, "
    "\"race_concept_id\": 0, \"ethnicity_concept_id\": 0},"
    "  {\"person_id\": 2, \"gender_concept_id\": 8507, \"year_of_birth\": 1990, "
    "\"race_concept_id\": 0, \"ethnicity_concept_id\": 0},"
    "  {\"person_id\": 3, \"gender_concept_id\": 8532, \"year_of_birth\": 1950, "
    "\"race_concept_id\": 0, \"ethnicity_concept_id\": 0},"
    "  {\"person_id\": 4, \"gender_concept_id\": 8507, \"year_of_birth\": 1950, "
    "\"race_concept_id\": 0, \"ethnicity_concept_id\": 0},"
    "  {\"person_id\": 5, \"gender_concept_id\": 8507, \"year_of_birth\": 1950, "
    "\"race_concept_id\": 0, \"ethnicity_concept_id\": 0},"
    "  {\"person_id\": 6, \"gender_concept_id\": 8507, \"year_of_birth\": 1940, "
    "\"race_concept_id\": 0, \"ethnicity_concept_id\": 0},"
    "  {\"person_id\": 7, \"gender_concept_id\": 8532, \"year_of_birth\": 1970, "
    "\"race_concept_id\": 0, \"ethnicity_concept_id\": 0}],"
    " \"cdm.observation_period\": ["
#define OP(n)                                                                                      \
    "{\"observation_period_id\": " #n ", \"person_id\": " #n ", "                                  \
    "\"observation_period_start_date\": \"2010-01-01\", \"observation_period_end_date\": "         \
    "\"2020-12-31\", \"period_type_concept_id\": 0}"
    OP(1) "," OP(2) "," OP(3) "," OP(4) "," OP(5) "," OP(6) "," OP(
        7) "],"
#define COND(id, p, c, d)                                                                          \
    "{\"condition_occurrence_id\": " #id ", \"person_id\": " #p ", \"condition_concept_id\": " #c  \
    ", \"condition_start_date\": \"" d "\", \"condition_type_concept_id\": 0}"
           " \"cdm.condition_occurrence\": [" COND(1, 1, 11, "2015-03-01") "," COND(2, 2, 12, "2016-01-01") "," COND(3, 3, 40, "2017-01-01") "," COND(
               4, 7, 201826,
               "2019-01-01") "],"
#define MEAS(id, p, c, d, v, visit)                                                                \
    "{\"measurement_id\": " #id ", \"person_id\": " #p ", \"measurement_concept_id\": " #c         \
    ", \"measurement_date\": \"" d                                                                 \
    "\", \"measurement_type_concept_id\": 0, \"value_as_number\": " #v                             \
    ", \"visit_occurrence_id\": " #visit "}"
                             " \"cdm.measurement\": [" MEAS(1, 1, 20, "2015-06-01", 8.0, 100) "," MEAS(
                                 2, 1, 20, "2016-01-01", 9.0,
                                 101) "," MEAS(3, 2, 20, "2016-02-01", 8.0,
                                               null) "," MEAS(4, 4, 50, "2015-01-01", 55,
                                                              null) "," MEAS(5, 4, 50, "2015-02-01",
                                                                             58,
                                                                             null) "," MEAS(6, 4,
                                                                                            50, "2015-05-01", 50, null) "," MEAS(7,
                                                                                                                                 5,
                                                                                                                                 50, "2015-01-01", 55, null) "," MEAS(8, 5, 50, "2015-02-15", 50, null) "],"
#define VISIT(id, p, d)                                                                            \
    "{\"visit_occurrence_id\": " #id ", \"person_id\": " #p ", \"visit_concept_id\": 9201, "       \
    "\"visit_start_date\": \"" d "\", \"visit_end_date\": \"" d                                    \
    "\", \"visit_type_concept_id\": 0}"
                                                                                                                                                                                                        " \"cdm.visit_occurrence\": [" VISIT(100, 1, "2015-06-01") "," VISIT(101,
                                                                                                                                                                                                                                                                             1,
                                                                                                                                                                                                                                                                             "2016-01-01") "," VISIT(200,
                                                                                                                                                                                                                                                                                                     2, "2016-02-01") "],"
#define DRUG(id, p, s, e)                                                                          \
    "{\"drug_exposure_id\": " #id ", \"person_id\": " #p ", \"drug_concept_id\": 31, "             \
    "\"drug_exposure_start_date\": \"" s "\", \"drug_exposure_end_date\": \"" e "\", "             \
    "\"drug_type_concept_id\": 0}"
                                                                                                                                                                                                                                                                                                                      " \"cdm.drug_exposure\": [" DRUG(1,
                                                                                                                                                                                                                                                                                                                                                       4,
                                                                                                                                                                                                                                                                                                                                                       "2015-01-01",
                                                                                                                                                                                                                                                                                                                                                       "2015-01-10") "," DRUG(2, 4, "2015-01-20", "2015-01-30") "," DRUG(3, 4, "2015-03-01", "2015-03-05") "],"
                                                                                                                                                                                                                                                                                                                                                                                                                                                           " \"cdm.observation\": [{\"observation_id\": 1, \"person_id\": 4, \"observation_concept_id\": "
                                                                                                                                                                                                                                                                                                                                                                                                                                                           "60, \"observation_date\": \"2015-03-03\", \"observation_type_concept_id\": 0}],"
                                                                                                                                                                                                                                                                                                                                                                                                                                                           " \"cdm.death\": [{\"person_id\": 6, \"death_date\": \"2018-05-05\", \"death_type_concept_id\": "
                                                                                                                                                                                                                                                                                                                                                                                                                                                           "0}]}";

#define CS(id, items)                                                                              \
    "{\"id\": " #id ", \"name\": \"s" #id "\", \"expression\": {\"items\": [" items "]}}"
#define ITEM(c, flags) "{\"concept\": {\"CONCEPT_ID\": " #c "}" flags "}"
#define WIN(s, e)      "{\"Start\": " s ", \"End\": " e ", \"UseEventEnd\": false}"

typedef struct golden {
    const char *what;
    const char *expr;
    const char *expected; /* "subject|start|end" lines */
} golden_t;

static const golden_t goldens[] = {
    {"concept set: descendants, an excluded child, a mapped source concept; First",
     "{\"ConceptSets\": [" CS(
         0,
         ITEM(
             10,
             ", \"includeDescendants\": true, \"includeMapped\": "
             "true") "," ITEM(12,
                              ", \"isExcluded\": true")) "],"
                                                         " \"PrimaryCriteria\": {\"CriteriaList\": "
                                                         "[{\"ConditionOccurrence\": "
                                                         "{\"CodesetId\": 0, "
                                                         "\"First\": true}}]}}",
     "1|2015-03-01|2020-12-31\n3|2017-01-01|2020-12-31\n"},
    {"Measurement ValueAsNumber, Age, Gender; ExpressionLimit Last; DateOffset StartDate",
     "{\"ConceptSets\": [" CS(
         0,
         ITEM(20,
              "")) "],"
                   " \"PrimaryCriteria\": {\"CriteriaList\": [{\"Measurement\": {\"CodesetId\": 0, "
                   "\"ValueAsNumber\": {\"Value\": 7, \"Op\": \"gte\"}, \"Age\": {\"Value\": 18, "
                   "\"Extent\": 75, "
                   "\"Op\": \"bt\"}, \"Gender\": [{\"CONCEPT_ID\": 8532}]}}]},"
                   " \"ExpressionLimit\": {\"Type\": \"Last\"},"
                   " \"EndStrategy\": {\"DateOffset\": {\"DateField\": \"StartDate\", \"Offset\": "
                   "30}}}",
     "1|2016-01-01|2016-01-31\n"},
    {"DrugExposure by a class's descendants; DateOffset EndDate; EraPad 10; CensoringCriteria",
     "{\"ConceptSets\": [" CS(0, ITEM(30, ", \"includeDescendants\": true")) "," CS(
         1,
         ITEM(
             60,
             "")) "],"
                  " \"PrimaryCriteria\": {\"CriteriaList\": [{\"DrugExposure\": {\"CodesetId\": "
                  "0}}]},"
                  " \"EndStrategy\": {\"DateOffset\": {\"DateField\": \"EndDate\", \"Offset\": 0}},"
                  " \"CensoringCriteria\": [{\"Observation\": {\"CodesetId\": 1}}],"
                  " \"CollapseSettings\": {\"CollapseType\": \"ERA\", \"EraPad\": 10}}",
     "4|2015-01-01|2015-01-30\n4|2015-03-01|2015-03-03\n"},
    {"AdditionalCriteria: a second value at least 90 days before; QualifiedLimit First",
     "{\"ConceptSets\": [" CS(
         0,
         ITEM(50,
              "")) "],"
                   " \"PrimaryCriteria\": {\"CriteriaList\": [{\"Measurement\": {\"CodesetId\": 0, "
                   "\"ValueAsNumber\": {\"Value\": 60, \"Op\": \"lt\"}}}]},"
                   " \"AdditionalCriteria\": {\"Type\": \"ALL\", \"CriteriaList\": [{\"Criteria\": "
                   "{\"Measurement\": {\"CodesetId\": 0, \"ValueAsNumber\": {\"Value\": 60, "
                   "\"Op\": \"lt\"}}}, "
                   "\"StartWindow\": " WIN(
                       "{\"Coeff\": -1}",
                       "{\"Days\": 90, \"Coeff\": -1}") ", "
                                                        "\"Occurrence\": {\"Type\": 2, \"Count\": "
                                                        "1}}]},"
                                                        " \"QualifiedLimit\": {\"Type\": "
                                                        "\"First\"}}",
     "4|2015-05-01|2020-12-31\n"},
    {"inclusion rules: RestrictVisit, IsDistinct START_DATE, a demographic criterion",
     "{\"ConceptSets\": [" CS(
         0,
         ITEM(20,
              "")) "],"
                   " \"PrimaryCriteria\": {\"CriteriaList\": [{\"VisitOccurrence\": {}}]},"
                   " \"InclusionRules\": ["
                   "  {\"name\": \"HbA1c at this visit\", \"expression\": {\"Type\": \"ANY\", "
                   "\"CriteriaList\": "
                   "[{\"Criteria\": {\"Measurement\": {\"CodesetId\": 0}}, \"StartWindow\": " WIN(
                       "{\"Coeff\": -1}",
                       "{\"Coeff\": 1}") ", \"RestrictVisit\": true, \"Occurrence\": "
                                         "{\"Type\": 2, \"Count\": 1}}]}},"
                                         "  {\"name\": \"two HbA1c dates so far\", \"expression\": "
                                         "{\"Type\": \"ALL\", "
                                         "\"CriteriaList\": [{\"Criteria\": {\"Measurement\": "
                                         "{\"CodesetId\": 0}}, \"StartWindow\": " WIN(
                                             "{\"Coeff\": -1}",
                                             "{\"Days\": 0, \"Coeff\": 1}") ", \"Occurrence\": "
                                                                            "{\"Type\": 2, "
                                                                            "\"Count\": 2, "
                                                                            "\"IsDistinct\": true, "
                                                                            "\"CountColumn\": "
                                                                            "\"START_DATE\"}}]}},"
                                                                            "  {\"name\": "
                                                                            "\"women\", "
                                                                            "\"expression\": "
                                                                            "{\"Type\": \"ALL\", "
                                                                            "\"DemographicCriteriaL"
                                                                            "ist\": "
                                                                            "[{\"Gender\": "
                                                                            "[{\"CONCEPT_ID\": "
                                                                            "8532}]}]}}]}",
     "1|2016-01-01|2020-12-31\n"},
    {"a criterion with its own CorrelatedCriteria: a diagnosis with an HbA1c within a year",
     "{\"ConceptSets\": [" CS(
         0,
         ITEM(10,
              ", \"includeDescendants\": true, \"includeMapped\": "
              "true")) "," CS(1,
                              ITEM(
                                  20,
                                  "")) "],"
                                       " \"PrimaryCriteria\": {\"CriteriaList\": "
                                       "[{\"ConditionOccurrence\": {\"CodesetId\": 0, "
                                       "\"CorrelatedCriteria\": {\"Type\": \"ALL\", "
                                       "\"CriteriaList\": [{\"Criteria\": "
                                       "{\"Measurement\": {\"CodesetId\": 1}}, "
                                       "\"StartWindow\": " WIN(
                                           "{\"Days\": 0, \"Coeff\": 1}",
                                           "{\"Days\": 365, \"Coeff\": 1}") ", "
                                                                            "\"Occurrence\": "
                                                                            "{\"Type\": 2, "
                                                                            "\"Count\": 1}}]}}}]}}",
     "1|2015-03-01|2020-12-31\n2|2016-01-01|2020-12-31\n"},
    {"VisitOccurrence VisitLength and Gender",
     "{\"ConceptSets\": [], \"PrimaryCriteria\": {\"CriteriaList\": [{\"VisitOccurrence\": "
     "{\"VisitLength\": {\"Value\": 0, \"Op\": \"eq\"}, \"Gender\": [{\"CONCEPT_ID\": "
     "8507}]}}]}}",
     "2|2016-02-01|2020-12-31\n"},
    {"Measurement VisitType: only the results recorded at an outpatient visit",
     "{\"ConceptSets\": [" CS(0, ITEM(20, "")) "], \"PrimaryCriteria\": {\"CriteriaList\": "
                                               "[{\"Measurement\": {\"CodesetId\": 0, "
                                               "\"VisitType\": [{\"CONCEPT_ID\": 9201}]}}]}}",
     "1|2015-06-01|2020-12-31\n"},
    {"ObservationPeriod: AgeAtStart, a user-defined period inside it, DateOffset EndDate",
     "{\"ConceptSets\": [], \"PrimaryCriteria\": {\"CriteriaList\": [{\"ObservationPeriod\": "
     "{\"First\": true, \"AgeAtStart\": {\"Value\": 60, \"Op\": \"lt\"}, "
     "\"UserDefinedPeriod\": {\"StartDate\": \"2012-01-01\", \"EndDate\": \"2012-12-31\"}}}]},"
     " \"EndStrategy\": {\"DateOffset\": {\"DateField\": \"EndDate\", \"Offset\": 0}}}",
     "1|2012-01-01|2012-12-31\n2|2012-01-01|2012-12-31\n7|2012-01-01|2012-12-31\n"},
    {"Death; AT_MOST 0 of a criterion no one has",
     "{\"ConceptSets\": [" CS(
         0,
         ITEM(30, ", \"includeDescendants\": true")) "],"
                                                     " \"PrimaryCriteria\": {\"CriteriaList\": "
                                                     "[{\"Death\": {}}]},"
                                                     " \"AdditionalCriteria\": {\"Type\": "
                                                     "\"AT_MOST\", \"Count\": 0, \"CriteriaList\": "
                                                     "[{\"Criteria\": {\"DrugExposure\": "
                                                     "{\"CodesetId\": 0}}, \"StartWindow\": " WIN(
                                                         "{\"Coeff\": -1}",
                                                         "{\"Coeff\": 1}") ", \"Occurrence\": "
                                                                           "{\"Type\": 2, "
                                                                           "\"Count\": 1}}]}}",
     "6|2018-05-05|2020-12-31\n"},
};

/* Runs a shell command (cohortgate's path is the first %s), its stdout and stderr in *out;
 * returns its exit status. */
static int sh(cg_buf_t *out, const char *fmt, ...)
{
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    strncat(cmd, " 2>&1", sizeof cmd - strlen(cmd) - 1);
    cg_buf_init(out);
    cg_buf_putc(out, '\0');
    out->len = 0;
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    char line[1024];
    while (fgets(line, sizeof line, p))
        cg_buf_puts(out, line);
    int st = pclose(p);
    printf("$ %s\n%s", cmd, out->data);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* A fresh schema holding the golden rows. */
static void golden_schema(const char *schema)
{
    ct_make_schema(schema);
    json_error_t je;
    json_t *rows = json_loads(golden_rows, 0, &je);
    if (!rows)
        fail_msg("golden rows: %d:%d: %s", je.line, je.column, je.text);
    ct_load_rows(schema, rows, "golden rows");
    json_decref(rows);
}

static void test_circe_golden(void **state)
{
    (void)state;
    char schema[64];
    snprintf(schema, sizeof schema, "cg_circe_%d_golden", (int)getpid());
    golden_schema(schema);
    int failed = 0;
    for (size_t i = 0; i < sizeof goldens / sizeof goldens[0]; i++) {
        long long id = 100 + (long long)i;
        cg_error_t errs[4];
        size_t n = 0;
        cg_circe_t *c = cg_circe_load_string(goldens[i].expr, goldens[i].what, errs, 4, &n);
        if (!c)
            fail_msg("%s: %d:%d: %s", goldens[i].what, errs[0].line, errs[0].column, errs[0].text);
        cg_buf_t sql;
        cg_buf_init(&sql);
        cg_circe_sql_options_t o = {schema, NULL, id, NULL, NULL, NULL};
        assert_int_equal(cg_circe_compile(c, &o, &sql), CG_OK);
        ct_exec_ok(sql.data);
        /* run twice: a recomputation replaces the definition's rows, it does not add to them */
        ct_exec_ok(sql.data);
        cg_buf_free(&sql);
        cg_circe_destroy(c);
        char q[256];
        snprintf(q, sizeof q,
                 "SELECT subject_id, cohort_start_date, cohort_end_date FROM \"%s\".cohort WHERE "
                 "cohort_definition_id = %lld ORDER BY 1, 2",
                 schema, id);
        PGresult *r = PQexec(ct_db, q);
        assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
        cg_buf_t got;
        cg_buf_init(&got);
        cg_buf_putc(&got, '\0');
        got.len = 0;
        for (int k = 0; k < PQntuples(r); k++)
            cg_buf_printf(&got, "%s|%s|%s\n", PQgetvalue(r, k, 0), PQgetvalue(r, k, 1),
                          PQgetvalue(r, k, 2));
        PQclear(r);
        if (strcmp(got.data, goldens[i].expected)) {
            printf("  golden %s: FAIL\n--- expected\n%s--- got\n%s", goldens[i].what,
                   goldens[i].expected, got.data);
            failed++;
        } else
            printf("  golden %s: ok\n", goldens[i].what);
        cg_buf_free(&got);
    }
    assert_int_equal(failed, 0);

    /* the command line on a shipped definition: person 7's T2DM diagnosis */
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "'%s' cohort run -c \"$COHORTGATE_TEST_PG\" --schema %s 7=%s/specs/cohorts/circe/"
             "t2dm.json",
             CG_COHORTGATE_BIN, schema, CG_SOURCE_DIR);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    char line[512] = "";
    if (!fgets(line, sizeof line, p))
        line[0] = '\0';
    assert_int_equal(pclose(p), 0);
    assert_non_null(strstr(line, "cohort_definition_id 7: 1 rows, 1 persons"));
    char q[256];
    snprintf(q, sizeof q,
             "SELECT subject_id, cohort_start_date, cohort_end_date FROM \"%s\".cohort WHERE "
             "cohort_definition_id = 7",
             schema);
    PGresult *r = PQexec(ct_db, q);
    assert_int_equal(PQntuples(r), 1);
    assert_string_equal(PQgetvalue(r, 0, 0), "7");
    assert_string_equal(PQgetvalue(r, 0, 1), "2019-01-01");
    assert_string_equal(PQgetvalue(r, 0, 2), "2020-12-31");
    PQclear(r);
    /* the other definitions' rows are still there */
    snprintf(q, sizeof q, "SELECT count(*) FROM \"%s\".cohort WHERE cohort_definition_id >= 100",
             schema);
    r = PQexec(ct_db, q);
    assert_string_equal(PQgetvalue(r, 0, 0), "15");
    PQclear(r);

    /* why a person is in or out: person 1 passes every step, person 2's only visit has no
     * HbA1c recorded at it, so the first inclusion rule loses the event */
    char tmp[] = "/tmp/cg_circe_explainXXXXXX";
    int fd = mkstemp(tmp);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fputs(goldens[4].expr, f);
    fclose(f);
    for (int who = 1; who <= 2; who++) {
        cg_buf_t out;
        assert_int_equal(sh(&out,
                            "'%s' cohort explain -c \"$COHORTGATE_TEST_PG\" --schema %s "
                            "--person %d %s",
                            CG_COHORTGATE_BIN, schema, who, tmp),
                         0);
        if (who == 1) {
            assert_non_null(strstr(out.data, "IN: the person is a member"));
            assert_non_null(strstr(out.data, "2016-01-01 to 2020-12-31"));
        } else {
            assert_non_null(strstr(out.data, "OUT: no event is left after: inclusion rule 1 "
                                             "\"HbA1c at this visit\""));
        }
        cg_buf_free(&out);
    }
    unlink(tmp);

    /* a refused definition: nothing runs, the error names the element */
    if (access(CG_CIRCE_CONFORMANCE "/allCriteria/allCriteriaExpression.json", R_OK) == 0) {
        cg_buf_t all;
        assert_int_not_equal(sh(&all,
                                "'%s' cohort run -c \"$COHORTGATE_TEST_PG\" --schema %s "
                                "%s/allCriteria/allCriteriaExpression.json",
                                CG_COHORTGATE_BIN, schema, CG_CIRCE_CONFORMANCE),
                             0);
        assert_non_null(all.data);
        assert_non_null(strstr(all.data, "allCriteriaExpression.json:932:38: error: inclusion "
                                         "rule 7, correlated criterion 1 DrugExposure: element "
                                         "'EffectiveDrugDose' is not supported"));
        assert_null(strstr(all.data, "cohort_definition_id"));
        cg_buf_free(&all);
    }
    snprintf(q, sizeof q, "SET client_min_messages = warning; DROP SCHEMA \"%s\" CASCADE", schema);
    ct_exec_ok(q);
}

static char *query1(const char *sql)
{
    PGresult *r = PQexec(ct_db, sql);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1)
        fail_msg("PostgreSQL: %s\nin: %.300s", PQerrorMessage(ct_db), sql);
    char *v = strdup(PQgetvalue(r, 0, 0));
    PQclear(r);
    return v;
}

/* `cohort run` keeps the definition's row in cohort_definition (one row however often it runs,
 * rolled back with the cohort rows); `cohort count` shows members per definition, a count below
 * k only as "<k". */
static void test_circe_definition_and_count(void **state)
{
    (void)state;
    char schema[64], q[1024];
    snprintf(schema, sizeof schema, "cg_circe_%d_count", (int)getpid());
    golden_schema(schema);
    const char *bin = CG_COHORTGATE_BIN, *src = CG_SOURCE_DIR;
    cg_buf_t out;

    /* run twice: one cohort_definition row, updated, not duplicated */
    for (int round = 0; round < 2; round++) {
        if (round) {
            snprintf(q, sizeof q,
                     "UPDATE \"%s\".cohort_definition SET cohort_definition_name = 'stale', "
                     "cohort_initiation_date = '2001-01-01'",
                     schema);
            ct_exec_ok(q);
        }
        assert_int_equal(sh(&out,
                            "'%s' cohort run -c \"$COHORTGATE_TEST_PG\" --schema %s "
                            "7=%s/specs/cohorts/circe/t2dm.json",
                            bin, schema, src),
                         0);
        cg_buf_free(&out);
        snprintf(q, sizeof q,
                 "SELECT count(*) || '|' || min(cohort_definition_name) || '|' || "
                 "min(definition_type_concept_id) || '|' || min(subject_concept_id) || '|' || "
                 "(min(cohort_initiation_date) = CURRENT_DATE) || '|' || "
                 "min(left(cohort_definition_description, 24)) || '|' || "
                 "min(left(cohort_definition_syntax, 16)) FROM \"%s\".cohort_definition WHERE "
                 "cohort_definition_id = 7",
                 schema);
        char *v = query1(q);
        assert_string_equal(v, "1|t2dm|0|0|true|Type 2 diabetes mellitus|{\"ConceptSets\":[");
        free(v);
    }
    /* the syntax is the Circe expression, which loads again as a bare one */
    snprintf(q, sizeof q,
             "SELECT cohort_definition_syntax FROM \"%s\".cohort_definition WHERE "
             "cohort_definition_id = 7",
             schema);
    char *syntax = query1(q);
    cg_error_t errs[4];
    size_t n = 0;
    cg_circe_t *c = cg_circe_load_string(syntax, "syntax", errs, 4, &n);
    assert_non_null(c);
    assert_int_equal(cg_circe_header(c)->present, 0);
    cg_circe_destroy(c);
    free(syntax);

    /* a run that fails leaves no cohort_definition row: one transaction with the cohort rows */
    snprintf(q, sizeof q,
             "SET client_min_messages = warning; DROP SCHEMA IF EXISTS \"%s_res\" CASCADE; "
             "CREATE SCHEMA \"%s_res\"; CREATE TABLE \"%s_res\".cohort_definition AS SELECT * "
             "FROM \"%s\".cohort_definition WHERE false",
             schema, schema, schema, schema);
    ct_exec_ok(q);
    assert_int_equal(sh(&out,
                        "'%s' cohort run -c \"$COHORTGATE_TEST_PG\" --schema %s "
                        "--results-schema %s_res 7=%s/specs/cohorts/circe/t2dm.json",
                        bin, schema, schema, src),
                     1);
    assert_non_null(strstr(out.data, "PostgreSQL"));
    cg_buf_free(&out);
    snprintf(q, sizeof q, "SELECT count(*) FROM \"%s_res\".cohort_definition", schema);
    char *v = query1(q);
    assert_string_equal(v, "0");
    free(v);

    /* counts: 12 distinct persons in 50 (person 1 twice), 3 in 51, 1 in 7 (the run above) */
    snprintf(q, sizeof q,
             "INSERT INTO \"%s\".cohort SELECT 50, g, '2020-01-01', '2020-02-01' FROM "
             "generate_series(1, 12) g; INSERT INTO \"%s\".cohort VALUES (50, 1, '2021-01-01', "
             "'2021-02-01'); INSERT INTO \"%s\".cohort SELECT 51, g, '2020-01-01', "
             "'2020-02-01' FROM generate_series(1, 3) g",
             schema, schema, schema);
    ct_exec_ok(q);
    assert_int_equal(
        sh(&out, "'%s' cohort count -c \"$COHORTGATE_TEST_PG\" --schema %s --all", bin, schema), 0);
    assert_non_null(strstr(out.data, "\n7                     t2dm"));
    assert_non_null(strstr(out.data, "\n50  "));
    assert_non_null(strstr(out.data, "  12\n"));
    assert_non_null(strstr(out.data, "\n51  "));
    assert_null(strstr(out.data, "   3\n"));
    assert_null(strstr(out.data, "   1\n"));
    assert_non_null(strstr(out.data, "<10\n"));
    assert_non_null(strstr(out.data, "a count below 10 is shown as \"<10\""));
    cg_buf_free(&out);
    /* k configurable; a definition file, an id, JSON */
    assert_int_equal(sh(&out,
                        "'%s' cohort count -c \"$COHORTGATE_TEST_PG\" --schema %s --k 3 --json "
                        "51 7=%s/specs/cohorts/circe/t2dm.json 50 99",
                        bin, schema, src),
                     0);
    assert_string_equal(out.data,
                        "{\"k\":3,\"cohorts\":[{\"cohort_definition_id\":51,\"name\":\"\","
                        "\"members\":3,\"suppressed\":false},{\"cohort_definition_id\":7,"
                        "\"name\":\"t2dm\",\"members\":\"<3\",\"suppressed\":true},"
                        "{\"cohort_definition_id\":50,\"name\":\"\",\"members\":12,"
                        "\"suppressed\":false},{\"cohort_definition_id\":99,\"name\":\"\","
                        "\"members\":\"<3\",\"suppressed\":true}]}\n");
    cg_buf_free(&out);
    assert_int_equal(
        sh(&out, "'%s' cohort count -c \"$COHORTGATE_TEST_PG\" --schema %s --k 4 51", bin, schema),
        0);
    assert_non_null(strstr(out.data, "<4\n"));
    cg_buf_free(&out);
    /* for a subscriber: its small_cell is k, a lower --k is refused, an expired agreement gets
     * nothing */
    char cfgpath[] = "/tmp/cg-count-XXXXXX";
    int fd = mkstemp(cfgpath);
    assert_true(fd >= 0);
    FILE *cf = fdopen(fd, "w");
    fprintf(cf,
            "{\"inputs\": [{\"topic\": \"raw\"}], \"mapping\": {\"specs\": \"%s/specs\"},\n"
            " \"kafka\": {\"bootstrap.servers\": \"127.0.0.1:9\"},\n"
            " \"release\": {\"subscribers\": [\n"
            "  {\"name\": \"sponsor\", \"topic\": \"rel.s\", \"agreement\": \"D1\", "
            "\"expires\": \"2999-01-01\", \"max_level\": 3, \"small_cell\": 20},\n"
            "  {\"name\": \"old\", \"topic\": \"rel.o\", \"agreement\": \"D0\", "
            "\"expires\": \"2020-01-01\", \"max_level\": 3}]}}\n",
            src);
    fclose(cf);
    assert_int_equal(sh(&out,
                        "'%s' cohort count -c \"$COHORTGATE_TEST_PG\" --schema %s --for sponsor "
                        "--config %s 50",
                        bin, schema, cfgpath),
                     0);
    assert_non_null(strstr(out.data, "<20\n")); /* 12 members, below the sponsor's 20 */
    cg_buf_free(&out);
    assert_int_equal(sh(&out,
                        "'%s' cohort count -c \"$COHORTGATE_TEST_PG\" --schema %s --for sponsor "
                        "--config %s --k 5 50 2>&1",
                        bin, schema, cfgpath),
                     2);
    assert_non_null(strstr(out.data, "below subscriber 'sponsor''s small_cell 20"));
    cg_buf_free(&out);
    assert_int_equal(sh(&out,
                        "'%s' cohort count -c \"$COHORTGATE_TEST_PG\" --schema %s --for old "
                        "--config %s 50 2>&1",
                        bin, schema, cfgpath),
                     1);
    assert_non_null(strstr(out.data, "agreement D0 expired on 2020-01-01"));
    cg_buf_free(&out);
    unlink(cfgpath);

    /* bad arguments: clear errors, exit 2; a missing table, exit 1 */
    static const struct {
        const char *args, *error;
        int status;
    } bad[] = {
        {"count -c \"$COHORTGATE_TEST_PG\" --k 0 50", "--k wants an integer from 1", 2},
        {"count -c \"$COHORTGATE_TEST_PG\" --k ten 50", "--k wants an integer from 1", 2},
        {"count --all", "-c/--db CONNINFO is required", 2},
        {"count -c \"$COHORTGATE_TEST_PG\"", "no definition given (DEF... or --all)", 2},
        {"count -c \"$COHORTGATE_TEST_PG\" --all 50", "either definitions or --all", 2},
        {"run -c \"$COHORTGATE_TEST_PG\" --json 50", "--k, --json and --all go with count", 2},
        {"count -c \"$COHORTGATE_TEST_PG\" --schema cg_no_such_schema --all",
         "there is no table \"cg_no_such_schema\".cohort", 1},
        {"count -c \"$COHORTGATE_TEST_PG\" /nonexistent/def.json",
         "/nonexistent/def.json: error: cannot read the file", 1},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(sh(&out, "'%s' cohort %s", bin, bad[i].args), bad[i].status);
        assert_non_null(strstr(out.data, bad[i].error));
        cg_buf_free(&out);
    }
    snprintf(q, sizeof q,
             "SET client_min_messages = warning; DROP SCHEMA \"%s\" CASCADE; DROP SCHEMA "
             "\"%s_res\" CASCADE",
             schema, schema);
    ct_exec_ok(q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_circe_golden),
                                       cmocka_unit_test(test_circe_definition_and_count)};
    return CT_RUN_TESTS(tests);
}
