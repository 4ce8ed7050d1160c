#!/usr/bin/perl
# $aigov_* variables, the X-Aigov-* response headers (aigov_response_headers)
# and the aigov_status JSON: config view, counters, and the shared zone
# across reloads.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use AigovTest;

start_fixture(name => 'stable',    version => '1.4.2');
start_fixture(name => 'candidate', version => '1.5.0');

sub http_conf {
    my (%o) = @_;
    my $zone = $o{zone} // 'aigov:1m';
    return nginx_conf(<<"EOF");
    upstream stable_up    { server 127.0.0.1:%%FIXTURE_stable%%;    keepalive 8; }
    upstream candidate_up { server 127.0.0.1:%%FIXTURE_candidate%%; keepalive 8; }

    aigov_zone $zone;
    aigov_upstream aigov;

    aigov_model chat {
        alias          gpt-4o-mini gpt4;
        variant        v1 stable_up    version=1.4.2 stable;
        variant        v2 candidate_up version=1.5.0;
        variant        v3 candidate_up version=1.6.0;
        canary         v2 5%;
        canary         v3 0.25%;
        canary_header  X-Canary;
        canary_header  X-Beta value=yes variant=v3;
        canary_sticky  \$http_x_api_key;
    }

    aigov_model embed {
        variant  blue  stable_up    version=3.1 stable;
        variant  green candidate_up version=3.2;
        active   blue;
        preview  green header=X-Preview;
    }

    aigov_model legacy {
        variant  old stable_up version=0.9 stable;
        variant  new candidate_up version=1.0;
        canary   new 50%;
        rollback on;
    }

    aigov_model dead {
        variant     only candidate_up version=2;
        kill_switch on retry_after=7s;
    }

    aigov_model split {
        variant  s0 stable_up version=1 stable;
        variant  c  candidate_up version=2;
        variant  d  candidate_up version=3;
        canary   c 60%;
        canary   d 40%;
    }

    aigov_model tiny {
        variant  t0 stable_up version=1;
        variant  t1 candidate_up version=2 candidate;
        variant  t2 stable_up version=3 stable;
        canary   t1 0.01%;
    }

    server {
        listen 127.0.0.1:%%PORT%%;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        client_body_buffer_size 64k;

        add_header X-Decision \$aigov_decision always;
        add_header X-Upstream \$aigov_upstream always;
        add_header X-Variant  \$aigov_variant always;
        add_header X-Version  \$aigov_model_version always;
        add_header X-Model    \$aigov_model always;

        location /chat/   { aigov_route model=chat;   proxy_pass http://\$aigov_upstream; }
        location /embed/  { aigov_route model=embed;  proxy_pass http://\$aigov_upstream; }
        location /legacy/ { aigov_route model=legacy; proxy_pass http://\$aigov_upstream; }
        location /dead/   { aigov_route model=dead;   proxy_pass http://\$aigov_upstream; }
        location /split/  { aigov_route model=split;  proxy_pass http://\$aigov_upstream; }
        location /v1/     { aigov_route openai;       proxy_pass http://\$aigov_upstream; }
        location /v2/     { aigov_route kserve;       proxy_pass http://\$aigov_upstream; }
        location /plain/  { proxy_pass http://stable_up; }
        location /fast/   { aigov_route model=chat;   proxy_pass http://aigov; }
        location /fast-noroute/ { proxy_pass http://aigov; }
        location /quiet/ {
            aigov_response_headers off;
            aigov_route model=chat;
            proxy_pass http://\$aigov_upstream;
        }
        location = /aigov/status { aigov_status; }
    }

    # aigov_response_headers off at server level, on again in one location
    server {
        listen 127.0.0.1:%%PORT_quiet%%;
        aigov_response_headers off;
        add_header X-Decision \$aigov_decision always;
        location /chat/ { aigov_route model=chat; proxy_pass http://\$aigov_upstream; }
        location /loud/ {
            aigov_response_headers on;
            aigov_route model=chat;
            proxy_pass http://\$aigov_upstream;
        }
    }
EOF
}

my $n = start_nginx(http_conf());
my $QPORT = nginx_port('quiet');

sub status {
    my $r = http_get('/aigov/status');
    is $r->{status}, 200, 'status: 200' or diag $r->{body};
    is $r->{headers}{'content-type'}, 'application/json', 'status: Content-Type application/json';
    ok ref $r->{json} eq 'HASH', 'status: a JSON object' or diag $r->{body};
    return $r->{json} // {};
}

sub model_of {
    my ($st, $name) = @_;
    my ($m) = grep { $_->{name} eq $name } @{ $st->{models} // [] };
    return $m // {};
}

sub variant_of {
    my ($m, $name) = @_;
    my ($v) = grep { $_->{name} eq $name } @{ $m->{variants} // [] };
    return $v // {};
}

# counters of a model: {requests, decisions => {...}, variants => {name => requests}}
sub counters {
    my ($st, $name) = @_;
    my $m = model_of($st, $name);
    return {
        requests  => $m->{requests},
        decisions => { %{ $m->{decisions} // {} } },
        variants  => { map { $_->{name} => $_->{requests} } @{ $m->{variants} // [] } },
    };
}

sub delta {
    my ($before, $after) = @_;
    my %d = (requests => ($after->{requests} // 0) - ($before->{requests} // 0));
    for my $k (qw(decisions variants)) {
        my %keys = map { $_ => 1 } keys %{ $before->{$k} }, keys %{ $after->{$k} };
        for (sort keys %keys) {
            my $x = ($after->{$k}{$_} // 0) - ($before->{$k}{$_} // 0);
            $d{$k}{$_} = $x if $x;
        }
        $d{$k} //= {};
    }
    return \%d;
}

sub vars_ok {
    my ($r, $name, %e) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    is $r->{status}, $e{status} // 200, "$name: status";
    my $h = $r->{headers};
    is $h->{'x-decision'}, $e{decision}, "$name: \$aigov_decision = " . ($e{decision} // 'empty');
    is $h->{'x-model'},    $e{model},    "$name: \$aigov_model = " . ($e{model} // 'empty');
    is $h->{'x-variant'},  $e{variant},  "$name: \$aigov_variant = " . ($e{variant} // 'empty');
    is $h->{'x-version'},  $e{version},  "$name: \$aigov_model_version = " . ($e{version} // 'empty');
    is $h->{'x-upstream'}, $e{upstream}, "$name: \$aigov_upstream = " . ($e{upstream} // 'empty');
    if ($e{served_by}) {
        is $h->{'x-served-by'}, $e{served_by}, "$name: served by $e{served_by}";
    }
}

# --- variables -------------------------------------------------------------------
my %CHAT_V1 = (model => 'chat', variant => 'v1', version => '1.4.2', upstream => 'stable_up', served_by => 'stable');
my %CHAT_V2 = (model => 'chat', variant => 'v2', version => '1.5.0', upstream => 'candidate_up', served_by => 'candidate');
my %CHAT_V3 = (model => 'chat', variant => 'v3', version => '1.6.0', upstream => 'candidate_up', served_by => 'candidate');
my %BY_NAME = (v1 => \%CHAT_V1, v2 => \%CHAT_V2, v3 => \%CHAT_V3);

{
    my $r = http_get('/chat/x', 'X-Canary' => 'always');
    vars_ok($r, 'X-Canary: always', %CHAT_V2, decision => 'header');
    is $r->{headers}{'x-aigov-variant'}, 'v2', 'X-Canary: always: X-Aigov-Variant';
    is $r->{headers}{'x-aigov-model-version'}, '1.5.0', 'X-Canary: always: X-Aigov-Model-Version';

    $r = http_get('/chat/x', 'X-Canary' => 'never');
    vars_ok($r, 'X-Canary: never', %CHAT_V1, decision => 'header');
    is $r->{headers}{'x-aigov-variant'}, 'v1', 'X-Canary: never: X-Aigov-Variant';
    is $r->{headers}{'x-aigov-model-version'}, '1.4.2', 'X-Canary: never: X-Aigov-Model-Version';

    $r = http_get('/chat/x', 'X-Beta' => 'yes');
    vars_ok($r, 'X-Beta: yes', %CHAT_V3, decision => 'header');

    $r = http_get('/chat/x', 'X-Api-Key' => 'user-1');
    is $r->{headers}{'x-decision'}, 'sticky', 'sticky key: decision sticky';
    my $v = $r->{headers}{'x-variant'} // '';
    ok $BY_NAME{$v}, "sticky key: a chat variant ($v)";
    vars_ok($r, 'sticky key', %{ $BY_NAME{$v} // {} }, decision => 'sticky');

    $r = http_get('/chat/x');
    $v = $r->{headers}{'x-variant'} // '';
    vars_ok($r, 'no key', %{ $BY_NAME{$v} // {} }, decision => 'weight');

    $r = http_post_json('/v1/chat/completions', { model => 'gpt-4o-mini', messages => [] },
                        'X-Canary' => 'never');
    vars_ok($r, 'openai by alias gpt-4o-mini', %CHAT_V1, decision => 'header');
    is $r->{json}{model}, 'gpt-4o-mini', 'openai by alias: the body is unchanged';

    $r = http_post_json('/v2/models/gpt4/versions/1.6.0/infer', { inputs => [] });
    vars_ok($r, 'kserve pin by alias gpt4', %CHAT_V3, decision => 'pinned');

    $r = http_get('/embed/x');
    vars_ok($r, 'blue-green active', model => 'embed', variant => 'blue', version => '3.1',
            upstream => 'stable_up', served_by => 'stable', decision => 'active');
    $r = http_get('/embed/x', 'X-Preview' => '1');
    vars_ok($r, 'blue-green preview', model => 'embed', variant => 'green', version => '3.2',
            upstream => 'candidate_up', served_by => 'candidate', decision => 'preview');
    $r = http_get('/embed/x', 'X-Preview' => 'off');
    vars_ok($r, 'blue-green preview off', model => 'embed', variant => 'blue', version => '3.1',
            upstream => 'stable_up', served_by => 'stable', decision => 'active');

    $r = http_get('/legacy/x');
    vars_ok($r, 'rollback', model => 'legacy', variant => 'old', version => '0.9',
            upstream => 'stable_up', served_by => 'stable', decision => 'rollback');

    $r = http_get('/split/x');
    $v = $r->{headers}{'x-variant'} // '';
    ok $v eq 'c' || $v eq 'd', "split 60/40: a candidate ($v), never the 0% stable";

    $r = http_get('/dead/x');
    vars_ok($r, 'kill switch', status => 503, model => 'dead', decision => 'kill');
    is $r->{headers}{'retry-after'}, '7', 'kill switch: Retry-After 7';
    is $r->{headers}{'content-type'}, 'application/problem+json', 'kill switch: problem JSON';
    is_deeply $r->{json}, { type => 'urn:aigov:problem:model-disabled', title => 'Model disabled',
        status => 503, detail => 'model "dead" is switched off by its kill switch', model => 'dead' },
        'kill switch: problem body';
    ok !exists $r->{headers}{'x-aigov-variant'}, 'kill switch: no X-Aigov-Variant';
    ok !exists $r->{headers}{'x-aigov-model-version'}, 'kill switch: no X-Aigov-Model-Version';
    ok !exists $r->{headers}{'x-served-by'}, 'kill switch: no upstream call';

    # no aigov_route: every variable is empty (add_header skips empty values)
    $r = http_get('/plain/x');
    is $r->{status}, 200, 'no aigov_route: 200';
    is $r->{headers}{'x-served-by'}, 'stable', 'no aigov_route: proxied';
    ok !exists $r->{headers}{$_}, "no aigov_route: no $_ (variable empty)"
        for qw(x-decision x-model x-variant x-version x-upstream x-aigov-variant x-aigov-model-version);

    # the status location is not routed either
    $r = http_get('/aigov/status');
    ok !exists $r->{headers}{$_}, "status location: no $_"
        for qw(x-decision x-model x-variant x-aigov-variant);
}

# --- aigov_upstream: the same decision without proxy_pass http://\$aigov_upstream
{
    my $r = http_get('/fast/x', 'X-Canary' => 'always');
    vars_ok($r, 'aigov_upstream, X-Canary: always', %CHAT_V2, decision => 'header');
    is $r->{headers}{'x-aigov-variant'}, 'v2', 'aigov_upstream: X-Aigov-Variant';
    $r = http_get('/fast/x', 'X-Canary' => 'never');
    vars_ok($r, 'aigov_upstream, X-Canary: never', %CHAT_V1, decision => 'header');
    for my $i (1 .. 6) {   # keepalive to both variants' upstreams
        $r = http_req(path => '/fast/x', headers => { 'X-Canary' => $i % 2 ? 'always' : 'never' });
        is $r->{headers}{'x-served-by'}, $i % 2 ? 'candidate' : 'stable', "aigov_upstream: request $i to its variant";
    }
    error_log_clean_ok('aigov_upstream: no errors');

    error_log_mark();
    $r = http_get('/fast-noroute/x');
    is $r->{status}, 500, 'aigov_upstream without aigov_route: 500';
    ok !exists $r->{headers}{'x-served-by'}, 'aigov_upstream without aigov_route: no upstream call';
    my @err = error_log_check();
    is scalar(@err), 1, 'aigov_upstream without aigov_route: one [error] line';
    like $err[0] // '', qr/\[error\] .*aigov_upstream "aigov" used in a location without "aigov_route"/,
        'aigov_upstream without aigov_route: says why';
    error_log_mark();
}

# --- aigov_response_headers ------------------------------------------------------------
{
    my $r = http_get('/quiet/x', 'X-Canary' => 'always');
    is $r->{status}, 200, 'location off: 200';
    is $r->{headers}{'x-decision'}, 'header', 'location off: still routed (decision header)';
    is $r->{headers}{'x-served-by'}, 'candidate', 'location off: routed to v2';
    ok !exists $r->{headers}{'x-aigov-variant'}, 'location off: no X-Aigov-Variant';
    ok !exists $r->{headers}{'x-aigov-model-version'}, 'location off: no X-Aigov-Model-Version';

    $r = http_req(port => $QPORT, path => '/chat/x', headers => { 'X-Canary' => 'always' });
    is $r->{status}, 200, 'server off: 200';
    is $r->{headers}{'x-served-by'}, 'candidate', 'server off: routed to v2';
    is $r->{headers}{'x-decision'}, 'header', 'server off: decision header';
    ok !exists $r->{headers}{'x-aigov-variant'}, 'server off: no X-Aigov-Variant';
    ok !exists $r->{headers}{'x-aigov-model-version'}, 'server off: no X-Aigov-Model-Version';

    $r = http_req(port => $QPORT, path => '/loud/x', headers => { 'X-Canary' => 'always' });
    is $r->{headers}{'x-aigov-variant'}, 'v2', 'server off, location on: X-Aigov-Variant';
    is $r->{headers}{'x-aigov-model-version'}, '1.5.0', 'server off, location on: X-Aigov-Model-Version';

    # exactly one of each header (the fixture sends X-Model-Version, not these)
    $r = http_get('/chat/x', 'X-Canary' => 'never');
    my @hv = grep { lc $_->[0] eq 'x-aigov-variant' } @{ $r->{header_lines} };
    is scalar(@hv), 1, 'default on: exactly one X-Aigov-Variant line';
}

# --- status: configuration view --------------------------------------------------------------
{
    my $st = status();
    my @names = map { $_->{name} } @{ $st->{models} // [] };
    is_deeply \@names, [qw(chat embed legacy dead split tiny)], 'status: models in config order';
    is $st->{zone}{name}, 'aigov', 'status: zone name';
    is $st->{zone}{size}, 1048576, 'status: zone size';
    is $st->{zone}{generation}, 1, 'status: zone generation 1 after the first start';
    ok $st->{zone}{created} > 0 && $st->{zone}{created} <= time, 'status: zone created is a timestamp';
    my %workers = map { $_ => 1 } $n->worker_pids;
    ok $workers{ $st->{pid} // 0 }, 'status: pid is a worker of this nginx';

    my $chat = model_of($st, 'chat');
    is_deeply $chat->{aliases}, ['gpt-4o-mini', 'gpt4'], 'status chat: aliases';
    is $chat->{stable}, 'v1', 'status chat: stable';
    is $chat->{mode}, 'canary', 'status chat: mode canary';
    is_deeply $chat->{weights}, { v2 => '5%', v3 => '0.25%', v1 => '94.75%' }, 'status chat: weights';
    is $chat->{sticky}, JSON::PP::true(), 'status chat: sticky';
    is $chat->{rollback}, JSON::PP::false(), 'status chat: rollback false';
    is $chat->{kill_switch}, JSON::PP::false(), 'status chat: kill_switch false';
    is_deeply [map { [@$_{qw(name upstream version role)}] } @{ $chat->{variants} }],
        [[qw(v1 stable_up 1.4.2 stable)], [qw(v2 candidate_up 1.5.0 candidate)],
         [qw(v3 candidate_up 1.6.0 candidate)]], 'status chat: variants with upstream, version, role';

    my $embed = model_of($st, 'embed');
    is $embed->{mode}, 'bluegreen', 'status embed: mode bluegreen';
    is $embed->{active}, 'blue', 'status embed: active';
    is_deeply $embed->{preview}, { variant => 'green', header => 'X-Preview' }, 'status embed: preview';
    ok !exists $embed->{weights}, 'status embed: no weights';
    is_deeply $embed->{aliases}, [], 'status embed: no aliases';

    my $legacy = model_of($st, 'legacy');
    is $legacy->{rollback}, JSON::PP::true(), 'status legacy: rollback true';
    is $legacy->{kill_switch}, JSON::PP::false(), 'status legacy: kill_switch false';
    is_deeply $legacy->{weights}, { new => '50%', old => '50%' }, 'status legacy: weights kept while rolled back';

    my $dead = model_of($st, 'dead');
    is $dead->{kill_switch}, JSON::PP::true(), 'status dead: kill_switch true';
    is $dead->{rollback}, JSON::PP::false(), 'status dead: rollback false';
    ok !exists $dead->{mode}, 'status dead: no routing mode';
    is variant_of($dead, 'only')->{role}, 'stable', 'status dead: a single variant is stable';

    is_deeply model_of($st, 'split')->{weights}, { c => '60%', d => '40%', s0 => '0%' },
        'status split: weights 60% / 40% / stable 0%';
    is_deeply model_of($st, 'tiny')->{weights}, { t1 => '0.01%', t2 => '99.99%' },
        'status tiny: weights 0.01% / stable 99.99%';
    is model_of($st, 'tiny')->{stable}, 't2', 'status tiny: stable is the one marked stable';
    is variant_of(model_of($st, 'tiny'), 't0')->{role}, 'candidate', 'status tiny: unmarked variant is a candidate';

    # counters: every model's total is the sum of its decisions
    for my $m (@{ $st->{models} }) {
        my $sum = 0;
        $sum += $_ for values %{ $m->{decisions} };
        is $m->{requests}, $sum, "status $m->{name}: requests = sum of decisions ($sum)";
    }

    my $r = http_req(method => 'POST', path => '/aigov/status', body => '{}');
    is $r->{status}, 405, 'status: POST is 405';
    $r = http_req(method => 'DELETE', path => '/aigov/status');
    is $r->{status}, 405, 'status: DELETE is 405';
    $r = http_req(method => 'HEAD', path => '/aigov/status');
    is $r->{status}, 200, 'status: HEAD is 200';
    is $r->{body}, '', 'status: HEAD has no body';
}

# --- status: counters ---------------------------------------------------------------------------
{
    my $st0 = status();
    my %c0 = map { $_ => counters($st0, $_) } qw(chat embed legacy dead);

    my %seen;
    for my $i (1 .. 7) {   # fresh connections: both workers count into the zone
        my $r = http_req(path => '/chat/x', headers => { 'X-Canary' => 'always' }, fresh => $i % 2);
        $seen{ $r->{headers}{'x-variant'} // '?' }++;
    }
    for my $i (1 .. 5) {
        my $r = http_req(path => '/chat/x', headers => { 'X-Canary' => 'never' }, fresh => $i % 2);
        $seen{ $r->{headers}{'x-variant'} // '?' }++;
    }
    my $sticky_v;
    for my $i (1 .. 4) {
        my $r = http_req(path => '/chat/x', headers => { 'X-Api-Key' => 'user-42' }, fresh => $i % 2);
        $sticky_v //= $r->{headers}{'x-variant'};
        is $r->{headers}{'x-variant'}, $sticky_v, "sticky user-42 #$i: same variant ($sticky_v)";
        $seen{ $r->{headers}{'x-variant'} // '?' }++;
    }
    for my $i (1 .. 10) {
        my $r = http_req(path => '/chat/x', fresh => $i % 2);
        $seen{ $r->{headers}{'x-variant'} // '?' }++;
    }
    # not counted: an unknown version (no variant chosen) and the status page
    my $r = http_post_json('/v2/models/chat/versions/9.9/infer', {});
    is $r->{status}, 404, 'unknown version: 404';
    http_get('/aigov/status') for 1 .. 3;

    for (1 .. 3) { http_get('/embed/x') }
    for (1 .. 2) { http_get('/embed/x', 'X-Preview' => 'yes') }
    for (1 .. 6) { http_get('/legacy/x', 'X-Canary' => 'always') }
    for (1 .. 3) { http_get('/dead/x') }

    my $st1 = status();
    is_deeply delta($c0{chat}, counters($st1, 'chat')),
        { requests => 26, decisions => { header => 12, sticky => 4, weight => 10 },
          variants => { map { $_ => $seen{$_} } grep { $seen{$_} } keys %seen } },
        'counters chat: +26 requests, header 12 / sticky 4 / weight 10, per variant as answered';
    ok $seen{v2} >= 7, 'counters chat: X-Canary: always answered by v2 at least 7 times';
    ok $seen{v1} >= 5, 'counters chat: X-Canary: never answered by v1 at least 5 times';
    is_deeply delta($c0{embed}, counters($st1, 'embed')),
        { requests => 5, decisions => { active => 3, preview => 2 }, variants => { blue => 3, green => 2 } },
        'counters embed: +5, active 3 (blue) / preview 2 (green)';
    is_deeply delta($c0{legacy}, counters($st1, 'legacy')),
        { requests => 6, decisions => { rollback => 6 }, variants => { old => 6 } },
        'counters legacy: +6 rollback, all to the stable variant';
    is_deeply delta($c0{dead}, counters($st1, 'dead')),
        { requests => 3, decisions => { kill => 3 }, variants => {} },
        'counters dead: +3 kill, no variant counted';
}

# --- the shared zone across reloads ----------------------------------------------------------------
{
    my $before = status();
    my $gen = $before->{zone}{generation};
    my $created = $before->{zone}{created};

    ok reload_nginx(undef), 'reload with the same config' or diag $n->reload_error;
    my $after = status();
    is $after->{zone}{generation}, $gen + 1, 'reload: zone generation +1';
    is $after->{zone}{created}, $created, 'reload: same zone (created unchanged)';
    for my $m (qw(chat embed legacy dead)) {
        is_deeply counters($after, $m), counters($before, $m), "reload: $m counters kept";
    }

    # the new workers count into the same nodes
    http_get('/chat/x', 'X-Canary' => 'always') for 1 .. 2;
    my $after2 = status();
    is_deeply delta(counters($after, 'chat'), counters($after2, 'chat')),
        { requests => 2, decisions => { header => 2 }, variants => { v2 => 2 } },
        'after reload: +2 counted on the kept counters';

    ok reload_nginx(undef), 'second reload' or diag $n->reload_error;
    is status()->{zone}{generation}, $gen + 2, 'second reload: zone generation +1 again';

    # a reload that nginx rejects does not touch the zone
    my $bad = http_conf() =~ s/canary         v2 5%;/canary         v2 99.9%;/r;
    isnt $bad, http_conf(), 'the bad config differs';
    ok !reload_nginx($bad), 'reload with weights over 100% is rejected';
    like $n->reload_error // '', qr/canary weights of aigov_model "chat" add up to 100\.15%, more than 100%/,
        'rejected reload: the weights message';
    my $st = status();
    is $st->{zone}{generation}, $gen + 2, 'rejected reload: generation unchanged';
    is_deeply counters($st, 'chat'), counters($after2, 'chat'), 'rejected reload: counters unchanged';

    # a different size is a different zone: counters restart
    ok reload_nginx(http_conf(zone => 'aigov:2m')), 'reload with the zone at 2m' or diag $n->reload_error;
    $st = status();
    is $st->{zone}{size}, 2 * 1048576, 'new zone: size 2m';
    is $st->{zone}{generation}, 1, 'new zone: generation 1';
    for my $m (qw(chat embed legacy dead)) {
        is model_of($st, $m)->{requests}, 0, "new zone: $m requests 0";
        is_deeply model_of($st, $m)->{decisions}, {}, "new zone: $m decisions empty";
        is_deeply [map { $_->{requests} } @{ model_of($st, $m)->{variants} }],
            [map { 0 } @{ model_of($st, $m)->{variants} }], "new zone: $m variant counters 0";
    }
    http_get('/chat/x', 'X-Canary' => 'never') for 1 .. 3;
    is_deeply counters(status(), 'chat'),
        { requests => 3, decisions => { header => 3 }, variants => { v1 => 3, v2 => 0, v3 => 0 } },
        'new zone: counts from zero';
}

error_log_clean_ok('no [error]/[crit]/[alert]/[emerg] in the error log', all => 1,
                   allow => [qr/canary weights of aigov_model "chat" add up to/,
                             qr/aigov_upstream "aigov" used in a location without "aigov_route"/]);
my @crash = grep { /exited on signal/ } error_log_lines(all => 1);
is_deeply \@crash, [], 'no worker crashed';

done_testing;
