/* produce.c - mapped jobs to the sink, in ring order: destination names, provenance headers,
 * dead letters, and backpressure when the sink cannot keep up. */
#include "engine.h"

#include "cg_log.h"
#include "cg_metrics_gw.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/* The destination of a cohort's records of one table, from the cohorts.topic template. */
static const char *cohort_dest(cg_engine_t *gw, const char *cohort, const char *table)
{
    /* by pointer first: no name to build per record once the destination is known */
    for (size_t i = 0; i < gw->n_cdests; i++)
        if (gw->cdests[i].cohort == cohort && gw->cdests[i].table == table)
            return gw->cdests[i].name;
    char name[512];
    cg_config_topic_name(gw->cfg->cohort_topic, cohort, table, name, sizeof(name));
    for (size_t i = 0; i < gw->n_cdests; i++)
        if (!strcmp(gw->cdests[i].name, name)) { /* known by name, e.g. after a reload */
            gw->cdests[i].cohort = cohort;
            gw->cdests[i].table = table;
            return gw->cdests[i].name;
        }
    void *grown = realloc(gw->cdests, (gw->n_cdests + 1) * sizeof(*gw->cdests));
    if (!grown) {
        cg_engine_fatal(gw, CG_ERR_NOMEM, "out of memory for a cohort topic");
        return NULL;
    }
    gw->cdests = grown;
    char *copy = strdup(name);
    if (!copy) {
        cg_engine_fatal(gw, CG_ERR_NOMEM, "out of memory for a cohort topic");
        return NULL;
    }
    gw->cdests[gw->n_cdests++] = (cohort_dest_t){cohort, table, copy};
    cg_log(CG_LOG_INFO, "cohort.topic", "publishing to %s", copy);
    return copy;
}

void cg_engine_cohort_dests_free(cg_engine_t *gw)
{
    for (size_t i = 0; i < gw->n_cdests; i++)
        free(gw->cdests[i].name);
    free(gw->cdests);
    gw->cdests = NULL;
    gw->n_cdests = 0;
}

static const char *num_text(num_text_t *t, int64_t v)
{
    if (t->set && t->v == v)
        return t->s;
    t->s[cg_fmt_int64(t->s, v)] = '\0';
    t->v = v;
    t->set = 1;
    return t->s;
}

/* Hands one record to the sink with provenance headers (when in) before hdrs (name, value
 * pairs); dm NULL: a record of no input (the last audit records at shutdown). */
cg_sink_result_t cg_engine_produce_one(cg_engine_t *gw, const char *dest, int dead, const void *key,
                                       size_t key_len, const void *val, size_t val_len,
                                       const cg_source_msg_t *in, const char *const *hdrs,
                                       size_t n_hdrs, cg_delivery_msg_t *dm)
{
    const char *all[6 + 18];
    size_t n = 0;
    if (in) {
        all[n++] = "cg.source.topic";
        all[n++] = in->topic;
        all[n++] = "cg.source.partition";
        all[n++] = num_text(&gw->hdr_part, in->partition);
        all[n++] = "cg.source.offset";
        all[n++] = num_text(&gw->hdr_off, in->offset);
    }
    for (size_t i = 0; i + 1 < n_hdrs && n + 2 <= sizeof(all) / sizeof(all[0]); i += 2) {
        all[n++] = hdrs[i];
        all[n++] = hdrs[i + 1];
    }
    cg_sink_record_t rec = {dest, dead, key, key_len, val, val_len, all, n, dm};
    if (dm)
        cg_delivery_add(dm);
    cg_sink_result_t rc = gw->sink.p->produce(gw->sink.ctx, &rec);
    if (rc != CG_SINK_OK && dm)
        cg_delivery_unadd(gw->delivery, dm);
    return rc;
}

int cg_engine_audit_produce(cg_engine_t *gw, job_t *j, int force)
{
    if (!cg_engine_release_audit_due(gw, force))
        return 1;
    int64_t now = cg_engine_release_wall_ms();
    for (size_t s = 0; s < gw->subs->n; s++) {
        const cg_subscriber_t *sub = &gw->subs->v[s];
        char *text = cg_engine_release_audit_text(gw, s, now);
        if (!text)
            continue; /* nothing to say of this subscriber (out of memory: said next time) */
        const char *hdrs[] = {"cg.subscriber", sub->name, "cg.policy",
                              cg_policy_version(sub->policy)};
        cg_sink_result_t rc = cg_engine_produce_one(
            gw, gw->cfg->audit_topic, 0, sub->name, strlen(sub->name), text, strlen(text), NULL,
            hdrs, sizeof(hdrs) / sizeof(hdrs[0]), j ? j->dm : NULL);
        free(text);
        if (rc == CG_SINK_FULL)
            return 0; /* this one and the rest again on the next call */
        if (rc != CG_SINK_OK)
            return -1;
        cg_engine_release_audit_written(gw, s, now);
    }
    cg_engine_release_audit_rearm(gw);
    return 1;
}

static void put_field(cg_buf_t *b, const char *name, const char *v)
{
    cg_buf_printf(b, ",\"%s\":", name);
    cg_buf_put_json_str(b, v, strlen(v));
}

/* The job's outcome record (output.outcome_topic): how its input ended, what it gave and where
 * it came from, never a value of it (a dead letter's stage and code, not its reason). Keyed by
 * the input's topic and partition, so one partition's outcomes keep their order. 1 handed over,
 * 0 the queue is full, -1 failed. */
static int produce_outcome(cg_engine_t *gw, job_t *j, int dead)
{
    const cg_source_msg_t *in = &j->in;
    size_t records = 0, quality = 0;
    for (size_t i = 0; !dead && i < j->n_recs; i++)
        *(j->recs[i].quality ? &quality : &records) += 1;
    cg_buf_t b;
    cg_buf_init(&b);
    cg_buf_puts(&b, "{\"kind\":\"outcome\"");
    put_field(&b, "outcome", dead ? "dead_letter" : j->oc_kind ? j->oc_kind : "records");
    if (j->oc_type[0])
        put_field(&b, "type", j->oc_type);
    if (dead) {
        put_field(&b, "stage", j->me.stage ? j->me.stage : "map");
        put_field(&b, "code", cg_err_name(j->rc));
    } else {
        cg_buf_printf(&b, ",\"records\":%zu,\"quality\":%zu", records, quality);
        if (j->oc_spec)
            put_field(&b, "spec", j->oc_spec);
    }
    cg_buf_puts(&b, ",\"source\":{\"topic\":");
    cg_buf_put_json_str(&b, in->topic ? in->topic : "", in->topic ? strlen(in->topic) : 0);
    cg_buf_printf(&b, ",\"partition\":%d,\"offset\":%lld}}", (int)in->partition,
                  (long long)in->offset);
    char key[300];
    int kl = snprintf(key, sizeof(key), "%s:%d", in->topic ? in->topic : "", (int)in->partition);
    if (b.failed) {
        cg_buf_free(&b);
        cg_engine_fatal(gw, CG_ERR_NOMEM, "out of memory encoding an outcome record");
        return -1;
    }
    const char *hdrs[] = {"cg.outcome", dead ? "dead_letter" : j->oc_kind ? j->oc_kind : "records"};
    cg_sink_result_t rc = cg_engine_produce_one(gw, gw->cfg->outcome_topic, 0, key,
                                                kl > 0 && (size_t)kl < sizeof(key) ? (size_t)kl : 0,
                                                b.data, b.len, in, hdrs, 2, j->dm);
    cg_buf_free(&b);
    return rc == CG_SINK_OK ? 1 : rc == CG_SINK_FULL ? 0 : -1;
}

/* Produces a mapped job's records from where it stopped. 1: all handed over (the input is
 * sealed); 0: the sink's queue is full, try again later; -1: failed (fatal, or the transaction
 * failed). */
static int produce_job(cg_engine_t *gw, job_t *j)
{
    int dead = j->rc != CG_OK;
    if (dead && cg_err_classify(j->rc) != CG_ERR_CLASS_DEADLETTER) {
        cg_engine_fatal(gw, j->rc, j->me.text);
        return -1;
    }
    if (gw->eos && cg_engine_txn_begin(gw))
        return -1;
    const cg_source_msg_t *in = &j->in;
    if (gw->opts.passthrough) {
        /* the input unchanged, with its key and the source's headers only: the cg.source.*
         * position of a pass-through source means nothing to the destination's readers */
        cg_sink_record_t rec = {in->dest, 0,           in->key,       in->key_len, in->payload,
                                in->len,  in->headers, in->n_headers, j->dm};
        cg_delivery_add(j->dm);
        cg_sink_result_t rc = gw->sink.p->produce(gw->sink.ctx, &rec);
        if (rc != CG_SINK_OK) {
            cg_delivery_unadd(gw->delivery, j->dm);
            if (rc == CG_SINK_FULL)
                STAT_ADD(gw, queue_full, 1);
            return rc == CG_SINK_FULL ? 0 : -1;
        }
        cg_delivery_seal(gw->delivery, j->dm);
        if (gw->eos) /* a transaction's size counts inputs, as below */
            gw->txn_msgs++;
        return 1;
    }
    for (size_t total = dead ? 1 : j->n_recs; j->next_rec < total; j->next_rec++) {
        cg_sink_result_t rc;
        const char *ver;
        if (dead) {
            /* the original bytes and key, untouched; the spec headers only when a spec was
             * chosen */
            const cg_error_t *me = &j->me;
            ver = num_text(&gw->hdr_ver, me->spec_version);
            const char *hdrs[] = {
                "cg.error.stage",  me->stage ? me->stage : "map",
                "cg.error.code",   cg_err_name(j->rc),
                "cg.error.class",  cg_err_class_name(cg_err_classify(j->rc)),
                "cg.error.reason", j->reason,
                "cg.spec",         me->spec,
                "cg.spec.version", ver,
            };
            size_t nh = sizeof(hdrs) / sizeof(hdrs[0]) - (me->spec[0] ? 0 : 4);
            rc = cg_engine_produce_one(gw, gw->cfg->dead_letter_topic, 1, in->key, in->key_len,
                                       in->payload, in->len, in, hdrs, nh, j->dm);
        } else if (j->recs[j->next_rec].quality) {
            const job_rec_t *r = &j->recs[j->next_rec];
            ver = num_text(&gw->hdr_ver, r->spec_version);
            const char *hdrs[] = {"cg.spec", r->spec, "cg.spec.version",   ver,
                                  "cg.rule", r->rule, "cg.quality.reason", r->quality};
            rc = cg_engine_produce_one(gw, gw->cfg->quality_topic, 0, NULL, 0,
                                       j->buf.data + r->val_off, r->val_len, in, hdrs,
                                       sizeof(hdrs) / sizeof(hdrs[0]), j->dm);
        } else if (j->recs[j->next_rec].sub) {
            /* released to a subscriber: its topic, its policy, no source position (offsets
             * would be the same in every subscriber's records and link them) */
            const job_rec_t *r = &j->recs[j->next_rec];
            const cg_subscriber_t *sub = &gw->subs->v[r->sub - 1];
            static const char *const levels[] = {"0", "1", "2", "3", "4", "5"};
            char level[4];
            ver = num_text(&gw->hdr_ver, r->spec_version);
            if (r->level < sizeof(levels) / sizeof(levels[0]))
                memcpy(level, levels[r->level], 2);
            else
                snprintf(level, sizeof(level), "%d", r->level);
            const char *hdrs[] = {"cg.spec",         r->spec,
                                  "cg.spec.version", ver,
                                  "cg.table",        r->table,
                                  "cg.rule",         r->rule,
                                  "cg.op",           r->op,
                                  "cg.subscriber",   sub->name,
                                  "cg.policy",       cg_policy_version(sub->policy),
                                  "cg.level",        level,
                                  "cg.document",     j->buf.data + r->doc_off};
            size_t nh = sizeof(hdrs) / sizeof(hdrs[0]) - (r->doc_len ? 0 : 2);
            rc = cg_engine_produce_one(gw, sub->topic, 0, j->buf.data + r->key_off, r->key_len,
                                       j->buf.data + r->val_off, r->val_len, NULL, hdrs, nh, j->dm);
            if (rc == CG_SINK_OK)
                cg_engine_release_counted(gw, r);
        } else {
            const job_rec_t *r = &j->recs[j->next_rec];
            const char *dest =
                r->cohort ? cohort_dest(gw, r->cohort, r->table) : gw->cfg->output_topic;
            if (!dest)
                return -1;
            ver = num_text(&gw->hdr_ver, r->spec_version);
            /* cg.op lets a consumer route deletes and merges without parsing the value;
             * cg.document marks a document's rows, and an order's ("order:ID"): the
             * PostgreSQL sink keeps which stated each row, for a retraction of it */
            const char *hdrs[] = {"cg.spec", r->spec,       "cg.spec.version",
                                  ver,       "cg.table",    r->table,
                                  "cg.rule", r->rule,       "cg.op",
                                  r->op,     "cg.document", j->buf.data + r->doc_off};
            size_t nh = sizeof(hdrs) / sizeof(hdrs[0]) - (r->doc_len ? 0 : 2);
            rc = cg_engine_produce_one(gw, dest, 0, j->buf.data + r->key_off, r->key_len,
                                       j->buf.data + r->val_off, r->val_len, in, hdrs, nh, j->dm);
        }
        if (rc == CG_SINK_FULL) {
            STAT_ADD(gw, queue_full, 1);
            return 0;
        }
        if (rc != CG_SINK_OK)
            return -1;
    }
    if (gw->subs && !dead) {
        /* withheld rows counted once (a full queue may have us here again), then the audit
         * records when due, as outputs of this input: committed with it */
        if (!j->audited) {
            cg_engine_release_count(gw, j);
            j->audited = 1;
        }
        int a = cg_engine_audit_produce(gw, j, gw->stop);
        if (a <= 0) {
            if (a == 0)
                STAT_ADD(gw, queue_full, 1);
            return a;
        }
    }
    /* last, so that a full queue above does not write it twice; in the transaction with the
     * records, so a reconciler sees both or neither */
    if (gw->cfg->outcome_topic && !j->oc_done) {
        int o = produce_outcome(gw, j, dead);
        if (o <= 0) {
            if (o == 0)
                STAT_ADD(gw, queue_full, 1);
            return o;
        }
        j->oc_done = 1;
    }
    cg_delivery_seal(gw->delivery, j->dm);
    if (gw->eos)
        gw->txn_msgs++;
    return 1;
}

/* Produces the mapped jobs at the front of every ring, in ring order. Stops at a full sink
 * queue (gw->blocked), at a failure, and (exactly-once, unless fill) at a full transaction. */
void cg_engine_produce_ready(cg_engine_t *gw, int fill)
{
    gw->blocked = 0;
    for (int i = 0; i < gw->n_workers; i++) {
        worker_t *w = &gw->workers[i];
        for (uint64_t done = cg_engine_worker_done(w); w->head < done; w->head++) {
            if (gw->fatal || gw->txn_failed || (!fill && cg_engine_txn_full(gw)))
                return;
            job_t *j = &w->ring[w->head % CG_RING_CAP];
            int rc = produce_job(gw, j);
            if (rc == 0)
                gw->blocked = 1;
            if (rc <= 0)
                return;
            cg_engine_job_reset(gw, j);
        }
    }
}

/* Produces every job dispatched so far (revoke, shutdown), filling the open transaction beyond
 * its size; gives up at a failure or when the time is out. 0 when nothing is left. */
int cg_engine_jobs_drain(cg_engine_t *gw)
{
    int64_t until = cg_engine_now_ms() + cg_engine_remaining_ms(gw);
    while (cg_engine_jobs_outstanding(gw)) {
        cg_engine_produce_ready(gw, 1);
        if (!cg_engine_jobs_outstanding(gw))
            break;
        if (gw->fatal || gw->txn_failed || cg_engine_now_ms() >= until)
            return -1;
        if (gw->blocked)
            gw->sink.p->poll(gw->sink.ctx, 10);
        else
            cg_engine_wait_done(gw, 10);
    }
    return 0;
}

/* Waits (at most the time left) for every record in flight to be delivered or to fail. */
void cg_engine_flush_sink(cg_engine_t *gw)
{
    int t = cg_engine_remaining_ms(gw);
    if (gw->sink.p->flush(gw->sink.ctx, t)) {
        cg_log(CG_LOG_WARN, "producer.flush", "%d record(s) still undelivered after %d ms",
               gw->sink.p->queue_len(gw->sink.ctx), t);
        if (gw->stop)
            gw->drain_incomplete = 1;
    }
}

static void set_paused(cg_engine_t *gw, int on)
{
    gw->source.p->pause(gw->source.ctx, on);
    gw->paused = on;
    cg_log(CG_LOG_DEBUG, on ? "consumer.paused" : "consumer.resumed",
           "%zu input(s) in flight, %d record(s) in the producer queue",
           cg_delivery_in_flight(gw->delivery), gw->sink.p->queue_len(gw->sink.ctx));
}

/* Backpressure. While the output side cannot keep up (a full sink queue, max_in_flight inputs
 * in flight) no message is taken; if that lasts pause_after_ms, the source is paused as well
 * (Kafka: librdkafka stops fetching and frees what it prefetched, and the consumer is polled
 * again, for rebalances and max.poll.interval.ms). Short waits do not pause, since a resume
 * costs a refetch. Consumption goes on once the sink has drained half its queue and in-flight
 * inputs are down by a quarter, so that waits do not alternate with every message. */
void cg_engine_backpressure(cg_engine_t *gw)
{
    size_t in_flight = cg_delivery_in_flight(gw->delivery);
    size_t max = (size_t)gw->cfg->max_in_flight;
    int64_t t = cg_engine_now_ms();
    if (!gw->stalled_since) {
        if (gw->blocked || in_flight >= max) {
            gw->stalled_since = t;
            gw->outq_resume = gw->sink.p->queue_len(gw->sink.ctx) / 2;
            STAT_ADD(gw, stalls, 1);
            cg_metrics_gw_paused(gw->metrics, 1);
        }
        return;
    }
    if (!gw->blocked && in_flight <= max - max / 4 &&
        gw->sink.p->queue_len(gw->sink.ctx) <= gw->outq_resume) {
        if (gw->paused)
            set_paused(gw, 0);
        gw->stalled_since = 0;
        cg_metrics_gw_paused(gw->metrics, 0);
    } else if (!gw->paused && t - gw->stalled_since >= gw->cfg->pause_after_ms) {
        STAT_ADD(gw, pauses, 1);
        set_paused(gw, 1);
    }
}
