/* hl7_access.c - reading an indexed HL7 v2 message (cg_hl7.h): segments, fields, repetitions,
 * components and subcomponents by number, found in the tables hl7_parse.c built (repetitions
 * and components split on first use, and remembered per segment), and the nearest segment of a
 * name before or after another. */
#include "hl7_impl.h"

#include <stdlib.h>
#include <string.h>

/* ---- accessors ------------------------------------------------------------------------------- */

cg_slice_t cg_hl7_msg_bytes(const cg_hl7_msg_t *m)
{
    return (cg_slice_t){m->data, m->len};
}

size_t cg_hl7_msg_offset(const cg_hl7_msg_t *m)
{
    return m->offset;
}

size_t cg_hl7_msg_number(const cg_hl7_msg_t *m)
{
    return m->number;
}

const cg_hl7_delims_t *cg_hl7_msg_delims(const cg_hl7_msg_t *m)
{
    return &m->d;
}

const cg_hl7_batch_t *cg_hl7_msg_batch(const cg_hl7_msg_t *m)
{
    return &m->batch;
}

const char *cg_hl7_msg_charset(const cg_hl7_msg_t *m)
{
    return m->charset;
}

uint32_t cg_hl7_msg_wrapped(const cg_hl7_msg_t *m)
{
    return m->wrapped;
}

uint32_t cg_hl7_seg_count(const cg_hl7_msg_t *m)
{
    return m->nsegs;
}

const char *cg_hl7_seg_name(const cg_hl7_msg_t *m, uint32_t seg)
{
    return seg < m->nsegs ? m->segs[seg].name : "";
}

cg_slice_t cg_hl7_seg_bytes(const cg_hl7_msg_t *m, uint32_t seg)
{
    if (seg >= m->nsegs)
        return (cg_slice_t){NULL, 0};
    const cg_hl7_seg_ix_t *s = &m->segs[seg];
    return (cg_slice_t){m->data + s->start, s->end - s->start};
}

uint32_t cg_hl7_field_count(const cg_hl7_msg_t *m, uint32_t seg)
{
    if (seg >= m->nsegs)
        return 0;
    uint32_t ntok = m->segs[seg + 1].tok0 - m->segs[seg].tok0;
    return m->segs[seg].header ? ntok : ntok - 1;
}

/* Token of field f in seg, or UINT32_MAX when absent. MSH-1 has no token. Inline: it is a few
 * loads, less than the call it cost on every field read. */
static inline __attribute__((always_inline)) uint32_t field_tok(const cg_hl7_msg_t *m, uint32_t seg,
                                                                uint32_t field)
{
    if (seg >= m->nsegs)
        return UINT32_MAX;
    const cg_hl7_seg_ix_t *s = &m->segs[seg];
    uint32_t t;
    if (s->header) {
        if (field == 1)
            return UINT32_MAX;
        t = field == 0 ? s->tok0 : s->tok0 + field - 1;
    } else {
        t = s->tok0 + field;
    }
    return t < m->segs[seg + 1].tok0 ? t : UINT32_MAX;
}

static uint32_t leaf_start(const cg_hl7_msg_t *m, const cg_hl7_seg_ix_t *s, uint32_t l)
{
    return l == s->leaf0 ? s->start : m->leaf_end[l - 1] + 1;
}

static cg_slice_t leaves(const cg_hl7_msg_t *m, const cg_hl7_seg_ix_t *s, uint32_t l0, uint32_t l1)
{
    uint32_t a = leaf_start(m, s, l0), e = m->leaf_end[l1 - 1];
    return (cg_slice_t){m->data + a, e - a};
}

/* Leaves [l0, l1) of one unit, the last one closing it: *k0, *k1 get the leaves of its part k
 * (1-based) at delimiter level lvl (2 components, 3 repetitions, 1 subcomponents). Returns the
 * number of parts.
 * Delimiter levels are those of m->cls: the byte at a recorded offset inside a field is a
 * repetition, component or subcomponent delimiter (only a field's last leaf ends at a field
 * separator, a terminator or the end of the input, and it is never looked at). */
uint32_t cg_hl7__split_leaves(const cg_hl7_msg_t *m, uint32_t l0, uint32_t l1, unsigned lvl,
                              uint32_t k, uint32_t *k0, uint32_t *k1)
{
    const uint32_t *le = m->leaf_end;
    const unsigned char *d = (const unsigned char *)m->data;
    uint32_t idx = 1, start = l0;
    for (uint32_t l = l0; l + 1 < l1; l++) {
        if (m->cls[d[le[l]]] >= lvl) {
            if (idx == k) {
                *k0 = start;
                *k1 = l + 1;
                return k;
            }
            idx++;
            start = l + 1;
        }
    }
    if (idx == k) {
        *k0 = start;
        *k1 = l1;
    }
    return idx;
}

/* Leaves of repetition rep (1-based) of token t; 0 when there is none. */
static int rep_leaves(const cg_hl7_msg_t *m, uint32_t t, uint32_t rep, uint32_t *l0, uint32_t *l1)
{
    return rep &&
           cg_hl7__split_leaves(m, m->tok_leaf[t], m->tok_leaf[t + 1], L_REP, rep, l0, l1) == rep;
}

/* Leaves of component comp (1-based) of repetition rep of token t; 0 when there is none. One
 * walk over the field's leaves that stops at the component's end. */
static int comp_leaves(const cg_hl7_msg_t *m, uint32_t t, uint32_t rep, uint32_t comp, uint32_t *k0,
                       uint32_t *k1)
{
    if (!rep || !comp)
        return 0;
    const uint32_t *le = m->leaf_end;
    const unsigned char *d = (const unsigned char *)m->data;
    uint32_t l0 = m->tok_leaf[t], l1 = m->tok_leaf[t + 1];
    uint32_t r = 1, c = 1, start = l0;
    for (uint32_t l = l0; l + 1 < l1; l++) {
        unsigned v = m->cls[d[le[l]]];
        if (v < L_COMP)
            continue;
        if (r == rep && c == comp) {
            *k0 = start;
            *k1 = l + 1;
            return 1;
        }
        if (v >= L_REP) {
            if (r == rep)
                return 0;
            r++;
            c = 1;
        } else {
            c++;
        }
        start = l + 1;
    }
    if (r == rep && c == comp) {
        *k0 = start;
        *k1 = l1;
        return 1;
    }
    return 0;
}

/* ---- per-segment tables, derived on first access ----
 * For segment s with tokens [t0, t1) and leaves [L0, L1): tr (first repetition of every token,
 * T+1 entries), rc (first component of every repetition) and cl (first leaf of every component,
 * absolute), each closed by a sentinel; repetition and component numbers are local to the
 * segment. One pass over the segment's delimiter offsets builds them (no text is rescanned);
 * every later access is O(1). Short fields are walked instead (CG_HL7_WALK_MAX), and so is every
 * field should the pool not grow. */
static int force_walk;

void cg_hl7__force_walk(int on)
{
    __atomic_store_n(&force_walk, on, __ATOMIC_RELAXED);
}

static __attribute__((noinline)) const cg_hl7_hier_t *derive_hier(cg_hl7_msg_t *m, uint32_t seg)
{
    if (!m->hier_live) {
        if (m->nsegs > m->hier_at_cap) {
            size_t cap = m->hier_at_cap ? m->hier_at_cap : 64;
            while (cap < m->nsegs)
                cap *= 2;
            uint32_t *p = realloc(m->hier_at, cap * sizeof(uint32_t));
            if (!p)
                return NULL;
            m->hier_at = p;
            m->hier_at_cap = (uint32_t)cap;
        }
        memset(m->hier_at, 0xff, m->nsegs * sizeof(uint32_t));
        m->hier_len = 0;
        m->hier_live = 1;
    }
    const uint32_t *tl = m->tok_leaf;
    uint32_t t0 = m->segs[seg].tok0, t1 = m->segs[seg + 1].tok0, T = t1 - t0;
    uint32_t L0 = tl[t0], L1 = tl[t1], L = L1 - L0;
    uint32_t o = m->hier_at[seg];
    if (o == UINT32_MAX) {
        size_t need = (size_t)m->hier_len + T + 2 * (size_t)L + 3;
        if (need > m->hier_cap) {
            size_t cap = m->hier_cap ? m->hier_cap : 1024;
            while (cap < need)
                cap *= 2;
            if (cap > UINT32_MAX)
                return NULL;
            uint32_t *p = realloc(m->hier, cap * sizeof(uint32_t));
            if (!p)
                return NULL;
            m->hier = p;
            m->hier_cap = (uint32_t)cap;
            m->hier_seg = UINT32_MAX; /* the cached pointers moved */
        }
        o = m->hier_len;
        uint32_t *tr = m->hier + o, *rc = tr + T + 1, *cl = rc + L + 1;
        const uint32_t *le = m->leaf_end;
        const unsigned char *d = (const unsigned char *)m->data;
        const uint8_t *cls = m->cls;
        /* The old eager scheme, one segment at a time and without a branch per leaf: a slot
         * written for a lower level is scratch that the next entry of that table overwrites.
         * The byte at a leaf's end is its delimiter: inside a field a repetition, component or
         * subcomponent one, at a field's end the field separator or a terminator. The
         * segment's last leaf closes a field without being read (it may be the end of the
         * input). */
        tr[0] = 0;
        rc[0] = 0;
        cl[0] = L0;
        uint32_t nt = 1, nr = 1, nc = 1;
        for (uint32_t l = L0; l < L1; l++) {
            int last = l + 1 == L1;
            unsigned v = cls[d[last ? 0 : le[l]]];
            v = last ? L_FIELD : v;
            cl[nc] = l + 1;
            nc += v >= L_COMP;
            rc[nr] = nc - 1;
            nr += v >= L_REP;
            tr[nt] = nr - 1;
            nt += v >= L_FIELD;
        }
        if (nt != T + 1) /* cannot be: the field table says where fields end */
            return NULL;
        m->hier_at[seg] = o;
        m->hier_len = (uint32_t)(o + T + 2 * L + 3);
    }
    cg_hl7_hier_t *h = &m->hier_last;
    h->tr = m->hier + o;
    h->rc = h->tr + T + 1;
    h->cl = h->rc + L + 1;
    h->t0 = t0;
    m->hier_seg = seg;
    return h;
}

/* The tables of segment seg; 0 when they cannot be had (then walk). Consumers read one segment
 * at a time, so the last one is kept at hand. */
/* Fields with at most this many leaves are walked: as cheap as a table lookup, and it spares the
 * pass over the whole segment that a mapper reading a few short fields would pay for nothing.
 * Longer ones (long repeating fields) use the tables, so reading every value stays linear. */
#define CG_HL7_WALK_MAX 8

static inline const cg_hl7_hier_t *get_hier(const cg_hl7_msg_t *cm, uint32_t seg, uint32_t t)
{
    int mode = __atomic_load_n(&force_walk, __ATOMIC_RELAXED);
    if (cm->tok_leaf[t + 1] - cm->tok_leaf[t] <= CG_HL7_WALK_MAX ? mode != 2 : mode == 1)
        return NULL;
    if (seg == cm->hier_seg)
        return &cm->hier_last;
    /* The cache is no part of the message's value: cg_hl7_msg_t is one thread's (cg_hl7.h). */
    return derive_hier((cg_hl7_msg_t *)(uintptr_t)cm, seg);
}

uint32_t cg_hl7_rep_count(const cg_hl7_msg_t *m, uint32_t seg, uint32_t field)
{
    if (seg < m->nsegs && m->segs[seg].header && field == 1)
        return 1;
    uint32_t t = field_tok(m, seg, field), x, y;
    if (t == UINT32_MAX)
        return 0;
    const cg_hl7_hier_t *h = get_hier(m, seg, t);
    if (h)
        return h->tr[t - h->t0 + 1] - h->tr[t - h->t0];
    return cg_hl7__split_leaves(m, m->tok_leaf[t], m->tok_leaf[t + 1], L_REP, 0, &x, &y);
}

uint32_t cg_hl7_comp_count(const cg_hl7_msg_t *m, uint32_t seg, uint32_t field, uint32_t rep)
{
    if (seg < m->nsegs && m->segs[seg].header && field == 1)
        return rep == 1;
    uint32_t t = field_tok(m, seg, field), r0, r1, x, y;
    if (t == UINT32_MAX || rep == 0)
        return 0;
    const cg_hl7_hier_t *h = get_hier(m, seg, t);
    if (h) {
        uint32_t i = t - h->t0;
        if (rep > h->tr[i + 1] - h->tr[i])
            return 0;
        uint32_t r = h->tr[i] + rep - 1;
        return h->rc[r + 1] - h->rc[r];
    }
    if (!rep_leaves(m, t, rep, &r0, &r1))
        return 0;
    return cg_hl7__split_leaves(m, r0, r1, L_COMP, 0, &x, &y);
}

/* Leaves of component comp of repetition rep of token t in seg; 0 when absent. */
static inline int comp_range(const cg_hl7_msg_t *m, uint32_t seg, uint32_t t, uint32_t rep,
                             uint32_t comp, uint32_t *l0, uint32_t *l1)
{
    const cg_hl7_hier_t *h = get_hier(m, seg, t);
    if (!h)
        return comp_leaves(m, t, rep, comp, l0, l1);
    uint32_t i = t - h->t0;
    if (rep == 0 || comp == 0 || rep > h->tr[i + 1] - h->tr[i])
        return 0;
    uint32_t r = h->tr[i] + rep - 1;
    if (comp > h->rc[r + 1] - h->rc[r])
        return 0;
    uint32_t c = h->rc[r] + comp - 1;
    *l0 = h->cl[c];
    *l1 = h->cl[c + 1];
    return 1;
}

uint32_t cg_hl7_sub_count(const cg_hl7_msg_t *m, uint32_t seg, uint32_t field, uint32_t rep,
                          uint32_t comp)
{
    if (seg < m->nsegs && m->segs[seg].header && field == 1)
        return rep == 1 && comp == 1;
    uint32_t t = field_tok(m, seg, field), l0, l1;
    if (t == UINT32_MAX || !comp_range(m, seg, t, rep, comp, &l0, &l1))
        return 0;
    return l1 - l0; /* inside a component, every delimiter separates subcomponents */
}

/* cg_hl7_get_raw, inline into the path readers: a spec's field read is on the mapper's hot path,
 * where the call and the match record cost as much as the read. */
static inline __attribute__((always_inline)) int get_raw(const cg_hl7_msg_t *m, uint32_t seg,
                                                         uint32_t field, uint32_t rep,
                                                         uint32_t comp, uint32_t sub,
                                                         cg_slice_t *out)
{
    *out = (cg_slice_t){m->data, 0};
    if (seg >= m->nsegs)
        return 0;
    const cg_hl7_seg_ix_t *s = &m->segs[seg];
    if (s->header && field == 1) {
        if (rep > 1 || comp > 1 || sub > 1)
            return 0;
        *out = (cg_slice_t){m->data + s->start + 3, 1};
        return 1;
    }
    uint32_t t = field_tok(m, seg, field);
    if (t == UINT32_MAX)
        return 0;
    uint32_t l0, l1;
    if (rep == 0) { /* a whole field needs only the field table */
        if (comp || sub)
            return 0;
        *out = leaves(m, s, m->tok_leaf[t], m->tok_leaf[t + 1]);
        return 1;
    }
    if (comp == 0) {
        if (sub)
            return 0;
        const cg_hl7_hier_t *h = get_hier(m, seg, t);
        if (h) {
            uint32_t i = t - h->t0;
            if (rep > h->tr[i + 1] - h->tr[i])
                return 0;
            uint32_t r = h->tr[i] + rep - 1;
            l0 = h->cl[h->rc[r]];
            l1 = h->cl[h->rc[r + 1]];
        } else if (!rep_leaves(m, t, rep, &l0, &l1)) {
            return 0;
        }
        *out = leaves(m, s, l0, l1);
        return 1;
    }
    if (!comp_range(m, seg, t, rep, comp, &l0, &l1))
        return 0;
    if (sub == 0) {
        *out = leaves(m, s, l0, l1);
        return 1;
    }
    if (sub > l1 - l0)
        return 0;
    *out = leaves(m, s, l0 + sub - 1, l0 + sub);
    return 1;
}

int cg_hl7_get_raw(const cg_hl7_msg_t *m, uint32_t seg, uint32_t field, uint32_t rep, uint32_t comp,
                   uint32_t sub, cg_slice_t *out)
{
    return get_raw(m, seg, field, rep, comp, sub, out);
}

static void memo_live(cg_hl7_msg_t *m)
{
    if (!m->prev_live) {
        memset(m->prev_memo, 0, sizeof(m->prev_memo));
        memset(m->next_memo, 0, sizeof(m->next_memo));
        m->prev_live = 1;
    }
}

static unsigned memo_slot(const char *name)
{
    return ((unsigned char)name[0] + (unsigned char)name[1] + (unsigned char)name[2]) & 3;
}

uint32_t cg_hl7_seg_prev(const cg_hl7_msg_t *cm, uint32_t seg, const char *name)
{
    /* the memo is a cache of a read: writing it does not change the message (cg_hl7.h: a
     * message is not thread-safe even for reading) */
    cg_hl7_msg_t *m = (cg_hl7_msg_t *)(uintptr_t)cm;
    if (seg > m->nsegs)
        seg = m->nsegs;
    memo_live(m);
    unsigned slot = memo_slot(name);
    uint32_t stop = 0, found = CG_HL7_NO_SEG;
    if (!memcmp(m->prev_memo[slot].name, name, 3) && m->prev_memo[slot].from <= seg) {
        /* only the segments since the last question are new */
        stop = m->prev_memo[slot].from;
        found = m->prev_memo[slot].found;
    }
    for (uint32_t s = seg; s-- > stop;)
        if (!memcmp(m->segs[s].name, name, 3)) {
            found = s;
            break;
        }
    memcpy(m->prev_memo[slot].name, name, 3);
    m->prev_memo[slot].from = seg;
    m->prev_memo[slot].found = found;
    return found;
}

uint32_t cg_hl7_seg_next(const cg_hl7_msg_t *cm, uint32_t from, const char *name)
{
    cg_hl7_msg_t *m = (cg_hl7_msg_t *)(uintptr_t)cm; /* the memo, as in cg_hl7_seg_prev */
    memo_live(m);
    unsigned slot = memo_slot(name);
    if (!memcmp(m->next_memo[slot].name, name, 3) && m->next_memo[slot].from <= from &&
        (m->next_memo[slot].found == CG_HL7_NO_SEG || m->next_memo[slot].found >= from))
        return m->next_memo[slot].found; /* nothing of that name between from and it */
    uint32_t found = CG_HL7_NO_SEG;
    for (uint32_t s = from; s < m->nsegs; s++)
        if (!memcmp(m->segs[s].name, name, 3)) {
            found = s;
            break;
        }
    memcpy(m->next_memo[slot].name, name, 3);
    m->next_memo[slot].from = from;
    m->next_memo[slot].found = found;
    return found;
}

/* The first segment named name in [from, end), or CG_HL7_NO_SEG. */
static uint32_t next_named(const cg_hl7_msg_t *m, uint32_t from, uint32_t end, const char *name)
{
    uint32_t s = cg_hl7_seg_next(m, from, name);
    return s != CG_HL7_NO_SEG && s < end ? s : CG_HL7_NO_SEG;
}

/* cg_hl7_path_first's steps for a path that reads one repetition of one segment, where the index
 * is at hand (iterator state and calls between the files cost more than the read on the mapper's
 * hot path): the segment as hl7_path.c's first_seg finds it ... */
uint32_t cg_hl7_path_seg(const cg_hl7_msg_t *m, const cg_hl7_path_t *p, cg_hl7_scope_t sc)
{
    uint32_t end = sc.end < m->nsegs ? sc.end : m->nsegs, s;
    if (sc.begin >= end)
        return CG_HL7_NO_SEG;
    if (p->seg_index >= 1) {
        s = next_named(m, sc.begin, end, p->seg);
        for (int k = 1; k < p->seg_index && s != CG_HL7_NO_SEG; k++)
            s = next_named(m, s + 1, end, p->seg);
        return s;
    }
    if (sc.cur != CG_HL7_NO_SEG && sc.cur < end && sc.cur >= sc.begin) {
        if (!memcmp(m->segs[sc.cur].name, p->seg, 3))
            return sc.cur; /* OBX-5 read for this OBX: the usual case */
        s = cg_hl7_seg_prev(m, sc.cur, p->seg);
        if (s != CG_HL7_NO_SEG && s >= sc.begin)
            return s;
    }
    return next_named(m, sc.begin, end, p->seg);
}

/* ... and its value there, as read_value reads it */
int cg_hl7_path_raw(const cg_hl7_msg_t *m, const cg_hl7_path_t *p, uint32_t s, cg_slice_t *raw)
{
    uint32_t rep = p->rep == CG_HL7_FIRST ? 1 : (uint32_t)p->rep;
    if (!get_raw(m, s, p->field, rep, p->comp, p->sub, raw))
        return 0;
    return p->field <= 2 && !memcmp(m->segs[s].name, "MSH", 3) ? 2 : 1;
}

int cg_hl7_path_read(const cg_hl7_msg_t *m, const cg_hl7_path_t *p, uint32_t s, cg_hl7_match_t *out)
{
    int got = cg_hl7_path_raw(m, p, s, &out->raw);
    if (!got)
        return 0;
    out->seg = s;
    out->field = p->field;
    out->rep = p->rep == CG_HL7_FIRST ? 1 : (uint32_t)p->rep;
    out->comp = p->comp;
    out->sub = p->sub;
    out->literal = got == 2;
    return 1;
}
