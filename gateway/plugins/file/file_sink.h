/* file_sink.h - the file sink: every record as one NDJSON line in a file (or on stdout), for
 * dry runs of a config against real input without publishing anything. Also the smallest
 * example of a sink plug-in (cg_plugin.h): a folder like this one and a registry line. */
#ifndef CG_FILE_SINK_H
#define CG_FILE_SINK_H

#include "cg_plugin.h"

/* Its config (output.file.*), filled from its rows. */
typedef struct cg_file_sink_conf {
    char *path; /* "-": stdout; relative: against the config file's folder */
} cg_file_sink_conf_t;

extern const cg_config_map_t cg_file_sink_config_map[];
extern const cg_sink_plugin_t cg_file_sink_plugin;

#endif
