#!/bin/sh
# Issue 4: canary + sticky routing with a circuit breaker on every variant
# vs the same routing without one vs plain proxy_pass, same backend, same
# nginx, same run, interleaved.  The breaker costs one lock/unlock pair of
# the zone's mutex per request (log; decide too when the breaker is not
# closed or the clock moved on since its last call).  Goal with routing +
# breaker (+ the rate limits, still to come): rps ratio >= 0.95 and p99
# ratio <= 1.10 against plain proxy_pass.
#
#   bench/breaker.sh             (DURATION=10 ROUNDS=5 CONNS=32 by default)
set -e
. "$(dirname "$0")/lib.sh"

[ -f "$MODULE" ] || make -C "$ROOT" -s module

bench_backend 18001 18002

bench_nginx proxy "
    upstream chat_v1 { server 127.0.0.1:18001; keepalive 64; }
    upstream chat_v2 { server 127.0.0.1:18002; keepalive 64; }

    aigov_zone aigov:1m;

    aigov_model chat {
        variant        v1 chat_v1 version=1.4.2 stable;
        variant        v2 chat_v2 version=1.5.0;
        canary         v2 10%;
        canary_sticky  \$http_x_api_key;
    }

    aigov_model guarded {
        variant        v1 chat_v1 version=1.4.2 stable;
        variant        v2 chat_v2 version=1.5.0;
        canary         v2 10%;
        canary_sticky  \$http_x_api_key;
        breaker        window=count:100 minimum_calls=20 failure_rate=50%
                       slow=2s:80% consecutive_failures=10 open=30s;
    }

    proxy_http_version 1.1;
    proxy_set_header Connection \"\";

    server {
        listen 127.0.0.1:18080;
        location / { proxy_pass http://chat_v1; }
    }

    server {
        listen 127.0.0.1:18081;
        location / {
            aigov_route model=chat;
            proxy_pass http://\$aigov_upstream;
        }
    }

    server {
        listen 127.0.0.1:18082;
        location / {
            aigov_route model=guarded;
            proxy_pass http://\$aigov_upstream;
        }
    }"

bench_keys_lua 100000

sleep 0.5
echo "breaker benchmark: ${ROUNDS} rounds of ${DURATION}s, ${CONNS} connections, 1 nginx worker"
bench_wrk http://127.0.0.1:18080/v1/chat/completions -s "$BENCH_TMP/keys.lua" > /dev/null  # warm up
bench_compare "proxy_pass" http://127.0.0.1:18080/v1/chat/completions \
              "canary+sticky" http://127.0.0.1:18081/v1/chat/completions \
              "canary+sticky+breaker" http://127.0.0.1:18082/v1/chat/completions \
              -- -s "$BENCH_TMP/keys.lua"
