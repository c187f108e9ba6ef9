/* spec_hl7.c - specs over HL7 v2 messages: rules over a foreach's segments, and the entry points
 * cg_mapper_map_hl7 and cg_mapper_map_msg (cg_spec.h). Path values are spec_hl7_value.c's; the
 * format's compiler side is spec_hl7_format.c.
 */
#include "spec_mapper.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

cg_err_t cg_spec_hl7_run_rule(cg_mapper_t *mp, const rule_t *r)
{
    cg_hl7_scope_t msg_scope = cg_hl7_scope_message(mp->m);
    /* a "document" rule makes no row: the document it reads does (spec_embed.c) */
    cg_err_t (*emit)(cg_mapper_t *, uint64_t) =
        r->doc_data ? cg_spec_embed_document : cg_spec_emit_row;
    if (!r->has_foreach) {
        mp->scope = msg_scope;
        return emit(mp, 1);
    }
    cg_hl7_iter_t it;
    cg_hl7_match_t match;
    uint64_t pos = 0;
    cg_hl7_path_begin(&it, mp->m, &r->foreach, msg_scope);
    while (cg_hl7_path_next(&it, &match)) {
        mp->scope = cg_hl7_scope_at(mp->m, match.seg);
        cg_err_t rc = emit(mp, ++pos);
        if (rc && (rc = cg_spec_entry_failed(mp, rc, pos)))
            return rc;
    }
    return CG_OK;
}

/* The rows rules[0..n) made since row first, interleaved item by item, in rule order as
 * separate runs would have made them (stable: each rule's rows keep their item order). */
static cg_err_t rows_by_rule(cg_mapper_t *mp, const rule_t *rules, size_t n, size_t first)
{
    size_t count = mp->n_rows - first, at[SPEC_FUSE_MAX + 1] = {0};
    cg_row_t *rows = mp->rows + first;
    uint8_t *which = cg_arena_alloc(&mp->arena, count ? count : 1);
    if (!which)
        return cg_spec_fail(mp, CG_ERR_NOMEM, "out of memory");
    int sorted = 1;
    for (size_t i = 0; i < count; i++) {
        size_t k = 0;
        while (k + 1 < n && rows[i].rule != rules[k].name)
            k++;
        which[i] = (uint8_t)k;
        at[k + 1]++;
        sorted &= !i || which[i] >= which[i - 1];
    }
    if (sorted)
        return CG_OK;
    for (size_t k = 1; k <= n; k++)
        at[k] += at[k - 1];
    /* into the spare array, whole (the rows before first copied as they are), which then
     * becomes mp->rows: each row is copied once, not to a copy and back */
    if (mp->cap_spare < mp->n_rows) {
        size_t cap = mp->cap_rows; /* >= n_rows */
        cg_row_t *r = realloc(mp->rows_spare, cap * sizeof(*r));
        if (!r)
            return cg_spec_fail(mp, CG_ERR_NOMEM, "out of memory");
        mp->rows_spare = r;
        mp->cap_spare = cap;
    }
    cg_row_t *to = mp->rows_spare;
    if (first)
        memcpy(to, mp->rows, first * sizeof(*to));
    for (size_t i = 0; i < count; i++)
        to[first + at[which[i]]++] = rows[i];
    mp->rows_spare = mp->rows;
    mp->rows = to;
    size_t cap = mp->cap_spare;
    mp->cap_spare = mp->cap_rows;
    mp->cap_rows = cap;
    return CG_OK;
}

/* Which rules of table t take the value a (bit k: rule k of the pass): cond_in for each. */
static inline uint32_t fuse_takes(const fuse_table_t *t, spec_val_t a)
{
    if (!a.present || !a.len || a.len > 8) /* every listed value has 1 to 8 bytes */
        return 0;
    uint64_t w = cg_spec_pack8(a.s, a.len);
    for (size_t j = 0; j < t->n; j++)
        if (t->values[j].word == w && t->values[j].len == a.len)
            return t->values[j].rules;
    return 0;
}

cg_err_t cg_spec_hl7_run_rules(cg_mapper_t *mp, const rule_t *rules, size_t n)
{
    size_t first = mp->n_rows;
    int had_failure = mp->err->code != CG_OK; /* an earlier one, which stays the first */
    cg_hl7_iter_t it;
    cg_hl7_match_t match;
    uint64_t pos = 0;
    cg_err_t rc = CG_OK;
    cg_hl7_path_begin(&it, mp->m, &rules[0].foreach, cg_hl7_scope_message(mp->m));
    const fuse_table_t *tab = n > 1 ? rules[0].fuse_tab : NULL;
    while (!rc && cg_hl7_path_next(&it, &match)) {
        mp->scope = cg_hl7_scope_at(mp->m, match.seg);
        pos++;
        /* the guard's value, read once an item for the rules whose guards read the same path
         * (OBX-2 for every OBX rule): a path's value is the same at the same place; for the
         * rules in the pass's table, which of them take it is found there once */
        uint32_t gid = 0, takes = 0;
        int found = 0;
        spec_val_t a = ABSENT;
        for (size_t k = 0; k < n && !rc; k++) {
            const rule_t *r = &rules[k];
            if (r->guard) { /* most rules take few of the items: told apart here, inline */
                const expr_t *g = r->guard->a;
                if (!g->path_id || g->path_id != gid) {
                    if ((rc = eval(mp, g, &a)))
                        continue;
                    gid = g->path_id;
                    found = 0;
                }
                if (tab && (tab->rules >> k & 1)) {
                    if (!found) {
                        takes = fuse_takes(tab, a);
                        found = 1;
                    }
                    if (!(takes >> k & 1))
                        continue;
                } else if (!cond_in(r->guard, a)) {
                    continue;
                }
            }
            mp->rule = r;
            mp->guard_passed = r->guard != NULL; /* cg_spec_rule_applies need not test it again */
            rc = cg_spec_emit_row(mp, pos);
            mp->guard_passed = 0;
        }
    }
    if (!rc)
        return rows_by_rule(mp, rules, n, first);
    mp->n_rows = first;
    if (rc == CG_ERR_MAP_LIMIT) /* a budget: the message's, whichever rule met it */
        return rc;
    /* a failure: the rules again one by one, so that the message fails as it would have (the
     * first rule's failure, not the first item's; the first recorded wins, so it is forgotten) */
    if (!had_failure) {
        memset(mp->err, 0, sizeof(*mp->err));
        mp->problem = NULL;
    }
    for (size_t k = 0; k < n; k++) {
        mp->rule = &rules[k];
        if ((rc = cg_spec_hl7_run_rule(mp, &rules[k])))
            return rc;
    }
    return CG_OK;
}

static void msh_value(cg_mapper_t *mp, uint32_t field, uint32_t comp, cg_slice_t *out)
{
    cg_slice_t raw;
    *out = (cg_slice_t){"", 0};
    if (cg_hl7_seg_count(mp->m) && cg_hl7_get_raw(mp->m, 0, field, 1, comp, 0, &raw))
        *out = raw; /* MSH-9 and MSH-10 are plain codes; no unescaping needed */
}

cg_err_t cg_mapper_map_msg(cg_mapper_t *mp, cg_hl7_msg_t *msg, const cg_row_t **rows,
                           size_t *n_rows, cg_error_t *err)
{
    cg_error_t local;
    cg_spec_begin_message(mp, err, &local, rows, n_rows);
    mp->m = msg;
    mp->last = msg;
    mp->run_rule = cg_spec_hl7_run_rule;
    mp->path_value = cg_spec_hl7_path_value;
    mp->run_rules = cg_spec_hl7_run_rules;
    mp->anchor_place = cg_spec_hl7_anchor_place;

    /* for raw_is_decoded: the same charset classes as the decoder's (hl7_parse.c) */
    const cg_hl7_delims_t *d = cg_hl7_msg_delims(msg);
    const char *cs = cg_hl7_msg_charset(msg);
    mp->esc = d ? d->esc : 0;
    mp->cs_utf8 = cs && (!strcasecmp(cs, "UTF-8") || !strcasecmp(cs, "UTF8"));
    mp->cs_ascii = cs && cs[0] && strncasecmp(cs, "UTF-16", 6) && strncasecmp(cs, "UTF-32", 6) &&
                   strncasecmp(cs, "UCS", 3);
    mp->cs_plain = mp->cs_utf8 || mp->cs_ascii;
    mp->esc_word = 0x0101010101010101u * (unsigned char)mp->esc;
    cg_slice_t bytes = cg_hl7_msg_bytes(msg);
    mp->raw_begin = bytes.ptr;
    mp->raw_end = bytes.ptr + bytes.len;

    cg_slice_t type, event;
    msh_value(mp, 9, 1, &type);
    msh_value(mp, 9, 2, &event);
    msh_value(mp, 10, 0, &mp->message_id);
    /* the message's identity for rows without a business key: senders reuse MSH-10 (daily
     * counters, test systems), so the sending application, facility and time join it */
    msh_value(mp, 3, 0, &mp->msg_key[0]);
    msh_value(mp, 4, 0, &mp->msg_key[1]);
    msh_value(mp, 7, 0, &mp->msg_key[2]);
    mp->msg_key[3] = mp->message_id;
    mp->n_msg_key = 4;
    mp->msg_key_patient = 0;
    msh_value(mp, 7, 1, &mp->time_raw);
    size_t matched = 0;
    const select_entry_t *sel = cg_spec_select_hl7(mp->ss, type, event);
    for (uint32_t i = 0; sel && i < sel->n; i++) {
        cg_err_t rc =
            cg_spec_try_spec(mp, &mp->ss->specs[mp->ss->sel_specs[sel->first + i]], &matched);
        if (rc)
            return rc;
    }
    if (cg_spec_select_outcome(mp, matched, sel ? sel->label : NULL)) {
        snprintf(mp->err->text, sizeof(mp->err->text), "no spec takes %.*s^%.*s messages",
                 (int)type.len, type.ptr, (int)event.len, event.ptr);
        return CG_ERR_MAP;
    }
    cg_spec_finish_rows(mp, rows, n_rows);
    return CG_OK;
}

int cg_mapper_msg_type(const cg_mapper_t *mp, cg_slice_t *type, cg_slice_t *event)
{
    *type = *event = (cg_slice_t){"", 0};
    if (!mp->last || !cg_hl7_seg_count(mp->last))
        return 0;
    cg_slice_t raw;
    if (cg_hl7_get_raw(mp->last, 0, 9, 1, 1, 0, &raw))
        *type = raw;
    if (cg_hl7_get_raw(mp->last, 0, 9, 1, 2, 0, &raw))
        *event = raw;
    return 1;
}

cg_err_t cg_mapper_map_hl7(cg_mapper_t *mp, const char *buf, size_t len, const cg_row_t **rows,
                           size_t *n_rows, cg_error_t *err)
{
    cg_error_t he;
    *rows = NULL;
    *n_rows = 0;
    mp->quality_done = 0; /* a message that does not decode has no findings */
    mp->last = NULL;
    cg_err_t rc = cg_hl7_parse(mp->msg, buf, len, &he);
    if (rc)
        return cg_spec_decode_error(err, &he);
    return cg_mapper_map_msg(mp, mp->msg, rows, n_rows, err);
}
