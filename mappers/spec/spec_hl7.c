/* spec_hl7.c - specs over HL7 v2 messages: path values (raw bytes used in place when decoding
 * would not change them), rules over a foreach's segments, and the entry points
 * cg_mapper_map_hl7 and cg_mapper_map_msg (cg_spec.h).
 */
#include "spec_mapper.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

static int path_has_all(const cg_hl7_path_t *p)
{
    return p->seg_index == CG_HL7_ALL || p->rep == CG_HL7_ALL;
}

/* Whether decoding raw would give back its bytes unchanged: no escape character in it (unless
 * literal), and UTF-8 that is valid (what cg_hl7_decode checks for a UTF-8 message) or ASCII in a
 * charset that is a superset of ASCII. Anything else goes through the decoder, which also reports
 * the errors. */
static int raw_is_decoded(const cg_mapper_t *mp, cg_slice_t raw, int literal)
{
    const unsigned char *q = (const unsigned char *)raw.ptr, *end = q + raw.len;
    const unsigned char esc = literal ? 0 : (unsigned char)mp->esc;
    /* eight bytes a step while they are ASCII without the escape character (a 0x00 escape is
     * "none": matching NUL bytes then only sends them to the byte loop, which lets them pass) */
    const uint64_t ones = 0x0101010101010101u, high = 0x8080808080808080u, em = ones * esc;
    while (end - q >= 8) {
        uint64_t w, x;
        memcpy(&w, q, 8);
        x = w ^ em;
        if ((w | ((x - ones) & ~x)) & high)
            break;
        q += 8;
    }
    while (q < end) {
        unsigned char c = *q;
        if (c < 0x80) {
            if (c == esc && esc)
                return 0;
            q++;
            continue;
        }
        size_t l = mp->cs_utf8 ? cg_utf8_seq_len(q, (size_t)(end - q)) : 0;
        if (!l)
            return 0;
        q += l;
    }
    return mp->cs_utf8 || mp->cs_ascii;
}

cg_err_t cg_spec_hl7_path_value(cg_mapper_t *mp, const cg_hl7_path_t *p, spec_val_t *out)
{
    cg_hl7_error_t he;
    cg_buf_reset(&mp->scratch);
    *out = ABSENT;
    if (path_has_all(p)) {
        size_t count = 0;
        if (cg_hl7_path_get(mp->m, p, mp->scope, '~', &mp->scratch, &count, &he) != CG_OK)
            return cg_spec_fail(mp, he.code, "%s", he.reason);
        if (!count)
            return CG_OK;
    } else {
        cg_hl7_match_t match;
        if (!cg_hl7_path_first(mp->m, p, mp->scope, &match))
            return CG_OK;
        if (raw_is_decoded(mp, match.raw, match.literal)) {
            /* the usual case: the value is its raw bytes, used in place (valid until the next
             * message) instead of decoded into scratch and copied to the arena */
            if (match.raw.len == 0 || (match.raw.len == 2 && !memcmp(match.raw.ptr, "\"\"", 2)))
                return CG_OK;
            *out = (spec_val_t){match.raw.ptr, match.raw.len, 1};
            return CG_OK;
        }
        cg_err_t rc = match.literal ? cg_hl7_decode_noescape(mp->m, match.raw, &mp->scratch, &he)
                                    : cg_hl7_decode(mp->m, match.raw, &mp->scratch, &he);
        if (rc != CG_OK)
            return cg_spec_fail(mp, rc, "%s", he.reason);
    }
    /* HL7's explicit null "" and an empty value both mean: no value */
    if (mp->scratch.len == 0 || (mp->scratch.len == 2 && !memcmp(mp->scratch.data, "\"\"", 2)))
        return CG_OK;
    *out = cg_spec_val_copy(mp, mp->scratch.data, mp->scratch.len);
    return out->present ? CG_OK : cg_spec_fail(mp, CG_ERR_NOMEM, "out of memory");
}

cg_err_t cg_spec_hl7_run_rule(cg_mapper_t *mp, const rule_t *r)
{
    cg_hl7_scope_t msg_scope = cg_hl7_scope_message(mp->m);
    if (!r->has_foreach) {
        mp->scope = msg_scope;
        return cg_spec_emit_row(mp, 1);
    }
    cg_hl7_iter_t it;
    cg_hl7_match_t match;
    uint64_t pos = 0;
    cg_hl7_path_begin(&it, mp->m, &r->foreach, msg_scope);
    while (cg_hl7_path_next(&it, &match)) {
        mp->scope = cg_hl7_scope_at(mp->m, match.seg);
        cg_err_t rc = cg_spec_emit_row(mp, ++pos);
        if (rc)
            return rc;
    }
    return CG_OK;
}

static int trigger_matches(const spec_t *s, cg_slice_t type, cg_slice_t event)
{
    for (size_t i = 0; i < s->n_triggers; i++) {
        const trigger_t *t = &s->triggers[i];
        if (cg_slice_eq(type, t->type) && (!t->event[0] || cg_slice_eq(event, t->event)))
            return 1;
    }
    return 0;
}

static void msh_value(cg_mapper_t *mp, uint32_t field, uint32_t comp, cg_slice_t *out)
{
    cg_slice_t raw;
    *out = (cg_slice_t){"", 0};
    if (cg_hl7_seg_count(mp->m) && cg_hl7_get_raw(mp->m, 0, field, 1, comp, 0, &raw))
        *out = raw; /* MSH-9 and MSH-10 are plain codes; no unescaping needed */
}

cg_err_t cg_mapper_map_msg(cg_mapper_t *mp, cg_hl7_msg_t *msg, const cg_row_t **rows,
                           size_t *n_rows, cg_map_error_t *err)
{
    cg_map_error_t local;
    cg_spec_begin_message(mp, err, &local, rows, n_rows);
    mp->m = msg;

    /* for raw_is_decoded: the same charset classes as the decoder's (hl7_parse.c) */
    const cg_hl7_delims_t *d = cg_hl7_msg_delims(msg);
    const char *cs = cg_hl7_msg_charset(msg);
    mp->esc = d ? d->esc : 0;
    mp->cs_utf8 = cs && (!strcasecmp(cs, "UTF-8") || !strcasecmp(cs, "UTF8"));
    mp->cs_ascii = cs && cs[0] && strncasecmp(cs, "UTF-16", 6) && strncasecmp(cs, "UTF-32", 6) &&
                   strncasecmp(cs, "UCS", 3);

    cg_slice_t type, event;
    msh_value(mp, 9, 1, &type);
    msh_value(mp, 9, 2, &event);
    msh_value(mp, 10, 0, &mp->message_id);
    size_t matched = 0;
    for (size_t i = 0; i < mp->ss->n_specs; i++) {
        const spec_t *s = &mp->ss->specs[i];
        if (s->format != SF_HL7V2 || !trigger_matches(s, type, event))
            continue;
        cg_err_t rc = cg_spec_try_spec(mp, s, &matched);
        if (rc)
            return rc;
    }
    if (!matched) {
        mp->err->code = CG_ERR_MAP;
        mp->err->stage = "select";
        snprintf(mp->err->reason, sizeof(mp->err->reason), "no spec takes %.*s^%.*s messages",
                 (int)type.len, type.ptr, (int)event.len, event.ptr);
        return CG_ERR_MAP;
    }
    cg_spec_finish_rows(mp, rows, n_rows);
    return CG_OK;
}

cg_err_t cg_mapper_map_hl7(cg_mapper_t *mp, const char *buf, size_t len, const cg_row_t **rows,
                           size_t *n_rows, cg_map_error_t *err)
{
    cg_hl7_error_t he;
    *rows = NULL;
    *n_rows = 0;
    cg_err_t rc = cg_hl7_parse(mp->msg, buf, len, &he);
    if (rc) {
        char where[384];
        return cg_spec_map_error(err, rc, "decode",
                                 cg_hl7_error_location(&he, where, sizeof(where)));
    }
    return cg_mapper_map_msg(mp, mp->msg, rows, n_rows, err);
}
