/*
 * ngx_aigov variables: the outcome of the decision, for proxy_pass,
 * add_header, log_format and map.  Empty ("not found") where no decision
 * was made.
 */

#include "ngx_http_aigov_module.h"


#define NGX_HTTP_AIGOV_VAR_UPSTREAM    0
#define NGX_HTTP_AIGOV_VAR_VARIANT     1
#define NGX_HTTP_AIGOV_VAR_VERSION     2
#define NGX_HTTP_AIGOV_VAR_MODEL       3
#define NGX_HTTP_AIGOV_VAR_DECISION    4
#define NGX_HTTP_AIGOV_VAR_FALLBACK    5
#define NGX_HTTP_AIGOV_VAR_RULE        6


static ngx_int_t ngx_http_aigov_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);


static ngx_http_variable_t  ngx_http_aigov_vars[] = {

    { ngx_string("aigov_upstream"), NULL, ngx_http_aigov_variable,
      NGX_HTTP_AIGOV_VAR_UPSTREAM, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("aigov_variant"), NULL, ngx_http_aigov_variable,
      NGX_HTTP_AIGOV_VAR_VARIANT, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("aigov_model_version"), NULL, ngx_http_aigov_variable,
      NGX_HTTP_AIGOV_VAR_VERSION, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("aigov_model"), NULL, ngx_http_aigov_variable,
      NGX_HTTP_AIGOV_VAR_MODEL, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("aigov_decision"), NULL, ngx_http_aigov_variable,
      NGX_HTTP_AIGOV_VAR_DECISION, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("aigov_fallback"), NULL, ngx_http_aigov_variable,
      NGX_HTTP_AIGOV_VAR_FALLBACK, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("aigov_fallback_rule"), NULL, ngx_http_aigov_variable,
      NGX_HTTP_AIGOV_VAR_RULE, NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


static ngx_int_t
ngx_http_aigov_variable(ngx_http_request_t *r, ngx_http_variable_value_t *v,
    uintptr_t data)
{
    const char       *d;
    ngx_str_t        *s;
    ngx_aigov_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r->main, ngx_http_aigov_module);

    if (ctx == NULL || ctx->model == NULL) {
        v->not_found = 1;
        return NGX_OK;
    }

    s = NULL;

    switch (data) {

    case NGX_HTTP_AIGOV_VAR_MODEL:
        s = &ctx->model->name;
        break;

    case NGX_HTTP_AIGOV_VAR_DECISION:
        if (ctx->decision == NGX_AIGOV_DECISION_NONE) {
            break;
        }

        d = ngx_http_aigov_decision_name(ctx->decision);
        goto text;

    case NGX_HTTP_AIGOV_VAR_FALLBACK:
        if (ctx->fallback == NGX_AIGOV_FALLBACK_NONE) {
            break;
        }

        d = ngx_aigov_fallback_name(ctx->fallback);
        goto text;

    case NGX_HTTP_AIGOV_VAR_RULE:
        if (ctx->fallback_rule.len) {
            s = &ctx->fallback_rule;
        }
        break;

    default:
        if (ctx->variant == NULL) {
            break;
        }

        if (data == NGX_HTTP_AIGOV_VAR_UPSTREAM) {
            s = &ctx->variant->upstream;

        } else if (data == NGX_HTTP_AIGOV_VAR_VARIANT) {
            s = &ctx->variant->name;

        } else {
            s = &ctx->variant->version;
        }
    }

    if (s == NULL) {
        v->not_found = 1;
        return NGX_OK;
    }

    v->len = s->len;
    v->data = s->data;
    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;

    return NGX_OK;

text:

    v->len = ngx_strlen(d);
    v->data = (u_char *) d;
    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;

    return NGX_OK;
}


ngx_int_t
ngx_http_aigov_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var, *v;

    for (v = ngx_http_aigov_vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    return NGX_OK;
}
