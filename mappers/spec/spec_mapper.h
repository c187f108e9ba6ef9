/* spec_mapper.h - a mapper's state while it maps one message, shared by the files that evaluate
 * compiled specs: spec_eval.c (expressions, transforms, conditions, the patient), spec_hl7.c (HL7
 * v2 messages and paths), spec_xml.c (XML documents), spec_row.c (typed rows) and spec_mapper.c
 * (the mapper, a message's run through the specs). Private to mappers/spec/.
 *
 * The few functions on every field's path (eval, eval_path, the arena copy) are inline here, so
 * that splitting the files costs no call on the hot path.
 */
#ifndef CG_SPEC_MAPPER_H
#define CG_SPEC_MAPPER_H

#include "spec_impl.h"

#include "cg_pseudo.h"
#include "cg_row.h"
#include "cg_vocab.h"

#include <string.h>
#include <time.h>

/* Values of single-valued paths already read in this message: rules over the same OBX ask for
 * OBX-2, OBX-3 and the like again and again. Direct-mapped, keyed by the path's path_id (equal
 * paths share one, spec_hl7_format.c) and the scope; an entry counts only for the message (gen) it
 * was made in, and values stay valid for the whole message (raw slices or the arena). */
#define PATH_MEMO_SIZE 4096u /* 1024 lost a tenth of the hits to collisions on long ORUs */
#define MEMO_SEG_SPAN  8u    /* entries between the places of two segments (memo_slot_at) */

typedef struct path_memo {
    uint32_t gen;
    uint32_t path_id;
    uint32_t cur; /* the scope's cursor: the mapper's scopes span the whole message (begin 0,
                   * end its segment count, fixed by gen), so the cursor tells them apart */
    uint32_t run; /* an anchored value's spec run (cg_mapper.run); 0 for a path's */
    spec_val_t val;
} __attribute__((aligned(32))) path_memo_t; /* 32 bytes: one cache line per probe */

/* Vocabulary lookups of this message: rules over the same OBX look its code up several times
 * (routing, concept, source concept). Keyed by the value slices, which stay put for the message. */
#define LOOKUP_MEMO_SIZE 256u

typedef struct lookup_memo {
    uint32_t gen;
    const char *sys, *code;
    size_t sys_len, code_len;
    int found;
    cg_vocab_hit_t hit;
} lookup_memo_t;

/* Coding-system names to vocabulary_ids (spec_eval.c), by the name's text: whatever the message,
 * a name stands for the same vocabulary (cg_vocab_system's table is static). */
#define SYSTEM_MEMO_SIZE 4u

typedef struct system_memo {
    char name[24];
    uint32_t len, set;
    const char *vocab; /* cg_vocab_system's answer (static), NULL: the name itself */
    uint32_t vocab_len;
} system_memo_t;

/* TS conversions of this message: a row asks for the date and the datetime of the same value
 * (and the next rule over the same OBX again), so the datetime form is kept and the date is its
 * first 10 bytes (cg_spec_ts_to_iso writes the same date either way, and fails alike). Keyed by
 * the value's text (an order's results share their times, each in a slice of its own; the first
 * slice seen stays put for the message), the spec and the date shift. */
#define TS_MEMO_SIZE 16u

typedef struct ts_memo {
    uint32_t gen;
    int shift_days;
    const void *spec;
    const char *s;
    size_t len;
    const char *iso;
    size_t iso_len;
} ts_memo_t;

/* The last date and the last datetime value that passed spec_row.c's shape check in this
 * message: values stay put for the message, so the same slice passes again. */
typedef struct iso_memo {
    uint32_t gen, len;
    const char *s;
} iso_memo_t;

/* The places anchored expressions read from the current row (spec_eval.c): the OBR and the ORC
 * of an OBX, found once a row rather than once an expression. Keyed by the message (gen), the
 * scope's cursor and the format's group for the place. */
#define PLACE_MEMO_SIZE 4u

typedef struct place_memo {
    uint32_t gen, cur, group, at;
} place_memo_t;

/* The HL7 v2 places anchored expressions read (spec_hl7_value.c): per segment name, the nearest
 * segment of that name at or before cursor from (at; at > from: none before, the first after),
 * so that the next row's cursor looks at the segments since from, not back through the message. */
#define SEG_PLACE_SIZE 4u
#define SEG_PLACE_SPAN 16u /* farther on, the search from the cursor is as cheap */

typedef struct seg_place {
    uint32_t gen, from, at, end;
    char name[4];
} seg_place_t;

struct cg_mapper {
    const cg_specset_t *ss;
    /* How the current input's rules run: set by its format's entry point (spec_hl7.c,
     * spec_xml.c), so spec_run.c calls neither file directly. */
    cg_err_t (*run_rule)(cg_mapper_t *mp, const rule_t *r);
    /* The value of a path of its format (cg_spec_format_t.path_value), set alike. */
    cg_err_t (*path_value)(cg_mapper_t *mp, const expr_t *e, spec_val_t *out);
    /* Rules over the same items in one pass (cg_spec_format_t.run_rules), set alike; NULL for a
     * format without */
    cg_err_t (*run_rules)(cg_mapper_t *mp, const rule_t *rules, size_t n);
    /* The place an anchored expression reads (cg_spec_format_t.anchor_place), set alike; NULL
     * for a format without anchors */
    int (*anchor_place)(cg_mapper_t *mp, const expr_t *e, uint32_t *place);
    const cg_vocab_t *vocab;
    const char *utc_offset;
    cg_pseudo_t *pseudo; /* our own clone: it keeps scratch state */
    /* row ids' SipHash states by their leading blocks (spec_row.c): an order's results share
     * their table, facility and order number */
    cg_pseudo_id_memo_t id_memo;
    const cg_pseudo_authorities_t *authorities; /* the env's; NULL: refuse, no aliases */
    cg_hl7_msg_t *msg;                          /* for cg_mapper_map_hl7 */
    cg_hl7_msg_t *last; /* the last input, when it decoded as HL7 v2 (cg_mapper_msg_type) */
    cg_xml_doc_t *xdoc; /* for cg_mapper_map_xml; made on first use */
    cg_xml_eval_t *xev;
    cg_xml_options_t xml_opts;
    int xml_opts_set;
    cg_arena_t arena; /* values of one message */
    cg_buf_t scratch; /* decoding */
    cg_row_t *rows;   /* their values and meta are in the arena */
    size_t n_rows, cap_rows;
    /* where a fused pass puts its rows in rule order (spec_hl7.c); then swapped with rows */
    cg_row_t *rows_spare;
    size_t cap_spare;
    spec_val_t *vars;
    size_t cap_vars;
    pcre2_match_data *md;
    pcre2_match_context *mctx;
    int trace;
    /* cg_spec_env_t.message_id_plain */
    int message_id_plain;
    path_memo_t *memo; /* PATH_MEMO_SIZE entries */
    lookup_memo_t lookups[LOOKUP_MEMO_SIZE];
    system_memo_t systems[SYSTEM_MEMO_SIZE];
    ts_memo_t ts_memo[TS_MEMO_SIZE];
    place_memo_t places[PLACE_MEMO_SIZE];
    seg_place_t seg_places[SEG_PLACE_SIZE];
    iso_memo_t iso_ok[2]; /* [0] a date column's, [1] a datetime column's */
    uint32_t gen;         /* of the message being mapped; never 0 */
    /* of the spec run (its patient and date shift) within the message: anchored values are
     * memoized for it (path_memo_t.pad) */
    uint32_t run;
    /* the per-message budget (cg_spec_env_t.max_message_ms): checked every BUDGET_EVERY rows
     * a rule considers, on a coarse clock, so that it costs nothing measurable */
    unsigned budget_ms;
    unsigned budget_tick;
    int64_t deadline_ms;

    /* per message */
    cg_hl7_msg_t *m;   /* NULL for an XML document */
    const void *xnode; /* XML: the foreach's node, NULL for the document */
    char esc;          /* the message's escape character, '\0' when none */
    int cs_utf8;       /* its charset is UTF-8 */
    int cs_ascii;      /* or another one whose ASCII bytes decode to themselves */
    int cs_plain;      /* cs_utf8 || cs_ascii: ASCII without escapes is its own value */
    uint64_t esc_word; /* esc in every byte of a word (spec_hl7_value.c) */
    /* the message's bytes: a short value is checked a word at a time when the word stays
     * inside them (spec_hl7_value.c) */
    const char *raw_begin, *raw_end;
    const spec_t *spec;
    const rule_t *rule;
    int guard_passed; /* mp->rule's guard holds at this item: its rules' pass tested it */
    const char *column;
    cg_hl7_scope_t scope;
    cg_slice_t message_id;
    /* The message's identity, for rows without a business key: MSH-3, MSH-4, MSH-7, MSH-10; a
     * document's id, setId, versionNumber and effectiveTime (spec_hl7.c, spec_xml.c) */
    cg_slice_t msg_key[4];
    size_t n_msg_key;
    int msg_key_patient; /* XML: the patient's pseudonym joins it (document ids are reused) */
    cg_slice_t time_raw; /* MSH-7, the document's effectiveTime: the records' source time */
    int patient_state;   /* 0 not computed, 1 ok, -1 failed */
    int patient_from;    /* where its authority came from (cg_pseudo_authority_from_t) */
    cg_pseudo_person_t person;
    spec_val_t person_id_text; /* the person_id as text, made once per patient (0 s: not yet) */
    spec_val_t person_sv;      /* its source value, in the arena: rows outlive mp->person */
    int shift_days;
    cg_error_t *err;
    /* the first failure's problem by a value-free name (cg_spec_fail_as); NULL: by its code */
    const char *problem;
    /* entries left out of this input (on_error "entry"); their paths are in the arena */
    cg_quality_t *quality;
    size_t n_quality, cap_quality;
    int quality_done; /* the input mapped: its findings are handed out (cg_mapper_quality) */
    cg_map_outcome_t outcome; /* of the last message that mapped (cg_mapper_outcome) */
    const spec_t *nrc;        /* the first "no_research_content" spec that took it */
    /* what joins the values of a [*] path: the sep of the innermost concat being evaluated,
     * else "~" (HL7's repetition separator, as parse --get writes them) */
    const char *join_sep;
    /* while an embedded document maps (spec_embed.c): the message's patient stays (its specs'
     * own patients are not computed), and findings name the segment that held it (1-based) */
    int embedded;
    uint32_t embed_segment;
    char embed_seg_name[4];
    /* --trace only: the steps taken by the value being evaluated (which coalesce branch, which
     * vocabulary row, which map entry), and each binding's (cap_vars entries, in the arena) */
    cg_buf_t steps;
    const char **var_steps;
};

static const spec_val_t ABSENT = {NULL, 0, 0};

/* Milliseconds on a coarse monotonic clock (a few ms of resolution, a fraction of a normal
 * clock read's cost): enough for budgets of seconds. */
static inline int64_t cg_spec_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#define BUDGET_EVERY 64u
/* CG_ERR_MAP_LIMIT when the message has run past its time budget (spec_fail.c), else CG_OK.
 * Cheap: reads the clock once every BUDGET_EVERY calls. */
cg_err_t cg_spec_budget_check(cg_mapper_t *mp);
static inline cg_err_t cg_spec_budget(cg_mapper_t *mp)
{
    if (!mp->budget_ms || (++mp->budget_tick & (BUDGET_EVERY - 1)))
        return CG_OK;
    return cg_spec_budget_check(mp);
}

/* What a record says of the source id s[0..len) (its source.message_id, a retraction's
 * replaced_document_id): the keyed hash (cg_pseudo_message_id) in the arena, or s itself when
 * message ids are plain; absent without a pseudo. CG_ERR_NOMEM recorded as the failure. */
cg_err_t cg_spec_source_id(cg_mapper_t *mp, const char *s, size_t len, spec_val_t *out);

/* Records why the message fails (the first failure wins) and returns code. */
cg_err_t cg_spec_fail(cg_mapper_t *mp, cg_err_t code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The same, naming the problem without the value for quality findings ("invalid_datetime"):
 * for failures whose text quotes the input. */
cg_err_t cg_spec_fail_as(cg_mapper_t *mp, cg_err_t code, const char *problem, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Whether a[0..n) and b[0..n) are the same bytes: short texts (codes, times) as one or two
 * words read from both ends, inline; memcmp's call cost more than the compare. */
static inline int cg_spec_same(const char *a, const char *b, size_t n)
{
    if (n >= 8 && n <= 16) {
        uint64_t a0, a1, b0, b1;
        memcpy(&a0, a, 8);
        memcpy(&a1, a + n - 8, 8);
        memcpy(&b0, b, 8);
        memcpy(&b1, b + n - 8, 8);
        return !((a0 ^ b0) | (a1 ^ b1));
    }
    if (n >= 4 && n < 8) {
        uint32_t a0, a1, b0, b1;
        memcpy(&a0, a, 4);
        memcpy(&a1, a + n - 4, 4);
        memcpy(&b0, b, 4);
        memcpy(&b1, b + n - 4, 4);
        return !((a0 ^ b0) | (a1 ^ b1));
    }
    if (n < 4) {
        for (size_t i = 0; i < n; i++)
            if (a[i] != b[i])
                return 0;
        return 1;
    }
    return !memcmp(a, b, n);
}

/* A copy of s[0..n) in the message arena (NUL-terminated); ABSENT when out of memory. */
static inline spec_val_t cg_spec_val_copy(cg_mapper_t *mp, const char *s, size_t n)
{
    if (n > UINT32_MAX) /* spec_val_t's length; callers report it as out of memory */
        return ABSENT;
    char *p = cg_arena_strndup(&mp->arena, s, n);
    return p ? (spec_val_t){p, n, 1} : ABSENT;
}

/* ---- evaluation (spec_eval.c) ---- */

cg_err_t cg_spec_eval_expr(cg_mapper_t *mp, const expr_t *e, spec_val_t *out);
cg_err_t cg_spec_eval_cond(cg_mapper_t *mp, const cond_t *c, int *out);
/* The values of the key parts items[0..n) into parts (absent ones with ptr NULL); *any: one is
 * present. For hash_id and a rule's "id". */
cg_err_t cg_spec_eval_key(cg_mapper_t *mp, expr_t *const *items, size_t n, cg_slice_t *parts,
                          int *any);
/* --trace: notes a step of the value being evaluated ("coalesce: branch 2 of 3 (OBR-7)"); does
 * nothing when tracing is off. */
void cg_spec_trace_step(cg_mapper_t *mp, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* The steps noted since the last call, in the arena (NULL: none), and starts afresh. */
const char *cg_spec_trace_take(cg_mapper_t *mp);
/* Evaluates binding e into mp->vars[i], keeping its steps for the columns that read it. */
cg_err_t cg_spec_eval_binding(cg_mapper_t *mp, const expr_t *e, size_t i);

/* The spec's patient: pseudonym and date shift, computed once per spec run. */
cg_err_t cg_spec_patient(cg_mapper_t *mp);

/* ---- HL7 v2 paths (spec_hl7.c) ---- */

/* The value of path e in the current scope, without the memo. */
cg_err_t cg_spec_hl7_path_value(cg_mapper_t *mp, const expr_t *e, spec_val_t *out);
/* Runs rule r over the message (its foreach's segments, or once). */
cg_err_t cg_spec_hl7_run_rule(cg_mapper_t *mp, const rule_t *r);
/* Runs rules[0..n), which share their foreach, in one pass (cg_spec_format_t.run_rules). */
cg_err_t cg_spec_hl7_run_rules(cg_mapper_t *mp, const rule_t *rules, size_t n);
/* cg_spec_format_t.anchor_place: the segment path e reads in the current scope. */
int cg_spec_hl7_anchor_place(cg_mapper_t *mp, const expr_t *e, uint32_t *place);

/* The memo's slot for path_id read at segment cur: a place hashed from cur plus the path_id, so
 * a segment's values (its paths were compiled together: near ids) share cache lines that the next
 * rule over the same segments finds again; a hash of both scattered them over the 128 KB table
 * (callgrind's cache model: a tenth fewer L1 read misses, no more collisions). */
static inline path_memo_t *memo_slot_at(cg_mapper_t *mp, uint32_t path_id, uint32_t cur)
{
    uint32_t h = cur * 0x9E3779B1u;
    h ^= h >> 16;
    return &mp->memo[(h * MEMO_SEG_SPAN + path_id) & (PATH_MEMO_SIZE - 1)];
}

static inline path_memo_t *memo_slot(cg_mapper_t *mp, uint32_t path_id)
{
    return memo_slot_at(mp, path_id, mp->scope.cur);
}

/* The value of path x in its format's language; memoized when the compiler gave it a path_id
 * (HL7 v2 paths read more than once, spec_hl7_format.c). */
static inline cg_err_t eval_path(cg_mapper_t *mp, const expr_t *x, spec_val_t *out)
{
    if (!x->path_id || mp->scope.begin) /* [*] paths, or none given; a partial scope */
        return mp->path_value(mp, x, out);
    path_memo_t *e = memo_slot(mp, x->path_id);
    if (e->gen == mp->gen && e->path_id == x->path_id && e->cur == mp->scope.cur) {
        *out = e->val;
        return CG_OK;
    }
    cg_err_t rc = mp->path_value(mp, x, out);
    if (rc == CG_OK)
        *e = (path_memo_t){mp->gen, x->path_id, mp->scope.cur, 0, *out};
    return rc;
}

/* eval_expr with its most common cases inline at the call: a variable, a constant, or a bare
 * path (no transforms, default or required flag). Same results. */
static inline cg_err_t eval(cg_mapper_t *mp, const expr_t *e, spec_val_t *out)
{
    if (!e->n_xforms && !e->deflt && !e->required) {
        if (e->kind == EX_VAR) {
            *out = mp->vars[e->u.var];
            return CG_OK;
        }
        if (e->kind == EX_CONST) {
            *out = (spec_val_t){e->u.cst.s, e->u.cst.len, e->u.cst.present};
            return CG_OK;
        }
        if (e->kind == EX_PATH) /* one memo probe, the memo filled on a miss */
            return eval_path(mp, e, out);
    }
    return cg_spec_eval_expr(mp, e, out);
}

/* Whether a, a value, is one of in-condition c's values (absent never is). Inline: rules over
 * the same segments are told apart by one (spec_prepare.c), once per segment and rule. */
static inline int cond_in(const cond_t *c, spec_val_t a)
{
    if (!a.present)
        return 0;
    for (size_t i = 0; i < c->n_values; i++) {
        if (c->value_lens[i] != a.len)
            continue;
        const char *v = c->values[i];
        size_t k = 0;
        while (k < a.len && v[k] == a.s[k])
            k++;
        if (k == a.len)
            return 1;
    }
    return 0;
}

/* ---- XML documents (spec_xml.c) ---- */

/* Runs rule r over the document (its foreach's nodes, or once). */
cg_err_t cg_spec_xml_run_rule(cg_mapper_t *mp, const rule_t *r);
/* The value of XPath e at the current node (the document, or a foreach's). */
cg_err_t cg_spec_xml_path_value(cg_mapper_t *mp, const expr_t *e, spec_val_t *out);
/* "reference": "#id" to the text of the narrative element with that ID. */
cg_err_t cg_spec_xml_reference(cg_mapper_t *mp, const spec_val_t *v, spec_val_t *out);
/* Makes the mapper's XML document and evaluator on first use; CG_ERR_NOMEM. */
cg_err_t cg_spec_xml_ready(cg_mapper_t *mp);
/* Runs every XML spec that takes the parsed document mp->xdoc (its id set per spec); *matched
 * counts the specs that ran. */
cg_err_t cg_spec_xml_run_specs(cg_mapper_t *mp, size_t *matched);
/* The parsed document's root element's name (NULL: none). */
const char *cg_spec_xml_root_name(const cg_mapper_t *mp);
/* mp->err's text when no spec takes the parsed document: its root and templateIds. */
void cg_spec_xml_no_spec(cg_mapper_t *mp);

/* ---- embedded documents (spec_embed.c) ---- */

/* Rule mp->rule, a "document" rule, at its foreach position: the document its data holds is
 * decoded and mapped by the XML specs into this message's rows, keyed to its patient. */
cg_err_t cg_spec_embed_document(cg_mapper_t *mp, uint64_t position);

/* ---- rows (spec_row.c) ---- */

/* Makes the rule's row at position (1-based, for its id) when its condition holds. */
cg_err_t cg_spec_emit_row(cg_mapper_t *mp, uint64_t position);
/* Whether mp->rule applies here (its "when", its lets evaluated first when "when" reads them),
 * within the message's time budget: *ok 1 or 0; the failure's code otherwise. */
cg_err_t cg_spec_rule_applies(cg_mapper_t *mp, int *ok);
/* Every spec ran: hands the rows out. */
void cg_spec_finish_rows(cg_mapper_t *mp, const cg_row_t **rows, size_t *n_rows);

/* ---- entries (spec_quality.c) ---- */

/* Rule mp->rule failed with rc on its foreach node at position (mp->xnode, or the scope's
 * segment): under the spec's on_error "entry", and for a problem of the input, the row is left
 * out, a finding is noted and CG_OK returned; otherwise rc. */
cg_err_t cg_spec_entry_failed(cg_mapper_t *mp, cg_err_t rc, uint64_t position);

/* ---- the mapper (spec_mapper.c) ---- */

/* Starts a message or document: a fresh arena, memo generation and rows. */
void cg_spec_begin_message(cg_mapper_t *mp, cg_error_t *err, cg_error_t *local,
                           const cg_row_t **rows, size_t *n_rows);
/* Runs spec s when its input condition holds; *matched counts the specs that ran. A
 * "no_research_content" spec whose condition holds is remembered in mp->nrc instead. */
cg_err_t cg_spec_try_spec(cg_mapper_t *mp, const spec_t *s, size_t *matched);
/* After every spec was tried: the outcome of a message *matched specs ran on (type: its label);
 * CG_ERR_MAP when none did and no spec declared it no research content (err then says so, the
 * caller adds what it was). */
cg_err_t cg_spec_select_outcome(cg_mapper_t *mp, size_t matched, const char *type);
/* A failure before any spec ran (decode): err filled, code returned. */
/* A decoder's error (located in the input) as the message's error, at stage "decode". */
cg_err_t cg_spec_decode_error(cg_error_t *err, const cg_error_t *decoder);
cg_err_t cg_spec_map_error(cg_error_t *err, cg_err_t code, const char *stage, const char *reason);

#endif
