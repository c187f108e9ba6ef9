/* mllp_source.c - the MLLP listener as a source plug-in (cg_plugin.h): hospitals' interface
 * engines connect and send HL7 v2 messages framed by MLLP; each message goes to the engine as
 * one input, unchanged, for the raw topic, and is acknowledged only once the engine says it is
 * delivered (commit) or could not be (reject).
 *
 * One epoll loop, non-blocking sockets, on the engine's thread (poll() is the loop's wait). A
 * connection is a slot: its inputs are positions (listener, slot, sequence), the sequence of a
 * slot growing across the connections that use it, so the engine's per-partition bookkeeping
 * keeps each connection's order and commits it on its own: a slow connection holds back no
 * other. Per connection, acknowledgements go out in the order the messages came, whatever order
 * the broker reports them in. Hostile peers are bounded: frame size, connections, unacknowledged
 * messages per connection, and timeouts for idle peers, frames that never end (slowloris) and
 * acknowledgements the sender would no longer wait for (closed rather than sent late). */
#include "mllp_listener.h"

#include "cg_log.h"
#include "cg_metrics.h"
#include "cg_metrics_gw.h"
#include "cg_pseudo.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* SHA-256 of the n pieces p[i] (lengths len[i]), as one input. */
static void sha256_parts(mllp_source_t *ls, const void *const *p, const size_t *len, size_t n,
                         unsigned char out[32])
{
    int ok = EVP_DigestInit_ex2(ls->sha_ctx, ls->sha_md, NULL) == 1;
    for (size_t i = 0; ok && i < n; i++)
        ok = EVP_DigestUpdate(ls->sha_ctx, p[i], len[i]) == 1;
    if (!ok || EVP_DigestFinal_ex(ls->sha_ctx, out, NULL) != 1)
        memset(out, 0, 32); /* cannot happen with the default provider loaded at start */
}

static void sha256(mllp_source_t *ls, const void *a, size_t n, unsigned char out[32])
{
    sha256_parts(ls, &a, &n, 1, out);
}

static void hex(const unsigned char *b, size_t n, char *out)
{
    static const char d[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = d[b[i] >> 4];
        out[2 * i + 1] = d[b[i] & 15];
    }
    out[2 * n] = '\0';
}

/* ---- connections ---- */

/* A pending acknowledgement built later from base (n bytes: the MSH line, or a batch's base) */
static mllp_pending_t *pending_add(mllp_conn_t *c, const char *base, size_t n, int64_t seq)
{
    const char *msh = base;
    mllp_pending_t *p = calloc(1, sizeof(*p) + n + 1);
    if (!p)
        return NULL;
    if (n)
        memcpy(p->msh, msh, n);
    p->msh_len = n;
    p->slot = c->slot;
    p->seq = seq;
    if (c->tail)
        c->tail->next = p;
    else
        c->head = p;
    c->tail = p;
    c->n_pending++;
    return p;
}

/* Every message of a batch (base: cg_mllp_batch_scan's lines) is for a facility the client
 * certificate may send for. */
static int sender_allowed(mllp_source_t *ls, const mllp_conn_t *c, const cg_mllp_msh_t *h);

static int batch_senders_allowed(mllp_source_t *ls, const mllp_conn_t *c, const cg_buf_t *base)
{
    const char *p = base->data, *end = p ? p + base->len : NULL;
    while (p && p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl)
            break;
        if (*p == '0' || *p == '1') {
            cg_mllp_msh_t h;
            cg_mllp_msh_split(p + 1, (size_t)(nl - p - 1), &h);
            if (!sender_allowed(ls, c, &h))
                return 0;
        }
        p = nl + 1;
    }
    return 1;
}

static mllp_pending_t *pending_new(mllp_conn_t *c, const cg_mllp_msh_t *h, int64_t seq)
{
    const char *msh = h->found ? h->seps.ptr - 3 : NULL;
    const char *end = msh, *stop = c->fr.frame.data + c->fr.frame.len;
    if (msh && stop > msh + 4096)
        stop = msh + 4096; /* an MSH line is short; a longer one is cut (its fields are early) */
    while (msh && end < stop && *end != '\r' && *end != '\n') /* the MSH line: the ACK's base */
        end++;
    return pending_add(c, msh, (size_t)(end - msh), seq);
}

/* The raw topic's key: a keyed hash (the pseudonym key) of the sending facility and the
 * patient's identifier with its authority, so that one patient's messages share a partition
 * and no identifier shows in Kafka's metadata. Its own domain prefix keeps it apart from the
 * person pseudonyms made with the same key. Raw (escaped) bytes: the same message always
 * gives the same key. */
static void message_key(mllp_source_t *ls, const cg_mllp_msh_t *h, char out[65])
{
    /* digested in pieces: no buffer joined per message */
    const cg_slice_t parts[] = {
        {MLLP_KEY_DOMAIN, sizeof(MLLP_KEY_DOMAIN) - 1},
        {h->fld[4].ptr, h->fld[4].ptr ? h->fld[4].len : 0},
        {"\x1F", 1},
        {h->pid_authority.ptr, h->pid_authority.ptr ? h->pid_authority.len : 0},
        {"\x1F", 1},
        {h->pid_id.ptr, h->pid_id.ptr ? h->pid_id.len : 0}};
    unsigned char mac[32] = {0};
    cg_pseudo_hmac_parts(ls->pseudo, parts, sizeof(parts) / sizeof(parts[0]), mac);
    hex(mac, 32, out);
}

/* YYYY-MM-DDTHH:MM:SS.mmmZ (24 bytes and its NUL). The seconds are formatted once a second
 * (strftime per message showed in profiles), the milliseconds by hand. */
static void rfc3339_now(char out[static 25])
{
    static _Thread_local time_t last = (time_t)-1;
    static _Thread_local char secs[24];
    static _Thread_local size_t secs_len;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (ts.tv_sec != last) {
        struct tm tm;
        gmtime_r(&ts.tv_sec, &tm);
        secs_len = strftime(secs, sizeof(secs), "%Y-%m-%dT%H:%M:%S", &tm);
        last = ts.tv_sec;
    }
    long ms = ts.tv_nsec / 1000000;
    memcpy(out, secs, secs_len);
    char *o = out + secs_len;
    *o++ = '.';
    *o++ = (char)('0' + ms / 100);
    *o++ = (char)('0' + ms / 10 % 10);
    *o++ = (char)('0' + ms % 10);
    *o++ = 'Z';
    *o = '\0';
}

/* The sending facility's name for metrics: MSH-4.1 raw, at most size - 1 bytes; "" without. */
static void sender_name(const cg_mllp_msh_t *h, char *out, size_t size)
{
    size_t n = 0;
    const char *f = h->fld[4].ptr;
    while (f && n + 1 < size && n < h->fld[4].len && f[n] != h->comp_sep) {
        out[n] = f[n];
        n++;
    }
    out[n] = '\0';
}

/* Whether c's client certificate may send for h's sending facility (MSH-4.1, raw). */
static int sender_allowed(mllp_source_t *ls, const mllp_conn_t *c, const cg_mllp_msh_t *h)
{
    const char *f = h->fld[4].ptr ? h->fld[4].ptr : "";
    size_t n = 0;
    while (n < h->fld[4].len && f[n] != h->comp_sep)
        n++;
    return mllp_tls_sender_allowed(ls->tls, c->peer_cn, f, n);
}

/* The message in flight whose connection closed before its ACK, with this id and these bytes. */
static const mllp_pending_t *orphan_of(const mllp_source_t *ls, const unsigned char id[32],
                                       const unsigned char sha[32])
{
    for (const mllp_pending_t *o = ls->orphans; o; o = o->next)
        if (o->has_id && !memcmp(o->id, id, 32) && !memcmp(o->sha, sha, 32))
            return o;
    return NULL;
}

/* The orphan (slot, seq) has its outcome: the resends waiting on it get the same one. */
static void orphan_settled(mllp_source_t *ls, int32_t slot, int64_t seq, cg_mllp_ack_kind_t kind,
                           const char *reason)
{
    if (!ls->n_waiting)
        return;
    for (int i = 0; i < ls->conf->max_connections; i++) {
        mllp_conn_t *c = ls->slots[i];
        int any = 0;
        for (mllp_pending_t *p = c ? c->head : NULL; p; p = p->next)
            if (p->waiting && p->wait_slot == slot && p->wait_seq == seq) {
                p->waiting = 0;
                p->ready = 1;
                p->kind = kind;
                if (reason)
                    snprintf(p->reason, sizeof(p->reason), "%s", reason);
                ls->n_waiting--;
                any = 1;
            }
        if (any)
            mllp_conn_flush_acks(ls, c);
    }
}

/* A complete frame: answered from the cache when it is a resend, else queued for the engine
 * with a pending acknowledgement. */
static void conn_frame(mllp_source_t *ls, mllp_conn_t *c, const char *buf, size_t len)
{
    int64_t t = mllp_now_ms();
    ls->st.messages++;
    ls->st.bytes += len;
    cg_mllp_msh_t h;
    cg_error_t err;
    memset(&err, 0, sizeof(err));
    cg_buf_t base; /* a batch: what its acknowledgement needs (mllp_batch.c) */
    cg_buf_init(&base);
    size_t n_batch = 0;
    int batch = cg_mllp_is_batch(buf, len);
    cg_err_t rc = batch ? cg_mllp_batch_scan(ls->hl7, buf, len, &base, &n_batch, &err)
                        : cg_mllp_msh_read(ls->hl7, buf, len, &h, &err);
    if (batch) { /* its first message stands for it in the key and the metrics */
        const char *first = base.data ? strstr(base.data, "\n0MSH") : NULL;
        if (!first && base.data)
            first = strstr(base.data, "\n1MSH");
        const char *fe = first ? strchr(first + 1, '\n') : NULL;
        if (first && fe)
            cg_mllp_msh_split(first + 2, (size_t)(fe - first - 2), &h);
        else
            cg_mllp_msh_split("", 0, &h);
        if (base.failed) {
            cg_buf_free(&base);
            mllp_conn_close(ls, c, "out of memory");
            return;
        }
    }
    if (ls->mx.messages) { /* by sending facility: organisations, not patients */
        char sender[65];
        sender_name(&h, sender, sizeof(sender));
        cg_metric_inc(cg_metric_get1(ls->mx.messages, sender), 1);
        cg_metric_inc(cg_metric_get1(ls->mx.bytes, sender), len);
    }
    if (c->ssl && !(batch ? batch_senders_allowed(ls, c, &base) : sender_allowed(ls, c, &h))) {
        ls->st.wrong_sender++;
        cg_metric_inc(cg_metric_get1(ls->mx.refused, "sender"), 1);
        cg_log(CG_LOG_WARN, "listen.sender",
               "%s: client certificate '%s' may not send for this message's sending facility "
               "(listen.tls.senders): refused, not stored",
               c->remote, c->peer_cn);
        mllp_pending_t *p =
            batch ? pending_add(c, base.data, base.len, -1) : pending_new(c, &h, -1);
        cg_buf_free(&base);
        if (!p) {
            mllp_conn_close(ls, c, "out of memory");
            return;
        }
        p->batch = batch;
        p->ready = 1;
        p->kind = CG_MLLP_ACK_REJECTED;
        p->received_ms = t;
        snprintf(p->reason, sizeof(p->reason),
                 "the client certificate may not send for this sending facility (MSH-4)");
        mllp_conn_flush_acks(ls, c);
        return;
    }
    unsigned char sha[32], id[32];
    sha256(ls, buf, len, sha);
    /* a batch is not looked up among resends: its messages' ids are many, and one of them
     * resent alone is its own frame */
    int has_id = !batch && rc == CG_OK && h.fld[10].len > 0;
    if (has_id) { /* the sender (MSH-3, MSH-4) and its MSH-10, as a digest */
        const void *parts[] = {h.fld[3].ptr ? h.fld[3].ptr : "", "\x1f",
                               h.fld[4].ptr ? h.fld[4].ptr : "", "\x1f", h.fld[10].ptr};
        size_t lens[] = {h.fld[3].len, 1, h.fld[4].len, 1, h.fld[10].len};
        sha256_parts(ls, parts, lens, 5, id);
        mllp_dedup_result_t d = mllp_dedup_check(ls->dedup, id, sha, t);
        if (d == MLLP_DEDUP_SAME) { /* stored already: acknowledged again, not written twice */
            ls->st.duplicates++;
            cg_metric_inc(ls->mx.duplicates, 1);
            mllp_pending_t *p = pending_new(c, &h, -1);
            if (!p) {
                mllp_conn_close(ls, c, "out of memory");
                return;
            }
            p->ready = 1;
            p->kind = CG_MLLP_ACK_OK;
            p->received_ms = t;
            mllp_conn_flush_acks(ls, c);
            return;
        }
        if (d == MLLP_DEDUP_REUSED_ID) {
            ls->st.reused_ids++;
            cg_metric_inc(ls->mx.reused_ids, 1);
            cg_log(CG_LOG_WARN, "listen.reused_id",
                   "%s: a message reuses the MSH-3/4/10 of one stored within "
                   "listen.dup_window_ms with other bytes: written as a new message",
                   c->remote);
        }
    }
    const mllp_pending_t *o = has_id ? orphan_of(ls, id, sha) : NULL;
    if (o) { /* sent again while the first one is still on its way: wait for its outcome */
        ls->st.duplicates++;
        cg_metric_inc(ls->mx.duplicates, 1);
        mllp_pending_t *w = pending_new(c, &h, -1);
        if (!w) {
            mllp_conn_close(ls, c, "out of memory");
            return;
        }
        w->received_ms = t;
        w->waiting = 1;
        w->wait_slot = o->slot;
        w->wait_seq = o->seq;
        ls->n_waiting++;
        if (c->n_pending >= ls->conf->max_unacked)
            mllp_conn_events(ls, c);
        return;
    }
    int64_t seq = ls->slot_seq[c->slot]++;
    mllp_pending_t *p = batch ? pending_add(c, base.data, base.len, seq) : pending_new(c, &h, seq);
    if (p)
        p->batch = batch;
    mllp_msg_t *m = calloc(1, sizeof(*m) + len);
    if (!p || !m) {
        free(m);
        cg_buf_free(&base);
        mllp_conn_close(ls, c, "out of memory");
        return;
    }
    p->received_ms = t;
    p->on_delivery = rc == CG_OK ? CG_MLLP_ACK_OK : CG_MLLP_ACK_ERROR;
    p->has_id = has_id;
    if (has_id)
        memcpy(p->id, id, 32);
    memcpy(p->sha, sha, 32);
    memcpy(m->bytes, buf, len);
    m->len = len;
    m->slot = c->slot;
    m->seq = seq;
    message_key(ls, &h, m->key);
    cg_buf_free(&base); /* a batch's h pointed into it */
    snprintf(m->remote, sizeof(m->remote), "%s", c->remote);
    rfc3339_now(m->received);
    hex(sha, 32, m->sha_hex);
    size_t k = 0;
    m->hdrs[k++] = "cg.mllp.remote";
    m->hdrs[k++] = m->remote;
    m->hdrs[k++] = "cg.mllp.received";
    m->hdrs[k++] = m->received;
    m->hdrs[k++] = "cg.mllp.sha256";
    m->hdrs[k++] = m->sha_hex;
    if (rc != CG_OK) {
        /* stored all the same, marked for the dead-letter path; the reason names the place
         * and the kind of fault, never a value (err.text may quote the message) */
        ls->st.undecodable++;
        char where[128];
        cg_error_where(&err, where, sizeof(where));
        snprintf(m->err_code, sizeof(m->err_code), "%s", cg_err_name(rc));
        snprintf(m->err_reason, sizeof(m->err_reason), "%s%s%s", cg_err2str(rc),
                 where[0] ? " at " : "", where);
        snprintf(p->reason, sizeof(p->reason), "%s", m->err_reason);
        m->hdrs[k++] = "cg.error.stage";
        m->hdrs[k++] = "listen";
        m->hdrs[k++] = "cg.error.code";
        m->hdrs[k++] = m->err_code;
        m->hdrs[k++] = "cg.error.reason";
        m->hdrs[k++] = m->err_reason;
    }
    m->n_hdrs = k;
    if (ls->rq_tail)
        ls->rq_tail->next = m;
    else
        ls->rq_head = m;
    ls->rq_tail = m;
    if (c->n_pending >= ls->conf->max_unacked)
        mllp_conn_events(ls, c); /* stop reading it until acknowledgements go out */
}

/* ---- the plug-in ---- */

/* Registered at init, before the metrics endpoint starts (cg_metrics.h asks so). */
static void metrics_register(mllp_source_t *ls, cg_metrics_gw_t *g)
{
    static const double bounds[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                    0.1,   0.25,   0.5,   1,    2.5,   10};
    cg_metrics_t *r = g ? cg_metrics_gw_registry(g) : NULL;
    if (!r)
        return;
    mllp_metrics_t *mx = &ls->mx;
    mx->connections = cg_metric_get(
        cg_metrics_gauge(r, "cohortgate_mllp_connections", "MLLP connections open now", NULL),
        NULL);
    mx->messages =
        cg_metrics_counter(r, "cohortgate_mllp_messages_total",
                           "MLLP frames received, by sending facility (MSH-4.1)", "sender");
    mx->bytes = cg_metrics_counter(r, "cohortgate_mllp_bytes_total",
                                   "Bytes of MLLP frames received, by sending facility (MSH-4.1)",
                                   "sender");
    mx->duplicates = cg_metric_get(
        cg_metrics_counter(r, "cohortgate_mllp_duplicates_total",
                           "Resends acknowledged from the cache, not written again", NULL),
        NULL);
    mx->reused_ids = cg_metric_get(
        cg_metrics_counter(r, "cohortgate_mllp_reused_ids_total",
                           "Messages written that reuse a stored MSH-10 with other bytes", NULL),
        NULL);
    mx->junk = cg_metric_get(cg_metrics_counter(r, "cohortgate_mllp_junk_bytes_total",
                                                "Bytes skipped outside MLLP frames", NULL),
                             NULL);
    mx->latency =
        cg_metric_get(cg_metrics_histogram(r, "cohortgate_mllp_ack_latency_seconds",
                                           "From a frame's end to its acknowledgement", NULL,
                                           bounds, sizeof(bounds) / sizeof(bounds[0])),
                      NULL);
    mx->acks = cg_metrics_counter(r, "cohortgate_mllp_acks_total", "Acknowledgements sent", "code");
    mx->closed = cg_metrics_counter(r, "cohortgate_mllp_closed_total",
                                    "Connections the listener closed, by reason", "reason");
    mx->refused =
        cg_metrics_counter(r, "cohortgate_mllp_refused_total",
                           "Messages refused (AR/CR) without being stored, by reason", "reason");
}

static void mllp_destroy(void *ctx)
{
    mllp_source_t *ls = ctx;
    if (!ls)
        return;
    for (int i = 0; ls->slots && i < ls->conf->max_connections; i++)
        if (ls->slots[i])
            mllp_conn_close(ls, ls->slots[i], NULL);
    mllp_free_dead(ls);
    while (ls->orphans) {
        mllp_pending_t *p = ls->orphans;
        ls->orphans = p->next;
        free(p);
    }
    while (ls->rq_head) {
        mllp_msg_t *m = ls->rq_head;
        ls->rq_head = m->next;
        free(m);
    }
    if (ls->lfd >= 0)
        close(ls->lfd);
    if (ls->epfd >= 0)
        close(ls->epfd);
    free(ls->slots);
    free(ls->slot_seq);
    cg_pseudo_destroy(ls->pseudo);
    cg_hl7_msg_destroy(ls->hl7);
    EVP_MD_CTX_free(ls->sha_ctx);
    EVP_MD_free(ls->sha_md);
    mllp_dedup_destroy(ls->dedup);
    mllp_tls_destroy(ls->tls);
    mllp_allow_destroy(ls->allow);
    free(ls);
}

static void *mllp_init(const cg_plugin_env_t *env, char *errstr, size_t errstr_size)
{
    mllp_source_t *ls = calloc(1, sizeof(*ls));
    if (!ls) {
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    ls->lfd = ls->epfd = ls->wake_fd = -1;
    ls->engine = env->engine;
    ls->on_frame = conn_frame;
    ls->cfg = env->cfg;
    ls->conf = env->conf;
    ls->started = time(NULL);
    const mllp_conf_t *cf = ls->conf;
    const cg_config_t *cfg = env->cfg;
    metrics_register(ls, env->metrics);
    if (!(ls->pseudo = mllp_key_load(cfg, errstr, errstr_size)))
        goto fail;
    if (!(ls->allow = mllp_allow_new(cf->allow, errstr, errstr_size)))
        goto fail;
    if (!(ls->tls = mllp_tls_new(cf, errstr, errstr_size)) && errstr[0])
        goto fail;
    if (!(ls->sha_md = EVP_MD_fetch(NULL, "SHA256", NULL)) || !(ls->sha_ctx = EVP_MD_CTX_new())) {
        snprintf(errstr, errstr_size, "OpenSSL: no SHA-256");
        goto fail;
    }
    if (!(ls->hl7 = cg_hl7_msg_new(&cfg->hl7)) ||
        !(ls->dedup = mllp_dedup_new((size_t)cf->dup_cache_entries, cf->dup_window_ms)) ||
        !(ls->slots = calloc((size_t)cf->max_connections, sizeof(*ls->slots))) ||
        !(ls->slot_seq = calloc((size_t)cf->max_connections, sizeof(*ls->slot_seq)))) {
        snprintf(errstr, errstr_size, "out of memory");
        goto fail;
    }
    return ls;
fail:
    mllp_destroy(ls);
    return NULL;
}

static int mllp_start(void *ctx, char *errstr, size_t errstr_size)
{
    mllp_source_t *ls = ctx;
    char host[256], port[8];
    if (cg_metrics_listen_parse(ls->conf->address, host, sizeof(host), port, sizeof(port), errstr,
                                errstr_size))
        return -1;
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *ai = NULL;
    int rc = getaddrinfo(host, port, &hints, &ai);
    if (rc) {
        snprintf(errstr, errstr_size, "listen.address %s: %s", ls->conf->address, gai_strerror(rc));
        return -1;
    }
    if (mllp_plaintext_check(ls->conf, ai->ai_addr, ls->tls != NULL, errstr, errstr_size)) {
        freeaddrinfo(ai);
        return -1;
    }
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd >= 0)
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (fd < 0 || bind(fd, ai->ai_addr, ai->ai_addrlen) || listen(fd, 512)) {
        snprintf(errstr, errstr_size, "listen.address %s: %s", ls->conf->address, strerror(errno));
        if (fd >= 0)
            close(fd);
        freeaddrinfo(ai);
        return -1;
    }
    freeaddrinfo(ai);
    ls->lfd = fd;
    struct sockaddr_storage sa;
    socklen_t sl = sizeof(sa);
    getsockname(fd, (struct sockaddr *)&sa, &sl);
    char h[INET6_ADDRSTRLEN] = "?";
    int p = 0;
    if (sa.ss_family == AF_INET) {
        inet_ntop(AF_INET, &((struct sockaddr_in *)&sa)->sin_addr, h, sizeof(h));
        p = ntohs(((struct sockaddr_in *)&sa)->sin_port);
    } else {
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&sa)->sin6_addr, h, sizeof(h));
        p = ntohs(((struct sockaddr_in6 *)&sa)->sin6_port);
    }
    snprintf(ls->bound, sizeof(ls->bound), sa.ss_family == AF_INET6 ? "[%s]:%d" : "%s:%d", h, p);
    if ((ls->epfd = epoll_create1(EPOLL_CLOEXEC)) < 0) {
        snprintf(errstr, errstr_size, "epoll: %s", strerror(errno));
        return -1;
    }
    struct epoll_event e = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ls->epfd, EPOLL_CTL_ADD, fd, &e);
    cg_log(CG_LOG_INFO, "listen.started", "MLLP%s on %s, messages to topic %s",
           ls->tls ? (ls->conf->tls_client_ca_file ? " over mutual TLS" : " over TLS") : "",
           ls->bound, ls->conf->topic);
    cg_engine_assigned(ls->engine, 1); /* for /healthz: the listener is its one "partition" */
    return 0;
}

static cg_source_event_t mllp_poll(void *ctx, int timeout_ms, cg_source_msg_t *msg)
{
    mllp_source_t *ls = ctx;
    if (!ls->rq_head) {
        mllp_io(ls, timeout_ms);
        if (!ls->rq_head)
            return CG_SOURCE_NONE;
    } else {
        mllp_io(ls, 0); /* keep accepting and reading while messages wait */
    }
    mllp_msg_t *m = ls->rq_head;
    ls->rq_head = m->next;
    if (!ls->rq_head)
        ls->rq_tail = NULL;
    m->next = NULL;
    *msg = (cg_source_msg_t){.payload = m->len ? m->bytes : NULL,
                             .len = m->len,
                             .key = m->key,
                             .key_len = 64,
                             .topic = MLLP_POS_TOPIC,
                             .partition = m->slot,
                             .offset = m->seq,
                             .format = CG_INPUT_HL7V2,
                             .opaque = m,
                             .dest = ls->conf->topic,
                             .headers = m->hdrs,
                             .n_headers = m->n_hdrs};
    return CG_SOURCE_MSG;
}

/* The sink's wake fd joins the epoll set, marked by the source's own pointer (mllp_io). */
static void mllp_watch(void *ctx, int fd)
{
    mllp_source_t *ls = ctx;
    struct epoll_event e = {.events = EPOLLIN, .data.ptr = ls};
    if (ls->wake_fd < 0 && fd >= 0 && !epoll_ctl(ls->epfd, EPOLL_CTL_ADD, fd, &e))
        ls->wake_fd = fd;
}

static void mllp_release(void *ctx, cg_source_msg_t *msg)
{
    (void)ctx;
    free(msg->opaque);
}

/* Delivered up to these positions: their acknowledgements go out (in each connection's order). */
static int mllp_commit(void *ctx, const cg_source_pos_t *pos, size_t n, int sync)
{
    (void)sync; /* sending is all there is to it */
    mllp_source_t *ls = ctx;
    for (size_t i = 0; i < n; i++) {
        if (pos[i].partition < 0 || pos[i].partition >= ls->conf->max_connections)
            continue;
        mllp_pending_t *settled = NULL; /* unlinked first: settling may orphan more */
        for (mllp_pending_t **o = &ls->orphans; *o;) {
            mllp_pending_t *p = *o;
            if (p->slot == pos[i].partition && p->seq < pos[i].offset) {
                if (p->on_delivery == CG_MLLP_ACK_OK)
                    mllp_dedup_put(ls->dedup, p->id, p->sha, mllp_now_ms());
                *o = p->next;
                p->next = settled;
                settled = p;
            } else {
                o = &p->next;
            }
        }
        while (settled) {
            mllp_pending_t *p = settled;
            settled = p->next;
            orphan_settled(ls, p->slot, p->seq, p->on_delivery, p->reason[0] ? p->reason : NULL);
            free(p);
        }
        mllp_conn_t *c = ls->slots[pos[i].partition];
        if (!c)
            continue;
        for (mllp_pending_t *p = c->head; p; p = p->next)
            if (!p->ready && p->seq >= 0 && p->seq < pos[i].offset) {
                p->ready = 1;
                p->kind = p->on_delivery;
            }
        mllp_conn_flush_acks(ls, c);
    }
    cg_engine_committed(ls->engine, pos, n);
    mllp_free_dead(ls);
    return 0;
}

/* Not delivered: a rejection (AR/CR) goes out in its turn; the sender may send it again. */
static void mllp_reject(void *ctx, const cg_source_pos_t *pos, const char *reason)
{
    mllp_source_t *ls = ctx;
    if (pos->partition < 0 || pos->partition >= ls->conf->max_connections)
        return;
    char why[200];
    snprintf(why, sizeof(why), "not stored: %s", reason);
    for (mllp_pending_t **o = &ls->orphans; *o; o = &(*o)->next)
        if ((*o)->slot == pos->partition && (*o)->seq == pos->offset) {
            mllp_pending_t *p = *o;
            *o = p->next;
            orphan_settled(ls, p->slot, p->seq, CG_MLLP_ACK_REJECTED, why);
            free(p);
            break;
        }
    mllp_conn_t *c = ls->slots[pos->partition];
    for (mllp_pending_t *p = c ? c->head : NULL; p; p = p->next)
        if (p->seq == pos->offset && !p->ready) {
            p->ready = 1;
            p->kind = CG_MLLP_ACK_REJECTED;
            snprintf(p->reason, sizeof(p->reason), "%s", why);
            break;
        }
    if (c)
        mllp_conn_flush_acks(ls, c);
    mllp_free_dead(ls);
}

static void mllp_pause(void *ctx, int paused)
{
    mllp_source_t *ls = ctx;
    ls->paused = paused;
    for (int i = 0; i < ls->conf->max_connections; i++)
        if (ls->slots[i])
            mllp_conn_events(ls, ls->slots[i]);
}

/* Stops accepting; what is unacknowledged stays so (the senders send it again). */
static void mllp_close(void *ctx)
{
    mllp_source_t *ls = ctx;
    if (ls->lfd >= 0) {
        if (ls->epfd >= 0)
            epoll_ctl(ls->epfd, EPOLL_CTL_DEL, ls->lfd, NULL);
        close(ls->lfd);
        ls->lfd = -1;
    }
    for (int i = 0; i < ls->conf->max_connections; i++)
        if (ls->slots[i])
            mllp_conn_close(ls, ls->slots[i], NULL);
    mllp_free_dead(ls);
    const mllp_stats_t *st = &ls->st;
    cg_log(CG_LOG_INFO, "listen.stopped",
           "%" PRIu64 " connection(s) (%" PRIu64 " refused), %" PRIu64 " message(s), %" PRIu64
           " byte(s); acknowledged %" PRIu64 " ok, %" PRIu64 " error, %" PRIu64
           " rejected; %" PRIu64 " resend(s) answered from the cache, %" PRIu64
           " reused MSH-10, %" PRIu64 " undecodable, %" PRIu64
           " from a sender its certificate may not send for; closed: %" PRIu64
           " not allowed, %" PRIu64 " TLS handshake, %" PRIu64 " too big, %" PRIu64
           " idle, %" PRIu64 " read timeout, %" PRIu64 " ack timeout; %" PRIu64 " junk byte(s)",
           st->accepted, st->refused, st->messages, st->bytes, st->acks[0], st->acks[1],
           st->acks[2], st->duplicates, st->reused_ids, st->undecodable, st->wrong_sender,
           st->not_allowed, st->tls_failed, st->too_big, st->idle_closed, st->read_timeouts,
           st->ack_timeouts, st->junk_bytes);
}

static void mllp_describe(void *ctx, char *buf, size_t size)
{
    mllp_source_t *ls = ctx;
    snprintf(buf, size, "MLLP%s on %s to topic %s", ls->tls ? " over TLS" : "",
             ls->bound[0] ? ls->bound : ls->conf->address, ls->conf->topic);
}

/* New TLS settings from the same files, for connections accepted from now on; an open session
 * keeps the certificate and CRL it was accepted with (its SSL holds its context). */
static int mllp_reload(void *ctx, const cg_config_t *cfg, char *errstr, size_t errstr_size)
{
    (void)cfg; /* the files of the running listen.tls settings, read again */
    mllp_source_t *ls = ctx;
    if (!ls->tls)
        return 0; /* plaintext: nothing is read from files */
    mllp_tls_t *fresh = mllp_tls_new(ls->conf, errstr, errstr_size);
    if (!fresh)
        return -1;
    mllp_tls_destroy(ls->tls);
    ls->tls = fresh;
    cg_log(CG_LOG_INFO, "listen.tls_reloaded",
           "certificate, key%s re-read; open connections keep theirs",
           ls->conf->tls_crl_file         ? ", client CA and CRL"
           : ls->conf->tls_client_ca_file ? " and client CA"
                                          : "");
    return 0;
}

const cg_source_plugin_t cg_mllp_source_plugin = {
    .name = "mllp",
    .desc = "an MLLP listener: HL7 v2 from interface engines, acknowledged once stored",
    .config_map = cg_mllp_config_map,
    .conf_size = sizeof(mllp_conf_t),
    .init = mllp_init,
    .start = mllp_start,
    .poll = mllp_poll,
    .release = mllp_release,
    .commit = mllp_commit,
    .reject = mllp_reject,
    .pause = mllp_pause,
    .close = mllp_close,
    .destroy = mllp_destroy,
    .describe = mllp_describe,
    .reload = mllp_reload,
    .watch = mllp_watch,
};
