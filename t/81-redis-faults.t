#!/usr/bin/perl
# Redis faults never hurt traffic.  Two nodes share one redis-server; wrk
# loads a routed location on node a while Redis is SIGSTOPped, killed and
# restarted empty, or stalled by DEBUG SLEEP: zero failed requests, the state
# flipped before stays in force, status says degraded, the log gets one
# [warn] per outage and no [error]/[crit]/[alert], the nodes reconnect,
# re-sync and write their state back into an empty Redis.  Also: no Redis at
# all, and aigov_redis configuration errors caught by nginx -t.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use AigovTest;
use JSON::PP ();
use POSIX ();
use Time::HiRes qw(time sleep);

my $JSON = JSON::PP->new->utf8->canonical;
my $ROOT = repo_root();

start_fixture(name => 'stable',    version => '1.4.2');
start_fixture(name => 'candidate', version => '1.5.0');
# DEBUG SLEEP simulates a slow Redis; Redis 7 refuses DEBUG unless enabled
my @REDIS_ARGS = (args => ['--enable-debug-command', 'yes']);
my $rport = start_redis(@REDIS_ARGS);

my $HAVE_ADMIN = do {
    my $found = 0;
    for my $f (glob("$ROOT/ngx_aigov_module/*.c")) {
        open(my $fh, '<', $f) or next;
        $found ||= grep { /"aigov_admin"/ } <$fh>;
    }
    $found;
};
my $TOKENS = tmp_dir() . '/admin-tokens';
my $WTOKEN = 'w-0123456789abcdef';
{
    open(my $fh, '>', $TOKENS) or die;
    print {$fh} "ops write $WTOKEN\n";
    close $fh;
    chmod 0600, $TOKENS;
}

sub http_body {
    my (%o) = @_;
    my $redis = $o{redis} // "aigov_redis 127.0.0.1:%%REDIS_PORT%% sync_interval=300ms;";
    my $admin = $o{admin} ? "location /aigov/ { aigov_admin tokens=$TOKENS; }" : '';
    return <<"EOF";
    upstream u_stable    { server 127.0.0.1:%%FIXTURE_stable%%;    keepalive 32; }
    upstream u_candidate { server 127.0.0.1:%%FIXTURE_candidate%%; keepalive 32; }

    aigov_zone faults:1m;
    $redis

    aigov_model chat {
        variant v1 u_stable    version=1.4.2 stable;
        variant v2 u_candidate version=1.5.0;
        canary  v2 0%;
    }

    aigov_model dead {
        variant v1 u_stable version=1.4.2 stable;
    }

    server {
        listen 127.0.0.1:%%PORT%%;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        location /chat { aigov_route model=chat; proxy_pass http://\$aigov_upstream; }
        location /dead { aigov_route model=dead; proxy_pass http://\$aigov_upstream; }
        location = /status { aigov_status; }
        $admin
    }
EOF
}

my $A = start_nginx(nginx_conf(http_body(), name => 'a'));
my $B = start_nginx(nginx_conf(http_body(), name => 'b'));
my @NODES = ($A, $B);

# --- helpers --------------------------------------------------------------------

sub key { "aigov:model:$_[0]" }

sub rflip {
    my ($model, $fields) = @_;
    redis_cmd($rport, 'HSET', key($model), %$fields) if %$fields;
    my $v = redis_cmd($rport, 'HINCRBY', key($model), 'version', 1);
    redis_cmd($rport, 'PUBLISH', 'aigov:control', $model);
    return $v;
}

sub served_by {
    my ($n, $path) = @_;
    my $r = $n->get($path);
    return $r->{status} == 200 ? ($r->{headers}{'x-served-by'} // '?') : $r->{status};
}

sub killed {
    my ($n, $path) = @_;
    my $r = $n->get($path);
    return $r->{status} == 503 && ($r->{json}{type} // '') eq 'urn:aigov:problem:model-disabled';
}

sub redis_status {
    my ($n) = @_;
    my $r = $n->get('/status');
    return $r->{status} == 200 && $r->{json} ? $r->{json}{redis} : undef;
}

sub runtime_of {
    my ($n, $model) = @_;
    my $r = $n->get('/status');
    return undef unless $r->{json};
    my ($m) = grep { $_->{name} eq $model } @{ $r->{json}{models} };
    return $m ? $m->{runtime} : undef;
}

sub connected { my $s = redis_status($_[0]); $s && $s->{connected} }
sub degraded  { my $s = redis_status($_[0]); $s && $s->{degraded} && !$s->{connected} }

my %WRK;
sub wrk_ok {
    my ($label, $w) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    $WRK{$label} = $w;
    diag(sprintf("wrk %-28s %6d requests, %7.0f rps, non-2xx %d, socket errors %d, p50 %s ms, p99 %s ms",
        $label, $w->{requests} // 0, $w->{rps} // 0, $w->{non2xx} // -1, $w->{socket_errors} // -1,
        $w->{p50_ms} // '?', $w->{p99_ms} // '?'));
    ok(($w->{requests} // 0) > 100, "$label: wrk ran ($w->{requests} requests)") or diag($w->{raw} // $w->{error});
    is $w->{non2xx}, 0, "$label: 0 non-2xx responses";
    is $w->{socket_errors}, 0, "$label: 0 socket errors";
}

sub redis_warns {
    my ($n) = @_;
    return grep { /\[warn\].*aigov redis .*serving from shared memory, retrying/ } $n->error_log_lines;
}

sub one_warn_per_outage {
    my ($label) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    for my $n (@NODES) {
        my @w = redis_warns($n);
        is scalar(@w), 1, $n->name . ": exactly one [warn] for the $label outage"
            or diag(join("\n", @w));
        ok scalar(grep { /\[notice\].*aigov redis .*connected again/ } $n->error_log_lines),
            $n->name . ': a [notice] when connected again';
        $n->error_log_clean_ok($n->name . ": no [error]/[crit]/[alert] during the $label outage");
    }
}

# --- baseline -------------------------------------------------------------------

subtest 'baseline: flip state before any fault' => sub {
    ok wait_for(sub { connected($A) && connected($B) }, timeout => 5), 'both nodes connected';
    rflip('chat', { weights => 'v2=100%' });
    rflip('dead', { kill => '1' });
    ok wait_for(sub { served_by($_, '/chat') eq 'candidate' && killed($_, '/dead') }, timeout => 2),
        $_->name . ': chat all to the candidate, dead killed' for @NODES;
    my $w = run_wrk(port => $A->port, path => '/chat', seconds => 2, connections => 16);
    wrk_ok('no fault (reference)', $w);
    $_->mark for @NODES;
};

# --- SIGSTOP --------------------------------------------------------------------

subtest 'redis SIGSTOPped under load' => sub {
    my $wait = wrk_async(port => $A->port, path => '/chat', seconds => 6, connections => 16);
    sleep 1;
    redis_sigstop($rport);
    my $t_stop = time;
    my $deg = wait_for(sub { degraded($A) && degraded($B) }, timeout => 4);
    ok $deg, sprintf('status: connected=false, degraded=true on both nodes (after %.0f ms)', (time - $t_stop) * 1000);
    my $s = redis_status($A);
    is $s->{connected}, JSON::PP::false, 'redis.connected false';
    is $s->{degraded}, JSON::PP::true, 'redis.degraded true';
    my $t_deg = time;
    ok wait_for(sub { my $x = redis_status($A); $x && ($x->{last_error} // '') =~ /\S/ }, timeout => 2),
        'redis.last_error says why';
    $s = redis_status($A);
    diag(sprintf("last_error \"%s\" appeared %.0f ms after degraded=true", $s->{last_error} // '', (time - $t_deg) * 1000));
    for my $n (@NODES) {
        is served_by($n, '/chat'), 'candidate', $n->name . ': weights v2=100% still applied';
        ok killed($n, '/dead'), $n->name . ': dead still killed';
    }
    sleep 2;
    redis_sigcont($rport);
    my $t_cont = time;
    my $w = $wait->();
    wrk_ok('redis SIGSTOPped 3 s', $w);
    my $back = wait_for(sub { connected($A) && connected($B) }, timeout => 8, interval => 0.05);
    ok $back, 'connected again on both nodes';
    diag(sprintf("reconnected %.0f ms after SIGCONT", (time - $t_cont) * 1000));
    ok time - $t_cont < 7, 'within 7 s (backoff_max 5s)';
    my $t0 = time;
    rflip('chat', { weights => 'v2=0%' });
    ok wait_for(sub { served_by($A, '/chat') eq 'stable' && served_by($B, '/chat') eq 'stable' }, timeout => 1),
        'a new flip propagates to both nodes within 1 s';
    diag(sprintf("flip after SIGCONT seen on both nodes after %.0f ms", (time - $t0) * 1000));
    rflip('chat', { weights => 'v2=100%' });
    ok wait_for(sub { served_by($A, '/chat') eq 'candidate' && served_by($B, '/chat') eq 'candidate' }, timeout => 1),
        'and back';
    one_warn_per_outage('SIGSTOP');
    $_->mark for @NODES;
};

# --- killed and restarted empty ---------------------------------------------------

subtest 'redis killed and restarted empty: the nodes write their state back' => sub {
    my $kill_v = redis_cmd($rport, 'HGET', key('dead'), 'version');
    my $chat_v = redis_cmd($rport, 'HGET', key('chat'), 'version');
    my $wait = wrk_async(port => $A->port, path => '/chat', seconds => 5, connections => 16);
    sleep 1;
    stop_redis($rport);
    ok wait_for(sub { degraded($A) && degraded($B) }, timeout => 4), 'degraded on both nodes';
    for my $n (@NODES) {
        ok killed($n, '/dead'), $n->name . ': dead still killed with redis down';
        is served_by($n, '/chat'), 'candidate', $n->name . ': chat weights still applied';
    }
    sleep 1;
    my $p = start_redis(@REDIS_ARGS);
    is $p, $rport, "restarted on the same port $rport";
    is redis_cmd($rport, 'DBSIZE'), 0, 'empty';
    my $t_up = time;
    my $w = $wait->();
    wrk_ok('redis killed + restarted', $w);
    my $back = wait_for(sub {
        my $h = redis_cmd($rport, 'HGETALL', key('dead'));
        my %h = @{ ref $h eq 'ARRAY' ? $h : [] };
        ($h{kill} // '') eq '1' && ($h{version} // -1) == $kill_v;
    }, timeout => 8, interval => 0.05);
    ok $back, "the nodes wrote dead's state back: HGETALL has kill 1 and version $kill_v";
    my %h = @{ redis_cmd($rport, 'HGETALL', key('dead')) // [] };
    diag('HGETALL ' . key('dead') . ': ' . $JSON->encode(\%h));
    my %c = @{ redis_cmd($rport, 'HGETALL', key('chat')) // [] };
    is $c{weights}, 'v2=100%', 'and chat\'s weights';
    is $c{version}, $chat_v, "with chat's version $chat_v";
    diag(sprintf("state back in redis %.0f ms after it restarted", (time - $t_up) * 1000)) if $back;
    ok wait_for(sub { connected($A) && connected($B) }, timeout => 8), 'both nodes connected again';
    for my $n (@NODES) {
        ok killed($n, '/dead'), $n->name . ': dead still killed';
        is runtime_of($n, 'dead')->{version}, $kill_v, $n->name . ": runtime version $kill_v";
    }
    # and the fleet works again: unkill through Redis
    rflip('dead', { kill => '0' });
    ok wait_for(sub { !killed($A, '/dead') && !killed($B, '/dead') }, timeout => 1), 'unkill through redis reaches both';
    one_warn_per_outage('restart');
    $_->mark for @NODES;
};

subtest 'FLUSHALL: the nodes write their state back within sync_interval' => sub {
    rflip('dead', { kill => '1' });
    ok wait_for(sub { killed($A, '/dead') && killed($B, '/dead') }, timeout => 1), 'dead killed';
    my $v = redis_cmd($rport, 'HGET', key('dead'), 'version');
    my $t0 = time;
    is redis_cmd($rport, 'FLUSHALL'), 'OK', 'FLUSHALL';
    my $back = wait_for(sub {
        my %h = @{ redis_cmd($rport, 'HGETALL', key('dead')) // [] };
        ($h{kill} // '') eq '1' && ($h{version} // -1) == $v;
    }, timeout => 3, interval => 0.02);
    ok $back, "dead's kill 1 and version $v are back in redis";
    diag(sprintf("written back %.0f ms after FLUSHALL (sync_interval 300ms)", (time - $t0) * 1000));
    ok time - $t0 < 1.5, 'within 1.5 s';
    ok killed($_, '/dead'), $_->name . ': still killed' for @NODES;
    rflip('dead', { kill => '0' });
    ok wait_for(sub { !killed($A, '/dead') && !killed($B, '/dead') }, timeout => 1), 'unkill after it propagates';
    is scalar(redis_warns($_)), 0, $_->name . ': FLUSHALL is no outage: no [warn]' for @NODES;
    $_->error_log_clean_ok($_->name . ': no errors') for @NODES;
    $_->mark for @NODES;
};

# --- slow redis ---------------------------------------------------------------------

subtest 'slow redis (DEBUG SLEEP 2) under load' => sub {
    my $pid = fork;
    die "fork: $!" unless defined $pid;
    if (!$pid) {
        sleep 1;
        local $AigovTest::REDIS_TIMEOUT = 10;
        my $r = eval { redis_cmd($rport, 'DEBUG', 'SLEEP', '2') };
        POSIX::_exit(defined $r && !ref $r && $r eq 'OK' ? 0 : 1);
    }
    my $w = run_wrk(port => $A->port, path => '/chat', seconds => 5, connections => 16);
    waitpid($pid, 0);
    is $? >> 8, 0, 'DEBUG SLEEP 2 ran';
    wrk_ok('redis DEBUG SLEEP 2', $w);
    ok wait_for(sub { connected($A) && connected($B) }, timeout => 8), 'connected again';
    for my $n (@NODES) {
        my @w = redis_warns($n);
        ok scalar(grep { /timed out/ } @w), $n->name . ': the command timeout is a [warn]'
            or diag(join("\n", $n->error_log_lines));
        is scalar(@w), 1, $n->name . ': one [warn] for the stall' or diag(join("\n", @w));
        $n->error_log_clean_ok($n->name . ': no [error]/[crit]/[alert] for a slow redis');
    }
    is served_by($A, '/chat'), 'candidate', 'state unchanged';
    rflip('chat', { weights => 'v2=0%' });
    ok wait_for(sub { served_by($A, '/chat') eq 'stable' && served_by($B, '/chat') eq 'stable' }, timeout => 1),
        'a flip after the stall propagates';
    $_->mark for @NODES;
};

# --- no redis at all --------------------------------------------------------------

subtest 'no aigov_redis: one node works on its own' => sub {
    my $solo = start_nginx(nginx_conf(http_body(redis => '', admin => $HAVE_ADMIN), name => 'solo'));
    my $s = redis_status($solo);
    is $s->{configured}, JSON::PP::false, 'status: redis.configured false';
    ok !$s->{connected}, 'not connected';
    is served_by($solo, '/chat'), 'stable', 'chat served (config weights)';
    my $w = run_wrk(port => $solo->port, path => '/chat', seconds => 2, connections => 16);
    wrk_ok('no redis configured', $w);
    SKIP: {
        skip 'aigov_admin is not in the module yet', 9 unless $HAVE_ADMIN;
        my $r = $solo->req(method => 'POST', path => '/aigov/models/dead/kill', body => '{}',
                           headers => { Authorization => "Bearer $WTOKEN", 'Content-Type' => 'application/json' });
        is $r->{status}, 200, 'admin kill without redis: 200';
        is $r->{json}{propagated}, JSON::PP::false, 'propagated false';
        ok killed($solo, '/dead'), 'dead killed on this node';
        $r = $solo->req(path => '/aigov/audit', headers => { Authorization => "Bearer $WTOKEN" });
        is $r->{status}, 503, 'GET audit without redis: 503';
        like $r->{headers}{'content-type'} // '', qr{application/problem\+json}, 'a problem';
        local $ENV{AIGOV_URL} = 'http://127.0.0.1:' . $solo->port . '/aigov/';
        local $ENV{AIGOV_TOKEN} = $WTOKEN;
        my $out = `sh $ROOT/tools/aigovctl unkill dead 2>&1`;
        is $? >> 8, 0, 'aigovctl unkill: exit 0';
        like $out, qr/^dead: kill switch OFF, version \d+, on this node only \(no redis configured\)$/m,
            'aigovctl: on this node only (no redis configured)' or diag $out;
        $out = `sh $ROOT/tools/aigovctl audit 2>&1`;
        is $? >> 8, 1, 'aigovctl audit without redis: exit 1';
        like $out, qr/HTTP 503/, 'prints the problem' or diag $out;
    }
    is scalar(grep { /\[warn\].*redis/i } $solo->error_log_lines), 0, 'no redis warnings in the log';
    $solo->error_log_clean_ok('solo: no errors');
    $solo->stop;
};

# --- configuration errors -----------------------------------------------------------

subtest 'aigov_redis configuration errors fail nginx -t' => sub {
    my $pwfile = tmp_dir() . '/redis-password';
    { open(my $fh, '>', $pwfile) or die; print {$fh} "s3cret\n"; close $fh; }
    my $empty = tmp_dir() . '/redis-password-empty';
    { open(my $fh, '>', $empty) or die; close $fh; }

    my $ok_line = "aigov_redis 127.0.0.1:%%REDIS_PORT%% password_file=$pwfile db=3 prefix=x: "
                . "connect_timeout=200ms command_timeout=100ms sync_interval=2s backoff_max=10s;";
    my ($ok, $out) = nginx_t(nginx_conf(http_body(redis => $ok_line), name => 'conf'));
    ok $ok, 'every parameter, valid: nginx -t passes' or diag $out;
    ($ok, $out) = nginx_t(nginx_conf(http_body(redis => 'aigov_redis 127.0.0.1:%%REDIS_PORT%% password=pw;'), name => 'conf'));
    ok $ok, 'password=: passes' or diag $out;
    ($ok, $out) = nginx_t(nginx_conf(http_body(redis => 'aigov_redis 127.0.0.1;'), name => 'conf'));
    ok $ok, 'no port (6379 by default): passes' or diag $out;

    my @bad = (
        [ 'aigov_redis nosuchhost.invalid:6379;', qr/nosuchhost\.invalid/, 'a host that does not resolve' ],
        [ 'aigov_redis 127.0.0.1:99999;',         qr/port|redis address/,  'port out of range' ],
        [ 'aigov_redis 127.0.0.1:6379 db=abc;',   qr/invalid redis database "db=abc"/, 'db=abc' ],
        [ 'aigov_redis 127.0.0.1:6379 db=-1;',    qr/invalid redis database "db=-1"/,  'db=-1' ],
        [ 'aigov_redis 127.0.0.1:6379 db=;',      qr/invalid redis database/,          'db= (empty)' ],
        [ 'aigov_redis 127.0.0.1:6379 db=99999;', qr/invalid redis database/,          'db=99999' ],
        [ 'aigov_redis 127.0.0.1:6379 connect_timeout=0;',   qr/invalid time in "connect_timeout=0"/, 'connect_timeout=0' ],
        [ 'aigov_redis 127.0.0.1:6379 connect_timeout=abc;', qr/invalid time/, 'connect_timeout=abc' ],
        [ 'aigov_redis 127.0.0.1:6379 command_timeout=5ms;', qr/invalid time in "command_timeout=5ms"/, 'command_timeout=5ms (below 10ms)' ],
        [ 'aigov_redis 127.0.0.1:6379 sync_interval=11m;',   qr/invalid time in "sync_interval=11m"/, 'sync_interval=11m (above 10m)' ],
        [ 'aigov_redis 127.0.0.1:6379 sync_interval=;',      qr/invalid time/, 'sync_interval= (empty)' ],
        [ 'aigov_redis 127.0.0.1:6379 backoff_max=-1s;',     qr/invalid time/, 'backoff_max=-1s' ],
        [ 'aigov_redis 127.0.0.1:6379 foo=bar;',  qr/invalid parameter "foo=bar" in aigov_redis/, 'unknown parameter' ],
        [ 'aigov_redis 127.0.0.1:6379 password_file=/nonexistent/aigov-pw;',
          qr/cannot open redis password_file "\/nonexistent\/aigov-pw"/, 'missing password_file' ],
        [ "aigov_redis 127.0.0.1:6379 password_file=$empty;", qr/is empty/, 'empty password_file' ],
        [ 'aigov_redis 127.0.0.1:6379 prefix=' . ('p' x 65) . ';', qr/longer than 64/, 'prefix over 64 bytes' ],
        [ "aigov_redis 127.0.0.1:6379;\n    aigov_redis 127.0.0.1:6380;", qr/"aigov_redis" directive is duplicate/, 'twice' ],
        [ 'aigov_redis;', qr/invalid number of arguments in "aigov_redis"/, 'no address' ],
    );
    for my $case (@bad) {
        my ($line, $re, $name) = @$case;
        my ($ok, $out) = nginx_t(nginx_conf(http_body(redis => $line), name => 'conf'));
        ok !$ok, "$name: nginx -t fails";
        like $out, qr/\[emerg\].*$re/, "$name: says so" or diag $out;
        my ($emerg) = grep { /\[emerg\]/ } split /\n/, $out;
        diag("  $name: " . ($emerg // $out)) if $ENV{TEST_VERBOSE};
    }
    ($ok, $out) = nginx_t(nginx_conf(http_body(redis => '') =~ s/(location = \/status)/aigov_redis 127.0.0.1:6379;\n        $1/r,
                                     name => 'conf'));
    ok !$ok, 'aigov_redis in a server block: nginx -t fails';
    like $out, qr/"aigov_redis" directive is not allowed here/, 'says so' or diag $out;
};

# --- password and db ---------------------------------------------------------------

subtest 'password_file and db= against a redis with requirepass' => sub {
    my $pwfile = tmp_dir() . '/redis-password';
    # (started without a password: the harness's readiness PING needs none)
    my $aport = start_redis(name => 'auth');
    is redis_cmd($aport, 'CONFIG', 'SET', 'requirepass', 's3cret'), 'OK', 'requirepass s3cret';
    my $line = "aigov_redis 127.0.0.1:%%REDIS_PORT_auth%% password_file=$pwfile db=3 prefix=t81: sync_interval=300ms;";
    my $n = start_nginx(nginx_conf(http_body(redis => $line), name => 'auth'));
    ok wait_for(sub { connected($n) }, timeout => 5), 'connected with AUTH + SELECT 3';
    my @cli = ('redis-cli', '-p', $aport, '--no-auth-warning', '-a', 's3cret', '-n', 3);
    system("@cli HSET t81:model:dead kill 1 >/dev/null") == 0 or die;
    system("@cli HINCRBY t81:model:dead version 1 >/dev/null") == 0 or die;
    system("@cli PUBLISH t81:control dead >/dev/null") == 0 or die;
    ok wait_for(sub { killed($n, '/dead') }, timeout => 1), 'a kill in db 3 under prefix t81: applies';
    my $other = `redis-cli -p $aport --no-auth-warning -a s3cret -n 0 EXISTS t81:model:dead`;
    chomp $other;
    is $other, '0', 'nothing written to db 0';
    $n->error_log_clean_ok('auth: no errors');
    $n->stop;
};

# --- wrap up ----------------------------------------------------------------------

for my $n (@NODES) {
    $n->error_log_clean_ok($n->name . ': no unexpected errors since the last check');
}
diag('wrk summary: ' . join('; ', map {
    sprintf('%s: %d req, %.0f rps, non2xx %d, sockerr %d', $_, $WRK{$_}{requests} // 0, $WRK{$_}{rps} // 0,
            $WRK{$_}{non2xx} // -1, $WRK{$_}{socket_errors} // -1)
} sort keys %WRK));

done_testing;
