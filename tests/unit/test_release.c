/* test_release.c - graded release: the shipped catalogue covers every column, code sets raise a
 * row's level, policies are refused where they grant what the catalogue forbids, and each rule
 * and transform does what specs/classification/README.md says. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cg_release.h"
#include "test_rows.h"

#define CATALOGUE CG_SOURCE_DIR "/specs/classification"

static cg_catalogue_t *load_shipped(void)
{
    const char *layers[] = {CATALOGUE};
    cg_error_t errs[4];
    size_t n = 0;
    cg_catalogue_t *cat = cg_catalogue_load(layers, 1, errs, 4, &n);
    if (!cat)
        fail_msg("%s:%d: %s", errs[0].file, errs[0].line, errs[0].text);
    return cat;
}

static cg_pseudo_key_t *key_of(const char *text)
{
    char err[128];
    cg_pseudo_key_t *k = cg_pseudo_key_new(text, strlen(text), err, sizeof(err));
    assert_non_null(k);
    return k;
}

/* A policy for a subscriber of max_level, its key made from name; optional tweaks after. */
static cg_policy_def_t def_of(const char *name, int max_level)
{
    return (cg_policy_def_t){.name = name,
                             .agreement = "DUA-1",
                             .expires = "2999-12-31",
                             .max_level = max_level,
                             .age_top = 90};
}

static cg_policy_t *compile(const cg_catalogue_t *cat, const cg_policy_def_t *d)
{
    char keytext[64];
    snprintf(keytext, sizeof(keytext), "subscriber key of %s, 32 bytes or more", d->name);
    cg_pseudo_key_t *k = key_of(keytext);
    cg_error_t errs[8];
    size_t n = 0;
    cg_policy_t *p = cg_policy_compile(cat, d, k, errs, 8, &n);
    cg_pseudo_key_destroy(k);
    if (!p)
        fail_msg("%s", errs[0].text);
    return p;
}

/* The errors compiling d gives (none: 0); the first's text into first. */
static size_t compile_errors(const cg_catalogue_t *cat, const cg_policy_def_t *d, char *first,
                             size_t size)
{
    cg_pseudo_key_t *k = key_of("a key for a policy that should not compile, long enough");
    cg_error_t errs[8];
    size_t n = 0;
    cg_policy_t *p = cg_policy_compile(cat, d, k, errs, 8, &n);
    cg_pseudo_key_destroy(k);
    if (p)
        cg_policy_destroy(p);
    else
        snprintf(first, size, "%s", errs[0].text);
    return n;
}

/* cg_release_row with the row's code level found as `run` finds it, once a row */
static cg_err_t rel(const cg_policy_t *p, const cg_catalogue_t *cat, const cg_row_t *row,
                    const char *const *cohorts, size_t n_cohorts, time_t now,
                    cg_release_scratch_t *s, cg_release_out_t *out, cg_release_outcome_t *why)
{
    const char *set = NULL;
    int level = cg_catalogue_row_level(cat, row, &set);
    return cg_release_row(p, row, cohorts, n_cohorts, level, set, now, s, out, why);
}

static const char *col(const cg_release_out_t *o, const char *name, char *buf)
{
    const cg_value_t *v = cg_row_value_named(&o->row, name);
    if (!v || v->kind == CG_VALUE_ABSENT)
        return NULL;
    snprintf(buf, 64, "%.*s", (int)v->len, v->ptr);
    return buf;
}

static void test_shipped_catalogue_covers_every_column(void **state)
{
    (void)state;
    cg_catalogue_t *cat = load_shipped();
    size_t checked = 0;
    for (size_t ti = 0; cg_target_at(ti); ti++) {
        size_t n;
        const cg_target_table_t *tabs = cg_target_at(ti)->tables(&n);
        for (size_t k = 0; k < n; k++)
            for (size_t c = 0; c < tabs[k].n_columns; c++) {
                cg_class_column_t e = cg_catalogue_column(cat, &tabs[k].columns[c]);
                if (e.level < 1 || e.level > 5)
                    fail_msg("%s.%s has no level", tabs[k].name, tabs[k].columns[c].name);
                checked++;
            }
    }
    assert_true(checked > 400);
    assert_int_equal(strlen(cg_catalogue_version(cat)), 12);
    cg_catalogue_destroy(cat);
}

/* A copy of the shipped catalogue in a temporary folder, with columns.csv edited by sed. */
static void edited_copy(const char *dir, const char *sed)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd),
             "mkdir -p %s && cp %s/columns.csv %s/sensitive-codes.csv %s/ && sed -i '%s' "
             "%s/columns.csv",
             dir, CATALOGUE, CATALOGUE, dir, sed, dir);
    assert_int_equal(system(cmd), 0);
}

static void test_catalogue_errors_are_located(void **state)
{
    (void)state;
    char dir[] = "/tmp/cg-cat-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char base[300], site[300];
    snprintf(base, sizeof(base), "%s/base", dir);
    snprintf(site, sizeof(site), "%s/site", dir);
    /* a column left out: the error names it */
    edited_copy(base, "/^measurement,value_as_number,/d");
    const char *layers[] = {base, site};
    cg_error_t errs[8];
    size_t n = 0;
    assert_null(cg_catalogue_load(layers, 1, errs, 8, &n));
    assert_int_equal(n, 1);
    assert_non_null(strstr(errs[0].text, "measurement.value_as_number"));
    assert_non_null(strstr(errs[0].file, "columns.csv"));
    /* a bad level, flag and column, each at its line and column */
    edited_copy(base, "s/^person,person_id,personal_attributes,3,/person,person_id,"
                      "personal_attributes,7,/;s/^person,year_of_birth,personal_attributes,3,"
                      "quasi,/person,year_of_birth,personal_attributes,3,quasy,/;"
                      "s/^person,month_of_birth,/person,month_of_brith,/");
    assert_null(cg_catalogue_load(layers, 1, errs, 8, &n));
    assert_int_equal(n, 3);
    assert_int_equal(errs[0].line, 2);
    assert_int_equal(errs[0].column, 38);
    assert_non_null(strstr(errs[0].text, "level must be 1 to 5"));
    assert_non_null(strstr(errs[1].text, "unknown flag 'quasy'"));
    assert_non_null(strstr(errs[2].text, "did you mean 'month_of_birth'"));
    /* a site layer: a row replaces the base row; codes add to the sets */
    edited_copy(base, "s/^x//");
    char cmd[1200];
    snprintf(cmd, sizeof(cmd),
             "mkdir -p %s && printf 'table,column,category,level,flags,generalize,"
             "generalized_level,why\\nmeasurement,value_as_number,health_status,4,,,,site\\n' > "
             "%s/columns.csv && printf 'set,level,match,value,why\\nlocal,4,code,HIVX,a "
             "local code\\n' > %s/sensitive-codes.csv",
             site, site, site);
    assert_int_equal(system(cmd), 0);
    cg_catalogue_t *cat = cg_catalogue_load(layers, 2, errs, 8, &n);
    assert_non_null(cat);
    const cg_target_table_t *m = cg_target_table_any("measurement");
    assert_int_equal(cg_catalogue_column(cat, cg_target_column(m, "value_as_number")).level, 4);
    cg_value_t vals[64];
    const char *set;
    cg_row_t row = ROW("measurement", {"measurement_source_value", CG_VALUE_STRING, "hivx"});
    assert_int_equal(cg_catalogue_row_level(cat, &row, &set), 4);
    assert_string_equal(set, "local");
    cg_catalogue_destroy(cat);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

static void test_code_sets_raise_rows(void **state)
{
    (void)state;
    cg_catalogue_t *cat = load_shipped();
    cg_value_t vals[64];
    const char *set;
    static const struct {
        const char *code;
        int level;
        const char *set;
    } cases[] = {
        {"B20", 5, "hiv"},
        {"B20.1", 5, "hiv"},
        {"b24", 5, "hiv"},
        {"B25", 0, NULL},
        {"Z21", 5, "hiv"},
        {"E11.9", 0, NULL},
        {"F32.9", 5, "mental_health"},
        {"296.5", 5, "mental_health"},
        {"29012345", 0, NULL}, /* a SNOMED code is no ICD-9 mental disorder */
        {"042", 5, "hiv"},
        {"86406008", 5, "hiv"},
        {"A54.0", 5, "sti"},
        {"Z15.01", 5, "genetic"},
        {"I10", 0, NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        cg_row_t row =
            ROW("condition_occurrence", {"condition_source_value", CG_VALUE_STRING, cases[i].code});
        int level = cg_catalogue_row_level(cat, &row, &set);
        if (level != cases[i].level)
            fail_msg("%s: level %d, expected %d", cases[i].code, level, cases[i].level);
        if (cases[i].set)
            assert_string_equal(set, cases[i].set);
    }
    cg_row_t row =
        ROW("condition_occurrence", {"condition_concept_id", CG_VALUE_INTEGER, "439727"});
    assert_int_equal(cg_catalogue_row_level(cat, &row, &set), 5);
    /* a result's value is no diagnosis: 296 mmol/L is not ICD-9 296 */
    row = ROW("measurement", {"value_source_value", CG_VALUE_STRING, "296"},
              {"measurement_source_value", CG_VALUE_STRING, "2692-2"});
    assert_int_equal(cg_catalogue_row_level(cat, &row, &set), 0);
    cg_catalogue_destroy(cat);
}

static cg_row_t condition(cg_value_t *vals, const char *code)
{
    return ROW("condition_occurrence",
               {"condition_occurrence_id", CG_VALUE_INTEGER, "1234567890123"},
               {"person_id", CG_VALUE_INTEGER, "998877665544"},
               {"condition_concept_id", CG_VALUE_INTEGER, "0"},
               {"condition_start_date", CG_VALUE_DATE, "2024-03-14"},
               {"condition_start_datetime", CG_VALUE_DATETIME, "2024-03-14T08:30:00"},
               {"condition_type_concept_id", CG_VALUE_INTEGER, "32817"},
               {"condition_source_value", CG_VALUE_STRING, code});
}

static void test_sensitive_row_only_to_its_level(void **state)
{
    (void)state;
    cg_catalogue_t *cat = load_shipped();
    cg_policy_def_t d3 = def_of("sponsor", 3), d5 = def_of("registry", 5);
    cg_policy_t *p3 = compile(cat, &d3), *p5 = compile(cat, &d5);
    cg_release_scratch_t *s = cg_release_scratch_new();
    cg_value_t vals[64];
    cg_row_t row = condition(vals, "B20.1");
    row.person_key = (cg_slice_t){"4f1c0ffee", 9};
    cg_release_out_t out;
    cg_release_outcome_t why;
    time_t now = time(NULL);
    assert_int_equal(rel(p3, cat, &row, NULL, 0, now, s, &out, &why), CG_OK);
    assert_int_equal(why, CG_RELEASE_LEVEL);
    assert_int_equal(out.level, 5);
    assert_string_equal(out.set, "hiv");
    assert_int_equal(rel(p5, cat, &row, NULL, 0, now, s, &out, &why), CG_OK);
    assert_int_equal(why, CG_RELEASE_OK);
    assert_int_equal(out.level, 5);
    row = condition(vals, "E11.9");
    row.person_key = (cg_slice_t){"4f1c0ffee", 9};
    assert_int_equal(rel(p3, cat, &row, NULL, 0, now, s, &out, &why), CG_OK);
    assert_int_equal(why, CG_RELEASE_OK);
    assert_int_equal(out.level, 3);
    cg_release_scratch_destroy(s);
    cg_policy_destroy(p3);
    cg_policy_destroy(p5);
    cg_catalogue_destroy(cat);
}

static void test_subscribers_ids_do_not_link(void **state)
{
    (void)state;
    cg_catalogue_t *cat = load_shipped();
    cg_policy_def_t da = def_of("sponsor-a", 3), db = def_of("sponsor-b", 3);
    cg_policy_t *pa = compile(cat, &da), *pb = compile(cat, &db);
    cg_release_scratch_t *s = cg_release_scratch_new();
    cg_value_t vals[64];
    char b1[64], b2[64], b3[64];
    cg_release_out_t out;
    cg_release_outcome_t why;
    time_t now = time(NULL);
    cg_row_t row = condition(vals, "E11.9");
    row.person_key = (cg_slice_t){"4f1c0ffee", 9};
    row.message_id = (cg_slice_t){"MSG00001", 8};
    assert_int_equal(rel(pa, cat, &row, NULL, 0, now, s, &out, &why), CG_OK);
    char a_person[64], a_key[17], a_mid[41];
    snprintf(a_person, sizeof(a_person), "%s", col(&out, "person_id", b1));
    snprintf(a_key, sizeof(a_key), "%.*s", (int)out.key.len, out.key.ptr);
    snprintf(a_mid, sizeof(a_mid), "%.*s", (int)out.row.message_id.len, out.row.message_id.ptr);
    assert_string_not_equal(a_person, "998877665544");
    assert_string_not_equal(col(&out, "condition_occurrence_id", b2), "1234567890123");
    assert_string_equal(col(&out, "condition_concept_id", b3), "0"); /* concepts are shared */
    assert_null(out.src.topic);
    assert_int_equal(rel(pb, cat, &row, NULL, 0, now, s, &out, &why), CG_OK);
    assert_string_not_equal(a_person, col(&out, "person_id", b1));
    assert_false(out.key.len == strlen(a_key) && !memcmp(out.key.ptr, a_key, out.key.len));
    assert_false(!memcmp(out.row.message_id.ptr, a_mid, 40));
    /* within one subscriber the same person is the same id in every table */
    cg_row_t person =
        ROW("person", {"person_id", CG_VALUE_INTEGER, "998877665544"},
            {"gender_concept_id", CG_VALUE_INTEGER, "8507"},
            {"year_of_birth", CG_VALUE_INTEGER, "1961"}, {"race_concept_id", CG_VALUE_INTEGER, "0"},
            {"ethnicity_concept_id", CG_VALUE_INTEGER, "0"});
    person.person_key = row.person_key;
    assert_int_equal(rel(pa, cat, &person, NULL, 0, now, s, &out, &why), CG_OK);
    assert_int_equal(why, CG_RELEASE_OK);
    assert_string_equal(col(&out, "person_id", b1), a_person);
    /* a retraction reaches a level-3 subscriber, naming the document by the subscriber's
     * pseudonym of its message id, so that its database can retract the document's rows */
    cg_row_t retract =
        ROW("cohortgate.document_retraction", {"document_retraction_id", CG_VALUE_INTEGER, "77"},
            {"person_id", CG_VALUE_INTEGER, "998877665544"},
            {"replaced_document_id", CG_VALUE_STRING, "MSG00001"},
            {"retraction_date", CG_VALUE_DATE, "2024-03-15"});
    retract.person_key = row.person_key;
    assert_int_equal(rel(pa, cat, &retract, NULL, 0, now, s, &out, &why), CG_OK);
    assert_int_equal(why, CG_RELEASE_OK);
    assert_string_equal(col(&out, "replaced_document_id", b1), a_mid);
    assert_string_equal(col(&out, "person_id", b2), a_person);
    assert_int_equal(out.level, 3);
    /* an order's result keeps, of its meta, only the order, re-keyed as the order retraction's
     * order_id is, so that the subscriber's database can retract the order's rows */
    cg_row_meta_t facts[] = {
        {"result_status", {"final", 5, CG_VALUE_STRING, 1, 0}, NULL, 0},
        {CG_ROW_META_ORDER_ID, {"8695025451611635292", 19, CG_VALUE_STRING, 1, 0}, NULL, 0}};
    row.meta = facts;
    row.n_meta = 2;
    assert_int_equal(rel(pa, cat, &row, NULL, 0, now, s, &out, &why), CG_OK);
    assert_int_equal(out.row.n_meta, 1);
    assert_string_equal(out.row.meta[0].name, CG_ROW_META_ORDER_ID);
    char order[48];
    snprintf(order, sizeof(order), "%.*s", (int)out.row.meta[0].value.len,
             out.row.meta[0].value.ptr);
    assert_int_equal(strlen(order), 40);
    cg_row_t cancel = ROW(CG_ROW_ORDER_RETRACTION, {"order_retraction_id", CG_VALUE_INTEGER, "78"},
                          {"person_id", CG_VALUE_INTEGER, "998877665544"},
                          {"order_id", CG_VALUE_STRING, "8695025451611635292"},
                          {"retraction_date", CG_VALUE_DATE, "2024-03-15"});
    cancel.person_key = row.person_key;
    assert_int_equal(rel(pa, cat, &cancel, NULL, 0, now, s, &out, &why), CG_OK);
    assert_int_equal(why, CG_RELEASE_OK);
    assert_string_equal(col(&out, "order_id", b1), order);
    assert_int_equal(rel(pb, cat, &cancel, NULL, 0, now, s, &out, &why), CG_OK);
    assert_string_not_equal(col(&out, "order_id", b1), order); /* another subscriber's */
    cg_release_scratch_destroy(s);
    cg_policy_destroy(pa);
    cg_policy_destroy(pb);
    cg_catalogue_destroy(cat);
}

static void test_transforms(void **state)
{
    (void)state;
    cg_catalogue_t *cat = load_shipped();
    cg_release_scratch_t *s = cg_release_scratch_new();
    cg_value_t vals[64];
    char b[64];
    cg_release_out_t out;
    cg_release_outcome_t why;
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    int year = tm.tm_year + 1900;
    char old[8], young[8];
    snprintf(old, sizeof(old), "%d", year - 95);
    snprintf(young, sizeof(young), "%d", year - 43);
    /* level 2: dates generalized to the month, year of birth banded, 90+ in one band */
    cg_policy_def_t d = def_of("aggregate", 3);
    d.levels[3] = CG_ACT_GENERALIZE;
    cg_policy_t *p = compile(cat, &d);
    cg_row_t row = condition(vals, "E11.9");
    row.person_key = (cg_slice_t){"k1", 2};
    row.source_time = (cg_slice_t){"2024-03-15T10:00:00", 19};
    assert_int_equal(rel(p, cat, &row, NULL, 0, now, s, &out, &why), CG_OK);
    assert_int_equal(why, CG_RELEASE_OK);
    assert_string_equal(col(&out, "condition_start_date", b), "2024-03-01");
    assert_string_equal(col(&out, "condition_start_datetime", b), "2024-03-01T00:00:00");
    assert_int_equal(out.row.source_time.len, 19);
    assert_memory_equal(out.row.source_time.ptr, "2024-03-01T00:00:00", 19);
    /* a table without dates still has its message's time generalized */
    cg_row_t site = ROW("care_site", {"care_site_id", CG_VALUE_INTEGER, "44"});
    site.source_time = (cg_slice_t){"2024-03-14T08:30:00+01:00", 25};
    assert_int_equal(rel(p, cat, &site, NULL, 0, now, s, &out, &why), CG_OK);
    assert_int_equal(why, CG_RELEASE_OK);
    assert_int_equal(out.row.source_time.len, 19);
    assert_memory_equal(out.row.source_time.ptr, "2024-03-01T00:00:00", 19);
    cg_row_t person =
        ROW("person", {"person_id", CG_VALUE_INTEGER, "5"},
            {"gender_concept_id", CG_VALUE_INTEGER, "8507"},
            {"year_of_birth", CG_VALUE_INTEGER, old}, {"month_of_birth", CG_VALUE_INTEGER, "7"},
            {"birth_datetime", CG_VALUE_DATETIME, "1931-07-04T00:00:00"},
            {"race_concept_id", CG_VALUE_INTEGER, "0"},
            {"ethnicity_concept_id", CG_VALUE_INTEGER, "0"});
    assert_int_equal(rel(p, cat, &person, NULL, 0, now, s, &out, &why), CG_OK);
    assert_int_equal(atoi(col(&out, "year_of_birth", b)), year - 90); /* 95 is "90+" */
    assert_null(col(&out, "month_of_birth", b));                      /* level 4 */
    assert_null(col(&out, "birth_datetime", b));                      /* would undo the band */
    vals[cg_target_column(person.table, "year_of_birth")->index].ptr = young;
    assert_int_equal(rel(p, cat, &person, NULL, 0, now, s, &out, &why), CG_OK);
    assert_int_equal(atoi(col(&out, "year_of_birth", b)) % 5, 0);
    assert_true(year - 43 - atoi(col(&out, "year_of_birth", b)) < 5);
    cg_policy_destroy(p);
    /* year-only dates */
    d.dates_year = 1;
    p = compile(cat, &d);
    row = condition(vals, "E11.9");
    assert_int_equal(rel(p, cat, &row, NULL, 0, now, s, &out, &why), CG_OK);
    assert_string_equal(col(&out, "condition_start_date", b), "2024-01-01");
    cg_policy_destroy(p);
    /* a level-3 subscriber: full dates, shifted per person within the range, the same shift
     * for every date of one person */
    d = def_of("shifted", 3);
    d.date_shift_days = 30;
    p = compile(cat, &d);
    int shifts = 0;
    for (int i = 0; i < 20; i++) {
        char key[8];
        snprintf(key, sizeof(key), "p%d", i);
        row = condition(vals, "E11.9");
        row.person_key = (cg_slice_t){key, strlen(key)};
        assert_int_equal(rel(p, cat, &row, NULL, 0, now, s, &out, &why), CG_OK);
        char date[16], dt[24];
        snprintf(date, sizeof(date), "%s", col(&out, "condition_start_date", b));
        snprintf(dt, sizeof(dt), "%s", col(&out, "condition_start_datetime", b));
        assert_memory_equal(date, dt, 10);            /* one shift per person */
        assert_string_equal(dt + 10, "T08:30:00");    /* the time of day kept */
        assert_true(strcmp(date, "2024-02-13") >= 0); /* 2024-03-14 - 30 */
        assert_true(strcmp(date, "2024-04-13") <= 0); /* 2024-03-14 + 30 */
        shifts += strcmp(date, "2024-03-14") != 0;
    }
    assert_true(shifts > 10);
    cg_policy_destroy(p);
    /* locations: zip to 3 digits, street and coordinates never for level 3 */
    d = def_of("geo", 3);
    p = compile(cat, &d);
    cg_row_t loc =
        ROW("location", {"location_id", CG_VALUE_INTEGER, "77"},
            {"address_1", CG_VALUE_STRING, "12 Hospital Road"}, {"zip", CG_VALUE_STRING, "100730"},
            {"state", CG_VALUE_STRING, "BJ"}, {"latitude", CG_VALUE_NUMBER, "39.91"});
    assert_int_equal(rel(p, cat, &loc, NULL, 0, now, s, &out, &why), CG_OK);
    assert_int_equal(why, CG_RELEASE_OK);
    assert_string_equal(col(&out, "zip", b), "100");
    assert_null(col(&out, "address_1", b));
    assert_null(col(&out, "latitude", b));
    assert_string_equal(col(&out, "state", b), "BJ");
    /* free text is dropped unless the policy keeps it */
    cg_row_t obs =
        ROW("observation", {"observation_id", CG_VALUE_INTEGER, "9"},
            {"person_id", CG_VALUE_INTEGER, "5"}, {"observation_concept_id", CG_VALUE_INTEGER, "0"},
            {"observation_date", CG_VALUE_DATE, "2024-01-02"},
            {"observation_type_concept_id", CG_VALUE_INTEGER, "32817"},
            {"value_as_string", CG_VALUE_STRING, "lives with partner at 12 Road"});
    assert_int_equal(rel(p, cat, &obs, NULL, 0, now, s, &out, &why), CG_OK);
    assert_null(col(&out, "value_as_string", b));
    cg_policy_destroy(p);
    d = def_of("text", 4);
    d.free_text = 1;
    p = compile(cat, &d);
    assert_int_equal(rel(p, cat, &obs, NULL, 0, now, s, &out, &why), CG_OK);
    assert_non_null(col(&out, "value_as_string", b));
    assert_int_equal(out.level, 4);
    cg_policy_destroy(p);
    cg_release_scratch_destroy(s);
    cg_catalogue_destroy(cat);
}

static void test_grants_tables_cohorts_and_expiry(void **state)
{
    (void)state;
    cg_catalogue_t *cat = load_shipped();
    cg_release_scratch_t *s = cg_release_scratch_new();
    cg_value_t vals[64];
    cg_release_out_t out;
    cg_release_outcome_t why;
    time_t now = time(NULL);
    const char *tables[] = {"person", "measurement"};
    const char *cohorts[] = {"t2dm"};
    cg_policy_def_t d = def_of("pre-cohort", 3);
    d.tables = tables;
    d.n_tables = 2;
    d.cohorts = cohorts;
    d.n_cohorts = 1;
    cg_policy_t *p = compile(cat, &d);
    cg_row_t row = condition(vals, "E11.9");
    assert_int_equal(rel(p, cat, &row, cohorts, 1, now, s, &out, &why), CG_OK);
    assert_int_equal(why, CG_RELEASE_TABLE);
    row = ROW("measurement", {"measurement_id", CG_VALUE_INTEGER, "3"},
              {"person_id", CG_VALUE_INTEGER, "5"},
              {"measurement_concept_id", CG_VALUE_INTEGER, "3004410"},
              {"measurement_date", CG_VALUE_DATE, "2024-01-02"},
              {"measurement_type_concept_id", CG_VALUE_INTEGER, "32817"});
    const char *other[] = {"ckd"};
    assert_int_equal(rel(p, cat, &row, other, 1, now, s, &out, &why), CG_OK);
    assert_int_equal(why, CG_RELEASE_COHORT);
    assert_int_equal(rel(p, cat, &row, cohorts, 1, now, s, &out, &why), CG_OK);
    assert_int_equal(why, CG_RELEASE_OK);
    /* without cohortgate.order_retraction, no order retraction to apply: no meta at all */
    cg_row_meta_t order = {CG_ROW_META_ORDER_ID, {"42", 2, CG_VALUE_STRING, 1, 0}, NULL, 0};
    row.meta = &order;
    row.n_meta = 1;
    assert_int_equal(rel(p, cat, &row, cohorts, 1, now, s, &out, &why), CG_OK);
    assert_int_equal(why, CG_RELEASE_OK);
    assert_int_equal(out.row.n_meta, 0);
    cg_policy_destroy(p);
    /* an agreement that ended yesterday stops the feed; one ending today still runs */
    char day[16];
    struct tm tm;
    time_t y = now - 86400;
    gmtime_r(&y, &tm);
    strftime(day, sizeof(day), "%Y-%m-%d", &tm);
    d = def_of("expired", 3);
    d.expires = day;
    p = compile(cat, &d);
    assert_false(cg_policy_in_force(p, now));
    assert_int_equal(rel(p, cat, &row, NULL, 0, now, s, &out, &why), CG_OK);
    assert_int_equal(why, CG_RELEASE_EXPIRED);
    cg_policy_destroy(p);
    gmtime_r(&now, &tm);
    strftime(day, sizeof(day), "%Y-%m-%d", &tm);
    d.expires = day;
    p = compile(cat, &d);
    assert_true(cg_policy_in_force(p, now));
    cg_policy_destroy(p);
    cg_release_scratch_destroy(s);
    cg_catalogue_destroy(cat);
}

/* The records of row for each of n policies into out[i] (encoded), prepared once or not. */
static void release_each(cg_policy_t **p, size_t n, const cg_catalogue_t *cat, const cg_row_t *row,
                         int prepare, cg_release_scratch_t *s, cg_buf_t *out)
{
    const char *set = NULL;
    int level = cg_catalogue_row_level(cat, row, &set);
    if (prepare)
        assert_int_equal(cg_release_row_prepare(s, row), CG_OK);
    for (size_t i = 0; i < n; i++) {
        cg_release_out_t o;
        cg_release_outcome_t why;
        assert_int_equal(cg_release_row(p[i], row, NULL, 0, level, set, time(NULL), s, &o, &why),
                         CG_OK);
        assert_int_equal(why, CG_RELEASE_OK);
        cg_buf_reset(&out[i]);
        assert_int_equal(cg_row_encode(&o.row, &o.src, NULL, 0, 0, &out[i]), CG_OK);
        assert_int_equal(cg_buf_append(&out[i], o.key.ptr, o.key.len), CG_OK);
    }
}

static void test_prepared_rows_release_the_same(void **state)
{
    (void)state;
    cg_catalogue_t *cat = load_shipped();
    cg_policy_def_t d[3] = {def_of("sponsor", 3), def_of("registry", 5), def_of("disease-db", 4)};
    d[0].levels[3] = CG_ACT_GENERALIZE;
    d[2].date_shift_days = 30;
    cg_policy_t *p[3] = {compile(cat, &d[0]), compile(cat, &d[1]), compile(cat, &d[2])};
    cg_release_scratch_t *s = cg_release_scratch_new();
    cg_buf_t each[3], once[3];
    for (int i = 0; i < 3; i++) {
        cg_buf_init(&each[i]);
        cg_buf_init(&once[i]);
    }
    cg_value_t vals[64];
    cg_row_t row = condition(vals, "E11.9");
    row.person_key = (cg_slice_t){"4f1c0ffee", 9};
    row.message_id = (cg_slice_t){"MSG00001", 8};
    row.source_time = (cg_slice_t){"2024-03-14T08:30:00", 19};
    release_each(p, 3, cat, &row, 0, s, each);
    release_each(p, 3, cat, &row, 1, s, once);
    for (int i = 0; i < 3; i++)
        assert_string_equal(once[i].data, each[i].data);
    /* the same row changed in place and prepared again: its new values, not the last row's */
    row =
        ROW("condition_occurrence", {"condition_occurrence_id", CG_VALUE_INTEGER, "1234567890999"},
            {"person_id", CG_VALUE_INTEGER, "998877665500"},
            {"condition_concept_id", CG_VALUE_INTEGER, "0"},
            {"condition_start_date", CG_VALUE_DATE, "2023-12-31"},
            {"condition_start_datetime", CG_VALUE_DATETIME, "2023-12-31T23:59:00"},
            {"condition_type_concept_id", CG_VALUE_INTEGER, "32817"},
            {"condition_source_value", CG_VALUE_STRING, "I10"});
    row.person_key = (cg_slice_t){"4f1c0ffee", 9};
    release_each(p, 3, cat, &row, 1, s, once);
    cg_release_scratch_t *fresh = cg_release_scratch_new(); /* that never saw the first row */
    release_each(p, 3, cat, &row, 0, fresh, each);
    cg_release_scratch_destroy(fresh);
    assert_non_null(strstr(once[0].data, "\"condition_start_date\":\"2023-12-01\""));
    assert_non_null(strstr(once[1].data, "\"condition_start_date\":\"2023-12-31\""));
    for (int i = 0; i < 3; i++) {
        assert_string_equal(once[i].data, each[i].data);
        assert_non_null(strstr(once[i].data, "\"person_id\":"));
        cg_buf_free(&each[i]);
        cg_buf_free(&once[i]);
        cg_policy_destroy(p[i]);
    }
    cg_release_scratch_destroy(s);
    cg_catalogue_destroy(cat);
}

static void test_a_new_policy_gets_nothing_of_the_last(void **state)
{
    (void)state;
    cg_catalogue_t *cat = load_shipped();
    cg_policy_def_t da = def_of("sponsor-a", 3), db = def_of("sponsor-b", 3);
    cg_release_scratch_t *s = cg_release_scratch_new();
    cg_buf_t kept, fresh;
    cg_buf_init(&kept);
    cg_buf_init(&fresh);
    cg_value_t vals[64];
    cg_row_t row = condition(vals, "E11.9");
    row.person_key = (cg_slice_t){"4f1c0ffee", 9};
    row.message_id = (cg_slice_t){"MSG00001", 8};
    cg_policy_t *pa = compile(cat, &da);
    release_each(&pa, 1, cat, &row, 1, s, &kept);
    cg_policy_destroy(pa);
    /* a reload: the next policy (another subscriber's) may be given the last one's address;
     * its records must be what a scratch that never saw the last one makes */
    cg_policy_t *pb = compile(cat, &db);
    release_each(&pb, 1, cat, &row, 1, s, &kept);
    cg_release_scratch_t *s2 = cg_release_scratch_new();
    release_each(&pb, 1, cat, &row, 1, s2, &fresh);
    assert_string_equal(kept.data, fresh.data);
    cg_release_scratch_destroy(s2);
    cg_release_scratch_destroy(s);
    cg_policy_destroy(pb);
    cg_buf_free(&kept);
    cg_buf_free(&fresh);
    cg_catalogue_destroy(cat);
}

static void test_policies_granting_too_much_are_refused(void **state)
{
    (void)state;
    cg_catalogue_t *cat = load_shipped();
    char first[300];
    cg_policy_def_t d = def_of("greedy", 3);
    d.levels[4] = CG_ACT_KEEP;
    assert_int_equal(compile_errors(cat, &d, first, sizeof(first)), 1);
    assert_non_null(strstr(first, "levels.4: keep grants level-4"));
    /* a level-2 subscriber cannot have person_id (level 3), so no clinical table */
    const char *tables[] = {"condition_occurrence", "no_such_table"};
    d = def_of("thin", 2);
    d.tables = tables;
    d.n_tables = 2;
    assert_int_equal(compile_errors(cat, &d, first, sizeof(first)), 1);
    assert_non_null(strstr(first, "no target has a table 'no_such_table'"));
    d.n_tables = 1;
    assert_int_equal(compile_errors(cat, &d, first, sizeof(first)), 1);
    assert_non_null(strstr(first, "'condition_occurrence' cannot be released"));
    d = def_of("late", 3);
    d.expires = "2027-02-30";
    assert_int_equal(compile_errors(cat, &d, first, sizeof(first)), 1);
    assert_non_null(strstr(first, "expires"));
    d = def_of("nine", 9);
    assert_true(compile_errors(cat, &d, first, sizeof(first)) >= 1);
    /* the version names the catalogue and changes with the policy */
    d = def_of("v", 3);
    d.label = "2026-12";
    cg_policy_t *p = compile(cat, &d);
    char v1[96];
    snprintf(v1, sizeof(v1), "%s", cg_policy_version(p));
    assert_non_null(strstr(v1, cg_catalogue_version(cat)));
    assert_memory_equal(v1, "2026-12+", 8);
    cg_policy_destroy(p);
    d.max_level = 4;
    p = compile(cat, &d);
    assert_string_not_equal(v1, cg_policy_version(p));
    char *desc = cg_policy_describe(p, cg_target_table_any("person"));
    assert_non_null(strstr(desc, "person_id: re-key (level 3)"));
    free(desc);
    cg_policy_destroy(p);
    cg_catalogue_destroy(cat);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shipped_catalogue_covers_every_column),
        cmocka_unit_test(test_catalogue_errors_are_located),
        cmocka_unit_test(test_code_sets_raise_rows),
        cmocka_unit_test(test_sensitive_row_only_to_its_level),
        cmocka_unit_test(test_subscribers_ids_do_not_link),
        cmocka_unit_test(test_transforms),
        cmocka_unit_test(test_grants_tables_cohorts_and_expiry),
        cmocka_unit_test(test_prepared_rows_release_the_same),
        cmocka_unit_test(test_a_new_policy_gets_nothing_of_the_last),
        cmocka_unit_test(test_policies_granting_too_much_are_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
