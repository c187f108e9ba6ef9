/* circe_clauses.c - SQL pieces of a Circe expression: the " AND ..." clauses of its ranges,
 * text filters and concept lists, and schema-qualified tables (restricted to some persons when
 * the caller asks). They check the value objects they are given, as they write them.
 */
#include <stdio.h>
#include <string.h>

#include "circe_impl.h"

/* A table of the person's own rows, schema-qualified; in the restricted form (c->only) only the
 * rows of those persons, through the person_id index, so no step reads the whole table. */
const char *cg_circe__own(const cc_t *c, const char *table, char *buf, size_t size)
{
    if (c->only)
        snprintf(buf, size,
                 "(SELECT * FROM %s%s WHERE person_id = ANY (ARRAY(SELECT person_id FROM %s)))",
                 c->cdm, table, c->only);
    else
        snprintf(buf, size, "%s%s", c->cdm, table);
    return buf;
}

void cg_circe__quote_ident(char *out, size_t size, const char *name)
{
    size_t o = 0;
    if (!name || !*name) {
        out[0] = '\0';
        return;
    }
    out[o++] = '"';
    for (const char *p = name; *p && o + 4 < size; p++) {
        if (*p == '"')
            out[o++] = '"';
        out[o++] = *p;
    }
    out[o++] = '"';
    out[o++] = '.';
    out[o] = '\0';
}

/* A Circe range ({Value, Op, Extent}) on expr: dates (is_date) or numbers. */
void cg_circe__range_clause(cc_t *c, const json_t *r, const char *ctx, const char *expr,
                            int is_date)
{
    static const char *const members[] = {"Value", "Op", "Extent", NULL};
    cg_circe__check_members(c, r, ctx, members);
    const char *op = cg_circe__want_string(c, r, "Op", ctx);
    const json_t *v = json_object_get(r, "Value"), *x = json_object_get(r, "Extent");
    char val[64] = "", ext[64] = "";
    for (int i = 0; i < 2; i++) {
        const json_t *j = i ? x : v;
        char *dst = i ? ext : val;
        if (!j || json_is_null(j))
            continue;
        if (is_date) {
            if (!json_is_string(j) || !cg_circe__valid_date(json_string_value(j))) {
                cg_circe__err_at(c, j, r, i ? "Extent" : "Value",
                                 "%s: '%s' must be a date YYYY-MM-DD", ctx, i ? "Extent" : "Value");
                continue;
            }
            snprintf(dst, 64, "DATE '%s'", json_string_value(j));
        } else if (json_is_integer(j)) {
            snprintf(dst, 64, "%lld", (long long)json_integer_value(j));
        } else if (json_is_real(j)) {
            snprintf(dst, 64, "%.17g", json_real_value(j));
        } else {
            cg_circe__err_at(c, j, r, i ? "Extent" : "Value", "%s: '%s' must be a number", ctx,
                             i ? "Extent" : "Value");
        }
    }
    if (!op) {
        cg_circe__err_at(c, r, NULL, NULL, "%s: 'Op' is required", ctx);
        return;
    }
    if (!*val) {
        cg_circe__err_at(c, r, NULL, NULL, "%s: 'Value' is required", ctx);
        return;
    }
    static const struct {
        const char *op, *sql;
    } ops[] = {{"lt", "<"}, {"lte", "<="}, {"eq", "="}, {"gt", ">"}, {"gte", ">="}, {"neq", "<>"}};
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
        if (!strcmp(op, ops[i].op)) {
            P(" AND %s %s %s", expr, ops[i].sql, val);
            return;
        }
    if (!strcmp(op, "bt") || !strcmp(op, "!bt")) {
        if (!*ext) {
            cg_circe__err_at(c, r, NULL, NULL, "%s: 'Extent' is required with Op '%s'", ctx, op);
            return;
        }
        P(" AND %s(%s >= %s AND %s <= %s)", op[0] == '!' ? "NOT " : "", expr, val, expr, ext);
        return;
    }
    cg_circe__err_at(c, json_object_get(r, "Op"), r, "Op",
                     "%s: Op '%s' is not one of lt, lte, eq, neq, gt, gte, bt, !bt", ctx, op);
}

/* A Circe text filter ({Text, Op}) on expr, as Circe writes it: a LIKE. */
void cg_circe__text_clause(cc_t *c, const json_t *t, const char *ctx, const char *expr)
{
    static const char *const members[] = {"Text", "Op", NULL};
    cg_circe__check_members(c, t, ctx, members);
    const char *text = cg_circe__want_string(c, t, "Text", ctx),
               *op = cg_circe__want_string(c, t, "Op", ctx);
    if (!text) {
        cg_circe__err_at(c, t, NULL, NULL, "%s: 'Text' is required", ctx);
        return;
    }
    if (!op)
        op = "contains";
    int neg = op[0] == '!';
    const char *o = op + neg;
    int starts = !strcmp(o, "startsWith"), contains = !strcmp(o, "contains"),
        ends = !strcmp(o, "endsWith");
    if (!starts && !contains && !ends) {
        cg_circe__err_at(
            c, json_object_get(t, "Op"), t, "Op",
            "%s: Op '%s' is not startsWith, contains or endsWith (or one of them after !)", ctx,
            op);
        return;
    }
    P(" AND %s %sLIKE '%s", expr, neg ? "NOT " : "", ends || contains ? "%" : "");
    for (const char *p = text; *p; p++) {
        if (*p == '\'')
            S("'");
        cg_buf_putc(c->b, *p);
    }
    P("%s'", starts || contains ? "%" : "");
}

/* A Circe concept list ([{CONCEPT_ID: n, ...}]) on expr: "AND expr [NOT] IN (...)". */
void cg_circe__concept_list_clause(cc_t *c, const json_t *list, const char *ctx, const char *expr,
                                   int exclude)
{
    if (!json_is_array(list) || json_array_size(list) == 0)
        return;
    P(" AND %s %sIN (", expr, exclude ? "NOT " : "");
    size_t i;
    const json_t *it;
    json_array_foreach((json_t *)list, i, it)
    {
        const json_t *id = json_is_object(it) ? json_object_get(it, "CONCEPT_ID") : NULL;
        if (!json_is_integer(id)) {
            cg_circe__err_at(c, it, NULL, NULL, "%s: each concept needs an integer CONCEPT_ID",
                             ctx);
            continue;
        }
        P("%s%lld", i ? ", " : "", (long long)json_integer_value(id));
    }
    S(")");
}
