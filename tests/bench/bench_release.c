/* bench_release.c - the CPU cost of graded release on one core: each message mapped and encoded
 * as `run` does (the site's record), then the same with every row also released to N
 * subscribers under their policies and encoded again (what `run` does per subscriber).
 *
 * usage: bench_release [--runs N] [--passes P] [--subscribers N] SPECS_DIR FILE...
 *
 * The files (HL7 v2 messages, one or more a file, or XML documents) are read once and mapped
 * round-robin P times a run (default 20), RUNS runs (default 5), alternating the two variants;
 * medians of µs per message and the ratio are printed. The subscribers are the ones of
 * bench_gateway.sh's BENCH_RELEASE: a sponsor at level 3 with dates to the month, a registry at
 * level 5 with free text, a level-4 database with its own date shift. --only base|release runs one
 * variant, for callgrind's instruction counts (steadier than time on a shared machine):
 *   valgrind --tool=callgrind bench_release --runs 1 --passes 1 --only release SPECS FILE...
 * --dump FILE writes every released record of the first pass (subscriber, key, level, envelope: one
 * line each; a row withheld: subscriber, why, level and code set) to FILE, so that a change to the
 * release can be checked to leave its output identical.
 * --granted prints, per subscriber, the OMOP tables its policy releases and a column every row of
 * the table has (its primary key, else its first required column), one "SUBSCRIBER TABLE COLUMN"
 * a line, and exits (no FILE needed): bench_gateway.sh's BENCH_PLAIN run makes from them cohorts
 * that send each subscriber the rows its policy would release.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cg_mapping.h"
#include "cg_release.h"

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

typedef struct input {
    char *buf;
    size_t len;
    cg_input_format_t format;
} input_t;

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return b;
}

/* One pass over the inputs; with policies, every row released to each and encoded. Returns the
 * rows released in total (to keep the work from being optimized away). */
static size_t pass(cg_mapping_worker_t *w, const input_t *in, size_t n_in, cg_policy_t **pol,
                   size_t n_pol, const cg_catalogue_t *cat, cg_release_scratch_t *s, cg_buf_t *out,
                   size_t *n_msgs, FILE *dump)
{
    size_t released = 0;
    time_t t = time(NULL);
    for (size_t i = 0; i < n_in; i++) {
        const cg_row_t *rows;
        size_t n;
        cg_error_t me;
        if (cg_mapping_worker_map(w, in[i].format, in[i].buf, in[i].len, &rows, &n, &me) != CG_OK)
            continue;
        (*n_msgs)++;
        for (size_t r = 0; r < n; r++) {
            cg_buf_reset(out);
            cg_row_encode(&rows[r], NULL, NULL, 0, 0, out);
            const char *set = NULL;
            int level = n_pol ? cg_catalogue_row_level(cat, &rows[r], &set) : 0;
            if (n_pol && cg_release_row_prepare(s, &rows[r]) != CG_OK)
                continue;
            for (size_t p = 0; p < n_pol; p++) {
                cg_release_out_t o;
                cg_release_outcome_t why;
                cg_release_row(pol[p], &rows[r], NULL, 0, level, set, t, s, &o, &why);
                if (why != CG_RELEASE_OK && dump)
                    fprintf(dump, "%s\t%s\t%d %s\n", cg_policy_name(pol[p]),
                            cg_release_outcome_name(why), o.level, o.set ? o.set : "");
                if (why == CG_RELEASE_OK) {
                    size_t at = out->len;
                    cg_row_encode(&o.row, &o.src, NULL, 0, 0, out);
                    released++;
                    if (dump)
                        fprintf(dump, "%s\t%.*s\t%d\t%.*s\n", cg_policy_name(pol[p]),
                                (int)o.key.len, o.key.ptr, o.level, (int)(out->len - at),
                                out->data + at);
                }
            }
        }
    }
    return released;
}

/* The --granted lines of policy p (see the header). */
static void print_granted(const cg_policy_t *p)
{
    const cg_target_t *omop = cg_target_find("omop-cdm-5.4");
    size_t n = 0;
    const cg_target_table_t *tables = omop ? omop->tables(&n) : NULL;
    for (size_t i = 0; tables && i < n; i++) {
        const cg_target_table_t *t = &tables[i];
        char *d = cg_policy_describe(p, t);
        int granted = d && strstr(d, ": released\n") == d + strlen(t->name);
        free(d);
        const cg_target_column_t *col = t->pk;
        for (size_t c = 0; !col && c < t->n_columns; c++)
            if (t->columns[c].required)
                col = &t->columns[c];
        if (granted && col)
            printf("%s %s %s\n", cg_policy_name(p), t->name, col->name);
    }
}

/* What main made, freed. */
static void release_all(cg_policy_t **pol, int n, cg_catalogue_t *cat, cg_mapping_worker_t *w,
                        cg_mapping_t *m, cg_pseudo_t *site, cg_pseudo_key_t *k)
{
    for (int i = 0; i < n; i++)
        cg_policy_destroy(pol[i]);
    cg_catalogue_destroy(cat);
    cg_mapping_worker_destroy(w);
    cg_mapping_destroy(m);
    cg_pseudo_destroy(site);
    cg_pseudo_key_destroy(k);
}

int main(int argc, char **argv)
{
    int runs = 5, passes = 20, n_subs = 3, a = 1, only = -1, granted = 0;
    const char *dump_path = NULL;
    for (; a < argc && argv[a][0] == '-'; a += 2) {
        if (!strcmp(argv[a], "--granted")) {
            granted = 1;
            a--; /* takes no value */
            continue;
        }
        if (a + 1 >= argc)
            break;
        if (!strcmp(argv[a], "--runs"))
            runs = atoi(argv[a + 1]);
        else if (!strcmp(argv[a], "--passes"))
            passes = atoi(argv[a + 1]);
        else if (!strcmp(argv[a], "--subscribers"))
            n_subs = atoi(argv[a + 1]);
        else if (!strcmp(argv[a], "--only"))
            only = !strcmp(argv[a + 1], "release");
        else if (!strcmp(argv[a], "--dump"))
            dump_path = argv[a + 1];
    }
    if (argc - a < 2 - granted || runs < 1 || passes < 1 || n_subs < 1 || n_subs > 3) {
        fprintf(stderr, "usage: bench_release [--runs N] [--passes P] [--subscribers 1-3] "
                        "[--only base|release] [--dump FILE] SPECS_DIR FILE...\n"
                        "       bench_release [--subscribers 1-3] --granted SPECS_DIR\n");
        return 2;
    }
    const char *specs = argv[a++];
    static const char key[] = "bench_release: a throwaway pseudonym key of 32+ bytes";
    char err[256];
    cg_pseudo_key_t *k = cg_pseudo_key_new(key, sizeof(key) - 1, err, sizeof(err));
    cg_pseudo_t *site = cg_pseudo_new(k, 0, err, sizeof(err));
    cg_error_t errs[8];
    size_t ne = 0;
    cg_mapping_opts_t mo = {.specs = specs, .no_key = 1};
    cg_mapping_t *m = cg_mapping_load(&mo, errs, 8, &ne);
    if (!m) {
        fprintf(stderr, "bench_release: %s: %s\n", errs[0].file, errs[0].text);
        return 1;
    }
    cg_mapping_worker_t *w = cg_mapping_worker_new_keyed(m, site, err, sizeof(err));
    char layer[4096];
    snprintf(layer, sizeof(layer), "%s/classification", specs);
    const char *layers[] = {layer};
    cg_catalogue_t *cat = cg_catalogue_load(layers, 1, errs, 8, &ne);
    if (!w || !cat) {
        fprintf(stderr, "bench_release: %s\n", w ? errs[0].text : err);
        return 1;
    }
    cg_policy_def_t defs[3] = {{.name = "sponsor",
                                .agreement = "B-1",
                                .expires = "2999-12-31",
                                .max_level = 3,
                                .age_top = 90},
                               {.name = "registry",
                                .agreement = "B-2",
                                .expires = "2999-12-31",
                                .max_level = 5,
                                .free_text = 1,
                                .age_top = 90},
                               {.name = "disease-db",
                                .agreement = "B-3",
                                .expires = "2999-12-31",
                                .max_level = 4,
                                .date_shift_days = 30,
                                .age_top = 90}};
    defs[0].levels[3] = CG_ACT_GENERALIZE;
    cg_policy_t *pol[3];
    for (int i = 0; i < n_subs; i++) {
        cg_pseudo_key_t *sk = cg_release_derive_key(site, defs[i].name, err, sizeof(err));
        if (!sk || !(pol[i] = cg_policy_compile(cat, &defs[i], sk, errs, 8, &ne))) {
            fprintf(stderr, "bench_release: policy %s: %s\n", defs[i].name,
                    sk ? errs[0].text : err);
            return 1;
        }
        cg_pseudo_key_destroy(sk);
    }
    if (granted) {
        for (int i = 0; i < n_subs; i++)
            print_granted(pol[i]);
        release_all(pol, n_subs, cat, w, m, site, k);
        return 0;
    }
    size_t n_in = (size_t)(argc - a);
    input_t *in = calloc(n_in, sizeof(*in));
    for (size_t i = 0; i < n_in; i++) {
        in[i].buf = slurp(argv[a + (int)i], &in[i].len);
        if (!in[i].buf) {
            fprintf(stderr, "bench_release: cannot read %s\n", argv[a + (int)i]);
            return 1;
        }
        in[i].format = in[i].len && in[i].buf[0] == '<' ? CG_INPUT_XML : CG_INPUT_HL7V2;
    }
    FILE *dump = dump_path ? fopen(dump_path, "w") : NULL;
    if (dump_path && !dump) {
        fprintf(stderr, "bench_release: cannot write %s\n", dump_path);
        return 1;
    }
    cg_release_scratch_t *s = cg_release_scratch_new();
    cg_buf_t out;
    cg_buf_init(&out);
    double *base = calloc((size_t)runs, sizeof(double)),
           *rel = calloc((size_t)runs, sizeof(double));
    size_t msgs = 0, released = 0;
    for (int r = 0; r < runs; r++) {
        for (int variant = 0; variant < 2; variant++) {
            int with = (r % 2) ^ variant; /* alternated: neither always runs first */
            if (only >= 0 && with != only)
                continue;
            size_t nm = 0, nr = 0;
            double t0 = now();
            for (int p = 0; p < passes; p++) {
                FILE *d = with && dump && !released && !nr ? dump : NULL; /* the first pass */
                nr += pass(w, in, n_in, pol, with ? (size_t)n_subs : 0, cat, s, &out, &nm, d);
            }
            double us = (now() - t0) * 1e6 / (double)(nm ? nm : 1);
            (with ? rel : base)[r] = us;
            msgs = nm;
            if (with)
                released = nr;
        }
    }
    qsort(base, (size_t)runs, sizeof(double), cmp_double);
    qsort(rel, (size_t)runs, sizeof(double), cmp_double);
    double mb = base[runs / 2], mr = rel[runs / 2];
    printf("bench_release: %zu messages a run, %d runs, %d subscriber(s), %zu rows released a "
           "run\n",
           msgs, runs, n_subs, released);
    printf("  map + encode:                     %8.2f us/message (median)\n", mb);
    printf("  map + encode + release + encode:  %8.2f us/message (median)\n", mr);
    printf("  release cost: %+.1f %% of mapping; %.2f us per message and subscriber\n",
           100.0 * (mr - mb) / mb, (mr - mb) / n_subs);
    if (dump)
        fclose(dump);
    for (size_t i = 0; i < n_in; i++)
        free(in[i].buf);
    free(in);
    free(base);
    free(rel);
    cg_buf_free(&out);
    cg_release_scratch_destroy(s);
    release_all(pol, n_subs, cat, w, m, site, k);
    return 0;
}
