/* pg_envelope.c - the common record envelope read without building a JSON tree.
 *
 * Parsing every record with jansson (a tree of objects, a hash table per object, a copy of every
 * key and string, the shortest spelling of every real found by trial) was the sink's largest
 * cost in C. Nearly every record is a plain OMOP envelope: strings without escapes, integers
 * and decimals as the encoders write them, scalars in "row". Such a record is scanned in place
 * here: its values are slices of the record's own bytes, spelled as cg_omop_json_text() would
 * spell them. Anything else (an escape, an exponent, a real whose text is not its shortest
 * spelling, a nested row value, bad JSON) is left to the general path in pg_sink.c, which
 * parses it with jansson and says what is wrong with it: the fast path never rejects.
 * pg_envelope_values then puts the row's values in its table's column order, with lookups
 * prepared once per table (pg_envelope_tables) instead of string compares per field.
 */
#include "pg_int.h"

#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 32

typedef struct scan {
    const char *p, *end;
} scan_t;

static void ws(scan_t *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
        s->p++;
}

/* A string without escapes or control bytes, valid UTF-8: its bytes between the quotes. */
static int str(scan_t *s, cg_slice_t *out)
{
    if (s->p >= s->end || *s->p != '"')
        return 0;
    const char *b = ++s->p;
    /* nearly always printable ASCII up to the closing quote: checked eight bytes a step */
    const char *q = memchr(b, '"', (size_t)(s->end - b));
    if (q && cg_buf_json_plain(b, (size_t)(q - b))) {
        *out = (cg_slice_t){b, (size_t)(q - b)};
        s->p = q + 1;
        return 1;
    }
    while (s->p < s->end) {
        unsigned char c = (unsigned char)*s->p;
        if (c == '"') {
            *out = (cg_slice_t){b, (size_t)(s->p - b)};
            s->p++;
            return 1;
        }
        if (c == '\\' || c < 0x20)
            return 0;
        if (c < 0x80) {
            s->p++;
            continue;
        }
        size_t k = cg_utf8_seq_len((const unsigned char *)s->p, (size_t)(s->end - s->p));
        if (!k)
            return 0;
        s->p += k;
    }
    return 0;
}

static int digit(char c)
{
    return c >= '0' && c <= '9';
}

/* A number whose text is what cg_omop_json_text() writes for it: a 64-bit integer (no "-0"), or a
 * decimal without exponent whose last fraction digit is not 0, of at most 15 significant digits (so
 * no shorter text reads back to the same double) and, below 1, at most three zeros after the point
 * (so %g writes it without an exponent); or N.0 where N is 0 or ends in a digit other than 0. */
static int num(scan_t *s, cg_slice_t *out)
{
    const char *b = s->p, *p = s->p, *e = s->end;
    if (p < e && *p == '-')
        p++;
    if (p >= e || !digit(*p))
        return 0;
    const char *int0 = p;
    if (*p == '0')
        p++;
    else
        while (p < e && digit(*p))
            p++;
    size_t int_digits = (size_t)(p - int0);
    int int_zero = int_digits == 1 && *int0 == '0';
    if (p < e && (*p == 'e' || *p == 'E'))
        return 0;
    if (p >= e || *p != '.') {
        if (int_digits > 19 || (int_zero && *b == '-') ||
            (int_digits == 19 &&
             memcmp(int0, *b == '-' ? "9223372036854775808" : "9223372036854775807", 19) > 0))
            return 0;
        *out = (cg_slice_t){b, (size_t)(p - b)};
        s->p = p;
        return 1;
    }
    const char *f0 = ++p;
    while (p < e && digit(*p))
        p++;
    size_t frac = (size_t)(p - f0);
    if (!frac || (p < e && (*p == 'e' || *p == 'E')))
        return 0;
    if (frac == 1 && *f0 == '0') { /* N.0: "%.*g" writes N, then ".0" is put back */
        if (int_digits > 15 || (!int_zero && int0[int_digits - 1] == '0'))
            return 0; /* 10.0 is written 1e+01 */
        *out = (cg_slice_t){b, (size_t)(p - b)};
        s->p = p;
        return 1;
    }
    if (p[-1] == '0')
        return 0;
    size_t sig = int_zero ? frac : int_digits + frac;
    if (int_zero) { /* 0.000ddd: the zeros after the point are no significant digits */
        size_t z = 0;
        while (z < frac && f0[z] == '0')
            z++;
        if (z > 3)
            return 0;
        sig -= z;
    }
    if (sig > 15)
        return 0;
    *out = (cg_slice_t){b, (size_t)(p - b)};
    s->p = p;
    return 1;
}

static int lit(scan_t *s, const char *w, size_t n)
{
    if ((size_t)(s->end - s->p) < n || memcmp(s->p, w, n))
        return 0;
    s->p += n;
    return 1;
}

/* A scalar: its text (NULL for null). 0 when it is no scalar of the fast form. */
static int scalar(scan_t *s, const char **v, size_t *len)
{
    cg_slice_t x;
    if (s->p >= s->end)
        return 0;
    switch (*s->p) {
    case '"':
        if (!str(s, &x))
            return 0;
        break;
    case 'n':
        *v = NULL;
        *len = 0;
        return lit(s, "null", 4);
    case 't':
        x = CG_SLICE_LIT("true");
        if (!lit(s, "true", 4))
            return 0;
        break;
    case 'f':
        x = CG_SLICE_LIT("false");
        if (!lit(s, "false", 5))
            return 0;
        break;
    default:
        if (!num(s, &x))
            return 0;
    }
    *v = x.ptr;
    *len = x.len;
    return 1;
}

/* Any value of the fast form, checked and passed over. */
static int skip(scan_t *s, int depth)
{
    if (depth > MAX_DEPTH || s->p >= s->end)
        return 0;
    char open = *s->p;
    if (open != '{' && open != '[') {
        const char *v;
        size_t n;
        return scalar(s, &v, &n);
    }
    char close = open == '{' ? '}' : ']';
    s->p++;
    ws(s);
    if (s->p < s->end && *s->p == close) {
        s->p++;
        return 1;
    }
    for (;;) {
        if (open == '{') {
            cg_slice_t k;
            if (!str(s, &k))
                return 0;
            ws(s);
            if (s->p >= s->end || *s->p++ != ':')
                return 0;
            ws(s);
        }
        if (!skip(s, depth + 1))
            return 0;
        ws(s);
        if (s->p >= s->end)
            return 0;
        char c = *s->p++;
        if (c == close)
            return 1;
        if (c != ',')
            return 0;
        ws(s);
    }
}

/* An object's members, each value read by member (after the key and its colon; 0 refuses the
 * envelope). 1 when the object was read whole. */
typedef int(member_fn)(scan_t *s, cg_slice_t key, pg_envelope_t *env);
static int object(scan_t *s, member_fn *member, pg_envelope_t *env)
{
    if (s->p >= s->end || *s->p != '{')
        return 0;
    s->p++;
    ws(s);
    if (s->p < s->end && *s->p == '}') {
        s->p++;
        return 1;
    }
    for (;;) {
        cg_slice_t k;
        if (!str(s, &k))
            return 0;
        ws(s);
        if (s->p >= s->end || *s->p++ != ':')
            return 0;
        ws(s);
        if (!member(s, k, env))
            return 0;
        ws(s);
        if (s->p >= s->end)
            return 0;
        char c = *s->p++;
        if (c == '}')
            return 1;
        if (c != ',')
            return 0;
        ws(s);
    }
}

/* A member of the row object: kept in order (a key named twice is kept twice; the later wins
 * when they are applied, as jansson's last value does). */
static int row_member(scan_t *s, cg_slice_t key, pg_envelope_t *env)
{
    if (env->n_row == PG_ENVELOPE_MAX_ROW)
        return 0;
    pg_envelope_member_t *m = &env->row[env->n_row++];
    m->key = key;
    return scalar(s, &m->value, &m->len);
}

/* A member of the source object: its "time" (a string) kept, the others passed over. */
static int source_member(scan_t *s, cg_slice_t key, pg_envelope_t *env)
{
    if (key.len == 4 && !memcmp(key.ptr, "time", 4) && s->p < s->end && *s->p == '"')
        return str(s, &env->time);
    return skip(s, 2);
}

int pg_envelope_scan(const char *raw, size_t len, pg_envelope_t *env)
{
    scan_t s = {raw, raw + len};
    int got_row = 0;
    env->standard = env->table = env->op = env->time = (cg_slice_t){NULL, 0};
    env->n_row = 0;
    ws(&s);
    if (s.p >= s.end || *s.p++ != '{')
        return 0;
    ws(&s);
    if (s.p < s.end && *s.p == '}')
        return 0; /* no members: the general path says what is missing */
    for (;;) {
        cg_slice_t k;
        if (!str(&s, &k))
            return 0;
        ws(&s);
        if (s.p >= s.end || *s.p++ != ':')
            return 0;
        ws(&s);
        cg_slice_t *field = k.len == 8 && !memcmp(k.ptr, "standard", 8) ? &env->standard
                            : k.len == 5 && !memcmp(k.ptr, "table", 5)  ? &env->table
                            : k.len == 2 && !memcmp(k.ptr, "op", 2)     ? &env->op
                                                                        : NULL;
        if (field) {
            if (!str(&s, field))
                return 0;
        } else if (k.len == 3 && !memcmp(k.ptr, "row", 3)) {
            env->n_row = 0;
            if (!object(&s, row_member, env))
                return 0;
            got_row = 1;
        } else if (k.len == 6 && !memcmp(k.ptr, "source", 6) && s.p < s.end && *s.p == '{') {
            if (!object(&s, source_member, env))
                return 0;
        } else if (!skip(&s, 1)) {
            return 0;
        }
        ws(&s);
        if (s.p >= s.end)
            return 0;
        char c = *s.p++;
        if (c == '}')
            break;
        if (c != ',')
            return 0;
        ws(&s);
    }
    ws(&s);
    return s.p == s.end && got_row && env->standard.ptr && env->table.ptr && env->op.ptr;
}

bool pg_time_text_ok(const char *t, size_t n)
{
    /* YYYY-MM-DD, then THH:MM[:SS[.f…]], then Z, ±HH, ±HHMM or ±HH:MM (README, "Types") */
    static const char date[] = "dddd-dd-dd";
    if (n < 10)
        return false;
    for (size_t i = 0; i < 10; i++)
        if (date[i] == 'd' ? !digit(t[i]) : t[i] != date[i])
            return false;
    size_t i = 10;
    if (i == n)
        return true;
    if (t[i] != 'T' || n < i + 6 || !digit(t[i + 1]) || !digit(t[i + 2]) || t[i + 3] != ':' ||
        !digit(t[i + 4]) || !digit(t[i + 5]))
        return false;
    i += 6;
    if (i + 3 <= n && t[i] == ':') {
        if (!digit(t[i + 1]) || !digit(t[i + 2]))
            return false;
        i += 3;
        if (i < n && t[i] == '.') {
            size_t f = ++i;
            while (i < n && digit(t[i]))
                i++;
            if (i == f)
                return false;
        }
    }
    if (i == n)
        return true;
    if (t[i] == 'Z')
        return i + 1 == n;
    if (t[i] != '+' && t[i] != '-')
        return false;
    size_t z = n - i - 1; /* HH, HHMM or HH:MM */
    const char *h = t + i + 1;
    if (z == 2)
        return digit(h[0]) && digit(h[1]);
    if (z == 4)
        return digit(h[0]) && digit(h[1]) && digit(h[2]) && digit(h[3]);
    return z == 5 && digit(h[0]) && digit(h[1]) && h[2] == ':' && digit(h[3]) && digit(h[4]);
}

/* Whether text is a 64-bit id: digits (a sign allowed) that fit a bigint. Checked when a record
 * is staged, once, so the staging tables type ids as bigint and the batch's statements never
 * test them. */
bool pg_id_text_ok(const char *t, size_t n)
{
    size_t neg = n && t[0] == '-';
    if (n == neg || n - neg > 19)
        return false;
    for (size_t i = neg; i < n; i++)
        if (t[i] < '0' || t[i] > '9')
            return false;
    return n - neg < 19 ||
           memcmp(t + neg, neg ? "9223372036854775808" : "9223372036854775807", 19) <= 0;
}

pg_tinfo_t *pg_envelope_tables(void)
{
    pg_tinfo_t *tinfo = calloc(pg_table_count(), sizeof(*tinfo));
    for (size_t i = 0; tinfo && i < pg_table_count(); i++) {
        const cg_omop_table_t *t = pg_table_at(i);
        pg_tinfo_t *ti = &tinfo[i];
        cg_omop_column(t, pg_table_key(t)->name, &ti->key);
        for (size_t k = 0; k < t->n_columns && k < PG_MAX_COLUMNS; k++) {
            size_t n = strlen(t->columns[k].name);
            ti->name_len[k] = (unsigned char)(n < 255 ? n : 255);
            if (pg_column_is_id(&t->columns[k]))
                ti->ids |= (uint64_t)1 << k;
        }
    }
    return tinfo;
}

static int slice_is(cg_slice_t v, const char *lit)
{
    size_t n = strlen(lit);
    return v.len == n && !memcmp(v.ptr, lit, n);
}

int pg_envelope_values(const pg_envelope_t *e, const pg_tinfo_t *tinfo,
                       const cg_omop_table_t **table, int *table_index, int *del, const char **vals,
                       size_t *lens)
{
    if (!slice_is(e->standard, "omop-cdm-5.4"))
        return 0;
    *del = slice_is(e->op, "delete");
    if (!*del && !slice_is(e->op, "upsert"))
        return 0;
    const cg_omop_table_t *t = cg_omop_table_n(e->table.ptr, e->table.len);
    int ti = t ? pg_table_index(t) : -1;
    if (ti < 0 || !strcmp(t->name, "observation_period") || t->n_columns > PG_MAX_COLUMNS)
        return 0;
    const pg_tinfo_t *info = &tinfo[ti];
    size_t ci = 0, nc = t->n_columns;
    for (size_t i = 0; i < e->n_row; i++, ci++) {
        const pg_envelope_member_t *m = &e->row[i];
        /* encoders write the columns in the table's order: looked for from the last one on */
        size_t k = 0;
        for (; k < nc; k++) {
            size_t j = (ci + k) % nc;
            if (info->name_len[j] == m->key.len &&
                !memcmp(t->columns[j].name, m->key.ptr, m->key.len))
                break;
        }
        if (k == nc)
            return 0; /* no such column: the general path says so */
        ci = (ci + k) % nc;
        vals[ci] = m->value; /* a key named twice: the later value, as jansson keeps it */
        lens[ci] = m->len;
    }
    for (size_t k = 0; k < nc; k++)
        if (vals[k] && (info->ids >> k & 1) && !pg_id_text_ok(vals[k], lens[k]))
            return 0;
    if (!vals[info->key])
        return 0;
    *table = t;
    *table_index = ti;
    return 1;
}
