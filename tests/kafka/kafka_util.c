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

int tk_partitions(const char *topic)
{
    rd_kafka_t *q = tk_query_handle();
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(q, topic, NULL);
    const struct rd_kafka_metadata *md = NULL;
    int n = 0;
    if (rd_kafka_metadata(q, 0, rkt, &md, 10000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        if (md->topic_cnt == 1 && !md->topics[0].err)
            n = md->topics[0].partition_cnt;
        rd_kafka_metadata_destroy(md);
    }
    rd_kafka_topic_destroy(rkt);
    rd_kafka_destroy(q);
    return n;
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

/* A copy of a consumed record: key, value and headers as "name=value\n" lines. */
static void msg_copy(tk_msg_t *x, const rd_kafka_message_t *m)
{
    x->partition = m->partition;
    x->offset = m->offset;
    x->key = dup_n(m->key, m->key_len);
    x->key_len = m->key_len;
    x->value = dup_n(m->payload, m->len);
    x->value_len = m->len;
    rd_kafka_headers_t *h = NULL;
    size_t hl = 0;
    char *hs = calloc(1, 1);
    if (rd_kafka_message_headers(m, &h) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        const char *name;
        const void *val;
        size_t vlen;
        for (size_t i = 0; !rd_kafka_header_get_all(h, i, &name, &val, &vlen); i++) {
            hs = realloc(hs, hl + strlen(name) + vlen + 3);
            hl += (size_t)sprintf(hs + hl, "%s=%.*s\n", name, (int)vlen, (const char *)val);
        }
    }
    x->headers = hs;
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
            msg_copy(&v[n++], m);
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

/* ---- for the process-level failure tests and the gateway benchmark ---- */

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>

size_t tk_gen_input(int i, int with_junk, char *buf, size_t n, tk_gen_kind_t *kind)
{
    static const char *const dx[] = {"E11.9", "N18.3", "I10", "E11.65", "J45.909"};
    int slot = i % 16, pat = 200000 + i % 97;
    if (!with_junk && (slot == 13 || slot == 14))
        slot = 0;
    if (kind)
        *kind = slot == 13                ? TK_GEN_JUNK
                : slot == 14              ? TK_GEN_UNMAPPABLE
                : slot >= 9 && slot <= 12 ? TK_GEN_ADT
                                          : TK_GEN_ORU;
    switch (slot) {
    case 6:
    case 7: /* HbA1c and glucose */
        return (size_t)snprintf(
            buf, n,
            "MSH|^~\\&|LAB|GENHOSP|CG|RES|20240314101500||ORU^R01^ORU_R01|G%07d|P|2.5.1\r"
            "PID|1||%d^^^GENHOSP^MR||Doe^Jane||19670412|F\r"
            "OBR|1|ORD%d||4548-4^HbA1c^LN|||20240314093000\r"
            "OBX|1|NM|4548-4^HbA1c^LN||%d.%d|%%^percent^UCUM|4.0-5.6||||F|||20240314093000\r"
            "OBX|2|NM|2345-7^Glucose^LN||%d|mg/dL^^UCUM|70-99||||F|||20240314093000\r",
            i, pat, i, 5 + i % 3, i % 10, 80 + i % 90);
    case 8: /* eGFR: below 60 is the ckd cohort */
        return (size_t)snprintf(
            buf, n,
            "MSH|^~\\&|LAB|GENHOSP|CG|RES|20240314101500||ORU^R01^ORU_R01|G%07d|P|2.5.1\r"
            "PID|1||%d^^^GENHOSP^MR||Roe^Max||19550101|M\r"
            "OBX|1|NM|33914-3^eGFR MDRD^LN||%d|mL/min/{1.73_m2}^^UCUM|>60||||F|||20240314093000\r",
            i, pat, 30 + i % 60);
    case 9:
    case 10:
    case 11: /* admission with a diagnosis */
        return (size_t)snprintf(
            buf, n,
            "MSH|^~\\&|EPIC|GENHOSP|CG|RES|20240314083000||ADT^A01^ADT_A01|G%07d|P|2.5.1\r"
            "EVN|A01|20240314082900\r"
            "PID|1||%d^^^GENHOSP^MR||Doe^Jane^Q||19670412|F\r"
            "PV1|1|I|4W^402^B^GENHOSP||||1234^Smith^Adam^^^Dr|||MED||||1|||1234^Smith^Adam^^^Dr|"
            "IP|V%d|||||||||||||||||||||||||20240314080000\r"
            "DG1|1||%s^diagnosis^I10||20240314|A\r",
            i, pat, i, dx[(i / 16) % 5]);
    case 12: /* update without a visit */
        return (size_t)snprintf(
            buf, n,
            "MSH|^~\\&|EPIC|GENHOSP|CG|RES|20240314083000||ADT^A08^ADT_A01|G%07d|P|2.5.1\r"
            "EVN|A08|20240314082900\r"
            "PID|1||%d^^^GENHOSP^MR||Roe^Max||19550101|M\r",
            i, pat);
    case 13: /* junk */
        switch ((i / 16) % 4) {
        case 0:
            return (size_t)snprintf(buf, n, "{\"junk\":%d}", i);
        case 1: /* binary with NUL bytes */
            memset(buf, 0, 16);
            snprintf(buf + 4, n - 4, "J%07d", i);
            buf[13] = (char)0xFF;
            return 16;
        case 2:
            return (size_t)snprintf(buf, n, "MSA|AA|J%07d\r", i);
        default:
            return 0;
        }
    case 14: /* decodes, but the patient identifier is empty */
        return (size_t)snprintf(
            buf, n,
            "MSH|^~\\&|LAB|GENHOSP|CG|RES|20240314101500||ORU^R01^ORU_R01|G%07d|P|2.5.1\r"
            "PID|1||\rOBX|1|NM|4548-4^HbA1c^LN||7.1|%%|||||F\r",
            i);
    default: /* HbA1c: 6.5 % and more is the t2dm cohort */
        return (size_t)snprintf(
            buf, n,
            "MSH|^~\\&|LAB|GENHOSP|CG|RES|20240314101500||ORU^R01^ORU_R01|G%07d|P|2.5.1\r"
            "PID|1||%d^^^GENHOSP^MR||Doe^Jane||19670412|F\r"
            "OBX|1|NM|4548-4^HbA1c^LN||6.%d|%%^percent^UCUM|4.0-5.6||||F|||20240314093000\r",
            i, pat, i % 10);
    }
}

int64_t tk_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int tk_produce_inputs(rd_kafka_t *p, const char *topic, int from, int to, int with_junk, int rate,
                      volatile int *stop)
{
    char buf[1024], key[16];
    int64_t t0 = tk_now_ms();
    for (int i = from; i < to && !(stop && *stop); i++) {
        if (rate > 0) { /* paced: input i is due at t0 + (i - from) / rate seconds */
            int64_t due = t0 + (int64_t)(i - from) * 1000 / rate;
            int64_t t;
            while ((t = tk_now_ms()) < due)
                rd_kafka_poll(p, (int)(due - t));
        }
        size_t len = tk_gen_input(i, with_junk, buf, sizeof(buf), NULL);
        int kl = snprintf(key, sizeof(key), "k%07d", i);
        rd_kafka_resp_err_t err;
        while ((err = rd_kafka_producev(p, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, kl),
                                        RD_KAFKA_V_VALUE(buf, len),
                                        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                        RD_KAFKA_V_END)) == RD_KAFKA_RESP_ERR__QUEUE_FULL)
            rd_kafka_poll(p, 10);
        if (err) {
            fprintf(stderr, "tk_produce_inputs(%s): %s\n", topic, rd_kafka_err2str(err));
            return -1;
        }
        rd_kafka_poll(p, 0);
    }
    rd_kafka_resp_err_t err = rd_kafka_flush(p, 120000);
    if (err)
        fprintf(stderr, "tk_produce_inputs(%s): flush: %s\n", topic, rd_kafka_err2str(err));
    return err ? -1 : 0;
}

rd_kafka_t *tk_query_handle(void)
{
    char err[512];
    rd_kafka_conf_t *c = base_conf();
    rd_kafka_conf_set(c, "enable.auto.commit", "false", err, sizeof(err));
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, c, err, sizeof(err));
    if (!rk) {
        fprintf(stderr, "tk_query_handle: %s\n", err);
        abort();
    }
    return rk;
}

int64_t tk_topic_end(rd_kafka_t *rk, const char *topic)
{
    const struct rd_kafka_metadata *md;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    /* only this topic's metadata, and without creating it (auto-creation is the broker's
     * default for a metadata request naming a topic from a producer; this is a consumer) */
    rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, rkt, &md, 10000);
    rd_kafka_topic_destroy(rkt);
    if (e)
        return -1;
    int parts = 0;
    if (md->topic_cnt == 1 && !md->topics[0].err)
        parts = md->topics[0].partition_cnt;
    rd_kafka_metadata_destroy(md);
    int64_t sum = 0;
    for (int p = 0; p < parts; p++) {
        int64_t lo, hi;
        if (rd_kafka_query_watermark_offsets(rk, topic, p, &lo, &hi, 10000))
            return -1;
        sum += hi;
    }
    return sum;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

size_t tk_list_topics(rd_kafka_t *rk, const char *prefix, char ***out)
{
    const struct rd_kafka_metadata *md;
    *out = NULL;
    if (rd_kafka_metadata(rk, 1, NULL, &md, 10000))
        return 0;
    size_t n = 0, pl = strlen(prefix);
    char **v = calloc((size_t)md->topic_cnt + 1, sizeof(*v));
    for (int i = 0; i < md->topic_cnt; i++)
        if (!strncmp(md->topics[i].topic, prefix, pl))
            v[n++] = strdup(md->topics[i].topic);
    rd_kafka_metadata_destroy(md);
    qsort(v, n, sizeof(*v), cmp_str);
    *out = v;
    return n;
}

void tk_strv_free(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

int tk_committed(const char *group, const char *topic, int partitions, int64_t *out)
{
    char err[512];
    rd_kafka_conf_t *c = base_conf();
    rd_kafka_conf_set(c, "group.id", group, err, sizeof(err));
    rd_kafka_conf_set(c, "enable.auto.commit", "false", err, sizeof(err));
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, c, err, sizeof(err));
    if (!rk)
        return -1;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(partitions);
    for (int p = 0; p < partitions; p++)
        rd_kafka_topic_partition_list_add(l, topic, p);
    int rc = rd_kafka_committed(rk, l, 10000) ? -1 : 0;
    for (int p = 0; p < partitions; p++)
        out[p] = rc == 0 && !l->elems[p].err && l->elems[p].offset >= 0 ? l->elems[p].offset : -1;
    rd_kafka_topic_partition_list_destroy(l);
    rd_kafka_destroy(rk);
    return rc;
}

pid_t tk_spawn(char *const argv[], const char *out_path, const char *err_path)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* a test killed by ctest's timeout takes it along */
    int fd = open(out_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    int efd = err_path ? open(err_path, O_WRONLY | O_CREAT | O_APPEND, 0644) : fd;
    if (fd < 0 || efd < 0)
        _exit(126);
    dup2(fd, 1);
    dup2(efd, 2);
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0)
        dup2(devnull, 0);
    execv(argv[0], argv);
    _exit(127);
}

int tk_wait_pid(pid_t pid, int timeout_ms, int *status)
{
    int64_t until = tk_now_ms() + timeout_ms;
    for (;;) {
        pid_t r = waitpid(pid, status, WNOHANG);
        if (r == pid)
            return 0;
        if (r < 0 || tk_now_ms() >= until)
            return -1;
        usleep(10000);
    }
}

int tk_file_count(const char *path, const char *needle)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return 0;
    int count = 0;
    size_t nl = strlen(needle);
    char line[8192];
    while (fgets(line, sizeof(line), f))
        for (const char *p = line; (p = strstr(p, needle)) != NULL; p += nl)
            count++;
    fclose(f);
    return count;
}

int tk_read_many(const char *const *topics, size_t n, tk_msg_t **out, size_t *counts)
{
    char err[512];
    rd_kafka_conf_t *c = base_conf();
    rd_kafka_conf_set(c, "group.id", "cohortgate-test-reader", err, sizeof(err));
    rd_kafka_conf_set(c, "enable.auto.commit", "false", err, sizeof(err));
    rd_kafka_conf_set(c, "enable.partition.eof", "true", err, sizeof(err));
    rd_kafka_conf_set(c, "isolation.level", "read_committed", err, sizeof(err));
    rd_kafka_conf_set(c, "fetch.wait.max.ms", "20", err, sizeof(err));
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, c, err, sizeof(err));
    if (!rk) {
        fprintf(stderr, "tk_read_many: %s\n", err);
        return -1;
    }
    rd_kafka_poll_set_consumer(rk);
    const struct rd_kafka_metadata *md;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new((int)n * 4);
    size_t *cap = calloc(n ? n : 1, sizeof(*cap));
    int parts = 0, rc = 0;
    if (rd_kafka_metadata(rk, 1, NULL, &md, 10000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        for (size_t t = 0; t < n; t++)
            for (int i = 0; i < md->topic_cnt; i++)
                if (!strcmp(md->topics[i].topic, topics[t]) && !md->topics[i].err)
                    for (int p = 0; p < md->topics[i].partition_cnt; p++, parts++)
                        rd_kafka_topic_partition_list_add(l, topics[t], p)->offset =
                            RD_KAFKA_OFFSET_BEGINNING;
        rd_kafka_metadata_destroy(md);
    } else {
        rc = -1;
    }
    for (size_t t = 0; t < n; t++) {
        out[t] = NULL;
        counts[t] = 0;
    }
    rd_kafka_assign(rk, l);
    /* a partition counts once at its end, however many end events it sends */
    char *at_end = calloc((size_t)parts + 1, 1);
    int eof = 0, idle = 0;
    while (eof < parts && idle < 20000) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if (!m) {
            idle += 100;
            continue;
        }
        idle = 0;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            const char *name = rd_kafka_topic_name(m->rkt);
            for (int k = 0; k < l->cnt; k++)
                if (l->elems[k].partition == m->partition && !strcmp(l->elems[k].topic, name) &&
                    !at_end[k]) {
                    at_end[k] = 1;
                    eof++;
                }
        } else if (!m->err) {
            const char *name = rd_kafka_topic_name(m->rkt);
            size_t t = 0;
            while (t < n && strcmp(topics[t], name))
                t++;
            if (t < n) {
                if (counts[t] == cap[t]) {
                    cap[t] = cap[t] ? cap[t] * 2 : 256;
                    out[t] = realloc(out[t], cap[t] * sizeof(**out));
                }
                msg_copy(&out[t][counts[t]++], m);
            }
        } else {
            fprintf(stderr, "tk_read_many: %s\n", rd_kafka_message_errstr(m));
        }
        rd_kafka_message_destroy(m);
    }
    if (eof < parts) {
        fprintf(stderr, "tk_read_many: %d of %d partitions not read to their end\n", parts - eof,
                parts);
        rc = -1;
    }
    free(cap);
    free(at_end);
    rd_kafka_topic_partition_list_destroy(l);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return rc;
}

int tk_produce_each(const char *topic, int n, size_t (*make)(int i, char *buf, size_t size))
{
    rd_kafka_t *p = tk_producer();
    if (!p)
        return -1;
    static char buf[8192];
    char key[32];
    int rc = 0;
    for (int i = 0; i < n && !rc; i++) {
        size_t len = make(i, buf, sizeof(buf));
        int kl = snprintf(key, sizeof(key), "k%06d", i);
        rd_kafka_resp_err_t err;
        while ((err = rd_kafka_producev(p, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, kl),
                                        RD_KAFKA_V_VALUE(buf, len),
                                        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                        RD_KAFKA_V_END)) == RD_KAFKA_RESP_ERR__QUEUE_FULL)
            rd_kafka_poll(p, 10);
        rc = err ? -1 : 0;
    }
    if (rd_kafka_flush(p, 30000) != RD_KAFKA_RESP_ERR_NO_ERROR)
        rc = -1;
    rd_kafka_destroy(p);
    return rc;
}

/* ---- a broker of the test's own ---- */

int tk_own_broker_script(tk_own_broker_t *b, const char *cmd)
{
    char out[400];
    snprintf(out, sizeof(out), "%s/kafka-broker.out", b->home);
    char *argv[] = {"/bin/bash", CG_SOURCE_DIR "/tests/scripts/kafka-broker.sh", (char *)cmd,
                    b->dir, NULL};
    pid_t pid = tk_spawn(argv, out, NULL);
    int st;
    if (pid <= 0 || tk_wait_pid(pid, 180000, &st))
        return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

int tk_own_broker_start(tk_own_broker_t *b)
{
    if (b->up)
        return 0;
    snprintf(b->home, sizeof(b->home), "/tmp/cg-it-broker-XXXXXX");
    if (!mkdtemp(b->home))
        return -1;
    snprintf(b->dir, sizeof(b->dir), "%s/broker", b->home);
    b->up = 1;
    int64_t t0 = tk_now_ms();
    if (tk_own_broker_script(b, "start"))
        return -1;
    char path[400];
    snprintf(path, sizeof(path), "%s/bootstrap", b->dir);
    FILE *f = fopen(path, "r");
    if (!f || !fgets(b->bootstrap, sizeof(b->bootstrap), f)) {
        if (f)
            fclose(f);
        return -1;
    }
    fclose(f);
    b->bootstrap[strcspn(b->bootstrap, "\n")] = '\0';
    printf("own broker on %s, up in %lld ms\n", b->bootstrap, (long long)(tk_now_ms() - t0));
    setenv("COHORTGATE_TEST_BOOTSTRAP", b->bootstrap, 1);
    return 0;
}

static long own_broker_pid(const tk_own_broker_t *b)
{
    char path[400];
    snprintf(path, sizeof(path), "%s/broker.pid", b->dir);
    FILE *f = fopen(path, "r");
    long pid = 0;
    if (f && fscanf(f, "%ld", &pid) != 1)
        pid = 0;
    if (f)
        fclose(f);
    return pid;
}

int tk_own_broker_signal(tk_own_broker_t *b, int sig)
{
    long pid = own_broker_pid(b);
    if (pid <= 0 || kill((pid_t)pid, sig))
        return -1;
    if (sig != SIGKILL)
        return 0;
    for (int i = 0; i < 200 && kill((pid_t)pid, 0) == 0; i++)
        usleep(50 * 1000);
    return kill((pid_t)pid, 0) == 0 ? -1 : 0;
}

void tk_own_broker_end(tk_own_broker_t *b, int remove)
{
    if (b->up) {
        long pid = own_broker_pid(b);
        if (pid > 0)
            kill((pid_t)pid, SIGCONT); /* a case that failed may have left it stopped */
        tk_own_broker_script(b, "stop");
    }
    b->up = 0;
    if (remove && b->home[0] && !getenv("CG_TEST_KEEP")) {
        char cmd[400];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", b->home);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", b->home);
    } else if (b->home[0]) {
        fprintf(stderr, "the broker's logs are kept in %s\n", b->dir);
    }
}
