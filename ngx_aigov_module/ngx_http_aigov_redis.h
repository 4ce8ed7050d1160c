/*
 * ngx_aigov Redis client: hiredis's RESP reader and command formatter over
 * nginx's own peer connection, on the worker's event loop.  Nothing here
 * ever blocks: connect, commands and replies are events; connect and
 * command timeouts are nginx timers (Debian's hiredis 0.14 has no timer
 * hook); a failed or timed-out connection fails every pending command and
 * reconnects with exponential backoff.  Commands are pipelined.
 */

#ifndef NGX_HTTP_AIGOV_REDIS_H_INCLUDED_
#define NGX_HTTP_AIGOV_REDIS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_event_connect.h>
#include <hiredis/hiredis.h>


typedef struct ngx_aigov_redis_s      ngx_aigov_redis_t;
typedef struct ngx_aigov_redis_cmd_s  ngx_aigov_redis_cmd_t;

/*
 * Called once per command: reply is NULL when the command failed (not
 * sent, timed out, connection lost); it is freed after the handler returns.
 */
typedef void (*ngx_aigov_redis_handler_pt)(void *data, redisReply *reply);

/* Connection state changes: ready = 1 after connect + AUTH + SELECT. */
typedef void (*ngx_aigov_redis_state_pt)(ngx_aigov_redis_t *rds,
    ngx_uint_t ready);


typedef struct {
    ngx_addr_t                 addr;          /* TCP or unix: */
    ngx_str_t                  password;
    ngx_int_t                  db;
    ngx_msec_t                 connect_timeout;
    ngx_msec_t                 command_timeout;
    ngx_msec_t                 backoff_max;
} ngx_aigov_redis_conf_t;


struct ngx_aigov_redis_cmd_s {
    ngx_queue_t                queue;
    ngx_aigov_redis_handler_pt handler;       /* NULL once cancelled */
    void                      *data;
    unsigned                   internal:1;    /* AUTH, SELECT, SUBSCRIBE */
};


struct ngx_aigov_redis_s {
    ngx_aigov_redis_conf_t    *conf;
    ngx_log_t                 *log;
    const char                *role;          /* "commands", "subscriber" */

    ngx_peer_connection_t      pc;
    ngx_connection_t          *c;
    void                      *reader;        /* redisReader */

    u_char                    *wbuf;          /* pipelined, unsent commands */
    size_t                     wlen;
    size_t                     wpos;
    size_t                     wsize;

    ngx_queue_t                pending;       /* sent, awaiting replies */
    ngx_uint_t                 npending;
    ngx_uint_t                 handshake;     /* internal replies to await */

    ngx_event_t                reconnect;
    ngx_msec_t                 backoff;

    ngx_aigov_redis_state_pt   on_state;
    ngx_aigov_redis_handler_pt on_message;    /* subscriber pushes */
    void                      *data;

    ngx_str_t                 *channels;      /* subscriber */
    ngx_uint_t                 nchannels;

    ngx_uint_t                 ready;
    ngx_uint_t                 failures;      /* since the last success */
    u_char                     last_error[128];
    ngx_uint_t                 closing;       /* worker exit */
    ngx_uint_t                 quiet;         /* outages at info level */
    ngx_uint_t                 epoch;         /* bumps on every close */
};


ngx_aigov_redis_t *ngx_aigov_redis_create(ngx_cycle_t *cycle,
    ngx_aigov_redis_conf_t *conf, const char *role);
void ngx_aigov_redis_connect(ngx_aigov_redis_t *rds);
void ngx_aigov_redis_close(ngx_aigov_redis_t *rds);

/*
 * Queues a command.  Returns NULL (and does not call the handler) when the
 * connection is not ready: the caller decides what failing open or closed
 * means for it.
 */
ngx_aigov_redis_cmd_t *ngx_aigov_redis_send(ngx_aigov_redis_t *rds,
    ngx_aigov_redis_handler_pt handler, void *data, int argc,
    const char **argv, const size_t *argvlen);

/* The handler will not be called; the command still completes. */
void ngx_aigov_redis_cancel(ngx_aigov_redis_cmd_t *cmd);

/* Parses "host:port", "unix:/path" with an optional default port. */
ngx_int_t ngx_aigov_redis_parse_addr(ngx_conf_t *cf, ngx_str_t *s,
    ngx_addr_t *addr);


#endif /* NGX_HTTP_AIGOV_REDIS_H_INCLUDED_ */
