/* kafka_print.c - reads topics from the beginning to their end and prints each one's count and
 * records (the demo's report). */
#include "kafka_int.h"

#include "cg_buf.h"
#include "cg_log.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

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
    rd_kafka_conf_set_log_cb(conf, cg_kafka_on_log);
    if (cg_kafka_conf_set(conf, "bootstrap.servers", bootstrap, errstr, sizeof(errstr)) ||
        cg_kafka_conf_set(conf, "group.id", "cohortgate-report", errstr, sizeof(errstr)) ||
        cg_kafka_conf_set(conf, "enable.auto.commit", "false", errstr, sizeof(errstr)) ||
        cg_kafka_conf_set(conf, "enable.partition.eof", "true", errstr, sizeof(errstr))) {
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
