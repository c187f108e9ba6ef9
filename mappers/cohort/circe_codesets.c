/* circe_codesets.c - a Circe expression's concept sets: the codesets CTE (included concepts,
 * their descendants and mapped source concepts, minus the excluded ones) and the checks of the
 * members that refer to a concept set by id.
 */

#include "circe_impl.h"

static int codeset_known(cc_t *c, long long id)
{
    for (int i = 0; i < c->n_codesets; i++)
        if (c->codeset_ids[i] == id)
            return 1;
    return 0;
}

static int codeset_part(cc_t *c, const json_t *items, int excluded)
{
    int n = 0;
    /* explicit concepts */
    size_t i;
    const json_t *it;
    cg_buf_t ids, desc, mapped;
    cg_buf_init(&ids);
    cg_buf_init(&desc);
    cg_buf_init(&mapped);
    json_array_foreach((json_t *)items, i, it)
    {
        if (!json_is_object(it))
            continue;
        const json_t *con = json_object_get(it, "concept");
        const json_t *id = json_is_object(con) ? json_object_get(con, "CONCEPT_ID") : NULL;
        if (!json_is_integer(id))
            continue;
        if (json_is_true(json_object_get(it, "isExcluded")) != excluded)
            continue;
        long long cid = (long long)json_integer_value(id);
        cg_buf_printf(&ids, "%s(%lld)", ids.len ? ", " : "", cid);
        int d = json_is_true(json_object_get(it, "includeDescendants"));
        if (d)
            cg_buf_printf(&desc, "%s%lld", desc.len ? ", " : "", cid);
        if (json_is_true(json_object_get(it, "includeMapped")))
            cg_buf_printf(&mapped, "%s%lld", mapped.len ? ", " : "", cid);
        n++;
    }
    if (n) {
        P("SELECT v.concept_id FROM (VALUES %.*s) v(concept_id)", (int)ids.len, ids.data);
        if (desc.len)
            P("\n    UNION SELECT ca.descendant_concept_id FROM %sconcept_ancestor ca"
              " WHERE ca.ancestor_concept_id IN (%.*s)"
              " AND NOT EXISTS (SELECT 1 FROM %sconcept dc WHERE dc.concept_id ="
              " ca.descendant_concept_id AND dc.invalid_reason IS NOT NULL)",
              c->cdm, (int)desc.len, desc.data, c->cdm);
        if (mapped.len) {
            /* source concepts that map to the item (and to its descendants when asked) */
            P("\n    UNION SELECT cr.concept_id_1 FROM %sconcept_relationship cr"
              " WHERE cr.relationship_id = 'Maps to' AND cr.invalid_reason IS NULL"
              " AND (cr.concept_id_2 IN (%.*s)",
              c->cdm, (int)mapped.len, mapped.data);
            if (desc.len)
                P(" OR cr.concept_id_2 IN (SELECT ca.descendant_concept_id FROM"
                  " %sconcept_ancestor ca WHERE ca.ancestor_concept_id IN (%.*s))",
                  c->cdm, (int)desc.len, desc.data);
            S(")");
        }
    }
    cg_buf_free(&ids);
    cg_buf_free(&desc);
    cg_buf_free(&mapped);
    return n;
}

void cg_circe__concept_sets(cc_t *c, const json_t *root)
{
    const json_t *sets = cg_circe__want_array(c, root, "ConceptSets", "ConceptSets");
    S("codesets (codeset_id, concept_id) AS (\n");
    int any = 0;
    size_t i;
    const json_t *cs;
    if (sets)
        json_array_foreach((json_t *)sets, i, cs)
        {
            if (!json_is_object(cs)) {
                cg_circe__err_at(c, cs, NULL, NULL,
                                 "ConceptSets: each concept set must be an object");
                continue;
            }
            static const char *const m_set[] = {"id", "name", "expression", NULL};
            cg_circe__check_members(c, cs, "concept set", m_set);
            const json_t *idv = json_object_get(cs, "id");
            if (!json_is_integer(idv)) {
                cg_circe__err_at(c, cs, NULL, NULL, "concept set: 'id' (an integer) is required");
                continue;
            }
            long long id = (long long)json_integer_value(idv);
            if (codeset_known(c, id))
                cg_circe__err_at(c, idv, cs, "id", "concept set: id %lld is used twice", id);
            else if (c->n_codesets < (int)(sizeof c->codeset_ids / sizeof c->codeset_ids[0]))
                c->codeset_ids[c->n_codesets++] = id;
            const json_t *ex = cg_circe__want_object(c, cs, "expression", "concept set");
            if (!ex)
                continue;
            static const char *const m_ex[] = {"items", NULL};
            cg_circe__check_members(c, ex, "concept set expression", m_ex);
            const json_t *items = cg_circe__want_array(c, ex, "items", "concept set expression");
            if (!items)
                continue;
            size_t k;
            const json_t *it;
            json_array_foreach((json_t *)items, k, it)
            {
                static const char *const m_item[] = {"concept", "includeDescendants",
                                                     "includeMapped", "isExcluded", NULL};
                if (!json_is_object(it)) {
                    cg_circe__err_at(c, it, NULL, NULL, "concept set item must be an object");
                    continue;
                }
                cg_circe__check_members(c, it, "concept set item", m_item);
                cg_circe__want_bool(c, it, "includeDescendants", "concept set item", 0);
                cg_circe__want_bool(c, it, "includeMapped", "concept set item", 0);
                cg_circe__want_bool(c, it, "isExcluded", "concept set item", 0);
                const json_t *con = cg_circe__want_object(c, it, "concept", "concept set item");
                if (!con || !json_is_integer(json_object_get(con, "CONCEPT_ID")))
                    cg_circe__err_at(c, con ? con : it, NULL, NULL,
                                     "concept set item: 'concept' needs an integer CONCEPT_ID");
            }
            /* included minus excluded */
            S(any ? "  UNION ALL\n" : "");
            P("  SELECT %lld, I.concept_id FROM (", id);
            size_t mark = c->b->len;
            if (!codeset_part(c, items, 0)) {
                c->b->len = mark;
                S("SELECT NULL::bigint AS concept_id WHERE false");
            }
            S(") I");
            cg_buf_t probe;
            cg_buf_init(&probe);
            cg_buf_t *save = c->b;
            c->b = &probe;
            int n_ex = codeset_part(c, items, 1);
            c->b = save;
            if (n_ex)
                P("\n    WHERE I.concept_id NOT IN (%.*s)", (int)probe.len, probe.data);
            cg_buf_free(&probe);
            S("\n");
            any = 1;
        }
    if (!any)
        S("  SELECT NULL::bigint, NULL::bigint WHERE false\n");
    S(")");
}

int cg_circe__codeset_ref(cc_t *c, const json_t *obj, const char *key, const char *ctx,
                          long long *out)
{
    const json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_integer(v)) {
        cg_circe__err_at(c, v, obj, key, "%s: '%s' must be a concept set id", ctx, key);
        return 0;
    }
    *out = (long long)json_integer_value(v);
    if (!codeset_known(c, *out)) {
        cg_circe__err_at(c, v, obj, key,
                         "%s: '%s' names concept set %lld, which ConceptSets does not define", ctx,
                         key, *out);
        return 0;
    }
    return 1;
}
