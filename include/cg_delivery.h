/* cg_delivery.h - delivery bookkeeping: which input offsets may be committed.
 *
 * Each consumed input message is tracked from cg_delivery_begin() until every record it caused
 * (rows and dead letters) has a successful delivery report. Per partition, the committable
 * offset is one past the last message of the longest fully-delivered prefix, so a message whose
 * record is still in flight holds back the commit of every later offset in its partition even
 * when their reports arrive first (at-least-once). For exactly-once, the offsets sent with a
 * transaction are those of sealed messages (all their records handed to the producer: the
 * transaction commit delivers them), and an aborted transaction rewinds to the last commit.
 * No allocation once warm: messages come from a free list. Not thread-safe: one thread owns it.
 */
#ifndef CG_DELIVERY_H
#define CG_DELIVERY_H

#include <stddef.h>
#include <stdint.h>

typedef struct cg_delivery cg_delivery_t;
typedef struct cg_delivery_msg cg_delivery_msg_t;

cg_delivery_t *cg_delivery_new(void);
/* NULL-safe. */
void cg_delivery_destroy(cg_delivery_t *d);

/* Starts tracking input (topic, partition, offset); offsets of a partition must be begun in
 * increasing order. NULL when out of memory. */
cg_delivery_msg_t *cg_delivery_begin(cg_delivery_t *d, const char *topic, int32_t partition,
                                     int64_t offset);
/* One more record of m was handed to the producer. */
void cg_delivery_add(cg_delivery_msg_t *m);
/* A record of m that was added could not be handed over after all (produce() failed). */
void cg_delivery_unadd(cg_delivery_t *d, cg_delivery_msg_t *m);
/* Every record of m has been added; m may complete now. */
void cg_delivery_seal(cg_delivery_t *d, cg_delivery_msg_t *m);
/* One record of m was delivered. */
void cg_delivery_done(cg_delivery_t *d, cg_delivery_msg_t *m);

/* Where m is (its topic string lives as long as its partition is tracked). */
void cg_delivery_msg_pos(const cg_delivery_msg_t *m, const char **topic, int32_t *partition,
                         int64_t *offset);

/* Input messages begun and not yet complete. */
size_t cg_delivery_in_flight(const cg_delivery_t *d);

/* Calls fn for every partition whose committable offset is past what was last committed;
 * next_offset is the offset to commit (the next one to consume). */
void cg_delivery_foreach_committable(cg_delivery_t *d,
                                     void (*fn)(const char *topic, int32_t partition,
                                                int64_t next_offset, void *opaque),
                                     void *opaque);
/* Calls fn for every partition whose sealed messages reach past what was last committed;
 * next_offset is one past its last sealed message (what a transaction commits). */
void cg_delivery_foreach_sealed(cg_delivery_t *d,
                                void (*fn)(const char *topic, int32_t partition,
                                           int64_t next_offset, void *opaque),
                                void *opaque);
/* After an aborted transaction: forgets every in-flight message and calls fn for every
 * partition with messages begun past its last commit, with the offset to consume again from
 * (the last committed one, or the first offset begun when nothing was committed yet). Returns
 * the number of offsets to consume again. */
size_t cg_delivery_rewind(cg_delivery_t *d,
                          void (*fn)(const char *topic, int32_t partition, int64_t offset,
                                     void *opaque),
                          void *opaque);
/* Records that the broker acknowledged a commit of next_offset. */
void cg_delivery_committed(cg_delivery_t *d, const char *topic, int32_t partition,
                           int64_t next_offset);
/* Forgets a partition (after a revoke, once its in-flight records were flushed). Returns the
 * number of incomplete messages that were forgotten (their offsets stay uncommitted). */
size_t cg_delivery_drop_partition(cg_delivery_t *d, const char *topic, int32_t partition);

#endif
