/* cg_hl7.h - HL7 v2 (ER7) decoding: message splitting, structural index, value reading and the
 * path language.
 *
 * The decoder works in one pass over the caller's buffer and builds a structural index of offsets
 * (segments, fields, repetitions, components, subcomponents) in a reusable cg_hl7_msg_t; nothing is
 * copied and nothing is allocated per field. Escape sequences and the MSH-18 character set are
 * only decoded when a value is read (cg_hl7_decode), so a mapper pays for the values it uses.
 *
 * Numbering follows the standard: fields, repetitions, components and subcomponents are 1-based;
 * MSH-1 is the field separator and MSH-2 the encoding characters (same for FHS and BHS).
 * Segment indexes (cursors) are 0-based positions in the message.
 *
 * Ownership: a cg_hl7_msg_t borrows the input buffer; the buffer must outlive every slice and
 * match taken from it, until the next parse into the same object. A cg_hl7_msg_t is not
 * thread-safe, not even for reading: it caches iconv descriptors, and reading below the field
 * level builds per-segment tables on first access; use one per thread.
 */
#ifndef CG_HL7_H
#define CG_HL7_H

#include <stddef.h>
#include <stdint.h>

#include "cg_buf.h"
#include "cg_err.h"

/* ---- options and errors ---------------------------------------------------------------------- */

/* Defaults; each bounds memory and time, so hostile input fails fast instead of hurting. */
#define CG_HL7_DEFAULT_MAX_MESSAGE_BYTES (16u * 1024u * 1024u)
#define CG_HL7_DEFAULT_MAX_SEGMENTS      100000u
#define CG_HL7_DEFAULT_MAX_FIELDS        1000u  /* per segment */
#define CG_HL7_DEFAULT_MAX_REPS          10000u /* per field */
#define CG_HL7_DEFAULT_CHARSET           "UNICODE UTF-8"

typedef struct cg_hl7_options {
    size_t max_message_bytes; /* at most 4 GiB - 2 (the index stores 32-bit offsets) */
    uint32_t max_segments;
    uint32_t max_fields; /* fields in one segment */
    uint32_t max_reps;   /* repetitions of one field */
    /* 0 (default): a line that does not start with a segment name continues the previous
     * segment's last value (editors wrap long lines; some systems put raw line breaks in OBX-5),
     * counted by cg_hl7_msg_wrapped. 1: such a line is a CG_ERR_HL7_SYNTAX error. */
    int strict_segments;
    /* Character set assumed when MSH-18 is empty: an HL7 table 0211 value ("8859/1",
     * "GB 18030-2000") or an iconv name ("GBK"). Copied by cg_hl7_msg_new. */
    const char *default_charset;
} cg_hl7_options_t;

/* Fills *o with the defaults above. */
void cg_hl7_options_default(cg_hl7_options_t *o);

/* Decoding errors are cg_error_t (cg_err.h) located CG_ERROR_AT_HL7: message, segment, field and
 * byte offset, as far as they are known. */

/* ---- decoded messages --------------------------------------------------------------------------
 */

typedef struct cg_hl7_msg cg_hl7_msg_t;

/* Delimiters of one message, from MSH-1 and MSH-2. A missing one is '\0'. */
typedef struct cg_hl7_delims {
    char field, comp, rep, esc, sub, trunc;
} cg_hl7_delims_t;

/* Batch context of a message that came inside FHS/BHS envelopes (slices of the raw segments;
 * empty when absent). */
typedef struct cg_hl7_batch {
    cg_slice_t fhs, bhs;
    size_t fhs_offset, bhs_offset; /* byte offsets in the input */
    size_t batch_no;               /* 1-based count of BHS seen; 0 outside a batch */
    size_t index_in_batch;         /* 1-based position of the message in its batch */
} cg_hl7_batch_t;

/* opts may be NULL for the defaults. Returns NULL when out of memory or when opts are invalid. */
cg_hl7_msg_t *cg_hl7_msg_new(const cg_hl7_options_t *opts);
/* The charset of messages whose MSH-18 is empty, from the next message on: an HL7 table 0211
 * value or an iconv name, as cg_hl7_options_t.default_charset; NULL or "" goes back to the
 * options' one. For an input whose feed differs from the rest (inputs[].charset); an unknown
 * name fails the next such message (CG_ERR_CHARSET), as a bad default does. */
void cg_hl7_msg_set_default_charset(cg_hl7_msg_t *m, const char *name);
/* m may be NULL. Closes cached iconv descriptors. */
void cg_hl7_msg_destroy(cg_hl7_msg_t *m);

/* Splits an input (a file, a Kafka value) into messages: back-to-back MSH messages, MLLP frames,
 * FHS/BHS/BTS/FTS batches. Borrow-only; stack-allocate it. */
typedef struct cg_hl7_reader {
    const char *buf;
    size_t len;
    size_t pos;
    size_t msg_no; /* messages started so far */
    cg_hl7_batch_t batch;
    /* the first trailer whose count disagrees with what came (BTS-1 messages in the batch,
     * FTS-1 batches in the file): a message or batch lost on the way. 0 when none */
    size_t count_error_at; /* byte offset of that BTS or FTS, plus one */
    char count_error[128];
    /* Optional: told, every few MiB, how far a skip over bytes that are no message (junk after
     * an error, a file of zeros) has gone; nothing before upto is read again. cohortgate map
     * releases a mapped file's pages with it. Set after cg_hl7_reader_init(). */
    void (*scanned)(void *ctx, size_t upto);
    void *scanned_ctx;
} cg_hl7_reader_t;

void cg_hl7_reader_init(cg_hl7_reader_t *r, const char *buf, size_t len);
/* Skips framing and blank lines and batch trailers; returns 1 when another message (or junk that
 * will be reported as an error) follows, 0 at the end of the input. */
int cg_hl7_reader_more(cg_hl7_reader_t *r);
/* Indexes the next message into m. On error, *err says where, and the reader has moved to the next
 * MSH/FHS/BHS at a segment start so the caller can go on with the following message. */
cg_err_t cg_hl7_reader_next(cg_hl7_reader_t *r, cg_hl7_msg_t *m, cg_error_t *err);
/* After the last message: CG_ERR_HL7_SYNTAX with *err located at the trailer when a BTS-1 or
 * FTS-1 count disagreed with the messages or batches that came, else CG_OK. The messages were
 * read all the same; a caller that stores the input whole (the gateway) refuses it, so that a
 * batch that lost a message on the way is sent again rather than half-loaded. */
cg_err_t cg_hl7_reader_end(const cg_hl7_reader_t *r, cg_error_t *err);

/* Indexes exactly one message (with optional BOM, MLLP framing or batch envelope). Extra messages
 * after the first are an error: use a reader for batches. */
cg_err_t cg_hl7_parse(cg_hl7_msg_t *m, const char *buf, size_t len, cg_error_t *err);

/* The message's own bytes (from "MSH" to the end of its last segment) and where they start. */
cg_slice_t cg_hl7_msg_bytes(const cg_hl7_msg_t *m);
size_t cg_hl7_msg_offset(const cg_hl7_msg_t *m);
size_t cg_hl7_msg_number(const cg_hl7_msg_t *m);
const cg_hl7_delims_t *cg_hl7_msg_delims(const cg_hl7_msg_t *m);
const cg_hl7_batch_t *cg_hl7_msg_batch(const cg_hl7_msg_t *m);
/* Lines that were not segments and were kept as data of the previous one (see strict_segments). */
uint32_t cg_hl7_msg_wrapped(const cg_hl7_msg_t *m);
/* iconv name used to decode values ("UTF-8", "ISO-8859-1", "GB18030"). */
const char *cg_hl7_msg_charset(const cg_hl7_msg_t *m);

/* ---- structural index ------------------------------------------------------------------------ */

#define CG_HL7_NO_SEG UINT32_MAX

uint32_t cg_hl7_seg_count(const cg_hl7_msg_t *m);
/* Three-character name, NUL-terminated, of segment seg (0-based). */
const char *cg_hl7_seg_name(const cg_hl7_msg_t *m, uint32_t seg);
/* Raw segment text without its terminator. */
cg_slice_t cg_hl7_seg_bytes(const cg_hl7_msg_t *m, uint32_t seg);
/* Highest field number present (MSH|^~\&|A has 3). */
uint32_t cg_hl7_field_count(const cg_hl7_msg_t *m, uint32_t seg);
/* Counts below a field; 0 when the field (or repetition, component) is absent. An empty but
 * present field has 1 repetition with 1 component with 1 subcomponent. */
uint32_t cg_hl7_rep_count(const cg_hl7_msg_t *m, uint32_t seg, uint32_t field);
uint32_t cg_hl7_comp_count(const cg_hl7_msg_t *m, uint32_t seg, uint32_t field, uint32_t rep);
uint32_t cg_hl7_sub_count(const cg_hl7_msg_t *m, uint32_t seg, uint32_t field, uint32_t rep,
                          uint32_t comp);
/* Raw (still escaped, original charset) bytes of a field, repetition, component or subcomponent.
 * rep/comp/sub 0 means "the whole level above": (seg, 5, 0, 0, 0) is all of field 5 including
 * its repetitions; (seg, 5, 1, 2, 0) is component 2 of the first repetition. Returns 1 and
 * fills *out when present; 0 (and an empty slice) when absent. */
int cg_hl7_get_raw(const cg_hl7_msg_t *m, uint32_t seg, uint32_t field, uint32_t rep, uint32_t comp,
                   uint32_t sub, cg_slice_t *out);

/* Segment navigation for spec engines: the nearest segment named name strictly before seg (the
 * enclosing OBR of an OBX, the PID of an order), and the first at or after from. CG_HL7_NO_SEG
 * when there is none. */
uint32_t cg_hl7_seg_prev(const cg_hl7_msg_t *m, uint32_t seg, const char *name);
uint32_t cg_hl7_seg_next(const cg_hl7_msg_t *m, uint32_t from, const char *name);

/* ---- value reading -----------------------------------------------------------------------------
 */

/* Appends raw's value to out: escape sequences decoded (\F\ \S\ \T\ \R\ \E\ \Xhh..\ \.br\ -> "\n";
 * \H\ \N\ dropped; unknown sequences and a lone escape character kept literally) and converted
 * from the message's character set to UTF-8. raw must lie inside m's message (it is how byte
 * offsets of invalid bytes are reported). Returns CG_ERR_CHARSET with the offset on bad bytes. */
cg_err_t cg_hl7_decode(cg_hl7_msg_t *m, cg_slice_t raw, cg_buf_t *out, cg_error_t *err);
/* Same, without escape decoding (MSH-1, MSH-2, or callers that want escapes kept). */
cg_err_t cg_hl7_decode_noescape(cg_hl7_msg_t *m, cg_slice_t raw, cg_buf_t *out, cg_error_t *err);
/* Maps an HL7 table 0211 name ("8859/1", "GB 18030-2000", "UNICODE UTF-8") to an iconv name,
 * written to buf; an unknown name is copied as is (so "GBK" works too). NULL when it does not
 * fit. Returns buf. */
const char *cg_hl7_charset_iconv_name(const char *hl7_name, size_t len, char *buf, size_t size);

/* ---- path language (see specs/PATHS.md)
 * ---------------------------------------------------------
 *
 *   SEG[i]-F[r].C.S   e.g. PID-5, PID-5.1, PID-5.1.1, PID-3[2].1, PID-3[*].1, OBX[*]-5, OBX[3]-5
 *   F[C=V|V…]         a repetition by a component's value: PID-3[5=NNCHN|MR|*].1
 *
 * Compiled once into a small value (no allocation), evaluated many times. */

#define CG_HL7_ALL     (-1) /* [*]; with a selector (sel_len > 0), the repetition it picks */
#define CG_HL7_FIRST   0    /* no index written */
#define CG_HL7_SEL_MAX 255  /* bytes of a selector's values, separators included */

typedef struct cg_hl7_path {
    char seg[4];    /* segment name */
    int seg_index;  /* CG_HL7_FIRST, CG_HL7_ALL or n >= 1 */
    uint32_t field; /* 0: the path names whole segments */
    int rep;        /* CG_HL7_FIRST, CG_HL7_ALL or n >= 1 */
    uint32_t comp;  /* 0: whole repetition */
    uint32_t sub;   /* 0: whole component */
    /* A selector (sel_len > 0, rep CG_HL7_ALL): of the repetitions, only the first whose
     * component sel_comp (subcomponent sel_sub, 0: the whole component) is sel's first value,
     * else its second, …; "*" is any repetition. As a filtered [*], it takes the iterator's
     * road, so the one-repetition fast road of cg_hl7_path_first is exactly what it was.
     * sel points into the text the path was compiled from ('|'-separated values, sel_len
     * bytes): that text must outlive the path. A pointer, not a copy: 16 bytes more a path,
     * not 256. */
    uint16_t sel_comp, sel_sub, sel_len;
    const char *sel;
} cg_hl7_path_t;

/* Compiles text[0..len). On error returns CG_ERR_SPEC and fills *err (may be NULL) with column =
 * the 1-based position of the offending character and a message quoting it. A path with a
 * selector borrows text (see sel above). */
cg_err_t cg_hl7_path_compile(cg_hl7_path_t *p, const char *text, size_t len, cg_error_t *err);
/* Whether a and b are the same path (selectors compared by their values). */
int cg_hl7_path_equal(const cg_hl7_path_t *a, const cg_hl7_path_t *b);
/* Writes the canonical text of p ("OBX[*]-5.1") into buf. Returns buf. */
const char *cg_hl7_path_format(const cg_hl7_path_t *p, char *buf, size_t size);

/* Where a path is evaluated. cur is a cursor segment (CG_HL7_NO_SEG for none); segments are looked
 * up in [begin, end). A path without a segment index resolves to the cursor when the names match
 * ("OBX-5" for this OBX), else to the nearest segment of that name before the cursor (the enclosing
 * OBR, the PID), else to the first one in the range. SEG[n] and SEG[*] count within the range. */
typedef struct cg_hl7_scope {
    uint32_t cur, begin, end;
} cg_hl7_scope_t;

cg_hl7_scope_t cg_hl7_scope_message(const cg_hl7_msg_t *m);
cg_hl7_scope_t cg_hl7_scope_at(const cg_hl7_msg_t *m, uint32_t seg);

/* One value the path selected. Positions are 1-based HL7 numbers (0 above the path's depth). */
typedef struct cg_hl7_match {
    uint32_t seg; /* 0-based segment index: a cursor for relative evaluation */
    uint32_t field, rep, comp, sub;
    cg_slice_t raw; /* raw bytes; decode with cg_hl7_decode (or _noescape when literal) */
    int literal;    /* MSH-1 / MSH-2: not escaped text */
} cg_hl7_match_t;

/* Iterates the matches of a path: begin, then next until it returns 0. Allocation-free. */
typedef struct cg_hl7_iter {
    const cg_hl7_msg_t *m;
    const cg_hl7_path_t *p;
    cg_hl7_scope_t scope;
    uint32_t seg;  /* current segment, CG_HL7_NO_SEG when done */
    uint32_t rep;  /* next repetition to try (for [*]) */
    int seg_count; /* occurrences seen (for SEG[n]) */
    int started;
} cg_hl7_iter_t;

void cg_hl7_path_begin(cg_hl7_iter_t *it, const cg_hl7_msg_t *m, const cg_hl7_path_t *p,
                       cg_hl7_scope_t scope);
int cg_hl7_path_next(cg_hl7_iter_t *it, cg_hl7_match_t *out);

/* First match of p in scope; 0 when none. */
int cg_hl7_path_first(const cg_hl7_msg_t *m, const cg_hl7_path_t *p, cg_hl7_scope_t scope,
                      cg_hl7_match_t *out);
/* The same in two steps for a path that reads one repetition of one segment (a field, no [*],
 * no selector: cg_hl7_path_one): the segment it reads in scope (CG_HL7_NO_SEG: none), then its
 * value there (0: none). A spec engine can then keep values by segment: an OBR field read from
 * each of the order's OBX is one segment's value. */
static inline int cg_hl7_path_one(const cg_hl7_path_t *p)
{
    return p->seg_index != CG_HL7_ALL && p->rep != CG_HL7_ALL && p->field != 0;
}
uint32_t cg_hl7_path_seg(const cg_hl7_msg_t *m, const cg_hl7_path_t *p, cg_hl7_scope_t scope);
int cg_hl7_path_read(const cg_hl7_msg_t *m, const cg_hl7_path_t *p, uint32_t seg,
                     cg_hl7_match_t *out);
/* cg_hl7_path_read's value alone, for a reader that needs no match record: 0 when there is none
 * (*raw then empty), 1 for a value, 2 for a literal one (MSH-1, MSH-2: decode without escapes). */
int cg_hl7_path_raw(const cg_hl7_msg_t *m, const cg_hl7_path_t *p, uint32_t seg, cg_slice_t *raw);
/* Appends every match's decoded value to out, separated by sep (e.g. '~'); *count (may be NULL)
 * gets the number of matches. */
cg_err_t cg_hl7_path_get(cg_hl7_msg_t *m, const cg_hl7_path_t *p, cg_hl7_scope_t scope, char sep,
                         cg_buf_t *out, size_t *count, cg_error_t *err);

#endif
