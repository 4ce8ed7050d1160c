#!/bin/sh
# Issue 5 bar (b): a cache hit, answered from shared memory, vs plain
# proxy_pass to the same backend, same nginx, same run, interleaved.
# Goal: rps ratio >= 1.0 (and p99 no worse).  A third contestant refreshes
# the entry on every request (aigov_cache_bypass): the cost of the miss
# path (canonical key, capture, store) on top of proxying.
#
# With perf(1) available it also prints the user-space instructions the
# proxy's nginx worker spends per request on each contestant (the backend's
# are not counted): a figure that does not swing with the machine's load.
#
#   bench/cache.sh             (DURATION=10 ROUNDS=5 CONNS=32 by default)
set -e
. "$(dirname "$0")/lib.sh"

[ -f "$MODULE" ] || make -C "$ROOT" -s module

bench_backend 18201 18202

bench_nginx proxy "
    upstream chat_v1 { server 127.0.0.1:18201; keepalive 64; }

    aigov_zone aigov:1m;
    aigov_cache_zone llm:16m;

    aigov_model chat {
        variant v1 chat_v1 version=1.4.2 stable;
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
            aigov_route openai;
            aigov_cache zone=llm ttl=1h;
            proxy_pass http://\$aigov_upstream;
        }
    }

    server {
        listen 127.0.0.1:18282;
        location / {
            aigov_route openai;
            aigov_cache zone=llm ttl=1h;
            aigov_cache_bypass 1;
            proxy_pass http://\$aigov_upstream;
        }
    }"

# the same OpenAI request every time: after the first, every one is a hit
cat > "$BENCH_TMP/chat.lua" <<'END'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"model":"chat","messages":[{"role":"user","content":"What is the capital of France?"}],"temperature":0.2,"max_tokens":64}'
END

sleep 0.5

# every contestant must answer 200 before it is measured
for port in 18280 18281 18282; do
    code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' \
        --data '{"model":"chat","messages":[{"role":"user","content":"What is the capital of France?"}],"temperature":0.2,"max_tokens":64}' \
        "http://127.0.0.1:$port/v1/chat/completions")
    [ "$code" = 200 ] || { echo "bench: port $port answered $code" >&2; exit 1; }
done
hit=$(curl -s -D - -o /dev/null -H 'Content-Type: application/json' \
    --data '{"model":"chat","messages":[{"role":"user","content":"What is the capital of France?"}],"temperature":0.2,"max_tokens":64}' \
    http://127.0.0.1:18281/v1/chat/completions | tr -d '\r' | awk -F': ' 'tolower($1) == "x-aigov-cache" { print $2 }')
[ "$hit" = HIT ] || { echo "bench: expected a cache hit on 18281, got '$hit'" >&2; exit 1; }

echo "cache benchmark: ${ROUNDS} rounds of ${DURATION}s, ${CONNS} connections, 1 nginx worker"
bench_wrk http://127.0.0.1:18280/v1/chat/completions -s "$BENCH_TMP/chat.lua" > /dev/null  # warm up
bench_compare "proxy_pass" http://127.0.0.1:18280/v1/chat/completions \
              "aigov_cache HIT" http://127.0.0.1:18281/v1/chat/completions \
              "aigov_cache refresh (miss path)" http://127.0.0.1:18282/v1/chat/completions \
              -- -s "$BENCH_TMP/chat.lua"

# instructions per request, if perf can count them here (not in most VMs)
worker=$(pgrep -P "$(cat "$BENCH_TMP/proxy.pid")" | head -1)
if command -v perf > /dev/null 2>&1 && [ -n "$worker" ]; then
    for c in "proxy_pass 18280" "aigov_cache_HIT 18281" "aigov_cache_refresh 18282"; do
        set -- $c
        perf stat -x, -e instructions:u -p "$worker" -o "$BENCH_TMP/perf.$2" -- \
            wrk -t1 -c8 -d3s -s "$BENCH_TMP/chat.lua" \
            "http://127.0.0.1:$2/v1/chat/completions" > "$BENCH_TMP/wrk.$2" 2>&1 \
            || true
        n=$(awk '/requests in/ { print $1 }' "$BENCH_TMP/wrk.$2")
        i=$(awk -F, '/instructions/ { print $1 }' "$BENCH_TMP/perf.$2" 2> /dev/null)
        case "$n$i" in
            ''|*[!0-9]*) echo "INSTRUCTIONS: perf cannot count instructions here"
                         break ;;
        esac
        echo "INSTRUCTIONS $1: $((i / n)) per request in the proxy's worker ($n requests)"
    done
fi
