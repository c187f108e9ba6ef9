/* hl7_err.c - filling a decoding error (cg_error_t located CG_ERROR_AT_HL7).
 *
 * Below both the index (hl7_parse.c) and the value decoder (hl7_value.c), which report errors the
 * same way, so neither has to call into the other for it.
 */
#include "hl7_impl.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void cg_hl7__err(cg_error_t *e, cg_err_t code, size_t msg_no, size_t seg, const char *seg_name,
                 int field, size_t offset, const char *fmt, ...)
{
    if (!e)
        return;
    memset(e, 0, sizeof(*e));
    e->code = code;
    e->at = CG_ERROR_AT_HL7;
    e->message = msg_no;
    e->segment = seg;
    if (seg_name)
        snprintf(e->seg_name, sizeof(e->seg_name), "%s", seg_name);
    e->field = field;
    e->offset = offset;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->text, sizeof(e->text), fmt, ap);
    va_end(ap);
}
