/* pipeline.c - the gateway: consume → decode and map → produce, with at-least-once commits or
 * exactly-once transactions.
 *
 * Threads. The consumer thread (the caller of cg_gateway_run) polls the input, produces every
 * record and commits; librdkafka calls the delivery, rebalance and commit callbacks from inside
 * its poll calls, so the delivery bookkeeping and the transaction state need no locks. Decoding
 * and mapping run on that thread too (workers = 1) or on N worker threads: an input partition
 * always goes to the same worker, each worker keeps its jobs in a FIFO ring, and the consumer
 * thread produces each ring's jobs in order, so per-partition order holds.
 *
 * at-least-once: the offsets of fully delivered inputs are committed every commit_interval_ms.
 * exactly-once: records go out in Kafka transactions together with their inputs' offsets
 * (consume-transform-produce); an abortable error aborts the transaction and rewinds the
 * consumer to the last committed offsets; a fatal one stops the gateway.
 * Backpressure: while the producer's queue is full or too many inputs are in flight, every
 * assigned partition is paused (librdkafka stops fetching) until the producer has drained.
 */
#include "cg_gateway.h"

#include "cg_cohort.h"
#include "cg_delivery.h"
#include "cg_kafka.h"
#include "cg_log.h"
#include "cg_mapping.h"
#include "cg_metrics_gw.h"
#include "cg_spec.h"
#include "cg_vocab.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <librdkafka/rdkafka.h>

/* Jobs one worker's ring holds: inputs dispatched and not yet produced. Bounds the memory of
 * mapped records waiting for the producer. */
#define CG_RING_CAP 128
/* A job's buffer above this is freed once the job is done; below, it is reused. */
#define CG_JOB_KEEP_BYTES (1 << 20)
/* Transactions aborted in a row before exactly-once gives up: a record the broker always
 * refuses would otherwise be retried forever. */
#define CG_TXN_MAX_ABORTS 10
/* How long one resumable transactional call may block before the loop looks at stop requests. */
#define CG_TXN_SLICE_MS 5000

/* One record of a mapped input. */
typedef struct job_rec {
    const char *cohort;              /* NULL: the output topic */
    const char *table, *spec, *rule; /* the compiled specs' strings: valid until a reload */
    int spec_version;
    size_t key_off, key_len, val_off, val_len; /* in the job's buf */
} job_rec_t;

/* One input message on its way: mapped by a worker, produced by the consumer thread. */
typedef struct job {
    rd_kafka_message_t *in; /* owned until produced or discarded */
    cg_delivery_msg_t *dm;
    cg_input_format_t format;
    cg_err_t
        rc; /* CG_OK: the records; a dead-letter error: the input goes to the DLQ; else fatal */
    cg_error_t me;
    char reason[512]; /* the dead letter's reason */
    job_rec_t *recs;
    size_t n_recs, cap_recs;
    size_t next_rec; /* records handed to the producer so far: resumes after a full queue */
    cg_buf_t buf;    /* keys and envelopes */
} job_t;

typedef struct worker {
    cg_gateway_t *gw;
    int index;
    pthread_t thread;
    int started;
    cg_mapping_worker_t *mw; /* its mapper and cohort router: one per thread */
    job_t *ring;             /* CG_RING_CAP jobs */
    /* head <= done <= tail, tail - head <= CG_RING_CAP. head: next job to produce (consumer
     * thread only); done: jobs mapped; tail: jobs dispatched. done and tail change under gw->mu. */
    uint64_t head, done, tail;
    pthread_cond_t work; /* tail moved, or stopping */
} worker_t;

struct cg_gateway {
    const cg_config_t *cfg;
    cg_gateway_opts_t opts;
    cg_kafka_embedded_t *embedded; /* NULL unless the config asks for the embedded broker */
    char *bootstrap;
    rd_kafka_t *consumer;
    rd_kafka_t *producer;
    rd_kafka_topic_t *out_rkt;
    rd_kafka_topic_t *dlq_rkt;
    cg_delivery_t *delivery;
    cg_mapping_t *mapping;    /* vocabularies, key, specs, cohorts */
    cg_metrics_gw_t *metrics; /* counters and gauges for /metrics; its endpoint's thread */
    worker_t *workers;
    int n_workers;
    int threaded; /* n_workers > 1: each worker maps on a thread of its own */
    pthread_mutex_t mu;
    pthread_cond_t done_cv; /* a worker finished a job */
    int workers_stop;
    /* cohort topics produced to so far, by name (a handful: cohorts x tables) */
    struct cohort_topic {
        const char *cohort, *table; /* the names' own pointers, for a lookup without building
                                     * the name; cohort is cleared when a reload frees it */
        char *name;
        rd_kafka_topic_t *rkt;
    } * ctopics;
    size_t n_ctopics;
    volatile sig_atomic_t stop;
    volatile sig_atomic_t reload; /* SIGHUP: recompile specs and cohorts between messages */
    cg_err_t fatal;
    char fatal_reason[512];
    cg_gateway_stats_t stats;
    int n_assigned;
    /* partitions known to be at their end (for --idle-exit): set by an EOF event, cleared by a
     * message of that partition */
    struct at_end {
        char *topic;
        int32_t partition;
        int at_end;
    } * ends;
    size_t n_ends;
    int64_t last_activity_ms;
    int64_t deadline_ms;  /* once stopping: when the drain must be over; 0 before */
    int drain_incomplete; /* the drain ran out of time with inputs left uncommitted */
    int ran;              /* cg_gateway_run() has finished */
    /* backpressure */
    int blocked;           /* a record met a full producer queue */
    int64_t stalled_since; /* consumption waits on the output side since then; 0: it does not */
    int paused;            /* the assignment is paused (the wait lasted pause_after_ms) */
    int outq_resume;       /* go on once the producer's queue is down to this */
    /* exactly-once */
    int eos;
    int txn_open;
    int txn_failed;       /* an abortable error was seen: abort before going on */
    int txn_offsets_sent; /* the open transaction's offsets are sent: only the commit is left */
    uint64_t txn_msgs;    /* inputs sealed in the open transaction */
    int64_t txn_began_ms;
    int aborts_in_row;
    int64_t hold_until_ms; /* after an abort: no consuming before this (backoff) */
    int inject_aborts;     /* opts.inject_abort_commits still to inject */
};

/* Counters are read by other threads (cg_gateway_get_stats), and written by workers too. */
#define STAT_ADD(gw, field, n)                                                                     \
    __atomic_add_fetch(&(gw)->stats.field, (uint64_t)(n), __ATOMIC_RELAXED)

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void set_fatal(cg_gateway_t *gw, cg_err_t code, const char *reason)
{
    if (gw->fatal)
        return;
    gw->fatal = code;
    snprintf(gw->fatal_reason, sizeof(gw->fatal_reason), "%s", reason);
    cg_log(CG_LOG_ERROR, "gateway.fatal", "%s", reason);
    cg_metrics_gw_fatal(gw->metrics, reason);
    gw->stop = 1;
}

/* Once a stop is requested, everything left must be done by drain_timeout_ms after it. */
static void note_stop(cg_gateway_t *gw)
{
    if (gw->stop && !gw->deadline_ms)
        gw->deadline_ms = now_ms() + gw->cfg->drain_timeout_ms;
}

/* What a blocking call may take: what is left of the drain once stopping; for a revoke while
 * running, the drain timeout too. */
static int remaining_ms(cg_gateway_t *gw)
{
    note_stop(gw);
    int64_t left = gw->deadline_ms ? gw->deadline_ms - now_ms() : gw->cfg->drain_timeout_ms;
    return left < 0 ? 0 : left > INT32_MAX ? INT32_MAX : (int)left;
}

static int out_of_time(cg_gateway_t *gw)
{
    note_stop(gw);
    return gw->deadline_ms && now_ms() >= gw->deadline_ms;
}

static void add_offset(const char *topic, int32_t partition, int64_t offset, void *opaque)
{
    rd_kafka_topic_partition_list_add(opaque, topic, partition)->offset = offset;
}

/* ---- workers: decode and map ---- */

static void job_reset(job_t *j)
{
    if (j->in)
        rd_kafka_message_destroy(j->in);
    j->in = NULL;
    j->dm = NULL;
    j->rc = CG_OK;
    j->reason[0] = '\0';
    j->n_recs = 0;
    j->next_rec = 0;
    cg_buf_reset(&j->buf);
    if (j->buf.cap > CG_JOB_KEEP_BYTES) { /* one huge message does not keep its slot big */
        cg_buf_free(&j->buf);
        cg_buf_init(&j->buf);
    }
}

static job_rec_t *job_add_rec(job_t *j)
{
    if (j->n_recs == j->cap_recs) {
        size_t cap = j->cap_recs ? j->cap_recs * 2 : 8;
        job_rec_t *r = realloc(j->recs, cap * sizeof(*r));
        if (!r)
            return NULL;
        j->recs = r;
        j->cap_recs = cap;
    }
    return &j->recs[j->n_recs++];
}

/* Decodes and maps a job's input into its records and their cohorts (on the job's worker). */
static void map_job(cg_gateway_t *gw, worker_t *w, job_t *j)
{
    const rd_kafka_message_t *in = j->in;
    const cg_row_t *rows;
    size_t n;
    double t0 = cg_metrics_now();
    const char *buf = in->payload ? in->payload : "";
    j->rc = cg_mapping_worker_map(w->mw, j->format, buf, in->len, &rows, &n, &j->me);
    cg_metrics_gw_latency(gw->metrics, cg_metrics_now() - t0);
    STAT_ADD(gw, worker_messages[w->index], 1);
    if (j->rc != CG_OK) {
        if (cg_err_classify(j->rc) == CG_ERR_CLASS_DEADLETTER)
            cg_error_format(&j->me, j->reason, sizeof(j->reason));
        return;
    }
    cg_row_source_t src = {
        .topic = rd_kafka_topic_name(in->rkt),
        .partition = in->partition,
        .offset = in->offset,
    };
    for (size_t i = 0; i < n; i++) {
        const char *const *cohorts = NULL;
        size_t n_cohorts = cg_mapping_worker_route(w->mw, &rows[i], &cohorts);
        size_t val_off = j->buf.len;
        if (cg_row_encode(&rows[i], &src, cohorts, n_cohorts, 0, &j->buf) != CG_OK)
            goto nomem;
        size_t val_len = j->buf.len - val_off, key_off = j->buf.len;
        if (rows[i].person_key.len &&
            cg_buf_append(&j->buf, rows[i].person_key.ptr, rows[i].person_key.len) != CG_OK)
            goto nomem;
        /* keyed by the patient's pseudonym: one patient's records stay in order; a record in
         * no cohort goes to the output topic, one in cohorts to each cohort's topic */
        for (size_t k = 0; k < (n_cohorts ? n_cohorts : 1); k++) {
            job_rec_t *r = job_add_rec(j);
            if (!r)
                goto nomem;
            *r = (job_rec_t){n_cohorts ? cohorts[k] : NULL,
                             rows[i].table->name,
                             rows[i].spec,
                             rows[i].rule,
                             rows[i].spec_version,
                             key_off,
                             rows[i].person_key.len,
                             val_off,
                             val_len};
        }
    }
    return;
nomem:
    j->rc = CG_ERR_NOMEM;
    snprintf(j->me.text, sizeof(j->me.text), "out of memory encoding a record");
}

static void *worker_main(void *arg)
{
    worker_t *w = arg;
    cg_gateway_t *gw = w->gw;
    pthread_mutex_lock(&gw->mu);
    for (;;) {
        while (!gw->workers_stop && w->done == w->tail)
            pthread_cond_wait(&w->work, &gw->mu);
        if (w->done == w->tail)
            break; /* stopping, nothing left */
        job_t *j = &w->ring[w->done % CG_RING_CAP];
        pthread_mutex_unlock(&gw->mu);
        map_job(gw, w, j);
        pthread_mutex_lock(&gw->mu);
        __atomic_store_n(&w->done, w->done + 1, __ATOMIC_RELEASE);
        pthread_cond_signal(&gw->done_cv);
    }
    pthread_mutex_unlock(&gw->mu);
    return NULL;
}

static uint64_t worker_done(const worker_t *w)
{
    return __atomic_load_n(&w->done, __ATOMIC_ACQUIRE);
}

static size_t jobs_outstanding(const cg_gateway_t *gw)
{
    size_t n = 0;
    for (int i = 0; i < gw->n_workers; i++)
        n += (size_t)(gw->workers[i].tail - gw->workers[i].head);
    return n;
}

static int rings_have_room(const cg_gateway_t *gw)
{
    for (int i = 0; i < gw->n_workers; i++)
        if (gw->workers[i].tail - gw->workers[i].head >= CG_RING_CAP)
            return 0;
    return 1;
}

/* A job whose records went out only in part (a full queue stopped it): no transaction may
 * commit before it is whole. */
static int job_partial(const cg_gateway_t *gw)
{
    for (int i = 0; i < gw->n_workers; i++) {
        const worker_t *w = &gw->workers[i];
        if (w->head < w->tail && w->ring[w->head % CG_RING_CAP].next_rec > 0)
            return 1;
    }
    return 0;
}

/* Waits up to ms for a worker to finish a job not produced yet. */
static void wait_done(cg_gateway_t *gw, int ms)
{
    if (!gw->threaded)
        return;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_nsec += (long)ms * 1000000L;
    ts.tv_sec += ts.tv_nsec / 1000000000L;
    ts.tv_nsec %= 1000000000L;
    pthread_mutex_lock(&gw->mu);
    for (;;) {
        int ready = 0;
        for (int i = 0; i < gw->n_workers && !ready; i++)
            ready = gw->workers[i].done > gw->workers[i].head;
        if (ready || pthread_cond_timedwait(&gw->done_cv, &gw->mu, &ts) == ETIMEDOUT)
            break;
    }
    pthread_mutex_unlock(&gw->mu);
}

/* The format the config gives the input topic. A topic that came in through a regex
 * subscription ("^…") takes the format of the first regex input, or is told apart per record
 * when there are several (the regex itself is librdkafka's to match). */
static cg_input_format_t input_format(const cg_gateway_t *gw, const char *topic)
{
    int regexes = 0;
    cg_input_format_t first = CG_INPUT_AUTO;
    for (size_t i = 0; i < gw->cfg->n_inputs; i++) {
        const cg_config_input_t *in = &gw->cfg->inputs[i];
        if (!strcmp(in->topic, topic))
            return in->format;
        if (in->topic[0] == '^' && !regexes++)
            first = in->format;
    }
    return regexes == 1 ? first : CG_INPUT_AUTO;
}

/* Hands a consumed message to its partition's worker (takes m). */
static void dispatch(cg_gateway_t *gw, rd_kafka_message_t *m)
{
    const char *topic = rd_kafka_topic_name(m->rkt);
    /* a partition always maps on the same worker, so its order holds; partitions of a topic
     * spread evenly */
    uint32_t h = 2166136261u;
    for (const char *s = topic; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    worker_t *w = &gw->workers[(h + (uint32_t)m->partition) % (uint32_t)gw->n_workers];
    cg_delivery_msg_t *dm = cg_delivery_begin(gw->delivery, topic, m->partition, m->offset);
    if (!dm) {
        set_fatal(gw, CG_ERR_NOMEM, "out of memory tracking an input message");
        rd_kafka_message_destroy(m);
        return;
    }
    STAT_ADD(gw, consumed, 1);
    cg_metrics_gw_message_in(gw->metrics, topic);
    job_t *j = &w->ring[w->tail % CG_RING_CAP];
    j->in = m;
    j->dm = dm;
    j->format = input_format(gw, topic);
    if (!gw->threaded) {
        map_job(gw, w, j);
        w->tail++;
        w->done++;
        return;
    }
    pthread_mutex_lock(&gw->mu);
    w->tail++;
    pthread_cond_signal(&w->work);
    pthread_mutex_unlock(&gw->mu);
}

/* Drops every job not produced yet, once the workers are done with the ones they hold. Their
 * inputs stay uncommitted (the caller rewinds them). */
static void jobs_discard(cg_gateway_t *gw)
{
    if (gw->threaded) {
        pthread_mutex_lock(&gw->mu);
        for (int i = 0; i < gw->n_workers; i++)
            while (gw->workers[i].done != gw->workers[i].tail)
                pthread_cond_wait(&gw->done_cv, &gw->mu);
        pthread_mutex_unlock(&gw->mu);
    }
    for (int i = 0; i < gw->n_workers; i++) {
        worker_t *w = &gw->workers[i];
        for (; w->head < w->tail; w->head++)
            job_reset(&w->ring[w->head % CG_RING_CAP]);
    }
}

static int workers_start(cg_gateway_t *gw, char *errstr, size_t errstr_size)
{
    if (!gw->threaded)
        return 0;
    gw->workers_stop = 0;
    for (int i = 0; i < gw->n_workers; i++) {
        int rc = pthread_create(&gw->workers[i].thread, NULL, worker_main, &gw->workers[i]);
        if (rc) {
            snprintf(errstr, errstr_size, "cannot start worker thread %d: %s", i, strerror(rc));
            return -1;
        }
        gw->workers[i].started = 1;
    }
    return 0;
}

static void workers_stop(cg_gateway_t *gw)
{
    pthread_mutex_lock(&gw->mu);
    gw->workers_stop = 1;
    for (int i = 0; i < gw->n_workers; i++)
        pthread_cond_signal(&gw->workers[i].work);
    pthread_mutex_unlock(&gw->mu);
    for (int i = 0; i < gw->n_workers; i++)
        if (gw->workers[i].started) {
            pthread_join(gw->workers[i].thread, NULL);
            gw->workers[i].started = 0;
        }
}

/* ---- callbacks (run on the consumer thread, from inside poll) ---- */

static int is_fenced(rd_kafka_resp_err_t err)
{
    return err == RD_KAFKA_RESP_ERR__FENCED || err == RD_KAFKA_RESP_ERR_PRODUCER_FENCED ||
           err == RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH;
}

/* The producer's fatal error, if it has one, with a hint when another instance fenced it. */
static int producer_fatal(cg_gateway_t *gw, char *reason, size_t size)
{
    char text[256];
    rd_kafka_resp_err_t err = rd_kafka_fatal_error(gw->producer, text, sizeof(text));
    if (!err)
        return 0;
    char tid[256] = "";
    if (gw->eos)
        cg_kafka_transactional_id(gw->cfg, tid, sizeof(tid));
    snprintf(reason, size, "fatal producer error: %s: %s%s%s%s", rd_kafka_err2name(err), text,
             is_fenced(err) ? " (another instance uses transactional.id " : "",
             is_fenced(err) ? tid : "",
             is_fenced(err) ? ": give each instance its own delivery.transactional_id)" : "");
    return 1;
}

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    cg_gateway_t *gw = opaque;
    cg_delivery_msg_t *dm = m->_private;
    if (m->err) {
        /* purged by an abort: the transaction's inputs are rewound and consumed again */
        if (gw->eos && (m->err == RD_KAFKA_RESP_ERR__PURGE_QUEUE ||
                        m->err == RD_KAFKA_RESP_ERR__PURGE_INFLIGHT))
            return;
        STAT_ADD(gw, delivery_errors, 1);
        char reason[512];
        snprintf(reason, sizeof(reason), "delivery to %s failed: %s", rd_kafka_topic_name(m->rkt),
                 rd_kafka_err2str(m->err));
        if (gw->eos && !rd_kafka_fatal_error(gw->producer, NULL, 0)) {
            /* the transaction cannot commit any more: abort it, consume its inputs again */
            if (!gw->txn_failed)
                cg_log(CG_LOG_WARN, "transaction.failed", "%s (the transaction is aborted)",
                       reason);
            gw->txn_failed = 1;
            return;
        }
        /* The record's input offset stays uncommitted: a restart replays it. */
        if (gw->eos)
            producer_fatal(gw, reason, sizeof(reason));
        set_fatal(gw, CG_ERR_KAFKA, reason);
        return;
    }
    if (m->rkt == gw->dlq_rkt)
        STAT_ADD(gw, dead_lettered, 1);
    else
        STAT_ADD(gw, records_out, 1);
    char v1[CG_METRICS_MAX_VALUE + 1], v2[CG_METRICS_MAX_VALUE + 1]; /* the metrics' labels */
    if (m->rkt == gw->dlq_rkt)
        cg_metrics_gw_dead_letter(gw->metrics, cg_kafka_header(m, "cg.error.stage", v1, sizeof(v1)),
                                  cg_kafka_header(m, "cg.error.code", v2, sizeof(v2)));
    else
        cg_metrics_gw_row_out(gw->metrics, rd_kafka_topic_name(m->rkt),
                              cg_kafka_header(m, "cg.spec", v1, sizeof(v1)));
    cg_delivery_done(gw->delivery, dm);
}

static void record_commit_result(cg_gateway_t *gw, rd_kafka_resp_err_t err,
                                 const rd_kafka_topic_partition_list_t *offsets)
{
    if (err == RD_KAFKA_RESP_ERR__NO_OFFSET)
        return;
    if (err) {
        cg_log(CG_LOG_WARN, "offsets.commit_failed", "%s (will retry)", rd_kafka_err2str(err));
        return;
    }
    STAT_ADD(gw, commits, 1);
    for (int i = 0; offsets && i < offsets->cnt; i++) {
        const rd_kafka_topic_partition_t *p = &offsets->elems[i];
        if (!p->err && p->offset >= 0)
            cg_delivery_committed(gw->delivery, p->topic, p->partition, p->offset);
    }
}

static int on_stats(rd_kafka_t *rk, char *json, size_t json_len, void *opaque)
{
    (void)rk;
    cg_metrics_gw_kafka_stats(((cg_gateway_t *)opaque)->metrics, json, json_len);
    return 0;
}

static void on_commit(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                      rd_kafka_topic_partition_list_t *offsets, void *opaque)
{
    (void)rk;
    record_commit_result(opaque, err, offsets);
}

/* at-least-once: commits every partition's delivered prefix; sync (on shutdown and revoke,
 * waiting at most remaining_ms()) or in the background. */
static void commit_delivered(cg_gateway_t *gw, int sync)
{
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(8);
    cg_delivery_foreach_committable(gw->delivery, add_offset, list);
    if (list->cnt > 0 && !sync) {
        rd_kafka_resp_err_t err = rd_kafka_commit(gw->consumer, list, 1);
        if (err)
            cg_log(CG_LOG_WARN, "offsets.commit_failed", "%s", rd_kafka_err2str(err));
    } else if (list->cnt > 0) {
        /* through a queue of our own, so that the wait is bounded */
        rd_kafka_queue_t *q = rd_kafka_queue_new(gw->consumer);
        rd_kafka_resp_err_t err = rd_kafka_commit_queue(gw->consumer, list, q, NULL, NULL);
        rd_kafka_event_t *ev = err ? NULL : rd_kafka_queue_poll(q, remaining_ms(gw));
        if (err) {
            cg_log(CG_LOG_WARN, "offsets.commit_failed", "%s", rd_kafka_err2str(err));
        } else if (!ev) {
            cg_log(CG_LOG_WARN, "offsets.commit_failed", "no answer within the drain timeout");
            if (gw->stop)
                gw->drain_incomplete = 1;
        } else if (rd_kafka_event_type(ev) == RD_KAFKA_EVENT_OFFSET_COMMIT) {
            record_commit_result(gw, rd_kafka_event_error(ev),
                                 rd_kafka_event_topic_partition_list(ev));
        }
        if (ev)
            rd_kafka_event_destroy(ev);
        rd_kafka_queue_destroy(q);
    }
    rd_kafka_topic_partition_list_destroy(list);
}

/* Waits (at most remaining_ms()) for every record in flight to be delivered or to fail. */
static void flush_producer(cg_gateway_t *gw)
{
    int t = remaining_ms(gw);
    rd_kafka_resp_err_t err = rd_kafka_flush(gw->producer, t);
    if (err) {
        cg_log(CG_LOG_WARN, "producer.flush", "%d record(s) still undelivered after %d ms: %s",
               rd_kafka_outq_len(gw->producer), t, rd_kafka_err2str(err));
        if (gw->stop)
            gw->drain_incomplete = 1;
    }
}

/* ---- producing ---- */

/* The topic of a cohort's records of one table, from the cohorts.topic template. */
static rd_kafka_topic_t *cohort_topic(cg_gateway_t *gw, const char *cohort, const char *table)
{
    /* by pointer first: no name to build per record once the topic is known */
    for (size_t i = 0; i < gw->n_ctopics; i++)
        if (gw->ctopics[i].cohort == cohort && gw->ctopics[i].table == table)
            return gw->ctopics[i].rkt;
    char name[512];
    size_t o = 0;
    for (const char *t = gw->cfg->cohort_topic; *t && o + 1 < sizeof(name);) {
        const char *sub = NULL;
        size_t skip = 1;
        if (!strncmp(t, "{cohort}", 8)) {
            sub = cohort;
            skip = 8;
        } else if (!strncmp(t, "{table}", 7)) {
            sub = table;
            skip = 7;
        }
        if (sub)
            o += (size_t)snprintf(name + o, sizeof(name) - o, "%s", sub);
        else
            name[o++] = *t;
        t += skip;
        if (o >= sizeof(name))
            o = sizeof(name) - 1;
    }
    name[o] = '\0';
    for (size_t i = 0; i < gw->n_ctopics; i++)
        if (!strcmp(gw->ctopics[i].name, name)) { /* known by name, e.g. after a reload */
            gw->ctopics[i].cohort = cohort;
            gw->ctopics[i].table = table;
            return gw->ctopics[i].rkt;
        }
    void *grown = realloc(gw->ctopics, (gw->n_ctopics + 1) * sizeof(*gw->ctopics));
    if (!grown) {
        set_fatal(gw, CG_ERR_NOMEM, "out of memory for a cohort topic");
        return NULL;
    }
    gw->ctopics = grown;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(gw->producer, name, NULL);
    char *copy = strdup(name);
    if (!rkt || !copy) {
        free(copy);
        if (rkt)
            rd_kafka_topic_destroy(rkt);
        set_fatal(gw, CG_ERR_KAFKA, "cannot create a cohort topic handle");
        return NULL;
    }
    gw->ctopics[gw->n_ctopics++] = (struct cohort_topic){cohort, table, copy, rkt};
    cg_log(CG_LOG_INFO, "cohort.topic", "publishing to %s", name);
    return rkt;
}

/* Hands one record to the producer, with provenance headers and hdrs (name, value pairs). */
static rd_kafka_resp_err_t produce_one(cg_gateway_t *gw, rd_kafka_topic_t *rkt, const void *key,
                                       size_t key_len, const void *val, size_t val_len,
                                       const rd_kafka_message_t *in, const char *const *hdrs,
                                       size_t n_hdrs, cg_delivery_msg_t *dm)
{
    rd_kafka_headers_t *h = rd_kafka_headers_new(n_hdrs / 2 + 3);
    char part[16], off[24];
    snprintf(part, sizeof(part), "%" PRId32, in->partition);
    snprintf(off, sizeof(off), "%" PRId64, in->offset);
    rd_kafka_header_add(h, "cg.source.topic", -1, rd_kafka_topic_name(in->rkt), -1);
    rd_kafka_header_add(h, "cg.source.partition", -1, part, -1);
    rd_kafka_header_add(h, "cg.source.offset", -1, off, -1);
    for (size_t i = 0; i + 1 < n_hdrs; i += 2)
        rd_kafka_header_add(h, hdrs[i], -1, hdrs[i + 1], -1);
    cg_delivery_add(dm);
    rd_kafka_resp_err_t err = rd_kafka_producev(
        gw->producer, RD_KAFKA_V_RKT(rkt), RD_KAFKA_V_KEY(key, key_len),
        RD_KAFKA_V_VALUE((void *)val, val_len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_OPAQUE(dm), RD_KAFKA_V_END);
    if (err) {
        rd_kafka_headers_destroy(h);
        cg_delivery_unadd(gw->delivery, dm);
    }
    return err;
}

static int txn_begin(cg_gateway_t *gw);

/* Produces a mapped job's records from where it stopped. 1: all handed over (the input is
 * sealed); 0: the producer's queue is full, try again later; -1: failed (fatal, or the
 * transaction failed). */
static int produce_job(cg_gateway_t *gw, job_t *j)
{
    int dead = j->rc != CG_OK;
    if (dead && cg_err_classify(j->rc) != CG_ERR_CLASS_DEADLETTER) {
        set_fatal(gw, j->rc, j->me.text);
        return -1;
    }
    if (gw->eos && txn_begin(gw))
        return -1;
    const rd_kafka_message_t *in = j->in;
    for (size_t total = dead ? 1 : j->n_recs; j->next_rec < total; j->next_rec++) {
        rd_kafka_resp_err_t err;
        rd_kafka_topic_t *rkt;
        char ver[16];
        if (dead) {
            /* the original bytes and key, untouched; the spec headers only when a spec was
             * chosen */
            const cg_error_t *me = &j->me;
            snprintf(ver, sizeof(ver), "%d", me->spec_version);
            const char *hdrs[] = {
                "cg.error.stage",  me->stage ? me->stage : "map",
                "cg.error.code",   cg_err_name(j->rc),
                "cg.error.class",  cg_err_class_name(cg_err_classify(j->rc)),
                "cg.error.reason", j->reason,
                "cg.spec",         me->spec,
                "cg.spec.version", ver,
            };
            size_t nh = sizeof(hdrs) / sizeof(hdrs[0]) - (me->spec[0] ? 0 : 4);
            rkt = gw->dlq_rkt;
            err = produce_one(gw, rkt, in->key, in->key_len, in->payload, in->len, in, hdrs, nh,
                              j->dm);
        } else {
            const job_rec_t *r = &j->recs[j->next_rec];
            rkt = r->cohort ? cohort_topic(gw, r->cohort, r->table) : gw->out_rkt;
            if (!rkt)
                return -1;
            snprintf(ver, sizeof(ver), "%d", r->spec_version);
            const char *hdrs[] = {"cg.spec",  r->spec,  "cg.spec.version", ver,
                                  "cg.table", r->table, "cg.rule",         r->rule};
            err =
                produce_one(gw, rkt, j->buf.data + r->key_off, r->key_len, j->buf.data + r->val_off,
                            r->val_len, in, hdrs, sizeof(hdrs) / sizeof(hdrs[0]), j->dm);
        }
        if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            STAT_ADD(gw, queue_full, 1);
            return 0;
        }
        if (err) {
            char reason[512];
            snprintf(reason, sizeof(reason), "produce to %s failed: %s", rd_kafka_topic_name(rkt),
                     rd_kafka_err2str(err));
            if (gw->eos && err == RD_KAFKA_RESP_ERR__STATE &&
                !rd_kafka_fatal_error(gw->producer, NULL, 0)) {
                /* the transaction is in an abortable error state */
                cg_log(CG_LOG_WARN, "transaction.failed", "%s (the transaction is aborted)",
                       reason);
                gw->txn_failed = 1;
            } else {
                producer_fatal(gw, reason, sizeof(reason));
                set_fatal(gw, CG_ERR_KAFKA, reason);
            }
            return -1;
        }
    }
    cg_delivery_seal(gw->delivery, j->dm);
    if (gw->eos)
        gw->txn_msgs++;
    return 1;
}

static int txn_full(const cg_gateway_t *gw)
{
    return gw->txn_open && gw->txn_msgs >= (uint64_t)gw->cfg->transaction_max_messages;
}

/* Produces the mapped jobs at the front of every ring, in ring order. Stops at a full producer
 * queue (gw->blocked), at a failure, and (exactly-once, unless fill) at a full transaction. */
static void produce_ready(cg_gateway_t *gw, int fill)
{
    gw->blocked = 0;
    for (int i = 0; i < gw->n_workers; i++) {
        worker_t *w = &gw->workers[i];
        for (uint64_t done = worker_done(w); w->head < done; w->head++) {
            if (gw->fatal || gw->txn_failed || (!fill && txn_full(gw)))
                return;
            job_t *j = &w->ring[w->head % CG_RING_CAP];
            int rc = produce_job(gw, j);
            if (rc == 0)
                gw->blocked = 1;
            if (rc <= 0)
                return;
            job_reset(j);
        }
    }
}

/* Produces every job dispatched so far (revoke, shutdown), filling the open transaction beyond
 * its size; gives up at a failure or when remaining_ms() is out. 0 when nothing is left. */
static int jobs_drain(cg_gateway_t *gw)
{
    int64_t until = now_ms() + remaining_ms(gw);
    while (jobs_outstanding(gw)) {
        produce_ready(gw, 1);
        if (!jobs_outstanding(gw))
            break;
        if (gw->fatal || gw->txn_failed || now_ms() >= until)
            return -1;
        if (gw->blocked)
            rd_kafka_poll(gw->producer, 10);
        else
            wait_done(gw, 10);
    }
    return 0;
}

/* ---- exactly-once transactions ---- */

/* Runs a resumable transactional call (init, commit, abort) again after retriable errors until
 * it is done, fails for good, or the drain is out of time. Returns NULL or the error. */
static rd_kafka_error_t *txn_retry(cg_gateway_t *gw, rd_kafka_error_t *(*op)(rd_kafka_t *, int))
{
    for (;;) {
        int slice = gw->stop ? remaining_ms(gw) : CG_TXN_SLICE_MS;
        rd_kafka_error_t *e = op(gw->producer, slice > 0 ? slice : 1);
        if (!e || !rd_kafka_error_is_retriable(e) || rd_kafka_error_is_fatal(e) ||
            rd_kafka_error_txn_requires_abort(e) || out_of_time(gw))
            return e;
        cg_log(CG_LOG_INFO, "transaction.retry", "%s", rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
        rd_kafka_poll(gw->producer, 100); /* no busy loop on an error that comes back at once */
    }
}

/* A transactional call failed and aborting will not help: stop, unless only the drain ran out
 * of time. Destroys e. */
static void txn_give_up(cg_gateway_t *gw, const char *what, rd_kafka_error_t *e)
{
    char reason[512];
    if (rd_kafka_error_is_retriable(e) && !rd_kafka_error_is_fatal(e)) {
        cg_log(CG_LOG_ERROR, "transaction.timeout",
               "%s not done within delivery.drain_timeout_ms: %s; the transaction's inputs are "
               "consumed again on restart",
               what, rd_kafka_error_string(e));
        gw->drain_incomplete = 1;
    } else if (!producer_fatal(gw, reason, sizeof(reason))) {
        snprintf(reason, sizeof(reason), "exactly-once: %s failed: %s: %s", what,
                 rd_kafka_error_name(e), rd_kafka_error_string(e));
        set_fatal(gw, CG_ERR_KAFKA, reason);
    } else {
        set_fatal(gw, CG_ERR_KAFKA, reason);
    }
    rd_kafka_error_destroy(e);
}

static int txn_begin(cg_gateway_t *gw)
{
    if (gw->txn_open)
        return 0;
    rd_kafka_error_t *e = rd_kafka_begin_transaction(gw->producer);
    if (e) {
        txn_give_up(gw, "begin transaction", e);
        return -1;
    }
    gw->txn_open = 1;
    gw->txn_offsets_sent = 0;
    gw->txn_msgs = 0;
    gw->txn_began_ms = now_ms();
    return 0;
}

static int in_list(const rd_kafka_topic_partition_list_t *l, const char *topic, int32_t partition)
{
    return l && rd_kafka_topic_partition_list_find(l, topic, partition) != NULL;
}

/* Aborts the open transaction (its records stay invisible to read_committed consumers), drops
 * the jobs not produced yet and, with rewind, seeks the consumer back to the last committed
 * offsets so that those inputs are consumed again; partitions in keep_off (being revoked) are
 * left alone. */
static void txn_abort(cg_gateway_t *gw, const rd_kafka_topic_partition_list_t *keep_off, int rewind)
{
    int had_work = gw->txn_open || jobs_outstanding(gw) > 0;
    if (gw->txn_open) {
        rd_kafka_error_t *e = txn_retry(gw, rd_kafka_abort_transaction);
        if (e)
            txn_give_up(gw, "abort transaction", e);
        else if (rd_kafka_outq_len(gw->producer) > 0)
            rd_kafka_flush(gw->producer, remaining_ms(gw)); /* the purged records' reports */
        gw->txn_open = 0;
        STAT_ADD(gw, transactions_aborted, 1);
        cg_metrics_gw_transaction(gw->metrics, "aborted");
    }
    gw->txn_failed = 0;
    gw->txn_msgs = 0;
    jobs_discard(gw);
    rd_kafka_topic_partition_list_t *to = rd_kafka_topic_partition_list_new(8);
    size_t again = cg_delivery_rewind(gw->delivery, add_offset, to);
    if (!rewind || gw->fatal || !had_work) {
        rd_kafka_topic_partition_list_destroy(to);
        return;
    }
    rd_kafka_topic_partition_list_t *seek = rd_kafka_topic_partition_list_new(to->cnt);
    for (int i = 0; i < to->cnt; i++)
        if (!in_list(keep_off, to->elems[i].topic, to->elems[i].partition))
            rd_kafka_topic_partition_list_add(seek, to->elems[i].topic, to->elems[i].partition)
                ->offset = to->elems[i].offset;
    rd_kafka_topic_partition_list_destroy(to);
    if (seek->cnt) {
        /* waits until no message fetched before the seek can be returned any more */
        rd_kafka_error_t *e = rd_kafka_seek_partitions(gw->consumer, seek, 10000);
        char reason[512] = "";
        if (e) {
            snprintf(reason, sizeof(reason), "%s", rd_kafka_error_string(e));
            rd_kafka_error_destroy(e);
        }
        for (int i = 0; !reason[0] && i < seek->cnt; i++)
            if (seek->elems[i].err)
                snprintf(reason, sizeof(reason), "%s [%" PRId32 "]: %s", seek->elems[i].topic,
                         seek->elems[i].partition, rd_kafka_err2str(seek->elems[i].err));
        if (reason[0]) {
            char msg[600];
            snprintf(msg, sizeof(msg), "exactly-once: cannot rewind the consumer: %s", reason);
            set_fatal(gw, CG_ERR_KAFKA, msg);
        }
    }
    for (size_t k = 0; k < gw->n_ends; k++) /* rewound partitions are behind their end again */
        gw->ends[k].at_end = 0;
    gw->aborts_in_row++;
    cg_log(CG_LOG_WARN, "transaction.aborted",
           "rewound %d partition(s) to their committed offsets; %zu input(s) to consume again",
           seek->cnt, again);
    rd_kafka_topic_partition_list_destroy(seek);
    if (gw->aborts_in_row > CG_TXN_MAX_ABORTS) {
        char msg[200];
        snprintf(msg, sizeof(msg),
                 "exactly-once: %d transactions in a row were aborted (see the warnings above)",
                 gw->aborts_in_row);
        set_fatal(gw, CG_ERR_KAFKA, msg);
    }
    /* back off before consuming again: 200 ms, doubling, at most 5 s */
    int64_t wait = (int64_t)100 << (gw->aborts_in_row < 6 ? gw->aborts_in_row : 6);
    gw->hold_until_ms = now_ms() + (wait < 5000 ? wait : 5000);
}

/* Commits the open transaction with the offsets of its inputs; on an abortable error aborts
 * it and rewinds (except partitions in keep_off, being revoked). */
static void txn_commit(cg_gateway_t *gw, const rd_kafka_topic_partition_list_t *keep_off)
{
    if (!gw->txn_open)
        return;
    if (gw->txn_failed) {
        txn_abort(gw, keep_off, 1);
        return;
    }
    if (gw->inject_aborts > 0) {
        gw->inject_aborts--;
        cg_log(CG_LOG_WARN, "transaction.injected", "aborting instead of committing (a test)");
        rd_kafka_flush(gw->producer, remaining_ms(gw)); /* so the records reach the broker */
        txn_abort(gw, keep_off, 1);
        return;
    }
    /* deliver first, so that offsets are sent only with records the broker holds: a drain that
     * runs out of time then leaves no pending offsets behind in the group */
    for (;;) {
        int slice = gw->stop ? remaining_ms(gw) : CG_TXN_SLICE_MS;
        if (!rd_kafka_flush(gw->producer, slice > 0 ? slice : 1))
            break;
        if (gw->fatal)
            return;
        if (gw->txn_failed) { /* a record failed: the transaction cannot commit */
            txn_abort(gw, keep_off, 1);
            return;
        }
        if (out_of_time(gw)) {
            cg_log(CG_LOG_ERROR, "transaction.timeout",
                   "%d record(s) undelivered when delivery.drain_timeout_ms ran out; the "
                   "transaction's inputs are consumed again on restart",
                   rd_kafka_outq_len(gw->producer));
            gw->drain_incomplete = 1;
            return;
        }
    }
    rd_kafka_topic_partition_list_t *offsets = rd_kafka_topic_partition_list_new(8);
    cg_delivery_foreach_sealed(gw->delivery, add_offset, offsets);
    rd_kafka_error_t *e = NULL;
    const char *what = "commit transaction";
    if (offsets->cnt && !gw->txn_offsets_sent) {
        what = "send offsets to transaction";
        rd_kafka_consumer_group_metadata_t *md = rd_kafka_consumer_group_metadata(gw->consumer);
        for (;;) { /* retried with the same offsets, as librdkafka asks */
            int slice = gw->stop ? remaining_ms(gw) : CG_TXN_SLICE_MS;
            e = rd_kafka_send_offsets_to_transaction(gw->producer, offsets, md,
                                                     slice > 0 ? slice : 1);
            if (!e || !rd_kafka_error_is_retriable(e) || rd_kafka_error_is_fatal(e) ||
                rd_kafka_error_txn_requires_abort(e) || out_of_time(gw))
                break;
            rd_kafka_error_destroy(e);
            rd_kafka_poll(gw->producer, 100);
        }
        rd_kafka_consumer_group_metadata_destroy(md);
        gw->txn_offsets_sent = !e; /* a commit that times out is resumed, not sent again */
    }
    if (!e) {
        what = "commit transaction";
        e = txn_retry(gw, rd_kafka_commit_transaction);
    }
    if (!e) {
        for (int i = 0; i < offsets->cnt; i++)
            cg_delivery_committed(gw->delivery, offsets->elems[i].topic,
                                  offsets->elems[i].partition, offsets->elems[i].offset);
        cg_log(CG_LOG_DEBUG, "transaction.committed", "%" PRIu64 " input(s), %d partition(s)",
               gw->txn_msgs, offsets->cnt);
        gw->txn_open = 0;
        gw->txn_msgs = 0;
        gw->aborts_in_row = 0;
        STAT_ADD(gw, transactions_committed, 1);
        if (offsets->cnt)
            STAT_ADD(gw, commits, 1);
        cg_metrics_gw_transaction(gw->metrics, "committed");
    } else if (rd_kafka_error_txn_requires_abort(e)) {
        cg_log(CG_LOG_WARN, "transaction.failed", "%s: %s (the transaction is aborted)", what,
               rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
        txn_abort(gw, keep_off, 1);
    } else {
        txn_give_up(gw, what, e);
    }
    rd_kafka_topic_partition_list_destroy(offsets);
}

/* ---- backpressure ---- */

static void set_paused(cg_gateway_t *gw, int on)
{
    rd_kafka_topic_partition_list_t *parts = NULL;
    if (!rd_kafka_assignment(gw->consumer, &parts) && parts) {
        if (parts->cnt && on)
            rd_kafka_pause_partitions(gw->consumer, parts);
        else if (parts->cnt)
            rd_kafka_resume_partitions(gw->consumer, parts);
        rd_kafka_topic_partition_list_destroy(parts);
    }
    gw->paused = on;
    cg_log(CG_LOG_DEBUG, on ? "consumer.paused" : "consumer.resumed",
           "%zu input(s) in flight, %d record(s) in the producer queue",
           cg_delivery_in_flight(gw->delivery), rd_kafka_outq_len(gw->producer));
}

/* Backpressure. While the output side cannot keep up (a full producer queue, max_in_flight
 * inputs in flight) no message is taken; if that lasts pause_after_ms, the assignment is paused
 * as well: librdkafka stops fetching and frees what it prefetched, and the consumer is polled
 * again, for rebalances and max.poll.interval.ms. Short waits do not pause, since a resume costs
 * a refetch. Consumption goes on once the producer has drained half its queue and in-flight
 * inputs are down by a quarter, so that waits do not alternate with every message. */
static void backpressure(cg_gateway_t *gw)
{
    size_t in_flight = cg_delivery_in_flight(gw->delivery);
    size_t max = (size_t)gw->cfg->max_in_flight;
    int64_t t = now_ms();
    if (!gw->stalled_since) {
        if (gw->blocked || in_flight >= max) {
            gw->stalled_since = t;
            gw->outq_resume = rd_kafka_outq_len(gw->producer) / 2;
            STAT_ADD(gw, stalls, 1);
            cg_metrics_gw_paused(gw->metrics, 1);
        }
        return;
    }
    if (!gw->blocked && in_flight <= max - max / 4 &&
        rd_kafka_outq_len(gw->producer) <= gw->outq_resume) {
        if (gw->paused)
            set_paused(gw, 0);
        gw->stalled_since = 0;
        cg_metrics_gw_paused(gw->metrics, 0);
    } else if (!gw->paused && t - gw->stalled_since >= gw->cfg->pause_after_ms) {
        STAT_ADD(gw, pauses, 1);
        set_paused(gw, 1);
    }
}

/* ---- rebalances ---- */

static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    cg_gateway_t *gw = opaque;
    int cooperative = !strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE");
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        for (int i = 0; i < parts->cnt; i++)
            cg_log(CG_LOG_INFO, "partition.assigned", "%s [%" PRId32 "]", parts->elems[i].topic,
                   parts->elems[i].partition);
        if (cooperative)
            rd_kafka_error_destroy(rd_kafka_incremental_assign(rk, parts));
        else
            rd_kafka_assign(rk, parts);
        if (gw->paused) /* backpressure holds for new partitions too */
            rd_kafka_pause_partitions(rk, parts);
        gw->n_assigned += parts->cnt;
        __atomic_store_n(&gw->stats.assigned, (uint64_t)gw->n_assigned, __ATOMIC_RELEASE);
        cg_metrics_gw_assigned(gw->metrics, gw->n_assigned);
        gw->last_activity_ms = now_ms();
        return;
    }
    /* Revoked (or lost): finish what is in flight and commit it, then let go of the
     * partitions. Lost ones cannot be committed any more. */
    int lost = err != RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS || rd_kafka_assignment_lost(rk);
    if (gw->fatal) {
        /* nothing more is produced or committed */
    } else if (gw->eos) {
        /* the offsets of lost partitions would be refused: abort, so their inputs are not
         * committed twice, and rewind the partitions kept */
        if (lost || jobs_drain(gw))
            txn_abort(gw, parts, 1);
        else
            txn_commit(gw, parts);
    } else {
        /* at-least-once produces everything (a lost partition's records may come twice) */
        jobs_drain(gw);
        flush_producer(gw);
        if (!lost)
            commit_delivered(gw, 1);
    }
    for (int i = 0; i < parts->cnt; i++) {
        for (size_t k = 0; k < gw->n_ends; k++) /* a revoked partition's end no longer counts */
            if (gw->ends[k].partition == parts->elems[i].partition &&
                !strcmp(gw->ends[k].topic, parts->elems[i].topic))
                gw->ends[k].at_end = 0;
        size_t left = cg_delivery_drop_partition(gw->delivery, parts->elems[i].topic,
                                                 parts->elems[i].partition);
        cg_log(left ? CG_LOG_WARN : CG_LOG_INFO, "partition.revoked", "%s [%" PRId32 "]%s",
               parts->elems[i].topic, parts->elems[i].partition,
               left ? " with undelivered input left uncommitted" : "");
    }
    if (cooperative)
        rd_kafka_error_destroy(rd_kafka_incremental_unassign(rk, parts));
    else
        rd_kafka_assign(rk, NULL);
    gw->n_assigned = cooperative ? gw->n_assigned - parts->cnt : 0;
    __atomic_store_n(&gw->stats.assigned, (uint64_t)gw->n_assigned, __ATOMIC_RELEASE);
    cg_metrics_gw_assigned(gw->metrics, gw->n_assigned);
}

/* ---- mapping set-up ---- */

/* A mapping worker per worker thread for bundle m; all or none. */
static int workers_mapping(cg_gateway_t *gw, const cg_mapping_t *m, cg_mapping_worker_t **mws,
                           char *errstr, size_t errstr_size)
{
    for (int i = 0; i < gw->n_workers; i++) {
        if (!(mws[i] = cg_mapping_worker_new(m, errstr, errstr_size))) {
            for (int k = 0; k < i; k++)
                cg_mapping_worker_destroy(mws[k]);
            return -1;
        }
    }
    return 0;
}

/* Loads what mapping needs (cg_mapping.h): vocabularies, the pseudonym key, specs, cohorts. */
static int load_mapping(cg_gateway_t *gw, char *errstr, size_t errstr_size)
{
    cg_mapping_opts_t mo;
    cg_config_mapping_opts(gw->cfg, &mo);
    cg_error_t errs[8];
    size_t n_errs = 0;
    gw->mapping = cg_mapping_load(&mo, errs, 8, &n_errs);
    if (!gw->mapping) {
        char loc[1024];
        snprintf(errstr, errstr_size, "%s%s", cg_error_format(&errs[0], loc, sizeof(loc)),
                 n_errs > 1 ? " (and more: run cohortgate check -c)" : "");
        return -1;
    }
    cg_mapping_worker_t *mws[CG_GATEWAY_MAX_WORKERS];
    if (workers_mapping(gw, gw->mapping, mws, errstr, errstr_size))
        return -1;
    for (int i = 0; i < gw->n_workers; i++)
        gw->workers[i].mw = mws[i];
    const cg_cohortset_t *cohorts = cg_mapping_cohorts(gw->mapping);
    if (cohorts)
        cg_log(CG_LOG_INFO, "cohorts.loaded", "%zu cohort(s) from %s", cg_cohortset_count(cohorts),
               cg_mapping_cohorts_path(gw->mapping));
    cg_log(CG_LOG_INFO, "mapping.loaded", "%zu spec(s) from %s, %zu vocabulary code(s)",
           cg_specset_count(cg_mapping_specs(gw->mapping)), cg_mapping_specs_path(gw->mapping),
           cg_vocab_count(cg_mapping_vocab(gw->mapping)));
    return 0;
}

/* The workers and their rings (threads start with cg_gateway_run). */
static int workers_new(cg_gateway_t *gw)
{
    int n = gw->cfg->workers;
    gw->n_workers = n < 1 ? 1 : n > CG_GATEWAY_MAX_WORKERS ? CG_GATEWAY_MAX_WORKERS : n;
    gw->threaded = gw->n_workers > 1;
    gw->stats.workers = (uint64_t)gw->n_workers;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* wait_done's deadline */
    pthread_mutex_init(&gw->mu, NULL);
    pthread_cond_init(&gw->done_cv, &ca);
    pthread_condattr_destroy(&ca);
    if (!(gw->workers = calloc((size_t)gw->n_workers, sizeof(*gw->workers))))
        return -1;
    for (int i = 0; i < gw->n_workers; i++) {
        worker_t *w = &gw->workers[i];
        w->gw = gw;
        w->index = i;
        pthread_cond_init(&w->work, NULL);
        if (!(w->ring = calloc(CG_RING_CAP, sizeof(*w->ring))))
            return -1;
        for (size_t k = 0; k < CG_RING_CAP; k++)
            cg_buf_init(&w->ring[k].buf);
    }
    return 0;
}

static void workers_destroy(cg_gateway_t *gw)
{
    if (!gw->workers)
        return;
    for (int i = 0; i < gw->n_workers; i++) {
        worker_t *w = &gw->workers[i];
        for (size_t k = 0; w->ring && k < CG_RING_CAP; k++) {
            job_reset(&w->ring[k]);
            free(w->ring[k].recs);
            cg_buf_free(&w->ring[k].buf);
        }
        free(w->ring);
        cg_mapping_worker_destroy(w->mw);
        pthread_cond_destroy(&w->work);
    }
    free(gw->workers);
    gw->workers = NULL;
}

/* ---- life cycle ---- */

cg_gateway_t *cg_gateway_new(const cg_config_t *cfg, const cg_gateway_opts_t *opts, char *errstr,
                             size_t errstr_size)
{
    cg_gateway_t *gw = calloc(1, sizeof(*gw));
    if (!gw) {
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    gw->cfg = cfg;
    if (opts)
        gw->opts = *opts;
    gw->eos = cfg->semantics == CG_DELIVERY_EXACTLY_ONCE;
    gw->inject_aborts = gw->opts.inject_abort_commits;
    cg_log_set_level((cg_log_level_t)cfg->log_level);
    if (workers_new(gw))
        goto fail_nomem;
    if (!(gw->delivery = cg_delivery_new()))
        goto fail_nomem;
    if (!(gw->metrics = cg_metrics_gw_new(cfg->metrics_max_series, cfg->metrics_health_grace_ms)))
        goto fail_nomem;
    if (load_mapping(gw, errstr, errstr_size))
        goto fail;

    if (cfg->embedded_enabled) {
        gw->embedded = cg_kafka_embedded_start(cfg, errstr, errstr_size);
        if (!gw->embedded)
            goto fail;
        gw->bootstrap = strdup(cg_kafka_embedded_bootstrap(gw->embedded));
    } else {
        gw->bootstrap = strdup(cg_config_kafka_get(cfg, "bootstrap.servers"));
    }
    if (!gw->bootstrap)
        goto fail_nomem;

    gw->producer = cg_kafka_producer_new(cfg, gw->bootstrap, on_delivery, gw, errstr, errstr_size);
    if (!gw->producer)
        goto fail;
    gw->consumer = cg_kafka_consumer_new(cfg, gw->bootstrap, on_rebalance, on_commit, on_stats, gw,
                                         errstr, errstr_size);
    if (!gw->consumer)
        goto fail;
    gw->out_rkt = rd_kafka_topic_new(gw->producer, cfg->output_topic, NULL);
    gw->dlq_rkt = rd_kafka_topic_new(gw->producer, cfg->dead_letter_topic, NULL);
    if (!gw->out_rkt || !gw->dlq_rkt)
        goto fail_nomem;
    cg_metrics_gw_serve(gw->metrics, cfg->metrics_listen, cg_kafka_outq_len, gw->producer);
    return gw;

fail_nomem:
    snprintf(errstr, errstr_size, "out of memory");
fail:
    cg_gateway_destroy(gw);
    return NULL;
}

/* Compiles the config's specs and cohorts anew and swaps them in only when all compile; on any
 * error the running ones stay and the error is logged. Runs with no job in any ring, so no
 * record of the old specs is waiting. The vocabularies and the key are kept. */
static void reload_mapping(cg_gateway_t *gw)
{
    cg_error_t errs[8];
    size_t n_errs = 0;
    char errstr[1024] = "";
    cg_mapping_worker_t *mws[CG_GATEWAY_MAX_WORKERS];
    cg_mapping_t *m = cg_mapping_reload(gw->mapping, errs, 8, &n_errs);
    if (!m)
        cg_error_format(&errs[0], errstr, sizeof(errstr));
    int ok = m && !workers_mapping(gw, m, mws, errstr, sizeof(errstr));
    /* counted atomically: a test thread watches them to know the reload has happened */
    __atomic_add_fetch(&gw->stats.reloads, 1, __ATOMIC_RELEASE);
    cg_metrics_gw_reload(gw->metrics, ok);
    if (!ok) {
        __atomic_add_fetch(&gw->stats.reload_failures, 1, __ATOMIC_RELEASE);
        if (n_errs > 1)
            cg_log(CG_LOG_ERROR, "reload.failed",
                   "%s (%zu error(s); the running specs and cohorts stay)", errstr, n_errs);
        else
            cg_log(CG_LOG_ERROR, "reload.failed", "%s (the running specs and cohorts stay)",
                   errstr);
        cg_mapping_destroy(m);
        return;
    }
    /* the workers wait for a job, so they hold no mapper now */
    for (int i = 0; i < gw->n_workers; i++) {
        cg_mapping_worker_destroy(gw->workers[i].mw);
        gw->workers[i].mw = mws[i];
    }
    cg_mapping_destroy(gw->mapping);
    for (size_t i = 0; i < gw->n_ctopics; i++) /* the old cohort names are freed */
        gw->ctopics[i].cohort = NULL;
    gw->mapping = m;
    cg_log(CG_LOG_INFO, "reload.done", "%zu spec(s), %zu cohort(s) in use",
           cg_specset_count(cg_mapping_specs(m)), cg_cohortset_count(cg_mapping_cohorts(m)));
}

static void mark_end(cg_gateway_t *gw, const rd_kafka_message_t *m, int at_end)
{
    if (!m->rkt)
        return;
    const char *topic = rd_kafka_topic_name(m->rkt);
    for (size_t i = 0; i < gw->n_ends; i++)
        if (gw->ends[i].partition == m->partition && !strcmp(gw->ends[i].topic, topic)) {
            gw->ends[i].at_end = at_end;
            return;
        }
    void *grown = realloc(gw->ends, (gw->n_ends + 1) * sizeof(*gw->ends));
    char *copy = strdup(topic);
    if (!grown || !copy) {
        free(copy);
        if (grown)
            gw->ends = grown;
        return;
    }
    gw->ends = grown;
    gw->ends[gw->n_ends++] = (struct at_end){copy, m->partition, at_end};
}

static int count_ends(const cg_gateway_t *gw)
{
    int n = 0;
    for (size_t i = 0; i < gw->n_ends; i++)
        n += gw->ends[i].at_end;
    return n;
}

static void handle_message(cg_gateway_t *gw, rd_kafka_message_t *m)
{
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        mark_end(gw, m, 0);
        dispatch(gw, m);
    } else {
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)
            mark_end(gw, m, 1);
        else
            cg_log(CG_LOG_WARN, "consumer.error", "%s", rd_kafka_message_errstr(m));
        rd_kafka_message_destroy(m);
    }
    gw->last_activity_ms = now_ms();
}

/* After the loop: produce what was consumed, commit it (or the open transaction), all within
 * the drain timeout. */
static void drain_and_commit(cg_gateway_t *gw)
{
    note_stop(gw);
    if (!gw->deadline_ms) /* an idle exit */
        gw->deadline_ms = now_ms() + gw->cfg->drain_timeout_ms;
    cg_log(CG_LOG_INFO, "gateway.stopping",
           "draining %zu input message(s) in flight (at most %d ms)",
           cg_delivery_in_flight(gw->delivery), gw->cfg->drain_timeout_ms);
    cg_metrics_gw_stopping(gw->metrics);
    int drained = !gw->fatal && jobs_drain(gw) == 0;
    if (gw->eos) {
        if (drained && !gw->txn_failed && !gw->fatal) {
            txn_commit(gw, NULL);
        } else if (!gw->fatal || !rd_kafka_fatal_error(gw->producer, NULL, 0)) {
            txn_abort(gw, NULL, 0); /* its inputs are consumed again on restart */
            if (!gw->fatal)
                gw->drain_incomplete = 1;
        }
        if (gw->txn_open) /* the commit ran out of time: a restart's init aborts it */
            gw->drain_incomplete = 1;
        return;
    }
    if (!drained && !gw->fatal)
        gw->drain_incomplete = 1;
    flush_producer(gw);
    if (!gw->fatal || gw->fatal == CG_ERR_KAFKA)
        commit_delivered(gw, 1);
}

cg_err_t cg_gateway_run(cg_gateway_t *gw, char *errstr, size_t errstr_size)
{
    const cg_config_t *cfg = gw->cfg;
    rd_kafka_topic_partition_list_t *subs = rd_kafka_topic_partition_list_new((int)cfg->n_inputs);
    for (size_t i = 0; i < cfg->n_inputs; i++)
        rd_kafka_topic_partition_list_add(subs, cfg->inputs[i].topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t err = rd_kafka_subscribe(gw->consumer, subs);
    rd_kafka_topic_partition_list_destroy(subs);
    if (err) {
        snprintf(errstr, errstr_size, "subscribe failed: %s", rd_kafka_err2str(err));
        return CG_ERR_KAFKA;
    }
    if (gw->eos) {
        /* fences a previous instance with our transactional.id and aborts what it left open */
        rd_kafka_error_t *e = txn_retry(gw, rd_kafka_init_transactions);
        if (e) {
            char tid[256];
            snprintf(errstr, errstr_size, "exactly-once: initializing transactions as %s: %s",
                     cg_kafka_transactional_id(cfg, tid, sizeof(tid)), rd_kafka_error_string(e));
            rd_kafka_error_destroy(e);
            rd_kafka_consumer_close(gw->consumer);
            return CG_ERR_KAFKA;
        }
    }
    if (workers_start(gw, errstr, errstr_size)) {
        workers_stop(gw);
        rd_kafka_consumer_close(gw->consumer);
        return CG_ERR_INVALID_ARG;
    }
    cg_log(CG_LOG_INFO, "gateway.started",
           "consuming %zu topic(s) from %s as group %s, %s, %d worker(s)", cfg->n_inputs,
           gw->bootstrap, cfg->group_id, gw->eos ? "exactly-once" : "at-least-once", gw->n_workers);

    int64_t next_commit = now_ms() + cfg->commit_interval_ms;
    gw->last_activity_ms = now_ms();
    while (!gw->stop) {
        char reason[512];
        if (producer_fatal(gw, reason, sizeof(reason))) {
            set_fatal(gw, CG_ERR_KAFKA, reason);
            break;
        }
        if (gw->reload && !jobs_outstanding(gw)) { /* no record of the old specs waits */
            gw->reload = 0;
            reload_mapping(gw);
        }
        if (gw->eos && gw->txn_failed)
            txn_abort(gw, NULL, 1);
        produce_ready(gw, 0);
        /* a transaction commits whole inputs only */
        if (gw->eos && gw->txn_open && !job_partial(gw) &&
            (txn_full(gw) || now_ms() - gw->txn_began_ms >= cfg->commit_interval_ms))
            txn_commit(gw, NULL);
        if (gw->fatal)
            break;
        backpressure(gw);

        int64_t t = now_ms();
        int waiting = gw->stalled_since != 0;
        int can_poll = t >= gw->hold_until_ms && !gw->reload && rings_have_room(gw) &&
                       (!waiting || gw->paused);
        /* wait on the producer when the output side is what holds things up */
        rd_kafka_poll(gw->producer, (waiting || (!can_poll && !gw->threaded)) ? 10 : 0);
        if (can_poll) {
            /* a paused consumer is still polled: rebalances, max.poll.interval.ms */
            int timeout = waiting ? 0 : jobs_outstanding(gw) ? 1 : 100;
            rd_kafka_message_t *m = rd_kafka_consumer_poll(gw->consumer, timeout);
            if (m)
                handle_message(gw, m);
        } else if (!waiting) {
            wait_done(gw, 10);
        }

        t = now_ms();
        if (!gw->eos && t >= next_commit) {
            commit_delivered(gw, 0);
            next_commit = t + cfg->commit_interval_ms;
        }
        if (cg_delivery_in_flight(gw->delivery) > 0 || jobs_outstanding(gw))
            gw->last_activity_ms = t;
        /* idle means: every assigned partition reported its end, nothing is in flight, and
         * nothing came for idle_exit_ms (a slow first fetch is not idleness) */
        if (gw->opts.idle_exit_ms > 0 && gw->n_assigned > 0 && count_ends(gw) >= gw->n_assigned &&
            !gw->stalled_since && t - gw->last_activity_ms >= gw->opts.idle_exit_ms) {
            cg_log(CG_LOG_INFO, "gateway.idle", "nothing to consume for %d ms; stopping",
                   gw->opts.idle_exit_ms);
            break;
        }
    }

    drain_and_commit(gw);
    gw->ran = 1;
    /* leaving the group: prompt with a broker, up to librdkafka's 5 s LeaveGroup timeout
     * without one (config/README.md); said when it is slow, as nothing else is logged then */
    int64_t close_began = now_ms();
    err = rd_kafka_consumer_close(gw->consumer);
    int64_t close_took = now_ms() - close_began;
    if (err)
        cg_log(CG_LOG_WARN, "consumer.close", "%s", rd_kafka_err2str(err));
    else if (close_took >= 1000)
        cg_log(CG_LOG_WARN, "consumer.close",
               "leaving the group took %" PRId64 " ms: no answer from the group coordinator; "
               "the group reassigns this member's partitions after session.timeout.ms",
               close_took);
    workers_stop(gw);
    jobs_discard(gw); /* after a fatal error */
    cg_log(CG_LOG_INFO, "gateway.stopped",
           "consumed %" PRIu64 ", records %" PRIu64 ", dead-lettered %" PRIu64 ", commits %" PRIu64
           ", transactions %" PRIu64 " committed and %" PRIu64 " aborted, waited %" PRIu64
           " and paused %" PRIu64 " time(s)",
           gw->stats.consumed, gw->stats.records_out, gw->stats.dead_lettered, gw->stats.commits,
           gw->stats.transactions_committed, gw->stats.transactions_aborted, gw->stats.stalls,
           gw->stats.pauses);
    if (gw->fatal) {
        snprintf(errstr, errstr_size, "%s", gw->fatal_reason);
        return gw->fatal;
    }
    if (gw->drain_incomplete) {
        snprintf(errstr, errstr_size,
                 "the drain did not finish within delivery.drain_timeout_ms (%d ms): the inputs "
                 "left uncommitted are consumed again on restart",
                 cfg->drain_timeout_ms);
        return CG_ERR_KAFKA_RETRY;
    }
    return CG_OK;
}

void cg_gateway_stop(cg_gateway_t *gw)
{
    gw->stop = 1;
}

void cg_gateway_reload(cg_gateway_t *gw)
{
    gw->reload = 1;
}

const char *cg_gateway_bootstrap(const cg_gateway_t *gw)
{
    return gw->bootstrap;
}

int cg_gateway_metrics_port(const cg_gateway_t *gw)
{
    return cg_metrics_gw_port(gw->metrics);
}

void cg_gateway_get_stats(const cg_gateway_t *gw, cg_gateway_stats_t *out)
{
#define LOAD(f) out->f = __atomic_load_n(&gw->stats.f, __ATOMIC_ACQUIRE)
    LOAD(consumed);
    LOAD(records_out);
    LOAD(dead_lettered);
    LOAD(delivery_errors);
    LOAD(commits);
    LOAD(reloads);
    LOAD(reload_failures);
    LOAD(transactions_committed);
    LOAD(transactions_aborted);
    LOAD(stalls);
    LOAD(pauses);
    LOAD(queue_full);
    LOAD(workers);
    LOAD(assigned);
    for (int i = 0; i < CG_GATEWAY_MAX_WORKERS; i++)
        LOAD(worker_messages[i]);
#undef LOAD
}

cg_err_t cg_gateway_report_topics(cg_gateway_t *gw, int max_per_topic)
{
    const char **topics = calloc(gw->n_ctopics + 2, sizeof(*topics));
    if (!topics)
        return CG_ERR_NOMEM;
    topics[0] = gw->cfg->output_topic;
    for (size_t i = 0; i < gw->n_ctopics; i++)
        topics[i + 1] = gw->ctopics[i].name;
    topics[gw->n_ctopics + 1] = gw->cfg->dead_letter_topic;
    cg_err_t rc = cg_kafka_print_topics(gw->bootstrap, topics, gw->n_ctopics + 2, max_per_topic,
                                        gw->opts.report ? gw->opts.report : stdout);
    free(topics);
    return rc;
}

void cg_gateway_destroy(cg_gateway_t *gw)
{
    if (!gw)
        return;
    cg_metrics_gw_destroy(gw->metrics); /* first: its endpoint reads the producer's queue */
    if (gw->workers)
        workers_stop(gw); /* when run() never did */
    workers_destroy(gw);  /* before the consumer: the rings hold its messages */
    if (gw->out_rkt)
        rd_kafka_topic_destroy(gw->out_rkt);
    if (gw->dlq_rkt)
        rd_kafka_topic_destroy(gw->dlq_rkt);
    for (size_t i = 0; i < gw->n_ctopics; i++) {
        rd_kafka_topic_destroy(gw->ctopics[i].rkt);
        free(gw->ctopics[i].name);
    }
    free(gw->ctopics);
    for (size_t i = 0; i < gw->n_ends; i++)
        free(gw->ends[i].topic);
    free(gw->ends);
    if (gw->consumer)
        rd_kafka_destroy(gw->consumer);
    if (gw->producer) {
        /* run() has drained within its time already; what is left is given up */
        rd_kafka_flush(gw->producer, gw->ran ? 0 : 5000);
        rd_kafka_destroy(gw->producer);
    }
    cg_kafka_embedded_stop(gw->embedded);
    cg_delivery_destroy(gw->delivery);
    cg_mapping_destroy(gw->mapping);
    free(gw->bootstrap);
    if (gw->n_workers) {
        pthread_cond_destroy(&gw->done_cv);
        pthread_mutex_destroy(&gw->mu);
    }
    free(gw);
}
