/* cg_cohortload.c - the cohort benchmark's load (see bench_cohort.sh): OMOP record envelopes
 * keyed by person for `cohortgate sink` with pg.cohorts, and the enter events read back.
 *
 *   cg_cohortload preload BOOTSTRAP TOPIC FIRST PERSONS ROWS_PER_PERSON
 *       persons FIRST.. (person_source_value "base-I"), each a person record and
 *       ROWS_PER_PERSON - 1 HbA1c 5.5 % measurements (no cohort event), as fast as it goes
 *   cg_cohortload batch BOOTSTRAP TOPIC BASE_PERSONS RECORDS TRIGGERS TAG
 *       one batch of RECORDS: TRIGGERS new persons ("trg-TAG-J": a person record, then an HbA1c
 *       7.2 % measurement, which enters them into definition 1, t2dm), spread evenly among
 *       fillers (a new HbA1c 5.5 % of an existing person); the same shape for every TAG
 *   cg_cohortload rate BOOTSTRAP TOPIC EVENTS_TOPIC BASE_PERSONS RATE DURATION_S EVERY
 *                      WARMUP_S WAIT_S TAG [SINK_PID]
 *       RATE records/s for DURATION_S, paced every millisecond: fillers, and in every EVERY
 *       records one trigger (2 records) whose measurement's produce time is noted. A
 *       read_committed consumer of EVENTS_TOPIC, from its current end, takes each "enter" of
 *       definition 1 and matches it to its trigger: latency = consumed - produced. After the
 *       load it waits for the missing ones until none has come for WAIT_S (or SINK_PID, if
 *       given, has died); prints the figures; exits 1 when an enter event is missing.
 * Every mode prints what it produced. Ids are 63-bit, as the mapping makes them, in ranges of
 * their own per mode and TAG, so runs against one schema never collide. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* clock_nanosleep, usleep */
#endif
#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PERSON0  3000000000000000000LL /* base persons: + index */
#define BASEM0   4000000000000000000LL /* their measurements: + index * 64 + k */
#define FILLER0  5000000000000000000LL /* fillers: + TAG * 1e12 + record */
#define TRIGP0   6000000000000000000LL /* trigger persons: + TAG * 1e9 + trigger */
#define TRIGM0   7000000000000000000LL /* their measurements: + TAG * 1e9 + trigger */
#define TAG_STEP 1000000000LL

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, const char *why)
{
    fprintf(stderr, "cg_cohortload: %s: %s\n", what, why);
    exit(1);
}

static int person_rec(char *buf, size_t n, long long pid, const char *psv)
{
    return snprintf(buf, n,
                    "{\"standard\":\"omop-cdm-5.4\",\"table\":\"person\",\"op\":\"upsert\","
                    "\"row\":{\"person_id\":%lld,\"gender_concept_id\":8532,"
                    "\"year_of_birth\":1970,\"race_concept_id\":0,\"ethnicity_concept_id\":0,"
                    "\"person_source_value\":\"%s\"}}",
                    pid, psv);
}

/* an HbA1c result in %: 5.5 leaves a person out of t2dm, 7.2 takes them in */
static int hba1c_rec(char *buf, size_t n, long long mid, long long pid, const char *value)
{
    return snprintf(buf, n,
                    "{\"standard\":\"omop-cdm-5.4\",\"table\":\"measurement\",\"op\":\"upsert\","
                    "\"row\":{\"measurement_id\":%lld,\"person_id\":%lld,"
                    "\"measurement_concept_id\":3004410,\"measurement_date\":\"2024-03-14\","
                    "\"measurement_datetime\":\"2024-03-14T10:00:00\","
                    "\"measurement_type_concept_id\":32856,\"value_as_number\":%s,"
                    "\"unit_concept_id\":8554,\"measurement_source_value\":\"4548-4\","
                    "\"unit_source_value\":\"%%\"}}",
                    mid, pid, value);
}

static rd_kafka_t *producer(const char *bootstrap, const char *linger)
{
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, err, sizeof(err)) ||
        rd_kafka_conf_set(conf, "linger.ms", linger, err, sizeof(err)) ||
        rd_kafka_conf_set(conf, "enable.idempotence", "true", err, sizeof(err)))
        die("producer", err);
    rd_kafka_t *p = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    if (!p)
        die("producer", err);
    return p;
}

static void produce(rd_kafka_t *p, const char *topic, long long key, const char *val, int len)
{
    char k[32];
    snprintf(k, sizeof(k), "%lld", key);
    rd_kafka_resp_err_t e;
    while ((e = rd_kafka_producev(p, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(k, strlen(k)),
                                  RD_KAFKA_V_VALUE((void *)val, (size_t)len),
                                  RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END)) ==
           RD_KAFKA_RESP_ERR__QUEUE_FULL)
        rd_kafka_poll(p, 1);
    if (e)
        die("produce", rd_kafka_err2str(e));
    rd_kafka_poll(p, 0);
}

static void finish(rd_kafka_t *p)
{
    int rc = rd_kafka_flush(p, 60000) != RD_KAFKA_RESP_ERR_NO_ERROR;
    rd_kafka_destroy(p);
    if (rc)
        die("flush", "not every record was delivered within 60 s");
}

static int mode_preload(char **a)
{
    long long first = atoll(a[2]), persons = atoll(a[3]), per = atoll(a[4]);
    if (per < 1 || per > 64)
        die("preload", "ROWS_PER_PERSON must be 1 to 64");
    rd_kafka_t *p = producer(a[0], "20");
    char buf[1024], psv[32];
    long long n = 0;
    for (long long i = first; i < first + persons; i++) {
        snprintf(psv, sizeof(psv), "base-%lld", i);
        produce(p, a[1], PERSON0 + i, buf, person_rec(buf, sizeof(buf), PERSON0 + i, psv));
        for (long long k = 1; k < per; k++)
            produce(p, a[1], PERSON0 + i, buf,
                    hba1c_rec(buf, sizeof(buf), BASEM0 + i * 64 + k, PERSON0 + i, "5.5"));
        n += per;
    }
    finish(p);
    printf("%lld\n", n);
    return 0;
}

/* ---- the record stream of batch and rate: fillers with a trigger in every EVERY ---- */

typedef struct stream {
    rd_kafka_t *p;
    const char *topic;
    long long base_persons, every, tag;
} stream_t;

/* Record i of the stream; returns the trigger index when it was a trigger's measurement. */
static long long stream_rec(const stream_t *s, long long i)
{
    char buf[1024], psv[48];
    long long slot = i % s->every, j = i / s->every;
    if (slot == s->every - 2 || slot == s->every - 1) {
        long long pid = TRIGP0 + s->tag * TAG_STEP + j;
        if (slot == s->every - 2) {
            snprintf(psv, sizeof(psv), "trg-%lld-%lld", s->tag, j);
            produce(s->p, s->topic, pid, buf, person_rec(buf, sizeof(buf), pid, psv));
            return -1;
        }
        produce(s->p, s->topic, pid, buf,
                hba1c_rec(buf, sizeof(buf), TRIGM0 + s->tag * TAG_STEP + j, pid, "7.2"));
        return j;
    }
    /* a spread of existing persons, the same for every TAG and base size */
    long long pid = PERSON0 + (i * 7919) % s->base_persons;
    produce(s->p, s->topic, pid, buf,
            hba1c_rec(buf, sizeof(buf), FILLER0 + s->tag * 1000 * TAG_STEP + i, pid, "5.5"));
    return -1;
}

static int mode_batch(char **a)
{
    long long records = atoll(a[3]), triggers = atoll(a[4]);
    stream_t s = {producer(a[0], "20"), a[1], atoll(a[2]), 0, atoll(a[5])};
    if (s.base_persons < 1 || triggers < 1 || records < 2 * triggers)
        die("batch", "needs BASE_PERSONS >= 1, TRIGGERS >= 1 and RECORDS >= 2 * TRIGGERS");
    s.every = records / triggers;
    for (long long i = 0; i < records; i++)
        stream_rec(&s, i);
    finish(s.p);
    printf("%lld\n", records);
    return 0;
}

/* ---- rate: the paced stream and the events' reader ---- */

typedef struct reader {
    rd_kafka_t *c;
    long long tag, n; /* triggers there can be */
    double *consumed; /* by trigger: when its enter event was consumed, 0 not yet */
    atomic_llong matched, duplicates, strays;
    atomic_int stop;
} reader_t;

static void on_event(reader_t *r, const rd_kafka_message_t *m)
{
    double t = now_s();
    json_t *v = json_loadb(m->payload, m->len, 0, NULL);
    const char *ev = json_string_value(json_object_get(v, "event"));
    const char *psv = json_string_value(json_object_get(v, "person_source_value"));
    long long def = json_integer_value(json_object_get(v, "cohort_definition_id"));
    if (ev && psv && def == 1 && !strcmp(ev, "enter")) {
        long long tag, j;
        char end;
        if (sscanf(psv, "trg-%lld-%lld%c", &tag, &j, &end) == 2 && tag == r->tag && j >= 0 &&
            j < r->n) {
            if (r->consumed[j] > 0)
                r->duplicates++;
            else {
                r->consumed[j] = t;
                r->matched++;
            }
        } else
            r->strays++;
    }
    json_decref(v);
}

static void *reader_main(void *arg)
{
    reader_t *r = arg;
    while (!r->stop) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(r->c, 100);
        if (!m)
            continue;
        if (!m->err)
            on_event(r, m);
        else if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
            fprintf(stderr, "cg_cohortload: events: %s\n", rd_kafka_message_errstr(m));
        rd_kafka_message_destroy(m);
    }
    return NULL;
}

/* A read_committed consumer assigned every partition of the topic at its current end, so that
 * it reads exactly the events of this run (the topic must exist: the sink made it). */
static rd_kafka_t *events_consumer(const char *bootstrap, const char *topic)
{
    char err[512], group[64];
    snprintf(group, sizeof(group), "cg-cohortload-%ld", (long)getpid());
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, err, sizeof(err)) ||
        rd_kafka_conf_set(conf, "group.id", group, err, sizeof(err)) ||
        rd_kafka_conf_set(conf, "isolation.level", "read_committed", err, sizeof(err)) ||
        rd_kafka_conf_set(conf, "enable.auto.commit", "false", err, sizeof(err)) ||
        rd_kafka_conf_set(conf, "fetch.wait.max.ms", "10", err, sizeof(err)))
        die("consumer", err);
    rd_kafka_t *c = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
    if (!c)
        die("consumer", err);
    rd_kafka_topic_t *t = rd_kafka_topic_new(c, topic, NULL);
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t e = rd_kafka_metadata(c, 0, t, &md, 10000);
    if (e || md->topic_cnt != 1 || md->topics[0].err || md->topics[0].partition_cnt < 1)
        die("events topic",
            e ? rd_kafka_err2str(e) : "not there (the sink has not published to it yet)");
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(0);
    for (int i = 0; i < md->topics[0].partition_cnt; i++) {
        int32_t part = md->topics[0].partitions[i].id;
        int64_t lo, hi;
        if ((e = rd_kafka_query_watermark_offsets(c, topic, part, &lo, &hi, 10000)))
            die("events topic", rd_kafka_err2str(e));
        rd_kafka_topic_partition_list_add(l, topic, part)->offset = hi;
    }
    rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(t);
    if ((e = rd_kafka_assign(c, l)))
        die("events topic", rd_kafka_err2str(e));
    rd_kafka_topic_partition_list_destroy(l);
    return c;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double pct(const double *v, size_t n, double p) /* nearest rank */
{
    size_t k = (size_t)(p * (double)n + 0.999999);
    return v[k ? k - 1 : 0];
}

static int mode_rate(char **a, int argc)
{
    long long rate = atoll(a[4]), duration = atoll(a[5]);
    double warmup = atof(a[7]), wait_s = atof(a[8]);
    pid_t sink = argc > 10 ? (pid_t)atol(a[10]) : 0;
    stream_t s = {producer(a[0], "5"), a[1], atoll(a[3]), atoll(a[6]), atoll(a[9])};
    if (rate < 1 || duration < 1 || s.base_persons < 1 || s.every < 2)
        die("rate", "needs RATE, DURATION_S, BASE_PERSONS >= 1 and EVERY >= 2");
    long long total = rate * duration;
    reader_t r = {.c = events_consumer(a[0], a[2]), .tag = s.tag, .n = total / s.every + 1};
    double *produced = calloc((size_t)r.n, sizeof(double));
    r.consumed = calloc((size_t)r.n, sizeof(double));
    if (!produced || !r.consumed)
        die("rate", "out of memory");
    pthread_t th;
    if (pthread_create(&th, NULL, reader_main, &r))
        die("rate", "cannot start the reader");
    usleep(500000); /* the reader's fetch under way before the first trigger */

    double t0 = now_s();
    long long sent = 0, triggers = 0;
    struct timespec tick;
    clock_gettime(CLOCK_MONOTONIC, &tick);
    while (sent < total) {
        long long due = (long long)((now_s() - t0) * (double)rate);
        if (due > total)
            due = total;
        for (; sent < due; sent++) {
            long long j = stream_rec(&s, sent);
            if (j >= 0) {
                produced[j] = now_s();
                triggers = j + 1;
            }
        }
        rd_kafka_poll(s.p, 0);
        tick.tv_nsec += 1000000; /* every millisecond, on a fixed grid */
        if (tick.tv_nsec >= 1000000000) {
            tick.tv_sec++;
            tick.tv_nsec -= 1000000000;
        }
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &tick, NULL);
    }
    double t1 = now_s();
    finish(s.p);

    /* the enter events still on their way: a sink behind the load is late, not wrong, so
     * the wait ends only when none has come for wait_s */
    int died = 0;
    long long seen = r.matched;
    double until = now_s() + wait_s;
    while (r.matched < triggers && now_s() < until) {
        if (sink > 0 && kill(sink, 0)) {
            died = 1;
            break;
        }
        usleep(50000);
        if (r.matched != seen) {
            seen = r.matched;
            until = now_s() + wait_s;
        }
    }
    r.stop = 1;
    pthread_join(th, NULL);
    rd_kafka_consumer_close(r.c);
    rd_kafka_destroy(r.c);

    double *lat = malloc(((size_t)triggers + 1) * sizeof(double));
    size_t nl = 0;
    double all_max = 0, last = 0;
    for (long long j = 0; j < triggers; j++) {
        if (!r.consumed[j])
            continue;
        if (r.consumed[j] > last)
            last = r.consumed[j];
        double l = r.consumed[j] - produced[j];
        if (l > all_max)
            all_max = l;
        if (produced[j] - t0 >= warmup)
            lat[nl++] = l;
    }
    qsort(lat, nl, sizeof(double), cmp_double);
    long long missing = triggers - r.matched;
    printf("records %lld in %.2f s: %.0f records/s (asked %lld)\n", sent, t1 - t0,
           (double)sent / (t1 - t0), rate);
    printf("triggers %lld (%.1f %% of records), enter events matched %lld, missing %lld, "
           "duplicates %lld, unknown %lld\n",
           triggers, 100.0 * 2 * (double)triggers / (double)sent, (long long)r.matched, missing,
           (long long)r.duplicates, (long long)r.strays);
    if (nl)
        printf("latency after the %.0f s warm-up (%zu triggers): p50 %.3f s, p99 %.3f s, max "
               "%.3f s (max with the warm-up %.3f s)\n",
               warmup, nl, pct(lat, nl, 0.5), pct(lat, nl, 0.99), lat[nl - 1], all_max);
    else
        printf("latency: no trigger matched after the %.0f s warm-up\n", warmup);
    if (!missing && last > 0)
        printf("last enter event %.2f s after the last record was produced\n", last - t1);
    free(lat);
    free(produced);
    free(r.consumed);
    if (died)
        fprintf(stderr, "cg_cohortload: the sink (pid %ld) died\n", (long)sink);
    else if (missing)
        fprintf(stderr, "cg_cohortload: %lld enter events missing (none came for %.0f s)\n",
                missing, wait_s);
    return died || missing || !nl ? 1 : 0;
}

int main(int argc, char **argv)
{
    if (argc == 7 && !strcmp(argv[1], "preload"))
        return mode_preload(argv + 2);
    if (argc == 8 && !strcmp(argv[1], "batch"))
        return mode_batch(argv + 2);
    if ((argc == 12 || argc == 13) && !strcmp(argv[1], "rate"))
        return mode_rate(argv + 2, argc - 2);
    fprintf(stderr, "usage: cg_cohortload preload BOOTSTRAP TOPIC FIRST PERSONS ROWS_PER_PERSON\n"
                    "       cg_cohortload batch BOOTSTRAP TOPIC BASE_PERSONS RECORDS TRIGGERS "
                    "TAG\n"
                    "       cg_cohortload rate BOOTSTRAP TOPIC EVENTS_TOPIC BASE_PERSONS RATE "
                    "DURATION_S EVERY WARMUP_S WAIT_S TAG [SINK_PID]\n");
    return 2;
}
