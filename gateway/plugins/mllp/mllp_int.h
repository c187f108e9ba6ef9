/* mllp_int.h - what the MLLP listener's files share (gateway/plugins/mllp/), not installed. */
#ifndef CG_MLLP_INT_H
#define CG_MLLP_INT_H

#include "cg_mllp.h"
#include "cg_plugin.h"
#include "cg_pseudo.h"

#include <stdint.h>

extern const cg_source_plugin_t cg_mllp_source_plugin;

/* The listener's settings (its rows in mllp_source.c, listen.*). */
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
} mllp_conf_t;

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
