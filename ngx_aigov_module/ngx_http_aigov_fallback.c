/*
 * ngx_aigov fallback chain: what a client gets when its model cannot
 * answer.
 *
 *   aigov_model chat {
 *       variant v1 chat_v1 stable;
 *       variant v2 chat_v2;
 *       fallback v1;                     # or "fallback off"; default: stable
 *       fallback_rules rules/chat.json;  # aigov_rules.h
 *   }
 *
 * A plugin that finds the chosen variant unusable (the breaker) walks the
 * variants of "fallback" first (ngx_aigov_fallback_variant()); when none
 * is usable, or the whole model is off (kill switch), ngx_aigov_fallback()
 * answers from the rules, else with a problem response.  An upstream that
 * fails or times out before its response header arrives is answered from
 * the rules too, in the header filter: the response nginx was about to
 * send (502, 504) is replaced, status, headers and body.
 *
 * Rules over the request body ("$." paths) do not make the decision wait
 * for it: ngx_aigov_fallback() reads the body when the rules must answer
 * and nobody has read it yet; the header filter finds it read for the
 * upstream already.
 */

#include "ngx_http_aigov_module.h"
#include "aigov_rules.h"


#define NGX_HTTP_AIGOV_RULES_MAX_FILE  (4 * 1024 * 1024)

/*
 * The hash of the response headers a rule's answer adds (nginx only tells
 * 0, a deleted header, from the rest): when that answer is replaced (a
 * stale cache entry for an open breaker), its headers go with it.
 */
#define NGX_HTTP_AIGOV_RULE_HEADER     0x72756c65


typedef enum {
    NGX_HTTP_AIGOV_ATTR_METHOD = 0,
    NGX_HTTP_AIGOV_ATTR_PATH,
    NGX_HTTP_AIGOV_ATTR_QUERY,
    NGX_HTTP_AIGOV_ATTR_CLIENT,
    NGX_HTTP_AIGOV_ATTR_MODEL,
    NGX_HTTP_AIGOV_ATTR_VARIANT,
    NGX_HTTP_AIGOV_ATTR_VERSION,
    NGX_HTTP_AIGOV_ATTR_DECISION,
    NGX_HTTP_AIGOV_ATTR_REASON,
    NGX_HTTP_AIGOV_ATTR_REQUEST_ID,
    NGX_HTTP_AIGOV_ATTR_HEADER
} ngx_http_aigov_attr_e;


typedef struct {
    ngx_http_aigov_attr_e      kind;
    ngx_str_t                  name;         /* as in the rules, no '@' */
    ngx_aigov_header_t         header;       /* header.NAME */
} ngx_http_aigov_attr_t;


typedef struct {
    ngx_array_t                attrs;        /* ngx_http_aigov_attr_t */
    ngx_int_t                  request_id;   /* $request_id index, or -1 */
    ngx_uint_t                 uses_body;
} ngx_http_aigov_rules_conf_t;


/*
 * What ngx_aigov_fallback() answers with when no rule does; kept in the
 * chain module's request ctx slot while the body is read (the core's slot
 * holds ngx_aigov_ctx_t).
 */
typedef struct {
    ngx_uint_t                 status;
    const char                *type;
    const char                *title;
    ngx_str_t                  detail;
    time_t                     retry_after;
} ngx_http_aigov_problem_args_t;


/* ctx->fallback_out: a response being replaced in the filters */
typedef struct {
    ngx_buf_t                 *body;         /* NULL: none (HEAD, 204) */
    ngx_uint_t                 sent;
} ngx_http_aigov_replace_t;


static ngx_int_t ngx_http_aigov_fallback_read_body(ngx_http_request_t *r,
    ngx_aigov_ctx_t *ctx, ngx_http_aigov_problem_args_t *pa);
static void ngx_http_aigov_fallback_body_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_aigov_fallback_answer(ngx_http_request_t *r,
    ngx_aigov_ctx_t *ctx, ngx_http_aigov_problem_args_t *pa);
static ngx_int_t ngx_http_aigov_rules_answer(ngx_http_request_t *r,
    ngx_aigov_ctx_t *ctx, time_t retry_after, ngx_buf_t **body);
static ngx_int_t ngx_http_aigov_rules_run(ngx_http_request_t *r,
    ngx_aigov_ctx_t *ctx, aigov_rules_result_t *res);
static ngx_int_t ngx_http_aigov_rules_header(ngx_http_request_t *r,
    ngx_str_t *name, ngx_str_t *value);
static void ngx_http_aigov_rules_free(void *data);


static const char  *ngx_http_aigov_fallback_names[] = {
    "",
    "breaker_open",
    "kill_switch",
    "upstream_error",
    "upstream_timeout"
};


static struct {
    const char                *name;
    ngx_http_aigov_attr_e      kind;
} ngx_http_aigov_attr_names[] = {
    { "method",      NGX_HTTP_AIGOV_ATTR_METHOD },
    { "path",        NGX_HTTP_AIGOV_ATTR_PATH },
    { "query",       NGX_HTTP_AIGOV_ATTR_QUERY },
    { "client",      NGX_HTTP_AIGOV_ATTR_CLIENT },
    { "model",       NGX_HTTP_AIGOV_ATTR_MODEL },
    { "variant",     NGX_HTTP_AIGOV_ATTR_VARIANT },
    { "version",     NGX_HTTP_AIGOV_ATTR_VERSION },
    { "decision",    NGX_HTTP_AIGOV_ATTR_DECISION },
    { "reason",      NGX_HTTP_AIGOV_ATTR_REASON },
    { "request_id",  NGX_HTTP_AIGOV_ATTR_REQUEST_ID },
    { NULL, 0 }
};


const char *
ngx_aigov_fallback_name(ngx_aigov_fallback_e reason)
{
    if (reason >= NGX_AIGOV_FALLBACK_LAST) {
        return "";
    }

    return ngx_http_aigov_fallback_names[reason];
}


/* Configuration. */

/* fallback off | VARIANT ... */

char *
ngx_http_aigov_fallback_directive(ngx_conf_t *cf, ngx_aigov_model_t *model)
{
    ngx_str_t            *value;
    ngx_uint_t            i, j;
    ngx_aigov_variant_t  *v;

    value = cf->args->elts;

    if (model->nfallback != NGX_CONF_UNSET_UINT) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "duplicate \"fallback\" in aigov_model \"%V\"",
                           &model->name);
        return NGX_CONF_ERROR;
    }

    if (cf->args->nelts < 2) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid number of arguments in \"fallback\": "
                           "use \"fallback VARIANT ...\" or \"fallback off\"");
        return NGX_CONF_ERROR;
    }

    if (cf->args->nelts == 2 && ngx_strcmp(value[1].data, "off") == 0) {
        model->nfallback = 0;
        return NGX_CONF_OK;
    }

    if (cf->args->nelts - 1 > NGX_AIGOV_MAX_VARIANTS) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "too many variants in \"fallback\"");
        return NGX_CONF_ERROR;
    }

    for (i = 1; i < cf->args->nelts; i++) {
        v = ngx_aigov_conf_variant(cf, &value[i]);
        if (v == NULL) {
            return NGX_CONF_ERROR;
        }

        for (j = 0; j < i - 1; j++) {
            if (model->fallback[j] == v) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "variant \"%V\" is listed twice in "
                                   "\"fallback\"", &value[i]);
                return NGX_CONF_ERROR;
            }
        }

        model->fallback[i - 1] = v;
    }

    model->nfallback = cf->args->nelts - 1;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_aigov_rules_attrs(ngx_conf_t *cf, ngx_aigov_model_t *model,
    aigov_rules_t *rules, ngx_http_aigov_rules_conf_t *rcf)
{
    size_t                  len;
    ngx_str_t               name;
    ngx_uint_t              i, k;
    const char             *n;
    ngx_http_aigov_attr_t  *a;

    static ngx_str_t  request_id = ngx_string("request_id");

    rcf->request_id = -1;

    for (i = 0; i < aigov_rules_nattrs(rules); i++) {
        n = aigov_rules_attr_name(rules, i);
        len = ngx_strlen(n);

        a = ngx_array_push(&rcf->attrs);
        if (a == NULL) {
            return NGX_ERROR;
        }

        ngx_memzero(a, sizeof(ngx_http_aigov_attr_t));
        a->name.data = (u_char *) n;
        a->name.len = len;

        if (len > 7 && ngx_strncmp(n, "header.", 7) == 0) {
            a->kind = NGX_HTTP_AIGOV_ATTR_HEADER;
            name.data = (u_char *) n + 7;
            name.len = len - 7;

            if (ngx_aigov_header_prepare(cf, &name, &a->header) != NGX_OK) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "fallback_rules \"%V\": \"@%s\" names no "
                                   "valid header", &model->rules_file, n);
                return NGX_ERROR;
            }

            continue;
        }

        for (k = 0; ngx_http_aigov_attr_names[k].name; k++) {
            if (ngx_strcmp(ngx_http_aigov_attr_names[k].name, n) == 0) {
                break;
            }
        }

        if (ngx_http_aigov_attr_names[k].name == NULL) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "fallback_rules \"%V\": unknown attribute "
                               "\"@%s\": use @method, @path, @query, @client, "
                               "@model, @variant, @version, @decision, "
                               "@reason, @request_id or @header.NAME",
                               &model->rules_file, n);
            return NGX_ERROR;
        }

        a->kind = ngx_http_aigov_attr_names[k].kind;

        if (a->kind == NGX_HTTP_AIGOV_ATTR_REQUEST_ID) {
            rcf->request_id = ngx_http_get_variable_index(cf, &request_id);
            if (rcf->request_id == NGX_ERROR) {
                return NGX_ERROR;
            }
        }
    }

    return NGX_OK;
}


/* fallback_rules FILE */

char *
ngx_http_aigov_fallback_rules(ngx_conf_t *cf, ngx_aigov_model_t *model)
{
    char                          err[512];
    u_char                       *buf;
    ssize_t                       n;
    ngx_fd_t                      fd;
    ngx_str_t                    *value, file;
    ngx_file_info_t               fi;
    aigov_rules_t                *rules;
    ngx_pool_cleanup_t           *cln;
    ngx_http_aigov_rules_conf_t  *rcf;

    value = cf->args->elts;

    if (model->rules_file.len) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "duplicate \"fallback_rules\" in aigov_model "
                           "\"%V\"", &model->name);
        return NGX_CONF_ERROR;
    }

    if (cf->args->nelts != 2) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid number of arguments in "
                           "\"fallback_rules\": use \"fallback_rules FILE\"");
        return NGX_CONF_ERROR;
    }

    file = value[1];

    if (ngx_conf_full_name(cf->cycle, &file, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    model->rules_file = file;

    fd = ngx_open_file(file.data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    if (fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "cannot open fallback_rules \"%V\"", &file);
        return NGX_CONF_ERROR;
    }

    buf = NULL;

    if (ngx_fd_info(fd, &fi) == NGX_FILE_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           ngx_fd_info_n " \"%V\" failed", &file);
        goto failed;
    }

    if (!ngx_is_file(&fi)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "fallback_rules \"%V\" is not a file", &file);
        goto failed;
    }

    if (ngx_file_size(&fi) > NGX_HTTP_AIGOV_RULES_MAX_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "fallback_rules \"%V\" is larger than %d bytes",
                           &file, NGX_HTTP_AIGOV_RULES_MAX_FILE);
        goto failed;
    }

    buf = ngx_alloc(ngx_file_size(&fi) + 1, cf->log);
    if (buf == NULL) {
        goto failed;
    }

    n = ngx_read_fd(fd, buf, ngx_file_size(&fi) + 1);

    if (n == -1) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "cannot read fallback_rules \"%V\"", &file);
        goto failed;
    }

    (void) ngx_close_file(fd);
    fd = NGX_INVALID_FILE;

    rules = aigov_rules_load((char *) buf, n, err, sizeof(err));
    ngx_free(buf);
    buf = NULL;

    if (rules == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid fallback_rules \"%V\": %s", &file, err);
        return NGX_CONF_ERROR;
    }

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        aigov_rules_free(rules);
        return NGX_CONF_ERROR;
    }

    cln->handler = ngx_http_aigov_rules_free;
    cln->data = rules;

    rcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_aigov_rules_conf_t));
    if (rcf == NULL
        || ngx_array_init(&rcf->attrs, cf->pool, 4,
                          sizeof(ngx_http_aigov_attr_t))
           != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    if (ngx_http_aigov_rules_attrs(cf, model, rules, rcf) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    rcf->uses_body = aigov_rules_uses_body(rules);

    model->rules = rules;
    model->rules_attrs = rcf;

    return NGX_CONF_OK;

failed:

    if (buf) {
        ngx_free(buf);
    }

    if (fd != NGX_INVALID_FILE) {
        (void) ngx_close_file(fd);
    }

    return NGX_CONF_ERROR;
}


static void
ngx_http_aigov_rules_free(void *data)
{
    aigov_rules_free(data);
}


/* After the model block: the default chain is the stable variant. */

ngx_int_t
ngx_http_aigov_fallback_init_model(ngx_conf_t *cf, ngx_aigov_model_t *model)
{
    if (model->nfallback == NGX_CONF_UNSET_UINT) {
        model->fallback[0] = model->stable;
        model->nfallback = 1;
    }

    return NGX_OK;
}


ngx_uint_t
ngx_http_aigov_rules_use_body(ngx_aigov_model_t *model)
{
    ngx_http_aigov_rules_conf_t  *rcf = model->rules_attrs;

    return rcf ? rcf->uses_body : 0;
}


/* The request path. */

void
ngx_aigov_fallback_variant(ngx_http_request_t *r, ngx_aigov_ctx_t *ctx,
    ngx_aigov_variant_t *v, ngx_aigov_fallback_e reason)
{
    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "aigov: model \"%V\": variant \"%V\" takes the request of "
                  "\"%V\" (%s)", &ctx->model->name, &v->name,
                  &ctx->variant->name, ngx_aigov_fallback_name(reason));

    ctx->variant = v;
    ctx->fallback = reason;
}


ngx_int_t
ngx_aigov_fallback(ngx_http_request_t *r, ngx_aigov_ctx_t *ctx,
    ngx_aigov_fallback_e reason, ngx_uint_t status, const char *type,
    const char *title, ngx_str_t *detail, time_t retry_after)
{
    ngx_http_aigov_problem_args_t  pa;

    ctx->fallback = reason;

    pa.status = status;
    pa.type = type;
    pa.title = title;
    pa.detail = *detail;
    pa.retry_after = retry_after;

    if (r->request_body == NULL && ngx_http_aigov_rules_use_body(ctx->model)) {
        return ngx_http_aigov_fallback_read_body(r, ctx, &pa);
    }

    return ngx_http_aigov_fallback_answer(r, ctx, &pa);
}


/*
 * The rules read the body and nobody has: read it now, answer when it is
 * in (ngx_http_aigov_fallback_body_handler()).  As the core's read before
 * the decision: NGX_DONE, or the status nginx finalizes with when reading
 * fails at once (a chunked body over client_max_body_size).
 */

static ngx_int_t
ngx_http_aigov_fallback_read_body(ngx_http_request_t *r,
    ngx_aigov_ctx_t *ctx, ngx_http_aigov_problem_args_t *pa)
{
    ngx_int_t                       rc;
    ngx_http_aigov_problem_args_t  *saved;

    saved = ngx_palloc(r->pool, sizeof(ngx_http_aigov_problem_args_t));
    if (saved == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    *saved = *pa;

    /* the caller's detail need not outlive its decide() */

    saved->detail.data = ngx_pstrdup(r->pool, &pa->detail);
    if (saved->detail.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_set_ctx(r, saved, ngx_http_aigov_chain_module);

    /*
     * The decision is made (nothing can answer but the fallback) and
     * counted now: a client that goes away before its body is in was
     * refused all the same.
     */
    ngx_http_aigov_decided(ctx);

    r->request_body_in_single_buf = 1;

    rc = ngx_http_read_client_request_body(r,
                                        ngx_http_aigov_fallback_body_handler);
    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }

    ngx_http_finalize_request(r, NGX_DONE);
    return NGX_DONE;
}


/*
 * The body is in.  Errors reading it never get here: nginx finalizes the
 * request itself (400 for a client gone, 408, 413).
 */

static void
ngx_http_aigov_fallback_body_handler(ngx_http_request_t *r)
{
    ngx_int_t                       rc;
    ngx_aigov_ctx_t                *ctx;
    ngx_http_aigov_problem_args_t  *pa;

    ctx = ngx_http_get_module_ctx(r, ngx_http_aigov_module);
    pa = ngx_http_get_module_ctx(r, ngx_http_aigov_chain_module);

    /* as after the core's read: the body stays for whoever comes later */
    r->preserve_body = 1;

    rc = ngx_http_aigov_fallback_answer(r, ctx, pa);

    if (rc != NGX_DONE) {
        ngx_http_finalize_request(r, rc);
    }
}


/*
 * Answers from the rules, else with the problem response: NGX_DONE when
 * the request is finalized, else the status to finalize it with.
 */

static ngx_int_t
ngx_http_aigov_fallback_answer(ngx_http_request_t *r, ngx_aigov_ctx_t *ctx,
    ngx_http_aigov_problem_args_t *pa)
{
    ngx_int_t   rc;
    ngx_buf_t  *body;

    if (ctx->model->rules) {
        rc = ngx_http_aigov_rules_answer(r, ctx, pa->retry_after, &body);

        if (rc == NGX_OK) {
            ngx_http_aigov_decided(ctx);
            ngx_http_finalize_request(r,
                                      ngx_http_aigov_send_buf(r, ctx, body));
            return NGX_DONE;
        }

        if (rc == NGX_ERROR) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        /* NGX_DECLINED: no rule, no default: the problem response */
    }

    return ngx_aigov_send_problem(r, pa->status, pa->type, pa->title,
                                  &pa->detail, pa->retry_after);
}


/*
 * Evaluates the rules and sets the response headers; *body is the body to
 * send (NULL: none).  NGX_DECLINED: no rule and no default matched, or the
 * winning rule could not be rendered (logged): nothing was changed.
 */

static ngx_int_t
ngx_http_aigov_rules_answer(ngx_http_request_t *r, ngx_aigov_ctx_t *ctx,
    time_t retry_after, ngx_buf_t **body)
{
    int                    rc;
    ngx_buf_t             *b;
    ngx_str_t              name, value;
    ngx_uint_t             i, has_ra;
    aigov_rules_result_t   res;

    rc = ngx_http_aigov_rules_run(r, ctx, &res);

    if (rc == AIGOV_RULES_DECLINED) {
        aigov_rules_result_free(&res);
        return NGX_DECLINED;
    }

    if (rc != AIGOV_RULES_OK) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "aigov: model \"%V\": fallback rule \"%s\" failed: %s",
                      &ctx->model->name, res.rule ? res.rule : "?",
                      res.error ? res.error : "out of memory");
        aigov_rules_result_free(&res);
        return NGX_DECLINED;
    }

    b = NULL;

    if (res.body && !r->header_only && r->method != NGX_HTTP_HEAD) {
        b = ngx_create_temp_buf(r->pool, res.body_len + 1);
        if (b == NULL) {
            aigov_rules_result_free(&res);
            return NGX_ERROR;
        }

        b->last = ngx_cpymem(b->pos, res.body, res.body_len);
        *b->last++ = '\n';
        b->last_buf = (r == r->main) ? 1 : 0;
        b->last_in_chain = 1;
    }

    /* the replaced response's framing and representation headers go */

    ngx_http_aigov_clear_representation(r);

    r->headers_out.status = res.status;
    r->headers_out.status_line.len = 0;
    r->headers_out.content_length_n = res.body ? (off_t) res.body_len + 1 : 0;
    r->headers_out.content_type_lowcase = NULL;
    r->headers_out.charset.len = 0;

    if (res.body) {
        ngx_str_set(&r->headers_out.content_type, "application/json");
        r->headers_out.content_type_len = r->headers_out.content_type.len;

    } else {
        ngx_str_null(&r->headers_out.content_type);
        r->headers_out.content_type_len = 0;
    }

    has_ra = 0;

    for (i = 0; i < res.nheaders; i++) {
        value.len = res.headers[i].value_len;
        value.data = ngx_pnalloc(r->pool, value.len);
        if (value.data == NULL) {
            aigov_rules_result_free(&res);
            return NGX_ERROR;
        }

        ngx_memcpy(value.data, res.headers[i].value, value.len);

        name.len = res.headers[i].name_len;
        name.data = (u_char *) res.headers[i].name;   /* lives with rules */

        if (name.len == 12
            && ngx_strncasecmp(name.data, (u_char *) "Content-Type", 12) == 0)
        {
            r->headers_out.content_type = value;
            r->headers_out.content_type_len = value.len;
            continue;
        }

        if (name.len == 11
            && ngx_strncasecmp(name.data, (u_char *) "Retry-After", 11) == 0)
        {
            has_ra = 1;
        }

        if (ngx_http_aigov_rules_header(r, &name, &value) != NGX_OK) {
            aigov_rules_result_free(&res);
            return NGX_ERROR;
        }
    }

    if (!has_ra && retry_after > 0
        && (res.status == NGX_HTTP_SERVICE_UNAVAILABLE
            || res.status == NGX_HTTP_TOO_MANY_REQUESTS))
    {
        static ngx_str_t  ra = ngx_string("Retry-After");

        value.data = ngx_pnalloc(r->pool, NGX_TIME_T_LEN);
        if (value.data == NULL) {
            aigov_rules_result_free(&res);
            return NGX_ERROR;
        }

        value.len = ngx_sprintf(value.data, "%T", retry_after) - value.data;

        if (ngx_http_aigov_rules_header(r, &ra, &value) != NGX_OK) {
            aigov_rules_result_free(&res);
            return NGX_ERROR;
        }
    }

    ctx->fallback_rule.len = ngx_strlen(res.rule);
    ctx->fallback_rule.data = (u_char *) res.rule;    /* lives with rules */

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "aigov: model \"%V\" answered by fallback rule \"%V\" "
                  "(%s): %i", &ctx->model->name, &ctx->fallback_rule,
                  ngx_aigov_fallback_name(ctx->fallback), res.status);

    aigov_rules_result_free(&res);

    *body = b;

    return NGX_OK;
}


static ngx_int_t
ngx_http_aigov_rules_header(ngx_http_request_t *r, ngx_str_t *name,
    ngx_str_t *value)
{
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    if (ngx_aigov_add_header(r, name, value) != NGX_OK) {
        return NGX_ERROR;
    }

    part = r->headers_out.headers.last;
    h = part->elts;
    h[part->nelts - 1].hash = NGX_HTTP_AIGOV_RULE_HEADER;

    return NGX_OK;
}


static ngx_int_t
ngx_http_aigov_rules_run(ngx_http_request_t *r, ngx_aigov_ctx_t *ctx,
    aigov_rules_result_t *res)
{
    json_t                       *body;
    ngx_str_t                     s;
    ngx_uint_t                    i, n;
    const char                   *d;
    aigov_rules_attr_t           *attrs;
    ngx_http_aigov_attr_t        *a;
    ngx_http_variable_value_t    *vv;
    ngx_http_aigov_rules_conf_t  *rcf;

    rcf = ctx->model->rules_attrs;

    ngx_memzero(res, sizeof(aigov_rules_result_t));

    body = rcf->uses_body ? ngx_aigov_body_json(r, ctx) : NULL;

    a = rcf->attrs.elts;
    attrs = ngx_palloc(r->pool,
                       (rcf->attrs.nelts + 1) * sizeof(aigov_rules_attr_t));
    if (attrs == NULL) {
        return AIGOV_RULES_ERROR;
    }

    n = 0;

    for (i = 0; i < rcf->attrs.nelts; i++) {

        ngx_str_null(&s);

        switch (a[i].kind) {

        case NGX_HTTP_AIGOV_ATTR_METHOD:
            s = r->method_name;
            break;

        case NGX_HTTP_AIGOV_ATTR_PATH:
            s = r->uri;
            break;

        case NGX_HTTP_AIGOV_ATTR_QUERY:
            s = r->args;
            break;

        case NGX_HTTP_AIGOV_ATTR_CLIENT:
            s = r->connection->addr_text;
            break;

        case NGX_HTTP_AIGOV_ATTR_MODEL:
            s = ctx->model->name;
            break;

        case NGX_HTTP_AIGOV_ATTR_VARIANT:
            if (ctx->variant == NULL) {
                continue;
            }
            s = ctx->variant->name;
            break;

        case NGX_HTTP_AIGOV_ATTR_VERSION:
            if (ctx->variant == NULL) {
                continue;
            }
            s = ctx->variant->version;
            break;

        case NGX_HTTP_AIGOV_ATTR_DECISION:
            if (ctx->decision == NGX_AIGOV_DECISION_NONE) {
                continue;
            }
            d = ngx_http_aigov_decision_name(ctx->decision);
            s.data = (u_char *) d;
            s.len = ngx_strlen(d);
            break;

        case NGX_HTTP_AIGOV_ATTR_REASON:
            d = ngx_aigov_fallback_name(ctx->fallback);
            s.data = (u_char *) d;
            s.len = ngx_strlen(d);
            break;

        case NGX_HTTP_AIGOV_ATTR_REQUEST_ID:
            vv = ngx_http_get_indexed_variable(r, rcf->request_id);
            if (vv == NULL || vv->not_found) {
                continue;
            }
            s.data = vv->data;
            s.len = vv->len;
            break;

        case NGX_HTTP_AIGOV_ATTR_HEADER:
            if (ngx_aigov_header_get(r, &a[i].header, &s) != NGX_OK) {
                continue;        /* missing */
            }
            break;
        }

        attrs[n].name = (char *) a[i].name.data;
        attrs[n].name_len = a[i].name.len;
        attrs[n].value = s.data ? (char *) s.data : "";
        attrs[n].value_len = s.len;
        n++;
    }

    return aigov_rules_eval(ctx->model->rules, body, attrs, n, res);
}


/*
 * The response going out is nginx's own for an upstream that failed
 * (UPSTREAM_ERROR) or timed out (UPSTREAM_TIMEOUT) before its response
 * header arrived: a 500/502/503/504 without a header from the last try.
 * NONE otherwise, an upstream's own 5xx included.
 */

NGX_AIGOV_HOT
ngx_aigov_fallback_e
ngx_http_aigov_upstream_failed(ngx_http_request_t *r)
{
    ngx_uint_t            status;
    ngx_http_upstream_t  *u;

    u = r->upstream;
    status = r->headers_out.status;

    if (u == NULL
        || (u->state && u->state->header_time != (ngx_msec_t) -1)
        || (status != NGX_HTTP_INTERNAL_SERVER_ERROR
            && status != NGX_HTTP_BAD_GATEWAY
            && status != NGX_HTTP_SERVICE_UNAVAILABLE
            && status != NGX_HTTP_GATEWAY_TIME_OUT))
    {
        return NGX_AIGOV_FALLBACK_NONE;
    }

    return (status == NGX_HTTP_GATEWAY_TIME_OUT)
           ? NGX_AIGOV_FALLBACK_UPSTREAM_TIMEOUT
           : NGX_AIGOV_FALLBACK_UPSTREAM_ERROR;
}


/*
 * Before another answer replaces the response going out: the replaced
 * one's framing and representation headers go.
 */

void
ngx_http_aigov_clear_representation(ngx_http_request_t *r)
{
    ngx_http_clear_content_length(r);
    ngx_http_clear_accept_ranges(r);
    ngx_http_clear_last_modified(r);
    ngx_http_clear_etag(r);
    ngx_http_clear_location(r);

    if (r->headers_out.content_encoding) {
        r->headers_out.content_encoding->hash = 0;
        r->headers_out.content_encoding = NULL;
    }
}


/*
 * The header filter: an upstream that failed or timed out before its
 * response header arrived, on a model with rules.  NGX_OK when the
 * response was replaced, NGX_DECLINED when it is left alone.
 */

NGX_AIGOV_HOT
ngx_int_t
ngx_http_aigov_fallback_header(ngx_http_request_t *r, ngx_aigov_ctx_t *ctx)
{
    ngx_int_t                  rc;
    ngx_buf_t                 *body;
    ngx_aigov_fallback_e       reason;
    ngx_http_aigov_replace_t  *rp;

    if (ctx->model->rules == NULL
        || ctx->responded
        || ctx->fallback_out
        || ctx->variant == NULL)
    {
        return NGX_DECLINED;
    }

    reason = ngx_http_aigov_upstream_failed(r);

    if (reason == NGX_AIGOV_FALLBACK_NONE) {
        return NGX_DECLINED;
    }

    ctx->fallback = reason;

    rp = ngx_pcalloc(r->pool, sizeof(ngx_http_aigov_replace_t));
    if (rp == NULL) {
        return NGX_ERROR;
    }

    rc = ngx_http_aigov_rules_answer(r, ctx, 0, &body);

    if (rc == NGX_DECLINED) {
        ctx->fallback = NGX_AIGOV_FALLBACK_NONE;
        return NGX_DECLINED;
    }

    if (rc != NGX_OK) {
        return NGX_ERROR;
    }

    rp->body = body;
    ctx->fallback_out = rp;
    ctx->responded = 1;

    return NGX_OK;
}


ngx_int_t
ngx_aigov_replace_response(ngx_http_request_t *r, ngx_aigov_ctx_t *ctx,
    ngx_buf_t *body)
{
    ngx_uint_t                 i;
    ngx_list_part_t           *part;
    ngx_table_elt_t           *h;
    ngx_http_aigov_replace_t  *rp;

    if (ctx->fallback_out) {
        return NGX_DECLINED;
    }

    rp = ngx_pcalloc(r->pool, sizeof(ngx_http_aigov_replace_t));
    if (rp == NULL) {
        return NGX_ERROR;
    }

    /* a rule's answer (an open breaker's) goes with its headers */

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

        if (h[i].hash == NGX_HTTP_AIGOV_RULE_HEADER) {
            h[i].hash = 0;
        }
    }

    if (body) {
        body->last_buf = (r == r->main) ? 1 : 0;
        body->last_in_chain = 1;
    }

    rp->body = (r->header_only || r->method == NGX_HTTP_HEAD) ? NULL : body;
    ctx->fallback_out = rp;
    ctx->responded = 1;

    return NGX_OK;
}


/*
 * The body filter of a replaced response: nginx's error page is dropped,
 * the rule's body goes out instead, once.
 */

ngx_int_t
ngx_http_aigov_fallback_body(ngx_http_request_t *r, ngx_aigov_ctx_t *ctx,
    ngx_chain_t *in, ngx_http_output_body_filter_pt next)
{
    ngx_chain_t                out, *cl;
    ngx_http_aigov_replace_t  *rp = ctx->fallback_out;

    for (cl = in; cl; cl = cl->next) {
        if (ngx_buf_in_memory(cl->buf)) {
            cl->buf->pos = cl->buf->last;
        }

        if (cl->buf->in_file) {
            cl->buf->file_pos = cl->buf->file_last;
        }
    }

    if (rp->sent) {
        return NGX_OK;
    }

    rp->sent = 1;

    if (rp->body == NULL) {
        out.buf = ngx_calloc_buf(r->pool);
        if (out.buf == NULL) {
            return NGX_ERROR;
        }

        out.buf->last_buf = (r == r->main) ? 1 : 0;
        out.buf->last_in_chain = 1;

    } else {
        out.buf = rp->body;
    }

    out.next = NULL;

    return next(r, &out);
}


/*
 * The body as JSON, parsed on first use: ctx->body, or the body nginx read
 * since (for the rules, or for the upstream).
 */

void *
ngx_aigov_body_json(ngx_http_request_t *r, ngx_aigov_ctx_t *ctx)
{
    json_t        *doc;
    json_error_t   err;

    if (ctx->json) {
        return ctx->json;
    }

    if (ctx->json_failed) {
        return NULL;
    }

    if (ctx->body.len == 0
        && (r->request_body == NULL
            || ngx_http_aigov_body_bytes(r, &ctx->body) != NGX_OK
            || ctx->body.len == 0))
    {
        return NULL;
    }

    doc = json_loadb((char *) ctx->body.data, ctx->body.len,
                     JSON_REJECT_DUPLICATES, &err);

    if (doc == NULL) {
        ctx->json_failed = 1;
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "aigov: request body is not JSON: %s", err.text);
        return NULL;
    }

    if (ngx_http_aigov_keep_json(r, ctx, doc) != NGX_OK) {
        return NULL;
    }

    return doc;
}
