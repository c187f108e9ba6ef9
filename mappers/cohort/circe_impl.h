/* circe_impl.h - the Circe compiler's own declarations, shared by its files
 * (mappers/cohort/circe*.c), not installed.
 *
 * One walk of the JSON tree both checks the expression and writes its SQL; the files below
 * split that walk by what it reaches, each calling only the ones under it:
 *
 *   circe.c           the public API: loading (and the cohortgate header), compiling, summaries
 *   circe_compile.c   the whole expression: primary, qualified and included events, the end
 *                     strategy, censoring, eras, the censor window, the diagnosis steps
 *   circe_criteria.c  one criterion per domain, its correlated criteria, criteria groups
 *   circe_codesets.c  the concept sets (the codesets CTE) and references to them
 *   circe_clauses.c   SQL pieces: ranges, text filters, concept lists, schema-qualified tables
 *   circe_check.c     located errors and the checks of an object's members
 */
#ifndef CG_CIRCE_IMPL_H
#define CG_CIRCE_IMPL_H

#include <stddef.h>

#include <jansson.h>

#include "cg_circe.h"
#include "cg_jsonpos.h"

/* One walk's state: where errors go, where the SQL goes, and what the caller asked for. */
typedef struct cc {
    const char *file;
    const cg_jsonpos_t *jp;
    cg_jsonpos_errors_t e;
    cg_buf_t *b;
    char cdm[160]; /* "schema". or empty */
    char res[160];
    const char *person; /* diagnose this person instead of writing `cohort` */
    const char *into;   /* insert into this table instead of replacing rows of `cohort` */
    const char *only;   /* evaluate only the persons (person_id) of this table */
    cg_buf_t steps;     /* the diagnosis's SELECTs, one per step */
    int n_codesets;
    long long codeset_ids[256];
} cc_t;

/* The SQL of the walk goes to c->b. */
#define P(...) cg_buf_printf(c->b, __VA_ARGS__)
#define S(s)   cg_buf_puts(c->b, s)

/* ---- circe_check.c ---- */
void cg_circe__err_at(cc_t *c, const json_t *at, const json_t *obj, const char *key,
                      const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* A member that is present but says nothing (null, false, [], {}) is as good as absent. */
int cg_circe__empty_value(const json_t *v);
/* Every member of obj must be named in allowed (NULL-terminated) or be empty; the others are
 * refused, naming the element and where it is (ctx). */
void cg_circe__check_members(cc_t *c, const json_t *obj, const char *ctx,
                             const char *const *allowed);
/* A member of the type named, or NULL (def) when absent or null; the wrong type is an error. */
const json_t *cg_circe__want_object(cc_t *c, const json_t *obj, const char *key, const char *ctx);
const json_t *cg_circe__want_array(cc_t *c, const json_t *obj, const char *key, const char *ctx);
long long cg_circe__want_int(cc_t *c, const json_t *obj, const char *key, const char *ctx,
                             long long def);
int cg_circe__want_bool(cc_t *c, const json_t *obj, const char *key, const char *ctx, int def);
const char *cg_circe__want_string(cc_t *c, const json_t *obj, const char *key, const char *ctx);
/* Whether s is a date YYYY-MM-DD. */
int cg_circe__valid_date(const char *s);

/* ---- circe_clauses.c ---- */
/* A table of the person's own rows, schema-qualified (restricted to c->only when set). */
const char *cg_circe__own(const cc_t *c, const char *table, char *buf, size_t size);
/* A schema name as the prefix "name". of a table; empty for none. */
void cg_circe__quote_ident(char *out, size_t size, const char *name);
/* " AND ..." clauses on expr: a Circe range, a text filter, a concept list. */
void cg_circe__range_clause(cc_t *c, const json_t *r, const char *ctx, const char *expr,
                            int is_date);
void cg_circe__text_clause(cc_t *c, const json_t *t, const char *ctx, const char *expr);
void cg_circe__concept_list_clause(cc_t *c, const json_t *list, const char *ctx, const char *expr,
                                   int exclude);

/* ---- circe_codesets.c ---- */
/* The codesets CTE of the expression's ConceptSets; records their ids in c. */
void cg_circe__concept_sets(cc_t *c, const json_t *root);
/* A member naming a concept set that ConceptSets defines: 1 and *out, or 0 (absent, or an
 * error). */
int cg_circe__codeset_ref(cc_t *c, const json_t *obj, const char *key, const char *ctx,
                          long long *out);

/* ---- circe_criteria.c ---- */
/* A criterion (with its correlated criteria) as a query of its events. */
void cg_circe__criteria_query(cc_t *c, const json_t *crit, const char *ctx);
/* A criteria group: the events of `events` that satisfy it, as (index_id, person_id, event_id). */
void cg_circe__group_query(cc_t *c, const json_t *g, const char *events, int index_id,
                           const char *ctx, int depth);
/* Whether a group has no criterion, demographic criterion or group. */
int cg_circe__group_empty(const json_t *g);

/* ---- circe_compile.c ---- */
/* The whole expression: its SQL into c->b, its errors into c->e. */
void cg_circe__compile(cc_t *c, const json_t *root, long long cohort_id);

#endif
