/* kafka_embedded.c - the embedded demo broker: librdkafka's in-process mock cluster, its topics
 * created and its preload folders produced before the gateway starts. Never for production. */
#include "kafka_int.h"

#include "cg_buf.h"
#include "cg_log.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <librdkafka/rdkafka_mock.h>

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
    rd_kafka_conf_set_log_cb(conf, cg_kafka_on_log);
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
    const cg_kafka_conf_t *kc = cg_kafka_conf(cfg);
    const char *topics[4] = {cfg->output_topic, cfg->dead_letter_topic, cfg->quality_topic,
                             cfg->outcome_topic};
    for (size_t i = 0; i < kc->n_inputs + 4; i++) {
        const char *t = i < kc->n_inputs ? kc->inputs[i].topic : topics[i - kc->n_inputs];
        if (!t) /* output.outcome_topic is off */
            continue;
        rd_kafka_resp_err_t err =
            rd_kafka_mock_topic_create(eb->mcluster, t, kc->embedded_partitions, 1);
        if (err) {
            snprintf(errstr, errstr_size, "embedded broker: create topic %s: %s", t,
                     rd_kafka_err2str(err));
            goto fail;
        }
    }
    if (kc->n_preload) {
        /* produce through the network path, like a hospital's interface engine would */
        rd_kafka_t *p = cg_kafka_producer_new(NULL, rd_kafka_mock_cluster_bootstraps(eb->mcluster),
                                              NULL, NULL, errstr, errstr_size);
        if (!p)
            goto fail;
        int rc = 0;
        for (size_t i = 0; rc == 0 && i < kc->n_preload; i++)
            rc = preload_dir(p, kc->preload[i].topic, kc->preload[i].dir, errstr, errstr_size);
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
