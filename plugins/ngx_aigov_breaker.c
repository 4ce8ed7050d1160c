/*
 * ngx_aigov breaker plugin: a circuit breaker per model variant.
 *
 *   aigov_model chat {
 *       variant v1 chat_v1 stable;
 *       variant v2 chat_v2;
 *       breaker window=count:100 failure_rate=50% minimum_calls=20
 *               slow=2s:80% consecutive_failures=5 open=30s open_max=5m
 *               backoff=2 probes=3 failures=5xx,timeout,connect_error
 *               fleet=on;
 *       breaker variant=v1 open=10s;        # per variant: over the line above
 *       fallback v1;                         # who takes v2's requests
 *       fallback_rules rules/chat.json;      # when nobody can
 *   }
 *
 * The state machine is aigov_breaker.c (include/aigov_breaker.h: the
 * semantics); this file is the nginx glue.  Each variant's aigov_breaker_t
 * is a block of the aigov zone ("model/variant#breaker"), kept across
 * reloads, changed under the zone's mutex (but for a closed breaker
 * counting a call it lets through, aigov_breaker_allow_closed()), with
 * ngx_current_msec (monotonic, the same clock in every worker) as the
 * clock.
 *
 * decide() (priority 400, after blue-green and canary chose) asks the
 * chosen variant's breaker for a permit; when it is refused, the model's
 * fallback variants are asked in order, then the fallback rules answer, or
 * a 503 problem with Retry-After.  log() records the outcome of the
 * variant that took the request from r->upstream_states; a pool cleanup
 * releases the permit when log() never saw it (an internal redirect
 * empties the module's context), so every permit is given back once.
 *
 * The outcome is the last try's: without a response header, nginx's 504
 * is "timeout" and its 502 "connect_error", "invalid_header" or "reset";
 * with one, its status, unless the upstream then cut the body short
 * ("cut": it closed, broke or stalled past proxy_read_timeout before the
 * Content-Length or the last chunk, buffered or not; see
 * ngx_aigov_breaker_cut()).  A client that went away, a HEAD, 204 or 304,
 * and a body without a length that ends with the connection are no cut.
 *
 * Fleet: with aigov_redis and fleet=on, a trip (and a reopening) is
 * published on <prefix>control as "breaker NODE MODEL VARIANT EVENT
 * OPEN_MS"; worker 0 of every other node opens its own breaker of that
 * variant for OPEN_MS (aigov_breaker_remote_trip()).  A state forced
 * through the admin API goes the same way (the admin core publishes it
 * with the audit entry); the other nodes force the same state.  Recoveries
 * stay local: each node's own probes close its breaker.
 */

#include "ngx_http_aigov_module.h"
#include "ngx_http_aigov_redis.h"
#include "aigov_breaker.h"


/* parameters given on a "breaker" line */
#define NGX_AIGOV_BREAKER_SET_WINDOW       0x0001
#define NGX_AIGOV_BREAKER_SET_RATE         0x0002
#define NGX_AIGOV_BREAKER_SET_SLOW         0x0004
#define NGX_AIGOV_BREAKER_SET_MIN_CALLS    0x0008
#define NGX_AIGOV_BREAKER_SET_CONSECUTIVE  0x0010
#define NGX_AIGOV_BREAKER_SET_OPEN         0x0020
#define NGX_AIGOV_BREAKER_SET_OPEN_MAX     0x0040
#define NGX_AIGOV_BREAKER_SET_BACKOFF      0x0080
#define NGX_AIGOV_BREAKER_SET_PROBES       0x0100
#define NGX_AIGOV_BREAKER_SET_PROBE_TO     0x0200
#define NGX_AIGOV_BREAKER_SET_FAILURES     0x0400
#define NGX_AIGOV_BREAKER_SET_FLEET        0x0800
#define NGX_AIGOV_BREAKER_SET_DRY_RUN      0x1000

/* what the breaker did with a request: $aigov_breaker */
#define NGX_AIGOV_BREAKER_VAR_NONE         0
#define NGX_AIGOV_BREAKER_VAR_ALLOWED      1
#define NGX_AIGOV_BREAKER_VAR_PROBE        2
#define NGX_AIGOV_BREAKER_VAR_REJECTED     3
#define NGX_AIGOV_BREAKER_VAR_DRY_RUN      4

#define NGX_AIGOV_BREAKER_NODE_LEN         16     /* hex digits */

/* "NODE MODEL VARIANT EVENT OPEN_MS" after "breaker " (names: 128 at most) */
#define NGX_AIGOV_BREAKER_MSG_LEN                                            \
    (sizeof("breaker    forced-half_open ") - 1                              \
     + NGX_AIGOV_BREAKER_NODE_LEN + 2 * 128 + NGX_INT64_LEN)


/* One "breaker" line, as written. */
typedef struct {
    ngx_aigov_variant_t       *variant;      /* NULL: every variant */
    ngx_uint_t                 set;          /* NGX_AIGOV_BREAKER_SET_* */
    ngx_uint_t                 off;
    aigov_breaker_conf_t       conf;
    ngx_flag_t                 fleet;
    ngx_flag_t                 dry_run;
    u_char                    *file;
    ngx_uint_t                 line;
} ngx_aigov_breaker_line_t;


/* The breaker of one variant: the lines merged, and its state. */
typedef struct {
    aigov_breaker_conf_t       conf;
    aigov_breaker_t           *b;            /* in the zone */
    ngx_flag_t                 fleet;
    ngx_flag_t                 dry_run;
    ngx_uint_t                 enabled;
} ngx_aigov_breaker_variant_t;


typedef struct {
    ngx_aigov_model_t         *model;
    ngx_http_aigov_main_conf_t *mcf;         /* its shpool */
    ngx_array_t                lines;        /* ngx_aigov_breaker_line_t */
    ngx_aigov_breaker_line_t  *fleet_line;   /* the first with fleet=on */
    ngx_aigov_breaker_variant_t  variants[NGX_AIGOV_MAX_VARIANTS];
} ngx_aigov_breaker_conf_t;


typedef struct {
    u_char                    *node;         /* NODE_LEN, in the zone */
    ngx_uint_t                 fleet;        /* some breaker has fleet=on */
} ngx_aigov_breaker_main_conf_t;


/* Per request. */
typedef struct {
    ngx_http_request_t        *request;
    ngx_aigov_model_t         *model;
    ngx_aigov_variant_t       *variant;      /* the permit's variant */
    ngx_aigov_breaker_variant_t *vb;         /* NULL: no permit held */
    aigov_breaker_permit_t     permit;
    ngx_uint_t                 first_state;  /* of r->upstream_states */
    ngx_uint_t                 var;          /* $aigov_breaker */
} ngx_aigov_breaker_ctx_t;


/*
 * The context and its pool cleanup, which gives the permit back when log()
 * never sees it: what ngx_pool_cleanup_add() makes, in one allocation.
 */
typedef struct {
    ngx_pool_cleanup_t         cln;
    ngx_aigov_breaker_ctx_t    ctx;
} ngx_aigov_breaker_kept_t;


static int ngx_aigov_breaker_allow(ngx_http_request_t *r,
    ngx_aigov_breaker_conf_t *bcf, ngx_aigov_variant_t *v,
    aigov_breaker_permit_t *permit);
static ngx_int_t ngx_aigov_breaker_decide(ngx_http_request_t *r,
    ngx_aigov_ctx_t *ctx);
static ngx_int_t ngx_aigov_breaker_reject(ngx_http_request_t *r,
    ngx_aigov_ctx_t *ctx, ngx_aigov_breaker_conf_t *bcf, uint64_t retry_ms);
static ngx_int_t ngx_aigov_breaker_keep(ngx_http_request_t *r,
    ngx_aigov_ctx_t *ctx, ngx_aigov_breaker_variant_t *vb,
    ngx_aigov_variant_t *v, aigov_breaker_permit_t *permit, ngx_uint_t var);
static void ngx_aigov_breaker_log(ngx_http_request_t *r,
    ngx_aigov_ctx_t *ctx);
static void ngx_aigov_breaker_cleanup(void *data);
static void ngx_aigov_breaker_finish(ngx_aigov_breaker_ctx_t *bctx,
    ngx_log_t *log);
static ngx_uint_t ngx_aigov_breaker_cut(ngx_http_request_t *r,
    ngx_http_upstream_state_t *state, ngx_log_t *log);
static void ngx_aigov_breaker_event(ngx_aigov_breaker_ctx_t *bctx,
    ngx_aigov_breaker_variant_t *vb, int event, aigov_breaker_stats_t *pre,
    aigov_breaker_stats_t *st, ngx_uint_t fail, ngx_uint_t slow,
    ngx_log_t *log);
static size_t ngx_aigov_breaker_message_text(u_char *buf,
    ngx_aigov_model_t *model, ngx_aigov_variant_t *v, const char *event,
    uint64_t open_ms);
static ngx_int_t ngx_aigov_breaker_publish(ngx_aigov_model_t *model,
    ngx_aigov_variant_t *v, const char *event, uint64_t open_ms,
    ngx_log_t *log);
static void ngx_aigov_breaker_publish_reply(void *data, redisReply *reply);
static void ngx_aigov_breaker_message(u_char *msg, size_t len);
static ngx_int_t ngx_aigov_breaker_status(ngx_aigov_model_t *model,
    void *conf, json_t *out);
static ngx_int_t ngx_aigov_breaker_init_worker(ngx_cycle_t *cycle);
static ngx_int_t ngx_aigov_breaker_ms(ngx_str_t *s, ngx_msec_t min);

static void *ngx_aigov_breaker_create_model_conf(ngx_conf_t *cf,
    ngx_aigov_model_t *model);
static char *ngx_aigov_breaker_init_model_conf(ngx_conf_t *cf,
    ngx_aigov_model_t *model, void *conf);
static char *ngx_aigov_breaker_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_aigov_breaker_add_variables(ngx_conf_t *cf);
static ngx_int_t ngx_aigov_breaker_postconfiguration(ngx_conf_t *cf);
static void *ngx_aigov_breaker_create_main_conf(ngx_conf_t *cf);


static ngx_command_t  ngx_aigov_breaker_model_commands[] = {

    { ngx_string("breaker"),
      NGX_CONF_1MORE,
      ngx_aigov_breaker_directive,
      0,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_aigov_breaker_module_ctx = {
    ngx_aigov_breaker_add_variables,       /* preconfiguration */
    ngx_aigov_breaker_postconfiguration,   /* postconfiguration */
    ngx_aigov_breaker_create_main_conf,    /* create main configuration */
    NULL,                                  /* init main configuration */
    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */
    NULL,                                  /* create location configuration */
    NULL                                   /* merge location configuration */
};


/*
 * An nginx module of its own only for the $aigov_breaker variable and the
 * check, once all of http{} is known, that fleet=on has an aigov_redis.
 */
ngx_module_t  ngx_aigov_breaker_module = {
    NGX_MODULE_V1,
    &ngx_aigov_breaker_module_ctx,         /* module context */
    NULL,                                  /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL, NULL, NULL, NULL, NULL, NULL, NULL,
    NGX_MODULE_V1_PADDING
};


ngx_aigov_plugin_t  ngx_aigov_breaker_plugin = {
    NGX_AIGOV_ABI,
    "breaker",
    "1.0.0",
    NGX_AIGOV_PRIO_BREAKER,
    &ngx_aigov_breaker_module,             /* nginx module */
    ngx_aigov_breaker_model_commands,
    ngx_aigov_breaker_create_model_conf,
    ngx_aigov_breaker_init_model_conf,
    NULL,                                  /* enabled: wherever aigov routes */
    ngx_aigov_breaker_init_worker,
    ngx_aigov_breaker_decide,
    NULL,                                  /* header filter */
    NULL,                                  /* body filter */
    ngx_aigov_breaker_log,
    ngx_aigov_breaker_status,
    0,
    NULL                                   /* needs body */
};


static ngx_str_t  ngx_aigov_breaker_var_names[] = {
    ngx_null_string,
    ngx_string("allowed"),
    ngx_string("probe"),
    ngx_string("rejected"),
    ngx_string("dry_run")
};


/* worker state for the fleet */
static ngx_str_t   ngx_aigov_breaker_channel;
static u_char     *ngx_aigov_breaker_node;


/* The request path. */

/*
 * A permit from variant v's breaker (enabled, in the zone), under the
 * mutex: when aigov_breaker_allow_closed(), tried first, asks for it.
 */

NGX_AIGOV_HOT
static int
ngx_aigov_breaker_allow(ngx_http_request_t *r, ngx_aigov_breaker_conf_t *bcf,
    ngx_aigov_variant_t *v, aigov_breaker_permit_t *permit)
{
    int                           rc;
    uint64_t                      gen;
    ngx_slab_pool_t              *shpool;
    ngx_aigov_breaker_variant_t  *vb;

    vb = &bcf->variants[v->index];
    shpool = bcf->mcf->shpool;

    ngx_shmtx_lock(&shpool->mutex);
    gen = vb->b->generation;
    rc = aigov_breaker_allow(vb->b, &vb->conf, ngx_current_msec, permit);
    ngx_shmtx_unlock(&shpool->mutex);

    if (rc != AIGOV_BREAKER_REJECT && permit->generation != gen) {
        /* this request moved it from OPEN to HALF_OPEN */
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "aigov: model \"%V\" variant \"%V\": circuit breaker "
                      "half-open, probing%s", &bcf->model->name, &v->name,
                      vb->dry_run ? " (dry run)" : "");
    }

    return rc;
}


NGX_AIGOV_HOT
static ngx_int_t
ngx_aigov_breaker_decide(ngx_http_request_t *r, ngx_aigov_ctx_t *ctx)
{
    int                           rc;
    aigov_breaker_permit_t        permit;
    ngx_aigov_breaker_conf_t     *bcf;
    ngx_aigov_breaker_variant_t  *vb;

    bcf = ngx_aigov_model_conf(ctx->model, ngx_aigov_breaker_plugin);

    if (bcf == NULL
        || ngx_aigov_plugin_ctx(ctx, ngx_aigov_breaker_plugin) != NULL)
    {
        return NGX_DECLINED;
    }

    if (ctx->variant == NULL) {
        /* what the core would choose after the chain */
        ngx_aigov_choose(r, ctx, ctx->model->stable,
                         NGX_AIGOV_DECISION_STABLE);
    }

    vb = &bcf->variants[ctx->variant->index];

    if (!vb->enabled || vb->b == NULL) {
        return NGX_DECLINED;
    }

    /* a closed breaker, usually: no mutex */

    rc = aigov_breaker_allow_closed(vb->b, &vb->conf, ngx_current_msec,
                                    &permit);

    if (rc == AIGOV_BREAKER_AGAIN) {
        rc = ngx_aigov_breaker_allow(r, bcf, ctx->variant, &permit);
    }

    if (rc != AIGOV_BREAKER_REJECT) {
        return ngx_aigov_breaker_keep(r, ctx, vb, ctx->variant, &permit,
                                      (rc == AIGOV_BREAKER_ALLOW_PROBE)
                                      ? NGX_AIGOV_BREAKER_VAR_PROBE
                                      : NGX_AIGOV_BREAKER_VAR_ALLOWED);
    }

    if (vb->dry_run) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "aigov: model \"%V\" variant \"%V\": circuit open, "
                      "dry run: not rejected", &ctx->model->name,
                      &ctx->variant->name);

        return ngx_aigov_breaker_keep(r, ctx, NULL, NULL, NULL,
                                      NGX_AIGOV_BREAKER_VAR_DRY_RUN);
    }

    return ngx_aigov_breaker_reject(r, ctx, bcf, permit.retry_after_ms);
}


/*
 * The chosen variant's breaker refused: the fallback chain.  NGX_OK when a
 * fallback variant takes the request, else the rules or the problem
 * response have answered (NGX_DONE).
 */

static ngx_int_t
ngx_aigov_breaker_reject(ngx_http_request_t *r, ngx_aigov_ctx_t *ctx,
    ngx_aigov_breaker_conf_t *bcf, uint64_t retry_ms)
{
    int                           rc;
    u_char                       *p;
    time_t                        retry_after;
    ngx_str_t                     detail;
    ngx_uint_t                    i;
    ngx_aigov_variant_t          *v;
    aigov_breaker_permit_t        permit;
    ngx_aigov_breaker_variant_t  *fb;

    for (i = 0; i < ctx->model->nfallback; i++) {
        v = ctx->model->fallback[i];

        if (v == ctx->variant) {
            continue;
        }

        fb = &bcf->variants[v->index];

        if (!fb->enabled || fb->b == NULL) {
            /* no breaker: always usable */
            ngx_aigov_fallback_variant(r, ctx, v, NGX_AIGOV_FALLBACK_BREAKER);
            return ngx_aigov_breaker_keep(r, ctx, NULL, NULL, NULL,
                                          NGX_AIGOV_BREAKER_VAR_REJECTED);
        }

        rc = aigov_breaker_allow_closed(fb->b, &fb->conf, ngx_current_msec,
                                        &permit);

        if (rc == AIGOV_BREAKER_AGAIN) {
            rc = ngx_aigov_breaker_allow(r, bcf, v, &permit);
        }

        if (rc != AIGOV_BREAKER_REJECT) {
            ngx_aigov_fallback_variant(r, ctx, v, NGX_AIGOV_FALLBACK_BREAKER);
            return ngx_aigov_breaker_keep(r, ctx, fb, v, &permit,
                                          NGX_AIGOV_BREAKER_VAR_REJECTED);
        }

        if (permit.retry_after_ms < retry_ms) {
            /* the first variant to take requests again */
            retry_ms = permit.retry_after_ms;
        }
    }

    if (ngx_aigov_breaker_keep(r, ctx, NULL, NULL, NULL,
                               NGX_AIGOV_BREAKER_VAR_REJECTED)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    retry_after = (time_t) ((retry_ms + 999) / 1000);

    if (retry_after < 1) {
        retry_after = 1;
    }

    detail.len = sizeof("the circuit breaker of variant \"\" of model \"\" "
                        "is open and no fallback variant can take the "
                        "request") - 1
                 + ctx->variant->name.len + ctx->model->name.len;

    detail.data = ngx_pnalloc(r->pool, detail.len);
    if (detail.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_sprintf(detail.data, "the circuit breaker of variant \"%V\" of "
                    "model \"%V\" is open", &ctx->variant->name,
                    &ctx->model->name);

    for (i = 0; i < ctx->model->nfallback; i++) {
        if (ctx->model->fallback[i] != ctx->variant) {
            p = ngx_sprintf(p, " and no fallback variant can take the "
                            "request");
            break;
        }
    }

    detail.len = p - detail.data;

    return ngx_aigov_fallback(r, ctx, NGX_AIGOV_FALLBACK_BREAKER,
                              NGX_HTTP_SERVICE_UNAVAILABLE, "circuit-open",
                              "Circuit open", &detail, retry_after);
}


/*
 * Keeps the request's breaker context: the permit of variant v's breaker
 * vb (NULL: none held) and $aigov_breaker.  It is a pool cleanup too.
 */

NGX_AIGOV_HOT
static ngx_int_t
ngx_aigov_breaker_keep(ngx_http_request_t *r, ngx_aigov_ctx_t *ctx,
    ngx_aigov_breaker_variant_t *vb, ngx_aigov_variant_t *v,
    aigov_breaker_permit_t *permit, ngx_uint_t var)
{
    ngx_slab_pool_t           *shpool;
    ngx_aigov_breaker_ctx_t   *bctx;
    ngx_aigov_breaker_conf_t  *bcf;
    ngx_aigov_breaker_kept_t  *k;

    k = ngx_palloc(r->pool, sizeof(ngx_aigov_breaker_kept_t));

    if (k == NULL) {
        if (vb) {
            /* no upstream was tried: the permit goes back */

            bcf = ngx_aigov_model_conf(ctx->model, ngx_aigov_breaker_plugin);
            shpool = bcf->mcf->shpool;

            ngx_shmtx_lock(&shpool->mutex);
            aigov_breaker_release(vb->b, &vb->conf, ngx_current_msec, permit);
            ngx_shmtx_unlock(&shpool->mutex);
        }

        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    bctx = &k->ctx;

    bctx->request = r;
    bctx->model = ctx->model;
    bctx->variant = v;
    bctx->vb = vb;
    bctx->first_state = r->upstream_states ? r->upstream_states->nelts : 0;
    bctx->var = var;

    if (vb) {
        bctx->permit = *permit;

    } else {
        ngx_memzero(&bctx->permit, sizeof(aigov_breaker_permit_t));
    }

    /* as ngx_pool_cleanup_add() links one */

    k->cln.handler = ngx_aigov_breaker_cleanup;
    k->cln.data = bctx;
    k->cln.next = r->pool->cleanup;
    r->pool->cleanup = &k->cln;

    ngx_aigov_plugin_ctx(ctx, ngx_aigov_breaker_plugin) = bctx;

    return NGX_OK;
}


NGX_AIGOV_HOT
static void
ngx_aigov_breaker_log(ngx_http_request_t *r, ngx_aigov_ctx_t *ctx)
{
    ngx_aigov_breaker_ctx_t  *bctx;

    bctx = ngx_aigov_plugin_ctx(ctx, ngx_aigov_breaker_plugin);

    if (bctx && bctx->vb) {
        ngx_aigov_breaker_finish(bctx, r->connection->log);
    }
}


/*
 * The request is freed and log() never recorded its permit (an internal
 * redirect emptied the module's context, or the log phase did not run).
 * The pool's memory, r->upstream_states included, is still there.
 */

NGX_AIGOV_HOT
static void
ngx_aigov_breaker_cleanup(void *data)
{
    ngx_aigov_breaker_ctx_t  *bctx = data;

    if (bctx->vb) {
        ngx_aigov_breaker_finish(bctx, ngx_cycle->log);
    }
}


/*
 * Records the outcome of the call the permit let through, once: the last
 * try of the first upstream run after the decision (proxy_next_upstream
 * tries are one call; "upstream_states" separates runs with an empty
 * state), or releases the permit when no upstream was tried.
 */

NGX_AIGOV_HOT
static void
ngx_aigov_breaker_finish(ngx_aigov_breaker_ctx_t *bctx, ngx_log_t *log)
{
    int                           outcome, event;
    uint64_t                      duration;
    unsigned                      err;
    ngx_uint_t                    i, n, first, status;
    ngx_slab_pool_t              *shpool;
    ngx_http_request_t           *r;
    aigov_breaker_stats_t         pre, st;
    ngx_http_upstream_state_t    *state, *last;
    ngx_aigov_breaker_conf_t     *bcf;
    ngx_aigov_breaker_variant_t  *vb;

    vb = bctx->vb;
    bctx->vb = NULL;
    r = bctx->request;

    last = NULL;
    duration = 0;
    first = bctx->first_state;
    n = r->upstream_states ? r->upstream_states->nelts : 0;
    state = n ? r->upstream_states->elts : NULL;

    /* an empty state separates the runs of two upstream requests */
    while (first < n && state[first].peer == NULL) {
        first++;
    }

    for (i = first; i < n && state[i].peer; i++) {
        last = &state[i];

        if (state[i].response_time != (ngx_msec_t) -1) {
            duration += state[i].response_time;
        }
    }

    outcome = AIGOV_BREAKER_IGNORE;
    status = 0;
    err = 0;

    if (last) {
        status = last->status;

        if (last->header_time == (ngx_msec_t) -1) {
            /* no response header: nginx's status tells what happened */

            if (status == NGX_HTTP_GATEWAY_TIME_OUT) {
                err = AIGOV_BREAKER_ERR_TIMEOUT;

            } else if (status == NGX_HTTP_BAD_GATEWAY) {
                if (last->connect_time == (ngx_msec_t) -1) {
                    err = AIGOV_BREAKER_ERR_CONNECT;

                } else if (last->bytes_received) {
                    err = AIGOV_BREAKER_ERR_INVALID_HEADER;

                } else {
                    err = AIGOV_BREAKER_ERR_RESET;
                }
            }

            if (err) {
                /* the status is nginx's, not the upstream's */
                status = 0;
            }

        } else if (ngx_aigov_breaker_cut(r, last, log)) {
            /* the header's status stays: without "cut" it decides */
            err = AIGOV_BREAKER_ERR_CUT;
        }

        outcome = aigov_breaker_classify(&vb->conf, (int) status, err);
    }

    bcf = ngx_aigov_model_conf(bctx->model, ngx_aigov_breaker_plugin);
    shpool = bcf->mcf->shpool;

    ngx_shmtx_lock(&shpool->mutex);

    if (bctx->permit.kind == AIGOV_BREAKER_PERMIT_PROBE) {
        /*
         * The probes so far: closing or reopening empties them.  Only a
         * probe's outcome reopens or closes, so only then is "pre" read.
         */
        aigov_breaker_stats(vb->b, &vb->conf, ngx_current_msec, &pre);
    }

    event = aigov_breaker_record(vb->b, &vb->conf, ngx_current_msec, outcome,
                                 duration, &bctx->permit);

    if (event == AIGOV_BREAKER_TRIPPED || event == AIGOV_BREAKER_REOPENED
        || event == AIGOV_BREAKER_RECOVERED)
    {
        aigov_breaker_stats(vb->b, &vb->conf, ngx_current_msec, &st);
    }

    ngx_shmtx_unlock(&shpool->mutex);

    ngx_log_debug6(NGX_LOG_DEBUG_HTTP, log, 0,
                   "aigov breaker \"%V\": status %ui err %ui, %uL ms: "
                   "outcome %d, %s",
                   &bctx->variant->name, status, (ngx_uint_t) err, duration,
                   outcome, aigov_breaker_event_name(event));

    if (event == AIGOV_BREAKER_TRIPPED || event == AIGOV_BREAKER_REOPENED
        || event == AIGOV_BREAKER_RECOVERED)
    {
        ngx_aigov_breaker_event(bctx, vb, event, &pre, &st,
                                outcome == AIGOV_BREAKER_FAILURE,
                                duration > vb->conf.slow_call_duration_ms,
                                log);
    }
}


/*
 * Was the body of the response to this try cut short by the upstream?  Its
 * header went to the client, then the upstream closed the connection,
 * broke it or stalled past proxy_read_timeout before the end of a body
 * whose end it had announced (Content-Length, or chunked: the last chunk).
 * Read in the log phase, after ngx_http_upstream_finalize_request() (the
 * request's cleanup runs before the log phase): the upstream connection is
 * gone, but r->upstream and its pipe are in the request's pool and keep
 * what nginx decided with (nginx 1.22, ngx_http_upstream.c):
 *
 *   proxy_buffering off: ngx_http_upstream_process_non_buffered_request()
 *   ends a response well when u->length is 0, or -1 (no length) at the
 *   upstream's EOF; u->length is the Content-Length not yet received, 1
 *   until the last chunk of a chunked body (the proxy module's input
 *   filters), 0 when there is no body (HEAD, 204, 304).
 *
 *   proxy_buffering on: ngx_http_upstream_process_request() ends it well
 *   on p->upstream_done (p->length reached 0: the Content-Length or the
 *   last chunk), or p->upstream_eof with p->length -1; p->upstream_eof
 *   (EOF) or p->upstream_error (a recv() error, the read timeout) with
 *   p->length > 0 is "upstream prematurely closed connection" or a 502.
 *
 * So a cut is: u->length > 0 unbuffered; p->upstream_eof or _error with
 * p->length > 0 and not p->upstream_done buffered.  Never a cut, whatever
 * the lengths: the client's side failing (c->error: it closed or a write
 * failed, nginx's 499; c->timedout, send_timeout; p->downstream_error), a
 * body nginx does not send (r->header_only: HEAD, a 304 of its own), a
 * header that never went out (u->header_sent: intercepted errors, cache
 * answers), an upgraded connection, a body without a length (-1: its end
 * is the close, nothing says it is short), and another upstream run than
 * the try recorded (u->state).  Unbuffered there is no trace of the EOF
 * itself: an nginx error while sending (out of memory, a body filter
 * failing) with the client still there also leaves u->length > 0.
 */

static ngx_uint_t
ngx_aigov_breaker_cut(ngx_http_request_t *r, ngx_http_upstream_state_t *state,
    ngx_log_t *log)
{
    ngx_event_pipe_t     *p;
    ngx_connection_t     *c;
    ngx_http_upstream_t  *u;

    u = r->upstream;
    c = r->connection;

    if (u == NULL || u->state != state || u->cleanup != NULL
        || !u->header_sent || u->upgrade || r->header_only)
    {
        return 0;
    }

    if (c->error || c->timedout) {
        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, log, 0,
                       "aigov breaker: the client's side failed: no cut");
        return 0;
    }

    if (!u->buffering) {
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, log, 0,
                       "aigov breaker: unbuffered, length left %O",
                       u->length);

        return u->length > 0;
    }

    p = u->pipe;

    if (p == NULL) {
        return 0;
    }

    ngx_log_debug5(NGX_LOG_DEBUG_HTTP, log, 0,
                   "aigov breaker: buffered, length left %O, done %d, "
                   "eof %d, error %d, downstream error %d",
                   p->length, (int) p->upstream_done, (int) p->upstream_eof,
                   (int) p->upstream_error, (int) p->downstream_error);

    return !p->downstream_error && !p->upstream_done
           && (p->upstream_eof || p->upstream_error) && p->length > 0;
}


/* A transition: logged, and a trip published to the fleet. */

static void
ngx_aigov_breaker_event(ngx_aigov_breaker_ctx_t *bctx,
    ngx_aigov_breaker_variant_t *vb, int event, aigov_breaker_stats_t *pre,
    aigov_breaker_stats_t *st, ngx_uint_t fail, ngx_uint_t slow,
    ngx_log_t *log)
{
    const char           *dry;
    ngx_aigov_model_t    *model;
    ngx_aigov_variant_t  *v;

    model = bctx->model;
    v = bctx->variant;
    dry = vb->dry_run ? " (dry run)" : "";

    if (event == AIGOV_BREAKER_RECOVERED) {
        ngx_log_error(NGX_LOG_NOTICE, log, 0,
                      "aigov: model \"%V\" variant \"%V\": circuit breaker "
                      "recovered (%uD probes, %uD failed, %uD slow), "
                      "closed%s",
                      &model->name, &v->name, pre->probes_done + 1,
                      pre->probe_failures + (uint32_t) fail,
                      pre->probe_slow + (uint32_t) slow, dry);
        return;
    }

    if (event == AIGOV_BREAKER_REOPENED) {
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "aigov: model \"%V\" variant \"%V\": circuit breaker "
                      "reopened (%s: %uD probes, %uD failed, %uD slow), "
                      "open for %uDms%s",
                      &model->name, &v->name,
                      aigov_breaker_reason_name(st->reason),
                      pre->probes_done + 1,
                      pre->probe_failures + (uint32_t) fail,
                      pre->probe_slow + (uint32_t) slow, st->open_ms, dry);

    } else if (st->reason == AIGOV_BREAKER_REASON_CONSECUTIVE) {
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "aigov: model \"%V\" variant \"%V\": circuit breaker "
                      "tripped (consecutive_failures: %uD in a row; "
                      "%uD failed and %uD slow of %uD calls), open for "
                      "%uDms%s",
                      &model->name, &v->name,
                      vb->conf.consecutive_failures,
                      st->failures, st->slow, st->calls, st->open_ms, dry);

    } else {
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "aigov: model \"%V\" variant \"%V\": circuit breaker "
                      "tripped (%s: %uD failed and %uD slow of %uD calls, "
                      "failure rate %uD.%02uD%%, slow call rate "
                      "%uD.%02uD%%), open for %uDms%s",
                      &model->name, &v->name,
                      aigov_breaker_reason_name(st->reason),
                      st->failures, st->slow, st->calls,
                      (uint32_t) ngx_max(st->failure_rate, 0) / 100,
                      (uint32_t) ngx_max(st->failure_rate, 0) % 100,
                      (uint32_t) ngx_max(st->slow_rate, 0) / 100,
                      (uint32_t) ngx_max(st->slow_rate, 0) % 100,
                      st->open_ms, dry);
    }

    if (vb->fleet && !vb->dry_run) {
        (void) ngx_aigov_breaker_publish(model, v,
                                         aigov_breaker_event_name(event),
                                         st->open_ms, log);
    }
}


/*
 * Fleet messages, on <prefix>control:
 *
 *   breaker NODE MODEL VARIANT EVENT OPEN_MS
 *
 * EVENT "tripped" or "reopened" (a trip here), "forced" (forced open
 * through the admin API), "forced-closed" or "forced-half_open" (the same,
 * closed or half-open; OPEN_MS 0).  Nodes before forced-closed and
 * forced-half_open read every EVENT as a trip for OPEN_MS: they ignore
 * those two (a trip of 0 ms changes nothing).
 */

static size_t
ngx_aigov_breaker_message_text(u_char *buf, ngx_aigov_model_t *model,
    ngx_aigov_variant_t *v, const char *event, uint64_t open_ms)
{
    return ngx_snprintf(buf, NGX_AIGOV_BREAKER_MSG_LEN,
                        "breaker %*s %V %V %s %uL",
                        (size_t) NGX_AIGOV_BREAKER_NODE_LEN,
                        ngx_aigov_breaker_node, &model->name, &v->name,
                        event, open_ms)
           - buf;
}


/* A trip: published, never waiting for Redis. */

static ngx_int_t
ngx_aigov_breaker_publish(ngx_aigov_model_t *model, ngx_aigov_variant_t *v,
    const char *event, uint64_t open_ms, ngx_log_t *log)
{
    u_char                 msg[NGX_AIGOV_BREAKER_MSG_LEN];
    const char            *argv[3];
    size_t                 argvlen[3];
    ngx_aigov_redis_t     *rds;
    ngx_aigov_redis_cmd_t *cmd;

    rds = ngx_http_aigov_control_client();

    if (rds == NULL || ngx_aigov_breaker_node == NULL
        || ngx_aigov_breaker_channel.len == 0)
    {
        return NGX_DECLINED;
    }

    argv[0] = "PUBLISH";
    argvlen[0] = sizeof("PUBLISH") - 1;
    argv[1] = (const char *) ngx_aigov_breaker_channel.data;
    argvlen[1] = ngx_aigov_breaker_channel.len;
    argv[2] = (const char *) msg;
    argvlen[2] = ngx_aigov_breaker_message_text(msg, model, v, event,
                                                open_ms);

    /* never waits: queued on the worker's connection, or dropped */

    cmd = ngx_aigov_redis_send(rds, ngx_aigov_breaker_publish_reply, NULL, 3,
                               argv, argvlen);

    if (cmd == NULL) {
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "aigov: model \"%V\" variant \"%V\": circuit breaker "
                      "trip not published to the fleet: redis is not "
                      "connected", &model->name, &v->name);
        return NGX_DECLINED;
    }

    return NGX_OK;
}


static void
ngx_aigov_breaker_publish_reply(void *data, redisReply *reply)
{
    if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "aigov: publishing a circuit breaker trip to the "
                      "fleet failed%s%*s",
                      reply ? ": " : "",
                      reply ? (size_t) ngx_min(reply->len, 200) : 0,
                      reply ? reply->str : "");
    }
}


/*
 * Worker 0: "NODE MODEL VARIANT EVENT OPEN_MS" from <prefix>control.  The
 * node's own messages come back too: they are skipped.  What is applied
 * here is never published again: only this node's own trips and admin
 * changes are, so messages never echo.
 */

static void
ngx_aigov_breaker_message(u_char *msg, size_t len)
{
    int                           rc, state;
    u_char                       *p, *end, *sp;
    ngx_str_t                     f[5];
    ngx_int_t                     open_ms;
    ngx_uint_t                    i;
    ngx_slab_pool_t              *shpool;
    ngx_aigov_model_t            *model;
    ngx_aigov_variant_t          *v;
    ngx_aigov_breaker_conf_t     *bcf;
    ngx_aigov_breaker_variant_t  *vb;
    ngx_http_aigov_main_conf_t   *mcf;

    p = msg;
    end = msg + len;

    for (i = 0; i < 5; i++) {
        sp = (i < 4) ? ngx_strlchr(p, end, ' ') : end;

        if (sp == NULL || sp == p) {
            goto invalid;
        }

        f[i].data = p;
        f[i].len = sp - p;
        p = sp + 1;
    }

    if (ngx_aigov_breaker_node
        && f[0].len == NGX_AIGOV_BREAKER_NODE_LEN
        && ngx_strncmp(f[0].data, ngx_aigov_breaker_node,
                       NGX_AIGOV_BREAKER_NODE_LEN) == 0)
    {
        return;
    }

    open_ms = ngx_atoi(f[4].data, f[4].len);

    if (open_ms == NGX_ERROR) {
        goto invalid;
    }

    mcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                              ngx_http_aigov_module);

    model = ngx_http_aigov_find_model(mcf, f[1].data, f[1].len);
    if (model == NULL) {
        /* a model this node does not have */
        return;
    }

    bcf = ngx_aigov_model_conf(model, ngx_aigov_breaker_plugin);
    v = ngx_aigov_find_variant(model, &f[2]);

    if (bcf == NULL || v == NULL) {
        return;
    }

    vb = &bcf->variants[v->index];

    if (!vb->enabled || !vb->fleet || vb->dry_run || vb->b == NULL) {
        return;
    }

    shpool = bcf->mcf->shpool;

    /* forced through another node's admin API: the same state here */

    if (f[3].len == sizeof("forced-closed") - 1
        && ngx_strncmp(f[3].data, "forced-closed", f[3].len) == 0)
    {
        state = AIGOV_BREAKER_CLOSED;

    } else if (f[3].len == sizeof("forced-half_open") - 1
               && ngx_strncmp(f[3].data, "forced-half_open", f[3].len) == 0)
    {
        state = AIGOV_BREAKER_HALF_OPEN;

    } else {
        state = -1;
    }

    if (state != -1) {
        ngx_shmtx_lock(&shpool->mutex);
        aigov_breaker_force(vb->b, &vb->conf, state, ngx_current_msec, 0);
        ngx_shmtx_unlock(&shpool->mutex);

        ngx_log_error(NGX_LOG_NOTICE, ngx_cycle->log, 0,
                      "aigov: model \"%V\" variant \"%V\": circuit breaker "
                      "%s by the fleet (forced on node %V)%s",
                      &model->name, &v->name,
                      state == AIGOV_BREAKER_CLOSED ? "closed" : "half-open",
                      &f[0],
                      state == AIGOV_BREAKER_CLOSED ? "" : ", probing");
        return;
    }

    /* a trip, or a forced open: open for at least OPEN_MS */

    ngx_shmtx_lock(&shpool->mutex);
    rc = aigov_breaker_remote_trip(vb->b, &vb->conf, ngx_current_msec,
                                   (uint64_t) open_ms);
    ngx_shmtx_unlock(&shpool->mutex);

    if (rc == 1) {
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "aigov: model \"%V\" variant \"%V\": circuit breaker "
                      "opened by the fleet (%V on node %V), open for %ims",
                      &model->name, &v->name, &f[3], &f[0], open_ms);

    } else if (rc == 2) {
        ngx_log_error(NGX_LOG_INFO, ngx_cycle->log, 0,
                      "aigov: model \"%V\" variant \"%V\": circuit breaker "
                      "kept open longer by the fleet (%V on node %V)",
                      &model->name, &v->name, &f[3], &f[0]);
    }

    return;

invalid:

    ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                  "aigov: invalid circuit breaker message \"breaker %*s\" "
                  "ignored", ngx_min(len, 300), msg);
}


/* Status: aigov_status and the admin API's models. */

static json_t *
ngx_aigov_breaker_rate(int32_t rate)
{
    return (rate < 0) ? json_null() : json_real(rate / 100.0);
}


static json_t *
ngx_aigov_breaker_conf_json(aigov_breaker_conf_t *c)
{
    char     failures[AIGOV_BREAKER_CLASSIFIER_LEN];
    u_char   window[64], *p;
    json_t  *j;

    if (c->window_type == AIGOV_BREAKER_WINDOW_TIME) {
        p = ngx_snprintf(window, sizeof(window) - 1, "time:%uDms/%uDms",
                         c->window_size * c->bucket_ms, c->bucket_ms);

    } else {
        p = ngx_snprintf(window, sizeof(window) - 1, "count:%uD",
                         c->window_size);
    }

    *p = '\0';

    (void) aigov_breaker_format_classifier(&c->classifier, failures,
                                           sizeof(failures));

    j = json_pack("{s:s, s:i, s:i, s:i, s:I, s:i, s:I, s:I, s:f, s:i, s:I, "
                  "s:s}",
                  "window", (char *) window,
                  "failure_rate", (int) c->failure_rate_threshold,
                  "slow_call_rate", (int) c->slow_call_rate_threshold,
                  "minimum_calls", (int) c->minimum_calls,
                  "slow_call_ms", (json_int_t) c->slow_call_duration_ms,
                  "consecutive_failures", (int) c->consecutive_failures,
                  "open_ms", (json_int_t) c->open_duration_ms,
                  "open_max_ms", (json_int_t) aigov_breaker_open_max(c),
                  "backoff", c->open_backoff / 100.0,
                  "probes", (int) c->half_open_probes,
                  "probe_timeout_ms", (json_int_t) c->probe_timeout_ms,
                  "failures", failures);

    return j;
}


/* One variant's breaker as the status shows it. */

static json_t *
ngx_aigov_breaker_json(ngx_aigov_breaker_conf_t *bcf,
    ngx_aigov_breaker_variant_t *vb)
{
    uint64_t               now;
    aigov_breaker_t        copy;
    ngx_slab_pool_t       *shpool;
    aigov_breaker_stats_t  st;

    /*
     * A consistent copy: other workers change it under the lock (all but
     * "allowed", counted atomically when a closed breaker lets a call
     * through without it).
     */

    shpool = bcf->mcf->shpool;

    ngx_shmtx_lock(&shpool->mutex);
    ngx_memcpy(&copy, vb->b, sizeof(aigov_breaker_t));
    ngx_shmtx_unlock(&shpool->mutex);

    now = ngx_current_msec;
    aigov_breaker_stats(&copy, &vb->conf, now, &st);

    return json_pack("{s:s, s:s, s:b, s:b, s:I, s:I, s:o, "
                     "s:{s:i, s:i, s:i, s:o, s:o}, s:i, "
                     "s:{s:i, s:i, s:i, s:i}, "
                     "s:{s:I, s:I, s:I, s:I, s:i, s:i, s:i}, s:o}",
                     "state", aigov_breaker_state_name(st.state),
                     "reason", aigov_breaker_reason_name(st.reason),
                     "dry_run", (int) vb->dry_run,
                     "fleet", (int) vb->fleet,
                     "retry_after_ms", (json_int_t) st.retry_after_ms,
                     "open_ms", (json_int_t) st.open_ms,
                     "changed_ago_ms",
                     st.generation == 0 ? json_null()
                     : json_integer(now > st.changed_ms
                                    ? (json_int_t) (now - st.changed_ms)
                                    : 0),
                     "window",
                         "calls", (int) st.calls,
                         "failures", (int) st.failures,
                         "slow", (int) st.slow,
                         "failure_rate",
                             ngx_aigov_breaker_rate(st.failure_rate),
                         "slow_call_rate",
                             ngx_aigov_breaker_rate(st.slow_rate),
                     "consecutive_failures", (int) st.consecutive,
                     "probes",
                         "in_flight", (int) st.probes_in_flight,
                         "done", (int) st.probes_done,
                         "failures", (int) st.probe_failures,
                         "slow", (int) st.probe_slow,
                     "counters",
                         "allowed", (json_int_t) st.allowed,
                         "rejected", (json_int_t) st.rejected,
                         "stale", (json_int_t) st.stale,
                         "probes_lost", (json_int_t) st.probes_lost,
                         "trips", (int) st.trips,
                         "forced", (int) st.forced,
                         "clock_jumps", (int) st.clock_jumps,
                     "config", ngx_aigov_breaker_conf_json(&vb->conf));
}


static ngx_int_t
ngx_aigov_breaker_status(ngx_aigov_model_t *model, void *conf, json_t *out)
{
    json_t                       *all, *j;
    ngx_uint_t                    i;
    ngx_aigov_variant_t          *v;
    ngx_aigov_breaker_conf_t     *bcf = conf;
    ngx_aigov_breaker_variant_t  *vb;

    if (bcf == NULL) {
        return NGX_OK;
    }

    all = json_object();
    if (all == NULL) {
        return NGX_ERROR;
    }

    json_object_set_new(out, "breakers", all);

    v = model->variants.elts;

    for (i = 0; i < model->variants.nelts; i++) {
        vb = &bcf->variants[i];

        if (!vb->enabled || vb->b == NULL) {
            continue;
        }

        j = ngx_aigov_breaker_json(bcf, vb);
        if (j == NULL) {
            return NGX_ERROR;
        }

        json_object_setn_new(all, (char *) v[i].name.data, v[i].name.len, j);
    }

    return NGX_OK;
}


/*
 * The admin API: POST models/{m}/breakers/{variant}
 * {"state": "open" | "closed" | "half_open", "open": "30s"}.  Forced here
 * at once; with fleet=on (and no dry_run) every state also goes to the
 * fleet as a message ("forced", "forced-closed", "forced-half_open") that
 * the admin core publishes with the audit entry, old -> new state, in one
 * Redis script (ngx_http_aigov_admin_plugin()).  Other nodes apply it in
 * ngx_aigov_breaker_message() and never publish it again.
 */

#define ngx_aigov_breaker_admin_error(a, st, ty, ti, ...)                    \
    do {                                                                     \
        (a)->status = st;                                                    \
        (a)->type = ty;                                                      \
        (a)->title = ti;                                                     \
        (a)->detail_len = ngx_snprintf((a)->detail, sizeof((a)->detail),    \
                                       __VA_ARGS__) - (a)->detail;           \
        return NULL;                                                         \
    } while (0)


static json_t *
ngx_aigov_breaker_admin(ngx_http_aigov_admin_action_t *a)
{
    int                           state;
    json_t                       *j;
    u_char                       *p;
    ngx_str_t                     s;
    ngx_int_t                     ms;
    const char                   *event;
    ngx_msec_t                    open_ms;
    ngx_slab_pool_t              *shpool;
    ngx_aigov_variant_t          *v;
    aigov_breaker_stats_t         old, st;
    ngx_aigov_breaker_conf_t     *bcf;
    ngx_aigov_breaker_variant_t  *vb;

    bcf = ngx_aigov_model_conf(a->model, ngx_aigov_breaker_plugin);
    v = ngx_aigov_find_variant(a->model, &a->arg);

    if (v == NULL) {
        ngx_aigov_breaker_admin_error(a, NGX_HTTP_NOT_FOUND,
            "unknown-variant", "Unknown variant",
            "model \"%V\" has no variant \"%*s\": use "
            "breakers/VARIANT", &a->model->name,
            ngx_min(a->arg.len, 128), a->arg.data);
    }

    vb = bcf ? &bcf->variants[v->index] : NULL;

    if (vb == NULL || !vb->enabled || vb->b == NULL) {
        ngx_aigov_breaker_admin_error(a, NGX_HTTP_CONFLICT,
            "no-breaker", "No circuit breaker",
            "variant \"%V\" of model \"%V\" has no circuit breaker",
            &v->name, &a->model->name);
    }

    j = a->body ? json_object_get(a->body, "state") : NULL;

    if (j == NULL || !json_is_string(j)) {
        goto invalid;
    }

    s.data = (u_char *) json_string_value(j);
    s.len = json_string_length(j);

    if (s.len == 4 && ngx_strncmp(s.data, "open", 4) == 0) {
        state = AIGOV_BREAKER_OPEN;

    } else if (s.len == 6 && ngx_strncmp(s.data, "closed", 6) == 0) {
        state = AIGOV_BREAKER_CLOSED;

    } else if (s.len == 9 && ngx_strncmp(s.data, "half_open", 9) == 0) {
        state = AIGOV_BREAKER_HALF_OPEN;

    } else {
        goto invalid;
    }

    open_ms = 0;
    j = json_object_get(a->body, "open");

    if (j) {
        if (state != AIGOV_BREAKER_OPEN || !json_is_string(j)) {
            goto invalid;
        }

        s.data = (u_char *) json_string_value(j);
        s.len = json_string_length(j);

        ms = ngx_aigov_breaker_ms(&s, 1);

        if (ms == NGX_ERROR) {
            ngx_aigov_breaker_admin_error(a, NGX_HTTP_BAD_REQUEST,
                "invalid-json", "Invalid JSON",
                "\"open\" must be a time from 1ms to 24h, e.g. \"30s\"");
        }

        if ((uint32_t) ms > aigov_breaker_open_max(&vb->conf)) {
            ngx_aigov_breaker_admin_error(a, NGX_HTTP_BAD_REQUEST,
                "invalid-json", "Invalid JSON",
                "\"open\" %ims is longer than the breaker's maximum open "
                "time, %uDms (open_max)", ms,
                aigov_breaker_open_max(&vb->conf));
        }

        open_ms = (ngx_msec_t) ms;
    }

    shpool = bcf->mcf->shpool;

    ngx_shmtx_lock(&shpool->mutex);
    aigov_breaker_stats(vb->b, &vb->conf, ngx_current_msec, &old);
    aigov_breaker_force(vb->b, &vb->conf, state, ngx_current_msec, open_ms);
    aigov_breaker_stats(vb->b, &vb->conf, ngx_current_msec, &st);
    ngx_shmtx_unlock(&shpool->mutex);

    p = ngx_pnalloc(a->pool, sizeof("breaker-half_open ") - 1 + v->name.len);
    if (p == NULL) {
        return NULL;
    }

    a->action.data = p;
    a->action.len = ngx_sprintf(p, "breaker-%s %V",
                                aigov_breaker_state_name(state), &v->name)
                    - p;

    p = ngx_pnalloc(a->pool, 2 * (sizeof("state=half_open open_ms=") - 1
                                  + NGX_INT_T_LEN));
    if (p == NULL) {
        return NULL;
    }

    a->old.data = p;
    a->old.len = ngx_sprintf(p, "state=%s open_ms=%uD",
                             aigov_breaker_state_name(old.state), old.open_ms)
                 - p;

    p += a->old.len;

    a->result.data = p;
    a->result.len = ngx_sprintf(p, "state=%s open_ms=%uD",
                                aigov_breaker_state_name(st.state),
                                st.open_ms)
                    - p;

    if (vb->fleet && !vb->dry_run && ngx_aigov_breaker_node) {
        p = ngx_pnalloc(a->pool, NGX_AIGOV_BREAKER_MSG_LEN);
        if (p == NULL) {
            return NULL;
        }

        event = (state == AIGOV_BREAKER_OPEN) ? "forced"
                : (state == AIGOV_BREAKER_CLOSED) ? "forced-closed"
                : "forced-half_open";

        a->message.data = p;
        a->message.len = ngx_aigov_breaker_message_text(p, a->model, v, event,
                             (state == AIGOV_BREAKER_OPEN) ? st.open_ms : 0);
    }

    return ngx_aigov_breaker_json(bcf, vb);

invalid:

    ngx_aigov_breaker_admin_error(a, NGX_HTTP_BAD_REQUEST,
        "invalid-json", "Invalid JSON",
        "expected {\"state\": \"open\" | \"closed\" | \"half_open\"} "
        "and, with \"open\", an optional \"open\": \"TIME\"");
}


static ngx_int_t
ngx_aigov_breaker_init_worker(ngx_cycle_t *cycle)
{
    u_char                         *p;
    uint64_t                        id;
    ngx_slab_pool_t                *shpool;
    ngx_http_aigov_main_conf_t     *mcf;
    ngx_aigov_breaker_main_conf_t  *bmcf;

    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    mcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_aigov_module);
    bmcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_aigov_breaker_module);

    ngx_aigov_breaker_node = NULL;
    ngx_str_null(&ngx_aigov_breaker_channel);

    if (mcf == NULL || bmcf == NULL || !bmcf->fleet || mcf->redis == NULL
        || bmcf->node == NULL)
    {
        return NGX_OK;
    }

    /* the node's name in trip messages: random, kept across reloads */

    shpool = mcf->shpool;

    ngx_shmtx_lock(&shpool->mutex);

    if (bmcf->node[0] == '\0') {
        id = ((uint64_t) ngx_random() << 32) ^ (uint64_t) ngx_random()
             ^ ((uint64_t) ngx_pid << 16) ^ (uint64_t) ngx_current_msec;
        ngx_sprintf(bmcf->node, "%016uxL", id);
    }

    ngx_shmtx_unlock(&shpool->mutex);

    ngx_aigov_breaker_node = bmcf->node;

    p = ngx_pnalloc(cycle->pool, mcf->redis->prefix.len + sizeof("control"));
    if (p == NULL) {
        return NGX_ERROR;
    }

    ngx_aigov_breaker_channel.data = p;
    ngx_aigov_breaker_channel.len = ngx_sprintf(p, "%Vcontrol",
                                                &mcf->redis->prefix) - p;

    return ngx_http_aigov_control_on_message("breaker",
                                             ngx_aigov_breaker_message);
}


/* $aigov_breaker */

static ngx_int_t
ngx_aigov_breaker_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_aigov_ctx_t          *ctx;
    ngx_aigov_breaker_ctx_t  *bctx;

    ctx = ngx_aigov_get_ctx(r);
    bctx = ctx ? ngx_aigov_plugin_ctx(ctx, ngx_aigov_breaker_plugin) : NULL;

    if (bctx == NULL || bctx->var == NGX_AIGOV_BREAKER_VAR_NONE) {
        v->not_found = 1;
        return NGX_OK;
    }

    v->data = ngx_aigov_breaker_var_names[bctx->var].data;
    v->len = ngx_aigov_breaker_var_names[bctx->var].len;
    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;

    return NGX_OK;
}


/* Configuration. */

static ngx_int_t
ngx_aigov_breaker_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var;

    static ngx_str_t  name = ngx_string("aigov_breaker");

    var = ngx_http_add_variable(cf, &name, NGX_HTTP_VAR_NOCACHEABLE);
    if (var == NULL) {
        return NGX_ERROR;
    }

    var->get_handler = ngx_aigov_breaker_variable;

    return NGX_OK;
}


static void *
ngx_aigov_breaker_create_main_conf(ngx_conf_t *cf)
{
    return ngx_pcalloc(cf->pool, sizeof(ngx_aigov_breaker_main_conf_t));
}


/* All of http{} is known: fleet=on needs aigov_redis. */

static ngx_int_t
ngx_aigov_breaker_postconfiguration(ngx_conf_t *cf)
{
    ngx_str_t                       key;
    ngx_uint_t                      i;
    ngx_aigov_model_t             **m;
    ngx_aigov_breaker_conf_t       *bcf;
    ngx_http_aigov_main_conf_t     *mcf;
    ngx_aigov_breaker_main_conf_t  *bmcf;

    mcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_aigov_module);
    bmcf = ngx_http_conf_get_module_main_conf(cf, ngx_aigov_breaker_module);

    if (ngx_http_aigov_admin_on_action("breakers", ngx_aigov_breaker_admin)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    m = mcf->models.elts;

    for (i = 0; i < mcf->models.nelts; i++) {
        bcf = ngx_aigov_model_conf(m[i], ngx_aigov_breaker_plugin);

        if (bcf == NULL || bcf->fleet_line == NULL) {
            continue;
        }

        if (mcf->redis == NULL) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "\"breaker\" with \"fleet=on\" in aigov_model "
                          "\"%V\" needs \"aigov_redis\" in the http block "
                          "in %s:%ui", &m[i]->name, bcf->fleet_line->file,
                          bcf->fleet_line->line);
            return NGX_ERROR;
        }

        bmcf->fleet = 1;
    }

    if (!bmcf->fleet) {
        return NGX_OK;
    }

    ngx_str_set(&key, "#breaker:node");

    return ngx_http_aigov_shm_block(cf, &key, NGX_AIGOV_BREAKER_NODE_LEN + 1,
                                    (void **) &bmcf->node);
}


static void *
ngx_aigov_breaker_create_model_conf(ngx_conf_t *cf, ngx_aigov_model_t *model)
{
    ngx_aigov_breaker_conf_t  *bcf;

    bcf = ngx_pcalloc(cf->pool, sizeof(ngx_aigov_breaker_conf_t));
    if (bcf == NULL) {
        return NULL;
    }

    if (ngx_array_init(&bcf->lines, cf->pool, 2,
                       sizeof(ngx_aigov_breaker_line_t))
        != NGX_OK)
    {
        return NULL;
    }

    bcf->model = model;
    bcf->mcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_aigov_module);

    return bcf;
}


/* The line's parameters over c. */

static void
ngx_aigov_breaker_apply(ngx_aigov_breaker_line_t *l, aigov_breaker_conf_t *c,
    ngx_flag_t *fleet, ngx_flag_t *dry_run)
{
    if (l->set & NGX_AIGOV_BREAKER_SET_WINDOW) {
        c->window_type = l->conf.window_type;
        c->window_size = l->conf.window_size;
        c->bucket_ms = l->conf.bucket_ms;
    }

    if (l->set & NGX_AIGOV_BREAKER_SET_RATE) {
        c->failure_rate_threshold = l->conf.failure_rate_threshold;
    }

    if (l->set & NGX_AIGOV_BREAKER_SET_SLOW) {
        c->slow_call_duration_ms = l->conf.slow_call_duration_ms;
        c->slow_call_rate_threshold = l->conf.slow_call_rate_threshold;
    }

    if (l->set & NGX_AIGOV_BREAKER_SET_MIN_CALLS) {
        c->minimum_calls = l->conf.minimum_calls;
    }

    if (l->set & NGX_AIGOV_BREAKER_SET_CONSECUTIVE) {
        c->consecutive_failures = l->conf.consecutive_failures;
    }

    if (l->set & NGX_AIGOV_BREAKER_SET_OPEN) {
        c->open_duration_ms = l->conf.open_duration_ms;
    }

    if (l->set & NGX_AIGOV_BREAKER_SET_OPEN_MAX) {
        c->open_duration_max_ms = l->conf.open_duration_max_ms;
    }

    if (l->set & NGX_AIGOV_BREAKER_SET_BACKOFF) {
        c->open_backoff = l->conf.open_backoff;
    }

    if (l->set & NGX_AIGOV_BREAKER_SET_PROBES) {
        c->half_open_probes = l->conf.half_open_probes;
    }

    if (l->set & NGX_AIGOV_BREAKER_SET_PROBE_TO) {
        c->probe_timeout_ms = l->conf.probe_timeout_ms;
    }

    if (l->set & NGX_AIGOV_BREAKER_SET_FAILURES) {
        c->classifier = l->conf.classifier;
    }

    if (l->set & NGX_AIGOV_BREAKER_SET_FLEET) {
        *fleet = l->fleet;
    }

    if (l->set & NGX_AIGOV_BREAKER_SET_DRY_RUN) {
        *dry_run = l->dry_run;
    }
}


/*
 * The model block is parsed: each variant's breaker is the model-wide line
 * with the variant's own line over it, checked as a whole, and gets its
 * block in the zone.
 */

static char *
ngx_aigov_breaker_init_model_conf(ngx_conf_t *cf, ngx_aigov_model_t *model,
    void *conf)
{
    ngx_aigov_breaker_conf_t *bcf = conf;

    char                          err[256];
    u_char                        buf[2 * 128 + sizeof("/#breaker")];
    ngx_str_t                     key;
    ngx_uint_t                    i, j;
    ngx_flag_t                    flag;
    ngx_aigov_variant_t          *v;
    aigov_breaker_conf_t          c;
    ngx_aigov_breaker_line_t     *line, *all, *own;
    ngx_aigov_breaker_variant_t  *vb;

    if (bcf == NULL) {
        return NGX_CONF_OK;
    }

    line = bcf->lines.elts;
    all = NULL;

    for (i = 0; i < bcf->lines.nelts; i++) {
        if (line[i].variant == NULL) {
            all = &line[i];
        }

        if ((line[i].set & NGX_AIGOV_BREAKER_SET_FLEET) && line[i].fleet
            && bcf->fleet_line == NULL)
        {
            bcf->fleet_line = &line[i];
        }
    }

    if (all) {
        /* the model-wide line alone first: its errors are its own */

        aigov_breaker_conf_init(&c);
        ngx_aigov_breaker_apply(all, &c, &flag, &flag);

        if (aigov_breaker_conf_check(&c, err, sizeof(err))
            != AIGOV_BREAKER_OK)
        {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "invalid \"breaker\" in aigov_model \"%V\": %s "
                          "in %s:%ui", &model->name, err, all->file,
                          all->line);
            return NGX_CONF_ERROR;
        }
    }

    v = model->variants.elts;

    for (j = 0; j < model->variants.nelts; j++) {
        vb = &bcf->variants[j];

        own = NULL;

        for (i = 0; i < bcf->lines.nelts; i++) {
            if (line[i].variant == &v[j]) {
                own = &line[i];
            }
        }

        if ((own && own->off) || (own == NULL && all == NULL)) {
            continue;
        }

        aigov_breaker_conf_init(&vb->conf);

        if (all) {
            ngx_aigov_breaker_apply(all, &vb->conf, &vb->fleet, &vb->dry_run);
        }

        if (own) {
            ngx_aigov_breaker_apply(own, &vb->conf, &vb->fleet, &vb->dry_run);
        }

        if (aigov_breaker_conf_check(&vb->conf, err, sizeof(err))
            != AIGOV_BREAKER_OK)
        {
            /* only a variant's own line can make it invalid now */

            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "invalid \"breaker\" of variant \"%V\" in "
                          "aigov_model \"%V\": %s in %s:%ui",
                          &v[j].name, &model->name, err, own->file,
                          own->line);
            return NGX_CONF_ERROR;
        }

        vb->enabled = 1;

        key.data = buf;
        key.len = ngx_snprintf(buf, sizeof(buf), "%V/%V#breaker",
                               &model->name, &v[j].name)
                  - buf;

        if (ngx_http_aigov_shm_block(cf, &key, sizeof(aigov_breaker_t),
                                     (void **) &vb->b)
            != NGX_OK)
        {
            return NGX_CONF_ERROR;
        }
    }

    return NGX_CONF_OK;
}


/* "30s", "1500ms", "5m": milliseconds in min..one day, or NGX_ERROR */

static ngx_int_t
ngx_aigov_breaker_ms(ngx_str_t *s, ngx_msec_t min)
{
    ngx_msec_t  ms;

    if (s->len == 0) {
        return NGX_ERROR;
    }

    ms = ngx_parse_time(s, 0);

    if (ms == (ngx_msec_t) NGX_ERROR || ms < min
        || ms > AIGOV_BREAKER_MAX_DURATION_MS)
    {
        return NGX_ERROR;
    }

    return (ngx_int_t) ms;
}


/* "50%" or "50": a whole percentage in min..100, or NGX_ERROR */

static ngx_int_t
ngx_aigov_breaker_percent(u_char *p, size_t len, ngx_int_t min)
{
    ngx_int_t  n;

    if (len && p[len - 1] == '%') {
        len--;
    }

    n = ngx_atoi(p, len);

    if (n == NGX_ERROR || n < min || n > 100) {
        return NGX_ERROR;
    }

    return n;
}


/* "2", "1.5", "1.25": x100, 100..AIGOV_BREAKER_MAX_BACKOFF, or NGX_ERROR */

static ngx_int_t
ngx_aigov_breaker_factor(ngx_str_t *s)
{
    u_char     *dot;
    ngx_int_t   whole, frac;

    dot = ngx_strlchr(s->data, s->data + s->len, '.');

    whole = ngx_atoi(s->data, dot ? (size_t) (dot - s->data) : s->len);
    if (whole == NGX_ERROR || whole > AIGOV_BREAKER_MAX_BACKOFF / 100) {
        return NGX_ERROR;
    }

    frac = 0;

    if (dot) {
        if (dot + 1 == s->data + s->len || s->data + s->len - dot - 1 > 2) {
            return NGX_ERROR;
        }

        frac = ngx_atoi(dot + 1, s->data + s->len - dot - 1);
        if (frac == NGX_ERROR) {
            return NGX_ERROR;
        }

        if (s->data + s->len - dot - 1 == 1) {
            frac *= 10;
        }
    }

    whole = whole * 100 + frac;

    if (whole < 100 || whole > AIGOV_BREAKER_MAX_BACKOFF) {
        return NGX_ERROR;
    }

    return whole;
}


/* "count:N" or "time:DURATION[/BUCKET]" */

static char *
ngx_aigov_breaker_window(ngx_conf_t *cf, ngx_str_t *param, ngx_str_t *s,
    aigov_breaker_conf_t *c)
{
    u_char     *slash;
    ngx_int_t   n, total, bucket;
    ngx_str_t   d, b;
    ngx_uint_t  i;

    static ngx_int_t  hint[] = { 1000, 500, 250, 100, 50, 20, 10, 0 };

    if (s->len > 6 && ngx_strncmp(s->data, "count:", 6) == 0) {
        n = ngx_atoi(s->data + 6, s->len - 6);

        if (n == NGX_ERROR || n < 1 || n > AIGOV_BREAKER_MAX_CALLS) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid window \"%V\" in \"breaker\": a "
                               "count window holds 1 to %d calls",
                               param, AIGOV_BREAKER_MAX_CALLS);
            return NGX_CONF_ERROR;
        }

        c->window_type = AIGOV_BREAKER_WINDOW_COUNT;
        c->window_size = (uint32_t) n;

        return NGX_CONF_OK;
    }

    if (s->len <= 5 || ngx_strncmp(s->data, "time:", 5) != 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid window \"%V\" in \"breaker\": use "
                           "\"window=count:N\" or "
                           "\"window=time:DURATION[/BUCKET]\"", param);
        return NGX_CONF_ERROR;
    }

    d.data = s->data + 5;
    d.len = s->len - 5;

    slash = ngx_strlchr(d.data, d.data + d.len, '/');

    if (slash) {
        b.data = slash + 1;
        b.len = d.data + d.len - b.data;
        d.len = slash - d.data;
    }

    total = ngx_aigov_breaker_ms(&d, 1);

    if (total == NGX_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid window \"%V\" in \"breaker\": the "
                           "duration must be a time up to 24h", param);
        return NGX_CONF_ERROR;
    }

    if (slash) {
        bucket = ngx_aigov_breaker_ms(&b, AIGOV_BREAKER_MIN_BUCKET_MS);

        if (bucket == NGX_ERROR || bucket > AIGOV_BREAKER_MAX_BUCKET_MS) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid window \"%V\" in \"breaker\": the "
                               "bucket width must be a time from %dms to "
                               "1h", param, AIGOV_BREAKER_MIN_BUCKET_MS);
            return NGX_CONF_ERROR;
        }

    } else {
        /* one-second buckets (as Resilience4j), 60 at most */
        bucket = (total <= 1000 * AIGOV_BREAKER_MAX_BUCKETS)
                 ? 1000 : total / AIGOV_BREAKER_MAX_BUCKETS;
    }

    if (total % bucket != 0 || total < bucket) {
        for (i = 0; hint[i]; i++) {
            if (total % hint[i] == 0
                && total / hint[i] <= AIGOV_BREAKER_MAX_BUCKETS)
            {
                break;
            }
        }

        if (hint[i] == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid window \"%V\" in \"breaker\": %ims "
                               "is not a whole number of %ims buckets",
                               param, total, bucket);

        } else {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid window \"%V\" in \"breaker\": %ims "
                               "is not a whole number of %ims buckets; give "
                               "the bucket width, e.g. "
                               "\"window=time:%V/%ims\"",
                               param, total, bucket, &d, hint[i]);
        }

        return NGX_CONF_ERROR;
    }

    if (total / bucket > AIGOV_BREAKER_MAX_BUCKETS) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid window \"%V\" in \"breaker\": %i "
                           "buckets, at most %d; give wider buckets",
                           param, total / bucket, AIGOV_BREAKER_MAX_BUCKETS);
        return NGX_CONF_ERROR;
    }

    c->window_type = AIGOV_BREAKER_WINDOW_TIME;
    c->window_size = (uint32_t) (total / bucket);
    c->bucket_ms = (uint32_t) bucket;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_aigov_breaker_flag(ngx_str_t *s)
{
    if (s->len == 2 && ngx_strncmp(s->data, "on", 2) == 0) {
        return 1;
    }

    if (s->len == 3 && ngx_strncmp(s->data, "off", 3) == 0) {
        return 0;
    }

    return NGX_ERROR;
}


/*
 * breaker [variant=NAME] [window=count:N | window=time:DURATION[/BUCKET]]
 *         [failure_rate=PERCENT] [slow=DURATION:PERCENT] [minimum_calls=N]
 *         [consecutive_failures=N] [open=TIME] [open_max=TIME]
 *         [backoff=FACTOR] [probes=N] [probe_timeout=TIME]
 *         [failures=CONDITION,...] [fleet=on|off] [dry_run[=on|off]];
 * breaker [variant=NAME] on;                 (every default)
 * breaker variant=NAME off;                  (no breaker for it)
 */

static char *
ngx_aigov_breaker_directive(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_aigov_breaker_conf_t *bcf = conf;

    char                       err[256];
    u_char                    *eq;
    ngx_int_t                  n, bit;
    ngx_str_t                 *value, name, val, rate;
    ngx_uint_t                 i, k, words;
    ngx_aigov_breaker_line_t  *l, *line;

    value = cf->args->elts;

    l = ngx_array_push(&bcf->lines);
    if (l == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(l, sizeof(ngx_aigov_breaker_line_t));

    aigov_breaker_conf_init(&l->conf);
    l->file = cf->conf_file->file.name.data;
    l->line = cf->conf_file->line;

    words = 0;

    for (i = 1; i < cf->args->nelts; i++) {

        eq = ngx_strlchr(value[i].data, value[i].data + value[i].len, '=');

        name.data = value[i].data;
        name.len = eq ? (size_t) (eq - value[i].data) : value[i].len;

        if (eq) {
            val.data = eq + 1;
            val.len = value[i].data + value[i].len - val.data;

        } else {
            ngx_str_null(&val);
        }

        bit = 0;

#define ngx_aigov_breaker_is(s)                                              \
        (name.len == sizeof(s) - 1                                           \
         && ngx_strncmp(name.data, s, sizeof(s) - 1) == 0)

        if (eq == NULL) {

            if (ngx_aigov_breaker_is("off")) {
                l->off = 1;
                words++;
                continue;
            }

            if (ngx_aigov_breaker_is("on")) {
                words++;
                continue;
            }

            if (ngx_aigov_breaker_is("dry_run")) {
                bit = NGX_AIGOV_BREAKER_SET_DRY_RUN;

                if (l->set & bit) {
                    goto duplicate;
                }

                l->set |= bit;
                l->dry_run = 1;
                continue;
            }

            goto invalid;
        }

        if (ngx_aigov_breaker_is("variant")) {
            if (l->variant) {
                goto duplicate;
            }

            l->variant = ngx_aigov_conf_variant(cf, &val);
            if (l->variant == NULL) {
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_aigov_breaker_is("window")) {
            bit = NGX_AIGOV_BREAKER_SET_WINDOW;

            if (l->set & bit) {
                goto duplicate;
            }

            if (ngx_aigov_breaker_window(cf, &value[i], &val, &l->conf)
                != NGX_CONF_OK)
            {
                return NGX_CONF_ERROR;
            }

        } else if (ngx_aigov_breaker_is("failure_rate")) {
            bit = NGX_AIGOV_BREAKER_SET_RATE;

            if (l->set & bit) {
                goto duplicate;
            }

            n = ngx_aigov_breaker_percent(val.data, val.len, 1);

            if (n == NGX_ERROR) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid failure rate \"%V\" in "
                                   "\"breaker\": use a whole percentage "
                                   "from 1%% to 100%%", &value[i]);
                return NGX_CONF_ERROR;
            }

            l->conf.failure_rate_threshold = (uint32_t) n;

        } else if (ngx_aigov_breaker_is("slow")) {
            bit = NGX_AIGOV_BREAKER_SET_SLOW;

            if (l->set & bit) {
                goto duplicate;
            }

            eq = ngx_strlchr(val.data, val.data + val.len, ':');

            if (eq == NULL) {
                goto bad_slow;
            }

            rate.data = eq + 1;
            rate.len = val.data + val.len - rate.data;
            val.len = eq - val.data;

            n = ngx_aigov_breaker_ms(&val, 1);
            if (n == NGX_ERROR) {
                goto bad_slow;
            }

            l->conf.slow_call_duration_ms = (uint32_t) n;

            n = ngx_aigov_breaker_percent(rate.data, rate.len, 1);
            if (n == NGX_ERROR) {
                goto bad_slow;
            }

            l->conf.slow_call_rate_threshold = (uint32_t) n;

        } else if (ngx_aigov_breaker_is("minimum_calls")
                   || ngx_aigov_breaker_is("consecutive_failures")
                   || ngx_aigov_breaker_is("probes"))
        {
            n = ngx_atoi(val.data, val.len);

            if (name.data[0] == 'm') {
                bit = NGX_AIGOV_BREAKER_SET_MIN_CALLS;

                if (n == NGX_ERROR || n < 1 || n > 1000000) {
                    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                       "invalid minimum_calls \"%V\" in "
                                       "\"breaker\": use 1 to 1000000",
                                       &value[i]);
                    return NGX_CONF_ERROR;
                }

                l->conf.minimum_calls = (uint32_t) n;

            } else if (name.data[0] == 'c') {
                bit = NGX_AIGOV_BREAKER_SET_CONSECUTIVE;

                if (n == NGX_ERROR || n > 1000000) {
                    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                       "invalid consecutive_failures \"%V\" "
                                       "in \"breaker\": use 0 (off) to "
                                       "1000000", &value[i]);
                    return NGX_CONF_ERROR;
                }

                l->conf.consecutive_failures = (uint32_t) n;

            } else {
                bit = NGX_AIGOV_BREAKER_SET_PROBES;

                if (n == NGX_ERROR || n < 1 || n > AIGOV_BREAKER_MAX_PROBES) {
                    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                       "invalid probes \"%V\" in "
                                       "\"breaker\": use 1 to %d",
                                       &value[i], AIGOV_BREAKER_MAX_PROBES);
                    return NGX_CONF_ERROR;
                }

                l->conf.half_open_probes = (uint32_t) n;
            }

            if (l->set & bit) {
                goto duplicate;
            }

        } else if (ngx_aigov_breaker_is("open")
                   || ngx_aigov_breaker_is("open_max")
                   || ngx_aigov_breaker_is("probe_timeout"))
        {
            n = ngx_aigov_breaker_ms(&val, 1);

            if (n == NGX_ERROR) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid time \"%V\" in \"breaker\": use "
                                   "1ms to 24h, e.g. 30s", &value[i]);
                return NGX_CONF_ERROR;
            }

            if (name.len == 4) {
                bit = NGX_AIGOV_BREAKER_SET_OPEN;
                l->conf.open_duration_ms = (uint32_t) n;

            } else if (name.len == 8) {
                bit = NGX_AIGOV_BREAKER_SET_OPEN_MAX;
                l->conf.open_duration_max_ms = (uint32_t) n;

            } else {
                bit = NGX_AIGOV_BREAKER_SET_PROBE_TO;
                l->conf.probe_timeout_ms = (uint32_t) n;
            }

            if (l->set & bit) {
                goto duplicate;
            }

        } else if (ngx_aigov_breaker_is("backoff")) {
            bit = NGX_AIGOV_BREAKER_SET_BACKOFF;

            if (l->set & bit) {
                goto duplicate;
            }

            n = ngx_aigov_breaker_factor(&val);

            if (n == NGX_ERROR) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid backoff \"%V\" in \"breaker\": "
                                   "use a factor from 1 to %d with at most "
                                   "two decimals, e.g. 2 or 1.5",
                                   &value[i], AIGOV_BREAKER_MAX_BACKOFF / 100);
                return NGX_CONF_ERROR;
            }

            l->conf.open_backoff = (uint32_t) n;

        } else if (ngx_aigov_breaker_is("failures")) {
            bit = NGX_AIGOV_BREAKER_SET_FAILURES;

            if (l->set & bit) {
                goto duplicate;
            }

            /* "failures=5xx,429,!501" or "\"failures=5xx 429 !501\"" */

            for (k = 0; k < val.len; k++) {
                if (val.data[k] == ',') {
                    val.data[k] = ' ';
                }
            }

            if (aigov_breaker_parse_classifier(&l->conf.classifier,
                                               (char *) val.data, val.len,
                                               err, sizeof(err))
                != AIGOV_BREAKER_OK)
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid failures in \"breaker\": %s",
                                   err);
                return NGX_CONF_ERROR;
            }

        } else if (ngx_aigov_breaker_is("fleet")
                   || ngx_aigov_breaker_is("dry_run"))
        {
            n = ngx_aigov_breaker_flag(&val);

            if (n == NGX_ERROR) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid value \"%V\" in \"breaker\": "
                                   "use \"on\" or \"off\"", &value[i]);
                return NGX_CONF_ERROR;
            }

            if (name.data[0] == 'f') {
                bit = NGX_AIGOV_BREAKER_SET_FLEET;
                l->fleet = n;

            } else {
                bit = NGX_AIGOV_BREAKER_SET_DRY_RUN;
                l->dry_run = n;
            }

            if (l->set & bit) {
                goto duplicate;
            }

        } else {
            goto invalid;
        }

#undef ngx_aigov_breaker_is

        l->set |= bit;
    }

    if (l->off && (words > 1 || l->set || l->variant == NULL)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"off\" in \"breaker\" goes with \"variant=NAME\" "
                           "alone: \"breaker variant=NAME off;\"");
        return NGX_CONF_ERROR;
    }

    if (words && !l->off && (words > 1 || l->set)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"on\" in \"breaker\" takes no other parameter "
                           "but \"variant=NAME\"");
        return NGX_CONF_ERROR;
    }

    line = bcf->lines.elts;

    for (i = 0; i + 1 < bcf->lines.nelts; i++) {
        if (line[i].variant != l->variant) {
            continue;
        }

        if (l->variant) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "duplicate \"breaker variant=%V\" in "
                               "aigov_model \"%V\"",
                               &l->variant->name, &bcf->model->name);

        } else {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "duplicate \"breaker\" in aigov_model \"%V\": "
                               "one line for every variant, "
                               "\"breaker variant=NAME ...\" for one",
                               &bcf->model->name);
        }

        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;

bad_slow:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid slow call condition \"%V\" in \"breaker\": "
                       "use \"slow=DURATION:PERCENT\", e.g. \"slow=2s:80%%\"",
                       &value[i]);
    return NGX_CONF_ERROR;

duplicate:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "duplicate parameter \"%V\" in \"breaker\"",
                       &value[i]);
    return NGX_CONF_ERROR;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid parameter \"%V\" in \"breaker\"", &value[i]);
    return NGX_CONF_ERROR;
}
