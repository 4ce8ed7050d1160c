#!/usr/bin/perl
# The response cache (aigov_cache_zone, aigov_cache, aigov_cache_bypass,
# $aigov_cache, X-Aigov-Cache): a miss stores, a hit answers without calling
# the model (same body, Age, no upstream request); keys agree for canonical
# JSON equivalents (key order, whitespace, 1.0 vs 1) and differ by model,
# served version, key headers, path and body; TTL expiry; LRU eviction in a
# small zone; stale-if-error while the model is down (stopped fixture, 5xx),
# but not for a killed model; never storing errors, partial bodies, SSE,
# non-JSON types (unless listed), invalid JSON, no-store or Set-Cookie
# answers; huge and non-JSON request bodies bypass the cache and are still
# proxied; the bypass predicate refreshes; runtime rollback, unrollback and
# weights changes, and a version change by reload, invalidate while a plain
# reload keeps the entries; Redis-shared entries across two nodes, failing
# open when Redis is stopped; nginx -t errors; counters in the status JSON;
# error log clean.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use AigovTest;
use JSON::PP ();
use Time::HiRes qw(time sleep);

my $JSON = JSON::PP->new->utf8->canonical;

start_fixture(name => 'stable',    version => '1.4.2');
start_fixture(name => 'candidate', version => '1.5.0');
start_fixture(name => 'flaky',     version => '2.0.0');
my $RPORT = start_redis();

my $TOKEN = 'w-cache-0123456789abcdef';
my $TOKENS = tmp_dir() . '/admin-tokens';
{
    open(my $fh, '>', $TOKENS) or die "$TOKENS: $!";
    print {$fh} "ops write $TOKEN\n";
    close $fh;
    chmod 0644, $TOKENS;
}

sub http_conf {
    my (%o) = @_;
    my $v1 = $o{v1_version} // '1.4.2';
    my $chat = <<'EOF';
            aigov_route model=chat;
            proxy_pass http://$aigov_upstream/v1/chat/completions;
EOF
    return <<"EOF";
    upstream u_stable    { server 127.0.0.1:%%FIXTURE_stable%%;    keepalive 8; }
    upstream u_candidate { server 127.0.0.1:%%FIXTURE_candidate%%; keepalive 8; }
    upstream u_flaky     { server 127.0.0.1:%%FIXTURE_flaky%%; }

    aigov_zone cache_t:1m;
    aigov_redis 127.0.0.1:%%REDIS_PORT%% sync_interval=300ms;

    aigov_cache_zone llm:4m;
    aigov_cache_zone tiny:32k max_entry=4k;

    aigov_model chat {
        alias         chat-alias;
        variant v1 u_stable    version=$v1 stable;
        variant v2 u_candidate version=1.5.0;
        canary        v2 0%;
        canary_header X-Canary;
    }

    # the same backend, another model
    aigov_model other {
        variant v1 u_stable version=$v1 stable;
    }

    aigov_model flaky {
        variant v1 u_flaky version=2.0.0 stable;
    }

    aigov_model fleetm {
        variant v1 u_stable version=1.4.2 stable;
    }

    server {
        listen 127.0.0.1:%%PORT%%;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        add_header X-Cache-Var \$aigov_cache always;

        location /v1/ {
            aigov_route openai;
            aigov_cache zone=llm ttl=60s key_headers=X-Tenant;
            proxy_pass http://\$aigov_upstream;
        }

        location /other/ {
            aigov_route model=other;
            aigov_cache zone=llm;
            proxy_pass http://\$aigov_upstream/v1/chat/completions;
        }

        location /short/ {
            aigov_cache zone=llm ttl=1s;
$chat
        }

        location /tiny/ {
            aigov_cache zone=tiny;
$chat
        }

        location /types/ {
            aigov_cache zone=llm content_types=application/json,text/plain;
$chat
        }

        location /bypass/ {
            aigov_cache zone=llm;
            aigov_cache_bypass \$http_x_refresh;
$chat
        }

        location /small-body/ {
            client_body_buffer_size 1k;
            client_max_body_size 2m;
            aigov_cache zone=llm;
$chat
        }

        location /big/ {
            aigov_cache zone=llm;
            proxy_max_temp_file_size 0;
$chat
        }

        location /big-spooled/ {
            aigov_cache zone=llm;
            proxy_buffers 4 4k;
            limit_rate 2m;              # the answer outruns the client
            sendfile on;
$chat
        }

        location /stale/ {
            aigov_route model=flaky;
            aigov_cache zone=llm ttl=1s stale_if_error=1m;
            proxy_connect_timeout 2s;
            proxy_pass http://\$aigov_upstream/v1/chat/completions;
        }

        location /stale-short/ {
            aigov_route model=flaky;
            aigov_cache zone=llm ttl=1s stale_if_error=1s;
            proxy_pass http://\$aigov_upstream/v1/chat/completions;
        }

        location /fleet/ {
            aigov_route model=fleetm;
            aigov_cache zone=llm redis=on redis_timeout=300ms;
            proxy_pass http://\$aigov_upstream/v1/chat/completions;
        }

        location /nocache/ {
$chat
        }

        location /aigov/ { aigov_admin tokens=$TOKENS; }
        location = /status { aigov_status; }
    }
EOF
}

my $ng = start_nginx(nginx_conf(http_conf(), workers => 2));

# --- helpers ------------------------------------------------------------------

my $NO_RESPONSE = 0;
sub req {
    my (%a) = @_;
    my $r = http_req(timeout => 10, %a);
    die "nginx stopped answering: $r->{error}\n"
        if $r->{status} == 599 && ++$NO_RESPONSE >= 10;
    return $r;
}

my $SEQ = 0;
sub uniq { return 'u' . $$ . '-' . ++$SEQ . '-' . int(rand(1e9)) }

sub post {
    my ($path, $body, @h) = @_;
    $body = $JSON->encode($body) if ref $body;
    return req(method => 'POST', path => $path, body => $body,
               headers => ['Content-Type' => 'application/json', @h]);
}

sub cache { $_[0]{headers}{'x-aigov-cache'} // '' }
sub cvar  { $_[0]{headers}{'x-cache-var'} // '' }
sub seq   { $_[0]{headers}{'x-fixture-seq'} }

sub fixture_count {
    my ($name) = @_;
    my $r = http_req(port => fixture_port($name // 'stable'), path => '/fixture/stats',
                     fresh => 1);
    return $r->{json}{requests};
}

sub status_doc {
    my $r = req(path => '/status');
    return $r->{json};
}

sub counters {
    my ($model, $zone) = @_;
    my $doc = status_doc();
    my ($m) = grep { $_->{name} eq $model } @{ $doc->{models} };
    return $m->{cache}{$zone // 'llm'};
}

sub admin {
    my ($method, $path, $body) = @_;
    return req(method => $method, path => "/aigov/models/$path", fresh => 1,
               headers => ['Authorization' => "Bearer $TOKEN",
                           (defined $body ? ('Content-Type' => 'application/json') : ())],
               defined $body ? (body => $JSON->encode($body)) : ());
}

sub chat_body {
    my ($content, %extra) = @_;
    return { model => 'chat', messages => [ { role => 'user', content => $content } ],
             temperature => 1, %extra };
}

$ng->mark;

# --- miss, then hit ---------------------------------------------------------------

subtest 'miss then hit: same body, model not called, Age' => sub {
    my $body = chat_body(uniq());
    my $before = fixture_count();

    my $m = post('/v1/chat/completions', $body);
    is $m->{status}, 200, 'miss: 200';
    is cache($m), 'MISS', 'X-Aigov-Cache: MISS';
    is cvar($m), 'MISS', '$aigov_cache MISS';
    ok seq($m), 'the model answered (X-Fixture-Seq)';
    is $m->{headers}{'x-aigov-variant'}, 'v1', 'variant v1';
    ok !defined $m->{headers}{age}, 'no Age on a miss';
    is fixture_count(), $before + 1, 'one upstream request';

    for my $i (1 .. 3) {
        my $h = post('/v1/chat/completions', $body);
        is $h->{status}, 200, "hit $i: 200";
        is cache($h), 'HIT', "hit $i: X-Aigov-Cache: HIT";
        is cvar($h), 'HIT', "hit $i: \$aigov_cache HIT";
        is $h->{body}, $m->{body}, "hit $i: the stored body, byte for byte";
        like $h->{headers}{'content-type'}, qr{^application/json}, "hit $i: its Content-Type";
        is $h->{headers}{'content-length'}, length($m->{body}), "hit $i: Content-Length";
        like $h->{headers}{age} // '', qr/^\d+$/, "hit $i: Age";
        ok !defined seq($h), "hit $i: no upstream answer";
        is $h->{headers}{'x-aigov-variant'}, 'v1', "hit $i: annotated with the variant";
        is $h->{headers}{'x-aigov-model-version'}, '1.4.2', "hit $i: and its version";
    }

    is fixture_count(), $before + 1, 'the model was called once in all';

    sleep 1.1;
    my $h = post('/v1/chat/completions', $body);
    cmp_ok $h->{headers}{age}, '>=', 1, 'Age grows';
};

subtest 'a location without aigov_cache: no header, empty variable' => sub {
    my $r = post('/nocache/x', chat_body(uniq()));
    is $r->{status}, 200, 'no cache: 200';
    ok !defined $r->{headers}{'x-aigov-cache'}, 'no X-Aigov-Cache';
    ok !defined $r->{headers}{'x-cache-var'}, '$aigov_cache empty';
};

subtest 'canonical JSON: key order, whitespace, numbers agree' => sub {
    my $c = uniq();
    my $m = post('/v1/chat/completions',
                 qq({"model":"chat","messages":[{"role":"user","content":"$c"}],"temperature":1.0,"top_p":0.5}));
    is cache($m), 'MISS', 'first form: miss';

    for my $same (
        qq({ "top_p" : 5e-1 , "temperature" : 1, "messages" : [ { "content" : "$c", "role" : "user" } ], "model" : "chat" }),
        qq(\n{"messages":[{"role":"user","content":"$c"}],\r\n"model":"chat","temperature":10E-1,"top_p":0.50}\t),
        qq({"model":"ch\\u0061t","messages":[{"role":"user","content":"$c"}],"temperature":1e0,"top_p":0.5}),
    ) {
        my $h = post('/v1/chat/completions', $same);
        is cache($h), 'HIT', "equivalent body hits: $same";
        is $h->{body}, $m->{body}, 'same answer';
    }

    my $d = post('/v1/chat/completions',
                 qq({"model":"chat","messages":[{"role":"user","content":"$c"}],"temperature":1.01,"top_p":0.5}));
    is cache($d), 'MISS', 'a different number misses';

    my $arr = post('/v1/chat/completions',
                   qq({"model":"chat","messages":[{"content":"$c","role":"user"}],"temperature":1,"top_p":0.5,"stop":["a","b"]}));
    is cache($arr), 'MISS', 'an extra field misses';
    my $arr2 = post('/v1/chat/completions',
                    qq({"model":"chat","messages":[{"content":"$c","role":"user"}],"temperature":1,"top_p":0.5,"stop":["b","a"]}));
    is cache($arr2), 'MISS', 'array order matters';
};

subtest 'different model, version, headers, path, body: different entries' => sub {
    my $c = uniq();
    my $body = chat_body($c);

    my $base = post('/v1/chat/completions', $body);
    is cache($base), 'MISS', 'base: miss';
    is cache(post('/v1/chat/completions', $body)), 'HIT', 'base: hit';

    # the alias names the same model: same entry
    is cache(post('/v1/chat/completions', { %$body, model => 'chat-alias' })), 'MISS',
        'the alias is another body: miss';

    # served version: the canary header routes to v2
    my $v2 = post('/v1/chat/completions', $body, 'X-Canary' => 'always');
    is $v2->{headers}{'x-aigov-variant'}, 'v2', 'X-Canary: always -> v2';
    is cache($v2), 'MISS', 'another served version: miss';
    is $v2->{headers}{'x-served-by'}, 'candidate', 'answered by the candidate';
    my $v2h = post('/v1/chat/completions', $body, 'X-Canary' => 'always');
    is cache($v2h), 'HIT', 'v2: hit';
    is $v2h->{body}, $v2->{body}, "v2's own entry";
    isnt $v2h->{body}, $base->{body}, 'not v1 answer';
    is cache(post('/v1/chat/completions', $body)), 'HIT', 'v1 still has its entry';

    # key header
    my $t1 = post('/v1/chat/completions', $body, 'X-Tenant' => 'acme');
    is cache($t1), 'MISS', 'X-Tenant: acme: miss';
    is cache(post('/v1/chat/completions', $body, 'X-Tenant' => 'acme')), 'HIT', 'acme: hit';
    is cache(post('/v1/chat/completions', $body, 'X-Tenant' => 'globex')), 'MISS', 'globex: miss';
    is cache(post('/v1/chat/completions', $body, 'X-Tenant' => '')), 'MISS',
        'an empty header is not a missing one';
    is cache(post('/v1/chat/completions', $body, 'X-Other' => 'x')), 'HIT',
        'a header not in key_headers does not matter';

    # another path of the same location
    is cache(post('/v1/completions', $body)), 'MISS', 'another URI: miss';
    is cache(post('/v1/chat/completions?x=1', $body)), 'MISS', 'another query: miss';

    # another model on the same backend and version, same body
    my $o = post('/other/x', $body);
    is cache($o), 'MISS', 'another model: miss';
    is cache(post('/other/x', $body)), 'HIT', 'other: hit';
};

subtest 'TTL: expired entries miss' => sub {
    my $body = chat_body(uniq());
    my $m = post('/short/x', $body);
    is cache($m), 'MISS', 'miss';
    is cache(post('/short/x', $body)), 'HIT', 'hit within ttl=1s';
    sleep 1.3;
    my $e = post('/short/x', $body);
    is cache($e), 'MISS', 'expired: miss';
    isnt $e->{body}, $m->{body}, 'a new answer';
    is cache(post('/short/x', $body)), 'HIT', 'and stored again';
};

subtest 'LRU eviction in a small zone' => sub {
    my $before = counters('chat', 'tiny');
    my @bodies = map { chat_body("lru-$_-" . uniq()) } 1 .. 80;
    for my $i (0 .. $#bodies) {
        my $r = post('/tiny/x', $bodies[$i]);
        is $r->{status}, 200, "entry $i stored" unless $r->{status} == 200;
    }
    my $after = counters('chat', 'tiny');
    cmp_ok $after->{evictions}, '>', $before->{evictions}, "evictions counted ($after->{evictions})";
    cmp_ok $after->{stores}, '>=', $before->{stores} + 80, 'every answer stored';
    cmp_ok $after->{entries}, '<', 80, "fewer entries than stores ($after->{entries})";
    cmp_ok $after->{zone}{bytes}, '<=', 32 * 1024, 'within the zone';

    is cache(post('/tiny/x', $bodies[0])), 'MISS', 'the oldest entry was evicted';
    is cache(post('/tiny/x', $bodies[-1])), 'HIT', 'the newest is there';

    # a hit moves an entry to the front
    my $keep = chat_body('lru-keep-' . uniq());
    post('/tiny/x', $keep);
    for my $i (1 .. 80) {
        post('/tiny/x', chat_body("lru-more-$i-" . uniq()));
        is cache(post('/tiny/x', $keep)), 'HIT', 'kept by use' if $i % 10 == 0;
    }
};

subtest 'large answers: stored up to max_entry, also when spooled to a file' => sub {
    my $tl = counters('chat')->{too_large};

    my $body = chat_body(uniq());
    my $m = post('/big/x', $body, 'X-Fixture-Pad' => 300_000);
    is $m->{status}, 200, '300k answer: 200';
    is cache($m), 'MISS', 'miss';
    cmp_ok length($m->{body}), '>', 300_000, 'all of it';
    my $h = post('/big/x', $body, 'X-Fixture-Pad' => 300_000);
    is cache($h), 'HIT', 'stored in pieces, answered whole';
    is $h->{body}, $m->{body}, 'byte for byte';

    # over max_entry=4k of the tiny zone
    my $tb = chat_body(uniq());
    is cache(post('/tiny/x', $tb, 'X-Fixture-Pad' => 10_000)), 'MISS', 'tiny: 10k answer: miss';
    is cache(post('/tiny/x', $tb, 'X-Fixture-Pad' => 10_000)), 'MISS', 'over max_entry: not stored';

    # nginx spools a large answer to a temporary file, sendfile on
    $ng->mark;
    my $sb = chat_body(uniq());
    my $s1 = post('/big-spooled/x', $sb, 'X-Fixture-Pad' => 500_000);
    is $s1->{status}, 200, 'spooled: 200';
    cmp_ok length($s1->{body}), '>', 500_000, 'spooled: all of it';
    ok $ng->wait_for_log(qr/an upstream response is buffered to a temporary file/, timeout => 1),
        'it went through a temporary file';
    my $s2 = post('/big-spooled/x', $sb, 'X-Fixture-Pad' => 500_000);
    is cache($s2), 'HIT', 'spooled: stored';
    is $s2->{body}, $s1->{body}, 'spooled: byte for byte';

    # over max_entry (1m) of the llm zone
    my $hb = chat_body(uniq());
    is cache(post('/big/x', $hb, 'X-Fixture-Pad' => 1_100_000)), 'MISS', '1.1m answer: miss';
    my $h2 = post('/big/x', $hb, 'X-Fixture-Pad' => 1_100_000);
    is cache($h2), 'MISS', 'over max_entry: not stored';
    cmp_ok length($h2->{body}), '>', 1_100_000, 'but passed on whole';

    is counters('chat')->{too_large}, $tl + 2, 'too_large counted';
    is counters('chat', 'tiny')->{too_large}, 2, 'tiny: too_large counted';
};

subtest 'stale-if-error: a stopped model, a 5xx' => sub {
    my $body = chat_body(uniq(), model => 'flaky');
    my $m = post('/stale/x', $body);
    is cache($m), 'MISS', 'miss';
    is $m->{headers}{'x-served-by'}, 'flaky', 'from the flaky model';
    is cache(post('/stale/x', $body)), 'HIT', 'hit';
    sleep 1.3;

    # expired, the model answers 500: the stale entry instead
    my $s = post('/stale/x', $body, 'X-Fixture-Status' => '500');
    is $s->{status}, 200, 'upstream 500: 200';
    is cache($s), 'STALE', 'X-Aigov-Cache: STALE';
    is cvar($s), 'STALE', '$aigov_cache STALE';
    is $s->{body}, $m->{body}, 'the stored body';
    like $s->{headers}{'content-type'}, qr{^application/json}, 'its type';
    ok !defined $s->{headers}{'x-fixture-seq'}, "the 500's headers are gone";
    cmp_ok $s->{headers}{age}, '>=', 1, 'Age';

    my $s503 = post('/stale/x', $body, 'X-Fixture-Status' => '503');
    is cache($s503), 'STALE', 'upstream 503: stale';
    my $s404 = post('/stale/x', $body, 'X-Fixture-Status' => '404');
    is $s404->{status}, 404, 'upstream 404 is an answer: passed on';
    is cache($s404), 'MISS', '404: miss';

    # the model is down
    stop_fixture('flaky');
    $ng->mark;
    my $d = post('/stale/x', $body);
    is $d->{status}, 200, 'model down: 200';
    is cache($d), 'STALE', 'stale';
    is $d->{body}, $m->{body}, 'the stored body';
    is $d->{headers}{'x-aigov-fallback'}, 'upstream_error', 'X-Aigov-Fallback: upstream_error';

    my $none = post('/stale/x', chat_body(uniq(), model => 'flaky'));
    is $none->{status}, 502, 'no entry: the 502 stays';
    is cache($none), 'MISS', 'miss';

    # kill switch: the killed model is not served stale
    my $k = admin('POST', 'flaky/kill', { reason => 'cache test' });
    is $k->{status}, 200, 'kill';
    my $killed = post('/stale/x', $body);
    is $killed->{status}, 503, 'killed: 503';
    like $killed->{headers}{'content-type'}, qr{problem\+json}, 'problem';
    ok !defined $killed->{headers}{'x-aigov-cache'}, 'the cache did not run';
    is admin('POST', 'flaky/unkill')->{status}, 200, 'unkill';

    # the kill and unkill moved the runtime version: the old entry is gone
    my $after = post('/stale/x', $body);
    is $after->{status}, 502, 'after a runtime change the entry no longer answers';

    # beyond stale_if_error
    start_fixture(name => 'flaky', version => '2.0.0');
    my $b2 = chat_body(uniq(), model => 'flaky');
    is cache(post('/stale-short/x', $b2)), 'MISS', 'stale-short: stored';
    stop_fixture('flaky');
    sleep 1.3;
    my $in = post('/stale-short/x', $b2);
    is cache($in), 'STALE', 'within ttl + stale_if_error: stale';
    sleep 1.2;
    my $out = post('/stale-short/x', $b2);
    is $out->{status}, 502, 'beyond it: 502';

    my @unexpected = grep { !/connect\(\) failed \(111: Connection refused\)/ }
                     $ng->error_log_check;
    is_deeply \@unexpected, [], 'only the refused connections in the log';
    start_fixture(name => 'flaky', version => '2.0.0');
    $ng->mark;
    my $fresh = post('/stale/x', $b2);
    is cache($fresh), 'MISS', 'model back: miss';
    is $fresh->{status}, 200, 'model back: 200';
};

subtest 'never stored: errors, partial, streamed, other types, invalid JSON' => sub {
    my $nc = counters('chat')->{not_cacheable};

    my %cases = (
        'status 500'        => ['X-Fixture-Status' => '500'],
        'status 201'        => ['X-Fixture-Status' => '201'],
        'truncated length'  => ['X-Fixture-Truncate' => 'length'],
        'truncated chunked' => ['X-Fixture-Truncate' => 'chunked'],
        'SSE'               => ['X-Fixture-Stream' => '3'],
        'text/plain'        => ['X-Fixture-Content-Type' => 'text/plain'],
        'text/html'         => ['X-Fixture-Content-Type' => 'text/html'],
        'garbage JSON'      => ['X-Fixture-Garbage' => '1'],
        'no-store'          => ['X-Fixture-Response-Header' => 'Cache-Control: no-store'],
        'private'           => ['X-Fixture-Response-Header' => 'Cache-Control: private, max-age=60'],
        'Set-Cookie'        => ['X-Fixture-Response-Header' => 'Set-Cookie: a=b'],
        'Vary: *'           => ['X-Fixture-Response-Header' => 'Vary: *'],
        'gzip'              => ['X-Fixture-Response-Header' => 'Content-Encoding: gzip'],
    );

    $ng->mark;
    for my $name (sort keys %cases) {
        my $body = chat_body(uniq());
        my $r1 = post('/short/x', $body, @{ $cases{$name} });
        is cache($r1), 'MISS', "$name: miss";
        my $r2 = post('/short/x', $body, @{ $cases{$name} });
        is cache($r2), 'MISS', "$name: not stored";
        ok defined seq($r2), "$name: the model answered again";
    }
    is counters('chat')->{not_cacheable}, $nc + 2 * keys %cases,
        'each counted as not cacheable';
    $ng->error_log_clean_ok('no errors beyond the truncated upstreams',
        allow => [ qr/upstream prematurely closed connection/ ]);

    # listed types are stored
    my $body = chat_body(uniq());
    is cache(post('/types/x', $body, 'X-Fixture-Content-Type' => 'text/plain; charset=utf-8')),
        'MISS', 'content_types lists text/plain: miss';
    my $t = post('/types/x', $body);
    is cache($t), 'HIT', 'stored';
    is $t->{headers}{'content-type'}, 'text/plain; charset=utf-8', 'with its type';
};

subtest 'request bodies that have no key: BYPASS, still proxied' => sub {
    my $bp = counters('chat')->{bypass};
    my $tl = counters('chat')->{too_large};

    my @bad = (
        ['not JSON', 'this is not json'],
        ['truncated JSON', '{"model":"chat","messages":['],
        ['duplicate keys', '{"a":1,"a":2}'],
        ['invalid UTF-8', qq({"a":"\xff"})],
        ['NUL', qq({"a":1}\0)],
        ['too deep', ('[' x 200) . (']' x 200)],
        ['huge exponent', '{"a":1e9999999999}'],
        ['empty', ''],
    );
    for my $b (@bad) {
        for my $n (1, 2) {
            my $r = req(method => 'POST', path => '/short/x', body => $b->[1],
                        headers => ['Content-Type' => 'application/json']);
            is $r->{status}, 200, "$b->[0] ($n): proxied";
            is cache($r), 'BYPASS', "$b->[0] ($n): BYPASS";
            ok defined seq($r), "$b->[0] ($n): the model answered";
        }
    }

    # a body larger than client_body_buffer_size (1k here): in a temp file
    my $big = $JSON->encode(chat_body('x' x (100 * 1024)));
    for my $n (1, 2) {
        my $r = post('/small-body/x', $big);
        is $r->{status}, 200, "100k body ($n): proxied";
        is cache($r), 'BYPASS', "100k body ($n): BYPASS";
        is $r->{json}{body_bytes}, length $big, "100k body ($n): all of it reached the model";
    }
    my $big2 = $JSON->encode(chat_body('y' x (1900 * 1024)));
    my $r = post('/small-body/x', $big2);
    is $r->{status}, 200, '1.9m body: proxied';
    is cache($r), 'BYPASS', '1.9m body: BYPASS';

    my $small = chat_body(uniq());
    is cache(post('/small-body/x', $small)), 'MISS', 'a small body there: miss';
    is cache(post('/small-body/x', $small)), 'HIT', 'hit';

    # with aigov_route openai a body over client_body_buffer_size is a 413
    my $r413 = post('/v1/chat/completions', $big);
    is $r413->{status}, 413, 'openai route: 413';
    ok !defined $r413->{headers}{'x-aigov-cache'}, 'before the cache';

    cmp_ok counters('chat')->{bypass}, '>=', $bp + 2 * @bad + 3, 'bypass counted';
    cmp_ok counters('chat')->{too_large}, '>=', $tl + 3, 'too_large counted';

    # methods
    my $g = req(method => 'GET', path => '/short/get?q=1');
    is cache($g), 'MISS', 'GET without a body: a key of its own';
    is cache(req(method => 'GET', path => '/short/get?q=1')), 'HIT', 'GET: hit';
    is cache(req(method => 'PUT', path => '/short/x', body => '{}',
                 headers => ['Content-Type' => 'application/json'])), 'BYPASS', 'PUT: BYPASS';
    my $head = req(method => 'HEAD', path => '/short/get?q=1');
    is $head->{status}, 200, 'HEAD: 200';
    is cache($head), 'BYPASS', 'HEAD: BYPASS';

    # a chunked request body
    my $cb = $JSON->encode(chat_body(uniq()));
    my $c1 = req(method => 'POST', path => '/short/x', chunks => [substr($cb, 0, 10), substr($cb, 10)],
                 headers => ['Content-Type' => 'application/json']);
    is cache($c1), 'MISS', 'chunked body: miss';
    is cache(post('/short/x', $cb)), 'HIT', 'the same body in one piece: hit';
};

subtest 'aigov_cache_bypass: not answered from the cache, refreshes it' => sub {
    my $body = chat_body(uniq());
    my $a = post('/bypass/x', $body);
    is cache($a), 'MISS', 'miss';
    is cache(post('/bypass/x', $body)), 'HIT', 'hit';
    my $b = post('/bypass/x', $body, 'X-Refresh' => '1');
    is cache($b), 'BYPASS', 'X-Refresh: 1: BYPASS';
    ok defined seq($b), 'the model answered';
    my $h = post('/bypass/x', $body);
    is cache($h), 'HIT', 'hit';
    is $h->{body}, $b->{body}, 'the refreshed answer';
    is cache(post('/bypass/x', $body, 'X-Refresh' => '0')), 'HIT', '"0" does not bypass';
};

subtest 'invalidation: runtime rollback, weights; reload keeps, version change misses' => sub {
    my $body = chat_body(uniq());
    my $m = post('/v1/chat/completions', $body);
    is cache($m), 'MISS', 'miss';
    is cache(post('/v1/chat/completions', $body)), 'HIT', 'hit';

    # a reload with the same config keeps the zone and the entries
    ok $ng->reload(nginx_conf(http_conf(), workers => 2)), 'reload';
    my $kept = post('/v1/chat/completions', $body);
    is cache($kept), 'HIT', 'hit after a reload';
    is $kept->{body}, $m->{body}, 'same answer';

    is admin('POST', 'chat/rollback', { reason => 'cache test' })->{status}, 200, 'runtime rollback';
    my $rb = post('/v1/chat/completions', $body);
    is $rb->{headers}{'x-aigov-variant'}, 'v1', 'still v1';
    is cache($rb), 'MISS', 'rollback: miss';
    is cache(post('/v1/chat/completions', $body)), 'HIT', 'stored again';

    is admin('POST', 'chat/unrollback')->{status}, 200, 'unrollback';
    is cache(post('/v1/chat/completions', $body)), 'MISS', 'unrollback: miss';

    is admin('PUT', 'chat/weights', { weights => { v2 => '0%' } })->{status}, 200, 'weights';
    is cache(post('/v1/chat/completions', $body)), 'MISS', 'weights change: miss';
    my $again = post('/v1/chat/completions', $body);
    is cache($again), 'HIT', 'hit';

    # another served version by reload
    ok $ng->reload(nginx_conf(http_conf(v1_version => '1.4.3'), workers => 2)),
        'reload: v1 is now 1.4.3';
    my $nv = post('/v1/chat/completions', $body);
    is $nv->{headers}{'x-aigov-model-version'}, '1.4.3', 'served version 1.4.3';
    is cache($nv), 'MISS', 'new version: miss';
    ok $ng->reload(nginx_conf(http_conf(), workers => 2)), 'reload: back to 1.4.2';
    my $back = post('/v1/chat/completions', $body);
    is cache($back), 'HIT', 'the 1.4.2 entry is still there';
    is $back->{body}, $again->{body}, 'its answer';
};

subtest 'fleet: entries shared through Redis, fail open' => sub {
    my $nb = start_nginx(nginx_conf(http_conf(), name => 'b', workers => 1));
    sleep 0.5;      # both nodes synced from Redis

    my $body = chat_body(uniq(), model => 'fleetm');
    my $before = fixture_count();

    my $a = post('/fleet/x', $body);
    is cache($a), 'MISS', 'node a: miss';
    my $key;
    ok wait_for(sub {
        my $keys = redis_cmd($RPORT, 'KEYS', 'aigov:cache:*');
        ($key) = @{ $keys // [] };
        return defined $key;
    }, timeout => 3), 'written to Redis';
    like $key // '', qr/^aigov:cache:[0-9a-f]{64}$/, "key $key";
    my $pttl = redis_cmd($RPORT, 'PTTL', $key);
    ok $pttl > 50_000 && $pttl <= 60_000, "PX ttl ($pttl ms)";

    my $b = $nb->post_json('/fleet/x', $body);
    is $b->{status}, 200, 'node b: 200';
    is cache($b), 'HIT', 'node b: hit from Redis';
    is $b->{body}, $a->{body}, 'the same answer';
    is fixture_count(), $before + 1, 'the model was called once';
    is cache($nb->post_json('/fleet/x', $body)), 'HIT', 'node b: then a local hit';

    my $doc = $nb->get('/status')->{json};
    my ($fm) = grep { $_->{name} eq 'fleetm' } @{ $doc->{models} };
    is $fm->{cache}{llm}{redis_hits}, 1, 'node b: one redis hit';

    # a malformed entry is ignored
    my $bad = chat_body(uniq(), model => 'fleetm');
    post('/fleet/x', $bad);
    my $k2;
    wait_for(sub {
        ($k2) = grep { $_ ne $key } @{ redis_cmd($RPORT, 'KEYS', 'aigov:cache:*') // [] };
        return defined $k2;
    }, timeout => 3);
    ok defined $k2, 'a second key';
    redis_cmd($RPORT, 'SET', $k2, 'AGC1 garbage');
    is cache($nb->post_json('/fleet/x', $bad)), 'MISS', 'node b: malformed entry: miss';

    # Redis stopped: a miss after the timeout, never an error
    redis_sigstop($RPORT);
    my $t0 = time;
    my $s = $nb->post_json('/fleet/x', chat_body(uniq(), model => 'fleetm'));
    my $dt = time - $t0;
    redis_sigcont($RPORT);
    is $s->{status}, 200, 'Redis stopped: 200';
    is cache($s), 'MISS', 'miss';
    cmp_ok $dt, '<', 3, sprintf('answered without waiting for Redis (%.2fs)', $dt);

    $nb->error_log_clean_ok('node b: error log clean');
    $nb->stop;
};

subtest 'status counters' => sub {
    my $c = counters('chat');
    for my $k (qw(hits misses stale bypass stores evictions expired too_large
                  not_cacheable redis_hits redis_errors entries bytes)) {
        ok defined $c->{$k}, "chat: $k ($c->{$k})";
    }
    cmp_ok $c->{hits}, '>', 10, 'hits';
    cmp_ok $c->{misses}, '>', 10, 'misses';
    cmp_ok $c->{entries}, '>', 0, 'entries';
    is $c->{zone}{size}, 4 * 1024 * 1024, 'zone size';
    is $c->{zone}{max_entry}, 1024 * 1024, 'max_entry default 1m';
    my $f = counters('flaky');
    cmp_ok $f->{stale}, '>=', 4, "flaky: stale ($f->{stale})";
    is counters('chat', 'tiny')->{zone}{max_entry}, 4096, 'tiny: max_entry=4k';
};

subtest 'concurrent requests, keep-alive after hits' => sub {
    my $body = $JSON->encode(chat_body(uniq()));
    my @res = http_parallel(map { { method => 'POST', path => '/v1/chat/completions', body => $body,
                                    headers => ['Content-Type' => 'application/json'] } } 1 .. 12);
    is scalar(grep { $_->{status} == 200 } @res), 12, 'all 200';
    is scalar(grep { cache($_) =~ /^(?:HIT|MISS)$/ } @res), 12, 'each a hit or a miss';
    is scalar(grep { $_->{json} && $_->{json}{object} eq 'chat.completion' } @res), 12,
        'each a whole answer';
    my %answers = map { $_->{body} => 1 } @res;

    for my $i (1 .. 5) {
        my $r = req(method => 'POST', path => '/v1/chat/completions', body => $body,
                    headers => ['Content-Type' => 'application/json']);
        is cache($r), 'HIT', "keep-alive hit $i";
        ok $answers{ $r->{body} }, "hit $i: one of the answers the model gave";
    }
};

$ng->error_log_clean_ok('error log clean',
    allow => [ qr/connect\(\) failed \(111: Connection refused\)/,
               qr/upstream prematurely closed connection/ ]);

# --- nginx -t -----------------------------------------------------------------------

my $BASE = <<'EOF';
    upstream u1 { server 127.0.0.1:9001; }
    aigov_zone z:1m;
    aigov_model chat { variant v1 u1 version=1 stable; }
EOF

sub conf_with {
    my ($http, $loc) = @_;
    return nginx_conf($BASE . $http . <<"EOF");
    server {
        listen 127.0.0.1:%%PORT%%;
        location /v1/ {
            aigov_route openai;
$loc
            proxy_pass http://\$aigov_upstream;
        }
        location /plain/ {
            proxy_pass http://u1;
        }
    }
EOF
}

my @errors = (
    ['zone without size', 'aigov_cache_zone c;', 'aigov_cache zone=c;',
     qr/invalid aigov_cache_zone "c": use "name:size"/],
    ['zone bad size', 'aigov_cache_zone c:lots;', 'aigov_cache zone=c;',
     qr/invalid size "lots" in aigov_cache_zone "c:lots"/],
    ['zone too small', 'aigov_cache_zone c:8k;', 'aigov_cache zone=c;',
     qr/aigov_cache_zone "c:8k" is too small: at least 32k/],
    ['zone bad parameter', 'aigov_cache_zone c:1m big=1;', 'aigov_cache zone=c;',
     qr/invalid parameter "big=1" in aigov_cache_zone/],
    ['zone bad max_entry', 'aigov_cache_zone c:1m max_entry=huge;', 'aigov_cache zone=c;',
     qr/invalid "max_entry=huge" in aigov_cache_zone: use a size like 512k/],
    ['zone max_entry too large', 'aigov_cache_zone c:1m max_entry=600k;', 'aigov_cache zone=c;',
     qr/"max_entry=600k" in aigov_cache_zone "c:1m" is more than half of the zone/],
    ['zone twice', "aigov_cache_zone c:1m;\naigov_cache_zone c:2m;", 'aigov_cache zone=c;',
     qr/duplicate aigov_cache_zone "c"/],
    ['zone named like aigov_zone', 'aigov_cache_zone z:1m;', 'aigov_cache zone=z;',
     qr/the shared memory zone "z" is already declared for a different use/],
    ['unknown zone', 'aigov_cache_zone c:1m;', 'aigov_cache zone=nope;',
     qr/aigov_cache in \S+:\d+ names unknown zone "nope": declare it with "aigov_cache_zone nope:SIZE;"/],
    ['no zone=', 'aigov_cache_zone c:1m;', 'aigov_cache ttl=5s;',
     qr/"aigov_cache" needs zone=NAME \(or "off"\)/],
    ['empty zone=', 'aigov_cache_zone c:1m;', 'aigov_cache zone=;',
     qr/empty zone name in "aigov_cache"/],
    ['bad ttl', 'aigov_cache_zone c:1m;', 'aigov_cache zone=c ttl=soon;',
     qr/invalid "ttl=soon" in "aigov_cache": use a time like 60s/],
    ['zero ttl', 'aigov_cache_zone c:1m;', 'aigov_cache zone=c ttl=0;',
     qr/invalid "ttl=0" in "aigov_cache": use a time like 60s/],
    ['bad stale_if_error', 'aigov_cache_zone c:1m;', 'aigov_cache zone=c stale_if_error=x;',
     qr/invalid "stale_if_error=x" in "aigov_cache": use a time like 60s or 0/],
    ['bad redis_timeout', 'aigov_cache_zone c:1m;', 'aigov_cache zone=c redis_timeout=-1;',
     qr/invalid "redis_timeout=-1" in "aigov_cache"/],
    ['empty key header', 'aigov_cache_zone c:1m;', 'aigov_cache zone=c key_headers=A,,B;',
     qr/empty item in "key_headers=A,,B" of "aigov_cache"/],
    ['bad key header', 'aigov_cache_zone c:1m;', 'aigov_cache zone=c key_headers=X(Y);',
     qr/invalid header name "X\(Y\)"/],
    ['bad media type', 'aigov_cache_zone c:1m;', 'aigov_cache zone=c content_types=json;',
     qr/invalid media type "json" in "content_types=json" of "aigov_cache": use type\/subtype/],
    ['SSE type', 'aigov_cache_zone c:1m;',
     'aigov_cache zone=c content_types=application/json,text/event-stream;',
     qr/"aigov_cache" never stores streamed responses: remove text\/event-stream from "content_types=application\/json,text\/event-stream"/],
    ['bad parameter', 'aigov_cache_zone c:1m;', 'aigov_cache zone=c redis=maybe;',
     qr/invalid parameter "redis=maybe" in "aigov_cache"/],
    ['redis without aigov_redis', 'aigov_cache_zone c:1m;', 'aigov_cache zone=c redis=on;',
     qr/"aigov_cache" in \S+:\d+ has redis=on but there is no "aigov_redis" in the http block/],
    ['duplicate', 'aigov_cache_zone c:1m;', "aigov_cache zone=c;\naigov_cache zone=c;",
     qr/"aigov_cache" directive is duplicate/],
    ['bypass without args', 'aigov_cache_zone c:1m;', "aigov_cache zone=c;\naigov_cache_bypass;",
     qr/invalid number of arguments in "aigov_cache_bypass" directive/],
);

for my $e (@errors) {
    my ($name, $http, $loc, $re) = @$e;
    my ($ok, $out) = nginx_t(conf_with("    $http\n", "            $loc"));
    ok !$ok, "nginx -t fails: $name";
    my @emerg = grep { /\[emerg\]/ } split /\n/, $out;
    is scalar(@emerg), 1, "$name: one [emerg]" or diag $out;
    like $emerg[0] // '', $re, "$name: message" or diag $out;
}

{
    my ($ok, $out) = nginx_t(nginx_conf($BASE . <<'EOF'));
    aigov_cache_zone c:1m;
    server {
        listen 127.0.0.1:%%PORT%%;
        location /plain/ {
            aigov_cache zone=c;
            proxy_pass http://u1;
        }
    }
EOF
    ok !$ok, 'aigov_cache in a location without aigov_route fails';
    like $out, qr/\[emerg\] \d+#\d+: "aigov_cache" in \S+:\d+ is in a location without "aigov_route": nothing there to cache/,
        'message' or diag $out;
}

{
    # inherited from the server level: locations without aigov_route ignore it
    my ($ok, $out) = nginx_t(nginx_conf($BASE . <<'EOF'));
    aigov_cache_zone c:1m max_entry=64k;
    aigov_redis 127.0.0.1:9;
    aigov_cache zone=c ttl=10m stale_if_error=0 redis=on redis_timeout=20ms
                key_headers=Authorization content_types=application/json,application/x-ndjson;
    server {
        listen 127.0.0.1:%%PORT%%;
        location /v1/ {
            aigov_route openai;
            proxy_pass http://$aigov_upstream;
        }
        location /plain/ {
            proxy_pass http://u1;
        }
        location /off/ {
            aigov_route openai;
            aigov_cache off;
            proxy_pass http://$aigov_upstream;
        }
    }
EOF
    ok $ok, 'good: inherited from http, "off", every parameter' or diag $out;
}

done_testing;
