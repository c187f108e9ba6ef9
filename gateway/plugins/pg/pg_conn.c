/* pg_conn.c - the sink's connection to PostgreSQL: the connection string from the environment
 * (pg.conninfo_env) or the config (pg.conninfo), the password from pg.password_file or libpq's
 * own sources; errors say where it tried to connect, never with what secret. */
#include "pg_int.h"

#include "cg_omop.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void quiet_notices(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

/* The conninfo in use: the environment variable when it is set, else the config's. */
static const char *conninfo_of(const pg_conf_t *conf)
{
    const char *env = conf->conninfo_env && *conf->conninfo_env ? getenv(conf->conninfo_env) : NULL;
    if (env && *env)
        return env;
    return conf->conninfo ? conf->conninfo : "";
}

int pg_read_password(const char *path, char *buf, size_t size, char *errstr, size_t errstr_size)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(errstr, errstr_size, "pg.password_file %s cannot be read", path);
        return -1;
    }
    if (!fgets(buf, (int)size, f))
        buf[0] = '\0';
    fclose(f);
    buf[strcspn(buf, "\r\n")] = '\0';
    return 0;
}

/* The SQLSTATE of the last error pg_message described on this thread ("" when it had none, or the
 * last failure was a connection's). */
static _Thread_local char last_sqlstate[6];

PGconn *pg_connect(const pg_conf_t *conf, char *errstr, size_t errstr_size)
{
    last_sqlstate[0] = '\0'; /* a failure to connect has none: not one to retry at once */
    char pw[1024] = "";
    if (conf->password_file &&
        pg_read_password(conf->password_file, pw, sizeof(pw), errstr, errstr_size))
        return NULL;
    /* dbname is expanded as a whole conninfo: keys before it are defaults the connection
     * string overrides, keys after it win over it. A server that accepts the TCP connection and
     * then says nothing would hold the sink in libpq forever: connect_timeout defaults to
     * CG_PG_CONNECT_TIMEOUT unless the string or PGCONNECT_TIMEOUT sets one. */
    const char *keys[6], *vals[6];
    size_t n = 0;
    const char *env_timeout = getenv("PGCONNECT_TIMEOUT");
    if (!env_timeout || !*env_timeout) {
        keys[n] = "connect_timeout";
        vals[n++] = CG_PG_CONNECT_TIMEOUT;
    }
    keys[n] = "dbname";
    vals[n++] = conninfo_of(conf);
    if (pw[0]) { /* else libpq's own password sources: no empty password */
        keys[n] = "password";
        vals[n++] = pw;
    }
    keys[n] = "client_encoding";
    vals[n++] = "UTF8";
    keys[n] = "application_name";
    vals[n++] = "cohortgate-sink";
    keys[n] = vals[n] = NULL;
    PGconn *c = PQconnectdbParams(keys, vals, 1);
    memset(pw, 0, sizeof(pw));
    if (!c || PQstatus(c) != CONNECTION_OK) {
        char msg[512];
        snprintf(msg, sizeof(msg), "%s", c ? PQerrorMessage(c) : "out of memory");
        msg[strcspn(msg, "\n")] = '\0';
        snprintf(errstr, errstr_size,
                 "cannot connect to PostgreSQL (host %s, port %s, database %s, user %s): %s",
                 c && PQhost(c) ? PQhost(c) : "?", c && PQport(c) ? PQport(c) : "?",
                 c && PQdb(c) ? PQdb(c) : "?", c && PQuser(c) ? PQuser(c) : "?", msg);
        PQfinish(c);
        return NULL;
    }
    PQsetNoticeProcessor(c, quiet_notices, NULL);
    return c;
}

int pg_last_error_transient(void)
{
    /* deadlock_detected, serialization_failure, lock_not_available: another session's timing,
     * gone on the next try */
    return !strcmp(last_sqlstate, "40P01") || !strcmp(last_sqlstate, "40001") ||
           !strcmp(last_sqlstate, "55P03");
}

void pg_message(const PGresult *res, const PGconn *conn, char *buf, size_t size)
{
    const char *st = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    snprintf(last_sqlstate, sizeof(last_sqlstate), "%s", st ? st : "");
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

int pg_exec(PGconn *c, const char *sql, char *errstr, size_t errstr_size)
{
    PGresult *res = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(res);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        pg_message(res, c, errstr, errstr_size);
        PQclear(res);
        return -1;
    }
    PQclear(res);
    return 0;
}

int pg_conn_lost(PGconn *c)
{
    return !c || PQstatus(c) != CONNECTION_OK;
}

void pg_ident(cg_buf_t *b, const char *name)
{
    if (!cg_omop_ident_needs_quotes(name)) {
        cg_buf_puts(b, name);
        return;
    }
    cg_buf_putc(b, '"');
    for (const char *p = name; *p; p++) {
        if (*p == '"')
            cg_buf_putc(b, '"');
        cg_buf_putc(b, *p);
    }
    cg_buf_putc(b, '"');
}

void pg_qual(cg_buf_t *b, const char *schema, const char *name)
{
    pg_ident(b, schema);
    cg_buf_putc(b, '.');
    pg_ident(b, name);
}

void pg_index_ddl(cg_buf_t *b, const char *schema, const char *index, const char *table, int unique,
                  const char *def)
{
    /* CREATE INDEX takes a SHARE lock on its table before it looks whether the index exists:
     * run at every start, it would queue behind (and deadlock with) the writes of a sink that
     * is already loading. The catalog is asked first, without a table lock. */
    cg_buf_t q;
    cg_buf_init(&q);
    pg_qual(&q, schema, index);
    cg_buf_puts(b, "DO $cg$BEGIN IF to_regclass('");
    for (size_t i = 0; i < q.len; i++) { /* a literal: quotes doubled */
        if (q.data[i] == '\'')
            cg_buf_putc(b, '\'');
        cg_buf_putc(b, q.data[i]);
    }
    cg_buf_free(&q);
    cg_buf_printf(b, "') IS NULL THEN CREATE %sINDEX IF NOT EXISTS ", unique ? "UNIQUE " : "");
    pg_ident(b, index);
    cg_buf_puts(b, " ON ");
    pg_qual(b, schema, table);
    cg_buf_printf(b, " %s; END IF; END$cg$;\n", def);
}

int pg_copy_send(PGconn *c, const char *sql, const cg_buf_t *data, char *errstr, size_t errstr_size)
{
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_COPY_IN) {
        pg_message(r, c, errstr, errstr_size);
        PQclear(r);
        return -1;
    }
    PQclear(r);
    if (PQputCopyData(c, data->data, (int)data->len) == 1 && PQputCopyEnd(c, NULL) == 1)
        return 0;
    if (!pg_copy_result(c, NULL, errstr, errstr_size)) /* not sent, yet answered */
        snprintf(errstr, errstr_size, "%s", PQerrorMessage(c));
    return -1;
}

int pg_copy_result(PGconn *c, int *rows_fault, char *errstr, size_t errstr_size)
{
    if (rows_fault)
        *rows_fault = 0;
    PGresult *r = PQgetResult(c);
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    if (!ok) {
        pg_message(r, c, errstr, errstr_size);
        const char *st = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
        if (rows_fault && st)
            *rows_fault = !strncmp(st, "22", 2) || !strncmp(st, "23", 2);
    }
    PQclear(r);
    while ((r = PQgetResult(c)))
        PQclear(r);
    return ok ? 0 : -1;
}

int pg_copy_in(PGconn *c, const char *sql, const cg_buf_t *data, int *rows_fault, char *errstr,
               size_t errstr_size)
{
    if (rows_fault)
        *rows_fault = 0;
    if (pg_copy_send(c, sql, data, errstr, errstr_size))
        return -1;
    return pg_copy_result(c, rows_fault, errstr, errstr_size);
}
