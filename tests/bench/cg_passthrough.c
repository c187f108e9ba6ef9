/* cg_passthrough.c - the transport ceiling of the gateway benchmark (bench_gateway.sh): the
 * gateway's Kafka traffic without its decoding and mapping.
 *
 *   cg_passthrough plan -b HOST:PORT -t INPUT -x PREFIX -o PLAN
 *       Reads (read_committed) every topic whose name starts with PREFIX, except INPUT: the
 *       outputs of a gateway run over INPUT. Each record names its input by its
 *       cg.source.partition and cg.source.offset headers; PLAN gets, per input, the records it
 *       caused: output topic (its name without PREFIX), key, value size and the headers other
 *       than cg.source.*. Prints `inputs=N records=M topics=T keys=K header_sets=H`.
 *   cg_passthrough run -c CONFIG -p PLAN -x PREFIX
 *       Consumes CONFIG's input topic and produces, for each input, the records PLAN lists for
 *       it to PREFIX<topic>: the same keys, headers and value sizes (the values are filler) as
 *       the gateway's records, so the same bytes reach the same partitions. Stops on SIGTERM or
 *       SIGINT once what it consumed is delivered and committed.
 *
 * Why a plan taken from the gateway's own output rather than computed: the records per input
 * (how many, to which cohort topics, how large) are then exactly what the gateway produced for
 * those inputs, with nothing to keep in sync with the mapping. PLAN is loaded before the
 * consumer starts, so the timed part does no file or mapping work at all.
 *
 * What is the same as `cohortgate run` on CONFIG, on purpose, so that the difference in
 * throughput is the gateway's decoding, mapping and bookkeeping:
 *   - the clients: built by the gateway's own cg_kafka_producer_new / cg_kafka_consumer_new from
 *     the same config (idempotent producer, acks=all, linger.ms, read_committed, manual commits,
 *     statistics every 5 s, transactional.id under exactly-once, any kafka.* settings);
 *   - one thread polling the consumer (rd_kafka_consumer_poll, one message at a time) and the
 *     producer, with the same poll timeouts;
 *   - per record, headers built the way the gateway builds them (cg.source.topic, .partition,
 *     .offset, then the rest) and rd_kafka_producev with RD_KAFKA_MSG_F_COPY;
 *   - at-least-once: an input's offset is committed only once every record of it, and of every
 *     earlier input of its partition, is delivered; commits every delivery.commit_interval_ms,
 *     asynchronously, and synchronously at the end;
 *   - exactly-once: a transaction from the first record on, committed once it holds
 *     delivery.transaction_max_messages inputs or is delivery.commit_interval_ms old, and only
 *     between inputs: flush, send_offsets_to_transaction (one past each partition's last
 *     input), commit_transaction;
 *   - backpressure: no consuming while delivery.max_in_flight inputs are undelivered or the
 *     producer queue is full, until the inputs are down to three quarters of that and the queue
 *     to half of what it held; the assignment is paused after delivery.pause_after_ms of that.
 * What it leaves out: decoding, mapping, the worker rings, the metrics endpoint, dead letters
 * (a dead letter of the gateway is just one more record of the plan here), and recovery: any
 * delivery, commit or transaction error ends it with exit status 1, as a benchmark on a healthy
 * broker must not meet one. One input topic only, as in the benchmark.
 */
#include "cg_config.h"
#include "cg_kafka.h"
#include "cg_log.h"

#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <librdkafka/rdkafka.h>

static void usage(void)
{
    fprintf(stderr, "usage: cg_passthrough plan -b BOOT -t INPUT_TOPIC -x OUTPUT_PREFIX -o PLAN\n"
                    "       cg_passthrough run -c CONFIG -p PLAN -x OUTPUT_PREFIX\n");
    exit(2);
}

static void die(const char *fmt, const char *arg)
{
    fprintf(stderr, "cg_passthrough: ");
    fprintf(stderr, fmt, arg);
    fputc('\n', stderr);
    exit(1);
}

static void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        die("%s", "out of memory");
    return q;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- interned byte strings: keys and header sets repeat (a few patients, a few tables) ---- */

typedef struct strtab {
    char **s;
    size_t *len;
    size_t n, cap;
    size_t *slot; /* open addressing: index + 1, 0 empty */
    size_t n_slots;
} strtab_t;

static uint64_t hash_bytes(const char *p, size_t n)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)p[i]) * 1099511628211ULL;
    return h;
}

static size_t strtab_add(strtab_t *t, const char *p, size_t n)
{
    if (2 * (t->n + 1) > t->n_slots) {
        size_t ns = t->n_slots ? 2 * t->n_slots : 256;
        free(t->slot);
        t->slot = calloc(ns, sizeof(*t->slot));
        if (!t->slot)
            die("%s", "out of memory");
        t->n_slots = ns;
        for (size_t i = 0; i < t->n; i++) {
            size_t k = hash_bytes(t->s[i], t->len[i]) & (ns - 1);
            while (t->slot[k])
                k = (k + 1) & (ns - 1);
            t->slot[k] = i + 1;
        }
    }
    size_t k = hash_bytes(p, n) & (t->n_slots - 1);
    for (; t->slot[k]; k = (k + 1) & (t->n_slots - 1)) {
        size_t i = t->slot[k] - 1;
        if (t->len[i] == n && !memcmp(t->s[i], p, n))
            return i;
    }
    if (t->n == t->cap) {
        t->cap = t->cap ? 2 * t->cap : 64;
        t->s = xrealloc(t->s, t->cap * sizeof(*t->s));
        t->len = xrealloc(t->len, t->cap * sizeof(*t->len));
    }
    t->s[t->n] = xrealloc(NULL, n + 1);
    memcpy(t->s[t->n], p, n);
    t->s[t->n][n] = '\0';
    t->len[t->n] = n;
    t->slot[k] = t->n + 1;
    return t->n++;
}

static void strtab_free(strtab_t *t)
{
    for (size_t i = 0; i < t->n; i++)
        free(t->s[i]);
    free(t->s);
    free(t->len);
    free(t->slot);
}

/* ---- the plan file ----
 *
 *   cg-passthrough-plan 1
 *   T <index> <topic name without the prefix>
 *   K <index> <key>                           '-' for none, else 'x' and the bytes in hex
 *   H <index> <count> <name> <value> ...      the headers other than cg.source.*, hex as keys
 *   I <partition> <offset> <topic>:<key>:<headers>:<value size> ...
 *
 * One I line per input that has records, ordered by partition and offset. */

static void put_hex(FILE *f, const void *p, size_t n, int present)
{
    static const char hx[] = "0123456789abcdef";
    if (!present) {
        fputc('-', f);
        return;
    }
    fputc('x', f);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = ((const unsigned char *)p)[i];
        fputc(hx[c >> 4], f);
        fputc(hx[c & 15], f);
    }
}

/* Decodes a put_hex token in place; returns its length, -1 for '-' (none), -2 when malformed. */
static long get_hex(char *tok)
{
    if (!strcmp(tok, "-"))
        return -1;
    if (tok[0] != 'x' || strlen(tok + 1) % 2)
        return -2;
    size_t n = strlen(tok + 1) / 2;
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        if (sscanf(tok + 1 + 2 * i, "%2x", &v) != 1)
            return -2;
        tok[i] = (char)v;
    }
    return (long)n;
}

typedef struct plan_rec {
    int32_t in_part;
    int64_t in_off;
    uint32_t topic, key, hdrs; /* key: index into keys; 0 is "no key" */
    uint32_t val_len;
    int32_t out_part;
    int64_t out_off;
} plan_rec_t;

static int cmp_rec(const void *a, const void *b)
{
    const plan_rec_t *x = a, *y = b;
    if (x->in_part != y->in_part)
        return x->in_part < y->in_part ? -1 : 1;
    if (x->in_off != y->in_off)
        return x->in_off < y->in_off ? -1 : 1;
    if (x->topic != y->topic)
        return x->topic < y->topic ? -1 : 1;
    if (x->out_part != y->out_part)
        return x->out_part < y->out_part ? -1 : 1;
    return x->out_off < y->out_off ? -1 : x->out_off > y->out_off;
}

static const char *header_str(rd_kafka_headers_t *h, const char *name, char *buf, size_t n)
{
    const void *v;
    size_t len;
    if (rd_kafka_header_get_last(h, name, &v, &len) || !v || len >= n)
        return NULL;
    memcpy(buf, v, len);
    buf[len] = '\0';
    return buf;
}

static int cmd_plan(const char *boot, const char *input, const char *prefix, const char *out)
{
    char err[512];
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    if (rd_kafka_conf_set(c, "bootstrap.servers", boot, err, sizeof(err)) ||
        rd_kafka_conf_set(c, "group.id", "cg-passthrough-plan", err, sizeof(err)) ||
        rd_kafka_conf_set(c, "enable.auto.commit", "false", err, sizeof(err)) ||
        rd_kafka_conf_set(c, "enable.partition.eof", "true", err, sizeof(err)) ||
        rd_kafka_conf_set(c, "isolation.level", "read_committed", err, sizeof(err)))
        die("%s", err);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, c, err, sizeof(err));
    if (!rk)
        die("%s", err);
    rd_kafka_poll_set_consumer(rk);
    const struct rd_kafka_metadata *md;
    if (rd_kafka_metadata(rk, 1, NULL, &md, 10000))
        die("%s", "no metadata");
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(64);
    strtab_t topics = {0}, keys = {0}, hdrsets = {0};
    size_t pl = strlen(prefix);
    for (int i = 0; i < md->topic_cnt; i++) {
        const char *name = md->topics[i].topic;
        if (strncmp(name, prefix, pl) || !strcmp(name, input))
            continue;
        strtab_add(&topics, name + pl, strlen(name + pl));
        for (int p = 0; p < md->topics[i].partition_cnt; p++)
            rd_kafka_topic_partition_list_add(l, name, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
    }
    rd_kafka_metadata_destroy(md);
    if (!l->cnt)
        die("no topic starts with %s", prefix);
    rd_kafka_assign(rk, l);

    plan_rec_t *recs = NULL;
    size_t n = 0, cap = 0, no_source = 0;
    int eof = 0, idle = 0, n_parts = l->cnt;
    char *hb = NULL;
    size_t hb_cap = 0;
    /* a partition's end counts once: a record after an EOF event brings another EOF */
    char *at_end = calloc((size_t)l->cnt, 1);
    while (eof < l->cnt && idle < 30000) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if (!m) {
            idle += 100;
            continue;
        }
        idle = 0;
        const char *tname = m->rkt ? rd_kafka_topic_name(m->rkt) : "";
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            rd_kafka_topic_partition_t *tp =
                rd_kafka_topic_partition_list_find(l, tname, m->partition);
            if (tp && !at_end[tp - l->elems]) {
                at_end[tp - l->elems] = 1;
                eof++;
            }
        } else if (m->err) {
            die("%s", rd_kafka_message_errstr(m));
        } else {
            rd_kafka_headers_t *h = NULL;
            char pb[16], ob[24];
            if (rd_kafka_message_headers(m, &h) ||
                !header_str(h, "cg.source.partition", pb, sizeof(pb)) ||
                !header_str(h, "cg.source.offset", ob, sizeof(ob))) {
                no_source++;
                rd_kafka_message_destroy(m);
                continue;
            }
            /* the header set, serialized as name NUL value-length value, for interning */
            size_t hl = 0;
            const char *name;
            const void *v;
            size_t vl;
            for (size_t k = 0; !rd_kafka_header_get_all(h, k, &name, &v, &vl); k++) {
                if (!strncmp(name, "cg.source.", 10))
                    continue;
                size_t need = hl + strlen(name) + 1 + sizeof(size_t) + 1 + vl;
                if (need > hb_cap) {
                    hb_cap = need * 2;
                    hb = xrealloc(hb, hb_cap);
                }
                memcpy(hb + hl, name, strlen(name) + 1);
                hl += strlen(name) + 1;
                size_t present = v != NULL;
                memcpy(hb + hl, &vl, sizeof(vl));
                hl += sizeof(vl);
                hb[hl++] = (char)present;
                if (vl)
                    memcpy(hb + hl, v, vl);
                hl += vl;
            }
            if (n == cap) {
                cap = cap ? 2 * cap : 65536;
                recs = xrealloc(recs, cap * sizeof(*recs));
            }
            recs[n++] = (plan_rec_t){
                .in_part = atoi(pb),
                .in_off = atoll(ob),
                .topic = (uint32_t)strtab_add(&topics, tname + pl, strlen(tname + pl)),
                /* shifted by one: 0 is no key, apart from an empty one */
                .key = m->key ? 1 + (uint32_t)strtab_add(&keys, m->key, m->key_len) : 0,
                .hdrs = (uint32_t)strtab_add(&hdrsets, hb ? hb : "", hl),
                .val_len = (uint32_t)m->len,
                .out_part = m->partition,
                .out_off = m->offset,
            };
        }
        rd_kafka_message_destroy(m);
    }
    free(at_end);
    free(hb);
    rd_kafka_topic_partition_list_destroy(l);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    if (eof < n_parts)
        die("%s", "the output topics were not read to their end within 30 s");
    if (no_source)
        fprintf(stderr, "cg_passthrough: %zu record(s) without cg.source headers left out\n",
                no_source);
    qsort(recs, n, sizeof(*recs), cmp_rec);

    FILE *f = fopen(out, "w");
    if (!f)
        die("cannot write %s", out);
    fprintf(f, "cg-passthrough-plan 1\n");
    for (size_t i = 0; i < topics.n; i++)
        fprintf(f, "T %zu %s\n", i, topics.s[i]);
    /* keys shifted by one: 0 stands for no key */
    fprintf(f, "K 0 -\n");
    for (size_t i = 0; i < keys.n; i++) {
        fprintf(f, "K %zu ", i + 1);
        put_hex(f, keys.s[i], keys.len[i], 1);
        fputc('\n', f);
    }
    for (size_t i = 0; i < hdrsets.n; i++) {
        const char *p = hdrsets.s[i], *end = p + hdrsets.len[i];
        size_t cnt = 0;
        for (const char *q = p; q < end; cnt++) {
            size_t vl;
            q += strlen(q) + 1;
            memcpy(&vl, q, sizeof(vl));
            q += sizeof(vl) + 1 + vl;
        }
        fprintf(f, "H %zu %zu", i, cnt);
        while (p < end) {
            size_t vl;
            fputc(' ', f);
            put_hex(f, p, strlen(p), 1);
            p += strlen(p) + 1;
            memcpy(&vl, p, sizeof(vl));
            p += sizeof(vl);
            int present = *p++;
            fputc(' ', f);
            put_hex(f, p, vl, present);
            p += vl;
        }
        fputc('\n', f);
    }
    size_t inputs = 0;
    for (size_t i = 0; i < n; i++) {
        if (i == 0 || recs[i].in_part != recs[i - 1].in_part ||
            recs[i].in_off != recs[i - 1].in_off) {
            fprintf(f, "%sI %" PRId32 " %" PRId64, i ? "\n" : "", recs[i].in_part, recs[i].in_off);
            inputs++;
        }
        fprintf(f, " %" PRIu32 ":%" PRIu32 ":%" PRIu32 ":%" PRIu32, recs[i].topic, recs[i].key,
                recs[i].hdrs, recs[i].val_len);
    }
    if (n)
        fputc('\n', f);
    if (fclose(f))
        die("cannot write %s", out);
    printf("inputs=%zu records=%zu topics=%zu keys=%zu header_sets=%zu\n", inputs, n, topics.n,
           keys.n, hdrsets.n);
    free(recs);
    strtab_free(&topics);
    strtab_free(&keys);
    strtab_free(&hdrsets);
    return 0;
}

/* ---- the plan in memory ---- */

typedef struct hdr {
    char *name;
    void *value;
    ssize_t len; /* -1: no value */
} hdr_t;

typedef struct rec {
    uint32_t topic, key, hdrs, val_len;
} rec_t;

typedef struct plan {
    char **topics;
    size_t n_topics;
    char **keys; /* [0] NULL: no key */
    size_t *key_len, n_keys;
    hdr_t **hdrs;
    size_t *n_hdr, n_hdrs;
    rec_t *recs;
    size_t n_recs;
    /* per input partition: the records of offset o are recs[first[o] .. first[o + 1]) */
    struct plan_part {
        uint32_t *first;
        int64_t n_off; /* offsets covered */
    } * parts;
    int n_parts;
    uint32_t max_val;
} plan_t;

static void grow_to(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return;
    size_t c = *cap ? *cap : 16;
    while (c < need)
        c *= 2;
    *p = xrealloc(*p, c * elem);
    *cap = c;
}

static void plan_load(plan_t *pl, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        die("cannot read %s", path);
    char *line = NULL;
    size_t lcap = 0, tcap = 0, kcap = 0, hcap = 0, rcap = 0, lineno = 0;
    ssize_t got;
    memset(pl, 0, sizeof(*pl));
    while ((got = getline(&line, &lcap, f)) > 0) {
        lineno++;
        if (line[got - 1] == '\n')
            line[--got] = '\0';
        char *save = NULL, *tok = strtok_r(line, " ", &save);
        if (!tok || (lineno == 1 && strcmp(line, "cg-passthrough-plan")))
            die("%s: not a plan", path);
        if (lineno == 1)
            continue;
        char *a = strtok_r(NULL, " ", &save), *b = strtok_r(NULL, " ", &save);
        if (!a || !b)
            die("%s: a short line", path);
        size_t idx = strtoul(a, NULL, 10);
        if (!strcmp(tok, "T")) {
            grow_to((void **)&pl->topics, &tcap, idx + 1, sizeof(char *));
            pl->topics[idx] = strdup(b);
            pl->n_topics = idx + 1 > pl->n_topics ? idx + 1 : pl->n_topics;
        } else if (!strcmp(tok, "K")) {
            size_t kc = kcap;
            grow_to((void **)&pl->keys, &kcap, idx + 1, sizeof(char *));
            grow_to((void **)&pl->key_len, &kc, idx + 1, sizeof(size_t));
            long len = get_hex(b);
            if (len < -1)
                die("%s: a malformed key", path);
            pl->keys[idx] = len < 0 ? NULL : xrealloc(NULL, (size_t)len);
            if (len > 0)
                memcpy(pl->keys[idx], b, (size_t)len);
            pl->key_len[idx] = len < 0 ? 0 : (size_t)len;
            pl->n_keys = idx + 1 > pl->n_keys ? idx + 1 : pl->n_keys;
        } else if (!strcmp(tok, "H")) {
            size_t hc = hcap, cnt = strtoul(b, NULL, 10);
            grow_to((void **)&pl->hdrs, &hcap, idx + 1, sizeof(hdr_t *));
            grow_to((void **)&pl->n_hdr, &hc, idx + 1, sizeof(size_t));
            pl->hdrs[idx] = calloc(cnt ? cnt : 1, sizeof(hdr_t));
            pl->n_hdr[idx] = cnt;
            for (size_t k = 0; k < cnt; k++) {
                char *nm = strtok_r(NULL, " ", &save), *vl = strtok_r(NULL, " ", &save);
                long nl = nm ? get_hex(nm) : -2, vlen = vl ? get_hex(vl) : -2;
                if (nl < 0 || vlen < -1)
                    die("%s: a malformed header", path);
                pl->hdrs[idx][k].name = strndup(nm, (size_t)nl);
                pl->hdrs[idx][k].len = vlen;
                if (vlen >= 0) {
                    pl->hdrs[idx][k].value = xrealloc(NULL, (size_t)vlen);
                    memcpy(pl->hdrs[idx][k].value, vl, (size_t)vlen);
                }
            }
            pl->n_hdrs = idx + 1 > pl->n_hdrs ? idx + 1 : pl->n_hdrs;
        } else if (!strcmp(tok, "I")) {
            int part = (int)idx;
            int64_t off = strtoll(b, NULL, 10);
            if (part < 0 || off < 0)
                die("%s: a bad input", path);
            if (part >= pl->n_parts) {
                pl->parts = xrealloc(pl->parts, (size_t)(part + 1) * sizeof(*pl->parts));
                memset(pl->parts + pl->n_parts, 0,
                       (size_t)(part + 1 - pl->n_parts) * sizeof(*pl->parts));
                pl->n_parts = part + 1;
            }
            struct plan_part *pp = &pl->parts[part];
            if (off < pp->n_off)
                die("%s: inputs out of order", path);
            pp->first = xrealloc(pp->first, (size_t)(off + 2) * sizeof(uint32_t));
            for (int64_t o = pp->n_off; o <= off; o++) /* inputs without records: none */
                pp->first[o] = (uint32_t)pl->n_recs;
            for (char *r; (r = strtok_r(NULL, " ", &save));) {
                rec_t x;
                if (sscanf(r, "%" SCNu32 ":%" SCNu32 ":%" SCNu32 ":%" SCNu32, &x.topic, &x.key,
                           &x.hdrs, &x.val_len) != 4)
                    die("%s: a malformed record", path);
                grow_to((void **)&pl->recs, &rcap, pl->n_recs + 1, sizeof(rec_t));
                pl->recs[pl->n_recs++] = x;
                if (x.val_len > pl->max_val)
                    pl->max_val = x.val_len;
            }
            pp->n_off = off + 1;
            pp->first[off + 1] = (uint32_t)pl->n_recs;
        } else {
            die("%s: an unknown line", path);
        }
    }
    free(line);
    fclose(f);
    for (size_t i = 0; i < pl->n_recs; i++)
        if (pl->recs[i].topic >= pl->n_topics || pl->recs[i].key >= pl->n_keys ||
            pl->recs[i].hdrs >= pl->n_hdrs || !pl->topics[pl->recs[i].topic] ||
            !pl->hdrs[pl->recs[i].hdrs])
            die("%s: a record refers to a missing topic, key or header set", path);
}

/* ---- the passthrough ---- */

/* One consumed input: complete once sealed (every record handed to the producer) with no record
 * undelivered. */
typedef struct slot {
    int64_t offset;
    int32_t partition;
    int32_t undelivered;
    int32_t sealed;
} slot_t;

/* Per input partition: a ring of the inputs consumed and not yet popped, in offset order. An
 * input is popped once it and every one before it is complete. */
typedef struct track {
    slot_t *ring;
    uint64_t head, tail;
    int64_t done_next;   /* one past the last popped input: what at-least-once commits */
    int64_t sealed_next; /* one past the last sealed input: what a transaction commits */
    int64_t committed;   /* the last offset the broker acknowledged (-1: none yet) */
} track_t;

typedef struct pt {
    const cg_config_t *cfg;
    plan_t plan;
    rd_kafka_t *consumer, *producer;
    rd_kafka_topic_t **out; /* per plan topic */
    char *filler;
    track_t *tracks;
    int n_tracks;
    uint64_t ring_mask;
    size_t in_flight; /* inputs consumed and not complete, as the gateway counts them */
    /* the input being produced when the producer's queue filled up */
    rd_kafka_message_t *cur;
    slot_t *cur_slot;
    uint32_t cur_next, cur_end;
    int blocked;
    int64_t stalled_since;
    int paused, outq_resume;
    /* exactly-once */
    int eos, txn_open;
    uint64_t txn_msgs;
    int64_t txn_began;
    /* counts */
    uint64_t consumed, records, delivered, commits, txns, not_in_plan;
    int failed;
} pt_t;

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

static void fail(pt_t *pt, const char *what, const char *why)
{
    if (!pt->failed)
        cg_log(CG_LOG_ERROR, "passthrough.failed", "%s: %s", what, why);
    pt->failed = 1;
    stop = 1;
}

static track_t *track_of(pt_t *pt, int32_t partition)
{
    if (partition >= pt->n_tracks) {
        pt->tracks = xrealloc(pt->tracks, (size_t)(partition + 1) * sizeof(*pt->tracks));
        for (int i = pt->n_tracks; i <= partition; i++) {
            pt->tracks[i] = (track_t){.done_next = -1, .sealed_next = -1, .committed = -1};
            pt->tracks[i].ring = xrealloc(NULL, (pt->ring_mask + 1) * sizeof(slot_t));
        }
        pt->n_tracks = partition + 1;
    }
    return &pt->tracks[partition];
}

static int rings_have_room(const pt_t *pt)
{
    for (int i = 0; i < pt->n_tracks; i++)
        if (pt->tracks[i].tail - pt->tracks[i].head > pt->ring_mask)
            return 0;
    return 1;
}

static void complete(pt_t *pt, track_t *t)
{
    pt->in_flight--;
    while (t->head < t->tail) {
        const slot_t *s = &t->ring[t->head & pt->ring_mask];
        if (!s->sealed || s->undelivered)
            break;
        t->done_next = s->offset + 1;
        t->head++;
    }
}

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    pt_t *pt = opaque;
    if (m->err) {
        fail(pt, "delivery", rd_kafka_err2str(m->err));
        return;
    }
    slot_t *s = m->_private;
    pt->delivered++;
    if (--s->undelivered == 0 && s->sealed)
        complete(pt, &pt->tracks[s->partition]);
}

static void on_commit(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                      rd_kafka_topic_partition_list_t *offsets, void *opaque)
{
    (void)rk;
    pt_t *pt = opaque;
    if (err == RD_KAFKA_RESP_ERR__NO_OFFSET)
        return;
    if (err) { /* as the gateway: the next interval commits again */
        cg_log(CG_LOG_WARN, "offsets.commit_failed", "%s (will retry)", rd_kafka_err2str(err));
        return;
    }
    pt->commits++;
    for (int i = 0; offsets && i < offsets->cnt; i++) {
        const rd_kafka_topic_partition_t *p = &offsets->elems[i];
        if (!p->err && p->offset >= 0 && p->partition < pt->n_tracks)
            pt->tracks[p->partition].committed = p->offset;
    }
}

/* the gateway feeds its metrics from these; librdkafka's cost of making them is the same */
static int on_stats(rd_kafka_t *rk, char *json, size_t json_len, void *opaque)
{
    (void)rk;
    (void)json;
    (void)json_len;
    (void)opaque;
    return 0;
}

/* at-least-once: each partition's delivered prefix, past what the broker acknowledged */
static void commit_delivered(pt_t *pt, int sync)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(pt->n_tracks);
    for (int p = 0; p < pt->n_tracks; p++)
        if (pt->tracks[p].done_next > pt->tracks[p].committed)
            rd_kafka_topic_partition_list_add(l, cg_kafka_conf(pt->cfg)->inputs[0].topic, p)
                ->offset = pt->tracks[p].done_next;
    if (l->cnt) {
        rd_kafka_resp_err_t err = rd_kafka_commit(pt->consumer, l, !sync);
        if (err && sync)
            fail(pt, "final commit", rd_kafka_err2str(err));
        else if (err)
            cg_log(CG_LOG_WARN, "offsets.commit_failed", "%s", rd_kafka_err2str(err));
        if (sync && !err) {
            pt->commits++;
            for (int i = 0; i < l->cnt; i++)
                pt->tracks[l->elems[i].partition].committed = l->elems[i].offset;
        }
    }
    rd_kafka_topic_partition_list_destroy(l);
}

/* Retries a transactional call after retriable errors; any other error ends the run. */
static int txn_call(pt_t *pt, const char *what, rd_kafka_error_t *(*op)(rd_kafka_t *, int))
{
    for (;;) {
        rd_kafka_error_t *e = op(pt->producer, 30000);
        if (!e)
            return 0;
        int again = rd_kafka_error_is_retriable(e) && !rd_kafka_error_is_fatal(e);
        if (!again)
            fail(pt, what, rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
        if (!again)
            return -1;
    }
}

static int txn_begin(pt_t *pt)
{
    if (pt->txn_open)
        return 0;
    rd_kafka_error_t *e = rd_kafka_begin_transaction(pt->producer);
    if (e) {
        fail(pt, "begin transaction", rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
        return -1;
    }
    pt->txn_open = 1;
    pt->txn_msgs = 0;
    pt->txn_began = now_ms();
    return 0;
}

/* As the gateway: deliver first, then the inputs' offsets, then commit. */
static void txn_commit(pt_t *pt)
{
    if (!pt->txn_open || pt->failed)
        return;
    while (rd_kafka_flush(pt->producer, 5000))
        if (pt->failed)
            return;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(pt->n_tracks);
    for (int p = 0; p < pt->n_tracks; p++)
        if (pt->tracks[p].sealed_next > pt->tracks[p].committed)
            rd_kafka_topic_partition_list_add(l, cg_kafka_conf(pt->cfg)->inputs[0].topic, p)
                ->offset = pt->tracks[p].sealed_next;
    if (l->cnt) {
        rd_kafka_consumer_group_metadata_t *md = rd_kafka_consumer_group_metadata(pt->consumer);
        for (;;) {
            rd_kafka_error_t *e = rd_kafka_send_offsets_to_transaction(pt->producer, l, md, 30000);
            if (!e)
                break;
            int again = rd_kafka_error_is_retriable(e) && !rd_kafka_error_is_fatal(e);
            if (!again)
                fail(pt, "send offsets to transaction", rd_kafka_error_string(e));
            rd_kafka_error_destroy(e);
            if (!again)
                break;
        }
        rd_kafka_consumer_group_metadata_destroy(md);
    }
    if (!pt->failed && !txn_call(pt, "commit transaction", rd_kafka_commit_transaction)) {
        for (int i = 0; i < l->cnt; i++)
            pt->tracks[l->elems[i].partition].committed = l->elems[i].offset;
        pt->txn_open = 0;
        pt->txn_msgs = 0;
        pt->txns++;
        if (l->cnt)
            pt->commits++;
    }
    rd_kafka_topic_partition_list_destroy(l);
}

/* Produces the current input's records from where it stopped. 1: all handed over (the input
 * is sealed); 0: the producer's queue is full; -1: failed. */
static int produce_cur(pt_t *pt)
{
    const rd_kafka_message_t *in = pt->cur;
    slot_t *s = pt->cur_slot;
    const plan_t *pl = &pt->plan;
    if (pt->eos && txn_begin(pt))
        return -1;
    for (; pt->cur_next < pt->cur_end; pt->cur_next++) {
        const rec_t *r = &pl->recs[pt->cur_next];
        const hdr_t *hs = pl->hdrs[r->hdrs];
        size_t nh = pl->n_hdr[r->hdrs];
        /* built per record, as the gateway's produce_one does */
        rd_kafka_headers_t *h = rd_kafka_headers_new(nh + 3);
        char part[16], off[24];
        snprintf(part, sizeof(part), "%" PRId32, in->partition);
        snprintf(off, sizeof(off), "%" PRId64, in->offset);
        rd_kafka_header_add(h, "cg.source.topic", -1, rd_kafka_topic_name(in->rkt), -1);
        rd_kafka_header_add(h, "cg.source.partition", -1, part, -1);
        rd_kafka_header_add(h, "cg.source.offset", -1, off, -1);
        for (size_t i = 0; i < nh; i++)
            rd_kafka_header_add(h, hs[i].name, -1, hs[i].value, hs[i].len < 0 ? 0 : hs[i].len);
        s->undelivered++;
        rd_kafka_resp_err_t err = rd_kafka_producev(
            pt->producer, RD_KAFKA_V_RKT(pt->out[r->topic]),
            RD_KAFKA_V_KEY(pl->keys[r->key], pl->key_len[r->key]),
            RD_KAFKA_V_VALUE(pt->filler, r->val_len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_OPAQUE(s), RD_KAFKA_V_END);
        if (err) {
            rd_kafka_headers_destroy(h);
            s->undelivered--;
            if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL)
                return 0;
            fail(pt, "produce", rd_kafka_err2str(err));
            return -1;
        }
        pt->records++;
    }
    track_t *t = &pt->tracks[s->partition];
    s->sealed = 1;
    t->sealed_next = s->offset + 1;
    if (pt->eos)
        pt->txn_msgs++;
    if (!s->undelivered)
        complete(pt, t);
    rd_kafka_message_destroy(pt->cur);
    pt->cur = NULL;
    return 1;
}

static void handle_message(pt_t *pt, rd_kafka_message_t *m)
{
    if (m->err) {
        if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
            cg_log(CG_LOG_WARN, "consumer.error", "%s", rd_kafka_message_errstr(m));
        rd_kafka_message_destroy(m);
        return;
    }
    pt->consumed++;
    track_t *t = track_of(pt, m->partition);
    slot_t *s = &t->ring[t->tail++ & pt->ring_mask];
    *s = (slot_t){.offset = m->offset, .partition = m->partition};
    pt->in_flight++;
    const plan_t *pl = &pt->plan;
    pt->cur = m;
    pt->cur_slot = s;
    pt->cur_next = pt->cur_end = 0;
    if (m->partition < pl->n_parts && m->offset < pl->parts[m->partition].n_off) {
        pt->cur_next = pl->parts[m->partition].first[m->offset];
        pt->cur_end = pl->parts[m->partition].first[m->offset + 1];
    } else {
        pt->not_in_plan++;
    }
    pt->blocked = produce_cur(pt) == 0;
}

static void set_paused(pt_t *pt, int on)
{
    rd_kafka_topic_partition_list_t *parts = NULL;
    if (!rd_kafka_assignment(pt->consumer, &parts) && parts) {
        if (parts->cnt && on)
            rd_kafka_pause_partitions(pt->consumer, parts);
        else if (parts->cnt)
            rd_kafka_resume_partitions(pt->consumer, parts);
        rd_kafka_topic_partition_list_destroy(parts);
    }
    pt->paused = on;
}

/* The gateway's backpressure rule (pipeline.c), with the same settings. */
static void backpressure(pt_t *pt)
{
    size_t max = (size_t)pt->cfg->max_in_flight;
    int64_t t = now_ms();
    if (!pt->stalled_since) {
        if (pt->blocked || pt->in_flight >= max) {
            pt->stalled_since = t;
            pt->outq_resume = rd_kafka_outq_len(pt->producer) / 2;
        }
        return;
    }
    if (!pt->blocked && pt->in_flight <= max - max / 4 &&
        rd_kafka_outq_len(pt->producer) <= pt->outq_resume) {
        if (pt->paused)
            set_paused(pt, 0);
        pt->stalled_since = 0;
    } else if (!pt->paused && t - pt->stalled_since >= pt->cfg->pause_after_ms) {
        set_paused(pt, 1);
    }
}

static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    pt_t *pt = opaque;
    int cooperative = !strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE");
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        for (int i = 0; i < parts->cnt; i++) {
            track_t *t = track_of(pt, parts->elems[i].partition);
            t->head = t->tail = 0;
            t->done_next = t->sealed_next = t->committed = -1;
            /* the script waits for this event, as for the gateway's */
            cg_log(CG_LOG_INFO, "partition.assigned", "%s [%" PRId32 "]", parts->elems[i].topic,
                   parts->elems[i].partition);
        }
        if (cooperative)
            rd_kafka_error_destroy(rd_kafka_incremental_assign(rk, parts));
        else
            rd_kafka_assign(rk, parts);
        if (pt->paused)
            rd_kafka_pause_partitions(rk, parts);
        return;
    }
    /* revoked: in the benchmark only when leaving the group, after the drain; commit whatever
     * is left so that the group's offsets say everything was consumed */
    if (!pt->failed && pt->eos) {
        txn_commit(pt);
    } else if (!pt->failed && err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS &&
               !rd_kafka_assignment_lost(rk)) {
        rd_kafka_flush(pt->producer, pt->cfg->drain_timeout_ms);
        commit_delivered(pt, 1);
    }
    if (cooperative)
        rd_kafka_error_destroy(rd_kafka_incremental_unassign(rk, parts));
    else
        rd_kafka_assign(rk, NULL);
}

static int cmd_run(const char *config, const char *plan_path, const char *prefix)
{
    cg_error_t ce;
    cg_config_t *cfg = cg_config_load_file(config, &ce);
    if (!cfg) {
        fprintf(stderr, "cg_passthrough: %s:%d:%d: %s\n", ce.file, ce.line, ce.column, ce.text);
        return 1;
    }
    if (cg_kafka_conf(cfg)->n_inputs != 1 || cg_kafka_conf(cfg)->embedded_enabled)
        die("%s: one input topic on a real broker, please", config);
    cg_log_set_level((cg_log_level_t)cfg->log_level);
    pt_t pt_ = {.cfg = cfg, .eos = cfg->semantics == CG_DELIVERY_EXACTLY_ONCE}, *pt = &pt_;
    plan_load(&pt->plan, plan_path);
    /* a partition's ring holds its inputs in flight and the complete ones behind its oldest
     * incomplete one: twice max_in_flight, and no consuming while one is full */
    for (pt->ring_mask = 1; pt->ring_mask < 2 * (uint64_t)cfg->max_in_flight;)
        pt->ring_mask *= 2;
    pt->ring_mask--;
    /* the benchmark sets no compression.type, so the content of a value does not change what
     * goes over the wire; the bytes are varied anyway so a compressing setting is not flattered */
    pt->filler = xrealloc(NULL, pt->plan.max_val + 1);
    uint32_t x = 2463534242u;
    for (uint32_t i = 0; i <= pt->plan.max_val; i++) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        pt->filler[i] = (char)(' ' + x % 95);
    }

    char err[512];
    const char *boot = cg_kafka_get(cg_kafka_conf(cfg), "bootstrap.servers");
    pt->producer = cg_kafka_producer_new(cfg, boot, on_delivery, pt, err, sizeof(err));
    if (!pt->producer)
        die("%s", err);
    pt->consumer = cg_kafka_consumer_new(cfg, NULL, boot, on_rebalance, on_commit, on_stats, pt,
                                         err, sizeof(err));
    if (!pt->consumer)
        die("%s", err);
    pt->out = xrealloc(NULL, pt->plan.n_topics * sizeof(*pt->out));
    for (size_t i = 0; i < pt->plan.n_topics; i++) {
        char name[512];
        snprintf(name, sizeof(name), "%s%s", prefix, pt->plan.topics[i]);
        pt->out[i] = rd_kafka_topic_new(pt->producer, name, NULL);
    }
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    rd_kafka_topic_partition_list_t *subs = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(subs, cg_kafka_conf(cfg)->inputs[0].topic,
                                      RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t rerr = rd_kafka_subscribe(pt->consumer, subs);
    rd_kafka_topic_partition_list_destroy(subs);
    if (rerr)
        die("subscribe: %s", rd_kafka_err2str(rerr));
    if (pt->eos && txn_call(pt, "init transactions", rd_kafka_init_transactions))
        return 1;
    cg_log(CG_LOG_INFO, "passthrough.started",
           "%s, group %s, plan of %zu record(s) over %zu topic(s)",
           pt->eos ? "exactly-once" : "at-least-once", cg_kafka_conf(cfg)->group_id,
           pt->plan.n_recs, pt->plan.n_topics);

    /* the gateway's loop (cg_gateway_run with one worker) without the mapping */
    int64_t next_commit = now_ms() + cfg->commit_interval_ms;
    while (!stop) {
        if (pt->cur)
            pt->blocked = produce_cur(pt) == 0;
        /* a transaction commits whole inputs only */
        if (pt->eos && pt->txn_open && !pt->cur &&
            (pt->txn_msgs >= (uint64_t)cfg->transaction_max_messages ||
             now_ms() - pt->txn_began >= cfg->commit_interval_ms))
            txn_commit(pt);
        if (stop)
            break;
        backpressure(pt);
        int waiting = pt->stalled_since != 0;
        int can_poll = !pt->cur && rings_have_room(pt) && (!waiting || pt->paused);
        rd_kafka_poll(pt->producer, waiting || !can_poll ? 10 : 0);
        if (can_poll) {
            /* 100 ms as the gateway when nothing is left to produce: messages come at once
             * when there are any */
            rd_kafka_message_t *m = rd_kafka_consumer_poll(pt->consumer, waiting ? 0 : 100);
            if (m)
                handle_message(pt, m);
        }
        int64_t t = now_ms();
        if (!pt->eos && t >= next_commit) {
            commit_delivered(pt, 0);
            next_commit = t + cfg->commit_interval_ms;
        }
    }

    /* the drain: what was consumed is produced, delivered and committed */
    int64_t deadline = now_ms() + cfg->drain_timeout_ms;
    while (pt->cur && !pt->failed && now_ms() < deadline) {
        rd_kafka_poll(pt->producer, 10);
        produce_cur(pt);
    }
    if (pt->eos) {
        txn_commit(pt);
    } else if (!pt->failed) {
        if (rd_kafka_flush(pt->producer, cfg->drain_timeout_ms))
            fail(pt, "drain", "records left undelivered");
        else
            commit_delivered(pt, 1);
    }
    rd_kafka_consumer_close(pt->consumer);
    cg_log(CG_LOG_INFO, "passthrough.stopped",
           "consumed %" PRIu64 ", records %" PRIu64 " (%" PRIu64 " delivered), commits %" PRIu64
           ", transactions %" PRIu64 ", inputs not in the plan %" PRIu64,
           pt->consumed, pt->records, pt->delivered, pt->commits, pt->txns, pt->not_in_plan);
    if (pt->cur)
        rd_kafka_message_destroy(pt->cur);
    rd_kafka_destroy(pt->consumer);
    for (size_t i = 0; i < pt->plan.n_topics; i++)
        rd_kafka_topic_destroy(pt->out[i]);
    rd_kafka_flush(pt->producer, 0);
    rd_kafka_destroy(pt->producer);
    free(pt->out);
    free(pt->filler);
    for (int i = 0; i < pt->n_tracks; i++)
        free(pt->tracks[i].ring);
    free(pt->tracks);
    cg_config_destroy(cfg);
    /* the plan is left to the exit */
    return pt->failed ? 1 : 0;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        usage();
    const char *cmd = argv[1], *boot = NULL, *topic = NULL, *prefix = NULL, *out = NULL,
               *config = NULL, *plan = NULL;
    int c;
    optind = 2;
    while ((c = getopt(argc, argv, "b:t:x:o:c:p:")) != -1) {
        switch (c) {
        case 'b':
            boot = optarg;
            break;
        case 't':
            topic = optarg;
            break;
        case 'x':
            prefix = optarg;
            break;
        case 'o':
            out = optarg;
            break;
        case 'c':
            config = optarg;
            break;
        case 'p':
            plan = optarg;
            break;
        default:
            usage();
        }
    }
    if (optind != argc || !prefix)
        usage();
    if (!strcmp(cmd, "plan") && boot && topic && out)
        return cmd_plan(boot, topic, prefix, out);
    if (!strcmp(cmd, "run") && config && plan)
        return cmd_run(config, plan, prefix);
    usage();
    return 2;
}
