/* release_impl.h - the release room's own structures (mappers/release/), not installed. */
#ifndef CG_RELEASE_IMPL_H
#define CG_RELEASE_IMPL_H

#include "cg_release.h"

#define CAT_CODE_MAX 50 /* a source code is varchar(50) */

enum { CAT_CONCEPT = 0, CAT_CODE, CAT_PREFIX, CAT_RANGE, CAT__KINDS };

typedef struct cat_code {
    uint8_t kind, level, len;
    int32_t concept;
    const char *set;
    char text[CAT_CODE_MAX + 1]; /* upper-case */
} cat_code_t;

typedef struct cat_line {
    int layer; /* 1-based; 0: not classified */
    int line;
} cat_line_t;

typedef struct cat_table {
    const cg_target_table_t *table;
    cg_class_column_t *cols; /* per column index */
    cat_line_t *lines;
    /* the columns a row's codes are read from: every 32-bit *_concept_id, and the fact's own
     * source code (X_source_value of the table's first X_concept_id) */
    uint16_t *concept_cols, *source_cols;
    size_t n_concept, n_source;
} cat_table_t;

#define CAT_TARGETS_MAX 8

/* A target's tables: one span of its table array, whose entries (the catalogue's, a policy's
 * plans: one per table of every target, in the registry's order) begin at [at]. */
typedef struct cat_span {
    uintptr_t lo, hi;
    size_t at;
} cat_span_t;

/* The entry of table t by its address in spans; SIZE_MAX when in none. */
static inline size_t cat_span_find(const cat_span_t *spans, size_t n, const cg_target_table_t *t)
{
    uintptr_t a = (uintptr_t)t;
    for (size_t k = 0; k < n; k++)
        if (a >= spans[k].lo && a < spans[k].hi)
            return spans[k].at + (a - spans[k].lo) / sizeof(*t);
    return SIZE_MAX;
}

struct cg_catalogue {
    cat_table_t *tables;
    size_t n_tables;
    /* each target's tables, so that a row's table is found by its address */
    cat_span_t spans[CAT_TARGETS_MAX];
    size_t n_spans;
    char **sets;
    size_t n_sets;
    cat_code_t *codes; /* sorted by kind, then value */
    size_t n_codes, cap_codes;
    size_t kind_at[CAT__KINDS], kind_n[CAT__KINDS];
    size_t max_prefix;
    /* the upper-case first characters a code, a prefix or a range can begin with: a source
     * value beginning with another is in no set */
    uint8_t first_char[256 / 8];
    char version[13];
};

/* The catalogue's entry for table t. */
const cat_table_t *cg_release__table(const cg_catalogue_t *cat, const cg_target_table_t *t);

#endif
