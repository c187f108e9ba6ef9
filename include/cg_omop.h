/* cg_omop.h - the OMOP CDM v5.4 schema as code: tables, columns, value checks and DDL.
 *
 * The tables and columns are generated from OHDSI's field-level CSV (mappers/targets/omop_schema.c,
 * see tests/scripts/gen-omop-schema.py) and are static, read-only data: nothing here allocates and
 * every pointer returned lives as long as the program.
 *
 * One deliberate departure from OMOP's DDL, made for cohortgate's ids: OMOP declares every
 * `*_id` column `integer` (32 bits), but cohortgate's row ids and person_id are keyed hashes
 * reduced to 63 bits. So in cohortgate's DDL and value checks every integer `*_id` column that is
 * not a concept id (person_id, visit_occurrence_id, measurement_id, provider_id, care_site_id,
 * fact_id_1, ...) is `bigint`; concept-id columns (foreign keys to CONCEPT, and
 * concept.concept_id) stay `integer`, since OHDSI's vocabularies assign those. See
 * cg_omop_column_type().
 */
#ifndef CG_OMOP_H
#define CG_OMOP_H

#include <stdbool.h>
#include <stdio.h>
#include <stddef.h>

struct json_t; /* jansson's json_t; only cg_omop_check_json() takes one */

typedef enum cg_omop_type {
    CG_OMOP_INTEGER,  /* 32-bit signed */
    CG_OMOP_BIGINT,   /* 64-bit signed */
    CG_OMOP_FLOAT,    /* OMOP "float"; NUMERIC in PostgreSQL, as OHDSI's DDL has it */
    CG_OMOP_VARCHAR,  /* varchar(n), n counted in characters */
    CG_OMOP_TEXT,     /* varchar(MAX) */
    CG_OMOP_DATE,     /* YYYY-MM-DD */
    CG_OMOP_DATETIME, /* YYYY-MM-DD[T ]HH:MM[:SS[.f...]][Z|+HH[:MM]]; TIMESTAMP in PostgreSQL */
} cg_omop_type_t;

typedef struct cg_omop_column {
    const char *name;         /* lower case, as in the CDM: "person_id" */
    const char *cdm_datatype; /* the CSV's text: "integer", "varchar(50)", "varchar(MAX)" */
    cg_omop_type_t cdm_type;  /* the CDM's type; see cg_omop_column_type() for cohortgate's */
    int max_length;           /* n of varchar(n); 0 for other types */
    bool required;            /* NOT NULL */
    bool primary_key;
    bool foreign_key;
    const char *fk_table; /* lower case ("concept", "person"); NULL when not a foreign key */
    const char *fk_field; /* lower case; NULL when not a foreign key */
    bool concept_id;      /* refers to CONCEPT (or is concept.concept_id) */
} cg_omop_column_t;

typedef struct cg_omop_table {
    const char *name;   /* lower case: "measurement" */
    const char *schema; /* the CSV's schema: "CDM", "VOCAB" or "RESULTS" */
    bool required;      /* the CDM says every instance has rows in it */
    const cg_omop_column_t *columns;
    size_t n_columns;
} cg_omop_table_t;

/* All tables of OMOP CDM v5.4 in the CSV's order (generated). */
extern const cg_omop_table_t cg_omop_cdm54_tables[];
extern const size_t cg_omop_cdm54_n_tables;

/* Table i (0-based) or NULL past the end: for (i = 0; (t = cg_omop_table_at(i)); i++). */
const cg_omop_table_t *cg_omop_table_at(size_t i);
size_t cg_omop_table_count(void);
/* The table named name (exact, lower case), or NULL. */
const cg_omop_table_t *cg_omop_table(const char *name);
/* Like cg_omop_table() for a name that is not NUL-terminated. */
const cg_omop_table_t *cg_omop_table_n(const char *name, size_t len);
/* The column named name in table, or NULL; *index (may be NULL) gets its position. */
const cg_omop_column_t *cg_omop_column(const cg_omop_table_t *table, const char *name,
                                       size_t *index);
/* Column i of table, or NULL past the end. */
const cg_omop_column_t *cg_omop_column_at(const cg_omop_table_t *table, size_t i);
/* The table's primary-key column, or NULL (death, fact_relationship, ... have none). */
const cg_omop_column_t *cg_omop_primary_key(const cg_omop_table_t *table, size_t *index);

/* The column's type in cohortgate's DDL: CG_OMOP_BIGINT for integer non-concept *_id columns,
 * else the CDM's type. */
cg_omop_type_t cg_omop_column_type(const cg_omop_column_t *col);
/* "integer", "bigint", "float", "varchar", "text", "date", "datetime". */
const char *cg_omop_type_name(cg_omop_type_t type);
/* The PostgreSQL type of the column in cohortgate's DDL into buf: "bigint", "varchar(50)",
 * "NUMERIC", "TIMESTAMP", "TEXT"... Returns buf. */
const char *cg_omop_pg_type(const cg_omop_column_t *col, char *buf, size_t size);

/* Does a JSON value fit col in cohortgate's DDL? The value is given as text:
 *   text == NULL          JSON null or absent;
 *   quoted == true        a JSON string, text being its decoded content (UTF-8, len bytes);
 *   quoted == false       a bare JSON literal (a number, true or false), text its JSON spelling.
 * The check is stricter than PostgreSQL's text input, on purpose: integer and float columns take
 * JSON numbers, varchar/date/datetime columns take JSON strings; varchar lengths count UTF-8
 * characters (as PostgreSQL does) and invalid UTF-8 or NUL is refused; dates must be ISO
 * calendar dates; integers must fit 32 or 64 bits. A null in a required column is refused.
 * Returns true when it fits; otherwise false with the reason in why (may be NULL), e.g.
 * "person_source_value: 51 characters, longer than varchar(50)". */
bool cg_omop_check_value(const cg_omop_column_t *col, const char *text, size_t len, bool quoted,
                         char *why, size_t why_size);
/* The same for a jansson value (NULL or json null meaning null). */
bool cg_omop_check_json(const cg_omop_column_t *col, const struct json_t *value, char *why,
                        size_t why_size);
/* The (text, len, quoted) triple of cg_omop_check_value() for a jansson scalar: strings give
 * their content (borrowed from value), numbers and true/false are spelled into buf (64 bytes is
 * plenty); a real keeps a fraction or exponent (7.0 stays "7.0"). Null gives text NULL. Returns
 * false for an object or an array. This is also the text a loader sends to PostgreSQL. */
bool cg_omop_json_text(const struct json_t *value, char *buf, size_t size, const char **text,
                       size_t *len, bool *quoted);
/* Checks a whole row object of table: unknown columns, required columns missing, every value.
 * Returns the number of problems and the first one in why. */
size_t cg_omop_check_row(const cg_omop_table_t *table, const struct json_t *row, char *why,
                         size_t why_size);

/* Writes CREATE TABLE statements for PostgreSQL for every table, in the CSV's order, inside
 * schema (NULL or "" for none, i.e. the search_path): types as cg_omop_pg_type(), NOT NULL for
 * required columns, PRIMARY KEY as in the CDM, and no foreign keys, because records arrive in any
 * order. Returns 0, or -1 when writing to out failed. */
int cg_omop_write_ddl(FILE *out, const char *schema);

/* Whether PostgreSQL needs name double-quoted: a reserved word (offset) or odd characters. */
bool cg_omop_ident_needs_quotes(const char *name);
/* Writes name to out, double-quoted only when PostgreSQL needs it (offset, odd characters). */
int cg_omop_write_ident(FILE *out, const char *name);

#endif
