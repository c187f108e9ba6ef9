/* cg_subscribers.h - graded release in the daemons: the config's release section made into the
 * catalogue and a compiled policy per subscriber (cg_release.h), every problem located in the
 * config file. `check -c` and `run` load them the same way, so they refuse the same policies.
 */
#ifndef CG_SUBSCRIBERS_H
#define CG_SUBSCRIBERS_H

#include <stddef.h>

#include "cg_config.h"
#include "cg_mapping.h"
#include "cg_release.h"

typedef struct cg_subscriber {
    const char *name, *topic; /* the config's */
    cg_policy_t *policy;
} cg_subscriber_t;

typedef struct cg_subscribers {
    cg_catalogue_t *catalogue;
    cg_subscriber_t *v;
    size_t n;
} cg_subscribers_t;

/* The release section of cfg, with subscribers' keys from their key_file/key_env or derived from
 * the site key of m. NULL with every error (located in cfg's file, or in the catalogue's files)
 * in errs when any; with no subscribers, an empty set (n 0, no catalogue loaded). */
cg_subscribers_t *cg_subscribers_load(const cg_config_t *cfg, const cg_mapping_t *m,
                                      cg_error_t *errs, size_t max, size_t *n_errs);
/* NULL-safe. */
void cg_subscribers_destroy(cg_subscribers_t *s);
/* The catalogue layers cfg names: release.catalogue, else classification/ beside the first
 * mapping.specs layer. A new array of new strings (cg_subscribers_free_layers), *n their count. */
char **cg_subscribers_layers(const cg_config_t *cfg, size_t *n);
void cg_subscribers_free_layers(char **layers, size_t n);

#endif
