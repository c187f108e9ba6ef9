/* hl7_scan_avx2.c - the AVX2 + BMI2 block scanner of the structural index (see hl7_parse.c).
 *
 * Each 64-byte block is classified into two masks: every delimiter (leaf ends) and
 * field-or-higher (a segment terminator being the highest level). The tables then need no
 * per-delimiter decision: the entry a field delimiter adds to the field table is its rank among
 * all delimiters, which PEXT turns into bit positions, and a table is written eight bits of mask
 * at a time from a lookup table, without a branch per delimiter.
 * The tables do not depend on where segments end, so a whole block is appended at once; then
 * its terminators are passed in order, the common ones here (CR, LF or CRLF followed by a
 * well-formed segment, no limit reached), any other by returning it to the caller, which decides
 * as the portable path does. Its results are identical (tests/unit/test_hl7_scan.c).
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
 * lanes past the last entry: scratch, within the caller's slack. The first two bytes are done
 * unconditionally, which covers nearly every call for the upper tables. */
static inline CG_AVX2 void flatten(uint32_t *out, uint32_t base, uint64_t bits, unsigned nb)
{
    __m256i vb = _mm256_set1_epi32((int)base);
    const __m256i eight = _mm256_set1_epi32(8);
#pragma GCC unroll 2
    for (unsigned k = 0; k < 2; k++) {
        unsigned c = (unsigned)(bits >> (8 * k)) & 0xff;
        __m256i ix = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128((long long)bit_pos[c]));
        _mm256_storeu_si256((__m256i *)(void *)out, _mm256_add_epi32(ix, vb));
        out += _mm_popcnt_u32(c);
        vb = _mm256_add_epi32(vb, eight);
    }
    for (unsigned k = 2; k * 8 < nb; k++) {
        unsigned c = (unsigned)(bits >> (8 * k)) & 0xff;
        __m256i ix = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128((long long)bit_pos[c]));
        _mm256_storeu_si256((__m256i *)(void *)out, _mm256_add_epi32(ix, vb));
        out += _mm_popcnt_u32(c);
        vb = _mm256_add_epi32(vb, eight);
    }
}

/* flatten() for a whole block of positions: all eight bytes, fully unrolled. */
static inline CG_AVX2 void flatten64(uint32_t *out, uint32_t base, uint64_t bits)
{
    __m256i vb = _mm256_set1_epi32((int)base);
    const __m256i eight = _mm256_set1_epi32(8);
#pragma GCC unroll 8
    for (unsigned k = 0; k < 8; k++) {
        unsigned c = (unsigned)(bits >> (8 * k)) & 0xff;
        __m256i ix = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128((long long)bit_pos[c]));
        _mm256_storeu_si256((__m256i *)(void *)out, _mm256_add_epi32(ix, vb));
        out += _mm_popcnt_u32(c);
        vb = _mm256_add_epi32(vb, eight);
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

/* The caller's step at a segment terminator t (already in the tables), done here when nothing
 * needs deciding: one CR, LF or CRLF, then a segment name and the field separator, not a
 * message or batch boundary, and no limit reached. Returns the offset after the new segment's
 * name, or 0 (nothing changed) to leave the terminator to the caller. */
static inline size_t pass_terminator(cg_hl7_scan_t *sc, size_t t, size_t region, uint32_t nl,
                                     uint32_t nt)
{
    const char *b = sc->b;
    size_t q = t + 1;
    if (q + 4 > region || (b[t] != '\r' && b[t] != '\n'))
        return 0;
    if (b[t] == '\r' && b[q] == '\n')
        q++;
    if (q + 4 > region || b[q + 3] != sc->fs || !name_char((unsigned char)b[q]) ||
        !name_char((unsigned char)b[q + 1]) || !name_char((unsigned char)b[q + 2]))
        return 0;
    if ((b[q] == 'M' && b[q + 1] == 'S' && b[q + 2] == 'H') ||
        ((b[q] == 'F' || b[q] == 'B') && (b[q + 1] == 'H' || b[q + 1] == 'T') && b[q + 2] == 'S'))
        return 0;
    cg_hl7_msg_t *m = sc->m;
    cg_hl7_seg_ix_t *cur = &sc->cur;
    uint32_t ntok = (nt - 1) - cur->tok0;
    uint32_t nfields = cur->header ? ntok : ntok - 1;
    uint32_t ns = sc->ns;
    /* Every repetition has a leaf: with no more leaves than the limit, no field can pass it. */
    if (nfields > m->opt.max_fields || nl - cur->leaf0 > m->opt.max_reps ||
        ns + 1 > m->opt.max_segments || (size_t)ns + 3 > m->seg_cap)
        return 0;
    cur->end = (uint32_t)t;
    m->segs[ns++] = *cur;
    sc->ns = ns;
    sc->msg_end = t;
    cur->start = (uint32_t)q;
    cur->end = 0;
    cur->tok0 = nt - 1;
    cur->leaf0 = nl;
    memcpy(cur->name, b + q, 3);
    cur->name[3] = '\0';
    cur->header = 0;
    /* The caller stores the new segment here so that an error names it; only the name is read
     * before the segment is closed (and stored whole). */
    memcpy(m->segs[ns].name, cur->name, sizeof(cur->name));
    return q + 3;
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
    /* A missing repetition or subcomponent delimiter is fs: it only repeats bits of a higher
     * level, which the all-delimiters mask already holds. */
    const __m256i vfs = _mm256_set1_epi8(sc->fs), vcomp = _mm256_set1_epi8(sc->comp);
    const __m256i vrep = _mm256_set1_epi8(sc->rep), vsub = _mm256_set1_epi8(sc->sub);
    /* Low nibble -> the terminator with that nibble (LF 0x0A, MLLP end 0x1C, CR 0x0D), else a
     * value no byte with that nibble can be (0xFF; 0 for nibble F). */
    const __m256i vterm =
        _mm256_setr_epi8(-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, '\n', -1, 0x1C, '\r', -1, 0, -1,
                         -1, -1, -1, -1, -1, -1, -1, -1, -1, '\n', -1, 0x1C, '\r', -1, 0);
    *term = 0;
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
        __m256i x0 = _mm256_loadu_si256((const __m256i *)(const void *)s);
        __m256i x1 = _mm256_loadu_si256((const __m256i *)(const void *)(s + 32));
        __m256i f0 = _mm256_cmpeq_epi8(x0, vfs), f1 = _mm256_cmpeq_epi8(x1, vfs);
        /* Terminators in two instructions: a byte is one when it equals the table entry of its
         * low nibble (PSHUFB gives 0 for bytes >= 0x80, which never equal it). */
        __m256i e0 = _mm256_cmpeq_epi8(x0, _mm256_shuffle_epi8(vterm, x0));
        __m256i e1 = _mm256_cmpeq_epi8(x1, _mm256_shuffle_epi8(vterm, x1));
        __m256i gf0 = _mm256_or_si256(f0, e0), gf1 = _mm256_or_si256(f1, e1);
        __m256i o0 = _mm256_or_si256(_mm256_cmpeq_epi8(x0, vrep), _mm256_cmpeq_epi8(x0, vcomp));
        __m256i o1 = _mm256_or_si256(_mm256_cmpeq_epi8(x1, vrep), _mm256_cmpeq_epi8(x1, vcomp));
        __m256i a0 = _mm256_or_si256(_mm256_or_si256(gf0, o0), _mm256_cmpeq_epi8(x0, vsub));
        __m256i a1 = _mm256_or_si256(_mm256_or_si256(gf1, o1), _mm256_cmpeq_epi8(x1, vsub));
        uint64_t e = mask64(e0, e1), gf = mask64(gf0, gf1), a = mask64(a0, a1);
        if (mb && (carry || mask64(x0, x1))) {
            uint64_t t = ~cg_hl7__trail_bits((const unsigned char *)s, blk, &carry);
            e &= t;
            gf &= t;
            a &= t;
        }
        /* A terminator right after another (the LF of CRLF, blank lines) never enters the
         * tables: whoever passes the first one skips the whole gap. */
        uint64_t crlf = ~(e << 1 & e);
        e &= crlf;
        gf &= crlf;
        a &= crlf;
        /* The tables do not depend on where segments end, so the whole block is appended at
         * once; a terminator the caller must see cuts the counts back to it afterwards (what
         * lies beyond is scratch). A block holds at most 64 entries: the slack covers it. */
        const unsigned na = (unsigned)_mm_popcnt_u64(a);
        flatten64(le + nl, (uint32_t)p0, a);
        if (gf == a)
            iota(tl + nt, nl + 1, na);
        else
            flatten(tl + nt, nl + 1, _pext_u64(gf, a), na);
        p = p0 + blk;
        while (e) {
            /* Counts just after the terminator, as the caller would have them. */
            uint64_t upto = _blsmsk_u64(e);
            uint32_t ul = nl + (uint32_t)_mm_popcnt_u64(a & upto);
            uint32_t ut = nt + (uint32_t)_mm_popcnt_u64(gf & upto);
            size_t t = p0 + _tzcnt_u64(e);
            size_t np = pass_terminator(sc, t, region, ul, ut);
            if (!np) {
                nl = ul;
                nt = ut;
                p = t;
                *term = 1;
                goto out;
            }
            /* Between t and np lie only the CRLF's '\n' and the name: no bits. */
            if (np > p)
                p = np;
            e = _blsr_u64(e);
        }
        nl += na;
        nt += (uint32_t)_mm_popcnt_u64(gf);
    }
out:
    sc->nl = nl;
    sc->nt = nt;
    sc->carry = carry;
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
