/*
 * ngx_aigov internal umbrella header: the core's configuration, shared
 * zone and helpers shared by the files of ngx_aigov_module/.
 */

#ifndef NGX_HTTP_AIGOV_MODULE_H_INCLUDED_
#define NGX_HTTP_AIGOV_MODULE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <jansson.h>

#include "ngx_aigov.h"
#include "aigov_core.h"


#define NGX_HTTP_AIGOV_VERSION         "0.1.0"

#define NGX_HTTP_AIGOV_SRC_NONE        0
#define NGX_HTTP_AIGOV_SRC_MODEL       1    /* model=NAME or model=$var */
#define NGX_HTTP_AIGOV_SRC_KSERVE      2
#define NGX_HTTP_AIGOV_SRC_OPENAI      3


#define NGX_HTTP_AIGOV_WEIGHTS_LEN    (NGX_AIGOV_MAX_VARIANTS * 140)


/*
 * Runtime control of a model in the zone.  Written by any worker under the
 * zone's mutex, read without it through the seqlock "seq" (odd while a
 * write is in progress): the request path only compares "version" with its
 * worker's cached copy.
 */
typedef struct {
    ngx_atomic_t               seq;
    uint64_t                   version;
    int8_t                     kill;         /* -1 unset, 0, 1 */
    int8_t                     rollback;
    uint8_t                    dirty;        /* not yet in Redis */
    uint8_t                    active_len;
    uint16_t                   weights_len;
    uint8_t                    by_len;
    time_t                     updated;
    u_char                     by[64];       /* token name, "redis" */
    u_char                     active[128];  /* variant name */
    u_char                     weights[NGX_HTTP_AIGOV_WEIGHTS_LEN];
                                             /* "v2=5%,v3=0.25%" */
} ngx_http_aigov_control_t;


/* One node per model and per model/variant in the shared zone. */
struct ngx_aigov_shm_node_s {
    ngx_str_node_t             sn;           /* key: "model" or "model/v" */
    ngx_queue_t                queue;
    ngx_uint_t                 generation;   /* last config that used it */
    ngx_atomic_t               requests;     /* variant nodes */
    ngx_atomic_t               decisions[NGX_AIGOV_DECISION_LAST]; /* model */
    ngx_http_aigov_control_t   control;      /* model nodes */
    size_t                     size;         /* plugin blocks: data bytes */
    u_char                     key[1];
};


/*
 * A plugin's own block of the zone (ngx_http_aigov_shm_block()): found by
 * its key when the zone is initialised, so that it is kept across reloads,
 * or allocated zeroed.  *data points to it from then on.
 */
typedef struct {
    ngx_str_t                  key;
    size_t                     size;
    void                     **data;
} ngx_http_aigov_shm_block_t;


typedef struct {
    ngx_addr_t                 addr;
    ngx_str_t                  password;
    ngx_int_t                  db;
    ngx_str_t                  prefix;       /* "aigov:" */
    ngx_msec_t                 connect_timeout;
    ngx_msec_t                 command_timeout;
    ngx_msec_t                 backoff_max;
    ngx_msec_t                 sync_interval;
} ngx_http_aigov_redis_conf_t;


typedef struct {
    ngx_rbtree_t               rbtree;
    ngx_rbtree_node_t          sentinel;
    ngx_queue_t                queue;
    ngx_uint_t                 generation;   /* config loads seen */
    time_t                     created;

    /* fleet sync, written by the syncing worker */
    ngx_atomic_t               redis_ready;
    time_t                     redis_since;  /* last state change */
    time_t                     last_sync;
    ngx_uint_t                 redis_failures;
    u_char                     redis_error[128];
} ngx_http_aigov_shctx_t;


typedef struct {
    ngx_http_aigov_shctx_t    *sh;
    ngx_slab_pool_t           *shpool;
    ngx_shm_zone_t            *shm_zone;

    ngx_http_aigov_redis_conf_t *redis;       /* NULL: one node, no Redis */

    ngx_array_t                models;       /* ngx_aigov_model_t * */
    ngx_hash_t                 model_hash;   /* names and aliases */
    ngx_array_t                routes;       /* ngx_http_aigov_loc_conf_t * */
    ngx_array_t               *blocks;       /* ngx_http_aigov_shm_block_t */

    ngx_uint_t                 generation;

    unsigned                   need_handler:1;
    unsigned                   need_header_filter:1;
    unsigned                   need_body_filter:1;
    unsigned                   need_log:1;
} ngx_http_aigov_main_conf_t;


/*
 * The plugins of a location's chain that have each response hook, in the
 * chain's order: the filters and the log handler walk only those.
 */
typedef struct {
    ngx_aigov_plugin_t       **header;
    ngx_uint_t                 nheader;
    ngx_uint_t                 header_rules; /* the rules' header hook runs
                                                before header[header_rules] */
    ngx_aigov_plugin_t       **body;
    ngx_uint_t                 nbody;
    ngx_aigov_plugin_t       **log;
    ngx_uint_t                 nlog;
} ngx_http_aigov_hooks_t;


typedef struct {
    ngx_uint_t                 source;
    ngx_http_complex_value_t  *model_cv;     /* model=... */
    ngx_str_t                  default_name; /* default=... */
    ngx_aigov_model_t         *model;        /* model=NAME, resolved */
    ngx_aigov_model_t         *default_model;
    ngx_array_t               *chain;        /* ngx_aigov_plugin_t *, sorted */
    ngx_http_aigov_hooks_t    *hooks;        /* of the chain */
    void                      *admin;        /* aigov_admin's conf */
    ngx_uint_t                 read_body;    /* before the plugin chain */
    u_char                    *file;
    ngx_uint_t                 line;
} ngx_http_aigov_loc_conf_t;


extern ngx_module_t            ngx_http_aigov_module;
extern ngx_module_t            ngx_http_aigov_chain_module;
extern ngx_aigov_plugin_t     *ngx_aigov_plugins[];
extern ngx_uint_t              ngx_aigov_nplugins;
extern ngx_aigov_plugin_t     *ngx_aigov_plugins_sorted[];


/* ngx_http_aigov_module.c */
ngx_int_t ngx_http_aigov_problem(ngx_http_request_t *r, ngx_uint_t status,
    const char *type, const char *title, ngx_str_t *detail,
    time_t retry_after);
ngx_int_t ngx_http_aigov_keep_json(ngx_http_request_t *r,
    ngx_aigov_ctx_t *ctx, json_t *doc);
ngx_int_t ngx_http_aigov_body_bytes(ngx_http_request_t *r, ngx_str_t *body);
void ngx_http_aigov_decided(ngx_aigov_ctx_t *ctx);
ngx_int_t ngx_http_aigov_send_buf(ngx_http_request_t *r,
    ngx_aigov_ctx_t *ctx, ngx_buf_t *b);

/* ngx_http_aigov_fallback.c */
char *ngx_http_aigov_fallback_directive(ngx_conf_t *cf,
    ngx_aigov_model_t *model);
char *ngx_http_aigov_fallback_rules(ngx_conf_t *cf, ngx_aigov_model_t *model);
ngx_int_t ngx_http_aigov_fallback_init_model(ngx_conf_t *cf,
    ngx_aigov_model_t *model);
ngx_uint_t ngx_http_aigov_rules_use_body(ngx_aigov_model_t *model);
ngx_int_t ngx_http_aigov_fallback_header(ngx_http_request_t *r,
    ngx_aigov_ctx_t *ctx);
ngx_aigov_fallback_e ngx_http_aigov_upstream_failed(ngx_http_request_t *r);
void ngx_http_aigov_clear_representation(ngx_http_request_t *r);
ngx_int_t ngx_http_aigov_fallback_body(ngx_http_request_t *r,
    ngx_aigov_ctx_t *ctx, ngx_chain_t *in,
    ngx_http_output_body_filter_pt next);

/* ngx_http_aigov_model.c */
char *ngx_http_aigov_model_block(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_aigov_model_t *ngx_http_aigov_find_model(ngx_http_aigov_main_conf_t *mcf,
    u_char *name, size_t len);
ngx_int_t ngx_http_aigov_init_models(ngx_conf_t *cf,
    ngx_http_aigov_main_conf_t *mcf);
const char *ngx_http_aigov_decision_name(ngx_aigov_decision_e d);
ngx_int_t ngx_aigov_header_variable(ngx_conf_t *cf, ngx_str_t *value,
    ngx_aigov_header_t *h);

/* ngx_http_aigov_shm.c */
char *ngx_http_aigov_zone(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);

/*
 * Reserves a plugin block of size bytes under key in the zone; *data is
 * set when the zone is initialised (before the workers start).  Keys must
 * not collide with the model and variant nodes' "model" and "model/variant":
 * put a '#' in them, which names cannot hold ("chat/v2#breaker").
 */
ngx_int_t ngx_http_aigov_shm_block(ngx_conf_t *cf, ngx_str_t *key,
    size_t size, void **data);

/* ngx_http_aigov_identity.c */
ngx_int_t ngx_http_aigov_identify(ngx_http_request_t *r,
    ngx_http_aigov_loc_conf_t *alcf, ngx_aigov_ctx_t *ctx);

/* ngx_http_aigov_variables.c */
ngx_int_t ngx_http_aigov_add_variables(ngx_conf_t *cf);

/* ngx_http_aigov_upstream.c */
char *ngx_http_aigov_upstream(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);

/* ngx_http_aigov_control.c */
char *ngx_http_aigov_redis(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
struct ngx_aigov_redis_s *ngx_http_aigov_control_client(void);
ngx_int_t ngx_http_aigov_control_init_worker(ngx_cycle_t *cycle);
void ngx_http_aigov_control_exit_worker(ngx_cycle_t *cycle);
void ngx_http_aigov_control_read(ngx_aigov_model_t *model,
    ngx_http_aigov_control_t *out);
json_t *ngx_http_aigov_control_json(ngx_aigov_model_t *model);
json_t *ngx_http_aigov_redis_json(ngx_http_aigov_main_conf_t *mcf);

/*
 * Messages "WORD REST" on <prefix>control go to the handler registered for
 * WORD, in worker 0 (the subscriber), with REST.  Register from init_worker
 * or at configuration time; word must stay valid (a literal).
 */
typedef void (*ngx_http_aigov_message_pt)(u_char *msg, size_t len);

ngx_int_t ngx_http_aigov_control_on_message(const char *word,
    ngx_http_aigov_message_pt handler);

/*
 * A change from the admin API: "apply" edits a copy of the control state;
 * the result is stored in the zone and, with Redis, in Redis (with an audit
 * entry and a publish) before done() is called.
 */
typedef struct ngx_http_aigov_change_s  ngx_http_aigov_change_t;

typedef void (*ngx_http_aigov_change_done_pt)(ngx_http_aigov_change_t *ch);

#define NGX_HTTP_AIGOV_F_KILL       0x01
#define NGX_HTTP_AIGOV_F_ROLLBACK   0x02
#define NGX_HTTP_AIGOV_F_ACTIVE     0x04
#define NGX_HTTP_AIGOV_F_WEIGHTS    0x08

struct ngx_http_aigov_change_s {
    ngx_aigov_model_t               *model;
    ngx_uint_t                       fields;    /* NGX_HTTP_AIGOV_F_* */
    ngx_http_aigov_control_t         old;
    ngx_http_aigov_control_t         new;
    ngx_str_t                        action;
    ngx_str_t                        actor;     /* token name */
    ngx_str_t                        reason;
    ngx_http_aigov_change_done_pt    done;
    void                            *data;
    void                            *cmd;       /* pending Redis command */
    ngx_uint_t                       propagated;
    ngx_log_t                       *log;
};

ngx_int_t ngx_http_aigov_control_change(ngx_http_aigov_change_t *ch);
void ngx_http_aigov_control_cancel(ngx_http_aigov_change_t *ch);
ngx_int_t ngx_http_aigov_parse_weights(ngx_aigov_model_t *model, u_char *s,
    size_t len, ngx_aigov_runtime_t *rt, ngx_str_t *err);

/*
 * An admin change that is not a control change (a plugin's action): an
 * entry in the audit stream <prefix>audit (its "version" empty: no control
 * version is made) and, when message is not empty, that message published
 * on <prefix>control, in one script.  Never waits: the handler gets the
 * number of the message's receivers (an integer, -1 without a message), an
 * error, or NULL (timeout, connection lost).  Returns NULL, and never calls
 * the handler, when there is no aigov_redis or it is not connected.
 */
typedef struct {
    ngx_aigov_model_t               *model;
    ngx_str_t                        action;
    ngx_str_t                        actor;     /* token name */
    ngx_str_t                        reason;
    ngx_str_t                        old;       /* "state=closed ..." */
    ngx_str_t                        new;
    ngx_str_t                        message;   /* for <prefix>control */
} ngx_http_aigov_record_t;

struct redisReply;

struct ngx_aigov_redis_cmd_s *ngx_http_aigov_control_record(
    ngx_http_aigov_record_t *rec,
    void (*handler)(void *data, struct redisReply *reply), void *data);

/* ngx_http_aigov_admin.c */
char *ngx_http_aigov_admin(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);

/*
 * A plugin's write action in the admin API: POST models/{m}/WORD[/ARG]
 * with an optional JSON body, write tokens only.  The handler applies the
 * change on this node and returns the JSON result, with action, old and
 * result set for the audit record and, to have the fleet follow, message
 * set to what the other nodes should get on <prefix>control; or it returns
 * NULL with status, type, title and detail set for a problem response
 * (status 0: 500).  The core then records the change (error log, and with
 * Redis the audit stream) and publishes message, in one Redis script; it
 * sets propagated when Redis took both.  Strings the handler sets must
 * outlive the request's wait for Redis (pool, literals).
 */
typedef struct {
    ngx_aigov_model_t         *model;
    ngx_str_t                  arg;          /* after "WORD/" */
    json_t                    *body;         /* NULL: none */
    ngx_pool_t                *pool;         /* the request's */
    ngx_log_t                 *log;

    ngx_str_t                  action;       /* "breaker-open v2" */
    ngx_str_t                  old;          /* "state=closed open_ms=0" */
    ngx_str_t                  result;       /* "state=open open_ms=30000" */
    ngx_str_t                  message;      /* for the fleet; empty: none */
    ngx_uint_t                 propagated;   /* the fleet got message */

    ngx_uint_t                 status;       /* error */
    const char                *type;
    const char                *title;
    u_char                     detail[256];
    size_t                     detail_len;
} ngx_http_aigov_admin_action_t;

typedef json_t *(*ngx_http_aigov_admin_action_pt)(
    ngx_http_aigov_admin_action_t *a);

ngx_int_t ngx_http_aigov_admin_on_action(const char *word,
    ngx_http_aigov_admin_action_pt handler);

/* ngx_http_aigov_status.c */
char *ngx_http_aigov_status(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
ngx_int_t ngx_http_aigov_send_json(ngx_http_request_t *r, ngx_uint_t status,
    json_t *doc);


#endif /* NGX_HTTP_AIGOV_MODULE_H_INCLUDED_ */
