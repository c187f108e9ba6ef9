/* mllp_int.h - what the MLLP listener's files share (gateway/plugins/mllp/), not installed. */
#ifndef CG_MLLP_INT_H
#define CG_MLLP_INT_H

#include "cg_mllp.h"
#include "cg_plugin.h"
#include "cg_pseudo.h"

#include <openssl/ssl.h>
#include <stdint.h>
#include <sys/socket.h>

extern const cg_source_plugin_t cg_mllp_source_plugin;
/* Its settings' rows (mllp_config.c). */
extern const cg_config_map_t cg_mllp_config_map[];

/* The listener's settings (its rows in mllp_config.c, listen.*). */
typedef struct mllp_conf {
    char *address;
    char *topic;
    int max_frame_bytes;
    int max_connections;
    int max_unacked;
    int idle_timeout_ms;
    int read_timeout_ms;
    int ack_timeout_ms;
    int dup_window_ms;
    int dup_cache_entries;
    char *allow;         /* listen.allow: addresses and prefixes, NULL: any */
    int plaintext;       /* listen.plaintext: no TLS off loopback, said explicitly */
    char *tls_cert_file; /* listen.tls.*: NULL when not set */
    char *tls_key_file;
    char *tls_client_ca_file;
    char *tls_crl_file;          /* revoked client certificates (PEM CRLs); NULL: none */
    cg_config_kv_t *tls_senders; /* certificate CN -> sending facilities (MSH-4.1) */
    size_t n_tls_senders;
} mllp_conf_t;

/* Peers that may connect (mllp_allow.c). An empty list allows every address. */
typedef struct mllp_allow mllp_allow_t;
mllp_allow_t *mllp_allow_new(const char *text, char *errstr, size_t errstr_size);
void mllp_allow_destroy(mllp_allow_t *a);
int mllp_allow_check(const mllp_allow_t *a, const struct sockaddr_storage *sa);
/* Plaintext off loopback only when listen.plaintext says so: -1 with the reason otherwise. */
int mllp_plaintext_check(const mllp_conf_t *cf, const struct sockaddr *sa, int tls, char *errstr,
                         size_t errstr_size);

/* TLS (mllp_tls.c). mllp_tls_new gives NULL with errstr "" when TLS is not configured, NULL
 * with a reason when it is and cannot be set up. */
typedef struct mllp_tls mllp_tls_t;

typedef enum mllp_io {
    MLLP_IO_OK = 0,
    MLLP_IO_WANT_READ,  /* try again once the socket is readable */
    MLLP_IO_WANT_WRITE, /* try again once the socket is writable */
    MLLP_IO_CLOSED,     /* the peer closed the TLS session */
    MLLP_IO_ERROR,      /* a reason in why */
} mllp_io_t;

mllp_tls_t *mllp_tls_new(const mllp_conf_t *cf, char *errstr, size_t errstr_size);
void mllp_tls_destroy(mllp_tls_t *t);
SSL *mllp_tls_conn_new(mllp_tls_t *t, int fd);
/* On MLLP_IO_OK the handshake is done and peer_cn holds the client certificate's common name
 * ("" without one). */
mllp_io_t mllp_tls_handshake(SSL *s, char *peer_cn, size_t cn_size, char *why, size_t why_size);
mllp_io_t mllp_tls_recv(SSL *s, void *buf, size_t n, size_t *got, char *why, size_t why_size);
mllp_io_t mllp_tls_send(SSL *s, const void *buf, size_t n, size_t *sent, char *why,
                        size_t why_size);
/* Whether the client certificate named peer_cn may send for the sending facility (MSH-4.1,
 * raw) of len bytes, per listen.tls.senders; 1 when no mapping is configured. */
int mllp_tls_sender_allowed(const mllp_tls_t *t, const char *peer_cn, const char *facility,
                            size_t len);

/* The pseudonym key the config names (pseudonym.key_file or key_env), loaded as the mapping
 * bundle loads it. NULL with the reason in errstr. */
cg_pseudo_t *mllp_key_load(const cg_config_t *cfg, char *errstr, size_t errstr_size);

/* Resends after a lost acknowledgement: per (sender, MSH-10), the SHA-256 of the bytes that
 * were stored and when. Bounded: the oldest entry makes room; an entry older than the window
 * no longer counts. Keys are digests, so no identifier of the message is kept in memory. */
typedef struct mllp_dedup mllp_dedup_t;

typedef enum mllp_dedup_result {
    MLLP_DEDUP_NEW = 0,   /* not stored within the window */
    MLLP_DEDUP_SAME,      /* stored, same bytes: acknowledge again, do not store twice */
    MLLP_DEDUP_REUSED_ID, /* stored with other bytes: a new message reusing the id */
} mllp_dedup_result_t;

mllp_dedup_t *mllp_dedup_new(size_t cap, int64_t window_ms);
void mllp_dedup_destroy(mllp_dedup_t *d);
mllp_dedup_result_t mllp_dedup_check(const mllp_dedup_t *d, const unsigned char id[32],
                                     const unsigned char sha[32], int64_t now_ms);
void mllp_dedup_put(mllp_dedup_t *d, const unsigned char id[32], const unsigned char sha[32],
                    int64_t now_ms);

#endif
