/* cg_spec.h - mapping specs: compiled once, applied to each message.
 *
 * A spec is a JSON file (see specs/README.md) that says which messages it takes and how each
 * becomes typed rows of a target's tables (cg_row.h, cg_target.h: OMOP CDM v5.4 and cohortgate's
 * own). cg_specset_load() compiles one file or every *.json of a folder,
 * reporting every error with file:line:column. A cg_mapper_t applies a spec set to messages: it
 * owns the per-message arena and buffers, so it is one per thread and allocates nothing per
 * field once warm.
 *
 * A message either maps completely or fails: rows are collected and handed out only when every
 * rule succeeded, so a message that cannot fill a required column never yields a half record;
 * a spec with "on_error": "entry" (documents) leaves out only the failing entry's row and says
 * so in a quality finding (cg_mapper_quality).
 * The rows handed out are the mapper's: valid until its next map call (see cg_row.h).
 */
#ifndef CG_SPEC_H
#define CG_SPEC_H

#include <stddef.h>
#include <stdint.h>

#include "cg_buf.h"
#include "cg_err.h"
#include "cg_row.h"
#include "cg_spec_format.h" /* the input formats: cg_input_format_t, the registry */

typedef struct cg_specset cg_specset_t;
typedef struct cg_mapper cg_mapper_t;
typedef struct cg_pseudo cg_pseudo_t;
typedef struct cg_vocab cg_vocab_t;

/* What compiled specs are evaluated against. Borrowed: must outlive the spec set. */
typedef struct cg_spec_env {
    const cg_vocab_t *vocab; /* code and unit lookups; NULL: every lookup gives concept 0 */
    /* Pseudonyms and date shift (its range is the pseudo's); each mapper works on a clone.
     * Required by specs with a "patient". */
    const cg_pseudo_t *pseudo;
    /* Which assigning authority an identifier is hashed under (pseudonym.authorities,
     * cg_pseudo_authority): aliases, per-facility defaults, what to do without one. NULL: no
     * aliases or defaults, and an identifier without an authority is refused. */
    const struct cg_pseudo_authorities *authorities;
    /* Offset for HL7 times without one, as "+HH:MM"/"-HH:MM", or NULL to write local times
     * without an offset. */
    const char *source_utc_offset;
    /* Decoder limits and the charset of messages without MSH-18; NULL for the defaults. */
    const struct cg_hl7_options *hl7;
    /* XML decoder limits and default encoding; NULL for the defaults. */
    const struct cg_xml_options *xml;
    /* Values for the specs' "params" (specs/README.md, "Parameters"): each replaces the default
     * of every loaded spec that declares a parameter of that name; naming one that no spec
     * declares is an error. NULL / 0: the specs' defaults. */
    const struct cg_spec_param *params;
    size_t n_params;
    /* Wall-clock budget of one message's mapping, in milliseconds (mapping.max_message_ms); a
     * message past it fails with CG_ERR_MAP_LIMIT ("map" stage) instead of holding its worker.
     * 0: none. */
    unsigned max_message_ms;
    /* The most memory one message's values may take, in bytes (mapping.max_message_mb); past
     * it the message fails with CG_ERR_MAP_LIMIT. 0: none. */
    size_t max_message_memory;
    /* Records' source.message_id (and a document retraction's replaced_document_id): 0 the
     * keyed hash of the sender's id (cg_pseudo_message_id; empty without a pseudo), 1 the id as
     * sent (pseudonym.message_id "plain"). */
    int message_id_plain;
} cg_spec_env_t;

/* A spec parameter's value, given by a site (mapping.params, --param NAME=VALUE). */
typedef struct cg_spec_param {
    const char *name, *value;
} cg_spec_param_t;

/* Compiles path (a spec file or a folder of *.json specs). Every error found is written to errs
 * (up to max_errs; *n_errs gets the total count). Returns NULL when any spec has an error. */
cg_specset_t *cg_specset_load(const char *path, const cg_spec_env_t *env, cg_error_t *errs,
                              size_t max_errs, size_t *n_errs);
/* The same from text, for tests; name is used in errors. */
cg_specset_t *cg_specset_load_string(const char *text, const char *name, const cg_spec_env_t *env,
                                     cg_error_t *errs, size_t max_errs, size_t *n_errs);
/* The same from a list of spec files, compiled in order (the mapping bundle's layers, resolved
 * to files by cg_mapping_load: a spec name still appears once). When texts and roots are given,
 * a file whose text and root (json_loads with JSON_REJECT_DUPLICATES) are both set is compiled
 * from them instead of being read and parsed again; roots stay the caller's. */
struct json_t;
cg_specset_t *cg_specset_load_files(const char *const *files, const char *const *texts,
                                    struct json_t *const *roots, size_t n, const cg_spec_env_t *env,
                                    cg_error_t *errs, size_t max_errs, size_t *n_errs);
size_t cg_specset_count(const cg_specset_t *ss);
/* What compiled but is most likely a mistake (a concept id column taking a raw code, a message
 * type that is none, an unknown vocabulary, a bare string naming an unread segment), located
 * like errors: cohortgate check prints them, map --strict refuses them. *n gets how many were
 * found; the first CG_SPEC_MAX_WARNINGS are returned. */
#define CG_SPEC_MAX_WARNINGS 64
const cg_error_t *cg_specset_warnings(const cg_specset_t *ss, size_t *n);
/* The vocabulary folder that goes with specs at path: vocab/ inside it when path is a folder,
 * beside it when path is a file. Written to buf; NULL when there is no such folder. */
const char *cg_spec_vocab_dir(const char *path, char *buf, size_t size);
/* NULL-safe. */
void cg_specset_destroy(cg_specset_t *ss);

/* Why a message failed is a cg_error_t (cg_err.h): its stage ("decode", "select", "map"), the
 * place in the input when the decoder found it, and the spec, rule and column when known. */

/* NULL with a reason in errstr. */
cg_mapper_t *cg_mapper_new(const cg_specset_t *ss, const cg_spec_env_t *env, char *errstr,
                           size_t errstr_size);
/* Records the source of every column's value in each row (cg_row_t.trace), for
 * cg_row_encode(..., CG_ROW_ENCODE_TRACE, ...). */
void cg_mapper_set_trace(cg_mapper_t *mp, int on);
/* The charset of HL7 v2 messages with an empty MSH-18 from the next one on (NULL: the env's
 * hl7.default_charset); see cg_hl7_msg_set_default_charset(). */
void cg_mapper_set_hl7_charset(cg_mapper_t *mp, const char *charset);
/* NULL-safe. */
void cg_mapper_destroy(cg_mapper_t *mp);

/* How an input that mapped without an error ended. Every consumed input leaves a trace: rows,
 * a counted "no rows" (a spec took it and none of its rules applied: an ORU with an OBR and no
 * OBX, a PID-only message) or a counted "no research content" (only a spec with
 * "no_research_content" takes it: scheduling, acknowledgements, ...; see specs/README.md).
 * Failures are errors (stage "decode", "select", "map"), dead-lettered by the gateway. */
typedef enum cg_map_outcome_kind {
    CG_MAP_ROWS = 0,
    CG_MAP_NO_ROWS,
    CG_MAP_NO_RESEARCH_CONTENT,
} cg_map_outcome_kind_t;

typedef struct cg_map_outcome {
    cg_map_outcome_kind_t kind;
    /* The message type as the selecting spec declares it ("ADT^A01", "SIU" for a spec taking
     * every SIU event) or an XML document's root element name: strings of the spec set, so a
     * bounded metric label. */
    const char *type;
    /* CG_MAP_NO_RESEARCH_CONTENT: the declaring spec and its reason; NULL otherwise. */
    const char *spec;
    const char *reason;
} cg_map_outcome_t;

/* "records", "no_rows" or "no_research_content": the metric label and log word. */
const char *cg_map_outcome_name(cg_map_outcome_kind_t kind);
/* The outcome of the mapper's last map call that returned CG_OK; valid until its next call. */
void cg_mapper_outcome(const cg_mapper_t *mp, cg_map_outcome_t *out);
/* The message type (MSH-9.1) and trigger event (MSH-9.2) of the last input when it decoded as an
 * HL7 v2 message, whether or not it then mapped: 1 with the raw slices (valid until the next
 * map call), 0 for an XML document or an input that did not decode. What a feed's own handling
 * of message types (the gateway's inputs[].no_research_content, dead_letter) matches. */
int cg_mapper_msg_type(const cg_mapper_t *mp, cg_slice_t *type, cg_slice_t *event);

/* Maps one HL7 v2 message (buf holds exactly one message, as from a Kafka record or
 * cg_hl7_reader). On CG_OK, *rows and *n_rows hold the rows (n_rows may be 0 when no rule applies);
 * otherwise *err says why and there are no rows. */
cg_err_t cg_mapper_map_hl7(cg_mapper_t *mp, const char *buf, size_t len, const cg_row_t **rows,
                           size_t *n_rows, cg_error_t *err);
/* The same for a message already decoded (by a cg_hl7_reader, say). */
typedef struct cg_hl7_msg cg_hl7_msg_t;
cg_err_t cg_mapper_map_msg(cg_mapper_t *mp, cg_hl7_msg_t *msg, const cg_row_t **rows,
                           size_t *n_rows, cg_error_t *err);

/* Maps one XML document (CDA R2 / C-CDA or vendor XML) with the spec set's XML specs. Errors as
 * for cg_mapper_map_hl7: stage "decode" (not well-formed, refused, over a limit), "select" (no
 * spec takes this root element or these document templateIds) or "map". */
cg_err_t cg_mapper_map_xml(cg_mapper_t *mp, const char *buf, size_t len, const cg_row_t **rows,
                           size_t *n_rows, cg_error_t *err);
/* Either, by the input's first bytes (cg_xml_sniff): for feeds and files that mix both. */
cg_err_t cg_mapper_map(cg_mapper_t *mp, const char *buf, size_t len, const cg_row_t **rows,
                       size_t *n_rows, cg_error_t *err);

/* Entry-level isolation. A spec's "on_error" says what one failing foreach node (a document's
 * entry, an HL7 v2 segment) does: "message" fails the whole input (HL7 v2's default), "entry"
 * (XML documents' default) leaves that rule's row for the node out, maps the rest and reports a
 * quality finding. Failures outside a foreach (the patient, a rule without one) always fail the
 * input, and so does running out of memory.
 *
 * A finding names the spec, rule, column, the kind of problem and where the entry is, never a
 * value of the input: no patient data, so it may go where the data-quality team reads
 * (output.quality_topic). */
typedef struct cg_quality {
    const char *stage; /* "map" */
    const char *spec;
    int spec_version;
    const char *rule;
    const char *column; /* the output column being filled, or NULL (a let, the rule's when) */
    cg_err_t code;      /* CG_ERR_MAP, CG_ERR_REQUIRED, ... */
    const char *reason; /* what went wrong, a stable name: "invalid_datetime", ... */
    uint64_t entry;     /* the node's 1-based position among the rule's foreach nodes */
    /* where: an XML element's path by local names with positions among same-named siblings
     * ("/ClinicalDocument/component/structuredBody/component[3]/section/entry[2]/encounter")
     * and its line, or an HL7 v2 segment's 1-based index and name */
    const char *xpath; /* NULL for HL7 v2 */
    int line;          /* 0 when unknown */
    uint32_t segment;  /* 0 for XML, unless the document was embedded in this segment */
    char seg_name[4];
} cg_quality_t;

/* The findings of the last map call that succeeded (0 after a failed one): *items valid until
 * the mapper's next map call. */
size_t cg_mapper_quality(const cg_mapper_t *mp, const cg_quality_t **items);
/* A value-free description of a finding's reason ("not an HL7 date/time ..."). */
const char *cg_quality_reason_text(const char *reason);
/* A finding as one line for people: "rule R, column C, entry N at WHERE: REASON (TEXT)", where
 * WHERE is "XPATH (line L)" or "segment S NAME". Returns buf. */
const char *cg_quality_format(const cg_quality_t *q, char *buf, size_t size);
/* A finding as the JSON value of a quality record (appended to out); src, when not NULL, names
 * the input (topic, partition, offset). */
cg_err_t cg_quality_encode(const cg_quality_t *q, const cg_row_source_t *src, cg_buf_t *out);

#endif
