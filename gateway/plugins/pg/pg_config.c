/* pg_config.c - the PostgreSQL sink's settings (pg.*), rows bound to pg_conf_t. A file of their
 * own: the plug-in, the CLI's checks and the config reference all read them. */
#include "pg_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* clang-format off */
const cg_config_map_t cg_pg_config_map[] = {
    CG_CONFIG_ROW_GROUP("pg",
     "The PostgreSQL sink of `cohortgate sink` (output.sink \"pg\"): record envelopes from the "
     "inputs (the record topics) into an OMOP CDM v5.4 schema, exactly once (the offsets are "
     "stored in the transaction of the rows)."),
    CG_CONFIG_ROW_STRING("pg.conninfo", pg_conf_t, conninfo, "host=127.0.0.1 dbname=omop", 0,
     "libpq connection string (keyword=value or postgresql:// URI), e.g. \"host=db.internal "
     "dbname=omop user=cohortgate sslmode=verify-full\". Never a password: `check` refuses one; "
     "see pg.password_file and pg.conninfo_env. Loopback by default. connect_timeout is 10 s "
     "unless the string or PGCONNECT_TIMEOUT sets it (libpq alone waits for ever)."),
    CG_CONFIG_ROW_STRING("pg.conninfo_env", pg_conf_t, conninfo_env, "COHORTGATE_PG_CONNINFO",
     CG_CONFIG_F_EMPTY,
     "Environment variable that, when set and not empty, holds the whole connection string "
     "instead of pg.conninfo (it may carry the password); \"\" ignores the environment."),
    CG_CONFIG_ROW_STRING("pg.password_file", pg_conf_t, password_file, "",
     CG_CONFIG_F_PATH | CG_CONFIG_F_EMPTY,
     "File whose first line is the password; by default libpq's own sources (PGPASSWORD, "
     "~/.pgpass). Never logged."),
    CG_CONFIG_ROW_STRING("pg.schema", pg_conf_t, schema, "cdm", 0,
     "Schema of the OMOP tables and the sink's own (cg_offsets, cg_id_map, cg_person_merge, cg_row_doc, "
     "cg_doc_retracted, cg_row_time, "
     "cg_rejects, cg_sink_meta); `cohortgate sink --init` creates it."),
    CG_CONFIG_ROW_ENUM("pg.id_type", pg_conf_t, id_type, "integer", "integer|bigint",
     "integer: the stock OMOP DDL; each 63-bit row id gets a compact integer through cg_id_map "
     "(OHDSI tools read it without overflow). bigint: the row ids as the records carry them. "
     "Fixed when the schema is made."),
    CG_CONFIG_ROW_INT("pg.batch_rows", pg_conf_t, batch_rows, "5000", 1, 1000000,
     "Rows staged before they are applied (COPY and one upsert per table) inside the open "
     "transaction; delivery.transaction_max_messages and delivery.commit_interval_ms say when "
     "it commits."),
    CG_CONFIG_ROW_ENUM("pg.copy_format", pg_conf_t, copy_text, "binary", "binary|text",
     "Format of the COPYs that load rows whose keys are new (and their id map pairs). binary: "
     "PostgreSQL's binary format, for the values spelled plainly (integers, decimal numbers, "
     "ISO dates and times, text): the server checks them without parsing them, a tenth to a "
     "fifth less of its time; a batch with a value of another spelling goes as text, so what "
     "the server accepts or refuses is the same either way. text: always as text."),
    CG_CONFIG_ROW_STRING("pg.cdm_source_name", pg_conf_t, cdm_source_name, "", CG_CONFIG_F_EMPTY,
     "cdm_source.cdm_source_name, the name OHDSI tools show for the database; \"\" picks "
     "\"cohortgate OMOP CDM (schema SCHEMA)\"."),
    CG_CONFIG_ROW_STRING("pg.cdm_source_abbreviation", pg_conf_t, cdm_source_abbreviation, "",
     CG_CONFIG_F_EMPTY,
     "cdm_source.cdm_source_abbreviation (at most 25 characters, longer is cut); \"\" picks the "
     "schema name."),
    CG_CONFIG_ROW_STRING("pg.cdm_holder", pg_conf_t, cdm_holder, "", CG_CONFIG_F_EMPTY,
     "cdm_source.cdm_holder, the organisation holding the CDM; \"\" picks \"cohortgate\"."),
    CG_CONFIG_ROW_GROUP("pg.cohorts",
     "Patient-level cohort membership kept current by the sink: in each batch's transaction the "
     "persons whose rows it changed are re-evaluated against every definition, `cohort` is "
     "corrected and each enter, exit or change goes to the outbox table cg_cohort_events, then "
     "to pg.cohorts.topic (specs/cohorts/CIRCE.md)."),
    CG_CONFIG_ROW_STRING("pg.cohorts.definitions", pg_conf_t, cohort_definitions, "",
     CG_CONFIG_F_PATH | CG_CONFIG_F_EMPTY,
     "A Circe cohort definition with its cohortgate header (id, version), or a folder whose "
     "*.json files are such definitions (e.g. specs/cohorts/circe); \"\" keeps no cohorts. A "
     "definition that does not load stops the sink at start with FILE:LINE:COLUMN; a new or "
     "changed one is evaluated for every person at start. SIGHUP reads them again (one that "
     "does not load is refused with its place, and the running ones stay), new and changed "
     "ones evaluated for every person between transactions."),
    CG_CONFIG_ROW_STRING("pg.cohorts.topic", pg_conf_t, cohort_topic, "cohort.events", 0,
     "Compacted Kafka topic of the membership events, keyed by \"DEFINITION_ID:PSEUDONYM\"; "
     "published after each commit from the outbox, at least once."),
    CG_CONFIG_ROW_BOOL("pg.cohorts.publish", pg_conf_t, cohort_publish, "true",
     "Whether the sink publishes the outbox's events to pg.cohorts.topic; false keeps them in "
     "cg_cohort_events only (for another publisher)."),
    CG_CONFIG_ROW_MAP("pg.cohorts.databases", pg_conf_t, disease_dbs, n_disease_dbs,
     "Patient-level disease databases, DEFINITION: SCHEMA (a definition of "
     "pg.cohorts.definitions by its header's name or id, and a schema of its own in the same "
     "database, created like --init's): in each batch's transaction the schema gets every row "
     "of the definition's members from every table with a person (their history when they "
     "enter, later rows as they come, updates and deletes), and loses a person's rows when they "
     "leave or withdraw; the definition's `cohort` rows go along."),
    CG_CONFIG_ROW_STRING("pg.cohorts.rows_topic", pg_conf_t, cohort_rows_topic, "", CG_CONFIG_F_EMPTY,
     "Kafka topic of the members' complete rows of each disease database of "
     "pg.cohorts.databases, {cohort} standing for its DEFINITION key (e.g. "
     "\"cohortgate.members.{cohort}\"), for subscribers that do not share the database: every "
     "row the disease schema gets or loses goes, with the batch's transaction, to the outbox "
     "cg_cohort_rows, then to the topic keyed by the row, \"TABLE:ID\" (a row that moves to another "
     "person keeps its key, so its messages stay in order), as {\"row_event_id\", "
     "\"cohort_definition_id\", \"table\", \"op\": \"upsert\" (the row as the schema holds it) "
     "or \"delete\" (its key), \"person_id\", \"person_source_value\", \"row\"}, at least once "
     "(skip a row_event_id seen). Empty (the default): none are written."),
    CG_CONFIG_ROW_INT("pg.cohorts.rows_keep_hours", pg_conf_t, cohort_rows_keep_h, "24", 0, 876000,
     "How long rows of cg_cohort_rows (pg.cohorts.rows_topic's outbox) are kept once "
     "published; older ones are deleted (looked at every 10 minutes, at most 50,000 a time). "
     "0: kept."),
    CG_CONFIG_ROW_INT("pg.cohorts.events_keep_days", pg_conf_t, cohort_events_keep_d, "0", 0, 36500,
     "How long membership events of cg_cohort_events are kept once published (an audit of "
     "membership changes); older ones are deleted like rows_keep_hours'. 0 (the default): "
     "kept."),
    CG_CONFIG_ROW_INT("pg.cohorts.lapse_interval_ms", pg_conf_t, cohort_lapse_ms, "60000", 0,
     86400000,
     "How often, at most, the sink looks for members whose last period's end date has passed "
     "(\"no longer a member today\") and writes one \"lapse\" event for each, once (after a "
     "commit, in a transaction of its own); 0: never."),
    CG_CONFIG_ROW_INT("pg.cohorts.withdrawal_interval_ms", pg_conf_t, cohort_withdrawal_ms, "1000",
     0, 86400000,
     "How often, at most, the sink looks between batches for withdrawals not yet honoured "
     "(pseudonyms in cg_withdrawn, e.g. from `cohortgate cohort withdraw`) and honours them in a "
     "transaction of its own: the person leaves every cohort and disease schema with exit "
     "events, whether records come or not. Every batch honours them too. 0: only batches."),
    CG_CONFIG_ROW_INT("pg.cohorts.count_interval_ms", pg_conf_t, cohort_count_ms, "10000", 0,
     86400000,
     "How often, at most, the sink counts each definition's members (distinct persons in "
     "`cohort`) into the gauge cohortgate_sink_cohort_members, after a commit; 0: never."),
    CG_CONFIG_ROW_INT("pg.cohorts.small_cell", pg_conf_t, cohort_small_cell, "10", 1, 1000000,
     "Small-cell rule of the member gauges: a count from 1 to this minus one is shown as 0 with "
     "cohortgate_sink_cohort_small_cell 1 (\"fewer than k\"), as `cohortgate cohort count` shows "
     "\"<k\"; 1 shows every count."),
    CG_CONFIG_ROW_STRING("pg.subscriber", pg_conf_t, subscriber, "", CG_CONFIG_F_EMPTY,
     "Graded release: the name of the subscriber of this file's release.subscribers[] whose "
     "database this is; \"\" none. When set, only records released to it are loaded: each must "
     "carry the header cg.subscriber equal to this name and a cg.level no higher than its "
     "max_level, anything else (another subscriber's, a higher level, no release headers) goes "
     "to cg_rejects (SQLSTATE CGREL), never to the tables; each transaction adds the rows it "
     "loaded per policy version, table and level to cohortgate_release_audit."),
    CG_CONFIG_ROW_END,
};
/* clang-format on */

const cg_config_subscriber_t *pg_config_subscriber(const pg_conf_t *conf, const cg_config_t *cfg)
{
    if (!conf || !conf->subscriber || !*conf->subscriber)
        return NULL;
    for (size_t i = 0; i < cfg->n_subscribers; i++)
        if (cfg->subscribers[i].name && !strcmp(cfg->subscribers[i].name, conf->subscriber))
            return &cfg->subscribers[i];
    return NULL;
}

size_t pg_config_validate(const void *conf_, const cg_config_t *cfg, cg_config_problem_t *prs,
                          size_t max)
{
    const pg_conf_t *conf = conf_;
    if (!conf || !conf->subscriber || !*conf->subscriber || pg_config_subscriber(conf, cfg))
        return 0;
    if (max) {
        prs[0] = (cg_config_problem_t){.keys = {"pg", "subscriber"}, .n_keys = 2};
        int n = snprintf(prs[0].text, sizeof(prs[0].text),
                         "'pg.subscriber' names '%s', which is no subscriber of "
                         "release.subscribers[]",
                         conf->subscriber);
        if (cfg->n_subscribers && n > 0 && (size_t)n < sizeof(prs[0].text)) {
            size_t o = (size_t)n;
            o += (size_t)snprintf(prs[0].text + o, sizeof(prs[0].text) - o, " (declared:");
            for (size_t i = 0; i < cfg->n_subscribers && o < sizeof(prs[0].text); i++)
                o += (size_t)snprintf(prs[0].text + o, sizeof(prs[0].text) - o, "%s '%s'",
                                      i ? "," : "", cfg->subscribers[i].name);
            if (o < sizeof(prs[0].text))
                snprintf(prs[0].text + o, sizeof(prs[0].text) - o, ")");
        }
    }
    return 1;
}

/* ---- SIGHUP ---- */

/* The settings a SIGHUP changes in a running sink; the others need a restart (they shape its
 * connection, schema, topics and producers, made at start). */
static const char *const live_rows[] = {
    "pg.batch_rows",
    "pg.copy_format",
    "pg.cdm_source_name",
    "pg.cdm_source_abbreviation",
    "pg.cdm_holder",
    "pg.cohorts.definitions",
    "pg.cohorts.rows_keep_hours",
    "pg.cohorts.events_keep_days",
    "pg.cohorts.lapse_interval_ms",
    "pg.cohorts.withdrawal_interval_ms",
    "pg.cohorts.count_interval_ms",
    "pg.cohorts.small_cell",
};

static int is_live(const char *name)
{
    for (size_t i = 0; i < sizeof(live_rows) / sizeof(live_rows[0]); i++)
        if (!strcmp(live_rows[i], name))
            return 1;
    return 0;
}

static int str_eq(const char *a, const char *b)
{
    return (!a || !*a) ? (!b || !*b) : (b && !strcmp(a, b));
}

/* Whether a row's field is the same in both. */
static int same_field(const cg_config_map_t *row, const char *a, const char *b)
{
    switch (row->type) {
    case CG_CONFIG_STRING:
        return str_eq(*(char *const *)(a + row->offset), *(char *const *)(b + row->offset));
    case CG_CONFIG_MAP: {
        size_t na = *(const size_t *)(a + row->count_offset);
        size_t nb = *(const size_t *)(b + row->count_offset);
        const cg_config_kv_t *ka = *(cg_config_kv_t *const *)(a + row->offset);
        const cg_config_kv_t *kb = *(cg_config_kv_t *const *)(b + row->offset);
        if (na != nb)
            return 0;
        for (size_t i = 0; i < na; i++)
            if (!str_eq(ka[i].key, kb[i].key) || !str_eq(ka[i].value, kb[i].value))
                return 0;
        return 1;
    }
    case CG_CONFIG_INT:
    case CG_CONFIG_BOOL:
    case CG_CONFIG_ENUM:
        return !memcmp(a + row->offset, b + row->offset, row->size);
    default:
        return 1; /* pg.* has no other kind */
    }
}

int pg_config_reload(pg_conf_t *run, const pg_conf_t *fresh, char *changed, size_t changed_size,
                     char *errstr, size_t errstr_size)
{
    char *r = (char *)run;
    const char *f = (const char *)fresh;
    /* first every setting a restart needs unchanged, then the live ones taken */
    for (const cg_config_map_t *row = cg_pg_config_map; row->name; row++) {
        if (row->offset == CG_CONFIG_NO_FIELD || same_field(row, r, f))
            continue;
        /* definitions are taken from another path, not turned on or off (the publisher and
         * the outbox are made at start) */
        int toggled = !strcmp(row->name, "pg.cohorts.definitions") &&
                      (!run->cohort_definitions != !fresh->cohort_definitions);
        if (!is_live(row->name) || toggled) {
            snprintf(errstr, errstr_size, "'%s' changed: a restart takes it", row->name);
            return -1;
        }
    }
    size_t o = 0;
    changed[0] = '\0';
    for (const cg_config_map_t *row = cg_pg_config_map; row->name; row++) {
        if (row->offset == CG_CONFIG_NO_FIELD || same_field(row, r, f))
            continue;
        if (row->type == CG_CONFIG_STRING) {
            char **to = (char **)(r + row->offset);
            const char *from = *(char *const *)(f + row->offset);
            char *dup = from ? strdup(from) : NULL;
            if (from && !dup) {
                snprintf(errstr, errstr_size, "out of memory");
                return -1;
            }
            free(*to);
            *to = dup;
        } else {
            memcpy(r + row->offset, f + row->offset, row->size);
        }
        if (o < changed_size)
            o += (size_t)snprintf(changed + o, changed_size - o, "%s%s", o ? ", " : "", row->name);
    }
    return 0;
}
