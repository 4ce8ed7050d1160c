# ngx_aigov benchmarks: shared helpers (sourced, POSIX sh).
#
# Every benchmark runs plain proxy_pass and the module against the same
# backend in the same run, interleaved, and prints ratios: absolute numbers
# on a shared 2-core machine swing by tens of percent between runs.

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH_TMP=${BENCH_TMP:-$(mktemp -d /tmp/aigov-bench.XXXXXX)}
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-5}
CONNS=${CONNS:-32}
THREADS=${THREADS:-1}
MODULE=${AIGOV_MODULE:-$ROOT/build/ngx_http_aigov_module.so}

bench_cleanup() {
    for pidf in "$BENCH_TMP"/*.pid; do
        [ -f "$pidf" ] || continue
        case $pidf in
            */redis-server.pid) kill -CONT "$(cat "$pidf")" 2>/dev/null || true
                          kill -TERM "$(cat "$pidf")" 2>/dev/null || true ;;
            *)            kill -QUIT "$(cat "$pidf")" 2>/dev/null || true ;;
        esac
    done
    sleep 0.5
    [ -n "$BENCH_KEEP" ] || rm -rf "$BENCH_TMP"
}

trap bench_cleanup EXIT INT TERM

# bench_nginx NAME CONF_BODY: starts an nginx with one worker
bench_nginx() {
    name=$1
    mkdir -p "$BENCH_TMP/$name/logs"
    cat > "$BENCH_TMP/$name/nginx.conf" <<END
$( [ "$name" = backend ] || echo "load_module $MODULE;" )
worker_processes 1;
error_log $BENCH_TMP/$name/logs/error.log warn;
pid $BENCH_TMP/$name.pid;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $BENCH_TMP/$name/body;
    proxy_temp_path $BENCH_TMP/$name/proxy;
    fastcgi_temp_path $BENCH_TMP/$name/fastcgi;
    uwsgi_temp_path $BENCH_TMP/$name/uwsgi;
    scgi_temp_path $BENCH_TMP/$name/scgi;
    keepalive_requests 1000000;
$2
}
END
    nginx -p "$BENCH_TMP/$name" -c "$BENCH_TMP/$name/nginx.conf" \
        || { echo "bench: nginx $name failed to start" >&2; exit 1; }
}

# bench_redis: a redis-server on a spare port ($REDIS_PORT), no persistence,
# its pid in redis-server.pid (bench_cleanup stops it)
bench_redis() {
    REDIS_PORT=${REDIS_PORT:-$((20000 + $$ % 10000))}
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' \
        --appendonly no --daemonize no --logfile "$BENCH_TMP/redis.log" &
    echo $! > "$BENCH_TMP/redis-server.pid"
    i=0
    until redis-cli -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG \
          && kill -0 "$(cat "$BENCH_TMP/redis-server.pid")" 2>/dev/null; do
        i=$((i + 1)); [ $i -lt 50 ] || { echo "bench: redis-server did not start on $REDIS_PORT" >&2; exit 1; }
        sleep 0.1
    done
}

# the backend: a fast static JSON "model" so that the proxy is measured
bench_backend() {
    bench_nginx backend "
    server {
        listen 127.0.0.1:${1:-18001};
        listen 127.0.0.1:${2:-18002};
        location / {
            default_type application/json;
            return 200 '{\"id\":\"x\",\"object\":\"chat.completion\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"hello\"}}],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":1,\"total_tokens\":6}}';
        }
    }"
}

# CPU time (user + system, clock ticks) of the worker of the nginx named
# $1, "proxy" by default (the front one in every benchmark but redis.sh),
# or nothing
bench_cpu() {
    [ -f "$BENCH_TMP/${1:-proxy}.pid" ] || return 0
    w=$(pgrep -P "$(cat "$BENCH_TMP/${1:-proxy}.pid")" | head -n 1)
    [ -n "$w" ] && awk '{ print $14 + $15 }' "/proc/$w/stat" 2>/dev/null
}

# bench_wrk URL [wrk args...] -> prints
# "rps p99_ms errors cpu_us_per_request all_cpu_us_per_request": the front
# nginx worker's CPU time per request (0 if unknown), and that of the front
# worker, the backend's worker and wrk together: on a machine they share,
# what a request costs it
bench_wrk() {
    url=$1
    shift
    c0=$(bench_cpu)
    b0=$(bench_cpu backend)
    # the last line: wrk's user and system time ("times" in the subshell)
    out=$( (wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --latency "$@" "$url" 2>&1;
            times) )
    c1=$(bench_cpu)
    b1=$(bench_cpu backend)
    reqs=$(echo "$out" | awk '/requests in/ { print $1 }')
    rps=$(echo "$out" | awk '/^Requests\/sec:/ { print $2 }')
    p99=$(echo "$out" | awk '$1 == "99%" {
        v = $2; u = v; gsub(/[0-9.]/, "", u); sub(/[a-z]+$/, "", v);
        if (u == "us") v = v / 1000; else if (u == "s") v = v * 1000;
        print v }')
    non2xx=$(echo "$out" | awk '/Non-2xx/ { print $NF }')
    sockerr=$(echo "$out" | awk '/Socket errors/ {
        gsub(/,/, ""); print $4 + $6 + $8 + $10 }')
    cpu=$(awk -v a="${c0:-0}" -v b="${c1:-0}" -v n="${reqs:-0}" \
              -v t="$(getconf CLK_TCK)" 'BEGIN {
        printf "%.3f", (n > 0 && b > a) ? (b - a) / t / n * 1e6 : 0 }')
    all=$(echo "$out" | tail -n 1 | awk -v a="${c0:-0}" -v b="${c1:-0}" \
              -v ba="${b0:-0}" -v bb="${b1:-0}" -v hb="${b1:+1}" -v n="${reqs:-0}" \
              -v t="$(getconf CLK_TCK)" '{
        w = 0
        for (i = 1; i <= 2; i++) {      # "0m1.230000s 0m0.450000s"
            split($i, m, "m"); sub(/s$/, "", m[2]); w += m[1] * 60 + m[2]
        }
        # a backend may have had nothing to do (a cache hit), not be known
        ok = (n > 0 && b > a && hb == 1 && bb >= ba)
        printf "%.3f", ok ? ((b - a + bb - ba) / t + w) / n * 1e6 : 0 }')
    echo "${rps:-0} ${p99:-0} $(( ${non2xx:-0} + ${sockerr:-0} )) $cpu ${all:-0}"
}

# bench_keys_lua N: $BENCH_TMP/keys.lua, a wrk script that POSTs a chat
# completion with one of N API keys (X-Api-Key: user-0 .. user-(N-1)) in
# turn, as many clients do
bench_keys_lua() {
    cat > "$BENCH_TMP/keys.lua" <<END
-- $1 API keys, as with many clients
local n = 0
request = function()
    n = n + 1
    return wrk.format("POST", nil, {
        ["Content-Type"] = "application/json",
        ["X-Api-Key"] = "user-" .. (n % $1)
    }, '{"model":"chat","messages":[{"role":"user","content":"hi"}]}')
end
END
}

median() {
    median_ci | cut -d' ' -f1
}

# median_ci: "median low high", low and high the order statistics that hold
# the median with at least 95 % confidence whatever the distribution (the
# k-th from each end, k the largest with P(Binomial(n, 1/2) < k) <= 2.5 %);
# "median - -" with fewer than 6 values, too few for such an interval
median_ci() {
    sort -g | awk '{ a[NR] = $1 } END {
        n = NR
        m = (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
        p = 2 ^ -n; cdf = p; k = 0
        # cdf = P(B <= j), p = P(B = j); k: the largest with P(B <= k - 1) <= 0.025
        for (j = 0; j < n && cdf <= 0.025; j++) {
            k = j + 1; p = p * (n - j) / (j + 1); cdf += p
        }
        if (k < 1) print m, "-", "-"; else print m, a[k], a[n + 1 - k] }'
}

# bench_compare LABEL URL [LABEL URL ...] -- [wrk args...]
# The first pair is the baseline.  Runs every contestant once per round,
# ROUNDS rounds, interleaved (odd rounds in order, even ones backwards);
# prints medians and each one's ratios to the baseline:
# "RESULT <label> vs <baseline>: rps ratio R, p99 ratio P, ...".
bench_compare() {
    labels= n=0
    while [ $# -gt 0 ] && [ "$1" != -- ]; do
        n=$((n + 1))
        eval "label_$n=\$1 url_$n=\$2"
        : > "$BENCH_TMP/res.$n"
        shift 2
    done
    [ "${1:-}" = -- ] && shift
    r=1
    while [ $r -le "$ROUNDS" ]; do
        line="  round $r:"
        # odd rounds in order, even rounds backwards: a drift of the
        # machine's speed within a pair of rounds favours no contestant
        if [ $((r % 2)) -eq 1 ]; then order=$(seq 1 $n); else order=$(seq $n -1 1); fi
        for i in $order; do
            eval "url=\$url_$i label=\$label_$i"
            res=$(bench_wrk "$url" "$@")
            echo "$res" > "$BENCH_TMP/res.$i.$r"
            line="$line $label $(echo "$res" | cut -d' ' -f1) rps p99 $(echo "$res" | cut -d' ' -f2) ms cpu $(echo "$res" | cut -d' ' -f4) us/req (all $(echo "$res" | cut -d' ' -f5));"
        done
        i=1
        while [ $i -le $n ]; do
            cat "$BENCH_TMP/res.$i.$r" >> "$BENCH_TMP/res.$i"
            i=$((i + 1))
        done
        echo "$line"
        r=$((r + 1))
    done
    base_rps=$(cut -d' ' -f1 "$BENCH_TMP/res.1" | median)
    base_p99=$(cut -d' ' -f2 "$BENCH_TMP/res.1" | median)
    i=1
    while [ $i -le $n ]; do
        eval "label=\$label_$i"
        rps=$(cut -d' ' -f1 "$BENCH_TMP/res.$i" | median)
        p99=$(cut -d' ' -f2 "$BENCH_TMP/res.$i" | median)
        errs=$(awk '{ s += $3 } END { print s + 0 }' "$BENCH_TMP/res.$i")
        echo "  median $label: $rps rps, p99 $p99 ms, failed requests $errs"
        if [ $i -gt 1 ]; then
            # the median of each round's ratio: the machine's speed drifts
            # between rounds more than within one
            rr=$(paste -d' ' "$BENCH_TMP/res.1" "$BENCH_TMP/res.$i" \
                 | awk '{ print $6 / $1 }' | median_ci)
            pr=$(paste -d' ' "$BENCH_TMP/res.1" "$BENCH_TMP/res.$i" \
                 | awk '{ print ($2 > 0 ? $7 / $2 : 0) }' | median_ci)
            cr=$(paste -d' ' "$BENCH_TMP/res.1" "$BENCH_TMP/res.$i" \
                 | awk '{ print ($4 > 0 ? $9 / $4 : 0) }' | median)
            ar=$(paste -d' ' "$BENCH_TMP/res.1" "$BENCH_TMP/res.$i" \
                 | awk '{ print ($5 > 0 ? $10 / $5 : 0) }' | median)
            # the medians, their 95 % intervals, and with BENCH_BAR="R P"
            # (rps ratio >= R, p99 ratio <= P) a verdict: met when both
            # intervals are on the right side of the bar, not met when
            # either is on the wrong side, else undecided
            echo "$rr $pr" | awk -v e="$errs" -v la="$label_1" -v lb="$label" \
                -v bar="${BENCH_BAR:-}" '{
                ci = ($2 == "-") ? "" : sprintf(" [%.3f, %.3f]", $2, $3)
                cp = ($5 == "-") ? "" : sprintf(" [%.3f, %.3f]", $5, $6)
                printf "RESULT %s vs %s: rps ratio %.3f%s, p99 ratio %.3f%s (medians of per-round ratios, 95 %% intervals), failed requests %d\n",
                       lb, la, $1, ci, $4, cp, e
                if (bar != "" && $2 != "-" && $5 != "-") {
                    split(bar, b, " ")
                    if ($2 >= b[1] && $6 <= b[2]) v = "met"
                    else if ($3 < b[1] || $5 > b[2]) v = "not met"
                    else v = "undecided (an interval straddles the bar)"
                    printf "RESULT %s vs %s: bar rps ratio >= %s, p99 ratio <= %s: %s\n",
                           lb, la, b[1], b[2], v
                } }'
            # the proxy's CPU per request moves far less with the machine's
            # speed than the rates do
            [ "$cr" = 0 ] || awk -v cr="$cr" -v la="$label_1" -v lb="$label" 'BEGIN {
                printf "RESULT %s vs %s: CPU per request ratio %.3f (the front nginx worker, user + system; median of per-round ratios)\n",
                       lb, la, cr }'
            # and of the three processes the machine runs: a slower front
            # costs wrk and the backend more system calls per request
            [ "$ar" = 0 ] || awk -v ar="$ar" -v la="$label_1" -v lb="$label" 'BEGIN {
                printf "RESULT %s vs %s: CPU per request ratio %.3f (front nginx worker + backend nginx worker + wrk; median of per-round ratios)\n",
                       lb, la, ar }'
        fi
        i=$((i + 1))
    done
}
