/* vocab_csv.c - the project CSV tables loader: specs/vocab/NAME.csv, RFC 4180, every bad line
 * reported (see cg_vocab.h).
 */
#include "vocab_impl.h"

#include "cg_csv.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CSV_MAX_BYTES  (256u << 20)
#define OMOP_VOCAB_LEN 20 /* concept.vocabulary_id varchar(20) */
#define OMOP_CODE_LEN  50 /* concept.concept_code varchar(50) */

enum { COL_VOCAB, COL_CODE, COL_ID, COL_DOMAIN, COL_NAME, COL_STD, COL_STD_NAME, COL__COUNT };
static const char *const csv_cols[COL__COUNT] = {
    "vocabulary_id", "concept_code",        "concept_id",           "domain_id",
    "concept_name",  "standard_concept_id", "standard_concept_name"};
#define CSV_REQUIRED ((1u << COL_VOCAB) | (1u << COL_CODE) | (1u << COL_ID) | (1u << COL_DOMAIN))

/* ---- OMOP SOURCE_TO_CONCEPT_MAP ---- */

enum {
    ST_CODE,
    ST_SRC_ID,
    ST_SRC_VOCAB,
    ST_DESC,
    ST_TARGET,
    ST_TARGET_VOCAB,
    ST_START,
    ST_END,
    ST_INVALID,
    ST__COUNT
};
static const char *const stcm_cols[ST__COUNT] = {
    "source_code",       "source_concept_id",    "source_vocabulary_id", "source_code_description",
    "target_concept_id", "target_vocabulary_id", "valid_start_date",     "valid_end_date",
    "invalid_reason"};
#define STCM_REQUIRED ((1u << ST_CODE) | (1u << ST_SRC_VOCAB) | (1u << ST_TARGET))

/* YYYY-MM-DD or YYYYMMDD as the number YYYYMMDD; -1 when neither. */
static long parse_day(const char *p, size_t n)
{
    char d[8];
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (n == 10 && (i == 4 || i == 7)) {
            if (p[i] != '-')
                return -1;
            continue;
        }
        if (p[i] < '0' || p[i] > '9' || k == 8)
            return -1;
        d[k++] = p[i];
    }
    if (k != 8 || (n != 8 && n != 10))
        return -1;
    long x = 0;
    for (size_t i = 0; i < 8; i++)
        x = x * 10 + (d[i] - '0');
    long mo = x / 100 % 100, dd = x % 100;
    return mo >= 1 && mo <= 12 && dd >= 1 && dd <= 31 ? x : -1;
}

static long today_day(void)
{
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    return (long)(tm.tm_year + 1900) * 10000 + (tm.tm_mon + 1) * 100 + tm.tm_mday;
}

/* The rows of a source-to-concept map whose header is f (nf fields). Every bad row is reported
 * with its line and column, as for the project tables. */
static void load_stcm(cg_vocab_t *v, cg_csv_t *c, cg_csv_field_t *f, size_t nf, int header_line)
{
    int colmap[CG_CSV_MAX_FIELDS];
    char sb[CG_VOCAB_SHOW_MAX + 4], sb2[CG_VOCAB_SHOW_MAX + 4];
    int header_ok = cg_csv_header(c, f, nf, stcm_cols, ST__COUNT, STCM_REQUIRED,
                                  "in a SOURCE_TO_CONCEPT_MAP file, expected source_code, "
                                  "source_concept_id, source_vocabulary_id, "
                                  "source_code_description, target_concept_id, "
                                  "target_vocabulary_id, valid_start_date, valid_end_date, "
                                  "invalid_reason",
                                  header_line, colmap);
    if (!header_ok)
        return;
    size_t ncols = nf;
    long today = today_day();
    int rec_line;
    while (cg_csv_next_row(c, f, &nf, ncols, &rec_line)) {
        cg_csv_field_t *col[ST__COUNT] = {0};
        for (size_t i = 0; i < nf; i++)
            col[colmap[i]] = &f[i];
        cg_csv_field_t *fc = col[ST_CODE], *fv = col[ST_SRC_VOCAB], *ft = col[ST_TARGET],
                       *fs = col[ST_SRC_ID], *fst = col[ST_START], *fen = col[ST_END],
                       *finv = col[ST_INVALID];
        if (!fv->len || fv->len > OMOP_VOCAB_LEN || cg_csv_edge_space(fv)) {
            cg_csv_err(c, CG_ERR_CONFIG, fv->line, fv->col,
                       "source_vocabulary_id must be 1-%d characters without surrounding spaces: "
                       "'%s'",
                       OMOP_VOCAB_LEN, cg_vocab__show(fv->p, fv->len, sb));
            continue;
        }
        if (!fc->len || fc->len > OMOP_CODE_LEN || cg_csv_edge_space(fc)) {
            cg_csv_err(c, CG_ERR_CONFIG, fc->line, fc->col,
                       "source_code must be 1-%d characters without surrounding spaces: '%s'",
                       OMOP_CODE_LEN, cg_vocab__show(fc->p, fc->len, sb));
            continue;
        }
        int32_t target = 0, src = 0;
        if (cg_vocab__parse_id(ft->p, ft->len, &target) != 0) {
            cg_csv_err(c, CG_ERR_CONFIG, ft->line, ft->col,
                       "target_concept_id is not an integer in 0..2147483647 (0: reviewed, no "
                       "mapping): '%s'",
                       cg_vocab__show(ft->p, ft->len, sb));
            continue;
        }
        if (fs && fs->len && cg_vocab__parse_id(fs->p, fs->len, &src) != 0) {
            cg_csv_err(c, CG_ERR_CONFIG, fs->line, fs->col,
                       "source_concept_id is not an integer in 0..2147483647: '%s'",
                       cg_vocab__show(fs->p, fs->len, sb));
            continue;
        }
        long start = 0, end = 99991231;
        if (fst && fst->len && (start = parse_day(fst->p, fst->len)) < 0) {
            cg_csv_err(c, CG_ERR_CONFIG, fst->line, fst->col,
                       "valid_start_date is not a date (YYYY-MM-DD or YYYYMMDD): '%s'",
                       cg_vocab__show(fst->p, fst->len, sb));
            continue;
        }
        if (fen && fen->len && (end = parse_day(fen->p, fen->len)) < 0) {
            cg_csv_err(c, CG_ERR_CONFIG, fen->line, fen->col,
                       "valid_end_date is not a date (YYYY-MM-DD or YYYYMMDD): '%s'",
                       cg_vocab__show(fen->p, fen->len, sb));
            continue;
        }
        if (end < start) {
            cg_csv_err(c, CG_ERR_CONFIG, fen->line, fen->col,
                       "valid_end_date is before valid_start_date");
            continue;
        }
        if (finv && finv->len && !(finv->len == 1 && (finv->p[0] == 'D' || finv->p[0] == 'U'))) {
            cg_csv_err(c, CG_ERR_CONFIG, finv->line, finv->col,
                       "invalid_reason is empty, D (deleted) or U (updated): '%s'",
                       cg_vocab__show(finv->p, finv->len, sb));
            continue;
        }
        /* a retired mapping (or one not yet in force) is not loaded: the code then keeps what
         * an earlier layer says, or is unmapped */
        if ((finv && finv->len) || today < start || today > end) {
            v->last.not_valid++;
            continue;
        }
        int vi = cg_vocab__intern_vocab(v, (cg_slice_t){fv->p, fv->len});
        int created = 0;
        ventry_t *e = vi < 0 ? NULL : cg_vocab__upsert(v, vi, fc->p, fc->len, &created);
        if (!e) {
            cg_csv_err(c, CG_ERR_NOMEM, rec_line, 1, "out of memory");
            break;
        }
        if (!created && e->gen == v->gen) {
            if (!(e->flags & CG_VOCAB__STCM)) {
                cg_csv_err(c, CG_ERR_CONFIG, fc->line, fc->col,
                           "duplicate code '%s' in vocabulary '%s' (already defined in this load)",
                           cg_vocab__show(fc->p, fc->len, sb), cg_vocab__show(fv->p, fv->len, sb2));
                continue;
            }
            /* one-to-many: the lowest target, as for Athena's several "Maps to" */
            if (target != e->standard_id) {
                e->flags |= CG_VOCAB_MULTI_MAP;
                if (target && (target < e->standard_id || !e->standard_id))
                    e->standard_id = target;
            }
            continue;
        }
        cg_vocab__note_set(v, e, created, target);
        if (!target)
            v->last.unmapped++;
        e->concept_id = src;
        e->standard_id = target;
        e->domain = 0; /* STCM has none; cg_vocab_resolve_domains() takes the target's */
        e->flags = CG_VOCAB__STCM;
        e->gen = v->gen;
    }
}

static cg_err_t load_csv_file(cg_vocab_t *v, const char *path, cg_csv_t *c)
{
    cg_err_t rc = cg_csv_open(c, path, CSV_MAX_BYTES, "load big vocabularies in Athena format");
    if (rc != CG_OK)
        return rc;
    cg_csv_field_t f[CG_CSV_MAX_FIELDS];
    size_t nf;
    int rec_line;
    char expected[160];
    snprintf(expected, sizeof(expected), "%s,%s,%s,%s", csv_cols[0], csv_cols[1], csv_cols[2],
             csv_cols[3]);
    if (!cg_csv_first(c, f, &nf, &rec_line, expected)) {
        cg_csv_close(c);
        return CG_ERR_CONFIG;
    }
    for (size_t i = 0; i < nf; i++)
        if (f[i].len == 11 && !memcmp(f[i].p, "source_code", 11)) {
            load_stcm(v, c, f, nf, rec_line);
            cg_csv_close(c);
            return c->first;
        }
    int colmap[CG_CSV_MAX_FIELDS];
    int header_ok = cg_csv_header(c, f, nf, csv_cols, COL__COUNT, CSV_REQUIRED,
                                  "expected vocabulary_id, concept_code, concept_id, domain_id, "
                                  "concept_name, standard_concept_id, standard_concept_name; or a "
                                  "SOURCE_TO_CONCEPT_MAP file, whose header has source_code",
                                  rec_line, colmap);
    if (!header_ok) {
        cg_csv_close(c);
        return CG_ERR_CONFIG;
    }
    size_t ncols = nf;

    while (cg_csv_next_row(c, f, &nf, ncols, &rec_line)) {
        cg_csv_field_t *col[COL__COUNT] = {0};
        for (size_t i = 0; i < nf; i++)
            col[colmap[i]] = &f[i];
        char sb[CG_VOCAB_SHOW_MAX + 4];
        cg_csv_field_t *fv = col[COL_VOCAB], *fc = col[COL_CODE], *fi = col[COL_ID],
                       *fdm = col[COL_DOMAIN], *fs = col[COL_STD];
        if (!fv->len || fv->len > OMOP_VOCAB_LEN || cg_csv_edge_space(fv)) {
            cg_csv_err(c, CG_ERR_CONFIG, fv->line, fv->col,
                       "vocabulary_id must be 1-%d characters without surrounding spaces: '%s'",
                       OMOP_VOCAB_LEN, cg_vocab__show(fv->p, fv->len, sb));
            continue;
        }
        if (!fc->len || fc->len > OMOP_CODE_LEN || cg_csv_edge_space(fc)) {
            cg_csv_err(c, CG_ERR_CONFIG, fc->line, fc->col,
                       "concept_code must be 1-%d characters without surrounding spaces: '%s'",
                       OMOP_CODE_LEN, cg_vocab__show(fc->p, fc->len, sb));
            continue;
        }
        int32_t id = 0, std = 0;
        if (cg_vocab__parse_id(fi->p, fi->len, &id) != 0) {
            cg_csv_err(c, CG_ERR_CONFIG, fi->line, fi->col,
                       "concept_id is not an integer in 0..2147483647: '%s'",
                       cg_vocab__show(fi->p, fi->len, sb));
            continue;
        }
        cg_slice_t dom_s = {fdm->p, fdm->len};
        if (cg_vocab_domain_parse(dom_s) == CG_VOCAB_DOMAIN_OTHER) {
            cg_csv_err(
                c, CG_ERR_CONFIG, fdm->line, fdm->col,
                "unknown domain_id '%s' (OMOP spelling: Condition, Measurement, "
                "Observation, Drug, Procedure, Device, Visit, Gender, Race, Ethnicity, Unit, "
                "Type Concept, Meas Value, Meas Value Operator, Route, Spec Anatomic Site, "
                "Metadata)",
                cg_vocab__show(fdm->p, fdm->len, sb));
            continue;
        }
        if (fs && fs->len) {
            if (cg_vocab__parse_id(fs->p, fs->len, &std) != 0) {
                cg_csv_err(c, CG_ERR_CONFIG, fs->line, fs->col,
                           "standard_concept_id is not an integer in 0..2147483647: '%s'",
                           cg_vocab__show(fs->p, fs->len, sb));
                continue;
            }
        } else {
            std = id; /* no column or empty: the concept is its own standard */
        }
        if (id == 0 && std == 0) {
            cg_csv_err(c, CG_ERR_CONFIG, fi->line, fi->col,
                       "concept_id and standard_concept_id are both 0: the row maps to nothing");
            continue;
        }
        int vi = cg_vocab__intern_vocab(v, (cg_slice_t){fv->p, fv->len});
        int di = cg_vocab__intern_domain(v, dom_s);
        int created = 0;
        ventry_t *e = vi < 0 || di < 0 ? NULL : cg_vocab__upsert(v, vi, fc->p, fc->len, &created);
        if (!e) {
            cg_csv_err(c, CG_ERR_NOMEM, rec_line, 1, "out of memory");
            break;
        }
        if (!created && e->gen == v->gen) {
            char sb2[CG_VOCAB_SHOW_MAX + 4];
            cg_csv_err(c, CG_ERR_CONFIG, fc->line, fc->col,
                       "duplicate code '%s' in vocabulary '%s' (already defined in this load)",
                       cg_vocab__show(fc->p, fc->len, sb), cg_vocab__show(fv->p, fv->len, sb2));
            continue;
        }
        cg_vocab__note_set(v, e, created, std);
        e->concept_id = id;
        e->standard_id = std;
        e->domain = (uint8_t)di;
        e->flags = 0;
        e->gen = v->gen;
    }
    cg_csv_close(c);
    return c->first;
}

cg_err_t cg_vocab_load_csv(cg_vocab_t *v, const char *path, cg_error_t *errs, size_t errs_cap,
                           size_t *n_errs)
{
    if (n_errs)
        *n_errs = 0;
    if (!v || !path)
        return CG_ERR_INVALID_ARG;
    cg_csv_t c;
    cg_csv_init(&c, errs, errs_cap);
    c.path = path;
    cg_vocab__begin_load(v);
    load_csv_file(v, path, &c);
    if (n_errs)
        *n_errs = c.n_errs;
    return c.first;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

cg_err_t cg_vocab_load_csv_dir(cg_vocab_t *v, const char *dir, cg_error_t *errs, size_t errs_cap,
                               size_t *n_errs)
{
    if (n_errs)
        *n_errs = 0;
    if (!v || !dir)
        return CG_ERR_INVALID_ARG;
    cg_csv_t c;
    cg_csv_init(&c, errs, errs_cap);
    c.path = dir;
    DIR *d = opendir(dir);
    if (!d) {
        cg_csv_err(&c, CG_ERR_IO, 0, 0, "cannot open folder: %s", strerror(errno));
        if (n_errs)
            *n_errs = c.n_errs;
        return CG_ERR_IO;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    cg_err_t rc = CG_OK;
    while ((de = readdir(d)) != NULL) {
        size_t l = strlen(de->d_name);
        if (l < 5 || strcmp(de->d_name + l - 4, ".csv") != 0 || de->d_name[0] == '.')
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            char **nn = realloc(names, cap * sizeof(*nn));
            if (!nn) {
                rc = CG_ERR_NOMEM;
                break;
            }
            names = nn;
        }
        if (!(names[n] = strdup(de->d_name))) {
            rc = CG_ERR_NOMEM;
            break;
        }
        n++;
    }
    closedir(d);
    if (rc == CG_OK && n)
        qsort(names, n, sizeof(*names), cmp_str);
    cg_vocab__begin_load(v);
    for (size_t i = 0; rc == CG_OK && i < n; i++) {
        size_t pl = strlen(dir) + strlen(names[i]) + 2;
        char *path = malloc(pl);
        if (!path) {
            rc = CG_ERR_NOMEM;
            break;
        }
        snprintf(path, pl, "%s/%s", dir, names[i]);
        /* cg_error_t copies the path, so the buffer can go after the file */
        load_csv_file(v, path, &c);
        free(path);
    }
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    if (rc != CG_OK)
        cg_csv_err(&c, rc, 0, 0, "out of memory");
    if (n_errs)
        *n_errs = c.n_errs;
    return c.first;
}
