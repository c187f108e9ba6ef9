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

/* A located error, for specs and config: file:line:column plus message (like json_error_t). */
typedef struct cg_error {
    cg_err_t code;
    char file[256];
    int line;   /* 1-based; 0 when unknown */
    int column; /* 1-based; 0 when unknown */
    char text[512];
} cg_error_t;

/* Fill *e (which may be NULL) and return code. Formats like printf. */
cg_err_t cg_error_set(cg_error_t *e, cg_err_t code, const char *file, int line, int column,
                      const char *fmt, ...) __attribute__((format(printf, 6, 7)));

/* Where e is: "FILE:LINE:COLUMN", "FILE" when no position is known, "" without a file. */
const char *cg_error_where(const cg_error_t *e, char *buf, size_t size);
/* Formats e as "FILE:LINE:COLUMN: TEXT", or "FILE: TEXT" when no position is known, or "TEXT"
 * without a file: the one place a located error is written out. Returns buf. */
const char *cg_error_format(const cg_error_t *e, char *buf, size_t size);

#endif
