/* test_hl7_scan.c - the AVX2 block scanner (mappers/hl7v2/hl7_scan_avx2.c) and the portable SSE2 /
 * scalar one build identical indexes: every reader step is run with both, and the results, the
 * errors, the reader positions and the whole index are compared. Inputs: the fixtures, the
 * shared corpus (skipped, and said so, when absent), and random and mutated messages under
 * several option sets (small limits, strict segments, a double-byte default charset). Skipped
 * when the CPU has no AVX2 + BMI2 (there is then a single path). */
#include "test_hl7_util.h"

#include <dirent.h>
#include <sys/stat.h>

#include "../../mappers/hl7v2/hl7_impl.h"

static uint64_t rng = 0x9E3779B97F4A7C15u;

static uint32_t rnd(uint32_t n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)((rng >> 11) % n);
}

static size_t compared_msgs, checked_values;

/* Bytes before this are no delimiters (the MSH-2 encoding characters). */
static const char *opaque_end;

/* Part k (1-based) of p[0..n) split at sep (0: no split); returns the number of parts. */
static uint32_t part(const char *p, size_t n, char sep, uint32_t k, cg_slice_t *out)
{
    uint32_t idx = 1;
    size_t start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i == n || (sep && p[i] == sep && p + i >= opaque_end)) {
            if (idx == k)
                *out = (cg_slice_t){p + start, i - start};
            if (i == n)
                break;
            idx++;
            start = i + 1;
        }
    }
    return idx;
}

static void same_slice(const char *what, const cg_hl7_msg_t *m, cg_slice_t got, cg_slice_t want,
                       uint32_t s, uint32_t f, uint32_t r, uint32_t c, uint32_t u)
{
    checked_values++;
    if (got.ptr != want.ptr || got.len != want.len)
        fail_msg("%s: message %zu: segment %u field %u.%u.%u.%u: \"%.*s\", expected \"%.*s\"", what,
                 m->number, s, f, r, c, u, (int)got.len, got.ptr, (int)want.len, want.ptr);
}

/* The hierarchy the accessors derive from the delimiter table (per-segment tables built on first
 * access, or the walk over a field's leaves) equals an eager split of each field's text at the
 * delimiters (single-byte charsets: no trail byte can hide one). */
static void check_hierarchy(const char *what, const cg_hl7_msg_t *m)
{
    const cg_hl7_delims_t *d = cg_hl7_msg_delims(m);
    /* A space delimiter inside a blank line between two lines of a wrapped value is no delimiter
     * (the gap is skipped): the plain split would differ there. */
    if (m->charset_mb || d->comp == ' ' || d->rep == ' ' || d->sub == ' ')
        return;
    for (uint32_t s = 0; s < cg_hl7_seg_count(m); s++) {
        int hdr = m->segs[s].header != 0;
        uint32_t nf = cg_hl7_field_count(m, s);
        cg_slice_t x;
        if (cg_hl7_get_raw(m, s, nf + 1, 0, 0, 0, &x) || cg_hl7_rep_count(m, s, nf + 1))
            fail_msg("%s: message %zu: segment %u: field past the end", what, m->number, s);
        for (uint32_t f = 0; f <= nf; f++) {
            if (hdr && f == 1)
                continue;
            cg_slice_t fv;
            if (!cg_hl7_get_raw(m, s, f, 0, 0, 0, &fv))
                fail_msg("%s: message %zu: segment %u field %u missing", what, m->number, s, f);
            /* MSH-2: the encoding characters are one value (a wrapped line may follow them). */
            opaque_end = fv.ptr;
            if (hdr && f == 2)
                while (opaque_end < fv.ptr + fv.len && *opaque_end != d->field &&
                       *opaque_end != '\r' && *opaque_end != '\n' && *opaque_end != 0x1c)
                    opaque_end++;
            char rs = d->rep, cs = d->comp, ss = d->sub;
            uint32_t nr = part(fv.ptr, fv.len, rs, 0, &x);
            if (cg_hl7_rep_count(m, s, f) != nr)
                fail_msg("%s: message %zu: segment %u field %u: %u repetitions, expected %u", what,
                         m->number, s, f, cg_hl7_rep_count(m, s, f), nr);
            if (cg_hl7_get_raw(m, s, f, nr + 1, 0, 0, &x) || cg_hl7_comp_count(m, s, f, nr + 1) ||
                cg_hl7_comp_count(m, s, f, 0) || cg_hl7_get_raw(m, s, f, 0, 1, 0, &x))
                fail_msg("%s: message %zu: segment %u field %u: repetition out of range", what,
                         m->number, s, f);
            for (uint32_t r = 1; r <= nr; r++) {
                cg_slice_t rv = {NULL, 0}, g;
                part(fv.ptr, fv.len, rs, r, &rv);
                cg_hl7_get_raw(m, s, f, r, 0, 0, &g);
                same_slice(what, m, g, rv, s, f, r, 0, 0);
                uint32_t nc = part(rv.ptr, rv.len, cs, 0, &x);
                if (cg_hl7_comp_count(m, s, f, r) != nc)
                    fail_msg("%s: message %zu: segment %u field %u.%u: %u components, expected %u",
                             what, m->number, s, f, r, cg_hl7_comp_count(m, s, f, r), nc);
                if (cg_hl7_get_raw(m, s, f, r, nc + 1, 0, &x) ||
                    cg_hl7_sub_count(m, s, f, r, nc + 1) || cg_hl7_sub_count(m, s, f, r, 0))
                    fail_msg("%s: message %zu: segment %u field %u.%u: component out of range",
                             what, m->number, s, f, r);
                for (uint32_t c = 1; c <= nc; c++) {
                    cg_slice_t cv = {NULL, 0};
                    part(rv.ptr, rv.len, cs, c, &cv);
                    cg_hl7_get_raw(m, s, f, r, c, 0, &g);
                    same_slice(what, m, g, cv, s, f, r, c, 0);
                    uint32_t nu = part(cv.ptr, cv.len, ss, 0, &x);
                    if (cg_hl7_sub_count(m, s, f, r, c) != nu ||
                        cg_hl7_get_raw(m, s, f, r, c, nu + 1, &x))
                        fail_msg("%s: message %zu: segment %u field %u.%u.%u: subcomponents", what,
                                 m->number, s, f, r, c);
                    for (uint32_t u = 1; u <= nu; u++) {
                        cg_slice_t uv = {NULL, 0};
                        part(cv.ptr, cv.len, ss, u, &uv);
                        cg_hl7_get_raw(m, s, f, r, c, u, &g);
                        same_slice(what, m, g, uv, s, f, r, c, u);
                    }
                }
            }
        }
    }
}

/* Fails unless a (wide) and b (portable) hold the same outcome of one reader step. */
static void same(const char *what, cg_err_t ra, cg_err_t rb, const cg_error_t *ea,
                 const cg_error_t *eb, const cg_hl7_reader_t *rda, const cg_hl7_reader_t *rdb,
                 const cg_hl7_msg_t *a, const cg_hl7_msg_t *b)
{
    if (ra != rb || memcmp(ea, eb, sizeof(*ea)) != 0)
        fail_msg("%s: results differ: wide %d \"%s\" at %zu, portable %d \"%s\" at %zu", what,
                 (int)ra, ea->text, ea->offset, (int)rb, eb->text, eb->offset);
    if (rda->pos != rdb->pos || rda->msg_no != rdb->msg_no)
        fail_msg("%s: reader positions differ: %zu / %zu", what, rda->pos, rdb->pos);
    if (a->nsegs != b->nsegs || a->len != b->len || a->data != b->data ||
        a->wrapped != b->wrapped || memcmp(&a->d, &b->d, sizeof(a->d)) != 0 ||
        strcmp(a->charset, b->charset) != 0)
        fail_msg("%s: message %zu: headers differ (segments %u / %u, wrapped %u / %u)", what,
                 a->number, a->nsegs, b->nsegs, a->wrapped, b->wrapped);
    if (ra != CG_OK)
        return;
    compared_msgs++;
    if (a->nleaves != b->nleaves || a->ntoks != b->ntoks)
        fail_msg("%s: message %zu: table sizes differ", what, a->number);
    for (uint32_t s = 0; s < a->nsegs; s++)
        if (memcmp(&a->segs[s], &b->segs[s], sizeof(a->segs[s])) != 0)
            fail_msg("%s: message %zu: segment %u differs", what, a->number, s);
    /* The sentinel: the fields the accessors read. */
    const cg_hl7_seg_ix_t *sa = &a->segs[a->nsegs], *sb = &b->segs[b->nsegs];
    if (sa->start != sb->start || sa->end != sb->end || sa->tok0 != sb->tok0 ||
        sa->leaf0 != sb->leaf0 || sa->name[0] != sb->name[0])
        fail_msg("%s: message %zu: sentinel differs", what, a->number);
    if (memcmp(a->leaf_end, b->leaf_end, a->nleaves * sizeof(uint32_t)) ||
        memcmp(a->tok_leaf, b->tok_leaf, a->ntoks * sizeof(uint32_t)))
        fail_msg("%s: message %zu: tables differ", what, a->number);
    /* Every way of reaching a value: as chosen by field size, always by walking a field's
     * delimiters, always through the per-segment tables derived on access. */
    check_hierarchy(what, a);
    cg_hl7__force_walk(1);
    check_hierarchy(what, b);
    cg_hl7__force_walk(2);
    check_hierarchy(what, b);
    cg_hl7__force_walk(0);
}

/* Reads all of buf with both scanners in lockstep. */
static void diff_input(const char *what, const char *buf, size_t len, const cg_hl7_options_t *o)
{
    cg_hl7_msg_t *a = cg_hl7_msg_new(o), *b = cg_hl7_msg_new(o);
    assert_non_null(a);
    assert_non_null(b);
    cg_hl7_reader_t ra, rb;
    cg_hl7_reader_init(&ra, buf, len);
    cg_hl7_reader_init(&rb, buf, len);
    for (;;) {
        int ma = cg_hl7_reader_more(&ra), mb = cg_hl7_reader_more(&rb);
        assert_int_equal(ma, mb);
        if (!ma)
            break;
        cg_error_t ea, eb;
        memset(&ea, 0, sizeof(ea));
        memset(&eb, 0, sizeof(eb));
        cg_hl7__force_portable(0);
        cg_err_t xa = cg_hl7_reader_next(&ra, a, &ea);
        cg_hl7__force_portable(1);
        cg_err_t xb = cg_hl7_reader_next(&rb, b, &eb);
        cg_hl7__force_portable(0);
        same(what, xa, xb, &ea, &eb, &ra, &rb, a, b);
    }
    cg_hl7_msg_destroy(a);
    cg_hl7_msg_destroy(b);
}

/* Option sets: defaults; small limits; strict segments; a double-byte default charset. */
static int nopts(void)
{
    return 4;
}

static void opts(int k, cg_hl7_options_t *o)
{
    cg_hl7_options_default(o);
    if (k == 1) {
        o->max_message_bytes = 700;
        o->max_segments = 4;
        o->max_fields = 6;
        o->max_reps = 2;
    } else if (k == 2) {
        o->strict_segments = 1;
    } else if (k == 3) {
        o->default_charset = "GB 18030-2000";
    }
}

static void diff_all_opts(const char *what, const char *buf, size_t len)
{
    for (int k = 0; k < nopts(); k++) {
        cg_hl7_options_t o;
        opts(k, &o);
        diff_input(what, buf, len, &o);
    }
}

static int have_wide(void)
{
    if (cg_hl7__scan_avx2_ok())
        return 1;
    printf("SKIPPED: no AVX2 + BMI2 scanner on this CPU; only the portable path exists\n");
    return 0;
}

static char **fixtures(size_t *n, size_t **lens)
{
    char dir[1024];
    snprintf(dir, sizeof(dir), "%s/hl7", CG_TEST_FIXTURES);
    struct dirent **ents;
    int k = scandir(dir, &ents, NULL, alphasort);
    assert_true(k > 0);
    char **bufs = calloc((size_t)k, sizeof(char *));
    *lens = calloc((size_t)k, sizeof(size_t));
    *n = 0;
    for (int i = 0; i < k; i++) {
        if (ents[i]->d_name[0] != '.') {
            char path[2048];
            snprintf(path, sizeof(path), "%s/%s", dir, ents[i]->d_name);
            bufs[*n] = th_read(path, &(*lens)[*n]);
            if (bufs[*n])
                (*n)++;
        }
        free(ents[i]);
    }
    free(ents);
    return bufs;
}

static void test_fixtures(void **state)
{
    (void)state;
    if (!have_wide())
        skip();
    size_t n, *lens;
    char **bufs = fixtures(&n, &lens);
    for (size_t i = 0; i < n; i++)
        diff_all_opts("fixture", bufs[i], lens[i]);
    /* Everything back to back, and repeated past the table and segment capacities. */
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += lens[i];
    char *all = malloc(total * 8 + 1);
    size_t w = 0;
    for (int r = 0; r < 8; r++)
        for (size_t i = 0; i < n; i++) {
            memcpy(all + w, bufs[i], lens[i]);
            w += lens[i];
        }
    diff_all_opts("fixtures concatenated", all, w);
    free(all);
    for (size_t i = 0; i < n; i++)
        free(bufs[i]);
    free(bufs);
    free(lens);
}

static size_t corpus_files;

static void walk(const char *dir)
{
    struct dirent **ents;
    int k = scandir(dir, &ents, NULL, alphasort);
    for (int i = 0; i < k; i++) {
        if (ents[i]->d_name[0] != '.') {
            char path[4096];
            snprintf(path, sizeof(path), "%s/%s", dir, ents[i]->d_name);
            struct stat st;
            if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
                walk(path);
            } else {
                size_t len;
                char *buf = th_read(path, &len);
                if (buf) {
                    diff_all_opts(path, buf, len);
                    corpus_files++;
                    free(buf);
                }
            }
        }
        free(ents[i]);
    }
    if (k > 0)
        free(ents);
}

static void test_corpus(void **state)
{
    (void)state;
    if (!have_wide())
        skip();
    const char *dir = CG_SHARED_CORPUS "/hl7v2";
    struct stat st;
    if (stat(dir, &st) != 0) {
        printf("SKIPPED: ../shared/corpus/hl7v2 not found (%s)\n", dir);
        skip();
    }
    walk(dir);
    printf("scan differential: %zu corpus files\n", corpus_files);
    assert_true(corpus_files > 0);
}

/* Pieces that stress the scanner: delimiters, every terminator form, MLLP bytes, segment
 * names (boundaries among them), double-byte lead bytes, escapes, long runs. */
static const char *const pieces[] = {
    "|",           "|",      "|",        "^",        "^",      "~",        "&",
    "\\",          "\r",     "\n",       "\r\n",     "\n\r",   "\r\r",     "\x1c",
    "\x0b",        " \r",    "\t\n",     "PID",      "OBX",    "NTE",      "MSH",
    "FHS",         "BHS",    "BTS",      "FTS",      "ZZ1",    "pid",      "A",
    "text",        "12345",  "\xb0\xa1", "\xc4\x7c", "\x81\r", "\xfe\x5e", "\xe4\xb8\xad",
    "\x01",        "\x00",   "|||||||",  "^^^^",     "~~~~~~", "&&&",      "\r\nPID|",
    "\rOBX|1|TX|", "\nNTE|", "\r\rPV1|"};

static size_t gen_message(char *out, size_t cap)
{
    static const char *const heads[] = {
        "MSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|2.5\r",
        "MSH|^~\\&|A|B|C|D|20240101||ORU^R01|2|P|2.5|||||CN|GB 18030-2000\r",
        "MSH|^~\\&#|A|B|C|D|20240101||ADT^A01|3|P|2.7\n",
        "MSH#$%!@|A|B#1$2%3|C|D\r\n",
        "MSH|^|A|B\r",
        "MSH|^~|A|B\r",
        "\x0bMSH|^~\\&|A|B|C|D|20240101||ADT^A08|4|P|2.5|||||8859/1\r",
        "FHS|^~\\&|F\rBHS|^~\\&|B\rMSH|^~\\&|A|B\r",
        "\xef\xbb\xbfMSH|^~\\&|A|B|C|D\r",
    };
    const char *h = heads[rnd(sizeof(heads) / sizeof(heads[0]))];
    size_t w = strlen(h);
    memcpy(out, h, w);
    size_t want = 20 + rnd(rnd(8) == 0 ? 3000 : 400);
    while (w < want && w + 64 < cap) {
        const char *p = pieces[rnd(sizeof(pieces) / sizeof(pieces[0]))];
        size_t l = p[0] ? strlen(p) : 1;
        memcpy(out + w, p, l);
        w += l;
    }
    return w;
}

static void mutate(char *buf, size_t *len, size_t cap)
{
    int edits = 1 + (int)rnd(6);
    for (int i = 0; i<edits && * len> 0; i++) {
        size_t at = rnd((uint32_t)*len);
        switch (rnd(4)) {
        case 0: /* overwrite with a piece's first byte or a random byte */
            buf[at] = rnd(2) ? pieces[rnd(sizeof(pieces) / sizeof(pieces[0]))][0] : (char)rnd(256);
            break;
        case 1: /* truncate */
            *len = at;
            break;
        case 2: /* insert a piece */
            if (*len + 8 < cap) {
                const char *p = pieces[rnd(sizeof(pieces) / sizeof(pieces[0]))];
                size_t l = p[0] ? strlen(p) : 1;
                memmove(buf + at + l, buf + at, *len - at);
                memcpy(buf + at, p, l);
                *len += l;
            }
            break;
        default: /* delete a byte */
            memmove(buf + at, buf + at + 1, *len - at - 1);
            (*len)--;
            break;
        }
    }
}

static void test_random(void **state)
{
    (void)state;
    if (!have_wide())
        skip();
    enum { CAP = 1 << 16 };
    char *buf = malloc(CAP);
    for (int round = 0; round < 3000; round++) {
        size_t len = 0;
        int msgs = 1 + (int)rnd(4);
        for (int k = 0; k < msgs && len + 4096 < CAP; k++)
            len += gen_message(buf + len, CAP - len);
        diff_all_opts("random", buf, len);
        mutate(buf, &len, CAP);
        diff_all_opts("random, mutated", buf, len);
    }
    free(buf);
}

static void test_mutated_fixtures(void **state)
{
    (void)state;
    if (!have_wide())
        skip();
    size_t n, *lens;
    char **bufs = fixtures(&n, &lens);
    enum { CAP = 1 << 16 };
    char *buf = malloc(CAP);
    for (size_t i = 0; i < n; i++) {
        for (int round = 0; round < 200; round++) {
            size_t len = lens[i] < CAP - 64 ? lens[i] : CAP - 64;
            memcpy(buf, bufs[i], len);
            mutate(buf, &len, CAP);
            diff_all_opts("mutated fixture", buf, len);
        }
        free(bufs[i]);
    }
    free(buf);
    free(bufs);
    free(lens);
}

/* One huge message: table growth in the middle of the scan, dense delimiters. */
static void test_large(void **state)
{
    (void)state;
    if (!have_wide())
        skip();
    size_t cap = 3u << 20, w = 0;
    char *buf = malloc(cap);
    const char *h = "MSH|^~\\&|A|B|C|D|20240101||ORU^R01|9|P|2.5\r";
    memcpy(buf, h, strlen(h));
    w = strlen(h);
    while (w + 256 < cap) {
        const char *seg = rnd(2) ? "OBX|1|TX|^^^&&~~|a^b&c~d|||||||||\r"
                                 : "NTE|||^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^|x~y~z~w\r\n";
        memcpy(buf + w, seg, strlen(seg));
        w += strlen(seg);
    }
    cg_hl7_options_t o;
    cg_hl7_options_default(&o);
    diff_input("large", buf, w, &o);
    free(buf);
    printf("scan differential: %zu messages compared, %zu derived values checked\n", compared_msgs,
           checked_values);
}

/* Realistic segments with terminators at every offset of the scanner's two-block step: a
 * CR, LF or CRLF at the last byte of either block (a CRLF split between them), a segment name
 * across a block boundary, runs of more than two blocks without a delimiter, double-byte
 * characters (one with a '|' trail byte) across every boundary. */
static void test_alignment(void **state)
{
    (void)state;
    if (!have_wide())
        skip();
    enum { CAP = 1 << 16 };
    char *buf = malloc(CAP);
    char fill[400];
    for (size_t i = 0; i < sizeof(fill); i++)
        fill[i] = (char)('A' + i % 26);
    static const char *const ends[] = {"\r", "\n", "\r\n", "\r\n\r\n"};
    static const char *const heads[] = {
        "MSH|^~\\&|A|B|C|D|20240101||ORU^R01|1|P|2.5",
        "MSH|^~\\&|A|B|C|D|20240101||ORU^R01|2|P|2.5|||||CN|GB 18030-2000",
    };
    for (size_t e = 0; e < sizeof(ends) / sizeof(ends[0]); e++) {
        for (size_t h = 0; h < 2; h++) {
            for (int pad = 0; pad < 130; pad++) {
                const char *t = ends[e];
                int w = snprintf(buf, CAP, "%s%sPID|1|%.*s|x^y~z&w%s", heads[h], t, pad, fill, t);
                for (int k = 0; k < 24; k++) {
                    int len = (k * 37 + pad) % 140 + (k % 7 == 3 ? 250 : 0);
                    const char *mbc = h ? (k % 2 ? "\xc4\x7c" : "\xb0\xa1") : "";
                    w += snprintf(buf + w, (size_t)(CAP - w), "OBX|%d|TX|%.*s%s|a^b~c&d%s%s", k,
                                  len, fill, mbc, k % 5 == 4 ? "|" : "", t);
                }
                diff_all_opts("alignment", buf, (size_t)w);
            }
        }
    }
    free(buf);
}

/* MSH-18 is found before the index is built (it decides how the rest is scanned), 16 bytes at a
 * time: compare the charset each message gets with a byte-wise search, for MSH-18 at every
 * offset, absent, behind double-byte characters and after a field holding a terminator. */
static void test_msh18(void **state)
{
    (void)state;
    char buf[1024], fill[200];
    for (size_t i = 0; i < sizeof(fill); i++)
        fill[i] = (char)('a' + i % 26);
    static const char *const names[] = {"UNICODE UTF-8", " 8859/1 ", "GB 18030-2000~UNICODE UTF-8",
                                        "", "ASCII"};
    static const char *const mids[] = {"", "\xb0\xa1", "\xc4|x", "\xc4\x7c\xc4\x7c"};
    for (int dflt = 0; dflt < 2; dflt++) {
        cg_hl7_options_t o;
        cg_hl7_options_default(&o);
        if (dflt)
            o.default_charset = "GB 18030-2000";
        cg_hl7_msg_t *m = cg_hl7_msg_new(&o);
        assert_non_null(m);
        for (size_t n = 0; n < sizeof(names) / sizeof(names[0]); n++)
            for (size_t md = 0; md < sizeof(mids) / sizeof(mids[0]); md++)
                for (int nf = 12; nf <= 19; nf++)
                    for (int pad = 0; pad < 40; pad++) {
                        /* MSH-3 padded, MSH-4 holds mids, fields up to MSH-nf (charset names,
                         * should a hidden separator shift them), MSH-18 the name when nf
                         * reaches it. */
                        int w =
                            snprintf(buf, sizeof(buf), "MSH|^~\\&|%.*s|%s", pad, fill, mids[md]);
                        for (int f = 5; f <= nf; f++)
                            w += snprintf(buf + w, sizeof(buf) - (size_t)w, "|%s",
                                          f == 18 ? names[n]
                                          : f % 3 ? "8859/1"
                                                  : "");
                        w +=
                            snprintf(buf + w, sizeof(buf) - (size_t)w, "\rPID|1|%.*s\r", pad, fill);
                        /* The byte-wise search (multi-byte when the default charset is). */
                        int field = 2;
                        size_t i = 4, start = 0;
                        for (; i < (size_t)w; i++) {
                            unsigned char c = (unsigned char)buf[i];
                            if (dflt && c >= 0x81) {
                                i++;
                                continue;
                            }
                            if (c == '\r')
                                break;
                            if (c == '|' && ++field == 18)
                                start = i + 1;
                            else if (c == '|' && field == 19)
                                break;
                        }
                        char want[64];
                        size_t end = start;
                        while (field >= 18 && end < i && buf[end] != '~')
                            end++;
                        while (start < end && buf[start] == ' ')
                            start++;
                        while (end > start && buf[end - 1] == ' ')
                            end--;
                        if (field < 18 || end == start)
                            cg_hl7_charset_iconv_name(o.default_charset, strlen(o.default_charset),
                                                      want, sizeof(want));
                        else
                            cg_hl7_charset_iconv_name(buf + start, end - start, want, sizeof(want));
                        cg_hl7_reader_t rd;
                        cg_error_t err;
                        cg_hl7_reader_init(&rd, buf, (size_t)w);
                        cg_err_t rc = cg_hl7_reader_next(&rd, m, &err);
                        if (rc != CG_OK)
                            fail_msg("msh18 %zu/%zu/%d/%d/%d: %s", n, md, nf, pad, dflt, err.text);
                        if (strcmp(cg_hl7_msg_charset(m), want) != 0)
                            fail_msg("msh18 %zu/%zu/%d/%d/%d: charset %s, expected %s", n, md, nf,
                                     pad, dflt, cg_hl7_msg_charset(m), want);
                    }
        cg_hl7_msg_destroy(m);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixtures), cmocka_unit_test(test_corpus),
        cmocka_unit_test(test_random),   cmocka_unit_test(test_mutated_fixtures),
        cmocka_unit_test(test_large),    cmocka_unit_test(test_alignment),
        cmocka_unit_test(test_msh18),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
