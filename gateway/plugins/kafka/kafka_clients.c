/* kafka_clients.c - librdkafka clients built from the config: our defaults, then the user's kafka.*
 * settings, then what the delivery semantics require; their logs and errors go to cg_log. */
#include "kafka_int.h"

#include "cg_log.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void cg_kafka_on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    (void)rk;
    /* syslog levels: 0-3 error, 4 warning, 5-6 info, 7 debug */
    cg_log_level_t l = level <= 3   ? CG_LOG_ERROR
                       : level == 4 ? CG_LOG_WARN
                       : level <= 6 ? CG_LOG_INFO
                                    : CG_LOG_DEBUG;
    /* the kafka.* map goes to both clients on purpose; the other client's properties are not
     * worth a warning */
    if (!strcmp(fac, "CONFWARN") && (strstr(buf, "is a consumer property and will be ignored") ||
                                     strstr(buf, "is a producer property and will be ignored") ||
                                     /* only the clients validation makes have none */
                                     strstr(buf, "No `bootstrap.servers` configured")))
        l = CG_LOG_DEBUG;
    /* exactly-once start: InitProducerId waits while the coordinator aborts the transaction a
     * crashed instance left open (that is the fencing working) or while it loads; librdkafka
     * retries and says so as a warning, but nothing is wrong */
    if (!strcmp(fac, "GETPID") && l == CG_LOG_WARN && strstr(buf, "retrying")) {
        if (strstr(buf, rd_kafka_err2str(RD_KAFKA_RESP_ERR_CONCURRENT_TRANSACTIONS))) {
            cg_log(CG_LOG_INFO, "transaction.fencing",
                   "the transaction a previous instance with this transactional.id left open is "
                   "being aborted (expected after a crash); waiting for it: %s",
                   buf);
            return;
        }
        if (strstr(buf, rd_kafka_err2str(RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS)))
            l = CG_LOG_INFO;
    }
    cg_log(l, "kafka.log", "%s: %s", fac, buf);
}

static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    (void)rk;
    (void)opaque;
    /* librdkafka recovers from everything but fatal errors by itself; say what happened */
    cg_log(err == RD_KAFKA_RESP_ERR__FATAL ? CG_LOG_ERROR : CG_LOG_WARN, "kafka.error", "%s: %s",
           rd_kafka_err2name((rd_kafka_resp_err_t)err), reason);
}

int cg_kafka_conf_set(rd_kafka_conf_t *conf, const char *k, const char *v, char *errstr,
                      size_t errstr_size)
{
    char e[512];
    if (rd_kafka_conf_set(conf, k, v, e, sizeof(e)) != RD_KAFKA_CONF_OK) {
        snprintf(errstr, errstr_size, "kafka.%s: %s", k, e);
        return -1;
    }
    return 0;
}

/* Whether a property's value must never be shown, even when written in the file. */
static int is_secret(const cg_config_kv_t *kv)
{
    return kv->secret || strstr(kv->key, "password") || strstr(kv->key, "secret") ||
           !strcmp(kv->key, "ssl.key.pem") || !strcmp(kv->key, "sasl.oauthbearer.config");
}

/* Blanks kv's value out of text when it is a secret. */
static void redact_one(const cg_config_kv_t *kv, char *text)
{
    size_t vl = strlen(kv->value);
    for (char *p; is_secret(kv) && vl && (p = strstr(text, kv->value)) != NULL;) {
        memmove(p + 3, p + vl, strlen(p + vl) + 1);
        memcpy(p, "***", 3);
    }
}

void cg_kafka_redact(const cg_kafka_conf_t *kc, char *text)
{
    for (size_t i = 0; kc && i < kc->n_kafka; i++)
        redact_one(&kc->kafka[i], text);
}

int cg_kafka_conf_set_kv(rd_kafka_conf_t *conf, const cg_config_kv_t *kv, char *errstr,
                         size_t errstr_size)
{
    char e[512];
    if (rd_kafka_conf_set(conf, kv->key, kv->value, e, sizeof(e)) == RD_KAFKA_CONF_OK)
        return 0;
    redact_one(kv, e); /* librdkafka quotes a refused value ("Invalid value \"x\" for ...") */
    snprintf(errstr, errstr_size, "'kafka.%s': %s", kv->key, e);
    return -1;
}

/* Our defaults, then the user's kafka.* settings, then what delivery semantics require. */
static rd_kafka_conf_t *conf_build(const cg_kafka_conf_t *kc, const char *bootstrap,
                                   const char *const *defaults, const char *const *forced,
                                   void *opaque, char *errstr, size_t errstr_size)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set_log_cb(conf, cg_kafka_on_log);
    rd_kafka_conf_set_error_cb(conf, on_error);
    rd_kafka_conf_set_opaque(conf, opaque);
    for (size_t i = 0; defaults[i]; i += 2)
        if (cg_kafka_conf_set(conf, defaults[i], defaults[i + 1], errstr, errstr_size))
            goto fail;
    /* a consumer- or producer-only property is fine for the other client to ignore */
    for (size_t i = 0; kc && i < kc->n_kafka; i++)
        if (cg_kafka_conf_set_kv(conf, &kc->kafka[i], errstr, errstr_size))
            goto fail;
    for (size_t i = 0; forced[i]; i += 2)
        if (cg_kafka_conf_set(conf, forced[i], forced[i + 1], errstr, errstr_size))
            goto fail;
    if (cg_kafka_conf_set(conf, "bootstrap.servers", bootstrap, errstr, errstr_size))
        goto fail;
    return conf;
fail:
    rd_kafka_conf_destroy(conf);
    return NULL;
}

const char *cg_kafka_transactional_id(const cg_config_t *cfg, char *buf, size_t size)
{
    const cg_kafka_conf_t *kc = cg_kafka_conf(cfg);
    if (kc->transactional_id) {
        snprintf(buf, size, "%s", kc->transactional_id);
        return buf;
    }
    /* stable across restarts of one instance, distinct between hosts */
    char host[256] = "localhost";
    if (gethostname(host, sizeof(host) - 1) != 0 || !host[0])
        snprintf(host, sizeof(host), "localhost");
    host[sizeof(host) - 1] = '\0';
    snprintf(buf, size, "%s.%s", kc->group_id, host);
    return buf;
}

rd_kafka_t *cg_kafka_producer_new(const cg_config_t *cfg, const char *bootstrap,
                                  cg_kafka_dr_cb *dr_cb, void *opaque, char *errstr,
                                  size_t errstr_size)
{
    static const char *const defaults[] = {"linger.ms", "5", "client.id", "cohortgate", NULL};
    /* idempotence keeps per-partition order and avoids duplicates from producer retries */
    char tid[512];
    const char *forced[] = {"enable.idempotence", "true", "acks", "all", NULL, NULL, NULL};
    if (cfg && cfg->semantics == CG_DELIVERY_EXACTLY_ONCE) {
        forced[4] = "transactional.id";
        forced[5] = cg_kafka_transactional_id(cfg, tid, sizeof(tid));
    }
    rd_kafka_conf_t *conf =
        conf_build(cg_kafka_conf(cfg), bootstrap, defaults, forced, opaque, errstr, errstr_size);
    if (!conf)
        return NULL;
    if (dr_cb)
        rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, errstr_size);
    if (!rk)
        rd_kafka_conf_destroy(conf);
    return rk;
}

rd_kafka_t *cg_kafka_consumer_new(const cg_config_t *cfg, const cg_kafka_conf_t *kc,
                                  const char *bootstrap, cg_kafka_rebalance_cb *rebalance_cb,
                                  cg_kafka_commit_cb *commit_cb, cg_kafka_stats_cb *stats_cb,
                                  void *opaque, char *errstr, size_t errstr_size)
{
    if (!kc)
        kc = cg_kafka_conf(cfg);
    /* end-of-partition events tell a replay (--idle-exit) that it has caught up; input of an
     * aborted transaction upstream is never mapped */
    const char *defaults[] = {"client.id",
                              "cohortgate",
                              "auto.offset.reset",
                              "earliest",
                              "group.id",
                              kc->group_id,
                              "isolation.level",
                              "read_committed",
                              "enable.partition.eof",
                              "true",
                              NULL};
    /* offsets are committed by the gateway once deliveries are reported (or in its
     * transactions), never automatically */
    const char *forced[] = {
        "enable.auto.commit", "false", "enable.auto.offset.store", "false", NULL, NULL, NULL};
    if (cfg->semantics == CG_DELIVERY_EXACTLY_ONCE) {
        forced[4] = "isolation.level";
        forced[5] = "read_committed";
    }
    rd_kafka_conf_t *conf =
        conf_build(kc, bootstrap, defaults, forced, opaque, errstr, errstr_size);
    if (!conf)
        return NULL;
    if (rebalance_cb)
        rd_kafka_conf_set_rebalance_cb(conf, rebalance_cb);
    if (commit_cb)
        rd_kafka_conf_set_offset_commit_cb(conf, commit_cb);
    /* statistics feed the metrics' consumer lag; a kafka.statistics.interval.ms wins */
    if (stats_cb && !cg_kafka_get(kc, "statistics.interval.ms") &&
        cg_kafka_conf_set(conf, "statistics.interval.ms", "5000", errstr, errstr_size)) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    if (stats_cb)
        rd_kafka_conf_set_stats_cb(conf, stats_cb);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, errstr_size);
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_poll_set_consumer(rk);
    return rk;
}

const char *cg_kafka_header(const rd_kafka_message_t *m, const char *name, int at, char *buf,
                            size_t size)
{
    rd_kafka_headers_t *h = NULL;
    const void *v = NULL;
    const char *found;
    size_t len = 0;
    buf[0] = '\0';
    if (rd_kafka_message_headers(m, &h) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return buf;
    /* where the engine puts it (it writes each name once), else the last one */
    int hit = at >= 0 && at < (int)rd_kafka_header_cnt(h) &&
              !rd_kafka_header_get_all(h, (size_t)at, &found, &v, &len) && !strcmp(found, name);
    if (hit || rd_kafka_header_get_last(h, name, &v, &len) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        if (!v)
            return buf;
        len = len < size - 1 ? len : size - 1;
        memcpy(buf, v, len);
        buf[len] = '\0';
    }
    return buf;
}
