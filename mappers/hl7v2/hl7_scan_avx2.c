/* hl7_scan_avx2.c - the AVX2 + BMI2 block scanner of the structural index (see hl7_parse.c).
 *
 * Each 64-byte block is classified into two masks: every delimiter (leaf ends) and
 * field-or-higher (a segment terminator being the highest level). The tables then need no
 * per-delimiter decision: the entry a field delimiter adds to the field table is its rank among
 * all delimiters, which PEXT turns into bit positions, and a table is written eight bits of mask
 * at a time from a lookup table, without a branch per delimiter.
 * The tables do not depend on where segments end, so whole blocks are appended at once (two
 * per step, 128 bytes, skipped when they hold no delimiter); then their terminators are passed
 * in order, the common ones here (CR, LF or CRLF followed by a well-formed segment, no limit
 * reached), any other by returning it to the caller, which decides as the portable path does.
 * Its results are identical (tests/unit/test_hl7_scan.c).
 *
 * Built with target attributes and chosen at run time, so the library still runs without AVX2.
 */
#include "hl7_impl.h"

#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

#define CG_AVX2 __attribute__((target("avx2,bmi,bmi2,popcnt")))

int cg_hl7__scan_avx2_ok(void)
{
    /* 0 unknown, 1 no, 2 yes; relaxed atomics: threads may race to store the same answer. */
    static int ok;
    int v = __atomic_load_n(&ok, __ATOMIC_RELAXED);
    if (!v) {
        __builtin_cpu_init();
        int yes = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("bmi") &&
                  __builtin_cpu_supports("bmi2") && __builtin_cpu_supports("popcnt");
        /* PEXT is microcoded (hundreds of cycles) on AMD before Zen 3: the SSE2 path wins there. */
        if (__builtin_cpu_is("amd") && (__builtin_cpu_is("znver1") || __builtin_cpu_is("znver2")))
            yes = 0;
        v = yes ? 2 : 1;
        __atomic_store_n(&ok, v, __ATOMIC_RELAXED);
    }
    return v == 2;
}

/* For each byte value, the positions of its set bits packed into bytes, lowest first. */
static const uint64_t bit_pos[256] = {
    0x0000000000000000u, 0x0000000000000000u, 0x0000000000000001u, 0x0000000000000100u,
    0x0000000000000002u, 0x0000000000000200u, 0x0000000000000201u, 0x0000000000020100u,
    0x0000000000000003u, 0x0000000000000300u, 0x0000000000000301u, 0x0000000000030100u,
    0x0000000000000302u, 0x0000000000030200u, 0x0000000000030201u, 0x0000000003020100u,
    0x0000000000000004u, 0x0000000000000400u, 0x0000000000000401u, 0x0000000000040100u,
    0x0000000000000402u, 0x0000000000040200u, 0x0000000000040201u, 0x0000000004020100u,
    0x0000000000000403u, 0x0000000000040300u, 0x0000000000040301u, 0x0000000004030100u,
    0x0000000000040302u, 0x0000000004030200u, 0x0000000004030201u, 0x0000000403020100u,
    0x0000000000000005u, 0x0000000000000500u, 0x0000000000000501u, 0x0000000000050100u,
    0x0000000000000502u, 0x0000000000050200u, 0x0000000000050201u, 0x0000000005020100u,
    0x0000000000000503u, 0x0000000000050300u, 0x0000000000050301u, 0x0000000005030100u,
    0x0000000000050302u, 0x0000000005030200u, 0x0000000005030201u, 0x0000000503020100u,
    0x0000000000000504u, 0x0000000000050400u, 0x0000000000050401u, 0x0000000005040100u,
    0x0000000000050402u, 0x0000000005040200u, 0x0000000005040201u, 0x0000000504020100u,
    0x0000000000050403u, 0x0000000005040300u, 0x0000000005040301u, 0x0000000504030100u,
    0x0000000005040302u, 0x0000000504030200u, 0x0000000504030201u, 0x0000050403020100u,
    0x0000000000000006u, 0x0000000000000600u, 0x0000000000000601u, 0x0000000000060100u,
    0x0000000000000602u, 0x0000000000060200u, 0x0000000000060201u, 0x0000000006020100u,
    0x0000000000000603u, 0x0000000000060300u, 0x0000000000060301u, 0x0000000006030100u,
    0x0000000000060302u, 0x0000000006030200u, 0x0000000006030201u, 0x0000000603020100u,
    0x0000000000000604u, 0x0000000000060400u, 0x0000000000060401u, 0x0000000006040100u,
    0x0000000000060402u, 0x0000000006040200u, 0x0000000006040201u, 0x0000000604020100u,
    0x0000000000060403u, 0x0000000006040300u, 0x0000000006040301u, 0x0000000604030100u,
    0x0000000006040302u, 0x0000000604030200u, 0x0000000604030201u, 0x0000060403020100u,
    0x0000000000000605u, 0x0000000000060500u, 0x0000000000060501u, 0x0000000006050100u,
    0x0000000000060502u, 0x0000000006050200u, 0x0000000006050201u, 0x0000000605020100u,
    0x0000000000060503u, 0x0000000006050300u, 0x0000000006050301u, 0x0000000605030100u,
    0x0000000006050302u, 0x0000000605030200u, 0x0000000605030201u, 0x0000060503020100u,
    0x0000000000060504u, 0x0000000006050400u, 0x0000000006050401u, 0x0000000605040100u,
    0x0000000006050402u, 0x0000000605040200u, 0x0000000605040201u, 0x0000060504020100u,
    0x0000000006050403u, 0x0000000605040300u, 0x0000000605040301u, 0x0000060504030100u,
    0x0000000605040302u, 0x0000060504030200u, 0x0000060504030201u, 0x0006050403020100u,
    0x0000000000000007u, 0x0000000000000700u, 0x0000000000000701u, 0x0000000000070100u,
    0x0000000000000702u, 0x0000000000070200u, 0x0000000000070201u, 0x0000000007020100u,
    0x0000000000000703u, 0x0000000000070300u, 0x0000000000070301u, 0x0000000007030100u,
    0x0000000000070302u, 0x0000000007030200u, 0x0000000007030201u, 0x0000000703020100u,
    0x0000000000000704u, 0x0000000000070400u, 0x0000000000070401u, 0x0000000007040100u,
    0x0000000000070402u, 0x0000000007040200u, 0x0000000007040201u, 0x0000000704020100u,
    0x0000000000070403u, 0x0000000007040300u, 0x0000000007040301u, 0x0000000704030100u,
    0x0000000007040302u, 0x0000000704030200u, 0x0000000704030201u, 0x0000070403020100u,
    0x0000000000000705u, 0x0000000000070500u, 0x0000000000070501u, 0x0000000007050100u,
    0x0000000000070502u, 0x0000000007050200u, 0x0000000007050201u, 0x0000000705020100u,
    0x0000000000070503u, 0x0000000007050300u, 0x0000000007050301u, 0x0000000705030100u,
    0x0000000007050302u, 0x0000000705030200u, 0x0000000705030201u, 0x0000070503020100u,
    0x0000000000070504u, 0x0000000007050400u, 0x0000000007050401u, 0x0000000705040100u,
    0x0000000007050402u, 0x0000000705040200u, 0x0000000705040201u, 0x0000070504020100u,
    0x0000000007050403u, 0x0000000705040300u, 0x0000000705040301u, 0x0000070504030100u,
    0x0000000705040302u, 0x0000070504030200u, 0x0000070504030201u, 0x0007050403020100u,
    0x0000000000000706u, 0x0000000000070600u, 0x0000000000070601u, 0x0000000007060100u,
    0x0000000000070602u, 0x0000000007060200u, 0x0000000007060201u, 0x0000000706020100u,
    0x0000000000070603u, 0x0000000007060300u, 0x0000000007060301u, 0x0000000706030100u,
    0x0000000007060302u, 0x0000000706030200u, 0x0000000706030201u, 0x0000070603020100u,
    0x0000000000070604u, 0x0000000007060400u, 0x0000000007060401u, 0x0000000706040100u,
    0x0000000007060402u, 0x0000000706040200u, 0x0000000706040201u, 0x0000070604020100u,
    0x0000000007060403u, 0x0000000706040300u, 0x0000000706040301u, 0x0000070604030100u,
    0x0000000706040302u, 0x0000070604030200u, 0x0000070604030201u, 0x0007060403020100u,
    0x0000000000070605u, 0x0000000007060500u, 0x0000000007060501u, 0x0000000706050100u,
    0x0000000007060502u, 0x0000000706050200u, 0x0000000706050201u, 0x0000070605020100u,
    0x0000000007060503u, 0x0000000706050300u, 0x0000000706050301u, 0x0000070605030100u,
    0x0000000706050302u, 0x0000070605030200u, 0x0000070605030201u, 0x0007060503020100u,
    0x0000000007060504u, 0x0000000706050400u, 0x0000000706050401u, 0x0000070605040100u,
    0x0000000706050402u, 0x0000070605040200u, 0x0000070605040201u, 0x0007060504020100u,
    0x0000000706050403u, 0x0000070605040300u, 0x0000070605040301u, 0x0007060504030100u,
    0x0000070605040302u, 0x0007060504030200u, 0x0007060504030201u, 0x0706050403020100u,
};

/* Writes base + (position of each set bit of bits) to out[0..], for bits below nb. Eight bits
 * at a time: one table load, a widening and one 8-lane store, advanced by the bit count. (A
 * tzcnt loop per bit measured far slower: its exit mispredicts on most blocks.) Stores up to 8
 * lanes past the last entry: scratch, within the caller's slack. The first pre bytes (a
 * constant) are done unconditionally: enough for nearly every call. */
static inline __attribute__((always_inline)) CG_AVX2 void
flatten(uint32_t *out, uint32_t base, uint64_t bits, unsigned nb, const unsigned pre)
{
    __m256i vb = _mm256_set1_epi32((int)base);
    const __m256i eight = _mm256_set1_epi32(8);
#pragma GCC unroll 4
    for (unsigned k = 0; k < pre; k++) {
        unsigned c = (unsigned)(bits >> (8 * k)) & 0xff;
        __m256i ix = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128((long long)bit_pos[c]));
        _mm256_storeu_si256((__m256i *)(void *)out, _mm256_add_epi32(ix, vb));
        out += _mm_popcnt_u32(c);
        vb = _mm256_add_epi32(vb, eight);
    }
    for (unsigned k = pre; k * 8 < nb; k++) {
        unsigned c = (unsigned)(bits >> (8 * k)) & 0xff;
        __m256i ix = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128((long long)bit_pos[c]));
        _mm256_storeu_si256((__m256i *)(void *)out, _mm256_add_epi32(ix, vb));
        out += _mm_popcnt_u32(c);
        vb = _mm256_add_epi32(vb, eight);
    }
}

/* flatten() for a whole block of positions: all eight bytes, fully unrolled. Where a byte's
 * entries go is a running count in two independent halves (the upper one starts at the count
 * of the lower 32 bits), so the chain of popcount-and-add steps is four long, not eight. */
static inline CG_AVX2 void flatten64(uint32_t *out, uint32_t base, uint64_t bits)
{
    const __m256i vb = _mm256_set1_epi32((int)base);
    uint32_t *half[2] = {out, out + _mm_popcnt_u32((uint32_t)bits)};
#pragma GCC unroll 8
    for (unsigned k = 0; k < 8; k++) {
        unsigned c = (unsigned)(bits >> (8 * k)) & 0xff;
        __m256i ix = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128((long long)bit_pos[c]));
        _mm256_storeu_si256(
            (__m256i *)(void *)half[k >> 2],
            _mm256_add_epi32(ix, _mm256_add_epi32(vb, _mm256_set1_epi32((int)(8 * k)))));
        half[k >> 2] += _mm_popcnt_u32(c);
    }
}

/* Writes base, base+1, ... base+n-1 to out: the field table of a block whose delimiters all
 * close fields. Up to 24 entries without a branch; same scratch rules as flatten. */
static inline CG_AVX2 void iota(uint32_t *out, uint32_t base, unsigned n)
{
    __m256i v =
        _mm256_add_epi32(_mm256_set1_epi32((int)base), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    const __m256i eight = _mm256_set1_epi32(8);
    _mm256_storeu_si256((__m256i *)(void *)out, v);
    v = _mm256_add_epi32(v, eight);
    _mm256_storeu_si256((__m256i *)(void *)(out + 8), v);
    v = _mm256_add_epi32(v, eight);
    _mm256_storeu_si256((__m256i *)(void *)(out + 16), v);
    for (unsigned i = 24; i < n; i += 8) {
        v = _mm256_add_epi32(v, eight);
        _mm256_storeu_si256((__m256i *)(void *)(out + i), v);
    }
}

static inline CG_AVX2 uint64_t mask64(__m256i lo, __m256i hi)
{
    return (uint64_t)(uint32_t)_mm256_movemask_epi8(lo) |
           (uint64_t)(uint32_t)_mm256_movemask_epi8(hi) << 32;
}

static inline int name_char(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* The open segment, kept in registers while the scanner runs: writing it field by field to
 * memory and reading it back whole (a struct copy) stalls on store forwarding at every
 * segment. */
typedef struct open_seg {
    uint32_t start, tok0, leaf0, header;
    uint32_t name; /* three bytes, then NUL, in memory order */
} open_seg_t;

/* The limits the scanner checks, read once. */
typedef struct scan_lim {
    uint32_t max_fields, max_reps;
    uint32_t ns_lim; /* a segment is closed here only while ns < ns_lim */
} scan_lim_t;

/* The caller's step at a segment terminator t (already in the tables; nl and nt are the counts
 * just after it), done here when nothing needs deciding: one CR, LF or CRLF, then a segment
 * name and the field separator, not a message or batch boundary, and no limit reached. Closes
 * the open segment into segs[*ns] and opens the next; returns the offset after its name, or 0
 * (nothing changed) to leave the terminator to the caller. */
static inline __attribute__((always_inline)) size_t
pass_terminator(const char *b, unsigned char fs, size_t t, size_t region, uint32_t nl, uint32_t nt,
                open_seg_t *cur, cg_hl7_seg_ix_t *segs, uint32_t *ns, const scan_lim_t *lim)
{
    size_t q = t + 1;
    if (q + 4 > region || (b[t] != '\r' && b[t] != '\n'))
        return 0;
    if (b[t] == '\r' && b[q] == '\n')
        q++;
    if (q + 4 > region)
        return 0;
    uint32_t w;
    memcpy(&w, b + q, 4);
    const uint32_t name = w & 0xFFFFFFu;
    const unsigned char c0 = (unsigned char)w, c1 = (unsigned char)(w >> 8);
    const unsigned char c2 = (unsigned char)(w >> 16);
    if ((w >> 24) != fs || !name_char(c0) || !name_char(c1) || !name_char(c2))
        return 0;
    if ((c0 == 'M' && c1 == 'S' && c2 == 'H') ||
        ((c0 == 'F' || c0 == 'B') && (c1 == 'H' || c1 == 'T') && c2 == 'S'))
        return 0;
    uint32_t ntok = (nt - 1) - cur->tok0;
    uint32_t nfields = cur->header ? ntok : ntok - 1;
    /* Every repetition has a leaf: with no more leaves than the limit, no field can pass it. */
    if (nfields > lim->max_fields || nl - cur->leaf0 > lim->max_reps || *ns >= lim->ns_lim)
        return 0;
    cg_hl7_seg_ix_t *sg = segs + *ns;
    sg->start = cur->start;
    sg->end = (uint32_t)t;
    sg->tok0 = cur->tok0;
    sg->leaf0 = cur->leaf0;
    memcpy(sg->name, &cur->name, 4);
    sg->header = cur->header;
    *ns += 1;
    cur->start = (uint32_t)q;
    cur->tok0 = nt - 1;
    cur->leaf0 = nl;
    cur->name = name;
    cur->header = 0;
    return q + 3;
}

/* The byte sets of the message, broadcast. */
typedef struct vset {
    __m256i fs, comp, rep, sub, term;
} vset_t;

/* Classifies the 64 bytes at s: every delimiter (*a), field-or-higher (*gf) and terminators
 * (*e), trail bytes of double-byte characters removed when mb. A missing repetition or
 * subcomponent delimiter is fs: it only repeats bits of a higher level, which the
 * all-delimiters mask already holds. */
static inline __attribute__((always_inline)) CG_AVX2 void classify(const char *s, size_t n,
                                                                   const vset_t *v, const int mb,
                                                                   int *carry, uint64_t *a,
                                                                   uint64_t *gf, uint64_t *e)
{
    __m256i x0 = _mm256_loadu_si256((const __m256i *)(const void *)s);
    __m256i x1 = _mm256_loadu_si256((const __m256i *)(const void *)(s + 32));
    __m256i f0 = _mm256_cmpeq_epi8(x0, v->fs), f1 = _mm256_cmpeq_epi8(x1, v->fs);
    /* Terminators in two instructions: a byte is one when it equals the table entry of its
     * low nibble (PSHUFB gives 0 for bytes >= 0x80, which never equal it). */
    __m256i e0 = _mm256_cmpeq_epi8(x0, _mm256_shuffle_epi8(v->term, x0));
    __m256i e1 = _mm256_cmpeq_epi8(x1, _mm256_shuffle_epi8(v->term, x1));
    __m256i gf0 = _mm256_or_si256(f0, e0), gf1 = _mm256_or_si256(f1, e1);
    __m256i o0 = _mm256_or_si256(_mm256_cmpeq_epi8(x0, v->rep), _mm256_cmpeq_epi8(x0, v->comp));
    __m256i o1 = _mm256_or_si256(_mm256_cmpeq_epi8(x1, v->rep), _mm256_cmpeq_epi8(x1, v->comp));
    __m256i a0 = _mm256_or_si256(_mm256_or_si256(gf0, o0), _mm256_cmpeq_epi8(x0, v->sub));
    __m256i a1 = _mm256_or_si256(_mm256_or_si256(gf1, o1), _mm256_cmpeq_epi8(x1, v->sub));
    *e = mask64(e0, e1);
    *gf = mask64(gf0, gf1);
    *a = mask64(a0, a1);
    if (mb && (*carry || mask64(x0, x1))) {
        uint64_t t = ~cg_hl7__trail_bits((const unsigned char *)s, n, carry);
        *e &= t;
        *gf &= t;
        *a &= t;
    }
}

/* Appends the field-table entries of a block: the rank (among all nl + the block's delimiters,
 * 1-based) of each field-or-higher delimiter. */
static inline __attribute__((always_inline)) CG_AVX2 void
tok_entries(uint32_t *out, uint32_t nl, uint64_t gf, uint64_t a, unsigned na)
{
    if (gf == a)
        iota(out, nl + 1, na);
    else
        flatten(out, nl + 1, _pext_u64(gf, a), na, 2);
}

/* Passes the terminators e of the block at pb, the counts before it being nl0 and nt0, in order.
 * Returns 0 when all passed (*p moved past the last new segment's name when that lies beyond;
 * *nl and *nt untouched), else 1 with *nl and *nt the counts just after the first one left to
 * the caller and *p at it. */
static inline __attribute__((always_inline)) CG_AVX2 int
pass_block(const char *b, unsigned char fs, size_t region, uint64_t e, uint64_t a, uint64_t gf,
           size_t pb, uint32_t nl0, uint32_t nt0, uint32_t *nl, uint32_t *nt, size_t *p,
           open_seg_t *cur, cg_hl7_seg_ix_t *segs, uint32_t *ns, const scan_lim_t *lim,
           size_t *msg_end)
{
    while (e) {
        /* Counts just after the terminator, as the caller would have them. */
        uint64_t upto = _blsmsk_u64(e);
        uint32_t ul = nl0 + (uint32_t)_mm_popcnt_u64(a & upto);
        uint32_t ut = nt0 + (uint32_t)_mm_popcnt_u64(gf & upto);
        size_t t = pb + _tzcnt_u64(e);
        size_t np = pass_terminator(b, fs, t, region, ul, ut, cur, segs, ns, lim);
        if (!np) {
            *nl = ul;
            *nt = ut;
            *p = t;
            return 1;
        }
        *msg_end = t;
        /* Between t and np lie only the CRLF's '\n' and the name: no bits. */
        if (np > *p)
            *p = np;
        e = _blsr_u64(e);
    }
    return 0;
}

/* The scanner; mb is a constant in each instance (see cg_hl7__scan_avx2). */
static inline __attribute__((always_inline)) CG_AVX2 size_t scan(cg_hl7_scan_t *sc, size_t p,
                                                                 size_t region, int *term,
                                                                 const int mb)
{
    const char *b = sc->b;
    uint32_t *le = sc->le, *tl = sc->tl;
    uint32_t nl = sc->nl, nt = sc->nt;
    const uint32_t cap = sc->cap;
    int carry = sc->carry;
    cg_hl7_msg_t *const m = sc->m;
    cg_hl7_seg_ix_t *const segs = m->segs;
    scan_lim_t lim;
    lim.max_fields = m->opt.max_fields;
    lim.max_reps = m->opt.max_reps;
    /* Room for the closed segment, the open one and the caller's sentinel (ns + 3 <= seg_cap),
     * and no more than max_segments (ns + 1 <= max_segments). */
    lim.ns_lim = m->seg_cap >= 2 ? m->seg_cap - 2 : 0;
    if (lim.ns_lim > m->opt.max_segments)
        lim.ns_lim = m->opt.max_segments;
    const unsigned char fs = (unsigned char)sc->fs;
    open_seg_t cur;
    cur.start = sc->cur.start;
    cur.tok0 = sc->cur.tok0;
    cur.leaf0 = sc->cur.leaf0;
    cur.header = sc->cur.header;
    memcpy(&cur.name, sc->cur.name, 4);
    const uint32_t ns0 = sc->ns;
    uint32_t ns = ns0;
    size_t msg_end = sc->msg_end;
    vset_t v;
    v.fs = _mm256_set1_epi8(sc->fs);
    v.comp = _mm256_set1_epi8(sc->comp);
    v.rep = _mm256_set1_epi8(sc->rep);
    v.sub = _mm256_set1_epi8(sc->sub);
    /* Low nibble -> the terminator with that nibble (LF 0x0A, MLLP end 0x1C, CR 0x0D), else a
     * value no byte with that nibble can be (0xFF; 0 for nibble F). */
    v.term = _mm256_setr_epi8(-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, '\n', -1, 0x1C, '\r', -1, 0,
                              -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, '\n', -1, 0x1C, '\r', -1, 0);
    *term = 0;
    /* Two blocks at a time: their dependency chains overlap, and the terminators of both are
     * passed in one go. The tables do not depend on where segments end, so both blocks are
     * appended at once; a terminator the caller must see cuts the counts back to it afterwards
     * (what lies beyond is scratch). Two blocks hold at most 128 entries: the slack covers it.
     * The second block starts at p + 64 even when a segment passed in the first ends its name
     * beyond: the bytes between are the name (no bits) and, after a CR ending the first block,
     * the LF of a CRLF, which the carried terminator bit removes. */
    while (p + 128 <= region && nl + CG_HL7_SCAN_SLACK <= cap) {
        const size_t p0 = p;
        uint64_t a0, gf0, e0, a1, gf1, e1;
        classify(b + p0, 64, &v, mb, &carry, &a0, &gf0, &e0);
        classify(b + p0 + 64, 64, &v, mb, &carry, &a1, &gf1, &e1);
        /* A terminator right after another (the LF of CRLF, blank lines) never enters the
         * tables: whoever passes the first one skips the whole gap. */
        const uint64_t c0 = ~(e0 << 1 & e0), c1 = ~((e1 << 1 | e0 >> 63) & e1);
        e0 &= c0;
        gf0 &= c0;
        a0 &= c0;
        e1 &= c1;
        gf1 &= c1;
        a1 &= c1;
        p = p0 + 128;
        if (!(a0 | a1)) {
            /* Long text, embedded documents (base64): about a fifth of the steps over the
             * benchmark corpus, in runs, so this branch predicts well. */
            continue;
        }
        const unsigned na0 = (unsigned)_mm_popcnt_u64(a0), na1 = (unsigned)_mm_popcnt_u64(a1);
        const uint32_t ng0 = (uint32_t)_mm_popcnt_u64(gf0), ng1 = (uint32_t)_mm_popcnt_u64(gf1);
        flatten64(le + nl, (uint32_t)p0, a0);
        flatten64(le + nl + na0, (uint32_t)p0 + 64, a1);
        if (na0 + na1 <= 64) {
            /* The ranks of both blocks as one mask: fewer steps than one table each (usually
             * four in all), and one loop exit to predict. */
            uint64_t r = _pext_u64(gf0, a0) | (na0 < 64 ? _pext_u64(gf1, a1) << na0 : 0);
            flatten(tl + nt, nl + 1, r, na0 + na1, 4);
        } else {
            tok_entries(tl + nt, nl, gf0, a0, na0);
            tok_entries(tl + nt + ng0, nl + na0, gf1, a1, na1);
        }
        /* (the first call changes nl and nt only when it stops, so the second one's base
         * counts are still the step's) */
        if ((e0 | e1) && (pass_block(b, fs, region, e0, a0, gf0, p0, nl, nt, &nl, &nt, &p, &cur,
                                     segs, &ns, &lim, &msg_end) ||
                          pass_block(b, fs, region, e1, a1, gf1, p0 + 64, nl + na0, nt + ng0, &nl,
                                     &nt, &p, &cur, segs, &ns, &lim, &msg_end))) {
            *term = 1;
            goto out;
        }
        nl += na0 + na1;
        nt += ng0 + ng1;
    }
    /* The rest, one block at a time, the last one padded. */
    while (p < region && nl + CG_HL7_SCAN_SLACK <= cap) {
        const size_t p0 = p;
        size_t blk = region - p;
        const char *s = b + p;
        char tmp[64];
        if (blk < 64) {
            /* Zero padding matches nothing: no delimiter or terminator is NUL. */
            memset(tmp, 0, sizeof(tmp));
            memcpy(tmp, s, blk);
            s = tmp;
        } else {
            blk = 64;
        }
        uint64_t a, gf, e;
        classify(s, blk, &v, mb, &carry, &a, &gf, &e);
        uint64_t crlf = ~(e << 1 & e);
        e &= crlf;
        gf &= crlf;
        a &= crlf;
        p = p0 + blk;
        if (!a)
            continue;
        const unsigned na = (unsigned)_mm_popcnt_u64(a);
        flatten64(le + nl, (uint32_t)p0, a);
        tok_entries(tl + nt, nl, gf, a, na);
        if (pass_block(b, fs, region, e, a, gf, p0, nl, nt, &nl, &nt, &p, &cur, segs, &ns, &lim,
                       &msg_end)) {
            *term = 1;
            goto out;
        }
        nl += na;
        nt += (uint32_t)_mm_popcnt_u64(gf);
    }
out:
    sc->nl = nl;
    sc->nt = nt;
    sc->carry = carry;
    if (ns != ns0) {
        sc->ns = ns;
        sc->msg_end = msg_end;
        sc->cur.start = cur.start;
        sc->cur.end = 0;
        sc->cur.tok0 = cur.tok0;
        sc->cur.leaf0 = cur.leaf0;
        memcpy(sc->cur.name, &cur.name, 4);
        sc->cur.header = cur.header;
        /* The caller stores the new segment here so that an error names it; only the name is
         * read before the segment is closed (and stored whole). */
        memcpy(segs[ns].name, &cur.name, 4);
    }
    return p;
}

CG_AVX2 size_t cg_hl7__scan_avx2(cg_hl7_scan_t *sc, size_t p, size_t region, int *term)
{
    /* Two instances: single-byte text (nearly all feeds) carries no trail-byte state. */
    return sc->mb ? scan(sc, p, region, term, 1) : scan(sc, p, region, term, 0);
}

#else

int cg_hl7__scan_avx2_ok(void)
{
    return 0;
}

size_t cg_hl7__scan_avx2(cg_hl7_scan_t *sc, size_t p, size_t region, int *term)
{
    (void)sc;
    (void)region;
    *term = 0;
    return p;
}

#endif
