/* hl7_err.c - filling and printing cg_hl7_error_t (see cg_hl7.h).
 *
 * Below both the index (hl7_parse.c) and the value decoder (hl7_value.c), which report errors the
 * same way, so neither has to call into the other for it.
 */
#include "hl7_impl.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void cg_hl7__err(cg_hl7_error_t *e, cg_err_t code, size_t msg_no, size_t seg, const char *seg_name,
                 int field, size_t offset, const char *fmt, ...)
{
    if (!e)
        return;
    memset(e, 0, sizeof(*e));
    e->code = code;
    e->message = msg_no;
    e->segment = seg;
    if (seg_name)
        snprintf(e->seg_name, sizeof(e->seg_name), "%s", seg_name);
    e->field = field;
    e->offset = offset;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->reason, sizeof(e->reason), fmt, ap);
    va_end(ap);
}

const char *cg_hl7_error_location(const cg_hl7_error_t *e, char *buf, size_t size)
{
    size_t n = 0;
    buf[0] = '\0';
#define PUT(...)                                                                                   \
    do {                                                                                           \
        if (n < size) {                                                                            \
            int w_ = snprintf(buf + n, size - n, __VA_ARGS__);                                     \
            if (w_ > 0)                                                                            \
                n += (size_t)w_;                                                                   \
        }                                                                                          \
    } while (0)
    if (e->segment)
        PUT("segment %zu%s%s, ", e->segment, e->seg_name[0] ? " " : "", e->seg_name);
    if (e->field)
        PUT("field %d, ", e->field);
    PUT("byte %zu: %s", e->offset, e->reason);
#undef PUT
    return buf;
}
