/* passthrough_plan.c - the plan of cg_passthrough: made from the records a gateway run
 * produced (each names its input by its cg.source.* headers), written to a file, and loaded
 * into memory before the timed run. */
#include "passthrough.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

void pt_die(const char *fmt, const char *arg)
{
    fprintf(stderr, "cg_passthrough: ");
    fprintf(stderr, fmt, arg);
    fputc('\n', stderr);
    exit(1);
}

void *pt_xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        pt_die("%s", "out of memory");
    return q;
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
            pt_die("%s", "out of memory");
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
        t->s = pt_xrealloc(t->s, t->cap * sizeof(*t->s));
        t->len = pt_xrealloc(t->len, t->cap * sizeof(*t->len));
    }
    t->s[t->n] = pt_xrealloc(NULL, n + 1);
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

int pt_plan_make(const char *boot, const char *input, const char *prefix, const char *out)
{
    char err[512];
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    if (rd_kafka_conf_set(c, "bootstrap.servers", boot, err, sizeof(err)) ||
        rd_kafka_conf_set(c, "group.id", "cg-passthrough-plan", err, sizeof(err)) ||
        rd_kafka_conf_set(c, "enable.auto.commit", "false", err, sizeof(err)) ||
        rd_kafka_conf_set(c, "enable.partition.eof", "true", err, sizeof(err)) ||
        rd_kafka_conf_set(c, "isolation.level", "read_committed", err, sizeof(err)))
        pt_die("%s", err);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, c, err, sizeof(err));
    if (!rk)
        pt_die("%s", err);
    rd_kafka_poll_set_consumer(rk);
    const struct rd_kafka_metadata *md;
    if (rd_kafka_metadata(rk, 1, NULL, &md, 10000))
        pt_die("%s", "no metadata");
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
        pt_die("no topic starts with %s", prefix);
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
            pt_die("%s", rd_kafka_message_errstr(m));
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
                    hb = pt_xrealloc(hb, hb_cap);
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
                recs = pt_xrealloc(recs, cap * sizeof(*recs));
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
        pt_die("%s", "the output topics were not read to their end within 30 s");
    if (no_source)
        fprintf(stderr, "cg_passthrough: %zu record(s) without cg.source headers left out\n",
                no_source);
    qsort(recs, n, sizeof(*recs), cmp_rec);

    FILE *f = fopen(out, "w");
    if (!f)
        pt_die("cannot write %s", out);
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
        pt_die("cannot write %s", out);
    printf("inputs=%zu records=%zu topics=%zu keys=%zu header_sets=%zu\n", inputs, n, topics.n,
           keys.n, hdrsets.n);
    free(recs);
    strtab_free(&topics);
    strtab_free(&keys);
    strtab_free(&hdrsets);
    return 0;
}

static void grow_to(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return;
    size_t c = *cap ? *cap : 16;
    while (c < need)
        c *= 2;
    *p = pt_xrealloc(*p, c * elem);
    *cap = c;
}

void pt_plan_load(plan_t *pl, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        pt_die("cannot read %s", path);
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
            pt_die("%s: not a plan", path);
        if (lineno == 1)
            continue;
        char *a = strtok_r(NULL, " ", &save), *b = strtok_r(NULL, " ", &save);
        if (!a || !b)
            pt_die("%s: a short line", path);
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
                pt_die("%s: a malformed key", path);
            pl->keys[idx] = len < 0 ? NULL : pt_xrealloc(NULL, (size_t)len);
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
                    pt_die("%s: a malformed header", path);
                pl->hdrs[idx][k].name = strndup(nm, (size_t)nl);
                pl->hdrs[idx][k].len = vlen;
                if (vlen >= 0) {
                    pl->hdrs[idx][k].value = pt_xrealloc(NULL, (size_t)vlen);
                    memcpy(pl->hdrs[idx][k].value, vl, (size_t)vlen);
                }
            }
            pl->n_hdrs = idx + 1 > pl->n_hdrs ? idx + 1 : pl->n_hdrs;
        } else if (!strcmp(tok, "I")) {
            int part = (int)idx;
            int64_t off = strtoll(b, NULL, 10);
            if (part < 0 || off < 0)
                pt_die("%s: a bad input", path);
            if (part >= pl->n_parts) {
                pl->parts = pt_xrealloc(pl->parts, (size_t)(part + 1) * sizeof(*pl->parts));
                memset(pl->parts + pl->n_parts, 0,
                       (size_t)(part + 1 - pl->n_parts) * sizeof(*pl->parts));
                pl->n_parts = part + 1;
            }
            struct plan_part *pp = &pl->parts[part];
            if (off < pp->n_off)
                pt_die("%s: inputs out of order", path);
            pp->first = pt_xrealloc(pp->first, (size_t)(off + 2) * sizeof(uint32_t));
            for (int64_t o = pp->n_off; o <= off; o++) /* inputs without records: none */
                pp->first[o] = (uint32_t)pl->n_recs;
            for (char *r; (r = strtok_r(NULL, " ", &save));) {
                rec_t x;
                if (sscanf(r, "%" SCNu32 ":%" SCNu32 ":%" SCNu32 ":%" SCNu32, &x.topic, &x.key,
                           &x.hdrs, &x.val_len) != 4)
                    pt_die("%s: a malformed record", path);
                grow_to((void **)&pl->recs, &rcap, pl->n_recs + 1, sizeof(rec_t));
                pl->recs[pl->n_recs++] = x;
                if (x.val_len > pl->max_val)
                    pl->max_val = x.val_len;
            }
            pp->n_off = off + 1;
            pp->first[off + 1] = (uint32_t)pl->n_recs;
        } else {
            pt_die("%s: an unknown line", path);
        }
    }
    free(line);
    fclose(f);
    for (size_t i = 0; i < pl->n_recs; i++)
        if (pl->recs[i].topic >= pl->n_topics || pl->recs[i].key >= pl->n_keys ||
            pl->recs[i].hdrs >= pl->n_hdrs || !pl->topics[pl->recs[i].topic] ||
            !pl->hdrs[pl->recs[i].hdrs])
            pt_die("%s: a record refers to a missing topic, key or header set", path);
}
