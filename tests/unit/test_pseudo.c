/* test_pseudo.c - HMAC vectors, pseudonyms, date shifts, row ids and key handling.
 *
 * Pinned values below were computed independently of this code with Python's hmac/hashlib:
 *   key = b"cohortgate-test-key-0123456789ab"
 *   h = hmac.new(key, b"HOSP-A\x1fPAT0001234567", hashlib.sha256).digest()
 *   person_id = (int.from_bytes(h[:8], "big") & (2**63 - 1)) or 1;  source = h.hex()[:40]
 *   shift: h = hmac.new(key, b"\0cohortgate/date-shift/v1\x1f" + auth + b"\x1f" + pid, ...)
 *          int.from_bytes(h[:8], "big") % (2 * N + 1) - N
 *   row id: tests/scripts/siphash_ref.py (SipHash-2-4 written from its paper and checked
 *           against the paper's vector, under HMAC(key, "\0cohortgate/row-id-key/v4")[:16])
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cg_pseudo.h"

#include <sodium.h>

#define TEST_KEY "cohortgate-test-key-0123456789ab"

static const cg_slice_t auth = CG_SLICE_LIT("HOSP-A");
static const cg_slice_t pat = CG_SLICE_LIT("PAT0001234567");

static cg_pseudo_t *make(const void *key, size_t len, int shift)
{
    char err[256] = "";
    cg_pseudo_key_t *k = cg_pseudo_key_new(key, len, err, sizeof(err));
    assert_non_null(k);
    cg_pseudo_t *p = cg_pseudo_new(k, shift, err, sizeof(err));
    cg_pseudo_key_destroy(k); /* the object must not need the key afterwards */
    assert_non_null(p);
    return p;
}

static void hex(const unsigned char *b, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", b[i]);
}

static void check_hmac(const void *key, size_t klen, const char *data, const char *want)
{
    cg_pseudo_t *p = make(key, klen, 0);
    unsigned char mac[32];
    char got[65];
    assert_int_equal(cg_pseudo_hmac(p, data, strlen(data), mac), CG_OK);
    hex(mac, 32, got);
    assert_string_equal(got, want);
    /* in pieces (one absent, one empty, long ones past the packing buffer): the same MAC */
    size_t n = strlen(data), h = n / 2;
    cg_slice_t parts[] = {{data, h}, {NULL, 0}, {"", 0}, {data + h, n - h}};
    memset(mac, 0, sizeof(mac));
    assert_int_equal(cg_pseudo_hmac_parts(p, parts, 4, mac), CG_OK);
    hex(mac, 32, got);
    assert_string_equal(got, want);
    cg_slice_t bad = {NULL, 1};
    assert_int_equal(cg_pseudo_hmac_parts(p, &bad, 1, mac), CG_ERR_INVALID_ARG);
    /* repeated calls reuse the precomputed states and must not drift */
    assert_int_equal(cg_pseudo_hmac(p, data, strlen(data), mac), CG_OK);
    hex(mac, 32, got);
    assert_string_equal(got, want);
    cg_pseudo_destroy(p);
}

/* RFC 4231 test cases 6 and 7 (131-byte key, hashed first); cases 1-5 use keys shorter than
 * the 32 bytes the API accepts. Plus a 32-byte and a 64-byte key (zero-pad path), Python. */
static void test_rfc4231(void **state)
{
    (void)state;
    unsigned char k131[131];
    memset(k131, 0xaa, sizeof(k131));
    check_hmac(k131, sizeof(k131), "Test Using Larger Than Block-Size Key - Hash Key First",
               "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
    check_hmac(k131, sizeof(k131),
               "This is a test using a larger than block-size key and a larger than block-size "
               "data. The key needs to be hashed before being used by the HMAC algorithm.",
               "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2");
    unsigned char k64[64];
    for (int i = 0; i < 64; i++)
        k64[i] = (unsigned char)i;
    check_hmac(k64, sizeof(k64), "exactly one block of key",
               "aed89a53f83495834369f6c764db660e0e41d224347eb2b6f2054241399e36e2");
}

static void test_person_pinned(void **state)
{
    (void)state;
    cg_pseudo_t *p = make(TEST_KEY, strlen(TEST_KEY), 30);
    cg_pseudo_person_t out;
    assert_int_equal(cg_pseudo_person(p, auth, pat, &out), CG_OK);
    assert_true(out.person_id == INT64_C(4974320388520216297));
    assert_string_equal(out.source_value, "45085609ccbb06e9b8a74915a6c14e0c00891e98");
    assert_int_equal(strlen(out.source_value), CG_PSEUDO_SOURCE_VALUE_LEN);

    /* an empty authority is allowed (PID-3.4 often is) */
    assert_int_equal(cg_pseudo_person(p, (cg_slice_t){"", 0}, pat, &out), CG_OK);
    assert_true(out.person_id == INT64_C(5790744363457459610));
    assert_string_equal(out.source_value, "505cdb5160fa359a49df6723bd4a15d5db686d8a");

    int days = 99;
    assert_int_equal(cg_pseudo_date_shift(p, auth, pat, &days), CG_OK);
    assert_int_equal(days, 3);
    assert_int_equal(cg_pseudo_date_shift(p, auth, CG_SLICE_LIT("PAT0001234568"), &days), CG_OK);
    assert_int_equal(days, -9);
    cg_pseudo_destroy(p);

    p = make(TEST_KEY, strlen(TEST_KEY), 365);
    assert_int_equal(cg_pseudo_date_shift(p, auth, pat, &days), CG_OK);
    assert_int_equal(days, 309);
    cg_pseudo_destroy(p);
}

/* Row ids pinned against tests/scripts/siphash_ref.py (SipHash-2-4 from its paper, Python's hmac):
 * keyed, framed, absent apart from empty. */
static void test_row_id_pinned(void **state)
{
    (void)state;
    cg_pseudo_t *p = make(TEST_KEY, strlen(TEST_KEY), 0);
    int64_t id = 0, id2 = 0;
    cg_slice_t ns = CG_SLICE_LIT("measurement");
    cg_slice_t parts[4] = {
        CG_SLICE_LIT("GENHOSP"), CG_SLICE_LIT("FIL889"), CG_SLICE_LIT("4548-4"), {"", 0}};
    assert_int_equal(cg_pseudo_key_id(p, CG_PSEUDO_ID_KEY, ns, parts, 4, &id), CG_OK);
    assert_true(id == INT64_C(5846664394349001926));
    parts[3] = (cg_slice_t){NULL, 0}; /* absent, not empty */
    assert_int_equal(cg_pseudo_key_id(p, CG_PSEUDO_ID_KEY, ns, parts, 4, &id), CG_OK);
    assert_true(id == INT64_C(7480846239801289078));
    parts[3] = (cg_slice_t){"", 0}; /* a message identity never equals a business key */
    assert_int_equal(cg_pseudo_key_id(p, CG_PSEUDO_ID_MESSAGE, ns, parts, 4, &id), CG_OK);
    assert_true(id == INT64_C(843271938091001207));
    assert_int_equal(cg_pseudo_key_id(p, CG_PSEUDO_ID_KEY, (cg_slice_t){"", 0}, NULL, 0, &id),
                     CG_OK);
    assert_true(id == INT64_C(4334568409779551210));

    /* framing: moving a byte between parts changes the id */
    cg_slice_t a[2] = {CG_SLICE_LIT("ab"), CG_SLICE_LIT("c")},
               b[2] = {CG_SLICE_LIT("a"), CG_SLICE_LIT("bc")};
    assert_int_equal(cg_pseudo_key_id(p, CG_PSEUDO_ID_KEY, ns, a, 2, &id), CG_OK);
    assert_int_equal(cg_pseudo_key_id(p, CG_PSEUDO_ID_KEY, ns, b, 2, &id2), CG_OK);
    assert_true(id != id2);
    assert_true(id > 0 && id2 > 0);

    /* keyed: another key, another id */
    cg_pseudo_t *q = make("another-test-key-0123456789abcdef", 33, 0);
    assert_int_equal(cg_pseudo_key_id(q, CG_PSEUDO_ID_KEY, ns, a, 2, &id2), CG_OK);
    assert_true(id != id2);
    cg_pseudo_destroy(q);

    /* no key, a part with a length but no bytes, too many parts: refused */
    assert_int_equal(cg_pseudo_key_id(NULL, CG_PSEUDO_ID_KEY, ns, a, 2, &id), CG_ERR_INVALID_ARG);
    cg_slice_t bad = {NULL, 3};
    assert_int_equal(cg_pseudo_key_id(p, CG_PSEUDO_ID_KEY, ns, &bad, 1, &id), CG_ERR_INVALID_ARG);
    cg_slice_t many[CG_PSEUDO_ID_MAX_PARTS + 1] = {{NULL, 0}};
    assert_int_equal(
        cg_pseudo_key_id(p, CG_PSEUDO_ID_KEY, ns, many, CG_PSEUDO_ID_MAX_PARTS + 1, &id),
        CG_ERR_INVALID_ARG);
    cg_pseudo_destroy(p);
}

/* The row id of the documented framing (cg_pseudo.h), computed here with libsodium from the
 * whole input: the id key from the public HMAC, then SipHash-2-4 of 0x00 || prefix || kind ||
 * u32be(len) ns || ns || per part 0x00, or 0x01 || u32be(len) || bytes. 0 when the framed input
 * is past the packed form's 512 bytes (those are reduced by HMAC first: pinned above). */
static int64_t row_id_by_library(cg_pseudo_t *p, int kind, cg_slice_t ns, const cg_slice_t *parts,
                                 size_t n)
{
    static const char label[] = "\0cohortgate/row-id-key/v4";
    static const char prefix[] = "\0cohortgate/row-id/v4\x1F";
    unsigned char h[32], in[1024], *o = in;
    assert_int_equal(cg_pseudo_hmac(p, label, sizeof(label) - 1, h), CG_OK);
    *o++ = 0;
    memcpy(o, prefix, sizeof(prefix) - 1);
    o += sizeof(prefix) - 1;
    *o++ = (unsigned char)kind;
    for (int b = 3; b >= 0; b--)
        *o++ = (unsigned char)(ns.len >> (8 * b));
    memcpy(o, ns.ptr, ns.len);
    o += ns.len;
    for (size_t i = 0; i < n; i++) {
        *o++ = parts[i].ptr != NULL;
        if (!parts[i].ptr)
            continue;
        for (int b = 3; b >= 0; b--)
            *o++ = (unsigned char)(parts[i].len >> (8 * b));
        memcpy(o, parts[i].ptr, parts[i].len);
        o += parts[i].len;
    }
    if ((size_t)(o - in) - 1 > 512)
        return 0;
    unsigned char sh[crypto_shorthash_siphash24_BYTES];
    crypto_shorthash_siphash24(sh, in, (unsigned long long)(o - in), h);
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | sh[i];
    v &= UINT64_C(0x7FFFFFFFFFFFFFFF);
    return v ? (int64_t)v : 1;
}

/* Row ids hash on from the state the kind's fixed first blocks leave (pseudo.c's own SipHash):
 * the same ids as libsodium hashing the whole framed input, for every length around the block
 * size up to the packed form's bound, either kind, absent and empty parts, and a clone's. */
static void test_row_id_as_libsodium(void **state)
{
    (void)state;
    cg_pseudo_t *p = make(TEST_KEY, strlen(TEST_KEY), 0);
    cg_pseudo_t *c = cg_pseudo_clone(p, NULL, 0);
    assert_non_null(c);
    static char text[700];
    for (size_t i = 0; i < sizeof(text); i++)
        text[i] = (char)('a' + (i * 7) % 26);
    size_t checked = 0;
    for (size_t nl = 0; nl < 20; nl++) {
        for (size_t len = 0; len < 600; len += len < 40 ? 1 : 37) {
            cg_slice_t ns = {text + 3, nl};
            cg_slice_t parts[3] = {{text, len}, {NULL, 0}, {text + 5, len % 9}};
            for (int kind = CG_PSEUDO_ID_KEY; kind <= CG_PSEUDO_ID_MESSAGE; kind++) {
                for (size_t np = 0; np <= 3; np++) {
                    int64_t fast = 0, clone = 0, lib = row_id_by_library(p, kind, ns, parts, np);
                    assert_int_equal(cg_pseudo_key_id(p, kind, ns, parts, np, &fast), CG_OK);
                    assert_int_equal(cg_pseudo_key_id(c, kind, ns, parts, np, &clone), CG_OK);
                    assert_true(clone == fast);
                    if (lib) {
                        assert_true(fast == lib);
                        checked++;
                    }
                }
            }
        }
    }
    assert_true(checked > 1000);
    cg_pseudo_destroy(c);
    cg_pseudo_destroy(p);
}

/* Ids through a memo (cg_pseudo_key_id_memo) are the ids without one, whatever came before:
 * ids sharing some leading blocks with the last one (an order's results), none, all of them,
 * fewer or more than the memo keeps, the other kind, and another key's object on the same memo
 * (its states are not the first's). */
static void test_row_id_memo(void **state)
{
    (void)state;
    cg_pseudo_t *p = make(TEST_KEY, strlen(TEST_KEY), 0);
    cg_pseudo_t *q = make("another key, thirty-two bytes or more",
                          strlen("another key, thirty-two bytes or more"), 0);
    cg_pseudo_id_memo_t memo = {0};
    static char text[400];
    for (size_t i = 0; i < sizeof(text); i++)
        text[i] = (char)('a' + (i * 11) % 26);
    cg_slice_t ns = {"measurement", 11};
    size_t checked = 0, resumed = 0;
    for (unsigned step = 0; step < 3000; step++) {
        unsigned r = step * 2654435761u;
        cg_pseudo_t *o = (r >> 7) % 13 ? p : q;
        int kind = (r >> 11) % 7 ? CG_PSEUDO_ID_KEY : CG_PSEUDO_ID_MESSAGE;
        /* a fixed first part, a second of a few texts, then parts that change most steps */
        char last[2] = {(char)('A' + (r >> 3) % 3), 0};
        cg_slice_t parts[4] = {{text, 10 + (r >> 5) % 3 * 8},
                               {text + 40, (r >> 9) % 4 ? 17 : 3},
                               {text + 100 + (r >> 13) % 7, (r >> 17) % 190},
                               {last, (r >> 21) % 2}};
        size_t np = 2 + (r >> 23) % 3;
        if ((r >> 25) % 5 == 0)
            parts[1] = (cg_slice_t){NULL, 0};
        unsigned before = memo.p == o && memo.kind == kind ? memo.blocks : 0;
        int64_t plain = 0, memoized = 0;
        assert_int_equal(cg_pseudo_key_id(o, kind, ns, parts, np, &plain), CG_OK);
        assert_int_equal(cg_pseudo_key_id_memo(o, &memo, kind, ns, parts, np, &memoized), CG_OK);
        assert_true(memoized == plain);
        assert_true(memo.p == o && memo.kind == kind);
        resumed += before > 2;
        int64_t lib = row_id_by_library(o, kind, ns, parts, np);
        if (lib) {
            assert_true(memoized == lib);
            checked++;
        }
    }
    assert_true(checked > 2000);
    assert_true(resumed > 1000); /* the memo was used, not only filled */
    /* a memo emptied is filled afresh; NULL is cg_pseudo_key_id */
    cg_pseudo_id_memo_clear(&memo);
    assert_null(memo.p);
    int64_t a = 0, b = 0;
    assert_int_equal(cg_pseudo_key_id_memo(p, NULL, CG_PSEUDO_ID_KEY, ns, &ns, 1, &a), CG_OK);
    assert_int_equal(cg_pseudo_key_id(p, CG_PSEUDO_ID_KEY, ns, &ns, 1, &b), CG_OK);
    assert_true(a == b);
    cg_pseudo_destroy(q);
    cg_pseudo_destroy(p);
}

static void test_date_shift_range(void **state)
{
    (void)state;
    cg_pseudo_t *p = make(TEST_KEY, strlen(TEST_KEY), 7);
    int seen[15] = {0};
    char buf[32];
    for (int i = 0; i < 3000; i++) {
        int n = snprintf(buf, sizeof(buf), "P%d", i);
        int d = 100;
        assert_int_equal(cg_pseudo_date_shift(p, auth, (cg_slice_t){buf, (size_t)n}, &d), CG_OK);
        assert_true(d >= -7 && d <= 7);
        seen[d + 7]++;
    }
    for (int i = 0; i < 15; i++)
        assert_true(seen[i] > 100); /* every value of the range occurs (expected ~200 each) */
    cg_pseudo_destroy(p);

    p = make(TEST_KEY, strlen(TEST_KEY), 0);
    int d = 5;
    assert_int_equal(cg_pseudo_date_shift(p, auth, pat, &d), CG_OK);
    assert_int_equal(d, 0); /* disabled */
    cg_pseudo_destroy(p);

    char err[256];
    cg_pseudo_key_t *k = cg_pseudo_key_new(TEST_KEY, strlen(TEST_KEY), err, sizeof(err));
    assert_null(cg_pseudo_new(k, -1, err, sizeof(err)));
    assert_null(cg_pseudo_new(k, CG_PSEUDO_DATE_SHIFT_MAX + 1, err, sizeof(err)));
    assert_null(strstr(err, TEST_KEY));
    cg_pseudo_key_destroy(k);
}

static void test_invalid_identity(void **state)
{
    (void)state;
    cg_pseudo_t *p = make(TEST_KEY, strlen(TEST_KEY), 10);
    cg_pseudo_person_t out;
    int d;
    assert_int_equal(cg_pseudo_person(p, auth, (cg_slice_t){"", 0}, &out), CG_ERR_INVALID_ARG);
    assert_int_equal(cg_pseudo_person(p,
                                      CG_SLICE_LIT("A\x1F"
                                                   "B"),
                                      pat, &out),
                     CG_ERR_INVALID_ARG);
    assert_int_equal(cg_pseudo_person(p, (cg_slice_t){"A\0B", 3}, pat, &out), CG_ERR_INVALID_ARG);
    assert_int_equal(cg_pseudo_date_shift(p, CG_SLICE_LIT("\x1F"), pat, &d), CG_ERR_INVALID_ARG);
    assert_int_equal(cg_pseudo_person(NULL, auth, pat, &out), CG_ERR_INVALID_ARG);
    /* the patient id itself may hold 0x1F: only the authority's end is a separator */
    assert_int_equal(cg_pseudo_person(p, auth, CG_SLICE_LIT("X\x1FY"), &out), CG_OK);
    cg_pseudo_destroy(p);
}

static void test_clone(void **state)
{
    (void)state;
    cg_pseudo_t *p = make(TEST_KEY, strlen(TEST_KEY), 30);
    char err[128];
    cg_pseudo_t *c = cg_pseudo_clone(p, err, sizeof(err));
    assert_non_null(c);
    cg_pseudo_destroy(p); /* the clone is independent */
    cg_pseudo_person_t out;
    int d;
    assert_int_equal(cg_pseudo_person(c, auth, pat, &out), CG_OK);
    assert_true(out.person_id == INT64_C(4974320388520216297));
    assert_int_equal(cg_pseudo_date_shift(c, auth, pat, &d), CG_OK);
    assert_int_equal(d, 3);
    assert_int_equal(cg_pseudo_date_shift_days(c), 30);
    cg_pseudo_destroy(c);
    cg_pseudo_destroy(NULL);
    cg_pseudo_key_destroy(NULL);
}

static char *write_tmp(const void *data, size_t n)
{
    static char path[64];
    snprintf(path, sizeof(path), "/tmp/cg_test_key_XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, n), (ssize_t)n);
    close(fd);
    return path;
}

static int64_t person_of(cg_pseudo_key_t *k)
{
    char err[128];
    cg_pseudo_t *p = cg_pseudo_new(k, 0, err, sizeof(err));
    assert_non_null(p);
    cg_pseudo_person_t out;
    assert_int_equal(cg_pseudo_person(p, auth, pat, &out), CG_OK);
    cg_pseudo_destroy(p);
    return out.person_id;
}

static void test_key_file_and_env(void **state)
{
    (void)state;
    char err[512];
    /* one trailing newline is not part of the key */
    char *path = write_tmp(TEST_KEY "\n", strlen(TEST_KEY) + 1);
    cg_pseudo_key_t *k = cg_pseudo_key_load(path, NULL, err, sizeof(err));
    assert_non_null(k);
    assert_int_equal(cg_pseudo_key_len(k), strlen(TEST_KEY));
    assert_true(person_of(k) == INT64_C(4974320388520216297));
    cg_pseudo_key_destroy(k);
    unlink(path);

    /* only one: a second newline stays and gives another key */
    path = write_tmp(TEST_KEY "\n\n", strlen(TEST_KEY) + 2);
    k = cg_pseudo_key_load(path, NULL, err, sizeof(err));
    assert_non_null(k);
    assert_int_equal(cg_pseudo_key_len(k), strlen(TEST_KEY) + 1);
    assert_true(person_of(k) != INT64_C(4974320388520216297));
    cg_pseudo_key_destroy(k);
    unlink(path);

    /* named environment variable, then the default one */
    setenv("CG_TEST_PSEUDO_KEY", TEST_KEY, 1);
    k = cg_pseudo_key_load(NULL, "CG_TEST_PSEUDO_KEY", err, sizeof(err));
    assert_non_null(k);
    assert_true(person_of(k) == INT64_C(4974320388520216297));
    cg_pseudo_key_destroy(k);
    unsetenv("CG_TEST_PSEUDO_KEY");
    setenv(CG_PSEUDO_KEY_ENV, TEST_KEY, 1);
    k = cg_pseudo_key_load(NULL, NULL, err, sizeof(err));
    assert_non_null(k);
    cg_pseudo_key_destroy(k);
    unsetenv(CG_PSEUDO_KEY_ENV);

    /* no key anywhere: refuse rather than run unkeyed */
    assert_null(cg_pseudo_key_load(NULL, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, CG_PSEUDO_KEY_ENV));
    assert_null(cg_pseudo_key_load(NULL, "CG_TEST_PSEUDO_KEY", err, sizeof(err)));
    assert_null(cg_pseudo_key_load("/nonexistent/key", NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "/nonexistent/key"));
    assert_null(cg_pseudo_key_load("/tmp", "X", err, sizeof(err))); /* both named */
}

/* A key of the wrong length is refused from every source, and no error text contains it. */
static void test_short_key_refused_without_echo(void **state)
{
    (void)state;
    const char *secret = "S3CR3T-KEY-MATERIAL-31-bytes-xy"; /* 31 bytes */
    assert_int_equal(strlen(secret), 31);
    char err[512];

    memset(err, 0, sizeof(err));
    assert_null(cg_pseudo_key_new(secret, strlen(secret), err, sizeof(err)));
    assert_true(err[0] != '\0');
    assert_null(strstr(err, secret));
    assert_null(strstr(err, "S3CR3T"));

    char *path = write_tmp(secret, strlen(secret));
    memset(err, 0, sizeof(err));
    assert_null(cg_pseudo_key_load(path, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "31 bytes"));
    assert_null(strstr(err, "S3CR3T"));
    unlink(path);

    /* 32 bytes with the newline: the stripped key is 31 and refused */
    char with_nl[64];
    snprintf(with_nl, sizeof(with_nl), "%s\n", secret);
    path = write_tmp(with_nl, strlen(with_nl));
    assert_null(cg_pseudo_key_load(path, NULL, err, sizeof(err)));
    assert_null(strstr(err, "S3CR3T"));
    unlink(path);

    setenv("CG_TEST_PSEUDO_KEY", secret, 1);
    memset(err, 0, sizeof(err));
    assert_null(cg_pseudo_key_load(NULL, "CG_TEST_PSEUDO_KEY", err, sizeof(err)));
    assert_non_null(strstr(err, "CG_TEST_PSEUDO_KEY"));
    assert_null(strstr(err, "S3CR3T"));
    unsetenv("CG_TEST_PSEUDO_KEY");

    /* oversize key file */
    char *big = malloc(CG_PSEUDO_KEY_MAX + 10);
    memset(big, 'k', CG_PSEUDO_KEY_MAX + 10);
    path = write_tmp(big, CG_PSEUDO_KEY_MAX + 10);
    assert_null(cg_pseudo_key_load(path, NULL, err, sizeof(err)));
    assert_null(strstr(err, "kkkk"));
    unlink(path);
    free(big);

    /* exactly 32 bytes is enough */
    cg_pseudo_key_t *k = cg_pseudo_key_new(TEST_KEY, 32, err, sizeof(err));
    assert_non_null(k);
    cg_pseudo_key_destroy(k);
    assert_null(cg_pseudo_new(NULL, 0, err, sizeof(err)));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc4231),
        cmocka_unit_test(test_person_pinned),
        cmocka_unit_test(test_row_id_pinned),
        cmocka_unit_test(test_row_id_as_libsodium),
        cmocka_unit_test(test_row_id_memo),
        cmocka_unit_test(test_date_shift_range),
        cmocka_unit_test(test_invalid_identity),
        cmocka_unit_test(test_clone),
        cmocka_unit_test(test_key_file_and_env),
        cmocka_unit_test(test_short_key_refused_without_echo),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
