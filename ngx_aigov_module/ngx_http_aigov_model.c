/*
 * ngx_aigov models: the aigov_model{} block, its "variant" and "alias"
 * directives, dispatch of the other directives in the block to the plugin
 * that declares them, and the checks that run once the whole http{} block
 * is known (route names, upstream names, the name hash).
 */

#include "ngx_http_aigov_module.h"


static char *ngx_http_aigov_model_directive(ngx_conf_t *cf,
    ngx_command_t *dummy, void *conf);
static char *ngx_http_aigov_variant(ngx_conf_t *cf, ngx_aigov_model_t *model);
static char *ngx_http_aigov_alias(ngx_conf_t *cf, ngx_aigov_model_t *model);
static char *ngx_http_aigov_check_args(ngx_conf_t *cf, ngx_command_t *cmd);
static ngx_int_t ngx_http_aigov_name_taken(ngx_http_aigov_main_conf_t *mcf,
    ngx_str_t *name);


static const char  *ngx_http_aigov_decision_names[] = {
    "none",
    "kill",
    "rollback",
    "pinned",
    "header",
    "cookie",
    "sticky",
    "weight",
    "preview",
    "active",
    "stable"
};


const char *
ngx_http_aigov_decision_name(ngx_aigov_decision_e d)
{
    if ((ngx_uint_t) d >= NGX_AIGOV_DECISION_LAST) {
        return "none";
    }

    return ngx_http_aigov_decision_names[d];
}


char *
ngx_http_aigov_model_block(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_aigov_main_conf_t *mcf = conf;

    char                 *rv;
    ngx_str_t            *value;
    ngx_uint_t            i, nstable;
    ngx_conf_t            save;
    ngx_aigov_model_t    *model, **slot;
    ngx_aigov_plugin_t   *p;
    ngx_aigov_variant_t  *v;

    value = cf->args->elts;

    if (!aigov_valid_name((char *) value[1].data, value[1].len)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid model name \"%V\": use 1 to 128 of "
                           "A-Z a-z 0-9 . _ : -", &value[1]);
        return NGX_CONF_ERROR;
    }

    if (ngx_http_aigov_name_taken(mcf, &value[1])) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "duplicate aigov_model \"%V\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    model = ngx_pcalloc(cf->pool, sizeof(ngx_aigov_model_t));
    if (model == NULL) {
        return NGX_CONF_ERROR;
    }

    model->name = value[1];
    model->index = mcf->models.nelts;
    model->runtime.kill = -1;
    model->runtime.rollback = -1;
    model->nfallback = NGX_CONF_UNSET_UINT;
    model->file = cf->conf_file->file.name.data;
    model->line = cf->conf_file->line;

    if (ngx_array_init(&model->variants, cf->pool, 4,
                       sizeof(ngx_aigov_variant_t))
        != NGX_OK
        || ngx_array_init(&model->aliases, cf->pool, 2, sizeof(ngx_str_t))
           != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    slot = ngx_array_push(&mcf->models);
    if (slot == NULL) {
        return NGX_CONF_ERROR;
    }

    *slot = model;

    save = *cf;
    cf->handler = ngx_http_aigov_model_directive;
    cf->handler_conf = (char *) model;

    rv = ngx_conf_parse(cf, NULL);

    *cf = save;

    if (rv != NGX_CONF_OK) {
        return rv;
    }

    if (model->variants.nelts == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "aigov_model \"%V\" has no variant", &model->name);
        return NGX_CONF_ERROR;
    }

    v = model->variants.elts;
    nstable = 0;

    for (i = 0; i < model->variants.nelts; i++) {
        if (v[i].role == NGX_AIGOV_ROLE_STABLE) {
            model->stable = &v[i];
            nstable++;
        }
    }

    if (nstable == 0 && model->variants.nelts == 1) {
        /* a model with one variant: it is the stable one */
        v[0].role = NGX_AIGOV_ROLE_STABLE;
        model->stable = &v[0];
        nstable = 1;
    }

    if (nstable != 1) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "aigov_model \"%V\" must have exactly one stable "
                           "variant, it has %ui: mark one "
                           "\"variant NAME UPSTREAM stable\"",
                           &model->name, nstable);
        return NGX_CONF_ERROR;
    }

    if (ngx_http_aigov_fallback_init_model(cf, model) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    for (i = 0; i < ngx_aigov_nplugins; i++) {
        p = ngx_aigov_plugins[i];

        if (p->init_model_conf == NULL) {
            continue;
        }

        rv = p->init_model_conf(cf, model, model->plugin_conf[p->index]);
        if (rv != NGX_CONF_OK) {
            if (rv != NGX_CONF_ERROR) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "aigov_model \"%V\": %s",
                                   &model->name, rv);
            }
            return NGX_CONF_ERROR;
        }
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_aigov_model_directive(ngx_conf_t *cf, ngx_command_t *dummy,
    void *conf)
{
    ngx_aigov_model_t *model = conf;

    char                *rv;
    ngx_str_t           *value;
    ngx_uint_t           i;
    ngx_command_t       *cmd;
    ngx_aigov_plugin_t  *p;

    value = cf->args->elts;

    if (value[0].len == 7 && ngx_strcmp(value[0].data, "variant") == 0) {
        return ngx_http_aigov_variant(cf, model);
    }

    if (value[0].len == 5 && ngx_strcmp(value[0].data, "alias") == 0) {
        return ngx_http_aigov_alias(cf, model);
    }

    if (value[0].len == 8 && ngx_strcmp(value[0].data, "fallback") == 0) {
        return ngx_http_aigov_fallback_directive(cf, model);
    }

    if (value[0].len == 14
        && ngx_strcmp(value[0].data, "fallback_rules") == 0)
    {
        return ngx_http_aigov_fallback_rules(cf, model);
    }

    if (value[0].len == 7 && ngx_strcmp(value[0].data, "include") == 0) {
        /* e.g. weights written by a deployment pipeline */
        if (cf->args->nelts != 2) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid number of arguments in \"include\"");
            return NGX_CONF_ERROR;
        }

        return ngx_conf_include(cf, dummy, conf);
    }

    for (i = 0; i < ngx_aigov_nplugins; i++) {
        p = ngx_aigov_plugins[i];

        if (p->model_commands == NULL) {
            continue;
        }

        for (cmd = p->model_commands; cmd->name.len; cmd++) {

            if (cmd->name.len != value[0].len
                || ngx_strcmp(cmd->name.data, value[0].data) != 0)
            {
                continue;
            }

            rv = ngx_http_aigov_check_args(cf, cmd);
            if (rv != NGX_CONF_OK) {
                return rv;
            }

            if (model->plugin_conf[p->index] == NULL) {
                model->plugin_conf[p->index] = p->create_model_conf(cf, model);
                if (model->plugin_conf[p->index] == NULL) {
                    return NGX_CONF_ERROR;
                }
            }

            rv = cmd->set(cf, cmd, model->plugin_conf[p->index]);

            if (rv == NGX_CONF_OK || rv == NGX_CONF_ERROR) {
                return rv;
            }

            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "\"%V\" directive %s",
                               &value[0], rv);
            return NGX_CONF_ERROR;
        }
    }

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "unknown directive \"%V\" in aigov_model \"%V\"",
                       &value[0], &model->name);

    return NGX_CONF_ERROR;
}


static char *
ngx_http_aigov_check_args(ngx_conf_t *cf, ngx_command_t *cmd)
{
    ngx_uint_t  n;

    static ngx_uint_t  takes[] = {
        NGX_CONF_NOARGS, NGX_CONF_TAKE1, NGX_CONF_TAKE2, NGX_CONF_TAKE3,
        NGX_CONF_TAKE4, NGX_CONF_TAKE5, NGX_CONF_TAKE6, NGX_CONF_TAKE7
    };

    n = cf->args->nelts - 1;

    if (cmd->type & NGX_CONF_FLAG) {
        if (n == 1) {
            return NGX_CONF_OK;
        }

    } else if (cmd->type & NGX_CONF_1MORE) {
        if (n >= 1) {
            return NGX_CONF_OK;
        }

    } else if (cmd->type & NGX_CONF_2MORE) {
        if (n >= 2) {
            return NGX_CONF_OK;
        }

    } else if (n < 8 && (cmd->type & takes[n])) {
        return NGX_CONF_OK;
    }

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid number of arguments in \"%V\" directive",
                       &cmd->name);

    return NGX_CONF_ERROR;
}


/* variant NAME UPSTREAM [version=V] [stable|candidate] */

static char *
ngx_http_aigov_variant(ngx_conf_t *cf, ngx_aigov_model_t *model)
{
    ngx_url_t             u;
    ngx_str_t            *value;
    ngx_uint_t            i, role_set;
    ngx_aigov_variant_t  *v;

    value = cf->args->elts;

    if (cf->args->nelts < 3 || cf->args->nelts > 5) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid number of arguments in \"variant\": "
                           "use \"variant NAME UPSTREAM [version=V] "
                           "[stable|candidate]\"");
        return NGX_CONF_ERROR;
    }

    if (!aigov_valid_name((char *) value[1].data, value[1].len)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid variant name \"%V\" in aigov_model \"%V\"",
                           &value[1], &model->name);
        return NGX_CONF_ERROR;
    }

    if (ngx_aigov_find_variant(model, &value[1])) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "duplicate variant \"%V\" in aigov_model \"%V\"",
                           &value[1], &model->name);
        return NGX_CONF_ERROR;
    }

    if (model->variants.nelts >= NGX_AIGOV_MAX_VARIANTS) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "too many variants in aigov_model \"%V\", "
                           "at most %d", &model->name, NGX_AIGOV_MAX_VARIANTS);
        return NGX_CONF_ERROR;
    }

    if (value[2].len == 0 || value[2].data[0] == '$') {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid upstream \"%V\" of variant \"%V\": "
                           "name an upstream{} block or host:port",
                           &value[2], &value[1]);
        return NGX_CONF_ERROR;
    }

    v = ngx_array_push(&model->variants);
    if (v == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(v, sizeof(ngx_aigov_variant_t));

    /*
     * host:port gets an implicit upstream now, as proxy_pass does; a name
     * is looked up among the upstream{} blocks once they are all known.
     */

    if (ngx_strlchr(value[2].data, value[2].data + value[2].len, ':')) {
        ngx_memzero(&u, sizeof(ngx_url_t));

        u.url = value[2];
        u.no_resolve = 1;

        v->uscf = ngx_http_upstream_add(cf, &u, 0);
        if (v->uscf == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    v->name = value[1];
    v->upstream = value[2];
    v->version = value[1];
    v->role = NGX_AIGOV_ROLE_CANDIDATE;
    v->index = model->variants.nelts - 1;
    v->file = cf->conf_file->file.name.data;
    v->line = cf->conf_file->line;

    role_set = 0;

    for (i = 3; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "version=", 8) == 0) {
            v->version.data = value[i].data + 8;
            v->version.len = value[i].len - 8;

            if (!aigov_valid_name((char *) v->version.data, v->version.len)) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid version \"%V\" of variant \"%V\"",
                                   &value[i], &v->name);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (!role_set && ngx_strcmp(value[i].data, "stable") == 0) {
            v->role = NGX_AIGOV_ROLE_STABLE;
            role_set = 1;
            continue;
        }

        if (!role_set && ngx_strcmp(value[i].data, "candidate") == 0) {
            role_set = 1;
            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\" of variant \"%V\"",
                           &value[i], &v->name);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_aigov_alias(ngx_conf_t *cf, ngx_aigov_model_t *model)
{
    ngx_str_t                   *value, *a;
    ngx_uint_t                   i;
    ngx_http_aigov_main_conf_t  *mcf;

    mcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_aigov_module);
    value = cf->args->elts;

    if (cf->args->nelts < 2) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid number of arguments in \"alias\"");
        return NGX_CONF_ERROR;
    }

    for (i = 1; i < cf->args->nelts; i++) {

        if (!aigov_valid_name((char *) value[i].data, value[i].len)) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid alias \"%V\" of aigov_model \"%V\"",
                               &value[i], &model->name);
            return NGX_CONF_ERROR;
        }

        if (ngx_http_aigov_name_taken(mcf, &value[i])) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "alias \"%V\" of aigov_model \"%V\" is "
                               "already a model name or alias",
                               &value[i], &model->name);
            return NGX_CONF_ERROR;
        }

        a = ngx_array_push(&model->aliases);
        if (a == NULL) {
            return NGX_CONF_ERROR;
        }

        *a = value[i];
    }

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_aigov_name_taken(ngx_http_aigov_main_conf_t *mcf, ngx_str_t *name)
{
    ngx_str_t           *a;
    ngx_uint_t           i, j;
    ngx_aigov_model_t  **m;

    m = mcf->models.elts;

    for (i = 0; i < mcf->models.nelts; i++) {
        if (m[i]->name.len == name->len
            && ngx_strncmp(m[i]->name.data, name->data, name->len) == 0)
        {
            return 1;
        }

        a = m[i]->aliases.elts;

        for (j = 0; j < m[i]->aliases.nelts; j++) {
            if (a[j].len == name->len
                && ngx_strncmp(a[j].data, name->data, name->len) == 0)
            {
                return 1;
            }
        }
    }

    return 0;
}


ngx_aigov_variant_t *
ngx_aigov_conf_variant(ngx_conf_t *cf, ngx_str_t *name)
{
    ngx_aigov_model_t    *model;
    ngx_aigov_variant_t  *v;

    /* inside aigov_model{}, handler_conf is the model being parsed */
    model = (ngx_aigov_model_t *) cf->handler_conf;

    v = ngx_aigov_find_variant(model, name);

    if (v == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "unknown variant \"%V\" in aigov_model \"%V\": "
                           "declare it with \"variant\" first",
                           name, &model->name);
    }

    return v;
}


ngx_int_t
ngx_aigov_header_prepare(ngx_conf_t *cf, ngx_str_t *name,
    ngx_aigov_header_t *h)
{
    ngx_uint_t  i;

    for (i = 0; i < name->len; i++) {
        /* an HTTP token: what nginx accepts as a header name */
        if (name->data[i] <= ' ' || name->data[i] >= 0x7f
            || ngx_strchr("\"(),/:;<=>?@[\\]{}", name->data[i]))
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid header name \"%V\"", name);
            return NGX_ERROR;
        }
    }

    if (name->len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "empty header name");
        return NGX_ERROR;
    }

    h->name = *name;
    h->lowcase.len = name->len;
    h->lowcase.data = ngx_pnalloc(cf->pool, name->len);
    if (h->lowcase.data == NULL) {
        return NGX_ERROR;
    }

    h->hash = ngx_hash_strlow(h->lowcase.data, name->data, name->len);

    return NGX_OK;
}


/*
 * A value that is $http_NAME alone, such as $http_x_api_key: h for the
 * request header X-Api-Key, found by ngx_aigov_header_get() with the hash
 * nginx computed while parsing, like the variable would (its first
 * occurrence) but without the variable's name comparisons.  For anything
 * else h->hash stays 0: the complex value does it.
 */

ngx_int_t
ngx_aigov_header_variable(ngx_conf_t *cf, ngx_str_t *value,
    ngx_aigov_header_t *h)
{
    u_char     *c;
    ngx_str_t   name;

    if (value->len <= sizeof("$http_") - 1
        || ngx_strncasecmp(value->data, (u_char *) "$http_",
                           sizeof("$http_") - 1) != 0)
    {
        return NGX_OK;
    }

    name.len = value->len - (sizeof("$http_") - 1);
    name.data = ngx_pnalloc(cf->pool, name.len);
    if (name.data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(name.data, value->data + sizeof("$http_") - 1, name.len);

    for (c = name.data; c < name.data + name.len; c++) {
        if (*c == '_') {
            *c = '-';

        } else if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z')
                     || (*c >= '0' && *c <= '9')))
        {
            /* more than one variable name */
            return NGX_OK;
        }
    }

    return ngx_aigov_header_prepare(cf, &name, h);
}


NGX_AIGOV_HOT
ngx_int_t
ngx_aigov_header_get(ngx_http_request_t *r, ngx_aigov_header_t *h,
    ngx_str_t *value)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *header;

    part = &r->headers_in.headers.part;
    header = part->elts;

    for (i = 0; /* void */ ; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                return NGX_DECLINED;
            }

            part = part->next;
            header = part->elts;
            i = 0;
        }

        if (header[i].hash != h->hash
            || header[i].key.len != h->lowcase.len
            || ngx_strncmp(header[i].lowcase_key, h->lowcase.data,
                           h->lowcase.len) != 0)
        {
            continue;
        }

        *value = header[i].value;
        return NGX_OK;
    }
}


ngx_int_t
ngx_aigov_cookie_index(ngx_conf_t *cf, ngx_str_t *cookie)
{
    ngx_str_t  var;

    var.len = sizeof("cookie_") - 1 + cookie->len;
    var.data = ngx_pnalloc(cf->pool, var.len);
    if (var.data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(ngx_cpymem(var.data, "cookie_", sizeof("cookie_") - 1),
               cookie->data, cookie->len);

    return ngx_http_get_variable_index(cf, &var);
}


ngx_aigov_model_t *
ngx_http_aigov_find_model(ngx_http_aigov_main_conf_t *mcf, u_char *name,
    size_t len)
{
    if (mcf->model_hash.buckets == NULL) {
        return NULL;
    }

    return ngx_hash_find(&mcf->model_hash, ngx_hash_key(name, len), name, len);
}


static ngx_http_upstream_srv_conf_t *
ngx_http_aigov_find_upstream(ngx_conf_t *cf, ngx_str_t *name)
{
    ngx_uint_t                      i;
    ngx_http_upstream_srv_conf_t  **uscf;
    ngx_http_upstream_main_conf_t  *umcf;

    umcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_upstream_module);
    uscf = umcf->upstreams.elts;

    for (i = 0; i < umcf->upstreams.nelts; i++) {
        if (uscf[i]->srv_conf != NULL
            && uscf[i]->host.len == name->len
            && ngx_strncasecmp(uscf[i]->host.data, name->data, name->len) == 0)
        {
            return uscf[i];
        }
    }

    return NULL;
}


static ngx_int_t
ngx_http_aigov_resolve(ngx_conf_t *cf, ngx_http_aigov_main_conf_t *mcf,
    ngx_http_aigov_loc_conf_t *alcf, ngx_str_t *name,
    ngx_aigov_model_t **model)
{
    *model = ngx_http_aigov_find_model(mcf, name->data, name->len);

    if (*model == NULL) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "aigov_route names unknown model \"%V\" in %s:%ui",
                      name, alcf->file, alcf->line);
        return NGX_ERROR;
    }

    return NGX_OK;
}


ngx_int_t
ngx_http_aigov_init_models(ngx_conf_t *cf, ngx_http_aigov_main_conf_t *mcf)
{
    ngx_str_t                    *a, name;
    ngx_uint_t                    i, j;
    ngx_hash_init_t               hash;
    ngx_hash_keys_arrays_t        keys;
    ngx_aigov_model_t           **m;
    ngx_aigov_variant_t          *v;
    ngx_http_aigov_loc_conf_t   **route;

    m = mcf->models.elts;

    if (mcf->models.nelts && mcf->shm_zone == NULL) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "aigov_model \"%V\" in %s:%ui needs a shared zone: "
                      "add \"aigov_zone name:size;\" to the http block",
                      &m[0]->name, m[0]->file, m[0]->line);
        return NGX_ERROR;
    }

    for (i = 0; i < mcf->models.nelts; i++) {
        v = m[i]->variants.elts;

        for (j = 0; j < m[i]->variants.nelts; j++) {
            if (v[j].uscf == NULL) {
                v[j].uscf = ngx_http_aigov_find_upstream(cf, &v[j].upstream);
            }

            if (v[j].uscf == NULL) {
                ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                              "variant \"%V\" of aigov_model \"%V\" in "
                              "%s:%ui names no upstream{} block \"%V\"",
                              &v[j].name, &m[i]->name, v[j].file, v[j].line,
                              &v[j].upstream);
                return NGX_ERROR;
            }
        }
    }

    if (mcf->models.nelts) {
        keys.pool = cf->pool;
        keys.temp_pool = cf->temp_pool;

        if (ngx_hash_keys_array_init(&keys, NGX_HASH_SMALL) != NGX_OK) {
            return NGX_ERROR;
        }

        for (i = 0; i < mcf->models.nelts; i++) {
            if (ngx_hash_add_key(&keys, &m[i]->name, m[i],
                                 NGX_HASH_READONLY_KEY)
                != NGX_OK)
            {
                return NGX_ERROR;
            }

            a = m[i]->aliases.elts;

            for (j = 0; j < m[i]->aliases.nelts; j++) {
                if (ngx_hash_add_key(&keys, &a[j], m[i],
                                     NGX_HASH_READONLY_KEY)
                    != NGX_OK)
                {
                    return NGX_ERROR;
                }
            }
        }

        hash.hash = &mcf->model_hash;
        hash.key = ngx_hash_key;
        hash.max_size = 4096;
        /* an element holds a pointer, a length and a name of up to 128 */
        hash.bucket_size = ngx_align(2 * sizeof(void *) + 2 * 128,
                                     ngx_cacheline_size);
        hash.name = "aigov_models_hash";
        hash.pool = cf->pool;
        hash.temp_pool = NULL;

        if (ngx_hash_init(&hash, keys.keys.elts, keys.keys.nelts) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    /*
     * Rules need the filters (an upstream failing before its header).  Rules
     * over the request body do not make it read before the decision: they
     * read it when they answer (ngx_aigov_fallback()).
     */

    for (i = 0; i < mcf->models.nelts; i++) {
        if (m[i]->rules) {
            mcf->need_header_filter = 1;
            mcf->need_body_filter = 1;
        }
    }

    route = mcf->routes.elts;

    for (i = 0; i < mcf->routes.nelts; i++) {

        if (route[i]->source == NGX_HTTP_AIGOV_SRC_MODEL
            && route[i]->model_cv->lengths == NULL)
        {
            name = route[i]->model_cv->value;

            if (ngx_http_aigov_resolve(cf, mcf, route[i], &name,
                                       &route[i]->model)
                != NGX_OK)
            {
                return NGX_ERROR;
            }
        }

        if (route[i]->default_name.len
            && ngx_http_aigov_resolve(cf, mcf, route[i],
                                      &route[i]->default_name,
                                      &route[i]->default_model)
               != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}
