/* kafka.c - librdkafka clients from the config, the embedded demo broker, the topic printer. */
#include "cg_kafka.h"

#include "cg_buf.h"
#include "cg_log.h"

#include <dirent.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <librdkafka/rdkafka_mock.h>

static void on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
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
                                     strstr(buf, "is a producer property and will be ignored")))
        l = CG_LOG_DEBUG;
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

static int conf_set(rd_kafka_conf_t *conf, const char *k, const char *v, char *errstr,
                    size_t errstr_size)
{
    char e[512];
    if (rd_kafka_conf_set(conf, k, v, e, sizeof(e)) != RD_KAFKA_CONF_OK) {
        snprintf(errstr, errstr_size, "kafka.%s: %s", k, e);
        return -1;
    }
    return 0;
}

/* Our defaults, then the user's kafka.* settings, then what delivery semantics require. */
static rd_kafka_conf_t *conf_build(const cg_config_t *cfg, const char *bootstrap,
                                   const char *const *defaults, const char *const *forced,
                                   void *opaque, char *errstr, size_t errstr_size)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set_log_cb(conf, on_log);
    rd_kafka_conf_set_error_cb(conf, on_error);
    rd_kafka_conf_set_opaque(conf, opaque);
    for (size_t i = 0; defaults[i]; i += 2)
        if (conf_set(conf, defaults[i], defaults[i + 1], errstr, errstr_size))
            goto fail;
    for (size_t i = 0; cfg && i < cfg->n_kafka; i++) {
        /* a consumer- or producer-only property is fine for the other client to ignore */
        char e[512];
        if (rd_kafka_conf_set(conf, cfg->kafka[i].key, cfg->kafka[i].value, e, sizeof(e)) !=
            RD_KAFKA_CONF_OK) {
            snprintf(errstr, errstr_size, "kafka.%s: %s", cfg->kafka[i].key, e);
            goto fail;
        }
    }
    for (size_t i = 0; forced[i]; i += 2)
        if (conf_set(conf, forced[i], forced[i + 1], errstr, errstr_size))
            goto fail;
    if (conf_set(conf, "bootstrap.servers", bootstrap, errstr, errstr_size))
        goto fail;
    return conf;
fail:
    rd_kafka_conf_destroy(conf);
    return NULL;
}

const char *cg_kafka_transactional_id(const cg_config_t *cfg, char *buf, size_t size)
{
    if (cfg->transactional_id) {
        snprintf(buf, size, "%s", cfg->transactional_id);
        return buf;
    }
    /* stable across restarts of one instance, distinct between hosts */
    char host[256] = "localhost";
    if (gethostname(host, sizeof(host) - 1) != 0 || !host[0])
        snprintf(host, sizeof(host), "localhost");
    host[sizeof(host) - 1] = '\0';
    snprintf(buf, size, "%s.%s", cfg->group_id, host);
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
        conf_build(cfg, bootstrap, defaults, forced, opaque, errstr, errstr_size);
    if (!conf)
        return NULL;
    if (dr_cb)
        rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, errstr_size);
    if (!rk)
        rd_kafka_conf_destroy(conf);
    return rk;
}

rd_kafka_t *cg_kafka_consumer_new(const cg_config_t *cfg, const char *bootstrap,
                                  cg_kafka_rebalance_cb *rebalance_cb,
                                  cg_kafka_commit_cb *commit_cb, cg_kafka_stats_cb *stats_cb,
                                  void *opaque, char *errstr, size_t errstr_size)
{
    /* end-of-partition events tell a replay (--idle-exit) that it has caught up; input of an
     * aborted transaction upstream is never mapped */
    const char *defaults[] = {"client.id",
                              "cohortgate",
                              "auto.offset.reset",
                              "earliest",
                              "group.id",
                              cfg->group_id,
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
        conf_build(cfg, bootstrap, defaults, forced, opaque, errstr, errstr_size);
    if (!conf)
        return NULL;
    if (rebalance_cb)
        rd_kafka_conf_set_rebalance_cb(conf, rebalance_cb);
    if (commit_cb)
        rd_kafka_conf_set_offset_commit_cb(conf, commit_cb);
    /* statistics feed the metrics' consumer lag; a kafka.statistics.interval.ms wins */
    if (stats_cb && !cg_config_kafka_get(cfg, "statistics.interval.ms") &&
        conf_set(conf, "statistics.interval.ms", "5000", errstr, errstr_size)) {
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

/* ---- for subsystems that do not link librdkafka's types ---- */

const char *cg_kafka_header(const rd_kafka_message_t *m, const char *name, char *buf, size_t size)
{
    rd_kafka_headers_t *h = NULL;
    const void *v = NULL;
    size_t len = 0;
    buf[0] = '\0';
    if (rd_kafka_message_headers(m, &h) == RD_KAFKA_RESP_ERR_NO_ERROR &&
        rd_kafka_header_get_last(h, name, &v, &len) == RD_KAFKA_RESP_ERR_NO_ERROR && v) {
        len = len < size - 1 ? len : size - 1;
        memcpy(buf, v, len);
        buf[len] = '\0';
    }
    return buf;
}

int cg_kafka_outq_len(void *rk)
{
    return rk ? rd_kafka_outq_len(rk) : 0;
}

/* ---- embedded broker ---- */

struct cg_kafka_embedded {
    rd_kafka_t *rk; /* owns the mock cluster */
    rd_kafka_mock_cluster_t *mcluster;
};

static int read_file(const char *path, cg_buf_t *b)
{
    cg_buf_reset(b);
    return cg_buf_read_file(b, path) == CG_OK ? 0 : -1;
}

static int preload_dir(rd_kafka_t *rk, const char *topic, const char *dir, char *errstr,
                       size_t errstr_size)
{
    struct dirent **names;
    int n = scandir(dir, &names, NULL, alphasort);
    if (n < 0) {
        snprintf(errstr, errstr_size, "embedded_broker.preload: cannot read folder %s: %m", dir);
        return -1;
    }
    int rc = 0, produced = 0;
    cg_buf_t b;
    cg_buf_init(&b);
    for (int i = 0; i < n; i++) {
        char path[4096];
        struct stat st;
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]->d_name);
        if (rc == 0 && names[i]->d_name[0] != '.' && stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
            if (read_file(path, &b) != 0) {
                snprintf(errstr, errstr_size, "embedded_broker.preload: cannot read %s", path);
                rc = -1;
            } else {
                rd_kafka_resp_err_t err =
                    rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic),
                                      RD_KAFKA_V_KEY(names[i]->d_name, strlen(names[i]->d_name)),
                                      RD_KAFKA_V_VALUE(b.data, b.len),
                                      RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
                if (err) {
                    snprintf(errstr, errstr_size, "embedded_broker.preload: %s",
                             rd_kafka_err2str(err));
                    rc = -1;
                }
                produced++;
            }
        }
        free(names[i]);
    }
    free(names);
    cg_buf_free(&b);
    if (rc == 0 && rd_kafka_flush(rk, 10000) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(errstr, errstr_size, "embedded_broker.preload: flush timed out");
        rc = -1;
    }
    if (rc == 0)
        cg_log(CG_LOG_INFO, "embedded_broker.preload", "produced %d file(s) from %s to %s",
               produced, dir, topic);
    return rc;
}

cg_kafka_embedded_t *cg_kafka_embedded_start(const cg_config_t *cfg, char *errstr,
                                             size_t errstr_size)
{
    cg_kafka_embedded_t *eb = calloc(1, sizeof(*eb));
    if (!eb)
        return NULL;
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set_log_cb(conf, on_log);
    /* this handle only hosts the cluster: quiet its "no bootstrap.servers" warning */
    rd_kafka_conf_set(conf, "log_level", "3", NULL, 0);
    eb->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, errstr_size);
    if (!eb->rk) {
        rd_kafka_conf_destroy(conf);
        goto fail;
    }
    eb->mcluster = rd_kafka_mock_cluster_new(eb->rk, 1);
    if (!eb->mcluster) {
        snprintf(errstr, errstr_size, "embedded broker: could not start librdkafka's mock cluster");
        goto fail;
    }
    const char *topics[2] = {cfg->output_topic, cfg->dead_letter_topic};
    for (size_t i = 0; i < cfg->n_inputs + 2; i++) {
        const char *t = i < cfg->n_inputs ? cfg->inputs[i].topic : topics[i - cfg->n_inputs];
        rd_kafka_resp_err_t err =
            rd_kafka_mock_topic_create(eb->mcluster, t, cfg->embedded_partitions, 1);
        if (err) {
            snprintf(errstr, errstr_size, "embedded broker: create topic %s: %s", t,
                     rd_kafka_err2str(err));
            goto fail;
        }
    }
    if (cfg->n_preload) {
        /* produce through the network path, like a hospital's interface engine would */
        rd_kafka_t *p = cg_kafka_producer_new(NULL, rd_kafka_mock_cluster_bootstraps(eb->mcluster),
                                              NULL, NULL, errstr, errstr_size);
        if (!p)
            goto fail;
        int rc = 0;
        for (size_t i = 0; rc == 0 && i < cfg->n_preload; i++)
            rc = preload_dir(p, cfg->preload[i].topic, cfg->preload[i].dir, errstr, errstr_size);
        rd_kafka_destroy(p);
        if (rc)
            goto fail;
    }
    cg_log(CG_LOG_INFO, "embedded_broker.started",
           "librdkafka mock cluster on %s (demo only: production sets kafka.bootstrap.servers)",
           rd_kafka_mock_cluster_bootstraps(eb->mcluster));
    return eb;
fail:
    cg_kafka_embedded_stop(eb);
    return NULL;
}

const char *cg_kafka_embedded_bootstrap(const cg_kafka_embedded_t *eb)
{
    return rd_kafka_mock_cluster_bootstraps(eb->mcluster);
}

void cg_kafka_embedded_stop(cg_kafka_embedded_t *eb)
{
    if (!eb)
        return;
    if (eb->mcluster)
        rd_kafka_mock_cluster_destroy(eb->mcluster);
    if (eb->rk)
        rd_kafka_destroy(eb->rk);
    free(eb);
}

/* ---- topic printer ---- */

static const char *header_str(rd_kafka_headers_t *h, const char *name, char *buf, size_t n)
{
    const void *v;
    size_t len;
    if (!h || rd_kafka_header_get_last(h, name, &v, &len) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(buf, n, "-");
        return buf;
    }
    snprintf(buf, n, "%.*s", (int)len, (const char *)v);
    return buf;
}

static void print_one(FILE *out, rd_kafka_message_t *m)
{
    rd_kafka_headers_t *h = NULL;
    rd_kafka_message_headers(m, &h);
    const void *v;
    size_t len;
    cg_buf_t b;
    cg_buf_init(&b);
    if (h && rd_kafka_header_get_last(h, "cg.error.code", &v, &len) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        char code[64], stage[64], reason[512];
        size_t shown = m->len > 160 ? 160 : m->len;
        cg_buf_put_json_str(&b, m->payload, shown);
        fprintf(out, "  [%" PRId32 ":%" PRId64 "] %s at %s: %s\n      original %zu bytes: %s%s\n",
                m->partition, m->offset, header_str(h, "cg.error.code", code, sizeof(code)),
                header_str(h, "cg.error.stage", stage, sizeof(stage)),
                header_str(h, "cg.error.reason", reason, sizeof(reason)), m->len, b.data,
                shown < m->len ? "…" : "");
    } else {
        fprintf(out, "  [%" PRId32 ":%" PRId64 "] %.*s\n", m->partition, m->offset, (int)m->len,
                (const char *)m->payload);
    }
    cg_buf_free(&b);
}

cg_err_t cg_kafka_print_topics(const char *bootstrap, const char *const *topics, size_t n_topics,
                               int max_per_topic, FILE *out)
{
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set_log_cb(conf, on_log);
    if (conf_set(conf, "bootstrap.servers", bootstrap, errstr, sizeof(errstr)) ||
        conf_set(conf, "group.id", "cohortgate-report", errstr, sizeof(errstr)) ||
        conf_set(conf, "enable.auto.commit", "false", errstr, sizeof(errstr)) ||
        conf_set(conf, "enable.partition.eof", "true", errstr, sizeof(errstr))) {
        rd_kafka_conf_destroy(conf);
        cg_log(CG_LOG_ERROR, "report", "%s", errstr);
        return CG_ERR_KAFKA;
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        cg_log(CG_LOG_ERROR, "report", "%s", errstr);
        return CG_ERR_KAFKA;
    }
    rd_kafka_poll_set_consumer(rk);
    cg_err_t rc = CG_OK;
    for (size_t t = 0; t < n_topics && rc == CG_OK; t++) {
        rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topics[t], NULL);
        const struct rd_kafka_metadata *md = NULL;
        rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 0, rkt, &md, 10000);
        rd_kafka_topic_destroy(rkt);
        if (err || md->topic_cnt != 1 || md->topics[0].err) {
            fprintf(out, "== %s: not readable: %s\n", topics[t],
                    rd_kafka_err2str(err ? err : md->topics[0].err));
            if (md)
                rd_kafka_metadata_destroy(md);
            continue;
        }
        int n_parts = md->topics[0].partition_cnt;
        rd_kafka_metadata_destroy(md);
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(n_parts);
        for (int p = 0; p < n_parts; p++)
            rd_kafka_topic_partition_list_add(l, topics[t], p)->offset = RD_KAFKA_OFFSET_BEGINNING;
        rd_kafka_assign(rk, l);
        rd_kafka_topic_partition_list_destroy(l);

        /* collect first, so the count can head the listing */
        rd_kafka_message_t **msgs = NULL;
        size_t n = 0, cap = 0;
        int eofs = 0, waited = 0;
        while (eofs < n_parts && waited < 10000) {
            rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
            if (!m) {
                waited += 100;
                continue;
            }
            if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                eofs++;
                rd_kafka_message_destroy(m);
            } else if (m->err) {
                fprintf(out, "== %s: %s\n", topics[t], rd_kafka_message_errstr(m));
                rd_kafka_message_destroy(m);
                rc = CG_ERR_KAFKA;
                break;
            } else {
                if (n == cap) {
                    cap = cap ? cap * 2 : 64;
                    msgs = realloc(msgs, cap * sizeof(*msgs));
                }
                msgs[n++] = m;
            }
        }
        fprintf(out, "\n== topic %s: %zu record(s) ==\n", topics[t], n);
        /* a count per table (the cg.table header) reads faster than the records */
        const char *tables[32];
        size_t counts[32], n_tables = 0;
        for (size_t i = 0; i < n; i++) {
            rd_kafka_headers_t *h = NULL;
            const void *v;
            size_t len;
            if (rd_kafka_message_headers(msgs[i], &h) ||
                rd_kafka_header_get_last(h, "cg.table", &v, &len))
                continue;
            size_t k = 0;
            while (k < n_tables && (strlen(tables[k]) != len || memcmp(tables[k], v, len)))
                k++;
            if (k == n_tables && n_tables < 32) {
                tables[n_tables] = strndup(v, len);
                counts[n_tables++] = 0;
            }
            if (k < n_tables)
                counts[k]++;
        }
        for (size_t k = 0; k < n_tables; k++) {
            fprintf(out, "%s%s %zu", k ? ", " : "  tables: ", tables[k], counts[k]);
            free((void *)tables[k]);
        }
        if (n_tables)
            fputc('\n', out);
        for (size_t i = 0; i < n; i++) {
            if ((int)i < max_per_topic)
                print_one(out, msgs[i]);
            rd_kafka_message_destroy(msgs[i]);
        }
        if ((int)n > max_per_topic)
            fprintf(out, "  … %zu more\n", n - (size_t)max_per_topic);
        free(msgs);
        rd_kafka_assign(rk, NULL);
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    fflush(out);
    return rc;
}
