/*
 * ngx_aigov blue-green plugin.
 *
 *   aigov_model embed {
 *       variant blue  embed_blue  version=3.1 stable;
 *       variant green embed_green version=3.2;
 *       active  blue;                               # all traffic
 *       preview green [header=X-Aigov-Preview];     # opt-in by header
 *   }
 *
 * Switching colour is an edit of "active" and a reload: nginx's graceful
 * reload lets old workers finish their requests on the old colour.
 */

#include "ngx_http_aigov_module.h"


typedef struct {
    ngx_aigov_variant_t       *active;
    ngx_aigov_variant_t       *preview;
    ngx_aigov_header_t         header;
} ngx_aigov_bluegreen_conf_t;


static ngx_int_t ngx_aigov_bluegreen_decide(ngx_http_request_t *r,
    ngx_aigov_ctx_t *ctx);
static ngx_int_t ngx_aigov_bluegreen_status(ngx_aigov_model_t *model,
    void *conf, json_t *out);
static void *ngx_aigov_bluegreen_create_model_conf(ngx_conf_t *cf,
    ngx_aigov_model_t *model);
static char *ngx_aigov_bluegreen_init_model_conf(ngx_conf_t *cf,
    ngx_aigov_model_t *model, void *conf);
static char *ngx_aigov_bluegreen_active(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_aigov_bluegreen_preview(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);


static ngx_command_t  ngx_aigov_bluegreen_model_commands[] = {

    { ngx_string("active"),
      NGX_CONF_TAKE1,
      ngx_aigov_bluegreen_active,
      0,
      0,
      NULL },

    { ngx_string("preview"),
      NGX_CONF_TAKE12,
      ngx_aigov_bluegreen_preview,
      0,
      0,
      NULL },

      ngx_null_command
};


ngx_aigov_plugin_t  ngx_aigov_bluegreen_plugin = {
    NGX_AIGOV_ABI,
    "bluegreen",
    "1.0.0",
    NGX_AIGOV_PRIO_BLUEGREEN,
    NULL,                                  /* nginx module */
    ngx_aigov_bluegreen_model_commands,
    ngx_aigov_bluegreen_create_model_conf,
    ngx_aigov_bluegreen_init_model_conf,
    NULL,                                  /* enabled: wherever aigov routes */
    NULL,                                  /* init worker */
    ngx_aigov_bluegreen_decide,
    NULL,                                  /* header filter */
    NULL,                                  /* body filter */
    NULL,                                  /* log */
    ngx_aigov_bluegreen_status,
    0,
    NULL                                   /* needs body */
};


NGX_AIGOV_HOT
static ngx_int_t
ngx_aigov_bluegreen_decide(ngx_http_request_t *r, ngx_aigov_ctx_t *ctx)
{
    ngx_str_t                    value;
    ngx_aigov_runtime_t         *rt;
    ngx_aigov_variant_t         *active;
    ngx_aigov_bluegreen_conf_t  *conf;

    conf = ngx_aigov_model_conf(ctx->model, ngx_aigov_bluegreen_plugin);

    if (conf == NULL || ctx->variant) {
        return NGX_DECLINED;
    }

    /* the colour switched at runtime wins over the config's */
    rt = ngx_aigov_runtime(ctx->model);
    active = rt->active ? rt->active : conf->active;

    if (conf->preview
        && ngx_aigov_header_get(r, &conf->header, &value) == NGX_OK
        && aigov_truthy((char *) value.data, value.len))
    {
        ngx_aigov_choose(r, ctx, conf->preview, NGX_AIGOV_DECISION_PREVIEW);
        return NGX_OK;
    }

    ngx_aigov_choose(r, ctx, active, NGX_AIGOV_DECISION_ACTIVE);

    return NGX_OK;
}


static ngx_int_t
ngx_aigov_bluegreen_status(ngx_aigov_model_t *model, void *conf, json_t *out)
{
    ngx_aigov_runtime_t         *rt;
    ngx_aigov_variant_t         *active;
    ngx_aigov_bluegreen_conf_t  *bcf = conf;

    if (bcf == NULL) {
        return NGX_OK;
    }

    rt = ngx_aigov_runtime(model);
    active = rt->active ? rt->active : bcf->active;

    json_object_set_new(out, "mode", json_string("bluegreen"));
    json_object_set_new(out, "active",
                        json_stringn((char *) active->name.data,
                                     active->name.len));

    if (bcf->preview) {
        json_object_set_new(out, "preview",
                            json_pack("{s:s%, s:s%}",
                                      "variant",
                                      (char *) bcf->preview->name.data,
                                      bcf->preview->name.len,
                                      "header",
                                      (char *) bcf->header.name.data,
                                      bcf->header.name.len));
    }

    return NGX_OK;
}


static void *
ngx_aigov_bluegreen_create_model_conf(ngx_conf_t *cf, ngx_aigov_model_t *model)
{
    ngx_aigov_bluegreen_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool, sizeof(ngx_aigov_bluegreen_conf_t));
    if (conf == NULL) {
        return NULL;
    }


    return conf;
}


static char *
ngx_aigov_bluegreen_init_model_conf(ngx_conf_t *cf, ngx_aigov_model_t *model,
    void *conf)
{
    ngx_aigov_bluegreen_conf_t  *bcf = conf;

    if (bcf == NULL) {
        return NGX_CONF_OK;
    }

    if (bcf->active == NULL) {
        return "\"preview\" needs \"active\": name the colour serving "
               "traffic";
    }

    if (bcf->preview == bcf->active) {
        return "the \"preview\" variant is the \"active\" one";
    }

    return NGX_CONF_OK;
}


static char *
ngx_aigov_bluegreen_active(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_aigov_bluegreen_conf_t *bcf = conf;

    ngx_str_t  *value;

    if (bcf->active) {
        return "is duplicate";
    }

    value = cf->args->elts;

    bcf->active = ngx_aigov_conf_variant(cf, &value[1]);

    return bcf->active ? NGX_CONF_OK : NGX_CONF_ERROR;
}


/* preview VARIANT [header=NAME] */

static char *
ngx_aigov_bluegreen_preview(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_aigov_bluegreen_conf_t *bcf = conf;

    ngx_str_t  *value, name;

    if (bcf->preview) {
        return "is duplicate";
    }

    value = cf->args->elts;

    bcf->preview = ngx_aigov_conf_variant(cf, &value[1]);
    if (bcf->preview == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_str_set(&name, "X-Aigov-Preview");

    if (cf->args->nelts == 3) {
        if (ngx_strncmp(value[2].data, "header=", 7) != 0
            || value[2].len == 7)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"%V\" in \"preview\": "
                               "use \"header=NAME\"", &value[2]);
            return NGX_CONF_ERROR;
        }

        name.data = value[2].data + 7;
        name.len = value[2].len - 7;
    }

    if (ngx_aigov_header_prepare(cf, &name, &bcf->header) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}
