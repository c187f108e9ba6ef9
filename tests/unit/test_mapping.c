/* test_mapping.c - the mapping bundle (cg_mapping.h): loaded in order with located errors, mapped
 * per worker, routed through cohorts, reloaded sharing vocabularies and key. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/sha.h>

#include "cg_buf.h"
#include "cg_mapping.h"
#include "cg_pseudo.h"
#include "cg_target.h"
#include "cg_vocab.h"

#define KEY_FILE CG_SOURCE_DIR "/tests/golden/key"

static char *slurp(const char *path, size_t *len)
{
    cg_buf_t b;
    cg_buf_init(&b);
    assert_int_equal(cg_buf_read_file(&b, path), CG_OK);
    *len = b.len;
    return b.data;
}

static cg_mapping_t *load_shipped(const char *cohorts)
{
    cg_mapping_opts_t o = {
        .specs = CG_SOURCE_DIR "/specs", .cohorts = cohorts, .key_file = KEY_FILE};
    cg_error_t errs[4];
    size_t n = 0;
    cg_mapping_t *m = cg_mapping_load(&o, errs, 4, &n);
    if (!m) {
        char buf[1024];
        fail_msg("load: %s", cg_error_format(&errs[0], buf, sizeof(buf)));
    }
    assert_int_equal(n, 0);
    return m;
}

static void test_load_map_route(void **state)
{
    (void)state;
    cg_mapping_t *m = load_shipped(CG_SOURCE_DIR "/specs/cohorts");
    assert_true(cg_specset_count(cg_mapping_specs(m)) >= 4);
    assert_non_null(cg_mapping_cohorts(m));
    assert_true(cg_vocab_count(cg_mapping_vocab(m)) > 0); /* vocab/ beside the specs */
    char errstr[256];
    cg_mapping_worker_t *w = cg_mapping_worker_new(m, errstr, sizeof(errstr));
    assert_non_null(w);

    size_t len;
    char *oru = slurp(CG_SOURCE_DIR "/tests/golden/oru_r01_results/input.hl7", &len);
    const cg_row_t *rows;
    size_t n;
    cg_error_t me;
    assert_int_equal(cg_mapping_worker_map(w, CG_INPUT_HL7V2, oru, len, &rows, &n, &me), CG_OK);
    assert_true(n > 0);
    /* the same bytes by sniffing give the same rows */
    size_t n_auto;
    assert_int_equal(cg_mapping_worker_map(w, CG_INPUT_AUTO, oru, len, &rows, &n_auto, &me), CG_OK);
    assert_int_equal(n_auto, n);
    /* an HbA1c of 7.2 % (the golden case) joins the t2dm cohort */
    int t2dm = 0;
    for (size_t i = 0; i < n; i++) {
        const char *const *names;
        size_t k = cg_mapping_worker_route(w, &rows[i], &names);
        for (size_t j = 0; j < k; j++)
            t2dm |= !strcmp(names[j], "t2dm");
    }
    assert_true(t2dm);
    /* HL7 bytes read as XML fail at decode, with a stage */
    assert_int_not_equal(cg_mapping_worker_map(w, CG_INPUT_XML, oru, len, &rows, &n, &me), CG_OK);
    assert_string_equal(me.stage, "decode");
    free(oru);

    cg_mapping_worker_destroy(w);
    cg_mapping_destroy(m);
}

static void test_without_cohorts_routes_nowhere(void **state)
{
    (void)state;
    cg_mapping_t *m = load_shipped(NULL);
    assert_null(cg_mapping_cohorts(m));
    char errstr[256];
    cg_mapping_worker_t *w = cg_mapping_worker_new(m, errstr, sizeof(errstr));
    size_t len;
    char *oru = slurp(CG_SOURCE_DIR "/tests/golden/oru_r01_results/input.hl7", &len);
    const cg_row_t *rows;
    size_t n;
    cg_error_t me;
    assert_int_equal(cg_mapping_worker_map(w, CG_INPUT_HL7V2, oru, len, &rows, &n, &me), CG_OK);
    const char *const *names = NULL;
    assert_int_equal(cg_mapping_worker_route(w, &rows[0], &names), 0);
    free(oru);
    cg_mapping_worker_destroy(w);
    cg_mapping_destroy(m);
}

static void test_errors_are_located(void **state)
{
    (void)state;
    char dir[] = "/tmp/cg-test-mapping-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[512];
    snprintf(path, sizeof(path), "%s/bad.json", dir);
    FILE *f = fopen(path, "w");
    fputs("{\"name\": \"bad\", \"version\": 1,\n \"nope\": 1}\n", f);
    fclose(f);
    cg_mapping_opts_t o = {.specs = path, .key_file = KEY_FILE};
    cg_error_t errs[4];
    size_t n = 0;
    assert_null(cg_mapping_load(&o, errs, 4, &n));
    assert_true(n >= 1);
    assert_string_equal(errs[0].file, path);
    assert_true(errs[0].line >= 1);

    /* a missing key is an error of its own, naming the file and never key bytes */
    char missing[600];
    snprintf(missing, sizeof(missing), "%s/no-such.key", dir);
    cg_mapping_opts_t ok = {.specs = CG_SOURCE_DIR "/specs", .key_file = missing};
    n = 0;
    assert_null(cg_mapping_load(&ok, errs, 4, &n));
    assert_int_equal(n, 1);
    char buf[1024];
    cg_error_format(&errs[0], buf, sizeof(buf));
    assert_non_null(strstr(buf, "no-such.key"));

    /* no key: enough to compile (check, test); a worker needs one */
    cg_mapping_opts_t nk = {.specs = CG_SOURCE_DIR "/specs", .no_key = 1};
    cg_mapping_t *m = cg_mapping_load(&nk, errs, 4, &n);
    assert_non_null(m);
    char errstr[256];
    assert_null(cg_mapping_worker_new(m, errstr, sizeof(errstr)));
    assert_non_null(strstr(errstr, "key"));
    cg_mapping_destroy(m);

    /* an empty folder has no spec */
    cg_mapping_opts_t empty = {.specs = dir, .no_key = 1};
    unlink(path);
    n = 0;
    assert_null(cg_mapping_load(&empty, errs, 4, &n));
    assert_int_equal(n, 1);
    assert_non_null(strstr(errs[0].text, "no spec"));
    rmdir(dir);
}

static void test_reload_shares_and_survives(void **state)
{
    (void)state;
    char dir[] = "/tmp/cg-test-mapping-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "cp -r %s/specs/. %s/", CG_SOURCE_DIR, dir);
    assert_int_equal(system(cmd), 0);
    cg_mapping_opts_t o = {.specs = dir, .key_file = KEY_FILE};
    cg_error_t errs[4];
    size_t n = 0;
    cg_mapping_t *m = cg_mapping_load(&o, errs, 4, &n);
    assert_non_null(m);

    cg_mapping_t *r = cg_mapping_reload(m, errs, 4, &n);
    assert_non_null(r);
    assert_ptr_equal(cg_mapping_vocab(r), cg_mapping_vocab(m)); /* shared, not loaded again */
    assert_ptr_not_equal(cg_mapping_specs(r), cg_mapping_specs(m));

    /* a spec broken on disk: the reload fails, located, and the running bundle still maps */
    char path[600];
    snprintf(path, sizeof(path), "%s/zz-broken.json", dir);
    FILE *f = fopen(path, "w");
    fputs("{\"name\": \"broken\",\n  \"version\": \"x\"}\n", f);
    fclose(f);
    n = 0;
    assert_null(cg_mapping_reload(r, errs, 4, &n));
    assert_true(n >= 1);
    assert_non_null(strstr(errs[0].file, "zz-broken.json"));

    cg_mapping_destroy(m); /* the reloaded bundle keeps the shared vocabularies alive */
    char errstr[256];
    cg_mapping_worker_t *w = cg_mapping_worker_new(r, errstr, sizeof(errstr));
    assert_non_null(w);
    size_t len;
    char *adt = slurp(CG_SOURCE_DIR "/tests/golden/adt_a01_admit/input.hl7", &len);
    const cg_row_t *rows;
    size_t nr;
    cg_error_t me;
    assert_int_equal(cg_mapping_worker_map(w, CG_INPUT_HL7V2, adt, len, &rows, &nr, &me), CG_OK);
    assert_true(nr > 0);
    free(adt);
    cg_mapping_worker_destroy(w);
    cg_mapping_destroy(r);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

static void write_text(const char *dir, const char *name, const char *text)
{
    char path[600];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* A site's layer over the shipped specs: a spec of the shipped one's name replaces it, a
 * source-to-concept row replaces the shipped table's code, and each layer says so. */
static void test_layers_override(void **state)
{
    (void)state;
    char dir[] = "/tmp/cg-test-layers-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char site[600], vocab[700];
    snprintf(site, sizeof(site), "%s/specs", dir);
    snprintf(vocab, sizeof(vocab), "%s/vocab", site);
    assert_int_equal(mkdir(site, 0700), 0);
    assert_int_equal(mkdir(vocab, 0700), 0);
    write_text(site, "my-oru.json",
               "{\"spec\": \"hl7v2-oru-omop\", \"version\": 7,\n"
               " \"input\": {\"format\": \"hl7v2\", \"messages\": [\"ORU^R01\"]},\n"
               " \"patient\": {\"id\": \"PID-3.1\", \"authority\": \"PID-3.4.1\"},\n"
               " \"rules\": [{\"name\": \"site-obx\", \"table\": \"measurement\", \"foreach\": "
               "\"OBX[*]\",\n"
               "   \"columns\": {\"person_id\": {\"patient\": \"person_id\"},\n"
               "     \"measurement_concept_id\": {\"path\": \"OBX-3.1\", \"pipe\": [{\"lookup\": "
               "{\"vocabulary\": {\"path\": \"OBX-3.3\"}}}], \"default\": 0},\n"
               "     \"measurement_date\": {\"coalesce\": [\"OBX-14\", \"MSH-7\"], \"pipe\": "
               "[\"date\"], \"required\": true},\n"
               "     \"measurement_type_concept_id\": 32817,\n"
               "     \"measurement_source_value\": \"OBX-3.1\"}}]}\n");
    write_text(vocab, "site.csv",
               "source_code,source_vocabulary_id,target_concept_id\n4548-4,LOINC,3004501\n");
    const char *more[] = {site};
    /* no vocabulary layers: each spec layer's vocab/ folder, in order */
    cg_mapping_opts_t o = {.specs = CG_SOURCE_DIR "/specs",
                           .more_specs = more,
                           .n_more_specs = 1,
                           .key_file = KEY_FILE};
    cg_error_t errs[4];
    size_t n = 0;
    cg_mapping_t *m = cg_mapping_load(&o, errs, 4, &n);
    if (!m) {
        char buf[1024];
        fail_msg("load: %s", cg_error_format(&errs[0], buf, sizeof(buf)));
    }
    const cg_mapping_layer_t *l;
    assert_int_equal(cg_mapping_layers(m, &l), 4);
    assert_int_equal(l[0].kind, CG_MAPPING_LAYER_SPECS);
    assert_int_equal(l[0].n_overridden, 1);
    assert_null(strstr(l[0].items, "hl7v2-oru-omop"));
    assert_int_equal(l[1].n_items, 1);
    assert_int_equal(l[1].n_overrides, 1);
    assert_non_null(strstr(l[1].overrides, "hl7v2-oru-omop (over "));
    assert_non_null(strstr(l[1].overrides, "specs/hl7v2-oru-omop.json"));
    assert_int_equal(l[2].kind, CG_MAPPING_LAYER_VOCAB);
    assert_int_equal(l[3].kind, CG_MAPPING_LAYER_VOCAB);
    assert_string_equal(l[3].path, vocab);
    assert_int_equal(l[3].n_items, 1);
    assert_int_equal(l[3].n_overrides, 1);
    assert_string_equal(l[3].overrides, "LOINC 4548-4 (was 3004410, now 3004501)");
    const cg_error_t *w;
    assert_int_equal(cg_mapping_warnings(m, &w), 0);

    char errstr[256];
    cg_mapping_worker_t *wk = cg_mapping_worker_new(m, errstr, sizeof(errstr));
    assert_non_null(wk);
    size_t len;
    char *oru = slurp(CG_SOURCE_DIR "/tests/golden/oru_r01_results/input.hl7", &len);
    const cg_row_t *rows;
    size_t nr;
    cg_error_t me;
    assert_int_equal(cg_mapping_worker_map(wk, CG_INPUT_HL7V2, oru, len, &rows, &nr, &me), CG_OK);
    assert_int_equal(nr, 5); /* the site's spec alone: one measurement per OBX */
    assert_string_equal(rows[0].spec, "hl7v2-oru-omop");
    assert_int_equal(rows[0].spec_version, 7);
    const cg_value_t *c =
        cg_row_value(&rows[0], cg_target_column(rows[0].table, "measurement_concept_id")->index);
    assert_int_equal(c->len, 7);
    assert_memory_equal(c->ptr, "3004501", 7);
    free(oru);
    cg_mapping_worker_destroy(wk);

    /* a reload reads the layers again: the same spec replaced the same way */
    cg_mapping_t *r = cg_mapping_reload(m, errs, 4, &n);
    assert_non_null(r);
    assert_int_equal(cg_specset_count(cg_mapping_specs(r)), cg_specset_count(cg_mapping_specs(m)));
    assert_int_equal(cg_mapping_layers(r, &l), 4);
    assert_int_equal(l[1].n_overrides, 1);
    cg_mapping_destroy(r);
    cg_mapping_destroy(m);

    /* Athena completes the base layer: a site's row still wins over Athena's 4548-4 */
    const char *vlayers[] = {vocab};
    cg_mapping_opts_t oa = {.specs = CG_SOURCE_DIR "/specs",
                            .vocab = CG_SOURCE_DIR "/specs/vocab",
                            .more_vocab = vlayers,
                            .n_more_vocab = 1,
                            .athena = CG_TEST_FIXTURES "/vocab/athena",
                            .no_key = 1};
    assert_non_null(m = cg_mapping_load(&oa, errs, 4, &n));
    cg_vocab_hit_t hit;
    assert_true(cg_vocab_lookup(cg_mapping_vocab(m), (cg_slice_t){"LOINC", 5},
                                (cg_slice_t){"4548-4", 6}, &hit));
    assert_int_equal(hit.concept_id, 3004501);
    assert_int_equal(cg_mapping_layers(m, &l), 4); /* specs; shipped, Athena, site vocab */
    assert_string_equal(l[1].path, CG_SOURCE_DIR "/specs/vocab");
    assert_non_null(strstr(l[2].items, "Athena"));
    assert_true(l[2].n_items > 0);
    assert_int_equal(l[3].n_overrides, 1); /* over Athena's 4548-4 */
    assert_true(cg_vocab_lookup(cg_mapping_vocab(m), (cg_slice_t){"ICD10CM", 7},
                                (cg_slice_t){"X01.1", 5}, NULL)); /* and Athena's own codes */
    cg_mapping_destroy(m);

    /* the same name twice within one layer is still an error */
    write_text(site, "my-oru-again.json",
               "{\"spec\": \"hl7v2-oru-omop\", \"version\": 8, \"input\": {\"format\": "
               "\"hl7v2\", \"messages\": [\"ORU^R01\"]}, \"no_research_content\": \"x\"}\n");
    n = 0;
    assert_null(cg_mapping_load(&o, errs, 4, &n));
    assert_true(n >= 1);
    assert_non_null(strstr(errs[0].text, "loaded already"));
    char cmd[700];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

/* Lookups that find no loaded vocabulary are a warning, not silence. */
static void test_layers_lookup_warnings(void **state)
{
    (void)state;
    char dir[] = "/tmp/cg-test-layers-XXXXXX";
    assert_non_null(mkdtemp(dir));
    write_text(dir, "site.json",
               "{\"spec\": \"site-cpt\", \"version\": 1,\n"
               " \"input\": {\"format\": \"hl7v2\", \"messages\": [\"ORM^O01\"]},\n"
               " \"patient\": {\"id\": \"PID-3.1\", \"authority\": \"PID-3.4.1\"},\n"
               " \"rules\": [{\"name\": \"p\", \"table\": \"procedure_occurrence\", \"foreach\": "
               "\"OBR[*]\",\n"
               "   \"columns\": {\"person_id\": {\"patient\": \"person_id\"},\n"
               "     \"procedure_concept_id\": {\"path\": \"OBR-4.1\", \"pipe\": [{\"lookup\": "
               "{\"vocabulary\": \"CPTX\"}}], \"default\": 0},\n"
               "     \"procedure_date\": {\"path\": \"MSH-7\", \"pipe\": [\"date\"], "
               "\"required\": true},\n"
               "     \"procedure_type_concept_id\": 32817}}]}\n");
    /* the site's folder alone: no vocabulary at all */
    cg_mapping_opts_t o = {.specs = dir, .no_key = 1};
    cg_error_t errs[4];
    size_t n = 0;
    cg_mapping_t *m = cg_mapping_load(&o, errs, 4, &n);
    assert_non_null(m);
    const cg_error_t *w;
    assert_int_equal(cg_mapping_warnings(m, &w), 1);
    assert_non_null(strstr(w[0].file, "site.json"));
    assert_non_null(strstr(w[0].text, "no vocabulary is loaded"));
    cg_mapping_destroy(m);
    /* over the shipped layer: vocabularies, but not the one it names */
    const char *more[] = {dir};
    cg_mapping_opts_t o2 = {
        .specs = CG_SOURCE_DIR "/specs", .more_specs = more, .n_more_specs = 1, .no_key = 1};
    assert_non_null(m = cg_mapping_load(&o2, errs, 4, &n));
    assert_int_equal(cg_mapping_warnings(m, &w), 1);
    assert_non_null(strstr(w[0].text, "vocabulary 'CPTX'"));
    cg_mapping_destroy(m);
    char cmd[700];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

static void test_keyed_worker(void **state)
{
    (void)state;
    cg_mapping_opts_t o = {.specs = CG_SOURCE_DIR "/specs", .no_key = 1};
    cg_error_t errs[4];
    size_t n = 0;
    cg_mapping_t *m = cg_mapping_load(&o, errs, 4, &n);
    assert_non_null(m);
    char errstr[256];
    cg_pseudo_key_t *k1 = cg_pseudo_key_new("key-one-key-one-key-one-key-one-12", 34, errstr, 256);
    cg_pseudo_key_t *k2 = cg_pseudo_key_new("key-two-key-two-key-two-key-two-12", 34, errstr, 256);
    cg_pseudo_t *p1 = cg_pseudo_new(k1, 0, errstr, 256), *p2 = cg_pseudo_new(k2, 0, errstr, 256);
    cg_pseudo_key_destroy(k1);
    cg_pseudo_key_destroy(k2);
    cg_mapping_worker_t *w1 = cg_mapping_worker_new_keyed(m, p1, errstr, sizeof(errstr));
    cg_mapping_worker_t *w2 = cg_mapping_worker_new_keyed(m, p2, errstr, sizeof(errstr));
    assert_non_null(w1);
    assert_non_null(w2);
    size_t len;
    char *adt = slurp(CG_SOURCE_DIR "/tests/golden/adt_a01_admit/input.hl7", &len);
    const cg_row_t *r1, *r2;
    size_t n1, n2;
    cg_error_t me;
    assert_int_equal(cg_mapping_worker_map(w1, CG_INPUT_HL7V2, adt, len, &r1, &n1, &me), CG_OK);
    char *key1 = strndup(r1[0].person_key.ptr, r1[0].person_key.len);
    assert_int_equal(cg_mapping_worker_map(w2, CG_INPUT_HL7V2, adt, len, &r2, &n2, &me), CG_OK);
    assert_int_equal(n1, n2);
    /* another key, another pseudonym for the same patient */
    assert_true(r2[0].person_key.len > 0);
    assert_false(strlen(key1) == r2[0].person_key.len &&
                 !memcmp(key1, r2[0].person_key.ptr, r2[0].person_key.len));
    free(key1);
    free(adt);
    cg_mapping_worker_destroy(w1);
    cg_mapping_worker_destroy(w2);
    cg_pseudo_destroy(p1);
    cg_pseudo_destroy(p2);
    cg_mapping_destroy(m);
}

static void test_input_formats(void **state)
{
    (void)state;
    assert_int_equal(cg_spec_format_find("xml")->format, CG_INPUT_XML);
    assert_int_equal(cg_spec_format_find("hl7v2")->format, CG_INPUT_HL7V2);
    assert_null(cg_spec_format_find("fhir-json"));
    assert_null(cg_spec_format_of(CG_INPUT_AUTO));
    assert_string_equal(cg_spec_format_sniff("\xEF\xBB\xBF <?xml version=\"1.0\"?><a/>", 27)->name,
                        "xml");
    assert_string_equal(cg_spec_format_sniff("MSH|^~\\&|", 9)->name, "hl7v2");
    assert_string_equal(cg_spec_format_sniff("", 0)->name, "hl7v2"); /* the fallback */
    char names[64];
    assert_string_equal(cg_spec_format_names(names, sizeof(names)), "\"hl7v2\" or \"xml\"");
    /* a spec naming another format is refused at its "format", with the known ones */
    const char *spec = "{\"spec\": \"x\", \"version\": 1,\n"
                       " \"input\": {\"format\": \"fhir-json\", \"messages\": [\"ADT^A01\"]},\n"
                       " \"rules\": []}";
    cg_error_t errs[4];
    size_t n = 0;
    assert_null(cg_specset_load_string(spec, "x.json", NULL, errs, 4, &n));
    assert_true(n >= 1);
    assert_int_equal(errs[0].line, 2);
    assert_non_null(strstr(errs[0].text, "\"format\" must be \"hl7v2\" or \"xml\""));
}

/* The error of compiling spec that contains want, or NULL when none does; *col its column. */
static const char *spec_error(const char *spec, const char *want, int *line, int *col)
{
    static cg_error_t errs[8];
    size_t n = 0;
    cg_specset_t *ss = cg_specset_load_string(spec, "f.json", NULL, errs, 8, &n);
    cg_specset_destroy(ss);
    for (size_t i = 0; i < n && i < 8; i++)
        if (strstr(errs[i].text, want)) {
            *line = errs[i].line;
            *col = errs[i].column;
            return errs[i].text;
        }
    return NULL;
}

/* Each format compiles its own "input", paths and foreach (cg_spec_format.h): the same spec text
 * gets the errors of the format it names. */
static void test_formats_compile_their_paths(void **state)
{
    (void)state;
    int line = 0, col = 0;
    /* a path that is not a string: each format's hint */
    const char *hl7 = "{\"spec\": \"h\", \"version\": 1,\n"
                      " \"input\": {\"format\": \"hl7v2\", \"messages\": [\"ADT^A01\"]},\n"
                      " \"rules\": [{\"name\": \"r\", \"table\": \"person\", \"foreach\": "
                      "\"PID-3\",\n \"columns\": {\"gender_source_value\": {\"path\": 1},\n"
                      " \"person_source_value\": {\"path\": \"PID-3.1\", \"pipe\": "
                      "[\"reference\"]}}}]}";
    assert_non_null(spec_error(hl7, "'path' takes a string such as \"PID-5.1\"", &line, &col));
    assert_int_equal(line, 4);
    assert_non_null(spec_error(hl7, "not fields ('PID-3')", &line, &col));
    assert_int_equal(line, 3);
    assert_non_null(spec_error(hl7, "'reference' resolves CDA narrative references", &line, &col));
    const char *xml = "{\"spec\": \"x\", \"version\": 1,\n"
                      " \"input\": {\"format\": \"xml\", \"namespaces\": {\"hl7\": "
                      "\"urn:hl7-org:v3\"}},\n"
                      " \"rules\": [{\"name\": \"r\", \"table\": \"person\", \"foreach\": "
                      "{\"section\": \"nope\"},\n \"columns\": {\"gender_source_value\": "
                      "{\"path\": 1},\n"
                      " \"person_source_value\": {\"path\": \"hl7:a[\", \"pipe\": "
                      "[\"reference\"]}}}]}";
    assert_non_null(spec_error(xml, "'path' takes an XPath such as", &line, &col));
    assert_int_equal(line, 4);
    assert_non_null(spec_error(xml, "unknown section kind", &line, &col));
    assert_int_equal(line, 3);
    /* the XPath's own error, placed at its character inside the string (the quote is at 34) */
    assert_non_null(
        spec_error(xml, "XPath 'hl7:a[': invalid expression at character 7", &line, &col));
    assert_int_equal(line, 5);
    assert_int_equal(col, 41);
    /* no complaint about "reference": XML has narrative references */
    assert_null(spec_error(xml, "'reference' resolves", &line, &col));
    assert_null(spec_error(xml, "\"messages\" lists", &line, &col));
    assert_null(spec_error(hl7, "\"messages\" lists", &line, &col));
}

/* The first row's person key (its pseudonym) of one HL7 v2 message, copied into out. */
static void person_key_of(cg_mapping_worker_t *w, const char *msg, char *out, size_t size)
{
    const cg_row_t *rows;
    size_t n;
    cg_error_t e;
    if (cg_mapping_worker_map(w, CG_INPUT_HL7V2, msg, strlen(msg), &rows, &n, &e) != CG_OK)
        fail_msg("map: %s", e.text);
    assert_true(n > 0);
    snprintf(out, size, "%.*s", (int)rows[0].person_key.len, rows[0].person_key.ptr);
}

/* Issue #13: the shipped specs take the patient identifier by type (mapping.params
 * patient_id_types), so an ADT and an ORU listing PID-3 in another order name one person; by
 * default (the first repetition) they do not, as before. */
static void test_patient_id_types(void **state)
{
    (void)state;
    const char *adt = "MSH|^~\\&|HIS|H|CG|R|20240402080000||ADT^A04|A1|P|2.5.1\r"
                      "PID|1||H-1^^^H^MR~1101^^^CHN^NNCHN||Li^Wei||19670412|F\r";
    const char *oru = "MSH|^~\\&|LIS|H|CG|R|20240402113000||ORU^R01|L1|P|2.5.1\r"
                      "PID|1||1101^^^CHN^NNCHN~H-1^^^H^MR||Li^Wei||19670412|F\r"
                      "OBR|1|O1|F1|4548-4^HbA1c^LN|||20240402100000\r"
                      "OBX|1|NM|4548-4^HbA1c^LN||7.9|%|||||F\r";
    for (int typed = 0; typed < 2; typed++) {
        cg_spec_param_t p = {"patient_id_types", "NNCHN|MR|*"};
        cg_mapping_opts_t o = {.specs = CG_SOURCE_DIR "/specs",
                               .key_file = KEY_FILE,
                               .params = &p,
                               .n_params = (size_t)typed};
        cg_error_t errs[4];
        size_t n = 0;
        cg_mapping_t *m = cg_mapping_load(&o, errs, 4, &n);
        assert_non_null(m);
        char errstr[256], a[64], b[64];
        cg_mapping_worker_t *w = cg_mapping_worker_new(m, errstr, sizeof(errstr));
        assert_non_null(w);
        person_key_of(w, adt, a, sizeof(a));
        person_key_of(w, oru, b, sizeof(b));
        if (typed)
            assert_string_equal(a, b);
        else
            assert_string_not_equal(a, b);
        cg_mapping_worker_destroy(w);
        cg_mapping_destroy(m);
    }
    /* a parameter no spec declares is an error, not silence */
    cg_spec_param_t typo = {"patient_id_type", "MR"};
    cg_mapping_opts_t o = {
        .specs = CG_SOURCE_DIR "/specs", .no_key = 1, .params = &typo, .n_params = 1};
    cg_error_t errs[4];
    size_t n = 0;
    assert_null(cg_mapping_load(&o, errs, 4, &n));
    assert_non_null(strstr(errs[0].text, "no loaded spec declares it"));
}

/* How many numbers in [0, n) give want as the visit id of HOSP_A's visit number "%08d", under
 * the id key of p (a keyed enumeration), or, p NULL, under an unkeyed SHA-256 of the same
 * framing reduced alike (what an attacker without the key can compute). */
static int enumerate_visits(cg_pseudo_t *p, int n, int64_t want, int *which)
{
    int hits = 0;
    for (int v = 0; v < n; v++) {
        char num[16];
        int len = snprintf(num, sizeof(num), "%08d", v);
        cg_slice_t parts[2] = {{"HOSP_A", 6}, {num, (size_t)len}};
        int64_t id = 0;
        if (p) {
            assert_int_equal(cg_pseudo_key_id(p, CG_PSEUDO_ID_KEY,
                                              (cg_slice_t){"visit_occurrence", 16}, parts, 2, &id),
                             CG_OK);
        } else {
            unsigned char md[SHA256_DIGEST_LENGTH];
            char in[64];
            int k = snprintf(in, sizeof(in), "visit_occurrence\x1fHOSP_A\x1f%s", num);
            SHA256((const unsigned char *)in, (size_t)k, md);
            uint64_t x = 0;
            for (int i = 0; i < 8; i++)
                x = x << 8 | md[i];
            id = (int64_t)(x >> 1);
        }
        if (id == want) {
            hits++;
            *which = v;
        }
    }
    return hits;
}

/* #17: an id derived from an identifier cannot be recovered by enumerating the identifier's
 * small space without the key. The keyed enumeration with the site's key is the control: it
 * finds the visit number, so the framing tried is the real one. */
static void test_visit_ids_resist_enumeration(void **state)
{
    (void)state;
    cg_mapping_t *m = load_shipped(NULL);
    char errstr[256];
    cg_mapping_worker_t *w = cg_mapping_worker_new(m, errstr, sizeof(errstr));
    assert_non_null(w);
    static const char adt[] =
        "MSH|^~\\&|ADT|HOSP_A|CG|CG|20240101120000||ADT^A01^ADT_A01|M1|P|2.5.1\r"
        "PID|1||88001^^^HOSP_A^MR||Roe^Ann||19800101|F\r"
        "PV1|1|I|W1^101^1||||||||||||||||00042424\r";
    const cg_row_t *rows;
    size_t n;
    cg_error_t me;
    assert_int_equal(cg_mapping_worker_map(w, CG_INPUT_HL7V2, adt, sizeof(adt) - 1, &rows, &n, &me),
                     CG_OK);
    int64_t visit_id = 0;
    for (size_t i = 0; i < n; i++)
        if (!strcmp(rows[i].table->name, "visit_occurrence")) {
            const cg_value_t *v = cg_row_value_named(&rows[i], "visit_occurrence_id");
            assert_non_null(v);
            char num[24] = {0};
            assert_true(v->ptr && v->len < sizeof(num));
            memcpy(num, v->ptr, v->len);
            visit_id = strtoll(num, NULL, 10);
        }
    assert_true(visit_id > 0);

    char err[128];
    cg_pseudo_key_t *site = cg_pseudo_key_load(KEY_FILE, NULL, err, sizeof(err));
    cg_pseudo_key_t *other =
        cg_pseudo_key_new("another site's key, 32 bytes long!", 34, err, sizeof(err));
    assert_non_null(site);
    assert_non_null(other);
    cg_pseudo_t *ps = cg_pseudo_new(site, 0, err, sizeof(err));
    cg_pseudo_t *po = cg_pseudo_new(other, 0, err, sizeof(err));
    assert_non_null(ps);
    assert_non_null(po);
    int which = -1;
    /* every 8-digit number up to 200,000: the keyed control finds the one visit ... */
    assert_int_equal(enumerate_visits(ps, 200000, visit_id, &which), 1);
    assert_int_equal(which, 42424);
    /* ... and neither another key nor the unkeyed hash finds any */
    which = -1;
    assert_int_equal(enumerate_visits(po, 200000, visit_id, &which), 0);
    assert_int_equal(enumerate_visits(NULL, 200000, visit_id, &which), 0);
    assert_int_equal(which, -1);
    cg_pseudo_destroy(ps);
    cg_pseudo_destroy(po);
    cg_pseudo_key_destroy(site);
    cg_pseudo_key_destroy(other);
    cg_mapping_worker_destroy(w);
    cg_mapping_destroy(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_load_map_route),
        cmocka_unit_test(test_visit_ids_resist_enumeration),
        cmocka_unit_test(test_without_cohorts_routes_nowhere),
        cmocka_unit_test(test_layers_override),
        cmocka_unit_test(test_layers_lookup_warnings),
        cmocka_unit_test(test_errors_are_located),
        cmocka_unit_test(test_reload_shares_and_survives),
        cmocka_unit_test(test_keyed_worker),
        cmocka_unit_test(test_input_formats),
        cmocka_unit_test(test_formats_compile_their_paths),
        cmocka_unit_test(test_patient_id_types),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
