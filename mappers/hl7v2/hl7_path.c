/* hl7_path.c - the path language: compile once, evaluate per message (see cg_hl7.h and
 * specs/PATHS.md). A compiled path is a small value, so specs embed them without allocating. */
#include "cg_hl7.h"

#include <stdio.h>
#include <string.h>

#define CG_HL7_PATH_MAX_NUM 99999u

typedef struct pctx {
    const char *s;
    size_t n, i;
    cg_error_t *err;
} pctx_t;

static cg_err_t perr(pctx_t *c, const char *what)
{
    char found[24];
    if (c->i >= c->n)
        snprintf(found, sizeof(found), "the end");
    else if ((unsigned char)c->s[c->i] < 0x20 || (unsigned char)c->s[c->i] >= 0x7f)
        snprintf(found, sizeof(found), "byte 0x%02x", (unsigned char)c->s[c->i]);
    else
        snprintf(found, sizeof(found), "'%c'", c->s[c->i]);
    int shown = c->n > 200 ? 200 : (int)c->n;
    return cg_error_set(c->err, CG_ERR_SPEC, "", 1, (int)c->i + 1,
                        "path \"%.*s\": %s, found %s at column %zu", shown, c->s, what, found,
                        c->i + 1);
}

static int peek(const pctx_t *c)
{
    return c->i < c->n ? (unsigned char)c->s[c->i] : -1;
}

static cg_err_t number(pctx_t *c, uint32_t *out, const char *what)
{
    int ch = peek(c);
    if (ch < '1' || ch > '9')
        return perr(c, what);
    uint32_t v = 0;
    while ((ch = peek(c)) >= '0' && ch <= '9') {
        v = v * 10 + (uint32_t)(ch - '0');
        if (v > CG_HL7_PATH_MAX_NUM)
            return perr(c, "number too large (at most 99999)");
        c->i++;
    }
    *out = v;
    return CG_OK;
}

/* [n] or [*] */
static cg_err_t index_opt(pctx_t *c, int *out)
{
    *out = CG_HL7_FIRST;
    if (peek(c) != '[')
        return CG_OK;
    c->i++;
    if (peek(c) == '*') {
        c->i++;
        *out = CG_HL7_ALL;
    } else {
        uint32_t v = 0;
        if (number(c, &v, "expected an index (1, 2, ... or *) after '['") != CG_OK)
            return CG_ERR_SPEC;
        *out = (int)v;
    }
    if (peek(c) != ']')
        return perr(c, "expected ']'");
    c->i++;
    return CG_OK;
}

/* One value of a selector: bytes up to '|' or ']' (no control bytes, none of the brackets). */
static cg_err_t sel_value(pctx_t *c)
{
    size_t from = c->i;
    int ch;
    while ((ch = peek(c)) >= 0x20 && ch != 0x7f && ch != '|' && ch != ']' && ch != '[')
        c->i++;
    if (c->i == from)
        return perr(c, "expected a value (such as MR) in the selector");
    if (c->i - from == 1 && c->s[from] == '*' && (peek(c) != ']'))
        return perr(c, "'*' (any repetition) is the selector's last value");
    return CG_OK;
}

/* [C=V|V…] or [C.S=V|V…], after '[' and a digit: the repetition whose component C (its
 * subcomponent S) is V, in order of preference. */
static cg_err_t selector(pctx_t *c, cg_hl7_path_t *p)
{
    uint32_t comp = 0, sub = 0;
    if (number(c, &comp, "expected a component number") != CG_OK)
        return CG_ERR_SPEC;
    if (peek(c) == '.') {
        c->i++;
        if (number(c, &sub, "expected a subcomponent number after '.'") != CG_OK)
            return CG_ERR_SPEC;
    }
    if (peek(c) != '=')
        return perr(c, "expected '=' and the values the component is compared with");
    c->i++;
    size_t from = c->i;
    for (;;) {
        if (sel_value(c) != CG_OK)
            return CG_ERR_SPEC;
        if (peek(c) != '|')
            break;
        c->i++;
    }
    if (peek(c) != ']')
        return perr(c, "expected ']'");
    if (c->i - from > CG_HL7_SEL_MAX)
        return perr(c, "selector values too long (at most 255 bytes)");
    p->rep = CG_HL7_ALL; /* a filtered [*] */
    p->sel_comp = (uint16_t)comp;
    p->sel_sub = (uint16_t)sub;
    p->sel = c->s + from;
    p->sel_len = (uint16_t)(c->i - from);
    c->i++;
    return CG_OK;
}

/* A field's [n], [*] or selector. */
static cg_err_t field_index_opt(pctx_t *c, cg_hl7_path_t *p)
{
    if (peek(c) != '[')
        return index_opt(c, &p->rep);
    /* a number followed by '=' or '.' is a selector's component, else an index */
    size_t j = c->i + 1;
    while (j < c->n && c->s[j] >= '0' && c->s[j] <= '9')
        j++;
    if (j > c->i + 1 && j < c->n && (c->s[j] == '=' || c->s[j] == '.')) {
        c->i++;
        return selector(c, p);
    }
    return index_opt(c, &p->rep);
}

int cg_hl7_path_equal(const cg_hl7_path_t *a, const cg_hl7_path_t *b)
{
    return a->field == b->field && a->comp == b->comp && a->sub == b->sub && a->rep == b->rep &&
           a->seg_index == b->seg_index && !memcmp(a->seg, b->seg, sizeof(a->seg)) &&
           a->sel_len == b->sel_len &&
           (!a->sel_len || (a->sel_comp == b->sel_comp && a->sel_sub == b->sel_sub &&
                            !memcmp(a->sel, b->sel, a->sel_len)));
}

cg_err_t cg_hl7_path_compile(cg_hl7_path_t *p, const char *text, size_t len, cg_error_t *err)
{
    pctx_t c = {text, len, 0, err};
    memset(p, 0, sizeof(*p));
    for (int k = 0; k < 3; k++) {
        int ch = peek(&c);
        if (!((ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9')))
            return perr(&c, k == 0 ? "expected a segment name (3 capital letters or digits, "
                                     "like PID)"
                                   : "segment names have 3 capital letters or digits");
        p->seg[k] = (char)ch;
        c.i++;
    }
    if (index_opt(&c, &p->seg_index) != CG_OK)
        return CG_ERR_SPEC;
    if (c.i == c.n)
        return CG_OK;
    if (peek(&c) != '-')
        return perr(&c, "expected '-' and a field number");
    c.i++;
    if (number(&c, &p->field, "expected a field number (1, 2, ...) after '-'") != CG_OK)
        return CG_ERR_SPEC;
    if (field_index_opt(&c, p) != CG_OK)
        return CG_ERR_SPEC;
    if (peek(&c) == '.') {
        c.i++;
        if (number(&c, &p->comp, "expected a component number (1, 2, ...) after '.'") != CG_OK)
            return CG_ERR_SPEC;
        if (peek(&c) == '.') {
            c.i++;
            if (number(&c, &p->sub, "expected a subcomponent number (1, 2, ...) after '.'") !=
                CG_OK)
                return CG_ERR_SPEC;
        }
    }
    if (c.i != c.n)
        return perr(&c, peek(&c) == '[' ? "only segments and fields take an index [..]"
                                        : "unexpected character after the path");
    return CG_OK;
}

static size_t put_index(char *buf, size_t size, int idx)
{
    if (idx == CG_HL7_FIRST)
        return 0;
    int w = idx == CG_HL7_ALL ? snprintf(buf, size, "[*]") : snprintf(buf, size, "[%d]", idx);
    return w > 0 ? (size_t)w : 0;
}

const char *cg_hl7_path_format(const cg_hl7_path_t *p, char *buf, size_t size)
{
    char tmp[96 + CG_HL7_SEL_MAX];
    size_t n = 0;
    n += (size_t)snprintf(tmp + n, sizeof(tmp) - n, "%.3s", p->seg);
    n += put_index(tmp + n, sizeof(tmp) - n, p->seg_index);
    if (p->field) {
        n += (size_t)snprintf(tmp + n, sizeof(tmp) - n, "-%u", p->field);
        if (p->sel_len && p->sel_sub)
            n += (size_t)snprintf(tmp + n, sizeof(tmp) - n, "[%u.%u=%.*s]", p->sel_comp, p->sel_sub,
                                  (int)p->sel_len, p->sel);
        else if (p->sel_len)
            n += (size_t)snprintf(tmp + n, sizeof(tmp) - n, "[%u=%.*s]", p->sel_comp,
                                  (int)p->sel_len, p->sel);
        else
            n += put_index(tmp + n, sizeof(tmp) - n, p->rep);
        if (p->comp)
            n += (size_t)snprintf(tmp + n, sizeof(tmp) - n, ".%u", p->comp);
        if (p->sub)
            n += (size_t)snprintf(tmp + n, sizeof(tmp) - n, ".%u", p->sub);
    }
    snprintf(buf, size, "%s", tmp);
    return buf;
}

cg_hl7_scope_t cg_hl7_scope_message(const cg_hl7_msg_t *m)
{
    return (cg_hl7_scope_t){CG_HL7_NO_SEG, 0, cg_hl7_seg_count(m)};
}

cg_hl7_scope_t cg_hl7_scope_at(const cg_hl7_msg_t *m, uint32_t seg)
{
    return (cg_hl7_scope_t){seg, 0, cg_hl7_seg_count(m)};
}

static int name_is(const cg_hl7_msg_t *m, uint32_t seg, const char *name)
{
    return memcmp(cg_hl7_seg_name(m, seg), name, 3) == 0;
}

static uint32_t next_in_range(const cg_hl7_iter_t *it, uint32_t from)
{
    uint32_t s = cg_hl7_seg_next(it->m, from, it->p->seg);
    return s != CG_HL7_NO_SEG && s < it->scope.end ? s : CG_HL7_NO_SEG;
}

static uint32_t first_seg(cg_hl7_iter_t *it)
{
    const cg_hl7_scope_t *sc = &it->scope;
    const cg_hl7_path_t *p = it->p;
    if (sc->begin >= sc->end)
        return CG_HL7_NO_SEG;
    if (p->seg_index == CG_HL7_ALL)
        return next_in_range(it, sc->begin);
    if (p->seg_index >= 1) {
        uint32_t s = next_in_range(it, sc->begin);
        for (int k = 1; k < p->seg_index && s != CG_HL7_NO_SEG; k++)
            s = next_in_range(it, s + 1);
        return s;
    }
    if (sc->cur != CG_HL7_NO_SEG && sc->cur < sc->end && sc->cur >= sc->begin) {
        if (name_is(it->m, sc->cur, p->seg))
            return sc->cur;
        uint32_t s = cg_hl7_seg_prev(it->m, sc->cur, p->seg);
        if (s != CG_HL7_NO_SEG && s >= sc->begin)
            return s;
    }
    return next_in_range(it, sc->begin);
}

/* The first segment p reads in scope (its end clamped to the message), as it->seg. */
static uint32_t begin_seg(cg_hl7_iter_t *it, const cg_hl7_msg_t *m, const cg_hl7_path_t *p,
                          cg_hl7_scope_t scope)
{
    it->m = m;
    it->p = p;
    if (scope.end > cg_hl7_seg_count(m))
        scope.end = cg_hl7_seg_count(m);
    it->scope = scope;
    return it->seg = first_seg(it);
}

void cg_hl7_path_begin(cg_hl7_iter_t *it, const cg_hl7_msg_t *m, const cg_hl7_path_t *p,
                       cg_hl7_scope_t scope)
{
    memset(it, 0, sizeof(*it));
    begin_seg(it, m, p, scope);
    it->rep = 1;
    it->started = 1;
}

/* The repetition of segment s that selector p picks: the first whose compared value is the
 * selector's first value, else its second, …; 0 when none. The values are compared with the raw
 * bytes (type codes and authorities have no escapes); one pass over the repetitions per value,
 * which keeps the preference order without storing anything. */
static __attribute__((noinline)) uint32_t select_rep(const cg_hl7_msg_t *m, const cg_hl7_path_t *p,
                                                     uint32_t s)
{
    uint32_t n = cg_hl7_rep_count(m, s, p->field);
    const char *v = p->sel, *end = p->sel + p->sel_len;
    while (v < end && n) {
        const char *bar = memchr(v, '|', (size_t)(end - v));
        size_t vl = bar ? (size_t)(bar - v) : (size_t)(end - v);
        if (vl == 1 && *v == '*')
            return 1;
        for (uint32_t r = 1; r <= n; r++) {
            cg_slice_t raw;
            if (cg_hl7_get_raw(m, s, p->field, r, p->sel_comp, p->sel_sub, &raw) && raw.len == vl &&
                !memcmp(raw.ptr, v, vl))
                return r;
        }
        v += vl + 1;
    }
    return 0;
}

/* The one repetition a path without [*] reads. */
static uint32_t fixed_rep(const cg_hl7_path_t *p)
{
    return p->rep == CG_HL7_FIRST ? 1 : (uint32_t)p->rep;
}

/* p's value in segment s, repetition r, into out with its position; 0 when there is none. */
static int read_value(const cg_hl7_msg_t *m, const cg_hl7_path_t *p, uint32_t s, uint32_t r,
                      cg_hl7_match_t *out)
{
    if (!cg_hl7_get_raw(m, s, p->field, r, p->comp, p->sub, &out->raw))
        return 0;
    out->seg = s;
    out->field = p->field;
    out->rep = r;
    out->comp = p->comp;
    out->sub = p->sub;
    out->literal = p->field <= 2 && name_is(m, s, "MSH");
    return 1;
}

static void advance_seg(cg_hl7_iter_t *it)
{
    it->seg = it->p->seg_index == CG_HL7_ALL ? next_in_range(it, it->seg + 1) : CG_HL7_NO_SEG;
    it->rep = 1;
}

int cg_hl7_path_next(cg_hl7_iter_t *it, cg_hl7_match_t *out)
{
    const cg_hl7_path_t *p = it->p;
    while (it->seg != CG_HL7_NO_SEG) {
        uint32_t s = it->seg;
        memset(out, 0, sizeof(*out));
        out->seg = s;
        if (p->field == 0) {
            out->raw = cg_hl7_seg_bytes(it->m, s);
            out->literal = 1;
            advance_seg(it);
            return 1;
        }
        uint32_t r;
        if (p->sel_len) { /* the one repetition the selector picks, if any */
            r = select_rep(it->m, p, s);
            advance_seg(it);
        } else if (p->rep == CG_HL7_ALL) {
            if (it->rep > cg_hl7_rep_count(it->m, s, p->field)) {
                advance_seg(it);
                continue;
            }
            r = it->rep++;
        } else {
            r = fixed_rep(p);
            advance_seg(it);
        }
        if (r && read_value(it->m, p, s, r, out))
            return 1;
    }
    return 0;
}

int cg_hl7_path_first(const cg_hl7_msg_t *m, const cg_hl7_path_t *p, cg_hl7_scope_t scope,
                      cg_hl7_match_t *out)
{
    cg_hl7_iter_t it;
    /* [*] (selectors too), whole segments: the iterator's first match */
    if (p->seg_index == CG_HL7_ALL || p->rep == CG_HL7_ALL || p->field == 0) {
        cg_hl7_path_begin(&it, m, p, scope);
        return cg_hl7_path_next(&it, out);
    }
    /* One segment, one repetition (what specs read nearly always): path_next's steps for it,
     * read where the index is at hand (hl7_access.c) */
    uint32_t s = cg_hl7_path_seg(m, p, scope);
    return s != CG_HL7_NO_SEG && cg_hl7_path_read(m, p, s, out);
}

cg_err_t cg_hl7_path_get(cg_hl7_msg_t *m, const cg_hl7_path_t *p, cg_hl7_scope_t scope, char sep,
                         cg_buf_t *out, size_t *count, cg_error_t *err)
{
    cg_hl7_iter_t it;
    cg_hl7_match_t mt;
    size_t n = 0;
    cg_hl7_path_begin(&it, m, p, scope);
    while (cg_hl7_path_next(&it, &mt)) {
        if (n++ && sep && cg_buf_putc(out, sep) != CG_OK)
            return CG_ERR_NOMEM;
        cg_err_t rc = mt.literal ? cg_hl7_decode_noescape(m, mt.raw, out, err)
                                 : cg_hl7_decode(m, mt.raw, out, err);
        if (rc != CG_OK)
            return rc;
    }
    if (count)
        *count = n;
    return cg_buf_append(out, "", 0);
}
