/* kafka_topics.c - destinations made ready before their first record (cg_kafka_topics.h in
 * cg_kafka.h): created when missing (topics.*), then waited for until every partition has a
 * leader. The creating and the asking go through a client of their own, so that asking after a
 * topic that cannot be created does not mark it unknown in the producer that writes to it (its
 * records would then fail at once instead of waiting as for any topic). */
#include "kafka_int.h"

#include "cg_log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct cg_kafka_topics {
    const cg_config_t *cfg;
    const cg_kafka_conf_t *kc;
    char *bootstrap;
    rd_kafka_t *admin; /* made at the first topic */
};

cg_kafka_topics_t *cg_kafka_topics_new(const cg_config_t *cfg, const char *bootstrap)
{
    cg_kafka_topics_t *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->cfg = cfg;
    t->kc = cg_kafka_conf(cfg);
    if (!(t->bootstrap = strdup(bootstrap ? bootstrap : ""))) {
        free(t);
        return NULL;
    }
    return t;
}

void cg_kafka_topics_destroy(cg_kafka_topics_t *t)
{
    if (!t)
        return;
    if (t->admin)
        rd_kafka_destroy(t->admin);
    free(t->bootstrap);
    free(t);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* CreateTopics for one topic; an existing topic is success. Logs a refusal. */
static void create_topic(rd_kafka_t *rk, const cg_kafka_conf_t *kc, const char *topic,
                         int64_t until, cg_kafka_stop_cb *stop, void *opaque)
{
    int timeout_ms = (int)(until - now_ms());
    char err[512];
    rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(
        topic, kc->topics_partitions > 0 ? kc->topics_partitions : -1,
        kc->topics_replication > 0 ? kc->topics_replication : -1, err, sizeof(err));
    if (!nt) {
        cg_log(CG_LOG_WARN, "topic.create_failed", "%s: %s", topic, err);
        return;
    }
    rd_kafka_AdminOptions_t *opt = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
    if (opt)
        rd_kafka_AdminOptions_set_request_timeout(opt, timeout_ms, err, sizeof(err));
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_CreateTopics(rk, &nt, 1, opt, q);
    rd_kafka_event_t *ev = NULL;
    while (!ev && now_ms() < until && !(stop && stop(opaque)))
        ev = rd_kafka_queue_poll(q, 100);
    const char *why = NULL;
    rd_kafka_resp_err_t code = RD_KAFKA_RESP_ERR_NO_ERROR;
    if (!ev && stop && stop(opaque)) {
        /* stopping: nothing to say */
    } else if (!ev) {
        why = "no answer";
    } else if (rd_kafka_event_error(ev)) {
        why = rd_kafka_event_error_string(ev);
    } else {
        size_t n = 0;
        const rd_kafka_topic_result_t **res =
            rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &n);
        code = n == 1 ? rd_kafka_topic_result_error(res[0]) : RD_KAFKA_RESP_ERR__FAIL;
        if (code == RD_KAFKA_RESP_ERR_NO_ERROR)
            cg_log(CG_LOG_INFO, "topic.created", "%s", topic);
        else if (code != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS)
            why = n == 1 && rd_kafka_topic_result_error_string(res[0])
                      ? rd_kafka_topic_result_error_string(res[0])
                      : rd_kafka_err2str(code);
    }
    if (why)
        cg_log(CG_LOG_WARN, "topic.create_failed",
               "%s: %s (it must exist, or be auto-created by the broker; topics.create false "
               "stops trying)",
               topic, why);
    if (ev)
        rd_kafka_event_destroy(ev);
    rd_kafka_queue_destroy(q);
    rd_kafka_AdminOptions_destroy(opt);
    rd_kafka_NewTopic_destroy(nt);
}

/* 1 when the metadata shows topic with partitions, each led. */
static int topic_ready(rd_kafka_t *rk, rd_kafka_topic_t *rkt, int timeout_ms)
{
    const struct rd_kafka_metadata *md = NULL;
    if (rd_kafka_metadata(rk, 0, rkt, &md, timeout_ms) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return 0;
    int ready = md->topic_cnt == 1 && !md->topics[0].err && md->topics[0].partition_cnt > 0;
    for (int p = 0; ready && p < md->topics[0].partition_cnt; p++)
        ready = !md->topics[0].partitions[p].err && md->topics[0].partitions[p].leader >= 0;
    rd_kafka_metadata_destroy(md);
    return ready;
}

int cg_kafka_topics_ensure(cg_kafka_topics_t *t, const char *topic, cg_kafka_stop_cb *stop,
                           void *opaque)
{
    const cg_kafka_conf_t *kc = t ? t->kc : NULL;
    if (!kc || kc->topics_wait_ms <= 0 || kc->embedded_enabled)
        return 0; /* the embedded (mock) broker creates a topic at its first record */
    if (!t->admin) {
        /* a plain client: never transactional, whatever delivery.semantics says */
        cg_config_t plain = *t->cfg;
        plain.semantics = CG_DELIVERY_AT_LEAST_ONCE;
        char err[512];
        if (!(t->admin =
                  cg_kafka_producer_new(&plain, t->bootstrap, NULL, NULL, err, sizeof(err)))) {
            cg_log(CG_LOG_WARN, "topic.not_ready", "%s: no client to ask with: %s", topic, err);
            return -1;
        }
    }
    rd_kafka_t *rk = t->admin;
    int64_t until = now_ms() + kc->topics_wait_ms;
    if (kc->topics_create)
        create_topic(rk, kc, topic, until, stop, opaque);
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    if (!rkt)
        return -1;
    int ready = 0;
    for (int64_t left; !ready && (left = until - now_ms()) > 0 && !(stop && stop(opaque));) {
        ready = topic_ready(rk, rkt, (int)(left < 500 ? left : 500));
        if (!ready) {
            struct timespec pause = {0, 50 * 1000000L};
            nanosleep(&pause, NULL);
        }
    }
    rd_kafka_topic_destroy(rkt);
    if (!ready && !(stop && stop(opaque)))
        cg_log(CG_LOG_WARN, "topic.not_ready",
               "%s: no leader for every partition within topics.wait_ms (%d ms); its records "
               "wait in the producer",
               topic, kc->topics_wait_ms);
    return ready ? 0 : -1;
}
