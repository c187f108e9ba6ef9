/* pg_apply.c - a batch of records into the open database transaction, set-based:
 *
 *   1. COPY every table's staged rows (text columns, plus sequence, op and source position)
 *      into a temporary staging table of its own;
 *   2. per table in foreign-key order: new row ids into the id map (integer ids), then one
 *      INSERT ... SELECT the latest record per key ... ON CONFLICT DO UPDATE ... WHERE the row
 *      changed, then one DELETE of the keys whose latest record is a delete;
 *   3. a statement the database refuses for a data or constraint error (SQLSTATE class 22, 23)
 *      is retried row by row under savepoints, and the rows it still refuses go to cg_rejects
 *      with the reason and their topic, partition and offset; the batch goes on.
 *
 * Any other error (a lost connection, a deadlock) fails the transaction: the engine aborts it
 * and consumes its inputs again, so nothing is lost or applied twice.
 *
 * This file holds the apply state and step 1's side in memory: the staged rows as COPY text,
 * the rejects, the per-transaction counts, the session's staging tables. The rest, listed so
 * that a file calls only files above it (pg_apply.c calls only pg_apply_audit.c):
 *
 *   pg_apply_audit.c    the release audit lines of the open transaction
 *   pg_apply_sql.c      the statements per table: upsert, delete, id map, touched persons
 *   pg_apply_periods.c  observation_period kept as one span per person
 *   pg_apply_direct.c   the rows whose keys are new to the id map, COPY'd straight into their
 *                       table instead of steps 1 and 2 (integer ids, no cohort tracking)
 *   pg_apply_docs.c     which document stated a row (cg_row_doc), a document's retraction
 *   pg_apply_flush.c    running them (steps 1 to 3)
 *   pg_apply_merge.c    a person merge
 */
#include "pg_int.h"

#include "cg_log.h"
#include "cg_metrics.h"
#include "cg_metrics_gw.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/* ---- COPY text ---- */

void pg_copy_value(cg_buf_t *b, const char *v, size_t n)
{
    if (!v) {
        cg_buf_append(b, "\\N", 2);
        return;
    }
    /* runs without a byte to escape are copied whole: nearly every value is one */
    size_t from = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = v[i], esc;
        switch (ch) {
        case '\\':
            esc = '\\';
            break;
        case '\t':
            esc = 't';
            break;
        case '\n':
            esc = 'n';
            break;
        case '\r':
            esc = 'r';
            break;
        default:
            continue;
        }
        char pair[2] = {'\\', esc};
        cg_buf_append(b, v + from, i - from);
        cg_buf_append(b, pair, 2);
        from = i + 1;
    }
    cg_buf_append(b, v + from, n - from);
}

static void copy_str(cg_buf_t *b, const char *v)
{
    pg_copy_value(b, v, v ? strlen(v) : 0);
}

pg_apply_t *pg_apply_new(const pg_conf_t *conf, cg_metrics_gw_t *metrics)
{
    pg_apply_t *a = calloc(1, sizeof(*a));
    if (!a)
        return NULL;
    a->conf = conf;
    a->n_stages = pg_table_count();
    a->stages = calloc(a->n_stages, sizeof(*a->stages));
    a->txn_upserted = calloc(a->n_stages, sizeof(*a->txn_upserted));
    a->txn_deleted = calloc(a->n_stages, sizeof(*a->txn_deleted));
    if (!a->stages || !a->txn_upserted || !a->txn_deleted) {
        free(a->stages);
        free(a->txn_upserted);
        free(a->txn_deleted);
        free(a);
        return NULL;
    }
    for (size_t i = 0; i < a->n_stages; i++) {
        const cg_omop_table_t *t = pg_table_at(i);
        cg_buf_init(&a->stages[i].copy);
        cg_omop_column(t, pg_table_key(t)->name, &a->stages[i].key_col);
        size_t pc;
        a->stages[i].person_col = cg_omop_column(t, "person_id", &pc) ? (long)pc : -1;
    }
    cg_buf_init(&a->rejects);
    cg_buf_init(&a->raws);
    cg_buf_init(&a->held_raws);
    cg_buf_init(&a->held_copy);
    cg_buf_init(&a->direct);
    cg_buf_init(&a->rest);
    cg_buf_init(&a->tracked);
    cg_buf_init(&a->par1);
    cg_buf_init(&a->par2);
    cg_buf_init(&a->par3);
    cg_buf_init(&a->docs);
    cg_metrics_t *reg = metrics ? cg_metrics_gw_registry(metrics) : NULL;
    if (reg) {
        a->m_rows = cg_metrics_counter(reg, "cohortgate_sink_rows_total",
                                       "Rows the sink applied, by table and result (upserted, "
                                       "unchanged, deleted)",
                                       "table,result");
        a->m_rejects = cg_metrics_counter(reg, "cohortgate_sink_rejects_total",
                                          "Records the sink put in cg_rejects, by table and reason "
                                          "(SQLSTATE, or CG* for the sink's own)",
                                          "table,reason");
    }
    return a;
}

void pg_apply_destroy(pg_apply_t *a)
{
    if (!a)
        return;
    /* ids a refused guess drew and no later new row took (pg_apply_direct.c): the sequence
     * gives nothing back, so cg_id_map's integers keep a gap of as many; said, so that a gap
     * has its cause in the log */
    if (a->pool_n)
        cg_log(CG_LOG_INFO, "pg.id_gap",
               "%zu compact id(s) drawn for a batch looked up again went to no row: a gap of as "
               "many in cg_id_map's integers",
               a->pool_n);
    for (size_t i = 0; i < a->n_stages; i++) {
        cg_buf_free(&a->stages[i].copy);
        free(a->stages[i].upsert_sql);
        free(a->stages[i].delete_sql);
        free(a->stages[i].upsert1_sql);
        free(a->stages[i].insert_sql);
        free(a->stages[i].idmap_fast_sql);
        free(a->stages[i].delete1_sql);
        free(a->stages[i].keys);
        free(a->stages[i].idmap_sql);
        free(a->stages[i].before_sql);
        free(a->stages[i].after_sql);
        free(a->stages[i].time_sql);
        free(a->stages[i].time1_sql);
        free(a->stages[i].direct_sql);
        free(a->stages[i].direct_bin_sql);
        free(a->stages[i].direct_widen_sql);
    }
    free(a->stages);
    free(a->txn_upserted);
    free(a->txn_deleted);
    free(a->txn_rejects);
    for (size_t i = 0; i < a->cap_audit; i++)
        free(a->audit[i].policy);
    free(a->audit);
    cg_buf_free(&a->rejects);
    cg_buf_free(&a->raws);
    free(a->raw_at);
    cg_buf_free(&a->held_raws);
    free(a->held_raw_at);
    cg_buf_free(&a->held_copy);
    free(a->periods_sql);
    free(a->widen_sql);
    free(a->ids_k);
    free(a->order);
    free(a->spans);
    free(a->span_list);
    free(a->ids_v);
    free(a->ids_t);
    free(a->ids_flags);
    cg_buf_free(&a->direct);
    cg_buf_free(&a->rest);
    cg_buf_free(&a->tracked);
    cg_buf_free(&a->par1);
    cg_buf_free(&a->par2);
    cg_buf_free(&a->par3);
    cg_buf_free(&a->docs);
    free(a->docs_sql);
    free(a->retracted_sql);
    free(a->ids_sql);
    free(a->track_direct_sql);
    free(a->new_ids_sql);
    free(a->new_ids_bin_sql);
    free(a->id_seq);
    free(a->cache_k);
    free(a->cache_v);
    free(a->pend_k);
    free(a->pool);
    free(a->pend_v);
    free(a);
}

void pg_apply_get_stats(const pg_apply_t *a, pg_apply_stats_t *out)
{
    *out = a->st;
}

/* A reject of the open transaction, counted when it commits. */
static void note_reject(pg_apply_t *a, const char *table, const char *sqlstate)
{
    if (!a->m_rejects)
        return;
    for (size_t i = 0; i < a->n_txn_rejects; i++) {
        pending_reject_t *p = &a->txn_rejects[i];
        if (!strncmp(p->table, table, sizeof(p->table) - 1) &&
            !strncmp(p->sqlstate, sqlstate, sizeof(p->sqlstate) - 1)) {
            p->n++;
            return;
        }
    }
    if (a->n_txn_rejects == a->cap_txn_rejects) {
        size_t cap = a->cap_txn_rejects ? a->cap_txn_rejects * 2 : 8;
        pending_reject_t *p = realloc(a->txn_rejects, cap * sizeof(*p));
        if (!p)
            return; /* the count is lost, the reject is not */
        a->txn_rejects = p;
        a->cap_txn_rejects = cap;
    }
    pending_reject_t *p = &a->txn_rejects[a->n_txn_rejects++];
    snprintf(p->table, sizeof(p->table), "%s", table);
    snprintf(p->sqlstate, sizeof(p->sqlstate), "%s", sqlstate);
    p->n = 1;
}

void pg_apply_txn_counted(pg_apply_t *a, int committed)
{
    if (!committed) /* the binary COPY's types asked for again: a column may have changed */
        pg_bin_forget(a);
    for (size_t i = 0; i < a->n_stages; i++) {
        if (committed && a->m_rows) {
            const char *name = pg_table_at(i)->name;
            if (a->txn_upserted[i])
                cg_metric_inc(cg_metric_get2(a->m_rows, name, "upserted"), a->txn_upserted[i]);
            if (a->txn_deleted[i])
                cg_metric_inc(cg_metric_get2(a->m_rows, name, "deleted"), a->txn_deleted[i]);
        }
        a->txn_upserted[i] = a->txn_deleted[i] = 0;
    }
    a->n_audit = 0; /* the lines' policy strings are kept for reuse */
    for (size_t i = 0; committed && a->cache_k && i < a->n_pend; i++) {
        size_t j = pg_id_cache_slot(a->pend_k[i]);
        a->cache_k[j] = a->pend_k[i];
        a->cache_v[j] = a->pend_v[i];
    }
    a->n_pend = 0;
    /* ids drawn in a transaction that did not commit may be drawn again after a crash (the
     * sequence's WAL need not have reached the disk): the pool gives out none of them */
    if (!committed)
        a->pool_n = 0;
    for (size_t i = 0; committed && i < a->n_txn_rejects; i++)
        cg_metric_inc(
            cg_metric_get2(a->m_rejects, a->txn_rejects[i].table, a->txn_rejects[i].sqlstate),
            a->txn_rejects[i].n);
    a->n_txn_rejects = 0;
}

size_t pg_apply_pending(const pg_apply_t *a)
{
    return a->pending + a->n_rejects;
}

void pg_apply_clear(pg_apply_t *a)
{
    for (size_t i = 0; i < a->n_stages; i++) {
        stage_t *s = &a->stages[i];
        cg_buf_reset(&s->copy);
        if (s->keys_n)
            memset(s->keys, 0, s->keys_cap * sizeof(*s->keys));
        s->n = s->n_del = s->keys_n = s->timed = 0;
        s->used = 0;
        s->key_zero = s->dup_keys = 0;
        s->staged = 0;
    }
    cg_buf_reset(&a->rejects);
    cg_buf_reset(&a->raws);
    a->n_raw = 0;
    a->n_rejects = 0;
    a->pending = 0;
    a->remake = 0;
    cg_buf_reset(&a->docs);
    a->n_docs = 0;
}

void pg_stage_name(cg_buf_t *b, const cg_omop_table_t *t)
{
    cg_buf_printf(b, "pg_temp.cg_stg_%s", t->name);
}

void pg_apply_track_persons(pg_apply_t *a, int on)
{
    a->track = on;
}

int pg_apply_prepare(pg_apply_t *a, PGconn *c, char *errstr, size_t errstr_size)
{
    /* a new session: the binary COPY's types and zone asked for again (pg_copy_binary.c) */
    pg_bin_forget(a);
    cg_buf_t b;
    cg_buf_init(&b);
    cg_buf_puts(&b, "SET client_min_messages = warning;\n");
    if (a->track) /* seq: the last record that touched the person names it */
        cg_buf_puts(&b, "CREATE TEMP TABLE IF NOT EXISTS cg_changed_persons (person_id bigint "
                        "PRIMARY KEY, topic text, part integer, off bigint, seq bigint NOT "
                        "NULL);\n"
                        /* the persons of rows COPY'd straight into their table */
                        "CREATE TEMP TABLE IF NOT EXISTS cg_direct_persons (pid bigint, cg_topic "
                        "text, cg_part integer, cg_off bigint, cg_seq bigint);\n");
    /* documents' rows (pg_apply_docs.c) */
    cg_buf_puts(&b, "CREATE TEMP TABLE IF NOT EXISTS cg_stg_docs (table_name text, row_id bigint, "
                    "doc text, seq bigint, del boolean, t timestamptz, person bigint);\n");
    for (size_t i = 0; i < a->n_stages; i++) {
        const cg_omop_table_t *t = pg_table_at(i);
        cg_buf_puts(&b, "CREATE TEMP TABLE IF NOT EXISTS ");
        cg_buf_printf(&b, "cg_stg_%s", t->name);
        cg_buf_puts(&b, " (cg_seq bigint, cg_op \"char\", cg_topic text, cg_part integer, "
                        "cg_off bigint, cg_audit integer, cg_time timestamptz");
        for (size_t k = 0; k < t->n_columns; k++) {
            cg_buf_puts(&b, ", ");
            pg_ident(&b, t->columns[k].name);
            /* ids were checked when staged (pg_sink.c): typed here, the id map and the
             * statements below neither test nor cast them row by row */
            cg_buf_puts(&b, pg_column_is_id(&t->columns[k]) ? " bigint" : " text");
        }
        cg_buf_puts(&b, ");\n");
    }
    cg_buf_putc(&b, '\0');
    int rc = b.data ? pg_exec(c, b.data, errstr, errstr_size) : -1;
    cg_buf_free(&b);
    return rc;
}

/* Notes a staged key; whether it came before in the batch is what dup_keys says. */
static int note_key(stage_t *s, const char *v, size_t n)
{
    if (s->dup_keys)
        return 0;
    /* checked as a 64-bit integer when parsed (pg_sink.c); v need not end with a NUL */
    uint64_t mag = 0;
    int neg = n && v[0] == '-';
    for (size_t i = (size_t)neg; i < n; i++)
        mag = mag * 10 + (uint64_t)(v[i] - '0');
    int64_t k = (int64_t)(neg ? 0 - mag : mag);
    if (!k) {
        s->dup_keys = s->key_zero;
        s->key_zero = 1;
        return 0;
    }
    if (2 * (s->keys_n + 1) > s->keys_cap) { /* at most half full */
        size_t cap = s->keys_cap ? s->keys_cap * 2 : 1024;
        uint64_t *nk = calloc(cap, sizeof(*nk));
        if (!nk)
            return -1;
        for (size_t i = 0; i < s->keys_cap; i++) {
            if (!s->keys[i])
                continue;
            size_t j = (size_t)((s->keys[i] * 0x9E3779B97F4A7C15ULL) >> 20) & (cap - 1);
            while (nk[j])
                j = (j + 1) & (cap - 1);
            nk[j] = s->keys[i];
        }
        free(s->keys);
        s->keys = nk;
        s->keys_cap = cap;
    }
    uint64_t u = (uint64_t)k;
    size_t j = (size_t)((u * 0x9E3779B97F4A7C15ULL) >> 20) & (s->keys_cap - 1);
    while (s->keys[j]) {
        if (s->keys[j] == u) {
            s->dup_keys = 1;
            return 0;
        }
        j = (j + 1) & (s->keys_cap - 1);
    }
    s->keys[j] = u;
    s->keys_n++;
    return 0;
}

/* Keeps a staged record's original bytes for its reject, if the database refuses it. */
static int keep_raw(pg_apply_t *a, const char *raw, size_t raw_len)
{
    if (!a->pending)
        a->raw_base = a->seq - 1; /* seq was just taken: the batch's records follow on */
    size_t i = (size_t)(a->seq - a->raw_base - 1);
    if (i >= a->cap_raw) {
        size_t cap = a->cap_raw ? a->cap_raw * 2 : 1024;
        while (cap <= i)
            cap *= 2;
        raw_span_t *p = realloc(a->raw_at, cap * sizeof(*p));
        if (!p)
            return -1;
        a->raw_at = p;
        a->cap_raw = cap;
    }
    for (; a->n_raw < i; a->n_raw++) /* a gap (none expected): nothing known */
        a->raw_at[a->n_raw] = (raw_span_t){0, 0};
    a->raw_at[i] = (raw_span_t){a->raws.len, raw_len};
    a->n_raw = i + 1;
    return cg_buf_append(&a->raws, raw ? raw : "", raw ? raw_len : 0) == CG_OK ? 0 : -1;
}

const char *pg_apply_raw(const pg_apply_t *a, int64_t seq, size_t *len)
{
    int64_t i = seq - a->raw_base - 1, h = seq - a->held_raw_base - 1;
    if (i >= 0 && (size_t)i < a->n_raw && a->raws.data) {
        *len = a->raw_at[i].len;
        return a->raws.data + a->raw_at[i].off;
    }
    if (h >= 0 && (size_t)h < a->held_n_raw && a->held_raws.data) { /* a running COPY's */
        *len = a->held_raw_at[h].len;
        return a->held_raws.data + a->held_raw_at[h].off;
    }
    *len = 0;
    return "";
}

void pg_apply_hold_raws(pg_apply_t *a)
{
    cg_buf_t b = a->held_raws;
    a->held_raws = a->raws;
    a->raws = b;
    cg_buf_reset(&a->raws);
    raw_span_t *at = a->held_raw_at;
    size_t cap = a->held_cap_raw;
    a->held_raw_at = a->raw_at, a->held_cap_raw = a->cap_raw;
    a->raw_at = at, a->cap_raw = cap;
    a->held_n_raw = a->n_raw, a->held_raw_base = a->raw_base;
    a->n_raw = 0;
}

int pg_apply_stage(pg_apply_t *a, size_t table, int del, const char *const *values,
                   const size_t *lens, const pg_pos_t *pos, const char *raw, size_t raw_len,
                   const char *policy, int level, const char *time, size_t time_len)
{
    stage_t *s = &a->stages[table];
    const cg_omop_table_t *t = pg_table_at(table);
    long line = -1;
    if (policy && level > 0 && (line = pg_audit_line(a, policy, table, level)) < 0)
        return -1;
    cg_buf_t *b = &s->copy;
    ++a->seq;
    if (keep_raw(a, raw, raw_len) || note_key(s, values[s->key_col], lens[s->key_col]))
        return -1;
    cg_buf_put_int64(b, a->seq);
    cg_buf_append(b, del ? "\td\t" : "\tu\t", 3);
    copy_str(b, pos->topic);
    cg_buf_putc(b, '\t');
    cg_buf_put_int64(b, pos->partition);
    cg_buf_putc(b, '\t');
    cg_buf_put_int64(b, pos->offset);
    cg_buf_putc(b, '\t');
    if (line >= 0)
        cg_buf_put_int64(b, line);
    else
        cg_buf_append(b, "\\N", 2);
    cg_buf_putc(b, '\t');
    pg_copy_value(b, time, time_len);
    for (size_t k = 0; k < t->n_columns; k++) {
        cg_buf_putc(b, '\t');
        pg_copy_value(b, values[k], lens[k]);
        if (values[k] && k < 64)
            s->used |= (uint64_t)1 << k;
    }
    if (cg_buf_putc(b, '\n') != CG_OK)
        return -1;
    s->n++;
    s->n_del += del != 0;
    s->timed += time != NULL;
    a->pending++;
    if (line >= 0)
        a->audit[line].rows++;
    if (del || !strcmp(t->name, "person"))
        a->remake = 1;
    return 0;
}

/* Whether bytes can go into a text column: UTF-8 without NUL. */
static int text_ok(const char *v, size_t n)
{
    for (size_t i = 0; i < n;) {
        size_t k = v[i] ? cg_utf8_seq_len((const unsigned char *)v + i, n - i) : 0;
        if (!k)
            return 0;
        i += k;
    }
    return 1;
}

/* The original bytes of a rejected record: as they are when they are text, else "hex:" and
 * their hex digits (a text column takes no NUL or invalid UTF-8, and nothing is dropped). */
static void copy_raw(cg_buf_t *b, const char *raw, size_t n)
{
    if (!raw || text_ok(raw, n)) {
        pg_copy_value(b, raw ? raw : "", n);
        return;
    }
    static const char hex[] = "0123456789abcdef";
    cg_buf_puts(b, "hex:");
    for (size_t i = 0; i < n; i++) {
        cg_buf_putc(b, hex[(unsigned char)raw[i] >> 4]);
        cg_buf_putc(b, hex[(unsigned char)raw[i] & 15]);
    }
}

int pg_apply_reject(pg_apply_t *a, const char *table, const char *sqlstate, const char *reason,
                    const pg_pos_t *pos, const char *raw, size_t raw_len)
{
    cg_buf_t *b = &a->rejects;
    copy_str(b, pos->topic);
    cg_buf_printf(b, "\t%" PRId32 "\t%" PRId64 "\t", pos->partition, pos->offset);
    copy_str(b, table);
    cg_buf_putc(b, '\t');
    copy_str(b, sqlstate);
    cg_buf_putc(b, '\t');
    copy_str(b, reason);
    cg_buf_putc(b, '\t');
    copy_raw(b, raw, raw_len);
    if (cg_buf_putc(b, '\n') != CG_OK)
        return -1;
    a->n_rejects++;
    a->st.rejected++;
    note_reject(a, table ? table : "", sqlstate);
    /* PostgreSQL's text may quote the value (22P02, 23505): it stays in cg_rejects, as
     * sensitive as the rows; the log gets the sink's own reasons only */
    int own = !strncmp(sqlstate, "CG", 2);
    cg_log(CG_LOG_WARN, "sink.rejected",
           "%s [%" PRId32 "] offset %" PRId64 ": %s: %s (SQLSTATE %s)", pos->topic, pos->partition,
           pos->offset, table ? table : "?",
           own ? reason : "refused by PostgreSQL, the reason is in cg_rejects", sqlstate);
    return 0;
}
