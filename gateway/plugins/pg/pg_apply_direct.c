/* pg_apply_direct.c - a table's staged rows whose keys are new, COPY'd straight into it.
 *
 * A key the id map has never seen names no row: its record is a plain insert. For those rows the
 * staging table, the INSERT ... SELECT (a WAL record and an id-map probe per id column per row)
 * and ON CONFLICT buy nothing, so with integer ids a batch goes:
 *
 *   1. one SELECT of the batch's row ids already in the id map, an index probe each (and of
 *      its persons merged away: such a batch takes the statements, which follow the merge);
 *      ids a committed transaction saw in the map are known without it (a small cache:
 *      persons and visits come again and again). The rows' own keys are probed only while the
 *      table's recent batches had keys the map held (stage_t.probe_keys): else they are
 *      guessed new, a fifth of the server's work saved on a feed of new facts, and 2's COPY
 *      tells a wrong guess (a key the map holds: 23505): rolled back to the savepoint, the
 *      batch is looked up and tried again, its ids given out again (a->pool: no gap), and the
 *      table's next PG_PROBE_BATCHES batches are looked up first;
 *   2. under a savepoint, compact ids for the new ids from the map's own sequence, and one COPY
 *      of the pairs into the map in order (two instances never wait on each other in a cycle),
 *      without ON CONFLICT: a concurrent instance's same new id fails it (23505) and the
 *      statements run instead;
 *   3. under another, the new keys' rows as COPY text with compact ids, one COPY into the table
 *      (PostgreSQL inserts them in bulk); a row it refuses (class 22, 23) rolls 3 back (the ids
 *      stay mapped: no gap in the map's integers) and every row of the table takes the
 *      statements, which reject the bad row alone;
 *   4. their persons' observation periods widened, from the rows' dates sent as arrays.
 *
 * When a full batch's last table goes this way whole and nothing follows it in the flush, 4 is
 * sent before 3, and 3 is left running while the engine reads and stages the next batch (the
 * server inserts while the sink parses): pg_apply_settle (pg_apply_flush.c) waits for its
 * answer before anything else uses the connection, and if a row was refused, rolls 3 back and
 * puts the held rows through the statements then, before the next batch's.
 *
 * With cohorts, the persons of those rows join pg_temp.cg_changed_persons from the rows' own
 * text (a row with a new key changed no person before the batch: only its own person counts).
 *
 * The rows whose keys were there stay staged for pg_apply_sql.c's upsert. Not taken: bigint
 * ids, a key twice or a delete in the batch (order matters then), the person table (a merged
 * person stays merged).
 */
#include "pg_int.h"

#include "cg_log.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/* an id of the batch: used; its value listed in $2 (a person); new to the id map; looked up
 * (listed in $1, or known from the cache); a reference (in a column other than the key) */
enum { ID_USED = 1, ID_PERSON = 2, ID_NEW = 4, ID_LISTED = 8, ID_REF = 16 };
#define ID_UNKNOWN INT64_MIN
/* batches of a table looked up first after one that had a key the map held */
#define PG_PROBE_BATCHES 16

/* *arr with room for need ids (*cap doubled as needed); -1 when out of memory. */
static int room_i64(int64_t **arr, size_t *cap, size_t need)
{
    if (need <= *cap)
        return 0;
    size_t c = *cap ? *cap : 1024;
    while (c < need)
        c *= 2;
    int64_t *grown = realloc(*arr, c * sizeof(*grown));
    if (!grown)
        return -1;
    *arr = grown;
    *cap = c;
    return 0;
}

static size_t id_slot(const pg_apply_t *a, int64_t k)
{
    return (size_t)(((uint64_t)k * 0x9E3779B97F4A7C15ULL) >> 20) & (a->ids_cap - 1);
}

/* The slot of k, added (its compact id unknown) when new; -1 when out of memory. */
static long id_add(pg_apply_t *a, int64_t k)
{
    if (2 * (a->ids_n + 1) > a->ids_cap) { /* at most half full */
        size_t cap = a->ids_cap ? a->ids_cap * 2 : 4096;
        int64_t *nk = malloc(cap * sizeof(*nk)), *nv = malloc(cap * sizeof(*nv));
        int64_t *nt = malloc(cap * sizeof(*nt));
        unsigned char *nf = calloc(cap, 1);
        if (!nk || !nv || !nt || !nf) {
            free(nk);
            free(nv);
            free(nt);
            free(nf);
            return -1;
        }
        int64_t *ok = a->ids_k, *ov = a->ids_v, *ot = a->ids_t;
        unsigned char *of = a->ids_flags;
        size_t ocap = a->ids_cap;
        a->ids_k = nk, a->ids_v = nv, a->ids_t = nt, a->ids_flags = nf, a->ids_cap = cap;
        for (size_t i = 0; i < ocap; i++) {
            if (!of[i])
                continue;
            size_t j = id_slot(a, ok[i]);
            while (nf[j])
                j = (j + 1) & (cap - 1);
            nk[j] = ok[i], nv[j] = ov[i], nt[j] = ot[i], nf[j] = of[i];
        }
        free(ok);
        free(ov);
        free(ot);
        free(of);
    }
    size_t j = id_slot(a, k);
    while (a->ids_flags[j]) {
        if (a->ids_k[j] == k)
            return (long)j;
        j = (j + 1) & (a->ids_cap - 1);
    }
    if (room_i64(&a->order, &a->order_cap, a->ids_n + 1))
        return -1;
    a->order[a->ids_n] = k;
    a->ids_k[j] = k, a->ids_v[j] = ID_UNKNOWN, a->ids_t[j] = -1, a->ids_flags[j] = ID_USED;
    a->ids_n++;
    return (long)j;
}

static long id_find(const pg_apply_t *a, int64_t k)
{
    size_t j = id_slot(a, k);
    while (a->ids_flags[j]) {
        if (a->ids_k[j] == k)
            return (long)j;
        j = (j + 1) & (a->ids_cap - 1);
    }
    return -1;
}

/* A staged row's fields: sequence, op, topic, partition, offset, audit line, source time, then
 * the columns (pg_apply_stage's COPY text: a field never holds a raw tab or newline). The
 * line's end. */
#define STAGE_META 7
#define STAGE_TIME 6
static const char *split_line(const char *p, const char *end, const char **f, size_t *fl, size_t nf)
{
    for (size_t i = 0; i < nf; i++) {
        const char *q = memchr(p, i + 1 < nf ? '\t' : '\n', (size_t)(end - p));
        if (!q)
            return NULL;
        f[i] = p;
        fl[i] = (size_t)(q - p);
        p = q + 1;
    }
    return p;
}

static int is_null(const char *f, size_t n)
{
    return n == 2 && f[0] == '\\' && f[1] == 'N';
}

/* An id field (checked as a 64-bit integer when staged). */
static int64_t id_of(const char *v, size_t n)
{
    uint64_t mag = 0;
    int neg = n && v[0] == '-';
    for (size_t i = (size_t)neg; i < n; i++)
        mag = mag * 10 + (uint64_t)(v[i] - '0');
    return (int64_t)(neg ? 0 - mag : mag);
}

/* An array literal's element from a COPY text field: NULL, or quoted (a date may be spelled
 * with commas and spaces). */
static void put_elem(cg_buf_t *b, const char *f, size_t n)
{
    if (is_null(f, n)) {
        cg_buf_puts(b, "NULL");
        return;
    }
    if (!memchr(f, '\\', n) && !memchr(f, '"', n)) { /* a date: nearly always */
        cg_buf_putc(b, '"');
        cg_buf_append(b, f, n);
        cg_buf_putc(b, '"');
        return;
    }
    cg_buf_putc(b, '"');
    for (size_t i = 0; i < n; i++) {
        char ch = f[i];
        if (ch == '\\' && i + 1 < n) { /* COPY's escapes */
            ch = f[++i];
            ch = ch == 't' ? '\t' : ch == 'n' ? '\n' : ch == 'r' ? '\r' : ch;
        }
        if (ch == '"' || ch == '\\')
            cg_buf_putc(b, '\\');
        cg_buf_putc(b, ch);
    }
    cg_buf_putc(b, '"');
}

/* Every column of t, as a column set (a table the sink applies has at most 64). */
static uint64_t all_columns(const cg_omop_table_t *t)
{
    return t->n_columns >= 64 ? ~(uint64_t)0 : ((uint64_t)1 << t->n_columns) - 1;
}

/* cols: the columns the direct COPY names (direct_cols). */
static void build_sql(pg_apply_t *a, stage_t *s, const cg_omop_table_t *t, uint64_t cols)
{
    const char *sc = a->conf->schema;
    cg_buf_t b;
    if (!a->ids_sql) {
        /* scalar subqueries: one index probe per id, where a join of the array may scan the
         * whole map */
        cg_buf_init(&b);
        cg_buf_puts(&b, "SELECT x.v, x.id FROM (SELECT u.v, (SELECT m.id FROM ");
        pg_qual(&b, sc, "cg_id_map");
        cg_buf_puts(&b, " m WHERE m.source_id = u.v) AS id FROM unnest($1::bigint[]) u(v)) x WHERE "
                        "x.id IS NOT NULL UNION ALL SELECT p.v, NULL FROM unnest($2::bigint[]) "
                        "p(v) WHERE (SELECT true FROM ");
        pg_qual(&b, sc, "cg_person_merge");
        cg_buf_puts(&b, " g WHERE g.merged_source_id = p.v)");
        cg_buf_putc(&b, '\0');
        a->ids_sql = b.data;
    }
    if (!a->new_ids_sql) {
        cg_buf_init(&b);
        cg_buf_puts(&b, "COPY ");
        pg_qual(&b, sc, "cg_id_map");
        cg_buf_puts(&b, " (source_id, id, t) FROM STDIN");
        cg_buf_putc(&b, '\0');
        a->new_ids_sql = b.data;
    }
    if (!a->new_ids_bin_sql && a->new_ids_sql) {
        cg_buf_init(&b);
        cg_buf_printf(&b, "%s WITH (FORMAT binary)", a->new_ids_sql);
        cg_buf_putc(&b, '\0');
        a->new_ids_bin_sql = b.data;
    }
    if (!s->direct_sql || !s->direct_bin_sql || s->direct_cols != cols) {
        free(s->direct_sql);
        free(s->direct_bin_sql);
        s->direct_bin_sql = NULL;
        cg_buf_init(&b);
        cg_buf_puts(&b, "COPY ");
        pg_qual(&b, sc, t->name);
        cg_buf_puts(&b, " (");
        int first = 1;
        for (size_t k = 0; k < t->n_columns; k++) {
            if (!(cols >> k & 1))
                continue;
            cg_buf_puts(&b, first ? "" : ", ");
            pg_ident(&b, t->columns[k].name);
            first = 0;
        }
        cg_buf_puts(&b, ") FROM STDIN");
        cg_buf_putc(&b, '\0');
        s->direct_sql = b.data;
        s->direct_cols = cols;
        if (s->direct_sql) {
            cg_buf_init(&b);
            cg_buf_printf(&b, "%s WITH (FORMAT binary)", s->direct_sql);
            cg_buf_putc(&b, '\0');
            s->direct_bin_sql = b.data;
        }
    }
    const char *d0, *d1;
    if (!s->direct_widen_sql && pg_period_columns(t, &d0, &d1)) {
        /* pg_apply_periods.c's widening, over the rows' (person, start, end) */
        cg_buf_init(&b);
        cg_buf_puts(&b, "WITH agg AS (SELECT u.p, min(u.d0) AS d0, max(greatest(u.d0, "
                        "coalesce(u.d1, u.d0))) AS d1 FROM unnest($1::bigint[], $2::date[], "
                        "$3::date[]) u(p, d0, d1) WHERE EXISTS (SELECT 1 FROM ");
        pg_qual(&b, sc, "person");
        cg_buf_puts(&b, " x WHERE x.person_id = u.p) GROUP BY u.p) INSERT INTO ");
        pg_period_widen(&b, sc, "p");
        cg_buf_putc(&b, '\0');
        s->direct_widen_sql = b.data;
    }
}

/* Runs sql with text parameters; its result, or NULL with the message (*rows_fault: a data or
 * constraint error). */
static PGresult *run(PGconn *c, const char *sql, int n, const cg_buf_t *par, int *rows_fault,
                     char *errstr, size_t errstr_size)
{
    const char *v[3];
    for (int i = 0; i < n; i++)
        v[i] = par[i].data;
    PGresult *r = PQexecParams(c, sql, n, NULL, v, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(r);
    if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK)
        return r;
    pg_message(r, c, errstr, errstr_size);
    const char *code = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    if (rows_fault)
        *rows_fault = code && (!strncmp(code, "22", 2) || !strncmp(code, "23", 2));
    PQclear(r);
    return NULL;
}

/* An id learned in the open transaction, for the cache once it commits. */
static int pend(pg_apply_t *a, int64_t k, int64_t v)
{
    size_t cap_k = a->cap_pend, cap_v = a->cap_pend;
    if (room_i64(&a->pend_k, &cap_k, a->n_pend + 1) || room_i64(&a->pend_v, &cap_v, a->n_pend + 1))
        return -1;
    a->cap_pend = cap_v; /* both arrays hold at least that many */
    a->pend_k[a->n_pend] = k;
    a->pend_v[a->n_pend++] = v;
    return 0;
}

/* The look-up's answer (source id, compact id; a NULL id: a person merged away) into a's
 * table. -1 when out of memory. */
static int fill_ids(pg_apply_t *a, const PGresult *r, int *merged)
{
    for (int i = 0; i < PQntuples(r); i++) {
        long j = id_find(a, strtoll(PQgetvalue(r, i, 0), NULL, 10));
        if (j < 0)
            continue;
        if (PQgetisnull(r, i, 1)) {
            *merged = 1;
            continue;
        }
        a->ids_v[j] = strtoll(PQgetvalue(r, i, 1), NULL, 10);
        if ((a->ids_flags[j] & ID_REF) && pend(a, a->ids_k[j], a->ids_v[j]))
            return -1;
    }
    return 0;
}

static int cmp_i64(const void *x, const void *y)
{
    int64_t a = *(const int64_t *)x, b = *(const int64_t *)y;
    return (a > b) - (a < b);
}

/* Step 1: the batch's distinct ids into a's table and $1, its persons into $2; the ids already
 * mapped looked up (the rows' own keys only when probe). 1 go on, 0 not for this path, -1 the
 * transaction's error. */
static int look_up(pg_apply_t *a, PGconn *c, stage_t *s, const cg_omop_table_t *t, uint64_t ids,
                   long pcol, int probe, char *errstr, size_t errstr_size)
{
    const char *f[STAGE_META + PG_MAX_COLUMNS];
    size_t fl[STAGE_META + PG_MAX_COLUMNS], nf = STAGE_META + t->n_columns;
    if (!a->cache_k) {
        a->cache_k = calloc(PG_ID_CACHE, sizeof(*a->cache_k));
        a->cache_v = calloc(PG_ID_CACHE, sizeof(*a->cache_v));
        if (!a->cache_k || !a->cache_v)
            return -1;
    }
    if (a->ids_n)
        memset(a->ids_flags, 0, a->ids_cap);
    a->ids_n = 0;
    cg_buf_reset(&a->par1);
    cg_buf_reset(&a->par2);
    cg_buf_putc(&a->par1, '{');
    cg_buf_putc(&a->par2, '{');
    const char *p = s->copy.data, *end = p + s->copy.len;
    while (p < end) {
        if (!(p = split_line(p, end, f, fl, nf)))
            return 0;
        for (size_t k = 0; k < t->n_columns; k++) {
            if (!(ids >> k & 1))
                continue;
            const char *v = f[STAGE_META + k];
            size_t n = fl[STAGE_META + k];
            if (is_null(v, n)) {
                if (k == s->key_col) /* the statements say why */
                    return 0;
                continue;
            }
            int64_t id = id_of(v, n);
            long j = id_add(a, id);
            if (j < 0)
                return -1;
            if (k != s->key_col)
                a->ids_flags[j] |= ID_REF;
            else /* its source time goes into the map with it (a key comes once here) */
                a->ids_t[j] = f[STAGE_TIME] - s->copy.data;
            if (!(a->ids_flags[j] & ID_LISTED)) {
                size_t slot = pg_id_cache_slot(id);
                if (a->cache_v[slot] && a->cache_k[slot] == id)
                    a->ids_v[j] = a->cache_v[slot];
                a->ids_flags[j] |= ID_LISTED;
            }
            if ((long)k == pcol && !(a->ids_flags[j] & ID_PERSON)) {
                if (a->par2.len > 1)
                    cg_buf_putc(&a->par2, ',');
                cg_buf_append(&a->par2, v, n);
                a->ids_flags[j] |= ID_PERSON;
            }
        }
    }
    /* $1 in order: the index probes then walk the map's pages in order (a third less time
     * than in the rows' order) */
    int64_t *q = malloc((a->ids_n ? a->ids_n : 1) * sizeof(*q));
    if (!q)
        return -1;
    size_t nq = 0;
    for (size_t j = 0; j < a->ids_cap; j++)
        if ((a->ids_flags[j] & ID_LISTED) && a->ids_v[j] == ID_UNKNOWN &&
            (probe || (a->ids_flags[j] & ID_REF)))
            q[nq++] = a->ids_k[j];
    qsort(q, nq, sizeof(*q), cmp_i64);
    for (size_t i = 0; i < nq; i++) {
        if (i)
            cg_buf_putc(&a->par1, ',');
        cg_buf_put_int64(&a->par1, q[i]);
    }
    free(q);
    cg_buf_putc(&a->par1, '}');
    cg_buf_putc(&a->par2, '}');
    if (cg_buf_putc(&a->par1, '\0') != CG_OK || cg_buf_putc(&a->par2, '\0') != CG_OK)
        return -1;
    cg_buf_t par[2] = {a->par1, a->par2};
    PGresult *r = run(c, a->ids_sql, 2, par, NULL, errstr, errstr_size);
    if (!r)
        return -1;
    int merged = 0, oom = fill_ids(a, r, &merged);
    PQclear(r);
    if (oom)
        return -1;
    if (merged)
        return 0;
    int any = 0;
    for (size_t j = 0; j < a->ids_cap; j++)
        if (a->ids_flags[j] && a->ids_v[j] == ID_UNKNOWN)
            a->ids_flags[j] |= ID_NEW;
    p = s->copy.data;
    while (p < end && !any) { /* a key new to the map: something for this path */
        p = split_line(p, end, f, fl, nf);
        long j = id_find(a, id_of(f[STAGE_META + s->key_col], fl[STAGE_META + s->key_col]));
        any = j >= 0 && (a->ids_flags[j] & ID_NEW);
    }
    if (!any) /* every key known: updates, which the next batches may bring too */
        s->probe_keys = PG_PROBE_BATCHES;
    return any;
}

/* Compact ids no row took, to be given out again (out of memory: a gap, nothing worse). */
static void pool_put(pg_apply_t *a, const int64_t *ids, size_t n)
{
    if (room_i64(&a->pool, &a->pool_cap, a->pool_n + n))
        return;
    memcpy(a->pool + a->pool_n, ids, n * sizeof(*ids));
    a->pool_n += n;
}

/* The pairs of the new ids v[0..n) (sorted) into a->par1 as COPY rows of the id map, binary or
 * text; 1 when binary was asked for and a time is not of a spelling it encodes, -1 when out of
 * memory. */
static int map_pairs(pg_apply_t *a, const stage_t *s, const int64_t *v, size_t n, int binary)
{
    cg_buf_t *b = &a->par1;
    cg_buf_reset(b);
    if (binary)
        pg_bin_header(b);
    for (size_t i = 0; i < n; i++) {
        long j = id_find(a, v[i]);
        const char *tf = "\\N";
        size_t tl = 2;
        if (a->ids_t[j] >= 0) { /* a key: its row's source time as staged (or \N) */
            tf = s->copy.data + a->ids_t[j];
            const char *te = memchr(tf, '\t', s->copy.len - (size_t)a->ids_t[j]);
            tl = te ? (size_t)(te - tf) : 0;
        }
        if (binary) {
            pg_bin_tuple(b, 3);
            if (pg_bin_int(b, (pg_bin_type_t)a->map_bin[0], v[i]) ||
                pg_bin_int(b, (pg_bin_type_t)a->map_bin[1], a->ids_v[j]) ||
                pg_bin_field(b, (pg_bin_type_t)a->map_bin[2], tf, tl))
                return 1;
            continue;
        }
        cg_buf_put_int64(b, v[i]);
        cg_buf_putc(b, '\t');
        cg_buf_put_int64(b, a->ids_v[j]);
        cg_buf_putc(b, '\t');
        cg_buf_append(b, tf, tl);
        cg_buf_putc(b, '\n');
    }
    if (binary)
        pg_bin_trailer(b);
    return b->failed ? -1 : 0;
}

/* Step 2: compact ids for the new ids, from the pool and then the id map's own sequence (one
 * nextval each, as its identity would take), and the pairs COPY'd into it in order; their
 * compact ids into a's table. A refused COPY gives its ids back to the pool. */
static int map_new(pg_apply_t *a, PGconn *c, const stage_t *s, int *rows_fault, char *errstr,
                   size_t errstr_size)
{
    if (!a->id_seq) {
        cg_buf_t q;
        cg_buf_init(&q);
        pg_qual(&q, a->conf->schema, "cg_id_map");
        cg_buf_putc(&q, '\0');
        PGresult *r = q.data ? run(c, "SELECT pg_get_serial_sequence($1, 'id')", 1, &q, NULL,
                                   errstr, errstr_size)
                             : NULL;
        cg_buf_free(&q);
        if (!r)
            return -1;
        if (PQntuples(r) == 1 && !PQgetisnull(r, 0, 0))
            a->id_seq = strdup(PQgetvalue(r, 0, 0));
        PQclear(r);
        if (!a->id_seq) {
            snprintf(errstr, errstr_size, "cg_id_map.id has no sequence");
            return -1;
        }
    }
    int bin_ok = pg_bin_map_ready(a, c, errstr, errstr_size);
    if (bin_ok < 0)
        return -1;
    /* the new ids in the order the rows name them */
    size_t n = 0;
    int64_t *v = malloc((a->ids_n ? a->ids_n : 1) * sizeof(*v));
    if (!v)
        return -1;
    for (size_t i = 0; i < a->ids_n; i++)
        if (a->ids_flags[id_find(a, a->order[i])] & ID_NEW)
            v[n++] = a->order[i];
    size_t from_pool = n < a->pool_n ? n : a->pool_n, draw = n - from_pool;
    int64_t *got = malloc((n ? n : 1) * sizeof(*got));
    if (!got) {
        free(v);
        return -1;
    }
    PGresult *r = NULL;
    if (draw) {
        cg_buf_t par[2];
        cg_buf_init(&par[0]);
        cg_buf_init(&par[1]);
        cg_buf_puts(&par[0], a->id_seq);
        cg_buf_putc(&par[0], '\0');
        cg_buf_put_int64(&par[1], (int64_t)draw);
        cg_buf_putc(&par[1], '\0');
        r = par[0].data && par[1].data
                ? run(c, "SELECT nextval($1::regclass) FROM generate_series(1, $2::integer)", 2,
                      par, NULL, errstr, errstr_size)
                : NULL;
        cg_buf_free(&par[0]);
        cg_buf_free(&par[1]);
        if (!r || (size_t)PQntuples(r) != draw) {
            if (r)
                snprintf(errstr, errstr_size, "the id map's sequence answered %d ids, not %zu",
                         PQntuples(r), draw);
            PQclear(r);
            free(v);
            free(got);
            return -1;
        }
    }
    for (size_t i = 0; i < from_pool; i++)
        got[i] = a->pool[--a->pool_n];
    for (size_t i = 0; i < draw; i++)
        got[from_pool + i] = strtoll(PQgetvalue(r, (int)i, 0), NULL, 10);
    PQclear(r);
    /* compact ids ascending in the rows' order: the table's primary key then grows at its end
     * as a plain COPY's does (a tenth less time than in the keys' order); the pairs go into
     * the map in the keys' order (two instances never wait on each other in a cycle) */
    qsort(got, n, sizeof(*got), cmp_i64);
    for (size_t i = 0; i < n; i++)
        a->ids_v[id_find(a, v[i])] = got[i];
    qsort(v, n, sizeof(*v), cmp_i64);
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        long j = id_find(a, v[i]);
        rc = (a->ids_flags[j] & ID_REF) && pend(a, v[i], a->ids_v[j]);
    }
    int bin = bin_ok;
    if (!rc && (!bin || map_pairs(a, s, v, n, 1))) {
        bin = 0;
        rc = map_pairs(a, s, v, n, 0);
    }
    free(v);
    if (!rc)
        rc = pg_copy_in(c, bin ? a->new_ids_bin_sql : a->new_ids_sql, &a->par1, rows_fault, errstr,
                        errstr_size);
    if (rc) /* the map holds none of them */
        pool_put(a, got, n);
    free(got);
    return rc;
}

/* A plain ISO date (YYYY-MM-DD), which orders as text. */
static int iso_date(const char *v, size_t n)
{
    if (n != 10 || v[4] != '-' || v[7] != '-')
        return 0;
    for (size_t i = 0; i < 10; i++)
        if (i != 4 && i != 7 && (v[i] < '0' || v[i] > '9'))
            return 0;
    return 1;
}

/* The periods' spans, per person (by the person's slot in a's id table): the first and last
 * date of the batch's rows, so that the widening reads a row per person rather than per row.
 * 0 when a date is not a plain ISO date or a row has no person: the rows then go as they are. */
static int span_add(pg_apply_t *a, long slot, const char *d0, size_t n0, const char *d1, size_t n1)
{
    if (slot < 0 || !iso_date(d0, n0))
        return 0;
    if (is_null(d1, n1))
        d1 = d0, n1 = n0;
    else if (!iso_date(d1, n1))
        return 0;
    if (memcmp(d1, d0, 10) < 0)
        d1 = d0;
    if (a->span_cap < a->ids_cap) {
        span_t *grown = realloc(a->spans, a->ids_cap * sizeof(*grown));
        long *list = grown ? realloc(a->span_list, a->ids_cap * sizeof(*list)) : NULL;
        if (grown)
            a->spans = grown;
        if (!list)
            return 0;
        a->span_list = list;
        memset(a->spans + a->span_cap, 0, (a->ids_cap - a->span_cap) * sizeof(*grown));
        a->span_cap = a->ids_cap;
    }
    span_t *sp = &a->spans[slot];
    if (sp->gen != a->span_gen) {
        sp->gen = a->span_gen;
        memcpy(sp->d0, d0, 10);
        memcpy(sp->d1, d1, 10);
        a->span_list[a->span_n++] = slot;
        return 1;
    }
    if (memcmp(d0, sp->d0, 10) < 0)
        memcpy(sp->d0, d0, 10);
    if (memcmp(d1, sp->d1, 10) > 0)
        memcpy(sp->d1, d1, 10);
    return 1;
}

/* A direct row's fields f (the columns cols, ids as their compact ids) as a binary COPY row;
 * 1 when a value is not of a spelling pg_copy_binary.c encodes. */
static int bin_row(pg_apply_t *a, const stage_t *s, const cg_omop_table_t *t, const char *const *f,
                   const size_t *fl, uint64_t ids, uint64_t cols)
{
    pg_bin_tuple(&a->direct, __builtin_popcountll(cols));
    for (size_t k = 0; k < t->n_columns; k++) {
        if (!(cols >> k & 1))
            continue;
        const char *v = f[STAGE_META + k];
        size_t n = fl[STAGE_META + k];
        pg_bin_type_t bt = (pg_bin_type_t)s->bin_types[k];
        if ((ids >> k & 1) && !is_null(v, n)
                ? pg_bin_int(&a->direct, bt, a->ids_v[id_find(a, id_of(v, n))])
                : pg_bin_field(&a->direct, bt, v, n))
            return 1;
    }
    return 0;
}

/* Step 3's rows: the new keys' rows with compact ids into a->direct (binary: in COPY's binary
 * format, 1 when a value does not go and the caller splits again as text), the others (as they
 * were staged) into a->rest; with periods, the rows' persons and dates into $1..$3 (a row per
 * person when span_add took every row). */
static int split_rows(pg_apply_t *a, stage_t *s, const cg_omop_table_t *t, uint64_t ids,
                      uint64_t cols, long pcol, long c0, long c1, size_t *n_direct, size_t *n_rest,
                      int binary)
{
    const char *f[STAGE_META + PG_MAX_COLUMNS];
    size_t fl[STAGE_META + PG_MAX_COLUMNS], nf = STAGE_META + t->n_columns;
    int as_staged = cols == all_columns(t);
    int periods = s->direct_widen_sql && pcol >= 0, track = a->track && pcol >= 0;
    cg_buf_reset(&a->direct);
    cg_buf_reset(&a->rest);
    cg_buf_reset(&a->tracked);
    for (int i = 0; i < 3; i++)
        cg_buf_reset(i == 0 ? &a->par1 : i == 1 ? &a->par2 : &a->par3);
    const char *p = s->copy.data, *end = p + s->copy.len, *line;
    *n_direct = *n_rest = 0;
    int spans = periods;
    a->span_gen++;
    a->span_n = 0;
    if (binary)
        pg_bin_header(&a->direct);
    while (p < end) {
        line = p;
        p = split_line(p, end, f, fl, nf);
        long kj = id_find(a, id_of(f[STAGE_META + s->key_col], fl[STAGE_META + s->key_col]));
        if (!(a->ids_flags[kj] & ID_NEW)) {
            cg_buf_append(&a->rest, line, (size_t)(p - line));
            ++*n_rest;
            continue;
        }
        if (binary) {
            if (bin_row(a, s, t, f, fl, ids, cols))
                return 1;
        } else if (as_staged) { /* the columns as staged, but for the ids: copied in runs */
            const char *from = f[STAGE_META];
            for (size_t k = 0; k < t->n_columns; k++) {
                const char *v = f[STAGE_META + k];
                size_t n = fl[STAGE_META + k];
                if (!(ids >> k & 1) || is_null(v, n))
                    continue;
                cg_buf_append(&a->direct, from, (size_t)(v - from));
                cg_buf_put_int64(&a->direct, a->ids_v[id_find(a, id_of(v, n))]);
                from = v + n;
            }
            cg_buf_append(&a->direct, from, (size_t)(p - from)); /* with its newline */
        } else { /* the columns COPY names, one by one */
            int first = 1;
            for (size_t k = 0; k < t->n_columns; k++) {
                if (!(cols >> k & 1))
                    continue;
                const char *v = f[STAGE_META + k];
                size_t n = fl[STAGE_META + k];
                if (!first)
                    cg_buf_putc(&a->direct, '\t');
                first = 0;
                if ((ids >> k & 1) && !is_null(v, n))
                    cg_buf_put_int64(&a->direct, a->ids_v[id_find(a, id_of(v, n))]);
                else
                    cg_buf_append(&a->direct, v, n);
            }
            cg_buf_putc(&a->direct, '\n');
        }
        const char *pv = pcol >= 0 ? f[STAGE_META + pcol] : NULL;
        size_t pn = pcol >= 0 ? fl[STAGE_META + pcol] : 0;
        long pj = (track || periods) && pv && !is_null(pv, pn) ? id_find(a, id_of(pv, pn)) : -1;
        int64_t person = pj >= 0 ? a->ids_v[pj] : -1;
        if (track && person >= 0) { /* pid, topic, part, off, seq as staged */
            cg_buf_put_int64(&a->tracked, person);
            for (int m = 0; m < 4; m++) {
                static const int meta[] = {2, 3, 4, 0};
                cg_buf_putc(&a->tracked, '\t');
                cg_buf_append(&a->tracked, f[meta[m]], fl[meta[m]]);
            }
            cg_buf_putc(&a->tracked, '\n');
        }
        if (periods) {
            long e = c1 >= 0 ? c1 : c0;
            spans = spans && span_add(a, pj, f[STAGE_META + c0], fl[STAGE_META + c0],
                                      c1 >= 0 ? f[STAGE_META + c1] : "\\N",
                                      c1 >= 0 ? fl[STAGE_META + c1] : 2);
            cg_buf_putc(&a->par1, *n_direct ? ',' : '{');
            if (person < 0)
                cg_buf_puts(&a->par1, "NULL");
            else
                cg_buf_put_int64(&a->par1, person);
            cg_buf_putc(&a->par2, *n_direct ? ',' : '{');
            put_elem(&a->par2, f[STAGE_META + c0], fl[STAGE_META + c0]);
            cg_buf_putc(&a->par3, *n_direct ? ',' : '{');
            put_elem(&a->par3, f[STAGE_META + e], fl[STAGE_META + e]);
        }
        ++*n_direct;
    }
    if (spans && a->span_n) { /* the same widening from a row per person */
        for (int i = 0; i < 3; i++)
            cg_buf_reset(i == 0 ? &a->par1 : i == 1 ? &a->par2 : &a->par3);
        for (size_t i = 0; i < a->span_n; i++) {
            const span_t *sp = &a->spans[a->span_list[i]];
            cg_buf_putc(&a->par1, i ? ',' : '{');
            cg_buf_put_int64(&a->par1, a->ids_v[a->span_list[i]]);
            cg_buf_putc(&a->par2, i ? ',' : '{');
            cg_buf_append(&a->par2, sp->d0, 10);
            cg_buf_putc(&a->par3, i ? ',' : '{');
            cg_buf_append(&a->par3, sp->d1, 10);
        }
    }
    if (binary)
        pg_bin_trailer(&a->direct);
    int ok = 1;
    for (int i = 0; periods && i < 3; i++) {
        cg_buf_t *b = i == 0 ? &a->par1 : i == 1 ? &a->par2 : &a->par3;
        ok &= cg_buf_putc(b, '}') == CG_OK && cg_buf_putc(b, '\0') == CG_OK;
    }
    ok &= !a->tracked.failed;
    ok &= cg_buf_putc(&a->rest, '\0') == CG_OK && cg_buf_putc(&a->direct, '\0') == CG_OK;
    if (a->rest.len)
        a->rest.len--; /* NUL-terminated for safety, not part of the text */
    if (a->direct.len)
        a->direct.len--;
    return ok ? 0 : -1;
}

/* split_rows in the binary format when bin and every value goes, else as text
 * (a->direct_binary says which); -1 when out of memory. */
static int split_any(pg_apply_t *a, stage_t *s, const cg_omop_table_t *t, uint64_t ids,
                     uint64_t cols, long pcol, long c0, long c1, size_t *n_direct, size_t *n_rest,
                     int bin)
{
    int rc = bin ? split_rows(a, s, t, ids, cols, pcol, c0, c1, n_direct, n_rest, 1) : 1;
    a->direct_binary = rc == 0;
    if (rc == 1)
        rc = split_rows(a, s, t, ids, cols, pcol, c0, c1, n_direct, n_rest, 0);
    return rc ? -1 : 0;
}

/* The direct rows' persons (a->tracked) into pg_temp.cg_changed_persons. */
static int track_persons(pg_apply_t *a, PGconn *c, char *errstr, size_t errstr_size)
{
    if (!a->track_direct_sql) {
        cg_buf_t b;
        cg_buf_init(&b);
        pg_track_insert(&b, "SELECT pid, cg_topic, cg_part, cg_off, cg_seq FROM "
                            "pg_temp.cg_direct_persons");
        cg_buf_puts(&b, "; TRUNCATE pg_temp.cg_direct_persons");
        cg_buf_putc(&b, '\0');
        if (b.failed) {
            cg_buf_free(&b);
            snprintf(errstr, errstr_size, "out of memory");
            return -1;
        }
        a->track_direct_sql = b.data;
    }
    return pg_copy_in(c, "COPY pg_temp.cg_direct_persons FROM STDIN", &a->tracked, NULL, errstr,
                      errstr_size) ||
           pg_exec(c, a->track_direct_sql, errstr, errstr_size);
}

/* The widening of the direct rows' persons' periods (split_rows's $1..$3). */
static int widen_direct(pg_apply_t *a, PGconn *c, const stage_t *s, long pcol, long c0,
                        char *errstr, size_t errstr_size)
{
    if (!s->direct_widen_sql || pcol < 0 || c0 < 0)
        return 0;
    cg_buf_t par[3] = {a->par1, a->par2, a->par3};
    PGresult *r = run(c, s->direct_widen_sql, 3, par, NULL, errstr, errstr_size);
    PQclear(r);
    return r ? 0 : -1;
}

/* Every row of the table is new and nothing follows in the flush: under the savepoint, the
 * periods first (from the rows' own dates: the order does not matter), then the rows' COPY sent
 * and left running while the engine reads the next batch; the rows as staged, with their
 * original bytes, are held for pg_apply_settle, which puts them through the statements if the
 * COPY is refused. */
static int copy_deferred(pg_apply_t *a, PGconn *c, size_t ti, stage_t *s, long pcol, long c0,
                         char *errstr, size_t errstr_size)
{
    if (pg_exec(c, "SAVEPOINT cg_direct", errstr, errstr_size) ||
        widen_direct(a, c, s, pcol, c0, errstr, errstr_size) ||
        pg_copy_send(c, a->direct_binary ? s->direct_bin_sql : s->direct_sql, &a->direct, errstr,
                     errstr_size))
        return -1;
    a->inflight = 1;
    a->inflight_ti = ti;
    a->inflight_n = s->n;
    cg_buf_t b = a->held_copy;
    a->held_copy = s->copy;
    s->copy = b;
    cg_buf_reset(&s->copy);
    s->n = 0;
    pg_apply_hold_raws(a);
    return 1;
}

int pg_apply_direct(pg_apply_t *a, PGconn *c, size_t ti, int defer, char *errstr,
                    size_t errstr_size)
{
    stage_t *s = &a->stages[ti];
    const cg_omop_table_t *t = pg_table_at(ti);
    if (a->conf->id_type != PG_IDS_INTEGER || s->dup_keys || s->n_del || !s->n ||
        !strcmp(t->name, "person") || !pg_column_is_id(&t->columns[s->key_col]))
        return 0;
    size_t k;
    long pcol = cg_omop_column(t, "person_id", &k) ? (long)k : -1, c0 = -1, c1 = -1;
    const char *d0, *d1;
    if (pg_period_columns(t, &d0, &d1)) {
        c0 = cg_omop_column(t, d0, &k) ? (long)k : -1;
        c1 = d1 && cg_omop_column(t, d1, &k) ? (long)k : -1;
    }
    uint64_t ids = 0; /* the id columns (a table has fewer than PG_MAX_COLUMNS) */
    for (k = 0; k < t->n_columns && k < 64; k++)
        ids |= (uint64_t)(pg_column_is_id(&t->columns[k]) != 0) << k;
    /* the columns some staged row fills (and the key, which every direct row has) */
    uint64_t cols = (s->used | (uint64_t)1 << s->key_col) & all_columns(t);
    build_sql(a, s, t, cols);
    if (!a->ids_sql || !a->new_ids_sql || !a->new_ids_bin_sql || !s->direct_sql ||
        !s->direct_bin_sql)
        return -1;
    int bin = pg_bin_table_ready(a, c, s, t, cols, errstr, errstr_size);
    if (bin < 0)
        return -1;
    /* the new ids, then the rows, each under a savepoint of its own: a row's fault rolls back
     * the rows only, so the ids stay mapped and the map's integers keep no gap */
    int rc, fault = 0, probe = s->probe_keys > 0;
    size_t n_direct, n_rest, n_pend = a->n_pend;
    const char *refused = NULL;
    for (;;) {
        if ((rc = look_up(a, c, s, t, ids, pcol, probe, errstr, errstr_size)) <= 0)
            return rc;
        if (pg_exec(c, "SAVEPOINT cg_direct", errstr, errstr_size))
            return -1;
        rc = map_new(a, c, s, &fault, errstr, errstr_size);
        if (!rc || !fault || probe)
            break;
        /* a key guessed new was in the map: looked up, and the table's next batches too */
        cg_log(CG_LOG_DEBUG, "pg.direct_guess",
               "%s: a key guessed new was mapped already: the batch is looked up", t->name);
        a->n_pend = n_pend;
        s->probe_keys = PG_PROBE_BATCHES;
        probe = 1;
        fault = 0;
        if (pg_exec(c, "ROLLBACK TO SAVEPOINT cg_direct; RELEASE SAVEPOINT cg_direct", errstr,
                    errstr_size))
            return -1;
    }
    if (rc) {
        a->n_pend = n_pend; /* gone with the savepoint */
        refused = "a concurrent instance's same new id";
    } else if (pg_exec(c, "RELEASE SAVEPOINT cg_direct", errstr, errstr_size) ||
               split_any(a, s, t, ids, cols, pcol, c0, c1, &n_direct, &n_rest, bin)) {
        return -1;
    } else {
        if (n_rest) /* keys the map held: updates, which the next batches may bring too */
            s->probe_keys = PG_PROBE_BATCHES;
        else if (probe)
            s->probe_keys--;
        if (defer && !n_rest && !a->tracked.len)
            return copy_deferred(a, c, ti, s, pcol, c0, errstr, errstr_size);
        if (pg_exec(c, "SAVEPOINT cg_direct", errstr, errstr_size))
            return -1;
        if ((rc = pg_copy_in(c, a->direct_binary ? s->direct_bin_sql : s->direct_sql, &a->direct,
                             &fault, errstr, errstr_size)))
            refused = "a row";
    }
    if (rc) {
        pg_bin_forget(a); /* a binary field of a type changed since: asked for again */
        if (!fault)       /* the transaction's error: it is aborted */
            return -1;
        /* PostgreSQL's text may quote a value: the rejects keep it, the log does not */
        cg_log(CG_LOG_DEBUG, "pg.direct_refused",
               "%s: the COPY was refused (%s): %zu rows by "
               "the statements",
               t->name, refused, s->n);
        return pg_exec(c, "ROLLBACK TO SAVEPOINT cg_direct; RELEASE SAVEPOINT cg_direct", errstr,
                       errstr_size)
                   ? -1
                   : 0;
    }
    if (pg_exec(c, "RELEASE SAVEPOINT cg_direct", errstr, errstr_size))
        return -1;
    if (widen_direct(a, c, s, pcol, c0, errstr, errstr_size))
        return -1;
    if (a->tracked.len && track_persons(a, c, errstr, errstr_size))
        return -1;
    a->st.upserted += n_direct;
    a->txn_upserted[ti] += n_direct;
    cg_log(CG_LOG_DEBUG, "pg.direct", "%s: %zu rows copied (%s), %zu by the statements", t->name,
           n_direct, a->direct_binary ? "binary" : "text", n_rest);
    /* the rows left take the statements */
    cg_buf_t tmp = s->copy;
    s->copy = a->rest;
    a->rest = tmp;
    s->n = n_rest;
    return n_rest ? 0 : 1;
}
