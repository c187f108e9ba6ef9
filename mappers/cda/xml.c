/* xml.c - the hardened XML decoder and format sniffing (cg_xml.h). XPath lives in
 * xml_xpath.c, the text of a node in xml_node.c, C-CDA section kinds and the document summary
 * in ccda_sections.c.
 *
 * libxml2 parses from memory with a fresh parser context per document, built with its tree in a
 * per-document arena (xml_arena.c): malloc/free were a third of the parse, and
 * dropping a tree is one reset instead of a free per node. Hardening is done on the context's own
 * SAX table rather than on process-wide hooks (other threads parse too): a declared entity, an
 * entity reference that is not predefined, or nesting past the depth limit stops the parser;
 * external subsets and entities are never resolved; XML_PARSE_NONET is on, and NOENT, DTDLOAD,
 * DTDATTR and HUGE are off. Errors go to a structured handler, never to stderr.
 */
#include "cg_xml.h"
#include "xml_arena.h"
#include "xml_attrs.h"

#include <errno.h>
#include <iconv.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/SAX2.h>
#include <libxml/dict.h>
#include <libxml/encoding.h>
#include <libxml/entities.h>
#include <libxml/parser.h>
#include <libxml/parserInternals.h>
#include <libxml/globals.h>
#include <libxml/tree.h>
#include <libxml/valid.h>
#include <libxml/xmlerror.h>
#include <libxml/xmlmemory.h>

#define CG_XML_DEFAULT_MAX_BYTES ((size_t)64 << 20)
#define CG_XML_DEFAULT_MAX_DEPTH 256u
#define CG_XML_DEFAULT_MAX_ATTRS 256u
#define CG_XML_DEFAULT_MAX_NODES 1000000ul

/* NOCDATA: CDATA becomes plain text, so a value reads the same either way. COMPACT: short text
 * lives inside its node (fewer mallocs). BIG_LINES: line numbers past 65535 stay right for
 * located errors. Blank text nodes are kept: narrative mixed content needs its spaces. */
#define CG_XML_PARSE_OPTIONS                                                                       \
    (XML_PARSE_NONET | XML_PARSE_NOCDATA | XML_PARSE_COMPACT | XML_PARSE_BIG_LINES)

struct cg_xml_doc {
    cg_xml_options_t opts;
    char *default_encoding; /* owned copy; NULL for UTF-8 */
    int default_unknown;    /* libxml2 has no converter for it (it would silently read UTF-8) */
    xmlDocPtr doc;
    xml_arena_t arenas[2]; /* the current document's and the next parse's (a failure keeps doc) */
    int cur;               /* arenas[cur] holds doc */
    int doc_in_arena;
    /* state of the parse under way */
    cg_error_t first; /* first error worth reporting */
    int have_error;
    int first_fatal;     /* first is a fatal error (or our refusal) */
    int refused;         /* we stopped the parser: the result is discarded */
    int charset;         /* an encoding conversion failed (libxml2 says where only vaguely) */
    unsigned depth;      /* open elements */
    unsigned long nodes; /* elements, attributes and text nodes so far (max_nodes) */
    unsigned keep_depth; /* depth of the outermost open element whose blank text is kept; 0 none */
    const xmlChar *hl7_uri; /* the dictionary's copy of urn:hl7-org:v3 in this parse, once seen */
};

void cg_xml_options_default(cg_xml_options_t *o)
{
    o->max_bytes = CG_XML_DEFAULT_MAX_BYTES;
    o->max_depth = CG_XML_DEFAULT_MAX_DEPTH;
    o->max_attributes = CG_XML_DEFAULT_MAX_ATTRS;
    o->max_nodes = CG_XML_DEFAULT_MAX_NODES;
    o->default_encoding = NULL;
    o->keep_blank_text = 0;
}

int cg_xml_sniff(const char *buf, size_t len)
{
    const unsigned char *p = (const unsigned char *)buf, *end = p + len;
    if (!buf)
        return 0;
    /* UTF-16 (with a BOM, or without one as XML's appendix F detects it: '<' as a 16-bit unit);
     * libxml2 decodes it: only the first character is looked at here */
    int lo = -1; /* the byte of a 16-bit unit that holds an ASCII character: 0 LE, 1 BE */
    if (len >= 2 && p[0] == 0xFF && p[1] == 0xFE)
        lo = 0, p += 2;
    else if (len >= 2 && p[0] == 0xFE && p[1] == 0xFF)
        lo = 1, p += 2;
    else if (len >= 2 && p[0] == '<' && p[1] == 0)
        lo = 0;
    else if (len >= 2 && p[0] == 0 && p[1] == '<')
        lo = 1;
    if (lo >= 0) {
        for (; p + 1 < end && !p[!lo]; p += 2)
            if (p[lo] != ' ' && p[lo] != '\t' && p[lo] != '\r' && p[lo] != '\n')
                return p[lo] == '<';
        return 0;
    }
    if (len >= 3 && p[0] == 0xEF && p[1] == 0xBB && p[2] == 0xBF)
        p += 3;
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n'))
        p++;
    return p < end && *p == '<';
}

/* ---- errors ---------------------------------------------------------------------------- */

/* Copies a libxml2 message into reason as one line: its line breaks become "; ", the trailing
 * one goes. */
static void copy_message(char *dst, size_t size, const char *msg)
{
    size_t n = 0;
    for (const char *s = msg ? msg : "unknown error"; *s && n + 3 < size; s++) {
        if (*s == '\n') {
            if (s[1] && n)
                dst[n++] = ';', dst[n++] = ' ';
            continue;
        }
        dst[n++] = *s;
    }
    while (n && dst[n - 1] == ' ')
        n--;
    dst[n] = '\0';
}

static void set_error(cg_error_t *e, cg_err_t code, int line, int column, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void set_error(cg_error_t *e, cg_err_t code, int line, int column, const char *fmt, ...)
{
    e->code = code;
    e->line = line;
    e->column = column;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->text, sizeof(e->text), fmt, ap);
    va_end(ap);
}

static int is_charset_error(const xmlError *e)
{
    if (e->domain == XML_FROM_I18N || (e->domain == XML_FROM_IO && e->code == XML_IO_ENCODER))
        return 1;
    switch (e->code) {
    case XML_ERR_UNKNOWN_ENCODING:
    case XML_ERR_UNSUPPORTED_ENCODING:
    case XML_ERR_INVALID_ENCODING:
        return 1;
    case XML_ERR_INVALID_CHAR: /* also a control character in valid UTF-8: only the UTF-8 one */
        return e->message && strstr(e->message, "not proper UTF-8") != NULL;
    default:
        return 0;
    }
}

/* Whether hex (libxml2's "Char 0x%X out of allowed range") is a surrogate or past U+10FFFF. */
static int out_of_unicode(const char *hex)
{
    unsigned long v = strtoul(hex, NULL, 16);
    return (v >= 0xD800 && v <= 0xDFFF) || v > 0x10FFFF;
}

/* Keeps the first error that explains the failure: our own refusal, else the first fatal
 * error, else the first error. Warnings and namespace errors (an undeclared prefix leaves the
 * document well-formed) are not failures. */
static void record(cg_xml_doc_t *d, const xmlError *e)
{
    if (e->code == XML_WAR_UNDECLARED_ENTITY) {
        /* a DOCTYPE with an external subset (never loaded) could be where it is declared;
         * libxml2 goes on without it, which would drop text silently */
        if (!d->refused) {
            d->refused = 1;
            d->have_error = d->first_fatal = 1;
            set_error(&d->first, CG_ERR_XML, e->line, e->int2,
                      "entity '%s' is not declared and external DTDs are never loaded; refused",
                      e->str1 ? e->str1 : "?");
        }
        return;
    }
    if (e->level < XML_ERR_ERROR)
        return;
    if (e->domain == XML_FROM_I18N || (e->domain == XML_FROM_IO && e->code == XML_IO_ENCODER)) {
        d->charset = 1; /* located afterwards by find_bad_bytes */
        return;
    }
    if (e->domain == XML_FROM_NAMESPACE || d->refused)
        return;
    int fatal = e->level == XML_ERR_FATAL;
    if (d->have_error && (d->first_fatal || !fatal))
        return;
    d->have_error = 1;
    d->first_fatal = fatal;
    d->first.line = e->line;
    d->first.column = e->int2;
    if (e->code == XML_ERR_NO_MEMORY) {
        d->first.code = CG_ERR_NOMEM;
        snprintf(d->first.text, sizeof(d->first.text), "out of memory");
    } else if (e->code == XML_ERR_INVALID_CHAR && is_charset_error(e)) {
        const char *bytes = strstr(e->message, "Bytes:");
        char shown[64];
        copy_message(shown, sizeof(shown), bytes ? bytes + 7 : "?");
        d->first.code = CG_ERR_CHARSET;
        snprintf(d->first.text, sizeof(d->first.text), "bytes not valid in UTF-8 (%s)", shown);
    } else if (e->code == XML_ERR_INVALID_CHAR && e->message &&
               !strncmp(e->message, "Char 0x", 7) && out_of_unicode(e->message + 7)) {
        /* libxml2 decodes UTF-8 surrogates and values past U+10FFFF before objecting: those
         * bytes are invalid UTF-8, not a misplaced character */
        d->first.code = CG_ERR_CHARSET;
        snprintf(d->first.text, sizeof(d->first.text),
                 "bytes not valid in UTF-8 (they encode U+%lX, which is not a character)",
                 strtoul(e->message + 7, NULL, 16));
    } else if (e->message && strstr(e->message, "Excessive depth")) {
        d->first.code = CG_ERR_XML;
        snprintf(d->first.text, sizeof(d->first.text),
                 "elements nested deeper than %u (libxml2's limit)", xmlParserMaxDepth);
    } else {
        d->first.code = is_charset_error(e) ? CG_ERR_CHARSET : CG_ERR_XML;
        copy_message(d->first.text, sizeof(d->first.text), e->message);
    }
}

/* Parser errors arrive with the context (its userData); errors raised without one (encoding
 * conversion) through the thread's handler, which cg_xml_parse points at the doc meanwhile. */
static void on_ctxt_error(void *user, xmlErrorPtr e)
{
    xmlParserCtxtPtr c = user;
    if (c && c->_private && e)
        record(c->_private, e);
}

static void on_thread_error(void *user, xmlErrorPtr e)
{
    if (user && e)
        record(user, e);
}

/* Stops the parser with our reason at the current input position. */
static void refuse(xmlParserCtxtPtr c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void refuse(xmlParserCtxtPtr c, const char *fmt, ...)
{
    cg_xml_doc_t *d = c->_private;
    if (!d->refused) {
        d->refused = 1;
        d->have_error = d->first_fatal = 1;
        d->first.code = CG_ERR_XML;
        d->first.line = c->input ? c->input->line : 0;
        d->first.column = c->input ? c->input->col : 0;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(d->first.text, sizeof(d->first.text), fmt, ap);
        va_end(ap);
    }
    xmlStopParser(c);
}

/* ---- SAX hooks -------------------------------------------------------------------------- */

static void on_entity_decl(void *ctx, const xmlChar *name, int type, const xmlChar *public_id,
                           const xmlChar *system_id, xmlChar *content)
{
    (void)type, (void)public_id, (void)system_id, (void)content;
    refuse(ctx, "DOCTYPE declares entities ('%s'); refused (XXE/entity expansion)",
           (const char *)name);
}

static void on_unparsed_entity_decl(void *ctx, const xmlChar *name, const xmlChar *public_id,
                                    const xmlChar *system_id, const xmlChar *notation)
{
    (void)public_id, (void)system_id, (void)notation;
    on_entity_decl(ctx, name, 0, NULL, NULL, NULL);
}

/* Only the five predefined entities exist: nothing declared can be looked up, even if a
 * declaration slipped past on_entity_decl. */
static xmlEntityPtr on_get_entity(void *ctx, const xmlChar *name)
{
    (void)ctx;
    return xmlGetPredefinedEntity(name);
}

static xmlEntityPtr on_get_parameter_entity(void *ctx, const xmlChar *name)
{
    (void)ctx, (void)name;
    return NULL;
}

static void on_reference(void *ctx, const xmlChar *name)
{
    refuse(ctx, "entity reference '&%s;' refused: entities are never expanded", (const char *)name);
}

static xmlParserInputPtr on_resolve_entity(void *ctx, const xmlChar *public_id,
                                           const xmlChar *system_id)
{
    (void)ctx, (void)public_id, (void)system_id;
    return NULL; /* never fetch anything a document names */
}

static void on_external_subset(void *ctx, const xmlChar *name, const xmlChar *external_id,
                               const xmlChar *system_id)
{
    (void)ctx, (void)name, (void)external_id, (void)system_id; /* never loaded */
}

static const char hl7_ns[] = "urn:hl7-org:v3";
static const char xml_ns[] = "http://www.w3.org/XML/1998/namespace";

/* HL7 v3 elements whose data types allow mixed content (ED, ST, EN/PN/ON/TN, AD, the narrative
 * block): white space between their children is part of their text ("<given>Jo</given>
 * <family>Li</family>" reads "Jo Li"), so their subtrees keep every blank text node. Called for
 * every element: a switch on the first letter saves most comparisons. */
static int is_mixed_content(const char *n)
{
    switch (n[0]) {
    case 't':
        return !strcmp(n, "text") || !strcmp(n, "title") || !strcmp(n, "thumbnail");
    case 'v':
        return !strcmp(n, "value");
    case 'o':
        return !strcmp(n, "originalText");
    case 'n':
        return !strcmp(n, "name");
    case 'a':
        return !strcmp(n, "addr");
    case 'd':
        return !strcmp(n, "desc");
    case 'l':
        return !strcmp(n, "lotNumberText");
    case 's':
        return !strcmp(n, "signatureText") || !strcmp(n, "softwareName");
    case 'm':
        return !strcmp(n, "manufacturerModelName");
    default:
        return 0;
    }
}

/* Whether an element's blank text children are kept: anything outside the HL7 v3 namespace
 * (vendor XML, extensions), the mixed-content HL7 elements, and xml:space="preserve". The
 * namespace URI comes from the parser's dictionary: the one pointer seen last is remembered. */
static int keeps_blanks(cg_xml_doc_t *d, const xmlChar *localname, const xmlChar *uri,
                        int nb_attributes, const xmlChar **attributes)
{
    if (!uri)
        return 1;
    if (uri != d->hl7_uri) {
        if (strcmp((const char *)uri, hl7_ns))
            return 1;
        d->hl7_uri = uri;
    }
    if (is_mixed_content((const char *)localname))
        return 1;
    /* attributes: localname, prefix, URI, value, end per attribute */
    for (int i = 0; i < nb_attributes; i++) {
        const xmlChar **a = attributes + 5 * i;
        if (a[2] && !strcmp((const char *)a[2], xml_ns) && !strcmp((const char *)a[0], "space"))
            return (size_t)(a[4] - a[3]) == 8 && !memcmp(a[3], "preserve", 8);
    }
    return 0;
}

static void on_start_element(void *ctx, const xmlChar *localname, const xmlChar *prefix,
                             const xmlChar *uri, int nb_namespaces, const xmlChar **namespaces,
                             int nb_attributes, int nb_defaulted, const xmlChar **attributes)
{
    xmlParserCtxtPtr c = ctx;
    cg_xml_doc_t *d = c->_private;
    /* nodeNr counts the open ancestors: this element is one deeper */
    if ((unsigned)c->nodeNr >= d->opts.max_depth) {
        refuse(c, "elements nested deeper than %u", d->opts.max_depth);
        return;
    }
    /* the tree costs about 140 bytes an element and 250 an attribute (its value is a text
     * node): a bound on nodes is a bound on memory, whatever the document's size */
    d->nodes += 1 + (unsigned)nb_attributes;
    if (d->nodes > d->opts.max_nodes) {
        refuse(c, "more than %lu nodes (elements, attributes and text; xml.max_nodes)",
               d->opts.max_nodes);
        return;
    }
    xmlSAX2StartElementNs(ctx, localname, prefix, uri, nb_namespaces, namespaces, nb_attributes,
                          nb_defaulted, attributes);
    d->depth++;
    if (!d->keep_depth && keeps_blanks(d, localname, uri, nb_attributes, attributes))
        d->keep_depth = d->depth;
}

static void on_end_element(void *ctx, const xmlChar *localname, const xmlChar *prefix,
                           const xmlChar *uri)
{
    xmlParserCtxtPtr c = ctx;
    cg_xml_doc_t *d = c->_private;
    if (d->keep_depth == d->depth)
        d->keep_depth = 0;
    if (d->depth)
        d->depth--;
    xmlSAX2EndElementNs(ctx, localname, prefix, uri);
}

/* White space between the children of HL7 v3 structural elements (observation, entry,
 * section …: element-only content in the CDA schema) is indentation: it never reaches a value,
 * and dropping those text nodes takes about half the nodes out of a typical C-CDA tree. A blank
 * chunk that continues a text node (libxml2 reports long text in pieces) is kept. */
static void on_characters(void *ctx, const xmlChar *ch, int len)
{
    xmlParserCtxtPtr c = ctx;
    cg_xml_doc_t *d = c->_private;
    if (!d->keep_depth && d->depth && !d->opts.keep_blank_text &&
        !(c->node && c->node->last && c->node->last->type == XML_TEXT_NODE)) {
        int i = 0;
        while (i < len && (ch[i] == ' ' || ch[i] == '\n' || ch[i] == '\t' || ch[i] == '\r'))
            i++;
        if (i == len)
            return;
    }
    if (!(c->node && c->node->last && c->node->last->type == XML_TEXT_NODE) &&
        ++d->nodes > d->opts.max_nodes) { /* a new text node, not a continued one */
        refuse(c, "more than %lu nodes (elements, attributes and text; xml.max_nodes)",
               d->opts.max_nodes);
        return;
    }
    xmlSAX2Characters(ctx, ch, len);
}

static xmlParserCtxtPtr new_context(cg_xml_doc_t *d)
{
    xmlParserCtxtPtr c = xmlNewParserCtxt();
    if (!c)
        return NULL;
    xmlSAXHandlerPtr sax = c->sax; /* the context's own copy of the SAX2 table */
    sax->entityDecl = on_entity_decl;
    sax->unparsedEntityDecl = on_unparsed_entity_decl;
    sax->getEntity = on_get_entity;
    sax->getParameterEntity = on_get_parameter_entity;
    sax->reference = on_reference;
    sax->resolveEntity = on_resolve_entity;
    sax->externalSubset = on_external_subset;
    sax->startElementNs = on_start_element;
    sax->endElementNs = on_end_element;
    /* one function for both, so libxml2's own blank heuristics (areBlanks) stay off */
    sax->characters = on_characters;
    sax->ignorableWhitespace = on_characters;
    /* specs never read comments or processing instructions: no nodes for them */
    sax->comment = NULL;
    sax->processingInstruction = NULL;
    sax->serror = on_ctxt_error;
    c->_private = d;
    return c;
}

/* ---- encodings -------------------------------------------------------------------------- */

/* Whether the document says its own encoding: a BOM, UTF-16/UCS-4 layout, or an encoding in
 * the XML declaration. Only then may opts->default_encoding not apply (libxml2's encoding
 * argument would override the declaration). */
static int declares_encoding(const char *buf, size_t len, char *name, size_t size)
{
    const unsigned char *p = (const unsigned char *)buf;
    if (size)
        name[0] = '\0';
    if (len >= 2 && ((p[0] == 0xFE && p[1] == 0xFF) || (p[0] == 0xFF && p[1] == 0xFE)))
        return 1;
    if (len >= 3 && p[0] == 0xEF && p[1] == 0xBB && p[2] == 0xBF)
        return 1;
    if (len >= 2 && (p[0] == 0 || p[1] == 0))
        return 1; /* UTF-16 or UCS-4 without a BOM: libxml2 detects those itself */
    if (len < 6 || memcmp(buf, "<?xml", 5) ||
        !(p[5] == ' ' || p[5] == '\t' || p[5] == '\r' || p[5] == '\n'))
        return 0;
    size_t lim = len < 512 ? len : 512, i = 5;
    const char *end = memchr(buf, '>', lim);
    if (!end)
        return 0;
    for (; buf + i + 8 < end; i++) {
        if (memcmp(buf + i, "encoding", 8))
            continue;
        const char *s = buf + i + 8;
        while (s < end && (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n'))
            s++;
        if (s >= end || *s++ != '=')
            continue;
        while (s < end && (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n'))
            s++;
        if (s >= end || (*s != '"' && *s != '\''))
            continue;
        char q = *s++;
        const char *e = memchr(s, q, (size_t)(end - s));
        if (!e)
            return 0;
        if (size) {
            size_t n = (size_t)(e - s) < size - 1 ? (size_t)(e - s) : size - 1;
            memcpy(name, s, n);
            name[n] = '\0';
        }
        return 1;
    }
    return 0;
}

static int is_utf8_name(const char *s)
{
    return !s || !*s || !strcasecmp(s, "UTF-8") || !strcasecmp(s, "UTF8");
}

/* libxml2 reports a failed conversion without a position, and its built-in decoders (ASCII)
 * not at all: the parser just sees the input end early. On the error path, convert again with
 * iconv up to the first bad byte and say where it is, in lines and characters. Returns 1 with
 * *e set when bytes are invalid or a sequence is cut by the end, 0 when enc converts cleanly
 * or iconv does not know it. */
static int find_bad_bytes(const char *buf, size_t len, const char *enc, cg_error_t *e)
{
    iconv_t cd = iconv_open("UTF-8", enc);
    if (cd == (iconv_t)-1)
        return 0;
    char *in = (char *)buf, chunk[4096];
    size_t left = len;
    int line = 1, col = 1, found = 0;
    for (;;) {
        char *out = chunk;
        size_t room = sizeof(chunk);
        size_t r = iconv(cd, &in, &left, &out, &room);
        int err = r == (size_t)-1 ? errno : 0;
        for (const char *q = chunk; q < out; q++) {
            if (*q == '\n')
                line++, col = 1;
            else if (((unsigned char)*q & 0xC0) != 0x80)
                col++; /* one per character, not per byte */
        }
        if (err == E2BIG)
            continue;
        if (err == EILSEQ || err == EINVAL) {
            size_t off = (size_t)(in - buf);
            char hex[32] = "";
            for (size_t k = 0, n = 0; k < 4 && off + k < len; k++)
                n += (size_t)snprintf(hex + n, sizeof(hex) - n, "%s0x%02X", k ? " " : "",
                                      (unsigned char)buf[off + k]);
            set_error(e, CG_ERR_CHARSET, line, col,
                      err == EINVAL ? "truncated %s sequence at the end, byte %zu (%s)"
                                    : "bytes not valid in %s at byte %zu (%s)",
                      enc, off, hex);
            found = 1;
        }
        break;
    }
    iconv_close(cd);
    return found;
}

/* Whether the encoding keeps ASCII bytes as ASCII ('>' is never a trail byte in GB18030, GBK,
 * Big5, Shift_JIS or the single-byte sets): not UTF-16/UCS-4, which start with a NUL or BOM. */
static int ascii_compatible(const char *buf, size_t len)
{
    const unsigned char *p = (const unsigned char *)buf;
    return !(len >= 2 && (p[0] == 0 || p[1] == 0 || (p[0] == 0xFE && p[1] == 0xFF) ||
                          (p[0] == 0xFF && p[1] == 0xFE)));
}

/* After the root element only white space, comments and PIs may follow, all ending in '>'.
 * libxml2 drops a multi-byte sequence cut by the end of input without a word; anything but
 * white space after the last '>' of a well-formed document is such a leftover. */
static int junk_after_end(const char *buf, size_t len)
{
    while (len && (buf[len - 1] == ' ' || buf[len - 1] == '\t' || buf[len - 1] == '\r' ||
                   buf[len - 1] == '\n'))
        len--;
    return len && buf[len - 1] != '>';
}

/* ---- documents -------------------------------------------------------------------------- */

cg_xml_doc_t *cg_xml_doc_new(const cg_xml_options_t *opts)
{
    xmlInitParser();
    cg_xml_doc_t *d = calloc(1, sizeof(*d));
    if (!d)
        return NULL;
    cg_xml_options_default(&d->opts);
    if (opts) {
        if (opts->max_bytes)
            d->opts.max_bytes = opts->max_bytes;
        if (opts->max_depth)
            d->opts.max_depth = opts->max_depth;
        if (opts->max_attributes)
            d->opts.max_attributes = opts->max_attributes;
        if (opts->max_nodes)
            d->opts.max_nodes = opts->max_nodes;
        d->opts.keep_blank_text = opts->keep_blank_text;
        if (!is_utf8_name(opts->default_encoding)) {
            d->default_encoding = strdup(opts->default_encoding);
            if (!d->default_encoding) {
                free(d);
                return NULL;
            }
        }
    }
    d->opts.default_encoding = d->default_encoding;
    if (d->default_encoding) {
        xmlCharEncodingHandlerPtr h = xmlFindCharEncodingHandler(d->default_encoding);
        d->default_unknown = !h;
        if (h)
            xmlCharEncCloseFunc(h);
    }
    return d;
}

/* Frees a tree: from an arena, the references to its dictionary (whose mutex is on the heap:
 * the document's own, and those of its ID/ref tables (xml:id) and internal-subset tables
 * (<!ELEMENT>/<!ATTLIST> declarations)), then the arena at once; otherwise node by node. */
static void drop_tree(xmlDocPtr doc, xml_arena_t *a)
{
    if (!a) {
        if (doc)
            xmlFreeDoc(doc);
        return;
    }
    if (doc) {
        cg_xml_arena_use(a); /* every xmlFree below is of arena memory: no-ops */
        if (doc->ids)
            xmlFreeIDTable(doc->ids);
        if (doc->refs)
            xmlFreeRefTable(doc->refs);
        doc->ids = doc->refs = NULL;
        if (doc->extSubset && doc->extSubset != doc->intSubset)
            xmlFreeDtd(doc->extSubset);
        if (doc->intSubset)
            xmlFreeDtd(doc->intSubset);
        doc->extSubset = doc->intSubset = NULL;
        if (doc->dict)
            xmlDictFree(doc->dict);
        cg_xml_arena_use(NULL);
    }
    cg_xml_arena_reset(a);
}

void cg_xml_doc_destroy(cg_xml_doc_t *d)
{
    if (!d)
        return;
    drop_tree(d->doc, d->doc_in_arena ? &d->arenas[d->cur] : NULL);
    cg_xml_arena_destroy(&d->arenas[0]);
    cg_xml_arena_destroy(&d->arenas[1]);
    free(d->default_encoding);
    free(d);
}

void *cg_xml_doc_tree(const cg_xml_doc_t *d)
{
    return d ? d->doc : NULL;
}

void *cg_xml_doc_root(const cg_xml_doc_t *d)
{
    return d && d->doc ? xmlDocGetRootElement(d->doc) : NULL;
}

static cg_err_t parse_doc(cg_xml_doc_t *d, const char *buf, size_t len, cg_error_t *err);

cg_err_t cg_xml_parse(cg_xml_doc_t *d, const char *buf, size_t len, cg_error_t *err)
{
    cg_error_t scratch;
    if (!err)
        err = &scratch;
    memset(err, 0, sizeof(*err));
    cg_err_t rc = parse_doc(d, buf, len, err);
    err->at = CG_ERROR_AT_XML; /* every error of a document is located in it, when known */
    return rc;
}

static cg_err_t parse_doc(cg_xml_doc_t *d, const char *buf, size_t len, cg_error_t *err)
{
    if (!d || (!buf && len)) {
        set_error(err, CG_ERR_XML, 0, 0, "no document");
        return err->code = CG_ERR_INVALID_ARG;
    }
    if (len > d->opts.max_bytes || len > INT_MAX) {
        set_error(err, CG_ERR_XML, 0, 0, "document of %zu bytes is over the limit of %zu bytes",
                  len, d->opts.max_bytes < INT_MAX ? d->opts.max_bytes : (size_t)INT_MAX);
        return err->code;
    }
    if (len == 0) {
        set_error(err, CG_ERR_XML, 0, 0, "empty document");
        return err->code;
    }
    unsigned long at =
        cg_xml__too_many_attributes((const unsigned char *)buf, len, d->opts.max_attributes);
    if (at) {
        set_error(err, CG_ERR_XML, (int)at, 0, "an element with more than %u attributes",
                  d->opts.max_attributes);
        return err->code;
    }
    char declared[64];
    const char *enc = NULL;
    if (!declares_encoding(buf, len, declared, sizeof(declared)))
        enc = d->default_encoding;
    if (enc && d->default_unknown) {
        set_error(err, CG_ERR_CHARSET, 0, 0,
                  "the document declares no encoding and the default '%s' is not one libxml2 "
                  "or iconv knows",
                  enc);
        return err->code;
    }

    memset(&d->first, 0, sizeof(d->first));
    d->have_error = d->first_fatal = d->refused = d->charset = 0;
    d->depth = d->keep_depth = 0;
    d->nodes = 0;
    d->hl7_uri = NULL;
    /* the spare arena (the current document stays readable if this parse fails) */
    xml_arena_t *arena = cg_xml_arenas_usable() ? &d->arenas[!d->cur] : NULL;
    xmlStructuredErrorFunc saved_fn = xmlStructuredError;
    void *saved_ctx = xmlStructuredErrorContext;
    xmlSetStructuredErrorFunc(d, on_thread_error);
    cg_xml_arena_use(arena);
    /* a fresh context per document: in an arena it costs a few allocations, and nothing of
     * one document (names in the dictionary) outlives it */
    xmlParserCtxtPtr ctxt = new_context(d);
    xmlDocPtr doc = NULL;
    int well_formed = 0;
    if (ctxt) {
        doc = xmlCtxtReadMemory(ctxt, buf, (int)len, NULL, enc, CG_XML_PARSE_OPTIONS);
        well_formed = ctxt->wellFormed;
        xmlFreeParserCtxt(ctxt); /* the document keeps its own reference to the dictionary */
    } else {
        d->have_error = d->first_fatal = 1;
        set_error(&d->first, CG_ERR_NOMEM, 0, 0, "out of memory");
    }
    if (arena)
        xmlResetLastError(); /* its copy of an error message lives in the arena */
    cg_xml_arena_use(NULL);
    xmlSetStructuredErrorFunc(saved_ctx, saved_fn);

    /* the encoding in effect, when it is not UTF-8: bad bytes there are found by iconv */
    const char *name = enc ? enc : declared[0] && !is_utf8_name(declared) ? declared : NULL;
    cg_error_t bad;
    int failed = !doc || !well_formed || d->refused || d->charset;
    if (!ctxt)
        *err = d->first;
    if (!failed && name && ascii_compatible(buf, len) && junk_after_end(buf, len)) {
        failed = d->charset = 1; /* a sequence cut by the end */
    }
    cg_err_t rc = CG_OK;
    if (failed) {
        drop_tree(doc, arena);
        if (!ctxt) {
            /* *err is set */
        } else if (d->refused || (d->have_error && d->first.code == CG_ERR_CHARSET)) {
            *err = d->first; /* ours, or libxml2 already named the encoding problem */
        } else if ((d->charset || name) && find_bad_bytes(buf, len, name ? name : "UTF-8", &bad) &&
                   (d->charset || !d->have_error || d->first.line <= 0 ||
                    bad.line <= d->first.line)) {
            *err = bad; /* the parser's complaint (often "Premature end") follows from it */
        } else if (d->charset) {
            set_error(err, CG_ERR_CHARSET, d->first.line, d->first.column, "bytes not valid in %s",
                      name ? name : "UTF-8");
        } else if (d->have_error) {
            *err = d->first;
        } else {
            set_error(err, CG_ERR_XML, 0, 0, "document is not well-formed");
        }
        rc = err->code ? err->code : (err->code = CG_ERR_XML);
    } else {
        drop_tree(d->doc, d->doc_in_arena ? &d->arenas[d->cur] : NULL);
        d->doc = doc;
        d->doc_in_arena = arena != NULL;
        if (arena)
            d->cur = !d->cur;
    }
    return rc;
}
