/*
 * ngx_aigov upstream: "aigov_upstream NAME;" declares an upstream whose
 * peer selection hands each request to the upstream{} of the variant the
 * decision chose, with that upstream's own balancer and keepalive pool.
 *
 *     aigov_upstream  aigov;
 *     location /v1/ { aigov_route openai; proxy_pass http://aigov; }
 *
 * It does what proxy_pass http://$aigov_upstream does without evaluating
 * and parsing a URL and searching the upstream list on every request.
 */

#include "ngx_http_aigov_module.h"


static ngx_int_t ngx_http_aigov_upstream_init(ngx_conf_t *cf,
    ngx_http_upstream_srv_conf_t *us);
static ngx_int_t ngx_http_aigov_upstream_init_peer(ngx_http_request_t *r,
    ngx_http_upstream_srv_conf_t *us);


char *
ngx_http_aigov_upstream(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_url_t                      u;
    ngx_str_t                     *value;
    ngx_http_upstream_srv_conf_t  *uscf;

    value = cf->args->elts;

    if (ngx_strlchr(value[1].data, value[1].data + value[1].len, ':')
        || value[1].data[0] == '$')
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid aigov_upstream name \"%V\": use a plain "
                           "name, as in upstream{}", &value[1]);
        return NGX_CONF_ERROR;
    }

    ngx_memzero(&u, sizeof(ngx_url_t));

    u.host = value[1];
    u.no_resolve = 1;
    u.no_port = 1;

    uscf = ngx_http_upstream_add(cf, &u, NGX_HTTP_UPSTREAM_CREATE);
    if (uscf == NULL) {
        return NGX_CONF_ERROR;
    }

    uscf->peer.init_upstream = ngx_http_aigov_upstream_init;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_aigov_upstream_init(ngx_conf_t *cf, ngx_http_upstream_srv_conf_t *us)
{
    us->peer.init = ngx_http_aigov_upstream_init_peer;

    return NGX_OK;
}


NGX_AIGOV_HOT
static ngx_int_t
ngx_http_aigov_upstream_init_peer(ngx_http_request_t *r,
    ngx_http_upstream_srv_conf_t *us)
{
    ngx_aigov_ctx_t               *ctx;
    ngx_http_upstream_srv_conf_t  *uscf;

    ctx = ngx_http_get_module_ctx(r, ngx_http_aigov_module);

    if (ctx == NULL || ctx->variant == NULL || ctx->variant->uscf == NULL) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "aigov_upstream \"%V\" used in a location without "
                      "\"aigov_route\"", &us->host);
        return NGX_ERROR;
    }

    uscf = ctx->variant->uscf;

    if (uscf->peer.init == NULL) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "aigov: upstream \"%V\" of variant \"%V\" is not "
                      "initialised", &uscf->host, &ctx->variant->name);
        return NGX_ERROR;
    }

    /* from here on the request belongs to the variant's upstream */
    r->upstream->upstream = uscf;

    return uscf->peer.init(r, uscf);
}
