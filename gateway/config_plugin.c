/* config_plugin.c - a plug-in's config struct in a loaded config. Apart from config.c, which
 * asks the plug-in registry for the plug-ins' rows, so that plug-ins can read their settings
 * without a call cycle. */
#include "cg_config.h"

const void *cg_config_plugin_conf(const cg_config_t *cfg, const cg_config_map_t *map)
{
    for (size_t i = 0; cfg && map && i < cfg->n_plugins; i++)
        if (cfg->plugins[i].map == map)
            return cfg->plugins[i].conf;
    return NULL;
}
