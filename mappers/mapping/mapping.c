/* mapping.c - the mapping bundle (cg_mapping.h): vocabularies, key, specs and cohorts loaded in
 * one place for every command, and the per-thread workers that map with them. */
#include "cg_mapping.h"
#include "cg_pseudo.h"
#include "cg_vocab.h"
#include "mapping_layers.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* What a reload keeps: loaded once, shared by a bundle and the bundles reloaded from it. */
typedef struct mapping_base {
    int refs; /* bundles holding it; atomic, as a bundle may be destroyed on another thread */
    cg_vocab_t *vocab;
    cg_pseudo_t *pseudo; /* NULL with opts.no_key */
    cg_pseudo_authorities_t *authorities;
    cg_hl7_options_t hl7;
    cg_xml_options_t xml;
    char *specs_path, *cohorts_path, *utc_offset, *charset;
    char **spec_paths; /* every spec layer, specs_path first */
    size_t n_spec_paths;
    layer_set_t vocab_layers; /* what each vocabulary layer contributed */
    cg_spec_param_t *params;  /* names and values strdup'ed */
    size_t n_params;
    unsigned max_message_ms;
    size_t max_message_memory;
    int message_id_plain; /* cg_mapping_opts_t.message_id_plain */
} mapping_base_t;

struct cg_mapping {
    mapping_base_t *base;
    cg_specset_t *specs;
    cg_cohortset_t *cohorts;    /* NULL without cohorts */
    layer_set_t spec_layers;    /* the files compiled, each layer's report, the warnings */
    cg_mapping_layer_t *layers; /* spec layers' reports, then the base's vocabulary layers' */
    size_t n_layers;
};

struct cg_mapping_worker {
    cg_mapper_t *mapper;
    cg_cohort_router_t *router;    /* NULL without cohorts */
    const cg_spec_format_t *input; /* of the last input mapped (auto: as sniffed) */
};

static void base_release(mapping_base_t *b)
{
    if (!b || __atomic_sub_fetch(&b->refs, 1, __ATOMIC_ACQ_REL) > 0)
        return;
    cg_vocab_destroy(b->vocab);
    cg_pseudo_destroy(b->pseudo);
    cg_pseudo_authorities_destroy(b->authorities);
    free(b->specs_path);
    for (size_t i = 0; i < b->n_spec_paths; i++)
        free(b->spec_paths[i]);
    free(b->spec_paths);
    cg_mapping__layers_free(&b->vocab_layers);
    free(b->cohorts_path);
    free(b->utc_offset);
    free(b->charset);
    for (size_t i = 0; i < b->n_params; i++) {
        free((char *)b->params[i].name);
        free((char *)b->params[i].value);
    }
    free(b->params);
    free(b);
}

static char *dup_or_null(const char *s, int *failed)
{
    if (!s)
        return NULL;
    char *d = strdup(s);
    if (!d)
        *failed = 1;
    return d;
}

/* One error without a place in a file: "what: text". */
static void plain_error(cg_error_t *errs, size_t max_errs, size_t *n_errs, cg_err_t code,
                        const char *what, const char *text)
{
    if (max_errs)
        cg_error_set(&errs[0], code, what, 0, 0, "%s", text);
    *n_errs = 1;
}

static cg_spec_env_t base_env(const mapping_base_t *b, const cg_pseudo_t *pseudo)
{
    return (cg_spec_env_t){.vocab = b->vocab,
                           .pseudo = pseudo,
                           .authorities = b->authorities,
                           .source_utc_offset = b->utc_offset,
                           .hl7 = &b->hl7,
                           .xml = &b->xml,
                           .params = b->params,
                           .n_params = b->n_params,
                           .max_message_ms = b->max_message_ms,
                           .max_message_memory = b->max_message_memory,
                           .message_id_plain = b->message_id_plain};
}

/* Loads the vocabulary layers of o (or the spec layers' vocab/ folders) into b, and Athena after
 * the first of them. -1 on errors. */
static int vocab_layers(mapping_base_t *b, const cg_mapping_opts_t *o, cg_error_t *errs,
                        size_t max_errs, size_t *n_errs)
{
    size_t n = o->vocab ? 1 + o->n_more_vocab : o->n_more_vocab;
    char(*found)[PATH_MAX] = NULL;
    const char **paths = calloc(n + b->n_spec_paths + 1, sizeof(*paths));
    if (!paths) {
        plain_error(errs, max_errs, n_errs, CG_ERR_NOMEM, "mapping", "out of memory");
        return -1;
    }
    size_t k = 0;
    if (o->vocab)
        paths[k++] = o->vocab;
    for (size_t i = 0; i < o->n_more_vocab; i++)
        paths[k++] = o->more_vocab[i];
    if (!k && !(found = calloc(b->n_spec_paths + 1, sizeof(*found)))) {
        free(paths);
        plain_error(errs, max_errs, n_errs, CG_ERR_NOMEM, "mapping", "out of memory");
        return -1;
    }
    for (size_t i = 0; found && i < b->n_spec_paths; i++)
        if (cg_spec_vocab_dir(b->spec_paths[i], found[k], sizeof(found[k])))
            paths[k] = found[k], k++;
    /* Athena completes the base layer (its ids win over the shipped tables'), and a site's
     * layers go over both: a site's decision about a code is the last word */
    size_t base = k ? 1 : 0;
    int rc =
        cg_mapping__vocab_layers(&b->vocab_layers, b->vocab, paths, base, errs, max_errs, n_errs);
    if (!rc && o->athena) {
        cg_error_t e;
        size_t before = cg_vocab_count(b->vocab);
        if (cg_vocab_load_athena(b->vocab, o->athena, NULL, 0, &e) != CG_OK) {
            if (*n_errs < max_errs)
                errs[*n_errs] = e;
            ++*n_errs;
            rc = -1;
        } else if (cg_mapping__athena_layer(&b->vocab_layers, o->athena,
                                            cg_vocab_count(b->vocab) - before)) {
            plain_error(errs, max_errs, n_errs, CG_ERR_NOMEM, "mapping", "out of memory");
            rc = -1;
        }
    }
    if (!rc)
        rc = cg_mapping__vocab_layers(&b->vocab_layers, b->vocab, paths + base, k - base, errs,
                                      max_errs, n_errs);
    free(found);
    free(paths);
    return rc;
}

static mapping_base_t *base_load(const cg_mapping_opts_t *o, cg_error_t *errs, size_t max_errs,
                                 size_t *n_errs)
{
    mapping_base_t *b = calloc(1, sizeof(*b));
    int nomem = !b;
    if (b) {
        b->refs = 1;
        b->specs_path = dup_or_null(o->specs, &nomem);
        b->cohorts_path = dup_or_null(o->cohorts, &nomem);
        b->utc_offset = dup_or_null(o->source_utc_offset, &nomem);
        b->max_message_ms = o->max_message_ms;
        b->max_message_memory = o->max_message_memory;
        b->message_id_plain = o->message_id_plain;
        if (o->hl7)
            b->hl7 = *o->hl7;
        else
            cg_hl7_options_default(&b->hl7);
        /* the charset name is the caller's; keep a copy so reloads outlive it */
        b->charset = dup_or_null(b->hl7.default_charset, &nomem);
        b->hl7.default_charset = b->charset;
        if (o->xml)
            b->xml = *o->xml;
        else
            cg_xml_options_default(&b->xml);
        if (o->n_params && !nomem && !(b->params = calloc(o->n_params, sizeof(*b->params))))
            nomem = 1;
        for (size_t i = 0; b->params && i < o->n_params; i++, b->n_params++) {
            b->params[i].name = dup_or_null(o->params[i].name, &nomem);
            b->params[i].value = dup_or_null(o->params[i].value, &nomem);
        }
        b->vocab = nomem ? NULL : cg_vocab_new();
        nomem |= !b->vocab;
        b->spec_paths = calloc(1 + o->n_more_specs, sizeof(*b->spec_paths));
        nomem |= !b->spec_paths;
        for (size_t i = 0; !nomem && i <= o->n_more_specs; i++) {
            b->spec_paths[i] = dup_or_null(i ? o->more_specs[i - 1] : o->specs, &nomem);
            b->n_spec_paths += !nomem;
        }
    }
    if (nomem) {
        plain_error(errs, max_errs, n_errs, CG_ERR_NOMEM, "mapping", "out of memory");
        goto fail;
    }
    char autherr[512];
    if (!(b->authorities =
              cg_pseudo_authorities_new(&o->authorities, NULL, autherr, sizeof(autherr)))) {
        plain_error(errs, max_errs, n_errs, CG_ERR_CONFIG, "", autherr);
        goto fail;
    }
    /* vocabularies first: a spec that names a vocabulary is checked against them. Without
     * vocabulary layers, each spec layer's vocab/ folder is one. */
    if (vocab_layers(b, o, errs, max_errs, n_errs))
        goto fail;
    /* source-to-concept rows take their target's domain, from whichever layer or Athena */
    cg_vocab_resolve_domains(b->vocab);
    if (!o->no_key) {
        char errstr[512];
        cg_pseudo_key_t *key = cg_pseudo_key_load(o->key_file, o->key_file ? NULL : o->key_env,
                                                  errstr, sizeof(errstr));
        if (key)
            b->pseudo = cg_pseudo_new(key, o->date_shift_days, errstr, sizeof(errstr));
        cg_pseudo_key_destroy(key);
        if (!b->pseudo) {
            plain_error(errs, max_errs, n_errs, CG_ERR_CONFIG, "", errstr);
            goto fail;
        }
    }
    return b;
fail:
    base_release(b);
    return NULL;
}

/* Compiles the specs and cohorts of base into a new bundle that takes a reference to base. */
static cg_mapping_t *compile(mapping_base_t *b, cg_error_t *errs, size_t max_errs, size_t *n_errs)
{
    cg_mapping_t *m = calloc(1, sizeof(*m));
    if (!m) {
        plain_error(errs, max_errs, n_errs, CG_ERR_NOMEM, "mapping", "out of memory");
        return NULL;
    }
    cg_spec_env_t env = base_env(b, b->pseudo);
    /* the spec layers are read again on each compile, so a reload sees new files */
    if (cg_mapping__spec_layers(&m->spec_layers, (const char *const *)b->spec_paths,
                                b->n_spec_paths, errs, max_errs, n_errs))
        goto fail;
    layer_set_t *sl = &m->spec_layers;
    const char **files = calloc(sl->n_files + 1, sizeof(*files));
    const char **texts = calloc(sl->n_files + 1, sizeof(*texts));
    struct json_t **roots = calloc(sl->n_files + 1, sizeof(*roots));
    if (!files || !texts || !roots) {
        free(files);
        free(texts);
        free(roots);
        plain_error(errs, max_errs, n_errs, CG_ERR_NOMEM, "mapping", "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < sl->n_files; i++) {
        files[i] = sl->files[i].path;
        texts[i] = sl->files[i].text; /* parsed once, when the layers were resolved */
        roots[i] = sl->files[i].root;
    }
    m->specs = sl->n_files ? cg_specset_load_files(files, texts, roots, sl->n_files, &env, errs,
                                                   max_errs, n_errs)
                           : NULL;
    free(files);
    free(texts);
    free(roots);
    cg_mapping__spec_texts_free(sl);
    if (!m->specs) {
        if (!*n_errs) /* a folder without specs is an error of its own */
            plain_error(errs, max_errs, n_errs, CG_ERR_SPEC, b->specs_path, "no spec found");
        goto fail;
    }
    cg_mapping__lookup_warnings(sl, b->vocab);
    m->n_layers = sl->n_layers + b->vocab_layers.n_layers;
    if (!(m->layers = calloc(m->n_layers + 1, sizeof(*m->layers)))) {
        plain_error(errs, max_errs, n_errs, CG_ERR_NOMEM, "mapping", "out of memory");
        goto fail;
    }
    if (sl->n_layers)
        memcpy(m->layers, sl->layers, sl->n_layers * sizeof(*m->layers));
    if (b->vocab_layers.n_layers) /* none: each spec layer without a vocab/ folder */
        memcpy(m->layers + sl->n_layers, b->vocab_layers.layers,
               b->vocab_layers.n_layers * sizeof(*m->layers));
    if (b->cohorts_path &&
        !(m->cohorts = cg_cohortset_load(b->cohorts_path, errs, max_errs, n_errs)))
        goto fail;
    __atomic_add_fetch(&b->refs, 1, __ATOMIC_ACQ_REL);
    m->base = b;
    return m;
fail:
    cg_specset_destroy(m->specs);
    cg_mapping__layers_free(&m->spec_layers);
    free(m->layers);
    free(m);
    return NULL;
}

cg_mapping_t *cg_mapping_load(const cg_mapping_opts_t *opts, cg_error_t *errs, size_t max_errs,
                              size_t *n_errs)
{
    size_t n = 0;
    if (!n_errs)
        n_errs = &n;
    *n_errs = 0;
    if (!opts || !opts->specs) {
        plain_error(errs, max_errs, n_errs, CG_ERR_INVALID_ARG, "mapping", "no specs given");
        return NULL;
    }
    mapping_base_t *b = base_load(opts, errs, max_errs, n_errs);
    if (!b)
        return NULL;
    cg_mapping_t *m = compile(b, errs, max_errs, n_errs);
    base_release(b); /* the bundle holds its own reference */
    return m;
}

cg_mapping_t *cg_mapping_reload(const cg_mapping_t *m, cg_error_t *errs, size_t max_errs,
                                size_t *n_errs)
{
    size_t n = 0;
    if (!n_errs)
        n_errs = &n;
    *n_errs = 0;
    return compile(m->base, errs, max_errs, n_errs);
}

void cg_mapping_destroy(cg_mapping_t *m)
{
    if (!m)
        return;
    cg_cohortset_destroy(m->cohorts);
    cg_specset_destroy(m->specs);
    cg_mapping__layers_free(&m->spec_layers);
    free(m->layers);
    base_release(m->base);
    free(m);
}

size_t cg_mapping_layers(const cg_mapping_t *m, const cg_mapping_layer_t **layers)
{
    *layers = m->layers;
    return m->n_layers;
}

size_t cg_mapping_warnings(const cg_mapping_t *m, const cg_error_t **warnings)
{
    *warnings = m->spec_layers.warnings;
    return m->spec_layers.n_warnings;
}

const cg_specset_t *cg_mapping_specs(const cg_mapping_t *m)
{
    return m->specs;
}

const cg_cohortset_t *cg_mapping_cohorts(const cg_mapping_t *m)
{
    return m->cohorts;
}

const cg_vocab_t *cg_mapping_vocab(const cg_mapping_t *m)
{
    return m->base->vocab;
}

const cg_pseudo_t *cg_mapping_pseudo(const cg_mapping_t *m)
{
    return m->base->pseudo;
}

const char *cg_mapping_specs_path(const cg_mapping_t *m)
{
    return m->base->specs_path;
}

const char *cg_mapping_cohorts_path(const cg_mapping_t *m)
{
    return m->base->cohorts_path;
}

cg_mapping_worker_t *cg_mapping_worker_new_keyed(const cg_mapping_t *m, const cg_pseudo_t *pseudo,
                                                 char *errstr, size_t errstr_size)
{
    cg_mapping_worker_t *w = calloc(1, sizeof(*w));
    if (!w) {
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    cg_spec_env_t env = base_env(m->base, pseudo);
    w->mapper = cg_mapper_new(m->specs, &env, errstr, errstr_size);
    if (w->mapper && m->cohorts && !(w->router = cg_cohort_router_new(m->cohorts)))
        snprintf(errstr, errstr_size, "out of memory");
    if (!w->mapper || (m->cohorts && !w->router)) {
        cg_mapping_worker_destroy(w);
        return NULL;
    }
    return w;
}

cg_mapping_worker_t *cg_mapping_worker_new(const cg_mapping_t *m, char *errstr, size_t errstr_size)
{
    if (!m->base->pseudo) {
        snprintf(errstr, errstr_size, "no pseudonym key was loaded");
        return NULL;
    }
    return cg_mapping_worker_new_keyed(m, m->base->pseudo, errstr, errstr_size);
}

void cg_mapping_worker_set_trace(cg_mapping_worker_t *w, int on)
{
    cg_mapper_set_trace(w->mapper, on);
}

void cg_mapping_worker_set_hl7_charset(cg_mapping_worker_t *w, const char *charset)
{
    cg_mapper_set_hl7_charset(w->mapper, charset);
}

void cg_mapping_worker_destroy(cg_mapping_worker_t *w)
{
    if (!w)
        return;
    cg_mapper_destroy(w->mapper);
    cg_cohort_router_destroy(w->router);
    free(w);
}

cg_err_t cg_mapping_worker_map(cg_mapping_worker_t *w, cg_input_format_t format, const char *buf,
                               size_t len, const cg_row_t **rows, size_t *n_rows, cg_error_t *err)
{
    const cg_spec_format_t *f = cg_spec_format_of(format);
    if (!f) /* auto: by the input's first bytes */
        f = cg_spec_format_sniff(buf, len);
    w->input = f;
    return f->map(w->mapper, buf, len, rows, n_rows, err);
}

const cg_spec_format_t *cg_mapping_worker_format(const cg_mapping_worker_t *w)
{
    return w->input;
}

cg_err_t cg_mapping_worker_map_msg(cg_mapping_worker_t *w, cg_hl7_msg_t *msg, const cg_row_t **rows,
                                   size_t *n_rows, cg_error_t *err)
{
    return cg_mapper_map_msg(w->mapper, msg, rows, n_rows, err);
}

size_t cg_mapping_worker_quality(const cg_mapping_worker_t *w, const cg_quality_t **items)
{
    return cg_mapper_quality(w->mapper, items);
}

void cg_mapping_worker_outcome(const cg_mapping_worker_t *w, cg_map_outcome_t *out)
{
    cg_mapper_outcome(w->mapper, out);
}

int cg_mapping_worker_msg_type(const cg_mapping_worker_t *w, cg_slice_t *type, cg_slice_t *event)
{
    return cg_mapper_msg_type(w->mapper, type, event);
}

const char *cg_mapping_worker_route_why(const cg_mapping_worker_t *w, size_t i)
{
    return cg_cohort_route_why(w->router, i);
}

size_t cg_mapping_worker_route(cg_mapping_worker_t *w, const cg_row_t *row,
                               const char *const **names)
{
    if (!w->router)
        return 0;
    return cg_cohort_route(w->router, row, names);
}
