#!/usr/bin/perl
# Circuit breakers ("breaker" in aigov_model): sequences of requests against
# fixture model servers that fail on demand (X-Fixture-Status, -Delay,
# -Reset, a port where nothing listens) and the statuses, variants and
# fallback headers that come back.  Trips by failure rate, consecutive
# failures and slow calls; open -> half-open -> closed or reopened with
# backoff; fallback to the stable variant, to rules, or a 503 problem with
# Retry-After; the classifier; bodies cut short after a 200 header
# (X-Fixture-Truncate, a stalled stream) with and without proxy_buffering,
# and what is no cut (complete answers, HEAD, 204, 304, a client leaving a
# stream); outcomes recorded after an internal redirect (error_page); one
# state for both workers, kept across a reload; a trip shared by two nodes
# through Redis; nginx -t errors.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use AigovTest;
use JSON::PP ();
use Sys::Hostname ();
use IO::Socket::INET;
use Time::HiRes qw(time sleep);

start_fixture(name => 'stable',    version => '1.4.2');
start_fixture(name => 'candidate', version => '1.5.0');
my $nowhere = fixture_port('nowhere');    # never started: connection refused

my $TMP = tmp_dir();

# answers every fallback: which reason, which variant was chosen
open(my $fh, '>', "$TMP/rules.json") or die;
print {$fh} <<'EOF';
{
  "rules": [
    { "name": "open", "when": { "field": "@reason", "eq": "breaker_open" },
      "status": 200,
      "response": { "fallback": true, "reason": "${@reason}", "variant": "${@variant}" } }
  ],
  "default": { "status": 502, "response": { "fallback": true, "reason": "${@reason}" } }
}
EOF
close $fh;

open($fh, '>', "$TMP/tokens") or die;
print {$fh} "viewer read r-0123456789abcdef\nops write w-0123456789abcdef\n";
close $fh;
chmod 0600, "$TMP/tokens";

sub http_conf {
    my (%o) = @_;
    my $extra = $o{extra} // '';
    my $consec_open = $o{consec_open} // '30s';
    return <<"EOF";
    upstream u_stable    { server 127.0.0.1:%%FIXTURE_stable%%;    keepalive 16; }
    upstream u_candidate { server 127.0.0.1:%%FIXTURE_candidate%%; keepalive 16; }
    upstream u_nowhere   { server 127.0.0.1:%%FIXTURE_nowhere%%; }
    upstream u_cut       { server 127.0.0.1:%%FIXTURE_stable%%; }   # no keepalive

    aigov_zone brk:1m;

    # failure rate over a count window, on the candidate only; fallback: v1
    aigov_model rate {
        variant v1 u_stable    version=1.4.2 stable;
        variant v2 u_candidate version=1.5.0;
        canary  v2 0%;
        canary_header X-Canary;
        breaker variant=v2 window=count:10 minimum_calls=10 failure_rate=50%
                open=700ms probes=2;
    }

    # consecutive failures; one variant, no rules: 503 problem + Retry-After
    aigov_model consec {
        variant v1 u_stable version=1.4.2;
        breaker consecutive_failures=3 minimum_calls=100 open=$consec_open;
    }

    # slow calls; the rules answer when the breaker is open
    aigov_model slow {
        variant v1 u_stable version=1.4.2;
        breaker window=time:10s minimum_calls=4 slow=200ms:50% failure_rate=100%
                open=30s;
        fallback_rules $TMP/rules.json;
    }

    # reopening with backoff: 500ms, 1s, 2s...
    aigov_model backoff {
        variant v1 u_stable version=1.4.2;
        breaker consecutive_failures=1 open=500ms open_max=5s backoff=2 probes=1;
    }

    # what counts as a failure
    aigov_model classify {
        variant v1 u_stable version=1.4.2;
        breaker failures=5xx,429,!501 consecutive_failures=2 open=30s;
    }

    # connection refused on the candidate: v1 takes over
    aigov_model refused {
        variant v1 u_stable    version=1.4.2 stable;
        variant v2 u_nowhere   version=2.0.0;
        canary  v2 0%;
        canary_header X-Canary;
        breaker variant=v2 consecutive_failures=2 open=30s;
        breaker variant=v1 open=10s;
    }

    # connection refused, rules for the upstream error and the breaker
    aigov_model refusedrules {
        variant v1 u_nowhere version=2.0.0;
        breaker consecutive_failures=2 open=30s;
        fallback_rules $TMP/rules.json;
    }

    # timeouts only (in /short/, proxy_read_timeout 300ms)
    aigov_model timeouts {
        variant v1 u_stable version=1.4.2;
        breaker failures=timeout consecutive_failures=2 open=30s;
    }

    # resets (X-Fixture-Reset) are failures by default
    aigov_model resets {
        variant v1 u_stable version=1.4.2;
        breaker consecutive_failures=2 open=30s;
    }

    # both variants open: the chain runs out
    aigov_model chain {
        variant v1 u_stable    version=1.4.2 stable;
        variant v2 u_candidate version=1.5.0;
        canary  v2 0%;
        canary_header X-Canary;
        breaker consecutive_failures=1 open=20s;
        breaker variant=v1 consecutive_failures=1 open=40s;
    }

    # dry run: trips, logs, never rejects
    aigov_model dry {
        variant v1 u_stable version=1.4.2;
        breaker consecutive_failures=1 open=30s dry_run;
    }

    # a lost probe: the client goes away, the probe slot comes back
    aigov_model abort {
        variant v1 u_stable version=1.4.2;
        breaker consecutive_failures=1 open=300ms probes=1 probe_timeout=1m;
    }

    # an internal redirect (error_page) empties the module's context
    aigov_model redirect {
        variant v1 u_stable version=1.4.2;
        breaker consecutive_failures=2 open=30s;
    }

    # forced through the admin API
    aigov_model forceme {
        variant v1 u_stable version=1.4.2;
        breaker open=10s open_max=1m probes=2;
    }

    # no breaker at all
    aigov_model plain {
        variant v1 u_stable version=1.4.2;
    }

    # bodies cut short after a 200 header (X-Fixture-Truncate): "cut" is in
    # the default failures; one model per truncation and proxy_buffering
    aigov_model cutlen {
        variant v1 u_cut version=1.4.2;
        breaker consecutive_failures=3 open=30s;
    }
    aigov_model cutchunk {
        variant v1 u_cut version=1.4.2;
        breaker consecutive_failures=3 open=30s;
    }
    aigov_model nbcutlen {
        variant v1 u_cut version=1.4.2;
        breaker consecutive_failures=3 open=30s;
    }
    aigov_model nbcutchunk {
        variant v1 u_cut version=1.4.2;
        breaker consecutive_failures=3 open=30s;
    }

    # "!cut": cut bodies are neither success nor failure
    aigov_model cutignored {
        variant v1 u_cut version=1.4.2;
        breaker failures=5xx,!cut consecutive_failures=2 open=30s;
    }

    # complete answers: one failure would trip it
    aigov_model cutok {
        variant v1 u_cut version=1.4.2;
        breaker consecutive_failures=1 open=30s;
    }

    # clients that leave in the middle of a stream
    aigov_model cutclient {
        variant v1 u_cut version=1.4.2;
        breaker consecutive_failures=2 open=30s;
    }

    # a stream that stalls past proxy_read_timeout after its header
    aigov_model cutstall {
        variant v1 u_cut version=1.4.2;
        breaker failures=cut consecutive_failures=2 open=30s;
    }

$extra

    server {
        listen 127.0.0.1:%%PORT%%;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        add_header X-Breaker \$aigov_breaker always;
        add_header X-Pid \$pid always;

        location /m/ {
            aigov_route model=\$arg_m;
            proxy_pass http://\$aigov_upstream;
        }

        location /short/ {
            aigov_route model=\$arg_m;
            proxy_read_timeout 300ms;
            proxy_pass http://\$aigov_upstream;
        }

        location /nobuf/ {
            aigov_route model=\$arg_m;
            proxy_buffering off;
            proxy_pass http://\$aigov_upstream;
        }

        location /nobufshort/ {
            aigov_route model=\$arg_m;
            proxy_buffering off;
            proxy_read_timeout 300ms;
            proxy_pass http://\$aigov_upstream;
        }

        # HTTP/1.0 to the model: a stream ends with the connection, no length
        location /http10/ {
            aigov_route model=\$arg_m;
            proxy_http_version 1.0;
            proxy_buffering off;
            proxy_pass http://\$aigov_upstream;
        }

        # a 500 from the model becomes nginx's own page, elsewhere
        location /redirect/ {
            aigov_route model=redirect;
            proxy_intercept_errors on;
            error_page 500 = \@redirected;
            proxy_pass http://\$aigov_upstream;
        }

        location \@redirected {
            return 200 "redirected\\n";
        }

        location = /status {
            aigov_status;
        }

        location /aigov/ {
            aigov_admin tokens=$TMP/tokens;
        }
    }
EOF
}

my $ng = start_nginx(nginx_conf(http_conf()));

# --- helpers ----------------------------------------------------------------

my $NO_RESPONSE = 0;
sub req {
    my ($model, @h) = @_;
    my $path = "/m/x?m=$model";
    if ($model =~ m{^/}) { $path = $model }
    my $r = http_req(path => $path, headers => [@h], timeout => 5);
    die "nginx stopped answering: 20 requests without a response (last: $r->{error})\n"
        if $r->{status} == 599 && ++$NO_RESPONSE >= 20;
    return $r;
}

# [status, variant, fallback reason, $aigov_breaker, served by]
sub s5 {
    my ($r) = @_;
    my $h = $r->{headers};
    return [ $r->{status}, $h->{'x-aigov-variant'}, $h->{'x-aigov-fallback'}, $h->{'x-breaker'},
             $h->{'x-served-by'} ];
}

sub statuses {
    my ($n, $model, @h) = @_;
    return [ map { req($model, @h)->{status} } 1 .. $n ];
}

sub breaker {
    my ($model, $variant) = @_;
    my $s = http_req(path => '/status', timeout => 5);
    my ($m) = grep { $_->{name} eq $model } @{ $s->{json}{models} // [] };
    return $m->{breakers}{$variant // 'v1'};
}

my @FAIL = ('X-Fixture-Status' => 500);
my @V2   = ('X-Canary' => 'always');

# --- failure rate over a count window ----------------------------------------

$ng->mark;
is_deeply s5(req('rate', @V2)), [ 200, 'v2', undef, 'allowed', 'candidate' ],
    'rate: v2 allowed while closed';
is_deeply s5(req('rate')), [ 200, 'v1', undef, undef, 'stable' ],
    'rate: v1 has no breaker (variant=v2 only): no $aigov_breaker';
is_deeply statuses(4, 'rate', @V2), [ (200) x 4 ], 'rate: 4 more successes (5 calls)';
is_deeply statuses(4, 'rate', @V2, @FAIL), [ (500) x 4 ],
    'rate: 4 failures: 9 calls, below minimum_calls=10, still closed';
is breaker('rate', 'v2')->{state}, 'closed', 'rate: status says closed';
is breaker('rate', 'v2')->{window}{failure_rate}, undef, 'rate: no failure rate below minimum_calls';
is req('rate', @V2, @FAIL)->{status}, 500, 'rate: the 10th call fails: 5 of 10 = 50% trips (the call itself got its 500)';
{
    my $b = breaker('rate', 'v2');
    is $b->{state}, 'open', 'rate: status says open';
    is $b->{reason}, 'failure_rate', 'rate: reason failure_rate';
    is_deeply [ @{ $b->{window} }{qw(calls failures slow failure_rate)} ], [ 10, 5, 0, 50 ],
        'rate: window 10 calls, 5 failures, 50%';
    is $b->{counters}{trips}, 1, 'rate: 1 trip';
    ok $b->{retry_after_ms} > 0 && $b->{retry_after_ms} <= 700, "rate: retry_after_ms $b->{retry_after_ms} <= 700";
    is $b->{config}{window}, 'count:10', 'rate: config window';
    is $b->{config}{failures}, '5xx connect_error timeout reset cut', 'rate: default failure conditions';
}
like $ng->wait_for_log(qr/\[warn\].*circuit breaker tripped/) // '',
    qr/\[warn\] .*aigov: model "rate" variant "v2": circuit breaker tripped \(failure_rate: 5 failed and 0 slow of 10 calls, failure rate 50\.00%, slow call rate 0\.00%\), open for 700ms/,
    'rate: [warn] tripped, with model, variant, reason and rates';
is_deeply s5(req('rate', @V2)), [ 200, 'v1', 'breaker_open', 'rejected', 'stable' ],
    'rate: open: v2 requests go to v1 (X-Aigov-Fallback: breaker_open, $aigov_breaker rejected)';
is_deeply [ map { s5($_) } map { req('rate', @V2) } 1 .. 5 ],
    [ ([ 200, 'v1', 'breaker_open', 'rejected', 'stable' ]) x 5 ], 'rate: 5 more, all on v1';
is req('rate', @V2)->{json}{served_by}, 'stable', 'rate: the body is the stable model\'s';

# half-open after 700ms: 2 probes, both succeed -> closed
sleep 0.8;
is breaker('rate', 'v2')->{state}, 'half_open', 'rate: after the open time: half_open (lazily)';
is_deeply s5(req('rate', @V2)), [ 200, 'v2', undef, 'probe', 'candidate' ], 'rate: probe 1 goes to v2';
is_deeply s5(req('rate', @V2)), [ 200, 'v2', undef, 'probe', 'candidate' ], 'rate: probe 2 goes to v2';
like $ng->wait_for_log(qr/circuit breaker recovered/) // '',
    qr/\[notice\] .*aigov: model "rate" variant "v2": circuit breaker recovered \(2 probes, 0 failed, 0 slow\), closed/,
    'rate: [notice] recovered';
is_deeply s5(req('rate', @V2)), [ 200, 'v2', undef, 'allowed', 'candidate' ], 'rate: closed again';
{
    my $b = breaker('rate', 'v2');
    is_deeply [ $b->{state}, $b->{reason}, $b->{window}{calls} ], [ 'closed', 'probes_passed', 1 ],
        'rate: closed (probes_passed), the window starts empty';
}

# --- the admin API forces a breaker open, closed, half-open ----------------------

my @READ  = (Authorization => 'Bearer r-0123456789abcdef');
my @WRITE = (Authorization => 'Bearer w-0123456789abcdef');

sub admin {
    my ($path, $body, @auth) = @_;
    return http_req(method => 'POST', path => "/aigov/models/$path", headers => [ @auth ? @auth : @WRITE ],
                    defined $body ? (body => $body) : (), timeout => 5);
}

sub problem { my ($r) = @_; [ $r->{status}, $r->{json}{type} ] }

is_deeply problem(admin('plain/breakers/v1', { state => 'open' })), [ 409, 'urn:aigov:problem:no-breaker' ],
    'admin: a model without breaker: 409 no-breaker';
is_deeply problem(admin('rate/breakers/v1', { state => 'open' })), [ 409, 'urn:aigov:problem:no-breaker' ],
    'admin: a variant without breaker: 409';
{
    my $r = admin('rate/breakers/v9', { state => 'open' });
    is_deeply problem($r), [ 404, 'urn:aigov:problem:unknown-variant' ], 'admin: unknown variant: 404';
    is $r->{json}{detail}, 'model "rate" has no variant "v9": use breakers/VARIANT', 'admin: unknown variant: detail';
}
is_deeply problem(admin('forceme/breakers/v1', { state => 'open' }, @READ)), [ 403, 'urn:aigov:problem:forbidden' ],
    'admin: a read token may not force a breaker';
{
    my $r = http_req(path => '/aigov/models/forceme/breakers/v1', headers => [ @WRITE ]);
    is_deeply [ $r->{status}, $r->{headers}{allow} ], [ 405, 'POST' ], 'admin: GET breakers/v1: 405, Allow: POST';
}
for my $bad ({ state => 'sideways' }, { state => 'closed', open => '5s' }, {}, undef, { state => 1 }) {
    is_deeply problem(admin('forceme/breakers/v1', $bad)), [ 400, 'urn:aigov:problem:invalid-json' ],
        'admin: bad body ' . (defined $bad ? JSON::PP->new->canonical->encode($bad) : 'none') . ': 400';
}
is admin('forceme/breakers/v1', { state => 'open', open => 'forever' })->{json}{detail},
    '"open" must be a time from 1ms to 24h, e.g. "30s"', 'admin: bad open time: detail';
is admin('forceme/breakers/v1', { state => 'open', open => '2m' })->{json}{detail},
    '"open" 120000ms is longer than the breaker\'s maximum open time, 60000ms (open_max)',
    'admin: an open time above open_max: 400';
is breaker('forceme')->{state}, 'closed', 'admin: bad requests changed nothing';
$ng->mark;
{
    my $r = admin('forceme/breakers/v1', { state => 'open', open => '30s', reason => 'INC-7 bad answers' });
    is $r->{status}, 200, 'admin: force open: 200';
    is_deeply [ @{ $r->{json} }{qw(model action propagated)}, @{ $r->{json}{result} }{qw(state reason open_ms)} ],
        [ 'forceme', 'breaker-open v1', JSON::PP::false, 'open', 'forced', 30000 ],
        'admin: force open: the result (open for 30s, reason forced, not propagated: no fleet)';
    is $r->{json}{state}{breakers}{v1}{state}, 'open', 'admin: the model\'s state in the answer';
}
like $ng->wait_for_log(qr/aigov audit: .*breaker-open/) // '',
    qr/\[notice\] .*aigov audit: model "forceme" action "breaker-open v1" by "ops": state=closed open_ms=0 -> state=open open_ms=30000 \(reason "INC-7 bad answers"\), this node only,/,
    'admin: the audit log line: old -> new state, this node only (no redis)';
{
    my $r = req('forceme');
    my $ra = $r->{headers}{'retry-after'} // 0;
    ok $r->{status} == 503 && $ra >= 29 && $ra <= 30, "admin: forced open: 503, Retry-After $ra";
}
is admin('forceme/breakers/v1', { state => 'closed' })->{json}{result}{state}, 'closed', 'admin: force closed';
is_deeply s5(req('forceme')), [ 200, 'v1', undef, 'allowed', 'stable' ], 'admin: forced closed: answers';
is admin('forceme/breakers/v1', { state => 'half_open' })->{json}{result}{state}, 'half_open', 'admin: force half_open';
is_deeply [ map { s5(req('forceme'))->[3] } 1 .. 2 ], [ 'probe', 'probe' ], 'admin: half-open: probes';
is breaker('forceme')->{state}, 'closed', 'admin: the probes closed it';
is breaker('forceme')->{counters}{forced}, 3, 'admin: 3 forced transitions counted';

# --- consecutive failures, no rules: 503 problem + Retry-After ----------------

is_deeply statuses(2, 'consec', @FAIL), [ 500, 500 ], 'consec: 2 failures';
is req('consec')->{status}, 200, 'consec: a success resets the run';
is_deeply statuses(2, 'consec', @FAIL), [ 500, 500 ], 'consec: 2 failures';
is breaker('consec')->{state}, 'closed', 'consec: still closed (2 in a row)';
is req('consec', @FAIL)->{status}, 500, 'consec: the 3rd failure in a row';
{
    my $r = req('consec');
    my $j = $r->{json} // {};
    is_deeply [ $r->{status}, $r->{headers}{'content-type'}, $j->{type}, $j->{title}, $j->{status}, $j->{model} ],
        [ 503, 'application/problem+json', 'urn:aigov:problem:circuit-open', 'Circuit open', 503, 'consec' ],
        'consec: open: 503 problem, type circuit-open';
    like $j->{detail} // '', qr/^the circuit breaker of variant "v1" of model "consec" is open$/,
        'consec: problem detail (no fallback variant: the model has one)';
    my $ra = $r->{headers}{'retry-after'} // 0;
    ok $ra >= 29 && $ra <= 30, "consec: Retry-After $ra (open=30s, rounded up)";
    is $r->{headers}{'x-aigov-fallback'}, 'breaker_open', 'consec: X-Aigov-Fallback: breaker_open';
    is $r->{headers}{'x-breaker'}, 'rejected', 'consec: $aigov_breaker rejected';
    is $r->{headers}{'x-served-by'}, undef, 'consec: the model was not called';
}
like $ng->wait_for_log(qr/model "consec".*tripped/) // '',
    qr/circuit breaker tripped \(consecutive_failures: 3 in a row; 5 failed and 0 slow of 6 calls\), open for 30000ms/,
    'consec: [warn] tripped by consecutive failures (no rate below minimum_calls)';

{
    my $r = http_req(path => '/aigov/models/consec', headers => [ Authorization => 'Bearer r-0123456789abcdef' ]);
    is_deeply [ $r->{status}, $r->{json}{breakers}{v1}{state}, $r->{json}{breakers}{v1}{reason} ],
        [ 200, 'open', 'consecutive_failures' ], 'consec: the admin API shows the breaker (GET models/consec)';
}

# one state for both workers: fresh connections land on either
{
    my (%pids, @bad);
    for my $i (1 .. 60) {
        my $r = http_req(path => '/m/x?m=consec', fresh => 1, timeout => 5);
        $pids{ $r->{headers}{'x-pid'} // '?' }++;
        push @bad, "$r->{status}" unless $r->{status} == 503;
        last if keys %pids >= 2 && $i >= 10;
    }
    is scalar(keys %pids), 2, 'consec: answers came from both workers (' . join(',', sort keys %pids) . ')';
    is_deeply \@bad, [], 'consec: every worker sees the breaker open (503)';
}

# --- slow calls, time window; rules answer ------------------------------------

is_deeply statuses(2, 'slow'), [ 200, 200 ], 'slow: 2 fast calls';
is req('slow', 'X-Fixture-Delay' => 300)->{status}, 200, 'slow: a slow call (300ms > 200ms)';
is breaker('slow')->{state}, 'closed', 'slow: 3 calls, below minimum_calls=4';
is req('slow', 'X-Fixture-Delay' => 300)->{status}, 200, 'slow: a second slow call: 2 of 4 = 50% trips';
{
    my $b = breaker('slow');
    is_deeply [ $b->{state}, $b->{reason}, @{ $b->{window} }{qw(calls failures slow slow_call_rate)} ],
        [ 'open', 'slow_call_rate', 4, 0, 2, 50 ], 'slow: open by slow_call_rate, 2 of 4 slow';
    is $b->{config}{window}, 'time:10000ms/1000ms', 'slow: window=time:10s is 10 buckets of 1s';
}
{
    my $r = req('slow');
    is_deeply [ $r->{status}, $r->{headers}{'x-aigov-fallback'}, $r->{headers}{'x-aigov-fallback-rule'},
                $r->{json}{reason}, $r->{json}{variant}, $r->{headers}{'x-served-by'} ],
        [ 200, 'breaker_open', 'open', 'breaker_open', 'v1', undef ],
        'slow: open: the fallback rule answers (X-Aigov-Fallback breaker_open, rule "open")';
}
like $ng->wait_for_log(qr/model "slow".*tripped/) // '',
    qr/tripped \(slow_call_rate: 0 failed and 2 slow of 4 calls, failure rate 0\.00%, slow call rate 50\.00%/,
    'slow: [warn] tripped by the slow call rate';

# --- reopening with backoff -------------------------------------------------------

is req('backoff', @FAIL)->{status}, 500, 'backoff: one failure trips (consecutive_failures=1)';
is req('backoff')->{status}, 503, 'backoff: open';
is breaker('backoff')->{open_ms}, 500, 'backoff: open for 500ms';
sleep 0.6;
is_deeply s5(req('backoff', @FAIL)), [ 500, 'v1', undef, 'probe', 'stable' ], 'backoff: the probe fails';
like $ng->wait_for_log(qr/model "backoff".*reopened/) // '',
    qr/\[warn\] .*circuit breaker reopened \(failure_rate: 1 probes, 1 failed, 0 slow\), open for 1000ms/,
    'backoff: [warn] reopened, open for 1000ms (x2)';
{
    my $r = req('backoff');
    is $r->{status}, 503, 'backoff: open again';
    is $r->{headers}{'retry-after'}, 1, 'backoff: Retry-After 1';
    is breaker('backoff')->{open_ms}, 1000, 'backoff: status open_ms 1000';
}
sleep 0.6;
is req('backoff')->{status}, 503, 'backoff: still open after 600ms (it was 500ms the first time)';
sleep 0.5;
is_deeply s5(req('backoff', @FAIL)), [ 500, 'v1', undef, 'probe', 'stable' ], 'backoff: the second probe fails too';
is breaker('backoff')->{open_ms}, 2000, 'backoff: open for 2000ms';
is req('backoff')->{headers}{'retry-after'}, 2, 'backoff: Retry-After 2';
sleep 2.1;
is_deeply s5(req('backoff')), [ 200, 'v1', undef, 'probe', 'stable' ], 'backoff: a successful probe';
is breaker('backoff')->{state}, 'closed', 'backoff: closed';
is req('backoff', @FAIL)->{status}, 500, 'backoff: the next trip...';
is breaker('backoff')->{open_ms}, 500, '...opens for 500ms again: closing reset the backoff';

# --- classifier: "5xx 429 !501" -------------------------------------------------

is_deeply [ map { req('classify', 'X-Fixture-Status' => $_)->{status} } 429, 404, 429 ], [ 429, 404, 429 ],
    'classify: 429, 404 (a success: resets the run), 429';
is breaker('classify')->{state}, 'closed', 'classify: closed';
is breaker('classify')->{consecutive_failures}, 1, 'classify: 1 failure in a row';
is_deeply statuses(3, 'classify', 'X-Fixture-Status' => 501), [ 501, 501, 501 ], 'classify: 501 x3 (ignored)';
{
    my $b = breaker('classify');
    is_deeply [ $b->{state}, $b->{consecutive_failures}, $b->{window}{calls} ], [ 'closed', 1, 3 ],
        'classify: ignored calls are not recorded, nor do they reset the run';
    is $b->{config}{failures}, '429 5xx !501', 'classify: canonical failure conditions in the status';
}
is req('classify', 'X-Fixture-Status' => 429)->{status}, 429, 'classify: 429 again: 2 in a row';
is req('classify')->{status}, 503, 'classify: open';

# --- connection refused: the candidate's breaker trips, v1 takes over -----------

$ng->mark;
is_deeply [ map { s5(req('refused', @V2)) } 1 .. 2 ],
    [ ([ 502, 'v2', undef, 'allowed', undef ]) x 2 ], 'refused: v2 refuses connections: 502 twice';
is_deeply s5(req('refused', @V2)), [ 200, 'v1', 'breaker_open', 'rejected', 'stable' ],
    'refused: connect errors tripped v2: v1 answers';
is breaker('refused', 'v2')->{state}, 'open', 'refused: v2 open';
is breaker('refused', 'v1')->{state}, 'closed', 'refused: v1 closed (its own line: open=10s)';
is breaker('refused', 'v1')->{config}{open_ms}, 10000, 'refused: per-variant open=10s';
is breaker('refused', 'v2')->{config}{open_ms}, 30000, 'refused: v2 open=30s';
is breaker('refused', 'v1')->{config}{consecutive_failures}, 0, 'refused: v1 line does not inherit v2\'s';

# --- connection refused with rules: upstream_error, then breaker_open ----------

{
    my @r = map { req('refusedrules') } 1 .. 3;
    is_deeply [ map { [ $_->{status}, $_->{headers}{'x-aigov-fallback'}, $_->{json}{reason} ] } @r ],
        [ [ 502, 'upstream_error', 'upstream_error' ], [ 502, 'upstream_error', 'upstream_error' ],
          [ 200, 'breaker_open', 'breaker_open' ] ],
        'refusedrules: the rules replaced 2 connect errors, which still tripped the breaker';
    is breaker('refusedrules')->{window}{failures}, 2, 'refusedrules: 2 failures recorded';
}

# --- timeouts ------------------------------------------------------------------------

is req('/short/x?m=timeouts', @FAIL)->{status}, 500, 'timeouts: a 500 is no failure here (failures=timeout)';
is_deeply [ map { req('/short/x?m=timeouts', 'X-Fixture-Delay' => 600)->{status} } 1 .. 2 ], [ 504, 504 ],
    'timeouts: two upstream timeouts (proxy_read_timeout 300ms)';
is req('/short/x?m=timeouts')->{status}, 503, 'timeouts: open';
is breaker('timeouts')->{window}{failures}, 2, 'timeouts: 2 failures, the 500 a success';

# --- resets ----------------------------------------------------------------------------

is_deeply statuses(2, 'resets', 'X-Fixture-Reset' => 1), [ 502, 502 ], 'resets: 2 connection resets';
is req('resets')->{status}, 503, 'resets: open';

# --- the chain runs out --------------------------------------------------------------

is req('chain', @V2, @FAIL)->{status}, 500, 'chain: v2 trips (open=20s)';
is_deeply s5(req('chain', @V2)), [ 200, 'v1', 'breaker_open', 'rejected', 'stable' ], 'chain: v1 takes v2\'s';
is_deeply s5(req('chain', @V2, @FAIL)), [ 500, 'v1', 'breaker_open', 'rejected', 'stable' ],
    'chain: and fails, as v1: v1 trips (open=40s)';
{
    my $r = req('chain', @V2);
    is $r->{status}, 503, 'chain: both open: 503';
    like $r->{json}{detail} // '',
        qr/^the circuit breaker of variant "v2" of model "chain" is open and no fallback variant can take the request$/,
        'chain: detail';
    my $ra = $r->{headers}{'retry-after'} // 0;
    ok $ra >= 19 && $ra <= 20, "chain: Retry-After $ra: the first variant back (v2, 20s), not v1's 40s";
    is req('chain')->{status}, 503, 'chain: v1 itself is open too';
}

# --- dry run ----------------------------------------------------------------------------

is req('dry', @FAIL)->{status}, 500, 'dry: a failure trips';
is_deeply s5(req('dry')), [ 200, 'v1', undef, 'dry_run', 'stable' ], 'dry: open, but the request goes through';
is breaker('dry')->{state}, 'open', 'dry: the status says open';
is breaker('dry')->{dry_run}, JSON::PP::true, 'dry: dry_run in the status';
ok scalar(grep { /model "dry".*tripped.*\(dry run\)/ } error_log_lines()), 'dry: the trip is logged, "(dry run)"';

# --- a client that goes away gives its probe back ----------------------------------

is req('abort', @FAIL)->{status}, 500, 'abort: trip';
sleep 0.4;
$ng->mark;
http_req(path => '/m/x?m=abort', headers => [ 'X-Fixture-Delay' => 1000 ], abort => 1);
ok $ng->wait_for_log(qr/client prematurely closed connection.*m=abort/, timeout => 3),
    'abort: the client went away while its probe waited for the model';
ok wait_for(sub { breaker('abort')->{probes}{in_flight} == 0 }, timeout => 3),
    'abort: the probe slot is free again (not after probe_timeout=1m)';
is breaker('abort')->{counters}{allowed}, 2, 'abort: 2 calls allowed: the trip and the aborted probe';
is_deeply s5(req('abort')), [ 200, 'v1', undef, 'probe', 'stable' ], 'abort: the next request is the probe';
is breaker('abort')->{state}, 'closed', 'abort: closed';
is breaker('abort')->{counters}{probes_lost}, 0, 'abort: no probe lost';

# --- an internal redirect: the pool cleanup records the outcome ------------------------

# error_page sends the 500 elsewhere: the log phase runs there, without the
# module's context; the permit's pool cleanup records the model's 500
is_deeply [ map { req('/redirect/x', @FAIL)->{status} } 1 .. 2 ], [ 200, 200 ],
    'redirect: two 500s from the model, both answered by error_page';
{
    my $b = breaker('redirect');
    is_deeply [ $b->{state}, $b->{reason}, $b->{counters}{allowed}, $b->{window}{failures} ],
        [ 'open', 'consecutive_failures', 2, 2 ],
        'redirect: both failures recorded after the redirect: open';
}
is req('/redirect/x')->{status}, 503, 'redirect: open: 503';

# --- bodies cut short after the header ------------------------------------------------

# Before this section: the same upstream errors as the final check allows.
error_log_clean_ok('error log before the cut tests: only the expected upstream errors',
    allow => [ qr/connect\(\) failed \(111: Connection refused\)/,
               qr/upstream timed out/,
               qr/recv\(\) failed \(104: Connection reset by peer\)/,
               qr/upstream prematurely closed connection/ ]);
$ng->mark;

my @CUT_LEN   = ('X-Fixture-Truncate' => 'length');
my @CUT_CHUNK = ('X-Fixture-Truncate' => 'chunked');

# [status, how the client's read ended] of a request to LOCATION for MODEL
sub cut_req {
    my ($loc, $model, @h) = @_;
    my $r = req("/$loc/x?m=$model", @h);
    return [ $r->{status}, $r->{error} // 'complete' ];
}

for my $case ([ 'm',     'cutlen',     \@CUT_LEN,   'buffered, Content-Length' ],
              [ 'm',     'cutchunk',   \@CUT_CHUNK, 'buffered, chunked' ],
              [ 'nobuf', 'nbcutlen',   \@CUT_LEN,   'proxy_buffering off, Content-Length' ],
              [ 'nobuf', 'nbcutchunk', \@CUT_CHUNK, 'proxy_buffering off, chunked' ]) {
    my ($loc, $model, $cut, $what) = @$case;
    my @r = map { cut_req($loc, $model, @$cut) } 1 .. 3;
    is_deeply [ map { $_->[0] } @r ], [ 200, 200, 200 ], "cut $what: 3 answers with a 200 header";
    ok !grep({ $_->[1] eq 'complete' } @r), "cut $what: the client saw each body end early ($r[0][1])";
    my $b = breaker($model);
    is_deeply [ $b->{state}, $b->{reason}, @{ $b->{window} }{qw(calls failures)} ],
        [ 'open', 'consecutive_failures', 3, 3 ],
        "cut $what: 3 cut bodies in a row are 3 failures: open";
    is req("/$loc/x?m=$model")->{status}, 503, "cut $what: the next request gets the 503 of the open breaker";
}
like $ng->wait_for_log(qr/model "nbcutchunk".*tripped/) // '',
    qr/\[warn\] .*model "nbcutchunk" variant "v1": circuit breaker tripped \(consecutive_failures: 3 in a row; 3 failed and 0 slow of 3 calls\)/,
    'cut: [warn] tripped by the cut bodies';

# "!cut": not recorded at all, whatever the buffering or the framing
{
    my @r = (cut_req('m', 'cutignored', @CUT_LEN), cut_req('m', 'cutignored', @CUT_CHUNK),
             cut_req('nobuf', 'cutignored', @CUT_LEN), cut_req('nobuf', 'cutignored', @CUT_CHUNK));
    is_deeply [ map { $_->[0] } @r ], [ (200) x 4 ], 'cut ignored: 4 cut answers';
    my $b = breaker('cutignored');
    is_deeply [ $b->{state}, $b->{window}{calls}, $b->{consecutive_failures} ], [ 'closed', 0, 0 ],
        'cut ignored: failures=5xx,!cut: closed, no call recorded';
    is $b->{config}{failures}, '5xx !cut', 'cut ignored: canonical failure conditions';
    is_deeply statuses(2, 'cutignored', @FAIL), [ 500, 500 ], 'cut ignored: 2 real failures';
    is breaker('cutignored')->{state}, 'open', 'cut ignored: they trip it (the breaker works)';
}

# complete answers stay successes: 1 failure would trip cutok
{
    my $ok = sub {
        my ($name, $r, $want) = @_;
        is_deeply [ $r->{status}, $r->{error} // 'complete' ], [ $want // 200, 'complete' ],
            "cut ok: $name: complete";
    };
    $ok->('Content-Length, buffered', req('/m/x?m=cutok'));
    $ok->('Content-Length, proxy_buffering off', req('/nobuf/x?m=cutok'));
    {
        my $r = req('/m/x?m=cutok', 'X-Fixture-Stream' => 3);
        $ok->('SSE (chunked), buffered', $r);
        like $r->{body}, qr/data: \[DONE\]/, 'cut ok: SSE, buffered: the whole stream';
    }
    {
        my $r = req('/nobuf/x?m=cutok', 'X-Fixture-Stream' => 3, 'X-Fixture-Stream-Interval' => 50);
        $ok->('SSE (chunked), proxy_buffering off', $r);
        like $r->{body}, qr/data: \[DONE\]/, 'cut ok: SSE, unbuffered: the whole stream';
    }
    {
        my $r = req('/http10/x?m=cutok', 'X-Fixture-Stream' => 3);
        $ok->('SSE to HTTP/1.0: no length, ends with the close', $r);
        like $r->{body}, qr/data: \[DONE\]/, 'cut ok: SSE, HTTP/1.0: the whole stream';
    }
    $ok->('the model closes after a complete answer (X-Fixture-Close)',
          req('/m/x?m=cutok', 'X-Fixture-Close' => 1));
    $ok->('HEAD, buffered', http_req(method => 'HEAD', path => '/m/x?m=cutok', timeout => 5));
    $ok->('HEAD, proxy_buffering off', http_req(method => 'HEAD', path => '/nobuf/x?m=cutok', timeout => 5));
    $ok->('HEAD of an answer that would be cut (no body is read)',
          http_req(method => 'HEAD', path => '/nobuf/x?m=cutok', headers => [ @CUT_LEN ], timeout => 5));
    $ok->('204, proxy_buffering off', req('/nobuf/x?m=cutok', 'X-Fixture-Status' => 204), 204);
    $ok->('304, buffered', req('/m/x?m=cutok', 'X-Fixture-Status' => 304), 304);
    my $b = breaker('cutok');
    is_deeply [ $b->{state}, @{ $b->{window} }{qw(calls failures)} ], [ 'closed', 11, 0 ],
        'cut ok: 11 complete answers, 11 successes, closed';
}

# a client that leaves in the middle of a stream is no failure of the model
sub leave_mid_stream {
    my ($path) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $ng->port, Proto => 'tcp',
                                  Timeout => 5) or die "connect: $!";
    syswrite $s, "GET $path HTTP/1.1\r\nHost: localhost\r\nX-Fixture-Stream: 30\r\n"
               . "X-Fixture-Stream-Interval: 100\r\n\r\n";
    my ($buf, $end) = ('', time + 5);
    while ($buf !~ /\r\n\r\n/ && time < $end) {
        my $rin = '';
        vec($rin, fileno($s), 1) = 1;
        select(my $rout = $rin, undef, undef, 0.1) or next;
        sysread($s, $buf, 65536, length $buf) or last;
    }
    sleep 0.3;    # the stream goes on: 30 events, 100ms apart
    close $s;
    return $buf =~ m{^HTTP/1\.1 (\d+)} ? $1 : 0;
}
for my $loc ('m', 'nobuf') {
    my @st = map {
        my $n = $_;
        my $st = leave_mid_stream("/$loc/x?m=cutclient");
        wait_for(sub { (breaker('cutclient')->{window}{calls} // 0) >= $n + ($loc eq 'm' ? 0 : 3) }, timeout => 5);
        $st;
    } 1 .. 3;
    is_deeply \@st, [ 200, 200, 200 ], "client leaves ($loc): 3 streams started with a 200 header";
    my $b = breaker('cutclient');
    is_deeply [ $b->{state}, @{ $b->{window} }{qw(calls failures)} ], [ 'closed', ($loc eq 'm' ? 3 : 6), 0 ],
        "client leaves ($loc): closed, the streams were recorded as successes (consecutive_failures=2)";
}
ok scalar(grep { /client prematurely closed connection.*m=cutclient/ } error_log_lines()),
    'client leaves: nginx saw the clients go ([info])';

error_log_clean_ok('cut: the only [error] lines are nginx\'s "upstream prematurely closed connection"',
    allow => [ qr/\[error\] .*upstream prematurely closed connection while (?:reading upstream|sending to client)/ ]);
$ng->mark;

# a stream that stalls past proxy_read_timeout (300ms) after its header
{
    my @r = (cut_req('short', 'cutstall', 'X-Fixture-Stream' => 3, 'X-Fixture-Stream-Interval' => 800),
             cut_req('nobufshort', 'cutstall', 'X-Fixture-Stream' => 3, 'X-Fixture-Stream-Interval' => 800));
    is_deeply [ map { $_->[0] } @r ], [ 200, 200 ], 'stall: 2 streams begin with a 200 header...';
    ok !grep({ $_->[1] eq 'complete' } @r), '...and end early';
    my $b = breaker('cutstall');
    is_deeply [ $b->{state}, @{ $b->{window} }{qw(calls failures)} ], [ 'open', 2, 2 ],
        'stall: buffered and unbuffered, both cuts (failures=cut): open';
}
error_log_clean_ok('stall: the only [error] lines are nginx\'s "upstream timed out ... while reading upstream"',
    allow => [ qr/\[error\] .*upstream timed out \(110: Connection timed out\) while reading upstream/ ]);
$ng->mark;

# --- status, plain models -----------------------------------------------------------------

{
    my $s = http_req(path => '/status')->{json};
    my ($m) = grep { $_->{name} eq 'plain' } @{ $s->{models} };
    ok !exists $m->{breakers}, 'plain: no "breakers" in the status of a model without breaker';
    is_deeply s5(req('plain', @FAIL)), [ 500, 'v1', undef, undef, 'stable' ], 'plain: untouched';
}

# --- kept across a reload (the same and a changed config) -------------------------

{
    my $before = breaker('consec');
    ok $ng->reload(nginx_conf(http_conf())), 'reload (same config)';
    my $after = breaker('consec');
    is $after->{state}, 'open', 'reload: consec still open';
    is $after->{counters}{trips}, $before->{counters}{trips}, 'reload: counters kept';
    is req('consec')->{status}, 503, 'reload: still 503';

    ok $ng->reload(nginx_conf(http_conf(consec_open => '45s'))), 'reload with open=45s';
    is breaker('consec')->{state}, 'open', 'reload with a changed breaker: still open';
    is breaker('consec')->{config}{open_ms}, 45000, 'reload: the new config';
    is req('consec')->{status}, 503, 'reload: still 503';
}

error_log_clean_ok('error log: only the expected upstream errors',
    allow => [ qr/connect\(\) failed \(111: Connection refused\)/,
               qr/upstream timed out/,
               qr/recv\(\) failed \(104: Connection reset by peer\)/,
               qr/upstream prematurely closed connection/ ]);

$ng->stop;

# --- nginx -t ------------------------------------------------------------------------------

sub conf_with {
    my ($lines, %o) = @_;
    my $before = $o{before} // '';
    return nginx_conf(<<"EOF", name => 'cfg');
    aigov_zone z:1m;
    $before
    aigov_model m {
        variant v1 127.0.0.1:1 stable;
        variant v2 127.0.0.1:2;
        $lines
    }
    server { listen 127.0.0.1:%%PORT%%; location / { aigov_route model=m; proxy_pass http://\$aigov_upstream; } }
EOF
}

my @bad = (
    [ 'breaker window=count:0;', 'invalid window "window=count:0" in "breaker": a count window holds 1 to 1024 calls' ],
    [ 'breaker window=count:2000;', 'invalid window "window=count:2000" in "breaker": a count window holds 1 to 1024 calls' ],
    [ 'breaker window=sliding;', 'invalid window "window=sliding" in "breaker": use "window=count:N" or "window=time:DURATION[/BUCKET]"' ],
    [ 'breaker window=time:1500ms;', 'invalid window "window=time:1500ms" in "breaker": 1500ms is not a whole number of 1000ms buckets; give the bucket width, e.g. "window=time:1500ms/500ms"' ],
    [ 'breaker window=time:2m/1s;', 'invalid window "window=time:2m/1s" in "breaker": 120 buckets, at most 60; give wider buckets' ],
    [ 'breaker window=time:10s/5ms;', 'invalid window "window=time:10s/5ms" in "breaker": the bucket width must be a time from 10ms to 1h' ],
    [ 'breaker window=time:xyz;', 'invalid window "window=time:xyz" in "breaker": the duration must be a time up to 24h' ],
    [ 'breaker failure_rate=0%;', 'invalid failure rate "failure_rate=0%" in "breaker": use a whole percentage from 1% to 100%' ],
    [ 'breaker failure_rate=150%;', 'invalid failure rate "failure_rate=150%" in "breaker": use a whole percentage from 1% to 100%' ],
    [ 'breaker failure_rate=12.5%;', 'invalid failure rate "failure_rate=12.5%" in "breaker": use a whole percentage from 1% to 100%' ],
    [ 'breaker slow=2s;', 'invalid slow call condition "slow=2s" in "breaker": use "slow=DURATION:PERCENT", e.g. "slow=2s:80%"' ],
    [ 'breaker slow=fast:80%;', 'invalid slow call condition "slow=fast:80%" in "breaker": use "slow=DURATION:PERCENT", e.g. "slow=2s:80%"' ],
    [ 'breaker minimum_calls=0;', 'invalid minimum_calls "minimum_calls=0" in "breaker": use 1 to 1000000' ],
    [ 'breaker consecutive_failures=-1;', 'invalid consecutive_failures "consecutive_failures=-1" in "breaker": use 0 (off) to 1000000' ],
    [ 'breaker probes=33;', 'invalid probes "probes=33" in "breaker": use 1 to 32' ],
    [ 'breaker open=0s;', 'invalid time "open=0s" in "breaker": use 1ms to 24h, e.g. 30s' ],
    [ 'breaker open=2d;', 'invalid time "open=2d" in "breaker": use 1ms to 24h, e.g. 30s' ],
    [ 'breaker probe_timeout=soon;', 'invalid time "probe_timeout=soon" in "breaker": use 1ms to 24h, e.g. 30s' ],
    [ 'breaker backoff=0.5;', 'invalid backoff "backoff=0.5" in "breaker": use a factor from 1 to 10 with at most two decimals, e.g. 2 or 1.5' ],
    [ 'breaker backoff=1.255;', 'invalid backoff "backoff=1.255" in "breaker": use a factor from 1 to 10 with at most two decimals, e.g. 2 or 1.5' ],
    [ 'breaker failures=5xx,600;', 'invalid failures in "breaker": status "600" is out of range 100..599' ],
    [ 'breaker "failures=5xx !5xx";', 'invalid failures in "breaker": "!5xx" conflicts with "5xx"' ],
    [ 'breaker failures=boom;', 'invalid failures in "breaker": unknown failure condition "boom"' ],
    [ 'breaker failures=5xx,,429,5xx;', 'invalid failures in "breaker": duplicate "5xx"' ],
    [ 'breaker failures=;', 'invalid failures in "breaker": no failure conditions' ],
    [ 'breaker fleet=yes;', 'invalid value "fleet=yes" in "breaker": use "on" or "off"' ],
    [ 'breaker open=1s open=2s;', 'duplicate parameter "open=2s" in "breaker"' ],
    [ 'breaker colour=red;', 'invalid parameter "colour=red" in "breaker"' ],
    [ 'breaker maybe;', 'invalid parameter "maybe" in "breaker"' ],
    [ 'breaker variant=v9;', 'unknown variant "v9" in aigov_model "m": declare it with "variant" first' ],
    [ 'breaker off;', '"off" in "breaker" goes with "variant=NAME" alone: "breaker variant=NAME off;"' ],
    [ 'breaker variant=v1 off open=1s;', '"off" in "breaker" goes with "variant=NAME" alone: "breaker variant=NAME off;"' ],
    [ 'breaker on open=1s;', '"on" in "breaker" takes no other parameter but "variant=NAME"' ],
    [ 'breaker open=1s; breaker open=2s;', 'duplicate "breaker" in aigov_model "m": one line for every variant, "breaker variant=NAME ..." for one' ],
    [ 'breaker variant=v2 open=1s; breaker variant=v2;', 'duplicate "breaker variant=v2" in aigov_model "m"' ],
    [ 'breaker;', 'invalid number of arguments in "breaker" directive' ],
    # consistency, checked once the model block is read
    [ 'breaker open=1m open_max=30s;', 'invalid "breaker" in aigov_model "m": maximum open duration 30000 ms is below the open duration 60000 ms in %%AT1%%' ],
    [ 'breaker backoff=2;', 'invalid "breaker" in aigov_model "m": open backoff 2.00 needs a maximum open duration above the open duration 60000 ms in %%AT1%%' ],
    [ "breaker open=10s;\n        breaker variant=v2 open_max=5s;", 'invalid "breaker" of variant "v2" in aigov_model "m": maximum open duration 5000 ms is below the open duration 10000 ms in %%AT2%%' ],
    [ 'breaker fleet=on;', '"breaker" with "fleet=on" in aigov_model "m" needs "aigov_redis" in the http block in %%AT1%%' ],
);

for my $case (@bad) {
    my ($lines, $want) = @$case;
    my ($ok, $out) = nginx_t(conf_with($lines));
    my ($conf) = $out =~ /(\S+nginx-t-\d+\.conf)/;
    if ($want =~ /%%AT(\d)%%/) {
        # "in FILE:LINE" of the Nth "breaker" line of the config
        open(my $c, '<', $conf // '/nonexistent') or die "no config file in: $out";
        my ($n, @at) = (0);
        while (<$c>) { $n++; push @at, $n if /^\s*breaker/ }
        close $c;
        $want =~ s/%%AT(\d)%%/"$conf:" . ($at[$1 - 1] \/\/ '?')/e;
    }
    ok !$ok, "nginx -t fails: $lines";
    my ($emerg) = $out =~ /\[emerg\] (?:\d+#\d+: )?(.*)/;
    $emerg //= '';
    $emerg =~ s/ in \S+nginx-t-\d+\.conf:\d+$// unless $want =~ /nginx-t-\d+\.conf/;
    is $emerg, $want, "nginx -t message: $lines";
}

{
    my ($ok, $out) = nginx_t(conf_with(
        'breaker window=time:5m failure_rate=25% slow=1500ms:90% minimum_calls=5 '
        . 'consecutive_failures=0 open=1500ms open_max=1h backoff=1.5 probes=32 probe_timeout=2m '
        . '"failures=5xx 429 timeout connect_error !501 !invalid_header" dry_run=off; '
        . 'breaker variant=v1 off; breaker variant=v2 window=count:1024 fleet=off;'));
    ok $ok, 'nginx -t accepts every parameter' or diag $out;
    ($ok, $out) = nginx_t(conf_with('breaker on; breaker variant=v1 on;'));
    ok $ok, 'nginx -t accepts "breaker on" (defaults)' or diag $out;
    ($ok, $out) = nginx_t(conf_with('breaker fleet=on;', before => 'aigov_redis 127.0.0.1:1;'));
    ok $ok, 'nginx -t: fleet=on with aigov_redis' or diag $out;
}

# --- fleet: a trip on one node opens the breaker on the other -----------------------

{
    my $rport = start_redis();
    my $fleet = sub {
        my ($name) = @_;
        return nginx_conf(<<"EOF", name => $name);
    upstream u_stable { server 127.0.0.1:%%FIXTURE_stable%%; keepalive 16; }
    upstream u_candidate { server 127.0.0.1:%%FIXTURE_candidate%%; keepalive 16; }
    aigov_zone fleet:1m;
    aigov_redis 127.0.0.1:$rport sync_interval=1s;
    aigov_model chat {
        variant v1 u_stable version=1.4.2;
        breaker consecutive_failures=2 open=20s fleet=on;
    }
    aigov_model local {
        variant v1 u_stable version=1.4.2;
        breaker consecutive_failures=2 open=20s;
    }
    # forced through the admin API: v2 falls back to v1
    aigov_model forced {
        variant v1 u_stable    version=1.4.2 stable;
        variant v2 u_candidate version=1.5.0;
        canary  v2 0%;
        canary_header X-Canary;
        breaker variant=v2 open=20s open_max=1m probes=2 fleet=on;
    }
    aigov_model forcedlocal {
        variant v1 u_stable    version=1.4.2 stable;
        variant v2 u_candidate version=1.5.0;
        canary  v2 0%;
        canary_header X-Canary;
        breaker variant=v2 open=20s open_max=1m;
    }
    server {
        listen 127.0.0.1:%%PORT%%;
        add_header X-Breaker \$aigov_breaker always;
        location / { aigov_route model=\$arg_m; proxy_pass http://\$aigov_upstream; }
        location = /status { aigov_status; }
        location /aigov/ { aigov_admin tokens=$TMP/tokens; }
    }
EOF
    };
    my $A = start_nginx($fleet->('fa'));
    my $B = start_nginx($fleet->('fb'));
    # both subscribed: a kill-free PUBLISH round trip is hard to observe, so
    # wait until both report Redis connected
    for my $n ($A, $B) {
        wait_for(sub { ($n->get('/status')->{json}{redis}{connected} // 0) }, timeout => 5);
    }
    sleep 0.3;
    $A->mark; $B->mark;
    is_deeply [ map { $A->get('/?m=chat', @FAIL)->{status} } 1 .. 2 ], [ 500, 500 ], 'fleet: 2 failures on node A';
    is $A->get('/?m=chat')->{status}, 503, 'fleet: A open';
    my $t0 = time;
    ok wait_for(sub { $B->get('/?m=chat')->{status} == 503 }, timeout => 5, interval => 0.05),
        'fleet: B opens its breaker too';
    diag sprintf 'fleet: trip visible on node B after %.0f ms', (time - $t0) * 1000;
    like $B->wait_for_log(qr/opened by the fleet/) // '',
        qr/\[warn\] .*model "chat" variant "v1": circuit breaker opened by the fleet \(tripped on node [0-9a-f]{16}\), open for 20000ms/,
        'fleet: B logs the remote trip';
    my $bb = do { my $m = (grep { $_->{name} eq 'chat' } @{ $B->get('/status')->{json}{models} })[0]; $m->{breakers}{v1} };
    is_deeply [ $bb->{state}, $bb->{reason}, $bb->{fleet} ], [ 'open', 'remote', JSON::PP::true ],
        'fleet: B status: open, reason remote';
    ok !grep({ /opened by the fleet/ } $A->error_log_lines), 'fleet: A does not apply its own trip';

    # without fleet=on nothing is shared
    is_deeply [ map { $A->get('/?m=local', @FAIL)->{status} } 1 .. 2 ], [ 500, 500 ], 'fleet: local model trips on A';
    is $A->get('/?m=local')->{status}, 503, 'fleet: local open on A';
    sleep 0.5;
    is $B->get('/?m=local')->{status}, 200, 'fleet: local still closed on B (fleet off)';

    # --- forced through the admin API: the fleet follows every state ---------

    my $brk = sub {
        my ($n, $model) = @_;
        my ($m) = grep { $_->{name} eq $model } @{ $n->get('/status')->{json}{models} // [] };
        return ($m // {})->{breakers}{v2} // {};
    };
    my $force = sub {
        my ($n, $model, $body) = @_;
        return $n->req(method => 'POST', path => "/aigov/models/$model/breakers/v2",
                       headers => [ @WRITE ], body => $body, timeout => 5);
    };
    # [status, variant, fallback, $aigov_breaker] of a v2 request
    my $v2 = sub {
        my ($n, $model) = @_;
        my $r = $n->get("/?m=$model", 'X-Canary' => 'always');
        return [ $r->{status}, @{ $r->{headers} }{qw(x-aigov-variant x-aigov-fallback x-breaker)} ];
    };
    my @audit;    # [action, old, new, reason], oldest first
    my $nodes = sub { grep { /by the fleet/ } $_[0]->error_log_lines };

    $A->mark; $B->mark;
    is_deeply $v2->($B, 'forced'), [ 200, 'v2', undef, 'allowed' ], 'fleet forced: B routes v2 to v2 (closed)';

    # open, on A: B opens within 1 s and sends v2's requests to v1
    {
        my $t0 = time;
        my $r = $force->($A, 'forced', { state => 'open', open => '45s', reason => 'INC-9 v2 garbage' });
        is_deeply [ $r->{status}, @{ $r->{json} // {} }{qw(action propagated)}, ($r->{json}{result} // {})->{state} ],
            [ 200, 'breaker-open v2', JSON::PP::true, 'open' ],
            'fleet forced: open on A: 200, propagated';
        ok wait_for(sub { ($brk->($B, 'forced')->{state} // '') eq 'open' }, timeout => 1, interval => 0.02),
            'fleet forced: B open within 1 s';
        diag sprintf 'fleet forced: open visible on node B after %.0f ms', (time - $t0) * 1000;
        is_deeply $v2->($B, 'forced'), [ 200, 'v1', 'breaker_open', 'rejected' ],
            'fleet forced: B sends v2 requests to the fallback v1';
        like $B->wait_for_log(qr/model "forced".*opened by the fleet/) // '',
            qr/\[warn\] .*model "forced" variant "v2": circuit breaker opened by the fleet \(forced on node [0-9a-f]{16}\), open for 45000ms/,
            'fleet forced: B logs it';
        like $A->wait_for_log(qr/aigov audit: .*breaker-open v2/) // '',
            qr/\[notice\] .*aigov audit: model "forced" action "breaker-open v2" by "ops": state=closed open_ms=0 -> state=open open_ms=45000 \(reason "INC-9 v2 garbage"\), sent to the fleet, in redis,/,
            'fleet forced: A\'s audit line says it was sent to the fleet';
        push @audit, [ 'breaker-open v2', 'state=closed open_ms=0', 'state=open open_ms=45000', 'INC-9 v2 garbage' ];
    }

    # closed, on A: B closes within 1 s
    {
        my $t0 = time;
        my $r = $force->($A, 'forced', { state => 'closed', reason => 'INC-9 fixed' });
        is_deeply [ $r->{status}, @{ $r->{json} // {} }{qw(action propagated)}, ($r->{json}{result} // {})->{state} ],
            [ 200, 'breaker-closed v2', JSON::PP::true, 'closed' ],
            'fleet forced: closed on A: 200, propagated';
        ok wait_for(sub { ($brk->($B, 'forced')->{state} // '') eq 'closed' }, timeout => 1, interval => 0.02),
            'fleet forced: B closed within 1 s';
        diag sprintf 'fleet forced: closed visible on node B after %.0f ms', (time - $t0) * 1000;
        is_deeply $v2->($B, 'forced'), [ 200, 'v2', undef, 'allowed' ], 'fleet forced: B routes v2 to v2 again';
        like $B->wait_for_log(qr/model "forced".*closed by the fleet/) // '',
            qr/\[notice\] .*model "forced" variant "v2": circuit breaker closed by the fleet \(forced on node [0-9a-f]{16}\)/,
            'fleet forced: B logs it';
        is $brk->($B, 'forced')->{reason}, 'forced', 'fleet forced: B status: reason forced';
        like $A->wait_for_log(qr/aigov audit: .*breaker-closed v2/) // '',
            qr/action "breaker-closed v2" by "ops": state=open open_ms=45000 -> state=closed open_ms=0 \(reason "INC-9 fixed"\), sent to the fleet, in redis,/,
            'fleet forced: A\'s audit line';
        push @audit, [ 'breaker-closed v2', 'state=open open_ms=45000', 'state=closed open_ms=0', 'INC-9 fixed' ];
    }

    # half_open, on A: B half-opens within 1 s and probes on its own
    {
        my $r = $force->($A, 'forced', { state => 'half_open' });
        is_deeply [ $r->{status}, @{ $r->{json} // {} }{qw(action propagated)}, ($r->{json}{result} // {})->{state} ],
            [ 200, 'breaker-half_open v2', JSON::PP::true, 'half_open' ],
            'fleet forced: half_open on A: 200, propagated';
        ok wait_for(sub { ($brk->($B, 'forced')->{state} // '') eq 'half_open' }, timeout => 1, interval => 0.02),
            'fleet forced: B half-open within 1 s';
        like $B->wait_for_log(qr/model "forced".*half-open by the fleet/) // '',
            qr/\[notice\] .*model "forced" variant "v2": circuit breaker half-open by the fleet \(forced on node [0-9a-f]{16}\), probing/,
            'fleet forced: B logs it';
        is_deeply [ map { $v2->($B, 'forced')->[3] } 1 .. 2 ], [ 'probe', 'probe' ], 'fleet forced: B probes v2';
        is $brk->($B, 'forced')->{state}, 'closed', 'fleet forced: B\'s own probes close it (recoveries stay local)';
        is $brk->($A, 'forced')->{state}, 'half_open', 'fleet forced: A is still half-open (B\'s recovery is not published)';
        push @audit, [ 'breaker-half_open v2', 'state=closed open_ms=0', 'state=half_open open_ms=0', '' ];
    }
    is_deeply [ $nodes->($A) ], [], 'fleet forced: A never applies its own messages';
    is scalar($nodes->($B)), 3, 'fleet forced: B applied each message once' or diag join "\n", $nodes->($B);

    # without fleet=on: A only, but still in the audit stream
    {
        $A->mark;
        my $r = $force->($A, 'forcedlocal', { state => 'open', reason => 'local only' });
        is_deeply [ $r->{status}, $r->{json}{propagated}, ($r->{json}{result} // {})->{state} ],
            [ 200, JSON::PP::false, 'open' ], 'fleet off: forced open on A: not propagated';
        is_deeply $v2->($A, 'forcedlocal'), [ 200, 'v1', 'breaker_open', 'rejected' ], 'fleet off: A falls back to v1';
        sleep 0.5;
        is $brk->($B, 'forcedlocal')->{state}, 'closed', 'fleet off: B unchanged';
        is_deeply $v2->($B, 'forcedlocal'), [ 200, 'v2', undef, 'allowed' ], 'fleet off: B routes v2 to v2';
        like $A->wait_for_log(qr/aigov audit: .*forcedlocal/) // '',
            qr/action "breaker-open v2" by "ops": state=closed open_ms=0 -> state=open open_ms=20000 \(reason "local only"\), this node only, in redis,/,
            'fleet off: A\'s audit line: this node only, in redis';
        push @audit, [ 'breaker-open v2', 'state=closed open_ms=0', 'state=open open_ms=20000', 'local only', 'forcedlocal' ];
    }

    # the audit stream: one entry per forced change, newest first
    {
        my $host = lc Sys::Hostname::hostname();
        my @want = reverse map { { model => $_->[4] // 'forced', action => $_->[0], old => $_->[1],
                                   new => $_->[2], reason => $_->[3], by => 'ops', version => '', node => $host } } @audit;
        my $r = $A->get('/aigov/audit?count=' . scalar(@want), Authorization => 'Bearer r-0123456789abcdef');
        is $r->{status}, 200, 'audit: GET /aigov/audit';
        my @got = @{ ($r->{json} // {})->{audit} // [] };
        is_deeply [ map { my $e = $_; +{ map { $_ => $e->{$_} } qw(model action old new reason by version node) } } @got ],
            \@want, 'audit: the forced changes, newest first, with old and new state, by, reason, node'
            or diag explain \@got;
        ok !grep({ abs(($_->{time} // 0) - time) > 60 } @got), 'audit: times';
        my $x = redis_cmd($rport, 'XREVRANGE', 'aigov:audit', '+', '-', 'COUNT', 1);
        my %f = @{ $x->[0][1] };
        is_deeply [ sort keys %f ], [ sort qw(version model action by old new node reason time) ],
            'audit: XREVRANGE: the fields of every audit entry';
        is redis_cmd($rport, 'XLEN', 'aigov:audit'), scalar(@want), 'audit: and only those';
    }

    # messages of older nodes: "forced" and trips are opens for OPEN_MS; an
    # EVENT they did not know with OPEN_MS 0 (what they make of forced-closed)
    # changes nothing
    {
        $force->($A, 'forced', { state => 'closed' });
        ok wait_for(sub { ($brk->($B, 'forced')->{state} // '') eq 'closed' }, timeout => 1), 'old format: B closed';
        $B->mark;
        is redis_cmd($rport, 'PUBLISH', 'aigov:control', 'breaker 0123456789abcdef forced v2 forced-sideways 0'), 2,
            'old format: a message both nodes receive';
        sleep 0.3;
        is $brk->($B, 'forced')->{state}, 'closed', 'old format: an unknown EVENT with OPEN_MS 0 changes nothing';
        redis_cmd($rport, 'PUBLISH', 'aigov:control', 'breaker 0123456789abcdef forced v2 forced 15000');
        ok wait_for(sub { ($brk->($B, 'forced')->{state} // '') eq 'open' }, timeout => 1),
            'old format: "forced OPEN_MS" from an older node opens B';
        like $B->wait_for_log(qr/model "forced".*opened by the fleet/) // '',
            qr/opened by the fleet \(forced on node 0123456789abcdef\), open for 15000ms/, 'old format: B logs it';
        is $brk->($B, 'forced')->{reason}, 'remote', 'old format: reason remote';
        $force->($A, 'forced', { state => 'closed' });
        ok wait_for(sub { ($brk->($B, 'forced')->{state} // '') eq 'closed' }, timeout => 1), 'old format: closed again';
    }

    # tools/aigovctl breaker: the incident responder's command for the same
    {
        my $ctl = sub { aigovctl(shift, 'w-0123456789abcdef', @_) };
        my ($rc, $out) = $ctl->($A, 'breaker', 'forced', 'v2', 'open', '--open', '40s', '--reason', 'INC-10 cli');
        is_deeply [ $rc, $out ], [ 0, "forced: breaker v2 open for 40000 ms, sent to the fleet\n" ],
            'aigovctl breaker open --open 40s: one line, sent to the fleet';
        ok wait_for(sub { ($brk->($B, 'forced')->{state} // '') eq 'open' }, timeout => 1), 'aigovctl: B open too';
        like $A->wait_for_log(qr/aigov audit: .*INC-10 cli/) // '', qr/by "ops": .* -> state=open open_ms=40000 \(reason "INC-10 cli"\)/,
            'aigovctl: the reason reaches the audit line';
        ($rc, $out) = $ctl->($A, 'breaker', 'forced', 'v2', 'closed');
        is_deeply [ $rc, $out ], [ 0, "forced: breaker v2 closed, sent to the fleet\n" ], 'aigovctl breaker closed';
        ok wait_for(sub { ($brk->($B, 'forced')->{state} // '') eq 'closed' }, timeout => 1), 'aigovctl: B closed too';
        ($rc, $out) = $ctl->($A, 'breaker', 'forcedlocal', 'v2', 'half-open');
        is_deeply [ $rc, $out ], [ 0, "forcedlocal: breaker v2 half_open, on this node only (no fleet=on)\n" ],
            'aigovctl breaker half-open without fleet=on: this node only';
        ($rc, $out) = $ctl->($A, 'breaker', 'forcedlocal', 'v2', 'closed', '--json');
        is $rc, 0, 'aigovctl breaker --json: exit 0';
        like $out, qr/"action": "breaker-closed v2"/, 'aigovctl breaker --json: the API answer';
        ($rc, $out) = $ctl->($A, 'breaker', 'forced', 'v2', 'sideways');
        is $rc, 2, 'aigovctl breaker with a bad state: usage error';
        like $out, qr/a breaker's state is open, closed or half_open \(got "sideways"\)/, 'aigovctl: says which states exist';
        ($rc, $out) = $ctl->($A, 'breaker', 'forced', 'v2', 'closed', '--open', '5m');
        is $rc, 2, 'aigovctl breaker closed --open: usage error';
        like $out, qr/--open is for "breaker \.\.\. open"/, 'aigovctl: --open only with open';
        ($rc, $out) = $ctl->($A, 'breaker', 'forced', 'v2', 'open', '--open', 'soon');
        is $rc, 2, 'aigovctl breaker --open soon: usage error';
        ($rc, $out) = $ctl->($A, 'breaker', 'forced', 'v1', 'open');
        is $rc, 1, 'aigovctl breaker on a variant without a breaker: the API refuses';
        like $out, qr/^aigovctl: .*\(HTTP 409\)/m, 'aigovctl: the problem on stderr';
        is $brk->($A, 'forced')->{state}, 'closed', 'aigovctl: refused commands changed nothing';
    }

    # redis stopped: forcing works here, at once, and says it went nowhere
    {
        $A->mark; $B->mark;
        redis_sigstop($rport);
        my $r = eval { $force->($A, 'forced', { state => 'open', open => '30s', reason => 'redis down' }) };
        redis_sigcont($rport);
        is_deeply [ $r->{status}, $r->{json}{propagated}, ($r->{json}{result} // {})->{state} ],
            [ 200, JSON::PP::false, 'open' ], 'redis stopped: forced open on A: 200, not propagated';
        ok $r->{elapsed_ms} < 1500, sprintf('redis stopped: answered in %.0f ms', $r->{elapsed_ms});
        is_deeply $v2->($A, 'forced'), [ 200, 'v1', 'breaker_open', 'rejected' ], 'redis stopped: A falls back to v1';
        like $A->wait_for_log(qr/aigov audit: .*redis down/) // '',
            qr/action "breaker-open v2" by "ops": state=closed open_ms=0 -> state=open open_ms=30000 \(reason "redis down"\), this node only so far: redis did not answer in time \(what was sent may still reach redis and the fleet\),/,
            'redis stopped: the audit line says redis did not answer';
        ok wait_for(sub { ($A->get('/status')->{json}{redis}{connected} // 0) }, timeout => 10), 'redis back: A connected';

        stop_redis($rport);
        $r = $force->($A, 'forced', { state => 'closed', reason => 'redis gone' });
        is_deeply [ $r->{status}, $r->{json}{propagated}, ($r->{json}{result} // {})->{state} ],
            [ 200, JSON::PP::false, 'closed' ], 'redis killed: forced closed on A: 200, not propagated';
        ok $r->{elapsed_ms} < 1500, sprintf('redis killed: answered in %.0f ms', $r->{elapsed_ms});
        like $A->wait_for_log(qr/aigov audit: .*redis gone/) // '',
            qr/action "breaker-closed v2" by "ops": .*, this node only, redis unreachable,/,
            'redis killed: the audit line';
        is_deeply $v2->($A, 'forced'), [ 200, 'v2', undef, 'allowed' ], 'redis killed: A routes v2 to v2';
        ok !grep({ /exited on signal/ } $A->error_log_lines, $B->error_log_lines), 'redis stopped: no worker crashed';
    }

    $A->error_log_clean_ok('fleet: A error log clean');
    $B->error_log_clean_ok('fleet: B error log clean');
}

done_testing;
