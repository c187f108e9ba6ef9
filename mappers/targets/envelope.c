/* envelope.c - the JSON record envelope (see cg_record.h). */
#include "cg_record.h"

#include <stdint.h>
#include <string.h>

/* Appends lit (a literal without anything to escape), then s as a JSON string. */
static void put_key_str(cg_buf_t *out, const char *lit, size_t lit_len, const char *s, size_t n)
{
    if (!cg_buf_json_plain(s, n) || cg_buf_reserve(out, lit_len + n + 2) != CG_OK) {
        cg_buf_append(out, lit, lit_len);
        cg_buf_put_json_str(out, s, n);
        return;
    }
    char *o = out->data + out->len;
    memcpy(o, lit, lit_len);
    o += lit_len;
    *o++ = '"';
    memcpy(o, s, n);
    o[n] = '"';
    out->len += lit_len + n + 2;
    out->data[out->len] = '\0';
}

#define PUT_KEY_STR(out, lit, s, n) put_key_str(out, lit, sizeof(lit) - 1, s, n)

/* Appends the decimal text of x (by hand: vsnprintf cost more than the rest of the envelope). */
static void put_int(cg_buf_t *out, int64_t x)
{
    char tmp[24];
    uint64_t u = x < 0 ? (uint64_t)0 - (uint64_t)x : (uint64_t)x;
    size_t n = sizeof(tmp);
    do {
        tmp[--n] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (x < 0)
        tmp[--n] = '-';
    cg_buf_append(out, tmp + n, sizeof(tmp) - n);
}

/* Decimal text of x ending at end; returns where it starts. */
static char *fmt_int(char *end, int64_t x)
{
    uint64_t u = x < 0 ? (uint64_t)0 - (uint64_t)x : (uint64_t)x;
    do {
        *--end = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (x < 0)
        *--end = '-';
    return end;
}

#define PUT_LIT(o, lit)  (memcpy(o, lit, sizeof(lit) - 1), (o) += sizeof(lit) - 1)
#define PUT_STR(o, s, n) ((o)[0] = '"', memcpy((o) + 1, s, n), (o)[(n) + 1] = '"', (o) += (n) + 2)

/* The usual envelope, without cohorts or a topic and with every string plain: its length is
 * known up front, so it is written with one reserve and straight copies (the general path below
 * reserved and scanned piece by piece, a cost per record). Returns 0 when it does not apply. */
static int write_plain(cg_buf_t *out, const char *standard, const char *table, cg_slice_t row_json,
                       cg_slice_t meta_json, const cg_record_source_t *src)
{
    size_t sl = strlen(standard), tl = strlen(table);
    size_t ml = src->message_id.len;
    const char *mid = src->message_id.ptr ? src->message_id.ptr : "";
    size_t pl = src->spec ? strlen(src->spec) : 0, rl = src->rule ? strlen(src->rule) : 0;
    if (!cg_buf_json_plain(standard, sl) || !cg_buf_json_plain(table, tl) ||
        !cg_buf_json_plain(mid, ml) || (src->spec && !cg_buf_json_plain(src->spec, pl)) ||
        (src->rule && !cg_buf_json_plain(src->rule, rl)))
        return 0;
    char vbuf[24], *v = fmt_int(vbuf + sizeof(vbuf), src->spec_version);
    size_t vl = (size_t)(vbuf + sizeof(vbuf) - v);
    size_t total = sl + tl + ml + row_json.len + meta_json.len + pl + rl + vl + 128;
    if (cg_buf_reserve(out, total) != CG_OK)
        return 1; /* failed is set; the caller reports it */
    char *o = out->data + out->len;
    PUT_LIT(o, "{\"standard\":");
    PUT_STR(o, standard, sl);
    PUT_LIT(o, ",\"table\":");
    PUT_STR(o, table, tl);
    PUT_LIT(o, ",\"cohorts\":[],\"row\":");
    if (row_json.len) {
        memcpy(o, row_json.ptr, row_json.len);
        o += row_json.len;
    }
    if (meta_json.len) {
        PUT_LIT(o, ",\"meta\":");
        memcpy(o, meta_json.ptr, meta_json.len);
        o += meta_json.len;
    }
    PUT_LIT(o, ",\"source\":{\"message_id\":");
    PUT_STR(o, mid, ml);
    if (src->spec) {
        PUT_LIT(o, ",\"spec\":");
        PUT_STR(o, src->spec, pl);
        PUT_LIT(o, ",\"spec_version\":");
        memcpy(o, v, vl);
        o += vl;
    }
    if (src->rule) {
        PUT_LIT(o, ",\"rule\":");
        PUT_STR(o, src->rule, rl);
    }
    PUT_LIT(o, "}}");
    *o = '\0';
    out->len = (size_t)(o - out->data);
    return 1;
}

cg_err_t cg_record_write_envelope(cg_buf_t *out, const char *standard, const char *table,
                                  const char *const *cohorts, size_t n_cohorts, cg_slice_t row_json,
                                  cg_slice_t meta_json, const cg_record_source_t *src)
{
    if (!n_cohorts && !src->topic && write_plain(out, standard, table, row_json, meta_json, src))
        return out->failed ? CG_ERR_NOMEM : CG_OK;
    PUT_KEY_STR(out, "{\"standard\":", standard, strlen(standard));
    PUT_KEY_STR(out, ",\"table\":", table, strlen(table));
    cg_buf_append(out, ",\"cohorts\":[", 12);
    for (size_t i = 0; i < n_cohorts; i++)
        put_key_str(out, ",", i ? 1 : 0, cohorts[i], strlen(cohorts[i]));
    cg_buf_append(out, "],\"row\":", 8);
    cg_buf_append(out, row_json.ptr, row_json.len);
    if (meta_json.len) {
        cg_buf_append(out, ",\"meta\":", 8);
        cg_buf_append(out, meta_json.ptr, meta_json.len);
    }
    cg_buf_append(out, ",\"source\":{", 11);
    if (src->topic) {
        PUT_KEY_STR(out, "\"topic\":", src->topic, strlen(src->topic));
        cg_buf_append(out, ",\"partition\":", 13);
        put_int(out, src->partition);
        cg_buf_append(out, ",\"offset\":", 10);
        put_int(out, src->offset);
        cg_buf_putc(out, ',');
    }
    PUT_KEY_STR(out, "\"message_id\":", src->message_id.ptr ? src->message_id.ptr : "",
                src->message_id.len);
    if (src->spec) {
        PUT_KEY_STR(out, ",\"spec\":", src->spec, strlen(src->spec));
        cg_buf_append(out, ",\"spec_version\":", 16);
        put_int(out, src->spec_version);
    }
    if (src->rule)
        PUT_KEY_STR(out, ",\"rule\":", src->rule, strlen(src->rule));
    cg_buf_append(out, "}}", 2);
    return out->failed ? CG_ERR_NOMEM : CG_OK;
}
