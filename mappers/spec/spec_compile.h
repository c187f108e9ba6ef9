/* spec_compile.h - a spec file being compiled: the compiler's state and the helpers that the
 * compiler's core (spec_compile.c) and the input formats' path languages (spec_hl7_format.c,
 * spec_xml_format.c; cg_spec_format.h) share. The helpers are spec_cc.c's, below both, so that
 * the formats never call into the core (the core reaches them through the format table).
 * Private to mappers/spec/. */
#ifndef CG_SPEC_COMPILE_H
#define CG_SPEC_COMPILE_H

#include "spec_impl.h"

#include "cg_jsonpos.h"

#include <jansson.h>

typedef struct cg_spec_cc {
    cg_specset_t *ss;
    const char *file;
    const cg_jsonpos_t *jp;
    cg_jsonpos_errors_t e; /* every error of the files being compiled */
    spec_t *spec;
    const char *rule; /* name of the rule being compiled, for messages */
    binding_t *msg_lets;
    size_t n_msg_lets; /* visible message-level bindings */
    binding_t *rule_lets;
    size_t n_rule_lets; /* visible rule-level bindings */
    /* The core's expression compiler, for a format whose input holds expressions (an XML
     * spec's message_id): a pointer, so that the formats do not call the core by name. */
    expr_t *(*expr)(struct cg_spec_cc *c, json_t *j);
    const cg_spec_env_t *env; /* the site's parameter values, the vocabularies (NULL: none) */
    /* warnings (spec_warn.c): located like errors, kept in the spec set */
    cg_jsonpos_errors_t w;
    /* per spec: whole-segment paths that may be constants meant, and the segments read */
    struct spec_seg_cand {
        const json_t *at;
        const char *rule;
        char seg[4];
    } * seg_cands;
    size_t n_seg_cands;
    char (*segs_used)[4];
    size_t n_segs_used;
} cc_t;

/* Records an error at value `at`, or at the key `key` of object `obj` when at has no position;
 * prefixed with the rule being compiled. */
void cg_spec_cc_err(cc_t *c, const json_t *at, const json_t *obj, const char *key, const char *fmt,
                    ...) __attribute__((format(printf, 5, 6)));
/* An error reported by a path compiler at column (1-based) inside the JSON string at: the
 * position points at that character. */
void cg_spec_cc_err_in(cc_t *c, const json_t *at, int column, const char *text);
/* The column (1-based) of a path compiler's error inside the JSON string at, or 0 (the string's
 * start) when the compiled text is not the string's own (parameters were substituted). */
int cg_spec_cc_column(const json_t *at, const char *compiled, int column);
/* ---- parameters (spec_params.c) ---- */

/* The spec's "params" (root's), with the site's values (c->env) over the defaults. */
void cg_spec_params_compile(cc_t *c, json_t *root, spec_t *s);
/* text[0..len) with every ${NAME} replaced by the spec's parameter, in the arena; NULL with the
 * error recorded (at the JSON string at) when NAME is not one of the spec's. */
const char *cg_spec_params_expand(cc_t *c, const json_t *at, const char *text, size_t len);
/* An error for each site value whose name no spec of ss declares (a misspelt name). */
void cg_spec_params_check_site(cg_specset_t *ss, cc_t *c);

/* ---- free text (spec_free_text.c) ---- */

/* The rule's "free_text" (rule: its JSON; r: its table known): optin[i] set for each column i
 * of the table it lists, parameters expanded. 1 when the rule has the key, 0 when not. */
int cg_spec_free_text_optin(cc_t *c, json_t *rule, const rule_t *r, unsigned char *optin);
/* Whether the compiled column cc (of cols, the rule's "columns") is kept: 0 for a free-text
 * column the rule did not opt in (left out; a warning when the rule has no "free_text",
 * declared 0; an error when the column is required). */
int cg_spec_free_text_keep(cc_t *c, json_t *cols, const column_t *cc, const unsigned char *optin,
                           int declared);

/* ---- warnings (spec_warn.c) ---- */

/* Records a warning, located as cg_spec_cc_err does. */
void cg_spec_warn(cc_t *c, const json_t *at, const json_t *obj, const char *key, const char *fmt,
                  ...) __attribute__((format(printf, 5, 6)));
/* A rule's *_concept_id columns (cols: its "columns" object) that take a raw code. */
void cg_spec_warn_columns(cc_t *c, json_t *cols, const rule_t *r);
/* An HL7 v2 message type and trigger a spec's input names (the string at). */
void cg_spec_warn_trigger(cc_t *c, const json_t *at, const trigger_t *t);
/* A lookup's fixed vocabulary name (the string at). */
void cg_spec_warn_vocabulary(cc_t *c, const json_t *at, const char *name);
/* A compiled HL7 v2 path (a foreach's when is_foreach): a segment it reads, or a whole segment
 * that may be a constant meant. */
void cg_spec_warn_path(cc_t *c, const json_t *at, const cg_hl7_path_t *p, int is_foreach);
/* The spec is compiled: the whole-segment paths whose segment nothing else reads. */
void cg_spec_warn_spec_done(cc_t *c);
/* A "patient" (pat, compiled into the spec) without an authority: its identifiers are refused
 * unless pseudonym.authorities gives their facility a default (or, without a facility, always). */
void cg_spec_warn_patient(cc_t *c, const json_t *pat);

/* ---- embedded documents (spec_document.c) ---- */

/* A rule's "document" (doc, in rule object j): its data and encoding expressions into r, and
 * the checks that such a rule makes no row of its own (no table, columns, id) and stands in an
 * HL7 v2 spec that has a patient. */
void cg_spec_document_compile(cc_t *c, json_t *j, json_t *doc, rule_t *r);

/* Zeroed memory in the spec set's arena. */
void *cg_spec_cc_alloc(cc_t *c, size_t n);
/* A copy of s[0..n) in the arena. */
const char *cg_spec_cc_dup(cc_t *c, const char *s, size_t n);
/* Whether k is one of the NULL-terminated list. */
int cg_spec_cc_in_list(const char *k, const char *const *list);
/* Reports every key of obj that is not in known; 1 when there was one. */
int cg_spec_cc_check_keys(cc_t *c, json_t *obj, const char *what, const char *const *known);
/* The spec set frees p with free_fn when it is destroyed. -1 when out of memory (p is not
 * freed then: the caller still owns it). */
int cg_spec_cc_own(cc_t *c, void (*free_fn)(void *), void *p);

/* spec_compile.c: one spec of a set (c->ss) from its parsed root into s, errors into c; an
 * expression (the compiler's c->expr); the single-reader paths unmemoized once a set is whole. */
void cg_spec_compile_spec(cc_t *c, json_t *root, spec_t *s);
expr_t *cg_spec_compile_expr(cc_t *c, json_t *j);
void cg_spec_unmemo_single_paths(cg_specset_t *ss);

#endif
