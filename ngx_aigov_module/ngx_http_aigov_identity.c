/*
 * ngx_aigov model identity: which model a request is for, from a fixed
 * name or variable, the KServe v2 / Open Inference Protocol path, or the
 * "model" field of an OpenAI-style JSON body.  A version named in a KServe
 * path pins the request to the variant serving that version.
 */

#include "ngx_http_aigov_module.h"


static ngx_int_t ngx_http_aigov_body_model(ngx_http_request_t *r,
    ngx_http_aigov_loc_conf_t *alcf, ngx_aigov_ctx_t *ctx, ngx_str_t *name);
static ngx_int_t ngx_http_aigov_unknown_model(ngx_http_request_t *r,
    ngx_str_t *name);


NGX_AIGOV_HOT
ngx_int_t
ngx_http_aigov_identify(ngx_http_request_t *r,
    ngx_http_aigov_loc_conf_t *alcf, ngx_aigov_ctx_t *ctx)
{
    int                          rc;
    ngx_str_t                    name, version, detail;
    ngx_uint_t                   i;
    aigov_str_t                  m, ver;
    ngx_aigov_model_t           *model;
    ngx_aigov_variant_t         *v;
    ngx_http_aigov_main_conf_t  *mcf;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_aigov_module);

    model = NULL;
    ngx_str_null(&name);
    ngx_str_null(&version);

    switch (alcf->source) {

    case NGX_HTTP_AIGOV_SRC_MODEL:

        if (alcf->model) {
            model = alcf->model;
            break;
        }

        if (ngx_http_complex_value(r, alcf->model_cv, &name) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        break;

    case NGX_HTTP_AIGOV_SRC_KSERVE:

        rc = aigov_kserve_path((char *) r->uri.data, r->uri.len, &m, &ver);

        if (rc == AIGOV_ERROR) {
            ngx_str_set(&detail, "the model path is malformed: expected "
                        "/v2/models/{name}[/versions/{version}]/infer");
            return ngx_aigov_send_problem(r, NGX_HTTP_BAD_REQUEST,
                                          "bad-model-path",
                                          "Bad model path", &detail, 0);
        }

        if (rc == AIGOV_OK) {
            name.data = (u_char *) m.data;
            name.len = m.len;
            version.data = (u_char *) ver.data;
            version.len = ver.len;
        }

        break;

    default: /* NGX_HTTP_AIGOV_SRC_OPENAI */

        rc = ngx_http_aigov_body_model(r, alcf, ctx, &name);
        if (rc != NGX_OK) {
            return rc;
        }

        break;
    }

    if (model == NULL) {

        if (name.len) {
            model = ngx_http_aigov_find_model(mcf, name.data, name.len);

            if (model == NULL) {
                return ngx_http_aigov_unknown_model(r, &name);
            }

        } else if (alcf->default_model) {
            model = alcf->default_model;

        } else if (alcf->source == NGX_HTTP_AIGOV_SRC_KSERVE) {
            ngx_str_set(&detail, "no model named: expected "
                        "/v2/models/{name}[/versions/{version}]/infer");
            return ngx_aigov_send_problem(r, NGX_HTTP_NOT_FOUND,
                                          "unknown-model", "Unknown model",
                                          &detail, 0);

        } else {
            ngx_str_set(&detail, "the request names no model");
            return ngx_aigov_send_problem(r, NGX_HTTP_BAD_REQUEST,
                                          "missing-model", "Missing model",
                                          &detail, 0);
        }
    }

    ctx->model = model;

    if (version.len == 0) {
        return NGX_OK;
    }

    ctx->requested_version = version;
    v = model->variants.elts;

    for (i = 0; i < model->variants.nelts; i++) {
        if (v[i].version.len == version.len
            && ngx_strncmp(v[i].version.data, version.data, version.len) == 0)
        {
            /* kill switch and rollback, which run first, still win */
            ctx->variant = &v[i];
            ctx->decision = NGX_AIGOV_DECISION_PINNED;
            return NGX_OK;
        }
    }

    detail.len = sizeof("model \"\" has no version \"\"") - 1
                 + model->name.len + version.len;
    detail.data = ngx_pnalloc(r->pool, detail.len);
    if (detail.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_sprintf(detail.data, "model \"%V\" has no version \"%V\"",
                &model->name, &version);

    return ngx_aigov_send_problem(r, NGX_HTTP_NOT_FOUND, "unknown-version",
                                  "Unknown model version", &detail, 0);
}


static ngx_int_t
ngx_http_aigov_body_model(ngx_http_request_t *r,
    ngx_http_aigov_loc_conf_t *alcf, ngx_aigov_ctx_t *ctx, ngx_str_t *name)
{
    int           rc;
    char          err[160];
    u_char       *p;
    size_t        len;
    json_t       *doc;
    ngx_str_t     detail;
    aigov_str_t   m;

    rc = ngx_http_aigov_body_bytes(r, &ctx->body);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_DECLINED) {
        if (r->request_body_in_file_only) {
            ngx_str_set(&detail, "client_body_in_file_only is on in this "
                        "location; the model cannot be read from the body");

        } else {
            ngx_str_set(&detail, "the request body is larger than this "
                        "location's client_body_buffer_size; the model "
                        "cannot be read from it");
        }

        return ngx_aigov_send_problem(r, NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                      "body-too-large",
                                      "Request body too large", &detail, 0);
    }

    p = ctx->body.data;
    len = ctx->body.len;

    if (len == 0 && alcf->default_model) {
        /* GET /v1/models and the like: no body, no model named */
        ngx_str_null(name);
        return NGX_OK;
    }

    rc = aigov_json_model((char *) p, len, &doc, &m, err, sizeof(err));

    if (rc == AIGOV_JSON_OK) {
        if (ngx_http_aigov_keep_json(r, ctx, doc) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        name->len = m.len;
        name->data = ngx_pnalloc(r->pool, m.len);
        if (name->data == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ngx_memcpy(name->data, m.data, m.len);

        return NGX_OK;
    }

    if (rc == AIGOV_JSON_NO_MODEL && alcf->default_model) {
        ngx_str_null(name);
        return NGX_OK;
    }

    detail.data = (u_char *) err;
    detail.len = ngx_strlen(err);

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "aigov: rejected request body: %V", &detail);

    return ngx_aigov_send_problem(r, NGX_HTTP_BAD_REQUEST,
                                  "invalid-request-body",
                                  "Invalid request body", &detail, 0);
}


static ngx_int_t
ngx_http_aigov_unknown_model(ngx_http_request_t *r, ngx_str_t *name)
{
    size_t     len;
    ngx_str_t  detail;

    len = ngx_min(name->len, 128);

    detail.len = sizeof("model \"\" is not served here") - 1 + len;
    detail.data = ngx_pnalloc(r->pool, detail.len);
    if (detail.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_sprintf(detail.data, "model \"%*s\" is not served here", len,
                name->data);

    return ngx_aigov_send_problem(r, NGX_HTTP_NOT_FOUND, "unknown-model",
                                  "Unknown model", &detail, 0);
}
