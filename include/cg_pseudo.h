/* cg_pseudo.h - keyed pseudonyms, per-patient date shifts and deterministic row ids.
 *
 * person_id / person_source_value: HMAC-SHA256(key, authority || 0x1F || patient_id); the
 * person_id is the first 8 bytes big-endian with the top bit cleared (0 becomes 1), the source
 * value the first 40 hex characters (OMOP person_source_value is varchar(50)).
 *
 * Date shift: HMAC-SHA256(key, "\0cohortgate/date-shift/v1\x1F" || authority || 0x1F ||
 * patient_id); the first 8 bytes big-endian modulo 2N+1, minus N, give a shift in [-N, N] days.
 * The leading NUL cannot start a person input (authorities may not contain NUL or 0x1F), so the
 * two HMAC inputs never coincide and the shift says nothing about the person_id.
 *
 * Message ids (cg_pseudo_message_id): the first 40 hex digits of HMAC-SHA256(key,
 * "\0cohortgate/message-id/v1\x1F" || id). Records carry it as source.message_id (and a
 * document retraction its replaced_document_id) instead of the sender's MSH-10 or document id,
 * which are identifiers; the same id under the same key always gives the same text, so a
 * retraction still finds the records of the document it replaces. The leading NUL keeps it
 * apart from person inputs, the label from the date shift's.
 *
 * Row ids (cg_pseudo_key_id): SipHash-2-4 (libsodium's crypto_shorthash_siphash24, or for the
 * packed form the same function in pseudo.c, resuming from the fixed first blocks) under an id
 * key, the first 16 bytes of HMAC-SHA256(key, "\0cohortgate/row-id-key/v4"), of 0x00 ||
 * "\0cohortgate/row-id/v4\x1F" || kind || u32be(len) ns || ns || per part: 0x00 when absent, else
 * 0x01 || u32be(len) || bytes, reduced as a person_id; an input over 512 bytes is first reduced
 * by HMAC-SHA256 under the site key and hashed as 0x01 || that digest. ns is the target table (a
 * rule's "id", or a hash_id's "ns"); kind tells a business key (CG_PSEUDO_ID_KEY) from a message
 * identity (CG_PSEUDO_ID_MESSAGE), so no key can pose as a message. Keyed because the parts are
 * identifiers (order and visit numbers, the sender's message ids): an unkeyed hash of a visit
 * number is reversible by enumeration. SipHash is a PRF with a 128-bit key, like HMAC for this
 * purpose, at a fraction of its cost on short inputs: a row id per row with HMAC-SHA256 took a
 * quarter of mapping's time. The length framing and the presence byte keep ("ab","c") apart
 * from ("a","bc") and an empty part from an absent one.
 *
 * Assigning authorities (cg_pseudo_authority): the authority hashed is the identifier's own
 * authority, else the site's default for the sending facility, else (an opt-in) the sending
 * facility itself; any of them then passes through the alias table, so an OID and a namespace
 * naming one registry hash alike. An identifier with none of these is refused: hashing it with
 * an empty authority would merge the local numbers of every hospital that sends none.
 *
 * Key material: a cg_pseudo_key_t holds the raw key in memory wiped (OPENSSL_cleanse) on
 * destroy. cg_pseudo_new() only borrows the key to precompute the HMAC inner/outer SHA-256
 * states, so the caller may destroy the key right after. No function here ever puts key bytes
 * into an error text.
 *
 * Threads: cg_pseudo_t functions take a non-const object for the API's stability, but keep no
 * scratch state today: the precomputed HMAC states are SHA256_CTX structs, copied onto the
 * stack per call (OpenSSL's deprecated low-level SHA-256, the only interface that restores a
 * saved state without allocating: through EVP each HMAC made two small malloc/free pairs, and a
 * keyed id on every row halved mapping throughput). Still give each worker its own with
 * cg_pseudo_clone() (a struct copy; never touches the key).
 */
#ifndef CG_PSEUDO_H
#define CG_PSEUDO_H

#include <stddef.h>
#include <stdint.h>

#include "cg_buf.h"
#include "cg_err.h"

/* Environment variable read when neither config nor --key-file names a key. */
#define CG_PSEUDO_KEY_ENV "COHORTGATE_PSEUDONYM_KEY"
/* Shorter keys are refused: an HMAC key should carry at least the hash's 256 bits. */
#define CG_PSEUDO_KEY_MIN 32
/* Longer files are refused (a key file is not a data file). */
#define CG_PSEUDO_KEY_MAX 4096
/* Largest accepted date-shift range N (days). */
#define CG_PSEUDO_DATE_SHIFT_MAX 3650
/* person_source_value length in hex characters (without the NUL). */
#define CG_PSEUDO_SOURCE_VALUE_LEN 40

typedef struct cg_pseudo_key cg_pseudo_key_t;
typedef struct cg_pseudo cg_pseudo_t;

/* Loads the key from exactly one source:
 *   file_path != NULL: the file's bytes, one trailing "\n" stripped;
 *   else env_name != NULL: that environment variable's value, as is;
 *   else the environment variable CG_PSEUDO_KEY_ENV (the CLI fallback without config).
 * Passing both file_path and env_name is an error (a config must name one). A key shorter than
 * CG_PSEUDO_KEY_MIN bytes is refused. Returns NULL and fills errstr on failure; the error text
 * names the file or variable and the key's length, never its bytes. Caller owns the result. */
cg_pseudo_key_t *cg_pseudo_key_load(const char *file_path, const char *env_name, char *errstr,
                                    size_t errstr_size);
/* Wraps key bytes already in memory (copied; the caller wipes its own copy). */
cg_pseudo_key_t *cg_pseudo_key_new(const void *bytes, size_t len, char *errstr, size_t errstr_size);
size_t cg_pseudo_key_len(const cg_pseudo_key_t *key);
/* Wipes and frees; key may be NULL. */
void cg_pseudo_key_destroy(cg_pseudo_key_t *key);

/* Precomputes the HMAC states from key (borrowed, not kept). date_shift_days is N of the shift
 * range [-N, N]; 0 disables the shift; above CG_PSEUDO_DATE_SHIFT_MAX or negative is refused.
 * Caller owns the result. */
cg_pseudo_t *cg_pseudo_new(const cg_pseudo_key_t *key, int date_shift_days, char *errstr,
                           size_t errstr_size);
/* An independent object with the same key states, for another thread. */
cg_pseudo_t *cg_pseudo_clone(const cg_pseudo_t *p, char *errstr, size_t errstr_size);
/* Frees (OpenSSL wipes the digest states); p may be NULL. */
void cg_pseudo_destroy(cg_pseudo_t *p);
int cg_pseudo_date_shift_days(const cg_pseudo_t *p);

/* HMAC-SHA256(key, data) into out; the primitive the others build on (and what the RFC 4231
 * tests check). */
cg_err_t cg_pseudo_hmac(cg_pseudo_t *p, const void *data, size_t len, unsigned char out[32]);
/* The same of the concatenation of parts[0..n) (absent parts, ptr NULL, add nothing), without
 * joining them first. */
cg_err_t cg_pseudo_hmac_parts(cg_pseudo_t *p, const cg_slice_t *parts, size_t n,
                              unsigned char out[32]);

/* Length of a keyed message id in hex characters (without the NUL). */
#define CG_PSEUDO_MESSAGE_ID_LEN 40

/* The keyed message id of id (see above) into out, NUL-terminated lowercase hex. id may be
 * empty. CG_ERR_INVALID_ARG for a NULL p or out, or an id with len but no ptr. */
cg_err_t cg_pseudo_message_id(cg_pseudo_t *p, cg_slice_t id,
                              char out[CG_PSEUDO_MESSAGE_ID_LEN + 1]);

typedef struct cg_pseudo_person {
    int64_t person_id;                                 /* positive, < 2^63 */
    char source_value[CG_PSEUDO_SOURCE_VALUE_LEN + 1]; /* lowercase hex, NUL-terminated */
} cg_pseudo_person_t;

/* Pseudonym of a patient identifier. authority may be empty but may not contain NUL or 0x1F
 * (that would make the framing ambiguous); patient_id must be non-empty. CG_ERR_INVALID_ARG
 * otherwise (the identifier is not echoed anywhere). The mapping core never passes an empty
 * authority: it chooses one with cg_pseudo_authority() or refuses the identifier. */
cg_err_t cg_pseudo_person(cg_pseudo_t *p, cg_slice_t authority, cg_slice_t patient_id,
                          cg_pseudo_person_t *out);

/* The patient's date shift in days, in [-N, N]; 0 when the shift is disabled. Same argument
 * rules as cg_pseudo_person(). */
cg_err_t cg_pseudo_date_shift(cg_pseudo_t *p, cg_slice_t authority, cg_slice_t patient_id,
                              int *days);

/* ---- assigning authorities (pseudonym.authorities, specs/README.md "Which identifier is the
 * patient's") ---- */

/* What an identifier without an assigning authority becomes when the sending facility has no
 * default. */
typedef enum cg_pseudo_missing {
    CG_PSEUDO_MISSING_REFUSE = 0, /* refused: the message is dead-lettered (the default) */
    CG_PSEUDO_MISSING_FACILITY,   /* the sending facility is the authority (an explicit opt-in) */
} cg_pseudo_missing_t;

/* One entry of a table: aliases FROM -> TO, defaults FACILITY -> AUTHORITY. */
typedef struct cg_pseudo_pair {
    const char *from, *to;
} cg_pseudo_pair_t;

/* The site's rules; strings borrowed for cg_pseudo_authorities_new() only. All zero: refuse
 * every identifier without an authority, no aliases. */
typedef struct cg_pseudo_authority_opts {
    const cg_pseudo_pair_t *aliases;
    size_t n_aliases;
    const cg_pseudo_pair_t *defaults;
    size_t n_defaults;
    cg_pseudo_missing_t missing;
} cg_pseudo_authority_opts_t;

typedef struct cg_pseudo_authorities cg_pseudo_authorities_t;

/* Where a bad entry of cg_pseudo_authority_opts_t is, for a located error. */
typedef struct cg_pseudo_authority_bad {
    const char *table; /* "aliases" or "defaults"; NULL: no entry (out of memory) */
    size_t index;      /* the entry's index in that table */
} cg_pseudo_authority_bad_t;

/* Checks and copies o. Refused, with a reason in errstr (and the entry in *bad when not NULL):
 * an empty name or value, a NUL or 0x1F in one (the hash's framing), a name twice in a table,
 * an alias whose target is itself aliased (write the final name: one step, no chains), a
 * missing value out of range. Caller owns the result. */
cg_pseudo_authorities_t *cg_pseudo_authorities_new(const cg_pseudo_authority_opts_t *o,
                                                   cg_pseudo_authority_bad_t *bad, char *errstr,
                                                   size_t errstr_size);
/* NULL-safe. */
void cg_pseudo_authorities_destroy(cg_pseudo_authorities_t *a);
cg_pseudo_missing_t cg_pseudo_authorities_missing(const cg_pseudo_authorities_t *a);

/* Where the authority cg_pseudo_authority() chose came from. */
typedef enum cg_pseudo_authority_from {
    CG_PSEUDO_AUTH_GIVEN = 0,   /* the identifier's own */
    CG_PSEUDO_AUTH_DEFAULT,     /* defaults[sending facility] */
    CG_PSEUDO_AUTH_FACILITY,    /* the sending facility (missing "facility") */
    CG_PSEUDO_AUTH_NO_DEFAULT,  /* refused: none, no default, missing "refuse" */
    CG_PSEUDO_AUTH_NO_FACILITY, /* refused: none, and no sending facility to default by */
} cg_pseudo_authority_from_t;

/* The authority to hash for an identifier whose own is authority (empty: none) sent by
 * facility (empty: unknown): the first of the identifier's own, defaults[facility] and (with
 * missing "facility") the facility, then put through the aliases (exact bytes, one step).
 * *out points into authority, facility or a (valid while a lives). a NULL: no aliases, no
 * defaults, refuse. Returns where it came from; for the refusals *out is empty. */
cg_pseudo_authority_from_t cg_pseudo_authority(const cg_pseudo_authorities_t *a,
                                               cg_slice_t authority, cg_slice_t facility,
                                               cg_slice_t *out);

/* Most parts a row id takes (a spec's "id" or hash_id list is checked against it). */
#define CG_PSEUDO_ID_MAX_PARTS 12

/* What a row id's parts are (cg_pseudo_key_id). */
typedef enum cg_pseudo_id_kind {
    CG_PSEUDO_ID_KEY = 1,     /* the fact's business key: an order number, a visit number ... */
    CG_PSEUDO_ID_MESSAGE = 2, /* the fallback: the message's identity, the rule and position */
} cg_pseudo_id_kind_t;

/* Keyed, deterministic 63-bit id (positive, never 0) of ns and parts. A part with ptr NULL is
 * absent (framed apart from an empty one). No allocation beyond OpenSSL's (see above).
 * CG_ERR_INVALID_ARG for a NULL p or out, a part with len but no ptr, or a part over 4 GiB. */
cg_err_t cg_pseudo_key_id(cg_pseudo_t *p, cg_pseudo_id_kind_t kind, cg_slice_t ns,
                          const cg_slice_t *parts, size_t n_parts, int64_t *out);

/* What cg_pseudo_key_id_memo keeps between its calls: the whole 8-byte blocks of the last id's
 * framing after its kind and SipHash's state after each, so that an id sharing its first parts
 * with the last one (an order's results: table, facility, order number) absorbs only the blocks
 * after them. One caller's (a mapper's), one thread's; all zero (empty) before the first use. */
#define CG_PSEUDO_ID_MEMO_BLOCKS 16

typedef struct cg_pseudo_id_memo {
    const cg_pseudo_t *p; /* whose key made the states (NULL: empty) */
    int kind;
    uint32_t blocks; /* of words and states, valid */
    uint64_t words[CG_PSEUDO_ID_MEMO_BLOCKS];
    uint64_t states[CG_PSEUDO_ID_MEMO_BLOCKS][4];
} cg_pseudo_id_memo_t;

/* Empties memo, wiping its key-derived states (before it is freed, or its p changes). */
void cg_pseudo_id_memo_clear(cg_pseudo_id_memo_t *memo);

/* cg_pseudo_key_id's id, computed from the state memo kept for the longest run of whole blocks
 * it shares with the last id memo saw; memo then holds this id's. memo NULL: cg_pseudo_key_id. */
cg_err_t cg_pseudo_key_id_memo(cg_pseudo_t *p, cg_pseudo_id_memo_t *memo, cg_pseudo_id_kind_t kind,
                               cg_slice_t ns, const cg_slice_t *parts, size_t n_parts,
                               int64_t *out);

/* An id of another key's ids under this key: SipHash-2-4 under the id key of the 8 bytes of id
 * (big-endian), reduced as a person_id. For re-keying a site's ids per subscriber (cg_release.h):
 * the same id gives the same result in every table, so joins hold, and two keys' results share
 * nothing. Its 8-byte input is shorter than any cg_pseudo_key_id input, so the two never meet. */
int64_t cg_pseudo_id64(const cg_pseudo_t *p, int64_t id);

#endif
