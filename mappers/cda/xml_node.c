/* xml_node.c - the text content of a node of a parsed document (cg_xml.h).
 *
 * Read by the document summary (xml.c) for section titles and by XPath values (xml_xpath.c) for
 * elements with structure; it sits below both, on libxml2's tree alone, so that neither of them
 * calls into the other for it.
 */
#include "cg_xml.h"

#include <libxml/tree.h>

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
