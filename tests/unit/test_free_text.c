/* test_free_text.c - free text and message ids (issue #17 item 9): a TX result naming the
 * patient maps to no text by default with the shipped specs, and to value_as_string when a site
 * opts in (the free_text parameter); a rule's "free_text" opt-in, the warning and the located
 * errors; the target registry and the classification catalogue agree on which columns are free
 * text; source.message_id is keyed by default (not MSH-10, stable under one key, different
 * under another) and as sent when configured plain. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cg_mapping.h"
#include "cg_pseudo.h"
#include "cg_release.h"
#include "cg_row.h"
#include "cg_spec.h"
#include "cg_target.h"

/* The reproduction: a TX result whose text names the patient. */
static const char REPRO[] = "MSH|^~\\&|LAB|H|CG|RES|20240315070000||ORU^R01|MSG-100234|P|2.5.1\r"
                            "PID|1||100234^^^H^MR||Doe^Jane||19670412|F\r"
                            "OBR|1||F1|11526-1^Pathology study^LN\r"
                            "OBX|1|TX|11526-1^Pathology study^LN||Jane Doe MRN 100234 DOB "
                            "19670412 called||||||F|||20240315\r";
static const char TEXT[] = "Jane Doe MRN 100234 DOB 19670412 called";

static cg_pseudo_t *pseudo, *other;

static cg_pseudo_t *pseudo_of(const char *key)
{
    char err[256];
    cg_pseudo_key_t *k = cg_pseudo_key_new(key, strlen(key), err, sizeof(err));
    cg_pseudo_t *p = k ? cg_pseudo_new(k, 0, err, sizeof(err)) : NULL;
    cg_pseudo_key_destroy(k);
    return p;
}

static int setup(void **state)
{
    (void)state;
    pseudo = pseudo_of("0123456789abcdef0123456789abcdef");
    other = pseudo_of("another key, another key, another key");
    return pseudo && other ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    cg_pseudo_destroy(pseudo);
    cg_pseudo_destroy(other);
    return 0;
}

/* Every record of rows, encoded, into out (NUL-terminated). */
static void encode_all(const cg_row_t *rows, size_t n, cg_buf_t *out)
{
    cg_buf_reset(out);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(cg_row_encode(&rows[i], NULL, NULL, 0, 0, out), CG_OK);
        assert_int_equal(cg_buf_append(out, "\n", 1), CG_OK);
    }
    assert_int_equal(cg_buf_append(out, "", 1), CG_OK);
}

/* The shipped specs, with the given parameters and message id mode, mapping REPRO. */
static void map_shipped(const cg_spec_param_t *params, size_t n_params, int plain, cg_buf_t *out,
                        char *mid, size_t mid_size)
{
    cg_mapping_opts_t o = {.specs = CG_SOURCE_DIR "/specs",
                           .no_key = 1,
                           .params = params,
                           .n_params = n_params,
                           .message_id_plain = plain};
    cg_error_t errs[4];
    size_t n = 0;
    char errstr[256];
    cg_mapping_t *m = cg_mapping_load(&o, errs, 4, &n);
    if (!m)
        fail_msg("%s", errs[0].text);
    cg_mapping_worker_t *w = cg_mapping_worker_new_keyed(m, pseudo, errstr, sizeof(errstr));
    assert_non_null(w);
    const cg_row_t *rows;
    size_t nr;
    cg_error_t err;
    assert_int_equal(
        cg_mapping_worker_map(w, CG_INPUT_HL7V2, REPRO, strlen(REPRO), &rows, &nr, &err), CG_OK);
    assert_int_equal(nr, 1);
    assert_string_equal(rows[0].table->name, "observation");
    encode_all(rows, nr, out);
    snprintf(mid, mid_size, "%.*s", (int)rows[0].message_id.len, rows[0].message_id.ptr);
    cg_mapping_worker_destroy(w);
    cg_mapping_destroy(m);
}

/* By default nothing of the patient reaches a record: no text, no name, no MRN, no birth date,
 * and not MSH-10 (it holds the MRN here). */
static void test_repro_default(void **state)
{
    (void)state;
    cg_buf_t b;
    cg_buf_init(&b);
    char mid[64];
    map_shipped(NULL, 0, 0, &b, mid, sizeof(mid));
    if (strstr(b.data, "Jane") || strstr(b.data, "Doe") || strstr(b.data, "100234") ||
        strstr(b.data, "19670412") || strstr(b.data, "value_as_string"))
        fail_msg("%s", b.data);
    assert_int_equal(strlen(mid), CG_PSEUDO_MESSAGE_ID_LEN);
    assert_int_equal(strspn(mid, "0123456789abcdef"), CG_PSEUDO_MESSAGE_ID_LEN);
    char want[CG_PSEUDO_MESSAGE_ID_LEN + 1];
    assert_int_equal(cg_pseudo_message_id(pseudo, CG_SLICE_LIT("MSG-100234"), want), CG_OK);
    assert_string_equal(mid, want);
    cg_buf_free(&b);
}

/* A site opts in with the shipped specs' parameter (mapping.params, --param), and may keep the
 * sender's message id (pseudonym.message_id "plain"). */
static void test_repro_opt_in(void **state)
{
    (void)state;
    cg_buf_t b;
    cg_buf_init(&b);
    char mid[64];
    const cg_spec_param_t p = {"free_text", "value_as_string"};
    map_shipped(&p, 1, 1, &b, mid, sizeof(mid));
    char want[128];
    snprintf(want, sizeof(want), "\"value_as_string\":\"%s\"", TEXT);
    if (!strstr(b.data, want))
        fail_msg("%s", b.data);
    assert_string_equal(mid, "MSG-100234");
    /* a list, spaces and a column of another table (sig: the C-CDA medication rule's) */
    const cg_spec_param_t list = {"free_text", " sig | value_as_string "};
    map_shipped(&list, 1, 0, &b, mid, sizeof(mid));
    assert_non_null(strstr(b.data, want));
    cg_buf_free(&b);
}

/* A spec of one rule over OBX with extra rule keys and a value_as_string from OBX-5. */
static cg_specset_t *load_rule(const char *rule_keys, const char *params, cg_error_t *errs,
                               size_t *n_errs)
{
    char spec[2048];
    snprintf(spec, sizeof(spec),
             "{\"spec\": \"ft\", \"version\": 1,%s\n"
             " \"input\": {\"format\": \"hl7v2\", \"messages\": [\"ORU^R01\"]},\n"
             " \"patient\": {\"id\": \"PID-3.1\", \"authority\": \"PID-3.4.1\"},\n"
             " \"rules\": [{\"name\": \"text\", \"table\": \"observation\", \"foreach\": "
             "\"OBX[*]\",%s\n"
             "  \"columns\": {\"person_id\": {\"patient\": \"person_id\"},\n"
             "   \"observation_concept_id\": 0, \"observation_type_concept_id\": 32817,\n"
             "   \"observation_date\": {\"path\": \"OBX-14\", \"pipe\": [\"date\"]},\n"
             "   \"observation_source_value\": \"OBX-3.1\",\n"
             "   \"value_as_string\": \"OBX-5\"}}]}",
             params ? params : "", rule_keys);
    cg_spec_env_t env = {.pseudo = pseudo};
    *n_errs = 0;
    return cg_specset_load_string(spec, "ft.json", &env, errs, 8, n_errs);
}

/* Maps REPRO with ss: whether its row has value_as_string (the text). */
static int maps_text(const cg_specset_t *ss)
{
    char err[256];
    cg_spec_env_t env = {.pseudo = pseudo};
    cg_mapper_t *mp = cg_mapper_new(ss, &env, err, sizeof(err));
    assert_non_null(mp);
    const cg_row_t *rows;
    size_t n;
    assert_int_equal(cg_mapper_map_hl7(mp, REPRO, strlen(REPRO), &rows, &n, NULL), CG_OK);
    assert_int_equal(n, 1);
    const cg_value_t *v = cg_row_value_named(&rows[0], "value_as_string");
    int has = v->kind == CG_VALUE_STRING;
    if (has)
        assert_memory_equal(v->ptr, TEXT, strlen(TEXT));
    cg_mapper_destroy(mp);
    return has;
}

static void test_rule_opt_in(void **state)
{
    (void)state;
    cg_error_t errs[8];
    size_t n, nw;
    /* listed: written */
    cg_specset_t *ss = load_rule("\"free_text\": [\"value_as_string\"],", NULL, errs, &n);
    assert_non_null(ss);
    assert_true(maps_text(ss));
    cg_specset_warnings(ss, &nw);
    assert_int_equal(nw, 0);
    cg_specset_destroy(ss);

    /* no "free_text": left out, and a warning at the column saying how to opt in */
    ss = load_rule("", NULL, errs, &n);
    assert_non_null(ss);
    assert_false(maps_text(ss));
    const cg_error_t *w = cg_specset_warnings(ss, &nw);
    assert_int_equal(nw, 1);
    assert_string_equal(w[0].file, "ft.json");
    assert_int_equal(w[0].line, 9);
    assert_true(w[0].column > 0);
    assert_non_null(strstr(w[0].text, "observation.value_as_string is free text"));
    assert_non_null(strstr(w[0].text, "list it in the rule's \"free_text\""));
    assert_null(strstr(w[0].text, "OBX-5"));
    cg_specset_destroy(ss);

    /* "free_text": []: decided, left out without a word */
    ss = load_rule("\"free_text\": [],", NULL, errs, &n);
    assert_non_null(ss);
    assert_false(maps_text(ss));
    cg_specset_warnings(ss, &nw);
    assert_int_equal(nw, 0);
    cg_specset_destroy(ss);

    /* a parameter: off by default, on when the site says so */
    ss = load_rule("\"free_text\": [\"${ft}\"],", " \"params\": {\"ft\": \"\"},", errs, &n);
    assert_non_null(ss);
    assert_false(maps_text(ss));
    cg_specset_destroy(ss);
    ss = load_rule("\"free_text\": [\"${ft}\"],", " \"params\": {\"ft\": \"value_as_string\"},",
                   errs, &n);
    assert_non_null(ss);
    assert_true(maps_text(ss));
    cg_specset_destroy(ss);
}

/* What a "free_text" may not say: located errors that name the column, never a value. */
static void test_rule_errors(void **state)
{
    (void)state;
    static const struct {
        const char *keys, *want;
        int line;
    } cases[] = {
        {"\"free_text\": [\"observation_source_value\"],",
         "lists observation.observation_source_value, which is not a free-text column", 4},
        {"\"free_text\": [\"valeu_as_string\"],",
         "lists 'valeu_as_string', which is no free-text column of any table", 4},
        {"\"free_text\": \"value_as_string\",", "\"free_text\" is a list of the free-text columns",
         4},
        {"\"free_text\": [1],", "\"free_text\" lists column names (strings)", 4},
        {"\"free_text\": [\"${nope}\"],", "'${nope}' is not a parameter of the spec", 4},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        cg_error_t errs[8];
        size_t n;
        cg_specset_t *ss = load_rule(cases[i].keys, NULL, errs, &n);
        assert_null(ss);
        assert_true(n >= 1);
        if (!strstr(errs[0].text, cases[i].want))
            fail_msg("case %zu: %s", i, errs[0].text);
        assert_int_equal(errs[0].line, cases[i].line);
        assert_true(errs[0].column > 0);
    }
    /* a required free-text column from the input cannot be left out: an error at it */
    const char *spec =
        "{\"spec\": \"n\", \"version\": 1,\n"
        " \"input\": {\"format\": \"hl7v2\", \"messages\": [\"MDM^T02\"]},\n"
        " \"patient\": {\"id\": \"PID-3.1\", \"authority\": \"PID-3.4.1\"},\n"
        " \"rules\": [{\"name\": \"note\", \"table\": \"note\",\n"
        "  \"columns\": {\"person_id\": {\"patient\": \"person_id\"},\n"
        "   \"note_date\": {\"const\": \"2024-01-01\"}, \"note_type_concept_id\": 0,\n"
        "   \"note_class_concept_id\": 0, \"encoding_concept_id\": 0,\n"
        "   \"language_concept_id\": 0,\n"
        "   \"note_text\": \"OBX-5\"}}]}";
    cg_spec_env_t env = {.pseudo = pseudo};
    cg_error_t errs[8];
    size_t n = 0;
    assert_null(cg_specset_load_string(spec, "n.json", &env, errs, 8, &n));
    assert_int_equal(n, 1);
    assert_non_null(strstr(errs[0].text, "note.note_text is free text"));
    assert_int_equal(errs[0].line, 9);
    /* a constant is the spec's text, not the input's: kept */
    char with_const[1024];
    snprintf(with_const, sizeof(with_const), "%.*s{\"const\": \"\"}}}]}",
             (int)(strstr(spec, "\"OBX-5\"") - spec), spec);
    cg_specset_t *ss = cg_specset_load_string(with_const, "n.json", &env, errs, 8, &n);
    if (!ss)
        fail_msg("%s", errs[0].text);
    cg_specset_destroy(ss);
}

/* The target registry's free-text columns are the catalogue's free_text ones, for every column
 * of every table of every target. */
static void test_registry_matches_catalogue(void **state)
{
    (void)state;
    const char *layer = CG_SOURCE_DIR "/specs/classification";
    cg_error_t errs[4];
    size_t n = 0, seen = 0, free_text = 0;
    cg_catalogue_t *cat = cg_catalogue_load(&layer, 1, errs, 4, &n);
    if (!cat)
        fail_msg("%s", errs[0].text);
    const cg_target_t *t;
    for (size_t i = 0; (t = cg_target_at(i)); i++) {
        size_t nt = 0;
        const cg_target_table_t *tabs = t->tables(&nt);
        for (size_t k = 0; k < nt; k++)
            for (size_t c = 0; c < tabs[k].n_columns; c++) {
                const cg_target_column_t *col = &tabs[k].columns[c];
                cg_class_column_t cc = cg_catalogue_column(cat, col);
                assert_true(cc.level > 0);
                int flagged = (cc.flags & CG_CLASS_FREE_TEXT) != 0;
                if (flagged != col->free_text)
                    fail_msg("%s.%s: catalogue free_text %d, target %d", tabs[k].name, col->name,
                             flagged, col->free_text);
                free_text += flagged;
                seen++;
            }
    }
    assert_true(seen > 400);
    assert_int_equal(free_text, 9);
    cg_catalogue_destroy(cat);
}

/* source.message_id: keyed (not MSH-10, the same for one key, another under another key), or
 * MSH-10 itself when plain. */
static void test_message_id(void **state)
{
    (void)state;
    cg_error_t errs[8];
    size_t n;
    cg_specset_t *ss = load_rule("\"free_text\": [],", NULL, errs, &n);
    assert_non_null(ss);
    char got[3][64];
    const cg_pseudo_t *keys[3] = {pseudo, pseudo, other};
    for (int i = 0; i < 4; i++) {
        char err[256];
        cg_spec_env_t env = {.pseudo = keys[i < 3 ? i : 0], .message_id_plain = i == 3};
        cg_mapper_t *mp = cg_mapper_new(ss, &env, err, sizeof(err));
        assert_non_null(mp);
        const cg_row_t *rows;
        size_t nr;
        assert_int_equal(cg_mapper_map_hl7(mp, REPRO, strlen(REPRO), &rows, &nr, NULL), CG_OK);
        char mid[64];
        snprintf(mid, sizeof(mid), "%.*s", (int)rows[0].message_id.len, rows[0].message_id.ptr);
        if (i < 3) {
            snprintf(got[i], sizeof(got[i]), "%s", mid);
            assert_int_equal(strlen(mid), 40);
            assert_string_not_equal(mid, "MSG-100234");
        } else {
            assert_string_equal(mid, "MSG-100234");
        }
        cg_mapper_destroy(mp);
    }
    assert_string_equal(got[0], got[1]);
    assert_string_not_equal(got[0], got[2]);
    cg_specset_destroy(ss);
    /* the primitive: a label of its own, so no other keyed value equals it */
    char a[41], b[41];
    assert_int_equal(cg_pseudo_message_id(pseudo, CG_SLICE_LIT(""), a), CG_OK);
    assert_int_equal(cg_pseudo_message_id(pseudo, CG_SLICE_LIT("x"), b), CG_OK);
    assert_string_not_equal(a, b);
    assert_int_equal(cg_pseudo_message_id(NULL, CG_SLICE_LIT("x"), b), CG_ERR_INVALID_ARG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_repro_default),
        cmocka_unit_test(test_repro_opt_in),
        cmocka_unit_test(test_rule_opt_in),
        cmocka_unit_test(test_rule_errors),
        cmocka_unit_test(test_registry_matches_catalogue),
        cmocka_unit_test(test_message_id),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
