/* cg_config.h - the gateway configuration: one JSON file, checked against a table of settings.
 *
 * Every setting the gateway understands is a row of cg_config_props (name, type, default,
 * range, description); unknown keys and wrong types are refused with file:line:column. The
 * `kafka` object is passed to librdkafka unchanged, like kcat's -X.
 */
#ifndef CG_CONFIG_H
#define CG_CONFIG_H

#include <stddef.h>
#include <stdio.h>

#include "cg_err.h"
#include "cg_hl7.h"
#include "cg_mapping.h"

typedef enum cg_config_type {
    CG_CONFIG_STRING,
    CG_CONFIG_INT,
    CG_CONFIG_BOOL,
    CG_CONFIG_ENUM,   /* a string from a |-separated list */
    CG_CONFIG_ARRAY,  /* an array of objects whose fields are rows named "NAME[].field" */
    CG_CONFIG_OBJECT, /* a group of settings */
    CG_CONFIG_MAP,    /* free-form string map, passed through (kafka) */
} cg_config_type_t;

typedef struct cg_config_prop {
    const char *name; /* dotted path; "[]" marks array elements */
    cg_config_type_t type;
    const char *def;   /* default as text, NULL when required or none */
    const char *enums; /* for CG_CONFIG_ENUM: "a|b|c" */
    long min, max;     /* for CG_CONFIG_INT */
    const char *desc;
} cg_config_prop_t;

typedef struct cg_config_map cg_config_map_t;

/* The table of every setting; terminated by a row with name NULL. */
extern const cg_config_prop_t cg_config_props[];

typedef struct cg_config_input {
    char *topic;
    cg_input_format_t format;
} cg_config_input_t;

typedef enum cg_delivery_semantics {
    CG_DELIVERY_AT_LEAST_ONCE = 0,
    CG_DELIVERY_EXACTLY_ONCE, /* Kafka transactions: records and input offsets commit together */
} cg_delivery_semantics_t;

typedef struct cg_config_kv {
    char *key;
    char *value;
} cg_config_kv_t;

typedef struct cg_config_preload {
    char *topic;
    char *dir; /* absolute, or resolved against the config file's folder */
} cg_config_preload_t;

typedef struct cg_config {
    char *path;     /* file the config came from ("<string>" otherwise) */
    char *source;   /* the source plug-in (cg_plugin.h); NULL: kafka */
    char *sink;     /* the sink plug-in; NULL: kafka */
    char *base_dir; /* relative paths in the config resolve against this */
    char *group_id;
    cg_config_input_t *inputs;
    size_t n_inputs;
    char *output_topic;
    char *dead_letter_topic;
    int commit_interval_ms;
    int max_in_flight;
    cg_delivery_semantics_t semantics;
    int transaction_max_messages;
    char *transactional_id; /* delivery.transactional_id, or NULL for the default */
    int drain_timeout_ms;
    int pause_after_ms;      /* a wait on the output side this long pauses the assignment */
    int workers;             /* decode+map threads; 1 maps on the consumer thread */
    int log_level;           /* cg_log_level_t */
    char *specs;             /* resolved path of mapping.specs */
    char *vocab;             /* resolved, or NULL for the vocab/ folder beside the specs */
    char *athena;            /* resolved, or NULL */
    char *source_utc_offset; /* "+HH:MM" or NULL */
    char *key_file;          /* resolved, or NULL to use key_env */
    char *key_env;
    int date_shift_days;
    char *cohorts;        /* resolved cohorts.path, or NULL for none */
    char *cohort_topic;   /* cohorts.topic template */
    cg_hl7_options_t hl7; /* hl7.*; default_charset points at hl7_charset */
    char *hl7_charset;
    cg_config_kv_t *kafka;
    size_t n_kafka;
    int embedded_enabled;
    int embedded_partitions;
    cg_config_preload_t *preload;
    size_t n_preload;
    char *metrics_listen; /* metrics.listen: HOST:PORT, or "off" */
    int metrics_health_grace_ms;
    int metrics_max_series;
} cg_config_t;

/* Loads and checks a config file. Returns NULL with *err filled (file:line:column) on error. */
cg_config_t *cg_config_load_file(const char *path, cg_error_t *err);
/* The same from text; name is used in errors, base_dir for relative paths (NULL: cwd). */
cg_config_t *cg_config_load_string(const char *text, const char *name, const char *base_dir,
                                   cg_error_t *err);
/* NULL-safe. */
void cg_config_destroy(cg_config_t *cfg);
/* Writes the settings table as the Markdown reference embedded in config/README.md. */
void cg_config_write_reference(FILE *out);
/* The mapping bundle the config names (mapping.*, pseudonym.*, cohorts.path, hl7.*), as run
 * and check load it. Strings point into cfg. */
void cg_config_mapping_opts(const cg_config_t *cfg, cg_mapping_opts_t *out);
/* The config struct of the plug-in called name whose rows are map, filled when the config was
 * loaded; NULL when it has no rows. */
const void *cg_config_plugin_conf(const cg_config_t *cfg, const char *name,
                                  const cg_config_map_t *map);
/* Value of a kafka.* setting, or NULL. */
const char *cg_config_kafka_get(const cg_config_t *cfg, const char *key);

#endif
