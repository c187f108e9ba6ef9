/* cg_spec_format.h - input formats (decoder kinds) as plug-ins of the spec engine.
 *
 * A format (HL7 v2; XML for CDA R2 / C-CDA) brings everything the engine needs to know of it:
 * how its inputs are told apart by their first bytes, how one input is decoded and mapped, and
 * its path language: how a spec's "input", its paths and its foreach are compiled, and how the
 * value of a compiled path is read from a decoded input. The formats are a static list (nginx's
 * module array) in mappers/spec/spec_formats.c; adding one (FHIR JSON, say) is its files beside
 * spec_hl7*.c and spec_xml*.c and one line there, with no change to the compiler's core
 * (spec_compile.c) or the evaluator (spec_eval.c).
 *
 * The compile and evaluation callbacks work on the spec engine's private types
 * (mappers/spec/spec_impl.h, spec_compile.h, spec_mapper.h), named here only. Every callback is
 * called on the thread that compiles or maps; none keeps state of its own.
 */
#ifndef CG_SPEC_FORMAT_H
#define CG_SPEC_FORMAT_H

#include <stddef.h>

#include "cg_err.h"
#include "cg_row.h"

/* How an input's bytes are decoded (a config's inputs[].format). */
typedef enum cg_input_format {
    CG_INPUT_HL7V2 = 0,
    CG_INPUT_XML,
    CG_INPUT_AUTO, /* per input: XML when it starts with '<' (cg_spec_format_sniff), else HL7 v2 */
} cg_input_format_t;

struct json_t;     /* jansson's */
struct cg_mapper;  /* cg_spec.h */
struct cg_spec_cc; /* a spec file being compiled (spec_compile.h) */
struct cg_spec;    /* a compiled spec (spec_impl.h) */
struct cg_spec_rule;
struct cg_spec_expr;
struct cg_spec_val; /* a value during evaluation */

typedef struct cg_spec_format {
    const char *name; /* a spec's "input.format", a config's inputs[].format */
    cg_input_format_t format;
    /* Whether an input's first bytes are this format's; NULL: by none (the fallback). */
    int (*sniff)(const char *buf, size_t len);
    /* Decodes one input and maps it with the spec set's specs of this format (cg_spec.h). */
    cg_err_t (*map)(struct cg_mapper *mp, const char *buf, size_t len, const cg_row_t **rows,
                    size_t *n_rows, cg_error_t *err);

    /* ---- the path language, for the spec compiler; errors go to c (file:line:column) ---- */
    /* The spec's "input" object: which inputs the spec takes, and what its paths need. */
    void (*compile_input)(struct cg_spec_cc *c, struct json_t *in, struct cg_spec *s);
    /* A path (the JSON string at) into e; 0, or -1 with the error recorded. */
    int (*compile_path)(struct cg_spec_cc *c, const struct json_t *at, struct cg_spec_expr *e);
    /* A rule's "foreach" (fe, in the rule object rule): what the rule makes one row for. */
    void (*compile_foreach)(struct cg_spec_cc *c, struct json_t *rule, struct json_t *fe,
                            struct cg_spec_rule *r);
    const char *path_hint; /* the error for a "path" that is not a string */
    /* A spec's "on_error" when it gives none: 1 "entry" (a document's entries are facts of
     * their own), 0 "message" (an HL7 v2 message is one fact). */
    int on_error_entry;
    /* Whether an input is a document that a later version may replace (C-CDA: relatedDocument
     * RPLC): its records carry its id in cg.document, by which a sink retracts its rows. */
    int documents;
    /* The sending facility when a spec's "patient" names none (JSON text of an expression,
     * compiled with the spec): what an identifier without an assigning authority is defaulted
     * by (pseudonym.authorities). NULL: the format has no such place (a spec names its own). */
    const char *default_facility;

    /* ---- evaluation, on the input map() decoded ---- */
    /* Runs rule r: its foreach's items (each row's place), or once. */
    cg_err_t (*run_rule)(struct cg_mapper *mp, const struct cg_spec_rule *r);
    /* The value of compiled path e at the current place. */
    cg_err_t (*path_value)(struct cg_mapper *mp, const struct cg_spec_expr *e,
                           struct cg_spec_val *out);
    /* The "reference" transform (CDA: "#id" to the narrative text); NULL when the format has
     * none, and specs that use it are refused. */
    cg_err_t (*reference)(struct cg_mapper *mp, const struct cg_spec_val *v,
                          struct cg_spec_val *out);

    /* ---- anchored values (optional; NULL: the format has none) ---- */
    /* For the compiler: the place compiled path e reads relative to a row of rule r, as a
     * nonzero number equal for paths that always read the same place as each other, and not the
     * row's own (HL7 v2: an unindexed one-repetition path of another segment than the foreach's,
     * such as OBR-3.1 for OBX[*], which reads the OBX's order); 0 when it reads the row's own
     * place, or a place that varies otherwise. An expression whose paths all give the same
     * number is memoized by its place (spec_prepare.c). */
    uint32_t (*anchor_group)(const struct cg_spec_rule *r, const struct cg_spec_expr *e);
    /* At evaluation: the place path e reads in the current scope, into *place; 0, or -1 when
     * values must not be memoized there (a partial scope). */
    int (*anchor_place)(struct cg_mapper *mp, const struct cg_spec_expr *e, uint32_t *place);

    /* ---- rules in one pass (optional; NULL: each rule runs on its own) ---- */
    /* For the compiler: whether rules a and b go over the same items (the same foreach). */
    int (*same_foreach)(const struct cg_spec_rule *a, const struct cg_spec_rule *b);
    /* Runs rules[0..n), which go over the same items, in one pass: each item's rules in turn.
     * The rows, and a failure, come out as if each rule had run on its own, in order. */
    cg_err_t (*run_rules)(struct cg_mapper *mp, const struct cg_spec_rule *rules, size_t n);
} cg_spec_format_t;

/* ---- the registry (mappers/spec/spec_formats.c) ---- */

/* The format named name, or NULL. */
const cg_spec_format_t *cg_spec_format_find(const char *name);
/* The format of a config's input format; NULL for CG_INPUT_AUTO. */
const cg_spec_format_t *cg_spec_format_of(cg_input_format_t format);
/* The format an input's first bytes say (never NULL: the fallback takes the rest). */
const cg_spec_format_t *cg_spec_format_sniff(const char *buf, size_t len);
/* The formats' names for an error message: "\"hl7v2\" or \"xml\"". Returns buf. */
const char *cg_spec_format_names(char *buf, size_t size);

#endif
