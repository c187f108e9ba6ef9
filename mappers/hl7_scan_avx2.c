/* hl7_scan_avx2.c - the AVX2 + BMI2 block scanner of the structural index (see hl7_parse.c).
 *
 * Each 64-byte block is classified into four cumulative masks: every delimiter (leaf ends),
 * component-or-higher, repetition-or-higher and field-or-higher (a segment terminator is the
 * highest level). The CSR tables then need no per-delimiter decision: the entry a delimiter adds
 * to a table is its rank in the table below, which PEXT turns into bit positions, and each table
 * is filled by one branch-light loop over set bits. The block is cut after its first segment
 * terminator, since what follows a terminator (a new segment, a wrapped line, the next message)
 * is decided by the caller.
 *
 * Built with target attributes and chosen at run time, so the library still runs without AVX2.
 */
#include "hl7_impl.h"

#include <string.h>

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
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

/* Writes base + (position of each set bit of bits) to out[0..]. Stores in groups of eight
 * without checking how many bits are left (tzcnt of 0 is defined): a typical block has fewer
 * than nine entries per table, so this avoids a mispredicted exit per table and block. May write
 * up to 7 scratch entries past the last one (the caller keeps that slack). */
static inline CG_AVX2 void flatten(uint32_t *out, uint32_t base, uint64_t bits)
{
    unsigned cnt = (unsigned)_mm_popcnt_u64(bits);
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++) {
        out[i] = base + (uint32_t)_tzcnt_u64(bits);
        bits = _blsr_u64(bits);
    }
    if (cnt > 8) {
#pragma GCC unroll 8
        for (int i = 8; i < 16; i++) {
            out[i] = base + (uint32_t)_tzcnt_u64(bits);
            bits = _blsr_u64(bits);
        }
        out += 16;
        while (bits) {
            *out++ = base + (uint32_t)_tzcnt_u64(bits);
            bits = _blsr_u64(bits);
        }
    }
}

static inline CG_AVX2 uint64_t mask64(__m256i lo, __m256i hi)
{
    return (uint64_t)(uint32_t)_mm256_movemask_epi8(lo) |
           (uint64_t)(uint32_t)_mm256_movemask_epi8(hi) << 32;
}

CG_AVX2 size_t cg_hl7__scan_avx2(cg_hl7_scan_t *sc, size_t p, size_t region, int *term)
{
    const char *b = sc->b;
    uint32_t *le = sc->le, *cl = sc->cl, *rc = sc->rc, *tr = sc->tr;
    uint32_t nl = sc->nl, nc = sc->nc, nr = sc->nr, nt = sc->nt;
    const uint32_t cap = sc->cap;
    int carry = sc->carry;
    const int mb = sc->mb;
    /* A missing repetition or subcomponent delimiter is fs: it only repeats bits of a higher
     * level, which the cumulative masks already hold. */
    const __m256i vfs = _mm256_set1_epi8(sc->fs), vcomp = _mm256_set1_epi8(sc->comp);
    const __m256i vrep = _mm256_set1_epi8(sc->rep), vsub = _mm256_set1_epi8(sc->sub);
    const __m256i vcr = _mm256_set1_epi8('\r'), vlf = _mm256_set1_epi8('\n');
    const __m256i vfe = _mm256_set1_epi8(0x1C);
    *term = 0;
    while (p < region && nl + CG_HL7_SCAN_SLACK <= cap) {
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
        __m256i e0 = _mm256_or_si256(
            _mm256_cmpeq_epi8(x0, vfe),
            _mm256_or_si256(_mm256_cmpeq_epi8(x0, vcr), _mm256_cmpeq_epi8(x0, vlf)));
        __m256i e1 = _mm256_or_si256(
            _mm256_cmpeq_epi8(x1, vfe),
            _mm256_or_si256(_mm256_cmpeq_epi8(x1, vcr), _mm256_cmpeq_epi8(x1, vlf)));
        __m256i gf0 = _mm256_or_si256(f0, e0), gf1 = _mm256_or_si256(f1, e1);
        __m256i gr0 = _mm256_or_si256(gf0, _mm256_cmpeq_epi8(x0, vrep));
        __m256i gr1 = _mm256_or_si256(gf1, _mm256_cmpeq_epi8(x1, vrep));
        __m256i gc0 = _mm256_or_si256(gr0, _mm256_cmpeq_epi8(x0, vcomp));
        __m256i gc1 = _mm256_or_si256(gr1, _mm256_cmpeq_epi8(x1, vcomp));
        __m256i a0 = _mm256_or_si256(gc0, _mm256_cmpeq_epi8(x0, vsub));
        __m256i a1 = _mm256_or_si256(gc1, _mm256_cmpeq_epi8(x1, vsub));
        uint64_t e = mask64(e0, e1), gf = mask64(gf0, gf1), gr = mask64(gr0, gr1);
        uint64_t gc = mask64(gc0, gc1), a = mask64(a0, a1);
        if (mb && (carry || mask64(x0, x1))) {
            uint64_t t = ~cg_hl7__trail_bits((const unsigned char *)s, blk, &carry);
            e &= t;
            gf &= t;
            gr &= t;
            gc &= t;
            a &= t;
        }
        if (e) { /* keep up to and including the first terminator */
            uint64_t keep = _blsmsk_u64(e);
            gf &= keep;
            gr &= keep;
            gc &= keep;
            a &= keep;
        }
        flatten(le + nl, (uint32_t)p, a);
        flatten(cl + nc, nl + 1, _pext_u64(gc, a));
        flatten(rc + nr, nc, _pext_u64(gr, gc));
        flatten(tr + nt, nr, _pext_u64(gf, gr));
        nl += (uint32_t)_mm_popcnt_u64(a);
        nc += (uint32_t)_mm_popcnt_u64(gc);
        nr += (uint32_t)_mm_popcnt_u64(gr);
        nt += (uint32_t)_mm_popcnt_u64(gf);
        if (e) {
            p += _tzcnt_u64(e);
            *term = 1;
            break;
        }
        p += blk;
    }
    sc->nl = nl;
    sc->nc = nc;
    sc->nr = nr;
    sc->nt = nt;
    sc->carry = carry;
    return p;
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
