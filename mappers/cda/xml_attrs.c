/* xml_attrs.c - the check of attributes per element that runs before libxml2 parses a document
 * (xml.c): libxml2 2.9 spends quadratic time on one element's attributes, so an element with
 * too many is refused from the raw bytes, in one pass. */
#include "xml_attrs.h"

#include <string.h>

/* Lines up to p (1-based). */
static unsigned long line_at(const unsigned char *b, const unsigned char *p)
{
    unsigned long line = 1;
    for (const unsigned char *q = b; (q = memchr(q, '\n', (size_t)(p - q))); q++)
        line++;
    return line;
}

/* Whether the '=' at p (of n bytes left, a character every step bytes, its ASCII byte at lo)
 * starts an attribute value: white space, then a quote. */
static int eq_quote(const unsigned char *p, size_t n, size_t step, size_t lo)
{
    for (size_t i = step; i + step <= n; i += step) {
        unsigned c = step == 2 && p[i + (lo ^ 1)] ? 0x80 : p[i + lo];
        if (c == '"' || c == '\'')
            return 1;
        if (c != ' ' && c != '\t' && c != '\r' && c != '\n')
            return 0;
    }
    return 0;
}

/* 8-bit encodings (UTF-8 and the others XML allows). Attributes are counted as '=' followed by
 * a quote, per stretch from one '<' to the next: quote-aware parsing could be thrown off by a
 * '<' inside a value (not well-formed, but libxml2 goes on reading the attributes), and this
 * cannot. An attribute takes at least 5 bytes (' a=""'), so only stretches longer than
 * 5 * limit are looked into; the others are passed over with memchr. The offending stretch's
 * '<', or NULL. */
static const unsigned char *attrs_over_8bit(const unsigned char *p, size_t len, unsigned limit)
{
    const unsigned char *end = p + len;
    size_t min_span = 5 * (size_t)limit;
    p = memchr(p, '<', len);
    while (p && p + 1 < end) {
        const unsigned char *tag = p++;
        if (*p == '!' || *p == '?') { /* to the end of the comment, CDATA, PI or declaration */
            const char *close = *p == '?'                                   ? "?>"
                                : end - p > 2 && p[1] == '-' && p[2] == '-' ? "-->"
                                : end - p > 1 && p[1] == '['                ? "]]>"
                                                                            : ">";
            const unsigned char *c = memmem(p, (size_t)(end - p), close, strlen(close));
            if (!c)
                return NULL;
            p = memchr(c, '<', (size_t)(end - c));
            continue;
        }
        const unsigned char *next = memchr(p, '<', (size_t)(end - p)), *stop = next ? next : end;
        if ((size_t)(stop - tag) > min_span) {
            unsigned attrs = 0;
            for (const unsigned char *q = p; (q = memchr(q, '=', (size_t)(stop - q))); q++)
                if (eq_quote(q, (size_t)(stop - q), 1, 0) && ++attrs > limit)
                    return tag;
        }
        p = next;
    }
    return NULL;
}

/* UTF-16 (lo: the byte of a 16-bit unit that holds an ASCII character), a unit at a time, by
 * the same rule: '=' then a quote, counted from one '<' to the next. The offending '<', or
 * NULL. */
static const unsigned char *attrs_over_16bit(const unsigned char *p, size_t len, size_t lo,
                                             unsigned limit)
{
    const unsigned char *end = p + (len & ~(size_t)1), *tag = NULL;
    unsigned attrs = 0;
    for (; p < end; p += 2) {
        if (p[lo ^ 1])
            continue;
        if (p[lo] == '<') {
            tag = p;
            attrs = 0;
        } else if (p[lo] == '=' && tag && eq_quote(p, (size_t)(end - p), 2, lo) &&
                   ++attrs > limit) {
            return tag;
        }
    }
    return NULL;
}

/* The line of the first element with more than limit attributes (counted as '=' outside quotes
 * in its start tag), or 0. libxml2 2.9 compares each attribute's name with every earlier one of
 * its element, so a start tag of 80,000 attributes costs minutes: it is refused before parsing,
 * in one pass over the bytes; comments, CDATA, processing instructions and declarations are
 * skipped. */
unsigned long cg_xml__too_many_attributes(const unsigned char *p, size_t len, unsigned limit)
{
    const unsigned char *at;
    if (len >= 2 && ((p[0] == 0xFF && p[1] == 0xFE) || (p[0] == '<' && p[1] == 0)))
        at = attrs_over_16bit(p, len, 0, limit);
    else if (len >= 2 && ((p[0] == 0xFE && p[1] == 0xFF) || (p[0] == 0 && p[1] == '<')))
        at = attrs_over_16bit(p, len, 1, limit);
    else
        at = attrs_over_8bit(p, len, limit);
    return at ? line_at(p, at) : 0;
}
