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
            "envelope of every table of every target, the quality record, the Kafka headers of\n"
            "records, dead letters and quality records, and the NDJSON line of a Kafka message.\n"
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

static json_t *record_headers(json_t *tables)
{
    json_t *props = json_object(), *req = json_array();
    source_headers(props, req);
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
    return headers_object("the headers of a record (output and cohort topics)", props, req);
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

/* A Kafka message as one NDJSON line: which headers it carries says what its value is. */
static json_t *kafka_message(void)
{
    json_t *str = json_pack("{s:s}", "type", "string");
    json_t *props =
        json_pack("{s:O, s:{s:[ss]}, s:{s:s, s:s, s:s}, s:{s:s, s:{s:s}}}", "topic", str, "key",
                  "type", "string", "null", "value", "description",
                  "the message's bytes as text: a record (#/$defs/record) or a quality record "
                  "(#/$defs/quality) as JSON, or a dead letter's original input",
                  "type", "string", "contentMediaType", "application/json", "headers", "type",
                  "object", "additionalProperties", "type", "string");
    json_decref(str);
    /* a dead letter's headers, else a quality record's, else a record's */
    json_t *by_kind = json_pack(
        "[{s:{s:{s:{s:[s]}}}, s:{s:{s:{s:s}}}, "
        "s:{s:{s:{s:{s:[s]}}}, s:{s:{s:{s:s}}}, s:{s:{s:{s:s}}}}}]",
        "if", "properties", "headers", "required", "cg.error.code", "then", "properties", "headers",
        "$ref", "#/$defs/dead_letter_headers", "else", "if", "properties", "headers", "required",
        "cg.quality.reason", "then", "properties", "headers", "$ref", "#/$defs/quality_headers",
        "else", "properties", "headers", "$ref", "#/$defs/record_headers");
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
    if (!tables || json_object_set_new(defs, "record_headers", record_headers(tables)) ||
        json_object_set_new(defs, "dead_letter_headers", dead_letter_headers()) ||
        json_object_set_new(defs, "quality_headers", quality_headers()) ||
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
