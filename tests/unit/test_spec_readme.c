/* test_spec_readme.c - runs every example of specs/README.md: each spec compiles, its message
 * maps, and every expected line's columns match the row at that position. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cg_pseudo.h"
#include "cg_spec.h"
#include "cg_vocab.h"

static char *read_all(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    char *s = malloc((size_t)n + 1);
    if (fread(s, 1, (size_t)n, f) != (size_t)n)
        n = 0;
    s[n] = '\0';
    fclose(f);
    return s;
}

/* The body of the next ``` block of the given kind after *p; advances *p past it. */
static char *next_block(const char **p, const char *kind)
{
    char open[32];
    snprintf(open, sizeof(open), "```%s\n", kind);
    const char *a = strstr(*p, open);
    if (!a)
        return NULL;
    a += strlen(open);
    const char *b = strstr(a, "\n```");
    if (!b)
        return NULL;
    *p = b + 4;
    return strndup(a, (size_t)(b - a) + 1);
}

static void test_readme_examples(void **state)
{
    (void)state;
    char *doc = read_all(CG_SOURCE_DIR "/specs/README.md");
    assert_non_null(doc);
    char err[256];
    cg_pseudo_key_t *k =
        cg_pseudo_key_new("readme-example-key-readme-example-key", 36, err, sizeof(err));
    cg_pseudo_t *pseudo = cg_pseudo_new(k, 0, err, sizeof(err));
    cg_pseudo_key_destroy(k);
    cg_vocab_t *vocab = cg_vocab_new();
    size_t nerr = 0;
    cg_vocab_load_csv_dir(vocab, CG_SOURCE_DIR "/specs/vocab", NULL, 0, &nerr);
    assert_int_equal(nerr, 0);
    cg_spec_env_t env = {.vocab = vocab, .pseudo = pseudo};

    int examples = 0;
    const char *p = doc;
    while ((p = strstr(p, "<!-- example: ")) != NULL) {
        char name[64];
        sscanf(p, "<!-- example: %63[^ ]", name);
        char *spec = next_block(&p, "json");
        /* the input: an HL7 v2 message or an XML document, whichever block comes first */
        const char *h = strstr(p, "```hl7\n"), *x = strstr(p, "```xml\n");
        int is_xml = x && (!h || x < h);
        char *hl7 = next_block(&p, is_xml ? "xml" : "hl7");
        char *expected = next_block(&p, "ndjson");
        assert_non_null(spec);
        assert_non_null(hl7);
        assert_non_null(expected);
        for (char *c = hl7; !is_xml && *c; c++) /* the page writes segments a line each */
            if (*c == '\n')
                *c = '\r';
        cg_error_t errs[4];
        size_t n_errs = 0;
        cg_specset_t *ss = cg_specset_load_string(spec, name, &env, errs, 4, &n_errs);
        if (!ss)
            fail_msg("example %s: %s:%d:%d: %s", name, errs[0].file, errs[0].line, errs[0].column,
                     errs[0].text);
        cg_mapper_t *mp = cg_mapper_new(ss, &env, err, sizeof(err));
        const cg_row_t *rows;
        size_t n_rows;
        cg_error_t me;
        if (cg_mapper_map(mp, hl7, strlen(hl7), &rows, &n_rows, &me) != CG_OK)
            fail_msg("example %s: %s: %s", name, me.stage, me.text);
        size_t line = 0;
        for (char *l = strtok(expected, "\n"); l; l = strtok(NULL, "\n"), line++) {
            json_error_t je;
            json_t *want = json_loads(l, 0, &je);
            if (!want)
                fail_msg("example %s: expected line %zu is not JSON: %s", name, line + 1, je.text);
            if (line >= n_rows)
                fail_msg("example %s: %zu row(s), expected at least %zu", name, n_rows, line + 1);
            assert_string_equal(json_string_value(json_object_get(want, "table")),
                                rows[line].table->name);
            /* the row as its record carries it */
            cg_buf_t rec;
            cg_buf_init(&rec);
            assert_int_equal(cg_row_encode(&rows[line], NULL, NULL, 0, 0, &rec), CG_OK);
            json_t *record = json_loadb(rec.data, rec.len, 0, &je);
            cg_buf_free(&rec);
            json_t *got = json_incref(json_object_get(record, "row"));
            json_decref(record);
            const char *col;
            json_t *v;
            json_object_foreach(json_object_get(want, "row"), col, v)
            {
                if (!json_equal(v, json_object_get(got, col)))
                    fail_msg("example %s: row %zu column %s differs", name, line + 1, col);
            }
            json_decref(got);
            json_decref(want);
        }
        assert_int_equal(line, n_rows);
        cg_mapper_destroy(mp);
        cg_specset_destroy(ss);
        free(spec);
        free(hl7);
        free(expected);
        examples++;
    }
    printf("specs/README.md: %d example(s) run\n", examples);
    assert_true(examples >= 3);
    cg_vocab_destroy(vocab);
    cg_pseudo_destroy(pseudo);
    free(doc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_readme_examples)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
