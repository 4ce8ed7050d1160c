/*
 * ngx_aigov core: directives, the decision phase handler that runs the
 * plugin chain, the filters and log handler that dispatch to plugins, and
 * the services plugins use (problem responses, headers, variant choice).
 */

#include "ngx_http_aigov_module.h"


static ngx_int_t ngx_http_aigov_handler(ngx_http_request_t *r);
static void ngx_http_aigov_body_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_aigov_run_chain(ngx_http_request_t *r,
    ngx_aigov_ctx_t *ctx);
static void ngx_http_aigov_count(ngx_aigov_ctx_t *ctx);
static ngx_int_t ngx_http_aigov_header_filter(ngx_http_request_t *r);
static ngx_int_t ngx_http_aigov_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in);
static ngx_int_t ngx_http_aigov_log_handler(ngx_http_request_t *r);
static void ngx_http_aigov_json_cleanup(void *data);

static char *ngx_http_aigov_route(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_http_aigov_preconfiguration(ngx_conf_t *cf);
static ngx_int_t ngx_http_aigov_postconfiguration(ngx_conf_t *cf);
static void *ngx_http_aigov_create_main_conf(ngx_conf_t *cf);
static void *ngx_http_aigov_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_aigov_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static char *ngx_http_aigov_hooks_init(ngx_conf_t *cf,
    ngx_http_aigov_loc_conf_t *alcf);
static char *ngx_http_aigov_chain_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static ngx_int_t ngx_http_aigov_chain_postconfiguration(ngx_conf_t *cf);
static ngx_int_t ngx_http_aigov_init_process(ngx_cycle_t *cycle);
static void ngx_http_aigov_exit_process(ngx_cycle_t *cycle);


static ngx_command_t  ngx_http_aigov_commands[] = {

    { ngx_string("aigov_zone"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_aigov_zone,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("aigov_model"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_BLOCK|NGX_CONF_TAKE1,
      ngx_http_aigov_model_block,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("aigov_redis"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_http_aigov_redis,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("aigov_upstream"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_aigov_upstream,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("aigov_route"),
      NGX_HTTP_LOC_CONF|NGX_CONF_TAKE12,
      ngx_http_aigov_route,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("aigov_admin"),
      NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_aigov_admin,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("aigov_status"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_aigov_status,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_aigov_module_ctx = {
    ngx_http_aigov_preconfiguration,       /* preconfiguration */
    ngx_http_aigov_postconfiguration,      /* postconfiguration */

    ngx_http_aigov_create_main_conf,       /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_aigov_create_loc_conf,        /* create location configuration */
    ngx_http_aigov_merge_loc_conf          /* merge location configuration */
};


ngx_module_t  ngx_http_aigov_module = {
    NGX_MODULE_V1,
    &ngx_http_aigov_module_ctx,            /* module context */
    ngx_http_aigov_commands,               /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_http_aigov_init_process,           /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_aigov_exit_process,           /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


/*
 * The chain module is listed last in the addon (config), after every
 * plugin module: nginx merges location confs module by module, so when
 * its merge runs, the core's and every plugin's conf of that location are
 * final, and the location's plugin chain can be built once, at load time.
 * Its postconfiguration, the last of the addon's, registers the core's
 * filters.
 */
static ngx_http_module_t  ngx_http_aigov_chain_module_ctx = {
    NULL,                                  /* preconfiguration */
    ngx_http_aigov_chain_postconfiguration, /* postconfiguration */
    NULL, NULL, NULL, NULL, NULL,
    ngx_http_aigov_chain_merge_loc_conf
};


ngx_module_t  ngx_http_aigov_chain_module = {
    NGX_MODULE_V1,
    &ngx_http_aigov_chain_module_ctx,
    NULL,
    NGX_HTTP_MODULE,
    NULL, NULL, NULL, NULL, NULL, NULL, NULL,
    NGX_MODULE_V1_PADDING
};


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;
static ngx_http_output_body_filter_pt    ngx_http_next_body_filter;


/* The decision, in the preaccess phase (where limit_req runs). */

NGX_AIGOV_HOT
static ngx_int_t
ngx_http_aigov_handler(ngx_http_request_t *r)
{
    ngx_int_t                   rc;
    ngx_aigov_ctx_t            *ctx;
    ngx_http_aigov_loc_conf_t  *alcf;

    alcf = ngx_http_get_module_loc_conf(r, ngx_http_aigov_module);

    if (alcf->source == NGX_HTTP_AIGOV_SRC_NONE || r != r->main) {
        return NGX_DECLINED;
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_aigov_module);

    if (ctx == NULL) {
        ctx = ngx_pcalloc(r->pool, sizeof(ngx_aigov_ctx_t));
        if (ctx == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ctx->plugins = alcf->chain;
        ctx->hooks = alcf->hooks;
        ctx->start = ngx_current_msec;

        ngx_http_set_ctx(r, ctx, ngx_http_aigov_module);

    } else if (ctx->decided) {
        return NGX_DECLINED;
    }

    if (ctx->model == NULL) {

        if ((alcf->source == NGX_HTTP_AIGOV_SRC_OPENAI || alcf->read_body)
            && !ctx->body_read)
        {
            r->request_body_in_single_buf = 1;

            rc = ngx_http_read_client_request_body(r,
                                                   ngx_http_aigov_body_handler);
            if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
                return rc;
            }

            ngx_http_finalize_request(r, NGX_DONE);
            return NGX_DONE;
        }

        rc = ngx_http_aigov_identify(r, alcf, ctx);

        if (rc == NGX_DONE) {
            return NGX_DONE;      /* answered: r may be freed already */
        }

        if (rc != NGX_OK) {
            ctx->decided = 1;
            return rc;
        }
    }

    return ngx_http_aigov_run_chain(r, ctx);
}


static void
ngx_http_aigov_body_handler(ngx_http_request_t *r)
{
    ngx_aigov_ctx_t            *ctx;
    ngx_http_aigov_loc_conf_t  *alcf;

    ctx = ngx_http_get_module_ctx(r, ngx_http_aigov_module);
    ctx->body_read = 1;

    /* the body must still reach the upstream after we parsed it */
    r->preserve_body = 1;

    alcf = ngx_http_get_module_loc_conf(r, ngx_http_aigov_module);

    if (alcf->source != NGX_HTTP_AIGOV_SRC_OPENAI
        && ngx_http_aigov_body_bytes(r, &ctx->body) == NGX_ERROR)
    {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    r->write_event_handler = ngx_http_core_run_phases;
    ngx_http_core_run_phases(r);
}


static ngx_int_t
ngx_http_aigov_run_chain(ngx_http_request_t *r, ngx_aigov_ctx_t *ctx)
{
    ngx_int_t            rc;
    ngx_uint_t           i;
    ngx_aigov_plugin_t **plugin;

    plugin = ctx->plugins->elts;

    for (i = ctx->next_plugin; i < ctx->plugins->nelts; i++) {

        if (plugin[i]->decide == NULL) {
            continue;
        }

        rc = plugin[i]->decide(r, ctx);

        if (rc == NGX_DONE) {
            /*
             * The plugin answered and finalized the request: r and ctx
             * (from r->pool) may be freed already.  Touch nothing.
             */
            return NGX_DONE;
        }

        ngx_log_debug3(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "aigov plugin \"%s\" decide: %i, variant: %p",
                       plugin[i]->name, rc, ctx->variant);

        switch (rc) {

        case NGX_OK:
        case NGX_DECLINED:
            continue;

        case NGX_AGAIN:
            ctx->next_plugin = i;
            return NGX_AGAIN;

        default: /* NGX_ERROR, NGX_HTTP_* */
            ctx->decided = 1;

            if (ctx->decision != NGX_AIGOV_DECISION_NONE) {
                ngx_http_aigov_count(ctx);
            }

            return rc;
        }
    }

    if (ctx->variant == NULL) {
        ngx_aigov_choose(r, ctx, ctx->model->stable,
                         NGX_AIGOV_DECISION_STABLE);
    }

    ctx->decided = 1;
    ngx_http_aigov_count(ctx);

    ngx_log_debug4(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "aigov model \"%V\" variant \"%V\" upstream \"%V\" (%s)",
                   &ctx->model->name, &ctx->variant->name,
                   &ctx->variant->upstream,
                   ngx_http_aigov_decision_name(ctx->decision));

    return NGX_DECLINED;
}


NGX_AIGOV_HOT
static ngx_int_t
ngx_http_aigov_header_filter(ngx_http_request_t *r)
{
    ngx_int_t                rc;
    ngx_uint_t               i;
    ngx_aigov_ctx_t         *ctx;
    ngx_aigov_plugin_t     **plugin;
    ngx_http_aigov_hooks_t  *hooks;

    ctx = (r == r->main) ? ngx_http_get_module_ctx(r, ngx_http_aigov_module)
                         : NULL;

    if (ctx == NULL || ctx->model == NULL) {
        return ngx_http_next_header_filter(r);
    }

    hooks = ctx->hooks;
    plugin = hooks->header;

    for (i = 0; i <= hooks->nheader; i++) {

        if (i == hooks->header_rules) {
            /*
             * An upstream failure before the header goes to the rules here:
             * after the plugins that may answer better (a stale cache
             * entry), before those that describe the answer (annotate).
             */
            if (ngx_http_aigov_fallback_header(r, ctx) == NGX_ERROR) {
                return NGX_ERROR;
            }
        }

        if (i == hooks->nheader) {
            break;
        }

        rc = plugin[i]->header_filter(r, ctx);
        if (rc != NGX_OK && rc != NGX_DECLINED) {
            return rc;
        }
    }

    return ngx_http_next_header_filter(r);
}


NGX_AIGOV_HOT
static ngx_int_t
ngx_http_aigov_body_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    ngx_int_t                rc;
    ngx_uint_t               i;
    ngx_aigov_ctx_t         *ctx;
    ngx_aigov_plugin_t     **plugin;
    ngx_http_aigov_hooks_t  *hooks;

    ctx = (r == r->main) ? ngx_http_get_module_ctx(r, ngx_http_aigov_module)
                         : NULL;

    if (ctx == NULL || ctx->model == NULL) {
        return ngx_http_next_body_filter(r, in);
    }

    if (ctx->fallback_out) {
        /* a response replaced by a fallback rule */
        return ngx_http_aigov_fallback_body(r, ctx, in,
                                            ngx_http_next_body_filter);
    }

    hooks = ctx->hooks;
    plugin = hooks->body;

    for (i = 0; i < hooks->nbody; i++) {
        rc = plugin[i]->body_filter(r, ctx, in);
        if (rc != NGX_OK && rc != NGX_DECLINED) {
            return rc;
        }
    }

    return ngx_http_next_body_filter(r, in);
}


NGX_AIGOV_HOT
static ngx_int_t
ngx_http_aigov_log_handler(ngx_http_request_t *r)
{
    ngx_uint_t               i;
    ngx_aigov_ctx_t         *ctx;
    ngx_aigov_plugin_t     **plugin;
    ngx_http_aigov_hooks_t  *hooks;

    ctx = ngx_http_get_module_ctx(r, ngx_http_aigov_module);

    if (ctx == NULL || ctx->model == NULL) {
        return NGX_OK;
    }

    hooks = ctx->hooks;
    plugin = hooks->log;

    for (i = 0; i < hooks->nlog; i++) {
        plugin[i]->log(r, ctx);
    }

    return NGX_OK;
}


/* Services for plugins. */

ngx_aigov_ctx_t *
ngx_aigov_get_ctx(ngx_http_request_t *r)
{
    return ngx_http_get_module_ctx(r->main, ngx_http_aigov_module);
}


ngx_aigov_variant_t *
ngx_aigov_find_variant(ngx_aigov_model_t *model, ngx_str_t *name)
{
    ngx_uint_t            i;
    ngx_aigov_variant_t  *v;

    v = model->variants.elts;

    for (i = 0; i < model->variants.nelts; i++) {
        if (v[i].name.len == name->len
            && ngx_strncmp(v[i].name.data, name->data, name->len) == 0)
        {
            return &v[i];
        }
    }

    return NULL;
}


NGX_AIGOV_HOT
void
ngx_aigov_choose(ngx_http_request_t *r, ngx_aigov_ctx_t *ctx,
    ngx_aigov_variant_t *v, ngx_aigov_decision_e decision)
{
    /* counted once, when the decision phase ends: a later plugin may
     * still override (rollback overrides a pinned version) */
    ctx->variant = v;
    ctx->decision = decision;
}


NGX_AIGOV_HOT
static void
ngx_http_aigov_count(ngx_aigov_ctx_t *ctx)
{
    if (ctx->counted) {
        return;
    }

    ctx->counted = 1;

    /*
     * Two lock-free increments: the model counts decisions (its request
     * total is their sum), the variant counts requests.
     */

    if (ctx->model->shm) {
        (void) ngx_atomic_fetch_add(&ctx->model->shm->decisions[ctx->decision],
                                    1);
    }

    if (ctx->variant && ctx->variant->shm) {
        (void) ngx_atomic_fetch_add(&ctx->variant->shm->requests, 1);
    }
}


NGX_AIGOV_HOT
ngx_int_t
ngx_aigov_add_header(ngx_http_request_t *r, ngx_str_t *name,
    ngx_str_t *value)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
#if (nginx_version >= 1023000)
    h->next = NULL;
#endif
    h->key = *name;
    h->value = *value;

    return NGX_OK;
}


static u_char *
ngx_http_aigov_json_str(u_char *p, const char *key, u_char *s, size_t len)
{
    p = ngx_sprintf(p, ",\"%s\":\"", key);
    p += aigov_json_escape((char *) p, (char *) s, len);
    *p++ = '"';

    return p;
}


ngx_int_t
ngx_aigov_send_problem(ngx_http_request_t *r, ngx_uint_t status,
    const char *type, const char *title, ngx_str_t *detail,
    time_t retry_after)
{
    ngx_aigov_ctx_t  *ctx;

    /* the last moment r and ctx are sure to exist */

    ctx = ngx_http_get_module_ctx(r, ngx_http_aigov_module);

    if (ctx && ctx->model) {
        ngx_http_aigov_decided(ctx);
    }

    ngx_http_finalize_request(r,
        ngx_http_aigov_problem(r, status, type, title, detail, retry_after));

    return NGX_DONE;
}


/* The decision phase ended with a response of aigov's: count it. */

void
ngx_http_aigov_decided(ngx_aigov_ctx_t *ctx)
{
    ctx->decided = 1;

    if (ctx->decision != NGX_AIGOV_DECISION_NONE) {
        ngx_http_aigov_count(ctx);
    }
}


/*
 * Sends the response whose headers are set, with body b (NULL: none); the
 * caller finalizes with what it returns.
 */

ngx_int_t
ngx_http_aigov_send_buf(ngx_http_request_t *r, ngx_aigov_ctx_t *ctx,
    ngx_buf_t *b)
{
    ngx_int_t    rc;
    ngx_chain_t  out;

    ctx->responded = 1;

    if (ngx_http_discard_request_body(r) != NGX_OK) {
        r->keepalive = 0;
    }

    if (b == NULL) {
        r->header_only = 1;
    }

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


/*
 * The request body as one piece of memory: joined when it came in several
 * buffers, empty when there is none.  NGX_DECLINED when it did not fit in
 * client_body_buffer_size and went to a temporary file.
 */

ngx_int_t
ngx_http_aigov_body_bytes(ngx_http_request_t *r, ngx_str_t *body)
{
    u_char       *p;
    size_t        len;
    ngx_chain_t  *cl;

    ngx_str_null(body);

    if (r->request_body == NULL || r->request_body->bufs == NULL) {
        return NGX_OK;
    }

    if (r->request_body->temp_file) {
        return NGX_DECLINED;
    }

    cl = r->request_body->bufs;

    if (cl->next == NULL) {
        body->data = cl->buf->pos;
        body->len = cl->buf->last - cl->buf->pos;
        return NGX_OK;
    }

    /* chunked bodies may arrive in several buffers: join them */

    len = 0;
    for ( /* void */ ; cl; cl = cl->next) {
        len += cl->buf->last - cl->buf->pos;
    }

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    body->data = p;
    body->len = len;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        p = ngx_cpymem(p, cl->buf->pos, cl->buf->last - cl->buf->pos);
    }

    return NGX_OK;
}


/* Sends a problem response; the caller finalizes with what it returns. */

ngx_int_t
ngx_http_aigov_problem(ngx_http_request_t *r, ngx_uint_t status,
    const char *type, const char *title, ngx_str_t *detail,
    time_t retry_after)
{
    size_t            len;
    u_char           *p;
    ngx_int_t         rc;
    ngx_str_t         value;
    ngx_buf_t        *b;
    ngx_chain_t       out;
    ngx_aigov_ctx_t  *ctx;

    static ngx_str_t  retry_name = ngx_string("Retry-After");

    ctx = ngx_http_get_module_ctx(r, ngx_http_aigov_module);
    if (ctx) {
        ctx->responded = 1;
    }

    if (ngx_http_discard_request_body(r) != NGX_OK) {
        r->keepalive = 0;
    }

    len = sizeof("{\"type\":\"urn:aigov:problem:\",\"title\":\"\""
                 ",\"status\":,\"detail\":\"\",\"model\":\"\"}\n") - 1
          + ngx_strlen(type) + ngx_strlen(title) + NGX_INT_T_LEN
          + aigov_json_escape_len((char *) detail->data, detail->len);

    if (ctx && ctx->model) {
        len += aigov_json_escape_len((char *) ctx->model->name.data,
                                     ctx->model->name.len);
    }

    b = ngx_create_temp_buf(r->pool, len);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_sprintf(b->last, "{\"type\":\"urn:aigov:problem:%s\""
                             ",\"title\":\"%s\",\"status\":%ui",
                    type, title, status);
    p = ngx_http_aigov_json_str(p, "detail", detail->data, detail->len);

    if (ctx && ctx->model) {
        p = ngx_http_aigov_json_str(p, "model", ctx->model->name.data,
                                    ctx->model->name.len);
    }

    *p++ = '}';
    *p++ = '\n';
    b->last = p;
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    r->headers_out.status = status;
    r->headers_out.content_length_n = b->last - b->pos;
    ngx_str_set(&r->headers_out.content_type, "application/problem+json");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;

    if (retry_after > 0) {
        value.data = ngx_pnalloc(r->pool, NGX_TIME_T_LEN);
        if (value.data == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        value.len = ngx_sprintf(value.data, "%T", retry_after) - value.data;

        if (ngx_aigov_add_header(r, &retry_name, &value) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


static void
ngx_http_aigov_json_cleanup(void *data)
{
    ngx_aigov_ctx_t  *ctx = data;

    if (ctx->json) {
        json_decref((json_t *) ctx->json);
        ctx->json = NULL;
    }
}


ngx_int_t
ngx_http_aigov_keep_json(ngx_http_request_t *r, ngx_aigov_ctx_t *ctx,
    json_t *doc)
{
    ngx_pool_cleanup_t  *cln;

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        json_decref(doc);
        return NGX_ERROR;
    }

    ctx->json = doc;
    cln->handler = ngx_http_aigov_json_cleanup;
    cln->data = ctx;

    return NGX_OK;
}


/* Configuration. */

static char *
ngx_http_aigov_route(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_aigov_loc_conf_t *alcf = conf;

    ngx_str_t                         *value, s;
    ngx_uint_t                         i;
    ngx_http_compile_complex_value_t   ccv;

    if (alcf->source != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;
    alcf->file = cf->conf_file->file.name.data;
    alcf->line = cf->conf_file->line;

    if (ngx_strcmp(value[1].data, "kserve") == 0) {
        alcf->source = NGX_HTTP_AIGOV_SRC_KSERVE;

    } else if (ngx_strcmp(value[1].data, "openai") == 0) {
        alcf->source = NGX_HTTP_AIGOV_SRC_OPENAI;

    } else if (ngx_strncmp(value[1].data, "model=", 6) == 0) {
        alcf->source = NGX_HTTP_AIGOV_SRC_MODEL;

        s.data = value[1].data + 6;
        s.len = value[1].len - 6;

        if (s.len == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "empty model name in \"%V\"", &value[1]);
            return NGX_CONF_ERROR;
        }

        alcf->model_cv = ngx_palloc(cf->pool,
                                    sizeof(ngx_http_complex_value_t));
        if (alcf->model_cv == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));

        ccv.cf = cf;
        ccv.value = &s;
        ccv.complex_value = alcf->model_cv;

        if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
            return NGX_CONF_ERROR;
        }

        if (alcf->model_cv->lengths == NULL
            && !aigov_valid_name((char *) s.data, s.len))
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid model name \"%V\" in aigov_route", &s);
            return NGX_CONF_ERROR;
        }

    } else {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid model source \"%V\" in aigov_route: "
                           "use \"kserve\", \"openai\" or \"model=NAME\"",
                           &value[1]);
        return NGX_CONF_ERROR;
    }

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "default=", 8) == 0
            && alcf->source != NGX_HTTP_AIGOV_SRC_MODEL)
        {
            alcf->default_name.data = value[i].data + 8;
            alcf->default_name.len = value[i].len - 8;

            if (!aigov_valid_name((char *) alcf->default_name.data,
                                  alcf->default_name.len))
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid default model \"%V\" "
                                   "in aigov_route", &value[i]);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\" in aigov_route",
                           &value[i]);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_aigov_plugin_cmp(const void *one, const void *two)
{
    ngx_aigov_plugin_t  *a = *(ngx_aigov_plugin_t **) one;
    ngx_aigov_plugin_t  *b = *(ngx_aigov_plugin_t **) two;

    if (a->priority != b->priority) {
        return (a->priority > b->priority) ? -1 : 1;
    }

    return (a->index < b->index) ? -1 : 1;
}


static ngx_int_t
ngx_http_aigov_preconfiguration(ngx_conf_t *cf)
{
    ngx_uint_t           i;
    ngx_aigov_plugin_t  *p;

    if (ngx_aigov_nplugins > NGX_AIGOV_MAX_PLUGINS) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "aigov: %ui plugins registered, at most %d",
                           ngx_aigov_nplugins, NGX_AIGOV_MAX_PLUGINS);
        return NGX_ERROR;
    }

    for (i = 0; i < ngx_aigov_nplugins; i++) {
        p = ngx_aigov_plugins[i];

        if ((p->abi >> 16) != NGX_AIGOV_ABI_MAJOR) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "aigov plugin \"%s\" was built for plugin "
                               "ABI %ui.%ui, this core speaks %d.%d",
                               p->name, p->abi >> 16, p->abi & 0xffff,
                               NGX_AIGOV_ABI_MAJOR, NGX_AIGOV_ABI_MINOR);
            return NGX_ERROR;
        }

        p->index = i;
        ngx_aigov_plugins_sorted[i] = p;
    }

    ngx_sort(ngx_aigov_plugins_sorted, ngx_aigov_nplugins,
             sizeof(ngx_aigov_plugin_t *), ngx_http_aigov_plugin_cmp);

    return ngx_http_aigov_add_variables(cf);
}


static ngx_int_t
ngx_http_aigov_postconfiguration(ngx_conf_t *cf)
{
    ngx_http_handler_pt         *h;
    ngx_http_core_main_conf_t   *cmcf;
    ngx_http_aigov_main_conf_t  *mcf;

    mcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_aigov_module);

    if (ngx_http_aigov_init_models(cf, mcf) != NGX_OK) {
        return NGX_ERROR;
    }

    if (!mcf->need_handler) {
        /* nothing routes through aigov: stay out of the request path */
        return NGX_OK;
    }

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_PREACCESS_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_aigov_handler;

    if (mcf->need_log) {
        h = ngx_array_push(&cmcf->phases[NGX_HTTP_LOG_PHASE].handlers);
        if (h == NULL) {
            return NGX_ERROR;
        }

        *h = ngx_http_aigov_log_handler;
    }

    return NGX_OK;
}


/*
 * The core's filters are registered by the chain module, the last module
 * of the addon, so that they run before the nginx filters of plugin
 * modules: the plugins' header and body hooks see a response as the
 * upstream sent it, and a plugin's own filter (skew's adaptation of JSON
 * bodies for old clients) changes it after them, on its way to the client.
 */

static ngx_int_t
ngx_http_aigov_chain_postconfiguration(ngx_conf_t *cf)
{
    ngx_http_aigov_main_conf_t  *mcf;

    mcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_aigov_module);

    if (!mcf->need_handler) {
        return NGX_OK;
    }

    if (mcf->need_header_filter) {
        ngx_http_next_header_filter = ngx_http_top_header_filter;
        ngx_http_top_header_filter = ngx_http_aigov_header_filter;
    }

    if (mcf->need_body_filter) {
        ngx_http_next_body_filter = ngx_http_top_body_filter;
        ngx_http_top_body_filter = ngx_http_aigov_body_filter;
    }

    return NGX_OK;
}


static void *
ngx_http_aigov_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_aigov_main_conf_t  *mcf;

    mcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_aigov_main_conf_t));
    if (mcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     mcf->sh = NULL;
     *     mcf->shm_zone = NULL;
     *     mcf->need_* = 0;
     */

    if (ngx_array_init(&mcf->models, cf->pool, 4, sizeof(ngx_aigov_model_t *))
        != NGX_OK
        || ngx_array_init(&mcf->routes, cf->pool, 8,
                          sizeof(ngx_http_aigov_loc_conf_t *))
           != NGX_OK)
    {
        return NULL;
    }

    return mcf;
}


static void *
ngx_http_aigov_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_aigov_loc_conf_t  *alcf;

    alcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_aigov_loc_conf_t));
    if (alcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     alcf->model_cv = NULL;
     *     alcf->default_name = { 0, NULL };
     *     alcf->model = NULL;
     *     alcf->chain = NULL;
     */

    alcf->source = NGX_CONF_UNSET_UINT;

    return alcf;
}


static char *
ngx_http_aigov_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_aigov_loc_conf_t *prev = parent;
    ngx_http_aigov_loc_conf_t *conf = child;

    ngx_http_aigov_loc_conf_t   **route;
    ngx_http_aigov_main_conf_t   *mcf;

    if (conf->source == NGX_CONF_UNSET_UINT) {
        conf->source = (prev->source == NGX_CONF_UNSET_UINT)
                       ? NGX_HTTP_AIGOV_SRC_NONE : prev->source;
        conf->model_cv = prev->model_cv;
        conf->default_name = prev->default_name;
        conf->file = prev->file;
        conf->line = prev->line;
    }

    if (conf->source == NGX_HTTP_AIGOV_SRC_NONE) {
        return NGX_CONF_OK;
    }

    /* model names are resolved once every aigov_model block is known */

    mcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_aigov_module);

    route = ngx_array_push(&mcf->routes);
    if (route == NULL) {
        return NGX_CONF_ERROR;
    }

    *route = conf;
    mcf->need_handler = 1;

    return NGX_CONF_OK;
}


static char *
ngx_http_aigov_chain_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    void                        *plcf;
    ngx_uint_t                   i;
    ngx_aigov_plugin_t          *p, **slot;
    ngx_http_aigov_loc_conf_t   *alcf;
    ngx_http_aigov_main_conf_t  *mcf;

    alcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_aigov_module);

    if (alcf->source == NGX_HTTP_AIGOV_SRC_NONE || alcf->chain) {
        return NGX_CONF_OK;
    }

    mcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_aigov_module);

    alcf->chain = ngx_array_create(cf->pool, ngx_aigov_nplugins ? : 1,
                                   sizeof(ngx_aigov_plugin_t *));
    if (alcf->chain == NULL) {
        return NGX_CONF_ERROR;
    }

    for (i = 0; i < ngx_aigov_nplugins; i++) {
        p = ngx_aigov_plugins_sorted[i];

        plcf = p->module ? ngx_http_conf_get_module_loc_conf(cf, (*p->module))
                         : NULL;

        if (p->enabled && !p->enabled(plcf)) {
            continue;
        }

        slot = ngx_array_push(alcf->chain);
        if (slot == NULL) {
            return NGX_CONF_ERROR;
        }

        *slot = p;

        if (p->header_filter) {
            mcf->need_header_filter = 1;
        }

        if (p->body_filter) {
            mcf->need_body_filter = 1;
        }

        if (p->log) {
            mcf->need_log = 1;
        }

        if (p->needs_body && p->needs_body(plcf)) {
            alcf->read_body = 1;
        }
    }

    return ngx_http_aigov_hooks_init(cf, alcf);
}


static char *
ngx_http_aigov_hooks_init(ngx_conf_t *cf, ngx_http_aigov_loc_conf_t *alcf)
{
    ngx_uint_t               i, n;
    ngx_aigov_plugin_t     **chain, *p;
    ngx_http_aigov_hooks_t  *hooks;

    chain = alcf->chain->elts;
    n = alcf->chain->nelts;

    hooks = ngx_pcalloc(cf->pool, sizeof(ngx_http_aigov_hooks_t)
                                  + 3 * (n + 1) * sizeof(ngx_aigov_plugin_t *));
    if (hooks == NULL) {
        return NGX_CONF_ERROR;
    }

    hooks->header = (ngx_aigov_plugin_t **) (hooks + 1);
    hooks->body = hooks->header + n + 1;
    hooks->log = hooks->body + n + 1;
    hooks->header_rules = NGX_CONF_UNSET_UINT;

    for (i = 0; i < n; i++) {
        p = chain[i];

        if (p->priority < NGX_AIGOV_PRIO_BREAKER
            && hooks->header_rules == NGX_CONF_UNSET_UINT)
        {
            hooks->header_rules = hooks->nheader;
        }

        if (p->header_filter) {
            hooks->header[hooks->nheader++] = p;
        }

        if (p->body_filter) {
            hooks->body[hooks->nbody++] = p;
        }

        if (p->log) {
            hooks->log[hooks->nlog++] = p;
        }
    }

    if (hooks->header_rules == NGX_CONF_UNSET_UINT) {
        hooks->header_rules = hooks->nheader;
    }

    alcf->hooks = hooks;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_aigov_init_process(ngx_cycle_t *cycle)
{
    ngx_uint_t  i;

    if (ngx_http_aigov_control_init_worker(cycle) != NGX_OK) {
        return NGX_ERROR;
    }

    for (i = 0; i < ngx_aigov_nplugins; i++) {
        if (ngx_aigov_plugins[i]->init_worker
            && ngx_aigov_plugins[i]->init_worker(cycle) != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static void
ngx_http_aigov_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_aigov_control_exit_worker(cycle);
}
