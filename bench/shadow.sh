#!/bin/sh
# Issue 5 bar (a): shadow traffic to a backend that takes 500 ms must not
# slow the primary: keepalive clients, primary rps ratio >= 0.95 and p99
# within 5 % of the same route without a shadow.  Stock nginx "mirror" to
# the same slow backend is measured in the same run for comparison: it
# holds each client's keepalive connection until the mirror answers.
#
#   bench/shadow.sh        (DURATION=10 ROUNDS=5 CONNS=32 by default)
#   SHADOW_PERCENT=10% SHADOW_CONCURRENT=64 bench/shadow.sh
#
# Contestants, one nginx worker, same fast backend for the primary:
#   aigov            aigov_route, no shadow (the baseline)
#   aigov+shadow     the same plus "shadow v2 SHADOW_PERCENT" to the slow
#                    backend (bounded by max_concurrent: the rest is dropped
#                    and counted, printed at the end)
#   proxy+mirror     plain proxy_pass plus "mirror" of every request to the
#                    slow backend
set -e
. "$(dirname "$0")/lib.sh"

SHADOW_PERCENT=${SHADOW_PERCENT:-100%}
SHADOW_CONCURRENT=${SHADOW_CONCURRENT:-64}
SLOW_MS=${SLOW_MS:-500}

[ -f "$MODULE" ] || make -C "$ROOT" -s module

# The slow backend: answers every request after SLOW_MS, HTTP/1.1 with
# keepalive, on asyncio so that its own CPU (which competes with nginx on a
# small machine) stays far below that of a thread per connection.
cat > "$BENCH_TMP/slow.py" <<'END'
import asyncio, sys

DELAY = int(sys.argv[2]) / 1000.0
BODY = (b'{"id":"slow","object":"chat.completion","choices":[{"index":0,'
        b'"message":{"role":"assistant","content":"hello"}}],'
        b'"usage":{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6}}')
HEAD = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n" % len(BODY))

async def serve(reader, writer):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length, close = 0, False
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"connection" and value.strip().lower() == b"close":
                    close = True
            if length:
                await reader.readexactly(length)
            await asyncio.sleep(DELAY)
            writer.write(HEAD + (b"Connection: close\r\n" if close else b"")
                         + b"\r\n" + BODY)
            await writer.drain()
            if close:
                break
    except (asyncio.IncompleteReadError, ConnectionError, ValueError):
        pass
    writer.close()

async def main():
    server = await asyncio.start_server(serve, "127.0.0.1", int(sys.argv[1]),
                                        backlog=1024)
    async with server:
        await server.serve_forever()

asyncio.run(main())
END
python3 "$BENCH_TMP/slow.py" 18003 "$SLOW_MS" > "$BENCH_TMP/slow.log" 2>&1 &
SLOW_PID=$!
trap 'kill -TERM $SLOW_PID 2>/dev/null || true; bench_cleanup' EXIT INT TERM

bench_backend 18001 18002

bench_nginx proxy "
    upstream chat_v1 { server 127.0.0.1:18001; keepalive 64; }
    upstream slow    { server 127.0.0.1:18003; keepalive 64; }

    aigov_zone aigov:1m;

    aigov_model plain {
        variant  v1 chat_v1 version=1.4.2 stable;
        variant  v2 slow    version=2.0.0;
    }

    aigov_model shadowed {
        variant  v1 chat_v1 version=1.4.2 stable;
        variant  v2 slow    version=2.0.0;
        shadow   v2 $SHADOW_PERCENT max_concurrent=$SHADOW_CONCURRENT
                 timeout=5s compare=\$.object;
    }

    proxy_http_version 1.1;
    proxy_set_header Connection \"\";

    server {
        listen 127.0.0.1:18080;
        location / {
            aigov_route model=plain;
            proxy_pass http://\$aigov_upstream;
        }
    }

    server {
        listen 127.0.0.1:18081;
        location / {
            aigov_route model=shadowed;
            proxy_pass http://\$aigov_upstream;
        }
        location = /status { aigov_status; }
    }

    server {
        listen 127.0.0.1:18082;
        location / {
            mirror /mirror;
            proxy_pass http://chat_v1;
        }
        location = /mirror {
            internal;
            proxy_pass http://slow\$request_uri;
        }
    }"

cat > "$BENCH_TMP/post.lua" <<'END'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"model":"chat","messages":[{"role":"user","content":"hello there"}]}'
END

# wait for the slow backend
i=0
until curl -s -o /dev/null http://127.0.0.1:18003/; do
    i=$((i + 1)); [ $i -lt 50 ] || { echo "bench: slow backend did not start" >&2; exit 1; }
    sleep 0.1
done

echo "shadow benchmark: ${ROUNDS} rounds of ${DURATION}s, ${CONNS} keepalive connections, 1 nginx worker;"
echo "  shadow $SHADOW_PERCENT max_concurrent=$SHADOW_CONCURRENT to a backend answering after ${SLOW_MS} ms"
bench_wrk http://127.0.0.1:18080/v1/chat/completions -s "$BENCH_TMP/post.lua" > /dev/null  # warm up
bench_compare "aigov" http://127.0.0.1:18080/v1/chat/completions \
              "aigov+shadow" http://127.0.0.1:18081/v1/chat/completions \
              "proxy+mirror" http://127.0.0.1:18082/v1/chat/completions \
              -- -s "$BENCH_TMP/post.lua"

# let the last shadows finish, then show what they did
sleep $(( SLOW_MS / 1000 + 1 ))
curl -s http://127.0.0.1:18081/status | python3 -c '
import json, sys
doc = json.load(sys.stdin)
for m in doc["models"]:
    s = m.get("shadow")
    if not s:
        continue
    keys = ("sampled", "sent", "completed", "errors", "timeouts",
            "dropped_concurrency", "dropped_body_too_large", "compared",
            "status_match", "agreed", "disagreed", "in_flight")
    print("  shadow counters: " + ", ".join("%s %s" % (k, s[k]) for k in keys))
    print("  shadow latency: primary avg %.1f ms, shadow avg %.1f ms"
          % (s["latency_ms"]["primary_avg"], s["latency_ms"]["shadow_avg"]))
'
