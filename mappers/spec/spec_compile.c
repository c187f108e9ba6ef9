/* spec_compile.c - JSON mapping specs to their compiled form (spec_impl.h).
 *
 * Compilation goes on after an error so that one run reports every error of a file, each with
 * file:line:column, the rule, and the offending text.
 */
#include "spec_compile.h"

#include "cg_jsonpos.h"
#include "cg_pseudo.h"
#include "cg_row.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The helpers shared with the formats' path languages (spec_cc.c), under this file's names. */
#define err_at     cg_spec_cc_err
#define alloc      cg_spec_cc_alloc
#define dup        cg_spec_cc_dup
#define in_list    cg_spec_cc_in_list
#define check_keys cg_spec_cc_check_keys

static int keep_regex(cg_specset_t *ss, pcre2_code *re)
{
    if (ss->n_regexes == ss->cap_regexes) {
        size_t cap = ss->cap_regexes ? ss->cap_regexes * 2 : 8;
        pcre2_code **p = realloc(ss->regexes, cap * sizeof(*p));
        if (!p)
            return -1;
        ss->regexes = p;
        ss->cap_regexes = cap;
    }
    ss->regexes[ss->n_regexes++] = re;
    return 0;
}

int cg_spec_regex_need(const pcre2_code *re)
{
    uint32_t type = 0, unit = 0;
    static const uint32_t which[2][2] = {{PCRE2_INFO_LASTCODETYPE, PCRE2_INFO_LASTCODEUNIT},
                                         {PCRE2_INFO_FIRSTCODETYPE, PCRE2_INFO_FIRSTCODEUNIT}};
    for (int i = 0; i < 2; i++) {
        if (pcre2_pattern_info(re, which[i][0], &type) != 0 || type != 1 ||
            pcre2_pattern_info(re, which[i][1], &unit) != 0)
            continue;
        if (unit < 0x80 && !((unit | 0x20) >= 'a' && (unit | 0x20) <= 'z'))
            return (int)unit;
    }
    return -1;
}

static pcre2_code *compile_regex(cc_t *c, const json_t *at, const char *pattern)
{
    int code;
    PCRE2_SIZE off;
    pcre2_code *re =
        pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, PCRE2_UTF, &code, &off, NULL);
    if (!re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(code, msg, sizeof(msg));
        err_at(c, at, NULL, NULL, "regex '%s' does not compile at offset %zu: %s", pattern,
               (size_t)off, (const char *)msg);
        return NULL;
    }
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* falls back to the interpreter if JIT is absent */
    uint32_t caps = 0;
    pcre2_pattern_info(re, PCRE2_INFO_CAPTURECOUNT, &caps);
    if (caps + 1 > c->ss->max_capture)
        c->ss->max_capture = caps + 1;
    if (keep_regex(c->ss, re)) {
        pcre2_code_free(re);
        return NULL;
    }
    return re;
}

/* A path expression in the spec's own path language: its format's (cg_spec_format.h). */
static int compile_any_path(cc_t *c, const json_t *at, expr_t *e)
{
    e->text = cg_spec_params_expand(c, at, json_string_value(at), json_string_length(at));
    if (!e->text)
        return -1;
    return c->spec->format->compile_path(c, at, e);
}

/* A path that one expression alone reads is evaluated once per scope: probing the memo for it
 * only ever misses (most probes did, a cache miss each), so it goes unmemoized. */
void cg_spec_unmemo_single_paths(cg_specset_t *ss)
{
    for (size_t i = 0; i < ss->n_paths; i++)
        if (ss->path_uses[i] == 1)
            ss->path_first[i]->path_id = 0;
    ss->path_first = NULL;
    ss->path_uses = NULL;
}

#define compile_expr cg_spec_compile_expr
static cond_t *compile_cond(cc_t *c, json_t *j);

static const struct {
    const char *name;
    xform_kind_t kind;
} xform_names[] = {
    {"trim", XF_TRIM},
    {"upper", XF_UPPER},
    {"lower", XF_LOWER},
    {"date", XF_DATE},
    {"datetime", XF_DATETIME},
    {"number", XF_NUMBER},
    {"integer", XF_INTEGER},
    {"unit", XF_UNIT},
    {"sn", XF_SN},
    {"regex_extract", XF_REGEX_EXTRACT},
    {"regex_replace", XF_REGEX_REPLACE},
    {"map", XF_MAP},
    {"lookup", XF_LOOKUP},
    {"truncate", XF_TRUNCATE},
    {"reference", XF_REFERENCE},
};

static int xform_kind_of(const char *name, xform_kind_t *k)
{
    for (size_t i = 0; i < sizeof(xform_names) / sizeof(xform_names[0]); i++)
        if (!strcmp(name, xform_names[i].name)) {
            *k = xform_names[i].kind;
            return 0;
        }
    return -1;
}

static int scalar_text(cc_t *c, json_t *v, const char **s, size_t *n)
{
    char buf[64];
    if (json_is_string(v)) { /* copied: the JSON tree is freed after compiling */
        *n = json_string_length(v);
        *s = dup(c, json_string_value(v), *n);
        return *s ? 0 : -1;
    }
    if (json_is_integer(v)) {
        *n = (size_t)snprintf(buf, sizeof(buf), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    } else if (json_is_real(v)) {
        *n = (size_t)snprintf(buf, sizeof(buf), "%.17g", json_real_value(v));
    } else if (json_is_boolean(v)) {
        *n = (size_t)snprintf(buf, sizeof(buf), "%s", json_is_true(v) ? "true" : "false");
    } else {
        return -1;
    }
    *s = dup(c, buf, *n);
    return *s ? 0 : -1;
}

static int compile_xform(cc_t *c, json_t *j, xform_t *x)
{
    const char *name;
    json_t *arg = NULL;
    if (json_is_string(j)) {
        name = json_string_value(j);
    } else if (json_is_object(j) && json_object_size(j) == 1) {
        void *it = json_object_iter(j);
        name = json_object_iter_key(it);
        arg = json_object_iter_value(it);
    } else {
        err_at(c, j, NULL, NULL, "a transform is a name or an object with one key");
        return -1;
    }
    if (xform_kind_of(name, &x->kind)) {
        err_at(c, j, NULL, NULL,
               "unknown transform '%s' (known: trim, upper, lower, date, datetime, number, "
               "integer, sn, regex_extract, regex_replace, map, lookup, unit, truncate, "
               "reference)",
               name);
        return -1;
    }
    if (x->kind == XF_REFERENCE && !c->spec->format->reference) {
        err_at(c, j, NULL, NULL, "'reference' resolves CDA narrative references: XML specs only");
        return -1;
    }
    switch (x->kind) {
    case XF_SN: {
        const char *part = json_string_value(arg);
        if (!part) {
            err_at(c, j, NULL, NULL, "'sn' takes one of number, comparator, separator, number2");
            return -1;
        }
        if (!strcmp(part, "number"))
            x->u.sn = SN_NUMBER;
        else if (!strcmp(part, "comparator"))
            x->u.sn = SN_COMPARATOR;
        else if (!strcmp(part, "separator"))
            x->u.sn = SN_SEPARATOR;
        else if (!strcmp(part, "number2"))
            x->u.sn = SN_NUMBER2;
        else {
            err_at(c, arg, j, name, "'sn' takes number, comparator, separator or number2, not '%s'",
                   part);
            return -1;
        }
        return 0;
    }
    case XF_REGEX_EXTRACT:
    case XF_REGEX_REPLACE: {
        const char *pat = json_string_value(arg);
        json_t *group = NULL, *with = NULL;
        if (json_is_object(arg)) {
            pat = json_string_value(json_object_get(arg, "pattern"));
            group = json_object_get(arg, "group");
            with = json_object_get(arg, "with");
        }
        if (!pat) {
            err_at(c, j, NULL, NULL, "'%s' needs a pattern", name);
            return -1;
        }
        if (x->kind == XF_REGEX_REPLACE && !json_is_string(with)) {
            err_at(c, j, NULL, NULL, "'regex_replace' needs {\"pattern\": …, \"with\": …}");
            return -1;
        }
        x->u.re.re =
            compile_regex(c, json_is_object(arg) ? json_object_get(arg, "pattern") : arg, pat);
        if (!x->u.re.re)
            return -1;
        x->u.re.need = cg_spec_regex_need(x->u.re.re);
        uint32_t caps = 0;
        pcre2_pattern_info(x->u.re.re, PCRE2_INFO_CAPTURECOUNT, &caps);
        x->u.re.group = group ? (uint32_t)json_integer_value(group) : (caps >= 1 ? 1 : 0);
        if (group && (!json_is_integer(group) || json_integer_value(group) < 0 ||
                      (uint32_t)json_integer_value(group) > caps)) {
            err_at(c, group, arg, "group", "group must be an integer from 0 to %u", caps);
            return -1;
        }
        if (with)
            x->u.re.with = dup(c, json_string_value(with), json_string_length(with));
        return 0;
    }
    case XF_MAP: {
        if (!json_is_object(arg) || json_object_size(arg) == 0) {
            err_at(c, j, NULL, NULL, "'map' takes an object of \"from\": to");
            return -1;
        }
        x->u.map.entries = alloc(c, json_object_size(arg) * sizeof(map_entry_t));
        const char *k;
        json_t *v;
        json_object_foreach(arg, k, v)
        {
            map_entry_t *e = &x->u.map.entries[x->u.map.n];
            e->from = k;
            e->from_len = strlen(k);
            if (!json_is_null(v) && scalar_text(c, v, &e->to, &e->to_len)) {
                err_at(c, v, arg, k, "map values are strings, numbers, booleans or null");
                return -1;
            }
            e->from = dup(c, k, e->from_len);
            if (!strcmp(k, "*"))
                x->u.map.deflt = e;
            else
                x->u.map.n++;
        }
        return 0;
    }
    case XF_LOOKUP: {
        json_t *voc = json_is_object(arg) ? json_object_get(arg, "vocabulary") : NULL;
        json_t *want = json_is_object(arg) ? json_object_get(arg, "want") : NULL;
        if (!voc) {
            err_at(c, j, NULL, NULL,
                   "'lookup' needs {\"vocabulary\": NAME or expression, \"want\": …}");
            return -1;
        }
        /* a string is a vocabulary name; an expression (object) picks it per message */
        if (json_is_string(voc)) {
            x->u.lookup.vocabulary = dup(c, json_string_value(voc), json_string_length(voc));
            cg_spec_warn_vocabulary(c, voc, json_string_value(voc));
        } else if (!json_is_object(voc) || !(x->u.lookup.vocab_expr = compile_expr(c, voc)))
            return -1;
        const char *w = want ? json_string_value(want) : "concept_id";
        if (w && !strcmp(w, "concept_id"))
            x->u.lookup.want = LK_CONCEPT_ID;
        else if (w && !strcmp(w, "source_concept_id"))
            x->u.lookup.want = LK_SOURCE_CONCEPT_ID;
        else if (w && !strcmp(w, "domain_id"))
            x->u.lookup.want = LK_DOMAIN_ID;
        else {
            err_at(c, want, arg, "want", "want is concept_id, source_concept_id or domain_id");
            return -1;
        }
        return 0;
    }
    case XF_TRUNCATE:
        if (!json_is_integer(arg) || json_integer_value(arg) < 1) {
            err_at(c, j, NULL, NULL, "'truncate' takes a positive number of characters");
            return -1;
        }
        x->u.truncate = (size_t)json_integer_value(arg);
        return 0;
    default:
        if (arg && !json_is_null(arg) && !(json_is_object(arg) && json_object_size(arg) == 0)) {
            err_at(c, j, NULL, NULL, "transform '%s' takes no argument", name);
            return -1;
        }
        return 0;
    }
}

static int find_var(cc_t *c, const char *name)
{
    /* rule bindings shadow message bindings; later ones shadow earlier ones */
    for (size_t i = c->n_rule_lets; i-- > 0;)
        if (!strcmp(c->rule_lets[i].name, name))
            return (int)(c->spec->n_lets + i);
    for (size_t i = c->n_msg_lets; i-- > 0;)
        if (!strcmp(c->msg_lets[i].name, name))
            return (int)i;
    return -1;
}

static int cond_reads_var_from(const cond_t *k, int from);

/* Whether e reads a binding with an index of at least from (rule-level ones start at the
 * spec's n_lets). */
static int expr_reads_var_from(const expr_t *e, int from)
{
    if (!e)
        return 0;
    switch (e->kind) {
    case EX_VAR:
        if (e->u.var >= from)
            return 1;
        break;
    case EX_CONCAT:
    case EX_COALESCE:
    case EX_HASH_ID:
        for (size_t i = 0; i < e->u.list.n; i++)
            if (expr_reads_var_from(e->u.list.items[i], from))
                return 1;
        break;
    case EX_PSEUDONYM:
        if (expr_reads_var_from(e->u.list.items[0], from) ||
            expr_reads_var_from(e->u.list.items[1], from))
            return 1;
        break;
    case EX_IF:
        if (cond_reads_var_from(e->u.iff.cond, from) || expr_reads_var_from(e->u.iff.then, from) ||
            expr_reads_var_from(e->u.iff.els, from))
            return 1;
        break;
    default:
        break;
    }
    for (size_t i = 0; i < e->n_xforms; i++)
        if (e->xforms[i].kind == XF_LOOKUP &&
            expr_reads_var_from(e->xforms[i].u.lookup.vocab_expr, from))
            return 1;
    return expr_reads_var_from(e->deflt, from);
}

static int cond_reads_var_from(const cond_t *k, int from)
{
    if (!k)
        return 0;
    if (expr_reads_var_from(k->a, from) || expr_reads_var_from(k->b, from))
        return 1;
    for (size_t i = 0; i < k->n_subs; i++)
        if (cond_reads_var_from(k->subs[i], from))
            return 1;
    return 0;
}

static expr_t **compile_list(cc_t *c, json_t *arr, const char *op, size_t *n)
{
    if (!json_is_array(arr) || json_array_size(arr) == 0) {
        err_at(c, arr, NULL, NULL, "'%s' takes a non-empty array", op);
        return NULL;
    }
    *n = json_array_size(arr);
    expr_t **items = alloc(c, *n * sizeof(*items));
    size_t i;
    json_t *v;
    int bad = 0;
    json_array_foreach(arr, i, v) bad |= !(items[i] = compile_expr(c, v));
    return bad ? NULL : items;
}

static const char *const expr_ops[] = {"path", "const",   "var",       "concat",  "coalesce",
                                       "if",   "patient", "pseudonym", "hash_id", NULL};
static const char *const expr_mods[] = {"pipe", "default", "required",  "sep",      "then", "else",
                                        "ns",   "id",      "authority", "facility", NULL};

/* The patient's sending facility: the spec's "facility", else its format's default. */
static expr_t *compile_facility(cc_t *c, json_t *f)
{
    if (f)
        return compile_expr(c, f);
    if (!c->spec->format->default_facility)
        return NULL;
    json_t *d = json_loads(c->spec->format->default_facility, 0, NULL);
    expr_t *e = d ? compile_expr(c, d) : NULL;
    json_decref(d); /* compiled expressions copy what they keep */
    return e;
}

expr_t *compile_expr(cc_t *c, json_t *j)
{
    expr_t *e = alloc(c, sizeof(*e));
    if (!e)
        return NULL;
    if (json_is_string(j)) /* a bare string is a path */
        return compile_any_path(c, j, e) ? NULL : e;
    if (!json_is_object(j)) { /* numbers, booleans, null: constants */
        e->kind = EX_CONST;
        e->text = "constant";
        if (json_is_null(j))
            return e;
        e->u.cst.present = 1;
        if (scalar_text(c, j, &e->u.cst.s, &e->u.cst.len)) {
            err_at(c, j, NULL, NULL, "an expression is a path, a constant or an object");
            return NULL;
        }
        return e;
    }
    const char *op = NULL, *k;
    json_t *v, *arg = NULL;
    json_object_foreach(j, k, v)
    {
        if (in_list(k, expr_ops)) {
            if (op) {
                err_at(c, v, j, k,
                       "an expression has one of path, const, var, concat, coalesce, "
                       "if, patient, hash_id; this one has '%s' and '%s'",
                       op, k);
                return NULL;
            }
            op = k;
            arg = v;
        } else if (!in_list(k, expr_mods)) {
            err_at(c, v, j, k, "unknown expression key '%s'", k);
            return NULL;
        }
    }
    if (!op) {
        err_at(c, j, NULL, NULL,
               "an expression needs one of path, const, var, concat, coalesce, "
               "if, patient, hash_id");
        return NULL;
    }
    int bad = 0;
    if (!strcmp(op, "path")) {
        if (!json_is_string(arg)) {
            err_at(c, arg, j, op, "%s", c->spec->format->path_hint);
            return NULL;
        }
        bad |= compile_any_path(c, arg, e);
    } else if (!strcmp(op, "const")) {
        e->kind = EX_CONST;
        e->text = "constant";
        if (!json_is_null(arg)) {
            e->u.cst.present = 1;
            if (scalar_text(c, arg, &e->u.cst.s, &e->u.cst.len)) {
                err_at(c, arg, j, op, "'const' takes a string, number, boolean or null");
                return NULL;
            }
        }
    } else if (!strcmp(op, "var")) {
        e->kind = EX_VAR;
        const char *name = json_string_value(arg);
        if (!name || (e->u.var = find_var(c, name)) < 0) {
            err_at(c, arg, j, op, "no binding named '%s' before this point (see \"let\")",
                   name ? name : "?");
            return NULL;
        }
        e->text = dup(c, name, strlen(name));
    } else if (!strcmp(op, "concat") || !strcmp(op, "coalesce") || !strcmp(op, "hash_id")) {
        e->kind = !strcmp(op, "concat")     ? EX_CONCAT
                  : !strcmp(op, "coalesce") ? EX_COALESCE
                                            : EX_HASH_ID;
        e->text = e->kind == EX_CONCAT ? "concat" : e->kind == EX_COALESCE ? "coalesce" : "hash_id";
        if (!(e->u.list.items = compile_list(c, arg, op, &e->u.list.n)))
            return NULL;
        json_t *sep = json_object_get(j, e->kind == EX_HASH_ID ? "ns" : "sep");
        if (e->kind == EX_HASH_ID && !json_is_string(sep)) {
            err_at(c, j, NULL, NULL,
                   "'hash_id' needs \"ns\": the table whose ids it makes, such as "
                   "\"visit_occurrence\"");
            return NULL;
        }
        if (e->kind == EX_HASH_ID && e->u.list.n > CG_PSEUDO_ID_MAX_PARTS) {
            err_at(c, arg, j, op, "'hash_id' takes at most %d values", CG_PSEUDO_ID_MAX_PARTS);
            return NULL;
        }
        e->u.list.sep = sep ? dup(c, json_string_value(sep), json_string_length(sep)) : "";
    } else if (!strcmp(op, "if")) {
        e->kind = EX_IF;
        e->text = "if";
        e->u.iff.cond = compile_cond(c, arg);
        json_t *t = json_object_get(j, "then"), *el = json_object_get(j, "else");
        if (!t) {
            err_at(c, j, NULL, NULL, "'if' needs \"then\"");
            return NULL;
        }
        e->u.iff.then = compile_expr(c, t);
        e->u.iff.els = el ? compile_expr(c, el) : NULL;
        bad |= !e->u.iff.cond || !e->u.iff.then || (el && !e->u.iff.els);
    } else if (!strcmp(op, "pseudonym")) {
        /* the pseudonym of another identifier, such as the prior patient of a merge (MRG-1) */
        e->kind = EX_PSEUDONYM;
        const char *p = json_string_value(arg);
        if (p && !strcmp(p, "person_id"))
            e->part = PT_PERSON_ID;
        else if (p && !strcmp(p, "person_source_value"))
            e->part = PT_SOURCE_VALUE;
        else {
            err_at(c, arg, j, op, "'pseudonym' is person_id or person_source_value");
            return NULL;
        }
        json_t *id = json_object_get(j, "id"), *auth = json_object_get(j, "authority");
        json_t *fac = json_object_get(j, "facility");
        if (!id) {
            err_at(c, j, NULL, NULL, "'pseudonym' needs \"id\": the identifier's path");
            return NULL;
        }
        /* the identifier, its authority, the sending facility (NULL: the patient's) */
        e->u.list.n = 3;
        e->u.list.items = alloc(c, 3 * sizeof(expr_t *));
        e->u.list.items[0] = compile_expr(c, id);
        e->u.list.items[1] = auth ? compile_expr(c, auth) : NULL;
        e->u.list.items[2] = fac ? compile_expr(c, fac) : NULL;
        bad |= !e->u.list.items[0] || (auth && !e->u.list.items[1]) || (fac && !e->u.list.items[2]);
        e->text = "pseudonym";
    } else if (!strcmp(op, "patient")) {
        e->kind = EX_PATIENT;
        const char *p = json_string_value(arg);
        if (p && !strcmp(p, "person_id"))
            e->u.patient = PT_PERSON_ID;
        else if (p && !strcmp(p, "person_source_value"))
            e->u.patient = PT_SOURCE_VALUE;
        else {
            err_at(c, arg, j, op, "'patient' is person_id or person_source_value");
            return NULL;
        }
        if (!c->spec->has_patient) {
            err_at(c, arg, j, op, "'patient' needs the spec's \"patient\": {\"id\": PATH, …}");
            return NULL;
        }
        e->text =
            e->u.patient == PT_PERSON_ID ? "patient person_id" : "patient person_source_value";
    }
    json_t *pipe = json_object_get(j, "pipe");
    if (pipe) {
        if (!json_is_array(pipe)) {
            err_at(c, pipe, j, "pipe", "'pipe' is an array of transforms");
            return NULL;
        }
        e->n_xforms = json_array_size(pipe);
        e->xforms = alloc(c, e->n_xforms * sizeof(xform_t) + 1);
        size_t i;
        json_array_foreach(pipe, i, v) bad |= compile_xform(c, v, &e->xforms[i]);
    }
    json_t *d = json_object_get(j, "default");
    if (d)
        bad |= !(e->deflt = compile_expr(c, d));
    json_t *r = json_object_get(j, "required");
    if (r && !json_is_boolean(r)) {
        err_at(c, r, j, "required", "'required' is true or false");
        bad = 1;
    }
    e->required = json_is_true(r);
    return bad ? NULL : e;
}

static cond_t *compile_cond(cc_t *c, json_t *j)
{
    static const char *const ops[] = {"eq",  "ne",  "in",  "regex", "present",
                                      "not", "all", "any", NULL};
    if (!json_is_object(j) || json_object_size(j) != 1) {
        err_at(c, j, NULL, NULL,
               "a condition is an object with one of eq, ne, in, regex, present, not, all, any");
        return NULL;
    }
    void *it = json_object_iter(j);
    const char *op = json_object_iter_key(it);
    json_t *arg = json_object_iter_value(it);
    cond_t *d = alloc(c, sizeof(*d));
    if (!in_list(op, ops)) {
        err_at(c, arg, j, op,
               "unknown condition '%s' (known: eq, ne, in, regex, present, not, all, any)", op);
        return NULL;
    }
    if (!strcmp(op, "eq") || !strcmp(op, "ne")) {
        d->kind = op[0] == 'e' ? CD_EQ : CD_NE;
        if (!json_is_array(arg) || json_array_size(arg) != 2) {
            err_at(c, arg, j, op, "'%s' takes [expression, expression]", op);
            return NULL;
        }
        d->a = compile_expr(c, json_array_get(arg, 0));
        d->b = compile_expr(c, json_array_get(arg, 1));
        return d->a && d->b ? d : NULL;
    }
    if (!strcmp(op, "in")) {
        d->kind = CD_IN;
        json_t *vals = json_array_get(arg, 1);
        if (!json_is_array(arg) || json_array_size(arg) != 2 || !json_is_array(vals)) {
            err_at(c, arg, j, op, "'in' takes [expression, [value, …]]");
            return NULL;
        }
        d->a = compile_expr(c, json_array_get(arg, 0));
        d->n_values = json_array_size(vals);
        d->values = alloc(c, (d->n_values + 1) * sizeof(*d->values));
        d->value_lens = alloc(c, (d->n_values + 1) * sizeof(*d->value_lens));
        size_t i;
        json_t *v;
        json_array_foreach(vals, i, v)
        {
            if (scalar_text(c, v, &d->values[i], &d->value_lens[i])) {
                err_at(c, v, NULL, NULL, "'in' values are strings or numbers");
                return NULL;
            }
        }
        return d->a ? d : NULL;
    }
    if (!strcmp(op, "regex")) {
        d->kind = CD_REGEX;
        json_t *pat = json_array_get(arg, 1);
        if (!json_is_array(arg) || json_array_size(arg) != 2 || !json_is_string(pat)) {
            err_at(c, arg, j, op, "'regex' takes [expression, \"pattern\"]");
            return NULL;
        }
        d->a = compile_expr(c, json_array_get(arg, 0));
        d->re = compile_regex(c, pat, json_string_value(pat));
        d->re_need = d->re ? cg_spec_regex_need(d->re) : -1;
        return d->a && d->re ? d : NULL;
    }
    if (!strcmp(op, "present")) {
        d->kind = CD_PRESENT;
        d->a = compile_expr(c, arg);
        return d->a ? d : NULL;
    }
    d->kind = !strcmp(op, "not") ? CD_NOT : !strcmp(op, "all") ? CD_ALL : CD_ANY;
    if (d->kind == CD_NOT) {
        d->n_subs = 1;
        d->subs = alloc(c, sizeof(*d->subs));
        d->subs[0] = compile_cond(c, arg);
        return d->subs[0] ? d : NULL;
    }
    if (!json_is_array(arg) || json_array_size(arg) == 0) {
        err_at(c, arg, j, op, "'%s' takes a non-empty array of conditions", op);
        return NULL;
    }
    d->n_subs = json_array_size(arg);
    d->subs = alloc(c, d->n_subs * sizeof(*d->subs));
    size_t i;
    json_t *v;
    int bad = 0;
    json_array_foreach(arg, i, v) bad |= !(d->subs[i] = compile_cond(c, v));
    return bad ? NULL : d;
}

static binding_t *compile_lets(cc_t *c, json_t *lets, size_t *n, int rule_level)
{
    *n = 0;
    if (!lets)
        return NULL;
    if (!json_is_object(lets)) {
        err_at(c, lets, NULL, NULL, "'let' is an object of name: expression");
        return NULL;
    }
    binding_t *b = alloc(c, (json_object_size(lets) + 1) * sizeof(*b));
    if (rule_level) {
        c->rule_lets = b;
        c->n_rule_lets = 0;
    } else {
        c->msg_lets = b;
        c->n_msg_lets = 0;
    }
    const char *k;
    json_t *v;
    json_object_foreach(lets, k, v)
    {
        b[*n].name = dup(c, k, strlen(k));
        b[*n].expr = compile_expr(c, v); /* sees only the bindings before it */
        (*n)++;
        if (rule_level)
            c->n_rule_lets = *n;
        else
            c->n_msg_lets = *n;
    }
    return b;
}

/* "id": [EXPRESSION, ...], the parts of the fact's business key (spec_row.c hashes them). */
static void compile_id(cc_t *c, json_t *j, rule_t *r)
{
    json_t *id = json_object_get(j, "id");
    if (!id)
        return;
    if (!r->table->pk) {
        err_at(c, id, j, "id", "table %s has no primary key: its rows need no \"id\"",
               r->table->name);
        return;
    }
    if (!json_is_array(id) || json_array_size(id) == 0 ||
        json_array_size(id) > CG_PSEUDO_ID_MAX_PARTS) {
        err_at(c, id, j, "id", "\"id\" is a list of 1 to %d expressions, the fact's key parts",
               CG_PSEUDO_ID_MAX_PARTS);
        return;
    }
    r->id_parts = compile_list(c, id, "id", &r->n_id_parts);
}

static void compile_rule(cc_t *c, json_t *j, rule_t *r)
{
    static const char *const keys[] = {
        "name", "table",       "foreach",     "when",     "let",       "id", "columns",
        "meta", "delete_when", "description", "document", "free_text", NULL};
    c->rule = NULL;
    c->rule_lets = NULL; /* a rule sees only its own bindings and the message's */
    c->n_rule_lets = 0;
    if (!json_is_object(j)) {
        err_at(c, j, NULL, NULL, "a rule is an object");
        return;
    }
    const char *name = json_string_value(json_object_get(j, "name"));
    if (!name) {
        err_at(c, j, NULL, NULL, "a rule needs a \"name\"");
        name = "?";
    }
    r->name = dup(c, name, strlen(name));
    r->name_len = strlen(name);
    c->rule = r->name;
    check_keys(c, j, "a rule", keys);
    json_t *t = json_object_get(j, "table");
    const char *table = json_string_value(t);
    json_t *doc = json_object_get(j, "document");
    if (doc) /* no row of its own: its value is a document the XML specs map (spec_embed.c) */
        cg_spec_document_compile(c, j, doc, r);
    else if (!table || !(r->table = cg_target_table_any(table))) {
        char what[200];
        err_at(c, t, j, "table", "\"table\" must name %s, not '%s'",
               cg_target_what_list(-1, what, sizeof(what)), table ? table : "?");
        return;
    }
    json_t *fe = json_object_get(j, "foreach");
    if (fe) {
        r->has_foreach = 1;
        c->spec->format->compile_foreach(c, j, fe, r);
    }
    r->lets = compile_lets(c, json_object_get(j, "let"), &r->n_lets, 1);
    if (c->spec->n_lets + r->n_lets > c->spec->max_vars)
        c->spec->max_vars = c->spec->n_lets + r->n_lets;
    json_t *w = json_object_get(j, "when");
    if (w)
        r->when = compile_cond(c, w);
    r->when_uses_lets = cond_reads_var_from(r->when, (int)c->spec->n_lets);
    if (doc)
        return;
    r->op = r->table->op;
    json_t *dw = json_object_get(j, "delete_when");
    if (dw && r->op != CG_ROW_UPSERT)
        err_at(c, dw, j, "delete_when", "%s records cannot be deletes", table);
    else if (dw)
        r->delete_when = compile_cond(c, dw);
    compile_id(c, j, r);

    json_t *meta = json_object_get(j, "meta");
    if (meta) {
        if (!json_is_object(meta)) {
            err_at(c, meta, j, "meta", "'meta' is an object of name: expression");
        } else {
            r->meta = alloc(c, (json_object_size(meta) + 1) * sizeof(*r->meta));
            const char *mk;
            json_t *mv;
            json_object_foreach(meta, mk, mv)
            {
                r->meta[r->n_meta].name = dup(c, mk, strlen(mk));
                r->meta[r->n_meta++].expr = compile_expr(c, mv);
            }
        }
    }
    json_t *cols = json_object_get(j, "columns");
    if (!json_is_object(cols)) {
        err_at(c, cols, j, "columns", "a rule needs \"columns\": {column: expression, …}");
        return;
    }
    size_t n_tab = r->table->n_columns;
    r->pk.col = r->table->pk;
    r->columns = alloc(c, n_tab * sizeof(*r->columns));
    unsigned char *optin = alloc(c, n_tab + 1);
    if (!r->columns || !optin) {
        err_at(c, cols, j, "columns", "out of memory");
        return;
    }
    int declared = cg_spec_free_text_optin(c, j, r, optin);
    /* in the table's column order, so output rows read like the CDM */
    for (size_t i = 0; i < n_tab; i++) {
        const cg_target_column_t *col = &r->table->columns[i];
        json_t *v = json_object_get(cols, col->name);
        if (!v)
            continue;
        column_t *cc = &r->columns[r->n_columns];
        cc->col = col;
        cc->expr = compile_expr(c, v);
        if (!cg_spec_free_text_keep(c, cols, cc, optin, declared))
            continue; /* free text the rule did not opt in: never evaluated */
        r->n_columns++;
        if (col->primary_key)
            r->sets_pk = 1;
        if (col == r->table->person)
            r->person = cc;
    }
    cg_spec_warn_columns(c, cols, r);
    if (r->sets_pk && r->n_id_parts)
        err_at(c, json_object_get(j, "id"), j, "id",
               "the rule sets its primary key %s in \"columns\" and also gives an \"id\": say "
               "it once",
               r->table->pk->name);
    const char *k;
    json_t *v;
    json_object_foreach(cols, k, v)
    {
        char hint[800];
        if (!cg_target_column(r->table, k))
            err_at(c, v, cols, k, "table %s has no column '%s': %s", table, k,
                   cg_target_column_hint(r->table, k, hint, sizeof(hint)));
    }
    /* every required column must be given (the primary key is generated when not) */
    for (size_t i = 0; i < n_tab; i++) {
        const cg_target_column_t *col = &r->table->columns[i];
        if (col->required && !col->primary_key && !json_object_get(cols, col->name))
            err_at(c, cols, j, "columns", "required column %s.%s is not mapped", table, col->name);
    }
}

void cg_spec_compile_spec(cc_t *c, json_t *root, spec_t *s)
{
    static const char *const keys[] = {
        "spec",  "version",  "description",         "input",  "patient", "let",
        "rules", "on_error", "no_research_content", "params", NULL};
    c->spec = s;
    c->rule = NULL;
    /* the fallback format until "input" names one, so that a spec without it is still checked */
    s->format = cg_spec_format_sniff("", 0);
    s->file = dup(c, c->file, strlen(c->file));
    if (!json_is_object(root)) {
        err_at(c, root, NULL, NULL, "a spec is a JSON object");
        return;
    }
    check_keys(c, root, "the spec", keys);
    json_t *name = json_object_get(root, "spec");
    if (!json_is_string(name) || json_string_length(name) == 0) {
        err_at(c, name, root, "spec", "\"spec\" must name the spec");
        s->name = "?";
    } else {
        s->name = dup(c, json_string_value(name), json_string_length(name));
        s->name_len = json_string_length(name);
    }
    json_t *ver = json_object_get(root, "version");
    if (!json_is_integer(ver) || json_integer_value(ver) < 1 || json_integer_value(ver) > 1000000)
        err_at(c, ver, root, "version", "\"version\" must be a positive integer");
    else
        s->version = (int)json_integer_value(ver);
    cg_spec_params_compile(c, root, s); /* before anything that holds a path */

    json_t *in = json_object_get(root, "input");
    if (!json_is_object(in)) {
        err_at(
            c, in, root, "input",
            "\"input\" must say what the spec takes: {\"format\": \"hl7v2\", \"messages\": […]}");
    } else {
        json_t *fmt = json_object_get(in, "format");
        const cg_spec_format_t *f = cg_spec_format_find(json_string_value(fmt));
        if (f) {
            s->format = f;
        } else {
            char names[64];
            err_at(c, fmt, in, "format", "\"format\" must be %s",
                   cg_spec_format_names(names, sizeof(names)));
        }
        s->format->compile_input(c, in, s);
        json_t *w = json_object_get(in, "when");
        if (w)
            s->when = compile_cond(c, w);
    }
    /* the format's default: a document's entries are facts of their own; an HL7 v2 message is
     * one fact */
    s->on_error_entry = s->format->on_error_entry;
    json_t *oe = json_object_get(root, "on_error");
    if (oe) {
        const char *v = json_string_value(oe);
        if (v && !strcmp(v, "entry"))
            s->on_error_entry = 1;
        else if (v && !strcmp(v, "message"))
            s->on_error_entry = 0;
        else
            err_at(c, oe, root, "on_error", "\"on_error\" must be \"message\" or \"entry\"");
    }
    json_t *nrc = json_object_get(root, "no_research_content");
    if (nrc) {
        /* a declaration, not a mapping: nothing to evaluate beyond the input's condition */
        if (!json_is_string(nrc) || !json_string_length(nrc))
            err_at(c, nrc, root, "no_research_content",
                   "\"no_research_content\" says why the messages carry nothing to map (a "
                   "non-empty string)");
        else
            s->no_research_content = dup(c, json_string_value(nrc), json_string_length(nrc));
        static const char *const mapping_keys[] = {"patient", "let", "rules"};
        for (size_t k = 0; k < 3; k++)
            if (json_object_get(root, mapping_keys[k]))
                err_at(c, json_object_get(root, mapping_keys[k]), root, mapping_keys[k],
                       "a spec with \"no_research_content\" maps nothing: it has no \"%s\"",
                       mapping_keys[k]);
        return;
    }
    json_t *pat = json_object_get(root, "patient");
    if (pat) {
        static const char *const pkeys[] = {"id", "authority", "facility", NULL};
        if (!json_is_object(pat) || !json_object_get(pat, "id")) {
            err_at(c, pat, root, "patient",
                   "\"patient\" needs {\"id\": PATH, \"authority\": PATH}");
        } else {
            check_keys(c, pat, "\"patient\"", pkeys);
            s->patient_id = compile_expr(c, json_object_get(pat, "id"));
            json_t *a = json_object_get(pat, "authority");
            if (a)
                s->patient_authority = compile_expr(c, a);
            s->patient_facility = compile_facility(c, json_object_get(pat, "facility"));
            s->has_patient = 1;
            cg_spec_warn_patient(c, pat);
        }
    }
    s->lets = compile_lets(c, json_object_get(root, "let"), &s->n_lets, 0);
    s->max_vars = s->n_lets;
    json_t *rules = json_object_get(root, "rules");
    if (!json_is_array(rules) || json_array_size(rules) == 0) {
        err_at(c, rules, root, "rules",
               "\"rules\" must be a non-empty array (or, for messages with nothing "
               "to map, \"no_research_content\": \"WHY\")");
        return;
    }
    s->n_rules = json_array_size(rules);
    s->rules = alloc(c, s->n_rules * sizeof(*s->rules));
    size_t i;
    json_t *r;
    json_array_foreach(rules, i, r)
    {
        compile_rule(c, r, &s->rules[i]);
        for (size_t k = 0; k < i; k++)
            if (s->rules[k].name && s->rules[i].name && !strcmp(s->rules[k].name, s->rules[i].name))
                err_at(c, json_object_get(r, "name"), r, "name", "a rule named '%s' exists already",
                       s->rules[i].name);
    }
    c->rule = NULL;
}
