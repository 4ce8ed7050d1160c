#!/usr/bin/perl
# Shadow traffic: a sample of a model's requests, body included, mirrored to
# a candidate variant over the shadow's own connection.  The primary never
# waits for it (its response and keepalive connection go on while the
# shadow is still busy), a down / resetting / garbage-answering / slow
# shadow changes nothing for the client, bounds on body size and
# concurrency drop and count, and the answers are compared: status, latency,
# JSON paths with a tolerance, sampled diff records to the log and Redis.
#
# The shadow fixture runs with --header-prefix X-Shadow-: a request header
# X-Shadow-Fixture-Delay acts on the shadow only.  Both fixtures log every
# request with timestamps (--request-log), so "the primary answered before
# the shadow finished" is read from the logs, not from timing thresholds.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use AigovTest;
use Digest::SHA qw(sha256_hex);
use JSON::PP ();
use Time::HiRes qw(time sleep);

my $JSON = JSON::PP->new->utf8->canonical;
my $tmp = tmp_dir();
my $SHADOW_LOG  = "$tmp/logs/shadow-requests.log";
my $PRIMARY_LOG = "$tmp/logs/primary-requests.log";

start_fixture(name => 'stable', version => '1.4.2',
              args => ['--request-log', $PRIMARY_LOG]);
start_fixture(name => 'shadow', version => '2.0.0',
              args => ['--request-log', $SHADOW_LOG, '--header-prefix', 'X-Shadow-']);
fixture_port('nowhere');    # never started: nothing listens there
my $rport = start_redis();

# --- configuration -------------------------------------------------------------

my $MODELS = <<'EOF';
    upstream u_stable  { server 127.0.0.1:%%FIXTURE_stable%%; keepalive 16; }
    upstream u_shadow  { server 127.0.0.1:%%FIXTURE_shadow%%; }
    upstream u_down    { server 127.0.0.1:%%FIXTURE_nowhere%%; }
    upstream u_two     { server 127.0.0.1:%%FIXTURE_shadow%%;
                         server 127.0.0.1:%%FIXTURE_nowhere%% down;
                         server 127.0.0.1:%%FIXTURE_nowhere%% backup; }

    aigov_zone  aigov_shadow:1m;
    aigov_redis 127.0.0.1:%%REDIS_PORT%%;

    aigov_model all {
        variant v1 u_stable version=1.4.2 stable;
        variant v2 u_shadow version=2.0.0;
        shadow  v2 100% compare=$.usage.total_tokens,$.model tolerance=0.01
                diff_sample=100%;
    }

    aigov_model strict {
        variant v1 u_stable version=1.4.2 stable;
        variant v2 u_shadow version=2.0.0;
        shadow  v2 100% compare=$.usage.total_tokens,$.model
                diff_sample=100% diff_stream=on;
    }

    aigov_model quarter {
        variant v1 u_stable version=1.4.2 stable;
        variant v2 u_shadow version=2.0.0;
        shadow  v2 25%;
    }

    aigov_model down {
        variant v1 u_stable version=1.4.2 stable;
        variant v2 u_down   version=2.0.0;
        shadow  v2 100%;
    }

    aigov_model tight {
        variant v1 u_stable version=1.4.2 stable;
        variant v2 u_shadow version=2.0.0;
        shadow  v2 100% max_concurrent=2 timeout=10s;
    }

    aigov_model small {
        variant v1 u_stable version=1.4.2 stable;
        variant v2 u_shadow version=2.0.0;
        shadow  v2 100% max_body=1k;
    }

    aigov_model hasty {
        variant v1 u_stable version=1.4.2 stable;
        variant v2 u_shadow version=2.0.0;
        shadow  v2 100% timeout=300ms;
    }

    aigov_model hostport {
        variant v1 u_stable version=1.4.2 stable;
        variant v2 127.0.0.1:%%FIXTURE_shadow%% version=2.0.0;
        shadow  v2 100%;
    }

    aigov_model skipdown {
        variant v1 u_stable version=1.4.2 stable;
        variant v2 u_two    version=2.0.0;
        shadow  v2 100%;
    }

    # the candidate itself answers half of the traffic: only the stable
    # half is shadowed (nothing to compare the candidate with)
    aigov_model half {
        variant v1 u_stable version=1.4.2 stable;
        variant v2 u_shadow version=2.0.0;
        canary  v2 50%;
        shadow  v2 100%;
    }

    aigov_model smallresp {
        variant v1 u_stable version=1.4.2 stable;
        variant v2 u_shadow version=2.0.0;
        shadow  v2 100% max_response=1k compare=$.served_by;
    }

    aigov_model noka {
        variant v1 u_stable version=1.4.2 stable;
        variant v2 u_shadow version=2.0.0;
        shadow  v2 100% keepalive=0;
    }

    aigov_model plain {
        variant v1 u_stable version=1.4.2 stable;
        variant v2 u_shadow version=2.0.0;
    }

    server {
        listen 127.0.0.1:%%PORT%%;
        client_body_buffer_size 4m;
        client_max_body_size    16m;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        add_header X-Conn     $connection always;
        add_header X-Conn-Req $connection_requests always;
        add_header X-Shadow   $aigov_shadow always;

        location /m/ {
            aigov_route model=$arg_m;
            proxy_pass http://$aigov_upstream;
        }

        location /v1/ {
            aigov_route openai;
            proxy_pass http://$aigov_upstream;
        }

        location /denied/ {
            deny all;
            aigov_route model=$arg_m;
            proxy_pass http://$aigov_upstream;
        }

        location /tiny-buffer/ {
            client_body_buffer_size 16k;
            aigov_route model=$arg_m;
            proxy_pass http://$aigov_upstream;
        }

        location = /status {
            aigov_status;
        }
    }
EOF

my $ng = start_nginx(nginx_conf($MODELS));

# --- helpers -------------------------------------------------------------------

my $SEQ = 0;
sub rid { sprintf('r%d-%d', $$, ++$SEQ) }

sub read_log {
    my ($file) = @_;
    open(my $fh, '<', $file) or return ();
    my @r;
    while (my $l = <$fh>) {
        my $j = eval { $JSON->decode($l) } or next;
        push @r, $j;
    }
    close $fh;
    return @r;
}

# the log entry of the request with X-Req-Id $id (waits for it)
sub logged {
    my ($file, $id, %o) = @_;
    my $found;
    wait_for(sub {
        ($found) = grep { ($_->{headers}{'x-req-id'} // '') eq $id } read_log($file);
        $found;
    }, timeout => $o{timeout} // 12);
    return $found;
}

sub shadow_logged  { logged($SHADOW_LOG, @_) }
sub primary_logged { logged($PRIMARY_LOG, @_) }

sub status_doc {
    my $r = http_get('/status');
    return $r->{json};
}

sub shadow_status {
    my ($model) = @_;
    my $doc = status_doc() or return undef;
    my ($m) = grep { $_->{name} eq $model } @{ $doc->{models} };
    return $m ? $m->{shadow} : undef;
}

sub counter {
    my ($model, $name) = @_;
    my $s = shadow_status($model) or return -1;
    return $s->{$name};
}

sub wait_counter {
    my ($model, $name, $want, %o) = @_;
    my $got;
    wait_for(sub { $got = counter($model, $name); $got >= $want }, timeout => $o{timeout} // 12);
    return $got;
}

sub chat {
    my ($model, %h) = @_;
    my $body = $JSON->encode({ model => $model,
                               messages => [ { role => 'user', content => 'hi' } ] });
    my $id = rid();
    my $r = http_req(method => 'POST', path => '/v1/chat/completions',
                     headers => { 'Content-Type' => 'application/json', 'X-Req-Id' => $id, %h },
                     body => $body);
    $r->{id} = $id;
    $r->{done_at} = time;
    return $r;
}

sub post {
    my ($model, $body, %h) = @_;
    my $id = rid();
    my $r = http_req(method => 'POST', path => "/m/x?m=$model",
                     headers => { 'X-Req-Id' => $id, %h }, body => $body,
                     timeout => 20);
    $r->{id} = $id;
    $r->{done_at} = time;
    return $r;
}

sub get {
    my ($model, %h) = @_;
    my $id = rid();
    my $r = http_req(method => 'GET', path => "/m/x?m=$model",
                     headers => { 'X-Req-Id' => $id, %h });
    $r->{id} = $id;
    $r->{done_at} = time;
    return $r;
}

# --- the shadow gets the request, body included --------------------------------

{
    my $r = chat('all', 'X-Custom' => 'kept', 'Accept-Encoding' => 'gzip');
    is $r->{status}, 200, 'shadowed chat: primary answers 200';
    is $r->{headers}{'x-served-by'}, 'stable', 'shadowed chat: the stable variant answers';
    is $r->{headers}{'x-shadow'}, 'sent', 'shadowed chat: $aigov_shadow is "sent"';

    my $p = primary_logged($r->{id});
    my $s = shadow_logged($r->{id});
    ok $s, 'shadowed chat: the shadow got the request' or BAIL_OUT('no shadow request');
    is $s->{method}, 'POST', 'shadow: method';
    is $s->{path}, '/v1/chat/completions', 'shadow: URI';
    is $s->{body_sha256}, $p->{body_sha256}, 'shadow: the same body as the primary';
    is $s->{headers}{'content-length'}, $p->{body_bytes}, 'shadow: Content-Length';
    is $s->{headers}{'x-custom'}, 'kept', 'shadow: end-to-end headers are copied';
    is $s->{headers}{'x-aigov-shadow'}, 'all', 'shadow: X-Aigov-Shadow names the model';
    is $s->{headers}{'host'}, 'u_shadow', 'shadow: Host is the upstream name';
    ok !exists $s->{headers}{'connection'}, 'shadow: HTTP/1.1 keepalive to the shadow (keepalive=16)';
    ok !exists $s->{headers}{'accept-encoding'}, 'shadow: no Accept-Encoding (comparable answers)';

    is wait_counter('all', 'compared', 1), 1, 'shadowed chat: compared once';
    my $st = shadow_status('all');
    is_deeply [ @$st{qw(sampled sent completed errors timeouts status_match status_mismatch agreed disagreed in_flight)} ],
              [ 1, 1, 1, 0, 0, 1, 0, 1, 0, 0 ],
              'shadowed chat: counters (sampled, sent, completed, errors, timeouts, status match/mismatch, agreed/disagreed, in flight)';
    is_deeply [ map { [ $_->{path}, $_->{agreed}, $_->{disagreed} ] } @{ $st->{paths} } ],
              [ [ '$.usage.total_tokens', 1, 0 ], [ '$.model', 1, 0 ] ],
              'shadowed chat: per path counters';
    is $st->{variant}, 'v2', 'status: shadow variant';
    is $st->{percent}, '100%', 'status: percent';
    ok defined $st->{latency_ms}{primary_avg} && defined $st->{latency_ms}{shadow_avg},
        'status: latency averages';
}

# GET without a body, chunked request bodies, an implicit host:port upstream
{
    my $r = get('all');
    is $r->{status}, 200, 'GET: primary 200';
    my $s = shadow_logged($r->{id});
    ok $s && $s->{method} eq 'GET', 'GET: shadowed';
    ok $s && !exists $s->{headers}{'content-length'}, 'GET: no Content-Length';
    is $s && $s->{path}, '/m/x?m=all', 'GET: the URI with its arguments';

    my $id = rid();
    $r = http_req(method => 'POST', path => '/m/x?m=all', headers => { 'X-Req-Id' => $id },
                  chunks => [ 'abc', 'defgh', 'i' x 1000 ]);
    is $r->{status}, 200, 'chunked body: primary 200';
    $s = shadow_logged($id);
    is $s && $s->{body_sha256}, sha256_hex('abcdefgh' . ('i' x 1000)), 'chunked body: the shadow got it whole';
    is $s && $s->{headers}{'content-length'}, 1008, 'chunked body: sent with Content-Length';
    ok $s && !exists $s->{headers}{'transfer-encoding'}, 'chunked body: no Transfer-Encoding';

    $r = post('hostport', 'x' x 100);
    is $r->{status}, 200, 'host:port variant: primary 200';
    ok shadow_logged($r->{id}), 'host:port variant: shadowed';

    $r = post('skipdown', 'y' x 10);
    ok shadow_logged($r->{id}), 'upstream with down and backup servers: the live one gets it';
    is wait_counter('skipdown', 'completed', 1), 1, 'upstream with down and backup servers: completed';
}

# a shadow request is never shadowed again (no loops through nginx)
{
    my $before = counter('all', 'sampled');
    my $r = post('all', 'loop?', 'X-Aigov-Shadow' => 'all');
    is $r->{status}, 200, 'X-Aigov-Shadow: primary 200';
    is $r->{headers}{'x-shadow'}, undef, 'X-Aigov-Shadow: not sampled';
    is counter('all', 'sampled'), $before, 'X-Aigov-Shadow: not counted';
}

# a request the access phase denies is never shadowed
{
    my $sent = counter('all', 'sent');
    my $id = rid();
    my $r = http_req(method => 'POST', path => '/denied/x?m=all', body => 'secret',
                     headers => { 'X-Req-Id' => $id });
    is $r->{status}, 403, 'access denied: 403';
    is $r->{headers}{'x-shadow'}, 'sampled', 'access denied: $aigov_shadow is "sampled" (not launched)';
    my $r2 = post('all', 'next');
    ok shadow_logged($r2->{id}), 'access denied: (the next request is shadowed)';
    ok !shadow_logged($id, timeout => 0.2), 'access denied: not shadowed';
    is counter('all', 'sent'), $sent + 1, 'access denied: not sent';
}

# --- connections to the shadow: kept alive, or not -----------------------------

{
    my @p = map { shadow_logged(post('all', "ka$_")->{id}) } 1 .. 3;
    is scalar(grep { $_ } @p), 3, 'keepalive: three shadows';
    is_deeply [ map { $_->{client_port} } @p ], [ ($p[0]{client_port}) x 3 ],
        'keepalive: one connection to the shadow carried them all';

    @p = map { shadow_logged(post('noka', "nk$_")->{id}) } 1 .. 3;
    is_deeply [ map { $_->{headers}{connection} } @p ], [ ('close') x 3 ],
        'keepalive=0: Connection: close';
    my %ports = map { $_->{client_port} => 1 } @p;
    is scalar(keys %ports), 3, 'keepalive=0: a connection each';

    # the shadow closes each connection after answering, without saying so:
    # a cached connection found closed is replaced, never an error
    my %b = map { $_ => counter('all', $_) } qw(errors completed);
    my @ids = map { post('all', "stale$_", 'X-Shadow-Fixture-Close' => 1)->{id} } 1 .. 20;
    is scalar(grep { shadow_logged($_) } @ids), 20, 'closed by the shadow: all 20 shadowed';
    is wait_counter('all', 'completed', $b{completed} + 20), $b{completed} + 20,
        'closed by the shadow: all 20 completed';
    is counter('all', 'errors'), $b{errors}, 'closed by the shadow: no errors';
}

# --- bodies over 1 MiB, and the bounds ---------------------------------------------

{
    my $big = join('', map { chr(32 + $_ % 90) } 1 .. 3 * 1024 * 1024);
    my $r = post('all', $big);
    is $r->{status}, 200, '3 MiB body: primary 200';
    my $s = shadow_logged($r->{id}, timeout => 15);
    is $s && $s->{body_bytes}, length($big), '3 MiB body: the shadow got all of it';
    is $s && $s->{body_sha256}, sha256_hex($big), '3 MiB body: byte for byte';

    my $before = counter('small', 'dropped_body_too_large');
    $r = post('small', 'z' x 2048);
    is $r->{status}, 200, 'body over max_body: primary 200';
    is $r->{headers}{'x-shadow'}, 'body_too_large', 'body over max_body: $aigov_shadow';
    is counter('small', 'dropped_body_too_large'), $before + 1, 'body over max_body: dropped and counted';
    $r = post('small', 'z' x 1000);
    ok shadow_logged($r->{id}), 'body under max_body: shadowed';

    my $id = rid();
    $r = http_req(method => 'POST', path => '/m/x?m=small', headers => { 'X-Req-Id' => $id },
                  chunks => [ 'c' x 1000, 'c' x 1000 ]);
    is $r->{status}, 200, 'chunked body over max_body: primary 200';
    is counter('small', 'dropped_body_too_large'), $before + 2,
        'chunked body over max_body: dropped once its length is known';

    # over client_body_buffer_size: nginx buffers it to a temp file, the
    # shadow never reads it back
    $before = counter('all', 'dropped_body_too_large');
    $id = rid();
    $r = http_req(method => 'POST', path => '/tiny-buffer/x?m=all',
                  headers => { 'X-Req-Id' => $id }, body => 'q' x 100_000);
    is $r->{status}, 200, 'body in a temp file: primary 200';
    is $r->{headers}{'x-shadow'}, 'body_too_large', 'body in a temp file: $aigov_shadow';
    is $r->{json}{body_bytes}, 100_000, 'body in a temp file: the primary got it';
    is counter('all', 'dropped_body_too_large'), $before + 1, 'body in a temp file: dropped and counted';
}

# --- sampling -------------------------------------------------------------------------

{
    my $n = 400;
    for (1 .. $n) {
        my $r = http_req(path => '/m/x?m=quarter');
        die "quarter: $r->{status}" unless $r->{status} == 200;
    }
    my $sampled = counter('quarter', 'sampled');
    note "quarter: $sampled of $n sampled";
    # 25 % of 400 = 100, sd 8.7: [60, 140] is beyond 4.5 sd
    ok $sampled >= 60 && $sampled <= 140, "25%: $sampled of $n sampled, about a quarter";
    my $got;
    wait_for(sub {
        $got = grep { ($_->{headers}{'x-aigov-shadow'} // '') eq 'quarter' } read_log($SHADOW_LOG);
        $got >= $sampled;
    }, timeout => 10);
    is $got, $sampled, '25%: the shadow got every sampled request';

    for (1 .. 40) { http_req(path => '/m/x?m=half') }
    my $st = shadow_status('half');
    ok $st->{sampled} > 0 && $st->{sampled} < 40,
        "a shadow variant that also takes canary traffic: only the rest is shadowed ($st->{sampled} of 40)";

    ok !defined shadow_status('plain'), 'a model without shadow: no shadow status';
    is http_req(path => '/m/x?m=plain')->{headers}{'x-shadow'}, undef,
        'a model without shadow: $aigov_shadow is empty';
}

# --- never waits for the shadow -------------------------------------------------------

{
    # the shadow sleeps 2 s; the primary answers at once
    my $r = post('all', 'slow', 'X-Shadow-Fixture-Delay' => 2000);
    is $r->{status}, 200, 'slow shadow: primary 200';
    my $s = shadow_logged($r->{id}, timeout => 12);
    ok $s, 'slow shadow: the shadow answered eventually';
    ok $s && $r->{done_at} < $s->{t_end}, 'slow shadow: the client had its answer before the shadow answered'
        or diag "client done $r->{done_at}, shadow answered $s->{t_end}";

    # the client's keepalive connection serves its next requests meanwhile
    my $a = post('all', 'one', 'X-Shadow-Fixture-Delay' => 2000);
    my $b = post('all', 'two');
    my $c = post('all', 'three');
    is $b->{headers}{'x-conn'}, $a->{headers}{'x-conn'}, 'keepalive: the second request came on the same connection';
    is $c->{headers}{'x-conn'}, $a->{headers}{'x-conn'}, 'keepalive: so did the third';
    is $c->{headers}{'x-conn-req'}, $a->{headers}{'x-conn-req'} + 2, 'keepalive: as its next requests';
    my $sa = shadow_logged($a->{id}, timeout => 12);
    ok $sa && $c->{done_at} < $sa->{t_end},
        'keepalive: both were answered while the first shadow was still busy';
    is wait_counter('all', 'in_flight', 0) , 0, 'slow shadows: none left in flight';
}

# --- a down, resetting, garbage-answering or failing shadow ------------------------------

{
    $ng->mark;
    my $r = post('down', 'to nowhere');
    is $r->{status}, 200, 'shadow down: primary 200';
    is $r->{headers}{'x-served-by'}, 'stable', 'shadow down: answered by the primary';
    is wait_counter('down', 'errors', 1), 1, 'shadow down: counted as an error';
    is counter('down', 'completed'), 0, 'shadow down: nothing completed';

    my %before = map { $_ => counter('all', $_) }
        qw(errors completed not_comparable status_mismatch timeouts compared);

    $r = post('all', 'reset', 'X-Shadow-Fixture-Reset' => 1);
    is $r->{status}, 200, 'shadow resets: primary 200';
    is wait_counter('all', 'errors', $before{errors} + 1), $before{errors} + 1, 'shadow resets: an error';

    $r = post('all', 'raw', 'X-Shadow-Fixture-Raw' => 'this is not HTTP');
    is $r->{status}, 200, 'shadow answers not-HTTP: primary 200';
    is wait_counter('all', 'errors', $before{errors} + 2), $before{errors} + 2, 'shadow answers not-HTTP: an error';

    $r = chat('all', 'X-Shadow-Fixture-Garbage' => 1);
    is $r->{status}, 200, 'shadow answers non-JSON: primary 200';
    ok $r->{json} && $r->{json}{object} eq 'chat.completion', 'shadow answers non-JSON: primary body intact';
    is wait_counter('all', 'not_comparable', $before{not_comparable} + 1), $before{not_comparable} + 1,
        'shadow answers non-JSON: completed but not comparable';

    $r = chat('all', 'X-Shadow-Fixture-Status' => 503);
    is $r->{status}, 200, 'shadow answers 503: primary 200';
    is wait_counter('all', 'status_mismatch', $before{status_mismatch} + 1), $before{status_mismatch} + 1,
        'shadow answers 503: status mismatch';

    $r = post('hasty', 'slow', 'X-Shadow-Fixture-Delay' => 1500);
    is $r->{status}, 200, 'shadow slower than its timeout: primary 200';
    is wait_counter('hasty', 'timeouts', 1), 1, 'shadow slower than its timeout: a timeout';
    is counter('hasty', 'in_flight'), 0, 'shadow timed out: its slot is free again';

    $ng->error_log_clean_ok('failing shadows: nothing above info in the error log');
    ok scalar(grep { /\[info\].*while shadowing model "down" to variant "v2", peer: 127\.0\.0\.1:\d+/ } $ng->error_log_lines),
        'failing shadows: the reason is logged at info, with the model and variant';
}

# --- answers too long or streamed ------------------------------------------------------------

{
    # the shadow streams 40 SSE chunks (chunked, several KiB): read to the
    # end, kept up to max_response=1k
    my $r = post('smallresp', 'long', 'X-Shadow-Fixture-Stream' => 40);
    is $r->{status}, 200, 'shadow answer over max_response: primary 200';
    is wait_counter('smallresp', 'completed', 1), 1, 'shadow answer over max_response: completed';
    is counter('smallresp', 'response_too_large'), 1, 'shadow answer over max_response: counted';
    is counter('smallresp', 'not_comparable'), 1, 'shadow answer over max_response: not comparable';
    is counter('smallresp', 'status_match'), 1, 'shadow answer over max_response: status still compared';

    # both answer an event stream: status and latency only
    my $nc = counter('all', 'not_comparable');
    $r = chat('all', 'X-Fixture-Stream' => 3);
    is $r->{headers}{'content-type'}, 'text/event-stream', 'streamed primary: the client gets the stream';
    is scalar(sse_events($r->{body})), 4, 'streamed primary: all of it';
    is wait_counter('all', 'not_comparable', $nc + 1), $nc + 1, 'streamed answers: not comparable';
}

# --- concurrency bound ----------------------------------------------------------------------

{
    my @r = map { post('tight', "c$_", 'X-Shadow-Fixture-Delay' => 1500) } 1 .. 5;
    is_deeply [ map { $_->{status} } @r ], [ (200) x 5 ], 'max_concurrent=2: every primary 200';
    is_deeply [ map { $_->{headers}{'x-shadow'} } @r ], [ ('sent') x 2, ('concurrency') x 3 ],
        'max_concurrent=2: $aigov_shadow';
    my $st = shadow_status('tight');
    is $st->{in_flight}, 2, 'max_concurrent=2: two in flight';
    is $st->{sent}, 2, 'max_concurrent=2: two sent';
    is $st->{dropped_concurrency}, 3, 'max_concurrent=2: three dropped and counted';
    is wait_counter('tight', 'completed', 2), 2, 'max_concurrent=2: both complete';
    is counter('tight', 'in_flight'), 0, 'max_concurrent=2: slots given back';
    my $r = post('tight', 'after');
    ok shadow_logged($r->{id}), 'max_concurrent=2: shadowed again once slots are free';
}

# --- comparison -------------------------------------------------------------------------------

{
    # the primary says 100 tokens, the shadow 101
    my %h = ('X-Fixture-Tokens' => '100,0', 'X-Shadow-Fixture-Tokens' => '100,1');
    my $a0 = counter('all', 'agreed');
    my $mark = $ng->mark;
    my $r = chat('all', %h);
    is $r->{json}{usage}{total_tokens}, 100, 'tolerance: the client gets the primary\'s answer';
    is wait_counter('all', 'agreed', $a0 + 1), $a0 + 1, 'tolerance=0.01: 100 and 101 agree';

    my $st0 = shadow_status('strict');
    $r = chat('strict', %h);
    is wait_counter('strict', 'disagreed', $st0->{disagreed} + 1), $st0->{disagreed} + 1,
        'tolerance 0: 100 and 101 disagree';
    my $st = shadow_status('strict');
    is $st->{paths}[0]{disagreed}, $st0->{paths}[0]{disagreed} + 1, 'tolerance 0: $.usage.total_tokens disagrees';
    is $st->{paths}[1]{agreed}, $st0->{paths}[1]{agreed} + 1, 'tolerance 0: $.model agrees';

    my $line = $ng->wait_for_log(qr/aigov shadow diff: .*"model":"strict"/);
    ok $line, 'diff record in the log';
    my ($rec) = ($line // '') =~ /aigov shadow diff: (\{.*\})/;
    $rec = eval { $JSON->decode($rec) } // {};
    is_deeply $rec->{paths}, [ { path => '$.usage.total_tokens', primary => 100, shadow => 101 } ],
        'diff record: the path that disagrees, both values';
    is_deeply [ @$rec{qw(primary_variant shadow_variant method uri primary_status shadow_status)} ],
              [ 'v1', 'v2', 'POST', '/v1/chat/completions', 200, 200 ], 'diff record: who, what';
    like $line, qr/\[info\]/, 'diff record: at info level';

    # diff_stream=on: the same record in <prefix>shadow:diffs
    my $entries;
    wait_for(sub {
        $entries = redis_cmd($rport, 'XRANGE', 'aigov:shadow:diffs', '-', '+');
        ref $entries && @$entries;
    }, timeout => 5);
    ok ref $entries && @$entries, 'diff stream: an entry in aigov:shadow:diffs';
    my %f = ref $entries && @$entries ? @{ $entries->[-1][1] } : ();
    is $f{model}, 'strict', 'diff stream: model';
    is_deeply [ @f{qw(primary_variant shadow_variant primary_status shadow_status)} ],
              [ 'v1', 'v2', 200, 200 ], 'diff stream: variants and statuses';
    my $frec = eval { $JSON->decode($f{record} // '') } // {};
    is $frec->{paths}[0]{shadow}, 101, 'diff stream: the record';
    is wait_counter('strict', 'diffs_streamed', 1), 1, 'diff stream: counted';

    # a status that differs is a diff too
    $r = chat('strict', 'X-Shadow-Fixture-Status' => 500);
    ok $ng->wait_for_log(qr/aigov shadow diff: .*"model":"strict".*"shadow_status":500/),
        'diff record for a status mismatch';
}

# --- primary aborted by its client -----------------------------------------------------------------

{
    my $before = counter('all', 'primary_aborted');
    my $id = rid();
    http_req(method => 'POST', path => '/m/x?m=all', abort => 1, body => 'bye',
             headers => { 'X-Req-Id' => $id, 'X-Fixture-Delay' => 700, 'X-Shadow-Fixture-Delay' => 0 });
    ok shadow_logged($id), 'client went away: the shadow still got the request';
    is wait_counter('all', 'primary_aborted', $before + 1), $before + 1,
        'client went away: counted as primary_aborted, not compared';
}

# --- reload and shutdown with shadows in flight ------------------------------------------------------

{
    my $sent0 = counter('all', 'sent');
    my @ids;
    for (1 .. 4) {
        my $r = post('all', "reload-$_", 'X-Shadow-Fixture-Delay' => 1500);
        push @ids, $r->{id};
    }
    ok $ng->reload, 'reload with four shadows in flight';
    for my $id (@ids) {
        ok shadow_logged($id, timeout => 12), "reload: shadow $id still answered";
    }
    is wait_counter('all', 'in_flight', 0), 0, 'reload: the old workers finished their shadows';
    ok counter('all', 'sent') >= $sent0 + 4, 'reload: the counters survived it';
    my $r = post('all', 'after reload');
    ok shadow_logged($r->{id}), 'after reload: shadowing goes on';

    # graceful stop: the workers finish their shadows first
    for (1 .. 3) { post('all', "quit-$_", 'X-Shadow-Fixture-Delay' => 1000) }
    $ng->error_log_clean_ok('error log clean before stopping');
    ok $ng->stop, 'stop (QUIT) with shadows in flight';
    my @bad = grep { /\[(?:alert|crit|emerg)\]|open socket|exited on signal/ } $ng->error_log_lines;
    is_deeply \@bad, [], 'stop: no alert, no socket left open, no crash';
}

{
    # fast shutdown: shadows in flight are cancelled by exit_process
    $ng = start_nginx(nginx_conf($MODELS));
    for (1 .. 3) { post('all', "term-$_", 'X-Shadow-Fixture-Delay' => 3000) }
    ok $ng->stop(signal => 'TERM'), 'stop (TERM) with shadows in flight';
    ok scalar(grep { /\[info\].*aigov shadow: \d+ shadows in flight cancelled as the worker exits/ }
              $ng->error_log_lines),
        'fast stop: the workers cancelled their shadows in flight';
    my @bad = grep { /\[(?:alert|crit|emerg)\]|open socket|exited on signal/ } $ng->error_log_lines;
    is_deeply \@bad, [], 'fast stop: no alert, no socket left open, no crash';
}

# --- nginx -t -----------------------------------------------------------------------------------

sub shadow_conf {
    my ($line, %o) = @_;
    my $redis = $o{redis} ? "aigov_redis 127.0.0.1:%%REDIS_PORT%%;" : '';
    my $up = $o{upstream} // 'upstream u_shadow { server 127.0.0.1:%%FIXTURE_shadow%%; }';
    return nginx_conf(<<"EOF", name => 'conf');
    upstream u_stable { server 127.0.0.1:%%FIXTURE_stable%%; }
    $up
    aigov_zone z:1m;
    $redis
    aigov_model m {
        variant v1 u_stable stable;
        variant v2 u_shadow;
        $line
    }
    server {
        listen 127.0.0.1:%%PORT_conf%%;
        location / { aigov_route model=m; proxy_pass http://\$aigov_upstream; }
    }
EOF
}

my @bad = (
    [ 'shadow v9 5%;', qr/unknown variant "v9" in aigov_model "m": declare it with "variant" first/ ],
    [ 'shadow v2;', qr/invalid number of arguments in "shadow" directive/ ],
    [ 'shadow v2 101%;', qr/invalid percentage "101%" in "shadow": use 0%-100% with at most two decimals/ ],
    [ 'shadow v2 5;', qr/invalid percentage "5" in "shadow"/ ],
    [ 'shadow v2 0.001%;', qr/invalid percentage "0\.001%" in "shadow"/ ],
    [ 'shadow v2 5% max_body=lots;', qr/invalid "max_body=lots" in "shadow": use a size up to 1g/ ],
    [ 'shadow v2 5% max_response=0;', qr/invalid "max_response=0" in "shadow": use a size from 1 to 1g/ ],
    [ 'shadow v2 5% max_concurrent=0;', qr/invalid "max_concurrent=0" in "shadow": use a number from 1 to 65535/ ],
    [ 'shadow v2 5% keepalive=-1;', qr/invalid "keepalive=-1" in "shadow": use a number from 0 to 1024/ ],
    [ 'shadow v2 5% keepalive=1025;', qr/invalid "keepalive=1025" in "shadow"/ ],
    [ 'shadow v2 5% timeout=0;', qr/invalid "timeout=0" in "shadow": use a time from 1ms to 1h/ ],
    [ 'shadow v2 5% timeout=soon;', qr/invalid "timeout=soon" in "shadow"/ ],
    [ 'shadow v2 5% compare=$.a..b;', qr/invalid JSON path "\$\.a\.\.b" in "shadow": empty member name at offset 4/ ],
    [ 'shadow v2 5% compare=usage;', qr/invalid JSON path "usage" in "shadow": a path starts with "\$" at offset 0/ ],
    [ 'shadow v2 5% compare=$.a,;', qr/invalid JSON path "" in "shadow"/ ],
    [ 'shadow v2 5% compare=$.a compare=$.b;', qr/duplicate "compare=" in "shadow"/ ],
    [ 'shadow v2 5% compare=' . join(',', map { "\$.p$_" } 1 .. 9) . ';',
      qr/too many paths in "compare=" of "shadow": at most 8/ ],
    [ 'shadow v2 5% tolerance=-1;', qr/invalid "tolerance=-1" in "shadow": use a number of 0 or more, e\.g\. 0\.01/ ],
    [ 'shadow v2 5% diff_sample=5;', qr/invalid "diff_sample=5" in "shadow": use 0%-100% with at most two decimals/ ],
    [ 'shadow v2 5% diff_stream=maybe;', qr/invalid parameter "diff_stream=maybe" in "shadow"/ ],
    [ 'shadow v2 5% frequently;', qr/invalid parameter "frequently" in "shadow"/ ],
    [ "shadow v2 5%;\n        shadow v2 6%;", qr/"shadow" directive is duplicate/ ],
    [ 'shadow v2 5% diff_stream=on;', qr/"shadow \.\.\. diff_stream=on" of aigov_model "m" in \S+:\d+ needs "aigov_redis"/ ],
    [ 'shadow v2 5%;', qr/upstream "u_shadow" of variant "v2" has no server to shadow to \(not "down", not "backup"\)/,
      upstream => 'upstream u_shadow { server 127.0.0.1:1 down; server 127.0.0.1:2 backup; }' ],
);

for my $case (@bad) {
    my ($line, $re, %o) = @$case;
    my ($ok, $out) = nginx_t(shadow_conf($line, %o));
    ok !$ok, "nginx -t fails: $line";
    my @emerg = grep { /\[emerg\]/ } split /\n/, $out;
    is scalar(@emerg), 1, "one [emerg]: $line" or diag $out;
    like $emerg[0] // '', $re, "message: $line";
}

for my $line ('shadow v2 0%;', 'shadow v2 0.01%;',
              'shadow v2 100% max_body=0 max_response=1 max_concurrent=65535 keepalive=0 timeout=1h '
              . 'compare=$,$.choices[0].message.content,$[\'odd.key\'][3] tolerance=1e-3 '
              . 'diff_sample=0% diff_stream=off;') {
    my ($ok, $out) = nginx_t(shadow_conf($line));
    ok $ok, "nginx -t passes: $line" or diag $out;
}
{
    my ($ok, $out) = nginx_t(shadow_conf('shadow v2 5% diff_stream=on;', redis => 1));
    ok $ok, 'nginx -t passes: diff_stream=on with aigov_redis' or diag $out;
}

done_testing;
