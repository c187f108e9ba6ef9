/* kafka_sink.c - the Kafka sink: an idempotent producer (transactional for exactly-once). A
 * record goes to the topic its destination names, with its headers; delivery reports go back
 * to the engine. Transactions commit the records together with the source's offsets
 * (consume-transform-produce); resumable calls are retried until done, failed for good, or the
 * drain is out of time. */
#include "kafka_int.h"

#include "cg_log.h"
#include "cg_metrics_gw.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* How long one resumable transactional call may block before the loop looks at stop requests. */
#define CG_TXN_SLICE_MS 5000

typedef struct kafka_topic {
    const char *dest; /* the engine's pointer (stable for the run) */
    rd_kafka_topic_t *rkt;
    int ensured; /* handed to the ensure thread at its first record */
} kafka_topic_t;

typedef struct kafka_sink {
    cg_engine_t *engine;
    const cg_config_t *cfg;
    cg_metrics_gw_t *metrics;
    int eos;
    char *bootstrap;
    rd_kafka_t *producer;
    kafka_topic_t *topics; /* a handful: output, dead letters, cohorts x tables */
    size_t n_topics;
    rd_kafka_topic_t *dlq_rkt;
    rd_kafka_topic_t *quality_rkt; /* its delivery reports count as quality records */
    int txn_offsets_sent; /* the open transaction's offsets are sent: only the commit is left */
    cg_kafka_embedded_t *embedded; /* its own, when the source is not Kafka (listen's demo) */
    cg_kafka_topics_t *ready;      /* destinations made ready before their first record */
    /* Topics are made ready (created, leaders waited for: up to topics.wait_ms) on a thread of
     * their own, so that produce never blocks: the MLLP listener calls it from its event loop,
     * which must go on serving connections while the broker is away. Records produced before
     * a topic is ready wait in the producer, as they would for a leader. */
    pthread_t ensure_thr;
    int ensure_started;
    pthread_mutex_t ensure_mu;
    pthread_cond_t ensure_cv;
    const char **ensure_q; /* destinations to make ready, in order (engine-stable pointers) */
    size_t ensure_n, ensure_cap;
    int ensure_quit;
    /* wake_fd: a pipe librdkafka writes a byte to when delivery reports arrive on an empty
     * main queue; made at the first ask (a source that waits on fds), else unused */
    rd_kafka_queue_t *wake_q;
    int wake[2];
} kafka_sink_t;

static int is_fenced(rd_kafka_resp_err_t err)
{
    return err == RD_KAFKA_RESP_ERR__FENCED || err == RD_KAFKA_RESP_ERR_PRODUCER_FENCED ||
           err == RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH;
}

/* The producer's fatal error, if it has one, with a hint when another instance fenced it. */
static int producer_fatal(kafka_sink_t *k, char *reason, size_t size)
{
    char text[256];
    rd_kafka_resp_err_t err = rd_kafka_fatal_error(k->producer, text, sizeof(text));
    if (!err)
        return 0;
    char tid[256] = "";
    if (k->eos)
        cg_kafka_transactional_id(k->cfg, tid, sizeof(tid));
    snprintf(reason, size, "fatal producer error: %s: %s%s%s%s", rd_kafka_err2name(err), text,
             is_fenced(err) ? " (another instance uses transactional.id " : "",
             is_fenced(err) ? tid : "",
             is_fenced(err) ? ": give each instance its own delivery.transactional_id)" : "");
    return 1;
}

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    kafka_sink_t *k = opaque;
    int dead = m->rkt == k->dlq_rkt;
    if (m->err) {
        /* purged by an abort: the transaction's inputs are rewound and consumed again */
        if (k->eos && (m->err == RD_KAFKA_RESP_ERR__PURGE_QUEUE ||
                       m->err == RD_KAFKA_RESP_ERR__PURGE_INFLIGHT))
            return;
        char reason[512];
        snprintf(reason, sizeof(reason), "delivery to %s failed: %s", rd_kafka_topic_name(m->rkt),
                 rd_kafka_err2str(m->err));
        int abortable = k->eos && !rd_kafka_fatal_error(k->producer, NULL, 0);
        if (k->eos && !abortable)
            producer_fatal(k, reason, sizeof(reason));
        cg_engine_record_failed(k->engine, m->_private, CG_ERR_KAFKA, reason, abortable);
        return;
    }
    /* the metrics' labels, from where the engine's records have them (produce.c: the three
     * cg.source.* first, then the record's own in order) */
    char v1[CG_METRICS_MAX_VALUE + 1], v2[CG_METRICS_MAX_VALUE + 1];
    if (dead)
        cg_metrics_gw_dead_letter(k->metrics,
                                  cg_kafka_header(m, "cg.error.stage", 3, v1, sizeof(v1)),
                                  cg_kafka_header(m, "cg.error.code", 4, v2, sizeof(v2)));
    else if (m->rkt == k->quality_rkt)
        cg_metrics_gw_quality(k->metrics, cg_kafka_header(m, "cg.spec", 3, v1, sizeof(v1)),
                              cg_kafka_header(m, "cg.quality.reason", 6, v2, sizeof(v2)));
    else
        cg_metrics_gw_row_out(k->metrics, rd_kafka_topic_name(m->rkt),
                              cg_kafka_header(m, "cg.spec", 3, v1, sizeof(v1)));
    cg_engine_delivered(k->engine, m->_private, dead);
}

static int sink_stopping(void *opaque)
{
    kafka_sink_t *k = opaque;
    pthread_mutex_lock(&k->ensure_mu);
    int quit = k->ensure_quit;
    pthread_mutex_unlock(&k->ensure_mu);
    return quit || cg_engine_stopping(k->engine);
}

static void *ensure_main(void *opaque)
{
    kafka_sink_t *k = opaque;
    pthread_mutex_lock(&k->ensure_mu);
    for (;;) {
        while (!k->ensure_n && !k->ensure_quit)
            pthread_cond_wait(&k->ensure_cv, &k->ensure_mu);
        if (k->ensure_quit)
            break;
        const char *dest = k->ensure_q[0];
        memmove(k->ensure_q, k->ensure_q + 1, --k->ensure_n * sizeof(*k->ensure_q));
        pthread_mutex_unlock(&k->ensure_mu);
        cg_kafka_topics_ensure(k->ready, dest, sink_stopping, k);
        pthread_mutex_lock(&k->ensure_mu);
    }
    pthread_mutex_unlock(&k->ensure_mu);
    return NULL;
}

/* Hands dest to the ensure thread (started at the first). Without memory or a thread the topic
 * is simply not waited for: the producer still creates nothing and holds its records. */
static void ensure_later(kafka_sink_t *k, const char *dest)
{
    pthread_mutex_lock(&k->ensure_mu);
    if (k->ensure_n == k->ensure_cap) {
        size_t cap = k->ensure_cap ? 2 * k->ensure_cap : 8;
        const char **grown = realloc(k->ensure_q, cap * sizeof(*grown));
        if (!grown) {
            pthread_mutex_unlock(&k->ensure_mu);
            cg_log(CG_LOG_WARN, "topic.not_ready", "%s: out of memory to make it ready", dest);
            return;
        }
        k->ensure_q = grown;
        k->ensure_cap = cap;
    }
    k->ensure_q[k->ensure_n++] = dest;
    if (!k->ensure_started && pthread_create(&k->ensure_thr, NULL, ensure_main, k) == 0)
        k->ensure_started = 1;
    pthread_cond_signal(&k->ensure_cv);
    pthread_mutex_unlock(&k->ensure_mu);
}

/* Stops the ensure thread: a wait for a topic ends at its next look at the stop flag. */
static void ensure_stop(kafka_sink_t *k)
{
    pthread_mutex_lock(&k->ensure_mu);
    k->ensure_quit = 1;
    pthread_cond_signal(&k->ensure_cv);
    pthread_mutex_unlock(&k->ensure_mu);
    if (k->ensure_started)
        pthread_join(k->ensure_thr, NULL);
    k->ensure_started = 0;
}

/* A handle for a destination not seen before. */
static int add_topic(kafka_sink_t *k, const char *dest, int dead)
{
    void *grown = realloc(k->topics, (k->n_topics + 1) * sizeof(*k->topics));
    if (!grown) {
        cg_engine_fatal(k->engine, CG_ERR_NOMEM, "out of memory for a topic handle");
        return 0;
    }
    k->topics = grown;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(k->producer, dest, NULL);
    if (!rkt) {
        cg_engine_fatal(k->engine, CG_ERR_KAFKA, "cannot create a topic handle");
        return 0;
    }
    k->topics[k->n_topics++] = (kafka_topic_t){dest, rkt, 0};
    if (dead && !k->dlq_rkt)
        k->dlq_rkt = rkt;
    return 1;
}

/* The topic handle of a destination: by the engine's pointer, so no name is compared per
 * record once the topic is known. */
static rd_kafka_topic_t *topic_of(kafka_sink_t *k, const char *dest, int dead, int for_record)
{
    size_t i = 0;
    while (i < k->n_topics && k->topics[i].dest != dest)
        i++;
    if (i == k->n_topics && !add_topic(k, dest, dead))
        return NULL;
    /* made ready once, at its first record rather than at start, so that a broker that is
     * down at start does not hold the start up; in the background, so that produce never
     * blocks */
    if (for_record && !k->topics[i].ensured) {
        k->topics[i].ensured = 1;
        ensure_later(k, dest);
    }
    return k->topics[i].rkt;
}

static void ksink_destroy(void *ctx)
{
    kafka_sink_t *k = ctx;
    if (!k)
        return;
    ensure_stop(k);
    free(k->ensure_q);
    for (size_t i = 0; i < k->n_topics; i++)
        rd_kafka_topic_destroy(k->topics[i].rkt);
    free(k->topics);
    if (k->wake_q) { /* no more writes to the pipe before it is closed */
        rd_kafka_queue_io_event_enable(k->wake_q, -1, NULL, 0);
        rd_kafka_queue_destroy(k->wake_q);
    }
    if (k->producer) {
        rd_kafka_flush(k->producer, 0); /* the engine drained already: what is left is lost */
        rd_kafka_destroy(k->producer);
    }
    cg_kafka_topics_destroy(k->ready);
    pthread_cond_destroy(&k->ensure_cv);
    pthread_mutex_destroy(&k->ensure_mu);
    cg_kafka_embedded_stop(k->embedded);
    for (int i = 0; i < 2; i++)
        if (k->wake[i] >= 0)
            close(k->wake[i]);
    free(k->bootstrap);
    free(k);
}

static void *ksink_init(const cg_plugin_env_t *env, char *errstr, size_t errstr_size)
{
    kafka_sink_t *k = calloc(1, sizeof(*k));
    if (!k) {
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    const cg_config_t *cfg = env->cfg;
    k->engine = env->engine;
    k->cfg = cfg;
    k->metrics = env->metrics;
    k->eos = env->exactly_once;
    k->wake[0] = k->wake[1] = -1;
    pthread_mutex_init(&k->ensure_mu, NULL);
    pthread_cond_init(&k->ensure_cv, NULL);
    /* the embedded broker is the Kafka source's, and the sink writes to the cluster it reads;
     * with another source (MLLP) the sink starts one of its own */
    const cg_kafka_conf_t *kc = env->conf ? env->conf : cg_kafka_conf(cfg);
    const char *bootstrap = kc->embedded_enabled ? cg_kafka_source_bootstrap(env->source)
                                                 : cg_kafka_get(kc, "bootstrap.servers");
    if (!bootstrap && kc->embedded_enabled) {
        if (!(k->embedded = cg_kafka_embedded_start(cfg, errstr, errstr_size)))
            goto fail;
        bootstrap = cg_kafka_embedded_bootstrap(k->embedded);
    }
    if (!(k->bootstrap = strdup(bootstrap))) {
        snprintf(errstr, errstr_size, "out of memory");
        goto fail;
    }
    k->producer = cg_kafka_producer_new(cfg, k->bootstrap, on_delivery, k, errstr, errstr_size);
    if (!k->producer)
        goto fail;
    if (!(k->ready = cg_kafka_topics_new(cfg, k->bootstrap))) {
        snprintf(errstr, errstr_size, "out of memory");
        goto fail;
    }
    /* the dead-letter topic is known up front: its delivery reports say so */
    if (!topic_of(k, cfg->output_topic, 0, 0) || !topic_of(k, cfg->dead_letter_topic, 1, 0) ||
        !(k->quality_rkt = topic_of(k, cfg->quality_topic, 0, 0))) {
        snprintf(errstr, errstr_size, "out of memory");
        goto fail;
    }
    return k;
fail:
    ksink_destroy(k);
    return NULL;
}

static cg_sink_result_t ksink_produce(void *ctx, const cg_sink_record_t *rec)
{
    kafka_sink_t *k = ctx;
    rd_kafka_topic_t *rkt = topic_of(k, rec->dest, rec->dead_letter, 1);
    if (!rkt)
        return CG_SINK_FAILED;
    rd_kafka_headers_t *h = rd_kafka_headers_new(rec->n_headers / 2);
    for (size_t i = 0; i + 1 < rec->n_headers; i += 2)
        rd_kafka_header_add(h, rec->headers[i], -1, rec->headers[i + 1], -1);
    rd_kafka_resp_err_t err =
        rd_kafka_producev(k->producer, RD_KAFKA_V_RKT(rkt), RD_KAFKA_V_KEY(rec->key, rec->key_len),
                          RD_KAFKA_V_VALUE((void *)rec->value, rec->value_len),
                          RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(h),
                          RD_KAFKA_V_OPAQUE(rec->token), RD_KAFKA_V_END);
    if (!err)
        return CG_SINK_OK;
    rd_kafka_headers_destroy(h);
    if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL)
        return CG_SINK_FULL;
    char reason[512];
    snprintf(reason, sizeof(reason), "produce to %s failed: %s", rd_kafka_topic_name(rkt),
             rd_kafka_err2str(err));
    if (k->eos && err == RD_KAFKA_RESP_ERR__STATE && !rd_kafka_fatal_error(k->producer, NULL, 0)) {
        /* the transaction is in an abortable error state */
        cg_engine_txn_failed(k->engine, reason);
    } else {
        producer_fatal(k, reason, sizeof(reason));
        cg_engine_fatal(k->engine, CG_ERR_KAFKA, reason);
    }
    return CG_SINK_FAILED;
}

static void ksink_poll(void *ctx, int timeout_ms)
{
    rd_kafka_poll(((kafka_sink_t *)ctx)->producer, timeout_ms);
}

static int ksink_wake_fd(void *ctx)
{
    kafka_sink_t *k = ctx;
    if (k->wake_q)
        return k->wake[0];
    if (pipe2(k->wake, O_NONBLOCK | O_CLOEXEC)) {
        k->wake[0] = k->wake[1] = -1;
        return -1; /* the engine polls on a timer instead */
    }
    k->wake_q = rd_kafka_queue_get_main(k->producer);
    rd_kafka_queue_io_event_enable(k->wake_q, k->wake[1], "r", 1);
    return k->wake[0];
}

static int ksink_flush(void *ctx, int timeout_ms)
{
    return rd_kafka_flush(((kafka_sink_t *)ctx)->producer, timeout_ms) !=
           RD_KAFKA_RESP_ERR_NO_ERROR;
}

static int ksink_queue_len(void *ctx)
{
    return rd_kafka_outq_len(((kafka_sink_t *)ctx)->producer);
}

static int ksink_fatal(void *ctx, char *reason, size_t size)
{
    kafka_sink_t *k = ctx;
    if (!reason)
        return rd_kafka_fatal_error(k->producer, NULL, 0) != RD_KAFKA_RESP_ERR_NO_ERROR;
    return producer_fatal(k, reason, size);
}

static cg_err_t ksink_report(void *ctx, const char *const *dests, size_t n, int max_per_dest,
                             FILE *out)
{
    return cg_kafka_print_topics(((kafka_sink_t *)ctx)->bootstrap, dests, n, max_per_dest, out);
}

/* ---- exactly-once ---- */

/* Runs a resumable transactional call (init, commit, abort) again after retriable errors until
 * it is done, fails for good, or the drain is out of time. Returns NULL or the error. */
static rd_kafka_error_t *txn_retry(kafka_sink_t *k, rd_kafka_error_t *(*op)(rd_kafka_t *, int))
{
    for (;;) {
        int slice =
            cg_engine_stopping(k->engine) ? cg_engine_remaining_ms(k->engine) : CG_TXN_SLICE_MS;
        rd_kafka_error_t *e = op(k->producer, slice > 0 ? slice : 1);
        if (!e || !rd_kafka_error_is_retriable(e) || rd_kafka_error_is_fatal(e) ||
            rd_kafka_error_txn_requires_abort(e) || cg_engine_out_of_time(k->engine))
            return e;
        cg_log(CG_LOG_INFO, "transaction.retry", "%s", rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
        rd_kafka_poll(k->producer, 100); /* no busy loop on an error that comes back at once */
    }
}

/* A transactional call failed and aborting will not help: stop, unless only the drain ran out
 * of time. Destroys e. */
static cg_txn_result_t txn_give_up(kafka_sink_t *k, const char *what, rd_kafka_error_t *e)
{
    char reason[512];
    cg_txn_result_t r = CG_TXN_FATAL;
    if (rd_kafka_error_is_retriable(e) && !rd_kafka_error_is_fatal(e)) {
        cg_log(CG_LOG_ERROR, "transaction.timeout",
               "%s not done within delivery.drain_timeout_ms: %s; the transaction's inputs are "
               "consumed again on restart",
               what, rd_kafka_error_string(e));
        r = CG_TXN_TIMEOUT;
    } else if (!producer_fatal(k, reason, sizeof(reason))) {
        snprintf(reason, sizeof(reason), "exactly-once: %s failed: %s: %s", what,
                 rd_kafka_error_name(e), rd_kafka_error_string(e));
        cg_engine_fatal(k->engine, CG_ERR_KAFKA, reason);
    } else {
        cg_engine_fatal(k->engine, CG_ERR_KAFKA, reason);
    }
    rd_kafka_error_destroy(e);
    return r;
}

/* Fences a previous instance with our transactional.id and aborts what it left open. */
static cg_txn_result_t ksink_txn_init(void *ctx, char *errstr, size_t errstr_size)
{
    kafka_sink_t *k = ctx;
    rd_kafka_error_t *e = txn_retry(k, rd_kafka_init_transactions);
    if (!e)
        return CG_TXN_OK;
    char tid[256];
    snprintf(errstr, errstr_size, "exactly-once: initializing transactions as %s: %s",
             cg_kafka_transactional_id(k->cfg, tid, sizeof(tid)), rd_kafka_error_string(e));
    rd_kafka_error_destroy(e);
    return CG_TXN_FATAL;
}

static cg_txn_result_t ksink_txn_begin(void *ctx)
{
    kafka_sink_t *k = ctx;
    rd_kafka_error_t *e = rd_kafka_begin_transaction(k->producer);
    if (e)
        return txn_give_up(k, "begin transaction", e);
    k->txn_offsets_sent = 0;
    return CG_TXN_OK;
}

static cg_txn_result_t ksink_txn_commit(void *ctx, const cg_source_pos_t *pos, size_t n,
                                        const cg_source_t *source)
{
    kafka_sink_t *k = ctx;
    rd_kafka_error_t *e = NULL;
    const char *what = "commit transaction";
    if (n && !k->txn_offsets_sent) {
        what = "send offsets to transaction";
        rd_kafka_topic_partition_list_t *offsets = rd_kafka_topic_partition_list_new((int)n);
        for (size_t i = 0; i < n; i++)
            rd_kafka_topic_partition_list_add(offsets, pos[i].topic, pos[i].partition)->offset =
                pos[i].offset;
        rd_kafka_consumer_group_metadata_t *md = source->p->txn_context_new(source->ctx);
        for (;;) { /* retried with the same offsets, as librdkafka asks */
            int slice =
                cg_engine_stopping(k->engine) ? cg_engine_remaining_ms(k->engine) : CG_TXN_SLICE_MS;
            e = rd_kafka_send_offsets_to_transaction(k->producer, offsets, md,
                                                     slice > 0 ? slice : 1);
            if (!e || !rd_kafka_error_is_retriable(e) || rd_kafka_error_is_fatal(e) ||
                rd_kafka_error_txn_requires_abort(e) || cg_engine_out_of_time(k->engine))
                break;
            rd_kafka_error_destroy(e);
            rd_kafka_poll(k->producer, 100);
        }
        source->p->txn_context_free(md);
        rd_kafka_topic_partition_list_destroy(offsets);
        k->txn_offsets_sent = !e; /* a commit that times out is resumed, not sent again */
    }
    if (!e) {
        what = "commit transaction";
        e = txn_retry(k, rd_kafka_commit_transaction);
    }
    if (!e)
        return CG_TXN_OK;
    if (rd_kafka_error_txn_requires_abort(e)) {
        cg_log(CG_LOG_WARN, "transaction.failed", "%s: %s (the transaction is aborted)", what,
               rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
        return CG_TXN_ABORT;
    }
    return txn_give_up(k, what, e);
}

static cg_txn_result_t ksink_txn_abort(void *ctx)
{
    kafka_sink_t *k = ctx;
    rd_kafka_error_t *e = txn_retry(k, rd_kafka_abort_transaction);
    if (e)
        return txn_give_up(k, "abort transaction", e);
    if (rd_kafka_outq_len(k->producer) > 0) /* the purged records' reports */
        rd_kafka_flush(k->producer, cg_engine_remaining_ms(k->engine));
    return CG_TXN_OK;
}

const cg_sink_plugin_t cg_kafka_sink_plugin = {
    .name = "kafka",
    .desc = "an idempotent Kafka producer; transactional for exactly-once",
    .config_map = cg_kafka_config_map,
    .conf_size = sizeof(cg_kafka_conf_t),
    .check = cg_kafka_sink_check,
    .validate = cg_kafka_validate,
    .init = ksink_init,
    .produce = ksink_produce,
    .poll = ksink_poll,
    .flush = ksink_flush,
    .queue_len = ksink_queue_len,
    .fatal = ksink_fatal,
    .report = ksink_report,
    .destroy = ksink_destroy,
    .txn_init = ksink_txn_init,
    .txn_begin = ksink_txn_begin,
    .txn_commit = ksink_txn_commit,
    .txn_abort = ksink_txn_abort,
    .wake_fd = ksink_wake_fd,
};
