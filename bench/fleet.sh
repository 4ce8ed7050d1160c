#!/bin/sh
# What a fleet-wide (Redis) rate limit costs per request, next to a local
# one: plain proxy_pass, routing + a local per-key limit, routing + a
# synced fleet limit per key (global, deltas to Redis every 200 ms), and
# routing + a strict fleet limit per key (global=strict: a script in Redis
# for every request).  One nginx worker, a real redis-server on the same
# 2 cores, 10,000 API keys, the limits far above the load: this measures
# checking them, not refusals.  Same backend, same run, interleaved.
# No bar of its own: the synced limit should cost about what a local one
# does; the strict one pays a Redis round trip per request, by design.
#
#   bench/fleet.sh          (DURATION=2 ROUNDS=40 CONNS=32 by default)
set -e
: "${DURATION:=2}" "${ROUNDS:=40}"
. "$(dirname "$0")/lib.sh"

[ -f "$MODULE" ] || make -C "$ROOT" -s module

bench_redis
bench_backend 18401 18402

bench_nginx proxy "
    upstream chat_v1 { server 127.0.0.1:18401; keepalive 64; }
    upstream chat_v2 { server 127.0.0.1:18402; keepalive 64; }

    aigov_zone aigov:4m;
    aigov_upstream aigov;
    aigov_limit_zone limits:32m;
    aigov_redis 127.0.0.1:$REDIS_PORT;

    aigov_model chat {
        variant        v1 chat_v1 version=1.4.2 stable;
        variant        v2 chat_v2 version=1.5.0;
        canary         v2 10%;
        canary_sticky  \$http_x_api_key;
    }

    proxy_http_version 1.1;
    proxy_set_header Connection \"\";

    server {
        listen 127.0.0.1:18480;
        location / { proxy_pass http://chat_v1; }
    }

    server {
        listen 127.0.0.1:18481;
        location / {
            aigov_route model=chat;
            aigov_limit local zone=limits key=\$http_x_api_key rate=6000000r/m;
            proxy_pass http://aigov;
        }
    }

    server {
        listen 127.0.0.1:18482;
        location / {
            aigov_route model=chat;
            aigov_limit synced zone=limits key=\$http_x_api_key rate=6000000r/m
                        global sync=200ms;
            proxy_pass http://aigov;
        }
    }

    server {
        listen 127.0.0.1:18483;
        location / {
            aigov_route model=chat;
            aigov_limit strict zone=limits key=\$http_x_api_key rate=6000000r/m
                        global=strict redis_timeout=100ms;
            proxy_pass http://aigov;
        }
    }"

bench_keys_lua 10000

sleep 0.5
echo "fleet limits benchmark: ${ROUNDS} rounds of ${DURATION}s, ${CONNS} connections, 1 nginx worker, redis on port $REDIS_PORT"
bench_wrk http://127.0.0.1:18480/v1/chat/completions -s "$BENCH_TMP/keys.lua" > /dev/null  # warm up
bench_compare "proxy_pass" http://127.0.0.1:18480/v1/chat/completions \
              "routing+local-limit" http://127.0.0.1:18481/v1/chat/completions \
              "routing+synced-fleet-limit" http://127.0.0.1:18482/v1/chat/completions \
              "routing+strict-fleet-limit" http://127.0.0.1:18483/v1/chat/completions \
              -- -s "$BENCH_TMP/keys.lua"

grep -c -E '\[(error|crit|alert)\]' "$BENCH_TMP/proxy/logs/error.log" \
    | sed 's/^/  errors in the front nginx log: /'
redis-cli -p "$REDIS_PORT" dbsize | sed 's/^/  keys in redis: /'
