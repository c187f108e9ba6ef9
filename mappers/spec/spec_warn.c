/* spec_warn.c - what compiles but is most likely a mistake: warnings of `cohortgate check`
 * (and errors under `map --strict`), located file:line:column like the compiler's errors.
 *
 *  - a *_concept_id column filled from a path as the message writes it (no lookup, map, unit
 *    or constant): a code such as a CPT code written where OMOP wants a concept id;
 *  - an HL7 v2 message type or trigger event that is not one ("ORM^O1"): it never matches;
 *  - a lookup in a vocabulary nobody knows ("CPTX"): every code gives concept 0;
 *  - a path naming a whole segment that nothing else in the spec reads ("EHR" meant as a
 *    constant: a bare string is a path);
 *  - a "patient" without an "authority": its identifiers are refused unless the site gives
 *    their sending facility a default (pseudonym.authorities), always without a "facility".
 *
 * The compiler calls these hooks where it has the JSON value and the compiled form side by
 * side; nothing here runs when messages are mapped. */
#include "spec_compile.h"

#include "cg_vocab.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void cg_spec_warn(cc_t *c, const json_t *at, const json_t *obj, const char *key, const char *fmt,
                  ...)
{
    char what[96] = "";
    if (c->rule)
        snprintf(what, sizeof(what), "rule '%s': ", c->rule);
    va_list ap;
    va_start(ap, fmt);
    cg_jsonpos_error(&c->w, c->jp, CG_ERR_SPEC, c->file, at, obj, key, what, fmt, ap);
    va_end(ap);
}

/* ---- concept ids from raw codes ---- */

static int converts(const expr_t *e)
{
    for (size_t i = 0; i < e->n_xforms; i++)
        if (e->xforms[i].kind == XF_LOOKUP || e->xforms[i].kind == XF_MAP ||
            e->xforms[i].kind == XF_UNIT)
            return 1;
    return 0;
}

/* The binding a variable reads: the spec's lets first, then the rule's. */
static const expr_t *binding_of(const cc_t *c, const rule_t *r, int var)
{
    size_t n = c->spec->n_lets;
    if (var >= 0 && (size_t)var < n)
        return c->spec->lets[var].expr;
    if (r && var >= 0 && (size_t)var - n < r->n_lets)
        return r->lets[(size_t)var - n].expr;
    return NULL;
}

/* A path e (or one it may take its value from) reads as the message writes it, unconverted;
 * NULL when e cannot give such a value. */
static const expr_t *raw_path(const cc_t *c, const rule_t *r, const expr_t *e, int depth)
{
    if (!e || depth > 16 || converts(e))
        return NULL;
    const expr_t *p = NULL;
    switch (e->kind) {
    case EX_PATH:
        return e;
    case EX_VAR:
        return raw_path(c, r, binding_of(c, r, e->u.var), depth + 1);
    case EX_COALESCE:
    case EX_CONCAT:
        for (size_t i = 0; i < e->u.list.n && !p; i++) {
            const expr_t *it = e->u.list.items[i];
            p = raw_path(c, r, it, depth + 1);
            if (e->kind == EX_COALESCE && it->kind == EX_CONST && it->u.cst.present)
                break; /* what follows a constant is never reached */
        }
        return p;
    case EX_IF:
        p = raw_path(c, r, e->u.iff.then, depth + 1);
        return p ? p : raw_path(c, r, e->u.iff.els, depth + 1);
    default:
        return NULL;
    }
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcmp(s + n - m, suffix);
}

void cg_spec_warn_columns(cc_t *c, json_t *cols, const rule_t *r)
{
    for (size_t i = 0; i < r->n_columns; i++) {
        const column_t *col = &r->columns[i];
        if (!col->expr || !ends_with(col->col->name, "_concept_id"))
            continue;
        const expr_t *p = raw_path(c, r, col->expr, 0);
        if (p)
            cg_spec_warn(c, json_object_get(cols, col->col->name), cols, col->col->name,
                         "%s is a concept id, but %s gives the code as the message writes it: "
                         "convert it with a \"lookup\" (or \"map\", \"unit\"), or give a "
                         "constant such as 0",
                         col->col->name, p->text ? p->text : "a path");
    }
}

/* ---- message types ---- */

/* HL7 v2 table 0076 (message types, v2.1 to v2.9); Z.. types are a site's own. */
static const char *const hl7_types[] = {
    "ACK", "ADR", "ADT", "ARD", "BAR", "BPS", "BRP", "BRT", "BTS", "CCF", "CCI", "CCM", "CCQ",
    "CCR", "CCU", "CQU", "CRM", "CSU", "DBC", "DBU", "DEL", "DEO", "DER", "DFT", "DOC", "DPR",
    "DSR", "EAC", "EAN", "EAR", "EDR", "EHC", "ERP", "ESR", "ESU", "INR", "INU", "LSR", "LSU",
    "MCF", "MDM", "MFD", "MFK", "MFN", "MFQ", "MFR", "NMD", "NMQ", "NMR", "OMB", "OMD", "OMG",
    "OMI", "OML", "OMN", "OMP", "OMQ", "OMS", "OPL", "OPR", "OPU", "ORA", "ORB", "ORD", "ORF",
    "ORG", "ORI", "ORL", "ORM", "ORN", "ORP", "ORR", "ORS", "ORU", "ORX", "OSM", "OSQ", "OSR",
    "OUL", "PEX", "PGL", "PIN", "PMU", "PPG", "PPP", "PPR", "PPT", "PPV", "PRR", "PTR", "QBP",
    "QCK", "QCN", "QRF", "QRY", "QSB", "QSX", "QVR", "RAR", "RAS", "RCI", "RCL", "RDE", "RDR",
    "RDS", "RDY", "REF", "RER", "RGR", "RGV", "ROC", "ROD", "ROR", "RPA", "RPI", "RPL", "RPR",
    "RQA", "RQC", "RQI", "RQP", "RQQ", "RRA", "RRD", "RRE", "RRG", "RRI", "RSP", "RTB", "SCN",
    "SDN", "SDR", "SIU", "SLN", "SLR", "SMD", "SQM", "SQR", "SRM", "SRR", "SSR", "SSU", "STC",
    "STI", "SUR", "TBR", "TCR", "TCU", "UDM", "VBA", "VQQ", "VXQ", "VXR", "VXU", "VXX", NULL};

static int upper_alnum(const char *s, size_t from, size_t n)
{
    for (size_t i = from; i < n; i++)
        if (!((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9')))
            return 0;
    return 1;
}

void cg_spec_warn_trigger(cc_t *c, const json_t *at, const trigger_t *t)
{
    const char *ty = t->type, *ev = t->event;
    if (strlen(ty) != 3 || !upper_alnum(ty, 0, 3) ||
        (ty[0] != 'Z' && !cg_spec_cc_in_list(ty, hl7_types))) {
        cg_spec_warn(c, at, NULL, NULL,
                     "'%s' is not an HL7 v2 message type (table 0076: ADT, ORU, ORM, …; a "
                     "site's own start with Z): no message will match it",
                     ty);
        return;
    }
    /* trigger events (table 0003) are three characters from a capital letter: A01, R01, O21,
     * PC1, PCA, a site's own Z.. */
    if (*ev && (strlen(ev) != 3 || !upper_alnum(ev, 0, 3) || ev[0] < 'A' || ev[0] > 'Z'))
        cg_spec_warn(c, at, NULL, NULL,
                     "'%s' is not an HL7 v2 trigger event of %s (table 0003: three capital "
                     "letters or digits from a letter, such as O01): no message will match it",
                     ev, ty);
}

/* ---- vocabularies ---- */

void cg_spec_warn_vocabulary(cc_t *c, const json_t *at, const char *name)
{
    cg_slice_t s = {name, strlen(name)};
    const cg_vocab_t *v = c->env ? c->env->vocab : NULL;
    size_t n = cg_vocab_vocabulary_count(v);
    for (size_t i = 0; i < n; i++)
        if (!strcmp(cg_vocab_vocabulary_name(v, i), name))
            return;
    if (cg_vocab_system_known(s))
        return;
    char known[512] = "";
    size_t k = 0;
    for (size_t i = 0; i < n && k + 1 < sizeof(known); i++) {
        int w = snprintf(known + k, sizeof(known) - k, "%s%s", i ? ", " : "",
                         cg_vocab_vocabulary_name(v, i));
        k += w > 0 ? (size_t)w : 0;
    }
    if (n)
        cg_spec_warn(c, at, NULL, NULL,
                     "unknown vocabulary '%s': every code will get concept 0 (loaded: %s; or an "
                     "HL7 table 0396 name such as LN, SCT, I10, an OID, or an OMOP vocabulary_id)",
                     name, known);
    else
        cg_spec_warn(c, at, NULL, NULL,
                     "unknown vocabulary '%s': every code will get concept 0 (no vocabularies "
                     "are loaded; names known without them: an HL7 table 0396 name such as LN, "
                     "SCT, I10, an OID, or an OMOP vocabulary_id such as LOINC)",
                     name);
}

/* ---- whole segments that look like constants ---- */

static int seg_used(const cc_t *c, const char *seg)
{
    for (size_t i = 0; i < c->n_segs_used; i++)
        if (!memcmp(c->segs_used[i], seg, 3))
            return 1;
    return 0;
}

void cg_spec_warn_path(cc_t *c, const json_t *at, const cg_hl7_path_t *p, int is_foreach)
{
    if (p->field || is_foreach) {
        if (seg_used(c, p->seg))
            return;
        char(*u)[4] = realloc(c->segs_used, (c->n_segs_used + 1) * sizeof(*u));
        if (!u)
            return; /* a warning less, nothing worse */
        c->segs_used = u;
        memcpy(u[c->n_segs_used++], p->seg, 4);
        return;
    }
    struct spec_seg_cand *s = realloc(c->seg_cands, (c->n_seg_cands + 1) * sizeof(*s));
    if (!s)
        return;
    c->seg_cands = s;
    s[c->n_seg_cands++] = (struct spec_seg_cand){at, c->rule, {p->seg[0], p->seg[1], p->seg[2], 0}};
}

void cg_spec_warn_spec_done(cc_t *c)
{
    const char *rule = c->rule;
    for (size_t i = 0; i < c->n_seg_cands; i++) {
        const struct spec_seg_cand *s = &c->seg_cands[i];
        if (seg_used(c, s->seg))
            continue;
        c->rule = s->rule;
        cg_spec_warn(c, s->at, NULL, NULL,
                     "\"%s\" is a path (a bare string is one): the whole %s segment, which "
                     "nothing else in the spec reads; for a text constant write {\"const\": "
                     "\"%s\"}",
                     s->seg, s->seg, s->seg);
    }
    c->rule = rule;
    free(c->seg_cands);
    free(c->segs_used);
    c->seg_cands = NULL;
    c->segs_used = NULL;
    c->n_seg_cands = c->n_segs_used = 0;
}

/* ---- a patient without an authority ---- */

void cg_spec_warn_patient(cc_t *c, const json_t *pat)
{
    if (json_object_get(pat, "authority"))
        return;
    if (!c->spec->patient_facility)
        cg_spec_warn(c, pat, NULL, NULL,
                     "\"patient\" has no \"authority\" and no \"facility\": every identifier "
                     "will be refused (pseudonym.authorities cannot default it)");
    else
        cg_spec_warn(c, pat, NULL, NULL,
                     "\"patient\" has no \"authority\": identifiers are refused unless "
                     "pseudonym.authorities has a default for their sending facility, or missing "
                     "\"facility\"");
}
