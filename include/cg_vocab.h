/* cg_vocab.h - vocabularies: (vocabulary_id, concept_code) -> OMOP concept ids and domain.
 *
 * One cg_vocab_t holds every loaded code in an open-addressing hash table; codes and names live
 * in an arena owned by the table, so memory is proportional to what is loaded. Lookups take
 * slices, allocate nothing, and may run from many threads at once once loading is finished
 * (loading itself is single-threaded and must not overlap lookups).
 *
 * A hit gives the code's own concept (source_concept_id), its standard concept (concept_id:
 * through "Maps to", the concept itself when it is standard, 0 when none) and a domain_id: the
 * standard concept's domain when there is one, else the code's own domain (so an unmapped code
 * still routes to the table its vocabulary intends).
 *
 * Sources:
 *  - project tables, specs/vocab/NAME.csv (RFC 4180, header row; columns by name):
 *      vocabulary_id,concept_code,concept_id,domain_id,concept_name[,standard_concept_id]
 *    concept_id is the code's own OMOP concept (0 for a project code such as an HL7 table value
 *    that has none); standard_concept_id empty means "the concept is its own standard", 0 means
 *    "no standard concept"; domain_id must be one of cg_vocab_domain_t's names. Every bad line
 *    is reported (up to the caller's cap), with file:line:column and the offending text.
 *    Duplicate keys within one load call are errors.
 *  - OMOP SOURCE_TO_CONCEPT_MAP files (the CDM table, as Usagi and Athena-style exports write
 *    it), recognised by a header with source_code, in the same folders and by the same calls;
 *    comma- or tab-separated (the header line decides), RFC 4180 quoting:
 *      source_code,source_concept_id,source_vocabulary_id,source_code_description,
 *      target_concept_id,target_vocabulary_id,valid_start_date,valid_end_date,invalid_reason
 *    source_code, source_vocabulary_id and target_concept_id are required; the key is
 *    (source_vocabulary_id, source_code): the vocabulary name a message's coding system gives.
 *    target_concept_id is the standard concept; 0 means "reviewed, no mapping" (the code is
 *    known, its concept is 0, no error); source_concept_id (empty: 0) is the code's own concept.
 *    A row whose invalid_reason is set (D, U) is left out, and so is a row whose validity
 *    (valid_start_date..valid_end_date, YYYY-MM-DD or YYYYMMDD, empty: open) does not include
 *    the day it is loaded: a mapping retired or not yet in force. Several valid rows for one
 *    key (a one-to-many mapping) keep the lowest target and set CG_VOCAB_MULTI_MAP, as Athena's
 *    "Maps to" does. STCM has no domain: a code takes its target's domain when the target is a
 *    loaded concept (cg_vocab_resolve_domains), else none.
 *  - OHDSI Athena downloads: CONCEPT.csv and CONCEPT_RELATIONSHIP.csv from a folder
 *    (tab-separated, header row, no quoting), streamed line by line, optionally restricted to a
 *    list of vocabulary_ids; valid "Maps to" relationships give the standard concept. A code
 *    with several valid "Maps to" targets keeps the lowest concept_id and has CG_VOCAB_MULTI_MAP.
 *  A later load call replaces codes an earlier call loaded (load the project tables first and an
 *  Athena release after it, and Athena's ids win).
 */
#ifndef CG_VOCAB_H
#define CG_VOCAB_H

#include <stddef.h>
#include <stdint.h>

#include "cg_buf.h"
#include "cg_err.h"

typedef enum cg_vocab_domain {
    CG_VOCAB_DOMAIN_OTHER = 0, /* a domain_id not listed here (kept as text in domain_id) */
    CG_VOCAB_DOMAIN_CONDITION,
    CG_VOCAB_DOMAIN_MEASUREMENT,
    CG_VOCAB_DOMAIN_OBSERVATION,
    CG_VOCAB_DOMAIN_DRUG,
    CG_VOCAB_DOMAIN_PROCEDURE,
    CG_VOCAB_DOMAIN_DEVICE,
    CG_VOCAB_DOMAIN_VISIT,
    CG_VOCAB_DOMAIN_GENDER,
    CG_VOCAB_DOMAIN_RACE,
    CG_VOCAB_DOMAIN_ETHNICITY,
    CG_VOCAB_DOMAIN_UNIT,
    CG_VOCAB_DOMAIN_TYPE_CONCEPT,
    CG_VOCAB_DOMAIN_MEAS_VALUE,
    CG_VOCAB_DOMAIN_MEAS_VALUE_OPERATOR,
    CG_VOCAB_DOMAIN_ROUTE,
    CG_VOCAB_DOMAIN_SPEC_ANATOMIC_SITE,
    CG_VOCAB_DOMAIN_METADATA,
    CG_VOCAB_DOMAIN__COUNT
} cg_vocab_domain_t;

/* OMOP's spelling ("Condition", "Type Concept", "Meas Value Operator"...); "" for OTHER. */
const char *cg_vocab_domain_name(cg_vocab_domain_t d);
/* Exact, case-sensitive match of an OMOP domain_id; CG_VOCAB_DOMAIN_OTHER when not listed. */
cg_vocab_domain_t cg_vocab_domain_parse(cg_slice_t s);

/* hit flags */
#define CG_VOCAB_MULTI_MAP 0x1u /* several valid "Maps to" targets; the lowest id was kept */
#define CG_VOCAB_INVALID   0x2u /* the code's own concept is deprecated or updated (Athena) */

typedef struct cg_vocab_hit {
    int32_t concept_id;        /* standard concept; 0 when none */
    int32_t source_concept_id; /* the code's own concept; 0 when it has none */
    cg_vocab_domain_t domain;
    const char *domain_id; /* OMOP domain_id text, owned by the table; NULL when unknown */
    uint32_t flags;        /* CG_VOCAB_* */
} cg_vocab_hit_t;

typedef struct cg_vocab cg_vocab_t;

/* Empty table; caller owns it. NULL only when out of memory. */
cg_vocab_t *cg_vocab_new(void);
/* Frees the table and every string it handed out; v may be NULL. */
void cg_vocab_destroy(cg_vocab_t *v);
/* Number of distinct (vocabulary_id, concept_code) keys loaded. */
size_t cg_vocab_count(const cg_vocab_t *v);
/* Bytes held (table, entries, strings), for metrics and the memory tests. */
size_t cg_vocab_memory(const cg_vocab_t *v);

/* Loads one project CSV table. Errors go to errs[0 .. errs_cap) in file order; *n_errs (may be
 * NULL) receives how many bad lines there were in all, which may exceed errs_cap. Returns CG_OK,
 * CG_ERR_CONFIG (bad content), CG_ERR_IO or CG_ERR_NOMEM. Good lines of a file with errors are
 * still loaded, but a caller should treat any error as fatal (cohortgate check does). */
cg_err_t cg_vocab_load_csv(cg_vocab_t *v, const char *path, cg_error_t *errs, size_t errs_cap,
                           size_t *n_errs);
/* Loads every *.csv of dir in name order as one load call (duplicates across files are errors).
 * Same error reporting as cg_vocab_load_csv(). */
cg_err_t cg_vocab_load_csv_dir(cg_vocab_t *v, const char *dir, cg_error_t *errs, size_t errs_cap,
                               size_t *n_errs);

/* What the last load call did (cg_vocab_load_csv, _csv_dir, _athena): for `check`'s report of
 * what each layer contributed and overrode. */
#define CG_VOCAB_STATS_EXAMPLES 8
typedef struct cg_vocab_load_stats {
    size_t codes;      /* keys it set */
    size_t overridden; /* of them, keys an earlier load call had set (the later one wins) */
    size_t unmapped;   /* source-to-concept rows with target_concept_id 0: reviewed, no mapping */
    size_t not_valid;  /* source-to-concept rows left out: invalid_reason, or validity dates */
    char vocabularies[160]; /* the vocabulary_ids it set, comma-separated ("..." when cut) */
    size_t n_examples;      /* the first overridden keys, "VOCABULARY CODE (was N, now M)" */
    char examples[CG_VOCAB_STATS_EXAMPLES][120];
} cg_vocab_load_stats_t;

void cg_vocab_last_load(const cg_vocab_t *v, cg_vocab_load_stats_t *out);

/* Whether any code of vocabulary_id is loaded; the name may be a coding-system name as for
 * cg_vocab_lookup_system(). */
int cg_vocab_has_vocabulary(const cg_vocab_t *v, cg_slice_t system);

/* Gives codes without a domain (source-to-concept rows) their target's domain when the target
 * is a loaded concept. Call once after the last load. */
void cg_vocab_resolve_domains(cg_vocab_t *v);

/* Loads Athena's CONCEPT.csv and CONCEPT_RELATIONSHIP.csv from dir. vocabularies (n entries,
 * NULL/0 for all) restricts which codes are keyed; the standard concepts they map to are looked
 * up whatever their vocabulary (that needs a second pass over CONCEPT.csv when some targets are
 * outside the list). Stops at the first malformed line: err gets file:line:column. */
cg_err_t cg_vocab_load_athena(cg_vocab_t *v, const char *dir, const char *const *vocabularies,
                              size_t n, cg_error_t *err);

/* Looks up (vocabulary_id, code) exactly (case-sensitive, as OMOP stores them). Returns 1 and
 * fills *hit when found, else 0 (and *hit is zeroed when hit is not NULL). */
int cg_vocab_lookup(const cg_vocab_t *v, cg_slice_t vocabulary_id, cg_slice_t code,
                    cg_vocab_hit_t *hit);

/* Maps a coding-system name as found in messages to an OMOP vocabulary_id: HL7 v2 table 0396
 * names (LN, SCT, I10, I10C, ICD10CM, I9C, RXNORM, CVX, NDC, UCUM, HL70001, HL70004 ...,
 * case-insensitive) and CDA/FHIR codeSystem OIDs (with or without "urn:oid:"). Unknown: NULL.
 * The result is a static string. */
const char *cg_vocab_system(cg_slice_t name);

/* Whether name is a coding-system name cg_vocab_system() knows, or an OMOP vocabulary_id it maps
 * names to ("LOINC", "SNOMED", "CPT4"…): what a spec's lookup may name without a loaded table. */
int cg_vocab_system_known(cg_slice_t name);

/* The vocabulary_ids that have codes loaded: how many, and the i-th (owned by the table), in
 * the order they were first loaded. For messages such as "unknown vocabulary (loaded: …)". */
size_t cg_vocab_vocabulary_count(const cg_vocab_t *v);
const char *cg_vocab_vocabulary_name(const cg_vocab_t *v, size_t i);

/* Like cg_vocab_lookup(), where system is first passed through cg_vocab_system(); a system that
 * is not a known name is taken as a vocabulary_id as is (so "LOINC" or a project vocabulary
 * works too). */
int cg_vocab_lookup_system(const cg_vocab_t *v, cg_slice_t system, cg_slice_t code,
                           cg_vocab_hit_t *hit);

/* unit_concept_id of a UCUM code (vocabulary "UCUM"), 0 when unknown. Exact match: UCUM is
 * case-sensitive. */
int32_t cg_vocab_unit(const cg_vocab_t *v, cg_slice_t ucum);

#endif
