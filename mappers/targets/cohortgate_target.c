/* cohortgate_target.c - cohortgate's own record tables, for facts OMOP CDM v5.4 has no table for.
 * They use the OMOP schema types so that the spec compiler and the row checks treat them alike;
 * their records carry "standard":"cohortgate" so that OMOP loaders can tell them apart. */
#include "target_impl.h"

#include <pthread.h>

/* A patient merge (HL7 ADT^A40): the prior identifier's person now lives on as person_id.
 * Downstream databases use it to move or link the merged person's rows. */
static const cg_omop_column_t person_merge_columns[] = {
    {"person_merge_id", "bigint", CG_OMOP_BIGINT, 0, true, true, false, NULL, NULL, false},
    {"person_id", "bigint", CG_OMOP_BIGINT, 0, true, false, false, NULL, NULL, false},
    {"merged_person_id", "bigint", CG_OMOP_BIGINT, 0, true, false, false, NULL, NULL, false},
    {"merged_person_source_value", "varchar(50)", CG_OMOP_VARCHAR, 50, false, false, false, NULL,
     NULL, false},
    {"merge_date", "date", CG_OMOP_DATE, 0, true, false, false, NULL, NULL, false},
    {"merge_datetime", "datetime", CG_OMOP_DATETIME, 0, false, false, false, NULL, NULL, false},
};

static const cg_omop_table_t schema[] = {
    {"cohortgate.person_merge", "COHORTGATE", false, person_merge_columns,
     sizeof(person_merge_columns) / sizeof(person_merge_columns[0])},
};

static const cg_target_table_t *tabs;
static size_t n_tabs;

static void build(void)
{
    tabs = cg_target_from_omop(&cg_target_cohortgate, schema, sizeof(schema) / sizeof(schema[0]));
    n_tabs = tabs ? sizeof(schema) / sizeof(schema[0]) : 0;
}

static const cg_target_table_t *cohortgate_tables(size_t *n)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, build);
    *n = n_tabs;
    return tabs;
}

const cg_target_t cg_target_cohortgate = {
    .name = "cohortgate",
    .what = "a cohortgate table",
    .tables = cohortgate_tables,
    .check = cg_target_omop_check,
    .encode = cg_target_json_envelope,
};
