/* pg_disease.c - patient-level disease databases (pg.cohorts.databases): a schema per disease
 * cohort holding every row of its members, kept in the batch's transaction.
 *
 * After the batch's cohort evaluation (pg_cohort.c), each person whose rows the batch changed
 * (pg_temp.cg_changed_persons, everyone in a full evaluation) is brought in line in every
 * disease schema: a member gets the main schema's rows of every table with a person_id (an
 * upsert that writes only what differs, so a member's long history is read, not rewritten, when
 * one new result arrives), and loses the rows the main schema no longer has (a delete, a merge
 * moving them to the survivor); a non-member loses all of theirs. So on enter the history is
 * copied in, later rows follow, and on exit (or a withdrawal) the rows are removed. The
 * definition's own `cohort` rows go along. Tables without a person (location, care_site,
 * provider, the vocabulary) are not copied.
 *
 * With pg.cohorts.rows_topic, every row written or removed there is also written, in the same
 * statement, to the main schema's outbox cg_cohort_rows (an upsert with the row as the schema
 * now holds it, a delete with its key), which pg_members.c publishes to the cohort's topic: the
 * members' complete rows for subscribers that do not share the database.
 */
#include "pg_int.h"

#include <stdlib.h>
#include <string.h>

/* The person's column of table t ("person_id", "subject_id" for cohort), or NULL. */
static const char *person_column(const cg_omop_table_t *t)
{
    if (!strcmp(t->name, "cohort"))
        return "subject_id";
    return cg_omop_column(t, "person_id", NULL) ? "person_id" : NULL;
}

#define CHANGED "ANY (ARRAY(SELECT person_id FROM pg_temp.cg_changed_persons))"
#define MEMBERS "ANY (ARRAY(SELECT person_id FROM pg_temp.cg_disease_members))"

/* With rows: "WITH x AS (" before a statement whose RETURNING feeds the outbox. */
static void outbox_open(cg_buf_t *b, int rows)
{
    if (rows)
        cg_buf_puts(b, "WITH x AS (");
}

/* With rows: the RETURNING of a delete (the person and the key) or of an upsert (the row), and
 * the outbox's INSERT of what it returned; then the statement's end. */
static void outbox_close(cg_buf_t *b, int rows, const char *main_schema, long long def,
                         const cg_omop_table_t *t, const char *pc, const char *key, int upsert)
{
    if (!rows) {
        cg_buf_puts(b, ";\n");
        return;
    }
    if (upsert)
        cg_buf_printf(b, " RETURNING d.*) INSERT INTO ");
    else
        cg_buf_printf(b, " RETURNING d.%s AS p, d.\"%s\" AS k) INSERT INTO ", pc, key);
    pg_qual(b, main_schema, "cg_cohort_rows");
    cg_buf_printf(b,
                  " (cohort_definition_id, person_id, table_name, row_key, op, row) SELECT %lld, "
                  "x.%s, '%s', ",
                  def, upsert ? pc : "p", t->name);
    if (upsert)
        cg_buf_printf(b, "x.\"%s\"::text, 'upsert', to_jsonb(x) FROM x;\n", key);
    else
        cg_buf_printf(b, "x.k::text, 'delete', jsonb_build_object('%s', x.k) FROM x;\n", key);
}

/* One table's statements: rows of non-members and rows the main schema lost go; members' rows
 * come (inserted, or updated where they differ). */
static void table_sql(cg_buf_t *b, const char *main_schema, const char *schema, long long def,
                      const cg_omop_table_t *t, int rows)
{
    const char *pc = person_column(t);
    const cg_omop_column_t *key = strcmp(t->name, "cohort") ? pg_table_key(t) : NULL;
    const char *extra = !strcmp(t->name, "cohort") ? " AND m.cohort_definition_id = " : NULL;
    if (!key) { /* no key to match rows by (cohort, and the odd table): all of them anew */
        cg_buf_puts(b, "DELETE FROM ");
        pg_qual(b, schema, t->name);
        cg_buf_printf(b, " WHERE %s = " CHANGED ";\nINSERT INTO ", pc);
        pg_qual(b, schema, t->name);
        cg_buf_puts(b, " SELECT m.* FROM ");
        pg_qual(b, main_schema, t->name);
        cg_buf_printf(b, " m WHERE m.%s = " MEMBERS, pc);
        if (extra)
            cg_buf_printf(b, "%s%lld", extra, def);
        cg_buf_puts(b, ";\n");
        return;
    }
    outbox_open(b, rows);
    cg_buf_puts(b, "DELETE FROM ");
    pg_qual(b, schema, t->name);
    cg_buf_printf(b,
                  " d WHERE d.%s = " CHANGED " AND NOT EXISTS (SELECT 1 FROM "
                  "pg_temp.cg_disease_members dm WHERE dm.person_id = d.%s AND EXISTS (SELECT 1 "
                  "FROM ",
                  pc, pc);
    pg_qual(b, main_schema, t->name);
    cg_buf_puts(b, " m WHERE m.");
    pg_ident(b, key->name);
    cg_buf_puts(b, " = d.");
    pg_ident(b, key->name);
    cg_buf_printf(b, " AND m.%s = d.%s))", pc, pc);
    outbox_close(b, rows, main_schema, def, t, pc, key->name, 0);
    /* a row that another instance's batch moved to a changed person who is no member, while
     * this schema still has it under its former person (that batch saw no former person) */
    outbox_open(b, rows);
    cg_buf_puts(b, "DELETE FROM ");
    pg_qual(b, schema, t->name);
    cg_buf_puts(b, " d USING ");
    pg_qual(b, main_schema, t->name);
    cg_buf_printf(b, " m WHERE m.%s = " CHANGED " AND m.", pc);
    pg_ident(b, key->name);
    cg_buf_puts(b, " = d.");
    pg_ident(b, key->name);
    cg_buf_printf(b,
                  " AND d.%s <> m.%s AND NOT EXISTS (SELECT 1 FROM pg_temp.cg_disease_members dm "
                  "WHERE dm.person_id = m.%s)",
                  pc, pc, pc);
    outbox_close(b, rows, main_schema, def, t, pc, key->name, 0);
    outbox_open(b, rows);
    cg_buf_puts(b, "INSERT INTO ");
    pg_qual(b, schema, t->name);
    cg_buf_puts(b, " AS d SELECT m.* FROM ");
    pg_qual(b, main_schema, t->name);
    cg_buf_printf(b, " m WHERE m.%s = " MEMBERS " ON CONFLICT (", pc);
    pg_ident(b, key->name);
    cg_buf_puts(b, ") DO UPDATE SET (");
    for (size_t i = 0; i < t->n_columns; i++) {
        cg_buf_puts(b, i ? ", " : "");
        pg_ident(b, t->columns[i].name);
    }
    cg_buf_puts(b, ") = ROW(");
    for (size_t i = 0; i < t->n_columns; i++) {
        cg_buf_puts(b, i ? ", EXCLUDED." : "EXCLUDED.");
        pg_ident(b, t->columns[i].name);
    }
    cg_buf_puts(b, ") WHERE d IS DISTINCT FROM EXCLUDED");
    outbox_close(b, rows, main_schema, def, t, pc, key->name, 1);
}

char *pg_disease_sql(const char *main_schema, const char *schema, long long def, int rows)
{
    cg_buf_t b;
    cg_buf_init(&b);
    cg_buf_puts(&b, "TRUNCATE pg_temp.cg_disease_members;\nINSERT INTO pg_temp.cg_disease_members "
                    "(person_id) SELECT cp.person_id FROM pg_temp.cg_changed_persons cp WHERE "
                    "EXISTS (SELECT 1 FROM ");
    pg_qual(&b, main_schema, "cohort");
    cg_buf_printf(&b, " c WHERE c.cohort_definition_id = %lld AND c.subject_id = cp.person_id);\n",
                  def);
    /* parents first (person before its visits), as the sink applies them */
    const cg_omop_table_t *t;
    for (size_t i = 0; (t = pg_table_at(i)); i++)
        if (person_column(t))
            table_sql(&b, main_schema, schema, def, t, rows);
    /* the definition's own rows: its membership is on the events topic already */
    if ((t = cg_omop_table("cohort")) && pg_table_index(t) < 0)
        table_sql(&b, main_schema, schema, def, t, 0);
    cg_buf_putc(&b, '\0');
    return b.data;
}

void pg_disease_ddl(cg_buf_t *b)
{
    cg_buf_puts(b, "CREATE TEMP TABLE IF NOT EXISTS cg_disease_members (person_id bigint PRIMARY "
                   "KEY);\n");
}
