/* delivery.c - per-partition in-flight tracking for offset commits (cg_delivery.h). */
#include "cg_delivery.h"

#include <stdlib.h>
#include <string.h>

typedef struct partition {
    char *topic;
    int32_t partition;
    cg_delivery_msg_t *head, *tail; /* in-flight messages in offset order */
    int64_t committable;            /* next offset to commit; -1 none yet */
    int64_t committed;              /* last acknowledged commit; -1 none */
    int64_t sealed;                 /* one past the last sealed message; -1 none */
    int64_t base;                   /* first offset begun since the partition was tracked */
    int64_t begun;                  /* one past the last message begun; -1 none */
} partition_t;

struct cg_delivery_msg {
    cg_delivery_msg_t *next;
    partition_t *part; /* NULL: an orphan, its partition dropped with records still out */
    int64_t offset;
    uint32_t pending; /* records added and not yet delivered */
    int sealed;
};

#define BLOCK_MSGS 1024

typedef struct block {
    struct block *next;
    cg_delivery_msg_t msgs[BLOCK_MSGS];
} block_t;

struct cg_delivery {
    partition_t **parts;
    size_t n_parts, cap_parts;
    cg_delivery_msg_t *free_list;
    block_t *blocks;
    size_t in_flight;
};

cg_delivery_t *cg_delivery_new(void)
{
    return calloc(1, sizeof(cg_delivery_t));
}

void cg_delivery_destroy(cg_delivery_t *d)
{
    if (!d)
        return;
    for (size_t i = 0; i < d->n_parts; i++) {
        free(d->parts[i]->topic);
        free(d->parts[i]);
    }
    free(d->parts);
    while (d->blocks) {
        block_t *n = d->blocks->next;
        free(d->blocks);
        d->blocks = n;
    }
    free(d);
}

static partition_t *part_get(cg_delivery_t *d, const char *topic, int32_t partition, int create)
{
    for (size_t i = 0; i < d->n_parts; i++)
        if (d->parts[i]->partition == partition && !strcmp(d->parts[i]->topic, topic))
            return d->parts[i];
    if (!create)
        return NULL;
    if (d->n_parts == d->cap_parts) {
        size_t cap = d->cap_parts ? d->cap_parts * 2 : 16;
        partition_t **p = realloc(d->parts, cap * sizeof(*p));
        if (!p)
            return NULL;
        d->parts = p;
        d->cap_parts = cap;
    }
    partition_t *p = calloc(1, sizeof(*p));
    if (!p || !(p->topic = strdup(topic))) {
        free(p);
        return NULL;
    }
    p->partition = partition;
    p->committable = -1;
    p->committed = -1;
    p->sealed = -1;
    p->base = -1;
    p->begun = -1;
    d->parts[d->n_parts++] = p;
    return p;
}

cg_delivery_msg_t *cg_delivery_begin(cg_delivery_t *d, const char *topic, int32_t partition,
                                     int64_t offset)
{
    partition_t *p = part_get(d, topic, partition, 1);
    if (!p)
        return NULL;
    if (!d->free_list) {
        block_t *b = malloc(sizeof(*b));
        if (!b)
            return NULL;
        b->next = d->blocks;
        d->blocks = b;
        for (size_t i = 0; i < BLOCK_MSGS; i++) {
            b->msgs[i].next = d->free_list;
            d->free_list = &b->msgs[i];
        }
    }
    cg_delivery_msg_t *m = d->free_list;
    d->free_list = m->next;
    m->next = NULL;
    if (p->base < 0)
        p->base = offset;
    p->begun = offset + 1;
    m->part = p;
    m->offset = offset;
    m->pending = 0;
    m->sealed = 0;
    if (p->tail)
        p->tail->next = m;
    else
        p->head = m;
    p->tail = m;
    d->in_flight++;
    return m;
}

void cg_delivery_add(cg_delivery_msg_t *m)
{
    m->pending++;
}

/* Pops complete messages off the front of the partition, advancing its committable offset. */
static void advance(cg_delivery_t *d, partition_t *p)
{
    while (p->head && p->head->sealed && p->head->pending == 0) {
        cg_delivery_msg_t *m = p->head;
        p->committable = m->offset + 1;
        p->head = m->next;
        if (!p->head)
            p->tail = NULL;
        m->next = d->free_list;
        d->free_list = m;
        d->in_flight--;
    }
}

/* A record of an orphan came back: the message is free once it is sealed and the last one has. Its
 * reports can come after a revoke's flush ran out of time; its partition is gone by then, and the
 * message must not be reused while they are out (they name it). */
static void orphan_done(cg_delivery_t *d, cg_delivery_msg_t *m)
{
    if (m->pending)
        m->pending--;
    if (!m->pending && m->sealed) {
        m->next = d->free_list;
        d->free_list = m;
    }
}

void cg_delivery_unadd(cg_delivery_t *d, cg_delivery_msg_t *m)
{
    if (!m->part) {
        orphan_done(d, m);
        return;
    }
    if (m->pending)
        m->pending--;
    advance(d, m->part);
}

void cg_delivery_seal(cg_delivery_t *d, cg_delivery_msg_t *m)
{
    m->sealed = 1;
    if (!m->part) { /* its job was still producing when its partition went */
        m->pending++;
        orphan_done(d, m);
        return;
    }
    if (m->offset + 1 > m->part->sealed)
        m->part->sealed = m->offset + 1;
    advance(d, m->part);
}

void cg_delivery_done(cg_delivery_t *d, cg_delivery_msg_t *m)
{
    if (!m->part) {
        orphan_done(d, m);
        return;
    }
    if (m->pending)
        m->pending--;
    advance(d, m->part);
}

void cg_delivery_msg_pos(const cg_delivery_msg_t *m, const char **topic, int32_t *partition,
                         int64_t *offset)
{
    *topic = m->part ? m->part->topic : "";
    *partition = m->part ? m->part->partition : -1;
    *offset = m->offset;
}

size_t cg_delivery_in_flight(const cg_delivery_t *d)
{
    return d->in_flight;
}

void cg_delivery_foreach_committable(cg_delivery_t *d,
                                     void (*fn)(const char *topic, int32_t partition,
                                                int64_t next_offset, void *opaque),
                                     void *opaque)
{
    for (size_t i = 0; i < d->n_parts; i++) {
        partition_t *p = d->parts[i];
        if (p->committable > p->committed)
            fn(p->topic, p->partition, p->committable, opaque);
    }
}

void cg_delivery_foreach_sealed(cg_delivery_t *d,
                                void (*fn)(const char *topic, int32_t partition,
                                           int64_t next_offset, void *opaque),
                                void *opaque)
{
    for (size_t i = 0; i < d->n_parts; i++) {
        partition_t *p = d->parts[i];
        if (p->sealed > p->committed)
            fn(p->topic, p->partition, p->sealed, opaque);
    }
}

/* Takes a partition's in-flight messages off it: to the free list, or (orphans) as orphans while
 * records of theirs are still out, so that their late reports find them and nothing else. */
static size_t forget_messages(cg_delivery_t *d, partition_t *p, int orphans)
{
    size_t dropped = 0;
    while (p->head) {
        cg_delivery_msg_t *m = p->head;
        p->head = m->next;
        if (orphans && (m->pending || !m->sealed)) {
            m->part = NULL;
            m->next = NULL;
        } else {
            m->next = d->free_list;
            d->free_list = m;
        }
        d->in_flight--;
        dropped++;
    }
    p->tail = NULL;
    return dropped;
}

size_t cg_delivery_rewind(cg_delivery_t *d,
                          void (*fn)(const char *topic, int32_t partition, int64_t offset,
                                     void *opaque),
                          void *opaque)
{
    size_t again = 0;
    for (size_t i = 0; i < d->n_parts; i++) {
        partition_t *p = d->parts[i];
        forget_messages(d, p, 0); /* an abort purged their records: no report comes */
        /* the group's committed offset, or where this assignment started */
        int64_t to = p->committed >= 0 ? p->committed : p->base;
        if (to >= 0 && p->begun > to) {
            again += (size_t)(p->begun - to);
            if (fn)
                fn(p->topic, p->partition, to, opaque);
        }
        p->begun = to;
        p->sealed = p->committed;
        p->committable = p->committed;
    }
    return again;
}

void cg_delivery_committed(cg_delivery_t *d, const char *topic, int32_t partition,
                           int64_t next_offset)
{
    partition_t *p = part_get(d, topic, partition, 0);
    if (p && next_offset > p->committed)
        p->committed = next_offset;
}

size_t cg_delivery_drop_partition(cg_delivery_t *d, const char *topic, int32_t partition)
{
    for (size_t i = 0; i < d->n_parts; i++) {
        partition_t *p = d->parts[i];
        if (p->partition != partition || strcmp(p->topic, topic))
            continue;
        size_t dropped = forget_messages(d, p, 1);
        free(p->topic);
        free(p);
        d->parts[i] = d->parts[--d->n_parts];
        return dropped;
    }
    return 0;
}
