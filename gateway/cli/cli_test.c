/* cli_test.c - `cohortgate test`: run golden mapping cases, one folder per case with its input
 * beside the expected NDJSON, and print a readable difference when they disagree. The project's
 * golden tests use it, and so can an engineer's own specs. */
#include "cg_cli.h"
#include "cg_hl7.h"
#include "cg_pseudo.h"
#include "cg_spec.h"

#include <dirent.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define EXPECTED "expected.ndjson"
#define ERRORS   "expected.errors"

static void usage(FILE *out)
{
    fprintf(
        out,
        "usage: cohortgate test --spec FILE|DIR [OPTIONS] CASES...\n\n"
        "Each CASE is a folder holding input files (*.hl7 or *.xml, mapped in name order) and\n"
        "expected.ndjson, the records `cohortgate map` must print for them; optionally\n"
        "expected.errors, the error and outcome (no_rows, no_research_content) lines it must\n"
        "print. A folder of such folders runs them all. Records are compared as JSON (member\n"
        "order does not matter); a difference is shown per record and column. The exit status\n"
        "is 1 if any case fails.\n\n"
        "options:\n"
        "  -s, --spec FILE|DIR   the specs under test\n"
        "      --vocab DIR       vocabulary tables; default: vocab/ beside the specs\n"
        "      --key-file FILE   pseudonym key; default: the file `key` in the case folder,\n"
        "                        then COHORTGATE_PSEUDONYM_KEY. Expected pseudonyms depend on it.\n"
        "      --param NAME=VALUE  a value for the specs' parameter NAME; repeatable\n"
        "      --update          write what the specs produce as the expected output\n"
        "A case folder may hold a file params (NAME=VALUE lines): the specs' parameters its\n"
        "expected output was made with (a site's identifier types, say).\n"
        "  -h, --help            show this help\n");
}

typedef struct test_ctx {
    cg_mapping_t *mapping; /* loaded without a key: each case brings its own */
    cg_mapping_opts_t mo;  /* what it was loaded with, for a case with parameters of its own */
    const char *key_file;
    int update;
    size_t passed, failed;
} test_ctx_t;

static char *slurp(const char *path, size_t *len)
{
    cg_buf_t b;
    cg_buf_init(&b);
    if (cg_buf_read_file(&b, path) != CG_OK) {
        cg_buf_free(&b);
        return NULL;
    }
    if (len)
        *len = b.len;
    return b.data ? b.data : strdup("");
}

static int is_input(const struct dirent *d)
{
    size_t n = strlen(d->d_name);
    return d->d_name[0] != '.' && n > 4 &&
           (!strcmp(d->d_name + n - 4, ".hl7") || !strcmp(d->d_name + n - 4, ".xml"));
}

/* Splits text into lines (in place). */
static size_t split_lines(char *text, char ***lines)
{
    size_t n = 0, cap = 16;
    *lines = malloc(cap * sizeof(**lines));
    for (char *p = text; p && *p;) {
        char *nl = strchr(p, '\n');
        if (nl)
            *nl = '\0';
        if (*p) {
            if (n == cap)
                *lines = realloc(*lines, (cap *= 2) * sizeof(**lines));
            (*lines)[n++] = p;
        }
        p = nl ? nl + 1 : NULL;
    }
    return n;
}

static void describe(json_t *rec, char *out, size_t n)
{
    snprintf(out, n, "%s by rule %s", json_string_value(json_object_get(rec, "table")),
             json_string_value(json_object_get(json_object_get(rec, "source"), "rule")));
}

/* Prints how record i differs, column by column. */
static void diff_record(FILE *o, size_t i, json_t *want, json_t *got)
{
    char what[160];
    describe(want, what, sizeof(what));
    fprintf(o, "  record %zu (%s):\n", i + 1, what);
    const char *k;
    json_t *v;
    json_t *wr = json_object_get(want, "row"), *gr = json_object_get(got, "row");
    json_object_foreach(wr, k, v)
    {
        json_t *g = json_object_get(gr, k);
        if (!g || !json_equal(v, g)) {
            char *a = json_dumps(v, JSON_ENCODE_ANY | JSON_REAL_PRECISION(15)),
                 *b = g ? json_dumps(g, JSON_ENCODE_ANY | JSON_REAL_PRECISION(15)) : NULL;
            fprintf(o, "    %s: expected %s, got %s\n", k, a, b ? b : "(no column)");
            free(a);
            free(b);
        }
    }
    json_object_foreach(gr, k, v)
    {
        if (!json_object_get(wr, k)) {
            char *b = json_dumps(v, JSON_ENCODE_ANY | JSON_REAL_PRECISION(15));
            fprintf(o, "    %s: not expected, got %s\n", k, b);
            free(b);
        }
    }
    json_object_foreach(got, k, v)
    {
        if (!json_object_get(want, k)) {
            char *b = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
            fprintf(o, "    (%s) not expected, got %s\n", k, b);
            free(b);
        }
    }
    json_object_foreach(want, k, v)
    {
        if (strcmp(k, "row") && !json_equal(v, json_object_get(got, k))) {
            char *a = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
            char *b = json_dumps(json_object_get(got, k), JSON_ENCODE_ANY | JSON_COMPACT);
            fprintf(o, "    (%s) expected %s, got %s\n", k, a, b ? b : "nothing");
            free(a);
            free(b);
        }
    }
}

static int compare(FILE *o, const char *cs, char *want_text, char *got_text)
{
    char **want, **got;
    size_t nw = split_lines(want_text, &want), ng = split_lines(got_text, &got);
    int ok = 1;
    for (size_t i = 0; i < nw || i < ng; i++) {
        json_error_t je;
        json_t *w = i < nw ? json_loads(want[i], 0, &je) : NULL;
        json_t *g = i < ng ? json_loads(got[i], 0, &je) : NULL;
        if (i < nw && !w) {
            fprintf(o, "  %s/" EXPECTED ":%zu: not JSON: %s\n", cs, i + 1, je.text);
            ok = 0;
        } else if (w && g && !json_equal(w, g)) {
            diff_record(o, i, w, g);
            ok = 0;
        } else if (w && !g) {
            char what[160];
            describe(w, what, sizeof(what));
            fprintf(o, "  record %zu (%s): expected, but not produced\n", i + 1, what);
            ok = 0;
        } else if (!w && g) {
            char what[160];
            describe(g, what, sizeof(what));
            fprintf(o, "  record %zu (%s): produced, but not expected\n", i + 1, what);
            ok = 0;
        }
        json_decref(w);
        json_decref(g);
    }
    free(want);
    free(got);
    return ok;
}

static int write_file(const char *path, const char *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    int rc = fwrite(data, 1, len, f) == len ? 0 : -1;
    return fclose(f) || rc ? -1 : 0;
}

/* A case's file "params" (NAME=VALUE a line, as --param; # comments): the site parameters its
 * expected output was made with, such as the identifier types of a hospital. NULL when the case
 * has none (it uses the command's mapping); else a mapping of its own, or NULL with *failed. */
static cg_mapping_t *case_mapping(const test_ctx_t *t, const char *dir, char *errstr,
                                  size_t errstr_size, int *failed)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/params", dir);
    char *text = slurp(path, NULL);
    *failed = 0;
    if (!text)
        return NULL;
    cg_spec_param_t params[2 * CG_CLI_MAX_PARAMS];
    size_t n = 0;
    for (size_t i = 0; i < t->mo.n_params; i++)
        params[n++] = t->mo.params[i];
    char *save = NULL;
    for (char *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        char *eq = strchr(l, '=');
        if (*l == '#')
            continue;
        if (!eq || eq == l || n == sizeof(params) / sizeof(params[0])) {
            snprintf(errstr, errstr_size, "%s: a line is NAME=VALUE", path);
            *failed = 1;
            free(text);
            return NULL;
        }
        *eq = '\0'; /* the case's values come after the command's: they win */
        params[n++] = (cg_spec_param_t){l, eq + 1};
    }
    cg_mapping_opts_t mo = t->mo;
    mo.params = params;
    mo.n_params = n;
    cg_error_t errs[4];
    size_t n_errs = 0;
    cg_mapping_t *m = cg_mapping_load(&mo, errs, 4, &n_errs);
    if (!m) {
        char loc[1024];
        snprintf(errstr, errstr_size, "%s: %s", path,
                 n_errs ? cg_error_format(&errs[0], loc, sizeof(loc)) : "cannot load");
        *failed = 1;
    }
    free(text);
    return m;
}

static void run_case(test_ctx_t *t, const char *dir)
{
    char path[PATH_MAX], errstr[512];
    struct dirent **names = NULL;
    int n = scandir(dir, &names, is_input, alphasort);
    if (n <= 0) {
        printf("FAIL %s: no *.hl7 or *.xml input in the case folder\n", dir);
        t->failed++;
        free(names);
        return;
    }
    /* the case's own key file, when there is one */
    snprintf(path, sizeof(path), "%s/key", dir);
    struct stat st;
    const char *key_file = t->key_file ? t->key_file : stat(path, &st) == 0 ? path : NULL;
    cg_pseudo_key_t *key = cg_pseudo_key_load(key_file, NULL, errstr, sizeof(errstr));
    cg_pseudo_t *pseudo = key ? cg_pseudo_new(key, 0, errstr, sizeof(errstr)) : NULL;
    cg_pseudo_key_destroy(key);
    int own_failed = 0;
    cg_mapping_t *own = pseudo ? case_mapping(t, dir, errstr, sizeof(errstr), &own_failed) : NULL;
    cg_mapping_worker_t *mw =
        pseudo && !own_failed
            ? cg_mapping_worker_new_keyed(own ? own : t->mapping, pseudo, errstr, sizeof(errstr))
            : NULL;
    cg_hl7_msg_t *msg = cg_hl7_msg_new(NULL);
    if (!mw || !msg) {
        printf("FAIL %s: %s\n", dir, errstr);
        t->failed++;
        goto done;
    }
    char *out_text = NULL, *err_text = NULL;
    size_t out_len = 0, err_len = 0;
    FILE *out = open_memstream(&out_text, &out_len), *errs = open_memstream(&err_text, &err_len);
    cg_cli_map_counts_t cnt = {0};
    for (int i = 0; i < n; i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]->d_name);
        size_t len;
        char *buf = slurp(path, &len);
        /* errors name the file without its folder, so expected.errors travels with the case */
        if (buf)
            cg_cli_map_buffer(mw, msg, names[i]->d_name, buf, len, 0, out, errs, &cnt);
        free(buf);
    }
    fclose(out);
    fclose(errs);

    char want_path[PATH_MAX], errs_path[PATH_MAX];
    snprintf(want_path, sizeof(want_path), "%s/" EXPECTED, dir);
    snprintf(errs_path, sizeof(errs_path), "%s/" ERRORS, dir);
    if (t->update) {
        int rc = write_file(want_path, out_text, out_len);
        if (!rc && err_len)
            rc = write_file(errs_path, err_text, err_len);
        else if (!rc)
            remove(errs_path);
        printf("%s %s: %zu record(s), %zu error(s)\n", rc ? "FAIL" : "UPDATED", dir, cnt.rows,
               cnt.failed);
        rc ? t->failed++ : t->passed++;
    } else {
        char *want = slurp(want_path, NULL);
        char *want_errs = slurp(errs_path, NULL);
        int ok = 1;
        if (!want) {
            printf("FAIL %s: no %s (run with --update to create it)\n", dir, EXPECTED);
            ok = 0;
        } else {
            /* the differences go below the case's verdict, so collect them first */
            char *got_copy = strdup(out_text ? out_text : "");
            char *diff = NULL;
            size_t diff_len = 0;
            FILE *d = open_memstream(&diff, &diff_len);
            ok = compare(d, dir, want, got_copy);
            const char *we = want_errs ? want_errs : "";
            if (strcmp(we, err_text ? err_text : "")) {
                fprintf(d, "  errors: expected\n%s  got\n%s", *we ? we : "    (none)\n",
                        err_text && *err_text ? err_text : "    (none)\n");
                ok = 0;
            }
            fclose(d);
            printf("%s %s (%zu record(s), %zu error(s))\n", ok ? "PASS" : "FAIL", dir, cnt.rows,
                   cnt.failed);
            if (!ok)
                fputs(diff, stdout);
            free(diff);
            free(got_copy);
        }
        ok ? t->passed++ : t->failed++;
        free(want);
        free(want_errs);
    }
    free(out_text);
    free(err_text);
done:
    cg_hl7_msg_destroy(msg);
    cg_mapping_worker_destroy(mw);
    cg_mapping_destroy(own);
    cg_pseudo_destroy(pseudo);
    for (int i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

static int is_subdir(const struct dirent *d)
{
    return d->d_name[0] != '.' && (d->d_type == DT_DIR || d->d_type == DT_UNKNOWN);
}

static void run_path(test_ctx_t *t, const char *path)
{
    char p[PATH_MAX];
    struct stat st;
    snprintf(p, sizeof(p), "%s/" EXPECTED, path);
    int has_expected = stat(p, &st) == 0;
    struct dirent **names = NULL;
    int n = has_expected ? 0 : scandir(path, &names, is_input, alphasort);
    for (int i = 0; i < n; i++)
        free(names[i]);
    free(names);
    if (has_expected || n > 0) { /* a case */
        run_case(t, path);
        return;
    }
    n = scandir(path, &names, is_subdir, alphasort);
    if (n < 0) {
        printf("FAIL %s: cannot read: %m\n", path);
        t->failed++;
        return;
    }
    for (int i = 0; i < n; i++) {
        snprintf(p, sizeof(p), "%s/%s", path, names[i]->d_name);
        if (stat(p, &st) == 0 && S_ISDIR(st.st_mode))
            run_path(t, p);
        free(names[i]);
    }
    free(names);
}

int cg_cli_test(int argc, char **argv)
{
    static const struct option opts[] = {
        {"spec", required_argument, NULL, 's'},
        {"vocab", required_argument, NULL, 'v'},
        {"key-file", required_argument, NULL, 'k'},
        {"update", no_argument, NULL, 'u'},
        {"help", no_argument, NULL, 'h'},
        {"param", required_argument, NULL, 'P'},
        {NULL, 0, NULL, 0},
    };
    cg_spec_param_t params[CG_CLI_MAX_PARAMS];
    size_t n_params = 0;
    const char *spec = NULL, *vocab_dir = NULL;
    test_ctx_t t = {0};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "s:h", opts, NULL)) != -1) {
        switch (c) {
        case 's':
            spec = optarg;
            break;
        case 'v':
            vocab_dir = optarg;
            break;
        case 'k':
            t.key_file = optarg;
            break;
        case 'u':
            t.update = 1;
            break;
        case 'P':
            if (cg_cli_parse_param("test", optarg, params, &n_params, CG_CLI_MAX_PARAMS))
                return CG_EXIT_USAGE;
            break;
        case 'h':
            usage(stdout);
            return CG_EXIT_OK;
        default:
            usage(stderr);
            return CG_EXIT_USAGE;
        }
    }
    if (!spec || optind >= argc) {
        fprintf(stderr, "cohortgate test: %s\n\n", spec ? "no CASES given" : "--spec is required");
        usage(stderr);
        return CG_EXIT_USAGE;
    }
    cg_error_t errs[64];
    size_t n_errs = 0;
    t.mo = (cg_mapping_opts_t){
        .specs = spec, .vocab = vocab_dir, .no_key = 1, .params = params, .n_params = n_params};
    if (!(t.mapping = cg_mapping_load(&t.mo, errs, 64, &n_errs))) {
        cg_cli_print_errors(stderr, errs, n_errs, 64);
        return CG_EXIT_FAILURE;
    }
    for (int i = optind; i < argc; i++)
        run_path(&t, argv[i]);
    printf("%zu passed, %zu failed\n", t.passed, t.failed);
    cg_mapping_destroy(t.mapping);
    return t.failed || !t.passed ? CG_EXIT_FAILURE : CG_EXIT_OK;
}
