#!/usr/bin/perl
# Canary routing: split accuracy, sticky keys (same key -> same variant on
# every node, across reloads, and when a weight is raised), header / cookie
# overrides and the precedence table of README.md ("How a request is
# routed"), each checked with $aigov_decision and with the fixture that
# really answered.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use AigovTest;

# ---------------------------------------------------------------------------
# the split math of README.md, in Perl: bucket = MurmurHash2(key, seed =
# MurmurHash2(model, 0x61696776 "aigv")) * 10000 >> 32; candidates own
# consecutive bucket ranges in the order of their "canary" lines.
# ---------------------------------------------------------------------------

sub mul32 {
    my ($a, $b) = @_;
    return ((($a & 0xffff) * $b) + (((($a >> 16) * $b) & 0xffff) << 16)) & 0xffffffff;
}

sub murmur2 {
    my ($data, $seed) = @_;
    my $m = 0x5bd1e995;
    my @b = unpack 'C*', $data;
    my $len = @b;
    my $h = ($seed ^ $len) & 0xffffffff;
    my $i = 0;
    while ($len - $i >= 4) {
        my $k = $b[$i] | ($b[$i + 1] << 8) | ($b[$i + 2] << 16) | ($b[$i + 3] << 24);
        $k = mul32($k, $m);
        $k ^= $k >> 24;
        $k = mul32($k, $m);
        $h = mul32($h, $m);
        $h ^= $k;
        $i += 4;
    }
    my $rest = $len - $i;
    $h ^= $b[$i + 2] << 16 if $rest >= 3;
    $h ^= $b[$i + 1] << 8  if $rest >= 2;
    if ($rest >= 1) {
        $h ^= $b[$i];
        $h = mul32($h, $m);
    }
    $h ^= $h >> 13;
    $h = mul32($h, $m);
    $h ^= $h >> 15;
    return $h;
}

sub bucket_of {
    my ($model, $key) = @_;
    my $seed = murmur2($model, 0x61696776);
    return (murmur2($key, $seed) * 10000) >> 32;
}

# expected variant: @split = ([variant, weight in 0.01 %], ...) in canary-line order
sub expected_variant {
    my ($model, $key, $stable, @split) = @_;
    my $b = bucket_of($model, $key);
    my $cut = 0;
    for my $s (@split) {
        $cut += $s->[1];
        return $s->[0] if $b < $cut;
    }
    return $stable;
}

# reference vector of tests/test_core.c: murmur2("user-42", 0x61696776)
is sprintf('%08x', murmur2('user-42', 0x61696776)), 'c5e1363d',
    'the Perl MurmurHash2 of this test matches the C reference vector';

# ---------------------------------------------------------------------------
# fixtures and config
# ---------------------------------------------------------------------------

start_fixture(name => 'stable',     version => '1.4.2');
start_fixture(name => 'candidate',  version => '1.5.0');
start_fixture(name => 'candidate2', version => '1.6.0');

my %FIXTURE_OF = (v1 => 'stable', v2 => 'candidate', v3 => 'candidate2');
my %VERSION_OF = (v1 => '1.4.2', v2 => '1.5.0', v3 => '1.6.0');

my $VARIANTS = <<'EOF';
        variant v1 u_stable     version=1.4.2 stable;
        variant v2 u_candidate  version=1.5.0;
        variant v3 u_candidate2 version=1.6.0;
EOF

sub http_conf {
    my (%w) = @_;
    my $order_v2  = $w{order_v2}  // '10%';
    my $order2_v2 = $w{order2_v2} // '10%';
    return <<"EOF";
    upstream u_stable     { server 127.0.0.1:%%FIXTURE_stable%%;     keepalive 16; }
    upstream u_candidate  { server 127.0.0.1:%%FIXTURE_candidate%%;  keepalive 16; }
    upstream u_candidate2 { server 127.0.0.1:%%FIXTURE_candidate2%%; keepalive 16; }

    aigov_zone aigov_canary:1m;

    # split accuracy, two candidates, no sticky key
    aigov_model chat {
$VARIANTS
        canary v2 20%;
        canary v3 5%;
    }

    aigov_model zero {
$VARIANTS
        canary v2 0%;
        canary v3 30%;
    }

    aigov_model full {
$VARIANTS
        canary v2 100%;
    }

    aigov_model full3 {
$VARIANTS
        canary v2 0%;
        canary v3 100%;
    }

    aigov_model sticky {
$VARIANTS
        canary        v2 20%;
        canary_sticky \$http_x_api_key;
    }

    # v3 declared first with an unchanged weight, v2 raised 10% -> 20%
    aigov_model order {
$VARIANTS
        canary        v3 5%;
        canary        v2 $order_v2;
        canary_sticky \$http_x_api_key;
    }

    # v2 declared first: raising it shifts v3's bucket range
    aigov_model order2 {
$VARIANTS
        canary        v2 $order2_v2;
        canary        v3 5%;
        canary_sticky \$http_x_api_key;
    }

    # overrides; v3 is declared before v2 but only v2 has a weight, so
    # lines without variant= go to v2 (the first weighted candidate)
    aigov_model ovr {
        variant v1 u_stable     version=1.4.2 stable;
        variant v3 u_candidate2 version=1.6.0;
        variant v2 u_candidate  version=1.5.0;
        canary        v2 10%;
        canary_header X-Canary;
        canary_header X-Beta   value=yes      variant=v3;
        canary_header X-Tenant pattern=^team- variant=v3;
        canary_cookie aigov_canary;
        canary_sticky \$http_x_api_key;
    }

    aigov_model ovr2 {
$VARIANTS
        canary        v2 10%;
        canary_cookie cc variant=v3;
    }

    # no weights: overrides go to the first candidate declared (v3)
    aigov_model nowt {
        variant v1 u_stable     version=1.4.2 stable;
        variant v3 u_candidate2 version=1.6.0;
        variant v2 u_candidate  version=1.5.0;
        canary_header X-Canary;
    }

    aigov_model ovr_rb {
$VARIANTS
        canary        v2 10%;
        canary_header X-Canary;
        canary_cookie aigov_canary;
        canary_sticky \$http_x_api_key;
        rollback      on;
    }

    aigov_model ovr_kill {
$VARIANTS
        canary        v2 10%;
        canary_header X-Canary;
        rollback      on;
        kill_switch   on;
    }

    server {
        listen 127.0.0.1:%%PORT%%;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        add_header X-Decision \$aigov_decision always;

        # answered by nginx itself (fast)
        location = /d {
            aigov_route model=\$arg_m;
            empty_gif;
        }

        # answered by the fixture of the chosen variant
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

# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------

# Stop the file early, instead of looping for minutes, when nginx no longer
# answers at all (e.g. workers crashing).
my $NO_RESPONSE = 0;
sub no_response_guard {
    my ($r) = @_;
    return unless $r->{status} == 599;
    die "nginx stopped answering: 20 requests without a response (last: $r->{error})\n"
        if ++$NO_RESPONSE >= 20;
}

# One request; returns the fields the assertions compare.
sub route {
    my (%a) = @_;
    my $port = delete $a{port};
    my $r = http_req(timeout => 5, %a, $port ? (port => $port) : ());
    no_response_guard($r);
    my $h = $r->{headers};
    return {
        status   => $r->{status},
        variant  => $h->{'x-aigov-variant'},
        decision => $h->{'x-decision'},
        served   => $h->{'x-served-by'},
        version  => $h->{'x-aigov-model-version'},
        fversion => $h->{'x-model-version'},
        r        => $r,
    };
}

# The fixture that answered is the one of the variant aigov chose, and the
# version header is that variant's.
sub consistent {
    my ($x) = @_;
    return 0 unless $x->{status} == 200 && defined $x->{variant};
    return ($x->{served} // '') eq ($FIXTURE_OF{ $x->{variant} } // '?')
        && ($x->{version} // '') eq $VERSION_OF{ $x->{variant} }
        && ($x->{fversion} // '') eq $VERSION_OF{ $x->{variant} };
}

# A routed request through the fixtures: [status, variant, decision, served_by]
sub is_route {
    my ($x, $variant, $decision, $name) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    is_deeply [ $x->{status}, $x->{variant}, $x->{decision}, $x->{served}, $x->{fversion} ],
              [ 200, $variant, $decision, $FIXTURE_OF{$variant}, $VERSION_OF{$variant} ], $name
        or diag explain { map { $_ => $x->{$_} } qw(status variant decision served fversion) };
}

sub f { my ($model, @h) = @_; return route(path => "/f/x?m=$model", headers => [@h]) }

# N requests; counts per variant, per decision, and problems.
sub sample {
    my (%o) = @_;
    my (%var, %dec, $bad_status, $inconsistent);
    $bad_status = $inconsistent = 0;
    for (1 .. $o{n}) {
        my $x = route(path => $o{path}, headers => $o{headers} // []);
        if ($x->{status} != 200) { $bad_status++; next }
        $var{ $x->{variant} // 'none' }++;
        $dec{ $x->{decision} // 'none' }++;
        $inconsistent++ if $o{fixtures} && !consistent($x);
    }
    return { var => \%var, dec => \%dec, bad_status => $bad_status, inconsistent => $inconsistent };
}

sub share { my ($s, $v, $n) = @_; return 100 * ($s->{var}{$v} // 0) / $n }

sub within {
    my ($got, $want, $tol, $name) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    ok abs($got - $want) <= $tol, sprintf('%s: %.2f%% (want %s%% +- %s)', $name, $got, $want, $tol);
}

sub status_model {
    my ($name) = @_;
    my $s = http_get('/status');
    return unless $s->{status} == 200 && $s->{json};
    my ($m) = grep { $_->{name} eq $name } @{ $s->{json}{models} };
    return $m;
}

sub variant_counters {
    my ($m) = @_;
    return { map { $_->{name} => $_->{requests} } @{ $m->{variants} } };
}

# ---------------------------------------------------------------------------
# 1. split accuracy
# ---------------------------------------------------------------------------

{
    my $N = 10_000;
    my $before = variant_counters(status_model('chat'));
    my $s = sample(n => $N, path => '/f/x?m=chat', fixtures => 1);
    diag sprintf 'chat (v2 20%%, v3 5%%) through the fixtures, %d requests: v1 %.2f%%, v2 %.2f%%, v3 %.2f%%',
        $N, map { share($s, $_, $N) } qw(v1 v2 v3);
    is $s->{bad_status}, 0, 'split: every request answered 200';
    is $s->{inconsistent}, 0, 'split: the fixture that answered is always the chosen variant';
    is_deeply $s->{dec}, { weight => $N }, 'split: every decision is "weight"';
    is_deeply [ sort keys %{ $s->{var} } ], [qw(v1 v2 v3)], 'split: only v1, v2, v3';
    within share($s, 'v2', $N), 20, 1.5, 'split: v2 share';
    within share($s, 'v3', $N),  5, 1.5, 'split: v3 share';
    within share($s, 'v1', $N), 75, 1.5, 'split: v1 (stable) share';

    my $after = variant_counters(status_model('chat'));
    is_deeply { map { $_ => $after->{$_} - $before->{$_} } keys %$after },
              { map { $_ => $s->{var}{$_} // 0 } qw(v1 v2 v3) },
              'aigov_status per-variant counters match the observed split exactly';
}

{
    my $N = 10_000;
    my $s = sample(n => $N, path => '/d?m=zero');
    diag sprintf 'zero (v2 0%%, v3 30%%) direct, %d requests: v1 %.2f%%, v2 %.2f%%, v3 %.2f%%',
        $N, map { share($s, $_, $N) } qw(v1 v2 v3);
    is $s->{bad_status}, 0, '0%: every request answered';
    is $s->{var}{v2} // 0, 0, '0%: not a single request to v2';
    within share($s, 'v3', $N), 30, 1.5, '0%: v3 share';
    within share($s, 'v1', $N), 70, 1.5, '0%: v1 share';

    my $f = sample(n => 500, path => '/f/x?m=zero', fixtures => 1);
    is $f->{inconsistent}, 0, '0% through the fixtures: answered by the chosen variant';
    is $f->{var}{v2} // 0, 0, '0% through the fixtures: the v2 fixture never answered';
}

{
    my $N = 5_000;
    my $s = sample(n => $N, path => '/d?m=full');
    is_deeply $s->{var}, { v2 => $N }, '100%: every request to v2';
    is_deeply $s->{dec}, { weight => $N }, '100%: decision "weight"';
    $s = sample(n => $N, path => '/d?m=full3');
    is_deeply $s->{var}, { v3 => $N }, '0% then 100%: every request to v3';

    my $f = sample(n => 300, path => '/f/x?m=full', fixtures => 1);
    is_deeply [ $f->{var}, $f->{inconsistent} ], [ { v2 => 300 }, 0 ],
        '100% through the fixtures: the v2 fixture answered every request';
}

# ---------------------------------------------------------------------------
# 2. sticky
# ---------------------------------------------------------------------------

{
    my $KEYS = 1000;
    my ($inconsistent_keys, $wrong_math, $not_sticky, $bad_fixture);
    $inconsistent_keys = $wrong_math = $not_sticky = $bad_fixture = 0;
    my %per_variant;
    for my $i (1 .. $KEYS) {
        my $key = sprintf 'api-key-%04d', $i;
        my %v;
        for (1 .. 3) {
            my $x = f('sticky', 'X-Api-Key' => $key);
            $bad_fixture++ unless consistent($x);
            $not_sticky++ unless ($x->{decision} // '') eq 'sticky';
            $v{ $x->{variant} // 'none' }++;
        }
        my @got = keys %v;
        $inconsistent_keys++ if @got != 1;
        $per_variant{ $got[0] }++;
        $wrong_math++ if $got[0] ne expected_variant('sticky', $key, 'v1', [v2 => 2000]);
    }
    my $frac = 100 * ($per_variant{v2} // 0) / $KEYS;
    diag sprintf 'sticky (v2 20%%): %d keys x 3 requests: %.1f%% of the keys on v2 (%s)',
        $KEYS, $frac, join(', ', map { "$_ $per_variant{$_}" } sort keys %per_variant);
    is $inconsistent_keys, 0, 'sticky: every key always got the same variant';
    is $not_sticky, 0, 'sticky: decision "sticky" whenever the key is present';
    is $bad_fixture, 0, 'sticky: answered by the fixture of the chosen variant';
    is $wrong_math, 0, 'sticky: every key is on the variant of its MurmurHash2 bucket';
    within $frac, 20, 3, 'sticky: share of keys on v2';
}

{
    # an empty key: the split is random
    my $s = sample(n => 300, path => '/f/x?m=sticky', fixtures => 1);
    is_deeply $s->{dec}, { weight => 300 }, 'no key: decision "weight"';
    ok $s->{var}{v1} && $s->{var}{v2}, 'no key: random split (both variants seen)'
        or diag explain $s->{var};
    is $s->{inconsistent}, 0, 'no key: answered by the chosen variant';

    $s = sample(n => 300, path => '/f/x?m=sticky', headers => ['X-Api-Key' => ''], fixtures => 1);
    is_deeply $s->{dec}, { weight => 300 }, 'empty key: decision "weight"';
    ok $s->{var}{v1} && $s->{var}{v2}, 'empty key: random split (both variants seen)'
        or diag explain $s->{var};
}

# ---------------------------------------------------------------------------
# 3. same key -> same variant on two nodes, across a reload, and when a
#    weight is raised
# ---------------------------------------------------------------------------

my @KEYS = map { "tenant-$_-" . ($_ * 7919 % 1000) } 1 .. 500;

sub key_map {
    my ($port, $model) = @_;
    my %m;
    for my $k (@KEYS) {
        my $x = route(port => $port, path => "/d?m=$model", headers => ['X-Api-Key' => $k]);
        $m{$k} = ($x->{status} == 200 && ($x->{decision} // '') eq 'sticky')
               ? $x->{variant} : "error:$x->{status}:" . ($x->{decision} // '');
    }
    return \%m;
}

sub expected_map {
    my ($model, @split) = @_;
    return { map { $_ => expected_variant($model, $_, 'v1', @split) } @KEYS };
}

sub count_by { my ($m) = @_; my %c; $c{$_}++ for values %$m; return \%c }

{
    my $a1  = key_map($ng->port, 'order');
    my $a1b = key_map($ng->port, 'order2');
    is_deeply $a1, expected_map('order', [v3 => 500], [v2 => 1000]),
        'order: every key on the variant of its bucket (v3 0-499, v2 500-1499)';
    diag 'order (v3 5%, v2 10%), 500 keys: '
        . join(', ', map { my $c = count_by($a1); "$_ " . ($c->{$_} // 0) } qw(v1 v2 v3));

    my $nb = start_nginx(nginx_conf(http_conf(), name => 'b'));
    is_deeply key_map($nb->port, 'order'), $a1, 'a second nginx with the same config: same variant for all 500 keys';
    is_deeply key_map($nb->port, 'order2'), $a1b, 'a second nginx: same variants for model order2 too';
    $nb->error_log_clean_ok('second nginx: error log clean');
    $nb->stop;

    ok $ng->reload(nginx_conf(http_conf())), 'reload with the same config';
    is_deeply key_map($ng->port, 'order'), $a1, 'after a reload: same variant for all 500 keys';

    ok $ng->reload(nginx_conf(http_conf(order_v2 => '20%', order2_v2 => '20%'))),
        'reload: v2 raised from 10% to 20%';
    my $a2 = key_map($ng->port, 'order');
    is_deeply $a2, expected_map('order', [v3 => 500], [v2 => 2000]), 'order after the raise: buckets as computed';

    my (%moves, $moved);
    for my $k (@KEYS) {
        next if $a1->{$k} eq $a2->{$k};
        $moves{"$a1->{$k}->$a2->{$k}"}++;
        $moved++;
    }
    diag 'order: raising v2 10% -> 20% moved ' . ($moved // 0) . ' keys: '
        . join(', ', map { "$_ $moves{$_}" } sort keys %moves);
    is_deeply [ keys %moves ], ['v1->v2'], 'raising v2: keys only move from stable (v1) to v2';
    ok $moved >= 20 && $moved <= 80, "raising v2 by 10 points moved about 10% of 500 keys ($moved)";
    is_deeply [ sort grep { $a2->{$_} eq 'v3' } @KEYS ], [ sort grep { $a1->{$_} eq 'v3' } @KEYS ],
        'raising v2: exactly the same keys stay on v3 (declared first, unchanged)';
    is scalar(grep { $a1->{$_} eq 'v2' && $a2->{$_} ne 'v2' } @KEYS), 0, 'raising v2: no key leaves v2';

    # v2 declared first: the candidates' bucket ranges are consecutive in
    # the order of the canary lines, so v3's range moves (README: "The split")
    my $a2b = key_map($ng->port, 'order2');
    is_deeply $a2b, expected_map('order2', [v2 => 2000], [v3 => 500]),
        'order2 (v2 first) after the raise: v2 0-1999, v3 2000-2499';
    my %m2;
    $m2{"$a1b->{$_}->$a2b->{$_}"}++ for grep { $a1b->{$_} ne $a2b->{$_} } @KEYS;
    diag 'order2 (v2 declared before v3): raising v2 10% -> 20% moved keys: '
        . join(', ', map { "$_ $m2{$_}" } sort keys %m2);
}

# ---------------------------------------------------------------------------
# 4. overrides
# ---------------------------------------------------------------------------

# keys that the ovr model's 10 % split puts on v1 and on v2
my ($KEY_V1) = grep { expected_variant('ovr', $_, 'v1', [v2 => 1000]) eq 'v1' } map { "k$_" } 1 .. 1000;
my ($KEY_V2) = grep { expected_variant('ovr', $_, 'v1', [v2 => 1000]) eq 'v2' } map { "k$_" } 1 .. 1000;
is_route f('ovr', 'X-Api-Key' => $KEY_V1), 'v1', 'sticky', "ovr: key $KEY_V1 is on v1 (sticky)";
is_route f('ovr', 'X-Api-Key' => $KEY_V2), 'v2', 'sticky', "ovr: key $KEY_V2 is on v2 (sticky)";

# canary_header X-Canary: always / never, case-insensitive; anything else ignored
is_route f('ovr', 'X-Canary' => 'always'), 'v2', 'header', 'X-Canary: always -> first weighted candidate v2';
is_route f('ovr', 'X-Canary' => 'ALWAYS'), 'v2', 'header', 'X-Canary: ALWAYS (case-insensitive)';
is_route f('ovr', 'X-Canary' => 'Always'), 'v2', 'header', 'X-Canary: Always';
is_route f('ovr', 'X-Canary' => 'never'),  'v1', 'header', 'X-Canary: never -> stable';
is_route f('ovr', 'X-Canary' => 'NEVER'),  'v1', 'header', 'X-Canary: NEVER';
for my $v ('yes', '1', 'true', 'alwaysx', 'alway', 'on', '') {
    is f('ovr', 'X-Canary' => $v)->{decision}, 'weight', "X-Canary: '$v' is ignored (decision weight)";
}
{
    # ignored values really do not route: 200 requests with X-Canary: yes and
    # X-Canary: always-ish keep the 10 % split
    my $s = sample(n => 200, path => '/d?m=ovr', headers => ['X-Canary' => 'yes']);
    ok(($s->{var}{v1} // 0) > 150, 'X-Canary: yes -> the normal split (mostly v1)') or diag explain $s->{var};
}

# value=yes variant=v3: exact match only
is_route f('ovr', 'X-Beta' => 'yes'), 'v3', 'header', 'X-Beta: yes -> v3';
for my $v ('Yes', 'YES', 'yess', 'ye', 'yes,yes', 'no') {
    is f('ovr', 'X-Beta' => $v)->{decision}, 'weight', "X-Beta: '$v' is no exact match";
}

# pattern=^team- variant=v3
is_route f('ovr', 'X-Tenant' => 'team-a'),    'v3', 'header', 'X-Tenant: team-a matches ^team-';
is_route f('ovr', 'X-Tenant' => 'team-'),     'v3', 'header', 'X-Tenant: team- matches ^team-';
for my $v ('Team-a', 'xteam-a', 'my-team-a', 'team_a') {
    is f('ovr', 'X-Tenant' => $v)->{decision}, 'weight', "X-Tenant: '$v' does not match ^team-";
}

# several canary_header lines: checked in order
is_route f('ovr', 'X-Canary' => 'never', 'X-Beta' => 'yes'), 'v1', 'header',
    'order: X-Canary (line 1) wins over X-Beta (line 2)';
is_route f('ovr', 'X-Beta' => 'yes', 'X-Tenant' => 'team-a', 'X-Canary' => 'always'), 'v2', 'header',
    'order: line 1 wins whatever the order of the request headers';
is_route f('ovr', 'X-Canary' => 'maybe', 'X-Beta' => 'yes'), 'v3', 'header',
    'order: an ignored line 1 falls through to line 2';
is_route f('ovr', 'X-Beta' => 'no', 'X-Tenant' => 'team-x'), 'v3', 'header',
    'order: a non-matching line 2 falls through to line 3';

# no weights: override target is the first candidate declared
is_route f('nowt', 'X-Canary' => 'always'), 'v3', 'header', 'no weights: always -> first candidate declared (v3)';
{
    my $s = sample(n => 100, path => '/f/x?m=nowt', fixtures => 1);
    is_deeply [ $s->{var}, $s->{inconsistent} ], [ { v1 => 100 }, 0 ], 'no weights, no override: all to stable';
}

# canary_cookie
is_route f('ovr', Cookie => 'aigov_canary=always'), 'v2', 'cookie', 'cookie always -> v2';
is_route f('ovr', Cookie => 'aigov_canary=ALWAYS'), 'v2', 'cookie', 'cookie ALWAYS -> v2';
is_route f('ovr', Cookie => 'aigov_canary=never'),  'v1', 'cookie', 'cookie never -> v1';
is_route f('ovr', Cookie => 'a=1; aigov_canary=always; b=2'), 'v2', 'cookie', 'cookie among others';
is f('ovr', Cookie => 'aigov_canary=maybe')->{decision}, 'weight', 'cookie with another value: ignored';
is f('ovr', Cookie => 'other=always')->{decision}, 'weight', 'another cookie: ignored';
is_route f('ovr2', Cookie => 'cc=always'), 'v3', 'cookie', 'canary_cookie cc variant=v3: always -> v3';
is_route f('ovr2', Cookie => 'cc=never'),  'v1', 'cookie', 'canary_cookie cc variant=v3: never -> v1';

# precedence: header > cookie > sticky > weight
is_route f('ovr', 'X-Canary' => 'never', Cookie => 'aigov_canary=always', 'X-Api-Key' => $KEY_V2),
    'v1', 'header', 'header beats cookie and sticky (never vs always, v2 key)';
is_route f('ovr', 'X-Canary' => 'always', Cookie => 'aigov_canary=never', 'X-Api-Key' => $KEY_V1),
    'v2', 'header', 'header beats cookie and sticky (always vs never, v1 key)';
is_route f('ovr', Cookie => 'aigov_canary=always', 'X-Api-Key' => $KEY_V1),
    'v2', 'cookie', 'cookie beats sticky (always, v1 key)';
is_route f('ovr', Cookie => 'aigov_canary=never', 'X-Api-Key' => $KEY_V2),
    'v1', 'cookie', 'cookie beats sticky (never, v2 key)';
is_route f('ovr', 'X-Canary' => 'bogus', Cookie => 'aigov_canary=bogus', 'X-Api-Key' => $KEY_V2),
    'v2', 'sticky', 'ignored header and cookie values fall through to sticky';
{
    my $s = sample(n => 100, path => '/f/x?m=ovr', headers => ['X-Api-Key' => $KEY_V2], fixtures => 1);
    is_deeply [ $s->{var}, $s->{dec}, $s->{inconsistent} ], [ { v2 => 100 }, { sticky => 100 }, 0 ],
        'sticky beats weight: 100 requests with a v2 key all on v2';
}
is f('ovr')->{decision}, 'weight', 'nothing set: decision weight';

# a version pinned in a KServe path beats the canary header
{
    my $body = { inputs => [ { name => 'x', shape => [1], datatype => 'FP32', data => [1] } ] };
    my $x = route(path => '/v2/models/ovr/versions/1.4.2/infer', body => $body,
                  headers => ['X-Canary' => 'always', Cookie => 'aigov_canary=always', 'X-Api-Key' => $KEY_V2]);
    is_route $x, 'v1', 'pinned', 'KServe version 1.4.2 pinned: beats header, cookie and sticky';
    is $x->{r}{json}{model_version}, '1.4.2', 'KServe: the path reached the fixture unchanged';
    is_route route(path => '/v2/models/ovr/versions/1.6.0/infer', body => $body,
                   headers => ['X-Canary' => 'never']), 'v3', 'pinned', 'KServe version 1.6.0 pinned: beats X-Canary: never';
    is_route route(path => '/v2/models/ovr/infer', body => $body, headers => ['X-Canary' => 'always']),
        'v2', 'header', 'KServe path without a version: the canary header applies';
    # pinned requests are counted like any other decision in aigov_status
    my $m0 = status_model('ovr');
    route(path => '/v2/models/ovr/versions/1.5.0/infer', body => $body) for 1 .. 7;
    my $m1 = status_model('ovr');
    is_deeply [ ($m1->{decisions}{pinned} // 0) - ($m0->{decisions}{pinned} // 0),
                variant_counters($m1)->{v2} - variant_counters($m0)->{v2},
                $m1->{requests} - $m0->{requests} ],
              [ 7, 7, 7 ],
              'aigov_status counts 7 pinned requests: decisions.pinned, v2 requests, model requests'
        or diag explain { before => $m0->{decisions}, after => $m1->{decisions} };

    is_route route(path => '/v1/chat/completions', body => { model => 'ovr', messages => [] },
                   headers => ['X-Canary' => 'always']),
        'v2', 'header', 'OpenAI body routing: the canary header applies';
}

# rollback beats everything, the kill switch beats rollback
is_route f('ovr_rb', 'X-Canary' => 'always', Cookie => 'aigov_canary=always', 'X-Api-Key' => $KEY_V2),
    'v1', 'rollback', 'rollback beats header, cookie and sticky';
is_route route(path => '/v2/models/ovr_rb/versions/1.5.0/infer', body => { inputs => [] },
               headers => ['X-Canary' => 'always']),
    'v1', 'rollback', 'rollback beats a pinned KServe version';
{
    my $x = f('ovr_kill', 'X-Canary' => 'always');
    is_deeply [ $x->{status}, $x->{decision}, $x->{variant}, $x->{served} ], [ 503, 'kill', undef, undef ],
        'kill switch beats rollback: 503, decision kill, no variant, no fixture';
    is $x->{r}{json}{type}, 'urn:aigov:problem:model-disabled', 'kill switch: problem type';
}

error_log_clean_ok('error log clean');
done_testing;
