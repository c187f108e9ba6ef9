/* spec_eval.c - evaluating compiled expressions and conditions: transforms, vocabulary lookups,
 * the patient's pseudonym and date shift, ids. The same for every input format; where a path's
 * value is read from is the format's (cg_spec_format.h: spec_hl7_value.c, spec_xml.c).
 *
 * Values live in the mapper's per-message arena or point into the message; nothing here
 * allocates per field once the arena is warm.
 */
#include "spec_mapper.h"

#include "cg_vocab.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- --trace ---- */

void cg_spec_trace_step(cg_mapper_t *mp, const char *fmt, ...)
{
    if (!mp->trace)
        return;
    char buf[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (mp->steps.len)
        cg_buf_puts(&mp->steps, "; ");
    cg_buf_puts(&mp->steps, buf);
}

const char *cg_spec_trace_take(cg_mapper_t *mp)
{
    if (!mp->steps.len)
        return NULL;
    spec_val_t v = cg_spec_val_copy(mp, mp->steps.data, mp->steps.len);
    cg_buf_reset(&mp->steps);
    return v.present ? v.s : NULL;
}

cg_err_t cg_spec_eval_binding(cg_mapper_t *mp, const expr_t *e, size_t i)
{
    if (!mp->trace)
        return eval(mp, e, &mp->vars[i]);
    cg_buf_t outer = mp->steps; /* a binding's steps are its own */
    cg_buf_init(&mp->steps);
    cg_err_t rc = eval(mp, e, &mp->vars[i]);
    mp->var_steps[i] = cg_spec_trace_take(mp);
    cg_buf_free(&mp->steps);
    mp->steps = outer;
    return rc;
}

/* Text for a trace step: at most 64 bytes of a value (a code, a vocabulary name). */
#define TV(v) (int)((v).len > 64 ? 64 : (v).len), (v).s ? (v).s : ""

/* The steps of transforms, out of line and cold: evaluation without --trace pays one test. */
#define TRACE_FN static __attribute__((noinline, cold)) void

TRACE_FN trace_map(cg_mapper_t *mp, spec_val_t v, spec_val_t out, int listed, int deflt)
{
    if (listed)
        cg_spec_trace_step(mp, "map: \"%.*s\" -> %.*s", TV(v), TV(out));
    else
        cg_spec_trace_step(mp, "map: \"%.*s\" is not listed: %s%.*s", TV(v),
                           deflt ? "\"*\" -> " : "no value", TV(out));
}

TRACE_FN trace_lookup(cg_mapper_t *mp, cg_slice_t voc, spec_val_t v, int found,
                      const cg_vocab_hit_t *hit)
{
    spec_val_t vs = {voc.ptr, (uint32_t)voc.len, 1};
    if (found)
        cg_spec_trace_step(mp,
                           "lookup %.*s \"%.*s\": concept_id %d, source_concept_id %d, domain %s",
                           TV(vs), TV(v), (int)hit->concept_id, (int)hit->source_concept_id,
                           hit->domain_id ? hit->domain_id : "?");
    else
        cg_spec_trace_step(mp, "lookup %.*s \"%.*s\": %s", TV(vs), TV(v),
                           mp->vocab ? "no such row (concept 0)"
                                     : "no vocabularies loaded (concept 0)");
}

TRACE_FN trace_unit(cg_mapper_t *mp, spec_val_t v, spec_val_t out)
{
    cg_spec_trace_step(mp, "unit \"%.*s\": unit_concept_id %.*s", TV(v), TV(out));
}

TRACE_FN trace_var(cg_mapper_t *mp, const expr_t *e)
{
    if (mp->var_steps[e->u.var])
        cg_spec_trace_step(mp, "%s: %s", e->text, mp->var_steps[e->u.var]);
}

TRACE_FN trace_default(cg_mapper_t *mp, const expr_t *e)
{
    cg_spec_trace_step(mp, "default (%s)", e->deflt->text ? e->deflt->text : "");
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
        if (!cg_spec_regex_may_match(x->u.re.need, v.s, v.len))
            return CG_OK; /* no match: the byte every match holds is not there */
        int rc = pcre2_match(x->u.re.re, (PCRE2_SPTR)v.s, v.len, 0, 0, mp->md, mp->mctx);
        if (rc == PCRE2_ERROR_NOMATCH)
            return CG_OK;
        if (rc < 0)
            return cg_spec_fail_as(mp, CG_ERR_MAP, "regex_limit",
                                   "regex gave up (%d): match limit reached", rc);
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
            return cg_spec_fail(mp, CG_ERR_NOMEM, "out of memory");
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
            return cg_spec_fail_as(mp, CG_ERR_MAP, "regex_limit", "regex_replace gave up (%d)", rc);
        outlen = n; /* the length it needs */
    }
    return cg_spec_fail_as(mp, CG_ERR_MAP, "regex_limit", "regex_replace output too long");
}

static spec_val_t number_text(cg_mapper_t *mp, spec_val_t v, int integer_only)
{
    char buf[128];
    size_t n = cg_spec_number(v.s, v.len, integer_only, buf, sizeof(buf));
    return n ? cg_spec_val_copy(mp, buf, n) : ABSENT;
}

static spec_val_t int_text(cg_mapper_t *mp, int64_t x)
{
    if (x == 0) /* unmapped concepts: common enough to skip the arena */
        return (spec_val_t){"0", 1, 1};
    char buf[24];
    return cg_spec_val_copy(mp, buf, cg_fmt_int64(buf, x));
}

/* The ts memo's slot for the text of v: by its bytes, not its place, since a message's results
 * mostly share their times (an order's OBX-14) in slices of their own. */
static inline uint32_t ts_memo_slot(spec_val_t v)
{
    uint64_t h = v.len;
    if (v.len >= 8) { /* TS values have 8 digits at least; the first and last eight */
        uint64_t a, b;
        memcpy(&a, v.s, 8);
        memcpy(&b, v.s + v.len - 8, 8);
        h ^= a ^ (b * 0x9E3779B97F4A7C15u);
    } else {
        for (uint32_t i = 0; i < v.len; i++)
            h = h * 31 + (unsigned char)v.s[i];
    }
    h *= 0x9E3779B97F4A7C15u;
    return (uint32_t)(h >> 40) & (TS_MEMO_SIZE - 1);
}

/* The vocabulary_id a coding-system name stands for, as cg_vocab_lookup_system takes it
 * (cg_vocab_system's, else the name itself): remembered by the name's text, since a message
 * names a handful of systems on thousands of codes and the names table is searched by text. */
static cg_slice_t vocab_of(cg_mapper_t *mp, cg_slice_t sys)
{
    if (sys.len > sizeof(mp->systems[0].name))
        goto ask;
    system_memo_t *sm =
        &mp->systems[(sys.len + (unsigned char)sys.ptr[0]) & (SYSTEM_MEMO_SIZE - 1)];
    if (sm->len == sys.len && sm->set && cg_spec_same(sm->name, sys.ptr, sys.len))
        return sm->vocab ? (cg_slice_t){sm->vocab, sm->vocab_len} : sys;
    const char *voc = cg_vocab_system(sys);
    *sm = (system_memo_t){.len = (uint32_t)sys.len,
                          .set = 1,
                          .vocab = voc,
                          .vocab_len = voc ? (uint32_t)strlen(voc) : 0};
    memcpy(sm->name, sys.ptr, sys.len);
    return voc ? (cg_slice_t){voc, sm->vocab_len} : sys;
ask:;
    const char *v = cg_vocab_system(sys);
    return v ? (cg_slice_t){v, strlen(v)} : sys;
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
        /* codes mostly come in the wanted case already (OBX-11 "F", ORC-1 "NW"): then the value
         * is its own result, and a copy per row would be waste */
        char lo = x->kind == XF_UPPER ? 'a' : 'A';
        size_t k = 0;
        while (k < v.len && (v.s[k] < lo || v.s[k] > lo + 25))
            k++;
        if (k == v.len) {
            *out = v;
            return CG_OK;
        }
        char *p = cg_arena_alloc(&mp->arena, v.len + 1);
        if (!p)
            return cg_spec_fail(mp, CG_ERR_NOMEM, "out of memory");
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
        ts_memo_t *tm = &mp->ts_memo[ts_memo_slot(v)];
        if (tm->gen != mp->gen || tm->len != v.len || tm->shift_days != mp->shift_days ||
            tm->spec != mp->spec || (tm->s != v.s && !cg_spec_same(tm->s, v.s, v.len))) {
            char buf[48];
            size_t n = cg_spec_ts_to_iso(v.s, v.len, 1, mp->utc_offset, mp->shift_days, buf);
            if (!n)
                return cg_spec_fail_as(mp, CG_ERR_MAP, "invalid_datetime",
                                       "a value of %zu byte%s is not an HL7 date/time "
                                       "(YYYY[MM[DD[HHMM[SS]]]])",
                                       (size_t)v.len, v.len == 1 ? "" : "s");
            spec_val_t c = cg_spec_val_copy(mp, buf, n);
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
            if (m->from_len == v.len && cg_spec_same(m->from, v.s, v.len)) {
                *out = (spec_val_t){m->to, m->to_len, m->to != NULL};
                if (mp->trace)
                    trace_map(mp, v, *out, 1, 0);
                return CG_OK;
            }
        }
        if (x->u.map.deflt)
            *out = (spec_val_t){x->u.map.deflt->to, x->u.map.deflt->to_len,
                                x->u.map.deflt->to != NULL};
        if (mp->trace)
            trace_map(mp, v, *out, 0, x->u.map.deflt != NULL);
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
                found =
                    cg_vocab_lookup(mp->vocab, vocab_of(mp, voc), (cg_slice_t){v.s, v.len}, &hit);
                *lm = (lookup_memo_t){mp->gen, voc.ptr, v.s, voc.len, v.len, found, hit};
            }
        }
        if (mp->trace)
            trace_lookup(mp, voc, v, found, &hit);
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
        if (mp->trace)
            trace_unit(mp, v, *out);
        return CG_OK;
    case XF_REFERENCE: /* the compiler let it through only for formats that have one */
        return mp->spec->format->reference(mp, &v, out);
    case XF_TRUNCATE: {
        /* cut at a character boundary; a value of no more bytes than the limit has no more
         * characters either, and is its own result without the walk */
        if (v.len <= x->u.truncate) {
            *out = (spec_val_t){v.s, v.len, v.len > 0};
            return CG_OK;
        }
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

/* An expression's name in a reason: its path, a coalesce's paths ("A else B"), a concat's
 * ("A + B"). */
static const char *expr_name(const expr_t *e, char *buf, size_t size)
{
    if (!e)
        return "none";
    if (e->kind != EX_COALESCE && e->kind != EX_CONCAT)
        return e->text ? e->text : "?";
    size_t o = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < e->u.list.n && o < size; i++) {
        const char *t = e->u.list.items[i]->text;
        int n = snprintf(buf + o, size - o, "%s%s",
                         !i                       ? ""
                         : e->kind == EX_COALESCE ? " else "
                                                  : " + ",
                         t ? t : "?");
        o += n > 0 ? (size_t)n : 0;
    }
    return buf;
}

/* The value of e where the patient is read: the message (HL7 v2) or the document root (XML),
 * whatever rule or foreach is running. */
static cg_err_t eval_at_message(cg_mapper_t *mp, const expr_t *e, spec_val_t *out)
{
    cg_hl7_scope_t saved = mp->scope;
    const void *saved_node = mp->xnode;
    if (mp->m)
        mp->scope = cg_hl7_scope_message(mp->m);
    mp->xnode = NULL;
    cg_err_t rc = cg_spec_eval_expr(mp, e, out);
    mp->scope = saved;
    mp->xnode = saved_node;
    return rc;
}

/* --trace: where an identifier's authority came from, when not from the message. */
TRACE_FN trace_authority(cg_mapper_t *mp, const char *what, int from)
{
    if (from != CG_PSEUDO_AUTH_GIVEN)
        cg_spec_trace_step(mp, "%s: no assigning authority; %s", what,
                           from == CG_PSEUDO_AUTH_DEFAULT
                               ? "its sending facility's default (pseudonym.authorities)"
                               : "its sending facility is the authority (missing \"facility\")");
}

/* The authority an identifier is hashed under (cg_pseudo_authority): its own (auth), else the
 * site's default for the sending facility fac_e, else (opt-in) the facility; aliased. A refusal
 * fails the message naming the paths and the rule, never a value. fac_at_message: fac_e is the
 * spec's patient facility, read at the message. *from_out: where the authority came from. */
static cg_err_t resolve_authority(cg_mapper_t *mp, const char *what, const expr_t *id_e,
                                  const expr_t *auth_e, spec_val_t auth, const expr_t *fac_e,
                                  int fac_at_message, cg_slice_t *out, int *from_out)
{
    cg_slice_t a = {auth.present && auth.s ? auth.s : "", auth.present ? auth.len : 0};
    spec_val_t fac = ABSENT;
    if (!a.len && fac_e) {
        cg_err_t rc =
            fac_at_message ? eval_at_message(mp, fac_e, &fac) : cg_spec_eval_expr(mp, fac_e, &fac);
        if (rc)
            return rc;
    }
    cg_slice_t f = {fac.present && fac.s ? fac.s : "", fac.present ? fac.len : 0};
    cg_pseudo_authority_from_t from = cg_pseudo_authority(mp->authorities, a, f, out);
    *from_out = (int)from;
    if (from != CG_PSEUDO_AUTH_NO_DEFAULT && from != CG_PSEUDO_AUTH_NO_FACILITY)
        return CG_OK;
    char ib[512], ab[512], fb[512];
    const char *in = expr_name(id_e, ib, sizeof(ib)), *an = expr_name(auth_e, ab, sizeof(ab));
    if (from == CG_PSEUDO_AUTH_NO_DEFAULT)
        return cg_spec_fail_as(mp, CG_ERR_MAP, "no_authority",
                               "%s (%s) has no assigning authority (%s) and "
                               "pseudonym.authorities has no default for its sending facility "
                               "(%s)",
                               what, in, an, expr_name(fac_e, fb, sizeof(fb)));
    if (!fac_e)
        return cg_spec_fail_as(mp, CG_ERR_MAP, "no_authority",
                               "%s (%s) has no assigning authority (%s) and the spec names no "
                               "sending facility (\"patient\": {\"facility\": PATH}) for "
                               "pseudonym.authorities to default it by",
                               what, in, an);
    return cg_spec_fail_as(mp, CG_ERR_MAP, "no_authority",
                           "%s (%s) has no assigning authority (%s) and no sending facility "
                           "(%s) for pseudonym.authorities to default it by",
                           what, in, an, expr_name(fac_e, fb, sizeof(fb)));
}

cg_err_t cg_spec_patient(cg_mapper_t *mp)
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
    cg_err_t rc = cg_spec_eval_expr(mp, s->patient_id, &id);
    if (!rc && s->patient_authority) {
        mp->column = "patient.authority";
        rc = cg_spec_eval_expr(mp, s->patient_authority, &auth);
    }
    mp->scope = saved;
    mp->xnode = saved_node;
    mp->column = saved_col;
    if (rc)
        return rc;
    if (!id.present)
        return cg_spec_fail(mp, CG_ERR_REQUIRED, "the patient identifier (%s) is empty",
                            s->patient_id->text ? s->patient_id->text : "patient.id");
    if (!mp->pseudo)
        return cg_spec_fail(mp, CG_ERR_MAP, "no pseudonym key: pseudonyms cannot be computed");
    cg_slice_t a, i = {id.s, id.len};
    mp->column = "patient.authority";
    rc = resolve_authority(mp, "the patient identifier", s->patient_id, s->patient_authority, auth,
                           s->patient_facility, 1, &a, &mp->patient_from);
    mp->column = saved_col;
    if (rc)
        return rc;
    rc = cg_pseudo_person(mp->pseudo, a, i, &mp->person);
    if (!rc)
        rc = cg_pseudo_date_shift(mp->pseudo, a, i, &mp->shift_days);
    if (rc)
        return cg_spec_fail(mp, CG_ERR_MAP, "the patient identifier cannot be pseudonymized (%s)",
                            cg_err2str(rc));
    mp->person_sv = cg_spec_val_copy(mp, mp->person.source_value, strlen(mp->person.source_value));
    if (!mp->person_sv.present)
        return cg_spec_fail(mp, CG_ERR_NOMEM, "out of memory");
    mp->patient_state = 1;
    mp->person_id_text = ABSENT;
    return CG_OK;
}

/* ---- conditions and expressions ---- */

static int val_eq(spec_val_t a, spec_val_t b)
{
    if (!a.present || !b.present)
        return a.present == b.present;
    return a.len == b.len && cg_spec_same(a.s, b.s, a.len);
}

cg_err_t cg_spec_eval_cond(cg_mapper_t *mp, const cond_t *c, int *out)
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
        *out = cond_in(c, a);
        return CG_OK;
    case CD_REGEX: {
        if ((rc = eval(mp, c->a, &a)))
            return rc;
        if (!a.present || !cg_spec_regex_may_match(c->re_need, a.s, a.len))
            return CG_OK;
        int m = pcre2_match(c->re, (PCRE2_SPTR)a.s, a.len, 0, 0, mp->md, mp->mctx);
        if (m < 0 && m != PCRE2_ERROR_NOMATCH)
            return cg_spec_fail_as(mp, CG_ERR_MAP, "regex_limit",
                                   "regex gave up (%d): match limit reached", m);
        *out = m >= 0;
        return CG_OK;
    }
    case CD_PRESENT:
        if ((rc = eval(mp, c->a, &a)))
            return rc;
        *out = a.present;
        return CG_OK;
    case CD_NOT:
        if ((rc = cg_spec_eval_cond(mp, c->subs[0], out)))
            return rc;
        *out = !*out;
        return CG_OK;
    case CD_ALL:
    case CD_ANY:
        for (size_t i = 0; i < c->n_subs; i++) {
            int r;
            if ((rc = cg_spec_eval_cond(mp, c->subs[i], &r)))
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
    /* a [*] path among the parts joins its values with the same sep: its values are parts */
    const char *outer = mp->join_sep;
    mp->join_sep = e->u.list.sep;
    for (size_t i = 0; i < e->u.list.n && !rc; i++) {
        spec_val_t p;
        rc = cg_spec_eval_expr(mp, e->u.list.items[i], &p);
        if (!rc && p.present && n < 16) {
            parts[n++] = p;
            total += p.len + seplen;
        }
    }
    mp->join_sep = outer;
    if (rc || !n)
        return rc;
    char *buf = total <= UINT32_MAX ? cg_arena_alloc(&mp->arena, total + 1) : NULL;
    if (!buf)
        return cg_spec_fail(mp, CG_ERR_NOMEM, "out of memory");
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (i) {
            cg_mem_copy(buf + o, e->u.list.sep, seplen); /* short pieces: no library call */
            o += seplen;
        }
        cg_mem_copy(buf + o, parts[i].s, parts[i].len);
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
    if ((rc = cg_spec_eval_expr(mp, e->u.list.items[0], &id)))
        return rc;
    if (e->u.list.items[1] && (rc = cg_spec_eval_expr(mp, e->u.list.items[1], &auth)))
        return rc;
    if (!id.present)
        return rc;
    if (!mp->pseudo)
        return cg_spec_fail(mp, CG_ERR_MAP, "no pseudonym key: pseudonyms cannot be computed");
    /* the same rules as the patient's: its sending facility unless the expression names one */
    cg_slice_t a;
    int from;
    const expr_t *fac = e->u.list.items[2];
    if ((rc = resolve_authority(mp, "the identifier", e->u.list.items[0], e->u.list.items[1], auth,
                                fac ? fac : mp->spec->patient_facility, !fac, &a, &from)))
        return rc;
    if (mp->trace)
        trace_authority(mp, "the identifier", from);
    cg_pseudo_person_t who;
    rc = cg_pseudo_person(mp->pseudo, a, (cg_slice_t){id.s, id.len}, &who);
    if (rc)
        return cg_spec_fail(mp, CG_ERR_MAP, "an identifier cannot be pseudonymized (%s)",
                            cg_err2str(rc));
    v = e->part == PT_PERSON_ID ? int_text(mp, who.person_id)
                                : cg_spec_val_copy(mp, who.source_value, strlen(who.source_value));
    *out = v;
    return CG_OK;
}

/* The values of key parts as slices for cg_pseudo_key_id: absent values stay absent (ptr
 * NULL); *any says whether one is present. */
cg_err_t cg_spec_eval_key(cg_mapper_t *mp, expr_t *const *items, size_t n, cg_slice_t *parts,
                          int *any)
{
    *any = 0;
    for (size_t i = 0; i < n; i++) {
        spec_val_t v;
        cg_err_t rc = eval(mp, items[i], &v);
        if (rc)
            return rc;
        parts[i] = v.present ? (cg_slice_t){v.s ? v.s : "", v.len} : (cg_slice_t){NULL, 0};
        *any |= (int)v.present;
    }
    return CG_OK;
}

static __attribute__((noinline)) cg_err_t eval_hash_id(cg_mapper_t *mp, const expr_t *e,
                                                       spec_val_t *out)
{
    /* keyed id of the namespace (a table) and the values, e.g. a visit from PV1-19; the same
     * as a rule's "id" over these values on that table (spec_row.c), so foreign keys match */
    *out = ABSENT;
    cg_slice_t parts[CG_PSEUDO_ID_MAX_PARTS];
    int any;
    cg_err_t rc = cg_spec_eval_key(mp, e->u.list.items, e->u.list.n, parts, &any);
    if (rc || !any)
        return rc;
    if (!mp->pseudo)
        return cg_spec_fail(mp, CG_ERR_MAP, "no pseudonym key: ids cannot be computed");
    int64_t id;
    rc = cg_pseudo_key_id(mp->pseudo, CG_PSEUDO_ID_KEY,
                          (cg_slice_t){e->u.list.sep, strlen(e->u.list.sep)}, parts, e->u.list.n,
                          &id);
    if (rc)
        return cg_spec_fail(mp, rc, "hash_id failed");
    *out = int_text(mp, id);
    return CG_OK;
}

/* --trace: coalesce, noting which branch gave the value. */
static __attribute__((noinline)) cg_err_t eval_coalesce_traced(cg_mapper_t *mp, const expr_t *e,
                                                               spec_val_t *v)
{
    cg_err_t rc = CG_OK;
    size_t i = 0;
    for (; i < e->u.list.n && !rc && !v->present; i++)
        rc = cg_spec_eval_expr(mp, e->u.list.items[i], v); /* a variable's binding steps too */
    if (!rc && v->present)
        cg_spec_trace_step(mp, "coalesce: branch %zu of %zu (%s)", i, e->u.list.n,
                           e->u.list.items[i - 1]->text ? e->u.list.items[i - 1]->text : "");
    else if (!rc)
        cg_spec_trace_step(mp, "coalesce: no branch has a value");
    return rc;
}

static cg_err_t eval_anchored(cg_mapper_t *mp, const expr_t *e, spec_val_t *out);
static cg_err_t eval_unanchored(cg_mapper_t *mp, const expr_t *e, spec_val_t *out);

cg_err_t cg_spec_eval_expr(cg_mapper_t *mp, const expr_t *e, spec_val_t *out)
{
    if (e->anchor_id && mp->anchor_place && !mp->trace) /* --trace tells every step */
        return eval_anchored(mp, e, out);
    return eval_unanchored(mp, e, out);
}

/* An anchored expression (spec_prepare.c): its value at its place, from the memo when a row
 * before this one computed it there in this spec run. Failures are not kept: each row meets its
 * own. */
static __attribute__((noinline)) cg_err_t eval_anchored(cg_mapper_t *mp, const expr_t *e,
                                                        spec_val_t *out)
{
    if (mp->scope.begin) /* a partial scope: no memo (eval_path) */
        return eval_unanchored(mp, e, out);
    place_memo_t *pm = &mp->places[(e->anchor_group * 0x9E3779B1u) >> 30];
    uint32_t at;
    if (pm->gen == mp->gen && pm->cur == mp->scope.cur && pm->group == e->anchor_group) {
        at = pm->at;
    } else {
        if (mp->anchor_place(mp, e->anchor, &at))
            return eval_unanchored(mp, e, out);
        *pm = (place_memo_t){mp->gen, mp->scope.cur, e->anchor_group, at};
    }
    path_memo_t *m = memo_slot_at(mp, e->anchor_id, at);
    if (m->gen == mp->gen && m->path_id == e->anchor_id && m->cur == at && m->run == mp->run) {
        *out = m->val;
        return CG_OK;
    }
    cg_err_t rc = eval_unanchored(mp, e, out);
    if (rc == CG_OK)
        *m = (path_memo_t){mp->gen, e->anchor_id, at, mp->run, *out};
    return rc;
}

static cg_err_t eval_unanchored(cg_mapper_t *mp, const expr_t *e, spec_val_t *out)
{
    cg_err_t rc = CG_OK;
    spec_val_t v = ABSENT;
    switch (e->kind) {
    case EX_PATH:
        rc = eval_path(mp, e, &v);
        break;
    case EX_CONST:
        v = (spec_val_t){e->u.cst.s, e->u.cst.len, e->u.cst.present};
        break;
    case EX_VAR:
        v = mp->vars[e->u.var];
        if (mp->trace)
            trace_var(mp, e);
        break;
    case EX_CONCAT:
        rc = eval_concat(mp, e, &v);
        break;
    case EX_COALESCE:
        if (mp->trace) {
            rc = eval_coalesce_traced(mp, e, &v);
            break;
        }
        for (size_t i = 0; i < e->u.list.n && !rc && !v.present; i++)
            rc = eval(mp, e->u.list.items[i], &v);
        break;
    case EX_IF: {
        int t;
        rc = cg_spec_eval_cond(mp, e->u.iff.cond, &t);
        if (!rc && t)
            rc = eval(mp, e->u.iff.then, &v);
        else if (!rc && e->u.iff.els)
            rc = eval(mp, e->u.iff.els, &v);
        break;
    }
    case EX_PATIENT:
        if ((rc = cg_spec_patient(mp)))
            break;
        if (mp->trace) /* computed before the rules ran: its step is told where it is used */
            trace_authority(mp, "the patient identifier", mp->patient_from);
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
    if (!v.present && e->deflt) {
        if ((rc = cg_spec_eval_expr(mp, e->deflt, &v)))
            return rc;
        if (mp->trace)
            trace_default(mp, e);
    }
    if (!v.present && e->required)
        return cg_spec_fail(mp, CG_ERR_REQUIRED, "required value %s is empty",
                            e->text ? e->text : "");
    *out = v;
    return CG_OK;
}
