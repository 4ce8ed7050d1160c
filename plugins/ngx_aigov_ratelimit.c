/*
 * ngx_aigov rate limit plugin: per-key limits on requests and LLM tokens,
 * local (GCRA in a shared zone) or fleet-global (sliding window counters in
 * Redis), with IETF RateLimit / RateLimit-Policy and OpenAI x-ratelimit-*
 * headers.  The math is in ngx_aigov_module/aigov_limit.c (see
 * include/aigov_limit.h for its exact semantics); this file is the nginx
 * side: directives, the shared zone, locking, the decision, the response
 * headers, reading the usage of responses, the Redis sync.
 *
 *   aigov_limit_zone  rl:10m;
 *
 *   location /v1/ {
 *       aigov_route  openai;
 *       aigov_limit  per-key zone=rl key=$http_x_api_key rate=10r/s burst=20;
 *       aigov_limit  tpm     zone=rl key=$http_x_api_key rate=100000t/m;
 *       aigov_limit  fleet   zone=rl key=$aigov_model rate=600r/m global;
 *       proxy_pass   http://$aigov_upstream;
 *   }
 *
 * A limit's state is a node keyed "NAME:KEY" in its zone (a hash table of
 * chains and an LRU queue): a GCRA for local limits, an aigov_window_t
 * for synced fleet limits; strict fleet limits keep theirs in Redis only.
 * All the limits of a request are checked under their zones' locks and
 * committed only when all allow, so that a request one limit refuses does
 * not use up the quota of another.
 */

#include <ngx_md5.h>

#include "ngx_http_aigov_module.h"
#include "ngx_http_aigov_redis.h"
#include "aigov_limit.h"


/* "5124095576h30m5.807s", the longest x-ratelimit-reset-* */
#define NGX_AIGOV_LIMIT_DURATION_LEN   48

#define NGX_AIGOV_LIMIT_LOCAL          0
#define NGX_AIGOV_LIMIT_SYNCED         1      /* global */
#define NGX_AIGOV_LIMIT_STRICT         2      /* global=strict */

/* $aigov_limit */
#define NGX_AIGOV_LIMIT_O_NONE         0
#define NGX_AIGOV_LIMIT_O_ALLOWED      1
#define NGX_AIGOV_LIMIT_O_FAILED_OPEN  2
#define NGX_AIGOV_LIMIT_O_DRY_RUN      3
#define NGX_AIGOV_LIMIT_O_UNAVAILABLE  4
#define NGX_AIGOV_LIMIT_O_REJECTED     5

/* request states */
#define NGX_AIGOV_LIMIT_S_NEW          0
#define NGX_AIGOV_LIMIT_S_WAITING      1      /* strict: INCRBY sent */
#define NGX_AIGOV_LIMIT_S_RESUMED      2
#define NGX_AIGOV_LIMIT_S_DONE         3

/* strict replies */
#define NGX_AIGOV_LIMIT_R_NONE         0
#define NGX_AIGOV_LIMIT_R_PENDING      1
#define NGX_AIGOV_LIMIT_R_OK           2
#define NGX_AIGOV_LIMIT_R_FAILED       3

/* reading the usage of the response */
#define NGX_AIGOV_LIMIT_U_NONE         0
#define NGX_AIGOV_LIMIT_U_JSON         1
#define NGX_AIGOV_LIMIT_U_SSE          2
#define NGX_AIGOV_LIMIT_U_DONE         3

/* longer key values are replaced by "#" and their MD5 */
#define NGX_AIGOV_LIMIT_KEY_MAX        256

#define NGX_AIGOV_LIMIT_SSE_EVENT_MAX  65536

/* "<prefix>rl:NAME:KEY:<window>" (a prefix is at most 64 bytes) */
#define NGX_AIGOV_LIMIT_RKEY_LEN                                            \
    (64 + sizeof("rl::") + AIGOV_LIMIT_NAME_MAX + 1 + NGX_AIGOV_LIMIT_KEY_MAX \
     + NGX_INT64_LEN)

/*
 * Keys sent to Redis per zone in one slice of a sync: a sync of many keys
 * goes in slices 1 ms apart, so that the worker serves requests between
 * them instead of stalling for the whole sync (and the replies come back
 * in small reads too).
 */
#define NGX_AIGOV_LIMIT_SYNC_BATCH     256

/* nodes an allocation may evict before it gives up */
#define NGX_AIGOV_LIMIT_EVICT_MAX      32

/* nodes one look at the LRU's tail may send back to its head (CLOCK):
   to evict one, and when a new node looks for idle ones to free first */
#define NGX_AIGOV_LIMIT_CLOCK_MAX      64
#define NGX_AIGOV_LIMIT_CLOCK_IDLE     4

/* a node unused this long with nothing owed may be freed (limit_req's 60s) */
#define NGX_AIGOV_LIMIT_IDLE_MS        60000

/* local limits of a zone with the same key= that share a node per key */
#define NGX_AIGOV_LIMIT_GROUP_MAX      4

/* a shared node's key: 0x01, crc32 of key= (4 bytes), the group's ordinal */
#define NGX_AIGOV_LIMIT_PREFIX_LEN     6

/* zone bytes per hash bucket: about one bucket per node */
#define NGX_AIGOV_LIMIT_BUCKET_BYTES   256


typedef struct ngx_aigov_limit_main_conf_s  ngx_aigov_limit_main_conf_t;


/* One key of a group of local limits, or one (synced limit, key). */
typedef struct ngx_aigov_limit_node_s  ngx_aigov_limit_node_t;

/*
 * The key follows the 64 bytes of the header, and the state follows the
 * key: finding a key and checking its limits touch the header's cache
 * line and the next one or two, instead of three lines with the state
 * between.  A local node's key is its group's prefix and the key, its
 * state the group's GCRA states (ngx_aigov_limit_local_t); a synced
 * node's key is "NAME:KEY", its state a window (80 bytes).
 */
struct ngx_aigov_limit_node_s {
    ngx_aigov_limit_node_t        *next;     /* in its hash bucket */
    uint32_t                       hash;     /* aigov_hash32() of data */
    uint32_t                       dirtied;  /* ngx_current_msec, queued */
    ngx_queue_t                    queue;    /* LRU (CLOCK), see _tail() */
    ngx_queue_t                    dirty;    /* synced nodes with deltas */
    ngx_msec_t                     used;
    uint32_t                       period;   /* ms, synced nodes */
    uint16_t                       len;
    uint8_t                        kind;     /* LOCAL or SYNCED */
    uint8_t                        is_dirty:1;
    uint8_t                        ref:1;    /* used since it was queued */
    u_char                         data[1];  /* "NAME:KEY", then the state */
};


/*
 * A local node holds the GCRA states of a group (ngx_aigov_limit_group_t):
 * the members' number and name hashes, then their states, in slot order.
 * One node per key for all of them: a request with two limits finds one
 * node, not two.  The names let a reload that changes the group move
 * each member's state to its new slot (ngx_aigov_limit_migrate()).
 */
typedef struct {
    uint32_t                       n;
    uint32_t                       names[1];
} ngx_aigov_limit_local_t;


typedef union {
    ngx_aigov_limit_local_t        local;    /* LOCAL */
    aigov_window_t                 window;   /* SYNCED */
} ngx_aigov_limit_state_t;


#define ngx_aigov_limit_state_off(len)                                        \
    ngx_align(offsetof(ngx_aigov_limit_node_t, data) + (len), 8)

#define ngx_aigov_limit_state(node)                                           \
    ((ngx_aigov_limit_state_t *) ((u_char *) (node)                           \
                                  + ngx_aigov_limit_state_off((node)->len)))

#define ngx_aigov_limit_gcra_off(n)     ngx_align(4 + 4 * (n), 8)

/* the state of size n's member in slot of a local node */
#define ngx_aigov_limit_gcra(node, n, slot)                                   \
    ((aigov_gcra_t *) ((u_char *) ngx_aigov_limit_state(node)                 \
                       + ngx_aigov_limit_gcra_off(n)) + (slot))

/* a local node's members, never more than a group holds */
#define ngx_aigov_limit_local_n(node)                                         \
    ngx_min(ngx_aigov_limit_state(node)->local.n, NGX_AIGOV_LIMIT_GROUP_MAX)

/* a node's bytes: n, a local node's members */
#define ngx_aigov_limit_node_size(len, kind, n)                               \
    (ngx_aigov_limit_state_off(len)                                           \
     + ((kind) == NGX_AIGOV_LIMIT_LOCAL                                       \
        ? ngx_aigov_limit_gcra_off(n) + (n) * sizeof(aigov_gcra_t)            \
        : sizeof(aigov_window_t)))


/* Counters of one limit, in its zone: they survive reloads. */
typedef struct {
    ngx_queue_t                    queue;
    ngx_atomic_t                   allowed;
    ngx_atomic_t                   rejected;
    ngx_atomic_t                   dry_run;      /* would have rejected */
    ngx_atomic_t                   unavailable;  /* 503, fail closed */
    ngx_atomic_t                   failed_open;
    ngx_atomic_t                   tokens;       /* from response usage */
    ngx_atomic_t                   no_usage;     /* kept the estimate */
    ngx_uint_t                     mode;         /* of the last reload */
    uint32_t                       epoch;        /* mode changes */
    size_t                         len;
    u_char                         name[AIGOV_LIMIT_NAME_MAX];
} ngx_aigov_limit_stats_t;


typedef struct {
    ngx_aigov_limit_node_t       **buckets;      /* hash & mask */
    ngx_uint_t                     mask;
    ngx_queue_t                    queue;        /* LRU */
    ngx_queue_t                    dirty;        /* synced, unsent deltas */
    ngx_queue_t                    policies;     /* ngx_aigov_limit_stats_t */
    ngx_atomic_t                   nodes;
    ngx_atomic_t                   evictions;    /* state lost: zone full */
    ngx_atomic_t                   expired;      /* idle, nothing lost */
    ngx_atomic_t                   no_memory;    /* not even by evicting */

    /* fleet sync, written by worker 0 */
    ngx_atomic_t                   redis_ok;
    ngx_atomic_t                   syncs;
    ngx_atomic_t                   sync_failures;
    uint64_t                       last_sync;    /* unix ms */
    time_t                         created;
} ngx_aigov_limit_shctx_t;


typedef struct {
    ngx_str_t                      name;
    ngx_uint_t                     index;
    ngx_shm_zone_t                *shm_zone;
    ngx_slab_pool_t               *shpool;
    ngx_aigov_limit_shctx_t       *sh;
    ngx_aigov_limit_node_t       **buckets;      /* sh->buckets, sh->mask: */
    ngx_uint_t                     mask;         /* no page of sh to read */
    ngx_aigov_limit_main_conf_t   *lmcf;
    ngx_uint_t                     declared;
    ngx_uint_t                     synced;       /* has synced limits */
    ngx_uint_t                     pinging;      /* worker 0 */
    ngx_uint_t                     sweeping;     /* worker 0: a sync under
                                                    way, in slices */
    ngx_msec_t                     sweep;        /* when it started */
} ngx_aigov_limit_zone_t;


/*
 * Local limits of one zone with the same key=, at most GROUP_MAX, in the
 * order they are defined: their states of a key are one node.
 */
typedef struct {
    ngx_aigov_limit_zone_t        *zone;
    ngx_str_t                      key_text;
    ngx_uint_t                     n;
    uint32_t                       names[NGX_AIGOV_LIMIT_GROUP_MAX];
    u_char                         prefix[NGX_AIGOV_LIMIT_PREFIX_LEN];
} ngx_aigov_limit_group_t;


typedef struct {
    ngx_str_t                      name;
    aigov_limit_spec_t             spec;
    ngx_str_t                      rate_text;
    ngx_str_t                      quota;        /* the rate, in decimal */
    ngx_aigov_limit_zone_t        *zone;
    ngx_str_t                      key_text;
    ngx_http_complex_value_t       key;
    ngx_aigov_header_t             key_header;   /* key=$http_NAME alone */
    ngx_uint_t                     mode;
    ngx_msec_t                     sync;
    ngx_msec_t                     redis_timeout;
    ngx_uint_t                     fail_closed;
    uint32_t                       estimate;     /* units taken up front */
    ngx_uint_t                     estimate_body; /* max_tokens of the body */
    ngx_flag_t                     dry_run;
    ngx_aigov_limit_stats_t       *stats;        /* in the zone */
    ngx_aigov_limit_group_t       *group;        /* local limits */
    ngx_uint_t                     slot;         /* in the group */
    ngx_msec_t                     next_sync;    /* worker 0 */
    ngx_uint_t                     draining;     /* worker 0: in the sweep */
    ngx_array_t                    models;       /* ngx_str_t, see status */
    ngx_uint_t                     any_model;
    u_char                        *file;
    ngx_uint_t                     line;
} ngx_aigov_limit_policy_t;


struct ngx_aigov_limit_main_conf_s {
    ngx_array_t                    zones;        /* ngx_aigov_limit_zone_t * */
    ngx_array_t                    policies;     /* ngx_aigov_limit_policy_t* */
    ngx_array_t                    groups;       /* ngx_aigov_limit_group_t* */
    ngx_msec_t                     sync;         /* shortest interval */
};


typedef struct {
    ngx_array_t                   *limits;       /* policy *; NULL: unset */
    ngx_array_t                   *zones;        /* zone *, by index */
    ngx_flag_t                     headers;
    ngx_uint_t                     status;
    ngx_flag_t                     dry_run;
    ngx_uint_t                     log_level;
    size_t                         buffer;
    ngx_uint_t                     strict;       /* a strict limit */
    ngx_uint_t                     body;         /* estimate=max_tokens */
    ngx_str_t                      policy;       /* RateLimit-Policy, all */
    ngx_aigov_limit_policy_t      *here;         /* first aigov_limit of a
                                                    location block */
    ngx_str_t                     *items;        /* RateLimit: ', "NAME";r=' */
    size_t                         items_len;    /* all of them */
} ngx_aigov_limit_loc_conf_t;


/* One limit applied to one request. */
typedef struct ngx_aigov_limit_ctx_s  ngx_aigov_limit_ctx_t;

typedef struct {
    ngx_aigov_limit_policy_t      *policy;
    ngx_aigov_limit_ctx_t         *ctx;
    ngx_str_t                      key;          /* "NAME:KEY", or the
                                                    group's prefix and KEY */
    uint32_t                       hash;
    uint32_t                       cost;
    aigov_limit_result_t           result;
    ngx_str_t                      digits;       /* remaining, in RateLimit */
    ngx_aigov_limit_node_t        *node;         /* valid under the lock */
    ngx_aigov_redis_cmd_t         *cmd;          /* strict: pending script */
    uint64_t                       count;        /* strict: window's count */
    uint64_t                       prev;         /* strict: previous one's */
    uint64_t                       window;       /* strict: window counted */
    uint64_t                       now;          /* strict: when sent */
    unsigned                       skip:1;       /* empty key */
    unsigned                       dry:1;
    unsigned                       committed:1;
    unsigned                       redis:2;      /* strict: R_* */
    unsigned                       admitted:1;   /* strict: Redis said yes */
    unsigned                       rejected:1;   /* refused (not dry) */
    unsigned                       dry_rejected:1;
    unsigned                       unavailable:1;
    unsigned                       failed_open:1;
} ngx_aigov_limit_item_t;


struct ngx_aigov_limit_ctx_s {
    ngx_http_request_t            *request;
    ngx_aigov_limit_loc_conf_t    *llcf;
    ngx_aigov_limit_item_t        *items;
    ngx_uint_t                     n;
    ngx_uint_t                     active;       /* items not skipped */
    ngx_uint_t                     state;
    ngx_uint_t                     outcome;
    ngx_aigov_limit_policy_t      *decider;      /* $aigov_limit_policy */
    ngx_uint_t                     pending;      /* strict replies */
    ngx_event_t                    wait;
    ngx_uint_t                     tokens;       /* token items committed */

    ngx_uint_t                     usage;        /* U_* */
    u_char                        *buf;
    size_t                         len;
    size_t                         size;
    aigov_limit_sse_t              sse;
    uint64_t                       used;         /* tokens from the usage */
    unsigned                       usage_found:1;
    unsigned                       headers_done:1;
};


/* A sync in flight: the key's deltas sent to Redis by worker 0. */
typedef struct {
    ngx_aigov_limit_zone_t        *zone;
    ngx_aigov_limit_policy_t      *policy;
    aigov_window_sync_t            msg;
    uint64_t                       global;
    uint64_t                       global_prev;
    uint64_t                       offered;
    uint32_t                       hash;
    ngx_uint_t                     pending;      /* replies to come */
    ngx_uint_t                     failed;
    size_t                         len;
    u_char                         data[1];
} ngx_aigov_limit_sync_t;


static ngx_int_t ngx_aigov_limit_enabled(void *loc_conf);
static ngx_int_t ngx_aigov_limit_needs_body(void *loc_conf);
static ngx_int_t ngx_aigov_limit_init_worker(ngx_cycle_t *cycle);
static ngx_int_t ngx_aigov_limit_decide(ngx_http_request_t *r,
    ngx_aigov_ctx_t *actx);
static ngx_int_t ngx_aigov_limit_header_filter(ngx_http_request_t *r,
    ngx_aigov_ctx_t *actx);
static ngx_int_t ngx_aigov_limit_body_filter(ngx_http_request_t *r,
    ngx_aigov_ctx_t *actx, ngx_chain_t *in);
static void ngx_aigov_limit_log(ngx_http_request_t *r, ngx_aigov_ctx_t *actx);
static ngx_int_t ngx_aigov_limit_status(ngx_aigov_model_t *model,
    void *conf, json_t *out);

static ngx_aigov_limit_ctx_t *ngx_aigov_limit_create_ctx(
    ngx_http_request_t *r, ngx_aigov_ctx_t *actx,
    ngx_aigov_limit_loc_conf_t *llcf);
static uint32_t ngx_aigov_limit_max_tokens(ngx_http_request_t *r,
    ngx_aigov_ctx_t *actx);
static ngx_int_t ngx_aigov_limit_run(ngx_http_request_t *r,
    ngx_aigov_limit_ctx_t *ctx, ngx_uint_t final);
static void ngx_aigov_limit_unlock(ngx_aigov_limit_ctx_t *ctx);
static ngx_int_t ngx_aigov_limit_finish(ngx_http_request_t *r,
    ngx_aigov_ctx_t *actx, ngx_aigov_limit_ctx_t *ctx);
static ngx_int_t ngx_aigov_limit_strict_send(ngx_http_request_t *r,
    ngx_aigov_limit_ctx_t *ctx);
static void ngx_aigov_limit_strict_reply(void *data, redisReply *reply);
static void ngx_aigov_limit_wake(ngx_event_t *ev);
static void ngx_aigov_limit_cleanup(void *data);
static void ngx_aigov_limit_strict_undo(ngx_aigov_limit_ctx_t *ctx);
static ngx_int_t ngx_aigov_limit_add_headers_allowed(ngx_http_request_t *r,
    ngx_aigov_limit_ctx_t *ctx);
static u_char *ngx_aigov_limit_uint(u_char *p, uint64_t v);
static void ngx_aigov_limit_drop_upstream(ngx_http_request_t *r);
static ngx_int_t ngx_aigov_limit_add_headers(ngx_http_request_t *r,
    ngx_aigov_limit_ctx_t *ctx, ngx_uint_t rejected);
static void ngx_aigov_limit_usage_feed(ngx_http_request_t *r,
    ngx_aigov_limit_ctx_t *ctx, u_char *p, size_t len);
static void ngx_aigov_limit_usage_end(ngx_http_request_t *r,
    ngx_aigov_limit_ctx_t *ctx);

static ngx_aigov_limit_node_t *ngx_aigov_limit_find(
    ngx_aigov_limit_zone_t *zone, ngx_str_t *key, uint32_t hash,
    ngx_uint_t kind, ngx_aigov_limit_group_t *group,
    ngx_aigov_limit_ctx_t *pin);
static ngx_aigov_limit_node_t *ngx_aigov_limit_migrate(
    ngx_aigov_limit_zone_t *zone, ngx_aigov_limit_node_t *old,
    ngx_str_t *key, uint32_t hash, ngx_aigov_limit_group_t *group,
    ngx_aigov_limit_ctx_t *pin);
static ngx_aigov_limit_node_t *ngx_aigov_limit_shared(
    ngx_aigov_limit_ctx_t *ctx, ngx_uint_t i);
static ngx_aigov_limit_node_t *ngx_aigov_limit_again(
    ngx_aigov_limit_item_t *it);
static ngx_inline ngx_uint_t ngx_aigov_limit_same_key(
    ngx_aigov_limit_node_t *node, ngx_str_t *key, uint32_t hash);
static ngx_inline ngx_uint_t ngx_aigov_limit_same_layout(
    ngx_aigov_limit_node_t *node, ngx_aigov_limit_group_t *group);
static ngx_aigov_limit_node_t *ngx_aigov_limit_lookup(
    ngx_aigov_limit_zone_t *zone, ngx_str_t *key, uint32_t hash);
static ngx_aigov_limit_node_t *ngx_aigov_limit_tail(
    ngx_aigov_limit_zone_t *zone, ngx_aigov_limit_ctx_t *pin, uint64_t now,
    uint64_t wall, ngx_uint_t max);
static void ngx_aigov_limit_unlink(ngx_aigov_limit_zone_t *zone,
    ngx_aigov_limit_node_t *node);
static void ngx_aigov_limit_free(ngx_aigov_limit_zone_t *zone,
    ngx_aigov_limit_node_t *node);
static void ngx_aigov_limit_release(ngx_aigov_limit_zone_t *zone,
    ngx_aigov_limit_node_t *node);
static ngx_aigov_limit_node_t *ngx_aigov_limit_create(
    ngx_aigov_limit_zone_t *zone, ngx_str_t *key, uint32_t hash,
    ngx_uint_t kind, ngx_aigov_limit_group_t *group,
    ngx_aigov_limit_ctx_t *pin);
static void ngx_aigov_limit_dirty(ngx_aigov_limit_zone_t *zone,
    ngx_aigov_limit_node_t *node);
static uint64_t ngx_aigov_limit_wall(void);

static void ngx_aigov_limit_sync_handler(ngx_event_t *ev);
static ngx_uint_t ngx_aigov_limit_sync_zone(ngx_aigov_limit_zone_t *zone,
    ngx_aigov_redis_t *rds);
static void ngx_aigov_limit_sync_prev(void *data, redisReply *reply);
static void ngx_aigov_limit_sync_window(void *data, redisReply *reply);
static void ngx_aigov_limit_sync_offered(void *data, redisReply *reply);
static void ngx_aigov_limit_sync_reply(ngx_aigov_limit_sync_t *s,
    redisReply *reply, uint64_t *v, uint64_t delta, uint64_t window);
static void ngx_aigov_limit_sync_expire(ngx_aigov_limit_sync_t *s,
    uint64_t window);
static void ngx_aigov_limit_sync_end(ngx_aigov_limit_sync_t *s);
static ngx_msec_t ngx_aigov_limit_ttl(aigov_limit_spec_t *spec);
static size_t ngx_aigov_limit_rkey(u_char *buf, u_char *key, size_t len,
    uint64_t window);
static void ngx_aigov_limit_ping_reply(void *data, redisReply *reply);
static ngx_int_t ngx_aigov_limit_incrby(ngx_aigov_redis_t *rds,
    ngx_str_t *key, uint64_t units, ngx_msec_t ttl,
    ngx_aigov_redis_handler_pt handler, void *data,
    ngx_aigov_redis_cmd_t **cmd, const char *op);
static ngx_str_t *ngx_aigov_limit_redis_prefix(void);
static ngx_int_t ngx_aigov_limit_window_send(ngx_aigov_redis_t *rds,
    u_char *key, size_t len, uint64_t window, uint64_t units, ngx_msec_t ttl,
    ngx_aigov_redis_handler_pt handler, void *data,
    ngx_aigov_redis_cmd_t **cmd, const char *op);

static ngx_int_t ngx_aigov_limit_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_aigov_limit_add_variables(ngx_conf_t *cf);

static char *ngx_aigov_limit_zone_directive(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_aigov_limit_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_aigov_limit_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static void *ngx_aigov_limit_create_main_conf(ngx_conf_t *cf);
static ngx_int_t ngx_aigov_limit_group(ngx_conf_t *cf,
    ngx_aigov_limit_main_conf_t *lmcf, ngx_aigov_limit_policy_t *p);
static char *ngx_aigov_limit_init_main_conf(ngx_conf_t *cf, void *conf);
static void *ngx_aigov_limit_create_loc_conf(ngx_conf_t *cf);
static char *ngx_aigov_limit_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);


static ngx_conf_enum_t  ngx_aigov_limit_log_levels[] = {
    { ngx_string("info"), NGX_LOG_INFO },
    { ngx_string("notice"), NGX_LOG_NOTICE },
    { ngx_string("warn"), NGX_LOG_WARN },
    { ngx_string("error"), NGX_LOG_ERR },
    { ngx_null_string, 0 }
};


static ngx_conf_num_bounds_t  ngx_aigov_limit_status_bounds = {
    ngx_conf_check_num_bounds, 400, 599
};


static ngx_command_t  ngx_aigov_limit_commands[] = {

    { ngx_string("aigov_limit_zone"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_aigov_limit_zone_directive,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("aigov_limit"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_aigov_limit_directive,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("aigov_limit_headers"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_aigov_limit_loc_conf_t, headers),
      NULL },

    { ngx_string("aigov_limit_status"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_aigov_limit_loc_conf_t, status),
      &ngx_aigov_limit_status_bounds },

    { ngx_string("aigov_limit_dry_run"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_aigov_limit_loc_conf_t, dry_run),
      NULL },

    { ngx_string("aigov_limit_log_level"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_aigov_limit_loc_conf_t, log_level),
      &ngx_aigov_limit_log_levels },

    { ngx_string("aigov_limit_response_buffer"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_aigov_limit_loc_conf_t, buffer),
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_aigov_ratelimit_module_ctx = {
    ngx_aigov_limit_add_variables,         /* preconfiguration */
    NULL,                                  /* postconfiguration */
    ngx_aigov_limit_create_main_conf,      /* create main configuration */
    ngx_aigov_limit_init_main_conf,        /* init main configuration */
    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */
    ngx_aigov_limit_create_loc_conf,       /* create location configuration */
    ngx_aigov_limit_merge_loc_conf         /* merge location configuration */
};


ngx_module_t  ngx_aigov_ratelimit_module = {
    NGX_MODULE_V1,
    &ngx_aigov_ratelimit_module_ctx,       /* module context */
    ngx_aigov_limit_commands,              /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL, NULL, NULL, NULL, NULL, NULL, NULL,
    NGX_MODULE_V1_PADDING
};


ngx_aigov_plugin_t  ngx_aigov_ratelimit_plugin = {
    NGX_AIGOV_ABI,
    "ratelimit",
    "1.0.0",
    NGX_AIGOV_PRIO_LIMIT,
    &ngx_aigov_ratelimit_module,           /* nginx module */
    NULL,                                  /* model directives */
    NULL,                                  /* create model conf */
    NULL,                                  /* init model conf */
    ngx_aigov_limit_enabled,
    ngx_aigov_limit_init_worker,
    ngx_aigov_limit_decide,
    ngx_aigov_limit_header_filter,
    ngx_aigov_limit_body_filter,
    ngx_aigov_limit_log,
    ngx_aigov_limit_status,
    0,
    ngx_aigov_limit_needs_body
};


static ngx_str_t  ngx_aigov_limit_outcomes[] = {
    ngx_null_string,
    ngx_string("allowed"),
    ngx_string("failed_open"),
    ngx_string("dry_run"),
    ngx_string("unavailable"),
    ngx_string("rejected")
};


static const char  *ngx_aigov_limit_modes[] = {
    "local", "global", "strict"
};


/* the response headers the limits set, replacing the upstream's */
static ngx_str_t  ngx_aigov_limit_header_names[] = {
    ngx_string("RateLimit-Policy"),
    ngx_string("RateLimit"),
    ngx_string("x-ratelimit-limit-requests"),
    ngx_string("x-ratelimit-remaining-requests"),
    ngx_string("x-ratelimit-reset-requests"),
    ngx_string("x-ratelimit-limit-tokens"),
    ngx_string("x-ratelimit-remaining-tokens"),
    ngx_string("x-ratelimit-reset-tokens"),
    ngx_null_string
};


static ngx_event_t   ngx_aigov_limit_sync_ev;


/* Hooks. */

static ngx_int_t
ngx_aigov_limit_enabled(void *loc_conf)
{
    ngx_aigov_limit_loc_conf_t  *llcf = loc_conf;

    return llcf->limits != NULL && llcf->limits->nelts > 0;
}


static ngx_int_t
ngx_aigov_limit_needs_body(void *loc_conf)
{
    ngx_aigov_limit_loc_conf_t  *llcf = loc_conf;

    return llcf->body;
}


NGX_AIGOV_HOT
static ngx_int_t
ngx_aigov_limit_decide(ngx_http_request_t *r, ngx_aigov_ctx_t *actx)
{
    ngx_int_t                    rc;
    ngx_aigov_limit_ctx_t       *ctx;
    ngx_aigov_limit_loc_conf_t  *llcf;

    ctx = ngx_aigov_plugin_ctx(actx, ngx_aigov_ratelimit_plugin);

    if (ctx == NULL) {
        llcf = ngx_http_get_module_loc_conf(r, ngx_aigov_ratelimit_module);

        ctx = ngx_aigov_limit_create_ctx(r, actx, llcf);
        if (ctx == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ngx_aigov_plugin_ctx(actx, ngx_aigov_ratelimit_plugin) = ctx;

        if (ctx->active == 0) {
            /* every key is empty: not limited, like limit_req */
            ctx->state = NGX_AIGOV_LIMIT_S_DONE;
            return NGX_DECLINED;
        }

        if (!llcf->strict) {
            ngx_aigov_limit_run(r, ctx, 1);
            return ngx_aigov_limit_finish(r, actx, ctx);
        }

        /*
         * Strict limits wait for Redis: check the local ones first, and
         * ask Redis only when they would let the request through.
         */

        rc = ngx_aigov_limit_run(r, ctx, 0);

        if (rc == NGX_DECLINED) {
            return ngx_aigov_limit_finish(r, actx, ctx);
        }

        rc = ngx_aigov_limit_strict_send(r, ctx);

        if (rc == NGX_AGAIN) {
            ctx->state = NGX_AIGOV_LIMIT_S_WAITING;
            return NGX_AGAIN;
        }

        if (rc == NGX_ERROR) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        /* nothing sent (Redis down): failed open or closed at once */
    }

    switch (ctx->state) {

    case NGX_AIGOV_LIMIT_S_DONE:
        return NGX_DECLINED;

    case NGX_AIGOV_LIMIT_S_WAITING:
        /* woken up by something else than our event: keep waiting */
        return NGX_AGAIN;

    default:
        break;
    }

    ngx_aigov_limit_run(r, ctx, 1);

    return ngx_aigov_limit_finish(r, actx, ctx);
}


static ngx_aigov_limit_ctx_t *
ngx_aigov_limit_create_ctx(ngx_http_request_t *r, ngx_aigov_ctx_t *actx,
    ngx_aigov_limit_loc_conf_t *llcf)
{
    u_char                     *p;
    ngx_str_t                   val, hval;
    ngx_uint_t                  i, j;
    ngx_md5_t                   md5;
    ngx_aigov_header_t         *kh;
    ngx_pool_cleanup_t         *cln;
    ngx_aigov_limit_ctx_t      *ctx;
    ngx_aigov_limit_item_t     *it;
    ngx_aigov_limit_policy_t  **lp;
    u_char                      digest[16];

    /* the items right after the context: one allocation */

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_aigov_limit_ctx_t)
                               + llcf->limits->nelts
                                 * sizeof(ngx_aigov_limit_item_t));
    if (ctx == NULL) {
        return NULL;
    }

    ctx->request = r;
    ctx->llcf = llcf;
    ctx->n = llcf->limits->nelts;
    ctx->items = (ngx_aigov_limit_item_t *) (ctx + 1);

    lp = llcf->limits->elts;
    kh = NULL;
    ngx_str_null(&hval);

    for (i = 0; i < ctx->n; i++) {
        it = &ctx->items[i];
        it->policy = lp[i];
        it->ctx = ctx;
        it->dry = lp[i]->dry_run || llcf->dry_run;
        it->cost = (lp[i]->spec.unit == AIGOV_LIMIT_TOKENS) ? lp[i]->estimate
                                                            : 1;

        if (lp[i]->estimate_body) {
            it->cost = ngx_aigov_limit_max_tokens(r, actx);
        }

        if (lp[i]->group) {
            /* a limit of the same group before: the same key, one node */

            for (j = 0; j < i; j++) {
                if (lp[j]->group == lp[i]->group) {
                    break;
                }
            }

            if (j < i) {
                it->key = ctx->items[j].key;
                it->hash = ctx->items[j].hash;
                it->skip = ctx->items[j].skip;
                ctx->active += !it->skip;
                continue;
            }
        }

        if (lp[i]->key_header.hash) {
            /* key=$http_NAME: nginx's header hash, not a variable lookup */

            if (kh == NULL
                || kh->lowcase.len != lp[i]->key_header.lowcase.len
                || ngx_strncmp(kh->lowcase.data, lp[i]->key_header.lowcase.data,
                               kh->lowcase.len) != 0)
            {
                /* not the header of the limit before (most often it is) */
                kh = &lp[i]->key_header;

                if (ngx_aigov_header_get(r, kh, &hval) != NGX_OK) {
                    ngx_str_null(&hval);
                }
            }

            val = hval;

        } else if (ngx_http_complex_value(r, &lp[i]->key, &val) != NGX_OK) {
            return NULL;
        }

        if (val.len == 0) {
            it->skip = 1;
            continue;
        }

        if (val.len > NGX_AIGOV_LIMIT_KEY_MAX) {
            /* the state of a key in the zone and in Redis stays small */
            ngx_md5_init(&md5);
            ngx_md5_update(&md5, val.data, val.len);
            ngx_md5_final(digest, &md5);

            val.data = ngx_pnalloc(r->pool, 33);
            if (val.data == NULL) {
                return NULL;
            }

            val.data[0] = '#';
            ngx_hex_dump(val.data + 1, digest, 16);
            val.len = 33;
        }

        /* a group's prefix and the key, or "NAME:KEY" */
        it->key.len = (lp[i]->group ? NGX_AIGOV_LIMIT_PREFIX_LEN
                                    : lp[i]->name.len + 1)
                      + val.len;
        it->key.data = ngx_pnalloc(r->pool, it->key.len);
        if (it->key.data == NULL) {
            return NULL;
        }

        if (lp[i]->group) {
            p = ngx_cpymem(it->key.data, lp[i]->group->prefix,
                           NGX_AIGOV_LIMIT_PREFIX_LEN);

        } else {
            p = ngx_cpymem(it->key.data, lp[i]->name.data, lp[i]->name.len);
            *p++ = ':';
        }

        ngx_memcpy(p, val.data, val.len);

        it->hash = aigov_hash32(it->key.data, it->key.len, 0);
        ctx->active++;

        /*
         * Among many keys the bucket is not in the CPU's caches: start
         * loading it while the rest of the context is made and the locks
         * are taken.  No lock is needed for a hint.
         */
        aigov_prefetch(&lp[i]->zone->buckets[it->hash & lp[i]->zone->mask]);
    }

    if (llcf->strict) {
        cln = ngx_pool_cleanup_add(r->pool, 0);
        if (cln == NULL) {
            return NULL;
        }

        cln->handler = ngx_aigov_limit_cleanup;
        cln->data = ctx;

        ctx->wait.handler = ngx_aigov_limit_wake;
        ctx->wait.data = ctx;
        ctx->wait.log = r->connection->log;
    }

    return ctx;
}


/*
 * estimate=max_tokens: what the request may use at most, from its body
 * (max_completion_tokens, max_output_tokens of the Responses API, or the
 * older max_tokens); 1 when it names none.
 */

static uint32_t
ngx_aigov_limit_max_tokens(ngx_http_request_t *r, ngx_aigov_ctx_t *actx)
{
    json_t      *doc, *v;
    json_int_t   n;
    ngx_uint_t   i;

    static const char  *fields[] = {
        "max_completion_tokens", "max_output_tokens", "max_tokens"
    };

    doc = ngx_aigov_body_json(r, actx);

    if (!json_is_object(doc)) {
        return 1;
    }

    for (i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        v = json_object_get(doc, fields[i]);

        if (json_is_integer(v)) {
            n = json_integer_value(v);

            if (n > 0) {
                return (n > (json_int_t) UINT32_MAX) ? UINT32_MAX
                                                     : (uint32_t) n;
            }
        }
    }

    return 1;
}


/*
 * Checks every limit of the request under the zones' locks.  final: this
 * is the decision (commit when all allow); else a first look before the
 * strict limits ask Redis, final only when it rejects.  Returns
 * NGX_DECLINED when the decision is made (ctx->outcome), NGX_OK when the
 * local limits allow and Redis is to be asked.
 */

NGX_AIGOV_HOT
static ngx_int_t
ngx_aigov_limit_run(ngx_http_request_t *r, ngx_aigov_limit_ctx_t *ctx,
    ngx_uint_t final)
{
    uint64_t                   now, wall, ns;
    ngx_uint_t                 i, rejected, dry, unavailable, failed_open;
    ngx_aigov_limit_zone_t   **zp;
    ngx_aigov_limit_item_t    *it;
    ngx_aigov_limit_policy_t  *p;
    aigov_gcra_t               gcra;
    aigov_window_t             window;

    now = (uint64_t) ngx_current_msec;
    wall = ngx_aigov_limit_wall();

    rejected = 0;
    dry = 0;
    unavailable = 0;
    failed_open = 0;

    zp = ctx->llcf->zones->elts;

    /* one lock per zone, always taken in the same order: no deadlock */
    for (i = 0; i < ctx->llcf->zones->nelts; i++) {
        ngx_shmtx_lock(&zp[i]->shpool->mutex);
    }

    for (i = 0; i < ctx->n; i++) {
        it = &ctx->items[i];

        if (it->skip) {
            continue;
        }

        p = it->policy;
        it->node = NULL;
        it->rejected = 0;
        it->dry_rejected = 0;
        it->unavailable = 0;
        it->failed_open = 0;

        switch (p->mode) {

        case NGX_AIGOV_LIMIT_LOCAL:
            it->node = ngx_aigov_limit_shared(ctx, i);

            if (it->node == NULL) {
                it->node = ngx_aigov_limit_find(p->zone, &it->key, it->hash,
                                                NGX_AIGOV_LIMIT_LOCAL,
                                                p->group, ctx);
            }

            if (it->node) {
                (void) aigov_gcra_check(ngx_aigov_limit_gcra(it->node,
                                                             p->group->n,
                                                             p->slot),
                                        &p->spec, now, it->cost, &it->result);

            } else {
                ngx_memzero(&gcra, sizeof(aigov_gcra_t));
                (void) aigov_gcra_check(&gcra, &p->spec, now, it->cost,
                                        &it->result);
            }

            break;

        case NGX_AIGOV_LIMIT_SYNCED:
            it->node = ngx_aigov_limit_find(p->zone, &it->key, it->hash,
                                            NGX_AIGOV_LIMIT_SYNCED, NULL, ctx);
            if (it->node) {
                (void) aigov_window_check(
                                      &ngx_aigov_limit_state(it->node)->window,
                                      &p->spec, wall, it->cost, &it->result);

            } else {
                ngx_memzero(&window, sizeof(aigov_window_t));
                (void) aigov_window_check(&window, &p->spec, wall, it->cost,
                                          &it->result);
            }

            if (!p->zone->sh->redis_ok) {
                if (p->fail_closed) {
                    it->unavailable = 1;

                } else {
                    it->failed_open = 1;
                }
            }

            break;

        default: /* NGX_AIGOV_LIMIT_STRICT */

            if (it->redis == NGX_AIGOV_LIMIT_R_OK) {
                (void) aigov_window_strict(&p->spec, it->now, it->count,
                                           it->prev, it->cost, it->admitted,
                                           &it->result);

            } else {
                /* not asked yet, or Redis failed: full as far as we know */
                (void) aigov_window_strict(&p->spec, wall, it->cost, 0,
                                           it->cost, 1, &it->result);

                if (it->redis == NGX_AIGOV_LIMIT_R_FAILED
                    || (final && it->redis == NGX_AIGOV_LIMIT_R_NONE))
                {
                    if (p->fail_closed) {
                        it->unavailable = 1;

                    } else {
                        it->failed_open = 1;
                    }
                }
            }

            break;
        }

        if (!it->result.allowed) {
            if (it->dry) {
                it->dry_rejected = 1;
                dry++;

            } else {
                it->rejected = 1;
                rejected++;
            }
        }

        if (it->unavailable) {
            if (it->dry) {
                it->unavailable = 0;
                it->failed_open = 1;
                dry++;

            } else {
                unavailable++;
            }
        }

        if (it->failed_open) {
            failed_open++;
        }
    }

    if (!final && rejected == 0 && unavailable == 0) {
        /* Redis has its say before anything is taken */
        ngx_aigov_limit_unlock(ctx);
        return NGX_OK;
    }

    ns = 0;

    for (i = 0; i < ctx->n; i++) {
        it = &ctx->items[i];
        p = it->policy;

        if (it->skip) {
            continue;
        }

        if (p->mode == NGX_AIGOV_LIMIT_SYNCED
            && (rejected == 0 || (rejected == 1 && it->rejected)))
        {
            /*
             * Demand for a fleet limit: the requests no other limit
             * refused.  Counted whatever this limit decides.
             */
            if (it->node == NULL) {
                it->node = ngx_aigov_limit_create(p->zone, &it->key, it->hash,
                                                  NGX_AIGOV_LIMIT_SYNCED, NULL,
                                                  ctx);
            }

            if (it->node) {
                it->node->period = p->spec.period_ms;
                aigov_window_offer(&ngx_aigov_limit_state(it->node)->window,
                                   &p->spec, wall, it->cost);
                ngx_aigov_limit_dirty(p->zone, it->node);
            }
        }

        if (rejected || unavailable) {
            /* nothing is taken: report what is left, not what would be */
            if (it->result.allowed && it->node) {
                if (p->mode == NGX_AIGOV_LIMIT_LOCAL) {
                    (void) aigov_gcra_check(
                                        ngx_aigov_limit_gcra(it->node,
                                                             p->group->n,
                                                             p->slot),
                                        &p->spec, now, 0, &it->result);

                } else if (p->mode == NGX_AIGOV_LIMIT_SYNCED) {
                    (void) aigov_window_check(
                                      &ngx_aigov_limit_state(it->node)->window,
                                      &p->spec, wall, 0, &it->result);
                }

            } else if (it->result.allowed) {
                it->result.remaining += it->cost;
            }

            continue;
        }

        if (!it->result.allowed || p->mode == NGX_AIGOV_LIMIT_STRICT) {
            /* a dry run's refusal takes nothing; Redis counted strict */
            it->committed = (p->mode == NGX_AIGOV_LIMIT_STRICT
                             && it->result.allowed);
            continue;
        }

        if (it->node == NULL && p->mode == NGX_AIGOV_LIMIT_LOCAL) {
            /* made for another limit of the group a moment ago? */
            it->node = ngx_aigov_limit_shared(ctx, i);
        }

        if (it->node == NULL) {
            it->node = ngx_aigov_limit_create(p->zone, &it->key, it->hash,
                                              p->mode, p->group, ctx);
            if (it->node == NULL) {
                /* not even by evicting: let it through, uncounted */
                continue;
            }
        }

        if (p->mode == NGX_AIGOV_LIMIT_LOCAL) {
            aigov_gcra_commit(ngx_aigov_limit_gcra(it->node, p->group->n,
                                                   p->slot),
                              &p->spec, now, it->cost);

        } else {
            aigov_window_commit(&ngx_aigov_limit_state(it->node)->window,
                                &p->spec, wall, it->cost);
            it->window = aigov_window_start(&p->spec, wall);
            ngx_aigov_limit_dirty(p->zone, it->node);
        }

        it->committed = 1;
        ns++;
    }

    ngx_aigov_limit_unlock(ctx);

    if (rejected) {
        ctx->outcome = NGX_AIGOV_LIMIT_O_REJECTED;

    } else if (unavailable) {
        ctx->outcome = NGX_AIGOV_LIMIT_O_UNAVAILABLE;

    } else if (dry) {
        ctx->outcome = NGX_AIGOV_LIMIT_O_DRY_RUN;

    } else if (failed_open) {
        ctx->outcome = NGX_AIGOV_LIMIT_O_FAILED_OPEN;

    } else {
        ctx->outcome = NGX_AIGOV_LIMIT_O_ALLOWED;
    }

    ctx->state = NGX_AIGOV_LIMIT_S_DONE;

    return NGX_DECLINED;
}


static void
ngx_aigov_limit_unlock(ngx_aigov_limit_ctx_t *ctx)
{
    ngx_uint_t                i;
    ngx_aigov_limit_zone_t  **zp;

    zp = ctx->llcf->zones->elts;

    for (i = ctx->llcf->zones->nelts; i > 0; i--) {
        ngx_shmtx_unlock(&zp[i - 1]->shpool->mutex);
    }
}


/* The decision is made: counters, log, the response when refused. */

NGX_AIGOV_HOT
static ngx_int_t
ngx_aigov_limit_finish(ngx_http_request_t *r, ngx_aigov_ctx_t *actx,
    ngx_aigov_limit_ctx_t *ctx)
{
    int                          k;
    time_t                       retry;
    u_char                      *buf;
    ngx_str_t                    detail;
    ngx_uint_t                   i, refused;
    aigov_limit_spec_t          *specs;
    aigov_limit_result_t        *results, *res;
    ngx_aigov_limit_item_t      *it, **map;
    ngx_aigov_limit_policy_t    *p;
    ngx_aigov_limit_loc_conf_t  *llcf;
    u_char                       dur[32];

    llcf = ctx->llcf;
    refused = (ctx->outcome == NGX_AIGOV_LIMIT_O_REJECTED);

    specs = NULL;
    results = NULL;
    map = NULL;

    if (refused || ctx->outcome == NGX_AIGOV_LIMIT_O_DRY_RUN) {
        specs = ngx_palloc(r->pool,
                           ctx->n * (sizeof(aigov_limit_spec_t)
                                     + sizeof(aigov_limit_result_t)
                                     + sizeof(ngx_aigov_limit_item_t *)));
        if (specs == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        results = (aigov_limit_result_t *) (specs + ctx->n);
        map = (ngx_aigov_limit_item_t **) (results + ctx->n);
    }

    k = 0;

    for (i = 0; i < ctx->n; i++) {
        it = &ctx->items[i];

        if (it->skip) {
            continue;
        }

        p = it->policy;

        if (it->rejected) {
            (void) ngx_atomic_fetch_add(&p->stats->rejected, 1);

        } else if (it->unavailable) {
            (void) ngx_atomic_fetch_add(&p->stats->unavailable, 1);

        } else if (it->dry_rejected) {
            (void) ngx_atomic_fetch_add(&p->stats->dry_run, 1);

        } else if (ctx->outcome != NGX_AIGOV_LIMIT_O_REJECTED
                   && ctx->outcome != NGX_AIGOV_LIMIT_O_UNAVAILABLE)
        {
            (void) ngx_atomic_fetch_add(&p->stats->allowed, 1);
        }

        if (it->failed_open && !it->unavailable) {
            (void) ngx_atomic_fetch_add(&p->stats->failed_open, 1);
        }

        if (it->committed && p->spec.unit == AIGOV_LIMIT_TOKENS) {
            ctx->tokens++;
        }

        if (specs && (it->rejected || (!refused && it->dry_rejected))) {
            specs[k] = p->spec;
            results[k] = it->result;
            map[k] = it;
            k++;
        }
    }

    if (k > 0) {
        /* the refusing limit that tells the client to wait the longest */
        k = aigov_limit_pick(specs, results, k, AIGOV_LIMIT_ANY);
        it = map[k];
        ctx->decider = it->policy;
        res = &it->result;

        if (res->status == AIGOV_LIMIT_NEVER) {
            ngx_log_error(llcf->log_level, r->connection->log, 0,
                          "aigov_limit \"%V\"%s: a request costs more than "
                          "it allows at once (%V, burst %uD)%s",
                          &it->policy->name,
                          refused ? " rejected the request"
                                  : " would reject the request",
                          &it->policy->rate_text, it->policy->spec.burst,
                          refused ? "" : ", dry run");

        } else {
            dur[aigov_limit_format_duration((char *) dur, sizeof(dur),
                                            res->retry_after_ms)] = '\0';

            ngx_log_error(llcf->log_level, r->connection->log, 0,
                          "aigov_limit \"%V\"%s: %V, %uL left, retry "
                          "after %s%s", &it->policy->name,
                          refused ? " rejected the request"
                                  : " would reject the request",
                          &it->policy->rate_text, res->remaining, dur,
                          refused ? "" : ", dry run");
        }
    }

    if (ctx->outcome == NGX_AIGOV_LIMIT_O_UNAVAILABLE) {
        for (i = 0; i < ctx->n; i++) {
            if (ctx->items[i].unavailable) {
                ctx->decider = ctx->items[i].policy;
                break;
            }
        }

        ngx_log_error(llcf->log_level, r->connection->log, 0,
                      "aigov_limit \"%V\" rejected the request: redis is "
                      "unavailable and on_redis_error=closed",
                      &ctx->decider->name);

        ngx_aigov_limit_strict_undo(ctx);

        ngx_str_set(&detail, "the fleet-wide rate limit cannot be checked "
                    "right now");

        return ngx_aigov_send_problem(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                      "rate-limit-unavailable",
                                      "Rate limit unavailable", &detail, 1);
    }

    if (!refused) {
        return NGX_DECLINED;
    }

    ngx_aigov_limit_strict_undo(ctx);

    res = &map[k]->result;
    p = map[k]->policy;

    buf = ngx_pnalloc(r->pool, 256 + p->name.len);
    if (buf == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    detail.data = buf;

    if (res->status == AIGOV_LIMIT_NEVER) {
        retry = 0;
        detail.len = ngx_sprintf(buf, "the request costs more than rate "
                                 "limit \"%V\" (%V) allows at once",
                                 &p->name, &p->rate_text)
                     - buf;

    } else {
        retry = (time_t) (res->retry_after_ms / 1000
                          + (res->retry_after_ms % 1000 != 0));
        retry = retry ? retry : 1;

        dur[aigov_limit_format_duration((char *) dur, sizeof(dur),
                                        res->retry_after_ms)] = '\0';

        detail.len = ngx_sprintf(buf, "rate limit \"%V\" (%V) exceeded, "
                                 "retry after %s", &p->name, &p->rate_text,
                                 dur)
                     - buf;
    }

    return ngx_aigov_send_problem(r, llcf->status, "rate-limited",
                                  "Too Many Requests", &detail, retry);
}


/*
 * Strict fleet limits: a script decides in Redis, atomically, with the
 * rule of aigov_window_admits(): C, the window's count, and P, the
 * previous window's; cost units are added to C (and its key's expiry
 * renewed) only when C + floor(P * left / period) + cost <= rate.  It
 * answers {admitted, C (with cost when admitted), P}.  KEYS: the window's
 * key, the previous window's; ARGV: cost, rate, left, period (ms), ttl.
 * (Lua's numbers are doubles: exact while P * left stays below 2^53.)
 */
static const char  ngx_aigov_limit_strict_lua[] =
    "local c = tonumber(redis.call('GET', KEYS[1]) or '0') or 0\n"
    "local p = tonumber(redis.call('GET', KEYS[2]) or '0') or 0\n"
    "if c < 0 then c = 0 end\n"
    "if p < 0 then p = 0 end\n"
    "local n = tonumber(ARGV[1])\n"
    "if c + math.floor(p * tonumber(ARGV[3]) / tonumber(ARGV[4])) + n\n"
    "   <= tonumber(ARGV[2]) then\n"
    "  c = redis.call('INCRBY', KEYS[1], n)\n"
    "  redis.call('PEXPIRE', KEYS[1], ARGV[5])\n"
    "  return {1, c, p}\n"
    "end\n"
    "return {0, c, p}\n";


static ngx_aigov_redis_cmd_t *
ngx_aigov_limit_strict_eval(ngx_aigov_redis_t *rds, ngx_aigov_limit_item_t *it)
{
    uint64_t                   period;
    ngx_uint_t                 i;
    const char                *argv[10];
    size_t                     argvlen[10];
    ngx_aigov_limit_policy_t  *pol;
    u_char                     cur[NGX_AIGOV_LIMIT_RKEY_LEN],
                               prev[NGX_AIGOV_LIMIT_RKEY_LEN],
                               num[5][NGX_INT64_LEN];

    pol = it->policy;
    period = pol->spec.period_ms;

    argv[0] = "EVAL";
    argv[1] = ngx_aigov_limit_strict_lua;
    argv[2] = "2";
    argv[3] = (const char *) cur;
    argvlen[3] = ngx_aigov_limit_rkey(cur, it->key.data, it->key.len,
                                      it->window);
    argv[4] = (const char *) prev;
    argvlen[4] = ngx_aigov_limit_rkey(prev, it->key.data, it->key.len,
                                      it->window - period);

    argvlen[5] = ngx_sprintf(num[0], "%uD", it->cost) - num[0];
    argvlen[6] = ngx_sprintf(num[1], "%uD", pol->spec.rate) - num[1];
    argvlen[7] = ngx_sprintf(num[2], "%uL", it->window + period - it->now)
                 - num[2];
    argvlen[8] = ngx_sprintf(num[3], "%uL", period) - num[3];
    argvlen[9] = ngx_sprintf(num[4], "%M", ngx_aigov_limit_ttl(&pol->spec))
                 - num[4];

    for (i = 0; i < 5; i++) {
        argv[5 + i] = (const char *) num[i];
    }

    argvlen[0] = 4;
    argvlen[1] = sizeof(ngx_aigov_limit_strict_lua) - 1;
    argvlen[2] = 1;

    /* the command is formatted at once: the buffers may live on the stack */
    return ngx_aigov_redis_send(rds, ngx_aigov_limit_strict_reply, it, 10,
                                argv, argvlen);
}


/* Strict fleet limits: ask Redis's script, wait for the answer. */

static ngx_int_t
ngx_aigov_limit_strict_send(ngx_http_request_t *r, ngx_aigov_limit_ctx_t *ctx)
{
    uint64_t                   wall;
    ngx_msec_t                 timeout;
    ngx_uint_t                 i;
    ngx_aigov_redis_t         *rds;
    ngx_aigov_limit_item_t    *it;
    ngx_aigov_limit_policy_t  *pol;

    rds = ngx_http_aigov_control_client();
    wall = ngx_aigov_limit_wall();
    timeout = NGX_MAX_INT32_VALUE;

    for (i = 0; i < ctx->n; i++) {
        it = &ctx->items[i];
        pol = it->policy;

        if (it->skip || pol->mode != NGX_AIGOV_LIMIT_STRICT) {
            continue;
        }

        it->now = wall;
        it->window = aigov_window_start(&pol->spec, wall);

        it->cmd = (rds != NULL) ? ngx_aigov_limit_strict_eval(rds, it)
                                : NULL;

        if (it->cmd == NULL) {
            it->redis = NGX_AIGOV_LIMIT_R_FAILED;
            continue;
        }

        it->redis = NGX_AIGOV_LIMIT_R_PENDING;
        ctx->pending++;
        timeout = ngx_min(timeout, pol->redis_timeout);
    }

    if (ctx->pending == 0) {
        return NGX_DECLINED;
    }

    /* the request waits: nothing but our event wakes it */
    r->read_event_handler = ngx_http_test_reading;
    r->write_event_handler = ngx_http_request_empty_handler;

    ngx_add_timer(&ctx->wait, timeout);

    return NGX_AGAIN;
}


static void
ngx_aigov_limit_strict_reply(void *data, redisReply *reply)
{
    ngx_aigov_limit_item_t *it = data;

    ngx_aigov_limit_ctx_t  *ctx;

    it->cmd = NULL;

    if (reply && reply->type == REDIS_REPLY_ARRAY && reply->elements == 3
        && reply->element[0]->type == REDIS_REPLY_INTEGER
        && reply->element[1]->type == REDIS_REPLY_INTEGER
        && reply->element[2]->type == REDIS_REPLY_INTEGER
        && reply->element[1]->integer >= 0
        && reply->element[2]->integer >= 0)
    {
        it->redis = NGX_AIGOV_LIMIT_R_OK;
        it->admitted = (reply->element[0]->integer == 1);
        it->count = (uint64_t) reply->element[1]->integer;
        it->prev = (uint64_t) reply->element[2]->integer;

    } else {
        it->redis = NGX_AIGOV_LIMIT_R_FAILED;

        if (reply && reply->type == REDIS_REPLY_ERROR) {
            ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                          "aigov_limit \"%V\": redis refused the strict "
                          "limit's script: %*s", &it->policy->name,
                          ngx_min(reply->len, 200), reply->str);
        }
    }

    ctx = it->ctx;

    if (--ctx->pending > 0) {
        return;
    }

    if (ctx->wait.timer_set) {
        ngx_del_timer(&ctx->wait);
    }

    ngx_post_event(&ctx->wait, &ngx_posted_events);
}


static void
ngx_aigov_limit_wake(ngx_event_t *ev)
{
    ngx_aigov_limit_ctx_t *ctx = ev->data;

    ngx_uint_t               i;
    ngx_connection_t        *c;
    ngx_http_request_t      *r;
    ngx_aigov_limit_item_t  *it;

    r = ctx->request;
    c = r->connection;

    if (ev->timedout) {
        ev->timedout = 0;

        for (i = 0; i < ctx->n; i++) {
            it = &ctx->items[i];

            if (it->redis == NGX_AIGOV_LIMIT_R_PENDING) {
                if (it->cmd) {
                    ngx_aigov_redis_cancel(it->cmd);
                    it->cmd = NULL;
                }

                it->redis = NGX_AIGOV_LIMIT_R_FAILED;

                ngx_log_error(NGX_LOG_INFO, c->log, 0,
                              "aigov_limit \"%V\": redis did not answer "
                              "within %Mms, failing %s", &it->policy->name,
                              it->policy->redis_timeout,
                              it->policy->fail_closed ? "closed" : "open");
            }
        }

        ctx->pending = 0;
    }

    ctx->state = NGX_AIGOV_LIMIT_S_RESUMED;

    ngx_http_set_log_request(c->log, r);

    r->read_event_handler = ngx_http_block_reading;
    r->write_event_handler = ngx_http_core_run_phases;

    ngx_http_core_run_phases(r);
    ngx_http_run_posted_requests(c);
}


static void
ngx_aigov_limit_cleanup(void *data)
{
    ngx_aigov_limit_ctx_t *ctx = data;

    ngx_uint_t  i;

    if (ctx->wait.timer_set) {
        ngx_del_timer(&ctx->wait);
    }

    if (ctx->wait.posted) {
        ngx_delete_posted_event(&ctx->wait);
    }

    for (i = 0; i < ctx->n; i++) {
        if (ctx->items[i].cmd) {
            ngx_aigov_redis_cancel(ctx->items[i].cmd);
            ctx->items[i].cmd = NULL;
        }
    }
}


/*
 * A request Redis counted for a strict limit was refused by another
 * limit: give the units back, so that it does not use the fleet's quota.
 */

static void
ngx_aigov_limit_strict_undo(ngx_aigov_limit_ctx_t *ctx)
{
    ngx_uint_t               i;
    ngx_aigov_redis_t       *rds;
    ngx_aigov_limit_item_t  *it;

    rds = ngx_http_aigov_control_client();
    if (rds == NULL) {
        return;
    }

    for (i = 0; i < ctx->n; i++) {
        it = &ctx->items[i];

        if (it->skip || it->redis != NGX_AIGOV_LIMIT_R_OK
            || !it->result.allowed)
        {
            continue;
        }

        (void) ngx_aigov_limit_window_send(rds, it->key.data, it->key.len,
                                           it->window, it->cost, 0, NULL,
                                           NULL, NULL, "DECRBY");
    }
}


/* Response headers. */

NGX_AIGOV_HOT
static ngx_int_t
ngx_aigov_limit_header_filter(ngx_http_request_t *r, ngx_aigov_ctx_t *actx)
{
    u_char                 *ct;
    size_t                  len;
    ngx_uint_t              rejected;
    ngx_aigov_limit_ctx_t  *ctx;

    ctx = ngx_aigov_plugin_ctx(actx, ngx_aigov_ratelimit_plugin);

    if (ctx == NULL || ctx->state != NGX_AIGOV_LIMIT_S_DONE
        || ctx->active == 0 || ctx->headers_done)
    {
        return NGX_OK;
    }

    ctx->headers_done = 1;

    if (ctx->outcome == NGX_AIGOV_LIMIT_O_UNAVAILABLE) {
        return NGX_OK;
    }

    rejected = (ctx->outcome == NGX_AIGOV_LIMIT_O_REJECTED);

    if ((rejected || ctx->llcf->headers)
        && ngx_aigov_limit_add_headers(r, ctx, rejected) != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (rejected || ctx->tokens == 0 || r->header_only) {
        return NGX_OK;
    }

    /* token limits: read the usage of the response as it goes by */

    if (r->headers_out.content_encoding
        && r->headers_out.content_encoding->hash
        && !(r->headers_out.content_encoding->value.len == 8
             && ngx_strncasecmp(r->headers_out.content_encoding->value.data,
                                (u_char *) "identity", 8) == 0))
    {
        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "aigov_limit: encoded response, usage not read");
        return NGX_OK;
    }

    ct = r->headers_out.content_type.data;
    len = r->headers_out.content_type.len;

    if (len >= sizeof("text/event-stream") - 1
        && ngx_strncasecmp(ct, (u_char *) "text/event-stream",
                           sizeof("text/event-stream") - 1) == 0)
    {
        ctx->size = ngx_min(ctx->llcf->buffer, NGX_AIGOV_LIMIT_SSE_EVENT_MAX);
        ctx->buf = ngx_pnalloc(r->pool, ctx->size);
        if (ctx->buf == NULL) {
            return NGX_ERROR;
        }

        aigov_limit_sse_init(&ctx->sse, (char *) ctx->buf, ctx->size);
        ctx->usage = NGX_AIGOV_LIMIT_U_SSE;
        return NGX_OK;
    }

    /* "application/json" ends with it: looked for there first */

    if ((len >= 4 && ngx_strncasecmp(ct + len - 4, (u_char *) "json", 4) == 0)
        || ngx_strlcasestrn(ct, ct + len, (u_char *) "json", 4 - 1) != NULL)
    {
        ctx->usage = NGX_AIGOV_LIMIT_U_JSON;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_aigov_limit_set_header(ngx_http_request_t *r, const char *name,
    size_t nlen, u_char *value, size_t vlen)
{
    ngx_str_t  n, v;

    n.data = (u_char *) name;
    n.len = nlen;
    v.data = value;
    v.len = vlen;

    return ngx_aigov_add_header(r, &n, &v);
}


/* the upstream's own limit headers would contradict ours */

NGX_AIGOV_HOT
static void
ngx_aigov_limit_drop_upstream(ngx_http_request_t *r)
{
    ngx_str_t        *hn;
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

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

        if (h[i].hash == 0 || h[i].key.len < 9
            || ((h[i].key.data[0] | 0x20) != 'r'
                && (h[i].key.data[0] | 0x20) != 'x'))
        {
            /* all of ours begin with "RateLimit" or "x-ratelimit-" */
            continue;
        }

        for (hn = ngx_aigov_limit_header_names; hn->len; hn++) {
            if (h[i].key.len == hn->len
                && ngx_strncasecmp(h[i].key.data, hn->data, hn->len) == 0)
            {
                h[i].hash = 0;
                break;
            }
        }
    }
}


/*
 * Every limit had a key and allows: the headers from pieces made at
 * configuration, the same bytes as aigov_limit_format_ratelimit() and
 * aigov_limit_format_openai() write (t/92-ratelimit.t checks both paths).
 */

static ngx_int_t
ngx_aigov_limit_add_headers_allowed(ngx_http_request_t *r,
    ngx_aigov_limit_ctx_t *ctx)
{
    u_char                      *buf, *p;
    uint64_t                     t;
    ngx_str_t                    value, *names;
    ngx_uint_t                   i, unit;
    ngx_aigov_limit_item_t      *it, *best[2];
    ngx_aigov_limit_loc_conf_t  *llcf;

    /* in the order of ngx_aigov_limit_header_names[] */
    names = ngx_aigov_limit_header_names;
    llcf = ctx->llcf;

    ngx_aigov_limit_drop_upstream(r);

    /* RateLimit: 2 numbers of at most 20 digits and ";t=" each */
    buf = ngx_pnalloc(r->pool, llcf->items_len + ctx->n * 43
                               + 2 * (20 + NGX_AIGOV_LIMIT_DURATION_LEN));
    if (buf == NULL) {
        return NGX_ERROR;
    }

    p = buf;
    best[0] = NULL;
    best[1] = NULL;

    for (i = 0; i < ctx->n; i++) {
        it = &ctx->items[i];

        p = ngx_cpymem(p, llcf->items[i].data, llcf->items[i].len);

        /* x-ratelimit-remaining-* below is the same digits */
        it->digits.data = p;
        p = ngx_aigov_limit_uint(p, it->result.remaining);
        it->digits.len = p - it->digits.data;

        t = it->result.reset_ms / 1000 + (it->result.reset_ms % 1000 != 0);
        p = ngx_cpymem(p, ";t=", 3);
        p = ngx_aigov_limit_uint(p, t);

        /* as aigov_limit_pick(): the first of the fewest remaining */
        unit = (it->policy->spec.unit == AIGOV_LIMIT_TOKENS);

        if (best[unit] == NULL
            || it->result.remaining < best[unit]->result.remaining)
        {
            best[unit] = it;
        }
    }

    if (ngx_aigov_add_header(r, &names[0], &llcf->policy) != NGX_OK) {
        return NGX_ERROR;
    }

    value.data = buf;
    value.len = p - buf;

    if (ngx_aigov_add_header(r, &names[1], &value) != NGX_OK) {
        return NGX_ERROR;
    }

    for (unit = 0; unit < 2; unit++) {
        it = best[unit];

        if (it == NULL) {
            continue;
        }

        if (ngx_aigov_add_header(r, &names[2 + 3 * unit], &it->policy->quota)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        if (ngx_aigov_add_header(r, &names[3 + 3 * unit], &it->digits)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        value.data = p;

        if (it->result.reset_ms < 1000) {
            /* what most are: "0s", "20ms" */
            if (it->result.reset_ms == 0) {
                p = ngx_cpymem(p, "0s", 2);

            } else {
                p = ngx_aigov_limit_uint(p, it->result.reset_ms);
                p = ngx_cpymem(p, "ms", 2);
            }

            value.len = p - value.data;

        } else {
            value.len = aigov_limit_format_duration((char *) p,
                                                  NGX_AIGOV_LIMIT_DURATION_LEN,
                                                  it->result.reset_ms);
            p += value.len;
        }

        if (value.len == 0
            || ngx_aigov_add_header(r, &names[4 + 3 * unit], &value)
               != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


NGX_AIGOV_HOT
static u_char *
ngx_aigov_limit_uint(u_char *p, uint64_t v)
{
    u_char    *e;
    uint64_t   t;

    static const char  pairs[201] =
        "00010203040506070809101112131415161718192021222324"
        "25262728293031323334353637383940414243444546474849"
        "50515253545556575859606162636465666768697071727374"
        "75767778798081828384858687888990919293949596979899";

    /* the digits counted first, then written from the last, two by two */

    for (e = p + 1, t = v; t >= 100; t /= 100) {
        e += 2;
    }

    e += (t >= 10);
    p = e;

    while (v >= 100) {
        t = (v % 100) * 2;
        v /= 100;
        *--e = pairs[t + 1];
        *--e = pairs[t];
    }

    if (v >= 10) {
        *--e = pairs[v * 2 + 1];
        *--e = pairs[v * 2];

    } else {
        *--e = (u_char) ('0' + v);
    }

    return p;
}


NGX_AIGOV_HOT
static ngx_int_t
ngx_aigov_limit_add_headers(ngx_http_request_t *r, ngx_aigov_limit_ctx_t *ctx,
    ngx_uint_t rejected)
{
    int                       k, unit;
    u_char                   *buf;
    size_t                    size, len;
    ngx_uint_t                i, j, n;
    aigov_limit_spec_t       *specs;
    aigov_limit_result_t     *results;
    aigov_limit_policy_t     *pol;
    aigov_limit_header_t      oh[3];
    ngx_aigov_limit_item_t   *it;

    n = ctx->active;

    if (!rejected && n == ctx->n) {
        for (i = 0; i < n; i++) {
            if (ctx->items[i].result.status != AIGOV_LIMIT_ALLOWED) {
                break;
            }
        }

        if (i == n) {
            /* the common case: every limit allows */
            return ngx_aigov_limit_add_headers_allowed(r, ctx);
        }
    }

    pol = ngx_palloc(r->pool, n * (sizeof(aigov_limit_policy_t)
                                   + sizeof(aigov_limit_spec_t)
                                   + sizeof(aigov_limit_result_t)));
    if (pol == NULL) {
        return NGX_ERROR;
    }

    specs = (aigov_limit_spec_t *) (pol + n);
    results = (aigov_limit_result_t *) (specs + n);

    j = 0;

    for (i = 0; i < ctx->n; i++) {
        it = &ctx->items[i];

        if (it->skip) {
            continue;
        }

        specs[j] = it->policy->spec;
        results[j] = it->result;
        pol[j].name.data = (const char *) it->policy->name.data;
        pol[j].name.len = it->policy->name.len;
        pol[j].spec = &specs[j];
        pol[j].result = &results[j];
        j++;
    }

    ngx_aigov_limit_drop_upstream(r);

    /* names: at most 64 bytes, escaped at most twice as long */
    size = n * (2 * AIGOV_LIMIT_NAME_MAX + 64) + 1;

    buf = ngx_pnalloc(r->pool, 2 * size + 3 * 64 * 2 + 64);
    if (buf == NULL) {
        return NGX_ERROR;
    }

    if (n == ctx->n) {
        /* every key had a value: the location's policies, formatted once */
        if (ngx_aigov_limit_set_header(r, "RateLimit-Policy", 16,
                                       ctx->llcf->policy.data,
                                       ctx->llcf->policy.len)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

    } else {
        len = aigov_limit_format_policy((char *) buf, size, pol, n);

        if (len
            && ngx_aigov_limit_set_header(r, "RateLimit-Policy", 16, buf, len)
               != NGX_OK)
        {
            return NGX_ERROR;
        }

        buf += len;
    }

    len = aigov_limit_format_ratelimit((char *) buf, size, pol, n);

    if (len && ngx_aigov_limit_set_header(r, "RateLimit", 9, buf, len)
               != NGX_OK)
    {
        return NGX_ERROR;
    }

    buf += len;

    for (unit = AIGOV_LIMIT_REQUESTS; unit <= AIGOV_LIMIT_TOKENS; unit++) {
        k = aigov_limit_pick(specs, results, n, unit);

        if (k < 0) {
            continue;
        }

        len = aigov_limit_format_openai((char *) buf, 64, &specs[k],
                                        &results[k], oh);
        if (len == 0) {
            continue;
        }

        for (j = 0; j < 3; j++) {
            if (ngx_aigov_limit_set_header(r, oh[j].name.data, oh[j].name.len,
                                           (u_char *) oh[j].value.data,
                                           oh[j].value.len)
                != NGX_OK)
            {
                return NGX_ERROR;
            }
        }

        buf += len + 1;
    }

    if (!rejected) {
        return NGX_OK;
    }

    k = aigov_limit_pick(specs, results, n, AIGOV_LIMIT_ANY);

    if (results[k].status == AIGOV_LIMIT_NEVER) {
        /* waiting does not help: the OpenAI SDKs stop retrying */
        return ngx_aigov_limit_set_header(r, "x-should-retry", 14,
                                          (u_char *) "false", 5);
    }

    len = aigov_limit_format_uint((char *) buf, 32,
                                  results[k].retry_after_ms
                                  ? results[k].retry_after_ms : 1);

    return ngx_aigov_limit_set_header(r, "retry-after-ms", 14, buf, len);
}


/* Token usage of the response, read as it goes by; nothing is changed. */

NGX_AIGOV_HOT
static ngx_int_t
ngx_aigov_limit_body_filter(ngx_http_request_t *r, ngx_aigov_ctx_t *actx,
    ngx_chain_t *in)
{
    ngx_buf_t              *b, *data;
    ngx_uint_t              last;
    ngx_chain_t            *cl;
    ngx_aigov_limit_ctx_t  *ctx;

    ctx = ngx_aigov_plugin_ctx(actx, ngx_aigov_ratelimit_plugin);

    if (ctx == NULL || ctx->usage == NGX_AIGOV_LIMIT_U_NONE
        || ctx->usage == NGX_AIGOV_LIMIT_U_DONE)
    {
        return NGX_OK;
    }

    if (ctx->usage == NGX_AIGOV_LIMIT_U_JSON && ctx->len == 0) {

        /*
         * The whole body in one buffer (a small answer, or as long as its
         * Content-Length): read it where it is, no copy.
         */

        data = NULL;
        last = 0;

        for (cl = in; cl; cl = cl->next) {
            b = cl->buf;

            if (ngx_buf_size(b) > 0) {
                if (data || !ngx_buf_in_memory(b)) {
                    break;
                }

                data = b;
            }

            last |= b->last_buf;
        }

        if (cl == NULL
            && (last
                || (data && r->headers_out.content_length_n
                            == data->last - data->pos)))
        {
            ctx->buf = data ? data->pos : NULL;
            ctx->len = data ? (size_t) (data->last - data->pos) : 0;

            if (ctx->len > ctx->llcf->buffer) {
                ctx->usage = NGX_AIGOV_LIMIT_U_DONE;
                return NGX_OK;
            }

            ngx_aigov_limit_usage_end(r, ctx);
            return NGX_OK;
        }
    }

    for (cl = in; cl; cl = cl->next) {
        b = cl->buf;

        if (ngx_buf_in_memory(b)) {
            ngx_aigov_limit_usage_feed(r, ctx, b->pos, b->last - b->pos);

        } else if (ngx_buf_size(b) > 0) {
            /* in a temporary file: too large to be worth reading */
            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          "aigov_limit: response body buffered to a file, "
                          "its usage is not read");
            ctx->usage = NGX_AIGOV_LIMIT_U_DONE;
            return NGX_OK;
        }

        if (ctx->usage == NGX_AIGOV_LIMIT_U_DONE) {
            return NGX_OK;
        }

        if (b->last_buf) {
            ngx_aigov_limit_usage_end(r, ctx);
            return NGX_OK;
        }
    }

    return NGX_OK;
}


static void
ngx_aigov_limit_usage_feed(ngx_http_request_t *r, ngx_aigov_limit_ctx_t *ctx,
    u_char *p, size_t len)
{
    u_char  *nb;
    size_t   size;

    if (len == 0) {
        return;
    }

    if (ctx->usage == NGX_AIGOV_LIMIT_U_SSE) {
        aigov_limit_sse_feed(&ctx->sse, (const char *) p, len);
        return;
    }

    if (ctx->len + len > ctx->llcf->buffer) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "aigov_limit: response body larger than "
                      "aigov_limit_response_buffer %uz, its usage is not "
                      "read", ctx->llcf->buffer);
        ctx->usage = NGX_AIGOV_LIMIT_U_DONE;
        return;
    }

    if (ctx->len + len > ctx->size) {
        if (ctx->size == 0 && r->headers_out.content_length_n > 0) {
            /* the length is known: one allocation */
            size = (size_t) ngx_min(r->headers_out.content_length_n,
                                    (off_t) ctx->llcf->buffer);

        } else {
            size = ngx_max(ctx->size * 2, 1024);
        }

        size = ngx_max(size, ctx->len + len);
        size = ngx_min(size, ctx->llcf->buffer);

        nb = ngx_pnalloc(r->pool, size);
        if (nb == NULL) {
            ctx->usage = NGX_AIGOV_LIMIT_U_DONE;
            return;
        }

        if (ctx->len) {
            ngx_memcpy(nb, ctx->buf, ctx->len);
        }

        ctx->buf = nb;
        ctx->size = size;
    }

    ngx_memcpy(ctx->buf + ctx->len, p, len);
    ctx->len += len;
}


static void
ngx_aigov_limit_usage_end(ngx_http_request_t *r, ngx_aigov_limit_ctx_t *ctx)
{
    int       rc;
    uint64_t  total;

    if (ctx->usage == NGX_AIGOV_LIMIT_U_SSE) {
        aigov_limit_sse_finish(&ctx->sse);
        rc = aigov_limit_sse_usage(&ctx->sse, &total);

    } else {
        rc = aigov_limit_usage_fast((const char *) ctx->buf, ctx->len,
                                    &total);
    }

    ctx->usage = NGX_AIGOV_LIMIT_U_DONE;

    if (rc == AIGOV_OK) {
        ctx->used = total;
        ctx->usage_found = 1;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "aigov_limit: usage %i, %uL tokens", rc,
                   ctx->usage_found ? ctx->used : 0);
}


/* Log phase: token limits charge what the response used. */

NGX_AIGOV_HOT
static void
ngx_aigov_limit_log(ngx_http_request_t *r, ngx_aigov_ctx_t *actx)
{
    uint64_t                   now, wall, sent;
    ngx_uint_t                 i;
    ngx_aigov_redis_t         *rds;
    ngx_aigov_limit_ctx_t     *ctx;
    ngx_aigov_limit_item_t    *it;
    ngx_aigov_limit_node_t    *node;
    ngx_aigov_limit_policy_t  *pol;

    ctx = ngx_aigov_plugin_ctx(actx, ngx_aigov_ratelimit_plugin);

    if (ctx == NULL || ctx->tokens == 0) {
        return;
    }

    if (ctx->usage != NGX_AIGOV_LIMIT_U_DONE
        && ctx->usage != NGX_AIGOV_LIMIT_U_NONE)
    {
        /* the body ended without a last buffer (client gone) */
        ngx_aigov_limit_usage_end(r, ctx);
    }

    now = (uint64_t) ngx_current_msec;
    wall = ngx_aigov_limit_wall();

    for (i = 0; i < ctx->n; i++) {
        it = &ctx->items[i];
        pol = it->policy;

        if (!it->committed || pol->spec.unit != AIGOV_LIMIT_TOKENS) {
            continue;
        }

        if (!ctx->usage_found) {
            /* the estimate stays charged */
            (void) ngx_atomic_fetch_add(&pol->stats->no_usage, 1);
            continue;
        }

        (void) ngx_atomic_fetch_add(&pol->stats->tokens, ctx->used);

        if (ctx->used == it->cost) {
            continue;
        }

        if (pol->mode == NGX_AIGOV_LIMIT_STRICT) {
            if (ctx->used < it->cost
                && wall >= it->window + 2 * (uint64_t) pol->spec.period_ms)
            {
                /* the estimate's window no longer counts: nothing back */
                continue;
            }

            rds = ngx_http_aigov_control_client();
            if (rds == NULL) {
                continue;
            }

            if (ctx->used > it->cost) {
                /* a debt, in the current window */
                (void) ngx_aigov_limit_window_send(rds, it->key.data,
                                           it->key.len,
                                           aigov_window_start(&pol->spec, wall),
                                           ctx->used - it->cost,
                                           ngx_aigov_limit_ttl(&pol->spec),
                                           NULL, NULL, NULL, "INCRBY");

            } else {
                /* an over-estimate, back to the window it was taken from */
                (void) ngx_aigov_limit_window_send(rds, it->key.data,
                                           it->key.len, it->window,
                                           it->cost - ctx->used,
                                           ngx_aigov_limit_ttl(&pol->spec),
                                           NULL, NULL, NULL, "DECRBY");
            }

            continue;
        }

        sent = 0;

        ngx_shmtx_lock(&pol->zone->shpool->mutex);

        node = ngx_aigov_limit_again(it);

        if (node == NULL) {
            node = ngx_aigov_limit_find(pol->zone, &it->key, it->hash,
                                        pol->mode, pol->group, NULL);
        }

        if (node == NULL) {
            /* evicted meanwhile: a full bucket, which is what it held */
            node = ngx_aigov_limit_create(pol->zone, &it->key, it->hash,
                                          pol->mode, pol->group, NULL);
        }

        if (node && pol->mode == NGX_AIGOV_LIMIT_LOCAL) {
            aigov_gcra_settle(ngx_aigov_limit_gcra(node, pol->group->n,
                                                   pol->slot),
                              &pol->spec, now, it->cost, ctx->used);

        } else if (node && ctx->used > it->cost) {
            node->period = pol->spec.period_ms;
            aigov_window_charge(&ngx_aigov_limit_state(node)->window,
                                &pol->spec, wall, ctx->used - it->cost);
            ngx_aigov_limit_dirty(pol->zone, node);

        } else if (node) {
            /* an over-estimate: what was sent already goes back below */
            sent = aigov_window_refund(&ngx_aigov_limit_state(node)->window,
                                       &pol->spec, wall, it->window,
                                       it->cost - ctx->used);
        }

        ngx_shmtx_unlock(&pol->zone->shpool->mutex);

        if (sent) {
            rds = ngx_http_aigov_control_client();
            if (rds == NULL) {
                /* the fleet's count keeps the estimate */
                continue;
            }

            (void) ngx_aigov_limit_window_send(rds, it->key.data, it->key.len,
                                               it->window, sent,
                                               ngx_aigov_limit_ttl(&pol->spec),
                                               NULL, NULL, NULL, "DECRBY");
        }
    }
}


/* The zone. */

static uint64_t
ngx_aigov_limit_wall(void)
{
    ngx_time_t  *tp;

    tp = ngx_timeofday();

    return (uint64_t) tp->sec * 1000 + tp->msec;
}


/*
 * A window's key in Redis counts until the next window ends (it is then
 * the previous window of the estimate): two periods from the window's
 * start, and a minute for clocks that differ between the nodes.
 */
static ngx_msec_t
ngx_aigov_limit_ttl(aigov_limit_spec_t *spec)
{
    return 2 * (ngx_msec_t) spec->period_ms + 60000;
}


/*
 * Finds the node of a key, of that kind, and marks it recently used.  A
 * node of the other kind is freed: its state means nothing now, and its
 * size may not hold the other state.  A local node of another layout of
 * the group (a reload added or removed one of its limits) is migrated.
 * Under the lock.
 */

NGX_AIGOV_HOT
static ngx_aigov_limit_node_t *
ngx_aigov_limit_find(ngx_aigov_limit_zone_t *zone, ngx_str_t *key,
    uint32_t hash, ngx_uint_t kind, ngx_aigov_limit_group_t *group,
    ngx_aigov_limit_ctx_t *pin)
{
    ngx_aigov_limit_node_t  *ln;

    ln = ngx_aigov_limit_lookup(zone, key, hash);

    if (ln == NULL) {
        return NULL;
    }

    if (ln->kind != kind) {
        ngx_aigov_limit_free(zone, ln);
        return NULL;
    }

    if (kind == NGX_AIGOV_LIMIT_LOCAL
        && !ngx_aigov_limit_same_layout(ln, group))
    {
        return ngx_aigov_limit_migrate(zone, ln, key, hash, group, pin);
    }

    return ln;
}


/* a node of key */

static ngx_inline ngx_uint_t
ngx_aigov_limit_same_key(ngx_aigov_limit_node_t *node, ngx_str_t *key,
    uint32_t hash)
{
    return node->hash == hash && node->len == key->len
           && ngx_memcmp(node->data, key->data, key->len) == 0;
}


/* a local node laid out for group's limits as they are now */

static ngx_inline ngx_uint_t
ngx_aigov_limit_same_layout(ngx_aigov_limit_node_t *node,
    ngx_aigov_limit_group_t *group)
{
    ngx_aigov_limit_local_t  *local;

    local = &ngx_aigov_limit_state(node)->local;

    return local->n == group->n
           && ngx_memcmp(local->names, group->names, group->n * 4) == 0;
}


/*
 * The node the decision found for an item, if it is still that key's node
 * (in the same layout): the log phase then needs no second lookup.  A
 * freed node has len 0 (ngx_aigov_limit_release()); a chunk made
 * another node holds another key.  The zone stays mapped, so reading a
 * node that is gone is safe.  Under the lock.
 */

static ngx_aigov_limit_node_t *
ngx_aigov_limit_again(ngx_aigov_limit_item_t *it)
{
    ngx_aigov_limit_node_t    *node;
    ngx_aigov_limit_policy_t  *p;

    node = it->node;
    p = it->policy;

    if (node == NULL
        || node->kind != p->mode
        || !ngx_aigov_limit_same_key(node, &it->key, it->hash)
        || (p->mode == NGX_AIGOV_LIMIT_LOCAL
            && !ngx_aigov_limit_same_layout(node, p->group)))
    {
        return NULL;
    }

    node->ref = 1;
    node->used = ngx_current_msec;

    return node;
}


/*
 * A local node of another layout: a new node in the group's layout, with
 * the state of each limit that was in the old one (by name and epoch), a
 * fresh state for the others.  Under the lock.
 */

static ngx_aigov_limit_node_t *
ngx_aigov_limit_migrate(ngx_aigov_limit_zone_t *zone,
    ngx_aigov_limit_node_t *old, ngx_str_t *key, uint32_t hash,
    ngx_aigov_limit_group_t *group, ngx_aigov_limit_ctx_t *pin)
{
    ngx_uint_t                i, j, n;
    ngx_aigov_limit_node_t   *node;
    ngx_aigov_limit_local_t  *from;

    /* out of the table first: making the new one cannot evict it */
    ngx_aigov_limit_unlink(zone, old);

    node = ngx_aigov_limit_create(zone, key, hash, NGX_AIGOV_LIMIT_LOCAL,
                                  group, pin);

    if (node) {
        from = &ngx_aigov_limit_state(old)->local;
        n = ngx_aigov_limit_local_n(old);

        for (j = 0; j < group->n; j++) {
            for (i = 0; i < n; i++) {
                if (from->names[i] == group->names[j]) {
                    *ngx_aigov_limit_gcra(node, group->n, j) =
                                   *ngx_aigov_limit_gcra(old, n, i);
                    break;
                }
            }
        }
    }

    ngx_aigov_limit_release(zone, old);

    return node;
}


/*
 * The node an item of the same group before this one found or made in
 * this request: the same key, so the same node.
 */

NGX_AIGOV_HOT
static ngx_aigov_limit_node_t *
ngx_aigov_limit_shared(ngx_aigov_limit_ctx_t *ctx, ngx_uint_t i)
{
    ngx_uint_t                 j;
    ngx_aigov_limit_group_t   *group;

    group = ctx->items[i].policy->group;

    for (j = 0; j < i; j++) {
        if (ctx->items[j].policy->group == group && ctx->items[j].node) {
            return ctx->items[j].node;
        }
    }

    return NULL;
}


/*
 * Finds a node and marks it used.  Under the lock.  The LRU is a CLOCK:
 * a lookup only sets the node's ref bit, and ngx_aigov_limit_tail() moves
 * a node found with it back to the head.  Moving the node itself on every
 * lookup wrote to its two neighbours in the queue and to the queue's head:
 * three more cache lines per limit and request, two of them anywhere in
 * the zone.
 */

NGX_AIGOV_HOT
static ngx_aigov_limit_node_t *
ngx_aigov_limit_lookup(ngx_aigov_limit_zone_t *zone, ngx_str_t *key,
    uint32_t hash)
{
    ngx_aigov_limit_node_t  *ln;

    for (ln = zone->buckets[hash & zone->mask]; ln; ln = ln->next) {

        /*
         * The key and the state come after the header, in the node's
         * second cache line: load it with the first, not after it.
         */
        aigov_prefetch(ln->data);

        if (ngx_aigov_limit_same_key(ln, key, hash)) {
            ln->ref = 1;
            ln->used = ngx_current_msec;

            return ln;
        }
    }

    return NULL;
}


/* Takes a node out of the zone's table and queues; its memory stays. */

static void
ngx_aigov_limit_unlink(ngx_aigov_limit_zone_t *zone,
    ngx_aigov_limit_node_t *node)
{
    ngx_aigov_limit_node_t  **pp;

    ngx_queue_remove(&node->queue);

    if (node->is_dirty) {
        ngx_queue_remove(&node->dirty);
    }

    for (pp = &zone->buckets[node->hash & zone->mask];
         *pp != node;
         pp = &(*pp)->next)
    { /* void */ }

    *pp = node->next;

    zone->sh->nodes--;
}


static void
ngx_aigov_limit_free(ngx_aigov_limit_zone_t *zone,
    ngx_aigov_limit_node_t *node)
{
    ngx_aigov_limit_unlink(zone, node);
    ngx_aigov_limit_release(zone, node);
}


/* The memory of an unlinked node; len 0 tells ngx_aigov_limit_again(). */

static void
ngx_aigov_limit_release(ngx_aigov_limit_zone_t *zone,
    ngx_aigov_limit_node_t *node)
{
    node->len = 0;
    ngx_slab_free_locked(zone->shpool, node);
}


/*
 * A node whose state is the same as no node (a full bucket, or a fleet
 * window that is over with nothing left to send) and that nobody used for
 * a minute.  Kept until then, as limit_req keeps its nodes: a key that
 * comes back finds its node instead of making a new one each time.
 */

static ngx_uint_t
ngx_aigov_limit_idle(ngx_aigov_limit_node_t *node, uint64_t now,
    uint64_t wall)
{
    uint32_t  i, n;

    if ((ngx_msec_int_t) (ngx_current_msec - node->used)
        <= NGX_AIGOV_LIMIT_IDLE_MS)
    {
        return 0;
    }

    if (node->kind == NGX_AIGOV_LIMIT_LOCAL) {
        n = ngx_aigov_limit_local_n(node);

        for (i = 0; i < n; i++) {
            if (ngx_aigov_limit_gcra(node, n, i)->tat > now * 1000000) {
                return 0;
            }
        }

        return 1;
    }

    /* the window and the next one are over: nothing counts any longer */
    return !node->is_dirty && ngx_aigov_limit_state(node)->window.inflight == 0
           && ngx_aigov_limit_state(node)->window.prev_inflight == 0
           && ngx_aigov_limit_state(node)->window.window + 2 * node->period
              <= wall;
}


static ngx_uint_t
ngx_aigov_limit_pinned(ngx_aigov_limit_node_t *node,
    ngx_aigov_limit_ctx_t *pin)
{
    ngx_uint_t  i;

    if (pin == NULL) {
        return 0;
    }

    for (i = 0; i < pin->n; i++) {
        if (pin->items[i].node == node) {
            return 1;
        }
    }

    return 0;
}


/*
 * The node to free first, none of pin's: looking from the LRU's tail, an
 * idle node at once (nothing is lost); a node used since it was queued
 * goes back to the head with its ref bit cleared, its second chance, at
 * most max of them; then the tail, whatever its bit.  So a key used
 * again before the CLOCK comes round to it keeps its state however many
 * new keys come through (t/92-ratelimit.t floods a small zone).  NULL:
 * every node is pin's.
 */

static ngx_aigov_limit_node_t *
ngx_aigov_limit_tail(ngx_aigov_limit_zone_t *zone, ngx_aigov_limit_ctx_t *pin,
    uint64_t now, uint64_t wall, ngx_uint_t max)
{
    ngx_uint_t               n, pass;
    ngx_queue_t             *q, *prev, *head;
    ngx_aigov_limit_node_t  *node;

    head = &zone->sh->queue;
    n = 0;

    /* a second pass finds the nodes the first one sent to the head */

    for (pass = 0; pass < 2; pass++) {

        for (q = ngx_queue_last(head);
             q != ngx_queue_sentinel(head);
             q = prev)
        {
            prev = ngx_queue_prev(q);
            node = ngx_queue_data(q, ngx_aigov_limit_node_t, queue);

            if (ngx_aigov_limit_pinned(node, pin)) {
                continue;
            }

            if (node->ref && n < max
                && !ngx_aigov_limit_idle(node, now, wall))
            {
                node->ref = 0;
                ngx_queue_remove(q);
                ngx_queue_insert_head(head, q);
                n++;
                continue;
            }

            return node;
        }

        if (n == 0) {
            break;
        }
    }

    return NULL;
}


/* the slab's chunk for an allocation of size (at most a half page) */

static size_t
ngx_aigov_limit_chunk(size_t size)
{
    size_t  chunk;

    for (chunk = 8; chunk < size; chunk <<= 1) { /* void */ }

    return chunk;
}


/*
 * Creates a node (a fresh state).  Frees up to two idle nodes on the way,
 * like limit_req; when the zone is full, evicts the least recently used
 * nodes, except those of the request being decided (pin).  Under the lock.
 */

static ngx_aigov_limit_node_t *
ngx_aigov_limit_create(ngx_aigov_limit_zone_t *zone, ngx_str_t *key,
    uint32_t hash, ngx_uint_t kind, ngx_aigov_limit_group_t *group,
    ngx_aigov_limit_ctx_t *pin)
{
    size_t                   size;
    uint32_t                 n;
    uint64_t                 now, wall;
    ngx_uint_t               i, tries;
    ngx_aigov_limit_node_t  *node, *old;

    now = (uint64_t) ngx_current_msec;
    wall = ngx_aigov_limit_wall();

    n = (kind == NGX_AIGOV_LIMIT_LOCAL) ? group->n : 0;
    size = ngx_aigov_limit_node_size(key->len, kind, n);
    node = NULL;

    for (i = 0; i < 2; i++) {
        old = ngx_aigov_limit_tail(zone, pin, now, wall,
                                   NGX_AIGOV_LIMIT_CLOCK_IDLE);

        if (old == NULL || !ngx_aigov_limit_idle(old, now, wall)) {
            break;
        }

        if (node == NULL
            && ngx_aigov_limit_chunk(ngx_aigov_limit_node_size(old->len,
                                         old->kind,
                                         old->kind == NGX_AIGOV_LIMIT_LOCAL
                                         ? ngx_aigov_limit_local_n(old) : 0))
               == ngx_aigov_limit_chunk(size))
        {
            /* in the slab's chunk of the new one's size: reused */
            ngx_aigov_limit_unlink(zone, old);
            node = old;

        } else {
            ngx_aigov_limit_free(zone, old);
        }

        zone->sh->expired++;
    }

    if (node) {
        ngx_memzero(node, size);

    } else {
        node = ngx_slab_calloc_locked(zone->shpool, size);
    }

    for (tries = 0; node == NULL && tries < NGX_AIGOV_LIMIT_EVICT_MAX; tries++)
    {
        old = ngx_aigov_limit_tail(zone, pin, now, wall,
                                   NGX_AIGOV_LIMIT_CLOCK_MAX);
        if (old == NULL) {
            break;
        }

        if (ngx_aigov_limit_idle(old, now, wall)) {
            zone->sh->expired++;

        } else {
            zone->sh->evictions++;
        }

        ngx_aigov_limit_free(zone, old);

        node = ngx_slab_calloc_locked(zone->shpool, size);
    }

    if (node == NULL) {
        zone->sh->no_memory++;
        return NULL;
    }

    node->hash = hash;
    node->len = (uint16_t) key->len;
    node->kind = (uint8_t) kind;
    node->used = ngx_current_msec;
    ngx_memcpy(node->data, key->data, key->len);

    if (kind == NGX_AIGOV_LIMIT_LOCAL) {
        ngx_aigov_limit_state(node)->local.n = n;
        ngx_memcpy(ngx_aigov_limit_state(node)->local.names, group->names,
                   n * 4);
    }

    node->next = zone->buckets[hash & zone->mask];
    zone->buckets[hash & zone->mask] = node;
    ngx_queue_insert_head(&zone->sh->queue, &node->queue);

    zone->sh->nodes++;

    return node;
}


static void
ngx_aigov_limit_dirty(ngx_aigov_limit_zone_t *zone,
    ngx_aigov_limit_node_t *node)
{
    if (!node->is_dirty) {
        node->is_dirty = 1;
        node->dirtied = (uint32_t) ngx_current_msec;
        ngx_queue_insert_tail(&zone->sh->dirty, &node->dirty);
    }
}


/* Fleet sync: worker 0 sends the deltas of synced limits to Redis. */

static ngx_int_t
ngx_aigov_limit_init_worker(ngx_cycle_t *cycle)
{
    ngx_aigov_limit_main_conf_t  *lmcf;

    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    lmcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_aigov_ratelimit_module);

    if (lmcf == NULL || lmcf->sync == 0 || ngx_worker != 0) {
        return NGX_OK;
    }

    ngx_aigov_limit_sync_ev.handler = ngx_aigov_limit_sync_handler;
    ngx_aigov_limit_sync_ev.data = lmcf;
    ngx_aigov_limit_sync_ev.log = cycle->log;
    ngx_aigov_limit_sync_ev.cancelable = 1;

    ngx_add_timer(&ngx_aigov_limit_sync_ev, lmcf->sync);

    return NGX_OK;
}


static ngx_str_t *
ngx_aigov_limit_redis_prefix(void)
{
    ngx_http_aigov_main_conf_t  *mcf;

    static ngx_str_t  none = ngx_string("aigov:");

    mcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                              ngx_http_aigov_module);

    return (mcf && mcf->redis) ? &mcf->redis->prefix : &none;
}


static void
ngx_aigov_limit_sync_handler(ngx_event_t *ev)
{
    ngx_aigov_limit_main_conf_t *lmcf = ev->data;

    ngx_msec_t                 now;
    ngx_uint_t                 i, j, due, more;
    ngx_aigov_redis_t         *rds;
    ngx_aigov_limit_zone_t   **zp;
    ngx_aigov_limit_policy_t **pp;

    rds = ngx_http_aigov_control_client();
    now = ngx_current_msec;
    zp = lmcf->zones.elts;
    pp = lmcf->policies.elts;
    more = 0;

    for (i = 0; i < lmcf->zones.nelts; i++) {
        if (!zp[i]->synced || zp[i]->sh == NULL) {
            continue;
        }

        if (!zp[i]->sweeping) {
            /* a new sweep: the zone's limits whose interval is over */
            due = 0;

            for (j = 0; j < lmcf->policies.nelts; j++) {
                if (pp[j]->zone == zp[i]
                    && pp[j]->mode == NGX_AIGOV_LIMIT_SYNCED
                    && (ngx_msec_int_t) (now - pp[j]->next_sync) >= 0)
                {
                    pp[j]->next_sync = now + pp[j]->sync;
                    pp[j]->draining = 1;
                    due = 1;
                }
            }

            if (!due) {
                continue;
            }

            zp[i]->sweep = now;
        }

        if (rds == NULL || !rds->ready) {
            zp[i]->sh->redis_ok = 0;
            zp[i]->sweeping = 0;

        } else {
            zp[i]->sweeping = ngx_aigov_limit_sync_zone(zp[i], rds);
        }

        if (zp[i]->sweeping) {
            more = 1;
            continue;
        }

        for (j = 0; j < lmcf->policies.nelts; j++) {
            if (pp[j]->zone == zp[i]) {
                pp[j]->draining = 0;
            }
        }
    }

    if (!ngx_exiting && !ngx_terminate && !ngx_quit) {
        ngx_add_timer(ev, more ? 1 : lmcf->sync);
    }
}


static ngx_aigov_limit_policy_t *
ngx_aigov_limit_node_policy(ngx_aigov_limit_zone_t *zone,
    ngx_aigov_limit_node_t *node)
{
    size_t                      len;
    u_char                     *colon;
    ngx_uint_t                  i;
    ngx_aigov_limit_policy_t  **pp;

    colon = ngx_strlchr(node->data, node->data + node->len, ':');
    if (colon == NULL) {
        return NULL;
    }

    len = colon - node->data;
    pp = zone->lmcf->policies.elts;

    for (i = 0; i < zone->lmcf->policies.nelts; i++) {
        if (pp[i]->zone == zone && pp[i]->name.len == len
            && ngx_strncmp(pp[i]->name.data, node->data, len) == 0)
        {
            return pp[i];
        }
    }

    return NULL;
}


/*
 * One slice of a zone's sweep: the dirty nodes of the draining limits that
 * were dirty when the sweep started (the queue is in the order they became
 * dirty; nodes dirtied since wait for the next sweep), at most
 * NGX_AIGOV_LIMIT_SYNC_BATCH of them.  Returns 1 when some may be left.
 */
static ngx_uint_t
ngx_aigov_limit_sync_zone(ngx_aigov_limit_zone_t *zone,
    ngx_aigov_redis_t *rds)
{
    int32_t                     d;
    uint64_t                    wall;
    ngx_str_t                   key;
    ngx_uint_t                  n, i, sent;
    ngx_queue_t                *q, *next;
    ngx_aigov_limit_node_t     *node;
    ngx_aigov_limit_sync_t     *s, **batch;
    ngx_aigov_limit_policy_t   *pol;
    aigov_window_sync_t         msg;
    const char                 *argv[1];
    size_t                      argvlen[1];
    u_char                      buf[NGX_AIGOV_LIMIT_RKEY_LEN];

    wall = ngx_aigov_limit_wall();

    batch = ngx_alloc(NGX_AIGOV_LIMIT_SYNC_BATCH * sizeof(void *),
                      ngx_cycle->log);
    if (batch == NULL) {
        return 0;
    }

    n = 0;

    ngx_shmtx_lock(&zone->shpool->mutex);

    for (q = ngx_queue_head(&zone->sh->dirty);
         q != ngx_queue_sentinel(&zone->sh->dirty)
         && n < NGX_AIGOV_LIMIT_SYNC_BATCH;
         q = next)
    {
        next = ngx_queue_next(q);
        node = ngx_queue_data(q, ngx_aigov_limit_node_t, dirty);

        d = (int32_t) (node->dirtied - (uint32_t) zone->sweep);

        if (d > 0 && d < 3600000) {
            /*
             * Dirtied after the sweep started, and so is the rest of the
             * queue.  (A stamp more than an hour "later" is an old one
             * wrapped around: 2^32 ms is 49 days.)
             */
            break;
        }

        pol = ngx_aigov_limit_node_policy(zone, node);

        if (pol == NULL || pol->mode != NGX_AIGOV_LIMIT_SYNCED
            || node->kind != NGX_AIGOV_LIMIT_SYNCED)
        {
            /* the limit is gone or no longer synced (reload) */
            ngx_queue_remove(q);
            node->is_dirty = 0;
            continue;
        }

        if (!pol->draining) {
            /* another limit of the zone, whose interval is not over */
            continue;
        }

        s = ngx_alloc(offsetof(ngx_aigov_limit_sync_t, data) + node->len,
                      ngx_cycle->log);
        if (s == NULL) {
            break;
        }

        aigov_window_sync_begin(&ngx_aigov_limit_state(node)->window,
                                &pol->spec, wall, &msg);

        ngx_queue_remove(q);
        node->is_dirty = 0;

        s->zone = zone;
        s->policy = pol;
        s->msg = msg;
        s->global = 0;
        s->global_prev = 0;
        s->offered = 0;
        s->pending = 0;
        s->failed = 0;
        s->hash = node->hash;
        s->len = node->len;
        ngx_memcpy(s->data, node->data, node->len);

        batch[n++] = s;
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    sent = 0;

    /*
     * Pipelined, the replies come in this order; the last one ends the
     * sync (ngx_aigov_limit_sync_end()).  A command that cannot be sent
     * (no connection) fails the sync: its deltas go back.
     */
    for (i = 0; i < n; i++) {
        s = batch[i];

        /* the previous window: INCRBY our unsent units, else only GET */
        if (s->msg.prev) {
            if (ngx_aigov_limit_window_send(rds, s->data, s->len,
                                    s->msg.window - s->policy->spec.period_ms,
                                    s->msg.prev_admitted, 0,
                                    ngx_aigov_limit_sync_prev, s, NULL,
                                    s->msg.prev_admitted ? "INCRBY" : "GET")
                == NGX_OK)
            {
                s->pending++;

            } else {
                s->failed = 1;
            }
        }

        if (!s->failed) {
            if (ngx_aigov_limit_window_send(rds, s->data, s->len,
                                            s->msg.window, s->msg.admitted,
                                            s->msg.fresh
                                            ? ngx_aigov_limit_ttl(
                                                          &s->policy->spec)
                                            : 0,
                                            ngx_aigov_limit_sync_window, s,
                                            NULL, "INCRBY")
                == NGX_OK)
            {
                s->pending++;

            } else {
                s->failed = 1;
            }
        }

        if (!s->failed) {
            key.data = buf;
            key.len = ngx_aigov_limit_rkey(buf, s->data, s->len, 0);

            if (ngx_aigov_limit_incrby(rds, &key, s->msg.offered,
                                       s->msg.fresh
                                       ? ngx_aigov_limit_ttl(&s->policy->spec)
                                       : 0,
                                       ngx_aigov_limit_sync_offered, s, NULL,
                                       "INCRBY")
                == NGX_OK)
            {
                s->pending++;

            } else {
                s->failed = 1;
            }
        }

        if (s->pending == 0) {
            ngx_aigov_limit_sync_end(s);
            continue;
        }

        sent++;
    }

    ngx_free(batch);

    if (sent == 0 && !zone->pinging) {
        /* nothing to send: still check that Redis answers */
        argv[0] = "PING";
        argvlen[0] = 4;

        if (ngx_aigov_redis_send(rds, ngx_aigov_limit_ping_reply, zone, 1,
                                 argv, argvlen)
            != NULL)
        {
            zone->pinging = 1;
        }
    }

    /* a full slice: more may wait */
    return n == NGX_AIGOV_LIMIT_SYNC_BATCH;
}


static void
ngx_aigov_limit_ping_reply(void *data, redisReply *reply)
{
    ngx_aigov_limit_zone_t *zone = data;

    zone->pinging = 0;

    if (reply == NULL && (ngx_exiting || ngx_quit || ngx_terminate)) {
        /* our connection closes with the worker: Redis is fine */
        return;
    }

    zone->sh->redis_ok = (reply != NULL && reply->type != REDIS_REPLY_ERROR);
}


/* One reply of a sync: the integer in *v, or the sync fails. */

static void
ngx_aigov_limit_sync_reply(ngx_aigov_limit_sync_t *s, redisReply *reply,
    uint64_t *v, uint64_t delta, uint64_t window)
{
    off_t  n;

    if (reply && reply->type == REDIS_REPLY_NIL) {
        /* GET: nobody counted anything in that window */
        *v = 0;

    } else if (reply && reply->type == REDIS_REPLY_STRING) {
        /* GET: a count; below 0 after refunds is none */
        n = (reply->len > 0 && reply->str[0] == '-')
            ? 0 : ngx_atoof((u_char *) reply->str, reply->len);

        if (n == NGX_ERROR) {
            s->failed = 1;

        } else {
            *v = (uint64_t) n;
        }

    } else if (reply == NULL || reply->type != REDIS_REPLY_INTEGER
               || reply->integer < 0)
    {
        if (reply && reply->type == REDIS_REPLY_ERROR) {
            ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                          "aigov_limit \"%V\": redis refused a sync "
                          "command: %*s",
                          &s->policy->name, ngx_min(reply->len, 200),
                          reply->str);
        }

        s->failed = 1;

    } else {
        *v = (uint64_t) reply->integer;

        if (*v == delta) {
            /* our INCRBY made the key (or it was at 0): give it its TTL */
            ngx_aigov_limit_sync_expire(s, window);
        }
    }

    if (--s->pending == 0) {
        ngx_aigov_limit_sync_end(s);
    }
}


/*
 * PEXPIRE of a key of the sync: a window's (window != 0), else the offered
 * counter.  Only a node's first sync in a window sends its INCRBYs with a
 * PEXPIRE (msg.fresh); the others send it only when their INCRBY made the
 * key (the reply is the delta: a new key, or one Redis lost and the
 * INCRBY recreated): half the commands of a sync.
 */
static void
ngx_aigov_limit_sync_expire(ngx_aigov_limit_sync_t *s, uint64_t window)
{
    u_char              t[NGX_INT64_LEN], buf[NGX_AIGOV_LIMIT_RKEY_LEN];
    const char         *argv[3];
    size_t              argvlen[3];
    ngx_aigov_redis_t  *rds;

    rds = ngx_http_aigov_control_client();
    if (rds == NULL) {
        return;
    }

    argv[0] = "PEXPIRE";
    argvlen[0] = 7;
    argv[1] = (const char *) buf;
    argvlen[1] = ngx_aigov_limit_rkey(buf, s->data, s->len, window);
    argv[2] = (const char *) t;
    argvlen[2] = ngx_sprintf(t, "%M", ngx_aigov_limit_ttl(&s->policy->spec))
                 - t;

    (void) ngx_aigov_redis_send(rds, NULL, NULL, 3, argv, argvlen);
}


static void
ngx_aigov_limit_sync_prev(void *data, redisReply *reply)
{
    ngx_aigov_limit_sync_t *s = data;

    /* a GET (nothing unsent) makes no key: delta never matches */
    ngx_aigov_limit_sync_reply(s, reply, &s->global_prev,
                               s->msg.prev_admitted ? s->msg.prev_admitted
                                                    : (uint64_t) -1,
                               s->msg.window - s->policy->spec.period_ms);
}


static void
ngx_aigov_limit_sync_window(void *data, redisReply *reply)
{
    ngx_aigov_limit_sync_t *s = data;

    ngx_aigov_limit_sync_reply(s, reply, &s->global,
                               s->msg.fresh ? (uint64_t) -1 : s->msg.admitted,
                               s->msg.window);
}


static void
ngx_aigov_limit_sync_offered(void *data, redisReply *reply)
{
    ngx_aigov_limit_sync_t *s = data;

    /* the first sync of the window sent its PEXPIRE already */
    ngx_aigov_limit_sync_reply(s, reply, &s->offered,
                               s->msg.fresh ? (uint64_t) -1 : s->msg.offered,
                               0);
}


static void
ngx_aigov_limit_sync_end(ngx_aigov_limit_sync_t *s)
{
    ngx_str_t                 key;
    ngx_aigov_limit_zone_t   *zone;
    ngx_aigov_limit_node_t   *node;

    zone = s->zone;
    key.data = s->data;
    key.len = s->len;

    ngx_shmtx_lock(&zone->shpool->mutex);

    node = ngx_aigov_limit_lookup(zone, &key, s->hash);

    if (node && node->kind == NGX_AIGOV_LIMIT_SYNCED) {
        if (s->failed) {
            aigov_window_sync_failed(&ngx_aigov_limit_state(node)->window,
                                     &s->policy->spec, &s->msg);
            ngx_aigov_limit_dirty(zone, node);

        } else {
            aigov_window_sync_done(&ngx_aigov_limit_state(node)->window,
                                   &s->policy->spec, &s->msg,
                                   ngx_aigov_limit_wall(), s->global,
                                   s->global_prev, s->offered);

            if (aigov_window_wants_sync(
                                     &ngx_aigov_limit_state(node)->window))
            {
                /* the previous window's count is still to be read */
                ngx_aigov_limit_dirty(zone, node);
            }
        }
    }

    if (s->failed && (ngx_exiting || ngx_quit || ngx_terminate)) {
        /* the deltas went back: the next worker 0 sends them */

    } else if (s->failed) {
        zone->sh->redis_ok = 0;
        zone->sh->sync_failures++;

    } else {
        zone->sh->redis_ok = 1;
        zone->sh->syncs++;
        zone->sh->last_sync = ngx_aigov_limit_wall();
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    ngx_free(s);
}


/*
 * INCRBY (or DECRBY) key units, then PEXPIRE key ttl (0: none), pipelined;
 * or GET key (units unused, ttl 0).  handler gets the first reply.
 */

/*
 * A fleet limit's Redis key, in buf (NGX_AIGOV_LIMIT_RKEY_LEN bytes): the
 * count of the window that starts at window (ms), "<prefix>rl:KEY:<s>",
 * or with window 0 the offered counter, "<prefix>rl:KEY:offered".  KEY is
 * the node's "NAME:KEY".
 */
static size_t
ngx_aigov_limit_rkey(u_char *buf, u_char *key, size_t len, uint64_t window)
{
    if (window == 0) {
        return ngx_snprintf(buf, NGX_AIGOV_LIMIT_RKEY_LEN, "%Vrl:%*s:offered",
                            ngx_aigov_limit_redis_prefix(), len, key)
               - buf;
    }

    return ngx_snprintf(buf, NGX_AIGOV_LIMIT_RKEY_LEN, "%Vrl:%*s:%uL",
                        ngx_aigov_limit_redis_prefix(), len, key,
                        window / 1000)
           - buf;
}


/* INCRBY / DECRBY of the fleet's count of one window, "<prefix>rl:KEY:<s>" */

static ngx_int_t
ngx_aigov_limit_window_send(ngx_aigov_redis_t *rds, u_char *key, size_t len,
    uint64_t window, uint64_t units, ngx_msec_t ttl,
    ngx_aigov_redis_handler_pt handler, void *data,
    ngx_aigov_redis_cmd_t **cmd, const char *op)
{
    ngx_str_t  k;
    u_char     buf[NGX_AIGOV_LIMIT_RKEY_LEN];

    /* the command is formatted at once: the key may live on the stack */

    k.data = buf;
    k.len = ngx_aigov_limit_rkey(buf, key, len, window);

    return ngx_aigov_limit_incrby(rds, &k, units, ttl, handler, data, cmd, op);
}


static ngx_int_t
ngx_aigov_limit_incrby(ngx_aigov_redis_t *rds, ngx_str_t *key, uint64_t units,
    ngx_msec_t ttl, ngx_aigov_redis_handler_pt handler, void *data,
    ngx_aigov_redis_cmd_t **cmd, const char *op)
{
    u_char                  n[NGX_INT64_LEN], t[NGX_INT64_LEN];
    const char             *argv[3];
    size_t                  argvlen[3];
    ngx_aigov_redis_cmd_t  *c;

    argv[0] = op;
    argvlen[0] = ngx_strlen(op);
    argv[1] = (const char *) key->data;
    argvlen[1] = key->len;
    argv[2] = (const char *) n;
    argvlen[2] = ngx_sprintf(n, "%uL", units) - n;

    /* GET key: no units */
    c = ngx_aigov_redis_send(rds, handler, data,
                             (ngx_strcmp(op, "GET") == 0) ? 2 : 3, argv,
                             argvlen);
    if (c == NULL) {
        return NGX_ERROR;
    }

    if (cmd) {
        *cmd = c;
    }

    if (ttl == 0) {
        return NGX_OK;
    }

    argv[0] = "PEXPIRE";
    argvlen[0] = 7;
    argv[2] = (const char *) t;
    argvlen[2] = ngx_sprintf(t, "%M", ttl) - t;

    (void) ngx_aigov_redis_send(rds, NULL, NULL, 3, argv, argvlen);

    return NGX_OK;
}


/* Variables. */

#define NGX_AIGOV_LIMIT_VAR_OUTCOME    0
#define NGX_AIGOV_LIMIT_VAR_POLICY     1
#define NGX_AIGOV_LIMIT_VAR_TOKENS     2


static ngx_http_variable_t  ngx_aigov_limit_vars[] = {

    { ngx_string("aigov_limit"), NULL, ngx_aigov_limit_variable,
      NGX_AIGOV_LIMIT_VAR_OUTCOME, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("aigov_limit_policy"), NULL, ngx_aigov_limit_variable,
      NGX_AIGOV_LIMIT_VAR_POLICY, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("aigov_limit_tokens"), NULL, ngx_aigov_limit_variable,
      NGX_AIGOV_LIMIT_VAR_TOKENS, NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


static ngx_int_t
ngx_aigov_limit_variable(ngx_http_request_t *r, ngx_http_variable_value_t *v,
    uintptr_t data)
{
    u_char                 *p;
    ngx_aigov_ctx_t        *actx;
    ngx_aigov_limit_ctx_t  *ctx;

    actx = ngx_aigov_get_ctx(r);
    ctx = actx ? ngx_aigov_plugin_ctx(actx, ngx_aigov_ratelimit_plugin)
               : NULL;

    if (ctx == NULL || ctx->state != NGX_AIGOV_LIMIT_S_DONE) {
        v->not_found = 1;
        return NGX_OK;
    }

    switch (data) {

    case NGX_AIGOV_LIMIT_VAR_OUTCOME:
        if (ctx->outcome == NGX_AIGOV_LIMIT_O_NONE) {
            v->not_found = 1;
            return NGX_OK;
        }

        v->data = ngx_aigov_limit_outcomes[ctx->outcome].data;
        v->len = ngx_aigov_limit_outcomes[ctx->outcome].len;
        break;

    case NGX_AIGOV_LIMIT_VAR_POLICY:
        if (ctx->decider == NULL) {
            v->not_found = 1;
            return NGX_OK;
        }

        v->data = ctx->decider->name.data;
        v->len = ctx->decider->name.len;
        break;

    default: /* NGX_AIGOV_LIMIT_VAR_TOKENS */
        if (!ctx->usage_found) {
            v->not_found = 1;
            return NGX_OK;
        }

        p = ngx_pnalloc(r->pool, NGX_INT64_LEN);
        if (p == NULL) {
            return NGX_ERROR;
        }

        v->data = p;
        v->len = ngx_sprintf(p, "%uL", ctx->used) - p;
        break;
    }

    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;

    return NGX_OK;
}


static ngx_int_t
ngx_aigov_limit_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var, *v;

    for (v = ngx_aigov_limit_vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    return NGX_OK;
}


/* Status: the limits of the locations that may route to a model. */

static ngx_uint_t
ngx_aigov_limit_for_model(ngx_aigov_limit_policy_t *pol,
    ngx_aigov_model_t *model, ngx_http_aigov_main_conf_t *mcf)
{
    ngx_str_t   *name;
    ngx_uint_t   i;

    if (pol->any_model) {
        return 1;
    }

    name = pol->models.elts;

    for (i = 0; i < pol->models.nelts; i++) {
        if (ngx_http_aigov_find_model(mcf, name[i].data, name[i].len)
            == model)
        {
            return 1;
        }
    }

    return 0;
}


static json_t *
ngx_aigov_limit_zone_json(ngx_aigov_limit_zone_t *zone)
{
    json_t                   *j;
    ngx_aigov_limit_shctx_t  *sh;

    sh = zone->sh;

    j = json_pack("{s:I, s:I, s:I, s:I, s:I}",
                  "size", (json_int_t) zone->shm_zone->shm.size,
                  "keys", (json_int_t) sh->nodes,
                  "evictions", (json_int_t) sh->evictions,
                  "expired", (json_int_t) sh->expired,
                  "no_memory", (json_int_t) sh->no_memory);

    if (j && zone->synced) {
        json_object_set_new(j, "redis",
            json_pack("{s:b, s:I, s:I, s:I}",
                      "ok", (int) sh->redis_ok,
                      "syncs", (json_int_t) sh->syncs,
                      "sync_failures", (json_int_t) sh->sync_failures,
                      "last_sync_ms", (json_int_t) sh->last_sync));
    }

    return j;
}


static ngx_int_t
ngx_aigov_limit_status(ngx_aigov_model_t *model, void *conf, json_t *out)
{
    json_t                       *limits, *zones, *j;
    ngx_uint_t                    i;
    ngx_aigov_limit_stats_t      *st;
    ngx_aigov_limit_policy_t    **pp, *p;
    ngx_http_aigov_main_conf_t   *mcf;
    ngx_aigov_limit_main_conf_t  *lmcf;

    lmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_aigov_ratelimit_module);
    mcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                              ngx_http_aigov_module);

    if (lmcf == NULL || mcf == NULL || lmcf->policies.nelts == 0) {
        return NGX_OK;
    }

    limits = json_array();
    zones = json_object();

    if (limits == NULL || zones == NULL) {
        json_decref(limits);
        json_decref(zones);
        return NGX_ERROR;
    }

    pp = lmcf->policies.elts;

    for (i = 0; i < lmcf->policies.nelts; i++) {
        p = pp[i];

        if (p->stats == NULL || !ngx_aigov_limit_for_model(p, model, mcf)) {
            continue;
        }

        st = p->stats;

        j = json_pack("{s:s%, s:s%, s:s%, s:s%, s:s, s:s, s:I}",
                      "name", (char *) p->name.data, p->name.len,
                      "zone", (char *) p->zone->name.data, p->zone->name.len,
                      "key", (char *) p->key_text.data, p->key_text.len,
                      "rate", (char *) p->rate_text.data, p->rate_text.len,
                      "unit", p->spec.unit == AIGOV_LIMIT_TOKENS
                              ? "tokens" : "requests",
                      "scope", ngx_aigov_limit_modes[p->mode],
                      "burst", (json_int_t) p->spec.burst);
        if (j == NULL) {
            goto failed;
        }

        json_array_append_new(limits, j);

        if (p->mode != NGX_AIGOV_LIMIT_LOCAL) {
            json_object_set_new(j, "on_redis_error",
                                json_string(p->fail_closed ? "closed"
                                                           : "open"));
        }

        if (p->mode == NGX_AIGOV_LIMIT_SYNCED) {
            json_object_set_new(j, "sync_ms", json_integer(p->sync));

        } else if (p->mode == NGX_AIGOV_LIMIT_STRICT) {
            json_object_set_new(j, "redis_timeout_ms",
                                json_integer(p->redis_timeout));
        }

        if (p->spec.unit == AIGOV_LIMIT_TOKENS) {
            json_object_set_new(j, "estimate", p->estimate_body
                                ? json_string("max_tokens")
                                : json_integer(p->estimate));
            json_object_set_new(j, "tokens",
                                json_integer((json_int_t) st->tokens));
            json_object_set_new(j, "no_usage",
                                json_integer((json_int_t) st->no_usage));
        }

        json_object_set_new(j, "dry_run", json_boolean(p->dry_run));
        json_object_set_new(j, "allowed",
                            json_integer((json_int_t) st->allowed));
        json_object_set_new(j, "rejected",
                            json_integer((json_int_t) st->rejected));
        json_object_set_new(j, "dry_run_rejected",
                            json_integer((json_int_t) st->dry_run));

        if (p->mode != NGX_AIGOV_LIMIT_LOCAL) {
            json_object_set_new(j, "failed_open",
                                json_integer((json_int_t) st->failed_open));
            json_object_set_new(j, "unavailable",
                                json_integer((json_int_t) st->unavailable));
        }

        if (p->zone->sh
            && json_object_getn(zones, (char *) p->zone->name.data,
                                p->zone->name.len) == NULL)
        {
            j = ngx_aigov_limit_zone_json(p->zone);
            if (j == NULL) {
                goto failed;
            }

            json_object_setn_new(zones, (char *) p->zone->name.data,
                                 p->zone->name.len, j);
        }
    }

    if (json_array_size(limits) == 0) {
        json_decref(limits);
        json_decref(zones);
        return NGX_OK;
    }

    json_object_set_new(out, "rate_limits", limits);
    json_object_set_new(out, "rate_limit_zones", zones);

    return NGX_OK;

failed:

    json_decref(limits);
    json_decref(zones);

    return NGX_ERROR;
}


/* Configuration. */

static ngx_aigov_limit_zone_t *
ngx_aigov_limit_get_zone(ngx_conf_t *cf, ngx_aigov_limit_main_conf_t *lmcf,
    ngx_str_t *name, size_t size)
{
    ngx_uint_t               i;
    ngx_shm_zone_t          *shm_zone;
    ngx_aigov_limit_zone_t  *zone, **zp;

    zp = lmcf->zones.elts;

    for (i = 0; i < lmcf->zones.nelts; i++) {
        if (zp[i]->name.len == name->len
            && ngx_strncmp(zp[i]->name.data, name->data, name->len) == 0)
        {
            if (size == 0) {
                return zp[i];
            }

            if (zp[i]->declared) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "aigov_limit_zone \"%V\" is already "
                                   "declared", name);
                return NULL;
            }

            shm_zone = ngx_shared_memory_add(cf, name, size,
                                             &ngx_aigov_ratelimit_module);
            if (shm_zone == NULL) {
                return NULL;
            }

            zp[i]->declared = 1;
            return zp[i];
        }
    }

    shm_zone = ngx_shared_memory_add(cf, name, size,
                                     &ngx_aigov_ratelimit_module);
    if (shm_zone == NULL) {
        return NULL;
    }

    if (shm_zone->data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "zone \"%V\" is already used", name);
        return NULL;
    }

    zone = ngx_pcalloc(cf->pool, sizeof(ngx_aigov_limit_zone_t));
    if (zone == NULL) {
        return NULL;
    }

    zone->name = *name;
    zone->index = lmcf->zones.nelts;
    zone->shm_zone = shm_zone;
    zone->lmcf = lmcf;
    zone->declared = (size != 0);

    shm_zone->init = ngx_aigov_limit_init_zone;
    shm_zone->data = zone;

    zp = ngx_array_push(&lmcf->zones);
    if (zp == NULL) {
        return NULL;
    }

    *zp = zone;

    return zone;
}


/* aigov_limit_zone NAME:SIZE */

static char *
ngx_aigov_limit_zone_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_aigov_limit_main_conf_t *lmcf = conf;

    u_char     *p;
    ssize_t     size;
    ngx_str_t  *value, name, s;

    value = cf->args->elts;

    p = (u_char *) ngx_strchr(value[1].data, ':');

    if (p == NULL || p == value[1].data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid aigov_limit_zone \"%V\": use "
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
                           "invalid size in aigov_limit_zone \"%V\"",
                           &value[1]);
        return NGX_CONF_ERROR;
    }

    if (size < (ssize_t) (8 * ngx_pagesize)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "aigov_limit_zone \"%V\" is too small: at least "
                           "%uzk", &value[1], 8 * ngx_pagesize / 1024);
        return NGX_CONF_ERROR;
    }

    if (ngx_aigov_limit_get_zone(cf, lmcf, &name, size) == NULL) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_aigov_limit_time(ngx_conf_t *cf, ngx_str_t *arg, size_t skip,
    ngx_msec_t min, ngx_msec_t max, const char *range, ngx_str_t *name,
    ngx_msec_t *out)
{
    ngx_str_t   s;
    ngx_msec_t  ms;

    s.data = arg->data + skip;
    s.len = arg->len - skip;

    ms = ngx_parse_time(&s, 0);

    if (ms == (ngx_msec_t) NGX_ERROR || ms < min || ms > max) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid time \"%V\" in aigov_limit \"%V\": use "
                           "%s", arg, name, range);
        return NGX_ERROR;
    }

    *out = ms;

    return NGX_OK;
}


static ngx_uint_t
ngx_aigov_limit_same(ngx_aigov_limit_policy_t *a, ngx_aigov_limit_policy_t *b)
{
    return a->zone == b->zone
           && a->key_text.len == b->key_text.len
           && ngx_strncmp(a->key_text.data, b->key_text.data,
                          a->key_text.len) == 0
           && a->spec.rate == b->spec.rate
           && a->spec.period_ms == b->spec.period_ms
           && a->spec.burst == b->spec.burst
           && a->spec.unit == b->spec.unit
           && a->mode == b->mode
           && a->sync == b->sync
           && a->redis_timeout == b->redis_timeout
           && a->fail_closed == b->fail_closed
           && a->estimate == b->estimate
           && a->estimate_body == b->estimate_body
           && a->dry_run == b->dry_run;
}


#define ngx_aigov_limit_once(seen, what)                                     \
    if (seen) {                                                              \
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,                             \
                           "duplicate \"%s\" in aigov_limit \"%V\"",         \
                           what, &name);                                     \
        return NGX_CONF_ERROR;                                               \
    }                                                                        \
    seen = 1


/*
 * aigov_limit NAME zone=Z key=KEY rate=RATE [burst=N] [global[=strict]]
 *     [sync=T] [redis_timeout=T] [on_redis_error=open|closed]
 *     [estimate=N] [dry_run];
 * aigov_limit off;
 */

static char *
ngx_aigov_limit_directive(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_aigov_limit_loc_conf_t *llcf = conf;

    char                               err[128];
    ngx_str_t                         *value, name, zone, s;
    ngx_int_t                          n;
    ngx_uint_t                         i, seen_zone, seen_key, seen_rate,
                                       seen_burst, seen_global, seen_sync,
                                       seen_timeout, seen_error, seen_estimate,
                                       seen_dry;
    uint32_t                           burst;
    ngx_aigov_limit_policy_t          *p, **pp;
    ngx_aigov_limit_main_conf_t       *lmcf;
    ngx_http_compile_complex_value_t   ccv;

    value = cf->args->elts;
    name = value[1];

    if (cf->args->nelts == 2 && ngx_strcmp(name.data, "off") == 0) {
        if (llcf->limits) {
            return "is duplicate";
        }

        llcf->limits = ngx_array_create(cf->pool, 1, sizeof(void *));
        if (llcf->limits == NULL) {
            return NGX_CONF_ERROR;
        }

        return NGX_CONF_OK;
    }

    if (llcf->limits && llcf->limits->nelts == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "aigov_limit \"%V\" after \"aigov_limit off\" in "
                           "the same block", &name);
        return NGX_CONF_ERROR;
    }

    if (!aigov_limit_valid_name((char *) name.data, name.len)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid aigov_limit name \"%V\": use 1 to %d of "
                           "A-Z a-z 0-9 . _ -", &name, AIGOV_LIMIT_NAME_MAX);
        return NGX_CONF_ERROR;
    }

    lmcf = ngx_http_conf_get_module_main_conf(cf, ngx_aigov_ratelimit_module);

    p = ngx_pcalloc(cf->pool, sizeof(ngx_aigov_limit_policy_t));
    if (p == NULL) {
        return NGX_CONF_ERROR;
    }

    p->name = name;
    p->file = cf->conf_file->file.name.data;
    p->line = cf->conf_file->line;
    p->mode = NGX_AIGOV_LIMIT_LOCAL;

    if (cf->cmd_type == NGX_HTTP_LOC_CONF && llcf->here == NULL) {
        llcf->here = p;
    }

    seen_zone = 0;
    seen_key = 0;
    seen_rate = 0;
    seen_burst = 0;
    seen_global = 0;
    seen_sync = 0;
    seen_timeout = 0;
    seen_error = 0;
    seen_estimate = 0;
    seen_dry = 0;
    burst = 0;
    ngx_str_null(&zone);

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "zone=", 5) == 0) {
            ngx_aigov_limit_once(seen_zone, "zone=");

            zone.data = value[i].data + 5;
            zone.len = value[i].len - 5;

            if (zone.len == 0) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "empty zone name in aigov_limit \"%V\"",
                                   &name);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "key=", 4) == 0) {
            ngx_aigov_limit_once(seen_key, "key=");

            p->key_text.data = value[i].data + 4;
            p->key_text.len = value[i].len - 4;

            if (p->key_text.len == 0) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "empty key in aigov_limit \"%V\": use a "
                                   "value with variables, such as "
                                   "key=$http_x_api_key", &name);
                return NGX_CONF_ERROR;
            }

            ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));

            ccv.cf = cf;
            ccv.value = &p->key_text;
            ccv.complex_value = &p->key;

            if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
                return NGX_CONF_ERROR;
            }

            if (ngx_aigov_header_variable(cf, &p->key_text, &p->key_header)
                != NGX_OK)
            {
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "rate=", 5) == 0) {
            ngx_aigov_limit_once(seen_rate, "rate=");

            p->rate_text.data = value[i].data + 5;
            p->rate_text.len = value[i].len - 5;

            if (aigov_limit_parse_rate((char *) p->rate_text.data,
                                       p->rate_text.len, &p->spec, err,
                                       sizeof(err))
                != AIGOV_OK)
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid rate \"%V\" in aigov_limit "
                                   "\"%V\": %s", &value[i], &name, err);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "burst=", 6) == 0) {
            ngx_aigov_limit_once(seen_burst, "burst=");

            if (aigov_limit_parse_burst((char *) value[i].data + 6,
                                        value[i].len - 6, &burst, err,
                                        sizeof(err))
                != AIGOV_OK)
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid burst \"%V\" in aigov_limit "
                                   "\"%V\": %s", &value[i], &name, err);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strcmp(value[i].data, "global") == 0
            || ngx_strncmp(value[i].data, "global=", 7) == 0)
        {
            ngx_aigov_limit_once(seen_global, "global");

            if (value[i].len == 6
                || ngx_strcmp(value[i].data, "global=synced") == 0)
            {
                p->mode = NGX_AIGOV_LIMIT_SYNCED;

            } else if (ngx_strcmp(value[i].data, "global=strict") == 0) {
                p->mode = NGX_AIGOV_LIMIT_STRICT;

            } else {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid \"%V\" in aigov_limit \"%V\": "
                                   "use \"global\" (synced) or "
                                   "\"global=strict\"", &value[i], &name);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "sync=", 5) == 0) {
            ngx_aigov_limit_once(seen_sync, "sync=");

            if (ngx_aigov_limit_time(cf, &value[i], 5, 10, 60000,
                                     "10ms to 60s", &name, &p->sync)
                != NGX_OK)
            {
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "redis_timeout=", 14) == 0) {
            ngx_aigov_limit_once(seen_timeout, "redis_timeout=");

            if (ngx_aigov_limit_time(cf, &value[i], 14, 1, 10000,
                                     "1ms to 10s", &name, &p->redis_timeout)
                != NGX_OK)
            {
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "on_redis_error=", 15) == 0) {
            ngx_aigov_limit_once(seen_error, "on_redis_error=");

            s.data = value[i].data + 15;
            s.len = value[i].len - 15;

            if (s.len == 4 && ngx_strncmp(s.data, "open", 4) == 0) {
                p->fail_closed = 0;

            } else if (s.len == 6 && ngx_strncmp(s.data, "closed", 6) == 0) {
                p->fail_closed = 1;

            } else {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid \"%V\" in aigov_limit \"%V\": "
                                   "use \"on_redis_error=open\" or "
                                   "\"on_redis_error=closed\"",
                                   &value[i], &name);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "estimate=", 9) == 0) {
            ngx_aigov_limit_once(seen_estimate, "estimate=");

            if (ngx_strcmp(value[i].data + 9, "max_tokens") == 0) {
                p->estimate_body = 1;
                p->estimate = 1;
                continue;
            }

            n = ngx_atoi(value[i].data + 9, value[i].len - 9);

            if (n == NGX_ERROR || n < 1 || n > (ngx_int_t) UINT32_MAX) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid \"%V\" in aigov_limit \"%V\": "
                                   "use a number of tokens from 1 to "
                                   "4294967295, or \"max_tokens\"",
                                   &value[i], &name);
                return NGX_CONF_ERROR;
            }

            p->estimate = (uint32_t) n;
            continue;
        }

        if (ngx_strcmp(value[i].data, "dry_run") == 0) {
            ngx_aigov_limit_once(seen_dry, "dry_run");
            p->dry_run = 1;
            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\" in aigov_limit \"%V\"",
                           &value[i], &name);
        return NGX_CONF_ERROR;
    }

    if (!seen_zone) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "aigov_limit \"%V\" needs zone=NAME (an "
                           "aigov_limit_zone)", &name);
        return NGX_CONF_ERROR;
    }

    if (!seen_key) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "aigov_limit \"%V\" needs key=VALUE, such as "
                           "key=$http_x_api_key", &name);
        return NGX_CONF_ERROR;
    }

    if (!seen_rate) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "aigov_limit \"%V\" needs rate=, such as "
                           "rate=10r/s or rate=100000t/m", &name);
        return NGX_CONF_ERROR;
    }

    if (seen_burst) {
        if (p->mode != NGX_AIGOV_LIMIT_LOCAL) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "burst= does not apply to the global "
                               "aigov_limit \"%V\": a fleet limit admits its "
                               "rate per sliding window, all at once if it "
                               "comes so",
                               &name);
            return NGX_CONF_ERROR;
        }

        p->spec.burst = burst;
    }

    if (p->mode != NGX_AIGOV_LIMIT_SYNCED && seen_sync) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "sync= needs \"global\" in aigov_limit \"%V\"%s",
                           &name, p->mode == NGX_AIGOV_LIMIT_STRICT
                                  ? ": a strict limit asks Redis on every "
                                    "request" : "");
        return NGX_CONF_ERROR;
    }

    if (p->mode != NGX_AIGOV_LIMIT_STRICT && seen_timeout) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "redis_timeout= needs \"global=strict\" in "
                           "aigov_limit \"%V\"", &name);
        return NGX_CONF_ERROR;
    }

    if (p->mode == NGX_AIGOV_LIMIT_LOCAL && seen_error) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "on_redis_error= needs \"global\" in aigov_limit "
                           "\"%V\": a local limit does not use Redis", &name);
        return NGX_CONF_ERROR;
    }

    if (p->spec.unit == AIGOV_LIMIT_TOKENS) {
        if (!seen_estimate) {
            p->estimate = 1;
        }

        if (p->estimate > p->spec.burst) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "estimate=%uD is more than the %s (%uD) of "
                               "aigov_limit \"%V\": no request could pass",
                               p->estimate,
                               p->mode == NGX_AIGOV_LIMIT_LOCAL
                               ? "burst" : "rate",
                               p->spec.burst, &name);
            return NGX_CONF_ERROR;
        }

    } else if (seen_estimate) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "estimate= applies to token rates (\"t\") only, "
                           "in aigov_limit \"%V\"", &name);
        return NGX_CONF_ERROR;
    }

    if (p->mode == NGX_AIGOV_LIMIT_SYNCED && !seen_sync) {
        p->sync = 200;
    }

    if (p->mode == NGX_AIGOV_LIMIT_STRICT && !seen_timeout) {
        p->redis_timeout = 50;
    }

    p->zone = ngx_aigov_limit_get_zone(cf, lmcf, &zone, 0);
    if (p->zone == NULL) {
        return NGX_CONF_ERROR;
    }

    if (ngx_array_init(&p->models, cf->pool, 1, sizeof(ngx_str_t))
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    /* one name, one limit: the same name elsewhere shares its state */

    pp = lmcf->policies.elts;

    for (i = 0; i < lmcf->policies.nelts; i++) {
        if (pp[i]->name.len != name.len
            || ngx_strncmp(pp[i]->name.data, name.data, name.len) != 0)
        {
            continue;
        }

        if (!ngx_aigov_limit_same(pp[i], p)) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "aigov_limit \"%V\" is already defined with "
                               "other parameters in %s:%ui: a name is one "
                               "limit, with one state", &name, pp[i]->file,
                               pp[i]->line);
            return NGX_CONF_ERROR;
        }

        p = pp[i];
        break;
    }

    if (i == lmcf->policies.nelts) {
        pp = ngx_array_push(&lmcf->policies);
        if (pp == NULL) {
            return NGX_CONF_ERROR;
        }

        *pp = p;
    }

    if (llcf->limits == NULL) {
        llcf->limits = ngx_array_create(cf->pool, 2, sizeof(void *));
        if (llcf->limits == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    pp = llcf->limits->elts;

    for (i = 0; i < llcf->limits->nelts; i++) {
        if (pp[i] == p) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "duplicate aigov_limit \"%V\" in one block",
                               &name);
            return NGX_CONF_ERROR;
        }
    }

    pp = ngx_array_push(llcf->limits);
    if (pp == NULL) {
        return NGX_CONF_ERROR;
    }

    *pp = p;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_aigov_limit_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_aigov_limit_zone_t *ozone = data;

    size_t                         len;
    ngx_uint_t                     i, n;
    ngx_queue_t                   *q;
    ngx_aigov_limit_zone_t        *zone;
    ngx_aigov_limit_stats_t       *st;
    ngx_aigov_limit_policy_t     **pp;
    ngx_aigov_limit_main_conf_t   *lmcf;

    zone = shm_zone->data;
    zone->shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (ozone) {
        zone->sh = ozone->sh;

    } else if (shm_zone->shm.exists) {
        zone->sh = zone->shpool->data;

    } else {
        zone->sh = ngx_slab_calloc(zone->shpool,
                                   sizeof(ngx_aigov_limit_shctx_t));
        if (zone->sh == NULL) {
            return NGX_ERROR;
        }

        zone->shpool->data = zone->sh;

        /* about one bucket per node the zone can hold, a power of 2 */
        for (n = 64;
             n * 2 * NGX_AIGOV_LIMIT_BUCKET_BYTES <= shm_zone->shm.size;
             n *= 2)
        { /* void */ }

        len = n * sizeof(ngx_aigov_limit_node_t *);

        zone->sh->buckets = ngx_slab_calloc(zone->shpool, len);
        if (zone->sh->buckets == NULL) {
            return NGX_ERROR;
        }

        zone->sh->mask = n - 1;

        ngx_queue_init(&zone->sh->queue);
        ngx_queue_init(&zone->sh->dirty);
        ngx_queue_init(&zone->sh->policies);

        zone->sh->created = ngx_time();
        zone->sh->redis_ok = 1;   /* until worker 0 learns otherwise */

        len = sizeof(" in aigov_limit_zone \"\"") + shm_zone->shm.name.len;

        zone->shpool->log_ctx = ngx_slab_alloc(zone->shpool, len);
        if (zone->shpool->log_ctx == NULL) {
            return NGX_ERROR;
        }

        ngx_sprintf(zone->shpool->log_ctx, " in aigov_limit_zone \"%V\"%Z",
                    &shm_zone->shm.name);
    }

    /* a full zone evicts keys: no [crit] "no memory" for each of them */
    zone->shpool->log_nomem = 0;

    zone->buckets = zone->sh->buckets;
    zone->mask = zone->sh->mask;

    /* the counters of each limit, found again after a reload */

    lmcf = zone->lmcf;
    pp = lmcf->policies.elts;

    ngx_shmtx_lock(&zone->shpool->mutex);

    for (i = 0; i < lmcf->policies.nelts; i++) {
        if (pp[i]->zone != zone) {
            continue;
        }

        st = NULL;

        for (q = ngx_queue_head(&zone->sh->policies);
             q != ngx_queue_sentinel(&zone->sh->policies);
             q = ngx_queue_next(q))
        {
            st = ngx_queue_data(q, ngx_aigov_limit_stats_t, queue);

            if (st->len == pp[i]->name.len
                && ngx_strncmp(st->name, pp[i]->name.data, st->len) == 0)
            {
                break;
            }

            st = NULL;
        }

        if (st == NULL) {
            st = ngx_slab_calloc_locked(zone->shpool,
                                        sizeof(ngx_aigov_limit_stats_t));

            while (st == NULL && !ngx_queue_empty(&zone->sh->queue)) {
                q = ngx_queue_last(&zone->sh->queue);
                ngx_aigov_limit_free(zone, ngx_queue_data(q,
                                         ngx_aigov_limit_node_t, queue));
                zone->sh->evictions++;

                st = ngx_slab_calloc_locked(zone->shpool,
                                            sizeof(ngx_aigov_limit_stats_t));
            }

            if (st == NULL) {
                ngx_shmtx_unlock(&zone->shpool->mutex);
                ngx_log_error(NGX_LOG_EMERG, ngx_cycle->log, 0,
                              "aigov_limit_zone \"%V\" is full",
                              &shm_zone->shm.name);
                return NGX_ERROR;
            }

            st->len = pp[i]->name.len;
            ngx_memcpy(st->name, pp[i]->name.data, st->len);
            ngx_queue_insert_tail(&zone->sh->policies, &st->queue);
        }

        pp[i]->stats = st;

        if (st->mode != pp[i]->mode) {
            st->mode = pp[i]->mode;
            st->epoch++;
        }

        if (pp[i]->group) {
            /*
             * A local limit's name in its nodes, and its epoch: made
             * global and local again by reloads, it does not find the
             * state it left (ngx_aigov_limit_migrate() gives it a fresh
             * one), as a synced limit does not read a local state.
             */
            pp[i]->group->names[pp[i]->slot] =
                ngx_crc32_short(pp[i]->name.data, pp[i]->name.len)
                ^ (st->epoch * 0x9e3779b9);
        }
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    return NGX_OK;
}


static void *
ngx_aigov_limit_create_main_conf(ngx_conf_t *cf)
{
    ngx_aigov_limit_main_conf_t  *lmcf;

    lmcf = ngx_pcalloc(cf->pool, sizeof(ngx_aigov_limit_main_conf_t));
    if (lmcf == NULL) {
        return NULL;
    }

    if (ngx_array_init(&lmcf->zones, cf->pool, 2, sizeof(void *)) != NGX_OK
        || ngx_array_init(&lmcf->policies, cf->pool, 4, sizeof(void *))
           != NGX_OK
        || ngx_array_init(&lmcf->groups, cf->pool, 2, sizeof(void *))
           != NGX_OK)
    {
        return NULL;
    }

    return lmcf;
}


static char *
ngx_aigov_limit_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_aigov_limit_main_conf_t *lmcf = conf;

    ngx_uint_t                    i;
    ngx_aigov_limit_zone_t      **zp;
    ngx_aigov_limit_policy_t    **pp;
    ngx_http_aigov_main_conf_t   *mcf;

    mcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_aigov_module);

    zp = lmcf->zones.elts;
    pp = lmcf->policies.elts;

    for (i = 0; i < lmcf->policies.nelts; i++) {

        if (!pp[i]->zone->declared) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "unknown aigov_limit_zone \"%V\" in aigov_limit "
                          "\"%V\" in %s:%ui", &pp[i]->zone->name,
                          &pp[i]->name, pp[i]->file, pp[i]->line);
            return NGX_CONF_ERROR;
        }

        if (pp[i]->mode != NGX_AIGOV_LIMIT_LOCAL && mcf->redis == NULL) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "aigov_limit \"%V\" is global but there is no "
                          "aigov_redis in %s:%ui", &pp[i]->name,
                          pp[i]->file, pp[i]->line);
            return NGX_CONF_ERROR;
        }

        if (pp[i]->mode == NGX_AIGOV_LIMIT_SYNCED) {
            pp[i]->zone->synced = 1;

            if (lmcf->sync == 0 || pp[i]->sync < lmcf->sync) {
                lmcf->sync = pp[i]->sync;
            }
        }
    }

    for (i = 0; i < lmcf->zones.nelts; i++) {
        if (!zp[i]->declared) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "unknown aigov_limit_zone \"%V\"", &zp[i]->name);
            return NGX_CONF_ERROR;
        }
    }

    for (i = 0; i < lmcf->policies.nelts; i++) {
        if (pp[i]->mode == NGX_AIGOV_LIMIT_LOCAL
            && ngx_aigov_limit_group(cf, lmcf, pp[i]) != NGX_OK)
        {
            return NGX_CONF_ERROR;
        }
    }

    return NGX_CONF_OK;
}


/*
 * Puts a local limit in the group of the zone's local limits with the same
 * key=, or in a new one when there is none or it is full.  Groups follow
 * the order of definition, so a reload that adds a limit at the end keeps
 * the others where they were.
 */

static ngx_int_t
ngx_aigov_limit_group(ngx_conf_t *cf, ngx_aigov_limit_main_conf_t *lmcf,
    ngx_aigov_limit_policy_t *p)
{
    uint32_t                   crc;
    ngx_uint_t                 i, ordinal;
    ngx_aigov_limit_group_t   *g, **gp;

    gp = lmcf->groups.elts;
    ordinal = 0;
    g = NULL;

    for (i = 0; i < lmcf->groups.nelts; i++) {
        if (gp[i]->zone != p->zone
            || gp[i]->key_text.len != p->key_text.len
            || ngx_strncmp(gp[i]->key_text.data, p->key_text.data,
                           p->key_text.len) != 0)
        {
            continue;
        }

        if (gp[i]->n < NGX_AIGOV_LIMIT_GROUP_MAX) {
            g = gp[i];
            break;
        }

        ordinal++;
    }

    if (g == NULL) {
        g = ngx_pcalloc(cf->pool, sizeof(ngx_aigov_limit_group_t));
        if (g == NULL) {
            return NGX_ERROR;
        }

        gp = ngx_array_push(&lmcf->groups);
        if (gp == NULL) {
            return NGX_ERROR;
        }

        *gp = g;

        g->zone = p->zone;
        g->key_text = p->key_text;

        /* no limit's name begins with 0x01: never a "NAME:KEY" */
        crc = ngx_crc32_short(p->key_text.data, p->key_text.len);
        g->prefix[0] = 0x01;
        ngx_memcpy(&g->prefix[1], &crc, 4);
        g->prefix[5] = (u_char) ordinal;
    }

    /* names[p->slot]: when the zone is ready, with the limit's epoch */
    p->group = g;
    p->slot = g->n++;

    return NGX_OK;
}


static void *
ngx_aigov_limit_create_loc_conf(ngx_conf_t *cf)
{
    ngx_aigov_limit_loc_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool, sizeof(ngx_aigov_limit_loc_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     conf->limits = NULL;
     *     conf->zones = NULL;
     *     conf->strict = 0;
     */

    conf->headers = NGX_CONF_UNSET;
    conf->status = NGX_CONF_UNSET_UINT;
    conf->dry_run = NGX_CONF_UNSET;
    conf->log_level = NGX_CONF_UNSET_UINT;
    conf->buffer = NGX_CONF_UNSET_SIZE;

    return conf;
}


static char *
ngx_aigov_limit_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_aigov_limit_loc_conf_t *prev = parent;
    ngx_aigov_limit_loc_conf_t *conf = child;

    size_t                       len;
    ngx_str_t                   *name, *m;
    ngx_uint_t                   i, j, k;
    aigov_limit_policy_t        *pol;
    ngx_aigov_limit_zone_t     **zp;
    ngx_aigov_limit_policy_t   **pp;
    ngx_http_aigov_loc_conf_t   *alcf;

    if (conf->limits == NULL) {
        conf->limits = prev->limits;
    }

    ngx_conf_merge_value(conf->headers, prev->headers, 1);
    ngx_conf_merge_uint_value(conf->status, prev->status,
                              NGX_HTTP_TOO_MANY_REQUESTS);
    ngx_conf_merge_value(conf->dry_run, prev->dry_run, 0);
    ngx_conf_merge_uint_value(conf->log_level, prev->log_level, NGX_LOG_WARN);
    ngx_conf_merge_size_value(conf->buffer, prev->buffer, 256 * 1024);

    if (conf->buffer < 1024) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "aigov_limit_response_buffer must be at least 1k");
        return NGX_CONF_ERROR;
    }

    if (conf->limits == NULL || conf->limits->nelts == 0) {
        return NGX_CONF_OK;
    }

    /* the zones to lock, in one global order */

    conf->zones = ngx_array_create(cf->pool, 1, sizeof(void *));
    if (conf->zones == NULL) {
        return NGX_CONF_ERROR;
    }

    conf->strict = 0;
    conf->body = 0;
    pp = conf->limits->elts;

    for (i = 0; i < conf->limits->nelts; i++) {
        if (pp[i]->mode == NGX_AIGOV_LIMIT_STRICT) {
            conf->strict = 1;
        }

        if (pp[i]->estimate_body) {
            conf->body = 1;
        }

        zp = conf->zones->elts;

        for (j = 0; j < conf->zones->nelts; j++) {
            if (zp[j] == pp[i]->zone) {
                break;
            }
        }

        if (j < conf->zones->nelts) {
            continue;
        }

        zp = ngx_array_push(conf->zones);
        if (zp == NULL) {
            return NGX_CONF_ERROR;
        }

        /* insertion sort by zone index */
        zp = conf->zones->elts;

        for (k = conf->zones->nelts - 1;
             k > 0 && zp[k - 1]->index > pp[i]->zone->index;
             k--)
        {
            zp[k] = zp[k - 1];
        }

        zp[k] = pp[i]->zone;
    }

    /* RateLimit-Policy when every key has a value: the same each time */

    pol = ngx_palloc(cf->pool, conf->limits->nelts
                               * sizeof(aigov_limit_policy_t));
    if (pol == NULL) {
        return NGX_CONF_ERROR;
    }

    for (i = 0; i < conf->limits->nelts; i++) {
        pol[i].name.data = (const char *) pp[i]->name.data;
        pol[i].name.len = pp[i]->name.len;
        pol[i].spec = &pp[i]->spec;
        pol[i].result = NULL;
    }

    len = conf->limits->nelts * (2 * AIGOV_LIMIT_NAME_MAX + 64) + 1;

    conf->policy.data = ngx_pnalloc(cf->pool, len);
    if (conf->policy.data == NULL) {
        return NGX_CONF_ERROR;
    }

    conf->policy.len = aigov_limit_format_policy((char *) conf->policy.data,
                                                 len, pol,
                                                 conf->limits->nelts);

    /* the pieces of RateLimit and x-ratelimit-limit-* on passing requests */

    conf->items = ngx_palloc(cf->pool, conf->limits->nelts * sizeof(ngx_str_t));
    if (conf->items == NULL) {
        return NGX_CONF_ERROR;
    }

    conf->items_len = 0;

    for (i = 0; i < conf->limits->nelts; i++) {
        /* names need no escaping: aigov_limit_valid_name() */
        conf->items[i].data = ngx_pnalloc(cf->pool, pp[i]->name.len + 7);
        if (conf->items[i].data == NULL) {
            return NGX_CONF_ERROR;
        }

        conf->items[i].len = ngx_sprintf(conf->items[i].data, "%s\"%V\";r=",
                                         i ? ", " : "", &pp[i]->name)
                             - conf->items[i].data;
        conf->items_len += conf->items[i].len;

        if (pp[i]->quota.len == 0) {
            pp[i]->quota.data = ngx_pnalloc(cf->pool, NGX_INT64_LEN);
            if (pp[i]->quota.data == NULL) {
                return NGX_CONF_ERROR;
            }

            pp[i]->quota.len = ngx_aigov_limit_uint(pp[i]->quota.data,
                                                    pp[i]->spec.rate)
                               - pp[i]->quota.data;
        }
    }

    /* which models the limits apply to, for the status document */

    alcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_aigov_module);

    if (alcf->source == NGX_HTTP_AIGOV_SRC_NONE) {
        if (conf->here) {
            /* the limits run in aigov_route's decision: here, never */
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "aigov_limit \"%V\" in %s:%ui would never "
                          "apply: its location has no aigov_route",
                          &conf->here->name, conf->here->file,
                          conf->here->line);
            return NGX_CONF_ERROR;
        }

        return NGX_CONF_OK;
    }

    name = NULL;

    if (alcf->source == NGX_HTTP_AIGOV_SRC_MODEL && alcf->model_cv
        && alcf->model_cv->lengths == NULL)
    {
        name = &alcf->model_cv->value;
    }

    for (i = 0; i < conf->limits->nelts; i++) {
        if (name == NULL) {
            pp[i]->any_model = 1;
            continue;
        }

        m = pp[i]->models.elts;

        for (j = 0; j < pp[i]->models.nelts; j++) {
            if (m[j].len == name->len
                && ngx_strncmp(m[j].data, name->data, name->len) == 0)
            {
                break;
            }
        }

        if (j == pp[i]->models.nelts) {
            m = ngx_array_push(&pp[i]->models);
            if (m == NULL) {
                return NGX_CONF_ERROR;
            }

            *m = *name;
        }
    }

    return NGX_CONF_OK;
}
