/* cohortgate_target.c - cohortgate's own record tables, for facts OMOP CDM v5.4 has no table for.
 * They use the OMOP schema types so that the spec compiler and the row checks treat them alike;
 * their records carry "standard":"cohortgate" so that OMOP loaders can tell them apart. */
#include "cg_row.h"
#include "target_impl.h"

#include <pthread.h>

/* A patient merge (HL7 ADT^A40) or identifier change (A47): the prior identifier's person
 * (merged_person_id) now lives on as person_id. Its records have op "merge": a consumer moves
 * every row of merged_person_id to person_id and drops the merged person row (specs/README.md,
 * "What goes out"). reason says which event: "merge" or "identifier_change". */
static const cg_omop_column_t person_merge_columns[] = {
    {"person_merge_id", "bigint", CG_OMOP_BIGINT, 0, true, true, false, NULL, NULL, false},
    {"person_id", "bigint", CG_OMOP_BIGINT, 0, true, false, false, NULL, NULL, false},
    {"merged_person_id", "bigint", CG_OMOP_BIGINT, 0, true, false, false, NULL, NULL, false},
    {"merged_person_source_value", "varchar(50)", CG_OMOP_VARCHAR, 50, false, false, false, NULL,
     NULL, false},
    {"merge_date", "date", CG_OMOP_DATE, 0, true, false, false, NULL, NULL, false},
    {"merge_datetime", "datetime", CG_OMOP_DATETIME, 0, false, false, false, NULL, NULL, false},
    {"reason", "varchar(20)", CG_OMOP_VARCHAR, 20, false, false, false, NULL, NULL, false},
};

/* A document that replaces another (C-CDA relatedDocument typeCode="RPLC"): op "retract". A
 * consumer retracts every row of person_id whose record came from the replaced document (its
 * source "message_id" equals replaced_document_id: both the document's root^extension, keyed
 * alike unless pseudonym.message_id is "plain") before applying the new
 * document's rows, which follow it. Rows whose id comes from an entry id the new version keeps
 * are upserted again right after; entries it dropped stay retracted. */
static const cg_omop_column_t document_retraction_columns[] = {
    {"document_retraction_id", "bigint", CG_OMOP_BIGINT, 0, true, true, false, NULL, NULL, false},
    {"person_id", "bigint", CG_OMOP_BIGINT, 0, true, false, false, NULL, NULL, false},
    {"replaced_document_id", "varchar(255)", CG_OMOP_VARCHAR, 255, true, false, false, NULL, NULL,
     false},
    {"replaced_set_id", "varchar(255)", CG_OMOP_VARCHAR, 255, false, false, false, NULL, NULL,
     false},
    {"replaced_version_number", "integer", CG_OMOP_INTEGER, 0, false, false, false, NULL, NULL,
     false},
    {"retraction_date", "date", CG_OMOP_DATE, 0, true, false, false, NULL, NULL, false},
    {"retraction_datetime", "datetime", CG_OMOP_DATETIME, 0, false, false, false, NULL, NULL,
     false},
};

/* An order cancel (HL7 ORC-1 CA, OC): op "retract". A consumer retracts every row of person_id
 * that its record says came from that order (its meta "order_id", the same keyed hash of the
 * order's placer number, equals order_id), the results the cancel does not repeat included.
 * order_control keeps which cancel (CA, OC). */
static const cg_omop_column_t order_retraction_columns[] = {
    {"order_retraction_id", "bigint", CG_OMOP_BIGINT, 0, true, true, false, NULL, NULL, false},
    {"person_id", "bigint", CG_OMOP_BIGINT, 0, true, false, false, NULL, NULL, false},
    {"order_id", "varchar(50)", CG_OMOP_VARCHAR, 50, true, false, false, NULL, NULL, false},
    {"order_control", "varchar(2)", CG_OMOP_VARCHAR, 2, false, false, false, NULL, NULL, false},
    {"retraction_date", "date", CG_OMOP_DATE, 0, true, false, false, NULL, NULL, false},
    {"retraction_datetime", "datetime", CG_OMOP_DATETIME, 0, false, false, false, NULL, NULL,
     false},
};

static const cg_omop_table_t schema[] = {
    {"cohortgate.person_merge", "COHORTGATE", false, person_merge_columns,
     sizeof(person_merge_columns) / sizeof(person_merge_columns[0])},
    {"cohortgate.document_retraction", "COHORTGATE", false, document_retraction_columns,
     sizeof(document_retraction_columns) / sizeof(document_retraction_columns[0])},
    {"cohortgate.order_retraction", "COHORTGATE", false, order_retraction_columns,
     sizeof(order_retraction_columns) / sizeof(order_retraction_columns[0])},
};

static const cg_target_table_t *tabs;
static size_t n_tabs;

/* The replaced document's id is compared with records' source.message_id: the same transform;
 * its set id is a document identifier too, keyed alike */
static const cg_target_mark_t source_ids[] = {
    {"cohortgate.document_retraction", "replaced_document_id"},
    {"cohortgate.document_retraction", "replaced_set_id"},
    {NULL, NULL},
};

static void build(void)
{
    cg_target_table_t *t =
        cg_target_from_omop(&cg_target_cohortgate, schema, sizeof(schema) / sizeof(schema[0]),
                            "person_id"); /* named as OMOP's: a consumer joins them */
    cg_target_mark(t, sizeof(schema) / sizeof(schema[0]), NULL, source_ids);
    if (t) { /* in schema[]'s order: their records' one op each */
        t[0].op = CG_ROW_MERGE;
        t[1].op = CG_ROW_RETRACT;
        t[2].op = CG_ROW_RETRACT;
    }
    tabs = t;
    n_tabs = t ? sizeof(schema) / sizeof(schema[0]) : 0;
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
    .what = "a cohortgate.* table",
    .tables = cohortgate_tables,
    .check = cg_target_omop_check,
    .encode = cg_target_json_envelope,
};
