/*
 * ngx_aigov public API: core types and the versioned plugin ABI.
 *
 * A plugin is a descriptor (ngx_aigov_plugin_t) plus, when it has
 * directives outside aigov_model{} blocks, an ordinary nginx HTTP module
 * carrying them and its location configuration.  The core calls the hooks
 * of the plugins active in a location in priority order (higher first).
 * "Writing a plugin" in README.md walks through plugins/ngx_aigov_annotate.c.
 */

#ifndef NGX_AIGOV_H_INCLUDED_
#define NGX_AIGOV_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <jansson.h>
#include "aigov_core.h"


/* on the per-request functions of the core and plugins: see aigov_core.h */
#define NGX_AIGOV_HOT                  AIGOV_HOT


/*
 * Bump the major number when a field changes meaning or moves; the core
 * refuses plugins built for another major.  Appending hooks at the end of
 * ngx_aigov_plugin_t bumps the minor number only.
 */
#define NGX_AIGOV_ABI_MAJOR            1
#define NGX_AIGOV_ABI_MINOR            1
#define NGX_AIGOV_ABI                                                        \
    ((NGX_AIGOV_ABI_MAJOR << 16) | NGX_AIGOV_ABI_MINOR)

#define NGX_AIGOV_MAX_PLUGINS          32
#define NGX_AIGOV_MAX_VARIANTS         16

/* Plugin priorities in use; leave gaps.  Higher runs first. */
#define NGX_AIGOV_PRIO_ROLLBACK        1000   /* kill switch, rollback */
#define NGX_AIGOV_PRIO_SKEW            900    /* version policy */
#define NGX_AIGOV_PRIO_LIMIT           800    /* rate limits */
#define NGX_AIGOV_PRIO_BLUEGREEN       600
#define NGX_AIGOV_PRIO_CANARY          500
/*
 * The cache key holds the served version, so the lookup runs once the
 * routing plugins have chosen the variant; before the breaker, so that a
 * fresh entry answers even while the breaker is open, and (in the header
 * filter) at NGX_AIGOV_PRIO_BREAKER or more, so that a stale entry gets its
 * turn before the fallback rules.
 */
#define NGX_AIGOV_PRIO_CACHE           450
#define NGX_AIGOV_PRIO_BREAKER         400
#define NGX_AIGOV_PRIO_SHADOW          300
#define NGX_AIGOV_PRIO_ANNOTATE        100


typedef enum {
    NGX_AIGOV_ROLE_CANDIDATE = 0,
    NGX_AIGOV_ROLE_STABLE
} ngx_aigov_role_e;


typedef struct ngx_aigov_plugin_s   ngx_aigov_plugin_t;
typedef struct ngx_aigov_model_s    ngx_aigov_model_t;
typedef struct ngx_aigov_shm_node_s ngx_aigov_shm_node_t;


typedef struct {
    ngx_str_t                  name;
    ngx_str_t                  upstream;     /* value of $aigov_upstream */
    ngx_http_upstream_srv_conf_t *uscf;      /* the upstream it names */
    ngx_str_t                  version;
    ngx_aigov_role_e           role;
    ngx_uint_t                 index;        /* in model->variants */
    ngx_aigov_shm_node_t      *shm;          /* counters in the zone */
    u_char                    *file;         /* where it was declared */
    ngx_uint_t                 line;
} ngx_aigov_variant_t;


/*
 * Runtime control of a model (admin API, Redis), as this worker last read
 * it from the shared zone.  Refreshed when the zone's version moves on;
 * read it through ngx_aigov_runtime().  Config emergencies still win:
 * "kill_switch on" and "rollback on" in the config cannot be undone here.
 */
typedef struct {
    uint64_t                   version;      /* 0: never set at runtime */
    ngx_int_t                  kill;         /* -1 unset, 0 off, 1 on */
    ngx_int_t                  rollback;     /* -1 unset, 0 off, 1 on */
    ngx_aigov_variant_t       *active;       /* blue-green colour, or NULL */
    ngx_uint_t                 has_weights;
    ngx_uint_t                 n;            /* canary weights */
    uint32_t                   weights[NGX_AIGOV_MAX_VARIANTS];
    ngx_aigov_variant_t       *candidates[NGX_AIGOV_MAX_VARIANTS];
} ngx_aigov_runtime_t;


struct ngx_aigov_model_s {
    ngx_str_t                  name;
    ngx_array_t                aliases;      /* ngx_str_t */
    ngx_array_t                variants;     /* ngx_aigov_variant_t */
    ngx_aigov_variant_t       *stable;
    ngx_uint_t                 index;
    ngx_aigov_shm_node_t      *shm;
    ngx_aigov_runtime_t        runtime;      /* per worker cache */
    void                      *plugin_conf[NGX_AIGOV_MAX_PLUGINS];
    u_char                    *file;
    ngx_uint_t                 line;

    /* ABI 1.1: the fallback chain ("fallback", "fallback_rules") */
    ngx_aigov_variant_t       *fallback[NGX_AIGOV_MAX_VARIANTS];
    ngx_uint_t                 nfallback;    /* 0: straight to the rules */
    void                      *rules;        /* aigov_rules_t *, or NULL */
    ngx_str_t                  rules_file;
    void                      *rules_attrs;  /* core private */
};


/* Why the variant was chosen: the value of $aigov_decision. */
typedef enum {
    NGX_AIGOV_DECISION_NONE = 0,
    NGX_AIGOV_DECISION_KILL,          /* model switched off */
    NGX_AIGOV_DECISION_ROLLBACK,      /* everything to stable */
    NGX_AIGOV_DECISION_PINNED,        /* version named in the request */
    NGX_AIGOV_DECISION_HEADER,        /* canary header override */
    NGX_AIGOV_DECISION_COOKIE,        /* canary cookie override */
    NGX_AIGOV_DECISION_STICKY,        /* hashed key */
    NGX_AIGOV_DECISION_WEIGHT,        /* weighted random */
    NGX_AIGOV_DECISION_PREVIEW,       /* blue-green preview header */
    NGX_AIGOV_DECISION_ACTIVE,        /* blue-green active colour */
    NGX_AIGOV_DECISION_STABLE,        /* no routing plugin had an opinion */
    NGX_AIGOV_DECISION_LAST
} ngx_aigov_decision_e;


/*
 * Why a request did not get its model's answer: the value of
 * $aigov_fallback ("breaker_open", ...) and of the X-Aigov-Fallback header.
 */
typedef enum {
    NGX_AIGOV_FALLBACK_NONE = 0,
    NGX_AIGOV_FALLBACK_BREAKER,       /* the variant's breaker is open */
    NGX_AIGOV_FALLBACK_KILL,          /* the model's kill switch */
    NGX_AIGOV_FALLBACK_UPSTREAM_ERROR,    /* failed before the first byte */
    NGX_AIGOV_FALLBACK_UPSTREAM_TIMEOUT,  /* timed out before it */
    NGX_AIGOV_FALLBACK_LAST
} ngx_aigov_fallback_e;


/* Per-request context, allocated from r->pool on the first decision. */
typedef struct {
    ngx_aigov_model_t         *model;
    ngx_aigov_variant_t       *variant;      /* NULL until chosen */
    ngx_aigov_decision_e       decision;
    ngx_str_t                  requested_version;   /* from the path */
    void                      *json;         /* parsed body (json_t *) */
    ngx_str_t                  body;         /* contiguous body, if read */
    ngx_array_t               *plugins;      /* the location's chain */
    ngx_uint_t                 next_plugin;  /* resume point (NGX_AGAIN) */
    ngx_msec_t                 start;
    void                      *plugin_ctx[NGX_AIGOV_MAX_PLUGINS];
    unsigned                   decided:1;    /* decision phase finished */
    unsigned                   body_read:1;
    unsigned                   responded:1;  /* aigov sent the response */
    unsigned                   counted:1;    /* decision in the counters */

    /* ABI 1.1 */
    ngx_aigov_fallback_e       fallback;     /* NONE: the model answered */
    ngx_str_t                  fallback_rule;    /* the rule that answered */
    void                      *fallback_out;     /* core private */
    unsigned                   json_failed:1;    /* body is not JSON */
    void                      *hooks;            /* core private */
} ngx_aigov_ctx_t;


/*
 * The header and body hooks run in the core's filters, which sit above
 * (run before) the nginx filters a plugin module registers itself: the
 * hooks see a response as the upstream sent it; a plugin that rewrites
 * bodies (skew) does it in its own filters, after them.
 *
 * Return values of decide():
 *   NGX_DECLINED   no opinion, go on with the next plugin;
 *   NGX_OK         acted (e.g. chose a variant), go on;
 *   NGX_AGAIN      suspended: the plugin resumes r later (it must post
 *                  ngx_http_core_run_phases); the core calls the same
 *                  plugin's decide() again when the phase is re-entered;
 *   NGX_DONE       a response was sent (ngx_aigov_send_problem() returns
 *                  this); no further plugin runs;
 *   NGX_ERROR / NGX_HTTP_*   finalize r with that code.
 */
typedef ngx_int_t (*ngx_aigov_decide_pt)(ngx_http_request_t *r,
    ngx_aigov_ctx_t *ctx);
typedef ngx_int_t (*ngx_aigov_header_filter_pt)(ngx_http_request_t *r,
    ngx_aigov_ctx_t *ctx);
typedef ngx_int_t (*ngx_aigov_body_filter_pt)(ngx_http_request_t *r,
    ngx_aigov_ctx_t *ctx, ngx_chain_t *in);
typedef void (*ngx_aigov_log_pt)(ngx_http_request_t *r, ngx_aigov_ctx_t *ctx);
/* Adds the plugin's view of a model to the status document (jansson). */
typedef ngx_int_t (*ngx_aigov_status_pt)(ngx_aigov_model_t *model,
    void *conf, json_t *out);


struct ngx_aigov_plugin_s {
    ngx_uint_t                 abi;          /* NGX_AIGOV_ABI */
    const char                *name;
    const char                *version;
    ngx_int_t                  priority;

    /*
     * The nginx module holding the plugin's directives outside model
     * blocks and its location conf; NULL when it has none.
     */
    ngx_module_t              *module;

    /* Directives inside aigov_model{}; conf is the plugin's model conf. */
    ngx_command_t             *model_commands;
    void                    *(*create_model_conf)(ngx_conf_t *cf,
                                                  ngx_aigov_model_t *model);
    /* Called once the model block is parsed: validate, fill defaults. */
    char                    *(*init_model_conf)(ngx_conf_t *cf,
                                                ngx_aigov_model_t *model,
                                                void *conf);

    /*
     * Is the plugin active in a location?  Gets the plugin's merged loc
     * conf (NULL without a module).  NULL: active wherever aigov routes.
     */
    ngx_int_t                (*enabled)(void *loc_conf);

    ngx_int_t                (*init_worker)(ngx_cycle_t *cycle);

    ngx_aigov_decide_pt        decide;
    ngx_aigov_header_filter_pt header_filter;
    ngx_aigov_body_filter_pt   body_filter;
    ngx_aigov_log_pt           log;
    ngx_aigov_status_pt        status;

    ngx_uint_t                 index;        /* set by the core */

    /*
     * ABI 1.1.  Does the plugin need the request body in a location (gets
     * the plugin's merged loc conf, NULL without a module)?  Then the core
     * reads it before any decide() runs: ctx->body holds it when it fit in
     * client_body_buffer_size (else ctx->body is empty and
     * r->request_body->temp_file is set), and ngx_aigov_body_json() parses
     * it.  NULL: no.
     */
    ngx_int_t                (*needs_body)(void *loc_conf);
};


/* Services the core offers to plugins. */

ngx_aigov_ctx_t *ngx_aigov_get_ctx(ngx_http_request_t *r);

/* The model's runtime control, refreshed from the zone when it changed. */
ngx_aigov_runtime_t *ngx_aigov_runtime(ngx_aigov_model_t *model);

/* The plugin's conf for a model; NULL when the block did not use it. */
#define ngx_aigov_model_conf(model, plugin)                                  \
    ((model)->plugin_conf[(plugin).index])

#define ngx_aigov_plugin_ctx(ctx, plugin)                                    \
    ((ctx)->plugin_ctx[(plugin).index])

ngx_aigov_variant_t *ngx_aigov_find_variant(ngx_aigov_model_t *model,
    ngx_str_t *name);

/* Sets the variant and the reason (counted when the decision ends). */
void ngx_aigov_choose(ngx_http_request_t *r, ngx_aigov_ctx_t *ctx,
    ngx_aigov_variant_t *v, ngx_aigov_decision_e decision);

/*
 * Sends an RFC 9457 problem response (application/problem+json) and
 * finalizes the request: return its result (NGX_DONE) from decide() at
 * once, touching neither r nor ctx again: both may be freed by then.  type is the
 * last part of the problem type URI; detail is printed as given.
 * retry_after > 0 adds a Retry-After header (seconds).
 */
ngx_int_t ngx_aigov_send_problem(ngx_http_request_t *r, ngx_uint_t status,
    const char *type, const char *title, ngx_str_t *detail,
    time_t retry_after);

/*
 * The model could not answer (reason): answers from the model's
 * fallback_rules when it has them and a rule (or the default) matches,
 * else with the problem response ngx_aigov_send_problem() would send.
 * The response carries X-Aigov-Fallback and $aigov_fallback.  Finalizes
 * the request like ngx_aigov_send_problem(): return its result (NGX_DONE)
 * at once, touching neither r nor ctx again.  When the rules read the
 * request body and nobody has read it yet, it is read first and the answer
 * goes out once it is in (NGX_DONE all the same; an error reading it
 * returns its status, e.g. 413, or nginx finalizes the request with it).
 */
ngx_int_t ngx_aigov_fallback(ngx_http_request_t *r, ngx_aigov_ctx_t *ctx,
    ngx_aigov_fallback_e reason, ngx_uint_t status, const char *type,
    const char *title, ngx_str_t *detail, time_t retry_after);

/*
 * A variant of the model's fallback chain ("fallback v1 v2;", by default
 * the stable variant) takes the request instead of ctx->variant: sets the
 * variant and the reason; the decision ($aigov_decision) is kept.
 */
void ngx_aigov_fallback_variant(ngx_http_request_t *r, ngx_aigov_ctx_t *ctx,
    ngx_aigov_variant_t *v, ngx_aigov_fallback_e reason);

/*
 * From a header filter: the response going out is replaced.  The caller has
 * set r->headers_out (status, Content-Type, content_length_n...); the body
 * nginx or the upstream sends is dropped and body (NULL: none) goes out
 * instead.  Headers a fallback rule added go too (the rule's answer is
 * replaced whole).  NGX_DECLINED when an earlier plugin or the fallback
 * rules replaced it already.  A stale cache entry answering for a failed upstream
 * uses this before the rules get their turn (plugins with a priority of
 * NGX_AIGOV_PRIO_BREAKER or more run first).
 */
ngx_int_t ngx_aigov_replace_response(ngx_http_request_t *r,
    ngx_aigov_ctx_t *ctx, ngx_buf_t *body);

/* "breaker_open", "kill_switch", "upstream_error", "upstream_timeout" */
const char *ngx_aigov_fallback_name(ngx_aigov_fallback_e reason);

/*
 * The request body parsed as JSON (a json_t * owned by the request: do not
 * decref it), or NULL when there is no body, it was not read, did not fit
 * in memory or is not JSON.  Parsed once, on the first call: ctx->body, or
 * else the body nginx has read since (r->request_body).
 */
void *ngx_aigov_body_json(ngx_http_request_t *r, ngx_aigov_ctx_t *ctx);

/*
 * Configuration helpers for model directives.  ngx_aigov_conf_variant()
 * looks a variant of the model being parsed up by name and logs a precise
 * error when there is none; the index helpers return the index of the
 * $http_NAME / $cookie_NAME variable (NGX_ERROR on failure).
 */
ngx_aigov_variant_t *ngx_aigov_conf_variant(ngx_conf_t *cf, ngx_str_t *name);
ngx_int_t ngx_aigov_cookie_index(ngx_conf_t *cf, ngx_str_t *cookie);

/*
 * A request header looked up on the request path by the hash nginx
 * already computed for every header while parsing, instead of through a
 * $http_ variable (which compares every header's name, case-insensitively).
 * ngx_aigov_header_get() finds the first one: NGX_OK or NGX_DECLINED.
 */
typedef struct {
    ngx_str_t                  name;         /* as configured */
    ngx_str_t                  lowcase;
    ngx_uint_t                 hash;
} ngx_aigov_header_t;

ngx_int_t ngx_aigov_header_prepare(ngx_conf_t *cf, ngx_str_t *name,
    ngx_aigov_header_t *h);
ngx_int_t ngx_aigov_header_get(ngx_http_request_t *r, ngx_aigov_header_t *h,
    ngx_str_t *value);

/* An extra response header on the way out (for header filters). */
ngx_int_t ngx_aigov_add_header(ngx_http_request_t *r, ngx_str_t *name,
    ngx_str_t *value);


#endif /* NGX_AIGOV_H_INCLUDED_ */
