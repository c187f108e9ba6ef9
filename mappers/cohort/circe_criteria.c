/* circe_criteria.c - the criteria of a Circe expression as SQL: one criterion per domain
 * (its table, columns and attributes), its correlated criteria (CorrelatedCriteria), and the
 * criteria groups with their windows and occurrence counts. A criterion and a group nest in
 * each other, so both are here.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "circe_impl.h"

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

/* One criterion ({"ConditionOccurrence": {...}}) as a query with the columns person_id,
 * event_id, start_date, end_date, visit_occurrence_id, sort_date, domain_concept_id. */
static void criteria_base(cc_t *c, const json_t *crit, const char *ctx)
{
    if (!json_is_object(crit) || json_object_size(crit) != 1) {
        cg_circe__err_at(c, crit, NULL, NULL,
                         "%s: a criterion is an object with one member, its domain", ctx);
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
        cg_circe__err_at(c, a, crit, name,
                         "%s: criterion '%s' is not supported by cohortgate (see "
                         "specs/cohorts/CIRCE.md)",
                         ctx, name);
        S("SELECT NULL");
        return;
    }
    if (!json_is_object(a)) {
        cg_circe__err_at(c, a, crit, name, "%s: '%s' must be an object", ctx, name);
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
    cg_circe__check_members(c, a, kctx, allowed);

    long long cs = 0, src = 0;
    int has_cs = cg_circe__codeset_ref(c, a, "CodesetId", kctx, &cs);
    int has_src = k->source_key && cg_circe__codeset_ref(c, a, k->source_key, kctx, &src);
    int first = cg_circe__want_bool(c, a, "First", kctx, 0);
    const json_t *age = cg_circe__want_object(c, a, "Age", kctx);
    const json_t *gender = cg_circe__want_array(c, a, "Gender", kctx);
    int need_person = age || (gender && json_array_size(gender));
    int need_join[5] = {0, 0, 0, 0, 0};
    for (size_t i = 0; i < sizeof attrs / sizeof attrs[0]; i++)
        if (attrs[i].person && !strcmp(attrs[i].kind, k->name) &&
            !cg_circe__empty_value(json_object_get(a, attrs[i].key)))
            need_join[attrs[i].person] = 1;
    need_person |= need_join[J_PERSON];

    /* an observation period's event may be a user-defined period inside it */
    char start_expr[96], end_expr[256], udp_where[400] = "";
    snprintf(start_expr, sizeof start_expr, "C.%s", k->start);
    snprintf(end_expr, sizeof end_expr, "%s", k->end);
    const json_t *udp = is_op ? cg_circe__want_object(c, a, "UserDefinedPeriod", kctx) : NULL;
    if (udp) {
        static const char *const m_udp[] = {"StartDate", "EndDate", NULL};
        cg_circe__check_members(c, udp, kctx, m_udp);
        const char *sd = cg_circe__want_string(c, udp, "StartDate", kctx);
        const char *ed = cg_circe__want_string(c, udp, "EndDate", kctx);
        size_t w = 0;
        if (sd && cg_circe__valid_date(sd)) {
            snprintf(start_expr, sizeof start_expr, "DATE '%s'", sd);
            w += (size_t)snprintf(udp_where + w, sizeof udp_where - w,
                                  " AND C.observation_period_start_date <= DATE '%s' AND "
                                  "C.observation_period_end_date >= DATE '%s'",
                                  sd, sd);
        } else if (sd)
            cg_circe__err_at(c, json_object_get(udp, "StartDate"), udp, "StartDate",
                             "%s: UserDefinedPeriod StartDate must be a date YYYY-MM-DD", kctx);
        if (ed && cg_circe__valid_date(ed)) {
            snprintf(end_expr, sizeof end_expr, "DATE '%s'", ed);
            snprintf(udp_where + w, sizeof udp_where - w,
                     " AND C.observation_period_start_date <= DATE '%s' AND "
                     "C.observation_period_end_date >= DATE '%s'",
                     ed, ed);
        } else if (ed)
            cg_circe__err_at(c, json_object_get(udp, "EndDate"), udp, "EndDate",
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
    if (has_cs && !c->only)
        P(" JOIN codesets cs ON T.%s = cs.concept_id AND cs.codeset_id = %lld", k->concept, cs);
    /* every criterion's rows are the person's own: restricted here, below the window functions
     * (First) that would keep the planner from pushing the restriction down itself. The
     * concepts too, as a second array: the index scan (or a BitmapAnd of the person and concept
     * indexes) then reads only the persons' rows of the concept set, where the join read all
     * their rows of the table first (the cost grew with each person's history) */
    if (c->only) {
        P(" WHERE T.person_id = ANY (ARRAY(SELECT person_id FROM %s))", c->only);
        if (has_cs)
            P(" AND T.%s = ANY (ARRAY(SELECT DISTINCT concept_id FROM codesets WHERE codeset_id "
              "= %lld))",
              k->concept, cs);
    }
    S(") C");
    char tb[400];
    if (need_person)
        P(" JOIN %s PE ON PE.person_id = C.person_id", cg_circe__own(c, "person", tb, sizeof tb));
    if (need_join[J_VISIT])
        P(" JOIN %s V ON V.visit_occurrence_id = C.visit_occurrence_id AND "
          "V.person_id = C.person_id",
          cg_circe__own(c, "visit_occurrence", tb, sizeof tb));
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
    if ((r = cg_circe__want_object(c, a, "OccurrenceStartDate", kctx))) {
        snprintf(expr, sizeof expr, "C.%s", k->start);
        cg_circe__range_clause(c, r, kctx, expr, 1);
    }
    if ((r = cg_circe__want_object(c, a, "OccurrenceEndDate", kctx)))
        cg_circe__range_clause(c, r, kctx, k->end, 1);
    if (age) {
        snprintf(expr, sizeof expr, "(EXTRACT(YEAR FROM C.%s) - PE.year_of_birth)", k->start);
        cg_circe__range_clause(c, age, kctx, expr, 0);
    }
    if (gender)
        cg_circe__concept_list_clause(c, gender, kctx, "PE.gender_concept_id", 0);
    if (k->type_key) {
        const json_t *tl = cg_circe__want_array(c, a, k->type_key, kctx);
        int ex = cg_circe__want_bool(c, a, type_ex, kctx, 0);
        snprintf(expr, sizeof expr, "C.%s", k->type_col);
        if (tl)
            cg_circe__concept_list_clause(c, tl, kctx, expr, ex);
    }
    if (k->extra == x_cond) {
        const json_t *st = cg_circe__want_array(c, a, "ConditionStatus", kctx);
        if (st)
            cg_circe__concept_list_clause(c, st, kctx, "C.condition_status_concept_id", 0);
    }
    if (k->extra == x_meas || k->extra == x_obs) {
        if ((r = cg_circe__want_object(c, a, "ValueAsNumber", kctx)))
            cg_circe__range_clause(c, r, kctx, "C.value_as_number", 0);
        const json_t *l;
        if ((l = cg_circe__want_array(c, a, "ValueAsConcept", kctx)))
            cg_circe__concept_list_clause(c, l, kctx, "C.value_as_concept_id", 0);
        if ((l = cg_circe__want_array(c, a, "Unit", kctx)))
            cg_circe__concept_list_clause(c, l, kctx, "C.unit_concept_id", 0);
    }
    if (k->extra == x_meas) {
        if ((r = cg_circe__want_object(c, a, "RangeLow", kctx)))
            cg_circe__range_clause(c, r, kctx, "C.range_low", 0);
        if ((r = cg_circe__want_object(c, a, "RangeHigh", kctx)))
            cg_circe__range_clause(c, r, kctx, "C.range_high", 0);
        if (cg_circe__want_bool(c, a, "Abnormal", kctx, 0))
            S(" AND (C.value_as_number < C.range_low OR C.value_as_number > C.range_high"
              " OR C.value_as_concept_id IN (4155142, 4155143))");
    }
    for (size_t i = 0; i < sizeof attrs / sizeof attrs[0]; i++) {
        const attr_t *at = &attrs[i];
        if (strcmp(at->kind, k->name))
            continue;
        if (at->type == A_TEXT) {
            const json_t *t = cg_circe__want_object(c, a, at->key, kctx);
            if (t)
                cg_circe__text_clause(c, t, kctx, at->expr);
        } else if (at->type == A_CONCEPTS) {
            const json_t *l = cg_circe__want_array(c, a, at->key, kctx);
            if (l)
                cg_circe__concept_list_clause(c, l, kctx, at->expr, 0);
        } else if ((r = cg_circe__want_object(c, a, at->key, kctx)))
            cg_circe__range_clause(c, r, kctx, at->expr, at->type == A_DATE);
    }
}

/* A criterion, with the criteria group nested in it (CorrelatedCriteria) when it has one: its
 * events then count only when they are in an observation period and satisfy the group, each
 * event the index of the group's windows. */
void cg_circe__criteria_query(cc_t *c, const json_t *crit, const char *ctx)
{
    const json_t *a = NULL;
    if (json_is_object(crit) && json_object_size(crit) == 1)
        a = json_object_iter_value(json_object_iter((json_t *)crit));
    const json_t *g = json_is_object(a) ? json_object_get(a, "CorrelatedCriteria") : NULL;
    if (!g || json_is_null(g) || (json_is_object(g) && cg_circe__group_empty(g))) {
        criteria_base(c, crit, ctx);
        return;
    }
    char gctx[128];
    snprintf(gctx, sizeof gctx, "%s CorrelatedCriteria", ctx);
    if (!json_is_object(g)) {
        cg_circe__err_at(c, g, a, "CorrelatedCriteria", "%s: must be an object", gctx);
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
      cg_circe__own(c, "observation_period", tb, sizeof tb));
    c->b = save;
    P("SELECT PE.person_id, PE.event_id, PE.start_date, PE.end_date, PE.visit_occurrence_id, "
      "PE.sort_date, PE.domain_concept_id FROM %.*s PE\n    JOIN (",
      (int)base.len, base.data);
    cg_circe__group_query(c, g, base.data ? base.data : "", 0, gctx, 1);
    S(") CC ON CC.person_id = PE.person_id AND CC.event_id = PE.event_id");
    cg_buf_free(&base);
}

/* ---- criteria groups ---- */

static void window_bound(cc_t *c, const json_t *w, const char *which, const char *ctx,
                         const char *event_date, const char *index_date, const char *cmp,
                         int check_op)
{
    const json_t *b = cg_circe__want_object(c, w, which, ctx);
    if (!b)
        return;
    static const char *const m[] = {"Days", "Coeff", NULL};
    cg_circe__check_members(c, b, ctx, m);
    long long coeff = cg_circe__want_int(c, b, "Coeff", ctx, 1);
    if (coeff != 1 && coeff != -1) {
        cg_circe__err_at(c, json_object_get(b, "Coeff"), b, "Coeff", "%s: 'Coeff' must be -1 or 1",
                         ctx);
        coeff = 1;
    }
    const json_t *dv = json_object_get(b, "Days");
    int has_days = dv && !json_is_null(dv);
    long long days = cg_circe__want_int(c, b, "Days", ctx, 0);
    if (has_days)
        P(" AND %s %s %s + %lld", event_date, cmp, index_date, coeff * days);
    else if (check_op)
        P(" AND %s %s %s", event_date, cmp, coeff == -1 ? "P.op_start_date" : "P.op_end_date");
}

static void window_clauses(cc_t *c, const json_t *w, const char *ctx, int is_end, int check_op)
{
    static const char *const m[] = {"Start", "End", "UseIndexEnd", "UseEventEnd", NULL};
    cg_circe__check_members(c, w, ctx, m);
    int use_index_end = cg_circe__want_bool(c, w, "UseIndexEnd", ctx, 0);
    /* Circe: the start window looks at the event's start unless told, the end window at its end */
    int use_event_end = cg_circe__want_bool(c, w, "UseEventEnd", ctx, is_end);
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
    cg_circe__check_members(c, cc, ctx, m);
    const json_t *crit = cg_circe__want_object(c, cc, "Criteria", ctx);
    const json_t *occ = cg_circe__want_object(c, cc, "Occurrence", ctx);
    if (!crit) {
        cg_circe__err_at(c, cc, NULL, NULL, "%s: 'Criteria' is required", ctx);
        return;
    }
    if (!occ) {
        cg_circe__err_at(c, cc, NULL, NULL, "%s: 'Occurrence' is required", ctx);
        return;
    }
    static const char *const m_occ[] = {"Type", "Count", "IsDistinct", "CountColumn", NULL};
    cg_circe__check_members(c, occ, ctx, m_occ);
    long long type = cg_circe__want_int(c, occ, "Type", ctx, 0),
              count = cg_circe__want_int(c, occ, "Count", ctx, 0);
    static const char *const ops[] = {"=", "<=", ">="};
    if (type < 0 || type > 2) {
        cg_circe__err_at(c, json_object_get(occ, "Type"), occ, "Type",
                         "%s: Occurrence 'Type' must be 0 (exactly), 1 (at most) or 2 (at least)",
                         ctx);
        type = 0;
    }
    int distinct = cg_circe__want_bool(c, occ, "IsDistinct", ctx, 0);
    const char *col = cg_circe__want_string(c, occ, "CountColumn", ctx);
    const char *count_col = "cc_event_id";
    if (distinct) {
        count_col = "cc_concept";
        if (col && !strcmp(col, "START_DATE"))
            count_col = "cc_start";
        else if (col && !strcmp(col, "VISIT_ID"))
            count_col = "cc_visit";
        else if (col && strcmp(col, "DOMAIN_CONCEPT"))
            cg_circe__err_at(
                c, json_object_get(occ, "CountColumn"), occ, "CountColumn",
                "%s: CountColumn '%s' is not one of DOMAIN_CONCEPT, START_DATE, VISIT_ID", ctx,
                col);
    }
    int ignore_op = cg_circe__want_bool(c, cc, "IgnoreObservationPeriod", ctx, 0);
    int restrict_visit = cg_circe__want_bool(c, cc, "RestrictVisit", ctx, 0);
    P("SELECT %d AS index_id, p.person_id, p.event_id FROM %s p\n", index_id, events);
    P("    LEFT JOIN (SELECT P.person_id, P.event_id, A.event_id AS cc_event_id, "
      "A.domain_concept_id"
      " AS cc_concept, A.start_date AS cc_start, A.visit_occurrence_id AS cc_visit FROM %s P\n"
      "      JOIN (",
      events);
    cg_circe__criteria_query(c, crit, ctx);
    S(") A ON A.person_id = P.person_id");
    if (!ignore_op)
        S(" AND A.start_date >= P.op_start_date AND A.start_date <= P.op_end_date");
    const json_t *w;
    if ((w = cg_circe__want_object(c, cc, "StartWindow", ctx)))
        window_clauses(c, w, ctx, 0, !ignore_op);
    if ((w = cg_circe__want_object(c, cc, "EndWindow", ctx)))
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
    cg_circe__check_members(c, d, ctx, m);
    char tb[400];
    P("SELECT %d AS index_id, E.person_id, E.event_id FROM %s E JOIN %s PE ON PE.person_id = "
      "E.person_id WHERE true",
      index_id, events, cg_circe__own(c, "person", tb, sizeof tb));
    const json_t *r, *l;
    if ((r = cg_circe__want_object(c, d, "Age", ctx)))
        cg_circe__range_clause(c, r, ctx, "(EXTRACT(YEAR FROM E.start_date) - PE.year_of_birth)",
                               0);
    if ((l = cg_circe__want_array(c, d, "Gender", ctx)))
        cg_circe__concept_list_clause(c, l, ctx, "PE.gender_concept_id", 0);
    if ((l = cg_circe__want_array(c, d, "Race", ctx)))
        cg_circe__concept_list_clause(c, l, ctx, "PE.race_concept_id", 0);
    if ((l = cg_circe__want_array(c, d, "Ethnicity", ctx)))
        cg_circe__concept_list_clause(c, l, ctx, "PE.ethnicity_concept_id", 0);
    if ((r = cg_circe__want_object(c, d, "OccurrenceStartDate", ctx)))
        cg_circe__range_clause(c, r, ctx, "E.start_date", 1);
    if ((r = cg_circe__want_object(c, d, "OccurrenceEndDate", ctx)))
        cg_circe__range_clause(c, r, ctx, "E.end_date", 1);
}

/* A criteria group: the events of `events` that satisfy it, as (index_id, person_id, event_id). */
void cg_circe__group_query(cc_t *c, const json_t *g, const char *events, int index_id,
                           const char *ctx, int depth)
{
    static const char *const m[] = {"Type",   "Count", "CriteriaList", "DemographicCriteriaList",
                                    "Groups", NULL};
    if (depth > 16) {
        cg_circe__err_at(c, g, NULL, NULL, "%s: groups nested more than 16 deep", ctx);
        return;
    }
    cg_circe__check_members(c, g, ctx, m);
    const char *type = cg_circe__want_string(c, g, "Type", ctx);
    long long count = cg_circe__want_int(c, g, "Count", ctx, 0);
    if (!type)
        type = "ALL";
    int all = !strcasecmp(type, "ALL"), any = !strcasecmp(type, "ANY"),
        least = !strcasecmp(type, "AT_LEAST"), most = !strcasecmp(type, "AT_MOST");
    if (!all && !any && !least && !most)
        cg_circe__err_at(c, json_object_get(g, "Type"), g, "Type",
                         "%s: group Type '%s' is not one of ALL, ANY, AT_LEAST, AT_MOST", ctx,
                         type);
    const json_t *lists[3] = {cg_circe__want_array(c, g, "CriteriaList", ctx),
                              cg_circe__want_array(c, g, "DemographicCriteriaList", ctx),
                              cg_circe__want_array(c, g, "Groups", ctx)};
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
                cg_circe__err_at(c, x, NULL, NULL, "%s: must be an object", sub);
                continue;
            }
            S(idx ? "\n  UNION ALL\n  " : "  ");
            if (i == 0)
                correlated_query(c, x, events, idx, sub);
            else if (i == 1)
                demographic_query(c, x, events, idx, sub);
            else
                cg_circe__group_query(c, x, events, idx, sub, depth + 1);
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

int cg_circe__group_empty(const json_t *g)
{
    static const char *const k[] = {"CriteriaList", "DemographicCriteriaList", "Groups"};
    for (int i = 0; i < 3; i++) {
        const json_t *l = json_object_get(g, k[i]);
        if (json_is_array(l) && json_array_size(l))
            return 0;
    }
    return 1;
}
