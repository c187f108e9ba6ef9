/* cg_row.h - typed output rows, and encoding them into records.
 *
 * The spec engine (cg_spec.h) turns a message into cg_row_t values: a target table, a typed value
 * per column, the patient's pseudonym and where the row came from. Nothing after mapping parses
 * text: cohort rules read the values (cg_cohort.h), and the row's target encodes it into the bytes
 * published for it (cg_row_encode(); for OMOP and cohortgate, the JSON envelope of DESIGN.md):
 *
 *   {"standard":..., "table":..., "cohorts":[...], "row":{...}, "meta":{...},
 *    "source":{"topic","partition","offset","message_id","spec","spec_version","rule"}}
 *
 * Ownership: rows, their value arrays and every text they point to belong to the cg_mapper_t that
 * made them (its per-message arena, the message's own bytes, the compiled specs) and stay valid
 * until the next map call on that mapper or its destruction. Copy what must live longer; the
 * encoders do, into a caller-owned cg_buf_t that stops allocating once warm.
 */
#ifndef CG_ROW_H
#define CG_ROW_H

#include <stddef.h>
#include <stdint.h>

#include "cg_buf.h"
#include "cg_err.h"
#include "cg_target.h"

/* What a column holds. The text is always there for a value (kind > CG_VALUE_NULL), as the
 * encoders write it: numbers as canonical decimals, dates in ISO 8601. */
typedef enum cg_value_kind {
    CG_VALUE_ABSENT = 0, /* the rule does not map this column: it is left out of the record */
    CG_VALUE_NULL,       /* mapped, without a value: null */
    CG_VALUE_INTEGER,    /* 0 or -?[1-9][0-9]*, fits its column (32 or 64 bits) */
    CG_VALUE_NUMBER,     /* -?digits[.digits], as cg_spec_number writes it */
    CG_VALUE_STRING,     /* UTF-8 (a meta value may hold any bytes; encoders make it valid) */
    CG_VALUE_DATE,       /* YYYY-MM-DD */
    CG_VALUE_DATETIME,   /* YYYY-MM-DDTHH:MM[:SS[.f]][+HH:MM] */
} cg_value_kind_t;

/* A typed value: 16 bytes, a {ptr, len} slice of text and its kind. */
typedef struct cg_value {
    const char *ptr; /* not NUL-terminated; NULL for ABSENT and NULL */
    uint32_t len;
    uint8_t kind;  /* cg_value_kind_t */
    uint8_t plain; /* 1: the text is printable ASCII without '"' or '\\' (a JSON string as is);
                    * 0: not known. The engine sets it where its checks found out anyway, so
                    * that an encoder need not scan again. */
    uint16_t reserved;
} cg_value_t;

/* A fact about the row that its table has no column for (a spec rule's "meta"), such as a
 * result's status. Present values only. */
typedef struct cg_row_meta {
    const char *name;
    cg_value_t value;     /* CG_VALUE_STRING */
    const char *json_key; /* "name": as the JSON envelope writes it, made once; NULL: escaped */
    uint32_t json_key_len;
} cg_row_meta_t;

/* The meta fact naming the order a row came from (a keyed hash of its placer number, the specs'
 * {"hash_id": …, "ns": "order"}), and the table whose records retract an order's rows by it
 * (its column order_id). Meta is not released, save this one: re-keyed as that column is, to a
 * subscriber the column goes to, so that the subscriber can apply the retraction too. */
#define CG_ROW_META_ORDER_ID    "order_id"
#define CG_ROW_ORDER_RETRACTION "cohortgate.order_retraction"
/* An order as the gateway's cg.document header and the sink's cg_row_doc name it: this and the
 * order's id (documents are named by their id alone). */
#define CG_ROW_ORDER_DOC_PREFIX "order:"

/* What a record does to the row with its id (the envelope's "op"). A consumer applies them in
 * order per person (the records' key) and has the source's current truth; specs/README.md
 * ("What goes out") says what each means for a database. */
typedef enum cg_row_op {
    CG_ROW_UPSERT = 0, /* insert the row, or replace the one with its id */
    CG_ROW_DELETE,     /* retract the row with its id (only the id and person_id are set) */
    CG_ROW_MERGE,      /* cohortgate.person_merge: move merged_person_id's rows to person_id */
    CG_ROW_RETRACT,    /* cohortgate.document_retraction, .order_retraction: retract every row of
                        * that document, of that order */
} cg_row_op_t;

/* The op's name as records spell it ("upsert"). */
static inline const char *cg_row_op_name(cg_row_op_t op)
{
    static const char *const names[] = {"upsert", "delete", "merge", "retract"};
    return (unsigned)op < sizeof(names) / sizeof(names[0]) ? names[op] : "upsert";
}

typedef struct cg_row {
    const cg_target_table_t *table; /* table->target is the standard */
    uint8_t op;                     /* cg_row_op_t */
    uint32_t n_cols;                /* of cols, below (here: in op's padding) */
    /* One per column of table, in its order (values[col->index]); CG_VALUE_ABSENT for a column
     * the rule does not map. */
    const cg_value_t *values;
    /* The columns values may hold, ascending (a rule's columns and its key), when the producer
     * knows them: the encoder looks at these alone. NULL: any column of table. Whoever gives a
     * value to a column not listed clears it. */
    const uint16_t *cols;
    const cg_row_meta_t *meta;
    size_t n_meta;
    /* The patient's pseudonym, the records' key; empty when the spec has no patient. */
    cg_slice_t person_key;
    /* provenance */
    const char *spec; /* the spec's name */
    int spec_version;
    const char *rule; /* the rule's name */
    /* ,"spec":…,"spec_version":…,"rule":… as the JSON envelope writes these three, made once
     * per rule; NULL: written from them (whoever changes one of them clears it) */
    const char *json_prov;
    uint32_t json_prov_len;
    /* The source message's id (MSH-10, a document's id) as records carry it: its keyed hash
     * (cg_pseudo_message_id) unless the mapping's message ids are plain (cg_mapping_opts_t) */
    cg_slice_t message_id;
    /* The source's own time of the message (MSH-7, a document's effectiveTime) as ISO 8601,
     * shifted like the row's dates; empty when it has none. Consumers order a fact's records by
     * it (last writer by source time), not by arrival. */
    cg_slice_t source_time;
    /* message_id and source_time are known to need no JSON escaping (checked once per message
     * by the mapper); 0: the encoder looks. Whoever replaces either with text that may need
     * escaping clears it. */
    uint8_t source_plain;
    /* With tracing on (cg_mapper_set_trace), per column (as values) the source of its value: the
     * rule's path or expression text, "row id (...)" for a generated id; NULL for absent columns.
     * The rule is the row's. NULL when tracing is off. */
    const char *const *trace;
    /* With tracing on, per column the steps its value took, "; "-separated: which coalesce
     * branch, if branch or default gave it, which vocabulary row (or none) a lookup found, which
     * map entry applied, through the bindings it read; NULL for a column without such steps. */
    const char *const *trace_steps;
} cg_row_t;

/* The standard a row is written in ("omop-cdm-5.4"). */
static inline const char *cg_row_standard(const cg_row_t *row)
{
    return row->table->target->name;
}

/* The value of column i of the row's table (i from cg_target_column_t.index). */
static inline const cg_value_t *cg_row_value(const cg_row_t *row, size_t i)
{
    return &row->values[i];
}

/* The value of the column named name; NULL when the table has no such column. For tests and
 * tools: the hot path resolves the index once (cg_target_column) and uses cg_row_value. */
const cg_value_t *cg_row_value_named(const cg_row_t *row, const char *name);

/* The row's meta fact name, NULL when it has none (or an empty one). */
const cg_row_meta_t *cg_row_meta(const cg_row_t *row, const char *name);

/* Where a record's input came from, beside the row's own provenance. topic may be NULL outside
 * Kafka (files): then topic, partition and offset are left out. Strings are borrowed. */
typedef struct cg_row_source {
    const char *topic;
    int32_t partition;
    int64_t offset;
} cg_row_source_t;

/* cg_row_encode flags */
#define CG_ROW_ENCODE_TRACE 1u /* add "trace": {column: {rule, source[, steps]}} (row->trace) */
/* 64-bit columns (CG_COL_INT64: row ids, person_id) as JSON strings ("5500483416384649466"), for
 * consumers that read JSON numbers as doubles (JavaScript, jq) and would round them */
#define CG_ROW_ENCODE_IDS_AS_STRINGS 2u

/* Appends the record of row in its target's format to out (for OMOP and cohortgate: the JSON
 * envelope above, cohorts being the names cg_cohort_route gave). src may be NULL. CG_ERR_NOMEM
 * when out could not grow. */
cg_err_t cg_row_encode(const cg_row_t *row, const cg_row_source_t *src, const char *const *cohorts,
                       size_t n_cohorts, unsigned flags, cg_buf_t *out);

#endif
