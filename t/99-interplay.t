#!/usr/bin/perl
# How the plugins merged from separate branches play together:
#
# - the response cache and the circuit breaker: an expired entry within
#   stale_if_error answers for an open breaker that has no usable fallback
#   variant (tripped by real failures, or forced open through the admin
#   API), in place of the 503 circuit-open problem and in place of a
#   fallback rule's answer; without an entry, the problem or the rule
#   answers; a fresh entry answers while the breaker is open; a fallback
#   variant that works wins over a stale entry and is not stored under the
#   chosen variant's key; a failing fallback variant gets the stale entry;
# - the response cache and version skew: the cache holds the upstream's
#   original body (the key has no client version), so an old client is
#   adapted on a hit of a new client's entry, a new client gets the
#   original on a hit of an old client's entry, stale answers are adapted
#   too; ranges that pin other variants have other keys;
# - fallback rules: their answers (breaker open, upstream error) are never
#   stored; a kill switch's rule answer is not adapted.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use AigovTest;
use JSON::PP ();
use Time::HiRes qw(time sleep);

my $JSON = JSON::PP->new->utf8->canonical;

start_fixture(name => 'stable',    version => '1.4.2');
start_fixture(name => 'candidate', version => '2.0.0');

my $TMP = tmp_dir();
my $TOKEN = 'w-interplay-0123456789abcdef';

{
    open(my $fh, '>', "$TMP/tokens") or die "$TMP/tokens: $!";
    print {$fh} "ops write $TOKEN\n";
    close $fh;
    chmod 0644, "$TMP/tokens";

    # one rule per reason, each with a header of its own
    open($fh, '>', "$TMP/rules.json") or die "$TMP/rules.json: $!";
    print {$fh} <<'EOF';
{
  "rules": [
    { "name": "open-rule", "when": { "field": "@reason", "eq": "breaker_open" },
      "status": 200, "headers": { "X-Rule": "open-rule" },
      "response": { "label": "from the rules", "reason": "${@reason}" } },
    { "name": "error-rule", "when": { "field": "@reason", "eq": "upstream_error" },
      "status": 200, "headers": { "X-Rule": "error-rule" },
      "response": { "label": "from the rules", "reason": "${@reason}" } },
    { "name": "kill-rule", "when": { "field": "@reason", "eq": "kill_switch" },
      "status": 200, "headers": { "X-Rule": "kill-rule" },
      "response": { "label": "from the rules", "reason": "${@reason}",
                    "usage": { "total_tokens": 0 } } }
  ]
}
EOF
    close $fh;
}

my $HTTP = <<"EOF";
    upstream u_stable    { server 127.0.0.1:%%FIXTURE_stable%%;    keepalive 8; }
    upstream u_candidate { server 127.0.0.1:%%FIXTURE_candidate%%; keepalive 8; }

    aigov_zone interplay:1m;
    aigov_cache_zone ic:4m;

    # one variant, no rules: an open breaker is a 503 circuit-open problem
    aigov_model brk {
        variant v1 u_stable version=1.4.2 stable;
        breaker consecutive_failures=2 minimum_calls=100 open=1m open_max=10m;
    }

    # one variant, rules: an open breaker is the rules' answer
    aigov_model brkr {
        variant v1 u_stable version=1.4.2 stable;
        breaker consecutive_failures=2 minimum_calls=100 open=1m open_max=10m;
        fallback_rules $TMP/rules.json;
    }

    # v2's breaker open: v1 (the default fallback) takes its requests
    aigov_model brkfb {
        variant v1 u_stable    version=1.4.2 stable;
        variant v2 u_candidate version=2.0.0;
        canary        v2 0%;
        canary_header X-Canary;
        breaker variant=v2 open=1m open_max=10m;
    }

    # every client on the same variant: one key for old and new clients
    aigov_model sk {
        variant v1 u_stable version=1.4.2 stable;
        client_version header=X-Client-Version;
        version_range  ">=2.0" *;
        version_range  "<2.0" * deprecated=2026-01-01;
        version_adapt  "<2.0" rename=choices[*].message.content:choices[*].text
                       remove=usage;
    }

    # old clients pinned to v1, new ones to v2: other served versions
    aigov_model skp {
        variant v1 u_stable    version=1.4.2 stable;
        variant v2 u_candidate version=2.0.0;
        client_version header=X-Client-Version;
        version_range  ">=2.0" v2;
        version_range  "<2.0" v1;
        version_adapt  "<2.0" remove=usage;
    }

    # rules and an adaptation that would change their answers
    aigov_model kr {
        variant v1 u_stable version=1.4.2 stable;
        fallback_rules $TMP/rules.json;
        client_version header=X-Client-Version;
        version_range  "*" *;
        version_adapt  "*" remove=label remove=usage;
    }

    server {
        listen 127.0.0.1:%%PORT%%;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        add_header X-Breaker   \$aigov_breaker always;
        add_header X-Rule-Var  \$aigov_fallback_rule always;
        add_header X-Adapt     \$aigov_version_adapt always;

        # entries expire at once and stay usable stale for a minute
        location /m/ {
            aigov_route model=\$arg_m;
            aigov_cache zone=ic ttl=1s stale_if_error=1m;
            proxy_pass http://\$aigov_upstream/v1/chat/completions;
        }

        # entries stay fresh
        location /fresh/ {
            aigov_route model=\$arg_m;
            aigov_cache zone=ic ttl=1m stale_if_error=1m;
            proxy_pass http://\$aigov_upstream/v1/chat/completions;
        }

        location /aigov/ { aigov_admin tokens=$TMP/tokens; }
        location = /status { aigov_status; }
    }
EOF

my $ng = start_nginx(nginx_conf($HTTP));

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
sub uniq { return 'i' . $$ . '-' . ++$SEQ . '-' . int(rand(1e9)) }

sub body { return { model => 'x', messages => [ { role => 'user', content => $_[0] // uniq() } ] } }

# post(PATH, MODEL, BODY, HEADERS...)
sub post {
    my ($loc, $model, $body, @h) = @_;
    return req(method => 'POST', path => "/$loc/x?m=$model", body => $JSON->encode($body),
               headers => ['Content-Type' => 'application/json', @h]);
}

sub h     { $_[0]{headers}{ $_[1] } }
sub cache { h($_[0], 'x-aigov-cache') // '' }

sub fixture_count {
    my ($name) = @_;
    my $r = http_req(port => fixture_port($name // 'stable'), path => '/fixture/stats', fresh => 1);
    return $r->{json}{requests};
}

sub admin {
    my ($path, $body) = @_;
    return req(method => 'POST', path => "/aigov/models/$path", fresh => 1,
               headers => ['Authorization' => "Bearer $TOKEN",
                           (defined $body ? ('Content-Type' => 'application/json') : ())],
               defined $body ? (body => $JSON->encode($body)) : ());
}

sub breaker_state {
    my ($model, $variant) = @_;
    my $s = req(path => '/status');
    my ($m) = grep { $_->{name} eq $model } @{ $s->{json}{models} // [] };
    return $m->{breakers}{$variant // 'v1'}{state} // '';
}

# [status, X-Aigov-Cache, X-Aigov-Fallback, X-Aigov-Fallback-Rule, $aigov_breaker, X-Aigov-Variant]
sub shape {
    my ($r) = @_;
    return [ $r->{status}, cache($r), h($r, 'x-aigov-fallback'), h($r, 'x-aigov-fallback-rule'),
             h($r, 'x-breaker'), h($r, 'x-aigov-variant') ];
}

sub length_ok {
    my ($r, $name) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    ok defined h($r, 'content-length') && h($r, 'content-length') == length($r->{body}),
       "$name: Content-Length is the body's length";
}

my $OLD = ['X-Client-Version' => '1.4'];
my $NEW = ['X-Client-Version' => '2.1'];
my @V2  = ('X-Canary' => 'always');

$ng->mark;

# --- fill: entries that will be stale after one sleep ----------------------------

my %fill;
for my $k (qw(brk brkr brkfb sk)) {
    my $b = body();
    my @h = $k eq 'brkfb' ? @V2 : $k eq 'sk' ? @$NEW : ();
    my $r = post('m', $k, $b, @h);
    $fill{$k} = { body => $b, resp => $r, h => [@h] };
}

subtest 'entries stored (MISS, then HIT)' => sub {
    for my $k (sort keys %fill) {
        my $f = $fill{$k};
        is_deeply [ $f->{resp}{status}, cache($f->{resp}) ], [ 200, 'MISS' ], "$k: stored";
        is cache(post('m', $k, $f->{body}, @{ $f->{h} })), 'HIT', "$k: hit";
    }
    is h($fill{brkfb}{resp}, 'x-served-by'), 'candidate', 'brkfb: the entry is v2\'s';
};

# fresh entries in /fresh/ for the breaker forced open below
my $fresh_r = body();
my $fresh_fb = body();
is cache(post('fresh', 'brkr', $fresh_r)), 'MISS', 'brkr /fresh/: stored';
is cache(post('fresh', 'brkfb', $fresh_fb, @V2)), 'MISS', 'brkfb /fresh/: stored (v2)';

sleep 1.3;    # every /m/ entry above is now stale, within stale_if_error

# --- 1. stale-if-error while the breaker is open ---------------------------------

subtest 'breaker tripped by failures, no rules: the stale entry, else 503 circuit-open' => sub {
    my $f = $fill{brk};

    # the failures that trip it are themselves answered stale (upstream 500)
    for my $i (1, 2) {
        my $r = post('m', 'brk', $f->{body}, 'X-Fixture-Status' => 500);
        is_deeply shape($r), [ 200, 'STALE', undef, undef, 'allowed', 'v1' ], "failure $i: upstream 500, stale";
    }
    is breaker_state('brk'), 'open', 'two consecutive failures: open';

    my $before = fixture_count();
    my $r = post('m', 'brk', $f->{body});
    is_deeply shape($r), [ 200, 'STALE', 'breaker_open', undef, 'rejected', 'v1' ],
        'open: 200 STALE, X-Aigov-Fallback: breaker_open, the entry\'s variant';
    is $r->{body}, $f->{resp}{body}, 'open: the stored body';
    like h($r, 'content-type'), qr{^application/json}, 'open: the stored type, not problem+json';
    is h($r, 'x-aigov-model-version'), '1.4.2', 'open: X-Aigov-Model-Version';
    ok !defined h($r, 'retry-after'), 'open: the problem\'s Retry-After is gone';
    cmp_ok h($r, 'age') // -1, '>=', 1, 'open: Age';
    length_ok($r, 'open');
    is fixture_count(), $before, 'open: the model was not called';
    ok scalar(grep { /aigov cache: model "brk" answered 503 \(breaker open\): served a stale entry/ }
              $ng->error_log_lines), 'open: the [info] line';

    my $none = post('m', 'brk', body());
    is_deeply shape($none), [ 503, 'MISS', 'breaker_open', undef, 'rejected', 'v1' ],
        'open, no entry: 503';
    like h($none, 'content-type'), qr{^application/problem\+json}, 'open, no entry: a problem';
    is $none->{json}{type}, 'urn:aigov:problem:circuit-open', 'open, no entry: circuit-open';
    cmp_ok h($none, 'retry-after') // 0, '>=', 1, 'open, no entry: Retry-After';

    # the same body in another location has another key: no entry there
    is post('fresh', 'brk', $f->{body})->{status}, 503, 'another location: no entry, 503';

    is admin('brk/breakers/v1', { state => 'closed' })->{status}, 200, 'close';
    my $back = post('m', 'brk', $f->{body});
    is_deeply [ $back->{status}, cache($back), h($back, 'x-served-by') ], [ 200, 'MISS', 'stable' ],
        'closed: the model answers again';
    is fixture_count(), $before + 1, 'closed: the model was called';
};

subtest 'breaker forced open, rules: a fresh entry, the stale entry over the rule, else the rule' => sub {
    my $f = $fill{brkr};
    my $a = admin('brkr/breakers/v1', { state => 'open', open => '1m' });
    is $a->{status}, 200, 'forced open through the admin API';
    is breaker_state('brkr'), 'open', 'open';

    my $before = fixture_count();
    my $hit = post('fresh', 'brkr', $fresh_r);
    is_deeply shape($hit), [ 200, 'HIT', undef, undef, undef, 'v1' ], 'a fresh entry answers while open';

    my $r = post('m', 'brkr', $f->{body});
    is_deeply shape($r), [ 200, 'STALE', 'breaker_open', undef, 'rejected', 'v1' ],
        'open: 200 STALE instead of the rule, no X-Aigov-Fallback-Rule';
    is $r->{body}, $f->{resp}{body}, 'open: the stored body';
    is h($r, 'x-rule-var'), undef, 'open: $aigov_fallback_rule empty';
    is h($r, 'x-rule'), undef, 'open: the rule\'s own header is gone with its answer';
    like h($r, 'content-type'), qr{^application/json}, 'open: the stored type';
    length_ok($r, 'open');

    my $b = body();
    my $rule = post('m', 'brkr', $b);
    is_deeply shape($rule), [ 200, 'MISS', 'breaker_open', 'open-rule', 'rejected', undef ],
        'open, no entry: the rule answers';
    is_deeply $rule->{json}, { label => 'from the rules', reason => 'breaker_open' }, 'the rule\'s body';
    is h($rule, 'x-rule'), 'open-rule', 'the rule\'s header';

    # the rule's 200 was not stored
    my $again = post('m', 'brkr', $b);
    is_deeply [ cache($again), h($again, 'x-aigov-fallback-rule') ], [ 'MISS', 'open-rule' ],
        'the rule\'s answer was not stored: the rule again';
    is fixture_count(), $before, 'open: the model was never called';

    is admin('brkr/breakers/v1', { state => 'closed' })->{status}, 200, 'close';
    my $back = post('m', 'brkr', $b);
    is_deeply [ $back->{status}, cache($back), h($back, 'x-served-by') ], [ 200, 'MISS', 'stable' ],
        'closed: the model answers that body, it was never stored';
};

subtest 'a fallback variant: it wins over a stale entry; when it fails, the stale entry' => sub {
    my $f = $fill{brkfb};
    is admin('brkfb/breakers/v2', { state => 'open', open => '1m' })->{status}, 200, 'v2 forced open';

    my $hit = post('fresh', 'brkfb', $fresh_fb, @V2);
    is_deeply shape($hit), [ 200, 'HIT', undef, undef, undef, 'v2' ], 'a fresh v2 entry answers while v2 is open';

    my $r = post('m', 'brkfb', $f->{body}, @V2);
    is_deeply shape($r), [ 200, 'MISS', 'breaker_open', undef, 'rejected', 'v1' ],
        'v1 takes the request: MISS, X-Aigov-Fallback: breaker_open';
    is h($r, 'x-served-by'), 'stable', 'answered by v1';
    my $again = post('m', 'brkfb', $f->{body}, @V2);
    is_deeply [ cache($again), h($again, 'x-served-by') ], [ 'MISS', 'stable' ],
        'v1\'s answer is not stored under v2\'s key';

    # v1 fails too: v2's stale entry, named as v2's
    my $s = post('m', 'brkfb', $f->{body}, @V2, 'X-Fixture-Status' => 500);
    is_deeply shape($s), [ 200, 'STALE', 'breaker_open', undef, 'rejected', 'v2' ],
        'v1 answers 500: v2\'s stale entry';
    is $s->{body}, $f->{resp}{body}, 'the stored body (v2\'s)';
    is h($s, 'x-aigov-model-version'), '2.0.0', 'X-Aigov-Model-Version of the entry';

    is admin('brkfb/breakers/v2', { state => 'closed' })->{status}, 200, 'close';
};

# --- 2. the cache and version skew ---------------------------------------------------

sub adapted_ok {
    my ($r, $name) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    my $j = $r->{json} // {};
    ok !exists $j->{usage} && defined $j->{choices}[0]{text}
       && !exists $j->{choices}[0]{message}{content},
        "$name: adapted (no usage, choices[0].text)" or diag $r->{body};
    is h($r, 'x-adapt'), 'adapted', "$name: \$aigov_version_adapt";
    is h($r, 'deprecation'), '@1767225600', "$name: Deprecation";
    length_ok($r, $name);
}

sub original_ok {
    my ($r, $name) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    my $j = $r->{json} // {};
    ok exists $j->{usage} && defined $j->{choices}[0]{message}{content} && !exists $j->{choices}[0]{text},
        "$name: the original body (usage, choices[0].message.content)";
    ok !defined h($r, 'x-adapt'), "$name: not adapted";
    ok !defined h($r, 'deprecation'), "$name: no Deprecation";
    length_ok($r, $name);
}

subtest 'version skew: the cache holds original bodies, hits are adapted per client' => sub {
    # a new client fills, an old client hits
    my $b = body();
    my $n = post('fresh', 'sk', $b, @$NEW);
    is cache($n), 'MISS', 'new client: MISS';
    original_ok($n, 'new client, MISS');
    my $o = post('fresh', 'sk', $b, @$OLD);
    is cache($o), 'HIT', 'old client: HIT (the key has no client version)';
    adapted_ok($o, 'old client, HIT');
    is $o->{json}{choices}[0]{text}, $n->{json}{choices}[0]{message}{content}, 'the same answer, renamed';
    is $o->{json}{id}, $n->{json}{id}, 'the same answer (id)';

    # an old client fills, a new client hits
    $b = body();
    $o = post('fresh', 'sk', $b, @$OLD);
    is cache($o), 'MISS', 'old client: MISS';
    adapted_ok($o, 'old client, MISS');
    $n = post('fresh', 'sk', $b, @$NEW);
    is cache($n), 'HIT', 'new client: HIT';
    original_ok($n, 'new client, HIT of an old client\'s entry');
    is $n->{json}{id}, $o->{json}{id}, 'the same answer (id)';
    is $n->{json}{headers}{'x-client-version'}, '1.4', 'the upstream saw the old client that filled it';
    my $o2 = post('fresh', 'sk', $b, @$OLD);
    is cache($o2), 'HIT', 'old client again: HIT';
    adapted_ok($o2, 'old client, HIT');
    is $o2->{body}, $o->{body}, 'adapted the same way as on the miss';

    # a stale answer for an old client is adapted too (the entry: a new client's)
    my $f = $fill{sk};
    my $s = post('m', 'sk', $f->{body}, @$OLD, 'X-Fixture-Status' => 500);
    is cache($s), 'STALE', 'old client, upstream 500: STALE';
    adapted_ok($s, 'old client, STALE');
    is $s->{json}{id}, $f->{resp}{json}{id}, 'the stored answer';
    my $sn = post('m', 'sk', $f->{body}, @$NEW, 'X-Fixture-Status' => 500);
    is cache($sn), 'STALE', 'new client, upstream 500: STALE';
    is $sn->{body}, $f->{resp}{body}, 'new client: the stored bytes';

    # ranges that pin variants: the served version is in the key
    $b = body();
    my $pn = post('fresh', 'skp', $b, @$NEW);
    is_deeply [ cache($pn), h($pn, 'x-aigov-variant') ], [ 'MISS', 'v2' ], 'pinned new client: v2, MISS';
    my $po = post('fresh', 'skp', $b, @$OLD);
    is_deeply [ cache($po), h($po, 'x-aigov-variant'), h($po, 'x-served-by') ], [ 'MISS', 'v1', 'stable' ],
        'pinned old client: v1, its own key: MISS';
    ok !exists(($po->{json} // {})->{usage}), 'pinned old client: adapted';
    is cache(post('fresh', 'skp', $b, @$OLD)), 'HIT', 'pinned old client again: HIT';
};

# --- 3. fallback rules, the cache and version skew --------------------------------------

subtest 'rules: an upstream error\'s rule answer is not stored; a kill switch\'s is not adapted' => sub {
    my $b = body();
    my $e = post('m', 'kr', $b, @$OLD, 'X-Fixture-Reset' => 1);
    is_deeply [ $e->{status}, cache($e), h($e, 'x-aigov-fallback'), h($e, 'x-aigov-fallback-rule') ],
        [ 200, 'MISS', 'upstream_error', 'error-rule' ], 'upstream reset: the rule answers';
    is_deeply $e->{json}, { label => 'from the rules', reason => 'upstream_error' },
        'the rule\'s body, not adapted';
    is h($e, 'x-adapt'), 'skipped', '$aigov_version_adapt skipped';

    my $n = post('m', 'kr', $b, @$OLD);
    is_deeply [ $n->{status}, cache($n), h($n, 'x-served-by') ], [ 200, 'MISS', 'stable' ],
        'the same body: the model answers, the rule\'s answer was not stored';
    ok !exists(($n->{json} // {})->{usage}), 'the model\'s answer is adapted';

    is admin('kr/kill', { reason => 'interplay' })->{status}, 200, 'kill';
    my $k = post('m', 'kr', $b, @$OLD);
    is_deeply [ $k->{status}, h($k, 'x-aigov-fallback'), h($k, 'x-aigov-fallback-rule') ],
        [ 200, 'kill_switch', 'kill-rule' ], 'killed: the kill rule answers';
    is_deeply $k->{json}, { label => 'from the rules', reason => 'kill_switch', usage => { total_tokens => 0 } },
        'killed: the rule\'s body as written (label and usage kept)';
    ok !defined h($k, 'x-adapt'), 'killed: no adaptation ran';
    ok !defined h($k, 'x-aigov-cache'), 'killed: the cache did not run';
    length_ok($k, 'killed');
    is admin('kr/unkill')->{status}, 200, 'unkill';
};

my @unexpected = grep { !/recv\(\) failed \(104: Connection reset by peer\)/ } $ng->error_log_check;
is_deeply \@unexpected, [], 'error log: only the fixture\'s resets'
    or diag join("\n", @unexpected);

done_testing;
