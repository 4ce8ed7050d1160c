#!/usr/bin/perl
# Emergency controls: "rollback on" sends everything to the stable variant
# (decision "rollback") whatever the request says; "kill_switch on" answers
# 503 application/problem+json with Retry-After and never calls the model.
# Both applied and removed by reload under load.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use AigovTest;
use JSON::PP ();
use POSIX ();
use Time::HiRes qw(time sleep);

start_fixture(name => 'stable',    version => '1.4.2');
start_fixture(name => 'candidate', version => '1.5.0');
my $nowhere = fixture_port('nowhere');    # never started: nothing listens there

my %FIXTURE_OF = (v1 => 'stable', v2 => 'candidate', blue => 'stable', green => 'candidate');
my %VERSION_OF = (v1 => '1.4.2', v2 => '1.5.0', blue => '1.4.2', green => '1.5.0');

sub http_conf {
    my (%o) = @_;
    my $rollback = $o{rollback} // 'off';
    my $kill     = $o{kill}     // 'off';
    return <<"EOF";
    upstream u_stable    { server 127.0.0.1:%%FIXTURE_stable%%;    keepalive 32; }
    upstream u_candidate { server 127.0.0.1:%%FIXTURE_candidate%%; keepalive 32; }
    upstream u_nowhere   { server 127.0.0.1:%%FIXTURE_nowhere%%; }

    aigov_zone aigov_rb:1m;

    # switched by reload
    aigov_model chat {
        variant v1 u_stable    version=1.4.2 stable;
        variant v2 u_candidate version=1.5.0;
        canary        v2 50%;
        canary_header X-Canary;
        canary_cookie aigov_canary;
        canary_sticky \$http_x_api_key;
        rollback      $rollback;
        kill_switch   $kill;
    }

    # the same model, never switched: the other models are unaffected
    aigov_model live {
        variant v1 u_stable    version=1.4.2 stable;
        variant v2 u_candidate version=1.5.0;
        canary        v2 50%;
        canary_header X-Canary;
    }

    aigov_model bg {
        variant blue  u_stable    version=1.4.2 stable;
        variant green u_candidate version=1.5.0;
        active   green;
        preview  blue;
        rollback on;
    }

    aigov_model dead {
        variant v1 u_stable    version=1.4.2 stable;
        variant v2 u_candidate version=1.5.0;
        canary        v2 50%;
        canary_header X-Canary;
        kill_switch   on;
    }

    aigov_model dead60 {
        variant v1 u_stable version=1.4.2 stable;
        kill_switch on retry_after=60s;
    }

    aigov_model dead1m {
        variant v1 u_stable version=1.4.2 stable;
        rollback    on;
        kill_switch on retry_after=1m;
    }

    # variants where nothing listens: with the kill switch, 503 from aigov
    aigov_model ghost {
        variant v1 u_nowhere version=1 stable;
        kill_switch on;
    }

    aigov_model ghostlive {
        variant v1 u_nowhere version=1 stable;
    }

    server {
        listen 127.0.0.1:%%PORT%%;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        add_header X-Decision \$aigov_decision always;

        location /f/ {
            aigov_route model=\$arg_m;
            proxy_pass http://\$aigov_upstream;
        }

        location /v2/models/ {
            aigov_route kserve;
            proxy_pass http://\$aigov_upstream;
        }

        location /v1/ {
            client_body_buffer_size 64k;
            aigov_route openai;
            proxy_pass http://\$aigov_upstream;
        }

        location = /status {
            aigov_status;
        }
    }
EOF
}

my $ng = start_nginx(nginx_conf(http_conf()));

# --- helpers ----------------------------------------------------------------

# Stop the file early, instead of looping for minutes, when nginx no longer
# answers at all (e.g. workers crashing).
my $NO_RESPONSE = 0;
sub req {
    my (%a) = @_;
    my $r = http_req(timeout => 5, %a);
    die "nginx stopped answering: 20 requests without a response (last: $r->{error})\n"
        if $r->{status} == 599 && ++$NO_RESPONSE >= 20;
    return $r;
}

sub summary {
    my ($r) = @_;
    my $h = $r->{headers};
    return [ $r->{status}, $h->{'x-aigov-variant'}, $h->{'x-decision'}, $h->{'x-served-by'},
             $h->{'x-model-version'} ];
}

sub want { my ($v, $decision) = @_; [ 200, $v, $decision, $FIXTURE_OF{$v}, $VERSION_OF{$v} ] }

sub f {
    my ($model, @h) = @_;
    return summary(req(path => "/f/x?m=$model", headers => [@h]));
}

my $INFER = { inputs => [ { name => 'x', shape => [1], datatype => 'FP32', data => [1] } ] };

sub pinned {
    my ($model, $version, @h) = @_;
    return summary(req(path => "/v2/models/$model/versions/$version/infer", body => $INFER, headers => [@h]));
}

sub openai {
    my ($model, @h) = @_;
    return summary(req(path => '/v1/chat/completions', body => { model => $model, messages => [] },
                            headers => [@h]));
}

sub sample {
    my ($n, $model, @h) = @_;
    my %c;
    for (1 .. $n) {
        my $x = f($model, @h);
        my $ok = $x->[0] == 200 && defined $x->[1]
              && ($x->[3] // '') eq $FIXTURE_OF{ $x->[1] } && ($x->[4] // '') eq $VERSION_OF{ $x->[1] };
        $c{ $ok ? "$x->[1]/$x->[2]" : "bad:$x->[0]:" . ($x->[2] // '') }++;
    }
    return \%c;
}

sub status_model {
    my ($name) = @_;
    my $s = req(path => '/status');
    my ($m) = grep { $_->{name} eq $name } @{ $s->{json}{models} // [] };
    return $m;
}

sub variant_counters {
    my ($m) = @_;
    return { map { $_->{name} => $_->{requests} } @{ $m->{variants} // [] } };
}

# Check a kill-switch answer: [status, content type, problem fields, Retry-After, decision, variant, served_by]
sub killed {
    my ($r) = @_;
    my $j = $r->{json} // {};
    return [ $r->{status}, $r->{headers}{'content-type'}, $j->{type}, $j->{status}, $j->{model},
             $r->{headers}{'retry-after'}, $r->{headers}{'x-decision'}, $r->{headers}{'x-aigov-variant'},
             $r->{headers}{'x-served-by'} ];
}

sub want_killed {
    my ($model, $retry) = @_;
    return [ 503, 'application/problem+json', 'urn:aigov:problem:model-disabled', 503, $model,
             $retry, 'kill', undef, undef ];
}

# Run wrk (one child per option set) while $during runs here (reloads must
# be sent by the process that started nginx).  Children are started 0.3 s
# apart so that a Lua script written by run_wrk is read before the next one
# is written.
sub wrk_during {
    my ($runs, $during) = @_;
    my @kids;
    for my $o (@$runs) {
        sleep 0.3 if @kids;
        my $pid = open(my $fh, '-|');
        die "fork: $!" unless defined $pid;
        if (!$pid) {
            my $w = eval { run_wrk(%$o) } || { error => "$@" };
            print JSON::PP->new->canonical->encode($w);
            close STDOUT;
            POSIX::_exit(0);
        }
        push @kids, $fh;
    }
    $during->();
    my @res;
    for my $fh (@kids) {
        local $/;
        my $out = <$fh>;
        close $fh;
        push @res, eval { JSON::PP->new->decode($out // '') } // { error => "no wrk result: $@" };
        # wrk prints the "Socket errors" line only when there were some
        $res[-1]{$_} //= 0 for qw(requests non2xx socket_errors err_connect err_read err_write err_timeout);
    }
    return @res;
}

sub wrk_diag {
    my ($label, $w) = @_;
    diag sprintf 'wrk %s: %d requests, %.0f rps, non-2xx %d, socket errors %d (connect %d, read %d, write %d, timeout %d), p99 %.1f ms',
        $label, map { $_ // 0 } @$w{qw(requests rps non2xx socket_errors err_connect err_read err_write err_timeout p99_ms)};
}

# Lua for wrk: count the status codes and check every answer.
my $LUA = <<'EOF';
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) codes = {}; bad = 0 end
local fixture = { v1 = "stable", v2 = "candidate" }
function response(status, headers, body)
  codes[status] = (codes[status] or 0) + 1
  if status == 503 then
    if headers["X-Decision"] ~= "kill" or headers["Retry-After"] ~= "30"
       or headers["Content-Type"] ~= "application/problem+json"
       or headers["X-Served-By"] ~= nil
       or not string.find(body, "urn:aigov:problem:model-disabled", 1, true) then
      bad = bad + 1
    end
  elseif status == 200 then
    local v = headers["X-Aigov-Variant"]
    if v == nil or fixture[v] ~= headers["X-Served-By"] then bad = bad + 1 end
  end
end
function done(summary, latency, requests)
  for _, t in ipairs(threads) do
    for k, v in pairs(t:get("codes")) do io.write(string.format("STATUS %s %d\n", k, v)) end
    io.write(string.format("BAD %d\n", t:get("bad")))
  end
end
EOF

sub lua_counts {
    my ($w) = @_;
    my (%codes, $bad);
    $codes{$1} += $2 while ($w->{raw} // '') =~ /^STATUS (\d+) (\d+)$/mg;
    $bad += $1 while ($w->{raw} // '') =~ /^BAD (\d+)$/mg;
    return (\%codes, $bad);
}

# --- baseline: rollback off ---------------------------------------------------

my ($KEY_V2) = grep { my $x = f('chat', 'X-Api-Key' => $_); $x->[1] eq 'v2' && $x->[2] eq 'sticky' }
               map { "key-$_" } 1 .. 100;
ok defined $KEY_V2, 'baseline: found an API key the split puts on v2';
is_deeply f('chat', 'X-Api-Key' => $KEY_V2), want('v2', 'sticky'), "baseline: key $KEY_V2 -> v2 (sticky)";
is_deeply f('chat', 'X-Canary' => 'always'), want('v2', 'header'), 'baseline: X-Canary: always -> v2';
is_deeply f('chat', Cookie => 'aigov_canary=always'), want('v2', 'cookie'), 'baseline: cookie always -> v2';
is_deeply pinned('chat', '1.5.0'), want('v2', 'pinned'), 'baseline: KServe version 1.5.0 -> v2 (pinned)';
{
    my $s = sample(200, 'chat');
    ok(($s->{'v1/weight'} // 0) > 40 && ($s->{'v2/weight'} // 0) > 40, 'baseline: 50% split')
        or diag explain $s;
}

# --- rollback applied and removed by reload under load --------------------------

{
    my %common = (path => '/f/x?m=chat', seconds => 8, threads => 2, timeout => 5);
    my @plan = qw(on off on);
    my ($ka, $close) = wrk_during(
        [ { %common, connections => 16 },
          { %common, connections => 4, headers => { Connection => 'close' } } ],
        sub {
            sleep 1.5;
            for my $rb (@plan) {
                my $t = time;
                ok $ng->reload(nginx_conf(http_conf(rollback => $rb))), "reload under load: rollback $rb";
                sleep 2 - (time - $t) if time - $t < 2;
            }
        });
    wrk_diag('keep-alive (rollback on/off/on)', $ka);
    wrk_diag('Connection: close (rollback on/off/on)', $close);
    ok !$ka->{error} && $ka->{requests} > 2000, "keep-alive wrk ran ($ka->{requests} requests)"
        or diag $ka->{error} // $ka->{raw};
    is $ka->{non2xx}, 0, 'rollback under load, keep-alive: zero non-2xx';
    is $ka->{err_connect} + $ka->{err_write} + $ka->{err_timeout}, 0,
        'rollback under load, keep-alive: zero connect / write / timeout errors';
    # graceful reload closes each keep-alive connection of the old workers
    # once (stock nginx does so without the module): one wrk read error each
    ok $ka->{err_read} <= 16 * @plan, "keep-alive: read errors ($ka->{err_read}) <= 16 connections x 3 reloads";
    ok !$close->{error} && $close->{requests} > 500, "Connection: close wrk ran ($close->{requests} requests)";
    is_deeply [ $close->{non2xx}, $close->{socket_errors} ], [ 0, 0 ],
        'rollback under load, Connection: close: zero non-2xx, zero socket errors';
}

# --- rollback on: everything to stable ----------------------------------------------

is status_model('chat')->{rollback}, JSON::PP::true, 'aigov_status: chat rollback true';
is_deeply sample(500, 'chat'), { 'v1/rollback' => 500 }, 'rollback: 500 of 500 requests to v1, decision rollback';
is_deeply f('chat', 'X-Canary' => 'always'), want('v1', 'rollback'), 'rollback beats X-Canary: always';
is_deeply f('chat', Cookie => 'aigov_canary=always'), want('v1', 'rollback'), 'rollback beats the canary cookie';
is_deeply f('chat', 'X-Api-Key' => $KEY_V2), want('v1', 'rollback'), 'rollback beats a sticky key of v2';
is_deeply f('chat', 'X-Canary' => 'always', Cookie => 'aigov_canary=always', 'X-Api-Key' => $KEY_V2),
    want('v1', 'rollback'), 'rollback beats all of them together';
is_deeply pinned('chat', '1.5.0'), want('v1', 'rollback'), 'rollback beats a pinned KServe version of the candidate';
is_deeply pinned('chat', '1.5.0', 'X-Canary' => 'always'), want('v1', 'rollback'), 'rollback beats pin + header';
is_deeply openai('chat', 'X-Canary' => 'always'), want('v1', 'rollback'), 'rollback with OpenAI body routing';
is_deeply f('bg'), want('blue', 'rollback'), 'blue-green with rollback: the stable colour, not the active one';
is_deeply f('bg', 'X-Aigov-Preview' => '1'), want('blue', 'rollback'), 'blue-green with rollback: preview ignored';

# the other model is unaffected
is_deeply f('live', 'X-Canary' => 'always'), want('v2', 'header'), 'model live unaffected: X-Canary always -> v2';
is_deeply pinned('live', '1.5.0'), want('v2', 'pinned'), 'model live unaffected: pinned v2';

# --- kill switch ----------------------------------------------------------------------

{
    my $before = status_model('dead');
    my $n = 0;
    is_deeply killed(req(path => '/f/x?m=dead')), want_killed('dead', 30), 'kill switch: 503 problem, Retry-After 30';
    $n++;
    my $r = req(path => '/f/x?m=dead');
    $n++;
    is $r->{json}{title}, 'Model disabled', 'kill switch: problem title';
    like $r->{json}{detail}, qr/^model "dead" is switched off by its kill switch$/, 'kill switch: problem detail';
    is $r->{headers}{'content-length'}, length($r->{body}), 'kill switch: Content-Length matches the body';
    is_deeply killed(req(path => '/f/x?m=dead', headers => ['X-Canary' => 'always'])), want_killed('dead', 30),
        'kill switch beats X-Canary: always';
    $n++;
    is_deeply killed(req(path => '/v2/models/dead/versions/1.5.0/infer', body => $INFER)), want_killed('dead', 30),
        'kill switch beats a pinned KServe version';
    $n++;
    is_deeply killed(req(path => '/v1/chat/completions', body => { model => 'dead', messages => [] })),
        want_killed('dead', 30), 'kill switch with OpenAI body routing';
    $n++;
    for (1 .. 95) { $n++ if req(path => '/f/x?m=dead')->{status} == 503 }
    is $n, 100, '100 requests, 100 answers 503';

    my $after = status_model('dead');
    is_deeply variant_counters($after), variant_counters($before),
        'kill switch: no request reached a variant (aigov_status variant counters unchanged)';
    is( ($after->{decisions}{kill} // 0) - ($before->{decisions}{kill} // 0), 100,
        'kill switch: aigov_status counted 100 kill decisions');
    is $after->{kill_switch}, JSON::PP::true, 'aigov_status: kill_switch true';
}

is_deeply killed(req(path => '/f/x?m=dead60')), want_killed('dead60', 60), 'kill_switch retry_after=60s: Retry-After 60';
is_deeply killed(req(path => '/f/x?m=dead1m')), want_killed('dead1m', 60),
    'kill_switch retry_after=1m: Retry-After 60 (and the kill switch beats rollback)';

# the model is not called: variants where nothing listens
is_deeply killed(req(path => '/f/x?m=ghost')), want_killed('ghost', 30),
    'kill switch with variants where nothing listens: 503 from aigov, not 502';
is req(path => '/f/x?m=ghostlive')->{status}, 502, 'control: the same variants without the kill switch give 502';
my $ghost_error = qr/connect\(\) failed .*upstream: "http:\/\/127\.0\.0\.1:$nowhere\//;
my @connect_errors = grep { /connect\(\) failed/ } error_log_lines();
is scalar(@connect_errors), 1, 'exactly one upstream connect error in the log (the control request)'
    or diag join "\n", @connect_errors;

# another model in the same config is unaffected
{
    my $s = sample(200, 'live');
    is_deeply [ sort keys %$s ], [ 'v1/weight', 'v2/weight' ], 'model live unaffected by dead models: normal split';
}

# --- kill switch applied and removed by reload under load ------------------------------

{
    my $before = status_model('chat');
    my %common = (path => '/f/x?m=chat', seconds => 8, threads => 2, timeout => 5, script => $LUA);
    my @plan = ([ 'on', 'off' ], [ 'off', 'off' ], [ 'on', 'off' ], [ 'off', 'on' ]);   # [kill, rollback]
    my ($ka, $close) = wrk_during(
        [ { %common, connections => 16 },
          { %common, connections => 4, headers => { Connection => 'close' } } ],
        sub {
            sleep 1.2;
            for my $p (@plan) {
                my $t = time;
                ok $ng->reload(nginx_conf(http_conf(kill => $p->[0], rollback => $p->[1]))),
                    "reload under load: kill_switch $p->[0], rollback $p->[1]";
                sleep 1.5 - (time - $t) if time - $t < 1.5;
            }
        });
    for my $w ([ 'keep-alive', $ka, 16 ], [ 'Connection: close', $close, 4 ]) {
        my ($label, $x, $conns) = @$w;
        my ($codes, $bad) = lua_counts($x);
        wrk_diag("$label (kill on/off/on/off)", $x);
        diag "  statuses: " . join(', ', map { "$_ $codes->{$_}" } sort keys %$codes);
        ok !$x->{error} && $x->{requests} > 300, "$label wrk ran ($x->{requests} requests)"
            or diag $x->{error} // $x->{raw};
        is_deeply [ sort keys %$codes ], [ 200, 503 ], "$label: only 200 and 503 answers, both seen";
        is $bad, 0, "$label: every 503 is the kill-switch problem, every 200 came from the chosen variant";
        is $x->{non2xx}, $codes->{503} // -1, "$label: the only non-2xx are the 503s of the kill switch";
        is $x->{err_connect} + $x->{err_write} + $x->{err_timeout}, 0, "$label: zero connect / write / timeout errors";
        if ($label eq 'keep-alive') {
            ok $x->{err_read} <= $conns * @plan, "keep-alive: read errors ($x->{err_read}) <= 16 connections x 4 reloads";
        } else {
            is $x->{socket_errors}, 0, 'Connection: close: zero socket errors';
        }
    }
    my $after = status_model('chat');
    ok(($after->{decisions}{kill} // 0) - ($before->{decisions}{kill} // 0) > 0, 'aigov_status counted kill decisions during the run');
}

# the last reload removed the kill switch and applied rollback
is_deeply sample(100, 'chat'), { 'v1/rollback' => 100 }, 'kill switch removed, rollback on: all to v1';

# kill by reload, then requests
ok $ng->reload(nginx_conf(http_conf(kill => 'on', rollback => 'on'))), 'reload: kill_switch on (and rollback on)';
{
    my $before = status_model('chat');
    my %got;
    $got{ join '|', map { $_ // '-' } @{ killed(req(path => '/f/x?m=chat', headers => ['X-Canary' => 'always'])) } }++
        for 1 .. 50;
    is_deeply \%got, { join('|', map { $_ // '-' } @{ want_killed('chat', 30) }) => 50 },
        'kill switch by reload: 50 of 50 requests answered 503 by aigov';
    is_deeply variant_counters(status_model('chat')), variant_counters($before), 'kill switch by reload: no variant called';
    is_deeply f('live', 'X-Canary' => 'always'), want('v2', 'header'), 'kill switch by reload: model live unaffected';
}
ok $ng->reload(nginx_conf(http_conf())), 'reload: kill switch and rollback removed';
is_deeply f('chat', 'X-Canary' => 'always'), want('v2', 'header'), 'after removal: X-Canary always -> v2 again';
is_deeply f('chat', 'X-Api-Key' => $KEY_V2), want('v2', 'sticky'), 'after removal: the sticky key is on v2 again';

error_log_clean_ok('error log clean (except the control request to the dead port)', allow => [$ghost_error]);
done_testing;
