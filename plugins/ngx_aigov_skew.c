/*
 * ngx_aigov skew plugin: version skew between client apps and model APIs.
 *
 *   aigov_model chat {
 *       variant v1 chat_v1 stable;
 *       variant v2 chat_v2;
 *       client_version  header=X-Client-Version default=1.0;
 *       version_minimum 1.0;                      # below: 400 problem
 *       version_range   ">=2.0" v2;
 *       version_range   ">=1.0 <2.0" v1 deprecated=2026-01-01
 *                       sunset=2026-12-31 link=https://example.com/migrate;
 *       version_adapt   "<2.0" rename=choices[*].message.content:
 *                       choices[*].text remove=usage.details;
 *   }
 *
 * The decision (priority 900, after the kill switch and rollback, before
 * rate limits and routing) reads the client's version, refuses invalid and
 * unsupported ones with an RFC 9457 problem listing the supported ranges,
 * and pins the request to the variant of the first range that matches
 * (decision "pinned"; a KServe path pin or a rollback that chose already
 * wins, as canary and blue-green let them).  The header hook adds
 * Deprecation (RFC 9745), Sunset (RFC 8594) and Link for deprecated
 * ranges.  The plugin's own nginx filters, which sit below the core's
 * (the core's hooks see what the upstream sent), hold back the header of
 * a JSON response to be adapted, buffer its body up to
 * version_adapt_buffer, rewrite it (aigov_version.h) and send it with its
 * new Content-Length; anything else passes untouched.
 */

#include "ngx_http_aigov_module.h"
#include "aigov_version.h"


#define NGX_AIGOV_SKEW_SRC_HEADER      1
#define NGX_AIGOV_SKEW_SRC_PATH        2
#define NGX_AIGOV_SKEW_SRC_VARIABLE    3

#define NGX_AIGOV_SKEW_MAX_RANGES      32
#define NGX_AIGOV_SKEW_MAX_ADAPTS      32
#define NGX_AIGOV_SKEW_MAX_OPS         16
#define NGX_AIGOV_SKEW_SHOW_MAX        64

/* r->buffered: the body is held here (the image filter's bit) */
#define NGX_AIGOV_SKEW_BUFFERED        0x08

#define NGX_AIGOV_SKEW_ZONE_SIZE       (256 * 1024)


/* $aigov_version_status, and counters 0..4 */
#define NGX_AIGOV_SKEW_ST_NONE         0    /* no policy ran */
#define NGX_AIGOV_SKEW_ST_OK           1
#define NGX_AIGOV_SKEW_ST_DEPRECATED   2
#define NGX_AIGOV_SKEW_ST_ABSENT       3    /* no version, no default */
#define NGX_AIGOV_SKEW_ST_INVALID      4
#define NGX_AIGOV_SKEW_ST_UNSUPPORTED  5

/* $aigov_version_adapt, and counters 5..10 */
#define NGX_AIGOV_SKEW_AD_NONE         0    /* no version_adapt matched */
#define NGX_AIGOV_SKEW_AD_PENDING      1    /* buffering */
#define NGX_AIGOV_SKEW_AD_ADAPTED      2
#define NGX_AIGOV_SKEW_AD_UNCHANGED    3
#define NGX_AIGOV_SKEW_AD_TOO_LARGE    4
#define NGX_AIGOV_SKEW_AD_NOT_JSON     5
#define NGX_AIGOV_SKEW_AD_SKIPPED      6
#define NGX_AIGOV_SKEW_AD_STREAM       7
#define NGX_AIGOV_SKEW_AD_PASS         8    /* over the bound: passing on */
#define NGX_AIGOV_SKEW_AD_PASS_FILE    9    /* in a file: passing on */

#define NGX_AIGOV_SKEW_NCOUNTERS       11

/* why a version is refused */
#define NGX_AIGOV_SKEW_INVALID         0
#define NGX_AIGOV_SKEW_BELOW_MINIMUM   1
#define NGX_AIGOV_SKEW_NO_RANGE        2


typedef struct {
    ngx_queue_t                queue;
    ngx_atomic_t               count[NGX_AIGOV_SKEW_NCOUNTERS];
    size_t                     len;
    u_char                     name[1];
} ngx_aigov_skew_node_t;


typedef struct {
    ngx_queue_t                nodes;
} ngx_aigov_skew_sh_t;


typedef struct {
    ngx_slab_pool_t           *shpool;
    ngx_aigov_skew_sh_t       *sh;
    ngx_array_t               *models;       /* ngx_aigov_model_t * */
} ngx_aigov_skew_zone_t;


typedef struct {
    ngx_str_t                  text;         /* as configured */
    aigov_range_t              range;
    ngx_aigov_variant_t       *variant;      /* NULL: "*", usual routing */
    time_t                     deprecated;   /* -1: none */
    time_t                     sunset;       /* -1: none */
    ngx_str_t                  deprecation;  /* header values, prepared */
    ngx_str_t                  sunset_date;
    ngx_str_t                  link;
} ngx_aigov_skew_range_t;


typedef struct {
    ngx_str_t                  text;
    aigov_range_t              range;
    ngx_uint_t                 nops;
    aigov_adapt_op_t          *ops;
    ngx_str_t                 *op_text;
    ngx_flag_t                 always;       /* any status, not only 2xx */
} ngx_aigov_skew_adapt_t;


typedef struct {
    ngx_uint_t                 source;       /* 0: no client_version */
    ngx_str_t                  source_text;  /* for messages */
    ngx_aigov_header_t         header;
    ngx_http_complex_value_t  *cv;
    ngx_str_t                  default_text;
    ngx_array_t                ranges;       /* ngx_aigov_skew_range_t */
    ngx_str_t                  minimum_text;
    aigov_range_t              minimum;
    ngx_array_t                adapts;       /* ngx_aigov_skew_adapt_t */
    size_t                     buffer;
    ngx_flag_t                 dry_run;
    ngx_uint_t                 log_level;
    ngx_aigov_skew_node_t     *counters;     /* in the zone, or NULL */
} ngx_aigov_skew_conf_t;


typedef struct {
    ngx_str_t                  version;      /* as sent, or the default */
    ngx_aigov_skew_range_t    *range;        /* the range that matched */
    ngx_uint_t                 status;       /* NGX_AIGOV_SKEW_ST_* */
    uint32_t                   adapts;       /* version_adapt lines, bits */
    ngx_uint_t                 adapt;        /* NGX_AIGOV_SKEW_AD_* */
    u_char                    *buf;          /* the body, held back */
    size_t                     len;
    size_t                     size;
} ngx_aigov_skew_ctx_t;


static ngx_int_t ngx_aigov_skew_decide(ngx_http_request_t *r,
    ngx_aigov_ctx_t *ctx);
static ngx_int_t ngx_aigov_skew_client_version(ngx_http_request_t *r,
    ngx_aigov_skew_conf_t *conf, ngx_str_t *value);
static ngx_int_t ngx_aigov_skew_reject(ngx_http_request_t *r,
    ngx_aigov_ctx_t *ctx, ngx_aigov_skew_conf_t *conf, ngx_uint_t why,
    const char *err);
static ngx_int_t ngx_aigov_skew_problem(ngx_http_request_t *r,
    ngx_aigov_ctx_t *ctx, ngx_aigov_skew_conf_t *conf, ngx_uint_t why,
    ngx_str_t *shown, const char *err);
static void ngx_aigov_skew_json_cleanup(void *data);
static void ngx_aigov_skew_show(ngx_http_request_t *r, ngx_str_t *in,
    ngx_str_t *out);
static ngx_int_t ngx_aigov_skew_header_hook(ngx_http_request_t *r,
    ngx_aigov_ctx_t *ctx);
static ngx_int_t ngx_aigov_skew_header_filter(ngx_http_request_t *r);
static ngx_uint_t ngx_aigov_skew_eligible(ngx_http_request_t *r,
    ngx_aigov_ctx_t *ctx, ngx_aigov_skew_conf_t *conf,
    ngx_aigov_skew_ctx_t *sctx);
static ngx_int_t ngx_aigov_skew_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in);
static ngx_int_t ngx_aigov_skew_pass(ngx_http_request_t *r,
    ngx_aigov_skew_ctx_t *sctx, ngx_chain_t *rest);
static ngx_int_t ngx_aigov_skew_finish(ngx_http_request_t *r,
    ngx_aigov_ctx_t *ctx, ngx_aigov_skew_ctx_t *sctx);
static void ngx_aigov_skew_count(ngx_aigov_skew_conf_t *conf, ngx_uint_t i);
static ngx_int_t ngx_aigov_skew_status(ngx_aigov_model_t *model, void *conf,
    json_t *out);
static ngx_int_t ngx_aigov_skew_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);

static void *ngx_aigov_skew_create_model_conf(ngx_conf_t *cf,
    ngx_aigov_model_t *model);
static char *ngx_aigov_skew_init_model_conf(ngx_conf_t *cf,
    ngx_aigov_model_t *model, void *conf);
static char *ngx_aigov_skew_client_version_directive(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_aigov_skew_range_directive(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_aigov_skew_minimum_directive(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_aigov_skew_adapt_directive(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_aigov_skew_buffer_directive(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static void *ngx_aigov_skew_conf_line(ngx_conf_t *cf, ngx_array_t *lines,
    ngx_uint_t max);
static ngx_int_t ngx_aigov_skew_conf_range(ngx_conf_t *cf,
    aigov_range_t *range);
static ngx_int_t ngx_aigov_skew_preconfiguration(ngx_conf_t *cf);
static ngx_int_t ngx_aigov_skew_postconfiguration(ngx_conf_t *cf);
static ngx_int_t ngx_aigov_skew_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);


static ngx_conf_enum_t  ngx_aigov_skew_log_levels[] = {
    { ngx_string("info"), NGX_LOG_INFO },
    { ngx_string("notice"), NGX_LOG_NOTICE },
    { ngx_string("warn"), NGX_LOG_WARN },
    { ngx_string("error"), NGX_LOG_ERR },
    { ngx_null_string, 0 }
};


static ngx_command_t  ngx_aigov_skew_model_commands[] = {

    { ngx_string("client_version"),
      NGX_CONF_TAKE12,
      ngx_aigov_skew_client_version_directive,
      0,
      0,
      NULL },

    { ngx_string("version_range"),
      NGX_CONF_2MORE,
      ngx_aigov_skew_range_directive,
      0,
      0,
      NULL },

    { ngx_string("version_minimum"),
      NGX_CONF_TAKE1,
      ngx_aigov_skew_minimum_directive,
      0,
      0,
      NULL },

    { ngx_string("version_adapt"),
      NGX_CONF_2MORE,
      ngx_aigov_skew_adapt_directive,
      0,
      0,
      NULL },

    { ngx_string("version_adapt_buffer"),
      NGX_CONF_TAKE1,
      ngx_aigov_skew_buffer_directive,
      0,
      0,
      NULL },

    { ngx_string("version_dry_run"),
      NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      0,
      offsetof(ngx_aigov_skew_conf_t, dry_run),
      NULL },

    { ngx_string("version_log_level"),
      NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      0,
      offsetof(ngx_aigov_skew_conf_t, log_level),
      &ngx_aigov_skew_log_levels },

      ngx_null_command
};


static ngx_http_module_t  ngx_aigov_skew_module_ctx = {
    ngx_aigov_skew_preconfiguration,       /* preconfiguration */
    ngx_aigov_skew_postconfiguration,      /* postconfiguration */
    NULL,                                  /* create main configuration */
    NULL,                                  /* init main configuration */
    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */
    NULL,                                  /* create location configuration */
    NULL                                   /* merge location configuration */
};


/*
 * An nginx module of its own for the filters that adapt bodies, the
 * variables and the counters' zone; the directives are all model
 * directives.
 */
ngx_module_t  ngx_aigov_skew_module = {
    NGX_MODULE_V1,
    &ngx_aigov_skew_module_ctx,            /* module context */
    NULL,                                  /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL, NULL, NULL, NULL, NULL, NULL, NULL,
    NGX_MODULE_V1_PADDING
};


ngx_aigov_plugin_t  ngx_aigov_skew_plugin = {
    NGX_AIGOV_ABI,
    "skew",
    "1.0.0",
    NGX_AIGOV_PRIO_SKEW,
    &ngx_aigov_skew_module,                /* nginx module */
    ngx_aigov_skew_model_commands,
    ngx_aigov_skew_create_model_conf,
    ngx_aigov_skew_init_model_conf,
    NULL,                                  /* enabled: wherever aigov routes */
    NULL,                                  /* init worker */
    ngx_aigov_skew_decide,
    ngx_aigov_skew_header_hook,            /* Deprecation, Sunset, Link */
    NULL,                                  /* body filter: our own, below */
    NULL,                                  /* log */
    ngx_aigov_skew_status,
    0,
    NULL                                   /* needs body */
};


static ngx_http_variable_t  ngx_aigov_skew_vars[] = {

    { ngx_string("aigov_client_version"), NULL, ngx_aigov_skew_variable,
      0, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("aigov_version_range"), NULL, ngx_aigov_skew_variable,
      1, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("aigov_version_status"), NULL, ngx_aigov_skew_variable,
      2, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("aigov_version_adapt"), NULL, ngx_aigov_skew_variable,
      3, NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


static ngx_str_t  ngx_aigov_skew_status_names[] = {
    ngx_null_string,
    ngx_string("ok"),
    ngx_string("deprecated"),
    ngx_string("none"),
    ngx_string("invalid"),
    ngx_string("unsupported")
};


static ngx_str_t  ngx_aigov_skew_adapt_names[] = {
    ngx_null_string,
    ngx_null_string,
    ngx_string("adapted"),
    ngx_string("unchanged"),
    ngx_string("too_large"),
    ngx_string("not_json"),
    ngx_string("skipped"),
    ngx_string("stream"),
    ngx_string("too_large"),
    ngx_string("skipped")
};


static const char  *ngx_aigov_skew_counter_names[] = {
    "ok", "deprecated", "none", "invalid", "unsupported",
    "adapted", "unchanged", "too_large", "not_json", "skipped", "stream"
};


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;
static ngx_http_output_body_filter_pt    ngx_http_next_body_filter;

static ngx_uint_t  ngx_aigov_skew_used;      /* a model has a policy */
static ngx_uint_t  ngx_aigov_skew_adapting;  /* ... with version_adapt */


/* The decision. */

NGX_AIGOV_HOT
static ngx_int_t
ngx_aigov_skew_decide(ngx_http_request_t *r, ngx_aigov_ctx_t *ctx)
{
    char                     err[96];
    ngx_int_t                rc;
    ngx_str_t                value;
    ngx_uint_t               i;
    aigov_version_t          v;
    ngx_aigov_skew_ctx_t    *sctx;
    ngx_aigov_skew_conf_t   *conf;
    ngx_aigov_skew_range_t  *rg;
    ngx_aigov_skew_adapt_t  *ad;

    conf = ngx_aigov_model_conf(ctx->model, ngx_aigov_skew_plugin);

    if (conf == NULL || conf->source == 0) {
        return NGX_DECLINED;
    }

    sctx = ngx_pcalloc(r->pool, sizeof(ngx_aigov_skew_ctx_t));
    if (sctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_aigov_plugin_ctx(ctx, ngx_aigov_skew_plugin) = sctx;

    rc = ngx_aigov_skew_client_version(r, conf, &value);
    if (rc != NGX_OK) {
        return rc;
    }

    if (value.len == 0) {
        if (conf->default_text.len == 0) {
            /* no version: the usual routing, no policy */
            sctx->status = NGX_AIGOV_SKEW_ST_ABSENT;
            ngx_aigov_skew_count(conf, NGX_AIGOV_SKEW_ST_ABSENT - 1);
            return NGX_DECLINED;
        }

        value = conf->default_text;
    }

    sctx->version = value;

    if (aigov_version_parse((char *) value.data, value.len, &v, err,
                            sizeof(err))
        != AIGOV_OK)
    {
        return ngx_aigov_skew_reject(r, ctx, conf, NGX_AIGOV_SKEW_INVALID,
                                     err);
    }

    sctx->status = NGX_AIGOV_SKEW_ST_OK;

    if (conf->minimum_text.len && !aigov_range_match(&conf->minimum, &v)) {
        rc = ngx_aigov_skew_reject(r, ctx, conf,
                                   NGX_AIGOV_SKEW_BELOW_MINIMUM, NULL);
        if (rc != NGX_DECLINED) {
            return rc;
        }
    }

    rg = conf->ranges.elts;

    for (i = 0; i < conf->ranges.nelts; i++) {
        if (aigov_range_match(&rg[i].range, &v)) {
            break;
        }
    }

    if (i < conf->ranges.nelts) {
        sctx->range = &rg[i];

        if (sctx->status == NGX_AIGOV_SKEW_ST_OK
            && (rg[i].deprecated != -1 || rg[i].sunset != -1))
        {
            sctx->status = NGX_AIGOV_SKEW_ST_DEPRECATED;
        }

        /* a version pinned in the path, or a rollback, chose already */
        if (rg[i].variant && ctx->variant == NULL) {
            ngx_aigov_choose(r, ctx, rg[i].variant,
                             NGX_AIGOV_DECISION_PINNED);
        }

    } else if (conf->ranges.nelts && sctx->status == NGX_AIGOV_SKEW_ST_OK) {
        rc = ngx_aigov_skew_reject(r, ctx, conf, NGX_AIGOV_SKEW_NO_RANGE,
                                   NULL);
        if (rc != NGX_DECLINED) {
            return rc;
        }
    }

    if (sctx->status == NGX_AIGOV_SKEW_ST_OK
        || sctx->status == NGX_AIGOV_SKEW_ST_DEPRECATED)
    {
        ngx_aigov_skew_count(conf, sctx->status - 1);
    }

    ad = conf->adapts.elts;

    for (i = 0; i < conf->adapts.nelts; i++) {
        if (aigov_range_match(&ad[i].range, &v)) {
            sctx->adapts |= (uint32_t) 1 << i;
        }
    }

    return (sctx->range && sctx->range->variant) ? NGX_OK : NGX_DECLINED;
}


/* The client's version as sent: empty when there is none. */

static ngx_int_t
ngx_aigov_skew_client_version(ngx_http_request_t *r,
    ngx_aigov_skew_conf_t *conf, ngx_str_t *value)
{
    u_char  *p, *end, *seg;

    ngx_str_null(value);

    switch (conf->source) {

    case NGX_AIGOV_SKEW_SRC_HEADER:
        (void) ngx_aigov_header_get(r, &conf->header, value);
        return NGX_OK;

    case NGX_AIGOV_SKEW_SRC_VARIABLE:
        if (ngx_http_complex_value(r, conf->cv, value) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return NGX_OK;

    default: /* NGX_AIGOV_SKEW_SRC_PATH */

        /* the first segment that is "v" and a digit on: /api/v2.1/chat */

        p = r->uri.data;
        end = p + r->uri.len;

        while (p < end) {
            if (*p == '/') {
                p++;
                continue;
            }

            seg = p;

            while (p < end && *p != '/') {
                p++;
            }

            if (p - seg >= 2 && (seg[0] == 'v' || seg[0] == 'V')
                && seg[1] >= '0' && seg[1] <= '9')
            {
                value->data = seg;
                value->len = p - seg;
                return NGX_OK;
            }
        }

        return NGX_OK;
    }
}


/*
 * An invalid or unsupported version: logged and counted, then refused
 * with a problem response (NGX_DONE), or let through in dry-run mode
 * (NGX_DECLINED, the status stays for $aigov_version_status).
 */

static ngx_int_t
ngx_aigov_skew_reject(ngx_http_request_t *r, ngx_aigov_ctx_t *ctx,
    ngx_aigov_skew_conf_t *conf, ngx_uint_t why, const char *err)
{
    ngx_str_t              shown;
    const char            *dry;
    ngx_aigov_skew_ctx_t  *sctx;

    sctx = ngx_aigov_plugin_ctx(ctx, ngx_aigov_skew_plugin);
    sctx->status = (why == NGX_AIGOV_SKEW_INVALID)
                   ? NGX_AIGOV_SKEW_ST_INVALID : NGX_AIGOV_SKEW_ST_UNSUPPORTED;

    ngx_aigov_skew_count(conf, sctx->status - 1);
    ngx_aigov_skew_show(r, &sctx->version, &shown);

    dry = conf->dry_run ? " (dry run)" : "";

    switch (why) {

    case NGX_AIGOV_SKEW_INVALID:
        ngx_log_error(conf->log_level, r->connection->log, 0,
                      "aigov model \"%V\": invalid client version \"%V\" "
                      "from %V: %s%s", &ctx->model->name, &shown,
                      &conf->source_text, err, dry);
        break;

    case NGX_AIGOV_SKEW_BELOW_MINIMUM:
        ngx_log_error(conf->log_level, r->connection->log, 0,
                      "aigov model \"%V\": unsupported client version "
                      "\"%V\": below the minimum %V%s", &ctx->model->name,
                      &shown, &conf->minimum_text, dry);
        break;

    default: /* NGX_AIGOV_SKEW_NO_RANGE */
        ngx_log_error(conf->log_level, r->connection->log, 0,
                      "aigov model \"%V\": unsupported client version "
                      "\"%V\": in no version_range%s", &ctx->model->name,
                      &shown, dry);
        break;
    }

    if (conf->dry_run) {
        return NGX_DECLINED;
    }

    return ngx_aigov_skew_problem(r, ctx, conf, why, &shown, err);
}


/*
 * The problem response, with the supported ranges as a member: like
 * ngx_aigov_send_problem(), it finalizes r; return its NGX_DONE at once.
 */

static ngx_int_t
ngx_aigov_skew_problem(ngx_http_request_t *r, ngx_aigov_ctx_t *ctx,
    ngx_aigov_skew_conf_t *conf, ngx_uint_t why, ngx_str_t *shown,
    const char *err)
{
    u_char                  *p;
    size_t                   n;
    json_t                  *doc, *list;
    ngx_buf_t               *b;
    ngx_uint_t               i;
    ngx_pool_cleanup_t      *cln;
    ngx_aigov_skew_range_t  *rg;
    ngx_uint_t               invalid;
    u_char                   detail[512], minimum[64];

    invalid = (why == NGX_AIGOV_SKEW_INVALID);

    if (invalid) {
        p = ngx_snprintf(detail, sizeof(detail),
                         "client version \"%V\" from %V is not a version "
                         "(%s): use MAJOR[.MINOR[.PATCH]], with an optional "
                         "leading \"v\", -PRERELEASE and +BUILD, "
                         "e.g. 1.4 or v2.0.1", shown, &conf->source_text,
                         err);

    } else if (why == NGX_AIGOV_SKEW_BELOW_MINIMUM) {
        p = ngx_snprintf(detail, sizeof(detail),
                         "client version \"%V\" is below the minimum %V "
                         "of model \"%V\"", shown, &conf->minimum_text,
                         &ctx->model->name);

    } else {
        p = ngx_snprintf(detail, sizeof(detail),
                         "client version \"%V\" is in no supported range "
                         "of model \"%V\"", shown, &ctx->model->name);
    }

    doc = json_object();
    list = json_array();

    cln = ngx_pool_cleanup_add(r->pool, 0);

    if (doc == NULL || list == NULL || cln == NULL) {
        json_decref(doc);
        json_decref(list);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* freed with the request, whatever happens below */
    cln->handler = ngx_aigov_skew_json_cleanup;
    cln->data = doc;

    json_object_set_new(doc, "type", json_string(invalid
                        ? "urn:aigov:problem:invalid-client-version"
                        : "urn:aigov:problem:unsupported-client-version"));
    json_object_set_new(doc, "title", json_string(invalid
                        ? "Invalid client version"
                        : "Unsupported client version"));
    json_object_set_new(doc, "status", json_integer(NGX_HTTP_BAD_REQUEST));
    json_object_set_new(doc, "detail",
                        json_stringn((char *) detail, p - detail));
    json_object_set_new(doc, "model",
                        json_stringn((char *) ctx->model->name.data,
                                     ctx->model->name.len));
    json_object_set_new(doc, "client_version",
                        json_stringn((char *) shown->data, shown->len));

    rg = conf->ranges.elts;

    for (i = 0; i < conf->ranges.nelts; i++) {
        json_array_append_new(list, json_stringn((char *) rg[i].text.data,
                                                 rg[i].text.len));
    }

    if (conf->minimum_text.len) {
        json_object_set_new(doc, "minimum",
                            json_stringn((char *) conf->minimum_text.data,
                                         conf->minimum_text.len));

        if (conf->ranges.nelts == 0) {
            p = ngx_snprintf(minimum, sizeof(minimum), ">=%V",
                             &conf->minimum_text);
            json_array_append_new(list, json_stringn((char *) minimum,
                                                     p - minimum));
        }
    }

    json_object_set_new(doc, "supported", list);

    n = aigov_adapt_dump(doc, NULL, 0);

    b = ngx_create_temp_buf(r->pool, n + 1);
    if (n == 0 || b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->last += aigov_adapt_dump(doc, (char *) b->pos, n);
    *b->last++ = '\n';
    b->last_buf = 1;
    b->last_in_chain = 1;

    r->headers_out.status = NGX_HTTP_BAD_REQUEST;
    r->headers_out.content_length_n = b->last - b->pos;
    ngx_str_set(&r->headers_out.content_type, "application/problem+json");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;

    /* counted like ngx_aigov_send_problem(); r may be gone afterwards */
    ngx_http_aigov_decided(ctx);
    ngx_http_finalize_request(r, ngx_http_aigov_send_buf(r, ctx, b));

    return NGX_DONE;
}


static void
ngx_aigov_skew_json_cleanup(void *data)
{
    json_decref((json_t *) data);
}


/*
 * A client's string fit for messages and JSON: printable ASCII (others
 * become '?'), at most NGX_AIGOV_SKEW_SHOW_MAX bytes and "...".
 */

static void
ngx_aigov_skew_show(ngx_http_request_t *r, ngx_str_t *in, ngx_str_t *out)
{
    u_char  *p;
    size_t   i, n;

    static u_char  nothing[] = "?";

    n = ngx_min(in->len, NGX_AIGOV_SKEW_SHOW_MAX);

    p = ngx_pnalloc(r->pool, n + 3);
    if (p == NULL) {
        out->data = nothing;
        out->len = 1;
        return;
    }

    out->data = p;

    for (i = 0; i < n; i++) {
        *p++ = (in->data[i] >= 0x20 && in->data[i] < 0x7f) ? in->data[i]
                                                            : '?';
    }

    if (in->len > n) {
        p = ngx_cpymem(p, "...", 3);
    }

    out->len = p - out->data;
}


/* Deprecation (RFC 9745), Sunset (RFC 8594), Link, for deprecated ranges. */

NGX_AIGOV_HOT
static ngx_int_t
ngx_aigov_skew_header_hook(ngx_http_request_t *r, ngx_aigov_ctx_t *ctx)
{
    ngx_aigov_skew_ctx_t    *sctx;
    ngx_aigov_skew_range_t  *rg;

    static ngx_str_t  deprecation = ngx_string("Deprecation");
    static ngx_str_t  sunset = ngx_string("Sunset");
    static ngx_str_t  link = ngx_string("Link");

    sctx = ngx_aigov_plugin_ctx(ctx, ngx_aigov_skew_plugin);

    if (sctx == NULL || sctx->range == NULL) {
        return NGX_DECLINED;
    }

    rg = sctx->range;

    if ((rg->deprecation.len
         && ngx_aigov_add_header(r, &deprecation, &rg->deprecation)
            != NGX_OK)
        || (rg->sunset_date.len
            && ngx_aigov_add_header(r, &sunset, &rg->sunset_date) != NGX_OK)
        || (rg->link.len
            && ngx_aigov_add_header(r, &link, &rg->link) != NGX_OK))
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * Adaptation, as an nginx filter below the core's: the header of a
 * response to adapt is held back until its body is known.
 */

static ngx_int_t
ngx_aigov_skew_header_filter(ngx_http_request_t *r)
{
    ngx_uint_t              outcome;
    ngx_aigov_ctx_t        *ctx;
    ngx_aigov_skew_ctx_t   *sctx;
    ngx_aigov_skew_conf_t  *conf;

    ctx = (r == r->main) ? ngx_http_get_module_ctx(r, ngx_http_aigov_module)
                         : NULL;

    if (ctx == NULL || ctx->model == NULL) {
        return ngx_http_next_header_filter(r);
    }

    sctx = ngx_aigov_plugin_ctx(ctx, ngx_aigov_skew_plugin);

    if (sctx == NULL || sctx->adapts == 0
        || sctx->adapt != NGX_AIGOV_SKEW_AD_NONE)
    {
        return ngx_http_next_header_filter(r);
    }

    conf = ngx_aigov_model_conf(ctx->model, ngx_aigov_skew_plugin);

    outcome = ngx_aigov_skew_eligible(r, ctx, conf, sctx);
    sctx->adapt = outcome;

    if (outcome != NGX_AIGOV_SKEW_AD_PENDING) {
        /* the counters of the outcomes follow those of the statuses */
        ngx_aigov_skew_count(conf, outcome + 3);

        if (outcome == NGX_AIGOV_SKEW_AD_TOO_LARGE) {
            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          "aigov model \"%V\": response of %O bytes is over "
                          "version_adapt_buffer %uz: sent unchanged",
                          &ctx->model->name,
                          r->headers_out.content_length_n, conf->buffer);
        }

        return ngx_http_next_header_filter(r);
    }

    /* the copy filter reads file buffers into memory for us */
    r->main_filter_need_in_memory = 1;
    r->allow_ranges = 0;

    return NGX_OK;
}


/* Can this response be adapted?  PENDING: buffer it; else why not. */

static ngx_uint_t
ngx_aigov_skew_eligible(ngx_http_request_t *r, ngx_aigov_ctx_t *ctx,
    ngx_aigov_skew_conf_t *conf, ngx_aigov_skew_ctx_t *sctx)
{
    size_t                   n;
    u_char                  *t;
    uint32_t                 always;
    ngx_uint_t               i, status;
    ngx_table_elt_t         *ce;
    ngx_aigov_skew_adapt_t  *ad;

    status = r->headers_out.status;

    /* no body, a body in pieces, a rule's answer (written as wanted) */

    if (r->header_only || r->method == NGX_HTTP_HEAD
        || status < NGX_HTTP_OK || status == NGX_HTTP_NO_CONTENT
        || status == NGX_HTTP_PARTIAL_CONTENT
        || status == NGX_HTTP_NOT_MODIFIED
        || ctx->fallback_rule.len)
    {
        return NGX_AIGOV_SKEW_AD_SKIPPED;
    }

    t = r->headers_out.content_type.data;
    n = r->headers_out.content_type.len;

    for (i = 0; i < n && t[i] != ';' && t[i] != ' '; i++) { /* void */ }

    n = i;

    if (n == sizeof("text/event-stream") - 1
        && ngx_strncasecmp(t, (u_char *) "text/event-stream", n) == 0)
    {
        return NGX_AIGOV_SKEW_AD_STREAM;
    }

    if (!((n == sizeof("application/json") - 1
           && ngx_strncasecmp(t, (u_char *) "application/json", n) == 0)
          || (n > 5 && ngx_strncasecmp(t + n - 5, (u_char *) "+json", 5)
                       == 0)))
    {
        return NGX_AIGOV_SKEW_AD_SKIPPED;
    }

    ce = r->headers_out.content_encoding;

    if (ce && ce->hash && ce->value.len
        && !(ce->value.len == 8
             && ngx_strncasecmp(ce->value.data, (u_char *) "identity", 8)
                == 0))
    {
        return NGX_AIGOV_SKEW_AD_SKIPPED;
    }

    if (status >= NGX_HTTP_SPECIAL_RESPONSE) {
        /* errors only for the lines that say "always" */

        always = 0;
        ad = conf->adapts.elts;

        for (i = 0; i < conf->adapts.nelts; i++) {
            if (ad[i].always) {
                always |= (uint32_t) 1 << i;
            }
        }

        sctx->adapts &= always;

        if (sctx->adapts == 0) {
            return NGX_AIGOV_SKEW_AD_SKIPPED;
        }
    }

    if (r->headers_out.content_length_n > (off_t) conf->buffer) {
        return NGX_AIGOV_SKEW_AD_TOO_LARGE;
    }

    return NGX_AIGOV_SKEW_AD_PENDING;
}


static ngx_int_t
ngx_aigov_skew_body_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    u_char                 *p;
    size_t                  size, want;
    ngx_buf_t              *b;
    ngx_uint_t              last;
    ngx_chain_t            *cl;
    ngx_aigov_ctx_t        *ctx;
    ngx_aigov_skew_ctx_t   *sctx;
    ngx_aigov_skew_conf_t  *conf;

    ctx = (r == r->main) ? ngx_http_get_module_ctx(r, ngx_http_aigov_module)
                         : NULL;

    if (ctx == NULL || ctx->model == NULL) {
        return ngx_http_next_body_filter(r, in);
    }

    sctx = ngx_aigov_plugin_ctx(ctx, ngx_aigov_skew_plugin);

    if (sctx == NULL || sctx->adapt != NGX_AIGOV_SKEW_AD_PENDING) {
        return ngx_http_next_body_filter(r, in);
    }

    if (in == NULL) {
        /* a flush: nothing goes out before the whole body is here */
        return NGX_OK;
    }

    conf = ngx_aigov_model_conf(ctx->model, ngx_aigov_skew_plugin);
    last = 0;

    for (cl = in; cl; cl = cl->next) {
        b = cl->buf;

        if (!ngx_buf_in_memory(b) && ngx_buf_size(b)) {
            /* a file buffer nobody read into memory: let it all pass */
            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          "aigov model \"%V\": response body in a file: "
                          "sent unchanged", &ctx->model->name);
            sctx->adapt = NGX_AIGOV_SKEW_AD_PASS_FILE;
            ngx_aigov_skew_count(conf, NGX_AIGOV_SKEW_AD_SKIPPED + 3);
            return ngx_aigov_skew_pass(r, sctx, cl);
        }

        size = ngx_buf_in_memory(b) ? (size_t) (b->last - b->pos) : 0;

        if (size > conf->buffer - sctx->len) {
            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          "aigov model \"%V\": response over "
                          "version_adapt_buffer %uz bytes: sent unchanged",
                          &ctx->model->name, conf->buffer);
            sctx->adapt = NGX_AIGOV_SKEW_AD_PASS;
            ngx_aigov_skew_count(conf, NGX_AIGOV_SKEW_AD_TOO_LARGE + 3);
            return ngx_aigov_skew_pass(r, sctx, cl);
        }

        if (size > sctx->size - sctx->len) {
            /* the announced length, else doubling up to the bound */

            want = (r->headers_out.content_length_n > 0)
                   ? (size_t) r->headers_out.content_length_n
                   : ngx_max(sctx->size * 2, 16384);
            want = ngx_max(want, sctx->len + size);
            want = ngx_min(want, conf->buffer);

            p = ngx_palloc(r->pool, want);
            if (p == NULL) {
                return NGX_ERROR;
            }

            if (sctx->len) {
                ngx_memcpy(p, sctx->buf, sctx->len);
            }

            if (sctx->buf) {
                (void) ngx_pfree(r->pool, sctx->buf);
            }

            sctx->buf = p;
            sctx->size = want;
        }

        if (size) {
            ngx_memcpy(sctx->buf + sctx->len, b->pos, size);
            sctx->len += size;
        }

        b->pos = b->last;

        if (b->in_file) {
            b->file_pos = b->file_last;
        }

        if (b->last_buf) {
            last = 1;
        }
    }

    if (!last) {
        r->buffered |= NGX_AIGOV_SKEW_BUFFERED;
        return NGX_OK;
    }

    r->buffered &= ~NGX_AIGOV_SKEW_BUFFERED;

    return ngx_aigov_skew_finish(r, ctx, sctx);
}


/*
 * Over the bound: the header as it was, what was held back, and the rest
 * of this chain; later calls pass straight through.
 */

static ngx_int_t
ngx_aigov_skew_pass(ngx_http_request_t *r, ngx_aigov_skew_ctx_t *sctx,
    ngx_chain_t *rest)
{
    ngx_int_t     rc;
    ngx_buf_t    *b;
    ngx_chain_t   held;

    r->buffered &= ~NGX_AIGOV_SKEW_BUFFERED;

    rc = ngx_http_next_header_filter(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return NGX_ERROR;
    }

    if (sctx->len == 0) {
        return ngx_http_next_body_filter(r, rest);
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_ERROR;
    }

    b->pos = sctx->buf;
    b->last = sctx->buf + sctx->len;
    b->memory = 1;

    held.buf = b;
    held.next = rest;

    return ngx_http_next_body_filter(r, &held);
}


/* The whole body is here: adapt it, or send it as it came. */

static ngx_int_t
ngx_aigov_skew_finish(ngx_http_request_t *r, ngx_aigov_ctx_t *ctx,
    ngx_aigov_skew_ctx_t *sctx)
{
    u_char                  *p;
    size_t                   n, len, changed;
    json_t                  *doc;
    uint32_t                 mask;
    ngx_int_t                rc;
    ngx_buf_t               *b;
    ngx_uint_t               i, k;
    ngx_chain_t              out;
    ngx_aigov_skew_conf_t   *conf;
    ngx_aigov_skew_adapt_t  *ad;

    conf = ngx_aigov_model_conf(ctx->model, ngx_aigov_skew_plugin);

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_ERROR;
    }

    b->pos = sctx->buf;
    b->last = sctx->buf + sctx->len;
    b->memory = (sctx->len != 0);
    b->last_buf = 1;
    b->last_in_chain = 1;

    doc = aigov_adapt_load((char *) sctx->buf, sctx->len);

    if (doc == NULL) {
        sctx->adapt = NGX_AIGOV_SKEW_AD_NOT_JSON;

        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "aigov model \"%V\": response of %uz bytes is not "
                      "JSON: sent unchanged", &ctx->model->name, sctx->len);
        goto send;
    }

    changed = 0;
    ad = conf->adapts.elts;
    mask = sctx->adapts;

    for (i = 0; i < conf->adapts.nelts; i++) {
        if (!(mask & ((uint32_t) 1 << i))) {
            continue;
        }

        for (k = 0; k < ad[i].nops; k++) {
            changed += aigov_adapt_apply(doc, &ad[i].ops[k]);
        }
    }

    if (changed == 0) {
        json_decref(doc);
        sctx->adapt = NGX_AIGOV_SKEW_AD_UNCHANGED;
        goto send;
    }

    /* compact output is rarely longer than what came: one pass mostly */

    len = 0;
    n = sctx->len + 256;
    p = ngx_pnalloc(r->pool, n);

    if (p) {
        len = aigov_adapt_dump(doc, (char *) p, n);

        if (len > n) {
            n = len;
            p = ngx_pnalloc(r->pool, n);
            len = p ? aigov_adapt_dump(doc, (char *) p, n) : 0;
        }
    }

    json_decref(doc);

    if (p == NULL || len == 0 || len > n) {
        return NGX_ERROR;
    }

    sctx->adapt = NGX_AIGOV_SKEW_AD_ADAPTED;

    b->pos = p;
    b->last = p + len;
    b->memory = 1;

    ngx_http_clear_content_length(r);
    ngx_http_clear_etag(r);
    r->headers_out.content_length_n = len;

send:

    ngx_aigov_skew_count(conf, sctx->adapt + 3);

    rc = ngx_http_next_header_filter(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return NGX_ERROR;
    }

    out.buf = b;
    out.next = NULL;

    return ngx_http_next_body_filter(r, &out);
}


static void
ngx_aigov_skew_count(ngx_aigov_skew_conf_t *conf, ngx_uint_t i)
{
    if (conf->counters && i < NGX_AIGOV_SKEW_NCOUNTERS) {
        (void) ngx_atomic_fetch_add(&conf->counters->count[i], 1);
    }
}


static ngx_int_t
ngx_aigov_skew_variable(ngx_http_request_t *r, ngx_http_variable_value_t *v,
    uintptr_t data)
{
    ngx_str_t             *s;
    ngx_aigov_ctx_t       *ctx;
    ngx_aigov_skew_ctx_t  *sctx;

    ctx = ngx_http_get_module_ctx(r->main, ngx_http_aigov_module);
    sctx = (ctx && ctx->model) ? ngx_aigov_plugin_ctx(ctx,
                                                      ngx_aigov_skew_plugin)
                               : NULL;

    s = NULL;

    if (sctx) {
        switch (data) {

        case 0:
            s = &sctx->version;
            break;

        case 1:
            s = sctx->range ? &sctx->range->text : NULL;
            break;

        case 2:
            s = &ngx_aigov_skew_status_names[sctx->status];
            break;

        default:
            s = &ngx_aigov_skew_adapt_names[sctx->adapt];
            break;
        }
    }

    if (s == NULL || s->len == 0) {
        v->not_found = 1;
        return NGX_OK;
    }

    v->len = s->len;
    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;
    v->data = s->data;

    return NGX_OK;
}


static json_t *
ngx_aigov_skew_date(time_t t)
{
    u_char     buf[32], *p;
    ngx_tm_t   tm;

    ngx_gmtime(t, &tm);

    p = ngx_sprintf(buf, "%4d-%02d-%02dT%02d:%02d:%02dZ",
                    tm.ngx_tm_year, tm.ngx_tm_mon, tm.ngx_tm_mday,
                    tm.ngx_tm_hour, tm.ngx_tm_min, tm.ngx_tm_sec);

    return json_stringn((char *) buf, p - buf);
}


static ngx_int_t
ngx_aigov_skew_status(ngx_aigov_model_t *model, void *conf, json_t *out)
{
    json_t                  *vp, *list, *o, *ops;
    ngx_uint_t               i, k;
    ngx_aigov_skew_conf_t   *scf = conf;
    ngx_aigov_skew_range_t  *rg;
    ngx_aigov_skew_adapt_t  *ad;

    if (scf == NULL || scf->source == 0) {
        return NGX_OK;
    }

    vp = json_object();
    if (vp == NULL) {
        return NGX_ERROR;
    }

    json_object_set_new(out, "version_policy", vp);

    json_object_set_new(vp, "client_version",
                        json_stringn((char *) scf->source_text.data,
                                     scf->source_text.len));

    if (scf->default_text.len) {
        json_object_set_new(vp, "default",
                            json_stringn((char *) scf->default_text.data,
                                         scf->default_text.len));
    }

    if (scf->minimum_text.len) {
        json_object_set_new(vp, "minimum",
                            json_stringn((char *) scf->minimum_text.data,
                                         scf->minimum_text.len));
    }

    list = json_array();
    json_object_set_new(vp, "ranges", list);
    rg = scf->ranges.elts;

    for (i = 0; i < scf->ranges.nelts; i++) {
        o = json_object();
        json_array_append_new(list, o);

        json_object_set_new(o, "range",
                            json_stringn((char *) rg[i].text.data,
                                         rg[i].text.len));
        json_object_set_new(o, "variant", rg[i].variant
                            ? json_stringn((char *) rg[i].variant->name.data,
                                           rg[i].variant->name.len)
                            : json_null());

        if (rg[i].deprecated != -1) {
            json_object_set_new(o, "deprecated",
                                ngx_aigov_skew_date(rg[i].deprecated));
        }

        if (rg[i].sunset != -1) {
            json_object_set_new(o, "sunset",
                                ngx_aigov_skew_date(rg[i].sunset));
        }
    }

    list = json_array();
    json_object_set_new(vp, "adapt", list);
    ad = scf->adapts.elts;

    for (i = 0; i < scf->adapts.nelts; i++) {
        ops = json_array();

        for (k = 0; k < ad[i].nops; k++) {
            json_array_append_new(ops,
                                  json_stringn((char *) ad[i].op_text[k].data,
                                               ad[i].op_text[k].len));
        }

        json_array_append_new(list,
                              json_pack("{s:s%, s:o, s:b}",
                                        "range", (char *) ad[i].text.data,
                                        ad[i].text.len, "ops", ops,
                                        "always", (int) ad[i].always));
    }

    json_object_set_new(vp, "adapt_buffer", json_integer(scf->buffer));
    json_object_set_new(vp, "dry_run", json_boolean(scf->dry_run));

    if (scf->counters) {
        o = json_object();
        json_object_set_new(vp, "counters", o);

        for (i = 0; i < NGX_AIGOV_SKEW_NCOUNTERS; i++) {
            json_object_set_new(o, ngx_aigov_skew_counter_names[i],
                                json_integer(scf->counters->count[i]));
        }
    }

    return NGX_OK;
}


/* Configuration. */

static void *
ngx_aigov_skew_create_model_conf(ngx_conf_t *cf, ngx_aigov_model_t *model)
{
    ngx_aigov_skew_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool, sizeof(ngx_aigov_skew_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     conf->source = 0;
     *     conf->default_text = { 0, NULL };
     *     conf->minimum_text = { 0, NULL };
     *     conf->counters = NULL;
     */

    if (ngx_array_init(&conf->ranges, cf->pool, 4,
                       sizeof(ngx_aigov_skew_range_t))
        != NGX_OK
        || ngx_array_init(&conf->adapts, cf->pool, 2,
                          sizeof(ngx_aigov_skew_adapt_t))
           != NGX_OK)
    {
        return NULL;
    }

    conf->buffer = NGX_CONF_UNSET_SIZE;
    conf->dry_run = NGX_CONF_UNSET;
    conf->log_level = NGX_CONF_UNSET_UINT;

    return conf;
}


static char *
ngx_aigov_skew_init_model_conf(ngx_conf_t *cf, ngx_aigov_model_t *model,
    void *conf)
{
    ngx_aigov_skew_conf_t  *scf = conf;

    if (scf == NULL) {
        return NGX_CONF_OK;
    }

    if (scf->source == 0) {
        return "\"version_range\", \"version_minimum\", \"version_adapt\" "
               "and the other version directives need \"client_version\"";
    }

    ngx_conf_init_size_value(scf->buffer, 1024 * 1024);
    ngx_conf_init_value(scf->dry_run, 0);
    ngx_conf_init_uint_value(scf->log_level, NGX_LOG_INFO);

    ngx_aigov_skew_used = 1;

    if (scf->adapts.nelts) {
        ngx_aigov_skew_adapting = 1;
    }

    return NGX_CONF_OK;
}


/* client_version header=NAME | path | $variable [default=VERSION] */

static char *
ngx_aigov_skew_client_version_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_aigov_skew_conf_t *scf = conf;

    char                              err[96];
    ngx_str_t                        *value, name;
    aigov_version_t                   v;
    ngx_http_compile_complex_value_t  ccv;

    if (scf->source) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strncmp(value[1].data, "header=", 7) == 0) {
        name.data = value[1].data + 7;
        name.len = value[1].len - 7;

        if (ngx_aigov_header_prepare(cf, &name, &scf->header) != NGX_OK) {
            return NGX_CONF_ERROR;
        }

        scf->source = NGX_AIGOV_SKEW_SRC_HEADER;
        scf->source_text.len = sizeof("header ") - 1 + name.len;
        scf->source_text.data = ngx_pnalloc(cf->pool, scf->source_text.len);
        if (scf->source_text.data == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_sprintf(scf->source_text.data, "header %V", &name);

    } else if (ngx_strcmp(value[1].data, "path") == 0) {
        scf->source = NGX_AIGOV_SKEW_SRC_PATH;
        ngx_str_set(&scf->source_text, "the path");

    } else if (value[1].data[0] == '$') {
        scf->cv = ngx_palloc(cf->pool, sizeof(ngx_http_complex_value_t));
        if (scf->cv == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));

        ccv.cf = cf;
        ccv.value = &value[1];
        ccv.complex_value = scf->cv;

        if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
            return NGX_CONF_ERROR;
        }

        scf->source = NGX_AIGOV_SKEW_SRC_VARIABLE;
        scf->source_text = value[1];

    } else {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid source \"%V\" in \"client_version\": "
                           "use \"header=NAME\", \"path\" or \"$variable\"",
                           &value[1]);
        return NGX_CONF_ERROR;
    }

    if (cf->args->nelts == 3) {
        if (ngx_strncmp(value[2].data, "default=", 8) != 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"%V\" in "
                               "\"client_version\"", &value[2]);
            return NGX_CONF_ERROR;
        }

        scf->default_text.data = value[2].data + 8;
        scf->default_text.len = value[2].len - 8;

        if (aigov_version_parse((char *) scf->default_text.data,
                                scf->default_text.len, &v, err, sizeof(err))
            != AIGOV_OK)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid default version \"%V\" in "
                               "\"client_version\": %s",
                               &scf->default_text, err);
            return NGX_CONF_ERROR;
        }
    }

    return NGX_CONF_OK;
}


/* A new version_range / version_adapt line, zeroed; NULL: logged. */

static void *
ngx_aigov_skew_conf_line(ngx_conf_t *cf, ngx_array_t *lines, ngx_uint_t max)
{
    void       *line;
    ngx_str_t  *value;

    value = cf->args->elts;

    if (lines->nelts == max) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "too many \"%V\" lines in aigov_model \"%V\", "
                           "at most %ui", &value[0],
                           &((ngx_aigov_model_t *) cf->handler_conf)->name,
                           max);
        return NULL;
    }

    line = ngx_array_push(lines);
    if (line == NULL) {
        return NULL;
    }

    ngx_memzero(line, lines->size);

    return line;
}


/* The RANGE argument of version_range and version_adapt. */

static ngx_int_t
ngx_aigov_skew_conf_range(ngx_conf_t *cf, aigov_range_t *range)
{
    char        err[160];
    ngx_str_t  *value;

    value = cf->args->elts;

    if (aigov_range_parse((char *) value[1].data, value[1].len, range, err,
                          sizeof(err))
        != AIGOV_OK)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid version range \"%V\" in \"%V\": %s",
                           &value[1], &value[0], err);
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* A date parameter of version_range: -1 on error (logged). */

static time_t
ngx_aigov_skew_conf_date(ngx_conf_t *cf, ngx_str_t *param, size_t skip)
{
    int64_t  t;

    if (aigov_parse_date((char *) param->data + skip, param->len - skip, &t)
        != AIGOV_OK
        || (time_t) t != t)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid date \"%V\" in \"version_range\": use "
                           "YYYY-MM-DD, YYYY-MM-DDTHH:MM:SSZ or @SECONDS",
                           param);
        return -1;
    }

    return (time_t) t;
}


/* A link parameter: an http(s) URL or an absolute path, header-safe. */

static ngx_int_t
ngx_aigov_skew_conf_link(ngx_conf_t *cf, ngx_str_t *param, size_t skip,
    ngx_str_t *url)
{
    size_t   i;
    u_char   c;

    url->data = param->data + skip;
    url->len = param->len - skip;

    for (i = 0; i < url->len; i++) {
        c = url->data[i];

        if (c <= 0x20 || c >= 0x7f || c == '"' || c == '<' || c == '>'
            || c == '\\')
        {
            break;
        }
    }

    if (url->len && i == url->len
        && ((url->len > 7 && ngx_strncasecmp(url->data,
                                             (u_char *) "http://", 7) == 0)
            || (url->len > 8 && ngx_strncasecmp(url->data,
                                                (u_char *) "https://", 8)
                                == 0)
            || url->data[0] == '/'))
    {
        return NGX_OK;
    }

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid link \"%V\" in \"version_range\": use an "
                       "http:// or https:// URL or a path starting with "
                       "\"/\", without spaces, quotes, \"<\" or \">\"",
                       param);

    return NGX_ERROR;
}


/*
 * version_range RANGE VARIANT|* [deprecated=DATE] [sunset=DATE]
 *     [link=URL] [sunset_link=URL]
 */

static char *
ngx_aigov_skew_range_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_aigov_skew_conf_t *scf = conf;

    u_char                  *p;
    ngx_str_t               *value, link, sunset_link;
    ngx_uint_t               i;
    ngx_aigov_skew_range_t  *rg;

    value = cf->args->elts;

    rg = ngx_aigov_skew_conf_line(cf, &scf->ranges,
                                  NGX_AIGOV_SKEW_MAX_RANGES);
    if (rg == NULL
        || ngx_aigov_skew_conf_range(cf, &rg->range) != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    rg->text = value[1];
    rg->deprecated = -1;
    rg->sunset = -1;

    if (!(value[2].len == 1 && value[2].data[0] == '*')) {
        rg->variant = ngx_aigov_conf_variant(cf, &value[2]);
        if (rg->variant == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    ngx_str_null(&link);
    ngx_str_null(&sunset_link);

    for (i = 3; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "deprecated=", 11) == 0) {
            if (rg->deprecated != -1) {
                goto duplicate;
            }

            rg->deprecated = ngx_aigov_skew_conf_date(cf, &value[i], 11);
            if (rg->deprecated == -1) {
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "sunset=", 7) == 0) {
            if (rg->sunset != -1) {
                goto duplicate;
            }

            rg->sunset = ngx_aigov_skew_conf_date(cf, &value[i], 7);
            if (rg->sunset == -1) {
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "link=", 5) == 0) {
            if (link.data) {
                goto duplicate;
            }

            if (ngx_aigov_skew_conf_link(cf, &value[i], 5, &link) != NGX_OK) {
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "sunset_link=", 12) == 0) {
            if (sunset_link.data) {
                goto duplicate;
            }

            if (ngx_aigov_skew_conf_link(cf, &value[i], 12, &sunset_link)
                != NGX_OK)
            {
                return NGX_CONF_ERROR;
            }

            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\" in \"version_range\": "
                           "use deprecated=, sunset=, link= or sunset_link=",
                           &value[i]);
        return NGX_CONF_ERROR;
    }

    if (link.data && rg->deprecated == -1) {
        return "\"link=\" needs \"deprecated=\"";
    }

    if (sunset_link.data && rg->sunset == -1) {
        return "\"sunset_link=\" needs \"sunset=\"";
    }

    if (rg->deprecated != -1 && rg->sunset != -1
        && rg->sunset < rg->deprecated)
    {
        return "has a sunset before its deprecation date";
    }

    /* the header values, once */

    if (rg->deprecated != -1) {
        rg->deprecation.data = ngx_pnalloc(cf->pool, 1 + NGX_TIME_T_LEN);
        if (rg->deprecation.data == NULL) {
            return NGX_CONF_ERROR;
        }

        rg->deprecation.len = ngx_sprintf(rg->deprecation.data, "@%T",
                                          rg->deprecated)
                              - rg->deprecation.data;
    }

    if (rg->sunset != -1) {
        rg->sunset_date.data = ngx_pnalloc(cf->pool,
                                           sizeof("Mon, 28 Sep 1970 06:00:00 "
                                                  "GMT") - 1);
        if (rg->sunset_date.data == NULL) {
            return NGX_CONF_ERROR;
        }

        rg->sunset_date.len = ngx_http_time(rg->sunset_date.data, rg->sunset)
                              - rg->sunset_date.data;
    }

    if (link.len || sunset_link.len) {
        p = ngx_pnalloc(cf->pool, link.len + sunset_link.len
                        + sizeof("<>; rel=\"deprecation\", <>; rel=\"sunset\"")
                        - 1);
        if (p == NULL) {
            return NGX_CONF_ERROR;
        }

        rg->link.data = p;

        if (link.len) {
            p = ngx_sprintf(p, "<%V>; rel=\"deprecation\"", &link);
        }

        if (sunset_link.len) {
            p = ngx_sprintf(p, "%s<%V>; rel=\"sunset\"", link.len ? ", " : "",
                            &sunset_link);
        }

        rg->link.len = p - rg->link.data;
    }

    return NGX_CONF_OK;

duplicate:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "duplicate parameter \"%V\" in \"version_range\"",
                       &value[i]);
    return NGX_CONF_ERROR;
}


/* version_minimum VERSION */

static char *
ngx_aigov_skew_minimum_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_aigov_skew_conf_t *scf = conf;

    char              err[96];
    ngx_str_t        *value;
    aigov_version_t   v;

    if (scf->minimum_text.len) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (aigov_version_parse((char *) value[1].data, value[1].len, &v, err,
                            sizeof(err))
        != AIGOV_OK)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid version \"%V\" in \"version_minimum\": "
                           "%s", &value[1], err);
        return NGX_CONF_ERROR;
    }

    scf->minimum_text = value[1];
    aigov_range_min(&scf->minimum, &v);

    return NGX_CONF_OK;
}


/* version_adapt RANGE rename=FROM:TO | remove=PATH ... [always] */

static char *
ngx_aigov_skew_adapt_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_aigov_skew_conf_t *scf = conf;

    int                      rc;
    char                     err[192];
    ngx_str_t               *value;
    ngx_uint_t               i;
    ngx_aigov_skew_adapt_t  *ad;

    value = cf->args->elts;

    ad = ngx_aigov_skew_conf_line(cf, &scf->adapts,
                                  NGX_AIGOV_SKEW_MAX_ADAPTS);
    if (ad == NULL
        || ngx_aigov_skew_conf_range(cf, &ad->range) != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    ad->text = value[1];

    ad->ops = ngx_palloc(cf->pool, (cf->args->nelts - 2)
                                   * sizeof(aigov_adapt_op_t));
    ad->op_text = ngx_palloc(cf->pool, (cf->args->nelts - 2)
                                       * sizeof(ngx_str_t));
    if (ad->ops == NULL || ad->op_text == NULL) {
        return NGX_CONF_ERROR;
    }

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strcmp(value[i].data, "always") == 0) {
            if (ad->always) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "duplicate parameter \"always\" in "
                                   "\"version_adapt\"");
                return NGX_CONF_ERROR;
            }

            ad->always = 1;
            continue;
        }

        if (ad->nops == NGX_AIGOV_SKEW_MAX_OPS) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "too many operations in \"version_adapt\", "
                               "at most %d", NGX_AIGOV_SKEW_MAX_OPS);
            return NGX_CONF_ERROR;
        }

        rc = aigov_adapt_op_parse((char *) value[i].data, value[i].len,
                                  &ad->ops[ad->nops], err, sizeof(err));

        if (rc == AIGOV_DECLINED) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"%V\" in "
                               "\"version_adapt\": use rename=FROM:TO, "
                               "remove=PATH or always", &value[i]);
            return NGX_CONF_ERROR;
        }

        if (rc != AIGOV_OK) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid \"%V\" in \"version_adapt\": %s",
                               &value[i], err);
            return NGX_CONF_ERROR;
        }

        ad->op_text[ad->nops++] = value[i];
    }

    if (ad->nops == 0) {
        return "needs at least one rename= or remove=";
    }

    return NGX_CONF_OK;
}


/* version_adapt_buffer SIZE */

static char *
ngx_aigov_skew_buffer_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_aigov_skew_conf_t *scf = conf;

    ssize_t     size;
    ngx_str_t  *value;

    if (scf->buffer != NGX_CONF_UNSET_SIZE) {
        return "is duplicate";
    }

    value = cf->args->elts;
    size = ngx_parse_size(&value[1]);

    if (size == NGX_ERROR || size < 1 || size > 64 * 1024 * 1024) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid size \"%V\" in \"version_adapt_buffer\": "
                           "use 1 to 64m", &value[1]);
        return NGX_CONF_ERROR;
    }

    scf->buffer = (size_t) size;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_aigov_skew_preconfiguration(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var, *v;

    /* statics outlive a reload: this configuration decides anew */
    ngx_aigov_skew_used = 0;
    ngx_aigov_skew_adapting = 0;

    for (v = ngx_aigov_skew_vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_aigov_skew_postconfiguration(ngx_conf_t *cf)
{
    ngx_str_t                    name;
    ngx_shm_zone_t              *shm_zone;
    ngx_aigov_skew_zone_t       *z;
    ngx_http_aigov_main_conf_t  *mcf;

    if (!ngx_aigov_skew_used) {
        return NGX_OK;
    }

    /* the counters, shared by the workers and kept across reloads */

    mcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_aigov_module);

    z = ngx_pcalloc(cf->pool, sizeof(ngx_aigov_skew_zone_t));
    if (z == NULL) {
        return NGX_ERROR;
    }

    z->models = &mcf->models;

    ngx_str_set(&name, "aigov_skew_counters");

    shm_zone = ngx_shared_memory_add(cf, &name, NGX_AIGOV_SKEW_ZONE_SIZE,
                                     &ngx_aigov_skew_module);
    if (shm_zone == NULL) {
        return NGX_ERROR;
    }

    shm_zone->init = ngx_aigov_skew_init_zone;
    shm_zone->data = z;

    if (ngx_aigov_skew_adapting) {
        ngx_http_next_header_filter = ngx_http_top_header_filter;
        ngx_http_top_header_filter = ngx_aigov_skew_header_filter;

        ngx_http_next_body_filter = ngx_http_top_body_filter;
        ngx_http_top_body_filter = ngx_aigov_skew_body_filter;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_aigov_skew_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_aigov_skew_zone_t *oz = data;

    size_t                  len;
    ngx_uint_t              i;
    ngx_queue_t            *q;
    ngx_aigov_model_t     **m;
    ngx_aigov_skew_conf_t  *scf;
    ngx_aigov_skew_node_t  *node;
    ngx_aigov_skew_zone_t  *z;

    z = shm_zone->data;

    if (oz) {
        z->shpool = oz->shpool;
        z->sh = oz->sh;

    } else {
        z->shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

        if (shm_zone->shm.exists) {
            z->sh = z->shpool->data;

        } else {
            z->sh = ngx_slab_alloc(z->shpool, sizeof(ngx_aigov_skew_sh_t));
            if (z->sh == NULL) {
                return NGX_ERROR;
            }

            ngx_queue_init(&z->sh->nodes);
            z->shpool->data = z->sh;
        }
    }

    /* each model finds its node by name, or gets a new one */

    m = z->models->elts;

    for (i = 0; i < z->models->nelts; i++) {
        scf = ngx_aigov_model_conf(m[i], ngx_aigov_skew_plugin);

        if (scf == NULL) {
            continue;
        }

        len = m[i]->name.len;
        node = NULL;

        for (q = ngx_queue_head(&z->sh->nodes);
             q != ngx_queue_sentinel(&z->sh->nodes);
             q = ngx_queue_next(q))
        {
            node = ngx_queue_data(q, ngx_aigov_skew_node_t, queue);

            if (node->len == len
                && ngx_strncmp(node->name, m[i]->name.data, len) == 0)
            {
                break;
            }

            node = NULL;
        }

        if (node == NULL) {
            node = ngx_slab_calloc(z->shpool,
                                   sizeof(ngx_aigov_skew_node_t) + len);
            if (node == NULL) {
                ngx_log_error(NGX_LOG_WARN, shm_zone->shm.log, 0,
                              "aigov: no room for the version counters of "
                              "model \"%V\"", &m[i]->name);
                continue;
            }

            node->len = len;
            ngx_memcpy(node->name, m[i]->name.data, len);
            ngx_queue_insert_tail(&z->sh->nodes, &node->queue);
        }

        scf->counters = node;
    }

    return NGX_OK;
}
