/* cg_mapping.h - the mapping bundle: vocabularies, pseudonym key, specs and cohorts, loaded,
 * checked and reloaded the same way by every command (run, map, test, check) and the tests.
 *
 * A cg_mapping_t is loaded once, in dependency order (vocabularies, key, specs, cohorts: the
 * specs resolve codes against the vocabularies and the cohorts read the specs' tables), and is
 * read-only afterwards, so any number of threads share it. Mapping happens in a
 * cg_mapping_worker_t, one per thread: it owns the mapper (per-message arena, buffers) and the
 * cohort router.
 *
 * A reload (SIGHUP) recompiles the specs and cohorts into a new bundle that shares the old one's
 * vocabularies and key; when anything fails to compile, nothing changes and the caller keeps the
 * running bundle. Each bundle owns its share: destroy them in any order.
 */
#ifndef CG_MAPPING_H
#define CG_MAPPING_H

#include <stddef.h>

#include "cg_cohort.h"
#include "cg_err.h"
#include "cg_hl7.h"
#include "cg_pseudo.h"
#include "cg_spec.h"
#include "cg_xml.h"

/* Layers. Specs and vocabularies come in layers, the base first (the shipped specs/ and
 * specs/vocab/) and a site's folders over it: a spec overrides an earlier layer's spec of the
 * same name ("spec"), a vocabulary row an earlier layer's row of the same (vocabulary_id,
 * code); within one layer a name or code twice is an error, as before. A spec layer is a spec
 * file or a folder of *.json specs; a vocabulary layer a folder of *.csv tables or one table
 * (project tables and SOURCE_TO_CONCEPT_MAP files, cg_vocab.h). Without vocabulary layers,
 * each spec layer's vocab/ folder (cg_spec_vocab_dir) is one, in the spec layers' order. An
 * Athena folder loads after the first vocabulary layer (the base: its ids win over the shipped
 * tables') and before the others (a site's rows win over Athena's). */

/* The budgets of one message's mapping that run and map apply unless told otherwise
 * (mapping.max_message_ms, mapping.max_message_mb) */
#define CG_MAPPING_DEFAULT_MAX_MESSAGE_MS 10000
#define CG_MAPPING_DEFAULT_MAX_MESSAGE_MB 1024

/* What to load. Strings are borrowed for the duration of cg_mapping_load() only. */
typedef struct cg_mapping_opts {
    const char *specs; /* the first spec layer: a spec file or a folder of *.json specs; required */
    const char *const *more_specs; /* further spec layers, in order (n_more_specs) */
    size_t n_more_specs;
    const char *vocab; /* the first vocabulary layer; NULL (and no more_vocab): the vocab/
                        * folder of each spec layer, if any */
    const char *const *more_vocab; /* further vocabulary layers, in order (n_more_vocab) */
    size_t n_more_vocab;
    const char *athena;  /* OHDSI Athena folder (CONCEPT.csv, ...); NULL: none */
    const char *cohorts; /* a cohort file or folder; NULL: no cohort routing */
    /* The pseudonym key: key_file, else the environment variable key_env (NULL for
     * COHORTGATE_PSEUDONYM_KEY). no_key loads none: enough to compile and check specs, and for
     * cg_mapping_worker_new_keyed() with a key of the caller's (golden cases carry their own). */
    const char *key_file;
    const char *key_env;
    int no_key;
    int date_shift_days;
    /* Records' source.message_id as sent (pseudonym.message_id "plain", map --message-id
     * plain); 0, the default: its keyed hash (cg_pseudo_message_id), as an identifier. */
    int message_id_plain;
    const char *source_utc_offset; /* "+HH:MM" for HL7 times without one; NULL: none */
    const cg_hl7_options_t *hl7;   /* NULL: defaults; copied */
    const cg_xml_options_t *xml; /* NULL: defaults; copied (its strings must outlive the bundle) */
    /* The site's values of spec parameters (mapping.params, --param); copied, kept for reloads */
    const cg_spec_param_t *params;
    size_t n_params;
    /* Wall-clock budget of one message's mapping (cg_spec_env_t.max_message_ms); 0: none */
    unsigned max_message_ms;
    size_t max_message_memory; /* bytes (cg_spec_env_t.max_message_memory); 0: none */
    /* Which assigning authority identifiers are hashed under (pseudonym.authorities, the
     * --authority-* options): copied, kept for reloads. All zero: no aliases, no defaults, an
     * identifier without an authority is refused. */
    cg_pseudo_authority_opts_t authorities;
} cg_mapping_opts_t;

typedef struct cg_mapping cg_mapping_t;
typedef struct cg_mapping_worker cg_mapping_worker_t;

/* Loads the bundle. NULL on any error: every located error (file:line:column) is written to errs
 * (up to max_errs; *n_errs gets the total); errors without a place in a file (a missing key, out
 * of memory) are written as one error with line 0. */
cg_mapping_t *cg_mapping_load(const cg_mapping_opts_t *opts, cg_error_t *errs, size_t max_errs,
                              size_t *n_errs);
/* Recompiles m's specs and cohorts from the same paths, sharing m's vocabularies and key. NULL
 * with the errors as for cg_mapping_load(); m is unchanged either way. */
cg_mapping_t *cg_mapping_reload(const cg_mapping_t *m, cg_error_t *errs, size_t max_errs,
                                size_t *n_errs);
/* NULL-safe. Workers made from m must be destroyed first. */
void cg_mapping_destroy(cg_mapping_t *m);

const cg_specset_t *cg_mapping_specs(const cg_mapping_t *m);
/* NULL when no cohorts were configured. */
const cg_cohortset_t *cg_mapping_cohorts(const cg_mapping_t *m);
const cg_vocab_t *cg_mapping_vocab(const cg_mapping_t *m);
/* The site's pseudonym key (NULL when loaded with no_key): what subscribers' keys derive from
 * when they have none of their own (cg_release_derive_key). */
const cg_pseudo_t *cg_mapping_pseudo(const cg_mapping_t *m);
/* The paths it was loaded from (for logs); cohorts may be NULL. */
const char *cg_mapping_specs_path(const cg_mapping_t *m);
const char *cg_mapping_cohorts_path(const cg_mapping_t *m);

/* What one layer contributed, for `check` (cg_mapping_layers). Strings are the bundle's. */
typedef enum cg_mapping_layer_kind {
    CG_MAPPING_LAYER_SPECS,
    CG_MAPPING_LAYER_VOCAB,
} cg_mapping_layer_kind_t;

typedef struct cg_mapping_layer {
    cg_mapping_layer_kind_t kind;
    const char *path;
    size_t n_items;        /* specs: its specs in use; vocab: the codes it set (an Athena folder,
                            * whose items start with "Athena": the codes it added) */
    size_t n_overrides;    /* of them, replacing an earlier layer's spec (by name) or code */
    size_t n_overridden;   /* specs: its specs a later layer replaced */
    const char *items;     /* specs: the names in use; vocab: its vocabulary_ids (", ") */
    const char *overrides; /* specs: "NAME (over FILE)"; vocab: the first few codes,
                            * "VOCABULARY CODE (was N, now M)" ("; "); "" when none */
    size_t unmapped;       /* vocab: source-to-concept rows reviewed as "no mapping" */
    size_t not_valid;      /* vocab: source-to-concept rows left out (invalid_reason, dates) */
} cg_mapping_layer_t;

/* The spec layers, then the vocabulary layers, as the bundle was loaded (a reload re-reads the
 * spec layers' folders). */
size_t cg_mapping_layers(const cg_mapping_t *m, const cg_mapping_layer_t **layers);
/* What loads but is probably a mistake, each a cg_error_t with the file it concerns (line 0):
 * a spec whose lookups find no loaded vocabulary (every lookup would give concept 0). `check`
 * prints them as warnings and `run` logs them. */
size_t cg_mapping_warnings(const cg_mapping_t *m, const cg_error_t **warnings);

/* A worker for one thread. NULL with a reason in errstr. The bundle must have a key. */
cg_mapping_worker_t *cg_mapping_worker_new(const cg_mapping_t *m, char *errstr, size_t errstr_size);
/* The same with another key (borrowed; must outlive the worker). */
cg_mapping_worker_t *cg_mapping_worker_new_keyed(const cg_mapping_t *m, const cg_pseudo_t *pseudo,
                                                 char *errstr, size_t errstr_size);
/* Adds the rule and source path of every column to each row. */
void cg_mapping_worker_set_trace(cg_mapping_worker_t *w, int on);
/* The HL7 v2 charset for messages with an empty MSH-18 from the next input on (an input topic's
 * inputs[].charset); NULL: the bundle's hl7.default_charset. */
void cg_mapping_worker_set_hl7_charset(cg_mapping_worker_t *w, const char *charset);
/* NULL-safe. */
void cg_mapping_worker_destroy(cg_mapping_worker_t *w);

/* Maps one input (one HL7 v2 message, or one XML document) as cg_mapper_map_hl7() and
 * cg_mapper_map_xml() do; rows are valid until the worker's next map call. */
cg_err_t cg_mapping_worker_map(cg_mapping_worker_t *w, cg_input_format_t format, const char *buf,
                               size_t len, const cg_row_t **rows, size_t *n_rows, cg_error_t *err);
/* The same for an HL7 v2 message already decoded (by a cg_hl7_reader). */
/* The input format cg_mapping_worker_map() last mapped with (CG_INPUT_AUTO: the one it
 * sniffed); NULL before the first. */
const cg_spec_format_t *cg_mapping_worker_format(const cg_mapping_worker_t *w);
cg_err_t cg_mapping_worker_map_msg(cg_mapping_worker_t *w, cg_hl7_msg_t *msg, const cg_row_t **rows,
                                   size_t *n_rows, cg_error_t *err);
/* The quality findings of the last input that mapped (entries left out, cg_mapper_quality):
 * *items valid until the worker's next map call. */
size_t cg_mapping_worker_quality(const cg_mapping_worker_t *w, const cg_quality_t **items);
/* The cohorts row belongs to: names in *names (valid until the next call), count returned; 0
 * when the bundle has no cohorts. */
/* How the worker's last successful map ended (cg_mapper_outcome): rows, no rows, or no
 * research content; valid until its next map call. */
void cg_mapping_worker_outcome(const cg_mapping_worker_t *w, cg_map_outcome_t *out);
/* The last input's MSH-9.1 and MSH-9.2 (cg_mapper_msg_type); 0 when it was no decoded HL7 v2. */
int cg_mapping_worker_msg_type(const cg_mapping_worker_t *w, cg_slice_t *type, cg_slice_t *event);
/* The rule behind the i-th cohort of the last route (cg_cohort_route_why), or NULL. */
const char *cg_mapping_worker_route_why(const cg_mapping_worker_t *w, size_t i);
size_t cg_mapping_worker_route(cg_mapping_worker_t *w, const cg_row_t *row,
                               const char *const **names);

#endif
