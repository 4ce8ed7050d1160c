/*
 * ngx_aigov rollback plugin: the emergency controls of a model.
 *
 *   aigov_model chat {
 *       rollback     on;                   # all traffic to the stable variant
 *       kill_switch  on [retry_after=30s]; # 503 problem, no upstream call
 *   }
 *
 * Runs first (priority 1000): a switched-off or rolled-back model ignores
 * every override, pin and split below it.
 */

#include "ngx_http_aigov_module.h"


typedef struct {
    ngx_flag_t                 rollback;
    ngx_flag_t                 kill;
    time_t                     retry_after;
} ngx_aigov_rollback_conf_t;


static ngx_int_t ngx_aigov_rollback_decide(ngx_http_request_t *r,
    ngx_aigov_ctx_t *ctx);
static ngx_int_t ngx_aigov_rollback_status(ngx_aigov_model_t *model,
    void *conf, json_t *out);
static void *ngx_aigov_rollback_create_model_conf(ngx_conf_t *cf,
    ngx_aigov_model_t *model);
static char *ngx_aigov_rollback_kill_switch(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);


static ngx_command_t  ngx_aigov_rollback_model_commands[] = {

    { ngx_string("rollback"),
      NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      0,
      offsetof(ngx_aigov_rollback_conf_t, rollback),
      NULL },

    { ngx_string("kill_switch"),
      NGX_CONF_TAKE12,
      ngx_aigov_rollback_kill_switch,
      0,
      0,
      NULL },

      ngx_null_command
};


ngx_aigov_plugin_t  ngx_aigov_rollback_plugin = {
    NGX_AIGOV_ABI,
    "rollback",
    "1.0.0",
    NGX_AIGOV_PRIO_ROLLBACK,
    NULL,                                  /* nginx module */
    ngx_aigov_rollback_model_commands,
    ngx_aigov_rollback_create_model_conf,
    NULL,                                  /* init model conf */
    NULL,                                  /* enabled: wherever aigov routes */
    NULL,                                  /* init worker */
    ngx_aigov_rollback_decide,
    NULL,                                  /* header filter */
    NULL,                                  /* body filter */
    NULL,                                  /* log */
    ngx_aigov_rollback_status,
    0,
    NULL                                   /* needs body */
};


NGX_AIGOV_HOT
static ngx_int_t
ngx_aigov_rollback_decide(ngx_http_request_t *r, ngx_aigov_ctx_t *ctx)
{
    time_t                      retry_after;
    ngx_str_t                   detail;
    ngx_aigov_runtime_t        *rt;
    ngx_aigov_rollback_conf_t  *conf;

    conf = ngx_aigov_model_conf(ctx->model, ngx_aigov_rollback_plugin);
    rt = ngx_aigov_runtime(ctx->model);

    /* an emergency in the config cannot be undone at runtime */

    if ((conf && conf->kill == 1) || rt->kill == 1) {
        ngx_aigov_choose(r, ctx, NULL, NGX_AIGOV_DECISION_KILL);

        detail.len = sizeof("model \"\" is switched off by its kill switch")
                     - 1 + ctx->model->name.len;
        detail.data = ngx_pnalloc(r->pool, detail.len);
        if (detail.data == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ngx_sprintf(detail.data, "model \"%V\" is switched off by its "
                    "kill switch", &ctx->model->name);

        retry_after = conf ? conf->retry_after : 30;

        return ngx_aigov_fallback(r, ctx, NGX_AIGOV_FALLBACK_KILL,
                                  NGX_HTTP_SERVICE_UNAVAILABLE,
                                  "model-disabled", "Model disabled",
                                  &detail, retry_after);
    }

    if ((conf && conf->rollback == 1) || rt->rollback == 1) {
        ngx_aigov_choose(r, ctx, ctx->model->stable,
                         NGX_AIGOV_DECISION_ROLLBACK);
        return NGX_OK;
    }

    return NGX_DECLINED;
}


static ngx_int_t
ngx_aigov_rollback_status(ngx_aigov_model_t *model, void *conf, json_t *out)
{
    ngx_aigov_runtime_t        *rt;
    ngx_aigov_rollback_conf_t  *rcf = conf;

    rt = ngx_aigov_runtime(model);

    /* effective values: config or runtime */
    json_object_set_new(out, "rollback",
                        json_boolean((rcf && rcf->rollback == 1)
                                     || rt->rollback == 1));
    json_object_set_new(out, "kill_switch",
                        json_boolean((rcf && rcf->kill == 1)
                                     || rt->kill == 1));
    json_object_set_new(out, "config",
                        json_pack("{s:b, s:b}",
                                  "rollback", rcf && rcf->rollback == 1,
                                  "kill_switch", rcf && rcf->kill == 1));

    return NGX_OK;
}


static void *
ngx_aigov_rollback_create_model_conf(ngx_conf_t *cf, ngx_aigov_model_t *model)
{
    ngx_aigov_rollback_conf_t  *conf;

    conf = ngx_palloc(cf->pool, sizeof(ngx_aigov_rollback_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    conf->rollback = NGX_CONF_UNSET;
    conf->kill = NGX_CONF_UNSET;
    conf->retry_after = 30;

    return conf;
}


/* kill_switch on|off [retry_after=TIME] */

static char *
ngx_aigov_rollback_kill_switch(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_aigov_rollback_conf_t *rcf = conf;

    ngx_str_t  *value, s;

    if (rcf->kill != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "on") == 0) {
        rcf->kill = 1;

    } else if (ngx_strcmp(value[1].data, "off") == 0) {
        rcf->kill = 0;

    } else {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid value \"%V\" in \"kill_switch\": "
                           "use \"on\" or \"off\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    if (cf->args->nelts == 3) {
        if (ngx_strncmp(value[2].data, "retry_after=", 12) != 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"%V\" in \"kill_switch\"",
                               &value[2]);
            return NGX_CONF_ERROR;
        }

        s.data = value[2].data + 12;
        s.len = value[2].len - 12;

        rcf->retry_after = ngx_parse_time(&s, 1);

        if (rcf->retry_after == (time_t) NGX_ERROR || rcf->retry_after < 1) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid retry_after \"%V\" in "
                               "\"kill_switch\": use seconds, at least 1s",
                               &value[2]);
            return NGX_CONF_ERROR;
        }
    }

    return NGX_CONF_OK;
}
