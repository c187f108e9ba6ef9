/* kafka_util.c - real-broker test helpers (see kafka_util.h). */
#include "kafka_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

const char *tk_bootstrap(void)
{
    const char *b = getenv("COHORTGATE_TEST_BOOTSTRAP");
    return b && *b ? b : NULL;
}

void tk_unique_name(char *out, size_t n, const char *prefix)
{
    static int seq;
    snprintf(out, n, "%s-%d-%ld-%d", prefix, (int)getpid(), (long)time(NULL), seq++);
}

static rd_kafka_conf_t *base_conf(void)
{
    char err[512];
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    if (rd_kafka_conf_set(c, "bootstrap.servers", tk_bootstrap(), err, sizeof(err))) {
        fprintf(stderr, "%s\n", err);
        abort();
    }
    return c;
}

int tk_create_topic(const char *topic, int partitions)
{
    char err[512];
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, base_conf(), err, sizeof(err));
    if (!rk) {
        fprintf(stderr, "tk_create_topic: %s\n", err);
        return -1;
    }
    rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(topic, partitions, 1, err, sizeof(err));
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_CreateTopics(rk, &nt, 1, NULL, q);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 30000);
    int rc = -1;
    if (ev && !rd_kafka_event_error(ev)) {
        size_t n;
        const rd_kafka_topic_result_t **res =
            rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &n);
        if (n == 1 &&
            (rd_kafka_topic_result_error(res[0]) == RD_KAFKA_RESP_ERR_NO_ERROR ||
             rd_kafka_topic_result_error(res[0]) == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS))
            rc = 0;
        else if (n == 1)
            fprintf(stderr, "create %s: %s\n", topic, rd_kafka_topic_result_error_string(res[0]));
    } else {
        fprintf(stderr, "create %s: %s\n", topic, ev ? rd_kafka_event_error_string(ev) : "timeout");
    }
    if (ev)
        rd_kafka_event_destroy(ev);
    rd_kafka_NewTopic_destroy(nt);
    rd_kafka_queue_destroy(q);
    rd_kafka_destroy(rk);
    return rc;
}

rd_kafka_t *tk_producer(void)
{
    char err[512];
    rd_kafka_conf_t *c = base_conf();
    rd_kafka_conf_set(c, "enable.idempotence", "true", err, sizeof(err));
    rd_kafka_conf_set(c, "linger.ms", "5", err, sizeof(err));
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, c, err, sizeof(err));
    if (!rk) {
        fprintf(stderr, "tk_producer: %s\n", err);
        abort();
    }
    return rk;
}

static char *dup_n(const void *p, size_t n)
{
    if (!p)
        return NULL;
    char *s = malloc(n + 1);
    memcpy(s, p, n);
    s[n] = '\0';
    return s;
}

size_t tk_read_all(const char *topic, tk_msg_t **out)
{
    char err[512];
    rd_kafka_conf_t *c = base_conf();
    rd_kafka_conf_set(c, "group.id", "cohortgate-test-reader", err, sizeof(err));
    rd_kafka_conf_set(c, "enable.auto.commit", "false", err, sizeof(err));
    rd_kafka_conf_set(c, "enable.partition.eof", "true", err, sizeof(err));
    rd_kafka_conf_set(c, "isolation.level", "read_committed", err, sizeof(err));
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, c, err, sizeof(err));
    rd_kafka_poll_set_consumer(rk);
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    const struct rd_kafka_metadata *md;
    int parts = 0;
    if (rd_kafka_metadata(rk, 0, rkt, &md, 10000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        if (md->topic_cnt == 1 && !md->topics[0].err)
            parts = md->topics[0].partition_cnt;
        rd_kafka_metadata_destroy(md);
    }
    rd_kafka_topic_destroy(rkt);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(parts);
    for (int p = 0; p < parts; p++)
        rd_kafka_topic_partition_list_add(l, topic, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_assign(rk, l);
    rd_kafka_topic_partition_list_destroy(l);

    size_t n = 0, cap = 0;
    tk_msg_t *v = NULL;
    int eof = 0, idle = 0;
    while (eof < parts && idle < 20000) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if (!m) {
            idle += 100;
            continue;
        }
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            eof++;
        } else if (!m->err) {
            if (n == cap) {
                cap = cap ? cap * 2 : 256;
                v = realloc(v, cap * sizeof(*v));
            }
            tk_msg_t *t = &v[n++];
            t->partition = m->partition;
            t->offset = m->offset;
            t->key = dup_n(m->key, m->key_len);
            t->key_len = m->key_len;
            t->value = dup_n(m->payload, m->len);
            t->value_len = m->len;
            rd_kafka_headers_t *h = NULL;
            size_t hl = 0;
            char *hs = calloc(1, 1);
            if (rd_kafka_message_headers(m, &h) == RD_KAFKA_RESP_ERR_NO_ERROR) {
                const char *name;
                const void *val;
                size_t vlen;
                for (size_t i = 0; !rd_kafka_header_get_all(h, i, &name, &val, &vlen); i++) {
                    size_t add = strlen(name) + vlen + 2;
                    hs = realloc(hs, hl + add + 1);
                    hl += (size_t)sprintf(hs + hl, "%s=%.*s\n", name, (int)vlen, (const char *)val);
                }
            }
            t->headers = hs;
        } else {
            fprintf(stderr, "tk_read_all(%s): %s\n", topic, rd_kafka_message_errstr(m));
        }
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    *out = v;
    return n;
}

void tk_msgs_free(tk_msg_t *m, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(m[i].key);
        free(m[i].value);
        free(m[i].headers);
    }
    free(m);
}

const char *tk_header(const tk_msg_t *m, const char *name, char *buf, size_t n)
{
    size_t nl = strlen(name);
    for (const char *p = m->headers; p && *p;) {
        const char *eol = strchr(p, '\n');
        if (!eol)
            break;
        if (!strncmp(p, name, nl) && p[nl] == '=') {
            snprintf(buf, n, "%.*s", (int)(eol - p - (ptrdiff_t)nl - 1), p + nl + 1);
            return buf;
        }
        p = eol + 1;
    }
    return NULL;
}

int tk_group_lag(const char *group, const char *topic, int partitions, int64_t *end_sum,
                 int64_t *committed_sum)
{
    char err[512];
    rd_kafka_conf_t *c = base_conf();
    rd_kafka_conf_set(c, "group.id", group, err, sizeof(err));
    rd_kafka_conf_set(c, "enable.auto.commit", "false", err, sizeof(err));
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, c, err, sizeof(err));
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(partitions);
    for (int p = 0; p < partitions; p++)
        rd_kafka_topic_partition_list_add(l, topic, p);
    int rc = rd_kafka_committed(rk, l, 10000) ? -1 : 0;
    *end_sum = 0;
    *committed_sum = 0;
    for (int p = 0; rc == 0 && p < partitions; p++) {
        int64_t lo, hi;
        if (rd_kafka_query_watermark_offsets(rk, topic, p, &lo, &hi, 10000)) {
            rc = -1;
            break;
        }
        *end_sum += hi;
        if (l->elems[p].offset > 0)
            *committed_sum += l->elems[p].offset;
    }
    rd_kafka_topic_partition_list_destroy(l);
    rd_kafka_destroy(rk);
    return rc;
}
