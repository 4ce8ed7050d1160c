/*
 * ngx_aigov status: a read-only JSON document of every model, its
 * variants, each plugin's view of it and the counters kept in the shared
 * zone.  Built with jansson: this is not the request path.
 */

#include "ngx_http_aigov_module.h"


static ngx_int_t ngx_http_aigov_status_handler(ngx_http_request_t *r);
static json_t *ngx_http_aigov_status_doc(ngx_http_request_t *r);
static json_t *ngx_http_aigov_decisions(ngx_aigov_shm_node_t *node);


static json_t *
ngx_http_aigov_jstr(ngx_str_t *s)
{
    return json_stringn((char *) s->data, s->len);
}


static json_t *
ngx_http_aigov_decisions(ngx_aigov_shm_node_t *node)
{
    json_t      *d;
    ngx_uint_t   i;

    d = json_object();
    if (d == NULL || node == NULL) {
        return d;
    }

    for (i = 1; i < NGX_AIGOV_DECISION_LAST; i++) {
        if (node->decisions[i]) {
            json_object_set_new(d, ngx_http_aigov_decision_name(i),
                                json_integer((json_int_t) node->decisions[i]));
        }
    }

    return d;
}


static json_t *
ngx_http_aigov_status_doc(ngx_http_request_t *r)
{
    json_t                      *doc, *models, *jm, *vars, *jv, *aliases;
    ngx_str_t                   *a;
    ngx_uint_t                   i, j;
    json_int_t                   total;
    ngx_aigov_model_t          **m;
    ngx_aigov_plugin_t          *p;
    ngx_aigov_variant_t         *v;
    ngx_http_aigov_main_conf_t  *mcf;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_aigov_module);

    doc = json_object();
    models = json_array();

    if (doc == NULL || models == NULL) {
        json_decref(doc);
        json_decref(models);
        return NULL;
    }

    json_object_set_new(doc, "version", json_string(NGX_HTTP_AIGOV_VERSION));
    json_object_set_new(doc, "pid", json_integer(ngx_pid));

    if (mcf->shm_zone && mcf->sh) {
        json_object_set_new(doc, "zone",
            json_pack("{s:s%, s:I, s:I, s:I}",
                      "name", (char *) mcf->shm_zone->shm.name.data,
                      mcf->shm_zone->shm.name.len,
                      "size", (json_int_t) mcf->shm_zone->shm.size,
                      "generation", (json_int_t) mcf->sh->generation,
                      "created", (json_int_t) mcf->sh->created));
    }

    json_object_set_new(doc, "redis", ngx_http_aigov_redis_json(mcf));
    json_object_set_new(doc, "models", models);

    m = mcf->models.elts;

    for (i = 0; i < mcf->models.nelts; i++) {
        jm = json_object();
        vars = json_array();
        aliases = json_array();

        if (jm == NULL || vars == NULL || aliases == NULL) {
            json_decref(jm);
            json_decref(vars);
            json_decref(aliases);
            json_decref(doc);
            return NULL;
        }

        json_array_append_new(models, jm);

        json_object_set_new(jm, "name", ngx_http_aigov_jstr(&m[i]->name));

        a = m[i]->aliases.elts;
        for (j = 0; j < m[i]->aliases.nelts; j++) {
            json_array_append_new(aliases, ngx_http_aigov_jstr(&a[j]));
        }

        json_object_set_new(jm, "aliases", aliases);
        json_object_set_new(jm, "stable",
                            ngx_http_aigov_jstr(&m[i]->stable->name));
        total = 0;

        if (m[i]->shm) {
            for (j = 1; j < NGX_AIGOV_DECISION_LAST; j++) {
                total += m[i]->shm->decisions[j];
            }
        }

        json_object_set_new(jm, "requests", json_integer(total));
        json_object_set_new(jm, "decisions",
                            ngx_http_aigov_decisions(m[i]->shm));

        v = m[i]->variants.elts;

        for (j = 0; j < m[i]->variants.nelts; j++) {
            jv = json_object();
            if (jv == NULL) {
                json_decref(vars);
                json_decref(doc);
                return NULL;
            }

            json_array_append_new(vars, jv);

            json_object_set_new(jv, "name", ngx_http_aigov_jstr(&v[j].name));
            json_object_set_new(jv, "upstream",
                                ngx_http_aigov_jstr(&v[j].upstream));
            json_object_set_new(jv, "version",
                                ngx_http_aigov_jstr(&v[j].version));
            json_object_set_new(jv, "role",
                json_string(v[j].role == NGX_AIGOV_ROLE_STABLE
                            ? "stable" : "candidate"));
            json_object_set_new(jv, "requests",
                json_integer(v[j].shm ? (json_int_t) v[j].shm->requests : 0));
        }

        json_object_set_new(jm, "variants", vars);
        json_object_set_new(jm, "runtime", ngx_http_aigov_control_json(m[i]));

        for (j = 0; j < ngx_aigov_nplugins; j++) {
            p = ngx_aigov_plugins_sorted[j];

            if (p->status == NULL) {
                continue;
            }

            if (p->status(m[i], m[i]->plugin_conf[p->index], jm) != NGX_OK) {
                json_decref(doc);
                return NULL;
            }
        }
    }

    return doc;
}


static ngx_int_t
ngx_http_aigov_status_handler(ngx_http_request_t *r)
{
    ngx_int_t  rc;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    return ngx_http_aigov_send_json(r, NGX_HTTP_OK,
                                    ngx_http_aigov_status_doc(r));
}


/* Sends doc (consumed) as an application/json response. */

ngx_int_t
ngx_http_aigov_send_json(ngx_http_request_t *r, ngx_uint_t status,
    json_t *doc)
{
    char         *text;
    size_t        len;
    ngx_int_t     rc;
    ngx_buf_t    *b;
    ngx_chain_t   out;

    if (doc == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    text = json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(doc);

    if (text == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    len = ngx_strlen(text);

    b = ngx_create_temp_buf(r->pool, len + 1);
    if (b == NULL) {
        free(text);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->last = ngx_cpymem(b->last, text, len);
    *b->last++ = '\n';
    free(text);

    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    r->headers_out.status = status;
    r->headers_out.content_length_n = b->last - b->pos;
    ngx_str_set(&r->headers_out.content_type, "application/json");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


char *
ngx_http_aigov_status(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_aigov_status_handler;

    return NGX_CONF_OK;
}
