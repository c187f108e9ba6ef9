/* arena.c - per-message arena, growable buffers and slices (see cg_buf.h). */
#include "cg_buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct cg_arena_chunk {
    cg_arena_chunk_t *next;
    size_t cap;
    size_t used;
    max_align_t data[]; /* aligned storage */
};

int cg_slice_eq(cg_slice_t a, const char *cstr)
{
    size_t n = strlen(cstr);
    return a.len == n && (n == 0 || memcmp(a.ptr, cstr, n) == 0);
}

void cg_buf_init(cg_buf_t *b)
{
    memset(b, 0, sizeof(*b));
}

void cg_buf_free(cg_buf_t *b)
{
    if (!b)
        return;
    free(b->data);
    memset(b, 0, sizeof(*b));
}

void cg_buf_reset(cg_buf_t *b)
{
    b->len = 0;
    b->failed = 0;
    if (b->data)
        b->data[0] = '\0';
}

cg_err_t cg_buf_reserve(cg_buf_t *b, size_t extra)
{
    if (b->failed)
        return CG_ERR_NOMEM;
    if (b->len + extra + 1 <= b->cap)
        return CG_OK;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra + 1) {
        if (cap > SIZE_MAX / 2) {
            b->failed = 1;
            return CG_ERR_NOMEM;
        }
        cap *= 2;
    }
    char *p = realloc(b->data, cap);
    if (!p) {
        b->failed = 1;
        return CG_ERR_NOMEM;
    }
    b->data = p;
    b->cap = cap;
    return CG_OK;
}

cg_err_t cg_buf_append(cg_buf_t *b, const void *p, size_t n)
{
    if (cg_buf_reserve(b, n) != CG_OK)
        return CG_ERR_NOMEM;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return CG_OK;
}

cg_err_t cg_buf_read_file(cg_buf_t *b, const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return CG_ERR_IO;
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        if (cg_buf_append(b, chunk, n) != CG_OK)
            break;
    int failed = ferror(f);
    fclose(f);
    if (b->failed)
        return CG_ERR_NOMEM;
    if (failed)
        return CG_ERR_IO;
    if (cg_buf_reserve(b, 0) != CG_OK) /* room for the NUL even when the file is empty */
        return CG_ERR_NOMEM;
    b->data[b->len] = '\0';
    return CG_OK;
}

cg_err_t cg_buf_puts(cg_buf_t *b, const char *s)
{
    return cg_buf_append(b, s, strlen(s));
}

cg_err_t cg_buf_putc(cg_buf_t *b, char c)
{
    return cg_buf_append(b, &c, 1);
}

cg_err_t cg_buf_printf(cg_buf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return CG_ERR_INVALID_ARG;
    if (cg_buf_reserve(b, (size_t)n) != CG_OK)
        return CG_ERR_NOMEM;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return CG_OK;
}

cg_err_t cg_buf_put_json_str(cg_buf_t *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    /* worst case every byte becomes \u00XX (6) or U+FFFD (3) */
    if (cg_buf_reserve(b, n * 6 + 2) != CG_OK)
        return CG_ERR_NOMEM;
    char *o = b->data + b->len;
    *o++ = '"';
    const unsigned char *p = (const unsigned char *)s, *end = p + n;
    while (p < end) {
        unsigned char c = *p;
        if (c >= 0x20 && c != '"' && c != '\\' && c < 0x80) {
            *o++ = (char)c;
            p++;
            continue;
        }
        if (c >= 0x80) {
            size_t l = cg_utf8_seq_len(p, (size_t)(end - p));
            if (l == 0) {
                memcpy(o, "\xEF\xBF\xBD", 3);
                o += 3;
                p++;
            } else {
                memcpy(o, p, l);
                o += l;
                p += l;
            }
            continue;
        }
        *o++ = '\\';
        switch (c) {
        case '"':
            *o++ = '"';
            break;
        case '\\':
            *o++ = '\\';
            break;
        case '\n':
            *o++ = 'n';
            break;
        case '\r':
            *o++ = 'r';
            break;
        case '\t':
            *o++ = 't';
            break;
        case '\b':
            *o++ = 'b';
            break;
        case '\f':
            *o++ = 'f';
            break;
        default:
            *o++ = 'u';
            *o++ = '0';
            *o++ = '0';
            *o++ = hex[c >> 4];
            *o++ = hex[c & 15];
        }
        p++;
    }
    *o++ = '"';
    b->len = (size_t)(o - b->data);
    b->data[b->len] = '\0';
    return CG_OK;
}

void cg_arena_init(cg_arena_t *a, size_t chunk_size)
{
    a->head = NULL;
    a->chunk_size = chunk_size ? chunk_size : 64 * 1024;
    a->used_total = 0;
    a->limit = 0;
    a->over_limit = 0;
}

void cg_arena_set_limit(cg_arena_t *a, size_t bytes)
{
    a->limit = bytes;
}

void *cg_arena_alloc(cg_arena_t *a, size_t n)
{
    const size_t align = _Alignof(max_align_t);
    size_t need = (n + align - 1) & ~(align - 1);
    if (need < n)
        return NULL;
    if (a->limit && need > a->limit - (a->used_total < a->limit ? a->used_total : a->limit)) {
        a->over_limit = 1;
        return NULL;
    }
    cg_arena_chunk_t *c = a->head;
    if (!c || c->cap - c->used < need) {
        size_t cap = a->chunk_size > need ? a->chunk_size : need;
        c = malloc(sizeof(*c) + cap);
        if (!c)
            return NULL;
        c->cap = cap;
        c->used = 0;
        c->next = a->head;
        a->head = c;
    }
    void *p = (char *)c->data + c->used;
    c->used += need;
    a->used_total += need;
    return p;
}

char *cg_arena_strndup(cg_arena_t *a, const char *s, size_t n)
{
    char *p = cg_arena_alloc(a, n + 1);
    if (!p)
        return NULL;
    cg_mem_copy(p, s, n); /* mostly short values: codes, numbers, dates */
    p[n] = '\0';
    return p;
}

void cg_arena_reset(cg_arena_t *a)
{
    a->over_limit = 0;
    cg_arena_chunk_t *c = a->head;
    if (!c)
        return;
    /* keep the oldest chunk (the usual size), free the rest */
    cg_arena_chunk_t *keep = c;
    while (keep->next)
        keep = keep->next;
    while (c != keep) {
        cg_arena_chunk_t *next = c->next;
        free(c);
        c = next;
    }
    keep->used = 0;
    a->head = keep;
    a->used_total = 0;
}

void cg_arena_destroy(cg_arena_t *a)
{
    if (!a)
        return;
    cg_arena_chunk_t *c = a->head;
    while (c) {
        cg_arena_chunk_t *next = c->next;
        free(c);
        c = next;
    }
    a->head = NULL;
    a->used_total = 0;
}

/* Two digits a pair, "00" to "99". */
static const char digit_pairs[201] =
    "0001020304050607080910111213141516171819202122232425262728293031"
    "3233343536373839404142434445464748495051525354555657585960616263"
    "6465666768697071727374757677787980818283848586878889909192939495"
    "96979899";

/* Eight digits of v (< 10^8) at o, zero-padded. */
static void put8(char *o, uint32_t v)
{
    uint32_t hi = v / 10000, lo = v % 10000;
    memcpy(o, digit_pairs + (hi / 100) * 2, 2);
    memcpy(o + 2, digit_pairs + (hi % 100) * 2, 2);
    memcpy(o + 4, digit_pairs + (lo / 100) * 2, 2);
    memcpy(o + 6, digit_pairs + (lo % 100) * 2, 2);
}

/* How many decimal digits u has: from its bit length (log10(2) ~ 1233/4096), one compare. */
static inline unsigned dec_digits(uint64_t u)
{
    static const uint64_t pow10[20] = {1u,
                                       10u,
                                       100u,
                                       1000u,
                                       10000u,
                                       100000u,
                                       1000000u,
                                       10000000u,
                                       100000000u,
                                       1000000000u,
                                       10000000000u,
                                       100000000000u,
                                       1000000000000u,
                                       10000000000000u,
                                       100000000000000u,
                                       1000000000000000u,
                                       10000000000000000u,
                                       100000000000000000u,
                                       1000000000000000000u,
                                       10000000000000000000u};
    if (u < 10)
        return 1;
    unsigned t = (unsigned)(64 - __builtin_clzll(u)) * 1233u >> 12;
    return t + (u >= pow10[t]);
}

size_t cg_fmt_int64(char *buf, int64_t x)
{
    /* written in place from its last digit (its length known first: no copy from a scratch
     * buffer, whose variable-length memcpy was a call per id); eight digits a step in 32-bit
     * arithmetic (ids have 19 of them: two 64-bit divisions instead of nine), then two at a time */
    uint64_t u = x < 0 ? (uint64_t)0 - (uint64_t)x : (uint64_t)x;
    size_t n = (x < 0) + dec_digits(u);
    char *o = buf + n;
    while (u >= 100000000u) {
        o -= 8;
        put8(o, (uint32_t)(u % 100000000u));
        u /= 100000000u;
    }
    uint32_t v = (uint32_t)u;
    while (v >= 100) {
        o -= 2;
        memcpy(o, digit_pairs + (v % 100) * 2, 2);
        v /= 100;
    }
    if (v >= 10) {
        o -= 2;
        memcpy(o, digit_pairs + v * 2, 2);
    } else {
        *--o = (char)('0' + v);
    }
    if (x < 0)
        buf[0] = '-';
    return n;
}

cg_err_t cg_buf_put_int64(cg_buf_t *b, int64_t v)
{
    char tmp[24];
    return cg_buf_append(b, tmp, cg_fmt_int64(tmp, v));
}
