/* spec_hl7_value.c - the value of an HL7 v2 path in the message being mapped: raw bytes used in
 * place when decoding would not change them, else decoded into the mapper's scratch buffer. */
#include "spec_mapper.h"

#include <string.h>

static int path_has_all(const cg_hl7_path_t *p)
{
    return p->seg_index == CG_HL7_ALL || p->rep == CG_HL7_ALL;
}

/* Whether decoding raw would give back its bytes unchanged: no escape character in it (unless
 * literal), and UTF-8 that is valid (what cg_hl7_decode checks for a UTF-8 message) or ASCII in a
 * charset that is a superset of ASCII. Anything else goes through the decoder, which also reports
 * the errors. */
static int raw_is_decoded(const cg_mapper_t *mp, cg_slice_t raw, int literal)
{
    const unsigned char *q = (const unsigned char *)raw.ptr, *end = q + raw.len;
    const unsigned char esc = literal ? 0 : (unsigned char)mp->esc;
    /* eight bytes a step while they are ASCII without the escape character (a 0x00 escape is
     * "none": matching NUL bytes then only sends them to the byte loop, which lets them pass).
     * A word with a hit, or one that may be (borrows spread only upwards from a real one), goes
     * to the byte loop, which decides exactly. */
    const uint64_t ones = 0x0101010101010101u, high = 0x8080808080808080u, em = ones * esc;
    uint64_t w, x;
    if (raw.len >= 8) {
        while (end - q >= 8) {
            memcpy(&w, q, 8);
            x = w ^ em;
            if ((w | ((x - ones) & ~x)) & high)
                goto bytes;
            q += 8;
        }
        if (q == end)
            return mp->cs_utf8 || mp->cs_ascii;
        memcpy(&w, end - 8, 8); /* the tail as the value's last word (its head checked) */
        x = w ^ em;
        if (!((w | ((x - ones) & ~x)) & high))
            return mp->cs_utf8 || mp->cs_ascii;
    } else if (raw.len && (const char *)q >= mp->raw_begin && (const char *)q + 8 <= mp->raw_end) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        /* a short value (most codes): one word of the message from it, its bytes the low ones;
         * the bytes after it cannot set a bit below them */
        memcpy(&w, q, 8);
        x = w ^ em;
        if (!((w | ((x - ones) & ~x)) & high & ((UINT64_C(1) << (8 * raw.len)) - 1)))
            return mp->cs_utf8 || mp->cs_ascii;
#endif
    }
bytes:
    while (q < end) {
        unsigned char c = *q;
        if (c < 0x80) {
            if (c == esc && esc)
                return 0;
            q++;
            continue;
        }
        size_t l = mp->cs_utf8 ? cg_utf8_seq_len(q, (size_t)(end - q)) : 0;
        if (!l)
            return 0;
        q += l;
    }
    return mp->cs_utf8 || mp->cs_ascii;
}

/* raw_is_decoded, with its commonest case inline at the call: an empty value, or a short one
 * (most codes) checked as the low bytes of one word of the message. The same answers. */
static inline int raw_plain(const cg_mapper_t *mp, cg_slice_t raw, int literal)
{
    if (!raw.len)
        return mp->cs_plain;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    if (raw.len < 8 && !literal && raw.ptr >= mp->raw_begin && raw.ptr + 8 <= mp->raw_end) {
        const uint64_t ones = 0x0101010101010101u, high = 0x8080808080808080u;
        uint64_t w, x;
        memcpy(&w, raw.ptr, 8);
        x = w ^ mp->esc_word;
        if (!((w | ((x - ones) & ~x)) & high & ((UINT64_C(1) << (8 * raw.len)) - 1)))
            return mp->cs_plain;
    }
#endif
    return raw_is_decoded(mp, raw, literal);
}

/* Every match of a [*] path into mp->scratch, joined by the enclosing concat's sep (else "~");
 * *count gets how many. Out of line: the one-value case below is the hot one. */
static __attribute__((noinline)) cg_err_t all_values(cg_mapper_t *mp, const cg_hl7_path_t *p,
                                                     size_t *count)
{
    cg_hl7_iter_t it;
    cg_hl7_match_t mt;
    cg_error_t he;
    *count = 0;
    cg_hl7_path_begin(&it, mp->m, p, mp->scope);
    while (cg_hl7_path_next(&it, &mt)) {
        if ((*count)++ && cg_buf_puts(&mp->scratch, mp->join_sep) != CG_OK)
            return cg_spec_fail(mp, CG_ERR_NOMEM, "out of memory");
        cg_err_t rc = mt.literal ? cg_hl7_decode_noescape(mp->m, mt.raw, &mp->scratch, &he)
                                 : cg_hl7_decode(mp->m, mt.raw, &mp->scratch, &he);
        if (rc != CG_OK)
            return cg_spec_fail(mp, rc, "%s", he.text);
    }
    return CG_OK;
}

/* raw decoded into mp->scratch and copied to the arena: the value of a path whose bytes are
 * not their own value (escapes, another charset). Out of line, with the decoder's error record:
 * the caller's usual case below needs neither. */
static __attribute__((noinline)) cg_err_t decoded_value(cg_mapper_t *mp, cg_slice_t raw,
                                                        int literal, spec_val_t *out)
{
    cg_error_t he;
    cg_buf_reset(&mp->scratch);
    cg_err_t rc = literal ? cg_hl7_decode_noescape(mp->m, raw, &mp->scratch, &he)
                          : cg_hl7_decode(mp->m, raw, &mp->scratch, &he);
    if (rc != CG_OK)
        return cg_spec_fail(mp, rc, "%s", he.text);
    /* HL7's explicit null "" and an empty value both mean: no value */
    if (mp->scratch.len == 0 || (mp->scratch.len == 2 && !memcmp(mp->scratch.data, "\"\"", 2)))
        return CG_OK;
    *out = cg_spec_val_copy(mp, mp->scratch.data, mp->scratch.len);
    return out->present ? CG_OK : cg_spec_fail(mp, CG_ERR_NOMEM, "out of memory");
}

/* The value of the path that reads one repetition of segment s (cg_hl7_path_one). Inline in
 * cg_spec_hl7_path_value: a call per field read, with the frame the decoder's error record
 * made, cost a tenth of the read. */
static inline __attribute__((always_inline)) cg_err_t
one_value(cg_mapper_t *mp, const cg_hl7_path_t *p, uint32_t s, spec_val_t *out)
{
    cg_slice_t raw;
    *out = ABSENT;
    int got = cg_hl7_path_raw(mp->m, p, s, &raw);
    if (!got)
        return CG_OK;
    if (raw_plain(mp, raw, got == 2)) {
        /* the usual case: the value is its raw bytes, used in place (valid until the next
         * message) instead of decoded into scratch and copied to the arena */
        if (raw.len == 0 || (raw.len == 2 && !memcmp(raw.ptr, "\"\"", 2)))
            return CG_OK;
        *out = (spec_val_t){raw.ptr, raw.len, 1};
        return CG_OK;
    }
    return decoded_value(mp, raw, got == 2, out);
}

/* The segment one-repetition path p reads in the current scope: the cursor itself when p names
 * its segment without an index (OBX-5 for this OBX: most reads), found here without a call;
 * else as cg_hl7_path_seg finds it (which gives the cursor in that case too). */
static inline uint32_t path_seg(const cg_mapper_t *mp, const cg_hl7_path_t *p)
{
    uint32_t cur = mp->scope.cur;
    if (p->seg_index == CG_HL7_FIRST && cur >= mp->scope.begin && cur < mp->scope.end) {
        const char *n = cg_hl7_seg_name(mp->m, cur); /* "" past the last segment */
        if (n[0] == p->seg[0] && n[1] == p->seg[1] && n[2] == p->seg[2])
            return cur;
    }
    return cg_hl7_path_seg(mp->m, p, mp->scope);
}

int cg_spec_hl7_anchor_place(cg_mapper_t *mp, const expr_t *e, uint32_t *place)
{
    if (mp->scope.begin) /* a partial scope: as eval_path, no memo */
        return -1;
    const cg_hl7_path_t *p = &e->u.path;
    uint32_t cur = mp->scope.cur;
    if (p->seg_index != CG_HL7_FIRST || cur >= mp->scope.end) {
        *place = path_seg(mp, p);
        return 0;
    }
    /* the nearest segment of its name at or before the cursor (the OBX's OBR): from the answer
     * at an earlier cursor of this message, when it was one of those, the segments since then
     * are looked at; else path_seg's answer (which may be the first one after) is the start */
    seg_place_t *sp = &mp->seg_places[((unsigned char)p->seg[0] + (unsigned char)p->seg[2]) &
                                      (SEG_PLACE_SIZE - 1)];
    if (sp->gen == mp->gen && sp->end == mp->scope.end && sp->from <= cur &&
        cur - sp->from <= SEG_PLACE_SPAN && sp->at <= sp->from && !memcmp(sp->name, p->seg, 3)) {
        uint32_t at = sp->at;
        for (uint32_t s = sp->from + 1; s <= cur; s++) {
            const char *n = cg_hl7_seg_name(mp->m, s);
            if (n[0] == p->seg[0] && n[1] == p->seg[1] && n[2] == p->seg[2])
                at = s;
        }
        sp->from = cur;
        sp->at = at;
        *place = at;
        return 0;
    }
    uint32_t at = path_seg(mp, p);
    *sp = (seg_place_t){mp->gen, cur, at, mp->scope.end, {p->seg[0], p->seg[1], p->seg[2], 0}};
    *place = at;
    return 0;
}

/* The value of the path p that reads every repetition or segment ([*]), or one by a selector:
 * out of line, as the flattened reader below need not carry it. */
static __attribute__((noinline)) cg_err_t many_value(cg_mapper_t *mp, const cg_hl7_path_t *p,
                                                     spec_val_t *out)
{
    cg_buf_reset(&mp->scratch);
    if (path_has_all(p)) {
        size_t count = 0;
        cg_err_t rc = all_values(mp, p, &count);
        if (rc != CG_OK || !count)
            return rc;
    } else {
        cg_hl7_match_t match;
        cg_error_t he;
        if (!cg_hl7_path_first(mp->m, p, mp->scope, &match))
            return CG_OK;
        if (raw_plain(mp, match.raw, match.literal)) {
            if (match.raw.len == 0 || (match.raw.len == 2 && !memcmp(match.raw.ptr, "\"\"", 2)))
                return CG_OK;
            *out = (spec_val_t){match.raw.ptr, match.raw.len, 1};
            return CG_OK;
        }
        cg_err_t rc = match.literal ? cg_hl7_decode_noescape(mp->m, match.raw, &mp->scratch, &he)
                                    : cg_hl7_decode(mp->m, match.raw, &mp->scratch, &he);
        if (rc != CG_OK)
            return cg_spec_fail(mp, rc, "%s", he.text);
    }
    /* HL7's explicit null "" and an empty value both mean: no value */
    if (mp->scratch.len == 0 || (mp->scratch.len == 2 && !memcmp(mp->scratch.data, "\"\"", 2)))
        return CG_OK;
    *out = cg_spec_val_copy(mp, mp->scratch.data, mp->scratch.len);
    return out->present ? CG_OK : cg_spec_fail(mp, CG_ERR_NOMEM, "out of memory");
}

/* flatten: cg_hl7_path_raw (hl7_access.c) with its field walk, and cg_hl7_path_seg, inline in
 * the one-value read, as the compiler left them calls of their own (a fifth of a read); the
 * paths of many values stay a call (many_value). */
__attribute__((flatten)) cg_err_t cg_spec_hl7_path_value(cg_mapper_t *mp, const expr_t *e,
                                                         spec_val_t *out)
{
    const cg_hl7_path_t *p = &e->u.path;
    *out = ABSENT;
    if (cg_hl7_path_one(p)) {
        uint32_t s = path_seg(mp, p);
        if (s == CG_HL7_NO_SEG)
            return CG_OK;
        if (s == mp->scope.cur || !e->path_id || mp->scope.begin)
            return one_value(mp, p, s, out);
        /* another segment's field (the OBR's, the ORC's, read for each of the order's OBX): its
         * value is that segment's, so the memo keeps it by the segment as well (the entry is
         * what eval_path finds for the path read at that segment itself) */
        path_memo_t *m = memo_slot_at(mp, e->path_id, s);
        if (m->gen == mp->gen && m->path_id == e->path_id && m->cur == s) {
            *out = m->val;
            return CG_OK;
        }
        cg_err_t rc = one_value(mp, p, s, out);
        if (rc == CG_OK)
            *m = (path_memo_t){mp->gen, e->path_id, s, 0, *out};
        return rc;
    }
    return many_value(mp, p, out);
}
