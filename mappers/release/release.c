/* release.c - one row for one subscriber: its table's plan applied column by column, the
 * pseudonyms re-keyed under the subscriber's key, dates shifted and generalized, and the row's
 * level found (see cg_release.h). No allocation once the scratch is warm; the per-message values
 * (the message id, the patient's key and date shift) are computed once per input. */
#include "policy_impl.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Longest text one released value takes: a 40-hex pseudonym, a 64-bit id, a date-time. */
#define VALUE_TEXT_MAX 48
#define CACHE_IN_MAX   256 /* longer message ids and keys are not cached (rare) */

/* What a subscriber's pseudonyms of one input are: its message id's and its patient's key
 * and date shift, computed once per input and policy (rows of an input share them, and `run`
 * releases each row to every subscriber in turn). */
typedef struct per_policy {
    const cg_policy_t *policy;
    uint64_t serial; /* the policy's: another at the same address is another */
    char mid_in[CACHE_IN_MAX];
    size_t mid_len; /* SIZE_MAX: none cached */
    char mid_hex[41];
    char key_in[CACHE_IN_MAX];
    size_t key_len; /* SIZE_MAX: none cached */
    char key_out[17];
    int shift;
    /* the last site ids re-keyed (person_id, visit_occurrence_id ... recur in every row of an
     * input), direct-mapped by their value */
    struct {
        uint8_t used, out_len;
        int64_t in;
        char out[20];
    } ids[64];
    /* the last dates written (a message's rows mostly share their dates and its source time):
     * the text in and how (date_how), the text out; how 0: none */
    struct {
        uint8_t how, in_len, out_len;
        int shift;
        char in[VALUE_TEXT_MAX], out[VALUE_TEXT_MAX];
    } dates[4];
    unsigned next_date;
} per_policy_t;

#define CACHE_POLICIES 8 /* more subscribers share the slots round-robin (recomputed) */

/* A value of the row parsed once for every subscriber (cg_release_row_prepare): an id, or a
 * date's fields. */
enum { PARSE_NOT_YET = 0, PARSE_OK, PARSE_NOT };
typedef struct parsed {
    uint8_t id_state, date_state;
    int64_t id;
    int y, m, d;
} parsed_t;

struct cg_release_scratch {
    cg_value_t *vals;
    size_t cap_vals;
    char *text;
    size_t cap_text, used;
    per_policy_t slots[CACHE_POLICIES];
    unsigned next_slot;
    /* the row prepared: its values parsed as subscribers need them, [n_columns] its source time */
    const cg_row_t *row;
    const cg_value_t *row_values;
    parsed_t *parsed;
    size_t cap_parsed;
    cg_row_meta_t meta; /* a released row's one meta fact (release_order_id) */
};

static per_policy_t *slot_of(cg_release_scratch_t *s, const cg_policy_t *p)
{
    for (unsigned i = 0; i < CACHE_POLICIES; i++)
        if (s->slots[i].policy == p && s->slots[i].serial == p->serial)
            return &s->slots[i];
    per_policy_t *c = &s->slots[s->next_slot++ % CACHE_POLICIES];
    c->policy = p;
    c->serial = p->serial;
    c->mid_len = c->key_len = SIZE_MAX;
    for (size_t i = 0; i < sizeof(c->ids) / sizeof(c->ids[0]); i++)
        c->ids[i].used = 0;
    for (size_t i = 0; i < sizeof(c->dates) / sizeof(c->dates[0]); i++)
        c->dates[i].how = 0;
    return c;
}

cg_release_scratch_t *cg_release_scratch_new(void)
{
    return calloc(1, sizeof(cg_release_scratch_t));
}

void cg_release_scratch_destroy(cg_release_scratch_t *s)
{
    if (!s)
        return;
    free(s->vals);
    free(s->text);
    free(s->parsed);
    free(s);
}

const char *cg_release_outcome_name(cg_release_outcome_t o)
{
    static const char *const names[] = {"released", "table_not_granted", "not_in_cohort",
                                        "above_level", "agreement_expired"};
    return (unsigned)o < sizeof(names) / sizeof(names[0]) ? names[o] : "?";
}

static char *text_take(cg_release_scratch_t *s, size_t n)
{
    char *t = s->text + s->used;
    s->used += n;
    return t;
}

/* Lower-case hex of n bytes, two digits a byte from a table (a pseudonym a row and subscriber). */
static void hex(const unsigned char *b, size_t n, char *out)
{
#define HEX_ROW(h)                                                                                 \
    h "0" h "1" h "2" h "3" h "4" h "5" h "6" h "7" h "8" h "9" h "a" h "b" h "c" h "d" h "e" h "f"
    static const char pairs[513] = HEX_ROW("0") HEX_ROW("1") HEX_ROW("2") HEX_ROW("3") HEX_ROW("4")
        HEX_ROW("5") HEX_ROW("6") HEX_ROW("7") HEX_ROW("8") HEX_ROW("9") HEX_ROW("a") HEX_ROW("b")
            HEX_ROW("c") HEX_ROW("d") HEX_ROW("e") HEX_ROW("f");
#undef HEX_ROW
    for (size_t i = 0; i < n; i++)
        memcpy(out + 2 * i, pairs + 2 * b[i], 2);
    out[2 * n] = '\0';
}

/* The subscriber's keyed 63-bit id of a value (a site id's 8 bytes, a patient's key), in its own
 * namespace so that no two uses coincide. */
static int64_t keyed(const cg_policy_t *p, const char *ns, const void *data, size_t len)
{
    cg_slice_t part = {data, len};
    int64_t out = 0;
    cg_pseudo_key_id(p->pseudo, CG_PSEUDO_ID_KEY, (cg_slice_t){ns, strlen(ns)}, &part, 1, &out);
    return out;
}

/* 40 hex digits of the subscriber's HMAC of a text pseudonym (a person_source_value, a document
 * id), as long as the site's own. */
static void keyed_text(const cg_policy_t *p, const char *text, size_t len, char out[41])
{
    unsigned char buf[CACHE_IN_MAX + 32], md[32];
    static const char label[] = "\0cohortgate/release-text/v1\x1F";
    size_t l = sizeof(label) - 1, n = len < CACHE_IN_MAX ? len : CACHE_IN_MAX;
    memcpy(buf, label, l);
    memcpy(buf + l, text, n);
    if (len > CACHE_IN_MAX) { /* a long one by its own digest */
        cg_pseudo_hmac(p->pseudo, text, len, md);
        memcpy(buf + l, md, 32);
        n = 32;
    }
    cg_pseudo_hmac(p->pseudo, buf, l + n, md);
    hex(md, 20, out);
}

static int parse_int64(const cg_value_t *v, int64_t *out)
{
    if (!v->len || v->len > 19)
        return -1;
    int64_t x = 0;
    size_t i = v->ptr[0] == '-';
    if (i == v->len)
        return -1;
    for (; i < v->len; i++) {
        if (v->ptr[i] < '0' || v->ptr[i] > '9')
            return -1;
        x = x * 10 + (v->ptr[i] - '0');
    }
    *out = v->ptr[0] == '-' ? -x : x;
    return 0;
}

static int two(const char *p)
{
    return (p[0] - '0') * 10 + (p[1] - '0');
}

/* Value c of the row as an id (id_state), once for every subscriber. */
static inline const parsed_t *parsed_id(cg_release_scratch_t *s, size_t c, const cg_value_t *v)
{
    parsed_t *x = &s->parsed[c];
    if (x->id_state == PARSE_NOT_YET)
        x->id_state = parse_int64(v, &x->id) ? PARSE_NOT : PARSE_OK;
    return x;
}

/* A date's fields into x (date_state PARSE_OK), or PARSE_NOT when v is no date. */
static void parse_date(parsed_t *x, const cg_value_t *v)
{
    x->date_state = PARSE_NOT;
    const char *t = v->ptr;
    if (v->len < 10 || t[4] != '-' || t[7] != '-')
        return;
    for (int i = 0; i < 10; i++)
        if (i != 4 && i != 7 && (t[i] < '0' || t[i] > '9'))
            return;
    x->y = two(t) * 100 + two(t + 2);
    x->m = two(t + 5);
    x->d = two(t + 8);
    if (x->m >= 1 && x->m <= 12 && x->d >= 1 && x->d <= cg_date_days_in_month(x->y, x->m))
        x->date_state = PARSE_OK;
}

/* Value c of the row as a date's fields (date_state), once for every subscriber. */
static inline const parsed_t *parsed_date(cg_release_scratch_t *s, size_t c, const cg_value_t *v)
{
    parsed_t *x = &s->parsed[c];
    if (x->date_state == PARSE_NOT_YET)
        parse_date(x, v);
    return x;
}

/* A site id re-keyed under p into o (at most 20 bytes); 0 when it is no id. */
static size_t rekey_id(const cg_policy_t *p, per_policy_t *c, const parsed_t *in, char *o)
{
    if (in->id_state != PARSE_OK)
        return 0;
    size_t slot = (size_t)(((uint64_t)in->id * 0x9E3779B97F4A7C15u) >> 58);
    if (c->ids[slot].used && c->ids[slot].in == in->id) {
        memcpy(o, c->ids[slot].out, sizeof(c->ids[slot].out)); /* whole: o has the room */
        return c->ids[slot].out_len;
    }
    size_t n = cg_fmt_int64(o, cg_pseudo_id64(p->pseudo, in->id));
    c->ids[slot].used = 1;
    c->ids[slot].in = in->id;
    c->ids[slot].out_len = (uint8_t)n;
    memcpy(c->ids[slot].out, o, n);
    return n;
}

/* A date or date-time value (its fields in x) shifted by days and, with gen, cut to the month or
 * year; the written length, or 0 when the text is no date (then the column is dropped). */
static size_t date_out(const cg_value_t *v, const parsed_t *x, int days, int gen, int year_only,
                       char *o)
{
    if (x->date_state != PARSE_OK)
        return 0;
    int y = x->y, m = x->m, d = x->d;
    if (days)
        cg_date_civil_from_days(cg_date_days_from_civil(y, m, d) + days, &y, &m, &d);
    if (y < 1 || y > 9999)
        return 0;
    if (gen) {
        d = 1;
        if (year_only)
            m = 1;
    }
    o[0] = (char)('0' + y / 1000);
    o[1] = (char)('0' + y / 100 % 10);
    o[2] = (char)('0' + y / 10 % 10);
    o[3] = (char)('0' + y % 10);
    o[4] = '-';
    o[5] = (char)('0' + m / 10);
    o[6] = (char)('0' + m % 10);
    o[7] = '-';
    o[8] = (char)('0' + d / 10);
    o[9] = (char)('0' + d % 10);
    size_t w = 10;
    if (v->kind == CG_VALUE_DATETIME) {
        if (gen) {
            memcpy(o + w, "T00:00:00", 9);
            w += 9;
        } else if (v->len - 10 <= VALUE_TEXT_MAX - 10) { /* the time of day as it was */
            memcpy(o + w, v->ptr + 10, v->len - 10);
            w += v->len - 10;
        }
    }
    return w;
}

/* Whether a and b's first n bytes are the same: a date's 10 to 24 as three 8-byte loads, no call.
 */
static inline int same_text(const char *a, const char *b, size_t n)
{
    if (n < 8 || n > 24)
        return !memcmp(a, b, n);
    uint64_t x[3], y[3];
    memcpy(&x[0], a, 8);
    memcpy(&y[0], b, 8);
    memcpy(&x[1], a + (n - 8) / 2, 8);
    memcpy(&y[1], b + (n - 8) / 2, 8);
    memcpy(&x[2], a + n - 8, 8);
    memcpy(&y[2], b + n - 8, 8);
    return ((x[0] ^ y[0]) | (x[1] ^ y[1]) | (x[2] ^ y[2])) == 0;
}

/* date_out of value c (v) for p's slot pc, from pc's last dates when one was the same text
 * written the same way (then not even parsed). */
static size_t date_cached(cg_release_scratch_t *s, per_policy_t *pc, size_t c, const cg_value_t *v,
                          int days, int gen, int year_only, char *o)
{
    uint8_t how = (uint8_t)(1u | (v->kind == CG_VALUE_DATETIME) << 1 | (gen != 0) << 2 |
                            (year_only != 0) << 3);
    const size_t n_dates = sizeof(pc->dates) / sizeof(pc->dates[0]);
    if (v->len > VALUE_TEXT_MAX)
        return date_out(v, parsed_date(s, c, v), days, gen, year_only, o);
    for (size_t i = 0; i < n_dates; i++)
        if (pc->dates[i].how == how && pc->dates[i].shift == days &&
            pc->dates[i].in_len == v->len && same_text(pc->dates[i].in, v->ptr, v->len)) {
            memcpy(o, pc->dates[i].out, pc->dates[i].out_len);
            return pc->dates[i].out_len;
        }
    size_t n = date_out(v, parsed_date(s, c, v), days, gen, year_only, o);
    size_t k = pc->next_date++ % n_dates;
    pc->dates[k].how = how;
    pc->dates[k].shift = days;
    pc->dates[k].in_len = (uint8_t)v->len;
    memcpy(pc->dates[k].in, v->ptr, v->len);
    pc->dates[k].out_len = (uint8_t)n;
    memcpy(pc->dates[k].out, o, n);
    return n;
}

/* Room for row's parsed values, all to be parsed; -1 when it cannot grow. */
static int parsed_reset(cg_release_scratch_t *s, const cg_row_t *row)
{
    size_t n = row->table->n_columns + 1; /* and the source time */
    if (s->cap_parsed < n) {
        parsed_t *x = realloc(s->parsed, n * sizeof(*x));
        if (!x)
            return -1;
        s->parsed = x;
        s->cap_parsed = n;
    }
    for (size_t i = 0; i < n; i++)
        s->parsed[i].id_state = s->parsed[i].date_state = PARSE_NOT_YET;
    return 0;
}

cg_err_t cg_release_row_prepare(cg_release_scratch_t *s, const cg_row_t *row)
{
    s->row = NULL;
    if (parsed_reset(s, row))
        return CG_ERR_NOMEM;
    s->row = row;
    s->row_values = row->values;
    return CG_OK;
}

/* The patient's key and date shift under p, computed once per patient (c: p's slot). */
static void patient(const cg_policy_t *p, per_policy_t *c, cg_slice_t key)
{
    if (c->key_len == key.len && !memcmp(c->key_in, key.ptr, key.len))
        return;
    int64_t k = keyed(p, "cohortgate/release-key", key.ptr, key.len);
    unsigned char b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)((uint64_t)k >> (56 - 8 * i));
    hex(b, 8, c->key_out);
    c->shift = 0;
    if (p->shift_days) {
        uint64_t h = (uint64_t)keyed(p, "cohortgate/release-shift", key.ptr, key.len);
        c->shift = (int)(h % (uint64_t)(2 * p->shift_days + 1)) - p->shift_days;
    }
    c->key_len = key.len <= CACHE_IN_MAX ? key.len : SIZE_MAX; /* a long one is not kept */
    if (key.len <= CACHE_IN_MAX)
        memcpy(c->key_in, key.ptr, key.len);
}

static int in_cohorts(const cg_policy_t *p, const char *const *cohorts, size_t n)
{
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < p->n_cohorts; k++)
            if (!strcmp(cohorts[i], p->cohorts[k]))
                return 1;
    return 0;
}

/* The row's meta order_id, re-keyed as cohortgate.order_retraction.order_id is (keyed_text),
 * as out's one meta fact. */
static void release_order_id(const cg_policy_t *p, const cg_row_t *row, cg_release_scratch_t *s,
                             cg_row_t *out)
{
    const cg_row_meta_t *m = cg_row_meta(row, CG_ROW_META_ORDER_ID);
    if (!m)
        return;
    char *txt = text_take(s, VALUE_TEXT_MAX);
    keyed_text(p, m->value.ptr, m->value.len, txt);
    s->meta = (cg_row_meta_t){.name = m->name,
                              .value = {txt, 40, CG_VALUE_STRING, 1, 0},
                              .json_key = m->json_key,
                              .json_key_len = m->json_key_len};
    out->meta = &s->meta;
    out->n_meta = 1;
}

cg_err_t cg_release_row(const cg_policy_t *p, const cg_row_t *row, const char *const *cohorts,
                        size_t n_cohorts, int level, const char *set, time_t now,
                        cg_release_scratch_t *s, cg_release_out_t *out,
                        cg_release_outcome_t *outcome)
{
    const cg_target_table_t *t = row->table;
    const table_plan_t *tp = cg_policy__plan(p, t);
    if (!tp || !tp->granted) {
        *outcome = CG_RELEASE_TABLE;
        return CG_OK;
    }
    if (p->n_cohorts && !in_cohorts(p, cohorts, n_cohorts)) {
        *outcome = CG_RELEASE_COHORT;
        return CG_OK;
    }
    if (!cg_policy_in_force(p, now)) {
        *outcome = CG_RELEASE_EXPIRED;
        return CG_OK;
    }
    if (level > p->max_level) { /* a sensitive code: the whole row stays in */
        *outcome = CG_RELEASE_LEVEL;
        out->level = level;
        out->set = set;
        return CG_OK;
    }
    /* room for every value's text, reserved up front so that no pointer moves */
    size_t need = (t->n_columns + 2) * VALUE_TEXT_MAX;
    if (s->cap_vals < t->n_columns) {
        cg_value_t *v = realloc(s->vals, t->n_columns * sizeof(*v));
        if (!v)
            return CG_ERR_NOMEM;
        s->vals = v;
        s->cap_vals = t->n_columns;
    }
    if (s->cap_text < need) {
        char *x = realloc(s->text, need);
        if (!x)
            return CG_ERR_NOMEM;
        s->text = x;
        s->cap_text = need;
    }
    s->used = 0;
    per_policy_t *pc = slot_of(s, p);
    if (s->row != row || s->row_values != row->values) {
        /* not prepared (cg_release_row_prepare): parsed for this subscriber alone */
        if (cg_release_row_prepare(s, row) != CG_OK)
            return CG_ERR_NOMEM;
        s->row = NULL;
    }
    if (row->person_key.len)
        patient(p, pc, row->person_key);
    int shift = row->person_key.len ? pc->shift : 0;
    for (size_t c = 0; c < t->n_columns; c++) {
        const cg_value_t *in = &row->values[c];
        const col_plan_t *cp = &tp->cols[c];
        cg_value_t *o = &s->vals[c];
        *o = *in;
        if (in->kind <= CG_VALUE_NULL)
            continue; /* absent stays absent, a null carries nothing */
        if (cp->action == P_DROP) {
            *o = (cg_value_t){0};
            continue;
        }
        int is_date = in->kind == CG_VALUE_DATE || in->kind == CG_VALUE_DATETIME;
        if (cp->action == P_KEEP && !(is_date && shift)) {
            if (cp->level > level)
                level = cp->level;
            continue;
        }
        char *txt = text_take(s, VALUE_TEXT_MAX);
        size_t n = 0;
        if (cp->action == P_REKEY_INT) {
            n = rekey_id(p, pc, parsed_id(s, c, in), txt);
        } else if (cp->action == P_REKEY_TEXT) {
            keyed_text(p, in->ptr, in->len, txt);
            n = 40;
            o->kind = CG_VALUE_STRING;
        } else if (is_date) {
            int gen = cp->action == P_GEN;
            n = date_cached(s, pc, c, in, shift, gen, p->dates_year || cp->year, txt);
        } else if (cp->gen == CG_GEN_AGE_BAND) {
            const parsed_t *x = parsed_id(s, c, in);
            int64_t y = x->id;
            if (x->id_state == PARSE_OK && y > 0 && y < 10000) {
                int top = p->year_now - p->age_top;
                y = y <= top ? top : y - y % 5; /* everyone at or above the top age: one band */
                n = cg_fmt_int64(txt, y);
            }
        } else if (cp->gen == CG_GEN_ZIP3) {
            n = in->len < 3 ? in->len : 3;
            memcpy(txt, in->ptr, n);
        }
        if (!n) { /* not what its column promised: left out rather than guessed */
            *o = (cg_value_t){0};
            continue;
        }
        o->ptr = txt;
        o->len = (uint32_t)n;
        o->plain = 1;
        if (cp->level > level)
            level = cp->level;
    }
    cg_row_t *r = &out->row;
    *r = *row;
    r->values = s->vals;
    r->meta = NULL; /* a spec's extra facts are not in the catalogue: not released */
    r->n_meta = 0;
    if (p->order_ids) /* save the order a row came from, which its retraction names */
        release_order_id(p, row, s, r);
    r->trace = NULL;
    r->trace_steps = NULL;
    r->person_key = row->person_key.len ? (cg_slice_t){pc->key_out, 16} : row->person_key;
    out->key = r->person_key;
    /* the message id only as the subscriber's pseudonym (retractions match on it); hex, and
     * date_out's digits over a plain time, keep row->source_plain true */
    if (row->message_id.len) {
        if (!(pc->mid_len == row->message_id.len &&
              !memcmp(pc->mid_in, row->message_id.ptr, row->message_id.len))) {
            keyed_text(p, row->message_id.ptr, row->message_id.len, pc->mid_hex);
            pc->mid_len = row->message_id.len <= CACHE_IN_MAX ? row->message_id.len : SIZE_MAX;
            if (row->message_id.len <= CACHE_IN_MAX)
                memcpy(pc->mid_in, row->message_id.ptr, row->message_id.len);
        }
        r->message_id = (cg_slice_t){pc->mid_hex, 40};
    }
    if (row->source_time.len) {
        cg_value_t tv = {row->source_time.ptr, (uint32_t)row->source_time.len,
                         row->source_time.len > 10 ? CG_VALUE_DATETIME : CG_VALUE_DATE, 0, 0};
        char *txt = text_take(s, VALUE_TEXT_MAX);
        size_t n = tp->time_action == P_DROP
                       ? 0
                       : date_cached(s, pc, t->n_columns, &tv, shift, tp->time_action == P_GEN,
                                     p->dates_year, txt);
        r->source_time = (cg_slice_t){n ? txt : NULL, n};
    }
    out->level = level;
    out->set = set;
    out->src = (cg_row_source_t){0};
    *outcome = CG_RELEASE_OK;
    return CG_OK;
}
