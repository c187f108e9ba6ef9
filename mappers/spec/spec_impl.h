/* spec_impl.h - the compiled form of mapping specs, shared by the compiler and the evaluator.
 * Private to mappers/. Everything here is allocated once at load, in the spec set's arena. */
#ifndef CG_SPEC_IMPL_H
#define CG_SPEC_IMPL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <string.h>

#include "cg_hl7.h"
#include "cg_spec.h"
#include "cg_target.h"
#include "cg_xml.h"

/* Values during evaluation: text in the message arena, or absent. 16 bytes, so that it travels
 * in two registers and is copied whole (24 bytes measured ~4% slower: field-by-field stores read
 * back as one vector stall store forwarding). Values are bounded by the message size limits. */
typedef struct cg_spec_val {
    const char *s;
    uint32_t len;
    uint32_t present;
} spec_val_t;

typedef enum expr_kind {
    EX_PATH, /* in the spec's path language: its format reads the value (path_value) */
    EX_CONST,
    EX_VAR,
    EX_CONCAT,
    EX_COALESCE,
    EX_IF,
    EX_PATIENT,
    EX_HASH_ID,
    EX_PSEUDONYM, /* of another identifier: list.items = {id, authority or NULL} */
} expr_kind_t;

typedef enum xform_kind {
    XF_TRIM,
    XF_UPPER,
    XF_LOWER,
    XF_DATE,
    XF_DATETIME,
    XF_NUMBER,
    XF_INTEGER,
    XF_SN,
    XF_REGEX_EXTRACT,
    XF_REGEX_REPLACE,
    XF_MAP,
    XF_LOOKUP,
    XF_UNIT,
    XF_TRUNCATE,
    XF_REFERENCE, /* XML: "#id" → the text of the narrative element with that ID */
} xform_kind_t;

typedef enum sn_part {
    SN_NUMBER,     /* the first number */
    SN_COMPARATOR, /* >, <, >=, <=, =, <> ("=" when absent and a number is present) */
    SN_SEPARATOR,  /* -, +, /, : */
    SN_NUMBER2,
} sn_part_t;

typedef enum lookup_want {
    LK_CONCEPT_ID,
    LK_SOURCE_CONCEPT_ID,
    LK_DOMAIN_ID,
} lookup_want_t;

typedef enum patient_part {
    PT_PERSON_ID,
    PT_SOURCE_VALUE,
} patient_part_t;

typedef struct cg_spec_expr expr_t;
typedef struct cond cond_t;

typedef struct map_entry {
    const char *from;
    size_t from_len;
    const char *to; /* NULL: absent */
    size_t to_len;
} map_entry_t;

typedef struct xform {
    xform_kind_t kind;
    union {
        sn_part_t sn;
        struct {
            pcre2_code *re;
            uint32_t group;
            const char *with; /* replacement, for REGEX_REPLACE */
            int need;         /* a byte every match holds (cg_spec_regex_need), or -1 */
        } re;
        struct {
            map_entry_t *entries;
            size_t n;
            const map_entry_t *deflt; /* "*" */
        } map;
        struct {
            const char *vocabulary; /* fixed OMOP vocabulary_id, or NULL with vocab_expr */
            expr_t *vocab_expr;     /* HL7 coding system / OID / vocabulary_id per message */
            lookup_want_t want;
        } lookup;
        size_t truncate;
    } u;
} xform_t;

struct cg_spec_expr {
    expr_kind_t kind;
    union {
        cg_hl7_path_t path;          /* EX_PATH of an hl7v2 spec */
        const cg_xml_xpath_t *xpath; /* EX_PATH of an xml spec: at the current node */
        const void *compiled;        /* EX_PATH of another format: its own compiled form */
        struct {
            const char *s;
            size_t len;
            int present;
        } cst;
        int var; /* index into the bindings of the scope that defines it */
        struct {
            expr_t **items;
            size_t n;
            const char *sep;
        } list; /* CONCAT, COALESCE, HASH_ID (items; sep is the namespace for HASH_ID) */
        struct {
            cond_t *cond;
            expr_t *then, *els;
        } iff;
        patient_part_t patient; /* also the part wanted by EX_PSEUDONYM */
    } u;
    patient_part_t part; /* EX_PSEUDONYM */
    xform_t *xforms;
    size_t n_xforms;
    expr_t *deflt;
    int required;
    const char *text; /* the source text, for --trace: the path, or a short description */
    uint32_t path_id; /* EX_PATH: the same for equal paths across the spec set, so the evaluator's
                         memo keys on one number; 0 for paths it does not memoize ([*]) */
    /* A value that every row of a rule's foreach under the same other place shares: all its paths
     * read one place that is not the row's own (OBR-3.1 and OBR-2.1 read for each OBX read its
     * OBR), and nothing else in it varies by row (no variable, no patient). It is memoized by that
     * place (spec_prepare.c, cg_spec_format_t.anchor_place): each OBX after an order's first
     * finds what the first computed. anchor_id: its memo key, beyond the path ids, shared by the
     * spec's same expressions (0: none); anchor: one of its paths, which names the place. */
    uint32_t anchor_id;
    uint32_t anchor_group; /* the format's number for its place (cg_spec_format_t.anchor_group) */
    const struct cg_spec_expr *anchor;
};

typedef enum cond_kind {
    CD_EQ,
    CD_NE,
    CD_IN,
    CD_REGEX,
    CD_PRESENT,
    CD_NOT,
    CD_ALL,
    CD_ANY,
} cond_kind_t;

struct cond {
    cond_kind_t kind;
    expr_t *a, *b;       /* EQ, NE: a b; IN, REGEX, PRESENT: a */
    const char **values; /* IN */
    size_t *value_lens;
    size_t n_values;
    pcre2_code *re; /* REGEX */
    int re_need;    /* a byte every match holds (cg_spec_regex_need), or -1 */
    cond_t **subs;  /* NOT (1), ALL, ANY */
    size_t n_subs;
};

typedef struct binding {
    const char *name;
    expr_t *expr;
    /* a rule's meta: "name": as the envelope writes it (spec_prepare.c; NULL: it escapes) */
    const char *json_key;
    uint32_t json_key_len;
} binding_t;

/* What a numeric column's value is known to be when present, whatever the message
 * (spec_prepare.c): then spec_row.c types it without making it canonical again. */
typedef enum column_canon {
    COL_CANON_NONE, /* anything: checked and made canonical per row */
    COL_CANON_INT,  /* an integer as cg_spec_number writes it (ids, concept ids): only its range
                     * is checked */
    COL_CANON_NUM,  /* a decimal as cg_spec_number writes it, into a CG_COL_NUMBER column */
} column_canon_t;

typedef struct column {
    const cg_target_column_t *col; /* the target's column: name, type, index in the row */
    expr_t *expr;
    uint8_t canon; /* column_canon_t */
} column_t;

/* The guards of a pass's rules that read the same path, as one table (spec_prepare.c): for each
 * value any of them lists (of at most 8 bytes), which of the pass's rules take it. The path is
 * read once an item and its value found here, instead of each rule's list compared in turn. */
typedef struct fuse_guard {
    uint64_t word; /* the value's bytes (cg_spec_pack8) */
    uint32_t len;
    uint32_t rules; /* bit k: rule k of the pass lists it */
} fuse_guard_t;

typedef struct fuse_table {
    uint32_t path_id; /* the path the guards read (expr_t.path_id, not 0) */
    uint32_t rules;   /* bit k: rule k's guard is in the table */
    size_t n;
    fuse_guard_t *values;
} fuse_table_t;

/* s[0..n), 1 <= n <= 8, as the low bytes of a word (the rest 0), without reading past it. */
static inline uint64_t cg_spec_pack8(const char *s, uint32_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    if (n >= 4) { /* the first and last four bytes; where they overlap, the same bytes */
        uint32_t lo =
            (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
        const unsigned char *q = p + n - 4;
        uint32_t hi =
            (uint32_t)q[0] | (uint32_t)q[1] << 8 | (uint32_t)q[2] << 16 | (uint32_t)q[3] << 24;
        return (uint64_t)lo | (uint64_t)hi << (8 * (n - 4));
    }
    return (uint64_t)p[0] | (uint64_t)p[n / 2] << (8 * (n / 2)) |
           (uint64_t)p[n - 1] << (8 * (n - 1));
}

typedef struct cg_spec_rule {
    const char *name;
    const cg_target_table_t *table; /* its target is the records' standard */
    int has_foreach;
    cg_hl7_path_t foreach;          /* a path naming segments: OBX[*], DG1[*] */
    const cg_xml_xpath_t *xforeach; /* XML specs: the nodes, one row each */
    cond_t *when;
    int when_uses_lets; /* when reads a rule-level binding: the lets go first (else when does,
                         * and a rule's lets are evaluated only for the rows it makes) */
    binding_t *lets;
    size_t n_lets;
    column_t *columns; /* in the table's column order */
    size_t n_columns;
    binding_t *meta; /* facts with no column, written beside the row ("meta") */
    size_t n_meta;
    int sets_pk; /* the spec gives the primary key itself */
    /* "id": the fact's business key, hashed (keyed) with the table's name into the primary key;
     * when a part is absent the row falls back to the message's identity (spec_row.c) */
    expr_t **id_parts;
    size_t n_id_parts;
    cond_t *delete_when;    /* "delete_when": the row is a retraction (op delete) when it holds */
    uint8_t op;             /* the records' operation otherwise (cg_row_op_t): the table's kind */
    const column_t *person; /* the rule's person_id column (a delete carries it), or NULL */
    column_t pk;            /* the table's primary key (pk.col NULL when it has none) */
    size_t name_len;        /* strlen(name) */
    /* "document" (table NULL): the value holds a whole XML document that the spec set's XML
     * specs map as if it came on its own, keyed to this spec's patient (spec_embed.c); the rule
     * makes no row of its own. doc_encoding: HL7 table 0299 (A, Hex, Base64; absent: A) */
    expr_t *doc_data, *doc_encoding;
    /* its rows' provenance as the envelope writes it (cg_row_t.json_prov; spec_prepare.c) */
    const char *json_prov;
    uint32_t json_prov_len;
    /* the columns its rows may hold: its key and columns, ascending (cg_row_t.cols;
     * spec_prepare.c); NULL: not made (every column is looked at) */
    const uint16_t *row_cols;
    uint32_t n_row_cols;
    /* when itself, or its "all"'s first part, when that is an "in" on a plain path: tested
     * inline first (spec_prepare.c); NULL: none */
    const cond_t *guard;
    /* how many rules from this one on go over the same foreach in one pass, each item's rules in
     * turn (the OBX rules told apart by OBX-2); 0 or 1: on its own (spec_prepare.c) */
    uint32_t fuse_n;
    /* the first rule of a pass: its rules' guards on one path as a table (NULL: none) */
    const fuse_table_t *fuse_tab;
} rule_t;

/* At most this many rules in one pass (the rows' reordering counts them on the stack). */
#define SPEC_FUSE_MAX 16

typedef struct trigger {
    char type[8];  /* MSH-9.1, e.g. "ORU" */
    char event[8]; /* MSH-9.2, e.g. "R01"; "" for any */
} trigger_t;

typedef struct cg_spec {
    const cg_spec_format_t *format; /* its input format and path language */
    const void *input;              /* another format's compiled "input", its own */
    const char *name;
    size_t name_len;
    int version;
    const char *file;
    /* "params": names and values (the site's, else the spec's defaults) that paths use as
     * ${NAME}; substituted when paths compile, so evaluation never sees them */
    const char **param_names, **param_values;
    size_t n_params;
    trigger_t *triggers;
    size_t n_triggers;
    /* XML specs take documents whose root element has this local name and, when given, one of
     * these templateId roots; message_id (NULL: the root's id, "root^extension") names the
     * document in row ids. */
    cg_xml_ns_t *ns; /* its own namespace prefixes */
    size_t n_ns;
    const char *xml_root;
    const char **doc_templates;
    size_t n_doc_templates;
    expr_t *message_id;
    cond_t *when;
    int has_patient;
    expr_t *patient_id;
    expr_t *patient_authority;
    /* the sending facility: what an identifier without an authority is defaulted by
     * (pseudonym.authorities); the spec's "facility", else its format's default, else NULL */
    expr_t *patient_facility;
    binding_t *lets;
    size_t n_lets;
    rule_t *rules;
    size_t n_rules;
    size_t max_vars; /* message lets + the largest rule's lets */
    /* "on_error": "entry" (the default for XML documents): a foreach node whose row fails is
     * left out and reported as a quality finding; "message" (HL7 v2's default): the input fails */
    int on_error_entry;
    /* "no_research_content": why the messages it takes carry nothing to map (NULL: a mapping
     * spec). Such a spec has no rules: a message only it takes is consumed as a counted outcome,
     * not dead-lettered; a mapping spec that takes the same message wins. */
    const char *no_research_content;
} spec_t;

/* The compiled selection of HL7 v2 specs (spec_select.c): one entry per message type and event
 * a spec names ("ADT^A01"), and one per type for specs taking all its events ("SIU"); an event's
 * entry lists those too. Types and events are at most 7 bytes, packed into integers, so a lookup
 * is a hash probe with integer compares, whatever the number of specs and triggers. */
typedef struct select_entry {
    uint64_t type, event; /* packed, zero-padded; event 0: every event of the type */
    uint32_t first, n;    /* the specs' indices: ss->sel_specs[first .. first + n), load order */
    char label[16];       /* "TYPE^EVENT" or "TYPE": the outcome's type (bounded by the specs) */
} select_entry_t;

struct cg_specset {
    cg_arena_t arena; /* every compiled object */
    spec_t *specs;
    size_t n_specs;
    pcre2_code **regexes; /* to free */
    size_t n_regexes, cap_regexes;
    uint32_t max_capture;        /* for the mappers' match data */
    const cg_hl7_path_t **paths; /* distinct memoized paths; path_id - 1 indexes it */
    expr_t **path_first;         /* the first expression of each, while compiling */
    uint32_t *path_uses;         /* how many expressions read each, while compiling */
    size_t n_paths, cap_paths;
    uint32_t n_anchors; /* anchored expressions (expr_t.anchor_id: n_paths + 1 ...) */
    /* what the formats' compilers made outside the arena (an XPath), with how to free it */
    struct spec_owned {
        void (*free)(void *);
        void *p;
    } * owned;
    size_t n_owned, cap_owned;
    cg_error_t *warnings; /* CG_SPEC_MAX_WARNINGS kept (spec_warn.c) */
    size_t n_warnings;    /* found, which may be more */
    select_entry_t *sel;  /* open addressing, sel_mask + 1 slots (a power of two); type 0: free */
    size_t sel_mask;
    uint32_t *sel_specs;
};

/* spec_select.c: builds ss->sel from the HL7 v2 specs' triggers (0, or -1 out of memory), and
 * finds the entry a message's MSH-9.1 and MSH-9.2 select (NULL: no spec takes it). */
int cg_spec_select_build(cg_specset_t *ss);
/* spec_prepare.c: each rule's json_prov (in the arena) and guard, once the set compiled (0, or
 * -1 out of memory). */
int cg_spec_prepare(cg_specset_t *ss);
const select_entry_t *cg_spec_select_hl7(const cg_specset_t *ss, cg_slice_t type, cg_slice_t event);

/* A byte that every match of re holds, so that a value without it cannot match and the
 * regex need not run (most OBX-7 reference ranges have no '-' for the range regexes): the
 * literal PCRE2 records as required, when it is ASCII and not a letter (a caseless part of the
 * pattern would match the other case); -1 when there is none. spec_compile.c. */
int cg_spec_regex_need(const pcre2_code *re);

/* Whether v[0..n) can match a regex whose needed byte is need (-1: any value can). */
static inline int cg_spec_regex_may_match(int need, const char *v, size_t n)
{
    return need < 0 || (n && memchr(v, need, n));
}

/* Compiled regexes run with these limits so a hostile input cannot make one run away. */
#define SPEC_REGEX_MATCH_LIMIT 100000u
#define SPEC_REGEX_DEPTH_LIMIT 1000u

/* transforms.c: HL7 TS/DTM → ISO date or datetime, shifted by shift_days. Writes into out (at
 * least 40 bytes); returns the length, or 0 when s is not a valid TS. */
size_t cg_spec_ts_to_iso(const char *s, size_t len, int want_datetime, const char *utc_offset,
                         int shift_days, char *out);
/* Canonical decimal text of s (trimmed, optional sign, digits, optional fraction); 0 if not. */
size_t cg_spec_number(const char *s, size_t len, int integer_only, char *out, size_t out_size);

#endif
