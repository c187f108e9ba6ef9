/* circe.c - OHDSI Circe cohort expressions: loading (the supported subset, located refusals)
 * and compiling to PostgreSQL SQL over an OMOP CDM v5.4 schema (see include/cg_circe.h).
 *
 * One walk of the JSON tree does both: it checks every object's members against what the subset
 * supports and writes the SQL. Loading runs it once to collect the errors; compiling runs it
 * again on a tree known to be good, with the caller's schemas and cohort id.
 */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "cg_circe.h"
#include "cg_jsonpos.h"

struct cg_circe {
    char *file;
    char *text;
    json_t *root;
    const json_t *expr; /* root, or its "expression" under a header */
    cg_jsonpos_t *jp;
    cg_circe_header_t header;
};

typedef struct cc {
    const char *file;
    const cg_jsonpos_t *jp;
    cg_jsonpos_errors_t e;
    cg_buf_t *b;
    char cdm[160]; /* "schema". or empty */
    char res[160];
    const char *person; /* diagnose this person instead of writing `cohort` */
    const char *into;   /* insert into this table instead of replacing rows of `cohort` */
    const char *only;   /* evaluate only the persons (person_id) of this table */
    cg_buf_t steps;     /* the diagnosis's SELECTs, one per step */
    int n_codesets;
    long long codeset_ids[256];
} cc_t;

/* A table of the person's own rows, schema-qualified; in the restricted form (c->only) only the
 * rows of those persons, through the person_id index, so no step reads the whole table. */
static const char *own(const cc_t *c, const char *table, char *buf, size_t size)
{
    if (c->only)
        snprintf(buf, size,
                 "(SELECT * FROM %s%s WHERE person_id = ANY (ARRAY(SELECT person_id FROM %s)))",
                 c->cdm, table, c->only);
    else
        snprintf(buf, size, "%s%s", c->cdm, table);
    return buf;
}

static void err_at(cc_t *c, const json_t *at, const json_t *obj, const char *key, const char *fmt,
                   ...) __attribute__((format(printf, 5, 6)));

static void err_at(cc_t *c, const json_t *at, const json_t *obj, const char *key, const char *fmt,
                   ...)
{
    va_list ap;
    va_start(ap, fmt);
    cg_jsonpos_error(&c->e, c->jp, CG_ERR_CONFIG, c->file, at, obj, key, "", fmt, ap);
    va_end(ap);
}

#define P(...) cg_buf_printf(c->b, __VA_ARGS__)
#define S(s)   cg_buf_puts(c->b, s)

/* ---- checking members ---- */

/* A member that is present but says nothing (null, false, [], {}) is as good as absent. */
static int empty_value(const json_t *v)
{
    return !v || json_is_null(v) || json_is_false(v) ||
           (json_is_array(v) && json_array_size(v) == 0) ||
           (json_is_object(v) && json_object_size(v) == 0);
}

/* Every member of obj must be named in allowed (NULL-terminated) or be empty; the others are
 * refused, naming the element and where it is (ctx). */
static void check_members(cc_t *c, const json_t *obj, const char *ctx, const char *const *allowed)
{
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)obj, k, v)
    {
        int ok = 0;
        for (const char *const *a = allowed; *a && !ok; a++)
            ok = !strcmp(*a, k);
        if (!ok && !empty_value(v))
            err_at(c, v, obj, k,
                   "%s: element '%s' is not supported by cohortgate (see "
                   "specs/cohorts/CIRCE.md)",
                   ctx, k);
    }
}

static const json_t *want_object(cc_t *c, const json_t *obj, const char *key, const char *ctx)
{
    const json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v))
        return NULL;
    if (!json_is_object(v)) {
        err_at(c, v, obj, key, "%s: '%s' must be an object", ctx, key);
        return NULL;
    }
    return v;
}

static const json_t *want_array(cc_t *c, const json_t *obj, const char *key, const char *ctx)
{
    const json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v))
        return NULL;
    if (!json_is_array(v)) {
        err_at(c, v, obj, key, "%s: '%s' must be an array", ctx, key);
        return NULL;
    }
    return v;
}

/* An integer member (a Java int in Circe: 32 bits); def when absent or null. */
static long long want_int(cc_t *c, const json_t *obj, const char *key, const char *ctx,
                          long long def)
{
    const json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v))
        return def;
    long long x = 0;
    int ok = 0;
    if (json_is_integer(v)) {
        x = (long long)json_integer_value(v);
        ok = 1;
    } else if (json_is_real(v)) {
        double d = json_real_value(v);
        if (d > -2147483649.0 && d < 2147483648.0 && d == (double)(long long)d) {
            x = (long long)d;
            ok = 1;
        }
    }
    if (ok && x >= -2147483648LL && x <= 2147483647LL)
        return x;
    err_at(c, v, obj, key, "%s: '%s' must be an integer (32 bits)", ctx, key);
    return def;
}

static int want_bool(cc_t *c, const json_t *obj, const char *key, const char *ctx, int def)
{
    const json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v))
        return def;
    if (json_is_boolean(v))
        return json_is_true(v);
    err_at(c, v, obj, key, "%s: '%s' must be true or false", ctx, key);
    return def;
}

static const char *want_string(cc_t *c, const json_t *obj, const char *key, const char *ctx)
{
    const json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v))
        return NULL;
    if (!json_is_string(v)) {
        err_at(c, v, obj, key, "%s: '%s' must be a string", ctx, key);
        return NULL;
    }
    return json_string_value(v);
}

/* ---- SQL pieces ---- */

static void quote_ident(char *out, size_t size, const char *name)
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

static int valid_date(const char *s)
{
    if (!s || strlen(s) != 10 || s[4] != '-' || s[7] != '-')
        return 0;
    for (int i = 0; i < 10; i++)
        if (i != 4 && i != 7 && !isdigit((unsigned char)s[i]))
            return 0;
    int m = (s[5] - '0') * 10 + (s[6] - '0'), d = (s[8] - '0') * 10 + (s[9] - '0');
    return m >= 1 && m <= 12 && d >= 1 && d <= 31;
}

/* A Circe range ({Value, Op, Extent}) on expr: dates (is_date) or numbers. */
static void range_clause(cc_t *c, const json_t *r, const char *ctx, const char *expr, int is_date)
{
    static const char *const members[] = {"Value", "Op", "Extent", NULL};
    check_members(c, r, ctx, members);
    const char *op = want_string(c, r, "Op", ctx);
    const json_t *v = json_object_get(r, "Value"), *x = json_object_get(r, "Extent");
    char val[64] = "", ext[64] = "";
    for (int i = 0; i < 2; i++) {
        const json_t *j = i ? x : v;
        char *dst = i ? ext : val;
        if (!j || json_is_null(j))
            continue;
        if (is_date) {
            if (!json_is_string(j) || !valid_date(json_string_value(j))) {
                err_at(c, j, r, i ? "Extent" : "Value", "%s: '%s' must be a date YYYY-MM-DD", ctx,
                       i ? "Extent" : "Value");
                continue;
            }
            snprintf(dst, 64, "DATE '%s'", json_string_value(j));
        } else if (json_is_integer(j)) {
            snprintf(dst, 64, "%lld", (long long)json_integer_value(j));
        } else if (json_is_real(j)) {
            snprintf(dst, 64, "%.17g", json_real_value(j));
        } else {
            err_at(c, j, r, i ? "Extent" : "Value", "%s: '%s' must be a number", ctx,
                   i ? "Extent" : "Value");
        }
    }
    if (!op) {
        err_at(c, r, NULL, NULL, "%s: 'Op' is required", ctx);
        return;
    }
    if (!*val) {
        err_at(c, r, NULL, NULL, "%s: 'Value' is required", ctx);
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
            err_at(c, r, NULL, NULL, "%s: 'Extent' is required with Op '%s'", ctx, op);
            return;
        }
        P(" AND %s(%s >= %s AND %s <= %s)", op[0] == '!' ? "NOT " : "", expr, val, expr, ext);
        return;
    }
    err_at(c, json_object_get(r, "Op"), r, "Op",
           "%s: Op '%s' is not one of lt, lte, eq, neq, gt, gte, bt, !bt", ctx, op);
}

/* A Circe text filter ({Text, Op}) on expr, as Circe writes it: a LIKE. */
static void text_clause(cc_t *c, const json_t *t, const char *ctx, const char *expr)
{
    static const char *const members[] = {"Text", "Op", NULL};
    check_members(c, t, ctx, members);
    const char *text = want_string(c, t, "Text", ctx), *op = want_string(c, t, "Op", ctx);
    if (!text) {
        err_at(c, t, NULL, NULL, "%s: 'Text' is required", ctx);
        return;
    }
    if (!op)
        op = "contains";
    int neg = op[0] == '!';
    const char *o = op + neg;
    int starts = !strcmp(o, "startsWith"), contains = !strcmp(o, "contains"),
        ends = !strcmp(o, "endsWith");
    if (!starts && !contains && !ends) {
        err_at(c, json_object_get(t, "Op"), t, "Op",
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
static void concept_list_clause(cc_t *c, const json_t *list, const char *ctx, const char *expr,
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
            err_at(c, it, NULL, NULL, "%s: each concept needs an integer CONCEPT_ID", ctx);
            continue;
        }
        P("%s%lld", i ? ", " : "", (long long)json_integer_value(id));
    }
    S(")");
}

static int codeset_known(cc_t *c, long long id)
{
    for (int i = 0; i < c->n_codesets; i++)
        if (c->codeset_ids[i] == id)
            return 1;
    return 0;
}

/* ---- concept sets ---- */

/* The concepts of one item list (items with their flags) into ids: "SELECT ... UNION ..." for
 * the items where isExcluded == excluded. Returns how many items there were. */
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

static void concept_sets(cc_t *c, const json_t *root)
{
    const json_t *sets = want_array(c, root, "ConceptSets", "ConceptSets");
    S("codesets (codeset_id, concept_id) AS (\n");
    int any = 0;
    size_t i;
    const json_t *cs;
    if (sets)
        json_array_foreach((json_t *)sets, i, cs)
        {
            if (!json_is_object(cs)) {
                err_at(c, cs, NULL, NULL, "ConceptSets: each concept set must be an object");
                continue;
            }
            static const char *const m_set[] = {"id", "name", "expression", NULL};
            check_members(c, cs, "concept set", m_set);
            const json_t *idv = json_object_get(cs, "id");
            if (!json_is_integer(idv)) {
                err_at(c, cs, NULL, NULL, "concept set: 'id' (an integer) is required");
                continue;
            }
            long long id = (long long)json_integer_value(idv);
            if (codeset_known(c, id))
                err_at(c, idv, cs, "id", "concept set: id %lld is used twice", id);
            else if (c->n_codesets < (int)(sizeof c->codeset_ids / sizeof c->codeset_ids[0]))
                c->codeset_ids[c->n_codesets++] = id;
            const json_t *ex = want_object(c, cs, "expression", "concept set");
            if (!ex)
                continue;
            static const char *const m_ex[] = {"items", NULL};
            check_members(c, ex, "concept set expression", m_ex);
            const json_t *items = want_array(c, ex, "items", "concept set expression");
            if (!items)
                continue;
            size_t k;
            const json_t *it;
            json_array_foreach((json_t *)items, k, it)
            {
                static const char *const m_item[] = {"concept", "includeDescendants",
                                                     "includeMapped", "isExcluded", NULL};
                if (!json_is_object(it)) {
                    err_at(c, it, NULL, NULL, "concept set item must be an object");
                    continue;
                }
                check_members(c, it, "concept set item", m_item);
                want_bool(c, it, "includeDescendants", "concept set item", 0);
                want_bool(c, it, "includeMapped", "concept set item", 0);
                want_bool(c, it, "isExcluded", "concept set item", 0);
                const json_t *con = want_object(c, it, "concept", "concept set item");
                if (!con || !json_is_integer(json_object_get(con, "CONCEPT_ID")))
                    err_at(c, con ? con : it, NULL, NULL,
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

/* ---- criteria ---- */

typedef struct kind {
    const char *name, *table, *id, *concept, *start, *end, *visit, *source_key, *source_col,
        *type_key, *type_col;
    const char *const *extra; /* further members this kind supports */
} kind_t;

static const char *const x_cond[] = {"ConditionStatus", NULL};
static const char *const x_meas[] = {"ValueAsNumber", "ValueAsConcept", "Unit", "RangeLow",
                                     "RangeHigh",     "Abnormal",       NULL};
static const char *const x_obs[] = {"ValueAsNumber", "ValueAsConcept", "Unit", NULL};
static const char *const x_none[] = {NULL};

static const kind_t kinds[] = {
    {"ConditionOccurrence", "condition_occurrence", "condition_occurrence_id",
     "condition_concept_id", "condition_start_date",
     "COALESCE(C.condition_end_date, C.condition_start_date + 1)", "C.visit_occurrence_id",
     "ConditionSourceConcept", "condition_source_concept_id", "ConditionType",
     "condition_type_concept_id", x_cond},
    {"DrugExposure", "drug_exposure", "drug_exposure_id", "drug_concept_id",
     "drug_exposure_start_date",
     "COALESCE(C.drug_exposure_end_date, C.drug_exposure_start_date + C.days_supply, "
     "C.drug_exposure_start_date + 1)",
     "C.visit_occurrence_id", "DrugSourceConcept", "drug_source_concept_id", "DrugType",
     "drug_type_concept_id", x_none},
    {"Measurement", "measurement", "measurement_id", "measurement_concept_id", "measurement_date",
     "C.measurement_date + 1", "C.visit_occurrence_id", "MeasurementSourceConcept",
     "measurement_source_concept_id", "MeasurementType", "measurement_type_concept_id", x_meas},
    {"Observation", "observation", "observation_id", "observation_concept_id", "observation_date",
     "C.observation_date + 1", "C.visit_occurrence_id", "ObservationSourceConcept",
     "observation_source_concept_id", "ObservationType", "observation_type_concept_id", x_obs},
    {"ProcedureOccurrence", "procedure_occurrence", "procedure_occurrence_id",
     "procedure_concept_id", "procedure_date", "C.procedure_date + 1", "C.visit_occurrence_id",
     "ProcedureSourceConcept", "procedure_source_concept_id", "ProcedureType",
     "procedure_type_concept_id", x_none},
    {"VisitOccurrence", "visit_occurrence", "visit_occurrence_id", "visit_concept_id",
     "visit_start_date", "C.visit_end_date", "C.visit_occurrence_id", "VisitSourceConcept",
     "visit_source_concept_id", "VisitType", "visit_type_concept_id", x_none},
    {"Death", "death", "person_id", "cause_concept_id", "death_date", "C.death_date + 1",
     "CAST(NULL AS bigint)", "DeathSourceConcept", "cause_source_concept_id", "DeathType",
     "death_type_concept_id", x_none},
    {"DeviceExposure", "device_exposure", "device_exposure_id", "device_concept_id",
     "device_exposure_start_date",
     "COALESCE(C.device_exposure_end_date, C.device_exposure_start_date + 1)",
     "C.visit_occurrence_id", "DeviceSourceConcept", "device_source_concept_id", "DeviceType",
     "device_type_concept_id", x_none},
    {"Specimen", "specimen", "specimen_id", "specimen_concept_id", "specimen_date",
     "C.specimen_date + 1", "CAST(NULL AS bigint)", "SpecimenSourceConcept",
     "specimen_source_concept_id", "SpecimenType", "specimen_type_concept_id", x_none},
    {"ConditionEra", "condition_era", "condition_era_id", "condition_concept_id",
     "condition_era_start_date", "C.condition_era_end_date", "CAST(NULL AS bigint)", NULL, NULL,
     NULL, NULL, x_none},
    {"DrugEra", "drug_era", "drug_era_id", "drug_concept_id", "drug_era_start_date",
     "C.drug_era_end_date", "CAST(NULL AS bigint)", NULL, NULL, NULL, NULL, x_none},
    /* no concept set: its concept is the period's type */
    {"ObservationPeriod", "observation_period", "observation_period_id", "period_type_concept_id",
     "observation_period_start_date", "C.observation_period_end_date", "CAST(NULL AS bigint)", NULL,
     NULL, "PeriodType", "period_type_concept_id", x_none},
};

/* Further attributes of one criterion: a number range, a date range or a concept list on an
 * expression of its row (C) and, for ages, its person (PE). */
enum { A_NUM, A_DATE, A_CONCEPTS, A_TEXT };
enum { J_PERSON = 1, J_VISIT, J_PROVIDER, J_CARE_SITE }; /* the table an attribute needs */
typedef struct attr {
    const char *kind, *key, *expr;
    int type, person; /* person: one of J_* or 0 */
} attr_t;

static const attr_t attrs[] = {
    {"DrugExposure", "DaysSupply", "C.days_supply", A_NUM, 0},
    {"DrugExposure", "Quantity", "C.quantity", A_NUM, 0},
    {"DrugExposure", "Refills", "C.refills", A_NUM, 0},
    {"DrugExposure", "RouteConcept", "C.route_concept_id", A_CONCEPTS, 0},
    {"Measurement", "Operator", "C.operator_concept_id", A_CONCEPTS, 0},
    {"Observation", "Qualifier", "C.qualifier_concept_id", A_CONCEPTS, 0},
    {"ProcedureOccurrence", "Modifier", "C.modifier_concept_id", A_CONCEPTS, 0},
    {"ProcedureOccurrence", "Quantity", "C.quantity", A_NUM, 0},
    {"DeviceExposure", "Quantity", "C.quantity", A_NUM, 0},
    {"Specimen", "Quantity", "C.quantity", A_NUM, 0},
    {"Specimen", "Unit", "C.unit_concept_id", A_CONCEPTS, 0},
    {"Specimen", "AnatomicSite", "C.anatomic_site_concept_id", A_CONCEPTS, 0},
    {"Specimen", "DiseaseStatus", "C.disease_status_concept_id", A_CONCEPTS, 0},
    {"VisitOccurrence", "VisitLength", "(C.visit_end_date - C.visit_start_date)", A_NUM, 0},
    {"ConditionEra", "EraStartDate", "C.condition_era_start_date", A_DATE, 0},
    {"ConditionEra", "EraEndDate", "C.condition_era_end_date", A_DATE, 0},
    {"ConditionEra", "OccurrenceCount", "C.condition_occurrence_count", A_NUM, 0},
    {"ConditionEra", "EraLength", "(C.condition_era_end_date - C.condition_era_start_date)", A_NUM,
     0},
    {"ConditionEra", "AgeAtStart",
     "(EXTRACT(YEAR FROM C.condition_era_start_date) - PE.year_of_birth)", A_NUM, J_PERSON},
    {"ConditionEra", "AgeAtEnd", "(EXTRACT(YEAR FROM C.condition_era_end_date) - PE.year_of_birth)",
     A_NUM, J_PERSON},
    {"DrugEra", "EraStartDate", "C.drug_era_start_date", A_DATE, 0},
    {"DrugEra", "EraEndDate", "C.drug_era_end_date", A_DATE, 0},
    {"DrugEra", "OccurrenceCount", "C.drug_exposure_count", A_NUM, 0},
    {"DrugEra", "GapDays", "C.gap_days", A_NUM, 0},
    {"DrugEra", "EraLength", "(C.drug_era_end_date - C.drug_era_start_date)", A_NUM, 0},
    {"DrugEra", "AgeAtStart", "(EXTRACT(YEAR FROM C.drug_era_start_date) - PE.year_of_birth)",
     A_NUM, J_PERSON},
    {"ConditionOccurrence", "StopReason", "C.stop_reason", A_TEXT, 0},
    {"DrugExposure", "StopReason", "C.stop_reason", A_TEXT, 0},
    {"DrugExposure", "LotNumber", "C.lot_number", A_TEXT, 0},
    {"Observation", "ValueAsString", "C.value_as_string", A_TEXT, 0},
    {"DeviceExposure", "UniqueDeviceId", "C.unique_device_id", A_TEXT, 0},
    {"ConditionOccurrence", "VisitType", "V.visit_concept_id", A_CONCEPTS, J_VISIT},
    {"DrugExposure", "VisitType", "V.visit_concept_id", A_CONCEPTS, J_VISIT},
    {"Measurement", "VisitType", "V.visit_concept_id", A_CONCEPTS, J_VISIT},
    {"Observation", "VisitType", "V.visit_concept_id", A_CONCEPTS, J_VISIT},
    {"ProcedureOccurrence", "VisitType", "V.visit_concept_id", A_CONCEPTS, J_VISIT},
    {"DeviceExposure", "VisitType", "V.visit_concept_id", A_CONCEPTS, J_VISIT},
    {"ConditionOccurrence", "ProviderSpecialty", "PR.specialty_concept_id", A_CONCEPTS, J_PROVIDER},
    {"DrugExposure", "ProviderSpecialty", "PR.specialty_concept_id", A_CONCEPTS, J_PROVIDER},
    {"Measurement", "ProviderSpecialty", "PR.specialty_concept_id", A_CONCEPTS, J_PROVIDER},
    {"Observation", "ProviderSpecialty", "PR.specialty_concept_id", A_CONCEPTS, J_PROVIDER},
    {"ProcedureOccurrence", "ProviderSpecialty", "PR.specialty_concept_id", A_CONCEPTS, J_PROVIDER},
    {"DeviceExposure", "ProviderSpecialty", "PR.specialty_concept_id", A_CONCEPTS, J_PROVIDER},
    {"VisitOccurrence", "ProviderSpecialty", "PR.specialty_concept_id", A_CONCEPTS, J_PROVIDER},
    {"ObservationPeriod", "PeriodStartDate", "C.observation_period_start_date", A_DATE, 0},
    {"ObservationPeriod", "PeriodEndDate", "C.observation_period_end_date", A_DATE, 0},
    {"ObservationPeriod", "PeriodLength",
     "(C.observation_period_end_date - C.observation_period_start_date)", A_NUM, 0},
    {"ObservationPeriod", "AgeAtStart",
     "(EXTRACT(YEAR FROM C.observation_period_start_date) - PE.year_of_birth)", A_NUM, J_PERSON},
    {"ObservationPeriod", "AgeAtEnd",
     "(EXTRACT(YEAR FROM C.observation_period_end_date) - PE.year_of_birth)", A_NUM, J_PERSON},
    {"Measurement", "RangeLowRatio", "(C.value_as_number / NULLIF(C.range_low, 0))", A_NUM, 0},
    {"Measurement", "RangeHighRatio", "(C.value_as_number / NULLIF(C.range_high, 0))", A_NUM, 0},
    {"Specimen", "SourceId", "C.specimen_source_id", A_TEXT, 0},
    {"VisitOccurrence", "PlaceOfService", "CSI.place_of_service_concept_id", A_CONCEPTS,
     J_CARE_SITE},
    {"DrugEra", "AgeAtEnd", "(EXTRACT(YEAR FROM C.drug_era_end_date) - PE.year_of_birth)", A_NUM,
     1},
};

static int codeset_ref(cc_t *c, const json_t *obj, const char *key, const char *ctx, long long *out)
{
    const json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_integer(v)) {
        err_at(c, v, obj, key, "%s: '%s' must be a concept set id", ctx, key);
        return 0;
    }
    *out = (long long)json_integer_value(v);
    if (!codeset_known(c, *out)) {
        err_at(c, v, obj, key, "%s: '%s' names concept set %lld, which ConceptSets does not define",
               ctx, key, *out);
        return 0;
    }
    return 1;
}

/* One criterion ({"ConditionOccurrence": {...}}) as a query with the columns person_id,
 * event_id, start_date, end_date, visit_occurrence_id, sort_date, domain_concept_id. */
static void group_query(cc_t *c, const json_t *g, const char *events, int index_id, const char *ctx,
                        int depth);
static int group_empty(const json_t *g);

static void criteria_base(cc_t *c, const json_t *crit, const char *ctx)
{
    if (!json_is_object(crit) || json_object_size(crit) != 1) {
        err_at(c, crit, NULL, NULL, "%s: a criterion is an object with one member, its domain",
               ctx);
        S("SELECT NULL");
        return;
    }
    const char *name = json_object_iter_key(json_object_iter((json_t *)crit));
    const json_t *a = json_object_get(crit, name);
    const kind_t *k = NULL;
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        if (!strcmp(kinds[i].name, name))
            k = &kinds[i];
    if (!k) {
        err_at(c, a, crit, name,
               "%s: criterion '%s' is not supported by cohortgate (see "
               "specs/cohorts/CIRCE.md)",
               ctx, name);
        S("SELECT NULL");
        return;
    }
    if (!json_is_object(a)) {
        err_at(c, a, crit, name, "%s: '%s' must be an object", ctx, name);
        S("SELECT NULL");
        return;
    }
    char kctx[96];
    snprintf(kctx, sizeof kctx, "%s %s", ctx, name);
    const char *allowed[48];
    size_t n = 0;
    int is_op = !strcmp(k->name, "ObservationPeriod");
    if (!is_op)
        allowed[n++] = "CodesetId";
    else
        allowed[n++] = "UserDefinedPeriod";
    allowed[n++] = "First";
    allowed[n++] = "OccurrenceStartDate";
    allowed[n++] = "OccurrenceEndDate";
    allowed[n++] = "Age";
    allowed[n++] = "Gender";
    allowed[n++] = "CorrelatedCriteria";
    char type_ex[64] = "";
    if (k->source_key)
        allowed[n++] = k->source_key;
    if (k->type_key) {
        allowed[n++] = k->type_key;
        snprintf(type_ex, sizeof type_ex, "%sExclude", k->type_key);
        allowed[n++] = type_ex;
    }
    for (const char *const *x = k->extra; *x; x++)
        allowed[n++] = *x;
    for (size_t i = 0; i < sizeof attrs / sizeof attrs[0]; i++)
        if (!strcmp(attrs[i].kind, k->name) && n + 1 < sizeof allowed / sizeof allowed[0])
            allowed[n++] = attrs[i].key;
    allowed[n] = NULL;
    check_members(c, a, kctx, allowed);

    long long cs = 0, src = 0;
    int has_cs = codeset_ref(c, a, "CodesetId", kctx, &cs);
    int has_src = k->source_key && codeset_ref(c, a, k->source_key, kctx, &src);
    int first = want_bool(c, a, "First", kctx, 0);
    const json_t *age = want_object(c, a, "Age", kctx);
    const json_t *gender = want_array(c, a, "Gender", kctx);
    int need_person = age || (gender && json_array_size(gender));
    int need_join[5] = {0, 0, 0, 0, 0};
    for (size_t i = 0; i < sizeof attrs / sizeof attrs[0]; i++)
        if (attrs[i].person && !strcmp(attrs[i].kind, k->name) &&
            !empty_value(json_object_get(a, attrs[i].key)))
            need_join[attrs[i].person] = 1;
    need_person |= need_join[J_PERSON];

    /* an observation period's event may be a user-defined period inside it */
    char start_expr[96], end_expr[256], udp_where[400] = "";
    snprintf(start_expr, sizeof start_expr, "C.%s", k->start);
    snprintf(end_expr, sizeof end_expr, "%s", k->end);
    const json_t *udp = is_op ? want_object(c, a, "UserDefinedPeriod", kctx) : NULL;
    if (udp) {
        static const char *const m_udp[] = {"StartDate", "EndDate", NULL};
        check_members(c, udp, kctx, m_udp);
        const char *sd = want_string(c, udp, "StartDate", kctx);
        const char *ed = want_string(c, udp, "EndDate", kctx);
        size_t w = 0;
        if (sd && valid_date(sd)) {
            snprintf(start_expr, sizeof start_expr, "DATE '%s'", sd);
            w += (size_t)snprintf(udp_where + w, sizeof udp_where - w,
                                  " AND C.observation_period_start_date <= DATE '%s' AND "
                                  "C.observation_period_end_date >= DATE '%s'",
                                  sd, sd);
        } else if (sd)
            err_at(c, json_object_get(udp, "StartDate"), udp, "StartDate",
                   "%s: UserDefinedPeriod StartDate must be a date YYYY-MM-DD", kctx);
        if (ed && valid_date(ed)) {
            snprintf(end_expr, sizeof end_expr, "DATE '%s'", ed);
            snprintf(udp_where + w, sizeof udp_where - w,
                     " AND C.observation_period_start_date <= DATE '%s' AND "
                     "C.observation_period_end_date >= DATE '%s'",
                     ed, ed);
        } else if (ed)
            err_at(c, json_object_get(udp, "EndDate"), udp, "EndDate",
                   "%s: UserDefinedPeriod EndDate must be a date YYYY-MM-DD", kctx);
    }
    P("SELECT C.person_id, C.%s AS event_id, %s AS start_date, %s AS end_date, %s AS "
      "visit_occurrence_id, %s AS sort_date, C.%s AS domain_concept_id\n",
      k->id, start_expr, end_expr, k->visit, start_expr, k->concept);
    P("    FROM (SELECT T.*");
    if (first)
        P(", row_number() OVER (PARTITION BY T.person_id ORDER BY T.%s, T.%s) AS ordinal", k->start,
          k->id);
    P(" FROM %s%s T", c->cdm, k->table);
    if (has_cs)
        P(" JOIN codesets cs ON T.%s = cs.concept_id AND cs.codeset_id = %lld", k->concept, cs);
    /* every criterion's rows are the person's own: restricted here, below the window functions
     * (First) that would keep the planner from pushing the restriction down itself */
    if (c->only)
        P(" WHERE T.person_id = ANY (ARRAY(SELECT person_id FROM %s))", c->only);
    S(") C");
    char tb[400];
    if (need_person)
        P(" JOIN %s PE ON PE.person_id = C.person_id", own(c, "person", tb, sizeof tb));
    if (need_join[J_VISIT])
        P(" JOIN %s V ON V.visit_occurrence_id = C.visit_occurrence_id AND "
          "V.person_id = C.person_id",
          own(c, "visit_occurrence", tb, sizeof tb));
    if (need_join[J_CARE_SITE])
        P(" JOIN %scare_site CSI ON CSI.care_site_id = C.care_site_id", c->cdm);
    if (need_join[J_PROVIDER])
        P(" LEFT JOIN %sprovider PR ON PR.provider_id = C.provider_id", c->cdm);
    S("\n    WHERE true");
    if (first)
        S(" AND C.ordinal = 1");
    S(udp_where);
    if (has_src)
        P(" AND C.%s IN (SELECT concept_id FROM codesets WHERE codeset_id = %lld)", k->source_col,
          src);
    const json_t *r;
    char expr[160];
    if ((r = want_object(c, a, "OccurrenceStartDate", kctx))) {
        snprintf(expr, sizeof expr, "C.%s", k->start);
        range_clause(c, r, kctx, expr, 1);
    }
    if ((r = want_object(c, a, "OccurrenceEndDate", kctx)))
        range_clause(c, r, kctx, k->end, 1);
    if (age) {
        snprintf(expr, sizeof expr, "(EXTRACT(YEAR FROM C.%s) - PE.year_of_birth)", k->start);
        range_clause(c, age, kctx, expr, 0);
    }
    if (gender)
        concept_list_clause(c, gender, kctx, "PE.gender_concept_id", 0);
    if (k->type_key) {
        const json_t *tl = want_array(c, a, k->type_key, kctx);
        int ex = want_bool(c, a, type_ex, kctx, 0);
        snprintf(expr, sizeof expr, "C.%s", k->type_col);
        if (tl)
            concept_list_clause(c, tl, kctx, expr, ex);
    }
    if (k->extra == x_cond) {
        const json_t *st = want_array(c, a, "ConditionStatus", kctx);
        if (st)
            concept_list_clause(c, st, kctx, "C.condition_status_concept_id", 0);
    }
    if (k->extra == x_meas || k->extra == x_obs) {
        if ((r = want_object(c, a, "ValueAsNumber", kctx)))
            range_clause(c, r, kctx, "C.value_as_number", 0);
        const json_t *l;
        if ((l = want_array(c, a, "ValueAsConcept", kctx)))
            concept_list_clause(c, l, kctx, "C.value_as_concept_id", 0);
        if ((l = want_array(c, a, "Unit", kctx)))
            concept_list_clause(c, l, kctx, "C.unit_concept_id", 0);
    }
    if (k->extra == x_meas) {
        if ((r = want_object(c, a, "RangeLow", kctx)))
            range_clause(c, r, kctx, "C.range_low", 0);
        if ((r = want_object(c, a, "RangeHigh", kctx)))
            range_clause(c, r, kctx, "C.range_high", 0);
        if (want_bool(c, a, "Abnormal", kctx, 0))
            S(" AND (C.value_as_number < C.range_low OR C.value_as_number > C.range_high"
              " OR C.value_as_concept_id IN (4155142, 4155143))");
    }
    for (size_t i = 0; i < sizeof attrs / sizeof attrs[0]; i++) {
        const attr_t *at = &attrs[i];
        if (strcmp(at->kind, k->name))
            continue;
        if (at->type == A_TEXT) {
            const json_t *t = want_object(c, a, at->key, kctx);
            if (t)
                text_clause(c, t, kctx, at->expr);
        } else if (at->type == A_CONCEPTS) {
            const json_t *l = want_array(c, a, at->key, kctx);
            if (l)
                concept_list_clause(c, l, kctx, at->expr, 0);
        } else if ((r = want_object(c, a, at->key, kctx)))
            range_clause(c, r, kctx, at->expr, at->type == A_DATE);
    }
}

/* A criterion, with the criteria group nested in it (CorrelatedCriteria) when it has one: its
 * events then count only when they are in an observation period and satisfy the group, each
 * event the index of the group's windows. */
static void criteria_query(cc_t *c, const json_t *crit, const char *ctx)
{
    const json_t *a = NULL;
    if (json_is_object(crit) && json_object_size(crit) == 1)
        a = json_object_iter_value(json_object_iter((json_t *)crit));
    const json_t *g = json_is_object(a) ? json_object_get(a, "CorrelatedCriteria") : NULL;
    if (!g || json_is_null(g) || (json_is_object(g) && group_empty(g))) {
        criteria_base(c, crit, ctx);
        return;
    }
    char gctx[128];
    snprintf(gctx, sizeof gctx, "%s CorrelatedCriteria", ctx);
    if (!json_is_object(g)) {
        err_at(c, g, a, "CorrelatedCriteria", "%s: must be an object", gctx);
        return;
    }
    cg_buf_t base, *save = c->b;
    cg_buf_init(&base);
    c->b = &base;
    P("(SELECT E.*, OP.observation_period_start_date AS op_start_date, "
      "OP.observation_period_end_date AS op_end_date FROM (");
    criteria_base(c, crit, ctx);
    char tb[400];
    P(") E JOIN %s OP ON E.person_id = OP.person_id AND E.start_date >= "
      "OP.observation_period_start_date AND E.start_date <= OP.observation_period_end_date)",
      own(c, "observation_period", tb, sizeof tb));
    c->b = save;
    P("SELECT PE.person_id, PE.event_id, PE.start_date, PE.end_date, PE.visit_occurrence_id, "
      "PE.sort_date, PE.domain_concept_id FROM %.*s PE\n    JOIN (",
      (int)base.len, base.data);
    group_query(c, g, base.data ? base.data : "", 0, gctx, 1);
    S(") CC ON CC.person_id = PE.person_id AND CC.event_id = PE.event_id");
    cg_buf_free(&base);
}

/* ---- criteria groups ---- */

static void group_query(cc_t *c, const json_t *g, const char *events, int index_id, const char *ctx,
                        int depth);

static void window_bound(cc_t *c, const json_t *w, const char *which, const char *ctx,
                         const char *event_date, const char *index_date, const char *cmp,
                         int check_op)
{
    const json_t *b = want_object(c, w, which, ctx);
    if (!b)
        return;
    static const char *const m[] = {"Days", "Coeff", NULL};
    check_members(c, b, ctx, m);
    long long coeff = want_int(c, b, "Coeff", ctx, 1);
    if (coeff != 1 && coeff != -1) {
        err_at(c, json_object_get(b, "Coeff"), b, "Coeff", "%s: 'Coeff' must be -1 or 1", ctx);
        coeff = 1;
    }
    const json_t *dv = json_object_get(b, "Days");
    int has_days = dv && !json_is_null(dv);
    long long days = want_int(c, b, "Days", ctx, 0);
    if (has_days)
        P(" AND %s %s %s + %lld", event_date, cmp, index_date, coeff * days);
    else if (check_op)
        P(" AND %s %s %s", event_date, cmp, coeff == -1 ? "P.op_start_date" : "P.op_end_date");
}

static void window_clauses(cc_t *c, const json_t *w, const char *ctx, int is_end, int check_op)
{
    static const char *const m[] = {"Start", "End", "UseIndexEnd", "UseEventEnd", NULL};
    check_members(c, w, ctx, m);
    int use_index_end = want_bool(c, w, "UseIndexEnd", ctx, 0);
    /* Circe: the start window looks at the event's start unless told, the end window at its end */
    int use_event_end = want_bool(c, w, "UseEventEnd", ctx, is_end);
    const char *ev = use_event_end ? "A.end_date" : "A.start_date";
    const char *ix = use_index_end ? "P.end_date" : "P.start_date";
    window_bound(c, w, "Start", ctx, ev, ix, ">=", check_op);
    window_bound(c, w, "End", ctx, ev, ix, "<=", check_op);
}

/* A correlated criterion: the events of `events` and how many criteria rows fall in its windows. */
static void correlated_query(cc_t *c, const json_t *cc, const char *events, int index_id,
                             const char *ctx)
{
    static const char *const m[] = {"Criteria",   "StartWindow",
                                    "EndWindow",  "RestrictVisit",
                                    "Occurrence", "IgnoreObservationPeriod",
                                    NULL};
    check_members(c, cc, ctx, m);
    const json_t *crit = want_object(c, cc, "Criteria", ctx);
    const json_t *occ = want_object(c, cc, "Occurrence", ctx);
    if (!crit) {
        err_at(c, cc, NULL, NULL, "%s: 'Criteria' is required", ctx);
        return;
    }
    if (!occ) {
        err_at(c, cc, NULL, NULL, "%s: 'Occurrence' is required", ctx);
        return;
    }
    static const char *const m_occ[] = {"Type", "Count", "IsDistinct", "CountColumn", NULL};
    check_members(c, occ, ctx, m_occ);
    long long type = want_int(c, occ, "Type", ctx, 0), count = want_int(c, occ, "Count", ctx, 0);
    static const char *const ops[] = {"=", "<=", ">="};
    if (type < 0 || type > 2) {
        err_at(c, json_object_get(occ, "Type"), occ, "Type",
               "%s: Occurrence 'Type' must be 0 (exactly), 1 (at most) or 2 (at least)", ctx);
        type = 0;
    }
    int distinct = want_bool(c, occ, "IsDistinct", ctx, 0);
    const char *col = want_string(c, occ, "CountColumn", ctx);
    const char *count_col = "cc_event_id";
    if (distinct) {
        count_col = "cc_concept";
        if (col && !strcmp(col, "START_DATE"))
            count_col = "cc_start";
        else if (col && !strcmp(col, "VISIT_ID"))
            count_col = "cc_visit";
        else if (col && strcmp(col, "DOMAIN_CONCEPT"))
            err_at(c, json_object_get(occ, "CountColumn"), occ, "CountColumn",
                   "%s: CountColumn '%s' is not one of DOMAIN_CONCEPT, START_DATE, VISIT_ID", ctx,
                   col);
    }
    int ignore_op = want_bool(c, cc, "IgnoreObservationPeriod", ctx, 0);
    int restrict_visit = want_bool(c, cc, "RestrictVisit", ctx, 0);
    P("SELECT %d AS index_id, p.person_id, p.event_id FROM %s p\n", index_id, events);
    P("    LEFT JOIN (SELECT P.person_id, P.event_id, A.event_id AS cc_event_id, "
      "A.domain_concept_id"
      " AS cc_concept, A.start_date AS cc_start, A.visit_occurrence_id AS cc_visit FROM %s P\n"
      "      JOIN (",
      events);
    criteria_query(c, crit, ctx);
    S(") A ON A.person_id = P.person_id");
    if (!ignore_op)
        S(" AND A.start_date >= P.op_start_date AND A.start_date <= P.op_end_date");
    const json_t *w;
    if ((w = want_object(c, cc, "StartWindow", ctx)))
        window_clauses(c, w, ctx, 0, !ignore_op);
    if ((w = want_object(c, cc, "EndWindow", ctx)))
        window_clauses(c, w, ctx, 1, !ignore_op);
    if (restrict_visit)
        S(" AND A.visit_occurrence_id = P.visit_occurrence_id");
    P("\n    ) cc ON p.person_id = cc.person_id AND p.event_id = cc.event_id\n"
      "    GROUP BY p.person_id, p.event_id HAVING COUNT(%scc.%s) %s %lld",
      distinct ? "DISTINCT " : "", count_col, ops[type], count);
}

static void demographic_query(cc_t *c, const json_t *d, const char *events, int index_id,
                              const char *ctx)
{
    static const char *const m[] = {
        "Age", "Gender", "Race", "Ethnicity", "OccurrenceStartDate", "OccurrenceEndDate", NULL};
    check_members(c, d, ctx, m);
    char tb[400];
    P("SELECT %d AS index_id, E.person_id, E.event_id FROM %s E JOIN %s PE ON PE.person_id = "
      "E.person_id WHERE true",
      index_id, events, own(c, "person", tb, sizeof tb));
    const json_t *r, *l;
    if ((r = want_object(c, d, "Age", ctx)))
        range_clause(c, r, ctx, "(EXTRACT(YEAR FROM E.start_date) - PE.year_of_birth)", 0);
    if ((l = want_array(c, d, "Gender", ctx)))
        concept_list_clause(c, l, ctx, "PE.gender_concept_id", 0);
    if ((l = want_array(c, d, "Race", ctx)))
        concept_list_clause(c, l, ctx, "PE.race_concept_id", 0);
    if ((l = want_array(c, d, "Ethnicity", ctx)))
        concept_list_clause(c, l, ctx, "PE.ethnicity_concept_id", 0);
    if ((r = want_object(c, d, "OccurrenceStartDate", ctx)))
        range_clause(c, r, ctx, "E.start_date", 1);
    if ((r = want_object(c, d, "OccurrenceEndDate", ctx)))
        range_clause(c, r, ctx, "E.end_date", 1);
}

/* A criteria group: the events of `events` that satisfy it, as (index_id, person_id, event_id). */
static void group_query(cc_t *c, const json_t *g, const char *events, int index_id, const char *ctx,
                        int depth)
{
    static const char *const m[] = {"Type",   "Count", "CriteriaList", "DemographicCriteriaList",
                                    "Groups", NULL};
    if (depth > 16) {
        err_at(c, g, NULL, NULL, "%s: groups nested more than 16 deep", ctx);
        return;
    }
    check_members(c, g, ctx, m);
    const char *type = want_string(c, g, "Type", ctx);
    long long count = want_int(c, g, "Count", ctx, 0);
    if (!type)
        type = "ALL";
    int all = !strcasecmp(type, "ALL"), any = !strcasecmp(type, "ANY"),
        least = !strcasecmp(type, "AT_LEAST"), most = !strcasecmp(type, "AT_MOST");
    if (!all && !any && !least && !most)
        err_at(c, json_object_get(g, "Type"), g, "Type",
               "%s: group Type '%s' is not one of ALL, ANY, AT_LEAST, AT_MOST", ctx, type);
    const json_t *lists[3] = {want_array(c, g, "CriteriaList", ctx),
                              want_array(c, g, "DemographicCriteriaList", ctx),
                              want_array(c, g, "Groups", ctx)};
    size_t total = 0;
    for (int i = 0; i < 3; i++)
        total += lists[i] ? json_array_size(lists[i]) : 0;
    if (!total) {
        P("SELECT %d AS index_id, person_id, event_id FROM %s", index_id, events);
        return;
    }
    P("SELECT %d AS index_id, E.person_id, E.event_id FROM %s E\n  %sJOIN (\n", index_id, events,
      most ? "LEFT " : "");
    int idx = 0;
    for (int i = 0; i < 3; i++) {
        size_t k;
        const json_t *x;
        if (!lists[i])
            continue;
        json_array_foreach((json_t *)lists[i], k, x)
        {
            char sub[128];
            static const char *const what[] = {"correlated criterion", "demographic criterion",
                                               "group"};
            snprintf(sub, sizeof sub, "%s, %s %zu", ctx, what[i], k + 1);
            if (!json_is_object(x)) {
                err_at(c, x, NULL, NULL, "%s: must be an object", sub);
                continue;
            }
            S(idx ? "\n  UNION ALL\n  " : "  ");
            if (i == 0)
                correlated_query(c, x, events, idx, sub);
            else if (i == 1)
                demographic_query(c, x, events, idx, sub);
            else
                group_query(c, x, events, idx, sub, depth + 1);
            idx++;
        }
    }
    if (!idx) {
        /* nothing compiled (errors reported): keep the text valid */
        S("  SELECT 0, NULL::bigint, NULL::bigint WHERE false");
    }
    S("\n  ) CQ ON E.person_id = CQ.person_id AND E.event_id = CQ.event_id\n"
      "  GROUP BY E.person_id, E.event_id\n");
    if (all)
        P("  HAVING COUNT(CQ.index_id) = %zu", total);
    else if (any)
        S("  HAVING COUNT(CQ.index_id) > 0");
    else if (least)
        P("  HAVING COUNT(CQ.index_id) >= %lld", count);
    else
        P("  HAVING COUNT(CQ.index_id) <= %lld", count);
}

static int group_empty(const json_t *g)
{
    static const char *const k[] = {"CriteriaList", "DemographicCriteriaList", "Groups"};
    for (int i = 0; i < 3; i++) {
        const json_t *l = json_object_get(g, k[i]);
        if (json_is_array(l) && json_array_size(l))
            return 0;
    }
    return 1;
}

/* "First" / "Last" / "All" of a limit object; returns 0 all, 1 first, 2 last. */
static int limit_type(cc_t *c, const json_t *root, const char *key)
{
    const json_t *l = want_object(c, root, key, key);
    if (!l)
        return 0;
    static const char *const m[] = {"Type", NULL};
    check_members(c, l, key, m);
    const char *t = want_string(c, l, "Type", key);
    if (!t || !strcasecmp(t, "All"))
        return 0;
    if (!strcasecmp(t, "First"))
        return 1;
    if (!strcasecmp(t, "Last"))
        return 2;
    err_at(c, json_object_get(l, "Type"), l, "Type", "%s: Type '%s' is not All, First or Last", key,
           t);
    return 0;
}

/* ---- the whole expression ---- */

/* 'text' as an SQL literal. */
static void put_literal(cg_buf_t *b, const char *text)
{
    cg_buf_putc(b, '\'');
    for (const char *p = text; *p; p++) {
        if (*p == '\'')
            cg_buf_putc(b, '\'');
        cg_buf_putc(b, *p);
    }
    cg_buf_putc(b, '\'');
}

/* A step of the diagnosis: how many rows of cte are the person's, and their dates. */
static void diag_step(cc_t *c, int step, const char *what, const char *cte, int periods)
{
    if (!c->person)
        return;
    cg_buf_t *b = &c->steps;
    cg_buf_printf(b, "%sSELECT %d AS step, ", b->len ? "\nUNION ALL " : "", step);
    put_literal(b, what);
    cg_buf_printf(b,
                  " AS what, count(*) AS n, string_agg(%s, ', ' ORDER BY start_date) AS dates "
                  "FROM %s WHERE person_id IN (SELECT person_id FROM %sperson WHERE "
                  "person_source_value = ",
                  periods ? "start_date::text || ' to ' || end_date::text" : "start_date::text",
                  cte, c->cdm);
    put_literal(b, c->person);
    cg_buf_puts(b, " OR CAST(person_id AS text) = ");
    put_literal(b, c->person);
    cg_buf_puts(b, ")");
}

static void compile(cc_t *c, const json_t *root, long long cohort_id)
{
    if (!json_is_object(root)) {
        err_at(c, root, NULL, NULL, "a Circe cohort expression is a JSON object");
        return;
    }
    static const char *const m_root[] = {
        "ConceptSets",      "PrimaryCriteria", "AdditionalCriteria", "QualifiedLimit",
        "ExpressionLimit",  "InclusionRules",  "EndStrategy",        "CensoringCriteria",
        "CollapseSettings", "CensorWindow",    "cdmVersionRange",    NULL};
    check_members(c, root, "cohort expression", m_root);

    if (c->person)
        S("WITH ");
    else if (c->into)
        P("INSERT INTO %s (cohort_definition_id, subject_id, cohort_start_date, "
          "cohort_end_date)\nWITH ",
          c->into);
    else {
        P("DELETE FROM %scohort WHERE cohort_definition_id = %lld;\n", c->res, cohort_id);
        P("INSERT INTO %scohort (cohort_definition_id, subject_id, cohort_start_date, "
          "cohort_end_date)\nWITH ",
          c->res);
    }
    concept_sets(c, root);

    /* primary events */
    const json_t *pc = want_object(c, root, "PrimaryCriteria", "cohort expression");
    const json_t *plist = NULL;
    long long prior = 0, post = 0;
    int plimit = 0;
    if (!pc)
        err_at(c, root, NULL, NULL, "cohort expression: 'PrimaryCriteria' is required");
    else {
        static const char *const m_pc[] = {"CriteriaList", "ObservationWindow",
                                           "PrimaryCriteriaLimit", NULL};
        check_members(c, pc, "PrimaryCriteria", m_pc);
        plist = want_array(c, pc, "CriteriaList", "PrimaryCriteria");
        if (!plist || !json_array_size(plist))
            err_at(c, plist ? plist : pc, NULL, NULL,
                   "PrimaryCriteria: 'CriteriaList' needs at least one criterion");
        const json_t *ow = want_object(c, pc, "ObservationWindow", "PrimaryCriteria");
        if (ow) {
            static const char *const m_ow[] = {"PriorDays", "PostDays", NULL};
            check_members(c, ow, "ObservationWindow", m_ow);
            prior = want_int(c, ow, "PriorDays", "ObservationWindow", 0);
            post = want_int(c, ow, "PostDays", "ObservationWindow", 0);
        }
        plimit = limit_type(c, pc, "PrimaryCriteriaLimit");
    }
    S(",\nprimary_events AS (\n  SELECT P.ordinal AS event_id, P.person_id, P.start_date, "
      "P.end_date, P.op_start_date, P.op_end_date, P.visit_occurrence_id\n  FROM (SELECT "
      "E.person_id, E.start_date, E.end_date,\n");
    P("    row_number() OVER (PARTITION BY E.person_id ORDER BY E.sort_date %s, E.event_id) AS "
      "ordinal,\n    OP.observation_period_start_date AS op_start_date, "
      "OP.observation_period_end_date AS op_end_date, E.visit_occurrence_id\n    FROM (\n",
      plimit == 2 ? "DESC" : "ASC");
    size_t i;
    const json_t *x;
    int nprim = 0;
    if (plist)
        json_array_foreach((json_t *)plist, i, x)
        {
            char ctx[64];
            snprintf(ctx, sizeof ctx, "PrimaryCriteria criterion %zu", i + 1);
            S(nprim++ ? "\n    UNION ALL\n    " : "    ");
            criteria_query(c, x, ctx);
        }
    if (!nprim)
        S("    SELECT NULL::bigint AS person_id, NULL::bigint AS event_id, NULL::date AS "
          "start_date, NULL::date AS end_date, NULL::bigint AS visit_occurrence_id, NULL::date "
          "AS sort_date WHERE false");
    char tb[400];
    P("\n    ) E\n    JOIN %s OP ON E.person_id = OP.person_id AND E.start_date "
      ">= OP.observation_period_start_date AND E.start_date <= OP.observation_period_end_date\n"
      "    WHERE OP.observation_period_start_date + %lld <= E.start_date AND E.start_date + %lld "
      "<= OP.observation_period_end_date",
      own(c, "observation_period", tb, sizeof tb), prior, post);
    P("\n  ) P%s\n)", plimit ? " WHERE P.ordinal = 1" : "");

    /* qualified events */
    const json_t *ac = want_object(c, root, "AdditionalCriteria", "cohort expression");
    int qlimit = limit_type(c, root, "QualifiedLimit");
    P(",\nqualified_events AS (\n  SELECT QE.event_id, QE.person_id, QE.start_date, QE.end_date, "
      "QE.op_start_date, QE.op_end_date, QE.visit_occurrence_id FROM (\n    SELECT pe.*, "
      "row_number() OVER (PARTITION BY pe.person_id ORDER BY pe.start_date %s, pe.event_id) AS "
      "ordinal FROM primary_events pe\n",
      qlimit == 2 ? "DESC" : "ASC");
    if (ac && !group_empty(ac)) {
        S("    JOIN (");
        group_query(c, ac, "primary_events", 0, "AdditionalCriteria", 0);
        S(") AC ON AC.person_id = pe.person_id AND AC.event_id = pe.event_id\n");
    } else if (ac)
        check_members(c, ac, "AdditionalCriteria",
                      (const char *const[]){"Type", "Count", "CriteriaList",
                                            "DemographicCriteriaList", "Groups", NULL});
    P("  ) QE%s\n)", qlimit ? " WHERE QE.ordinal = 1" : "");

    /* inclusion rules */
    const json_t *rules = want_array(c, root, "InclusionRules", "cohort expression");
    int elimit = limit_type(c, root, "ExpressionLimit");
    int nrules = 0;
    if (rules)
        json_array_foreach((json_t *)rules, i, x)
        {
            char ctx[64];
            snprintf(ctx, sizeof ctx, "inclusion rule %zu", i + 1);
            if (!json_is_object(x)) {
                err_at(c, x, NULL, NULL, "%s: must be an object", ctx);
                continue;
            }
            static const char *const m_rule[] = {"name", "description", "expression", NULL};
            check_members(c, x, ctx, m_rule);
            const json_t *ex = want_object(c, x, "expression", ctx);
            const char *rname = want_string(c, x, "name", ctx);
            char what[200], cte[200];
            snprintf(what, sizeof what, "inclusion rule %zu%s%s%s: qualified events that pass",
                     i + 1, rname ? " \"" : "", rname ? rname : "", rname ? "\"" : "");
            snprintf(cte, sizeof cte,
                     "(SELECT Q.* FROM qualified_events Q JOIN inclusion_%d R ON R.person_id = "
                     "Q.person_id AND R.event_id = Q.event_id) X",
                     nrules);
            diag_step(c, 3 + nrules, what, cte, 0);
            P(",\ninclusion_%d AS (\n  ", nrules++);
            if (ex)
                group_query(c, ex, "qualified_events", (int)i, ctx, 0);
            else
                S("SELECT 0 AS index_id, person_id, event_id FROM qualified_events");
            S("\n)");
        }
    diag_step(c, 1, "primary events (PrimaryCriteria, ObservationWindow, PrimaryCriteriaLimit)",
              "primary_events", 0);
    diag_step(c, 2, "qualified events (AdditionalCriteria, QualifiedLimit)", "qualified_events", 0);
    P(",\nincluded_events AS (\n  SELECT event_id, person_id, start_date, end_date, op_start_date, "
      "op_end_date FROM (\n    SELECT Q.*, row_number() OVER (PARTITION BY Q.person_id ORDER BY "
      "Q.start_date %s, Q.event_id) AS ordinal FROM qualified_events Q WHERE true",
      elimit == 2 ? "DESC" : "ASC");
    for (int r = 0; r < nrules; r++)
        P("\n      AND EXISTS (SELECT 1 FROM inclusion_%d R WHERE R.person_id = Q.person_id AND "
          "R.event_id = Q.event_id)",
          r);
    P("\n  ) I%s\n)", elimit ? " WHERE I.ordinal = 1" : "");

    /* end dates */
    const json_t *es = want_object(c, root, "EndStrategy", "cohort expression");
    int strategy = 0;
    if (es) {
        static const char *const m_es[] = {"DateOffset", "CustomEra", NULL};
        check_members(c, es, "EndStrategy", m_es);
        const json_t *dof = want_object(c, es, "DateOffset", "EndStrategy");
        const json_t *era = want_object(c, es, "CustomEra", "EndStrategy");
        if (dof && era)
            err_at(c, era, es, "CustomEra",
                   "EndStrategy: DateOffset and CustomEra cannot both be given");
        if (dof) {
            static const char *const m_do[] = {"DateField", "Offset", NULL};
            check_members(c, dof, "EndStrategy DateOffset", m_do);
            const char *field = want_string(c, dof, "DateField", "EndStrategy DateOffset");
            long long off = want_int(c, dof, "Offset", "EndStrategy DateOffset", 0);
            const char *col = "start_date";
            if (field && !strcmp(field, "EndDate"))
                col = "end_date";
            else if (field && strcmp(field, "StartDate"))
                err_at(c, json_object_get(dof, "DateField"), dof, "DateField",
                       "EndStrategy DateOffset: DateField '%s' is not StartDate or EndDate", field);
            P(",\nstrategy_ends AS (\n  SELECT event_id, person_id, CASE WHEN %s + %lld > "
              "op_end_date THEN op_end_date ELSE %s + %lld END AS end_date FROM included_events\n)",
              col, off, col, off);
            strategy = 1;
        } else if (era) {
            const char *ctx = "EndStrategy CustomEra";
            static const char *const m_ce[] = {"DrugCodesetId", "GapDays", "Offset",
                                               "DaysSupplyOverride", NULL};
            check_members(c, era, ctx, m_ce);
            long long drugs = 0;
            if (!codeset_ref(c, era, "DrugCodesetId", ctx, &drugs) &&
                !json_object_get(era, "DrugCodesetId"))
                err_at(c, era, NULL, NULL, "%s: 'DrugCodesetId' is required", ctx);
            long long gap = want_int(c, era, "GapDays", ctx, 0);
            long long off = want_int(c, era, "Offset", ctx, 0);
            const json_t *ovr = json_object_get(era, "DaysSupplyOverride");
            char end[200];
            if (ovr && !json_is_null(ovr))
                snprintf(end, sizeof end, "de.drug_exposure_start_date + %lld",
                         want_int(c, era, "DaysSupplyOverride", ctx, 0));
            else
                snprintf(end, sizeof end,
                         "COALESCE(de.drug_exposure_end_date, de.drug_exposure_start_date + "
                         "de.days_supply, de.drug_exposure_start_date + 1)");
            /* the exposures of the drug concept set (by concept or source concept), their
             * eras with GapDays between exposures, each era's end moved by Offset */
            P(",\ndrug_target AS (\n");
            for (int k = 0; k < 2; k++)
                P("%s  SELECT de.person_id, de.drug_exposure_start_date AS start_date, %s AS "
                  "end_date FROM %s de JOIN codesets cs ON cs.codeset_id = %lld AND "
                  "de.%s = cs.concept_id WHERE de.person_id IN (SELECT person_id FROM "
                  "included_events)\n",
                  k ? "  UNION ALL\n" : "", end, own(c, "drug_exposure", tb, sizeof tb), drugs,
                  k ? "drug_source_concept_id" : "drug_concept_id");
            P("),\ndrug_eras AS (\n  SELECT D.person_id, MIN(D.start_date) AS era_start, "
              "D.end_date + "
              "%lld AS era_end FROM (\n    SELECT d.person_id, d.start_date, MIN(e.end_date) AS "
              "end_date FROM drug_target d JOIN (\n      SELECT person_id, event_date - %lld AS "
              "end_date FROM (\n        SELECT person_id, event_date, SUM(event_type) OVER "
              "(PARTITION BY person_id ORDER BY event_date, event_type ROWS UNBOUNDED PRECEDING) "
              "AS interval_status FROM (\n          SELECT person_id, start_date AS event_date, -1 "
              "AS event_type FROM drug_target\n          UNION ALL\n          SELECT person_id, "
              "end_date + %lld, 1 FROM drug_target\n        ) R\n      ) X WHERE interval_status "
              "= 0\n    ) e ON d.person_id = e.person_id AND e.end_date >= d.start_date GROUP BY "
              "d.person_id, d.start_date\n  ) D GROUP BY D.person_id, D.end_date\n),\n"
              "strategy_ends AS (\n  SELECT et.event_id, et.person_id, ER.era_end AS end_date "
              "FROM included_events et JOIN drug_eras ER ON ER.person_id = et.person_id AND "
              "et.start_date BETWEEN ER.era_start AND ER.era_end\n)",
              off, gap, gap);
            strategy = 1;
        }
    }
    S(",\ncohort_ends AS (\n");
    if (strategy)
        S("  SELECT event_id, person_id, end_date FROM strategy_ends\n");
    if (!strategy)
        S("  SELECT event_id, person_id, op_end_date AS end_date FROM included_events\n");
    const json_t *cens = want_array(c, root, "CensoringCriteria", "cohort expression");
    if (cens && json_array_size(cens)) {
        S("  UNION ALL\n  SELECT i.event_id, i.person_id, MIN(C.start_date) AS end_date FROM "
          "included_events i JOIN (\n");
        int n = 0;
        json_array_foreach((json_t *)cens, i, x)
        {
            char ctx[64];
            snprintf(ctx, sizeof ctx, "CensoringCriteria criterion %zu", i + 1);
            S(n++ ? "\n    UNION ALL\n    " : "    ");
            criteria_query(c, x, ctx);
        }
        S("\n  ) C ON C.person_id = i.person_id AND C.start_date >= i.start_date AND C.start_date "
          "<= i.op_end_date GROUP BY i.event_id, i.person_id\n");
    }
    S("),\nfirst_ends AS (\n  SELECT F.person_id, F.start_date, F.end_date FROM (\n    SELECT "
      "I.event_id, I.person_id, I.start_date, CE.end_date, row_number() OVER (PARTITION BY "
      "I.person_id, I.event_id ORDER BY CE.end_date) AS ordinal\n    FROM included_events I JOIN "
      "cohort_ends CE ON I.event_id = CE.event_id AND I.person_id = CE.person_id AND CE.end_date "
      ">= I.start_date\n  ) F WHERE F.ordinal = 1\n)");

    /* eras */
    long long pad = 0;
    const json_t *cs = want_object(c, root, "CollapseSettings", "cohort expression");
    if (cs) {
        static const char *const m_cs[] = {"CollapseType", "EraPad", NULL};
        check_members(c, cs, "CollapseSettings", m_cs);
        const char *t = want_string(c, cs, "CollapseType", "CollapseSettings");
        if (t && strcmp(t, "ERA"))
            err_at(c, json_object_get(cs, "CollapseType"), cs, "CollapseType",
                   "CollapseSettings: CollapseType '%s' is not supported (only ERA)", t);
        pad = want_int(c, cs, "EraPad", "CollapseSettings", 0);
        if (pad < 0)
            err_at(c, json_object_get(cs, "EraPad"), cs, "EraPad",
                   "CollapseSettings: EraPad must not be negative");
    }
    P(",\nend_dates AS (\n  SELECT person_id, event_date - %lld AS end_date FROM (\n    SELECT "
      "person_id, event_date, SUM(event_type) OVER (PARTITION BY person_id ORDER BY event_date, "
      "event_type ROWS UNBOUNDED PRECEDING) AS interval_status FROM (\n      SELECT person_id, "
      "start_date AS event_date, -1 AS event_type FROM first_ends\n      UNION ALL\n      SELECT "
      "person_id, end_date + %lld AS event_date, 1 AS event_type FROM first_ends\n    ) RAWDATA\n"
      "  ) e WHERE interval_status = 0\n),\n",
      pad, pad);
    S("eras AS (\n  SELECT c.person_id, c.start_date, MIN(d.end_date) AS end_date FROM first_ends "
      "c JOIN end_dates d ON c.person_id = d.person_id AND c.start_date <= d.end_date GROUP BY "
      "c.person_id, c.start_date\n),\nfinal_cohort AS (\n  SELECT person_id, MIN(start_date) AS "
      "start_date, end_date FROM eras GROUP BY person_id, end_date\n)\n");

    /* censor window */
    const json_t *cw = want_object(c, root, "CensorWindow", "cohort expression");
    const char *ws = NULL, *we = NULL;
    if (cw) {
        static const char *const m_cw[] = {"StartDate", "EndDate", NULL};
        check_members(c, cw, "CensorWindow", m_cw);
        ws = want_string(c, cw, "StartDate", "CensorWindow");
        we = want_string(c, cw, "EndDate", "CensorWindow");
        if (ws && !valid_date(ws)) {
            err_at(c, json_object_get(cw, "StartDate"), cw, "StartDate",
                   "CensorWindow: StartDate must be a date YYYY-MM-DD");
            ws = NULL;
        }
        if (we && !valid_date(we)) {
            err_at(c, json_object_get(cw, "EndDate"), cw, "EndDate",
                   "CensorWindow: EndDate must be a date YYYY-MM-DD");
            we = NULL;
        }
    }
    char sx[96] = "start_date", ex[96] = "end_date";
    if (ws)
        snprintf(sx, sizeof sx, "GREATEST(start_date, DATE '%s')", ws);
    if (we)
        snprintf(ex, sizeof ex, "LEAST(end_date, DATE '%s')", we);
    if (c->person) {
        diag_step(c, 1000, "included events (every inclusion rule, ExpressionLimit)",
                  "included_events", 0);
        diag_step(c, 1001, "cohort periods (before the censor window)", "final_cohort", 1);
        P("%.*s\nORDER BY 1;\n", (int)c->steps.len, c->steps.data);
        return;
    }
    P("SELECT %lld, person_id, %s, %s FROM final_cohort", cohort_id, sx, ex);
    if (ws || we)
        P(" WHERE %s <= %s", sx, ex);
    S(";\n");
}

/* ---- the header of a cohortgate definition ---- */

static int valid_name(const char *s)
{
    if (!*s)
        return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_' || *s == '-'))
            return 0;
    return 1;
}

static void copy_str(cc_t *c, const json_t *h, const char *key, char *dst, size_t size,
                     int required)
{
    const char *v = want_string(c, h, key, "cohortgate header");
    if (!v) {
        if (required && !json_object_get(h, key))
            err_at(c, h, NULL, NULL, "cohortgate header: '%s' is required", key);
        return;
    }
    if (strlen(v) >= size)
        err_at(c, json_object_get(h, key), h, key,
               "cohortgate header: '%s' is longer than %zu characters", key, size - 1);
    snprintf(dst, size, "%s", v);
}

/* Reads {"cohortgate": HEADER, "expression": ...}; returns the expression. */
static const json_t *read_header(cc_t *c, const json_t *root, cg_circe_header_t *hd)
{
    static const char *const m_root[] = {"cohortgate", "expression", NULL};
    static const char *const m_head[] = {"id",         "name",    "version",     "kind",
                                         "draws_from", "sponsor", "description", NULL};
    check_members(c, root, "cohortgate definition", m_root);
    const json_t *h = want_object(c, root, "cohortgate", "cohortgate definition");
    const json_t *ex = want_object(c, root, "expression", "cohortgate definition");
    if (!ex)
        err_at(c, root, NULL, NULL,
               "cohortgate definition: 'expression' (the Circe cohort expression) is required");
    if (!h)
        return ex;
    hd->present = 1;
    check_members(c, h, "cohortgate header", m_head);
    hd->id = want_int(c, h, "id", "cohortgate header", 0);
    hd->version = want_int(c, h, "version", "cohortgate header", 0);
    if (hd->id < 1)
        err_at(c, json_object_get(h, "id"), h, "id",
               "cohortgate header: 'id' (an integer from 1) is required");
    if (hd->version < 1)
        err_at(c, json_object_get(h, "version"), h, "version",
               "cohortgate header: 'version' (an integer from 1) is required");
    copy_str(c, h, "name", hd->name, sizeof hd->name, 1);
    if (hd->name[0] && !valid_name(hd->name))
        err_at(c, json_object_get(h, "name"), h, "name",
               "cohortgate header: 'name' takes lower-case letters, digits, '_' and '-'");
    copy_str(c, h, "kind", hd->kind, sizeof hd->kind, 1);
    copy_str(c, h, "draws_from", hd->draws_from, sizeof hd->draws_from, 0);
    copy_str(c, h, "sponsor", hd->sponsor, sizeof hd->sponsor, 0);
    want_string(c, h, "description", "cohortgate header");
    int pre = !strcmp(hd->kind, "precohort");
    if (hd->kind[0] && !pre && strcmp(hd->kind, "disease"))
        err_at(c, json_object_get(h, "kind"), h, "kind",
               "cohortgate header: 'kind' is \"disease\" or \"precohort\", not \"%s\"", hd->kind);
    if (pre && (!hd->draws_from[0] || !hd->sponsor[0]))
        err_at(c, h, NULL, NULL,
               "cohortgate header: a precohort needs 'draws_from' (its disease cohort) and "
               "'sponsor'");
    if (!pre && (hd->draws_from[0] || hd->sponsor[0]))
        err_at(c, json_object_get(h, hd->draws_from[0] ? "draws_from" : "sponsor"), h,
               hd->draws_from[0] ? "draws_from" : "sponsor",
               "cohortgate header: only a precohort has 'draws_from' and 'sponsor'");
    return ex;
}

/* ---- loading ---- */

void cg_circe_destroy(cg_circe_t *c)
{
    if (!c)
        return;
    cg_jsonpos_destroy(c->jp);
    json_decref(c->root);
    free(c->text);
    free(c->file);
    free(c);
}

static void cc_init(cc_t *c, const char *file, const cg_jsonpos_t *jp, cg_error_t *errs, size_t max,
                    cg_buf_t *b)
{
    memset(c, 0, sizeof(*c));
    c->file = file;
    c->jp = jp;
    c->e.errs = errs;
    c->e.max = max;
    c->b = b;
}

cg_circe_t *cg_circe_load_string(const char *text, const char *name, cg_error_t *errs,
                                 size_t max_errs, size_t *n_errs)
{
    if (n_errs)
        *n_errs = 0;
    json_error_t je;
    json_t *root = json_loads(text, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        if (errs && max_errs)
            cg_error_set(&errs[0], CG_ERR_CONFIG, name, je.line, je.column, "%s", je.text);
        if (n_errs)
            *n_errs = 1;
        return NULL;
    }
    cg_circe_t *c = calloc(1, sizeof(*c));
    if (!c || !(c->text = strdup(text)) || !(c->file = strdup(name ? name : ""))) {
        json_decref(root);
        cg_circe_destroy(c);
        if (errs && max_errs)
            cg_error_set(&errs[0], CG_ERR_NOMEM, name, 0, 0, "out of memory");
        if (n_errs)
            *n_errs = 1;
        return NULL;
    }
    c->root = root;
    c->expr = root;
    c->jp = cg_jsonpos_build(text, root);
    cg_buf_t b;
    cg_buf_init(&b);
    cc_t cc;
    cc_init(&cc, c->file, c->jp, errs, max_errs, &b);
    if (json_is_object(root) && json_object_get(root, "cohortgate"))
        c->expr = read_header(&cc, root, &c->header);
    if (c->expr)
        compile(&cc, c->expr, c->header.present ? c->header.id : 1);
    cg_buf_free(&b);
    if (n_errs)
        *n_errs = cc.e.n;
    if (cc.e.n) {
        cg_circe_destroy(c);
        return NULL;
    }
    return c;
}

cg_circe_t *cg_circe_load(const char *path, cg_error_t *errs, size_t max_errs, size_t *n_errs)
{
    cg_buf_t b;
    cg_buf_init(&b);
    if (cg_buf_read_file(&b, path) != CG_OK || cg_buf_putc(&b, '\0') != CG_OK) {
        cg_buf_free(&b);
        if (errs && max_errs)
            cg_error_set(&errs[0], CG_ERR_IO, path, 0, 0, "cannot read the file");
        if (n_errs)
            *n_errs = 1;
        return NULL;
    }
    cg_circe_t *c = cg_circe_load_string(b.data, path, errs, max_errs, n_errs);
    cg_buf_free(&b);
    return c;
}

const cg_circe_header_t *cg_circe_header(const cg_circe_t *c)
{
    return c ? &c->header : NULL;
}

void cg_circe_summarize(const cg_circe_t *c, cg_circe_summary_t *out)
{
    memset(out, 0, sizeof(*out));
    if (!c)
        return;
    const json_t *r = c->expr, *pc = json_object_get(r, "PrimaryCriteria");
    out->concept_sets = json_array_size(json_object_get(r, "ConceptSets"));
    out->primary_criteria = json_array_size(json_object_get(pc, "CriteriaList"));
    out->inclusion_rules = json_array_size(json_object_get(r, "InclusionRules"));
    out->censoring_criteria = json_array_size(json_object_get(r, "CensoringCriteria"));
    const json_t *ac = json_object_get(r, "AdditionalCriteria");
    out->additional_criteria = json_is_object(ac) && !group_empty(ac);
}

cg_err_t cg_circe_compile(const cg_circe_t *c, const cg_circe_sql_options_t *opt, cg_buf_t *out)
{
    if (!c || !opt || !out)
        return CG_ERR_INVALID_ARG;
    cc_t cc;
    cg_error_t err;
    cc_init(&cc, c->file, c->jp, &err, 1, out);
    quote_ident(cc.cdm, sizeof cc.cdm, opt->cdm_schema);
    quote_ident(cc.res, sizeof cc.res, opt->results_schema ? opt->results_schema : opt->cdm_schema);
    size_t mark = out->len;
    cc.person = opt->person;
    cc.into = opt->into;
    cc.only = opt->only_persons;
    cg_buf_init(&cc.steps);
    compile(&cc, c->expr, opt->cohort_id);
    cg_buf_free(&cc.steps);
    if (cc.e.n) {
        out->len = mark;
        return err.code ? err.code : CG_ERR_CONFIG;
    }
    return CG_OK;
}

char *cg_circe_expression_json(const cg_circe_t *c)
{
    return c ? json_dumps(c->expr, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
}

const char *cg_circe_description(const cg_circe_t *c)
{
    if (!c || !c->header.present)
        return NULL;
    return json_string_value(
        json_object_get(json_object_get(c->root, "cohortgate"), "description"));
}

int cg_circe_count_suppressed(long long n, long long k)
{
    return n < (k < 1 ? 1 : k);
}

const char *cg_circe_count_format(long long n, long long k, char *out, size_t size)
{
    if (!out || !size)
        return out;
    if (k < 1)
        k = 1;
    if (cg_circe_count_suppressed(n, k))
        snprintf(out, size, "<%lld", k);
    else
        snprintf(out, size, "%lld", n);
    return out;
}
