/*
 * ngx_aigov annotate plugin: tells the client which variant and model
 * version answered.  It is also the example of "Writing a plugin" in the
 * README: a location directive through its own nginx module, an enabled()
 * test and a header filter hook.
 *
 *   aigov_response_headers on | off;     (default on)
 *
 *   X-Aigov-Variant: v2
 *   X-Aigov-Model-Version: 1.5.0
 */

#include "ngx_http_aigov_module.h"


typedef struct {
    ngx_flag_t                 enable;
} ngx_aigov_annotate_loc_conf_t;


static ngx_int_t ngx_aigov_annotate_enabled(void *loc_conf);
static ngx_int_t ngx_aigov_annotate_header_filter(ngx_http_request_t *r,
    ngx_aigov_ctx_t *ctx);
static void *ngx_aigov_annotate_create_loc_conf(ngx_conf_t *cf);
static char *ngx_aigov_annotate_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);


static ngx_command_t  ngx_aigov_annotate_commands[] = {

    { ngx_string("aigov_response_headers"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_aigov_annotate_loc_conf_t, enable),
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_aigov_annotate_module_ctx = {
    NULL,                                  /* preconfiguration */
    NULL,                                  /* postconfiguration */
    NULL,                                  /* create main configuration */
    NULL,                                  /* init main configuration */
    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */
    ngx_aigov_annotate_create_loc_conf,    /* create location configuration */
    ngx_aigov_annotate_merge_loc_conf      /* merge location configuration */
};


ngx_module_t  ngx_aigov_annotate_module = {
    NGX_MODULE_V1,
    &ngx_aigov_annotate_module_ctx,        /* module context */
    ngx_aigov_annotate_commands,           /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL, NULL, NULL, NULL, NULL, NULL, NULL,
    NGX_MODULE_V1_PADDING
};


ngx_aigov_plugin_t  ngx_aigov_annotate_plugin = {
    NGX_AIGOV_ABI,
    "annotate",
    "1.0.0",
    NGX_AIGOV_PRIO_ANNOTATE,
    &ngx_aigov_annotate_module,            /* nginx module */
    NULL,                                  /* model directives */
    NULL,                                  /* create model conf */
    NULL,                                  /* init model conf */
    ngx_aigov_annotate_enabled,
    NULL,                                  /* init worker */
    NULL,                                  /* decide */
    ngx_aigov_annotate_header_filter,
    NULL,                                  /* body filter */
    NULL,                                  /* log */
    NULL,                                  /* status */
    0,
    NULL                                   /* needs body */
};


static ngx_int_t
ngx_aigov_annotate_enabled(void *loc_conf)
{
    ngx_aigov_annotate_loc_conf_t  *alcf = loc_conf;

    return alcf->enable;
}


NGX_AIGOV_HOT
static ngx_int_t
ngx_aigov_annotate_header_filter(ngx_http_request_t *r, ngx_aigov_ctx_t *ctx)
{
    ngx_str_t  reason;

    static ngx_str_t  variant = ngx_string("X-Aigov-Variant");
    static ngx_str_t  version = ngx_string("X-Aigov-Model-Version");
    static ngx_str_t  fallback = ngx_string("X-Aigov-Fallback");
    static ngx_str_t  rule = ngx_string("X-Aigov-Fallback-Rule");

    if (ctx->fallback != NGX_AIGOV_FALLBACK_NONE) {
        reason.data = (u_char *) ngx_aigov_fallback_name(ctx->fallback);
        reason.len = ngx_strlen(reason.data);

        if (ngx_aigov_add_header(r, &fallback, &reason) != NGX_OK) {
            return NGX_ERROR;
        }

        if (ctx->fallback_rule.len
            && ngx_aigov_add_header(r, &rule, &ctx->fallback_rule) != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    if (ctx->variant == NULL || ctx->fallback_rule.len) {
        /* no variant answered */
        return NGX_OK;
    }

    if (ngx_aigov_add_header(r, &variant, &ctx->variant->name) != NGX_OK
        || ngx_aigov_add_header(r, &version, &ctx->variant->version)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void *
ngx_aigov_annotate_create_loc_conf(ngx_conf_t *cf)
{
    ngx_aigov_annotate_loc_conf_t  *conf;

    conf = ngx_palloc(cf->pool, sizeof(ngx_aigov_annotate_loc_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    conf->enable = NGX_CONF_UNSET;

    return conf;
}


static char *
ngx_aigov_annotate_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_aigov_annotate_loc_conf_t *prev = parent;
    ngx_aigov_annotate_loc_conf_t *conf = child;

    ngx_conf_merge_value(conf->enable, prev->enable, 1);

    return NGX_CONF_OK;
}
