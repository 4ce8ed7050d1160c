/*
 * ngx_aigov runtime control and fleet sync.
 *
 * Each model's runtime control (kill switch, rollback, canary weights,
 * blue-green colour) lives in its zone node with a monotonic version.  The
 * request path compares that version with its worker's cached copy and
 * reparses only when it moved on (ngx_aigov_runtime()).
 *
 * With "aigov_redis", the Redis hash <prefix>model:<name> carries the same
 * state for the fleet.  Every worker has a command connection (admin API
 * writes); worker 0 also subscribes to <prefix>control and reconciles every
 * model every sync_interval and whenever Redis comes back:
 *
 *   Redis newer than the zone         -> the zone takes Redis's state;
 *   Redis older or empty (restarted)  -> the zone's state is written back:
 *                                        a flip never un-flips because
 *                                        Redis lost it;
 *   a change made here while Redis was unreachable ("dirty") is written
 *   back when Redis returns, unless the fleet moved on meanwhile (then the
 *   fleet's newer state wins and a warning says so).
 *
 * Plugins may publish their own messages on <prefix>control, "WORD ..."
 * (never a model name: it has a space); worker 0 hands them to the handler
 * registered for WORD (ngx_http_aigov_control_on_message()).
 *
 * Nothing here runs on the request path except ngx_aigov_runtime().
 */

#include "ngx_http_aigov_module.h"
#include "ngx_http_aigov_redis.h"


static ngx_int_t ngx_http_aigov_runtime_parse(ngx_aigov_model_t *model,
    ngx_http_aigov_control_t *ctl, ngx_aigov_runtime_t *rt);
static void ngx_http_aigov_control_store(ngx_aigov_model_t *model,
    ngx_http_aigov_control_t *ctl);
static void ngx_http_aigov_sync_handler(ngx_event_t *ev);
static void ngx_http_aigov_sync_all(void);
static void ngx_http_aigov_fetch(ngx_aigov_model_t *model);
static void ngx_http_aigov_fetch_reply(void *data, redisReply *reply);
static void ngx_http_aigov_parse_hash(redisReply *reply,
    ngx_http_aigov_control_t *remote);
static void ngx_http_aigov_push(ngx_aigov_model_t *model,
    ngx_http_aigov_control_t *ctl);
static void ngx_http_aigov_push_reply(void *data, redisReply *reply);
static void ngx_http_aigov_message(void *data, redisReply *reply);
static void ngx_http_aigov_cmd_state(ngx_aigov_redis_t *rds,
    ngx_uint_t ready);
static void ngx_http_aigov_change_reply(void *data, redisReply *reply);
static void ngx_http_aigov_change_local(ngx_http_aigov_change_t *ch);
static void ngx_http_aigov_audit_log(ngx_http_aigov_change_t *ch);
static size_t ngx_http_aigov_control_text(ngx_http_aigov_control_t *ctl,
    u_char *buf, size_t size);
static ngx_str_t *ngx_http_aigov_model_key(ngx_aigov_model_t *model);


/*
 * KEYS[1] model hash, KEYS[2] audit stream.  ARGV: 1 the sender's version
 * (Redis may have restarted empty: never go below it), 2 time, 3 by,
 * 4 model, 5 action, 6 old, 7 new, 8 node, 9 reason, 10 channel, 11-14 the
 * sender's whole state (kill, rollback, active, weights: written only when
 * Redis is behind it), then the changed fields as name, value pairs.  Only
 * those fields are set, so concurrent changes of different fields from
 * different nodes all stay.  Returns the whole hash after the change.
 */
static const char  ngx_http_aigov_lua_write[] =
    "local v = tonumber(redis.call('HGET', KEYS[1], 'version') or '0') or 0 "
    "local min = tonumber(ARGV[1]) "
    "if v < min then "
    "  v = min "
    "  redis.call('HSET', KEYS[1], 'kill', ARGV[11], 'rollback', ARGV[12], "
    "    'active', ARGV[13], 'weights', ARGV[14]) "
    "end "
    "v = v + 1 "
    "redis.call('HSET', KEYS[1], 'version', v, 'updated', ARGV[2], "
    "  'by', ARGV[3]) "
    "for i = 15, #ARGV, 2 do "
    "  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) "
    "end "
    "redis.call('XADD', KEYS[2], 'MAXLEN', '~', '10000', '*', "
    "  'version', v, 'model', ARGV[4], 'action', ARGV[5], 'by', ARGV[3], "
    "  'old', ARGV[6], 'new', ARGV[7], 'node', ARGV[8], "
    "  'reason', ARGV[9], 'time', ARGV[2]) "
    "redis.call('PUBLISH', ARGV[10], ARGV[4]) "
    "return redis.call('HGETALL', KEYS[1])";

/*
 * Write back a node's state if Redis has an older one (or none).
 * ARGV: 1 version, 2..7 as above, 8 model, 9 channel.  Returns 0 when
 * written, else the newer version Redis has.
 */
static const char  ngx_http_aigov_lua_push[] =
    "local v = tonumber(redis.call('HGET', KEYS[1], 'version') or '0') or 0 "
    "if v >= tonumber(ARGV[1]) then return v end "
    "redis.call('HSET', KEYS[1], 'version', ARGV[1], 'kill', ARGV[2], "
    "  'rollback', ARGV[3], 'active', ARGV[4], 'weights', ARGV[5], "
    "  'updated', ARGV[6], 'by', ARGV[7]) "
    "redis.call('PUBLISH', ARGV[9], ARGV[8]) "
    "return 0";

/*
 * An admin change that is not a control change (a plugin's action).
 * KEYS[1] audit stream.  ARGV: 1 time, 2 by, 3 model, 4 action, 5 old,
 * 6 new, 7 node, 8 reason, 9 channel, 10 message (empty: none).  The entry
 * first: a message is published only once the change is in the audit
 * trail.  Returns the message's receivers, -1 without a message.
 */
static const char  ngx_http_aigov_lua_record[] =
    "redis.call('XADD', KEYS[1], 'MAXLEN', '~', '10000', '*', "
    "  'version', '', 'model', ARGV[3], 'action', ARGV[4], 'by', ARGV[2], "
    "  'old', ARGV[5], 'new', ARGV[6], 'node', ARGV[7], "
    "  'reason', ARGV[8], 'time', ARGV[1]) "
    "if ARGV[10] == '' then return -1 end "
    "return redis.call('PUBLISH', ARGV[9], ARGV[10])";


static ngx_http_aigov_main_conf_t  *ngx_http_aigov_sync_mcf;
static ngx_aigov_redis_t           *ngx_http_aigov_cmd;
static ngx_aigov_redis_t           *ngx_http_aigov_sub;
static ngx_event_t                  ngx_http_aigov_sync_ev;
static ngx_str_t                    ngx_http_aigov_channel;
static ngx_str_t                    ngx_http_aigov_audit_key;


struct ngx_aigov_redis_s *
ngx_http_aigov_control_client(void)
{
    return ngx_http_aigov_cmd;
}


/* The request path. */

NGX_AIGOV_HOT
ngx_aigov_runtime_t *
ngx_aigov_runtime(ngx_aigov_model_t *model)
{
    uint64_t                   version;
    ngx_aigov_runtime_t        rt;
    ngx_http_aigov_control_t   ctl;

    if (model->shm == NULL) {
        return &model->runtime;
    }

    version = *(volatile uint64_t *) &model->shm->control.version;

    if (version == model->runtime.version) {
        return &model->runtime;
    }

    ngx_http_aigov_control_read(model, &ctl);

    if (ngx_http_aigov_runtime_parse(model, &ctl, &rt) == NGX_OK) {
        model->runtime = rt;

    } else {
        /* keep what we had, but do not reparse this version again */
        model->runtime.version = ctl.version;
    }

    return &model->runtime;
}


void
ngx_http_aigov_control_read(ngx_aigov_model_t *model,
    ngx_http_aigov_control_t *out)
{
    ngx_atomic_uint_t          seq;
    ngx_http_aigov_control_t  *ctl;

    ctl = &model->shm->control;

    for ( ;; ) {
        seq = ctl->seq;
        ngx_memory_barrier();

        if (seq & 1) {
            ngx_cpu_pause();
            continue;
        }

        ngx_memcpy(out, ctl, sizeof(ngx_http_aigov_control_t));
        ngx_memory_barrier();

        if (ctl->seq == seq) {
            return;
        }
    }
}


static void
ngx_http_aigov_control_store(ngx_aigov_model_t *model,
    ngx_http_aigov_control_t *ctl)
{
    ngx_http_aigov_control_t  *dst;

    /* the caller holds the zone's mutex: one writer at a time */

    dst = &model->shm->control;

    dst->seq++;
    ngx_memory_barrier();

    ngx_memcpy((u_char *) dst + offsetof(ngx_http_aigov_control_t, version),
               (u_char *) ctl + offsetof(ngx_http_aigov_control_t, version),
               sizeof(ngx_http_aigov_control_t)
               - offsetof(ngx_http_aigov_control_t, version));

    ngx_memory_barrier();
    dst->seq++;
}


static ngx_int_t
ngx_http_aigov_runtime_parse(ngx_aigov_model_t *model,
    ngx_http_aigov_control_t *ctl, ngx_aigov_runtime_t *rt)
{
    ngx_str_t             name, err;
    ngx_aigov_variant_t  *v;

    ngx_memzero(rt, sizeof(ngx_aigov_runtime_t));

    rt->version = ctl->version;
    rt->kill = ctl->kill;
    rt->rollback = ctl->rollback;

    if (ctl->active_len) {
        name.data = ctl->active;
        name.len = ctl->active_len;

        v = ngx_aigov_find_variant(model, &name);

        if (v == NULL) {
            ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                          "aigov: model \"%V\" control version %uL names "
                          "unknown active variant \"%V\", ignored",
                          &model->name, ctl->version, &name);
        }

        rt->active = v;
    }

    if (ctl->weights_len) {
        if (ngx_http_aigov_parse_weights(model, ctl->weights, ctl->weights_len,
                                         rt, &err)
            != NGX_OK)
        {
            ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                          "aigov: model \"%V\" control version %uL has "
                          "invalid weights \"%*s\": %V; ignored",
                          &model->name, ctl->version,
                          (size_t) ctl->weights_len, ctl->weights, &err);
            rt->has_weights = 0;
            rt->n = 0;
        }
    }

    return NGX_OK;
}


/* "v2=5%,v3=0.25%": candidates of the model, at most 100 % in all. */

ngx_int_t
ngx_http_aigov_parse_weights(ngx_aigov_model_t *model, u_char *s, size_t len,
    ngx_aigov_runtime_t *rt, ngx_str_t *err)
{
    u_char               *p, *end, *eq, *comma;
    uint32_t              w;
    ngx_str_t             name;
    ngx_uint_t            i;
    ngx_aigov_variant_t  *v;

    rt->n = 0;
    rt->has_weights = 1;

    p = s;
    end = s + len;

    while (p < end) {
        comma = ngx_strlchr(p, end, ',');
        if (comma == NULL) {
            comma = end;
        }

        eq = ngx_strlchr(p, comma, '=');
        if (eq == NULL || eq == p) {
            ngx_str_set(err, "expected VARIANT=PERCENT");
            return NGX_ERROR;
        }

        name.data = p;
        name.len = eq - p;

        v = ngx_aigov_find_variant(model, &name);
        if (v == NULL) {
            ngx_str_set(err, "unknown variant");
            return NGX_ERROR;
        }

        if (v->role == NGX_AIGOV_ROLE_STABLE) {
            ngx_str_set(err, "the stable variant gets the rest, it has no "
                        "weight");
            return NGX_ERROR;
        }

        for (i = 0; i < rt->n; i++) {
            if (rt->candidates[i] == v) {
                ngx_str_set(err, "a variant is named twice");
                return NGX_ERROR;
            }
        }

        if (aigov_parse_percent((char *) eq + 1, comma - eq - 1, &w)
            != AIGOV_OK)
        {
            ngx_str_set(err, "a weight is not a percentage from 0% to 100% "
                        "with at most two decimals");
            return NGX_ERROR;
        }

        rt->candidates[rt->n] = v;
        rt->weights[rt->n] = w;
        rt->n++;

        p = comma + 1;
    }

    if (aigov_weights_sum(rt->weights, rt->n) > AIGOV_WEIGHT_SCALE) {
        ngx_str_set(err, "the weights add up to more than 100%");
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* Configuration. */

/*
 * aigov_redis ADDRESS [password=P | password_file=F] [db=N] [prefix=P]
 *             [connect_timeout=T] [command_timeout=T] [sync_interval=T]
 *             [backoff_max=T];
 */

char *
ngx_http_aigov_redis(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_aigov_main_conf_t *mcf = conf;

    u_char                       *p, *last;
    ssize_t                       n;
    ngx_str_t                    *value, s, file;
    ngx_int_t                     db;
    ngx_msec_t                    ms, *msp;
    ngx_uint_t                    i;
    ngx_file_t                    f;
    ngx_file_info_t               fi;
    ngx_http_aigov_redis_conf_t  *rcf;

    if (mcf->redis) {
        return "is duplicate";
    }

    rcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_aigov_redis_conf_t));
    if (rcf == NULL) {
        return NGX_CONF_ERROR;
    }

    value = cf->args->elts;

    if (ngx_aigov_redis_parse_addr(cf, &value[1], &rcf->addr) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    ngx_str_set(&rcf->prefix, "aigov:");
    rcf->connect_timeout = 500;
    rcf->command_timeout = 250;
    rcf->sync_interval = 1000;
    rcf->backoff_max = 5000;

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "password=", 9) == 0) {
            rcf->password.data = value[i].data + 9;
            rcf->password.len = value[i].len - 9;
            continue;
        }

        if (ngx_strncmp(value[i].data, "password_file=", 14) == 0) {
            file.data = value[i].data + 14;
            file.len = value[i].len - 14;

            if (ngx_conf_full_name(cf->cycle, &file, 1) != NGX_OK) {
                return NGX_CONF_ERROR;
            }

            ngx_memzero(&f, sizeof(ngx_file_t));
            f.name = file;
            f.log = cf->log;

            f.fd = ngx_open_file(file.data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
            if (f.fd == NGX_INVALID_FILE) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                                   "cannot open redis password_file \"%V\"",
                                   &file);
                return NGX_CONF_ERROR;
            }

            if (ngx_fd_info(f.fd, &fi) == NGX_FILE_ERROR
                || ngx_file_size(&fi) > 1024)
            {
                ngx_close_file(f.fd);
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "redis password_file \"%V\" is not a "
                                   "small file", &file);
                return NGX_CONF_ERROR;
            }

            p = ngx_pnalloc(cf->pool, 1025);
            if (p == NULL) {
                ngx_close_file(f.fd);
                return NGX_CONF_ERROR;
            }

            n = ngx_read_file(&f, p, 1024, 0);
            ngx_close_file(f.fd);

            if (n == NGX_ERROR) {
                return NGX_CONF_ERROR;
            }

            last = p + n;
            while (last > p && (last[-1] == '\n' || last[-1] == '\r'
                                || last[-1] == ' '))
            {
                last--;
            }

            if (last == p) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "redis password_file \"%V\" is empty",
                                   &file);
                return NGX_CONF_ERROR;
            }

            rcf->password.data = p;
            rcf->password.len = last - p;
            continue;
        }

        if (ngx_strncmp(value[i].data, "db=", 3) == 0) {
            db = ngx_atoi(value[i].data + 3, value[i].len - 3);
            if (db == NGX_ERROR || db > 1000) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid redis database \"%V\"", &value[i]);
                return NGX_CONF_ERROR;
            }

            rcf->db = db;
            continue;
        }

        if (ngx_strncmp(value[i].data, "prefix=", 7) == 0) {
            rcf->prefix.data = value[i].data + 7;
            rcf->prefix.len = value[i].len - 7;

            if (rcf->prefix.len > 64) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "redis key prefix \"%V\" is longer than "
                                   "64 bytes", &value[i]);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        msp = NULL;

        if (ngx_strncmp(value[i].data, "connect_timeout=", 16) == 0) {
            msp = &rcf->connect_timeout;
            s.data = value[i].data + 16;

        } else if (ngx_strncmp(value[i].data, "command_timeout=", 16) == 0) {
            msp = &rcf->command_timeout;
            s.data = value[i].data + 16;

        } else if (ngx_strncmp(value[i].data, "sync_interval=", 14) == 0) {
            msp = &rcf->sync_interval;
            s.data = value[i].data + 14;

        } else if (ngx_strncmp(value[i].data, "backoff_max=", 12) == 0) {
            msp = &rcf->backoff_max;
            s.data = value[i].data + 12;
        }

        if (msp) {
            s.len = value[i].data + value[i].len - s.data;
            ms = ngx_parse_time(&s, 0);

            if (ms == (ngx_msec_t) NGX_ERROR || ms < 10 || ms > 600000) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid time in \"%V\": use 10ms to 10m",
                                   &value[i]);
                return NGX_CONF_ERROR;
            }

            *msp = ms;
            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\" in aigov_redis",
                           &value[i]);
        return NGX_CONF_ERROR;
    }

    mcf->redis = rcf;

    return NGX_CONF_OK;
}


/* Workers. */

ngx_int_t
ngx_http_aigov_control_init_worker(ngx_cycle_t *cycle)
{
    ngx_http_aigov_main_conf_t   *mcf;
    ngx_http_aigov_redis_conf_t  *rcf;
    ngx_aigov_redis_conf_t       *conf;

    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    mcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_aigov_module);

    if (mcf == NULL || mcf->redis == NULL || mcf->sh == NULL) {
        return NGX_OK;
    }

    rcf = mcf->redis;
    ngx_http_aigov_sync_mcf = mcf;

    conf = ngx_pcalloc(cycle->pool, sizeof(ngx_aigov_redis_conf_t));
    if (conf == NULL) {
        return NGX_ERROR;
    }

    conf->addr = rcf->addr;
    conf->password = rcf->password;
    conf->db = rcf->db;
    conf->connect_timeout = rcf->connect_timeout;
    conf->command_timeout = rcf->command_timeout;
    conf->backoff_max = rcf->backoff_max;

    ngx_http_aigov_channel.len = rcf->prefix.len + sizeof("control") - 1;
    ngx_http_aigov_channel.data = ngx_pnalloc(cycle->pool,
                                              ngx_http_aigov_channel.len);
    ngx_http_aigov_audit_key.len = rcf->prefix.len + sizeof("audit") - 1;
    ngx_http_aigov_audit_key.data = ngx_pnalloc(cycle->pool,
                                                ngx_http_aigov_audit_key.len);

    if (ngx_http_aigov_channel.data == NULL
        || ngx_http_aigov_audit_key.data == NULL)
    {
        return NGX_ERROR;
    }

    ngx_sprintf(ngx_http_aigov_channel.data, "%Vcontrol", &rcf->prefix);
    ngx_sprintf(ngx_http_aigov_audit_key.data, "%Vaudit", &rcf->prefix);

    ngx_http_aigov_cmd = ngx_aigov_redis_create(cycle, conf, "commands");
    if (ngx_http_aigov_cmd == NULL) {
        return NGX_ERROR;
    }

    /* one [warn] per outage per node: worker 0's command connection's */
    ngx_http_aigov_cmd->quiet = (ngx_worker != 0);

    if (ngx_worker == 0) {
        /* worker 0 keeps the zone in sync with the fleet */

        ngx_http_aigov_cmd->on_state = ngx_http_aigov_cmd_state;

        ngx_http_aigov_sub = ngx_aigov_redis_create(cycle, conf,
                                                    "subscriber");
        if (ngx_http_aigov_sub == NULL) {
            return NGX_ERROR;
        }

        ngx_http_aigov_sub->quiet = 1;
        ngx_http_aigov_sub->channels = &ngx_http_aigov_channel;
        ngx_http_aigov_sub->nchannels = 1;
        ngx_http_aigov_sub->on_message = ngx_http_aigov_message;

        ngx_http_aigov_sync_ev.handler = ngx_http_aigov_sync_handler;
        ngx_http_aigov_sync_ev.data = mcf;    /* debug logging reads it */
        ngx_http_aigov_sync_ev.log = cycle->log;
        ngx_http_aigov_sync_ev.cancelable = 1;

        ngx_add_timer(&ngx_http_aigov_sync_ev, rcf->sync_interval);

        ngx_aigov_redis_connect(ngx_http_aigov_sub);
    }

    ngx_aigov_redis_connect(ngx_http_aigov_cmd);

    return NGX_OK;
}


void
ngx_http_aigov_control_exit_worker(ngx_cycle_t *cycle)
{
    if (ngx_http_aigov_sync_ev.timer_set) {
        ngx_del_timer(&ngx_http_aigov_sync_ev);
    }

    if (ngx_http_aigov_sub) {
        ngx_aigov_redis_close(ngx_http_aigov_sub);
        ngx_http_aigov_sub = NULL;
    }

    if (ngx_http_aigov_cmd) {
        ngx_aigov_redis_close(ngx_http_aigov_cmd);
        ngx_http_aigov_cmd = NULL;
    }
}


static void
ngx_http_aigov_cmd_state(ngx_aigov_redis_t *rds, ngx_uint_t ready)
{
    ngx_http_aigov_shctx_t  *sh;

    sh = ngx_http_aigov_sync_mcf->sh;

    sh->redis_ready = ready;
    sh->redis_since = ngx_time();

    if (ready) {
        /* Redis is (back): re-sync at once */
        ngx_http_aigov_sync_all();
    }
}


static void
ngx_http_aigov_sync_handler(ngx_event_t *ev)
{
    ngx_http_aigov_shctx_t  *sh;

    sh = ngx_http_aigov_sync_mcf->sh;

    if (ngx_http_aigov_cmd->ready) {
        ngx_http_aigov_sync_all();

    } else {
        if (sh->redis_ready) {
            sh->redis_ready = 0;
            sh->redis_since = ngx_time();
        }

        sh->redis_failures = ngx_http_aigov_cmd->failures;
        ngx_memcpy(sh->redis_error, ngx_http_aigov_cmd->last_error,
                   sizeof(sh->redis_error));
    }

    if (!ngx_exiting && !ngx_terminate && !ngx_quit) {
        ngx_add_timer(ev, ngx_http_aigov_sync_mcf->redis->sync_interval);
    }
}


static void
ngx_http_aigov_sync_all(void)
{
    ngx_uint_t                   i;
    ngx_aigov_model_t          **m;
    ngx_http_aigov_main_conf_t  *mcf;

    mcf = ngx_http_aigov_sync_mcf;
    m = mcf->models.elts;

    for (i = 0; i < mcf->models.nelts; i++) {
        ngx_http_aigov_fetch(m[i]);
    }
}


/*
 * Other messages on <prefix>control: "WORD REST", dispatched by their
 * first word to the handler registered for it (the breaker's fleet trips:
 * "breaker ...").  A model name holds no space, so the two kinds never
 * meet.  Handlers run in worker 0, which alone subscribes.
 */

#define NGX_HTTP_AIGOV_MESSAGE_KINDS  4

static struct {
    const char                 *word;
    ngx_http_aigov_message_pt   handler;
} ngx_http_aigov_message_kinds[NGX_HTTP_AIGOV_MESSAGE_KINDS];


ngx_int_t
ngx_http_aigov_control_on_message(const char *word,
    ngx_http_aigov_message_pt handler)
{
    ngx_uint_t  i;

    for (i = 0; i < NGX_HTTP_AIGOV_MESSAGE_KINDS; i++) {
        if (ngx_http_aigov_message_kinds[i].word == NULL
            || ngx_strcmp(ngx_http_aigov_message_kinds[i].word, word) == 0)
        {
            ngx_http_aigov_message_kinds[i].word = word;
            ngx_http_aigov_message_kinds[i].handler = handler;
            return NGX_OK;
        }
    }

    return NGX_ERROR;
}


static ngx_uint_t
ngx_http_aigov_message_dispatch(u_char *msg, size_t len)
{
    u_char      *sp;
    size_t       n;
    ngx_uint_t   i;

    sp = ngx_strlchr(msg, msg + len, ' ');

    if (sp == NULL) {
        return 0;
    }

    n = sp - msg;

    for (i = 0; i < NGX_HTTP_AIGOV_MESSAGE_KINDS; i++) {
        if (ngx_http_aigov_message_kinds[i].word
            && ngx_strlen(ngx_http_aigov_message_kinds[i].word) == n
            && ngx_strncmp(ngx_http_aigov_message_kinds[i].word, msg, n) == 0)
        {
            ngx_http_aigov_message_kinds[i].handler(sp + 1,
                                                    msg + len - sp - 1);
            break;
        }
    }

    /* unknown kinds (a newer node's) are ignored */
    return 1;
}


static void
ngx_http_aigov_message(void *data, redisReply *reply)
{
    ngx_aigov_model_t  *model;

    /* ["message", channel, model name] */

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 3
        || reply->element[2]->type != REDIS_REPLY_STRING)
    {
        return;
    }

    if (ngx_http_aigov_message_dispatch((u_char *) reply->element[2]->str,
                                        reply->element[2]->len))
    {
        return;
    }

    model = ngx_http_aigov_find_model(ngx_http_aigov_sync_mcf,
                                      (u_char *) reply->element[2]->str,
                                      reply->element[2]->len);

    if (model && ngx_http_aigov_cmd->ready) {
        ngx_http_aigov_fetch(model);
    }
}


static ngx_str_t *
ngx_http_aigov_model_key(ngx_aigov_model_t *model)
{
    static u_char     buf[64 + sizeof("model:") + 128];
    static ngx_str_t  key;

    key.data = buf;
    key.len = ngx_snprintf(buf, sizeof(buf), "%Vmodel:%V",
                           &ngx_http_aigov_sync_mcf->redis->prefix,
                           &model->name)
              - buf;

    return &key;
}


static void
ngx_http_aigov_fetch(ngx_aigov_model_t *model)
{
    const char  *argv[2];
    size_t       argvlen[2];
    ngx_str_t   *key;

    key = ngx_http_aigov_model_key(model);

    argv[0] = "HGETALL";
    argvlen[0] = 7;
    argv[1] = (const char *) key->data;
    argvlen[1] = key->len;

    (void) ngx_aigov_redis_send(ngx_http_aigov_cmd,
                                ngx_http_aigov_fetch_reply, model,
                                2, argv, argvlen);
}


static ngx_int_t
ngx_http_aigov_field(redisReply *v, const char *name, redisReply *k)
{
    size_t  len;

    len = ngx_strlen(name);

    return k->type == REDIS_REPLY_STRING && k->len == len
           && ngx_strncmp(k->str, name, len) == 0
           && v->type == REDIS_REPLY_STRING;
}


static int8_t
ngx_http_aigov_tristate(redisReply *v)
{
    if (v->len == 1 && v->str[0] == '1') {
        return 1;
    }

    if (v->len == 1 && v->str[0] == '0') {
        return 0;
    }

    return -1;
}


static ngx_uint_t
ngx_http_aigov_control_same(ngx_http_aigov_control_t *a,
    ngx_http_aigov_control_t *b)
{
    return a->kill == b->kill && a->rollback == b->rollback
           && a->active_len == b->active_len
           && ngx_memcmp(a->active, b->active, a->active_len) == 0
           && a->weights_len == b->weights_len
           && ngx_memcmp(a->weights, b->weights, a->weights_len) == 0;
}


static void
ngx_http_aigov_parse_hash(redisReply *reply, ngx_http_aigov_control_t *remote)
{
    size_t       i;
    int64_t      version;
    redisReply  *k, *v;

    ngx_memzero(remote, sizeof(ngx_http_aigov_control_t));
    remote->kill = -1;
    remote->rollback = -1;

    for (i = 0; i + 1 < reply->elements; i += 2) {
        k = reply->element[i];
        v = reply->element[i + 1];

        if (ngx_http_aigov_field(v, "version", k)) {
            version = ngx_atoof((u_char *) v->str, v->len);
            remote->version = (version > 0) ? (uint64_t) version : 0;

        } else if (ngx_http_aigov_field(v, "kill", k)) {
            remote->kill = ngx_http_aigov_tristate(v);

        } else if (ngx_http_aigov_field(v, "rollback", k)) {
            remote->rollback = ngx_http_aigov_tristate(v);

        } else if (ngx_http_aigov_field(v, "active", k)) {
            if (v->len <= sizeof(remote->active)) {
                remote->active_len = (uint8_t) v->len;
                ngx_memcpy(remote->active, v->str, v->len);
            }

        } else if (ngx_http_aigov_field(v, "weights", k)) {
            if (v->len <= sizeof(remote->weights)) {
                remote->weights_len = (uint16_t) v->len;
                ngx_memcpy(remote->weights, v->str, v->len);
            }

        } else if (ngx_http_aigov_field(v, "updated", k)) {
            remote->updated = ngx_atotm((u_char *) v->str, v->len);

        } else if (ngx_http_aigov_field(v, "by", k)) {
            remote->by_len = (uint8_t) ngx_min(v->len, sizeof(remote->by));
            ngx_memcpy(remote->by, v->str, remote->by_len);
        }
    }

    if (remote->updated == NGX_ERROR) {
        remote->updated = 0;
    }
}


static void
ngx_http_aigov_fetch_reply(void *data, redisReply *reply)
{
    ngx_aigov_model_t *model = data;

    ngx_aigov_runtime_t        rt;
    ngx_str_t                  err;
    ngx_http_aigov_shctx_t    *sh;
    ngx_http_aigov_control_t   local, remote;

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY) {
        return;
    }

    sh = ngx_http_aigov_sync_mcf->sh;
    sh->last_sync = ngx_time();

    if (!sh->redis_ready) {
        sh->redis_ready = 1;
        sh->redis_since = ngx_time();
    }

    ngx_http_aigov_parse_hash(reply, &remote);

    ngx_shmtx_lock(&ngx_http_aigov_sync_mcf->shpool->mutex);

    ngx_http_aigov_control_read(model, &local);

    if (local.dirty && remote.version == local.version
        && ngx_http_aigov_control_same(&local, &remote))
    {
        /* our write timed out but reached Redis after all */
        local.dirty = 0;
        ngx_http_aigov_control_store(model, &local);
        ngx_shmtx_unlock(&ngx_http_aigov_sync_mcf->shpool->mutex);
        return;
    }

    if (remote.version > local.version
        || (local.dirty && remote.version && remote.version >= local.version))
    {
        if (remote.weights_len
            && ngx_http_aigov_parse_weights(model, remote.weights,
                                            remote.weights_len, &rt, &err)
               != NGX_OK)
        {
            ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                          "aigov: redis has invalid weights \"%*s\" for "
                          "model \"%V\": %V; the rest of version %uL applies",
                          (size_t) remote.weights_len, remote.weights,
                          &model->name, &err, remote.version);
        }

        ngx_http_aigov_control_store(model, &remote);

        ngx_shmtx_unlock(&ngx_http_aigov_sync_mcf->shpool->mutex);

        if (local.dirty) {
            ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                          "aigov: model \"%V\": a change made here while "
                          "redis was unreachable (version %uL) lost to the "
                          "fleet's version %uL", &model->name,
                          local.version, remote.version);

        } else {
            ngx_log_error(NGX_LOG_NOTICE, ngx_cycle->log, 0,
                          "aigov: model \"%V\" control version %uL from "
                          "redis", &model->name, remote.version);
        }

        return;
    }

    ngx_shmtx_unlock(&ngx_http_aigov_sync_mcf->shpool->mutex);

    if (remote.version < local.version) {
        /* Redis restarted empty, or a change made here is not there yet */
        ngx_http_aigov_push(model, &local);
    }
}


static void
ngx_http_aigov_push(ngx_aigov_model_t *model, ngx_http_aigov_control_t *ctl)
{
    u_char       version[NGX_INT64_LEN], updated[NGX_TIME_T_LEN];
    ngx_str_t   *key;
    const char  *argv[13];
    size_t       argvlen[13];

    static const char *tri[] = { "", "0", "1" };

    key = ngx_http_aigov_model_key(model);

    argv[0] = "EVAL";
    argv[1] = ngx_http_aigov_lua_push;
    argv[2] = "1";
    argv[3] = (const char *) key->data;
    argvlen[3] = key->len;
    argv[4] = (const char *) version;
    argvlen[4] = ngx_sprintf(version, "%uL", ctl->version) - version;
    argv[5] = tri[ctl->kill + 1];
    argv[6] = tri[ctl->rollback + 1];
    argv[7] = (const char *) ctl->active;
    argvlen[7] = ctl->active_len;
    argv[8] = (const char *) ctl->weights;
    argvlen[8] = ctl->weights_len;
    argv[9] = (const char *) updated;
    argvlen[9] = ngx_sprintf(updated, "%T", ctl->updated) - updated;
    argv[10] = (const char *) ctl->by;
    argvlen[10] = ctl->by_len;
    argv[11] = (const char *) model->name.data;
    argvlen[11] = model->name.len;
    argv[12] = (const char *) ngx_http_aigov_channel.data;
    argvlen[12] = ngx_http_aigov_channel.len;

    argvlen[0] = 4;
    argvlen[1] = sizeof(ngx_http_aigov_lua_push) - 1;
    argvlen[2] = 1;
    argvlen[5] = ngx_strlen(argv[5]);
    argvlen[6] = ngx_strlen(argv[6]);

    (void) ngx_aigov_redis_send(ngx_http_aigov_cmd, ngx_http_aigov_push_reply,
                                model, 13, argv, argvlen);
}


static void
ngx_http_aigov_push_reply(void *data, redisReply *reply)
{
    ngx_aigov_model_t *model = data;

    ngx_http_aigov_control_t  ctl;

    if (reply == NULL) {
        return;
    }

    if (reply->type == REDIS_REPLY_ERROR) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "aigov: writing model \"%V\" control back to redis "
                      "failed: %*s", &model->name,
                      ngx_min(reply->len, 200), reply->str);
        return;
    }

    if (reply->type != REDIS_REPLY_INTEGER || reply->integer != 0) {
        return;   /* Redis had a newer state: the next fetch takes it */
    }

    ngx_shmtx_lock(&ngx_http_aigov_sync_mcf->shpool->mutex);

    ngx_http_aigov_control_read(model, &ctl);

    if (ctl.dirty) {
        ctl.dirty = 0;
        ngx_http_aigov_control_store(model, &ctl);
    }

    ngx_shmtx_unlock(&ngx_http_aigov_sync_mcf->shpool->mutex);

    ngx_log_error(NGX_LOG_NOTICE, ngx_cycle->log, 0,
                  "aigov: model \"%V\" control version %uL written back to "
                  "redis", &model->name, ctl.version);
}


/* Changes from the admin API. */

ngx_int_t
ngx_http_aigov_control_change(ngx_http_aigov_change_t *ch)
{
    u_char                      *buf, *old, *new, version[NGX_INT64_LEN],
                                 updated[NGX_TIME_T_LEN];
    ngx_str_t                   *key;
    ngx_uint_t                   n;
    const char                  *argv[24];
    size_t                       argvlen[24];
    ngx_aigov_redis_cmd_t       *cmd;
    ngx_http_aigov_main_conf_t  *mcf;

    static const char *tri[] = { "", "0", "1" };

    mcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                              ngx_http_aigov_module);

    ch->new.updated = ngx_time();
    ch->new.by_len = (uint8_t) ngx_min(ch->actor.len, sizeof(ch->new.by));
    ngx_memcpy(ch->new.by, ch->actor.data, ch->new.by_len);

    if (mcf->redis == NULL || ngx_http_aigov_cmd == NULL
        || !ngx_http_aigov_cmd->ready)
    {
        ngx_http_aigov_change_local(ch);
        return NGX_OK;
    }

    buf = ngx_alloc(2 * 1024, ch->log);
    if (buf == NULL) {
        ngx_http_aigov_change_local(ch);
        return NGX_OK;
    }

    old = buf;
    new = buf + 1024;

    key = ngx_http_aigov_model_key(ch->model);

    argv[0] = "EVAL";
    argvlen[0] = 4;
    argv[1] = ngx_http_aigov_lua_write;
    argvlen[1] = sizeof(ngx_http_aigov_lua_write) - 1;
    argv[2] = "2";
    argvlen[2] = 1;
    argv[3] = (const char *) key->data;
    argvlen[3] = key->len;
    argv[4] = (const char *) ngx_http_aigov_audit_key.data;
    argvlen[4] = ngx_http_aigov_audit_key.len;

    /* ARGV[1..10] */
    argv[5] = (const char *) version;
    argvlen[5] = ngx_sprintf(version, "%uL", ch->old.version) - version;
    argv[6] = (const char *) updated;
    argvlen[6] = ngx_sprintf(updated, "%T", ch->new.updated) - updated;
    argv[7] = (const char *) ch->new.by;
    argvlen[7] = ch->new.by_len;
    argv[8] = (const char *) ch->model->name.data;
    argvlen[8] = ch->model->name.len;
    argv[9] = (const char *) ch->action.data;
    argvlen[9] = ch->action.len;
    argv[10] = (const char *) old;
    argvlen[10] = ngx_http_aigov_control_text(&ch->old, old, 1024);
    argv[11] = (const char *) new;
    argvlen[11] = ngx_http_aigov_control_text(&ch->new, new, 1024);
    argv[12] = (const char *) ngx_cycle->hostname.data;
    argvlen[12] = ngx_cycle->hostname.len;
    argv[13] = (const char *) ch->reason.data;
    argvlen[13] = ch->reason.len;
    argv[14] = (const char *) ngx_http_aigov_channel.data;
    argvlen[14] = ngx_http_aigov_channel.len;

    /* ARGV[11..14]: this node's whole state, for a Redis that lost it */
    argv[15] = tri[ch->old.kill + 1];
    argvlen[15] = ngx_strlen(argv[15]);
    argv[16] = tri[ch->old.rollback + 1];
    argvlen[16] = ngx_strlen(argv[16]);
    argv[17] = (const char *) ch->old.active;
    argvlen[17] = ch->old.active_len;
    argv[18] = (const char *) ch->old.weights;
    argvlen[18] = ch->old.weights_len;

    /* the changed fields */
    n = 19;

    if (ch->fields & NGX_HTTP_AIGOV_F_KILL) {
        argv[n] = "kill";
        argvlen[n++] = 4;
        argv[n] = tri[ch->new.kill + 1];
        argvlen[n] = ngx_strlen(argv[n]);
        n++;
    }

    if (ch->fields & NGX_HTTP_AIGOV_F_ROLLBACK) {
        argv[n] = "rollback";
        argvlen[n++] = 8;
        argv[n] = tri[ch->new.rollback + 1];
        argvlen[n] = ngx_strlen(argv[n]);
        n++;
    }

    if (ch->fields & NGX_HTTP_AIGOV_F_ACTIVE) {
        argv[n] = "active";
        argvlen[n++] = 6;
        argv[n] = (const char *) ch->new.active;
        argvlen[n++] = ch->new.active_len;
    }

    if (ch->fields & NGX_HTTP_AIGOV_F_WEIGHTS) {
        argv[n] = "weights";
        argvlen[n++] = 7;
        argv[n] = (const char *) ch->new.weights;
        argvlen[n++] = ch->new.weights_len;
    }

    cmd = ngx_aigov_redis_send(ngx_http_aigov_cmd,
                               ngx_http_aigov_change_reply, ch,
                               (int) n, argv, argvlen);

    ngx_free(buf);

    if (cmd == NULL) {
        ngx_http_aigov_change_local(ch);
        return NGX_OK;
    }

    ch->cmd = cmd;

    return NGX_AGAIN;
}


void
ngx_http_aigov_control_cancel(ngx_http_aigov_change_t *ch)
{
    if (ch->cmd) {
        ngx_aigov_redis_cancel(ch->cmd);
        ch->cmd = NULL;
    }
}


ngx_aigov_redis_cmd_t *
ngx_http_aigov_control_record(ngx_http_aigov_record_t *rec,
    ngx_aigov_redis_handler_pt handler, void *data)
{
    u_char       updated[NGX_TIME_T_LEN];
    const char  *argv[14];
    size_t       argvlen[14];

    if (ngx_http_aigov_cmd == NULL || !ngx_http_aigov_cmd->ready) {
        return NULL;
    }

    argv[0] = "EVAL";
    argvlen[0] = 4;
    argv[1] = ngx_http_aigov_lua_record;
    argvlen[1] = sizeof(ngx_http_aigov_lua_record) - 1;
    argv[2] = "1";
    argvlen[2] = 1;
    argv[3] = (const char *) ngx_http_aigov_audit_key.data;
    argvlen[3] = ngx_http_aigov_audit_key.len;

    argv[4] = (const char *) updated;
    argvlen[4] = ngx_sprintf(updated, "%T", ngx_time()) - updated;
    argv[5] = (const char *) rec->actor.data;
    argvlen[5] = rec->actor.len;
    argv[6] = (const char *) rec->model->name.data;
    argvlen[6] = rec->model->name.len;
    argv[7] = (const char *) rec->action.data;
    argvlen[7] = rec->action.len;
    argv[8] = (const char *) rec->old.data;
    argvlen[8] = rec->old.len;
    argv[9] = (const char *) rec->new.data;
    argvlen[9] = rec->new.len;
    argv[10] = (const char *) ngx_cycle->hostname.data;
    argvlen[10] = ngx_cycle->hostname.len;
    argv[11] = (const char *) rec->reason.data;
    argvlen[11] = rec->reason.len;
    argv[12] = (const char *) ngx_http_aigov_channel.data;
    argvlen[12] = ngx_http_aigov_channel.len;
    argv[13] = (const char *) rec->message.data;
    argvlen[13] = rec->message.len;

    return ngx_aigov_redis_send(ngx_http_aigov_cmd, handler, data, 14, argv,
                                argvlen);
}


static void
ngx_http_aigov_change_reply(void *data, redisReply *reply)
{
    ngx_http_aigov_change_t *ch = data;

    ngx_http_aigov_control_t    cur, remote;
    ngx_http_aigov_main_conf_t *mcf;

    ch->cmd = NULL;

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY) {
        if (reply && reply->type == REDIS_REPLY_ERROR) {
            ngx_log_error(NGX_LOG_ERR, ch->log, 0,
                          "aigov: redis refused the change of model \"%V\": "
                          "%*s", &ch->model->name,
                          ngx_min(reply->len, 200), reply->str);
        }

        ngx_http_aigov_change_local(ch);
        ch->done(ch);
        return;
    }

    mcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                              ngx_http_aigov_module);

    /* Redis answers with the whole state after the change */
    ngx_http_aigov_parse_hash(reply, &remote);

    ch->new = remote;
    ch->propagated = 1;

    ngx_shmtx_lock(&mcf->shpool->mutex);

    ngx_http_aigov_control_read(ch->model, &cur);

    if (remote.version > cur.version) {
        ngx_http_aigov_control_store(ch->model, &remote);
    }

    ngx_shmtx_unlock(&mcf->shpool->mutex);

    ngx_http_aigov_audit_log(ch);

    ch->done(ch);
}


static void
ngx_http_aigov_change_local(ngx_http_aigov_change_t *ch)
{
    ngx_http_aigov_control_t    cur;
    ngx_http_aigov_main_conf_t *mcf;

    mcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                              ngx_http_aigov_module);

    ngx_shmtx_lock(&mcf->shpool->mutex);

    /* apply only the changed fields to the current state */

    ngx_http_aigov_control_read(ch->model, &cur);

    if (ch->fields & NGX_HTTP_AIGOV_F_KILL) {
        cur.kill = ch->new.kill;
    }

    if (ch->fields & NGX_HTTP_AIGOV_F_ROLLBACK) {
        cur.rollback = ch->new.rollback;
    }

    if (ch->fields & NGX_HTTP_AIGOV_F_ACTIVE) {
        cur.active_len = ch->new.active_len;
        ngx_memcpy(cur.active, ch->new.active, ch->new.active_len);
    }

    if (ch->fields & NGX_HTTP_AIGOV_F_WEIGHTS) {
        cur.weights_len = ch->new.weights_len;
        ngx_memcpy(cur.weights, ch->new.weights, ch->new.weights_len);
    }

    cur.version = ngx_max(cur.version, ch->old.version) + 1;
    cur.dirty = (mcf->redis != NULL);
    cur.updated = ch->new.updated;
    cur.by_len = ch->new.by_len;
    ngx_memcpy(cur.by, ch->new.by, ch->new.by_len);

    ngx_http_aigov_control_store(ch->model, &cur);

    ngx_shmtx_unlock(&mcf->shpool->mutex);

    ch->new = cur;
    ch->propagated = 0;

    ngx_http_aigov_audit_log(ch);
}


static void
ngx_http_aigov_audit_log(ngx_http_aigov_change_t *ch)
{
    u_char  old[1024], new[1024];
    size_t  no, nn;

    no = ngx_http_aigov_control_text(&ch->old, old, sizeof(old));
    nn = ngx_http_aigov_control_text(&ch->new, new, sizeof(new));

    ngx_log_error(NGX_LOG_NOTICE, ch->log, 0,
                  "aigov audit: model \"%V\" action \"%V\" by \"%V\" "
                  "version %uL: %*s -> %*s%s%V%s, %s",
                  &ch->model->name, &ch->action, &ch->actor,
                  ch->new.version, no, old, nn, new,
                  ch->reason.len ? " (reason \"" : "", &ch->reason,
                  ch->reason.len ? "\")" : "",
                  ch->propagated ? "in redis"
                  : (ngx_http_aigov_cmd ? "this node only, redis unreachable"
                                        : "this node only"));
}


static size_t
ngx_http_aigov_control_text(ngx_http_aigov_control_t *ctl, u_char *buf,
    size_t size)
{
    static const char *tri[] = { "unset", "off", "on" };

    return ngx_snprintf(buf, size, "kill=%s rollback=%s active=%*s "
                        "weights=%*s",
                        tri[ctl->kill + 1], tri[ctl->rollback + 1],
                        ctl->active_len ? (size_t) ctl->active_len : 5,
                        ctl->active_len ? ctl->active : (u_char *) "unset",
                        ctl->weights_len ? (size_t) ctl->weights_len : 5,
                        ctl->weights_len ? ctl->weights : (u_char *) "unset")
           - buf;
}


/* Status documents. */

json_t *
ngx_http_aigov_control_json(ngx_aigov_model_t *model)
{
    json_t                    *j;
    ngx_http_aigov_control_t   ctl;

    static const char *tri[] = { NULL, "off", "on" };

    if (model->shm == NULL) {
        return json_null();
    }

    ngx_http_aigov_control_read(model, &ctl);

    j = json_object();
    if (j == NULL) {
        return NULL;
    }

    json_object_set_new(j, "version", json_integer((json_int_t) ctl.version));
    json_object_set_new(j, "kill", ctl.kill < 0 ? json_null()
                                   : json_string(tri[ctl.kill + 1]));
    json_object_set_new(j, "rollback", ctl.rollback < 0 ? json_null()
                                   : json_string(tri[ctl.rollback + 1]));
    json_object_set_new(j, "active", ctl.active_len
                        ? json_stringn((char *) ctl.active, ctl.active_len)
                        : json_null());
    json_object_set_new(j, "weights", ctl.weights_len
                        ? json_stringn((char *) ctl.weights, ctl.weights_len)
                        : json_null());
    json_object_set_new(j, "updated", json_integer(ctl.updated));
    json_object_set_new(j, "by", json_stringn((char *) ctl.by, ctl.by_len));
    json_object_set_new(j, "pending_redis", json_boolean(ctl.dirty));

    return j;
}


json_t *
ngx_http_aigov_redis_json(ngx_http_aigov_main_conf_t *mcf)
{
    json_t                  *j;
    ngx_http_aigov_shctx_t  *sh;

    if (mcf->redis == NULL) {
        return json_pack("{s:b}", "configured", 0);
    }

    sh = mcf->sh;

    j = json_pack("{s:b, s:s%, s:b, s:I, s:I, s:b}",
                  "configured", 1,
                  "address", (char *) mcf->redis->addr.name.data,
                  mcf->redis->addr.name.len,
                  "connected", (int) sh->redis_ready,
                  "since", (json_int_t) sh->redis_since,
                  "last_sync", (json_int_t) sh->last_sync,
                  "degraded", !sh->redis_ready);

    if (j && !sh->redis_ready && sh->redis_error[0]) {
        json_object_set_new(j, "last_error",
                            json_string((char *) sh->redis_error));
    }

    return j;
}
