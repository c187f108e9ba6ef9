/* mllp_batch.c - HL7 batches in one MLLP frame (FHS/BHS ... BTS/FTS) and their
 * acknowledgement (cg_mllp.h): HL7 v2 chapter 2's batch protocol answers a batch with a batch
 * of acknowledgements, one per message, whose BHS-12 (FHS-12) names the batch (file) being
 * answered by its BHS-11 (FHS-11).
 *
 * The listener stores the frame whole (the gateway's reader splits it) and keeps only what the
 * acknowledgement needs, as lines: "F" and the FHS line, "B" and the BHS line, then per message
 * "0" (it decodes) or "1" (it does not) and its MSH line. */
#include "cg_mllp.h"

#include <stdio.h>
#include <string.h>

/* The line starting at p (up to a CR or LF), at most 4 KiB: header fields come early. */
static size_t line_len(const char *p, const char *end)
{
    const char *e = p;
    while (e < end && e - p < 4096 && *e != '\r' && *e != '\n')
        e++;
    return (size_t)(e - p);
}

int cg_mllp_is_batch(const char *buf, size_t len)
{
    size_t i = 0;
    if (len >= 3 && !memcmp(buf, "\xEF\xBB\xBF", 3))
        i = 3;
    while (i < len && (buf[i] == '\r' || buf[i] == '\n' || buf[i] == ' ' || buf[i] == '\t'))
        i++;
    return len - i >= 4 && (!memcmp(buf + i, "FHS", 3) || !memcmp(buf + i, "BHS", 3));
}

static void put_line(cg_buf_t *base, char tag, const char *p, size_t n)
{
    cg_buf_putc(base, tag);
    cg_buf_append(base, p, n);
    cg_buf_putc(base, '\n');
}

cg_err_t cg_mllp_batch_scan(cg_hl7_msg_t *m, const char *buf, size_t len, cg_buf_t *base,
                            size_t *n_msgs, cg_error_t *err)
{
    cg_hl7_reader_t r;
    cg_hl7_reader_init(&r, buf, len);
    *n_msgs = 0;
    int batch_seen = 0;
    while (cg_hl7_reader_more(&r)) {
        if (!batch_seen) { /* the reader has taken FHS and BHS in: their lines, once */
            const cg_hl7_batch_t *b = &r.batch;
            if (b->fhs.len)
                put_line(base, 'F', b->fhs.ptr, line_len(b->fhs.ptr, buf + len));
            if (b->bhs.len)
                put_line(base, 'B', b->bhs.ptr, line_len(b->bhs.ptr, buf + len));
            batch_seen = 1;
        }
        size_t at = r.pos;
        cg_error_t e;
        cg_err_t rc = cg_hl7_reader_next(&r, m, &e);
        const char *msh = buf + at;
        put_line(base, rc == CG_OK ? '0' : '1', msh, line_len(msh, buf + len));
        (*n_msgs)++;
    }
    /* a BTS/FTS count that disagrees: the batch lost a message on the way; the gateway
     * dead-letters it whole, so every message of it is answered as an error */
    cg_error_t e;
    if (cg_hl7_reader_end(&r, &e) != CG_OK) {
        if (err)
            *err = e;
        return e.code ? e.code : CG_ERR_HL7_SYNTAX;
    }
    if (base->failed)
        return CG_ERR_NOMEM;
    return *n_msgs ? CG_OK : CG_ERR_NOT_HL7;
}

/* Field n (1-based, n >= 3) of a header line split on its field separator (line[3]). */
static cg_slice_t field(const char *line, size_t len, int n)
{
    if (len < 4)
        return (cg_slice_t){NULL, 0};
    char fs = line[3];
    const char *p = line + 3, *end = line + len;
    for (int f = 1; f < n && p < end; p++)
        if (*p == fs && ++f == n) {
            const char *s = p + 1, *e = s;
            while (e < end && *e != fs)
                e++;
            return (cg_slice_t){s, (size_t)(e - s)};
        }
    return (cg_slice_t){NULL, 0};
}

/* The FHS/BHS answering header line: separators as sent, sender and receiver swapped, now,
 * the answer's own control id, and the answered header's control id (its field 11) as 12. */
static void header_answer(cg_buf_t *out, const char *name, const char *line, size_t len,
                          const char *control_id, const char *ts)
{
    char fs = len > 3 ? line[3] : '|';
    cg_slice_t enc = field(line, len, 2);
    cg_buf_printf(out, "%s%c", name, fs);
    if (enc.len)
        cg_buf_append(out, enc.ptr, enc.len);
    else
        cg_buf_puts(out, "^~\\&");
    int order[] = {5, 6, 3, 4};
    for (int i = 0; i < 4; i++) {
        cg_slice_t f = field(line, len, order[i]);
        cg_buf_putc(out, fs);
        if (f.len)
            cg_buf_append(out, f.ptr, f.len);
    }
    cg_slice_t ref = field(line, len, 11);
    /* MSH-like fields 7 (now), 8-10 empty, 11 our control id, 12 the answered one */
    cg_buf_printf(out, "%c%s%c%c%c%c%s%c", fs, ts, fs, fs, fs, fs, control_id, fs);
    if (ref.len)
        cg_buf_append(out, ref.ptr, ref.len);
    cg_buf_putc(out, '\r');
}

cg_err_t cg_mllp_batch_ack_build(const char *base, size_t len, cg_mllp_ack_kind_t all,
                                 const char *text, const char *control_id, time_t now,
                                 cg_buf_t *out)
{
    size_t start = out->len;
    /* the ACKs below format the same second: the per-thread buffer holds it throughout */
    const char *ts = cg_mllp_hl7_ts(now);
    const char *p = base, *end = base + len;
    int has_fhs = len && base[0] == 'F', has_bhs = 0;
    for (const char *q = base; q && q < end;
         q = memchr(q, '\n', (size_t)(end - q)), q = q ? q + 1 : q)
        has_bhs |= *q == 'B';
    size_t n = 0;
    char fs = '|';
    cg_buf_putc(out, CG_MLLP_SB);
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl)
            break;
        const char *line = p + 1;
        size_t ll = (size_t)(nl - line);
        char tag = *p;
        p = nl + 1;
        if (tag == 'F' || tag == 'B') {
            if (ll > 3)
                fs = line[3];
            header_answer(out, tag == 'F' ? "FHS" : "BHS", line, ll, control_id, ts);
            if (tag == 'F' && !has_bhs) /* a file without BHS: its answer's batch still has one */
                header_answer(out, "BHS", line, ll, control_id, ts);
            continue;
        }
        /* a message: AA/AE as it decoded, or the whole batch's outcome when not stored */
        cg_mllp_ack_kind_t kind = all != CG_MLLP_ACK_OK ? all
                                  : tag == '1'          ? CG_MLLP_ACK_ERROR
                                                        : CG_MLLP_ACK_OK;
        cg_mllp_msh_t h;
        cg_mllp_msh_split(line, ll, &h);
        char id[64];
        snprintf(id, sizeof(id), "%s-%zu", control_id, ++n);
        const char *why = kind == CG_MLLP_ACK_OK  ? NULL
                          : all != CG_MLLP_ACK_OK ? text
                                                  : "the message does not decode";
        if (cg_mllp_ack_build(&h, kind, why, id, now, 0, out) != CG_OK)
            break;
    }
    cg_buf_printf(out, "BTS%c%zu\r", fs, n);
    if (has_fhs)
        cg_buf_printf(out, "FTS%c1\r", fs);
    cg_buf_putc(out, CG_MLLP_EB);
    cg_buf_putc(out, CG_MLLP_CR);
    if (out->failed) {
        out->len = start;
        return CG_ERR_NOMEM;
    }
    return CG_OK;
}
