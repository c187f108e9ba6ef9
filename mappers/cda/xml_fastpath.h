/* xml_fastpath.h - private to mappers/cda: the XPath fast path (xml_fastpath.c), a step
 * program xml_xpath.c compiles beside libxml2's form and walks instead of it where it applies,
 * and the name rules and default prefixes both files use. */
#ifndef CG_XML_FASTPATH_H
#define CG_XML_FASTPATH_H

#include "cg_xml.h"

#include <libxml/tree.h>
#include <stddef.h>

/* The prefixes every spec may use without declaring them (hl7, sdtc, xsi). */
extern const cg_xml_ns_t cg_xml__default_ns[];
extern const size_t cg_xml__n_default_ns;

/* XML name characters, ASCII exactly and every byte of a multi-byte character let through. */
static inline int cg_xml__name_start(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_' || c >= 0x80;
}

static inline int cg_xml__name_char(unsigned char c)
{
    return cg_xml__name_start(c) || (c >= '0' && c <= '9') || c == '-' || c == '.';
}

typedef struct fx fx_t;
/* Gets each node the path selects, in document order; returning 1 stops the walk. */
typedef int (*fx_emit_fn)(void *arg, const xmlNode *n);

/* The fast program for text (prefixes: ns, then the defaults), or NULL when the expression is
 * outside the subset (or out of memory). */
fx_t *cg_xml__fx_compile(const char *text, const cg_xml_ns_t *ns, size_t n_ns);
void cg_xml__fx_free(fx_t *fx);
/* Whether the path starts at the document rather than at the context node. */
int cg_xml__fx_absolute(const fx_t *fx);
/* Walks the path from ctx, emitting what it selects. */
void cg_xml__fx_run(const fx_t *fx, const xmlNode *ctx, fx_emit_fn emit, void *arg);

#endif
