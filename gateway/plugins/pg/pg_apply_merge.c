/* pg_apply_merge.c - a person merge in the open transaction: the merged person's rows moved to
 * the survivor (one death and one observation_period per person kept), the merge recorded in
 * cg_person_merge so later records of the merged person follow it, both persons tracked for
 * the cohorts.
 */
#include "pg_int.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

int pg_apply_merge(pg_apply_t *a, PGconn *c, const char *merged, const char *survivor,
                   const pg_pos_t *pos, char *errstr, size_t errstr_size)
{
    const pg_conf_t *conf = a->conf;
    int ints = conf->id_type == PG_IDS_INTEGER;
    cg_buf_t b;
    cg_buf_init(&b);
    /* $1 merged, $2 survivor: their ids as the tables store them */
    const char *m_id = "$1::bigint", *s_id = "$2::bigint";
    cg_buf_t mid, sid;
    cg_buf_init(&mid);
    cg_buf_init(&sid);
    if (ints) {
        cg_buf_puts(&mid, "(SELECT id FROM ");
        pg_qual(&mid, conf->schema, "cg_id_map");
        cg_buf_puts(&mid, " WHERE source_id = $1::bigint)");
        cg_buf_puts(&sid, "(SELECT id FROM ");
        pg_qual(&sid, conf->schema, "cg_id_map");
        cg_buf_puts(&sid, " WHERE source_id = $2::bigint)");
    } else {
        cg_buf_puts(&mid, m_id);
        cg_buf_puts(&sid, s_id);
    }
    cg_buf_putc(&mid, '\0');
    cg_buf_putc(&sid, '\0');
    /* statements one by one: the extended protocol takes one per call */
    const char *params[2] = {merged, survivor};
    const Oid types[2] = {20, 20}; /* int8: typed, so a statement may leave one out */
    int rc = 0;
    char *stmts[64];
    size_t n = 0;
    if (ints) {
        cg_buf_reset(&b);
        cg_buf_puts(&b, "INSERT INTO ");
        pg_qual(&b, conf->schema, "cg_id_map");
        cg_buf_puts(&b, " (source_id) SELECT v FROM (VALUES ($2::bigint), ($1::bigint)) x(v) "
                        "WHERE NOT EXISTS (SELECT 1 FROM ");
        pg_qual(&b, conf->schema, "cg_id_map");
        cg_buf_puts(&b, " m WHERE m.source_id = x.v) ON CONFLICT DO NOTHING");
        cg_buf_putc(&b, '\0');
        stmts[n++] = strdup(b.data);
    }
    cg_buf_reset(&b);
    cg_buf_puts(&b, "INSERT INTO ");
    pg_qual(&b, conf->schema, "cg_person_merge");
    cg_buf_puts(&b, " (merged_source_id, survivor_source_id) VALUES ($1::bigint, $2::bigint) ON "
                    "CONFLICT (merged_source_id) DO UPDATE SET survivor_source_id = "
                    "EXCLUDED.survivor_source_id");
    cg_buf_putc(&b, '\0');
    stmts[n++] = strdup(b.data);
    for (size_t i = 0; i < pg_table_count() && n + 4 < sizeof(stmts) / sizeof(stmts[0]); i++) {
        const cg_omop_table_t *t = pg_table_at(i);
        if (!strcmp(t->name, "person") || !cg_omop_column(t, "person_id", NULL))
            continue;
        if (!strcmp(t->name, "observation_period")) { /* derived: the survivor's is made anew */
            cg_buf_reset(&b);
            cg_buf_puts(&b, "DELETE FROM ");
            pg_qual(&b, conf->schema, "observation_period");
            cg_buf_printf(&b, " WHERE person_id = %s", mid.data);
            cg_buf_putc(&b, '\0');
            stmts[n++] = strdup(b.data);
            continue;
        }
        if (!strcmp(t->name, "death")) { /* one per person: the survivor's own stays */
            cg_buf_reset(&b);
            cg_buf_puts(&b, "DELETE FROM ");
            pg_qual(&b, conf->schema, "death");
            cg_buf_printf(&b, " WHERE person_id = %s AND EXISTS (SELECT 1 FROM ", mid.data);
            pg_qual(&b, conf->schema, "death");
            cg_buf_printf(&b, " WHERE person_id = %s)", sid.data);
            cg_buf_putc(&b, '\0');
            stmts[n++] = strdup(b.data);
        }
        cg_buf_reset(&b);
        cg_buf_puts(&b, "UPDATE ");
        pg_qual(&b, conf->schema, t->name);
        cg_buf_printf(&b, " SET person_id = %s WHERE person_id = %s", sid.data, mid.data);
        cg_buf_putc(&b, '\0');
        stmts[n++] = strdup(b.data);
    }
    cg_buf_reset(&b);
    cg_buf_puts(&b, "DELETE FROM ");
    pg_qual(&b, conf->schema, "person");
    cg_buf_printf(&b, " WHERE person_id = %s", mid.data);
    cg_buf_putc(&b, '\0');
    stmts[n++] = strdup(b.data);
    cg_buf_reset(&b);
    cg_buf_printf(&b, "SELECT %s", sid.data);
    cg_buf_putc(&b, '\0');
    stmts[n++] = pg_periods_sql(conf, b.data);
    if (a->track) { /* both persons: the merged one leaves its cohorts, the survivor may join */
        char *topic = PQescapeLiteral(c, pos->topic, strlen(pos->topic));
        cg_buf_t src;
        cg_buf_init(&src);
        cg_buf_printf(&src,
                      "SELECT v AS pid, %s::text AS cg_topic, %" PRId32 " AS cg_part, %" PRId64
                      "::bigint AS cg_off, %" PRId64 "::bigint AS cg_seq FROM (VALUES (%s), "
                      "(%s)) p(v)",
                      topic ? topic : "NULL", pos->partition, pos->offset, ++a->seq, mid.data,
                      sid.data);
        cg_buf_putc(&src, '\0');
        cg_buf_reset(&b);
        pg_track_insert(&b, src.data);
        cg_buf_putc(&b, '\0');
        stmts[n++] = strdup(b.data);
        cg_buf_free(&src);
        PQfreemem(topic);
    }
    for (size_t i = 0; i < n; i++) {
        if (rc || !stmts[i]) {
            rc = -1;
            free(stmts[i]);
            continue;
        }
        PGresult *r = PQexecParams(c, stmts[i], 2, types, params, NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            pg_message(r, c, errstr, errstr_size);
            rc = -1;
        }
        PQclear(r);
        free(stmts[i]);
    }
    cg_buf_free(&b);
    cg_buf_free(&mid);
    cg_buf_free(&sid);
    if (!rc)
        a->st.merged++;
    return rc;
}
