/* hl7_charset.c - character sets: HL7 names to iconv names, a message's charset flags and its
 * cached converters (see cg_hl7.h).
 *
 * The index (hl7_parse.c) resolves MSH-18 when it meets it and the value decoder (hl7_value.c)
 * converts with the result; both sit on top of this file, which calls neither.
 */
#include "hl7_impl.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* HL7 table 0211 -> iconv names. */
static const struct {
    const char *hl7, *iconv;
} cg_hl7_charsets[] = {
    {"ASCII", "ASCII"},
    {"ISO IR6", "ASCII"},
    {"8859/1", "ISO-8859-1"},
    {"8859/2", "ISO-8859-2"},
    {"8859/3", "ISO-8859-3"},
    {"8859/4", "ISO-8859-4"},
    {"8859/5", "ISO-8859-5"},
    {"8859/6", "ISO-8859-6"},
    {"8859/7", "ISO-8859-7"},
    {"8859/8", "ISO-8859-8"},
    {"8859/9", "ISO-8859-9"},
    {"8859/15", "ISO-8859-15"},
    {"ISO IR100", "ISO-8859-1"},
    {"ISO IR101", "ISO-8859-2"},
    {"ISO IR109", "ISO-8859-3"},
    {"ISO IR110", "ISO-8859-4"},
    {"ISO IR144", "ISO-8859-5"},
    {"ISO IR127", "ISO-8859-6"},
    {"ISO IR126", "ISO-8859-7"},
    {"ISO IR138", "ISO-8859-8"},
    {"ISO IR148", "ISO-8859-9"},
    {"ISO IR166", "TIS-620"},
    {"ISO IR192", "UTF-8"},
    {"ISO IR13", "JIS_X0201"},
    {"ISO IR14", "JIS_X0201"},
    /* JIS X 0208 / 0212 travel in ISO 2022 escape sequences in ER7 messages. */
    {"ISO IR87", "ISO-2022-JP"},
    {"ISO IR159", "ISO-2022-JP-2"},
    {"GB 18030-2000", "GB18030"},
    {"GB18030", "GB18030"},
    {"KS X 1001", "EUC-KR"},
    {"CNS 11643-1992", "EUC-TW"},
    {"BIG-5", "BIG5"},
    /* "UNICODE" (v2.3-2.5) cannot be 16-bit in a byte-delimited ER7 stream; senders mean UTF-8. */
    {"UNICODE", "UTF-8"},
    {"UNICODE UTF-8", "UTF-8"},
    {"UNICODE UTF-16", "UTF-16"},
    {"UNICODE UTF-32", "UTF-32"},
};

const char *cg_hl7_charset_iconv_name(const char *hl7_name, size_t len, char *buf, size_t size)
{
    while (len && isspace((unsigned char)*hl7_name)) {
        hl7_name++;
        len--;
    }
    while (len && isspace((unsigned char)hl7_name[len - 1]))
        len--;
    for (size_t i = 0; i < sizeof(cg_hl7_charsets) / sizeof(cg_hl7_charsets[0]); i++) {
        const char *h = cg_hl7_charsets[i].hl7;
        if (strlen(h) == len && !strncasecmp(h, hl7_name, len)) {
            snprintf(buf, size, "%s", cg_hl7_charsets[i].iconv);
            return buf;
        }
    }
    if (len == 0 || len >= size)
        return NULL;
    memcpy(buf, hl7_name, len);
    buf[len] = '\0';
    return buf;
}

iconv_t cg_hl7__iconv(cg_hl7_msg_t *m)
{
    for (int i = 0; i < m->ncv; i++)
        if (!strcmp(m->cv[i].name, m->charset))
            return m->cv[i].cd;
    iconv_t cd = iconv_open("UTF-8", m->charset);
    if (cd == (iconv_t)-1)
        return cd;
    int slot = m->ncv;
    if (slot == CG_HL7_CV_CACHE) { /* full: in turn, so no one slot is reopened every time */
        slot = m->cv_next;
        m->cv_next = (m->cv_next + 1) % CG_HL7_CV_CACHE;
        iconv_close(m->cv[slot].cd);
    } else {
        m->ncv++;
    }
    snprintf(m->cv[slot].name, sizeof(m->cv[slot].name), "%s", m->charset);
    m->cv[slot].cd = cd;
    return cd;
}

int cg_hl7__charset_is_mb(const char *name)
{
    static const char *const mb[] = {"GB18030", "GBK",  "CP936",     "BIG5",  "BIG5-HKSCS",
                                     "CP950",   "SJIS", "SHIFT_JIS", "CP932", "SHIFT-JIS"};
    for (size_t i = 0; i < sizeof(mb) / sizeof(mb[0]); i++)
        if (!strcasecmp(name, mb[i]))
            return 1;
    return 0;
}

static void set_charset_flags(cg_hl7_msg_t *m)
{
    m->charset_utf8 = !strcasecmp(m->charset, "UTF-8") || !strcasecmp(m->charset, "UTF8");
    m->charset_mb = cg_hl7__charset_is_mb(m->charset);
    m->charset_ascii = strncasecmp(m->charset, "UTF-16", 6) &&
                       strncasecmp(m->charset, "UTF-32", 6) && strncasecmp(m->charset, "UCS", 3);
}

cg_err_t cg_hl7__set_charset(cg_hl7_msg_t *m, const char *raw, size_t len, char *why,
                             size_t why_size)
{
    if (!len) {
        raw = m->default_charset;
        len = strlen(raw);
    }
    char name[64];
    if (!cg_hl7_charset_iconv_name(raw, len, name, sizeof(name))) {
        snprintf(why, why_size, "character set name '%.*s' is too long", (int)(len > 64 ? 64 : len),
                 raw);
        return CG_ERR_CHARSET;
    }
    if (strcmp(name, m->charset) != 0) {
        memcpy(m->charset, name, sizeof(name));
        set_charset_flags(m);
        /* Opening once here (cached) rejects an unknown name up front, not at the first value. */
        if (!m->charset_utf8 && cg_hl7__iconv(m) == (iconv_t)-1) {
            snprintf(why, why_size, "character set '%.*s' (iconv \"%s\") is not supported",
                     (int)(len > 64 ? 64 : len), raw, name);
            m->charset[0] = '\0';
            return CG_ERR_CHARSET;
        }
    }
    return CG_OK;
}
