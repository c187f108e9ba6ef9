/* spec_hl7_format.c - the hl7v2 input format (cg_spec_format.h): its entry in the format table,
 * and its path language for the compiler: a spec's "input" (which message types), paths such as
 * "OBX-5.1" with the ids that let the evaluator memoize equal paths, and a rule's foreach over
 * segments. Messages are mapped by spec_hl7.c; path values are read by spec_hl7_value.c. */
#include "spec_compile.h"
#include "spec_mapper.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#define err_at     cg_spec_cc_err
#define alloc      cg_spec_cc_alloc
#define check_keys cg_spec_cc_check_keys

static int compile_path(cc_t *c, const json_t *at, const char *text, cg_hl7_path_t *out)
{
    cg_error_t e;
    if (cg_hl7_path_compile(out, text, strlen(text), &e) == CG_OK)
        return 0;
    cg_spec_cc_err_in(c, at, cg_spec_cc_column(at, text, e.column), e.text);
    return -1;
}

/* Gives e (a compiled path) its path_id: equal paths share one, so that a value read by one
 * rule is found in the memo by the next; computed once here, not hashed per lookup. */
static void set_path_id(cc_t *c, expr_t *e)
{
    const cg_hl7_path_t *p = &e->u.path;
    cg_specset_t *ss = c->ss;
    if (p->seg_index == CG_HL7_ALL || p->rep == CG_HL7_ALL)
        return;
    for (size_t i = 0; i < ss->n_paths; i++) {
        const cg_hl7_path_t *q = ss->paths[i];
        if (cg_hl7_path_equal(q, p)) {
            e->path_id = (uint32_t)i + 1;
            ss->path_uses[i]++;
            return;
        }
    }
    if (ss->n_paths == ss->cap_paths) { /* in the arena: the old arrays are left behind, small */
        size_t cap = ss->cap_paths ? ss->cap_paths * 2 : 64;
        const cg_hl7_path_t **np = alloc(c, cap * sizeof(*np));
        expr_t **nf = alloc(c, cap * sizeof(*nf));
        uint32_t *nu = alloc(c, cap * sizeof(*nu));
        if (!np || !nf || !nu)
            return; /* not memoized, still correct */
        if (ss->n_paths) {
            memcpy(np, ss->paths, ss->n_paths * sizeof(*np));
            memcpy(nf, ss->path_first, ss->n_paths * sizeof(*nf));
            memcpy(nu, ss->path_uses, ss->n_paths * sizeof(*nu));
        }
        ss->paths = np;
        ss->path_first = nf;
        ss->path_uses = nu;
        ss->cap_paths = cap;
    }
    ss->path_first[ss->n_paths] = e;
    ss->path_uses[ss->n_paths] = 1;
    ss->paths[ss->n_paths++] = p;
    e->path_id = (uint32_t)ss->n_paths;
}

static int hl7_compile_path(cc_t *c, const json_t *at, expr_t *e)
{
    e->kind = EX_PATH;
    /* from e->text, the arena's copy: a selector's values point into it (cg_hl7.h) */
    if (!e->text || compile_path(c, at, e->text, &e->u.path))
        return -1;
    cg_spec_warn_path(c, at, &e->u.path, 0);
    set_path_id(c, e);
    return 0;
}

static void hl7_compile_foreach(cc_t *c, json_t *j, json_t *fe, rule_t *r)
{
    if (!json_is_string(fe))
        err_at(c, fe, j, "foreach", "'foreach' is a path naming segments, such as \"OBX[*]\"");
    else if (compile_path(c, fe, json_string_value(fe), &r->foreach) == 0 && r->foreach.field != 0)
        err_at(c, fe, j, "foreach",
               "'foreach' names segments, such as \"OBX[*]\", not fields ('%s')",
               json_string_value(fe));
    else
        cg_spec_warn_path(c, fe, &r->foreach, 1);
}

static int parse_trigger(const char *s, trigger_t *out, size_t max, size_t *n)
{
    /* "ADT^A01|A04|A08" or "ORU" */
    const char *caret = strchr(s, '^');
    size_t tl = caret ? (size_t)(caret - s) : strlen(s);
    if (tl == 0 || tl >= sizeof(out->type))
        return -1;
    for (size_t i = 0; i < tl; i++)
        if (!isalnum((unsigned char)s[i]))
            return -1;
    if (!caret) {
        if (*n >= max)
            return -1;
        memcpy(out[*n].type, s, tl);
        out[*n].type[tl] = '\0';
        out[*n].event[0] = '\0';
        (*n)++;
        return 0;
    }
    const char *p = caret + 1;
    for (;;) {
        const char *bar = strchr(p, '|');
        size_t el = bar ? (size_t)(bar - p) : strlen(p);
        if (el == 0 || el >= sizeof(out->event) || *n >= max)
            return -1;
        for (size_t i = 0; i < el; i++)
            if (!isalnum((unsigned char)p[i]))
                return -1;
        memcpy(out[*n].type, s, tl);
        out[*n].type[tl] = '\0';
        memcpy(out[*n].event, p, el);
        out[*n].event[el] = '\0';
        (*n)++;
        if (!bar)
            return 0;
        p = bar + 1;
    }
}

static void hl7_compile_input(cc_t *c, json_t *in, spec_t *s)
{
    static const char *const keys[] = {"format", "messages", "when", NULL};
    check_keys(c, in, "\"input\" of an hl7v2 spec", keys);
    json_t *msgs = json_object_get(in, "messages");
    if (!json_is_array(msgs) || json_array_size(msgs) == 0) {
        err_at(c, msgs, in, "messages",
               "\"messages\" lists message types such as \"ADT^A01|A04\" or \"ORU^R01\"");
        return;
    }
    size_t max = 0, i;
    json_t *m;
    json_array_foreach(msgs, i, m) max += json_is_string(m) ? json_string_length(m) : 1;
    s->triggers = alloc(c, (max + 1) * sizeof(*s->triggers));
    json_array_foreach(msgs, i, m)
    {
        size_t before = s->n_triggers;
        if (!json_is_string(m) ||
            parse_trigger(json_string_value(m), s->triggers, max, &s->n_triggers))
            err_at(c, m, NULL, NULL, "'%s' is not a message type: write TYPE or TYPE^EVENT|EVENT…",
                   json_is_string(m) ? json_string_value(m) : "?");
        else
            for (size_t k = before; k < s->n_triggers; k++)
                cg_spec_warn_trigger(c, m, &s->triggers[k]);
    }
}

/* An anchor group (cg_spec_format_t.anchor_group): unindexed one-repetition paths of the same
 * segment read the same one from any row (path_seg: the row's own, else the nearest before it,
 * else the first), so the segment's name is the group; the foreach's own segment is every row's
 * own, nothing to share. */
static uint32_t hl7_anchor_group(const rule_t *r, const expr_t *e)
{
    const cg_hl7_path_t *p = &e->u.path;
    if (!cg_hl7_path_one(p) || p->seg_index != CG_HL7_FIRST || p->sel_len ||
        !memcmp(p->seg, r->foreach.seg, 3))
        return 0;
    return (uint32_t)(unsigned char)p->seg[0] << 16 | (uint32_t)(unsigned char)p->seg[1] << 8 |
           (unsigned char)p->seg[2];
}

static int hl7_same_foreach(const rule_t *a, const rule_t *b)
{
    return cg_hl7_path_equal(&a->foreach, &b->foreach);
}

/* In sniffing order the last (spec_formats.c): HL7 v2 has no reliable first bytes (MSH, FHS, BHS
 * or MLLP framing), so it takes what no other format claims. */
const cg_spec_format_t cg_spec_format_hl7v2 = {
    .name = "hl7v2",
    .format = CG_INPUT_HL7V2,
    .sniff = NULL,
    .map = cg_mapper_map_hl7,
    .compile_input = hl7_compile_input,
    .compile_path = hl7_compile_path,
    .compile_foreach = hl7_compile_foreach,
    .path_hint = "'path' takes a string such as \"PID-5.1\"",
    .on_error_entry = 0,
    .documents = 0,
    /* MSH-4 sending facility: its namespace id, else its universal id (an OID) */
    .default_facility = "{\"coalesce\": [\"MSH-4.1\", \"MSH-4.2\"]}",
    .run_rule = cg_spec_hl7_run_rule,
    .path_value = cg_spec_hl7_path_value,
    .reference = NULL,
    .anchor_group = hl7_anchor_group,
    .anchor_place = cg_spec_hl7_anchor_place,
    .same_foreach = hl7_same_foreach,
    .run_rules = cg_spec_hl7_run_rules,
};
