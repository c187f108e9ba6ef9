/* cli_schema.c - `cohortgate schema`: the JSON Schema of what cohortgate writes. The record and
 * quality values come from the target registry (cg_target_json_schema); this adds what the
 * gateway wraps them in: the Kafka headers of records, dead letters and quality records, and the
 * NDJSON line of a Kafka message (the file sink's lines, `run --report-ndjson`). */
#include "cg_cli.h"
#include "cg_err.h"
#include "cg_row.h"
#include "cg_target.h"

#include <getopt.h>
#include <jansson.h>
#include <string.h>

static void usage(FILE *out)
{
    fprintf(out,
            "usage: cohortgate schema [--ids-as-strings]\n\n"
            "Print the JSON Schema (draft 2020-12) of the records cohortgate writes: the record\n"
            "envelope of every table of every target, the quality, audit and outcome records,\n"
            "the Kafka headers of each kind, and the NDJSON line of a Kafka message.\n"
            "The repository keeps it as specs/schema/records.schema.json.\n\n"
            "options:\n"
            "      --ids-as-strings  64-bit ids typed as strings, as output.ids_as_strings\n"
            "                        writes them\n"
            "  -h, --help            show this help\n");
}

#define DIGITS "^[0-9]+$"

/* The cg.source.* headers every record, dead letter and quality record carries. */
static json_t *source_headers(json_t *props, json_t *req)
{
    json_object_set_new(props, "cg.source.topic",
                        json_pack("{s:s, s:i}", "type", "string", "minLength", 1));
    json_object_set_new(props, "cg.source.partition",
                        json_pack("{s:s, s:s}", "type", "string", "pattern", DIGITS));
    json_object_set_new(props, "cg.source.offset",
                        json_pack("{s:s, s:s}", "type", "string", "pattern", DIGITS));
    json_array_append_new(req, json_string("cg.source.topic"));
    json_array_append_new(req, json_string("cg.source.partition"));
    json_array_append_new(req, json_string("cg.source.offset"));
    return props;
}

static json_t *headers_object(const char *desc, json_t *props, json_t *req)
{
    return json_pack("{s:s, s:s, s:o, s:o, s:b}", "description", desc, "type", "object",
                     "properties", props, "required", req, "additionalProperties", 0);
}

/* A record's headers; released: a subscriber's record (graded release), whose headers name the
 * subscriber, policy and level and carry no source position. */
static json_t *row_headers(json_t *tables, int released)
{
    json_t *props = json_object(), *req = json_array();
    if (released) {
        json_object_set_new(props, "cg.subscriber",
                            json_pack("{s:s, s:i}", "type", "string", "minLength", 1));
        json_object_set_new(props, "cg.policy",
                            json_pack("{s:s, s:s}", "description",
                                      "LABEL+CATALOGUE.DIGEST: the policy the record was "
                                      "released under",
                                      "type", "string"));
        json_object_set_new(props, "cg.level",
                            json_pack("{s:s, s:s, s:s}", "description",
                                      "the row's level (GB/T 39725-2020), at most the "
                                      "subscriber's max_level",
                                      "type", "string", "pattern", "^[1-5]$"));
        for (const char *const *h =
                 (const char *const[]){"cg.subscriber", "cg.policy", "cg.level", NULL};
             *h; h++)
            json_array_append_new(req, json_string(*h));
    } else {
        source_headers(props, req);
    }
    json_object_set_new(props, "cg.document",
                        json_pack("{s:s, s:s}", "description",
                                  "on the records of a document (an XML input): its id as the "
                                  "record's source.message_id spells it (a subscriber's: its "
                                  "pseudonym); on an order's results: order: and the "
                                  "record's meta.order_id",
                                  "type", "string"));
    json_object_set_new(props, "cg.spec", json_pack("{s:s}", "type", "string"));
    json_object_set_new(props, "cg.spec.version",
                        json_pack("{s:s, s:s}", "type", "string", "pattern", DIGITS));
    json_object_set_new(props, "cg.table", json_pack("{s:O}", "enum", tables));
    json_object_set_new(props, "cg.rule", json_pack("{s:s}", "type", "string"));
    json_object_set_new(props, "cg.op",
                        json_pack("{s:[ssss]}", "enum", "upsert", "delete", "merge", "retract"));
    for (const char *const *h = (const char *const[]){"cg.spec", "cg.spec.version", "cg.table",
                                                      "cg.rule", "cg.op", NULL};
         *h; h++)
        json_array_append_new(req, json_string(*h));
    return headers_object(released ? "the headers of a record released to a subscriber (its "
                                     "release.subscribers[].topic)"
                                   : "the headers of a record (output and cohort topics)",
                          props, req);
}

static json_t *audit_headers(void)
{
    json_t *props = json_object(), *req = json_array();
    json_object_set_new(props, "cg.subscriber", json_pack("{s:s}", "type", "string"));
    json_object_set_new(props, "cg.policy", json_pack("{s:s}", "type", "string"));
    json_array_append_new(req, json_string("cg.subscriber"));
    json_array_append_new(req, json_string("cg.policy"));
    return headers_object("the headers of an audit record (release.audit_topic; its key is the "
                          "subscriber's name)",
                          props, req);
}

/* What one audit record says: a subscriber's releases since its last one. */
static json_t *audit_schema(json_t *tables)
{
    json_t *count = json_pack("{s:s, s:i}", "type", "integer", "minimum", 0);
    json_t *levels =
        json_pack("{s:s, s:{s:s}, s:O, s:i}", "type", "object", "propertyNames", "pattern",
                  "^[1-5]$", "additionalProperties", count, "minProperties", 1);
    json_t *props = json_pack(
        "{s:{s:s}, s:{s:s}, s:{s:s}, s:{s:s}, s:{s:s}, s:{s:s, s:i, s:i}, s:{s:s, s:s}, "
        "s:{s:s, s:s}, s:O, s:{s:s, s:{s:O}, s:o}, s:{s:s, s:{s:O, s:O, s:O, s:O}, s:[ssss], "
        "s:b}}",
        "type", "const", "release", "subscriber", "type", "string", "agreement", "type", "string",
        "policy", "type", "string", "catalogue", "type", "string", "max_level", "type", "integer",
        "minimum", 1, "maximum", 5, "from", "type", "string", "format", "date-time", "to", "type",
        "string", "format", "date-time", "released_total", count, "released", "type", "object",
        "propertyNames", "enum", tables, "additionalProperties", levels, "withheld", "type",
        "object", "properties", "table_not_granted", count, "not_in_cohort", count, "above_level",
        count, "agreement_expired", count, "required", "table_not_granted", "not_in_cohort",
        "above_level", "agreement_expired", "additionalProperties", 0);
    json_decref(count);
    return json_pack("{s:s, s:s, s:o, s:[sssssssssss], s:b}", "description",
                     "an audit record (release.audit_topic): what one subscriber was released, by "
                     "table and level, and what was withheld, by reason, from `from` to `to`",
                     "type", "object", "properties", props, "required", "type", "subscriber",
                     "agreement", "policy", "catalogue", "max_level", "from", "to",
                     "released_total", "released", "withheld", "additionalProperties", 0);
}

static json_t *dead_letter_headers(void)
{
    json_t *props = json_object(), *req = json_array(), *codes = json_array();
    source_headers(props, req);
    for (int e = 1; e < CG_ERR__COUNT; e++)
        if (cg_err_classify((cg_err_t)e) == CG_ERR_CLASS_DEADLETTER)
            json_array_append_new(codes, json_string(cg_err_name((cg_err_t)e)));
    json_object_set_new(props, "cg.error.stage",
                        json_pack("{s:s, s:[ssss]}", "description",
                                  "where it failed: decode, select (no spec took it), map, or "
                                  "listen (marked undecodable by the MLLP listener)",
                                  "enum", "decode", "select", "map", "listen"));
    json_object_set_new(props, "cg.error.code", json_pack("{s:o}", "enum", codes));
    json_object_set_new(props, "cg.error.class",
                        json_pack("{s:s}", "const", cg_err_class_name(CG_ERR_CLASS_DEADLETTER)));
    json_object_set_new(props, "cg.error.reason",
                        json_pack("{s:s, s:s}", "description",
                                  "names the field, the rule and the problem, never the value",
                                  "type", "string"));
    json_object_set_new(props, "cg.spec",
                        json_pack("{s:s, s:i}", "type", "string", "minLength", 1));
    json_object_set_new(props, "cg.spec.version",
                        json_pack("{s:s, s:s}", "type", "string", "pattern", DIGITS));
    for (const char *const *h = (const char *const[]){"cg.error.stage", "cg.error.code",
                                                      "cg.error.class", "cg.error.reason", NULL};
         *h; h++)
        json_array_append_new(req, json_string(*h));
    json_t *o = headers_object("the headers of a dead letter (its value and key are the input's "
                               "original bytes); cg.spec and cg.spec.version when a spec had been "
                               "chosen",
                               props, req);
    json_object_set_new(
        o, "dependentRequired",
        json_pack("{s:[s], s:[s]}", "cg.spec", "cg.spec.version", "cg.spec.version", "cg.spec"));
    return o;
}

static json_t *quality_headers(void)
{
    json_t *props = json_object(), *req = json_array();
    source_headers(props, req);
    json_object_set_new(props, "cg.spec", json_pack("{s:s}", "type", "string"));
    json_object_set_new(props, "cg.spec.version",
                        json_pack("{s:s, s:s}", "type", "string", "pattern", DIGITS));
    json_object_set_new(props, "cg.rule", json_pack("{s:s}", "type", "string"));
    json_object_set_new(props, "cg.quality.reason", json_pack("{s:s}", "type", "string"));
    for (const char *const *h = (const char *const[]){"cg.spec", "cg.spec.version", "cg.rule",
                                                      "cg.quality.reason", NULL};
         *h; h++)
        json_array_append_new(req, json_string(*h));
    return headers_object("the headers of a quality record (it has no key)", props, req);
}

static json_t *outcome_headers(void)
{
    json_t *props = json_object(), *req = json_array();
    source_headers(props, req);
    json_object_set_new(props, "cg.outcome",
                        json_pack("{s:[ssss]}", "enum", "records", "no_rows", "no_research_content",
                                  "dead_letter"));
    json_array_append_new(req, json_string("cg.outcome"));
    return headers_object("the headers of an outcome record (output.outcome_topic; its key is the "
                          "input's \"topic:partition\")",
                          props, req);
}

/* One consumed input's outcome (output.outcome_topic): what a reconciler counts. */
static json_t *outcome_schema(void)
{
    json_t *count = json_pack("{s:s, s:i}", "type", "integer", "minimum", 0);
    json_t *source =
        json_pack("{s:s, s:{s:{s:s, s:i}, s:{s:s, s:i}, s:{s:s, s:i}}, s:[sss], s:b}", "type",
                  "object", "properties", "topic", "type", "string", "minLength", 1, "partition",
                  "type", "integer", "minimum", 0, "offset", "type", "integer", "minimum", 0,
                  "required", "topic", "partition", "offset", "additionalProperties", 0);
    json_t *props = json_pack(
        "{s:{s:s}, s:{s:[ssss]}, s:{s:s, s:s}, s:O, s:O, s:{s:s, s:s}, s:{s:s, s:[sss]}, "
        "s:{s:s, s:s}, s:o}",
        "kind", "const", "outcome", "outcome", "enum", "records", "no_rows", "no_research_content",
        "dead_letter", "type", "description",
        "the message type as the metric's type label: the selecting spec's trigger, an XML "
        "root's name, or the input's inputs[] entry that decided; absent when unknown",
        "type", "string", "records", count, "quality", count, "spec", "description",
        "no_research_content: the declaring spec", "type", "string", "stage", "description",
        "dead_letter: where it failed (its reason is the dead letter's, which may quote a value)",
        "enum", "decode", "select", "map", "code", "description", "dead_letter: the error code",
        "type", "string", "source", source);
    json_decref(count);
    return json_pack(
        "{s:s, s:s, s:o, s:[sss], s:b}", "description",
        "how one consumed input ended, on output.outcome_topic, in the same transaction as its "
        "records exactly-once: records and quality counts, or a dead letter's stage and code; "
        "never a value of the input or anything of the patient",
        "type", "object", "properties", props, "required", "kind", "outcome", "source",
        "additionalProperties", 0);
}

/* A Kafka message as one NDJSON line: which headers it carries says what its value is. */
static json_t *kafka_message(void)
{
    json_t *str = json_pack("{s:s}", "type", "string");
    json_t *props =
        json_pack("{s:O, s:{s:[ss]}, s:{s:s, s:s, s:s}, s:{s:s, s:{s:s}}}", "topic", str, "key",
                  "type", "string", "null", "value", "description",
                  "the message's bytes as text: a record (#/$defs/record), a quality record "
                  "(#/$defs/quality), an audit record (#/$defs/audit) or an outcome record "
                  "(#/$defs/outcome) as JSON, or a dead "
                  "letter's original input",
                  "type", "string", "contentMediaType", "application/json", "headers", "type",
                  "object", "additionalProperties", "type", "string");
    json_decref(str);
    /* a dead letter's headers, else a quality record's, else a released record's, else an
     * audit record's, else a record's: the first header each has that the next ones lack */
    static const char *const kinds[][2] = {{"cg.error.code", "dead_letter_headers"},
                                           {"cg.outcome", "outcome_headers"},
                                           {"cg.quality.reason", "quality_headers"},
                                           {"cg.level", "released_headers"},
                                           {"cg.subscriber", "audit_headers"}};
    json_t *rule =
        json_pack("{s:{s:{s:s}}}", "properties", "headers", "$ref", "#/$defs/record_headers");
    for (size_t i = sizeof(kinds) / sizeof(kinds[0]); i-- > 0;) {
        char ref[64];
        snprintf(ref, sizeof(ref), "#/$defs/%s", kinds[i][1]);
        rule = json_pack("{s:{s:{s:{s:[s]}}}, s:{s:{s:{s:s}}}, s:o}", "if", "properties", "headers",
                         "required", kinds[i][0], "then", "properties", "headers", "$ref", ref,
                         "else", rule);
    }
    json_t *by_kind = json_pack("[o]", rule);
    return json_pack("{s:s, s:s, s:o, s:[sss], s:b, s:o}", "description",
                     "a Kafka message as one NDJSON line: the file sink's output and `cohortgate "
                     "run --report-ndjson`",
                     "type", "object", "properties", props, "required", "topic", "value", "headers",
                     "additionalProperties", 0, "allOf", by_kind);
}

int cg_cli_schema(int argc, char **argv)
{
    static const struct option opts[] = {
        {"ids-as-strings", no_argument, NULL, 'I'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    unsigned flags = 0;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'I':
            flags |= CG_ROW_ENCODE_IDS_AS_STRINGS;
            break;
        case 'h':
            usage(stdout);
            return CG_EXIT_OK;
        default:
            usage(stderr);
            return CG_EXIT_USAGE;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "cohortgate schema: unexpected argument\n\n");
        usage(stderr);
        return CG_EXIT_USAGE;
    }
    json_t *schema = cg_target_json_schema(flags);
    json_t *defs = schema ? json_object_get(schema, "$defs") : NULL;
    json_t *tables = json_object_get(
        json_object_get(json_object_get(json_object_get(defs, "record"), "properties"), "table"),
        "enum");
    if (!tables || json_object_set_new(defs, "record_headers", row_headers(tables, 0)) ||
        json_object_set_new(defs, "released_headers", row_headers(tables, 1)) ||
        json_object_set_new(defs, "audit_headers", audit_headers()) ||
        json_object_set_new(defs, "audit", audit_schema(tables)) ||
        json_array_append_new(json_object_get(schema, "oneOf"),
                              json_pack("{s:s}", "$ref", "#/$defs/audit")) ||
        json_object_set_new(defs, "dead_letter_headers", dead_letter_headers()) ||
        json_object_set_new(defs, "quality_headers", quality_headers()) ||
        json_object_set_new(defs, "outcome_headers", outcome_headers()) ||
        json_object_set_new(defs, "outcome", outcome_schema()) ||
        json_array_append_new(json_object_get(schema, "oneOf"),
                              json_pack("{s:s}", "$ref", "#/$defs/outcome")) ||
        json_object_set_new(defs, "kafka_message", kafka_message())) {
        fprintf(stderr, "cohortgate schema: out of memory\n");
        json_decref(schema);
        return CG_EXIT_FAILURE;
    }
    int rc = json_dumpf(schema, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    fputc('\n', stdout);
    json_decref(schema);
    return rc ? CG_EXIT_FAILURE : CG_EXIT_OK;
}
