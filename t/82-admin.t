#!/usr/bin/perl
# The admin API (aigov_admin tokens=FILE): tokens file and location checked
# by nginx -t; bearer authentication and the read / write roles; the read
# documents (models, one model, audit); every change (kill, unkill,
# rollback, unrollback, weights, clear-weights, active, clear-active) with
# its response, its effect on routed requests on every worker, its Redis
# hash and its audit record (error log [notice] and the Redis stream); every
# error as an application/problem+json document that changes nothing.  Runs
# against two nginx instances with the same models: "main" with aigov_redis
# (a real redis-server), "solo" without.  Then the Redis faults: a change
# made while Redis is SIGSTOPped answers at once, applies here and reaches
# Redis when it is back; a client that goes away while its change waits on a
# stopped Redis does not crash a worker; concurrent changes to different
# fields of one model are all kept.  Keep-alive after a change, debug-level
# logging with aigov_redis, and no connection left open at a graceful stop.
#
# Every case asserts the status, the content type, the problem type (for
# errors) and that the error log has no [error]/[crit]/[alert]/[emerg].
# Admin requests go on fresh connections (a change answered through Redis
# leaves its connection unusable: see the keep-alive subtest).

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use AigovTest;
use IO::Socket::INET;
use JSON::PP ();
use Sys::Hostname ();
use POSIX ();
use Time::HiRes qw(time sleep);

my $JSON = JSON::PP->new->utf8->canonical;
my $HOST = lc Sys::Hostname::hostname();    # nginx: gethostname(), lower-cased

start_fixture(name => 'stable',    version => '1.0.0');
start_fixture(name => 'candidate', version => '2.0.0');
start_fixture(name => 'third',     version => '3.0.0');
my $RPORT = start_redis();

# --- tokens --------------------------------------------------------------------

my %TOKEN = (
    write => 'w-alice-0123456789abcdef',
    read  => 'r-bob-fedcba9876543210',
    write2 => 'w-carol-00112233445566778899',
);
my $TOKENS = tmp_dir() . '/admin-tokens';
spew($TOKENS, <<"EOF", 0600);
# NAME  ROLE   TOKEN
alice   write  $TOKEN{write}

bob	read	$TOKEN{read}
   # indented comment
carol write $TOKEN{write2}   # trailing comment
EOF

sub spew {
    my ($file, $text, $mode) = @_;
    open(my $fh, '>', $file) or die "$file: $!";
    binmode $fh;
    print {$fh} $text;
    close $fh;
    chmod(($mode // 0600), $file);
    return $file;
}

# --- configs -------------------------------------------------------------------

sub http_body {
    my (%o) = @_;
    my $redis = $o{redis} ? 'aigov_redis 127.0.0.1:%%REDIS_PORT%% sync_interval=300ms;' : '';
    return <<"EOF";
    upstream u_stable    { server 127.0.0.1:%%FIXTURE_stable%%;    keepalive 8; }
    upstream u_candidate { server 127.0.0.1:%%FIXTURE_candidate%%; keepalive 8; }
    upstream u_third     { server 127.0.0.1:%%FIXTURE_third%%;     keepalive 8; }

    aigov_zone admin_t:1m;
    $redis

    aigov_model chat {
        variant v1 u_stable    version=1.0.0 stable;
        variant v2 u_candidate version=2.0.0;
        variant v3 u_third     version=3.0.0;
        canary  v2 0%;
        canary  v3 0%;
    }

    aigov_model bg {
        variant blue  u_stable    version=1.0.0 stable;
        variant green u_candidate version=2.0.0;
        active  blue;
        preview green;
    }

    # emergencies in the config: the admin API cannot undo them
    aigov_model frozen {
        variant v1 u_stable    version=1.0.0 stable;
        variant v2 u_candidate version=2.0.0;
        canary  v2 50%;
        kill_switch on retry_after=7s;
    }

    aigov_model pinned {
        variant v1 u_stable    version=1.0.0 stable;
        variant v2 u_candidate version=2.0.0;
        canary  v2 100%;
        rollback on;
    }

    server {
        listen 127.0.0.1:%%PORT%%;
        proxy_http_version 1.1;
        proxy_set_header Connection "";

        location /aigov/ { aigov_admin tokens=$TOKENS; }

        # bodies over 16k kept in memory: the handler's own size check
        location /aigov-big/ {
            client_body_buffer_size 64k;
            aigov_admin tokens=$TOKENS;
        }

        location /chat   { aigov_route model=chat;   proxy_pass http://\$aigov_upstream; }
        location /bg     { aigov_route model=bg;     proxy_pass http://\$aigov_upstream; }
        location /frozen { aigov_route model=frozen; proxy_pass http://\$aigov_upstream; }
        location /pinned { aigov_route model=pinned; proxy_pass http://\$aigov_upstream; }
    }
EOF
}

my $MAIN = start_nginx(nginx_conf(http_body(redis => 1), name => 'main'));
my $SOLO = start_nginx(nginx_conf(http_body(redis => 0), name => 'solo'));
my @MODELS = qw(chat bg frozen pinned);

ok wait_for(sub { redis_connected($MAIN) }, timeout => 5), 'main: connected to redis';

# --- helpers -------------------------------------------------------------------

# One admin request, on a fresh connection (see "keep-alive" below for why).
#   nginx => $n, method, path (below /aigov/), auth => 'write' | 'read' |
#   undef (no header) | a full Authorization value, body => ref (JSON) |
#   string (sent as is, Content-Type application/json), headers => {...}
sub admin {
    my (%a) = @_;
    my $n = $a{nginx} // $MAIN;
    my %h = %{ $a{headers} // {} };
    my $auth = exists $a{auth} ? $a{auth} : 'write';
    if (defined $auth) {
        $h{Authorization} = $TOKEN{$auth} ? "Bearer $TOKEN{$auth}" : $auth;
    }
    my $body = $a{body};
    if (defined $body) {
        $body = $JSON->encode($body) if ref $body;
        $h{'Content-Type'} //= 'application/json';
    }
    my $prefix = $a{prefix} // '/aigov/';
    return $n->req(method => $a{method} // 'GET', path => $prefix . ($a{path} // ''),
                   headers => \%h, (defined $body ? (body => $body) : ()),
                   (map { exists $a{$_} ? ($_ => $a{$_}) : () } qw(chunks content_length)),
                   fresh => 1, timeout => $a{timeout} // 5);
}

sub model_doc {
    my ($n, $m) = @_;
    my $r = admin(nginx => $n, path => "models/$m", auth => 'read');
    return $r->{status} == 200 ? $r->{json} : undef;
}

sub all_versions {
    my ($n) = @_;
    my $r = admin(nginx => $n, path => 'models', auth => 'read');
    return undef unless $r->{status} == 200 && $r->{json};
    return { map { $_->{name} => $_->{runtime}{version} } @{ $r->{json}{models} } };
}

sub redis_connected {
    my ($n) = @_;
    my $r = admin(nginx => $n, path => 'models', auth => 'read');
    return $r->{json} && $r->{json}{redis}{connected};
}

# connections nginx has open to redis (every worker's command connection
# and worker 0's subscriber: 3 with 2 workers)
sub nginx_redis_clients {
    my $list = redis_cmd($RPORT, 'CLIENT', 'LIST');
    return scalar grep { /\S/ && !/ cmd=client\|list\b/ } split /\n/, (ref $list ? '' : $list // '');
}

# every worker of main has its command connection up, so that a change
# goes to redis (and waits for it) rather than straight to the zone
sub all_workers_connected {
    my $ok = wait_for(sub { redis_connected($MAIN) && nginx_redis_clients() >= 3 },
                      timeout => 15, interval => 0.1);
    sleep 0.2;
    return $ok;
}

sub redis_hash {
    my ($m) = @_;
    my $a = redis_cmd($RPORT, 'HGETALL', "aigov:model:$m");
    return ref $a eq 'ARRAY' ? { @$a } : {};
}

# Where a routed request goes: fixture name, or "503:<problem type>".
sub route {
    my ($n, $path) = @_;
    my $r = $n->req(method => 'GET', path => $path, fresh => 1, timeout => 5);
    return $r->{headers}{'x-served-by'} // '?' if $r->{status} == 200;
    return "$r->{status}:" . (($r->{json} // {})->{type} // '') =~ s/^urn:aigov:problem://r;
}

# $n routes $path to $want on every one of 12 fresh connections (so on
# both workers, most likely)
sub routes_ok {
    my ($n, $path, $want, $name) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    my %seen;
    $seen{ route($n, $path) }++ for 1 .. 12;
    is_deeply \%seen, { $want => 12 }, $name // "$path -> $want";
}

# a value at a dotted path ("runtime.kill") of a decoded document
sub dig {
    my ($doc, $path) = @_;
    for my $k (split /\./, $path) {
        return undef unless ref $doc eq 'HASH';
        $doc = $doc->{$k};
    }
    return $doc;
}

sub is_value {
    my ($got, $want, $name) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    if (ref $want eq 'JSON::PP::Boolean') {
        ok JSON::PP::is_bool($got) && (!!$got == !!$want), "$name is " . ($want ? 'true' : 'false')
            or diag('got ' . (defined $got ? (ref $got ? $JSON->encode([$got]) : $got) : 'undef'));
    } elsif (ref $want) {
        is_deeply $got, $want, $name;
    } else {
        is $got, $want, $name;
    }
}

# An error response: status, problem+json, type, title, status field, detail.
sub problem_ok {
    my ($r, $status, $type, $name) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    is $r->{status}, $status, "$name: status $status"
        or diag("body: " . substr($r->{body} // '', 0, 300) . ($r->{error} ? " error: $r->{error}" : ''));
    like $r->{headers}{'content-type'} // '', qr{^application/problem\+json\b}, "$name: application/problem+json";
    my $j = $r->{json} // {};
    if (ref $type eq 'Regexp') {
        like $j->{type} // '', qr/^urn:aigov:problem:$type$/, "$name: type urn:aigov:problem:$type";
    } else {
        is $j->{type}, "urn:aigov:problem:$type", "$name: type urn:aigov:problem:$type";
    }
    is $j->{status}, $status, "$name: \"status\": $status in the body";
    ok defined $j->{title} && $j->{title} =~ /\S/, "$name: a title";
    ok defined $j->{detail} && !ref $j->{detail} && $j->{detail} =~ /\S/, "$name: a detail";
}

sub json_ok {
    my ($r, $name) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    is $r->{status}, 200, "$name: status 200"
        or diag("body: " . substr($r->{body} // '', 0, 400) . ($r->{error} ? " error: $r->{error}" : ''));
    like $r->{headers}{'content-type'} // '', qr{^application/json\b}, "$name: application/json";
    ok ref $r->{json} eq 'HASH', "$name: a JSON object" or diag($r->{json_error} // '');
}

sub audit_lines {
    my ($n) = @_;
    return grep { /\[notice\].*aigov audit: / } $n->error_log_lines;
}

# --- 1. nginx -t: the tokens file and the directive ---------------------------

my $TOKN = 0;
sub tokfile { spew(tmp_dir() . '/tok-' . ++$TOKN, $_[0], $_[1] // 0600) }

sub t_conf {
    my ($location) = @_;
    return nginx_conf(<<"EOF", name => 'conft');
    aigov_zone conft:1m;
    aigov_model m { variant v1 127.0.0.1:1 stable; }
    server {
        listen 127.0.0.1:%%PORT%%;
        $location
    }
EOF
}

my $T16 = 'abcdefghijklmnop';           # exactly 16 characters
my @CONF_CASES = (
    # name, tokens file text (undef: no file), location, error regex (undef: ok)
    ['minimal file',                  "a write $T16\n",                         undef, undef],
    ['comments, blank lines, tabs, CRLF, no final newline',
        "# c\n\n  \t\n\ta\tread\t${T16}x\r\n   # c2\nb write ${T16}y # note\r\nc read ${T16}z", undef, undef],
    ['missing file',                  undef, undef, qr/\[emerg\].*cannot open aigov_admin tokens file ".*nonexistent"/],
    ['bad role',                      "# x\n\na admin $T16\n", undef,
        qr/\[emerg\].*invalid role "admin" in ".*" line 3: use "read" or "write"/],
    ['role is case-sensitive',        "a Write $T16\n", undef, qr/\[emerg\].*invalid role "Write"/],
    ['token of 15 characters',        "a write " . substr($T16, 1) . "\n", undef,
        qr/\[emerg\].*token "a" in ".*" line 1 is shorter than 16 characters/],
    ['duplicate name',                "a write ${T16}1\nb read ${T16}2\na read ${T16}3\n", undef,
        qr/\[emerg\].*duplicate token name "a" in ".*" line 3/],
    ['duplicate token',               "a write ${T16}1\nb read ${T16}1\n", undef,
        qr/\[emerg\].*token "b" in ".*" line 2 is the same as token "a"/],
    ['two fields',                    "a write\n", undef, qr/\[emerg\].*invalid line 1 in ".*": use "NAME read\|write TOKEN"/],
    ['one field',                     "a write $T16\nlonely\n", undef, qr/\[emerg\].*invalid line 2 in /],
    ['four fields',                   "a write $T16 extra\n", undef, qr/\[emerg\].*invalid line 1 in /],
    ['only comments: no token',       "# nothing\n\n# here\n", undef, qr/\[emerg\].*aigov_admin tokens file ".*" has no token/],
    ['empty file: no token',          "", undef, qr/\[emerg\].*has no token/],
    ['regex location',                "a write $T16\n", 'location ~ ^/aigov/ { aigov_admin tokens=%F; }',
        qr/\[emerg\].*aigov_admin needs a prefix location/],
    ['bad parameter',                 "a write $T16\n", 'location /aigov/ { aigov_admin token=%F; }',
        qr/\[emerg\].*invalid parameter "token=.*" in aigov_admin/],
    ['empty tokens=',                 "a write $T16\n", 'location /aigov/ { aigov_admin tokens=; }',
        qr/\[emerg\].*invalid parameter "tokens=" in aigov_admin/],
    ['no parameter',                  "a write $T16\n", 'location /aigov/ { aigov_admin; }',
        qr/\[emerg\].*invalid number of arguments in "aigov_admin"/],
);

subtest 'nginx -t: tokens file and aigov_admin' => sub {
    for my $c (@CONF_CASES) {
        my ($name, $text, $loc, $err) = @$c;
        my $file = defined $text ? tokfile($text) : tmp_dir() . '/nonexistent';
        $loc //= 'location /aigov/ { aigov_admin tokens=%F; }';
        $loc =~ s/%F/$file/g;
        my ($ok, $out) = nginx_t(t_conf($loc));
        if ($err) {
            ok !$ok, "$name: nginx -t fails";
            like $out, $err, "$name: the message says why";
        } else {
            ok $ok, "$name: nginx -t passes" or diag($out);
            unlike $out, qr/\[warn\].*readable by everyone/, "$name: 0600 file, no [warn]";
        }
    }
    # a world-readable file: accepted with a warning
    my $f = tokfile("a write $T16\n", 0644);
    my ($ok, $out) = nginx_t(t_conf("location /aigov/ { aigov_admin tokens=$f; }"));
    ok $ok, 'world-readable tokens file: nginx -t passes' or diag($out);
    like $out, qr/\[warn\].*aigov_admin tokens file "\Q$f\E" is readable by everyone/,
        'world-readable tokens file: [warn] at nginx -t';
    # a relative path is relative to the configuration's directory
    spew(tmp_dir() . '/nginx-conft/conf/rel-tokens', "a write $T16\n");
    ($ok, $out) = nginx_t(t_conf('location /aigov/ { aigov_admin tokens=rel-tokens; }'));
    ok $ok, 'tokens=relative/path is found in the conf directory' or diag($out);
};

# --- 2. reading ----------------------------------------------------------------

subtest 'GET models, the location root, one model' => sub {
    for my $path ('', 'models', 'models/') {
        for my $n ($MAIN, $SOLO) {
            $n->mark;
            my $r = admin(nginx => $n, path => $path, auth => 'read');
            my $what = $n->name . " GET /aigov/$path";
            json_ok($r, $what);
            my $j = $r->{json} // {};
            is $j->{node}, $HOST, "$what: node is the host name";
            is_deeply [ map { $_->{name} } @{ $j->{models} // [] } ], \@MODELS, "$what: every model, in config order";
            is_value $j->{redis}{configured}, ($n == $MAIN ? JSON::PP::true : JSON::PP::false), "$what: redis.configured";
            is_value $j->{redis}{connected}, JSON::PP::true, "$what: redis.connected" if $n == $MAIN;
            $n->error_log_clean_ok("$what: error log clean");
        }
    }

    $MAIN->mark;
    my $r = admin(path => 'models/chat', auth => 'read');
    json_ok($r, 'GET models/chat');
    my $j = $r->{json} // {};
    is $j->{name}, 'chat', 'name';
    is_deeply [ sort keys %{ $j->{runtime} // {} } ],
        [ sort qw(version kill rollback active weights updated by pending_redis) ], 'runtime has every field';
    is $j->{runtime}{version}, 0, 'runtime.version 0: nothing changed yet';
    is $j->{runtime}{$_}, undef, "runtime.$_ null" for qw(kill rollback active weights);
    is_value $j->{runtime}{pending_redis}, JSON::PP::false, 'runtime.pending_redis';
    is_value $j->{rollback}, JSON::PP::false, 'rollback (effective)';
    is_value $j->{kill_switch}, JSON::PP::false, 'kill_switch (effective)';
    is_deeply $j->{config}, { rollback => JSON::PP::false, kill_switch => JSON::PP::false }, 'config';
    is $j->{mode}, 'canary', 'mode canary';
    is_deeply $j->{weights}, { v1 => '100%', v2 => '0%', v3 => '0%' }, 'weights from the config';
    is $j->{weights_from}, 'config', 'weights_from config';

    $r = admin(path => 'models/bg/', auth => 'read');
    json_ok($r, 'GET models/bg/');
    $j = $r->{json} // {};
    is $j->{mode}, 'bluegreen', 'bg: mode bluegreen';
    is $j->{active}, 'blue', 'bg: active blue';
    is_deeply $j->{preview}, { variant => 'green', header => 'X-Aigov-Preview' }, 'bg: preview';
    ok !exists $j->{weights}, 'bg: no weights';

    $j = model_doc($MAIN, 'frozen') // {};
    is_value $j->{kill_switch}, JSON::PP::true, 'frozen: kill_switch true (config)';
    is_deeply $j->{config}, { rollback => JSON::PP::false, kill_switch => JSON::PP::true }, 'frozen: config';
    $j = model_doc($MAIN, 'pinned') // {};
    is_value $j->{rollback}, JSON::PP::true, 'pinned: rollback true (config)';

    $r = admin(method => 'HEAD', path => 'models', auth => 'read');
    is $r->{status}, 200, 'HEAD models: 200';
    like $r->{headers}{'content-type'} // '', qr{^application/json\b}, 'HEAD models: application/json';
    is $r->{body}, '', 'HEAD models: no body';
    $MAIN->error_log_clean_ok('reading: error log clean');
};

# --- 3. errors: data-driven ----------------------------------------------------

my $BIG = '{"reason":"' . ('x' x 17000) . '"}';
my @ERRORS = (
    # [name, %request, status, type, extra checks]
    # authentication
    ['no Authorization header',           { path => 'models', auth => undef },                     401, 'unauthorized'],
    ['unknown token',                     { path => 'models', auth => 'Bearer w-alice-0123456789abcdeX' }, 401, 'unauthorized'],
    ['token with a suffix',               { path => 'models', auth => "Bearer $TOKEN{write}x" },   401, 'unauthorized'],
    ['token truncated',                   { path => 'models', auth => 'Bearer ' . substr($TOKEN{write}, 0, -1) }, 401, 'unauthorized'],
    ['empty bearer',                      { path => 'models', auth => 'Bearer ' },                 401, 'unauthorized'],
    ['Basic scheme',                      { path => 'models', auth => 'Basic YWxpY2U6eA==' },      401, 'unauthorized'],
    ['token without a scheme',            { path => 'models', auth => $TOKEN{write} },             401, 'unauthorized'],
    ['Bearer with no space',              { path => 'models', auth => "Bearer$TOKEN{write}" },     401, 'unauthorized'],
    ['no token: unknown model is still 401', { path => 'models/nope', auth => undef },             401, 'unauthorized'],
    ['no token: a change is 401',         { method => 'POST', path => 'models/chat/kill', auth => undef }, 401, 'unauthorized'],
    ['no token: audit is 401',            { path => 'audit', auth => undef },                      401, 'unauthorized'],
    # roles
    ['read token: POST kill',             { method => 'POST', path => 'models/chat/kill', auth => 'read' }, 403, 'forbidden'],
    ['read token: POST rollback',         { method => 'POST', path => 'models/chat/rollback', auth => 'read', body => { reason => 'x' } }, 403, 'forbidden'],
    ['read token: PUT weights',           { method => 'PUT', path => 'models/chat/weights', auth => 'read', body => { weights => { v2 => '5%' } } }, 403, 'forbidden'],
    ['read token: DELETE weights',        { method => 'DELETE', path => 'models/chat/weights', auth => 'read' }, 403, 'forbidden'],
    ['read token: PUT active',            { method => 'PUT', path => 'models/bg/active', auth => 'read', body => { active => 'green' } }, 403, 'forbidden'],
    ['read token: DELETE active',         { method => 'DELETE', path => 'models/bg/active', auth => 'read' }, 403, 'forbidden'],
    # unknown things
    ['unknown model',                     { path => 'models/nope' },                               404, 'unknown-model'],
    ['unknown model: POST kill',          { method => 'POST', path => 'models/nope/kill' },        404, 'unknown-model'],
    ['unknown resource',                  { path => 'modelz' },                                    404, 'not-found'],
    ['unknown resource below models',     { path => 'modelsx/chat' },                              404, 'not-found'],
    ['unknown action',                    { method => 'POST', path => 'models/chat/explode' },     404, 'not-found'],
    ['unknown action: GET',               { path => 'models/chat/explode' },                       404, 'not-found'],
    ['action with a tail',                { method => 'POST', path => 'models/chat/kill/now' },    404, 'not-found'],
    ['action is case-sensitive',          { method => 'POST', path => 'models/chat/KILL' },        404, 'not-found'],
    # methods
    ['GET models/chat/kill',              { path => 'models/chat/kill' },                          405, 'method-not-allowed'],
    ['PUT models/chat/kill',              { method => 'PUT', path => 'models/chat/kill', body => {} }, 405, 'method-not-allowed'],
    ['DELETE models/chat/rollback',       { method => 'DELETE', path => 'models/chat/rollback' },  405, 'method-not-allowed'],
    ['POST models',                       { method => 'POST', path => 'models', body => {} },      405, 'method-not-allowed'],
    ['POST the root',                     { method => 'POST', path => '' },                        405, 'method-not-allowed'],
    ['POST models/chat',                  { method => 'POST', path => 'models/chat' },             405, 'method-not-allowed'],
    ['DELETE models/chat',                { method => 'DELETE', path => 'models/chat' },           405, 'method-not-allowed'],
    ['POST models/chat/weights',          { method => 'POST', path => 'models/chat/weights', body => { weights => { v2 => 1 } } }, 405, 'method-not-allowed'],
    ['GET models/chat/weights',           { path => 'models/chat/weights' },                       405, 'method-not-allowed'],
    ['POST models/bg/active',             { method => 'POST', path => 'models/bg/active', body => { active => 'green' } }, 405, 'method-not-allowed'],
    ['POST audit',                        { method => 'POST', path => 'audit' },                   405, 'method-not-allowed'],
    ['PATCH models/chat',                 { method => 'PATCH', path => 'models/chat', body => {} }, 405, 'method-not-allowed'],
    # bodies
    ['not JSON',                          { method => 'POST', path => 'models/chat/kill', body => 'kill it' },       400, 'invalid-json'],
    ['truncated JSON',                    { method => 'POST', path => 'models/chat/kill', body => '{"reason": "x"' }, 400, 'invalid-json'],
    ['a JSON array',                      { method => 'POST', path => 'models/chat/kill', body => '["x"]' },         400, 'invalid-json'],
    ['a JSON string',                     { method => 'POST', path => 'models/chat/kill', body => '"x"' },           400, 'invalid-json'],
    ['reason is a number',                { method => 'POST', path => 'models/chat/kill', body => { reason => 5 } }, 400, 'invalid-json'],
    ['reason is null',                    { method => 'POST', path => 'models/chat/kill', body => '{"reason": null}' }, 400, 'invalid-json'],
    ['reason is an object',               { method => 'POST', path => 'models/chat/rollback', body => { reason => { a => 1 } } }, 400, 'invalid-json'],
    ['reason of 513 bytes',               { method => 'POST', path => 'models/chat/kill', body => { reason => 'r' x 513 } }, 400, 'invalid-json'],
    # a reason goes into the error log: a line break could forge log lines
    ['reason with a line break',          { method => 'POST', path => 'models/chat/rollback',
                                            body => { reason => "oops\n2026/01/01 00:00:00 [error] 1#1: *1 forged line" } }, 400, 'invalid-json'],
    ['reason with a control character',   { method => 'POST', path => 'models/chat/rollback', body => { reason => "a\x1b[31mred" } }, 400, 'invalid-json'],
    ['reason of 171 x 3-byte chars (513 bytes)', { method => 'POST', path => 'models/chat/kill', body => { reason => "\x{20ac}" x 171 } }, 400, 'invalid-json'],
    ['bad reason on PUT weights',         { method => 'PUT', path => 'models/chat/weights', body => { weights => { v2 => '5%' }, reason => [] } }, 400, 'invalid-json'],
    ['body of 16k + 1 (temp file)',       { method => 'POST', path => 'models/chat/kill', body => '{"reason":"' . ('y' x (16384 - 13)) . '"} ' }, 413, 'body-too-large'],
    ['body of 17k, chunked',              { method => 'POST', path => 'models/chat/kill', chunks => [ substr($BIG, 0, 9000), substr($BIG, 9000) ], headers => { 'Content-Type' => 'application/json' } }, 413, 'body-too-large'],
    ['body of 100k',                      { method => 'POST', path => 'models/chat/kill', body => '{"reason":"' . ('z' x 100000) . '"}' }, 413, 'body-too-large'],
    ['body of 16k + 1 (in memory)',       { prefix => '/aigov-big/', method => 'POST', path => 'models/chat/kill', body => '{"reason":"' . ('y' x (16384 - 13)) . '"} ' }, 413, 'body-too-large'],
    ['body of 17k, chunked (in memory)',  { prefix => '/aigov-big/', method => 'POST', path => 'models/chat/kill', chunks => [ substr($BIG, 0, 9000), substr($BIG, 9000) ], headers => { 'Content-Type' => 'application/json' } }, 413, 'body-too-large'],
    # weights
    ['weights: no body',                  { method => 'PUT', path => 'models/chat/weights' },                                 400, 'invalid-weights'],
    ['weights: no "weights"',             { method => 'PUT', path => 'models/chat/weights', body => { v2 => '5%' } },          400, 'invalid-weights'],
    ['weights: a string',                 { method => 'PUT', path => 'models/chat/weights', body => { weights => '5%' } },     400, 'invalid-weights'],
    ['weights: an array',                 { method => 'PUT', path => 'models/chat/weights', body => { weights => ['v2'] } },   400, 'invalid-weights'],
    ['weights: over 100 %',               { method => 'PUT', path => 'models/chat/weights', body => { weights => { v2 => '100.01%' } } }, 400, 'invalid-weights'],
    ['weights: 101 as a number',          { method => 'PUT', path => 'models/chat/weights', body => { weights => { v2 => 101 } } }, 400, 'invalid-weights'],
    ['weights: total over 100 %',         { method => 'PUT', path => 'models/chat/weights', body => { weights => { v2 => '60%', v3 => '40.01%' } } }, 400, 'invalid-weights'],
    ['weights: total over 100 % (numbers)', { method => 'PUT', path => 'models/chat/weights', body => { weights => { v2 => 60, v3 => 41 } } }, 400, 'invalid-weights'],
    ['weights: negative',                 { method => 'PUT', path => 'models/chat/weights', body => { weights => { v2 => -1 } } }, 400, 'invalid-weights'],
    ['weights: negative string',          { method => 'PUT', path => 'models/chat/weights', body => { weights => { v2 => '-1%' } } }, 400, 'invalid-weights'],
    ['weights: three decimals (string)',  { method => 'PUT', path => 'models/chat/weights', body => { weights => { v2 => '5.555%' } } }, 400, 'invalid-weights'],
    ['weights: three decimals (number)',  { method => 'PUT', path => 'models/chat/weights', body => { weights => { v2 => 0.255 } } }, 400, 'invalid-weights'],
    ['weights: not a number',             { method => 'PUT', path => 'models/chat/weights', body => { weights => { v2 => 'five' } } }, 400, 'invalid-weights'],
    ['weights: empty string',             { method => 'PUT', path => 'models/chat/weights', body => { weights => { v2 => '' } } }, 400, 'invalid-weights'],
    ['weights: "%" alone',                { method => 'PUT', path => 'models/chat/weights', body => { weights => { v2 => '%' } } }, 400, 'invalid-weights'],
    ['weights: "5%%"',                    { method => 'PUT', path => 'models/chat/weights', body => { weights => { v2 => '5%%' } } }, 400, 'invalid-weights'],
    ['weights: a boolean',                { method => 'PUT', path => 'models/chat/weights', body => '{"weights": {"v2": true}}' }, 400, 'invalid-weights'],
    ['weights: null',                     { method => 'PUT', path => 'models/chat/weights', body => '{"weights": {"v2": null}}' }, 400, 'invalid-weights'],
    ['weights: a long string',            { method => 'PUT', path => 'models/chat/weights', body => { weights => { v2 => ('0' x 40) . '5%' } } }, 400, 'invalid-weights'],
    ['weights: the stable variant',       { method => 'PUT', path => 'models/chat/weights', body => { weights => { v1 => '5%' } } }, 400, 'invalid-weights'],
    ['weights: an unknown variant',       { method => 'PUT', path => 'models/chat/weights', body => { weights => { v9 => '5%' } } }, 400, qr/(?:invalid-weights|unknown-variant)/],
    ['weights on a blue-green model',     { method => 'PUT', path => 'models/bg/weights', body => { weights => { green => '5%' } } }, 409, 'wrong-mode'],
    ['DELETE weights on a blue-green model', { method => 'DELETE', path => 'models/bg/weights' },                            409, 'wrong-mode'],
    # active
    ['active on a canary model',          { method => 'PUT', path => 'models/chat/active', body => { active => 'v2' } },       409, 'wrong-mode'],
    ['DELETE active on a canary model',   { method => 'DELETE', path => 'models/chat/active' },                                 409, 'wrong-mode'],
    ['active: unknown variant',           { method => 'PUT', path => 'models/bg/active', body => { active => 'purple' } },      400, 'unknown-variant'],
    ['active: variant names are case-sensitive', { method => 'PUT', path => 'models/bg/active', body => { active => 'Green' } }, 400, 'unknown-variant'],
    ['active: missing',                   { method => 'PUT', path => 'models/bg/active', body => {} },                          400, qr/(?:invalid-json|unknown-variant)/],
    ['active: a number',                  { method => 'PUT', path => 'models/bg/active', body => { active => 1 } },             400, qr/(?:invalid-json|unknown-variant)/],
    ['active: not JSON',                  { method => 'PUT', path => 'models/bg/active', body => 'green' },                     400, 'invalid-json'],
    # audit
    ['audit?count=0',                     { path => 'audit?count=0', auth => 'read' },     400, 'invalid-count'],
    ['audit?count=1001',                  { path => 'audit?count=1001', auth => 'read' },  400, 'invalid-count'],
    ['audit?count=-1',                    { path => 'audit?count=-1', auth => 'read' },    400, 'invalid-count'],
    ['audit?count=abc',                   { path => 'audit?count=abc', auth => 'read' },   400, 'invalid-count'],
    ['audit?count=',                      { path => 'audit?count=', auth => 'read' },      400, 'invalid-count'],
    ['audit?count=5x',                    { path => 'audit?count=5x', auth => 'read' },    400, 'invalid-count'],
);

subtest 'errors: problem documents that change nothing' => sub {
    my %versions = map { $_->name => all_versions($_) } $MAIN, $SOLO;
    my $xlen = redis_cmd($RPORT, 'XLEN', 'aigov:audit');
    for my $c (@ERRORS) {
        my ($name, $req, $status, $type) = @$c;
        for my $n ($MAIN, $SOLO) {
            my $what = $n->name . ": $name";
            $n->mark;
            my $r = admin(%$req, nginx => $n);
            problem_ok($r, $status, $type, $what);
            if ($status == 401) {
                is $r->{headers}{'www-authenticate'}, 'Bearer realm="aigov"', "$what: WWW-Authenticate";
            } else {
                ok !exists $r->{headers}{'www-authenticate'}, "$what: no WWW-Authenticate";
            }
            if ($status == 405) {
                my $allow = $r->{headers}{allow};
                ok defined $allow && $allow =~ /\S/, "$what: an Allow header";
                my $m = uc($req->{method} // 'GET');
                unlike $allow // '', qr/\b\Q$m\E\b/,
                    "$what: Allow lists this resource's methods, not $m, the one just refused (RFC 9110 15.5.6)";
            }
            is_deeply all_versions($n), $versions{ $n->name }, "$what: no model's runtime version moved";
            is_deeply [ audit_lines($n) ], [], "$what: no audit record";
            $n->error_log_clean_ok("$what: error log clean");
        }
    }
    is redis_cmd($RPORT, 'XLEN', 'aigov:audit'), $xlen, 'no entry added to the audit stream';
};

# --- 4. changes: data-driven, on both instances --------------------------------

my %T = (true => JSON::PP::true, false => JSON::PP::false);
my $R512 = 'R' x 512;
my @CHANGES = (
    # name => request; action; state checks (dotted path => value);
    # routes (path => where); redis hash fields (main only); reason
    { name => 'kill with a reason', method => 'POST', path => 'models/chat/kill',
      body => { reason => 'incident 42: "bad answers"' }, action => 'kill',
      state => { kill_switch => $T{true}, 'runtime.kill' => 'on', rollback => $T{false} },
      routes => { '/chat' => '503:model-disabled', '/bg' => 'stable' },
      redis => { kill => '1', rollback => '' }, reason => 'incident 42: "bad answers"' },
    { name => 'kill again (idempotent, still a change)', method => 'POST', path => 'models/chat/kill',
      action => 'kill', state => { kill_switch => $T{true} }, routes => { '/chat' => '503:model-disabled' } },
    { name => 'unkill, empty JSON body', method => 'POST', path => 'models/chat/unkill', body => {},
      action => 'unkill', state => { kill_switch => $T{false}, 'runtime.kill' => 'off' },
      routes => { '/chat' => 'stable' }, redis => { kill => '0' } },
    { name => 'weights v2 100%', method => 'PUT', path => 'models/chat/weights',
      body => { weights => { v2 => '100%' } }, action => 'weights',
      state => { weights => { v1 => '0%', v2 => '100%' }, weights_from => 'runtime', 'runtime.weights' => 'v2=100%' },
      routes => { '/chat' => 'candidate' }, redis => { weights => 'v2=100%' } },
    { name => 'rollback', method => 'POST', path => 'models/chat/rollback', body => { reason => 'r' },
      action => 'rollback', state => { rollback => $T{true}, 'runtime.rollback' => 'on', kill_switch => $T{false} },
      routes => { '/chat' => 'stable' }, redis => { rollback => '1', weights => 'v2=100%' }, reason => 'r' },
    { name => 'unrollback: the runtime weights again', method => 'POST', path => 'models/chat/unrollback',
      action => 'unrollback', state => { rollback => $T{false}, 'runtime.rollback' => 'off' },
      routes => { '/chat' => 'candidate' }, redis => { rollback => '0' } },
    { name => 'weights: strings and numbers', method => 'PUT', path => 'models/chat/weights',
      body => { weights => { v2 => '5%', v3 => 0.25 } }, action => 'weights',
      state => { weights => { v1 => '94.75%', v2 => '5%', v3 => '0.25%' }, weights_from => 'runtime' },
      runtime_weights => { v2 => '5%', v3 => '0.25%' } },
    { name => 'weights: v3 100 as a number', method => 'PUT', path => 'models/chat/weights',
      body => { weights => { v3 => 100 } }, action => 'weights',
      state => { weights => { v1 => '0%', v3 => '100%' }, 'runtime.weights' => 'v3=100%' },
      routes => { '/chat' => 'third' }, redis => { weights => 'v3=100%' } },
    { name => 'weights: strings without %, total exactly 100 %', method => 'PUT', path => 'models/chat/weights',
      body => { weights => { v2 => '12.5', v3 => '87.50%' } }, action => 'weights',
      state => { weights => { v1 => '0%', v2 => '12.50%', v3 => '87.50%' } } },
    { name => 'weights: two decimals as a number', method => 'PUT', path => 'models/chat/weights',
      body => { weights => { v2 => 5.55, v3 => 0 } }, action => 'weights',
      state => { weights => { v1 => '94.45%', v2 => '5.55%', v3 => '0%' } } },
    { name => 'weights: 0.01 %', method => 'PUT', path => 'models/chat/weights',
      body => { weights => { v3 => '0.01%' } }, action => 'weights',
      state => { weights => { v1 => '99.99%', v3 => '0.01%' } } },
    { name => 'clear weights', method => 'DELETE', path => 'models/chat/weights', action => 'clear-weights',
      state => { weights => { v1 => '100%', v2 => '0%', v3 => '0%' }, weights_from => 'config', 'runtime.weights' => undef },
      routes => { '/chat' => 'stable' }, redis => { weights => '' } },
    { name => 'active green', method => 'PUT', path => 'models/bg/active', body => { active => 'green', reason => 'deploy 7' },
      action => 'active', state => { mode => 'bluegreen', active => 'green', 'runtime.active' => 'green' },
      routes => { '/bg' => 'candidate', '/chat' => 'stable' }, redis => { active => 'green' }, reason => 'deploy 7' },
    { name => 'rollback beats the active colour', method => 'POST', path => 'models/bg/rollback',
      action => 'rollback', state => { rollback => $T{true}, active => 'green' }, routes => { '/bg' => 'stable' } },
    { name => 'unrollback: green again', method => 'POST', path => 'models/bg/unrollback',
      action => 'unrollback', state => { rollback => $T{false} }, routes => { '/bg' => 'candidate' } },
    { name => 'clear active', method => 'DELETE', path => 'models/bg/active', action => 'clear-active',
      state => { active => 'blue', 'runtime.active' => undef }, routes => { '/bg' => 'stable' }, redis => { active => '' } },
    { name => 'kill a blue-green model', method => 'POST', path => 'models/bg/kill', action => 'kill',
      state => { kill_switch => $T{true} }, routes => { '/bg' => '503:model-disabled', '/chat' => 'stable' } },
    { name => 'unkill it, no body at all', method => 'POST', path => 'models/bg/unkill', action => 'unkill',
      state => { kill_switch => $T{false} }, routes => { '/bg' => 'stable' } },
    { name => 'unkill cannot undo kill_switch on in the config', method => 'POST', path => 'models/frozen/unkill',
      action => 'unkill', state => { kill_switch => $T{true}, 'config.kill_switch' => $T{true}, 'runtime.kill' => 'off' },
      routes => { '/frozen' => '503:model-disabled' } },
    { name => 'unrollback cannot undo rollback on in the config', method => 'POST', path => 'models/pinned/unrollback',
      action => 'unrollback', state => { rollback => $T{true}, 'config.rollback' => $T{true}, 'runtime.rollback' => 'off' },
      routes => { '/pinned' => 'stable' } },
    { name => 'a runtime kill on top of a config rollback', method => 'POST', path => 'models/pinned/kill',
      action => 'kill', state => { kill_switch => $T{true}, rollback => $T{true} }, routes => { '/pinned' => '503:model-disabled' } },
    { name => 'unkill it', method => 'POST', path => 'models/pinned/unkill', action => 'unkill',
      state => { kill_switch => $T{false} }, routes => { '/pinned' => 'stable' } },
    { name => 'reason of exactly 512 bytes', method => 'POST', path => 'models/chat/rollback', body => { reason => $R512 },
      action => 'rollback', state => { rollback => $T{true} }, reason => $R512 },
    { name => 'reason of 170 3-byte characters (510 bytes)', method => 'POST', path => 'models/chat/unrollback',
      body => { reason => "\x{20ac}" x 170 }, action => 'unrollback', state => { rollback => $T{false} },
      reason => "\x{20ac}" x 170 },
    { name => 'body of exactly 16k', method => 'POST', path => 'models/chat/kill',
      body => '{"reason":"k"' . (' ' x (16384 - 14)) . '}', action => 'kill', state => { kill_switch => $T{true} },
      reason => 'k' },
    { name => 'body of 12k, chunked', method => 'POST', path => 'models/chat/unkill',
      chunks => [ '{"reason":"c"', (' ' x 6000), (' ' x (12288 - 6014)) . '}' ],
      action => 'unkill', state => { kill_switch => $T{false} }, reason => 'c' },
    { name => 'the other write token; scheme "bearer" in lower case', method => 'POST', path => 'models/chat/unkill',
      auth => "bearer $TOKEN{write2}", by => 'carol', action => 'unkill', state => { kill_switch => $T{false} },
      routes => { '/chat' => 'stable' }, redis => { by => 'carol' } },
    { name => 'scheme "BEARER", trailing slash', method => 'POST', path => 'models/chat/kill/',
      auth => "BEARER $TOKEN{write}", action => 'kill', state => { kill_switch => $T{true} } },
    { name => 'unkill: back to normal', method => 'POST', path => 'models/chat/unkill',
      action => 'unkill', state => { kill_switch => $T{false} }, routes => { '/chat' => 'stable' } },
);

my %DONE;    # instance => [ [model, action, version, by, reason], ... ]

sub check_change {
    my ($n, $c) = @_;
    my $with_redis = $n == $MAIN;
    my $what = $n->name . ": $c->{name}";
    my ($model) = $c->{path} =~ m{^models/([^/]+)/};
    my $by = $c->{by} // 'alice';
    my $before = model_doc($n, $model) // {};
    my $v0 = $before->{runtime}{version} // -1;

    $n->mark;
    my $r = admin(nginx => $n, method => $c->{method}, path => $c->{path},
                  (exists $c->{body} ? (body => $c->{body}) : ()),
                  (exists $c->{chunks} ? (chunks => $c->{chunks}, headers => { 'Content-Type' => 'application/json' }) : ()),
                  (exists $c->{auth} ? (auth => $c->{auth}) : ()));
    json_ok($r, $what);
    if ($r->{status} != 200 || ref $r->{json} ne 'HASH') {
        is_deeply all_versions($n), all_versions($n), "$what: (not checked further)";
        $n->error_log_clean_ok("$what: error log clean");
        return;
    }
    my $j = $r->{json} // {};
    is $j->{model}, $model, "$what: model";
    is $j->{action}, $c->{action}, "$what: action $c->{action}";
    is $j->{version}, $v0 + 1, "$what: version " . ($v0 + 1) . " (one more than before)";
    is_value $j->{propagated}, $with_redis ? $T{true} : $T{false}, "$what: propagated";
    is $j->{node}, $HOST, "$what: node";
    my $s = $j->{state} // {};
    is $s->{name}, $model, "$what: state.name";
    is $s->{runtime}{version}, $j->{version}, "$what: state.runtime.version";
    is $s->{runtime}{by}, $by, "$what: state.runtime.by";
    ok abs(($s->{runtime}{updated} // 0) - time) < 5, "$what: state.runtime.updated is now";
    is_value $s->{runtime}{pending_redis}, $T{false}, "$what: state.runtime.pending_redis";
    for my $k (sort keys %{ $c->{state} // {} }) {
        is_value dig($s, $k), $c->{state}{$k}, "$what: state.$k";
    }
    if (my $rw = $c->{runtime_weights}) {
        my %got = map { split /=/, $_, 2 } split /,/, ($s->{runtime}{weights} // '');
        is_deeply \%got, $rw, "$what: state.runtime.weights";
    }

    # the same state from GET, on fresh connections (either worker)
    for my $i (1 .. 3) {
        my $g = model_doc($n, $model);
        is_deeply $g, $s, "$what: GET models/$model ($i) shows the same state" or last;
    }
    for my $p (sort keys %{ $c->{routes} // {} }) {
        routes_ok($n, $p, $c->{routes}{$p}, "$what: $p -> $c->{routes}{$p}");
    }

    if ($with_redis) {
        my $h = redis_hash($model);
        is $h->{version}, $j->{version}, "$what: redis aigov:model:$model version";
        is $h->{by}, $by, "$what: redis by";
        my %tri = (on => '1', off => '0');
        # a field a change never touched is absent from the hash: unset
        is $h->{kill} // '', $tri{ $s->{runtime}{kill} // '' } // '', "$what: redis kill matches the runtime";
        is $h->{rollback} // '', $tri{ $s->{runtime}{rollback} // '' } // '', "$what: redis rollback matches the runtime";
        is $h->{weights} // '', $s->{runtime}{weights} // '', "$what: redis weights match the runtime";
        is $h->{active} // '', $s->{runtime}{active} // '', "$what: redis active matches the runtime";
        for my $k (sort keys %{ $c->{redis} // {} }) {
            is $h->{$k} // '', $c->{redis}{$k}, "$what: redis $k = '$c->{redis}{$k}'";
        }
    }

    my @audit = audit_lines($n);
    is scalar(@audit), 1, "$what: one audit line in the error log" or diag(join "\n", @audit);
    my $reason = $c->{reason};
    my $re = qr/\[notice\] .*aigov audit: model "\Q$model\E" action "\Q$c->{action}\E" by "\Q$by\E" version \Q$j->{version}\E: kill=\S+ rollback=\S+ active=\S+ weights=\S+ -> kill=\S+ rollback=\S+ active=\S+ weights=\S+/;
    like $audit[0] // '', $re, "$what: the audit line says what changed";
    if ($c->{forged}) {
        my @forged = grep { /^\Q$c->{forged}\E/ } $n->error_log_lines;
        is_deeply \@forged, [], "$what: no log line starts with what the reason carried";
        like $audit[0] // '', qr/\(reason "/, "$what: the audit line has the reason";
    } elsif (defined $reason) {
        my $bytes = $reason;
        utf8::encode($bytes) if utf8::is_utf8($bytes);
        ok index($audit[0] // '', "(reason \"$bytes\")") >= 0, "$what: the audit line has the reason";
    } else {
        unlike $audit[0] // '', qr/\(reason /, "$what: no reason, none in the audit line";
    }
    like $audit[0] // '', ($with_redis ? qr/, in redis\b/ : qr/, this node only(?!, redis unreachable)/),
        "$what: the audit line says " . ($with_redis ? 'in redis' : 'this node only')
        unless $c->{forged};
    $n->error_log_clean_ok("$what: error log clean");
    push @{ $DONE{ $n->name } }, [$model, $c->{action}, $j->{version}, $by, $reason] if $r->{status} == 200;
}

for my $n ($MAIN, $SOLO) {
    subtest $n->name . ': changes, their effect, their audit record' => sub {
        check_change($n, $_) for @CHANGES;
    };
}

# --- 5. the audit trail -------------------------------------------------------

subtest 'GET audit: the Redis stream, newest first' => sub {
    my @done = reverse @{ $DONE{main} };
    is redis_cmd($RPORT, 'XLEN', 'aigov:audit'), scalar(@done), 'one stream entry per change';
    for my $case ([undef, 20], [1, 1], [3, 3], [1000, scalar @done]) {
        my ($count, $want) = @$case;
        $want = @done if $want > @done;
        my $what = 'GET audit' . (defined $count ? "?count=$count" : '');
        $MAIN->mark;
        my $r = admin(path => 'audit' . (defined $count ? "?count=$count" : ''), auth => 'read');
        json_ok($r, $what);
        my $list = ($r->{json} // {})->{audit} // [];
        is scalar(@$list), $want, "$what: $want entries";
        my @ids = map { $_->{id} // '' } @$list;
        my @sorted = sort { my @x = split /-/, $a; my @y = split /-/, $b; $y[0] <=> $x[0] || $y[1] <=> $x[1] } @ids;
        is_deeply \@ids, \@sorted, "$what: newest first";
        for my $i (0 .. $#$list) {
            my $e = $list->[$i];
            my ($model, $action, $version, $by, $reason) = @{ $done[$i] };
            is_deeply [ sort keys %$e ], [ sort qw(id version model action by old new node reason time) ],
                "$what [$i]: every field" or next;
            is_deeply [ @$e{qw(model action version by node)} ], [ $model, $action, "$version", $by, $HOST ],
                "$what [$i]: $model $action version $version by $by";
            my $rb = $reason // '';
            utf8::encode($rb) if utf8::is_utf8($rb);
            my $got = $e->{reason};
            utf8::encode($got) if utf8::is_utf8($got);
            is $got, $rb, "$what [$i]: reason";
            like $e->{old}, qr/^kill=\S+ rollback=\S+ active=\S+ weights=\S+$/, "$what [$i]: old";
            like $e->{new}, qr/^kill=\S+ rollback=\S+ active=\S+ weights=\S+$/, "$what [$i]: new";
            ok abs($e->{time} - time) < 120, "$what [$i]: time";
        }
        $MAIN->error_log_clean_ok("$what: error log clean");
    }

    $SOLO->mark;
    my $r = admin(nginx => $SOLO, path => 'audit', auth => 'read');
    problem_ok($r, 503, 'no-redis', 'solo: GET audit without aigov_redis');
    $SOLO->error_log_clean_ok('solo: GET audit: error log clean');
};

# --- 6. concurrent changes -----------------------------------------------------

subtest 'concurrent changes get distinct versions; the highest one is in force' => sub {
    $MAIN->mark;
    my $v0 = model_doc($MAIN, 'chat')->{runtime}{version};
    my @w = map { sprintf('%d%%', $_) } 1 .. 8;
    my @res = http_parallel(map {
        { port => $MAIN->port, method => 'PUT', path => '/aigov/models/chat/weights',
          headers => { Authorization => "Bearer $TOKEN{write}", 'Content-Type' => 'application/json' },
          body => $JSON->encode({ weights => { v2 => $_ } }), timeout => 5 }
    } @w);
    is_deeply [ map { $_->{status} } @res ], [ (200) x @w ], 'every change: 200';
    my @versions = sort { $a <=> $b } map { ($_->{json} // {})->{version} // 0 } @res;
    is_deeply \@versions, [ $v0 + 1 .. $v0 + @w ], 'versions are distinct and consecutive';
    my ($last) = grep { (($_->{json} // {})->{version} // 0) == $v0 + @w } @res;
    my $doc = model_doc($MAIN, 'chat');
    is $doc->{runtime}{version}, $v0 + @w, 'runtime version is the highest';
    is $doc->{runtime}{weights}, $last->{json}{state}{runtime}{weights}, 'the weights of the highest version are in force';
    is redis_hash('chat')->{weights}, $doc->{runtime}{weights}, 'and in redis';
    is scalar(audit_lines($MAIN)), scalar(@w), 'one audit line each';
    $MAIN->error_log_clean_ok('concurrent changes: error log clean');
    my $r = admin(method => 'DELETE', path => 'models/chat/weights');
    is $r->{status}, 200, 'clear the weights';
};

# Changes to different fields of one model, made at the same time: each is
# answered 200 with its own field set, so each must stay in force.  Redis
# is stopped for $pause s while the three requests arrive, so that none has
# been answered when the others read the model's state: 0.15 s (less than
# command_timeout: all three go through redis) and 1 s (all three time out
# and apply on this node only).
sub concurrent_fields {
    my ($pause) = @_;
    ok all_workers_connected(), "SIGSTOP $pause s: every worker connected to redis";
    $MAIN->mark;
    my %req = (port => $MAIN->port, timeout => 5,
               headers => { Authorization => "Bearer $TOKEN{write}", 'Content-Type' => 'application/json' });
    redis_sigstop($RPORT);
    my $kid = fork;
    die "fork: $!" unless defined $kid;
    if (!$kid) {
        sleep $pause;
        redis_sigcont($RPORT);
        POSIX::_exit(0);
    }
    my @res = http_parallel(
        { %req, method => 'POST', path => '/aigov/models/chat/kill', body => '{}' },
        { %req, method => 'POST', path => '/aigov/models/chat/rollback', body => '{}' },
        { %req, method => 'PUT', path => '/aigov/models/chat/weights', body => '{"weights": {"v2": "100%"}}' },
    );
    waitpid($kid, 0);
    redis_sigcont($RPORT);
    is_deeply [ map { $_->{status} } @res ], [200, 200, 200], "SIGSTOP $pause s: kill, rollback, weights: 200 each";
    is_deeply [ map { ($_->{json} // {})->{action} // '' } @res ], [qw(kill rollback weights)], "SIGSTOP $pause s: actions";
    ok wait_for(sub { my $d = model_doc($MAIN, 'chat'); $d && !$d->{runtime}{pending_redis} }, timeout => 10, interval => 0.1),
        "SIGSTOP $pause s: nothing pending for redis in the end";
    my $d = model_doc($MAIN, 'chat') // {};
    my %got = map { $_ => $d->{runtime}{$_} } qw(kill rollback weights);
    is_deeply \%got, { kill => 'on', rollback => 'on', weights => 'v2=100%' },
        "SIGSTOP $pause s: all three changes are in force (none lost to another's stale copy)";
    my $h = redis_hash('chat');
    is_deeply { map { $_ => $h->{$_} } qw(kill rollback weights) }, { kill => '1', rollback => '1', weights => 'v2=100%' },
        "SIGSTOP $pause s: and all three are in redis";
    $MAIN->error_log_clean_ok("SIGSTOP $pause s: error log clean");
    for my $c (['POST', 'models/chat/unkill'], ['POST', 'models/chat/unrollback'], ['DELETE', 'models/chat/weights']) {
        is admin(method => $c->[0], path => $c->[1])->{status}, 200, "restore: $c->[0] $c->[1]";
    }
}

subtest 'concurrent changes to different fields of one model are all kept' => sub {
    concurrent_fields(0.15);
    concurrent_fields(1);
};

# --- 7. Redis stopped ------------------------------------------------------------

subtest 'redis SIGSTOPped: changes answer at once, apply here, reach redis later' => sub {
    ok all_workers_connected(), 'every worker connected to redis';
    $MAIN->mark;
    my $pids = join ',', sort $MAIN->worker_pids;
    redis_sigstop($RPORT);
    my @changes;
    my $ok = eval {
        for my $c (['POST', 'models/chat/kill', { reason => 'redis down' }, 'kill'],
                   ['PUT', 'models/chat/weights', { weights => { v3 => '100%' } }, 'weights'],
                   ['PUT', 'models/bg/active', { active => 'green' }, 'active']) {
            my ($method, $path, $body, $action) = @$c;
            my $what = "redis stopped: $method $path";
            my $r = admin(method => $method, path => $path, body => $body, timeout => 5);
            json_ok($r, $what);
            ok $r->{elapsed_ms} < 1500, sprintf("$what: answered in %.0f ms (< 1.5 s)", $r->{elapsed_ms});
            my $j = $r->{json} // {};
            is $j->{action}, $action, "$what: action";
            is_value $j->{propagated}, $T{false}, "$what: propagated";
            is_value dig($j, 'state.runtime.pending_redis'), $T{true}, "$what: state.runtime.pending_redis";
            push @changes, $j;
        }
        routes_ok($MAIN, '/chat', '503:model-disabled', 'redis stopped: the kill applies here at once');
        my $doc = model_doc($MAIN, 'chat') // {};
        is_value $doc->{runtime}{pending_redis}, $T{true}, 'redis stopped: GET shows pending_redis true';
        my @a = audit_lines($MAIN);
        is scalar(@a), 3, 'redis stopped: three audit lines';
        like $_, qr/, this node only, redis unreachable/, 'redis stopped: the audit line says redis was unreachable' for @a;
        my $r = admin(path => 'audit', auth => 'read', timeout => 5);
        problem_ok($r, 503, 'no-redis', 'redis stopped: GET audit');
        ok $r->{elapsed_ms} < 1500, sprintf('redis stopped: GET audit answered in %.0f ms', $r->{elapsed_ms});
        1;
    };
    redis_sigcont($RPORT);
    ok $ok, 'no exception while redis was stopped' or diag($@);

    my %want = (chat => model_doc($MAIN, 'chat'), bg => model_doc($MAIN, 'bg'));
    for my $m (qw(chat bg)) {
        ok wait_for(sub { my $d = model_doc($MAIN, $m); $d && !$d->{runtime}{pending_redis} }, timeout => 10, interval => 0.1),
            "redis back: $m pending_redis becomes false";
        my $d = model_doc($MAIN, $m) // {};
        my $h = redis_hash($m);
        is $h->{version}, $d->{runtime}{version}, "redis back: $m version in redis = here";
        is $h->{kill} // '', { on => '1', off => '0' }->{ $d->{runtime}{kill} // '' } // '', "redis back: $m kill in redis";
        is $h->{weights} // '', $d->{runtime}{weights} // '', "redis back: $m weights in redis";
        is $h->{active} // '', $d->{runtime}{active} // '', "redis back: $m active in redis";
    }
    is redis_hash('chat')->{kill}, '1', 'redis back: the kill made during the outage is in redis';
    is redis_hash('chat')->{weights}, 'v3=100%', 'redis back: the weights made during the outage are in redis';
    is redis_hash('bg')->{active}, 'green', 'redis back: the colour chosen during the outage is in redis';
    routes_ok($MAIN, '/chat', '503:model-disabled', 'redis back: still killed');
    routes_ok($MAIN, '/bg', 'candidate', 'redis back: still green');
    is join(',', sort $MAIN->worker_pids), $pids, 'same workers';
    $MAIN->error_log_clean_ok('redis outage: no [error]/[crit]/[alert] ([warn] allowed)');
    ok !grep({ /exited on signal/ } $MAIN->error_log_lines), 'no worker crashed';

    for my $c (['POST', 'models/chat/unkill'], ['DELETE', 'models/chat/weights'], ['DELETE', 'models/bg/active']) {
        is admin(method => $c->[0], path => $c->[1])->{status}, 200, "restore: $c->[0] $c->[1]";
    }
};

subtest 'a client that goes away while its change waits on a stopped redis' => sub {
    ok all_workers_connected(), 'every worker connected to redis';
    $MAIN->mark;
    my @pids = sort $MAIN->worker_pids;
    redis_sigstop($RPORT);
    my @r;
    my $ok = eval {
        # a short client timeout, then close; and a close right after sending
        push @r, admin(method => 'POST', path => 'models/chat/kill', body => { reason => 'gone' }, timeout => 0.1);
        push @r, admin(method => 'POST', path => 'models/chat/rollback', timeout => 0.05);
        push @r, $MAIN->req(method => 'POST', path => '/aigov/models/bg/kill', abort => 1,
                            headers => { Authorization => "Bearer $TOKEN{write}" }, body => '{}');
        sleep 1;
        1;
    };
    redis_sigcont($RPORT);
    ok $ok, 'no exception' or diag($@);
    is $r[0]{status}, 599, 'the first client gave up before the answer (its change was waiting on redis)';
    ok wait_for(sub { redis_connected($MAIN) }, timeout => 10, interval => 0.1), 'redis back';
    ok wait_for(sub {
        !grep { my $d = model_doc($MAIN, $_); !$d || $d->{runtime}{pending_redis} } qw(chat bg)
    }, timeout => 10, interval => 0.1), 'nothing left pending for redis';
    sleep 0.5;
    my $r = admin(path => 'models', auth => 'read');
    json_ok($r, 'nginx still answers');
    is_deeply [ sort $MAIN->worker_pids ], \@pids, 'the same worker pids';
    ok !grep({ /exited on signal/ } $MAIN->error_log_lines), 'no "exited on signal" in the log';
    $MAIN->error_log_clean_ok('client gone: no [error]/[crit]/[alert]');
    # the state is consistent whatever happened to the changes
    for my $m (qw(chat bg)) {
        my $d = model_doc($MAIN, $m) // {};
        my $want = $d->{kill_switch} ? '503:model-disabled' : 'stable';
        routes_ok($MAIN, "/$m", $want, "$m: routing agrees with the state ($want)");
        is redis_hash($m)->{version}, $d->{runtime}{version}, "$m: redis has the same version";
    }
    for my $c (['POST', 'models/chat/unkill'], ['POST', 'models/chat/unrollback'], ['POST', 'models/bg/unkill']) {
        is admin(method => $c->[0], path => $c->[1])->{status}, 200, "restore: $c->[0] $c->[1]";
    }
};

# --- 8. keep-alive after a change, and no leaked connection ----------------------

# Two requests on one connection: a change, then a GET.  The harness client
# would hide a hang here (it retries a stale keep-alive connection on a new
# one after its timeout), hence a plain socket.
sub two_on_one_connection {
    my ($n, $first) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $n->port, Timeout => 2)
        or return ('connect failed');
    my $auth = "Authorization: Bearer $TOKEN{write}\r\n";
    print {$s} "$first HTTP/1.1\r\nHost: t\r\n${auth}Content-Length: 0\r\n\r\n";
    my $buf = '';
    my $deadline = time + 3;
    my $read = sub {
        my ($want) = @_;
        while (time < $deadline) {
            my @st = $buf =~ m{^HTTP/1\.1 (\d{3})}mg;
            return @st if @st >= $want && $buf =~ /\r\n\r\n.*\}\n\z/s;
            my $rin = '';
            vec($rin, fileno($s), 1) = 1;
            select(my $rout = $rin, undef, undef, 0.05) or next;
            sysread($s, $buf, 65536, length $buf) or last;
        }
        return $buf =~ m{^HTTP/1\.1 (\d{3})}mg;
    };
    my @st = $read->(1);
    print {$s} "GET /aigov/models/chat HTTP/1.1\r\nHost: t\r\n${auth}\r\n";
    @st = $read->(2);
    close $s;
    return @st;
}

subtest 'keep-alive: a second request on the connection of a change' => sub {
    ok all_workers_connected(), 'every worker connected to redis';
    for my $case ([$SOLO, 'POST /aigov/models/chat/kill'], [$SOLO, 'POST /aigov/models/chat/unkill'],
                  [$MAIN, 'POST /aigov/models/chat/kill'], [$MAIN, 'POST /aigov/models/chat/unkill'],
                  [$MAIN, 'GET /aigov/audit']) {
        my ($n, $first) = @$case;
        $n->mark;
        my @st = two_on_one_connection($n, $first);
        is "@st", '200 200', $n->name . ": $first, then GET on the same connection: both answered within 3 s";
        $n->error_log_clean_ok($n->name . ": $first: error log clean");
    }
};

subtest 'error_log at debug level with aigov_redis: workers start and stay up' => sub {
    my $n = eval { start_nginx(nginx_conf(http_body(redis => 1), name => 'dbg', log_level => 'debug'), timeout => 3) };
    ok $n, 'nginx starts with "error_log ... debug"' or diag($@ =~ s/\[debug\][^\n]*\n//gr);
    my $log = tmp_dir() . '/nginx-dbg/logs/error.log';
    if ($n) {
        my @pids = sort $n->worker_pids;
        sleep 1;
        is_deeply [ sort $n->worker_pids ], \@pids, 'the same workers a second later';
        my $r = admin(nginx => $n, path => 'models', auth => 'read');
        is $r->{status}, 200, 'the admin API answers';
        $n->stop;
    }
    open(my $fh, '<', $log) or die "$log: $!";
    my @crash = grep { /exited on signal/ } <$fh>;
    close $fh;
    is_deeply \@crash, [], 'no worker "exited on signal"' or diag(scalar(@crash) . " crashes, first: $crash[0]");
};

# --- 9. a plugin's action: forced circuit breakers --------------------------------

subtest 'forced breakers: in the audit stream; bad input; a client gone while redis is stopped' => sub {
    my $conf = <<"EOF";
    upstream u_stable    { server 127.0.0.1:%%FIXTURE_stable%%;    keepalive 8; }
    upstream u_candidate { server 127.0.0.1:%%FIXTURE_candidate%%; keepalive 8; }
    aigov_zone admin_brk:1m;
    aigov_redis 127.0.0.1:%%REDIS_PORT%% sync_interval=300ms;
    aigov_model brk {
        variant v1 u_stable    version=1.0.0 stable;
        variant v2 u_candidate version=2.0.0;
        canary  v2 0%;
        breaker variant=v2 open=20s open_max=1m fleet=on;
    }
    server {
        listen 127.0.0.1:%%PORT%%;
        location /aigov/ { aigov_admin tokens=$TOKENS; }
    }
EOF
    my $n = start_nginx(nginx_conf($conf, name => 'brk'));
    ok wait_for(sub { redis_connected($n) }, timeout => 5), 'brk: connected to redis';
    sleep 0.5;    # both workers' command connections
    $n->mark;
    my $xlen = redis_cmd($RPORT, 'XLEN', 'aigov:audit');

    for my $case (
        [ 'models/brk/breakers/v1', { state => 'open' },     409, 'no-breaker' ],
        [ 'models/brk/breakers/v9', { state => 'open' },     404, 'unknown-variant' ],
        [ 'models/nope/breakers/v2', { state => 'open' },    404, 'unknown-model' ],
        [ 'models/brk/breakers/v2', { state => 'sideways' }, 400, 'invalid-json' ],
        [ 'models/brk/breakers/v2', { state => 'open', open => '2m' }, 400, 'invalid-json' ],
        [ 'models/brk/breakers/v2', { state => 'open', reason => "a\nb" }, 400, 'invalid-json' ],
    ) {
        my ($path, $body, $status, $type) = @$case;
        problem_ok(admin(nginx => $n, method => 'POST', path => $path, body => $body), $status, $type,
                   "brk: POST $path " . $JSON->encode($body));
    }
    is redis_cmd($RPORT, 'XLEN', 'aigov:audit'), $xlen, 'brk: bad requests: no audit entry';
    is_deeply [ audit_lines($n) ], [], 'brk: bad requests: no audit line';

    my $r = admin(nginx => $n, method => 'POST', path => 'models/brk/breakers/v2',
                  body => { state => 'open', open => '30s', reason => 'INC-11 v2 down' });
    json_ok($r, 'brk: force open');
    my $j = $r->{json} // {};
    is_deeply [ @$j{qw(model action node)}, dig($j, 'result.state') ], [ 'brk', 'breaker-open v2', $HOST, 'open' ],
        'brk: force open: model, action, node, result';
    is_value $j->{propagated}, $T{true}, 'brk: force open: propagated';
    is redis_cmd($RPORT, 'XLEN', 'aigov:audit'), $xlen + 1, 'brk: one audit entry';
    my @a = audit_lines($n);
    is scalar(@a), 1, 'brk: one audit line';
    like $a[0] // '', qr/aigov audit: model "brk" action "breaker-open v2" by "alice": state=closed open_ms=0 -> state=open open_ms=30000 \(reason "INC-11 v2 down"\), sent to the fleet, in redis,/,
        'brk: the audit line';

    # the fleet-wide trail: read through another node as well
    for my $via ($n, $MAIN) {
        my $g = admin(nginx => $via, path => 'audit?count=1', auth => 'read');
        json_ok($g, 'GET audit via ' . $via->name);
        my $e = (($g->{json} // {})->{audit} // [])->[0] // {};
        is_deeply { map { $_ => $e->{$_} } qw(model action by old new reason node version) },
            { model => 'brk', action => 'breaker-open v2', by => 'alice', old => 'state=closed open_ms=0',
              new => 'state=open open_ms=30000', reason => 'INC-11 v2 down', node => $HOST, version => '' },
            'GET audit via ' . $via->name . ': the forced breaker, newest';
        ok abs(($e->{time} // 0) - time) < 60, 'GET audit via ' . $via->name . ': time';
    }

    # a client that goes away while its forced breaker waits on a stopped redis
    my @pids = sort $n->worker_pids;
    $n->mark;
    redis_sigstop($RPORT);
    my @r;
    my $ok = eval {
        push @r, admin(nginx => $n, method => 'POST', path => 'models/brk/breakers/v2',
                       body => { state => 'closed' }, timeout => 0.05);
        push @r, $n->req(method => 'POST', path => '/aigov/models/brk/breakers/v2', abort => 1,
                         headers => { Authorization => "Bearer $TOKEN{write}" }, body => { state => 'half_open' });
        sleep 0.5;
        1;
    };
    redis_sigcont($RPORT);
    ok $ok, 'brk: no exception' or diag($@);
    is $r[0]{status}, 599, 'brk: the client gave up while its change waited on redis';
    ok wait_for(sub { redis_connected($n) }, timeout => 10, interval => 0.1), 'brk: redis back';
    json_ok(admin(nginx => $n, path => 'models/brk', auth => 'read'), 'brk: nginx still answers');
    is_deeply [ sort $n->worker_pids ], \@pids, 'brk: the same worker pids';
    ok !grep({ /exited on signal/ } $n->error_log_lines), 'brk: no worker crashed';
    $n->error_log_clean_ok('brk: client gone: no [error]/[crit]/[alert]');
    $n->stop;
};

subtest 'graceful stop: no connection left open' => sub {
    for my $n ($MAIN, $SOLO) {
        my $name = $n->name;
        my $log = $n->error_log_path;
        my $t0 = time;
        ok $n->stop(timeout => 10), "$name: stopped";
        ok time - $t0 < 5, sprintf("$name: graceful stop in %.1f s", time - $t0);
        open(my $fh, '<', $log) or die;
        my @bad = grep { /\[(?:alert|crit|emerg)\]|exited on signal/ } <$fh>;
        close $fh;
        is_deeply \@bad, [], "$name: no [alert]/[crit] in the whole log (as \"open socket #N left in connection N\")"
            or diag(scalar(@bad) . " lines, first: $bad[0]");
    }
};

done_testing;
