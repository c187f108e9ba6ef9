/* feed_util.c - a simple feed and its reconciliation (see feed_util.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "feed_util.h"
#include "testing.h"

int feed_is_junk(int i)
{
    return i % 10 == 7;
}

static size_t feed_input(int i, char *buf, size_t n)
{
    if (feed_is_junk(i))
        return (size_t)snprintf(buf, n, "{\"junk\":%d}", i);
    return (size_t)snprintf(buf, n,
                            "MSH|^~\\&|LAB|HOSP|CG|RES|20240314101500||ORU^R01^ORU_R01|E%06d|P|"
                            "2.5.1\rPID|1||%d^^^HOSP^MR||Doe^Jane\rOBX|1|NM|4548-4^HbA1c^LN||6.%d|"
                            "%%|||||F|||20240314093000\r",
                            i, 300000 + i, i % 10);
}

void feed_new(feed_t *f, const char *what)
{
    char prefix[64];
    snprintf(prefix, sizeof(prefix), "cg-it-%s", what);
    tk_unique_name(f->in, sizeof(f->in), prefix);
    snprintf(f->out, sizeof(f->out), "%s.records", f->in);
    snprintf(f->dlq, sizeof(f->dlq), "%s.dlq", f->in);
    snprintf(f->group, sizeof(f->group), "%s.group", f->in);
    assert_int_equal(tk_create_topic(f->in, FEED_PARTITIONS), 0);
    assert_int_equal(tk_create_topic(f->out, FEED_PARTITIONS), 0);
    assert_int_equal(tk_create_topic(f->dlq, FEED_PARTITIONS), 0);
}

void feed_produce(const feed_t *f, int from, int to)
{
    assert_true(to <= FEED_MAX_INPUTS);
    rd_kafka_t *p = tk_producer();
    char buf[512], key[16];
    for (int i = from; i < to; i++) {
        size_t len = feed_input(i, buf, sizeof(buf));
        int kl = snprintf(key, sizeof(key), "e%06d", i);
        rd_kafka_resp_err_t err;
        while ((err = rd_kafka_producev(p, RD_KAFKA_V_TOPIC(f->in), RD_KAFKA_V_KEY(key, kl),
                                        RD_KAFKA_V_VALUE(buf, len),
                                        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                        RD_KAFKA_V_END)) == RD_KAFKA_RESP_ERR__QUEUE_FULL)
            rd_kafka_poll(p, 10);
        assert_int_equal(err, RD_KAFKA_RESP_ERR_NO_ERROR);
    }
    assert_int_equal(rd_kafka_flush(p, 30000), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_destroy(p);
}

cg_config_t *feed_config(const feed_t *f, const char *delivery, int workers,
                         const char *kafka_extra)
{
    return feed_config_top(f, delivery, workers, kafka_extra, "");
}

cg_config_t *feed_config_top(const feed_t *f, const char *delivery, int workers,
                             const char *kafka_extra, const char *top_extra)
{
    char text[4096];
    snprintf(text, sizeof(text),
             "{%s\"group_id\":\"%s\",\"inputs\":[{\"topic\":\"%s\"}],"
             "\"output\":{\"topic\":\"%s\",\"dead_letter_topic\":\"%s\"},"
             "\"mapping\":{\"specs\":\"" CG_SOURCE_DIR "/specs\"},"
             "\"pseudonym\":{\"key_file\":\"" CG_SOURCE_DIR "/tests/golden/key\","
             "\"message_id\":\"plain\"},"
             "\"delivery\":{%s},\"workers\":%d,"
             "\"log\":{\"level\":\"warn\"},\"metrics\":{\"listen\":\"off\"},"
             "\"kafka\":{%s\"bootstrap.servers\":\"%s\",\"session.timeout.ms\":6000}}",
             top_extra, f->group, f->in, f->out, f->dlq, delivery, workers, kafka_extra,
             tk_bootstrap());
    cg_error_t err;
    cg_config_t *cfg = cg_config_load_string(text, "<test>", NULL, &err);
    if (!cfg)
        fprintf(stderr, "%s:%d:%d: %s\n", err.file, err.line, err.column, err.text);
    assert_non_null(cfg);
    return cfg;
}

size_t feed_read(const char *topic, const char *isolation, int *seen)
{
    char err[512];
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    const char *kv[] = {
        "bootstrap.servers",    tk_bootstrap(), "group.id",        "cg-it-feed-reader",
        "enable.auto.commit",   "false",        "isolation.level", isolation,
        "enable.partition.eof", "true"};
    for (size_t k = 0; k < sizeof(kv) / sizeof(kv[0]); k += 2)
        assert_int_equal(rd_kafka_conf_set(c, kv[k], kv[k + 1], err, sizeof(err)),
                         RD_KAFKA_CONF_OK);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, c, err, sizeof(err));
    assert_non_null(rk);
    rd_kafka_poll_set_consumer(rk);
    int parts = tk_partitions(topic); /* FEED_PARTITIONS, or what the gateway created */
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(parts);
    for (int p = 0; p < parts; p++)
        rd_kafka_topic_partition_list_add(l, topic, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
    assert_int_equal(rd_kafka_assign(rk, l), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_topic_partition_list_destroy(l);
    size_t n = 0;
    int eofs = 0, idle = 0;
    while (eofs < parts) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if (!m) {
            assert_true((idle += 100) < 30000); /* a hang guard, not a timing assertion */
            continue;
        }
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            eofs++;
        } else {
            assert_int_equal(m->err, RD_KAFKA_RESP_ERR_NO_ERROR);
            char *v = m->payload ? strndup(m->payload, m->len) : NULL;
            const char *mid = v ? strstr(v, "\"message_id\":\"E") : NULL;
            int i = -1;
            if (mid)
                i = atoi(mid + strlen("\"message_id\":\"E"));
            else if (m->key_len > 1 && ((const char *)m->key)[0] == 'e')
                i = atoi((const char *)m->key + 1);
            free(v);
            assert_true(i >= 0 && i < FEED_MAX_INPUTS);
            seen[i]++;
            n++;
        }
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return n;
}

size_t feed_assert_exactly_once(const feed_t *f, int n)
{
    static int seen[FEED_MAX_INPUTS], dead[FEED_MAX_INPUTS], all[FEED_MAX_INPUTS];
    memset(seen, 0, sizeof(seen));
    memset(dead, 0, sizeof(dead));
    memset(all, 0, sizeof(all));
    size_t n_rec = feed_read(f->out, "read_committed", seen);
    size_t n_dlq = feed_read(f->dlq, "read_committed", dead);
    for (int i = 0; i < n; i++) {
        if (seen[i] + dead[i] != 1 || dead[i] != feed_is_junk(i))
            fprintf(stderr, "input %d: %d record(s), %d dead letter(s)\n", i, seen[i], dead[i]);
        assert_int_equal(seen[i] + dead[i], 1);
        assert_int_equal(dead[i], feed_is_junk(i));
    }
    assert_int_equal(n_rec + n_dlq, n);
    return feed_read(f->out, "read_uncommitted", all) + feed_read(f->dlq, "read_uncommitted", all);
}

int64_t feed_committed(const feed_t *f)
{
    int64_t end, committed;
    assert_int_equal(tk_group_lag(f->group, f->in, FEED_PARTITIONS, &end, &committed), 0);
    return committed;
}

cg_gateway_stats_t feed_run_until_idle(const cg_config_t *cfg, int inject_abort_commits)
{
    char errstr[512];
    cg_gateway_opts_t o = {.idle_exit_ms = 3000};
    cg_gateway_t *gw = cg_gateway_new(cfg, &o, errstr, sizeof(errstr));
    assert_non_null(gw);
    cg_engine_testing_inject_aborts(gw, inject_abort_commits);
    cg_err_t rc = cg_gateway_run(gw, errstr, sizeof(errstr));
    if (rc)
        fprintf(stderr, "run: %s\n", errstr);
    assert_int_equal(rc, CG_OK);
    cg_gateway_stats_t st;
    cg_gateway_get_stats(gw, &st);
    cg_gateway_destroy(gw);
    return st;
}
