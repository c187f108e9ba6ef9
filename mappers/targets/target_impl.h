/* target_impl.h - what the targets of mappers/targets/ share. Private to mappers/. */
#ifndef CG_TARGET_IMPL_H
#define CG_TARGET_IMPL_H

#include "cg_omop.h"
#include "cg_row.h"
#include "cg_target.h"

/* The targets of the registry (registry.c lists them). */
extern const cg_target_t cg_target_omop_cdm54;
extern const cg_target_t cg_target_cohortgate;

/* Generic tables for schema tables typed as OMOP's (cg_omop_table_t): OMOP CDM v5.4 itself and
 * cohortgate's own tables, which use OMOP's types so that they are checked alike. A table's
 * column named person_key (the target's naming) is its person column. Allocated once
 * for the program's lifetime (never freed: the registry hands out pointers into them). NULL when
 * out of memory. */
cg_target_table_t *cg_target_from_omop(const cg_target_t *target, const cg_omop_table_t *tables,
                                       size_t n_tables, const char *person_key);
/* A column a target marks (cg_target_column_t.free_text, .source_id): lists end with a NULL table.
 */
typedef struct cg_target_mark {
    const char *table, *column;
} cg_target_mark_t;
/* Sets the marks of tabs (n_tables, from cg_target_from_omop): free text, source ids. */
void cg_target_mark(cg_target_table_t *tabs, size_t n_tables, const cg_target_mark_t *free_text,
                    const cg_target_mark_t *source_id);
/* cg_target_t.check for columns built by cg_target_from_omop: cg_omop_check_value(). */
bool cg_target_omop_check(const cg_target_column_t *col, const char *text, size_t len, bool quoted,
                          char *why, size_t why_size);

/* envelope.c: the JSON record envelope (cg_row.h), the encoder of omop-cdm-5.4 and cohortgate. */
cg_err_t cg_target_json_envelope(const cg_row_t *row, const cg_row_source_t *src,
                                 const char *const *cohorts, size_t n_cohorts, unsigned flags,
                                 cg_buf_t *out);

#endif
