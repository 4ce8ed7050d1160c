#!/bin/sh
# Issue 4 bar: routing + circuit breaker + two rate limits + fallback rules
# vs plain proxy_pass, same backend, same nginx, same run, interleaved.  Two
# pairs of limits per API key: requests per second and per minute (the
# issue's example), and requests per second with LLM tokens per minute (the
# heavier pair: the usage of every answer is read).  The limits
# are far above the load and the breaker stays closed: this measures what
# checking them costs on every request, not refusals.  A fourth contestant
# is the first pair with aigov_limit_headers off (the limits' headers on
# refusals only): the headers cost the client that parses them, here wrk
# on the same two cores, about as much as the limits cost nginx.  A fifth
# is plain proxy_pass again (an A/A control): its ratios to the first are
# what this run's noise alone gives.
# Goal: rps ratio >= 0.95, p99 ratio <= 1.10.  Each ratio is the median of
# the rounds' ratios, with a 95 % interval for it (distribution-free); the
# verdict is "met" when both intervals are on the right side of the bar,
# "not met" when one is on the wrong side, else "undecided".
#
#   bench/resilience.sh          (DURATION=2 ROUNDS=40 CONNS=32 by default)
#   DURATION=1 ROUNDS=6 bench/resilience.sh     a quick check that it runs
set -e
: "${DURATION:=2}" "${ROUNDS:=40}"
. "$(dirname "$0")/lib.sh"

[ -f "$MODULE" ] || make -C "$ROOT" -s module

bench_backend 18301 18302

cp "$ROOT/conf/rules-example.json" "$BENCH_TMP/rules.json"

bench_nginx proxy "
    upstream chat_v1 { server 127.0.0.1:18301; keepalive 64; }
    upstream chat_v2 { server 127.0.0.1:18302; keepalive 64; }

    aigov_zone aigov:4m;
    aigov_upstream aigov;
    aigov_limit_zone limits:32m;

    aigov_model chat {
        variant        v1 chat_v1 version=1.4.2 stable;
        variant        v2 chat_v2 version=1.5.0;
        canary         v2 10%;
        canary_sticky  \$http_x_api_key;
        breaker        window=count:100 minimum_calls=20 failure_rate=50%
                       slow=2s:80% consecutive_failures=10 open=30s;
        fallback       v1;
        fallback_rules $BENCH_TMP/rules.json;
    }

    proxy_http_version 1.1;
    proxy_set_header Connection \"\";

    server {
        listen 127.0.0.1:18380;
        location / { proxy_pass http://chat_v1; }
    }

    # the same again: the control arm, its ratio to the first is the
    # run's noise (an A/A test)
    server {
        listen 127.0.0.1:18383;
        location / { proxy_pass http://chat_v1; }
    }

    server {
        listen 127.0.0.1:18381;
        location / {
            aigov_route model=chat;
            aigov_limit rps zone=limits key=\$http_x_api_key rate=100000r/s;
            aigov_limit tpm zone=limits key=\$http_x_api_key rate=100000000t/m;
            proxy_pass http://aigov;
        }
    }

    server {
        listen 127.0.0.1:18382;
        location / {
            aigov_route model=chat;
            aigov_limit rps zone=limits key=\$http_x_api_key rate=100000r/s;
            aigov_limit rpm zone=limits key=\$http_x_api_key rate=6000000r/m;
            proxy_pass http://aigov;
        }
    }

    server {
        listen 127.0.0.1:18384;
        location / {
            aigov_route model=chat;
            aigov_limit rps zone=limits key=\$http_x_api_key rate=100000r/s;
            aigov_limit rpm zone=limits key=\$http_x_api_key rate=6000000r/m;
            aigov_limit_headers off;
            proxy_pass http://aigov;
        }
    }"

bench_keys_lua 10000

sleep 0.5
echo "resilience benchmark: ${ROUNDS} rounds of ${DURATION}s, ${CONNS} connections, 1 nginx worker"
bench_wrk http://127.0.0.1:18380/v1/chat/completions -s "$BENCH_TMP/keys.lua" > /dev/null  # warm up
BENCH_BAR="0.95 1.10" bench_compare "proxy_pass" http://127.0.0.1:18380/v1/chat/completions \
              "routing+breaker+rps+rpm+rules" http://127.0.0.1:18382/v1/chat/completions \
              "routing+breaker+rps+tpm+rules" http://127.0.0.1:18381/v1/chat/completions \
              "routing+breaker+rps+rpm+rules,headers-on-refusals" http://127.0.0.1:18384/v1/chat/completions \
              "proxy_pass-again" http://127.0.0.1:18383/v1/chat/completions \
              -- -s "$BENCH_TMP/keys.lua"
