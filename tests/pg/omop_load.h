/* omop_load.h - loads OMOP CDM v5.4 record envelopes into a real PostgreSQL, for conformance.
 *
 * The loader creates a fresh schema with cohortgate's DDL (cg_omop_write_ddl), then inserts the
 * "row" of every NDJSON envelope whose standard is "omop-cdm-5.4" with a parameterized INSERT
 * (text parameters, NULL for a JSON null or an absent column). Each row is its own transaction,
 * so one bad row does not hide the next. A failure keeps where the row came from (file:line),
 * the table, the column when it can be told, PostgreSQL's SQLSTATE and message: PostgreSQL, not
 * cohortgate's own checker, is the judge of type, NOT NULL and length errors. Envelopes of other
 * standards are counted and skipped. A repeated primary key is reported with the place where
 * the key was first loaded, since deterministic ids must not collide.
 */
#ifndef CG_OMOP_LOAD_H
#define CG_OMOP_LOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include <libpq-fe.h>

typedef struct cg_omop_load_options {
    const char *conninfo; /* libpq connection string; NULL: $COHORTGATE_TEST_PG */
    const char *schema;   /* NULL: a new unique name, cg_omop_<pid>_<time>_<n>; else made if
                           * missing, and must not hold the CDM tables yet */
    bool keep;            /* keep the schema when the loader is destroyed (default: drop it) */
    bool strict;          /* also run cg_omop_check_row() first; a refused row is a failure
                           * (SQLSTATE "CGCHK") and is not sent to PostgreSQL */
    bool upsert;          /* a row whose primary key is loaded already replaces it (ON CONFLICT
                           * DO UPDATE), as a downstream sink does with cohortgate's stable
                           * ids; default: a repeated key is a failure */
    FILE *report;         /* each failure is printed here as it happens; NULL: silent */
} cg_omop_load_options_t;

typedef struct cg_omop_load_failure {
    char origin[256];  /* the input's name ("-" for stdin) */
    long line;         /* 1-based line in origin */
    char table[64];    /* empty when the envelope did not name a known table */
    char column[64];   /* empty when unknown */
    char sqlstate[6];  /* PostgreSQL's SQLSTATE, "CGENV" for a bad envelope or unknown column,
                        * "CGCHK" for a strict-mode refusal */
    char message[768]; /* PostgreSQL's message (with its DETAIL), or the loader's */
} cg_omop_load_failure_t;

typedef struct cg_omop_loader cg_omop_loader_t;

/* Connects and creates the schema and its tables. NULL on failure, with the reason (libpq's
 * text as is) in errstr. */
cg_omop_loader_t *cg_omop_loader_new(const cg_omop_load_options_t *opt, char *errstr,
                                     size_t errstr_size);
/* Drops the schema unless keep was set, then disconnects. NULL-safe. */
void cg_omop_loader_destroy(cg_omop_loader_t *l);

/* Loads every line of path ("-" for stdin). Returns 0, or -1 when path cannot be read (the
 * reason is recorded as a failure at line 0). Row failures are recorded, not returned. */
int cg_omop_loader_load_file(cg_omop_loader_t *l, const char *path);
int cg_omop_loader_load_stream(cg_omop_loader_t *l, FILE *in, const char *origin);
/* Loads one NDJSON line (no newline needed). Returns 1 when a row was inserted, 0 when the line
 * was blank or of another standard, -1 when it failed (recorded). */
int cg_omop_loader_load_line(cg_omop_loader_t *l, const char *origin, long line, const char *text,
                             size_t len);

size_t cg_omop_loader_n_failures(const cg_omop_loader_t *l);
const cg_omop_load_failure_t *cg_omop_loader_failure(const cg_omop_loader_t *l, size_t i);
/* Rows inserted into table (0 for an unknown table), or into all tables when table is NULL. */
size_t cg_omop_loader_inserted(const cg_omop_loader_t *l, const char *table);
/* Lines skipped because their standard was not omop-cdm-5.4. */
size_t cg_omop_loader_skipped(const cg_omop_loader_t *l);
const char *cg_omop_loader_schema(const cg_omop_loader_t *l);
/* The connection, for queries of the loaded rows; owned by the loader. */
PGconn *cg_omop_loader_conn(cg_omop_loader_t *l);
/* Prints inserted rows per table (tables with rows only) and the totals. */
void cg_omop_loader_print_summary(const cg_omop_loader_t *l, FILE *out);

#endif
