/* pseudo.c - keyed pseudonyms, date shifts and row ids (see cg_pseudo.h). */
#include "cg_pseudo.h"

#include <errno.h>
#include <fcntl.h>
/* The SHA256_CTX interface is deprecated in OpenSSL 3.0 but kept: it is the only one that saves
 * and restores a SHA-256 state by a struct copy. Through EVP each HMAC cost two context copies
 * that allocate, and with a keyed id on every row that halved mapping throughput (bench_map.sh);
 * with SHA256_CTX an HMAC is two struct copies and the SHA-NI compression, nothing allocated. */
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <sodium/crypto_shorthash_siphash24.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SHA256_LEN   32
#define SHA256_BLOCK 64

struct cg_pseudo_key {
    size_t len;
    unsigned char *bytes; /* wiped before free */
};

struct cg_pseudo {
    SHA256_CTX inner;    /* SHA-256 state after absorbing key ^ ipad */
    SHA256_CTX outer;    /* SHA-256 state after absorbing key ^ opad */
    int date_shift_days; /* N of [-N, N]; 0 = off */
    /* SipHash-2-4 key of row ids: HMAC(key, row_id_key_label), its first 16 bytes */
    unsigned char id_key[crypto_shorthash_siphash24_KEYBYTES];
    /* SipHash's state after a packed row id's first 24 bytes, the same for every id of a kind
     * (0x00, row_id_prefix, the kind: three whole blocks), for CG_PSEUDO_ID_KEY and _MESSAGE */
    uint64_t id_pre[2][4];
};

static const char date_shift_prefix[] = "\0cohortgate/date-shift/v1\x1F";
static const char row_id_key_label[] = "\0cohortgate/row-id-key/v4";
static const char message_id_prefix[] = "\0cohortgate/message-id/v1\x1F";

static void set_err(char *errstr, size_t errstr_size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_err(char *errstr, size_t errstr_size, const char *fmt, ...)
{
    if (!errstr || !errstr_size)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errstr, errstr_size, fmt, ap);
    va_end(ap);
}

/* ---- keys ---- */

cg_pseudo_key_t *cg_pseudo_key_new(const void *bytes, size_t len, char *errstr, size_t errstr_size)
{
    if (len < CG_PSEUDO_KEY_MIN) {
        set_err(errstr, errstr_size,
                "pseudonym key is %zu bytes; at least %d are required (e.g. `openssl rand -hex "
                "32`)",
                len, CG_PSEUDO_KEY_MIN);
        return NULL;
    }
    if (len > CG_PSEUDO_KEY_MAX) {
        set_err(errstr, errstr_size, "pseudonym key is %zu bytes; at most %d are accepted", len,
                CG_PSEUDO_KEY_MAX);
        return NULL;
    }
    cg_pseudo_key_t *k = calloc(1, sizeof(*k));
    unsigned char *b = malloc(len);
    if (!k || !b) {
        free(k);
        free(b);
        set_err(errstr, errstr_size, "out of memory");
        return NULL;
    }
    memcpy(b, bytes, len);
    k->bytes = b;
    k->len = len;
    return k;
}

/* Reads at most CG_PSEUDO_KEY_MAX + 1 bytes into buf (so an oversize file is detected). */
static int read_key_file(const char *path, unsigned char *buf, size_t cap, size_t *len,
                         char *errstr, size_t errstr_size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        set_err(errstr, errstr_size, "pseudonym key file %s: %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) == 0 && !S_ISREG(st.st_mode) && !S_ISFIFO(st.st_mode) &&
        !S_ISCHR(st.st_mode)) {
        close(fd);
        set_err(errstr, errstr_size, "pseudonym key file %s: not a regular file", path);
        return -1;
    }
    size_t n = 0;
    while (n < cap) {
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            int e = errno;
            close(fd);
            set_err(errstr, errstr_size, "pseudonym key file %s: %s", path, strerror(e));
            return -1;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    *len = n;
    return 0;
}

cg_pseudo_key_t *cg_pseudo_key_load(const char *file_path, const char *env_name, char *errstr,
                                    size_t errstr_size)
{
    if (file_path && env_name) {
        set_err(errstr, errstr_size,
                "pseudonym key: name either a key file or an environment variable, not both");
        return NULL;
    }
    if (file_path) {
        unsigned char buf[CG_PSEUDO_KEY_MAX + 2];
        size_t n = 0;
        if (read_key_file(file_path, buf, sizeof(buf), &n, errstr, errstr_size) != 0) {
            OPENSSL_cleanse(buf, sizeof(buf));
            return NULL;
        }
        if (n > CG_PSEUDO_KEY_MAX + 1) {
            OPENSSL_cleanse(buf, sizeof(buf));
            set_err(errstr, errstr_size,
                    "pseudonym key file %s: larger than %d bytes; is this the right file?",
                    file_path, CG_PSEUDO_KEY_MAX);
            return NULL;
        }
        if (n > 0 && buf[n - 1] == '\n') /* editors add one; it is not part of the key */
            n--;
        char sub[128];
        cg_pseudo_key_t *k = cg_pseudo_key_new(buf, n, sub, sizeof(sub));
        OPENSSL_cleanse(buf, sizeof(buf));
        if (!k)
            set_err(errstr, errstr_size, "pseudonym key file %s: %s", file_path, sub);
        return k;
    }
    const char *name = env_name ? env_name : CG_PSEUDO_KEY_ENV;
    const char *val = getenv(name);
    if (!val || !*val) {
        set_err(errstr, errstr_size,
                "pseudonym key: environment variable %s is not set%s; refusing to emit unkeyed "
                "pseudonyms",
                name, env_name ? "" : " and no key file was given");
        return NULL;
    }
    char sub[128];
    cg_pseudo_key_t *k = cg_pseudo_key_new(val, strlen(val), sub, sizeof(sub));
    if (!k)
        set_err(errstr, errstr_size, "environment variable %s: %s", name, sub);
    return k;
}

size_t cg_pseudo_key_len(const cg_pseudo_key_t *key)
{
    return key ? key->len : 0;
}

void cg_pseudo_key_destroy(cg_pseudo_key_t *key)
{
    if (!key)
        return;
    if (key->bytes) {
        OPENSSL_cleanse(key->bytes, key->len);
        free(key->bytes);
    }
    OPENSSL_cleanse(key, sizeof(*key));
    free(key);
}

/* ---- HMAC state ---- */

void cg_pseudo_destroy(cg_pseudo_t *p)
{
    if (!p)
        return;
    OPENSSL_cleanse(p, sizeof(*p)); /* the key states */
    free(p);
}

/* ---- SipHash-2-4 (Aumasson and Bernstein), for row ids: libsodium's crypto_shorthash_siphash24
 * computes the same, but from the first byte on each time; a row id's first three blocks are
 * the same for all ids of a kind, so their state is made once (id_pre) and each id absorbs the
 * rest. test_pseudo checks it against libsodium. ---- */

static inline uint64_t sip_le64(const unsigned char *b)
{
    uint64_t x;
    memcpy(&x, b, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    x = __builtin_bswap64(x);
#endif
    return x;
}

#define SIP_ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIP_ROUND(v)                                                                               \
    do {                                                                                           \
        v[0] += v[1];                                                                              \
        v[1] = SIP_ROTL(v[1], 13);                                                                 \
        v[1] ^= v[0];                                                                              \
        v[0] = SIP_ROTL(v[0], 32);                                                                 \
        v[2] += v[3];                                                                              \
        v[3] = SIP_ROTL(v[3], 16);                                                                 \
        v[3] ^= v[2];                                                                              \
        v[0] += v[3];                                                                              \
        v[3] = SIP_ROTL(v[3], 21);                                                                 \
        v[3] ^= v[0];                                                                              \
        v[2] += v[1];                                                                              \
        v[1] = SIP_ROTL(v[1], 17);                                                                 \
        v[1] ^= v[2];                                                                              \
        v[2] = SIP_ROTL(v[2], 32);                                                                 \
    } while (0)

static void sip_init(uint64_t v[4], const unsigned char key[16])
{
    uint64_t k0 = sip_le64(key), k1 = sip_le64(key + 8);
    v[0] = k0 ^ UINT64_C(0x736f6d6570736575);
    v[1] = k1 ^ UINT64_C(0x646f72616e646f6d);
    v[2] = k0 ^ UINT64_C(0x6c7967656e657261);
    v[3] = k1 ^ UINT64_C(0x7465646279746573);
}

static inline void sip_block(uint64_t v[4], uint64_t m)
{
    v[3] ^= m;
    SIP_ROUND(v);
    SIP_ROUND(v);
    v[0] ^= m;
}

/* The last block (in[0..n), n < 8, and the length total) and the finalization after state v,
 * written as libsodium writes it (8 bytes, little-endian) into out. */
static void sip_tail(uint64_t v[4], const unsigned char *in, size_t n, size_t total,
                     unsigned char out[8])
{
    uint64_t b = (uint64_t)total << 56;
    for (size_t i = 0; i < n; i++)
        b |= (uint64_t)in[i] << (8 * i);
    sip_block(v, b);
    v[2] ^= 0xff;
    SIP_ROUND(v);
    SIP_ROUND(v);
    SIP_ROUND(v);
    SIP_ROUND(v);
    b = v[0] ^ v[1] ^ v[2] ^ v[3];
    for (int i = 0; i < 8; i++)
        out[i] = (unsigned char)(b >> (8 * i));
}

/* The hash of a message whose first whole blocks state absorbed, in[0..n) its rest and total
 * its length (sip_tail's out). */
static void sip_finish(const uint64_t state[4], const unsigned char *in, size_t n, size_t total,
                       unsigned char out[8])
{
    uint64_t v[4] = {state[0], state[1], state[2], state[3]};
    for (; n >= 8; in += 8, n -= 8)
        sip_block(v, sip_le64(in));
    sip_tail(v, in, n, total, out);
}

static const char row_id_prefix[] = "\0cohortgate/row-id/v4\x1F";

/* id_pre from id_key: the state after 0x00, row_id_prefix and the kind */
static void id_pre_init(cg_pseudo_t *p)
{
    for (int k = 0; k < 2; k++) {
        unsigned char head[24];
        head[0] = 0;
        memcpy(head + 1, row_id_prefix, sizeof(row_id_prefix) - 1);
        head[23] = (unsigned char)(CG_PSEUDO_ID_KEY + k);
        sip_init(p->id_pre[k], p->id_key);
        for (int i = 0; i < 24; i += 8)
            sip_block(p->id_pre[k], sip_le64(head + i));
    }
}

static cg_pseudo_t *alloc_pseudo(char *errstr, size_t errstr_size)
{
    cg_pseudo_t *p = calloc(1, sizeof(*p));
    if (!p) {
        set_err(errstr, errstr_size, "out of memory");
        return NULL;
    }
    return p;
}

cg_pseudo_t *cg_pseudo_new(const cg_pseudo_key_t *key, int date_shift_days, char *errstr,
                           size_t errstr_size)
{
    if (!key || key->len < CG_PSEUDO_KEY_MIN) {
        set_err(errstr, errstr_size, "pseudonym key missing or shorter than %d bytes",
                CG_PSEUDO_KEY_MIN);
        return NULL;
    }
    if (date_shift_days < 0 || date_shift_days > CG_PSEUDO_DATE_SHIFT_MAX) {
        set_err(errstr, errstr_size, "date shift %d days out of range [0, %d]", date_shift_days,
                CG_PSEUDO_DATE_SHIFT_MAX);
        return NULL;
    }
    cg_pseudo_t *p = alloc_pseudo(errstr, errstr_size);
    if (!p)
        return NULL;
    p->date_shift_days = date_shift_days;

    /* RFC 2104: keys longer than the block are hashed first, shorter ones zero-padded */
    unsigned char k0[SHA256_BLOCK], pad[SHA256_BLOCK];
    memset(k0, 0, sizeof(k0));
    int ok = 1;
    if (key->len > SHA256_BLOCK) {
        SHA256_CTX c;
        ok = SHA256_Init(&c) == 1 && SHA256_Update(&c, key->bytes, key->len) == 1 &&
             SHA256_Final(k0, &c) == 1;
        OPENSSL_cleanse(&c, sizeof(c));
    } else {
        memcpy(k0, key->bytes, key->len);
    }
    for (size_t i = 0; ok && i < SHA256_BLOCK; i++)
        pad[i] = k0[i] ^ 0x36;
    ok = ok && SHA256_Init(&p->inner) == 1 && SHA256_Update(&p->inner, pad, SHA256_BLOCK) == 1;
    for (size_t i = 0; ok && i < SHA256_BLOCK; i++)
        pad[i] = k0[i] ^ 0x5c;
    ok = ok && SHA256_Init(&p->outer) == 1 && SHA256_Update(&p->outer, pad, SHA256_BLOCK) == 1;
    OPENSSL_cleanse(k0, sizeof(k0));
    OPENSSL_cleanse(pad, sizeof(pad));
    unsigned char h[SHA256_LEN];
    if (ok && cg_pseudo_hmac(p, row_id_key_label, sizeof(row_id_key_label) - 1, h) == CG_OK) {
        memcpy(p->id_key, h, sizeof(p->id_key));
        id_pre_init(p);
    } else
        ok = 0;
    OPENSSL_cleanse(h, sizeof(h));
    if (!ok) {
        cg_pseudo_destroy(p);
        set_err(errstr, errstr_size, "OpenSSL: cannot initialise HMAC-SHA256");
        return NULL;
    }
    return p;
}

cg_pseudo_t *cg_pseudo_clone(const cg_pseudo_t *src, char *errstr, size_t errstr_size)
{
    if (!src) {
        set_err(errstr, errstr_size, "nothing to clone");
        return NULL;
    }
    cg_pseudo_t *p = alloc_pseudo(errstr, errstr_size);
    if (!p)
        return NULL;
    p->date_shift_days = src->date_shift_days;
    p->inner = src->inner;
    p->outer = src->outer;
    memcpy(p->id_key, src->id_key, sizeof(p->id_key));
    memcpy(p->id_pre, src->id_pre, sizeof(p->id_pre));
    return p;
}

int cg_pseudo_date_shift_days(const cg_pseudo_t *p)
{
    return p ? p->date_shift_days : 0;
}

/* Each SHA256_Update buffers and checks, so short inputs are first packed into one
 * stack buffer; longer ones are fed piece by piece. */
#define PACK_MAX 512

static size_t pack(const cg_slice_t *parts, size_t nparts, unsigned char *buf)
{
    size_t total = 0;
    for (size_t i = 0; i < nparts; i++) {
        if (parts[i].len > PACK_MAX - total)
            return SIZE_MAX;
        if (parts[i].len)
            memcpy(buf + total, parts[i].ptr, parts[i].len);
        total += parts[i].len;
    }
    return total;
}

static int digest_parts(SHA256_CTX *ctx, const cg_slice_t *parts, size_t nparts)
{
    unsigned char buf[PACK_MAX];
    size_t n = pack(parts, nparts, buf);
    if (n != SIZE_MAX)
        return SHA256_Update(ctx, buf, n) == 1;
    for (size_t i = 0; i < nparts; i++)
        if (parts[i].len && SHA256_Update(ctx, parts[i].ptr, parts[i].len) != 1)
            return 0;
    return 1;
}

/* HMAC from the precomputed inner/outer states. */
static cg_err_t hmac_parts(cg_pseudo_t *p, const cg_slice_t *parts, size_t nparts,
                           unsigned char out[SHA256_LEN])
{
    unsigned char ih[SHA256_LEN];
    SHA256_CTX c = p->inner; /* the saved state: a struct copy */
    int ok = digest_parts(&c, parts, nparts) && SHA256_Final(ih, &c) == 1;
    c = p->outer;
    ok = ok && SHA256_Update(&c, ih, SHA256_LEN) == 1 && SHA256_Final(out, &c) == 1;
    OPENSSL_cleanse(&c, sizeof(c));
    if (!ok)
        return CG_ERR_NOMEM;
    return CG_OK;
}

cg_err_t cg_pseudo_hmac(cg_pseudo_t *p, const void *data, size_t len, unsigned char out[32])
{
    if (!p || !out || (!data && len))
        return CG_ERR_INVALID_ARG;
    cg_slice_t part = {data, len};
    return hmac_parts(p, &part, 1, out);
}

cg_err_t cg_pseudo_hmac_parts(cg_pseudo_t *p, const cg_slice_t *parts, size_t n,
                              unsigned char out[32])
{
    if (!p || !out || (n && !parts))
        return CG_ERR_INVALID_ARG;
    for (size_t i = 0; i < n; i++)
        if (!parts[i].ptr && parts[i].len)
            return CG_ERR_INVALID_ARG;
    return hmac_parts(p, parts, n, out);
}

/* First 8 bytes big-endian, top bit cleared; 0 (probability 2^-63) becomes 1 so that 0 can
 * keep meaning "none" downstream. */
static int64_t to_id63(const unsigned char *h)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | h[i];
    v &= UINT64_C(0x7FFFFFFFFFFFFFFF);
    return v ? (int64_t)v : 1;
}

static int valid_identity(cg_slice_t authority, cg_slice_t patient_id)
{
    if (!patient_id.len || !patient_id.ptr || (authority.len && !authority.ptr))
        return 0;
    for (size_t i = 0; i < authority.len; i++)
        if (authority.ptr[i] == 0x1F || authority.ptr[i] == '\0')
            return 0;
    return 1;
}

cg_err_t cg_pseudo_person(cg_pseudo_t *p, cg_slice_t authority, cg_slice_t patient_id,
                          cg_pseudo_person_t *out)
{
    static const char hex[] = "0123456789abcdef";
    if (!p || !out || !valid_identity(authority, patient_id))
        return CG_ERR_INVALID_ARG;
    cg_slice_t parts[3] = {authority, {"\x1F", 1}, patient_id};
    unsigned char h[SHA256_LEN];
    cg_err_t rc = hmac_parts(p, parts, 3, h);
    if (rc != CG_OK)
        return rc;
    out->person_id = to_id63(h);
    for (int i = 0; i < CG_PSEUDO_SOURCE_VALUE_LEN / 2; i++) {
        out->source_value[2 * i] = hex[h[i] >> 4];
        out->source_value[2 * i + 1] = hex[h[i] & 15];
    }
    out->source_value[CG_PSEUDO_SOURCE_VALUE_LEN] = '\0';
    return CG_OK;
}

cg_err_t cg_pseudo_message_id(cg_pseudo_t *p, cg_slice_t id, char out[CG_PSEUDO_MESSAGE_ID_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";
    if (!p || !out || (id.len && !id.ptr))
        return CG_ERR_INVALID_ARG;
    cg_slice_t parts[2] = {{message_id_prefix, sizeof(message_id_prefix) - 1}, id};
    unsigned char h[SHA256_LEN];
    cg_err_t rc = hmac_parts(p, parts, 2, h);
    if (rc != CG_OK)
        return rc;
    for (int i = 0; i < CG_PSEUDO_MESSAGE_ID_LEN / 2; i++) {
        out[2 * i] = hex[h[i] >> 4];
        out[2 * i + 1] = hex[h[i] & 15];
    }
    out[CG_PSEUDO_MESSAGE_ID_LEN] = '\0';
    return CG_OK;
}

cg_err_t cg_pseudo_date_shift(cg_pseudo_t *p, cg_slice_t authority, cg_slice_t patient_id,
                              int *days)
{
    if (!p || !days || !valid_identity(authority, patient_id))
        return CG_ERR_INVALID_ARG;
    *days = 0;
    if (p->date_shift_days == 0)
        return CG_OK;
    cg_slice_t parts[4] = {
        {date_shift_prefix, sizeof(date_shift_prefix) - 1}, authority, {"\x1F", 1}, patient_id};
    unsigned char h[SHA256_LEN];
    cg_err_t rc = hmac_parts(p, parts, 4, h);
    if (rc != CG_OK)
        return rc;
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | h[i];
    /* modulo bias is below 2^-50 for N <= 3650 */
    uint64_t span = 2 * (uint64_t)p->date_shift_days + 1;
    *days = (int)(v % span) - p->date_shift_days;
    return CG_OK;
}

static void put_u32be(unsigned char *b, uint32_t v)
{
    b[0] = (unsigned char)(v >> 24);
    b[1] = (unsigned char)(v >> 16);
    b[2] = (unsigned char)(v >> 8);
    b[3] = (unsigned char)v;
}

/* The framing of a keyed id: prefix, kind, ns; then a presence byte and, for a present part,
 * its length (u32 BE) and bytes. The slices of it for hmac_parts (sl: 3 + 2 * n_parts entries),
 * frames holding the presence bytes and lengths; returns how many. */
static size_t key_id_slices(cg_pseudo_id_kind_t kind, cg_slice_t ns, const cg_slice_t *parts,
                            size_t n_parts, unsigned char head[6], unsigned char frames[][5],
                            cg_slice_t *sl)
{
    size_t n = 0;
    head[0] = (unsigned char)kind;
    put_u32be(head + 1, (uint32_t)ns.len);
    sl[n++] = (cg_slice_t){row_id_prefix, sizeof(row_id_prefix) - 1};
    sl[n++] = (cg_slice_t){(const char *)head, 5};
    sl[n++] = ns;
    for (size_t i = 0; i < n_parts; i++) {
        frames[i][0] = parts[i].ptr != NULL;
        if (!parts[i].ptr) {
            sl[n++] = (cg_slice_t){(const char *)frames[i], 1};
            continue;
        }
        put_u32be(frames[i] + 1, (uint32_t)parts[i].len);
        sl[n++] = (cg_slice_t){(const char *)frames[i], 5};
        sl[n++] = parts[i];
    }
    return n;
}

/* A packed row id's framing after its kind, written at o: u32be(len) ns || ns, then per part
 * 0x00 when absent, else 0x01 || u32be(len) || bytes. Its end. */
static unsigned char *pack_id_rest(unsigned char *o, cg_slice_t ns, const cg_slice_t *parts,
                                   size_t n_parts)
{
    put_u32be(o, (uint32_t)ns.len);
    o += 4;
    if (ns.len)
        cg_mem_copy(o, ns.ptr, ns.len);
    o += ns.len;
    for (size_t i = 0; i < n_parts; i++) {
        *o++ = parts[i].ptr != NULL;
        if (!parts[i].ptr)
            continue;
        put_u32be(o, (uint32_t)parts[i].len);
        o += 4;
        if (parts[i].len)
            cg_mem_copy(o, parts[i].ptr, parts[i].len);
        o += parts[i].len;
    }
    return o;
}

/* sip_finish from id_pre for the framing buf[0..n) after the kind, resumed from the state memo
 * kept after the longest run of whole blocks buf shares with the last framing it saw; memo then
 * holds buf's blocks and states. */
static void sip_finish_memo(const cg_pseudo_t *p, cg_pseudo_id_memo_t *memo, int kind,
                            const unsigned char *buf, size_t n, unsigned char out[8])
{
    size_t nb = n / 8, b = 0;
    uint64_t v[4];
    if (memo->p == p && memo->kind == kind) {
        size_t lim = nb < memo->blocks ? nb : memo->blocks;
        while (b < lim && sip_le64(buf + 8 * b) == memo->words[b])
            b++;
    }
    memcpy(v, b ? memo->states[b - 1] : p->id_pre[kind - CG_PSEUDO_ID_KEY], sizeof(v));
    for (size_t i = b; i < nb; i++) {
        uint64_t m = sip_le64(buf + 8 * i);
        sip_block(v, m);
        if (i < CG_PSEUDO_ID_MEMO_BLOCKS) {
            memo->words[i] = m;
            memcpy(memo->states[i], v, sizeof(v));
        }
    }
    memo->p = p;
    memo->kind = kind;
    memo->blocks = (uint32_t)(nb < CG_PSEUDO_ID_MEMO_BLOCKS ? nb : CG_PSEUDO_ID_MEMO_BLOCKS);
    sip_tail(v, buf + 8 * nb, n - 8 * nb, 24 + n, out);
}

void cg_pseudo_id_memo_clear(cg_pseudo_id_memo_t *memo)
{
    if (memo)
        OPENSSL_cleanse(memo, sizeof(*memo)); /* all zero: empty */
}

cg_err_t cg_pseudo_key_id(cg_pseudo_t *p, cg_pseudo_id_kind_t kind, cg_slice_t ns,
                          const cg_slice_t *parts, size_t n_parts, int64_t *out)
{
    return cg_pseudo_key_id_memo(p, NULL, kind, ns, parts, n_parts, out);
}

/* flatten: the packing and SipHash's rounds inline, not three calls an id (one id a row) */
__attribute__((flatten)) cg_err_t cg_pseudo_key_id_memo(cg_pseudo_t *p, cg_pseudo_id_memo_t *memo,
                                                        cg_pseudo_id_kind_t kind, cg_slice_t ns,
                                                        const cg_slice_t *parts, size_t n_parts,
                                                        int64_t *out)
{
    if (!p || !out || n_parts > CG_PSEUDO_ID_MAX_PARTS || (ns.len && !ns.ptr) ||
        ns.len > UINT32_MAX)
        return CG_ERR_INVALID_ARG;
    /* the framed length, and the parts checked, before anything is written */
    size_t len = sizeof(row_id_prefix) - 1 + 5 + ns.len;
    for (size_t i = 0; i < n_parts; i++) {
        if (!parts[i].ptr) {
            if (parts[i].len)
                return CG_ERR_INVALID_ARG;
            len += 1;
            continue;
        }
        if (parts[i].len > UINT32_MAX)
            return CG_ERR_INVALID_ARG;
        len += 5 + parts[i].len;
    }
    /* SipHash-2-4 under a key derived from the site key: a PRF like HMAC for these short
     * inputs at a tenth of its cost (one keyed id a row halved mapping throughput with
     * HMAC-SHA256). Inputs past the pack buffer are first reduced by HMAC; the leading byte
     * keeps the two forms apart. */
    unsigned char buf[1 + PACK_MAX];
    unsigned char sh[crypto_shorthash_siphash24_BYTES];
    if (len <= PACK_MAX && (kind == CG_PSEUDO_ID_KEY || kind == CG_PSEUDO_ID_MESSAGE)) {
        /* as below, from the first byte after the kind on: its state is id_pre's */
        size_t n = (size_t)(pack_id_rest(buf, ns, parts, n_parts) - buf);
        if (memo)
            sip_finish_memo(p, memo, (int)kind, buf, n, sh);
        else
            sip_finish(p->id_pre[kind - CG_PSEUDO_ID_KEY], buf, n, 24 + n, sh);
        *out = to_id63(sh);
        return CG_OK;
    }
    if (len <= PACK_MAX) {
        /* packed here, straight from the parts: the fixed pieces as stores, one copy per value
         * (a slice list built first, then packed, was a third of a row id's cost) */
        unsigned char *o = buf;
        *o++ = 0;
        memcpy(o, row_id_prefix, sizeof(row_id_prefix) - 1);
        o += sizeof(row_id_prefix) - 1;
        *o++ = (unsigned char)kind;
        len = (size_t)(pack_id_rest(o, ns, parts, n_parts) - buf);
    } else {
        unsigned char head[6], frames[CG_PSEUDO_ID_MAX_PARTS][5], h[SHA256_LEN];
        cg_slice_t sl[3 + 2 * CG_PSEUDO_ID_MAX_PARTS];
        size_t n = key_id_slices(kind, ns, parts, n_parts, head, frames, sl);
        cg_err_t rc = hmac_parts(p, sl, n, h);
        if (rc != CG_OK)
            return rc;
        buf[0] = 1;
        memcpy(buf + 1, h, SHA256_LEN);
        len = 1 + SHA256_LEN;
    }
    crypto_shorthash_siphash24(sh, buf, len, p->id_key);
    *out = to_id63(sh);
    return CG_OK;
}

int64_t cg_pseudo_id64(const cg_pseudo_t *p, int64_t id)
{
    /* 8 bytes: shorter than any framed key_id input (which starts with its prefix), so the two
     * never hash the same bytes */
    unsigned char in[8], sh[crypto_shorthash_siphash24_BYTES];
    for (int i = 0; i < 8; i++)
        in[i] = (unsigned char)((uint64_t)id >> (56 - 8 * i));
    crypto_shorthash_siphash24(sh, in, sizeof(in), p->id_key);
    return to_id63(sh);
}
