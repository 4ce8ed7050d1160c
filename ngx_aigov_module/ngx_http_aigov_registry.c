/*
 * ngx_aigov plugin registry, generated from plugins/ngx_aigov_plugins.h
 * by the preprocessor: adding a plugin is one source file and one line
 * there.
 */

#include "ngx_http_aigov_module.h"


#define NGX_AIGOV_PLUGIN(name)                                               \
    extern ngx_aigov_plugin_t  ngx_aigov_##name##_plugin;
#define NGX_AIGOV_PLUGIN_MODULE(name)  NGX_AIGOV_PLUGIN(name)

#include "ngx_aigov_plugins.h"

#undef NGX_AIGOV_PLUGIN
#undef NGX_AIGOV_PLUGIN_MODULE


ngx_aigov_plugin_t  *ngx_aigov_plugins[] = {

#define NGX_AIGOV_PLUGIN(name)         &ngx_aigov_##name##_plugin,
#define NGX_AIGOV_PLUGIN_MODULE(name)  NGX_AIGOV_PLUGIN(name)

#include "ngx_aigov_plugins.h"

    NULL
};


ngx_uint_t  ngx_aigov_nplugins =
    sizeof(ngx_aigov_plugins) / sizeof(ngx_aigov_plugins[0]) - 1;

ngx_aigov_plugin_t  *ngx_aigov_plugins_sorted[NGX_AIGOV_MAX_PLUGINS];
