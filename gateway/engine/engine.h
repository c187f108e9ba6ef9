/* engine.h - the engine's own state, shared by its files (gateway/engine/), not installed.
 *
 * The engine sits between a source and a sink plug-in (cg_plugin.h): it takes input messages
 * from the source, decodes and maps them on its workers (per-partition order kept), hands the
 * records to the sink, tracks every input until all its records are delivered (cg_delivery) and
 * then has the source commit it, or, exactly-once, commits the sink's transaction with the
 * inputs' positions. It applies backpressure, drains on stop and reloads the mapping bundle.
 * It knows no client library: Kafka is a plug-in like any other.
 *
 * Threads. The engine thread (the caller of cg_gateway_run) polls the source and the sink,
 * produces every record and commits; plug-ins call back into the engine from inside those calls
 * (cg_plugin.h), so the delivery bookkeeping and the transaction state need no locks. Decoding
 * and mapping run on that thread too (workers = 1) or on N worker threads: an input partition
 * always goes to the same worker, each worker keeps its jobs in a FIFO ring, and the engine
 * thread produces each ring's jobs in order, so per-partition order holds.
 */
#ifndef CG_ENGINE_H
#define CG_ENGINE_H

#include "cg_buf.h"
#include "cg_delivery.h"
#include "cg_gateway.h"
#include "cg_mapping.h"
#include "cg_plugin.h"
#include "cg_subscribers.h"

#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <time.h>

/* Jobs one worker's ring holds: inputs dispatched and not yet produced. Bounds the memory of
 * mapped records waiting for the sink. */
#define CG_RING_CAP 128
/* A job's buffer above this is freed once the job is done; below, it is reused. */
#define CG_JOB_KEEP_BYTES (1 << 20)
/* Transactions aborted in a row before exactly-once gives up: a record the sink always
 * refuses would otherwise be retried forever. */
#define CG_TXN_MAX_ABORTS 10

/* One record of a mapped input. */
typedef struct job_rec {
    const char *cohort;              /* NULL: the output topic */
    const char *table, *spec, *rule; /* the compiled specs' strings: valid until a reload */
    const char *op;                  /* "upsert", "delete", ... (static strings) */
    const char *quality; /* a quality record (an entry left out): its reason; NULL for a row */
    int spec_version;
    size_t key_off, key_len, val_off, val_len; /* in the job's buf */
    int sub;       /* a subscriber's record: its index + 1 (release.c); 0: not released */
    uint8_t level; /* a subscriber's record: the row's level */
    /* a record of a document: the document's id as the record carries it (a subscriber's: its
     * pseudonym of it); of an order's row, "order:" and its meta order_id (cg_row.h); NUL-ended
     * in the job's buf, for cg.document; doc_len 0: none */
    size_t doc_off, doc_len;
} job_rec_t;

/* One input message on its way: mapped by a worker, produced by the engine thread. */
typedef struct job {
    cg_source_msg_t in; /* the source's, until released (job_reset) */
    int has_in;
    cg_delivery_msg_t *dm;
    cg_input_format_t format;
    cg_err_t
        rc; /* CG_OK: the records; a dead-letter error: the input goes to the DLQ; else fatal */
    cg_error_t me;
    char reason[512]; /* the dead letter's reason */
    job_rec_t *recs;
    size_t n_recs, cap_recs;
    size_t next_rec; /* records handed to the sink so far: resumes after a full queue */
    cg_buf_t buf;    /* keys and envelopes */
    /* rows withheld from each subscriber, by reason: [sub * CG_RELEASE__COUNT + reason];
     * NULL without subscribers */
    uint32_t *withheld;
    int audited; /* its withheld rows are counted (cg_engine_release_count) */
    /* how it ended, for its outcome record (output.outcome_topic): "records", "no_rows",
     * "no_research_content", "dead_letter"; the declaring spec when known (the specs' string);
     * NULL when it was not mapped. The type label is copied: the mapper's points into the
     * message, whose memory the next message on the worker reuses before this one is produced */
    const char *oc_kind, *oc_spec;
    char oc_type[64];
    int oc_done; /* its outcome record is handed to the sink */
    /* a document's (XML input's) id as its records carry it (source.message_id), NUL-ended in
     * buf, for their cg.document header (a sink retracts a replaced document's rows by it);
     * doc_len 0: not a document */
    size_t doc_off, doc_len;
} job_t;

typedef struct worker {
    cg_engine_t *gw;
    int index;
    pthread_t thread;
    int started;
    cg_mapping_worker_t *mw;       /* its mapper and cohort router: one per thread */
    cg_release_scratch_t *scratch; /* the text of released values (with subscribers) */
    job_t *ring;                   /* CG_RING_CAP jobs */
    /* head <= done <= tail, tail - head <= CG_RING_CAP. head: next job to produce (engine
     * thread only); done: jobs mapped; tail: jobs dispatched. done and tail change under gw->mu. */
    uint64_t head, done, tail;
    pthread_cond_t work; /* tail moved, or stopping */
    /* the message it maps, for /healthz (read by the endpoint's thread: atomics only): since
     * when (0: idle), and the message's partition and offset */
    int64_t busy_since_ms, busy_offset;
    int32_t busy_partition;
} worker_t;

/* The destination name of a cohort's records of one table (cohorts.topic), kept for the run:
 * the sink caches by the name's pointer. */
typedef struct cohort_dest {
    const char *cohort, *table; /* the names' own pointers, for a lookup without building the
                                 * name; cohort is cleared when a reload frees it */
    char *name;
} cohort_dest_t;

/* A number's decimal text, formatted again only when the number changes: the provenance headers
 * of one input's records repeat theirs. */
typedef struct num_text {
    int64_t v;
    int set;
    char s[24];
} num_text_t;

/* A partition known to be at its end (for --idle-exit): set by an end event, cleared by a
 * message of that partition. */
typedef struct at_end {
    char *topic;
    int32_t partition;
    int at_end;
} at_end_t;

struct cg_engine {
    const cg_config_t *cfg;
    cg_gateway_opts_t opts;
    unsigned encode_flags; /* cg_row_encode flags from the config (ids_as_strings) */
    cg_source_t source;
    cg_sink_t sink;
    cg_delivery_t *delivery;
    cg_mapping_t *mapping;    /* vocabularies, key, specs, cohorts */
    cg_metrics_gw_t *metrics; /* counters and gauges for /metrics; its endpoint's thread */
    worker_t *workers;
    int n_workers;
    int threaded;   /* n_workers > 1: each worker maps on a thread of its own */
    int sink_wakes; /* the source's wait ends when the sink has reports (watch, wake_fd) */
    pthread_mutex_t mu;
    pthread_cond_t done_cv; /* a worker finished a job */
    int workers_stop;
    cg_subscribers_t *subs;      /* graded release: NULL without subscribers */
    cg_config_t *release_cfg;    /* the config re-read by the last reload whose subscribers are
                                  * in use (subs borrows its strings); NULL: cfg's */
    struct release_audit *audit; /* per subscriber: counts since the last audit record */
    int64_t audit_due_ms;        /* when the next audit records are due */
    cohort_dest_t *cdests;       /* cohort destinations produced to so far (cohorts x tables) */
    size_t n_cdests;
    num_text_t hdr_part, hdr_off, hdr_ver; /* the last provenance header values written */
    volatile sig_atomic_t stop;
    volatile sig_atomic_t reload; /* SIGHUP: recompile specs and cohorts between messages */
    cg_err_t fatal;
    char fatal_reason[512];
    cg_gateway_stats_t stats;
    int n_assigned;
    at_end_t *ends;
    size_t n_ends;
    int64_t last_activity_ms;
    int64_t deadline_ms;  /* once stopping: when the drain must be over; 0 before */
    int drain_incomplete; /* the drain ran out of time with inputs left uncommitted */
    int ran;              /* cg_gateway_run() has finished */
    /* backpressure */
    int blocked;           /* a record met a full sink queue */
    int64_t stalled_since; /* consumption waits on the output side since then; 0: it does not */
    int paused;            /* the source is paused (the wait lasted pause_after_ms) */
    int outq_resume;       /* go on once the sink's queue is down to this */
    /* exactly-once */
    int eos;
    int txn_open;
    int txn_failed;    /* an abortable error was seen: abort before going on */
    uint64_t txn_msgs; /* inputs sealed in the open transaction */
    int64_t txn_began_ms;
    int aborts_in_row;
    int64_t hold_until_ms; /* after an abort: no consuming before this (backoff) */
    int inject_aborts;     /* tests only (testing.h): commits still to turn into aborts */
};

/* Counters are read by other threads (cg_gateway_get_stats), and written by workers too. */
#define STAT_ADD(gw, field, n)                                                                     \
    __atomic_add_fetch(&(gw)->stats.field, (uint64_t)(n), __ATOMIC_RELAXED)

/* engine.c: time and failure */
int64_t cg_engine_now_ms(void);
void cg_engine_note_stop(cg_engine_t *gw);

/* jobs.c: one input from mapping to its records */
void cg_engine_job_reset(cg_engine_t *gw, job_t *j);
void cg_engine_map_job(cg_engine_t *gw, worker_t *w, job_t *j);
/* One more record of j (NULL when out of memory). */
job_rec_t *cg_engine_job_add_rec(job_t *j);

/* workers.c: the workers, their rings and threads */
int cg_engine_workers_new(cg_engine_t *gw);
int cg_engine_workers_mapping(cg_engine_t *gw, const cg_mapping_t *m, cg_mapping_worker_t **mws,
                              char *errstr, size_t errstr_size);
int cg_engine_workers_start(cg_engine_t *gw, char *errstr, size_t errstr_size);
void cg_engine_workers_stop(cg_engine_t *gw);
void cg_engine_workers_destroy(cg_engine_t *gw);
uint64_t cg_engine_worker_done(const worker_t *w);
/* /healthz's view of the workers (a cg_metrics_gw_busy_fn; opaque is the engine). */
int64_t cg_engine_workers_busy(void *opaque, char *what, size_t what_size);
size_t cg_engine_jobs_outstanding(const cg_engine_t *gw);
int cg_engine_rings_have_room(const cg_engine_t *gw);
int cg_engine_job_partial(const cg_engine_t *gw);
void cg_engine_wait_done(cg_engine_t *gw, int ms);
void cg_engine_dispatch(cg_engine_t *gw, const cg_source_msg_t *m);
void cg_engine_jobs_discard(cg_engine_t *gw);

/* produce.c: records to the sink, backpressure */
void cg_engine_produce_ready(cg_engine_t *gw, int fill);
int cg_engine_jobs_drain(cg_engine_t *gw);
void cg_engine_flush_sink(cg_engine_t *gw);
void cg_engine_backpressure(cg_engine_t *gw);
void cg_engine_cohort_dests_free(cg_engine_t *gw);

/* release.c: graded release's bookkeeping (the rows are released in jobs.c) */
/* The audit's counts of n subscribers (NULL when out of memory), and freed. */
struct release_audit *cg_engine_release_audit_new(size_t n);
void cg_engine_release_audit_free(struct release_audit *a, size_t n);
/* Subscriber s's expired agreement has been logged (at start): not again. */
void cg_engine_release_expired_logged(cg_engine_t *gw, size_t s);
/* Subscriber s has a new policy (a reload): its expiry is logged anew. */
void cg_engine_release_policy_replaced(cg_engine_t *gw, size_t s);
/* A produced job's withheld rows counted for the audit and metrics (engine thread). */
void cg_engine_release_count(cg_engine_t *gw, const job_t *j);
/* One released record handed to the sink, counted. */
void cg_engine_release_counted(cg_engine_t *gw, const job_rec_t *r);
/* Whether audit records are due (force: yes). */
int cg_engine_release_audit_due(const cg_engine_t *gw, int force);
/* Subscriber s's audit record up to now_ms (a new string), or NULL when nothing happened to it
 * (or no memory: the caller tells them apart by gw->audit's counts, see produce.c). */
char *cg_engine_release_audit_text(cg_engine_t *gw, size_t s, int64_t now_ms);
/* Subscriber s's audit record was handed over: its counts start again at now_ms. */
void cg_engine_release_audit_written(cg_engine_t *gw, size_t s, int64_t now_ms);
/* Every due record was handed over: the next are due an interval from now. */
void cg_engine_release_audit_rearm(cg_engine_t *gw);
int64_t cg_engine_release_wall_ms(void);
/* produce.c: the audit records due (force: all pending, as at shutdown) as outputs of j (NULL:
 * of none): 1 when each was handed over, 0 when the sink's queue is full (call again: one
 * handed over is not written twice), -1 when the sink failed. */
int cg_engine_audit_produce(cg_engine_t *gw, job_t *j, int force);
/* produce.c: one record to the sink; in NULL: no cg.source.* headers (released, audit) */
cg_sink_result_t cg_engine_produce_one(cg_engine_t *gw, const char *dest, int dead, const void *key,
                                       size_t key_len, const void *val, size_t val_len,
                                       const cg_source_msg_t *in, const char *const *hdrs,
                                       size_t n_hdrs, cg_delivery_msg_t *dm);

/* commit.c: at-least-once commits, exactly-once transactions */
void cg_engine_commit_delivered(cg_engine_t *gw, int sync);
int cg_engine_txn_begin(cg_engine_t *gw);
int cg_engine_txn_full(const cg_engine_t *gw);
void cg_engine_txn_abort(cg_engine_t *gw, const cg_source_pos_t *keep, size_t n_keep, int rewind);
void cg_engine_txn_commit(cg_engine_t *gw, const cg_source_pos_t *keep, size_t n_keep);

/* engine_api.c: partitions at their end (for --idle-exit) */
void cg_engine_mark_end(cg_engine_t *gw, const char *topic, int32_t partition, int at_end);
int cg_engine_count_ends(const cg_engine_t *gw);

#endif
