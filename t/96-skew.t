#!/usr/bin/perl
# Version skew: the client's version from a header, the path or a variable;
# ranges route to variants (decision "pinned", over the canary split but
# not over a KServe path pin or a rollback); invalid and unsupported
# versions get a 400 problem listing the supported ranges; deprecated
# ranges get Deprecation / Sunset / Link; JSON responses are adapted for
# old clients (renames, removals) with a correct Content-Length, while
# streams, non-JSON, errors, HEAD and bodies over the bound pass untouched.
# Then every directive's nginx -t errors.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use AigovTest;
use File::Path qw(make_path);
use JSON::PP ();
use IO::Uncompress::Gunzip qw(gunzip $GunzipError);
use POSIX qw(strftime);

my $JSON = JSON::PP->new->utf8->canonical;

start_fixture(name => 'stable',    version => '1.4.2');
start_fixture(name => 'candidate', version => '2.0.0');

# static JSON served by a second server of the same nginx: big (2 MiB, with
# a Content-Length) and, under /c/, without one (sub_filter drops it), so
# that the bound is hit while the body streams in
my $www = tmp_dir() . '/www';
make_path("$www/f", "$www/c");
my $small = $JSON->encode({ keep => 1, drop => { x => [1, 2, 3] },
                            pad => 'p' x 20000, list => [ map { { i => $_, drop => $_ } } 1 .. 50 ] });
my $big = $JSON->encode({ keep => 1, drop => 2, pad => 'q' x (2 * 1024 * 1024) });
for my $dir ("$www/f", "$www/c") {
    for ([ 'small.json', $small ], [ 'big.json', $big ], [ 'page.html', "<html>{\"drop\":1}</html>" ],
         [ 'bad.json', '{"drop": 1, "keep": [1, 2' ], [ 'empty.json', '' ]) {
        open my $fh, '>', "$dir/$_->[0]" or die "$dir/$_->[0]: $!";
        print {$fh} $_->[1];
        close $fh;
    }
}

open my $rf, '>', tmp_dir() . '/rules.json' or die $!;
print {$rf} '{"default": {"status": 200, "response": {"label": "from the rules", "fallback": true}}}';
close $rf;
my $nowhere = fixture_port('nowhere');    # nothing listens there

my $HTTP = <<'EOF';
    upstream u_v1    { server 127.0.0.1:%%FIXTURE_stable%%;    keepalive 8; }
    upstream u_v2    { server 127.0.0.1:%%FIXTURE_candidate%%; keepalive 8; }
    upstream u_files { server 127.0.0.1:%%PORT_files%%; }
    upstream u_gone  { server 127.0.0.1:%%FIXTURE_nowhere%%; }

    types { application/json json; text/html html; }

    aigov_zone skew:1m;

    # the canary sends everything to v2: where v1 answers, a range chose it
    aigov_model chat {
        variant v1 u_v1 version=1.4.2 stable;
        variant v2 u_v2 version=2.0.0;
        canary  v2 100%;

        client_version  header=X-Client-Version;
        version_minimum 1.0;
        version_range   ">=2.0" v2;
        version_range   ">=1.0 <2.0" v1 deprecated=2026-01-01 sunset=2026-12-31
                        link=https://example.com/migrate
                        sunset_link=https://example.com/sunset;
        version_adapt   "<2.0" rename=choices[*].message.content:choices[*].text
                        remove=choices[*].message remove=usage.details;
        version_adapt   "<1.5" rename=usage.total_tokens:total;
    }

    # "*": deprecation headers, the usual routing
    aigov_model open {
        variant v1 u_v1 version=1.4.2 stable;
        variant v2 u_v2 version=2.0.0;
        canary  v2 100%;
        client_version header=X-Client-Version;
        version_range  "1.x" * deprecated=@1767225600;
        version_range  ">=2.0" *;
    }

    aigov_model gappy {
        variant v1 u_v1 version=1.4.2 stable;
        variant v2 u_v2 version=2.0.0;
        client_version $arg_cv;
        version_range  "1.x" v1;
        version_range  "3.x || >=5.0.0-rc.1" v2;
    }

    aigov_model dflt {
        variant v1 u_v1 version=1.4.2 stable;
        variant v2 u_v2 version=2.0.0;
        client_version header=X-Client-Version default=1.0;
        version_range  ">=2.0" v2;
        version_range  "<2.0" v1 sunset=2027-06-30T12:00:00Z;
    }

    aigov_model pathy {
        variant v1 u_v1 version=1.4.2 stable;
        variant v2 u_v2 version=2.0.0;
        client_version path;
        version_range  "^1" v1;
        version_range  "^2" v2;
    }

    aigov_model dry {
        variant v1 u_v1 version=1.4.2 stable;
        variant v2 u_v2 version=2.0.0;
        client_version    header=X-Client-Version;
        version_minimum   2.0;
        version_range     ">=2.0" v2;
        version_dry_run   on;
        version_log_level notice;
    }

    aigov_model loud {
        variant v1 u_v1 version=1.4.2 stable;
        client_version    header=X-Client-Version;
        version_minimum   1.0;
        version_log_level warn;
    }

    aigov_model rb {
        variant v1 u_v1 version=1.4.2 stable;
        variant v2 u_v2 version=2.0.0;
        rollback on;
        client_version header=X-Client-Version;
        version_range  ">=2.0" v2;
    }

    aigov_model errs {
        variant v1 u_v1 version=1.4.2 stable;
        client_version header=X-Client-Version;
        version_adapt  "*" rename=error.message:msg always;
        version_adapt  "*" remove=error.type;
    }

    aigov_model small {
        variant v1 u_v1 version=1.4.2 stable;
        client_version       header=X-Client-Version;
        version_adapt        "*" remove=usage;
        version_adapt_buffer 300;
    }

    aigov_model files {
        variant v1 u_files version=1 stable;
        client_version header=X-Client-Version;
        version_adapt  "*" remove=drop remove=list[*].drop;
    }

    # a rule's answer is the operator's: never adapted
    aigov_model fb {
        variant v1 u_gone version=1 stable;
        fallback_rules %%TMP%%/rules.json;
        client_version header=X-Client-Version;
        version_range  "*" * deprecated=2026-01-01;
        version_adapt  "*" remove=label;
    }

    aigov_model smallfiles {
        variant v1 u_files version=1 stable;
        client_version       header=X-Client-Version;
        version_adapt        "*" remove=drop;
        version_adapt_buffer 16k;
    }

    server {
        listen 127.0.0.1:%%PORT%%;
        proxy_http_version 1.1;
        proxy_set_header Connection "";

        add_header X-Decision       $aigov_decision always;
        add_header X-Client-Version $aigov_client_version always;
        add_header X-Version-Range  $aigov_version_range always;
        add_header X-Version-Status $aigov_version_status always;
        add_header X-Adapt          $aigov_version_adapt always;

        location /f/ {
            aigov_route model=$arg_m;
            proxy_pass http://$aigov_upstream;
        }

        location /c/ {
            aigov_route model=$arg_m;
            proxy_pass http://$aigov_upstream;
        }

        location /z/ {
            aigov_route model=$arg_m;
            proxy_pass http://$aigov_upstream;
        }

        location /g/ {
            rewrite ^/g/(.*)$ /f/$1 break;
            aigov_route model=$arg_m;
            proxy_pass http://$aigov_upstream;
            proxy_set_header Accept-Encoding "";
            gzip on;
            gzip_types application/json;
            gzip_min_length 1;
        }

        location /api/ {
            aigov_route model=pathy;
            proxy_pass http://$aigov_upstream;
        }

        location /v1/ {
            aigov_route openai;
            proxy_pass http://$aigov_upstream;
        }

        location /v2/models/ {
            aigov_route kserve;
            proxy_pass http://$aigov_upstream;
        }

        location = /status {
            aigov_status;
        }
    }

    server {
        listen 127.0.0.1:%%PORT_files%%;
        root %%TMP%%/www;

        location /c/ {
            sub_filter       'never-there' 'x';
            sub_filter_types application/json;
        }

        location /z/ {
            alias %%TMP%%/www/f/;
            gzip on;
            gzip_types application/json;
            gzip_min_length 1;
        }
    }
EOF

my $ng = start_nginx(nginx_conf($HTTP));

my $NO_RESPONSE = 0;
sub req {
    my (%a) = @_;
    my $r = http_req(timeout => 10, %a);
    die "nginx stopped answering (last: $r->{error})\n"
        if $r->{status} == 599 && ++$NO_RESPONSE >= 10;
    return $r;
}

sub cv { my ($v) = @_; return defined $v ? ('X-Client-Version' => $v) : () }

sub chat {
    my ($v, %o) = @_;
    return req(path => '/v1/chat/completions',
               body => { model => $o{model} // 'chat', messages => [ { role => 'user', content => 'hi' } ],
                         ($o{stream} ? (stream => JSON::PP::true) : ()) },
               headers => [ cv($v), @{ $o{headers} // [] } ]);
}

sub f {
    my ($model, $v, @h) = @_;
    return req(path => "/f/x?m=$model", headers => [ cv($v), @h ]);
}

sub route {
    my ($r) = @_;
    my $h = $r->{headers};
    return [ $r->{status}, $h->{'x-served-by'}, $h->{'x-decision'}, $h->{'x-version-range'},
             $h->{'x-version-status'} ];
}

sub length_ok {
    my ($r, $name) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    ok defined $r->{headers}{'content-length'} && !defined $r->{headers}{'transfer-encoding'}
       && $r->{headers}{'content-length'} == length($r->{body}),
       "$name: Content-Length is the length of the body"
        or diag explain [ $r->{headers}, length($r->{body}) ];
}

my $DEPRECATION = '@1767225600';
my $SUNSET = 'Thu, 31 Dec 2026 00:00:00 GMT';
my $LINK = '<https://example.com/migrate>; rel="deprecation", <https://example.com/sunset>; rel="sunset"';
is strftime('%a, %d %b %Y %H:%M:%S GMT', gmtime(1798675200)), $SUNSET, 'the Sunset date is right';

$ng->mark;

# --- routing per range ---------------------------------------------------------

is_deeply route(f('chat', '2.0')), [200, 'candidate', 'pinned', '>=2.0', 'ok'], '2.0 -> v2 by range';
is_deeply route(f('chat', 'v2.7.1')), [200, 'candidate', 'pinned', '>=2.0', 'ok'], 'v2.7.1 -> v2';
is_deeply route(f('chat', '1.4')), [200, 'stable', 'pinned', '>=1.0 <2.0', 'deprecated'],
    '1.4 -> v1 by range, over the canary split';
is_deeply route(f('chat', '1')), [200, 'stable', 'pinned', '>=1.0 <2.0', 'deprecated'], '1 is 1.0.0 -> v1';
is_deeply route(f('chat', '2.0.0-rc.1')), [200, 'candidate', 'pinned', '>=2.0', 'ok'],
    'a 2.0 pre-release talks 2.0: v2';
is_deeply route(f('chat', '1.9.9+build.7')), [200, 'stable', 'pinned', '>=1.0 <2.0', 'deprecated'],
    'build metadata is ignored';
is_deeply route(f('chat', undef)), [200, 'candidate', 'weight', undef, 'none'],
    'no version, no default: the usual routing (the canary)';
is_deeply route(f('chat', '')), [200, 'candidate', 'weight', undef, 'none'], 'an empty header is no version';
is f('chat', '1.4')->{headers}{'x-client-version'}, '1.4', '$aigov_client_version';

is_deeply route(f('open', '1.2')), [200, 'candidate', 'weight', '1.x', 'deprecated'],
    '"*": the usual routing, with deprecation';
is_deeply route(f('open', '2.2')), [200, 'candidate', 'weight', '>=2.0', 'ok'], '"*" again';

is_deeply route(req(path => '/f/x?m=gappy&cv=1.5')), [200, 'stable', 'pinned', '1.x', 'ok'], 'a variable: 1.x';
is_deeply route(req(path => '/f/x?m=gappy&cv=3.1')), [200, 'candidate', 'pinned', '3.x || >=5.0.0-rc.1', 'ok'],
    'a variable: 3.x';
is_deeply route(req(path => '/f/x?m=gappy&cv=5.0.0-rc.2')),
    [200, 'candidate', 'pinned', '3.x || >=5.0.0-rc.1', 'ok'], 'a pre-release bound';
is_deeply route(req(path => '/f/x?m=gappy')), [200, 'stable', 'stable', undef, 'none'],
    'an empty variable: no version';

is_deeply route(f('dflt', undef)), [200, 'stable', 'pinned', '<2.0', 'deprecated'], 'default=1.0 when none is sent';
is f('dflt', undef)->{headers}{'x-client-version'}, '1.0', '$aigov_client_version is the default';
is_deeply route(f('dflt', '2.1')), [200, 'candidate', 'pinned', '>=2.0', 'ok'], 'a sent version wins';

is_deeply route(req(path => '/api/v1.5/chat')), [200, 'stable', 'pinned', '^1', 'ok'], 'path /api/v1.5/';
is_deeply route(req(path => '/api/x/V2/chat')), [200, 'candidate', 'pinned', '^2', 'ok'], 'path .../V2/';
is_deeply route(req(path => '/api/chat')), [200, 'stable', 'stable', undef, 'none'], 'no version in the path';
is req(path => '/api/v1.5/chat')->{json}{path}, '/api/v1.5/chat', 'the path goes upstream unchanged';

my $infer = { inputs => [ { name => 'x', shape => [1], datatype => 'FP32', data => [1] } ] };
my $r = req(path => '/v2/models/chat/versions/1.4.2/infer', body => $infer, headers => [ cv('2.5') ]);
is_deeply route($r), [200, 'stable', 'pinned', '>=2.0', 'ok'], 'a KServe path pin wins over the range';
$r = req(path => '/v2/models/chat/infer', body => $infer, headers => [ cv('2.5') ]);
is_deeply route($r), [200, 'candidate', 'pinned', '>=2.0', 'ok'], 'KServe without a version: the range';
is_deeply route(f('rb', '2.5')), [200, 'stable', 'rollback', '>=2.0', 'ok'], 'a rollback wins over the range';

# --- invalid and unsupported versions ----------------------------------------

my $SUPPORTED = [ '>=2.0', '>=1.0 <2.0' ];
my $FORMAT = 'use MAJOR[.MINOR[.PATCH]], with an optional leading "v", -PRERELEASE and +BUILD, '
           . 'e.g. 1.4 or v2.0.1';

sub problem {
    my ($r) = @_;
    return [ $r->{status}, $r->{headers}{'content-type'}, $r->{json} ];
}

sub invalid {
    my ($shown, $why, %o) = @_;
    return [ 400, 'application/problem+json', {
        type => 'urn:aigov:problem:invalid-client-version', title => 'Invalid client version',
        status => 400, model => $o{model} // 'chat', client_version => $shown,
        detail => "client version \"$shown\" from " . ($o{from} // 'header X-Client-Version')
                . " is not a version ($why): $FORMAT",
        supported => $o{supported} // $SUPPORTED, (exists $o{minimum} ? () : (minimum => '1.0')) } ];
}

for my $case (
    [ 'abc',          'abc',          'expected a number, found "a"' ],
    [ '1.2.3.4',      '1.2.3.4',      'more than three numbers' ],
    [ '1.x',          '1.x',          'expected a number, found "x"' ],
    [ '1 .2',         '1 .2',         'unexpected "\\x20"' ],
    [ 'v',            'v',            'a number is missing' ],
    [ '1.2.3-',       '1.2.3-',       'an empty pre-release identifier' ],
    [ '-1',           '-1',           'expected a number, found "-"' ],
    [ '1234567890',   '1234567890',   'a number of more than 9 digits' ],
    [ "\xff\xfe1",    '??1',          'expected a number, found "\\xff"' ],
    [ "1.\x01",       '1.?',          'expected a number, found "\\x01"' ],
    [ '"1.0"',        '"1.0"',        'expected a number, found "\\x22"' ],
    [ '1' x 70,       ('1' x 64) . '...', 'longer than 64 bytes' ],
) {
    my ($sent, $shown, $why) = @$case;
    (my $name = $sent) =~ s/([^\x20-\x7e])/sprintf('\x%02x', ord $1)/ge;
    my $r = f('chat', $sent);
    is_deeply problem($r), invalid($shown, $why), "invalid version \"$name\": 400 problem";
    ok !defined $r->{headers}{'x-served-by'}, "invalid version \"$name\": the model is not called";
    is $r->{headers}{'x-version-status'}, 'invalid', "invalid version \"$name\": \$aigov_version_status";
}

is_deeply problem(f('chat', '0.9')), [ 400, 'application/problem+json', {
    type => 'urn:aigov:problem:unsupported-client-version', title => 'Unsupported client version',
    status => 400, model => 'chat', client_version => '0.9', minimum => '1.0', supported => $SUPPORTED,
    detail => 'client version "0.9" is below the minimum 1.0 of model "chat"' } ], 'below the minimum: 400';
is_deeply route(f('chat', '1.0.0-beta')), [200, 'stable', 'pinned', '>=1.0 <2.0', 'deprecated'],
    'a 1.0 pre-release is not below 1.0';
is f('chat', '0.99.99')->{headers}{'x-version-status'}, 'unsupported', '$aigov_version_status: unsupported';
ok !defined f('chat', '0.9')->{headers}{'deprecation'}, 'no Deprecation on a refusal';

$ng->mark;
is_deeply problem(req(path => '/f/x?m=gappy&cv=2.5')), [ 400, 'application/problem+json', {
    type => 'urn:aigov:problem:unsupported-client-version', title => 'Unsupported client version',
    status => 400, model => 'gappy', client_version => '2.5', supported => [ '1.x', '3.x || >=5.0.0-rc.1' ],
    detail => 'client version "2.5" is in no supported range of model "gappy"' } ],
    'in no range: 400 listing the ranges';
ok wait_for_log(qr/\[info\] .*aigov model "gappy": unsupported client version "2\.5": in no version_range,/),
    'refusals are logged at info by default';
is_deeply problem(req(path => '/f/x?m=gappy&cv=5.0.0-beta')), [ 400, 'application/problem+json', {
    type => 'urn:aigov:problem:unsupported-client-version', title => 'Unsupported client version',
    status => 400, model => 'gappy', client_version => '5.0.0-beta', supported => [ '1.x', '3.x || >=5.0.0-rc.1' ],
    detail => 'client version "5.0.0-beta" is in no supported range of model "gappy"' } ],
    'before the pre-release bound: 400';
is_deeply problem(req(path => '/f/x?m=gappy&cv=x%20y')),
    invalid('x%20y', 'expected a number, found "x"', model => 'gappy', from => '$arg_cv',
            supported => [ '1.x', '3.x || >=5.0.0-rc.1' ], minimum => undef),
    'a variable: invalid';
is_deeply problem(req(path => '/api/v1x/chat')),
    invalid('v1x', 'unexpected "x"', model => 'pathy', from => 'the path', supported => [ '^1', '^2' ],
            minimum => undef),
    'path /api/v1x/: invalid';

# dry run: refused versions pass, said so in the variable and the log
$ng->mark;
is_deeply route(f('dry', 'junk')), [200, 'stable', 'stable', undef, 'invalid'], 'dry run: invalid passes';
is_deeply route(f('dry', '1.0')), [200, 'stable', 'stable', undef, 'unsupported'],
    'dry run: below the minimum passes';
is_deeply route(f('dry', '2.0')), [200, 'candidate', 'pinned', '>=2.0', 'ok'], 'dry run: the ranges route';
ok wait_for_log(qr/\[notice\] .*aigov model "dry": invalid client version "junk" from header X-Client-Version: expected a number, found "j" \(dry run\)/),
    'dry run: the invalid version is logged at version_log_level';
ok wait_for_log(qr/\[notice\] .*aigov model "dry": unsupported client version "1\.0": below the minimum 2\.0 \(dry run\)/),
    'dry run: the unsupported version is logged';

is f('loud', '0.1')->{status}, 400, 'version_log_level warn: refused';
ok wait_for_log(qr/\[warn\] .*aigov model "loud": unsupported client version "0\.1": below the minimum 1\.0,/),
    'version_log_level warn: logged at warn';

# --- Deprecation, Sunset, Link ----------------------------------------------------

$r = f('chat', '1.4');
is_deeply [ @{ $r->{headers} }{qw(deprecation sunset link)} ], [ $DEPRECATION, $SUNSET, $LINK ],
    'deprecated range: Deprecation, Sunset, Link';
is scalar(grep { lc $_->[0] eq 'deprecation' } @{ $r->{header_lines} }), 1, 'one Deprecation header';
$r = f('chat', '2.0');
is_deeply [ @{ $r->{headers} }{qw(deprecation sunset link)} ], [ undef, undef, undef ],
    'supported range: none of them';
$r = f('open', '1.0.1');
is_deeply [ @{ $r->{headers} }{qw(deprecation sunset link)} ], [ '@1767225600', undef, undef ],
    'deprecated= alone: Deprecation only';
$r = f('dflt', undef);
is_deeply [ @{ $r->{headers} }{qw(deprecation sunset link)} ], [ undef, 'Wed, 30 Jun 2027 12:00:00 GMT', undef ],
    'sunset= alone: Sunset only, for the default version too';
$r = f('chat', '1.4', 'X-Fixture-Status' => '503');
is $r->{status}, 503, 'an error of the model';
is $r->{headers}{deprecation}, $DEPRECATION, 'deprecation headers on errors too';

# --- adaptation ---------------------------------------------------------------------

$ng->mark;
$r = chat('1.7');
is $r->{status}, 200, 'chat 1.7: 200';
is $r->{headers}{'x-served-by'}, 'stable', 'chat 1.7: served by v1';
is $r->{headers}{'x-adapt'}, 'adapted', 'chat 1.7: $aigov_version_adapt';
length_ok($r, 'chat 1.7');
my $c = $r->{json}{choices}[0];
is_deeply $c, { index => 0, finish_reason => 'stop', text => 'Hello from stable 1.4.2' },
    'chat 1.7: choices[*].message.content moved to text, message removed';
ok exists $r->{json}{usage}{total_tokens}, 'chat 1.7: "<1.5" does not apply';
is $r->{json}{served_by}, 'stable', 'chat 1.7: the rest is kept';
is $r->{json}{object}, 'chat.completion', 'chat 1.7: the rest is kept (object)';
like $r->{body}, qr/^\{"served_by":"stable","version":"1\.4\.2","method":"POST"/,
    'chat 1.7: members keep their order, compact';
ok !defined $r->{headers}{etag}, 'chat 1.7: no ETag';

$r = chat('1.2');
is $r->{headers}{'x-adapt'}, 'adapted', 'chat 1.2: adapted';
length_ok($r, 'chat 1.2');
like $r->{body}, qr/"usage":\{"prompt_tokens":\d+,"completion_tokens":\d+,"total":\d+\}/,
    'chat 1.2: both lines apply, the rename keeps its place';
is $r->{json}{choices}[0]{text}, 'Hello from stable 1.4.2', 'chat 1.2: text';

$r = chat('2.1');
is $r->{headers}{'x-served-by'}, 'candidate', 'chat 2.1: v2';
ok !defined $r->{headers}{'x-adapt'}, 'chat 2.1: no version_adapt matches';
is $r->{json}{choices}[0]{message}{content}, 'Hello from candidate 2.0.0', 'chat 2.1: untouched';
like $r->{body}, qr/^\{"served_by": "candidate", "version": "2\.0\.0"/, 'chat 2.1: the bytes as sent';

$r = chat(undef);
ok !defined $r->{headers}{'x-adapt'}, 'no version: no adaptation';

# many on one keep-alive connection, sizes differ
my %seen;
for my $i (1 .. 20) {
    my $r = req(path => '/v1/chat/completions', headers => [ cv('1.' . ($i % 10)) ],
                body => { model => 'chat', messages => [ { role => 'user', content => 'x' x ($i * 37) } ] });
    $seen{ $r->{status} == 200 && $r->{headers}{'x-adapt'} eq 'adapted'
           && $r->{headers}{'content-length'} == length($r->{body})
           && $r->{json}{choices}[0]{text} ? 'ok' : 'bad' }++;
}
is_deeply \%seen, { ok => 20 }, '20 adapted answers on a keep-alive connection';

# streaming: untouched, chunk by chunk
$r = chat('1.2', stream => 1, headers => [ 'X-Fixture-Stream' => 3, 'X-Fixture-Stream-Interval' => 150 ]);
is $r->{status}, 200, 'stream: 200';
like $r->{headers}{'content-type'}, qr{^text/event-stream}, 'stream: event-stream';
is $r->{headers}{'x-adapt'}, 'stream', 'stream: $aigov_version_adapt is "stream"';
is $r->{headers}{deprecation}, $DEPRECATION, 'stream: still deprecated';
my @ev = sse_events($r->{body});
is scalar(@ev), 4, 'stream: 3 events and [DONE]';
is $ev[-1], '[DONE]', 'stream: [DONE] last';
is eval { $JSON->decode($ev[0])->{choices}[0]{delta}{content} }, 'tok0 ', 'stream: events unchanged';
ok scalar(@{ $r->{chunks} // [] }) >= 2, 'stream: still chunked (not buffered into one)';

# garbage: not JSON, sent as it came
$r = f('chat', '1.2', 'X-Fixture-Garbage' => 1);
is_deeply [ $r->{status}, $r->{body}, $r->{headers}{'x-adapt'} ],
    [ 200, '<html>this is {not json at all', 'not_json' ], 'garbage body: untouched';
length_ok($r, 'garbage body');
ok wait_for_log(qr/\[info\] .*aigov model "chat": response of 30 bytes is not JSON: sent unchanged/),
    'garbage body: logged at info';

# errors: only for "always"
$r = f('chat', '1.2', 'X-Fixture-Status' => 500);
is_deeply [ $r->{status}, $r->{headers}{'x-adapt'}, $r->{json}{error}{type} ], [ 500, 'skipped', 'fixture_error' ],
    'a 500 is not adapted without "always"';
$r = f('errs', '1.0', 'X-Fixture-Status' => 500);
is_deeply [ $r->{status}, $r->{headers}{'x-adapt'}, $r->{json}{error} ],
    [ 500, 'adapted', { msg => 'fixture stable answered status 500', type => 'fixture_error', code => 500 } ],
    'a 500 is adapted by the "always" line only';
length_ok($r, 'adapted 500');
$r = f('errs', '1.0');
is_deeply [ $r->{status}, $r->{headers}{'x-adapt'} ], [ 200, 'unchanged' ], 'nothing to change: unchanged';
like $r->{body}, qr/^\{"served_by": "stable"/, 'unchanged: the bytes as sent';
length_ok($r, 'unchanged');

# HEAD
$r = req(method => 'HEAD', path => '/f/x?m=chat', headers => [ cv('1.2') ]);
is_deeply [ $r->{status}, $r->{headers}{'x-adapt'} ], [ 200, 'skipped' ], 'HEAD: skipped';

# the bound
$r = chat('1.0', model => 'small');
is_deeply [ $r->{status}, $r->{headers}{'x-adapt'} ], [ 200, 'too_large' ],
    'over version_adapt_buffer (Content-Length): passed';
ok exists $r->{json}{usage}, 'over the bound: untouched';
length_ok($r, 'over the bound');
ok wait_for_log(qr/\[info\] .*aigov model "small": response of \d+ bytes is over version_adapt_buffer 300: sent unchanged/),
    'over the bound: logged at info';

$r = req(path => '/f/small.json?m=files', headers => [ cv('1') ]);
is_deeply [ $r->{status}, $r->{headers}{'x-adapt'} ], [ 200, 'adapted' ], 'static JSON: adapted';
is_deeply $r->{json}, { keep => 1, pad => 'p' x 20000, list => [ map { { i => $_ } } 1 .. 50 ] },
    'static JSON: drop and list[*].drop removed';
length_ok($r, 'static JSON');

$r = req(path => '/c/small.json?m=files', headers => [ cv('1') ]);
is_deeply [ $r->{status}, $r->{headers}{'x-adapt'} ], [ 200, 'adapted' ],
    'without Content-Length, in many buffers: adapted';
is_deeply $r->{json}, { keep => 1, pad => 'p' x 20000, list => [ map { { i => $_ } } 1 .. 50 ] },
    'without Content-Length: the right body';
length_ok($r, 'without Content-Length');

$r = req(path => '/f/big.json?m=files', headers => [ cv('1') ]);
is_deeply [ $r->{status}, $r->{headers}{'x-adapt'}, length $r->{body} ], [ 200, 'too_large', length $big ],
    '2 MiB with Content-Length: passed';
ok $r->{body} eq $big, '2 MiB: byte for byte';

$ng->mark;
$r = req(path => '/c/big.json?m=files', headers => [ cv('1') ]);
is_deeply [ $r->{status}, $r->{headers}{'x-adapt'}, length $r->{body} ], [ 200, 'too_large', length $big ],
    '2 MiB without Content-Length: over the bound midway, passed';
ok $r->{body} eq $big, '2 MiB midway: byte for byte';
ok wait_for_log(qr/\[info\] .*aigov model "files": response over version_adapt_buffer 1048576 bytes: sent unchanged/),
    'over the bound midway: logged at info';

$r = req(path => '/c/small.json?m=smallfiles', headers => [ cv('1') ]);
is_deeply [ $r->{status}, $r->{headers}{'x-adapt'} ], [ 200, 'too_large' ], '16k bound, 21k body: passed';
ok $r->{body} eq $small, '16k bound: byte for byte';

$r = req(path => '/c/bad.json?m=files', headers => [ cv('1') ]);
is_deeply [ $r->{status}, $r->{body}, $r->{headers}{'x-adapt'} ], [ 200, '{"drop": 1, "keep": [1, 2', 'not_json' ],
    'truncated JSON: untouched';
$r = req(path => '/c/empty.json?m=files', headers => [ cv('1') ]);
is_deeply [ $r->{status}, $r->{body}, $r->{headers}{'x-adapt'} ], [ 200, '', 'not_json' ], 'empty body: untouched';
$r = req(path => '/f/page.html?m=files', headers => [ cv('1') ]);
is_deeply [ $r->{status}, $r->{body}, $r->{headers}{'x-adapt'} ], [ 200, '<html>{"drop":1}</html>', 'skipped' ],
    'text/html: untouched';

# nginx's gzip comes after the adaptation; a compressed upstream passes
$r = req(path => '/g/small.json?m=files', headers => [ cv('1'), 'Accept-Encoding' => 'gzip' ]);
is_deeply [ $r->{status}, $r->{headers}{'x-adapt'}, $r->{headers}{'content-encoding'} ], [ 200, 'adapted', 'gzip' ],
    'gzip in this location: adapted, then compressed';
my $plain;
gunzip(\$r->{body} => \$plain) or diag "gunzip: $GunzipError";
is_deeply eval { $JSON->decode($plain // '') },
    { keep => 1, pad => 'p' x 20000, list => [ map { { i => $_ } } 1 .. 50 ] }, 'gzip: the adapted body inside';

$r = req(path => '/z/small.json?m=files', headers => [ cv('1'), 'Accept-Encoding' => 'gzip' ]);
is_deeply [ $r->{status}, $r->{headers}{'x-adapt'}, $r->{headers}{'content-encoding'} ], [ 200, 'skipped', 'gzip' ],
    'a compressed upstream response: skipped';
$plain = undef;
gunzip(\$r->{body} => \$plain) or diag "gunzip: $GunzipError";
ok defined $plain && $plain eq $small, 'a compressed upstream response: untouched';

# a fallback rule's answer: deprecated, not adapted
$r = f('fb', '1.0');
is_deeply [ $r->{status}, $r->{headers}{'x-adapt'}, $r->{headers}{deprecation}, $r->{headers}{'x-aigov-fallback'},
            $r->{json} ],
    [ 200, 'skipped', $DEPRECATION, 'upstream_error', { label => 'from the rules', fallback => JSON::PP::true } ],
    'an answer from the fallback rules: skipped';
length_ok($r, 'fallback rules answer');

# a refusal after the body was read keeps the connection usable
$r = chat('abc');
is_deeply [ $r->{status}, $r->{json}{type} ], [ 400, 'urn:aigov:problem:invalid-client-version' ],
    'POST with an invalid version: 400';
is chat('1.2')->{status}, 200, 'and the next request on the connection works';

# --- counters ---------------------------------------------------------------------

my $s = req(path => '/status');
my ($m) = grep { $_->{name} eq 'chat' } @{ $s->{json}{models} // [] };
my $vp = $m->{version_policy} // {};
is_deeply [ @$vp{qw(client_version minimum adapt_buffer dry_run)} ],
    [ 'header X-Client-Version', '1.0', 1048576, JSON::PP::false ], 'status: the policy';
is_deeply $vp->{ranges}[1], { range => '>=1.0 <2.0', variant => 'v1', deprecated => '2026-01-01T00:00:00Z',
                              sunset => '2026-12-31T00:00:00Z' }, 'status: a range';
is_deeply $vp->{adapt}[1], { range => '<1.5', ops => [ 'rename=usage.total_tokens:total' ],
                             always => JSON::PP::false }, 'status: an adapt line';
my $k = $vp->{counters} // {};
ok $k->{ok} >= 5 && $k->{deprecated} >= 10 && $k->{invalid} >= 12 && $k->{unsupported} >= 3
   && $k->{none} >= 2 && $k->{adapted} >= 20 && $k->{stream} >= 1 && $k->{not_json} >= 1
   && $k->{skipped} >= 2, 'status: the counters count'
    or diag explain $k;

my @allow = (qr/connect\(\) failed \(111: Connection refused\) while connecting to upstream/);
$ng->error_log_clean_ok('error log clean', allow => \@allow);
error_log_clean_ok('no errors since the start', all => 1, allow => \@allow);

# --- a reload keeps the counters ------------------------------------------------------

my $before = $k->{invalid};
ok $ng->reload, 'reload';
$s = req(path => '/status');
($m) = grep { $_->{name} eq 'chat' } @{ $s->{json}{models} // [] };
is $m->{version_policy}{counters}{invalid}, $before, 'the counters survive a reload';
is f('chat', 'abc')->{status}, 400, 'after the reload: still refused';

# --- nginx -t ---------------------------------------------------------------------------

sub conf_with {
    my (@lines) = @_;
    my $model = join "\n", '    aigov_model chat {', '        variant v1 u1 version=1.4.2 stable;',
        '        variant v2 u2 version=2.0.0;', (map { "        $_" } @lines), '    }';
    return nginx_conf(<<"EOF", name => 'conf');
    upstream u1 { server 127.0.0.1:9001; }
    upstream u2 { server 127.0.0.1:9002; }
    aigov_zone z:1m;
$model
    server {
        listen 127.0.0.1:%%PORT_conf%%;
        location /v1/ { aigov_route openai; proxy_pass http://\$aigov_upstream; }
    }
EOF
}

my @BAD = (
    [ [ 'client_version foo;' ],
      'invalid source "foo" in "client_version": use "header=NAME", "path" or "$variable"' ],
    [ [ 'client_version header=;' ], 'empty header name' ],
    [ [ 'client_version header=X:Y;' ], 'invalid header name "X:Y"' ],
    [ [ 'client_version header=X-V default=abc;' ],
      'invalid default version "abc" in "client_version": expected a number, found "a"' ],
    [ [ 'client_version header=X-V default=1.x;' ],
      'invalid default version "1.x" in "client_version": expected a number, found "x"' ],
    [ [ 'client_version header=X-V bogus=1;' ], 'invalid parameter "bogus=1" in "client_version"' ],
    [ [ 'client_version path;', 'client_version path;' ], '"client_version" directive is duplicate' ],
    [ [ 'client_version;' ], 'invalid number of arguments in "client_version" directive' ],
    [ [ 'version_range ">=1.0" v1;' ],
      'aigov_model "chat": "version_range", "version_minimum", "version_adapt" and the other version '
      . 'directives need "client_version"' ],
    [ [ 'version_dry_run on;' ], 'aigov_model "chat": "version_range", "version_minimum", "version_adapt" and '
      . 'the other version directives need "client_version"' ],
    [ [ 'client_version path;', 'version_range ">=1.0 <<2" v1;' ],
      'invalid version range ">=1.0 <<2" in "version_range": "<2": expected a number, found "<"' ],
    [ [ 'client_version path;', 'version_range "" v1;' ],
      'invalid version range "" in "version_range": empty range' ],
    [ [ 'client_version path;', 'version_range "1.0 - 2.0" v1;' ],
      'invalid version range "1.0 - 2.0" in "version_range": hyphen ranges are not supported: write ">=1.0 <=2.0" '
      . 'for "1.0 - 2.0"' ],
    [ [ 'client_version path;', 'version_range "<*" v1;' ],
      'invalid version range "<*" in "version_range": "<*" matches no version' ],
    [ [ 'client_version path;', 'version_range "1 | 2" v1;' ],
      'invalid version range "1 | 2" in "version_range": "|" alone: alternatives are separated by "||"' ],
    [ [ 'client_version path;', 'version_range ">=1.0" v9;' ],
      'unknown variant "v9" in aigov_model "chat": declare it with "variant" first' ],
    [ [ 'client_version path;', 'version_range ">=1.0";' ],
      'invalid number of arguments in "version_range" directive' ],
    [ [ 'client_version path;', 'version_range ">=1.0" v1 deprecated=2026-13-01;' ],
      'invalid date "deprecated=2026-13-01" in "version_range": use YYYY-MM-DD, YYYY-MM-DDTHH:MM:SSZ or @SECONDS' ],
    [ [ 'client_version path;', 'version_range ">=1.0" v1 sunset=tomorrow;' ],
      'invalid date "sunset=tomorrow" in "version_range": use YYYY-MM-DD, YYYY-MM-DDTHH:MM:SSZ or @SECONDS' ],
    [ [ 'client_version path;', 'version_range ">=1.0" v1 deprecated=2026-01-01 deprecated=2026-02-01;' ],
      'duplicate parameter "deprecated=2026-02-01" in "version_range"' ],
    [ [ 'client_version path;', 'version_range ">=1.0" v1 link=https://x.example/;' ],
      '"version_range" directive "link=" needs "deprecated="' ],
    [ [ 'client_version path;', 'version_range ">=1.0" v1 deprecated=2026-01-01 sunset_link=/s;' ],
      '"version_range" directive "sunset_link=" needs "sunset="' ],
    [ [ 'client_version path;', 'version_range ">=1.0" v1 deprecated=2026-01-01 sunset=2025-12-31;' ],
      '"version_range" directive has a sunset before its deprecation date' ],
    [ [ 'client_version path;', 'version_range ">=1.0" v1 deprecated=2026-01-01 link=ftp://x.example/;' ],
      'invalid link "link=ftp://x.example/" in "version_range": use an http:// or https:// URL or a path starting '
      . 'with "/", without spaces, quotes, "<" or ">"' ],
    [ [ 'client_version path;', 'version_range ">=1.0" v1 deprecated=2026-01-01 "link=https://x/a>b";' ],
      'invalid link "link=https://x/a>b" in "version_range": use an http:// or https:// URL or a path starting '
      . 'with "/", without spaces, quotes, "<" or ">"' ],
    [ [ 'client_version path;', 'version_range ">=1.0" v1 foo=bar;' ],
      'invalid parameter "foo=bar" in "version_range": use deprecated=, sunset=, link= or sunset_link=' ],
    [ [ 'client_version path;', map({ "version_range \"=$_\" v1;" } 1 .. 33) ],
      'too many "version_range" lines in aigov_model "chat", at most 32' ],
    [ [ 'client_version path;', 'version_minimum abc;' ],
      'invalid version "abc" in "version_minimum": expected a number, found "a"' ],
    [ [ 'client_version path;', 'version_minimum 1.0;', 'version_minimum 2.0;' ],
      '"version_minimum" directive is duplicate' ],
    [ [ 'client_version path;', 'version_adapt "<2.0";' ],
      'invalid number of arguments in "version_adapt" directive' ],
    [ [ 'client_version path;', 'version_adapt "<2.0" always;' ],
      '"version_adapt" directive needs at least one rename= or remove=' ],
    [ [ 'client_version path;', 'version_adapt "<2.0" remove=a always always;' ],
      'duplicate parameter "always" in "version_adapt"' ],
    [ [ 'client_version path;', 'version_adapt "<2.0" rename=a.b;' ],
      'invalid "rename=a.b" in "version_adapt": rename needs FROM:TO' ],
    [ [ 'client_version path;', 'version_adapt "<2.0" rename=a.b:a.b;' ],
      'invalid "rename=a.b:a.b" in "version_adapt": renames "a.b" to itself' ],
    [ [ 'client_version path;', 'version_adapt "<2.0" set=a:b;' ],
      'invalid parameter "set=a:b" in "version_adapt": use rename=FROM:TO, remove=PATH or always' ],
    [ [ 'client_version path;', 'version_adapt "<2.0" remove=a[0];' ],
      'invalid "remove=a[0]" in "version_adapt": path "a[0]" must end in a key' ],
    [ [ 'client_version path;', 'version_adapt "<2.0" remove=a..b;' ],
      'invalid "remove=a..b" in "version_adapt": invalid path "a..b": "." in a key: use A-Z a-z 0-9 _ -' ],
    [ [ 'client_version path;', 'version_adapt "<2.0" rename=a[*].b:c.d;' ],
      'invalid "rename=a[*].b:c.d" in "version_adapt": a "[*]" must be among the leading steps FROM and TO share' ],
    [ [ 'client_version path;', 'version_adapt "<<" remove=a;' ],
      'invalid version range "<<" in "version_adapt": "<": expected a number, found "<"' ],
    [ [ 'client_version path;', 'version_adapt "*" ' . join(' ', map { "remove=k$_" } 1 .. 17) . ';' ],
      'too many operations in "version_adapt", at most 16' ],
    [ [ 'client_version path;', map({ "version_adapt \"=$_\" remove=a;" } 1 .. 33) ],
      'too many "version_adapt" lines in aigov_model "chat", at most 32' ],
    [ [ 'client_version path;', 'version_adapt_buffer 0;' ],
      'invalid size "0" in "version_adapt_buffer": use 1 to 64m' ],
    [ [ 'client_version path;', 'version_adapt_buffer 65m;' ],
      'invalid size "65m" in "version_adapt_buffer": use 1 to 64m' ],
    [ [ 'client_version path;', 'version_adapt_buffer lots;' ],
      'invalid size "lots" in "version_adapt_buffer": use 1 to 64m' ],
    [ [ 'client_version path;', 'version_adapt_buffer 1k;', 'version_adapt_buffer 2k;' ],
      '"version_adapt_buffer" directive is duplicate' ],
    [ [ 'client_version path;', 'version_log_level debug;' ], 'invalid value "debug"' ],
    [ [ 'client_version path;', 'version_dry_run maybe;' ],
      'invalid value "maybe" in "version_dry_run" directive, it must be "on" or "off"' ],
);

for my $case (@BAD) {
    my ($lines, $msg) = @$case;
    my ($ok, $out) = nginx_t(conf_with(@$lines));
    my $name = join(' ', @$lines);
    $name = substr($name, 0, 90) . '...' if length $name > 90;
    ok !$ok, "nginx -t fails: $name";
    like $out, qr/\[emerg\] \d+#\d+: \Q$msg\E(?: in \S+:\d+)?\n/, "nginx -t says: $msg" or diag $out;
}

for my $lines (
    [ 'client_version header=X-Client-Version default=v1.0.0-rc.1+b;', 'version_minimum 0.1;',
      'version_range "^1.2 || ~2.3.4, >=3 <4" v1 deprecated=2026-01-01T10:00:00Z sunset=@1830000000 '
      . 'link=/docs/migrate sunset_link=http://x.example/s;',
      'version_range "*" *;', 'version_adapt ">=0" rename=$.a[-1].b:c remove=[*].x always;',
      'version_adapt_buffer 64m;', 'version_dry_run off;', 'version_log_level error;' ],
    [ 'client_version $http_x_v$arg_v;' ],
) {
    my ($ok, $out) = nginx_t(conf_with(@$lines));
    ok $ok, 'nginx -t passes: ' . substr(join(' ', @$lines), 0, 80) or diag $out;
}

done_testing;
