/* envelope.c - the JSON record envelope (see cg_record.h). */
#include "cg_record.h"

#include <inttypes.h>
#include <string.h>

cg_err_t cg_record_write_envelope(cg_buf_t *out, const char *standard, const char *table,
                                  const char *const *cohorts, size_t n_cohorts, cg_slice_t row_json,
                                  const cg_record_source_t *src)
{
    cg_buf_puts(out, "{\"standard\":");
    cg_buf_put_json_str(out, standard, strlen(standard));
    cg_buf_puts(out, ",\"table\":");
    cg_buf_put_json_str(out, table, strlen(table));
    cg_buf_puts(out, ",\"cohorts\":[");
    for (size_t i = 0; i < n_cohorts; i++) {
        if (i)
            cg_buf_putc(out, ',');
        cg_buf_put_json_str(out, cohorts[i], strlen(cohorts[i]));
    }
    cg_buf_puts(out, "],\"row\":");
    cg_buf_append(out, row_json.ptr, row_json.len);
    cg_buf_puts(out, ",\"source\":{");
    if (src->topic) {
        cg_buf_puts(out, "\"topic\":");
        cg_buf_put_json_str(out, src->topic, strlen(src->topic));
        cg_buf_printf(out, ",\"partition\":%" PRId32 ",\"offset\":%" PRId64 ",", src->partition,
                      src->offset);
    }
    cg_buf_puts(out, "\"message_id\":");
    cg_buf_put_json_str(out, src->message_id.ptr ? src->message_id.ptr : "", src->message_id.len);
    if (src->spec) {
        cg_buf_puts(out, ",\"spec\":");
        cg_buf_put_json_str(out, src->spec, strlen(src->spec));
        cg_buf_printf(out, ",\"spec_version\":%d", src->spec_version);
    }
    if (src->rule) {
        cg_buf_puts(out, ",\"rule\":");
        cg_buf_put_json_str(out, src->rule, strlen(src->rule));
    }
    cg_buf_puts(out, "}}");
    return out->failed ? CG_ERR_NOMEM : CG_OK;
}
