/* xml_xpath.c - XPath 1.0 for specs and `parse --get`: compiled once, evaluated per document
 * (cg_xml.h).
 *
 * libxml2 compiles and evaluates, except where the fast path (xml_fastpath.c) compiled the
 * expression into its own step program: that is walked instead. Prefixes are resolved by libxml2
 * only at evaluation time, so compilation checks them itself: a spec with an undeclared prefix
 * fails when it loads, pointing at the prefix, rather than on the first document. Values are read
 * straight from the tree when a node holds them in one piece, and gathered into the evaluator's
 * buffer otherwise.
 */
#include "cg_xml.h"
#include "xml_fastpath.h"

#include <libxml/tree.h>
#include <libxml/xpath.h>
#include <libxml/xpathInternals.h>
#include <stdlib.h>
#include <string.h>

struct cg_xml_xpath {
    xmlXPathCompExprPtr comp; /* always compiled: it validates, and is the fallback */
    fx_t *fx;                 /* the fast step program, or NULL: libxml2 evaluates */
    char *text;
    cg_xml_ns_t *ns; /* the spec's own prefixes (copies), registered before evaluation */
    size_t n_ns;
    uint64_t ns_sig; /* tells namespace lists apart cheaply */
};

typedef struct id_entry {
    const char *id;
    const xmlNode *node;
} id_entry_t;

struct cg_xml_eval {
    xmlXPathContextPtr ctx;
    xmlDocPtr doc;
    uint64_t ns_sig; /* of the extra prefixes now registered (0: defaults only) */
    /* the nodes of the last cg_xml_xpath_nodes (a foreach walks them meanwhile), copied:
     * libxml2's result objects are freed at once, since freeing one reads its nodes, which
     * must not outlive the document */
    void **nodev;
    size_t cap_nodev;
    cg_buf_t buf;
    id_entry_t *ids; /* ID attributes of doc, sorted; built on first cg_xml_find_id */
    size_t n_ids, cap_ids;
    int ids_built;
};

static void quiet_error(void *user, xmlErrorPtr e)
{
    (void)user;
    (void)e; /* reported through lastError by the caller, never printed */
}

static int ns_declared(const char *p, size_t n, const cg_xml_ns_t *ns, size_t n_ns)
{
    for (size_t i = 0; i < cg_xml__n_default_ns; i++)
        if (strlen(cg_xml__default_ns[i].prefix) == n &&
            !memcmp(cg_xml__default_ns[i].prefix, p, n))
            return 1;
    for (size_t i = 0; i < n_ns; i++)
        if (strlen(ns[i].prefix) == n && !memcmp(ns[i].prefix, p, n))
            return 1;
    return 0;
}

/* The first QName prefix in text that is not declared, as an offset (-1 when all are). Skips
 * string literals, axis names ("child::") and variable references' names alike. */
static long undeclared_prefix(const char *text, const cg_xml_ns_t *ns, size_t n_ns, size_t *plen)
{
    const unsigned char *s = (const unsigned char *)text;
    size_t i = 0;
    while (s[i]) {
        if (s[i] == '"' || s[i] == '\'') {
            unsigned char q = s[i++];
            while (s[i] && s[i] != q)
                i++;
            if (s[i])
                i++;
            continue;
        }
        if (cg_xml__name_start(s[i]) && (i == 0 || !cg_xml__name_char(s[i - 1]))) {
            size_t start = i;
            while (cg_xml__name_char(s[i]))
                i++;
            if (s[i] == ':' && s[i + 1] != ':' &&
                (cg_xml__name_start(s[i + 1]) || s[i + 1] == '*') &&
                !ns_declared(text + start, i - start, ns, n_ns)) {
                *plen = i - start;
                return (long)start;
            }
            continue;
        }
        i++;
    }
    return -1;
}

static uint64_t ns_signature(const cg_xml_ns_t *ns, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        for (const char *p = ns[i].prefix; *p; p++)
            h = (h ^ (unsigned char)*p) * 1099511628211ull;
        h = (h ^ '=') * 1099511628211ull;
        for (const char *p = ns[i].uri; *p; p++)
            h = (h ^ (unsigned char)*p) * 1099511628211ull;
        h = (h ^ ';') * 1099511628211ull;
    }
    return n ? (h | 1) : 0;
}

static void register_ns(xmlXPathContextPtr ctx, const cg_xml_ns_t *ns, size_t n)
{
    xmlXPathRegisteredNsCleanup(ctx);
    for (size_t i = 0; i < cg_xml__n_default_ns; i++)
        xmlXPathRegisterNs(ctx, BAD_CAST cg_xml__default_ns[i].prefix,
                           BAD_CAST cg_xml__default_ns[i].uri);
    for (size_t i = 0; i < n; i++)
        xmlXPathRegisterNs(ctx, BAD_CAST ns[i].prefix, BAD_CAST ns[i].uri);
}

cg_xml_xpath_t *cg_xml_xpath_compile(const char *text, const cg_xml_ns_t *ns, size_t n_ns,
                                     cg_error_t *err)
{
    return cg_xml_xpath_compile_opts(text, ns, n_ns, 0, err);
}

cg_xml_xpath_t *cg_xml_xpath_compile_opts(const char *text, const cg_xml_ns_t *ns, size_t n_ns,
                                          unsigned flags, cg_error_t *err)
{
    if (!text || !*text) {
        cg_error_set(err, CG_ERR_SPEC, "", 0, 1, "empty XPath expression");
        return NULL;
    }
    size_t plen = 0;
    long bad = undeclared_prefix(text, ns, n_ns, &plen);
    if (bad >= 0) {
        cg_error_set(err, CG_ERR_SPEC, "", 0, (int)bad + 1,
                     "undeclared namespace prefix '%.*s' in XPath '%s' (declare it in "
                     "input.namespaces; hl7, sdtc and xsi are predeclared)",
                     (int)plen, text + bad, text);
        return NULL;
    }
    xmlXPathContextPtr ctx = xmlXPathNewContext(NULL);
    if (!ctx) {
        cg_error_set(err, CG_ERR_NOMEM, "", 0, 0, "out of memory");
        return NULL;
    }
    ctx->error = quiet_error;
    register_ns(ctx, ns, n_ns);
    xmlXPathCompExprPtr comp = xmlXPathCtxtCompile(ctx, BAD_CAST text);
    if (!comp) {
        int col = ctx->lastError.int1 >= 0 ? ctx->lastError.int1 + 1 : 1;
        const char *msg = ctx->lastError.message ? ctx->lastError.message : "invalid expression";
        size_t ml = strlen(msg);
        while (ml && (msg[ml - 1] == '\n' || msg[ml - 1] == ' '))
            ml--;
        cg_error_set(err, CG_ERR_SPEC, "", 0, col, "XPath '%s': %.*s at character %d", text,
                     (int)ml, msg, col);
        xmlResetError(&ctx->lastError);
        xmlXPathFreeContext(ctx);
        return NULL;
    }
    xmlResetError(&ctx->lastError);
    xmlXPathFreeContext(ctx);

    cg_xml_xpath_t *x = calloc(1, sizeof(*x));
    if (x)
        x->text = strdup(text);
    if (x && n_ns)
        x->ns = calloc(n_ns, sizeof(*x->ns));
    int ok = x && x->text && (!n_ns || x->ns);
    for (size_t i = 0; ok && i < n_ns; i++) {
        x->ns[i].prefix = strdup(ns[i].prefix);
        x->ns[i].uri = strdup(ns[i].uri);
        x->n_ns = i + 1;
        ok = x->ns[i].prefix && x->ns[i].uri;
    }
    if (!ok) {
        xmlXPathFreeCompExpr(comp);
        if (x)
            x->comp = NULL;
        cg_xml_xpath_free(x);
        cg_error_set(err, CG_ERR_NOMEM, "", 0, 0, "out of memory");
        return NULL;
    }
    x->comp = comp;
    x->ns_sig = ns_signature(x->ns, x->n_ns);
    /* CG_XML_XPATH=libxml2 in the environment turns the fast path off, to compare or to rule
     * it out; out of memory here only means libxml2 evaluates */
    const char *env = getenv("CG_XML_XPATH");
    if (!(flags & CG_XML_XPATH_LIBXML2) && !(env && !strcmp(env, "libxml2")))
        x->fx = cg_xml__fx_compile(text, ns, n_ns);
    return x;
}

void cg_xml_xpath_free(cg_xml_xpath_t *x)
{
    if (!x)
        return;
    if (x->comp)
        xmlXPathFreeCompExpr(x->comp);
    cg_xml__fx_free(x->fx);
    for (size_t i = 0; i < x->n_ns; i++) {
        free((char *)x->ns[i].prefix);
        free((char *)x->ns[i].uri);
    }
    free(x->ns);
    free(x->text);
    free(x);
}

const char *cg_xml_xpath_text(const cg_xml_xpath_t *x)
{
    return x ? x->text : "";
}

int cg_xml_xpath_is_fast(const cg_xml_xpath_t *x)
{
    return x && x->fx;
}

cg_xml_eval_t *cg_xml_eval_new(void)
{
    cg_xml_eval_t *ev = calloc(1, sizeof(*ev));
    if (!ev)
        return NULL;
    ev->ctx = xmlXPathNewContext(NULL);
    if (!ev->ctx) {
        free(ev);
        return NULL;
    }
    ev->ctx->error = quiet_error;
    /* reuse result objects rather than malloc them per evaluation */
    xmlXPathContextSetCache(ev->ctx, 1, 100, 0);
    register_ns(ev->ctx, NULL, 0);
    cg_buf_init(&ev->buf);
    return ev;
}

void cg_xml_eval_destroy(cg_xml_eval_t *ev)
{
    if (!ev)
        return;
    xmlResetError(&ev->ctx->lastError);
    xmlXPathFreeContext(ev->ctx);
    cg_buf_free(&ev->buf);
    free(ev->ids);
    free(ev->nodev);
    free(ev);
}

void cg_xml_eval_bind(cg_xml_eval_t *ev, cg_xml_doc_t *d)
{
    ev->doc = d ? (xmlDocPtr)cg_xml_doc_tree(d) : NULL;
    ev->ctx->doc = ev->doc;
    ev->ctx->node = (xmlNodePtr)ev->doc;
    ev->n_ids = 0;
    ev->ids_built = 0;
}

/* Evaluates x at node; the caller frees the result (xmlXPathFreeObject) before returning. */
static xmlXPathObjectPtr run(cg_xml_eval_t *ev, const cg_xml_xpath_t *x, const void *node)
{
    if (!ev->doc || !x)
        return NULL;
    if (x->ns_sig != ev->ns_sig) {
        register_ns(ev->ctx, x->ns, x->n_ns);
        ev->ns_sig = x->ns_sig;
    }
    /* relative paths of a whole-document rule start at the root element: hl7:recordTarget/… */
    ev->ctx->node = node ? (xmlNodePtr)node : xmlDocGetRootElement(ev->doc);
    if (!ev->ctx->node)
        ev->ctx->node = (xmlNodePtr)ev->doc;
    ev->ctx->contextSize = -1;
    ev->ctx->proximityPosition = -1;
    xmlXPathObjectPtr r = xmlXPathCompiledEval(x->comp, ev->ctx);
    if (!r)
        xmlResetError(&ev->ctx->lastError); /* an evaluation error reads as no value */
    return r;
}

/* Whether text has anything but XML white space. */
static int has_text(const xmlChar *s)
{
    for (; s && *s; s++)
        if (*s != ' ' && *s != '\t' && *s != '\n' && *s != '\r')
            return 1;
    return 0;
}

/* The value of one node into *out; 0 when it has none. Attribute values and single text nodes
 * are read in place; elements with structure are gathered into ev->buf. */
static int node_value(cg_xml_eval_t *ev, const xmlNode *n, cg_slice_t *out)
{
    switch (n->type) {
    case XML_ATTRIBUTE_NODE: {
        const xmlNode *t = n->children;
        if (t && !t->next && t->type == XML_TEXT_NODE) {
            const char *s = (const char *)t->content;
            size_t len = s ? strlen(s) : 0;
            *out = (cg_slice_t){s, len};
            return len > 0;
        }
        break;
    }
    case XML_TEXT_NODE:
    case XML_CDATA_SECTION_NODE:
        if (!has_text(n->content))
            return 0;
        break;
    case XML_ELEMENT_NODE:
        if (!n->children) /* <value nullFlavor="UNK"/>, <x/>: no value */
            return 0;
        break;
    default:
        break;
    }
    size_t start = ev->buf.len;
    cg_xml_node_text(n, &ev->buf);
    if (ev->buf.failed || ev->buf.len == start)
        return 0;
    *out = (cg_slice_t){ev->buf.data + start, ev->buf.len - start};
    return 1;
}

/* Non-node-set results as their XPath string values, into ev->buf. */
static int scalar_value(cg_xml_eval_t *ev, xmlXPathObjectPtr r, cg_slice_t *out)
{
    xmlChar *s = xmlXPathCastToString(r);
    if (!s)
        return 0;
    size_t len = strlen((const char *)s), start = ev->buf.len;
    cg_buf_append(&ev->buf, s, len);
    xmlFree(s);
    if (!len || ev->buf.failed)
        return 0;
    *out = (cg_slice_t){ev->buf.data + start, len};
    return 1;
}

/* Runs x's fast program at node (as run() picks the context) with emit. */
static void fx_run(cg_xml_eval_t *ev, const cg_xml_xpath_t *x, const void *node, fx_emit_fn emit,
                   void *arg)
{
    if (!ev->doc)
        return;
    const xmlNode *ctx = (const xmlNode *)ev->doc;
    if (!cg_xml__fx_absolute(x->fx)) {
        ctx = node ? (const xmlNode *)node : xmlDocGetRootElement(ev->doc);
        if (!ctx)
            ctx = (const xmlNode *)ev->doc;
    }
    cg_xml__fx_run(x->fx, ctx, emit, arg);
}

typedef struct fx_values {
    cg_xml_eval_t *ev;
    cg_slice_t *out;
    cg_buf_t *into;
    char sep;
    size_t count;
} fx_values_t;

/* the first node that has a value ends the walk */
static int fx_emit_value(void *arg, const xmlNode *n)
{
    fx_values_t *v = arg;
    if (!node_value(v->ev, n, v->out))
        return 0;
    v->count = 1;
    return 1;
}

static int fx_emit_values(void *arg, const xmlNode *n)
{
    fx_values_t *v = arg;
    cg_slice_t s;
    cg_buf_reset(&v->ev->buf);
    if (node_value(v->ev, n, &s)) {
        if (v->count++)
            cg_buf_putc(v->into, v->sep);
        cg_buf_append(v->into, s.ptr, s.len);
    }
    return 0;
}

/* into ev->nodev; out of memory stops the walk, and count 0 says so */
static int fx_emit_node(void *arg, const xmlNode *n)
{
    fx_values_t *v = arg;
    cg_xml_eval_t *ev = v->ev;
    if (v->count == ev->cap_nodev) {
        size_t cap = ev->cap_nodev ? ev->cap_nodev * 2 : 64;
        void **nv = realloc(ev->nodev, cap * sizeof(*nv));
        if (!nv) {
            v->count = 0;
            return 1;
        }
        ev->nodev = nv;
        ev->cap_nodev = cap;
    }
    ev->nodev[v->count++] = (void *)n;
    return 0;
}

int cg_xml_xpath_value(cg_xml_eval_t *ev, const cg_xml_xpath_t *x, const void *node,
                       cg_slice_t *out)
{
    cg_buf_reset(&ev->buf);
    *out = (cg_slice_t){"", 0};
    if (x && x->fx) {
        fx_values_t v = {ev, out, NULL, 0, 0};
        fx_run(ev, x, node, fx_emit_value, &v);
        return v.count != 0;
    }
    xmlXPathObjectPtr r = run(ev, x, node);
    if (!r)
        return 0;
    int found = 0;
    if (r->type != XPATH_NODESET)
        found = scalar_value(ev, r, out);
    /* the first node that has a value: hl7:value[1] with nullFlavor, a second one set */
    for (int i = 0;
         r->type == XPATH_NODESET && r->nodesetval && !found && i < r->nodesetval->nodeNr; i++)
        found = node_value(ev, r->nodesetval->nodeTab[i], out);
    xmlXPathFreeObject(r);
    return found;
}

size_t cg_xml_xpath_values(cg_xml_eval_t *ev, const cg_xml_xpath_t *x, const void *node, char sep,
                           cg_buf_t *out)
{
    cg_buf_reset(&ev->buf);
    if (x && x->fx) {
        fx_values_t fv = {ev, NULL, out, sep, 0};
        fx_run(ev, x, node, fx_emit_values, &fv);
        return fv.count;
    }
    xmlXPathObjectPtr r = run(ev, x, node);
    if (!r)
        return 0;
    cg_slice_t v;
    size_t count = 0;
    if (r->type != XPATH_NODESET) {
        if (scalar_value(ev, r, &v)) {
            cg_buf_append(out, v.ptr, v.len);
            count = 1;
        }
    }
    for (int i = 0; r->type == XPATH_NODESET && r->nodesetval && i < r->nodesetval->nodeNr; i++) {
        cg_buf_reset(&ev->buf);
        if (!node_value(ev, r->nodesetval->nodeTab[i], &v))
            continue;
        if (count++)
            cg_buf_putc(out, sep);
        cg_buf_append(out, v.ptr, v.len);
    }
    xmlXPathFreeObject(r);
    return count;
}

size_t cg_xml_xpath_nodes(cg_xml_eval_t *ev, const cg_xml_xpath_t *x, const void *node,
                          void *const **nodes)
{
    static void *const none[1] = {NULL};
    *nodes = none;
    if (x && x->fx) {
        fx_values_t v = {ev, NULL, NULL, 0, 0};
        fx_run(ev, x, node, fx_emit_node, &v);
        if (v.count)
            *nodes = (void *const *)ev->nodev;
        return v.count;
    }
    xmlXPathObjectPtr r = run(ev, x, node);
    if (!r)
        return 0;
    size_t n = 0;
    if (r->type == XPATH_NODESET && r->nodesetval && r->nodesetval->nodeNr > 0) {
        n = (size_t)r->nodesetval->nodeNr;
        if (n > ev->cap_nodev) {
            void **v = realloc(ev->nodev, n * sizeof(*v));
            if (!v)
                n = 0;
            else
                ev->nodev = v, ev->cap_nodev = n;
        }
        /* namespace nodes are copies owned by r: they do not survive it */
        size_t k = 0;
        for (size_t i = 0; i < n; i++)
            if (r->nodesetval->nodeTab[i]->type != XML_NAMESPACE_DECL)
                ev->nodev[k++] = r->nodesetval->nodeTab[i];
        n = k;
        if (n)
            *nodes = (void *const *)ev->nodev;
    }
    xmlXPathFreeObject(r);
    return n;
}

static int id_cmp(const void *a, const void *b)
{
    return strcmp(((const id_entry_t *)a)->id, ((const id_entry_t *)b)->id);
}

static void collect_ids(cg_xml_eval_t *ev, const xmlNode *n)
{
    for (; n; n = n->next) {
        if (n->type != XML_ELEMENT_NODE)
            continue;
        for (const xmlAttr *a = n->properties; a; a = a->next) {
            if (strcmp((const char *)a->name, "ID") || !a->children ||
                a->children->type != XML_TEXT_NODE || !a->children->content)
                continue;
            if (ev->n_ids == ev->cap_ids) {
                size_t cap = ev->cap_ids ? ev->cap_ids * 2 : 64;
                id_entry_t *ids = realloc(ev->ids, cap * sizeof(*ids));
                if (!ids)
                    return;
                ev->ids = ids;
                ev->cap_ids = cap;
            }
            ev->ids[ev->n_ids++] = (id_entry_t){(const char *)a->children->content, n};
        }
        collect_ids(ev, n->children);
    }
}

const void *cg_xml_find_id(cg_xml_eval_t *ev, const char *id, size_t len)
{
    if (!ev->doc || !id)
        return NULL;
    if (len && id[0] == '#') {
        id++;
        len--;
    }
    if (!ev->ids_built) {
        ev->n_ids = 0;
        collect_ids(ev, xmlDocGetRootElement(ev->doc));
        if (ev->n_ids) /* ids is NULL before the first one */
            qsort(ev->ids, ev->n_ids, sizeof(*ev->ids), id_cmp);
        ev->ids_built = 1;
    }
    size_t lo = 0, hi = ev->n_ids;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strncmp(ev->ids[mid].id, id, len);
        if (c == 0 && ev->ids[mid].id[len])
            c = 1;
        if (c < 0)
            lo = mid + 1;
        else if (c > 0)
            hi = mid;
        else
            return ev->ids[mid].node;
    }
    return NULL;
}
