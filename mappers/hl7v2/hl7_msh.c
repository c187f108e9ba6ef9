/* hl7_msh.c - a fast look at the MSH header only (see cg_hl7.h). */
#include "cg_hl7.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

static int is_seg_end(char c)
{
    return c == '\r' || c == '\n';
}

/* Advances past the segment starting at i; returns the index of the next segment's start. */
static size_t next_segment(const char *buf, size_t len, size_t i)
{
    while (i < len && !is_seg_end(buf[i]))
        i++;
    while (i < len && (is_seg_end(buf[i]) || buf[i] == ' ' || buf[i] == '\t'))
        i++;
    return i;
}

cg_err_t cg_hl7_msh_peek(const char *buf, size_t len, cg_hl7_msh_t *out, char *errstr,
                         size_t errstr_size)
{
    memset(out, 0, sizeof(*out));
    size_t i = 0;
    if (len >= 3 && memcmp(buf, "\xEF\xBB\xBF", 3) == 0)
        i = 3;
    while (i < len && (buf[i] == 0x0B || isspace((unsigned char)buf[i])))
        i++;
    /* batch envelopes: FHS and BHS precede the first MSH */
    while (i + 3 <= len && (memcmp(buf + i, "FHS", 3) == 0 || memcmp(buf + i, "BHS", 3) == 0))
        i = next_segment(buf, len, i);
    if (i + 3 > len || memcmp(buf + i, "MSH", 3) != 0) {
        snprintf(errstr, errstr_size, "no MSH segment at byte %zu", i);
        return CG_ERR_NOT_HL7;
    }
    out->msh_offset = i;
    if (i + 8 > len) {
        snprintf(errstr, errstr_size, "MSH segment truncated at byte %zu", len);
        return CG_ERR_HL7_SYNTAX;
    }
    char fs = buf[i + 3];
    if (isalnum((unsigned char)fs) || is_seg_end(fs) || fs == '\0') {
        snprintf(errstr, errstr_size, "MSH-1 field separator 0x%02x at byte %zu is not allowed",
                 (unsigned char)fs, i + 3);
        return CG_ERR_HL7_SYNTAX;
    }
    out->field_sep = fs;
    size_t p = i + 4;
    int field = 2; /* MSH-1 is the separator itself; the first token after it is MSH-2 */
    size_t start = p;
    for (;; p++) {
        int end_seg = p >= len || is_seg_end(buf[p]);
        if (end_seg || buf[p] == fs) {
            cg_slice_t v = {buf + start, p - start};
            switch (field) {
            case 2:
                out->encoding = v;
                break;
            case 3:
                out->sending_app = v;
                break;
            case 4:
                out->sending_facility = v;
                break;
            case 9:
                out->message_type = v;
                break;
            case 10:
                out->control_id = v;
                break;
            case 12:
                out->version = v;
                break;
            default:
                break;
            }
            if (end_seg || field == 12)
                break;
            field++;
            start = p + 1;
        }
    }
    if (out->encoding.len < 1 || out->encoding.len > 5) {
        snprintf(errstr, errstr_size, "MSH-2 encoding characters missing or too long at byte %zu",
                 i + 4);
        return CG_ERR_HL7_SYNTAX;
    }
    if (out->message_type.len == 0) {
        snprintf(errstr, errstr_size, "MSH-9 message type is empty");
        return CG_ERR_HL7_SYNTAX;
    }
    return CG_OK;
}
