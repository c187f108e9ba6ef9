/* policy_impl.h - a compiled policy: a plan per table (mappers/release/), not installed. */
#ifndef CG_POLICY_IMPL_H
#define CG_POLICY_IMPL_H

#include "release_impl.h"

#include "cg_date.h"

/* What a column becomes (P_DROP: left out of the record). */
enum { P_DROP = 0, P_KEEP, P_GEN, P_REKEY_INT, P_REKEY_TEXT };

typedef struct col_plan {
    uint8_t action;
    uint8_t gen;   /* P_GEN: cg_release_generalize_t */
    uint8_t level; /* the level it leaves at */
    uint8_t year;  /* a generalized date goes to its year whatever the policy's "dates" */
} col_plan_t;

typedef struct table_plan {
    const cg_target_table_t *table;
    int granted;
    col_plan_t *cols;
    uint8_t time_action; /* the row's source time: as the table's dates (keep, gen, drop) */
} table_plan_t;

struct cg_policy {
    /* unique to this compiled policy in the process: a scratch's per-policy values (pseudonyms
     * under its key) are kept by it, never by the address a later policy may be given */
    uint64_t serial;
    char *name, *agreement;
    char version[96];
    time_t expires_at; /* the end of the agreement's last day */
    int max_level;
    int dates_year, shift_days, age_top, year_now;
    char **cohorts;
    size_t n_cohorts;
    table_plan_t *tables;
    size_t n_tables;
    cat_span_t spans[CAT_TARGETS_MAX]; /* a row's table's plan by its address */
    size_t n_spans;
    cg_pseudo_t *pseudo; /* the subscriber's key (stateless: shared by threads) */
    /* rows' meta order_id goes out (re-keyed as text): the subscriber gets order retractions */
    int order_ids;
};

const table_plan_t *cg_policy__plan(const cg_policy_t *p, const cg_target_table_t *t);

#endif
