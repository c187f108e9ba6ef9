/* spec_mapper.c - the mapper (cg_spec.h): its state, made once per thread, and cg_mapper_map,
 * which tells the input formats apart. The top of the evaluator's files, which form a DAG:
 *   spec_fail.c       errors
 *   spec_hl7_value.c  HL7 v2 path values
 *   spec_eval.c       expressions, conditions, transforms, the patient
 *   spec_row.c        typed rows
 *   spec_run.c        one message's run through the specs
 *   spec_quality.c    entries left out (on_error "entry") and their quality findings
 *   spec_hl7.c, spec_xml.c   the input formats' entry points and rules
 *   spec_hl7_format.c, spec_xml_format.c   the formats (cg_spec_format.h), with their compilers
 *   spec_formats.c    the formats' registry
 *   spec_mapper.c     this file
 */
#include "spec_mapper.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

cg_err_t cg_mapper_map(cg_mapper_t *mp, const char *buf, size_t len, const cg_row_t **rows,
                       size_t *n_rows, cg_error_t *err)
{
    return cg_spec_format_sniff(buf, len)->map(mp, buf, len, rows, n_rows, err);
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
    mp->join_sep = "~";
    mp->message_id_plain = env ? env->message_id_plain : 0;
    cg_buf_init(&mp->steps);
    mp->vocab = env ? env->vocab : NULL;
    mp->utc_offset = env ? env->source_utc_offset : NULL;
    mp->authorities = env ? env->authorities : NULL;
    cg_arena_init(&mp->arena, 64 * 1024);
    if (env) {
        mp->budget_ms = env->max_message_ms;
        cg_arena_set_limit(&mp->arena, env->max_message_memory);
    }
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
    if (on && !mp->var_steps)
        mp->var_steps = calloc(mp->cap_vars + 1, sizeof(*mp->var_steps));
    if (!mp->var_steps)
        mp->trace = 0; /* out of memory: no trace rather than a wrong one */
}

void cg_mapper_set_hl7_charset(cg_mapper_t *mp, const char *charset)
{
    cg_hl7_msg_set_default_charset(mp->msg, charset);
}

void cg_mapper_destroy(cg_mapper_t *mp)
{
    if (!mp)
        return;
    cg_pseudo_destroy(mp->pseudo);
    cg_pseudo_id_memo_clear(&mp->id_memo);
    free(mp->var_steps);
    cg_buf_free(&mp->steps);
    cg_hl7_msg_destroy(mp->msg);
    cg_xml_eval_destroy(mp->xev);
    cg_xml_doc_destroy(mp->xdoc);
    pcre2_match_data_free(mp->md);
    pcre2_match_context_free(mp->mctx);
    cg_arena_destroy(&mp->arena);
    cg_buf_free(&mp->scratch);
    free(mp->rows);
    free(mp->rows_spare);
    free(mp->quality);
    free(mp->vars);
    free(mp->memo);
    free(mp);
}
