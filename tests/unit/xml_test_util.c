/* xml_test_util.c - what the XML decoder's tests share: fixtures and parse shorthands. */
#include "xml_test_util.h"

#include "test_hl7_util.h" /* th_read */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <libxml/tree.h>

#define XML_FIXTURES CG_SOURCE_DIR "/tests/unit/xml"

char *xt_fixture(const char *name, size_t *len)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s", XML_FIXTURES, name);
    char *b = th_read(path, len);
    if (!b)
        fail_msg("fixture %s missing", path);
    return b;
}

cg_err_t xt_parse_str(cg_xml_doc_t *d, const char *s, cg_error_t *e)
{
    return cg_xml_parse(d, s, strlen(s), e);
}

xmlNodePtr xt_element(cg_xml_doc_t *d, const char *name)
{
    xmlNodePtr n = cg_xml_doc_root(d);
    while (n) {
        if (n->type == XML_ELEMENT_NODE && !strcmp((const char *)n->name, name))
            return n;
        if (n->children && n->type == XML_ELEMENT_NODE) {
            n = n->children;
            continue;
        }
        while (n && !n->next)
            n = n->parent;
        n = n ? n->next : NULL;
    }
    return NULL;
}

/* Text content of the first element named name in the current document (a static copy). */
const char *xt_text_of(cg_xml_doc_t *d, const char *name)
{
    static char buf[1024];
    xmlNodePtr n = xt_element(d, name);
    if (!n)
        return NULL;
    xmlChar *t = xmlNodeGetContent(n);
    snprintf(buf, sizeof(buf), "%s", t ? (const char *)t : "");
    xmlFree(t);
    return buf;
}
