/* pg_copy_binary.c - COPY's binary format for the direct path (pg_apply_direct.c).
 *
 * Text COPY makes the server parse every integer, date, timestamp and number: a sixth of its
 * work on a batch of new measurements (perf), and a tenth less time in COPY binary measured on
 * the same rows (tests/bench/bench_sink.sh's, psql \copy, this 2-core VM); the id map's pairs a
 * fifth less. So the values staged as COPY text are encoded here in the binary format of the
 * column's server type (found in pg_attribute, not assumed from the CDM), and the server only
 * checks them.
 *
 * Only the plain spellings are encoded: the ones the text input functions read the same way
 * without doubt (an optionally signed decimal integer; [-]digits[.digits][e[+-]digits]; YYYY-MM-DD
 * with a valid day; YYYY-MM-DD[[T ]HH:MM[:SS[.f{1,6}]][Z|±HH[[:]MM]]]; text with the one-letter
 * escapes). Anything else (an exponent past 100, a leap second, 24:00, a zone after a bare date,
 * "infinity", an octal escape) makes pg_bin_field answer -1 and the caller sends the batch as
 * text, so the server reads, accepts or refuses exactly what it would have: binary never changes
 * a result. The column types are asked for again after a refused binary COPY or an aborted
 * transaction (a column's type altered under a running sink).
 */
#include "pg_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    OID_INT8 = 20,
    OID_INT2 = 21,
    OID_INT4 = 23,
    OID_TEXT = 25,
    OID_BPCHAR = 1042,
    OID_VARCHAR = 1043,
    OID_DATE = 1082,
    OID_TIMESTAMP = 1114,
    OID_TIMESTAMPTZ = 1184,
    OID_NUMERIC = 1700,
};

/* days from 1970-01-01 to 2000-01-01, PostgreSQL's epoch */
#define PG_EPOCH_DAYS 10957
#define USECS_PER_DAY INT64_C(86400000000)

pg_bin_type_t pg_bin_type_of(unsigned oid, int session_utc)
{
    switch (oid) {
    case OID_INT2:
        return PG_BIN_INT2;
    case OID_INT4:
        return PG_BIN_INT4;
    case OID_INT8:
        return PG_BIN_INT8;
    case OID_NUMERIC:
        return PG_BIN_NUMERIC;
    case OID_DATE:
        return PG_BIN_DATE;
    case OID_TIMESTAMP:
        return PG_BIN_TIMESTAMP;
    case OID_TIMESTAMPTZ:
        /* a time without a zone is read in the session's zone: known here only for UTC */
        return session_utc ? PG_BIN_TIMESTAMPTZ_UTC : PG_BIN_NONE;
    case OID_TEXT:
    case OID_VARCHAR:
    case OID_BPCHAR:
        return PG_BIN_TEXT;
    default:
        return PG_BIN_NONE;
    }
}

int pg_bin_zone_is_utc(const char *zone)
{
    static const char *const utc[] = {
        "UTC",       "Etc/UTC",       "GMT",   "Etc/GMT",   "UCT",       "Etc/UCT",
        "Universal", "Etc/Universal", "Zulu",  "Etc/Zulu",  "Greenwich", "Etc/Greenwich",
        "GMT0",      "Etc/GMT0",      "GMT+0", "Etc/GMT+0", "GMT-0",     "Etc/GMT-0"};
    for (size_t i = 0; zone && i < sizeof(utc) / sizeof(utc[0]); i++)
        if (!strcmp(zone, utc[i]))
            return 1;
    return 0;
}

static void put_be(cg_buf_t *b, uint64_t v, int bytes)
{
    unsigned char o[8];
    for (int i = 0; i < bytes; i++)
        o[i] = (unsigned char)(v >> (8 * (bytes - 1 - i)));
    cg_buf_append(b, (const char *)o, (size_t)bytes);
}

void pg_bin_header(cg_buf_t *b)
{
    cg_buf_append(b, "PGCOPY\n\377\r\n\0", 11);
    put_be(b, 0, 4); /* flags: no OIDs */
    put_be(b, 0, 4); /* no header extension */
}

void pg_bin_trailer(cg_buf_t *b)
{
    put_be(b, 0xFFFF, 2);
}

void pg_bin_tuple(cg_buf_t *b, int n_fields)
{
    put_be(b, (uint16_t)n_fields, 2);
}

void pg_bin_null(cg_buf_t *b)
{
    put_be(b, 0xFFFFFFFFu, 4);
}

/* A fixed-width field: its length, then v's low width bytes. */
static void put_fixed(cg_buf_t *b, uint64_t v, int width)
{
    put_be(b, (uint64_t)width, 4);
    put_be(b, v, width);
}

int pg_bin_int(cg_buf_t *b, pg_bin_type_t t, int64_t v)
{
    int width = t == PG_BIN_INT2 ? 2 : t == PG_BIN_INT4 ? 4 : t == PG_BIN_INT8 ? 8 : 0;
    if (!width ||
        (width < 8 && (v < -(INT64_C(1) << (8 * width - 1)) || v >= INT64_C(1) << (8 * width - 1))))
        return -1;
    put_fixed(b, (uint64_t)v, width);
    return 0;
}

static int dig(char c)
{
    return c >= '0' && c <= '9';
}

/* [-]digits, at most 19 of them, into *out; 0, or -1 for another spelling or out of range. */
static int parse_int(const char *v, size_t n, int64_t *out)
{
    size_t i = n && v[0] == '-';
    if (i == n || n - i > 19)
        return -1;
    uint64_t x = 0;
    for (size_t k = i; k < n; k++) {
        if (!dig(v[k]))
            return -1;
        x = x * 10 + (uint64_t)(v[k] - '0');
    }
    if (x > (uint64_t)INT64_MAX + (i ? 1u : 0u))
        return -1;
    *out = i ? (int64_t)(0 - x) : (int64_t)x;
    return 0;
}

/* [-]digits[.digits][e[+-]digits] (or [-].digits...) as PostgreSQL's numeric: base-10000 digits,
 * the weight of the first, the sign and the display scale (the digits after the point once the
 * exponent has moved it, as numeric_in keeps them: "1.50e1" is 15.0). The digits need not be
 * normalized: numeric_recv strips zeros at either end. */
static int put_numeric(cg_buf_t *b, const char *v, size_t n)
{
    size_t i = n && v[0] == '-';
    int neg = (int)i;
    size_t m_from = i;
    while (i < n && dig(v[i]))
        i++;
    size_t m_int = i - m_from, f_from = i, m_frac = 0;
    if (i < n && v[i] == '.') {
        f_from = ++i;
        while (i < n && dig(v[i]))
            i++;
        m_frac = i - f_from;
        if (!m_frac)
            return -1; /* "5." : left to numeric_in */
    }
    if ((!m_int && !m_frac) || m_int + m_frac > 1000)
        return -1;
    long e = 0;
    if (i < n && (v[i] == 'e' || v[i] == 'E')) {
        int eneg = 0;
        if (++i < n && (v[i] == '+' || v[i] == '-'))
            eneg = v[i++] == '-';
        size_t e_from = i;
        while (i < n && dig(v[i]) && i - e_from < 4)
            e = e * 10 + (v[i++] - '0');
        if (i == e_from || e > 100)
            return -1;
        e = eneg ? -e : e;
    }
    if (i != n)
        return -1;
    /* the mantissa's digits, the point moved by the exponent: int_len digits before it */
    char d[1300];
    size_t nd = 0;
    for (size_t k = m_from; k < m_from + m_int; k++)
        d[nd++] = v[k];
    for (size_t k = f_from; k < f_from + m_frac; k++)
        d[nd++] = v[k];
    long point = (long)m_int + e;
    const char *ds = d;
    if (point < 0) { /* zeros before the digits: 1e-3 is 0.001 */
        memmove(d + (-point), d, nd);
        memset(d, '0', (size_t)(-point));
        nd += (size_t)(-point);
        point = 0;
    }
    while ((long)nd < point) /* zeros after them: 1e3 is 1000 */
        d[nd++] = '0';
    size_t int_len = (size_t)point, frac_len = nd - int_len;
    while (int_len && *ds == '0') { /* leading zeros: no digit of their own */
        ds++;
        int_len--;
    }
    const char *fs = ds + int_len;
    size_t int_groups = (int_len + 3) / 4, frac_groups = (frac_len + 3) / 4;
    size_t n_groups = int_groups + frac_groups;
    uint16_t groups[400];
    if (n_groups > sizeof(groups) / sizeof(groups[0]))
        return -1;
    int any = 0;
    /* the integer part from its left, its first group short when its length is not a multiple
     * of four */
    size_t k = 0, first = int_len % 4 ? int_len % 4 : 4;
    for (size_t g = 0; g < int_groups; g++) {
        size_t len = g ? 4 : first;
        unsigned x = 0;
        for (size_t j = 0; j < len; j++)
            x = x * 10 + (unsigned)(ds[k++] - '0');
        groups[g] = (uint16_t)x;
        any |= x != 0;
    }
    /* the fraction from its left, its last group padded with zeros */
    k = 0;
    for (size_t g = 0; g < frac_groups; g++) {
        unsigned x = 0;
        for (size_t j = 0; j < 4; j++)
            x = x * 10 + (k < frac_len ? (unsigned)(fs[k++] - '0') : 0);
        groups[int_groups + g] = (uint16_t)x;
        any |= x != 0;
    }
    put_be(b, 8 + 2 * n_groups, 4);
    put_be(b, n_groups, 2);
    put_be(b, (uint64_t)(int16_t)((int)int_groups - 1), 2);
    put_be(b, neg && any ? 0x4000 : 0x0000, 2); /* -0 is 0, as numeric_in makes it */
    put_be(b, frac_len, 2);
    for (size_t g = 0; g < n_groups; g++)
        put_be(b, groups[g], 2);
    return 0;
}

/* days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil) */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static int num2(const char *s, unsigned *out)
{
    if (!dig(s[0]) || !dig(s[1]))
        return 0;
    *out = (unsigned)(s[0] - '0') * 10 + (unsigned)(s[1] - '0');
    return 1;
}

/* YYYY-MM-DD at v (n >= 10): days since PostgreSQL's epoch; -1 when it is no valid day of
 * years 1 to 9999. */
static int parse_date(const char *v, int64_t *days)
{
    static const unsigned mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    unsigned c, yy, m, d;
    if (!num2(v, &c) || !num2(v + 2, &yy) || v[4] != '-' || !num2(v + 5, &m) || v[7] != '-' ||
        !num2(v + 8, &d))
        return -1;
    unsigned y = c * 100 + yy;
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (y < 1 || m < 1 || m > 12 || d < 1 || d > mdays[m - 1] + (m == 2 && leap))
        return -1;
    *days = days_from_civil(y, m, d) - PG_EPOCH_DAYS;
    return 0;
}

/* YYYY-MM-DD[[T ]HH:MM[:SS[.f{1,6}]]][Z|±HH|±HHMM|±HH:MM]: microseconds since PostgreSQL's
 * epoch of the local time, and the zone's offset in seconds east (0 when none is written). */
static int parse_timestamp(const char *v, size_t n, int64_t *us, int32_t *offset, int *has_zone)
{
    int64_t days;
    if (n < 10 || parse_date(v, &days))
        return -1;
    int64_t t = 0;
    size_t i = 10;
    *offset = 0;
    *has_zone = 0;
    if (i < n && (v[i] == 'T' || v[i] == ' ')) {
        unsigned hh, mm, ss = 0;
        if (n < i + 6 || !num2(v + i + 1, &hh) || v[i + 3] != ':' || !num2(v + i + 4, &mm) ||
            hh > 23 || mm > 59)
            return -1;
        i += 6;
        int64_t frac = 0;
        if (i < n && v[i] == ':') {
            if (n < i + 3 || !num2(v + i + 1, &ss) || ss > 59)
                return -1;
            i += 3;
            if (i < n && v[i] == '.') {
                size_t f = ++i;
                while (i < n && dig(v[i]) && i - f < 6)
                    frac = frac * 10 + (v[i++] - '0');
                if (i == f || (i < n && dig(v[i])))
                    return -1; /* none, or more than microseconds: left to the server */
                for (size_t k = i - f; k < 6; k++)
                    frac *= 10;
            }
        }
        t = ((int64_t)hh * 3600 + (int64_t)mm * 60 + ss) * 1000000 + frac;
    }
    if (i < n) { /* the zone, only after a time: a date's "-05" reads as a fourth date part */
        if (i == 10)
            return -1;
        *has_zone = 1;
        if (v[i] == 'Z' && i + 1 == n) {
            i++;
        } else if (v[i] == '+' || v[i] == '-') {
            unsigned oh, om = 0;
            int sign = v[i] == '-' ? -1 : 1;
            if (n < i + 3 || !num2(v + i + 1, &oh) || oh > 15)
                return -1;
            i += 3;
            if (i < n && v[i] == ':' && ++i == n)
                return -1; /* "+05:" : left to the server */
            if (i < n) {
                if (n != i + 2 || !num2(v + i, &om) || om > 59)
                    return -1;
                i += 2;
            }
            *offset = sign * (int32_t)(oh * 3600 + om * 60);
        } else {
            return -1;
        }
    }
    if (i != n)
        return -1;
    *us = days * USECS_PER_DAY + t;
    return 0;
}

/* COPY text (pg_copy_value's escapes and the other one-letter ones) back to its bytes, with
 * the field's length before them. */
static int put_text(cg_buf_t *b, const char *v, size_t n)
{
    const char *bs = memchr(v, '\\', n);
    if (!bs) { /* nearly every value */
        if (n > INT32_MAX)
            return -1;
        put_be(b, n, 4);
        cg_buf_append(b, v, n);
        return 0;
    }
    size_t at = b->len, len = 0;
    put_be(b, 0, 4); /* the length, written once known */
    size_t from = 0;
    for (size_t i = (size_t)(bs - v); i < n; i++) {
        if (v[i] != '\\')
            continue;
        if (i + 1 == n)
            return -1;
        char c;
        switch (v[i + 1]) {
        case '\\':
            c = '\\';
            break;
        case 't':
            c = '\t';
            break;
        case 'n':
            c = '\n';
            break;
        case 'r':
            c = '\r';
            break;
        case 'b':
            c = '\b';
            break;
        case 'f':
            c = '\f';
            break;
        case 'v':
            c = '\v';
            break;
        default:
            return -1; /* octal, hex or a bare letter: the server's to read */
        }
        cg_buf_append(b, v + from, i - from);
        cg_buf_putc(b, c);
        len += i - from + 1;
        from = i + 2;
        i++;
    }
    cg_buf_append(b, v + from, n - from);
    len += n - from;
    if (b->failed || len > INT32_MAX)
        return -1;
    unsigned char o[4] = {(unsigned char)(len >> 24), (unsigned char)(len >> 16),
                          (unsigned char)(len >> 8), (unsigned char)len};
    memcpy(b->data + at, o, 4);
    return 0;
}

int pg_bin_field(cg_buf_t *b, pg_bin_type_t t, const char *v, size_t n)
{
    if (n == 2 && v[0] == '\\' && v[1] == 'N') {
        pg_bin_null(b);
        return 0;
    }
    int64_t x;
    int32_t off;
    int zone;
    switch (t) {
    case PG_BIN_INT2:
    case PG_BIN_INT4:
    case PG_BIN_INT8:
        return parse_int(v, n, &x) ? -1 : pg_bin_int(b, t, x);
    case PG_BIN_NUMERIC:
        return put_numeric(b, v, n);
    case PG_BIN_DATE:
        if (n != 10 || parse_date(v, &x))
            return -1;
        put_fixed(b, (uint64_t)x, 4);
        return 0;
    case PG_BIN_TIMESTAMP: /* a zone written is ignored, as timestamp_in ignores it */
    case PG_BIN_TIMESTAMPTZ_UTC:
        if (parse_timestamp(v, n, &x, &off, &zone))
            return -1;
        if (t == PG_BIN_TIMESTAMPTZ_UTC)
            x -= (int64_t)off * 1000000;
        put_fixed(b, (uint64_t)x, 8);
        return 0;
    case PG_BIN_TEXT:
        return put_text(b, v, n);
    case PG_BIN_NONE:
        break;
    }
    return -1;
}

int pg_bin_fetch_types(PGconn *c, const char *schema, const char *table, const char *const *names,
                       size_t n, uint8_t *types, int *zone_utc, char *errstr, size_t errstr_size)
{
    cg_buf_t q;
    cg_buf_init(&q);
    pg_qual(&q, schema, table);
    cg_buf_putc(&q, '\0');
    if (q.failed) {
        cg_buf_free(&q);
        snprintf(errstr, errstr_size, "out of memory");
        return -1;
    }
    const char *par[1] = {q.data};
    PGresult *r = PQexecParams(c,
                               "SELECT a.attname, a.atttypid::int, current_setting('TimeZone') "
                               "FROM pg_attribute a WHERE a.attrelid = $1::regclass AND "
                               "a.attnum > 0 AND NOT a.attisdropped",
                               1, NULL, par, NULL, NULL, 0);
    cg_buf_free(&q);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        pg_message(r, c, errstr, errstr_size);
        PQclear(r);
        return -1;
    }
    *zone_utc = PQntuples(r) > 0 && pg_bin_zone_is_utc(PQgetvalue(r, 0, 2));
    memset(types, PG_BIN_NONE, n);
    for (int i = 0; i < PQntuples(r); i++)
        for (size_t k = 0; k < n; k++)
            if (!strcmp(PQgetvalue(r, i, 0), names[k]))
                types[k] = (uint8_t)pg_bin_type_of((unsigned)strtoul(PQgetvalue(r, i, 1), NULL, 10),
                                                   *zone_utc);
    PQclear(r);
    return 0;
}

/* Whether t's direct COPY of the columns cols goes in the binary format on this connection
 * (pg.copy_format, and every such column of a type pg_copy_binary.c encodes, as the catalog
 * says); -1 the transaction's error. */
int pg_bin_table_ready(pg_apply_t *a, PGconn *c, stage_t *s, const cg_omop_table_t *t,
                       uint64_t cols, char *errstr, size_t errstr_size)
{
    if (a->conf->copy_text)
        return 0;
    if (!s->bin_known) {
        const char *names[PG_MAX_COLUMNS];
        size_t n = t->n_columns < PG_MAX_COLUMNS ? t->n_columns : PG_MAX_COLUMNS;
        for (size_t k = 0; k < n; k++)
            names[k] = t->columns[k].name;
        if (pg_bin_fetch_types(c, a->conf->schema, t->name, names, n, s->bin_types, &a->zone_utc,
                               errstr, errstr_size))
            return -1;
        s->bin_known = 1;
    }
    for (size_t k = 0; k < t->n_columns && k < PG_MAX_COLUMNS; k++)
        if ((cols >> k & 1) && s->bin_types[k] == PG_BIN_NONE)
            return 0;
    return 1;
}

/* The same for the id map's pairs (source_id, id, t): t, a timestamptz, only in a session whose
 * zone is UTC (a time without a zone is read in the session's). */
int pg_bin_map_ready(pg_apply_t *a, PGconn *c, char *errstr, size_t errstr_size)
{
    if (a->conf->copy_text)
        return 0;
    if (!a->map_bin_known) {
        static const char *const names[3] = {"source_id", "id", "t"};
        if (pg_bin_fetch_types(c, a->conf->schema, "cg_id_map", names, 3, a->map_bin, &a->zone_utc,
                               errstr, errstr_size))
            return -1;
        a->map_bin_known = 1;
    }
    return a->map_bin[0] != PG_BIN_NONE && a->map_bin[1] != PG_BIN_NONE &&
           a->map_bin[2] != PG_BIN_NONE;
}

void pg_bin_forget(pg_apply_t *a)
{
    a->zone_utc = -1;
    a->map_bin_known = 0;
    for (size_t i = 0; i < a->n_stages; i++)
        a->stages[i].bin_known = 0;
}
