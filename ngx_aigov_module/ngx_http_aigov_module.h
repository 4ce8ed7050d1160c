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


/* One node per model and per model/variant in the shared zone. */
struct ngx_aigov_shm_node_s {
    ngx_str_node_t             sn;           /* key: "model" or "model/v" */
    ngx_queue_t                queue;
    ngx_uint_t                 generation;   /* last config that used it */
    ngx_atomic_t               requests;     /* variant nodes */
    ngx_atomic_t               decisions[NGX_AIGOV_DECISION_LAST]; /* model */
    u_char                     key[1];
};


typedef struct {
    ngx_rbtree_t               rbtree;
    ngx_rbtree_node_t          sentinel;
    ngx_queue_t                queue;
    ngx_uint_t                 generation;   /* config loads seen */
    time_t                     created;
} ngx_http_aigov_shctx_t;


typedef struct {
    ngx_http_aigov_shctx_t    *sh;
    ngx_slab_pool_t           *shpool;
    ngx_shm_zone_t            *shm_zone;

    ngx_array_t                models;       /* ngx_aigov_model_t * */
    ngx_hash_t                 model_hash;   /* names and aliases */
    ngx_array_t                routes;       /* ngx_http_aigov_loc_conf_t * */

    ngx_uint_t                 generation;

    unsigned                   need_handler:1;
    unsigned                   need_header_filter:1;
    unsigned                   need_body_filter:1;
    unsigned                   need_log:1;
} ngx_http_aigov_main_conf_t;


typedef struct {
    ngx_uint_t                 source;
    ngx_http_complex_value_t  *model_cv;     /* model=... */
    ngx_str_t                  default_name; /* default=... */
    ngx_aigov_model_t         *model;        /* model=NAME, resolved */
    ngx_aigov_model_t         *default_model;
    ngx_array_t               *chain;        /* ngx_aigov_plugin_t *, sorted */
    u_char                    *file;
    ngx_uint_t                 line;
} ngx_http_aigov_loc_conf_t;


extern ngx_module_t            ngx_http_aigov_module;
extern ngx_module_t            ngx_http_aigov_chain_module;
extern ngx_aigov_plugin_t     *ngx_aigov_plugins[];
extern ngx_uint_t              ngx_aigov_nplugins;
extern ngx_aigov_plugin_t     *ngx_aigov_plugins_sorted[];


/* ngx_http_aigov_module.c */
ngx_int_t ngx_http_aigov_keep_json(ngx_http_request_t *r,
    ngx_aigov_ctx_t *ctx, json_t *doc);

/* ngx_http_aigov_model.c */
char *ngx_http_aigov_model_block(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_aigov_model_t *ngx_http_aigov_find_model(ngx_http_aigov_main_conf_t *mcf,
    u_char *name, size_t len);
ngx_int_t ngx_http_aigov_init_models(ngx_conf_t *cf,
    ngx_http_aigov_main_conf_t *mcf);
const char *ngx_http_aigov_decision_name(ngx_aigov_decision_e d);

/* ngx_http_aigov_shm.c */
char *ngx_http_aigov_zone(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);

/* ngx_http_aigov_identity.c */
ngx_int_t ngx_http_aigov_identify(ngx_http_request_t *r,
    ngx_http_aigov_loc_conf_t *alcf, ngx_aigov_ctx_t *ctx);

/* ngx_http_aigov_variables.c */
ngx_int_t ngx_http_aigov_add_variables(ngx_conf_t *cf);

/* ngx_http_aigov_upstream.c */
char *ngx_http_aigov_upstream(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);

/* ngx_http_aigov_status.c */
char *ngx_http_aigov_status(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);


#endif /* NGX_HTTP_AIGOV_MODULE_H_INCLUDED_ */
