/* hl7_value.c - reading values: escape sequences and character sets (see cg_hl7.h).
 *
 * Nothing here runs during indexing: a value is decoded only when someone reads it. Literal runs
 * are converted straight from the input so an invalid byte is reported at its exact offset; ASCII
 * runs skip iconv entirely, and UTF-8 input is validated instead of converted.
 */
#include "hl7_impl.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* Segment and field holding message-relative offset rel, for error reports. */
static void locate(const cg_hl7_msg_t *m, size_t rel, uint32_t *seg, int *field)
{
    *seg = CG_HL7_NO_SEG;
    *field = 0;
    uint32_t lo = 0, hi = m->nsegs;
    while (lo < hi) { /* last segment whose start <= rel */
        uint32_t mid = lo + (hi - lo) / 2;
        if (m->segs[mid].start <= rel)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == 0)
        return;
    uint32_t s = lo - 1;
    *seg = s;
    const cg_hl7_seg_ix_t *sx = &m->segs[s];
    for (uint32_t t = sx->tok0; t < m->segs[s + 1].tok0; t++) {
        uint32_t last_leaf = m->tok_leaf[t + 1] - 1;
        if (m->leaf_end[last_leaf] >= rel) {
            uint32_t k = t - sx->tok0;
            *field = (int)(sx->header ? (k == 0 ? (rel == sx->start + 3 ? 1 : 0) : k + 1) : k);
            return;
        }
    }
}

static cg_err_t value_err(cg_hl7_msg_t *m, cg_error_t *err, cg_err_t code, const char *at,
                          const char *fmt, const char *detail)
{
    size_t rel = (size_t)(at - m->data);
    uint32_t seg;
    int field;
    locate(m, rel, &seg, &field);
    cg_hl7__err(err, code, m->number, seg == CG_HL7_NO_SEG ? 0 : seg + 1,
                seg == CG_HL7_NO_SEG ? NULL : m->segs[seg].name, field, m->offset + rel, fmt,
                detail);
    return code;
}

/* Length of the valid UTF-8 prefix of p[0..n). */
static size_t utf8_valid_prefix(const unsigned char *p, size_t n)
{
    size_t i = 0, l;
    while (i < n && (l = cg_utf8_seq_len(p + i, n - i)) != 0)
        i += l;
    return i;
}

static int all_ascii(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)p[i] >= 0x80)
            return 0;
    return 1;
}

/* Appends p[0..n) converted to UTF-8. src is where the bytes sit in the message (for errors). */
static cg_err_t conv_append(cg_hl7_msg_t *m, const char *p, size_t n, const char *src,
                            cg_buf_t *out, cg_error_t *err)
{
    if (n == 0)
        return CG_OK;
    if (m->charset_utf8) {
        size_t ok = utf8_valid_prefix((const unsigned char *)p, n);
        if (ok < n) {
            char d[8];
            snprintf(d, sizeof(d), "0x%02x", (unsigned char)p[ok]);
            return value_err(m, err, CG_ERR_CHARSET, src + ok,
                             "invalid UTF-8 byte %s (the message declares or defaults to UTF-8)",
                             d);
        }
        return cg_buf_append(out, p, n);
    }
    if (m->charset_ascii && all_ascii(p, n))
        return cg_buf_append(out, p, n);
    iconv_t cd = cg_hl7__iconv(m);
    if (cd == (iconv_t)-1)
        return value_err(m, err, CG_ERR_CHARSET, src, "character set %s is not supported",
                         m->charset);
    iconv(cd, NULL, NULL, NULL, NULL);
    char *in = (char *)(uintptr_t)p;
    size_t inleft = n;
    for (;;) {
        if (cg_buf_reserve(out, inleft * 4 + 16) != CG_OK)
            return CG_ERR_NOMEM;
        char *o = out->data + out->len;
        size_t oleft = out->cap - out->len - 1;
        size_t r = iconv(cd, &in, &inleft, &o, &oleft);
        out->len = (size_t)(o - out->data);
        if (r != (size_t)-1) {
            /* flush shift state (ISO 2022) */
            o = out->data + out->len;
            oleft = out->cap - out->len - 1;
            iconv(cd, NULL, NULL, &o, &oleft);
            out->len = (size_t)(o - out->data);
            break;
        }
        if (errno == E2BIG)
            continue;
        out->data[out->len] = '\0';
        size_t at = (size_t)(in - p);
        char d[160];
        snprintf(d, sizeof(d), "%s byte 0x%02x for character set %s",
                 errno == EINVAL ? "incomplete sequence at" : "invalid", (unsigned char)p[at],
                 m->charset);
        return value_err(m, err, CG_ERR_CHARSET, src + at, "%s", d);
    }
    out->data[out->len] = '\0';
    return CG_OK;
}

cg_err_t cg_hl7_decode_noescape(cg_hl7_msg_t *m, cg_slice_t raw, cg_buf_t *out, cg_error_t *err)
{
    return conv_append(m, raw.ptr, raw.len, raw.ptr, out, err);
}

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (unsigned char)(c | 0x20);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Next escape character in [p, end); in GBK/Big5-like charsets a trail byte can equal it, so
 * double-byte characters are stepped over whole. */
static const char *find_esc(const cg_hl7_msg_t *m, const char *p, const char *end)
{
    if (!m->charset_mb)
        return p < end ? memchr(p, m->d.esc, (size_t)(end - p)) : NULL;
    while (p < end) {
        unsigned char c = (unsigned char)*p;
        if (c >= 0x81)
            p += 2;
        else if (c == (unsigned char)m->d.esc)
            return p;
        else
            p++;
    }
    return NULL;
}

cg_err_t cg_hl7_decode(cg_hl7_msg_t *m, cg_slice_t raw, cg_buf_t *out, cg_error_t *err)
{
    const char esc = m->d.esc;
    const char *p = raw.ptr, *end = raw.ptr + raw.len;
    if (!esc)
        return conv_append(m, p, raw.len, p, out, err);
    cg_err_t rc;
    while (p < end) {
        const char *e = find_esc(m, p, end);
        if (!e)
            return conv_append(m, p, (size_t)(end - p), p, out, err);
        if ((rc = conv_append(m, p, (size_t)(e - p), p, out, err)) != CG_OK)
            return rc;
        const char *close = find_esc(m, e + 1, end);
        if (!close) { /* a lone escape character stays as it is */
            return conv_append(m, e, (size_t)(end - e), e, out, err);
        }
        const char *s = e + 1;
        size_t n = (size_t)(close - s);
        char one = 0;
        int handled = 1;
        if (n == 1) {
            switch (*s) {
            case 'F':
                one = m->d.field;
                break;
            case 'S':
                one = m->d.comp;
                break;
            case 'T':
                one = m->d.sub;
                break;
            case 'R':
                one = m->d.rep;
                break;
            case 'E':
                one = m->d.esc;
                break;
            case 'H':
            case 'N':
                break; /* highlighting on/off: no text */
            default:
                handled = 0;
            }
            if (handled && (*s == 'F' || *s == 'S' || *s == 'T' || *s == 'R' || *s == 'E') && !one)
                handled = 0;
            if (handled && one && (rc = cg_buf_putc(out, one)) != CG_OK)
                return rc;
        } else if (n == 3 && !memcmp(s, ".br", 3)) {
            if ((rc = cg_buf_putc(out, '\n')) != CG_OK)
                return rc;
        } else if (n >= 3 && (n - 1) % 2 == 0 && *s == 'X') {
            for (size_t i = 1; i < n && handled; i += 2)
                if (hexval((unsigned char)s[i]) < 0 || hexval((unsigned char)s[i + 1]) < 0)
                    handled = 0;
            if (handled) {
                /* The bytes are text in the message's charset: convert them as one run. */
                cg_buf_reset(&m->scratch);
                for (size_t i = 1; i < n; i += 2)
                    cg_buf_putc(&m->scratch, (char)(hexval((unsigned char)s[i]) << 4 |
                                                    hexval((unsigned char)s[i + 1])));
                if (m->scratch.failed)
                    return CG_ERR_NOMEM;
                if ((rc = conv_append(m, m->scratch.data, m->scratch.len, e, out, err)) != CG_OK)
                    return rc;
            }
        } else {
            handled = 0;
        }
        if (!handled) { /* unknown sequence: kept literally, escape characters included */
            if ((rc = conv_append(m, e, (size_t)(close + 1 - e), e, out, err)) != CG_OK)
                return rc;
        }
        p = close + 1;
    }
    if (out->data == NULL)
        return cg_buf_append(out, "", 0);
    return CG_OK;
}
