/* err.c - status code names, texts and classes (see cg_err.h). */
#include "cg_err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const struct {
    const char *name;
    const char *text;
    cg_err_class_t cls;
} cg_err_table[CG_ERR__COUNT] = {
    [CG_OK] = {"OK", "success", CG_ERR_CLASS_NONE},
    [CG_ERR_NOMEM] = {"NOMEM", "out of memory", CG_ERR_CLASS_FATAL},
    [CG_ERR_INVALID_ARG] = {"INVALID_ARG", "invalid argument", CG_ERR_CLASS_FATAL},
    [CG_ERR_IO] = {"IO", "input/output error", CG_ERR_CLASS_FATAL},
    [CG_ERR_CONFIG] = {"CONFIG", "invalid configuration", CG_ERR_CLASS_FATAL},
    [CG_ERR_SPEC] = {"SPEC", "mapping spec does not compile", CG_ERR_CLASS_FATAL},
    [CG_ERR_NOT_HL7] = {"NOT_HL7", "not an HL7 v2 message", CG_ERR_CLASS_DEADLETTER},
    [CG_ERR_HL7_SYNTAX] = {"HL7_SYNTAX", "malformed HL7 v2 message", CG_ERR_CLASS_DEADLETTER},
    [CG_ERR_HL7_LIMIT] = {"HL7_LIMIT", "HL7 v2 message exceeds a limit", CG_ERR_CLASS_DEADLETTER},
    [CG_ERR_CHARSET] = {"CHARSET", "invalid bytes for the declared character set",
                        CG_ERR_CLASS_DEADLETTER},
    [CG_ERR_XML] = {"XML", "malformed or refused XML document", CG_ERR_CLASS_DEADLETTER},
    [CG_ERR_MAP] = {"MAP", "message could not be mapped", CG_ERR_CLASS_DEADLETTER},
    [CG_ERR_REQUIRED] = {"REQUIRED", "a required column could not be filled",
                         CG_ERR_CLASS_DEADLETTER},
    [CG_ERR_KAFKA] = {"KAFKA", "Kafka client error", CG_ERR_CLASS_FATAL},
    [CG_ERR_KAFKA_RETRY] = {"KAFKA_RETRY", "transient Kafka error", CG_ERR_CLASS_RETRY},
    /* the message's own fault, or too big for this machine: either way not a reason to stop
     * the gateway, which would meet the same message again on every restart */
    [CG_ERR_MAP_LIMIT] = {"MAP_LIMIT", "message exceeds the mapping's time or memory budget",
                          CG_ERR_CLASS_DEADLETTER},
};

const char *cg_err_name(cg_err_t err)
{
    if ((unsigned)err >= CG_ERR__COUNT)
        return "UNKNOWN";
    return cg_err_table[err].name;
}

const char *cg_err2str(cg_err_t err)
{
    if ((unsigned)err >= CG_ERR__COUNT)
        return "unknown error";
    return cg_err_table[err].text;
}

cg_err_class_t cg_err_classify(cg_err_t err)
{
    if ((unsigned)err >= CG_ERR__COUNT)
        return CG_ERR_CLASS_FATAL;
    return cg_err_table[err].cls;
}

const char *cg_err_class_name(cg_err_class_t cls)
{
    switch (cls) {
    case CG_ERR_CLASS_NONE:
        return "none";
    case CG_ERR_CLASS_RETRY:
        return "retry";
    case CG_ERR_CLASS_DEADLETTER:
        return "dead-letter";
    case CG_ERR_CLASS_FATAL:
        return "fatal";
    }
    return "fatal";
}

cg_err_t cg_error_set(cg_error_t *e, cg_err_t code, const char *file, int line, int column,
                      const char *fmt, ...)
{
    if (!e)
        return code;
    memset(e, 0, sizeof(*e));
    e->code = code;
    e->at = file && file[0] ? CG_ERROR_AT_FILE : CG_ERROR_AT_NONE;
    snprintf(e->file, sizeof(e->file), "%s", file ? file : "");
    e->line = line;
    e->column = column;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->text, sizeof(e->text), fmt, ap);
    va_end(ap);
    return code;
}

const char *cg_error_where(const cg_error_t *e, char *buf, size_t size)
{
    if (!size)
        return buf;
    buf[0] = '\0';
    size_t n = 0;
#define PUT(...)                                                                                   \
    do {                                                                                           \
        if (n < size) {                                                                            \
            int w_ = snprintf(buf + n, size - n, __VA_ARGS__);                                     \
            if (w_ > 0)                                                                            \
                n += (size_t)w_;                                                                   \
        }                                                                                          \
    } while (0)
    switch (e->at) {
    case CG_ERROR_AT_FILE:
        if (e->line)
            PUT("%s:%d:%d", e->file, e->line, e->column);
        else
            PUT("%s", e->file);
        break;
    case CG_ERROR_AT_HL7:
        if (e->segment)
            PUT("segment %zu%s%s, ", e->segment, e->seg_name[0] ? " " : "", e->seg_name);
        if (e->field)
            PUT("field %d, ", e->field);
        PUT("byte %zu", e->offset);
        break;
    case CG_ERROR_AT_XML:
        if (e->line > 0 && e->column > 0)
            PUT("line %d, column %d", e->line, e->column);
        else if (e->line > 0)
            PUT("line %d", e->line);
        break;
    case CG_ERROR_AT_NONE:
        break;
    }
#undef PUT
    return buf;
}

const char *cg_error_format_as(const cg_error_t *e, const char *label, char *buf, size_t size)
{
    char where[sizeof(e->file) + 64];
    cg_error_where(e, where, sizeof(where));
    if (size)
        snprintf(buf, size, "%s%s%s%s%s%s%s%s", where, where[0] ? ": " : "", label ? label : "",
                 label ? ": " : "", e->rule[0] ? "rule " : "", e->rule, e->rule[0] ? ": " : "",
                 e->text);
    return buf;
}

const char *cg_error_format(const cg_error_t *e, char *buf, size_t size)
{
    return cg_error_format_as(e, NULL, buf, size);
}
