/* spec_prov.c - each rule's provenance as the JSON envelope writes it (cg_row_t.json_prov):
 * ,"spec":"NAME","spec_version":N,"rule":"NAME" is the same for every row of a rule, so it is
 * made once at load instead of measured, checked for escapes and copied piece by piece per
 * record. Names that would need escaping get none (the envelope then writes them itself). */
#include "spec_impl.h"

#include "cg_buf.h"

#include <stdio.h>
#include <string.h>

int cg_spec_prov_build(cg_specset_t *ss)
{
    for (size_t i = 0; i < ss->n_specs; i++) {
        const spec_t *s = &ss->specs[i];
        size_t sn = s->name ? strlen(s->name) : 0;
        if (!sn || !cg_buf_json_plain(s->name, sn))
            continue;
        for (size_t k = 0; k < s->n_rules; k++) {
            rule_t *r = &s->rules[k];
            size_t rn = r->name ? strlen(r->name) : 0;
            if (!rn || !cg_buf_json_plain(r->name, rn))
                continue;
            size_t cap = sn + rn + 64;
            char *p = cg_arena_alloc(&ss->arena, cap);
            if (!p)
                return -1;
            int n = snprintf(p, cap, ",\"spec\":\"%s\",\"spec_version\":%d,\"rule\":\"%s\"",
                             s->name, s->version, r->name);
            if (n <= 0 || (size_t)n >= cap)
                continue;
            r->json_prov = p;
            r->json_prov_len = (uint32_t)n;
        }
    }
    return 0;
}
