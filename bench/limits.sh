#!/bin/sh
# Issue 4 bar, the rate-limit part: routing + two rate limits (requests per
# second and LLM tokens per minute, per API key, the token one reading the
# usage of every response) vs routing alone vs plain proxy_pass, same
# backend, same nginx, same run, interleaved.  The limits are set high:
# this measures what checking and charging them costs, not refusals.
# Goal (with the breaker and fallbacks, issue 4): rps ratio >= 0.95,
# p99 ratio <= 1.10 against plain proxy_pass.
#
#   bench/limits.sh             (DURATION=10 ROUNDS=5 CONNS=32 by default)
#   DURATION=2 ROUNDS=1 bench/limits.sh     a quick check that it runs
set -e
. "$(dirname "$0")/lib.sh"

[ -f "$MODULE" ] || make -C "$ROOT" -s module

bench_backend 18201 18202

bench_nginx proxy "
    upstream chat_v1 { server 127.0.0.1:18201; keepalive 64; }
    upstream chat_v2 { server 127.0.0.1:18202; keepalive 64; }

    aigov_zone aigov:1m;
    aigov_upstream aigov;
    aigov_limit_zone limits:32m;

    aigov_model chat {
        variant        v1 chat_v1 version=1.4.2 stable;
        variant        v2 chat_v2 version=1.5.0;
        canary         v2 10%;
        canary_sticky  \$http_x_api_key;
    }

    proxy_http_version 1.1;
    proxy_set_header Connection \"\";

    server {
        listen 127.0.0.1:18280;
        location / { proxy_pass http://chat_v1; }
    }

    server {
        listen 127.0.0.1:18281;
        location / {
            aigov_route model=chat;
            proxy_pass http://aigov;
        }
    }

    server {
        listen 127.0.0.1:18282;
        location / {
            aigov_route model=chat;
            aigov_limit rps zone=limits key=\$http_x_api_key rate=100000r/s;
            aigov_limit tpm zone=limits key=\$http_x_api_key rate=100000000t/m;
            proxy_pass http://aigov;
        }
    }"

bench_keys_lua 10000

sleep 0.5
echo "rate-limit benchmark: ${ROUNDS} rounds of ${DURATION}s, ${CONNS} connections, 1 nginx worker"
bench_wrk http://127.0.0.1:18280/v1/chat/completions -s "$BENCH_TMP/keys.lua" > /dev/null  # warm up
BENCH_BAR="0.95 1.10" bench_compare "proxy_pass" http://127.0.0.1:18280/v1/chat/completions \
              "routing" http://127.0.0.1:18281/v1/chat/completions \
              "routing+2limits" http://127.0.0.1:18282/v1/chat/completions \
              -- -s "$BENCH_TMP/keys.lua"

# every request must have passed: the limits are far above the load
grep -h "aigov_limit" "$BENCH_TMP"/proxy/logs/error.log && {
    echo "bench: a limit refused requests" >&2; exit 1; } || true
