/* pg_check.c - what the CLI asks of the PostgreSQL sink without running the engine (cg_pg.h):
 * the config check of `cohortgate check -c` and the schema of `cohortgate sink --init`. Apart
 * from the plug-in: these read the plug-in's settings from the config, and the config reads the
 * plug-in list, so one file holding both would make a call cycle. */
#include "pg_int.h"

#include <stdio.h>
#include <string.h>

int cg_pg_config_check(const cg_config_t *cfg, char *why, size_t why_size)
{
    const pg_conf_t *conf = cg_config_plugin_conf(cfg, cg_pg_config_map);
    if (!conf) {
        snprintf(why, why_size, "no pg settings");
        return -1;
    }
    char *err = NULL;
    PQconninfoOption *opts = PQconninfoParse(conf->conninfo ? conf->conninfo : "", &err);
    if (!opts) {
        size_t n = snprintf(why, why_size, "pg.conninfo does not parse: %s", err ? err : "?");
        while (n > 0 && n < why_size && why[n - 1] == '\n')
            why[--n] = '\0';
        PQfreemem(err);
        return -1;
    }
    int rc = 0;
    for (PQconninfoOption *o = opts; o->keyword; o++)
        if (!strcmp(o->keyword, "password") && o->val && *o->val) {
            snprintf(why, why_size,
                     "pg.conninfo holds a password: put it in pg.password_file, the environment "
                     "variable pg.conninfo_env names, PGPASSWORD or ~/.pgpass instead");
            rc = -1;
        }
    PQconninfoFree(opts);
    char pw[256];
    if (!rc && conf->password_file &&
        pg_read_password(conf->password_file, pw, sizeof(pw), why, why_size))
        rc = -1;
    /* the cohort definitions load and compile as the sink would at start */
    pg_cohorts_t *cs = NULL;
    if (!rc && pg_cohorts_load(conf, &cs, why, why_size))
        rc = -1;
    pg_cohorts_destroy(cs);
    return rc;
}

int cg_pg_schema_init(const cg_config_t *cfg, char *summary, size_t summary_size, char *errstr,
                      size_t errstr_size)
{
    const pg_conf_t *conf = cg_config_plugin_conf(cfg, cg_pg_config_map);
    if (!conf) {
        snprintf(errstr, errstr_size, "no pg settings");
        return -1;
    }
    PGconn *c = pg_connect(conf, errstr, errstr_size);
    if (!c)
        return -1;
    int rc = pg_schema_create(c, conf, summary, summary_size, errstr, errstr_size);
    PQfinish(c);
    return rc;
}
