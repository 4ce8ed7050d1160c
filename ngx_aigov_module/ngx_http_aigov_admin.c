/*
 * ngx_aigov admin API: "aigov_admin tokens=FILE;" in a prefix location.
 *
 *   GET    models                  every model's state, Redis health
 *   GET    models/{m}              one model
 *   POST   models/{m}/kill         runtime kill switch on      (write token)
 *   POST   models/{m}/unkill       ... off
 *   POST   models/{m}/rollback     runtime rollback on
 *   POST   models/{m}/unrollback   ... off
 *   PUT    models/{m}/weights      {"weights": {"v2": "5%"}}
 *   DELETE models/{m}/weights      back to the config's weights
 *   PUT    models/{m}/active       {"active": "green"}
 *   DELETE models/{m}/active       back to the config's colour
 *   POST   models/{m}/WORD[/ARG]   a plugin's action (registered with
 *                                  ngx_http_aigov_admin_on_action():
 *                                  breakers/{variant})
 *   GET    audit[?count=N]         the Redis audit stream, newest first
 *
 * Bearer tokens from a file ("NAME ROLE TOKEN" lines, ROLE read | write),
 * kept as SHA-256 digests and compared in constant time.  Every change,
 * plugins' actions too, is an audit record (log and Redis stream).  Errors
 * are RFC 9457 problems.
 */

#include "ngx_http_aigov_module.h"
#include "ngx_http_aigov_redis.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>


#define NGX_HTTP_AIGOV_ROLE_READ       1
#define NGX_HTTP_AIGOV_ROLE_WRITE      2

#define NGX_HTTP_AIGOV_ADMIN_BODY_MAX  (16 * 1024)

/* where a plugin's action was recorded, besides the error log */
#define NGX_HTTP_AIGOV_RECORD_LOG      0     /* no aigov_redis */
#define NGX_HTTP_AIGOV_RECORD_REDIS    1     /* the audit stream */
#define NGX_HTTP_AIGOV_RECORD_NOT_SENT 2     /* redis not connected */
#define NGX_HTTP_AIGOV_RECORD_NO_REPLY 3     /* sent, no answer in time */
#define NGX_HTTP_AIGOV_RECORD_REFUSED  4     /* an error reply */


typedef struct {
    ngx_str_t                  name;
    ngx_uint_t                 role;
    u_char                     digest[32];
} ngx_http_aigov_token_t;


typedef struct {
    ngx_array_t               *tokens;       /* ngx_http_aigov_token_t */
    ngx_str_t                  prefix;       /* the location's name */
} ngx_http_aigov_admin_conf_t;


typedef struct {
    ngx_http_request_t        *request;
    ngx_http_aigov_token_t    *token;
    ngx_aigov_model_t         *model;
    ngx_str_t                  op;           /* kill, weights, ... */
    ngx_http_aigov_admin_action_pt  action;  /* a plugin's op */
    ngx_str_t                  arg;          /* after "WORD/" */
    ngx_http_aigov_change_t    change;
    ngx_http_aigov_admin_action_t  act;      /* the plugin's op, done */
    json_t                    *result;       /* its result, until sent */
    ngx_uint_t                 record;       /* NGX_HTTP_AIGOV_RECORD_* */
    ngx_aigov_redis_cmd_t     *cmd;          /* audit read or record */
    ngx_int_t                  rc;           /* of a problem sent */
    ngx_uint_t                 waiting;
} ngx_http_aigov_admin_ctx_t;


static ngx_int_t ngx_http_aigov_admin_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_aigov_admin_plugin(ngx_http_request_t *r,
    ngx_http_aigov_admin_ctx_t *ctx, json_t *body);
static void ngx_http_aigov_admin_record_reply(void *data, redisReply *reply);
static ngx_int_t ngx_http_aigov_admin_plugin_done(ngx_http_request_t *r,
    ngx_http_aigov_admin_ctx_t *ctx);
static void ngx_http_aigov_admin_body(ngx_http_request_t *r);
static ngx_int_t ngx_http_aigov_admin_write(ngx_http_request_t *r,
    ngx_http_aigov_admin_ctx_t *ctx, json_t *body);
static void ngx_http_aigov_admin_done(ngx_http_aigov_change_t *ch);
static ngx_int_t ngx_http_aigov_admin_audit(ngx_http_request_t *r,
    ngx_http_aigov_admin_ctx_t *ctx);
static void ngx_http_aigov_admin_audit_reply(void *data, redisReply *reply);
static void ngx_http_aigov_admin_cleanup(void *data);
static ngx_http_aigov_token_t *ngx_http_aigov_admin_auth(
    ngx_http_request_t *r, ngx_http_aigov_admin_conf_t *acf);
static ngx_int_t ngx_http_aigov_admin_problem(ngx_http_request_t *r,
    ngx_uint_t status, const char *type, const char *title,
    const char *fmt, ...);
static json_t *ngx_http_aigov_admin_model_json(ngx_aigov_model_t *model);
static json_t *ngx_http_aigov_admin_change_json(ngx_http_aigov_change_t *ch);


/*
 * The methods a resource allows, for the Allow header of a 405: set just
 * before the (synchronous) problem response, reset after it.
 */
static const char  *ngx_http_aigov_admin_allow =
    "GET, HEAD, POST, PUT, DELETE";


/* Plugins' actions: models/{m}/WORD[/ARG], POST only. */

#define NGX_HTTP_AIGOV_ADMIN_ACTIONS  4

static struct {
    const char                      *word;
    ngx_http_aigov_admin_action_pt   handler;
} ngx_http_aigov_admin_actions[NGX_HTTP_AIGOV_ADMIN_ACTIONS];


ngx_int_t
ngx_http_aigov_admin_on_action(const char *word,
    ngx_http_aigov_admin_action_pt handler)
{
    ngx_uint_t  i;

    for (i = 0; i < NGX_HTTP_AIGOV_ADMIN_ACTIONS; i++) {
        if (ngx_http_aigov_admin_actions[i].word == NULL
            || ngx_strcmp(ngx_http_aigov_admin_actions[i].word, word) == 0)
        {
            ngx_http_aigov_admin_actions[i].word = word;
            ngx_http_aigov_admin_actions[i].handler = handler;
            return NGX_OK;
        }
    }

    return NGX_ERROR;
}


static ngx_http_aigov_admin_action_pt
ngx_http_aigov_admin_find_action(ngx_str_t *op, ngx_str_t *arg)
{
    u_char      *slash;
    size_t       n;
    ngx_uint_t   i;

    slash = ngx_strlchr(op->data, op->data + op->len, '/');
    n = slash ? (size_t) (slash - op->data) : op->len;

    for (i = 0; i < NGX_HTTP_AIGOV_ADMIN_ACTIONS; i++) {
        if (ngx_http_aigov_admin_actions[i].word
            && ngx_strlen(ngx_http_aigov_admin_actions[i].word) == n
            && ngx_strncmp(ngx_http_aigov_admin_actions[i].word, op->data, n)
               == 0)
        {
            if (slash) {
                arg->data = slash + 1;
                arg->len = op->data + op->len - arg->data;
            }

            return ngx_http_aigov_admin_actions[i].handler;
        }
    }

    return NULL;
}


static ngx_http_aigov_admin_conf_t *
ngx_http_aigov_admin_conf(ngx_http_request_t *r)
{
    ngx_http_aigov_loc_conf_t  *alcf;

    alcf = ngx_http_get_module_loc_conf(r, ngx_http_aigov_module);

    return alcf->admin;
}


/*
 * A read-only resource: a write gets 405 (Allow: GET, HEAD), a read has
 * its body discarded.  NGX_DECLINED: go on and answer.
 */

static ngx_int_t
ngx_http_aigov_admin_read_only(ngx_http_request_t *r, ngx_uint_t write,
    const char *detail)
{
    ngx_int_t  rc;

    if (write) {
        ngx_http_aigov_admin_allow = "GET, HEAD";
        return ngx_http_aigov_admin_problem(r, NGX_HTTP_NOT_ALLOWED,
                   "method-not-allowed", "Method not allowed", "%s", detail);
    }

    rc = ngx_http_discard_request_body(r);

    return (rc == NGX_OK) ? NGX_DECLINED : rc;
}


static ngx_int_t
ngx_http_aigov_admin_handler(ngx_http_request_t *r)
{
    u_char                       *p, *end, *seg;
    json_t                       *doc, *list;
    ngx_int_t                     rc;
    ngx_str_t                     tail, name, op;
    ngx_uint_t                    i, write;
    ngx_aigov_model_t           **m;
    ngx_pool_cleanup_t           *cln;
    ngx_http_aigov_admin_ctx_t   *ctx;
    ngx_http_aigov_admin_conf_t  *acf;
    ngx_http_aigov_main_conf_t   *mcf;

    acf = ngx_http_aigov_admin_conf(r);
    mcf = ngx_http_get_module_main_conf(r, ngx_http_aigov_module);

    if (acf == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    write = (r->method & (NGX_HTTP_POST|NGX_HTTP_PUT|NGX_HTTP_DELETE)) != 0;

    if (!write && !(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return ngx_http_aigov_admin_problem(r, NGX_HTTP_NOT_ALLOWED,
                   "method-not-allowed", "Method not allowed",
                   "use GET, POST, PUT or DELETE");
    }

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_aigov_admin_ctx_t));
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->request = r;

    ctx->token = ngx_http_aigov_admin_auth(r, acf);

    if (ctx->token == NULL) {
        return ngx_http_aigov_admin_problem(r, NGX_HTTP_UNAUTHORIZED,
                   "unauthorized", "Unauthorized",
                   "a valid \"Authorization: Bearer TOKEN\" header is "
                   "required");
    }

    if (write && ctx->token->role != NGX_HTTP_AIGOV_ROLE_WRITE) {
        return ngx_http_aigov_admin_problem(r, NGX_HTTP_FORBIDDEN,
                   "forbidden", "Forbidden",
                   "token \"%V\" is read-only", &ctx->token->name);
    }

    /* the path below the location: "", "models", "models/m", ... */

    tail.data = r->uri.data + ngx_min(acf->prefix.len, r->uri.len);
    tail.len = r->uri.data + r->uri.len - tail.data;

    while (tail.len && tail.data[0] == '/') {
        tail.data++;
        tail.len--;
    }

    while (tail.len && tail.data[tail.len - 1] == '/') {
        tail.len--;
    }

    ngx_str_null(&name);
    ngx_str_null(&op);

    p = tail.data;
    end = tail.data + tail.len;

    if (tail.len == 5 && ngx_strncmp(p, "audit", 5) == 0) {
        rc = ngx_http_aigov_admin_read_only(r, write,
                                            "the audit trail is read with GET");
        if (rc != NGX_DECLINED) {
            return rc;
        }

        return ngx_http_aigov_admin_audit(r, ctx);
    }

    if (tail.len == 0
        || (tail.len >= 6 && ngx_strncmp(p, "models", 6) == 0
            && (tail.len == 6 || p[6] == '/')))
    {
        p += ngx_min(tail.len, 7);

        seg = p;
        while (p < end && *p != '/') {
            p++;
        }

        name.data = seg;
        name.len = p - seg;

        if (p < end) {
            op.data = p + 1;
            op.len = end - op.data;
        }

    } else {
        return ngx_http_aigov_admin_problem(r, NGX_HTTP_NOT_FOUND,
                   "not-found", "Not found",
                   "no admin resource \"%V\": use models[/NAME[/ACTION]] "
                   "or audit", &tail);
    }

    if (name.len == 0) {
        rc = ngx_http_aigov_admin_read_only(r, write,
                                      "changes are made on models/NAME/ACTION");
        if (rc != NGX_DECLINED) {
            return rc;
        }

        doc = json_pack("{s:s%, s:o, s:[]}",
                        "node", (char *) ngx_cycle->hostname.data,
                        ngx_cycle->hostname.len,
                        "redis", ngx_http_aigov_redis_json(mcf),
                        "models");
        if (doc == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        list = json_object_get(doc, "models");
        m = mcf->models.elts;

        for (i = 0; i < mcf->models.nelts; i++) {
            json_array_append_new(list, ngx_http_aigov_admin_model_json(m[i]));
        }

        return ngx_http_aigov_send_json(r, NGX_HTTP_OK, doc);
    }

    ctx->model = ngx_http_aigov_find_model(mcf, name.data, name.len);

    if (ctx->model == NULL) {
        return ngx_http_aigov_admin_problem(r, NGX_HTTP_NOT_FOUND,
                   "unknown-model", "Unknown model",
                   "no model \"%V\" here", &name);
    }

    if (op.len == 0) {
        rc = ngx_http_aigov_admin_read_only(r, write,
                                      "changes are made on models/NAME/ACTION");
        if (rc != NGX_DECLINED) {
            return rc;
        }

        return ngx_http_aigov_send_json(r, NGX_HTTP_OK,
                   ngx_http_aigov_admin_model_json(ctx->model));
    }

    ctx->op = op;

#define ngx_http_aigov_op_is(s)                                              \
    (op.len == sizeof(s) - 1 && ngx_strncmp(op.data, s, op.len) == 0)

    if (ngx_http_aigov_op_is("kill") || ngx_http_aigov_op_is("unkill")
        || ngx_http_aigov_op_is("rollback")
        || ngx_http_aigov_op_is("unrollback"))
    {
        if (r->method != NGX_HTTP_POST) {
            ngx_http_aigov_admin_allow = "POST";
            return ngx_http_aigov_admin_problem(r, NGX_HTTP_NOT_ALLOWED,
                       "method-not-allowed", "Method not allowed",
                       "use POST for \"%V\"", &op);
        }

    } else if (ngx_http_aigov_op_is("weights")
               || ngx_http_aigov_op_is("active"))
    {
        if (!(r->method & (NGX_HTTP_PUT|NGX_HTTP_DELETE))) {
            ngx_http_aigov_admin_allow = "PUT, DELETE";
            return ngx_http_aigov_admin_problem(r, NGX_HTTP_NOT_ALLOWED,
                       "method-not-allowed", "Method not allowed",
                       "use PUT to set or DELETE to clear \"%V\"", &op);
        }

    } else if ((ctx->action = ngx_http_aigov_admin_find_action(&op,
                                                              &ctx->arg)))
    {
        if (r->method != NGX_HTTP_POST) {
            ngx_http_aigov_admin_allow = "POST";
            return ngx_http_aigov_admin_problem(r, NGX_HTTP_NOT_ALLOWED,
                       "method-not-allowed", "Method not allowed",
                       "use POST for \"%V\"", &op);
        }

    } else {
        return ngx_http_aigov_admin_problem(r, NGX_HTTP_NOT_FOUND,
                   "not-found", "Not found",
                   "no action \"%V\": use kill, unkill, rollback, "
                   "unrollback, weights or active", &op);
    }

#undef ngx_http_aigov_op_is

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln->handler = ngx_http_aigov_admin_cleanup;
    cln->data = ctx;

    /*
     * not the core's slot: that one holds ngx_aigov_ctx_t, which the
     * problem responses read
     */
    ngx_http_set_ctx(r, ctx, ngx_http_aigov_chain_module);

    r->request_body_in_single_buf = 1;

    rc = ngx_http_read_client_request_body(r, ngx_http_aigov_admin_body);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }

    return NGX_DONE;
}


static void
ngx_http_aigov_admin_body(ngx_http_request_t *r)
{
    u_char                      *p;
    size_t                       len;
    json_t                      *body;
    ngx_int_t                    rc;
    ngx_chain_t                 *cl;
    json_error_t                 err;
    ngx_http_aigov_admin_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_aigov_chain_module);

    body = NULL;

    if (r->request_body && r->request_body->bufs) {

        if (r->request_body->temp_file) {
            ngx_http_finalize_request(r,
                ngx_http_aigov_admin_problem(r,
                    NGX_HTTP_REQUEST_ENTITY_TOO_LARGE, "body-too-large",
                    "Request body too large",
                    "admin requests are small JSON documents"));
            return;
        }

        len = 0;
        for (cl = r->request_body->bufs; cl; cl = cl->next) {
            len += cl->buf->last - cl->buf->pos;
        }

        if (len > NGX_HTTP_AIGOV_ADMIN_BODY_MAX) {
            ngx_http_finalize_request(r,
                ngx_http_aigov_admin_problem(r,
                    NGX_HTTP_REQUEST_ENTITY_TOO_LARGE, "body-too-large",
                    "Request body too large",
                    "admin requests are at most 16k of JSON"));
            return;
        }

        if (len) {
            p = ngx_pnalloc(r->pool, len);
            if (p == NULL) {
                ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
                return;
            }

            len = 0;
            for (cl = r->request_body->bufs; cl; cl = cl->next) {
                ngx_memcpy(p + len, cl->buf->pos,
                           cl->buf->last - cl->buf->pos);
                len += cl->buf->last - cl->buf->pos;
            }

            body = json_loadb((char *) p, len, JSON_REJECT_DUPLICATES, &err);

            if (body == NULL || !json_is_object(body)) {
                json_decref(body);
                ngx_http_finalize_request(r,
                    ngx_http_aigov_admin_problem(r, NGX_HTTP_BAD_REQUEST,
                        "invalid-json", "Invalid JSON",
                        "the body must be a JSON object%s%s",
                        body ? "" : ": ", body ? "" : err.text));
                return;
            }
        }
    }

    rc = ngx_http_aigov_admin_write(r, ctx, body);

    json_decref(body);

    if (ctx->waiting) {
        /*
         * waiting for Redis: ngx_http_aigov_admin_done() finalizes, which
         * releases the reference the body reading took
         */
        return;
    }

    ngx_http_finalize_request(r, rc);
}


static ngx_int_t
ngx_http_aigov_admin_weights(ngx_http_request_t *r,
    ngx_http_aigov_admin_ctx_t *ctx, json_t *body,
    ngx_http_aigov_control_t *ctl)
{
    u_char               *p, *last;
    char                  buf[16];
    size_t                len;
    double                d;
    json_t               *w, *value;
    uint32_t              pct;
    ngx_str_t             err;
    const char           *key;
    ngx_aigov_runtime_t   rt;

    w = body ? json_object_get(body, "weights") : NULL;

    if (w == NULL || !json_is_object(w)) {
                ctx->rc = ngx_http_aigov_admin_problem(r, NGX_HTTP_BAD_REQUEST,
                   "invalid-weights", "Invalid weights",
                   "expected {\"weights\": {\"VARIANT\": \"5%%\", ...}}");
        return NGX_DONE;
    }

    p = ctl->weights;
    last = ctl->weights + sizeof(ctl->weights);

    json_object_foreach(w, key, value) {

        if (json_is_string(value)) {
            len = json_string_length(value);

            if (len + 1 > sizeof(buf)) {
                goto invalid;
            }

            ngx_memcpy(buf, json_string_value(value), len);

            if (len == 0 || buf[len - 1] != '%') {
                buf[len++] = '%';
            }

        } else if (json_is_number(value)) {
            d = json_number_value(value);

            if (d < 0 || d > 100) {
                goto invalid;
            }

            /* a number is a percentage: 5 or 0.25 */
            pct = (uint32_t) (d * 100 + 0.5);
            len = aigov_format_percent(pct, buf);
            buf[len++] = '%';

            if ((double) pct / 100 - d > 0.0001
                || d - (double) pct / 100 > 0.0001)
            {
                goto invalid;
            }

        } else {
            goto invalid;
        }

        if ((size_t) (last - p) < ngx_strlen(key) + len + 2) {
                        ctx->rc = ngx_http_aigov_admin_problem(r, NGX_HTTP_BAD_REQUEST,
                          "invalid-weights", "Invalid weights",
                          "too many weights");
            return NGX_DONE;
        }

        if (p != ctl->weights) {
            *p++ = ',';
        }

        p = ngx_sprintf(p, "%s=%*s", key, len, buf);
        continue;

    invalid:

                ctx->rc = ngx_http_aigov_admin_problem(r, NGX_HTTP_BAD_REQUEST,
                   "invalid-weights", "Invalid weights",
                   "the weight of \"%s\" must be a percentage from 0%% to "
                   "100%% with at most two decimals, as \"5%%\" or 0.25",
                   key);
        return NGX_DONE;
    }

    ctl->weights_len = (uint16_t) (p - ctl->weights);

    if (ngx_http_aigov_parse_weights(ctx->model, ctl->weights,
                                     ctl->weights_len, &rt, &err)
        != NGX_OK)
    {
                ctx->rc = ngx_http_aigov_admin_problem(r, NGX_HTTP_BAD_REQUEST,
                   "invalid-weights", "Invalid weights",
                   "\"%*s\": %V", (size_t) ctl->weights_len, ctl->weights,
                   &err);
        return NGX_DONE;
    }

    return NGX_OK;
}


static ngx_uint_t
ngx_http_aigov_admin_printable(const char *s, size_t len)
{
    size_t  i;

    /* a reason goes into the error log: no line breaks, no escapes */

    for (i = 0; i < len; i++) {
        if ((u_char) s[i] < 0x20 || s[i] == 0x7f) {
            return 0;
        }
    }

    return 1;
}


static ngx_int_t
ngx_http_aigov_admin_write(ngx_http_request_t *r,
    ngx_http_aigov_admin_ctx_t *ctx, json_t *body)
{
    json_t                   *j;
    ngx_str_t                 name;
    ngx_int_t                 rc;
    ngx_str_t                *op;
    ngx_aigov_variant_t      *v;
    ngx_http_aigov_change_t  *ch;

    extern ngx_aigov_plugin_t  ngx_aigov_bluegreen_plugin;

    ch = &ctx->change;
    op = &ctx->op;

    ch->model = ctx->model;
    ch->log = r->connection->log;
    ch->actor = ctx->token->name;
    ch->done = ngx_http_aigov_admin_done;
    ch->data = ctx;

    j = body ? json_object_get(body, "reason") : NULL;

    if (j) {
        if (!json_is_string(j) || json_string_length(j) > 512
            || !ngx_http_aigov_admin_printable(json_string_value(j),
                                               json_string_length(j)))
        {
            return ngx_http_aigov_admin_problem(r, NGX_HTTP_BAD_REQUEST,
                       "invalid-json", "Invalid JSON",
                       "\"reason\" must be a string of at most 512 bytes "
                       "without control characters");
        }

        ch->reason.len = json_string_length(j);
        ch->reason.data = ngx_pnalloc(r->pool, ch->reason.len);
        if (ch->reason.data == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ngx_memcpy(ch->reason.data, json_string_value(j), ch->reason.len);
    }

    if (ctx->action) {
        return ngx_http_aigov_admin_plugin(r, ctx, body);
    }

    ngx_http_aigov_control_read(ctx->model, &ch->old);
    ch->new = ch->old;

    if (op->len == 4 && ngx_strncmp(op->data, "kill", 4) == 0) {
        ch->new.kill = 1;
        ch->fields = NGX_HTTP_AIGOV_F_KILL;

    } else if (op->len == 6 && ngx_strncmp(op->data, "unkill", 6) == 0) {
        ch->new.kill = 0;
        ch->fields = NGX_HTTP_AIGOV_F_KILL;

    } else if (op->len == 8 && ngx_strncmp(op->data, "rollback", 8) == 0) {
        ch->new.rollback = 1;
        ch->fields = NGX_HTTP_AIGOV_F_ROLLBACK;

    } else if (op->len == 10) {   /* unrollback */
        ch->new.rollback = 0;
        ch->fields = NGX_HTTP_AIGOV_F_ROLLBACK;

    } else if (op->len == 7) {    /* weights */
        ch->fields = NGX_HTTP_AIGOV_F_WEIGHTS;

        if (ngx_aigov_model_conf(ctx->model, ngx_aigov_bluegreen_plugin)) {
            return ngx_http_aigov_admin_problem(r, NGX_HTTP_CONFLICT,
                       "wrong-mode", "Wrong mode",
                       "model \"%V\" is blue-green: switch its active "
                       "colour instead", &ctx->model->name);
        }

        if (r->method == NGX_HTTP_DELETE) {
            ch->new.weights_len = 0;

        } else {
            if (ngx_http_aigov_admin_weights(r, ctx, body, &ch->new)
                != NGX_OK)
            {
                return ctx->rc;
            }
        }

    } else {                      /* active */
        ch->fields = NGX_HTTP_AIGOV_F_ACTIVE;

        if (ngx_aigov_model_conf(ctx->model, ngx_aigov_bluegreen_plugin)
            == NULL)
        {
            return ngx_http_aigov_admin_problem(r, NGX_HTTP_CONFLICT,
                       "wrong-mode", "Wrong mode",
                       "model \"%V\" is not blue-green (no \"active\" in "
                       "its config): set weights instead", &ctx->model->name);
        }

        if (r->method == NGX_HTTP_DELETE) {
            ch->new.active_len = 0;

        } else {
            j = body ? json_object_get(body, "active") : NULL;

            if (j == NULL || !json_is_string(j)) {
                return ngx_http_aigov_admin_problem(r, NGX_HTTP_BAD_REQUEST,
                           "invalid-json", "Invalid JSON",
                           "expected {\"active\": \"VARIANT\"}");
            }

            name.data = (u_char *) json_string_value(j);
            name.len = json_string_length(j);

            v = ngx_aigov_find_variant(ctx->model, &name);

            if (v == NULL) {
                return ngx_http_aigov_admin_problem(r, NGX_HTTP_BAD_REQUEST,
                           "unknown-variant", "Unknown variant",
                           "model \"%V\" has no variant \"%*s\"",
                           &ctx->model->name, ngx_min(name.len, 128),
                           name.data);
            }

            ch->new.active_len = (uint8_t) v->name.len;
            ngx_memcpy(ch->new.active, v->name.data, v->name.len);
        }
    }

    ch->action.len = (r->method == NGX_HTTP_DELETE)
                     ? op->len + sizeof("clear-") - 1 : op->len;
    ch->action.data = ngx_pnalloc(r->pool, ch->action.len);
    if (ch->action.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_sprintf(ch->action.data, "%s%V",
                r->method == NGX_HTTP_DELETE ? "clear-" : "", op);

    rc = ngx_http_aigov_control_change(ch);

    if (rc == NGX_AGAIN) {
        ctx->waiting = 1;
        return NGX_DONE;
    }

    return ngx_http_aigov_send_json(r, NGX_HTTP_OK,
               ngx_http_aigov_admin_change_json(ch));
}


/*
 * A plugin's action: the handler changes what it owns, on this node, and
 * says what it did.  The change goes to the audit stream and its message,
 * if any, to the fleet, in one Redis script whose reply the request waits
 * for (an event, at most command_timeout); without Redis, at once.  Either
 * way it is an audit line in the error log that says where it went.
 */

static ngx_int_t
ngx_http_aigov_admin_plugin(ngx_http_request_t *r,
    ngx_http_aigov_admin_ctx_t *ctx, json_t *body)
{
    ngx_http_aigov_record_t         rec;
    ngx_http_aigov_main_conf_t     *mcf;
    ngx_http_aigov_admin_action_t  *a;

    a = &ctx->act;

    a->model = ctx->model;
    a->arg = ctx->arg;
    a->body = body;
    a->log = r->connection->log;
    a->pool = r->pool;

    ctx->result = ctx->action(a);

    a->body = NULL;

    if (ctx->result == NULL) {
        if (a->status == 0) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_http_aigov_admin_problem(r, a->status, a->type, a->title,
                                            "%*s", a->detail_len, a->detail);
    }

    mcf = ngx_http_get_module_main_conf(r, ngx_http_aigov_module);

    rec.model = ctx->model;
    rec.action = a->action;
    rec.actor = ctx->token->name;
    rec.reason = ctx->change.reason;
    rec.old = a->old;
    rec.new = a->result;
    rec.message = a->message;

    ctx->record = mcf->redis ? NGX_HTTP_AIGOV_RECORD_NOT_SENT
                             : NGX_HTTP_AIGOV_RECORD_LOG;

    if (mcf->redis) {
        ctx->cmd = ngx_http_aigov_control_record(&rec,
                                           ngx_http_aigov_admin_record_reply,
                                           ctx);
        if (ctx->cmd) {
            ctx->waiting = 1;
            return NGX_DONE;
        }
    }

    return ngx_http_aigov_admin_plugin_done(r, ctx);
}


static void
ngx_http_aigov_admin_record_reply(void *data, redisReply *reply)
{
    ngx_http_aigov_admin_ctx_t *ctx = data;

    ngx_int_t            rc;
    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    r = ctx->request;
    c = r->connection;

    ctx->cmd = NULL;
    ctx->waiting = 0;

    if (reply == NULL) {
        /* timed out or lost: Redis may still run it, or may not */
        ctx->record = NGX_HTTP_AIGOV_RECORD_NO_REPLY;

    } else if (reply->type == REDIS_REPLY_INTEGER) {
        ctx->record = NGX_HTTP_AIGOV_RECORD_REDIS;
        ctx->act.propagated = (ctx->act.message.len && reply->integer >= 0);

    } else {
        ctx->record = NGX_HTTP_AIGOV_RECORD_REFUSED;

        if (reply->type == REDIS_REPLY_ERROR) {
            ngx_log_error(NGX_LOG_ERR, c->log, 0,
                          "aigov: redis refused the audit record of model "
                          "\"%V\" action \"%V\": %*s", &ctx->model->name,
                          &ctx->act.action, ngx_min(reply->len, 200),
                          reply->str);
        }
    }

    rc = ngx_http_aigov_admin_plugin_done(r, ctx);

    ngx_http_finalize_request(r, rc);
    ngx_http_run_posted_requests(c);
}


static ngx_int_t
ngx_http_aigov_admin_plugin_done(ngx_http_request_t *r,
    ngx_http_aigov_admin_ctx_t *ctx)
{
    json_t                         *result;
    const char                     *where;
    ngx_http_aigov_admin_action_t  *a;

    a = &ctx->act;

    switch (ctx->record) {

    case NGX_HTTP_AIGOV_RECORD_REDIS:
        where = a->propagated ? "sent to the fleet, in redis"
                              : "this node only, in redis";
        break;

    case NGX_HTTP_AIGOV_RECORD_NOT_SENT:
        where = "this node only, redis unreachable";
        break;

    case NGX_HTTP_AIGOV_RECORD_NO_REPLY:
        where = "this node only so far: redis did not answer in time "
                "(what was sent may still reach redis and the fleet)";
        break;

    case NGX_HTTP_AIGOV_RECORD_REFUSED:
        where = "this node only, redis refused it";
        break;

    default:
        where = "this node only";
    }

    ngx_log_error(NGX_LOG_NOTICE, r->connection->log, 0,
                  "aigov audit: model \"%V\" action \"%V\" by \"%V\": "
                  "%V%s%V%s%V%s, %s",
                  &ctx->model->name, &a->action, &ctx->token->name,
                  &a->old, a->old.len ? " -> " : "", &a->result,
                  ctx->change.reason.len ? " (reason \"" : "",
                  &ctx->change.reason,
                  ctx->change.reason.len ? "\")" : "", where);

    result = ctx->result;
    ctx->result = NULL;

    return ngx_http_aigov_send_json(r, NGX_HTTP_OK,
               json_pack("{s:s%, s:s%, s:s%, s:b, s:o, s:o}",
                         "model", (char *) ctx->model->name.data,
                         ctx->model->name.len,
                         "action", (char *) a->action.data, a->action.len,
                         "node", (char *) ngx_cycle->hostname.data,
                         ngx_cycle->hostname.len,
                         "propagated", (int) a->propagated,
                         "result", result,
                         "state",
                         ngx_http_aigov_admin_model_json(ctx->model)));
}


static void
ngx_http_aigov_admin_done(ngx_http_aigov_change_t *ch)
{
    ngx_int_t                    rc;
    ngx_connection_t            *c;
    ngx_http_request_t          *r;
    ngx_http_aigov_admin_ctx_t  *ctx;

    ctx = ch->data;
    r = ctx->request;
    c = r->connection;

    ctx->waiting = 0;

    rc = ngx_http_aigov_send_json(r, NGX_HTTP_OK,
             ngx_http_aigov_admin_change_json(ch));

    ngx_http_finalize_request(r, rc);
    ngx_http_run_posted_requests(c);
}


static void
ngx_http_aigov_admin_cleanup(void *data)
{
    ngx_http_aigov_admin_ctx_t  *ctx = data;

    /* the client went away while Redis had our command */

    ngx_http_aigov_control_cancel(&ctx->change);

    if (ctx->cmd) {
        ngx_aigov_redis_cancel(ctx->cmd);
        ctx->cmd = NULL;
    }

    if (ctx->result) {
        json_decref(ctx->result);
        ctx->result = NULL;
    }
}


/* GET audit: XREVRANGE <prefix>audit + - COUNT n */

static ngx_int_t
ngx_http_aigov_admin_audit(ngx_http_request_t *r,
    ngx_http_aigov_admin_ctx_t *ctx)
{
    u_char                      *key, count[NGX_INT_T_LEN];
    ngx_int_t                    n;
    ngx_str_t                    arg;
    const char                  *argv[6];
    size_t                       argvlen[6];
    ngx_pool_cleanup_t          *cln;
    ngx_aigov_redis_t           *rds;
    ngx_http_aigov_main_conf_t  *mcf;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_aigov_module);

    n = 20;

    if (ngx_http_arg(r, (u_char *) "count", 5, &arg) == NGX_OK) {
        n = ngx_atoi(arg.data, arg.len);

        if (n < 1 || n > 1000) {
            return ngx_http_aigov_admin_problem(r, NGX_HTTP_BAD_REQUEST,
                       "invalid-count", "Invalid count",
                       "count must be 1 to 1000");
        }
    }

    rds = ngx_http_aigov_control_client();

    if (mcf->redis == NULL || rds == NULL || !rds->ready) {
        return ngx_http_aigov_admin_problem(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                   "no-redis", "Audit trail unavailable",
                   mcf->redis ? "redis is unreachable; changes made "
                                "meanwhile are in the error log"
                              : "no aigov_redis: the audit trail is in the "
                                "error log");
    }

    key = ngx_pnalloc(r->pool, mcf->redis->prefix.len + sizeof("audit"));
    if (key == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    argv[0] = "XREVRANGE";
    argvlen[0] = 9;
    argv[1] = (const char *) key;
    argvlen[1] = ngx_sprintf(key, "%Vaudit", &mcf->redis->prefix) - key;
    argv[2] = "+";
    argvlen[2] = 1;
    argv[3] = "-";
    argvlen[3] = 1;
    argv[4] = "COUNT";
    argvlen[4] = 5;
    argv[5] = (const char *) count;
    argvlen[5] = ngx_sprintf(count, "%i", n) - count;

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->cmd = ngx_aigov_redis_send(rds, ngx_http_aigov_admin_audit_reply,
                                    ctx, 6, argv, argvlen);

    if (ctx->cmd == NULL) {
        return ngx_http_aigov_admin_problem(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                   "no-redis", "Audit trail unavailable",
                   "redis is unreachable");
    }

    cln->handler = ngx_http_aigov_admin_cleanup;
    cln->data = ctx;

    ctx->waiting = 1;
    r->main->count++;

    return NGX_DONE;
}


static void
ngx_http_aigov_admin_audit_reply(void *data, redisReply *reply)
{
    ngx_http_aigov_admin_ctx_t *ctx = data;

    size_t               i, k;
    json_t              *list, *entry;
    ngx_int_t            rc;
    redisReply          *e, *f;
    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    r = ctx->request;
    c = r->connection;

    ctx->cmd = NULL;
    ctx->waiting = 0;

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY) {
        rc = ngx_http_aigov_admin_problem(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                 "no-redis", "Audit trail unavailable",
                 "redis did not answer");
        goto done;
    }

    list = json_array();

    for (i = 0; list && i < reply->elements; i++) {
        e = reply->element[i];

        if (e->type != REDIS_REPLY_ARRAY || e->elements != 2
            || e->element[1]->type != REDIS_REPLY_ARRAY)
        {
            continue;
        }

        entry = json_object();
        if (entry == NULL) {
            break;
        }

        json_object_set_new(entry, "id", json_stringn(e->element[0]->str,
                                                      e->element[0]->len));
        f = e->element[1];

        for (k = 0; k + 1 < f->elements; k += 2) {
            if (f->element[k]->type == REDIS_REPLY_STRING
                && f->element[k + 1]->type == REDIS_REPLY_STRING)
            {
                json_object_setn_new(entry, f->element[k]->str,
                                     f->element[k]->len,
                                     json_stringn(f->element[k + 1]->str,
                                                  f->element[k + 1]->len));
            }
        }

        json_array_append_new(list, entry);
    }

    rc = ngx_http_aigov_send_json(r, NGX_HTTP_OK,
                                        json_pack("{s:o}", "audit", list));

done:

    ngx_http_finalize_request(r, rc);
    ngx_http_run_posted_requests(c);
}


/* Authentication. */

static ngx_http_aigov_token_t *
ngx_http_aigov_admin_auth(ngx_http_request_t *r,
    ngx_http_aigov_admin_conf_t *acf)
{
    u_char                   digest[32];
    ngx_str_t                auth;
    ngx_uint_t               i;
    unsigned int             dlen;
    ngx_http_aigov_token_t  *t, *found;

    if (r->headers_in.authorization == NULL) {
        return NULL;
    }

    auth = r->headers_in.authorization->value;

    if (auth.len < sizeof("Bearer ") - 1
        || ngx_strncasecmp(auth.data, (u_char *) "Bearer ", 7) != 0)
    {
        return NULL;
    }

    auth.data += 7;
    auth.len -= 7;

    while (auth.len && auth.data[0] == ' ') {
        auth.data++;
        auth.len--;
    }

    if (auth.len == 0 || auth.len > 4096) {
        return NULL;
    }

    /*
     * Digests have one length whatever the token's, and every entry is
     * compared, so the time taken says nothing about which bytes matched.
     */

    dlen = sizeof(digest);

    if (EVP_Digest(auth.data, auth.len, digest, &dlen, EVP_sha256(), NULL)
        != 1)
    {
        return NULL;
    }

    t = acf->tokens->elts;
    found = NULL;

    for (i = 0; i < acf->tokens->nelts; i++) {
        if (CRYPTO_memcmp(digest, t[i].digest, sizeof(digest)) == 0) {
            found = &t[i];
        }
    }

    return found;
}


/* Responses. */

static json_t *
ngx_http_aigov_admin_change_json(ngx_http_aigov_change_t *ch)
{
    return json_pack("{s:s%, s:s%, s:I, s:b, s:s%, s:o, s:o}",
                     "model", (char *) ch->model->name.data,
                     ch->model->name.len,
                     "action", (char *) ch->action.data, ch->action.len,
                     "version", (json_int_t) ch->new.version,
                     "propagated", (int) ch->propagated,
                     "node", (char *) ngx_cycle->hostname.data,
                     ngx_cycle->hostname.len,
                     "runtime", ngx_http_aigov_control_json(ch->model),
                     "state", ngx_http_aigov_admin_model_json(ch->model));
}


static json_t *
ngx_http_aigov_admin_model_json(ngx_aigov_model_t *model)
{
    json_t              *j;
    ngx_uint_t           i;
    ngx_aigov_plugin_t  *p;

    j = json_pack("{s:s%, s:o}",
                  "name", (char *) model->name.data, model->name.len,
                  "runtime", ngx_http_aigov_control_json(model));

    if (j == NULL) {
        return NULL;
    }

    for (i = 0; i < ngx_aigov_nplugins; i++) {
        p = ngx_aigov_plugins_sorted[i];

        if (p->status) {
            (void) p->status(model, model->plugin_conf[p->index], j);
        }
    }

    return j;
}


static ngx_int_t
ngx_http_aigov_admin_problem(ngx_http_request_t *r, ngx_uint_t status,
    const char *type, const char *title, const char *fmt, ...)
{
    u_char     buf[512], *p;
    va_list    args;
    ngx_str_t  detail, name, value;

    va_start(args, fmt);
    p = ngx_vslprintf(buf, buf + sizeof(buf), fmt, args);
    va_end(args);

    detail.data = buf;
    detail.len = p - buf;

    if (status == NGX_HTTP_UNAUTHORIZED) {
        ngx_str_set(&name, "WWW-Authenticate");
        ngx_str_set(&value, "Bearer realm=\"aigov\"");

        if (ngx_aigov_add_header(r, &name, &value) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    if (status == NGX_HTTP_NOT_ALLOWED) {
        ngx_str_set(&name, "Allow");
        value.data = (u_char *) ngx_http_aigov_admin_allow;
        value.len = ngx_strlen(ngx_http_aigov_admin_allow);

        if (ngx_aigov_add_header(r, &name, &value) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    ngx_http_aigov_admin_allow = "GET, HEAD, POST, PUT, DELETE";

    /* the caller finalizes with this (content handlers return it) */
    return ngx_http_aigov_problem(r, status, type, title, &detail, 0);
}


/* Configuration: aigov_admin tokens=FILE; */

static char *
ngx_http_aigov_admin_load_tokens(ngx_conf_t *cf, ngx_str_t *file,
    ngx_array_t *tokens)
{
    u_char                  *p, *end, *line, *eol, *f[3];
    size_t                   flen[3];
    ssize_t                  n;
    ngx_uint_t               i, k, lineno;
    ngx_file_t               fl;
    ngx_file_info_t          fi;
    unsigned int             dlen;
    ngx_http_aigov_token_t  *t, *all;

    ngx_memzero(&fl, sizeof(ngx_file_t));
    fl.name = *file;
    fl.log = cf->log;

    fl.fd = ngx_open_file(file->data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    if (fl.fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "cannot open aigov_admin tokens file \"%V\"", file);
        return NGX_CONF_ERROR;
    }

    if (ngx_fd_info(fl.fd, &fi) == NGX_FILE_ERROR
        || ngx_file_size(&fi) > 1024 * 1024)
    {
        ngx_close_file(fl.fd);
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "aigov_admin tokens file \"%V\" is larger than 1m",
                           file);
        return NGX_CONF_ERROR;
    }

    if ((ngx_file_access(&fi) & 0004) != 0) {
        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "aigov_admin tokens file \"%V\" is readable by "
                           "everyone: chmod 600 it", file);
    }

    p = ngx_pnalloc(cf->temp_pool, ngx_file_size(&fi) + 1);
    if (p == NULL) {
        ngx_close_file(fl.fd);
        return NGX_CONF_ERROR;
    }

    n = ngx_read_file(&fl, p, ngx_file_size(&fi), 0);
    ngx_close_file(fl.fd);

    if (n == NGX_ERROR) {
        return NGX_CONF_ERROR;
    }

    end = p + n;
    lineno = 0;

    for (line = p; line < end; line = eol + 1) {
        lineno++;

        eol = ngx_strlchr(line, end, '\n');
        if (eol == NULL) {
            eol = end;
        }

        for (k = 0, p = line; k < 4 && p < eol; k++) {
            while (p < eol && (*p == ' ' || *p == '\t' || *p == '\r')) {
                p++;
            }

            if (p == eol || *p == '#') {
                break;
            }

            if (k == 3) {
                goto invalid;
            }

            f[k] = p;

            while (p < eol && *p != ' ' && *p != '\t' && *p != '\r') {
                p++;
            }

            flen[k] = p - f[k];
        }

        if (k == 0) {
            continue;   /* empty line or comment */
        }

        if (k != 3) {
            goto invalid;
        }

        if (!aigov_valid_name((char *) f[0], flen[0]) || flen[0] > 64) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid token name \"%*s\" in \"%V\" line "
                               "%ui", flen[0], f[0], file, lineno);
            return NGX_CONF_ERROR;
        }

        if (flen[2] < 16) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "token \"%*s\" in \"%V\" line %ui is shorter "
                               "than 16 characters", flen[0], f[0], file,
                               lineno);
            return NGX_CONF_ERROR;
        }

        t = ngx_array_push(tokens);
        if (t == NULL) {
            return NGX_CONF_ERROR;
        }

        t->name.len = flen[0];
        t->name.data = ngx_pnalloc(cf->pool, flen[0]);
        if (t->name.data == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_memcpy(t->name.data, f[0], flen[0]);

        if (flen[1] == 4 && ngx_strncmp(f[1], "read", 4) == 0) {
            t->role = NGX_HTTP_AIGOV_ROLE_READ;

        } else if (flen[1] == 5 && ngx_strncmp(f[1], "write", 5) == 0) {
            t->role = NGX_HTTP_AIGOV_ROLE_WRITE;

        } else {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid role \"%*s\" in \"%V\" line %ui: use "
                               "\"read\" or \"write\"", flen[1], f[1], file,
                               lineno);
            return NGX_CONF_ERROR;
        }

        dlen = sizeof(t->digest);

        if (EVP_Digest(f[2], flen[2], t->digest, &dlen, EVP_sha256(), NULL)
            != 1)
        {
            return NGX_CONF_ERROR;
        }

        /* the token's bytes are not kept */
        ngx_memzero(f[2], flen[2]);

        all = tokens->elts;

        for (i = 0; i + 1 < tokens->nelts; i++) {
            if (all[i].name.len == t->name.len
                && ngx_strncmp(all[i].name.data, t->name.data, t->name.len)
                   == 0)
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "duplicate token name \"%V\" in \"%V\" "
                                   "line %ui", &t->name, file, lineno);
                return NGX_CONF_ERROR;
            }

            if (ngx_memcmp(all[i].digest, t->digest, 32) == 0) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "token \"%V\" in \"%V\" line %ui is the "
                                   "same as token \"%V\"", &t->name, file,
                                   lineno, &all[i].name);
                return NGX_CONF_ERROR;
            }
        }

        continue;

    invalid:

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid line %ui in \"%V\": use "
                           "\"NAME read|write TOKEN\"", lineno, file);
        return NGX_CONF_ERROR;
    }

    if (tokens->nelts == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "aigov_admin tokens file \"%V\" has no token",
                           file);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


char *
ngx_http_aigov_admin(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_str_t                     *value, file;
    ngx_http_core_loc_conf_t      *clcf;
    ngx_http_aigov_loc_conf_t     *alcf;
    ngx_http_aigov_admin_conf_t   *acf;

    value = cf->args->elts;

    if (ngx_strncmp(value[1].data, "tokens=", 7) != 0 || value[1].len == 7) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\" in aigov_admin: use "
                           "\"tokens=FILE\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (clcf->handler) {
        return "is duplicate, or the location has another handler";
    }

#if (NGX_PCRE)
    if (clcf->regex) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "aigov_admin needs a prefix location, "
                           "as \"location /aigov/\"");
        return NGX_CONF_ERROR;
    }
#endif

    acf = ngx_pcalloc(cf->pool, sizeof(ngx_http_aigov_admin_conf_t));
    if (acf == NULL) {
        return NGX_CONF_ERROR;
    }

    acf->prefix = clcf->name;

    acf->tokens = ngx_array_create(cf->pool, 4,
                                   sizeof(ngx_http_aigov_token_t));
    if (acf->tokens == NULL) {
        return NGX_CONF_ERROR;
    }

    file.data = value[1].data + 7;
    file.len = value[1].len - 7;

    if (ngx_conf_full_name(cf->cycle, &file, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    if (ngx_http_aigov_admin_load_tokens(cf, &file, acf->tokens)
        != NGX_CONF_OK)
    {
        return NGX_CONF_ERROR;
    }

    alcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_aigov_module);
    alcf->admin = acf;

    /* admin bodies (up to 16k) are parsed in memory, never from a file */
    if (clcf->client_body_buffer_size == NGX_CONF_UNSET_SIZE) {
        clcf->client_body_buffer_size = NGX_HTTP_AIGOV_ADMIN_BODY_MAX;
    }

    clcf->handler = ngx_http_aigov_admin_handler;

    return NGX_CONF_OK;
}
