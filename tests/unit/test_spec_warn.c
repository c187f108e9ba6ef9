/* test_spec_warn.c - what compiles but is most likely a mistake (spec_warn.c): each warning,
 * located file:line:column, and none for the shipped specs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cg_spec.h"
#include "cg_vocab.h"

static cg_vocab_t *vocab;

static int setup(void **state)
{
    (void)state;
    vocab = cg_vocab_new();
    size_t n = 0;
    cg_vocab_load_csv_dir(vocab, CG_TEST_FIXTURES "/spec/vocab", NULL, 0, &n);
    return vocab && n == 0 ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    cg_vocab_destroy(vocab);
    return 0;
}

/* A spec over ORU with one rule's columns (JSON text) and the input's message types. */
static cg_specset_t *load(const char *messages, const char *columns, const cg_vocab_t *v)
{
    char text[4096];
    snprintf(text, sizeof(text),
             "{\"spec\": \"w\", \"version\": 1,\n"
             " \"input\": {\"format\": \"hl7v2\", \"messages\": [%s]},\n"
             " \"patient\": {\"id\": \"PID-3.1\", \"authority\": \"PID-3.4.1\"},\n"
             " \"rules\": [{\"name\": \"r\", \"table\": \"procedure_occurrence\", \"foreach\": "
             "\"OBR[*]\",\n"
             "  \"columns\": {\"person_id\": {\"patient\": \"person_id\"},\n"
             "   \"procedure_date\": {\"path\": \"OBR-7\", \"pipe\": [\"date\"]}, "
             "\"procedure_type_concept_id\": 32817,\n"
             "   %s}}]}",
             messages, columns);
    cg_spec_env_t env = {.vocab = v};
    cg_error_t errs[4];
    size_t n = 0;
    cg_specset_t *ss = cg_specset_load_string(text, "w.json", &env, errs, 4, &n);
    if (!ss)
        fail_msg("does not compile: %s", errs[0].text);
    return ss;
}

/* The warnings of ss, one a line as "LINE:COLUMN: TEXT". */
static const char *warnings(const cg_specset_t *ss, size_t *n)
{
    static char out[8192];
    const cg_error_t *w = cg_specset_warnings(ss, n);
    size_t k = 0;
    out[0] = '\0';
    for (size_t i = 0; i < *n && k < sizeof(out); i++)
        k += (size_t)snprintf(out + k, sizeof(out) - k, "%d:%d: %s\n", w[i].line, w[i].column,
                              w[i].text);
    return out;
}

static void expect_one(const char *messages, const char *columns, const cg_vocab_t *v,
                       const char *where, const char *what)
{
    cg_specset_t *ss = load(messages, columns, v);
    size_t n;
    const char *w = warnings(ss, &n);
    if (n != 1 || strncmp(w, where, strlen(where)) || !strstr(w, what))
        fail_msg("expected one warning at %s with \"%s\", got %zu:\n%s", where, what, n, w);
    cg_specset_destroy(ss);
}

static void test_clean_spec_has_none(void **state)
{
    (void)state;
    cg_specset_t *ss = load(
        "\"ORU^R01\", \"ZLB^Z01\", \"PPR^PC1\"",
        "\"procedure_concept_id\": {\"path\": \"OBR-4.1\", \"pipe\": [{\"lookup\": "
        "{\"vocabulary\": \"LOINC\"}}]},\n"
        "   \"modifier_concept_id\": {\"coalesce\": [{\"const\": 0}, \"OBR-4.3\"]},\n"
        "   \"procedure_source_concept_id\": {\"path\": \"OBR-4.1\", \"pipe\": [{\"map\": {\"A\": "
        "1}}]},\n"
        "   \"procedure_source_value\": \"OBR-4.1\"",
        vocab);
    size_t n;
    const char *w = warnings(ss, &n);
    if (n)
        fail_msg("%s", w);
    cg_specset_destroy(ss);
}

static void test_concept_id_from_raw_code(void **state)
{
    (void)state;
    expect_one("\"ORU^R01\"", "\"procedure_concept_id\": \"OBR-4.1\"", vocab,
               "7:28:", "procedure_concept_id is a concept id, but OBR-4.1 gives the code");
    /* through a binding or a coalesce, too */
    expect_one("\"ORU^R01\"",
               "\"procedure_concept_id\": {\"coalesce\": [\"OBR-4.4\", {\"const\": 0}]}", vocab,
               "7:28:", "but OBR-4.4 gives");
}

static void test_message_types(void **state)
{
    (void)state;
    expect_one("\"ORM^O1\"", "\"procedure_concept_id\": 0", vocab,
               "2:44:", "'O1' is not an HL7 v2 trigger event of ORM");
    expect_one("\"XYZ\"", "\"procedure_concept_id\": 0", vocab,
               "2:44:", "'XYZ' is not an HL7 v2 message type");
}

static void test_unknown_vocabulary(void **state)
{
    (void)state;
    const char *col = "\"procedure_concept_id\": {\"path\": \"OBR-4.1\", \"pipe\": [{\"lookup\": "
                      "{\"vocabulary\": \"CPTX\"}}]}";
    /* with vocabularies loaded, the message lists them */
    expect_one("\"ORU^R01\"", col, vocab, "7:83:", "unknown vocabulary 'CPTX'");
    cg_specset_t *ss = load("\"ORU^R01\"", col, vocab);
    size_t n;
    assert_non_null(strstr(warnings(ss, &n), "(loaded: LOINC, UCUM"));
    cg_specset_destroy(ss);
    expect_one("\"ORU^R01\"", col, NULL, "7:83:", "no vocabularies are loaded");
    /* names that need no table: an HL7 0396 name, an OMOP vocabulary_id */
    ss = load("\"ORU^R01\"",
              "\"procedure_concept_id\": {\"path\": \"OBR-4.1\", \"pipe\": [{\"lookup\": "
              "{\"vocabulary\": \"CPT4\"}}]}, \"procedure_source_concept_id\": {\"path\": "
              "\"OBR-4.1\", \"pipe\": [{\"lookup\": {\"vocabulary\": \"I10\"}}]}",
              NULL);
    assert_int_equal((warnings(ss, &n), n), 0);
    cg_specset_destroy(ss);
}

static void test_bare_string_segment(void **state)
{
    (void)state;
    /* "EHR" as a text column: a path to a segment nothing reads */
    expect_one("\"ORU^R01\"", "\"procedure_concept_id\": 0, \"procedure_source_value\": \"EHR\"",
               vocab, "7:57:", "\"EHR\" is a path");
    /* a whole segment the spec reads anyway is not a mistake of that kind */
    cg_specset_t *ss = load(
        "\"ORU^R01\"", "\"procedure_concept_id\": 0, \"procedure_source_value\": \"OBR\"", vocab);
    size_t n;
    assert_int_equal((warnings(ss, &n), n), 0);
    cg_specset_destroy(ss);
}

/* The shipped specs say nothing: they are the examples integration engineers copy. */
/* A patient without an authority: refused unless the site defaults it (pseudonym.authorities) */
static void test_patient_without_authority(void **state)
{
    (void)state;
    static const char *const specs[][2] = {
        {"{\"spec\": \"w\", \"version\": 1,\n"
         " \"input\": {\"format\": \"hl7v2\", \"messages\": [\"ORU^R01\"]},\n"
         " \"patient\": {\"id\": \"PID-3.1\"},\n"
         " \"rules\": [{\"name\": \"r\", \"table\": \"death\", \"columns\": {\"person_id\": "
         "{\"patient\": \"person_id\"}, \"death_date\": {\"path\": \"PID-29\", \"pipe\": "
         "[\"date\"]}}}]}",
         "3:13: \"patient\" has no \"authority\": identifiers are refused unless"},
        {"{\"spec\": \"w\", \"version\": 1,\n"
         " \"input\": {\"format\": \"xml\"},\n"
         " \"patient\": {\"id\": \"hl7:recordTarget/hl7:patientRole/hl7:id/@extension\"},\n"
         " \"rules\": [{\"name\": \"r\", \"table\": \"death\", \"columns\": {\"person_id\": "
         "{\"patient\": \"person_id\"}, \"death_date\": {\"path\": \"hl7:effectiveTime/@value\", "
         "\"pipe\": [\"date\"]}}}]}",
         "3:13: \"patient\" has no \"authority\" and no \"facility\": every identifier will be "
         "refused"},
    };
    for (size_t i = 0; i < 2; i++) {
        cg_error_t errs[4];
        size_t ne = 0;
        cg_spec_env_t env = {.vocab = vocab};
        cg_specset_t *ss = cg_specset_load_string(specs[i][0], "w.json", &env, errs, 4, &ne);
        if (!ss)
            fail_msg("%d:%d: %s", errs[0].line, errs[0].column, errs[0].text);
        size_t n;
        const char *w = warnings(ss, &n);
        if (n != 1 || strncmp(w, specs[i][1], strlen(specs[i][1])))
            fail_msg("expected '%s', got %zu:\n%s", specs[i][1], n, w);
        cg_specset_destroy(ss);
    }
}

static void test_shipped_specs_have_none(void **state)
{
    (void)state;
    cg_vocab_t *v = cg_vocab_new();
    size_t n = 0;
    cg_vocab_load_csv_dir(v, CG_SOURCE_DIR "/specs/vocab", NULL, 0, &n);
    assert_int_equal(n, 0);
    cg_spec_env_t env = {.vocab = v};
    cg_error_t errs[4];
    cg_specset_t *ss = cg_specset_load(CG_SOURCE_DIR "/specs", &env, errs, 4, &n);
    assert_non_null(ss);
    const char *w = warnings(ss, &n);
    if (n)
        fail_msg("%s", w);
    cg_specset_destroy(ss);
    cg_vocab_destroy(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_clean_spec_has_none),
        cmocka_unit_test(test_concept_id_from_raw_code),
        cmocka_unit_test(test_message_types),
        cmocka_unit_test(test_unknown_vocabulary),
        cmocka_unit_test(test_bare_string_segment),
        cmocka_unit_test(test_shipped_specs_have_none),
        cmocka_unit_test(test_patient_without_authority),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
