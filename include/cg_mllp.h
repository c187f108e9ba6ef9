/* cg_mllp.h - the wire side of `cohortgate listen`: MLLP framing (HL7 v2 chapter 2, appendix C:
 * 0x0B, the message, 0x1C 0x0D) and HL7 v2 acknowledgements built from the message's MSH.
 *
 * Both are pure (no socket, no clock read, no allocation beyond the caller's buffers), so the
 * unit tests drive them without a network; the listener (gateway/plugins/mllp/) owns the sockets.
 *
 * Ownership: a cg_mllp_framer_t owns its frame buffer (cg_mllp_framer_free); a cg_mllp_msh_t
 * holds slices borrowed from the bytes it was read from.
 */
#ifndef CG_MLLP_H
#define CG_MLLP_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "cg_buf.h"
#include "cg_config.h"
#include "cg_err.h"
#include "cg_hl7.h"

#define CG_MLLP_SB 0x0B /* start block */
#define CG_MLLP_EB 0x1C /* end block, followed by a carriage return */
#define CG_MLLP_CR 0x0D

/* ---- framing ---- */

typedef enum cg_mllp_event {
    CG_MLLP_MORE = 0, /* every byte fed was taken; no frame is complete yet */
    CG_MLLP_FRAME,    /* a frame is complete: its content is in f->frame until the next feed */
    CG_MLLP_TOO_BIG,  /* the frame being read exceeds max_bytes: the peer is to be dropped */
} cg_mllp_event_t;

typedef struct cg_mllp_framer {
    size_t max_bytes; /* largest frame content accepted */
    int state;        /* outside a frame, inside one, or just past its end byte */
    cg_buf_t frame;   /* the content of the frame being read (without SB, EB, CR) */
    uint64_t junk;    /* bytes skipped outside frames, and abandoned partial frames */
    uint64_t frames;  /* frames completed */
} cg_mllp_framer_t;

void cg_mllp_framer_init(cg_mllp_framer_t *f, size_t max_bytes);
void cg_mllp_framer_free(cg_mllp_framer_t *f);
/* Whether a frame has started and is not complete (for the read timeout). */
int cg_mllp_framer_in_frame(const cg_mllp_framer_t *f);
/* Takes bytes until a frame completes (or overflows). *used gets how many were taken: call again
 * with the rest. Bytes before a start byte are skipped and counted in junk; a start byte inside a
 * frame abandons the partial frame (a sender that restarted) and starts anew; the CR after the
 * end byte is taken when present (a missing one is tolerated). */
cg_mllp_event_t cg_mllp_framer_feed(cg_mllp_framer_t *f, const char *buf, size_t len, size_t *used);

/* ---- the message header an acknowledgement needs ---- */

/* Raw (escaped, undecoded) slices of one message's MSH, and its first PID-3 identifier. */
typedef struct cg_mllp_msh {
    int found;                /* an MSH segment was there */
    int parsed;               /* the whole message decoded (cg_hl7_parse) */
    cg_slice_t seps;          /* MSH-1 and MSH-2: the field separator and the encoding characters */
    char field_sep;           /* '|' unless MSH-1 says otherwise */
    char comp_sep;            /* '^' unless MSH-2 says otherwise */
    cg_slice_t fld[22];       /* fld[n] is MSH-n, 3 <= n <= 21; empty when absent */
    cg_slice_t trigger;       /* MSH-9.2 */
    cg_slice_t pid_id;        /* PID-3.1 of the first PID-3 repetition; empty without a PID */
    cg_slice_t pid_authority; /* PID-3.4, whole */
} cg_mllp_msh_t;

/* Reads buf (one message, without framing): with the decoder when the message decodes (then
 * parsed is 1 and PID-3 is read too), else by splitting its first line on MSH-1, so that a
 * message that does not decode still gets an acknowledgement that names it (found is 0 when no
 * MSH is there at all). m is the caller's reusable decoder. Returns the decoder's result (CG_OK
 * when parsed) and fills *err on failure; out is filled either way. */
cg_err_t cg_mllp_msh_read(cg_hl7_msg_t *m, const char *buf, size_t len, cg_mllp_msh_t *out,
                          cg_error_t *err);
/* The same from an MSH line by splitting it only (no decoder): what a batch's messages tell. */
void cg_mllp_msh_split(const char *buf, size_t len, cg_mllp_msh_t *out);
/* Enhanced acknowledgement mode: MSH-15 or MSH-16 is valued (commit codes CA/CE/CR). */
int cg_mllp_msh_enhanced(const cg_mllp_msh_t *h);
/* Whether an accept acknowledgement with this outcome is to be sent, per MSH-15 (AL or empty:
 * always, NE: never, SU: on success, ER: on errors) in enhanced mode; always in original mode. */
int cg_mllp_msh_wants_ack(const cg_mllp_msh_t *h, int success);

/* ---- acknowledgements ---- */

typedef enum cg_mllp_ack_kind {
    CG_MLLP_ACK_OK,       /* AA / CA: stored */
    CG_MLLP_ACK_ERROR,    /* AE / CE: stored, but it does not decode */
    CG_MLLP_ACK_REJECTED, /* AR / CR: not stored; the sender may try again */
} cg_mllp_ack_kind_t;

/* The two-letter code of kind in h's mode ("AA", "CE", ...). */
const char *cg_mllp_ack_code(const cg_mllp_msh_t *h, cg_mllp_ack_kind_t kind);

/* now as an HL7 v2 DTM in UTC (YYYYMMDDHHMMSS+0000), in a per-thread buffer valid until the
 * thread's next call with another second. */
const char *cg_mllp_hl7_ts(time_t now);

/* Appends h's acknowledgement to out, as HL7 v2 chapter 2 builds it: MSH with the message's
 * separators and encoding characters, sending and receiving application and facility swapped,
 * MSH-7 now (UTC), MSH-9 ACK^<trigger>^ACK, MSH-10 control_id (the ACK's own), MSH-11, MSH-12
 * and MSH-18 echoed; MSA-1 the code, MSA-2 the message's MSH-10; for an error or rejection,
 * MSA-3 and an ERR segment with text (the caller's words: never a value of the message;
 * separators in it are replaced by spaces). framed wraps it in MLLP's start and end bytes. */
cg_err_t cg_mllp_ack_build(const cg_mllp_msh_t *h, cg_mllp_ack_kind_t kind, const char *text,
                           const char *control_id, time_t now, int framed, cg_buf_t *out);

/* ---- batches (mllp_batch.c) ---- */

/* Whether a frame is an HL7 batch: FHS or BHS first (after a BOM or blank lines). */
int cg_mllp_is_batch(const char *buf, size_t len);
/* Reads the batch buf with m and appends to base what its acknowledgement needs (its FHS and
 * BHS lines, and per message whether it decodes and its MSH line); *n_msgs gets the messages.
 * A message that does not decode is marked so (its ACK is AE); the batch is stored all the same
 * and the gateway answers for each message. CG_OK; or the BTS/FTS count error (the batch lost a
 * message on the way: the gateway dead-letters it whole) in *err; CG_ERR_NOT_HL7 for none. */
cg_err_t cg_mllp_batch_scan(cg_hl7_msg_t *m, const char *buf, size_t len, cg_buf_t *base,
                            size_t *n_msgs, cg_error_t *err);
/* Appends the framed batch acknowledgement of base (cg_mllp_batch_scan's): FHS/BHS answering
 * the batch (sender and receiver swapped, field 12 the answered field 11), one ACK per message
 * (cg_mllp_ack_build; control ids control_id-1, -2, ...) coded as it decoded (AA/AE) when all
 * is OK, else all of them `all` with text; BTS-1 the count, FTS-1 1 when there was an FHS. */
cg_err_t cg_mllp_batch_ack_build(const char *base, size_t len, cg_mllp_ack_kind_t all,
                                 const char *text, const char *control_id, time_t now,
                                 cg_buf_t *out);

/* ---- the listener's config (gateway/plugins/mllp/mllp_source.c) ---- */

/* What `cohortgate listen` would refuse of cfg without binding anything: listen.address, the
 * pseudonym key its message keys need. -1 with the reason in errstr. */
int cg_mllp_config_check(const cg_config_t *cfg, char *errstr, size_t errstr_size);

#endif
