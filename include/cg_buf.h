/* cg_buf.h - slices, growable byte buffers and the per-message arena.
 *
 * cg_slice_t is a zero-copy view {ptr, len} into memory someone else owns (like ngx_str_t).
 * cg_buf_t is an owned, growable byte buffer; reset keeps its capacity so a buffer reused per
 * message stops allocating once warm. cg_arena_t hands out scratch memory for one message and
 * is reset after it (like nginx's request pool): allocations are never freed one by one.
 */
#ifndef CG_BUF_H
#define CG_BUF_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "cg_err.h"

typedef struct cg_slice {
    const char *ptr;
    size_t len;
} cg_slice_t;

#define CG_SLICE_LIT(s) ((cg_slice_t){(s), sizeof(s) - 1})

int cg_slice_eq(cg_slice_t a, const char *cstr);

typedef struct cg_buf {
    char *data; /* always NUL-terminated when len > 0 or after any append */
    size_t len;
    size_t cap;
    int failed; /* set once an allocation failed; later appends are no-ops */
} cg_buf_t;

void cg_buf_init(cg_buf_t *b);
/* Frees the storage; b may be NULL. */
void cg_buf_free(cg_buf_t *b);
/* Empties the buffer, keeping its capacity. */
void cg_buf_reset(cg_buf_t *b);
cg_err_t cg_buf_reserve(cg_buf_t *b, size_t extra);
cg_err_t cg_buf_append(cg_buf_t *b, const void *p, size_t n);
cg_err_t cg_buf_puts(cg_buf_t *b, const char *s);
cg_err_t cg_buf_putc(cg_buf_t *b, char c);
cg_err_t cg_buf_printf(cg_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* v in decimal at buf (at least 21 bytes; no NUL), its length. By hand: snprintf costs more
 * than the rest of writing an id column, and ids have 19 digits. */
size_t cg_fmt_int64(char *buf, int64_t v);
/* v in decimal, appended. */
cg_err_t cg_buf_put_int64(cg_buf_t *b, int64_t v);
/* Length of the valid UTF-8 sequence at s[0..n) (1-4), or 0 when the bytes there are not valid
 * UTF-8 (overlong, surrogate, beyond U+10FFFF, truncated). Inline: decoders and writers run it
 * on every non-ASCII byte. */
static inline size_t cg_utf8_seq_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    if (c < 0x80)
        return 1;
    size_t len;
    uint32_t min;
    if ((c & 0xE0) == 0xC0) {
        len = 2;
        min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
        len = 3;
        min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
        len = 4;
        min = 0x10000;
    } else {
        return 0;
    }
    if (len > n)
        return 0;
    uint32_t cp = c & (0x7F >> len);
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return len;
}

/* memcpy(d, s, n) for the short pieces of records and ids (codes, ids, names: mostly under 17
 * bytes), inline: two overlapping loads and stores instead of a call into the library. Longer
 * ones go to memcpy. d and s must not overlap, as for memcpy. */
static inline void cg_mem_copy(void *d, const void *s, size_t n)
{
    unsigned char *o = (unsigned char *)d;
    const unsigned char *i = (const unsigned char *)s;
    if (n >= 8 && n <= 16) {
        uint64_t a, b;
        memcpy(&a, i, 8);
        memcpy(&b, i + n - 8, 8);
        memcpy(o, &a, 8);
        memcpy(o + n - 8, &b, 8);
    } else if (n >= 4 && n < 8) {
        uint32_t a, b;
        memcpy(&a, i, 4);
        memcpy(&b, i + n - 4, 4);
        memcpy(o, &a, 4);
        memcpy(o + n - 4, &b, 4);
    } else if (n && n < 4) {
        o[0] = i[0];
        o[n / 2] = i[n / 2];
        o[n - 1] = i[n - 1];
    } else if (n) {
        memcpy(o, i, n);
    }
}

/* Whether s[0..n) goes into a JSON string unchanged (printable ASCII and DEL, no '"' or '\\'):
 * names, codes and ids nearly always do, and copying them whole is cheaper than escaping. Eight
 * bytes a step: a byte >= 0x80, < 0x20, '"' or '\\' sets its top bit in one of the masks
 * (borrows only spread above a real hit). Inline: it runs on every value written. */
static inline int cg_buf_json_plain(const char *s, size_t n)
{
    const uint64_t ones = 0x0101010101010101u, high = 0x8080808080808080u;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        uint64_t q = w ^ (ones * '"'), bs = w ^ (ones * '\\');
        if ((w | ((w - ones * 0x20) & ~w) | ((q - ones) & ~q) | ((bs - ones) & ~bs)) & high)
            return 0;
    }
    if (i == n)
        return 1;
    uint64_t w;
    if (n >= 8) { /* the tail: the last eight bytes, overlapping checked ones */
        memcpy(&w, s + n - 8, 8);
    } else if (n >= 4) { /* short codes: their first and last four bytes, overlapping */
        uint32_t a, b;
        memcpy(&a, s, 4);
        memcpy(&b, s + n - 4, 4);
        w = a | (uint64_t)b << 32;
    } else { /* one to three bytes, the rest of the word a plain 'a' */
        const unsigned char *p = (const unsigned char *)s;
        w = (ones * 'a' & ~(uint64_t)0xffffff) | p[0] | (uint64_t)p[n / 2] << 8 |
            (uint64_t)p[n - 1] << 16;
    }
    uint64_t q = w ^ (ones * '"'), bs = w ^ (ones * '\\');
    return !((w | ((w - ones * 0x20) & ~w) | ((q - ones) & ~q) | ((bs - ones) & ~bs)) & high);
}

/* Appends the contents of the file at path (a pipe or /dev/stdin works too) and a NUL that does
 * not count in len. CG_ERR_IO with errno set when it cannot be read, CG_ERR_NOMEM. */
cg_err_t cg_buf_read_file(cg_buf_t *b, const char *path);
/* Appends s as a JSON string literal with quotes, escaping as RFC 8259 requires. Bytes that are
 * not valid UTF-8 are written as U+FFFD so the output is always valid JSON. */
cg_err_t cg_buf_put_json_str(cg_buf_t *b, const char *s, size_t n);

/* Inline fast path of cg_buf_putc for hot loops writing many single bytes: the same bytes and
 * result; only the call is saved when the buffer has room. */
static inline cg_err_t cg_buf_putc_fast(cg_buf_t *b, char c)
{
    if (b->cap - b->len > 1 && !b->failed) {
        b->data[b->len++] = c;
        b->data[b->len] = '\0';
        return CG_OK;
    }
    return cg_buf_putc(b, c);
}

typedef struct cg_arena_chunk cg_arena_chunk_t;

typedef struct cg_arena {
    cg_arena_chunk_t *head; /* chunk being filled; older ones follow */
    size_t chunk_size;
    size_t used_total; /* bytes handed out since the last reset */
    size_t limit;      /* most bytes handed out between resets; 0: no limit */
    int over_limit;    /* an allocation was refused for the limit since the last reset */
} cg_arena_t;

/* chunk_size 0 picks a default (64 KiB). */
void cg_arena_init(cg_arena_t *a, size_t chunk_size);
/* Caps the bytes handed out between resets (one message's values): past it, allocations fail
 * and over_limit is set, so a caller tells a message too big to map from a machine out of
 * memory. 0: no cap. */
void cg_arena_set_limit(cg_arena_t *a, size_t bytes);
/* Allocates n bytes aligned for any type; NULL when out of memory or over the limit. Valid until
 * reset. */
void *cg_arena_alloc(cg_arena_t *a, size_t n);
char *cg_arena_strndup(cg_arena_t *a, const char *s, size_t n);
/* Forgets every allocation; keeps the first chunk so a warm arena does not call malloc. */
void cg_arena_reset(cg_arena_t *a);
/* Frees everything; a may be NULL. */
void cg_arena_destroy(cg_arena_t *a);

#endif
