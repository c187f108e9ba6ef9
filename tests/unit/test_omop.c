/* test_omop.c - the OMOP CDM v5.4 schema: lookups, value checks and PostgreSQL DDL. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cg_omop.h"

static const cg_omop_column_t *col(const char *table, const char *name)
{
    const cg_omop_column_t *c = cg_omop_column(cg_omop_table(table), name, NULL);
    if (!c)
        fail_msg("no column %s.%s", table, name);
    return c;
}

/* checks a quoted (JSON string) value */
static bool str_ok(const char *table, const char *name, const char *s, char *why, size_t n)
{
    return cg_omop_check_value(col(table, name), s, strlen(s), true, why, n);
}

/* checks a bare JSON literal */
static bool lit_ok(const char *table, const char *name, const char *s, char *why, size_t n)
{
    return cg_omop_check_value(col(table, name), s, strlen(s), false, why, n);
}

static void test_tables(void **state)
{
    (void)state;
    /* the clinical, health-system, derived, metadata, vocabulary and results tables of v5.4 */
    static const char *const names[] = {"person",
                                        "observation_period",
                                        "visit_occurrence",
                                        "visit_detail",
                                        "condition_occurrence",
                                        "drug_exposure",
                                        "procedure_occurrence",
                                        "device_exposure",
                                        "measurement",
                                        "observation",
                                        "death",
                                        "note",
                                        "note_nlp",
                                        "specimen",
                                        "fact_relationship",
                                        "location",
                                        "care_site",
                                        "provider",
                                        "payer_plan_period",
                                        "cost",
                                        "drug_era",
                                        "dose_era",
                                        "condition_era",
                                        "episode",
                                        "episode_event",
                                        "metadata",
                                        "cdm_source",
                                        "concept",
                                        "vocabulary",
                                        "domain",
                                        "concept_class",
                                        "concept_relationship",
                                        "relationship",
                                        "concept_synonym",
                                        "concept_ancestor",
                                        "source_to_concept_map",
                                        "drug_strength",
                                        "cohort",
                                        "cohort_definition"};
    size_t n = sizeof names / sizeof names[0];
    assert_int_equal(cg_omop_table_count(), n);
    for (size_t i = 0; i < n; i++) {
        const cg_omop_table_t *t = cg_omop_table(names[i]);
        assert_non_null(t);
        assert_ptr_equal(t, cg_omop_table_at(i));
        assert_string_equal(t->name, names[i]);
        assert_true(t->n_columns > 0);
    }
    assert_null(cg_omop_table_at(n));
    assert_null(cg_omop_table("Person"));
    assert_null(cg_omop_table("persons"));
    assert_null(cg_omop_table("pers"));
    assert_null(cg_omop_table(NULL));
    assert_ptr_equal(cg_omop_table_n("person_id", 6), cg_omop_table("person"));
    assert_string_equal(cg_omop_table("concept")->schema, "VOCAB");
    assert_string_equal(cg_omop_table("measurement")->schema, "CDM");
    assert_true(cg_omop_table("person")->required);
}

static void test_columns(void **state)
{
    (void)state;
    const cg_omop_table_t *m = cg_omop_table("measurement");
    size_t idx = 99;
    const cg_omop_column_t *c = cg_omop_column(m, "measurement_id", &idx);
    assert_non_null(c);
    assert_int_equal(idx, 0);
    assert_true(c->primary_key && c->required);
    assert_int_equal(c->cdm_type, CG_OMOP_INTEGER);
    assert_int_equal(cg_omop_column_type(c), CG_OMOP_BIGINT);

    c = cg_omop_column(m, "measurement_concept_id", &idx);
    assert_int_equal(idx, 2);
    assert_true(c->concept_id && c->foreign_key && c->required);
    assert_string_equal(c->fk_table, "concept");
    assert_int_equal(cg_omop_column_type(c), CG_OMOP_INTEGER);

    c = cg_omop_column(m, "person_id", NULL);
    assert_string_equal(c->fk_table, "person");
    assert_false(c->concept_id);
    assert_int_equal(cg_omop_column_type(c), CG_OMOP_BIGINT);

    c = cg_omop_column(m, "unit_source_value", NULL);
    assert_int_equal(c->cdm_type, CG_OMOP_VARCHAR);
    assert_int_equal(c->max_length, 50);
    assert_false(c->required);
    assert_null(c->fk_table);

    assert_int_equal(col("measurement", "value_as_number")->cdm_type, CG_OMOP_FLOAT);
    assert_int_equal(col("measurement", "measurement_date")->cdm_type, CG_OMOP_DATE);
    assert_int_equal(col("measurement", "measurement_datetime")->cdm_type, CG_OMOP_DATETIME);
    assert_int_equal(col("note", "note_text")->cdm_type, CG_OMOP_TEXT);
    assert_string_equal(col("note", "note_text")->cdm_datatype, "varchar(MAX)");
    /* the CSV writes "offset" quoted and one type as "Integer" */
    assert_int_equal(col("note_nlp", "offset")->max_length, 50);
    assert_int_equal(col("visit_occurrence", "visit_type_concept_id")->cdm_type, CG_OMOP_INTEGER);

    /* ids: non-concept *_id widened, concept ids and non-id integers kept */
    assert_int_equal(cg_omop_column_type(col("fact_relationship", "fact_id_1")), CG_OMOP_BIGINT);
    assert_int_equal(cg_omop_column_type(col("fact_relationship", "domain_concept_id_1")),
                     CG_OMOP_INTEGER);
    assert_int_equal(cg_omop_column_type(col("concept", "concept_id")), CG_OMOP_INTEGER);
    assert_int_equal(cg_omop_column_type(col("concept_relationship", "concept_id_2")),
                     CG_OMOP_INTEGER);
    assert_int_equal(cg_omop_column_type(col("person", "year_of_birth")), CG_OMOP_INTEGER);
    assert_int_equal(cg_omop_column_type(col("visit_detail", "parent_visit_detail_id")),
                     CG_OMOP_BIGINT);
    assert_int_equal(cg_omop_column_type(col("concept", "vocabulary_id")), CG_OMOP_VARCHAR);

    assert_null(cg_omop_column(m, "nope", NULL));
    assert_null(cg_omop_column(NULL, "person_id", NULL));
    assert_non_null(cg_omop_column_at(m, 0));
    assert_null(cg_omop_column_at(m, m->n_columns));

    assert_string_equal(cg_omop_primary_key(m, &idx)->name, "measurement_id");
    assert_null(cg_omop_primary_key(cg_omop_table("death"), NULL));
    assert_string_equal(cg_omop_primary_key(cg_omop_table("vocabulary"), NULL)->name,
                        "vocabulary_id");

    char buf[32];
    assert_string_equal(cg_omop_pg_type(col("person", "person_source_value"), buf, sizeof buf),
                        "varchar(50)");
    assert_string_equal(cg_omop_pg_type(col("note", "note_text"), buf, sizeof buf), "text");
    assert_string_equal(cg_omop_pg_type(col("measurement", "value_as_number"), buf, sizeof buf),
                        "numeric");
    assert_string_equal(cg_omop_pg_type(col("person", "birth_datetime"), buf, sizeof buf),
                        "timestamp");
}

static void test_integers(void **state)
{
    (void)state;
    char why[256];
    assert_true(lit_ok("person", "person_id", "9223372036854775807", why, sizeof why));
    assert_true(lit_ok("person", "person_id", "4432190384471", why, sizeof why));
    assert_true(lit_ok("person", "person_id", "-1", why, sizeof why));
    assert_false(lit_ok("person", "person_id", "9223372036854775808", why, sizeof why));
    assert_non_null(strstr(why, "out of range for bigint"));
    assert_true(lit_ok("person", "gender_concept_id", "8507", why, sizeof why));
    assert_true(lit_ok("person", "gender_concept_id", "2147483647", why, sizeof why));
    assert_false(lit_ok("person", "gender_concept_id", "2147483648", why, sizeof why));
    assert_string_equal(why, "gender_concept_id: out of range for integer (32 bits)");
    assert_true(lit_ok("person", "gender_concept_id", "-2147483648", why, sizeof why));
    assert_false(lit_ok("person", "year_of_birth", "1980.0", why, sizeof why));
    assert_non_null(strstr(why, "expected an integer"));
    assert_false(lit_ok("person", "year_of_birth", "1e3", why, sizeof why));
    assert_false(lit_ok("person", "year_of_birth", "true", why, sizeof why));
    assert_false(lit_ok("person", "year_of_birth", "01980", why, sizeof why));
    assert_false(str_ok("person", "year_of_birth", "1980", why, sizeof why));
    assert_non_null(strstr(why, "got a string (a value of 4 bytes)"));
    assert_null(strstr(why, "1980")); /* never the value itself */
    assert_false(str_ok("person", "year_of_birth", "abc", why, sizeof why));
}

static void test_floats(void **state)
{
    (void)state;
    char why[256];
    assert_true(lit_ok("measurement", "value_as_number", "7.2", why, sizeof why));
    assert_true(lit_ok("measurement", "value_as_number", "-0.5e-3", why, sizeof why));
    assert_true(lit_ok("measurement", "value_as_number", "140", why, sizeof why));
    assert_false(lit_ok("measurement", "value_as_number", ".5", why, sizeof why));
    assert_false(lit_ok("measurement", "value_as_number", "NaN", why, sizeof why));
    assert_false(str_ok("measurement", "value_as_number", "7.2", why, sizeof why));
    assert_non_null(strstr(why, "expected a JSON number"));
}

static void test_strings(void **state)
{
    (void)state;
    char why[256];
    char s[64];
    memset(s, 'a', 50);
    s[50] = '\0';
    assert_true(str_ok("person", "person_source_value", s, why, sizeof why));
    s[50] = 'a';
    s[51] = '\0';
    assert_false(str_ok("person", "person_source_value", s, why, sizeof why));
    assert_non_null(strstr(why, "person_source_value: 51 characters, longer than varchar(50)"));
    /* PostgreSQL counts characters: 50 x "é" is 100 bytes and fits varchar(50) */
    char u[128] = "";
    for (int i = 0; i < 50; i++)
        strcat(u, "\xc3\xa9");
    assert_true(str_ok("person", "person_source_value", u, why, sizeof why));
    strcat(u, "\xc3\xa9");
    assert_false(str_ok("person", "person_source_value", u, why, sizeof why));
    assert_non_null(strstr(why, "51 characters"));
    /* a 2-byte character is one character: varchar(1) takes it */
    assert_true(str_ok("concept", "standard_concept", "\xc3\xa9", why, sizeof why));
    assert_false(str_ok("concept", "standard_concept", "SC", why, sizeof why));
    assert_true(str_ok("concept", "standard_concept", "\xe4\xb8\xad", why, sizeof why));
    assert_true(str_ok("concept", "standard_concept", "\xf0\x9f\x98\x80", why, sizeof why));
    /* bad UTF-8: truncated, overlong, surrogate, stray continuation; and NUL */
    assert_false(str_ok("person", "person_source_value", "ab\xc3", why, sizeof why));
    assert_non_null(strstr(why, "invalid UTF-8 at byte 2"));
    assert_false(str_ok("person", "person_source_value", "\xc0\xaf", why, sizeof why));
    assert_false(str_ok("person", "person_source_value", "\xed\xa0\x80", why, sizeof why));
    assert_false(str_ok("person", "person_source_value", "\x80", why, sizeof why));
    assert_false(cg_omop_check_value(col("person", "person_source_value"), "a\0b", 3, true, why,
                                     sizeof why));
    assert_non_null(strstr(why, "NUL character at byte 1"));
    /* varchar(MAX) has no limit but is still text */
    char *big = malloc(100001);
    memset(big, 'x', 100000);
    big[100000] = '\0';
    assert_true(str_ok("note", "note_text", big, why, sizeof why));
    free(big);
    /* a number is not a string */
    assert_false(lit_ok("measurement", "unit_source_value", "7", why, sizeof why));
    assert_non_null(strstr(why, "expected a JSON string"));
    assert_true(str_ok("measurement", "unit_source_value", "", why, sizeof why));
}

static void test_dates(void **state)
{
    (void)state;
    char why[256];
    const char *good_dates[] = {"2024-03-14", "2024-02-29", "2000-02-29", "0001-01-01",
                                "9999-12-31"};
    const char *bad_dates[] = {"2024-3-14",
                               "20240314",
                               "2023-02-29",
                               "1900-02-29",
                               "2024-13-01",
                               "2024-04-31",
                               "2024-00-10",
                               "0000-01-01",
                               "2024-03-14T10:00",
                               "14/03/2024",
                               ""};
    for (size_t i = 0; i < sizeof good_dates / sizeof *good_dates; i++)
        if (!str_ok("measurement", "measurement_date", good_dates[i], why, sizeof why))
            fail_msg("%s refused: %s", good_dates[i], why);
    for (size_t i = 0; i < sizeof bad_dates / sizeof *bad_dates; i++)
        if (str_ok("measurement", "measurement_date", bad_dates[i], why, sizeof why))
            fail_msg("%s accepted as date", bad_dates[i]);
    assert_false(str_ok("measurement", "measurement_date", "2023-02-29", why, sizeof why));
    assert_string_equal(why,
                        "measurement_date: day out of range for its month (a value of 10 bytes)");
    assert_false(lit_ok("measurement", "measurement_date", "20240314", why, sizeof why));

    const char *good_ts[] = {
        "2024-03-14T10:30:00",        "2024-03-14 10:30:00",  "2024-03-14T10:30",
        "2024-03-14T10:30:00.123456", "2024-03-14T10:30:00Z", "2024-03-14T10:30:00+08:00",
        "2024-03-14T10:30:00-0500",   "2024-03-14T10:30+01",  "2024-03-14"};
    const char *bad_ts[] = {"2024-03-14T25:00:00",       "2024-03-14T10:60:00",
                            "2024-03-14T10:30:61",       "2024-03-14T10",
                            "2024-03-14T10:30:00.",      "2024-03-14T10:30:00+8",
                            "2024-03-14T10:30:00+16:00", "2024-03-14X10:30:00",
                            "2024-03-14T10:30:00 UTC",   "2024-03"};
    for (size_t i = 0; i < sizeof good_ts / sizeof *good_ts; i++)
        if (!str_ok("measurement", "measurement_datetime", good_ts[i], why, sizeof why))
            fail_msg("%s refused: %s", good_ts[i], why);
    for (size_t i = 0; i < sizeof bad_ts / sizeof *bad_ts; i++)
        if (str_ok("measurement", "measurement_datetime", bad_ts[i], why, sizeof why))
            fail_msg("%s accepted as datetime", bad_ts[i]);
}

static void test_nulls(void **state)
{
    (void)state;
    char why[256];
    assert_false(cg_omop_check_value(col("person", "person_id"), NULL, 0, false, why, sizeof why));
    assert_string_equal(why, "person_id: required (NOT NULL) but null or missing");
    assert_true(
        cg_omop_check_value(col("person", "birth_datetime"), NULL, 0, false, why, sizeof why));
    assert_false(cg_omop_check_json(col("death", "death_date"), json_null(), why, sizeof why));
    assert_true(cg_omop_check_json(col("death", "death_datetime"), NULL, NULL, 0));
}

static void test_json(void **state)
{
    (void)state;
    char why[256], buf[64];
    const char *text;
    size_t len;
    bool quoted;
    json_t *v = json_real(7.0);
    assert_true(cg_omop_json_text(v, buf, sizeof buf, &text, &len, &quoted));
    assert_string_equal(text, "7.0");
    assert_false(cg_omop_check_json(col("person", "year_of_birth"), v, why, sizeof why));
    assert_true(cg_omop_check_json(col("measurement", "value_as_number"), v, why, sizeof why));
    json_decref(v);
    v = json_real(7.2);
    cg_omop_json_text(v, buf, sizeof buf, &text, &len, &quoted);
    assert_string_equal(text, "7.2");
    json_decref(v);
    v = json_integer(8734165230923LL);
    assert_true(cg_omop_check_json(col("measurement", "measurement_id"), v, why, sizeof why));
    assert_false(
        cg_omop_check_json(col("measurement", "measurement_concept_id"), v, why, sizeof why));
    json_decref(v);
    v = json_pack("{s:i}", "a", 1);
    assert_false(cg_omop_check_json(col("measurement", "unit_source_value"), v, why, sizeof why));
    assert_string_equal(why, "unit_source_value: expected a scalar, got a JSON object");
    json_decref(v);

    json_error_t err;
    json_t *row = json_loads("{\"person_id\":4432190384471,\"gender_concept_id\":8507,"
                             "\"year_of_birth\":1980,\"race_concept_id\":0,"
                             "\"ethnicity_concept_id\":0,\"person_source_value\":\"ab12\"}",
                             0, &err);
    assert_non_null(row);
    const cg_omop_table_t *person = cg_omop_table("person");
    assert_int_equal(cg_omop_check_row(person, row, why, sizeof why), 0);
    json_object_del(row, "year_of_birth");
    json_object_set_new(row, "nickname", json_string("x"));
    assert_int_equal(cg_omop_check_row(person, row, why, sizeof why), 2);
    assert_string_equal(why, "person: no column nickname in OMOP CDM v5.4");
    json_decref(row);
}

static char *ddl_text(const char *schema)
{
    char *text = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&text, &size);
    assert_non_null(f);
    assert_int_equal(cg_omop_write_ddl(f, schema), 0);
    fclose(f);
    return text;
}

static void test_ddl(void **state)
{
    (void)state;
    char *ddl = ddl_text(NULL);
    assert_non_null(strstr(ddl, "CREATE TABLE person (\n    person_id bigint NOT NULL,\n"));
    assert_non_null(strstr(ddl, "    person_id bigint NOT NULL,"));
    assert_non_null(strstr(ddl, "    measurement_concept_id integer NOT NULL,"));
    assert_non_null(strstr(ddl, "    measurement_id bigint NOT NULL,"));
    assert_non_null(strstr(ddl, "    provider_id bigint NULL,"));
    assert_non_null(strstr(ddl, "    care_site_id bigint NULL,"));
    assert_non_null(strstr(ddl, "    visit_occurrence_id bigint NULL,"));
    assert_non_null(strstr(ddl, "    person_source_value varchar(50) NULL,"));
    assert_non_null(strstr(ddl, "    value_as_number numeric NULL,"));
    assert_non_null(strstr(ddl, "    measurement_datetime timestamp NULL,"));
    assert_non_null(strstr(ddl, "    note_text text NOT NULL,"));
    assert_non_null(strstr(ddl, "    \"offset\" varchar(50) NULL,"));
    assert_non_null(strstr(ddl, "    fact_id_1 bigint NOT NULL,"));
    assert_non_null(strstr(ddl, "    PRIMARY KEY (person_id)\n);"));
    assert_non_null(strstr(ddl, "    PRIMARY KEY (vocabulary_id)\n);"));
    assert_null(strstr(ddl, "FOREIGN KEY"));
    assert_null(strstr(ddl, "REFERENCES"));
    /* one CREATE TABLE per table */
    size_t n = 0;
    for (const char *p = ddl; (p = strstr(p, "CREATE TABLE ")); p++)
        n++;
    assert_int_equal(n, cg_omop_table_count());
    free(ddl);

    ddl = ddl_text("cg_test");
    assert_non_null(strstr(ddl, "CREATE SCHEMA IF NOT EXISTS cg_test;"));
    assert_non_null(strstr(ddl, "CREATE TABLE cg_test.measurement ("));
    free(ddl);
    ddl = ddl_text("Odd Name");
    assert_non_null(strstr(ddl, "CREATE TABLE \"Odd Name\".person ("));
    free(ddl);
}

static void test_idents(void **state)
{
    (void)state;
    assert_false(cg_omop_ident_needs_quotes("person_id"));
    assert_true(cg_omop_ident_needs_quotes("offset"));
    assert_true(cg_omop_ident_needs_quotes("Person"));
    assert_true(cg_omop_ident_needs_quotes("1x"));
    assert_true(cg_omop_ident_needs_quotes(""));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tables),   cmocka_unit_test(test_columns),
        cmocka_unit_test(test_integers), cmocka_unit_test(test_floats),
        cmocka_unit_test(test_strings),  cmocka_unit_test(test_dates),
        cmocka_unit_test(test_nulls),    cmocka_unit_test(test_json),
        cmocka_unit_test(test_ddl),      cmocka_unit_test(test_idents),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
