/* hl7_parse.c - message splitting and the one-pass structural index (see cg_hl7.h).
 *
 * The index records the offset of every delimiter once (leaf ends: the end of every
 * subcomponent), the first leaf of every field (a CSR table) and a segment table. Each delimiter
 * costs two unconditional stores: a field-table slot written by a lower-level delimiter is
 * scratch that the next field delimiter overwrites, so the hot loop has no branch on the kind.
 * Repetitions, components and subcomponents are derived on access from a field's leaves: the
 * byte at a recorded offset is the delimiter itself, so its kind is one table lookup and no text
 * is rescanned (split_leaves). Limits are still checked here, at parse time.
 * Delimiters are found 64 bytes at a time: with AVX2 + BMI2 when the CPU has them
 * (hl7_scan_avx2.c), else with SSE2 compares (a scalar path elsewhere).
 */
#include "hl7_impl.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#define CG_HL7_SIMD 1
#else
#define CG_HL7_SIMD 0
#endif

#define MLLP_START 0x0B
#define MLLP_END   0x1C

/* ---- options, life cycle ------------------------------------------------------------------- */

void cg_hl7_options_default(cg_hl7_options_t *o)
{
    o->max_message_bytes = CG_HL7_DEFAULT_MAX_MESSAGE_BYTES;
    o->max_segments = CG_HL7_DEFAULT_MAX_SEGMENTS;
    o->max_fields = CG_HL7_DEFAULT_MAX_FIELDS;
    o->max_reps = CG_HL7_DEFAULT_MAX_REPS;
    o->strict_segments = 0;
    o->default_charset = CG_HL7_DEFAULT_CHARSET;
}

cg_hl7_msg_t *cg_hl7_msg_new(const cg_hl7_options_t *opts)
{
    cg_hl7_options_t def;
    if (!opts) {
        cg_hl7_options_default(&def);
        opts = &def;
    }
    if (opts->max_message_bytes == 0 || opts->max_message_bytes > UINT32_MAX - 2 ||
        opts->max_segments == 0 || opts->max_fields == 0 || opts->max_reps == 0)
        return NULL;
    cg_hl7_msg_t *m = calloc(1, sizeof(*m));
    if (!m)
        return NULL;
    m->opt = *opts;
    snprintf(m->default_charset, sizeof(m->default_charset), "%s",
             opts->default_charset && opts->default_charset[0] ? opts->default_charset
                                                               : CG_HL7_DEFAULT_CHARSET);
    m->opt.default_charset = m->default_charset;
    memcpy(m->base_charset, m->default_charset, sizeof(m->base_charset));
    char dn[64];
    if (cg_hl7_charset_iconv_name(m->default_charset, strlen(m->default_charset), dn, sizeof(dn)))
        m->default_mb = cg_hl7__charset_is_mb(dn);
    m->cs_key_len = (size_t)-1;
    cg_buf_init(&m->scratch);
    return m;
}

void cg_hl7_msg_set_default_charset(cg_hl7_msg_t *m, const char *name)
{
    const char *want = name && name[0] ? name : m->base_charset;
    if (!strcmp(want, m->default_charset))
        return; /* the usual case: a topic's messages come in runs */
    snprintf(m->default_charset, sizeof(m->default_charset), "%s", want);
    char dn[64];
    m->default_mb = cg_hl7_charset_iconv_name(want, strlen(want), dn, sizeof(dn))
                        ? cg_hl7__charset_is_mb(dn)
                        : 0;
    m->cs_key_len = (size_t)-1; /* an empty MSH-18 now means another charset */
}

void cg_hl7_msg_destroy(cg_hl7_msg_t *m)
{
    if (!m)
        return;
    for (int i = 0; i < m->ncv; i++)
        iconv_close(m->cv[i].cd);
    free(m->segs);
    free(m->leaf_end);
    free(m->tok_leaf);
    free(m->hier_at);
    free(m->hier);
    cg_buf_free(&m->scratch);
    free(m);
}

/* Grows both tables together: each gains at most one entry per delimiter, so one capacity check
 * per 64-byte block covers them. */
static int grow_tables(cg_hl7_msg_t *m, size_t need)
{
    if (need <= m->cap)
        return 0;
    size_t cap = m->cap ? m->cap : 1024;
    while (cap < need)
        cap *= 2;
    if (cap > UINT32_MAX)
        return -1;
    uint32_t **tabs[2] = {&m->leaf_end, &m->tok_leaf};
    for (int i = 0; i < 2; i++) {
        uint32_t *p = realloc(*tabs[i], cap * sizeof(uint32_t));
        if (!p)
            return -1;
        *tabs[i] = p;
    }
    m->cap = (uint32_t)cap;
    return 0;
}

static int grow_segs(cg_hl7_msg_t *m, size_t need)
{
    if (need <= m->seg_cap)
        return 0;
    size_t cap = m->seg_cap ? m->seg_cap : 64;
    while (cap < need)
        cap *= 2;
    cg_hl7_seg_ix_t *p = realloc(m->segs, cap * sizeof(*p));
    if (!p)
        return -1;
    m->segs = p;
    m->seg_cap = (uint32_t)cap;
    return 0;
}

/* ---- small scanners ------------------------------------------------------------------------ */

static int is_seg_end(unsigned char c)
{
    return c == '\r' || c == '\n' || c == MLLP_END;
}

static int is_name_char(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static int is_seg(const char *p, size_t avail, const char *name)
{
    return avail >= 3 && p[0] == name[0] && p[1] == name[1] && p[2] == name[2];
}

/* Segments that start a new message or close a batch, when seen at a segment start. */
static int is_boundary(const char *p, size_t avail)
{
    if (avail < 3)
        return 0;
    switch (p[0]) {
    case 'M':
        return p[1] == 'S' && p[2] == 'H';
    case 'F':
    case 'B':
        return (p[1] == 'H' || p[1] == 'T') && p[2] == 'S';
    default:
        return 0;
    }
}

/* Skips segment terminators, MLLP frame bytes and whitespace-only lines from i. */
static size_t skip_gap(const char *b, size_t n, size_t i)
{
    for (;;) {
        while (i < n && (is_seg_end((unsigned char)b[i]) || b[i] == MLLP_START))
            i++;
        if (i < n && (b[i] == ' ' || b[i] == '\t')) {
            size_t t = i;
            while (t < n && (b[t] == ' ' || b[t] == '\t'))
                t++;
            if (t == n || is_seg_end((unsigned char)b[t])) {
                i = t;
                continue;
            }
        }
        return i;
    }
}

/* A segment starts with a 3-character name followed by the field separator or its end. */
static inline int valid_seg_start(const char *b, size_t n, size_t q, char fs)
{
    if (q + 3 > n || !is_name_char((unsigned char)b[q]) || !is_name_char((unsigned char)b[q + 1]) ||
        !is_name_char((unsigned char)b[q + 2]))
        return 0;
    return q + 3 == n || b[q + 3] == fs || is_seg_end((unsigned char)b[q + 3]);
}

static size_t line_end(const char *b, size_t n, size_t i)
{
    while (i < n && !is_seg_end((unsigned char)b[i]))
        i++;
    return i;
}

/* Next offset >= from where a message-boundary segment starts a line; n when none. Used to
 * resynchronise after an error, so it is linear and never revisits bytes. */
#define RESYNC_WINDOW ((size_t)4 << 20)

static size_t resync(const cg_hl7_reader_t *r, size_t from)
{
    const char *b = r->buf;
    size_t n = r->len, i = from, told = from;
    while (i < n) {
        /* a window at a time, so that a long stretch without a line end (a file of zeros) is
         * handed to r->scanned as it is passed: map releases those pages as it goes */
        size_t lim = n - i > RESYNC_WINDOW ? i + RESYNC_WINDOW : n;
        const char *cr = memchr(b + i, '\r', lim - i);
        const char *lf = memchr(b + i, '\n', (cr ? (size_t)(cr - b) : lim) - i);
        const char *e = lf ? lf : cr;
        if (!e) {
            i = lim;
            if (r->scanned && i - told >= RESYNC_WINDOW) {
                r->scanned(r->scanned_ctx, i);
                told = i;
            }
            continue;
        }
        i = skip_gap(b, n, (size_t)(e - b));
        if (is_boundary(b + i, n - i))
            return i;
    }
    return n;
}

/* ---- the indexer ----------------------------------------------------------------------------- */

typedef struct ix_state {
    cg_hl7_msg_t *m;
    const char *b;    /* message start in the input */
    size_t avail;     /* bytes from b to the end of the input */
    size_t region;    /* bytes the message may use (the size limit) */
    size_t input_off; /* offset of b in the input */
    cg_error_t *err;
} ix_state_t;

static cg_err_t ix_fail(ix_state_t *st, cg_err_t code, size_t rel, int field, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static cg_err_t ix_fail(ix_state_t *st, cg_err_t code, size_t rel, int field, const char *fmt, ...)
{
    char reason[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);
    cg_hl7_msg_t *m = st->m;
    const char *name = m->nsegs < m->seg_cap ? m->segs[m->nsegs].name : "";
    cg_hl7__err(st->err, code, m->number, m->nsegs + 1, name, field, st->input_off + rel, "%s",
                reason);
    return code;
}

/* Reads MSH-1/MSH-2 of the header segment at b and fills d. Returns the length of MSH-2. */
static cg_err_t read_delims(ix_state_t *st, cg_hl7_delims_t *d, size_t *enc_len)
{
    const char *b = st->b;
    size_t n = st->avail;
    if (n < 4 || is_seg_end((unsigned char)b[3]))
        return ix_fail(st, CG_ERR_HL7_SYNTAX, n < 3 ? n : 3, 1, "MSH segment truncated");
    unsigned char fs = (unsigned char)b[3];
    if ((fs >= '0' && fs <= '9') || (fs >= 'A' && fs <= 'Z') || (fs >= 'a' && fs <= 'z') ||
        fs == 0 || fs == ' ')
        return ix_fail(st, CG_ERR_HL7_SYNTAX, 3, 1,
                       "MSH-1 field separator 0x%02x is not a usable delimiter", fs);
    size_t i = 4;
    while (i < n && b[i] != (char)fs && !is_seg_end((unsigned char)b[i]))
        i++;
    size_t len = i - 4;
    if (len < 1 || len > 5)
        return ix_fail(st, CG_ERR_HL7_SYNTAX, 4, 2,
                       "MSH-2 encoding characters must be 1 to 5 characters, found %zu", len);
    char enc[5] = {0};
    memcpy(enc, b + 4, len);
    for (size_t k = 0; k < len; k++) {
        unsigned char c = (unsigned char)enc[k];
        if ((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c < 0x20)
            return ix_fail(st, CG_ERR_HL7_SYNTAX, 4 + k, 2,
                           "MSH-2 encoding character 0x%02x is not a usable delimiter", c);
        for (size_t j = 0; j < k; j++)
            if (enc[j] == enc[k])
                return ix_fail(st, CG_ERR_HL7_SYNTAX, 4 + k, 2,
                               "MSH-2 encoding character '%c' is repeated", enc[k]);
    }
    d->field = (char)fs;
    d->comp = enc[0];
    d->rep = enc[1];
    d->esc = enc[2];
    d->sub = enc[3];
    d->trunc = enc[4];
    *enc_len = len;
    return CG_OK;
}

/* Finds the first repetition of MSH-18 without the index (its value decides how the rest is
 * scanned). Multi-byte mode follows the default charset, since nothing else is known yet. */
static cg_slice_t peek_msh18(const char *b, size_t n, const cg_hl7_delims_t *d, int mb)
{
    cg_slice_t s = {NULL, 0};
    int field = 2;
    size_t i = 4;
    size_t start = 0;
#if CG_HL7_SIMD
    /* Whole 16-byte chunks first, while one holds no terminator (nor, in multi-byte mode, a
     * byte that may lead a double-byte character) and does not reach MSH-18: per message, a
     * byte loop over MSH costs a tenth of the index. The loop below takes over from the chunk
     * that does, in the same state. */
    const __m128i vfs = _mm_set1_epi8(d->field), vcr = _mm_set1_epi8('\r');
    const __m128i vlf = _mm_set1_epi8('\n'), vend = _mm_set1_epi8(MLLP_END);
    while (i + 16 <= n) {
        __m128i x = _mm_loadu_si128((const __m128i *)(const void *)(b + i));
        __m128i end = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(x, vcr), _mm_cmpeq_epi8(x, vlf)),
                                   _mm_cmpeq_epi8(x, vend));
        unsigned stop = (unsigned)_mm_movemask_epi8(end);
        if (mb)
            stop |= (unsigned)_mm_movemask_epi8(x);
        /* Separators in the chunk: the sum of its 0/1 bytes (no POPCNT in baseline x86-64). */
        __m128i ones = _mm_sad_epu8(_mm_sub_epi8(_mm_setzero_si128(), _mm_cmpeq_epi8(x, vfs)),
                                    _mm_setzero_si128());
        int nf = _mm_cvtsi128_si32(_mm_add_epi32(ones, _mm_unpackhi_epi64(ones, ones)));
        if (stop || field + nf >= 18)
            break;
        field += nf;
        i += 16;
    }
#endif
    for (; i < n; i++) {
        unsigned char c = (unsigned char)b[i];
        if (mb && c >= 0x81) {
            i++;
            continue;
        }
        if (is_seg_end(c))
            break;
        if (c == (unsigned char)d->field) {
            field++;
            if (field == 18)
                start = i + 1;
            else if (field == 19)
                break;
        }
    }
    if (field < 18)
        return s;
    if (i > n)
        i = n;
    size_t end = start;
    while (end < i && b[end] != d->rep)
        end++;
    while (start < end && b[start] == ' ')
        start++;
    while (end > start && b[end - 1] == ' ')
        end--;
    s.ptr = b + start;
    s.len = end - start;
    return s;
}

#if CG_HL7_SIMD
typedef struct simd_set {
    __m128i fs, comp, rep, sub, c1f;
} simd_set_t;

/* Bit i set when byte i is a delimiter or a control character (< 0x20); *hi gets bytes >= 0x80.
 * Written out for the four 16-byte lanes: -O2 does not unroll the loop form, and that costs
 * close to half the throughput. */
static inline uint64_t classify16(const char *s, const simd_set_t *v, uint64_t *hi)
{
    __m128i x = _mm_loadu_si128((const __m128i *)(const void *)s);
    __m128i ctl = _mm_cmpeq_epi8(_mm_max_epu8(x, v->c1f), v->c1f);
    __m128i r = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(x, v->fs), _mm_cmpeq_epi8(x, v->comp)),
                             _mm_or_si128(_mm_cmpeq_epi8(x, v->rep), _mm_cmpeq_epi8(x, v->sub)));
    *hi = (uint16_t)_mm_movemask_epi8(x);
    return (uint16_t)_mm_movemask_epi8(_mm_or_si128(r, ctl));
}

static inline uint64_t classify64(const char *s, const simd_set_t *v, uint64_t *hi)
{
    uint64_t h0, h1, h2, h3;
    uint64_t m0 = classify16(s, v, &h0), m1 = classify16(s + 16, v, &h1);
    uint64_t m2 = classify16(s + 32, v, &h2), m3 = classify16(s + 48, v, &h3);
    *hi = h0 | h1 << 16 | h2 << 32 | h3 << 48;
    return m0 | m1 << 16 | m2 << 32 | m3 << 48;
}
#endif

static int force_portable;

void cg_hl7__force_portable(int on)
{
    __atomic_store_n(&force_portable, on, __ATOMIC_RELAXED);
}

/* Indexes the message whose "MSH" is at input offset start. *next gets where the reader goes on
 * (the next message, or a resync point after an error). */
static cg_err_t index_message(cg_hl7_msg_t *m, const cg_hl7_reader_t *r, size_t start, size_t *next,
                              cg_error_t *err)
{
    const char *in = r->buf;
    size_t in_len = r->len;
    ix_state_t st = {m, in + start, in_len - start, 0, start, err};
    const char *b = st.b;
    const size_t avail = st.avail;
    st.region = avail < m->opt.max_message_bytes ? avail : m->opt.max_message_bytes;
    const size_t region = st.region;

    m->data = b;
    m->len = 0;
    m->offset = start;
    m->nsegs = 0;
    m->wrapped = 0;
    m->nleaves = m->ntoks = 0;
    m->hier_live = 0;
    m->prev_live = 0;
    m->hier_seg = UINT32_MAX;
    if (grow_segs(m, 2) || grow_tables(m, 256))
        return ix_fail(&st, CG_ERR_NOMEM, 0, 0, "out of memory");
    memcpy(m->segs[0].name, "MSH", 4);

    size_t enc_len = 0;
    cg_err_t rc = read_delims(&st, &m->d, &enc_len);
    if (rc != CG_OK) {
        *next = resync(r, start + 3);
        return rc;
    }
    /* Charset first: it decides whether bytes >= 0x81 hide delimiters in their trail bytes.
     * Feeds repeat the same MSH-18, so the resolved name is kept keyed by its raw bytes. */
    char why[160];
    cg_slice_t cs = peek_msh18(b, region, &m->d, m->default_mb);
    if (cs.len >= sizeof(m->cs_key) || m->cs_key_len != cs.len ||
        (cs.len && memcmp(m->cs_key, cs.ptr, cs.len) != 0) || !m->charset[0]) {
        if (cg_hl7__set_charset(m, cs.ptr, cs.len, why, sizeof(why)) != CG_OK) {
            m->cs_key_len = (size_t)-1;
            *next = resync(r, start + 3);
            return ix_fail(&st, CG_ERR_CHARSET, cs.len ? (size_t)(cs.ptr - b) : 0, 18, "%s%s",
                           cs.len ? "" : "default ", why);
        }
        if (cs.len < sizeof(m->cs_key)) {
            if (cs.len)
                memcpy(m->cs_key, cs.ptr, cs.len);
            m->cs_key_len = cs.len;
        } else {
            m->cs_key_len = (size_t)-1;
        }
    }
    const int mb = m->charset_mb;

    uint8_t *cls = m->cls;
    /* Clear only what the previous message set. */
    cls[(unsigned char)m->cls_set[0]] = cls[(unsigned char)m->cls_set[1]] = 0;
    cls[(unsigned char)m->cls_set[2]] = cls[(unsigned char)m->cls_set[3]] = 0;
    m->cls_set[0] = m->d.field;
    m->cls_set[1] = m->d.comp;
    m->cls_set[2] = m->d.rep;
    m->cls_set[3] = m->d.sub;
    cls[(unsigned char)m->d.field] = L_FIELD;
    if (m->d.comp)
        cls[(unsigned char)m->d.comp] = L_COMP;
    if (m->d.rep)
        cls[(unsigned char)m->d.rep] = L_REP;
    if (m->d.sub)
        cls[(unsigned char)m->d.sub] = L_SUB;
    cls['\r'] = cls['\n'] = cls[MLLP_END] = L_SEG;

#if CG_HL7_SIMD
    simd_set_t vs;
    vs.fs = _mm_set1_epi8(m->d.field);
    vs.comp = _mm_set1_epi8(m->d.comp ? m->d.comp : m->d.field);
    vs.rep = _mm_set1_epi8(m->d.rep ? m->d.rep : m->d.field);
    vs.sub = _mm_set1_epi8(m->d.sub ? m->d.sub : m->d.field);
    vs.c1f = _mm_set1_epi8(0x1f);
#endif

    uint32_t *le = m->leaf_end, *tl = m->tok_leaf;
    uint32_t nl = 0, nt = 1, ns = 0;
    tl[0] = 0;
    /* The header's name token ends at MSH-1; MSH-2 is one opaque token up to the next separator,
     * which the loop below closes like any other delimiter. */
    le[nl++] = 3;
    tl[nt++] = nl;
    cg_hl7_seg_ix_t cur = {0, 0, 0, 0, "MSH", 1};
    size_t p = 4 + enc_len;
    int carry = 0;
    int done = 0;
    size_t msg_end = 0;
    const int wide = !__atomic_load_n(&force_portable, __ATOMIC_RELAXED) && cg_hl7__scan_avx2_ok();
    size_t q;         /* at a terminator: where the next line starts */
    int bound, valid; /* ... whether it ends the message, whether it is a segment */

    while (!done) {
        if (p >= region) {
            if (region < avail && !is_seg_end((unsigned char)b[region])) {
                /* Beyond the limit without reaching the next message. */
                m->nsegs = ns;
                m->segs[ns] = cur;
                *next = resync(r, start + region);
                return ix_fail(&st, CG_ERR_HL7_LIMIT, region, 0,
                               "message longer than the limit of %zu bytes",
                               m->opt.max_message_bytes);
            }
            /* The last segment has no terminator: close it at the end. */
            le[nl++] = (uint32_t)region;
            tl[nt++] = nl;
            p = region;
            goto seg_end;
        }
        if (nl + CG_HL7_SCAN_SLACK > m->cap) {
            m->nleaves = nl;
            if (grow_tables(m, (size_t)nl + CG_HL7_SCAN_SLACK)) {
                m->nsegs = ns;
                m->segs[ns] = cur;
                *next = resync(r, start + p);
                return ix_fail(&st, CG_ERR_NOMEM, p, 0, "out of memory");
            }
            le = m->leaf_end;
            tl = m->tok_leaf;
        }
        if (wide) {
            cg_hl7_scan_t sc;
            sc.b = b;
            sc.le = le;
            sc.tl = tl;
            sc.nl = nl;
            sc.nt = nt;
            sc.cap = m->cap;
            sc.carry = carry;
            sc.mb = mb;
            sc.fs = m->d.field;
            sc.comp = m->d.comp;
            sc.rep = m->d.rep ? m->d.rep : m->d.field;
            sc.sub = m->d.sub ? m->d.sub : m->d.field;
            sc.m = m;
            sc.cur = cur;
            sc.ns = ns;
            sc.msg_end = msg_end;
            int term;
            p = cg_hl7__scan_avx2(&sc, p, region, &term);
            nl = sc.nl;
            nt = sc.nt;
            carry = sc.carry;
            cur = sc.cur;
            ns = sc.ns;
            m->nsegs = ns;
            msg_end = sc.msg_end;
            if (term)
                goto seg_end;
            continue;
        }
        uint64_t mask, hi;
        size_t blk = region - p;
#if CG_HL7_SIMD
        if (blk >= 64) {
            mask = classify64(b + p, &vs, &hi);
            blk = 64;
        } else {
            char tmp[64] = {0};
            memcpy(tmp, b + p, blk);
            mask = classify64(tmp, &vs, &hi);
            mask &= ((uint64_t)1 << blk) - 1;
            hi &= ((uint64_t)1 << blk) - 1;
        }
#else
        if (blk > 64)
            blk = 64;
        mask = hi = 0;
        for (size_t k = 0; k < blk; k++) {
            unsigned char c = (unsigned char)b[p + k];
            if (cls[c] || c < 0x20)
                mask |= (uint64_t)1 << k;
            if (c >= 0x80)
                hi |= (uint64_t)1 << k;
        }
#endif
        if (mb && (hi || carry))
            mask &= ~cg_hl7__trail_bits((const unsigned char *)b + p, blk, &carry);
        while (mask) {
            size_t pos = p + (size_t)__builtin_ctzll(mask);
            mask &= mask - 1;
            unsigned lvl = cls[(unsigned char)b[pos]];
            if (lvl - 1u >= 4u) { /* rare: a control byte that is data, or a segment end */
                if (lvl == L_NONE)
                    continue;
                le[nl++] = (uint32_t)pos;
                tl[nt++] = nl;
                p = pos;
                goto seg_end;
            }
            le[nl++] = (uint32_t)pos;
            tl[nt] = nl;
            nt += lvl >= L_FIELD;
        }
        p += blk;
        continue;

    seg_end:
        /* p is the terminator of the segment `cur` (or the end of the region). Where the next
         * line starts and what it is are computed once: both steps below need them. */
        if (p + 1 < avail && is_seg_end((unsigned char)b[p]) &&
            is_name_char((unsigned char)b[p + 1]))
            q = p + 1; /* the usual single terminator: what skip_gap would return */
        else
            q = skip_gap(b, avail, p);
        bound = q >= avail || is_boundary(b + q, avail - q);
        valid = !bound && valid_seg_start(b, avail, q, m->d.field);
        {
            if (!m->opt.strict_segments && !bound && !valid) {
                /* A line that is no segment continues the last value (text wrapped by an editor,
                 * raw line breaks in OBX-5/NTE-3): the terminator becomes data. */
                nl--;
                nt--;
                m->wrapped++;
                p = q;
                carry = 0;
                continue;
            }
        }
        cur.end = (uint32_t)p;
        {
            uint32_t ntok = (nt - 1) - cur.tok0;
            uint32_t nfields = cur.header ? ntok : ntok - 1;
            if ((size_t)ns + 2 > m->seg_cap && grow_segs(m, (size_t)ns + 2)) {
                m->nsegs = ns;
                *next = resync(r, start + p);
                return ix_fail(&st, CG_ERR_NOMEM, p, 0, "out of memory");
            }
            m->segs[ns] = cur;
            m->nsegs = ns;
            if (nfields > m->opt.max_fields) {
                uint32_t t = cur.tok0 + m->opt.max_fields + (cur.header ? 0 : 1);
                uint32_t l = tl[t];
                *next = resync(r, start + p);
                return ix_fail(&st, CG_ERR_HL7_LIMIT, le[l - 1] + 1, (int)m->opt.max_fields + 1,
                               "more than %u fields in one segment", m->opt.max_fields);
            }
            /* Every repetition has a leaf: a segment with few leaves needs no closer look. */
            if (nl - cur.leaf0 > m->opt.max_reps) {
                for (uint32_t t = cur.tok0; t < nt - 1; t++) {
                    uint32_t l, l1, k = m->opt.max_reps + 1;
                    if (cg_hl7__split_leaves(m, tl[t], tl[t + 1], L_REP, k, &l, &l1) == k) {
                        int f = (int)(t - cur.tok0) + (cur.header ? 1 : 0);
                        *next = resync(r, start + p);
                        return ix_fail(&st, CG_ERR_HL7_LIMIT, le[l - 1] + 1, f,
                                       "more than %u repetitions in one field", m->opt.max_reps);
                    }
                }
            }
            ns++;
            m->nsegs = ns;
            msg_end = p;
            if (ns > m->opt.max_segments) {
                m->nsegs = ns - 1;
                *next = resync(r, start + p);
                return ix_fail(&st, CG_ERR_HL7_LIMIT, cur.start, 0,
                               "more than %u segments in one message", m->opt.max_segments);
            }
        }
        {
            if (bound) {
                *next = start + q;
                done = 1;
                break;
            }
            if (q >= region) {
                *next = resync(r, start + q);
                return ix_fail(&st, CG_ERR_HL7_LIMIT, q, 0,
                               "message longer than the limit of %zu bytes",
                               m->opt.max_message_bytes);
            }
            memset(&cur, 0, sizeof(cur));
            cur.start = (uint32_t)q;
            cur.tok0 = nt - 1;
            cur.leaf0 = nl;
            size_t k = 0;
            while (k < 3 && q + k < avail && is_name_char((unsigned char)b[q + k])) {
                cur.name[k] = b[q + k];
                k++;
            }
            m->segs[ns] = cur; /* so an error below names it */
            if (!valid) {
                memset(m->segs[ns].name, 0, 4);
                *next = resync(r, start + q);
                /* where, not what: the line may be a wrapped free-text value (a name, a note);
                 * cohortgate parse shows it locally */
                return ix_fail(&st, CG_ERR_HL7_SYNTAX, q, 0,
                               "a line does not start with a 3-character segment name");
            }
            p = q + 3;
            carry = 0;
        }
    }

    m->nsegs = ns;
    /* Sentinel: the phantom token started by the last terminator bounds the last field. */
    m->segs[ns].tok0 = nt - 1;
    m->segs[ns].leaf0 = nl;
    m->segs[ns].start = m->segs[ns].end = (uint32_t)msg_end;
    m->segs[ns].name[0] = '\0';
    m->nleaves = nl;
    m->ntoks = nt;
    m->len = msg_end;
    return CG_OK;
}

/* ---- reader ---------------------------------------------------------------------------------- */

void cg_hl7_reader_init(cg_hl7_reader_t *r, const char *buf, size_t len)
{
    memset(r, 0, sizeof(*r));
    r->buf = buf;
    r->len = len;
    if (len >= 3 && memcmp(buf, "\xEF\xBB\xBF", 3) == 0)
        r->pos = 3;
}

/* A trailer's count (its first field, when given) against what came; the first mismatch is
 * kept for cg_hl7_reader_end(). */
static void check_count(cg_hl7_reader_t *r, cg_slice_t seg, size_t at, size_t came,
                        const char *field, const char *what)
{
    if (r->count_error_at || seg.len < 5)
        return;
    char sep = seg.ptr[3];
    size_t i = 4, n = 0, digits = 0;
    while (i < seg.len && seg.ptr[i] != sep && seg.ptr[i] == ' ')
        i++;
    for (; i < seg.len && seg.ptr[i] >= '0' && seg.ptr[i] <= '9' && digits < 12; i++, digits++)
        n = n * 10 + (size_t)(seg.ptr[i] - '0');
    if (!digits || n == came)
        return; /* no count given (it is optional), or it agrees */
    r->count_error_at = at + 1;
    snprintf(r->count_error, sizeof(r->count_error), "%s says %zu, but %zu %s came", field, n, came,
             what);
}

cg_err_t cg_hl7_reader_end(const cg_hl7_reader_t *r, cg_error_t *err)
{
    if (!r->count_error_at)
        return CG_OK;
    cg_hl7__err(err, CG_ERR_HL7_SYNTAX, r->msg_no, 0, NULL, 0, r->count_error_at - 1, "%s",
                r->count_error);
    return CG_ERR_HL7_SYNTAX;
}

int cg_hl7_reader_more(cg_hl7_reader_t *r)
{
    for (;;) {
        size_t i = r->pos;
        while (i < r->len && (is_seg_end((unsigned char)r->buf[i]) || r->buf[i] == MLLP_START ||
                              r->buf[i] == ' ' || r->buf[i] == '\t'))
            i++;
        r->pos = i;
        if (i >= r->len)
            return 0;
        const char *p = r->buf + i;
        size_t avail = r->len - i;
        int fhs = is_seg(p, avail, "FHS"), bhs = is_seg(p, avail, "BHS");
        int bts = is_seg(p, avail, "BTS"), fts = is_seg(p, avail, "FTS");
        if (!(fhs || bhs || bts || fts))
            return 1;
        size_t e = line_end(r->buf, r->len, i);
        cg_slice_t seg = {p, e - i};
        if (bts || (fts && r->batch.batch_no)) /* FTS-1 counts batches: none, nothing to count */
            check_count(r, seg, i, bts ? r->batch.index_in_batch : r->batch.batch_no,
                        bts ? "BTS-1 (batch message count)" : "FTS-1 (file batch count)",
                        bts ? "message(s) in the batch" : "batch(es) in the file");
        if (fhs) {
            memset(&r->batch, 0, sizeof(r->batch));
            r->batch.fhs = seg;
            r->batch.fhs_offset = i;
        } else if (bhs) {
            size_t no = r->batch.batch_no;
            r->batch.bhs = seg;
            r->batch.bhs_offset = i;
            r->batch.batch_no = no + 1;
            r->batch.index_in_batch = 0;
        } else if (bts) {
            r->batch.bhs = (cg_slice_t){NULL, 0};
            r->batch.bhs_offset = 0;
            r->batch.index_in_batch = 0;
        } else {
            memset(&r->batch, 0, sizeof(r->batch));
        }
        r->pos = e;
    }
}

/* What the bytes at p are, by kind and never by content (they may be patient data). */
static const char *what_starts(const char *p, size_t n)
{
    const unsigned char *u = (const unsigned char *)p;
    if (n >= 2 && ((u[0] == 0xFF && u[1] == 0xFE) || (u[0] == 0xFE && u[1] == 0xFF)))
        return "a UTF-16 byte order mark (HL7 v2 is not sent in UTF-16)";
    if (n && u[0] == '<')
        return "'<' (an XML document? give the input format xml or auto)";
    if (n && u[0] == 0)
        return "zero bytes";
    if (n && (u[0] < 0x20 || u[0] >= 0x7F))
        return "a control or non-ASCII byte";
    return "other text";
}

cg_err_t cg_hl7_reader_next(cg_hl7_reader_t *r, cg_hl7_msg_t *m, cg_error_t *err)
{
    if (!cg_hl7_reader_more(r)) {
        cg_hl7__err(err, CG_ERR_NOT_HL7, r->msg_no, 0, NULL, 0, r->pos, "no message in input");
        return CG_ERR_NOT_HL7;
    }
    r->msg_no++;
    m->number = r->msg_no;
    m->nsegs = 0;
    m->len = 0;
    m->data = r->buf + r->pos;
    m->offset = r->pos;
    if (r->batch.bhs.len || r->batch.fhs.len)
        r->batch.index_in_batch++;
    m->batch = r->batch;
    if (!is_seg(r->buf + r->pos, r->len - r->pos, "MSH")) {
        size_t at = r->pos;
        r->pos = resync(r, at);
        cg_hl7__err(err, CG_ERR_NOT_HL7, r->msg_no, 0, NULL, 0, at,
                    "not an HL7 v2 message: expected an MSH segment, found %s",
                    what_starts(r->buf + at, r->len - at));
        return CG_ERR_NOT_HL7;
    }
    size_t next = r->len;
    cg_err_t rc = index_message(m, r, r->pos, &next, err);
    if (next <= r->pos) /* never stall */
        next = resync(r, r->pos + 1);
    r->pos = next;
    if (rc != CG_OK)
        m->nsegs = 0;
    return rc;
}

cg_err_t cg_hl7_parse(cg_hl7_msg_t *m, const char *buf, size_t len, cg_error_t *err)
{
    cg_hl7_reader_t r;
    cg_hl7_reader_init(&r, buf, len);
    if (!cg_hl7_reader_more(&r)) {
        cg_hl7__err(err, CG_ERR_NOT_HL7, 1, 0, NULL, 0, r.pos, "empty input: no MSH segment");
        m->nsegs = 0;
        return CG_ERR_NOT_HL7;
    }
    cg_err_t rc = cg_hl7_reader_next(&r, m, err);
    if (rc != CG_OK)
        return rc;
    if (cg_hl7_reader_more(&r)) {
        cg_hl7__err(err, CG_ERR_HL7_SYNTAX, 2, 0, NULL, 0, r.pos,
                    "more than one message in the input (use a reader for batches)");
        m->nsegs = 0;
        return CG_ERR_HL7_SYNTAX;
    }
    if ((rc = cg_hl7_reader_end(&r, err)) != CG_OK)
        m->nsegs = 0;
    return rc;
}
