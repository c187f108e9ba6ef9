/* envelope.c - the JSON record envelope of OMOP and cohortgate rows (cg_row.h): the encoder of
 * both targets.
 *
 * A record is written with one reserve: a bound on its length is added up first (strings at their
 * worst, every byte escaped), then everything is copied straight in. Plain strings (the usual
 * codes, ids and names) are copied whole; others go through cg_buf_put_json_str, whose own
 * reserve then finds room. Writing piece by piece, reserving and scanning each, cost more than
 * the rest of the record. */
#include "cg_row.h"
#include "target_impl.h"

#include <string.h>

/* What a string costs at most: every byte \u00XX-escaped, the quotes, a separator. */
#define STR_BOUND(n) ((n)*6 + 4)

#define PUT_LIT(o, lit) (memcpy(o, lit, sizeof(lit) - 1), (o) += sizeof(lit) - 1)

/* Appends s as a JSON string at o (room reserved); returns the new end. */
static inline char *put_str(cg_buf_t *b, char *o, const char *s, size_t n)
{
    if (!n) {
        memcpy(o, "\"\"", 2);
        return o + 2;
    }
    if (cg_buf_json_plain(s, n)) {
        o[0] = '"';
        memcpy(o + 1, s, n);
        o[n + 1] = '"';
        return o + n + 2;
    }
    b->len = (size_t)(o - b->data);
    cg_buf_put_json_str(b, s, n); /* within the reserve: it does not move data */
    return b->data + b->len;
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

static char *put_int(char *o, int64_t x)
{
    char tmp[24], *s = fmt_int(tmp + sizeof(tmp), x);
    size_t n = (size_t)(tmp + sizeof(tmp) - s);
    memcpy(o, s, n);
    return o + n;
}

/* A column's "name": key; short ones as one fixed-size copy (the padding is overwritten next). */
static inline char *put_key(char *o, const cg_target_column_t *c)
{
    if (c->json_key_len <= CG_TARGET_KEY_PAD)
        memcpy(o, c->json_key, CG_TARGET_KEY_PAD);
    else
        memcpy(o, c->json_key, c->json_key_len);
    return o + c->json_key_len;
}

static size_t bound(const cg_row_t *row, const cg_row_source_t *src, const char *const *cohorts,
                    size_t n_cohorts, unsigned flags)
{
    const cg_target_table_t *t = row->table;
    size_t n = 160 + STR_BOUND(strlen(t->target->name)) + STR_BOUND(strlen(t->name)) +
               STR_BOUND(row->message_id.len);
    if (row->spec)
        n += STR_BOUND(strlen(row->spec)) + 24;
    if (row->rule)
        n += STR_BOUND(strlen(row->rule));
    for (size_t i = 0; i < n_cohorts; i++)
        n += STR_BOUND(strlen(cohorts[i]));
    if (src && src->topic)
        n += STR_BOUND(strlen(src->topic)) + 64;
    for (size_t i = 0; i < t->n_columns; i++) {
        const cg_value_t *v = &row->values[i];
        if (v->kind != CG_VALUE_ABSENT)
            n += CG_TARGET_KEY_PAD + t->columns[i].json_key_len + STR_BOUND((size_t)v->len);
    }
    for (size_t i = 0; i < row->n_meta; i++)
        n += STR_BOUND(strlen(row->meta[i].name)) + STR_BOUND((size_t)row->meta[i].value.len);
    if ((flags & CG_ROW_ENCODE_TRACE) && row->trace) {
        size_t rl = row->rule ? strlen(row->rule) : 0;
        for (size_t i = 0; i < t->n_columns; i++)
            if (row->values[i].kind != CG_VALUE_ABSENT)
                n += 32 + t->columns[i].json_key_len + STR_BOUND(rl) +
                     STR_BOUND(row->trace[i] ? strlen(row->trace[i]) : 0);
    }
    return n;
}

/* "trace": per column, the rule and the source of its value, in the row's order. */
static char *put_trace(cg_buf_t *b, char *o, const cg_row_t *row)
{
    const cg_target_table_t *t = row->table;
    const char *rule = row->rule ? row->rule : "";
    size_t rl = strlen(rule);
    int first = 1;
    PUT_LIT(o, ",\"trace\":{");
    for (size_t i = 0; i < t->n_columns; i++) {
        if (row->values[i].kind == CG_VALUE_ABSENT)
            continue;
        const char *s = row->trace[i] ? row->trace[i] : "";
        if (!first)
            *o++ = ',';
        first = 0;
        o = put_key(o, &t->columns[i]);
        PUT_LIT(o, "{\"rule\":");
        o = put_str(b, o, rule, rl);
        PUT_LIT(o, ",\"source\":");
        o = put_str(b, o, s, strlen(s));
        *o++ = '}';
    }
    *o++ = '}';
    return o;
}

cg_err_t cg_target_json_envelope(const cg_row_t *row, const cg_row_source_t *src,
                                 const char *const *cohorts, size_t n_cohorts, unsigned flags,
                                 cg_buf_t *out)
{
    const cg_target_table_t *t = row->table;
    if (cg_buf_reserve(out, bound(row, src, cohorts, n_cohorts, flags)) != CG_OK)
        return CG_ERR_NOMEM;
    char *o = out->data + out->len;
    PUT_LIT(o, "{\"standard\":");
    o = put_str(out, o, t->target->name, strlen(t->target->name));
    PUT_LIT(o, ",\"table\":");
    o = put_str(out, o, t->name, strlen(t->name));
    PUT_LIT(o, ",\"cohorts\":[");
    for (size_t i = 0; i < n_cohorts; i++) {
        if (i)
            *o++ = ',';
        o = put_str(out, o, cohorts[i], strlen(cohorts[i]));
    }
    PUT_LIT(o, "],\"row\":{");
    int first = 1;
    for (size_t i = 0; i < t->n_columns; i++) {
        const cg_value_t *v = &row->values[i];
        if (v->kind == CG_VALUE_ABSENT)
            continue;
        if (!first)
            *o++ = ',';
        first = 0;
        o = put_key(o, &t->columns[i]);
        switch (v->kind) {
        case CG_VALUE_NULL:
            PUT_LIT(o, "null");
            break;
        case CG_VALUE_INTEGER:
        case CG_VALUE_NUMBER:
            memcpy(o, v->ptr, v->len);
            o += v->len;
            break;
        default:
            o = put_str(out, o, v->ptr, v->len);
            break;
        }
    }
    *o++ = '}';
    for (size_t i = 0; i < row->n_meta; i++) {
        const cg_row_meta_t *m = &row->meta[i];
        if (i)
            *o++ = ',';
        else
            PUT_LIT(o, ",\"meta\":{");
        o = put_str(out, o, m->name, strlen(m->name));
        *o++ = ':';
        o = put_str(out, o, m->value.ptr, m->value.len);
    }
    if (row->n_meta)
        *o++ = '}';
    PUT_LIT(o, ",\"source\":{");
    if (src && src->topic) {
        PUT_LIT(o, "\"topic\":");
        o = put_str(out, o, src->topic, strlen(src->topic));
        PUT_LIT(o, ",\"partition\":");
        o = put_int(o, src->partition);
        PUT_LIT(o, ",\"offset\":");
        o = put_int(o, src->offset);
        *o++ = ',';
    }
    PUT_LIT(o, "\"message_id\":");
    o = put_str(out, o, row->message_id.ptr ? row->message_id.ptr : "", row->message_id.len);
    if (row->spec) {
        PUT_LIT(o, ",\"spec\":");
        o = put_str(out, o, row->spec, strlen(row->spec));
        PUT_LIT(o, ",\"spec_version\":");
        o = put_int(o, row->spec_version);
    }
    if (row->rule) {
        PUT_LIT(o, ",\"rule\":");
        o = put_str(out, o, row->rule, strlen(row->rule));
    }
    *o++ = '}';
    if ((flags & CG_ROW_ENCODE_TRACE) && row->trace)
        o = put_trace(out, o, row);
    *o++ = '}';
    *o = '\0';
    out->len = (size_t)(o - out->data);
    return out->failed ? CG_ERR_NOMEM : CG_OK;
}
