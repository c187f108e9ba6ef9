/* bench_hl7.c - throughput of the full structural index (cg_hl7_reader_next) on one core.
 *
 * Three figures, each the median of N runs over the whole buffer:
 *   index   cg_hl7_reader_next on every message (what the peer ratio uses): the delimiter table,
 *           the field table and the segment table, every limit checked;
 *   fields  the same plus cg_hl7_get_raw of every field of every segment (what a consumer pays
 *           to reach every field);
 *   values  the same plus every repetition, component and subcomponent through the counting
 *           accessors and cg_hl7_get_raw (these are derived on access from the delimiter table).
 *
 * usage: bench_hl7 [--runs N] [--mb MB] [--emit FILE] [--portable 1] DIR_OR_FILE...
 * Loads every .hl7 file, keeps the ones that decode, concatenates them (each message ends with
 * \r) and repeats that to at least MB megabytes in memory; then indexes the whole buffer N times
 * and prints the median. --emit writes the distinct messages (one per file) for the peer run.
 * --portable 1 forces the SSE2/scalar scanner instead of the AVX2 one the CPU would get.
 * --index-only 1 measures the index alone (for profiling; the other two figures are skipped).
 */
#include "cg_hl7.h"
#include "hl7_impl.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>

static char *base;
static size_t base_len, base_cap, base_msgs;

static void add_file(const char *path, FILE *emit)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return;
    char *buf = NULL;
    size_t len = 0, cap = 0, r;
    char tmp[65536];
    while ((r = fread(tmp, 1, sizeof(tmp), f)) > 0) {
        if (len + r > cap) {
            cap = (len + r) * 2;
            buf = realloc(buf, cap);
        }
        memcpy(buf + len, tmp, r);
        len += r;
    }
    fclose(f);
    if (!len) {
        free(buf);
        return;
    }
    cg_hl7_msg_t *m = cg_hl7_msg_new(NULL);
    cg_hl7_reader_t rd;
    cg_error_t e;
    cg_hl7_reader_init(&rd, buf, len);
    while (cg_hl7_reader_more(&rd)) {
        if (cg_hl7_reader_next(&rd, m, &e) != CG_OK)
            continue;
        cg_slice_t s = cg_hl7_msg_bytes(m);
        if (base_len + s.len + 1 > base_cap) {
            base_cap = (base_len + s.len + 1) * 2;
            base = realloc(base, base_cap);
        }
        memcpy(base + base_len, s.ptr, s.len);
        base_len += s.len;
        base[base_len++] = '\r';
        base_msgs++;
        if (emit) {
            fwrite(s.ptr, 1, s.len, emit);
            fputc('\r', emit);
            fputc(0x1C, emit); /* message separator for the peer script */
        }
    }
    cg_hl7_msg_destroy(m);
    free(buf);
}

static void add_path(const char *path, FILE *emit)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return;
    if (!S_ISDIR(st.st_mode)) {
        add_file(path, emit);
        return;
    }
    struct dirent **ents;
    int n = scandir(path, &ents, NULL, alphasort);
    for (int i = 0; i < n; i++) {
        if (ents[i]->d_name[0] != '.') {
            char sub[4096];
            snprintf(sub, sizeof(sub), "%s/%s", path, ents[i]->d_name);
            add_path(sub, emit);
        }
        free(ents[i]);
    }
    free(ents);
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmpd(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

enum { TOUCH_NONE = 0, TOUCH_FIELDS = 1, TOUCH_VALUES = 2 };

/* Reaches every field (and, for TOUCH_VALUES, every value below it); returns a checksum. */
static size_t touch(const cg_hl7_msg_t *m, int how)
{
    size_t sum = 0;
    cg_slice_t v;
    uint32_t ns = cg_hl7_seg_count(m);
    for (uint32_t s = 0; s < ns; s++) {
        uint32_t nf = cg_hl7_field_count(m, s);
        for (uint32_t f = 0; f <= nf; f++) {
            cg_hl7_get_raw(m, s, f, 0, 0, 0, &v);
            sum += v.len;
            if (how != TOUCH_VALUES)
                continue;
            uint32_t nr = cg_hl7_rep_count(m, s, f);
            for (uint32_t r = 1; r <= nr; r++) {
                uint32_t nc = cg_hl7_comp_count(m, s, f, r);
                for (uint32_t c = 1; c <= nc; c++) {
                    uint32_t nu = cg_hl7_sub_count(m, s, f, r, c);
                    for (uint32_t u = 1; u <= nu; u++) {
                        cg_hl7_get_raw(m, s, f, r, c, u, &v);
                        sum += v.len + 1;
                    }
                }
            }
        }
    }
    return sum;
}

/* Median seconds of `runs` passes over buf (after one warm-up pass); 0 on failure. */
static double timed(char *buf, size_t len, size_t expect, int runs, int how, size_t *segs_out,
                    size_t *sum_out)
{
    cg_hl7_msg_t *m = cg_hl7_msg_new(NULL);
    double *t = calloc((size_t)runs, sizeof(double));
    double med = 0;
    for (int r = -1; r < runs; r++) { /* run -1 warms the index up */
        cg_hl7_reader_t rd;
        cg_error_t e;
        size_t n = 0, segs = 0, sum = 0;
        double t0 = now();
        cg_hl7_reader_init(&rd, buf, len);
        while (cg_hl7_reader_more(&rd)) {
            if (cg_hl7_reader_next(&rd, m, &e) != CG_OK) {
                fprintf(stderr, "bench_hl7: message %zu failed: %s\n", e.message, e.text);
                goto out;
            }
            segs += cg_hl7_seg_count(m);
            if (how)
                sum += touch(m, how);
            n++;
        }
        double dt = now() - t0;
        if (n != expect) {
            fprintf(stderr, "bench_hl7: %zu messages, expected %zu\n", n, expect);
            goto out;
        }
        if (r >= 0)
            t[r] = dt;
        *segs_out = segs;
        *sum_out = sum;
    }
    qsort(t, (size_t)runs, sizeof(double), cmpd);
    med = t[runs / 2];
    printf("%s: min %.4f s, median %.4f s, max %.4f s\n",
           how == TOUCH_NONE     ? "index"
           : how == TOUCH_FIELDS ? "index+fields"
                                 : "index+values",
           t[0], med, t[runs - 1]);
out:
    cg_hl7_msg_destroy(m);
    free(t);
    return med;
}

int main(int argc, char **argv)
{
    int runs = 7;
    double min_mb = 64;
    const char *emit_path = NULL;
    int portable = 0, index_only = 0;
    int first = 1;
    for (; first < argc && argv[first][0] == '-'; first += 2) {
        if (first + 1 >= argc)
            return 2;
        if (!strcmp(argv[first], "--runs"))
            runs = atoi(argv[first + 1]);
        else if (!strcmp(argv[first], "--mb"))
            min_mb = atof(argv[first + 1]);
        else if (!strcmp(argv[first], "--emit"))
            emit_path = argv[first + 1];
        else if (!strcmp(argv[first], "--portable"))
            portable = atoi(argv[first + 1]) != 0;
        else if (!strcmp(argv[first], "--index-only"))
            index_only = atoi(argv[first + 1]) != 0;
    }
    if (first >= argc || runs < 1) {
        fprintf(
            stderr,
            "usage: bench_hl7 [--runs N] [--mb MB] [--emit FILE] [--portable 1] [--index-only 1] "
            "DIR_OR_FILE...\n");
        return 2;
    }
    cg_hl7__force_portable(portable);
    FILE *emit = emit_path ? fopen(emit_path, "wb") : NULL;
    for (int i = first; i < argc; i++)
        add_path(argv[i], emit);
    if (emit)
        fclose(emit);
    if (!base_msgs) {
        fprintf(stderr, "bench_hl7: no decodable message found\n");
        return 1;
    }
    size_t reps = (size_t)(min_mb * 1e6 / (double)base_len) + 1;
    size_t len = base_len * reps;
    /* 2 MB-aligned and huge-page backed when the kernel allows: without it the same binary
     * swings between runs with how the buffer happens to be mapped (TLB misses). */
    size_t alloc = (len + (2u << 20) - 1) & ~(size_t)((2u << 20) - 1);
    char *buf = aligned_alloc(2u << 20, alloc);
    madvise(buf, alloc, MADV_HUGEPAGE);
    for (size_t i = 0; i < reps; i++)
        memcpy(buf + i * base_len, base, base_len);
    size_t expect = base_msgs * reps;

    size_t segs = 0, sum_f = 0, sum_v = 0, sum0;
    double med = timed(buf, len, expect, runs, TOUCH_NONE, &segs, &sum0);
    if (med <= 0)
        return 1;
    double med_f = 0, med_v = 0;
    if (!index_only) {
        med_f = timed(buf, len, expect, runs, TOUCH_FIELDS, &segs, &sum_f);
        med_v = med_f > 0 ? timed(buf, len, expect, runs, TOUCH_VALUES, &segs, &sum_v) : 0;
        if (med_v <= 0)
            return 1;
    }
    printf(
        "cohortgate hl7 index (%s scanner): %zu distinct messages, %.1f MB buffer (%zu messages, "
        "%zu segments), %d runs (checksums %zu, %zu)\n",
        portable || !cg_hl7__scan_avx2_ok() ? "portable" : "AVX2", base_msgs, (double)len / 1e6,
        expect, segs, runs, sum_f, sum_v);
    printf("cohortgate_mb_per_s=%.1f\ncohortgate_msgs_per_s=%.0f\n", (double)len / 1e6 / med,
           (double)expect / med);
    if (!index_only) {
        printf("cohortgate_fields_mb_per_s=%.1f\ncohortgate_fields_msgs_per_s=%.0f\n",
               (double)len / 1e6 / med_f, (double)expect / med_f);
        printf("cohortgate_values_mb_per_s=%.1f\ncohortgate_values_msgs_per_s=%.0f\n",
               (double)len / 1e6 / med_v, (double)expect / med_v);
    }
    free(buf);
    free(base);
    return 0;
}
