/* cg_cohort.h - specialty-disease cohorts: which cohorts an output row belongs to.
 *
 * A cohort file is JSON (see specs/cohorts/README.md): a name, a version and match rules on the
 * row's columns (a code matching a pattern or in a concept set, a measurement over a threshold).
 * cg_cohortset_load() compiles every rule once (regexes with PCRE2 JIT and a match limit) and
 * reports every error with file:line:column. A cg_cohort_router_t applies them to rows; it is
 * the routing stage's state and will hold per-patient membership (a patient's later results
 * following their diagnosis), so it is one per worker and routes one patient's rows in order.
 */
#ifndef CG_COHORT_H
#define CG_COHORT_H

#include <stddef.h>

#include "cg_buf.h"
#include "cg_err.h"
#include "cg_row.h"

typedef struct cg_cohortset cg_cohortset_t;
typedef struct cg_cohort_router cg_cohort_router_t;

/* A file or a folder of *.json cohort files. NULL on any error (all written to errs, up to
 * max_errs; *n_errs gets the count). An empty folder gives an empty set, not an error. */
cg_cohortset_t *cg_cohortset_load(const char *path, cg_error_t *errs, size_t max_errs,
                                  size_t *n_errs);
cg_cohortset_t *cg_cohortset_load_string(const char *text, const char *name, cg_error_t *errs,
                                         size_t max_errs, size_t *n_errs);
size_t cg_cohortset_count(const cg_cohortset_t *cs);
/* NULL-safe. */
void cg_cohortset_destroy(cg_cohortset_t *cs);

cg_cohort_router_t *cg_cohort_router_new(const cg_cohortset_t *cs);
/* NULL-safe. */
void cg_cohort_router_destroy(cg_cohort_router_t *r);

/* The cohorts row belongs to: their names in *names (valid until the next call), their count
 * returned. Reads the row's typed values (columns resolved to indexes when the set was loaded). */
size_t cg_cohort_route(cg_cohort_router_t *r, const cg_row_t *row, const char *const **names);
/* Why the last routed row is in its i-th cohort: the rule that matched, as its file writes it
 * ("match[1] {\"table\":…}"), for `map --trace`; NULL when i is past the hits. */
const char *cg_cohort_route_why(const cg_cohort_router_t *r, size_t i);

#endif
