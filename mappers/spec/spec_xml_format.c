/* spec_xml_format.c - the xml input format (cg_spec_format.h; CDA R2 / C-CDA and vendor XML):
 * its entry in the format table, and XPath as its path language for the compiler: a spec's
 * "input" (root element, document templateIds, namespace prefixes, message_id), XPaths, and a
 * rule's foreach over nodes or C-CDA sections. Documents are mapped by spec_xml.c. */
#include "spec_compile.h"
#include "spec_mapper.h"

#include <stdio.h>
#include <string.h>

#define err_at     cg_spec_cc_err
#define alloc      cg_spec_cc_alloc
#define dup        cg_spec_cc_dup
#define check_keys cg_spec_cc_check_keys

static void free_xpath(void *x)
{
    cg_xml_xpath_free(x);
}

/* An XPath of an XML spec, with the spec's namespace prefixes. */
static const cg_xml_xpath_t *compile_xpath(cc_t *c, const json_t *at, const char *text)
{
    cg_error_t e;
    cg_xml_xpath_t *x = cg_xml_xpath_compile(text, c->spec->ns, c->spec->n_ns, &e);
    if (!x) {
        cg_spec_cc_err_in(c, at, cg_spec_cc_column(at, text, e.column), e.text);
        return NULL;
    }
    if (cg_spec_cc_own(c, free_xpath, x)) {
        cg_xml_xpath_free(x);
        err_at(c, at, NULL, NULL, "out of memory");
        return NULL;
    }
    return x;
}

static int xml_compile_path(cc_t *c, const json_t *at, expr_t *e)
{
    e->kind = EX_PATH;
    /* e->text: the path with the spec's parameters substituted */
    return (e->u.xpath = compile_xpath(c, at, e->text ? e->text : json_string_value(at))) ? 0 : -1;
}

/* An XML rule's foreach: an XPath, or {"section": KIND, "path": XPATH}, the entries of every
 * C-CDA section of that kind, found by templateId (cg_xml.h), relative path inside each. */
static const cg_xml_xpath_t *foreach_xpath(cc_t *c, json_t *rule, json_t *fe)
{
    if (json_is_string(fe))
        return compile_xpath(c, fe, json_string_value(fe));
    static const char *const keys[] = {"section", "path", NULL};
    json_t *sec = json_object_get(fe, "section"), *rel = json_object_get(fe, "path");
    if (!json_is_object(fe) || !(json_is_string(sec) || json_is_array(sec)) ||
        (rel && !json_is_string(rel))) {
        err_at(c, fe, rule, "foreach",
               "an XML 'foreach' is an XPath, or {\"section\": KIND or [KIND, …], \"path\": "
               "XPATH} for the entries of C-CDA sections");
        return NULL;
    }
    check_keys(c, fe, "'foreach'", keys);
    /* the sections' kinds: one name or several */
    const cg_xml_section_kind_t *kinds[16];
    size_t n_kinds = 0, n_names = json_is_array(sec) ? json_array_size(sec) : 1;
    int bad = n_names == 0 || n_names > 16;
    for (size_t k = 0; !bad && k < n_names; k++) {
        json_t *one = json_is_array(sec) ? json_array_get(sec, k) : sec;
        bad = !json_is_string(one) ||
              !(kinds[n_kinds++] = cg_xml_section_kind(json_string_value(one)));
    }
    if (bad) {
        char known[512] = "";
        size_t n, len = 0;
        const cg_xml_section_kind_t *all = cg_xml_section_kinds(&n);
        for (size_t k = 0; k < n && len < sizeof(known) - 40; k++)
            len += (size_t)snprintf(known + len, sizeof(known) - len, "%s%s", k ? ", " : "",
                                    all[k].name);
        err_at(c, sec, fe, "section", "unknown section kind (known: %s)", known);
        return NULL;
    }
    cg_buf_t b;
    cg_buf_init(&b);
    cg_buf_puts(&b, "/hl7:ClinicalDocument/hl7:component/hl7:structuredBody/hl7:component/"
                    "hl7:section[hl7:templateId[");
    const char *sep = "";
    for (size_t k = 0; k < n_kinds; k++)
        for (size_t t = 0; kinds[k]->template_roots[t]; t++, sep = " or ")
            cg_buf_printf(&b, "%s@root='%s'", sep, kinds[k]->template_roots[t]);
    cg_buf_puts(&b, "]]");
    if (rel) {
        cg_buf_putc(&b, '/');
        cg_buf_puts(&b, json_string_value(rel));
    }
    const cg_xml_xpath_t *x = NULL;
    if (b.failed) {
        err_at(c, fe, NULL, NULL, "out of memory");
    } else {
        cg_error_t e;
        cg_xml_xpath_t *own = cg_xml_xpath_compile(b.data, c->spec->ns, c->spec->n_ns, &e);
        if (!own)
            err_at(c, rel ? rel : fe, NULL, NULL, "%s", e.text);
        else if (cg_spec_cc_own(c, free_xpath, own))
            cg_xml_xpath_free(own);
        else
            x = own;
    }
    cg_buf_free(&b);
    return x;
}

static void xml_compile_foreach(cc_t *c, json_t *rule, json_t *fe, rule_t *r)
{
    r->xforeach = foreach_xpath(c, rule, fe);
}

/* "input" of an XML spec: which documents (root element, templateIds), namespace prefixes for
 * its XPaths, and optionally what names a document in row ids. */
static void xml_compile_input(cc_t *c, json_t *in, spec_t *s)
{
    static const char *const keys[] = {"format",     "root",       "documents", "when",
                                       "namespaces", "message_id", NULL};
    check_keys(c, in, "\"input\" of an xml spec", keys);
    json_t *ns = json_object_get(in, "namespaces");
    if (ns && !json_is_object(ns)) {
        err_at(c, ns, in, "namespaces", "\"namespaces\" is an object of prefix: URI");
    } else if (ns) {
        s->ns = alloc(c, (json_object_size(ns) + 1) * sizeof(*s->ns));
        const char *k;
        json_t *v;
        json_object_foreach(ns, k, v)
        {
            if (!json_is_string(v) || !*k) {
                err_at(c, v, ns, k, "a namespace prefix maps to a URI string");
                continue;
            }
            s->ns[s->n_ns].prefix = dup(c, k, strlen(k));
            s->ns[s->n_ns++].uri = dup(c, json_string_value(v), json_string_length(v));
        }
    }
    json_t *root = json_object_get(in, "root");
    if (root && (!json_is_string(root) || !json_string_length(root)))
        err_at(c, root, in, "root", "\"root\" is the root element's local name");
    s->xml_root = root && json_is_string(root)
                      ? dup(c, json_string_value(root), json_string_length(root))
                      : "ClinicalDocument";
    json_t *docs = json_object_get(in, "documents");
    if (docs) {
        if (!json_is_array(docs) || !json_array_size(docs)) {
            err_at(c, docs, in, "documents",
                   "\"documents\" lists document templateId roots, such as "
                   "\"2.16.840.1.113883.10.20.22.1.2\" (CCD)");
        } else {
            s->doc_templates = alloc(c, json_array_size(docs) * sizeof(*s->doc_templates));
            size_t i;
            json_t *d;
            json_array_foreach(docs, i, d)
            {
                if (!json_is_string(d) || !json_string_length(d))
                    err_at(c, d, NULL, NULL, "a document templateId root is a string (an OID)");
                else
                    s->doc_templates[s->n_doc_templates++] =
                        dup(c, json_string_value(d), json_string_length(d));
            }
        }
    }
    json_t *mid = json_object_get(in, "message_id");
    if (mid)
        s->message_id = c->expr(c, mid);
}

/* First in sniffing order (spec_formats.c): an XML document starts with '<' (after a BOM and
 * white space), which no HL7 v2 message does. */
const cg_spec_format_t cg_spec_format_xml = {
    .name = "xml",
    .format = CG_INPUT_XML,
    .sniff = cg_xml_sniff,
    .map = cg_mapper_map_xml,
    .compile_input = xml_compile_input,
    .compile_path = xml_compile_path,
    .compile_foreach = xml_compile_foreach,
    .path_hint = "'path' takes an XPath such as \"hl7:code/@code\"",
    .on_error_entry = 1,
    .documents = 1,
    .run_rule = cg_spec_xml_run_rule,
    .path_value = cg_spec_xml_path_value,
    .reference = cg_spec_xml_reference,
};
