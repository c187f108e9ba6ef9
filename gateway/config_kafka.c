/* config_kafka.c - the kafka.* settings, passed to librdkafka as they are. Apart from config.c,
 * which asks the plug-in registry for the plug-ins' own settings, so that the Kafka plug-in can
 * read these without a call cycle. */
#include "cg_config.h"

#include <string.h>

const char *cg_config_kafka_get(const cg_config_t *cfg, const char *key)
{
    for (size_t i = 0; i < cfg->n_kafka; i++)
        if (!strcmp(cfg->kafka[i].key, key))
            return cfg->kafka[i].value;
    return NULL;
}
