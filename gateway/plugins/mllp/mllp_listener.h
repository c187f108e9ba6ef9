/* mllp_listener.h - the MLLP listener's state, shared by its files (gateway/plugins/mllp/):
 * mllp_source.c (messages in, acknowledgements out, the plug-in) and mllp_conn.c (sockets, TLS,
 * accepting, reading, writing, timeouts). Not installed. */
#ifndef CG_MLLP_LISTENER_H
#define CG_MLLP_LISTENER_H

#include "mllp_int.h"

#include "cg_buf.h"
#include "cg_metrics.h"
#include "cg_metrics_gw.h"

#include <openssl/ssl.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#define MLLP_POS_TOPIC    "mllp" /* the topic of this source's positions (never a Kafka topic) */
#define MLLP_READ_CHUNK   65536
#define MLLP_READS_PER_IO 4         /* per connection and wake-up: one peer cannot hog the loop */
#define MLLP_MAX_OUT      (1 << 20) /* ACK bytes a peer that does not read may leave queued */
#define MLLP_SWEEP_MS     100       /* how often timeouts are looked at */
#define MLLP_KEY_DOMAIN   "\0cohortgate/mllp-key/v1\x1F"
#define MLLP_MAX_EVENTS   64

/* A message waiting for its acknowledgement, in its connection's order. */
typedef struct mllp_pending {
    struct mllp_pending *next;
    int32_t slot;
    int64_t seq;                    /* its position; -1: a resend answered from the cache */
    int ready;                      /* its outcome is known */
    cg_mllp_ack_kind_t kind;        /* the outcome, once ready */
    cg_mllp_ack_kind_t on_delivery; /* the outcome once delivered: OK, or ERROR (no decode) */
    int64_t received_ms;
    int has_id; /* id is valid: stored and acknowledged, it goes into the cache */
    int batch;  /* an FHS/BHS batch: msh holds cg_mllp_batch_scan's base, not an MSH line */
    /* a resend of an orphan still in flight: acknowledged with the orphan's outcome */
    int waiting;
    int32_t wait_slot;
    int64_t wait_seq;
    unsigned char id[32], sha[32];
    char reason[160];
    size_t msh_len;
    char msh[]; /* the message's MSH line: its acknowledgement is built from it */
} mllp_pending_t;

typedef struct mllp_conn {
    struct mllp_conn *next_dead; /* closed, freed once no epoll event can name it */
    int fd;
    int32_t slot;
    uint32_t events; /* what epoll watches now */
    char remote[64];
    cg_mllp_framer_t fr;
    int64_t last_frame_ms, frame_start_ms;
    mllp_pending_t *head, *tail;
    int n_pending;
    cg_buf_t out;
    size_t out_off;
    SSL *ssl;           /* TLS, or NULL */
    int handshaking;    /* the TLS handshake is not done */
    int io_wants_write; /* TLS: reading (or the handshake) waits for the socket to be writable */
    char peer_cn[128];  /* the verified client certificate's common name, or "" */
} mllp_conn_t;

/* One message handed to the engine: freed by release(). */
typedef struct mllp_msg {
    struct mllp_msg *next; /* in the ready queue */
    int32_t slot;
    int64_t seq;
    char key[65];
    const char *hdrs[14];
    size_t n_hdrs;
    char remote[64], received[32], sha_hex[65], err_code[32], err_reason[160];
    size_t len;
    char bytes[];
} mllp_msg_t;

typedef struct mllp_stats {
    uint64_t accepted, refused, messages, bytes, junk_bytes, too_big, idle_closed, read_timeouts,
        ack_timeouts, duplicates, reused_ids, undecodable, acks[3], not_allowed, tls_failed,
        wrong_sender;
} mllp_stats_t;

/* The listener's series in the gateway's registry (/metrics); NULL-safe when metrics are off. */
typedef struct mllp_metrics {
    cg_metric_series_t *connections, *duplicates, *reused_ids, *junk, *latency;
    cg_metric_t *acks, *closed, *refused, *messages, *bytes; /* the last two by sender */
} mllp_metrics_t;

struct mllp_source;
/* One framed message of c (buf: its bytes without the MLLP envelope), handed up by the reading
 * side (mllp_conn.c) to the message side (mllp_source.c: queued for the engine, answered from
 * the resend cache, or refused). */
typedef void(mllp_frame_fn)(struct mllp_source *ls, struct mllp_conn *c, const char *buf,
                            size_t len);

typedef struct mllp_source {
    mllp_frame_fn *on_frame;
    cg_engine_t *engine;
    const cg_config_t *cfg;
    const mllp_conf_t *conf;
    int epfd, lfd;
    int wake_fd; /* the sink's (watch): readable when delivery reports wait; -1 none */
    char bound[80];
    mllp_conn_t **slots;
    int n_conns, next_slot;
    int64_t *slot_seq;
    mllp_msg_t *rq_head, *rq_tail; /* framed, not yet handed out */
    mllp_conn_t *dead;
    /* in flight when their connection closed: once delivered they go into the resend cache,
     * so the sender's resend is answered from it rather than written twice */
    mllp_pending_t *orphans;
    int n_waiting; /* pendings waiting on an orphan */
    cg_pseudo_t *pseudo;
    cg_hl7_msg_t *hl7;
    /* SHA-256 fetched once and one context reused: EVP_Digest with EVP_sha256() looked the
     * algorithm up and allocated a context per message */
    struct evp_md_st *sha_md;
    struct evp_md_ctx_st *sha_ctx;
    mllp_dedup_t *dedup;
    mllp_tls_t *tls;     /* NULL: plaintext */
    mllp_allow_t *allow; /* listen.allow */
    uint64_t ack_no;
    time_t started;
    int paused;
    int64_t last_sweep_ms;
    mllp_stats_t st;
    mllp_metrics_t mx;
    char rbuf[MLLP_READ_CHUNK];
} mllp_source_t;

/* ---- mllp_conn.c ---- */

int64_t mllp_now_ms(void);
/* Sets what epoll watches for c: reading, and writing while ACK bytes wait. */
void mllp_conn_events(mllp_source_t *ls, mllp_conn_t *c);
/* Closes c (why: for the log and the closed metric); freed by mllp_free_dead once no epoll
 * event can name it. Its pendings become orphans. */
void mllp_conn_close(mllp_source_t *ls, mllp_conn_t *c, const char *why);
void mllp_free_dead(mllp_source_t *ls);
/* Writes the acknowledgements of c's ready pendings, in order, as far as the first not ready. */
void mllp_conn_flush_acks(mllp_source_t *ls, mllp_conn_t *c);
/* One turn of the epoll loop: accepts, reads (framing messages), writes, handshakes, and looks
 * at the timeouts; waits at most timeout_ms. */
void mllp_io(mllp_source_t *ls, int timeout_ms);

#endif
