#!/usr/bin/perl
# Fleet state through Redis: two nginx nodes with the same config share one
# real redis-server.  Runtime control (kill switch, rollback, canary weights,
# blue-green colour) written into Redis -- with redis-cli alone, the way an
# incident responder would -- reaches both nodes; propagation latency is
# measured (pub/sub, and the periodic re-read without PUBLISH).  A stale
# version in Redis is ignored and overwritten with the node's state; config
# emergencies beat runtime; the state survives reloads and a kill -9 of a
# worker.  When the admin API (aigov_admin) is in the module: a change made
# through it on one node reaches the other, lands in the audit stream, and
# tools/aigovctl drives it.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use AigovTest;
use JSON::PP ();
use POSIX ();
use Time::HiRes qw(time sleep);

my $JSON = JSON::PP->new->utf8->canonical;
delete @ENV{qw(AIGOV_URL AIGOV_TOKEN AIGOV_TOKEN_FILE AIGOV_CURL_OPTS)};

start_fixture(name => 'stable',    version => '1.4.2');
start_fixture(name => 'candidate', version => '1.5.0');
my $rport = start_redis();

my $ROOT    = repo_root();
my $CTL     = "$ROOT/tools/aigovctl";
my $TOKENS  = tmp_dir() . '/admin-tokens';
my $WTOKEN  = 'w-0123456789abcdef';
my $RTOKEN  = 'r-fedcba9876543210';

# Does the built module know "aigov_admin"?  (The admin API is being
# written concurrently; its subtests are skipped until it is in the build.)
sub admin_available {
    my $in_src = 0;
    for my $f (glob("$ROOT/ngx_aigov_module/*.c")) {
        open(my $fh, '<', $f) or next;
        $in_src ||= grep { /"aigov_admin"/ } <$fh>;
    }
    return (0, 'aigov_admin is not in ngx_aigov_module/*.c yet') unless $in_src;
    open(my $fh, '>', $TOKENS) or die;
    print {$fh} "# name role token\nops write $WTOKEN\nviewer read $RTOKEN\n";
    close $fh;
    chmod 0600, $TOKENS;
    my ($ok, $out) = nginx_t(nginx_conf(<<"EOF", name => 'probe'));
    aigov_zone probe:1m;
    aigov_model m { variant v1 127.0.0.1:1 stable; }
    server {
        listen 127.0.0.1:%%PORT%%;
        location /aigov/ { aigov_admin tokens=$TOKENS; }
    }
EOF
    return (1, '') if $ok;
    return (0, "the built module rejects aigov_admin (rebuild?): "
               . join(' ', grep { /emerg/ } split /\n/, $out));
}
my ($ADMIN, $ADMIN_WHY) = admin_available();
diag("admin API: " . ($ADMIN ? 'present, testing it' : "absent ($ADMIN_WHY)"));

# One config for both nodes (only the listen port differs, via %%PORT%%).
sub fleet_conf {
    my (%o) = @_;
    my $name  = $o{name} // 'a';
    my $sync  = $o{sync} // '5s';
    my $rp    = $o{redis_port} // '%%REDIS_PORT%%';
    my $admin = $ADMIN ? "location /aigov/ { aigov_admin tokens=$TOKENS; }" : '';
    return nginx_conf(<<"EOF", name => $name);
    upstream u_stable    { server 127.0.0.1:%%FIXTURE_stable%%;    keepalive 16; }
    upstream u_candidate { server 127.0.0.1:%%FIXTURE_candidate%%; keepalive 16; }

    aigov_zone fleet:1m;
    aigov_redis 127.0.0.1:$rp sync_interval=$sync;

    aigov_model chat {
        variant v1 u_stable    version=1.4.2 stable;
        variant v2 u_candidate version=1.5.0;
        canary  v2 0%;
    }

    aigov_model bg {
        variant blue  u_stable    version=1.4.2 stable;
        variant green u_candidate version=1.5.0;
        active  blue;
    }

    # a config emergency: runtime cannot undo it
    aigov_model locked {
        variant v1 u_stable version=1.4.2 stable;
        kill_switch on;
    }

    server {
        listen 127.0.0.1:%%PORT%%;
        location /chat   { aigov_route model=chat;   proxy_pass http://\$aigov_upstream; }
        location /bg     { aigov_route model=bg;     proxy_pass http://\$aigov_upstream; }
        location /locked { aigov_route model=locked; proxy_pass http://\$aigov_upstream; }
        location = /status { aigov_status; }
        $admin
    }
EOF
}

my $A = start_nginx(fleet_conf(name => 'a'));
my $B = start_nginx(fleet_conf(name => 'b'));
my @NODES = ($A, $B);

# --- helpers ----------------------------------------------------------------

sub key { "aigov:model:$_[0]" }

# Write fields + bump the version (+ PUBLISH): what redis-cli would do.
# $T_COMMIT: when the new version was in Redis (latencies count from there).
my $T_COMMIT;
sub rflip {
    my ($model, $fields, %o) = @_;
    redis_cmd($rport, 'HSET', key($model), %$fields) if %$fields;
    my $v = redis_cmd($rport, 'HINCRBY', key($model), 'version', 1);
    $T_COMMIT = time;
    redis_cmd($rport, 'PUBLISH', 'aigov:control', $model) unless $o{no_publish};
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

sub status_model {
    my ($n, $model) = @_;
    my $r = $n->get('/status');
    return (undef, undef) unless $r->{status} == 200 && $r->{json};
    my ($m) = grep { $_->{name} eq $model } @{ $r->{json}{models} };
    return ($r->{json}, $m);
}

sub runtime_version {
    my ($n, $model) = @_;
    my (undef, $m) = status_model($n, $model);
    return $m && $m->{runtime} ? $m->{runtime}{version} : undef;
}

# Poll both nodes every 10 ms from $t0 until $cond->($node) holds on each;
# returns {a => ms, b => ms} (undef where it never held within $timeout s).
sub propagation {
    my ($t0, $cond, %o) = @_;
    my $timeout = $o{timeout} // 3;
    my %seen;
    while (time - $t0 < $timeout) {
        for my $n (@NODES) {
            next if defined $seen{ $n->name };
            $seen{ $n->name } = (time - $t0) * 1000 if $cond->($n);
        }
        last if keys %seen == @NODES;
        sleep 0.01;
    }
    return \%seen;
}

my %LATENCY;    # label => {a, b}
sub report {
    my ($label, $seen) = @_;
    $LATENCY{$label} = $seen;
    diag(sprintf("propagation %-34s node a %s, node b %s", $label,
        map { defined $seen->{$_} ? sprintf('%6.1f ms', $seen->{$_}) : 'never' } qw(a b)));
}

sub both_within {
    my ($seen, $limit_ms, $name) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    ok(defined $seen->{a} && defined $seen->{b}
       && $seen->{a} < $limit_ms && $seen->{b} < $limit_ms, $name)
        or diag("seen: " . $JSON->encode($seen));
}

sub all_served_by {
    my ($n, $path, $who, $count) = @_;
    my %by;
    $by{ served_by($n, $path) }++ for 1 .. ($count // 40);
    return (keys %by == 1 && exists $by{$who}), \%by;
}

# --- baseline ---------------------------------------------------------------

subtest 'baseline: both nodes connected to redis, nothing flipped' => sub {
    for my $n (@NODES) {
        ok wait_for(sub { my ($doc) = status_model($n, 'chat'); $doc && $doc->{redis}{connected} }, timeout => 5),
            $n->name . ': redis.connected';
        my ($doc, $m) = status_model($n, 'chat');
        is $doc->{redis}{configured}, JSON::PP::true, 'redis.configured';
        is $doc->{redis}{address}, "127.0.0.1:$rport", 'redis.address';
        is $doc->{redis}{degraded}, JSON::PP::false, 'not degraded';
        is $m->{runtime}{version}, 0, 'runtime version 0';
        is $m->{runtime}{kill}, undef, 'runtime kill unset (null)';
        is $m->{kill_switch}, JSON::PP::false, 'kill_switch false';
        is served_by($n, '/chat'), 'stable', 'chat served by stable (canary v2 0%)';
        is served_by($n, '/bg'), 'stable', 'bg: active blue';
    }
};

# --- kill switch with redis-cli alone ----------------------------------------

subtest 'kill switch with redis-cli alone (HSET + HINCRBY + PUBLISH) reaches both nodes' => sub {
    my @cli = ('redis-cli', '-h', '127.0.0.1', '-p', $rport);
    system("@cli HSET aigov:model:chat kill 1 >/dev/null") == 0 or die "redis-cli HSET failed";
    my $ver = `@cli HINCRBY aigov:model:chat version 1`;
    my $t0 = time;    # the new version is in Redis
    system("@cli PUBLISH aigov:control chat >/dev/null") == 0 or die "redis-cli PUBLISH failed";
    diag(sprintf("redis-cli PUBLISH itself took %.1f ms", (time - $t0) * 1000));
    chomp $ver;
    like $ver, qr/^\d+$/, "redis-cli HINCRBY answered the version ($ver)";
    my $seen = propagation($t0, sub { killed($_[0], '/chat') });
    report('kill (redis-cli + PUBLISH)', $seen);
    both_within($seen, 1000, 'both nodes answer 503 model-disabled within 1 s');
    for my $n (@NODES) {
        my $r = $n->get('/chat');
        is $r->{status}, 503, $n->name . ': 503';
        like $r->{headers}{'content-type'}, qr{application/problem\+json}, 'problem+json';
        ok defined $r->{headers}{'retry-after'}, 'Retry-After';
        is served_by($n, '/bg'), 'stable', 'other models unaffected';
        my ($doc, $m) = status_model($n, 'chat');
        is $m->{runtime}{version}, $ver, 'status: runtime.version is Redis\'s';
        is $m->{runtime}{kill}, 'on', 'status: runtime.kill "on"';
        is $m->{kill_switch}, JSON::PP::true, 'status: effective kill_switch true';
        is $m->{config}{kill_switch}, JSON::PP::false, 'status: config.kill_switch false';
        is $m->{runtime}{pending_redis}, JSON::PP::false, 'status: nothing pending for redis';
        ok exists $m->{runtime}{$_}, "status: runtime.$_ present" for qw(rollback active weights updated by);
        is $m->{runtime}{weights}, undef, 'status: runtime.weights null (not set)';
        is $m->{weights_from}, 'config', 'status: weights_from config';
    }

    rflip('chat', { kill => '0' });
    $t0 = $T_COMMIT;
    $seen = propagation($t0, sub { served_by($_[0], '/chat') eq 'stable' });
    report('unkill (PUBLISH)', $seen);
    both_within($seen, 1000, 'kill "0" lifts it on both nodes within 1 s');
    my (undef, $m) = status_model($A, 'chat');
    is $m->{runtime}{kill}, 'off', 'runtime.kill "off"';
};

subtest 'rollback through redis' => sub {
    # weights first so that rollback has something to undo: everything to v2
    rflip('chat', { weights => 'v2=100%' });
    ok wait_for(sub { served_by($A, '/chat') eq 'candidate' && served_by($B, '/chat') eq 'candidate' }, timeout => 2),
        'weights v2=100% applied first';
    rflip('chat', { rollback => '1' });
    my $t0 = $T_COMMIT;
    my $seen = propagation($t0, sub { served_by($_[0], '/chat') eq 'stable' });
    report('rollback (PUBLISH)', $seen);
    both_within($seen, 1000, 'rollback "1": both nodes send to stable within 1 s');
    for my $n (@NODES) {
        my ($ok, $by) = all_served_by($n, '/chat', 'stable');
        ok $ok, $n->name . ': every request to stable' or diag $JSON->encode($by);
        my $r = $n->get('/chat');
        my (undef, $m) = status_model($n, 'chat');
        is $m->{rollback}, JSON::PP::true, 'status: effective rollback true';
        is $m->{runtime}{rollback}, 'on', 'status: runtime.rollback "on"';
    }
    rflip('chat', { rollback => '0' });
    $t0 = $T_COMMIT;
    $seen = propagation($t0, sub { served_by($_[0], '/chat') eq 'candidate' });
    report('unrollback (PUBLISH)', $seen);
    both_within($seen, 1000, 'rollback "0": back to the weights within 1 s');
};

subtest 'canary weights through redis' => sub {
    # (v2=100% is in place from the previous subtest)
    for my $n (@NODES) {
        my ($ok, $by) = all_served_by($n, '/chat', 'candidate');
        ok $ok, $n->name . ': v2=100% -> every request to the candidate' or diag $JSON->encode($by);
        my (undef, $m) = status_model($n, 'chat');
        is $m->{weights_from}, 'runtime', 'status: weights_from runtime';
        is $m->{runtime}{weights}, 'v2=100%', 'status: runtime.weights';
        is $m->{weights}{v2}, '100%', 'status: effective weight of v2';
    }
    rflip('chat', { weights => 'v2=0%' });
    my $t0 = $T_COMMIT;
    my $seen = propagation($t0, sub { served_by($_[0], '/chat') eq 'stable' });
    report('weights v2=0% (PUBLISH)', $seen);
    both_within($seen, 1000, 'v2=0% on both nodes within 1 s');
    for my $n (@NODES) {
        my ($ok, $by) = all_served_by($n, '/chat', 'stable');
        ok $ok, $n->name . ': v2=0% -> no request to the candidate' or diag $JSON->encode($by);
    }
    rflip('chat', { weights => 'v2=100%' });
    $t0 = $T_COMMIT;
    $seen = propagation($t0, sub { served_by($_[0], '/chat') eq 'candidate' });
    report('weights v2=100% (PUBLISH)', $seen);
    both_within($seen, 1000, 'v2=100% on both nodes within 1 s');

    # "" = back to the config's canary (v2 0%)
    rflip('chat', { weights => '' });
    ok wait_for(sub { served_by($A, '/chat') eq 'stable' && served_by($B, '/chat') eq 'stable' }, timeout => 2),
        'weights "" -> the config\'s weights again';
    my (undef, $m) = status_model($A, 'chat');
    is $m->{weights_from}, 'config', 'status: weights_from config';
    is $m->{runtime}{weights}, undef, 'status: runtime.weights null';
};

subtest 'blue-green active colour through redis' => sub {
    rflip('bg', { active => 'green' });
    my $t0 = $T_COMMIT;
    my $seen = propagation($t0, sub { served_by($_[0], '/bg') eq 'candidate' });
    report('active green (PUBLISH)', $seen);
    both_within($seen, 1000, 'active green on both nodes within 1 s');
    for my $n (@NODES) {
        my ($ok, $by) = all_served_by($n, '/bg', 'candidate');
        ok $ok, $n->name . ': every request to green' or diag $JSON->encode($by);
        my (undef, $m) = status_model($n, 'bg');
        is $m->{active}, 'green', 'status: effective active green';
        is $m->{runtime}{active}, 'green', 'status: runtime.active green';
    }
    rflip('bg', { active => '' });
    $t0 = $T_COMMIT;
    $seen = propagation($t0, sub { served_by($_[0], '/bg') eq 'stable' });
    report('active "" -> config blue', $seen);
    both_within($seen, 1000, 'active "" -> the config\'s blue within 1 s');
};

# --- without PUBLISH: the periodic re-read ------------------------------------

subtest 'without PUBLISH it arrives within sync_interval (300ms)' => sub {
    ok $_->reload(fleet_conf(name => $_->name, sync => '300ms')), $_->name . ': reloaded with sync_interval=300ms'
        for @NODES;
    ok wait_for(sub { my ($d) = status_model($A, 'chat'); $d && $d->{redis}{connected} }, timeout => 3), 'connected';
    my @lat;
    for my $round (1 .. 3) {
        rflip('chat', { kill => '1' }, no_publish => 1);
        my $t0 = $T_COMMIT;
        my $seen = propagation($t0, sub { killed($_[0], '/chat') });
        report("kill, no PUBLISH, round $round", $seen);
        both_within($seen, 1500, "round $round: both nodes within 1.5 s");
        push @lat, grep { defined } values %$seen;
        rflip('chat', { kill => '0' }, no_publish => 1);
        ok wait_for(sub { !killed($A, '/chat') && !killed($B, '/chat') }, timeout => 2), 'lifted again (no PUBLISH)';
    }
    my ($max) = sort { $b <=> $a } @lat;
    diag(sprintf("without PUBLISH: max %.0f ms over %d observations", $max // -1, scalar @lat));
};

# --- stale versions -------------------------------------------------------------

subtest 'a stale version in redis is ignored and overwritten with the node\'s state' => sub {
    my $v = rflip('chat', { kill => '1' });
    ok wait_for(sub { killed($A, '/chat') && killed($B, '/chat') }, timeout => 2), "killed at version $v";
    my $stale = $v - 2;
    # an old writer (or a restored backup) puts an older version back
    redis_cmd($rport, 'HSET', key('chat'), 'version', $stale, 'kill', '0');
    redis_cmd($rport, 'PUBLISH', 'aigov:control', 'chat');
    my $back = wait_for(sub {
        my $h = redis_cmd($rport, 'HGET', key('chat'), 'version');
        defined $h && $h == $v ? 1 : 0;
    }, timeout => 2);
    ok $back, "a node wrote its version $v back over the stale $stale";
    my %h = @{ redis_cmd($rport, 'HGETALL', key('chat')) };
    is $h{kill}, '1', 'and its kill "1"';
    for my $n (@NODES) {
        ok killed($n, '/chat'), $n->name . ': still killed (stale kill "0" ignored)';
        is runtime_version($n, 'chat'), $v, $n->name . ": runtime.version still $v";
    }
    rflip('chat', { kill => '0' });
    ok wait_for(sub { !killed($A, '/chat') && !killed($B, '/chat') }, timeout => 2), 'a newer version lifts it';
};

# --- config precedence ------------------------------------------------------------

subtest 'config kill_switch on beats runtime kill "0"' => sub {
    ok killed($_, '/locked'), $_->name . ': locked is killed by config' for @NODES;
    my $v = rflip('locked', { kill => '0', rollback => '0' });
    ok wait_for(sub { (runtime_version($A, 'locked') // -1) == $v && (runtime_version($B, 'locked') // -1) == $v },
                timeout => 2), "runtime version $v applied on both nodes";
    for my $n (@NODES) {
        ok killed($n, '/locked'), $n->name . ': still 503 with runtime kill "0"';
        my (undef, $m) = status_model($n, 'locked');
        is $m->{runtime}{kill}, 'off', 'status: runtime.kill "off"';
        is $m->{kill_switch}, JSON::PP::true, 'status: effective kill_switch true';
        is $m->{config}{kill_switch}, JSON::PP::true, 'status: config.kill_switch true';
    }
};

# --- reload and kill -9 -------------------------------------------------------------

subtest 'reload keeps runtime state (shared zone)' => sub {
    my $v = rflip('chat', { kill => '1' });
    ok wait_for(sub { killed($A, '/chat') && killed($B, '/chat') }, timeout => 2), 'killed';
    ok $A->reload, 'node a reloaded (same config)';
    ok killed($A, '/chat'), 'a: still killed after reload';
    is runtime_version($A, 'chat'), $v, "a: runtime.version $v";
    # node b: reload onto a redis that is not there: the state can only come
    # from the shared zone
    my $nowhere = redis_port('nowhere');
    ok $B->reload(fleet_conf(name => 'b', sync => '300ms', redis_port => $nowhere)),
        'node b reloaded with aigov_redis pointing where nothing listens';
    ok killed($B, '/chat'), 'b: still killed, from the shared zone alone';
    is runtime_version($B, 'chat'), $v, "b: runtime.version $v";
    my ($doc) = status_model($B, 'chat');
    is $doc->{redis}{connected}, JSON::PP::false, 'b: redis.connected false';
    ok $B->reload(fleet_conf(name => 'b', sync => '300ms')), 'node b back on the real redis';
    ok wait_for(sub { my ($d) = status_model($B, 'chat'); $d && $d->{redis}{connected} }, timeout => 5),
        'b: connected again';
    rflip('chat', { kill => '0' });
    ok wait_for(sub { !killed($A, '/chat') && !killed($B, '/chat') }, timeout => 2), 'and still syncing after it';
};

subtest 'kill -9 of a worker: the state stays and the respawned worker keeps syncing' => sub {
    # sync_interval back to 5s: a flip within 1 s then proves that the
    # respawned worker subscribed again (the periodic re-read is too slow)
    ok $_->reload(fleet_conf(name => $_->name, sync => '5s')), $_->name . ': reloaded with sync_interval=5s'
        for @NODES;
    ok wait_for(sub { my ($d) = status_model($_, 'bg'); $d && $d->{redis}{connected} }, timeout => 3),
        $_->name . ': connected' for @NODES;
    my $v = rflip('bg', { active => 'green' });
    ok wait_for(sub { served_by($A, '/bg') eq 'candidate' && served_by($B, '/bg') eq 'candidate' }, timeout => 2),
        'bg active green on both nodes';
    # Kill each worker of node a in turn (the lowest pid first: worker 0,
    # the one that subscribes and re-reads); after each, flip again.
    my @flips = (['blue', 'stable'], ['green', 'candidate']);
    for my $i (0, 1) {
        my @before = sort { $a <=> $b } $A->worker_pids;
        is scalar @before, 2, 'two workers';
        my $victim = $before[$i == 0 ? 0 : -1];
        kill 'KILL', $victim;
        my $respawned = wait_for(sub {
            my @now = $A->worker_pids;
            @now == 2 && !grep({ $_ == $victim } @now) ? 1 : 0;
        }, timeout => 5);
        ok $respawned, "worker $victim killed with SIGKILL and respawned";
        my ($ok, $by) = all_served_by($A, '/bg', $i == 0 ? 'candidate' : 'stable');
        ok $ok, 'state kept across the kill' or diag $JSON->encode($by);
        my ($colour, $fixture) = @{ $flips[$i] };
        # give the respawned worker a moment to connect and subscribe
        ok wait_for(sub { my ($d) = status_model($A, 'bg'); $d && $d->{redis}{connected} }, timeout => 3),
            'redis connected';
        rflip('bg', { active => $colour });
        my $t0 = $T_COMMIT;
        my $seen = propagation($t0, sub { served_by($_[0], '/bg') eq $fixture });
        report("active $colour after kill -9 #" . ($i + 1), $seen);
        both_within($seen, 1000, "flip after the kill reaches both nodes within 1 s (a: respawned worker)");
    }
    ok $A->alive, 'master alive';
};

# --- admin API -----------------------------------------------------------------

sub admin {
    my ($n, $method, $path, %o) = @_;
    my %h = ('Authorization' => "Bearer " . ($o{token} // $WTOKEN));
    delete $h{Authorization} if $o{no_token};
    return $n->req(method => $method, path => "/aigov/$path", headers => \%h,
                   (defined $o{body} ? (body => $o{body}) : ()), fresh => 1);
}

our $CTL_TOKEN;
sub ctl {
    my ($n, @args) = @_;
    return aigovctl($n, $CTL_TOKEN // $WTOKEN, @args);
}

SKIP: {
    skip "admin API: $ADMIN_WHY", 4 unless $ADMIN;

    subtest 'admin API: authentication and errors' => sub {
        my $r = admin($A, 'GET', 'models', no_token => 1);
        is $r->{status}, 401, 'no token: 401';
        like $r->{headers}{'www-authenticate'} // '', qr/^Bearer realm="aigov"/, 'WWW-Authenticate: Bearer realm="aigov"';
        like $r->{headers}{'content-type'} // '', qr{application/problem\+json}, 'problem+json';
        $r = admin($A, 'GET', 'models', token => 'wrong');
        is $r->{status}, 401, 'invalid token: 401';
        $r = admin($A, 'GET', 'models', token => $RTOKEN);
        is $r->{status}, 200, 'read token: GET models 200';
        ok ref $r->{json}{models} eq 'ARRAY', 'models array';
        ok exists $r->{json}{redis}, 'redis object';
        $r = admin($A, 'POST', 'models/chat/kill', token => $RTOKEN);
        is $r->{status}, 403, 'read token on a write: 403';
        like $r->{headers}{'content-type'} // '', qr{application/problem\+json}, 'problem+json';
        is admin($A, 'GET', 'models/nosuch')->{status}, 404, 'unknown model 404';
        is admin($A, 'GET', 'nosuch')->{status}, 404, 'unknown path 404';
        is admin($A, 'DELETE', 'models/chat/kill')->{status}, 405, 'wrong method 405';
        # a rejected request must change nothing: not the node, not Redis,
        # not the audit stream
        my $v0 = redis_cmd($rport, 'HGET', key('chat'), 'version');
        my $w0 = redis_cmd($rport, 'HGET', key('chat'), 'weights');
        my $x0 = redis_cmd($rport, 'XLEN', 'aigov:audit');
        my $rt0 = runtime_version($A, 'chat');
        my $log0 = () = $A->error_log_lines;
        is admin($A, 'PUT', 'models/chat/weights', body => '{nope')->{status}, 400, 'invalid JSON 400';
        is admin($A, 'PUT', 'models/chat/weights', body => { weights => { v9 => '5%' } })->{status}, 400,
            'unknown variant 400';
        is admin($A, 'PUT', 'models/chat/weights', body => { weights => { v2 => '101%' } })->{status}, 400,
            'weight over 100% 400';
        is admin($A, 'PUT', 'models/bg/weights', body => { weights => { green => '5%' } })->{status}, 409,
            'weights on a blue-green model 409';
        is admin($A, 'PUT', 'models/chat/active', body => { active => 'v2' })->{status}, 409,
            'active on a canary model 409';
        is admin($A, 'PUT', 'models/bg/active', body => { active => 'purple' })->{status}, 400,
            'unknown colour 400';
        is admin($A, 'PUT', 'models/chat/weights', body => { weights => { v1 => '5%' } })->{status}, 400,
            'a weight for the stable variant 400';
        is admin($A, 'PUT', 'models/chat/weights', body => { nope => 1 })->{status}, 400,
            'no "weights" member 400';
        is redis_cmd($rport, 'HGET', key('chat'), 'version'), $v0, "rejected requests: redis version still $v0";
        is redis_cmd($rport, 'HGET', key('chat'), 'weights'), $w0, 'rejected requests: redis weights unchanged';
        is redis_cmd($rport, 'XLEN', 'aigov:audit'), $x0, 'rejected requests: nothing in the audit stream';
        is runtime_version($A, 'chat'), $rt0, "rejected requests: node a's runtime.version still $rt0";
        my @lines = $A->error_log_lines;
        my @bad = grep { /\[(?:alert|crit|error|emerg)\]/ } @lines[$log0 .. $#lines];
        ok !@bad, 'rejected requests: no [alert]/[error] in node a\'s log' or diag(join("\n", @bad));
    };

    subtest 'admin API: a kill on node a reaches node b within 1 s, and is audited' => sub {
        ok !killed($A, '/chat') && !killed($B, '/chat'), 'chat serving on both nodes';
        my $t0 = time;
        my $r = admin($A, 'POST', 'models/chat/kill', body => { reason => 'fleet test 80' });
        is $r->{status}, 200, 'POST models/chat/kill: 200';
        my $j = $r->{json} // {};
        is $j->{model}, 'chat', 'model';
        is $j->{action}, 'kill', 'action';
        is $j->{propagated}, JSON::PP::true, 'propagated';
        like $j->{version} // '', qr/^\d+$/, "version $j->{version}";
        is +($j->{runtime} // {})->{kill}, 'on', 'change response: "runtime" object with kill "on" (as specified)'
            or diag('change response members: ' . join(', ', sort keys %$j));
        my $seen = propagation($t0, sub { killed($_[0], '/chat') });
        report('admin API kill on a', $seen);
        ok defined $seen->{b} && $seen->{b} < 1000, 'node b answers 503 within 1 s';
        ok defined $seen->{a} && $seen->{a} < 1000, 'node a too';
        is redis_cmd($rport, 'HGET', key('chat'), 'version'), $j->{version}, 'redis has the version';
        is redis_cmd($rport, 'HGET', key('chat'), 'kill'), '1', 'redis has kill 1';
        my $xs = redis_cmd($rport, 'XREVRANGE', 'aigov:audit', '+', '-', 'COUNT', 5);
        my ($e) = grep { $_->{model} eq 'chat' && $_->{action} eq 'kill' && $_->{version} eq $j->{version} }
                  map { +{ @{ $_->[1] } } } @{ ref $xs eq 'ARRAY' ? $xs : [] };
        ok $e, 'the audit stream aigov:audit has the entry' or diag $JSON->encode($xs);
        is $e->{reason}, 'fleet test 80', 'with the reason' if $e;
        is $e->{by}, 'ops', 'by the token\'s name' if $e;
        ok $e && length($e->{$_} // ''), "audit entry has $_" for qw(node old new time);
        $r = admin($B, 'GET', 'audit?count=5', token => $RTOKEN);
        is $r->{status}, 200, 'GET audit on node b: 200';
        like $r->{body}, qr/fleet test 80/, 'and shows the entry';
        $r = admin($B, 'POST', 'models/chat/unkill');
        is $r->{status}, 200, 'unkill on node b';
        ok wait_for(sub { !killed($A, '/chat') }, timeout => 1), 'node a serves again within 1 s';
    };

    subtest 'tools/aigovctl against the real admin API' => sub {
        my ($rc, $out) = ctl($A, 'kill', 'chat', '--reason', 'aigovctl test');
        is $rc, 0, 'aigovctl kill: exit 0' or diag $out;
        like $out, qr/^chat: kill switch ON, version \d+, propagated to the fleet$/m, 'summary line';
        ok wait_for(sub { killed($B, '/chat') }, timeout => 1), 'node b killed';
        ($rc, $out) = ctl($B, 'unkill', 'chat');
        is $rc, 0, 'aigovctl unkill on b: exit 0' or diag $out;
        ok wait_for(sub { !killed($A, '/chat') }, timeout => 1), 'node a serving';
        ($rc, $out) = ctl($A, 'weights', 'chat', 'v2=100%');
        is $rc, 0, 'aigovctl weights chat v2=100%' or diag $out;
        ok wait_for(sub { served_by($B, '/chat') eq 'candidate' }, timeout => 1), 'node b: candidate';
        ($rc, $out) = ctl($A, 'weights', 'chat', '--clear');
        is $rc, 0, 'aigovctl weights chat --clear' or diag $out;
        ok wait_for(sub { served_by($B, '/chat') eq 'stable' }, timeout => 1), 'node b: config weights';
        ($rc, $out) = ctl($A, 'switch', 'bg', 'green');
        is $rc, 0, 'aigovctl switch bg green' or diag $out;
        ok wait_for(sub { served_by($B, '/bg') eq 'candidate' }, timeout => 1), 'node b: green';
        ($rc, $out) = ctl($A, 'switch', 'bg', '--clear');
        is $rc, 0, 'aigovctl switch bg --clear' or diag $out;
        ($rc, $out) = ctl($A, 'rollback', 'chat');
        is $rc, 0, 'aigovctl rollback' or diag $out;
        like $out, qr/^chat: rollback ON, version \d+, propagated to the fleet$/m, 'summary line';
        ($rc, $out) = ctl($A, 'unrollback', 'chat');
        is $rc, 0, 'aigovctl unrollback' or diag $out;
        ($rc, $out) = ctl($A, 'status', 'chat');
        is $rc, 0, 'aigovctl status chat';
        like $out, qr/"runtime"/, 'shows the runtime';
        ($rc, $out) = ctl($A, 'audit', '3');
        is $rc, 0, 'aigovctl audit 3';
        like $out, qr/unrollback/, 'shows the last change';
        ($rc, $out) = ctl($A, 'kill', 'nosuch');
        is $rc, 1, 'unknown model: exit 1';
        like $out, qr/404|nknown/, 'prints the problem';
        ($rc, $out) = ctl($A, 'weights', 'chat', 'v9=5%');
        is $rc, 1, 'unknown variant: exit 1';
        {
            local $CTL_TOKEN = $RTOKEN;
            ($rc, $out) = ctl($A, 'kill', 'chat');
            is $rc, 1, 'read-only token: exit 1';
            like $out, qr/403|orbidden/i, 'says forbidden';
        }
        ok !killed($A, '/chat'), 'chat not killed by the read-only attempt';
        my $tf = tmp_dir() . '/ctl-token';
        { open(my $fh, '>', $tf) or die; print {$fh} "$RTOKEN\n"; close $fh; }
        {
            local $CTL_TOKEN = 'not-the-token-0000';
            ($rc, $out) = ctl($A, '--token-file', $tf, 'status');
            is $rc, 0, '--token-file beats AIGOV_TOKEN' or diag $out;
            ($rc, $out) = ctl($A, 'status');
            is $rc, 1, 'a wrong AIGOV_TOKEN: exit 1';
            like $out, qr/401|nauthorized/, 'says unauthorized';
            local $CTL_TOKEN = '';
            local $ENV{AIGOV_TOKEN_FILE} = $tf;
            ($rc, $out) = ctl($A, 'status', 'bg');
            is $rc, 0, 'AIGOV_TOKEN_FILE' or diag $out;
        }
    };

    subtest 'admin API with redis down: on this node only, written back when redis returns' => sub {
        redis_sigstop($rport);
        my $r = admin($A, 'POST', 'models/chat/kill', body => { reason => 'redis stopped' });
        is $r->{status}, 200, 'kill while redis is stopped: 200';
        is $r->{json}{propagated}, JSON::PP::false, 'propagated false';
        is +($r->{json}{runtime} // {})->{pending_redis}, JSON::PP::true,
            'change response: runtime.pending_redis true (as specified)'
            or diag('change response members: ' . join(', ', sort keys %{ $r->{json} // {} }));
        my (undef, $m) = status_model($A, 'chat');
        is $m->{runtime}{pending_redis}, JSON::PP::true, 'status: runtime.pending_redis true';
        ok killed($A, '/chat'), 'node a killed at once';
        my ($rc, $out) = ctl($A, 'unkill', 'chat');
        is $rc, 0, 'aigovctl unkill while redis is stopped: exit 0';
        like $out, qr/on this node only \(redis unreachable\)/, 'summary says this node only';
        ($rc, $out) = ctl($A, 'kill', 'chat');
        redis_sigcont($rport);
        my $v = $r->{json}{version};
        ok wait_for(sub { killed($B, '/chat') }, timeout => 5), 'node b killed once redis is back (written back)';
        is redis_cmd($rport, 'HGET', key('chat'), 'kill'), '1', 'redis has kill 1';
        my $r2 = admin($A, 'POST', 'models/chat/unkill');
        ok wait_for(sub { !killed($B, '/chat') }, timeout => 2), 'unkill reaches b';
    };
}

# --- CLI without a server ---------------------------------------------------------

subtest 'tools/aigovctl: usage errors and unreachable nginx' => sub {
    ok -x $CTL, 'tools/aigovctl is executable';
    my ($rc, $out) = ctl($A, '--help');
    is $rc, 0, '--help: exit 0';
    like $out, qr/AIGOV_URL/, '--help documents AIGOV_URL';
    like $out, qr/exit/i, '--help documents exit codes';
    ($rc, $out) = ctl($A);
    is $rc, 2, 'no command: exit 2';
    ($rc, $out) = ctl($A, 'frobnicate');
    is $rc, 2, 'unknown command: exit 2';
    ($rc, $out) = ctl($A, 'kill');
    is $rc, 2, 'kill without a model: exit 2';
    ($rc, $out) = ctl($A, 'weights', 'chat');
    is $rc, 2, 'weights without weights: exit 2';
    ($rc, $out) = ctl($A, 'weights', 'chat', 'v2');
    is $rc, 2, 'weights with a malformed VARIANT=PCT: exit 2';
    ($rc, $out) = ctl($A, 'kill', 'a/b');
    is $rc, 2, 'a model name with a slash: exit 2';
    ($rc, $out) = ctl($A, 'audit', 'x');
    is $rc, 2, 'audit x: exit 2';
    my $dead = nginx_port('nowhere');
    ($rc, $out) = ctl($A, '--url', "http://127.0.0.1:$dead/aigov/", 'status');
    is $rc, 3, 'nothing listening: exit 3';
    like $out, qr/127\.0\.0\.1:$dead/, 'says where it tried';
};

# --- wrap up -------------------------------------------------------------------

for my $n (@NODES) {
    $n->error_log_clean_ok($n->name . ': no unexpected errors',
        allow => [qr/worker process \d+ exited on signal 9/]);
}

diag('propagation latencies (ms): ' . join('; ', map {
    my $s = $LATENCY{$_};
    sprintf('%s a=%s b=%s', $_, map { defined $s->{$_} ? sprintf('%.0f', $s->{$_}) : 'never' } qw(a b))
} sort keys %LATENCY));

done_testing;
