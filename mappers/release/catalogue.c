/* catalogue.c - the classification catalogue: columns.csv and sensitive-codes.csv of each layer,
 * checked against the targets' tables, and the code sets a row is matched against (see
 * cg_release.h, specs/classification/README.md). */
#include "release_impl.h"

#include "cg_csv.h"

#include <ctype.h>
#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define CAT_MAX_BYTES (16u << 20)

static const char *const category_names[CG_CAT__COUNT] = {"personal_attributes", "health_status",
                                                          "medical_application", "payment",
                                                          "health_resources",    "public_health"};

static const char *const flag_names[] = {"identifier", "quasi", "free_text", "sensitive",
                                         "pseudonym"};
static const char *const gen_names[] = {"", "date", "age_band", "zip3"};

typedef struct loader {
    cg_catalogue_t *cat;
    cg_csv_t csv;
    EVP_MD_CTX *md;
    const char *base_columns; /* the base layer's columns.csv, for coverage errors */
} loader_t;

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcmp(s + n - m, suffix);
}

static cat_table_t *cat_table(const cg_catalogue_t *cat, const cg_target_table_t *t)
{
    size_t at = cat_span_find(cat->spans, cat->n_spans, t);
    if (at < cat->n_tables && cat->tables[at].table == t)
        return &cat->tables[at];
    for (size_t i = 0; i < cat->n_tables; i++)
        if (cat->tables[i].table == t)
            return &cat->tables[i];
    return NULL;
}

/* Every table of every target, columns unclassified (level 0). */
static int cat_init_tables(cg_catalogue_t *cat)
{
    for (size_t ti = 0; cg_target_at(ti); ti++) {
        size_t n;
        const cg_target_table_t *tabs = cg_target_at(ti)->tables(&n);
        if (!tabs)
            return -1;
        if (cat->n_spans < CAT_TARGETS_MAX)
            cat->spans[cat->n_spans++] =
                (cat_span_t){(uintptr_t)tabs, (uintptr_t)(tabs + n), cat->n_tables};
        for (size_t k = 0; k < n; k++) {
            cat_table_t *grown = realloc(cat->tables, (cat->n_tables + 1) * sizeof(*grown));
            if (!grown)
                return -1;
            cat->tables = grown;
            cat_table_t *ct = &cat->tables[cat->n_tables++];
            memset(ct, 0, sizeof(*ct));
            ct->table = &tabs[k];
            size_t nc = tabs[k].n_columns;
            ct->cols = calloc(nc ? nc : 1, sizeof(*ct->cols));
            ct->lines = calloc(nc ? nc : 1, sizeof(*ct->lines));
            ct->concept_cols = calloc(nc ? nc : 1, sizeof(*ct->concept_cols));
            ct->source_cols = calloc(nc ? nc : 1, sizeof(*ct->source_cols));
            if (!ct->cols || !ct->lines || !ct->concept_cols || !ct->source_cols)
                return -1;
        }
    }
    return 0;
}

static int parse_level(const cg_csv_field_t *f)
{
    return f->len == 1 && f->p[0] >= '1' && f->p[0] <= '5' ? f->p[0] - '0' : 0;
}

/* One enum word of names[0..n) in f; -1 when none. */
static int word_of(const cg_csv_field_t *f, const char *const *names, int n)
{
    for (int i = 0; i < n; i++)
        if (cg_csv_is(f, names[i]))
            return i;
    return -1;
}

enum { C_TABLE, C_COLUMN, C_CATEGORY, C_LEVEL, C_FLAGS, C_GEN, C_GLEVEL, C_WHY, C__COUNT };
static const char *const col_cols[C__COUNT] = {"table", "column",     "category",          "level",
                                               "flags", "generalize", "generalized_level", "why"};
#define COL_REQUIRED ((1u << C__COUNT) - 1u - (1u << C_WHY))

static void load_columns(loader_t *l, int layer)
{
    cg_csv_t *c = &l->csv;
    cg_csv_field_t f[CG_CSV_MAX_FIELDS];
    size_t nf;
    int line;
    int colmap[CG_CSV_MAX_FIELDS];
    if (!cg_csv_first(c, f, &nf, &line, "table,column,category,level,flags,generalize,..."))
        return;
    if (!cg_csv_header(c, f, nf, col_cols, C__COUNT, COL_REQUIRED,
                       "expected table, column, category, level, flags, generalize, "
                       "generalized_level, why",
                       line, colmap))
        return;
    size_t ncols = nf;
    char sb[CG_CSV_SHOW_MAX + 4], hint[300], name[128];
    while (cg_csv_next_row(c, f, &nf, ncols, &line)) {
        cg_csv_field_t *col[C__COUNT] = {0};
        for (size_t i = 0; i < nf; i++)
            col[colmap[i]] = &f[i];
        cg_csv_field_t *ft = col[C_TABLE], *fc = col[C_COLUMN];
        snprintf(name, sizeof(name), "%.*s", (int)ft->len, ft->p);
        const cg_target_table_t *t = cg_target_table_any(name);
        if (!t) {
            cg_csv_err(c, CG_ERR_CONFIG, ft->line, ft->col, "no target has a table '%s'",
                       cg_csv_show(ft->p, ft->len, sb));
            continue;
        }
        snprintf(name, sizeof(name), "%.*s", (int)fc->len, fc->p);
        const cg_target_column_t *tc = cg_target_column(t, name);
        if (!tc) {
            cg_csv_err(c, CG_ERR_CONFIG, fc->line, fc->col, "table %s has no column '%s'; %s",
                       t->name, cg_csv_show(fc->p, fc->len, sb),
                       cg_target_column_hint(t, name, hint, sizeof(hint)));
            continue;
        }
        cg_class_column_t e = {0};
        int cat_i = word_of(col[C_CATEGORY], category_names, CG_CAT__COUNT);
        if (cat_i < 0) {
            cg_csv_err(c, CG_ERR_CONFIG, col[C_CATEGORY]->line, col[C_CATEGORY]->col,
                       "unknown category '%s' (GB/T 39725-2020: personal_attributes, "
                       "health_status, medical_application, payment, health_resources, "
                       "public_health)",
                       cg_csv_show(col[C_CATEGORY]->p, col[C_CATEGORY]->len, sb));
            continue;
        }
        e.category = (uint8_t)cat_i;
        if (!(e.level = (uint8_t)parse_level(col[C_LEVEL]))) {
            cg_csv_err(c, CG_ERR_CONFIG, col[C_LEVEL]->line, col[C_LEVEL]->col,
                       "level must be 1 to 5: '%s'",
                       cg_csv_show(col[C_LEVEL]->p, col[C_LEVEL]->len, sb));
            continue;
        }
        /* flags: space-separated words */
        cg_csv_field_t *ff = col[C_FLAGS];
        int bad = 0;
        for (size_t i = 0; i < ff->len && !bad;) {
            while (i < ff->len && ff->p[i] == ' ')
                i++;
            size_t j = i;
            while (j < ff->len && ff->p[j] != ' ')
                j++;
            if (j == i)
                break;
            cg_csv_field_t w = {ff->p + i, j - i, ff->line, ff->col + (int)i};
            int k = word_of(&w, flag_names, 5);
            if (k < 0) {
                cg_csv_err(c, CG_ERR_CONFIG, w.line, w.col,
                           "unknown flag '%s' (identifier, quasi, free_text, sensitive, "
                           "pseudonym)",
                           cg_csv_show(w.p, w.len, sb));
                bad = 1;
            }
            e.flags |= (uint8_t)(1u << (k < 0 ? 0 : k));
            i = j;
        }
        if (bad)
            continue;
        int g = word_of(col[C_GEN], gen_names, 4);
        if (g < 0) {
            cg_csv_err(c, CG_ERR_CONFIG, col[C_GEN]->line, col[C_GEN]->col,
                       "unknown generalization '%s' (date, age_band, zip3, or empty)",
                       cg_csv_show(col[C_GEN]->p, col[C_GEN]->len, sb));
            continue;
        }
        e.generalize = (uint8_t)g;
        cg_csv_field_t *fg = col[C_GLEVEL];
        if (g) {
            e.generalized_level = (uint8_t)parse_level(fg);
            if (!e.generalized_level || e.generalized_level >= e.level) {
                cg_csv_err(c, CG_ERR_CONFIG, fg->line, fg->col,
                           "generalized_level must be a level from 1 below level %d: '%s'", e.level,
                           cg_csv_show(fg->p, fg->len, sb));
                continue;
            }
        } else if (fg->len) {
            cg_csv_err(c, CG_ERR_CONFIG, fg->line, fg->col,
                       "generalized_level without a generalization");
            continue;
        }
        if ((g == CG_GEN_DATE && tc->type != CG_COL_DATE && tc->type != CG_COL_DATETIME) ||
            (g == CG_GEN_AGE_BAND && strcmp(tc->name, "year_of_birth")) ||
            (g == CG_GEN_ZIP3 && tc->type != CG_COL_VARCHAR && tc->type != CG_COL_TEXT)) {
            cg_csv_err(c, CG_ERR_CONFIG, col[C_GEN]->line, col[C_GEN]->col,
                       "%s cannot be generalized by %s", tc->name, gen_names[g]);
            continue;
        }
        if ((e.flags & CG_CLASS_PSEUDONYM) && tc->type != CG_COL_INT64 &&
            tc->type != CG_COL_VARCHAR && tc->type != CG_COL_TEXT) {
            cg_csv_err(c, CG_ERR_CONFIG, ff->line, ff->col,
                       "pseudonym: %s is neither a 64-bit id nor text", tc->name);
            continue;
        }
        cat_table_t *ct = cat_table(l->cat, t);
        if (ct->lines[tc->index].layer == layer + 1) {
            cg_csv_err(c, CG_ERR_CONFIG, fc->line, fc->col,
                       "%s.%s is classified twice in this file (first at line %d)", t->name,
                       tc->name, ct->lines[tc->index].line);
            continue;
        }
        ct->cols[tc->index] = e;
        ct->lines[tc->index] = (cat_line_t){layer + 1, line};
    }
}

/* ---- code sets ---- */

enum { S_SET, S_LEVEL, S_MATCH, S_VALUE, S_WHY, S__COUNT };
static const char *const set_cols[S__COUNT] = {"set", "level", "match", "value", "why"};
static const char *const match_names[] = {"concept", "code", "prefix", "range"};

static const char *intern_set(cg_catalogue_t *cat, const cg_csv_field_t *f)
{
    for (size_t i = 0; i < cat->n_sets; i++)
        if (cg_csv_is(f, cat->sets[i]))
            return cat->sets[i];
    char **grown = realloc(cat->sets, (cat->n_sets + 1) * sizeof(*grown));
    if (!grown)
        return NULL;
    cat->sets = grown;
    char *s = strndup(f->p, f->len);
    if (!s)
        return NULL;
    return cat->sets[cat->n_sets++] = s;
}

static int add_code(cg_catalogue_t *cat, int kind, const char *set, int level, const char *p,
                    size_t n)
{
    if (cat->n_codes == cat->cap_codes) {
        size_t cap = cat->cap_codes ? cat->cap_codes * 2 : 64;
        cat_code_t *g = realloc(cat->codes, cap * sizeof(*g));
        if (!g)
            return -1;
        cat->codes = g;
        cat->cap_codes = cap;
    }
    cat_code_t *e = &cat->codes[cat->n_codes++];
    memset(e, 0, sizeof(*e));
    e->kind = (uint8_t)kind;
    e->level = (uint8_t)level;
    e->set = set;
    for (size_t i = 0; i < n; i++)
        e->text[i] = (char)toupper((unsigned char)p[i]);
    e->len = (uint8_t)n;
    return 0;
}

static void load_codes(loader_t *l)
{
    cg_csv_t *c = &l->csv;
    cg_catalogue_t *cat = l->cat;
    cg_csv_field_t f[CG_CSV_MAX_FIELDS];
    size_t nf;
    int line;
    int colmap[CG_CSV_MAX_FIELDS];
    if (!cg_csv_first(c, f, &nf, &line, "set,level,match,value,why"))
        return;
    if (!cg_csv_header(c, f, nf, set_cols, S__COUNT, 0xFu, "expected set, level, match, value, why",
                       line, colmap))
        return;
    size_t ncols = nf;
    char sb[CG_CSV_SHOW_MAX + 4];
    while (cg_csv_next_row(c, f, &nf, ncols, &line)) {
        cg_csv_field_t *col[S__COUNT] = {0};
        for (size_t i = 0; i < nf; i++)
            col[colmap[i]] = &f[i];
        cg_csv_field_t *fs = col[S_SET], *fl = col[S_LEVEL], *fm = col[S_MATCH], *fv = col[S_VALUE];
        int level = parse_level(fl);
        if (!fs->len || cg_csv_edge_space(fs)) {
            cg_csv_err(c, CG_ERR_CONFIG, fs->line, fs->col, "set must be a name");
            continue;
        }
        if (!level) {
            cg_csv_err(c, CG_ERR_CONFIG, fl->line, fl->col, "level must be 1 to 5: '%s'",
                       cg_csv_show(fl->p, fl->len, sb));
            continue;
        }
        int kind = word_of(fm, match_names, 4);
        if (kind < 0) {
            cg_csv_err(c, CG_ERR_CONFIG, fm->line, fm->col,
                       "unknown match '%s' (concept, code, prefix, range)",
                       cg_csv_show(fm->p, fm->len, sb));
            continue;
        }
        if (!fv->len || fv->len > CAT_CODE_MAX || cg_csv_edge_space(fv)) {
            cg_csv_err(c, CG_ERR_CONFIG, fv->line, fv->col,
                       "value must be 1 to %d characters without surrounding spaces: '%s'",
                       CAT_CODE_MAX, cg_csv_show(fv->p, fv->len, sb));
            continue;
        }
        if (kind == CAT_CONCEPT) {
            char num[16];
            char *end;
            snprintf(num, sizeof(num), "%.*s", (int)(fv->len < 15 ? fv->len : 15), fv->p);
            errno = 0;
            long id = strtol(num, &end, 10);
            if (fv->len > 10 || *end || id <= 0 || id > 2147483647L || errno) {
                cg_csv_err(c, CG_ERR_CONFIG, fv->line, fv->col,
                           "a concept is a concept_id, an integer above 0: '%s'",
                           cg_csv_show(fv->p, fv->len, sb));
                continue;
            }
        }
        if (kind == CAT_RANGE) {
            const char *dash = memchr(fv->p, '-', fv->len);
            size_t lo = dash ? (size_t)(dash - fv->p) : 0;
            if (!dash || !lo || fv->len - lo - 1 != lo) {
                cg_csv_err(c, CG_ERR_CONFIG, fv->line, fv->col,
                           "a range is LO-HI, both of the same length: '%s'",
                           cg_csv_show(fv->p, fv->len, sb));
                continue;
            }
        }
        const char *set = intern_set(cat, fs);
        if (!set || add_code(cat, kind, set, level, fv->p, fv->len)) {
            cg_csv_err(c, CG_ERR_NOMEM, line, 1, "out of memory");
            return;
        }
    }
}

static int cmp_code(const void *a, const void *b)
{
    const cat_code_t *x = a, *y = b;
    if (x->kind != y->kind)
        return x->kind - y->kind;
    if (x->kind == CAT_CONCEPT)
    return x->concept < y->concept ? -1 : x->concept > y->concept;
    size_t n = x->len < y->len ? x->len : y->len;
    int r = memcmp(x->text, y->text, n);
    return r ? r : (int)x->len - (int)y->len;
}

/* Sorts the codes by kind, then value, so that a row's values are found by binary search. */
static void index_codes(cg_catalogue_t *cat)
{
    for (size_t i = 0; i < cat->n_codes; i++)
        if (cat->codes[i].kind == CAT_CONCEPT)
    cat->codes[i].concept = (int32_t)strtol(cat->codes[i].text, NULL, 10);
    if (cat->n_codes)
        qsort(cat->codes, cat->n_codes, sizeof(*cat->codes), cmp_code);
    for (int k = 0; k < CAT__KINDS; k++) {
        cat->kind_at[k] = cat->n_codes;
        cat->kind_n[k] = 0;
    }
    memset(cat->first_char, 0, sizeof(cat->first_char));
    for (size_t i = cat->n_codes; i-- > 0;) {
        const cat_code_t *e = &cat->codes[i];
        if (e->kind != CAT_CONCEPT && e->len) { /* a range: its low to its high first character */
            unsigned lo = (unsigned char)e->text[0];
            unsigned hi = e->kind == CAT_RANGE ? (unsigned char)e->text[e->len / 2 + 1] : lo;
            for (unsigned c = lo; c <= hi; c++)
                cat->first_char[c / 8] |= (uint8_t)(1u << (c % 8));
        }
        cat->kind_at[cat->codes[i].kind] = i;
        cat->kind_n[cat->codes[i].kind]++;
        if (cat->codes[i].kind == CAT_PREFIX && cat->codes[i].len > cat->max_prefix)
            cat->max_prefix = cat->codes[i].len;
    }
}

/* The columns a row's codes are read from: every 32-bit *_concept_id, and the fact's own source
 * code, X_source_value where X_concept_id is the table's first concept column (condition_
 * source_value; not value_source_value, whose numbers would fall in ICD-9 ranges). */
static void index_columns(cg_catalogue_t *cat)
{
    for (size_t i = 0; i < cat->n_tables; i++) {
        cat_table_t *ct = &cat->tables[i];
        const cg_target_table_t *t = ct->table;
        for (size_t k = 0; k < t->n_columns; k++) {
            const cg_target_column_t *col = &t->columns[k];
            if (!ends_with(col->name, "_concept_id") || col->type != CG_COL_INT32)
                continue;
            if (!ct->n_concept) {
                char name[128];
                snprintf(name, sizeof(name), "%.*s_source_value",
                         (int)(strlen(col->name) - strlen("_concept_id")), col->name);
                const cg_target_column_t *src = cg_target_column(t, name);
                if (src && !(ct->cols[src->index].flags & CG_CLASS_PSEUDONYM))
                    ct->source_cols[ct->n_source++] = (uint16_t)src->index;
            }
            ct->concept_cols[ct->n_concept++] = (uint16_t)k;
        }
    }
}

static int is_dir(const char *p)
{
    struct stat st;
    return !stat(p, &st) && S_ISDIR(st.st_mode);
}

/* Reads one file of a layer (hashed into the version before parsing unescapes it). */
static void load_file(loader_t *l, const char *path, int layer, int codes)
{
    if (cg_csv_open(&l->csv, path, CAT_MAX_BYTES, "a catalogue is not a data file") != CG_OK)
        return;
    const char *base = strrchr(path, '/'); /* the file's name, not where the layer sits */
    EVP_DigestUpdate(l->md, base ? base + 1 : path, strlen(base ? base + 1 : path));
    EVP_DigestUpdate(l->md, l->csv.buf, l->csv.len);
    if (codes)
        load_codes(l);
    else
        load_columns(l, layer);
    cg_csv_close(&l->csv);
}

cg_catalogue_t *cg_catalogue_load(const char *const *layers, size_t n_layers, cg_error_t *errs,
                                  size_t max_errs, size_t *n_errs)
{
    size_t total = 0;
    cg_catalogue_t *cat = calloc(1, sizeof(*cat));
    loader_t l = {.cat = cat};
    cg_csv_init(&l.csv, errs, max_errs);
    l.md = EVP_MD_CTX_new();
    if (!cat || !l.md || !EVP_DigestInit_ex(l.md, EVP_sha256(), NULL) || cat_init_tables(cat)) {
        if (errs && max_errs)
            cg_error_set(&errs[0], CG_ERR_NOMEM, "catalogue", 0, 0, "out of memory");
        total = 1;
        goto out;
    }
    if (!n_layers) {
        if (errs && max_errs)
            cg_error_set(&errs[0], CG_ERR_CONFIG, "catalogue", 0, 0,
                         "no catalogue layer: the shipped specs/classification is the base");
        total = 1;
        goto out;
    }
    char path[4096];
    for (size_t i = 0; i < n_layers; i++) {
        if (!is_dir(layers[i])) {
            l.csv.path = layers[i];
            cg_csv_err(&l.csv, CG_ERR_CONFIG, 0, 0,
                       "not a folder: a catalogue layer is a folder with columns.csv and, "
                       "optionally, sensitive-codes.csv");
            continue;
        }
        snprintf(path, sizeof(path), "%s/columns.csv", layers[i]);
        struct stat st;
        if (i == 0 || !stat(path, &st)) { /* the base must classify; a site may only add codes */
            if (i == 0)
                l.base_columns = layers[i];
            load_file(&l, path, (int)i, 0);
        }
        snprintf(path, sizeof(path), "%s/sensitive-codes.csv", layers[i]);
        if (!stat(path, &st))
            load_file(&l, path, (int)i, 1);
    }
    /* coverage: a column without a level cannot be released by any rule */
    if (!l.csv.n_errs && l.base_columns) {
        char list[600];
        size_t o = 0, missing = 0;
        list[0] = '\0';
        for (size_t i = 0; i < cat->n_tables; i++)
            for (size_t k = 0; k < cat->tables[i].table->n_columns; k++)
                if (!cat->tables[i].cols[k].level) {
                    if (o < sizeof(list) - 80)
                        o += (size_t)snprintf(list + o, sizeof(list) - o, "%s%s.%s",
                                              missing ? ", " : "", cat->tables[i].table->name,
                                              cat->tables[i].table->columns[k].name);
                    missing++;
                }
        if (missing) {
            snprintf(path, sizeof(path), "%s/columns.csv", l.base_columns);
            l.csv.path = path;
            cg_csv_err(&l.csv, CG_ERR_CONFIG, 0, 0,
                       "%zu column(s) of the targets have no level: %s%s", missing, list,
                       o >= sizeof(list) - 80 ? ", ..." : "");
        }
    }
    total = l.csv.n_errs;
    if (!total) {
        unsigned char md[32];
        unsigned mdlen = 0;
        EVP_DigestFinal_ex(l.md, md, &mdlen);
        for (int i = 0; i < 6; i++)
            snprintf(cat->version + 2 * i, 3, "%02x", md[i]);
        index_codes(cat);
        index_columns(cat);
    }
out:
    EVP_MD_CTX_free(l.md);
    if (n_errs)
        *n_errs = total;
    if (total) {
        cg_catalogue_destroy(cat);
        return NULL;
    }
    return cat;
}

void cg_catalogue_destroy(cg_catalogue_t *cat)
{
    if (!cat)
        return;
    for (size_t i = 0; i < cat->n_tables; i++) {
        free(cat->tables[i].cols);
        free(cat->tables[i].lines);
        free(cat->tables[i].concept_cols);
        free(cat->tables[i].source_cols);
    }
    free(cat->tables);
    for (size_t i = 0; i < cat->n_sets; i++)
        free(cat->sets[i]);
    free(cat->sets);
    free(cat->codes);
    free(cat);
}

const char *cg_catalogue_version(const cg_catalogue_t *cat)
{
    return cat->version;
}

const cat_table_t *cg_release__table(const cg_catalogue_t *cat, const cg_target_table_t *t)
{
    return cat_table(cat, t);
}

cg_class_column_t cg_catalogue_column(const cg_catalogue_t *cat, const cg_target_column_t *col)
{
    const cat_table_t *ct = cat_table(cat, col->table);
    cg_class_column_t none = {0};
    return ct ? ct->cols[col->index] : none;
}

/* The entry of kind k equal to key (text of n bytes, upper-case), or NULL. */
static const cat_code_t *find_text(const cg_catalogue_t *cat, int k, const char *key, size_t n)
{
    size_t lo = cat->kind_at[k], hi = lo + cat->kind_n[k];
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const cat_code_t *e = &cat->codes[mid];
        size_t m = e->len < n ? e->len : n;
        int r = memcmp(e->text, key, m);
        if (!r)
            r = (int)e->len - (int)n;
        if (!r)
            return e;
        if (r < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

static const cat_code_t *find_concept(const cg_catalogue_t *cat, int32_t id)
{
    size_t lo = cat->kind_at[CAT_CONCEPT], hi = lo + cat->kind_n[CAT_CONCEPT];
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int32_t v = cat->codes[mid].concept;
        if (v == id)
            return &cat->codes[mid];
        if (v < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* Whether code (upper-case, n bytes) falls in a LO-HI range (see specs/classification). */
static int in_range(const cat_code_t *e, const char *code, size_t n)
{
    size_t w = e->len / 2; /* "LO-HI": each w characters */
    if (n < w)
        return 0;
    if (isdigit((unsigned char)e->text[0]) && n > w && code[w] != '.')
        return 0; /* a numeric range (ICD-9) never matches a longer code such as SNOMED's */
    return memcmp(code, e->text, w) >= 0 && memcmp(code, e->text + w + 1, w) <= 0;
}

static void consider(const cat_code_t *e, int *level, const char **set)
{
    if (e && e->level > *level) {
        *level = e->level;
        *set = e->set;
    }
}

int cg_catalogue_row_level(const cg_catalogue_t *cat, const cg_row_t *row, const char **set)
{
    const char *found = NULL;
    int level = 0;
    const cat_table_t *ct = cat_table(cat, row->table);
    if (!ct || !cat->n_codes)
        goto out;
    if (cat->kind_n[CAT_CONCEPT])
        for (size_t i = 0; i < ct->n_concept; i++) {
            const cg_value_t *v = &row->values[ct->concept_cols[i]];
            if (v->kind != CG_VALUE_INTEGER || v->len > 10)
                continue;
            long id = 0;
            for (uint32_t k = 0; k < v->len; k++)
                id = id * 10 + (v->ptr[k] - '0');
            if (id > 0 && id <= 2147483647L)
                consider(find_concept(cat, (int32_t)id), &level, &found);
        }
    for (size_t i = 0; i < ct->n_source; i++) {
        const cg_value_t *v = &row->values[ct->source_cols[i]];
        if (v->kind != CG_VALUE_STRING || !v->len || v->len > CAT_CODE_MAX)
            continue;
        char up[CAT_CODE_MAX];
        size_t n = v->len;
        unsigned c0 = (unsigned char)toupper((unsigned char)v->ptr[0]);
        if (!(cat->first_char[c0 / 8] & (1u << (c0 % 8))))
            continue; /* no code, prefix or range begins so (most codes of most rows) */
        for (size_t k = 0; k < n; k++)
            up[k] = (char)toupper((unsigned char)v->ptr[k]);
        consider(find_text(cat, CAT_CODE, up, n), &level, &found);
        for (size_t p = 1; p <= n && p <= cat->max_prefix; p++)
            consider(find_text(cat, CAT_PREFIX, up, p), &level, &found);
        for (size_t r = 0; r < cat->kind_n[CAT_RANGE]; r++) {
            const cat_code_t *e = &cat->codes[cat->kind_at[CAT_RANGE] + r];
            if (in_range(e, up, n))
                consider(e, &level, &found);
        }
    }
out:
    if (set)
        *set = found;
    return level;
}
