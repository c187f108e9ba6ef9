/* spec_eval.c - applying compiled specs to decoded HL7 v2 messages (cg_spec.h).
 *
 * Values live in the mapper's per-message arena; row JSON is written to one buffer reused across
 * messages. Nothing here allocates per field once the arena and buffers are warm.
 */
#include "spec_impl.h"

#include "cg_pseudo.h"
#include "cg_vocab.h"

#include <libxml/tree.h>

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Values of single-valued paths already read in this message: rules over the same OBX ask for
 * OBX-2, OBX-3 and the like again and again. Direct-mapped, keyed by the path's path_id (equal
 * paths share one, spec_compile.c) and the scope; an entry counts only for the message (gen) it
 * was made in, and values stay valid for the whole message (raw slices or the arena). */
#define PATH_MEMO_SIZE 4096u /* 1024 lost a tenth of the hits to collisions on long ORUs */

typedef struct path_memo {
    uint32_t gen;
    uint32_t path_id;
    uint32_t cur; /* the scope's cursor: the mapper's scopes span the whole message (begin 0,
                   * end its segment count, fixed by gen), so the cursor tells them apart */
    uint32_t pad;
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

/* TS conversions of this message: a row asks for the date and the datetime of the same value
 * (and the next rule over the same OBX again), so the datetime form is kept and the date is its
 * first 10 bytes (cg_spec_ts_to_iso writes the same date either way, and fails alike). Keyed by
 * the value slice, which stays put for the message, the spec (its patient's source value is the
 * one slice whose bytes change, per spec) and the date shift. */
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

struct cg_mapper {
    const cg_specset_t *ss;
    const cg_vocab_t *vocab;
    const char *utc_offset;
    cg_pseudo_t *pseudo; /* our own clone: it keeps scratch state */
    cg_hl7_msg_t *msg;   /* for cg_mapper_map_hl7 */
    cg_xml_doc_t *xdoc;  /* for cg_mapper_map_xml; made on first use */
    cg_xml_eval_t *xev;
    cg_xml_options_t xml_opts;
    int xml_opts_set;
    cg_arena_t arena; /* values of one message */
    cg_buf_t scratch; /* decoding */
    cg_row_t *rows;   /* their values and meta are in the arena */
    size_t n_rows, cap_rows;
    spec_val_t *vars;
    size_t cap_vars;
    pcre2_match_data *md;
    pcre2_match_context *mctx;
    int trace;
    path_memo_t *memo; /* PATH_MEMO_SIZE entries */
    lookup_memo_t lookups[LOOKUP_MEMO_SIZE];
    ts_memo_t ts_memo[TS_MEMO_SIZE];
    uint32_t gen; /* of the message being mapped; never 0 */

    /* per message */
    cg_hl7_msg_t *m;   /* NULL for an XML document */
    const void *xnode; /* XML: the foreach's node, NULL for the document */
    char esc;          /* the message's escape character, '\0' when none */
    int cs_utf8;       /* its charset is UTF-8 */
    int cs_ascii;      /* or another one whose ASCII bytes decode to themselves */
    const spec_t *spec;
    const rule_t *rule;
    const char *column;
    cg_hl7_scope_t scope;
    cg_slice_t message_id;
    int patient_state; /* 0 not computed, 1 ok, -1 failed */
    cg_pseudo_person_t person;
    spec_val_t person_id_text; /* the person_id as text, made once per patient (0 s: not yet) */
    spec_val_t person_sv;      /* its source value, in the arena: rows outlive mp->person */
    int shift_days;
    cg_map_error_t *err;
};

static const spec_val_t ABSENT = {NULL, 0, 0};

static cg_err_t fail(cg_mapper_t *mp, cg_err_t code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static cg_err_t fail(cg_mapper_t *mp, cg_err_t code, const char *fmt, ...)
{
    cg_map_error_t *e = mp->err;
    if (e && e->code == CG_OK) {
        e->code = code;
        e->stage = "map";
        snprintf(e->spec, sizeof(e->spec), "%s", mp->spec ? mp->spec->name : "");
        e->spec_version = mp->spec ? mp->spec->version : 0;
        snprintf(e->rule, sizeof(e->rule), "%s", mp->rule ? mp->rule->name : "");
        snprintf(e->column, sizeof(e->column), "%s", mp->column ? mp->column : "");
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(e->reason, sizeof(e->reason), fmt, ap);
        va_end(ap);
    }
    return code;
}

static spec_val_t val_copy(cg_mapper_t *mp, const char *s, size_t n)
{
    if (n > UINT32_MAX) /* spec_val_t's length; callers report it as out of memory */
        return ABSENT;
    char *p = cg_arena_strndup(&mp->arena, s, n);
    return p ? (spec_val_t){p, n, 1} : ABSENT;
}

/* ---- paths ---- */

static int path_has_all(const cg_hl7_path_t *p)
{
    return p->seg_index == CG_HL7_ALL || p->rep == CG_HL7_ALL;
}

/* Whether decoding raw would give back its bytes unchanged: no escape character in it (unless
 * literal), and UTF-8 that is valid (what cg_hl7_decode checks for a UTF-8 message) or ASCII in a
 * charset that is a superset of ASCII. Anything else goes through the decoder, which also reports
 * the errors. */
static int raw_is_decoded(const cg_mapper_t *mp, cg_slice_t raw, int literal)
{
    const unsigned char *q = (const unsigned char *)raw.ptr, *end = q + raw.len;
    const unsigned char esc = literal ? 0 : (unsigned char)mp->esc;
    /* eight bytes a step while they are ASCII without the escape character (a 0x00 escape is
     * "none": matching NUL bytes then only sends them to the byte loop, which lets them pass) */
    const uint64_t ones = 0x0101010101010101u, high = 0x8080808080808080u, em = ones * esc;
    while (end - q >= 8) {
        uint64_t w, x;
        memcpy(&w, q, 8);
        x = w ^ em;
        if ((w | ((x - ones) & ~x)) & high)
            break;
        q += 8;
    }
    while (q < end) {
        unsigned char c = *q;
        if (c < 0x80) {
            if (c == esc && esc)
                return 0;
            q++;
            continue;
        }
        size_t l = mp->cs_utf8 ? cg_utf8_seq_len(q, (size_t)(end - q)) : 0;
        if (!l)
            return 0;
        q += l;
    }
    return mp->cs_utf8 || mp->cs_ascii;
}

static path_memo_t *memo_slot(cg_mapper_t *mp, uint32_t path_id)
{
    uint32_t h = (path_id * 0x9E3779B1u) ^ (mp->scope.cur * 0x85EBCA77u);
    h ^= h >> 15;
    h *= 0x2C1B3C6Du;
    h ^= h >> 12;
    return &mp->memo[h & (PATH_MEMO_SIZE - 1)];
}

static cg_err_t eval_path_uncached(cg_mapper_t *mp, const cg_hl7_path_t *p, spec_val_t *out);

static inline cg_err_t eval_path(cg_mapper_t *mp, const expr_t *x, spec_val_t *out)
{
    const cg_hl7_path_t *p = &x->u.path;
    if (!x->path_id || mp->scope.begin) /* [*] paths, or none given; a partial scope */
        return eval_path_uncached(mp, p, out);
    path_memo_t *e = memo_slot(mp, x->path_id);
    if (e->gen == mp->gen && e->path_id == x->path_id && e->cur == mp->scope.cur) {
        *out = e->val;
        return CG_OK;
    }
    cg_err_t rc = eval_path_uncached(mp, p, out);
    if (rc == CG_OK)
        *e = (path_memo_t){mp->gen, x->path_id, mp->scope.cur, 0, *out};
    return rc;
}

static cg_err_t eval_expr(cg_mapper_t *mp, const expr_t *e, spec_val_t *out);

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
    return eval_expr(mp, e, out);
}

static cg_err_t eval_path_uncached(cg_mapper_t *mp, const cg_hl7_path_t *p, spec_val_t *out)
{
    cg_hl7_error_t he;
    cg_buf_reset(&mp->scratch);
    *out = ABSENT;
    if (path_has_all(p)) {
        size_t count = 0;
        if (cg_hl7_path_get(mp->m, p, mp->scope, '~', &mp->scratch, &count, &he) != CG_OK)
            return fail(mp, he.code, "%s", he.reason);
        if (!count)
            return CG_OK;
    } else {
        cg_hl7_match_t match;
        if (!cg_hl7_path_first(mp->m, p, mp->scope, &match))
            return CG_OK;
        if (raw_is_decoded(mp, match.raw, match.literal)) {
            /* the usual case: the value is its raw bytes, used in place (valid until the next
             * message) instead of decoded into scratch and copied to the arena */
            if (match.raw.len == 0 || (match.raw.len == 2 && !memcmp(match.raw.ptr, "\"\"", 2)))
                return CG_OK;
            *out = (spec_val_t){match.raw.ptr, match.raw.len, 1};
            return CG_OK;
        }
        cg_err_t rc = match.literal ? cg_hl7_decode_noescape(mp->m, match.raw, &mp->scratch, &he)
                                    : cg_hl7_decode(mp->m, match.raw, &mp->scratch, &he);
        if (rc != CG_OK)
            return fail(mp, rc, "%s", he.reason);
    }
    /* HL7's explicit null "" and an empty value both mean: no value */
    if (mp->scratch.len == 0 || (mp->scratch.len == 2 && !memcmp(mp->scratch.data, "\"\"", 2)))
        return CG_OK;
    *out = val_copy(mp, mp->scratch.data, mp->scratch.len);
    return out->present ? CG_OK : fail(mp, CG_ERR_NOMEM, "out of memory");
}

/* ---- transforms ---- */

static spec_val_t trim(spec_val_t v)
{
    while (v.len && (*v.s == ' ' || *v.s == '\t' || *v.s == '\r' || *v.s == '\n')) {
        v.s++;
        v.len--;
    }
    while (v.len && (v.s[v.len - 1] == ' ' || v.s[v.len - 1] == '\t' || v.s[v.len - 1] == '\r' ||
                     v.s[v.len - 1] == '\n'))
        v.len--;
    if (!v.len)
        return ABSENT;
    return v;
}

/* SN: [comparator] num1 [separator num2], components split by the message's component
 * separator, already decoded into v (so "^" unless the message says otherwise). */
static spec_val_t sn_part(cg_mapper_t *mp, spec_val_t v, sn_part_t part)
{
    const cg_hl7_delims_t *d = mp->m ? cg_hl7_msg_delims(mp->m) : NULL;
    char cs = d && d->comp ? d->comp : '^';
    spec_val_t c[4] = {ABSENT, ABSENT, ABSENT, ABSENT};
    const char *p = v.s, *end = v.s + v.len;
    for (int i = 0; i < 4; i++) {
        const char *q = memchr(p, cs, (size_t)(end - p));
        if (!q)
            q = end;
        c[i] = trim((spec_val_t){p, (size_t)(q - p), q > p});
        if (q == end)
            break;
        p = q + 1;
    }
    /* a bare number (no component separator) is num1 with "=" */
    if (!memchr(v.s, cs, v.len)) {
        c[1] = trim(v);
        c[0] = ABSENT;
    }
    switch (part) {
    case SN_COMPARATOR:
        if (c[0].present)
            return c[0];
        return c[1].present ? (spec_val_t){"=", 1, 1} : ABSENT;
    case SN_NUMBER:
        return c[1];
    case SN_SEPARATOR:
        return c[2];
    case SN_NUMBER2:
        return c[3];
    }
    return ABSENT;
}

static cg_err_t regex_run(cg_mapper_t *mp, const xform_t *x, spec_val_t v, spec_val_t *out)
{
    *out = ABSENT;
    if (x->kind == XF_REGEX_EXTRACT) {
        int rc = pcre2_match(x->u.re.re, (PCRE2_SPTR)v.s, v.len, 0, 0, mp->md, mp->mctx);
        if (rc == PCRE2_ERROR_NOMATCH)
            return CG_OK;
        if (rc < 0)
            return fail(mp, CG_ERR_MAP, "regex gave up (%d): match limit reached", rc);
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(mp->md);
        uint32_t g = x->u.re.group;
        if ((int)g >= rc || ov[2 * g] == PCRE2_UNSET)
            return CG_OK;
        *out = (spec_val_t){v.s + ov[2 * g], ov[2 * g + 1] - ov[2 * g], 1};
        return CG_OK;
    }
    PCRE2_SIZE outlen = v.len * 2 + 64;
    for (int attempt = 0; attempt < 2; attempt++) {
        char *buf = cg_arena_alloc(&mp->arena, outlen + 1);
        if (!buf)
            return fail(mp, CG_ERR_NOMEM, "out of memory");
        PCRE2_SIZE n = outlen;
        int rc = pcre2_substitute(x->u.re.re, (PCRE2_SPTR)v.s, v.len, 0,
                                  PCRE2_SUBSTITUTE_GLOBAL | PCRE2_SUBSTITUTE_OVERFLOW_LENGTH,
                                  mp->md, mp->mctx, (PCRE2_SPTR)x->u.re.with, PCRE2_ZERO_TERMINATED,
                                  (PCRE2_UCHAR *)buf, &n);
        if (rc >= 0) {
            *out = (spec_val_t){buf, n, n > 0};
            return CG_OK;
        }
        if (rc != PCRE2_ERROR_NOMEMORY)
            return fail(mp, CG_ERR_MAP, "regex_replace gave up (%d)", rc);
        outlen = n; /* the length it needs */
    }
    return fail(mp, CG_ERR_MAP, "regex_replace output too long");
}

static spec_val_t number_text(cg_mapper_t *mp, spec_val_t v, int integer_only)
{
    char buf[128];
    size_t n = cg_spec_number(v.s, v.len, integer_only, buf, sizeof(buf));
    return n ? val_copy(mp, buf, n) : ABSENT;
}

/* Decimal text of x into buf (at least 21 bytes), not NUL-terminated; returns the length.
 * By hand: snprintf cost more than the rest of writing an id column. */
static size_t fmt_int64(char *buf, int64_t x)
{
    /* two digits a step from the end: ids have 19 of them */
    static const char pairs[201] = "00010203040506070809101112131415161718192021222324252627282930"
                                   "31323334353637383940414243444546474849505152535455565758596061"
                                   "62636465666768697071727374757677787980818283848586878889909192"
                                   "93949596979899";
    char tmp[24];
    uint64_t u = x < 0 ? (uint64_t)0 - (uint64_t)x : (uint64_t)x;
    size_t n = sizeof(tmp);
    while (u >= 100) {
        unsigned d = (unsigned)(u % 100) * 2;
        u /= 100;
        tmp[--n] = pairs[d + 1];
        tmp[--n] = pairs[d];
    }
    if (u >= 10) {
        tmp[--n] = pairs[u * 2 + 1];
        tmp[--n] = pairs[u * 2];
    } else {
        tmp[--n] = (char)('0' + u);
    }
    if (x < 0)
        tmp[--n] = '-';
    memcpy(buf, tmp + n, sizeof(tmp) - n);
    return sizeof(tmp) - n;
}

static spec_val_t int_text(cg_mapper_t *mp, int64_t x)
{
    if (x == 0) /* unmapped concepts: common enough to skip the arena */
        return (spec_val_t){"0", 1, 1};
    char buf[24];
    return val_copy(mp, buf, fmt_int64(buf, x));
}

static cg_err_t apply_xform(cg_mapper_t *mp, const xform_t *x, spec_val_t v, spec_val_t *out)
{
    *out = ABSENT;
    if (!v.present)
        return CG_OK;
    switch (x->kind) {
    case XF_TRIM:
        *out = trim(v);
        return CG_OK;
    case XF_UPPER:
    case XF_LOWER: {
        char *p = cg_arena_alloc(&mp->arena, v.len + 1);
        if (!p)
            return fail(mp, CG_ERR_NOMEM, "out of memory");
        for (size_t i = 0; i < v.len; i++) { /* ASCII only: codes and units */
            char ch = v.s[i];
            if (x->kind == XF_UPPER && ch >= 'a' && ch <= 'z')
                ch = (char)(ch - 32);
            else if (x->kind == XF_LOWER && ch >= 'A' && ch <= 'Z')
                ch = (char)(ch + 32);
            p[i] = ch;
        }
        p[v.len] = '\0';
        *out = (spec_val_t){p, v.len, 1};
        return CG_OK;
    }
    case XF_DATE:
    case XF_DATETIME: {
        ts_memo_t *tm = &mp->ts_memo[(((uintptr_t)v.s >> 2) ^ ((uintptr_t)v.s >> 7) ^ v.len) &
                                     (TS_MEMO_SIZE - 1)];
        if (tm->gen != mp->gen || tm->s != v.s || tm->len != v.len ||
            tm->shift_days != mp->shift_days || tm->spec != mp->spec) {
            char buf[48];
            size_t n = cg_spec_ts_to_iso(v.s, v.len, 1, mp->utc_offset, mp->shift_days, buf);
            if (!n)
                return fail(mp, CG_ERR_MAP,
                            "'%.*s' is not an HL7 date/time (YYYY[MM[DD[HHMM[SS]]]])",
                            (int)(v.len > 40 ? 40 : v.len), v.s);
            spec_val_t c = val_copy(mp, buf, n);
            if (!c.present)
                return CG_OK; /* out of memory: absent, as before */
            *tm = (ts_memo_t){mp->gen, mp->shift_days, mp->spec, v.s, v.len, c.s, c.len};
        }
        *out = (spec_val_t){tm->iso, x->kind == XF_DATETIME ? tm->iso_len : 10, 1};
        return CG_OK;
    }
    case XF_NUMBER:
    case XF_INTEGER:
        *out = number_text(mp, v, x->kind == XF_INTEGER);
        return CG_OK;
    case XF_SN:
        *out = sn_part(mp, v, x->u.sn);
        return CG_OK;
    case XF_REGEX_EXTRACT:
    case XF_REGEX_REPLACE:
        return regex_run(mp, x, v, out);
    case XF_MAP:
        for (size_t i = 0; i < x->u.map.n; i++) {
            const map_entry_t *m = &x->u.map.entries[i];
            if (m->from_len == v.len && !memcmp(m->from, v.s, v.len)) {
                *out = (spec_val_t){m->to, m->to_len, m->to != NULL};
                return CG_OK;
            }
        }
        if (x->u.map.deflt)
            *out = (spec_val_t){x->u.map.deflt->to, x->u.map.deflt->to_len,
                                x->u.map.deflt->to != NULL};
        return CG_OK;
    case XF_LOOKUP: {
        cg_slice_t voc = {x->u.lookup.vocabulary, 0};
        if (voc.ptr) {
            voc.len = strlen(voc.ptr);
        } else {
            spec_val_t vv;
            cg_err_t rc = eval(mp, x->u.lookup.vocab_expr, &vv);
            if (rc)
                return rc;
            voc = (cg_slice_t){vv.s, vv.len};
        }
        cg_vocab_hit_t hit = {0};
        int found = 0;
        if (mp->vocab && voc.len) {
            uintptr_t hk = ((uintptr_t)voc.ptr ^ ((uintptr_t)v.s * 31u) ^ v.len) * 0x9E3779B1u;
            lookup_memo_t *lm = &mp->lookups[(hk >> 8) & (LOOKUP_MEMO_SIZE - 1)];
            if (lm->gen == mp->gen && lm->sys == voc.ptr && lm->sys_len == voc.len &&
                lm->code == v.s && lm->code_len == v.len) {
                found = lm->found;
                hit = lm->hit;
            } else {
                found = cg_vocab_lookup_system(mp->vocab, voc, (cg_slice_t){v.s, v.len}, &hit);
                *lm = (lookup_memo_t){mp->gen, voc.ptr, v.s, voc.len, v.len, found, hit};
            }
        }
        switch (x->u.lookup.want) {
        case LK_CONCEPT_ID:
            *out = int_text(mp, found ? hit.concept_id : 0); /* unmapped: concept 0 */
            break;
        case LK_SOURCE_CONCEPT_ID:
            *out = int_text(mp, found ? hit.source_concept_id : 0);
            break;
        case LK_DOMAIN_ID:
            *out = found && hit.domain_id ? (spec_val_t){hit.domain_id, strlen(hit.domain_id), 1}
                                          : ABSENT;
            break;
        }
        return CG_OK;
    }
    case XF_UNIT:
        *out = int_text(mp, mp->vocab ? cg_vocab_unit(mp->vocab, (cg_slice_t){v.s, v.len}) : 0);
        return CG_OK;
    case XF_REFERENCE: {
        /* originalText/reference/@value "#id" → the narrative text it points at */
        const void *n = mp->xev ? cg_xml_find_id(mp->xev, v.s, v.len) : NULL;
        if (!n)
            return CG_OK;
        cg_buf_reset(&mp->scratch);
        if (cg_xml_node_text(n, &mp->scratch) && !mp->scratch.failed)
            *out = val_copy(mp, mp->scratch.data, mp->scratch.len);
        return CG_OK;
    }
    case XF_TRUNCATE: {
        /* cut at a character boundary */
        size_t chars = 0, i = 0;
        while (i < v.len && chars < x->u.truncate) {
            i++;
            while (i < v.len && ((unsigned char)v.s[i] & 0xC0) == 0x80)
                i++;
            chars++;
        }
        *out = (spec_val_t){v.s, i, i > 0};
        return CG_OK;
    }
    }
    return CG_OK;
}

/* ---- patient ---- */

static cg_err_t patient(cg_mapper_t *mp)
{
    if (mp->patient_state)
        return mp->patient_state > 0 ? CG_OK : CG_ERR_REQUIRED;
    mp->patient_state = -1;
    const spec_t *s = mp->spec;
    cg_hl7_scope_t saved = mp->scope;
    const void *saved_node = mp->xnode;
    if (mp->m)
        mp->scope = cg_hl7_scope_message(mp->m);
    mp->xnode = NULL;
    spec_val_t id, auth = ABSENT;
    const char *saved_col = mp->column;
    mp->column = "patient.id";
    cg_err_t rc = eval_expr(mp, s->patient_id, &id);
    if (!rc && s->patient_authority) {
        mp->column = "patient.authority";
        rc = eval_expr(mp, s->patient_authority, &auth);
    }
    mp->scope = saved;
    mp->xnode = saved_node;
    mp->column = saved_col;
    if (rc)
        return rc;
    if (!id.present)
        return fail(mp, CG_ERR_REQUIRED, "the patient identifier (%s) is empty",
                    s->patient_id->text ? s->patient_id->text : "patient.id");
    if (!mp->pseudo)
        return fail(mp, CG_ERR_MAP, "no pseudonym key: pseudonyms cannot be computed");
    cg_slice_t a = {auth.s ? auth.s : "", auth.len}, i = {id.s, id.len};
    rc = cg_pseudo_person(mp->pseudo, a, i, &mp->person);
    if (!rc)
        rc = cg_pseudo_date_shift(mp->pseudo, a, i, &mp->shift_days);
    if (rc)
        return fail(mp, CG_ERR_MAP, "the patient identifier cannot be pseudonymized (%s)",
                    cg_err2str(rc));
    mp->person_sv = val_copy(mp, mp->person.source_value, strlen(mp->person.source_value));
    if (!mp->person_sv.present)
        return fail(mp, CG_ERR_NOMEM, "out of memory");
    mp->patient_state = 1;
    mp->person_id_text = ABSENT;
    return CG_OK;
}

/* ---- conditions and expressions ---- */

static int val_eq(spec_val_t a, spec_val_t b)
{
    if (!a.present || !b.present)
        return a.present == b.present;
    return a.len == b.len && !memcmp(a.s, b.s, a.len);
}

static cg_err_t eval_cond(cg_mapper_t *mp, const cond_t *c, int *out)
{
    spec_val_t a, b;
    cg_err_t rc;
    *out = 0;
    switch (c->kind) {
    case CD_EQ:
    case CD_NE:
        if ((rc = eval(mp, c->a, &a)) || (rc = eval(mp, c->b, &b)))
            return rc;
        *out = val_eq(a, b) == (c->kind == CD_EQ);
        return CG_OK;
    case CD_IN:
        if ((rc = eval(mp, c->a, &a)))
            return rc;
        for (size_t i = 0; a.present && i < c->n_values; i++)
            if (c->value_lens[i] == a.len &&
                (!a.len || (c->values[i][0] == a.s[0] && !memcmp(c->values[i], a.s, a.len))))
                *out = 1;
        return CG_OK;
    case CD_REGEX: {
        if ((rc = eval(mp, c->a, &a)))
            return rc;
        if (!a.present)
            return CG_OK;
        int m = pcre2_match(c->re, (PCRE2_SPTR)a.s, a.len, 0, 0, mp->md, mp->mctx);
        if (m < 0 && m != PCRE2_ERROR_NOMATCH)
            return fail(mp, CG_ERR_MAP, "regex gave up (%d): match limit reached", m);
        *out = m >= 0;
        return CG_OK;
    }
    case CD_PRESENT:
        if ((rc = eval(mp, c->a, &a)))
            return rc;
        *out = a.present;
        return CG_OK;
    case CD_NOT:
        if ((rc = eval_cond(mp, c->subs[0], out)))
            return rc;
        *out = !*out;
        return CG_OK;
    case CD_ALL:
    case CD_ANY:
        for (size_t i = 0; i < c->n_subs; i++) {
            int r;
            if ((rc = eval_cond(mp, c->subs[i], &r)))
                return rc;
            if (c->kind == CD_ANY && r) {
                *out = 1;
                return CG_OK;
            }
            if (c->kind == CD_ALL && !r)
                return CG_OK;
        }
        *out = c->kind == CD_ALL;
        return CG_OK;
    }
    return CG_OK;
}

/* The larger expression kinds, one function each. */
static __attribute__((noinline)) cg_err_t eval_concat(cg_mapper_t *mp, const expr_t *e,
                                                      spec_val_t *out)
{
    cg_err_t rc = CG_OK;
    spec_val_t v = ABSENT;
    *out = ABSENT;
    size_t total = 0, seplen = strlen(e->u.list.sep), n = 0;
    spec_val_t parts[16];
    for (size_t i = 0; i < e->u.list.n && !rc; i++) {
        spec_val_t p;
        rc = eval_expr(mp, e->u.list.items[i], &p);
        if (!rc && p.present && n < 16) {
            parts[n++] = p;
            total += p.len + seplen;
        }
    }
    if (rc || !n)
        return rc;
    char *buf = total <= UINT32_MAX ? cg_arena_alloc(&mp->arena, total + 1) : NULL;
    if (!buf)
        return fail(mp, CG_ERR_NOMEM, "out of memory");
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (i) {
            memcpy(buf + o, e->u.list.sep, seplen);
            o += seplen;
        }
        memcpy(buf + o, parts[i].s, parts[i].len);
        o += parts[i].len;
    }
    buf[o] = '\0';
    v = (spec_val_t){buf, o, 1};
    *out = v;
    return CG_OK;
}

static __attribute__((noinline)) cg_err_t eval_pseudonym(cg_mapper_t *mp, const expr_t *e,
                                                         spec_val_t *out)
{
    cg_err_t rc = CG_OK;
    spec_val_t v = ABSENT;
    *out = ABSENT;
    spec_val_t id, auth = ABSENT;
    if ((rc = eval_expr(mp, e->u.list.items[0], &id)))
        return rc;
    if (e->u.list.items[1] && (rc = eval_expr(mp, e->u.list.items[1], &auth)))
        return rc;
    if (!id.present)
        return rc;
    if (!mp->pseudo)
        return fail(mp, CG_ERR_MAP, "no pseudonym key: pseudonyms cannot be computed");
    cg_pseudo_person_t who;
    rc = cg_pseudo_person(mp->pseudo, (cg_slice_t){auth.s ? auth.s : "", auth.len},
                          (cg_slice_t){id.s, id.len}, &who);
    if (rc)
        return fail(mp, CG_ERR_MAP, "an identifier cannot be pseudonymized (%s)", cg_err2str(rc));
    v = e->part == PT_PERSON_ID ? int_text(mp, who.person_id)
                                : val_copy(mp, who.source_value, strlen(who.source_value));
    *out = v;
    return CG_OK;
}

static __attribute__((noinline)) cg_err_t eval_hash_id(cg_mapper_t *mp, const expr_t *e,
                                                       spec_val_t *out)
{
    cg_err_t rc = CG_OK;
    spec_val_t v = ABSENT;
    *out = ABSENT;
    /* deterministic id of the namespace and the values, e.g. a visit from PV1-19 */
    spec_val_t parts[8];
    size_t n = e->u.list.n < 8 ? e->u.list.n : 8, total = 0;
    int any = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        rc = eval_expr(mp, e->u.list.items[i], &parts[i]);
        total += parts[i].len + 1;
        any |= parts[i].present;
    }
    if (rc || !any)
        return rc;
    char *key = cg_arena_alloc(&mp->arena, total + 1);
    if (!key)
        return fail(mp, CG_ERR_NOMEM, "out of memory");
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        memcpy(key + o, parts[i].s ? parts[i].s : "", parts[i].len);
        o += parts[i].len;
        key[o++] = '\x1f';
    }
    int64_t id;
    rc = cg_pseudo_row_id(mp->pseudo, (cg_slice_t){e->u.list.sep, strlen(e->u.list.sep)},
                          (cg_slice_t){key, o}, (cg_slice_t){"hash_id", 7}, 0, &id);
    if (rc)
        return fail(mp, rc, "hash_id failed");
    v = int_text(mp, id);
    *out = v;
    return CG_OK;
}

static cg_err_t eval_expr(cg_mapper_t *mp, const expr_t *e, spec_val_t *out)
{
    cg_err_t rc = CG_OK;
    spec_val_t v = ABSENT;
    switch (e->kind) {
    case EX_PATH:
        rc = eval_path(mp, e, &v);
        break;
    case EX_XPATH: {
        cg_slice_t xv;
        /* copied: the evaluator's buffer is reused by the next XPath */
        if (cg_xml_xpath_value(mp->xev, e->u.xpath, mp->xnode, &xv))
            v = val_copy(mp, xv.ptr, xv.len);
        break;
    }
    case EX_CONST:
        v = (spec_val_t){e->u.cst.s, e->u.cst.len, e->u.cst.present};
        break;
    case EX_VAR:
        v = mp->vars[e->u.var];
        break;
    case EX_CONCAT:
        rc = eval_concat(mp, e, &v);
        break;
    case EX_COALESCE:
        for (size_t i = 0; i < e->u.list.n && !rc && !v.present; i++)
            rc = eval(mp, e->u.list.items[i], &v);
        break;
    case EX_IF: {
        int t;
        rc = eval_cond(mp, e->u.iff.cond, &t);
        if (!rc && t)
            rc = eval(mp, e->u.iff.then, &v);
        else if (!rc && e->u.iff.els)
            rc = eval(mp, e->u.iff.els, &v);
        break;
    }
    case EX_PATIENT:
        if ((rc = patient(mp)))
            break;
        if (e->u.patient == PT_PERSON_ID) {
            /* every row of the patient has it: formatted once */
            if (!mp->person_id_text.present)
                mp->person_id_text = int_text(mp, mp->person.person_id);
            v = mp->person_id_text;
        } else {
            v = mp->person_sv;
        }
        break;
    case EX_PSEUDONYM:
        rc = eval_pseudonym(mp, e, &v);
        break;
    case EX_HASH_ID:
        rc = eval_hash_id(mp, e, &v);
        break;
    }
    if (rc)
        return rc;
    /* in place: apply_xform reads its copy of v before it writes (a temporary copied back
     * cost a store-forwarding stall per transform) */
    for (size_t i = 0; i < e->n_xforms && v.present; i++)
        if ((rc = apply_xform(mp, &e->xforms[i], v, &v)))
            return rc;
    if (!v.present && e->deflt && (rc = eval_expr(mp, e->deflt, &v)))
        return rc;
    if (!v.present && e->required)
        return fail(mp, CG_ERR_REQUIRED, "required value %s is empty", e->text ? e->text : "");
    *out = v;
    return CG_OK;
}

/* ---- rows ---- */

static int is_numeric_type(cg_col_type_t t)
{
    return t == CG_COL_INT32 || t == CG_COL_INT64 || t == CG_COL_NUMBER;
}

/* Whether the canonical number num[0..n) (from cg_spec_number) certainly passes
 * cg_target_check for type t, so the check can be skipped: any such text is a valid JSON
 * number, and integers short enough cannot be out of range. Longer ones are checked. */
static int number_surely_ok(cg_col_type_t t, const char *num, size_t n)
{
    size_t digits = n - (num[0] == '-');
    if (t == CG_COL_NUMBER)
        return 1;
    if (t == CG_COL_INT32)
        return digits <= 9;
    /* BIGINT: 19 digits fit up to INT64_MAX (hashed ids are 63-bit, so nearly all of them) */
    if (digits == 19)
        return memcmp(num + (n - digits),
                      num[0] == '-' ? "9223372036854775808" : "9223372036854775807", 19) <= 0;
    return digits < 19;
}

/* Whether s[0..n) is an integer as cg_spec_number writes it: 0, or -?[1-9][0-9]* (no blanks,
 * sign '+' or leading zeros), so that it would come back unchanged. */
static int canonical_int(const char *s, size_t n)
{
    size_t i = n && s[0] == '-';
    if (i >= n || (s[i] == '0' && (i || n != 1)))
        return 0;
    /* eight at a time (ids have 19 digits): a byte outside '0'..'9' sets its top bit in
     * w - '0' or w + 0x46 (a borrow only spreads above a real hit) */
    const uint64_t ones = 0x0101010101010101u, high = 0x8080808080808080u;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        if ((w | (w - ones * '0') | (w + ones * 0x46)) & high)
            return 0;
    }
    for (; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return 0;
    return 1;
}

static int two(const char *s, int *v)
{
    if (s[0] < '0' || s[0] > '9' || s[1] < '0' || s[1] > '9')
        return 0;
    *v = (s[0] - '0') * 10 + (s[1] - '0');
    return 1;
}

/* Whether v has the exact shape cg_spec_ts_to_iso writes, YYYY-MM-DD for a date, and for a
 * datetime optionally THH:MM[:SS][.f{1,4}][+HH:MM] after it, with every part in the range
 * cg_target_check accepts; such a value passes that check, which is skipped. Anything else
 * (a leap second, a constant in another format) is left to the check. */
static int iso_surely_ok(cg_col_type_t t, const char *s, size_t n)
{
    static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int c, y, m, d, x;
    if (n < 10 || !two(s, &c) || !two(s + 2, &y) || s[4] != '-' || !two(s + 5, &m) || s[7] != '-' ||
        !two(s + 8, &d))
        return 0;
    y += c * 100;
    if (y < 1 || m < 1 || m > 12 || d < 1 ||
        d > mdays[m - 1] + (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0)))
        return 0;
    if (n == 10)
        return 1;
    if (t != CG_COL_DATETIME || n < 16 || s[10] != 'T' || !two(s + 11, &x) || x > 23 ||
        s[13] != ':' || !two(s + 14, &x) || x > 59)
        return 0;
    size_t i = 16;
    if (i < n && s[i] == ':') {
        if (n < i + 3 || !two(s + i + 1, &x) || x > 59)
            return 0;
        i += 3;
        if (i < n && s[i] == '.') {
            size_t j = ++i;
            while (i < n && i - j < 4 && s[i] >= '0' && s[i] <= '9')
                i++;
            if (i == j)
                return 0;
        }
    }
    if (i == n)
        return 1;
    return n - i == 6 && (s[i] == '+' || s[i] == '-') && two(s + i + 1, &x) && x <= 15 &&
           s[i + 3] == ':' && two(s + i + 4, &x) && x <= 59;
}

/* The kind of value a column of each type holds. */
static const uint32_t kind_of[] = {
    [CG_COL_INT32] = CG_VALUE_INTEGER,     [CG_COL_INT64] = CG_VALUE_INTEGER,
    [CG_COL_NUMBER] = CG_VALUE_NUMBER,     [CG_COL_VARCHAR] = CG_VALUE_STRING,
    [CG_COL_TEXT] = CG_VALUE_STRING,       [CG_COL_DATE] = CG_VALUE_DATE,
    [CG_COL_DATETIME] = CG_VALUE_DATETIME,
};

/* Types v for col into *out, checked against the column type; varchar values longer than the
 * column are cut at a character boundary (source values are often longer than 50). Numbers are
 * made canonical. The text stays where it is (the message, the arena) unless it changes. */
static cg_err_t set_column(cg_mapper_t *mp, const cg_target_column_t *col, spec_val_t v,
                           const char *src_text, cg_value_t *out)
{
    cg_col_type_t t = col->type;
    if (!v.present) {
        if (col->required)
            return fail(mp, CG_ERR_REQUIRED, "required column %s has no value (from %s)", col->name,
                        src_text ? src_text : "?");
        *out = (cg_value_t){NULL, 0, CG_VALUE_NULL};
        return CG_OK;
    }
    if (is_numeric_type(t) && v.len <= 20 && canonical_int(v.s, v.len) &&
        number_surely_ok(t, v.s, v.len)) {
        /* ids and concept ids: already the text cg_spec_number would give */
        *out = (cg_value_t){v.s, v.len, kind_of[t]};
        return CG_OK;
    }
    if (is_numeric_type(t)) {
        char num[128];
        size_t n = cg_spec_number(v.s, v.len, t != CG_COL_NUMBER, num, sizeof(num));
        char why[160];
        if (!n || (!number_surely_ok(t, num, n) &&
                   !cg_target_check(col, num, n, false, why, sizeof(why))))
            return fail(mp, CG_ERR_MAP, "column %s takes a%s number, not '%.*s' (from %s)",
                        col->name, t == CG_COL_NUMBER ? "" : "n integer",
                        (int)(v.len > 40 ? 40 : v.len), v.s, src_text ? src_text : "?");
        if (n != v.len || memcmp(num, v.s, n)) { /* "7.20" → "7.2": the new text */
            v = val_copy(mp, num, n);
            if (!v.present)
                return fail(mp, CG_ERR_NOMEM, "out of memory");
        }
        *out = (cg_value_t){v.s, v.len, kind_of[t]};
        return CG_OK;
    }
    /* plain ASCII text: one byte a character, valid UTF-8 without NUL, nothing to escape; the
     * cut and the check below reduce to a length limit */
    if ((t == CG_COL_TEXT || (t == CG_COL_VARCHAR && col->max_length > 0)) &&
        cg_buf_json_plain(v.s, v.len)) {
        size_t n = v.len;
        if (t == CG_COL_VARCHAR && n > (size_t)col->max_length)
            n = (size_t)col->max_length;
        *out = (cg_value_t){v.s, (uint32_t)n, CG_VALUE_STRING};
        return CG_OK;
    }
    if (t == CG_COL_VARCHAR && col->max_length > 0) {
        xform_t cut = {.kind = XF_TRUNCATE, .u.truncate = (size_t)col->max_length};
        apply_xform(mp, &cut, v, &v);
    }
    char why[160];
    if (!((t == CG_COL_DATE || t == CG_COL_DATETIME) && iso_surely_ok(t, v.s, v.len)) &&
        !cg_target_check(col, v.s, v.len, true, why, sizeof(why)))
        return fail(mp, CG_ERR_MAP, "%s (from %s)", why, src_text ? src_text : "?");
    *out = (cg_value_t){v.s, v.len, kind_of[t]};
    return CG_OK;
}

/* A new row at the end of mp->rows; NULL when out of memory. */
static cg_row_t *push_row(cg_mapper_t *mp)
{
    if (mp->n_rows == mp->cap_rows) {
        size_t cap = mp->cap_rows ? mp->cap_rows * 2 : 16;
        cg_row_t *r = realloc(mp->rows, cap * sizeof(*r));
        if (!r)
            return NULL;
        mp->rows = r;
        mp->cap_rows = cap;
    }
    return &mp->rows[mp->n_rows++];
}

static cg_err_t emit_row(cg_mapper_t *mp, uint64_t position)
{
    const rule_t *r = mp->rule;
    cg_err_t rc;
    int ok;
    /* when first, unless it reads the rule's lets: most rules over OBX[*] make no row for most
     * OBX (one per value type), and their lets are then not worth evaluating */
    if (r->when && !r->when_uses_lets) {
        if ((rc = eval_cond(mp, r->when, &ok)))
            return rc;
        if (!ok)
            return CG_OK;
    }
    for (size_t i = 0; i < r->n_lets; i++)
        if ((rc = eval(mp, r->lets[i].expr, &mp->vars[mp->spec->n_lets + i])))
            return rc;
    if (r->when && r->when_uses_lets) {
        if ((rc = eval_cond(mp, r->when, &ok)))
            return rc;
        if (!ok)
            return CG_OK;
    }
    /* one value a column of the table, absent unless mapped: one allocation a row */
    const cg_target_table_t *t = r->table;
    size_t n_tab = t->n_columns;
    cg_value_t *vals = cg_arena_alloc(&mp->arena, n_tab * sizeof(*vals));
    const char **trace = mp->trace ? cg_arena_alloc(&mp->arena, n_tab * sizeof(*trace)) : NULL;
    if (!vals || (mp->trace && !trace))
        return fail(mp, CG_ERR_NOMEM, "out of memory");
    memset(vals, 0, n_tab * sizeof(*vals));
    if (trace)
        memset(trace, 0, n_tab * sizeof(*trace));
    if (r->pk.col && !r->sets_pk) {
        int64_t id;
        cg_slice_t spec = {mp->spec->name, mp->spec->name_len};
        cg_slice_t rule = {r->name, r->name_len};
        if ((rc = cg_pseudo_row_id(mp->pseudo, spec, mp->message_id, rule, position, &id)))
            return fail(mp, rc, "row id failed");
        mp->column = r->pk.col->name;
        char *idbuf = cg_arena_alloc(&mp->arena, 24);
        if (!idbuf)
            return fail(mp, CG_ERR_NOMEM, "out of memory");
        spec_val_t idv = {idbuf, (uint32_t)fmt_int64(idbuf, id), 1};
        if ((rc = set_column(mp, r->pk.col, idv, "row id", &vals[r->pk.col->index])))
            return rc;
        if (trace)
            trace[r->pk.col->index] = "row id (spec, MSH-10, rule, position)";
    }
    for (size_t i = 0; i < r->n_columns; i++) {
        const column_t *c = &r->columns[i];
        spec_val_t v;
        mp->column = c->col->name;
        if ((rc = eval(mp, c->expr, &v)))
            return rc;
        if ((rc = set_column(mp, c->col, v, c->expr->text, &vals[c->col->index])))
            return rc;
        if (trace)
            trace[c->col->index] = c->expr->text ? c->expr->text : "";
    }
    mp->column = NULL;
    /* facts without a column go beside the row; absent ones are left out */
    cg_row_meta_t *meta = NULL;
    size_t n_meta = 0;
    if (r->n_meta && !(meta = cg_arena_alloc(&mp->arena, r->n_meta * sizeof(*meta))))
        return fail(mp, CG_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < r->n_meta; i++) {
        spec_val_t v;
        mp->column = r->meta[i].name;
        if ((rc = eval(mp, r->meta[i].expr, &v)))
            return rc;
        if (v.present)
            meta[n_meta++] = (cg_row_meta_t){r->meta[i].name, {v.s, v.len, CG_VALUE_STRING}};
    }
    mp->column = NULL;
    cg_row_t *row = push_row(mp);
    if (!row)
        return fail(mp, CG_ERR_NOMEM, "out of memory");
    /* message_id and person_key are the message's, set once it is mapped (finish_rows) */
    *row = (cg_row_t){.table = t,
                      .values = vals,
                      .meta = meta,
                      .n_meta = n_meta,
                      .spec = mp->spec->name,
                      .spec_version = mp->spec->version,
                      .rule = r->name,
                      .trace = trace};
    return CG_OK;
}

static cg_err_t run_rule_xml(cg_mapper_t *mp, const rule_t *r)
{
    mp->xnode = NULL;
    if (!r->has_foreach)
        return emit_row(mp, 1);
    void *const *nodes;
    size_t n = cg_xml_xpath_nodes(mp->xev, r->xforeach, NULL, &nodes);
    cg_err_t rc = CG_OK;
    for (size_t i = 0; i < n && !rc; i++) {
        mp->xnode = nodes[i];
        rc = emit_row(mp, i + 1);
    }
    mp->xnode = NULL;
    return rc;
}

static cg_err_t run_rule(cg_mapper_t *mp, const rule_t *r)
{
    mp->rule = r;
    if (!mp->m)
        return run_rule_xml(mp, r);
    cg_hl7_scope_t msg_scope = cg_hl7_scope_message(mp->m);
    if (!r->has_foreach) {
        mp->scope = msg_scope;
        return emit_row(mp, 1);
    }
    cg_hl7_iter_t it;
    cg_hl7_match_t match;
    uint64_t pos = 0;
    cg_hl7_path_begin(&it, mp->m, &r->foreach, msg_scope);
    while (cg_hl7_path_next(&it, &match)) {
        mp->scope = cg_hl7_scope_at(mp->m, match.seg);
        cg_err_t rc = emit_row(mp, ++pos);
        if (rc)
            return rc;
    }
    return CG_OK;
}

static int trigger_matches(const spec_t *s, cg_slice_t type, cg_slice_t event)
{
    for (size_t i = 0; i < s->n_triggers; i++) {
        const trigger_t *t = &s->triggers[i];
        if (cg_slice_eq(type, t->type) && (!t->event[0] || cg_slice_eq(event, t->event)))
            return 1;
    }
    return 0;
}

static cg_err_t run_spec(cg_mapper_t *mp, const spec_t *s)
{
    mp->spec = s;
    mp->rule = NULL;
    mp->patient_state = 0;
    mp->shift_days = 0;
    mp->xnode = NULL;
    if (mp->m)
        mp->scope = cg_hl7_scope_message(mp->m);
    cg_err_t rc;
    for (size_t i = 0; i < s->n_lets; i++)
        if ((rc = eval_expr(mp, s->lets[i].expr, &mp->vars[i])))
            return rc;
    /* dates shift by the patient's offset, so the patient comes first when the spec has one */
    if (s->has_patient && (rc = patient(mp)))
        return rc;
    for (size_t i = 0; i < s->n_rules; i++)
        if ((rc = run_rule(mp, &s->rules[i])))
            return rc;
    return CG_OK;
}

static void msh_value(cg_mapper_t *mp, uint32_t field, uint32_t comp, cg_slice_t *out)
{
    cg_slice_t raw;
    *out = (cg_slice_t){"", 0};
    if (cg_hl7_seg_count(mp->m) && cg_hl7_get_raw(mp->m, 0, field, 1, comp, 0, &raw))
        *out = raw; /* MSH-9 and MSH-10 are plain codes; no unescaping needed */
}

/* Starts a message or document: a fresh arena, memo generation and output buffers. */
static void begin_message(cg_mapper_t *mp, cg_map_error_t *err, cg_map_error_t *local,
                          const cg_row_t **rows, size_t *n_rows)
{
    memset(err ? err : local, 0, sizeof(*local));
    mp->err = err ? err : local;
    mp->n_rows = 0;
    mp->xnode = NULL;
    *rows = NULL;
    *n_rows = 0;
    cg_arena_reset(&mp->arena);
    if (++mp->gen == 0) { /* wrapped: forget every entry rather than trust an old one */
        memset(mp->memo, 0, PATH_MEMO_SIZE * sizeof(*mp->memo));
        memset(mp->lookups, 0, sizeof(mp->lookups));
        memset(mp->ts_memo, 0, sizeof(mp->ts_memo));
        mp->gen = 1;
    }
}

/* Runs spec s when its input condition holds; *matched counts the specs that ran. */
static cg_err_t try_spec(cg_mapper_t *mp, const spec_t *s, size_t *matched)
{
    if (s->when) {
        int ok;
        mp->spec = s;
        mp->rule = NULL;
        mp->xnode = NULL;
        if (mp->m)
            mp->scope = cg_hl7_scope_message(mp->m);
        cg_err_t rc = eval_cond(mp, s->when, &ok);
        if (rc)
            return rc;
        if (!ok)
            return CG_OK;
    }
    (*matched)++;
    size_t before = mp->n_rows;
    cg_err_t rc = run_spec(mp, s);
    if (rc)
        mp->n_rows = before;
    return rc;
}

/* Every spec ran: the rows get the message's id and the patient's pseudonym. */
static void finish_rows(cg_mapper_t *mp, const cg_row_t **rows, size_t *n_rows)
{
    /* key every row by the patient's pseudonym (the last spec's patient) */
    cg_slice_t key = mp->patient_state > 0 ? (cg_slice_t){mp->person_sv.s, mp->person_sv.len}
                                           : (cg_slice_t){"", 0};
    for (size_t i = 0; i < mp->n_rows; i++) {
        mp->rows[i].message_id = mp->message_id;
        mp->rows[i].person_key = key;
    }
    *rows = mp->rows;
    *n_rows = mp->n_rows;
}

cg_err_t cg_mapper_map_msg(cg_mapper_t *mp, cg_hl7_msg_t *msg, const cg_row_t **rows,
                           size_t *n_rows, cg_map_error_t *err)
{
    cg_map_error_t local;
    begin_message(mp, err, &local, rows, n_rows);
    mp->m = msg;

    /* for raw_is_decoded: the same charset classes as the decoder's (hl7_parse.c) */
    const cg_hl7_delims_t *d = cg_hl7_msg_delims(msg);
    const char *cs = cg_hl7_msg_charset(msg);
    mp->esc = d ? d->esc : 0;
    mp->cs_utf8 = cs && (!strcasecmp(cs, "UTF-8") || !strcasecmp(cs, "UTF8"));
    mp->cs_ascii = cs && cs[0] && strncasecmp(cs, "UTF-16", 6) && strncasecmp(cs, "UTF-32", 6) &&
                   strncasecmp(cs, "UCS", 3);

    cg_slice_t type, event;
    msh_value(mp, 9, 1, &type);
    msh_value(mp, 9, 2, &event);
    msh_value(mp, 10, 0, &mp->message_id);
    size_t matched = 0;
    for (size_t i = 0; i < mp->ss->n_specs; i++) {
        const spec_t *s = &mp->ss->specs[i];
        if (s->format != SF_HL7V2 || !trigger_matches(s, type, event))
            continue;
        cg_err_t rc = try_spec(mp, s, &matched);
        if (rc)
            return rc;
    }
    if (!matched) {
        mp->err->code = CG_ERR_MAP;
        mp->err->stage = "select";
        snprintf(mp->err->reason, sizeof(mp->err->reason), "no spec takes %.*s^%.*s messages",
                 (int)type.len, type.ptr, (int)event.len, event.ptr);
        return CG_ERR_MAP;
    }
    finish_rows(mp, rows, n_rows);
    return CG_OK;
}

/* ---- XML documents ---- */

static const xmlChar *attr_value(const xmlNode *n, const char *name)
{
    for (const xmlAttr *a = n->properties; a; a = a->next)
        if (!a->ns && !strcmp((const char *)a->name, name) && a->children &&
            a->children->type == XML_TEXT_NODE)
            return a->children->content;
    return NULL;
}

/* Whether spec s takes the document whose root element is root. */
static int document_matches(const spec_t *s, const xmlNode *root)
{
    if (strcmp((const char *)root->name, s->xml_root))
        return 0;
    if (!s->n_doc_templates)
        return 1;
    for (const xmlNode *c = root->children; c; c = c->next) {
        if (c->type != XML_ELEMENT_NODE || strcmp((const char *)c->name, "templateId"))
            continue;
        const xmlChar *r = attr_value(c, "root");
        for (size_t i = 0; r && i < s->n_doc_templates; i++)
            if (!strcmp((const char *)r, s->doc_templates[i]))
                return 1;
    }
    return 0;
}

/* The document's id for row ids: the spec's message_id, else the root's <id> as
 * root^extension (CDA II: the pair is the identifier). */
static cg_err_t document_id(cg_mapper_t *mp, const spec_t *s, const xmlNode *root)
{
    if (s->message_id) {
        spec_val_t v;
        mp->spec = s;
        cg_err_t rc = eval_expr(mp, s->message_id, &v);
        if (rc)
            return rc;
        mp->message_id = v.present ? (cg_slice_t){v.s, v.len} : (cg_slice_t){"", 0};
        return CG_OK;
    }
    mp->message_id = (cg_slice_t){"", 0};
    for (const xmlNode *c = root->children; c; c = c->next) {
        if (c->type != XML_ELEMENT_NODE || strcmp((const char *)c->name, "id"))
            continue;
        const char *r = (const char *)attr_value(c, "root");
        const char *x = (const char *)attr_value(c, "extension");
        size_t rl = r ? strlen(r) : 0, xl = x ? strlen(x) : 0;
        char *p = cg_arena_alloc(&mp->arena, rl + xl + 2);
        if (!p)
            return fail(mp, CG_ERR_NOMEM, "out of memory");
        size_t n = 0;
        if (rl) {
            memcpy(p, r, rl);
            n = rl;
        }
        if (xl) {
            if (n)
                p[n++] = '^';
            memcpy(p + n, x, xl);
            n += xl;
        }
        p[n] = '\0';
        mp->message_id = (cg_slice_t){p, n};
        break;
    }
    return CG_OK;
}

static cg_err_t map_error(cg_map_error_t *err, cg_err_t code, const char *stage, const char *reason)
{
    if (err) {
        memset(err, 0, sizeof(*err));
        err->code = code;
        err->stage = stage;
        snprintf(err->reason, sizeof(err->reason), "%s", reason);
    }
    return code;
}

cg_err_t cg_mapper_map_xml(cg_mapper_t *mp, const char *buf, size_t len, const cg_row_t **rows,
                           size_t *n_rows, cg_map_error_t *err)
{
    *rows = NULL;
    *n_rows = 0;
    if (!mp->xdoc) {
        cg_xml_options_t o;
        cg_xml_options_default(&o);
        if (mp->xml_opts_set)
            o = mp->xml_opts;
        if (!(mp->xdoc = cg_xml_doc_new(&o)) || !(mp->xev = cg_xml_eval_new()))
            return map_error(err, CG_ERR_NOMEM, "decode", "out of memory");
    }
    cg_xml_error_t xe;
    cg_err_t rc = cg_xml_parse(mp->xdoc, buf, len, &xe);
    if (rc) {
        char where[320];
        return map_error(err, rc, "decode", cg_xml_error_location(&xe, where, sizeof(where)));
    }
    cg_xml_eval_bind(mp->xev, mp->xdoc);
    const xmlNode *root = cg_xml_doc_root(mp->xdoc);
    cg_map_error_t local;
    begin_message(mp, err, &local, rows, n_rows);
    mp->m = NULL;
    size_t matched = 0;
    for (size_t i = 0; root && i < mp->ss->n_specs; i++) {
        const spec_t *s = &mp->ss->specs[i];
        if (s->format != SF_XML || !document_matches(s, root))
            continue;
        if ((rc = document_id(mp, s, root)) || (rc = try_spec(mp, s, &matched)))
            return rc;
    }
    if (!matched) {
        mp->err->code = CG_ERR_MAP;
        mp->err->stage = "select";
        int n = snprintf(mp->err->reason, sizeof(mp->err->reason),
                         "no spec takes XML documents with root element <%s>",
                         root ? (const char *)root->name : "?");
        /* the templateIds say what the document is: name them for whoever writes the spec */
        const char *sep = " (templateIds: ";
        for (const xmlNode *c = root ? root->children : NULL; c && n > 0; c = c->next) {
            const xmlChar *r =
                c->type == XML_ELEMENT_NODE && !strcmp((const char *)c->name, "templateId")
                    ? attr_value(c, "root")
                    : NULL;
            if (!r || (size_t)n >= sizeof(mp->err->reason))
                continue;
            n += snprintf(mp->err->reason + n, sizeof(mp->err->reason) - (size_t)n, "%s%s", sep,
                          (const char *)r);
            sep = " ";
        }
        if (*sep == ' ' && sep[1] == '\0' && (size_t)n < sizeof(mp->err->reason))
            snprintf(mp->err->reason + n, sizeof(mp->err->reason) - (size_t)n, ")");
        return CG_ERR_MAP;
    }
    finish_rows(mp, rows, n_rows);
    return CG_OK;
}

cg_err_t cg_mapper_map(cg_mapper_t *mp, const char *buf, size_t len, const cg_row_t **rows,
                       size_t *n_rows, cg_map_error_t *err)
{
    if (cg_xml_sniff(buf, len))
        return cg_mapper_map_xml(mp, buf, len, rows, n_rows, err);
    return cg_mapper_map_hl7(mp, buf, len, rows, n_rows, err);
}

cg_err_t cg_mapper_map_hl7(cg_mapper_t *mp, const char *buf, size_t len, const cg_row_t **rows,
                           size_t *n_rows, cg_map_error_t *err)
{
    cg_hl7_error_t he;
    *rows = NULL;
    *n_rows = 0;
    cg_err_t rc = cg_hl7_parse(mp->msg, buf, len, &he);
    if (rc) {
        char where[384];
        return map_error(err, rc, "decode", cg_hl7_error_location(&he, where, sizeof(where)));
    }
    return cg_mapper_map_msg(mp, mp->msg, rows, n_rows, err);
}

cg_mapper_t *cg_mapper_new(const cg_specset_t *ss, const cg_spec_env_t *env, char *errstr,
                           size_t errstr_size)
{
    cg_mapper_t *mp = calloc(1, sizeof(*mp));
    if (!mp) {
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    mp->ss = ss;
    mp->vocab = env ? env->vocab : NULL;
    mp->utc_offset = env ? env->source_utc_offset : NULL;
    cg_arena_init(&mp->arena, 64 * 1024);
    cg_buf_init(&mp->scratch);
    for (size_t i = 0; i < ss->n_specs; i++)
        if (ss->specs[i].max_vars > mp->cap_vars)
            mp->cap_vars = ss->specs[i].max_vars;
    mp->vars = calloc(mp->cap_vars + 1, sizeof(*mp->vars));
    mp->msg = cg_hl7_msg_new(env ? env->hl7 : NULL);
    if (env && env->xml) {
        mp->xml_opts = *env->xml;
        mp->xml_opts_set = 1;
    }
    /* aligned, so that no entry straddles two cache lines */
    mp->memo = aligned_alloc(sizeof(*mp->memo), PATH_MEMO_SIZE * sizeof(*mp->memo));
    if (mp->memo)
        memset(mp->memo, 0, PATH_MEMO_SIZE * sizeof(*mp->memo));
    mp->md = pcre2_match_data_create(ss->max_capture + 1, NULL);
    mp->mctx = pcre2_match_context_create(NULL);
    if (!mp->vars || !mp->msg || !mp->md || !mp->mctx || !mp->memo) {
        snprintf(errstr, errstr_size, "out of memory");
        cg_mapper_destroy(mp);
        return NULL;
    }
    pcre2_set_match_limit(mp->mctx, SPEC_REGEX_MATCH_LIMIT);
    pcre2_set_depth_limit(mp->mctx, SPEC_REGEX_DEPTH_LIMIT);
    if (env && env->pseudo) {
        mp->pseudo = cg_pseudo_clone(env->pseudo, errstr, errstr_size);
        if (!mp->pseudo) {
            cg_mapper_destroy(mp);
            return NULL;
        }
    }
    return mp;
}

void cg_mapper_set_trace(cg_mapper_t *mp, int on)
{
    mp->trace = on;
}

void cg_mapper_destroy(cg_mapper_t *mp)
{
    if (!mp)
        return;
    cg_pseudo_destroy(mp->pseudo);
    cg_hl7_msg_destroy(mp->msg);
    cg_xml_eval_destroy(mp->xev);
    cg_xml_doc_destroy(mp->xdoc);
    pcre2_match_data_free(mp->md);
    pcre2_match_context_free(mp->mctx);
    cg_arena_destroy(&mp->arena);
    cg_buf_free(&mp->scratch);
    free(mp->rows);
    free(mp->vars);
    free(mp->memo);
    free(mp);
}
