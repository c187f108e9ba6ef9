/* pg_vocab.c - `cohortgate sink --load-vocab DIR`: OHDSI Athena's vocabulary files into the
 * schema's vocabulary tables with COPY.
 *
 * An Athena download is a folder of tab-separated files with a header line (CONCEPT.csv,
 * CONCEPT_RELATIONSHIP.csv, CONCEPT_ANCESTOR.csv, VOCABULARY.csv, ...; dates as YYYYMMDD, which
 * PostgreSQL reads as dates). Quotes in concept names are data, not CSV quoting, so COPY runs in
 * CSV format with a quote byte that never occurs (backspace). Each file replaces its table's rows
 * (TRUNCATE, then COPY by the header's column names), all in one transaction: a file the
 * database refuses leaves the vocabulary as it was, and the error names the file and its line.
 * The files stream in 1 MiB pieces, so a CONCEPT_RELATIONSHIP of gigabytes needs no memory.
 */
#include "pg_int.h"

#include "cg_pg.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* The OMOP CDM v5.4 vocabulary tables, in an order that suits foreign keys. */
static const char *const vocab_tables[] = {"vocabulary",
                                           "domain",
                                           "concept_class",
                                           "relationship",
                                           "concept",
                                           "concept_relationship",
                                           "concept_ancestor",
                                           "concept_synonym",
                                           "drug_strength",
                                           "source_to_concept_map",
                                           NULL};

/* The file of dir that holds table (NAME.csv, any case), into path; 0 when there is one. */
static int find_file(const char *dir, const char *table, char *path, size_t size)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    char want[64];
    snprintf(want, sizeof(want), "%s.csv", table);
    struct dirent *e;
    int found = -1;
    while ((e = readdir(d)))
        if (!strcasecmp(e->d_name, want)) {
            snprintf(path, size, "%s/%s", dir, e->d_name);
            found = 0;
            break;
        }
    closedir(d);
    return found;
}

/* The header's column names, checked against the table, as "(a, b, c)" into cols. */
static int header_columns(const char *path, const cg_omop_table_t *t, FILE *f, cg_buf_t *cols,
                          char *errstr, size_t errstr_size)
{
    char line[4096];
    if (!fgets(line, sizeof(line), f)) {
        snprintf(errstr, errstr_size, "%s:1: empty file (a header line is expected)", path);
        return -1;
    }
    line[strcspn(line, "\r\n")] = '\0';
    cg_buf_putc(cols, '(');
    int n = 0;
    for (char *save = NULL, *name = strtok_r(line, "\t", &save); name;
         name = strtok_r(NULL, "\t", &save)) {
        for (char *p = name; *p; p++)
            *p = (char)tolower((unsigned char)*p);
        if (!cg_omop_column(t, name, NULL)) {
            snprintf(errstr, errstr_size, "%s:1: '%s' is no column of %s", path, name, t->name);
            return -1;
        }
        cg_buf_puts(cols, n++ ? ", " : "");
        pg_ident(cols, name);
    }
    cg_buf_putc(cols, ')');
    return 0;
}

/* The line of the file a COPY error names ("COPY concept, line 3, column ..."), else 0. */
static long error_line(const PGresult *r)
{
    const char *ctx = PQresultErrorField(r, PG_DIAG_CONTEXT);
    const char *l = ctx ? strstr(ctx, ", line ") : NULL;
    return l ? strtol(l + 7, NULL, 10) : 0;
}

/* One table from its file: TRUNCATE, COPY. *rows gets the count. */
static int load_table(PGconn *c, const char *schema, const cg_omop_table_t *t, const char *path,
                      long long *rows, char *errstr, size_t errstr_size)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(errstr, errstr_size, "%s: %s", path, strerror(errno));
        return -1;
    }
    cg_buf_t q, cols;
    cg_buf_init(&q);
    cg_buf_init(&cols);
    int rc = header_columns(path, t, f, &cols, errstr, errstr_size);
    if (!rc) {
        cg_buf_puts(&q, "TRUNCATE ");
        pg_qual(&q, schema, t->name);
        cg_buf_putc(&q, '\0');
        rc = pg_exec(c, q.data, errstr, errstr_size);
    }
    if (!rc) {
        cg_buf_reset(&q);
        cg_buf_puts(&q, "COPY ");
        pg_qual(&q, schema, t->name);
        cg_buf_printf(&q,
                      " %s FROM STDIN WITH (FORMAT csv, DELIMITER E'\\t', QUOTE E'\\b', "
                      "NULL '')",
                      cols.data);
        cg_buf_putc(&q, '\0');
        PGresult *r = PQexec(c, q.data);
        if (PQresultStatus(r) != PGRES_COPY_IN) {
            pg_message(r, c, errstr, errstr_size);
            rc = -1;
        }
        PQclear(r);
    }
    if (!rc) {
        static char chunk[1 << 20];
        size_t n;
        while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
            if (PQputCopyData(c, chunk, (int)n) != 1)
                break;
        const char *why = ferror(f) ? "read error" : NULL;
        PQputCopyEnd(c, why);
        PGresult *r;
        while ((r = PQgetResult(c))) {
            if (PQresultStatus(r) == PGRES_COMMAND_OK) {
                *rows = strtoll(PQcmdTuples(r), NULL, 10);
            } else if (!rc) {
                char msg[512];
                pg_message(r, c, msg, sizeof(msg));
                long line = error_line(r);
                if (line) /* COPY's lines start after the header, which we read */
                    snprintf(errstr, errstr_size, "%s:%ld: %s", path, line + 1, msg);
                else
                    snprintf(errstr, errstr_size, "%s: %s", path, msg);
                rc = -1;
            }
            PQclear(r);
        }
    }
    fclose(f);
    cg_buf_free(&q);
    cg_buf_free(&cols);
    return rc;
}

int cg_pg_load_vocab(const cg_config_t *cfg, const char *dir, FILE *progress, char *summary,
                     size_t summary_size, char *errstr, size_t errstr_size)
{
    const pg_conf_t *conf = cg_config_plugin_conf(cfg, cg_pg_config_map);
    if (!conf) {
        snprintf(errstr, errstr_size, "no pg settings");
        return -1;
    }
    char path[4096];
    int any = 0;
    for (size_t i = 0; vocab_tables[i]; i++)
        any |= !find_file(dir, vocab_tables[i], path, sizeof(path));
    if (!any) {
        DIR *d = opendir(dir);
        snprintf(errstr, errstr_size, "%s: %s", dir,
                 d ? "no vocabulary file (CONCEPT.csv, CONCEPT_RELATIONSHIP.csv, ...) in it"
                   : strerror(errno));
        if (d)
            closedir(d);
        return -1;
    }
    PGconn *c = pg_connect(conf, errstr, errstr_size);
    if (!c)
        return -1;
    int rc = pg_schema_verify(c, conf, errstr, errstr_size);
    if (!rc)
        rc = pg_exec(c, "BEGIN", errstr, errstr_size);
    size_t tables = 0;
    long long total = 0;
    for (size_t i = 0; vocab_tables[i] && !rc; i++) {
        if (find_file(dir, vocab_tables[i], path, sizeof(path)))
            continue;
        const cg_omop_table_t *t = cg_omop_table(vocab_tables[i]);
        long long rows = 0;
        time_t t0 = time(NULL);
        if (!t) {
            snprintf(errstr, errstr_size, "%s: no such OMOP table", vocab_tables[i]);
            rc = -1;
        } else if (!(rc = load_table(c, conf->schema, t, path, &rows, errstr, errstr_size))) {
            tables++;
            total += rows;
            if (progress)
                fprintf(progress, "cohortgate sink --load-vocab: %s: %lld row(s) in %ld s\n",
                        t->name, rows, (long)(time(NULL) - t0));
        }
    }
    /* cdm_source.vocabulary_version follows what was loaded; and concept sets now resolve
     * descendants they did not: the sink's next start evaluates every definition anew */
    if (!rc)
        rc = pg_cdm_source_write(c, conf, 0, errstr, errstr_size);
    if (!rc && tables) {
        cg_buf_t q;
        cg_buf_init(&q);
        cg_buf_puts(&q, "DELETE FROM ");
        pg_qual(&q, conf->schema, "cg_cohort_state");
        cg_buf_putc(&q, '\0');
        rc = q.data ? pg_exec(c, q.data, errstr, errstr_size) : -1;
        cg_buf_free(&q);
    }
    if (!rc)
        rc = pg_exec(c, "COMMIT", errstr, errstr_size);
    if (rc)
        PQclear(PQexec(c, "ROLLBACK"));
    PQfinish(c);
    if (!rc && summary)
        snprintf(summary, summary_size,
                 "schema %s: %zu vocabulary table(s), %lld row(s) loaded from %s (each table's "
                 "rows replaced)",
                 conf->schema, tables, total, dir);
    return rc;
}
