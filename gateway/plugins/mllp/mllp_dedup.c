/* mllp_dedup.c - the bounded cache of stored (sender, MSH-10) digests (mllp_int.h): a ring in
 * insertion order, so the oldest entry is the one reused, and a chained hash index over it. */
#include "mllp_int.h"

#include <stdlib.h>
#include <string.h>

typedef struct entry {
    unsigned char id[32], sha[32];
    int64_t at_ms;
    int32_t next; /* in its bucket's chain; -1 ends it */
    int used;
} entry_t;

struct mllp_dedup {
    entry_t *ring;
    size_t cap, head; /* head: the next entry to (re)use, the oldest once the ring is full */
    int32_t *buckets;
    size_t mask;
    int64_t window_ms;
};

static size_t bucket_of(const mllp_dedup_t *d, const unsigned char id[32])
{
    uint64_t h; /* id is a SHA-256 digest: any 8 of its bytes are as good as a hash */
    memcpy(&h, id, sizeof(h));
    return (size_t)h & d->mask;
}

mllp_dedup_t *mllp_dedup_new(size_t cap, int64_t window_ms)
{
    mllp_dedup_t *d = calloc(1, sizeof(*d));
    if (!d)
        return NULL;
    size_t nb = 16;
    while (nb < cap * 2)
        nb *= 2;
    d->cap = cap ? cap : 1;
    d->mask = nb - 1;
    d->window_ms = window_ms;
    d->ring = calloc(d->cap, sizeof(*d->ring));
    d->buckets = malloc(nb * sizeof(*d->buckets));
    if (!d->ring || !d->buckets) {
        mllp_dedup_destroy(d);
        return NULL;
    }
    memset(d->buckets, 0xff, nb * sizeof(*d->buckets)); /* every chain empty (-1) */
    return d;
}

void mllp_dedup_destroy(mllp_dedup_t *d)
{
    if (!d)
        return;
    free(d->ring);
    free(d->buckets);
    free(d);
}

static entry_t *find(const mllp_dedup_t *d, const unsigned char id[32])
{
    for (int32_t i = d->buckets[bucket_of(d, id)]; i >= 0; i = d->ring[i].next)
        if (!memcmp(d->ring[i].id, id, 32))
            return &d->ring[i];
    return NULL;
}

mllp_dedup_result_t mllp_dedup_check(const mllp_dedup_t *d, const unsigned char id[32],
                                     const unsigned char sha[32], int64_t now_ms)
{
    const entry_t *e = d->window_ms > 0 ? find(d, id) : NULL;
    if (!e || now_ms - e->at_ms > d->window_ms)
        return MLLP_DEDUP_NEW;
    return memcmp(e->sha, sha, 32) ? MLLP_DEDUP_REUSED_ID : MLLP_DEDUP_SAME;
}

static void unlink_entry(mllp_dedup_t *d, int32_t idx)
{
    int32_t *p = &d->buckets[bucket_of(d, d->ring[idx].id)];
    while (*p >= 0 && *p != idx)
        p = &d->ring[*p].next;
    if (*p == idx)
        *p = d->ring[idx].next;
}

void mllp_dedup_put(mllp_dedup_t *d, const unsigned char id[32], const unsigned char sha[32],
                    int64_t now_ms)
{
    if (d->window_ms <= 0)
        return;
    entry_t *e = find(d, id);
    if (e) { /* the same id stored again (new bytes, or past the window): the latest counts */
        memcpy(e->sha, sha, 32);
        e->at_ms = now_ms;
        return;
    }
    int32_t idx = (int32_t)d->head;
    d->head = (d->head + 1) % d->cap;
    e = &d->ring[idx];
    if (e->used)
        unlink_entry(d, idx);
    memcpy(e->id, id, 32);
    memcpy(e->sha, sha, 32);
    e->at_ms = now_ms;
    e->used = 1;
    size_t b = bucket_of(d, id);
    e->next = d->buckets[b];
    d->buckets[b] = idx;
}
