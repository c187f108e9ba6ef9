/* cg_jsonpos.h - where each value of a jansson tree stands in its source text.
 *
 * jansson keeps no positions for values, and errors in specs and configs must say
 * file:line:column. cg_jsonpos_build() walks the text beside the tree (jansson keeps object keys
 * in text order, and duplicates are refused when loading) and records each value's position,
 * and each object member's key position. true, false and null are shared singletons in jansson,
 * so their positions are not recorded: ask for the enclosing member's key instead.
 */
#ifndef CG_JSONPOS_H
#define CG_JSONPOS_H

#include <jansson.h>
#include <stdarg.h>

#include "cg_err.h"

typedef struct cg_jsonpos cg_jsonpos_t;

/* text must be what root was loaded from (with JSON_REJECT_DUPLICATES). NULL on out of memory. */
cg_jsonpos_t *cg_jsonpos_build(const char *text, json_t *root);
/* NULL-safe. */
void cg_jsonpos_destroy(cg_jsonpos_t *jp);

/* A located error list, as spec, cohort and policy compilers keep one: every error counts in n,
 * the first max are kept in errs (which may be NULL). */
typedef struct cg_jsonpos_errors {
    cg_error_t *errs;
    size_t max, n;
} cg_jsonpos_errors_t;

/* Adds an error at file:line:column (line 0: the file alone; file NULL or "": nowhere), the
 * text formatted like vprintf: for lists whose places come from elsewhere (a config's setting). */
void cg_jsonpos_errors_add(cg_jsonpos_errors_t *e, cg_err_t code, const char *file, int line,
                           int column, const char *fmt, va_list ap);
/* Adds an error located at value at, else at key `key` of obj, else at obj, with what (e.g.
 * "rule 'x': ", may be "") before the formatted text. */
void cg_jsonpos_error(cg_jsonpos_errors_t *e, const cg_jsonpos_t *jp, cg_err_t code,
                      const char *file, const json_t *at, const json_t *obj, const char *key,
                      const char *what, const char *fmt, va_list ap);

#endif
