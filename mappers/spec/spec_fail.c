/* spec_fail.c - how a message's mapping fails: the error filled with the stage, spec, rule and
 * column in effect (cg_error_t). The lowest layer of the evaluator: every other file of it
 * reports through these. */
#include "spec_mapper.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* The first failure of the message wins: the stage and where in the specs it happened. */
static cg_error_t *first_failure(cg_mapper_t *mp, cg_err_t code, const char *problem)
{
    cg_error_t *e = mp->err;
    if (!e || e->code != CG_OK)
        return NULL;
    e->code = code;
    e->stage = "map";
    snprintf(e->spec, sizeof(e->spec), "%s", mp->spec ? mp->spec->name : "");
    e->spec_version = mp->spec ? mp->spec->version : 0;
    snprintf(e->rule, sizeof(e->rule), "%s", mp->rule ? mp->rule->name : "");
    snprintf(e->out_column, sizeof(e->out_column), "%s", mp->column ? mp->column : "");
    mp->problem = problem;
    return e;
}

static cg_err_t vfail(cg_mapper_t *mp, cg_err_t code, const char *problem, const char *fmt,
                      va_list ap)
{
    if (code == CG_ERR_NOMEM) {
        /* A message whose mapping runs out of memory fails alone: stopping the gateway would
         * meet it again on every restart. The reason says whether it was the budget. */
        cg_error_t *e = first_failure(mp, CG_ERR_MAP_LIMIT,
                                      mp->arena.over_limit ? "memory_budget" : "out_of_memory");
        if (e && mp->arena.over_limit)
            snprintf(e->text, sizeof(e->text),
                     "the message needs more than %zu MiB to map (mapping.max_message_mb)",
                     mp->arena.limit >> 20);
        else if (e)
            snprintf(e->text, sizeof(e->text), "out of memory while mapping the message");
        return CG_ERR_MAP_LIMIT;
    }
    cg_error_t *e = first_failure(mp, code, problem);
    if (e)
        vsnprintf(e->text, sizeof(e->text), fmt, ap);
    return code;
}

cg_err_t cg_spec_budget_check(cg_mapper_t *mp)
{
    if (cg_spec_now_ms() <= mp->deadline_ms)
        return CG_OK;
    cg_error_t *e = first_failure(mp, CG_ERR_MAP_LIMIT, "time_budget");
    if (e)
        snprintf(e->text, sizeof(e->text),
                 "mapping the message took longer than its budget of %u ms "
                 "(mapping.max_message_ms)",
                 mp->budget_ms);
    return CG_ERR_MAP_LIMIT;
}

cg_err_t cg_spec_fail(cg_mapper_t *mp, cg_err_t code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfail(mp, code, NULL, fmt, ap);
    va_end(ap);
    return code;
}

cg_err_t cg_spec_fail_as(cg_mapper_t *mp, cg_err_t code, const char *problem, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfail(mp, code, problem, fmt, ap);
    va_end(ap);
    return code;
}

cg_err_t cg_spec_map_error(cg_error_t *err, cg_err_t code, const char *stage, const char *reason)
{
    if (err) {
        memset(err, 0, sizeof(*err));
        err->code = code;
        err->stage = stage;
        snprintf(err->text, sizeof(err->text), "%s", reason);
    }
    return code;
}

cg_err_t cg_spec_decode_error(cg_error_t *err, const cg_error_t *decoder)
{
    if (err) {
        *err = *decoder;
        err->stage = "decode";
    }
    return decoder->code;
}
