/* cg_xml.h - XML clinical documents (HL7 CDA R2 / C-CDA, vendor XML): hardened decoding and XPath.
 *
 * cg_xml_parse() reads one document from memory with libxml2, with the network off, no DTD
 * loading, no external entities and no entity expansion; a DOCTYPE that declares entities is
 * refused (XXE, billion laughs). The declared encoding (UTF-8, GB18030/GBK, ISO-8859-1 …) is
 * converted to UTF-8 by libxml2/iconv; bytes invalid in it are an error, never mojibake. Size and
 * depth have limits with defaults. The tree is read-only: it is built for reading values, with
 * indentation and comments left out (cg_xml_options_t.keep_blank_text).
 *
 * XPath 1.0 expressions are compiled once (cg_xml_xpath_compile) with namespace prefixes, and
 * evaluated against a parsed document many times. A cg_xml_doc_t and a cg_xml_eval_t are one per
 * thread; a compiled cg_xml_xpath_t is read-only and may be shared.
 */
#ifndef CG_XML_H
#define CG_XML_H

#include <stddef.h>
#include <stdint.h>

#include "cg_buf.h"
#include "cg_err.h"

typedef struct cg_xml_options {
    size_t max_bytes;   /* largest document; default 64 MiB */
    unsigned max_depth; /* deepest element nesting; default 256 */
    /* most attributes of one element (namespace declarations included); default 256. Checked
     * before parsing: libxml2 spends quadratic time on an element's attributes */
    unsigned max_attributes;
    /* most nodes in one document: elements, attributes and text nodes; default 1,000,000. The
     * tree takes ~140 bytes an element and ~250 an attribute, so this bounds a parse's memory
     * (a C-CDA averages ~29 bytes of document a node: 1,000,000 nodes is a ~29 MB document) */
    unsigned long max_nodes;
    /* Encoding of documents without an XML declaration's encoding and without a BOM, as an
     * iconv name ("GB18030"); NULL or "" for UTF-8 (the XML default). Copied by cg_xml_doc_new. */
    const char *default_encoding;
    /* 0 (the default): white-space-only text between the children of HL7 v3 (urn:hl7-org:v3)
     * elements with element-only content is not kept, nor are comments and processing
     * instructions; 1 keeps every text node. Blank text is always kept outside that namespace
     * (vendor XML), under xml:space="preserve", and in the subtrees of the HL7 elements whose
     * data types allow mixed content: text (section narrative, ED), title, value,
     * originalText, name, addr, desc, lotNumberText, signatureText, thumbnail, softwareName,
     * manufacturerModelName. Values read by specs are the same either way; only the text
     * content of a structural element (an observation as a whole) and XPath text() steps over
     * that indentation can differ. Comments between two pieces of text leave one text node. */
    int keep_blank_text;
} cg_xml_options_t;

void cg_xml_options_default(cg_xml_options_t *o);

/* Decoding and XPath errors are cg_error_t (cg_err.h) located CG_ERROR_AT_XML (line and column in
 * the document, when known); codes CG_ERR_XML, CG_ERR_CHARSET, CG_ERR_NOMEM. */

/* 1 when buf looks like an XML document: after an optional UTF-8 BOM and white space, '<'; in
 * UTF-16 too (LE or BE, with a BOM or without one). HL7 v2 starts with MSH/FHS/BHS (or MLLP
 * 0x0B), so this tells the two formats apart. */
int cg_xml_sniff(const char *buf, size_t len);

typedef struct cg_xml_doc cg_xml_doc_t;

/* A reusable parser and the last document it parsed. NULL on allocation failure. */
cg_xml_doc_t *cg_xml_doc_new(const cg_xml_options_t *opts);
/* NULL-safe. */
void cg_xml_doc_destroy(cg_xml_doc_t *d);
/* Parses buf (one document). On success the previous document is freed and this one kept until
 * the next parse; on failure *err says why (line and column when libxml2 knows them). */
cg_err_t cg_xml_parse(cg_xml_doc_t *d, const char *buf, size_t len, cg_error_t *err);
/* libxml2's tree of the last successful parse (an xmlDocPtr), or NULL. */
void *cg_xml_doc_tree(const cg_xml_doc_t *d);
/* Its root element (an xmlNodePtr), or NULL. */
void *cg_xml_doc_root(const cg_xml_doc_t *d);

/* C-CDA sections, named for specs ("problems", "results", "vital_signs", "medications",
 * "encounters", "allergies", "immunizations", …) and found by templateId, never by title. */
typedef struct cg_xml_section_kind {
    const char *name;
    const char *const *template_roots; /* NULL-terminated: the entries-required and -optional ids */
} cg_xml_section_kind_t;

/* The section kind named name, or NULL. */
const cg_xml_section_kind_t *cg_xml_section_kind(const char *name);
/* The kind whose template_roots holds root, or NULL. */
const cg_xml_section_kind_t *cg_xml_section_kind_of(const char *root, size_t len);
/* Every kind, in a fixed order; *n gets the count. */
const cg_xml_section_kind_t *cg_xml_section_kinds(size_t *n);

/* The compact summary `cohortgate parse` prints for a document, as one JSON object:
 * {"root":"ClinicalDocument","namespace":"urn:hl7-org:v3","templateIds":["2.16…",…],
 *  "id":"root^extension","sections":[{"kind":"problems","templateIds":[…],"title":"…",
 *  "entries":3},…]} (sections in document order; kind null when unknown). Appended to out. */
cg_err_t cg_xml_summary(const cg_xml_doc_t *d, cg_buf_t *out);

/* Namespace prefixes for XPath. hl7 = urn:hl7-org:v3, sdtc = urn:hl7-org:sdtc and xsi =
 * http://www.w3.org/2001/XMLSchema-instance are always declared; a spec may add more. */
typedef struct cg_xml_ns {
    const char *prefix;
    const char *uri;
} cg_xml_ns_t;

typedef struct cg_xml_xpath cg_xml_xpath_t;

/* Compiles an XPath 1.0 expression. ns (n_ns entries, may be 0) adds prefixes to the defaults;
 * an undeclared prefix is a compile error. On error returns NULL and sets *err with the column
 * (1-based, in text) where the expression went wrong; the caller adds file and line. */
cg_xml_xpath_t *cg_xml_xpath_compile(const char *text, const cg_xml_ns_t *ns, size_t n_ns,
                                     cg_error_t *err);
/* As cg_xml_xpath_compile, with flags. CG_XML_XPATH_LIBXML2: always evaluate with libxml2.
 * Without it, the location paths specs use (child, '..', descendant:: and // steps with name
 * tests, a final @attr or text(), predicates [n], [path], [path/@a='lit'], not(), and, or) are
 * evaluated by a walk of the tree with the same results, and everything else by libxml2. The
 * environment variable CG_XML_XPATH=libxml2 sets the flag for every compilation (diagnosis). */
#define CG_XML_XPATH_LIBXML2 1u
cg_xml_xpath_t *cg_xml_xpath_compile_opts(const char *text, const cg_xml_ns_t *ns, size_t n_ns,
                                          unsigned flags, cg_error_t *err);
/* 1 when x is evaluated by the fast walk rather than libxml2 (tests). */
int cg_xml_xpath_is_fast(const cg_xml_xpath_t *x);
void cg_xml_xpath_free(cg_xml_xpath_t *x);
/* The source text. */
const char *cg_xml_xpath_text(const cg_xml_xpath_t *x);

/* Per-thread evaluation state bound to one parsed document at a time. */
typedef struct cg_xml_eval cg_xml_eval_t;
cg_xml_eval_t *cg_xml_eval_new(void);
void cg_xml_eval_destroy(cg_xml_eval_t *ev);
/* Binds ev to d's current document (call after each cg_xml_parse). */
void cg_xml_eval_bind(cg_xml_eval_t *ev, cg_xml_doc_t *d);

/* The string value of x evaluated at node (an xmlNodePtr; NULL for the root element, so that
 * "hl7:recordTarget/…" reads from ClinicalDocument and "/hl7:ClinicalDocument/…" works too):
 * for a node set, its first node's value — an attribute's value, an element's text content; an
 * element with @nullFlavor and no text, or an empty value, is absent; for a string, number or
 * boolean result, its XPath string value. Returns 1 and sets *out (valid until the next eval
 * call on ev, or a copy appended to into when into is not NULL) when present, 0 when absent. */
int cg_xml_xpath_value(cg_xml_eval_t *ev, const cg_xml_xpath_t *x, const void *node,
                       cg_slice_t *out);
/* Every value (as above) of x at node, joined with sep, appended to out; returns how many. */
size_t cg_xml_xpath_values(cg_xml_eval_t *ev, const cg_xml_xpath_t *x, const void *node, char sep,
                           cg_buf_t *out);
/* The nodes x selects at node, in document order: *nodes (valid until the next eval call on ev)
 * and the count. A non-node-set result gives 0. */
size_t cg_xml_xpath_nodes(cg_xml_eval_t *ev, const cg_xml_xpath_t *x, const void *node,
                          void *const **nodes);

/* The element with attribute ID="id" (CDA narrative references: originalText/reference/@value
 * "#id"), or NULL; the leading '#' is optional. Its text content is what a reference means. */
const void *cg_xml_find_id(cg_xml_eval_t *ev, const char *id, size_t len);
/* An element's text content with white space runs collapsed, into out (appended); 0 if none. */
size_t cg_xml_node_text(const void *node, cg_buf_t *out);
/* Where an element is, for reports that must not quote the document: its path from the root
 * by local names, with [n] where same-named siblings make it ambiguous ("/ClinicalDocument/
 * component/structuredBody/component[3]/section/entry[2]/encounter"), written to buf (cut at
 * size); returns the length it needed. */
size_t cg_xml_node_path(const void *node, char *buf, size_t size);
/* The line an element starts on in its document; 0 when unknown. */
int cg_xml_node_line(const void *node);

#endif
