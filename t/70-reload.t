#!/usr/bin/perl
# Reloads under load: 10 reloads, alternating between two configs with
# different canary weights, during a ~12 s wrk run.  No request may fail,
# the shared zone (counters, generation) must survive every reload, and
# the error log must stay clean.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use AigovTest;
use JSON::PP ();
use POSIX ();
use Time::HiRes qw(time sleep);

start_fixture(name => 'stable',     version => '1.4.2');
start_fixture(name => 'candidate',  version => '1.5.0');
start_fixture(name => 'candidate2', version => '1.6.0');

my %FIXTURE_OF = (v1 => 'stable', v2 => 'candidate', v3 => 'candidate2');

my %CONF = (
    A => { v2 => '10%', v3 => '5%',  v1 => '85%' },
    B => { v2 => '30%', v3 => '10%', v1 => '60%' },
);

sub http_conf {
    my ($which) = @_;
    my $w = $CONF{$which};
    return <<"EOF";
    upstream u_stable     { server 127.0.0.1:%%FIXTURE_stable%%;     keepalive 32; }
    upstream u_candidate  { server 127.0.0.1:%%FIXTURE_candidate%%;  keepalive 32; }
    upstream u_candidate2 { server 127.0.0.1:%%FIXTURE_candidate2%%; keepalive 32; }

    aigov_zone aigov_reload:1m;

    aigov_model chat {
        alias   gpt-4o-mini;
        variant v1 u_stable     version=1.4.2 stable;
        variant v2 u_candidate  version=1.5.0;
        variant v3 u_candidate2 version=1.6.0;
        canary  v2 $w->{v2};
        canary  v3 $w->{v3};
        canary_header X-Canary;
    }

    server {
        listen 127.0.0.1:%%PORT%%;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        add_header X-Decision \$aigov_decision always;

        location /v1/ {
            client_body_buffer_size 64k;
            aigov_route openai;
            proxy_pass http://\$aigov_upstream;
        }

        location /f/ {
            aigov_route model=\$arg_m;
            proxy_pass http://\$aigov_upstream;
        }

        location = /aigov/status {
            aigov_status;
        }
    }
EOF
}

my $ng = start_nginx(nginx_conf(http_conf('A')));

sub status {
    my $r = http_req(path => '/aigov/status', timeout => 5);
    return unless $r->{status} == 200 && $r->{json};
    my ($m) = grep { $_->{name} eq 'chat' } @{ $r->{json}{models} };
    return { zone => $r->{json}{zone}, model => $m,
             variants => { map { $_->{name} => $_->{requests} } @{ $m->{variants} } } };
}

# Children: a hashref runs wrk with those options, a coderef runs the code;
# each returns a hashref.  $during runs here meanwhile (reloads must be sent
# by the process that started nginx).  Children start 0.3 s apart.
sub run_during {
    my ($runs, $during) = @_;
    my @kids;
    for my $o (@$runs) {
        sleep 0.3 if @kids;
        my $pid = open(my $fh, '-|');
        die "fork: $!" unless defined $pid;
        if (!$pid) {
            my $res = eval { ref $o eq 'CODE' ? $o->() : run_wrk(%$o) } || { error => "$@" };
            print JSON::PP->new->canonical->encode($res);
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
        push @res, eval { JSON::PP->new->decode($out // '') } // { error => "no result: $@" };
        # wrk prints the "Socket errors" line only when there were some
        $res[-1]{$_} //= 0 for qw(requests non2xx socket_errors err_connect err_read err_write err_timeout);
    }
    return @res;
}

# A keep-alive client like any HTTP library: a request that got no byte of
# answer on a reused keep-alive connection (closed by an old worker) is
# retried once on a new connection (http_req does that).
sub perl_client {
    my ($seconds) = @_;
    return sub {
        my %c = (ok => 0, failed => 0, wrong_fixture => 0);
        my $end = time + $seconds;
        while (time < $end) {
            my $r = http_req(path => '/v1/chat/completions', timeout => 5,
                             body => { model => 'gpt-4o-mini', messages => [ { role => 'user', content => 'hi' } ] });
            if ($r->{status} != 200) {
                $c{failed}++;
                push @{ $c{errors} }, "$r->{status} " . ($r->{error} // '') if @{ $c{errors} // [] } < 5;
                next;
            }
            $c{ok}++;
            my $v = $r->{headers}{'x-aigov-variant'} // '';
            $c{wrong_fixture}++ unless ($FIXTURE_OF{$v} // '?') eq ($r->{headers}{'x-served-by'} // '')
                                    && ($r->{json}{served_by} // '') eq ($FIXTURE_OF{$v} // '?');
        }
        return \%c;
    };
}

# --- warm up and snapshot -----------------------------------------------------

{
    my $r = http_post_json('/v1/chat/completions', { model => 'chat', messages => [] }, 'X-Canary' => 'always');
    is_deeply [ $r->{status}, $r->{headers}{'x-aigov-variant'}, $r->{json}{served_by}, $r->{headers}{'x-decision'} ],
              [ 200, 'v2', 'candidate', 'header' ], 'warm-up request routed through the fixtures';
}

my $s0 = status();
ok $s0 && $s0->{zone}{generation} >= 1, "aigov_status before: zone generation $s0->{zone}{generation}";

# --- 10 reloads under load ----------------------------------------------------------

my $SECONDS = 12;
my $RELOADS = 10;
my @reload_ok;
my $reloads_done_at;
my $t0 = time;
my ($ka, $close, $p1, $p2) = run_during(
    [ { path => '/v1/chat/completions', method => 'POST', seconds => $SECONDS, connections => 32, threads => 2,
        timeout => 5, headers => { 'Content-Type' => 'application/json' },
        body => { model => 'chat', messages => [ { role => 'user', content => 'hello' } ] } },
      { path => '/f/x?m=chat', seconds => $SECONDS - 1, connections => 8, threads => 2, timeout => 5,
        headers => { Connection => 'close' } },
      perl_client($SECONDS - 2),
      perl_client($SECONDS - 2) ],    # started 0.3 s apart: the last one ends 10.9 s after $t0
    sub {
        sleep 0.1;
        for my $i (1 .. $RELOADS) {
            my $t = time;
            push @reload_ok, $ng->reload(nginx_conf(http_conf($i % 2 ? 'B' : 'A')), settle => 0.2) ? 1 : 0;
            diag "reload $i failed: " . ($ng->reload_error // '') unless $reload_ok[-1];
            sleep 0.85 - (time - $t) if time - $t < 0.85;
        }
        $reloads_done_at = time - $t0;
    });

is_deeply \@reload_ok, [ (1) x $RELOADS ], "$RELOADS reloads succeeded";
ok $reloads_done_at < 10.5,
    sprintf('all reloads happened while every load generator was running (done %.1f s after the start, '
          . 'the first one stops after 10.6 s)', $reloads_done_at);

diag sprintf 'wrk keep-alive (POST, 32 connections): %d requests, %.0f rps, non-2xx %d, socket errors %d '
           . '(connect %d, read %d, write %d, timeout %d), p50 %.1f ms, p99 %.1f ms',
    map { $_ // 0 } @$ka{qw(requests rps non2xx socket_errors err_connect err_read err_write err_timeout p50_ms p99_ms)};
diag sprintf 'wrk Connection: close (GET, 8 connections): %d requests, %.0f rps, non-2xx %d, socket errors %d',
    map { $_ // 0 } @$close{qw(requests rps non2xx socket_errors)};
diag sprintf 'perl keep-alive clients: %d + %d requests, %d + %d failed',
    map { $_ // 0 } $p1->{ok}, $p2->{ok}, $p1->{failed}, $p2->{failed};

ok !$ka->{error} && $ka->{requests} > 5000, "keep-alive wrk ran ($ka->{requests} requests)"
    or diag $ka->{error} // $ka->{raw};
is $ka->{non2xx}, 0, 'keep-alive wrk: zero non-2xx across 10 reloads';
is $ka->{err_connect} + $ka->{err_write} + $ka->{err_timeout}, 0, 'keep-alive wrk: zero connect / write / timeout errors';
# Each reload makes the old workers close their keep-alive connections
# (stock nginx 1.22 does the same without the module); wrk counts each one
# as a read error and reconnects.  At most once per connection per reload.
ok $ka->{err_read} <= 32 * $RELOADS, "keep-alive wrk: read errors ($ka->{err_read}) <= 32 connections x $RELOADS reloads";

ok !$close->{error} && $close->{requests} > 1000, "Connection: close wrk ran ($close->{requests} requests)"
    or diag $close->{error} // $close->{raw};
is_deeply [ $close->{non2xx}, $close->{socket_errors} ], [ 0, 0 ],
    'Connection: close wrk: zero non-2xx, zero socket errors across 10 reloads';

for my $p ($p1, $p2) {
    ok !$p->{error} && $p->{ok} > 300, "perl keep-alive client ran ($p->{ok} requests)" or diag $p->{error};
    is_deeply [ $p->{failed}, $p->{wrong_fixture} ], [ 0, 0 ],
        'perl keep-alive client (retries a stale keep-alive connection once): zero failed requests, always the chosen fixture'
        or diag explain $p->{errors};
}

# --- the shared zone survived -------------------------------------------------------

my $s1 = status();
ok $s1, 'aigov_status answers after the reloads';
is $s1->{zone}{generation}, $s0->{zone}{generation} + $RELOADS, "zone generation went up by exactly $RELOADS";
is_deeply [ @{ $s1->{zone} }{qw(name size created)} ], [ @{ $s0->{zone} }{qw(name size created)} ],
    'same zone (name, size, creation time)';

my $completed = $ka->{requests} + $close->{requests} + $p1->{ok} + $p2->{ok};
my $counted   = $s1->{model}{requests} - $s0->{model}{requests};
my $in_flight = 32 + 8 + 2 + $ka->{socket_errors} + $close->{socket_errors};
diag "completed $completed requests, aigov_status counted $counted";
ok $counted >= $completed, "zone counters kept across the reloads: counted $counted >= completed $completed";
ok $counted <= $completed + $in_flight, "and not more than completed + in flight ($completed + $in_flight)";
my $vsum = 0;
$vsum += $s1->{variants}{$_} - $s0->{variants}{$_} for keys %{ $s1->{variants} };
is $vsum, $counted, 'sum of the per-variant counters = model request counter';
is_deeply $s1->{model}{decisions}, { %{ $s0->{model}{decisions} }, weight => $s1->{model}{decisions}{weight} },
    'only "weight" decisions were added';
is_deeply $s1->{model}{weights}, $CONF{A}, 'weights of the last config (A) in force';
{
    my %share = map { $_ => 100 * ($s1->{variants}{$_} - $s0->{variants}{$_}) / ($counted || 1) } qw(v1 v2 v3);
    diag sprintf 'shares during the run (configs A 85/10/5 and B 60/30/10): v1 %.1f%%, v2 %.1f%%, v3 %.1f%%',
        @share{qw(v1 v2 v3)};
    ok $share{v2} > 12 && $share{v2} < 28, 'v2 got a share between its two weights (both configs served)';
}

# after the run: config A really routes
{
    my %c;
    for (1 .. 2000) {
        my $r = http_req(path => '/f/x?m=chat', timeout => 5);
        $c{ $r->{status} == 200 ? $r->{headers}{'x-aigov-variant'} : "status $r->{status}" }++;
    }
    diag sprintf 'after the reloads, 2000 requests: v1 %d, v2 %d, v3 %d', map { $c{$_} // 0 } qw(v1 v2 v3);
    is_deeply [ sort keys %c ], [qw(v1 v2 v3)], 'after the reloads: all answered, by v1, v2, v3';
    ok abs(100 * ($c{v2} // 0) / 2000 - 10) <= 2.5, 'after the reloads: v2 share is config A\'s 10%';
}

# --- error log ----------------------------------------------------------------------

my @signal = grep { /exited on signal/ } error_log_lines(all => 1);
is scalar(@signal), 0, 'no worker exited on a signal' or diag join "\n", @signal[0 .. ($#signal < 4 ? $#signal : 4)];
error_log_clean_ok('no [alert], [crit] or [error] in the error log');

done_testing;
