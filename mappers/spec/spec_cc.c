/* spec_cc.c - the helpers of spec_compile.h: errors with file:line:column, the spec set's arena
 * and what it frees, unknown keys. Shared by the compiler's core and the formats' path
 * languages. */
#include "spec_compile.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void cg_spec_cc_err(cc_t *c, const json_t *at, const json_t *obj, const char *key, const char *fmt,
                    ...)
{
    char what[96] = "";
    if (c->rule)
        snprintf(what, sizeof(what), "rule '%s': ", c->rule);
    va_list ap;
    va_start(ap, fmt);
    cg_jsonpos_error(&c->e, c->jp, CG_ERR_SPEC, c->file, at, obj, key, what, fmt, ap);
    va_end(ap);
}

void cg_spec_cc_err_in(cc_t *c, const json_t *at, int column, const char *text)
{
    size_t i = c->e.n;
    cg_spec_cc_err(c, at, NULL, NULL, "%s", text);
    /* point at the character inside the string: after the opening quote */
    if (i < c->e.max && c->e.errs && c->e.errs[i].line && column > 0)
        c->e.errs[i].column += column;
}

int cg_spec_cc_column(const json_t *at, const char *compiled, int column)
{
    const char *own = json_string_value(at);
    return own && compiled && !strcmp(own, compiled) ? column : 0;
}

void *cg_spec_cc_alloc(cc_t *c, size_t n)
{
    void *p = cg_arena_alloc(&c->ss->arena, n);
    if (p)
        memset(p, 0, n);
    return p;
}

const char *cg_spec_cc_dup(cc_t *c, const char *s, size_t n)
{
    return cg_arena_strndup(&c->ss->arena, s, n);
}

int cg_spec_cc_in_list(const char *k, const char *const *list)
{
    for (size_t i = 0; list[i]; i++)
        if (!strcmp(k, list[i]))
            return 1;
    return 0;
}

int cg_spec_cc_check_keys(cc_t *c, json_t *obj, const char *what, const char *const *known)
{
    const char *k;
    json_t *v;
    int bad = 0;
    json_object_foreach(obj, k, v)
    {
        if (!cg_spec_cc_in_list(k, known)) {
            cg_spec_cc_err(c, v, obj, k, "unknown key '%s' in %s", k, what);
            bad = 1;
        }
    }
    return bad;
}

int cg_spec_cc_own(cc_t *c, void (*free_fn)(void *), void *p)
{
    cg_specset_t *ss = c->ss;
    if (ss->n_owned == ss->cap_owned) {
        size_t cap = ss->cap_owned ? ss->cap_owned * 2 : 16;
        struct spec_owned *o = realloc(ss->owned, cap * sizeof(*o));
        if (!o)
            return -1;
        ss->owned = o;
        ss->cap_owned = cap;
    }
    ss->owned[ss->n_owned++] = (struct spec_owned){free_fn, p};
    return 0;
}
