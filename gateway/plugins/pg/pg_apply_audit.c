/* pg_apply_audit.c - the release audit of the open transaction: the rows it loads counted per
 * (policy, table, level) as they are staged, less the rows the database refuses, and written
 * into cohortgate_release_audit in one INSERT before the commit, so the audit says what the
 * subscriber's database holds.
 */
#include "pg_int.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/* The open transaction's audit line of (policy, table, level), made when new: its index, or -1
 * when out of memory. */
long pg_audit_line(pg_apply_t *a, const char *policy, size_t table, int level)
{
    for (size_t i = 0; i < a->n_audit; i++)
        if (a->audit[i].table == table && a->audit[i].level == level &&
            !strcmp(a->audit[i].policy, policy))
            return (long)i;
    if (a->n_audit == a->cap_audit) {
        size_t cap = a->cap_audit ? a->cap_audit * 2 : 16;
        audit_line_t *v = realloc(a->audit, cap * sizeof(*v));
        if (!v)
            return -1;
        memset(v + a->cap_audit, 0, (cap - a->cap_audit) * sizeof(*v));
        a->audit = v;
        a->cap_audit = cap;
    }
    audit_line_t *l = &a->audit[a->n_audit];
    if (!l->policy || strcmp(l->policy, policy)) {
        char *p = strdup(policy);
        if (!p)
            return -1;
        free(l->policy);
        l->policy = p;
    }
    l->table = table;
    l->level = level;
    l->rows = 0;
    return (long)a->n_audit++;
}

/* An element of a PostgreSQL array literal: quoted, with its quotes and backslashes escaped. */
static void array_elem(cg_buf_t *b, const char *v)
{
    cg_buf_putc(b, '"');
    for (; *v; v++) {
        if (*v == '"' || *v == '\\')
            cg_buf_putc(b, '\\');
        cg_buf_putc(b, *v);
    }
    cg_buf_putc(b, '"');
}

int pg_apply_audit(pg_apply_t *a, PGconn *c, const char *subscriber, char *errstr,
                   size_t errstr_size)
{
    cg_buf_t pol, tab, lev, cnt;
    cg_buf_init(&pol);
    cg_buf_init(&tab);
    cg_buf_init(&lev);
    cg_buf_init(&cnt);
    size_t n = 0;
    for (size_t i = 0; i < a->n_audit; i++) {
        const audit_line_t *l = &a->audit[i];
        if (l->rows <= 0)
            continue;
        cg_buf_putc(&pol, n ? ',' : '{');
        array_elem(&pol, l->policy);
        cg_buf_putc(&tab, n ? ',' : '{');
        array_elem(&tab, pg_table_at(l->table)->name);
        cg_buf_printf(&lev, "%c%d", n ? ',' : '{', l->level);
        cg_buf_printf(&cnt, "%c%" PRId64, n ? ',' : '{', l->rows);
        n++;
    }
    int rc = 0;
    if (n) {
        cg_buf_puts(&pol, "}");
        cg_buf_puts(&tab, "}");
        cg_buf_puts(&lev, "}");
        cg_buf_puts(&cnt, "}");
        cg_buf_t q;
        cg_buf_init(&q);
        cg_buf_puts(&q, "INSERT INTO ");
        pg_qual(&q, a->conf->schema, "cohortgate_release_audit");
        cg_buf_puts(&q, " (subscriber, policy, table_name, level, rows) SELECT $1, u.p, u.t, "
                        "u.l, u.n FROM unnest($2::text[], $3::text[], $4::smallint[], "
                        "$5::bigint[]) AS u(p, t, l, n)");
        int oom = cg_buf_putc(&q, '\0') != CG_OK || cg_buf_putc(&pol, '\0') != CG_OK ||
                  cg_buf_putc(&tab, '\0') != CG_OK || cg_buf_putc(&lev, '\0') != CG_OK ||
                  cg_buf_putc(&cnt, '\0') != CG_OK;
        if (oom) {
            snprintf(errstr, errstr_size, "out of memory");
            rc = -1;
        } else {
            const char *p[5] = {subscriber, pol.data, tab.data, lev.data, cnt.data};
            PGresult *r = PQexecParams(c, q.data, 5, NULL, p, NULL, NULL, 0);
            if (PQresultStatus(r) != PGRES_COMMAND_OK) {
                pg_message(r, c, errstr, errstr_size);
                rc = -1;
            }
            PQclear(r);
        }
        cg_buf_free(&q);
    }
    cg_buf_free(&pol);
    cg_buf_free(&tab);
    cg_buf_free(&lev);
    cg_buf_free(&cnt);
    return rc;
}
