/* mllp_conn.c - the MLLP listener's connections: one epoll loop on the engine's thread,
 * non-blocking sockets (TLS or plain), accepting within the limits, reading frames (handed to
 * the message side's on_frame), writing acknowledgements in each connection's order, and the
 * timeouts of idle peers, frames that never end and acknowledgements the sender no longer waits
 * for. */
#include "mllp_listener.h"

#include "cg_log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

int64_t mllp_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void mllp_conn_events(mllp_source_t *ls, mllp_conn_t *c)
{
    uint32_t ev = 0;
    if (c->fd < 0)
        return;
    if (c->handshaking)
        ev = c->io_wants_write ? EPOLLOUT : EPOLLIN;
    else if (!ls->paused && c->n_pending < ls->conf->max_unacked)
        ev |= c->io_wants_write ? EPOLLOUT : EPOLLIN;
    if (c->out_off < c->out.len)
        ev |= EPOLLOUT;
    if (ev == c->events)
        return;
    struct epoll_event e = {.events = ev, .data.ptr = c};
    epoll_ctl(ls->epfd, EPOLL_CTL_MOD, c->fd, &e);
    c->events = ev;
}

void mllp_conn_close(mllp_source_t *ls, mllp_conn_t *c, const char *why)
{
    if (why)
        cg_log(CG_LOG_INFO, "listen.closed", "%s: %s (%d unacknowledged)", c->remote, why,
               c->n_pending);
    epoll_ctl(ls->epfd, EPOLL_CTL_DEL, c->fd, NULL);
    SSL_free(c->ssl); /* no close_notify: the peer is gone or being dropped */
    c->ssl = NULL;
    close(c->fd);
    while (c->head) { /* never acknowledged: the sender sends them again */
        mllp_pending_t *p = c->head;
        c->head = p->next;
        if (p->waiting)
            ls->n_waiting--;
        if (!p->ready && p->seq >= 0 && p->has_id) {
            p->next = ls->orphans;
            ls->orphans = p;
        } else {
            free(p);
        }
    }
    c->head = c->tail = NULL;
    c->n_pending = 0;
    c->fd = -1;
    ls->st.junk_bytes += c->fr.junk;
    cg_metric_inc(ls->mx.junk, c->fr.junk);
    cg_metric_add(ls->mx.connections, -1);
    cg_mllp_framer_free(&c->fr);
    cg_buf_free(&c->out);
    ls->slots[c->slot] = NULL;
    ls->n_conns--;
    c->next_dead = ls->dead;
    ls->dead = c;
}

void mllp_free_dead(mllp_source_t *ls)
{
    while (ls->dead) {
        mllp_conn_t *c = ls->dead;
        ls->dead = c->next_dead;
        free(c);
    }
}

/* send() or TLS: bytes sent (> 0), -1 to try again later, -2 failed (c is closed). */
static ssize_t conn_send(mllp_source_t *ls, mllp_conn_t *c, const char *buf, size_t n)
{
    if (c->ssl) {
        size_t sent = 0;
        char why[160];
        switch (mllp_tls_send(c->ssl, buf, n, &sent, why, sizeof(why))) {
        case MLLP_IO_OK:
            return (ssize_t)sent;
        case MLLP_IO_WANT_READ:
        case MLLP_IO_WANT_WRITE:
            return -1;
        default:
            mllp_conn_close(ls, c, "TLS write failed");
            return -2;
        }
    }
    for (;;) {
        ssize_t r = send(c->fd, buf, n, MSG_NOSIGNAL);
        if (r > 0)
            return r;
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return -1;
        mllp_conn_close(ls, c, "write failed");
        return -2;
    }
}

/* recv() or TLS: bytes read (> 0), 0 when the peer closed, -1 to try again later, -2 failed
 * (c is closed). */
static ssize_t conn_recv(mllp_source_t *ls, mllp_conn_t *c, char *buf, size_t n)
{
    if (c->ssl) {
        size_t got = 0;
        char why[160];
        int wanted = c->io_wants_write;
        c->io_wants_write = 0;
        switch (mllp_tls_recv(c->ssl, buf, n, &got, why, sizeof(why))) {
        case MLLP_IO_OK:
            if (wanted)
                mllp_conn_events(ls, c);
            return (ssize_t)got;
        case MLLP_IO_WANT_READ:
            if (wanted)
                mllp_conn_events(ls, c);
            return -1;
        case MLLP_IO_WANT_WRITE:
            c->io_wants_write = 1;
            mllp_conn_events(ls, c);
            return -1;
        case MLLP_IO_CLOSED:
            return 0;
        default:
            cg_log(CG_LOG_WARN, "listen.tls", "%s: %s", c->remote, why);
            mllp_conn_close(ls, c, "TLS read failed");
            return -2;
        }
    }
    for (;;) {
        ssize_t r = recv(c->fd, buf, n, 0);
        if (r >= 0)
            return r;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return -1;
        mllp_conn_close(ls, c, "read failed");
        return -2;
    }
}

/* The TLS handshake, one step per readiness event; a peer that never finishes it is closed by
 * the read timeout (its start counts as a frame's). */
static void conn_handshake(mllp_source_t *ls, mllp_conn_t *c)
{
    char why[256];
    mllp_io_t r = mllp_tls_handshake(c->ssl, c->peer_cn, sizeof(c->peer_cn), why, sizeof(why));
    if (r == MLLP_IO_WANT_READ || r == MLLP_IO_WANT_WRITE) {
        c->io_wants_write = r == MLLP_IO_WANT_WRITE;
        mllp_conn_events(ls, c);
        return;
    }
    if (r != MLLP_IO_OK) {
        ls->st.tls_failed++;
        cg_metric_inc(cg_metric_get1(ls->mx.closed, "tls"), 1);
        cg_log(CG_LOG_WARN, "listen.tls", "%s: TLS handshake failed: %s", c->remote,
               r == MLLP_IO_CLOSED ? "closed by the peer" : why);
        mllp_conn_close(ls, c, NULL);
        return;
    }
    c->handshaking = 0;
    c->io_wants_write = 0;
    c->frame_start_ms = 0;
    c->last_frame_ms = mllp_now_ms();
    cg_log(CG_LOG_DEBUG, "listen.tls", "%s: TLS %s%s%s", c->remote, SSL_get_version(c->ssl),
           c->peer_cn[0] ? ", client " : "", c->peer_cn);
    mllp_conn_events(ls, c);
}

/* An ACK's own MSH-10: "CG", the listener's start time in 8 hex digits and the ACK's number in
 * 10 decimal ones (by hand: snprintf per ACK showed in profiles). id: at least 21 bytes. */
static void ack_control_id(char *id, uint32_t started, uint64_t no)
{
    static const char hexd[] = "0123456789abcdef";
    id[0] = 'C';
    id[1] = 'G';
    for (int i = 0; i < 8; i++)
        id[2 + i] = hexd[(started >> (28 - 4 * i)) & 0xf];
    for (int i = 19; i >= 10; i--) {
        id[i] = (char)('0' + no % 10);
        no /= 10;
    }
    id[20] = '\0';
}

static void conn_write(mllp_source_t *ls, mllp_conn_t *c)
{
    while (c->out_off < c->out.len) {
        ssize_t n = conn_send(ls, c, c->out.data + c->out_off, c->out.len - c->out_off);
        if (n == -2)
            return; /* closed */
        if (n < 0)
            break;
        c->out_off += (size_t)n;
    }
    if (c->out_off == c->out.len) {
        cg_buf_reset(&c->out);
        c->out_off = 0;
    } else if (c->out.len - c->out_off > MLLP_MAX_OUT) {
        mllp_conn_close(ls, c, "the peer does not read its acknowledgements");
        return;
    }
    mllp_conn_events(ls, c);
}

/* Sends the acknowledgements at the front of c whose outcome is known, in order. */
void mllp_conn_flush_acks(mllp_source_t *ls, mllp_conn_t *c)
{
    int sent = 0;
    while (c->head && c->head->ready) {
        mllp_pending_t *p = c->head;
        cg_mllp_msh_t h;
        cg_error_t err;
        /* a batch always gets its batch of acknowledgements; a message as its MSH-15 says */
        const char *code = "batch";
        if (!p->batch) {
            cg_mllp_msh_read(ls->hl7, p->msh, p->msh_len, &h, &err);
            code = cg_mllp_msh_wants_ack(&h, p->kind == CG_MLLP_ACK_OK)
                       ? cg_mllp_ack_code(&h, p->kind)
                       : NULL;
        }
        if (code) {
            char id[24];
            ack_control_id(id, (uint32_t)ls->started, ++ls->ack_no % 10000000000u);
            cg_err_t rc =
                p->batch ? cg_mllp_batch_ack_build(p->msh, p->msh_len, p->kind, p->reason, id,
                                                   time(NULL), &c->out)
                         : cg_mllp_ack_build(&h, p->kind, p->reason, id, time(NULL), 1, &c->out);
            if (rc == CG_OK) {
                ls->st.acks[p->kind]++;
                cg_metric_inc(cg_metric_get1(ls->mx.acks, code), 1);
                cg_metric_observe(ls->mx.latency,
                                  (double)(mllp_now_ms() - p->received_ms) / 1000.0);
            }
        }
        if (p->kind == CG_MLLP_ACK_OK && p->has_id && p->seq >= 0)
            mllp_dedup_put(ls->dedup, p->id, p->sha, mllp_now_ms());
        c->head = p->next;
        if (!c->head)
            c->tail = NULL;
        c->n_pending--;
        free(p);
        sent = 1;
    }
    if (sent)
        conn_write(ls, c); /* may close c */
}

static void conn_read(mllp_source_t *ls, mllp_conn_t *c)
{
    char *buf = ls->rbuf;
    for (int r = 0; r < MLLP_READS_PER_IO; r++) {
        ssize_t n = conn_recv(ls, c, buf, MLLP_READ_CHUNK);
        if (n == 0) {
            mllp_conn_close(ls, c, NULL);
            return;
        }
        if (n < 0)
            return; /* later, or closed */
        size_t off = 0;
        while (off < (size_t)n) {
            size_t used = 0;
            cg_mllp_event_t ev = cg_mllp_framer_feed(&c->fr, buf + off, (size_t)n - off, &used);
            off += used;
            if (ev == CG_MLLP_TOO_BIG) {
                ls->st.too_big++;
                cg_metric_inc(cg_metric_get1(ls->mx.closed, "too_big"), 1);
                cg_log(CG_LOG_WARN, "listen.too_big",
                       "%s: a frame larger than listen.max_frame_bytes (%d)", c->remote,
                       ls->conf->max_frame_bytes);
                mllp_conn_close(ls, c, "frame too big");
                return;
            }
            if (ev == CG_MLLP_FRAME) {
                c->last_frame_ms = mllp_now_ms();
                c->frame_start_ms = 0;
                ls->on_frame(ls, c, c->fr.frame.data ? c->fr.frame.data : "", c->fr.frame.len);
                if (c->fd < 0)
                    return; /* closed */
            }
        }
        if (cg_mllp_framer_in_frame(&c->fr) && !c->frame_start_ms)
            c->frame_start_ms = mllp_now_ms();
        /* TLS may hold decrypted bytes the socket no longer signals */
        if (!(c->events & EPOLLIN) ||
            ((size_t)n < MLLP_READ_CHUNK && !(c->ssl && SSL_pending(c->ssl))))
            return;
    }
}

static void accept_all(mllp_source_t *ls)
{
    for (;;) {
        struct sockaddr_storage sa;
        socklen_t sl = sizeof(sa);
        int fd = accept4(ls->lfd, (struct sockaddr *)&sa, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return; /* EAGAIN, or an error of that one connection */
        if (!mllp_allow_check(ls->allow, &sa)) {
            ls->st.not_allowed++;
            cg_metric_inc(cg_metric_get1(ls->mx.closed, "not_allowed"), 1);
            close(fd);
            continue;
        }
        if (ls->n_conns >= ls->conf->max_connections) {
            ls->st.refused++;
            cg_metric_inc(cg_metric_get1(ls->mx.closed, "max_connections"), 1);
            close(fd);
            continue;
        }
        mllp_conn_t *c = calloc(1, sizeof(*c));
        if (!c) {
            close(fd);
            continue;
        }
        /* an ACK is one small write the sender waits for: never held back by Nagle */
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        int slot = ls->next_slot;
        while (ls->slots[slot])
            slot = (slot + 1) % ls->conf->max_connections;
        ls->next_slot = (slot + 1) % ls->conf->max_connections;
        c->fd = fd;
        c->slot = slot;
        char host[INET6_ADDRSTRLEN] = "?";
        int port = 0;
        if (sa.ss_family == AF_INET) {
            struct sockaddr_in *s4 = (struct sockaddr_in *)&sa;
            inet_ntop(AF_INET, &s4->sin_addr, host, sizeof(host));
            port = ntohs(s4->sin_port);
            snprintf(c->remote, sizeof(c->remote), "%s:%d", host, port);
        } else if (sa.ss_family == AF_INET6) {
            struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&sa;
            inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof(host));
            port = ntohs(s6->sin6_port);
            snprintf(c->remote, sizeof(c->remote), "[%s]:%d", host, port);
        }
        if (ls->tls && !(c->ssl = mllp_tls_conn_new(ls->tls, fd))) {
            close(fd);
            free(c);
            continue;
        }
        cg_mllp_framer_init(&c->fr, (size_t)ls->conf->max_frame_bytes);
        cg_buf_init(&c->out);
        c->last_frame_ms = mllp_now_ms();
        c->handshaking = c->ssl != NULL;
        if (c->handshaking)
            c->frame_start_ms = c->last_frame_ms; /* the read timeout bounds the handshake */
        c->events = c->handshaking ? EPOLLIN : ls->paused ? 0 : EPOLLIN;
        struct epoll_event e = {.events = c->events, .data.ptr = c};
        if (epoll_ctl(ls->epfd, EPOLL_CTL_ADD, fd, &e)) {
            SSL_free(c->ssl);
            cg_mllp_framer_free(&c->fr);
            close(fd);
            free(c);
            continue;
        }
        ls->slots[slot] = c;
        ls->n_conns++;
        cg_metric_add(ls->mx.connections, 1);
        ls->st.accepted++;
    }
}

/* Timeouts: no one waits on a peer that stopped, and no acknowledgement goes out late. */
static void sweep(mllp_source_t *ls, int64_t t)
{
    const mllp_conf_t *cf = ls->conf;
    for (int i = 0; i < cf->max_connections; i++) {
        mllp_conn_t *c = ls->slots[i];
        if (!c)
            continue;
        if (c->head && !c->head->ready && t - c->head->received_ms > cf->ack_timeout_ms) {
            ls->st.ack_timeouts++;
            cg_metric_inc(cg_metric_get1(ls->mx.closed, "ack_timeout"), 1);
            cg_log(CG_LOG_WARN, "listen.ack_timeout",
                   "%s: a message not delivered within listen.ack_timeout_ms (%d): closing "
                   "instead of acknowledging late",
                   c->remote, cf->ack_timeout_ms);
            mllp_conn_close(ls, c, "acknowledgement timeout");
        } else if (c->frame_start_ms && t - c->frame_start_ms > cf->read_timeout_ms) {
            ls->st.read_timeouts++;
            cg_metric_inc(cg_metric_get1(ls->mx.closed, "read_timeout"), 1);
            mllp_conn_close(ls, c, "frame not complete within listen.read_timeout_ms");
        } else if (!c->head && !c->frame_start_ms && t - c->last_frame_ms > cf->idle_timeout_ms) {
            ls->st.idle_closed++;
            cg_metric_inc(cg_metric_get1(ls->mx.closed, "idle"), 1);
            mllp_conn_close(ls, c, "idle");
        }
    }
}

void mllp_io(mllp_source_t *ls, int timeout_ms)
{
    struct epoll_event ev[MLLP_MAX_EVENTS];
    int n = epoll_wait(ls->epfd, ev, MLLP_MAX_EVENTS, timeout_ms);
    for (int i = 0; i < n; i++) {
        mllp_conn_t *c = ev[i].data.ptr;
        if (!c) {
            accept_all(ls);
            continue;
        }
        if (c == (mllp_conn_t *)ls) { /* the sink's wake fd: emptied, then back to the engine */
            char drain[64];
            while (read(ls->wake_fd, drain, sizeof(drain)) > 0)
                ;
            continue;
        }
        if (c->fd < 0) /* closed earlier in this batch */
            continue;
        if (c->handshaking) {
            conn_handshake(ls, c);
            continue;
        }
        int read_on_out = c->io_wants_write;
        if (ev[i].events & EPOLLOUT)
            conn_write(ls, c);
        if (c->fd >= 0 && ((ev[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) ||
                           (read_on_out && (ev[i].events & EPOLLOUT))))
            conn_read(ls, c);
    }
    int64_t t = mllp_now_ms();
    if (t - ls->last_sweep_ms >= MLLP_SWEEP_MS) {
        ls->last_sweep_ms = t;
        sweep(ls, t);
    }
    mllp_free_dead(ls);
}
