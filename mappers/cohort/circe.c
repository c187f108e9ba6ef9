/* circe.c - OHDSI Circe cohort expressions: loading (the supported subset, located refusals)
 * and compiling to PostgreSQL SQL over an OMOP CDM v5.4 schema (see include/cg_circe.h).
 *
 * One walk of the JSON tree does both: it checks every object's members against what the subset
 * supports and writes the SQL. Loading runs it once to collect the errors; compiling runs it
 * again on a tree known to be good, with the caller's schemas and cohort id. This file holds the
 * public API and the cohortgate header; the walk is in circe_compile.c and the files under it
 * (see circe_impl.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "circe_impl.h"

struct cg_circe {
    char *file;
    char *text;
    json_t *root;
    const json_t *expr; /* root, or its "expression" under a header */
    cg_jsonpos_t *jp;
    cg_circe_header_t header;
};

/* ---- the header of a cohortgate definition ---- */

static int valid_name(const char *s)
{
    if (!*s)
        return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_' || *s == '-'))
            return 0;
    return 1;
}

static void copy_str(cc_t *c, const json_t *h, const char *key, char *dst, size_t size,
                     int required)
{
    const char *v = cg_circe__want_string(c, h, key, "cohortgate header");
    if (!v) {
        if (required && !json_object_get(h, key))
            cg_circe__err_at(c, h, NULL, NULL, "cohortgate header: '%s' is required", key);
        return;
    }
    if (strlen(v) >= size)
        cg_circe__err_at(c, json_object_get(h, key), h, key,
                         "cohortgate header: '%s' is longer than %zu characters", key, size - 1);
    snprintf(dst, size, "%s", v);
}

/* Reads {"cohortgate": HEADER, "expression": ...}; returns the expression. */
static const json_t *read_header(cc_t *c, const json_t *root, cg_circe_header_t *hd)
{
    static const char *const m_root[] = {"cohortgate", "expression", NULL};
    static const char *const m_head[] = {"id",         "name",    "version",     "kind",
                                         "draws_from", "sponsor", "description", NULL};
    cg_circe__check_members(c, root, "cohortgate definition", m_root);
    const json_t *h = cg_circe__want_object(c, root, "cohortgate", "cohortgate definition");
    const json_t *ex = cg_circe__want_object(c, root, "expression", "cohortgate definition");
    if (!ex)
        cg_circe__err_at(
            c, root, NULL, NULL,
            "cohortgate definition: 'expression' (the Circe cohort expression) is required");
    if (!h)
        return ex;
    hd->present = 1;
    cg_circe__check_members(c, h, "cohortgate header", m_head);
    hd->id = cg_circe__want_int(c, h, "id", "cohortgate header", 0);
    hd->version = cg_circe__want_int(c, h, "version", "cohortgate header", 0);
    if (hd->id < 1)
        cg_circe__err_at(c, json_object_get(h, "id"), h, "id",
                         "cohortgate header: 'id' (an integer from 1) is required");
    if (hd->version < 1)
        cg_circe__err_at(c, json_object_get(h, "version"), h, "version",
                         "cohortgate header: 'version' (an integer from 1) is required");
    copy_str(c, h, "name", hd->name, sizeof hd->name, 1);
    if (hd->name[0] && !valid_name(hd->name))
        cg_circe__err_at(c, json_object_get(h, "name"), h, "name",
                         "cohortgate header: 'name' takes lower-case letters, digits, '_' and '-'");
    copy_str(c, h, "kind", hd->kind, sizeof hd->kind, 1);
    copy_str(c, h, "draws_from", hd->draws_from, sizeof hd->draws_from, 0);
    copy_str(c, h, "sponsor", hd->sponsor, sizeof hd->sponsor, 0);
    cg_circe__want_string(c, h, "description", "cohortgate header");
    int pre = !strcmp(hd->kind, "precohort");
    if (hd->kind[0] && !pre && strcmp(hd->kind, "disease"))
        cg_circe__err_at(c, json_object_get(h, "kind"), h, "kind",
                         "cohortgate header: 'kind' is \"disease\" or \"precohort\", not \"%s\"",
                         hd->kind);
    if (pre && (!hd->draws_from[0] || !hd->sponsor[0]))
        cg_circe__err_at(
            c, h, NULL, NULL,
            "cohortgate header: a precohort needs 'draws_from' (its disease cohort) and "
            "'sponsor'");
    if (!pre && (hd->draws_from[0] || hd->sponsor[0]))
        cg_circe__err_at(c, json_object_get(h, hd->draws_from[0] ? "draws_from" : "sponsor"), h,
                         hd->draws_from[0] ? "draws_from" : "sponsor",
                         "cohortgate header: only a precohort has 'draws_from' and 'sponsor'");
    return ex;
}

/* ---- loading ---- */

void cg_circe_destroy(cg_circe_t *c)
{
    if (!c)
        return;
    cg_jsonpos_destroy(c->jp);
    json_decref(c->root);
    free(c->text);
    free(c->file);
    free(c);
}

static void cc_init(cc_t *c, const char *file, const cg_jsonpos_t *jp, cg_error_t *errs, size_t max,
                    cg_buf_t *b)
{
    memset(c, 0, sizeof(*c));
    c->file = file;
    c->jp = jp;
    c->e.errs = errs;
    c->e.max = max;
    c->b = b;
}

cg_circe_t *cg_circe_load_string(const char *text, const char *name, cg_error_t *errs,
                                 size_t max_errs, size_t *n_errs)
{
    if (n_errs)
        *n_errs = 0;
    json_error_t je;
    json_t *root = json_loads(text, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        if (errs && max_errs)
            cg_error_set(&errs[0], CG_ERR_CONFIG, name, je.line, je.column, "%s", je.text);
        if (n_errs)
            *n_errs = 1;
        return NULL;
    }
    cg_circe_t *c = calloc(1, sizeof(*c));
    if (!c || !(c->text = strdup(text)) || !(c->file = strdup(name ? name : ""))) {
        json_decref(root);
        cg_circe_destroy(c);
        if (errs && max_errs)
            cg_error_set(&errs[0], CG_ERR_NOMEM, name, 0, 0, "out of memory");
        if (n_errs)
            *n_errs = 1;
        return NULL;
    }
    c->root = root;
    c->expr = root;
    c->jp = cg_jsonpos_build(text, root);
    cg_buf_t b;
    cg_buf_init(&b);
    cc_t cc;
    cc_init(&cc, c->file, c->jp, errs, max_errs, &b);
    if (json_is_object(root) && json_object_get(root, "cohortgate"))
        c->expr = read_header(&cc, root, &c->header);
    if (c->expr)
        cg_circe__compile(&cc, c->expr, c->header.present ? c->header.id : 1);
    cg_buf_free(&b);
    if (n_errs)
        *n_errs = cc.e.n;
    if (cc.e.n) {
        cg_circe_destroy(c);
        return NULL;
    }
    return c;
}

cg_circe_t *cg_circe_load(const char *path, cg_error_t *errs, size_t max_errs, size_t *n_errs)
{
    cg_buf_t b;
    cg_buf_init(&b);
    if (cg_buf_read_file(&b, path) != CG_OK || cg_buf_putc(&b, '\0') != CG_OK) {
        cg_buf_free(&b);
        if (errs && max_errs)
            cg_error_set(&errs[0], CG_ERR_IO, path, 0, 0, "cannot read the file");
        if (n_errs)
            *n_errs = 1;
        return NULL;
    }
    cg_circe_t *c = cg_circe_load_string(b.data, path, errs, max_errs, n_errs);
    cg_buf_free(&b);
    return c;
}

const cg_circe_header_t *cg_circe_header(const cg_circe_t *c)
{
    return c ? &c->header : NULL;
}

void cg_circe_summarize(const cg_circe_t *c, cg_circe_summary_t *out)
{
    memset(out, 0, sizeof(*out));
    if (!c)
        return;
    const json_t *r = c->expr, *pc = json_object_get(r, "PrimaryCriteria");
    out->concept_sets = json_array_size(json_object_get(r, "ConceptSets"));
    out->primary_criteria = json_array_size(json_object_get(pc, "CriteriaList"));
    out->inclusion_rules = json_array_size(json_object_get(r, "InclusionRules"));
    out->censoring_criteria = json_array_size(json_object_get(r, "CensoringCriteria"));
    const json_t *ac = json_object_get(r, "AdditionalCriteria");
    out->additional_criteria = json_is_object(ac) && !cg_circe__group_empty(ac);
}

cg_err_t cg_circe_compile(const cg_circe_t *c, const cg_circe_sql_options_t *opt, cg_buf_t *out)
{
    if (!c || !opt || !out)
        return CG_ERR_INVALID_ARG;
    cc_t cc;
    cg_error_t err;
    cc_init(&cc, c->file, c->jp, &err, 1, out);
    cg_circe__quote_ident(cc.cdm, sizeof cc.cdm, opt->cdm_schema);
    cg_circe__quote_ident(cc.res, sizeof cc.res,
                          opt->results_schema ? opt->results_schema : opt->cdm_schema);
    size_t mark = out->len;
    cc.person = opt->person;
    cc.into = opt->into;
    cc.only = opt->only_persons;
    cg_buf_init(&cc.steps);
    cg_circe__compile(&cc, c->expr, opt->cohort_id);
    cg_buf_free(&cc.steps);
    if (cc.e.n) {
        out->len = mark;
        return err.code ? err.code : CG_ERR_CONFIG;
    }
    return CG_OK;
}

char *cg_circe_expression_json(const cg_circe_t *c)
{
    return c ? json_dumps(c->expr, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
}

const char *cg_circe_description(const cg_circe_t *c)
{
    if (!c || !c->header.present)
        return NULL;
    return json_string_value(
        json_object_get(json_object_get(c->root, "cohortgate"), "description"));
}

int cg_circe_count_suppressed(long long n, long long k)
{
    return n < (k < 1 ? 1 : k);
}

const char *cg_circe_count_format(long long n, long long k, char *out, size_t size)
{
    if (!out || !size)
        return out;
    if (k < 1)
        k = 1;
    if (cg_circe_count_suppressed(n, k))
        snprintf(out, size, "<%lld", k);
    else
        snprintf(out, size, "%lld", n);
    return out;
}
