#!/bin/sh
# Issue 3 bar: routing with Redis configured vs without, and with Redis
# SIGSTOPped in the middle of a run.  Zero failed requests; rps ratio
# >= 0.95.  Same backend, same run, interleaved rounds.
#
#   bench/redis.sh             (DURATION=10 ROUNDS=3 CONNS=32 by default)
set -e
ROUNDS=${ROUNDS:-3}
. "$(dirname "$0")/lib.sh"

[ -f "$MODULE" ] || make -C "$ROOT" -s module

bench_redis

bench_backend 18001 18002

models='
    upstream chat_v1 { server 127.0.0.1:18001; keepalive 64; }
    upstream chat_v2 { server 127.0.0.1:18002; keepalive 64; }
    aigov_zone aigov:1m;
    aigov_upstream aigov;
    aigov_model chat {
        variant        v1 chat_v1 version=1.4.2 stable;
        variant        v2 chat_v2 version=1.5.0;
        canary         v2 10%;
        canary_sticky  $http_x_api_key;
    }
    proxy_http_version 1.1;
    proxy_set_header Connection "";'

bench_nginx noredis "$models
    server {
        listen 127.0.0.1:18090;
        location / { aigov_route model=chat; proxy_pass http://aigov; }
    }"

bench_nginx withredis "$models
    aigov_redis 127.0.0.1:$REDIS_PORT sync_interval=1s;
    server {
        listen 127.0.0.1:18091;
        location / { aigov_route model=chat; proxy_pass http://aigov; }
    }"

cat > "$BENCH_TMP/keys.lua" <<'END'
local n = 0
request = function()
    n = n + 1
    return wrk.format("GET", nil, { ["X-Api-Key"] = "user-" .. (n % 100000) })
end
END

sleep 1
echo "redis benchmark: ${ROUNDS} rounds of ${DURATION}s, ${CONNS} connections, 1 nginx worker each"
bench_wrk http://127.0.0.1:18090/ -s "$BENCH_TMP/keys.lua" > /dev/null

: > "$BENCH_TMP/none"; : > "$BENCH_TMP/with"; : > "$BENCH_TMP/stop"
r=1
while [ "$r" -le "$ROUNDS" ]; do
    a=$(bench_wrk http://127.0.0.1:18090/ -s "$BENCH_TMP/keys.lua")
    b=$(bench_wrk http://127.0.0.1:18091/ -s "$BENCH_TMP/keys.lua")
    # SIGSTOP Redis halfway through the run, SIGCONT after it
    ( sleep $((DURATION / 2)); kill -STOP "$(cat "$BENCH_TMP/redis-server.pid")" ) &
    stopper=$!
    c=$(bench_wrk http://127.0.0.1:18091/ -s "$BENCH_TMP/keys.lua")
    wait "$stopper"   # not a bare wait: redis-server is a child too
    kill -CONT "$(cat "$BENCH_TMP/redis-server.pid")"
    echo "$a" >> "$BENCH_TMP/none"; echo "$b" >> "$BENCH_TMP/with"; echo "$c" >> "$BENCH_TMP/stop"
    echo "  round $r: no redis $(echo "$a" | cut -d' ' -f1) rps; redis $(echo "$b" | cut -d' ' -f1) rps; redis stopped mid-run $(echo "$c" | cut -d' ' -f1) rps (failed: $(echo "$a" | cut -d' ' -f3)/$(echo "$b" | cut -d' ' -f3)/$(echo "$c" | cut -d' ' -f3))"
    sleep 2   # let the node reconnect
    r=$((r + 1))
done

for f in none with stop; do
    eval "rps_$f=\$(cut -d' ' -f1 \"\$BENCH_TMP/$f\" | median)"
    eval "p99_$f=\$(cut -d' ' -f2 \"\$BENCH_TMP/$f\" | median)"
    eval "err_$f=\$(awk '{ s += \$3 } END { print s + 0 }' \"\$BENCH_TMP/$f\")"
done

grep -c "serving from shared memory" "$BENCH_TMP/withredis/logs/error.log" \
    | sed 's/^/  redis outages logged by the node: /'
ratio() {   # FILE COLUMN: the median over rounds of FILE's / none's
    paste -d' ' "$BENCH_TMP/none" "$BENCH_TMP/$1" \
        | awk -v c="$2" '{ print $(c + NF / 2) / $c }' | median
}

printf 'RESULT redis vs no redis: rps ratio %.3f, p99 ratio %.3f (medians of per-round ratios), failed requests %d\n' \
    "$(ratio with 1)" "$(ratio with 2)" "$err_with"
printf 'RESULT redis stopped mid-run vs no redis: rps ratio %.3f, p99 ratio %.3f (medians of per-round ratios), failed requests %d\n' \
    "$(ratio stop 1)" "$(ratio stop 2)" "$err_stop"
