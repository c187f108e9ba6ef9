/* mllp_ack.c - the MSH fields an acknowledgement needs, and the acknowledgement itself
 * (cg_mllp.h), as HL7 v2 chapter 2 (2.9 "message acknowledgment", 2.14 MSH, 2.15 MSA). */
#include "cg_mllp.h"

#include <string.h>

/* MSH-12 of the ACK to a message that carries no version */
#define CG_MLLP_ACK_DEFAULT_VERSION "2.5.1"

static cg_slice_t slice_of(const char *p, size_t n)
{
    return (cg_slice_t){p, n};
}

/* The first line of buf split on its field separator: what a message that does not decode
 * still tells about itself. */
static void msh_split(const char *buf, size_t len, cg_mllp_msh_t *h)
{
    const char *msh = NULL;
    for (size_t i = 0; i + 3 < len; i++) /* after a BOM or blank lines, as the decoder allows */
        if (!memcmp(buf + i, "MSH", 3) && (i == 0 || buf[i - 1] == '\r' || buf[i - 1] == '\n' ||
                                           (unsigned char)buf[i - 1] == 0xBF)) {
            msh = buf + i;
            break;
        }
    if (!msh)
        return;
    const char *end = buf + len, *p = msh + 3;
    const char *eol = p;
    while (eol < end && *eol != '\r' && *eol != '\n')
        eol++;
    if (p >= eol)
        return;
    h->found = 1;
    h->field_sep = *p;
    /* MSH-2 runs to the next field separator */
    const char *enc = p + 1, *q = enc;
    while (q < eol && *q != h->field_sep)
        q++;
    h->seps = slice_of(p, (size_t)(q - p));
    h->comp_sep = q > enc ? enc[0] : '^';
    for (int n = 3; q < eol && n < 22; n++) {
        const char *s = ++q;
        while (q < eol && *q != h->field_sep)
            q++;
        h->fld[n] = slice_of(s, (size_t)(q - s));
    }
    /* MSH-9.2 */
    const char *t = h->fld[9].ptr;
    if (t) {
        const char *te = t + h->fld[9].len, *c = memchr(t, h->comp_sep, h->fld[9].len);
        if (c) {
            const char *c2 = c + 1;
            while (c2 < te && *c2 != h->comp_sep)
                c2++;
            h->trigger = slice_of(c + 1, (size_t)(c2 - (c + 1)));
        }
    }
}

void cg_mllp_msh_split(const char *buf, size_t len, cg_mllp_msh_t *out)
{
    memset(out, 0, sizeof(*out));
    out->field_sep = '|';
    out->comp_sep = '^';
    msh_split(buf, len, out);
}

cg_err_t cg_mllp_msh_read(cg_hl7_msg_t *m, const char *buf, size_t len, cg_mllp_msh_t *out,
                          cg_error_t *err)
{
    memset(out, 0, sizeof(*out));
    out->field_sep = '|';
    out->comp_sep = '^';
    cg_err_t rc = cg_hl7_parse(m, buf, len, err);
    if (rc != CG_OK) {
        msh_split(buf, len, out);
        return rc;
    }
    uint32_t seg = 0;
    if (strcmp(cg_hl7_seg_name(m, 0), "MSH")) { /* FHS/BHS around it: not this listener's */
        msh_split(buf, len, out);
        return CG_OK;
    }
    out->found = 1;
    out->parsed = 1;
    const cg_hl7_delims_t *d = cg_hl7_msg_delims(m);
    out->field_sep = d->field;
    out->comp_sep = d->comp ? d->comp : '^';
    cg_slice_t enc;
    cg_hl7_get_raw(m, seg, 2, 0, 0, 0, &enc);
    cg_slice_t segb = cg_hl7_seg_bytes(m, seg);
    out->seps = slice_of(segb.ptr + 3, enc.len + 1);
    for (uint32_t n = 3; n < 22; n++)
        cg_hl7_get_raw(m, seg, n, 0, 0, 0, &out->fld[n]);
    cg_hl7_get_raw(m, seg, 9, 1, 2, 0, &out->trigger);
    uint32_t pid = cg_hl7_seg_next(m, 0, "PID");
    if (pid != CG_HL7_NO_SEG) {
        cg_hl7_get_raw(m, pid, 3, 1, 1, 0, &out->pid_id);
        cg_hl7_get_raw(m, pid, 3, 1, 4, 0, &out->pid_authority);
    }
    return CG_OK;
}

int cg_mllp_msh_enhanced(const cg_mllp_msh_t *h)
{
    return h->fld[15].len > 0 || h->fld[16].len > 0;
}

int cg_mllp_msh_wants_ack(const cg_mllp_msh_t *h, int success)
{
    if (!cg_mllp_msh_enhanced(h) || h->fld[15].len != 2)
        return 1;
    if (!memcmp(h->fld[15].ptr, "NE", 2))
        return 0;
    if (!memcmp(h->fld[15].ptr, "SU", 2))
        return success;
    if (!memcmp(h->fld[15].ptr, "ER", 2))
        return !success;
    return 1;
}

const char *cg_mllp_ack_code(const cg_mllp_msh_t *h, cg_mllp_ack_kind_t kind)
{
    static const char *const codes[2][3] = {{"AA", "AE", "AR"}, {"CA", "CE", "CR"}};
    return codes[cg_mllp_msh_enhanced(h)][kind];
}

static void put_slice(cg_buf_t *b, cg_slice_t s)
{
    if (s.len)
        cg_buf_append(b, s.ptr, s.len);
}

/* Our own text in a field: separators and line ends would break the segment. */
static void put_text(cg_buf_t *b, const cg_mllp_msh_t *h, const char *text)
{
    for (const char *t = text; t && *t; t++) {
        int bad = *t == h->field_sep || *t == '\r' || *t == '\n' ||
                  (h->seps.len > 1 && memchr(h->seps.ptr + 1, *t, h->seps.len - 1));
        cg_buf_putc(b, bad ? ' ' : *t);
    }
}

/* Versions from 2.5 on carry the error in ERR-3 (a CWE of table 0357); MSA-3 is kept for
 * older receivers, which read only it. */
static int version_at_least_25(cg_slice_t v)
{
    if (v.len < 3 || v.ptr[0] != '2' || v.ptr[1] != '.')
        return 0;
    int minor = 0;
    for (size_t i = 2; i < v.len && v.ptr[i] >= '0' && v.ptr[i] <= '9'; i++)
        minor = minor * 10 + (v.ptr[i] - '0');
    return minor >= 5;
}

/* MSH-2 holds the four encoding characters (five from 2.7 on), distinct, none of them the field
 * separator or a line end. */
static int seps_usable(cg_slice_t seps)
{
    if (seps.len < 5)
        return 0;
    for (size_t i = 1; i < seps.len; i++) {
        char c = seps.ptr[i];
        if (c == seps.ptr[0] || c == '\r' || c == '\n' || memchr(seps.ptr + 1, c, i - 1))
            return 0;
    }
    return 1;
}

const char *cg_mllp_hl7_ts(time_t now)
{
    /* formatted once a second: every ACK carries it, and strftime per ACK showed in profiles */
    static _Thread_local time_t last = (time_t)-1;
    static _Thread_local char ts[32];
    if (now != last) {
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(ts, sizeof(ts), "%Y%m%d%H%M%S+0000", &tm);
        last = now;
    }
    return ts;
}

cg_err_t cg_mllp_ack_build(const cg_mllp_msh_t *msh, cg_mllp_ack_kind_t kind, const char *text,
                           const char *control_id, time_t now, int framed, cg_buf_t *out)
{
    /* A message whose MSH-2 is empty or incomplete gets an ACK with the default encoding
     * characters after its field separator: an ACK with an empty MSH-2 is itself unreadable
     * (HAPI refuses it: "MSH-2 is null"), and the sender could not match it to its message. */
    cg_mllp_msh_t fixed;
    char seps[6];
    const cg_mllp_msh_t *h = msh;
    if (msh->seps.len && !seps_usable(msh->seps)) {
        fixed = *msh;
        seps[0] = msh->seps.ptr[0];
        memcpy(seps + 1, "^~\\&", 4);
        fixed.seps = slice_of(seps, 5);
        fixed.comp_sep = '^';
        h = &fixed;
    }
    size_t start = out->len;
    char fs = h->field_sep, cs = h->comp_sep;
    char ss = h->seps.len >= 5 ? h->seps.ptr[4] : '&';
    if (framed)
        cg_buf_putc(out, CG_MLLP_SB);
    cg_buf_puts(out, "MSH");
    if (h->seps.len)
        put_slice(out, h->seps);
    else
        cg_buf_puts(out, "|^~\\&");
    /* MSH-3..6: the message's receiver sends the acknowledgement to its sender */
    cg_slice_t order[] = {h->fld[5], h->fld[6], h->fld[3], h->fld[4]};
    for (size_t i = 0; i < 4; i++) {
        cg_buf_putc(out, fs);
        put_slice(out, order[i]);
    }
    cg_buf_putc(out, fs);
    cg_buf_puts(out, cg_mllp_hl7_ts(now));
    cg_buf_putc(out, fs);
    cg_buf_putc(out, fs);
    cg_buf_puts(out, "ACK");
    cg_buf_putc(out, cs);
    put_slice(out, h->trigger);
    cg_buf_putc(out, cs);
    cg_buf_puts(out, "ACK");
    cg_buf_putc(out, fs);
    cg_buf_puts(out, control_id);
    cg_buf_putc(out, fs);
    put_slice(out, h->fld[11]); /* processing id */
    cg_buf_putc(out, fs);
    /* version: echoed; a message without one gets an ACK of 2.5.1 all the same, since a
     * receiver needs MSH-12 to read the ACK (HAPI refuses one without it) */
    if (h->fld[12].len)
        put_slice(out, h->fld[12]);
    else
        cg_buf_puts(out, CG_MLLP_ACK_DEFAULT_VERSION);
    if (h->fld[18].len) { /* MSH-13..17 empty, then the character set echoed */
        for (int i = 0; i < 6; i++)
            cg_buf_putc(out, fs);
        put_slice(out, h->fld[18]);
    }
    cg_buf_puts(out, "\rMSA");
    cg_buf_putc(out, fs);
    cg_buf_puts(out, cg_mllp_ack_code(h, kind));
    cg_buf_putc(out, fs);
    put_slice(out, h->fld[10]);
    if (kind != CG_MLLP_ACK_OK && text && *text) {
        cg_buf_putc(out, fs);
        put_text(out, h, text);
        /* ERR-3 of table 0357: 207 application internal error (not stored), 102 data type
         * error (it does not decode); ERR-4 severity E */
        int code = kind == CG_MLLP_ACK_REJECTED ? 207 : 102;
        const char *name =
            kind == CG_MLLP_ACK_REJECTED ? "Application internal error" : "Data type error";
        if (!h->fld[12].len || version_at_least_25(h->fld[12]))
            cg_buf_printf(out, "\rERR%c%c%c%d%c%s%cHL70357%cE", fs, fs, fs, code, cs, name, cs, fs);
        else /* ERR-1, an ELD: its fourth component is the code, as subcomponents */
            cg_buf_printf(out, "\rERR%c%c%c%c%d%c%s%cHL70357", fs, cs, cs, cs, code, ss, name, ss);
    }
    cg_buf_putc(out, '\r');
    if (framed) {
        cg_buf_putc(out, CG_MLLP_EB);
        cg_buf_putc(out, CG_MLLP_CR);
    }
    if (out->failed) {
        out->len = start;
        return CG_ERR_NOMEM;
    }
    return CG_OK;
}
