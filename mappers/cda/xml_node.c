/* xml_node.c - the text content of a node of a parsed document (cg_xml.h).
 *
 * Read by the document summary (xml.c) for section titles and by XPath values (xml_xpath.c) for
 * elements with structure; it sits below both, on libxml2's tree alone, so that neither of them
 * calls into the other for it.
 */
#include "cg_xml.h"

#include <libxml/tree.h>

#include <stdio.h>
#include <string.h>

/* Appends the text below node with runs of XML white space collapsed to one space and the ends
 * trimmed; *pending_space carries a run across text nodes, start is out's length before the
 * first one (a space is never written first). */
static void gather_text(const xmlNode *n, cg_buf_t *out, int *pending_space, size_t start)
{
    for (; n; n = n->next) {
        if (n->type == XML_TEXT_NODE || n->type == XML_CDATA_SECTION_NODE) {
            for (const xmlChar *p = n->content; p && *p; p++) {
                if (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') {
                    *pending_space = 1;
                    continue;
                }
                if (*pending_space && out->len > start)
                    cg_buf_putc(out, ' ');
                *pending_space = 0;
                cg_buf_putc(out, (char)*p);
            }
        } else if (n->type == XML_ELEMENT_NODE) {
            gather_text(n->children, out, pending_space, start);
        }
    }
}

size_t cg_xml_node_text(const void *node, cg_buf_t *out)
{
    const xmlNode *n = node;
    if (!n)
        return 0;
    size_t before = out->len;
    int pending = 0;
    if (n->type == XML_ELEMENT_NODE || n->type == XML_DOCUMENT_NODE ||
        n->type == XML_ATTRIBUTE_NODE) {
        gather_text(n->children, out, &pending, before);
    } else if (n->type == XML_TEXT_NODE || n->type == XML_CDATA_SECTION_NODE) {
        xmlNode one = *n;
        one.next = NULL;
        gather_text(&one, out, &pending, before);
    }
    return out->len - before;
}

/* Same-named element siblings of n before it (*before) and whether any follows. */
static void sibling_place(const xmlNode *n, size_t *before, int *after)
{
    *before = 0;
    *after = 0;
    for (const xmlNode *s = n->prev; s; s = s->prev)
        if (s->type == XML_ELEMENT_NODE && !xmlStrcmp(s->name, n->name))
            (*before)++;
    for (const xmlNode *s = n->next; s && !*after; s = s->next)
        if (s->type == XML_ELEMENT_NODE && !xmlStrcmp(s->name, n->name))
            *after = 1;
}

/* Writes n's ancestors, then n; returns the length needed (o, the length so far, included). */
static size_t write_path(const xmlNode *n, char *buf, size_t size, size_t o, int depth)
{
    if (!n || n->type != XML_ELEMENT_NODE)
        return o;
    if (depth > 256) /* the parser's own depth limit is lower: only a hand-made tree */
        return o;
    o = write_path(n->parent, buf, size, o, depth + 1);
    size_t before;
    int after;
    sibling_place(n, &before, &after);
    char step[300];
    int k = before || after
                ? snprintf(step, sizeof(step), "/%s[%zu]", (const char *)n->name, before + 1)
                : snprintf(step, sizeof(step), "/%s", (const char *)n->name);
    size_t len = k > 0 ? (size_t)k : 0;
    if (len >= sizeof(step))
        len = sizeof(step) - 1;
    if (o < size)
        memcpy(buf + o, step, o + len < size ? len : size - o);
    return o + len;
}

size_t cg_xml_node_path(const void *node, char *buf, size_t size)
{
    size_t n = write_path(node, buf, size, 0, 0);
    if (size)
        buf[n < size ? n : size - 1] = '\0';
    return n;
}

int cg_xml_node_line(const void *node)
{
    const xmlNode *n = node;
    if (!n || n->type != XML_ELEMENT_NODE)
        return 0;
    long l = xmlGetLineNo(n);
    return l > 0 && l < 0x7fffffff ? (int)l : 0;
}
