/* layers.c - the mapping bundle's layers (mapping_layers.h): which spec files a stack of spec
 * folders comes to, the vocabulary layers loaded in order, what each contributed, and which
 * specs look codes up in vocabularies nothing loaded. */
#include "mapping_layers.h"

#include "cg_buf.h"

#include <dirent.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static void add_error(cg_error_t *errs, size_t max_errs, size_t *n_errs, cg_err_t code,
                      const char *file, const char *text)
{
    if (*n_errs < max_errs && errs)
        cg_error_set(&errs[*n_errs], code, file, 0, 0, "%s", text);
    (*n_errs)++;
}

static cg_mapping_layer_t *add_layer(layer_set_t *ls, cg_mapping_layer_kind_t kind,
                                     const char *path)
{
    cg_mapping_layer_t *grown = realloc(ls->layers, (ls->n_layers + 1) * sizeof(*grown));
    if (!grown)
        return NULL;
    ls->layers = grown;
    cg_mapping_layer_t *l = &ls->layers[ls->n_layers];
    memset(l, 0, sizeof(*l));
    l->kind = kind;
    if (!(l->path = strdup(path)))
        return NULL;
    ls->n_layers++;
    return l;
}

/* ---- what a spec's lookups name ---- */

static void note_vocab(layer_spec_file_t *f, const char *name)
{
    for (size_t i = 0; i < f->n_vocabs; i++)
        if (!strcmp(f->vocabs[i], name))
            return;
    char **grown = realloc(f->vocabs, (f->n_vocabs + 1) * sizeof(*grown));
    if (!grown)
        return; /* a warning less; the spec still compiles */
    f->vocabs = grown;
    if ((f->vocabs[f->n_vocabs] = strdup(name)))
        f->n_vocabs++;
}

/* Every {"lookup": {"vocabulary": ...}} anywhere in the spec: a string is a vocabulary named
 * in the spec, anything else is read from the input (OBX-3.3, @codeSystem). */
static void scan_lookups(layer_spec_file_t *f, json_t *j)
{
    if (json_is_array(j)) {
        size_t i;
        json_t *x;
        json_array_foreach(j, i, x) scan_lookups(f, x);
        return;
    }
    if (!json_is_object(j))
        return;
    const char *k;
    json_t *x;
    json_object_foreach(j, k, x)
    {
        json_t *voc = json_object_get(x, "vocabulary");
        if (!strcmp(k, "lookup") && json_is_object(x) && voc) {
            f->n_lookups++;
            if (json_is_string(voc))
                note_vocab(f, json_string_value(voc));
            else
                f->n_dynamic++;
        } else {
            scan_lookups(f, x);
        }
    }
}

/* ---- spec layers ---- */

static int json_name(const struct dirent *d)
{
    size_t n = strlen(d->d_name);
    return d->d_name[0] != '.' && n > 5 && !strcmp(d->d_name + n - 5, ".json");
}

static void free_text(layer_spec_file_t *f)
{
    json_decref(f->root);
    free(f->text);
    f->root = NULL;
    f->text = NULL;
}

void cg_mapping__spec_texts_free(layer_set_t *ls)
{
    for (size_t i = 0; i < ls->n_files; i++)
        free_text(&ls->files[i]);
}

static void free_file(layer_spec_file_t *f)
{
    free_text(f);
    free(f->path);
    free(f->name);
    for (size_t i = 0; i < f->n_vocabs; i++)
        free(f->vocabs[i]);
    free(f->vocabs);
}

/* Adds path as layer's spec file: read for its name and lookups, replacing an earlier layer's
 * spec of that name (noted in the reports). -1 when out of memory. */
static int add_file(layer_set_t *ls, size_t first_report, size_t layer, const char *path)
{
    layer_spec_file_t nf = {.layer = layer};
    if (!(nf.path = strdup(path)))
        return -1;
    cg_buf_t b;
    cg_buf_init(&b);
    json_t *root = NULL;
    if (cg_buf_read_file(&b, path) == CG_OK && b.data) {
        /* as the compiler parses it, kept for it; else leniently, for the name and lookups of
         * a spec the compiler will refuse */
        if ((root = json_loads(b.data, JSON_REJECT_DUPLICATES, NULL))) {
            nf.root = root;
            nf.text = b.data; /* taken from b */
            cg_buf_init(&b);
        } else {
            root = json_loads(b.data, 0, NULL);
        }
    }
    cg_buf_free(&b);
    const char *name = json_string_value(json_object_get(root, "spec"));
    if (name && !(nf.name = strdup(name))) {
        if (root != nf.root)
            json_decref(root);
        free_file(&nf);
        return -1;
    }
    scan_lookups(&nf, root);
    if (root != nf.root)
        json_decref(root);
    cg_mapping_layer_t *here = &ls->layers[first_report + layer];
    for (size_t i = 0; nf.name && i < ls->n_files; i++) {
        layer_spec_file_t *old = &ls->files[i];
        /* the same name within a layer stays, for the compiler's "loaded already" error */
        if (!old->name || strcmp(old->name, nf.name) || old->layer == layer)
            continue;
        char note[1024];
        snprintf(note, sizeof(note), "%s%s (over %s)", *here->overrides ? "; " : "", nf.name,
                 old->path);
        size_t had = strlen(here->overrides);
        char *grown = realloc((char *)here->overrides, had + strlen(note) + 1);
        if (!grown) {
            free_file(&nf);
            return -1;
        }
        memcpy(grown + had, note, strlen(note) + 1);
        here->overrides = grown;
        here->n_overrides++;
        ls->layers[first_report + old->layer].n_overridden++;
        free_file(old);
        memmove(old, old + 1, (ls->n_files - i - 1) * sizeof(*old));
        ls->n_files--;
        break;
    }
    layer_spec_file_t *grown = realloc(ls->files, (ls->n_files + 1) * sizeof(*grown));
    if (!grown) {
        free_file(&nf);
        return -1;
    }
    ls->files = grown;
    ls->files[ls->n_files++] = nf;
    return 0;
}

int cg_mapping__spec_layers(layer_set_t *ls, const char *const *paths, size_t n, cg_error_t *errs,
                            size_t max_errs, size_t *n_errs)
{
    size_t first = ls->n_layers, before = *n_errs;
    for (size_t k = 0; k < n; k++) {
        cg_mapping_layer_t *l = add_layer(ls, CG_MAPPING_LAYER_SPECS, paths[k]);
        if (!l || !(l->overrides = strdup(""))) {
            add_error(errs, max_errs, n_errs, CG_ERR_NOMEM, paths[k], "out of memory");
            return -1;
        }
    }
    for (size_t k = 0; k < n; k++) {
        struct stat st;
        int rc = 0;
        if (stat(paths[k], &st) != 0) {
            add_error(errs, max_errs, n_errs, CG_ERR_IO, paths[k],
                      "cannot read this spec layer: no such file or folder");
        } else if (S_ISDIR(st.st_mode)) {
            struct dirent **names;
            int nn = scandir(paths[k], &names, json_name, alphasort);
            if (nn < 0)
                add_error(errs, max_errs, n_errs, CG_ERR_IO, paths[k], "cannot read folder");
            for (int i = 0; i < nn; i++) {
                char file[4096];
                snprintf(file, sizeof(file), "%s/%s", paths[k], names[i]->d_name);
                if (!rc)
                    rc = add_file(ls, first, k, file);
                free(names[i]);
            }
            if (nn >= 0)
                free(names);
        } else {
            rc = add_file(ls, first, k, paths[k]);
        }
        if (rc) {
            add_error(errs, max_errs, n_errs, CG_ERR_NOMEM, paths[k], "out of memory");
            return -1;
        }
    }
    /* each layer's specs in use, by name */
    for (size_t k = 0; k < n; k++) {
        cg_mapping_layer_t *l = &ls->layers[first + k];
        cg_buf_t names;
        cg_buf_init(&names);
        for (size_t i = 0; i < ls->n_files; i++)
            if (ls->files[i].layer == k) {
                l->n_items++;
                cg_buf_printf(&names, "%s%s", names.len ? ", " : "",
                              ls->files[i].name ? ls->files[i].name : ls->files[i].path);
            }
        cg_buf_putc(&names, '\0');
        l->items = names.failed ? strdup("") : names.data;
        if (names.failed)
            cg_buf_free(&names);
    }
    return *n_errs > before ? -1 : 0;
}

/* ---- vocabulary layers ---- */

int cg_mapping__vocab_layers(layer_set_t *ls, cg_vocab_t *v, const char *const *paths, size_t n,
                             cg_error_t *errs, size_t max_errs, size_t *n_errs)
{
    int failed = 0;
    for (size_t k = 0; k < n; k++) {
        cg_mapping_layer_t *l = add_layer(ls, CG_MAPPING_LAYER_VOCAB, paths[k]);
        if (!l) {
            add_error(errs, max_errs, n_errs, CG_ERR_NOMEM, paths[k], "out of memory");
            return -1;
        }
        struct stat st;
        size_t got = 0, room = *n_errs < max_errs ? max_errs - *n_errs : 0;
        cg_error_t *at = errs && room ? errs + *n_errs : NULL;
        cg_err_t rc = stat(paths[k], &st) == 0 && !S_ISDIR(st.st_mode)
                          ? cg_vocab_load_csv(v, paths[k], at, room, &got)
                          : cg_vocab_load_csv_dir(v, paths[k], at, room, &got);
        *n_errs += got;
        if (rc != CG_OK || got)
            failed = 1;
        cg_vocab_load_stats_t stats;
        cg_vocab_last_load(v, &stats);
        l->n_items = stats.codes;
        l->n_overrides = stats.overridden;
        l->unmapped = stats.unmapped;
        l->not_valid = stats.not_valid;
        l->items = strdup(stats.vocabularies);
        cg_buf_t o;
        cg_buf_init(&o);
        for (size_t i = 0; i < stats.n_examples; i++)
            cg_buf_printf(&o, "%s%s", i ? "; " : "", stats.examples[i]);
        if (stats.overridden > stats.n_examples)
            cg_buf_printf(&o, "; and %zu more", stats.overridden - stats.n_examples);
        cg_buf_putc(&o, '\0');
        l->overrides = o.failed ? NULL : o.data;
        if (o.failed)
            cg_buf_free(&o);
        if (!l->items || !l->overrides) {
            add_error(errs, max_errs, n_errs, CG_ERR_NOMEM, paths[k], "out of memory");
            return -1;
        }
    }
    return failed ? -1 : 0;
}

int cg_mapping__athena_layer(layer_set_t *ls, const char *dir, size_t n_codes)
{
    cg_mapping_layer_t *l = add_layer(ls, CG_MAPPING_LAYER_VOCAB, dir);
    if (!l)
        return -1;
    l->n_items = n_codes;
    l->items = strdup("Athena: CONCEPT.csv, CONCEPT_RELATIONSHIP.csv");
    l->overrides = strdup("");
    return l->items && l->overrides ? 0 : -1;
}

/* ---- warnings ---- */

static void warn(layer_set_t *ls, const char *file, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void warn(layer_set_t *ls, const char *file, const char *fmt, ...)
{
    cg_error_t *grown = realloc(ls->warnings, (ls->n_warnings + 1) * sizeof(*grown));
    if (!grown)
        return;
    ls->warnings = grown;
    char text[sizeof(grown[0].text)];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    cg_error_set(&ls->warnings[ls->n_warnings++], CG_ERR_SPEC, file, 0, 0, "%s", text);
}

void cg_mapping__lookup_warnings(layer_set_t *ls, const cg_vocab_t *v)
{
    for (size_t i = 0; i < ls->n_files; i++) {
        const layer_spec_file_t *f = &ls->files[i];
        if (!f->n_lookups)
            continue;
        if (!cg_vocab_count(v)) {
            warn(ls, f->path,
                 "spec '%s' looks codes up (%zu lookup(s)) but no vocabulary is loaded: every "
                 "lookup gives concept 0 (add a vocabulary layer: mapping.vocab or --vocab, or "
                 "list the shipped specs/ as the first spec layer)",
                 f->name ? f->name : "?", f->n_lookups);
            continue;
        }
        for (size_t k = 0; k < f->n_vocabs; k++)
            if (!cg_vocab_has_vocabulary(v, (cg_slice_t){f->vocabs[k], strlen(f->vocabs[k])}))
                warn(ls, f->path,
                     "spec '%s' looks codes up in vocabulary '%s', which no loaded vocabulary "
                     "layer has: those lookups give concept 0",
                     f->name ? f->name : "?", f->vocabs[k]);
    }
}

void cg_mapping__layers_free(layer_set_t *ls)
{
    for (size_t i = 0; i < ls->n_layers; i++) {
        free((char *)ls->layers[i].path);
        free((char *)ls->layers[i].items);
        free((char *)ls->layers[i].overrides);
    }
    free(ls->layers);
    for (size_t i = 0; i < ls->n_files; i++)
        free_file(&ls->files[i]);
    free(ls->files);
    free(ls->warnings);
    memset(ls, 0, sizeof(*ls));
}
