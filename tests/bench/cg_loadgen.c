/* cg_loadgen.c - load generator and latency reader for the gateway benchmark (bench_gateway.sh).
 *
 *   cg_loadgen create -b HOST:PORT -t TOPIC -p PARTITIONS
 *       Creates TOPIC (an existing one is fine).
 *   cg_loadgen produce -b HOST:PORT -t TOPIC [-p PARTITIONS] (-n COUNT | -d SECONDS) [-r RATE]
 *       Creates TOPIC (with PARTITIONS, when given) and produces HL7 v2 ORU^R01 and ADT^A01/A08
 *       messages (tests/kafka/kafka_util.c's generator, without junk), keyed k<i>: COUNT of them,
 *       or for SECONDS; at RATE messages/s (paced every millisecond), flat out without -r.
 *       Prints `produced=N seconds=S rate=R`.
 *   cg_loadgen wait -b HOST:PORT -g GROUP -t TOPIC [-n COUNT] [--timeout SECONDS]
 *       Waits until TOPIC holds at least COUNT records and GROUP's committed offsets reach its
 *       end. Prints `caught_up seconds=S`; exits 1 on timeout (default 600 s).
 *   cg_loadgen stats -b HOST:PORT -t TOPIC -x PREFIX
 *       Reads TOPIC (the input) and every other topic whose name starts with PREFIX (the
 *       gateway's outputs) with a read_committed consumer, matches each output record to its
 *       input by its cg.source.partition and cg.source.offset headers, and prints one line:
 *       inputs, inputs with output, output records and their bytes (keys and values), the
 *       span from the first to the last output record timestamp and the messages/s over it, and
 *       the latency of each input (its last output record's timestamp minus its own, in ms:
 *       CreateTime on both sides) as p50, p99 and max. --warmup S leaves out of the latencies the
 *       inputs of the first S seconds (by input timestamp) and prints them apart; --timeline
 *       prints each second's count and worst latency too.
 */
#include "kafka_util.h"

#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void usage(void)
{
    fprintf(stderr,
            "usage: cg_loadgen create -b BOOT -t TOPIC -p PARTS\n"
            "       cg_loadgen produce -b BOOT -t TOPIC [-p PARTS] (-n COUNT | -d SECONDS) "
            "[-r RATE]\n"
            "       cg_loadgen wait -b BOOT -g GROUP -t TOPIC [-n COUNT] [--timeout SECONDS]\n"
            "       cg_loadgen stats -b BOOT -t TOPIC -x OUTPUT_PREFIX [--warmup S] "
            "[--timeline]\n");
    exit(2);
}

static rd_kafka_t *producer(const char *linger)
{
    char err[512];
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    if (rd_kafka_conf_set(c, "bootstrap.servers", tk_bootstrap(), err, sizeof(err)) ||
        rd_kafka_conf_set(c, "linger.ms", linger, err, sizeof(err)) ||
        rd_kafka_conf_set(c, "queue.buffering.max.messages", "1000000", err, sizeof(err)) ||
        rd_kafka_conf_set(c, "enable.idempotence", "true", err, sizeof(err))) {
        fprintf(stderr, "cg_loadgen: %s\n", err);
        exit(1);
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, c, err, sizeof(err));
    if (!rk) {
        fprintf(stderr, "cg_loadgen: %s\n", err);
        exit(1);
    }
    return rk;
}

static int cmd_produce(const char *topic, int parts, long count, double seconds, int rate)
{
    if (parts > 0 && tk_create_topic(topic, parts))
        return 1;
    /* paced: a short linger, as a feed that sends as messages come; flat out: batches */
    rd_kafka_t *p = producer(rate > 0 ? "1" : "20");
    char buf[1024], key[24];
    int64_t t0 = tk_now_ms(), end_ms = seconds > 0 ? t0 + (int64_t)(seconds * 1000) : INT64_MAX;
    long i = 0;
    for (; count <= 0 || i < count; i++) {
        int64_t now = tk_now_ms();
        if (now >= end_ms)
            break;
        if (rate > 0) {
            int64_t due = t0 + (int64_t)i * 1000 / rate;
            while ((now = tk_now_ms()) < due)
                rd_kafka_poll(p, (int)(due - now));
            if (now >= end_ms)
                break;
        }
        size_t len = tk_gen_input((int)i, 0, buf, sizeof(buf), NULL);
        int kl = snprintf(key, sizeof(key), "k%07ld", i);
        rd_kafka_resp_err_t err;
        while ((err = rd_kafka_producev(p, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, kl),
                                        RD_KAFKA_V_VALUE(buf, len),
                                        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                        RD_KAFKA_V_END)) == RD_KAFKA_RESP_ERR__QUEUE_FULL)
            rd_kafka_poll(p, 5);
        if (err) {
            fprintf(stderr, "cg_loadgen: produce: %s\n", rd_kafka_err2str(err));
            return 1;
        }
        rd_kafka_poll(p, 0);
    }
    if (rd_kafka_flush(p, 120000)) {
        fprintf(stderr, "cg_loadgen: flush timed out\n");
        return 1;
    }
    rd_kafka_destroy(p);
    double s = (double)(tk_now_ms() - t0) / 1000.0;
    printf("produced=%ld seconds=%.2f rate=%.0f\n", i, s, s > 0 ? (double)i / s : 0.0);
    return 0;
}

static int partitions_of(rd_kafka_t *rk, const char *topic)
{
    const struct rd_kafka_metadata *md;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    int n = -1;
    if (rd_kafka_metadata(rk, 0, rkt, &md, 10000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        if (md->topic_cnt == 1 && !md->topics[0].err)
            n = md->topics[0].partition_cnt;
        rd_kafka_metadata_destroy(md);
    }
    rd_kafka_topic_destroy(rkt);
    return n;
}

static int cmd_wait(const char *group, const char *topic, long count, int timeout_s)
{
    rd_kafka_t *q = tk_query_handle();
    int parts = partitions_of(q, topic);
    rd_kafka_destroy(q);
    if (parts <= 0) {
        fprintf(stderr, "cg_loadgen: no topic %s\n", topic);
        return 1;
    }
    int64_t t0 = tk_now_ms();
    for (;;) {
        int64_t end, committed;
        if (tk_group_lag(group, topic, parts, &end, &committed) == 0 && end >= count &&
            committed == end) {
            printf("caught_up seconds=%.2f\n", (double)(tk_now_ms() - t0) / 1000.0);
            return 0;
        }
        if (tk_now_ms() - t0 > (int64_t)timeout_s * 1000) {
            fprintf(stderr,
                    "cg_loadgen: group %s: committed %" PRId64 " of %" PRId64 " after %d s\n",
                    group, committed, end, timeout_s);
            return 1;
        }
        usleep(100000);
    }
}

/* per input partition: timestamps of the inputs, and the latest output timestamp of each */
typedef struct part {
    int64_t n;
    int64_t *in_ts;
    int64_t *out_ts;
} part_t;

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static int cmd_stats(const char *topic, const char *prefix, double warmup_s, int timeline)
{
    char err[512];
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    rd_kafka_conf_set(c, "bootstrap.servers", tk_bootstrap(), err, sizeof(err));
    rd_kafka_conf_set(c, "group.id", "cg-loadgen-stats", err, sizeof(err));
    rd_kafka_conf_set(c, "enable.auto.commit", "false", err, sizeof(err));
    rd_kafka_conf_set(c, "enable.partition.eof", "true", err, sizeof(err));
    rd_kafka_conf_set(c, "isolation.level", "read_committed", err, sizeof(err));
    rd_kafka_conf_set(c, "fetch.wait.max.ms", "20", err, sizeof(err));
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, c, err, sizeof(err));
    if (!rk) {
        fprintf(stderr, "cg_loadgen: %s\n", err);
        return 1;
    }
    rd_kafka_poll_set_consumer(rk);
    const struct rd_kafka_metadata *md;
    if (rd_kafka_metadata(rk, 1, NULL, &md, 10000)) {
        fprintf(stderr, "cg_loadgen: no metadata\n");
        return 1;
    }
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(64);
    size_t pl = strlen(prefix);
    int n_parts = 0, in_parts = 0;
    part_t *parts = NULL;
    for (int i = 0; i < md->topic_cnt; i++) {
        const char *name = md->topics[i].topic;
        int is_in = !strcmp(name, topic);
        if (!is_in && strncmp(name, prefix, pl))
            continue;
        for (int p = 0; p < md->topics[i].partition_cnt; p++, n_parts++) {
            rd_kafka_topic_partition_list_add(l, name, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
            if (is_in) {
                int64_t lo, hi;
                if (rd_kafka_query_watermark_offsets(rk, name, p, &lo, &hi, 10000))
                    hi = 0;
                if (p >= in_parts) {
                    parts = realloc(parts, (size_t)(p + 1) * sizeof(*parts));
                    memset(parts + in_parts, 0, (size_t)(p + 1 - in_parts) * sizeof(*parts));
                    in_parts = p + 1;
                }
                parts[p].n = hi;
                parts[p].in_ts = calloc((size_t)hi + 1, sizeof(int64_t));
                parts[p].out_ts = calloc((size_t)hi + 1, sizeof(int64_t));
            }
        }
    }
    rd_kafka_metadata_destroy(md);
    if (!in_parts) {
        fprintf(stderr, "cg_loadgen: no topic %s\n", topic);
        return 1;
    }
    rd_kafka_assign(rk, l);
    char *at_end = calloc((size_t)n_parts + 1, 1); /* a partition counts once at its end */
    int eof = 0, idle = 0;
    int64_t records = 0, bytes = 0, first_out = INT64_MAX, last_out = 0, unmatched = 0;
    while (eof < n_parts && idle < 30000) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if (!m) {
            idle += 100;
            continue;
        }
        idle = 0;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            for (int k = 0; k < l->cnt; k++)
                if (l->elems[k].partition == m->partition && !at_end[k] &&
                    !strcmp(l->elems[k].topic, rd_kafka_topic_name(m->rkt))) {
                    at_end[k] = 1;
                    eof++;
                }
        } else if (!m->err) {
            int64_t ts = rd_kafka_message_timestamp(m, NULL);
            if (!strcmp(rd_kafka_topic_name(m->rkt), topic)) {
                if (m->partition < in_parts && m->offset < parts[m->partition].n)
                    parts[m->partition].in_ts[m->offset] = ts;
            } else {
                rd_kafka_headers_t *h;
                const void *pv, *ov;
                size_t pn, on;
                char pb[16], ob[24];
                records++;
                bytes += (int64_t)(m->key_len + m->len);
                if (rd_kafka_message_headers(m, &h) ||
                    rd_kafka_header_get_last(h, "cg.source.partition", &pv, &pn) ||
                    rd_kafka_header_get_last(h, "cg.source.offset", &ov, &on) || pn >= sizeof(pb) ||
                    on >= sizeof(ob)) {
                    unmatched++;
                } else {
                    memcpy(pb, pv, pn);
                    pb[pn] = '\0';
                    memcpy(ob, ov, on);
                    ob[on] = '\0';
                    int p = atoi(pb);
                    long long o = atoll(ob);
                    if (p < 0 || p >= in_parts || o < 0 || o >= parts[p].n) {
                        unmatched++;
                    } else if (ts > parts[p].out_ts[o]) {
                        parts[p].out_ts[o] = ts;
                    }
                }
                if (ts < first_out)
                    first_out = ts;
                if (ts > last_out)
                    last_out = ts;
            }
        }
        rd_kafka_message_destroy(m);
    }
    free(at_end);
    rd_kafka_topic_partition_list_destroy(l);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    if (eof < n_parts)
        fprintf(stderr, "cg_loadgen: %d partition(s) not read to their end\n", n_parts - eof);

    int64_t inputs = 0, matched = 0, first_in = INT64_MAX, last_in = 0;
    for (int p = 0; p < in_parts; p++)
        for (int64_t o = 0; o < parts[p].n; o++, inputs++) {
            if (parts[p].in_ts[o] < first_in)
                first_in = parts[p].in_ts[o];
            if (parts[p].in_ts[o] > last_in)
                last_in = parts[p].in_ts[o];
        }
    int64_t warm_end = first_in + (int64_t)(warmup_s * 1000);
    int64_t *lat = malloc((size_t)(inputs ? inputs : 1) * sizeof(*lat));
    int64_t *wlat = malloc((size_t)(inputs ? inputs : 1) * sizeof(*wlat)), n_warm = 0, with_out = 0;
    int64_t secs = inputs ? (last_in - first_in) / 1000 + 1 : 0;
    int64_t *sec_n = calloc((size_t)secs + 1, sizeof(int64_t));
    int64_t *sec_max = calloc((size_t)secs + 1, sizeof(int64_t));
    for (int p = 0; p < in_parts; p++)
        for (int64_t o = 0; o < parts[p].n; o++) {
            if (!parts[p].out_ts[o])
                continue;
            int64_t ms = parts[p].out_ts[o] - parts[p].in_ts[o], sec;
            with_out++;
            if (parts[p].in_ts[o] < warm_end)
                wlat[n_warm++] = ms;
            else
                lat[matched++] = ms;
            sec = (parts[p].in_ts[o] - first_in) / 1000;
            sec_n[sec]++;
            if (ms > sec_max[sec])
                sec_max[sec] = ms;
        }
    qsort(lat, (size_t)matched, sizeof(*lat), cmp_i64);
    qsort(wlat, (size_t)n_warm, sizeof(*wlat), cmp_i64);
    double span = last_out > first_out ? (double)(last_out - first_out) / 1000.0 : 0;
#define PCT(v, n, q) ((n) ? (v)[(int64_t)((double)((n)-1) * (q))] : -1)
    if (timeline)
        for (int64_t sec = 0; sec < secs; sec++)
            printf("second=%" PRId64 " inputs=%" PRId64 " max_ms=%" PRId64 "\n", sec, sec_n[sec],
                   sec_max[sec]);
    printf("inputs=%" PRId64 " matched=%" PRId64 " records=%" PRId64 " bytes=%" PRId64
           " unmatched=%" PRId64 " span_s=%.2f rate=%.0f p50_ms=%" PRId64 " p99_ms=%" PRId64
           " max_ms=%" PRId64 " warmup_inputs=%" PRId64 " warmup_p99_ms=%" PRId64
           " warmup_max_ms=%" PRId64 "\n",
           inputs, with_out, records, bytes, unmatched, span,
           span > 0 ? (double)with_out / span : 0.0, PCT(lat, matched, 0.50),
           PCT(lat, matched, 0.99), matched ? lat[matched - 1] : -1, n_warm,
           PCT(wlat, n_warm, 0.99), n_warm ? wlat[n_warm - 1] : -1);
    free(wlat);
    free(sec_n);
    free(sec_max);
    free(lat);
    for (int p = 0; p < in_parts; p++) {
        free(parts[p].in_ts);
        free(parts[p].out_ts);
    }
    free(parts);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        usage();
    const char *cmd = argv[1], *topic = NULL, *group = NULL, *prefix = NULL;
    long count = 0;
    double seconds = 0;
    int rate = 0, parts = 0, timeout_s = 600, timeline = 0, c;
    double warmup = 0;
    static const struct option opts[] = {
        {"bootstrap", required_argument, NULL, 'b'},  {"topic", required_argument, NULL, 't'},
        {"partitions", required_argument, NULL, 'p'}, {"count", required_argument, NULL, 'n'},
        {"duration", required_argument, NULL, 'd'},   {"rate", required_argument, NULL, 'r'},
        {"group", required_argument, NULL, 'g'},      {"prefix", required_argument, NULL, 'x'},
        {"timeout", required_argument, NULL, 'T'},    {"warmup", required_argument, NULL, 'W'},
        {"timeline", no_argument, NULL, 'L'},         {NULL, 0, NULL, 0},
    };
    optind = 2;
    while ((c = getopt_long(argc, argv, "b:t:p:n:d:r:g:x:", opts, NULL)) != -1) {
        switch (c) {
        case 'b':
            setenv("COHORTGATE_TEST_BOOTSTRAP", optarg, 1); /* what kafka_util.c talks to */
            break;
        case 't':
            topic = optarg;
            break;
        case 'p':
            parts = atoi(optarg);
            break;
        case 'n':
            count = atol(optarg);
            break;
        case 'd':
            seconds = atof(optarg);
            break;
        case 'r':
            rate = atoi(optarg);
            break;
        case 'g':
            group = optarg;
            break;
        case 'x':
            prefix = optarg;
            break;
        case 'T':
            timeout_s = atoi(optarg);
            break;
        case 'W':
            warmup = atof(optarg);
            break;
        case 'L':
            timeline = 1;
            break;
        default:
            usage();
        }
    }
    if (!tk_bootstrap() || !topic || optind != argc)
        usage();
    if (!strcmp(cmd, "create") && parts > 0)
        return tk_create_topic(topic, parts) ? 1 : 0;
    if (!strcmp(cmd, "produce") && (count > 0 || seconds > 0))
        return cmd_produce(topic, parts, count, seconds, rate);
    if (!strcmp(cmd, "wait") && group)
        return cmd_wait(group, topic, count, timeout_s);
    if (!strcmp(cmd, "stats") && prefix)
        return cmd_stats(topic, prefix, warmup, timeline);
    usage();
    return 2;
}
