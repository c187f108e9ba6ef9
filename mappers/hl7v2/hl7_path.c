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
    if (index_opt(&c, &p->rep) != CG_OK)
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
    char tmp[96];
    size_t n = 0;
    n += (size_t)snprintf(tmp + n, sizeof(tmp) - n, "%.3s", p->seg);
    n += put_index(tmp + n, sizeof(tmp) - n, p->seg_index);
    if (p->field) {
        n += (size_t)snprintf(tmp + n, sizeof(tmp) - n, "-%u", p->field);
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
        if (p->rep == CG_HL7_ALL) {
            if (it->rep > cg_hl7_rep_count(it->m, s, p->field)) {
                advance_seg(it);
                continue;
            }
            r = it->rep++;
        } else {
            r = fixed_rep(p);
            advance_seg(it);
        }
        if (read_value(it->m, p, s, r, out))
            return 1;
    }
    return 0;
}

int cg_hl7_path_first(const cg_hl7_msg_t *m, const cg_hl7_path_t *p, cg_hl7_scope_t scope,
                      cg_hl7_match_t *out)
{
    cg_hl7_iter_t it;
    if (p->seg_index == CG_HL7_ALL || p->rep == CG_HL7_ALL || p->field == 0) {
        cg_hl7_path_begin(&it, m, p, scope);
        return cg_hl7_path_next(&it, out);
    }
    /* One segment, one repetition (what specs read nearly always): path_next's steps for it,
     * without the rest of the iterator's state. */
    uint32_t s = begin_seg(&it, m, p, scope);
    return s != CG_HL7_NO_SEG && read_value(m, p, s, fixed_rep(p), out);
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
