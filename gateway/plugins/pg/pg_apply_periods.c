/* pg_apply_periods.c - observation_period, derived from the rows themselves: one span per
 * person from the first to the last date of their rows. A batch widens the spans of the persons
 * whose rows it upserted, and makes anew those of the persons a delete or a new person row
 * touched (a span may shrink); a merge makes the survivor's anew (pg_apply_merge.c).
 */
#include "pg_int.h"

#include <stdlib.h>
#include <string.h>

/* Where each clinical table's dates are: a row spans [start, end or start]. */
static const struct {
    const char *table, *start, *end;
} period_dates[] = {
    {"visit_occurrence", "visit_start_date", "visit_end_date"},
    {"visit_detail", "visit_detail_start_date", "visit_detail_end_date"},
    {"condition_occurrence", "condition_start_date", "condition_end_date"},
    {"drug_exposure", "drug_exposure_start_date", "drug_exposure_end_date"},
    {"procedure_occurrence", "procedure_date", "procedure_end_date"},
    {"device_exposure", "device_exposure_start_date", "device_exposure_end_date"},
    {"measurement", "measurement_date", NULL},
    {"observation", "observation_date", NULL},
    {"specimen", "specimen_date", NULL},
    {"note", "note_date", NULL},
    {"death", "death_date", NULL},
};

int pg_period_columns(const cg_omop_table_t *t, const char **start, const char **end)
{
    for (size_t i = 0; i < sizeof(period_dates) / sizeof(period_dates[0]); i++) {
        if (strcmp(t->name, period_dates[i].table) ||
            !cg_omop_column(t, period_dates[i].start, NULL))
            continue;
        *start = period_dates[i].start;
        *end = period_dates[i].end && cg_omop_column(t, period_dates[i].end, NULL)
                   ? period_dates[i].end
                   : NULL;
        return 1;
    }
    return 0;
}

/* The statements that make each touched person's observation_period one span from the first to
 * the last date of their rows (id: the person's own id; type 32817, EHR); a person with no
 * dated row, or no person row, has none. touched: a SELECT of person ids as stored. */
char *pg_periods_sql(const pg_conf_t *conf, const char *touched)
{
    const char *sc = conf->schema;
    cg_buf_t b;
    cg_buf_init(&b);
    cg_buf_printf(&b,
                  "WITH touched AS (SELECT DISTINCT pid FROM (%s) u(pid) WHERE pid IS NOT "
                  "NULL), spans AS (",
                  touched);
    int first = 1;
    for (size_t i = 0; i < sizeof(period_dates) / sizeof(period_dates[0]); i++) {
        const cg_omop_table_t *t = cg_omop_table(period_dates[i].table);
        if (!t || !cg_omop_column(t, period_dates[i].start, NULL))
            continue;
        const char *end = period_dates[i].end && cg_omop_column(t, period_dates[i].end, NULL)
                              ? period_dates[i].end
                              : period_dates[i].start;
        cg_buf_printf(&b,
                      "%sSELECT person_id, %s AS d0, greatest(%s, coalesce(%s, %s)) AS d1 FROM ",
                      first ? "" : " UNION ALL ", period_dates[i].start, period_dates[i].start, end,
                      period_dates[i].start);
        pg_qual(&b, sc, t->name);
        cg_buf_puts(&b, " WHERE person_id IN (SELECT pid FROM touched)");
        first = 0;
    }
    cg_buf_puts(&b, "), agg AS (SELECT g.person_id, min(g.d0) AS d0, max(g.d1) AS d1 FROM spans g "
                    "WHERE EXISTS (SELECT 1 FROM ");
    pg_qual(&b, sc, "person");
    cg_buf_puts(&b,
                " p WHERE p.person_id = g.person_id) GROUP BY g.person_id), gone AS (DELETE FROM ");
    pg_qual(&b, sc, "observation_period");
    cg_buf_puts(&b, " o WHERE o.person_id IN (SELECT pid FROM touched) AND (o.person_id NOT IN "
                    "(SELECT person_id FROM agg) OR o.observation_period_id <> o.person_id)) "
                    "INSERT INTO ");
    pg_qual(&b, sc, "observation_period");
    cg_buf_puts(&b, " AS o (observation_period_id, person_id, observation_period_start_date, "
                    "observation_period_end_date, period_type_concept_id) SELECT person_id, "
                    "person_id, d0, d1, 32817 FROM agg ON CONFLICT (observation_period_id) DO "
                    "UPDATE SET person_id = EXCLUDED.person_id, observation_period_start_date = "
                    "EXCLUDED.observation_period_start_date, observation_period_end_date = "
                    "EXCLUDED.observation_period_end_date WHERE (o.person_id, "
                    "o.observation_period_start_date, o.observation_period_end_date) IS DISTINCT "
                    "FROM (EXCLUDED.person_id, EXCLUDED.observation_period_start_date, "
                    "EXCLUDED.observation_period_end_date)");
    cg_buf_putc(&b, '\0');
    return b.data;
}

/* The persons whose period is made anew from all their rows: those a staged delete names (a
 * period may shrink) and those whose person row came (their earlier rows count from now). */
static char *touched_sql(const pg_conf_t *conf)
{
    cg_buf_t b;
    cg_buf_init(&b);
    int first = 1;
    for (size_t i = 0; i < pg_table_count(); i++) {
        const cg_omop_table_t *t = pg_table_at(i);
        const cg_omop_column_t *col = cg_omop_column(t, "person_id", NULL);
        if (!col)
            continue;
        cg_buf_puts(&b, first ? "SELECT " : " UNION ALL SELECT ");
        pg_id_expr(&b, conf, t, col);
        cg_buf_puts(&b, " FROM ");
        pg_stage_name(&b, t);
        cg_buf_puts(&b, strcmp(t->name, "person") ? " s WHERE s.cg_op = 'd'" : " s");
        first = 0;
    }
    cg_buf_putc(&b, '\0');
    return b.data;
}

/* The end of a widening: the observation_period upsert from the CTE agg (person, d0, d1; the
 * person's column named person), each period only ever widened. After "INSERT INTO ". */
void pg_period_widen(cg_buf_t *b, const char *schema, const char *person)
{
    pg_qual(b, schema, "observation_period");
    cg_buf_puts(b, " AS o (observation_period_id, person_id, observation_period_start_date, "
                   "observation_period_end_date, period_type_concept_id) SELECT ");
    cg_buf_printf(b, "%s, %s", person, person);
    cg_buf_puts(b, ", d0, d1, 32817 FROM agg ON CONFLICT (observation_period_id) DO "
                   "UPDATE SET observation_period_start_date = "
                   "least(o.observation_period_start_date, "
                   "EXCLUDED.observation_period_start_date), observation_period_end_date = "
                   "greatest(o.observation_period_end_date, EXCLUDED.observation_period_end_date) "
                   "WHERE EXCLUDED.observation_period_start_date < o.observation_period_start_date "
                   "OR EXCLUDED.observation_period_end_date > o.observation_period_end_date");
}

/* The periods of the persons whose rows a batch upserted, widened to those rows' dates (read
 * back from the tables by key, so a row PostgreSQL refused counts for nothing): one pass over
 * the batch, not over each person's history. */
static char *widen_sql(const pg_conf_t *conf)
{
    const char *sc = conf->schema;
    cg_buf_t b;
    cg_buf_init(&b);
    cg_buf_puts(&b, "WITH spans AS (");
    int first = 1;
    for (size_t i = 0; i < sizeof(period_dates) / sizeof(period_dates[0]); i++) {
        const cg_omop_table_t *t = cg_omop_table(period_dates[i].table);
        const cg_omop_column_t *key = t ? pg_table_key(t) : NULL;
        if (!key || pg_table_index(t) < 0 || !cg_omop_column(t, period_dates[i].start, NULL))
            continue;
        const char *end = period_dates[i].end && cg_omop_column(t, period_dates[i].end, NULL)
                              ? period_dates[i].end
                              : period_dates[i].start;
        cg_buf_printf(&b,
                      "%sSELECT t.person_id, t.%s AS d0, greatest(t.%s, coalesce(t.%s, t.%s)) AS "
                      "d1 FROM ",
                      first ? "" : " UNION ALL ", period_dates[i].start, period_dates[i].start, end,
                      period_dates[i].start);
        pg_qual(&b, sc, t->name);
        cg_buf_puts(&b, " t WHERE t.");
        pg_ident(&b, key->name);
        cg_buf_puts(&b, " IN (SELECT ");
        pg_value_expr(&b, conf, t, key);
        cg_buf_puts(&b, " FROM ");
        pg_stage_name(&b, t);
        cg_buf_puts(&b, " s WHERE s.cg_op = 'u')");
        first = 0;
    }
    cg_buf_puts(&b, "), agg AS (SELECT g.person_id, min(g.d0) AS d0, max(g.d1) AS d1 FROM spans g "
                    "WHERE EXISTS (SELECT 1 FROM ");
    pg_qual(&b, sc, "person");
    cg_buf_puts(&b, " p WHERE p.person_id = g.person_id) GROUP BY g.person_id) INSERT INTO ");
    pg_period_widen(&b, sc, "person_id");
    cg_buf_putc(&b, '\0');
    return b.data;
}

int pg_derive_periods(pg_apply_t *a, PGconn *c, char *errstr, size_t errstr_size)
{
    if (!a->periods_sql) {
        char *touched = touched_sql(a->conf);
        a->periods_sql = touched ? pg_periods_sql(a->conf, touched) : NULL;
        a->widen_sql = widen_sql(a->conf);
        free(touched);
        if (!a->periods_sql || !a->widen_sql)
            return -1;
    }
    /* widen first: a person made anew after it is then exact; the remake reads each touched
     * person's history, so it runs only when a batch has someone to remake */
    if (pg_exec(c, a->widen_sql, errstr, errstr_size))
        return -1;
    if (a->remake && pg_exec(c, a->periods_sql, errstr, errstr_size))
        return -1;
    a->remake = 0;
    return 0;
}
