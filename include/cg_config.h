/* cg_config.h - the gateway configuration: one JSON file, checked against rows of settings.
 *
 * Every setting the gateway understands is a row (cg_config_map_t: name, type, default, range,
 * description, and the struct field it fills), of the core's map or of a plug-in's; unknown
 * keys and wrong types are refused with file:line:column. The core's rows are the settings of
 * every command (mapping, delivery, destinations, metrics); a plug-in's rows are its own (the
 * Kafka plug-in's `kafka` object, passed to librdkafka unchanged like kcat's -X, its `inputs`,
 * group and embedded broker: cg_kafka.h).
 */
#ifndef CG_CONFIG_H
#define CG_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "cg_err.h"
#include "cg_hl7.h"
#include "cg_mapping.h"

typedef enum cg_config_type {
    CG_CONFIG_STRING,
    CG_CONFIG_INT,
    CG_CONFIG_BOOL,
    CG_CONFIG_ENUM,    /* a string from a |-separated list */
    CG_CONFIG_ARRAY,   /* an array of objects whose fields are rows named "NAME[].field" */
    CG_CONFIG_OBJECT,  /* a group of settings */
    CG_CONFIG_MAP,     /* free-form string map, passed through (kafka) */
    CG_CONFIG_STRINGS, /* a string or an array of strings (layers) */
} cg_config_type_t;

/* One setting (a row of a config map, as Fluent Bit's struct flb_config_map and librdkafka's
 * property table): its name in the file, type, default, range, description, and where its
 * value goes in the struct the map fills (offsetof). The core's rows fill cg_config_t; each
 * plug-in brings rows of its own that fill its own struct (cg_plugin.h), so the loader checks
 * and fills every setting the same way and the reference is generated from the rows. */
typedef struct cg_config_map {
    const char *name; /* dotted path; "[]" marks array elements */
    cg_config_type_t type;
    const char *def;   /* default as text, NULL when required or none */
    const char *enums; /* for CG_CONFIG_ENUM: "a|b|c"; the field gets the index */
    long min, max;     /* for CG_CONFIG_INT */
    const char *desc;
    size_t offset;       /* the field: offsetof(struct, field); CG_CONFIG_NO_FIELD for groups */
    size_t size;         /* INT: sizeof the field; ARRAY: sizeof an element */
    size_t count_offset; /* ARRAY, MAP: the size_t field that gets the count */
    unsigned flags;      /* CG_CONFIG_F_* */
} cg_config_map_t;

#define CG_CONFIG_NO_FIELD ((size_t)-1)
#define CG_CONFIG_F_PATH   1u /* resolved against the config file's folder */
#define CG_CONFIG_F_EMPTY  2u /* "" (written out or the default) leaves the field NULL */

/* Rows, by type. A string field is a char * (owned by the struct); an int field an integer of
 * any width; BOOL and ENUM an int; ARRAY a pointer to elements plus a size_t count, the
 * elements' fields rows named "NAME[].field"; MAP a cg_config_kv_t pointer plus a count. */
#define CG_CONFIG_ROW_GROUP(name, desc)                                                            \
    {                                                                                              \
        name, CG_CONFIG_OBJECT, NULL, NULL, 0, 0, desc, CG_CONFIG_NO_FIELD, 0, 0, 0                \
    }
#define CG_CONFIG_ROW_STRING(name, st, field, def, flags, desc)                                    \
    {                                                                                              \
        name, CG_CONFIG_STRING, def, NULL, 0, 0, desc, offsetof(st, field), sizeof(char *), 0,     \
            flags                                                                                  \
    }
#define CG_CONFIG_ROW_INT(name, st, field, def, min, max, desc)                                    \
    {                                                                                              \
        name, CG_CONFIG_INT, def, NULL, min, max, desc, offsetof(st, field),                       \
            sizeof(((st *)0)->field), 0, 0                                                         \
    }
#define CG_CONFIG_ROW_BOOL(name, st, field, def, desc)                                             \
    {                                                                                              \
        name, CG_CONFIG_BOOL, def, NULL, 0, 0, desc, offsetof(st, field), sizeof(int), 0, 0        \
    }
#define CG_CONFIG_ROW_ENUM(name, st, field, def, enums, desc)                                      \
    {                                                                                              \
        name, CG_CONFIG_ENUM, def, enums, 0, 0, desc, offsetof(st, field), sizeof(int), 0, 0       \
    }
#define CG_CONFIG_ROW_ARRAY(name, st, field, count, elem, desc)                                    \
    {                                                                                              \
        name, CG_CONFIG_ARRAY, NULL, NULL, 0, 0, desc, offsetof(st, field), sizeof(elem),          \
            offsetof(st, count), 0                                                                 \
    }
#define CG_CONFIG_ROW_MAP(name, st, field, count, desc)                                            \
    {                                                                                              \
        name, CG_CONFIG_MAP, NULL, NULL, 0, 0, desc, offsetof(st, field), 0, offsetof(st, count),  \
            0                                                                                      \
    }
/* STRINGS: a char ** (owned, NULL when none) plus a size_t count; a single string is a list of
 * one. CG_CONFIG_F_PATH resolves each, CG_CONFIG_F_EMPTY makes "" (or []) none. */
#define CG_CONFIG_ROW_STRINGS(name, st, field, count, def, flags, desc)                            \
    {                                                                                              \
        name, CG_CONFIG_STRINGS, def, NULL, 0, 0, desc, offsetof(st, field), sizeof(char **),      \
            offsetof(st, count), flags                                                             \
    }
#define CG_CONFIG_ROW_END                                                                          \
    {                                                                                              \
        NULL, 0, NULL, NULL, 0, 0, NULL, 0, 0, 0, 0                                                \
    }

/* The core's rows (gateway/config.c), filling cg_config_t; terminated by CG_CONFIG_ROW_END. */
extern const cg_config_map_t cg_config_core_map[];

typedef enum cg_delivery_semantics {
    CG_DELIVERY_AT_LEAST_ONCE = 0,
    CG_DELIVERY_EXACTLY_ONCE, /* Kafka transactions: records and input offsets commit together */
} cg_delivery_semantics_t;

/* A MAP row's entry. A value may come from outside the file, {"env": "NAME"} or
 * {"file": "PATH"} (relative to the config file; one trailing newline dropped), for secrets such
 * as kafka.sasl.password: such a value is secret and is never printed (logs, errors). */
typedef struct cg_config_kv {
    char *key;
    char *value;
    int secret; /* came from {"env"} or {"file"} */
} cg_config_kv_t;

/* What a plug-in's check (cg_plugin.h) found wrong with settings that rows cannot check alone
 * (one against another): the setting, as its path of keys ({"kafka", "transactional.id"}; none:
 * the file as a whole), and why. The loader reports it with file:line:column. */
typedef struct cg_config_problem {
    const char *keys[4]; /* NULL: the index[i]-th element of the array keys[i - 1] names */
    int index[4];
    int n_keys;
    char text[400];
} cg_config_problem_t;

/* A subscriber of graded release (release.subscribers[], cg_release.h). */
typedef struct cg_config_subscriber {
    char *name, *topic, *agreement, *expires;
    int max_level;
    char **tables;
    size_t n_tables;
    char **cohorts;
    size_t n_cohorts;
    cg_config_kv_t *levels; /* "3": "generalize" */
    size_t n_levels;
    int dates; /* 0 month, 1 year */
    int date_shift_days;
    int age_top;
    int free_text;
    int small_cell;           /* counts below it leave only as "<N" */
    char *key_file, *key_env; /* NULL: derived from the site key */
    char *version;
} cg_config_subscriber_t;

/* The config struct of one plug-in, filled from its rows. */
typedef struct cg_config_plugin {
    const cg_config_map_t *map;
    void *conf;
} cg_config_plugin_t;

typedef struct cg_config {
    char *path;                  /* file the config came from ("<string>" otherwise) */
    int from_file;               /* loaded from path (a SIGHUP reads it again), not from text */
    char *source;                /* the source plug-in (cg_plugin.h) */
    char *sink;                  /* the sink plug-in (output.sink) */
    cg_config_plugin_t *plugins; /* every registered plug-in's config struct */
    size_t n_plugins;
    char *base_dir; /* relative paths in the config resolve against this */
    char *text;     /* the file's text: where a setting is written (cg_config_locate) */
    char *output_topic;
    char *dead_letter_topic;
    char *quality_topic; /* entries left out of documents (on_error "entry") */
    char *outcome_topic; /* one outcome record per input (output.outcome_topic); NULL: off */
    int ids_as_strings;  /* 64-bit ids as JSON strings (CG_ROW_ENCODE_IDS_AS_STRINGS) */
    int commit_interval_ms;
    int max_in_flight;
    cg_delivery_semantics_t semantics;
    int transaction_max_messages;
    int drain_timeout_ms;
    int pause_after_ms; /* a wait on the output side this long pauses the assignment */
    int workers;        /* decode+map threads; 1 maps on the consumer thread */
    int log_level;      /* cg_log_level_t */
    /* pseudonym.message_id: 0 keyed, 1 plain */
    int message_id_plain;
    char **specs; /* mapping.specs: the spec layers, resolved, base first */
    size_t n_specs;
    char **vocab; /* mapping.vocab: the vocabulary layers, or NULL for each spec layer's vocab/ */
    size_t n_vocab;
    char *athena;                /* resolved, or NULL */
    char *source_utc_offset;     /* "+HH:MM" or NULL */
    int max_message_ms;          /* mapping.max_message_ms: one message's time budget; 0 none */
    int max_message_mb;          /* mapping.max_message_mb: its memory budget; 0 none */
    cg_config_kv_t *spec_params; /* mapping.params: the specs' parameters, NAME: value */
    size_t n_spec_params;
    cg_spec_param_t *spec_param_view; /* the same for cg_mapping_opts_t (names borrowed) */
    char *key_file;                   /* resolved, or NULL to use key_env */
    char *key_env;
    int date_shift_days;
    /* pseudonym.authorities: aliases FROM: TO, defaults FACILITY: AUTHORITY, missing (a
     * cg_pseudo_missing_t); the views are the same for cg_mapping_opts_t (strings borrowed) */
    cg_config_kv_t *auth_aliases, *auth_defaults;
    size_t n_auth_aliases, n_auth_defaults;
    int auth_missing;
    cg_pseudo_pair_t *auth_alias_view, *auth_default_view;
    char *cohorts;        /* resolved cohorts.path, or NULL for none */
    char *cohort_topic;   /* cohorts.topic template */
    cg_hl7_options_t hl7; /* hl7.*; default_charset points at hl7_charset */
    cg_xml_options_t xml; /* xml.*: the decoder's bounds */
    char *hl7_charset;
    char *metrics_listen; /* metrics.listen: HOST:PORT, or "off" */
    int metrics_health_grace_ms;
    int metrics_stuck_worker_ms;
    int metrics_max_series;
    char **catalogue; /* release.catalogue layers, resolved; NULL: beside mapping.specs */
    size_t n_catalogue;
    char *audit_topic;
    int audit_interval_ms;
    cg_config_subscriber_t *subscribers;
    size_t n_subscribers;
} cg_config_t;

/* Loads and checks a config file. Returns NULL with *err filled (file:line:column) on error. */
cg_config_t *cg_config_load_file(const char *path, cg_error_t *err);
/* The same, reporting every error of the settings (unknown, of the wrong type, out of range:
 * each located), up to max of them in errs, for `check -c`; *n gets how many there were (0 when
 * it loaded). An error found after those (one setting against another) is reported alone. */
cg_config_t *cg_config_load_file_all(const char *path, cg_error_t *errs, size_t max, size_t *n);
/* The same from text; name is used in errors, base_dir for relative paths (NULL: cwd). */
cg_config_t *cg_config_load_string(const char *text, const char *name, const char *base_dir,
                                   cg_error_t *err);
/* NULL-safe. */
void cg_config_destroy(cg_config_t *cfg);
/* What a daemon (`run`, `listen`, `sink`) refuses at start once its config loaded, short of
 * connecting and of loading the mapping bundle (cg_mapping_load does that, for both): the
 * chosen plug-ins' validate (Kafka: every kafka.* property through librdkafka's own
 * rd_kafka_conf_set, then the clients made from them without a broker to connect to; topics:
 * none read and written, none listed twice) and whether they can do
 * exactly-once when asked. `check -c` calls the same, so the two refuse the same configs for
 * the same reasons. Every error, located in the config file, up to max in errs; returns how many
 * there were (0: none). */
size_t cg_config_validate(const cg_config_t *cfg, cg_error_t *errs, size_t max);
/* Where a setting is written in cfg's file: keys as cg_config_problem_t's; the closest place
 * found (1:1 when none). */
void cg_config_locate(const cg_config_t *cfg, const char *const *keys, const int *index, int n_keys,
                      int *line, int *col);
/* Writes every row (the core's, then each plug-in's) as the Markdown reference embedded in
 * config/README.md. */
void cg_config_write_reference(FILE *out);
/* The mapping bundle the config names (mapping.*, pseudonym.*, cohorts.path, hl7.*), as run
 * and check load it. Strings point into cfg. */
void cg_config_mapping_opts(const cg_config_t *cfg, cg_mapping_opts_t *out);
/* pseudonym.authorities as the mapping bundle takes them (strings point into cfg). */
cg_pseudo_authority_opts_t cg_config_authority_opts(const cg_config_t *cfg);
/* The config struct a plug-in's rows (map) filled when the config was loaded; NULL when map is
 * NULL. */
const void *cg_config_plugin_conf(const cg_config_t *cfg, const cg_config_map_t *map);
/* A topic name from a template (cohorts.topic, pg.cohorts.rows_topic): {cohort} and {table}
 * replaced (table may be NULL: {table} stays). Written to out (size > 0), cut to fit. */
void cg_config_topic_name(const char *tmpl, const char *cohort, const char *table, char *out,
                          size_t size);

#endif
