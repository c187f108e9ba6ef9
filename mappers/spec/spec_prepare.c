/* spec_prepare.c - what the evaluator is handed ready-made once a spec set has compiled, so that
 * no row pays for it:
 * - each rule's provenance as the JSON envelope writes it (cg_row_t.json_prov):
 *   ,"spec":"NAME","spec_version":N,"rule":"NAME" is the same for every row of a rule. Names that
 *   would need escaping get none (the envelope then writes them itself); the same for the
 *   "name": keys of its meta;
 * - each rule's guard: the "in" test on a plain path that its "when" is, or starts its "all"
 *   with ("OBX-2" in ["CE", "CWE"]). Rules over the same segments are told apart by it, and most
 *   segments fail it for most rules: spec_row.c tests it inline before the rest of the
 *   condition;
 * - the anchored expressions (expr_t.anchor_id): values a rule's rows share because everything
 *   in them is read from one other place than the row's own (the OBX's order), memoized by that
 *   place instead of computed again for each row;
 * - which consecutive rules go over the same foreach in one pass (rule_t.fuse_n), where the
 *   format can run them so (cg_spec_format_t.run_rules), and their guards on one path as one
 *   table (rule_t.fuse_tab);
 * - which numeric columns get values that are canonical numbers already (column_t.canon: a
 *   concept lookup's, a "number" transform's, a constant's), so that no row makes them so again. */
#include "spec_impl.h"

#include "cg_buf.h"
#include "cg_spec_format.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int prov_build(cg_specset_t *ss, const spec_t *s, rule_t *r)
{
    size_t sn = s->name ? strlen(s->name) : 0, rn = r->name ? strlen(r->name) : 0;
    if (!sn || !rn || !cg_buf_json_plain(s->name, sn) || !cg_buf_json_plain(r->name, rn))
        return 0;
    size_t cap = sn + rn + 64;
    char *p = cg_arena_alloc(&ss->arena, cap);
    if (!p)
        return -1;
    int n = snprintf(p, cap, ",\"spec\":\"%s\",\"spec_version\":%d,\"rule\":\"%s\"", s->name,
                     s->version, r->name);
    if (n > 0 && (size_t)n < cap) {
        r->json_prov = p;
        r->json_prov_len = (uint32_t)n;
    }
    return 0;
}

/* Each meta binding's "name": key (binding_t.json_key), for the names that need no escaping. */
static int meta_keys(cg_specset_t *ss, rule_t *r)
{
    for (size_t i = 0; i < r->n_meta; i++) {
        binding_t *b = &r->meta[i];
        size_t n = b->name ? strlen(b->name) : 0;
        if (!n || !cg_buf_json_plain(b->name, n))
            continue;
        char *k = cg_arena_alloc(&ss->arena, n + 4);
        if (!k)
            return -1;
        k[0] = '"';
        memcpy(k + 1, b->name, n);
        memcpy(k + 1 + n, "\":", 3); /* with the NUL */
        b->json_key = k;
        b->json_key_len = (uint32_t)(n + 3);
    }
    return 0;
}

/* The columns a rule's rows may hold, in the table's order (rule_t.row_cols): the encoder then
 * skips the table's other columns (a measurement rule maps about half of them) without looking
 * at their values. */
static int row_cols_build(cg_specset_t *ss, rule_t *r)
{
    const cg_target_table_t *t = r->table;
    if (!t || !t->n_columns || t->n_columns > UINT16_MAX)
        return 0;
    uint8_t *set = calloc(t->n_columns, 1);
    if (!set)
        return -1;
    if (r->pk.col && r->pk.col->index < t->n_columns)
        set[r->pk.col->index] = 1;
    for (size_t i = 0; i < r->n_columns; i++) {
        if (r->columns[i].col->index >= t->n_columns) { /* cannot be: left as it was */
            free(set);
            return 0;
        }
        set[r->columns[i].col->index] = 1;
    }
    size_t n = 0;
    for (size_t i = 0; i < t->n_columns; i++)
        n += set[i];
    uint16_t *cols = cg_arena_alloc(&ss->arena, (n ? n : 1) * sizeof(*cols));
    if (!cols) {
        free(set);
        return -1;
    }
    n = 0;
    for (size_t i = 0; i < t->n_columns; i++)
        if (set[i])
            cols[n++] = (uint16_t)i;
    free(set);
    r->row_cols = cols;
    r->n_row_cols = (uint32_t)n;
    return 0;
}

/* An "in" whose value is a path read as it is (no transform, default or requirement). */
static int plain_in(const cond_t *c)
{
    return c && c->kind == CD_IN && c->a && c->a->kind == EX_PATH && !c->a->n_xforms &&
           !c->a->deflt && !c->a->required;
}

static void guard_build(rule_t *r)
{
    r->guard = NULL;
    if (!r->when || r->when_uses_lets)
        return;
    if (plain_in(r->when))
        r->guard = r->when;
    else if (r->when->kind == CD_ALL && r->when->n_subs && plain_in(r->when->subs[0]))
        r->guard = r->when->subs[0];
}

/* ---- anchored expressions ---- */

/* The spec's anchored expressions so far: an expression the same as one of them (another
 * rule's delete_when on ORC-1, its id's filler number) takes its anchor_id, so that the value
 * one rule computed at an order is found by the others. */
typedef struct anchor_seen {
    const expr_t **e;
    size_t n, cap;
} anchor_seen_t;

typedef struct anchor_walk {
    uint32_t (*group_of)(const rule_t *r, const expr_t *e); /* the format's anchor_group */
    const rule_t *rule;
    uint32_t group;       /* the place its paths so far read (0: none yet) */
    const expr_t *anchor; /* the first of them */
    anchor_seen_t *seen;
} anchor_walk_t;

static int text_same(const char *a, size_t an, const char *b, size_t bn)
{
    return an == bn && (!an || !memcmp(a, b, an));
}

static int str_same(const char *a, const char *b)
{
    return a == b || (a && b && !strcmp(a, b));
}

static int expr_same(const expr_t *a, const expr_t *b);

static int cond_same(const cond_t *a, const cond_t *b)
{
    if (a == b)
        return 1;
    if (!a || !b || a->kind != b->kind || !expr_same(a->a, b->a) || !expr_same(a->b, b->b) ||
        a->n_values != b->n_values || a->re != b->re || a->n_subs != b->n_subs)
        return 0;
    for (size_t i = 0; i < a->n_values; i++)
        if (!text_same(a->values[i], a->value_lens[i], b->values[i], b->value_lens[i]))
            return 0;
    for (size_t i = 0; i < a->n_subs; i++)
        if (!cond_same(a->subs[i], b->subs[i]))
            return 0;
    return 1;
}

static int entry_same(const map_entry_t *a, const map_entry_t *b)
{
    return text_same(a->from, a->from_len, b->from, b->from_len) && (!a->to) == (!b->to) &&
           (!a->to || text_same(a->to, a->to_len, b->to, b->to_len));
}

static int xform_same(const xform_t *a, const xform_t *b)
{
    if (a->kind != b->kind)
        return 0;
    switch (a->kind) {
    case XF_TRIM:
    case XF_UPPER:
    case XF_LOWER:
    case XF_DATE:
    case XF_DATETIME:
    case XF_NUMBER:
    case XF_INTEGER:
    case XF_UNIT:
        return 1;
    case XF_SN:
        return a->u.sn == b->u.sn;
    case XF_REGEX_EXTRACT:
    case XF_REGEX_REPLACE:
        return a->u.re.re == b->u.re.re && a->u.re.group == b->u.re.group &&
               str_same(a->u.re.with, b->u.re.with);
    case XF_MAP:
        if (a->u.map.n != b->u.map.n || (!a->u.map.deflt) != (!b->u.map.deflt) ||
            (a->u.map.deflt && !entry_same(a->u.map.deflt, b->u.map.deflt)))
            return 0;
        for (size_t i = 0; i < a->u.map.n; i++)
            if (!entry_same(&a->u.map.entries[i], &b->u.map.entries[i]))
                return 0;
        return 1;
    case XF_LOOKUP:
        return a->u.lookup.want == b->u.lookup.want &&
               str_same(a->u.lookup.vocabulary, b->u.lookup.vocabulary) &&
               expr_same(a->u.lookup.vocab_expr, b->u.lookup.vocab_expr);
    case XF_TRUNCATE:
        return a->u.truncate == b->u.truncate;
    case XF_REFERENCE:
        return 0;
    }
    return 0;
}

/* Whether a and b compute the same value from the same message (conservative: 0 when unsure).
 * Paths are the same when they share a path_id (equal paths do, spec_hl7_format.c). */
static int expr_same(const expr_t *a, const expr_t *b)
{
    if (a == b)
        return 1;
    if (!a || !b || a->kind != b->kind || a->n_xforms != b->n_xforms ||
        a->required != b->required || !expr_same(a->deflt, b->deflt))
        return 0;
    for (size_t i = 0; i < a->n_xforms; i++)
        if (!xform_same(&a->xforms[i], &b->xforms[i]))
            return 0;
    switch (a->kind) {
    case EX_PATH:
        return a->path_id && a->path_id == b->path_id;
    case EX_CONST:
        return a->u.cst.present == b->u.cst.present &&
               text_same(a->u.cst.s, a->u.cst.len, b->u.cst.s, b->u.cst.len);
    case EX_CONCAT:
    case EX_COALESCE:
    case EX_HASH_ID:
        if (a->u.list.n != b->u.list.n || !str_same(a->u.list.sep, b->u.list.sep))
            return 0;
        for (size_t i = 0; i < a->u.list.n; i++)
            if (!expr_same(a->u.list.items[i], b->u.list.items[i]))
                return 0;
        return 1;
    case EX_IF:
        return cond_same(a->u.iff.cond, b->u.iff.cond) && expr_same(a->u.iff.then, b->u.iff.then) &&
               expr_same(a->u.iff.els, b->u.iff.els);
    default:
        return 0;
    }
}

/* e's anchor_id: a same expression's, else a new one (0: out of memory). */
static uint32_t anchor_id_of(cg_specset_t *ss, anchor_seen_t *seen, const expr_t *e)
{
    for (size_t i = 0; i < seen->n; i++)
        if (seen->e[i]->anchor_group == e->anchor_group && expr_same(seen->e[i], e))
            return seen->e[i]->anchor_id;
    if (seen->n == seen->cap) {
        size_t cap = seen->cap ? seen->cap * 2 : 32;
        const expr_t **p = realloc(seen->e, cap * sizeof(*p));
        if (!p)
            return (uint32_t)ss->n_paths + ++ss->n_anchors; /* unshared: still right */
        seen->e = p;
        seen->cap = cap;
    }
    seen->e[seen->n++] = e;
    return (uint32_t)ss->n_paths + ++ss->n_anchors;
}

static int anchored_cond(anchor_walk_t *w, const cond_t *c);

/* Whether everything e's value depends on besides the message is the spec's (constants,
 * transforms, vocabularies, the spec run's date shift, the pseudonym key) and its paths all read
 * one place of the same group; a variable, the patient or a pseudonym (whose authority may be
 * read at the message) makes it depend on more. */
static int anchored_expr(anchor_walk_t *w, const expr_t *e)
{
    if (!e)
        return 1;
    switch (e->kind) {
    case EX_PATH: {
        uint32_t g = w->group_of(w->rule, e);
        if (!g || (w->group && w->group != g))
            return 0;
        if (!w->group) {
            w->group = g;
            w->anchor = e;
        }
        break;
    }
    case EX_CONST:
        break;
    case EX_CONCAT:
    case EX_COALESCE:
    case EX_HASH_ID:
        for (size_t i = 0; i < e->u.list.n; i++)
            if (!anchored_expr(w, e->u.list.items[i]))
                return 0;
        break;
    case EX_IF:
        if (!anchored_cond(w, e->u.iff.cond) || !anchored_expr(w, e->u.iff.then) ||
            !anchored_expr(w, e->u.iff.els))
            return 0;
        break;
    case EX_VAR:
    case EX_PATIENT:
    case EX_PSEUDONYM:
        return 0;
    }
    for (size_t i = 0; i < e->n_xforms; i++) {
        const xform_t *x = &e->xforms[i];
        if (x->kind == XF_REFERENCE ||
            (x->kind == XF_LOOKUP && !anchored_expr(w, x->u.lookup.vocab_expr)))
            return 0;
    }
    return anchored_expr(w, e->deflt);
}

static int anchored_cond(anchor_walk_t *w, const cond_t *c)
{
    if (!c)
        return 1;
    if (!anchored_expr(w, c->a) || !anchored_expr(w, c->b))
        return 0;
    for (size_t i = 0; i < c->n_subs; i++)
        if (!anchored_cond(w, c->subs[i]))
            return 0;
    return 1;
}

static void anchor_cond(cg_specset_t *ss, anchor_walk_t *w, cond_t *c);

/* Marks the largest anchored parts of e: e itself when it is anchored and worth a memo entry
 * (a bare path already has the path memo), else its parts. */
static void anchor_expr(cg_specset_t *ss, anchor_walk_t *w, expr_t *e)
{
    if (!e || e->kind == EX_CONST)
        return;
    w->group = 0;
    w->anchor = NULL;
    int bare = e->kind == EX_PATH && !e->n_xforms && !e->deflt && !e->required;
    if (!bare && anchored_expr(w, e) && w->anchor) {
        e->anchor = w->anchor;
        e->anchor_group = w->group;
        e->anchor_id = anchor_id_of(ss, w->seen, e);
        return;
    }
    switch (e->kind) {
    case EX_CONCAT:
    case EX_COALESCE:
    case EX_HASH_ID:
    case EX_PSEUDONYM:
        for (size_t i = 0; i < e->u.list.n; i++)
            anchor_expr(ss, w, e->u.list.items[i]);
        break;
    case EX_IF:
        anchor_cond(ss, w, e->u.iff.cond);
        anchor_expr(ss, w, e->u.iff.then);
        anchor_expr(ss, w, e->u.iff.els);
        break;
    default:
        break;
    }
    for (size_t i = 0; i < e->n_xforms; i++)
        if (e->xforms[i].kind == XF_LOOKUP)
            anchor_expr(ss, w, e->xforms[i].u.lookup.vocab_expr);
    anchor_expr(ss, w, e->deflt);
}

static void anchor_cond(cg_specset_t *ss, anchor_walk_t *w, cond_t *c)
{
    if (!c)
        return;
    anchor_expr(ss, w, c->a);
    anchor_expr(ss, w, c->b);
    for (size_t i = 0; i < c->n_subs; i++)
        anchor_cond(ss, w, c->subs[i]);
}

/* The anchored expressions of a rule's rows: only a foreach's rows share places. */
static void anchors_build(cg_specset_t *ss, const spec_t *s, rule_t *r, anchor_seen_t *seen)
{
    if (!s->format->anchor_group || !r->has_foreach)
        return;
    anchor_walk_t w = {s->format->anchor_group, r, 0, NULL, seen};
    anchor_cond(ss, &w, r->when);
    anchor_cond(ss, &w, r->delete_when);
    for (size_t i = 0; i < r->n_lets; i++)
        anchor_expr(ss, &w, r->lets[i].expr);
    for (size_t i = 0; i < r->n_id_parts; i++)
        anchor_expr(ss, &w, r->id_parts[i]);
    for (size_t i = 0; i < r->n_columns; i++)
        anchor_expr(ss, &w, r->columns[i].expr);
    for (size_t i = 0; i < r->n_meta; i++)
        anchor_expr(ss, &w, r->meta[i].expr);
}

/* ---- numeric columns whose values are canonical already ---- */

/* What an expression's present values are, as text: */
enum {
    CANON_NONE,  /* anything */
    CANON_INT,   /* a fixed point of cg_spec_number, integers only */
    CANON_NUM,   /* a fixed point of cg_spec_number */
    CANON_ABSENT /* never present */
};

static int canon_join(int a, int b)
{
    if (a == CANON_ABSENT)
        return b;
    if (b == CANON_ABSENT)
        return a;
    if (a == CANON_NONE || b == CANON_NONE)
        return CANON_NONE;
    return a == CANON_INT && b == CANON_INT ? CANON_INT : CANON_NUM;
}

static int canon_text(const char *s, size_t n)
{
    char buf[128];
    if (!s)
        return CANON_ABSENT;
    if (!n)
        return CANON_NONE;
    size_t k = cg_spec_number(s, n, 1, buf, sizeof(buf));
    if (k == n && !memcmp(buf, s, n))
        return CANON_INT;
    k = cg_spec_number(s, n, 0, buf, sizeof(buf));
    return k == n && !memcmp(buf, s, n) ? CANON_NUM : CANON_NONE;
}

/* The form of e's present values: made by a transform that writes numbers (number, integer, a
 * concept lookup, unit), a person id or keyed id, or constants of that form; else anything. */
static int canon_expr(const expr_t *e)
{
    if (!e)
        return CANON_ABSENT;
    int c = CANON_NONE;
    if (e->n_xforms) {
        const xform_t *x = &e->xforms[e->n_xforms - 1]; /* a present value went through all */
        switch (x->kind) {
        case XF_INTEGER:
        case XF_UNIT:
            c = CANON_INT;
            break;
        case XF_NUMBER:
            c = CANON_NUM;
            break;
        case XF_LOOKUP:
            c = x->u.lookup.want == LK_DOMAIN_ID ? CANON_NONE : CANON_INT;
            break;
        case XF_MAP:
            c = CANON_ABSENT;
            for (size_t i = 0; i < x->u.map.n; i++)
                c = canon_join(c, canon_text(x->u.map.entries[i].to, x->u.map.entries[i].to_len));
            if (x->u.map.deflt)
                c = canon_join(c, canon_text(x->u.map.deflt->to, x->u.map.deflt->to_len));
            break;
        default:
            c = CANON_NONE;
            break;
        }
    } else {
        switch (e->kind) {
        case EX_CONST:
            c = e->u.cst.present ? canon_text(e->u.cst.s, e->u.cst.len) : CANON_ABSENT;
            break;
        case EX_PATIENT:
            c = e->u.patient == PT_PERSON_ID ? CANON_INT : CANON_NONE;
            break;
        case EX_PSEUDONYM:
            c = e->part == PT_PERSON_ID ? CANON_INT : CANON_NONE;
            break;
        case EX_HASH_ID:
            c = CANON_INT;
            break;
        case EX_IF:
            c = canon_join(canon_expr(e->u.iff.then), canon_expr(e->u.iff.els));
            break;
        case EX_COALESCE:
            c = CANON_ABSENT;
            for (size_t i = 0; i < e->u.list.n; i++)
                c = canon_join(c, canon_expr(e->u.list.items[i]));
            break;
        default:
            c = CANON_NONE;
            break;
        }
    }
    return e->deflt ? canon_join(c, canon_expr(e->deflt)) : c;
}

static void canon_build(rule_t *r)
{
    for (size_t i = 0; i < r->n_columns; i++) {
        column_t *c = &r->columns[i];
        cg_col_type_t t = c->col->type;
        int k = c->col->source_id ? CANON_NONE : canon_expr(c->expr);
        c->canon = COL_CANON_NONE;
        if (t == CG_COL_NUMBER && (k == CANON_INT || k == CANON_NUM))
            c->canon = COL_CANON_NUM;
        else if ((t == CG_COL_INT32 || t == CG_COL_INT64) && k == CANON_INT)
            c->canon = COL_CANON_INT;
    }
}

/* ---- rules in one pass ---- */

static int fusable(const rule_t *r)
{
    return r->has_foreach && !r->doc_data && r->table;
}

/* Consecutive rules over the same foreach run in one pass (cg_spec_format_t.run_rules), unless
 * the spec leaves failing entries out: its findings come in rule order. */
static void fuse_build(const spec_t *s)
{
    const cg_spec_format_t *f = s->format;
    if (!f->same_foreach || !f->run_rules || s->on_error_entry)
        return;
    for (size_t i = 0; i < s->n_rules;) {
        size_t n = 1;
        while (fusable(&s->rules[i]) && i + n < s->n_rules && n < SPEC_FUSE_MAX &&
               fusable(&s->rules[i + n]) && f->same_foreach(&s->rules[i], &s->rules[i + n]))
            n++;
        s->rules[i].fuse_n = n > 1 ? (uint32_t)n : 0;
        i += n;
    }
}

/* The guard table of the pass that starts at rules[0] (n rules): the guards that read the path
 * the first one reads, when every value they list has at most 8 bytes. */
static int fuse_table_build(cg_specset_t *ss, rule_t *rules, size_t n)
{
    rules[0].fuse_tab = NULL;
    uint32_t path_id = 0, set = 0;
    size_t n_values = 0;
    for (size_t k = 0; k < n; k++) {
        const cond_t *g = rules[k].guard;
        if (!g || !g->a->path_id || (path_id && g->a->path_id != path_id))
            continue;
        path_id = g->a->path_id;
        for (size_t i = 0; i < g->n_values; i++)
            if (!g->value_lens[i] || g->value_lens[i] > 8)
                return 0;
        set |= UINT32_C(1) << k;
        n_values += g->n_values;
    }
    if (!set || !n_values)
        return 0;
    fuse_table_t *t = cg_arena_alloc(&ss->arena, sizeof(*t));
    fuse_guard_t *v = cg_arena_alloc(&ss->arena, n_values * sizeof(*v));
    if (!t || !v)
        return -1;
    *t = (fuse_table_t){path_id, set, 0, v};
    for (size_t k = 0; k < n; k++) {
        if (!(set >> k & 1))
            continue;
        const cond_t *g = rules[k].guard;
        for (size_t i = 0; i < g->n_values; i++) {
            uint32_t len = (uint32_t)g->value_lens[i];
            uint64_t w = cg_spec_pack8(g->values[i], len);
            size_t j = 0;
            while (j < t->n && (t->values[j].word != w || t->values[j].len != len))
                j++;
            if (j == t->n)
                t->values[t->n++] = (fuse_guard_t){w, len, 0};
            t->values[j].rules |= UINT32_C(1) << k;
        }
    }
    rules[0].fuse_tab = t;
    return 0;
}

int cg_spec_prepare(cg_specset_t *ss)
{
    anchor_seen_t seen = {NULL, 0, 0};
    for (size_t i = 0; i < ss->n_specs; i++) {
        const spec_t *s = &ss->specs[i];
        seen.n = 0; /* shared within a spec: its own parameters and format */
        fuse_build(s);
        for (size_t k = 0; k < s->n_rules; k++) {
            if (prov_build(ss, s, &s->rules[k]) || meta_keys(ss, &s->rules[k]) ||
                row_cols_build(ss, &s->rules[k])) {
                free(seen.e);
                return -1;
            }
            guard_build(&s->rules[k]);
            canon_build(&s->rules[k]);
            anchors_build(ss, s, &s->rules[k], &seen);
        }
        for (size_t k = 0; k < s->n_rules; k++)
            if (s->rules[k].fuse_n > 1 && fuse_table_build(ss, &s->rules[k], s->rules[k].fuse_n)) {
                free(seen.e);
                return -1;
            }
    }
    free(seen.e);
    return 0;
}
