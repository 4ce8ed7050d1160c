/*
 * ngx_aigov canary plugin: weighted split between the stable variant and
 * one or more candidates, with overrides.
 *
 *   aigov_model chat {
 *       variant v1 chat_v1 version=1.4.2 stable;
 *       variant v2 chat_v2 version=1.5.0;
 *       variant v3 chat_v3 version=1.6.0;
 *       canary        v2 5%;                  # 0.01 % resolution
 *       canary        v3 0.25%;
 *       canary_header X-Canary;               # "always" -> v2, "never" -> v1
 *       canary_header X-Beta value=yes variant=v3;
 *       canary_header X-Tenant pattern=^team- variant=v3;
 *       canary_cookie aigov_canary;           # "always" / "never"
 *       canary_sticky $http_x_api_key;        # same key, same variant
 *   }
 *
 * Precedence: canary_header lines in order, then canary_cookie, then the
 * split (by the sticky key when it is not empty, else at random).
 */

#include "ngx_http_aigov_module.h"


typedef struct {
    ngx_str_t                  name;
    ngx_aigov_header_t         header;         /* canary_header */
    ngx_int_t                  index;          /* canary_cookie: $cookie_ */
    ngx_str_t                  value;          /* value=: exact match */
#if (NGX_PCRE)
    ngx_regex_t               *regex;          /* pattern=: regex match */
#else
    void                      *regex;          /* always NULL */
#endif
    ngx_aigov_variant_t       *variant;        /* NULL: first candidate */
} ngx_aigov_canary_override_t;


typedef struct {
    ngx_uint_t                 n;
    uint32_t                   weights[NGX_AIGOV_MAX_VARIANTS];
    ngx_aigov_variant_t       *candidates[NGX_AIGOV_MAX_VARIANTS];
    ngx_array_t                headers;        /* ngx_aigov_canary_override_t */
    ngx_aigov_canary_override_t *cookie;
    ngx_http_complex_value_t  *sticky;
    ngx_aigov_header_t         sticky_header;  /* $http_NAME alone */
    ngx_aigov_variant_t       *first;          /* default override target */
} ngx_aigov_canary_conf_t;


static ngx_int_t ngx_aigov_canary_decide(ngx_http_request_t *r,
    ngx_aigov_ctx_t *ctx);
static ngx_int_t ngx_aigov_canary_override(ngx_http_request_t *r,
    ngx_aigov_ctx_t *ctx, ngx_aigov_canary_override_t *o,
    ngx_aigov_decision_e decision);
static ngx_int_t ngx_aigov_canary_status(ngx_aigov_model_t *model,
    void *conf, json_t *out);
static void *ngx_aigov_canary_create_model_conf(ngx_conf_t *cf,
    ngx_aigov_model_t *model);
static char *ngx_aigov_canary_init_model_conf(ngx_conf_t *cf,
    ngx_aigov_model_t *model, void *conf);
static char *ngx_aigov_canary_weight(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_aigov_canary_header(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_aigov_canary_cookie(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_aigov_canary_sticky(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);

extern ngx_aigov_plugin_t  ngx_aigov_bluegreen_plugin;


static ngx_command_t  ngx_aigov_canary_model_commands[] = {

    { ngx_string("canary"),
      NGX_CONF_TAKE2,
      ngx_aigov_canary_weight,
      0,
      0,
      NULL },

    { ngx_string("canary_header"),
      NGX_CONF_TAKE123,
      ngx_aigov_canary_header,
      0,
      0,
      NULL },

    { ngx_string("canary_cookie"),
      NGX_CONF_TAKE12,
      ngx_aigov_canary_cookie,
      0,
      0,
      NULL },

    { ngx_string("canary_sticky"),
      NGX_CONF_TAKE1,
      ngx_aigov_canary_sticky,
      0,
      0,
      NULL },

      ngx_null_command
};


ngx_aigov_plugin_t  ngx_aigov_canary_plugin = {
    NGX_AIGOV_ABI,
    "canary",
    "1.0.0",
    NGX_AIGOV_PRIO_CANARY,
    NULL,                                  /* nginx module */
    ngx_aigov_canary_model_commands,
    ngx_aigov_canary_create_model_conf,
    ngx_aigov_canary_init_model_conf,
    NULL,                                  /* enabled: wherever aigov routes */
    NULL,                                  /* init worker */
    ngx_aigov_canary_decide,
    NULL,                                  /* header filter */
    NULL,                                  /* body filter */
    NULL,                                  /* log */
    ngx_aigov_canary_status,
    0,
    NULL                                   /* needs body */
};


NGX_AIGOV_HOT
static ngx_int_t
ngx_aigov_canary_decide(ngx_http_request_t *r, ngx_aigov_ctx_t *ctx)
{
    int                           i;
    uint32_t                      bucket, *weights;
    ngx_str_t                     key;
    ngx_int_t                     rc;
    ngx_uint_t                    k, n;
    ngx_aigov_runtime_t          *rt;
    ngx_aigov_variant_t         **candidates;
    ngx_aigov_decision_e          decision;
    ngx_aigov_canary_conf_t      *conf;
    ngx_aigov_canary_override_t  *o;

    if (ctx->variant) {
        return NGX_DECLINED;
    }

    conf = ngx_aigov_model_conf(ctx->model, ngx_aigov_canary_plugin);
    rt = ngx_aigov_runtime(ctx->model);

    /* weights set at runtime replace the config's */

    if (rt->has_weights) {
        n = rt->n;
        weights = rt->weights;
        candidates = rt->candidates;

    } else if (conf) {
        n = conf->n;
        weights = conf->weights;
        candidates = conf->candidates;

    } else {
        return NGX_DECLINED;
    }

    if (conf == NULL) {
        /* runtime weights on a model without canary directives */
        bucket = (uint32_t) ngx_random() % AIGOV_WEIGHT_SCALE;
        i = aigov_pick(weights, n, bucket);

        ngx_aigov_choose(r, ctx, (i < 0) ? ctx->model->stable
                                         : candidates[i],
                         NGX_AIGOV_DECISION_WEIGHT);
        return NGX_OK;
    }

    o = conf->headers.elts;

    for (k = 0; k < conf->headers.nelts; k++) {
        rc = ngx_aigov_canary_override(r, ctx, &o[k],
                                       NGX_AIGOV_DECISION_HEADER);
        if (rc != NGX_DECLINED) {
            return rc;
        }
    }

    if (conf->cookie) {
        rc = ngx_aigov_canary_override(r, ctx, conf->cookie,
                                       NGX_AIGOV_DECISION_COOKIE);
        if (rc != NGX_DECLINED) {
            return rc;
        }
    }

    ngx_str_null(&key);

    if (conf->sticky_header.hash) {
        if (ngx_aigov_header_get(r, &conf->sticky_header, &key) != NGX_OK) {
            ngx_str_null(&key);
        }

    } else if (conf->sticky) {
        if (ngx_http_complex_value(r, conf->sticky, &key) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    if (key.len) {
        bucket = aigov_sticky_bucket((char *) ctx->model->name.data,
                                     ctx->model->name.len,
                                     (char *) key.data, key.len);
        decision = NGX_AIGOV_DECISION_STICKY;

    } else {
        bucket = (uint32_t) ngx_random() % AIGOV_WEIGHT_SCALE;
        decision = NGX_AIGOV_DECISION_WEIGHT;
    }

    i = aigov_pick(weights, n, bucket);

    ngx_aigov_choose(r, ctx, (i < 0) ? ctx->model->stable
                                     : candidates[i], decision);

    return NGX_OK;
}


static ngx_int_t
ngx_aigov_canary_override(ngx_http_request_t *r, ngx_aigov_ctx_t *ctx,
    ngx_aigov_canary_override_t *o, ngx_aigov_decision_e decision)
{
    ngx_str_t                   s;
    ngx_http_variable_value_t  *vv;

    if (decision == NGX_AIGOV_DECISION_HEADER) {
        if (ngx_aigov_header_get(r, &o->header, &s) != NGX_OK) {
            return NGX_DECLINED;
        }

    } else {
        vv = ngx_http_get_indexed_variable(r, o->index);

        if (vv == NULL || vv->not_found) {
            return NGX_DECLINED;
        }

        s.data = vv->data;
        s.len = vv->len;
    }

    if (s.len == 0) {
        return NGX_DECLINED;
    }

    if (o->value.len) {
        if (s.len != o->value.len
            || ngx_strncmp(s.data, o->value.data, s.len) != 0)
        {
            return NGX_DECLINED;
        }

        ngx_aigov_choose(r, ctx, o->variant, decision);
        return NGX_OK;
    }

#if (NGX_PCRE)
    if (o->regex) {
        if (ngx_regex_exec(o->regex, &s, NULL, 0) < 0) {
            return NGX_DECLINED;
        }

        ngx_aigov_choose(r, ctx, o->variant, decision);
        return NGX_OK;
    }
#endif

    switch (aigov_override_value((char *) s.data, s.len)) {

    case AIGOV_OVERRIDE_ALWAYS:
        ngx_aigov_choose(r, ctx, o->variant, decision);
        return NGX_OK;

    case AIGOV_OVERRIDE_NEVER:
        ngx_aigov_choose(r, ctx, ctx->model->stable, decision);
        return NGX_OK;

    default:
        return NGX_DECLINED;
    }
}


static ngx_int_t
ngx_aigov_canary_status(ngx_aigov_model_t *model, void *conf, json_t *out)
{
    char                      buf[8];
    json_t                   *w;
    size_t                    len;
    uint32_t                  rest, *weights;
    ngx_uint_t                i, n;
    ngx_aigov_runtime_t      *rt;
    ngx_aigov_variant_t     **candidates;
    ngx_aigov_canary_conf_t  *ccf = conf;

    rt = ngx_aigov_runtime(model);

    if (rt->has_weights) {
        n = rt->n;
        weights = rt->weights;
        candidates = rt->candidates;

    } else if (ccf) {
        n = ccf->n;
        weights = ccf->weights;
        candidates = ccf->candidates;

    } else {
        return NGX_OK;
    }

    w = json_object();
    if (w == NULL) {
        return NGX_ERROR;
    }

    for (i = 0; i < n; i++) {
        len = aigov_format_percent(weights[i], buf);
        buf[len++] = '%';
        json_object_setn_new(w, (char *) candidates[i]->name.data,
                             candidates[i]->name.len,
                             json_stringn(buf, len));
    }

    rest = AIGOV_WEIGHT_SCALE - aigov_weights_sum(weights, n);
    len = aigov_format_percent(rest, buf);
    buf[len++] = '%';
    json_object_setn_new(w, (char *) model->stable->name.data,
                         model->stable->name.len, json_stringn(buf, len));

    json_object_set_new(out, "mode", json_string("canary"));
    json_object_set_new(out, "weights", w);
    json_object_set_new(out, "weights_from",
                        json_string(rt->has_weights ? "runtime" : "config"));
    json_object_set_new(out, "sticky",
                        json_boolean(ccf && ccf->sticky != NULL));

    return NGX_OK;
}


static void *
ngx_aigov_canary_create_model_conf(ngx_conf_t *cf, ngx_aigov_model_t *model)
{
    ngx_aigov_canary_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool, sizeof(ngx_aigov_canary_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    if (ngx_array_init(&conf->headers, cf->pool, 2,
                       sizeof(ngx_aigov_canary_override_t))
        != NGX_OK)
    {
        return NULL;
    }

    return conf;
}


static char *
ngx_aigov_canary_init_model_conf(ngx_conf_t *cf, ngx_aigov_model_t *model,
    void *conf)
{
    ngx_uint_t                    i;
    ngx_aigov_variant_t          *v;
    ngx_aigov_canary_conf_t      *ccf = conf;
    ngx_aigov_canary_override_t  *o;

    if (ccf == NULL) {
        return NGX_CONF_OK;
    }

    if (ngx_aigov_model_conf(model, ngx_aigov_bluegreen_plugin)) {
        return "canary directives and blue-green \"active\"/\"preview\" "
               "cannot be mixed in one model";
    }

    /* overrides without variant= go to the first weighted candidate,
     * or else the first candidate declared */

    ccf->first = ccf->n ? ccf->candidates[0] : NULL;

    if (ccf->first == NULL) {
        v = model->variants.elts;

        for (i = 0; i < model->variants.nelts; i++) {
            if (v[i].role == NGX_AIGOV_ROLE_CANDIDATE) {
                ccf->first = &v[i];
                break;
            }
        }
    }

    o = ccf->headers.elts;

    for (i = 0; i < ccf->headers.nelts; i++) {
        if (o[i].variant == NULL) {
            if (ccf->first == NULL) {
                return "\"canary_header\" needs a candidate variant";
            }
            o[i].variant = ccf->first;
        }
    }

    if (ccf->cookie && ccf->cookie->variant == NULL) {
        if (ccf->first == NULL) {
            return "\"canary_cookie\" needs a candidate variant";
        }
        ccf->cookie->variant = ccf->first;
    }

    return NGX_CONF_OK;
}


/* canary VARIANT PERCENT */

static char *
ngx_aigov_canary_weight(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_aigov_canary_conf_t *ccf = conf;

    char                  buf[8];
    uint32_t              w, sum;
    ngx_str_t            *value;
    ngx_uint_t            i;
    ngx_aigov_model_t    *model;
    ngx_aigov_variant_t  *v;

    value = cf->args->elts;
    model = (ngx_aigov_model_t *) cf->handler_conf;

    v = ngx_aigov_conf_variant(cf, &value[1]);
    if (v == NULL) {
        return NGX_CONF_ERROR;
    }

    if (v->role == NGX_AIGOV_ROLE_STABLE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "variant \"%V\" is the stable variant of "
                           "aigov_model \"%V\": \"canary\" weights are for "
                           "candidates, the stable one gets the rest",
                           &v->name, &model->name);
        return NGX_CONF_ERROR;
    }

    for (i = 0; i < ccf->n; i++) {
        if (ccf->candidates[i] == v) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "duplicate \"canary\" weight for variant "
                               "\"%V\"", &v->name);
            return NGX_CONF_ERROR;
        }
    }

    if (aigov_parse_percent((char *) value[2].data, value[2].len, &w)
        != AIGOV_OK)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid canary weight \"%V\": use a percentage "
                           "from 0%% to 100%% with at most two decimals, "
                           "e.g. \"5%%\" or \"0.25%%\"", &value[2]);
        return NGX_CONF_ERROR;
    }

    ccf->weights[ccf->n] = w;
    ccf->candidates[ccf->n] = v;
    ccf->n++;

    sum = aigov_weights_sum(ccf->weights, ccf->n);

    if (sum > AIGOV_WEIGHT_SCALE) {
        buf[aigov_format_percent(sum, buf)] = '\0';
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "canary weights of aigov_model \"%V\" add up to "
                           "%s%%, more than 100%%", &model->name, buf);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static char *
ngx_aigov_canary_target(ngx_conf_t *cf, ngx_str_t *arg,
    ngx_aigov_canary_override_t *o)
{
    ngx_str_t  name;

    name.data = arg->data + 8;
    name.len = arg->len - 8;

    o->variant = ngx_aigov_conf_variant(cf, &name);

    return o->variant ? NGX_CONF_OK : NGX_CONF_ERROR;
}


/* canary_header NAME [value=V | pattern=REGEX] [variant=NAME] */

static char *
ngx_aigov_canary_header(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_aigov_canary_conf_t *ccf = conf;

    ngx_str_t                    *value;
    ngx_uint_t                    i;
    ngx_aigov_canary_override_t  *o;
#if (NGX_PCRE)
    u_char                        errstr[NGX_MAX_CONF_ERRSTR];
    ngx_regex_compile_t           rc;
#endif

    value = cf->args->elts;

    o = ngx_array_push(&ccf->headers);
    if (o == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(o, sizeof(ngx_aigov_canary_override_t));

    o->name = value[1];

    if (ngx_aigov_header_prepare(cf, &o->name, &o->header) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "value=", 6) == 0
            && value[i].len > 6 && o->value.len == 0 && o->regex == NULL)
        {
            o->value.data = value[i].data + 6;
            o->value.len = value[i].len - 6;
            continue;
        }

#if (NGX_PCRE)
        if (ngx_strncmp(value[i].data, "pattern=", 8) == 0
            && value[i].len > 8 && o->value.len == 0 && o->regex == NULL)
        {
            ngx_memzero(&rc, sizeof(ngx_regex_compile_t));

            rc.pattern.data = value[i].data + 8;
            rc.pattern.len = value[i].len - 8;
            rc.pool = cf->pool;
            rc.err.len = NGX_MAX_CONF_ERRSTR;
            rc.err.data = errstr;

            if (ngx_regex_compile(&rc) != NGX_OK) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid pattern in \"canary_header\": "
                                   "%V", &rc.err);
                return NGX_CONF_ERROR;
            }

            o->regex = rc.regex;
            continue;
        }
#else
        if (ngx_strncmp(value[i].data, "pattern=", 8) == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"pattern=\" in \"canary_header\" needs "
                               "nginx built with PCRE");
            return NGX_CONF_ERROR;
        }
#endif

        if (ngx_strncmp(value[i].data, "variant=", 8) == 0
            && o->variant == NULL)
        {
            if (ngx_aigov_canary_target(cf, &value[i], o) != NGX_CONF_OK) {
                return NGX_CONF_ERROR;
            }
            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\" in \"canary_header\": "
                           "use \"value=V\" or \"pattern=REGEX\", and "
                           "\"variant=NAME\"", &value[i]);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* canary_cookie NAME [variant=NAME] */

static char *
ngx_aigov_canary_cookie(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_aigov_canary_conf_t *ccf = conf;

    ngx_str_t  *value;

    if (ccf->cookie) {
        return "is duplicate";
    }

    value = cf->args->elts;

    ccf->cookie = ngx_pcalloc(cf->pool, sizeof(ngx_aigov_canary_override_t));
    if (ccf->cookie == NULL) {
        return NGX_CONF_ERROR;
    }

    ccf->cookie->name = value[1];

    ccf->cookie->index = ngx_aigov_cookie_index(cf, &value[1]);
    if (ccf->cookie->index == NGX_ERROR) {
        return NGX_CONF_ERROR;
    }

    if (cf->args->nelts == 3) {
        if (ngx_strncmp(value[2].data, "variant=", 8) != 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"%V\" in "
                               "\"canary_cookie\": use \"variant=NAME\"",
                               &value[2]);
            return NGX_CONF_ERROR;
        }

        return ngx_aigov_canary_target(cf, &value[2], ccf->cookie);
    }

    return NGX_CONF_OK;
}


static char *
ngx_aigov_canary_sticky(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_aigov_canary_conf_t *ccf = conf;

    ngx_str_t                         *value;
    ngx_http_compile_complex_value_t   ccv;

    if (ccf->sticky) {
        return "is duplicate";
    }

    value = cf->args->elts;

    ccf->sticky = ngx_palloc(cf->pool, sizeof(ngx_http_complex_value_t));
    if (ccf->sticky == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));

    ccv.cf = cf;
    ccv.value = &value[1];
    ccv.complex_value = ccf->sticky;

    if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    if (ccf->sticky->lengths == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"canary_sticky\" needs a variable, e.g. "
                           "$http_x_api_key: \"%V\" is the same for every "
                           "request", &value[1]);
        return NGX_CONF_ERROR;
    }

#if (nginx_version < 1023000)
    /* the variable is the header's first line, as ngx_aigov_header_get() */
    if (ngx_aigov_header_variable(cf, &value[1], &ccf->sticky_header)
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }
#endif

    return NGX_CONF_OK;
}
