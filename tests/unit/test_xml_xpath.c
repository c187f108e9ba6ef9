/* test_xml_xpath.c - the fast XPath walk against libxml2: for every path of the shipped C-CDA
 * spec and a list of tricky ones, the same nodes in the same order and the same values, over
 * the golden CDA documents, tests/unit/xml and ../shared/corpus/ccda (skipped, and says so,
 * when absent); and the spec's paths do take the fast walk. */
#include <dirent.h>
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "cg_xml.h"

typedef struct pair {
    cg_xml_xpath_t *fast, *slow;
    int foreach; /* its nodes are contexts for the others */
    int from_spec;
} pair_t;

typedef struct plist {
    pair_t *v;
    size_t n, cap;
} plist_t;

static void add_path(plist_t *l, const char *text, int foreach, int from_spec)
{
    for (size_t i = 0; i < l->n; i++)
        if (!strcmp(cg_xml_xpath_text(l->v[i].fast), text)) {
            l->v[i].foreach |= foreach;
            return;
        }
    cg_error_t e;
    cg_xml_xpath_t *f = cg_xml_xpath_compile(text, NULL, 0, &e);
    if (!f)
        return; /* prose, not a path */
    cg_xml_xpath_t *s = cg_xml_xpath_compile_opts(text, NULL, 0, CG_XML_XPATH_LIBXML2, &e);
    assert_non_null(s);
    assert_false(cg_xml_xpath_is_fast(s));
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 64;
        l->v = realloc(l->v, l->cap * sizeof(*l->v));
        assert_non_null(l->v);
    }
    l->v[l->n++] = (pair_t){f, s, foreach, from_spec};
}

/* The section foreach path as spec_compile.c builds it. */
static void section_path(cg_buf_t *b, json_t *sec, const char *rel)
{
    cg_buf_reset(b);
    cg_buf_puts(b, "/hl7:ClinicalDocument/hl7:component/hl7:structuredBody/hl7:component/"
                   "hl7:section[hl7:templateId[");
    const char *sep = "";
    size_t n = json_is_array(sec) ? json_array_size(sec) : 1;
    for (size_t k = 0; k < n; k++) {
        json_t *one = json_is_array(sec) ? json_array_get(sec, k) : sec;
        const cg_xml_section_kind_t *kind = cg_xml_section_kind(json_string_value(one));
        assert_non_null(kind);
        for (size_t t = 0; kind->template_roots[t]; t++, sep = " or ")
            cg_buf_printf(b, "%s@root='%s'", sep, kind->template_roots[t]);
    }
    cg_buf_puts(b, "]]");
    if (rel) {
        cg_buf_putc(b, '/');
        cg_buf_puts(b, rel);
    }
    cg_buf_putc(b, '\0');
}

/* Every string of the spec that compiles and looks like a path, and the section paths. */
static void collect(plist_t *l, json_t *j, const char *key, cg_buf_t *b)
{
    if (json_is_object(j)) {
        json_t *sec = json_object_get(j, "section");
        if (key && !strcmp(key, "foreach") && sec) {
            json_t *rel = json_object_get(j, "path");
            section_path(b, sec, json_is_string(rel) ? json_string_value(rel) : NULL);
            add_path(l, b->data, 1, 1);
            section_path(b, sec, NULL);
            add_path(l, b->data, 1, 1);
        }
        const char *k;
        json_t *v;
        json_object_foreach(j, k, v) collect(l, v, k, b);
    } else if (json_is_array(j)) {
        for (size_t i = 0; i < json_array_size(j); i++)
            collect(l, json_array_get(j, i), key, b);
    } else if (json_is_string(j)) {
        const char *s = json_string_value(j);
        if (strpbrk(s, ":@/"))
            add_path(l, s, key && !strcmp(key, "foreach"), 1);
    }
}

static const char *const tricky[] = {
    "hl7:id[1]/@root",
    "hl7:id[2]/@root",
    "hl7:id[3]",
    "hl7:templateId[2]/@root",
    "hl7:templateId[@extension][1]/@root",
    "hl7:templateId[1][@extension]/@root",
    "hl7:entryRelationship[2]/hl7:observation/hl7:code/@code",
    "hl7:entryRelationship/hl7:observation[1]/hl7:value/@value",
    "hl7:component/hl7:structuredBody/hl7:component[3]/hl7:section/hl7:title",
    "hl7:component/hl7:structuredBody/hl7:component/hl7:section[hl7:templateId[@root='2.16.840."
    "1.113883.10.20.22.2.5.1' or @root='2.16.840.1.113883.10.20.22.2.5']]/hl7:entry[2]",
    "hl7:component/hl7:structuredBody/hl7:component/hl7:section[not(hl7:entry)]/hl7:title",
    "hl7:component/hl7:structuredBody/hl7:component/hl7:section[hl7:entry and hl7:text]/hl7:code/"
    "@code",
    "hl7:component/hl7:structuredBody/hl7:component/hl7:section[hl7:entry/hl7:act or "
    "hl7:entry/hl7:organizer]",
    "hl7:component/hl7:structuredBody/hl7:component/hl7:section[(hl7:code/@code='11450-4' or "
    "hl7:code/@code='30954-2') and not(@nullFlavor)]/hl7:entry",
    "hl7:component/hl7:structuredBody/hl7:component/hl7:section/hl7:entry[1]/*[1]",
    "hl7:component/hl7:structuredBody/*/hl7:section/hl7:entry/*/hl7:templateId/@root",
    "hl7:component/hl7:structuredBody/hl7:component/hl7:section/hl7:entry/hl7:*/hl7:id/@root",
    "hl7:component/hl7:structuredBody/hl7:component/hl7:section/hl7:text/text()",
    "hl7:title/text()",
    "hl7:code/@code",
    "hl7:code",
    "code/@code",
    "*",
    "*[2]",
    "*/@*",
    "@*",
    "@root",
    "@xsi:type",
    "@code",
    "..",
    "../..",
    "../../..",
    "../hl7:id/@root",
    "../../hl7:templateId[1]/@root",
    "..//hl7:code/@code",
    "hl7:entry/descendant::hl7:observation[hl7:templateId/@root='2.16.840.1.113883.10.20.22.4.2']"
    "/@classCode",
    "descendant::hl7:value[@xsi:type='PQ']/@unit",
    "descendant::hl7:value[@xsi:type='PQ'][2]/@unit",
    "descendant::hl7:id[1]/@root",
    "descendant::hl7:*[@nullFlavor]",
    "descendant::*[not(*)][3]",
    "//hl7:observation/hl7:code/@code",
    "//hl7:observation[hl7:statusCode/@code='completed']",
    "//hl7:observation[1]",
    "//hl7:reference/@value",
    ".//hl7:code/@code",
    "/hl7:ClinicalDocument/hl7:recordTarget/hl7:patientRole/hl7:patient/hl7:name/hl7:given[2]",
    "/hl7:ClinicalDocument/hl7:recordTarget//hl7:given",
    "/hl7:ClinicalDocument/hl7:title",
    "/hl7:ClinicalDocument/hl7:*[2]",
    "/*",
    "/ClinicalDocument",
    "hl7:effectiveTime[@xsi:type='IVL_TS' and hl7:low]/hl7:low/@value",
    "hl7:effectiveTime[not(@xsi:type='IVL_TS')]/@value",
    "hl7:effectiveTime[ @xsi:type = \"IVL_TS\" ]/hl7:high/@value",
    "hl7:value[@xsi:type='CD'][@code]/@code",
    "hl7:value[hl7:translation[@codeSystem='2.16.840.1.113883.6.1']]/@code",
    "hl7:entryRelationship[hl7:observation[hl7:templateId[@root='2.16.840.1.113883.10.20.22.4.6'"
    " or @root='2.16.840.1.113883.10.20.22.4.28']]]/hl7:observation/hl7:value/@code",
    "hl7:entryRelationship[@typeCode='SUBJ' or @typeCode='MFST'][1]/@typeCode",
    "hl7:participant[/hl7:ClinicalDocument/hl7:title]/@typeCode",
    "hl7:text[@ID='x']",
    "hl7:text[@*='x']",
    "hl7:code[@code='']",
    "hl7:code[@code!='x']/@code",
    "hl7:id[position()=1]/@root",
    "hl7:id[last()]/@root",
    "count(hl7:id)",
    "hl7:id/@root | hl7:code/@code",
    "string(hl7:code/@code)",
    "hl7:code/@code = '1'",
    "hl7:entry[0]",
    "not",
    "hl7:component/hl7:structuredBody/hl7:component/hl7:section[not]",
    "self::node()",
    "./hl7:code/@code",
};

/* Files of dir ending in .xml, recursively, into names. */
static void list_xml(const char *dir, char ***names, size_t *n)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        struct stat st;
        if (stat(path, &st))
            continue;
        if (S_ISDIR(st.st_mode)) {
            list_xml(path, names, n);
        } else if (strlen(e->d_name) > 4 && !strcmp(e->d_name + strlen(e->d_name) - 4, ".xml")) {
            *names = realloc(*names, (*n + 1) * sizeof(**names));
            (*names)[(*n)++] = strdup(path);
        }
    }
    closedir(d);
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)sz + 1);
    *len = fread(b, 1, (size_t)sz, f);
    fclose(f);
    return b;
}

static size_t n_compared, n_failed;

/* One path at one context: nodes, first value and all values. */
static void compare(cg_xml_eval_t *ev, const pair_t *p, const void *ctx, const char *file)
{
    void *const *nf, *const *ns;
    size_t kf = cg_xml_xpath_nodes(ev, p->fast, ctx, &nf);
    void **copy = malloc((kf + 1) * sizeof(*copy));
    memcpy(copy, nf, kf * sizeof(*copy));
    size_t ks = cg_xml_xpath_nodes(ev, p->slow, ctx, &ns);
    int same = kf == ks && (!kf || !memcmp(copy, ns, kf * sizeof(*copy)));
    free(copy);

    cg_slice_t vf, vs;
    char *sf = NULL;
    int hf = cg_xml_xpath_value(ev, p->fast, ctx, &vf);
    if (hf)
        sf = strndup(vf.ptr, vf.len);
    int hs = cg_xml_xpath_value(ev, p->slow, ctx, &vs);
    same = same && hf == hs && (!hf || (vs.len == strlen(sf) && !memcmp(sf, vs.ptr, vs.len)));
    free(sf);

    cg_buf_t bf, bs;
    cg_buf_init(&bf);
    cg_buf_init(&bs);
    size_t cf = cg_xml_xpath_values(ev, p->fast, ctx, '|', &bf);
    size_t cs = cg_xml_xpath_values(ev, p->slow, ctx, '|', &bs);
    same = same && cf == cs && bf.len == bs.len && (!bf.len || !memcmp(bf.data, bs.data, bf.len));
    cg_buf_free(&bf);
    cg_buf_free(&bs);

    n_compared++;
    if (!same && n_failed++ < 20)
        fprintf(stderr, "MISMATCH %s: '%s' at %p: nodes %zu/%zu values %d/%d all %zu/%zu\n", file,
                cg_xml_xpath_text(p->fast), ctx, kf, ks, hf, hs, cf, cs);
}

/* Each path at the root and at every node a foreach path selects; in small documents, at
 * every element too (via "descendant::*" from the root). */
static void check_doc(const plist_t *l, const pair_t *all_elems, const char *file, int small)
{
    size_t len = 0;
    char *buf = slurp(file, &len);
    assert_non_null(buf);
    cg_xml_doc_t *d = cg_xml_doc_new(NULL);
    cg_xml_eval_t *ev = cg_xml_eval_new();
    cg_error_t err;
    if (cg_xml_parse(d, buf, len, &err) != CG_OK) {
        fprintf(stderr, "note: %s does not parse (%s), skipped\n", file, err.text);
        goto out;
    }
    cg_xml_eval_bind(ev, d);
    const void **ctxs = NULL;
    size_t n_ctx = 0;
    ctxs = realloc(ctxs, sizeof(*ctxs));
    ctxs[n_ctx++] = NULL;
    for (size_t i = 0; i < l->n + (small ? 1 : 0); i++) {
        const pair_t *p = i < l->n ? &l->v[i] : all_elems;
        if (i < l->n && !p->foreach)
            continue;
        void *const *nodes;
        size_t k = cg_xml_xpath_nodes(ev, p->slow, NULL, &nodes);
        ctxs = realloc(ctxs, (n_ctx + k) * sizeof(*ctxs));
        for (size_t j = 0; j < k; j++)
            ctxs[n_ctx++] = nodes[j];
    }
    for (size_t c = 0; c < n_ctx; c++)
        for (size_t i = 0; i < l->n; i++)
            compare(ev, &l->v[i], ctxs[c], file);
    free(ctxs);
out:
    cg_xml_eval_destroy(ev);
    cg_xml_doc_destroy(d);
    free(buf);
}

static void test_fast_equals_libxml2(void **state)
{
    (void)state;
    char spec_path[4096];
    snprintf(spec_path, sizeof(spec_path), "%s/specs/cda-ccda-omop.json", CG_SOURCE_DIR);
    json_error_t je;
    json_t *spec = json_load_file(spec_path, 0, &je);
    assert_non_null(spec);
    plist_t l = {0};
    cg_buf_t b;
    cg_buf_init(&b);
    collect(&l, spec, NULL, &b);
    cg_buf_free(&b);
    json_decref(spec);
    size_t n_spec = l.n;
    assert_true(n_spec > 40);

    /* (2) the spec's paths all take the fast walk */
    size_t slow = 0;
    for (size_t i = 0; i < n_spec; i++)
        if (!cg_xml_xpath_is_fast(l.v[i].fast) && slow++ < 10)
            fprintf(stderr, "not fast: %s\n", cg_xml_xpath_text(l.v[i].fast));
    assert_int_equal(slow, 0);

    size_t n_fast_tricky = 0;
    for (size_t i = 0; i < sizeof(tricky) / sizeof(tricky[0]); i++) {
        size_t before = l.n;
        add_path(&l, tricky[i], 0, 0);
        if (l.n > before && cg_xml_xpath_is_fast(l.v[l.n - 1].fast))
            n_fast_tricky++;
    }
    printf("%zu spec paths, %zu tricky paths (%zu of them fast)\n", n_spec, l.n - n_spec,
           n_fast_tricky);
    assert_true(n_fast_tricky > 50);
    /* these stay with libxml2 */
    static const char *const slow_ones[] = {"hl7:id[last()]/@root", "count(hl7:id)",
                                            "hl7:code/@code = '1'", "//hl7:observation[1]",
                                            "self::node()",         "hl7:code[@code!='x']/@code"};
    for (size_t i = 0; i < sizeof(slow_ones) / sizeof(slow_ones[0]); i++) {
        cg_error_t e;
        cg_xml_xpath_t *x = cg_xml_xpath_compile(slow_ones[i], NULL, 0, &e);
        assert_non_null(x);
        assert_false(cg_xml_xpath_is_fast(x));
        cg_xml_xpath_free(x);
    }

    cg_error_t e;
    pair_t all = {0};
    all.slow =
        cg_xml_xpath_compile_opts("descendant-or-self::*", NULL, 0, CG_XML_XPATH_LIBXML2, &e);
    assert_non_null(all.slow);

    char **names = NULL;
    size_t n_names = 0, n_small;
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s/tests/golden", CG_SOURCE_DIR);
    DIR *g = opendir(dir);
    assert_non_null(g);
    struct dirent *de;
    while ((de = readdir(g)))
        if (!strncmp(de->d_name, "cda_", 4)) {
            char p[4096];
            snprintf(p, sizeof(p), "%s/%s/input.xml", dir, de->d_name);
            struct stat st;
            if (!stat(p, &st)) {
                names = realloc(names, (n_names + 1) * sizeof(*names));
                names[n_names++] = strdup(p);
            }
        }
    closedir(g);
    snprintf(dir, sizeof(dir), "%s/tests/unit/xml", CG_SOURCE_DIR);
    list_xml(dir, &names, &n_names);
    n_small = n_names;
    assert_true(n_small >= 3);
    snprintf(dir, sizeof(dir), "%s/ccda", CG_SHARED_CORPUS);
    list_xml(dir, &names, &n_names);
    if (n_names == n_small)
        printf("corpus %s: SKIPPED (not found; only the project's documents compared)\n", dir);
    else
        printf("corpus %s: %zu documents\n", dir, n_names - n_small);
    for (size_t i = 0; i < n_names; i++) {
        check_doc(&l, &all, names[i], i < n_small);
        free(names[i]);
    }
    free(names);
    printf("%zu comparisons, %zu mismatches\n", n_compared, n_failed);
    assert_int_equal(n_failed, 0);
    assert_true(n_compared > 1000);

    cg_xml_xpath_free(all.slow);
    for (size_t i = 0; i < l.n; i++) {
        cg_xml_xpath_free(l.v[i].fast);
        cg_xml_xpath_free(l.v[i].slow);
    }
    free(l.v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fast_equals_libxml2),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
