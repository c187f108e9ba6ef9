/* spec_tables.c - cohortgate's own record tables, for facts OMOP CDM v5.4 has no table for.
 * They use the OMOP schema types so the spec compiler and the row checks treat them alike; their
 * records carry "standard":"cohortgate" so OMOP loaders can tell them apart. */
#include "spec_impl.h"

#include <string.h>

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

static const cg_omop_table_t spec_tables[] = {
    {"cohortgate.person_merge", "COHORTGATE", false, person_merge_columns,
     sizeof(person_merge_columns) / sizeof(person_merge_columns[0])},
};

const cg_omop_table_t *cg_spec_table(const char *name, const char **standard)
{
    for (size_t i = 0; i < sizeof(spec_tables) / sizeof(spec_tables[0]); i++)
        if (!strcmp(spec_tables[i].name, name)) {
            *standard = "cohortgate";
            return &spec_tables[i];
        }
    *standard = "omop-cdm-5.4";
    return cg_omop_table(name);
}
