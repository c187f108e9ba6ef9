/* registry.c - every stage plug-in the build has, as nginx's module list: adding one is its
 * folder under gateway/plugins/ and a line here (and its files in gateway/CMakeLists.txt). */
#include "cg_plugin.h"

#include "file/file_sink.h"
#include "kafka/kafka_int.h"
#include "mllp/mllp_int.h"
#include "pg/pg_int.h"

#include <string.h>

const cg_source_plugin_t *const cg_source_plugins[] = {
    &cg_kafka_source_plugin,
    &cg_mllp_source_plugin,
    NULL,
};

const cg_sink_plugin_t *const cg_sink_plugins[] = {
    &cg_kafka_sink_plugin,
    &cg_file_sink_plugin,
    &cg_pg_sink_plugin,
    NULL,
};

const cg_source_plugin_t *cg_source_plugin_find(const char *name)
{
    for (size_t i = 0; name && cg_source_plugins[i]; i++)
        if (!strcmp(cg_source_plugins[i]->name, name))
            return cg_source_plugins[i];
    return NULL;
}

const cg_sink_plugin_t *cg_sink_plugin_find(const char *name)
{
    for (size_t i = 0; name && cg_sink_plugins[i]; i++)
        if (!strcmp(cg_sink_plugins[i]->name, name))
            return cg_sink_plugins[i];
    return NULL;
}
