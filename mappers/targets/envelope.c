/* envelope.c - the JSON record envelope of OMOP and cohortgate rows (cg_row.h): the encoder of
 * both targets.
 *
 * Written straight into the output buffer through a cursor: each piece makes sure of its room at
 * its worst (every byte escaped) with one compare, and the buffer grows only when that fails.
 * Plain strings (the usual codes, ids and names, and values the engine marked plain) are copied
 * whole; others go through cg_buf_put_json_str. Reserving and scanning piece by piece through
 * cg_buf calls cost more than the rest of the record.
 */
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
        cg_mem_copy(o + 1, s, n);
        o[n + 1] = '"';
        return o + n + 2;
    }
    b->len = (size_t)(o - b->data);
    cg_buf_put_json_str(b, s, n); /* within the reserve: it does not move data */
    return b->data + b->len;
}

static inline char *put_int(char *o, int64_t x)
{
    return o + cg_fmt_int64(o, x);
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

/* The output cursor: o writes into b, room until end. */
typedef struct w {
    cg_buf_t *b;
    char *o, *end;
} w_t;

/* Makes room for n more bytes (and the NUL); 0 when the buffer cannot grow. */
static int grow(w_t *w, size_t n)
{
    w->b->len = (size_t)(w->o - w->b->data);
    if (cg_buf_reserve(w->b, n) != CG_OK)
        return 0;
    w->o = w->b->data + w->b->len;
    w->end = w->b->data + w->b->cap;
    return 1;
}

static inline int room(w_t *w, size_t n)
{
    return (size_t)(w->end - w->o) > n || grow(w, n);
}

/* A string at its worst, the literal before it and punctuation after. */
static inline int room_str(w_t *w, size_t n)
{
    return room(w, STR_BOUND(n) + 32);
}

/* "trace": per column, the rule and the source of its value, in the row's order. */
static int put_trace(w_t *w, const cg_row_t *row)
{
    const cg_target_table_t *t = row->table;
    const char *rule = row->rule ? row->rule : "";
    size_t rl = strlen(rule);
    int first = 1;
    if (!room(w, 16))
        return 0;
    PUT_LIT(w->o, ",\"trace\":{");
    for (size_t i = 0; i < t->n_columns; i++) {
        if (row->values[i].kind == CG_VALUE_ABSENT)
            continue;
        const char *s = row->trace[i] ? row->trace[i] : "";
        const char *st = row->trace_steps ? row->trace_steps[i] : NULL;
        size_t sl = strlen(s), stl = st ? strlen(st) : 0;
        if (!room(w, CG_TARGET_KEY_PAD + t->columns[i].json_key_len + STR_BOUND(rl) +
                         STR_BOUND(sl) + STR_BOUND(stl) + 48))
            return 0;
        if (!first)
            *w->o++ = ',';
        first = 0;
        w->o = put_key(w->o, &t->columns[i]);
        PUT_LIT(w->o, "{\"rule\":");
        w->o = put_str(w->b, w->o, rule, rl);
        PUT_LIT(w->o, ",\"source\":");
        w->o = put_str(w->b, w->o, s, sl);
        if (st) {
            PUT_LIT(w->o, ",\"steps\":");
            w->o = put_str(w->b, w->o, st, stl);
        }
        *w->o++ = '}';
    }
    *w->o++ = '}';
    return 1;
}

/* "name":"text" of a string, room made. */
#define PUT_KEY_STR(w, lit, s, n)                                                                  \
    do {                                                                                           \
        size_t n_ = (n);                                                                           \
        if (!room_str(w, n_))                                                                      \
            goto nomem;                                                                            \
        PUT_LIT((w)->o, lit);                                                                      \
        (w)->o = put_str((w)->b, (w)->o, s, n_);                                                   \
    } while (0)

cg_err_t cg_target_json_envelope(const cg_row_t *row, const cg_row_source_t *src,
                                 const char *const *cohorts, size_t n_cohorts, unsigned flags,
                                 cg_buf_t *out)
{
    const cg_target_table_t *t = row->table;
    if (cg_buf_reserve(out, 512) != CG_OK) /* most records fit: one reserve, then compares */
        return CG_ERR_NOMEM;
    w_t w = {out, out->data + out->len, out->data + out->cap};
    if (t->json_head) { /* made once per table: no lengths or escapes to look at per record */
        if (!room(&w, (size_t)t->json_head_len + 48))
            goto nomem;
        memcpy(w.o, t->json_head, t->json_head_len);
        w.o += t->json_head_len;
    } else {
        PUT_KEY_STR(&w, "{\"standard\":", t->target->name, strlen(t->target->name));
        PUT_KEY_STR(&w, ",\"table\":", t->name, strlen(t->name));
    }
    if (!room(&w, 48))
        goto nomem;
    /* ,"op":"NAME","cohorts":[ for each cg_row_op_t, in cg_row_op_name's order */
    static const struct {
        const char *s;
        size_t n;
    } op_json[] = {
#define OP_JSON(name)                                                                              \
    {",\"op\":\"" name "\",\"cohorts\":[", sizeof(",\"op\":\"" name "\",\"cohorts\":[") - 1}
        OP_JSON("upsert"),
        OP_JSON("delete"),
        OP_JSON("merge"),
        OP_JSON("retract"),
#undef OP_JSON
    };
    if (row->op < sizeof(op_json) / sizeof(op_json[0])) {
        memcpy(w.o, op_json[row->op].s, op_json[row->op].n);
        w.o += op_json[row->op].n;
    } else { /* an op newer than the table above */
        const char *op_name = cg_row_op_name((cg_row_op_t)row->op);
        PUT_KEY_STR(&w, ",\"op\":", op_name, strlen(op_name));
        if (!room(&w, 16))
            goto nomem;
        PUT_LIT(w.o, ",\"cohorts\":[");
    }
    for (size_t i = 0; i < n_cohorts; i++) {
        size_t cl = strlen(cohorts[i]);
        if (!room_str(&w, cl))
            goto nomem;
        if (i)
            *w.o++ = ',';
        w.o = put_str(out, w.o, cohorts[i], cl);
    }
    if (!room(&w, 16))
        goto nomem;
    PUT_LIT(w.o, "],\"row\":{");
    int first = 1;
    /* the columns the producer says may hold values, else all of them */
    const uint16_t *cols = row->cols;
    size_t n_cols = cols ? row->n_cols : t->n_columns;
    for (size_t k = 0; k < n_cols; k++) {
        size_t i = cols ? cols[k] : k;
        const cg_value_t *v = &row->values[i];
        if (v->kind == CG_VALUE_ABSENT)
            continue;
        const cg_target_column_t *c = &t->columns[i];
        if (!room(&w, CG_TARGET_KEY_PAD + c->json_key_len + STR_BOUND((size_t)v->len)))
            goto nomem;
        char *o = w.o;
        if (!first)
            *o++ = ',';
        first = 0;
        o = put_key(o, c);
        switch (v->kind) {
        case CG_VALUE_NULL:
            PUT_LIT(o, "null");
            break;
        case CG_VALUE_INTEGER:
            if ((flags & CG_ROW_ENCODE_IDS_AS_STRINGS) && c->type == CG_COL_INT64) {
                *o++ = '"'; /* digits and a sign: nothing to escape */
                cg_mem_copy(o, v->ptr, v->len);
                o += v->len;
                *o++ = '"';
                break;
            }
            cg_mem_copy(o, v->ptr, v->len);
            o += v->len;
            break;
        case CG_VALUE_NUMBER:
            cg_mem_copy(o, v->ptr, v->len);
            o += v->len;
            break;
        default:
            if (v->plain) { /* the engine checked it already */
                o[0] = '"';
                cg_mem_copy(o + 1, v->ptr, v->len);
                o[v->len + 1] = '"';
                o += v->len + 2;
            } else {
                o = put_str(out, o, v->ptr, v->len);
            }
            break;
        }
        w.o = o;
    }
    if (!room(&w, 16))
        goto nomem;
    *w.o++ = '}';
    for (size_t i = 0; i < row->n_meta; i++) {
        const cg_row_meta_t *m = &row->meta[i];
        size_t nl = m->json_key ? m->json_key_len : strlen(m->name);
        if (!room(&w, STR_BOUND(nl) + STR_BOUND((size_t)m->value.len) + 16))
            goto nomem;
        if (i)
            *w.o++ = ',';
        else
            PUT_LIT(w.o, ",\"meta\":{");
        if (m->json_key) { /* "name": made once per rule */
            cg_mem_copy(w.o, m->json_key, nl);
            w.o += nl;
        } else {
            w.o = put_str(out, w.o, m->name, nl);
            *w.o++ = ':';
        }
        w.o = put_str(out, w.o, m->value.ptr, m->value.len);
    }
    if (!room(&w, 16))
        goto nomem;
    if (row->n_meta)
        *w.o++ = '}';
    if (src && src->topic) {
        PUT_KEY_STR(&w, ",\"source\":{\"topic\":", src->topic, strlen(src->topic));
        if (!room(&w, 80))
            goto nomem;
        PUT_LIT(w.o, ",\"partition\":");
        w.o = put_int(w.o, src->partition);
        PUT_LIT(w.o, ",\"offset\":");
        w.o = put_int(w.o, src->offset);
        PUT_KEY_STR(&w, ",\"message_id\":", row->message_id.ptr ? row->message_id.ptr : "",
                    row->message_id.len);
    } else if (row->source_plain && row->message_id.len) { /* checked once per message */
        if (!room(&w, row->message_id.len + 32))
            goto nomem;
        PUT_LIT(w.o, ",\"source\":{\"message_id\":\"");
        memcpy(w.o, row->message_id.ptr, row->message_id.len);
        w.o += row->message_id.len;
        *w.o++ = '"';
    } else {
        PUT_KEY_STR(&w,
                    ",\"source\":{\"message_id\":", row->message_id.ptr ? row->message_id.ptr : "",
                    row->message_id.len);
    }
    if (row->source_time.len && row->source_plain) { /* the mapper checked it per message */
        if (!room(&w, row->source_time.len + 16))
            goto nomem;
        PUT_LIT(w.o, ",\"time\":\"");
        memcpy(w.o, row->source_time.ptr, row->source_time.len);
        w.o += row->source_time.len;
        *w.o++ = '"';
    } else if (row->source_time.len) {
        PUT_KEY_STR(&w, ",\"time\":", row->source_time.ptr, row->source_time.len);
    }
    if (row->json_prov && row->spec && row->rule) { /* the same text, made once per rule */
        if (!room(&w, (size_t)row->json_prov_len + 16))
            goto nomem;
        memcpy(w.o, row->json_prov, row->json_prov_len);
        w.o += row->json_prov_len;
    } else {
        if (row->spec) {
            PUT_KEY_STR(&w, ",\"spec\":", row->spec, strlen(row->spec));
            if (!room(&w, 48))
                goto nomem;
            PUT_LIT(w.o, ",\"spec_version\":");
            w.o = put_int(w.o, row->spec_version);
        }
        if (row->rule)
            PUT_KEY_STR(&w, ",\"rule\":", row->rule, strlen(row->rule));
    }
    if (!room(&w, 4))
        goto nomem;
    *w.o++ = '}';
    if ((flags & CG_ROW_ENCODE_TRACE) && row->trace && !put_trace(&w, row))
        goto nomem;
    if (!room(&w, 4))
        goto nomem;
    *w.o++ = '}';
    *w.o = '\0';
    out->len = (size_t)(w.o - out->data);
    return CG_OK;
nomem:
    return CG_ERR_NOMEM;
}
