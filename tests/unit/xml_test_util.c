/* xml_test_util.c - what the XML decoder's tests share: fixtures and parse shorthands. */
#include "xml_test_util.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <libxml/tree.h>

#define XML_FIXTURES CG_SOURCE_DIR "/tests/unit/xml"

char *xt_read_path(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    size_t r = fread(buf, 1, (size_t)n, f);
    fclose(f);
    buf[r] = '\0';
    *len = r;
    return buf;
}

char *xt_fixture(const char *name, size_t *len)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s", XML_FIXTURES, name);
    char *b = xt_read_path(path, len);
    if (!b)
        fail_msg("fixture %s missing", path);
    return b;
}

cg_err_t xt_parse_str(cg_xml_doc_t *d, const char *s, cg_error_t *e)
{
    return cg_xml_parse(d, s, strlen(s), e);
}

/* Text content of the first element named name in the current document (a static copy). */
const char *xt_text_of(cg_xml_doc_t *d, const char *name)
{
    static char buf[1024];
    xmlNodePtr n = cg_xml_doc_root(d);
    while (n) {
        if (n->type == XML_ELEMENT_NODE && !strcmp((const char *)n->name, name)) {
            xmlChar *t = xmlNodeGetContent(n);
            snprintf(buf, sizeof(buf), "%s", t ? (const char *)t : "");
            xmlFree(t);
            return buf;
        }
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
