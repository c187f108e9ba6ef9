/* pg_int.h - the PostgreSQL sink's own declarations, shared by its files, not installed.
 *
 *   pg_config.c  the settings (pg.*)
 *   pg_check.c   the CLI's config check and `--init`, apart from the plug-in (no call cycle)
 *   pg_conn.c    the connection: conninfo from the config, environment or password file
 *   pg_schema.c  the DDL of `--init`, the version check, the table list in foreign-key order
 *   pg_apply.c   a batch into the open transaction: the staged rows, the rejects, the counts
 *   pg_apply_audit.c    the release audit of the open transaction
 *   pg_apply_sql.c      the statements per table: upsert, delete, id map, touched persons
 *   pg_apply_periods.c  observation_period derived from the rows
 *   pg_apply_direct.c   new keys' rows COPY'd straight into their table (integer ids)
 *   pg_apply_flush.c    a batch's statements run: COPY, bulk then row by row, rejects
 *   pg_apply_merge.c    a person merge
 *   pg_apply_docs.c     which document stated a row, and a document's retraction
 *   pg_cohort.c  cohort membership: the changed persons re-evaluated in each batch's
 *                transaction, the outbox of enter/exit events and its publisher
 *   pg_envelope.c  the common envelope read in place, without jansson
 *   pg_record.c  cohortgate's own records (merge, retraction) read for the sink
 *   pg_sink.c    the plug-in: config rows, envelopes parsed into staged rows, transactions
 */
#ifndef CG_PG_INT_H
#define CG_PG_INT_H

#include "cg_buf.h"
#include "cg_metrics.h"
#include "cg_omop.h"
#include "cg_pg.h"
#include "cg_plugin.h"

#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>

#define PG_MAX_COLUMNS 64 /* of a table the sink applies records to */

/* Its config (pg.*), filled from its rows (pg_sink.c). */
typedef struct pg_conf {
    char *conninfo;      /* libpq keyword/value string or URI, without password */
    char *conninfo_env;  /* an environment variable that, when set, holds the conninfo */
    char *password_file; /* NULL: libpq's own (PGPASSWORD, ~/.pgpass) */
    char *schema;
    int id_type; /* 0 integer (through the id map), 1 bigint (the row ids as they are) */
    int batch_rows;
    int copy_text;         /* pg.copy_format: 0 binary, 1 text */
    char *cdm_source_name; /* cdm_source's row; "" picks a default (pg_cdm_source_write) */
    char *cdm_source_abbreviation;
    char *cdm_holder;
    char *cohort_definitions;    /* a Circe definition file or a folder of them; NULL: none */
    char *cohort_topic;          /* where membership events go */
    int cohort_publish;          /* 0: the events stay in the outbox */
    int cohort_small_cell;       /* member counts below it leave as "below k" */
    int cohort_count_ms;         /* how often the member gauges are counted; 0: never */
    int cohort_lapse_ms;         /* how often lapsed periods are looked for; 0: never */
    int cohort_withdrawal_ms;    /* how often, between batches, withdrawals are looked for */
    char *cohort_rows_topic;     /* pg.cohorts.rows_topic: members' rows per disease cohort */
    int cohort_rows_keep_h;      /* published outbox rows kept this long; 0: kept */
    int cohort_events_keep_d;    /* published events kept this long; 0: kept */
    cg_config_kv_t *disease_dbs; /* pg.cohorts.databases: definition name -> schema */
    size_t n_disease_dbs;
    char *subscriber; /* release.subscribers[].name this database is; NULL or "": none */
} pg_conf_t;

enum { PG_IDS_INTEGER = 0, PG_IDS_BIGINT = 1 };

extern const cg_config_map_t cg_pg_config_map[];
extern const cg_sink_plugin_t cg_pg_sink_plugin;

/* ---- pg_config.c ---- */
/* The plug-in's validate (cg_plugin.h): pg.subscriber names a subscriber of the same file's
 * release.subscribers[]. */
size_t pg_config_validate(const void *conf, const cg_config_t *cfg, cg_config_problem_t *prs,
                          size_t max);
/* The subscriber of cfg's release section that pg.subscriber names; NULL when none is set or
 * it names none. */
const cg_config_subscriber_t *pg_config_subscriber(const pg_conf_t *conf, const cg_config_t *cfg);

/* SIGHUP: the live settings of fresh (the config file read again) into the running run, the
 * names of those that changed into changed ("" none); -1 with why, and nothing changed, when a
 * setting that needs a restart differs (the connection, schema, id type, topics, disease
 * schemas, subscriber, whether cohorts are on). */
int pg_config_reload(pg_conf_t *run, const pg_conf_t *fresh, char *changed, size_t changed_size,
                     char *errstr, size_t errstr_size);

/* ---- pg_conn.c ---- */
/* The first line of a password file into buf; -1 (errstr names the file) when unreadable. */
int pg_read_password(const char *path, char *buf, size_t size, char *errstr, size_t errstr_size);
/* Seconds libpq waits for a server to answer when neither the connection string nor
 * PGCONNECT_TIMEOUT says (libpq's own default is forever). */
#define CG_PG_CONNECT_TIMEOUT "10"
/* Connects; on failure NULL with a reason that names host/port/database, never the secret. */
PGconn *pg_connect(const pg_conf_t *conf, char *errstr, size_t errstr_size);
/* PostgreSQL's message on one line (with its DETAIL). */
void pg_message(const PGresult *res, const PGconn *conn, char *buf, size_t size);
/* Whether the last error pg_message described on this thread is one that trying again clears
 * (a deadlock, a serialization failure, a lock not available). */
int pg_last_error_transient(void);
/* Runs sql (no parameters); 0, or -1 with the message in errstr. */
int pg_exec(PGconn *c, const char *sql, char *errstr, size_t errstr_size);
/* Runs sql (a COPY ... FROM STDIN) with data as its input; 0, or -1 with the message and, when
 * rows_fault is not NULL, whether the data was refused for a data or constraint error (SQLSTATE
 * class 22 or 23) rather than for the connection's or transaction's sake. */
int pg_copy_in(PGconn *c, const char *sql, const cg_buf_t *data, int *rows_fault, char *errstr,
               size_t errstr_size);
/* pg_copy_in in two halves, so the caller works while the server runs the COPY: pg_copy_send
 * sends the statement and all its data (0, or -1 with the message); pg_copy_result then waits
 * for its answer, as pg_copy_in returns it. Nothing else may use c in between. */
int pg_copy_send(PGconn *c, const char *sql, const cg_buf_t *data, char *errstr,
                 size_t errstr_size);
int pg_copy_result(PGconn *c, int *rows_fault, char *errstr, size_t errstr_size);
/* Whether the connection is gone (so a batch is retried on a new one, not rejected). */
int pg_conn_lost(PGconn *c);
/* "schema"."name" into b, quoted as PostgreSQL needs. */
void pg_qual(cg_buf_t *b, const char *schema, const char *name);
void pg_ident(cg_buf_t *b, const char *name);
/* CREATE [UNIQUE] INDEX index ON schema.table def (def: "(columns)" and any WHERE) when the
 * index does not exist, without locking the table when it does (a statement of its own). */
void pg_index_ddl(cg_buf_t *b, const char *schema, const char *index, const char *table, int unique,
                  const char *def);

/* ---- pg_schema.c ---- */
/* Tables the sink applies records to, in foreign-key order (location, care_site, provider,
 * person, observation_period, visit_occurrence, visit_detail, then the events). */
size_t pg_table_count(void);
const cg_omop_table_t *pg_table_at(size_t i);
/* Index of the table in that order, or -1 when the sink does not take it. */
int pg_table_index(const cg_omop_table_t *t);
/* The column a table's records are keyed by: its primary key, person_id for death. */
const cg_omop_column_t *pg_table_key(const cg_omop_table_t *t);
/* Whether col holds a row id (a non-concept *_id): mapped through the id map. */
int pg_column_is_id(const cg_omop_column_t *col);
/* Creates the schema as cg_pg_schema_init() says, on c. */
int pg_schema_create(PGconn *c, const pg_conf_t *conf, char *summary, size_t summary_size,
                     char *errstr, size_t errstr_size);
/* Checks at start that the schema was made by --init for this id type. */
int pg_schema_verify(PGconn *c, const pg_conf_t *conf, char *errstr, size_t errstr_size);
/* Makes cdm_source hold exactly one row describing the schema, in the open transaction, writing
 * nothing when it already says the same. loaded: a batch is committing (its date becomes the
 * first load's date if none is recorded). 0, or -1 with the reason in errstr (the caller rolls
 * its savepoint back). */
/* The DDL of the cohort engine's tables (cg_cohort_events, cg_cohort_state, cg_withdrawn) and
 * an index of `cohort` by definition and person, idempotent: --init and the sink's start. */
void pg_cohort_ddl(cg_buf_t *b, const char *schema);
/* Schema s and every OMOP CDM table in it (IF NOT EXISTS), with the sink's indexes. */
void pg_omop_ddl(cg_buf_t *b, const char *s, int id_type);
/* pg_disease.c: the statements that bring disease schema `schema` of definition def in line with
 * main_schema for the persons of pg_temp.cg_changed_persons (malloc'ed; NULL: no memory), and the
 * temporary table they use. */
char *pg_disease_sql(const char *main_schema, const char *schema, long long def, int rows);
void pg_disease_ddl(cg_buf_t *b);
struct rd_kafka_s; /* librdkafka's rd_kafka_t */
/* Outbox tables to Kafka (pg_members.c), for the events and the members' rows: marks the n
 * rows of r (their ids in column 0) sent; produces one record, waiting while the producer's
 * queue is full, with hdrs (name, value pairs). 0, or -1 with the message. */
int pg_outbox_mark_sent(PGconn *c, const char *schema, const char *table, const char *id,
                        const PGresult *r, int n, char *errstr, size_t errstr_size);
/* One row of an outbox batch handed to Kafka (pg_outbox_produce); 0, or -1 with the message. */
typedef int(pg_outbox_row_fn)(void *ctx, const PGresult *r, int i, char *errstr,
                              size_t errstr_size);
/* One batch of an outbox table: BEGIN, the publishers' lock (lock || schema), select_sql (its
 * column 0 the id), fn for each row, every record acknowledged (*failed, set by the producer's
 * delivery callback, stays 0), the rows marked sent, COMMIT. The rows sent, or -1 with the
 * message (rolled back: sent again later). */
int pg_outbox_batch(PGconn *c, struct rd_kafka_s *producer, volatile int *failed, const char *lock,
                    const char *schema, const char *select_sql, const char *table, const char *id,
                    pg_outbox_row_fn *fn, void *ctx, char *errstr, size_t errstr_size);
int pg_outbox_produce(struct rd_kafka_s *producer, const char *topic, const char *key,
                      const char *val, const char *const *hdrs, size_t n_hdrs, char *errstr,
                      size_t errstr_size);
/* pg_members.c: the members' rows outbox (cg_cohort_rows), filled by pg_disease_sql's
 * statements with rows, and its publisher. */
typedef struct pg_members_dest {
    long long def;
    char *topic; /* pg.cohorts.rows_topic with the definition's {cohort} */
} pg_members_dest_t;
void pg_members_ddl(cg_buf_t *b, const char *schema);
/* Deletes published rows of cg_cohort_rows older than rows_keep_h hours and published events of
 * cg_cohort_events older than events_keep_d days (0: none), at most 50,000 of each; *deleted
 * gets how many. 0, or -1 with the message. */
int pg_outbox_prune(PGconn *c, const char *schema, int rows_keep_h, int events_keep_d,
                    long long *deleted, char *errstr, size_t errstr_size);
/* tmpl with {cohort} replaced (malloc'ed; NULL: no memory). */
char *pg_members_topic(const char *tmpl, const char *cohort);
/* Unsent outbox rows to their definition's topic, acknowledged, then marked sent; *failed is
 * set by the producer's delivery callback. 0, or -1 with the message (sent after a later
 * commit). */
int pg_members_publish(PGconn *c, struct rd_kafka_s *producer, const char *schema,
                       const pg_members_dest_t *dests, size_t n_dests, volatile int *failed,
                       uint64_t *published, char *errstr, size_t errstr_size);
int pg_cdm_source_write(PGconn *c, const pg_conf_t *conf, int loaded, char *errstr,
                        size_t errstr_size);
/* The DDL of cg_row_doc, which document stated each row of a document (table, row id as
 * records carry it, document id), idempotent: --init and the sink's start. */
void pg_docs_ddl(cg_buf_t *b, const char *schema);
/* What a schema made by an earlier --init lacks (cg_row_doc, cg_id_map.t), added at the sink's
 * start, idempotent. */
void pg_upgrade_ddl(cg_buf_t *b, const char *schema);
/* The DDL of the release audit table (cohortgate_release_audit), idempotent: --init and the
 * start of a sink whose pg.subscriber is set. */
void pg_release_ddl(cg_buf_t *b, const char *schema);

/* ---- pg_apply.c ---- */
typedef struct pg_apply pg_apply_t;

/* What one record is after parsing (pg_sink.c), for the rejects. */
typedef struct pg_pos {
    const char *topic;
    int32_t partition;
    int64_t offset;
} pg_pos_t;

pg_apply_t *pg_apply_new(const pg_conf_t *conf, cg_metrics_gw_t *metrics);
void pg_apply_destroy(pg_apply_t *a);
/* The connection's per-session statements and staging tables; after each (re)connect. */
int pg_apply_prepare(pg_apply_t *a, PGconn *c, char *errstr, size_t errstr_size);
/* Stages an upsert or delete of table (values: one text per column or NULL). time: the
 * record's source.time (pg_time_text_ok; NULL: none), by which a record older than the row's
 * version already applied is stale and skipped (integer ids; README, "Order"). policy and level:
 * what the record was released under (its cg.policy and cg.level headers), counted in the
 * release audit (pg_apply_audit) unless the database refuses the row; NULL and 0: none. */
int pg_apply_stage(pg_apply_t *a, size_t table, int del, const char *const *values,
                   const size_t *lens, const pg_pos_t *pos, const char *raw, size_t raw_len,
                   const char *policy, int level, const char *time, size_t time_len);
/* In the open transaction, before it commits: the rows the transaction loaded per (policy,
 * table, level) into cohortgate_release_audit as subscriber's, one INSERT; nothing when it
 * loaded none. Call after the last flush. -1 with the reason when the transaction cannot go
 * on. */
int pg_apply_audit(pg_apply_t *a, PGconn *c, const char *subscriber, char *errstr,
                   size_t errstr_size);
/* pg_apply_docs.c: the staged record seq of table is a document's row (its cg.document
 * header, doc; time: its source time as staged): the transaction's flush records which document
 * stated the row's current version in cg_row_doc (a delete of the row forgets it; a stale
 * record changes nothing). Call right after its pg_apply_stage. */
int pg_apply_doc(pg_apply_t *a, size_t table, const char *const *values, const size_t *lens,
                 const char *doc, int del, const char *time, size_t time_len);
/* pg_apply_docs.c: a retraction (cohortgate.document_retraction, .order_retraction), applied
 * after what is staged before it: every row of person (a row id, followed through a merge) whose
 * current version the document (or "order:ID") doc stated is deleted, the person row aside (with
 * remember, for good: doc's later records for person are left out, cg_doc_retracted);
 * references to its retracted visits are set to null; the person's observation_period is made anew.
 * *n gets the rows retracted. */
int pg_apply_retract(pg_apply_t *a, PGconn *c, const char *person, const char *doc, int remember,
                     const pg_pos_t *pos, long long *n, char *errstr, size_t errstr_size);
/* A merge (merged person's rows to the survivor), applied after what is staged before it. */
int pg_apply_merge(pg_apply_t *a, PGconn *c, const char *merged, const char *survivor,
                   const pg_pos_t *pos, char *errstr, size_t errstr_size);
/* on: every person whose rows a flush or merge touches (the rows' persons before and after, both
 * persons of a merge) goes into the temporary table pg_temp.cg_changed_persons with the position
 * of the last record that touched them, for the cohort evaluation (pg_cohort.c). */
void pg_apply_track_persons(pg_apply_t *a, int on);
/* A record the sink refuses before the database sees it. */
int pg_apply_reject(pg_apply_t *a, const char *table, const char *sqlstate, const char *reason,
                    const pg_pos_t *pos, const char *raw, size_t raw_len);
/* Rows staged and not applied. */
size_t pg_apply_pending(const pg_apply_t *a);
/* Applies what is staged into the open transaction, in foreign-key order; a row the database
 * refuses goes to the rejects table. -1 (errstr) only when the transaction cannot go on.
 * run_on: the last statement, when it is the COPY of new rows, may be left running while the
 * caller reads the next batch (pg_apply_settle). */
int pg_apply_flush(pg_apply_t *a, PGconn *c, int run_on, char *errstr, size_t errstr_size);
/* The answer of a COPY pg_apply_flush left running, waited for: call before anything else uses
 * the connection in the open transaction. Refused for a row's fault, its rows take the
 * statements then (the bad ones to the rejects, written by the next flush: pg_apply_pending
 * counts them). 0, or -1 (errstr) when the transaction cannot go on. c NULL: the answer is
 * dropped (an abort: the ROLLBACK drains it). */
int pg_apply_settle(pg_apply_t *a, PGconn *c, char *errstr, size_t errstr_size);
/* Forgets what is staged (an abort). */
void pg_apply_clear(pg_apply_t *a);
/* The end of a transaction: when it committed, the rows it applied and the records it rejected
 * go into cohortgate_sink_rows_total and cohortgate_sink_rejects_total (so the metrics count
 * what the database holds, never a batch that was rolled back); either way they are forgotten. */
void pg_apply_txn_counted(pg_apply_t *a, int committed);
/* Counters since start, for tests and logs. */
typedef struct pg_apply_stats {
    uint64_t upserted, unchanged, deleted, merged, rejected;
} pg_apply_stats_t;
void pg_apply_get_stats(const pg_apply_t *a, pg_apply_stats_t *out);

/* The apply state, shared by pg_apply*.c (what pg_apply.c's functions keep up). */
typedef struct stage {
    cg_buf_t copy; /* COPY text rows */
    size_t n, n_del;
    size_t timed;    /* staged rows with a source time: their times go into the id map */
    size_t key_col;  /* the key's column index (pg_table_key) */
    long person_col; /* person_id's column index; -1 when the table has none */
    /* the batch's keys (an open-addressing set): when no key comes twice, the statements read
     * the staging table as it is, without sorting it for the latest record per key */
    uint64_t *keys;
    size_t keys_cap, keys_n;
    int key_zero, dup_keys;
    char *upsert_sql, *delete_sql, *idmap_sql; /* built on first use */
    char *upsert1_sql, *delete1_sql;           /* the same when keys are unique in the batch */
    char *insert_sql, *idmap_fast_sql;         /* when every staged key is new (integer ids) */
    char *before_sql, *after_sql;              /* the persons it touches (track) */
    char *time_sql, *time1_sql;                /* the applied versions' times (integer ids) */
    char *direct_sql, *direct_widen_sql;       /* new keys' rows COPY'd as they are */
    char *direct_bin_sql;                      /* the same COPY in the binary format */
    /* the binary COPY types of the table's columns on this connection (pg_copy_binary.c):
     * bin_known 0 until asked for */
    uint8_t bin_types[PG_MAX_COLUMNS];
    int bin_known;
    /* the columns any row staged since the last abort gave a value, and those direct_sql names:
     * the direct COPY sends these alone (a field per absent column cost the server an eighth
     * more per row); a column left out is NULL, as the OMOP tables have no defaults */
    uint64_t used, direct_cols;
    int staged; /* in its staging table (emptied after) */
    /* the direct path's batches left whose keys are looked up in the id map first: set after
     * a batch in which some key was there already; at 0 keys are guessed new, unlooked-up, and
     * the map's COPY refuses a wrong guess (pg_apply_direct.c) */
    unsigned probe_keys;
} stage_t;

/* Where a staged record's original bytes are in pg_apply's raws (for a reject). */
typedef struct raw_span {
    size_t off, len;
} raw_span_t;

/* Rows of the open transaction released under one policy version, of one table and level:
 * the release audit's line (pg_apply_audit). */
typedef struct audit_line {
    char *policy;
    size_t table;
    int level;
    int64_t rows; /* staged, less those the database refused */
} audit_line_t;

typedef struct pending_reject {
    char table[64];
    char sqlstate[8];
    uint64_t n;
} pending_reject_t;

typedef struct span {
    unsigned gen;
    char d0[10], d1[10]; /* ISO dates */
} span_t;

struct pg_apply {
    const pg_conf_t *conf;
    stage_t *stages; /* per pg_table_at() */
    size_t n_stages;
    size_t pending;
    cg_buf_t rejects; /* COPY text rows of cg_rejects */
    /* the staged records' original bytes, kept here rather than sent with every row: only a
     * row the database refuses needs them (pg_apply_raw) */
    cg_buf_t raws;
    raw_span_t *raw_at; /* by seq - raw_base - 1 */
    size_t n_raw, cap_raw;
    int64_t raw_base;
    size_t n_rejects;
    int64_t seq;
    pg_apply_stats_t st;
    cg_metric_t *m_rows, *m_rejects;
    /* what the open transaction applied, counted in the metrics when it commits */
    uint64_t *txn_upserted, *txn_deleted; /* per table */
    pending_reject_t *txn_rejects;
    size_t n_txn_rejects, cap_txn_rejects;
    char *periods_sql;   /* observation_period made anew for some persons of a batch */
    char *widen_sql;     /* ... and widened for the others (both built once) */
    int remake;          /* a delete or a person row is staged: some periods are made anew */
    int track;           /* touched persons into pg_temp.cg_changed_persons (cohorts) */
    audit_line_t *audit; /* the open transaction's; a staged row names its line (cg_audit) */
    size_t n_audit, cap_audit;
    /* pg_apply_direct.c's, kept between batches: the batch's row ids -> compact ids (an
     * open-addressing table), the COPY text of new rows and of the rest, parameters */
    int64_t *ids_k, *ids_v;
    int64_t *ids_t; /* a key's staged source time: its offset in the stage's COPY text, or -1 */
    unsigned char *ids_flags;
    size_t ids_cap, ids_n;
    int64_t *order; /* the batch's ids in the order the rows name them (ids_n of them) */
    size_t order_cap;
    /* the direct rows' date spans per person, by the person's slot in the id table (valid when
     * gen is span_gen): the periods' widening gets a row per person (pg_apply_direct.c) */
    span_t *spans;
    long *span_list; /* the slots with a span, span_n of them */
    size_t span_cap, span_n;
    unsigned span_gen;
    cg_buf_t direct, rest, par1, par2, par3;
    cg_buf_t tracked; /* with cohorts: the direct rows' persons, as pg_temp.cg_direct_persons */
    char *ids_sql, *new_ids_sql, *new_ids_bin_sql, *id_seq;
    /* the direct path's COPYs in the binary format (pg.copy_format): the session's zone is UTC
     * (-1 not asked yet on this connection), the id map's columns' binary types
     * (map_bin_known 0 until asked for), and whether a->direct holds binary rows */
    int zone_utc, map_bin_known, direct_binary;
    uint8_t map_bin[3];
    char *track_direct_sql; /* cg_direct_persons into cg_changed_persons, then emptied */
    /* ids the id map held when a transaction committed (a row id never changes its compact
     * id), so persons and visits named again and again are not looked up each batch:
     * direct-mapped, PG_ID_CACHE slots; those learned in the open transaction wait in pend_*
     * until it commits (an aborted one's new ids are gone) */
    int64_t *cache_k, *cache_v;
    int64_t *pend_k, *pend_v;
    size_t n_pend, cap_pend;
    /* compact ids drawn from the map's sequence that no row took (a refused COPY into the
     * map): given out before new ones are drawn, so a wrong guess leaves no gap; emptied when
     * a transaction does not commit (pg_apply_txn_counted) */
    int64_t *pool;
    size_t pool_n, pool_cap;
    /* a flush's last statement, a direct COPY under the savepoint cg_direct, left running
     * while the next batch is read (pg_apply_settle waits for it): its table, and its rows as
     * staged with their original bytes, which take the statements if it is refused */
    int inflight;
    size_t inflight_ti, inflight_n;
    cg_buf_t held_copy, held_raws;
    raw_span_t *held_raw_at;
    size_t held_n_raw, held_cap_raw;
    int64_t held_raw_base;
    /* documents' rows staged (pg_apply_doc): COPY text of pg_temp.cg_stg_docs, flushed into
     * cg_row_doc before the tables (pg_apply_docs_flush) */
    cg_buf_t docs;
    size_t n_docs;
    char *docs_sql;
    char *retracted_sql; /* the staged rows of replaced documents (pg_apply_docs.c) */
};

/* ---- pg_copy_binary.c: COPY's binary format, from values staged as COPY text ---- */
typedef enum {
    PG_BIN_NONE = 0, /* a type not encoded here: the COPY goes as text */
    PG_BIN_INT2,
    PG_BIN_INT4,
    PG_BIN_INT8,
    PG_BIN_NUMERIC,
    PG_BIN_DATE,
    PG_BIN_TIMESTAMP,
    PG_BIN_TIMESTAMPTZ_UTC, /* timestamptz in a session whose zone is UTC */
    PG_BIN_TEXT,            /* text, varchar, bpchar */
} pg_bin_type_t;
/* The binary type of a server type oid; session_utc: the session's TimeZone is UTC. */
pg_bin_type_t pg_bin_type_of(unsigned oid, int session_utc);
/* Whether a TimeZone setting's name is UTC by another name. */
int pg_bin_zone_is_utc(const char *zone);
/* The binary types of table's columns names[0..n) into types (PG_BIN_NONE for one the table
 * does not have), and whether the session's zone is UTC into *zone_utc; -1 with why. */
int pg_bin_fetch_types(PGconn *c, const char *schema, const char *table, const char *const *names,
                       size_t n, uint8_t *types, int *zone_utc, char *errstr, size_t errstr_size);
void pg_bin_header(cg_buf_t *b);
void pg_bin_trailer(cg_buf_t *b);
void pg_bin_tuple(cg_buf_t *b, int n_fields);
void pg_bin_null(cg_buf_t *b);
/* An integer field of type t (INT2, INT4, INT8); -1 when it does not fit. */
int pg_bin_int(cg_buf_t *b, pg_bin_type_t t, int64_t v);
/* The COPY text field v[0..n) ("\\N": NULL) as a field of type t; -1, with b's end to be
 * thrown away, when it is not one of the plain spellings encoded here: the caller sends the
 * batch as text then, and the server reads it as it would have. */
int pg_bin_field(cg_buf_t *b, pg_bin_type_t t, const char *v, size_t n);
/* Whether t's direct COPY of the columns cols goes binary on this connection (pg.copy_format,
 * and each such column of a type encoded here, as the catalog says: asked once per
 * connection); -1 the transaction's error. */
int pg_bin_table_ready(pg_apply_t *a, PGconn *c, stage_t *s, const cg_omop_table_t *t,
                       uint64_t cols, char *errstr, size_t errstr_size);
/* The same for the id map's pairs (source_id, id, t). */
int pg_bin_map_ready(pg_apply_t *a, PGconn *c, char *errstr, size_t errstr_size);
/* Forgets the types and zone asked for (a new session, an aborted transaction, a refused COPY). */
void pg_bin_forget(pg_apply_t *a);

/* pg_apply_docs.c: the staged documents' rows into cg_row_doc, at the start of a flush. */
int pg_apply_docs_flush(pg_apply_t *a, PGconn *c, char *errstr, size_t errstr_size);

#define PG_ID_CACHE ((size_t)1 << 16)
static inline size_t pg_id_cache_slot(int64_t k)
{
    return (size_t)(((uint64_t)k * 0x9E3779B97F4A7C15ULL) >> 40) & (PG_ID_CACHE - 1);
}

/* pg_apply.c: the batch's original bytes kept for pg_apply_raw while its COPY runs (the held
 * ones before are forgotten). */
void pg_apply_hold_raws(pg_apply_t *a);
/* pg_apply.c: v (n bytes; NULL: \N) as a COPY text field, escaped. */
void pg_copy_value(cg_buf_t *b, const char *v, size_t n);
/* pg_apply.c: the staging table of t, "pg_temp.cg_stg_<table>". */
void pg_stage_name(cg_buf_t *b, const cg_omop_table_t *t);
/* pg_apply.c: the original bytes of the staged record seq of the batch (its reject's record);
 * "" when not known. */
const char *pg_apply_raw(const pg_apply_t *a, int64_t seq, size_t *len);
/* pg_apply_audit.c: the open transaction's audit line of (policy, table, level), made when new:
 * its index, or -1 when out of memory. */
long pg_audit_line(pg_apply_t *a, const char *policy, size_t table, int level);
/* pg_apply_sql.c: expressions over a staged row `s` and statements of table t (one_seq > 0:
 * of that one record, PG_ROWS_UNIQUE: of every staged record (their keys are unique), else of
 * the latest record per key); the char * are malloc'ed, NULL when out of memory (or, for the id
 * map and tracking, when t needs none). */
#define PG_ROWS_UNIQUE ((int64_t)-1)
void pg_id_expr(cg_buf_t *b, const pg_conf_t *conf, const cg_omop_table_t *t,
                const cg_omop_column_t *col);
void pg_value_expr(cg_buf_t *b, const pg_conf_t *conf, const cg_omop_table_t *t,
                   const cg_omop_column_t *col);
void pg_rows_from(cg_buf_t *b, const cg_omop_table_t *t, int64_t one_seq);
char *pg_upsert_sql(const pg_conf_t *conf, const cg_omop_table_t *t, int64_t one_seq);
char *pg_delete_sql(const pg_conf_t *conf, const cg_omop_table_t *t, int64_t one_seq);
/* pg_insert_sql: the upsert of every staged record as a plain INSERT, for keys known new. */
char *pg_insert_sql(const pg_conf_t *conf, const cg_omop_table_t *t);
char *pg_idmap_sql(const pg_conf_t *conf, const cg_omop_table_t *t, int fast);
/* " AND NOT stale" of a record with row id key and source time time (SQL expressions): with
 * integer ids, a record older by source time than the version the id map says was applied for
 * its id is skipped (one without a time counts as the oldest); bigint ids: nothing. */
void pg_not_stale(cg_buf_t *b, const pg_conf_t *conf, const char *key, const char *time);
/* The source times of the staged keys' latest records into the id map (cg_id_map.t), where
 * newer than what it holds: after the upsert and the delete, which skip stale records. */
char *pg_time_sql(const pg_conf_t *conf, const cg_omop_table_t *t, int64_t one_seq);
void pg_track_insert(cg_buf_t *b, const char *src);
char *pg_track_sql(const pg_conf_t *conf, const cg_omop_table_t *t, int after);
/* pg_apply_periods.c: the statement that makes the touched persons' (a SELECT of person ids as
 * stored) observation_period anew; the batch's periods widened, and made anew where needed. */
char *pg_periods_sql(const pg_conf_t *conf, const char *touched);
int pg_derive_periods(pg_apply_t *a, PGconn *c, char *errstr, size_t errstr_size);
/* pg_apply_periods.c: the date columns a row of t spans (*end NULL: its start only); 0 when t's
 * rows make no observation period. */
int pg_period_columns(const cg_omop_table_t *t, const char **start, const char **end);
/* pg_apply_periods.c: appends the observation_period upsert of a widening, from a CTE agg of
 * (person, d0, d1) whose person column is named person; after "INSERT INTO ". */
void pg_period_widen(cg_buf_t *b, const char *schema, const char *person);
/* pg_apply_direct.c: the staged rows of table ti whose keys are new to the id map, COPY'd
 * straight into the table with their compact ids (no staging table, no ON CONFLICT, no id
 * lookups in SQL), their periods widened; the rows left (keys already there) stay staged for
 * the statements of pg_apply_sql.c. 1 every row done, 0 rows left (all of them when the batch
 * does not qualify or the database refused the COPY for a row's fault: rolled back), -1 the
 * transaction cannot go on. defer: nothing follows in this flush, so when every row is new the
 * rows' COPY is sent and left running (a->inflight, pg_apply_settle). */
int pg_apply_direct(pg_apply_t *a, PGconn *c, size_t ti, int defer, char *errstr,
                    size_t errstr_size);

/* ---- pg_envelope.c ---- */
#define PG_ENVELOPE_MAX_ROW PG_MAX_COLUMNS

typedef struct pg_envelope_member {
    cg_slice_t key;
    const char *value; /* the value's text in the record (not NUL-terminated); NULL: null */
    size_t len;
} pg_envelope_member_t;

/* An envelope read in place: slices of the record's bytes. */
typedef struct pg_envelope {
    cg_slice_t standard, table, op;
    cg_slice_t time; /* source.time; {NULL, 0} when absent */
    pg_envelope_member_t row[PG_ENVELOPE_MAX_ROW];
    size_t n_row;
} pg_envelope_t;

/* Reads raw when it is an envelope of the common form (an object with the strings "standard",
 * "table" and "op" and a "row" of scalars; no escape, exponent or unusual number anywhere): 1,
 * with every row value spelled as cg_omop_json_text() spells it. 0: the record needs jansson
 * (it may still be a good record). */
int pg_envelope_scan(const char *raw, size_t len, pg_envelope_t *env);

/* A table's columns as pg_envelope_values looks them up for every record. */
typedef struct pg_tinfo {
    size_t key;                             /* the key column's index */
    uint64_t ids;                           /* bit i: column i holds a row id (pg_column_is_id) */
    unsigned char name_len[PG_MAX_COLUMNS]; /* strlen of each column's name */
} pg_tinfo_t;

/* One per pg_table_at(), malloc'ed (NULL: no memory). */
pg_tinfo_t *pg_envelope_tables(void);
/* A scanned envelope as a row to stage: its table, whether it is a delete, the values per
 * column (vals and lens: PG_MAX_COLUMNS each, zeroed by the caller). 1, or 0 when it is no
 * upsert or delete of omop-cdm-5.4 that the sink would stage as it is (the general path then
 * says why, or stages it). */
int pg_envelope_values(const pg_envelope_t *e, const pg_tinfo_t *tinfo,
                       const cg_omop_table_t **table, int *table_index, int *del, const char **vals,
                       size_t *lens);
/* Whether text is a source time as records spell it (README, "Types": a date, or a datetime
 * with an optional zone), which PostgreSQL reads as timestamptz. */
bool pg_time_text_ok(const char *t, size_t n);
/* Whether text is a 64-bit integer id: digits (a sign allowed) that fit a bigint. */
bool pg_id_text_ok(const char *t, size_t n);

/* ---- pg_record.c ---- */
struct json_t; /* jansson's */
/* An id's text as records carry it: text points into buf, or into the record. */
typedef struct pg_id_buf {
    char buf[64];
    const char *text;
} pg_id_buf_t;
/* A cohortgate.person_merge record's persons; 0, or -1 with why (a reject's reason). */
int pg_record_merge(const struct json_t *row, pg_id_buf_t *merged, pg_id_buf_t *survivor, char *why,
                    size_t why_size);
/* A retraction's person and what it retracts, as cg.document names it (into doc): a
 * cohortgate.document_retraction's replaced document, a cohortgate.order_retraction's (order 1)
 * "order:" and its order; *remember 0 for what may come back: an order's cancel request (CA),
 * which the filler may refuse. 0, or -1 with why. */
int pg_record_retraction(const struct json_t *row, int order, pg_id_buf_t *person, char *doc,
                         size_t doc_size, int *remember, char *why, size_t why_size);

/* ---- pg_cohort.c ---- */
typedef struct pg_cohorts pg_cohorts_t;

/* Loads and compiles conf's definitions; *out NULL when none are configured. -1 with the first
 * error (file:line:column) in errstr. */
int pg_cohorts_load(const pg_conf_t *conf, pg_cohorts_t **out, char *errstr, size_t errstr_size);
void pg_cohorts_destroy(pg_cohorts_t *cs);
/* A reload: cs takes fresh's definitions (and the statements made of them), fresh gets cs's
 * old ones (destroy it then); the publisher, metrics and counts stay cs's. Between
 * transactions, then pg_cohorts_prepare and pg_cohorts_sync. */
void pg_cohorts_swap(pg_cohorts_t *cs, pg_cohorts_t *fresh);
/* Points cs at conf (loaded under another struct of the same settings: a SIGHUP's config). */
void pg_cohorts_bind(pg_cohorts_t *cs, const pg_conf_t *conf);
size_t pg_cohorts_count(const pg_cohorts_t *cs);
/* cohortgate_sink_cohort_events_total{event} and _published_total; metrics may be NULL. */
void pg_cohorts_metrics(pg_cohorts_t *cs, cg_metrics_gw_t *metrics);
/* The end of a transaction: its events counted when it committed, forgotten either way. */
void pg_cohorts_txn_end(pg_cohorts_t *cs, int committed);
/* Makes the producer of the events topic (none when pg.cohorts.publish is false). */
int pg_cohorts_publisher(pg_cohorts_t *cs, const cg_config_t *cfg, char *errstr,
                         size_t errstr_size);
/* After each (re)connect: the tables, the session's temporary table. */
int pg_cohorts_prepare(pg_cohorts_t *cs, PGconn *c, char *errstr, size_t errstr_size);
/* At start, in a transaction of its own: definitions new or changed since the schema was last
 * evaluated are evaluated for every person. */
int pg_cohorts_sync(pg_cohorts_t *cs, PGconn *c, char *errstr, size_t errstr_size);
/* In the open transaction, before it commits: the changed persons (and pending withdrawals)
 * re-evaluated, `cohort` corrected, the events written to the outbox. */
int pg_cohorts_evaluate(pg_cohorts_t *cs, PGconn *c, char *errstr, size_t errstr_size);
/* After a commit, outside a transaction: unsent events to the topic, then marked sent. */
int pg_cohorts_publish(pg_cohorts_t *cs, PGconn *c, char *errstr, size_t errstr_size);
/* While the sink is idle: pg_cohorts_publish when the outbox was not found empty for
 * PG_OUTBOX_SWEEP_MS, so that what a publish left behind (a failure, a batch that skipped rows
 * another session held) goes out without waiting for the next record. */
#define PG_OUTBOX_SWEEP_MS 5000
int pg_cohorts_sweep(pg_cohorts_t *cs, PGconn *c, char *errstr, size_t errstr_size);
/* Counts each definition's members into the gauges when pg.cohorts.count_interval_ms has passed
 * since the last count (or force); 0, or -1 with the message (the gauges keep their values). */
/* Writes a "lapse" event for each member whose last period ended since the day last looked at,
 * in a transaction of its own, when pg.cohorts.lapse_interval_ms has passed; 0, or -1 with the
 * message (looked at again next time). */
int pg_cohorts_lapse(pg_cohorts_t *cs, PGconn *c, char *errstr, size_t errstr_size);
int pg_cohorts_count_members(pg_cohorts_t *cs, PGconn *c, int force, char *errstr,
                             size_t errstr_size);
/* Between batches, outside a transaction, when pg.cohorts.withdrawal_interval_ms has passed:
 * withdrawals not yet honoured are, in a transaction of their own (a batch honours them too).
 * 1 when some were (their events wait in the outbox), 0 when none, -1 with the message (looked
 * at again next time). */
int pg_cohorts_withdrawals(pg_cohorts_t *cs, PGconn *c, char *errstr, size_t errstr_size);

#endif
