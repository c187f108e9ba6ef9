/* omop.c - lookups, value checks and PostgreSQL DDL over the generated OMOP CDM v5.4 schema. */
#include "cg_omop.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

size_t cg_omop_table_count(void)
{
    return cg_omop_cdm54_n_tables;
}

const cg_omop_table_t *cg_omop_table_at(size_t i)
{
    return i < cg_omop_cdm54_n_tables ? &cg_omop_cdm54_tables[i] : NULL;
}

const cg_omop_table_t *cg_omop_table_n(const char *name, size_t len)
{
    if (!name)
        return NULL;
    /* 39 tables: a linear scan with a first-byte filter costs less than building an index */
    for (size_t i = 0; i < cg_omop_cdm54_n_tables; i++) {
        const char *t = cg_omop_cdm54_tables[i].name;
        if (t[0] == name[0] && strncmp(t, name, len) == 0 && t[len] == '\0')
            return &cg_omop_cdm54_tables[i];
    }
    return NULL;
}

const cg_omop_table_t *cg_omop_table(const char *name)
{
    return name ? cg_omop_table_n(name, strlen(name)) : NULL;
}

const cg_omop_column_t *cg_omop_column(const cg_omop_table_t *table, const char *name,
                                       size_t *index)
{
    if (!table || !name)
        return NULL;
    for (size_t i = 0; i < table->n_columns; i++) {
        if (strcmp(table->columns[i].name, name) == 0) {
            if (index)
                *index = i;
            return &table->columns[i];
        }
    }
    return NULL;
}

const cg_omop_column_t *cg_omop_column_at(const cg_omop_table_t *table, size_t i)
{
    return table && i < table->n_columns ? &table->columns[i] : NULL;
}

const cg_omop_column_t *cg_omop_primary_key(const cg_omop_table_t *table, size_t *index)
{
    if (!table)
        return NULL;
    for (size_t i = 0; i < table->n_columns; i++) {
        if (table->columns[i].primary_key) {
            if (index)
                *index = i;
            return &table->columns[i];
        }
    }
    return NULL;
}

/* "person_id", "fact_id_1": the CDM's naming of row references. */
static bool is_id_name(const char *name)
{
    size_t n = strlen(name);
    while (n > 0 && name[n - 1] >= '0' && name[n - 1] <= '9')
        n--;
    if (n < strlen(name)) {
        if (n == 0 || name[n - 1] != '_')
            return false;
        n--;
    }
    return n >= 3 && memcmp(name + n - 3, "_id", 3) == 0;
}

cg_omop_type_t cg_omop_column_type(const cg_omop_column_t *col)
{
    /* cohortgate's ids are 63-bit keyed hashes: every integer *_id that is not a concept id
     * must be bigint (see cg_omop.h). Concept ids come from OHDSI's vocabularies: integer. */
    if (col->cdm_type == CG_OMOP_INTEGER && !col->concept_id && is_id_name(col->name))
        return CG_OMOP_BIGINT;
    return col->cdm_type;
}

const char *cg_omop_type_name(cg_omop_type_t type)
{
    switch (type) {
    case CG_OMOP_INTEGER:
        return "integer";
    case CG_OMOP_BIGINT:
        return "bigint";
    case CG_OMOP_FLOAT:
        return "float";
    case CG_OMOP_VARCHAR:
        return "varchar";
    case CG_OMOP_TEXT:
        return "text";
    case CG_OMOP_DATE:
        return "date";
    case CG_OMOP_DATETIME:
        return "datetime";
    }
    return "?";
}

const char *cg_omop_pg_type(const cg_omop_column_t *col, char *buf, size_t size)
{
    /* as OHDSI's PostgreSQL DDL maps them: float -> NUMERIC, datetime -> TIMESTAMP,
     * varchar(MAX) -> TEXT */
    const char *s = "text";
    switch (cg_omop_column_type(col)) {
    case CG_OMOP_INTEGER:
        s = "integer";
        break;
    case CG_OMOP_BIGINT:
        s = "bigint";
        break;
    case CG_OMOP_FLOAT:
        s = "numeric";
        break;
    case CG_OMOP_VARCHAR:
        snprintf(buf, size, "varchar(%d)", col->max_length);
        return buf;
    case CG_OMOP_TEXT:
        s = "text";
        break;
    case CG_OMOP_DATE:
        s = "date";
        break;
    case CG_OMOP_DATETIME:
        s = "timestamp";
        break;
    }
    snprintf(buf, size, "%s", s);
    return buf;
}

/* ---- value checks ---- */

static bool fail(char *why, size_t why_size, const cg_omop_column_t *col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static bool fail(char *why, size_t why_size, const cg_omop_column_t *col, const char *fmt, ...)
{
    if (why && why_size > 0) {
        int n = snprintf(why, why_size, "%s: ", col->name);
        if (n >= 0 && (size_t)n < why_size) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(why + n, why_size - (size_t)n, fmt, ap);
            va_end(ap);
        }
    }
    return false;
}

/* Copies at most 40 bytes of the offending value for an error text, cut at a character. */
/* What a refused value is, without its content: these reasons reach dead-letter headers and
 * logs, where a value (a name, a date of birth) must not (issue 17). Its length in bytes. */
static const char *excerpt(const char *text, size_t len, char *buf, size_t size)
{
    (void)text;
    snprintf(buf, size, "a value of %zu byte%s", len, len == 1 ? "" : "s");
    return buf;
}

/* Number of UTF-8 characters in s, or -1 when s is not valid UTF-8 or holds a NUL (PostgreSQL
 * refuses both in text). *bad gets the offset of the first bad byte. */
static long utf8_chars(const unsigned char *s, size_t len, size_t *bad)
{
    long chars = 0;
    size_t i = 0;
    while (i < len) {
        unsigned c = s[i];
        size_t n;
        uint32_t cp;
        if (c == 0) {
            *bad = i;
            return -1;
        } else if (c < 0x80) {
            i++;
            chars++;
            continue;
        } else if (c >= 0xC2 && c <= 0xDF) {
            n = 1, cp = c & 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
            n = 2, cp = c & 0x0F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            n = 3, cp = c & 0x07;
        } else {
            *bad = i;
            return -1;
        }
        if (i + n >= len) { /* truncated sequence */
            *bad = i;
            return -1;
        }
        for (size_t k = 1; k <= n; k++) {
            if ((s[i + k] & 0xC0) != 0x80) {
                *bad = i;
                return -1;
            }
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        /* overlong forms, UTF-16 surrogates, beyond U+10FFFF */
        if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10FFFF ||
            (cp >= 0xD800 && cp <= 0xDFFF)) {
            *bad = i;
            return -1;
        }
        i += n + 1;
        chars++;
    }
    return chars;
}

static bool digits(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

static int num(const char *s, size_t n)
{
    int v = 0;
    for (size_t i = 0; i < n; i++)
        v = v * 10 + (s[i] - '0');
    return v;
}

/* YYYY-MM-DD, a real calendar date in years 1..9999; NULL when fine, else the reason. */
static const char *check_date(const char *s, size_t len)
{
    static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (len < 10 || !digits(s, 4) || s[4] != '-' || !digits(s + 5, 2) || s[7] != '-' ||
        !digits(s + 8, 2))
        return "not an ISO date YYYY-MM-DD";
    int y = num(s, 4), m = num(s + 5, 2), d = num(s + 8, 2);
    if (y < 1)
        return "year 0000 is not a date";
    if (m < 1 || m > 12)
        return "month out of range 01..12";
    int dim = mdays[m - 1] + (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0));
    if (d < 1 || d > dim)
        return "day out of range for its month";
    return NULL;
}

/* Date, then optionally [T ]HH:MM[:SS[.fff]] and a zone Z, +HH, +HHMM or +HH:MM. PostgreSQL's
 * timestamp (without time zone) accepts and drops the zone; the date alone means midnight. */
static const char *check_datetime(const char *s, size_t len)
{
    const char *r = check_date(s, len);
    if (r)
        return r;
    if (len == 10)
        return NULL;
    size_t i = 10;
    if ((s[i] != 'T' && s[i] != ' ') || len < i + 6 || !digits(s + i + 1, 2) || s[i + 3] != ':' ||
        !digits(s + i + 4, 2))
        return "not an ISO datetime YYYY-MM-DDTHH:MM[:SS[.fff]][zone]";
    if (num(s + i + 1, 2) > 23 || num(s + i + 4, 2) > 59)
        return "time out of range";
    i += 6;
    if (i < len && s[i] == ':') {
        if (len < i + 3 || !digits(s + i + 1, 2))
            return "seconds must be two digits";
        if (num(s + i + 1, 2) > 59)
            return "seconds out of range";
        i += 3;
        if (i < len && s[i] == '.') {
            size_t j = i + 1;
            while (j < len && s[j] >= '0' && s[j] <= '9')
                j++;
            if (j == i + 1)
                return "empty fraction of a second";
            i = j;
        }
    }
    if (i == len)
        return NULL;
    if (s[i] == 'Z' && i + 1 == len)
        return NULL;
    if (s[i] == '+' || s[i] == '-') {
        const char *z = s + i + 1;
        size_t zl = len - i - 1;
        if ((zl == 2 && digits(z, 2)) || (zl == 4 && digits(z, 4)) ||
            (zl == 5 && digits(z, 2) && z[2] == ':' && digits(z + 3, 2))) {
            if (num(z, 2) > 15 || (zl > 2 && num(z + zl - 2, 2) > 59))
                return "time zone offset out of range";
            return NULL;
        }
    }
    return "bad time zone (expected Z, +HH, +HHMM or +HH:MM)";
}

/* JSON number grammar; *integral tells whether it has no fraction or exponent. */
static bool json_number(const char *s, size_t len, bool *integral)
{
    size_t i = 0;
    *integral = true;
    if (i < len && s[i] == '-')
        i++;
    if (i >= len)
        return false;
    if (s[i] == '0') {
        i++;
    } else if (s[i] >= '1' && s[i] <= '9') {
        while (i < len && s[i] >= '0' && s[i] <= '9')
            i++;
    } else {
        return false;
    }
    if (i < len && s[i] == '.') {
        *integral = false;
        size_t j = ++i;
        while (i < len && s[i] >= '0' && s[i] <= '9')
            i++;
        if (i == j)
            return false;
    }
    if (i < len && (s[i] == 'e' || s[i] == 'E')) {
        *integral = false;
        i++;
        if (i < len && (s[i] == '+' || s[i] == '-'))
            i++;
        size_t j = i;
        while (i < len && s[i] >= '0' && s[i] <= '9')
            i++;
        if (i == j)
            return false;
    }
    return i == len;
}

bool cg_omop_check_value(const cg_omop_column_t *col, const char *text, size_t len, bool quoted,
                         char *why, size_t why_size)
{
    char ex[64];
    cg_omop_type_t type = cg_omop_column_type(col);
    if (why && why_size)
        why[0] = '\0';
    if (!text) {
        if (col->required)
            return fail(why, why_size, col, "required (NOT NULL) but null or missing");
        return true;
    }
    switch (type) {
    case CG_OMOP_INTEGER:
    case CG_OMOP_BIGINT: {
        bool integral;
        if (quoted)
            return fail(why, why_size, col, "expected a JSON integer for %s, got a string (%s)",
                        cg_omop_type_name(type), excerpt(text, len, ex, sizeof ex));
        if (!json_number(text, len, &integral) || !integral)
            return fail(why, why_size, col, "expected an integer for %s, got %s",
                        cg_omop_type_name(type), excerpt(text, len, ex, sizeof ex));
        char buf[32];
        if (len >= sizeof buf)
            return fail(why, why_size, col, "%s out of range for %s",
                        excerpt(text, len, ex, sizeof ex), cg_omop_type_name(type));
        memcpy(buf, text, len);
        buf[len] = '\0';
        errno = 0;
        long long v = strtoll(buf, NULL, 10);
        if (errno == ERANGE || (type == CG_OMOP_INTEGER && (v < INT32_MIN || v > INT32_MAX)))
            return fail(why, why_size, col, "out of range for %s (%s)", cg_omop_type_name(type),
                        type == CG_OMOP_INTEGER ? "32 bits" : "64 bits");
        return true;
    }
    case CG_OMOP_FLOAT: {
        bool integral;
        if (quoted || !json_number(text, len, &integral))
            return fail(why, why_size, col, "expected a JSON number, got %s%s%s",
                        quoted ? "a string (" : "", excerpt(text, len, ex, sizeof ex),
                        quoted ? ")" : "");
        return true;
    }
    case CG_OMOP_VARCHAR:
    case CG_OMOP_TEXT: {
        size_t bad = 0;
        if (!quoted)
            return fail(why, why_size, col, "expected a JSON string for %s, got %s",
                        col->cdm_datatype, excerpt(text, len, ex, sizeof ex));
        long chars = utf8_chars((const unsigned char *)text, len, &bad);
        if (chars < 0)
            return fail(why, why_size, col, "%s at byte %zu (PostgreSQL refuses it)",
                        text[bad] ? "invalid UTF-8" : "NUL character", bad);
        if (type == CG_OMOP_VARCHAR && chars > col->max_length)
            return fail(why, why_size, col, "%ld characters, longer than %s", chars,
                        col->cdm_datatype);
        return true;
    }
    case CG_OMOP_DATE:
    case CG_OMOP_DATETIME: {
        if (!quoted)
            return fail(why, why_size, col, "expected a JSON string for %s, got %s",
                        cg_omop_type_name(type), excerpt(text, len, ex, sizeof ex));
        const char *r = type == CG_OMOP_DATE
                            ? (len == 10 ? check_date(text, len) : "not an ISO date YYYY-MM-DD")
                            : check_datetime(text, len);
        if (r)
            return fail(why, why_size, col, "%s (%s)", r, excerpt(text, len, ex, sizeof ex));
        return true;
    }
    }
    return fail(why, why_size, col, "unknown column type");
}

bool cg_omop_json_text(const struct json_t *value, char *buf, size_t size, const char **text,
                       size_t *len, bool *quoted)
{
    *quoted = false;
    *text = NULL;
    *len = 0;
    if (!value || json_is_null(value))
        return true;
    switch (json_typeof(value)) {
    case JSON_STRING:
        *text = json_string_value(value);
        *len = json_string_length(value);
        *quoted = true;
        return true;
    case JSON_INTEGER:
        snprintf(buf, size, "%" JSON_INTEGER_FORMAT, json_integer_value(value));
        break;
    case JSON_REAL: {
        /* the shortest spelling that reads back to the same double, like JavaScript's */
        double d = json_real_value(value);
        for (int prec = 1; prec <= 17; prec++) {
            snprintf(buf, size, "%.*g", prec, d);
            if (strtod(buf, NULL) == d)
                break;
        }
        /* keep it a non-integer literal: 7.0 must not pass for the integer 7 */
        if (!strpbrk(buf, ".eEn") && strlen(buf) + 3 <= size)
            strcat(buf, ".0");
        break;
    }
    case JSON_TRUE:
        snprintf(buf, size, "true");
        break;
    case JSON_FALSE:
        snprintf(buf, size, "false");
        break;
    default:
        return false;
    }
    *text = buf;
    *len = strlen(buf);
    return true;
}

bool cg_omop_check_json(const cg_omop_column_t *col, const struct json_t *value, char *why,
                        size_t why_size)
{
    char buf[64];
    const char *text;
    size_t len;
    bool quoted;
    if (!cg_omop_json_text(value, buf, sizeof buf, &text, &len, &quoted))
        return fail(why, why_size, col, "expected a scalar, got a JSON %s",
                    json_is_object(value) ? "object" : "array");
    return cg_omop_check_value(col, text, len, quoted, why, why_size);
}

size_t cg_omop_check_row(const cg_omop_table_t *table, const struct json_t *row, char *why,
                         size_t why_size)
{
    size_t problems = 0;
    char tmp[256];
    if (why && why_size)
        why[0] = '\0';
    if (!json_is_object(row)) {
        if (why && why_size)
            snprintf(why, why_size, "%s: row is not a JSON object", table->name);
        return 1;
    }
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)row, key, v)
    {
        if (!cg_omop_column(table, key, NULL)) {
            if (problems++ == 0 && why && why_size)
                snprintf(why, why_size, "%s: no column %s in OMOP CDM v5.4", table->name, key);
        }
    }
    for (size_t i = 0; i < table->n_columns; i++) {
        const cg_omop_column_t *col = &table->columns[i];
        if (!cg_omop_check_json(col, json_object_get(row, col->name), tmp, sizeof tmp)) {
            if (problems++ == 0 && why && why_size)
                snprintf(why, why_size, "%s.%s", table->name, tmp);
        }
    }
    return problems;
}

/* ---- DDL ---- */

/* PostgreSQL's reserved key words (and those reserved as names of types or functions): a column
 * named so must be quoted. The CDM has one today, note_nlp.offset. */
static const char *const reserved[] = {"all",
                                       "analyse",
                                       "analyze",
                                       "and",
                                       "any",
                                       "array",
                                       "as",
                                       "asc",
                                       "asymmetric",
                                       "authorization",
                                       "binary",
                                       "both",
                                       "case",
                                       "cast",
                                       "check",
                                       "collate",
                                       "collation",
                                       "column",
                                       "concurrently",
                                       "constraint",
                                       "create",
                                       "cross",
                                       "current_catalog",
                                       "current_date",
                                       "current_role",
                                       "current_schema",
                                       "current_time",
                                       "current_timestamp",
                                       "current_user",
                                       "default",
                                       "deferrable",
                                       "desc",
                                       "distinct",
                                       "do",
                                       "else",
                                       "end",
                                       "except",
                                       "false",
                                       "fetch",
                                       "for",
                                       "foreign",
                                       "freeze",
                                       "from",
                                       "full",
                                       "grant",
                                       "group",
                                       "having",
                                       "ilike",
                                       "in",
                                       "initially",
                                       "inner",
                                       "intersect",
                                       "into",
                                       "is",
                                       "isnull",
                                       "join",
                                       "lateral",
                                       "leading",
                                       "left",
                                       "like",
                                       "limit",
                                       "localtime",
                                       "localtimestamp",
                                       "natural",
                                       "not",
                                       "notnull",
                                       "null",
                                       "offset",
                                       "on",
                                       "only",
                                       "or",
                                       "order",
                                       "outer",
                                       "overlaps",
                                       "placing",
                                       "primary",
                                       "references",
                                       "returning",
                                       "right",
                                       "select",
                                       "session_user",
                                       "similar",
                                       "some",
                                       "symmetric",
                                       "table",
                                       "tablesample",
                                       "then",
                                       "to",
                                       "trailing",
                                       "true",
                                       "union",
                                       "unique",
                                       "user",
                                       "using",
                                       "variadic",
                                       "verbose",
                                       "when",
                                       "where",
                                       "window",
                                       "with"};

bool cg_omop_ident_needs_quotes(const char *name)
{
    if (!name[0] || (name[0] >= '0' && name[0] <= '9'))
        return true;
    for (const char *p = name; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_'))
            return true;
    for (size_t i = 0; i < sizeof reserved / sizeof reserved[0]; i++)
        if (strcmp(reserved[i], name) == 0)
            return true;
    return false;
}

int cg_omop_write_ident(FILE *out, const char *name)
{
    if (!cg_omop_ident_needs_quotes(name))
        return fputs(name, out) < 0 ? -1 : 0;
    if (fputc('"', out) == EOF)
        return -1;
    for (const char *p = name; *p; p++) {
        if (*p == '"' && fputc('"', out) == EOF)
            return -1;
        if (fputc(*p, out) == EOF)
            return -1;
    }
    return fputc('"', out) == EOF ? -1 : 0;
}

int cg_omop_write_ddl(FILE *out, const char *schema)
{
    char type[32];
    fprintf(out, "-- OMOP CDM v5.4 for PostgreSQL, generated by cohortgate from OHDSI's "
                 "field-level CSV.\n"
                 "-- Non-concept *_id columns are bigint (OMOP: integer): cohortgate's ids are "
                 "63-bit hashes.\n"
                 "-- No foreign keys: records arrive in any order.\n");
    if (schema && *schema) {
        fputs("CREATE SCHEMA IF NOT EXISTS ", out);
        cg_omop_write_ident(out, schema);
        fputs(";\n", out);
    }
    for (size_t t = 0; t < cg_omop_cdm54_n_tables; t++) {
        const cg_omop_table_t *tab = &cg_omop_cdm54_tables[t];
        fputs("\nCREATE TABLE ", out);
        if (schema && *schema) {
            cg_omop_write_ident(out, schema);
            fputc('.', out);
        }
        cg_omop_write_ident(out, tab->name);
        fputs(" (\n", out);
        for (size_t c = 0; c < tab->n_columns; c++) {
            const cg_omop_column_t *col = &tab->columns[c];
            fputs(c ? ",\n    " : "    ", out);
            cg_omop_write_ident(out, col->name);
            fprintf(out, " %s%s", cg_omop_pg_type(col, type, sizeof type),
                    col->required || col->primary_key ? " NOT NULL" : " NULL");
        }
        /* the CDM has single-column primary keys only */
        size_t pk;
        if (cg_omop_primary_key(tab, &pk)) {
            fputs(",\n    PRIMARY KEY (", out);
            cg_omop_write_ident(out, tab->columns[pk].name);
            fputc(')', out);
        }
        fputc('\n', out);
        fputs(");\n", out);
    }
    fflush(out);
    return ferror(out) ? -1 : 0;
}
