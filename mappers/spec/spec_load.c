/* spec_load.c - spec files, folders and texts into a compiled spec set (spec_compile.c compiles
 * each spec): one error list for all of them, each error with file:line:column; a set without
 * errors is then prepared for the evaluator (spec_select.c, spec_prepare.c).
 */
#include "spec_compile.h"

#include "cg_jsonpos.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define err_at cg_spec_cc_err

/* Compiles root, parsed from text (JSON_REJECT_DUPLICATES), into a new spec; root stays the
 * caller's. */
static int add_spec_root(cg_specset_t *ss, cc_t *c, const char *text, json_t *root,
                         const char *name)
{
    c->file = name;
    cg_jsonpos_t *jp = cg_jsonpos_build(text, root);
    c->jp = jp;
    spec_t *grown = realloc(ss->specs, (ss->n_specs + 1) * sizeof(*grown));
    if (!grown) {
        cg_jsonpos_destroy(jp);
        return -1;
    }
    ss->specs = grown;
    spec_t *s = &ss->specs[ss->n_specs++];
    memset(s, 0, sizeof(*s));
    size_t before = c->e.n;
    cg_spec_compile_spec(c, root, s);
    cg_spec_warn_spec_done(c);
    for (size_t k = 0; k + 1 < ss->n_specs && c->e.n == before; k++)
        if (!strcmp(ss->specs[k].name, s->name))
            err_at(c, json_object_get(root, "spec"), root, "spec",
                   "a spec named '%s' is loaded already (from %s)", s->name, ss->specs[k].file);
    c->jp = NULL;
    cg_jsonpos_destroy(jp);
    return c->e.n == before ? 0 : -1;
}

static int add_spec_text(cg_specset_t *ss, cc_t *c, const char *text, const char *name)
{
    c->file = name;
    json_error_t je;
    json_t *root = json_loads(text, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        size_t i = c->e.n++;
        if (i < c->e.max && c->e.errs)
            cg_error_set(&c->e.errs[i], CG_ERR_SPEC, name, je.line, je.column, "%s", je.text);
        return -1;
    }
    int rc = add_spec_root(ss, c, text, root, name);
    json_decref(root);
    return rc;
}

static char *read_text(const char *path, cc_t *c)
{
    cg_buf_t b;
    cg_buf_init(&b);
    if (cg_buf_read_file(&b, path) != CG_OK) {
        size_t i = c->e.n++;
        if (i < c->e.max && c->e.errs)
            cg_error_set(&c->e.errs[i], CG_ERR_IO, path, 0, 0, "cannot read: %m");
        cg_buf_free(&b);
        return NULL;
    }
    return b.data ? b.data : strdup("");
}

static cg_specset_t *specset_new(void)
{
    cg_specset_t *ss = calloc(1, sizeof(*ss));
    if (ss && !(ss->warnings = calloc(CG_SPEC_MAX_WARNINGS, sizeof(*ss->warnings)))) {
        free(ss);
        return NULL;
    }
    if (ss)
        cg_arena_init(&ss->arena, 64 * 1024);
    return ss;
}

static cg_specset_t *finish(cg_specset_t *ss, cc_t *c, size_t *n_errs)
{
    cg_spec_params_check_site(ss, c);
    ss->n_warnings = c->w.n;
    if (n_errs)
        *n_errs = c->e.n;
    if (c->e.n || ss->n_specs == 0) {
        if (ss->n_specs == 0 && c->e.n == 0 && c->e.errs && c->e.max) {
            cg_error_set(&c->e.errs[0], CG_ERR_SPEC, c->file ? c->file : "", 0, 0,
                         "no spec (*.json) found");
            if (n_errs)
                *n_errs = 1;
        }
        cg_specset_destroy(ss);
        return NULL;
    }
    cg_spec_unmemo_single_paths(ss);
    if (cg_spec_select_build(ss) || cg_spec_prepare(ss)) {
        if (n_errs)
            *n_errs = 1;
        if (c->e.errs && c->e.max)
            cg_error_set(&c->e.errs[0], CG_ERR_NOMEM, c->file ? c->file : "", 0, 0,
                         "out of memory");
        cg_specset_destroy(ss);
        return NULL;
    }
    return ss;
}

cg_specset_t *cg_specset_load_string(const char *text, const char *name, const cg_spec_env_t *env,
                                     cg_error_t *errs, size_t max_errs, size_t *n_errs)
{
    cg_specset_t *ss = specset_new();
    cc_t c = {
        .ss = ss, .e = {errs, max_errs, 0}, .file = name, .expr = cg_spec_compile_expr, .env = env};
    if (!ss)
        return NULL;
    c.w = (cg_jsonpos_errors_t){ss->warnings, CG_SPEC_MAX_WARNINGS, 0};
    add_spec_text(ss, &c, text, name);
    return finish(ss, &c, n_errs);
}

static int json_name(const struct dirent *d)
{
    size_t n = strlen(d->d_name);
    return d->d_name[0] != '.' && n > 5 && !strcmp(d->d_name + n - 5, ".json");
}

cg_specset_t *cg_specset_load(const char *path, const cg_spec_env_t *env, cg_error_t *errs,
                              size_t max_errs, size_t *n_errs)
{
    cg_specset_t *ss = specset_new();
    cc_t c = {
        .ss = ss, .e = {errs, max_errs, 0}, .file = path, .expr = cg_spec_compile_expr, .env = env};
    if (!ss)
        return NULL;
    c.w = (cg_jsonpos_errors_t){ss->warnings, CG_SPEC_MAX_WARNINGS, 0};
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        struct dirent **names;
        int n = scandir(path, &names, json_name, alphasort);
        if (n < 0) {
            size_t i = c.e.n++;
            if (i < max_errs && errs)
                cg_error_set(&errs[i], CG_ERR_IO, path, 0, 0, "cannot read folder: %m");
        }
        for (int i = 0; i < n; i++) {
            char file[4096];
            snprintf(file, sizeof(file), "%s/%s", path, names[i]->d_name);
            char *text = read_text(file, &c);
            if (text)
                add_spec_text(ss, &c, text, file);
            free(text);
            free(names[i]);
        }
        if (n >= 0)
            free(names);
    } else {
        char *text = read_text(path, &c);
        if (text)
            add_spec_text(ss, &c, text, path);
        free(text);
    }
    c.file = path;
    return finish(ss, &c, n_errs);
}

cg_specset_t *cg_specset_load_files(const char *const *files, const char *const *texts,
                                    struct json_t *const *roots, size_t n, const cg_spec_env_t *env,
                                    cg_error_t *errs, size_t max_errs, size_t *n_errs)
{
    cg_specset_t *ss = specset_new();
    cc_t c = {.ss = ss,
              .e = {errs, max_errs, 0},
              .file = n ? files[0] : "",
              .expr = cg_spec_compile_expr,
              .env = env};
    if (!ss)
        return NULL;
    c.w = (cg_jsonpos_errors_t){ss->warnings, CG_SPEC_MAX_WARNINGS, 0};
    for (size_t i = 0; i < n; i++) {
        if (texts && roots && texts[i] && roots[i]) { /* read and parsed by the caller */
            add_spec_root(ss, &c, texts[i], roots[i], files[i]);
            continue;
        }
        char *text = read_text(files[i], &c);
        if (text)
            add_spec_text(ss, &c, text, files[i]);
        free(text);
    }
    return finish(ss, &c, n_errs);
}
