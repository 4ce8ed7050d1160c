/*
 * ngx_aigov shared zone, the limit_req recipe: one slab zone per http{}
 * with an rbtree of nodes keyed by "model" and "model/variant".  The zone
 * is reused across reloads (same name and size), so counters, and later
 * the runtime control state, survive them.  Workers keep direct pointers
 * to their nodes, resolved once when the zone is initialised; the request
 * path only does atomic increments on them, never takes the lock.
 *
 * Plugins keep their own state in blocks of the same tree
 * (ngx_http_aigov_shm_block()), found and kept across reloads the same way.
 */

#include "ngx_http_aigov_module.h"


static ngx_int_t ngx_http_aigov_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static ngx_aigov_shm_node_t *ngx_http_aigov_shm_attach(
    ngx_http_aigov_main_conf_t *mcf, ngx_str_t *key, size_t size);


/* where a block's data starts: after the node and its key */
#define ngx_http_aigov_shm_data_offset(len)                                  \
    ngx_align(sizeof(ngx_aigov_shm_node_t) + (len), 16)


char *
ngx_http_aigov_zone(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_aigov_main_conf_t *mcf = conf;

    u_char     *p;
    ssize_t     size;
    ngx_str_t  *value, name, s;

    if (mcf->shm_zone) {
        return "is duplicate";
    }

    value = cf->args->elts;

    p = (u_char *) ngx_strchr(value[1].data, ':');

    if (p == NULL || p == value[1].data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid zone \"%V\": use \"name:size\"",
                           &value[1]);
        return NGX_CONF_ERROR;
    }

    name.data = value[1].data;
    name.len = p - value[1].data;

    s.data = p + 1;
    s.len = value[1].data + value[1].len - s.data;

    size = ngx_parse_size(&s);

    if (size == NGX_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid zone size \"%V\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    if (size < (ssize_t) (8 * ngx_pagesize)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "zone \"%V\" is too small: at least %uzk",
                           &value[1], 8 * ngx_pagesize / 1024);
        return NGX_CONF_ERROR;
    }

    mcf->shm_zone = ngx_shared_memory_add(cf, &name, size,
                                          &ngx_http_aigov_module);
    if (mcf->shm_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    if (mcf->shm_zone->data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "zone \"%V\" is already used", &name);
        return NGX_CONF_ERROR;
    }

    mcf->shm_zone->init = ngx_http_aigov_init_zone;
    mcf->shm_zone->data = mcf;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_aigov_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_aigov_main_conf_t *omcf = data;

    size_t                       len;
    u_char                       buf[2 * 128 + 1];
    ngx_str_t                    key;
    ngx_uint_t                   i, j;
    ngx_aigov_model_t          **m;
    ngx_aigov_variant_t         *v;
    ngx_aigov_shm_node_t        *node;
    ngx_http_aigov_shm_block_t  *block;
    ngx_http_aigov_main_conf_t  *mcf;

    mcf = shm_zone->data;
    mcf->shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (omcf) {
        mcf->sh = omcf->sh;

    } else if (shm_zone->shm.exists) {
        mcf->sh = mcf->shpool->data;

    } else {
        mcf->sh = ngx_slab_alloc(mcf->shpool, sizeof(ngx_http_aigov_shctx_t));
        if (mcf->sh == NULL) {
            return NGX_ERROR;
        }

        mcf->shpool->data = mcf->sh;

        ngx_rbtree_init(&mcf->sh->rbtree, &mcf->sh->sentinel,
                        ngx_str_rbtree_insert_value);
        ngx_queue_init(&mcf->sh->queue);
        mcf->sh->created = ngx_time();

        len = sizeof(" in aigov zone \"\"") + shm_zone->shm.name.len;

        mcf->shpool->log_ctx = ngx_slab_alloc(mcf->shpool, len);
        if (mcf->shpool->log_ctx == NULL) {
            return NGX_ERROR;
        }

        ngx_sprintf(mcf->shpool->log_ctx, " in aigov zone \"%V\"%Z",
                    &shm_zone->shm.name);
    }

    mcf->generation = ++mcf->sh->generation;

    /* attach every model and variant to its node, creating missing ones */

    m = mcf->models.elts;

    for (i = 0; i < mcf->models.nelts; i++) {
        m[i]->shm = ngx_http_aigov_shm_attach(mcf, &m[i]->name, 0);
        if (m[i]->shm == NULL) {
            return NGX_ERROR;
        }

        v = m[i]->variants.elts;

        for (j = 0; j < m[i]->variants.nelts; j++) {
            /* names are at most 128 bytes each (aigov_valid_name) */
            key.data = buf;
            key.len = ngx_snprintf(buf, sizeof(buf), "%V/%V", &m[i]->name,
                                   &v[j].name)
                      - buf;

            v[j].shm = ngx_http_aigov_shm_attach(mcf, &key, 0);

            if (v[j].shm == NULL) {
                return NGX_ERROR;
            }
        }
    }

    if (mcf->blocks == NULL) {
        return NGX_OK;
    }

    block = mcf->blocks->elts;

    for (i = 0; i < mcf->blocks->nelts; i++) {
        node = ngx_http_aigov_shm_attach(mcf, &block[i].key, block[i].size);
        if (node == NULL) {
            return NGX_ERROR;
        }

        *block[i].data = (u_char *) node
                         + ngx_http_aigov_shm_data_offset(block[i].key.len);
    }

    return NGX_OK;
}


ngx_int_t
ngx_http_aigov_shm_block(ngx_conf_t *cf, ngx_str_t *key, size_t size,
    void **data)
{
    ngx_http_aigov_shm_block_t  *block;
    ngx_http_aigov_main_conf_t  *mcf;

    mcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_aigov_module);

    if (mcf->blocks == NULL) {
        mcf->blocks = ngx_array_create(cf->pool, 4,
                                       sizeof(ngx_http_aigov_shm_block_t));
        if (mcf->blocks == NULL) {
            return NGX_ERROR;
        }
    }

    block = ngx_array_push(mcf->blocks);
    if (block == NULL) {
        return NGX_ERROR;
    }

    block->key.data = ngx_pstrdup(cf->pool, key);
    if (block->key.data == NULL) {
        return NGX_ERROR;
    }

    block->key.len = key->len;
    block->size = size;
    block->data = data;
    *data = NULL;

    return NGX_OK;
}


static void
ngx_http_aigov_shm_evict(ngx_http_aigov_main_conf_t *mcf)
{
    ngx_queue_t           *q, *next;
    ngx_aigov_shm_node_t  *node;

    /*
     * Nodes used neither by this configuration nor by the previous one
     * (whose workers may still be finishing requests) can go.
     */

    for (q = ngx_queue_head(&mcf->sh->queue);
         q != ngx_queue_sentinel(&mcf->sh->queue);
         q = next)
    {
        next = ngx_queue_next(q);
        node = ngx_queue_data(q, ngx_aigov_shm_node_t, queue);

        if (node->generation + 1 >= mcf->generation) {
            continue;
        }

        ngx_queue_remove(q);
        ngx_rbtree_delete(&mcf->sh->rbtree, &node->sn.node);
        ngx_slab_free_locked(mcf->shpool, node);
    }
}


/* size: 0 for model and variant nodes, else a plugin block's data */

static ngx_aigov_shm_node_t *
ngx_http_aigov_shm_attach(ngx_http_aigov_main_conf_t *mcf, ngx_str_t *key,
    size_t size)
{
    size_t                 len;
    uint32_t               hash;
    ngx_str_node_t        *sn;
    ngx_aigov_shm_node_t  *node;

    hash = ngx_crc32_short(key->data, key->len);

    len = size ? ngx_http_aigov_shm_data_offset(key->len) + size
               : sizeof(ngx_aigov_shm_node_t) + key->len;

    ngx_shmtx_lock(&mcf->shpool->mutex);

    sn = ngx_str_rbtree_lookup(&mcf->sh->rbtree, key, hash);

    if (sn) {
        node = (ngx_aigov_shm_node_t *) sn;

        if (node->size == size) {
            node->generation = mcf->generation;

            ngx_queue_remove(&node->queue);
            ngx_queue_insert_head(&mcf->sh->queue, &node->queue);

            ngx_shmtx_unlock(&mcf->shpool->mutex);
            return node;
        }

        /* a block laid out by another build of the module: start again */

        ngx_queue_remove(&node->queue);
        ngx_rbtree_delete(&mcf->sh->rbtree, &node->sn.node);
        ngx_slab_free_locked(mcf->shpool, node);
    }

    node = ngx_slab_calloc_locked(mcf->shpool, len);

    if (node == NULL) {
        ngx_http_aigov_shm_evict(mcf);
        node = ngx_slab_calloc_locked(mcf->shpool, len);
    }

    if (node == NULL) {
        ngx_shmtx_unlock(&mcf->shpool->mutex);
        ngx_log_error(NGX_LOG_EMERG, ngx_cycle->log, 0,
                      "aigov zone \"%V\" is full: no room for \"%V\", "
                      "make it larger", &mcf->shm_zone->shm.name, key);
        return NULL;
    }

    ngx_memcpy(node->key, key->data, key->len);

    node->sn.str.data = node->key;
    node->sn.str.len = key->len;
    node->sn.node.key = hash;
    node->generation = mcf->generation;
    node->size = size;
    node->control.kill = -1;
    node->control.rollback = -1;

    ngx_rbtree_insert(&mcf->sh->rbtree, &node->sn.node);
    ngx_queue_insert_head(&mcf->sh->queue, &node->queue);

    ngx_shmtx_unlock(&mcf->shpool->mutex);

    return node;
}
