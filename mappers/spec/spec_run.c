/* spec_run.c - one message's run through the spec set: a fresh arena and memo generation, then
 * per spec its input condition, lets, patient and rules. The input formats' entry points
 * (spec_hl7.c, spec_xml.c) call in here and say how their rules run (cg_mapper.run_rule), so this
 * file depends on neither of them. */
#include "spec_mapper.h"

#include <string.h>

static cg_err_t run_rule(cg_mapper_t *mp, const rule_t *r)
{
    mp->rule = r;
    return mp->run_rule(mp, r); /* the input format's, set by its entry point */
}

static cg_err_t run_spec(cg_mapper_t *mp, const spec_t *s)
{
    mp->spec = s;
    mp->rule = NULL;
    if (!mp->embedded) { /* an embedded document's rows are the message's patient's */
        mp->patient_state = 0;
        mp->shift_days = 0;
    }
    mp->xnode = NULL;
    if (mp->m)
        mp->scope = cg_hl7_scope_message(mp->m);
    cg_err_t rc;
    for (size_t i = 0; i < s->n_lets; i++)
        if ((rc = mp->trace ? cg_spec_eval_binding(mp, s->lets[i].expr, i)
                            : cg_spec_eval_expr(mp, s->lets[i].expr, &mp->vars[i])))
            return rc;
    /* dates shift by the patient's offset, so the patient comes first when the spec has one */
    if (s->has_patient && !mp->embedded && (rc = cg_spec_patient(mp)))
        return rc;
    /* anchored values are the run's: its date shift, its spec's transforms */
    if (++mp->run == 0)
        mp->run = 1;
    for (size_t i = 0; i < s->n_rules; i++) {
        const rule_t *r = &s->rules[i];
        if (r->fuse_n > 1 && mp->run_rules) { /* rules over the same items, in one pass */
            if ((rc = mp->run_rules(mp, r, r->fuse_n)))
                return rc;
            i += r->fuse_n - 1;
        } else if ((rc = run_rule(mp, r))) {
            return rc;
        }
    }
    return CG_OK;
}

/* Starts a message or document: a fresh arena, memo generation and output buffers. */
void cg_spec_begin_message(cg_mapper_t *mp, cg_error_t *err, cg_error_t *local,
                           const cg_row_t **rows, size_t *n_rows)
{
    memset(err ? err : local, 0, sizeof(*local));
    mp->err = err ? err : local;
    mp->n_rows = 0;
    mp->n_quality = 0;
    mp->quality_done = 0;
    mp->problem = NULL;
    mp->xnode = NULL;
    mp->embedded = 0;
    mp->embed_segment = 0;
    *rows = NULL;
    *n_rows = 0;
    mp->nrc = NULL;
    mp->outcome = (cg_map_outcome_t){CG_MAP_ROWS, "", NULL, NULL};
    cg_arena_reset(&mp->arena);
    if (mp->budget_ms) {
        mp->deadline_ms = cg_spec_now_ms() + mp->budget_ms;
        mp->budget_tick = 0;
    }
    if (++mp->gen == 0) { /* wrapped: forget every entry rather than trust an old one */
        memset(mp->memo, 0, PATH_MEMO_SIZE * sizeof(*mp->memo));
        memset(mp->lookups, 0, sizeof(mp->lookups));
        memset(mp->ts_memo, 0, sizeof(mp->ts_memo));
        memset(mp->places, 0, sizeof(mp->places));
        memset(mp->iso_ok, 0, sizeof(mp->iso_ok));
        memset(mp->seg_places, 0, sizeof(mp->seg_places));
        mp->gen = 1;
    }
}

/* Runs spec s when its input condition holds; *matched counts the specs that ran. */
cg_err_t cg_spec_try_spec(cg_mapper_t *mp, const spec_t *s, size_t *matched)
{
    if (s->when) {
        int ok;
        mp->spec = s;
        mp->rule = NULL;
        mp->xnode = NULL;
        if (mp->m)
            mp->scope = cg_hl7_scope_message(mp->m);
        cg_err_t rc = cg_spec_eval_cond(mp, s->when, &ok);
        if (rc)
            return rc;
        if (!ok)
            return CG_OK;
    }
    if (s->no_research_content) {
        if (!mp->nrc)
            mp->nrc = s;
        return CG_OK;
    }
    (*matched)++;
    size_t before = mp->n_rows;
    cg_err_t rc = run_spec(mp, s);
    if (rc)
        mp->n_rows = before;
    return rc;
}

cg_err_t cg_spec_select_outcome(cg_mapper_t *mp, size_t matched, const char *type)
{
    mp->outcome.type = type ? type : "";
    if (matched) {
        mp->outcome.kind = mp->n_rows ? CG_MAP_ROWS : CG_MAP_NO_ROWS;
        return CG_OK;
    }
    if (mp->nrc) {
        mp->outcome.kind = CG_MAP_NO_RESEARCH_CONTENT;
        mp->outcome.spec = mp->nrc->name;
        mp->outcome.reason = mp->nrc->no_research_content;
        return CG_OK;
    }
    mp->err->code = CG_ERR_MAP;
    mp->err->stage = "select";
    return CG_ERR_MAP;
}

const char *cg_map_outcome_name(cg_map_outcome_kind_t kind)
{
    switch (kind) {
    case CG_MAP_NO_ROWS:
        return "no_rows";
    case CG_MAP_NO_RESEARCH_CONTENT:
        return "no_research_content";
    default:
        return "records";
    }
}

void cg_mapper_outcome(const cg_mapper_t *mp, cg_map_outcome_t *out)
{
    *out = mp->outcome;
}
