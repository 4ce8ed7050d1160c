#!/usr/bin/perl
# Self-test of the test harness (t/lib/AigovTest.pm and the fixture model
# server).  Runs plain nginx WITHOUT the aigov module.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use AigovTest;
use Time::HiRes qw(time);

# --- fixtures ---------------------------------------------------------------

my $stable_port = start_fixture(name => 'stable',    version => '1.4.2');
my $cand_port   = start_fixture(name => 'candidate', version => '1.5.0');
isnt $stable_port, $cand_port, 'fixtures got distinct ports';
is fixture_port('stable'), $stable_port, 'fixture_port() knows the port';

{
    my $r = http_req(port => $stable_port, path => '/health');
    is $r->{status}, 200, 'fixture /health';
    is_deeply $r->{json}, { ok => JSON::PP::true() }, 'fixture /health body';

    $r = http_req(port => $cand_port, path => '/v2/models/iris/versions/7/infer',
                  body => { id => 'r1', inputs => [{ name => 'in', shape => [2],
                                                     datatype => 'FP32', data => [1, 2] }] });
    is $r->{json}{model_name}, 'iris', 'KServe v2: model_name';
    is $r->{json}{model_version}, '7', 'KServe v2: model_version';
    is_deeply $r->{json}{outputs}[0]{data}, [1, 2], 'KServe v2: outputs';
    is $r->{json}{served_by}, 'candidate', 'KServe v2: served_by';

    $r = http_req(port => $stable_port, path => '/echo', chunks => ['abc', 'defg']);
    is $r->{json}{body_bytes}, 7, 'fixture reads a chunked request body';

    $r = http_req(port => $stable_port, method => 'HEAD', path => '/x');
    is $r->{status}, 200, 'HEAD answered';
    is $r->{body}, '', 'HEAD has no body';
    ok $r->{headers}{'content-length'} > 0, 'HEAD has Content-Length';
}

# --- plain nginx in front of the fixtures ---------------------------------

my $http = <<'EOF';
upstream stable_ka {
    server 127.0.0.1:%%FIXTURE_stable%%;
    keepalive 16;
}
server {
    listen 127.0.0.1:%%PORT%%;
    location / {
        proxy_pass http://127.0.0.1:%%FIXTURE_stable%%;
    }
    location /candidate/ {
        proxy_pass http://127.0.0.1:%%FIXTURE_candidate%%/;
    }
    location /ka/ {
        proxy_pass http://stable_ka/;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_buffering off;
    }
    location = /static {
        return 200 "static\n";
    }
    ##EXTRA##
}
EOF

my $conf = nginx_conf($http, no_module => 1);
like $conf, qr/^worker_processes 2;$/m, 'conf: worker_processes';
like $conf, qr{client_body_temp_path \Q${\ tmp_dir()}\E/temp/client_body;}, 'conf: temp paths in tmp dir';
unlike $conf, qr/load_module|%%/, 'conf: no module, all placeholders expanded';

my $ng = start_nginx($conf);
ok $ng->alive, 'nginx started';
is scalar(my @w = $ng->worker_pids), 2, 'two workers';
is nginx_instance(), $ng, 'default instance';

{
    my $r = http_get('/v1/models', 'X-Test' => 'hello');
    is $r->{status}, 200, 'GET via nginx';
    is $r->{headers}{'x-served-by'}, 'stable', 'GET reached stable (header)';
    is $r->{json}{version}, '1.4.2', 'GET reached stable 1.4.2 (json)';
    is $r->{json}{headers}{'x-test'}, 'hello', 'request header passed through';

    $r = http_post_json('/candidate/v1/chat/completions',
        { model => 'gpt-fixture', messages => [{ role => 'user', content => 'hi' }] },
        Authorization => 'Bearer sk-test');
    is $r->{status}, 200, 'chat POST via nginx';
    is $r->{json}{served_by}, 'candidate', 'chat POST reached candidate';
    is $r->{json}{object}, 'chat.completion', 'OpenAI shape: object';
    is $r->{json}{model}, 'gpt-fixture', 'OpenAI shape: model echoed';
    like $r->{json}{choices}[0]{message}{content}, qr/candidate 1\.5\.0/, 'OpenAI shape: content';
    my $u = $r->{json}{usage};
    is $u->{total_tokens}, $u->{prompt_tokens} + $u->{completion_tokens}, 'OpenAI shape: usage';
    is $r->{json}{headers}{authorization}, 'Bearer sk-test', 'Authorization passed through';

    $r = http_post_json('/v1/chat/completions', { model => 'm' }, 'X-Fixture-Tokens' => '11,22');
    is $r->{json}{usage}{total_tokens}, 33, 'X-Fixture-Tokens forces usage';
}

# --- SSE streaming --------------------------------------------------------

{
    my $r = http_post_json('/ka/v1/chat/completions', { model => 'm', stream => JSON::PP::true() },
        'X-Fixture-Stream' => 4, 'X-Fixture-Stream-Interval' => 60);
    is $r->{status}, 200, 'SSE: status';
    like $r->{headers}{'content-type'}, qr{^text/event-stream}, 'SSE: content type';
    my @ev = sse_events($r->{body});
    is scalar(@ev), 5, 'SSE: 4 data events + [DONE]';
    is $ev[-1], '[DONE]', 'SSE: ends with [DONE]';
    my $last = JSON::PP::decode_json($ev[-2]);
    ok $last->{usage} && $last->{usage}{completion_tokens} == 4, 'SSE: usage in final chunk';
    ok !exists JSON::PP::decode_json($ev[0])->{usage}, 'SSE: no usage in first chunk';
    ok $r->{elapsed_ms} >= 150, sprintf('SSE: chunks were paced (%.0f ms)', $r->{elapsed_ms});
    ok $r->{chunk_ms}[-1] - $r->{chunk_ms}[0] >= 100, 'SSE: chunks arrived incrementally';

    # default proxy_http_version 1.0: fixture streams without chunked encoding
    $r = http_get('/v1/chat/completions', 'X-Fixture-Stream' => 2);
    @ev = sse_events($r->{body});
    is_deeply [ scalar(@ev), $ev[-1] ], [ 3, '[DONE]' ], 'SSE over HTTP/1.0 upstream';
}

# --- error behaviours -----------------------------------------------------

error_log_mark();
{
    my $r = http_get('/x', 'X-Fixture-Status' => 500);
    is $r->{status}, 500, 'X-Fixture-Status 500 passes through';
    is $r->{json}{error}{code}, 500, 'error body is JSON';

    $r = http_get('/x', 'X-Fixture-Reset' => 1);
    is $r->{status}, 502, 'X-Fixture-Reset gives 502 from nginx';
    like $r->{headers}{server}, qr/nginx/, '502 generated by nginx';

    $r = http_get('/x', 'X-Fixture-Garbage' => 1);
    is $r->{status}, 200, 'garbage: 200';
    ok !defined $r->{json} && $r->{json_error}, 'garbage: body is not JSON';

    $r = http_get('/x', 'X-Fixture-Delay' => 300);
    ok $r->{elapsed_ms} >= 290, sprintf('X-Fixture-Delay (%.0f ms)', $r->{elapsed_ms});

    $r = http_req(path => '/x', headers => { 'X-Fixture-Delay' => 2000 }, timeout => 0.3);
    is $r->{status}, 599, 'client timeout gives status 599';
    like $r->{error}, qr/timeout/, 'client timeout error';
}

my @errors = error_log_check();
ok scalar(grep { /Connection reset by peer/ } @errors), 'error_log_check sees the upstream reset';
is_deeply [ error_log_check(allow => [qr/Connection reset by peer/]) ], [],
    'error_log_check honours allow patterns';
error_log_mark();
is_deeply [ error_log_check() ], [], 'error_log_mark hides earlier lines';

# --- malformed / truncated requests ---------------------------------------

{
    my $r = http_req(method => 'POST', path => '/x', body => 'abc', content_length => 100,
                     half_close => 1, timeout => 3);
    ok $r->{status} == 599 || $r->{status} == 400,
        "truncated body (half close): status $r->{status}";
    $r = http_req(method => 'POST', path => '/x', body => 'abc', content_length => 100, abort => 1);
    ok $r->{aborted}, 'truncated body (abort)';
    $r = http_req(raw => "GARBAGE\r\n\r\n");
    is $r->{status}, 400, 'raw garbage request gets 400';
    is http_get('/static')->{status}, 200, 'nginx still serves after bad requests';
}

# --- concurrent requests -----------------------------------------------------

{
    my $t0 = time;
    my @r = http_parallel(map { { path => "/p$_", headers => { 'X-Fixture-Delay' => 400 } } } 1 .. 4);
    my $dt = (time - $t0) * 1000;
    is_deeply [ map { $_->{json}{path} } @r ], [ map { "/p$_" } 1 .. 4 ], 'http_parallel keeps order';
    ok $dt < 1200, sprintf('http_parallel ran the requests concurrently (%.0f ms)', $dt);
}

# --- many sequential requests over keep-alive -----------------------------

{
    my $t0 = time;
    my $ok = 0;
    for (1 .. 10_000) { $ok++ if http_get('/static')->{status} == 200 }
    my $dt = time - $t0;
    is $ok, 10_000, sprintf('10000 sequential keep-alive requests (%.2f s)', $dt);
    ok $dt < 8, '... in a few seconds';
}

# --- redis ----------------------------------------------------------------

{
    my $rp = start_redis();
    is $rp, redis_port(), 'redis port';
    is redis_cmd($rp, 'PING'), 'PONG', 'redis PING';
    is redis_cmd($rp, 'SET', 'k', "v a l"), 'OK', 'redis SET';
    is redis_cmd($rp, 'GET', 'k'), 'v a l', 'redis GET';
    is redis_cmd($rp, 'GET', 'missing'), undef, 'redis GET nil';
    is redis_cmd($rp, 'INCRBY', 'n', 5), 5, 'redis integer reply';
    redis_cmd($rp, 'RPUSH', 'l', 'a', 'b');
    is_deeply redis_cmd($rp, 'LRANGE', 'l', 0, -1), ['a', 'b'], 'redis array reply';
    like redis_cmd($rp, 'NOSUCHCMD')->{error}, qr/^ERR/, 'redis error reply';

    redis_sigstop($rp);
    my $t0 = time;
    my $died = !eval { local $AigovTest::REDIS_TIMEOUT = 0.3; redis_cmd($rp, 'PING'); 1 };
    ok $died && $@ =~ /timeout/, 'stopped redis times out';
    redis_sigcont($rp);
    is redis_cmd($rp, 'PING'), 'PONG', 'redis answers after SIGCONT';
}

# --- nginx -t ------------------------------------------------------------

{
    my ($ok, $out) = nginx_t(nginx_conf("server { listen 127.0.0.1:%%PORT%%; bogus_directive on; }",
                                        no_module => 1));
    ok !$ok, 'nginx -t rejects a broken config';
    like $out, qr/\[emerg\] .*unknown directive "bogus_directive" in \S+:\d+/, 'nginx -t message';
    ($ok, $out) = nginx_t($conf);
    ok $ok, 'nginx -t accepts the good config' or diag $out;
}

# --- reload ---------------------------------------------------------------

{
    my %old = map { $_ => 1 } $ng->worker_pids;
    (my $http2 = $http) =~ s/##EXTRA##/location = \/reloaded { return 200 "v2\\n"; }/;
    ok reload_nginx(nginx_conf($http2, no_module => 1)), 'reload with a new config';
    my @new = $ng->worker_pids;
    ok @new == 2 && !grep({ $old{$_} } @new), 'all workers replaced';
    is http_get('/reloaded')->{body}, "v2\n", 'new config active';

    error_log_mark();
    (my $bad = $http2) =~ s/##EXTRA##|location = \/reloaded/bogus_directive on; $&/;
    ok !$ng->reload(nginx_conf($bad, no_module => 1)), 'reload with a broken config fails';
    like $ng->reload_error, qr/unknown directive "bogus_directive"/, 'reload_error has the message';
    is http_get('/reloaded')->{body}, "v2\n", 'old config still serves';
    my @emerg = error_log_check();
    ok @emerg && $emerg[0] =~ /\[emerg\]/, 'rejected reload logged [emerg]';
    error_log_clean_ok('error log clean with allow', allow => [qr/bogus_directive/]);

    %old = map { $_ => 1 } $ng->worker_pids;
    ok $ng->reload(undef, via => 'cli'), 'reload via nginx -s reload';
    ok !grep({ $old{$_} } $ng->worker_pids), '... workers replaced';
}

# --- wrk ------------------------------------------------------------------

{
    my $w = run_wrk(path => '/ka/v1/models', seconds => 3, connections => 8, threads => 2);
    ok $w->{requests} > 500, "wrk made $w->{requests} requests ($w->{rps} rps)" or diag $w->{raw};
    is $w->{socket_errors}, 0, 'wrk: no socket errors' or diag $w->{raw};
    is $w->{non2xx}, 0, 'wrk: no non-2xx';
    ok defined $w->{p99_ms} && $w->{p99_ms} > 0, "wrk: p99 parsed ($w->{p99_ms} ms)";
}

# --- a second nginx instance ----------------------------------------------

{
    my $b = start_nginx(nginx_conf(<<'EOF', name => 'b', no_module => 1, workers => 1));
server {
    listen 127.0.0.1:%%PORT%%;
    location / { proxy_pass http://127.0.0.1:%%PORT_main%%; }
}
EOF
    isnt $b->port, $ng->port, 'instance b has its own port';
    is $b->port, nginx_port('b'), 'nginx_port(b)';
    like $b->error_log_path, qr{/nginx-b/logs/error\.log$}, 'instance b has its own prefix';
    my $r = $b->get('/v1/x');
    is $r->{json}{served_by}, 'stable', 'b -> main -> stable';
    my $pid = $b->pid;
    $b->stop;
    ok !kill(0, $pid), 'instance b stopped';
    is nginx_instance(), $ng, 'default instance is still main';
}

# --- failures to start are reported ---------------------------------------

{
    my $conf_x = nginx_conf("server { listen 127.0.0.1:%%PORT%%; }", name => 'x',
                            no_module => 1, main_extra => 'bogus_main_directive;');
    ok !eval { start_nginx($conf_x); 1 }, 'start_nginx dies when nginx cannot start';
    like $@, qr/nginx 'x' exited .*unknown directive "bogus_main_directive"/s, '... with nginx\'s message';
    ok !nginx_instance('x'), '... and registers no instance';
}

# --- missing module bails out, cleanup kills everything ----------------------

{
    my $lib = "$FindBin::Bin/lib";
    local $ENV{AIGOV_MODULE} = '/nonexistent/mod.so';
    my $out = `$^X -I$lib -MAigovTest -e 'nginx_conf("")' 2>&1`;
    like $out, qr{Bail out!.*module not found at /nonexistent/mod\.so}, 'missing module: BAIL_OUT';
}

for my $how ('die', 'TERM') {
    my $lib = "$FindBin::Bin/lib";
    my $errfile = tmp_dir() . "/child-$how.err";
    local $ENV{CHILD_ERR} = $errfile;
    my $script = <<'EOF';
BEGIN { open STDERR, '>', $ENV{CHILD_ERR} or die }
use AigovTest;
start_fixture();
start_redis();
start_nginx(nginx_conf("server { listen 127.0.0.1:%%PORT%%; }", no_module => 1, workers => 1));
print join(' ', AigovTest::child_pids()), "\n";
$| = 1;
print "READY\n";
die "dying on purpose\n" if $ARGV[0] eq 'die';
sleep 30;
EOF
    my $pid = open(my $fh, '-|', $^X, "-I$lib", '-e', $script, $how) or die "fork: $!";
    my $pids = <$fh>;
    my $ready = <$fh>;
    kill 'TERM', $pid if $how eq 'TERM';
    waitpid $pid, 0;
    close $fh;
    my @pids = split ' ', $pids // '';
    ok @pids == 4 && $ready, "child ($how) started fixture, redis, nginx master+worker (@pids)";
    ok wait_for(sub { !grep { kill 0, $_ } @pids }, timeout => 5),
        "nothing survives a test that exits by $how"
        or diag `cat $errfile`;
}

stop_nginx();
ok !$ng->alive, 'stop_nginx';
error_log_clean_ok('final error log check', allow => [qr/Connection reset by peer/, qr/bogus_directive/]);

done_testing;
