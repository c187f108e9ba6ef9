/* xml_fastpath.c - the XPath fast path (xml_fastpath.h): a step program for the simple
 * location paths specs use, compiled from the expression's text and walked over the tree.
 *
 * libxml2's evaluator allocates node sets per step and sorts them; the paths specs use
 * (hl7:code/@code, section foreach paths with templateId predicates) need neither. Such paths
 * compile to steps walked depth-first, emitting nodes as they are found: for a chain of child
 * steps that is document order without duplicates, and a value stops at the first node.
 * Anything outside the subset is evaluated by libxml2, per whole expression (xml_xpath.c).
 */
#include "xml_fastpath.h"

#include <stdlib.h>
#include <string.h>

const cg_xml_ns_t cg_xml__default_ns[] = {
    {"hl7", "urn:hl7-org:v3"},
    {"sdtc", "urn:hl7-org:sdtc"},
    {"xsi", "http://www.w3.org/2001/XMLSchema-instance"},
};
const size_t cg_xml__n_default_ns = sizeof(cg_xml__default_ns) / sizeof(cg_xml__default_ns[0]);

enum { FX_CHILD, FX_DESC, FX_PARENT, FX_ATTR, FX_TEXT };
enum { FX_OR, FX_AND, FX_NOT, FX_EXISTS, FX_EQ, FX_POS };
#define FX_MAX_PREDS 8

typedef struct fx_step {
    uint8_t kind;
    uint8_t any_name; /* '*' or 'prefix:*' */
    uint8_t has_ns;   /* prefixed: the element's namespace URI must be uri; else no namespace */
    uint8_t n_preds;
    int32_t next;       /* the following step, -1 after the last */
    uint32_t name, uri; /* offsets into pool */
    uint32_t preds;     /* first index into pred */
} fx_step_t;

typedef struct fx_expr {
    uint8_t op;
    uint8_t abs;  /* FX_EXISTS, FX_EQ: the path is absolute */
    int32_t a, b; /* operands (expressions), or a path's first step */
    uint32_t lit; /* FX_EQ: literal's offset into pool; FX_POS: the position */
} fx_expr_t;

struct fx {
    fx_step_t *step;
    fx_expr_t *expr;
    int32_t *pred;
    char *pool;
    size_t n_step, n_expr, n_pred, n_pool;
    int32_t first; /* the main path */
    int abs;
};

typedef struct fx_parser {
    const char *s;
    size_t i;
    fx_t *fx;
    const cg_xml_ns_t *ns;
    size_t n_ns;
    int ok;
} fx_parser_t;

void cg_xml__fx_free(fx_t *fx)
{
    if (!fx)
        return;
    free(fx->step);
    free(fx->expr);
    free(fx->pred);
    free(fx->pool);
    free(fx);
}

/* Grows *v (of *n elements of size sz) by one; the new element's index, or -1. */
static long fx_push(void **v, size_t *n, size_t sz)
{
    if ((*n & (*n - 1)) == 0 || *n == 0) { /* capacities are powers of two */
        size_t cap = *n ? *n * 2 : 8;
        void *p = realloc(*v, cap * sz);
        if (!p)
            return -1;
        *v = p;
    }
    memset((char *)*v + *n * sz, 0, sz);
    return (long)(*n)++;
}

static long fx_str(fx_parser_t *p, const char *s, size_t len)
{
    size_t off = p->fx->n_pool;
    for (size_t k = 0; k <= len; k++)
        if (fx_push((void **)&p->fx->pool, &p->fx->n_pool, 1) < 0)
            return p->ok = 0, -1;
    memcpy(p->fx->pool + off, s, len);
    p->fx->pool[off + len] = '\0';
    return (long)off;
}

static void fx_ws(fx_parser_t *p)
{
    while (p->s[p->i] == ' ' || p->s[p->i] == '\t' || p->s[p->i] == '\n' || p->s[p->i] == '\r')
        p->i++;
}

static size_t fx_ncname(const fx_parser_t *p, size_t at)
{
    const unsigned char *s = (const unsigned char *)p->s;
    size_t k = at;
    if (!cg_xml__name_start(s[k]))
        return 0;
    while (cg_xml__name_char(s[k]))
        k++;
    return k - at;
}

/* The keyword kw at p->i, as a whole word. */
static int fx_word(fx_parser_t *p, const char *kw)
{
    size_t n = strlen(kw);
    return !strncmp(p->s + p->i, kw, n) && !cg_xml__name_char((unsigned char)p->s[p->i + n]);
}

/* The URI libxml2 would bind prefix to: the spec's own (the last wins, as in the context's
 * hash), then the defaults. */
static const char *fx_uri(const fx_parser_t *p, const char *pre, size_t n)
{
    for (size_t k = p->n_ns; k-- > 0;)
        if (strlen(p->ns[k].prefix) == n && !memcmp(p->ns[k].prefix, pre, n))
            return p->ns[k].uri;
    for (size_t k = 0; k < cg_xml__n_default_ns; k++)
        if (strlen(cg_xml__default_ns[k].prefix) == n &&
            !memcmp(cg_xml__default_ns[k].prefix, pre, n))
            return cg_xml__default_ns[k].uri;
    return NULL;
}

static long fx_or(fx_parser_t *p);

/* A name test at p->i ('*', 'name', 'prefix:name', 'prefix:*') into st. */
static void fx_nametest(fx_parser_t *p, fx_step_t *st, int star_ok)
{
    size_t n = fx_ncname(p, p->i);
    if (!n) {
        if (p->s[p->i] == '*' && star_ok) {
            p->i++;
            st->any_name = 1;
            return;
        }
        p->ok = 0;
        return;
    }
    const char *name = p->s + p->i;
    size_t nl = n;
    p->i += n;
    if (p->s[p->i] == ':' && p->s[p->i + 1] != ':') {
        const char *uri = fx_uri(p, name, n);
        if (!uri)
            return (void)(p->ok = 0);
        long u = fx_str(p, uri, strlen(uri));
        st->uri = (uint32_t)(u < 0 ? 0 : u);
        st->has_ns = 1;
        p->i++;
        if (p->s[p->i] == '*' && star_ok) {
            p->i++;
            st->any_name = 1;
            return;
        }
        nl = fx_ncname(p, p->i);
        if (!nl)
            return (void)(p->ok = 0);
        name = p->s + p->i;
        p->i += nl;
    }
    long o = fx_str(p, name, nl);
    st->name = (uint32_t)(o < 0 ? 0 : o);
    /* a node type test (node(), comment()) or another axis: not ours */
    size_t save = p->i;
    fx_ws(p);
    if (p->s[p->i] == '(' || p->s[p->i] == ':')
        p->ok = 0;
    p->i = save;
}

/* One step; dslash: it followed '//'. Returns its index (-1 on failure). */
static long fx_step(fx_parser_t *p, int dslash)
{
    fx_ws(p);
    fx_step_t st = {0};
    st.next = -1;
    if (p->s[p->i] == '.' && p->s[p->i + 1] == '.') {
        if (dslash)
            return p->ok = 0, -1;
        p->i += 2;
        st.kind = FX_PARENT;
    } else if (p->s[p->i] == '@') {
        p->i++;
        st.kind = FX_ATTR;
        fx_nametest(p, &st, 0);
    } else if (!strncmp(p->s + p->i, "text()", 6)) {
        if (dslash)
            return p->ok = 0, -1;
        p->i += 6;
        st.kind = FX_TEXT;
    } else if (!strncmp(p->s + p->i, "descendant::", 12) && !dslash) {
        p->i += 12;
        st.kind = FX_DESC;
        fx_nametest(p, &st, 1);
    } else {
        st.kind = dslash ? FX_DESC : FX_CHILD;
        fx_nametest(p, &st, 1);
    }
    if (!p->ok)
        return -1;
    int32_t preds[FX_MAX_PREDS];
    size_t np = 0;
    for (;;) {
        fx_ws(p);
        if (p->s[p->i] != '[')
            break;
        if (np == FX_MAX_PREDS || (st.kind != FX_CHILD && st.kind != FX_DESC))
            return p->ok = 0, -1;
        p->i++;
        fx_ws(p);
        long e;
        size_t d = 0;
        while (p->s[p->i + d] >= '0' && p->s[p->i + d] <= '9')
            d++;
        if (d) {
            /* [n]: a whole-predicate position (1 .. 10^9) */
            size_t save = p->i;
            unsigned long pos = strtoul(p->s + p->i, NULL, 10);
            p->i += d;
            fx_ws(p);
            if (p->s[p->i] != ']' || pos < 1 || d > 9 || dslash)
                return p->i = save, p->ok = 0, -1;
            e = fx_push((void **)&p->fx->expr, &p->fx->n_expr, sizeof(fx_expr_t));
            if (e < 0)
                return p->ok = 0, -1;
            p->fx->expr[e].op = FX_POS;
            p->fx->expr[e].lit = (uint32_t)pos;
        } else {
            e = fx_or(p);
            if (!p->ok)
                return -1;
            fx_ws(p);
            if (p->s[p->i] != ']')
                return p->ok = 0, -1;
        }
        p->i++;
        preds[np++] = (int32_t)e;
    }
    st.preds = (uint32_t)p->fx->n_pred;
    st.n_preds = (uint8_t)np;
    for (size_t k = 0; k < np; k++) {
        long o = fx_push((void **)&p->fx->pred, &p->fx->n_pred, sizeof(int32_t));
        if (o < 0)
            return p->ok = 0, -1;
        p->fx->pred[o] = preds[k];
    }
    long si = fx_push((void **)&p->fx->step, &p->fx->n_step, sizeof(fx_step_t));
    if (si < 0)
        return p->ok = 0, -1;
    p->fx->step[si] = st;
    return si;
}

/* A location path; *abs gets whether it starts at the document. Returns its first step. */
static long fx_path(fx_parser_t *p, int *abs)
{
    fx_ws(p);
    int dslash = 0;
    *abs = 0;
    if (p->s[p->i] == '/') {
        *abs = 1;
        p->i++;
        if (p->s[p->i] == '/') {
            dslash = 1;
            p->i++;
        }
    }
    long first = -1, prev = -1;
    for (;;) {
        long si = fx_step(p, dslash);
        if (!p->ok)
            return -1;
        if (prev >= 0)
            p->fx->step[prev].next = (int32_t)si;
        else
            first = si;
        prev = si;
        fx_ws(p);
        if (p->s[p->i] != '/')
            break;
        p->i++;
        dslash = p->s[p->i] == '/';
        p->i += (size_t)dslash;
    }
    return first;
}

static long fx_new_expr(fx_parser_t *p, int op, long a, long b)
{
    long e = fx_push((void **)&p->fx->expr, &p->fx->n_expr, sizeof(fx_expr_t));
    if (e < 0)
        return p->ok = 0, -1;
    p->fx->expr[e].op = (uint8_t)op;
    p->fx->expr[e].a = (int32_t)a;
    p->fx->expr[e].b = (int32_t)b;
    return e;
}

/* '(' or-expr ')', not(or-expr), path, path = 'literal'. */
static long fx_primary(fx_parser_t *p)
{
    fx_ws(p);
    if (p->s[p->i] == '(') {
        p->i++;
        long e = fx_or(p);
        fx_ws(p);
        if (!p->ok || p->s[p->i] != ')')
            return p->ok = 0, -1;
        p->i++;
        return e;
    }
    if (fx_word(p, "not")) {
        size_t save = p->i;
        p->i += 3;
        fx_ws(p);
        if (p->s[p->i] == '(') {
            p->i++;
            long a = fx_or(p);
            fx_ws(p);
            if (!p->ok || p->s[p->i] != ')')
                return p->ok = 0, -1;
            p->i++;
            return fx_new_expr(p, FX_NOT, a, -1);
        }
        p->i = save; /* an element named not */
    }
    int abs;
    long first = fx_path(p, &abs);
    if (!p->ok)
        return -1;
    fx_ws(p);
    long e;
    if (p->s[p->i] == '=') {
        /* only attribute values compare: an element's string value is its whole text */
        long last = first;
        while (p->fx->step[last].next >= 0)
            last = p->fx->step[last].next;
        if (p->fx->step[last].kind != FX_ATTR)
            return p->ok = 0, -1;
        p->i++;
        fx_ws(p);
        char q = p->s[p->i];
        if (q != '\'' && q != '"')
            return p->ok = 0, -1;
        const char *end = strchr(p->s + p->i + 1, q);
        if (!end)
            return p->ok = 0, -1;
        long lit = fx_str(p, p->s + p->i + 1, (size_t)(end - (p->s + p->i + 1)));
        p->i = (size_t)(end - p->s) + 1;
        e = fx_new_expr(p, FX_EQ, first, -1);
        if (e >= 0)
            p->fx->expr[e].lit = (uint32_t)(lit < 0 ? 0 : lit);
    } else {
        e = fx_new_expr(p, FX_EXISTS, first, -1);
    }
    if (e >= 0)
        p->fx->expr[e].abs = (uint8_t)abs;
    return e;
}

static long fx_and(fx_parser_t *p)
{
    long a = fx_primary(p);
    for (;;) {
        fx_ws(p);
        if (!p->ok || !fx_word(p, "and"))
            return a;
        p->i += 3;
        long b = fx_primary(p);
        a = fx_new_expr(p, FX_AND, a, b);
    }
}

static long fx_or(fx_parser_t *p)
{
    long a = fx_and(p);
    for (;;) {
        fx_ws(p);
        if (!p->ok || !fx_word(p, "or"))
            return a;
        p->i += 2;
        long b = fx_and(p);
        a = fx_new_expr(p, FX_OR, a, b);
    }
}

/* Whether the main path's steps come out in document order without duplicates when walked
 * depth-first from one node: leading '..' (one node each), child steps (contexts at one depth),
 * then at most one descendant step (disjoint subtrees of same-depth contexts) followed by at
 * most an attribute step (an element's attributes precede its children). text() and '@' end a
 * path. Predicate paths only ask whether a node exists, so any order does for them. */
static int fx_main_ordered(const fx_t *fx)
{
    int seen_other = 0, seen_desc = 0;
    for (int32_t k = fx->first; k >= 0; k = fx->step[k].next) {
        const fx_step_t *st = &fx->step[k];
        int last = st->next < 0;
        switch (st->kind) {
        case FX_PARENT:
            if (seen_other)
                return 0;
            break;
        case FX_CHILD:
            if (seen_desc)
                return 0;
            seen_other = 1;
            break;
        case FX_DESC:
            if (seen_desc)
                return 0;
            seen_desc = seen_other = 1;
            break;
        case FX_ATTR:
            if (!last)
                return 0;
            break;
        case FX_TEXT:
            if (!last || seen_desc)
                return 0;
            break;
        }
    }
    return 1;
}

/* Attribute and text() steps end every path: nothing is below them. */
static int fx_leaves_last(const fx_t *fx)
{
    for (size_t k = 0; k < fx->n_step; k++)
        if ((fx->step[k].kind == FX_ATTR || fx->step[k].kind == FX_TEXT) && fx->step[k].next >= 0)
            return 0;
    return 1;
}

/* The fast program for text, or NULL when it is outside the subset (or out of memory). */
fx_t *cg_xml__fx_compile(const char *text, const cg_xml_ns_t *ns, size_t n_ns)
{
    fx_t *fx = calloc(1, sizeof(*fx));
    if (!fx)
        return NULL;
    fx_parser_t p = {text, 0, fx, ns, n_ns, 1};
    long first = fx_path(&p, &fx->abs);
    fx_ws(&p);
    if (!p.ok || first < 0 || p.s[p.i] != '\0' || !fx_main_ordered(fx) || !fx_leaves_last(fx)) {
        cg_xml__fx_free(fx);
        return NULL;
    }
    fx->first = (int32_t)first;
    return fx;
}

/* Walking. emit gets each node the main path (or a predicate's path) selects; returning 1
 * stops the walk, which then returns 1. */
static int fx_walk(const fx_t *fx, int32_t si, const xmlNode *ctx, fx_emit_fn emit, void *arg);

static int fx_name_ok(const fx_t *fx, const fx_step_t *st, const xmlChar *name, const xmlNs *ns)
{
    if (st->has_ns) {
        if (!ns || !ns->href || strcmp((const char *)ns->href, fx->pool + st->uri))
            return 0;
    } else if (ns && !st->any_name) {
        return 0; /* XPath 1.0: an unprefixed name is in no namespace */
    }
    return st->any_name || !strcmp((const char *)name, fx->pool + st->name);
}

/* An attribute's value is its text children together; the decoder refuses entity
 * declarations, so there are no entity references among them. */
static int fx_attr_equals(const xmlNode *a, const char *lit)
{
    size_t at = 0, len = strlen(lit);
    for (const xmlNode *t = a->children; t; t = t->next) {
        if (t->type != XML_TEXT_NODE && t->type != XML_CDATA_SECTION_NODE)
            continue;
        const char *c = (const char *)t->content;
        size_t cl = c ? strlen(c) : 0;
        if (cl > len - at || memcmp(c, lit + at, cl))
            return 0;
        at += cl;
    }
    return at == len;
}

static int fx_emit_any(void *arg, const xmlNode *n)
{
    (void)arg;
    (void)n;
    return 1;
}

static int fx_emit_eq(void *arg, const xmlNode *n)
{
    return fx_attr_equals(n, arg);
}

static int fx_bool(const fx_t *fx, int32_t ei, const xmlNode *n)
{
    const fx_expr_t *e = &fx->expr[ei];
    switch (e->op) {
    case FX_OR:
        return fx_bool(fx, e->a, n) || fx_bool(fx, e->b, n);
    case FX_AND:
        return fx_bool(fx, e->a, n) && fx_bool(fx, e->b, n);
    case FX_NOT:
        return !fx_bool(fx, e->a, n);
    case FX_EXISTS:
    case FX_EQ: {
        const xmlNode *ctx = e->abs ? (const xmlNode *)n->doc : n;
        if (!ctx)
            return 0;
        if (e->op == FX_EXISTS)
            return fx_walk(fx, e->a, ctx, fx_emit_any, NULL);
        return fx_walk(fx, e->a, ctx, fx_emit_eq, (void *)(fx->pool + e->lit));
    }
    default:
        return 0; /* FX_POS is handled by the step */
    }
}

/* Whether candidate c passes st's predicates; cnt holds the per-predicate positions for this
 * context. *done is set when no later candidate can pass (a position went by). */
static int fx_preds(const fx_t *fx, const fx_step_t *st, const xmlNode *c, uint32_t *cnt, int *done)
{
    for (unsigned k = 0; k < st->n_preds; k++) {
        const fx_expr_t *e = &fx->expr[fx->pred[st->preds + k]];
        cnt[k]++;
        if (e->op == FX_POS) {
            if (cnt[k] != e->lit) {
                if (cnt[k] > e->lit) /* counts only grow */
                    *done = 1;
                return 0;
            }
        } else if (!fx_bool(fx, fx->pred[st->preds + k], c)) {
            return 0;
        }
    }
    return 1;
}

static int fx_next(const fx_t *fx, const fx_step_t *st, const xmlNode *c, fx_emit_fn emit,
                   void *arg)
{
    return st->next < 0 ? emit(arg, c) : fx_walk(fx, st->next, c, emit, arg);
}

static int fx_walk(const fx_t *fx, int32_t si, const xmlNode *ctx, fx_emit_fn emit, void *arg)
{
    const fx_step_t *st = &fx->step[si];
    uint32_t cnt[FX_MAX_PREDS] = {0};
    int done = 0;
    switch (st->kind) {
    case FX_PARENT: {
        /* as xmlXPathNextParent: an attribute's element, a node's parent, the document
         * for a parentless node, nothing for the document */
        const xmlNode *up;
        if (ctx->type == XML_ATTRIBUTE_NODE)
            up = ctx->parent;
        else if (ctx->type == XML_DOCUMENT_NODE || ctx->type == XML_HTML_DOCUMENT_NODE ||
                 ctx->type == XML_NAMESPACE_DECL)
            up = NULL;
        else
            up = ctx->parent ? ctx->parent : (const xmlNode *)ctx->doc;
        return up ? fx_next(fx, st, up, emit, arg) : 0;
    }
    case FX_ATTR:
        if (ctx->type != XML_ELEMENT_NODE)
            return 0;
        for (const xmlAttr *a = ctx->properties; a; a = a->next)
            if (fx_name_ok(fx, st, a->name, a->ns) &&
                fx_next(fx, st, (const xmlNode *)a, emit, arg))
                return 1;
        return 0;
    case FX_TEXT:
    case FX_CHILD:
        if (ctx->type == XML_ATTRIBUTE_NODE || ctx->type == XML_NAMESPACE_DECL)
            return 0;
        for (const xmlNode *c = ctx->children; c && !done; c = c->next) {
            if (st->kind == FX_TEXT) {
                if ((c->type == XML_TEXT_NODE || c->type == XML_CDATA_SECTION_NODE) &&
                    fx_next(fx, st, c, emit, arg))
                    return 1;
                continue;
            }
            if (c->type != XML_ELEMENT_NODE || !fx_name_ok(fx, st, c->name, c->ns) ||
                !fx_preds(fx, st, c, cnt, &done))
                continue;
            if (fx_next(fx, st, c, emit, arg))
                return 1;
        }
        return 0;
    case FX_DESC: {
        if (ctx->type == XML_ATTRIBUTE_NODE || ctx->type == XML_NAMESPACE_DECL)
            return 0;
        /* preorder below ctx, ctx itself excluded */
        const xmlNode *c = ctx->children;
        while (c && !done) {
            if (c->type == XML_ELEMENT_NODE && fx_name_ok(fx, st, c->name, c->ns) &&
                fx_preds(fx, st, c, cnt, &done) && fx_next(fx, st, c, emit, arg))
                return 1;
            if (c->type == XML_ELEMENT_NODE && c->children) {
                c = c->children;
                continue;
            }
            while (c && c != ctx && !c->next)
                c = c->parent;
            c = (c && c != ctx) ? c->next : NULL;
        }
        return 0;
    }
    }
    return 0;
}

int cg_xml__fx_absolute(const fx_t *fx)
{
    return fx->abs;
}

void cg_xml__fx_run(const fx_t *fx, const xmlNode *ctx, fx_emit_fn emit, void *arg)
{
    fx_walk(fx, fx->first, ctx, emit, arg);
}
