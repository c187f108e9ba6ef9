/* test_metrics.c - the metrics registry and its Prometheus text, the gateway's metric set
 * (consumer lag from librdkafka statistics, /healthz states), the HTTP endpoint against
 * well-behaved and hostile clients (half-sent requests do not hold off /healthz), metrics.*
 * settings, and the JSON log line it writes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "cg_config.h"
#include "cg_log.h"
#include "cg_metrics_gw.h"

static char *render(cg_metrics_t *m)
{
    cg_buf_t b;
    cg_buf_init(&b);
    assert_int_equal(cg_metrics_render(m, &b), CG_OK);
    char *s = strdup(b.data ? b.data : "");
    cg_buf_free(&b);
    return s;
}

static void expect_line(const char *text, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = text; (p = strstr(p, line)) != NULL; p++)
        if ((p == text || p[-1] == '\n') && p[n] == '\n')
            return;
    fail_msg("no line '%s' in:\n%s", line, text);
}

/* Checks the text against the format's grammar, line by line: HELP and TYPE comments, then
 * samples NAME{LABEL="VALUE",...} VALUE with only \\, \" and \n escaped in label values. */
static void check_format(const char *text)
{
    assert_true(strlen(text) > 0 && text[strlen(text) - 1] == '\n');
    const char *p = text;
    while (*p) {
        const char *eol = strchr(p, '\n');
        assert_non_null(eol);
        char line[4096];
        size_t n = (size_t)(eol - p);
        assert_true(n < sizeof(line));
        memcpy(line, p, n);
        line[n] = '\0';
        p = eol + 1;
        if (!strncmp(line, "# HELP ", 7))
            continue;
        if (!strncmp(line, "# TYPE ", 7)) {
            const char *t = strrchr(line, ' ') + 1;
            assert_true(!strcmp(t, "counter") || !strcmp(t, "gauge") || !strcmp(t, "histogram"));
            continue;
        }
        const char *q = line;
        assert_true((*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z') || *q == '_');
        while ((*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z') || (*q >= '0' && *q <= '9') ||
               *q == '_' || *q == ':')
            q++;
        if (*q == '{') {
            q++;
            while (*q != '}') {
                while ((*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z') || *q == '_' ||
                       (*q >= '0' && *q <= '9'))
                    q++;
                if (strncmp(q, "=\"", 2))
                    fail_msg("bad label in '%s'", line);
                for (q += 2; *q != '"'; q++) {
                    assert_true(*q != '\0' && *q != '\n');
                    if (*q == '\\') {
                        q++;
                        if (*q != '\\' && *q != '"' && *q != 'n')
                            fail_msg("bad escape in '%s'", line);
                    }
                }
                q++;
                if (*q == ',')
                    q++;
                else if (*q != '}')
                    fail_msg("bad label list in '%s'", line);
            }
            q++;
        }
        if (*q != ' ')
            fail_msg("no value in '%s'", line);
        q++;
        if (strcmp(q, "+Inf") && strcmp(q, "-Inf") && strcmp(q, "NaN")) {
            char *end;
            strtod(q, &end);
            if (end == q || *end)
                fail_msg("bad value in '%s'", line);
        }
    }
}

static void test_counter_with_labels(void **state)
{
    (void)state;
    cg_metrics_t *m = cg_metrics_new(0);
    cg_metric_t *c = cg_metrics_counter(m, "cg_rows_total", "Rows out.", "topic,spec");
    assert_non_null(c);
    cg_metric_series_t *a = cg_metric_get2(c, "cohort.t2dm.measurement", "oru");
    assert_ptr_equal(a, cg_metric_get2(c, "cohort.t2dm.measurement", "oru"));
    assert_ptr_not_equal(a, cg_metric_get2(c, "cohort.t2dm.measurement", "adt"));
    /* ("ab","") and ("a","b") are different label sets */
    assert_ptr_not_equal(cg_metric_get2(c, "ab", ""), cg_metric_get2(c, "a", "b"));
    cg_metric_inc(a, 2);
    cg_metric_inc(a, 3);
    cg_metric_inc(NULL, 1); /* NULL-safe */
    assert_int_equal(cg_metric_count(a), 5);
    assert_int_equal(cg_metric_series_count(c), 4);
    char *t = render(m);
    expect_line(t, "# HELP cg_rows_total Rows out.");
    expect_line(t, "# TYPE cg_rows_total counter");
    expect_line(t, "cg_rows_total{topic=\"cohort.t2dm.measurement\",spec=\"oru\"} 5");
    expect_line(t, "cg_rows_total{topic=\"cohort.t2dm.measurement\",spec=\"adt\"} 0");
    expect_line(t, "cohortgate_metrics_series_refused_total{metric=\"cg_rows_total\"} 0");
    check_format(t);
    free(t);
    cg_metrics_destroy(m);
}

/* Look-ups are remembered by the label strings' addresses (per thread): the text there and the
 * metric must still be the ones remembered. Fails when the memo trusts an address alone. */
static void test_lookups_by_address_check_the_text(void **state)
{
    (void)state;
    char label[16] = "alpha";
    for (int round = 0; round < 2; round++) { /* a second registry, maybe at the same address */
        cg_metrics_t *m = cg_metrics_new(0);
        cg_metric_t *c = cg_metrics_counter(m, "lookups_total", "Look-ups.", "topic,spec");
        strcpy(label, "alpha");
        cg_metric_series_t *a = cg_metric_get2(c, label, "s");
        assert_ptr_equal(a, cg_metric_get2(c, label, "s")); /* a hit */
        cg_metric_inc(a, 1);
        strcpy(label, "beta"); /* the same address, another text */
        cg_metric_series_t *b = cg_metric_get2(c, label, "s");
        assert_ptr_not_equal(a, b);
        strcpy(label, "alph"); /* a prefix of the remembered text */
        assert_ptr_not_equal(a, cg_metric_get2(c, label, "s"));
        strcpy(label, "alphabet"); /* longer than it */
        assert_ptr_not_equal(a, cg_metric_get2(c, label, "s"));
        strcpy(label, "alpha");
        assert_ptr_equal(a, cg_metric_get2(c, label, "s"));
        assert_int_equal(cg_metric_count(a), 1); /* the old registry's count is not seen */
        assert_int_equal(cg_metric_series_count(c), 4);
        cg_metrics_destroy(m);
    }
}

static void test_bad_definitions_are_refused(void **state)
{
    (void)state;
    cg_metrics_t *m = cg_metrics_new(0);
    double up[] = {1, 2}, down[] = {2, 1};
    assert_null(cg_metrics_counter(m, "9lives", "", NULL));
    assert_null(cg_metrics_counter(m, "a-b", "", NULL));
    assert_null(cg_metrics_counter(m, "", "", NULL));
    assert_null(cg_metrics_counter(m, "x", "", "ok,bad-name"));
    assert_null(cg_metrics_counter(m, "x", "", "__reserved"));
    assert_null(cg_metrics_counter(m, "x", "", "a,b,c,d,e")); /* more than the maximum */
    assert_null(cg_metrics_histogram(m, "h", "", "le", up, 2));
    assert_null(cg_metrics_histogram(m, "h", "", NULL, down, 2));
    assert_non_null(cg_metrics_counter(m, "x", "", "a,b,c,d"));
    assert_null(cg_metrics_gauge(m, "x", "", NULL)); /* a second metric of one name */
    assert_non_null(cg_metrics_histogram(m, "h", "", NULL, up, 2));
    cg_metrics_destroy(m);
    cg_metrics_destroy(NULL);
}

static void test_label_values_and_help_are_escaped(void **state)
{
    (void)state;
    cg_metrics_t *m = cg_metrics_new(0);
    cg_metric_t *c = cg_metrics_counter(m, "esc_total", "Back\\slash and\nnew line \"kept\".", "v");
    cg_metric_inc(cg_metric_get1(c, "a\"b\\c\nd"), 1);
    cg_metric_inc(cg_metric_get1(c, "bad \xff utf8, good \xe5\x8c\xbb"), 1);
    cg_metric_inc(cg_metric_get1(c, NULL), 1); /* NULL is "" */
    char long_value[1000];
    memset(long_value, 'x', sizeof(long_value) - 1);
    long_value[sizeof(long_value) - 1] = '\0';
    cg_metric_series_t *l = cg_metric_get1(c, long_value);
    long_value[CG_METRICS_MAX_VALUE] = '\0'; /* values are cut: the cut one is the same series */
    assert_ptr_equal(l, cg_metric_get1(c, long_value));
    char *t = render(m);
    expect_line(t, "# HELP esc_total Back\\\\slash and\\nnew line \"kept\".");
    expect_line(t, "esc_total{v=\"a\\\"b\\\\c\\nd\"} 1");
    expect_line(t, "esc_total{v=\"bad \xEF\xBF\xBD utf8, good \xe5\x8c\xbb\"} 1");
    expect_line(t, "esc_total{v=\"\"} 1");
    check_format(t);
    free(t);
    cg_metrics_destroy(m);
}

static void test_histogram_buckets_sum_count(void **state)
{
    (void)state;
    cg_metrics_t *m = cg_metrics_new(0);
    double bounds[] = {0.1, 1, 2.5};
    cg_metric_t *h = cg_metrics_histogram(m, "lat_seconds", "Latency.", NULL, bounds, 3);
    cg_metric_series_t *s = cg_metric_get(h, NULL);
    cg_metric_observe(s, 0.05);
    cg_metric_observe(s, 0.1); /* a bucket's bound is inclusive (le) */
    cg_metric_observe(s, 0.5);
    cg_metric_observe(s, 7);
    cg_metric_observe(s, NAN); /* ignored */
    assert_int_equal(cg_metric_count(s), 4);
    assert_true(fabs(cg_metric_value(s) - 7.65) < 1e-9);
    char *t = render(m);
    expect_line(t, "# TYPE lat_seconds histogram");
    expect_line(t, "lat_seconds_bucket{le=\"0.1\"} 2");
    expect_line(t, "lat_seconds_bucket{le=\"1\"} 3");
    expect_line(t, "lat_seconds_bucket{le=\"2.5\"} 3");
    expect_line(t, "lat_seconds_bucket{le=\"+Inf\"} 4");
    expect_line(t, "lat_seconds_sum 7.65");
    expect_line(t, "lat_seconds_count 4");
    check_format(t);
    free(t);

    /* with labels, le comes last */
    cg_metric_t *hl = cg_metrics_histogram(m, "by_topic_seconds", "x", "topic", bounds, 3);
    cg_metric_observe(cg_metric_get1(hl, "raw"), 2);
    t = render(m);
    expect_line(t, "by_topic_seconds_bucket{topic=\"raw\",le=\"1\"} 0");
    expect_line(t, "by_topic_seconds_bucket{topic=\"raw\",le=\"2.5\"} 1");
    expect_line(t, "by_topic_seconds_count{topic=\"raw\"} 1");
    free(t);
    cg_metrics_destroy(m);
}

static void test_gauges_values_and_hiding(void **state)
{
    (void)state;
    cg_metrics_t *m = cg_metrics_new(0);
    cg_metric_t *g = cg_metrics_gauge(m, "g", "A gauge.", "k");
    cg_metric_t *plain = cg_metrics_gauge(m, "plain", "No labels.", NULL);
    cg_metric_set(cg_metric_get1(g, "a"), 0.1);
    cg_metric_set(cg_metric_get1(g, "b"), -3);
    cg_metric_set(cg_metric_get1(g, "c"), INFINITY);
    cg_metric_set(cg_metric_get1(g, "d"), NAN);
    cg_metric_set(cg_metric_get1(g, "e"), 1e300);
    cg_metric_add(cg_metric_get(plain, NULL), 2.5);
    cg_metric_add(cg_metric_get(plain, NULL), 2.5);
    char *t = render(m);
    expect_line(t, "g{k=\"a\"} 0.1");
    expect_line(t, "g{k=\"b\"} -3");
    expect_line(t, "g{k=\"c\"} +Inf");
    expect_line(t, "g{k=\"d\"} NaN");
    expect_line(t, "g{k=\"e\"} 1e+300");
    expect_line(t, "plain 5");
    check_format(t);
    free(t);

    cg_metric_hide_all(g);
    cg_metric_set(cg_metric_get1(g, "b"), 4);
    t = render(m);
    assert_null(strstr(t, "g{k=\"a\"}"));
    expect_line(t, "g{k=\"b\"} 4");
    expect_line(t, "# TYPE g gauge"); /* the metric stays, with fewer series */
    free(t);
    cg_metrics_destroy(m);
}

static void test_series_cap_overflows_into_one_series(void **state)
{
    (void)state;
    cg_metrics_t *m = cg_metrics_new(3);
    cg_metric_t *c = cg_metrics_counter(m, "in_total", "In.", "topic");
    uint64_t total = 0;
    for (int i = 0; i < 1000; i++) { /* a hostile number of topic names */
        char topic[32];
        snprintf(topic, sizeof(topic), "topic-%d", i);
        cg_metric_inc(cg_metric_get1(c, topic), 1);
        total++;
    }
    cg_metric_inc(cg_metric_get1(c, "topic-1"), 1); /* an existing series still counts */
    total++;
    assert_int_equal(cg_metric_series_count(c), 3);
    assert_int_equal(cg_metric_refused(c), 997);
    char *t = render(m);
    expect_line(t, "in_total{topic=\"topic-0\"} 1");
    expect_line(t, "in_total{topic=\"topic-1\"} 2");
    expect_line(t, "in_total{topic=\"__overflow__\"} 997");
    assert_null(strstr(t, "topic-3\""));
    expect_line(t, "cohortgate_metrics_series_refused_total{metric=\"in_total\"} 997");
    /* nothing is lost: the samples add up to every update */
    uint64_t sum = 0;
    for (const char *p = t; (p = strstr(p, "\nin_total{")) != NULL; p++)
        sum += strtoull(strchr(p, '}') + 2, NULL, 10);
    assert_int_equal(sum, total);
    check_format(t);
    free(t);
    cg_metrics_destroy(m);
}

typedef struct hammer {
    cg_metric_t *c, *h;
    int id;
} hammer_t;

static void *hammer(void *arg)
{
    hammer_t *a = arg;
    char topic[16];
    for (int i = 0; i < 20000; i++) {
        snprintf(topic, sizeof(topic), "t%d", i % 7); /* every thread creates the same series */
        cg_metric_inc(cg_metric_get1(a->c, topic), 1);
        cg_metric_observe(cg_metric_get(a->h, NULL), 0.5);
    }
    return NULL;
}

static void test_concurrent_updates_are_exact(void **state)
{
    (void)state;
    cg_metrics_t *m = cg_metrics_new(0);
    double bounds[] = {1};
    hammer_t a[4];
    pthread_t th[4];
    cg_metric_t *c = cg_metrics_counter(m, "hits_total", "Hits.", "topic");
    cg_metric_t *h = cg_metrics_histogram(m, "h_seconds", "H.", NULL, bounds, 1);
    for (int i = 0; i < 4; i++) {
        a[i] = (hammer_t){c, h, i};
        assert_int_equal(pthread_create(&th[i], NULL, hammer, &a[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        char *t = render(m); /* renders while threads update */
        check_format(t);
        free(t);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(cg_metric_series_count(c), 7); /* no duplicate from racing creators */
    uint64_t sum = 0;
    for (int i = 0; i < 7; i++) {
        char topic[16];
        snprintf(topic, sizeof(topic), "t%d", i);
        sum += cg_metric_count(cg_metric_get1(c, topic));
    }
    assert_int_equal(sum, 80000);
    assert_int_equal(cg_metric_count(cg_metric_get(h, NULL)), 80000);
    assert_true(cg_metric_value(cg_metric_get(h, NULL)) == 40000.0);
    cg_metrics_destroy(m);
}

static void test_consumer_lag_from_statistics(void **state)
{
    (void)state;
    cg_metrics_gw_t *g = cg_metrics_gw_new(0, 1000);
    assert_non_null(g);
    /* the shape of librdkafka's statistics: partition -1 is internal, lag -1 unknown */
    const char *stats1 =
        "{\"name\":\"cohortgate#consumer-1\",\"type\":\"consumer\",\"topics\":{"
        "\"hosp.a\":{\"topic\":\"hosp.a\",\"partitions\":{"
        "\"0\":{\"partition\":0,\"desired\":true,\"consumer_lag\":12,\"hi_offset\":40},"
        "\"1\":{\"partition\":1,\"desired\":true,\"consumer_lag\":0},"
        "\"2\":{\"partition\":2,\"desired\":false,\"consumer_lag\":5},"
        "\"3\":{\"partition\":3,\"desired\":true,\"consumer_lag\":-1},"
        "\"-1\":{\"partition\":-1,\"consumer_lag\":-1}}},"
        "\"hosp.b\":{\"topic\":\"hosp.b\",\"partitions\":{"
        "\"0\":{\"partition\":0,\"consumer_lag\":7}}}}}";
    assert_int_equal(cg_metrics_gw_kafka_stats(g, stats1, strlen(stats1)), 0);
    char *t = render(cg_metrics_gw_registry(g));
    expect_line(t, "cohortgate_consumer_lag{topic=\"hosp.a\",partition=\"0\"} 12");
    expect_line(t, "cohortgate_consumer_lag{topic=\"hosp.a\",partition=\"1\"} 0");
    expect_line(t, "cohortgate_consumer_lag{topic=\"hosp.b\",partition=\"0\"} 7");
    assert_null(strstr(t, "partition=\"2\""));
    assert_null(strstr(t, "partition=\"3\""));
    assert_null(strstr(t, "partition=\"-1\""));
    free(t);
    /* hosp.b revoked: its lag goes away instead of staying at its last value */
    const char *stats2 = "{\"topics\":{\"hosp.a\":{\"partitions\":{"
                         "\"0\":{\"partition\":0,\"consumer_lag\":3}}}}}";
    assert_int_equal(cg_metrics_gw_kafka_stats(g, stats2, strlen(stats2)), 0);
    t = render(cg_metrics_gw_registry(g));
    expect_line(t, "cohortgate_consumer_lag{topic=\"hosp.a\",partition=\"0\"} 3");
    assert_null(strstr(t, "hosp.b"));
    check_format(t);
    free(t);
    assert_int_equal(cg_metrics_gw_kafka_stats(g, "{not json", 9), -1);
    cg_metrics_gw_destroy(g);
    cg_metrics_gw_destroy(NULL);
}

static void test_gateway_set_renders_every_metric(void **state)
{
    (void)state;
    cg_metrics_gw_t *g = cg_metrics_gw_new(0, 1000);
    cg_metrics_gw_message_in(g, "hosp.a");
    cg_metrics_gw_message_in(g, "hosp.a");
    cg_metrics_gw_row_out(g, "cohort.t2dm.measurement", "hl7v2-oru-omop");
    cg_metrics_gw_dead_letter(g, "decode", "CG_ERR_PARSE");
    cg_metrics_gw_quality(g, "cda-ccda-omop", "invalid_datetime");
    cg_metrics_gw_quality(g, "cda-ccda-omop", "invalid_datetime");
    cg_metrics_gw_quality(NULL, "x", "y");
    cg_metrics_gw_latency(g, 0.0003);
    cg_metrics_gw_reload(g, 1);
    cg_metrics_gw_reload(g, 0);
    cg_metrics_gw_reload(g, 0);
    cg_metrics_gw_transaction(g, "committed");
    cg_metrics_gw_paused(g, 1);
    cg_metrics_gw_assigned(g, 3);
    /* and none of them minds a NULL set (metrics not set up) */
    cg_metrics_gw_message_in(NULL, "x");
    cg_metrics_gw_latency(NULL, 1);
    cg_metrics_gw_fatal(NULL, "x");
    char *t = render(cg_metrics_gw_registry(g));
    expect_line(t, "cohortgate_messages_in_total{topic=\"hosp.a\"} 2");
    expect_line(
        t, "cohortgate_rows_out_total{topic=\"cohort.t2dm.measurement\",spec=\"hl7v2-oru-omop\"} "
           "1");
    expect_line(t, "cohortgate_dead_letter_total{stage=\"decode\",code=\"CG_ERR_PARSE\"} 1");
    expect_line(t, "cohortgate_quality_records_total{spec=\"cda-ccda-omop\",reason=\"invalid_"
                   "datetime\"} 2");
    expect_line(t, "cohortgate_mapping_latency_seconds_bucket{le=\"0.00025\"} 0");
    expect_line(t, "cohortgate_mapping_latency_seconds_bucket{le=\"0.0005\"} 1");
    expect_line(t, "cohortgate_mapping_latency_seconds_count 1");
    expect_line(t, "cohortgate_reloads_total{result=\"ok\"} 1");
    expect_line(t, "cohortgate_reloads_total{result=\"failed\"} 2");
    expect_line(t, "cohortgate_transactions_total{result=\"committed\"} 1");
    expect_line(t, "cohortgate_transactions_total{result=\"aborted\"} 0");
    expect_line(t, "cohortgate_paused 1");
    expect_line(t, "cohortgate_assigned_partitions 3");
    expect_line(t, "cohortgate_up 1");
    expect_line(t, "cohortgate_producer_queue_messages 0");
    expect_line(t, "# TYPE cohortgate_consumer_lag gauge");
    assert_non_null(strstr(t, "\ncohortgate_build_info{version=\""));
    /* the process's resident memory and start time are plausible */
    const char *rss = strstr(t, "\nprocess_resident_memory_bytes ");
    assert_non_null(rss);
    assert_true(strtod(rss + 31, NULL) > 1e5);
    const char *start = strstr(t, "\nprocess_start_time_seconds ");
    assert_non_null(start);
    assert_true(strtod(start + 28, NULL) > 1.6e9);
    check_format(t);
    free(t);
    cg_metrics_gw_destroy(g);
}

static void test_health_states(void **state)
{
    (void)state;
    char reason[300];
    /* no grace: without an assignment it is unhealthy at once */
    cg_metrics_gw_t *g = cg_metrics_gw_new(0, 0);
    assert_int_equal(cg_metrics_gw_health(g, reason, sizeof(reason)), 503);
    assert_non_null(strstr(reason, "no partition assigned"));
    cg_metrics_gw_assigned(g, 2);
    assert_int_equal(cg_metrics_gw_health(g, reason, sizeof(reason)), 200);
    assert_string_equal(reason, "ok");
    cg_metrics_gw_assigned(g, 0); /* all revoked */
    assert_int_equal(cg_metrics_gw_health(g, reason, sizeof(reason)), 503);
    cg_metrics_gw_assigned(g, 1);
    cg_metrics_gw_stopping(g);
    assert_int_equal(cg_metrics_gw_health(g, reason, sizeof(reason)), 503);
    assert_string_equal(reason, "stopping");
    cg_metrics_gw_fatal(g, "delivery to x failed: Broker: Topic authorization failed");
    cg_metrics_gw_fatal(g, "a second error does not replace the first");
    cg_metrics_gw_stopping(g); /* nor does stopping */
    assert_int_equal(cg_metrics_gw_health(g, reason, sizeof(reason)), 503);
    assert_string_equal(reason, "fatal: delivery to x failed: Broker: Topic authorization failed");
    cg_metrics_gw_destroy(g);

    /* within the grace time a starting gateway is healthy */
    g = cg_metrics_gw_new(0, 3600000);
    assert_int_equal(cg_metrics_gw_health(g, reason, sizeof(reason)), 200);
    assert_non_null(strstr(reason, "ok"));
    cg_metrics_gw_destroy(g);
}

static void test_listen_values(void **state)
{
    (void)state;
    char host[64], port[8], err[256];
    assert_true(cg_metrics_listen_off("off"));
    assert_true(cg_metrics_listen_off(""));
    assert_true(cg_metrics_listen_off(NULL));
    assert_false(cg_metrics_listen_off("127.0.0.1:9464"));
    assert_int_equal(cg_metrics_listen_parse("127.0.0.1:9464", host, sizeof(host), port,
                                             sizeof(port), err, sizeof(err)),
                     0);
    assert_string_equal(host, "127.0.0.1");
    assert_string_equal(port, "9464");
    assert_int_equal(cg_metrics_listen_parse("[::1]:0", host, sizeof(host), port, sizeof(port), err,
                                             sizeof(err)),
                     0);
    assert_string_equal(host, "::1");
    assert_string_equal(port, "0");
    assert_int_equal(cg_metrics_listen_parse("localhost:80", host, sizeof(host), port, sizeof(port),
                                             err, sizeof(err)),
                     0);
    const char *bad[] = {"9464",     ":9464",     "127.0.0.1:", "127.0.0.1:65536", "127.0.0.1:http",
                         "::1:9464", "[::1]9464", "[::1",       "h:123456"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (cg_metrics_listen_parse(bad[i], host, sizeof(host), port, sizeof(port), err,
                                    sizeof(err)) != -1)
            fail_msg("'%s' was accepted", bad[i]);
}

static cg_config_t *load_config(const char *metrics, cg_error_t *err)
{
    char text[1024];
    snprintf(text, sizeof(text),
             "{\"inputs\":[{\"topic\":\"raw\"}],\"mapping\":{\"specs\":\"specs\"},\n"
             "\"kafka\":{\"bootstrap.servers\":\"127.0.0.1:9092\"}%s%s}",
             metrics ? ",\n\"metrics\":" : "", metrics ? metrics : "");
    memset(err, 0, sizeof(*err));
    return cg_config_load_string(text, "t.json", "/base", err);
}

static void test_metrics_settings(void **state)
{
    (void)state;
    cg_error_t err;
    cg_config_t *c = load_config(NULL, &err);
    assert_non_null(c);
    assert_string_equal(c->metrics_listen, "127.0.0.1:9464");
    assert_int_equal(c->metrics_health_grace_ms, 60000);
    assert_int_equal(c->metrics_max_series, 1000);
    cg_config_destroy(c);
    c = load_config("{\"listen\":\"off\",\"health_grace_ms\":5000,\"max_series\":50}", &err);
    assert_non_null(c);
    assert_string_equal(c->metrics_listen, "off");
    assert_int_equal(c->metrics_health_grace_ms, 5000);
    assert_int_equal(c->metrics_max_series, 50);
    cg_config_destroy(c);
    c = load_config("{\"listen\":\"[::]:9464\"}", &err);
    assert_non_null(c);
    cg_config_destroy(c);
    /* a malformed address is a config error, located, as `cohortgate check` shows it */
    assert_null(load_config("{\"listen\": \"9464\"}", &err));
    assert_int_equal(err.code, CG_ERR_CONFIG);
    assert_int_equal(err.line, 3);
    assert_non_null(strstr(err.text, "metrics.listen"));
    assert_non_null(strstr(err.text, "HOST:PORT"));
    assert_null(load_config("{\"port\": 9464}", &err));
    assert_non_null(strstr(err.text, "unknown setting 'metrics.port'"));
    assert_null(load_config("{\"max_series\": 1}", &err));
}

/* ---- the HTTP endpoint ---- */

static int connect_to(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct timeval tv = {60, 0}; /* a hung server fails the test instead of hanging it */
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    return fd;
}

/* Reads until the server closes; returns the malloc'ed response. */
static char *read_all(int fd)
{
    size_t cap = 1 << 16, len = 0;
    char *out = malloc(cap);
    for (;;) {
        if (len + 1 >= cap)
            out = realloc(out, cap *= 2);
        ssize_t n = recv(fd, out + len, cap - len - 1, 0);
        if (n <= 0) {
            assert_false(n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)); /* a hang */
            break;
        }
        len += (size_t)n;
    }
    out[len] = '\0';
    return out;
}

static char *exchange(int port, const char *req, size_t len)
{
    int fd = connect_to(port);
    assert_int_equal(send(fd, req, len, MSG_NOSIGNAL), (ssize_t)len);
    char *r = read_all(fd);
    close(fd);
    return r;
}

static int status_of(const char *response)
{
    if (strncmp(response, "HTTP/1.1 ", 9))
        fail_msg("not an HTTP response: '%.80s'", response);
    return atoi(response + 9);
}

static const char *body_of(const char *response)
{
    const char *b = strstr(response, "\r\n\r\n");
    assert_non_null(b);
    return b + 4;
}

static int fake_health(void *opaque, char *reason, size_t n)
{
    int healthy = *(int *)opaque;
    snprintf(reason, n, healthy ? "ok" : "fatal: broker gone");
    return healthy ? 200 : 503;
}

static void test_http_endpoint(void **state)
{
    (void)state;
    cg_metrics_t *m = cg_metrics_new(0);
    cg_metric_inc(cg_metric_get1(cg_metrics_counter(m, "x_total", "X.", "topic"), "raw"), 42);
    int healthy = 1;
    char err[256];
    cg_metrics_server_opts_t opts = {.read_timeout_ms = 300, .max_request = 4096};
    cg_metrics_server_t *s =
        cg_metrics_server_start("127.0.0.1:0", m, fake_health, &healthy, &opts, err, sizeof(err));
    if (!s)
        fail_msg("%s", err);
    int port = cg_metrics_server_port(s);
    assert_true(port > 0);
    char want[64];
    snprintf(want, sizeof(want), "127.0.0.1:%d", port);
    assert_string_equal(cg_metrics_server_address(s), want);

    const char *get = "GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n";
    char *r = exchange(port, get, strlen(get));
    assert_int_equal(status_of(r), 200);
    assert_non_null(strstr(r, "\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"));
    assert_non_null(strstr(r, "\r\nConnection: close\r\n"));
    expect_line(body_of(r), "x_total{topic=\"raw\"} 42");
    char clen[64];
    snprintf(clen, sizeof(clen), "\r\nContent-Length: %zu\r\n", strlen(body_of(r)));
    assert_non_null(strstr(r, clen));
    check_format(body_of(r));
    free(r);

    /* a query string, HTTP/1.0 and bare \n line ends are fine; HEAD has no body */
    const char *get10 = "GET /metrics?x=1 HTTP/1.0\n\n";
    r = exchange(port, get10, strlen(get10));
    assert_int_equal(status_of(r), 200);
    free(r);
    const char *head = "HEAD /metrics HTTP/1.1\r\n\r\n";
    r = exchange(port, head, strlen(head));
    assert_int_equal(status_of(r), 200);
    assert_string_equal(body_of(r), "");
    free(r);

    const char *hz = "GET /healthz HTTP/1.1\r\n\r\n";
    r = exchange(port, hz, strlen(hz));
    assert_int_equal(status_of(r), 200);
    assert_string_equal(body_of(r), "ok\n");
    free(r);
    healthy = 0;
    r = exchange(port, hz, strlen(hz));
    assert_int_equal(status_of(r), 503);
    assert_string_equal(body_of(r), "fatal: broker gone\n");
    free(r);

    const char *nf = "GET /metricsx HTTP/1.1\r\n\r\n";
    r = exchange(port, nf, strlen(nf));
    assert_int_equal(status_of(r), 404);
    free(r);
    const char *post = "POST /metrics HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi";
    r = exchange(port, post, strlen(post));
    assert_int_equal(status_of(r), 405);
    assert_non_null(strstr(r, "\r\nAllow: GET, HEAD\r\n"));
    free(r);
    const char *junk = "\x16\x03\x01 not http at all\r\n\r\n"; /* say, a TLS client */
    r = exchange(port, junk, strlen(junk));
    assert_int_equal(status_of(r), 400);
    free(r);

    /* a request head beyond the cap: refused, not buffered */
    size_t big = 64 * 1024;
    char *huge = malloc(big);
    memset(huge, 'a', big);
    memcpy(huge, "GET /metrics HTTP/1.1\r\nX-Long: ", 31);
    int fd = connect_to(port);
    send(fd, huge, 8000, MSG_NOSIGNAL); /* more than max_request, no end of head */
    r = read_all(fd);
    close(fd);
    assert_int_equal(status_of(r), 431);
    free(r);
    free(huge);

    /* a slow client is cut off by the read timeout (libmicrohttpd closes it without an answer:
     * no 408), and a client arriving meanwhile is served at once */
    int slow = connect_to(port);
    assert_int_equal(send(slow, "GET /met", 8, 0), 8);
    int next = connect_to(port);
    assert_int_equal(send(next, get, strlen(get), 0), (ssize_t)strlen(get));
    r = read_all(next);
    close(next);
    assert_int_equal(status_of(r), 200);
    free(r);
    r = read_all(slow);
    close(slow);
    assert_string_equal(r, "");
    free(r);
    /* a client that connects and never writes does not hold on either */
    int silent = connect_to(port);
    r = read_all(silent);
    close(silent);
    assert_string_equal(r, "");
    free(r);

    /* stopping with a client connected and silent returns (the server does not wait) */
    opts.read_timeout_ms = 600000;
    cg_metrics_server_t *s2 =
        cg_metrics_server_start("127.0.0.1:0", m, NULL, NULL, &opts, err, sizeof(err));
    assert_non_null(s2);
    int idle = connect_to(cg_metrics_server_port(s2));
    assert_int_equal(send(idle, "GET", 3, 0), 3);
    usleep(50000); /* likely inside the request by now; the stop is prompt either way */
    cg_metrics_server_stop(s2);
    close(idle);

    /* the same port twice: the second bind fails with the reason */
    assert_null(cg_metrics_server_start(want, m, NULL, NULL, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "in use"));
    assert_null(cg_metrics_server_start("off", m, NULL, NULL, NULL, err, sizeof(err)));

    cg_metrics_server_stop(s);
    cg_metrics_server_stop(NULL);
    cg_metrics_destroy(m);
}

/* Clients that send half a request and wait (slow, broken or hostile) each hold a connection,
 * but not the endpoint: /healthz on another connection is answered while they are still open.
 * When connections were served one at a time, six of them held /healthz off for ~30 s. */
static void test_half_sent_requests_do_not_hold_off_healthz(void **state)
{
    (void)state;
    cg_metrics_t *m = cg_metrics_new(0);
    int healthy = 1;
    char err[256];
    /* a read timeout far longer than the test: the half-sent requests stay open throughout */
    cg_metrics_server_opts_t opts = {.read_timeout_ms = 600000};
    cg_metrics_server_t *s =
        cg_metrics_server_start("127.0.0.1:0", m, fake_health, &healthy, &opts, err, sizeof(err));
    if (!s)
        fail_msg("%s", err);
    int port = cg_metrics_server_port(s);
    enum { N_HALF = 8 };
    const char *half[] = {"GET /healthz HTTP/1.1\r\nHost: x\r\n", "GET /metrics HTTP/1.1\r\nHo",
                          "GET /hea", "G"};
    int fds[N_HALF];
    for (int i = 0; i < N_HALF; i++) {
        const char *h = half[i % 4];
        fds[i] = connect_to(port); /* 60 s receive timeout: a hang fails instead of hanging */
        assert_int_equal(send(fds[i], h, strlen(h), MSG_NOSIGNAL), (ssize_t)strlen(h));
    }
    const char *hz = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    for (int k = 0; k < 3; k++) {
        char *r = exchange(port, hz, strlen(hz));
        assert_int_equal(status_of(r), 200);
        assert_string_equal(body_of(r), "ok\n");
        free(r);
    }
    const char *get = "GET /metrics HTTP/1.1\r\n\r\n";
    char *r = exchange(port, get, strlen(get));
    assert_int_equal(status_of(r), 200);
    free(r);
    /* and the half-sent ones were still open all along: nothing to read, no end of stream */
    for (int i = 0; i < N_HALF; i++) {
        char c;
        errno = 0;
        assert_int_equal(recv(fds[i], &c, 1, MSG_DONTWAIT), -1);
        assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
    }
    cg_metrics_server_stop(s); /* prompt, with all of them still connected */
    for (int i = 0; i < N_HALF; i++)
        close(fds[i]);
    cg_metrics_destroy(m);
}

/* The gateway set's endpoint logs its address as one JSON object a line on stderr. */
static void test_serve_logs_one_json_line(void **state)
{
    (void)state;
    char path[] = "/tmp/cg-test-metrics-log-XXXXXX";
    int tmp = mkstemp(path);
    assert_true(tmp >= 0);
    fflush(stderr);
    int saved = dup(2);
    dup2(tmp, 2);
    cg_log_level_t level = cg_log_get_level();
    cg_log_set_level(CG_LOG_INFO);
    cg_metrics_gw_t *g = cg_metrics_gw_new(0, 1000);
    assert_int_equal(cg_metrics_gw_serve(g, "127.0.0.1:0", NULL, NULL), 0);
    int port = cg_metrics_gw_port(g);
    /* a message that would break a naive writer: quotes, new lines, bytes that are not UTF-8 */
    cg_log(CG_LOG_WARN, "test.hostile", "a \"quoted\"\nline\twith \xff\xfe bytes \\ end");
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    cg_log_set_level(level);

    const char *hz = "GET /healthz HTTP/1.1\r\n\r\n";
    char *r = exchange(port, hz, strlen(hz));
    assert_int_equal(status_of(r), 200); /* within its grace time */
    free(r);
    cg_metrics_gw_destroy(g);

    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char line[4096];
    int listening = 0, hostile = 0;
    while (fgets(line, sizeof(line), f)) {
        json_error_t e;
        json_t *o = json_loads(line, 0, &e);
        if (!o)
            fail_msg("log line is not JSON (%s): %s", e.text, line);
        assert_true(json_is_object(o));
        assert_non_null(json_string_value(json_object_get(o, "ts")));
        const char *ev = json_string_value(json_object_get(o, "event"));
        const char *msg = json_string_value(json_object_get(o, "msg"));
        assert_non_null(ev);
        assert_non_null(msg);
        if (!strcmp(ev, "metrics.listening")) {
            char want[64];
            snprintf(want, sizeof(want), "http://127.0.0.1:%d/metrics", port);
            assert_non_null(strstr(msg, want));
            listening++;
        }
        if (!strcmp(ev, "test.hostile")) {
            assert_non_null(strstr(msg, "\"quoted\"\nline"));
            hostile++;
        }
        json_decref(o);
    }
    fclose(f);
    unlink(path);
    assert_int_equal(listening, 1);
    assert_int_equal(hostile, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counter_with_labels),
        cmocka_unit_test(test_lookups_by_address_check_the_text),
        cmocka_unit_test(test_bad_definitions_are_refused),
        cmocka_unit_test(test_label_values_and_help_are_escaped),
        cmocka_unit_test(test_histogram_buckets_sum_count),
        cmocka_unit_test(test_gauges_values_and_hiding),
        cmocka_unit_test(test_series_cap_overflows_into_one_series),
        cmocka_unit_test(test_concurrent_updates_are_exact),
        cmocka_unit_test(test_consumer_lag_from_statistics),
        cmocka_unit_test(test_gateway_set_renders_every_metric),
        cmocka_unit_test(test_health_states),
        cmocka_unit_test(test_listen_values),
        cmocka_unit_test(test_metrics_settings),
        cmocka_unit_test(test_http_endpoint),
        cmocka_unit_test(test_half_sent_requests_do_not_hold_off_healthz),
        cmocka_unit_test(test_serve_logs_one_json_line),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
