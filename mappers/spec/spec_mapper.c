/* spec_mapper.c - the mapper (cg_spec.h): its state made once per thread, and one message's run
 * through the spec set (a fresh arena, each spec's lets, patient and rules). What a message is
 * read from is spec_hl7.c's and spec_xml.c's; rows are spec_row.c's.
 */
#include "spec_mapper.h"

#include "cg_xml.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

cg_err_t cg_spec_fail(cg_mapper_t *mp, cg_err_t code, const char *fmt, ...)
{
    cg_map_error_t *e = mp->err;
    if (e && e->code == CG_OK) {
        e->code = code;
        e->stage = "map";
        snprintf(e->spec, sizeof(e->spec), "%s", mp->spec ? mp->spec->name : "");
        e->spec_version = mp->spec ? mp->spec->version : 0;
        snprintf(e->rule, sizeof(e->rule), "%s", mp->rule ? mp->rule->name : "");
        snprintf(e->column, sizeof(e->column), "%s", mp->column ? mp->column : "");
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(e->reason, sizeof(e->reason), fmt, ap);
        va_end(ap);
    }
    return code;
}

static cg_err_t run_rule(cg_mapper_t *mp, const rule_t *r)
{
    mp->rule = r;
    return mp->m ? cg_spec_hl7_run_rule(mp, r) : cg_spec_xml_run_rule(mp, r);
}

static cg_err_t run_spec(cg_mapper_t *mp, const spec_t *s)
{
    mp->spec = s;
    mp->rule = NULL;
    mp->patient_state = 0;
    mp->shift_days = 0;
    mp->xnode = NULL;
    if (mp->m)
        mp->scope = cg_hl7_scope_message(mp->m);
    cg_err_t rc;
    for (size_t i = 0; i < s->n_lets; i++)
        if ((rc = cg_spec_eval_expr(mp, s->lets[i].expr, &mp->vars[i])))
            return rc;
    /* dates shift by the patient's offset, so the patient comes first when the spec has one */
    if (s->has_patient && (rc = cg_spec_patient(mp)))
        return rc;
    for (size_t i = 0; i < s->n_rules; i++)
        if ((rc = run_rule(mp, &s->rules[i])))
            return rc;
    return CG_OK;
}

/* Starts a message or document: a fresh arena, memo generation and output buffers. */
void cg_spec_begin_message(cg_mapper_t *mp, cg_map_error_t *err, cg_map_error_t *local,
                           const cg_row_t **rows, size_t *n_rows)
{
    memset(err ? err : local, 0, sizeof(*local));
    mp->err = err ? err : local;
    mp->n_rows = 0;
    mp->xnode = NULL;
    *rows = NULL;
    *n_rows = 0;
    cg_arena_reset(&mp->arena);
    if (++mp->gen == 0) { /* wrapped: forget every entry rather than trust an old one */
        memset(mp->memo, 0, PATH_MEMO_SIZE * sizeof(*mp->memo));
        memset(mp->lookups, 0, sizeof(mp->lookups));
        memset(mp->ts_memo, 0, sizeof(mp->ts_memo));
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
    (*matched)++;
    size_t before = mp->n_rows;
    cg_err_t rc = run_spec(mp, s);
    if (rc)
        mp->n_rows = before;
    return rc;
}

cg_err_t cg_spec_map_error(cg_map_error_t *err, cg_err_t code, const char *stage,
                           const char *reason)
{
    if (err) {
        memset(err, 0, sizeof(*err));
        err->code = code;
        err->stage = stage;
        snprintf(err->reason, sizeof(err->reason), "%s", reason);
    }
    return code;
}

cg_err_t cg_mapper_map(cg_mapper_t *mp, const char *buf, size_t len, const cg_row_t **rows,
                       size_t *n_rows, cg_map_error_t *err)
{
    if (cg_xml_sniff(buf, len))
        return cg_mapper_map_xml(mp, buf, len, rows, n_rows, err);
    return cg_mapper_map_hl7(mp, buf, len, rows, n_rows, err);
}

cg_mapper_t *cg_mapper_new(const cg_specset_t *ss, const cg_spec_env_t *env, char *errstr,
                           size_t errstr_size)
{
    cg_mapper_t *mp = calloc(1, sizeof(*mp));
    if (!mp) {
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    mp->ss = ss;
    mp->vocab = env ? env->vocab : NULL;
    mp->utc_offset = env ? env->source_utc_offset : NULL;
    cg_arena_init(&mp->arena, 64 * 1024);
    cg_buf_init(&mp->scratch);
    for (size_t i = 0; i < ss->n_specs; i++)
        if (ss->specs[i].max_vars > mp->cap_vars)
            mp->cap_vars = ss->specs[i].max_vars;
    mp->vars = calloc(mp->cap_vars + 1, sizeof(*mp->vars));
    mp->msg = cg_hl7_msg_new(env ? env->hl7 : NULL);
    if (env && env->xml) {
        mp->xml_opts = *env->xml;
        mp->xml_opts_set = 1;
    }
    /* aligned, so that no entry straddles two cache lines */
    mp->memo = aligned_alloc(sizeof(*mp->memo), PATH_MEMO_SIZE * sizeof(*mp->memo));
    if (mp->memo)
        memset(mp->memo, 0, PATH_MEMO_SIZE * sizeof(*mp->memo));
    mp->md = pcre2_match_data_create(ss->max_capture + 1, NULL);
    mp->mctx = pcre2_match_context_create(NULL);
    if (!mp->vars || !mp->msg || !mp->md || !mp->mctx || !mp->memo) {
        snprintf(errstr, errstr_size, "out of memory");
        cg_mapper_destroy(mp);
        return NULL;
    }
    pcre2_set_match_limit(mp->mctx, SPEC_REGEX_MATCH_LIMIT);
    pcre2_set_depth_limit(mp->mctx, SPEC_REGEX_DEPTH_LIMIT);
    if (env && env->pseudo) {
        mp->pseudo = cg_pseudo_clone(env->pseudo, errstr, errstr_size);
        if (!mp->pseudo) {
            cg_mapper_destroy(mp);
            return NULL;
        }
    }
    return mp;
}

void cg_mapper_set_trace(cg_mapper_t *mp, int on)
{
    mp->trace = on;
}

void cg_mapper_destroy(cg_mapper_t *mp)
{
    if (!mp)
        return;
    cg_pseudo_destroy(mp->pseudo);
    cg_hl7_msg_destroy(mp->msg);
    cg_xml_eval_destroy(mp->xev);
    cg_xml_doc_destroy(mp->xdoc);
    pcre2_match_data_free(mp->md);
    pcre2_match_context_free(mp->mctx);
    cg_arena_destroy(&mp->arena);
    cg_buf_free(&mp->scratch);
    free(mp->rows);
    free(mp->vars);
    free(mp->memo);
    free(mp);
}
