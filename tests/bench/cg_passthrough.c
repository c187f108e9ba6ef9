/* cg_passthrough.c - the transport ceiling of the gateway benchmark (bench_gateway.sh): the
 * gateway's Kafka traffic without its decoding and mapping.
 *
 *   cg_passthrough plan -b HOST:PORT -t INPUT -x PREFIX -o PLAN
 *       Reads (read_committed) every topic whose name starts with PREFIX, except INPUT: the
 *       outputs of a gateway run over INPUT. Each record names its input by its
 *       cg.source.partition and cg.source.offset headers; PLAN gets, per input, the records it
 *       caused: output topic (its name without PREFIX), key, value size and the headers other
 *       than cg.source.*. Prints `inputs=N records=M topics=T keys=K header_sets=H`.
 *   cg_passthrough run -c CONFIG -p PLAN -x PREFIX
 *       Consumes CONFIG's input topic and produces, for each input, the records PLAN lists for
 *       it to PREFIX<topic>: the same keys, headers and value sizes (the values are filler) as
 *       the gateway's records, so the same bytes reach the same partitions. Stops on SIGTERM or
 *       SIGINT once what it consumed is delivered and committed.
 *
 * Why a plan taken from the gateway's own output rather than computed: the records per input
 * (how many, to which cohort topics, how large) are then exactly what the gateway produced for
 * those inputs, with nothing to keep in sync with the mapping. PLAN is loaded before the
 * consumer starts, so the timed part does no file or mapping work at all.
 *
 * What is the same as `cohortgate run` on CONFIG, on purpose, so that the difference in
 * throughput is the gateway's decoding, mapping and bookkeeping:
 *   - the clients: built by the gateway's own cg_kafka_producer_new / cg_kafka_consumer_new from
 *     the same config (idempotent producer, acks=all, linger.ms, read_committed, manual commits,
 *     statistics every 5 s, transactional.id under exactly-once, any kafka.* settings);
 *   - one thread polling the consumer (rd_kafka_consumer_poll, one message at a time) and the
 *     producer, with the same poll timeouts;
 *   - per record, headers built the way the gateway builds them (cg.source.topic, .partition,
 *     .offset, then the rest) and rd_kafka_producev with RD_KAFKA_MSG_F_COPY;
 *   - at-least-once: an input's offset is committed only once every record of it, and of every
 *     earlier input of its partition, is delivered; commits every delivery.commit_interval_ms,
 *     asynchronously, and synchronously at the end;
 *   - exactly-once: a transaction from the first record on, committed once it holds
 *     delivery.transaction_max_messages inputs or is delivery.commit_interval_ms old, and only
 *     between inputs: flush, send_offsets_to_transaction (one past each partition's last
 *     input), commit_transaction;
 *   - backpressure: no consuming while delivery.max_in_flight inputs are undelivered or the
 *     producer queue is full, until the inputs are down to three quarters of that and the queue
 *     to half of what it held; the assignment is paused after delivery.pause_after_ms of that.
 * What it leaves out: decoding, mapping, the worker rings, the metrics endpoint, dead letters
 * (a dead letter of the gateway is just one more record of the plan here), and recovery: any
 * delivery, commit or transaction error ends it with exit status 1, as a benchmark on a healthy
 * broker must not meet one. One input topic only, as in the benchmark.
 */
#include "passthrough.h"

#include "cg_config.h"
#include "cg_kafka.h"
#include "cg_log.h"

#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <librdkafka/rdkafka.h>

static void usage(void)
{
    fprintf(stderr, "usage: cg_passthrough plan -b BOOT -t INPUT_TOPIC -x OUTPUT_PREFIX -o PLAN\n"
                    "       cg_passthrough run -c CONFIG -p PLAN -x OUTPUT_PREFIX\n");
    exit(2);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- the passthrough ---- */

/* One consumed input: complete once sealed (every record handed to the producer) with no record
 * undelivered. */
typedef struct slot {
    int64_t offset;
    int32_t partition;
    int32_t undelivered;
    int32_t sealed;
} slot_t;

/* Per input partition: a ring of the inputs consumed and not yet popped, in offset order. An
 * input is popped once it and every one before it is complete. */
typedef struct track {
    slot_t *ring;
    uint64_t head, tail;
    int64_t done_next;   /* one past the last popped input: what at-least-once commits */
    int64_t sealed_next; /* one past the last sealed input: what a transaction commits */
    int64_t committed;   /* the last offset the broker acknowledged (-1: none yet) */
} track_t;

typedef struct pt {
    const cg_config_t *cfg;
    plan_t plan;
    rd_kafka_t *consumer, *producer;
    rd_kafka_topic_t **out; /* per plan topic */
    char *filler;
    track_t *tracks;
    int n_tracks;
    uint64_t ring_mask;
    size_t in_flight; /* inputs consumed and not complete, as the gateway counts them */
    /* the input being produced when the producer's queue filled up */
    rd_kafka_message_t *cur;
    slot_t *cur_slot;
    uint32_t cur_next, cur_end;
    int blocked;
    int64_t stalled_since;
    int paused, outq_resume;
    /* exactly-once */
    int eos, txn_open;
    uint64_t txn_msgs;
    int64_t txn_began;
    /* counts */
    uint64_t consumed, records, delivered, commits, txns, not_in_plan;
    int failed;
} pt_t;

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

static void fail(pt_t *pt, const char *what, const char *why)
{
    if (!pt->failed)
        cg_log(CG_LOG_ERROR, "passthrough.failed", "%s: %s", what, why);
    pt->failed = 1;
    stop = 1;
}

static track_t *track_of(pt_t *pt, int32_t partition)
{
    if (partition >= pt->n_tracks) {
        pt->tracks = pt_xrealloc(pt->tracks, (size_t)(partition + 1) * sizeof(*pt->tracks));
        for (int i = pt->n_tracks; i <= partition; i++) {
            pt->tracks[i] = (track_t){.done_next = -1, .sealed_next = -1, .committed = -1};
            pt->tracks[i].ring = pt_xrealloc(NULL, (pt->ring_mask + 1) * sizeof(slot_t));
        }
        pt->n_tracks = partition + 1;
    }
    return &pt->tracks[partition];
}

static int rings_have_room(const pt_t *pt)
{
    for (int i = 0; i < pt->n_tracks; i++)
        if (pt->tracks[i].tail - pt->tracks[i].head > pt->ring_mask)
            return 0;
    return 1;
}

static void complete(pt_t *pt, track_t *t)
{
    pt->in_flight--;
    while (t->head < t->tail) {
        const slot_t *s = &t->ring[t->head & pt->ring_mask];
        if (!s->sealed || s->undelivered)
            break;
        t->done_next = s->offset + 1;
        t->head++;
    }
}

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    pt_t *pt = opaque;
    if (m->err) {
        fail(pt, "delivery", rd_kafka_err2str(m->err));
        return;
    }
    slot_t *s = m->_private;
    pt->delivered++;
    if (--s->undelivered == 0 && s->sealed)
        complete(pt, &pt->tracks[s->partition]);
}

static void on_commit(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                      rd_kafka_topic_partition_list_t *offsets, void *opaque)
{
    (void)rk;
    pt_t *pt = opaque;
    if (err == RD_KAFKA_RESP_ERR__NO_OFFSET)
        return;
    if (err) { /* as the gateway: the next interval commits again */
        cg_log(CG_LOG_WARN, "offsets.commit_failed", "%s (will retry)", rd_kafka_err2str(err));
        return;
    }
    pt->commits++;
    for (int i = 0; offsets && i < offsets->cnt; i++) {
        const rd_kafka_topic_partition_t *p = &offsets->elems[i];
        if (!p->err && p->offset >= 0 && p->partition < pt->n_tracks)
            pt->tracks[p->partition].committed = p->offset;
    }
}

/* the gateway feeds its metrics from these; librdkafka's cost of making them is the same */
static int on_stats(rd_kafka_t *rk, char *json, size_t json_len, void *opaque)
{
    (void)rk;
    (void)json;
    (void)json_len;
    (void)opaque;
    return 0;
}

/* at-least-once: each partition's delivered prefix, past what the broker acknowledged */
static void commit_delivered(pt_t *pt, int sync)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(pt->n_tracks);
    for (int p = 0; p < pt->n_tracks; p++)
        if (pt->tracks[p].done_next > pt->tracks[p].committed)
            rd_kafka_topic_partition_list_add(l, cg_kafka_conf(pt->cfg)->inputs[0].topic, p)
                ->offset = pt->tracks[p].done_next;
    if (l->cnt) {
        rd_kafka_resp_err_t err = rd_kafka_commit(pt->consumer, l, !sync);
        if (err && sync)
            fail(pt, "final commit", rd_kafka_err2str(err));
        else if (err)
            cg_log(CG_LOG_WARN, "offsets.commit_failed", "%s", rd_kafka_err2str(err));
        if (sync && !err) {
            pt->commits++;
            for (int i = 0; i < l->cnt; i++)
                pt->tracks[l->elems[i].partition].committed = l->elems[i].offset;
        }
    }
    rd_kafka_topic_partition_list_destroy(l);
}

/* Retries a transactional call after retriable errors; any other error ends the run. */
static int txn_call(pt_t *pt, const char *what, rd_kafka_error_t *(*op)(rd_kafka_t *, int))
{
    for (;;) {
        rd_kafka_error_t *e = op(pt->producer, 30000);
        if (!e)
            return 0;
        int again = rd_kafka_error_is_retriable(e) && !rd_kafka_error_is_fatal(e);
        if (!again)
            fail(pt, what, rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
        if (!again)
            return -1;
    }
}

static int txn_begin(pt_t *pt)
{
    if (pt->txn_open)
        return 0;
    rd_kafka_error_t *e = rd_kafka_begin_transaction(pt->producer);
    if (e) {
        fail(pt, "begin transaction", rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
        return -1;
    }
    pt->txn_open = 1;
    pt->txn_msgs = 0;
    pt->txn_began = now_ms();
    return 0;
}

/* As the gateway: deliver first, then the inputs' offsets, then commit. */
static void txn_commit(pt_t *pt)
{
    if (!pt->txn_open || pt->failed)
        return;
    while (rd_kafka_flush(pt->producer, 5000))
        if (pt->failed)
            return;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(pt->n_tracks);
    for (int p = 0; p < pt->n_tracks; p++)
        if (pt->tracks[p].sealed_next > pt->tracks[p].committed)
            rd_kafka_topic_partition_list_add(l, cg_kafka_conf(pt->cfg)->inputs[0].topic, p)
                ->offset = pt->tracks[p].sealed_next;
    if (l->cnt) {
        rd_kafka_consumer_group_metadata_t *md = rd_kafka_consumer_group_metadata(pt->consumer);
        for (;;) {
            rd_kafka_error_t *e = rd_kafka_send_offsets_to_transaction(pt->producer, l, md, 30000);
            if (!e)
                break;
            int again = rd_kafka_error_is_retriable(e) && !rd_kafka_error_is_fatal(e);
            if (!again)
                fail(pt, "send offsets to transaction", rd_kafka_error_string(e));
            rd_kafka_error_destroy(e);
            if (!again)
                break;
        }
        rd_kafka_consumer_group_metadata_destroy(md);
    }
    if (!pt->failed && !txn_call(pt, "commit transaction", rd_kafka_commit_transaction)) {
        for (int i = 0; i < l->cnt; i++)
            pt->tracks[l->elems[i].partition].committed = l->elems[i].offset;
        pt->txn_open = 0;
        pt->txn_msgs = 0;
        pt->txns++;
        if (l->cnt)
            pt->commits++;
    }
    rd_kafka_topic_partition_list_destroy(l);
}

/* Produces the current input's records from where it stopped. 1: all handed over (the input
 * is sealed); 0: the producer's queue is full; -1: failed. */
static int produce_cur(pt_t *pt)
{
    const rd_kafka_message_t *in = pt->cur;
    slot_t *s = pt->cur_slot;
    const plan_t *pl = &pt->plan;
    if (pt->eos && txn_begin(pt))
        return -1;
    for (; pt->cur_next < pt->cur_end; pt->cur_next++) {
        const rec_t *r = &pl->recs[pt->cur_next];
        const hdr_t *hs = pl->hdrs[r->hdrs];
        size_t nh = pl->n_hdr[r->hdrs];
        /* built per record, as the gateway's produce_one does */
        rd_kafka_headers_t *h = rd_kafka_headers_new(nh + 3);
        char part[16], off[24];
        snprintf(part, sizeof(part), "%" PRId32, in->partition);
        snprintf(off, sizeof(off), "%" PRId64, in->offset);
        rd_kafka_header_add(h, "cg.source.topic", -1, rd_kafka_topic_name(in->rkt), -1);
        rd_kafka_header_add(h, "cg.source.partition", -1, part, -1);
        rd_kafka_header_add(h, "cg.source.offset", -1, off, -1);
        for (size_t i = 0; i < nh; i++)
            rd_kafka_header_add(h, hs[i].name, -1, hs[i].value, hs[i].len < 0 ? 0 : hs[i].len);
        s->undelivered++;
        rd_kafka_resp_err_t err = rd_kafka_producev(
            pt->producer, RD_KAFKA_V_RKT(pt->out[r->topic]),
            RD_KAFKA_V_KEY(pl->keys[r->key], pl->key_len[r->key]),
            RD_KAFKA_V_VALUE(pt->filler, r->val_len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_OPAQUE(s), RD_KAFKA_V_END);
        if (err) {
            rd_kafka_headers_destroy(h);
            s->undelivered--;
            if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL)
                return 0;
            fail(pt, "produce", rd_kafka_err2str(err));
            return -1;
        }
        pt->records++;
    }
    track_t *t = &pt->tracks[s->partition];
    s->sealed = 1;
    t->sealed_next = s->offset + 1;
    if (pt->eos)
        pt->txn_msgs++;
    if (!s->undelivered)
        complete(pt, t);
    rd_kafka_message_destroy(pt->cur);
    pt->cur = NULL;
    return 1;
}

static void handle_message(pt_t *pt, rd_kafka_message_t *m)
{
    if (m->err) {
        if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
            cg_log(CG_LOG_WARN, "consumer.error", "%s", rd_kafka_message_errstr(m));
        rd_kafka_message_destroy(m);
        return;
    }
    pt->consumed++;
    track_t *t = track_of(pt, m->partition);
    slot_t *s = &t->ring[t->tail++ & pt->ring_mask];
    *s = (slot_t){.offset = m->offset, .partition = m->partition};
    pt->in_flight++;
    const plan_t *pl = &pt->plan;
    pt->cur = m;
    pt->cur_slot = s;
    pt->cur_next = pt->cur_end = 0;
    if (m->partition < pl->n_parts && m->offset < pl->parts[m->partition].n_off) {
        pt->cur_next = pl->parts[m->partition].first[m->offset];
        pt->cur_end = pl->parts[m->partition].first[m->offset + 1];
    } else {
        pt->not_in_plan++;
    }
    pt->blocked = produce_cur(pt) == 0;
}

static void set_paused(pt_t *pt, int on)
{
    rd_kafka_topic_partition_list_t *parts = NULL;
    if (!rd_kafka_assignment(pt->consumer, &parts) && parts) {
        if (parts->cnt && on)
            rd_kafka_pause_partitions(pt->consumer, parts);
        else if (parts->cnt)
            rd_kafka_resume_partitions(pt->consumer, parts);
        rd_kafka_topic_partition_list_destroy(parts);
    }
    pt->paused = on;
}

/* The gateway's backpressure rule (pipeline.c), with the same settings. */
static void backpressure(pt_t *pt)
{
    size_t max = (size_t)pt->cfg->max_in_flight;
    int64_t t = now_ms();
    if (!pt->stalled_since) {
        if (pt->blocked || pt->in_flight >= max) {
            pt->stalled_since = t;
            pt->outq_resume = rd_kafka_outq_len(pt->producer) / 2;
        }
        return;
    }
    if (!pt->blocked && pt->in_flight <= max - max / 4 &&
        rd_kafka_outq_len(pt->producer) <= pt->outq_resume) {
        if (pt->paused)
            set_paused(pt, 0);
        pt->stalled_since = 0;
    } else if (!pt->paused && t - pt->stalled_since >= pt->cfg->pause_after_ms) {
        set_paused(pt, 1);
    }
}

static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    pt_t *pt = opaque;
    const char *protocol = rd_kafka_rebalance_protocol(rk); /* NULL before the first join */
    int cooperative = protocol && !strcmp(protocol, "COOPERATIVE");
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        for (int i = 0; i < parts->cnt; i++) {
            track_t *t = track_of(pt, parts->elems[i].partition);
            t->head = t->tail = 0;
            t->done_next = t->sealed_next = t->committed = -1;
            /* the script waits for this event, as for the gateway's */
            cg_log(CG_LOG_INFO, "partition.assigned", "%s [%" PRId32 "]", parts->elems[i].topic,
                   parts->elems[i].partition);
        }
        if (cooperative)
            rd_kafka_error_destroy(rd_kafka_incremental_assign(rk, parts));
        else
            rd_kafka_assign(rk, parts);
        if (pt->paused)
            rd_kafka_pause_partitions(rk, parts);
        return;
    }
    /* revoked: in the benchmark only when leaving the group, after the drain; commit whatever
     * is left so that the group's offsets say everything was consumed */
    if (!pt->failed && pt->eos) {
        txn_commit(pt);
    } else if (!pt->failed && err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS &&
               !rd_kafka_assignment_lost(rk)) {
        rd_kafka_flush(pt->producer, pt->cfg->drain_timeout_ms);
        commit_delivered(pt, 1);
    }
    if (cooperative)
        rd_kafka_error_destroy(rd_kafka_incremental_unassign(rk, parts));
    else
        rd_kafka_assign(rk, NULL);
}

static int cmd_run(const char *config, const char *plan_path, const char *prefix)
{
    cg_error_t ce;
    cg_config_t *cfg = cg_config_load_file(config, &ce);
    if (!cfg) {
        fprintf(stderr, "cg_passthrough: %s:%d:%d: %s\n", ce.file, ce.line, ce.column, ce.text);
        return 1;
    }
    if (cg_kafka_conf(cfg)->n_inputs != 1 || cg_kafka_conf(cfg)->embedded_enabled)
        pt_die("%s: one input topic on a real broker, please", config);
    cg_log_set_level((cg_log_level_t)cfg->log_level);
    pt_t pt_ = {.cfg = cfg, .eos = cfg->semantics == CG_DELIVERY_EXACTLY_ONCE}, *pt = &pt_;
    pt_plan_load(&pt->plan, plan_path);
    /* a partition's ring holds its inputs in flight and the complete ones behind its oldest
     * incomplete one: twice max_in_flight, and no consuming while one is full */
    for (pt->ring_mask = 1; pt->ring_mask < 2 * (uint64_t)cfg->max_in_flight;)
        pt->ring_mask *= 2;
    pt->ring_mask--;
    /* the benchmark sets no compression.type, so the content of a value does not change what
     * goes over the wire; the bytes are varied anyway so a compressing setting is not flattered */
    pt->filler = pt_xrealloc(NULL, pt->plan.max_val + 1);
    uint32_t x = 2463534242u;
    for (uint32_t i = 0; i <= pt->plan.max_val; i++) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        pt->filler[i] = (char)(' ' + x % 95);
    }

    char err[512];
    const char *boot = cg_kafka_get(cg_kafka_conf(cfg), "bootstrap.servers");
    pt->producer = cg_kafka_producer_new(cfg, boot, on_delivery, pt, err, sizeof(err));
    if (!pt->producer)
        pt_die("%s", err);
    pt->consumer = cg_kafka_consumer_new(cfg, NULL, boot, on_rebalance, on_commit, on_stats, pt,
                                         err, sizeof(err));
    if (!pt->consumer)
        pt_die("%s", err);
    pt->out = pt_xrealloc(NULL, pt->plan.n_topics * sizeof(*pt->out));
    for (size_t i = 0; i < pt->plan.n_topics; i++) {
        char name[512];
        snprintf(name, sizeof(name), "%s%s", prefix, pt->plan.topics[i]);
        pt->out[i] = rd_kafka_topic_new(pt->producer, name, NULL);
    }
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    rd_kafka_topic_partition_list_t *subs = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(subs, cg_kafka_conf(cfg)->inputs[0].topic,
                                      RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t rerr = rd_kafka_subscribe(pt->consumer, subs);
    rd_kafka_topic_partition_list_destroy(subs);
    if (rerr)
        pt_die("subscribe: %s", rd_kafka_err2str(rerr));
    if (pt->eos && txn_call(pt, "init transactions", rd_kafka_init_transactions))
        return 1;
    cg_log(CG_LOG_INFO, "passthrough.started",
           "%s, group %s, plan of %zu record(s) over %zu topic(s)",
           pt->eos ? "exactly-once" : "at-least-once", cg_kafka_conf(cfg)->group_id,
           pt->plan.n_recs, pt->plan.n_topics);

    /* the gateway's loop (cg_gateway_run with one worker) without the mapping */
    int64_t next_commit = now_ms() + cfg->commit_interval_ms;
    while (!stop) {
        if (pt->cur)
            pt->blocked = produce_cur(pt) == 0;
        /* a transaction commits whole inputs only */
        if (pt->eos && pt->txn_open && !pt->cur &&
            (pt->txn_msgs >= (uint64_t)cfg->transaction_max_messages ||
             now_ms() - pt->txn_began >= cfg->commit_interval_ms))
            txn_commit(pt);
        if (stop)
            break;
        backpressure(pt);
        int waiting = pt->stalled_since != 0;
        int can_poll = !pt->cur && rings_have_room(pt) && (!waiting || pt->paused);
        rd_kafka_poll(pt->producer, waiting || !can_poll ? 10 : 0);
        if (can_poll) {
            /* 100 ms as the gateway when nothing is left to produce: messages come at once
             * when there are any */
            rd_kafka_message_t *m = rd_kafka_consumer_poll(pt->consumer, waiting ? 0 : 100);
            if (m)
                handle_message(pt, m);
        }
        int64_t t = now_ms();
        if (!pt->eos && t >= next_commit) {
            commit_delivered(pt, 0);
            next_commit = t + cfg->commit_interval_ms;
        }
    }

    /* the drain: what was consumed is produced, delivered and committed */
    int64_t deadline = now_ms() + cfg->drain_timeout_ms;
    while (pt->cur && !pt->failed && now_ms() < deadline) {
        rd_kafka_poll(pt->producer, 10);
        produce_cur(pt);
    }
    if (pt->eos) {
        txn_commit(pt);
    } else if (!pt->failed) {
        if (rd_kafka_flush(pt->producer, cfg->drain_timeout_ms))
            fail(pt, "drain", "records left undelivered");
        else
            commit_delivered(pt, 1);
    }
    rd_kafka_consumer_close(pt->consumer);
    cg_log(CG_LOG_INFO, "passthrough.stopped",
           "consumed %" PRIu64 ", records %" PRIu64 " (%" PRIu64 " delivered), commits %" PRIu64
           ", transactions %" PRIu64 ", inputs not in the plan %" PRIu64,
           pt->consumed, pt->records, pt->delivered, pt->commits, pt->txns, pt->not_in_plan);
    if (pt->cur)
        rd_kafka_message_destroy(pt->cur);
    rd_kafka_destroy(pt->consumer);
    for (size_t i = 0; i < pt->plan.n_topics; i++)
        rd_kafka_topic_destroy(pt->out[i]);
    rd_kafka_flush(pt->producer, 0);
    rd_kafka_destroy(pt->producer);
    free(pt->out);
    free(pt->filler);
    for (int i = 0; i < pt->n_tracks; i++)
        free(pt->tracks[i].ring);
    free(pt->tracks);
    cg_config_destroy(cfg);
    /* the plan is left to the exit */
    return pt->failed ? 1 : 0;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        usage();
    const char *cmd = argv[1], *boot = NULL, *topic = NULL, *prefix = NULL, *out = NULL,
               *config = NULL, *plan = NULL;
    int c;
    optind = 2;
    while ((c = getopt(argc, argv, "b:t:x:o:c:p:")) != -1) {
        switch (c) {
        case 'b':
            boot = optarg;
            break;
        case 't':
            topic = optarg;
            break;
        case 'x':
            prefix = optarg;
            break;
        case 'o':
            out = optarg;
            break;
        case 'c':
            config = optarg;
            break;
        case 'p':
            plan = optarg;
            break;
        default:
            usage();
        }
    }
    if (optind != argc || !prefix)
        usage();
    if (!strcmp(cmd, "plan") && boot && topic && out)
        return pt_plan_make(boot, topic, prefix, out);
    if (!strcmp(cmd, "run") && config && plan)
        return cmd_run(config, plan, prefix);
    usage();
    return 2;
}
