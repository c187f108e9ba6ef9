/* json_schema.c - the JSON Schema (draft 2020-12) of the record envelope and the quality record,
 * derived from the target registry, so the contract cannot drift from what the encoders write:
 * every table of every target, each column typed as cg_target.h types it, what each op carries.
 * `cohortgate schema` prints it (with the Kafka headers' definitions the gateway adds), and the
 * repository keeps a copy that a test compares and validates every golden and corpus output with.
 */
#include "cg_row.h"
#include "cg_target.h"

#include <jansson.h>
#include <stdint.h>
#include <string.h>

#define DATE_RE "[0-9]{4}-[0-9]{2}-[0-9]{2}"

/* One column's value; nullable unless required. */
static json_t *column_schema(const cg_target_column_t *c, unsigned flags, int nullable)
{
    json_t *s = json_object();
    const char *type = "string";
    switch (c->type) {
    case CG_COL_INT32:
        type = "integer";
        json_object_set_new(s, "minimum", json_integer(INT32_MIN));
        json_object_set_new(s, "maximum", json_integer(INT32_MAX));
        break;
    case CG_COL_INT64:
        if (flags & CG_ROW_ENCODE_IDS_AS_STRINGS) {
            json_object_set_new(s, "pattern", json_string("^-?[0-9]{1,19}$"));
            json_object_set_new(s, "description",
                                json_string("a 64-bit integer as a string (ids_as_strings)"));
        } else {
            type = "integer";
            json_object_set_new(s, "description",
                                json_string("a 64-bit integer: read it as one, not as a double"));
        }
        break;
    case CG_COL_NUMBER:
        type = "number";
        break;
    case CG_COL_VARCHAR:
        if (c->max_length > 0)
            json_object_set_new(s, "maxLength", json_integer(c->max_length));
        break;
    case CG_COL_TEXT:
        break;
    case CG_COL_DATE:
        json_object_set_new(s, "pattern", json_string("^" DATE_RE "$"));
        break;
    case CG_COL_DATETIME:
        /* as the target's check accepts it: a date, then [T ]HH:MM[:SS[.f]] and a zone */
        json_object_set_new(s, "pattern",
                            json_string("^" DATE_RE "([T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\\.[0-9]+)?)?"
                                        "(Z|[+-][0-9]{2}(:?[0-9]{2})?)?)?$"));
        break;
    }
    if (c->free_text)
        json_object_set_new(s, "description",
                            json_string("free text: written only where the spec's rule opts in "
                                        "(\"free_text\"); it may name a person"));
    if (c->source_id)
        json_object_set_new(s, "description",
                            json_string("a source document's id as source.message_id carries it: "
                                        "keyed unless pseudonym.message_id is plain"));
    json_object_set_new(s, "type", nullable ? json_pack("[ss]", type, "null") : json_string(type));
    return s;
}

/* What "row" holds for table t: every column typed; an upsert (merge, retract) carries the
 * required columns, non-null; a delete carries the key and the person column only. */
static json_t *row_schema(const cg_target_table_t *t, unsigned flags)
{
    json_t *props = json_object(), *req = json_array(), *nonnull = json_object();
    for (size_t i = 0; i < t->n_columns; i++) {
        const cg_target_column_t *c = &t->columns[i];
        json_object_set_new(props, c->name, column_schema(c, flags, 1));
        if (c->required) {
            json_array_append_new(req, json_string(c->name));
            json_object_set_new(nonnull, c->name, column_schema(c, flags, 0));
        }
    }
    json_t *row = json_pack("{s:s, s:o, s:b}", "type", "object", "properties", props,
                            "additionalProperties", 0);
    /* a table of events has its one op (cg_target_table_t.op); others upsert and delete */
    const char *op = t->op != CG_ROW_UPSERT ? cg_row_op_name((cg_row_op_t)t->op) : NULL;
    json_t *full = json_pack("{s:{s:{s:o, s:o}}}", "properties", "row", "required", req,
                             "properties", nonnull);
    if (op) /* one op: its row is complete */
        return json_pack("{s:{s:o, s:{s:s}}, s:[o]}", "properties", "row", row, "op", "const", op,
                         "allOf", full);
    json_t *keys = json_array();
    if (t->pk)
        json_array_append_new(keys, json_string(t->pk->name));
    if (t->person && t->person != t->pk)
        json_array_append_new(keys, json_string(t->person->name));
    json_t *del = json_pack("{s:{s:{s:O, s:{s:O}}}}", "properties", "row", "required", keys,
                            "propertyNames", "enum", keys);
    json_decref(keys);
    return json_pack("{s:{s:o, s:{s:[ss]}}, s:{s:{s:{s:s}}}, s:o, s:o}", "properties", "row", row,
                     "op", "enum", "upsert", "delete", "if", "properties", "op", "const", "upsert",
                     "then", full, "else", del);
}

static json_t *source_schema(void)
{
    json_t *props = json_pack(
        "{s:{s:s, s:s}, s:{s:s, s:i}, s:{s:s, s:i}, s:{s:s, s:s}, s:{s:s, s:s}, s:{s:s, s:s}, "
        "s:{s:s, s:i}, s:{s:s, s:s}}",
        "topic", "type", "string", "description", "the input's topic (absent outside Kafka)",
        "partition", "type", "integer", "minimum", 0, "offset", "type", "integer", "minimum", 0,
        "message_id", "type", "string", "description",
        "the input's id, MSH-10 or a document's id root^extension: by default (pseudonym."
        "message_id keyed) the first 40 hex digits of its keyed HMAC, as sent when configured "
        "plain; empty when the input has none",
        "time", "type", "string", "description",
        "the input's time (MSH-7, a document's effectiveTime), ISO 8601, shifted like the row's "
        "dates; absent when the input has none",
        "spec", "type", "string", "description", "the spec that made the row", "spec_version",
        "type", "integer", "minimum", 0, "rule", "type", "string", "description",
        "the spec's rule that made the row");
    return json_pack("{s:s, s:s, s:o, s:[s], s:{s:[sss]}, s:b}", "description",
                     "where the row came from", "type", "object", "properties", props, "required",
                     "message_id", "dependentRequired", "topic", "partition", "offset",
                     "message_id", "additionalProperties", 0);
}

static json_t *record_schema(unsigned flags)
{
    json_t *standards = json_array(), *tables = json_array(), *per_table = json_array();
    const cg_target_t *tg;
    for (size_t i = 0; (tg = cg_target_at(i)); i++) {
        json_array_append_new(standards, json_string(tg->name));
        size_t n = 0;
        const cg_target_table_t *ts = tg->tables(&n);
        for (size_t k = 0; k < n; k++) {
            const cg_target_table_t *t = &ts[k];
            json_array_append_new(tables, json_string(t->name));
            json_t *then = row_schema(t, flags);
            json_object_set_new(json_object_get(then, "properties"), "standard",
                                json_pack("{s:s}", "const", tg->name));
            json_array_append_new(per_table, json_pack("{s:{s:{s:{s:s}}}, s:o}", "if", "properties",
                                                       "table", "const", t->name, "then", then));
        }
    }
    json_t *trace = json_pack(
        "{s:s, s:s, s:{s:s, s:[ss], s:{s:{s:s}, s:{s:s}, s:{s:s, s:s}}, s:b}}", "description",
        "`cohortgate map --trace` only: per column, the rule and the source of its value", "type",
        "object", "additionalProperties", "type", "object", "required", "rule", "source",
        "properties", "rule", "type", "string", "source", "type", "string", "steps", "type",
        "string", "description",
        "the steps the value took: the coalesce branch, the vocabulary row, the map entry",
        "additionalProperties", 0);
    json_t *props = json_pack(
        "{s:{s:o}, s:{s:o}, s:{s:[ssss]}, s:{s:s, s:s, s:{s:s}, s:b}, s:{s:s}, "
        "s:{s:s, s:s, s:{s:s}}, s:{s:s}, s:o, s:{s:s, s:s, s:{s:s}}}",
        "standard", "enum", standards, "table", "enum", tables, "op", "enum", "upsert", "delete",
        "merge", "retract", "cohorts", "description",
        "the cohorts whose row-level rules the row matched (the topics it went to)", "type",
        "array", "items", "type", "string", "uniqueItems", 1, "row", "type", "object", "meta",
        "description", "facts the table has no column for (absent values left out)", "type",
        "object", "additionalProperties", "type", "string", "source", "$ref", "#/$defs/source",
        "trace", trace, "cohort_rules", "description",
        "`cohortgate map --trace --cohorts` only: per cohort in \"cohorts\", the rule that "
        "matched, as its file writes it",
        "type", "object", "additionalProperties", "type", "string");
    return json_pack("{s:s, s:s, s:o, s:[ssssss], s:b, s:o}", "description",
                     "one row operation: the value of a record on the output and cohort topics",
                     "type", "object", "properties", props, "required", "standard", "table", "op",
                     "cohorts", "row", "source", "additionalProperties", 0, "allOf", per_table);
}

static json_t *quality_schema(void)
{
    json_t *entry = json_pack(
        "{s:s, s:{s:{s:s, s:i}, s:{s:s}, s:{s:s, s:i}, s:{s:s, s:i}, s:{s:s}}, s:[s], s:b}", "type",
        "object", "properties", "position", "type", "integer", "minimum", 0, "xpath", "type",
        "string", "line", "type", "integer", "minimum", 1, "segment", "type", "integer", "minimum",
        0, "segment_name", "type", "string", "required", "position", "additionalProperties", 0);
    json_t *src = json_pack("{s:s, s:{s:{s:s}, s:{s:s, s:i}, s:{s:s, s:i}}, s:[sss], s:b}", "type",
                            "object", "properties", "topic", "type", "string", "partition", "type",
                            "integer", "minimum", 0, "offset", "type", "integer", "minimum", 0,
                            "required", "topic", "partition", "offset", "additionalProperties", 0);
    json_t *props = json_pack(
        "{s:{s:s}, s:{s:s}, s:{s:s}, s:{s:s}, s:{s:s, s:i}, s:{s:s}, s:{s:s}, s:{s:s}, s:{s:s}, "
        "s:{s:s}, s:o, s:o}",
        "kind", "const", "quality", "outcome", "const", "entry_left_out", "stage", "type", "string",
        "spec", "type", "string", "spec_version", "type", "integer", "minimum", 0, "rule", "type",
        "string", "column", "type", "string", "code", "type", "string", "reason", "type", "string",
        "reason_text", "type", "string", "entry", entry, "source", src);
    return json_pack("{s:s, s:s, s:o, s:[ssssssssss], s:b}", "description",
                     "an entry a spec with on_error \"entry\" left out, on the quality topic: "
                     "never a value of the input or anything of the patient",
                     "type", "object", "properties", props, "required", "kind", "outcome", "stage",
                     "spec", "spec_version", "rule", "code", "reason", "reason_text", "entry",
                     "additionalProperties", 0);
}

json_t *cg_target_json_schema(unsigned flags)
{
    json_t *defs = json_pack("{s:o, s:o, s:o}", "record", record_schema(flags), "source",
                             source_schema(), "quality", quality_schema());
    return json_pack(
        "{s:s, s:s, s:s, s:s, s:[{s:s}, {s:s}], s:o}", "$schema",
        "https://json-schema.org/draft/2020-12/schema", "$id",
        (flags & CG_ROW_ENCODE_IDS_AS_STRINGS) ? "urn:cohortgate:records:ids-as-strings"
                                               : "urn:cohortgate:records",
        "title", "cohortgate records", "description",
        "The values cohortgate writes: record envelopes (output and cohort topics, `cohortgate "
        "map`) and quality records (the quality topic). Generated from the target registry by "
        "`cohortgate schema`; README.md, \"The envelope, field by field\", says what they mean.",
        "oneOf", "$ref", "#/$defs/record", "$ref", "#/$defs/quality", "$defs", defs);
}
