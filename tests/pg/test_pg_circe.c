/* test_pg_circe.c - Circe conformance: OHDSI circe-be's own cohort-generation cases, evaluated by
 * cohortgate's compiler in a real PostgreSQL (label pg).
 *
 * The cases are read from ../shared/cohorts/circe-conformance (CG_CIRCE_CONFORMANCE), never
 * copied here; the test says it skipped when the folder is absent. For each case it makes a
 * fresh schema with every OMOP CDM v5.4 table (without keys: circe-be's fixtures repeat ids, as
 * its own DDL allows), loads vocabulary.json and the case's _PREP rows, compiles each cohort
 * definition of the case (the expression file, changed as circe-be's CohortGeneration tests
 * change it for each cohort_definition_id), runs it, and compares the `cohort` table with the
 * _VERIFY rows exactly. A definition outside cohortgate's subset is refused at load time: the
 * test lists it with the reason and leaves its expected rows out of the comparison. Every
 * definition inside the subset must produce exactly circe-be's rows.
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

/* One cohort definition of a case: an expression file (or inline text) and the changes the
 * circe-be test makes to it, each "Path.To.0.Member=JSON". */
typedef struct variant {
    long long id;
    const char *file;
    const char *inline_expr;
    const char *patches[6];
} variant_t;

typedef struct conf_case {
    const char *name; /* circe-be's test method */
    const char *prep; /* relative to the conformance folder */
    const char *verify;
    variant_t v[12];
} conf_case_t;

#define COND_STATUS_BASE                                                                           \
    "{\"ConceptSets\":[],\"PrimaryCriteria\":{\"CriteriaList\":[{\"ConditionOccurrence\":{}}],"    \
    "\"ObservationWindow\":{}}}"
#define FIRST(kind) "PrimaryCriteria.CriteriaList=[{\"" kind "\":{\"First\":true,\"CodesetId\":0}}]"

static const conf_case_t cases[] = {
    {"testConditionStatusCriteria",
     "conditionOccurrence/conditionStatusTest_PREP.json",
     "conditionOccurrence/conditionStatusTest_VERIFY.json",
     {{1, NULL, COND_STATUS_BASE, {NULL}},
      {2,
       NULL,
       COND_STATUS_BASE,
       {"PrimaryCriteria.CriteriaList.0.ConditionOccurrence.ConditionStatus=[]"}},
      {3,
       NULL,
       COND_STATUS_BASE,
       {"PrimaryCriteria.CriteriaList.0.ConditionOccurrence.ConditionStatus=[{\"CONCEPT_ID\":1}"
        "]"}}}},
    {"firstOccurrenceTest",
     "firstOccurrence/firstOccurrenceTest_PREP.json",
     "firstOccurrence/firstOccurrenceTest_VERIFY.json",
     {{1, "firstOccurrence/firstOccurrenceTestExpression.json", NULL, {FIRST("ConditionEra")}},
      {2,
       "firstOccurrence/firstOccurrenceTestExpression.json",
       NULL,
       {FIRST("ConditionOccurrence")}},
      {3, "firstOccurrence/firstOccurrenceTestExpression.json", NULL, {FIRST("DeviceExposure")}},
      {4, "firstOccurrence/firstOccurrenceTestExpression.json", NULL, {FIRST("DrugEra")}},
      {5, "firstOccurrence/firstOccurrenceTestExpression.json", NULL, {FIRST("DrugExposure")}},
      {6, "firstOccurrence/firstOccurrenceTestExpression.json", NULL, {FIRST("Measurement")}},
      {7, "firstOccurrence/firstOccurrenceTestExpression.json", NULL, {FIRST("Observation")}},
      {8,
       "firstOccurrence/firstOccurrenceTestExpression.json",
       NULL,
       {FIRST("ProcedureOccurrence")}},
      {9, "firstOccurrence/firstOccurrenceTestExpression.json", NULL, {FIRST("Specimen")}},
      {10,
       "firstOccurrence/firstOccurrenceTestExpression.json",
       NULL,
       {FIRST("VisitOccurrence")}}}},
    {"testCorrelatedCriteriaCounts",
     "correlatedCriteria/countsTest_PREP.json",
     "correlatedCriteria/countsTest_VERIFY.json",
     {{1, "correlatedCriteria/countsExpression.json", NULL, {NULL}},
      {2,
       "correlatedCriteria/countsExpression.json",
       NULL,
       {"AdditionalCriteria.CriteriaList.0.Occurrence.Type=2",
        "AdditionalCriteria.CriteriaList.0.Occurrence.Count=1"}},
      {3,
       "correlatedCriteria/countsExpression.json",
       NULL,
       {"AdditionalCriteria.CriteriaList.0.Occurrence.Type=1",
        "AdditionalCriteria.CriteriaList.0.Occurrence.Count=0"}},
      {4, "correlatedCriteria/visitExpression.json", NULL, {NULL}}}},
    {"testGroups",
     "correlatedCriteria/groupTest_PREP.json",
     "correlatedCriteria/groupTest_VERIFY.json",
     {{1, "correlatedCriteria/groupExpression.json", NULL, {NULL}},
      {2,
       "correlatedCriteria/groupExpression.json",
       NULL,
       {"AdditionalCriteria.Type=\"AT_LEAST\"", "AdditionalCriteria.Count=2"}},
      {3,
       "correlatedCriteria/groupExpression.json",
       NULL,
       {"AdditionalCriteria.Type=\"AT_MOST\"", "AdditionalCriteria.Count=2"}},
      {4,
       "correlatedCriteria/groupExpression.json",
       NULL,
       {"AdditionalCriteria.Type=\"ALL\"", "AdditionalCriteria.Count=2",
        "AdditionalCriteria.Groups.0.Type=\"AT_MOST\"", "AdditionalCriteria.Groups.0.Count=0"}},
      {5,
       "correlatedCriteria/groupExpression.json",
       NULL,
       {"AdditionalCriteria.Type=\"ALL\"", "AdditionalCriteria.Count=2",
        "AdditionalCriteria.Groups=[]"}}}},
    {"testContinuousExposure",
     "exits/continuousExposure_PREP.json",
     "exits/continuousExposure_VERIFY.json",
     {{1, "exits/continuousExposureExpression.json", NULL, {NULL}},
      {2,
       "exits/continuousExposureExpression.json",
       NULL,
       {"PrimaryCriteria.PrimaryCriteriaLimit.Type=\"First\""}}}},
    {"testFixedOffset",
     "exits/fixedOffset_PREP.json",
     "exits/fixedOffset_VERIFY.json",
     {{1, "exits/fixedOffsetExpression.json", NULL, {NULL}}}},
    {"testFixedOffsetCensor",
     "exits/fixedOffsetCensor_PREP.json",
     "exits/fixedOffsetCensor_VERIFY.json",
     {{1, "exits/fixedOffsetCensorExpression.json", NULL, {NULL}}}},
    {"testCensorWindow",
     "censorWindow/censorWindow_PREP.json",
     "censorWindow/censorWindow_VERIFY.json",
     {{1, "censorWindow/censorWindowExpression.json", NULL, {NULL}}}},
    {"testSimpleInclusionRule",
     "inclusionRules/simpleInclusionRule_PREP.json",
     "inclusionRules/simpleInclusionRule_VERIFY.json",
     {{1, "inclusionRules/simpleInclusionRule.json", NULL, {NULL}}}},
    {"testMixedConceptsets",
     "mixedConceptsets/mixedConceptsets_PREP.json",
     "mixedConceptsets/mixedConceptsets_VERIFY.json",
     {{1, "mixedConceptsets/mixedConceptsetsExpression.json", NULL, {NULL}}}},
    /* circe-be only checks that this one's SQL runs: here, that it loads or is refused */
    {"allCriteriaTest", NULL, NULL, {{1, "allCriteria/allCriteriaExpression.json", NULL, {NULL}}}},
};

static int n_variants, n_refused, n_passed, n_failed, n_cases_passed;

static char *path_of(const char *rel)
{
    size_t n = strlen(CG_CIRCE_CONFORMANCE) + strlen(rel) + 2;
    char *p = malloc(n);
    snprintf(p, n, "%s/%s", CG_CIRCE_CONFORMANCE, rel);
    return p;
}

static void load_dataset(const char *schema, const char *rel)
{
    char *p = path_of(rel);
    json_error_t je;
    json_t *root = json_load_file(p, 0, &je);
    if (!root)
        fail_msg("%s:%d: %s", p, je.line, je.text);
    ct_load_rows(schema, root, rel);
    json_decref(root);
    free(p);
}

/* Sets Path.To.0.Member of root to the JSON after '='. */
static void apply_patch(json_t *root, const char *patch)
{
    const char *eq = strchr(patch, '=');
    assert_non_null(eq);
    json_error_t je;
    json_t *val = json_loads(eq + 1, JSON_DECODE_ANY, &je);
    assert_non_null(val);
    char path[256];
    snprintf(path, sizeof path, "%.*s", (int)(eq - patch), patch);
    json_t *cur = root;
    char *save = NULL, *seg = strtok_r(path, ".", &save);
    while (seg) {
        char *next = strtok_r(NULL, ".", &save);
        if (json_is_array(cur)) {
            size_t i = strtoul(seg, NULL, 10);
            if (!next) {
                json_array_set_new(cur, i, val);
                return;
            }
            cur = json_array_get(cur, i);
        } else {
            if (!next) {
                json_object_set_new(cur, seg, val);
                return;
            }
            json_t *child = json_object_get(cur, seg);
            if (!child) {
                child = json_object();
                json_object_set_new(cur, seg, child);
            }
            cur = child;
        }
        assert_non_null(cur);
        seg = next;
    }
}

/* The variant's expression text, NULL-terminated, malloc'd. */
static char *variant_text(const variant_t *v)
{
    json_t *root;
    json_error_t je;
    if (v->inline_expr)
        root = json_loads(v->inline_expr, 0, &je);
    else {
        char *p = path_of(v->file);
        root = json_load_file(p, 0, &je);
        free(p);
    }
    assert_non_null(root);
    int patched = 0;
    for (int i = 0; i < 6 && v->patches[i]; i++, patched++)
        apply_patch(root, v->patches[i]);
    if (!patched && v->file) {
        /* unchanged: the file's own text, so refusals name its lines */
        json_decref(root);
        char *p = path_of(v->file);
        cg_buf_t b;
        cg_buf_init(&b);
        assert_int_equal(cg_buf_read_file(&b, p), CG_OK);
        cg_buf_putc(&b, '\0');
        free(p);
        return b.data;
    }
    char *text = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(root);
    return text;
}

/* "id|subject|start|end" lines of the expected rows of the ids in keep. */
static void expected_rows(const char *rel, const int *keep, size_t n_keep, cg_buf_t *out)
{
    char *p = path_of(rel);
    json_error_t je;
    json_t *root = json_load_file(p, 0, &je);
    free(p);
    assert_non_null(root);
    const char *key;
    json_t *rows;
    json_object_foreach(root, key, rows)
    {
        size_t kl = strlen(key);
        if (kl < 7 || strcmp(key + kl - 7, ".cohort"))
            continue;
        size_t i;
        json_t *r;
        json_array_foreach(rows, i, r)
        {
            long long id = json_integer_value(json_object_get(r, "cohort_definition_id"));
            int want = 0;
            for (size_t k = 0; k < n_keep; k++)
                want |= keep[k] == id;
            if (want)
                cg_buf_printf(out, "%lld|%lld|%s|%s\n", id,
                              (long long)json_integer_value(json_object_get(r, "subject_id")),
                              json_string_value(json_object_get(r, "cohort_start_date")),
                              json_string_value(json_object_get(r, "cohort_end_date")));
        }
    }
    json_decref(root);
}

static void actual_rows(const char *schema, cg_buf_t *out)
{
    char q[256];
    snprintf(q, sizeof q,
             "SELECT cohort_definition_id, subject_id, cohort_start_date, cohort_end_date FROM "
             "\"%s\".cohort ORDER BY cohort_definition_id, subject_id, cohort_start_date",
             schema);
    PGresult *r = PQexec(ct_db, q);
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    for (int i = 0; i < PQntuples(r); i++)
        cg_buf_printf(out, "%s|%s|%s|%s\n", PQgetvalue(r, i, 0), PQgetvalue(r, i, 1),
                      PQgetvalue(r, i, 2), PQgetvalue(r, i, 3));
    PQclear(r);
}

static void run_case(const conf_case_t *cs)
{
    char schema[64];
    snprintf(schema, sizeof schema, "cg_circe_%d_%s", (int)getpid(), cs->name);
    for (char *p = schema; *p; p++)
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p - 'A' + 'a');
    if (cs->prep) {
        ct_make_schema(schema);
        load_dataset(schema, "vocabulary.json");
        load_dataset(schema, cs->prep);
    }
    int kept[12];
    size_t n_kept = 0;
    int case_refused = 0, case_ran = 0;
    for (int i = 0; i < 12 && cs->v[i].id; i++) {
        const variant_t *v = &cs->v[i];
        n_variants++;
        char *text = variant_text(v);
        char name[160];
        snprintf(name, sizeof name, "%s%s", v->file ? CG_CIRCE_CONFORMANCE "/" : cs->name,
                 v->file ? v->file : " (inline)");
        cg_error_t errs[4];
        size_t n_errs = 0;
        cg_circe_t *c = cg_circe_load_string(text, name, errs, 4, &n_errs);
        free(text);
        if (!c) {
            n_refused++;
            case_refused++;
            printf("  %s cohort %lld: REFUSED (%zu errors), first: %s:%d:%d: %s\n", cs->name, v->id,
                   n_errs, errs[0].file, errs[0].line, errs[0].column, errs[0].text);
            continue;
        }
        if (!cs->prep) {
            printf("  %s cohort %lld: loads\n", cs->name, v->id);
            cg_circe_destroy(c);
            continue;
        }
        cg_buf_t sql;
        cg_buf_init(&sql);
        cg_circe_sql_options_t o = {schema, NULL, v->id, NULL, NULL, NULL};
        assert_int_equal(cg_circe_compile(c, &o, &sql), CG_OK);
        ct_exec_ok(sql.data);
        cg_buf_free(&sql);
        cg_circe_destroy(c);
        kept[n_kept++] = (int)v->id;
        case_ran++;
    }
    if (!cs->prep)
        return;
    if (!case_ran) {
        printf("  %s: every cohort definition refused, nothing to compare\n", cs->name);
        ct_exec_ok("SELECT 1");
    }
    cg_buf_t want, got;
    cg_buf_init(&want);
    cg_buf_init(&got);
    cg_buf_putc(&want, '\0');
    want.len = 0;
    cg_buf_putc(&got, '\0');
    got.len = 0;
    expected_rows(cs->verify, kept, n_kept, &want);
    actual_rows(schema, &got);
    if (strcmp(want.data, got.data)) {
        n_failed += case_ran;
        printf("  %s: FAIL\n--- expected (circe-be)\n%s--- got (cohortgate)\n%s", cs->name,
               want.data, got.data);
    } else {
        n_passed += case_ran;
        if (!case_refused)
            n_cases_passed++;
        printf("  %s: %d of %d cohort definitions in the subset, all rows as circe-be's\n",
               cs->name, case_ran, case_ran + case_refused);
    }
    cg_buf_free(&want);
    cg_buf_free(&got);
    char drop[128];
    snprintf(drop, sizeof drop, "SET client_min_messages = warning; DROP SCHEMA \"%s\" CASCADE",
             schema);
    ct_exec_ok(drop);
}

static void test_circe_conformance(void **state)
{
    (void)state;
    if (access(CG_CIRCE_CONFORMANCE "/vocabulary.json", R_OK) != 0) {
        printf("test_pg_circe: Circe conformance skipped: the cases are absent (%s)\n",
               CG_CIRCE_CONFORMANCE);
        skip();
    }
    size_t n_cases = sizeof cases / sizeof cases[0];
    for (size_t i = 0; i < n_cases; i++)
        run_case(&cases[i]);
    printf("Circe conformance: %d cohort definitions in %zu cases; %d inside the subset, %d "
           "refused; %d give exactly circe-be's rows, %d do not; %d cases pass whole\n",
           n_variants, n_cases, n_variants - n_refused, n_refused, n_passed, n_failed,
           n_cases_passed);
    assert_int_equal(n_failed, 0);
    /* what passes today must keep passing */
    assert_true(n_passed >= 29);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_circe_conformance)};
    return CT_RUN_TESTS(tests);
}
