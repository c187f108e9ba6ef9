/* vocab_athena.c - the OHDSI Athena loader: CONCEPT.csv and CONCEPT_RELATIONSHIP.csv,
 * tab-separated, no quoting, streamed line by line (see cg_vocab.h).
 */
#include "vocab_impl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* concept_id -> entry index (or -> domain index for pending targets), open addressing. */
typedef struct idmap {
    int32_t *keys; /* -1 = empty */
    uint32_t *vals;
    size_t cap, n;
} idmap_t;

static void idmap_free(idmap_t *m)
{
    free(m->keys);
    free(m->vals);
    memset(m, 0, sizeof(*m));
}

static size_t id_slot(int32_t id, size_t mask)
{
    uint64_t h = (uint64_t)(uint32_t)id * UINT64_C(0x9E3779B97F4A7C15);
    return (size_t)(h >> 32) & mask;
}

static uint32_t *idmap_get(const idmap_t *m, int32_t id)
{
    if (!m->cap)
        return NULL;
    size_t mask = m->cap - 1;
    for (size_t i = id_slot(id, mask);; i = (i + 1) & mask) {
        if (m->keys[i] == id)
            return &m->vals[i];
        if (m->keys[i] == -1)
            return NULL;
    }
}

static int idmap_put(idmap_t *m, int32_t id, uint32_t val)
{
    if ((m->n + 1) * 2 > m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 1024;
        int32_t *nk = malloc(cap * sizeof(*nk));
        uint32_t *nv = malloc(cap * sizeof(*nv));
        if (!nk || !nv) {
            free(nk);
            free(nv);
            return -1;
        }
        memset(nk, 0xFF, cap * sizeof(*nk));
        for (size_t k = 0; k < m->cap; k++) {
            if (m->keys[k] == -1)
                continue;
            size_t i = id_slot(m->keys[k], cap - 1);
            while (nk[i] != -1)
                i = (i + 1) & (cap - 1);
            nk[i] = m->keys[k];
            nv[i] = m->vals[k];
        }
        free(m->keys);
        free(m->vals);
        m->keys = nk;
        m->vals = nv;
        m->cap = cap;
    }
    size_t mask = m->cap - 1, i = id_slot(id, mask);
    while (m->keys[i] != -1 && m->keys[i] != id)
        i = (i + 1) & mask;
    if (m->keys[i] == -1) {
        m->keys[i] = id;
        m->n++;
    }
    m->vals[i] = val;
    return 0;
}

#define TSV_MAX_FIELDS 32

typedef struct tsv {
    FILE *fp;
    char path[4096];
    char *line;
    size_t line_cap;
    size_t len;
    long lineno;
    cg_slice_t f[TSV_MAX_FIELDS];
    size_t nf;
} tsv_t;

static cg_err_t tsv_open(tsv_t *t, const char *dir, const char *name, cg_error_t *err)
{
    memset(t, 0, sizeof(*t));
    snprintf(t->path, sizeof(t->path), "%s/%s", dir, name);
    t->fp = fopen(t->path, "rb");
    if (!t->fp)
        return cg_error_set(err, CG_ERR_IO, t->path, 0, 0, "cannot open: %s", strerror(errno));
    return CG_OK;
}

static void tsv_close(tsv_t *t)
{
    if (t->fp)
        fclose(t->fp);
    free(t->line);
    t->fp = NULL;
    t->line = NULL;
}

/* Next line split at tabs: 1, or 0 at end of file, or -1 on a read error. */
static int tsv_next(tsv_t *t)
{
    ssize_t n = getline(&t->line, &t->line_cap, t->fp);
    if (n < 0)
        return ferror(t->fp) ? -1 : 0;
    t->lineno++;
    size_t len = (size_t)n;
    if (len && t->line[len - 1] == '\n')
        len--;
    if (len && t->line[len - 1] == '\r')
        len--;
    t->len = len;
    t->nf = 0;
    const char *p = t->line, *end = t->line + len;
    for (;;) {
        const char *tab = memchr(p, '\t', (size_t)(end - p));
        const char *fe = tab ? tab : end;
        if (t->nf < TSV_MAX_FIELDS)
            t->f[t->nf] = (cg_slice_t){p, (size_t)(fe - p)};
        t->nf++;
        if (!tab)
            break;
        p = tab + 1;
    }
    return 1;
}

static int tsv_col(const tsv_t *t, size_t i)
{
    size_t col = 1;
    for (size_t k = 0; k < i && k < t->nf && k < TSV_MAX_FIELDS; k++)
        col += t->f[k].len + 1;
    return (int)col;
}

/* Header: the index of each wanted column (case-insensitive; Athena spells them lowercase). */
static cg_err_t tsv_header(tsv_t *t, const char *const *want, size_t n_want, int *idx,
                           cg_error_t *err)
{
    int r = tsv_next(t);
    if (r <= 0)
        return cg_error_set(err, r < 0 ? CG_ERR_IO : CG_ERR_CONFIG, t->path, 1, 1,
                            r < 0 ? "read error" : "empty file: a header row is required");
    if (t->len >= 3 && memcmp(t->line, "\xEF\xBB\xBF", 3) == 0) {
        t->f[0].ptr += 3;
        t->f[0].len -= 3;
    }
    for (size_t k = 0; k < n_want; k++) {
        idx[k] = -1;
        for (size_t i = 0; i < t->nf && i < TSV_MAX_FIELDS; i++)
            if (t->f[i].len == strlen(want[k]) &&
                strncasecmp(t->f[i].ptr, want[k], t->f[i].len) == 0)
                idx[k] = (int)i;
        if (idx[k] < 0) {
            char sb[CG_VOCAB_SHOW_MAX + 4];
            return cg_error_set(err, CG_ERR_CONFIG, t->path, 1, 1,
                                "header lacks the column '%s' (is this a tab-separated Athena "
                                "file?): '%s'",
                                want[k], cg_vocab__show(t->line, t->len, sb));
        }
    }
    return CG_OK;
}

static int want_vocab(cg_slice_t voc, const char *const *list, size_t n)
{
    if (!list || !n)
        return 1;
    for (size_t i = 0; i < n; i++)
        if (list[i] && strlen(list[i]) == voc.len && memcmp(list[i], voc.ptr, voc.len) == 0)
            return 1;
    return 0;
}

enum { AC_ID, AC_DOMAIN, AC_VOCAB, AC_STD, AC_CODE, AC_INVALID, AC__COUNT };
static const char *const athena_concept_cols[AC__COUNT] = {"concept_id",    "domain_id",
                                                           "vocabulary_id", "standard_concept",
                                                           "concept_code",  "invalid_reason"};
enum { AR_ID1, AR_ID2, AR_REL, AR_INVALID, AR__COUNT };
static const char *const athena_rel_cols[AR__COUNT] = {"concept_id_1", "concept_id_2",
                                                       "relationship_id", "invalid_reason"};

static cg_err_t tsv_field_count(tsv_t *t, size_t ncols, cg_error_t *err)
{
    if (t->nf == ncols)
        return CG_OK;
    return cg_error_set(
        err, CG_ERR_CONFIG, t->path, (int)t->lineno, tsv_col(t, t->nf < ncols ? t->nf : ncols),
        "%zu tab-separated fields where the header has %zu (truncated download?)", t->nf, ncols);
}

static cg_err_t bad_id(tsv_t *t, size_t i, cg_error_t *err)
{
    char sb[CG_VOCAB_SHOW_MAX + 4];
    return cg_error_set(err, CG_ERR_CONFIG, t->path, (int)t->lineno, tsv_col(t, i),
                        "not a concept id: '%s'", cg_vocab__show(t->f[i].ptr, t->f[i].len, sb));
}

/* Pass 1: key the codes of the wanted vocabularies; ids maps concept_id -> entry index. */
static cg_err_t athena_concepts(cg_vocab_t *v, const char *dir, const char *const *vocabs,
                                size_t n_vocabs, idmap_t *ids, cg_error_t *err)
{
    tsv_t t;
    int idx[AC__COUNT];
    cg_err_t rc = tsv_open(&t, dir, "CONCEPT.csv", err);
    if (rc == CG_OK)
        rc = tsv_header(&t, athena_concept_cols, AC__COUNT, idx, err);
    size_t ncols = t.nf;
    int r = 0;
    while (rc == CG_OK && (r = tsv_next(&t)) == 1) {
        if (!t.len)
            continue;
        if ((rc = tsv_field_count(&t, ncols, err)) != CG_OK)
            break;
        cg_slice_t voc = t.f[idx[AC_VOCAB]];
        if (!want_vocab(voc, vocabs, n_vocabs))
            continue;
        int32_t id;
        if (cg_vocab__parse_id(t.f[idx[AC_ID]].ptr, t.f[idx[AC_ID]].len, &id) != 0) {
            rc = bad_id(&t, (size_t)idx[AC_ID], err);
            break;
        }
        cg_slice_t code = t.f[idx[AC_CODE]], std = t.f[idx[AC_STD]];
        int invalid = t.f[idx[AC_INVALID]].len != 0;
        int standard = !invalid && std.len == 1 && std.ptr[0] == 'S';
        int vi = cg_vocab__intern_vocab(v, voc);
        int di = cg_vocab__intern_domain(v, t.f[idx[AC_DOMAIN]]);
        int created = 0;
        ventry_t *e =
            vi < 0 || di < 0 ? NULL : cg_vocab__upsert(v, vi, code.ptr, code.len, &created);
        if (!e) {
            rc = cg_error_set(err, CG_ERR_NOMEM, t.path, (int)t.lineno, 1, "out of memory");
            break;
        }
        /* a code listed twice in one release: a valid concept beats a deprecated one */
        if (!created && e->gen == v->gen && (invalid || !(e->flags & CG_VOCAB_INVALID)))
            continue;
        e->concept_id = id;
        e->standard_id = standard ? id : 0;
        e->domain = (uint8_t)di;
        e->flags = invalid ? CG_VOCAB_INVALID : 0;
        e->gen = v->gen;
        if (idmap_put(ids, id, (uint32_t)(e - v->entries)) != 0) {
            rc = cg_error_set(err, CG_ERR_NOMEM, t.path, (int)t.lineno, 1, "out of memory");
            break;
        }
    }
    if (rc == CG_OK && r < 0)
        rc = cg_error_set(err, CG_ERR_IO, t.path, (int)t.lineno, 0, "read error");
    tsv_close(&t);
    return rc;
}

static ventry_t *entry_of(cg_vocab_t *v, const idmap_t *ids, int32_t id)
{
    uint32_t *ix = idmap_get(ids, id);
    if (!ix)
        return NULL;
    ventry_t *e = &v->entries[*ix];
    return e->concept_id == id && e->gen == v->gen ? e : NULL; /* not replaced since */
}

/* Pass 2: valid "Maps to" rows of loaded codes give their standard concept. */
static cg_err_t athena_maps_to(cg_vocab_t *v, const char *dir, const idmap_t *ids, cg_error_t *err)
{
    tsv_t t;
    int idx[AR__COUNT];
    cg_err_t rc = tsv_open(&t, dir, "CONCEPT_RELATIONSHIP.csv", err);
    if (rc == CG_OK)
        rc = tsv_header(&t, athena_rel_cols, AR__COUNT, idx, err);
    size_t ncols = t.nf;
    int r = 0;
    while (rc == CG_OK && (r = tsv_next(&t)) == 1) {
        if (!t.len)
            continue;
        if ((rc = tsv_field_count(&t, ncols, err)) != CG_OK)
            break;
        cg_slice_t rel = t.f[idx[AR_REL]];
        if (rel.len != 7 || memcmp(rel.ptr, "Maps to", 7) != 0 || t.f[idx[AR_INVALID]].len)
            continue;
        int32_t id1, id2;
        if (cg_vocab__parse_id(t.f[idx[AR_ID1]].ptr, t.f[idx[AR_ID1]].len, &id1) != 0) {
            rc = bad_id(&t, (size_t)idx[AR_ID1], err);
            break;
        }
        ventry_t *e = entry_of(v, ids, id1);
        if (!e)
            continue;
        if (cg_vocab__parse_id(t.f[idx[AR_ID2]].ptr, t.f[idx[AR_ID2]].len, &id2) != 0) {
            rc = bad_id(&t, (size_t)idx[AR_ID2], err);
            break;
        }
        if (id2 == id1 || e->standard_id == id1)
            continue; /* a standard concept maps to itself */
        if (e->standard_id == 0) {
            e->standard_id = id2;
        } else if (e->standard_id != id2) {
            e->flags |= CG_VOCAB_MULTI_MAP;
            if (id2 < e->standard_id) /* the same choice whatever the file order */
                e->standard_id = id2;
        }
    }
    if (rc == CG_OK && r < 0)
        rc = cg_error_set(err, CG_ERR_IO, t.path, (int)t.lineno, 0, "read error");
    tsv_close(&t);
    return rc;
}

/* Pass 3 (only when some targets lie outside the loaded vocabularies): their domains. */
static cg_err_t athena_target_domains(cg_vocab_t *v, const char *dir, idmap_t *pending,
                                      cg_error_t *err)
{
    tsv_t t;
    int idx[AC__COUNT];
    cg_err_t rc = tsv_open(&t, dir, "CONCEPT.csv", err);
    if (rc == CG_OK)
        rc = tsv_header(&t, athena_concept_cols, AC__COUNT, idx, err);
    size_t ncols = t.nf;
    int r = 0;
    while (rc == CG_OK && (r = tsv_next(&t)) == 1) {
        if (!t.len || t.nf != ncols)
            continue; /* pass 1 already checked the file */
        int32_t id;
        if (cg_vocab__parse_id(t.f[idx[AC_ID]].ptr, t.f[idx[AC_ID]].len, &id) != 0)
            continue;
        uint32_t *dom = idmap_get(pending, id);
        if (!dom)
            continue;
        int di = cg_vocab__intern_domain(v, t.f[idx[AC_DOMAIN]]);
        if (di < 0) {
            rc = cg_error_set(err, CG_ERR_NOMEM, t.path, (int)t.lineno, 1, "out of memory");
            break;
        }
        *dom = (uint32_t)di;
    }
    if (rc == CG_OK && r < 0)
        rc = cg_error_set(err, CG_ERR_IO, t.path, (int)t.lineno, 0, "read error");
    tsv_close(&t);
    return rc;
}

cg_err_t cg_vocab_load_athena(cg_vocab_t *v, const char *dir, const char *const *vocabularies,
                              size_t n, cg_error_t *err)
{
    if (!v || !dir)
        return cg_error_set(err, CG_ERR_INVALID_ARG, "", 0, 0, "no vocabulary or folder");
    cg_vocab__begin_load(v);
    idmap_t ids = {0}, pending = {0};
    cg_err_t rc = athena_concepts(v, dir, vocabularies, n, &ids, err);
    if (rc == CG_OK)
        rc = athena_maps_to(v, dir, &ids, err);
    /* the domain of a mapped code is its standard concept's */
    size_t n_pending = 0;
    for (size_t k = 0; rc == CG_OK && k < v->n_entries; k++) {
        ventry_t *e = &v->entries[k];
        if (e->gen != v->gen || !e->standard_id || e->standard_id == e->concept_id)
            continue;
        ventry_t *s = entry_of(v, &ids, e->standard_id);
        if (s) {
            e->domain = s->domain;
        } else if (!idmap_get(&pending, e->standard_id)) {
            if (idmap_put(&pending, e->standard_id, UINT32_MAX) != 0)
                rc = cg_error_set(err, CG_ERR_NOMEM, dir, 0, 0, "out of memory");
            n_pending++;
        }
    }
    if (rc == CG_OK && n_pending) {
        rc = athena_target_domains(v, dir, &pending, err);
        for (size_t k = 0; rc == CG_OK && k < v->n_entries; k++) {
            ventry_t *e = &v->entries[k];
            if (e->gen != v->gen || !e->standard_id || e->standard_id == e->concept_id)
                continue;
            uint32_t *dom = idmap_get(&pending, e->standard_id);
            if (dom && *dom != UINT32_MAX)
                e->domain = (uint8_t)*dom; /* else the target is missing: keep its own */
        }
    }
    idmap_free(&ids);
    idmap_free(&pending);
    return rc;
}
