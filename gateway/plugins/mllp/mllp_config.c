/* mllp_config.c - the MLLP listener's settings (listen.*): its rows, bound to mllp_conf_t. */
#include "mllp_int.h"

#include <stddef.h>

/* clang-format off */
const cg_config_map_t cg_mllp_config_map[] = {
    CG_CONFIG_ROW_GROUP("listen",
     "The MLLP listener of `cohortgate listen` (source \"mllp\"): HL7 v2 over MLLP in, each message "
     "byte for byte to a raw topic, acknowledged only once the broker has it."),
    CG_CONFIG_ROW_STRING("listen.address", mllp_conf_t, address, "127.0.0.1:2575", 0,
     "HOST:PORT or [IPV6]:PORT to listen on (port 0 picks a free one). Loopback by default. "
     "Any other address needs TLS (listen.tls.cert_file and key_file) or, said explicitly, "
     "listen.plaintext."),
    CG_CONFIG_ROW_BOOL("listen.plaintext", mllp_conf_t, plaintext, "false",
     "Accept connections in plaintext on an address other than loopback (a trusted network, "
     "or TLS terminated in front). Without it such an address needs listen.tls.*."),
    CG_CONFIG_ROW_STRING("listen.allow", mllp_conf_t, allow, "", CG_CONFIG_F_EMPTY,
     "Peers that may connect: IPv4 or IPv6 addresses or ADDRESS/PREFIX, separated by commas "
     "(e.g. \"10.20.0.0/16, 192.168.1.7\"). Others are closed at accept. Empty: any."),
    CG_CONFIG_ROW_GROUP("listen.tls",
     "TLS on the listener (OpenSSL, TLS 1.2 or later). Off unless cert_file and key_file are set."),
    CG_CONFIG_ROW_STRING("listen.tls.cert_file", mllp_conf_t, tls_cert_file, "",
     CG_CONFIG_F_PATH | CG_CONFIG_F_EMPTY,
     "The server's certificate chain, PEM (the server certificate first)."),
    CG_CONFIG_ROW_STRING("listen.tls.key_file", mllp_conf_t, tls_key_file, "",
     CG_CONFIG_F_PATH | CG_CONFIG_F_EMPTY,
     "The server certificate's private key, PEM, unencrypted; keep it readable by the gateway only."),
    CG_CONFIG_ROW_STRING("listen.tls.client_ca_file", mllp_conf_t, tls_client_ca_file, "",
     CG_CONFIG_F_PATH | CG_CONFIG_F_EMPTY,
     "Mutual TLS: CA certificates (PEM) that sign the clients' certificates. When set, a client "
     "without a certificate they verify is refused in the handshake."),
    CG_CONFIG_ROW_STRING("listen.tls.crl_file", mllp_conf_t, tls_crl_file, "",
     CG_CONFIG_F_PATH | CG_CONFIG_F_EMPTY,
     "Mutual TLS: certificate revocation lists (PEM, one or more) of the client CA. When set, a "
     "client whose certificate is revoked is refused in the handshake; so is one whose CA has "
     "no CRL in the file. Read at start and again on SIGHUP, with the certificate, key and "
     "client CA, for the connections accepted after it (open ones keep theirs)."),
    CG_CONFIG_ROW_MAP("listen.tls.senders", mllp_conf_t, tls_senders, n_tls_senders,
     "Mutual TLS: per client certificate (its subject's common name), the sending facilities "
     "(MSH-4.1) it may send for, separated by commas, e.g. {\"lab.example.org\": \"LAB,LAB2\"}. "
     "A message for another facility, or from a certificate not named, is refused (AR/CR) and "
     "not stored. Empty: any verified client sends for any facility."),
    CG_CONFIG_ROW_STRING("listen.topic", mllp_conf_t, topic, "cohortgate.raw", 0,
     "Raw topic every message is written to, unchanged, keyed by a keyed hash of (sending "
     "facility, patient identifier) with headers cg.mllp.remote, cg.mllp.received and "
     "cg.mllp.sha256 (and cg.error.* when it does not decode)."),
    CG_CONFIG_ROW_INT("listen.max_frame_bytes", mllp_conf_t, max_frame_bytes, "4194304", 64, 1073741824,
     "Largest MLLP frame accepted; a larger one closes the connection."),
    CG_CONFIG_ROW_INT("listen.max_connections", mllp_conf_t, max_connections, "256", 1, 65536,
     "Connections open at once; more are accepted and closed at once."),
    CG_CONFIG_ROW_INT("listen.max_unacked", mllp_conf_t, max_unacked, "64", 1, 100000,
     "Messages of one connection waiting for their acknowledgement before the listener stops "
     "reading from it (senders usually wait for each ACK: 1)."),
    CG_CONFIG_ROW_INT("listen.idle_timeout_ms", mllp_conf_t, idle_timeout_ms, "300000", 100, 86400000,
     "A connection with no complete frame and nothing to acknowledge for this long is closed."),
    CG_CONFIG_ROW_INT("listen.read_timeout_ms", mllp_conf_t, read_timeout_ms, "30000", 100, 3600000,
     "A frame must be complete this long after its start byte, or the connection is closed "
     "(a slowloris peer)."),
    CG_CONFIG_ROW_INT("listen.ack_timeout_ms", mllp_conf_t, ack_timeout_ms, "30000", 100, 3600000,
     "A message still not delivered this long after it came is never acknowledged late: the "
     "connection is closed, and the sender sends it again. Set it below the sender's own ACK "
     "timeout."),
    CG_CONFIG_ROW_INT("listen.dup_window_ms", mllp_conf_t, dup_window_ms, "600000", 0, 86400000,
     "A message sent again within this long of being stored (same MSH-3, MSH-4 and MSH-10, same "
     "bytes) is acknowledged again and not written twice; 0 writes every one."),
    CG_CONFIG_ROW_INT("listen.dup_cache_entries", mllp_conf_t, dup_cache_entries, "100000", 1, 100000000,
     "Stored messages remembered for dup_window_ms (about 100 bytes each); the oldest make room."),
    CG_CONFIG_ROW_END,
};
/* clang-format on */
