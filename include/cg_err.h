/* cg_err.h - the project-wide status codes and their classification.
 *
 * Every function that can fail returns a cg_err_t (CG_OK is 0). Each code is classified: a
 * retriable error is tried again (broker away), a dead-letter error sends the input to the
 * dead-letter topic (the message is bad), a fatal error stops the process (bad config).
 */
#ifndef CG_ERR_H
#define CG_ERR_H

#include <stddef.h>

typedef enum cg_err {
    CG_OK = 0,
    CG_ERR_NOMEM,       /* allocation failed */
    CG_ERR_INVALID_ARG, /* caller passed something invalid */
    CG_ERR_IO,          /* file could not be read or written */
    CG_ERR_CONFIG,      /* configuration is invalid */
    CG_ERR_SPEC,        /* a mapping spec does not compile */
    CG_ERR_NOT_HL7,     /* input is not an HL7 v2 message (no MSH segment) */
    CG_ERR_HL7_SYNTAX,  /* HL7 v2 message is malformed */
    CG_ERR_HL7_LIMIT,   /* HL7 v2 message exceeds a configured limit */
    CG_ERR_CHARSET,     /* bytes invalid in the declared character set */
    CG_ERR_XML,         /* XML document is malformed or refused */
    CG_ERR_MAP,         /* message decoded but could not be mapped */
    CG_ERR_REQUIRED,    /* a required output column could not be filled */
    CG_ERR_KAFKA,       /* Kafka client error (text from librdkafka) */
    CG_ERR_KAFKA_RETRY, /* transient Kafka error, worth retrying */
    CG_ERR_MAP_LIMIT,   /* one message's mapping ran past its time or memory budget */
    CG_ERR__COUNT
} cg_err_t;

typedef enum cg_err_class {
    CG_ERR_CLASS_NONE = 0,   /* CG_OK */
    CG_ERR_CLASS_RETRY,      /* transient: try again later */
    CG_ERR_CLASS_DEADLETTER, /* the input is bad: dead-letter it and go on */
    CG_ERR_CLASS_FATAL,      /* the process cannot continue */
} cg_err_class_t;

/* Short stable name such as "NOT_HL7"; used in dead-letter headers and metrics labels. */
const char *cg_err_name(cg_err_t err);
/* Human-readable description. */
const char *cg_err2str(cg_err_t err);
cg_err_class_t cg_err_classify(cg_err_t err);
/* "retry", "dead-letter" or "fatal". */
const char *cg_err_class_name(cg_err_class_t cls);

/* Where an error is, as far as it is known. */
typedef enum cg_error_at {
    CG_ERROR_AT_NONE = 0, /* nowhere in particular (a missing key file, out of memory) */
    CG_ERROR_AT_FILE,     /* file:line:column of a config or spec file */
    CG_ERROR_AT_HL7,      /* an HL7 v2 input: segment, field, byte offset */
    CG_ERROR_AT_XML,      /* an XML document: line and column */
} cg_error_at_t;

/* The one error carrier, for config and spec files (like jansson's json_error_t), the decoders
 * and the mapping engine: what went wrong and where, every field filled as far as it is known.
 * Written out by cg_error_format() alone. */
typedef struct cg_error {
    cg_err_t code;
    cg_error_at_t at;
    const char *stage; /* a message's: "decode", "select" or "map"; NULL otherwise */
    char file[256];    /* CG_ERROR_AT_FILE: the config or spec file */
    int line;          /* AT_FILE, AT_XML: 1-based; 0 when unknown */
    int column;        /* AT_FILE, AT_XML: 1-based; 0 when unknown */
    size_t message;    /* AT_HL7: 1-based message number in the input; 0 when unknown */
    size_t segment;    /* AT_HL7: 1-based segment index in the message; 0 when unknown */
    char seg_name[4];  /* AT_HL7: "" when unknown */
    int field;         /* AT_HL7: field number; 0 when unknown */
    size_t offset;     /* AT_HL7: byte offset in the whole input */
    /* mapping: the spec (and its version), rule and output column in effect; "" when none */
    char spec[64];
    int spec_version;
    char rule[64];
    char out_column[64];
    char text[1024]; /* what went wrong, without the place (a column list fits) */
} cg_error_t;

/* Fill *e (which may be NULL) as a file error (CG_ERROR_AT_FILE; CG_ERROR_AT_NONE when file is
 * NULL or "") and return code. Formats like printf. */
cg_err_t cg_error_set(cg_error_t *e, cg_err_t code, const char *file, int line, int column,
                      const char *fmt, ...) __attribute__((format(printf, 6, 7)));

/* Where e is: "FILE:LINE:COLUMN" or "FILE" (AT_FILE), "segment 3 PID, field 5, byte 120" (AT_HL7,
 * the parts known), "line 4, column 7" (AT_XML), or "". Returns buf. */
const char *cg_error_where(const cg_error_t *e, char *buf, size_t size);
/* The one place an error is written out: "WHERE: rule R: TEXT", each part when known (no rule
 * for config and spec errors, no place when none is known). Callers put what only they know
 * (the input's name, the message number, the stage) before it. Returns buf. */
const char *cg_error_format(const cg_error_t *e, char *buf, size_t size);
/* The same with a label after the place, as compilers print: "WHERE: error: rule R: TEXT" (label
 * "error", "warning"; NULL: none, as cg_error_format). Returns buf. */
const char *cg_error_format_as(const cg_error_t *e, const char *label, char *buf, size_t size);
/* A buffer cg_error_format_as never cuts (place, a short label, rule and text at their most). */
#define CG_ERROR_FORMAT_SIZE (sizeof(((cg_error_t *)0)->file) + 64 + 32 + 72 + 1024)

#endif
