/*
 * The plugin registry: one line per plugin.  `config` reads this file to
 * find each plugin's source (plugins/ngx_aigov_NAME.c) and, for
 * NGX_AIGOV_PLUGIN_MODULE lines, its nginx module (ngx_aigov_NAME_module);
 * the core includes it to build ngx_aigov_plugins[].
 *
 *   NGX_AIGOV_PLUGIN(name)          directives only inside aigov_model{}
 *   NGX_AIGOV_PLUGIN_MODULE(name)   also location directives, via its own
 *                                   nginx module
 *
 * The order is the index order; hooks run by each plugin's priority.
 */

NGX_AIGOV_PLUGIN(rollback)
NGX_AIGOV_PLUGIN(bluegreen)
NGX_AIGOV_PLUGIN(canary)
NGX_AIGOV_PLUGIN_MODULE(breaker)
NGX_AIGOV_PLUGIN_MODULE(skew)
NGX_AIGOV_PLUGIN_MODULE(annotate)
NGX_AIGOV_PLUGIN_MODULE(cache)
NGX_AIGOV_PLUGIN_MODULE(shadow)
NGX_AIGOV_PLUGIN_MODULE(ratelimit)
