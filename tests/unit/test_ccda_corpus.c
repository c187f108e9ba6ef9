/* test_ccda_corpus.c - the shipped specs over ../shared/corpus/ccda (skipped, and says so, when
 * the corpus is absent).
 *
 * Every file either maps or fails with a stage and a reason; none crashes (ASan runs this too).
 * Every whole document maps: the Transfer Summary's encounter with a malformed date is left out
 * and reported as a quality finding (on_error "entry"), the rest of it maps.
 * Whole documents are mapped as they are. Most of the corpus is section and entry fragments with
 * no header and so no patient: they are mapped as they are (and must fail with a reason), and
 * once more wrapped into a minimal C-CDA header, which exercises the section rules on every
 * example. Every row produced must be a JSON object of the table it names. The figures are
 * printed for the note.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <dirent.h>
#include <jansson.h>
#include <sys/stat.h>

#include "cg_mapping.h"
#include "spec_test_util.h"
#include "test_hl7_util.h"

#define MAX_REASONS 64

typedef struct tally {
    size_t files, mapped, failed, rows;
    size_t left_out; /* entries left out under on_error "entry" (quality findings) */
    size_t per_table[8];
    char reasons[MAX_REASONS][160];
    size_t reason_count[MAX_REASONS];
    size_t n_reasons;
} tally_t;

static const char *const tables[] = {"person",
                                     "visit_occurrence",
                                     "condition_occurrence",
                                     "measurement",
                                     "drug_exposure",
                                     "observation",
                                     "death",
                                     "cohortgate.document_retraction",
                                     NULL};

static cg_mapping_worker_t *mw;
static tally_t docs, as_is, wrapped;
static size_t transfer_summary_findings;

/* Groups a failure's reason by its first words (paths and values differ per file). */
static void count_reason(tally_t *t, const cg_error_t *e)
{
    char key[160];
    snprintf(key, sizeof(key), "%s: %s%s%.90s", e->stage ? e->stage : "?", e->rule,
             e->rule[0] ? ": " : "", e->text);
    char *paren = strstr(key, " (templateIds");
    if (paren)
        *paren = '\0';
    for (size_t i = 0; i < t->n_reasons; i++)
        if (!strcmp(t->reasons[i], key)) {
            t->reason_count[i]++;
            return;
        }
    if (t->n_reasons < MAX_REASONS) {
        snprintf(t->reasons[t->n_reasons], sizeof(t->reasons[0]), "%s", key);
        t->reason_count[t->n_reasons++] = 1;
    }
}

static void map_one(tally_t *t, const char *path, const char *buf, size_t len)
{
    const cg_row_t *rows;
    size_t n;
    cg_error_t e;
    t->files++;
    cg_err_t rc = cg_mapping_worker_map(mw, CG_INPUT_XML, buf, len, &rows, &n, &e);
    if (rc) {
        t->failed++;
        if (!e.stage || !e.text[0])
            fail_msg("%s: failed (%s) without a stage and reason", path, cg_err_name(rc));
        count_reason(t, &e);
        return;
    }
    t->mapped++;
    t->rows += n;
    const cg_quality_t *q;
    size_t nq = cg_mapping_worker_quality(mw, &q);
    t->left_out += nq;
    for (size_t i = 0; i < nq; i++) {
        char line[1536];
        printf("  quality: %s: %s\n", strrchr(path, '/') + 1,
               cg_quality_format(&q[i], line, sizeof(line)));
        /* the Transfer Summary's encounter dated 200130212: reported, without its value */
        if (strstr(path, "Transfer_Summary.xml")) {
            assert_int_equal(nq, 1);
            assert_string_equal(q[i].rule, "encounters");
            assert_string_equal(q[i].reason, "invalid_datetime");
            assert_non_null(q[i].xpath);
            assert_true(q[i].line > 0);
            cg_buf_t b;
            cg_buf_init(&b);
            assert_int_equal(cg_quality_encode(&q[i], NULL, &b), CG_OK);
            cg_buf_putc(&b, '\0');
            assert_null(strstr(b.data, "200130212"));
            cg_buf_free(&b);
            transfer_summary_findings++;
        }
    }
    for (size_t i = 0; i < n; i++) {
        json_error_t je;
        cg_buf_t rec;
        cg_buf_init(&rec);
        if (cg_row_encode(&rows[i], NULL, NULL, 0, 0, &rec) != CG_OK)
            fail_msg("%s: rule %s: the record cannot be encoded", path, rows[i].rule);
        json_t *env = json_loadb(rec.data, rec.len, 0, &je);
        cg_buf_free(&rec);
        json_t *row = json_object_get(env, "row");
        if (!json_is_object(row))
            fail_msg("%s: rule %s: row is not a JSON object: %s", path, rows[i].rule, je.text);
        if (!json_is_integer(json_object_get(row, "person_id")))
            fail_msg("%s: rule %s: row without an integer person_id", path, rows[i].rule);
        if (cg_row_value_named(&rows[i], "person_id")->kind != CG_VALUE_INTEGER)
            fail_msg("%s: rule %s: person_id is not typed an integer", path, rows[i].rule);
        json_decref(env);
        size_t k = 0;
        while (tables[k] && strcmp(tables[k], rows[i].table->name))
            k++;
        if (!tables[k])
            fail_msg("%s: unexpected table %s", path, rows[i].table->name);
        t->per_table[k]++;
    }
}

/* The first element's local name after the declaration and comments. */
static const char *root_name(const char *buf, char *out, size_t size)
{
    const char *p = buf;
    out[0] = '\0';
    while ((p = strchr(p, '<'))) {
        if (p[1] == '?' || p[1] == '!') {
            p++;
            continue;
        }
        size_t n = strcspn(p + 1, " \t\r\n>/");
        const char *colon = memchr(p + 1, ':', n);
        const char *name = colon ? colon + 1 : p + 1;
        n -= (size_t)(name - (p + 1));
        snprintf(out, size, "%.*s", (int)(n < size ? n : size - 1), name);
        return out;
    }
    return out;
}

/* A fragment (section, component) inside a minimal C-CDA header with a test patient. */
static char *wrap(const char *buf, const char *root, size_t *len)
{
    const char *body = buf;
    if (!strncmp(body, "\xEF\xBB\xBF", 3))
        body += 3;
    const char *decl = strstr(body, "<?xml");
    if (decl && (decl = strstr(decl, "?>")))
        body = decl + 2;
    const char *open = !strcmp(root, "section") ? "<component>" : "";
    const char *close = !strcmp(root, "section") ? "</component>" : "";
    char *out = NULL;
    int n = asprintf(
        &out,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        "<ClinicalDocument xmlns=\"urn:hl7-org:v3\" "
        "xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" xmlns:sdtc=\"urn:hl7-org:sdtc\">"
        "<templateId root=\"2.16.840.1.113883.10.20.22.1.1\"/>"
        "<id root=\"2.999.1\" extension=\"corpus\"/><effectiveTime value=\"20200101\"/>"
        "<recordTarget><patientRole><id root=\"2.999.2\" extension=\"P1\"/>"
        "<patient><birthTime value=\"1970\"/></patient></patientRole></recordTarget>"
        "<component><structuredBody>%s%s%s</structuredBody></component></ClinicalDocument>",
        open, body, close);
    *len = n > 0 ? (size_t)n : 0;
    return n > 0 ? out : NULL;
}

static void check_file(const char *path)
{
    size_t len;
    char *buf = th_read(path, &len);
    assert_non_null(buf);
    char root[64];
    root_name(buf, root, sizeof(root));
    if (!strcmp(root, "ClinicalDocument")) {
        map_one(&docs, path, buf, len);
    } else {
        map_one(&as_is, path, buf, len);
        if (!strcmp(root, "section") || !strcmp(root, "component")) {
            size_t wl;
            char *w = wrap(buf, root, &wl);
            assert_non_null(w);
            map_one(&wrapped, path, w, wl);
            free(w);
        }
    }
    free(buf);
}

static void walk(const char *dir)
{
    struct dirent **ents;
    int n = scandir(dir, &ents, NULL, alphasort);
    assert_true(n >= 0);
    for (int i = 0; i < n; i++) {
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", dir, ents[i]->d_name);
        struct stat st;
        size_t l = strlen(ents[i]->d_name);
        if (ents[i]->d_name[0] != '.' && stat(path, &st) == 0) {
            if (S_ISDIR(st.st_mode))
                walk(path);
            else if (l > 4 && !strcmp(ents[i]->d_name + l - 4, ".xml"))
                check_file(path);
        }
        free(ents[i]);
    }
    free(ents);
}

static void print_tally(const char *what, const tally_t *t)
{
    printf("%s: %zu files, %zu mapped, %zu failed, %zu entries left out, %zu rows (", what,
           t->files, t->mapped, t->failed, t->left_out, t->rows);
    for (size_t k = 0; tables[k]; k++)
        printf("%s%s %zu", k ? ", " : "", tables[k], t->per_table[k]);
    printf(")\n");
    for (size_t i = 0; i < t->n_reasons; i++)
        printf("  %3zu x %s\n", t->reason_count[i], t->reasons[i]);
}

static void test_corpus(void **state)
{
    (void)state;
    const char *dir = CG_SHARED_CORPUS "/ccda";
    struct stat st;
    if (stat(dir, &st) != 0) {
        printf("SKIPPED: ../shared/corpus/ccda not found (%s)\n", dir);
        skip();
    }
    /* the CDA spec alone, with the vocabularies beside it (specs/vocab) */
    cg_mapping_opts_t o = {.specs = CG_SOURCE_DIR "/specs/cda-ccda-omop.json",
                           .key_file = CG_SOURCE_DIR "/tests/golden/key"};
    cg_mapping_t *m = spec_test_mapping(&o, &mw);

    walk(dir);

    print_tally("whole documents", &docs);
    print_tally("fragments as they are", &as_is);
    print_tally("fragments in a minimal C-CDA header", &wrapped);
    /* the corpus has both kinds; every file got a verdict (map_one fails the test otherwise) */
    assert_true(docs.files > 0 && as_is.files > 0);
    assert_int_equal(as_is.mapped, 0); /* no header, no patient: nothing may map */
    assert_true(docs.mapped > 0 && wrapped.mapped > 0);
    /* every document with a header maps, the Transfer Summary included (its bad entry is a
     * quality finding, on_error "entry") */
    assert_int_equal(docs.failed, 0);
    assert_int_equal(transfer_summary_findings, 1);

    cg_mapping_worker_destroy(mw);
    cg_mapping_destroy(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_corpus)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
