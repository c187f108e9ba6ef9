/* cg_pg.h - the PostgreSQL sink of `cohortgate sink` (gateway/plugins/pg/): OMOP record
 * envelopes from the record topics into a PostgreSQL OMOP CDM v5.4 schema, exactly once.
 *
 * The plug-in itself is the sink "pg" of the registry (cg_plugin.h); what the CLI needs beside
 * the engine is here: the schema's creation (`cohortgate sink --init`) and the config check
 * (`cohortgate check -c`), neither of which runs the engine.
 *
 * Secrets: the connection string comes from the config (pg.conninfo, without a password), the
 * environment (pg.conninfo_env) or a password file (pg.password_file); none of them is ever
 * written to a log or an error text (only host, port, database and user are).
 */
#ifndef CG_PG_H
#define CG_PG_H

#include <stddef.h>
#include <stdio.h>

#include "cg_config.h"

/* Checks the sink's settings of cfg without connecting: the connection string parses and holds
 * no password, the password file is readable. 0, or -1 with the reason in why. */
int cg_pg_config_check(const cg_config_t *cfg, char *why, size_t why_size);

/* Connects and creates, idempotently, pg.schema with the OMOP CDM v5.4 tables (ids integer or
 * bigint as pg.id_type says), their primary keys and indexes, and the sink's own tables
 * (offsets, id map, person merges, rejects). Refuses a schema that holds another CDM version or
 * another id type, saying why. 0, or -1 with the reason in errstr; *summary (may be NULL)
 * gets a line for the user ("schema omop: 39 CDM tables ..."). */
int cg_pg_schema_init(const cg_config_t *cfg, char *summary, size_t summary_size, char *errstr,
                      size_t errstr_size);

/* `cohortgate sink --load-vocab DIR`: OHDSI Athena's vocabulary files of dir (CONCEPT.csv,
 * CONCEPT_RELATIONSHIP.csv, CONCEPT_ANCESTOR.csv, VOCABULARY.csv, DOMAIN.csv, CONCEPT_CLASS.csv,
 * RELATIONSHIP.csv, CONCEPT_SYNONYM.csv, DRUG_STRENGTH.csv, SOURCE_TO_CONCEPT_MAP.csv: those
 * present, any case, tab-separated with a header line) into the schema's tables with COPY, each
 * replacing its table's rows, all in one transaction; then cdm_source.vocabulary_version. The
 * schema must exist (--init). progress (may be NULL) gets a line per table. 0, or -1 with the
 * reason (FILE:LINE: when the database refused a line) in errstr. */
int cg_pg_load_vocab(const cg_config_t *cfg, const char *dir, FILE *progress, char *summary,
                     size_t summary_size, char *errstr, size_t errstr_size);

#endif
