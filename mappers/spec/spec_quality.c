/* spec_quality.c - entry-level isolation (cg_spec.h): a foreach node whose row fails under
 * on_error "entry" is left out and becomes a quality finding, and findings are written out for
 * people (cg_quality_format) and as quality records (cg_quality_encode). A finding never holds a
 * value of the input: the error text of a failure often quotes one, so only its value-free
 * problem name (cg_spec_fail_as) and its place are kept. */
#include "spec_mapper.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A failure's problem named by its code, when its site gave no name. */
static const char *reason_of(cg_err_t code)
{
    switch (code) {
    case CG_ERR_REQUIRED:
        return "required_missing";
    case CG_ERR_CHARSET:
        return "invalid_charset";
    case CG_ERR_HL7_SYNTAX:
        return "undecodable_field";
    case CG_ERR_HL7_LIMIT:
        return "over_limit";
    default:
        return "map_failed";
    }
}

static const struct {
    const char *reason, *text;
} reason_texts[] = {
    {"invalid_datetime", "not an HL7 date/time (YYYY[MM[DD[HHMM[SS]]]])"},
    {"invalid_number", "not a number the column takes"},
    {"invalid_value", "a value the column's type does not take"},
    {"required_missing", "a required value is missing"},
    {"regex_limit", "a regex gave up at its match limit"},
    {"invalid_charset", "bytes not valid in the declared character set"},
    {"undecodable_field", "a field that does not decode"},
    {"over_limit", "a value over a decoder limit"},
    {"map_failed", "the row could not be made"},
    {"undecodable_document", "an embedded document that does not decode"},
    {"no_spec", "an embedded document no spec takes"},
};

const char *cg_quality_reason_text(const char *reason)
{
    for (size_t i = 0; reason && i < sizeof(reason_texts) / sizeof(reason_texts[0]); i++)
        if (!strcmp(reason, reason_texts[i].reason))
            return reason_texts[i].text;
    return "";
}

cg_err_t cg_spec_entry_failed(cg_mapper_t *mp, cg_err_t rc, uint64_t position)
{
    /* a budget (time, memory) is the message's, not the entry's: the whole input fails */
    if (!mp->spec->on_error_entry || rc == CG_ERR_NOMEM || rc == CG_ERR_MAP_LIMIT ||
        cg_err_classify(rc) != CG_ERR_CLASS_DEADLETTER)
        return rc;
    if (mp->n_quality == mp->cap_quality) {
        size_t cap = mp->cap_quality ? mp->cap_quality * 2 : 8;
        cg_quality_t *q = realloc(mp->quality, cap * sizeof(*q));
        if (!q)
            return rc; /* the input fails with the entry's error: nothing is lost */
        mp->quality = q;
        mp->cap_quality = cap;
    }
    cg_error_t *e = mp->err;
    cg_quality_t *q = &mp->quality[mp->n_quality];
    *q = (cg_quality_t){.stage = "map",
                        .spec = mp->spec->name,
                        .spec_version = mp->spec->version,
                        .rule = mp->rule ? mp->rule->name : "",
                        .column = mp->column,
                        .code = e->code ? e->code : rc,
                        .reason = mp->problem ? mp->problem : reason_of(e->code ? e->code : rc),
                        .entry = position};
    if (mp->xnode) {
        char path[1024];
        size_t n = cg_xml_node_path(mp->xnode, path, sizeof(path));
        q->xpath = cg_arena_strndup(&mp->arena, path, n < sizeof(path) ? n : sizeof(path) - 1);
        if (!q->xpath)
            return rc;
        q->line = cg_xml_node_line(mp->xnode);
        if (mp->embed_segment) { /* a message's embedded document: the segment that held it */
            q->segment = mp->embed_segment;
            memcpy(q->seg_name, mp->embed_seg_name, sizeof(q->seg_name));
        }
    } else if (mp->m) {
        q->segment = mp->scope.cur + 1;
        const char *name = cg_hl7_seg_name(mp->m, mp->scope.cur);
        snprintf(q->seg_name, sizeof(q->seg_name), "%s", name ? name : "");
    }
    mp->n_quality++;
    /* the input goes on: its error and the row in progress are forgotten (the row was never
     * added: cg_spec_emit_row adds a row only once every column is made) */
    memset(e, 0, sizeof(*e));
    mp->problem = NULL;
    mp->column = NULL;
    return CG_OK;
}

size_t cg_mapper_quality(const cg_mapper_t *mp, const cg_quality_t **items)
{
    *items = mp->quality;
    return mp->quality_done ? mp->n_quality : 0;
}

const char *cg_quality_format(const cg_quality_t *q, char *buf, size_t size)
{
    char where[1100];
    char seg[32] = "";
    if (q->xpath && q->segment) /* in a document embedded in that segment */
        snprintf(seg, sizeof(seg), " in segment %u %s", q->segment, q->seg_name);
    if (q->xpath && q->line)
        snprintf(where, sizeof(where), "%s (line %d)%s", q->xpath, q->line, seg);
    else if (q->xpath)
        snprintf(where, sizeof(where), "%s%s", q->xpath, seg);
    else
        snprintf(where, sizeof(where), "segment %u %s", q->segment, q->seg_name);
    snprintf(buf, size, "rule %s%s%s, entry %llu at %s: left out: %s, %s", q->rule,
             q->column ? ", column " : "", q->column ? q->column : "", (unsigned long long)q->entry,
             where, q->reason, cg_quality_reason_text(q->reason));
    return buf;
}

static void put_str(cg_buf_t *out, const char *key, const char *v)
{
    cg_buf_printf(out, ",\"%s\":", key);
    cg_buf_put_json_str(out, v ? v : "", v ? strlen(v) : 0);
}

cg_err_t cg_quality_encode(const cg_quality_t *q, const cg_row_source_t *src, cg_buf_t *out)
{
    cg_buf_puts(out, "{\"kind\":\"quality\",\"outcome\":\"entry_left_out\"");
    put_str(out, "stage", q->stage);
    put_str(out, "spec", q->spec);
    cg_buf_printf(out, ",\"spec_version\":%d", q->spec_version);
    put_str(out, "rule", q->rule);
    if (q->column)
        put_str(out, "column", q->column);
    put_str(out, "code", cg_err_name(q->code));
    put_str(out, "reason", q->reason);
    put_str(out, "reason_text", cg_quality_reason_text(q->reason));
    cg_buf_printf(out, ",\"entry\":{\"position\":%llu", (unsigned long long)q->entry);
    if (q->xpath) {
        put_str(out, "xpath", q->xpath);
        if (q->line)
            cg_buf_printf(out, ",\"line\":%d", q->line);
    }
    if (!q->xpath || q->segment) {
        cg_buf_printf(out, ",\"segment\":%u", q->segment);
        put_str(out, "segment_name", q->seg_name);
    }
    cg_buf_putc(out, '}');
    if (src && src->topic) {
        cg_buf_puts(out, ",\"source\":{\"topic\":");
        cg_buf_put_json_str(out, src->topic, strlen(src->topic));
        cg_buf_printf(out, ",\"partition\":%d,\"offset\":%lld}", (int)src->partition,
                      (long long)src->offset);
    }
    cg_buf_putc(out, '}');
    return out->failed ? CG_ERR_NOMEM : CG_OK;
}
