/* cg_csv.h - an RFC 4180 reader for the project's own tables (vocabularies, the classification
 * catalogue): every bad line reported with file:line:column, fields unescaped in place.
 *
 * A file is read whole (cg_csv_open) and walked record by record; a header maps column names to
 * the caller's columns (cg_csv_header), so a table's columns may come in any order. Errors go
 * into the caller's cg_error_t array and counting goes on past its end, so a loader reports
 * every bad row of a file at once rather than the first.
 */
#ifndef CG_CSV_H
#define CG_CSV_H

#include <stddef.h>

#include "cg_err.h"

#define CG_CSV_MAX_FIELDS 16
#define CG_CSV_SHOW_MAX   60 /* bytes of offending text quoted in an error */

typedef struct cg_csv_field {
    char *p; /* unescaped in place; not NUL-terminated */
    size_t len;
    int line, col;
} cg_csv_field_t;

typedef struct cg_csv {
    const char *path; /* for errors */
    cg_error_t *errs;
    size_t errs_cap;
    size_t n_errs; /* every error, also those past errs_cap */
    cg_err_t first;
    char *buf;
    size_t len, pos;
    char sep;          /* ',' or '\t': a tab in the header line makes a tab-separated file */
    int line;          /* current line, 1-based */
    size_t line_start; /* offset of the current line */
} cg_csv_t;

/* A reader reporting into errs (errs_cap of them; may be NULL). */
void cg_csv_init(cg_csv_t *c, cg_error_t *errs, size_t errs_cap);
/* Reports an error at line:col of c->path (line 0: the file as a whole). */
void cg_csv_err(cg_csv_t *c, cg_err_t code, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* Reads path whole (at most max_bytes; too_big says what to do instead, for the error), skips a
 * UTF-8 BOM and picks the separator from the header line. Reported and returned on failure. */
cg_err_t cg_csv_open(cg_csv_t *c, const char *path, size_t max_bytes, const char *too_big);
/* Frees the file's text (fields point into it). */
void cg_csv_close(cg_csv_t *c);
/* One record: 1 with its fields, 0 at the end, -1 after reporting a syntax error (the rest of
 * that line skipped), -2 when the file cannot be read on. */
int cg_csv_record(cg_csv_t *c, cg_csv_field_t *f, size_t *nf, int *rec_line);
/* The first non-blank record (the header): 1, or 0 after reporting an empty file (expected
 * names the header's columns) or a syntax error. */
int cg_csv_first(cg_csv_t *c, cg_csv_field_t *f, size_t *nf, int *rec_line, const char *expected);
/* The next data record with ncols fields: ones that do not parse, blank ones and ones of another
 * width (reported) are passed over. 0 at the end. */
int cg_csv_next_row(cg_csv_t *c, cg_csv_field_t *f, size_t *nf, size_t ncols, int *line);
/* Maps a header's fields to the known columns cols[0..n) (colmap[i] gets f[i]'s column, or -1):
 * an unknown or repeated column, or a missing required one (bit k of required), is reported at
 * its field; expected lists the columns for that error. 1 when the header is usable. */
int cg_csv_header(cg_csv_t *c, const cg_csv_field_t *f, size_t nf, const char *const *cols, int n,
                  unsigned required, const char *expected, int header_line, int *colmap);
/* A record that is one empty field (a blank line). */
int cg_csv_is_blank(const cg_csv_field_t *f, size_t nf);
/* A field with leading or trailing white space. */
int cg_csv_edge_space(const cg_csv_field_t *f);
/* Whether field f is exactly s. */
int cg_csv_is(const cg_csv_field_t *f, const char *s);
/* Up to CG_CSV_SHOW_MAX bytes of s for an error text, control bytes as '?', "..." when cut. */
const char *cg_csv_show(const char *s, size_t n, char buf[CG_CSV_SHOW_MAX + 4]);

#endif
