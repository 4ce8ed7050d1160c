/*
 * ngx_aigov cache plugin: a response cache for inference calls.
 *
 *   http {
 *       aigov_cache_zone llm:64m [max_entry=1m];
 *
 *       location /v1/ {
 *           aigov_route openai;
 *           aigov_cache zone=llm [ttl=60s] [stale_if_error=10m]
 *                       [key_headers=Authorization,X-Tenant]
 *                       [content_types=application/json]
 *                       [redis=on] [redis_timeout=50ms];
 *           aigov_cache_bypass $http_x_no_cache;
 *           proxy_pass http://$aigov_upstream;
 *       }
 *   }
 *
 * The key is the SHA-256 of: the method, URI and query, the model, the
 * served version (the chosen variant's), the model's runtime control
 * version (every admin or Redis change of the model moves it on, so a
 * rollout, rollback or weights change leaves the old entries behind), the
 * key headers, and the canonical form of the JSON request body
 * (include/aigov_canon.h).  The lookup therefore runs after the variant is
 * chosen: priority 450, between canary (500) and breaker (400).
 *
 * Entries live in a slab zone (rbtree by digest + LRU queue, kept across
 * reloads): a fresh one answers in decide() without calling the model
 * (HIT); otherwise the upstream's response is captured in the body filter
 * and stored at its last buffer when it is a complete 200 of an allowed
 * type (MISS).  When the model fails (5xx, or no response header at all)
 * an expired entry still within stale_if_error replaces the response in
 * the header filter (STALE).  With redis=on a local miss asks Redis
 * (<prefix>cache:<hex digest>) with a tight timeout, failing open, and
 * stored entries are written there for the fleet.
 */

#include "ngx_http_aigov_module.h"
#include "ngx_http_aigov_redis.h"
#include "aigov_canon.h"

#include <openssl/evp.h>


#define NGX_AIGOV_CACHE_DIGEST         32

#define NGX_AIGOV_CACHE_NONE           0
#define NGX_AIGOV_CACHE_HIT            1
#define NGX_AIGOV_CACHE_MISS           2
#define NGX_AIGOV_CACHE_STALE          3
#define NGX_AIGOV_CACHE_BYPASS         4

#define NGX_AIGOV_CACHE_REDIS_MAGIC    "AGC1 "
#define NGX_AIGOV_CACHE_REDIS_HEAD     128

/* LRU tail entries checked for expiry on each store */
#define NGX_AIGOV_CACHE_EXPIRE_SCAN    3


typedef struct {
    ngx_atomic_t               hits;
    ngx_atomic_t               misses;
    ngx_atomic_t               stale;
    ngx_atomic_t               bypass;
    ngx_atomic_t               stores;
    ngx_atomic_t               evictions;
    ngx_atomic_t               expired;
    ngx_atomic_t               too_large;
    ngx_atomic_t               not_cacheable;
    ngx_atomic_t               redis_hits;
    ngx_atomic_t               redis_errors;
    ngx_atomic_t               entries;      /* changed under the mutex */
    ngx_atomic_t               bytes;
} ngx_aigov_cache_counters_t;


/* A model's counters in a zone: never freed (one per model name). */
typedef struct {
    ngx_str_node_t             sn;
    ngx_aigov_cache_counters_t c;
    u_char                     name[1];
} ngx_aigov_cache_stats_t;


typedef struct {
    ngx_rbtree_node_t          node;         /* key: digest's first bytes */
    ngx_queue_t                queue;        /* LRU: most recent first */
    ngx_aigov_cache_stats_t   *stats;        /* its model's counters */
    uint64_t                   created;      /* wall clock, ms */
    uint64_t                   expires;
    uint64_t                   stale_until;
    size_t                     size;         /* of this allocation */
    uint32_t                   body_len;
    uint16_t                   type_len;
    u_char                     digest[NGX_AIGOV_CACHE_DIGEST];
    u_char                     data[1];      /* Content-Type, then body */
} ngx_aigov_cache_entry_t;


typedef struct {
    ngx_rbtree_t               rbtree;
    ngx_rbtree_node_t          sentinel;
    ngx_queue_t                lru;
    ngx_rbtree_t               stats;
    ngx_rbtree_node_t          stats_sentinel;
    ngx_aigov_cache_counters_t total;
} ngx_aigov_cache_sh_t;


typedef struct {
    ngx_str_t                  name;
    size_t                     size;         /* 0: referenced, undeclared */
    size_t                     max_entry;
    ngx_shm_zone_t            *shm_zone;
    ngx_aigov_cache_sh_t      *sh;
    ngx_slab_pool_t           *shpool;
    ngx_http_aigov_main_conf_t *amcf;
    ngx_aigov_cache_stats_t  **models;       /* by model->index */
    ngx_uint_t                 nmodels;
    u_char                    *file;         /* first reference */
    ngx_uint_t                 line;
} ngx_aigov_cache_zone_t;


typedef struct {
    ngx_array_t                zones;        /* ngx_aigov_cache_zone_t * */
} ngx_aigov_cache_main_conf_t;


typedef struct {
    ngx_aigov_cache_zone_t    *zone;         /* NULL: off */
    ngx_msec_t                 ttl;
    ngx_msec_t                 stale;
    ngx_array_t               *key_headers;  /* ngx_aigov_header_t */
    ngx_array_t               *types;        /* ngx_str_t, lower case */
    ngx_flag_t                 redis;
    ngx_msec_t                 redis_timeout;
    ngx_array_t               *bypass;       /* predicates */
    u_char                    *file;
    ngx_uint_t                 line;
    unsigned                   in_location:1;
} ngx_aigov_cache_loc_conf_t;


typedef struct {
    ngx_http_request_t        *r;
    ngx_aigov_cache_loc_conf_t *conf;
    ngx_aigov_cache_zone_t    *zone;
    ngx_aigov_cache_stats_t   *stats;
    ngx_aigov_variant_t       *variant;      /* the one in the key */
    ngx_uint_t                 status;       /* NGX_AIGOV_CACHE_* */
    u_char                     digest[NGX_AIGOV_CACHE_DIGEST];

    /* an answer from the cache */
    ngx_buf_t                 *body;
    ngx_str_t                  type;
    uint64_t                   created;

    /* capture of the upstream's response */
    u_char                    *buf;
    size_t                     len;
    size_t                     size;
    off_t                      expect;       /* Content-Length, or -1 */

    /* Redis */
    ngx_aigov_redis_cmd_t     *cmd;
    ngx_event_t                timer;

    unsigned                   store:1;      /* store the response */
    unsigned                   capturing:1;
    unsigned                   waiting:1;    /* for Redis */
    unsigned                   answered:1;   /* Redis answered or not */
} ngx_aigov_cache_ctx_t;


static ngx_int_t ngx_aigov_cache_decide(ngx_http_request_t *r,
    ngx_aigov_ctx_t *actx);
static ngx_int_t ngx_aigov_cache_key(ngx_http_request_t *r,
    ngx_aigov_ctx_t *actx, ngx_aigov_cache_ctx_t *ctx);
static ngx_int_t ngx_aigov_cache_lookup(ngx_aigov_cache_ctx_t *ctx,
    ngx_pool_t *pool, ngx_uint_t stale_ok);
static ngx_int_t ngx_aigov_cache_hit(ngx_http_request_t *r,
    ngx_aigov_ctx_t *actx, ngx_aigov_cache_ctx_t *ctx);
static ngx_int_t ngx_aigov_cache_redis_get(ngx_http_request_t *r,
    ngx_aigov_cache_ctx_t *ctx);
static void ngx_aigov_cache_redis_reply(void *data, redisReply *reply);
static void ngx_aigov_cache_redis_timeout(ngx_event_t *ev);
static void ngx_aigov_cache_resume(ngx_aigov_cache_ctx_t *ctx);
static void ngx_aigov_cache_cleanup(void *data);
static ngx_int_t ngx_aigov_cache_header_filter(ngx_http_request_t *r,
    ngx_aigov_ctx_t *actx);
static ngx_int_t ngx_aigov_cache_stale(ngx_http_request_t *r,
    ngx_aigov_ctx_t *actx, ngx_aigov_cache_ctx_t *ctx);
static ngx_int_t ngx_aigov_cache_cacheable(ngx_http_request_t *r,
    ngx_aigov_ctx_t *actx, ngx_aigov_cache_ctx_t *ctx);
static ngx_int_t ngx_aigov_cache_body_filter(ngx_http_request_t *r,
    ngx_aigov_ctx_t *actx, ngx_chain_t *in);
static void ngx_aigov_cache_finish(ngx_http_request_t *r,
    ngx_aigov_cache_ctx_t *ctx);
static void ngx_aigov_cache_log(ngx_http_request_t *r, ngx_aigov_ctx_t *actx);
static ngx_int_t ngx_aigov_cache_store(ngx_aigov_cache_zone_t *zone,
    ngx_aigov_cache_stats_t *stats, u_char *digest, ngx_str_t *type,
    u_char *body, size_t len, uint64_t created, uint64_t expires,
    uint64_t stale_until, ngx_log_t *log);
static void ngx_aigov_cache_redis_set(ngx_http_request_t *r,
    ngx_aigov_cache_ctx_t *ctx, uint64_t created, uint64_t expires,
    ngx_msec_t stale);
static ngx_int_t ngx_aigov_cache_status(ngx_aigov_model_t *model,
    void *conf, json_t *out);
static ngx_int_t ngx_aigov_cache_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);

static ngx_int_t ngx_aigov_cache_enabled(void *loc_conf);
static ngx_int_t ngx_aigov_cache_needs_body(void *loc_conf);
static ngx_int_t ngx_aigov_cache_init_worker(ngx_cycle_t *cycle);
static char *ngx_aigov_cache_zone_directive(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_aigov_cache_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_aigov_cache_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static ngx_int_t ngx_aigov_cache_preconfiguration(ngx_conf_t *cf);
static ngx_int_t ngx_aigov_cache_postconfiguration(ngx_conf_t *cf);
static void *ngx_aigov_cache_create_main_conf(ngx_conf_t *cf);
static void *ngx_aigov_cache_create_loc_conf(ngx_conf_t *cf);
static char *ngx_aigov_cache_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);


static ngx_command_t  ngx_aigov_cache_commands[] = {

    { ngx_string("aigov_cache_zone"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE12,
      ngx_aigov_cache_zone_directive,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("aigov_cache"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_aigov_cache_directive,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("aigov_cache_bypass"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_set_predicate_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_aigov_cache_loc_conf_t, bypass),
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_aigov_cache_module_ctx = {
    ngx_aigov_cache_preconfiguration,      /* preconfiguration */
    ngx_aigov_cache_postconfiguration,     /* postconfiguration */
    ngx_aigov_cache_create_main_conf,      /* create main configuration */
    NULL,                                  /* init main configuration */
    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */
    ngx_aigov_cache_create_loc_conf,       /* create location configuration */
    ngx_aigov_cache_merge_loc_conf         /* merge location configuration */
};


ngx_module_t  ngx_aigov_cache_module = {
    NGX_MODULE_V1,
    &ngx_aigov_cache_module_ctx,           /* module context */
    ngx_aigov_cache_commands,              /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL, NULL, NULL, NULL, NULL, NULL, NULL,
    NGX_MODULE_V1_PADDING
};


ngx_aigov_plugin_t  ngx_aigov_cache_plugin = {
    NGX_AIGOV_ABI,
    "cache",
    "1.0.0",
    NGX_AIGOV_PRIO_CACHE,
    &ngx_aigov_cache_module,               /* nginx module */
    NULL,                                  /* model directives */
    NULL,                                  /* create model conf */
    NULL,                                  /* init model conf */
    ngx_aigov_cache_enabled,
    ngx_aigov_cache_init_worker,
    ngx_aigov_cache_decide,
    ngx_aigov_cache_header_filter,
    ngx_aigov_cache_body_filter,
    ngx_aigov_cache_log,
    ngx_aigov_cache_status,
    0,
    ngx_aigov_cache_needs_body
};


static ngx_str_t  ngx_aigov_cache_status_names[] = {
    ngx_null_string,
    ngx_string("HIT"),
    ngx_string("MISS"),
    ngx_string("STALE"),
    ngx_string("BYPASS")
};

static ngx_str_t  ngx_aigov_cache_header = ngx_string("X-Aigov-Cache");
static ngx_str_t  ngx_aigov_cache_age = ngx_string("Age");

/*
 * The worker's digest context, reset for every key, and SHA-256 fetched
 * once: OpenSSL 3 looks EVP_sha256() up in its providers on every
 * EVP_DigestInit_ex() otherwise (about 2,700 instructions a request).
 */
static EVP_MD_CTX  *ngx_aigov_cache_md;
static EVP_MD      *ngx_aigov_cache_sha256;


/* The key's bytes are staged, so that a small key is one digest update. */
typedef struct {
    EVP_MD_CTX                *md;
    size_t                     len;
    u_char                     buf[2048];
} ngx_aigov_cache_hasher_t;


/* Time. */

static uint64_t
ngx_aigov_cache_now(void)
{
    ngx_time_t  *tp;

    tp = ngx_timeofday();

    return (uint64_t) tp->sec * 1000 + tp->msec;
}


/* The request path: the decision. */

static ngx_int_t
ngx_aigov_cache_decide(ngx_http_request_t *r, ngx_aigov_ctx_t *actx)
{
    ngx_int_t                    rc;
    ngx_pool_cleanup_t          *cln;
    ngx_aigov_cache_ctx_t       *ctx;
    ngx_aigov_cache_loc_conf_t  *conf;

    ctx = ngx_aigov_plugin_ctx(actx, ngx_aigov_cache_plugin);

    if (ctx) {
        if (ctx->waiting) {
            /* run again by another event while Redis is asked */
            return NGX_AGAIN;
        }

        if (!ctx->answered) {
            return NGX_DECLINED;
        }

        ctx->answered = 0;

        if (ctx->body) {
            (void) ngx_atomic_fetch_add(&ctx->stats->c.redis_hits, 1);
            return ngx_aigov_cache_hit(r, actx, ctx);
        }

        goto miss;
    }

    conf = ngx_http_get_module_loc_conf(r, ngx_aigov_cache_module);

    if (conf->zone == NULL || conf->zone->sh == NULL
        || actx->model->index >= conf->zone->nmodels)
    {
        return NGX_DECLINED;
    }

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_aigov_cache_ctx_t));
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln->handler = ngx_aigov_cache_cleanup;
    cln->data = ctx;

    ctx->r = r;
    ctx->conf = conf;
    ctx->zone = conf->zone;
    ctx->stats = conf->zone->models[actx->model->index];
    ctx->expect = -1;

    ngx_aigov_plugin_ctx(actx, ngx_aigov_cache_plugin) = ctx;

    /*
     * The served version is part of the key: the variant the routing
     * plugins above chose, else the stable one, as the core would choose.
     */

    if (actx->variant == NULL) {
        ngx_aigov_choose(r, actx, actx->model->stable,
                         NGX_AIGOV_DECISION_STABLE);
    }

    ctx->variant = actx->variant;

    rc = ngx_aigov_cache_key(r, actx, ctx);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_DECLINED) {
        ctx->status = NGX_AIGOV_CACHE_BYPASS;
        (void) ngx_atomic_fetch_add(&ctx->stats->c.bypass, 1);
        return NGX_DECLINED;
    }

    if (conf->bypass) {
        switch (ngx_http_test_predicates(r, conf->bypass)) {

        case NGX_ERROR:
            return NGX_HTTP_INTERNAL_SERVER_ERROR;

        case NGX_DECLINED:
            /* not answered from the cache, but the answer refreshes it */
            ctx->status = NGX_AIGOV_CACHE_BYPASS;
            ctx->store = 1;
            (void) ngx_atomic_fetch_add(&ctx->stats->c.bypass, 1);
            return NGX_DECLINED;

        default: /* NGX_OK */
            break;
        }
    }

    rc = ngx_aigov_cache_lookup(ctx, r->pool, 0);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_OK) {
        return ngx_aigov_cache_hit(r, actx, ctx);
    }

    if (conf->redis) {
        rc = ngx_aigov_cache_redis_get(r, ctx);

        if (rc == NGX_ERROR) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if (rc == NGX_AGAIN) {
            return NGX_AGAIN;
        }

        /* not connected: fail open */
    }

miss:

    ctx->status = NGX_AIGOV_CACHE_MISS;
    ctx->store = 1;
    (void) ngx_atomic_fetch_add(&ctx->stats->c.misses, 1);

    return NGX_DECLINED;
}


static void
ngx_aigov_cache_hash_add(ngx_aigov_cache_hasher_t *h, const u_char *p,
    size_t len)
{
    if (h->len + len > sizeof(h->buf)) {
        if (h->len) {
            EVP_DigestUpdate(h->md, h->buf, h->len);
            h->len = 0;
        }

        if (len > sizeof(h->buf)) {
            EVP_DigestUpdate(h->md, p, len);
            return;
        }
    }

    ngx_memcpy(h->buf + h->len, p, len);
    h->len += len;
}


static void
ngx_aigov_cache_frame(ngx_aigov_cache_hasher_t *h, u_char *data, size_t len)
{
    u_char    n[8];
    uint64_t  v;

    v = len;

    n[0] = (u_char) (v >> 56);
    n[1] = (u_char) (v >> 48);
    n[2] = (u_char) (v >> 40);
    n[3] = (u_char) (v >> 32);
    n[4] = (u_char) (v >> 24);
    n[5] = (u_char) (v >> 16);
    n[6] = (u_char) (v >> 8);
    n[7] = (u_char) v;

    ngx_aigov_cache_hash_add(h, n, 8);
    ngx_aigov_cache_hash_add(h, data, len);
}


static void
ngx_aigov_cache_canon_write(void *data, const char *p, size_t len)
{
    ngx_aigov_cache_hash_add(data, (const u_char *) p, len);
}


/*
 * The key: NGX_OK, or NGX_DECLINED when this request cannot have one
 * (method, a body that is not JSON or was too large to keep in memory).
 * Every part is length-framed so that no two requests share a preimage.
 */

static ngx_int_t
ngx_aigov_cache_key(ngx_http_request_t *r, ngx_aigov_ctx_t *actx,
    ngx_aigov_cache_ctx_t *ctx)
{
    int                          rc;
    u_char                       buf[NGX_INT64_LEN];
    char                         err[128];
    ngx_str_t                    value;
    ngx_uint_t                   i;
    unsigned int                 len;
    ngx_aigov_header_t          *h;
    ngx_aigov_cache_hasher_t     hs;
    ngx_aigov_cache_loc_conf_t  *conf = ctx->conf;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_POST))) {
        return NGX_DECLINED;
    }

    if (r->request_body && r->request_body->temp_file) {
        /* larger than client_body_buffer_size: never read back from disk */
        (void) ngx_atomic_fetch_add(&ctx->stats->c.too_large, 1);
        return NGX_DECLINED;
    }

    if (r->method == NGX_HTTP_POST && actx->body.len == 0) {
        return NGX_DECLINED;
    }

    hs.md = ngx_aigov_cache_md;
    hs.len = 0;

    if (hs.md == NULL
        || EVP_DigestInit_ex(hs.md, ngx_aigov_cache_sha256, NULL) != 1)
    {
        return NGX_ERROR;
    }

    ngx_aigov_cache_frame(&hs, (u_char *) "aigov-cache-1", 13);
    ngx_aigov_cache_frame(&hs, r->method_name.data, r->method_name.len);
    ngx_aigov_cache_frame(&hs, r->uri.data, r->uri.len);
    ngx_aigov_cache_frame(&hs, r->args.data, r->args.len);
    ngx_aigov_cache_frame(&hs, actx->model->name.data,
                          actx->model->name.len);
    ngx_aigov_cache_frame(&hs, ctx->variant->version.data,
                          ctx->variant->version.len);
    ngx_aigov_cache_frame(&hs, buf,
                          ngx_sprintf(buf, "%uL",
                                      ngx_aigov_runtime(actx->model)->version)
                          - buf);

    if (conf->key_headers) {
        h = conf->key_headers->elts;

        for (i = 0; i < conf->key_headers->nelts; i++) {
            ngx_aigov_cache_frame(&hs, h[i].lowcase.data, h[i].lowcase.len);

            if (ngx_aigov_header_get(r, &h[i], &value) == NGX_OK) {
                ngx_aigov_cache_frame(&hs, (u_char *) "1", 1);
                ngx_aigov_cache_frame(&hs, value.data, value.len);

            } else {
                ngx_aigov_cache_frame(&hs, (u_char *) "0", 1);
            }
        }
    }

    /* the body last: the canonical text goes straight into the digest */

    ngx_aigov_cache_frame(&hs, (u_char *) "body", 4);

    if (actx->body.len) {
        rc = aigov_canon((char *) actx->body.data, actx->body.len,
                         ngx_aigov_cache_canon_write, &hs, err, sizeof(err));

        if (rc != AIGOV_CANON_OK) {
            if (rc == AIGOV_CANON_NOMEM) {
                return NGX_ERROR;
            }

            ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                           "aigov cache: no key, body: %s", err);
            return NGX_DECLINED;
        }
    }

    if (hs.len) {
        EVP_DigestUpdate(hs.md, hs.buf, hs.len);
    }

    len = 0;

    if (EVP_DigestFinal_ex(hs.md, ctx->digest, &len) != 1
        || len != NGX_AIGOV_CACHE_DIGEST)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* Shared memory: lookup, eviction, store. */

/*
 * The tree's key is the digest's first word.  The tree uses nginx's own
 * insert function, not one of this module: the tree lives in shared memory
 * across reloads, and a function pointer into a dynamic module is only
 * good for the processes that mapped that copy of it.  Two digests with
 * the same first word (2^-64 per pair on 64-bit platforms) only cost a
 * miss: a lookup compares the whole digest.
 */

static ngx_rbtree_key_t
ngx_aigov_cache_hash(u_char *digest)
{
    ngx_uint_t        i;
    ngx_rbtree_key_t  key;

    key = 0;

    for (i = 0; i < sizeof(ngx_rbtree_key_t); i++) {
        key = (key << 8) | digest[i];
    }

    return key;
}


static ngx_aigov_cache_entry_t *
ngx_aigov_cache_find_locked(ngx_aigov_cache_sh_t *sh, u_char *digest)
{
    ngx_rbtree_key_t          key;
    ngx_rbtree_node_t        *node, *sentinel;
    ngx_aigov_cache_entry_t  *e;

    key = ngx_aigov_cache_hash(digest);
    node = sh->rbtree.root;
    sentinel = sh->rbtree.sentinel;

    while (node != sentinel) {

        if (key < node->key) {
            node = node->left;
            continue;
        }

        if (key > node->key) {
            node = node->right;
            continue;
        }

        e = (ngx_aigov_cache_entry_t *) node;

        return ngx_memcmp(digest, e->digest, NGX_AIGOV_CACHE_DIGEST) == 0
               ? e : NULL;
    }

    return NULL;
}


static void
ngx_aigov_cache_free_locked(ngx_aigov_cache_zone_t *zone,
    ngx_aigov_cache_entry_t *e)
{
    ngx_aigov_cache_sh_t  *sh = zone->sh;

    ngx_queue_remove(&e->queue);
    ngx_rbtree_delete(&sh->rbtree, &e->node);

    if (e->stats) {
        e->stats->c.entries--;
        e->stats->c.bytes -= e->size;
    }

    sh->total.entries--;
    sh->total.bytes -= e->size;

    ngx_slab_free_locked(zone->shpool, e);
}


/*
 * NGX_OK: a fresh entry (or, with stale_ok, one within its stale_if_error
 * window) was copied into ctx->body / ctx->type / ctx->created from pool;
 * NGX_DECLINED: none.
 */

static ngx_int_t
ngx_aigov_cache_lookup(ngx_aigov_cache_ctx_t *ctx, ngx_pool_t *pool,
    ngx_uint_t stale_ok)
{
    u_char                   *p;
    uint64_t                  now;
    ngx_buf_t                *b;
    ngx_aigov_cache_zone_t   *zone = ctx->zone;
    ngx_aigov_cache_entry_t  *e;

    now = ngx_aigov_cache_now();

    ngx_shmtx_lock(&zone->shpool->mutex);

    e = ngx_aigov_cache_find_locked(zone->sh, ctx->digest);

    if (e == NULL) {
        ngx_shmtx_unlock(&zone->shpool->mutex);
        return NGX_DECLINED;
    }

    if (now >= e->stale_until) {
        /* of no use any more, not even stale */
        if (e->stats) {
            (void) ngx_atomic_fetch_add(&e->stats->c.expired, 1);
        }

        (void) ngx_atomic_fetch_add(&zone->sh->total.expired, 1);
        ngx_aigov_cache_free_locked(zone, e);
        ngx_shmtx_unlock(&zone->shpool->mutex);
        return NGX_DECLINED;
    }

    if (now >= e->expires && !stale_ok) {
        ngx_shmtx_unlock(&zone->shpool->mutex);
        return NGX_DECLINED;
    }

    /* copied: the entry may be evicted as soon as the lock is released */

    p = ngx_pnalloc(pool, e->type_len + 1);
    b = ngx_create_temp_buf(pool, e->body_len ? e->body_len : 1);

    if (p == NULL || b == NULL) {
        ngx_shmtx_unlock(&zone->shpool->mutex);
        return NGX_ERROR;
    }

    ngx_memcpy(p, e->data, e->type_len);
    b->last = ngx_cpymem(b->pos, e->data + e->type_len, e->body_len);

    ctx->type.data = p;
    ctx->type.len = e->type_len;
    ctx->body = b;
    ctx->created = e->created;

    ngx_queue_remove(&e->queue);
    ngx_queue_insert_head(&zone->sh->lru, &e->queue);

    ngx_shmtx_unlock(&zone->shpool->mutex);

    return NGX_OK;
}


/* Answers from ctx->body: HIT.  Finalizes r: touch nothing after. */

static ngx_int_t
ngx_aigov_cache_hit(ngx_http_request_t *r, ngx_aigov_ctx_t *actx,
    ngx_aigov_cache_ctx_t *ctx)
{
    ngx_buf_t  *b;

    ctx->status = NGX_AIGOV_CACHE_HIT;
    (void) ngx_atomic_fetch_add(&ctx->stats->c.hits, 1);

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = ctx->body->last - ctx->body->pos;
    r->headers_out.content_type = ctx->type;
    r->headers_out.content_type_len = ctx->type.len;
    r->headers_out.content_type_lowcase = NULL;

    b = ctx->body;

    if (r->header_only || r->method == NGX_HTTP_HEAD
        || r->headers_out.content_length_n == 0)
    {
        b = NULL;

    } else {
        b->last_buf = 1;
        b->last_in_chain = 1;
    }

    ngx_http_aigov_decided(actx);
    ngx_http_finalize_request(r, ngx_http_aigov_send_buf(r, actx, b));

    return NGX_DONE;
}


static void
ngx_aigov_cache_expire_locked(ngx_aigov_cache_zone_t *zone, uint64_t now)
{
    ngx_uint_t                n;
    ngx_queue_t              *q;
    ngx_aigov_cache_entry_t  *e;

    for (n = 0; n < NGX_AIGOV_CACHE_EXPIRE_SCAN; n++) {

        if (ngx_queue_empty(&zone->sh->lru)) {
            return;
        }

        q = ngx_queue_last(&zone->sh->lru);
        e = ngx_queue_data(q, ngx_aigov_cache_entry_t, queue);

        if (now < e->stale_until) {
            return;
        }

        if (e->stats) {
            (void) ngx_atomic_fetch_add(&e->stats->c.expired, 1);
        }

        (void) ngx_atomic_fetch_add(&zone->sh->total.expired, 1);
        ngx_aigov_cache_free_locked(zone, e);
    }
}


static ngx_int_t
ngx_aigov_cache_store(ngx_aigov_cache_zone_t *zone,
    ngx_aigov_cache_stats_t *stats, u_char *digest, ngx_str_t *type,
    u_char *body, size_t len, uint64_t created, uint64_t expires,
    uint64_t stale_until, ngx_log_t *log)
{
    size_t                    size;
    ngx_queue_t              *q;
    ngx_aigov_cache_entry_t  *e, *old;

    size = offsetof(ngx_aigov_cache_entry_t, data) + type->len + len;

    ngx_shmtx_lock(&zone->shpool->mutex);

    old = ngx_aigov_cache_find_locked(zone->sh, digest);
    if (old) {
        ngx_aigov_cache_free_locked(zone, old);
    }

    ngx_aigov_cache_expire_locked(zone, ngx_aigov_cache_now());

    for ( ;; ) {
        e = ngx_slab_alloc_locked(zone->shpool, size);

        if (e || ngx_queue_empty(&zone->sh->lru)) {
            break;
        }

        /* full: the least recently used entry goes */

        q = ngx_queue_last(&zone->sh->lru);
        old = ngx_queue_data(q, ngx_aigov_cache_entry_t, queue);

        if (old->stats) {
            (void) ngx_atomic_fetch_add(&old->stats->c.evictions, 1);
        }

        (void) ngx_atomic_fetch_add(&zone->sh->total.evictions, 1);
        ngx_aigov_cache_free_locked(zone, old);
    }

    if (e == NULL) {
        ngx_shmtx_unlock(&zone->shpool->mutex);

        ngx_log_error(NGX_LOG_INFO, log, 0,
                      "aigov cache zone \"%V\" has no room for an entry of "
                      "%uz bytes", &zone->name, size);

        if (stats) {
            (void) ngx_atomic_fetch_add(&stats->c.too_large, 1);
        }

        return NGX_DECLINED;
    }

    e->node.key = ngx_aigov_cache_hash(digest);
    ngx_memcpy(e->digest, digest, NGX_AIGOV_CACHE_DIGEST);
    e->stats = stats;
    e->created = created;
    e->expires = expires;
    e->stale_until = stale_until;
    e->size = size;
    e->type_len = (uint16_t) type->len;
    e->body_len = (uint32_t) len;
    ngx_memcpy(e->data, type->data, type->len);
    ngx_memcpy(e->data + type->len, body, len);

    ngx_rbtree_insert(&zone->sh->rbtree, &e->node);
    ngx_queue_insert_head(&zone->sh->lru, &e->queue);

    if (stats) {
        stats->c.entries++;
        stats->c.bytes += size;
        (void) ngx_atomic_fetch_add(&stats->c.stores, 1);
    }

    zone->sh->total.entries++;
    zone->sh->total.bytes += size;
    (void) ngx_atomic_fetch_add(&zone->sh->total.stores, 1);

    ngx_shmtx_unlock(&zone->shpool->mutex);

    return NGX_OK;
}


/* Redis: the fleet's entries. */

static ngx_str_t *
ngx_aigov_cache_redis_key(ngx_http_request_t *r, ngx_aigov_cache_ctx_t *ctx)
{
    u_char                      *p;
    ngx_str_t                   *key;
    ngx_http_aigov_main_conf_t  *amcf = ctx->zone->amcf;

    key = ngx_palloc(r->pool, sizeof(ngx_str_t));
    if (key == NULL) {
        return NULL;
    }

    key->len = amcf->redis->prefix.len + sizeof("cache:") - 1
               + 2 * NGX_AIGOV_CACHE_DIGEST;
    key->data = ngx_pnalloc(r->pool, key->len);
    if (key->data == NULL) {
        return NULL;
    }

    p = ngx_cpymem(key->data, amcf->redis->prefix.data,
                   amcf->redis->prefix.len);
    p = ngx_cpymem(p, "cache:", sizeof("cache:") - 1);
    (void) ngx_hex_dump(p, ctx->digest, NGX_AIGOV_CACHE_DIGEST);

    return key;
}


/* NGX_AGAIN: asked, r waits; NGX_DECLINED: Redis not usable now. */

static ngx_int_t
ngx_aigov_cache_redis_get(ngx_http_request_t *r, ngx_aigov_cache_ctx_t *ctx)
{
    size_t              argvlen[2];
    ngx_str_t          *key;
    const char         *argv[2];
    ngx_aigov_redis_t  *rds;

    rds = ngx_http_aigov_control_client();

    if (rds == NULL || !rds->ready) {
        return NGX_DECLINED;
    }

    key = ngx_aigov_cache_redis_key(r, ctx);
    if (key == NULL) {
        return NGX_ERROR;
    }

    argv[0] = "GET";
    argvlen[0] = 3;
    argv[1] = (const char *) key->data;
    argvlen[1] = key->len;

    ctx->cmd = ngx_aigov_redis_send(rds, ngx_aigov_cache_redis_reply, ctx, 2,
                                    argv, argvlen);

    if (ctx->cmd == NULL) {
        return NGX_DECLINED;
    }

    ctx->timer.handler = ngx_aigov_cache_redis_timeout;
    ctx->timer.data = ctx;
    ctx->timer.log = r->connection->log;

    ngx_add_timer(&ctx->timer, ctx->conf->redis_timeout);

    ctx->waiting = 1;

    return NGX_AGAIN;
}


/*
 * "AGC1 <created> <expires> <stale_until> <type length>\n<type><body>",
 * times in ms since the epoch.
 */

static ngx_int_t
ngx_aigov_cache_redis_parse(u_char *p, size_t len, uint64_t *t,
    ngx_str_t *type, ngx_str_t *body)
{
    u_char     *last, *nl;
    uint64_t    v;
    ngx_uint_t  i, digits;

    last = p + len;

    if (len < sizeof(NGX_AIGOV_CACHE_REDIS_MAGIC) - 1
        || ngx_memcmp(p, NGX_AIGOV_CACHE_REDIS_MAGIC,
                      sizeof(NGX_AIGOV_CACHE_REDIS_MAGIC) - 1) != 0)
    {
        return NGX_ERROR;
    }

    p += sizeof(NGX_AIGOV_CACHE_REDIS_MAGIC) - 1;

    nl = ngx_strlchr(p, ngx_min(last, p + NGX_AIGOV_CACHE_REDIS_HEAD), '\n');
    if (nl == NULL) {
        return NGX_ERROR;
    }

    /* four numbers separated by single spaces */

    for (i = 0; i < 4; i++) {
        v = 0;
        digits = 0;

        while (p < nl && *p >= '0' && *p <= '9' && digits < 18) {
            v = v * 10 + (*p++ - '0');
            digits++;
        }

        if (digits == 0) {
            return NGX_ERROR;
        }

        if (i < 3) {
            if (p >= nl || *p != ' ') {
                return NGX_ERROR;
            }

            p++;
        }

        t[i] = v;
    }

    if (p != nl || t[3] > 255 || (size_t) (last - nl - 1) < t[3]) {
        return NGX_ERROR;
    }

    type->data = nl + 1;
    type->len = (size_t) t[3];
    body->data = type->data + type->len;
    body->len = last - body->data;

    return NGX_OK;
}


static void
ngx_aigov_cache_redis_reply(void *data, redisReply *reply)
{
    ngx_aigov_cache_ctx_t *ctx = data;

    u_char              *p;
    uint64_t             t[4], now;
    ngx_str_t            type, body;
    ngx_buf_t           *b;
    ngx_http_request_t  *r;

    r = ctx->r;
    ctx->cmd = NULL;

    if (ctx->timer.timer_set) {
        ngx_del_timer(&ctx->timer);
    }

    if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
        (void) ngx_atomic_fetch_add(&ctx->stats->c.redis_errors, 1);
        goto done;
    }

    if (reply->type != REDIS_REPLY_STRING) {
        goto done;                           /* nil: not in the fleet */
    }

    if (ngx_aigov_cache_redis_parse((u_char *) reply->str, reply->len, t,
                                    &type, &body)
        != NGX_OK
        || body.len > ctx->zone->max_entry)
    {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "aigov cache: ignored a malformed Redis entry");
        (void) ngx_atomic_fetch_add(&ctx->stats->c.redis_errors, 1);
        goto done;
    }

    now = ngx_aigov_cache_now();

    if (now >= t[1]) {
        goto done;                           /* expired meanwhile */
    }

    p = ngx_pnalloc(r->pool, type.len + 1);
    b = ngx_create_temp_buf(r->pool, body.len ? body.len : 1);

    if (p == NULL || b == NULL) {
        goto done;
    }

    ngx_memcpy(p, type.data, type.len);
    b->last = ngx_cpymem(b->pos, body.data, body.len);

    ctx->type.data = p;
    ctx->type.len = type.len;
    ctx->body = b;
    ctx->created = t[0];

    /* the next request on this node is a local hit */
    (void) ngx_aigov_cache_store(ctx->zone, ctx->stats, ctx->digest,
                                 &ctx->type, b->pos, body.len, t[0], t[1],
                                 t[2], r->connection->log);

done:

    ngx_aigov_cache_resume(ctx);
}


static void
ngx_aigov_cache_redis_timeout(ngx_event_t *ev)
{
    ngx_aigov_cache_ctx_t *ctx = ev->data;

    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, ev->log, 0,
                   "aigov cache: Redis lookup timed out");

    if (ctx->cmd) {
        ngx_aigov_redis_cancel(ctx->cmd);
        ctx->cmd = NULL;
    }

    (void) ngx_atomic_fetch_add(&ctx->stats->c.redis_errors, 1);

    ngx_aigov_cache_resume(ctx);
}


static void
ngx_aigov_cache_resume(ngx_aigov_cache_ctx_t *ctx)
{
    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    r = ctx->r;
    c = r->connection;

    ctx->waiting = 0;
    ctx->answered = 1;

    r->write_event_handler = ngx_http_core_run_phases;
    ngx_http_core_run_phases(r);
    ngx_http_run_posted_requests(c);
}


static void
ngx_aigov_cache_cleanup(void *data)
{
    ngx_aigov_cache_ctx_t *ctx = data;

    if (ctx->cmd) {
        ngx_aigov_redis_cancel(ctx->cmd);
        ctx->cmd = NULL;
    }

    if (ctx->timer.timer_set) {
        ngx_del_timer(&ctx->timer);
    }
}


static void
ngx_aigov_cache_redis_done(void *data, redisReply *reply)
{
    ngx_aigov_cache_stats_t *stats = data;

    if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
        (void) ngx_atomic_fetch_add(&stats->c.redis_errors, 1);
    }
}


static void
ngx_aigov_cache_redis_set(ngx_http_request_t *r, ngx_aigov_cache_ctx_t *ctx,
    uint64_t created, uint64_t expires, ngx_msec_t stale)
{
    u_char             *p, *v, ttl[NGX_INT64_LEN];
    size_t              argvlen[5], len;
    uint64_t            now;
    ngx_str_t          *key;
    const char         *argv[5];
    ngx_aigov_redis_t  *rds;

    rds = ngx_http_aigov_control_client();
    now = ngx_aigov_cache_now();

    if (rds == NULL || !rds->ready || expires <= now) {
        return;
    }

    key = ngx_aigov_cache_redis_key(r, ctx);
    if (key == NULL) {
        return;
    }

    len = NGX_AIGOV_CACHE_REDIS_HEAD + ctx->type.len + ctx->len;

    v = ngx_pnalloc(r->pool, len);
    if (v == NULL) {
        return;
    }

    p = ngx_sprintf(v, NGX_AIGOV_CACHE_REDIS_MAGIC "%uL %uL %uL %uz\n",
                    created, expires, expires + stale, ctx->type.len);
    p = ngx_cpymem(p, ctx->type.data, ctx->type.len);
    p = ngx_cpymem(p, ctx->buf, ctx->len);

    argv[0] = "SET";
    argvlen[0] = 3;
    argv[1] = (const char *) key->data;
    argvlen[1] = key->len;
    argv[2] = (const char *) v;
    argvlen[2] = p - v;
    argv[3] = "PX";
    argvlen[3] = 2;
    argv[4] = (const char *) ttl;
    argvlen[4] = ngx_sprintf(ttl, "%uL", expires - now) - ttl;

    /* no reference to r: the reply may come after it is gone */

    if (ngx_aigov_redis_send(rds, ngx_aigov_cache_redis_done, ctx->stats, 5,
                             argv, argvlen)
        == NULL)
    {
        (void) ngx_atomic_fetch_add(&ctx->stats->c.redis_errors, 1);
    }
}


/* The response: headers. */

static ngx_int_t
ngx_aigov_cache_header_filter(ngx_http_request_t *r, ngx_aigov_ctx_t *actx)
{
    u_char                 *p;
    time_t                  age;
    uint64_t                now;
    ngx_int_t               rc;
    ngx_str_t               value;
    ngx_aigov_cache_ctx_t  *ctx;

    ctx = ngx_aigov_plugin_ctx(actx, ngx_aigov_cache_plugin);

    if (ctx == NULL || ctx->status == NGX_AIGOV_CACHE_NONE) {
        return NGX_OK;
    }

    if (ctx->status == NGX_AIGOV_CACHE_MISS
        && ctx->conf->stale
        && !actx->fallback_out)
    {
        rc = ngx_aigov_cache_stale(r, actx, ctx);

        if (rc == NGX_ERROR) {
            return NGX_ERROR;
        }
    }

    if (ctx->store && ctx->status != NGX_AIGOV_CACHE_STALE) {
        if (ngx_aigov_cache_cacheable(r, actx, ctx) == NGX_ERROR) {
            return NGX_ERROR;
        }
    }

    if (ngx_aigov_add_header(r, &ngx_aigov_cache_header,
                             &ngx_aigov_cache_status_names[ctx->status])
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (ctx->status != NGX_AIGOV_CACHE_HIT
        && ctx->status != NGX_AIGOV_CACHE_STALE)
    {
        return NGX_OK;
    }

    now = ngx_aigov_cache_now();
    age = (now > ctx->created) ? (time_t) ((now - ctx->created) / 1000) : 0;

    p = ngx_pnalloc(r->pool, NGX_TIME_T_LEN);
    if (p == NULL) {
        return NGX_ERROR;
    }

    value.data = p;
    value.len = ngx_sprintf(p, "%T", age) - p;

    return ngx_aigov_add_header(r, &ngx_aigov_cache_age, &value);
}


/* Hides a response header from the header filter that writes them. */

static void
ngx_aigov_cache_hide(ngx_http_request_t *r, ngx_http_upstream_t *u)
{
    ngx_uint_t        i, j, upstream;
    ngx_list_part_t  *part, *upart;
    ngx_table_elt_t  *h, *uh;

    static ngx_str_t  names[] = {
        ngx_string("Retry-After"),
        ngx_string("Set-Cookie"),
        ngx_string("Cache-Control"),
        ngx_string("Expires"),
        ngx_string("Content-Range"),
        ngx_string("WWW-Authenticate"),
        ngx_null_string
    };

    part = &r->headers_out.headers.part;
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

        if (h[i].hash == 0) {
            continue;
        }

        for (j = 0; names[j].len; j++) {
            if (h[i].key.len == names[j].len
                && ngx_strncasecmp(h[i].key.data, names[j].data,
                                   names[j].len) == 0)
            {
                h[i].hash = 0;
                break;
            }
        }

        if (h[i].hash == 0 || u == NULL) {
            continue;
        }

        /* copied from the upstream's response: the same value bytes */

        upstream = 0;
        upart = &u->headers_in.headers.part;
        uh = upart->elts;

        for (j = 0; /* void */ ; j++) {

            if (j >= upart->nelts) {
                if (upart->next == NULL) {
                    break;
                }

                upart = upart->next;
                uh = upart->elts;
                j = 0;
            }

            if (uh[j].value.data == h[i].value.data) {
                upstream = 1;
                break;
            }
        }

        if (upstream) {
            h[i].hash = 0;
        }
    }
}


/*
 * Stale-if-error: the model failed (an upstream 5xx, a failure before the
 * response header, or aigov answered for an open breaker) and an entry
 * still within its stale_if_error window replaces the response.
 */

static ngx_int_t
ngx_aigov_cache_stale(ngx_http_request_t *r, ngx_aigov_ctx_t *actx,
    ngx_aigov_cache_ctx_t *ctx)
{
    ngx_int_t             rc;
    ngx_uint_t            status;
    ngx_aigov_fallback_e  failed;
    ngx_http_upstream_t  *u;

    status = r->headers_out.status;
    u = r->upstream;
    failed = NGX_AIGOV_FALLBACK_NONE;

    if (actx->responded) {
        if (actx->fallback != NGX_AIGOV_FALLBACK_BREAKER) {
            return NGX_DECLINED;
        }

    } else {
        if (u == NULL
            || (status != NGX_HTTP_INTERNAL_SERVER_ERROR
                && status != NGX_HTTP_BAD_GATEWAY
                && status != NGX_HTTP_SERVICE_UNAVAILABLE
                && status != NGX_HTTP_GATEWAY_TIME_OUT))
        {
            return NGX_DECLINED;
        }

        failed = ngx_http_aigov_upstream_failed(r);
    }

    rc = ngx_aigov_cache_lookup(ctx, r->pool, 1);

    if (rc != NGX_OK) {
        return rc;
    }

    ngx_aigov_cache_hide(r, failed ? NULL : u);

    ngx_http_aigov_clear_representation(r);

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.status_line.len = 0;
    r->headers_out.content_type = ctx->type;
    r->headers_out.content_type_len = ctx->type.len;
    r->headers_out.content_type_lowcase = NULL;
    r->headers_out.charset.len = 0;
    r->headers_out.content_length_n = ctx->body->last - ctx->body->pos;

    rc = ngx_aigov_replace_response(r, actx,
                                    r->headers_out.content_length_n
                                    ? ctx->body : NULL);
    if (rc != NGX_OK) {
        return rc;
    }

    if (failed) {
        actx->fallback = failed;
    }

    /* a rule's answer, replaced: no rule answered after all */
    ngx_str_null(&actx->fallback_rule);

    /*
     * The entry is the key's variant's answer, also when a breaker's
     * fallback variant was called and failed: X-Aigov-Variant and
     * X-Aigov-Model-Version name the version of the body.
     */
    actx->variant = ctx->variant;

    ctx->status = NGX_AIGOV_CACHE_STALE;
    ctx->store = 0;
    (void) ngx_atomic_fetch_add(&ctx->stats->c.stale, 1);

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "aigov cache: model \"%V\" answered %ui%s: served a stale "
                  "entry", &actx->model->name, status,
                  actx->responded ? " (breaker open)"
                  : failed ? " before its header" : "");

    return NGX_OK;
}


/* Can the response going out be stored?  Sets ctx->capturing. */

static ngx_int_t
ngx_aigov_cache_cacheable(ngx_http_request_t *r, ngx_aigov_ctx_t *actx,
    ngx_aigov_cache_ctx_t *ctx)
{
    u_char            *p, *last;
    size_t             len;
    ngx_str_t         *t, type;
    ngx_uint_t         i, ok;
    ngx_list_part_t   *part;
    ngx_table_elt_t   *h;

    ctx->store = 0;

    if (actx->responded || actx->fallback != NGX_AIGOV_FALLBACK_NONE
        || r->upstream == NULL || r->header_only
        || r->method == NGX_HTTP_HEAD)
    {
        /* not the model's answer, or no body to store */
        return NGX_DECLINED;
    }

    if (actx->variant == NULL
        || actx->variant->version.len != ctx->variant->version.len
        || ngx_strncmp(actx->variant->version.data,
                       ctx->variant->version.data,
                       ctx->variant->version.len) != 0)
    {
        /* another version answered (a breaker's fallback variant) */
        goto not_cacheable;
    }

    if (r->headers_out.status != NGX_HTTP_OK) {
        goto not_cacheable;
    }

    /* the media type, without parameters */

    p = r->headers_out.content_type.data;

    if (p == NULL || r->headers_out.content_type.len > 255) {
        goto not_cacheable;
    }

    last = p + r->headers_out.content_type.len;

    len = 0;
    while (p + len < last && p[len] != ';' && p[len] != ' '
           && p[len] != '\t')
    {
        len++;
    }

    type.data = p;
    type.len = len;

    if (len == sizeof("text/event-stream") - 1
        && ngx_strncasecmp(p, (u_char *) "text/event-stream", len) == 0)
    {
        goto not_cacheable;
    }

    ok = 0;
    t = ctx->conf->types->elts;

    for (i = 0; i < ctx->conf->types->nelts; i++) {
        if (t[i].len == type.len
            && ngx_strncasecmp(t[i].data, type.data, type.len) == 0)
        {
            ok = 1;
            break;
        }
    }

    if (!ok) {
        goto not_cacheable;
    }

    if (r->headers_out.content_encoding
        && r->headers_out.content_encoding->value.len)
    {
        /* the key knows nothing of Accept-Encoding */
        goto not_cacheable;
    }

    part = &r->headers_out.headers.part;
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

        if (h[i].hash == 0) {
            continue;
        }

        if (h[i].key.len == sizeof("Set-Cookie") - 1
            && ngx_strncasecmp(h[i].key.data, (u_char *) "Set-Cookie",
                               h[i].key.len) == 0)
        {
            goto not_cacheable;
        }

        if (h[i].key.len == sizeof("Cache-Control") - 1
            && ngx_strncasecmp(h[i].key.data, (u_char *) "Cache-Control",
                               h[i].key.len) == 0
            && (ngx_strlcasestrn(h[i].value.data,
                                 h[i].value.data + h[i].value.len,
                                 (u_char *) "no-store", 8 - 1)
                || ngx_strlcasestrn(h[i].value.data,
                                    h[i].value.data + h[i].value.len,
                                    (u_char *) "no-cache", 8 - 1)
                || ngx_strlcasestrn(h[i].value.data,
                                    h[i].value.data + h[i].value.len,
                                    (u_char *) "private", 7 - 1)))
        {
            goto not_cacheable;
        }

        if (h[i].key.len == sizeof("Vary") - 1
            && ngx_strncasecmp(h[i].key.data, (u_char *) "Vary", 4) == 0
            && ngx_strlchr(h[i].value.data,
                           h[i].value.data + h[i].value.len, '*'))
        {
            goto not_cacheable;
        }
    }

    if (r->headers_out.content_length_n > (off_t) ctx->zone->max_entry) {
        (void) ngx_atomic_fetch_add(&ctx->stats->c.too_large, 1);
        return NGX_DECLINED;
    }

    ctx->expect = r->headers_out.content_length_n;
    ctx->size = (ctx->expect >= 0) ? (size_t) ctx->expect
                                   : ngx_min(4096, ctx->zone->max_entry);

    ctx->buf = ngx_pnalloc(r->pool, ctx->size ? ctx->size : 1);
    if (ctx->buf == NULL) {
        return NGX_ERROR;
    }

    ctx->type.data = ngx_pnalloc(r->pool, r->headers_out.content_type.len);
    if (ctx->type.data == NULL) {
        return NGX_ERROR;
    }

    ctx->type.len = r->headers_out.content_type.len;
    ngx_memcpy(ctx->type.data, r->headers_out.content_type.data,
               ctx->type.len);

    ctx->len = 0;
    ctx->capturing = 1;

    /*
     * An answer nginx spooled to a proxy temporary file reaches the body
     * filters as file buffers when sendfile is on: have the copy filter
     * (which runs before this one) read them into memory, as SSI does.
     */
    r->filter_need_in_memory = 1;

    return NGX_OK;

not_cacheable:

    (void) ngx_atomic_fetch_add(&ctx->stats->c.not_cacheable, 1);

    return NGX_DECLINED;
}


/* The response: body. */

static ngx_int_t
ngx_aigov_cache_body_filter(ngx_http_request_t *r, ngx_aigov_ctx_t *actx,
    ngx_chain_t *in)
{
    u_char                 *nbuf;
    size_t                  n, size;
    ngx_chain_t            *cl;
    ngx_aigov_cache_ctx_t  *ctx;

    ctx = ngx_aigov_plugin_ctx(actx, ngx_aigov_cache_plugin);

    if (ctx == NULL || !ctx->capturing) {
        return NGX_OK;
    }

    for (cl = in; cl; cl = cl->next) {

        if (!ngx_buf_special(cl->buf) && !ngx_buf_in_memory(cl->buf)) {
            /* not expected (filter_need_in_memory): given up */
            ctx->capturing = 0;
            (void) ngx_atomic_fetch_add(&ctx->stats->c.too_large, 1);
            return NGX_OK;
        }

        n = ngx_buf_in_memory(cl->buf) ? cl->buf->last - cl->buf->pos : 0;

        if (n) {
            if (ctx->len + n > ctx->zone->max_entry
                || (ctx->expect >= 0 && ctx->len + n > (size_t) ctx->expect))
            {
                ctx->capturing = 0;
                (void) ngx_atomic_fetch_add(&ctx->stats->c.too_large, 1);
                return NGX_OK;
            }

            if (ctx->len + n > ctx->size) {
                size = ngx_max(ctx->size * 2, ctx->len + n);
                size = ngx_min(size, ctx->zone->max_entry);

                nbuf = ngx_pnalloc(r->pool, size);
                if (nbuf == NULL) {
                    ctx->capturing = 0;
                    return NGX_OK;
                }

                ngx_memcpy(nbuf, ctx->buf, ctx->len);
                ctx->buf = nbuf;
                ctx->size = size;
            }

            ngx_memcpy(ctx->buf + ctx->len, cl->buf->pos, n);
            ctx->len += n;
        }

        if (cl->buf->last_buf) {
            ctx->capturing = 0;
            ngx_aigov_cache_finish(r, ctx);
            return NGX_OK;
        }
    }

    return NGX_OK;
}


/*
 * The last buffer went by: nginx sends it only for a response that
 * completed (an upstream failing mid-body, or a broken chunked encoding,
 * ends the request without it).  Stores a complete, valid answer.
 */

static void
ngx_aigov_cache_finish(ngx_http_request_t *r, ngx_aigov_cache_ctx_t *ctx)
{
    size_t                       n;
    uint64_t                     now;
    ngx_str_t                    mt;
    ngx_http_upstream_t         *u;
    ngx_aigov_cache_loc_conf_t  *conf = ctx->conf;

    u = r->upstream;

    if ((ctx->expect >= 0 && ctx->len != (size_t) ctx->expect)
        || (u && u->error) || r->connection->error)
    {
        goto not_cacheable;
    }

    /* a JSON type must carry JSON */

    mt = ctx->type;
    for (n = 0; n < mt.len && mt.data[n] != ';' && mt.data[n] != ' '; n++) {
        /* void */
    }
    mt.len = n;

    if ((mt.len == sizeof("application/json") - 1
         && ngx_strncasecmp(mt.data, (u_char *) "application/json",
                            mt.len) == 0)
        || (mt.len > 5
            && ngx_strncasecmp(mt.data + mt.len - 5, (u_char *) "+json", 5)
               == 0))
    {
        if (aigov_canon((char *) ctx->buf, ctx->len, NULL, NULL, NULL, 0)
            != AIGOV_CANON_OK)
        {
            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          "aigov cache: not stored: the %V response is not "
                          "valid JSON", &mt);
            goto not_cacheable;
        }
    }

    now = ngx_aigov_cache_now();

    if (ngx_aigov_cache_store(ctx->zone, ctx->stats, ctx->digest, &ctx->type,
                              ctx->buf, ctx->len, now, now + conf->ttl,
                              now + conf->ttl + conf->stale,
                              r->connection->log)
        == NGX_OK
        && conf->redis)
    {
        ngx_aigov_cache_redis_set(r, ctx, now, now + conf->ttl, conf->stale);
    }

    return;

not_cacheable:

    (void) ngx_atomic_fetch_add(&ctx->stats->c.not_cacheable, 1);
}


/* A capture still going when the request ends: the body never completed. */

static void
ngx_aigov_cache_log(ngx_http_request_t *r, ngx_aigov_ctx_t *actx)
{
    ngx_aigov_cache_ctx_t  *ctx;

    ctx = ngx_aigov_plugin_ctx(actx, ngx_aigov_cache_plugin);

    if (ctx && ctx->capturing) {
        ctx->capturing = 0;
        (void) ngx_atomic_fetch_add(&ctx->stats->c.not_cacheable, 1);
    }
}


/* Status, variable. */

static json_t *
ngx_aigov_cache_counters_json(ngx_aigov_cache_counters_t *c)
{
    return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I,"
                     " s:I, s:I, s:I}",
                     "hits", (json_int_t) c->hits,
                     "misses", (json_int_t) c->misses,
                     "stale", (json_int_t) c->stale,
                     "bypass", (json_int_t) c->bypass,
                     "stores", (json_int_t) c->stores,
                     "evictions", (json_int_t) c->evictions,
                     "expired", (json_int_t) c->expired,
                     "too_large", (json_int_t) c->too_large,
                     "not_cacheable", (json_int_t) c->not_cacheable,
                     "redis_hits", (json_int_t) c->redis_hits,
                     "redis_errors", (json_int_t) c->redis_errors,
                     "entries", (json_int_t) c->entries,
                     "bytes", (json_int_t) c->bytes);
}


static ngx_int_t
ngx_aigov_cache_status(ngx_aigov_model_t *model, void *conf, json_t *out)
{
    json_t                        *all, *j;
    ngx_uint_t                     i;
    ngx_aigov_cache_zone_t       **zone;
    ngx_aigov_cache_main_conf_t   *cmcf;

    cmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_aigov_cache_module);

    if (cmcf == NULL || cmcf->zones.nelts == 0) {
        return NGX_OK;
    }

    all = json_object();
    if (all == NULL) {
        return NGX_ERROR;
    }

    zone = cmcf->zones.elts;

    for (i = 0; i < cmcf->zones.nelts; i++) {
        if (zone[i]->sh == NULL || model->index >= zone[i]->nmodels
            || zone[i]->models[model->index] == NULL)
        {
            continue;
        }

        j = ngx_aigov_cache_counters_json(
                                     &zone[i]->models[model->index]->c);
        if (j == NULL) {
            json_decref(all);
            return NGX_ERROR;
        }

        json_object_set_new(j, "zone",
            json_pack("{s:I, s:I, s:I, s:I}",
                      "size", (json_int_t) zone[i]->size,
                      "max_entry", (json_int_t) zone[i]->max_entry,
                      "entries", (json_int_t) zone[i]->sh->total.entries,
                      "bytes", (json_int_t) zone[i]->sh->total.bytes));

        json_object_set_new(all, (char *) zone[i]->name.data, j);
    }

    json_object_set_new(out, "cache", all);

    return NGX_OK;
}


static ngx_int_t
ngx_aigov_cache_variable(ngx_http_request_t *r, ngx_http_variable_value_t *v,
    uintptr_t data)
{
    ngx_str_t              *s;
    ngx_aigov_ctx_t        *actx;
    ngx_aigov_cache_ctx_t  *ctx;

    actx = ngx_aigov_get_ctx(r);
    ctx = actx ? ngx_aigov_plugin_ctx(actx, ngx_aigov_cache_plugin) : NULL;

    if (ctx == NULL || ctx->status == NGX_AIGOV_CACHE_NONE) {
        v->not_found = 1;
        return NGX_OK;
    }

    s = &ngx_aigov_cache_status_names[ctx->status];

    v->data = s->data;
    v->len = s->len;
    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;

    return NGX_OK;
}


/* Configuration. */

static ngx_int_t
ngx_aigov_cache_enabled(void *loc_conf)
{
    ngx_aigov_cache_loc_conf_t  *conf = loc_conf;

    return conf->zone != NULL;
}


static ngx_int_t
ngx_aigov_cache_needs_body(void *loc_conf)
{
    ngx_aigov_cache_loc_conf_t  *conf = loc_conf;

    return conf->zone != NULL;
}


static void
ngx_aigov_cache_md_free(void *data)
{
    EVP_MD_CTX_free(ngx_aigov_cache_md);
    EVP_MD_free(ngx_aigov_cache_sha256);

    ngx_aigov_cache_md = NULL;
    ngx_aigov_cache_sha256 = NULL;
}


static ngx_int_t
ngx_aigov_cache_init_worker(ngx_cycle_t *cycle)
{
    ngx_pool_cleanup_t           *cln;
    ngx_aigov_cache_main_conf_t  *cmcf;

    cmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_aigov_cache_module);

    if (cmcf == NULL || cmcf->zones.nelts == 0) {
        return NGX_OK;
    }

    cln = ngx_pool_cleanup_add(cycle->pool, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    cln->handler = ngx_aigov_cache_md_free;
    cln->data = NULL;

    ngx_aigov_cache_md = EVP_MD_CTX_new();
    ngx_aigov_cache_sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);

    if (ngx_aigov_cache_md == NULL || ngx_aigov_cache_sha256 == NULL) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      "aigov cache: OpenSSL has no SHA-256 for the keys");
        return NGX_ERROR;
    }

    return NGX_OK;
}


static ngx_aigov_cache_zone_t *
ngx_aigov_cache_get_zone(ngx_conf_t *cf, ngx_str_t *name)
{
    ngx_uint_t                    i;
    ngx_aigov_cache_zone_t      **zone, *z;
    ngx_aigov_cache_main_conf_t  *cmcf;

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_aigov_cache_module);
    zone = cmcf->zones.elts;

    for (i = 0; i < cmcf->zones.nelts; i++) {
        if (zone[i]->name.len == name->len
            && ngx_strncmp(zone[i]->name.data, name->data, name->len) == 0)
        {
            return zone[i];
        }
    }

    z = ngx_pcalloc(cf->pool, sizeof(ngx_aigov_cache_zone_t));
    if (z == NULL) {
        return NULL;
    }

    zone = ngx_array_push(&cmcf->zones);
    if (zone == NULL) {
        return NULL;
    }

    *zone = z;

    /* NUL-terminated: a key of the status JSON */
    z->name.len = name->len;
    z->name.data = ngx_pnalloc(cf->pool, name->len + 1);
    if (z->name.data == NULL) {
        return NULL;
    }

    ngx_memcpy(z->name.data, name->data, name->len);
    z->name.data[name->len] = '\0';

    z->file = cf->conf_file->file.name.data;
    z->line = cf->conf_file->line;
    z->amcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_aigov_module);

    return z;
}


/* aigov_cache_zone NAME:SIZE [max_entry=SIZE] */

static char *
ngx_aigov_cache_zone_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    u_char                  *p;
    ssize_t                  size, max;
    ngx_str_t               *value, name, s;
    ngx_aigov_cache_zone_t  *zone;

    value = cf->args->elts;

    p = (u_char *) ngx_strchr(value[1].data, ':');

    if (p == NULL || p == value[1].data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid aigov_cache_zone \"%V\": use "
                           "\"name:size\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    name.data = value[1].data;
    name.len = p - value[1].data;

    s.data = p + 1;
    s.len = value[1].data + value[1].len - s.data;

    size = ngx_parse_size(&s);

    if (size == NGX_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid size \"%V\" in aigov_cache_zone \"%V\"",
                           &s, &value[1]);
        return NGX_CONF_ERROR;
    }

    if (size < (ssize_t) (8 * ngx_pagesize)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "aigov_cache_zone \"%V\" is too small: at least "
                           "%uzk", &value[1], 8 * ngx_pagesize / 1024);
        return NGX_CONF_ERROR;
    }

    max = ngx_min(1024 * 1024, size / 4);

    if (cf->args->nelts == 3) {
        if (ngx_strncmp(value[2].data, "max_entry=", 10) != 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"%V\" in "
                               "aigov_cache_zone", &value[2]);
            return NGX_CONF_ERROR;
        }

        s.data = value[2].data + 10;
        s.len = value[2].len - 10;

        max = ngx_parse_size(&s);

        if (max == NGX_ERROR || max < 1) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid \"%V\" in aigov_cache_zone: use a "
                               "size like 512k", &value[2]);
            return NGX_CONF_ERROR;
        }

        if (max > size / 2) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"%V\" in aigov_cache_zone \"%V\" is more "
                               "than half of the zone", &value[2],
                               &value[1]);
            return NGX_CONF_ERROR;
        }
    }

    zone = ngx_aigov_cache_get_zone(cf, &name);
    if (zone == NULL) {
        return NGX_CONF_ERROR;
    }

    if (zone->size) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "duplicate aigov_cache_zone \"%V\"", &name);
        return NGX_CONF_ERROR;
    }

    zone->size = size;
    zone->max_entry = max;

    zone->shm_zone = ngx_shared_memory_add(cf, &zone->name, size,
                                           &ngx_aigov_cache_module);
    if (zone->shm_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    if (zone->shm_zone->data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "aigov_cache_zone \"%V\" is already used", &name);
        return NGX_CONF_ERROR;
    }

    zone->shm_zone->init = ngx_aigov_cache_init_zone;
    zone->shm_zone->data = zone;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_aigov_cache_list(ngx_conf_t *cf, ngx_str_t *arg, ngx_str_t *s,
    ngx_array_t **out, ngx_uint_t headers)
{
    u_char              *p, *last, *comma;
    ngx_str_t            item, *t;
    ngx_aigov_header_t  *h;

    *out = ngx_array_create(cf->pool, 2,
                            headers ? sizeof(ngx_aigov_header_t)
                                    : sizeof(ngx_str_t));
    if (*out == NULL) {
        return NGX_ERROR;
    }

    p = s->data;
    last = s->data + s->len;

    for ( ;; ) {
        comma = ngx_strlchr(p, last, ',');

        item.data = p;
        item.len = (comma ? comma : last) - p;

        if (item.len == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "empty item in \"%V\" of \"aigov_cache\"",
                               arg);
            return NGX_ERROR;
        }

        if (headers) {
            h = ngx_array_push(*out);
            if (h == NULL) {
                return NGX_ERROR;
            }

            if (ngx_aigov_header_prepare(cf, &item, h) != NGX_OK) {
                return NGX_ERROR;
            }

        } else {
            if (ngx_strlchr(item.data, item.data + item.len, '/') == NULL) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid media type \"%V\" in \"%V\" of "
                                   "\"aigov_cache\": use type/subtype",
                                   &item, arg);
                return NGX_ERROR;
            }

            if (item.len == sizeof("text/event-stream") - 1
                && ngx_strncasecmp(item.data, (u_char *) "text/event-stream",
                                   item.len) == 0)
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "\"aigov_cache\" never stores streamed "
                                   "responses: remove text/event-stream "
                                   "from \"%V\"", arg);
                return NGX_ERROR;
            }

            t = ngx_array_push(*out);
            if (t == NULL) {
                return NGX_ERROR;
            }

            *t = item;
        }

        if (comma == NULL) {
            break;
        }

        p = comma + 1;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_aigov_cache_time(ngx_conf_t *cf, ngx_str_t *arg, size_t skip,
    ngx_uint_t zero, ngx_msec_t *out)
{
    ngx_str_t  s;
    ngx_int_t  t;

    s.data = arg->data + skip;
    s.len = arg->len - skip;

    t = ngx_parse_time(&s, 0);

    if (t == NGX_ERROR || (t == 0 && !zero)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid \"%V\" in \"aigov_cache\": use a time "
                           "like 60s%s", arg, zero ? " or 0" : "");
        return NGX_ERROR;
    }

    *out = (ngx_msec_t) t;

    return NGX_OK;
}


/*
 * aigov_cache off | zone=NAME [ttl=60s] [stale_if_error=0] [key_headers=..]
 *     [content_types=application/json] [redis=on|off] [redis_timeout=50ms]
 */

static char *
ngx_aigov_cache_directive(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_aigov_cache_loc_conf_t *ccf = conf;

    size_t       n;
    ngx_str_t   *value, s, *t;
    ngx_uint_t   i, k;

    static struct {
        const char  *name;
        size_t       offset;
        ngx_uint_t   zero;         /* 0 allowed */
    } times[] = {
        { "ttl=", offsetof(ngx_aigov_cache_loc_conf_t, ttl), 0 },
        { "stale_if_error=", offsetof(ngx_aigov_cache_loc_conf_t, stale), 1 },
        { "redis_timeout=",
          offsetof(ngx_aigov_cache_loc_conf_t, redis_timeout), 0 },
        { NULL, 0, 0 }
    };

    if (ccf->zone != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    ccf->file = cf->conf_file->file.name.data;
    ccf->line = cf->conf_file->line;
    ccf->in_location = (cf->cmd_type == NGX_HTTP_LOC_CONF);

    if (cf->args->nelts == 2 && ngx_strcmp(value[1].data, "off") == 0) {
        ccf->zone = NULL;
        return NGX_CONF_OK;
    }

    ccf->zone = NULL;
    ccf->ttl = 60000;
    ccf->stale = 0;
    ccf->redis = 0;
    ccf->redis_timeout = 50;

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "zone=", 5) == 0) {
            s.data = value[i].data + 5;
            s.len = value[i].len - 5;

            if (s.len == 0) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "empty zone name in \"aigov_cache\"");
                return NGX_CONF_ERROR;
            }

            ccf->zone = ngx_aigov_cache_get_zone(cf, &s);
            if (ccf->zone == NULL) {
                return NGX_CONF_ERROR;
            }

            continue;
        }

        for (k = 0; times[k].name; k++) {
            n = ngx_strlen(times[k].name);

            if (ngx_strncmp(value[i].data, times[k].name, n) == 0) {
                break;
            }
        }

        if (times[k].name) {
            if (ngx_aigov_cache_time(cf, &value[i], n, times[k].zero,
                                     (ngx_msec_t *) ((u_char *) ccf
                                                     + times[k].offset))
                != NGX_OK)
            {
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "key_headers=", 12) == 0) {
            s.data = value[i].data + 12;
            s.len = value[i].len - 12;

            if (ngx_aigov_cache_list(cf, &value[i], &s, &ccf->key_headers, 1)
                != NGX_OK)
            {
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "content_types=", 14) == 0) {
            s.data = value[i].data + 14;
            s.len = value[i].len - 14;

            if (ngx_aigov_cache_list(cf, &value[i], &s, &ccf->types, 0)
                != NGX_OK)
            {
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strcmp(value[i].data, "redis=on") == 0) {
            ccf->redis = 1;
            continue;
        }

        if (ngx_strcmp(value[i].data, "redis=off") == 0) {
            ccf->redis = 0;
            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\" in \"aigov_cache\"",
                           &value[i]);
        return NGX_CONF_ERROR;
    }

    if (ccf->zone == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"aigov_cache\" needs zone=NAME (or \"off\")");
        return NGX_CONF_ERROR;
    }

    if (ccf->types == NULL) {
        ccf->types = ngx_array_create(cf->pool, 1, sizeof(ngx_str_t));
        if (ccf->types == NULL) {
            return NGX_CONF_ERROR;
        }

        t = ngx_array_push(ccf->types);
        if (t == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_str_set(t, "application/json");
    }

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_aigov_cache_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_aigov_cache_zone_t *ozone = data;

    size_t                   len;
    uint32_t                 hash;
    ngx_uint_t               i;
    ngx_str_node_t          *sn;
    ngx_aigov_model_t      **m;
    ngx_aigov_cache_sh_t    *sh;
    ngx_aigov_cache_zone_t  *zone;
    ngx_aigov_cache_stats_t *st;

    zone = shm_zone->data;
    zone->shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (ozone) {
        zone->sh = ozone->sh;

    } else if (shm_zone->shm.exists) {
        zone->sh = zone->shpool->data;

    } else {
        sh = ngx_slab_calloc(zone->shpool, sizeof(ngx_aigov_cache_sh_t));
        if (sh == NULL) {
            return NGX_ERROR;
        }

        zone->shpool->data = sh;
        zone->sh = sh;

        ngx_rbtree_init(&sh->rbtree, &sh->sentinel,
                        ngx_rbtree_insert_value);
        ngx_queue_init(&sh->lru);
        ngx_rbtree_init(&sh->stats, &sh->stats_sentinel,
                        ngx_str_rbtree_insert_value);

        len = sizeof(" in aigov_cache_zone \"\"") + shm_zone->shm.name.len;

        zone->shpool->log_ctx = ngx_slab_alloc(zone->shpool, len);
        if (zone->shpool->log_ctx == NULL) {
            return NGX_ERROR;
        }

        ngx_sprintf(zone->shpool->log_ctx, " in aigov_cache_zone \"%V\"%Z",
                    &shm_zone->shm.name);

        /* an entry that does not fit is not an error worth a log line */
        zone->shpool->log_nomem = 0;
    }

    /* every model's counters, by model index; kept across reloads */

    if (zone->nmodels == 0) {
        return NGX_OK;
    }

    m = zone->amcf->models.elts;

    ngx_shmtx_lock(&zone->shpool->mutex);

    for (i = 0; i < zone->nmodels; i++) {
        hash = ngx_crc32_short(m[i]->name.data, m[i]->name.len);

        sn = ngx_str_rbtree_lookup(&zone->sh->stats, &m[i]->name, hash);

        if (sn) {
            zone->models[m[i]->index] = (ngx_aigov_cache_stats_t *) sn;
            continue;
        }

        st = ngx_slab_calloc_locked(zone->shpool,
                                    sizeof(ngx_aigov_cache_stats_t)
                                    + m[i]->name.len);
        if (st == NULL) {
            ngx_shmtx_unlock(&zone->shpool->mutex);
            ngx_log_error(NGX_LOG_EMERG, shm_zone->shm.log, 0,
                          "aigov_cache_zone \"%V\" is full: no room for the "
                          "counters of model \"%V\"", &zone->name,
                          &m[i]->name);
            return NGX_ERROR;
        }

        ngx_memcpy(st->name, m[i]->name.data, m[i]->name.len);
        st->sn.str.data = st->name;
        st->sn.str.len = m[i]->name.len;
        st->sn.node.key = hash;

        ngx_rbtree_insert(&zone->sh->stats, &st->sn.node);

        zone->models[m[i]->index] = st;
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    return NGX_OK;
}


static ngx_int_t
ngx_aigov_cache_preconfiguration(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var;

    static ngx_str_t  name = ngx_string("aigov_cache");

    var = ngx_http_add_variable(cf, &name, NGX_HTTP_VAR_NOCACHEABLE);
    if (var == NULL) {
        return NGX_ERROR;
    }

    var->get_handler = ngx_aigov_cache_variable;

    return NGX_OK;
}


static ngx_int_t
ngx_aigov_cache_postconfiguration(ngx_conf_t *cf)
{
    ngx_uint_t                    i;
    ngx_aigov_cache_zone_t      **zone;
    ngx_aigov_cache_main_conf_t  *cmcf;

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_aigov_cache_module);
    zone = cmcf->zones.elts;

    for (i = 0; i < cmcf->zones.nelts; i++) {
        if (zone[i]->size == 0) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "aigov_cache in %s:%ui names unknown zone \"%V\": "
                          "declare it with \"aigov_cache_zone %V:SIZE;\"",
                          zone[i]->file, zone[i]->line, &zone[i]->name,
                          &zone[i]->name);
            return NGX_ERROR;
        }

        /* the models are all known now; their counters attach at init */

        zone[i]->nmodels = zone[i]->amcf->models.nelts;

        if (zone[i]->nmodels) {
            zone[i]->models = ngx_pcalloc(cf->pool, zone[i]->nmodels
                                          * sizeof(ngx_aigov_cache_stats_t *));
            if (zone[i]->models == NULL) {
                return NGX_ERROR;
            }
        }
    }

    return NGX_OK;
}


static void *
ngx_aigov_cache_create_main_conf(ngx_conf_t *cf)
{
    ngx_aigov_cache_main_conf_t  *cmcf;

    cmcf = ngx_pcalloc(cf->pool, sizeof(ngx_aigov_cache_main_conf_t));
    if (cmcf == NULL) {
        return NULL;
    }

    if (ngx_array_init(&cmcf->zones, cf->pool, 2,
                       sizeof(ngx_aigov_cache_zone_t *))
        != NGX_OK)
    {
        return NULL;
    }

    return cmcf;
}


static void *
ngx_aigov_cache_create_loc_conf(ngx_conf_t *cf)
{
    ngx_aigov_cache_loc_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool, sizeof(ngx_aigov_cache_loc_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     conf->key_headers = NULL;
     *     conf->types = NULL;
     *     conf->in_location = 0;
     */

    conf->zone = NGX_CONF_UNSET_PTR;
    conf->bypass = NGX_CONF_UNSET_PTR;

    return conf;
}


static char *
ngx_aigov_cache_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_aigov_cache_loc_conf_t *prev = parent;
    ngx_aigov_cache_loc_conf_t *conf = child;

    ngx_http_aigov_loc_conf_t   *alcf;
    ngx_http_aigov_main_conf_t  *amcf;

    if (conf->zone == NGX_CONF_UNSET_PTR) {
        conf->zone = (prev->zone == NGX_CONF_UNSET_PTR) ? NULL : prev->zone;
        conf->ttl = prev->ttl;
        conf->stale = prev->stale;
        conf->key_headers = prev->key_headers;
        conf->types = prev->types;
        conf->redis = prev->redis;
        conf->redis_timeout = prev->redis_timeout;
        conf->file = prev->file;
        conf->line = prev->line;
    }

    ngx_conf_merge_ptr_value(conf->bypass, prev->bypass, NULL);

    if (conf->zone == NULL) {
        return NGX_CONF_OK;
    }

    alcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_aigov_module);

    if (conf->in_location && alcf->source == NGX_HTTP_AIGOV_SRC_NONE) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"aigov_cache\" in %s:%ui is in a location without "
                      "\"aigov_route\": nothing there to cache",
                      conf->file, conf->line);
        return NGX_CONF_ERROR;
    }

    amcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_aigov_module);

    if (conf->redis && amcf->redis == NULL) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"aigov_cache\" in %s:%ui has redis=on but there is "
                      "no \"aigov_redis\" in the http block",
                      conf->file, conf->line);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}
