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
#define CASE     "case.json"

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
        "A case may hold case.json, a site's layers over the ones given here, its paths\n"
        "relative to the case folder: {\"specs\": [DIR...], \"vocab\": [DIR|FILE...],\n"
        "\"cohorts\": DIR|FILE, \"params\": {NAME: VALUE}, \"authorities\": {\"aliases\": {FROM: "
        "TO},\n"
        "\"defaults\": {FACILITY: AUTHORITY}, \"missing\": \"refuse\"|\"facility\"}} (each "
        "optional;\n"
        "a string is a list of one). \"vocab\" adds to --vocab, or to the vocab/ folders of the\n"
        "--spec layers when there is none; without it every spec layer's vocab/ folder is one.\n"
        "With \"cohorts\", records list their cohorts. \"params\" are the specs' parameters the\n"
        "expected output was made with (a site's identifier types, say), over --param's;\n"
        "\"authorities\" its pseudonym.authorities, instead of the --authority-* options.\n\n"
        "options:\n"
        "  -s, --spec FILE|DIR   the specs under test; again for a layer over the ones before\n"
        "      --vocab DIR|FILE  vocabulary tables (again for a layer); default: the vocab/\n"
        "                        folder of each spec layer\n"
        "      --param NAME=VALUE  a value for the specs' parameter NAME; "
        "repeatable\n" CG_CLI_AUTHORITY_HELP
        "      --key-file FILE   pseudonym key; default: the file `key` in the case folder,\n"
        "                        then COHORTGATE_PSEUDONYM_KEY. Expected pseudonyms depend on it.\n"
        "      --update          write what the specs produce as the expected output\n"
        "  -h, --help            show this help\n");
}

typedef struct test_ctx {
    cg_mapping_t *mapping;                     /* loaded without a key: each case brings its own */
    cg_cli_layers_t specs, vocab;              /* the command line's layers */
    cg_spec_param_t params[CG_CLI_MAX_PARAMS]; /* the command line's --param */
    size_t n_params;
    cg_cli_authorities_t auth; /* the command line's --authority-* */
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

/* dir/name, without a second slash when dir ends in one (`test cases/` names cases/x). */
static void join(char *buf, size_t size, const char *dir, const char *name)
{
    size_t n = strlen(dir);
    snprintf(buf, size, "%s%s%s", dir, n && dir[n - 1] == '/' ? "" : "/", name);
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

/* A table of case.json's "authorities" ("aliases", "defaults") into pairs; -1 after printing. */
static int case_pairs(const char *dir, const char *name, json_t *tab, cg_pseudo_pair_t *pairs,
                      size_t *n)
{
    const char *k;
    json_t *v;
    if (!json_is_object(tab)) {
        printf("FAIL %s: %s: authorities.%s is an object of NAME: VALUE\n", dir, CASE, name);
        return -1;
    }
    json_object_foreach(tab, k, v)
    {
        if (!json_is_string(v) || *n == CG_CLI_MAX_AUTHORITIES) {
            printf("FAIL %s: %s: authorities.%s: '%s' needs a string value\n", dir, CASE, name, k);
            return -1;
        }
        pairs[(*n)++] = (cg_pseudo_pair_t){k, json_string_value(v)};
    }
    return 0;
}

/* case.json's "authorities" into a (strings borrowed from v); -1 after printing. */
static int case_authorities(const char *dir, json_t *v, cg_cli_authorities_t *a)
{
    *a = (cg_cli_authorities_t){.n_aliases = 0};
    const char *k;
    json_t *x;
    if (!json_is_object(v)) {
        printf("FAIL %s: %s: authorities is {\"aliases\": {}, \"defaults\": {}, \"missing\": "
               "\"refuse\"|\"facility\"}\n",
               dir, CASE);
        return -1;
    }
    json_object_foreach(v, k, x)
    {
        const char *m = json_string_value(x);
        if (!strcmp(k, "aliases")) {
            if (case_pairs(dir, k, x, a->aliases, &a->n_aliases))
                return -1;
        } else if (!strcmp(k, "defaults")) {
            if (case_pairs(dir, k, x, a->defaults, &a->n_defaults))
                return -1;
        } else if (!strcmp(k, "missing") && m && (!strcmp(m, "refuse") || !strcmp(m, "facility"))) {
            a->missing =
                strcmp(m, "refuse") ? CG_PSEUDO_MISSING_FACILITY : CG_PSEUDO_MISSING_REFUSE;
        } else {
            printf("FAIL %s: %s: authorities: '%s' is not aliases, defaults or missing (refuse or "
                   "facility)\n",
                   dir, CASE, k);
            return -1;
        }
    }
    return 0;
}

/* A case's own layers (case.json) over the command line's: its own bundle, or NULL after
 * printing why the case fails. */
static cg_mapping_t *case_mapping(const test_ctx_t *t, const char *dir, const char *file)
{
    json_error_t je;
    json_t *root = json_load_file(file, JSON_REJECT_DUPLICATES, &je);
    if (!json_is_object(root)) {
        printf("FAIL %s: %s:%d:%d: %s\n", dir, CASE, je.line, je.column,
               root ? "a JSON object is expected" : je.text);
        json_decref(root);
        return NULL;
    }
    cg_cli_layers_t specs = t->specs, vocab = t->vocab;
    char paths[2 * CG_CLI_MAX_LAYERS + 1][PATH_MAX], defaults[CG_CLI_MAX_LAYERS][PATH_MAX];
    size_t n_paths = 0;
    const char *cohorts = NULL;
    cg_spec_param_t params[2 * CG_CLI_MAX_PARAMS];
    size_t n_params = 0;
    for (size_t i = 0; i < t->n_params; i++)
        params[n_params++] = t->params[i];
    cg_cli_authorities_t auth = t->auth;
    const char *k;
    json_t *v;
    int bad = 0;
    json_object_foreach(root, k, v)
    {
        int is_specs = !strcmp(k, "specs"), is_vocab = !strcmp(k, "vocab");
        if (!strncmp(k, "//", 2))
            continue;
        if (!strcmp(k, "params")) { /* after the command's: the case's values win */
            const char *name;
            json_t *val;
            json_object_foreach(v, name, val)
            {
                if (!json_is_string(val) || n_params == sizeof(params) / sizeof(params[0])) {
                    printf("FAIL %s: %s: params: '%s' needs a string value\n", dir, CASE, name);
                    bad = 1;
                    break;
                }
                params[n_params++] = (cg_spec_param_t){name, json_string_value(val)};
            }
            if (bad || !json_is_object(v)) {
                if (!bad)
                    printf("FAIL %s: %s: params is an object of NAME: VALUE\n", dir, CASE);
                bad = 1;
                break;
            }
            continue;
        }
        if (!strcmp(k, "authorities")) { /* instead of the command's */
            if ((bad = case_authorities(dir, v, &auth) != 0))
                break;
            continue;
        }
        if (!is_specs && !is_vocab && strcmp(k, "cohorts")) {
            printf("FAIL %s: %s: unknown key '%s' (specs, vocab, cohorts, params, authorities)\n",
                   dir, CASE, k);
            bad = 1;
            break;
        }
        if (is_vocab && !vocab.n) /* adding to the default: make the default explicit */
            for (size_t i = 0; i < specs.n; i++)
                if (cg_spec_vocab_dir(specs.paths[i], defaults[i], sizeof(defaults[i])))
                    vocab.paths[vocab.n++] = defaults[i];
        size_t n = json_is_array(v) ? json_array_size(v) : 1;
        for (size_t i = 0; i < n && !bad; i++) {
            json_t *x = json_is_array(v) ? json_array_get(v, i) : v;
            if (!json_is_string(x) || n_paths == sizeof(paths) / sizeof(paths[0]) ||
                (!strcmp(k, "cohorts") && json_is_array(v))) {
                printf("FAIL %s: %s: '%s' is a path or a list of paths\n", dir, CASE, k);
                bad = 1;
                break;
            }
            const char *p = json_string_value(x);
            snprintf(paths[n_paths], sizeof(paths[0]), "%s%s%s", *p == '/' ? "" : dir,
                     *p == '/' ? "" : "/", p);
            const char *path = paths[n_paths++];
            if (!strcmp(k, "cohorts"))
                cohorts = path;
            else
                bad = cg_cli_layers_add(is_specs ? &specs : &vocab, "test", k, path) != 0;
        }
        if (bad)
            break;
    }
    if (bad) {
        json_decref(root);
        return NULL;
    }
    cg_error_t errs[16];
    size_t n_errs = 0;
    cg_mapping_opts_t mo = {.cohorts = cohorts,
                            .no_key = 1,
                            .params = params,
                            .n_params = n_params,
                            .authorities = cg_cli_authority_opts(&auth)};
    cg_cli_layers_opts(&specs, &vocab, &mo);
    cg_mapping_t *m = cg_mapping_load(&mo, errs, 16, &n_errs); /* params live in root */
    json_decref(root);
    if (!m) {
        printf("FAIL %s: its layers (%s) do not load:\n", dir, CASE);
        cg_cli_print_errors(stdout, errs, n_errs, 16);
    }
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
    /* a case with its own layers maps with its own bundle */
    cg_mapping_t *own = NULL;
    snprintf(path, sizeof(path), "%s/" CASE, dir);
    if (stat(path, &st) == 0 && !(own = case_mapping(t, dir, path))) {
        t->failed++;
        cg_pseudo_destroy(pseudo);
        for (int i = 0; i < n; i++)
            free(names[i]);
        free(names);
        return;
    }
    cg_mapping_worker_t *mw =
        pseudo ? cg_mapping_worker_new_keyed(own ? own : t->mapping, pseudo, errstr, sizeof(errstr))
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
        join(path, sizeof(path), dir, names[i]->d_name);
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
        join(p, sizeof(p), path, names[i]->d_name);
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
        CG_CLI_AUTHORITY_OPTIONS,
        {NULL, 0, NULL, 0},
    };
    test_ctx_t t = {0};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "s:h", opts, NULL)) != -1) {
        switch (c) {
        case 's':
            if (cg_cli_layers_add(&t.specs, "test", "--spec", optarg))
                return CG_EXIT_USAGE;
            break;
        case 'v':
            if (cg_cli_layers_add(&t.vocab, "test", "--vocab", optarg))
                return CG_EXIT_USAGE;
            break;
        case 'k':
            t.key_file = optarg;
            break;
        case 'P':
            if (cg_cli_parse_param("test", optarg, t.params, &t.n_params, CG_CLI_MAX_PARAMS))
                return CG_EXIT_USAGE;
            break;
        case CG_CLI_OPT_AUTH_ALIAS:
        case CG_CLI_OPT_AUTH_DEFAULT:
        case CG_CLI_OPT_AUTH_MISSING:
            if (cg_cli_parse_authority("test", c, optarg, &t.auth))
                return CG_EXIT_USAGE;
            break;
        case 'u':
            t.update = 1;
            break;
        case 'h':
            usage(stdout);
            return CG_EXIT_OK;
        default:
            usage(stderr);
            return CG_EXIT_USAGE;
        }
    }
    if (!t.specs.n || optind >= argc) {
        fprintf(stderr, "cohortgate test: %s\n\n",
                t.specs.n ? "no CASES given" : "--spec is required");
        usage(stderr);
        return CG_EXIT_USAGE;
    }
    cg_error_t errs[64];
    size_t n_errs = 0;
    cg_mapping_opts_t mo = {.no_key = 1,
                            .params = t.params,
                            .n_params = t.n_params,
                            .authorities = cg_cli_authority_opts(&t.auth)};
    cg_cli_layers_opts(&t.specs, &t.vocab, &mo);
    if (!(t.mapping = cg_mapping_load(&mo, errs, 64, &n_errs))) {
        cg_cli_print_errors(stderr, errs, n_errs, 64);
        return CG_EXIT_FAILURE;
    }
    for (int i = optind; i < argc; i++)
        run_path(&t, argv[i]);
    printf("%zu passed, %zu failed\n", t.passed, t.failed);
    cg_mapping_destroy(t.mapping);
    return t.failed || !t.passed ? CG_EXIT_FAILURE : CG_EXIT_OK;
}
