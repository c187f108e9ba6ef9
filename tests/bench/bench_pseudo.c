/* bench_pseudo.c - cost of a pseudonym, a date shift and a row id on one core.
 *
 * usage: bench_pseudo [--runs N] [--iters N]
 * Each figure is the median over N runs (default 5) of ITERS calls (default 1,000,000), in ns
 * per call; patient ids cycle through 4096 distinct precomputed ones, row ids take distinct
 * positions. It also counts the heap
 * allocations libcrypto makes per call (through CRYPTO_set_mem_functions), since the hot path is
 * meant to stay cheap.
 */
#include "cg_pseudo.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static unsigned long n_alloc;

static void *count_malloc(size_t n, const char *file, int line)
{
    (void)file;
    (void)line;
    n_alloc++;
    return malloc(n);
}

static void *count_realloc(void *p, size_t n, const char *file, int line)
{
    (void)file;
    (void)line;
    n_alloc++;
    return realloc(p, n);
}

static void count_free(void *p, const char *file, int line)
{
    (void)file;
    (void)line;
    free(p);
}

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

enum { B_PERSON, B_SHIFT, B_ROW, B_ROW_MSG, B__COUNT };
static const char *const names[B__COUNT] = {"person_id+source_value", "date_shift",
                                            "key_id (4-part business key)",
                                            "key_id (7-part message identity)"};

static volatile uint64_t sink; /* unsigned: the sums wrap on purpose */

#define N_IDS 4096
static char ids[N_IDS][16];
static size_t id_len[N_IDS];

static void run(int which, cg_pseudo_t *p, long iters)
{
    cg_slice_t auth = CG_SLICE_LIT("HOSP-A");
    cg_slice_t ns = CG_SLICE_LIT("measurement");
    cg_slice_t key[4] = {CG_SLICE_LIT("GENHOSP"), CG_SLICE_LIT("FIL889"), CG_SLICE_LIT("4548-4"),
                         CG_SLICE_LIT("1")};
    char pos[24];
    cg_slice_t msg[7] = {
        CG_SLICE_LIT("hl7v2-oru-omop"), CG_SLICE_LIT("obx-numeric"), {pos, 0},
        CG_SLICE_LIT("EPIC"),           CG_SLICE_LIT("GENHOSP"),     CG_SLICE_LIT("20240314101500"),
        CG_SLICE_LIT("MSG00042")};
    for (long i = 0; i < iters; i++) {
        switch (which) {
        case B_PERSON: {
            cg_pseudo_person_t out;
            cg_slice_t pid = {ids[i % N_IDS], id_len[i % N_IDS]};
            cg_pseudo_person(p, auth, pid, &out);
            sink += (uint64_t)out.person_id;
            break;
        }
        case B_SHIFT: {
            int d = 0;
            cg_slice_t pid = {ids[i % N_IDS], id_len[i % N_IDS]};
            cg_pseudo_date_shift(p, auth, pid, &d);
            sink += (uint64_t)d;
            break;
        }
        case B_ROW: {
            int64_t r = 0;
            key[1].ptr = ids[i % N_IDS];
            key[1].len = id_len[i % N_IDS];
            cg_pseudo_key_id(p, CG_PSEUDO_ID_KEY, ns, key, 4, &r);
            sink += (uint64_t)r;
            break;
        }
        case B_ROW_MSG: {
            int64_t r = 0;
            msg[2].len = (size_t)snprintf(pos, sizeof(pos), "%ld", i % 64);
            cg_pseudo_key_id(p, CG_PSEUDO_ID_MESSAGE, ns, msg, 7, &r);
            sink += (uint64_t)r;
            break;
        }
        }
    }
}

int main(int argc, char **argv)
{
    /* before any other libcrypto call, or OpenSSL refuses the swap */
    CRYPTO_set_mem_functions(count_malloc, count_realloc, count_free);
    int runs = 5;
    long iters = 1000000;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--runs") && i + 1 < argc)
            runs = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--iters") && i + 1 < argc)
            iters = atol(argv[++i]);
        else {
            fprintf(stderr, "usage: bench_pseudo [--runs N] [--iters N]\n");
            return 2;
        }
    }
    if (runs < 1 || runs > 101 || iters < 1) {
        fprintf(stderr, "bench_pseudo: bad --runs or --iters\n");
        return 2;
    }
    char err[256];
    static const char key[] = "bench-key-bench-key-bench-key-bench-key!";
    cg_pseudo_key_t *k = cg_pseudo_key_new(key, sizeof(key) - 1, err, sizeof(err));
    cg_pseudo_t *p = k ? cg_pseudo_new(k, 30, err, sizeof(err)) : NULL;
    cg_pseudo_key_destroy(k);
    if (!p) {
        fprintf(stderr, "bench_pseudo: %s\n", err);
        return 1;
    }
    for (int i = 0; i < N_IDS; i++)
        id_len[i] = (size_t)snprintf(ids[i], sizeof(ids[i]), "PAT%07d", i * 7919);

    printf("bench_pseudo: %d runs x %ld calls, median ns/call\n", runs, iters);
    double *t = malloc(sizeof(double) * (size_t)runs);
    for (int b = 0; b < B__COUNT; b++) {
        run(b, p, iters / 10 + 1); /* warm up */
        unsigned long a0 = n_alloc;
        for (int r = 0; r < runs; r++) {
            double s = now_ns();
            run(b, p, iters);
            t[r] = (now_ns() - s) / (double)iters;
        }
        double allocs = (double)(n_alloc - a0) / ((double)iters * runs);
        qsort(t, (size_t)runs, sizeof(double), cmp_double);
        printf("  %-30s %8.1f ns   (min %.1f, max %.1f)   libcrypto allocations/call %.2f\n",
               names[b], t[runs / 2], t[0], t[runs - 1], allocs);
    }
    free(t);
    cg_pseudo_destroy(p);
    return 0;
}
