/* cg_release.h - graded release: the classification catalogue, subscribers' data-use policies,
 * and what a row becomes for one subscriber.
 *
 * The catalogue (specs/classification/, its README says why each level) gives every column of
 * every target a GB/T 39725-2020 category, a level 1-5 and flags, and lists sensitive code
 * sets (HIV, sexually transmitted infections, mental health, substance use, genetic findings)
 * that put a whole row at their level. A site layers its own folder over it: a columns.csv row
 * replaces the base row of its table and column, sensitive-codes.csv rows add to the sets.
 *
 * A policy (one per subscriber: a sponsor's pre-cohort feed, a disease database) is compiled
 * against the catalogue once into a plan per table: per column keep, drop, generalize (dates to
 * month or year, year of birth to 5-year bands with a top band, zip to 3 digits), re-key (the
 * pseudonyms: person_id and every keyed id, under the subscriber's own key, so two subscribers'
 * ids cannot be joined without cohortgate), and the level each column leaves at. Releasing a
 * row applies the plan; its level is the strictest of the columns it keeps and of any code set
 * it matches (GB/T 43697-2024), and a row above the subscriber's level is withheld whole.
 *
 * Compiled policies are read-only: any number of threads release with one, each with its own
 * cg_release_scratch_t (the text of changed values). Nothing here logs or knows Kafka.
 */
#ifndef CG_RELEASE_H
#define CG_RELEASE_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "cg_err.h"
#include "cg_pseudo.h"
#include "cg_row.h"
#include "cg_target.h"

#define CG_RELEASE_LEVEL_MAX 5

/* GB/T 39725-2020's categories of health data. */
typedef enum cg_release_category {
    CG_CAT_PERSONAL_ATTRIBUTES = 0,
    CG_CAT_HEALTH_STATUS,
    CG_CAT_MEDICAL_APPLICATION,
    CG_CAT_PAYMENT,
    CG_CAT_HEALTH_RESOURCES,
    CG_CAT_PUBLIC_HEALTH,
    CG_CAT__COUNT
} cg_release_category_t;

/* A column's flags in the catalogue. */
#define CG_CLASS_IDENTIFIER 1u  /* a direct identifier (an address, a provider's NPI) */
#define CG_CLASS_QUASI      2u  /* a quasi-identifier (dates, birth, sex, place) */
#define CG_CLASS_FREE_TEXT  4u  /* text that may hold anything (note_text) */
#define CG_CLASS_SENSITIVE  8u  /* reveals health status on its own */
#define CG_CLASS_PSEUDONYM  16u /* a keyed cohortgate id: re-keyed per subscriber */

/* How a column's level can be brought down. */
typedef enum cg_release_generalize {
    CG_GEN_NONE = 0,
    CG_GEN_DATE,     /* truncated to the month or the year (the subscriber's "dates") */
    CG_GEN_AGE_BAND, /* year_of_birth: 5-year bands, everyone at or above the top age in one */
    CG_GEN_ZIP3,     /* the first three characters */
} cg_release_generalize_t;

typedef struct cg_class_column {
    uint8_t category; /* cg_release_category_t */
    uint8_t level;    /* 1..5; 0: not in the catalogue */
    uint8_t flags;    /* CG_CLASS_* */
    uint8_t generalize;
    uint8_t generalized_level; /* after generalize; 0 when none */
} cg_class_column_t;

typedef struct cg_catalogue cg_catalogue_t;

/* Loads the catalogue layers (folders holding columns.csv and, optionally, sensitive-codes.csv),
 * the base first. Every error located (file:line:column) into errs (*n_errs the total). A
 * catalogue that leaves a target column without a level is an error at the base columns.csv,
 * naming the columns. NULL on any error. */
cg_catalogue_t *cg_catalogue_load(const char *const *layers, size_t n_layers, cg_error_t *errs,
                                  size_t max_errs, size_t *n_errs);
void cg_catalogue_destroy(cg_catalogue_t *cat);
/* The catalogue's version: the first 12 hex digits of a SHA-256 over its layers' files, so a
 * change of any level or code shows in every record released under it. */
const char *cg_catalogue_version(const cg_catalogue_t *cat);
/* The entry of col; level 0 when the catalogue has none (never after a successful load). */
cg_class_column_t cg_catalogue_column(const cg_catalogue_t *cat, const cg_target_column_t *col);
/* The level a row's codes give it: the highest of the sensitive code sets it matches (a concept
 * id in a *_concept_id column, a source code in a *_source_value column), 0 for none; *set gets
 * the set's name. */
int cg_catalogue_row_level(const cg_catalogue_t *cat, const cg_row_t *row, const char **set);

/* What to do with the columns of one level (a policy's "levels"). */
typedef enum cg_release_action {
    CG_ACT_DEFAULT = 0, /* keep at or below the subscriber's level, else generalize or drop */
    CG_ACT_KEEP,
    CG_ACT_GENERALIZE,
    CG_ACT_DROP,
} cg_release_action_t;

/* A subscriber's policy as its config says. Strings are borrowed by cg_policy_compile. */
typedef struct cg_policy_def {
    const char *name;          /* the subscriber */
    const char *agreement;     /* the data-use agreement's id */
    const char *expires;       /* YYYY-MM-DD: the last day the agreement covers (UTC) */
    int max_level;             /* 1..5 */
    const char *const *tables; /* tables it may receive; none: every table the policy can
                                * release whole (its required columns survive) */
    size_t n_tables;
    const char *const *cohorts; /* only rows routed to one of these cohorts; none: every row */
    size_t n_cohorts;
    cg_release_action_t levels[CG_RELEASE_LEVEL_MAX + 1]; /* per level 1..5 */
    int dates_year;      /* generalized dates to the year; else to the month */
    int date_shift_days; /* the subscriber's own per-person shift range [-N, N]; 0: none */
    int age_top;         /* the top age band (90: everyone 90 or older is "90+") */
    int free_text;       /* keep free-text columns (when their level allows) */
    const char *label;   /* the policy's version as its authors name it; may be NULL */
} cg_policy_def_t;

typedef struct cg_policy cg_policy_t;

/* A subscriber's key derived from the site's: HMAC-SHA256(site key, "\0cohortgate/subscriber-key
 * /v1\x1F" || name). Only the site key's holder can make it, and it differs per subscriber. */
cg_pseudo_key_t *cg_release_derive_key(const cg_pseudo_t *site, const char *name, char *errstr,
                                       size_t errstr_size);

/* Compiles def against cat with the subscriber's key (borrowed). Every way the policy grants
 * what the catalogue forbids is an error in errs, each naming the setting: keeping a level above
 * max_level, a listed table whose required column cannot be released at that level, an unknown
 * table, a date that is not one. NULL when any. */
cg_policy_t *cg_policy_compile(const cg_catalogue_t *cat, const cg_policy_def_t *def,
                               const cg_pseudo_key_t *key, cg_error_t *errs, size_t max_errs,
                               size_t *n_errs);
void cg_policy_destroy(cg_policy_t *p);
const char *cg_policy_name(const cg_policy_t *p);
const char *cg_policy_agreement(const cg_policy_t *p);
/* "LABEL+CATALOGUE.POLICY" digests: what the records' cohortgate.policy header carries. */
const char *cg_policy_version(const cg_policy_t *p);
int cg_policy_max_level(const cg_policy_t *p);
/* The end of day YYYY-MM-DD (UTC), when an agreement expiring that day stops covering; -1 when
 * s is not such a date. */
time_t cg_release_day_end(const char *s);
/* Whether the agreement still covers time t (through the end of its expiry day, UTC). */
int cg_policy_in_force(const cg_policy_t *p, time_t t);
/* What the policy does with each column of table, one line per column ("column: keep (level
 * 2)"), for `check --explain`-style output; a new string (free it) or NULL. */
char *cg_policy_describe(const cg_policy_t *p, const cg_target_table_t *table);

/* Per-thread text space for released values. */
typedef struct cg_release_scratch cg_release_scratch_t;
cg_release_scratch_t *cg_release_scratch_new(void);
void cg_release_scratch_destroy(cg_release_scratch_t *s);

/* Prepares s for releasing row to each subscriber in turn: what every subscriber's release reads
 * of it (its ids, its dates) is then parsed once, not once per subscriber. Call it for each row
 * before releasing it (and before releasing a row changed in place), or never: a row not
 * prepared is parsed again for each subscriber. CG_OK, or CG_ERR_NOMEM. */
cg_err_t cg_release_row_prepare(cg_release_scratch_t *s, const cg_row_t *row);

/* Why a row was not released. */
typedef enum cg_release_outcome {
    CG_RELEASE_OK = 0,
    CG_RELEASE_TABLE,   /* its table is not granted */
    CG_RELEASE_COHORT,  /* in none of the subscriber's cohorts */
    CG_RELEASE_LEVEL,   /* above the subscriber's level (a sensitive code set) */
    CG_RELEASE_EXPIRED, /* the agreement has expired */
    CG_RELEASE__COUNT
} cg_release_outcome_t;

typedef struct cg_release_out {
    cg_row_t row;        /* the released row: values and texts in the scratch */
    cg_slice_t key;      /* the record's key: the subscriber's pseudonym of the patient */
    int level;           /* the row's level */
    const char *set;     /* the code set that raised it, or NULL */
    cg_row_source_t src; /* provenance left in: none (topic NULL) */
} cg_release_out_t;

/* Releases row to p's subscriber at time now: *outcome CG_RELEASE_OK with out filled (valid
 * until the scratch is used again), or why not. cohorts are the row's (cg_cohort_route); level
 * and set are what cg_catalogue_row_level() says of it, found once for every subscriber. CG_OK,
 * or CG_ERR_NOMEM when the scratch could not grow. */
cg_err_t cg_release_row(const cg_policy_t *p, const cg_row_t *row, const char *const *cohorts,
                        size_t n_cohorts, int level, const char *set, time_t now,
                        cg_release_scratch_t *s, cg_release_out_t *out,
                        cg_release_outcome_t *outcome);
const char *cg_release_outcome_name(cg_release_outcome_t o);

#endif
