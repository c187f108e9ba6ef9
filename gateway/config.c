/* config.c - load and check the gateway config against its table of settings (cg_config.h). */
#include "cg_config.h"

#include "cg_buf.h"
#include "cg_log.h"
#include "cg_metrics.h"

#define CG_CONFIG_MAX_BYTES (16 * 1024 * 1024)

#include <iconv.h>
#include <jansson.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* clang-format off */
const cg_config_prop_t cg_config_props[] = {
    {"group_id", CG_CONFIG_STRING, "cohortgate", NULL, 0, 0,
     "Kafka consumer group of the gateway; instances with the same group share the input partitions."},
    {"inputs", CG_CONFIG_ARRAY, NULL, NULL, 0, 0,
     "Raw topics to consume, at least one."},
    {"inputs[].topic", CG_CONFIG_STRING, NULL, NULL, 0, 0,
     "Name of a raw topic that carries hospital messages, one message per Kafka record."},
    {"inputs[].format", CG_CONFIG_ENUM, "hl7v2", "hl7v2|xml|auto", 0, 0,
     "What the topic carries: HL7 v2 (ER7) messages, XML documents (CDA / C-CDA), or auto: each "
     "record by its first bytes, for topics that mix both."},
    {"output", CG_CONFIG_OBJECT, NULL, NULL, 0, 0, "Where records go."},
    {"output.topic", CG_CONFIG_STRING, "cohortgate.records", NULL, 0, 0,
     "Topic for records in no cohort (all records when no cohorts are configured)."},
    {"output.dead_letter_topic", CG_CONFIG_STRING, "cohortgate.dead-letter", NULL, 0, 0,
     "Topic for input that could not be processed, with its original bytes and error headers."},
    {"delivery", CG_CONFIG_OBJECT, NULL, NULL, 0, 0, "Delivery semantics."},
    {"delivery.semantics", CG_CONFIG_ENUM, "at-least-once", "at-least-once|exactly-once", 0, 0,
     "at-least-once: an input offset is committed only after every record it caused is delivered "
     "(a crash replays the uncommitted inputs, so consumers may see a record twice). "
     "exactly-once: records and input offsets are committed together in Kafka transactions; a "
     "consumer with isolation.level=read_committed sees each record once."},
    {"delivery.commit_interval_ms", CG_CONFIG_INT, "500", NULL, 10, 600000,
     "How often delivered input offsets are committed (at-least-once), or how long a transaction "
     "stays open at most before it is committed (exactly-once; read_committed consumers see its "
     "records only then)."},
    {"delivery.transaction_max_messages", CG_CONFIG_INT, "10000", NULL, 1, 1000000,
     "exactly-once: input messages in one transaction at most; it is committed when it holds this "
     "many or after commit_interval_ms, whichever comes first."},
    {"delivery.transactional_id", CG_CONFIG_STRING, "", NULL, 0, 0,
     "exactly-once: the producer's transactional.id. It must differ between instances that run at "
     "the same time (a second instance with the same id fences the first, which stops) and stay "
     "the same when an instance restarts, so that the restart aborts the transaction a crash left "
     "open at once instead of after transaction.timeout.ms. Default: the group_id, a dot and the "
     "host name; set it when two instances share a host."},
    {"delivery.max_in_flight", CG_CONFIG_INT, "20000", NULL, 1, 10000000,
     "Input messages consumed but not yet fully delivered before consumption pauses."},
    {"delivery.pause_after_ms", CG_CONFIG_INT, "1000", NULL, 0, 600000,
     "When the output side holds consumption back (a full producer queue, max_in_flight inputs "
     "in flight) this long, the assigned partitions are paused: librdkafka stops fetching and "
     "frees what it prefetched, while the consumer keeps serving rebalances. Shorter waits only "
     "stop taking messages (a resume costs a refetch)."},
    {"delivery.drain_timeout_ms", CG_CONFIG_INT, "30000", NULL, 0, 3600000,
     "On SIGTERM or SIGINT, how long in-flight records may take to be delivered and their inputs "
     "committed before the gateway gives up and exits non-zero; what was not committed is consumed "
     "again on restart."},
    {"workers", CG_CONFIG_INT, "1", NULL, 1, 32,
     "Threads that decode and map messages. 1 maps on the consumer thread; N spreads the input "
     "partitions over N threads, each partition always on the same one, so per-partition order "
     "holds. Records are produced and offsets committed by the consumer thread."},
    {"log", CG_CONFIG_OBJECT, NULL, NULL, 0, 0, "Logging."},
    {"log.level", CG_CONFIG_ENUM, "info", "debug|info|warn|error", 0, 0,
     "Least severe level written to stderr (one JSON object a line)."},
    {"metrics", CG_CONFIG_OBJECT, NULL, NULL, 0, 0,
     "Prometheus metrics (GET /metrics) and a health check (GET /healthz) over HTTP; see "
     "\"Metrics and health\" below."},
    {"metrics.listen", CG_CONFIG_STRING, "127.0.0.1:9464", NULL, 0, 0,
     "Address of the HTTP endpoint: HOST:PORT or [IPV6]:PORT (port 0 picks a free one); \"off\" "
     "for none. Loopback by default: 0.0.0.0:9464 exposes it to the network, without "
     "authentication. If it cannot be bound, the gateway logs metrics.failed and runs without it."},
    {"metrics.health_grace_ms", CG_CONFIG_INT, "60000", NULL, 0, 86400000,
     "How long /healthz answers 200 without any input partition assigned, from the start and from "
     "the moment the last partition was revoked; then 503."},
    {"metrics.max_series", CG_CONFIG_INT, "1000", NULL, 10, 1000000,
     "Label sets (series) one metric may hold; beyond it, updates count in its `__overflow__` "
     "series, so that many topic or spec names cannot grow memory without end."},
    {"kafka", CG_CONFIG_MAP, NULL, NULL, 0, 0,
     "librdkafka properties passed unchanged to the consumer and the producer, e.g. "
     "bootstrap.servers, security.protocol, sasl.*, ssl.*."},
    {"mapping", CG_CONFIG_OBJECT, NULL, NULL, 0, 0, "How messages become records."},
    {"mapping.specs", CG_CONFIG_STRING, NULL, NULL, 0, 0,
     "Mapping spec file, or folder of *.json specs (see specs/README.md); relative to the config "
     "file. Every spec whose input matches a message applies to it; a message no spec takes is "
     "dead-lettered."},
    {"mapping.vocab", CG_CONFIG_STRING, "", NULL, 0, 0,
     "Folder of vocabulary tables (*.csv); default: the vocab/ folder beside the specs."},
    {"mapping.athena", CG_CONFIG_STRING, "", NULL, 0, 0,
     "Folder with OHDSI Athena's CONCEPT.csv and CONCEPT_RELATIONSHIP.csv, loaded after the "
     "tables; empty for none."},
    {"mapping.source_utc_offset", CG_CONFIG_STRING, "", NULL, 0, 0,
     "UTC offset (+HH:MM) written for HL7 times that carry none; empty writes them without one."},
    {"cohorts", CG_CONFIG_OBJECT, NULL, NULL, 0, 0,
     "Specialty-disease cohorts: which records go to which cohort topics."},
    {"cohorts.path", CG_CONFIG_STRING, "", NULL, 0, 0,
     "Cohort file, or folder of *.json cohort files (see specs/cohorts/README.md); relative to "
     "the config file. Empty: no cohorts, every record goes to output.topic."},
    {"cohorts.topic", CG_CONFIG_STRING, "cohort.{cohort}.{table}", NULL, 0, 0,
     "Topic of a record in a cohort: {cohort} and {table} are replaced; a record in several "
     "cohorts goes to each one's topic."},
    {"hl7", CG_CONFIG_OBJECT, NULL, NULL, 0, 0, "HL7 v2 decoding."},
    {"hl7.default_charset", CG_CONFIG_STRING, "UNICODE UTF-8", NULL, 0, 0,
     "Character set of messages whose MSH-18 is empty: an HL7 table 0211 value (\"8859/1\", "
     "\"GB 18030-2000\") or an iconv name (\"GBK\"). Chinese feeds often send GBK undeclared."},
    {"hl7.strict_segments", CG_CONFIG_BOOL, "false", NULL, 0, 0,
     "Refuse a line that is not a segment; by default it continues the previous segment's last "
     "value (editors wrap long lines)."},
    {"hl7.max_message_bytes", CG_CONFIG_INT, "16777216", NULL, 64, 2147483647,
     "Largest message accepted."},
    {"hl7.max_segments", CG_CONFIG_INT, "100000", NULL, 1, 100000000,
     "Most segments in one message."},
    {"hl7.max_fields", CG_CONFIG_INT, "1000", NULL, 1, 1000000, "Most fields in one segment."},
    {"hl7.max_reps", CG_CONFIG_INT, "10000", NULL, 1, 1000000,
     "Most repetitions of one field."},
    {"pseudonym", CG_CONFIG_OBJECT, NULL, NULL, 0, 0,
     "The key of the HMAC that turns patient identifiers into person_id; it never appears in "
     "output, logs or dead letters."},
    {"pseudonym.key_file", CG_CONFIG_STRING, "", NULL, 0, 0,
     "File holding the key (at least 32 bytes; one trailing newline is ignored); relative to the "
     "config file. Give this or key_env."},
    {"pseudonym.key_env", CG_CONFIG_STRING, "COHORTGATE_PSEUDONYM_KEY", NULL, 0, 0,
     "Environment variable holding the key, used when key_file is empty."},
    {"pseudonym.date_shift_days", CG_CONFIG_INT, "0", NULL, 0, 3650,
     "Shift each patient's dates by a keyed offset in [-N, N] days; 0 keeps dates."},
    {"embedded_broker", CG_CONFIG_OBJECT, NULL, NULL, 0, 0,
     "An in-process Kafka broker (librdkafka's mock cluster) for demos; never for production."},
    {"embedded_broker.enabled", CG_CONFIG_BOOL, "false", NULL, 0, 0,
     "Start the embedded broker and point the gateway at it, ignoring kafka.bootstrap.servers."},
    {"embedded_broker.partitions", CG_CONFIG_INT, "3", NULL, 1, 64,
     "Partitions of each topic the embedded broker creates."},
    {"embedded_broker.preload", CG_CONFIG_ARRAY, NULL, NULL, 0, 0,
     "Files produced to a topic of the embedded broker before the gateway starts, one record a file."},
    {"embedded_broker.preload[].topic", CG_CONFIG_STRING, NULL, NULL, 0, 0, "Topic to fill."},
    {"embedded_broker.preload[].dir", CG_CONFIG_STRING, NULL, NULL, 0, 0,
     "Folder whose files (sorted by name) are produced; relative to the config file."},
    {NULL, 0, NULL, NULL, 0, 0, NULL},
};
/* clang-format on */

static const cg_config_prop_t *prop_find(const char *name)
{
    for (const cg_config_prop_t *p = cg_config_props; p->name; p++)
        if (!strcmp(p->name, name))
            return p;
    return NULL;
}

/* Skips one JSON value starting at p (after white space); returns the position after it. */
static const char *skip_ws(const char *p)
{
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
        p++;
    return p;
}

static const char *skip_value(const char *p)
{
    int depth = 0;
    p = skip_ws(p);
    do {
        if (*p == '"') {
            for (p++; *p && *p != '"'; p++)
                if (*p == '\\' && p[1])
                    p++;
            if (*p)
                p++;
        } else if (*p == '{' || *p == '[') {
            depth++;
            p++;
        } else if (*p == '}' || *p == ']') {
            depth--;
            p++;
        } else if (*p) {
            p++;
            if (depth == 0)
                while (*p && !strchr(",}] \t\r\n", *p))
                    p++;
        }
    } while (*p && depth > 0);
    return p;
}

/* Finds where a path is written in the source text, for error positions: jansson keeps no
 * positions for keys. A component is a key (keys[d]) or, where keys[d] is NULL, the index[d]-th
 * element of the array just found. */
static void locate(const char *text, const char *const *keys, const int *index, int depth,
                   int *line, int *col)
{
    const char *pos = text;
    for (int d = 0; d < depth && pos; d++) {
        if (!keys[d]) {
            const char *q = strchr(pos, '[');
            if (!q)
                break;
            q = skip_ws(q + 1);
            for (int i = 0; i < index[d] && *q; i++) {
                q = skip_ws(skip_value(q));
                if (*q == ',')
                    q = skip_ws(q + 1);
            }
            pos = q;
            continue;
        }
        char pat[260];
        snprintf(pat, sizeof(pat), "\"%s\"", keys[d]);
        const char *found = NULL;
        for (const char *s = pos; (s = strstr(s, pat)) != NULL; s += strlen(pat)) {
            if (*skip_ws(s + strlen(pat)) == ':') {
                found = s;
                break;
            }
        }
        if (!found)
            break;
        pos = found;
    }
    *line = 1;
    *col = 1;
    for (const char *s = text; s < pos; s++) {
        if (*s == '\n') {
            (*line)++;
            *col = 1;
        } else {
            (*col)++;
        }
    }
}

typedef struct walk {
    const char *text;
    const char *file;
    cg_error_t *err;
    const char *keys[16];
    int index[16];
    int depth;
} walk_t;

static cg_err_t walk_fail(walk_t *w, const char *fmt, const char *a, const char *b)
{
    int line, col;
    locate(w->text, w->keys, w->index, w->depth, &line, &col);
    char msg[400];
    snprintf(msg, sizeof(msg), fmt, a, b);
    return cg_error_set(w->err, CG_ERR_CONFIG, w->file, line, col, "%s", msg);
}

static cg_err_t walk_object(walk_t *w, json_t *obj, const char *prefix);

static cg_err_t check_value(walk_t *w, const cg_config_prop_t *p, json_t *v, const char *name)
{
    switch (p->type) {
    case CG_CONFIG_STRING:
        if (!json_is_string(v))
            return walk_fail(w, "'%s' must be a string%s", name, "");
        if (json_string_length(v) == 0)
            return walk_fail(w, "'%s' must not be empty%s", name, "");
        return CG_OK;
    case CG_CONFIG_ENUM: {
        if (!json_is_string(v))
            return walk_fail(w, "'%s' must be one of %s", name, p->enums);
        const char *s = json_string_value(v);
        size_t n = strlen(s);
        for (const char *e = p->enums; *e;) {
            const char *bar = strchr(e, '|');
            size_t l = bar ? (size_t)(bar - e) : strlen(e);
            if (l == n && !strncmp(e, s, n))
                return CG_OK;
            if (!bar)
                break;
            e = bar + 1;
        }
        return walk_fail(w, "'%s' must be one of %s", name, p->enums);
    }
    case CG_CONFIG_INT: {
        if (!json_is_integer(v))
            return walk_fail(w, "'%s' must be an integer%s", name, "");
        json_int_t i = json_integer_value(v);
        if (i < p->min || i > p->max) {
            char range[64];
            snprintf(range, sizeof(range), " from %ld to %ld", p->min, p->max);
            return walk_fail(w, "'%s' must be%s", name, range);
        }
        return CG_OK;
    }
    case CG_CONFIG_BOOL:
        if (!json_is_boolean(v))
            return walk_fail(w, "'%s' must be true or false%s", name, "");
        return CG_OK;
    case CG_CONFIG_OBJECT:
        if (!json_is_object(v))
            return walk_fail(w, "'%s' must be an object%s", name, "");
        return walk_object(w, v, name);
    case CG_CONFIG_MAP: {
        if (!json_is_object(v))
            return walk_fail(w, "'%s' must be an object of librdkafka properties%s", name, "");
        const char *k;
        json_t *x;
        json_object_foreach(v, k, x)
        {
            if (!json_is_string(x) && !json_is_integer(x) && !json_is_boolean(x)) {
                w->keys[w->depth] = k;
                w->index[w->depth++] = 0;
                cg_err_t rc = walk_fail(w, "'%s.%s' must be a string, integer or boolean", name, k);
                w->depth--;
                return rc;
            }
        }
        return CG_OK;
    }
    case CG_CONFIG_ARRAY: {
        if (!json_is_array(v))
            return walk_fail(w, "'%s' must be an array of objects%s", name, "");
        size_t i;
        json_t *el;
        char elem_prefix[128];
        snprintf(elem_prefix, sizeof(elem_prefix), "%s[]", name);
        json_array_foreach(v, i, el)
        {
            if (!json_is_object(el))
                return walk_fail(w, "each element of '%s' must be an object%s", name, "");
            if (w->depth >= 15)
                return walk_fail(w, "'%s' is nested too deeply%s", name, "");
            w->keys[w->depth] = NULL; /* the i-th element */
            w->index[w->depth++] = (int)i;
            cg_err_t rc = walk_object(w, el, elem_prefix);
            /* required fields of the element */
            for (const cg_config_prop_t *q = cg_config_props; !rc && q->name; q++) {
                size_t pl = strlen(elem_prefix);
                if (!strncmp(q->name, elem_prefix, pl) && q->name[pl] == '.' && !q->def &&
                    !json_object_get(el, q->name + pl + 1))
                    rc = walk_fail(w, "an element of '%s' lacks the required '%s'", name,
                                   q->name + pl + 1);
            }
            w->depth--;
            if (rc)
                return rc;
        }
        return CG_OK;
    }
    }
    return CG_OK;
}

static cg_err_t walk_object(walk_t *w, json_t *obj, const char *prefix)
{
    const char *k;
    json_t *v;
    json_object_foreach(obj, k, v)
    {
        char name[256];
        if (prefix)
            snprintf(name, sizeof(name), "%s.%s", prefix, k);
        else
            snprintf(name, sizeof(name), "%s", k);
        if (w->depth >= 15)
            return walk_fail(w, "'%s' is nested too deeply%s", name, "");
        w->keys[w->depth] = k;
        w->index[w->depth++] = 0;
        const cg_config_prop_t *p = prop_find(name);
        /* a user-facing name drops the [] of array elements */
        cg_err_t rc = p ? check_value(w, p, v, name)
                        : walk_fail(w, "unknown setting '%s'%s (see config/README.md)", name, "");
        w->depth--;
        if (rc)
            return rc;
    }
    return CG_OK;
}

static const char *get_str(json_t *root, const char *a, const char *b, const char *name)
{
    json_t *o = a ? json_object_get(root, a) : root;
    json_t *v = o ? json_object_get(o, b) : NULL;
    if (json_is_string(v))
        return json_string_value(v);
    return prop_find(name)->def;
}

static long get_int(json_t *root, const char *a, const char *b, const char *name)
{
    json_t *o = a ? json_object_get(root, a) : root;
    json_t *v = o ? json_object_get(o, b) : NULL;
    if (json_is_integer(v))
        return (long)json_integer_value(v);
    return strtol(prop_find(name)->def, NULL, 10);
}

static char *xstrdup(const char *s)
{
    return s ? strdup(s) : NULL;
}

static char *resolve(const char *base, const char *p)
{
    if (p[0] == '/' || !base)
        return strdup(p);
    size_t n = strlen(base) + strlen(p) + 2;
    char *r = malloc(n);
    if (r)
        snprintf(r, n, "%s/%s", base, p);
    return r;
}

static cg_config_t *build(json_t *root, const char *name, const char *base_dir)
{
    cg_config_t *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->path = strdup(name);
    c->base_dir = xstrdup(base_dir);
    c->group_id = xstrdup(get_str(root, NULL, "group_id", "group_id"));
    c->output_topic = xstrdup(get_str(root, "output", "topic", "output.topic"));
    c->dead_letter_topic =
        xstrdup(get_str(root, "output", "dead_letter_topic", "output.dead_letter_topic"));
    c->commit_interval_ms =
        (int)get_int(root, "delivery", "commit_interval_ms", "delivery.commit_interval_ms");
    c->max_in_flight = (int)get_int(root, "delivery", "max_in_flight", "delivery.max_in_flight");
    c->semantics =
        !strcmp(get_str(root, "delivery", "semantics", "delivery.semantics"), "exactly-once")
            ? CG_DELIVERY_EXACTLY_ONCE
            : CG_DELIVERY_AT_LEAST_ONCE;
    c->transaction_max_messages = (int)get_int(root, "delivery", "transaction_max_messages",
                                               "delivery.transaction_max_messages");
    const char *tid = get_str(root, "delivery", "transactional_id", "delivery.transactional_id");
    c->transactional_id = *tid ? strdup(tid) : NULL;
    c->drain_timeout_ms =
        (int)get_int(root, "delivery", "drain_timeout_ms", "delivery.drain_timeout_ms");
    c->pause_after_ms = (int)get_int(root, "delivery", "pause_after_ms", "delivery.pause_after_ms");
    c->workers = (int)get_int(root, NULL, "workers", "workers");
    c->log_level = cg_log_level_parse(get_str(root, "log", "level", "log.level"));
    c->metrics_listen = xstrdup(get_str(root, "metrics", "listen", "metrics.listen"));
    c->metrics_health_grace_ms =
        (int)get_int(root, "metrics", "health_grace_ms", "metrics.health_grace_ms");
    c->metrics_max_series = (int)get_int(root, "metrics", "max_series", "metrics.max_series");

    json_t *inputs = json_object_get(root, "inputs");
    c->n_inputs = json_array_size(inputs);
    c->inputs = calloc(c->n_inputs ? c->n_inputs : 1, sizeof(*c->inputs));
    for (size_t i = 0; i < c->n_inputs; i++) {
        json_t *el = json_array_get(inputs, i);
        c->inputs[i].topic = xstrdup(json_string_value(json_object_get(el, "topic")));
        const char *fmt = get_str(el, NULL, "format", "inputs[].format");
        c->inputs[i].format = !strcmp(fmt, "xml")    ? CG_INPUT_XML
                              : !strcmp(fmt, "auto") ? CG_INPUT_AUTO
                                                     : CG_INPUT_HL7V2;
    }

    json_t *kafka = json_object_get(root, "kafka");
    c->n_kafka = json_object_size(kafka);
    c->kafka = calloc(c->n_kafka ? c->n_kafka : 1, sizeof(*c->kafka));
    size_t i = 0;
    const char *k;
    json_t *v;
    json_object_foreach(kafka, k, v)
    {
        char num[32];
        const char *s = num;
        if (json_is_string(v))
            s = json_string_value(v);
        else if (json_is_integer(v))
            snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        else
            s = json_is_true(v) ? "true" : "false";
        c->kafka[i].key = strdup(k);
        c->kafka[i].value = strdup(s);
        i++;
    }

    const char *specs = get_str(root, "mapping", "specs", "mapping.specs");
    c->specs = resolve(base_dir, specs);
    const char *sv = get_str(root, "mapping", "vocab", "mapping.vocab");
    c->vocab = *sv ? resolve(base_dir, sv) : NULL;
    sv = get_str(root, "mapping", "athena", "mapping.athena");
    c->athena = *sv ? resolve(base_dir, sv) : NULL;
    sv = get_str(root, "mapping", "source_utc_offset", "mapping.source_utc_offset");
    c->source_utc_offset = *sv ? strdup(sv) : NULL;
    sv = get_str(root, "pseudonym", "key_file", "pseudonym.key_file");
    c->key_file = *sv ? resolve(base_dir, sv) : NULL;
    c->key_env = xstrdup(get_str(root, "pseudonym", "key_env", "pseudonym.key_env"));
    c->date_shift_days =
        (int)get_int(root, "pseudonym", "date_shift_days", "pseudonym.date_shift_days");

    sv = get_str(root, "cohorts", "path", "cohorts.path");
    c->cohorts = *sv ? resolve(base_dir, sv) : NULL;
    c->cohort_topic = xstrdup(get_str(root, "cohorts", "topic", "cohorts.topic"));

    cg_hl7_options_default(&c->hl7);
    c->hl7_charset = xstrdup(get_str(root, "hl7", "default_charset", "hl7.default_charset"));
    c->hl7.default_charset = c->hl7_charset;
    c->hl7.strict_segments =
        json_is_true(json_object_get(json_object_get(root, "hl7"), "strict_segments"));
    c->hl7.max_message_bytes =
        (size_t)get_int(root, "hl7", "max_message_bytes", "hl7.max_message_bytes");
    c->hl7.max_segments = (uint32_t)get_int(root, "hl7", "max_segments", "hl7.max_segments");
    c->hl7.max_fields = (uint32_t)get_int(root, "hl7", "max_fields", "hl7.max_fields");
    c->hl7.max_reps = (uint32_t)get_int(root, "hl7", "max_reps", "hl7.max_reps");

    json_t *eb = json_object_get(root, "embedded_broker");
    c->embedded_enabled = json_is_true(json_object_get(eb, "enabled"));
    c->embedded_partitions =
        (int)get_int(root, "embedded_broker", "partitions", "embedded_broker.partitions");
    json_t *pre = json_object_get(eb, "preload");
    c->n_preload = json_array_size(pre);
    c->preload = calloc(c->n_preload ? c->n_preload : 1, sizeof(*c->preload));
    for (i = 0; i < c->n_preload; i++) {
        json_t *el = json_array_get(pre, i);
        c->preload[i].topic = xstrdup(json_string_value(json_object_get(el, "topic")));
        c->preload[i].dir = resolve(base_dir, json_string_value(json_object_get(el, "dir")));
    }
    return c;
}

cg_config_t *cg_config_load_string(const char *text, const char *name, const char *base_dir,
                                   cg_error_t *err)
{
    json_error_t jerr;
    json_t *root = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        cg_error_set(err, CG_ERR_CONFIG, name, jerr.line, jerr.column, "%s", jerr.text);
        return NULL;
    }
    walk_t w = {.text = text, .file = name, .err = err};
    if (!json_is_object(root)) {
        cg_error_set(err, CG_ERR_CONFIG, name, 1, 1, "the config must be a JSON object");
        json_decref(root);
        return NULL;
    }
    if (walk_object(&w, root, NULL) != CG_OK) {
        json_decref(root);
        return NULL;
    }
    if (json_array_size(json_object_get(root, "inputs")) == 0) {
        cg_error_set(err, CG_ERR_CONFIG, name, 1, 1,
                     "'inputs' must list at least one raw topic to consume");
        json_decref(root);
        return NULL;
    }
    json_t *mapping = json_object_get(root, "mapping");
    if (!json_object_get(mapping, "specs")) {
        cg_error_set(err, CG_ERR_CONFIG, name, 1, 1,
                     "'mapping.specs' must name the mapping specs (a file or a folder)");
        json_decref(root);
        return NULL;
    }
    const char *off = json_string_value(json_object_get(mapping, "source_utc_offset"));
    if (off && *off && (strlen(off) != 6 || (off[0] != '+' && off[0] != '-') || off[3] != ':')) {
        cg_error_set(err, CG_ERR_CONFIG, name, 1, 1,
                     "'mapping.source_utc_offset' is +HH:MM or -HH:MM, not '%s'", off);
        json_decref(root);
        return NULL;
    }
    const char *ct = json_string_value(json_object_get(json_object_get(root, "cohorts"), "topic"));
    if (ct && !strstr(ct, "{cohort}")) {
        const char *keys[] = {"cohorts", "topic"};
        int idx[] = {0, 0}, line, col;
        locate(text, keys, idx, 2, &line, &col);
        cg_error_set(err, CG_ERR_CONFIG, name, line, col,
                     "'cohorts.topic' must contain {cohort}, or every cohort shares one topic");
        json_decref(root);
        return NULL;
    }
    const char *cs =
        json_string_value(json_object_get(json_object_get(root, "hl7"), "default_charset"));
    if (cs) { /* a charset iconv cannot convert would fail every undeclared message */
        char iname[64];
        iconv_t cd = (iconv_t)-1;
        if (cg_hl7_charset_iconv_name(cs, strlen(cs), iname, sizeof(iname)))
            cd = iconv_open("UTF-8", iname);
        if (cd == (iconv_t)-1) {
            const char *keys[] = {"hl7", "default_charset"};
            int idx[] = {0, 0}, line, col;
            locate(text, keys, idx, 2, &line, &col);
            cg_error_set(err, CG_ERR_CONFIG, name, line, col,
                         "'hl7.default_charset': '%s' is not a character set iconv knows", cs);
            json_decref(root);
            return NULL;
        }
        iconv_close(cd);
    }
    const char *ml = json_string_value(json_object_get(json_object_get(root, "metrics"), "listen"));
    char mhost[256], mport[8], merr[300];
    if (ml && !cg_metrics_listen_off(ml) &&
        cg_metrics_listen_parse(ml, mhost, sizeof(mhost), mport, sizeof(mport), merr,
                                sizeof(merr))) {
        const char *keys[] = {"metrics", "listen"};
        int idx[] = {0, 0}, line, col;
        locate(text, keys, idx, 2, &line, &col);
        cg_error_set(err, CG_ERR_CONFIG, name, line, col, "'metrics.listen': %s", merr);
        json_decref(root);
        return NULL;
    }
    json_t *eb = json_object_get(root, "embedded_broker");
    json_t *kafka = json_object_get(root, "kafka");
    if (json_object_get(kafka, "transactional.id")) {
        /* it would make the at-least-once producer transactional; exactly-once sets it itself */
        const char *keys[] = {"kafka", "transactional.id"};
        int idx[] = {0, 0}, line, col;
        locate(text, keys, idx, 2, &line, &col);
        cg_error_set(err, CG_ERR_CONFIG, name, line, col,
                     "'kafka.transactional.id' is set by the gateway: use delivery.semantics "
                     "\"exactly-once\" and delivery.transactional_id");
        json_decref(root);
        return NULL;
    }
    if (!json_is_true(json_object_get(eb, "enabled")) &&
        !json_object_get(kafka, "bootstrap.servers")) {
        cg_error_set(err, CG_ERR_CONFIG, name, 1, 1,
                     "'kafka.bootstrap.servers' is required unless embedded_broker.enabled is "
                     "true");
        json_decref(root);
        return NULL;
    }
    cg_config_t *c = build(root, name, base_dir);
    json_decref(root);
    if (!c)
        cg_error_set(err, CG_ERR_NOMEM, name, 0, 0, "out of memory");
    return c;
}

cg_config_t *cg_config_load_file(const char *path, cg_error_t *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        cg_error_set(err, CG_ERR_IO, path, 0, 0, "cannot open: %m");
        return NULL;
    }
    /* read as a stream, so pipes and /dev/stdin work too */
    cg_config_t *c = NULL;
    cg_buf_t text;
    cg_buf_init(&text);
    char chunk[8192];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0 && text.len <= CG_CONFIG_MAX_BYTES)
        cg_buf_append(&text, chunk, n);
    if (ferror(f) || text.failed) {
        cg_error_set(err, CG_ERR_IO, path, 0, 0, "cannot read: %m");
    } else if (text.len > CG_CONFIG_MAX_BYTES) {
        cg_error_set(err, CG_ERR_CONFIG, path, 0, 0, "larger than %d bytes", CG_CONFIG_MAX_BYTES);
    } else {
        char dirbuf[PATH_MAX];
        snprintf(dirbuf, sizeof(dirbuf), "%s", path);
        c = cg_config_load_string(text.data ? text.data : "", path, dirname(dirbuf), err);
    }
    cg_buf_free(&text);
    fclose(f);
    return c;
}

void cg_config_destroy(cg_config_t *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->n_inputs; i++)
        free(c->inputs[i].topic);
    for (size_t i = 0; i < c->n_kafka; i++) {
        free(c->kafka[i].key);
        free(c->kafka[i].value);
    }
    for (size_t i = 0; i < c->n_preload; i++) {
        free(c->preload[i].topic);
        free(c->preload[i].dir);
    }
    free(c->inputs);
    free(c->kafka);
    free(c->preload);
    free(c->path);
    free(c->base_dir);
    free(c->group_id);
    free(c->output_topic);
    free(c->dead_letter_topic);
    free(c->transactional_id);
    free(c->metrics_listen);
    free(c->specs);
    free(c->vocab);
    free(c->athena);
    free(c->source_utc_offset);
    free(c->key_file);
    free(c->key_env);
    free(c->hl7_charset);
    free(c->cohorts);
    free(c->cohort_topic);
    free(c);
}

void cg_config_mapping_opts(const cg_config_t *cfg, cg_mapping_opts_t *out)
{
    *out = (cg_mapping_opts_t){.specs = cfg->specs,
                               .vocab = cfg->vocab,
                               .athena = cfg->athena,
                               .cohorts = cfg->cohorts,
                               .key_file = cfg->key_file,
                               .key_env = cfg->key_env,
                               .date_shift_days = cfg->date_shift_days,
                               .source_utc_offset = cfg->source_utc_offset,
                               .hl7 = &cfg->hl7};
}

const void *cg_config_plugin_conf(const cg_config_t *cfg, const char *name,
                                  const cg_config_map_t *map)
{
    (void)cfg;
    (void)name;
    (void)map;
    return NULL;
}

const char *cg_config_kafka_get(const cg_config_t *cfg, const char *key)
{
    for (size_t i = 0; i < cfg->n_kafka; i++)
        if (!strcmp(cfg->kafka[i].key, key))
            return cfg->kafka[i].value;
    return NULL;
}

void cg_config_write_reference(FILE *out)
{
    static const char *const type_names[] = {"string", "integer", "boolean", "enum",
                                             "array",  "object",  "map"};
    fprintf(out, "| setting | type | default | description |\n|---|---|---|---|\n");
    for (const cg_config_prop_t *p = cg_config_props; p->name; p++) {
        fprintf(out, "| `%s` | %s", p->name, type_names[p->type]);
        if (p->type == CG_CONFIG_ENUM) {
            fputs(" (`", out);
            for (const char *e = p->enums; *e; e++) /* | would end the Markdown cell */
                fputs(*e == '|' ? "`, `" : (char[]){*e, 0}, out);
            fputs("`)", out);
        }
        if (p->type == CG_CONFIG_INT)
            fprintf(out, " (%ld to %ld)", p->min, p->max);
        if (p->def)
            fprintf(out, " | `%s` | %s |\n", p->def, p->desc);
        else
            fprintf(out, " | %s | %s |\n", p->type == CG_CONFIG_STRING ? "required" : "", p->desc);
    }
}
