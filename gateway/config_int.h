/* config_int.h - what the config loader's files share (gateway/config*.c); not a public header. */
#ifndef CG_CONFIG_INT_H
#define CG_CONFIG_INT_H

#include <jansson.h>
#include <stddef.h>

/* A value from outside the config file: spec is {"env": "NAME"} or {"file": "PATH"} (PATH
 * relative to base_dir, NULL: the working directory; one trailing newline dropped). 0 with the
 * value in *out (malloc'd, the caller frees it); -1 with why (which never holds the value). */
int cg_config_secret_read(json_t *spec, const char *base_dir, char **out, char *why,
                          size_t why_size);

#endif
