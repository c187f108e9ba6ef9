/* hl7_impl.h - internals shared by the hl7_*.c files (not a public header). */
#ifndef CG_HL7_IMPL_H
#define CG_HL7_IMPL_H

#include <iconv.h>
#include <stdint.h>

#include "cg_hl7.h"

/* One segment of the index. Offsets are relative to the message start. */
typedef struct cg_hl7_seg_ix {
    uint32_t start; /* first byte of the name */
    uint32_t end;   /* the terminator (or the end of the message) */
    uint32_t tok0;  /* index of the name token in the token (field) table */
    uint32_t leaf0; /* index of the name leaf: its start is `start`, not leaf_end[leaf0-1]+1 */
    char name[4];
    uint32_t header; /* MSH/FHS/BHS: MSH-1 is the separator itself, MSH-2 one opaque token */
} cg_hl7_seg_ix_t;

/* The repetition/component tables of one segment (see hl7_parse.c). */
typedef struct cg_hl7_hier {
    const uint32_t *tr, *rc, *cl;
    uint32_t t0;
} cg_hl7_hier_t;

/* iconv converters kept per decoder: HL7 v2 table 0211 names about 20 character sets, and a
 * feed that cycles through more than the cache holds reopens one per message (8 were 8x
 * slower over 16 charsets) */
#define CG_HL7_CV_CACHE 32

struct cg_hl7_msg {
    cg_hl7_options_t opt;
    char default_charset[64];
    char base_charset[64]; /* the options' default, which a per-input one replaces for a while */

    const char *data; /* the message's first byte ("MSH") */
    size_t len;       /* up to the end of its last segment */
    size_t offset;    /* of data in the input */
    size_t number;
    cg_hl7_delims_t d;
    cg_hl7_batch_t batch;
    char charset[64];  /* iconv name */
    int charset_utf8;  /* values need validation only */
    int charset_ascii; /* ASCII bytes stand for themselves (not UTF-16/32) */
    int default_mb;    /* charset_mb of the default charset */
    char cs_key[64];   /* raw MSH-18 that m->charset was resolved from */
    size_t cs_key_len; /* (size_t)-1: none */
    char cls_set[4];   /* delimiters whose cls[] entries are set */
    int charset_mb;    /* lead bytes >= 0x81 take an ASCII-range trail byte (GBK, Big5, SJIS) */

    /* The index: the offset of every delimiter once (leaf_end: the end of every subcomponent)
     * and, CSR-style, the first leaf of every token (field) plus one sentinel. Repetitions,
     * components and subcomponents of a field are derived on access from its leaves: the byte
     * at a recorded offset says which delimiter it is (see hl7_parse.c), no text is rescanned. */
    cg_hl7_seg_ix_t *segs;
    uint32_t nsegs, seg_cap;
    uint32_t *leaf_end; /* end offset of every subcomponent */
    uint32_t *tok_leaf; /* first leaf of every token (field) */
    uint32_t cap;
    uint32_t nleaves, ntoks;
    /* Per-segment repetition/component tables, derived on first access (hl7_parse.c): hier_at
     * holds each segment's offset in the hier pool (UINT32_MAX: not yet), valid while hier_live;
     * indexing a message clears hier_live. */
    uint32_t *hier_at, hier_at_cap;
    uint32_t *hier, hier_len, hier_cap;
    int hier_live;
    uint32_t hier_seg; /* the segment whose tables hier_last points to; UINT32_MAX: none */
    cg_hl7_hier_t hier_last;
    uint32_t wrapped; /* lines taken as continuations of the previous segment */
    /* cg_hl7_seg_prev's last answers, one per slot by name: the walk back from each OBX of an
     * order to its OBR or PID is then one step, not the distance (rules per OBX would be
     * quadratic in segments). Cleared by indexing a message (prev_live = 0). */
    struct {
        char name[4];
        uint32_t from;  /* asked from this segment ... */
        uint32_t found; /* ... and found this one (CG_HL7_NO_SEG: none) */
    } prev_memo[4];
    /* cg_hl7_seg_next's alike, forward: the search from each OBX for a segment that follows
     * it (an NTE, an SPM) or that the message lacks is then amortized to one pass */
    struct {
        char name[4];
        uint32_t from;  /* no such segment in [from, found) ... */
        uint32_t found; /* ... and this is one (CG_HL7_NO_SEG: none to the end) */
    } next_memo[4];
    int prev_live;    /* both memos */
    uint8_t cls[256]; /* delimiter class of each byte for the current message */

    struct {
        char name[64];
        iconv_t cd;
    } cv[CG_HL7_CV_CACHE];
    int ncv;
    int cv_next; /* the slot a full cache recycles next (round robin) */
    cg_buf_t scratch;
};

/* ---- hl7_err.c ---- */
void cg_hl7__err(cg_error_t *e, cg_err_t code, size_t msg_no, size_t seg, const char *seg_name,
                 int field, size_t offset, const char *fmt, ...)
    __attribute__((format(printf, 8, 9)));

/* ---- hl7_charset.c ---- */
/* Resolves MSH-18 (or the default) into m->charset and the flags. */
cg_err_t cg_hl7__set_charset(cg_hl7_msg_t *m, const char *raw, size_t len, char *why,
                             size_t why_size);

/* The cached UTF-8 converter for m->charset; (iconv_t)-1 when iconv does not know it. */
iconv_t cg_hl7__iconv(cg_hl7_msg_t *m);

/* 1 when the iconv charset name is a double-byte one whose trail bytes may fall in the ASCII
 * range (GBK, Big5, SJIS): a delimiter byte there is not a delimiter. */
int cg_hl7__charset_is_mb(const char *name);

/* ---- block scanners (hl7_scan_*.c) ----
 * State of the index loop handed to a wide scanner. The tables are leaf_end and tok_leaf of
 * cg_hl7_msg; n* are their counts. A scanner may write up to 144 entries past a count (two
 * blocks at a time; scratch, overwritten later), so it stops while every table still has
 * CG_HL7_SCAN_SLACK free entries. */
#define CG_HL7_SCAN_SLACK 192

typedef struct cg_hl7_scan {
    const char *b; /* message start */
    uint32_t *le, *tl;
    uint32_t nl, nt;
    uint32_t cap;
    int carry; /* the next byte is the trail byte of a double-byte character */
    int mb;
    char fs, comp, rep, sub; /* a missing delimiter is fs */
    /* Segment state, so the scanner can itself pass the usual terminator: one CR, LF or CRLF
     * followed by a well-formed segment of the same message, within every limit. */
    cg_hl7_msg_t *m;
    cg_hl7_seg_ix_t cur; /* the open segment */
    uint32_t ns;         /* closed segments */
    size_t msg_end;      /* terminator of the last closed segment */
} cg_hl7_scan_t;

/* Bits of the block [s, s+n) that are trail bytes of a double-byte character; *carry says the
 * block starts with one and is set when the next block does. Used by both scanners (portable in
 * hl7_parse.c, hl7_scan_avx2.c): inline here so neither calls into the other's file and the
 * portable loop keeps it inlined as before. */
static inline uint64_t cg_hl7__trail_bits(const unsigned char *s, size_t n, int *carry)
{
    uint64_t t = 0;
    size_t i = 0;
    if (*carry) {
        t |= 1;
        i = 1;
    }
    *carry = 0;
    for (; i < n; i++) {
        if (s[i] >= 0x81) {
            if (i + 1 < n)
                t |= (uint64_t)1 << (i + 1);
            else
                *carry = 1;
            i++;
        }
    }
    return t;
}

/* Scans from p towards region, appending every delimiter and closing segments whose end needs
 * no decision (see cg_hl7_scan). Returns where it stopped: at any other segment terminator
 * (already appended; *term = 1), at region, or earlier when the tables need to grow
 * (*term = 0). Only called when cg_hl7__scan_avx2_ok(). */
size_t cg_hl7__scan_avx2(cg_hl7_scan_t *sc, size_t p, size_t region, int *term);
int cg_hl7__scan_avx2_ok(void);

/* Tests: 1 forces the portable (SSE2/scalar) scanner, 0 restores the dispatch. */
void cg_hl7__force_portable(int on);
/* Tests: how the accessors reach what lies below a field: 1 always by walking its leaves (the
 * fallback when memory runs out), 2 always through the per-segment tables, 0 as chosen by the
 * field's size (hl7_parse.c). */
void cg_hl7__force_walk(int on);

/* The delimiter classes of a byte, innermost first (cls[] of the message). */
enum { L_NONE = 0, L_SUB = 1, L_COMP = 2, L_REP = 3, L_FIELD = 4, L_SEG = 5 };
/* hl7_access.c: the k-th part (1-based; 0: count them) at level lvl of leaves [l0, l1), as
 * leaves [*k0, *k1); returns how many parts there are up to k. The indexer uses it too. */
uint32_t cg_hl7__split_leaves(const cg_hl7_msg_t *m, uint32_t l0, uint32_t l1, unsigned lvl,
                              uint32_t k, uint32_t *k0, uint32_t *k1);

#endif
