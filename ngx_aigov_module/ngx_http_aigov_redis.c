/*
 * ngx_aigov Redis client (see ngx_http_aigov_redis.h).
 *
 * One client is one TCP or unix connection, owned by one worker.  Commands
 * are formatted by hiredis (redisFormatCommandArgv) into a write buffer and
 * sent as the socket allows; replies are parsed by hiredis's reader and
 * matched to commands in order.  Any failure (connect error, timeout, a
 * closed or garbled stream) closes the connection, fails every pending
 * command with a NULL reply and schedules a reconnect.
 */

#include "ngx_http_aigov_module.h"
#include "ngx_http_aigov_redis.h"


#define NGX_AIGOV_REDIS_BACKOFF_MIN    100


static void ngx_aigov_redis_reconnect_handler(ngx_event_t *ev);
static void ngx_aigov_redis_read_handler(ngx_event_t *rev);
static void ngx_aigov_redis_write_handler(ngx_event_t *wev);
static ngx_int_t ngx_aigov_redis_flush(ngx_aigov_redis_t *rds);
static void ngx_aigov_redis_dispatch(ngx_aigov_redis_t *rds,
    redisReply *reply);
static void ngx_aigov_redis_fail(ngx_aigov_redis_t *rds, const char *why,
    ngx_err_t err);
static ngx_int_t ngx_aigov_redis_handshake(ngx_aigov_redis_t *rds,
    const char *cmd, ngx_str_t *arg);
static void ngx_aigov_redis_handshake_reply(void *data, redisReply *reply);
static ngx_aigov_redis_cmd_t *ngx_aigov_redis_queue(ngx_aigov_redis_t *rds,
    ngx_aigov_redis_handler_pt handler, void *data, int argc,
    const char **argv, const size_t *argvlen);


ngx_aigov_redis_t *
ngx_aigov_redis_create(ngx_cycle_t *cycle, ngx_aigov_redis_conf_t *conf,
    const char *role)
{
    ngx_aigov_redis_t  *rds;

    rds = ngx_pcalloc(cycle->pool, sizeof(ngx_aigov_redis_t));
    if (rds == NULL) {
        return NULL;
    }

    rds->conf = conf;
    rds->log = cycle->log;
    rds->role = role;
    rds->backoff = NGX_AIGOV_REDIS_BACKOFF_MIN;

    ngx_queue_init(&rds->pending);

    rds->reconnect.handler = ngx_aigov_redis_reconnect_handler;
    rds->reconnect.data = rds;
    rds->reconnect.log = cycle->log;
    rds->reconnect.cancelable = 1;

    return rds;
}


void
ngx_aigov_redis_connect(ngx_aigov_redis_t *rds)
{
    u_char             db[NGX_INT_T_LEN];
    ngx_int_t          rc;
    ngx_str_t          arg;
    ngx_uint_t         i;
    ngx_connection_t  *c;

    if (rds->c || rds->closing) {
        return;
    }

    if (rds->reader == NULL) {
        rds->reader = redisReaderCreate();
        if (rds->reader == NULL) {
            ngx_aigov_redis_fail(rds, "out of memory", 0);
            return;
        }
    }

    ngx_memzero(&rds->pc, sizeof(ngx_peer_connection_t));

    rds->pc.sockaddr = rds->conf->addr.sockaddr;
    rds->pc.socklen = rds->conf->addr.socklen;
    rds->pc.name = &rds->conf->addr.name;
    rds->pc.get = ngx_event_get_peer;
    rds->pc.log = rds->log;
    rds->pc.log_error = NGX_ERROR_INFO;

    rc = ngx_event_connect_peer(&rds->pc);

    if (rc == NGX_ERROR || rc == NGX_BUSY || rc == NGX_DECLINED) {
        if (rds->pc.connection) {
            ngx_close_connection(rds->pc.connection);
            rds->pc.connection = NULL;
        }

        ngx_aigov_redis_fail(rds, "connect() failed", ngx_socket_errno);
        return;
    }

    c = rds->pc.connection;
    rds->c = c;

    c->data = rds;
    c->log = rds->log;
    c->read->log = rds->log;
    c->write->log = rds->log;
    c->read->handler = ngx_aigov_redis_read_handler;
    c->write->handler = ngx_aigov_redis_write_handler;
    c->read->cancelable = 1;
    c->write->cancelable = 1;

    /* the handshake goes first in the pipeline */

    rds->handshake = 0;

    if (rds->conf->password.len
        && ngx_aigov_redis_handshake(rds, "AUTH", &rds->conf->password)
           != NGX_OK)
    {
        return;
    }

    if (rds->conf->db > 0) {
        arg.data = db;
        arg.len = ngx_sprintf(db, "%i", rds->conf->db) - db;

        if (ngx_aigov_redis_handshake(rds, "SELECT", &arg) != NGX_OK) {
            return;
        }
    }

    for (i = 0; i < rds->nchannels; i++) {
        if (ngx_aigov_redis_handshake(rds, "SUBSCRIBE", &rds->channels[i])
            != NGX_OK)
        {
            return;
        }
    }

    /* nothing else to wait for: a PING proves the server answers */
    if (rds->handshake == 0
        && ngx_aigov_redis_handshake(rds, "PING", NULL) != NGX_OK)
    {
        return;
    }

    ngx_add_timer(c->write, rds->conf->connect_timeout);

    if (rc == NGX_OK) {
        /* connected at once (unix socket): send the handshake now */
        ngx_aigov_redis_write_handler(c->write);
    }
}


static ngx_int_t
ngx_aigov_redis_handshake(ngx_aigov_redis_t *rds, const char *cmd,
    ngx_str_t *arg)
{
    const char  *argv[2];
    size_t       argvlen[2];

    argv[0] = cmd;
    argvlen[0] = ngx_strlen(cmd);

    if (arg) {
        argv[1] = (const char *) arg->data;
        argvlen[1] = arg->len;
    }

    if (ngx_aigov_redis_queue(rds, ngx_aigov_redis_handshake_reply, rds,
                              arg ? 2 : 1, argv, argvlen)
        == NULL)
    {
        ngx_aigov_redis_fail(rds, "out of memory", 0);
        return NGX_ERROR;
    }

    rds->handshake++;

    return NGX_OK;
}


static void
ngx_aigov_redis_handshake_reply(void *data, redisReply *reply)
{
    ngx_aigov_redis_t  *rds = data;

    ngx_aigov_redis_state_pt  on_state;

    if (reply == NULL) {
        return;   /* the failure is already being handled */
    }

    if (reply->type == REDIS_REPLY_ERROR) {
        /* once per outage, like any other failure: it retries forever */
        if (rds->failures == 0) {
            ngx_log_error(NGX_LOG_ERR, rds->log, 0,
                          "aigov redis %V (%s): handshake refused: %*s",
                          &rds->conf->addr.name, rds->role,
                          ngx_min(reply->len, 200), reply->str);
        }

        ngx_aigov_redis_fail(rds, "handshake refused", 0);
        return;
    }

    if (--rds->handshake > 0) {
        return;
    }

    if (rds->failures) {
        ngx_log_error((rds->quiet ? NGX_LOG_INFO : NGX_LOG_NOTICE), rds->log, 0,
                      "aigov redis %V (%s): connected again after %ui "
                      "failures", &rds->conf->addr.name, rds->role,
                      rds->failures);
    }

    rds->ready = 1;
    rds->failures = 0;
    rds->backoff = NGX_AIGOV_REDIS_BACKOFF_MIN;

    on_state = rds->on_state;

    if (on_state) {
        on_state(rds, 1);
    }
}


static void
ngx_aigov_redis_reconnect_handler(ngx_event_t *ev)
{
    ngx_aigov_redis_connect(ev->data);
}


ngx_aigov_redis_cmd_t *
ngx_aigov_redis_send(ngx_aigov_redis_t *rds,
    ngx_aigov_redis_handler_pt handler, void *data, int argc,
    const char **argv, const size_t *argvlen)
{
    ngx_aigov_redis_cmd_t  *cmd;

    if (!rds->ready || rds->c == NULL) {
        return NULL;
    }

    cmd = ngx_aigov_redis_queue(rds, handler, data, argc, argv, argvlen);
    if (cmd == NULL) {
        return NULL;
    }

    /*
     * Sent from the event loop, never from here: commands queued in one
     * handler go out in one write, and the caller never sees its handler
     * called before this returns.
     */

    if (rds->c->write->ready && !rds->c->write->posted) {
        ngx_post_event(rds->c->write, &ngx_posted_events);
    }

    return cmd;
}


void
ngx_aigov_redis_cancel(ngx_aigov_redis_cmd_t *cmd)
{
    cmd->handler = NULL;
}


static ngx_aigov_redis_cmd_t *
ngx_aigov_redis_queue(ngx_aigov_redis_t *rds,
    ngx_aigov_redis_handler_pt handler, void *data, int argc,
    const char **argv, const size_t *argvlen)
{
    int                     len;
    char                   *fmt;
    size_t                  size;
    u_char                 *p;
    ngx_aigov_redis_cmd_t  *cmd;

    len = redisFormatCommandArgv(&fmt, argc, argv, argvlen);
    if (len < 0) {
        return NULL;
    }

    if (rds->wlen + len > rds->wsize) {
        size = ngx_max(rds->wsize * 2, rds->wlen + len + 1024);

        p = ngx_alloc(size, rds->log);
        if (p == NULL) {
            redisFreeCommand(fmt);
            return NULL;
        }

        if (rds->wbuf) {
            ngx_memcpy(p, rds->wbuf + rds->wpos, rds->wlen - rds->wpos);
            ngx_free(rds->wbuf);
        }

        rds->wlen -= rds->wpos;
        rds->wpos = 0;
        rds->wbuf = p;
        rds->wsize = size;
    }

    cmd = ngx_alloc(sizeof(ngx_aigov_redis_cmd_t), rds->log);
    if (cmd == NULL) {
        redisFreeCommand(fmt);
        return NULL;
    }

    ngx_memcpy(rds->wbuf + rds->wlen, fmt, len);
    rds->wlen += len;
    redisFreeCommand(fmt);

    cmd->handler = handler;
    cmd->data = data;
    cmd->internal = (handler == ngx_aigov_redis_handshake_reply);

    ngx_queue_insert_tail(&rds->pending, &cmd->queue);
    rds->npending++;

    /* a reply is due within command_timeout of now */
    if (rds->c && !rds->c->read->timer_set) {
        ngx_add_timer(rds->c->read, rds->conf->command_timeout);
    }

    return cmd;
}


static ngx_int_t
ngx_aigov_redis_flush(ngx_aigov_redis_t *rds)
{
    ssize_t            n;
    ngx_connection_t  *c;

    c = rds->c;

    if (c == NULL || !c->write->ready) {
        return NGX_OK;    /* sent once the connect completes */
    }

    while (rds->wpos < rds->wlen) {
        n = c->send(c, rds->wbuf + rds->wpos, rds->wlen - rds->wpos);

        if (n == NGX_AGAIN) {
            if (ngx_handle_write_event(c->write, 0) != NGX_OK) {
                ngx_aigov_redis_fail(rds, "cannot wait to write", 0);
                return NGX_ERROR;
            }

            return NGX_OK;
        }

        if (n == NGX_ERROR) {
            ngx_aigov_redis_fail(rds, "send() failed", ngx_socket_errno);
            return NGX_ERROR;
        }

        rds->wpos += n;
    }

    rds->wpos = 0;
    rds->wlen = 0;

    return NGX_OK;
}


static void
ngx_aigov_redis_write_handler(ngx_event_t *wev)
{
    int                 err;
    socklen_t           len;
    ngx_connection_t   *c;
    ngx_aigov_redis_t  *rds;

    c = wev->data;
    rds = c->data;

    if (wev->timedout) {
        ngx_aigov_redis_fail(rds, "connect timed out", NGX_ETIMEDOUT);
        return;
    }

    if (wev->timer_set) {
        /* the connect timer: the first write event means connected */
        err = 0;
        len = sizeof(int);

        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, (void *) &err, &len)
            == -1)
        {
            err = ngx_socket_errno;
        }

        if (err) {
            ngx_aigov_redis_fail(rds, "connect() failed", err);
            return;
        }

        ngx_del_timer(wev);
    }

    (void) ngx_aigov_redis_flush(rds);
}


static void
ngx_aigov_redis_read_handler(ngx_event_t *rev)
{
    ssize_t             n;
    void               *reply;
    u_char              buf[4096];
    ngx_uint_t          epoch;
    ngx_connection_t   *c;
    ngx_aigov_redis_t  *rds;

    c = rev->data;
    rds = c->data;

    if (rev->timedout) {
        ngx_aigov_redis_fail(rds, "command timed out", NGX_ETIMEDOUT);
        return;
    }

    epoch = rds->epoch;

    for ( ;; ) {
        n = c->recv(c, buf, sizeof(buf));

        if (n == NGX_AGAIN) {
            break;
        }

        if (n == 0) {
            ngx_aigov_redis_fail(rds, "connection closed by redis", 0);
            return;
        }

        if (n == NGX_ERROR) {
            ngx_aigov_redis_fail(rds, "recv() failed", ngx_socket_errno);
            return;
        }

        if (redisReaderFeed(rds->reader, (char *) buf, n) != REDIS_OK) {
            ngx_aigov_redis_fail(rds, "out of memory", 0);
            return;
        }

        for ( ;; ) {
            reply = NULL;

            if (redisReaderGetReply(rds->reader, &reply) != REDIS_OK) {
                ngx_aigov_redis_fail(rds, "protocol error", 0);
                return;
            }

            if (reply == NULL) {
                break;
            }

            ngx_aigov_redis_dispatch(rds, reply);

            if (rds->epoch != epoch) {
                /* a handler failed or closed the connection */
                return;
            }
        }
    }

    if (ngx_handle_read_event(rev, 0) != NGX_OK) {
        ngx_aigov_redis_fail(rds, "cannot wait to read", 0);
    }
}


static void
ngx_aigov_redis_dispatch(ngx_aigov_redis_t *rds, redisReply *reply)
{
    void                       *data;
    ngx_queue_t                *q;
    ngx_aigov_redis_cmd_t      *cmd;
    ngx_aigov_redis_handler_pt  handler;

    if (ngx_queue_empty(&rds->pending)
        || (rds->on_message
            && reply->type == REDIS_REPLY_ARRAY
            && reply->elements == 3
            && reply->element[0]->type == REDIS_REPLY_STRING
            && reply->element[0]->len == 7
            && ngx_strncmp(reply->element[0]->str, "message", 7) == 0))
    {
        /* a message pushed to a subscriber */
        if (rds->on_message) {
            rds->on_message(rds->data, reply);
        }

        freeReplyObject(reply);
        return;
    }

    q = ngx_queue_head(&rds->pending);
    ngx_queue_remove(q);
    rds->npending--;

    cmd = ngx_queue_data(q, ngx_aigov_redis_cmd_t, queue);

    if (rds->c && rds->c->read->timer_set) {
        ngx_del_timer(rds->c->read);
    }

    if (rds->c && rds->npending) {
        ngx_add_timer(rds->c->read, rds->conf->command_timeout);
    }

    handler = cmd->handler;
    data = cmd->data;
    ngx_free(cmd);

    if (handler) {
        handler(data, reply);
    }

    freeReplyObject(reply);
}


static void
ngx_aigov_redis_fail(ngx_aigov_redis_t *rds, const char *why, ngx_err_t err)
{
    ngx_uint_t                  was_ready;
    ngx_queue_t                 pending, *q;
    ngx_aigov_redis_cmd_t      *cmd;
    ngx_aigov_redis_state_pt    on_state;

    was_ready = rds->ready;

    rds->ready = 0;
    rds->epoch++;

    ngx_snprintf(rds->last_error, sizeof(rds->last_error) - 1, "%s%Z", why);

    if (rds->c) {
        ngx_close_connection(rds->c);
        rds->c = NULL;
    }

    if (rds->reader) {
        redisReaderFree(rds->reader);
        rds->reader = NULL;
    }

    rds->wlen = 0;
    rds->wpos = 0;

    /* log on the first failure only: a down Redis must not flood the log */
    if (rds->failures++ == 0 && !rds->closing) {
        ngx_log_error((rds->quiet ? NGX_LOG_INFO : NGX_LOG_WARN), rds->log,
                      err,
                      "aigov redis %V (%s): %s; serving from shared memory, "
                      "retrying", &rds->conf->addr.name, rds->role, why);
    }

    /* fail the pending commands; handlers may queue new ones */

    ngx_queue_init(&pending);

    if (!ngx_queue_empty(&rds->pending)) {
        pending = rds->pending;
        pending.next->prev = &pending;
        pending.prev->next = &pending;
    }

    ngx_queue_init(&rds->pending);
    rds->npending = 0;

    while (!ngx_queue_empty(&pending)) {
        q = ngx_queue_head(&pending);
        ngx_queue_remove(q);

        cmd = ngx_queue_data(q, ngx_aigov_redis_cmd_t, queue);

        if (cmd->handler && !cmd->internal) {
            cmd->handler(cmd->data, NULL);
        }

        ngx_free(cmd);
    }

    if (rds->closing) {
        return;
    }

    if (!rds->reconnect.timer_set) {
        ngx_add_timer(&rds->reconnect, rds->backoff);
        rds->backoff = ngx_min(rds->backoff * 2, rds->conf->backoff_max);
    }

    on_state = rds->on_state;

    if (was_ready && on_state) {
        on_state(rds, 0);
    }
}


void
ngx_aigov_redis_close(ngx_aigov_redis_t *rds)
{
    rds->closing = 1;

    if (rds->reconnect.timer_set) {
        ngx_del_timer(&rds->reconnect);
    }

    ngx_aigov_redis_fail(rds, "worker exiting", 0);

    if (rds->wbuf) {
        ngx_free(rds->wbuf);
        rds->wbuf = NULL;
        rds->wsize = 0;
    }
}


ngx_int_t
ngx_aigov_redis_parse_addr(ngx_conf_t *cf, ngx_str_t *s, ngx_addr_t *addr)
{
    ngx_url_t  u;

    ngx_memzero(&u, sizeof(ngx_url_t));

    u.url = *s;
    u.default_port = 6379;

    if (ngx_parse_url(cf->pool, &u) != NGX_OK) {
        if (u.err) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "%s in redis address \"%V\"", u.err, s);
        }

        return NGX_ERROR;
    }

    if (u.naddrs == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "redis address \"%V\" did not resolve", s);
        return NGX_ERROR;
    }

    /* resolved once, at configuration time: never a DNS call in a worker */
    *addr = u.addrs[0];

    return NGX_OK;
}
