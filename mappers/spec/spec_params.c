/* spec_params.c - a spec's "params": values a site may set without editing the spec
 * (mapping.params, --param NAME=VALUE; cg_spec_env_t.params), put into paths as ${NAME} before
 * they compile, so evaluation never sees them (specs/README.md, "Parameters"). The shipped
 * HL7 v2 specs take the patient identifier by type this way: PID-3[5=${patient_id_types}].1. */
#include "spec_compile.h"

#include <stdio.h>
#include <string.h>

#define err_at cg_spec_cc_err
#define alloc  cg_spec_cc_alloc
#define dup    cg_spec_cc_dup

/* "params": {"NAME": "default", …}: values a site may set (cg_spec_env_t.params) that paths
 * use as ${NAME}. */
void cg_spec_params_compile(cc_t *c, json_t *root, spec_t *s)
{
    json_t *pj = json_object_get(root, "params");
    if (!pj)
        return;
    if (!json_is_object(pj)) {
        err_at(c, pj, root, "params", "\"params\" is an object of NAME: default value (a string)");
        return;
    }
    size_t n = json_object_size(pj);
    s->param_names = alloc(c, (n + 1) * sizeof(char *));
    s->param_values = alloc(c, (n + 1) * sizeof(char *));
    if (!s->param_names || !s->param_values)
        return;
    const char *k;
    json_t *v;
    json_object_foreach(pj, k, v)
    {
        if (!json_is_string(v)) {
            err_at(c, v, pj, k, "parameter '%s' needs a default value (a string)", k);
            continue;
        }
        const char *val = json_string_value(v);
        for (size_t i = 0; c->env && i < c->env->n_params; i++)
            if (!strcmp(c->env->params[i].name, k))
                val = c->env->params[i].value; /* the site's, the last one given */
        s->param_names[s->n_params] = dup(c, k, strlen(k));
        s->param_values[s->n_params++] = dup(c, val, strlen(val));
    }
}

/* Every site value names a parameter some spec declares: a misspelt name would otherwise be
 * ignored, and the specs' defaults used without a word. */
void cg_spec_params_check_site(cg_specset_t *ss, cc_t *c)
{
    for (size_t i = 0; c->env && i < c->env->n_params; i++) {
        int found = 0;
        for (size_t s = 0; s < ss->n_specs && !found; s++)
            for (size_t k = 0; k < ss->specs[s].n_params && !found; k++)
                found = !strcmp(ss->specs[s].param_names[k], c->env->params[i].name);
        size_t e = c->e.n++;
        if (found)
            c->e.n--;
        else if (e < c->e.max && c->e.errs)
            cg_error_set(&c->e.errs[e], CG_ERR_CONFIG, c->file ? c->file : "", 0, 0,
                         "parameter '%s': no loaded spec declares it (\"params\")",
                         c->env->params[i].name);
    }
}

/* text with every ${NAME} replaced by the spec's parameter NAME, in the arena; NULL (the error
 * recorded) when a name is not a parameter of the spec. */
const char *cg_spec_params_expand(cc_t *c, const json_t *at, const char *text, size_t len)
{
    if (!memmem(text, len, "${", 2))
        return dup(c, text, len);
    cg_buf_t b;
    cg_buf_init(&b);
    const char *p = text, *end = text + len, *res = NULL;
    int nomem = 0;
    while (p < end) {
        const char *d = memmem(p, (size_t)(end - p), "${", 2);
        if (!d) {
            nomem |= cg_buf_append(&b, p, (size_t)(end - p)) != CG_OK;
            break;
        }
        nomem |= cg_buf_append(&b, p, (size_t)(d - p)) != CG_OK;
        const char *close = memchr(d, '}', (size_t)(end - d));
        size_t nl = close ? (size_t)(close - d - 2) : 0;
        const spec_t *s = c->spec;
        size_t k = 0;
        while (close && k < s->n_params &&
               !(strlen(s->param_names[k]) == nl && !memcmp(s->param_names[k], d + 2, nl)))
            k++;
        if (!close || k == s->n_params) {
            err_at(c, at, NULL, NULL,
                   "'%.*s' is not a parameter of the spec (declare it in \"params\")",
                   close ? (int)(close - d + 1) : (int)(end - d), d);
            goto done;
        }
        nomem |= cg_buf_puts(&b, s->param_values[k]) != CG_OK;
        p = close + 1;
    }
    if (nomem)
        err_at(c, at, NULL, NULL, "out of memory");
    else
        res = dup(c, b.data ? b.data : "", b.len);
done:
    cg_buf_free(&b);
    return res;
}
