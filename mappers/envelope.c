/* envelope.c - the JSON record envelope (see cg_record.h). */
#include "cg_record.h"

#include <stdint.h>
#include <string.h>

/* Whether s[0..n) goes into a JSON string unchanged (printable ASCII and DEL, no '"' or '\\'):
 * names and ids nearly always do, and copying them whole is cheaper than escaping. Eight bytes
 * a step: a byte >= 0x80, < 0x20, '"' or '\\' sets its top bit in one of the masks (borrows only
 * spread above a real hit). */
static int json_plain(const char *s, size_t n)
{
    const uint64_t ones = 0x0101010101010101u, high = 0x8080808080808080u;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        uint64_t q = w ^ (ones * '"'), bs = w ^ (ones * '\\');
        if ((w | ((w - ones * 0x20) & ~w) | ((q - ones) & ~q) | ((bs - ones) & ~bs)) & high)
            return 0;
    }
    for (const unsigned char *p = (const unsigned char *)s; i < n; i++)
        if (p[i] < 0x20 || p[i] >= 0x80 || p[i] == '"' || p[i] == '\\')
            return 0;
    return 1;
}

/* Appends lit (a literal without anything to escape), then s as a JSON string. */
static void put_key_str(cg_buf_t *out, const char *lit, size_t lit_len, const char *s, size_t n)
{
    if (!json_plain(s, n) || cg_buf_reserve(out, lit_len + n + 2) != CG_OK) {
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

cg_err_t cg_record_write_envelope(cg_buf_t *out, const char *standard, const char *table,
                                  const char *const *cohorts, size_t n_cohorts, cg_slice_t row_json,
                                  cg_slice_t meta_json, const cg_record_source_t *src)
{
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
