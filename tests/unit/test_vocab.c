/* test_vocab.c - vocabulary table, project CSV loader, Athena loader, coding systems.
 *
 * Fixtures in tests/fixtures/vocab/: csv/ (project tables, good and bad) and athena/ (a tiny
 * Athena download; codes X01.* and ids 2000000xxx are invented test data in the local-concept
 * range, 3004410 and 8554 are real).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cg_vocab.h"

#define FIX CG_TEST_FIXTURES "/vocab"

static cg_slice_t S(const char *s)
{
    return (cg_slice_t){s, strlen(s)};
}

static cg_vocab_hit_t must_find(const cg_vocab_t *v, const char *voc, const char *code)
{
    cg_vocab_hit_t hit;
    if (!cg_vocab_lookup(v, S(voc), S(code), &hit))
        fail_msg("(%s, %s) not found", voc, code);
    return hit;
}

static void test_domains_and_systems(void **state)
{
    (void)state;
    for (int d = 1; d < CG_VOCAB_DOMAIN__COUNT; d++)
        assert_int_equal(cg_vocab_domain_parse(S(cg_vocab_domain_name((cg_vocab_domain_t)d))), d);
    assert_int_equal(cg_vocab_domain_parse(S("condition")), CG_VOCAB_DOMAIN_OTHER);
    assert_int_equal(cg_vocab_domain_parse(S("Meas Value Operator")),
                     CG_VOCAB_DOMAIN_MEAS_VALUE_OPERATOR);

    assert_string_equal(cg_vocab_system(S("LN")), "LOINC");
    assert_string_equal(cg_vocab_system(S("ln")), "LOINC");
    assert_string_equal(cg_vocab_system(S("SCT")), "SNOMED");
    assert_string_equal(cg_vocab_system(S("I10")), "ICD10");
    assert_string_equal(cg_vocab_system(S("I10C")), "ICD10CM");
    assert_string_equal(cg_vocab_system(S("ICD10CM")), "ICD10CM");
    assert_string_equal(cg_vocab_system(S("I9C")), "ICD9CM");
    assert_string_equal(cg_vocab_system(S("RXNORM")), "RxNorm");
    assert_string_equal(cg_vocab_system(S("CVX")), "CVX");
    assert_string_equal(cg_vocab_system(S("NDC")), "NDC");
    assert_string_equal(cg_vocab_system(S("UCUM")), "UCUM");
    assert_string_equal(cg_vocab_system(S("HL70001")), "HL7_0001");
    assert_string_equal(cg_vocab_system(S("HL70004")), "HL7_0004");
    assert_string_equal(cg_vocab_system(S("2.16.840.1.113883.6.1")), "LOINC");
    assert_string_equal(cg_vocab_system(S("urn:oid:2.16.840.1.113883.6.96")), "SNOMED");
    assert_string_equal(cg_vocab_system(S(" 2.16.840.1.113883.6.90 ")), "ICD10CM");
    assert_string_equal(cg_vocab_system(S("2.16.840.1.113883.6.3")), "ICD10");
    assert_string_equal(cg_vocab_system(S("2.16.840.1.113883.6.88")), "RxNorm");
    assert_string_equal(cg_vocab_system(S("2.16.840.1.113883.12.292")), "CVX");
    assert_string_equal(cg_vocab_system(S("2.16.840.1.113883.6.8")), "UCUM");
    assert_string_equal(cg_vocab_system(S("2.16.840.1.113883.6.69")), "NDC");
    assert_string_equal(cg_vocab_system(S("2.16.840.1.113883.6.103")), "ICD9CM");
    assert_null(cg_vocab_system(S("99ZZZ")));
    assert_null(cg_vocab_system(S("2.16.840.1.113883.6.1.1")));
    assert_null(cg_vocab_system(S("")));
    assert_null(cg_vocab_system((cg_slice_t){NULL, 0}));
}

static void test_csv_good(void **state)
{
    (void)state;
    cg_vocab_t *v = cg_vocab_new();
    cg_error_t errs[8];
    size_t n = 99;
    cg_err_t rc = cg_vocab_load_csv(v, FIX "/csv/good.csv", errs, 8, &n);
    if (rc != CG_OK)
        fail_msg("%s:%d:%d: %s", errs[0].file, errs[0].line, errs[0].column, errs[0].text);
    assert_int_equal(n, 0);
    assert_int_equal(cg_vocab_count(v), 4);

    cg_vocab_hit_t h = must_find(v, "TESTV", "A1"); /* empty standard: itself */
    assert_int_equal(h.source_concept_id, 2000000201);
    assert_int_equal(h.concept_id, 2000000201);
    assert_int_equal(h.domain, CG_VOCAB_DOMAIN_MEASUREMENT);
    assert_string_equal(h.domain_id, "Measurement");

    h = must_find(v, "TESTV", "A,2"); /* quoted code with a comma */
    assert_int_equal(h.source_concept_id, 2000000202);
    assert_int_equal(h.concept_id, 2000000101);
    assert_string_equal(h.domain_id, "Condition");

    h = must_find(v, "TESTV", "A3"); /* after a quoted line break and a blank line */
    assert_int_equal(h.concept_id, 0);
    assert_int_equal(h.source_concept_id, 2000000203);

    h = must_find(v, "HL7_0004", "I"); /* last line without a newline */
    assert_int_equal(h.concept_id, 9201);
    assert_int_equal(h.source_concept_id, 0);
    assert_int_equal(h.domain, CG_VOCAB_DOMAIN_VISIT);

    /* exact match only; the wrong vocabulary or case finds nothing */
    assert_false(cg_vocab_lookup(v, S("TESTV"), S("a1"), &h));
    assert_int_equal(h.concept_id, 0);
    assert_false(cg_vocab_lookup(v, S("TESTW"), S("A1"), &h));
    assert_false(cg_vocab_lookup(v, S("TESTV"), S(""), &h));
    assert_true(cg_vocab_lookup(v, S("TESTV"), S("A1"), NULL));
    /* lookups take slices: no NUL needed after the code */
    assert_true(cg_vocab_lookup(v, (cg_slice_t){"TESTVX", 5}, (cg_slice_t){"A1xyz", 2}, &h));

    assert_true(cg_vocab_lookup_system(v, S("HL70004"), S("I"), &h));
    assert_int_equal(h.concept_id, 9201);
    assert_true(cg_vocab_lookup_system(v, S("TESTV"), S("A1"), &h)); /* a vocabulary_id as is */
    cg_vocab_destroy(v);
}

static int has_error(const cg_error_t *errs, size_t n, int line, int col, const char *needle)
{
    for (size_t i = 0; i < n; i++)
        if (errs[i].line == line && errs[i].column == col && strstr(errs[i].text, needle) &&
            errs[i].code == CG_ERR_CONFIG && strstr(errs[i].file, "bad.csv"))
            return 1;
    return 0;
}

static void test_csv_bad_reports_every_line(void **state)
{
    (void)state;
    cg_vocab_t *v = cg_vocab_new();
    cg_error_t errs[32];
    size_t n = 0;
    assert_int_equal(cg_vocab_load_csv(v, FIX "/csv/bad.csv", errs, 32, &n), CG_ERR_CONFIG);
    for (size_t i = 0; i < n && i < 32; i++)
        printf("    %s:%d:%d: %s\n", errs[i].file, errs[i].line, errs[i].column, errs[i].text);
    assert_int_equal(n, 9);
    assert_true(has_error(errs, n, 2, 10, "'12x'"));
    assert_true(has_error(errs, n, 3, 21, "'Measurment'"));
    assert_true(has_error(errs, n, 4, 1, "4 fields where the header has 5"));
    assert_true(has_error(errs, n, 6, 7, "duplicate code 'B4'"));
    assert_true(has_error(errs, n, 7, 8, "quote inside an unquoted field"));
    assert_true(has_error(errs, n, 8, 1, "vocabulary_id"));
    assert_true(has_error(errs, n, 9, 10, "both 0"));
    assert_true(has_error(errs, n, 10, 41, "' junk'"));
    assert_true(has_error(errs, n, 11, 11, "'99999999999'"));
    /* the good line still loaded */
    assert_int_equal(must_find(v, "TESTV", "B4").concept_id, 2000000304);
    cg_vocab_destroy(v);

    /* a small cap keeps the first errors and still counts them all */
    v = cg_vocab_new();
    assert_int_equal(cg_vocab_load_csv(v, FIX "/csv/bad.csv", errs, 2, &n), CG_ERR_CONFIG);
    assert_int_equal(n, 9);
    assert_int_equal(errs[0].line, 2);
    assert_int_equal(errs[1].line, 3);
    assert_int_equal(cg_vocab_load_csv(v, FIX "/csv/bad.csv", NULL, 0, NULL), CG_ERR_CONFIG);
    cg_vocab_destroy(v);
}

static void test_csv_bad_files(void **state)
{
    (void)state;
    cg_vocab_t *v = cg_vocab_new();
    cg_error_t errs[8];
    size_t n = 0;
    assert_int_equal(cg_vocab_load_csv(v, FIX "/csv/bad_header.csv", errs, 8, &n), CG_ERR_CONFIG);
    assert_int_equal(n, 3); /* unknown column, and concept_id and domain_id missing */
    assert_int_equal(errs[0].line, 1);
    assert_int_equal(errs[0].column, 41);
    assert_non_null(strstr(errs[0].text, "'colour'"));
    assert_non_null(strstr(errs[1].text, "concept_id"));

    assert_int_equal(cg_vocab_load_csv(v, FIX "/csv/unterminated.csv", errs, 8, &n), CG_ERR_CONFIG);
    assert_int_equal(n, 1);
    assert_int_equal(errs[0].line, 3);
    assert_int_equal(errs[0].column, 33);
    assert_non_null(strstr(errs[0].text, "never closed"));
    assert_int_equal(must_find(v, "TESTV", "C1").concept_id, 2000000401);

    assert_int_equal(cg_vocab_load_csv(v, FIX "/csv/nonexistent.csv", errs, 8, &n), CG_ERR_IO);
    assert_int_equal(n, 1);
    assert_non_null(strstr(errs[0].file, "nonexistent.csv"));
    cg_vocab_destroy(v);
}

static void test_later_load_replaces(void **state)
{
    (void)state;
    char path[] = "/tmp/cg_vocab_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *t = "vocabulary_id,concept_code,concept_id,domain_id\nHL7_0004,I,0,Visit\n";
    assert_int_equal(write(fd, t, strlen(t)), (ssize_t)strlen(t));
    close(fd);
    cg_vocab_t *v = cg_vocab_new();
    cg_error_t err;
    size_t n;
    assert_int_equal(cg_vocab_load_csv(v, FIX "/csv/good.csv", &err, 1, &n), CG_OK);
    assert_int_equal(must_find(v, "HL7_0004", "I").concept_id, 9201);
    /* a separate load call: not a duplicate, it replaces; concept 0 with no standard column is
     * "maps to nothing" and is refused, so nothing changes */
    assert_int_equal(cg_vocab_load_csv(v, path, &err, 1, &n), CG_ERR_CONFIG);
    assert_non_null(strstr(err.text, "both 0"));
    assert_int_equal(must_find(v, "HL7_0004", "I").concept_id, 9201);
    fd = open(path, O_WRONLY | O_TRUNC);
    t = "vocabulary_id,concept_code,concept_id,domain_id,standard_concept_id\nHL7_0004,I,0,Visit,"
        "262\n";
    assert_int_equal(write(fd, t, strlen(t)), (ssize_t)strlen(t));
    close(fd);
    assert_int_equal(cg_vocab_load_csv(v, path, &err, 1, &n), CG_OK);
    assert_int_equal(must_find(v, "HL7_0004", "I").concept_id, 262);
    assert_int_equal(cg_vocab_count(v), 4);
    unlink(path);
    cg_vocab_destroy(v);
}

/* OMOP SOURCE_TO_CONCEPT_MAP files (Usagi's export layout): target 0 is "reviewed, no
 * mapping", retired rows are left out, one-to-many keeps the lowest target, tabs work too. */
static void test_stcm(void **state)
{
    (void)state;
    cg_vocab_t *v = cg_vocab_new();
    cg_error_t errs[8];
    size_t n = 0;
    assert_int_equal(cg_vocab_load_csv_dir(v, CG_SOURCE_DIR "/specs/vocab", errs, 8, &n), CG_OK);
    assert_int_equal(cg_vocab_load_csv(v, FIX "/stcm/good.csv", errs, 8, &n), CG_OK);
    assert_int_equal(n, 0);
    cg_vocab_hit_t hit = must_find(v, "HOSPLAB", "GLYHB");
    assert_int_equal(hit.concept_id, 3004410);
    assert_int_equal(hit.source_concept_id, 0);
    assert_int_equal(hit.flags, 0);
    /* reviewed, no mapping: known, concept 0, no error */
    hit = must_find(v, "HOSPLAB", "MISC1");
    assert_int_equal(hit.concept_id, 0);
    /* D, ended and not yet in force: not loaded */
    assert_false(cg_vocab_lookup(v, S("HOSPLAB"), S("OLD1"), NULL));
    assert_false(cg_vocab_lookup(v, S("HOSPLAB"), S("GONE"), NULL));
    assert_false(cg_vocab_lookup(v, S("HOSPLAB"), S("LATER"), NULL));
    hit = must_find(v, "HOSPLAB", "MULTI");
    assert_int_equal(hit.concept_id, 3004501);
    assert_int_equal(hit.flags, CG_VOCAB_MULTI_MAP);
    cg_vocab_load_stats_t st;
    cg_vocab_last_load(v, &st);
    assert_int_equal(st.codes, 4);
    assert_int_equal(st.unmapped, 1);
    assert_int_equal(st.not_valid, 3);
    assert_int_equal(st.overridden, 0);
    assert_string_equal(st.vocabularies, "HOSPLAB");
    assert_true(cg_vocab_has_vocabulary(v, S("HOSPLAB")));
    assert_true(cg_vocab_has_vocabulary(v, S("LN"))); /* HL7 0396's name for LOINC */
    assert_false(cg_vocab_has_vocabulary(v, S("CPTX")));
    /* no domain in STCM: the target's, when the target is a loaded concept */
    assert_null(must_find(v, "HOSPLAB", "GLYHB").domain_id);
    cg_vocab_resolve_domains(v);
    assert_int_equal(must_find(v, "HOSPLAB", "GLYHB").domain, CG_VOCAB_DOMAIN_MEASUREMENT);

    /* tab-separated, YYYYMMDD dates */
    assert_int_equal(cg_vocab_load_csv(v, FIX "/stcm/tabs.csv", errs, 8, &n), CG_OK);
    assert_int_equal(must_find(v, "HOSPLAB2", "K+").concept_id, 3023103);
    cg_vocab_destroy(v);
}

static void test_stcm_bad(void **state)
{
    (void)state;
    cg_vocab_t *v = cg_vocab_new();
    cg_error_t errs[16];
    size_t n = 0;
    assert_int_equal(cg_vocab_load_csv(v, FIX "/stcm/bad.csv", errs, 16, &n), CG_ERR_CONFIG);
    for (size_t i = 0; i < n && i < 16; i++)
        printf("    %s:%d:%d: %s\n", errs[i].file, errs[i].line, errs[i].column, errs[i].text);
    assert_int_equal(n, 6);
    assert_true(has_error(errs, n, 2, 12, "target_concept_id is not an integer"));
    assert_true(has_error(errs, n, 3, 1, "source_code must be"));
    assert_true(has_error(errs, n, 4, 14, "valid_start_date is not a date"));
    assert_true(has_error(errs, n, 5, 25, "before valid_start_date"));
    assert_true(has_error(errs, n, 6, 16, "invalid_reason"));
    assert_true(has_error(errs, n, 7, 1, "5 fields where the header has 6"));
    for (size_t i = 0; i < n; i++)
        assert_non_null(strstr(errs[i].file, "stcm/bad.csv"));
    assert_int_equal(must_find(v, "HOSPLAB", "A7").concept_id, 7); /* the good row loaded */
    assert_int_equal(cg_vocab_load_csv(v, FIX "/stcm/header_bad.csv", errs, 16, &n), CG_ERR_CONFIG);
    assert_int_equal(n, 2); /* unknown target_id, and target_concept_id missing */
    assert_true(has_error(errs, n, 1, 34, "'target_id'"));
    assert_true(has_error(errs, n, 1, 1, "lacks the column 'target_concept_id'"));
    cg_vocab_destroy(v);
}

/* A later load call (a later layer) overrides codes by (vocabulary, code) and says which. */
static void test_layer_override_stats(void **state)
{
    (void)state;
    char path[] = "/tmp/cg_vocab_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *t = "source_code,source_vocabulary_id,target_concept_id\n4548-4,LOINC,0\n"
                    "NEW,LOINC,3004501\n";
    assert_int_equal(write(fd, t, strlen(t)), (ssize_t)strlen(t));
    close(fd);
    cg_vocab_t *v = cg_vocab_new();
    cg_error_t err;
    size_t n;
    assert_int_equal(cg_vocab_load_csv_dir(v, CG_SOURCE_DIR "/specs/vocab", &err, 1, &n), CG_OK);
    assert_int_equal(must_find(v, "LOINC", "4548-4").concept_id, 3004410);
    assert_int_equal(cg_vocab_load_csv(v, path, &err, 1, &n), CG_OK);
    assert_int_equal(must_find(v, "LOINC", "4548-4").concept_id, 0);
    cg_vocab_load_stats_t st;
    cg_vocab_last_load(v, &st);
    assert_int_equal(st.codes, 2);
    assert_int_equal(st.overridden, 1);
    assert_int_equal(st.n_examples, 1);
    assert_string_equal(st.examples[0], "LOINC 4548-4 (was 3004410, now 0)");
    unlink(path);
    cg_vocab_destroy(v);
}

static void test_athena(void **state)
{
    (void)state;
    cg_vocab_t *v = cg_vocab_new();
    cg_error_t err;
    cg_err_t rc = cg_vocab_load_athena(v, FIX "/athena", NULL, 0, &err);
    if (rc != CG_OK)
        fail_msg("%s:%d:%d: %s", err.file, err.line, err.column, err.text);
    assert_int_equal(cg_vocab_count(v), 12); /* X01.6 twice in the file */

    cg_vocab_hit_t h = must_find(v, "LOINC", "4548-4");
    assert_int_equal(h.concept_id, 3004410);
    assert_int_equal(h.source_concept_id, 3004410);
    assert_int_equal(h.domain, CG_VOCAB_DOMAIN_MEASUREMENT);
    assert_int_equal(cg_vocab_unit(v, S("%")), 8554);
    assert_int_equal(cg_vocab_unit(v, S("mg/dL")), 0);

    h = must_find(v, "ICD10CM", "X01.1"); /* "Maps to" followed, "Is a" ignored */
    assert_int_equal(h.source_concept_id, 2000000001);
    assert_int_equal(h.concept_id, 2000000101);
    assert_string_equal(h.domain_id, "Condition");
    assert_int_equal(h.flags, 0);

    h = must_find(v, "ICD10CM", "X01.2"); /* two targets: lowest id, its domain */
    assert_int_equal(h.concept_id, 2000000102);
    assert_int_equal(h.domain, CG_VOCAB_DOMAIN_OBSERVATION);
    assert_true(h.flags & CG_VOCAB_MULTI_MAP);

    h = must_find(v, "ICD10CM", "X01.3"); /* deprecated, unmapped: own domain kept */
    assert_int_equal(h.concept_id, 0);
    assert_int_equal(h.source_concept_id, 2000000003);
    assert_true(h.flags & CG_VOCAB_INVALID);
    assert_string_equal(h.domain_id, "Condition");

    h = must_find(v, "ICD10CM", "X01.4"); /* its only mapping is invalid */
    assert_int_equal(h.concept_id, 0);

    h = must_find(v, "ICD10CM", "X01.5"); /* a condition code that maps to a lab */
    assert_int_equal(h.concept_id, 3004410);
    assert_int_equal(h.domain, CG_VOCAB_DOMAIN_MEASUREMENT);

    h = must_find(v, "ICD10CM", "X01.6"); /* the valid duplicate wins */
    assert_int_equal(h.source_concept_id, 2000000007);
    assert_int_equal(h.concept_id, 2000000101);
    assert_false(h.flags & CG_VOCAB_INVALID);

    h = must_find(v, "SNOMED", "9000004"); /* classification: not standard */
    assert_int_equal(h.concept_id, 0);
    h = must_find(v, "SNOMED", "9000002");
    assert_int_equal(h.concept_id, 2000000102);

    assert_true(cg_vocab_lookup_system(v, S("I10C"), S("X01.1"), &h));
    assert_true(cg_vocab_lookup_system(v, S("2.16.840.1.113883.6.1"), S("4548-4"), &h));
    assert_int_equal(h.concept_id, 3004410);
    cg_vocab_destroy(v);
}

static void test_athena_filtered(void **state)
{
    (void)state;
    cg_vocab_t *v = cg_vocab_new();
    cg_error_t err;
    const char *only[] = {"ICD10CM"};
    cg_err_t rc = cg_vocab_load_athena(v, FIX "/athena", only, 1, &err);
    if (rc != CG_OK)
        fail_msg("%s:%d:%d: %s", err.file, err.line, err.column, err.text);
    assert_int_equal(cg_vocab_count(v), 6);
    cg_vocab_hit_t h;
    assert_false(cg_vocab_lookup(v, S("LOINC"), S("4548-4"), &h));
    assert_false(cg_vocab_lookup(v, S("SNOMED"), S("9000001"), &h));
    /* targets outside the filter still give their domain (second pass over CONCEPT.csv) */
    h = must_find(v, "ICD10CM", "X01.2");
    assert_int_equal(h.concept_id, 2000000102);
    assert_int_equal(h.domain, CG_VOCAB_DOMAIN_OBSERVATION);
    h = must_find(v, "ICD10CM", "X01.5");
    assert_int_equal(h.concept_id, 3004410);
    assert_int_equal(h.domain, CG_VOCAB_DOMAIN_MEASUREMENT);
    cg_vocab_destroy(v);
}

static void test_athena_errors(void **state)
{
    (void)state;
    cg_vocab_t *v = cg_vocab_new();
    cg_error_t err;
    assert_int_equal(cg_vocab_load_athena(v, FIX "/athena_bad", NULL, 0, &err), CG_ERR_CONFIG);
    assert_non_null(strstr(err.file, "athena_bad/CONCEPT.csv"));
    assert_int_equal(err.line, 3);
    assert_non_null(strstr(err.text, "8 tab-separated fields"));
    assert_int_equal(cg_vocab_load_athena(v, FIX "/nonexistent", NULL, 0, &err), CG_ERR_IO);
    assert_non_null(strstr(err.file, "CONCEPT.csv"));
    /* a project CSV is not an Athena file */
    assert_int_equal(cg_vocab_load_athena(v, FIX "/csv", NULL, 0, &err), CG_ERR_IO);
    cg_vocab_destroy(v);
}

/* Every shipped table loads without error, and the ids the shipped specs rely on are there. */
static void test_shipped_tables(void **state)
{
    (void)state;
    cg_vocab_t *v = cg_vocab_new();
    cg_error_t errs[16];
    size_t n = 0;
    cg_err_t rc = cg_vocab_load_csv_dir(v, CG_SOURCE_DIR "/specs/vocab", errs, 16, &n);
    for (size_t i = 0; i < n && i < 16; i++)
        printf("    %s:%d:%d: %s\n", errs[i].file, errs[i].line, errs[i].column, errs[i].text);
    assert_int_equal(rc, CG_OK);
    assert_int_equal(n, 0);
    assert_true(cg_vocab_count(v) >= 25);
    cg_vocab_hit_t h;
    assert_true(cg_vocab_lookup_system(v, S("HL70004"), S("E"), &h));
    assert_int_equal(h.concept_id, 9203);
    assert_int_equal(h.domain, CG_VOCAB_DOMAIN_VISIT);
    assert_true(cg_vocab_lookup_system(v, S("2.16.840.1.113883.5.4"), S("AMB"), &h));
    assert_int_equal(h.concept_id, 9202);
    assert_true(cg_vocab_lookup_system(v, S("HL70001"), S("F"), &h));
    assert_int_equal(h.concept_id, 8532);
    assert_int_equal(h.domain, CG_VOCAB_DOMAIN_GENDER);
    assert_true(cg_vocab_lookup_system(v, S("LN"), S("4548-4"), &h));
    assert_int_equal(h.concept_id, 3004410);
    assert_int_equal(h.source_concept_id, 3004410);
    assert_int_equal(cg_vocab_unit(v, S("%")), 8554);
    assert_int_equal(cg_vocab_unit(v, S("mg/dL")), 8840);
    assert_int_equal(cg_vocab_unit(v, S("mg/dl")), 0); /* UCUM is case-sensitive */
    h = must_find(v, "CG_Operator", "<=");
    assert_int_equal(h.concept_id, 4171754);
    assert_int_equal(h.domain, CG_VOCAB_DOMAIN_MEAS_VALUE_OPERATOR);
    assert_int_equal(must_find(v, "CG_Operator", ">").concept_id, 4172704);
    h = must_find(v, "CG_Type", "Lab");
    assert_int_equal(h.concept_id, 32856);
    assert_int_equal(h.domain, CG_VOCAB_DOMAIN_TYPE_CONCEPT);

    /* loading the folder twice in one call would be duplicates; a second call replaces */
    assert_int_equal(cg_vocab_load_csv_dir(v, CG_SOURCE_DIR "/specs/vocab", errs, 16, &n), CG_OK);
    cg_vocab_destroy(v);
    cg_vocab_destroy(NULL);
    assert_int_equal(cg_vocab_count(NULL), 0);
    assert_false(cg_vocab_lookup(NULL, S("UCUM"), S("%"), &h));
    assert_int_equal(cg_vocab_unit(NULL, S("%")), 0);
}

/* Growth and rehashing with many codes; memory stays proportional. */
static void test_many_codes(void **state)
{
    (void)state;
    char path[] = "/tmp/cg_vocab_many_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fprintf(f, "vocabulary_id,concept_code,concept_id,domain_id\n");
    const int N = 100000;
    for (int i = 0; i < N; i++)
        fprintf(f, "V%d,C%07d,%d,Measurement\n", i % 7, i, 1000000 + i);
    fclose(f);
    cg_vocab_t *v = cg_vocab_new();
    size_t n = 0;
    assert_int_equal(cg_vocab_load_csv(v, path, NULL, 0, &n), CG_OK);
    unlink(path);
    assert_int_equal(cg_vocab_count(v), (size_t)N);
    char voc[8], code[16];
    for (int i = 0; i < N; i++) {
        snprintf(voc, sizeof(voc), "V%d", i % 7);
        snprintf(code, sizeof(code), "C%07d", i);
        cg_vocab_hit_t h;
        assert_true(cg_vocab_lookup(v, S(voc), S(code), &h));
        assert_int_equal(h.concept_id, 1000000 + i);
    }
    snprintf(code, sizeof(code), "C%07d", 0);
    assert_false(cg_vocab_lookup(v, S("V1"), S(code), NULL)); /* code 0 lives in V0 */
    size_t mem = cg_vocab_memory(v);
    printf("    %d codes: %zu bytes (%.1f per code)\n", N, mem, (double)mem / N);
    assert_true(mem < (size_t)N * 100);
    cg_vocab_destroy(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_domains_and_systems),
        cmocka_unit_test(test_csv_good),
        cmocka_unit_test(test_csv_bad_reports_every_line),
        cmocka_unit_test(test_csv_bad_files),
        cmocka_unit_test(test_later_load_replaces),
        cmocka_unit_test(test_stcm),
        cmocka_unit_test(test_stcm_bad),
        cmocka_unit_test(test_layer_override_stats),
        cmocka_unit_test(test_athena),
        cmocka_unit_test(test_athena_filtered),
        cmocka_unit_test(test_athena_errors),
        cmocka_unit_test(test_shipped_tables),
        cmocka_unit_test(test_many_codes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
