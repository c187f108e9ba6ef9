/* cg_circe.h - patient-level cohort definitions in OHDSI Circe's format, compiled to SQL.
 *
 * A definition file is a Circe cohort expression, the JSON that ATLAS exports. cg_circe_load()
 * reads it, checks it against the subset cohortgate supports (specs/cohorts/CIRCE.md) and refuses
 * everything else with file:line:column naming the element, never ignoring it silently.
 * cg_circe_compile() turns a loaded definition into PostgreSQL SQL over an OMOP CDM v5.4 schema
 * that recomputes one definition in full: it deletes the definition's rows from the `cohort`
 * table and inserts them again (cohort_definition_id, subject_id, cohort_start_date,
 * cohort_end_date), in Circe's steps: primary events, qualified events (AdditionalCriteria,
 * QualifiedLimit), inclusion rules (ExpressionLimit), end dates (EndStrategy, censoring), eras
 * collapsed by EraPad, the censor window. The compiler is pure: text out, no database.
 */
#ifndef CG_CIRCE_H
#define CG_CIRCE_H

#include <stddef.h>

#include "cg_buf.h"
#include "cg_err.h"

typedef struct cg_circe cg_circe_t;

/* A definition file is a bare Circe expression as ATLAS exports it, or a cohortgate definition:
 * {"cohortgate": HEADER, "expression": CIRCE-EXPRESSION}, the header saying what the cohort is:
 *   "id"          its cohort_definition_id (an integer from 1), required;
 *   "name"        lower-case letters, digits, '_' and '-', required;
 *   "version"     an integer from 1, required;
 *   "kind"        "disease" (a specialty-disease cohort) or "precohort" (a trial pre-cohort);
 *   "draws_from"  a pre-cohort's disease cohort (its name), required for and only for one;
 *   "sponsor"     a pre-cohort's sponsor, required for and only for one;
 *   "description" free text, optional. */
typedef struct cg_circe_header {
    int present; /* 0 for a bare expression: every other field is then empty */
    long long id;
    long long version;
    char name[64];
    char kind[16];
    char draws_from[64];
    char sponsor[128];
} cg_circe_header_t;

/* Loads and checks a definition file. NULL on any error: every error is counted in *n_errs (may
 * be NULL) and the first max_errs are written to errs (may be NULL). */
cg_circe_t *cg_circe_load(const char *path, cg_error_t *errs, size_t max_errs, size_t *n_errs);
/* The same for text in memory; name is what errors call the file. */
cg_circe_t *cg_circe_load_string(const char *text, const char *name, cg_error_t *errs,
                                 size_t max_errs, size_t *n_errs);
/* NULL-safe. */
void cg_circe_destroy(cg_circe_t *c);
/* The definition's header (present == 0 for a bare expression); owned by c. */
const cg_circe_header_t *cg_circe_header(const cg_circe_t *c);

/* The definition's Circe expression as compact JSON, members in the file's order: what the OMOP
 * `cohort_definition` table keeps as cohort_definition_syntax. Malloc'd (free it); NULL when out
 * of memory. */
char *cg_circe_expression_json(const cg_circe_t *c);
/* The header's "description", or NULL (none, or a bare expression); owned by c. */
const char *cg_circe_description(const cg_circe_t *c);

/* Small-cell suppression, the one rule for every count that leaves cohortgate (`cohortgate cohort
 * count`, and any later report or gauge): a count below k is never shown, only "<k" (k = 10 by
 * default: 0..9 are all "<10"). Writes n, or "<k", to out and returns out. k below 1 counts as
 * 1. */
#define CG_CIRCE_SUPPRESS_K 10
int cg_circe_count_suppressed(long long n, long long k);
const char *cg_circe_count_format(long long n, long long k, char *out, size_t size);

/* Counts of what a definition holds, for `cohortgate cohort check`. */
typedef struct cg_circe_summary {
    size_t concept_sets, primary_criteria, inclusion_rules, censoring_criteria;
    int additional_criteria; /* 1 when AdditionalCriteria restricts the primary events */
} cg_circe_summary_t;
void cg_circe_summarize(const cg_circe_t *c, cg_circe_summary_t *out);

typedef struct cg_circe_sql_options {
    const char *cdm_schema;     /* the OMOP tables' schema; NULL or "": unqualified */
    const char *results_schema; /* the `cohort` table's; NULL: cdm_schema */
    long long cohort_id;        /* cohort_definition_id of the rows written */
    const char *person;         /* NULL; else, instead of writing `cohort`, one SELECT of
                                 * (step, what, n, dates): for that person (person_source_value,
                                 * the pseudonym, or person_id), how many events each step keeps:
                                 * primary, qualified, each inclusion rule, included, and the
                                 * cohort periods; why the person is in or out */
    const char *into;           /* NULL; else a table (cohort's four columns) the rows are
                                 * inserted into, with no DELETE from `cohort`: the sink's
                                 * incremental evaluation (gateway/plugins/pg/pg_cohort.c) */
    const char *only_persons;   /* NULL; else a table or SELECT with a person_id column: only
                                 * those persons are evaluated (a Circe expression correlates
                                 * every criterion by person, so their rows are exactly the
                                 * rows a full evaluation gives them) */
} cg_circe_sql_options_t;

/* Appends to out the SQL that replaces the definition's rows in `cohort`: a DELETE then one
 * INSERT ... WITH ... SELECT, each ending with ";\n". Run them in one transaction. */
cg_err_t cg_circe_compile(const cg_circe_t *c, const cg_circe_sql_options_t *opt, cg_buf_t *out);

#endif
