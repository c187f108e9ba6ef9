/* circe_compile.c - a whole Circe expression as one SQL statement: the concept sets, primary
 * events, qualified events, inclusion rules, the end strategy (date offset or custom drug era),
 * censoring, the collapse into eras and the censor window; or, for one person, the diagnosis
 * of each step.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "circe_impl.h"

static int limit_type(cc_t *c, const json_t *root, const char *key)
{
    const json_t *l = cg_circe__want_object(c, root, key, key);
    if (!l)
        return 0;
    static const char *const m[] = {"Type", NULL};
    cg_circe__check_members(c, l, key, m);
    const char *t = cg_circe__want_string(c, l, "Type", key);
    if (!t || !strcasecmp(t, "All"))
        return 0;
    if (!strcasecmp(t, "First"))
        return 1;
    if (!strcasecmp(t, "Last"))
        return 2;
    cg_circe__err_at(c, json_object_get(l, "Type"), l, "Type",
                     "%s: Type '%s' is not All, First or Last", key, t);
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

void cg_circe__compile(cc_t *c, const json_t *root, long long cohort_id)
{
    if (!json_is_object(root)) {
        cg_circe__err_at(c, root, NULL, NULL, "a Circe cohort expression is a JSON object");
        return;
    }
    static const char *const m_root[] = {
        "ConceptSets",      "PrimaryCriteria", "AdditionalCriteria", "QualifiedLimit",
        "ExpressionLimit",  "InclusionRules",  "EndStrategy",        "CensoringCriteria",
        "CollapseSettings", "CensorWindow",    "cdmVersionRange",    NULL};
    cg_circe__check_members(c, root, "cohort expression", m_root);

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
    cg_circe__concept_sets(c, root);

    /* primary events */
    const json_t *pc = cg_circe__want_object(c, root, "PrimaryCriteria", "cohort expression");
    const json_t *plist = NULL;
    long long prior = 0, post = 0;
    int plimit = 0;
    if (!pc)
        cg_circe__err_at(c, root, NULL, NULL, "cohort expression: 'PrimaryCriteria' is required");
    else {
        static const char *const m_pc[] = {"CriteriaList", "ObservationWindow",
                                           "PrimaryCriteriaLimit", NULL};
        cg_circe__check_members(c, pc, "PrimaryCriteria", m_pc);
        plist = cg_circe__want_array(c, pc, "CriteriaList", "PrimaryCriteria");
        if (!plist || !json_array_size(plist))
            cg_circe__err_at(c, plist ? plist : pc, NULL, NULL,
                             "PrimaryCriteria: 'CriteriaList' needs at least one criterion");
        const json_t *ow = cg_circe__want_object(c, pc, "ObservationWindow", "PrimaryCriteria");
        if (ow) {
            static const char *const m_ow[] = {"PriorDays", "PostDays", NULL};
            cg_circe__check_members(c, ow, "ObservationWindow", m_ow);
            prior = cg_circe__want_int(c, ow, "PriorDays", "ObservationWindow", 0);
            post = cg_circe__want_int(c, ow, "PostDays", "ObservationWindow", 0);
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
            cg_circe__criteria_query(c, x, ctx);
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
      cg_circe__own(c, "observation_period", tb, sizeof tb), prior, post);
    P("\n  ) P%s\n)", plimit ? " WHERE P.ordinal = 1" : "");

    /* qualified events */
    const json_t *ac = cg_circe__want_object(c, root, "AdditionalCriteria", "cohort expression");
    int qlimit = limit_type(c, root, "QualifiedLimit");
    P(",\nqualified_events AS (\n  SELECT QE.event_id, QE.person_id, QE.start_date, QE.end_date, "
      "QE.op_start_date, QE.op_end_date, QE.visit_occurrence_id FROM (\n    SELECT pe.*, "
      "row_number() OVER (PARTITION BY pe.person_id ORDER BY pe.start_date %s, pe.event_id) AS "
      "ordinal FROM primary_events pe\n",
      qlimit == 2 ? "DESC" : "ASC");
    if (ac && !cg_circe__group_empty(ac)) {
        S("    JOIN (");
        cg_circe__group_query(c, ac, "primary_events", 0, "AdditionalCriteria", 0);
        S(") AC ON AC.person_id = pe.person_id AND AC.event_id = pe.event_id\n");
    } else if (ac)
        cg_circe__check_members(c, ac, "AdditionalCriteria",
                                (const char *const[]){"Type", "Count", "CriteriaList",
                                                      "DemographicCriteriaList", "Groups", NULL});
    P("  ) QE%s\n)", qlimit ? " WHERE QE.ordinal = 1" : "");

    /* inclusion rules */
    const json_t *rules = cg_circe__want_array(c, root, "InclusionRules", "cohort expression");
    int elimit = limit_type(c, root, "ExpressionLimit");
    int nrules = 0;
    if (rules)
        json_array_foreach((json_t *)rules, i, x)
        {
            char ctx[64];
            snprintf(ctx, sizeof ctx, "inclusion rule %zu", i + 1);
            if (!json_is_object(x)) {
                cg_circe__err_at(c, x, NULL, NULL, "%s: must be an object", ctx);
                continue;
            }
            static const char *const m_rule[] = {"name", "description", "expression", NULL};
            cg_circe__check_members(c, x, ctx, m_rule);
            const json_t *ex = cg_circe__want_object(c, x, "expression", ctx);
            const char *rname = cg_circe__want_string(c, x, "name", ctx);
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
                cg_circe__group_query(c, ex, "qualified_events", (int)i, ctx, 0);
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
    const json_t *es = cg_circe__want_object(c, root, "EndStrategy", "cohort expression");
    int strategy = 0;
    if (es) {
        static const char *const m_es[] = {"DateOffset", "CustomEra", NULL};
        cg_circe__check_members(c, es, "EndStrategy", m_es);
        const json_t *dof = cg_circe__want_object(c, es, "DateOffset", "EndStrategy");
        const json_t *era = cg_circe__want_object(c, es, "CustomEra", "EndStrategy");
        if (dof && era)
            cg_circe__err_at(c, era, es, "CustomEra",
                             "EndStrategy: DateOffset and CustomEra cannot both be given");
        if (dof) {
            static const char *const m_do[] = {"DateField", "Offset", NULL};
            cg_circe__check_members(c, dof, "EndStrategy DateOffset", m_do);
            const char *field =
                cg_circe__want_string(c, dof, "DateField", "EndStrategy DateOffset");
            long long off = cg_circe__want_int(c, dof, "Offset", "EndStrategy DateOffset", 0);
            const char *col = "start_date";
            if (field && !strcmp(field, "EndDate"))
                col = "end_date";
            else if (field && strcmp(field, "StartDate"))
                cg_circe__err_at(
                    c, json_object_get(dof, "DateField"), dof, "DateField",
                    "EndStrategy DateOffset: DateField '%s' is not StartDate or EndDate", field);
            P(",\nstrategy_ends AS (\n  SELECT event_id, person_id, CASE WHEN %s + %lld > "
              "op_end_date THEN op_end_date ELSE %s + %lld END AS end_date FROM included_events\n)",
              col, off, col, off);
            strategy = 1;
        } else if (era) {
            const char *ctx = "EndStrategy CustomEra";
            static const char *const m_ce[] = {"DrugCodesetId", "GapDays", "Offset",
                                               "DaysSupplyOverride", NULL};
            cg_circe__check_members(c, era, ctx, m_ce);
            long long drugs = 0;
            if (!cg_circe__codeset_ref(c, era, "DrugCodesetId", ctx, &drugs) &&
                !json_object_get(era, "DrugCodesetId"))
                cg_circe__err_at(c, era, NULL, NULL, "%s: 'DrugCodesetId' is required", ctx);
            long long gap = cg_circe__want_int(c, era, "GapDays", ctx, 0);
            long long off = cg_circe__want_int(c, era, "Offset", ctx, 0);
            const json_t *ovr = json_object_get(era, "DaysSupplyOverride");
            char end[200];
            if (ovr && !json_is_null(ovr))
                snprintf(end, sizeof end, "de.drug_exposure_start_date + %lld",
                         cg_circe__want_int(c, era, "DaysSupplyOverride", ctx, 0));
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
                  k ? "  UNION ALL\n" : "", end, cg_circe__own(c, "drug_exposure", tb, sizeof tb),
                  drugs, k ? "drug_source_concept_id" : "drug_concept_id");
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
    const json_t *cens = cg_circe__want_array(c, root, "CensoringCriteria", "cohort expression");
    if (cens && json_array_size(cens)) {
        S("  UNION ALL\n  SELECT i.event_id, i.person_id, MIN(C.start_date) AS end_date FROM "
          "included_events i JOIN (\n");
        int n = 0;
        json_array_foreach((json_t *)cens, i, x)
        {
            char ctx[64];
            snprintf(ctx, sizeof ctx, "CensoringCriteria criterion %zu", i + 1);
            S(n++ ? "\n    UNION ALL\n    " : "    ");
            cg_circe__criteria_query(c, x, ctx);
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
    const json_t *cs = cg_circe__want_object(c, root, "CollapseSettings", "cohort expression");
    if (cs) {
        static const char *const m_cs[] = {"CollapseType", "EraPad", NULL};
        cg_circe__check_members(c, cs, "CollapseSettings", m_cs);
        const char *t = cg_circe__want_string(c, cs, "CollapseType", "CollapseSettings");
        if (t && strcmp(t, "ERA"))
            cg_circe__err_at(c, json_object_get(cs, "CollapseType"), cs, "CollapseType",
                             "CollapseSettings: CollapseType '%s' is not supported (only ERA)", t);
        pad = cg_circe__want_int(c, cs, "EraPad", "CollapseSettings", 0);
        if (pad < 0)
            cg_circe__err_at(c, json_object_get(cs, "EraPad"), cs, "EraPad",
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
    const json_t *cw = cg_circe__want_object(c, root, "CensorWindow", "cohort expression");
    const char *ws = NULL, *we = NULL;
    if (cw) {
        static const char *const m_cw[] = {"StartDate", "EndDate", NULL};
        cg_circe__check_members(c, cw, "CensorWindow", m_cw);
        ws = cg_circe__want_string(c, cw, "StartDate", "CensorWindow");
        we = cg_circe__want_string(c, cw, "EndDate", "CensorWindow");
        if (ws && !cg_circe__valid_date(ws)) {
            cg_circe__err_at(c, json_object_get(cw, "StartDate"), cw, "StartDate",
                             "CensorWindow: StartDate must be a date YYYY-MM-DD");
            ws = NULL;
        }
        if (we && !cg_circe__valid_date(we)) {
            cg_circe__err_at(c, json_object_get(cw, "EndDate"), cw, "EndDate",
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
