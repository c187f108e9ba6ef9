/* csv.c - the project tables' CSV reader (see cg_csv.h). */
#include "cg_csv.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void cg_csv_init(cg_csv_t *c, cg_error_t *errs, size_t errs_cap)
{
    memset(c, 0, sizeof(*c));
    c->errs = errs;
    c->errs_cap = errs ? errs_cap : 0;
}

void cg_csv_err(cg_csv_t *c, cg_err_t code, int line, int col, const char *fmt, ...)
{
    if (c->first == CG_OK)
        c->first = code;
    if (c->n_errs < c->errs_cap) {
        char text[sizeof(c->errs[0].text)];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(text, sizeof(text), fmt, ap);
        va_end(ap);
        cg_error_set(&c->errs[c->n_errs], code, c->path, line, col, "%s", text);
    }
    c->n_errs++;
}

const char *cg_csv_show(const char *s, size_t n, char buf[CG_CSV_SHOW_MAX + 4])
{
    size_t m = n > CG_CSV_SHOW_MAX ? CG_CSV_SHOW_MAX : n;
    for (size_t i = 0; i < m; i++)
        buf[i] = (unsigned char)s[i] < 0x20 ? '?' : s[i];
    if (m < n)
        memcpy(buf + m, "...", 4);
    else
        buf[m] = '\0';
    return buf;
}

int cg_csv_is(const cg_csv_field_t *f, const char *s)
{
    size_t n = strlen(s);
    return f->len == n && !memcmp(f->p, s, n);
}

cg_err_t cg_csv_open(cg_csv_t *c, const char *path, size_t max_bytes, const char *too_big)
{
    c->path = path;
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        cg_csv_err(c, CG_ERR_IO, 0, 0, "cannot open: %s", strerror(errno));
        return CG_ERR_IO;
    }
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len == cap) {
            if (cap >= max_bytes) {
                free(buf);
                fclose(fp);
                cg_csv_err(c, CG_ERR_CONFIG, 0, 0, "larger than %zu MiB: %s", max_bytes >> 20,
                           too_big);
                return CG_ERR_CONFIG;
            }
            cap = cap ? cap * 2 : 65536;
            char *nb = realloc(buf, cap);
            if (!nb) {
                free(buf);
                fclose(fp);
                cg_csv_err(c, CG_ERR_NOMEM, 0, 0, "out of memory");
                return CG_ERR_NOMEM;
            }
            buf = nb;
        }
        size_t r = fread(buf + len, 1, cap - len, fp);
        len += r;
        if (r == 0)
            break;
    }
    int rd_err = ferror(fp);
    fclose(fp);
    if (rd_err) {
        free(buf);
        cg_csv_err(c, CG_ERR_IO, 0, 0, "read error");
        return CG_ERR_IO;
    }
    c->buf = buf;
    c->len = len;
    c->pos = 0;
    c->line = 1;
    c->line_start = 0;
    if (len >= 3 && memcmp(buf, "\xEF\xBB\xBF", 3) == 0)
        c->pos = c->line_start = 3; /* UTF-8 BOM (column counts start after it) */
    /* the header line says the separator: a tab in it makes a tab-separated file (as Athena
     * and some Usagi exports write source-to-concept maps) */
    const char *nl = memchr(buf + c->pos, '\n', len - c->pos);
    c->sep = memchr(buf + c->pos, '\t', (nl ? (size_t)(nl - buf) : len) - c->pos) ? '\t' : ',';
    return CG_OK;
}

void cg_csv_close(cg_csv_t *c)
{
    free(c->buf);
    c->buf = NULL;
    c->len = c->pos = 0;
}

int cg_csv_first(cg_csv_t *c, cg_csv_field_t *f, size_t *nf, int *rec_line, const char *expected)
{
    int r;
    do {
        r = cg_csv_record(c, f, nf, rec_line);
    } while (r == 1 && cg_csv_is_blank(f, *nf));
    if (r == 0)
        cg_csv_err(c, CG_ERR_CONFIG, 1, 1, "empty file: a header row is required (%s)", expected);
    return r == 1;
}

/* Skips to just after the end of the current line (error resync). */
static void skip_line(cg_csv_t *c)
{
    char *nl = memchr(c->buf + c->pos, '\n', c->len - c->pos);
    c->pos = nl ? (size_t)(nl - c->buf) + 1 : c->len;
    c->line++;
    c->line_start = c->pos;
}

/* Parses one record. Returns 1 with fields, 0 at end of input, -1 after reporting a syntax error
 * (the rest of that line is skipped), -2 when the file cannot be resynchronised. */
int cg_csv_record(cg_csv_t *c, cg_csv_field_t *f, size_t *nf, int *rec_line)
{
    *nf = 0;
    *rec_line = c->line;
    if (c->pos >= c->len)
        return 0;
    for (;;) {
        if (*nf == CG_CSV_MAX_FIELDS) {
            cg_csv_err(c, CG_ERR_CONFIG, c->line, (int)(c->pos - c->line_start) + 1,
                       "more than %d fields", CG_CSV_MAX_FIELDS);
            skip_line(c);
            return -1;
        }
        cg_csv_field_t *fd = &f[(*nf)++];
        fd->line = c->line;
        fd->col = (int)(c->pos - c->line_start) + 1;
        fd->p = c->buf + c->pos;
        fd->len = 0;
        if (c->pos < c->len && c->buf[c->pos] == '"') {
            char *out = fd->p;
            size_t i = c->pos + 1;
            int closed = 0;
            while (i < c->len) {
                char ch = c->buf[i];
                if (ch == '"') {
                    if (i + 1 < c->len && c->buf[i + 1] == '"') {
                        *out++ = '"';
                        i += 2;
                        continue;
                    }
                    i++;
                    closed = 1;
                    break;
                }
                if (ch == '\n') {
                    c->line++;
                    c->line_start = i + 1;
                }
                *out++ = ch;
                i++;
            }
            if (!closed) {
                cg_csv_err(c, CG_ERR_CONFIG, fd->line, fd->col,
                           "quoted field never closed (the rest of the file is inside it)");
                c->pos = c->len;
                return -2;
            }
            fd->len = (size_t)(out - fd->p);
            c->pos = i;
            if (c->pos < c->len && c->buf[c->pos] != c->sep && c->buf[c->pos] != '\n' &&
                !(c->buf[c->pos] == '\r' && c->pos + 1 < c->len && c->buf[c->pos + 1] == '\n')) {
                char sb[CG_CSV_SHOW_MAX + 4];
                size_t rest = c->len - c->pos;
                const char *nl = memchr(c->buf + c->pos, '\n', rest);
                size_t n = nl ? (size_t)(nl - (c->buf + c->pos)) : rest;
                cg_csv_err(c, CG_ERR_CONFIG, c->line, (int)(c->pos - c->line_start) + 1,
                           "text after a closing quote: '%s'", cg_csv_show(c->buf + c->pos, n, sb));
                skip_line(c);
                return -1;
            }
        } else {
            size_t i = c->pos;
            while (i < c->len && c->buf[i] != c->sep && c->buf[i] != '\n') {
                if (c->buf[i] == '"') {
                    char sb[CG_CSV_SHOW_MAX + 4];
                    const char *nl = memchr(c->buf + c->pos, '\n', c->len - c->pos);
                    size_t n = nl ? (size_t)(nl - (c->buf + c->pos)) : c->len - c->pos;
                    cg_csv_err(c, CG_ERR_CONFIG, c->line, (int)(i - c->line_start) + 1,
                               "quote inside an unquoted field (quote the whole field and double "
                               "the quote): '%s'",
                               cg_csv_show(c->buf + c->pos, n, sb));
                    skip_line(c);
                    return -1;
                }
                i++;
            }
            fd->len = i - c->pos;
            if (fd->len && i < c->len && c->buf[i] == '\n' && fd->p[fd->len - 1] == '\r')
                fd->len--; /* CRLF line end */
            c->pos = i;
        }
        if (c->pos >= c->len)
            return 1;
        if (c->buf[c->pos] == c->sep) {
            c->pos++;
            continue;
        }
        /* line end ("\r\n" already stripped from unquoted fields) */
        if (c->buf[c->pos] == '\r')
            c->pos++;
        c->pos++;
        c->line++;
        c->line_start = c->pos;
        return 1;
    }
}

int cg_csv_is_blank(const cg_csv_field_t *f, size_t nf)
{
    return nf == 1 && f[0].len == 0;
}

int cg_csv_edge_space(const cg_csv_field_t *f)
{
    return f->len && (isspace((unsigned char)f->p[0]) || isspace((unsigned char)f->p[f->len - 1]));
}

/* The next data record with as many fields as the header (ncols): records that do not parse,
 * blank ones and ones of another width (reported at their line) are passed over. 0 at the end,
 * or when the file cannot be read on. */
int cg_csv_next_row(cg_csv_t *c, cg_csv_field_t *f, size_t *nf, size_t ncols, int *line)
{
    int r;
    while ((r = cg_csv_record(c, f, nf, line)) != 0) {
        if (r == -2)
            return 0;
        if (r < 0 || cg_csv_is_blank(f, *nf))
            continue;
        if (*nf == ncols)
            return 1;
        cg_csv_err(c, CG_ERR_CONFIG, *line, *nf > ncols ? f[ncols].col : 1,
                   "%zu fields where the header has %zu", *nf, ncols);
    }
    return 0;
}

/* Maps a header's fields to the known columns (cols, n; colmap[i] gets f[i]'s column or -1):
 * an unknown or repeated column, or a missing required one, is an error located at its field.
 * 1 when the header is usable. expected names the columns in the unknown-column error. */
int cg_csv_header(cg_csv_t *c, const cg_csv_field_t *f, size_t nf, const char *const *cols, int n,
                  unsigned required, const char *expected, int header_line, int *colmap)
{
    unsigned seen = 0;
    int ok = 1;
    char sb[CG_CSV_SHOW_MAX + 4];
    for (size_t i = 0; i < nf; i++) {
        colmap[i] = -1;
        for (int k = 0; k < n; k++)
            if (f[i].len == strlen(cols[k]) && !memcmp(f[i].p, cols[k], f[i].len))
                colmap[i] = k;
        if (colmap[i] < 0) {
            cg_csv_err(c, CG_ERR_CONFIG, f[i].line, f[i].col, "unknown column '%s' (%s)",
                       cg_csv_show(f[i].p, f[i].len, sb), expected);
            ok = 0;
        } else if (seen & (1u << colmap[i])) {
            cg_csv_err(c, CG_ERR_CONFIG, f[i].line, f[i].col, "column '%s' appears twice",
                       cols[colmap[i]]);
            ok = 0;
        } else {
            seen |= 1u << colmap[i];
        }
    }
    for (int k = 0; k < n; k++)
        if ((required & (1u << k)) && !(seen & (1u << k))) {
            cg_csv_err(c, CG_ERR_CONFIG, header_line, 1, "header lacks the column '%s'", cols[k]);
            ok = 0;
        }
    return ok;
}
