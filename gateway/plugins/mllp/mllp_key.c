/* mllp_key.c - the pseudonym key of the raw topic's message keys (mllp_int.h). */
#include "mllp_int.h"

/* The pseudonym key the config names, loaded as the mapping bundle loads it. */
cg_pseudo_t *mllp_key_load(const cg_config_t *cfg, char *errstr, size_t errstr_size)
{
    cg_pseudo_key_t *key =
        cg_pseudo_key_load(cfg->key_file, cfg->key_file ? NULL : cfg->key_env, errstr, errstr_size);
    if (!key)
        return NULL;
    cg_pseudo_t *p = cg_pseudo_new(key, 0, errstr, errstr_size);
    cg_pseudo_key_destroy(key);
    return p;
}
