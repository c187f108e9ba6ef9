/* bench_xml.c - C-CDA documents through the XML decoder and the shipped CDA spec on one core.
 *
 * usage: bench_xml [--runs N] [--mb M] [--stage parse|map|encode] SPEC VOCAB_DIR DOCUMENT...
 *
 * The documents are read into memory once and processed round-robin until M megabytes (default
 * 50) went through, RUNS times (default 5). Three stages are timed separately, each on the same
 * input, so the output says where the time goes: parse (libxml2 tree, hardened), parse + map
 * (XPath evaluation and row building), and parse + map + encode (the JSON record envelopes, i.e.
 * everything `cohortgate map` does but the I/O). Medians are printed. --stage runs only one stage
 * (for callgrind, whose instruction counts compare variants where wall time on a shared machine
 * is too noisy: `valgrind --tool=callgrind bench_xml --runs 1 --mb 2 --stage parse …`).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cg_mapping.h"
#include "cg_pseudo.h"
#include "cg_xml.h"

typedef struct doc {
    char *buf;
    size_t len;
} doc_t;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

enum { STAGE_PARSE, STAGE_MAP, STAGE_ENCODE, N_STAGES };
static const char *const stage_names[] = {"parse", "parse + map", "parse + map + encode"};

/* One stage over every document per_pass times. Not inlined, so that callgrind can count it
 * alone: --toggle-collect=run_stage. */
__attribute__((noinline)) static void run_stage(int st, size_t per_pass, const doc_t *docs,
                                                size_t n_docs, cg_xml_doc_t *xd,
                                                cg_mapping_worker_t *w, cg_buf_t *out, size_t *rows,
                                                size_t *failed)
{
    size_t rr = 0, ff = 0;
    for (size_t p = 0; p < per_pass; p++) {
        for (size_t i = 0; i < n_docs; i++) {
            if (st == STAGE_PARSE) {
                cg_error_t xe;
                ff += cg_xml_parse(xd, docs[i].buf, docs[i].len, &xe) != CG_OK;
                continue;
            }
            const cg_row_t *rws;
            size_t n;
            cg_error_t me;
            if (cg_mapping_worker_map(w, CG_INPUT_XML, docs[i].buf, docs[i].len, &rws, &n, &me)) {
                ff++;
                continue;
            }
            rr += n;
            if (st == STAGE_ENCODE) {
                cg_buf_reset(out);
                for (size_t k = 0; k < n; k++) {
                    cg_row_encode(&rws[k], NULL, NULL, 0, 0, out);
                    cg_buf_putc(out, '\n');
                }
            }
        }
    }
    *rows = rr;
    *failed = ff;
}

int main(int argc, char **argv)
{
    int runs = 5, mb = 50, a = 1, only = -1;
    for (; a < argc && !strncmp(argv[a], "--", 2); a += 2) {
        if (a + 1 >= argc)
            break;
        if (!strcmp(argv[a], "--runs"))
            runs = atoi(argv[a + 1]);
        else if (!strcmp(argv[a], "--mb"))
            mb = atoi(argv[a + 1]);
        else if (!strcmp(argv[a], "--stage"))
            only = !strcmp(argv[a + 1], "parse")    ? STAGE_PARSE
                   : !strcmp(argv[a + 1], "map")    ? STAGE_MAP
                   : !strcmp(argv[a + 1], "encode") ? STAGE_ENCODE
                                                    : -2;
    }
    if (argc - a < 3 || runs < 1 || runs > 99 || mb < 1 || only == -2) {
        fprintf(stderr, "usage: bench_xml [--runs N] [--mb M] [--stage parse|map|encode] SPEC "
                        "VOCAB_DIR DOCUMENT...\n");
        return 2;
    }
    const char *spec = argv[a], *vocab_dir = argv[a + 1];
    size_t n_docs = (size_t)(argc - a - 2), total = 0;
    doc_t *docs = calloc(n_docs, sizeof(*docs));
    for (size_t i = 0; i < n_docs; i++) {
        cg_buf_t b;
        cg_buf_init(&b);
        if (cg_buf_read_file(&b, argv[a + 2 + i]) != CG_OK) {
            fprintf(stderr, "bench_xml: cannot read %s\n", argv[a + 2 + i]);
            return 1;
        }
        docs[i].buf = b.data;
        docs[i].len = b.len;
        total += b.len;
    }

    char err[256] = "out of memory";
    /* a key of the bench's own: the bundle loads keys only from a file or the environment */
    static const char key_bytes[] = "bench-key-bench-key-bench-key-bench-key";
    cg_pseudo_key_t *key = cg_pseudo_key_new(key_bytes, sizeof(key_bytes) - 1, err, sizeof(err));
    cg_pseudo_t *pseudo = key ? cg_pseudo_new(key, 0, err, sizeof(err)) : NULL;
    if (!pseudo) {
        fprintf(stderr, "bench_xml: set-up failed: %s\n", err);
        return 1;
    }
    cg_mapping_opts_t mo = {.specs = spec, .vocab = vocab_dir, .no_key = 1};
    cg_error_t errs[4];
    size_t n_errs = 0;
    cg_mapping_t *m = cg_mapping_load(&mo, errs, 4, &n_errs);
    if (!m) {
        fprintf(stderr, "bench_xml: %s:%d:%d: %s\n", errs[0].file, errs[0].line, errs[0].column,
                errs[0].text);
        return 1;
    }
    cg_mapping_worker_t *w = cg_mapping_worker_new_keyed(m, pseudo, err, sizeof(err));
    cg_xml_options_t xo;
    cg_xml_options_default(&xo);
    cg_xml_doc_t *xd = cg_xml_doc_new(&xo);
    if (!w || !xd) {
        fprintf(stderr, "bench_xml: %s\n", err);
        return 1;
    }

    size_t target = (size_t)mb * 1000000u;
    size_t per_pass = (target + total - 1) / total; /* whole passes over the documents */
    size_t bytes = per_pass * total, count = per_pass * n_docs;
    size_t rows = 0, failed = 0;
    double secs[N_STAGES][100];
    cg_buf_t out;
    cg_buf_init(&out);
    for (int r = 0; r < runs; r++) {
        for (int st = 0; st < N_STAGES; st++) {
            secs[st][r] = 0;
            if (only >= 0 && st != only)
                continue;
            double t0 = now();
            size_t rr = 0, ff = 0;
            run_stage(st, per_pass, docs, n_docs, xd, w, &out, &rr, &ff);
            secs[st][r] = now() - t0;
            if (st == STAGE_ENCODE) {
                rows = rr;
                failed = ff;
            }
        }
    }
    printf("input: %zu documents, %.2f MB, processed %zu times per run (%.1f MB, %zu documents)\n",
           n_docs, (double)total / 1e6, per_pass, (double)bytes / 1e6, count);
    printf("rows per run: %zu; documents that failed per run: %zu\n", rows, failed);
    printf("%-22s %10s %10s %12s\n", "stage (one core)", "median s", "MB/s", "documents/s");
    double med[N_STAGES];
    for (int st = 0; st < N_STAGES; st++) {
        if (only >= 0 && st != only)
            continue;
        qsort(secs[st], (size_t)runs, sizeof(double), cmp_double);
        med[st] = secs[st][runs / 2];
        printf("%-22s %10.3f %10.1f %12.0f\n", stage_names[st], med[st],
               (double)bytes / 1e6 / med[st], (double)count / med[st]);
    }
    if (only < 0) /* one stage alone (callgrind) has no shares */
        printf("time share: parse %.0f%%, map %.0f%%, encode %.0f%%\n",
               100.0 * med[STAGE_PARSE] / med[STAGE_ENCODE],
               100.0 * (med[STAGE_MAP] - med[STAGE_PARSE]) / med[STAGE_ENCODE],
               100.0 * (med[STAGE_ENCODE] - med[STAGE_MAP]) / med[STAGE_ENCODE]);
    cg_buf_free(&out);
    cg_xml_doc_destroy(xd);
    cg_mapping_worker_destroy(w);
    cg_mapping_destroy(m);
    cg_pseudo_destroy(pseudo);
    cg_pseudo_key_destroy(key);
    for (size_t i = 0; i < n_docs; i++)
        free(docs[i].buf);
    free(docs);
    return 0;
}
