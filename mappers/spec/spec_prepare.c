/* spec_prepare.c - what the evaluator is handed ready-made once a spec set has compiled, so that
 * no row pays for it:
 * - each rule's provenance as the JSON envelope writes it (cg_row_t.json_prov):
 *   ,"spec":"NAME","spec_version":N,"rule":"NAME" is the same for every row of a rule. Names that
 *   would need escaping get none (the envelope then writes them itself); the same for the
 *   "name": keys of its meta;
 * - each rule's guard: the "in" test on a plain path that its "when" is, or starts its "all"
 *   with ("OBX-2" in ["CE", "CWE"]). Rules over the same segments are told apart by it, and most
 *   segments fail it for most rules: spec_row.c tests it inline before the rest of the
 *   condition. */
#include "spec_impl.h"

#include "cg_buf.h"

#include <stdio.h>
#include <string.h>

static int prov_build(cg_specset_t *ss, const spec_t *s, rule_t *r)
{
    size_t sn = s->name ? strlen(s->name) : 0, rn = r->name ? strlen(r->name) : 0;
    if (!sn || !rn || !cg_buf_json_plain(s->name, sn) || !cg_buf_json_plain(r->name, rn))
        return 0;
    size_t cap = sn + rn + 64;
    char *p = cg_arena_alloc(&ss->arena, cap);
    if (!p)
        return -1;
    int n = snprintf(p, cap, ",\"spec\":\"%s\",\"spec_version\":%d,\"rule\":\"%s\"", s->name,
                     s->version, r->name);
    if (n > 0 && (size_t)n < cap) {
        r->json_prov = p;
        r->json_prov_len = (uint32_t)n;
    }
    return 0;
}

/* Each meta binding's "name": key (binding_t.json_key), for the names that need no escaping. */
static int meta_keys(cg_specset_t *ss, rule_t *r)
{
    for (size_t i = 0; i < r->n_meta; i++) {
        binding_t *b = &r->meta[i];
        size_t n = b->name ? strlen(b->name) : 0;
        if (!n || !cg_buf_json_plain(b->name, n))
            continue;
        char *k = cg_arena_alloc(&ss->arena, n + 4);
        if (!k)
            return -1;
        k[0] = '"';
        memcpy(k + 1, b->name, n);
        memcpy(k + 1 + n, "\":", 3); /* with the NUL */
        b->json_key = k;
        b->json_key_len = (uint32_t)(n + 3);
    }
    return 0;
}

/* An "in" whose value is a path read as it is (no transform, default or requirement). */
static int plain_in(const cond_t *c)
{
    return c && c->kind == CD_IN && c->a && c->a->kind == EX_PATH && !c->a->n_xforms &&
           !c->a->deflt && !c->a->required;
}

static void guard_build(rule_t *r)
{
    r->guard = NULL;
    if (!r->when || r->when_uses_lets)
        return;
    if (plain_in(r->when))
        r->guard = r->when;
    else if (r->when->kind == CD_ALL && r->when->n_subs && plain_in(r->when->subs[0]))
        r->guard = r->when->subs[0];
}

int cg_spec_prepare(cg_specset_t *ss)
{
    for (size_t i = 0; i < ss->n_specs; i++) {
        const spec_t *s = &ss->specs[i];
        for (size_t k = 0; k < s->n_rules; k++) {
            if (prov_build(ss, s, &s->rules[k]) || meta_keys(ss, &s->rules[k]))
                return -1;
            guard_build(&s->rules[k]);
        }
    }
    return 0;
}
