/* spec_embed.c - a document inside a message (a rule's "document": an MDM's CDA in OBX-5, as ED
 * Base64 or as text with HL7 escapes): decoded, parsed under the same XML limits as a document
 * that came on its own, and mapped by the spec set's XML specs into the message's rows. The
 * message's state (its paths, lets, identity) is set aside meanwhile and put back after; the
 * patient stays the message's, so the document's rows key to the same person as the message's.
 * Its findings and errors name the segment that held it. Values live in the message's arena. */
#include "spec_mapper.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* What the document's run changes of the message's state. */
typedef struct saved {
    cg_hl7_msg_t *m;
    const spec_t *spec, *nrc;
    const rule_t *rule;
    cg_hl7_scope_t scope;
    cg_slice_t message_id, msg_key[4], time_raw;
    size_t n_msg_key;
    int msg_key_patient;
    cg_err_t (*run_rule)(cg_mapper_t *mp, const rule_t *r);
    cg_err_t (*path_value)(cg_mapper_t *mp, const expr_t *e, spec_val_t *out);
    cg_err_t (*run_rules)(cg_mapper_t *mp, const rule_t *rules, size_t n);
    int (*anchor_place)(cg_mapper_t *mp, const expr_t *e, uint32_t *place);
    spec_val_t *vars;
    const char **var_steps;
} saved_t;

static cg_err_t save(cg_mapper_t *mp, saved_t *s)
{
    *s = (saved_t){.m = mp->m,
                   .spec = mp->spec,
                   .nrc = mp->nrc,
                   .rule = mp->rule,
                   .scope = mp->scope,
                   .message_id = mp->message_id,
                   .time_raw = mp->time_raw,
                   .n_msg_key = mp->n_msg_key,
                   .msg_key_patient = mp->msg_key_patient,
                   .run_rule = mp->run_rule,
                   .path_value = mp->path_value,
                   .run_rules = mp->run_rules,
                   .anchor_place = mp->anchor_place};
    memcpy(s->msg_key, mp->msg_key, sizeof(s->msg_key));
    /* the XML specs' lets take the same slots as the message spec's */
    size_t n = mp->cap_vars + 1;
    if (!(s->vars = cg_arena_alloc(&mp->arena, n * sizeof(*s->vars))))
        return CG_ERR_NOMEM;
    memcpy(s->vars, mp->vars, n * sizeof(*s->vars));
    if (mp->var_steps) {
        if (!(s->var_steps = cg_arena_alloc(&mp->arena, n * sizeof(*s->var_steps))))
            return CG_ERR_NOMEM;
        memcpy(s->var_steps, mp->var_steps, n * sizeof(*s->var_steps));
    }
    return CG_OK;
}

static void restore(cg_mapper_t *mp, const saved_t *s)
{
    size_t n = mp->cap_vars + 1;
    mp->m = s->m;
    mp->spec = s->spec;
    mp->nrc = s->nrc;
    mp->rule = s->rule;
    mp->scope = s->scope;
    mp->message_id = s->message_id;
    memcpy(mp->msg_key, s->msg_key, sizeof(mp->msg_key));
    mp->time_raw = s->time_raw;
    mp->n_msg_key = s->n_msg_key;
    mp->msg_key_patient = s->msg_key_patient;
    mp->run_rule = s->run_rule;
    mp->path_value = s->path_value;
    mp->run_rules = s->run_rules;
    mp->anchor_place = s->anchor_place;
    memcpy(mp->vars, s->vars, n * sizeof(*mp->vars));
    if (s->var_steps)
        memcpy(mp->var_steps, s->var_steps, n * sizeof(*mp->var_steps));
    mp->xnode = NULL;
    mp->column = NULL;
    mp->embedded = 0;
    mp->embed_segment = 0;
}

/* The message's error, when the document made it, at the segment that held the document (the
 * document's own line and column, when known, are in the text), and said to be the document's. */
static void locate(cg_mapper_t *mp)
{
    cg_error_t *e = mp->err;
    if (!e || e->code == CG_OK || e->at != CG_ERROR_AT_NONE || !mp->m)
        return;
    e->at = CG_ERROR_AT_HL7;
    e->segment = mp->scope.cur + 1;
    const char *name = cg_hl7_seg_name(mp->m, mp->scope.cur);
    snprintf(e->seg_name, sizeof(e->seg_name), "%s", name ? name : "");
    cg_slice_t seg = cg_hl7_seg_bytes(mp->m, mp->scope.cur), msg = cg_hl7_msg_bytes(mp->m);
    if (seg.ptr && msg.ptr && seg.ptr >= msg.ptr)
        e->offset = cg_hl7_msg_offset(mp->m) + (size_t)(seg.ptr - msg.ptr);
    static const char pre[] = "embedded document: ";
    size_t n = strlen(e->text), p = sizeof(pre) - 1;
    if (strncmp(e->text, pre, p)) {
        if (n + p >= sizeof(e->text))
            n = sizeof(e->text) - p - 1;
        memmove(e->text + p, e->text, n);
        memcpy(e->text, pre, p);
        e->text[n + p] = '\0';
    }
}

/* The document does not decode: a value-free reason at stage "decode" (the message did). */
static cg_err_t undecodable(cg_mapper_t *mp, cg_err_t code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static cg_err_t undecodable(cg_mapper_t *mp, cg_err_t code, const char *fmt, ...)
{
    char text[sizeof(mp->err->text)];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    int first = mp->err && mp->err->code == CG_OK;
    cg_spec_fail_as(mp, code, "undecodable_document", "%s", text);
    if (first)
        mp->err->stage = "decode";
    locate(mp);
    return code;
}

static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    return c == '+' ? 62 : c == '/' ? 63 : -1;
}

/* Base64 (RFC 4648; line breaks and blanks between groups are skipped, as senders wrap long
 * values) of s[0..n) into the arena; *out_len its length. 0, or the 1-based offset of the first
 * byte that is not Base64 (-1 when out of memory). */
static long long base64(cg_mapper_t *mp, const char *s, size_t n, char **out, size_t *out_len)
{
    unsigned char *o = cg_arena_alloc(&mp->arena, n / 4 * 3 + 4);
    if (!o)
        return -1;
    uint32_t acc = 0;
    size_t k = 0, bits = 0, pad = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == ' ' || c == '\r' || c == '\n' || c == '\t')
            continue;
        if (c == '=') {
            pad++;
            continue;
        }
        int v = b64_value(c);
        if (v < 0 || pad)
            return (long long)i + 1;
        acc = (acc << 6) | (uint32_t)v;
        if ((bits += 6) >= 8) {
            bits -= 8;
            o[k++] = (unsigned char)(acc >> bits);
        }
    }
    if (pad > 2 || bits >= 6)
        return (long long)n;
    *out = (char *)o;
    *out_len = k;
    return 0;
}

static int hex_value(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (unsigned char)(c | 0x20);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Hex digits of s[0..n) into the arena, as base64(). */
static long long hex(cg_mapper_t *mp, const char *s, size_t n, char **out, size_t *out_len)
{
    unsigned char *o = cg_arena_alloc(&mp->arena, n / 2 + 1);
    if (!o)
        return -1;
    size_t k = 0;
    int hi = -1;
    for (size_t i = 0; i < n; i++) {
        int v = hex_value((unsigned char)s[i]);
        if (v < 0)
            return (long long)i + 1;
        if (hi < 0)
            hi = v;
        else
            o[k++] = (unsigned char)(hi << 4 | v), hi = -1;
    }
    if (hi >= 0)
        return (long long)n;
    *out = (char *)o;
    *out_len = k;
    return 0;
}

/* The document's bytes: data as its encoding (HL7 table 0299) says. */
static cg_err_t decode(cg_mapper_t *mp, spec_val_t data, spec_val_t enc, char **doc, size_t *len)
{
    *doc = (char *)data.s;
    *len = data.len;
    int is_b64 = enc.present && enc.len == 6 && !strncasecmp(enc.s, "Base64", 6);
    int is_hex = enc.present && enc.len == 3 && !strncasecmp(enc.s, "Hex", 3);
    if (!is_b64 && !is_hex) {
        if (enc.present && !(enc.len == 1 && (enc.s[0] == 'A' || enc.s[0] == 'a')))
            return undecodable(mp, CG_ERR_XML,
                               "its encoding is none of A, Hex and Base64 "
                               "(HL7 table 0299)");
        return CG_OK;
    }
    /* no larger than the message; the parser refuses it over the XML size limit */
    long long bad =
        is_b64 ? base64(mp, data.s, data.len, doc, len) : hex(mp, data.s, data.len, doc, len);
    if (bad < 0)
        return cg_spec_fail(mp, CG_ERR_NOMEM, "out of memory");
    if (bad)
        return undecodable(mp, CG_ERR_XML, "not valid %s (byte %lld of %u)",
                           is_b64 ? "Base64" : "Hex", bad, data.len);
    return CG_OK;
}

/* Maps the parsed document through the XML specs, the message's state set aside. */
static cg_err_t run_document(cg_mapper_t *mp)
{
    saved_t s;
    if (save(mp, &s))
        return cg_spec_fail(mp, CG_ERR_NOMEM, "out of memory");
    uint32_t seg = mp->scope.cur;
    const char *name = cg_hl7_seg_name(mp->m, seg);
    mp->embedded = 1;
    mp->embed_segment = seg + 1;
    snprintf(mp->embed_seg_name, sizeof(mp->embed_seg_name), "%s", name ? name : "");
    mp->m = NULL;
    mp->nrc = NULL;
    size_t matched = 0;
    cg_err_t rc = cg_spec_xml_run_specs(mp, &matched);
    const spec_t *nrc = mp->nrc;
    restore(mp, &s);
    if (rc) {
        locate(mp);
        return rc;
    }
    /* a document only a "no_research_content" spec takes adds no rows; one no spec takes is
     * an error, as it is on its own */
    if (!matched && !nrc) {
        int first = mp->err->code == CG_OK;
        cg_spec_fail_as(mp, CG_ERR_MAP, "no_spec", "no spec takes it");
        if (first)
            cg_spec_xml_no_spec(mp);
        locate(mp);
        return CG_ERR_MAP;
    }
    return CG_OK;
}

cg_err_t cg_spec_embed_document(cg_mapper_t *mp, uint64_t position)
{
    (void)position; /* the document's rows are keyed by its own identity, not its place */
    const rule_t *r = mp->rule;
    int ok;
    cg_err_t rc = cg_spec_rule_applies(mp, &ok);
    if (rc || !ok)
        return rc;
    spec_val_t data, enc = ABSENT;
    mp->column = "document.data";
    if ((rc = eval(mp, r->doc_data, &data)))
        return rc;
    mp->column = "document.encoding";
    if (r->doc_encoding && (rc = eval(mp, r->doc_encoding, &enc)))
        return rc;
    mp->column = NULL;
    if (!data.present) /* no document in this segment */
        return CG_OK;
    /* the message's patient first: the document's rows are keyed to it */
    if ((rc = cg_spec_patient(mp)))
        return rc;
    char *doc;
    size_t len;
    if ((rc = decode(mp, data, enc, &doc, &len)))
        return rc;
    if (cg_spec_xml_ready(mp))
        return cg_spec_fail(mp, CG_ERR_NOMEM, "out of memory");
    /* the same parser as for a document on its own: no entities, no DTD fetch, the size,
     * depth, attribute and node limits */
    cg_error_t xe;
    if ((rc = cg_xml_parse(mp->xdoc, doc, len, &xe))) {
        if (xe.line)
            return undecodable(mp, rc, "line %d, column %d: %s", xe.line, xe.column, xe.text);
        return undecodable(mp, rc, "%s", xe.text);
    }
    /* a document that fails leaves nothing behind: neither rows nor findings */
    size_t rows = mp->n_rows, findings = mp->n_quality;
    if ((rc = run_document(mp))) {
        mp->n_rows = rows;
        mp->n_quality = findings;
    }
    return rc;
}
