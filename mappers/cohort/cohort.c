/* cohort.c - cohort definitions compiled once and applied to output rows (cg_cohort.h). */
#include "cg_cohort.h"

#include "cg_jsonpos.h"
#include "cg_row.h"
#include "cg_target.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <ctype.h>
#include <dirent.h>
#include <jansson.h>
#include <pcre2.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define COHORT_REGEX_MATCH_LIMIT 100000u
#define COHORT_REGEX_DEPTH_LIMIT 1000u

typedef enum { CMP_NONE, CMP_AT_LEAST, CMP_ABOVE, CMP_AT_MOST, CMP_BELOW } cmp_t;

/* Columns are resolved to their index in the table once, here: routing reads row->values[i]. */
typedef struct match {
    const cg_target_table_t *table;
    uint32_t column;
    pcre2_code *re; /* "regex" */
    char **values;  /* "in": text of each value (numbers as written) */
    size_t *value_lens;
    size_t n_values;
    uint32_t value_column; /* "value" + threshold */
    cmp_t cmp;
    double threshold;
    /* "unmapped": the rule applies only while this concept column is 0 or empty, so a source
     * code is a fallback for rows no vocabulary mapped, and a mapped row is judged by its
     * concept alone */
    int has_unmapped;
    uint32_t unmapped_column;
    char *why; /* for --trace: "match[N] {the rule as written}" */
} match_t;

typedef struct cohort {
    char *name;
    int version;
    match_t *matches;
    size_t n_matches;
} cohort_t;

struct cg_cohortset {
    cohort_t *cohorts;
    size_t n;
};

struct cg_cohort_router {
    const cg_cohortset_t *cs;
    pcre2_match_data *md;
    pcre2_match_context *mctx;
    const char **hits; /* names of the cohorts the last row matched */
    const char **why;  /* and the rule of each that matched */
    size_t n_hits;
};

/* ---- compiling ---- */

typedef struct cc {
    const char *file;
    const cg_jsonpos_t *jp;
    cg_jsonpos_errors_t e; /* every error of the files being compiled */
    const char *cohort;
} cc_t;

static void err_at(cc_t *c, const json_t *at, const json_t *obj, const char *key, const char *fmt,
                   ...) __attribute__((format(printf, 5, 6)));

static void err_at(cc_t *c, const json_t *at, const json_t *obj, const char *key, const char *fmt,
                   ...)
{
    char what[128] = "";
    if (c->cohort)
        snprintf(what, sizeof(what), "cohort '%s': ", c->cohort);
    va_list ap;
    va_start(ap, fmt);
    cg_jsonpos_error(&c->e, c->jp, CG_ERR_CONFIG, c->file, at, obj, key, what, fmt, ap);
    va_end(ap);
}

static int valid_name(const char *s)
{
    if (!*s || strlen(s) > 100)
        return 0;
    for (; *s; s++)
        if (!(islower((unsigned char)*s) || isdigit((unsigned char)*s) || *s == '_' || *s == '-'))
            return 0;
    return 1;
}

static void free_match(match_t *m)
{
    pcre2_code_free(m->re);
    for (size_t i = 0; i < m->n_values; i++)
        free(m->values[i]);
    free(m->values);
    free(m->value_lens);
    free(m->why);
}

static void compile_match(cc_t *c, json_t *j, match_t *m)
{
    static const char *const keys[] = {"table", "column",   "regex",       "in",
                                       "value", "at_least", "above",       "at_most",
                                       "below", "unmapped", "description", NULL};
    if (!json_is_object(j)) {
        err_at(c, j, NULL, NULL, "a match is an object: {\"table\", \"column\", …}");
        return;
    }
    const char *k;
    json_t *v;
    json_object_foreach(j, k, v)
    {
        int known = 0;
        for (size_t i = 0; keys[i]; i++)
            known |= !strcmp(k, keys[i]);
        if (!known)
            err_at(c, v, j, k, "unknown key '%s' in a match", k);
    }
    json_t *t = json_object_get(j, "table"), *col = json_object_get(j, "column");
    /* any target's table of facts (upserted rows); a table of events (a merge) joins no cohort */
    const cg_target_table_t *table = cg_target_table_any(json_string_value(t));
    if (!table || table->op != CG_ROW_UPSERT) {
        char what[200];
        err_at(c, t, j, "table", "\"table\" must name %s, not '%s'",
               cg_target_what_list(CG_ROW_UPSERT, what, sizeof(what)),
               json_is_string(t) ? json_string_value(t) : "?");
        return;
    }
    m->table = table;
    const cg_target_column_t *tc = cg_target_column(table, json_string_value(col));
    if (!tc) {
        char hint[800];
        err_at(c, col, j, "column", "table %s has no column '%s': %s", table->name,
               json_is_string(col) ? json_string_value(col) : "?",
               cg_target_column_hint(table, json_string_value(col), hint, sizeof(hint)));
        return;
    }
    m->column = tc->index;
    json_t *re = json_object_get(j, "regex"), *in = json_object_get(j, "in");
    if (re && in)
        err_at(c, in, j, "in", "a match has \"regex\" or \"in\", not both");
    if (re) {
        int code;
        PCRE2_SIZE off;
        if (!json_is_string(re)) {
            err_at(c, re, j, "regex", "\"regex\" is a string");
            return;
        }
        m->re = pcre2_compile((PCRE2_SPTR)json_string_value(re), PCRE2_ZERO_TERMINATED, PCRE2_UTF,
                              &code, &off, NULL);
        if (!m->re) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(code, msg, sizeof(msg));
            err_at(c, re, j, "regex", "regex '%s' does not compile at offset %zu: %s",
                   json_string_value(re), (size_t)off, (const char *)msg);
            return;
        }
        pcre2_jit_compile(m->re, PCRE2_JIT_COMPLETE);
    }
    if (in) {
        if (!json_is_array(in) || json_array_size(in) == 0) {
            err_at(c, in, j, "in", "\"in\" is a non-empty array of codes or concept ids");
            return;
        }
        m->values = calloc(json_array_size(in), sizeof(*m->values));
        m->value_lens = calloc(json_array_size(in), sizeof(*m->value_lens));
        if (!m->values || !m->value_lens) {
            err_at(c, in, j, "in", "out of memory");
            return;
        }
        size_t i;
        json_t *x;
        json_array_foreach(in, i, x)
        {
            char buf[64];
            if (json_is_string(x))
                m->values[m->n_values++] = strdup(json_string_value(x));
            else if (json_is_integer(x)) {
                snprintf(buf, sizeof(buf), "%" JSON_INTEGER_FORMAT, json_integer_value(x));
                m->values[m->n_values++] = strdup(buf);
            } else
                err_at(c, x, NULL, NULL, "\"in\" values are strings or integers");
            if (m->n_values && m->values[m->n_values - 1])
                m->value_lens[m->n_values - 1] = strlen(m->values[m->n_values - 1]);
        }
    }
    static const struct {
        const char *key;
        cmp_t cmp;
    } cmps[] = {{"at_least", CMP_AT_LEAST},
                {"above", CMP_ABOVE},
                {"at_most", CMP_AT_MOST},
                {"below", CMP_BELOW}};
    for (size_t i = 0; i < 4; i++) {
        json_t *th = json_object_get(j, cmps[i].key);
        if (!th)
            continue;
        if (!json_is_number(th) || m->cmp != CMP_NONE) {
            err_at(c, th, j, cmps[i].key,
                   "one threshold (at_least, above, at_most, below), and it is a number");
            return;
        }
        m->cmp = cmps[i].cmp;
        m->threshold = json_number_value(th);
    }
    json_t *um = json_object_get(j, "unmapped");
    if (um) {
        const cg_target_column_t *uc = cg_target_column(table, json_string_value(um));
        size_t l = uc ? strlen(uc->name) : 0;
        if (!uc || uc->type != CG_COL_INT32 || l < 11 || strcmp(uc->name + l - 11, "_concept_id")) {
            err_at(c, um, j, "unmapped",
                   "\"unmapped\" names a *_concept_id column of %s: the rule applies while it "
                   "is 0 (no vocabulary mapped the code)",
                   table->name);
            return;
        }
        m->has_unmapped = 1;
        m->unmapped_column = uc->index;
    }
    json_t *vc = json_object_get(j, "value");
    if ((vc != NULL) != (m->cmp != CMP_NONE)) {
        err_at(c, vc ? vc : j, j, "value",
               "a threshold needs \"value\": the column it applies to, and the other way round");
        return;
    }
    if (vc) {
        const cg_target_column_t *oc = cg_target_column(table, json_string_value(vc));
        if (!oc ||
            (oc->type != CG_COL_NUMBER && oc->type != CG_COL_INT32 && oc->type != CG_COL_INT64)) {
            err_at(c, vc, j, "value", "\"value\" must name a numeric column of %s", table->name);
            return;
        }
        m->value_column = oc->index;
    }
}

static void compile_cohort(cc_t *c, json_t *root, cohort_t *co)
{
    static const char *const keys[] = {"cohort", "version", "description", "match", NULL};
    c->cohort = NULL;
    if (!json_is_object(root)) {
        err_at(c, root, NULL, NULL, "a cohort file is a JSON object");
        return;
    }
    const char *k;
    json_t *v;
    json_object_foreach(root, k, v)
    {
        int known = 0;
        for (size_t i = 0; keys[i]; i++)
            known |= !strcmp(k, keys[i]);
        if (!known)
            err_at(c, v, root, k, "unknown key '%s'", k);
    }
    json_t *name = json_object_get(root, "cohort");
    if (!json_is_string(name) || !valid_name(json_string_value(name))) {
        err_at(c, name, root, "cohort",
               "\"cohort\" names the cohort in lower-case letters, digits, _ and - (it becomes "
               "part of topic names)");
        co->name = strdup("?");
    } else {
        co->name = strdup(json_string_value(name));
    }
    c->cohort = co->name;
    json_t *ver = json_object_get(root, "version");
    if (!json_is_integer(ver) || json_integer_value(ver) < 1)
        err_at(c, ver, root, "version", "\"version\" must be a positive integer");
    else
        co->version = (int)json_integer_value(ver);
    json_t *ms = json_object_get(root, "match");
    if (!json_is_array(ms) || json_array_size(ms) == 0) {
        err_at(c, ms, root, "match",
               "\"match\" is a non-empty array of rules; a row that "
               "matches any of them belongs to the cohort");
        return;
    }
    co->matches = calloc(json_array_size(ms), sizeof(*co->matches));
    size_t i;
    json_array_foreach(ms, i, v)
    {
        match_t *m = &co->matches[co->n_matches++];
        compile_match(c, v, m);
        /* the rule as its file writes it, for --trace: cut when a long "in" makes it long */
        char *text = json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER);
        if (text && (m->why = malloc(strlen(text) + 32)))
            sprintf(m->why, "match[%zu] %.200s%s", i, text, strlen(text) > 200 ? "…" : "");
        free(text);
    }
}

static void add_text(cg_cohortset_t *cs, cc_t *c, const char *text, const char *name)
{
    c->file = name;
    c->cohort = NULL;
    json_error_t je;
    json_t *root = json_loads(text, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        size_t i = c->e.n++;
        if (i < c->e.max && c->e.errs)
            cg_error_set(&c->e.errs[i], CG_ERR_CONFIG, name, je.line, je.column, "%s", je.text);
        return;
    }
    cg_jsonpos_t *jp = cg_jsonpos_build(text, root);
    c->jp = jp;
    cohort_t *grown = realloc(cs->cohorts, (cs->n + 1) * sizeof(*grown));
    if (grown) {
        cs->cohorts = grown;
        cohort_t *co = &cs->cohorts[cs->n++];
        memset(co, 0, sizeof(*co));
        compile_cohort(c, root, co);
        for (size_t k = 0; k + 1 < cs->n; k++)
            if (!strcmp(cs->cohorts[k].name, co->name))
                err_at(c, json_object_get(root, "cohort"), root, "cohort",
                       "a cohort of this name is loaded already");
    }
    c->jp = NULL;
    cg_jsonpos_destroy(jp);
    json_decref(root);
}

static cg_cohortset_t *finish(cg_cohortset_t *cs, cc_t *c, size_t *n_errs)
{
    if (n_errs)
        *n_errs = c->e.n;
    if (c->e.n) {
        cg_cohortset_destroy(cs);
        return NULL;
    }
    return cs;
}

cg_cohortset_t *cg_cohortset_load_string(const char *text, const char *name, cg_error_t *errs,
                                         size_t max_errs, size_t *n_errs)
{
    cg_cohortset_t *cs = calloc(1, sizeof(*cs));
    cc_t c = {.e = {errs, max_errs, 0}};
    if (!cs)
        return NULL;
    add_text(cs, &c, text, name);
    return finish(cs, &c, n_errs);
}

static int json_file(const struct dirent *d)
{
    size_t n = strlen(d->d_name);
    return d->d_name[0] != '.' && n > 5 && !strcmp(d->d_name + n - 5, ".json");
}

static char *slurp(const char *path)
{
    cg_buf_t b;
    cg_buf_init(&b);
    if (cg_buf_read_file(&b, path) != CG_OK) {
        cg_buf_free(&b);
        return NULL;
    }
    return b.data ? b.data : strdup("");
}

cg_cohortset_t *cg_cohortset_load(const char *path, cg_error_t *errs, size_t max_errs,
                                  size_t *n_errs)
{
    cg_cohortset_t *cs = calloc(1, sizeof(*cs));
    cc_t c = {.e = {errs, max_errs, 0}, .file = path};
    if (!cs)
        return NULL;
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        struct dirent **names;
        int n = scandir(path, &names, json_file, alphasort);
        for (int i = 0; i < n; i++) {
            char file[4096];
            snprintf(file, sizeof(file), "%s/%s", path, names[i]->d_name);
            char *text = slurp(file);
            if (text)
                add_text(cs, &c, text, file);
            else if (c.e.n++ < max_errs && errs)
                cg_error_set(&errs[c.e.n - 1], CG_ERR_IO, file, 0, 0, "cannot read: %m");
            free(text);
            free(names[i]);
        }
        if (n >= 0)
            free(names);
        else if (c.e.n++ < max_errs && errs)
            cg_error_set(&errs[c.e.n - 1], CG_ERR_IO, path, 0, 0, "cannot read folder: %m");
    } else {
        char *text = slurp(path);
        if (text)
            add_text(cs, &c, text, path);
        else if (c.e.n++ < max_errs && errs)
            cg_error_set(&errs[c.e.n - 1], CG_ERR_IO, path, 0, 0, "cannot read: %m");
        free(text);
    }
    return finish(cs, &c, n_errs);
}

size_t cg_cohortset_count(const cg_cohortset_t *cs)
{
    return cs ? cs->n : 0;
}

void cg_cohortset_destroy(cg_cohortset_t *cs)
{
    if (!cs)
        return;
    for (size_t i = 0; i < cs->n; i++) {
        for (size_t k = 0; k < cs->cohorts[i].n_matches; k++)
            free_match(&cs->cohorts[i].matches[k]);
        free(cs->cohorts[i].matches);
        free(cs->cohorts[i].name);
    }
    free(cs->cohorts);
    free(cs);
}

/* ---- routing ---- */

cg_cohort_router_t *cg_cohort_router_new(const cg_cohortset_t *cs)
{
    cg_cohort_router_t *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->cs = cs;
    r->hits = calloc(cg_cohortset_count(cs) + 1, sizeof(*r->hits));
    r->why = calloc(cg_cohortset_count(cs) + 1, sizeof(*r->why));
    r->md = pcre2_match_data_create(1, NULL);
    r->mctx = pcre2_match_context_create(NULL);
    if (!r->hits || !r->why || !r->md || !r->mctx) {
        cg_cohort_router_destroy(r);
        return NULL;
    }
    pcre2_set_match_limit(r->mctx, COHORT_REGEX_MATCH_LIMIT);
    pcre2_set_depth_limit(r->mctx, COHORT_REGEX_DEPTH_LIMIT);
    return r;
}

void cg_cohort_router_destroy(cg_cohort_router_t *r)
{
    if (!r)
        return;
    free(r->hits);
    free(r->why);
    pcre2_match_data_free(r->md);
    pcre2_match_context_free(r->mctx);
    free(r);
}

static int matches(cg_cohort_router_t *r, const match_t *m, const cg_row_t *row)
{
    if (m->table != row->table)
        return 0;
    if (m->has_unmapped) {
        const cg_value_t *c = cg_row_value(row, m->unmapped_column);
        if (c->kind > CG_VALUE_NULL && !(c->len == 1 && c->ptr[0] == '0'))
            return 0; /* mapped: the concept rules decide */
    }
    const cg_value_t *v = cg_row_value(row, m->column);
    if (v->kind <= CG_VALUE_NULL)
        return 0;
    /* a regex that hits its match limit counts as no match rather than stalling the pipeline */
    if (m->re && pcre2_match(m->re, (PCRE2_SPTR)v->ptr, v->len, 0, 0, r->md, r->mctx) < 0)
        return 0;
    if (m->n_values) {
        int in = 0;
        for (size_t i = 0; i < m->n_values && !in; i++)
            in = m->value_lens[i] == v->len && !memcmp(m->values[i], v->ptr, v->len);
        if (!in)
            return 0;
    }
    if (m->cmp != CMP_NONE) {
        const cg_value_t *x = cg_row_value(row, m->value_column);
        if ((x->kind != CG_VALUE_INTEGER && x->kind != CG_VALUE_NUMBER) || x->len >= 64)
            return 0;
        char num[64];
        memcpy(num, x->ptr, x->len);
        num[x->len] = '\0';
        double d = strtod(num, NULL);
        switch (m->cmp) {
        case CMP_AT_LEAST:
            return d >= m->threshold;
        case CMP_ABOVE:
            return d > m->threshold;
        case CMP_AT_MOST:
            return d <= m->threshold;
        case CMP_BELOW:
            return d < m->threshold;
        case CMP_NONE:
            break;
        }
    }
    return 1;
}

size_t cg_cohort_route(cg_cohort_router_t *r, const cg_row_t *row, const char *const **names)
{
    size_t n = 0;
    /* a delete, a merge or a retraction carries no values to judge by, and undoes what any
     * cohort may hold (a person's delete takes all of their rows): to every cohort, whose
     * database applies it or finds nothing to change */
    int undo = row->op != CG_ROW_UPSERT;
    for (size_t i = 0; r->cs && i < r->cs->n; i++) {
        const cohort_t *co = &r->cs->cohorts[i];
        if (undo) {
            r->why[n] = "every cohort: a delete, merge or retraction undoes what any may hold";
            r->hits[n++] = co->name;
            continue;
        }
        for (size_t k = 0; k < co->n_matches; k++)
            if (matches(r, &co->matches[k], row)) {
                r->why[n] = co->matches[k].why;
                r->hits[n++] = co->name;
                break;
            }
    }
    *names = r->hits;
    r->n_hits = n;
    return n;
}

const char *cg_cohort_route_why(const cg_cohort_router_t *r, size_t i)
{
    return r && i < r->n_hits ? r->why[i] : NULL;
}
