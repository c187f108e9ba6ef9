/* kafka_source.c - the Kafka source: a group consumer of the raw topics. Hands out their
 * records, commits offsets once the engine says their outputs are delivered, pauses the
 * assignment for backpressure, serves rebalances through the engine (cg_engine_revoke drains
 * and commits before partitions go), and, for exactly-once, rewinds (seek) and gives the sink
 * the consumer group metadata its transactions commit offsets with. */
#include "kafka_int.h"

#include "cg_log.h"
#include "cg_metrics_gw.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct kafka_source {
    cg_engine_t *engine;
    const cg_config_t *cfg;
    const cg_kafka_conf_t *kc; /* its settings (cg_kafka.h) */
    cg_metrics_gw_t *metrics;
    cg_kafka_embedded_t *embedded; /* NULL unless the config asks for the embedded broker */
    char *bootstrap;
    rd_kafka_t *consumer;
    int headers;         /* hand out the inputs' headers (a pass-through run only) */
    int paused;          /* partitions assigned later are paused too */
    int n_assigned;      /* partitions assigned now */
    char end_topic[256]; /* the topic of the last end event (the message is gone by then) */
    /* partitions assigned that have not delivered a message yet: the first one's offset says
     * where consumption started (the committed offset, or auto.offset.reset) */
    struct unstarted {
        char *topic;
        int32_t partition;
    } * unstarted;
    size_t n_unstarted;
} kafka_source_t;

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The config's input for the topic (its format and charset). A topic that came in through a
 * regex subscription ("^…") takes the first regex input's, or none when there are several (the
 * regex itself is librdkafka's to match): then records are told apart per record (auto), with
 * hl7.default_charset. */
static const cg_kafka_input_t *input_of(const kafka_source_t *ks, const char *topic)
{
    int regexes = 0;
    const cg_kafka_input_t *first = NULL;
    for (size_t i = 0; i < ks->kc->n_inputs; i++) {
        const cg_kafka_input_t *in = &ks->kc->inputs[i];
        if (!strcmp(in->topic, topic))
            return in;
        if (in->topic[0] == '^' && !regexes++)
            first = in;
    }
    return regexes == 1 ? first : NULL;
}

/* ---- librdkafka callbacks (from inside the consumer's poll, on the engine thread) ---- */

static void record_commit_result(kafka_source_t *ks, rd_kafka_resp_err_t err,
                                 const rd_kafka_topic_partition_list_t *offsets)
{
    if (err == RD_KAFKA_RESP_ERR__NO_OFFSET)
        return;
    if (err) {
        cg_log(CG_LOG_WARN, "offsets.commit_failed", "%s (will retry)", rd_kafka_err2str(err));
        return;
    }
    size_t n = 0;
    cg_source_pos_t *pos =
        offsets && offsets->cnt ? calloc((size_t)offsets->cnt, sizeof(*pos)) : NULL;
    for (int i = 0; pos && i < offsets->cnt; i++) {
        const rd_kafka_topic_partition_t *p = &offsets->elems[i];
        if (!p->err && p->offset >= 0)
            pos[n++] = (cg_source_pos_t){p->topic, p->partition, p->offset};
    }
    cg_engine_committed(ks->engine, pos, n);
    free(pos);
}

static void on_commit(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                      rd_kafka_topic_partition_list_t *offsets, void *opaque)
{
    (void)rk;
    record_commit_result(opaque, err, offsets);
}

static int on_stats(rd_kafka_t *rk, char *json, size_t json_len, void *opaque)
{
    (void)rk;
    cg_metrics_gw_kafka_stats(((kafka_source_t *)opaque)->metrics, json, json_len);
    return 0;
}

static void unstarted_drop(kafka_source_t *ks, size_t i)
{
    free(ks->unstarted[i].topic);
    ks->unstarted[i] = ks->unstarted[--ks->n_unstarted];
}

/* Logs the offset a partition's consumption started at: with partition.assigned and the
 * group's commits, the log then shows every offset handed from one instance to another. */
static void note_started(kafka_source_t *ks, const char *topic, int32_t partition, int64_t offset)
{
    for (size_t i = 0; i < ks->n_unstarted; i++)
        if (ks->unstarted[i].partition == partition && !strcmp(ks->unstarted[i].topic, topic)) {
            cg_log(CG_LOG_INFO, "partition.started", "%s [%" PRId32 "] at offset %" PRId64, topic,
                   partition, offset);
            unstarted_drop(ks, i);
            return;
        }
}

static void note_assigned(kafka_source_t *ks, const rd_kafka_topic_partition_list_t *parts)
{
    void *grown =
        realloc(ks->unstarted, (ks->n_unstarted + (size_t)parts->cnt + 1) * sizeof(*ks->unstarted));
    if (!grown)
        return; /* a log line fewer */
    ks->unstarted = grown;
    for (int i = 0; i < parts->cnt; i++) {
        char *t = strdup(parts->elems[i].topic);
        if (t)
            ks->unstarted[ks->n_unstarted++] = (struct unstarted){t, parts->elems[i].partition};
    }
}

static void note_revoked(kafka_source_t *ks, const rd_kafka_topic_partition_list_t *parts)
{
    for (int k = 0; k < parts->cnt; k++)
        for (size_t i = 0; i < ks->n_unstarted; i++)
            if (ks->unstarted[i].partition == parts->elems[k].partition &&
                !strcmp(ks->unstarted[i].topic, parts->elems[k].topic)) {
                unstarted_drop(ks, i);
                break;
            }
}

/* Where a partition with no position starts: auto.offset.reset's end (earliest by default). */
static int64_t reset_offset(const kafka_source_t *ks)
{
    const char *r = cg_kafka_get(ks->kc, "auto.offset.reset");
    return r && (!strcmp(r, "latest") || !strcmp(r, "largest") || !strcmp(r, "end"))
               ? RD_KAFKA_OFFSET_END
               : RD_KAFKA_OFFSET_BEGINNING;
}

static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    kafka_source_t *ks = opaque;
    /* NULL while no protocol is agreed yet (a close before the group's first join) */
    const char *protocol = rd_kafka_rebalance_protocol(rk);
    int cooperative = protocol && !strcmp(protocol, "COOPERATIVE");
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        /* a sink that stores offsets itself (in its database transaction) says where each
         * partition starts; elsewhere the group's committed offset applies */
        cg_source_pos_t *start = calloc(parts->cnt ? (size_t)parts->cnt : 1, sizeof(*start));
        if (!start) {
            cg_engine_fatal(ks->engine, CG_ERR_NOMEM, "out of memory assigning partitions");
        } else {
            for (int i = 0; i < parts->cnt; i++)
                start[i] = (cg_source_pos_t){parts->elems[i].topic, parts->elems[i].partition, -1};
            int kept = cg_engine_stored_positions(ks->engine, start, (size_t)parts->cnt);
            for (int i = 0; kept >= 0 && i < parts->cnt; i++)
                if (start[i].offset >= 0)
                    parts->elems[i].offset = start[i].offset;
                else if (kept == 1) /* never the group's commit: see cg_plugin.h */
                    parts->elems[i].offset = reset_offset(ks);
            free(start);
        }
        for (int i = 0; i < parts->cnt; i++) {
            if (parts->elems[i].offset >= 0)
                cg_log(CG_LOG_INFO, "partition.assigned",
                       "%s [%" PRId32 "] from offset %" PRId64 " (stored by the sink)",
                       parts->elems[i].topic, parts->elems[i].partition, parts->elems[i].offset);
            else if (parts->elems[i].offset == RD_KAFKA_OFFSET_BEGINNING ||
                     parts->elems[i].offset == RD_KAFKA_OFFSET_END)
                cg_log(CG_LOG_INFO, "partition.assigned",
                       "%s [%" PRId32 "] from its %s (the sink holds no position for it)",
                       parts->elems[i].topic, parts->elems[i].partition,
                       parts->elems[i].offset == RD_KAFKA_OFFSET_END ? "end" : "start");
            else
                cg_log(CG_LOG_INFO, "partition.assigned", "%s [%" PRId32 "]", parts->elems[i].topic,
                       parts->elems[i].partition);
        }
        if (cooperative)
            rd_kafka_error_destroy(rd_kafka_incremental_assign(rk, parts));
        else
            rd_kafka_assign(rk, parts);
        if (ks->paused) /* backpressure holds for new partitions too */
            rd_kafka_pause_partitions(rk, parts);
        ks->n_assigned += parts->cnt;
        note_assigned(ks, parts);
        cg_engine_assigned(ks->engine, ks->n_assigned);
        return;
    }
    /* Revoked (or lost): the engine finishes what is in flight and commits it, then the
     * partitions go. Lost ones cannot be committed any more. */
    int lost = err != RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS || rd_kafka_assignment_lost(rk);
    int n_left = cooperative ? ks->n_assigned - parts->cnt : 0;
    cg_source_pos_t *pos = calloc(parts->cnt ? (size_t)parts->cnt : 1, sizeof(*pos));
    for (int i = 0; pos && i < parts->cnt; i++)
        pos[i] = (cg_source_pos_t){parts->elems[i].topic, parts->elems[i].partition,
                                   parts->elems[i].offset};
    if (pos)
        cg_engine_revoke(ks->engine, pos, (size_t)parts->cnt, lost, n_left);
    else
        cg_engine_fatal(ks->engine, CG_ERR_NOMEM, "out of memory revoking partitions");
    free(pos);
    note_revoked(ks, parts);
    if (cooperative)
        rd_kafka_error_destroy(rd_kafka_incremental_unassign(rk, parts));
    else
        rd_kafka_assign(rk, NULL);
    ks->n_assigned = n_left;
}

/* ---- the plug-in ---- */

static void ksrc_destroy(void *ctx)
{
    kafka_source_t *ks = ctx;
    if (!ks)
        return;
    if (ks->consumer)
        rd_kafka_destroy(ks->consumer);
    cg_kafka_embedded_stop(ks->embedded);
    while (ks->n_unstarted)
        unstarted_drop(ks, 0);
    free(ks->unstarted);
    free(ks->bootstrap);
    free(ks);
}

static void *ksrc_init(const cg_plugin_env_t *env, char *errstr, size_t errstr_size)
{
    kafka_source_t *ks = calloc(1, sizeof(*ks));
    if (!ks) {
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    const cg_config_t *cfg = env->cfg;
    ks->engine = env->engine;
    ks->cfg = cfg;
    ks->kc = env->conf ? env->conf : cg_kafka_conf(cfg);
    ks->metrics = env->metrics;
    ks->headers = env->passthrough;
    if (ks->kc->embedded_enabled) {
        if (!(ks->embedded = cg_kafka_embedded_start(cfg, errstr, errstr_size)))
            goto fail;
        ks->bootstrap = strdup(cg_kafka_embedded_bootstrap(ks->embedded));
    } else {
        ks->bootstrap = strdup(cg_kafka_get(ks->kc, "bootstrap.servers"));
    }
    if (!ks->bootstrap) {
        snprintf(errstr, errstr_size, "out of memory");
        goto fail;
    }
    ks->consumer = cg_kafka_consumer_new(cfg, ks->kc, ks->bootstrap, on_rebalance, on_commit,
                                         on_stats, ks, errstr, errstr_size);
    if (!ks->consumer)
        goto fail;
    return ks;
fail:
    ksrc_destroy(ks);
    return NULL;
}

static int ksrc_start(void *ctx, char *errstr, size_t errstr_size)
{
    kafka_source_t *ks = ctx;
    rd_kafka_topic_partition_list_t *subs =
        rd_kafka_topic_partition_list_new((int)ks->kc->n_inputs);
    for (size_t i = 0; i < ks->kc->n_inputs; i++)
        rd_kafka_topic_partition_list_add(subs, ks->kc->inputs[i].topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t err = rd_kafka_subscribe(ks->consumer, subs);
    rd_kafka_topic_partition_list_destroy(subs);
    if (err) {
        snprintf(errstr, errstr_size, "subscribe failed: %s", rd_kafka_err2str(err));
        return -1;
    }
    return 0;
}

/* The message's headers as the C strings a pass-through run hands its sink (cg_source_msg_t:
 * `cohortgate sink` reads the release headers cg.subscriber, cg.level, cg.policy): one block,
 * the pointers then the strings, freed by release(); NULL when it has none (or no memory: the
 * record then reaches the sink without them, which a sink that needs them refuses). A header
 * without a value gets "". */
static const char *const *headers_of(rd_kafka_message_t *m, size_t *n_out)
{
    rd_kafka_headers_t *h = NULL;
    *n_out = 0;
    if (rd_kafka_message_headers(m, &h) != RD_KAFKA_RESP_ERR_NO_ERROR || !h)
        return NULL;
    size_t n = rd_kafka_header_cnt(h), bytes = 0;
    const char *name;
    const void *val;
    size_t len;
    for (size_t i = 0; i < n && !rd_kafka_header_get_all(h, i, &name, &val, &len); i++)
        bytes += strlen(name) + 1 + len + 1;
    if (!n)
        return NULL;
    char **v = malloc(2 * n * sizeof(char *) + bytes);
    if (!v)
        return NULL;
    char *p = (char *)(v + 2 * n);
    size_t k = 0;
    for (size_t i = 0; i < n && !rd_kafka_header_get_all(h, i, &name, &val, &len); i++) {
        size_t nl = strlen(name);
        v[k++] = memcpy(p, name, nl + 1);
        p += nl + 1;
        v[k++] = p;
        if (len)
            memcpy(p, val, len);
        p[len] = '\0';
        p += len + 1;
    }
    *n_out = k;
    return (const char *const *)v;
}

static cg_source_event_t ksrc_poll(void *ctx, int timeout_ms, cg_source_msg_t *msg)
{
    kafka_source_t *ks = ctx;
    rd_kafka_message_t *m = rd_kafka_consumer_poll(ks->consumer, timeout_ms);
    if (!m)
        return CG_SOURCE_NONE;
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        const char *topic = rd_kafka_topic_name(m->rkt);
        const cg_kafka_input_t *in = input_of(ks, topic);
        if (ks->n_unstarted)
            note_started(ks, topic, m->partition, m->offset);
        *msg = (cg_source_msg_t){.payload = m->payload,
                                 .len = m->len,
                                 .key = m->key,
                                 .key_len = m->key_len,
                                 .topic = topic,
                                 .partition = m->partition,
                                 .offset = m->offset,
                                 .format = in ? in->format : CG_INPUT_AUTO,
                                 .charset = in ? in->charset : NULL,
                                 .nrc_types = in ? in->no_research_content : NULL,
                                 .n_nrc_types = in ? in->n_no_research_content : 0,
                                 .dl_types = in ? in->dead_letter : NULL,
                                 .n_dl_types = in ? in->n_dead_letter : 0,
                                 .opaque = m};
        if (ks->headers)
            msg->headers = headers_of(m, &msg->n_headers);
        return CG_SOURCE_MSG;
    }
    cg_source_event_t ev = CG_SOURCE_ERROR;
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        snprintf(ks->end_topic, sizeof(ks->end_topic), "%s",
                 m->rkt ? rd_kafka_topic_name(m->rkt) : "");
        *msg = (cg_source_msg_t){.topic = m->rkt ? ks->end_topic : NULL, .partition = m->partition};
        ev = CG_SOURCE_END;
    } else {
        cg_log(CG_LOG_WARN, "consumer.error", "%s", rd_kafka_message_errstr(m));
    }
    rd_kafka_message_destroy(m);
    return ev;
}

static void ksrc_release(void *ctx, cg_source_msg_t *msg)
{
    (void)ctx;
    rd_kafka_message_destroy(msg->opaque);
    msg->opaque = NULL;
    free((void *)msg->headers);
    msg->headers = NULL;
    msg->n_headers = 0;
}

static rd_kafka_topic_partition_list_t *pos_list(const cg_source_pos_t *pos, size_t n)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new((int)n);
    for (size_t i = 0; i < n; i++)
        rd_kafka_topic_partition_list_add(l, pos[i].topic, pos[i].partition)->offset =
            pos[i].offset;
    return l;
}

static int ksrc_commit(void *ctx, const cg_source_pos_t *pos, size_t n, int sync)
{
    kafka_source_t *ks = ctx;
    rd_kafka_topic_partition_list_t *list = pos_list(pos, n);
    int rc = 0;
    if (!sync) {
        rd_kafka_resp_err_t err = rd_kafka_commit(ks->consumer, list, 1);
        if (err)
            cg_log(CG_LOG_WARN, "offsets.commit_failed", "%s", rd_kafka_err2str(err));
    } else {
        /* through a queue of our own, so that the wait is bounded */
        rd_kafka_queue_t *q = rd_kafka_queue_new(ks->consumer);
        rd_kafka_resp_err_t err = rd_kafka_commit_queue(ks->consumer, list, q, NULL, NULL);
        rd_kafka_event_t *ev =
            err ? NULL : rd_kafka_queue_poll(q, cg_engine_remaining_ms(ks->engine));
        if (err) {
            cg_log(CG_LOG_WARN, "offsets.commit_failed", "%s", rd_kafka_err2str(err));
        } else if (!ev) {
            cg_log(CG_LOG_WARN, "offsets.commit_failed", "no answer within the drain timeout");
            rc = -1;
        } else if (rd_kafka_event_type(ev) == RD_KAFKA_EVENT_OFFSET_COMMIT) {
            record_commit_result(ks, rd_kafka_event_error(ev),
                                 rd_kafka_event_topic_partition_list(ev));
        }
        if (ev)
            rd_kafka_event_destroy(ev);
        rd_kafka_queue_destroy(q);
    }
    rd_kafka_topic_partition_list_destroy(list);
    return rc;
}

static void ksrc_pause(void *ctx, int on)
{
    kafka_source_t *ks = ctx;
    rd_kafka_topic_partition_list_t *parts = NULL;
    if (!rd_kafka_assignment(ks->consumer, &parts) && parts) {
        if (parts->cnt && on)
            rd_kafka_pause_partitions(ks->consumer, parts);
        else if (parts->cnt)
            rd_kafka_resume_partitions(ks->consumer, parts);
        rd_kafka_topic_partition_list_destroy(parts);
    }
    ks->paused = on;
}

/* Leaves the group: prompt with a broker, up to librdkafka's 5 s LeaveGroup timeout without one
 * (config/README.md); said when it is slow, as nothing else is logged then. */
static void ksrc_close(void *ctx)
{
    kafka_source_t *ks = ctx;
    int64_t close_began = mono_ms();
    rd_kafka_resp_err_t err = rd_kafka_consumer_close(ks->consumer);
    int64_t close_took = mono_ms() - close_began;
    if (err)
        cg_log(CG_LOG_WARN, "consumer.close", "%s", rd_kafka_err2str(err));
    else if (close_took >= 1000)
        cg_log(CG_LOG_WARN, "consumer.close",
               "leaving the group took %" PRId64 " ms: no answer from the group coordinator; "
               "the group reassigns this member's partitions after session.timeout.ms",
               close_took);
}

static int ksrc_seek(void *ctx, const cg_source_pos_t *pos, size_t n, char *errstr,
                     size_t errstr_size)
{
    kafka_source_t *ks = ctx;
    rd_kafka_topic_partition_list_t *seek = pos_list(pos, n);
    /* waits until no message fetched before the seek can be returned any more */
    rd_kafka_error_t *e = rd_kafka_seek_partitions(ks->consumer, seek, 10000);
    if (e && rd_kafka_error_code(e) == RD_KAFKA_RESP_ERR__TIMED_OUT) {
        /* librdkafka 2.0 can give up on a seek within milliseconds (seen right after an
         * assignment): seek each partition again, one by one, each waiting for its own */
        rd_kafka_error_destroy(e);
        e = NULL;
        for (int i = 0; i < seek->cnt && !e; i++) {
            rd_kafka_topic_t *t = rd_kafka_topic_new(ks->consumer, seek->elems[i].topic, NULL);
            rd_kafka_resp_err_t err =
                t ? rd_kafka_seek(t, seek->elems[i].partition, seek->elems[i].offset, 10000)
                  : rd_kafka_last_error();
            if (t)
                rd_kafka_topic_destroy(t);
            if (err)
                e = rd_kafka_error_new(err, "%s [%" PRId32 "]: %s", seek->elems[i].topic,
                                       seek->elems[i].partition, rd_kafka_err2str(err));
            else
                seek->elems[i].err = RD_KAFKA_RESP_ERR_NO_ERROR;
        }
        if (!e)
            cg_log(CG_LOG_INFO, "consumer.seek",
                   "seeked %d partition(s) one by one after a "
                   "timed-out seek",
                   seek->cnt);
    }
    int rc = 0;
    if (e) {
        snprintf(errstr, errstr_size, "%s", rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
        rc = -1;
    }
    for (int i = 0; !rc && i < seek->cnt; i++)
        if (seek->elems[i].err) {
            snprintf(errstr, errstr_size, "%s [%" PRId32 "]: %s", seek->elems[i].topic,
                     seek->elems[i].partition, rd_kafka_err2str(seek->elems[i].err));
            rc = -1;
        }
    rd_kafka_topic_partition_list_destroy(seek);
    return rc;
}

static void *ksrc_txn_context_new(void *ctx)
{
    return rd_kafka_consumer_group_metadata(((kafka_source_t *)ctx)->consumer);
}

static void ksrc_txn_context_free(void *txn_ctx)
{
    if (txn_ctx)
        rd_kafka_consumer_group_metadata_destroy(txn_ctx);
}

static void ksrc_describe(void *ctx, char *buf, size_t size)
{
    const kafka_source_t *ks = ctx;
    snprintf(buf, size, "%zu topic(s) from %s as group %s", ks->kc->n_inputs, ks->bootstrap,
             ks->kc->group_id);
}

const char *cg_kafka_source_bootstrap(const cg_source_t *src)
{
    if (!src || src->p != &cg_kafka_source_plugin || !src->ctx)
        return NULL;
    return ((const kafka_source_t *)src->ctx)->bootstrap;
}

const cg_source_plugin_t cg_kafka_source_plugin = {
    .name = "kafka",
    .desc = "a Kafka consumer group reading the raw topics (inputs)",
    .config_map = cg_kafka_config_map,
    .conf_size = sizeof(cg_kafka_conf_t),
    .check = cg_kafka_source_check,
    .validate = cg_kafka_validate,
    .init = ksrc_init,
    .start = ksrc_start,
    .poll = ksrc_poll,
    .release = ksrc_release,
    .commit = ksrc_commit,
    .pause = ksrc_pause,
    .close = ksrc_close,
    .destroy = ksrc_destroy,
    .seek = ksrc_seek,
    .txn_context_new = ksrc_txn_context_new,
    .txn_context_free = ksrc_txn_context_free,
    .describe = ksrc_describe,
};
