#!/usr/bin/perl
# Local rate limits (aigov_limit, GCRA in an aigov_limit_zone): sequences of
# requests and the statuses they get; burst and refill; two limits on one
# request (a request one refuses takes nothing from the other); keys from
# a header, the client address, an argument, a map, a constant, an empty key;
# the exact RateLimit / RateLimit-Policy / x-ratelimit-* / Retry-After
# headers; token limits charged from the usage of JSON and SSE responses;
# dry run; LRU eviction when the zone is full; state kept across a reload;
# nginx -t errors.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use AigovTest;
use Time::HiRes qw(time sleep);

start_fixture(name => 'stable', version => '1.4.2');

my $CONF = <<'EOF';
    upstream u_stable { server 127.0.0.1:%%FIXTURE_stable%%; keepalive 16; }

    aigov_zone        az:1m;
    aigov_limit_zone  rl:1m;
    aigov_limit_zone  rl2:64k;
    aigov_limit_zone  tiny:32k;
    aigov_limit_zone  keep:32k;
    aigov_limit_zone  grp:32k;

    aigov_model chat { variant v1 u_stable version=1.4.2 stable; }

    map $http_x_tier $tier_key { premium ""; default $http_x_key; }

    log_format lim '$msec $status "$aigov_limit" "$aigov_limit_policy" '
                   '"$aigov_limit_tokens" $request_uri';

    server {
        listen 127.0.0.1:%%PORT%%;
        access_log %%TMP%%/logs/limits.log lim;
        client_body_buffer_size 64k;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        add_header X-Limit $aigov_limit always;
        add_header X-Limit-Policy $aigov_limit_policy always;

        # inherited by the locations that have no aigov_limit of their own
        aigov_limit srvwide zone=rl key=$http_x_srv rate=2r/m;

        location /basic/ {
            aigov_route model=chat;
            aigov_limit basic zone=rl key=$http_x_key rate=5r/s burst=3;
            proxy_pass http://$aigov_upstream;
        }

        location /default-burst/ {
            aigov_route model=chat;
            aigov_limit db zone=rl key=$http_x_key rate=3r/s;
            proxy_pass http://$aigov_upstream;
        }

        location /two/ {
            aigov_route model=chat;
            aigov_limit ps zone=rl  key=$http_x_key rate=2r/s;
            aigov_limit pm zone=rl2 key=$http_x_key rate=5r/m;
            proxy_pass http://$aigov_upstream;
        }

        location /ip/ {
            aigov_route model=chat;
            aigov_limit ip zone=rl key=$binary_remote_addr rate=3r/m;
            proxy_pass http://$aigov_upstream;
        }

        location /arg/ {
            aigov_route model=chat;
            aigov_limit arg zone=rl key=$arg_user rate=2r/m;
            proxy_pass http://$aigov_upstream;
        }

        location /map/ {
            aigov_route model=chat;
            aigov_limit tier zone=rl key=$tier_key rate=1r/m;
            proxy_pass http://$aigov_upstream;
        }

        location /const/ {
            aigov_route model=chat;
            aigov_limit everyone zone=rl key=all rate=2r/m;
            proxy_pass http://$aigov_upstream;
        }

        location /shared-a/ {
            aigov_route model=chat;
            aigov_limit shared zone=rl key=$http_x_key rate=3r/m;
            proxy_pass http://$aigov_upstream;
        }

        location /shared-b/ {
            aigov_route model=chat;
            aigov_limit shared zone=rl key=$http_x_key rate=3r/m;
            proxy_pass http://$aigov_upstream;
        }

        location /tok/ {
            aigov_route openai;
            aigov_limit tpm zone=rl key=$http_x_key rate=1000t/m;
            proxy_pass http://$aigov_upstream/v1/chat/completions;
        }

        location /tok-small/ {
            aigov_route openai;
            aigov_limit_response_buffer 1k;
            aigov_limit tpm-small zone=rl key=$http_x_key rate=1000t/m
                        estimate=100;
            proxy_pass http://$aigov_upstream/v1/chat/completions;
        }

        location /both/ {
            aigov_route openai;
            aigov_limit rpm-both zone=rl key=$http_x_key rate=100r/m;
            aigov_limit tpm-both zone=rl key=$http_x_key rate=2000t/m;
            proxy_pass http://$aigov_upstream/v1/chat/completions;
        }

        location /maxtok/ {
            aigov_route openai;
            aigov_limit mt zone=rl key=$http_x_key rate=1000t/m
                        estimate=max_tokens;
            proxy_pass http://$aigov_upstream/v1/chat/completions;
        }

        location /maxtok-kserve/ {
            aigov_route model=chat;
            aigov_limit mtk zone=rl key=$http_x_key rate=1000t/m
                        estimate=max_tokens;
            proxy_pass http://$aigov_upstream/v1/chat/completions;
        }

        location /dry/ {
            aigov_route model=chat;
            aigov_limit dry zone=rl key=$http_x_key rate=1r/m dry_run;
            proxy_pass http://$aigov_upstream;
        }

        location /dryloc/ {
            aigov_route model=chat;
            aigov_limit_dry_run on;
            aigov_limit dryloc zone=rl key=$http_x_key rate=1r/m;
            proxy_pass http://$aigov_upstream;
        }

        location /noheaders/ {
            aigov_route model=chat;
            aigov_limit_headers off;
            aigov_limit nh zone=rl key=$http_x_key rate=1r/m;
            proxy_pass http://$aigov_upstream;
        }

        location /status503/ {
            aigov_route model=chat;
            aigov_limit_status 503;
            aigov_limit_log_level notice;
            aigov_limit s503 zone=rl key=$http_x_key rate=1r/m;
            proxy_pass http://$aigov_upstream;
        }

        location /inherit/ {
            aigov_route model=chat;
            proxy_pass http://$aigov_upstream;
        }

        location /off/ {
            aigov_route model=chat;
            aigov_limit off;
            proxy_pass http://$aigov_upstream;
        }

        location /tiny/ {
            aigov_route model=chat;
            aigov_limit lru zone=tiny key=$http_x_key rate=1r/m;
            proxy_pass http://$aigov_upstream;
        }

        location /keep/ {
            aigov_route model=chat;
            aigov_limit keep zone=keep key=$http_x_key rate=20r/s;
            proxy_pass http://$aigov_upstream;
        }

        location /grp/ {
            aigov_route model=chat;
            aigov_limit ga zone=grp key=$http_x_key rate=1r/m;
            aigov_limit gb zone=grp key=$http_x_key rate=2r/m;
            #GC
            proxy_pass http://$aigov_upstream;
        }

        location /par/ {
            aigov_route model=chat;
            aigov_limit par zone=rl key=$http_x_key rate=10r/m;
            proxy_pass http://$aigov_upstream;
        }

        location /long/ {
            aigov_route model=chat;
            aigov_limit long zone=rl key=$http_x_long rate=1r/m;
            proxy_pass http://$aigov_upstream;
        }

        location = /status {
            aigov_limit off;
            aigov_status;
        }
    }
EOF

my $ng = start_nginx(nginx_conf($CONF));

my $NO_RESPONSE = 0;
sub req {
    my ($path, @h) = @_;
    my $r = http_req(method => 'GET', path => $path, headers => [@h], timeout => 5);
    die "nginx stopped answering\n" if $r->{status} == 599 && ++$NO_RESPONSE >= 10;
    return $r;
}

sub chat_req {
    my ($path, @h) = @_;
    my $extra = '';
    if (@h && $h[0] eq 'extra') { (undef, $extra, @h) = @h }
    return http_req(method => 'POST', path => $path, timeout => 10,
        headers => ['Content-Type' => 'application/json', @h],
        body => '{"model":"chat",' . $extra . '"messages":[{"role":"user","content":"hi"}]}');
}

sub statuses {
    my ($n, $path, @h) = @_;
    return join ' ', map { req($path, @h)->{status} } 1 .. $n;
}

sub h { my ($r, $name) = @_; return $r->{headers}{lc $name} }

sub limit_status {
    my ($name) = @_;
    my $s = req('/status');
    for my $l (@{ $s->{json}{models}[0]{rate_limits} // [] }) {
        return $l if $l->{name} eq $name;
    }
    return undef;
}

sub zone_status {
    my ($name) = @_;
    return req('/status')->{json}{models}[0]{rate_limit_zones}{$name};
}

$ng->mark;

# --- the exact headers of a sequence -----------------------------------------

{
    my @r = map { req('/basic/x', 'X-Key' => 'hdr') } 1 .. 4;

    is $r[0]{status}, 200, 'first request of a key passes';
    is h($r[0], 'RateLimit-Policy'), '"basic";q=5;w=1', 'RateLimit-Policy: quota and window';
    is h($r[0], 'RateLimit'), '"basic";r=2;t=1', 'RateLimit: 2 left of the burst of 3, full again within 1s';
    is h($r[0], 'x-ratelimit-limit-requests'), '5', 'x-ratelimit-limit-requests: the rate';
    is h($r[0], 'x-ratelimit-remaining-requests'), '2', 'x-ratelimit-remaining-requests';
    is h($r[0], 'x-ratelimit-reset-requests'), '200ms', 'x-ratelimit-reset-requests: one emission interval';
    ok !defined h($r[0], 'x-ratelimit-limit-tokens'), 'no token headers without a token limit';
    ok !defined h($r[0], 'Retry-After'), 'no Retry-After on a passing request';
    is h($r[0], 'X-Limit'), 'allowed', '$aigov_limit: allowed';

    is_deeply [map { $_->{status} } @r], [200, 200, 200, 429], 'burst=3: three pass, the fourth is refused';
    is h($r[1], 'RateLimit'), '"basic";r=1;t=1', 'second: 1 left';
    is h($r[2], 'RateLimit'), '"basic";r=0;t=1', 'third: 0 left';
    like h($r[2], 'x-ratelimit-reset-requests'), qr/^(?:[3-6]\d\d)ms$/, 'third: full again in about 600ms';

    my $x = $r[3];
    is h($x, 'Content-Type'), 'application/problem+json', '429 is a problem document';
    is $x->{json}{type}, 'urn:aigov:problem:rate-limited', 'problem type rate-limited';
    is $x->{json}{title}, 'Too Many Requests', 'problem title';
    is $x->{json}{status}, 429, 'problem status';
    like $x->{json}{detail}, qr/^rate limit "basic" \(5r\/s\) exceeded, retry after \d+ms$/, 'problem detail';
    is h($x, 'Retry-After'), '1', 'Retry-After: whole seconds, rounded up';
    my $ms = h($x, 'retry-after-ms');
    ok defined $ms && $ms =~ /^\d+$/ && $ms >= 1 && $ms <= 200, "retry-after-ms within one interval ($ms)";
    is h($x, 'RateLimit'), '"basic";r=0;t=1', 'RateLimit on the refusal: t is when to retry';
    is h($x, 'RateLimit-Policy'), '"basic";q=5;w=1', 'RateLimit-Policy on the refusal';
    is h($x, 'x-ratelimit-remaining-requests'), '0', 'x-ratelimit-remaining-requests: 0';
    ok !defined h($x, 'x-should-retry'), 'no x-should-retry: waiting helps';
    is h($x, 'X-Limit'), 'rejected', '$aigov_limit: rejected';
    is h($x, 'X-Limit-Policy'), 'basic', '$aigov_limit_policy names the refusing limit';
    ok !defined h($x, 'X-Served-By'), 'a refused request does not reach the model';

    # refill: after retry-after-ms, exactly one more passes
    sleep($ms / 1000 + 0.03);
    is statuses(2, '/basic/x', 'X-Key' => 'hdr'), '200 429', 'after retry-after-ms: one passes, the next is refused';

    # a full second later the whole burst is back
    sleep 1.1;
    is statuses(4, '/basic/x', 'X-Key' => 'hdr'), '200 200 200 429', 'refilled to the burst after burst/rate seconds';

    # another key has its own bucket
    is statuses(4, '/basic/x', 'X-Key' => 'other'), '200 200 200 429', 'another key is independent';
}

# --- default burst: the whole rate at once ------------------------------------

is statuses(4, '/default-burst/x', 'X-Key' => 'db'), '200 200 200 429', 'burst defaults to the rate (3r/s: 3 at once)';

# --- empty key: not limited ---------------------------------------------------

{
    my @r = map { req('/basic/x') } 1 .. 8;
    is join(' ', map { $_->{status} } @r), join(' ', ('200') x 8), 'no key: never limited';
    ok !defined h($r[0], 'RateLimit'), 'no key: no RateLimit header';
    ok !defined h($r[0], 'X-Limit') || h($r[0], 'X-Limit') eq '', 'no key: $aigov_limit empty';
}

# --- two limits: per second and per minute ------------------------------------

{
    my @k = ('X-Key' => 'two');
    my @r = map { req('/two/x', @k) } 1 .. 3;
    is join(' ', map { $_->{status} } @r), '200 200 429', 'per second: 2 pass, the third is refused';
    is h($r[0], 'RateLimit'), '"ps";r=1;t=1, "pm";r=4;t=12', 'both limits in RateLimit';
    is h($r[0], 'RateLimit-Policy'), '"ps";q=2;w=1, "pm";q=5;w=60', 'both limits in RateLimit-Policy';
    is h($r[0], 'x-ratelimit-limit-requests'), '2', 'x-ratelimit-*: the limit with the least left';
    is h($r[0], 'x-ratelimit-remaining-requests'), '1', 'x-ratelimit-remaining-requests of that limit';
    is h($r[2], 'X-Limit-Policy'), 'ps', 'refused by the per-second limit';
    like h($r[2], 'RateLimit'), qr/^"ps";r=0;t=1, "pm";r=3;t=\d+$/,
        'the refused request took nothing from the per-minute limit (3 left)';

    sleep 1.05;
    @r = map { req('/two/x', @k) } 1 .. 3;
    is join(' ', map { $_->{status} } @r), '200 200 429', 'a second later: 2 more, per second again';
    like h($r[2], 'RateLimit'), qr/"pm";r=1;/, 'per minute: 4 used, 1 left';

    sleep 1.05;
    @r = map { req('/two/x', @k) } 1 .. 2;
    is join(' ', map { $_->{status} } @r), '200 429', 'the fifth of the minute passes, the sixth is refused';
    is h($r[1], 'X-Limit-Policy'), 'pm', '... by the per-minute limit';
    like h($r[1], 'RateLimit'), qr/^"ps";r=1;t=\d+, "pm";r=0;t=(?:9|10|11|12)$/,
        'the per-second limit still has 1 (not taken), per-minute tells when';
    my $ra = h($r[1], 'Retry-After');
    ok $ra >= 9 && $ra <= 12, "Retry-After of the per-minute limit ($ra s)";
    my $ms = h($r[1], 'retry-after-ms');
    ok $ms > 8000 && $ms <= 12000, "retry-after-ms of the per-minute limit ($ms)";

    my $pm = limit_status('pm');
    is $pm->{allowed}, 5, 'status: per-minute allowed exactly its 5';
    is $pm->{rejected}, 1, 'status: per-minute refused 1';
    is limit_status('ps')->{rejected}, 2, 'status: per-second refused 2';
}

# --- keys from the client address, an argument, a map, a constant -------------

is statuses(4, '/ip/x', 'X-Key' => 'a'), '200 200 200 429', 'key=$binary_remote_addr: 3r/m';
is statuses(1, '/ip/x', 'X-Key' => 'b'), '429', 'key=$binary_remote_addr: other headers do not matter';

is statuses(3, '/arg/x?user=alice'), '200 200 429', 'key=$arg_user: alice';
is statuses(1, '/arg/x?user=bob'), '200', 'key=$arg_user: bob has his own';
is statuses(5, '/arg/x'), '200 200 200 200 200', 'key=$arg_user: no argument, no limit';

is statuses(5, '/map/x', 'X-Tier' => 'premium', 'X-Key' => 'm'), '200 200 200 200 200',
    'key from a map: premium maps to "", not limited';
is statuses(2, '/map/x', 'X-Tier' => 'basic', 'X-Key' => 'm'), '200 429', 'key from a map: others by X-Key';

is join(' ', map { req('/const/x', 'X-Key' => "c$_")->{status} } 1 .. 3), '200 200 429',
    'a constant key: one bucket for every client';

is join(' ', req('/shared-a/x', 'X-Key' => 's')->{status}, req('/shared-b/x', 'X-Key' => 's')->{status},
        req('/shared-a/x', 'X-Key' => 's')->{status}, req('/shared-b/x', 'X-Key' => 's')->{status}),
    '200 200 200 429', 'one limit name in two locations: one state';

# --- inheritance and "off" ----------------------------------------------------

is statuses(3, '/inherit/x', 'X-Srv' => 'i'), '200 200 429', 'a server-level aigov_limit applies where a location has none';
is statuses(4, '/off/x', 'X-Srv' => 'i'), '200 200 200 200', 'aigov_limit off: nothing inherited';
is statuses(2, '/basic/x', 'X-Srv' => 'i2'), '200 200', 'a location with its own limits does not inherit';

# --- tokens: charged from the usage of the response ---------------------------

{
    my @k = ('X-Key' => 'tok', 'X-Fixture-Tokens' => '300,300');

    my $r1 = chat_req('/tok/v1/chat/completions', @k);
    is $r1->{status}, 200, 'token limit: first request passes';
    is $r1->{json}{usage}{total_tokens}, 600, 'the fixture reports 600 tokens';
    is h($r1, 'RateLimit-Policy'), '"tpm";q=1000;qu="tokens";w=60', 'RateLimit-Policy of a token limit: qu="tokens"';
    is h($r1, 'x-ratelimit-limit-tokens'), '1000', 'x-ratelimit-limit-tokens';
    is h($r1, 'x-ratelimit-remaining-tokens'), '999', 'before the answer only the estimate (1) is taken';
    is h($r1, 'x-ratelimit-reset-tokens'), '60ms', 'x-ratelimit-reset-tokens';
    ok !defined h($r1, 'x-ratelimit-limit-requests'), 'no request headers without a request limit';

    my $r2 = chat_req('/tok/v1/chat/completions', @k);
    is $r2->{status}, 200, 'second request passes';
    my $left = h($r2, 'x-ratelimit-remaining-tokens');
    ok $left >= 399 && $left <= 401, "the first answer's 600 tokens were charged ($left left)";

    my $r3 = chat_req('/tok/v1/chat/completions', @k);
    is $r3->{status}, 429, 'third request: 1200 tokens used of 1000 per minute, refused';
    is h($r3, 'x-ratelimit-remaining-tokens'), '0', 'x-ratelimit-remaining-tokens: 0 (in debt)';
    my $ms = h($r3, 'retry-after-ms');
    ok $ms > 11000 && $ms <= 12060, "retry-after-ms: the debt of 200 tokens + 1, at 60ms each ($ms)";
    my $ra = h($r3, 'Retry-After');
    ok $ra == 12 || $ra == 13, "Retry-After in seconds ($ra)";
    like h($r3, 'RateLimit'), qr/^"tpm";r=0;t=1[23]$/, 'RateLimit of the refusal';

    my $st = limit_status('tpm');
    is $st->{tokens}, 1200, 'status: 1200 tokens counted from the usage';
    is $st->{estimate}, 1, 'status: estimate';
    is $st->{unit}, 'tokens', 'status: unit';
}

# --- tokens: a streamed (SSE) answer with usage in the final chunk ------------

{
    my @k = ('X-Key' => 'sse', 'X-Fixture-Tokens' => '400,100', 'X-Fixture-Stream' => 4,
             'X-Fixture-Stream-Interval' => 150);
    my $r = chat_req('/tok/v1/chat/completions', @k);
    is $r->{status}, 200, 'SSE: passes';
    like h($r, 'Content-Type'), qr{^text/event-stream}, 'SSE: event stream';
    my @ev = sse_events($r->{body});
    is scalar(@ev), 5, 'SSE: 4 chunks and [DONE], unchanged';
    is $ev[-1], '[DONE]', 'SSE: ends with [DONE]';
    like $ev[-2], qr/"total_tokens": 500/, 'SSE: usage in the final chunk';
    my @t = @{ $r->{chunk_ms} // [] };
    ok @t >= 4 && $t[0] < 140 && $t[-1] - $t[0] >= 400,
        'SSE: chunks reach the client as they come, not at the end (' . join(',', map { int } @t) . ' ms)';

    my $r2 = chat_req('/tok/v1/chat/completions', 'X-Key' => 'sse', 'X-Fixture-Tokens' => '1,1');
    my $left = h($r2, 'x-ratelimit-remaining-tokens');
    ok $left >= 498 && $left <= 500, "SSE: the stream's 500 tokens were charged ($left left)";
}

# --- tokens: a body that comes in several buffers ------------------------------

{
    my @k = ('X-Key' => 'chunks', 'X-Fixture-Tokens' => '70,30', 'X-Pad' => 'q' x 7000);
    my $r1 = chat_req('/tok/v1/chat/completions', @k);
    is $r1->{status}, 200, 'a 7k body: passes';
    ok length($r1->{body}) > 7000, 'a 7k body: complete (' . length($r1->{body}) . ' bytes)';
    my $r2 = chat_req('/tok/v1/chat/completions', @k);
    my $left = h($r2, 'x-ratelimit-remaining-tokens');
    ok $left >= 898 && $left <= 900, "a 7k body: its usage was read across buffers ($left left)";
}

# --- tokens: a body too large to read keeps the estimate -----------------------

{
    my @k = ('X-Key' => 'big', 'X-Fixture-Tokens' => '10,10', 'X-Pad' => 'p' x 2000);
    my $r1 = chat_req('/tok-small/v1/chat/completions', @k);
    is $r1->{status}, 200, 'large body: passes';
    is h($r1, 'x-ratelimit-remaining-tokens'), '900', 'estimate=100 taken up front';
    my $r2 = chat_req('/tok-small/v1/chat/completions', @k);
    my $left = h($r2, 'x-ratelimit-remaining-tokens');
    ok $left >= 800 && $left <= 801, "usage not read (body over 1k): the estimate stays ($left left)";
    my $st = limit_status('tpm-small');
    is $st->{no_usage}, 2, 'status: no_usage counts them';
    is $st->{tokens}, 0, 'status: no tokens counted';
}

# --- estimate=max_tokens: reserve what the request may use, settle later -----

{
    my @k = ('X-Key' => 'mt', 'X-Fixture-Tokens' => '10,10');
    my $r = chat_req('/maxtok/v1/chat/completions', extra => '"max_tokens":300,', @k);
    is $r->{status}, 200, 'max_tokens: passes';
    is h($r, 'x-ratelimit-remaining-tokens'), '700', 'max_tokens: 300 reserved up front';

    $r = chat_req('/maxtok/v1/chat/completions', extra => '"max_completion_tokens":100,"max_tokens":999,', @k);
    my $left = h($r, 'x-ratelimit-remaining-tokens');
    ok $left >= 880 && $left <= 881,
        "max_tokens: the unused reservation came back (20 used), max_completion_tokens first ($left left)";

    $r = chat_req('/maxtok/v1/chat/completions', @k);
    $left = h($r, 'x-ratelimit-remaining-tokens');
    ok $left >= 959 && $left <= 961, "max_tokens: none in the body: 1 ($left left)";

    $r = chat_req('/maxtok/v1/chat/completions', extra => '"max_tokens":5000,', @k);
    is $r->{status}, 429, 'max_tokens over the burst: refused';
    is h($r, 'x-should-retry'), 'false', 'max_tokens over the burst: x-should-retry: false (waiting cannot help)';
    ok !defined h($r, 'Retry-After') && !defined h($r, 'retry-after-ms'), 'max_tokens over the burst: no Retry-After';
    like h($r, 'RateLimit'), qr/^"mt";r=9[4-6]\d$/, 'max_tokens over the burst: RateLimit without t';
    is $r->{json}{detail}, 'the request costs more than rate limit "mt" (1000t/m) allows at once',
        'max_tokens over the burst: problem detail';
    like $r->{body}, qr/rate-limited/, 'max_tokens over the burst: rate-limited problem';

    $r = http_req(method => 'POST', path => '/maxtok-kserve/x', headers => ['X-Key' => 'mtk',
        'Content-Type' => 'application/json', 'X-Fixture-Tokens' => '1,1'], body => '{"max_tokens":250}');
    is h($r, 'x-ratelimit-remaining-tokens'), '750', 'max_tokens: the body is read where the route does not read it';
    is $r->{json}{body_bytes}, 18, 'max_tokens: ... and still reaches the model';
}

# --- requests and tokens together ---------------------------------------------

{
    my $r = chat_req('/both/v1/chat/completions', 'X-Key' => 'both', 'X-Fixture-Tokens' => '5,5');
    is h($r, 'x-ratelimit-limit-requests'), '100', 'both: x-ratelimit-limit-requests';
    is h($r, 'x-ratelimit-remaining-requests'), '99', 'both: x-ratelimit-remaining-requests';
    is h($r, 'x-ratelimit-limit-tokens'), '2000', 'both: x-ratelimit-limit-tokens';
    is h($r, 'x-ratelimit-remaining-tokens'), '1999', 'both: x-ratelimit-remaining-tokens';
    is h($r, 'RateLimit-Policy'), '"rpm-both";q=100;w=60, "tpm-both";q=2000;qu="tokens";w=60',
        'both: RateLimit-Policy lists both';
}

# --- dry run ------------------------------------------------------------------

{
    my @r = map { req('/dry/x', 'X-Key' => 'd') } 1 .. 3;
    is join(' ', map { $_->{status} } @r), '200 200 200', 'dry run: nothing is refused';
    is h($r[0], 'X-Limit'), 'allowed', 'dry run: first within the limit';
    is h($r[1], 'X-Limit'), 'dry_run', 'dry run: $aigov_limit says it would have been refused';
    is h($r[1], 'X-Limit-Policy'), 'dry', 'dry run: $aigov_limit_policy';
    ok !defined h($r[1], 'Retry-After'), 'dry run: no Retry-After';
    is h($r[1], 'RateLimit'), '"dry";r=0;t=60', 'dry run: RateLimit says what is left';
    my @lines = grep { /aigov_limit "dry" would reject the request: 1r\/m, 0 left, retry after \S+, dry run/ }
        $ng->error_log_lines;
    is scalar(@lines), 2, 'dry run: each would-be refusal is logged';
    like $lines[0], qr/\[warn\]/, 'dry run: at the log level (warn by default)';
    my $st = limit_status('dry');
    is $st->{dry_run_rejected}, 2, 'status: dry_run_rejected';
    is $st->{rejected}, 0, 'status: nothing rejected';
    is $st->{dry_run}, JSON::PP::true, 'status: dry_run';

    is statuses(3, '/dryloc/x', 'X-Key' => 'd'), '200 200 200', 'aigov_limit_dry_run on: nothing is refused';
    is limit_status('dryloc')->{dry_run_rejected}, 2, 'aigov_limit_dry_run on: counted';
}

# --- aigov_limit_headers off, aigov_limit_status, aigov_limit_log_level -------

{
    my $r1 = req('/noheaders/x', 'X-Key' => 'n');
    my $r2 = req('/noheaders/x', 'X-Key' => 'n');
    is $r1->{status}, 200, 'headers off: passes';
    ok !defined h($r1, 'RateLimit') && !defined h($r1, 'x-ratelimit-limit-requests'),
        'headers off: no limit headers on passing responses';
    is $r2->{status}, 429, 'headers off: refused';
    is h($r2, 'RateLimit'), '"nh";r=0;t=60', 'headers off: a refusal still carries them';

    $ng->mark;
    my @r = map { req('/status503/x', 'X-Key' => 's') } 1 .. 2;
    is $r[1]{status}, 503, 'aigov_limit_status 503';
    is $r[1]{json}{type}, 'urn:aigov:problem:rate-limited', 'aigov_limit_status 503: still rate-limited';
    ok h($r[1], 'Retry-After') >= 59, 'aigov_limit_status 503: Retry-After';
    ok scalar(grep { /\[notice\].*aigov_limit "s503" rejected the request/ } $ng->error_log_lines),
        'aigov_limit_log_level notice';
}

# --- concurrency: exactly the burst passes ------------------------------------

{
    my @res = http_parallel(map { { method => 'GET', path => '/par/x', headers => ['X-Key' => 'p'] } } 1 .. 25);
    my %n;
    $n{ $_->{status} }++ for @res;
    is $n{200}, 10, '25 concurrent requests over 2 workers: exactly 10 (the burst) pass';
    is $n{429}, 15, '... and 15 are refused';
}

# --- long keys are hashed -----------------------------------------------------

{
    my $k1 = 'a' x 300;
    my $k2 = ('a' x 299) . 'b';
    is statuses(2, '/long/x', 'X-Long' => $k1), '200 429', 'a 300-byte key is limited';
    is statuses(1, '/long/x', 'X-Long' => $k2), '200', 'another 300-byte key has its own state';
}

# --- zone full: LRU eviction, no failure --------------------------------------

{
    $ng->mark;
    is statuses(2, '/tiny/x', 'X-Key' => 'hot'), '200 429', 'lru: the hot key is used up';
    my ($bad, $hot_ok) = (0, 1);
    for my $i (1 .. 400) {
        $bad++ if req('/tiny/x', 'X-Key' => "cold-$i")->{status} != 200;
        if ($i % 25 == 0) {
            $hot_ok = 0 if req('/tiny/x', 'X-Key' => 'hot')->{status} != 429;
        }
    }
    is $bad, 0, 'lru: 400 new keys in a 32k zone: every one passes';
    ok $hot_ok, 'lru: the recently used key keeps its state (still refused)';
    my $z = zone_status('tiny');
    ok $z->{evictions} > 0, "lru: keys were evicted ($z->{evictions})";
    ok $z->{keys} < 400, "lru: the zone holds what fits ($z->{keys} keys)";
    # 128-byte nodes for a local limit and a short key ("lru:cold-123"):
    # 4 pages of 32 nodes; 256-byte nodes held 63
    ok $z->{keys} >= 120, "lru: short keys of a local limit take 128 bytes each ($z->{keys} in 32k)";
    is $z->{no_memory}, 0, 'lru: never out of memory';
    is statuses(1, '/tiny/x', 'X-Key' => 'cold-1'), '200', 'lru: an evicted key starts again with a full bucket';
    $ng->error_log_clean_ok('lru: no [crit] or [error] when the zone is full');
}

# --- idle keys stay a minute: a key that comes back finds its node -----------

{
    is statuses(1, '/keep/x', 'X-Key' => "k$_"), '200', "keep: key k$_" for 1 .. 6;
    select undef, undef, undef, 0.4;    # every bucket is full again
    is statuses(1, '/keep/x', 'X-Key' => 'k7'), '200', 'keep: a new key after all are idle';
    my $z = zone_status('keep');
    is $z->{keys}, 7, 'keep: idle keys are not freed before a minute';
    is $z->{expired}, 0, 'keep: none expired';
    is $z->{evictions}, 0, 'keep: none evicted';
    is statuses(21, '/keep/x', 'X-Key' => 'k3'), join(' ', ('200') x 20, '429'),
        'keep: a kept key still has its whole burst';
    is zone_status('keep')->{keys}, 7, 'keep: k3 used its own node again';
}

# --- the access log: $aigov_limit, $aigov_limit_policy, $aigov_limit_tokens ---

{
    my $log = do { local $/; open my $fh, '<', tmp_dir() . '/logs/limits.log' or die $!; <$fh> };
    like $log, qr{ 200 "allowed" "-" "600" /tok/v1/chat/completions}, 'access log: tokens of the answer';
    like $log, qr{ 200 "allowed" "-" "500" /tok/v1/chat/completions}, 'access log: tokens of the stream';
    like $log, qr{ 429 "rejected" "basic" "-" /basic/x}, 'access log: refused, and by which limit';
    like $log, qr{ 200 "dry_run" "dry" "-" /dry/x}, 'access log: dry run';
    like $log, qr{ 200 "-" "-" "-" /basic/x}, 'access log: not limited (no key)';
}

# --- reload keeps the state ---------------------------------------------------

{
    is statuses(11, '/par/x', 'X-Key' => 'reload'), join(' ', ('200') x 10, '429'), 'before reload: used up';
    my $before = limit_status('par')->{rejected};
    ok $ng->reload, 'reload';
    is statuses(1, '/par/x', 'X-Key' => 'reload'), '429', 'after reload: still used up';
    is limit_status('par')->{rejected}, $before + 1, 'after reload: the counters went on';
    is statuses(1, '/par/x', 'X-Key' => 'fresh'), '200', 'after reload: other keys pass';
}

# --- local limits with the same key share a node per key --------------------

{
    my $r = req('/grp/x', 'X-Key' => 'm1');
    is $r->{status}, 200, 'group: the first request passes both limits';
    is h($r, 'RateLimit'), '"ga";r=0;t=60, "gb";r=1;t=30', 'group: each limit its own state';
    $r = req('/grp/x', 'X-Key' => 'm1');
    is $r->{status}, 429, 'group: ga (1r/m) refuses the second';
    like h($r, 'RateLimit'), qr/^"ga";r=0;t=\d+, "gb";r=1;t=\d+$/, 'group: the refusal took nothing from gb';
    is zone_status('grp')->{keys}, 1, 'group: one node for the two limits of a key';
    is statuses(1, '/grp/x', 'X-Key' => "m-$_"), '200', "group: key m-$_" for 2 .. 30;
    is zone_status('grp')->{keys}, 30, 'group: 30 keys, 30 nodes (two limits each)';

    # a reload adds a third limit with the same key: the two keep their state
    (my $conf2 = $CONF) =~ s/#GC/aigov_limit gc zone=grp key=\$http_x_key rate=1r\/m;/;
    ok $ng->reload(nginx_conf($conf2)), 'group: reload, a third limit in the group';
    $r = req('/grp/x', 'X-Key' => 'm1');
    is $r->{status}, 429, 'group: after the reload ga is still used up';
    like h($r, 'RateLimit'), qr/^"ga";r=0;t=\d+, "gb";r=1;t=\d+, "gc";r=1;t=\d+$/,
        'group: gb kept its state, gc starts full';
    is zone_status('grp')->{keys}, 30, 'group: the key\'s node was moved, not doubled';

    # and back: gc leaves, ga and gb still keep theirs
    ok $ng->reload(nginx_conf($CONF)), 'group: reload, gc removed';
    $r = req('/grp/x', 'X-Key' => 'm1');
    is $r->{status}, 429, 'group: after the second reload ga is still used up';
    like h($r, 'RateLimit'), qr/^"ga";r=0;t=\d+, "gb";r=1;t=\d+$/, 'group: gb kept its state again';
    is statuses(2, '/grp/x', 'X-Key' => 'm-2'), '429 429', 'group: so did every other key (m-2)';
    is statuses(2, '/grp/x', 'X-Key' => 'm31'), '200 429', 'group: a new key starts full';
}

$ng->error_log_clean_ok('no unexpected errors in the error log');

# --- nginx -t ------------------------------------------------------------------

my $T = <<'EOF';
    upstream u1 { server 127.0.0.1:9001; }
    aigov_zone z:1m;
    aigov_model chat { variant v1 u1 stable; }
EOF

sub limit_conf {
    my ($http, @loc) = @_;
    return nginx_conf($T . ($http // '') . join("\n", '    server {', '        listen 127.0.0.1:%%PORT%%;',
        '        location /v1/ {', '            aigov_route openai;', (map { "            $_" } @loc),
        '            proxy_pass http://$aigov_upstream;', '        }', '    }', ''));
}

my $Z = "    aigov_limit_zone rl:1m;\n";
my $K = 'zone=rl key=$http_x_key';

my @bad = (
    ['zone without size', "    aigov_limit_zone rl;\n", [], qr/invalid aigov_limit_zone "rl": use "name:size"/],
    ['zone with a bad size', "    aigov_limit_zone rl:abc;\n", [], qr/invalid size in aigov_limit_zone "rl:abc"/],
    ['zone too small', "    aigov_limit_zone rl:16k;\n", [], qr/aigov_limit_zone "rl:16k" is too small: at least 32k/],
    ['zone twice', "$Z$Z", [], qr/aigov_limit_zone "rl" is already declared/],
    ['zone name of the aigov_zone', "    aigov_limit_zone z:1m;\n", [],
     qr/the shared memory zone "z" is already declared for a different use/],
    ['unknown zone', $Z, ['aigov_limit x zone=nope key=$http_x_key rate=1r/s;'],
     qr/unknown aigov_limit_zone "nope" in aigov_limit "x" in \S+:\d+/],
    ['invalid name', $Z, ["aigov_limit bad/name $K rate=1r/s;"],
     qr/invalid aigov_limit name "bad\/name": use 1 to 64 of A-Z a-z 0-9 \. _ -/],
    ['name too long', $Z, ['aigov_limit ' . ('n' x 65) . " $K rate=1r/s;"], qr/invalid aigov_limit name "n{65}"/],
    ['no zone', $Z, ['aigov_limit x key=$http_x_key rate=1r/s;'], qr/aigov_limit "x" needs zone=NAME \(an aigov_limit_zone\)/],
    ['no key', $Z, ['aigov_limit x zone=rl rate=1r/s;'], qr/aigov_limit "x" needs key=VALUE, such as key=\$http_x_api_key/],
    ['empty key', $Z, ['aigov_limit x zone=rl key= rate=1r/s;'],
     qr/empty key in aigov_limit "x": use a value with variables, such as key=\$http_x_api_key/],
    ['no rate', $Z, ["aigov_limit x $K;"], qr/aigov_limit "x" needs rate=, such as rate=10r\/s or rate=100000t\/m/],
    ['rate without unit', $Z, ["aigov_limit x $K rate=10x/s;"],
     qr/invalid rate "rate=10x\/s" in aigov_limit "x": the rate needs "r" \(requests\) or "t" \(tokens\) after the number, as in "10r\/s" or "1000t\/m"/],
    ['rate 0', $Z, ["aigov_limit x $K rate=0r/s;"], qr/invalid rate "rate=0r\/s" in aigov_limit "x": the rate must be at least 1/],
    ['period over a day', $Z, ["aigov_limit x $K rate=10r/2d;"],
     qr/invalid rate "rate=10r\/2d" in aigov_limit "x": the period is longer than 1d/],
    ['burst 0', $Z, ["aigov_limit x $K rate=1r/s burst=0;"],
     qr/invalid burst "burst=0" in aigov_limit "x": the burst must be at least 1/],
    ['burst not a number', $Z, ["aigov_limit x $K rate=1r/s burst=5k;"],
     qr/invalid burst "burst=5k" in aigov_limit "x": the burst must be a whole number/],
    ['burst on a global limit', "$Z    aigov_redis 127.0.0.1:6379;\n", ["aigov_limit x $K rate=1r/s burst=5 global;"],
     qr/burst= does not apply to the global aigov_limit "x": a fleet limit admits its rate per sliding window, all at once if it comes so/],
    ['bad global', $Z, ["aigov_limit x $K rate=1r/s global=fast;"],
     qr/invalid "global=fast" in aigov_limit "x": use "global" \(synced\) or "global=strict"/],
    ['sync without global', $Z, ["aigov_limit x $K rate=1r/s sync=1s;"], qr/sync= needs "global" in aigov_limit "x" in \S+:\d+/],
    ['sync with strict', "$Z    aigov_redis 127.0.0.1:6379;\n", ["aigov_limit x $K rate=1r/s global=strict sync=1s;"],
     qr/sync= needs "global" in aigov_limit "x": a strict limit asks Redis on every request/],
    ['sync too short', "$Z    aigov_redis 127.0.0.1:6379;\n", ["aigov_limit x $K rate=1r/s global sync=5ms;"],
     qr/invalid time "sync=5ms" in aigov_limit "x": use 10ms to 60s/],
    ['redis_timeout without strict', "$Z    aigov_redis 127.0.0.1:6379;\n", ["aigov_limit x $K rate=1r/s global redis_timeout=10ms;"],
     qr/redis_timeout= needs "global=strict" in aigov_limit "x"/],
    ['redis_timeout too long', "$Z    aigov_redis 127.0.0.1:6379;\n", ["aigov_limit x $K rate=1r/s global=strict redis_timeout=20s;"],
     qr/invalid time "redis_timeout=20s" in aigov_limit "x": use 1ms to 10s/],
    ['bad on_redis_error', "$Z    aigov_redis 127.0.0.1:6379;\n", ["aigov_limit x $K rate=1r/s global on_redis_error=maybe;"],
     qr/invalid "on_redis_error=maybe" in aigov_limit "x": use "on_redis_error=open" or "on_redis_error=closed"/],
    ['on_redis_error on a local limit', $Z, ["aigov_limit x $K rate=1r/s on_redis_error=closed;"],
     qr/on_redis_error= needs "global" in aigov_limit "x": a local limit does not use Redis/],
    ['estimate on a request rate', $Z, ["aigov_limit x $K rate=1r/s estimate=5;"],
     qr/estimate= applies to token rates \("t"\) only, in aigov_limit "x"/],
    ['estimate 0', $Z, ["aigov_limit x $K rate=100t/s estimate=0;"],
     qr/invalid "estimate=0" in aigov_limit "x": use a number of tokens from 1 to 4294967295, or "max_tokens"/],
    ['estimate over the burst', $Z, ["aigov_limit x $K rate=1000t/m burst=100 estimate=500;"],
     qr/estimate=500 is more than the burst \(100\) of aigov_limit "x": no request could pass/],
    ['unknown parameter', $Z, ["aigov_limit x $K rate=1r/s foo=1;"], qr/invalid parameter "foo=1" in aigov_limit "x"/],
    ['parameter twice', $Z, ["aigov_limit x $K rate=1r/s rate=2r/s;"], qr/duplicate "rate=" in aigov_limit "x"/],
    ['global without aigov_redis', $Z, ["aigov_limit x $K rate=1r/s global;"],
     qr/aigov_limit "x" is global but there is no aigov_redis in \S+:\d+/],
    ['one name, two definitions', $Z, ["aigov_limit x $K rate=1r/s;", 'aigov_limit y zone=rl key=$http_x_key rate=1r/s;',
        'location /v1/in/ {', "    aigov_limit x $K rate=2r/s;", '}'],
     qr/aigov_limit "x" is already defined with other parameters in \S+:\d+: a name is one limit, with one state/],
    ['one limit twice in a block', $Z, ["aigov_limit x $K rate=1r/s;", "aigov_limit x $K rate=1r/s;"],
     qr/duplicate aigov_limit "x" in one block/],
    ['off twice', $Z, ['aigov_limit off;', 'aigov_limit off;'], qr/"aigov_limit" directive is duplicate/],
    ['a limit after off', $Z, ['aigov_limit off;', "aigov_limit x $K rate=1r/s;"],
     qr/aigov_limit "x" after "aigov_limit off" in the same block/],
    ['status out of range', $Z, ['aigov_limit_status 200;'], qr/value must be between 400 and 599/],
    ['bad log level', $Z, ['aigov_limit_log_level debug;'], qr/invalid value "debug"/],
    ['tiny response buffer', $Z, ['aigov_limit_response_buffer 100;'], qr/aigov_limit_response_buffer must be at least 1k/],
    ['zone directive in a location', '', ["aigov_limit_zone rl:1m;"], qr/"aigov_limit_zone" directive is not allowed here/],
    ['a limit in a location without aigov_route', $Z, ['}', 'location /plain/ {', "aigov_limit x $K rate=1r/s;"],
     qr/aigov_limit "x" in \S+:\d+ would never apply: its location has no aigov_route/],
);

for my $case (@bad) {
    my ($name, $http, $loc, $re) = @$case;
    my ($ok, $out) = nginx_t(limit_conf($http, @$loc));
    ok !$ok, "nginx -t fails: $name";
    like $out, qr/\[emerg\] \d+#\d+: $re/, "nginx -t message: $name";
}

{
    my ($ok, $out) = nginx_t(limit_conf($Z, "aigov_limit x $K rate=1r/s;", 'location /v1/in/ {',
        "    aigov_limit x $K rate=1r/s;", '}', 'aigov_limit_status 503;', 'aigov_limit_log_level error;'));
    ok $ok, 'nginx -t passes: the same limit, identical, in two blocks' or diag $out;

    ($ok, $out) = nginx_t(limit_conf("    aigov_redis 127.0.0.1:6379;\n$Z",
        "aigov_limit a $K rate=10r/s burst=20 dry_run;", "aigov_limit b $K rate=100000t/m estimate=500;",
        "aigov_limit c $K rate=600r/m global sync=1s on_redis_error=closed;",
        "aigov_limit d $K rate=50r/10s global=strict redis_timeout=20ms on_redis_error=open;",
        "aigov_limit e $K rate=5000t/h global;"));
    ok $ok, 'nginx -t passes: every parameter' or diag $out;

    # a server's limits apply where aigov_route is; elsewhere they are moot
    ($ok, $out) = nginx_t(nginx_conf($T . $Z . join("\n", '    server {', '        listen 127.0.0.1:%%PORT%%;',
        "        aigov_limit x $K rate=1r/s;", '        location /v1/ {', '            aigov_route openai;',
        '            proxy_pass http://$aigov_upstream;', '        }', '        location /health { return 200; }',
        '    }', '')));
    ok $ok, 'nginx -t passes: server-level limits, and a location without aigov_route' or diag $out;
}

done_testing;
