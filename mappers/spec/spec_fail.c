/* spec_fail.c - how a message's mapping fails: the error filled with the stage, spec, rule and
 * column in effect (cg_error_t). The lowest layer of the evaluator: every other file of it
 * reports through these. */
#include "spec_mapper.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static cg_err_t vfail(cg_mapper_t *mp, cg_err_t code, const char *problem, const char *fmt,
                      va_list ap)
{
    cg_error_t *e = mp->err;
    if (e && e->code == CG_OK) {
        e->code = code;
        e->stage = "map";
        snprintf(e->spec, sizeof(e->spec), "%s", mp->spec ? mp->spec->name : "");
        e->spec_version = mp->spec ? mp->spec->version : 0;
        snprintf(e->rule, sizeof(e->rule), "%s", mp->rule ? mp->rule->name : "");
        snprintf(e->out_column, sizeof(e->out_column), "%s", mp->column ? mp->column : "");
        vsnprintf(e->text, sizeof(e->text), fmt, ap);
        mp->problem = problem;
    }
    return code;
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
