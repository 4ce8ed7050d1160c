/*
 * ngx_aigov shadow plugin: mirrors a sample of a model's traffic to a
 * candidate variant and compares the answers, without ever touching the
 * primary request's fate.
 *
 *   aigov_model chat {
 *       variant v1 chat_v1 stable;
 *       variant v2 chat_v2;
 *       shadow  v2 5% [max_body=8m] [max_response=1m] [max_concurrent=64]
 *                     [keepalive=16] [timeout=5s]
 *                     [compare=$.usage.total_tokens,...]
 *                     [tolerance=0.01] [diff_sample=1%] [diff_stream=on];
 *   }
 *
 * A shadow is detached: not a subrequest.  Requests are sampled once the
 * variant is chosen (decide(), priority 300) and launched in the precontent
 * phase, once the access checks passed, as nginx's mirror does.  The
 * shadow copies what it needs -- method, URI, end-to-end headers, the
 * body -- into its own pool and talks HTTP/1.1 to one of the servers of
 * the variant's upstream over its own peer connection, with one deadline
 * on an nginx timer.  Nothing of the shadow points into the request and
 * the request never waits for it: the client's response and keepalive
 * connection go on as without a shadow.
 *
 * The primary's status, latency and (bounded) body are captured by the
 * body filter and the log handler and copied into the shadow; whichever of
 * the two ends last compares them and frees the shadow.  Counters live in
 * the aigov shared zone, next to the core's nodes, keyed "#shadow/MODEL".
 */

#include "ngx_http_aigov_module.h"
#include "ngx_http_aigov_redis.h"
#include "aigov_shadow.h"


#define NGX_AIGOV_SHADOW_MAX_PATHS    8
#define NGX_AIGOV_SHADOW_DIFF_VALUE   256     /* bytes of a value in a diff */
#define NGX_AIGOV_SHADOW_READ         16384
#define NGX_AIGOV_SHADOW_IDLE_TIMEOUT 60000   /* an idle connection, ms */

/* link states */
#define NGX_AIGOV_SHADOW_SAMPLED      1       /* to launch once access passed */
#define NGX_AIGOV_SHADOW_READING      2       /* reading the request body */
#define NGX_AIGOV_SHADOW_DONE         3       /* launched or dropped */

/* what became of a sampled request: $aigov_shadow */
#define NGX_AIGOV_SHADOW_R_SAMPLED    0
#define NGX_AIGOV_SHADOW_R_SENT       1
#define NGX_AIGOV_SHADOW_R_BODY       2
#define NGX_AIGOV_SHADOW_R_BUSY       3
#define NGX_AIGOV_SHADOW_R_ERROR      4

/* how the exchange with the shadow ended */
#define NGX_AIGOV_SHADOW_OK           0
#define NGX_AIGOV_SHADOW_ERROR        1
#define NGX_AIGOV_SHADOW_TIMEOUT      2
#define NGX_AIGOV_SHADOW_CANCELLED    3


typedef struct {
    ngx_atomic_t               agreed;
    ngx_atomic_t               disagreed;
} ngx_aigov_shadow_path_count_t;


/* A model's counters, in the shared zone; see the README for each. */
typedef struct {
    ngx_atomic_t               in_flight;
    ngx_atomic_t               sampled;
    ngx_atomic_t               sent;
    ngx_atomic_t               completed;
    ngx_atomic_t               errors;
    ngx_atomic_t               timeouts;
    ngx_atomic_t               cancelled;
    ngx_atomic_t               dropped_body_too_large;
    ngx_atomic_t               dropped_concurrency;
    ngx_atomic_t               dropped_error;
    ngx_atomic_t               response_too_large;
    ngx_atomic_t               primary_aborted;
    ngx_atomic_t               compared;
    ngx_atomic_t               status_match;
    ngx_atomic_t               status_mismatch;
    ngx_atomic_t               agreed;
    ngx_atomic_t               disagreed;
    ngx_atomic_t               not_comparable;
    ngx_atomic_t               primary_ms;
    ngx_atomic_t               shadow_ms;
    ngx_atomic_t               shadow_slower;
    ngx_atomic_t               diffs;
    ngx_atomic_t               diffs_streamed;
    ngx_atomic_t               diffs_stream_failed;
    ngx_aigov_shadow_path_count_t  path[NGX_AIGOV_SHADOW_MAX_PATHS];
} ngx_aigov_shadow_counters_t;


/*
 * A node of the core's rbtree (ngx_str_node_t first).  The core only ever
 * looks up "model" and "model/variant" keys, which cannot start with '#',
 * and evicts only nodes of its own LRU queue, which this one is not in.
 */
typedef struct {
    ngx_str_node_t             sn;
    uint32_t                   signature;    /* variant + compare paths */
    ngx_aigov_shadow_counters_t  c;
    u_char                     key[1];
} ngx_aigov_shadow_node_t;


typedef struct {
    ngx_aigov_model_t         *model;
    ngx_aigov_variant_t       *variant;
    uint32_t                   percent;      /* of AIGOV_WEIGHT_SCALE */
    size_t                     max_body;
    size_t                     max_response;
    ngx_uint_t                 max_concurrent;
    ngx_msec_t                 timeout;
    aigov_jpath_t             *paths;
    ngx_uint_t                 npaths;
    double                     tolerance;
    uint32_t                   diff_sample;
    ngx_flag_t                 diff_stream;
    ngx_addr_t                *addrs;        /* the variant's servers */
    ngx_uint_t                 naddrs;
    ngx_uint_t                 next;         /* round robin, per worker */
    ngx_uint_t                 keepalive;    /* idle connections kept */
    ngx_queue_t                idle;         /* per worker: cached ... */
    ngx_queue_t                free;         /* ... and unused items */
    ngx_aigov_shadow_counters_t *c;          /* in the zone */
    u_char                    *file;
    ngx_uint_t                 line;
} ngx_aigov_shadow_conf_t;


/* An idle keepalive connection to one of the variant's servers. */
typedef struct {
    ngx_queue_t                queue;
    ngx_connection_t          *connection;
    ngx_str_t                 *name;
    ngx_aigov_shadow_conf_t   *conf;
} ngx_aigov_shadow_idle_t;


typedef struct ngx_aigov_shadow_s  ngx_aigov_shadow_t;


/* The request's side, in r->pool. */
typedef struct {
    ngx_aigov_shadow_t        *shadow;       /* NULL once detached */
    ngx_uint_t                 state;
    ngx_uint_t                 result;       /* NGX_AIGOV_SHADOW_R_* */
} ngx_aigov_shadow_link_t;


/* The shadow's side, in its own pool. */
struct ngx_aigov_shadow_s {
    ngx_pool_t                *pool;
    ngx_log_t                  log;
    ngx_queue_t                queue;        /* the worker's shadows */
    ngx_aigov_shadow_conf_t   *conf;
    ngx_aigov_shadow_link_t   *link;         /* NULL once the primary ended */

    ngx_peer_connection_t      pc;
    ngx_event_t                timer;
    u_char                    *out_start;
    u_char                    *out_pos;
    u_char                    *out_last;
    aigov_http_resp_t         *resp;

    ngx_msec_t                 start;
    ngx_msec_t                 shadow_ms;
    ngx_uint_t                 outcome;

    ngx_str_t                  method;       /* for diff records */
    ngx_str_t                  uri;
    ngx_str_t                  primary_variant;

    ngx_uint_t                 primary_status;
    ngx_msec_t                 primary_ms;
    u_char                    *pbody;        /* captured, ngx_alloc()ed */
    size_t                     plen;
    size_t                     pcap;

    unsigned                   connected:1;
    unsigned                   reused:1;     /* a cached connection */
    unsigned                   head:1;
    unsigned                   shadow_done:1;
    unsigned                   primary_aborted:1;
    unsigned                   capture:1;     /* capturing the body */
    unsigned                   capture_last:1;    /* saw its last buffer */
    unsigned                   capture_bad:1;     /* cannot be compared */
    unsigned                   slot:1;        /* holds an in_flight slot */
};


static ngx_int_t ngx_aigov_shadow_enabled(void *loc_conf);
static ngx_int_t ngx_aigov_shadow_decide(ngx_http_request_t *r,
    ngx_aigov_ctx_t *ctx);
static ngx_int_t ngx_aigov_shadow_drop(ngx_aigov_shadow_conf_t *conf,
    ngx_aigov_shadow_link_t *link, ngx_uint_t result);
static ngx_int_t ngx_aigov_shadow_precontent(ngx_http_request_t *r);
static void ngx_aigov_shadow_body_handler(ngx_http_request_t *r);
static ngx_int_t ngx_aigov_shadow_launch(ngx_http_request_t *r,
    ngx_aigov_ctx_t *ctx, ngx_aigov_shadow_conf_t *conf,
    ngx_aigov_shadow_link_t *link);
static ngx_int_t ngx_aigov_shadow_reserve(ngx_aigov_shadow_conf_t *conf);
static ngx_int_t ngx_aigov_shadow_build(ngx_http_request_t *r,
    ngx_aigov_ctx_t *ctx, ngx_aigov_shadow_t *s, ngx_str_t *body);
static void ngx_aigov_shadow_connect(ngx_aigov_shadow_t *s);
static void ngx_aigov_shadow_attach(ngx_aigov_shadow_t *s,
    ngx_connection_t *c);
static ngx_int_t ngx_aigov_shadow_keep(ngx_aigov_shadow_t *s);
static void ngx_aigov_shadow_idle_handler(ngx_event_t *ev);
static void ngx_aigov_shadow_idle_close(ngx_aigov_shadow_idle_t *item);
static void ngx_aigov_shadow_close_idle(ngx_cycle_t *cycle);
static void ngx_aigov_shadow_write_handler(ngx_event_t *wev);
static void ngx_aigov_shadow_read_handler(ngx_event_t *rev);
static void ngx_aigov_shadow_dummy_handler(ngx_event_t *ev);
static void ngx_aigov_shadow_timeout_handler(ngx_event_t *ev);
static void ngx_aigov_shadow_finish(ngx_aigov_shadow_t *s, ngx_uint_t outcome);
static void ngx_aigov_shadow_close(ngx_aigov_shadow_t *s);
static void ngx_aigov_shadow_compare(ngx_aigov_shadow_t *s);
static void ngx_aigov_shadow_diff(ngx_aigov_shadow_t *s, json_t *pdoc,
    json_t *sdoc);
static void ngx_aigov_shadow_stream_reply(void *data, redisReply *reply);
static void ngx_aigov_shadow_free(ngx_aigov_shadow_t *s);
static void ngx_aigov_shadow_request_cleanup(void *data);
static u_char *ngx_aigov_shadow_log_error(ngx_log_t *log, u_char *buf,
    size_t len);
static ngx_int_t ngx_aigov_shadow_header_filter(ngx_http_request_t *r,
    ngx_aigov_ctx_t *ctx);
static ngx_int_t ngx_aigov_shadow_body_filter(ngx_http_request_t *r,
    ngx_aigov_ctx_t *ctx, ngx_chain_t *in);
static void ngx_aigov_shadow_log(ngx_http_request_t *r, ngx_aigov_ctx_t *ctx);
static ngx_int_t ngx_aigov_shadow_status(ngx_aigov_model_t *model,
    void *conf, json_t *out);
static ngx_int_t ngx_aigov_shadow_init_worker(ngx_cycle_t *cycle);

static void *ngx_aigov_shadow_create_model_conf(ngx_conf_t *cf,
    ngx_aigov_model_t *model);
static char *ngx_aigov_shadow_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_aigov_shadow_param(ngx_conf_t *cf,
    ngx_aigov_shadow_conf_t *scf, ngx_str_t *arg);
static char *ngx_aigov_shadow_compare_paths(ngx_conf_t *cf,
    ngx_aigov_shadow_conf_t *scf, ngx_str_t *value);
static ngx_int_t ngx_aigov_shadow_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_aigov_shadow_preconfiguration(ngx_conf_t *cf);
static ngx_int_t ngx_aigov_shadow_postconfiguration(ngx_conf_t *cf);
static ngx_int_t ngx_aigov_shadow_addrs(ngx_conf_t *cf,
    ngx_aigov_shadow_conf_t *scf);
static ngx_int_t ngx_aigov_shadow_init_module(ngx_cycle_t *cycle);
static void ngx_aigov_shadow_exit_process(ngx_cycle_t *cycle);


static ngx_command_t  ngx_aigov_shadow_model_commands[] = {

    { ngx_string("shadow"),
      NGX_CONF_2MORE,
      ngx_aigov_shadow_directive,
      0,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_aigov_shadow_module_ctx = {
    ngx_aigov_shadow_preconfiguration,     /* preconfiguration */
    ngx_aigov_shadow_postconfiguration,    /* postconfiguration */
    NULL,                                  /* create main configuration */
    NULL,                                  /* init main configuration */
    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */
    NULL,                                  /* create location configuration */
    NULL                                   /* merge location configuration */
};


/*
 * An nginx module only for its hooks: postconfiguration (the variant's
 * addresses, once the core resolved upstream names; the precontent phase
 * handler that launches shadows), init_module (the counters in the zone)
 * and exit_process (shadows still in flight when a worker stops).  Its
 * directive lives in aigov_model{}.
 */
ngx_module_t  ngx_aigov_shadow_module = {
    NGX_MODULE_V1,
    &ngx_aigov_shadow_module_ctx,          /* module context */
    NULL,                                  /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    ngx_aigov_shadow_init_module,          /* init module */
    NULL,                                  /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_aigov_shadow_exit_process,         /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


ngx_aigov_plugin_t  ngx_aigov_shadow_plugin = {
    NGX_AIGOV_ABI,
    "shadow",
    "1.0.0",
    NGX_AIGOV_PRIO_SHADOW,
    &ngx_aigov_shadow_module,              /* nginx module */
    ngx_aigov_shadow_model_commands,
    ngx_aigov_shadow_create_model_conf,
    NULL,                                  /* init model conf */
    ngx_aigov_shadow_enabled,
    ngx_aigov_shadow_init_worker,
    ngx_aigov_shadow_decide,
    ngx_aigov_shadow_header_filter,
    ngx_aigov_shadow_body_filter,
    ngx_aigov_shadow_log,
    ngx_aigov_shadow_status,
    0,
    /*
     * Not needs_body: that would make the core read the body of every
     * request; the shadow reads it itself, for sampled requests only.
     */
    NULL
};


/* this worker's shadows in flight or waiting for their primary */
static ngx_queue_t  ngx_aigov_shadow_all;

/* does any model of the configuration being loaded use "shadow"? */
static ngx_uint_t   ngx_aigov_shadow_used;

/* the header a shadow request carries: never shadowed again (loops) */
static ngx_aigov_header_t  ngx_aigov_shadow_header;


static ngx_str_t  ngx_aigov_shadow_hop[] = {
    ngx_string("connection"),
    ngx_string("keep-alive"),
    ngx_string("proxy-connection"),
    ngx_string("proxy-authorization"),
    ngx_string("te"),
    ngx_string("trailer"),
    ngx_string("transfer-encoding"),
    ngx_string("upgrade"),
    ngx_string("host"),
    ngx_string("content-length"),
    ngx_string("expect"),
    /* identity answers from the shadow: comparable without gunzip */
    ngx_string("accept-encoding"),
    ngx_null_string
};


#define ngx_aigov_shadow_count(conf, field)                                   \
    (void) ngx_atomic_fetch_add(&(conf)->c->field, 1)


static ngx_int_t
ngx_aigov_shadow_enabled(void *loc_conf)
{
    /* no filters, no log hook, when no model shadows */
    return ngx_aigov_shadow_used;
}


/*
 * The decision hook, once the variant is chosen: sample, and refuse early
 * what cannot be shadowed.  The shadow is launched later, in the precontent
 * phase: a request the access phase denies is never shadowed.
 */

static ngx_int_t
ngx_aigov_shadow_decide(ngx_http_request_t *r, ngx_aigov_ctx_t *ctx)
{
    ngx_str_t                 value;
    ngx_aigov_variant_t      *primary;
    ngx_aigov_shadow_conf_t  *conf;
    ngx_aigov_shadow_link_t  *link;

    conf = ngx_aigov_model_conf(ctx->model, ngx_aigov_shadow_plugin);

    if (conf == NULL || conf->c == NULL
        || ngx_aigov_plugin_ctx(ctx, ngx_aigov_shadow_plugin))
    {
        return NGX_DECLINED;
    }

    primary = ctx->variant ? ctx->variant : ctx->model->stable;

    if (primary == conf->variant || conf->percent == 0) {
        /* the variant itself answers: nothing to compare it with */
        return NGX_DECLINED;
    }

    if ((uint32_t) ngx_random() % AIGOV_WEIGHT_SCALE >= conf->percent) {
        return NGX_DECLINED;
    }

    if (ngx_aigov_header_get(r, &ngx_aigov_shadow_header, &value) == NGX_OK) {
        /* a shadow request (of this or another node): no shadow of it */
        return NGX_DECLINED;
    }

    ngx_aigov_shadow_count(conf, sampled);

    link = ngx_pcalloc(r->pool, sizeof(ngx_aigov_shadow_link_t));
    if (link == NULL) {
        ngx_aigov_shadow_count(conf, dropped_error);
        return NGX_DECLINED;
    }

    ngx_aigov_plugin_ctx(ctx, ngx_aigov_shadow_plugin) = link;

    link->state = NGX_AIGOV_SHADOW_SAMPLED;
    link->result = NGX_AIGOV_SHADOW_R_SAMPLED;

    /* cheap refusals first, before any body is read for the shadow */

    if (conf->c->in_flight >= conf->max_concurrent) {
        return ngx_aigov_shadow_drop(conf, link, NGX_AIGOV_SHADOW_R_BUSY);
    }

    if (r->headers_in.content_length_n > (off_t) conf->max_body) {
        return ngx_aigov_shadow_drop(conf, link, NGX_AIGOV_SHADOW_R_BODY);
    }

    return NGX_OK;
}


/* Counts a sampled request that is not shadowed; NGX_DECLINED. */

static ngx_int_t
ngx_aigov_shadow_drop(ngx_aigov_shadow_conf_t *conf,
    ngx_aigov_shadow_link_t *link, ngx_uint_t result)
{
    link->state = NGX_AIGOV_SHADOW_DONE;
    link->result = result;

    switch (result) {

    case NGX_AIGOV_SHADOW_R_BODY:
        ngx_aigov_shadow_count(conf, dropped_body_too_large);
        break;

    case NGX_AIGOV_SHADOW_R_BUSY:
        ngx_aigov_shadow_count(conf, dropped_concurrency);
        break;

    default:
        ngx_aigov_shadow_count(conf, dropped_error);
    }

    return NGX_DECLINED;
}


/*
 * The precontent phase (where the mirror module runs): access checks have
 * passed.  Reads the body if nobody has (as mirror does: nginx would read
 * it before proxying anyway, and r->preserve_body keeps it for the
 * upstream), then launches.
 */

static ngx_int_t
ngx_aigov_shadow_precontent(ngx_http_request_t *r)
{
    ngx_int_t                 rc;
    ngx_aigov_ctx_t          *ctx;
    ngx_aigov_shadow_conf_t  *conf;
    ngx_aigov_shadow_link_t  *link;

    if (r != r->main) {
        return NGX_DECLINED;
    }

    ctx = ngx_aigov_get_ctx(r);

    if (ctx == NULL || ctx->model == NULL) {
        return NGX_DECLINED;
    }

    link = ngx_aigov_plugin_ctx(ctx, ngx_aigov_shadow_plugin);

    if (link == NULL || link->state != NGX_AIGOV_SHADOW_SAMPLED) {
        return NGX_DECLINED;
    }

    conf = ngx_aigov_model_conf(ctx->model, ngx_aigov_shadow_plugin);

    if (r->request_body
        || (r->headers_in.content_length_n <= 0 && !r->headers_in.chunked
#if (NGX_HTTP_V2)
            && r->stream == NULL
#endif
           ))
    {
        /* read already (by the core), or there is none */
        (void) ngx_aigov_shadow_launch(r, ctx, conf, link);
        return NGX_DECLINED;
    }

    link->state = NGX_AIGOV_SHADOW_READING;

    r->request_body_in_single_buf = 1;

    rc = ngx_http_read_client_request_body(r, ngx_aigov_shadow_body_handler);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        link->state = NGX_AIGOV_SHADOW_DONE;
        return rc;
    }

    ngx_http_finalize_request(r, NGX_DONE);
    return NGX_DONE;
}


static void
ngx_aigov_shadow_body_handler(ngx_http_request_t *r)
{
    ngx_aigov_ctx_t          *ctx;
    ngx_aigov_shadow_link_t  *link;

    ctx = ngx_aigov_get_ctx(r);
    link = ngx_aigov_plugin_ctx(ctx, ngx_aigov_shadow_plugin);

    (void) ngx_aigov_shadow_launch(r, ctx,
                           ngx_aigov_model_conf(ctx->model,
                                                ngx_aigov_shadow_plugin),
                           link);

    /* the body must still reach the upstream; the handler, called again,
     * declines now */
    r->preserve_body = 1;
    r->write_event_handler = ngx_http_core_run_phases;
    ngx_http_core_run_phases(r);
}


/*
 * Copies what the shadow needs out of r and starts it.  Always lets the
 * request go on (NGX_OK or NGX_DECLINED): whatever happens to the shadow
 * is counted, never passed on to the client.
 */

static ngx_int_t
ngx_aigov_shadow_launch(ngx_http_request_t *r, ngx_aigov_ctx_t *ctx,
    ngx_aigov_shadow_conf_t *conf, ngx_aigov_shadow_link_t *link)
{
    ngx_int_t            rc;
    ngx_str_t            body;
    ngx_pool_t          *pool;
    ngx_pool_cleanup_t  *cln;
    ngx_aigov_shadow_t  *s;

    link->state = NGX_AIGOV_SHADOW_DONE;

    /* the body, in memory: never read back from a temp file here */

    ngx_str_null(&body);

    if (r->request_body && r->request_body->temp_file) {
        return ngx_aigov_shadow_drop(conf, link, NGX_AIGOV_SHADOW_R_BODY);
    }

    if (ctx->body.len) {
        body = ctx->body;

    } else if (r->request_body) {
        rc = ngx_http_aigov_body_bytes(r, &body);

        if (rc == NGX_ERROR) {
            return ngx_aigov_shadow_drop(conf, link, NGX_AIGOV_SHADOW_R_ERROR);
        }

        if (ctx->body.len == 0) {
            ctx->body = body;
        }
    }

    if (body.len > conf->max_body) {
        /* chunked: the length was not known before */
        return ngx_aigov_shadow_drop(conf, link, NGX_AIGOV_SHADOW_R_BODY);
    }

    if (ngx_aigov_shadow_reserve(conf) != NGX_OK) {
        return ngx_aigov_shadow_drop(conf, link, NGX_AIGOV_SHADOW_R_BUSY);
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        goto failed;
    }

    pool = ngx_create_pool(4096, ngx_cycle->log);
    if (pool == NULL) {
        goto failed;
    }

    s = ngx_pcalloc(pool, sizeof(ngx_aigov_shadow_t));
    if (s == NULL) {
        ngx_destroy_pool(pool);
        goto failed;
    }

    s->pool = pool;
    s->conf = conf;
    s->slot = 1;
    s->start = ngx_current_msec;

    s->log = *ngx_cycle->log;
    s->log.handler = ngx_aigov_shadow_log_error;
    s->log.data = s;
    s->log.action = NULL;
    pool->log = &s->log;

    s->primary_variant = (ctx->variant ? ctx->variant
                                       : ctx->model->stable)->name;

    if (ngx_aigov_shadow_build(r, ctx, s, &body) != NGX_OK) {
        s->slot = 0;
        ngx_destroy_pool(pool);
        goto failed;
    }

    /* the two sides know each other until the first of them ends */

    s->link = link;
    link->shadow = s;

    cln->handler = ngx_aigov_shadow_request_cleanup;
    cln->data = link;

    ngx_queue_insert_tail(&ngx_aigov_shadow_all, &s->queue);

    ngx_aigov_shadow_count(conf, sent);
    link->result = NGX_AIGOV_SHADOW_R_SENT;

    s->timer.handler = ngx_aigov_shadow_timeout_handler;
    s->timer.data = s;
    s->timer.log = &s->log;

    /*
     * Not cancelable: a worker that shuts down gracefully lets its shadows
     * finish (at most "timeout") instead of leaving them behind.
     */
    ngx_add_timer(&s->timer, conf->timeout);

    ngx_aigov_shadow_connect(s);

    return NGX_OK;

failed:

    (void) ngx_atomic_fetch_add(&conf->c->in_flight, -1);

    return ngx_aigov_shadow_drop(conf, link, NGX_AIGOV_SHADOW_R_ERROR);
}


static ngx_int_t
ngx_aigov_shadow_reserve(ngx_aigov_shadow_conf_t *conf)
{
    ngx_atomic_uint_t  n;

    for ( ;; ) {
        n = conf->c->in_flight;

        if (n >= conf->max_concurrent) {
            return NGX_DECLINED;
        }

        if (ngx_atomic_cmp_set(&conf->c->in_flight, n, n + 1)) {
            return NGX_OK;
        }
    }
}


/* The shadow's HTTP/1.1 request, one buffer in its own pool. */

static ngx_int_t
ngx_aigov_shadow_build(ngx_http_request_t *r, ngx_aigov_ctx_t *ctx,
    ngx_aigov_shadow_t *s, ngx_str_t *body)
{
    size_t            len;
    u_char           *p;
    ngx_str_t        *hop, *host;
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    host = &s->conf->variant->upstream;

    len = r->method_name.len + 1 + r->unparsed_uri.len
          + sizeof(" HTTP/1.1" CRLF) - 1
          + sizeof("Host: " CRLF) - 1 + host->len
          + sizeof("X-Aigov-Shadow: " CRLF) - 1 + ctx->model->name.len
          + sizeof("Connection: close" CRLF) - 1
          + sizeof("Content-Length: " CRLF) - 1 + NGX_SIZE_T_LEN
          + sizeof(CRLF) - 1 + body->len;

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */ ; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        len += h[i].key.len + sizeof(": " CRLF) - 1 + h[i].value.len;
    }

    /* copies for diff records: r may be gone by then */

    p = ngx_pnalloc(s->pool, r->method_name.len + r->unparsed_uri.len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    s->method.data = p;
    s->method.len = r->method_name.len;
    p = ngx_cpymem(p, r->method_name.data, r->method_name.len);

    s->uri.data = p;
    s->uri.len = r->unparsed_uri.len;
    ngx_memcpy(p, r->unparsed_uri.data, r->unparsed_uri.len);

    /* the request: freed as soon as the exchange ends (ngx_pfree) */

    p = ngx_pnalloc(s->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    s->out_start = p;
    s->out_pos = p;

    p = ngx_sprintf(p, "%V %V HTTP/1.1" CRLF "Host: %V" CRLF
                    "X-Aigov-Shadow: %V" CRLF,
                    &r->method_name, &r->unparsed_uri, host,
                    &ctx->model->name);

    if (s->conf->keepalive == 0) {
        p = ngx_cpymem(p, "Connection: close" CRLF,
                       sizeof("Connection: close" CRLF) - 1);
    }

    if (body->len || (r->method & (NGX_HTTP_POST|NGX_HTTP_PUT|NGX_HTTP_PATCH)))
    {
        p = ngx_sprintf(p, "Content-Length: %uz" CRLF, body->len);
    }

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */ ; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        for (hop = ngx_aigov_shadow_hop; hop->len; hop++) {
            if (h[i].key.len == hop->len
                && ngx_strncmp(h[i].lowcase_key, hop->data, hop->len) == 0)
            {
                break;
            }
        }

        if (hop->len) {
            continue;
        }

        p = ngx_cpymem(p, h[i].key.data, h[i].key.len);
        *p++ = ':'; *p++ = ' ';
        p = ngx_cpymem(p, h[i].value.data, h[i].value.len);
        *p++ = CR; *p++ = LF;
    }

    *p++ = CR; *p++ = LF;

    if (body->len) {
        p = ngx_cpymem(p, body->data, body->len);
    }

    s->out_last = p;

    s->resp = ngx_palloc(s->pool, sizeof(aigov_http_resp_t));
    if (s->resp == NULL) {
        return NGX_ERROR;
    }

    s->head = (r->method == NGX_HTTP_HEAD);

    aigov_http_resp_init(s->resp, s->conf->max_response, s->head);

    return NGX_OK;
}


static void
ngx_aigov_shadow_connect(ngx_aigov_shadow_t *s)
{
    ngx_int_t                 rc;
    ngx_addr_t               *addr;
    ngx_queue_t              *q;
    ngx_connection_t         *c;
    ngx_aigov_shadow_conf_t  *conf;
    ngx_aigov_shadow_idle_t  *item;

    conf = s->conf;

    if (conf->keepalive && !ngx_queue_empty(&conf->idle)) {
        /* the most recently used idle connection */
        q = ngx_queue_head(&conf->idle);
        ngx_queue_remove(q);
        ngx_queue_insert_head(&conf->free, q);

        item = ngx_queue_data(q, ngx_aigov_shadow_idle_t, queue);
        c = item->connection;
        item->connection = NULL;

        if (c->read->timer_set) {
            ngx_del_timer(c->read);
        }

        c->idle = 0;

        s->pc.connection = c;
        s->pc.name = item->name;
        s->connected = 1;
        s->reused = 1;

        ngx_aigov_shadow_attach(s, c);
        ngx_aigov_shadow_write_handler(c->write);
        return;
    }

    addr = &conf->addrs[conf->next++ % conf->naddrs];

    s->pc.sockaddr = addr->sockaddr;
    s->pc.socklen = addr->socklen;
    s->pc.name = &addr->name;
    s->pc.get = ngx_event_get_peer;
    s->pc.log = &s->log;
    s->pc.log_error = NGX_ERROR_INFO;

    rc = ngx_event_connect_peer(&s->pc);

    if (rc == NGX_ERROR || rc == NGX_BUSY || rc == NGX_DECLINED) {
        ngx_log_error(NGX_LOG_INFO, &s->log, ngx_socket_errno,
                      "aigov shadow: connect() failed");
        ngx_aigov_shadow_finish(s, NGX_AIGOV_SHADOW_ERROR);
        return;
    }

    c = s->pc.connection;

    ngx_aigov_shadow_attach(s, c);

    if (rc == NGX_OK) {
        /* connected at once (a unix socket) */
        ngx_aigov_shadow_write_handler(c->write);
    }
}


static void
ngx_aigov_shadow_attach(ngx_aigov_shadow_t *s, ngx_connection_t *c)
{
    c->data = s;
    c->pool = s->pool;
    c->log = &s->log;
    c->read->log = &s->log;
    c->write->log = &s->log;
    c->read->handler = ngx_aigov_shadow_read_handler;
    c->write->handler = ngx_aigov_shadow_write_handler;
    c->sendfile = 0;
}


static void
ngx_aigov_shadow_write_handler(ngx_event_t *wev)
{
    int                  err;
    ssize_t              n;
    socklen_t            len;
    ngx_connection_t    *c;
    ngx_aigov_shadow_t  *s;

    c = wev->data;
    s = c->data;

    if (c->close) {
        /* the worker is going away */
        ngx_aigov_shadow_finish(s, NGX_AIGOV_SHADOW_CANCELLED);
        return;
    }

    if (!s->connected) {
        err = 0;
        len = sizeof(int);

        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, (void *) &err, &len)
            == -1)
        {
            err = ngx_socket_errno;
        }

        if (err) {
            ngx_log_error(NGX_LOG_INFO, &s->log, err,
                          "aigov shadow: connect() failed");
            ngx_aigov_shadow_finish(s, NGX_AIGOV_SHADOW_ERROR);
            return;
        }

        s->connected = 1;
    }

    while (s->out_pos < s->out_last) {
        n = c->send(c, s->out_pos, s->out_last - s->out_pos);

        if (n == NGX_AGAIN) {
            if (ngx_handle_write_event(wev, 0) != NGX_OK) {
                ngx_aigov_shadow_finish(s, NGX_AIGOV_SHADOW_ERROR);
            }

            return;
        }

        if (n == NGX_ERROR) {
            ngx_aigov_shadow_finish(s, NGX_AIGOV_SHADOW_ERROR);
            return;
        }

        s->out_pos += n;
    }

    /* all sent: only the answer matters now */

    wev->handler = ngx_aigov_shadow_dummy_handler;

    if (c->read->ready) {
        ngx_aigov_shadow_read_handler(c->read);
        return;
    }

    if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
        ngx_aigov_shadow_finish(s, NGX_AIGOV_SHADOW_ERROR);
    }
}


static void
ngx_aigov_shadow_read_handler(ngx_event_t *rev)
{
    int                  rc;
    ssize_t              n;
    u_char               buf[NGX_AIGOV_SHADOW_READ];
    ngx_connection_t    *c;
    ngx_aigov_shadow_t  *s;

    c = rev->data;
    s = c->data;

    if (c->close) {
        ngx_aigov_shadow_finish(s, NGX_AIGOV_SHADOW_CANCELLED);
        return;
    }

    for ( ;; ) {
        n = c->recv(c, buf, sizeof(buf));

        if (n == NGX_AGAIN) {
            break;
        }

        if (n == NGX_ERROR) {
            /* c->recv() logged it, at c->log_error's level (info) */
            ngx_aigov_shadow_finish(s, NGX_AIGOV_SHADOW_ERROR);
            return;
        }

        rc = (n == 0) ? aigov_http_resp_eof(s->resp)
                      : aigov_http_resp_feed(s->resp, (char *) buf, n);

        if (rc == AIGOV_HTTP_DONE) {
            ngx_aigov_shadow_finish(s, NGX_AIGOV_SHADOW_OK);
            return;
        }

        if (rc == AIGOV_HTTP_ERROR) {
            ngx_log_error(NGX_LOG_INFO, &s->log, 0,
                          "aigov shadow: bad response: %s", s->resp->error);
            ngx_aigov_shadow_finish(s, NGX_AIGOV_SHADOW_ERROR);
            return;
        }
    }

    if (ngx_handle_read_event(rev, 0) != NGX_OK) {
        ngx_aigov_shadow_finish(s, NGX_AIGOV_SHADOW_ERROR);
    }
}


static void
ngx_aigov_shadow_dummy_handler(ngx_event_t *ev)
{
    ngx_connection_t    *c;
    ngx_aigov_shadow_t  *s;

    c = ev->data;
    s = c->data;

    if (c->close) {
        ngx_aigov_shadow_finish(s, NGX_AIGOV_SHADOW_CANCELLED);
    }
}


static void
ngx_aigov_shadow_timeout_handler(ngx_event_t *ev)
{
    ngx_aigov_shadow_t  *s = ev->data;

    ngx_log_error(NGX_LOG_INFO, &s->log, NGX_ETIMEDOUT,
                  "aigov shadow: no complete response within %M ms",
                  s->conf->timeout);

    ngx_aigov_shadow_finish(s, NGX_AIGOV_SHADOW_TIMEOUT);
}


/* The exchange with the shadow ended, one way or another. */

static void
ngx_aigov_shadow_finish(ngx_aigov_shadow_t *s, ngx_uint_t outcome)
{
    ngx_aigov_shadow_conf_t  *conf;

    conf = s->conf;

    if (outcome == NGX_AIGOV_SHADOW_ERROR && s->reused
        && s->resp->status == 0 && s->resp->body_total == 0)
    {
        /*
         * A cached connection the server had closed meanwhile: once more
         * on a new one, as nginx's upstream keepalive does.
         */
        ngx_close_connection(s->pc.connection);
        s->pc.connection = NULL;
        s->reused = 0;
        s->connected = 0;
        s->out_pos = s->out_start;

        aigov_http_resp_free(s->resp);
        aigov_http_resp_init(s->resp, conf->max_response, s->head);

        ngx_aigov_shadow_connect(s);
        return;
    }

    if (outcome == NGX_AIGOV_SHADOW_OK && ngx_aigov_shadow_keep(s) == NGX_OK) {
        s->pc.connection = NULL;
    }

    /*
     * A shadow may wait for a long primary (a stream): it keeps only its
     * answer.  (A large request was allocated apart from the pool's
     * blocks, so this gives it back now.)
     */
    (void) ngx_pfree(s->pool, s->out_start);
    s->out_start = NULL;
    s->out_pos = NULL;
    s->out_last = NULL;

    s->outcome = outcome;
    s->shadow_done = 1;
    s->shadow_ms = ngx_current_msec - s->start;

    ngx_aigov_shadow_close(s);

    switch (outcome) {

    case NGX_AIGOV_SHADOW_OK:
        ngx_aigov_shadow_count(conf, completed);

        if (s->resp->truncated) {
            ngx_aigov_shadow_count(conf, response_too_large);
        }

        break;

    case NGX_AIGOV_SHADOW_TIMEOUT:
        ngx_aigov_shadow_count(conf, timeouts);
        break;

    case NGX_AIGOV_SHADOW_CANCELLED:
        ngx_aigov_shadow_count(conf, cancelled);
        break;

    default:
        ngx_aigov_shadow_count(conf, errors);
    }

    if (outcome != NGX_AIGOV_SHADOW_OK) {
        aigov_http_resp_free(s->resp);
    }

    if (s->link) {
        /* the primary is still on its way: it compares and frees */
        return;
    }

    ngx_aigov_shadow_compare(s);
    ngx_aigov_shadow_free(s);
}


/* Parks the connection of a complete exchange for the next shadow. */

static ngx_int_t
ngx_aigov_shadow_keep(ngx_aigov_shadow_t *s)
{
    ngx_queue_t              *q;
    ngx_connection_t         *c;
    ngx_aigov_shadow_conf_t  *conf;
    ngx_aigov_shadow_idle_t  *item;

    conf = s->conf;
    c = s->pc.connection;

    if (conf->keepalive == 0 || c == NULL || ngx_terminate || ngx_exiting
        || s->out_pos != s->out_last || c->read->eof || c->read->error
        || c->write->error || !aigov_http_resp_keepalive(s->resp))
    {
        return NGX_DECLINED;
    }

    if (ngx_queue_empty(&conf->free)) {
        /* full: the least recently used one goes */
        q = ngx_queue_last(&conf->idle);
        item = ngx_queue_data(q, ngx_aigov_shadow_idle_t, queue);
        ngx_aigov_shadow_idle_close(item);
    }

    q = ngx_queue_head(&conf->free);
    ngx_queue_remove(q);
    ngx_queue_insert_head(&conf->idle, q);

    item = ngx_queue_data(q, ngx_aigov_shadow_idle_t, queue);
    item->connection = c;
    item->name = s->pc.name;

    if (s->timer.timer_set) {
        ngx_del_timer(&s->timer);
    }

    c->data = item;
    c->pool = NULL;
    c->log = ngx_cycle->log;
    c->read->log = ngx_cycle->log;
    c->write->log = ngx_cycle->log;
    c->read->handler = ngx_aigov_shadow_idle_handler;
    c->write->handler = ngx_aigov_shadow_idle_handler;

    /* closed by ngx_close_idle_connections() when the worker shuts down */
    c->idle = 1;
    c->read->cancelable = 1;

    ngx_add_timer(c->read, NGX_AIGOV_SHADOW_IDLE_TIMEOUT);

    if (c->read->ready) {
        ngx_aigov_shadow_idle_handler(c->read);
        return NGX_OK;
    }

    if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
        ngx_aigov_shadow_idle_close(item);
    }

    return NGX_OK;
}


static void
ngx_aigov_shadow_idle_handler(ngx_event_t *ev)
{
    char                      buf[1];
    ssize_t                   n;
    ngx_connection_t         *c;
    ngx_aigov_shadow_idle_t  *item;

    c = ev->data;
    item = c->data;

    if (ev->write) {
        return;
    }

    if (c->close || ev->timedout) {
        ngx_aigov_shadow_idle_close(item);
        return;
    }

    /* anything readable on an idle connection is its end (or junk) */

    n = recv(c->fd, buf, 1, MSG_PEEK);

    if (n == -1 && ngx_socket_errno == NGX_EAGAIN) {
        ev->ready = 0;

        if (ngx_handle_read_event(ev, 0) == NGX_OK) {
            return;
        }
    }

    ngx_aigov_shadow_idle_close(item);
}


static void
ngx_aigov_shadow_idle_close(ngx_aigov_shadow_idle_t *item)
{
    ngx_queue_remove(&item->queue);
    ngx_queue_insert_head(&item->conf->free, &item->queue);

    ngx_close_connection(item->connection);
    item->connection = NULL;
}


/* The worker exits: its cached connections are closed. */

static void
ngx_aigov_shadow_close_idle(ngx_cycle_t *cycle)
{
    ngx_uint_t                   i;
    ngx_queue_t                 *q;
    ngx_aigov_model_t          **m;
    ngx_aigov_shadow_conf_t     *scf;
    ngx_http_aigov_main_conf_t  *mcf;

    mcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_aigov_module);
    if (mcf == NULL) {
        return;
    }

    m = mcf->models.elts;

    for (i = 0; i < mcf->models.nelts; i++) {
        scf = ngx_aigov_model_conf(m[i], ngx_aigov_shadow_plugin);

        if (scf == NULL || scf->keepalive == 0 || scf->idle.next == NULL) {
            continue;
        }

        while (!ngx_queue_empty(&scf->idle)) {
            q = ngx_queue_head(&scf->idle);
            ngx_aigov_shadow_idle_close(
                ngx_queue_data(q, ngx_aigov_shadow_idle_t, queue));
        }
    }
}


/* Closes the connection and gives the concurrency slot back. */

static void
ngx_aigov_shadow_close(ngx_aigov_shadow_t *s)
{
    if (s->timer.timer_set) {
        ngx_del_timer(&s->timer);
    }

    if (s->pc.connection) {
        ngx_close_connection(s->pc.connection);
        s->pc.connection = NULL;
    }

    if (s->slot) {
        s->slot = 0;
        (void) ngx_atomic_fetch_add(&s->conf->c->in_flight, -1);
    }
}


static void
ngx_aigov_shadow_free(ngx_aigov_shadow_t *s)
{
    if (s->link) {
        s->link->shadow = NULL;
        s->link = NULL;
    }

    ngx_queue_remove(&s->queue);

    aigov_http_resp_free(s->resp);

    if (s->pbody) {
        ngx_free(s->pbody);
    }

    ngx_destroy_pool(s->pool);
}


/* Both sides are known: count what agrees. */

static void
ngx_aigov_shadow_compare(ngx_aigov_shadow_t *s)
{
    ngx_uint_t                i, agree, all, usable;
    json_t                   *pdoc, *sdoc;
    ngx_aigov_shadow_conf_t  *conf;

    conf = s->conf;

    if (s->primary_aborted) {
        ngx_aigov_shadow_count(conf, primary_aborted);
        return;
    }

    if (s->outcome != NGX_AIGOV_SHADOW_OK) {
        return;
    }

    ngx_aigov_shadow_count(conf, compared);

    if ((ngx_uint_t) s->resp->status == s->primary_status) {
        ngx_aigov_shadow_count(conf, status_match);

    } else {
        ngx_aigov_shadow_count(conf, status_mismatch);
    }

    (void) ngx_atomic_fetch_add(&conf->c->primary_ms, s->primary_ms);
    (void) ngx_atomic_fetch_add(&conf->c->shadow_ms, s->shadow_ms);

    if (s->shadow_ms > s->primary_ms) {
        ngx_aigov_shadow_count(conf, shadow_slower);
    }

    pdoc = NULL;
    sdoc = NULL;
    all = 1;

    if (conf->npaths) {
        usable = s->capture && s->capture_last && !s->capture_bad
                 && !s->resp->truncated && !s->resp->encoded;

        if (usable) {
            pdoc = json_loadb((char *) s->pbody, s->plen, JSON_DECODE_ANY,
                              NULL);
            sdoc = json_loadb(s->resp->body, s->resp->body_len,
                              JSON_DECODE_ANY, NULL);
        }

        if (pdoc == NULL || sdoc == NULL) {
            ngx_aigov_shadow_count(conf, not_comparable);
            json_decref(pdoc);
            json_decref(sdoc);
            pdoc = NULL;
            sdoc = NULL;
            all = 0;

        } else {
            for (i = 0; i < conf->npaths; i++) {
                agree = aigov_json_agree(aigov_jpath_get(pdoc, &conf->paths[i]),
                                         aigov_jpath_get(sdoc, &conf->paths[i]),
                                         conf->tolerance);

                if (agree) {
                    (void) ngx_atomic_fetch_add(&conf->c->path[i].agreed, 1);

                } else {
                    (void) ngx_atomic_fetch_add(&conf->c->path[i].disagreed,
                                                1);
                    all = 0;
                }
            }

            if (all) {
                ngx_aigov_shadow_count(conf, agreed);

            } else {
                ngx_aigov_shadow_count(conf, disagreed);
            }
        }
    }

    if ((!all || (ngx_uint_t) s->resp->status != s->primary_status)
        && (uint32_t) ngx_random() % AIGOV_WEIGHT_SCALE < conf->diff_sample)
    {
        ngx_aigov_shadow_diff(s, pdoc, sdoc);
    }

    json_decref(pdoc);
    json_decref(sdoc);
}


static json_t *
ngx_aigov_shadow_diff_value(json_t *v)
{
    char    *text;
    size_t   len;
    json_t  *out;

    if (v == NULL) {
        return json_null();    /* missing */
    }

    text = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    if (text == NULL) {
        return json_null();
    }

    len = ngx_strlen(text);

    if (len <= NGX_AIGOV_SHADOW_DIFF_VALUE) {
        free(text);
        return json_deep_copy(v);
    }

    /* a long value: its JSON text, cut (json_stringn checks UTF-8) */
    len = NGX_AIGOV_SHADOW_DIFF_VALUE;

    do {
        out = json_stringn(text, len);
    } while (out == NULL && --len > NGX_AIGOV_SHADOW_DIFF_VALUE - 4);

    free(text);

    return out ? out : json_null();
}


/* A sampled record of a disagreement: the log and a Redis stream. */

static void
ngx_aigov_shadow_diff(ngx_aigov_shadow_t *s, json_t *pdoc, json_t *sdoc)
{
    int                           argc;
    char                         *text;
    size_t                        argvlen[24];
    u_char                        key[256], pst[NGX_INT_T_LEN],
                                  sst[NGX_INT_T_LEN], pms[NGX_INT_T_LEN],
                                  sms[NGX_INT_T_LEN];
    json_t                       *rec, *paths, *jp;
    ngx_uint_t                    i;
    const char                   *argv[24];
    ngx_aigov_redis_t            *rds;
    ngx_aigov_shadow_conf_t      *conf;
    ngx_http_aigov_main_conf_t   *mcf;

    conf = s->conf;

    rec = json_object();
    paths = json_array();

    if (rec == NULL || paths == NULL) {
        json_decref(rec);
        json_decref(paths);
        return;
    }

    json_object_set_new(rec, "model",
                        json_stringn((char *) conf->model->name.data,
                                     conf->model->name.len));
    json_object_set_new(rec, "primary_variant",
                        json_stringn((char *) s->primary_variant.data,
                                     s->primary_variant.len));
    json_object_set_new(rec, "shadow_variant",
                        json_stringn((char *) conf->variant->name.data,
                                     conf->variant->name.len));
    json_object_set_new(rec, "method",
                        json_stringn((char *) s->method.data, s->method.len));
    /* the URI may hold anything: bytes that are not UTF-8 drop it */
    json_object_set_new(rec, "uri",
                        json_stringn((char *) s->uri.data,
                                     ngx_min(s->uri.len, 512)));
    json_object_set_new(rec, "primary_status",
                        json_integer(s->primary_status));
    json_object_set_new(rec, "shadow_status",
                        json_integer(s->resp->status));
    json_object_set_new(rec, "primary_ms", json_integer(s->primary_ms));
    json_object_set_new(rec, "shadow_ms", json_integer(s->shadow_ms));

    for (i = 0; i < conf->npaths; i++) {
        if (pdoc == NULL || sdoc == NULL) {
            break;
        }

        jp = aigov_jpath_get(pdoc, &conf->paths[i]);

        if (aigov_json_agree(jp, aigov_jpath_get(sdoc, &conf->paths[i]),
                             conf->tolerance))
        {
            continue;
        }

        json_array_append_new(paths,
            json_pack("{s:s%, s:o, s:o}",
                      "path", conf->paths[i].text.data,
                      conf->paths[i].text.len,
                      "primary", ngx_aigov_shadow_diff_value(jp),
                      "shadow", ngx_aigov_shadow_diff_value(
                                   aigov_jpath_get(sdoc, &conf->paths[i]))));
    }

    if (conf->npaths && (pdoc == NULL || sdoc == NULL)) {
        json_object_set_new(rec, "comparable", json_false());
    }

    json_object_set_new(rec, "paths", paths);

    text = json_dumps(rec, JSON_COMPACT | JSON_PRESERVE_ORDER);

    json_decref(rec);

    if (text == NULL) {
        return;
    }

    ngx_aigov_shadow_count(conf, diffs);

    ngx_log_error(NGX_LOG_INFO, ngx_cycle->log, 0, "aigov shadow diff: %s",
                  text);

    if (!conf->diff_stream) {
        goto done;
    }

    mcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                              ngx_http_aigov_module);
    rds = ngx_http_aigov_control_client();

    if (mcf == NULL || mcf->redis == NULL || rds == NULL) {
        ngx_aigov_shadow_count(conf, diffs_stream_failed);
        goto done;
    }

    argc = 0;

#define ngx_aigov_shadow_arg(s, l)                                            \
    argv[argc] = (const char *) (s); argvlen[argc++] = (l)

    ngx_aigov_shadow_arg("XADD", 4);
    ngx_aigov_shadow_arg(key, ngx_snprintf(key, sizeof(key), "%Vshadow:diffs",
                                           &mcf->redis->prefix) - key);
    ngx_aigov_shadow_arg("MAXLEN", 6);
    ngx_aigov_shadow_arg("~", 1);
    ngx_aigov_shadow_arg("1000", 4);
    ngx_aigov_shadow_arg("*", 1);
    ngx_aigov_shadow_arg("model", 5);
    ngx_aigov_shadow_arg(conf->model->name.data, conf->model->name.len);
    ngx_aigov_shadow_arg("primary_variant", 15);
    ngx_aigov_shadow_arg(s->primary_variant.data, s->primary_variant.len);
    ngx_aigov_shadow_arg("shadow_variant", 14);
    ngx_aigov_shadow_arg(conf->variant->name.data, conf->variant->name.len);
    ngx_aigov_shadow_arg("primary_status", 14);
    ngx_aigov_shadow_arg(pst, ngx_sprintf(pst, "%ui", s->primary_status)
                              - pst);
    ngx_aigov_shadow_arg("shadow_status", 13);
    ngx_aigov_shadow_arg(sst, ngx_sprintf(sst, "%d", s->resp->status) - sst);
    ngx_aigov_shadow_arg("primary_ms", 10);
    ngx_aigov_shadow_arg(pms, ngx_sprintf(pms, "%M", s->primary_ms) - pms);
    ngx_aigov_shadow_arg("shadow_ms", 9);
    ngx_aigov_shadow_arg(sms, ngx_sprintf(sms, "%M", s->shadow_ms) - sms);
    ngx_aigov_shadow_arg("record", 6);
    ngx_aigov_shadow_arg(text, ngx_strlen(text));

#undef ngx_aigov_shadow_arg

    /* fire and forget: the counters say how it went */
    if (ngx_aigov_redis_send(rds, ngx_aigov_shadow_stream_reply, conf->c,
                             argc, argv, argvlen)
        == NULL)
    {
        ngx_aigov_shadow_count(conf, diffs_stream_failed);
    }

done:

    free(text);
}


static void
ngx_aigov_shadow_stream_reply(void *data, redisReply *reply)
{
    ngx_aigov_shadow_counters_t  *c = data;

    if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
        (void) ngx_atomic_fetch_add(&c->diffs_stream_failed, 1);

    } else {
        (void) ngx_atomic_fetch_add(&c->diffs_streamed, 1);
    }
}


/*
 * r->pool goes away.  Normally the log handler detached the shadow already;
 * if not (the log phase did not run), the primary counts as aborted.
 */

static void
ngx_aigov_shadow_request_cleanup(void *data)
{
    ngx_aigov_shadow_link_t  *link = data;

    ngx_aigov_shadow_t  *s;

    s = link->shadow;

    if (s == NULL) {
        return;
    }

    link->shadow = NULL;
    s->link = NULL;
    s->primary_aborted = 1;

    if (s->shadow_done) {
        ngx_aigov_shadow_compare(s);
        ngx_aigov_shadow_free(s);
    }
}


static u_char *
ngx_aigov_shadow_log_error(ngx_log_t *log, u_char *buf, size_t len)
{
    u_char              *p;
    ngx_aigov_shadow_t  *s;

    s = log->data;

    p = ngx_snprintf(buf, len, " while shadowing model \"%V\" to variant "
                     "\"%V\"", &s->conf->model->name,
                     &s->conf->variant->name);

    if (s->pc.name) {
        p = ngx_snprintf(p, len - (p - buf), ", peer: %V", s->pc.name);
    }

    return p;
}


/* The primary's response: what to capture for the comparison. */

static ngx_int_t
ngx_aigov_shadow_header_filter(ngx_http_request_t *r, ngx_aigov_ctx_t *ctx)
{
    ngx_str_t                *ct;
    ngx_table_elt_t          *ce;
    ngx_aigov_shadow_t       *s;
    ngx_aigov_shadow_link_t  *link;

    link = ngx_aigov_plugin_ctx(ctx, ngx_aigov_shadow_plugin);

    if (link == NULL || link->shadow == NULL) {
        return NGX_DECLINED;
    }

    s = link->shadow;

    if (s->conf->npaths == 0 || r->header_only) {
        return NGX_DECLINED;
    }

    s->capture = 1;

    ct = &r->headers_out.content_type;

    ce = r->headers_out.content_encoding;

    if ((ce && ce->hash && ce->value.len
         && !(ce->value.len == 8
              && ngx_strncasecmp(ce->value.data, (u_char *) "identity", 8)
                 == 0))
        || (ct->len >= sizeof("text/event-stream") - 1
            && ngx_strncasecmp(ct->data, (u_char *) "text/event-stream",
                               sizeof("text/event-stream") - 1) == 0)
        || r->headers_out.content_length_n > (off_t) s->conf->max_response)
    {
        /* compressed, streamed or too large: status and latency only */
        s->capture_bad = 1;
    }

    return NGX_DECLINED;
}


static ngx_int_t
ngx_aigov_shadow_body_filter(ngx_http_request_t *r, ngx_aigov_ctx_t *ctx,
    ngx_chain_t *in)
{
    size_t                    len, cap;
    u_char                   *p;
    ngx_chain_t              *cl;
    ngx_aigov_shadow_t       *s;
    ngx_aigov_shadow_link_t  *link;

    link = ngx_aigov_plugin_ctx(ctx, ngx_aigov_shadow_plugin);

    if (link == NULL || link->shadow == NULL || !link->shadow->capture) {
        return NGX_DECLINED;
    }

    s = link->shadow;

    for (cl = in; cl; cl = cl->next) {

        if (cl->buf->last_buf) {
            s->capture_last = 1;
        }

        if (s->capture_bad) {
            continue;
        }

        if (!ngx_buf_in_memory(cl->buf)) {
            if (ngx_buf_size(cl->buf)) {
                /* in a temp file: never read back here */
                s->capture_bad = 1;
            }

            continue;
        }

        len = cl->buf->last - cl->buf->pos;

        if (len == 0) {
            continue;
        }

        if (s->plen + len > s->conf->max_response) {
            s->capture_bad = 1;
            continue;
        }

        if (s->plen + len > s->pcap) {
            cap = ngx_max(s->pcap * 2, s->plen + len);
            cap = ngx_max(cap, 4096);
            cap = ngx_min(cap, s->conf->max_response);

            p = ngx_alloc(cap, r->connection->log);
            if (p == NULL) {
                s->capture_bad = 1;
                continue;
            }

            if (s->pbody) {
                ngx_memcpy(p, s->pbody, s->plen);
                ngx_free(s->pbody);
            }

            s->pbody = p;
            s->pcap = cap;
        }

        ngx_memcpy(s->pbody + s->plen, cl->buf->pos, len);
        s->plen += len;
    }

    return NGX_DECLINED;
}


/* The primary is done: hand its status and latency to the shadow. */

static void
ngx_aigov_shadow_log(ngx_http_request_t *r, ngx_aigov_ctx_t *ctx)
{
    ngx_msec_t                 ms;
    ngx_uint_t                 i;
    ngx_aigov_shadow_t        *s;
    ngx_aigov_shadow_link_t   *link;
    ngx_http_upstream_state_t *state;

    link = ngx_aigov_plugin_ctx(ctx, ngx_aigov_shadow_plugin);

    if (link == NULL || link->shadow == NULL) {
        return;
    }

    s = link->shadow;

    link->shadow = NULL;
    s->link = NULL;

    s->primary_status = r->headers_out.status;

    if (r->headers_out.status == NGX_HTTP_CLIENT_CLOSED_REQUEST
        || r->connection->error || !r->header_sent)
    {
        s->primary_aborted = 1;
    }

    /*
     * The upstream's time, connect to last byte, as $upstream_response_time
     * (summed over tries): what the shadow's time measures too.  A response
     * of nginx's own (fallback rules) counts from the decision.
     */

    ms = 0;

    if (r->upstream_states && r->upstream_states->nelts) {
        state = r->upstream_states->elts;

        for (i = 0; i < r->upstream_states->nelts; i++) {
            if (state[i].status && state[i].response_time != (ngx_msec_t) -1) {
                ms += state[i].response_time;
            }
        }

    } else {
        ms = ngx_current_msec - ctx->start;
    }

    s->primary_ms = ms;

    if (s->shadow_done) {
        ngx_aigov_shadow_compare(s);
        ngx_aigov_shadow_free(s);
    }
}


static ngx_int_t
ngx_aigov_shadow_status(ngx_aigov_model_t *model, void *conf, json_t *out)
{
    ngx_aigov_shadow_conf_t *scf = conf;

    char                          pct[8], dpct[8];
    double                        pavg, savg;
    json_t                       *js, *paths;
    ngx_uint_t                    i;
    ngx_aigov_shadow_counters_t  *c;

    if (scf == NULL || scf->c == NULL || scf->variant == NULL) {
        return NGX_OK;
    }

    c = scf->c;

    (void) aigov_format_percent(scf->percent, pct);
    (void) aigov_format_percent(scf->diff_sample, dpct);

    pavg = c->compared ? (double) c->primary_ms / c->compared : 0;
    savg = c->compared ? (double) c->shadow_ms / c->compared : 0;

    paths = json_array();
    if (paths == NULL) {
        return NGX_ERROR;
    }

    for (i = 0; i < scf->npaths; i++) {
        json_array_append_new(paths,
            json_pack("{s:s%, s:I, s:I}",
                      "path", scf->paths[i].text.data,
                      scf->paths[i].text.len,
                      "agreed", (json_int_t) c->path[i].agreed,
                      "disagreed", (json_int_t) c->path[i].disagreed));
    }

    js = json_pack("{s:s%, s:s+, s:I, s:I, s:I, s:I, s:I, s:f, s:s+, s:b}",
                   "variant", scf->variant->name.data, scf->variant->name.len,
                   "percent", pct, "%",
                   "max_body", (json_int_t) scf->max_body,
                   "max_response", (json_int_t) scf->max_response,
                   "max_concurrent", (json_int_t) scf->max_concurrent,
                   "keepalive", (json_int_t) scf->keepalive,
                   "timeout_ms", (json_int_t) scf->timeout,
                   "tolerance", scf->tolerance,
                   "diff_sample", dpct, "%",
                   "diff_stream", (int) (scf->diff_stream == 1));
    if (js == NULL) {
        json_decref(paths);
        return NGX_ERROR;
    }

#define ngx_aigov_shadow_set(name)                                            \
    json_object_set_new(js, #name, json_integer((json_int_t) c->name))

    ngx_aigov_shadow_set(in_flight);
    ngx_aigov_shadow_set(sampled);
    ngx_aigov_shadow_set(sent);
    ngx_aigov_shadow_set(completed);
    ngx_aigov_shadow_set(errors);
    ngx_aigov_shadow_set(timeouts);
    ngx_aigov_shadow_set(cancelled);
    ngx_aigov_shadow_set(dropped_body_too_large);
    ngx_aigov_shadow_set(dropped_concurrency);
    ngx_aigov_shadow_set(dropped_error);
    ngx_aigov_shadow_set(response_too_large);
    ngx_aigov_shadow_set(primary_aborted);
    ngx_aigov_shadow_set(compared);
    ngx_aigov_shadow_set(status_match);
    ngx_aigov_shadow_set(status_mismatch);
    ngx_aigov_shadow_set(agreed);
    ngx_aigov_shadow_set(disagreed);
    ngx_aigov_shadow_set(not_comparable);
    ngx_aigov_shadow_set(shadow_slower);
    ngx_aigov_shadow_set(diffs);
    ngx_aigov_shadow_set(diffs_streamed);
    ngx_aigov_shadow_set(diffs_stream_failed);

#undef ngx_aigov_shadow_set

    json_object_set_new(js, "latency_ms",
                        json_pack("{s:f, s:f, s:f}",
                                  "primary_avg", pavg,
                                  "shadow_avg", savg,
                                  "diff_avg", savg - pavg));
    json_object_set_new(js, "paths", paths);

    json_object_set_new(out, "shadow", js);

    return NGX_OK;
}


static ngx_int_t
ngx_aigov_shadow_init_worker(ngx_cycle_t *cycle)
{
    ngx_uint_t                   i, j;
    ngx_aigov_model_t          **m;
    ngx_aigov_shadow_conf_t     *scf;
    ngx_aigov_shadow_idle_t     *items;
    ngx_http_aigov_main_conf_t  *mcf;

    ngx_queue_init(&ngx_aigov_shadow_all);

    mcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_aigov_module);
    if (mcf == NULL) {
        return NGX_OK;
    }

    m = mcf->models.elts;

    for (i = 0; i < mcf->models.nelts; i++) {
        scf = ngx_aigov_model_conf(m[i], ngx_aigov_shadow_plugin);

        if (scf == NULL || scf->variant == NULL || scf->keepalive == 0) {
            continue;
        }

        ngx_queue_init(&scf->idle);
        ngx_queue_init(&scf->free);

        items = ngx_pcalloc(cycle->pool,
                            scf->keepalive * sizeof(ngx_aigov_shadow_idle_t));
        if (items == NULL) {
            return NGX_ERROR;
        }

        for (j = 0; j < scf->keepalive; j++) {
            items[j].conf = scf;
            ngx_queue_insert_tail(&scf->free, &items[j].queue);
        }
    }

    return NGX_OK;
}


/*
 * The worker exits: shadows still in flight (a fast shutdown, or
 * worker_shutdown_timeout) are cancelled and freed, their slots returned.
 */

static void
ngx_aigov_shadow_exit_process(ngx_cycle_t *cycle)
{
    ngx_uint_t           n;
    ngx_queue_t         *q;
    ngx_aigov_shadow_t  *s;

    if (ngx_aigov_shadow_all.next == NULL) {
        return;    /* init_worker did not run */
    }

    n = 0;

    while (!ngx_queue_empty(&ngx_aigov_shadow_all)) {
        q = ngx_queue_head(&ngx_aigov_shadow_all);
        s = ngx_queue_data(q, ngx_aigov_shadow_t, queue);

        if (!s->shadow_done) {
            ngx_aigov_shadow_close(s);
            ngx_aigov_shadow_count(s->conf, cancelled);
            n++;
        }

        ngx_aigov_shadow_free(s);
    }

    if (n) {
        ngx_log_error(NGX_LOG_INFO, cycle->log, 0,
                      "aigov shadow: %ui shadows in flight cancelled as the "
                      "worker exits", n);
    }

    ngx_aigov_shadow_close_idle(cycle);
}


/* Configuration. */

static void *
ngx_aigov_shadow_create_model_conf(ngx_conf_t *cf, ngx_aigov_model_t *model)
{
    ngx_aigov_shadow_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool, sizeof(ngx_aigov_shadow_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     conf->variant = NULL;
     *     conf->paths = NULL;
     *     conf->addrs = NULL;
     *     conf->c = NULL;
     */

    conf->model = model;
    conf->max_body = 8 * 1024 * 1024;
    conf->max_response = 1024 * 1024;
    conf->max_concurrent = 64;
    conf->keepalive = 16;
    conf->timeout = 5000;
    conf->tolerance = 0;
    conf->diff_sample = 100;       /* 1 % */
    conf->diff_stream = 0;

    return conf;
}


/* The NAME=VALUE parameters of "shadow" with a value of a plain type. */

#define NGX_AIGOV_SHADOW_P_SIZE       0      /* size_t, "8m" */
#define NGX_AIGOV_SHADOW_P_NUMBER     1      /* ngx_uint_t */
#define NGX_AIGOV_SHADOW_P_MSEC       2      /* ngx_msec_t, "5s" */
#define NGX_AIGOV_SHADOW_P_PERCENT    3      /* uint32_t, "1%" */
#define NGX_AIGOV_SHADOW_P_TOLERANCE  4      /* double */

typedef struct {
    ngx_str_t                  name;         /* with the '=' */
    ngx_uint_t                 type;
    size_t                     offset;       /* in the conf */
    int64_t                    min;
    int64_t                    max;
    const char                *hint;
} ngx_aigov_shadow_param_t;


static ngx_aigov_shadow_param_t  ngx_aigov_shadow_params[] = {

    { ngx_string("max_body="), NGX_AIGOV_SHADOW_P_SIZE,
      offsetof(ngx_aigov_shadow_conf_t, max_body), 0, 1024 * 1024 * 1024,
      "use a size up to 1g" },

    { ngx_string("max_response="), NGX_AIGOV_SHADOW_P_SIZE,
      offsetof(ngx_aigov_shadow_conf_t, max_response), 1, 1024 * 1024 * 1024,
      "use a size from 1 to 1g" },

    { ngx_string("max_concurrent="), NGX_AIGOV_SHADOW_P_NUMBER,
      offsetof(ngx_aigov_shadow_conf_t, max_concurrent), 1, 65535,
      "use a number from 1 to 65535" },

    { ngx_string("keepalive="), NGX_AIGOV_SHADOW_P_NUMBER,
      offsetof(ngx_aigov_shadow_conf_t, keepalive), 0, 1024,
      "use a number from 0 to 1024" },

    { ngx_string("timeout="), NGX_AIGOV_SHADOW_P_MSEC,
      offsetof(ngx_aigov_shadow_conf_t, timeout), 1, 3600 * 1000,
      "use a time from 1ms to 1h" },

    { ngx_string("tolerance="), NGX_AIGOV_SHADOW_P_TOLERANCE,
      offsetof(ngx_aigov_shadow_conf_t, tolerance), 0, 0,
      "use a number of 0 or more, e.g. 0.01" },

    { ngx_string("diff_sample="), NGX_AIGOV_SHADOW_P_PERCENT,
      offsetof(ngx_aigov_shadow_conf_t, diff_sample), 0, 0,
      "use 0%-100% with at most two decimals" },

    { ngx_null_string, 0, 0, 0, 0, NULL }
};


/* NGX_OK, NGX_DECLINED: not one of the table, NGX_ERROR: logged. */

static ngx_int_t
ngx_aigov_shadow_param(ngx_conf_t *cf, ngx_aigov_shadow_conf_t *scf,
    ngx_str_t *arg)
{
    u_char                    *field;
    int64_t                    n;
    ngx_str_t                  v;
    ngx_aigov_shadow_param_t  *p;

    for (p = ngx_aigov_shadow_params; p->name.len; p++) {
        if (arg->len >= p->name.len
            && ngx_strncmp(arg->data, p->name.data, p->name.len) == 0)
        {
            break;
        }
    }

    if (p->name.len == 0) {
        return NGX_DECLINED;
    }

    v.data = arg->data + p->name.len;
    v.len = arg->len - p->name.len;
    field = (u_char *) scf + p->offset;

    switch (p->type) {

    case NGX_AIGOV_SHADOW_P_PERCENT:
        if (aigov_parse_percent((char *) v.data, v.len, (uint32_t *) field)
            == AIGOV_OK)
        {
            return NGX_OK;
        }

        goto invalid;

    case NGX_AIGOV_SHADOW_P_TOLERANCE:
        if (aigov_parse_tolerance((char *) v.data, v.len, (double *) field)
            == AIGOV_OK)
        {
            return NGX_OK;
        }

        goto invalid;

    case NGX_AIGOV_SHADOW_P_SIZE:
        n = ngx_parse_size(&v);
        break;

    case NGX_AIGOV_SHADOW_P_MSEC:
        n = ngx_parse_time(&v, 0);
        break;

    default: /* NGX_AIGOV_SHADOW_P_NUMBER */
        n = ngx_atoi(v.data, v.len);
    }

    if (n == NGX_ERROR || n < p->min || n > p->max) {
        goto invalid;
    }

    switch (p->type) {

    case NGX_AIGOV_SHADOW_P_SIZE:
        *(size_t *) field = (size_t) n;
        break;

    case NGX_AIGOV_SHADOW_P_MSEC:
        *(ngx_msec_t *) field = (ngx_msec_t) n;
        break;

    default:
        *(ngx_uint_t *) field = (ngx_uint_t) n;
    }

    return NGX_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "invalid \"%V\" in \"shadow\": %s",
                       arg, p->hint);

    return NGX_ERROR;
}


/*
 * shadow VARIANT PERCENT [max_body=SIZE] [max_response=SIZE]
 *     [max_concurrent=N] [keepalive=N] [timeout=TIME] [compare=PATH,...]
 *     [tolerance=X] [diff_sample=PERCENT] [diff_stream=on|off];
 */

static char *
ngx_aigov_shadow_directive(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_aigov_shadow_conf_t *scf = conf;

    ngx_int_t    rc;
    ngx_str_t   *value;
    ngx_uint_t   i;

    if (scf->variant) {
        return "is duplicate";
    }

    value = cf->args->elts;

    ngx_aigov_shadow_used = 1;

    scf->file = cf->conf_file->file.name.data;
    scf->line = cf->conf_file->line;

    scf->variant = ngx_aigov_conf_variant(cf, &value[1]);
    if (scf->variant == NULL) {
        return NGX_CONF_ERROR;
    }

    if (aigov_parse_percent((char *) value[2].data, value[2].len,
                            &scf->percent)
        != AIGOV_OK)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid percentage \"%V\" in \"shadow\": use "
                           "0%%-100%% with at most two decimals", &value[2]);
        return NGX_CONF_ERROR;
    }

    for (i = 3; i < cf->args->nelts; i++) {

        rc = ngx_aigov_shadow_param(cf, scf, &value[i]);

        if (rc == NGX_OK) {
            continue;
        }

        if (rc == NGX_ERROR) {
            return NGX_CONF_ERROR;
        }

        if (ngx_strncmp(value[i].data, "compare=", 8) == 0) {
            if (ngx_aigov_shadow_compare_paths(cf, scf, &value[i])
                != NGX_CONF_OK)
            {
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strcmp(value[i].data, "diff_stream=on") == 0) {
            scf->diff_stream = 1;
            continue;
        }

        if (ngx_strcmp(value[i].data, "diff_stream=off") == 0) {
            scf->diff_stream = 0;
            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\" in \"shadow\"",
                           &value[i]);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static char *
ngx_aigov_shadow_compare_paths(ngx_conf_t *cf, ngx_aigov_shadow_conf_t *scf,
    ngx_str_t *value)
{
    char        err[128];
    u_char     *p, *end, *comma;
    ngx_str_t   path;

    if (scf->paths) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "duplicate \"compare=\" in \"shadow\"");
        return NGX_CONF_ERROR;
    }

    scf->paths = ngx_pcalloc(cf->pool, NGX_AIGOV_SHADOW_MAX_PATHS
                                       * sizeof(aigov_jpath_t));
    if (scf->paths == NULL) {
        return NGX_CONF_ERROR;
    }

    p = value->data + 8;
    end = value->data + value->len;

    for ( ;; ) {
        comma = ngx_strlchr(p, end, ',');

        path.data = p;
        path.len = (comma ? comma : end) - p;

        if (scf->npaths == NGX_AIGOV_SHADOW_MAX_PATHS) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "too many paths in \"compare=\" of "
                               "\"shadow\": at most %d",
                               NGX_AIGOV_SHADOW_MAX_PATHS);
            return NGX_CONF_ERROR;
        }

        if (aigov_jpath_parse((char *) path.data, path.len,
                              &scf->paths[scf->npaths], err, sizeof(err))
            != AIGOV_OK)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid JSON path \"%V\" in \"shadow\": %s",
                               &path, err);
            return NGX_CONF_ERROR;
        }

        scf->npaths++;

        if (comma == NULL) {
            break;
        }

        p = comma + 1;
    }

    return NGX_CONF_OK;
}


/*
 * $aigov_shadow: empty when the request was not sampled, else "sent",
 * "body_too_large", "concurrency", "error", or "sampled" (not launched:
 * answered before the content phase).
 */

static ngx_int_t
ngx_aigov_shadow_variable(ngx_http_request_t *r, ngx_http_variable_value_t *v,
    uintptr_t data)
{
    ngx_aigov_ctx_t          *ctx;
    ngx_aigov_shadow_link_t  *link;

    static ngx_str_t  results[] = {
        ngx_string("sampled"),
        ngx_string("sent"),
        ngx_string("body_too_large"),
        ngx_string("concurrency"),
        ngx_string("error")
    };

    ctx = ngx_aigov_get_ctx(r);
    link = ctx ? ngx_aigov_plugin_ctx(ctx, ngx_aigov_shadow_plugin) : NULL;

    if (link == NULL) {
        v->not_found = 1;
        return NGX_OK;
    }

    v->data = results[link->result].data;
    v->len = results[link->result].len;
    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;

    return NGX_OK;
}


static ngx_int_t
ngx_aigov_shadow_preconfiguration(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var;

    static ngx_str_t  name = ngx_string("aigov_shadow");
    static ngx_str_t  header = ngx_string("X-Aigov-Shadow");

    ngx_aigov_shadow_used = 0;

    if (ngx_aigov_header_prepare(cf, &header, &ngx_aigov_shadow_header)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    var = ngx_http_add_variable(cf, &name, NGX_HTTP_VAR_NOCACHEABLE);
    if (var == NULL) {
        return NGX_ERROR;
    }

    var->get_handler = ngx_aigov_shadow_variable;

    return NGX_OK;
}


/*
 * Once every upstream{} is known (the core's postconfiguration ran first):
 * the addresses of the shadow variant's servers, Redis for diff_stream, and
 * the precontent handler.
 */

static ngx_int_t
ngx_aigov_shadow_postconfiguration(ngx_conf_t *cf)
{
    ngx_uint_t                   i;
    ngx_aigov_model_t          **m;
    ngx_http_handler_pt         *h;
    ngx_aigov_shadow_conf_t     *scf;
    ngx_http_core_main_conf_t   *cmcf;
    ngx_http_aigov_main_conf_t  *mcf;

    if (!ngx_aigov_shadow_used) {
        return NGX_OK;
    }

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_PRECONTENT_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_aigov_shadow_precontent;

    mcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_aigov_module);
    m = mcf->models.elts;

    for (i = 0; i < mcf->models.nelts; i++) {
        scf = ngx_aigov_model_conf(m[i], ngx_aigov_shadow_plugin);

        if (scf == NULL || scf->variant == NULL) {
            continue;
        }

        if (scf->diff_stream && mcf->redis == NULL) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "\"shadow ... diff_stream=on\" of aigov_model "
                          "\"%V\" in %s:%ui needs \"aigov_redis\"",
                          &m[i]->name, scf->file, scf->line);
            return NGX_ERROR;
        }

        if (ngx_aigov_shadow_addrs(cf, scf) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_aigov_shadow_addrs(ngx_conf_t *cf, ngx_aigov_shadow_conf_t *scf)
{
    ngx_url_t                    u;
    ngx_uint_t                   i, j, n;
    ngx_aigov_variant_t         *v;
    ngx_http_upstream_server_t  *server;

    v = scf->variant;

    if (v->uscf->servers == NULL || v->uscf->servers->nelts == 0) {
        /* "variant v2 10.0.0.2:8000": an implicit upstream, as proxy_pass */
        ngx_memzero(&u, sizeof(ngx_url_t));

        u.url = v->upstream;
        u.default_port = 80;

        if (ngx_parse_url(cf->pool, &u) != NGX_OK || u.naddrs == 0) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "cannot resolve \"%V\" of variant \"%V\" for "
                          "\"shadow\" in %s:%ui%s%s", &v->upstream, &v->name,
                          scf->file, scf->line, u.err ? ": " : "",
                          u.err ? u.err : "");
            return NGX_ERROR;
        }

        scf->addrs = u.addrs;
        scf->naddrs = u.naddrs;

        return NGX_OK;
    }

    server = v->uscf->servers->elts;
    n = 0;

    for (i = 0; i < v->uscf->servers->nelts; i++) {
        if (!server[i].backup && !server[i].down) {
            n += server[i].naddrs;
        }
    }

    if (n == 0) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "upstream \"%V\" of variant \"%V\" has no server to "
                      "shadow to (not \"down\", not \"backup\") in %s:%ui",
                      &v->upstream, &v->name, scf->file, scf->line);
        return NGX_ERROR;
    }

    scf->addrs = ngx_palloc(cf->pool, n * sizeof(ngx_addr_t));
    if (scf->addrs == NULL) {
        return NGX_ERROR;
    }

    for (i = 0; i < v->uscf->servers->nelts; i++) {
        if (server[i].backup || server[i].down) {
            continue;
        }

        for (j = 0; j < server[i].naddrs; j++) {
            scf->addrs[scf->naddrs++] = server[i].addrs[j];
        }
    }

    return NGX_OK;
}


/*
 * The counters in the zone, after the core attached its nodes (init_zone
 * runs before init_module, in the master, on every configuration load).
 * A node is kept across reloads; its counters restart when the shadow
 * variant or the compare paths change.
 */

static ngx_int_t
ngx_aigov_shadow_init_module(ngx_cycle_t *cycle)
{
    u_char                       buf[sizeof("#shadow/") + 128];
    uint32_t                     hash, sig;
    ngx_str_t                    key;
    ngx_uint_t                   i, j;
    ngx_str_node_t              *sn;
    ngx_aigov_model_t          **m;
    ngx_slab_pool_t             *shpool;
    ngx_aigov_shadow_conf_t     *scf;
    ngx_aigov_shadow_node_t     *node;
    ngx_http_aigov_main_conf_t  *mcf;

    mcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_aigov_module);

    if (mcf == NULL || mcf->shpool == NULL || mcf->sh == NULL) {
        return NGX_OK;
    }

    shpool = mcf->shpool;
    m = mcf->models.elts;

    for (i = 0; i < mcf->models.nelts; i++) {
        scf = ngx_aigov_model_conf(m[i], ngx_aigov_shadow_plugin);

        if (scf == NULL || scf->variant == NULL) {
            continue;
        }

        key.data = buf;
        key.len = ngx_sprintf(buf, "#shadow/%V", &m[i]->name) - buf;
        hash = ngx_crc32_short(key.data, key.len);

        ngx_crc32_init(sig);
        ngx_crc32_update(&sig, scf->variant->name.data,
                         scf->variant->name.len);

        for (j = 0; j < scf->npaths; j++) {
            ngx_crc32_update(&sig, (u_char *) ",", 1);
            ngx_crc32_update(&sig, (u_char *) scf->paths[j].text.data,
                             scf->paths[j].text.len);
        }

        ngx_crc32_final(sig);

        ngx_shmtx_lock(&shpool->mutex);

        sn = ngx_str_rbtree_lookup(&mcf->sh->rbtree, &key, hash);

        if (sn) {
            node = (ngx_aigov_shadow_node_t *) sn;

        } else {
            node = ngx_slab_calloc_locked(shpool,
                                          sizeof(ngx_aigov_shadow_node_t)
                                          + key.len);
            if (node == NULL) {
                ngx_shmtx_unlock(&shpool->mutex);
                ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                              "aigov zone \"%V\" is full: no room for the "
                              "shadow counters of \"%V\", make it larger",
                              &mcf->shm_zone->shm.name, &m[i]->name);
                return NGX_ERROR;
            }

            ngx_memcpy(node->key, key.data, key.len);
            node->sn.str.data = node->key;
            node->sn.str.len = key.len;
            node->sn.node.key = hash;
            node->signature = sig;

            ngx_rbtree_insert(&mcf->sh->rbtree, &node->sn.node);
        }

        if (node->signature != sig) {
            /* another experiment: start counting again (shadows of the old
             * workers still give their slots back) */
            ngx_memzero((u_char *) &node->c + sizeof(ngx_atomic_t),
                        sizeof(ngx_aigov_shadow_counters_t)
                        - sizeof(ngx_atomic_t));
            node->signature = sig;
        }

        ngx_shmtx_unlock(&shpool->mutex);

        scf->c = &node->c;
    }

    return NGX_OK;
}
