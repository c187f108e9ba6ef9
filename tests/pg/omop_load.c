/* omop_load.c - NDJSON OMOP envelopes into a real PostgreSQL (see omop_load.h). */
#include "omop_load.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "cg_omop.h"

#define OMOP_STANDARD "omop-cdm-5.4"

/* A primary key already loaded and where it came from: "table\0key" -> "file:line". */
typedef struct seen_key {
    struct seen_key *next;
    char *key;
    size_t key_len;
    char *where;
} seen_key_t;

struct cg_omop_loader {
    PGconn *conn;
    char schema[64];
    bool keep;
    bool strict;
    bool upsert;
    FILE *report;
    char **insert_sql; /* per table, built on first use */
    size_t *inserted;  /* per table */
    size_t skipped;
    size_t deleted; /* records with "op":"delete" applied */
    cg_omop_load_failure_t *failures;
    size_t n_failures, cap_failures;
    seen_key_t **seen; /* hash buckets */
    size_t n_buckets;
};

static void copy(char *dst, size_t size, const char *src)
{
    snprintf(dst, size, "%s", src ? src : "");
}

/* Records a failure and prints it to the report stream. */
static void add_failure(cg_omop_loader_t *l, const char *origin, long line, const char *table,
                        const char *column, const char *sqlstate, const char *fmt, ...)
    __attribute__((format(printf, 7, 8)));

static void add_failure(cg_omop_loader_t *l, const char *origin, long line, const char *table,
                        const char *column, const char *sqlstate, const char *fmt, ...)
{
    cg_omop_load_failure_t f;
    memset(&f, 0, sizeof f);
    copy(f.origin, sizeof f.origin, origin);
    f.line = line;
    copy(f.table, sizeof f.table, table);
    copy(f.column, sizeof f.column, column);
    copy(f.sqlstate, sizeof f.sqlstate, sqlstate);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(f.message, sizeof f.message, fmt, ap);
    va_end(ap);
    if (l->n_failures == l->cap_failures) {
        size_t cap = l->cap_failures ? l->cap_failures * 2 : 16;
        cg_omop_load_failure_t *p = realloc(l->failures, cap * sizeof *p);
        if (!p) {
            fprintf(stderr, "cg-omop-load: out of memory\n");
            abort();
        }
        l->failures = p;
        l->cap_failures = cap;
    }
    l->failures[l->n_failures++] = f;
    if (l->report) {
        fprintf(l->report, "%s:%ld: %s%s%s%s%s (SQLSTATE %s)\n", f.origin, f.line, f.table,
                f.table[0] ? ": " : "", f.column, f.column[0] ? ": " : "", f.message, f.sqlstate);
        fflush(l->report);
    }
}

/* PostgreSQL's message on one line, with its DETAIL when it has one. */
static void pg_message(const PGresult *res, const PGconn *conn, char *buf, size_t size)
{
    const char *primary = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    const char *detail = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL) : NULL;
    if (!primary)
        primary = PQerrorMessage(conn);
    snprintf(buf, size, "%s%s%s", primary, detail ? "; " : "", detail ? detail : "");
    size_t n = strlen(buf);
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
        buf[--n] = '\0';
    for (char *p = buf; *p; p++)
        if (*p == '\n')
            *p = ' ';
}

static int exec_ok(cg_omop_loader_t *l, const char *sql, char *errstr, size_t errstr_size)
{
    PGresult *res = PQexec(l->conn, sql);
    ExecStatusType st = PQresultStatus(res);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        char msg[512];
        pg_message(res, l->conn, msg, sizeof msg);
        snprintf(errstr, errstr_size, "%s", msg);
        PQclear(res);
        return -1;
    }
    PQclear(res);
    return 0;
}

static void quiet_notices(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

/* "schema.table", identifiers quoted as needed, appended to a memstream */
static void write_qualified(FILE *f, const char *schema, const char *name)
{
    cg_omop_write_ident(f, schema);
    fputc('.', f);
    cg_omop_write_ident(f, name);
}

cg_omop_loader_t *cg_omop_loader_new(const cg_omop_load_options_t *opt, char *errstr,
                                     size_t errstr_size)
{
    static unsigned counter;
    const char *conninfo = opt && opt->conninfo ? opt->conninfo : getenv("COHORTGATE_TEST_PG");
    if (!conninfo) {
        snprintf(errstr, errstr_size, "no connection string (set COHORTGATE_TEST_PG)");
        return NULL;
    }
    cg_omop_loader_t *l = calloc(1, sizeof *l);
    size_t n_tables = cg_omop_table_count();
    if (l) {
        l->insert_sql = calloc(n_tables, sizeof *l->insert_sql);
        l->inserted = calloc(n_tables, sizeof *l->inserted);
        l->n_buckets = 4096;
        l->seen = calloc(l->n_buckets, sizeof *l->seen);
    }
    if (!l || !l->insert_sql || !l->inserted || !l->seen) {
        snprintf(errstr, errstr_size, "out of memory");
        cg_omop_loader_destroy(l);
        return NULL;
    }
    l->keep = opt && opt->keep;
    l->strict = opt && opt->strict;
    l->upsert = opt && opt->upsert;
    l->report = opt ? opt->report : NULL;
    if (opt && opt->schema)
        snprintf(l->schema, sizeof l->schema, "%s", opt->schema);
    else
        snprintf(l->schema, sizeof l->schema, "cg_omop_%ld_%ld_%u", (long)getpid(),
                 (long)time(NULL), counter++);

    l->conn = PQconnectdb(conninfo);
    if (PQstatus(l->conn) != CONNECTION_OK) {
        snprintf(errstr, errstr_size, "cannot connect to PostgreSQL (%s): %s", conninfo,
                 PQerrorMessage(l->conn));
        l->keep = true; /* nothing to drop */
        cg_omop_loader_destroy(l);
        return NULL;
    }
    PQsetNoticeProcessor(l->conn, quiet_notices, NULL);

    /* the DDL in one simple-protocol query; CREATE SCHEMA without IF NOT EXISTS first, so that
     * a loader never writes into a schema it did not make unless told its name */
    char *sql = NULL;
    size_t sql_len = 0;
    FILE *f = open_memstream(&sql, &sql_len);
    if (!f) {
        snprintf(errstr, errstr_size, "out of memory");
        l->keep = true;
        cg_omop_loader_destroy(l);
        return NULL;
    }
    /* JSON is UTF-8 whatever the environment says (PGCLIENTENCODING) */
    fputs("SET synchronous_commit = off;\nSET client_encoding = 'UTF8';\n", f);
    if (!(opt && opt->schema)) {
        fputs("CREATE SCHEMA ", f);
        cg_omop_write_ident(f, l->schema);
        fputs(";\n", f);
    }
    cg_omop_write_ddl(f, l->schema);
    fclose(f);
    char err[512];
    if (exec_ok(l, sql, err, sizeof err) != 0) {
        snprintf(errstr, errstr_size, "creating schema %s: %s", l->schema, err);
        free(sql);
        cg_omop_loader_destroy(l);
        return NULL;
    }
    free(sql);
    return l;
}

void cg_omop_loader_destroy(cg_omop_loader_t *l)
{
    if (!l)
        return;
    if (l->conn && PQstatus(l->conn) == CONNECTION_OK && !l->keep) {
        char *sql = NULL;
        size_t n = 0;
        FILE *f = open_memstream(&sql, &n);
        if (f) {
            fputs("DROP SCHEMA IF EXISTS ", f);
            cg_omop_write_ident(f, l->schema);
            fputs(" CASCADE", f);
            fclose(f);
            PQclear(PQexec(l->conn, sql));
            free(sql);
        }
    }
    PQfinish(l->conn);
    if (l->insert_sql)
        for (size_t i = 0; i < cg_omop_table_count(); i++)
            free(l->insert_sql[i]);
    free(l->insert_sql);
    free(l->inserted);
    if (l->seen) {
        for (size_t b = 0; b < l->n_buckets; b++) {
            seen_key_t *k = l->seen[b];
            while (k) {
                seen_key_t *next = k->next;
                free(k->key);
                free(k->where);
                free(k);
                k = next;
            }
        }
    }
    free(l->seen);
    free(l->failures);
    free(l);
}

/* A delete record ("op":"delete", README "What goes out") carries the row's id (and person_id):
 * the row with that id goes, as a sink retracts it; a table without a primary key (death) is
 * one row per person. */
static int apply_delete(cg_omop_loader_t *l, const char *origin, long line,
                        const cg_omop_table_t *tab, json_t *row)
{
    const cg_omop_column_t *pk = cg_omop_primary_key(tab, NULL);
    const char *col = pk ? pk->name : "person_id";
    char buf[64];
    const char *value = NULL;
    size_t vlen;
    bool quoted;
    json_t *jv = json_object_get(row, col);
    if (!jv || !cg_omop_json_text(jv, buf, sizeof buf, &value, &vlen, &quoted) || !value) {
        add_failure(l, origin, line, tab->name, col, "CGENV", "a delete without its %s", col);
        return -1;
    }
    char *sql = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&sql, &n);
    if (!f)
        return -1;
    fputs("DELETE FROM ", f);
    write_qualified(f, l->schema, tab->name);
    fputs(" WHERE ", f);
    cg_omop_write_ident(f, col);
    fputs(" = $1", f);
    fclose(f);
    PGresult *res = PQexecParams(l->conn, sql, 1, NULL, &value, NULL, NULL, 0);
    free(sql);
    int rc = PQresultStatus(res) == PGRES_COMMAND_OK ? 0 : -1;
    if (rc) {
        char msg[640];
        pg_message(res, l->conn, msg, sizeof msg);
        add_failure(l, origin, line, tab->name, col, "CGDEL", "delete failed: %s", msg);
    } else {
        l->deleted++;
    }
    PQclear(res);
    return rc;
}

static const char *insert_sql(cg_omop_loader_t *l, size_t t)
{
    if (l->insert_sql[t])
        return l->insert_sql[t];
    const cg_omop_table_t *tab = cg_omop_table_at(t);
    char *sql = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&sql, &n);
    if (!f)
        return NULL;
    fputs("INSERT INTO ", f);
    write_qualified(f, l->schema, tab->name);
    fputs(" (", f);
    for (size_t c = 0; c < tab->n_columns; c++) {
        if (c)
            fputs(", ", f);
        cg_omop_write_ident(f, tab->columns[c].name);
    }
    fputs(") VALUES (", f);
    for (size_t c = 0; c < tab->n_columns; c++)
        fprintf(f, "%s$%zu", c ? ", " : "", c + 1);
    fputc(')', f);
    const cg_omop_column_t *pk = cg_omop_primary_key(tab, NULL);
    if (l->upsert && pk) {
        fputs(" ON CONFLICT (", f);
        cg_omop_write_ident(f, pk->name);
        fputs(") DO UPDATE SET ", f);
        int first = 1;
        for (size_t c = 0; c < tab->n_columns; c++) {
            if (&tab->columns[c] == pk)
                continue;
            fputs(first ? "" : ", ", f);
            cg_omop_write_ident(f, tab->columns[c].name);
            fputs(" = EXCLUDED.", f);
            cg_omop_write_ident(f, tab->columns[c].name);
            first = 0;
        }
    }
    fclose(f);
    l->insert_sql[t] = sql;
    return sql;
}

static size_t hash(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
    return (size_t)h;
}

/* "table\0value" into key (returns its length) */
static size_t make_key(char *key, size_t size, const char *table, const char *value)
{
    size_t a = strlen(table), b = strlen(value);
    if (a + 1 + b > size)
        b = size - a - 1;
    memcpy(key, table, a);
    key[a] = '\0';
    memcpy(key + a + 1, value, b);
    return a + 1 + b;
}

static seen_key_t *seen_find(cg_omop_loader_t *l, const char *key, size_t len)
{
    for (seen_key_t *k = l->seen[hash(key, len) % l->n_buckets]; k; k = k->next)
        if (k->key_len == len && memcmp(k->key, key, len) == 0)
            return k;
    return NULL;
}

static void seen_add(cg_omop_loader_t *l, const char *key, size_t len, const char *origin,
                     long line)
{
    seen_key_t *k = calloc(1, sizeof *k);
    char where[300];
    snprintf(where, sizeof where, "%s:%ld", origin, line);
    if (!k || !(k->key = malloc(len)) || !(k->where = strdup(where))) {
        if (k)
            free(k->key);
        free(k);
        return; /* only the first-seen hint is lost */
    }
    memcpy(k->key, key, len);
    k->key_len = len;
    size_t b = hash(key, len) % l->n_buckets;
    k->next = l->seen[b];
    l->seen[b] = k;
}

/* After a data error (SQLSTATE class 22) the INSERT does not say which parameter was bad:
 * cast each one alone, in PostgreSQL, to its column's type to find it. Explicit casts to
 * varchar(n) truncate instead of failing, so lengths are compared with PostgreSQL's own
 * char_length. */
static const char *find_bad_column(cg_omop_loader_t *l, const cg_omop_table_t *tab,
                                   const char *const *values)
{
    char type[32], sql[128];
    for (size_t c = 0; c < tab->n_columns; c++) {
        const cg_omop_column_t *col = &tab->columns[c];
        if (!values[c])
            continue;
        cg_omop_pg_type(col, type, sizeof type);
        if (cg_omop_column_type(col) == CG_OMOP_VARCHAR)
            snprintf(sql, sizeof sql, "SELECT char_length($1::text) <= %d", col->max_length);
        else
            snprintf(sql, sizeof sql, "SELECT ($1::%s) IS NOT NULL", type);
        PGresult *res = PQexecParams(l->conn, sql, 1, NULL, &values[c], NULL, NULL, 0);
        bool bad = PQresultStatus(res) != PGRES_TUPLES_OK ||
                   (PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 0), "f") == 0);
        PQclear(res);
        if (bad)
            return col->name;
    }
    return NULL;
}

int cg_omop_loader_load_line(cg_omop_loader_t *l, const char *origin, long line, const char *text,
                             size_t len)
{
    while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r'))
        len--;
    size_t i = 0;
    while (i < len && (text[i] == ' ' || text[i] == '\t'))
        i++;
    if (i == len)
        return 0;

    json_error_t jerr;
    json_t *env = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!env) {
        add_failure(l, origin, line, "", "", "CGENV", "not JSON: %s (column %d)", jerr.text,
                    jerr.column);
        return -1;
    }
    int rc = -1;
    const char *standard = json_string_value(json_object_get(env, "standard"));
    const char *table = json_string_value(json_object_get(env, "table"));
    json_t *row = json_object_get(env, "row");
    if (!json_is_object(env) || !standard) {
        add_failure(l, origin, line, "", "", "CGENV",
                    "not a record envelope: no \"standard\" string");
        goto out;
    }
    if (strcmp(standard, OMOP_STANDARD) != 0) {
        l->skipped++;
        rc = 0;
        goto out;
    }
    const cg_omop_table_t *tab = cg_omop_table(table);
    if (!tab) {
        add_failure(l, origin, line, "", "", "CGENV", "%s%s%s",
                    table ? "no table " : "envelope has no \"table\" string", table ? table : "",
                    table ? " in OMOP CDM v5.4" : "");
        goto out;
    }
    if (!json_is_object(row)) {
        add_failure(l, origin, line, tab->name, "", "CGENV", "envelope has no \"row\" object");
        goto out;
    }
    const char *op = json_string_value(json_object_get(env, "op"));
    if (op && !strcmp(op, "delete")) {
        rc = apply_delete(l, origin, line, tab, row);
        goto out;
    }
    const char *key;
    json_t *v;
    bool bad = false;
    json_object_foreach(row, key, v)
    {
        if (!cg_omop_column(tab, key, NULL)) {
            add_failure(l, origin, line, tab->name, key, "CGENV", "no column %s in table %s", key,
                        tab->name);
            bad = true;
        }
    }
    if (bad)
        goto out;
    if (l->strict) {
        char why[512];
        if (cg_omop_check_row(tab, row, why, sizeof why) > 0) {
            add_failure(l, origin, line, tab->name, "", "CGCHK", "%s", why);
            goto out;
        }
    }

    /* the parameters: text form of each column's JSON value, NULL when null or absent */
    size_t t_index = (size_t)(tab - cg_omop_table_at(0));
    const char **values = calloc(tab->n_columns, sizeof *values);
    char(*bufs)[64] = calloc(tab->n_columns, sizeof *bufs);
    if (!values || !bufs) {
        free(values);
        free(bufs);
        add_failure(l, origin, line, tab->name, "", "CGENV", "out of memory");
        goto out;
    }
    for (size_t c = 0; c < tab->n_columns; c++) {
        size_t vlen;
        bool quoted;
        json_t *jv = json_object_get(row, tab->columns[c].name);
        if (!cg_omop_json_text(jv, bufs[c], sizeof bufs[c], &values[c], &vlen, &quoted)) {
            add_failure(l, origin, line, tab->name, tab->columns[c].name, "CGENV",
                        "a JSON %s is not a column value", json_is_object(jv) ? "object" : "array");
            bad = true;
        } else if (quoted && memchr(values[c], '\0', vlen)) {
            /* libpq sends C strings: a NUL would silently cut the value */
            add_failure(l, origin, line, tab->name, tab->columns[c].name, "CGENV",
                        "string holds a NUL character, which PostgreSQL text cannot store");
            bad = true;
        }
    }
    if (!bad) {
        const char *sql = insert_sql(l, t_index);
        PGresult *res =
            sql ? PQexecParams(l->conn, sql, (int)tab->n_columns, NULL, values, NULL, NULL, 0)
                : NULL;
        size_t pk_index = 0;
        const cg_omop_column_t *pk = cg_omop_primary_key(tab, &pk_index);
        char keybuf[512];
        size_t key_len = 0;
        if (pk && values[pk_index])
            key_len = make_key(keybuf, sizeof keybuf, tab->name, values[pk_index]);
        if (PQresultStatus(res) == PGRES_COMMAND_OK) {
            l->inserted[t_index]++;
            if (key_len)
                seen_add(l, keybuf, key_len, origin, line);
            rc = 1;
        } else {
            char msg[640];
            const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
            const char *column = res ? PQresultErrorField(res, PG_DIAG_COLUMN_NAME) : NULL;
            pg_message(res, l->conn, msg, sizeof msg);
            if (state && strcmp(state, "23505") == 0 && pk) {
                seen_key_t *first = key_len ? seen_find(l, keybuf, key_len) : NULL;
                add_failure(l, origin, line, tab->name, pk->name, state,
                            "duplicate primary key %s=%s, first loaded at %s (ids must be "
                            "unique and deterministic): %s",
                            pk->name, values[pk_index], first ? first->where : "an earlier load",
                            msg);
            } else {
                if (!column && state && strncmp(state, "22", 2) == 0)
                    column = find_bad_column(l, tab, values);
                add_failure(l, origin, line, tab->name, column, state ? state : "?????", "%s", msg);
            }
            if (PQstatus(l->conn) != CONNECTION_OK)
                PQreset(l->conn);
        }
        PQclear(res);
    }
    free(values);
    free(bufs);
out:
    json_decref(env);
    return rc;
}

int cg_omop_loader_load_stream(cg_omop_loader_t *l, FILE *in, const char *origin)
{
    char *buf = NULL;
    size_t cap = 0;
    ssize_t n;
    long line = 0;
    while ((n = getline(&buf, &cap, in)) >= 0) {
        line++;
        cg_omop_loader_load_line(l, origin, line, buf, (size_t)n);
    }
    free(buf);
    if (ferror(in)) {
        add_failure(l, origin, line + 1, "", "", "CGENV", "read error");
        return -1;
    }
    return 0;
}

int cg_omop_loader_load_file(cg_omop_loader_t *l, const char *path)
{
    if (strcmp(path, "-") == 0)
        return cg_omop_loader_load_stream(l, stdin, "-");
    FILE *f = fopen(path, "r");
    if (!f) {
        add_failure(l, path, 0, "", "", "CGENV", "cannot open: %s", strerror(errno));
        return -1;
    }
    int rc = cg_omop_loader_load_stream(l, f, path);
    fclose(f);
    return rc;
}

size_t cg_omop_loader_n_failures(const cg_omop_loader_t *l)
{
    return l->n_failures;
}

const cg_omop_load_failure_t *cg_omop_loader_failure(const cg_omop_loader_t *l, size_t i)
{
    return i < l->n_failures ? &l->failures[i] : NULL;
}

size_t cg_omop_loader_inserted(const cg_omop_loader_t *l, const char *table)
{
    size_t total = 0;
    for (size_t t = 0; t < cg_omop_table_count(); t++)
        if (!table || strcmp(cg_omop_table_at(t)->name, table) == 0)
            total += l->inserted[t];
    return total;
}

size_t cg_omop_loader_skipped(const cg_omop_loader_t *l)
{
    return l->skipped;
}

const char *cg_omop_loader_schema(const cg_omop_loader_t *l)
{
    return l->schema;
}

PGconn *cg_omop_loader_conn(cg_omop_loader_t *l)
{
    return l->conn;
}

void cg_omop_loader_print_summary(const cg_omop_loader_t *l, FILE *out)
{
    fprintf(out, "rows inserted per table (schema %s):\n", l->schema);
    for (size_t t = 0; t < cg_omop_table_count(); t++)
        if (l->inserted[t])
            fprintf(out, "  %-24s %zu\n", cg_omop_table_at(t)->name, l->inserted[t]);
    fprintf(out, "total: %zu inserted, %zu failed, %zu skipped (not %s)\n",
            cg_omop_loader_inserted(l, NULL), l->n_failures, l->skipped, OMOP_STANDARD);
    if (l->deleted)
        fprintf(out, "deleted: %zu (records with op delete)\n", l->deleted);
}
