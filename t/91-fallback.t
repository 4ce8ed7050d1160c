#!/usr/bin/perl
# The fallback rules of the core: the kill switch answers from the rules; an
# upstream that refuses the connection, resets it or times out before its
# response header is replaced by the rules; an upstream's own error
# response, a model without rules and an answer the rules do not cover are
# left alone.  Rules over the body read it only when they answer (kill
# switch, open breaker): bodies late, chunked, large, not JSON, absent, cut
# short or too large; a fallback variant reads none.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use AigovTest;
use Time::HiRes qw(sleep time);
use IO::Socket::INET;

start_fixture(name => 'stable', version => '1.4.2');
my $nowhere = fixture_port('nowhere');    # never started: connection refused

my $TMP = tmp_dir();

sub spew {
    my ($file, $text) = @_;
    open(my $fh, '>', "$TMP/$file") or die "$file: $!";
    print {$fh} $text;
    close $fh;
}

spew('rules.json', <<'EOF');
{
  "rules": [
    { "name": "echo", "when": { "field": "$.task", "eq": "echo" },
      "status": 200,
      "response": { "echo": "${$.input}", "reason": "${@reason}" } },
    { "name": "off", "when": { "field": "@reason", "eq": "kill_switch" },
      "status": 503,
      "response": { "error": "switched off", "reason": "${@reason}", "model": "${@model}" } },
    { "name": "slow", "when": { "field": "@reason", "eq": "upstream_timeout" },
      "status": 200, "headers": { "X-Rule": "timeout" },
      "response": { "fallback": true, "reason": "${@reason}", "variant": "${@variant}" } }
  ],
  "default": { "status": 502, "response": { "fallback": true, "reason": "${@reason}" } }
}
EOF

mkdir "$TMP/www" or die;
mkdir "$TMP/www/static" or die;
spew('www/static/x', "static\n");

# no default, nothing matches a GET
spew('narrow.json', <<'EOF');
{ "rules": [ { "name": "posts", "when": { "field": "@method", "eq": "POST" },
               "status": 200, "response": { "posted": true } } ] }
EOF

my $ng = start_nginx(nginx_conf(<<"EOF"));
    upstream u_stable  { server 127.0.0.1:%%FIXTURE_stable%%; keepalive 16; }
    upstream u_nowhere { server 127.0.0.1:%%FIXTURE_nowhere%%; }

    aigov_zone fb:1m;

    aigov_model off {
        variant v1 u_stable version=1.4.2;
        kill_switch on retry_after=40s;
        fallback_rules $TMP/rules.json;
    }

    aigov_model offnarrow {
        variant v1 u_stable version=1.4.2;
        kill_switch on;
        fallback_rules $TMP/narrow.json;
    }

    aigov_model down {
        variant v1 u_nowhere version=2.0.0;
        fallback_rules $TMP/rules.json;
    }

    aigov_model live {
        variant v1 u_stable version=1.4.2;
        fallback_rules $TMP/rules.json;
    }

    aigov_model norules {
        variant v1 u_nowhere version=2.0.0;
    }

    # the first connect error trips it: then the rules answer breaker_open
    aigov_model brk {
        variant v1 u_nowhere version=2.0.0;
        breaker consecutive_failures=1 open=1h;
        fallback_rules $TMP/rules.json;
    }

    # v2 trips the same way; v1 takes its requests, no rule answers
    aigov_model brkfb {
        variant v1 u_stable  version=1.4.2 stable;
        variant v2 u_nowhere version=2.0.0;
        canary  v2 0%;
        canary_header X-Canary;
        breaker variant=v2 consecutive_failures=1 open=1h;
        fallback v1;
        fallback_rules $TMP/rules.json;
    }

    server {
        listen 127.0.0.1:%%PORT%%;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        client_body_buffer_size 64k;
        add_header X-Fallback \$aigov_fallback always;
        add_header X-Fallback-Rule \$aigov_fallback_rule always;
        add_header X-Decision \$aigov_decision always;

        location /m/ {
            aigov_route model=\$arg_m;
            proxy_read_timeout 300ms;
            proxy_pass http://\$aigov_upstream;
        }

        # a 64 KiB body goes to a temporary file here
        location /small/ {
            aigov_route model=\$arg_m;
            client_body_buffer_size 8k;
            proxy_pass http://\$aigov_upstream;
        }

        location /short/ {
            aigov_route model=\$arg_m;
            client_body_timeout 300ms;
            client_max_body_size 1k;
            proxy_pass http://\$aigov_upstream;
        }

        # nothing reads the body of a GET of a static file
        location /static/ {
            aigov_route model=\$arg_m;
            root $TMP/www;
            add_header X-Request-Body \$request_body always;
        }
    }
EOF

sub req {
    my ($model, %o) = @_;
    return http_req(path => "/m/x?m=$model", timeout => 5, %o);
}

# [status, X-Aigov-Fallback, X-Aigov-Fallback-Rule, $aigov_fallback, $aigov_fallback_rule,
#  X-Aigov-Variant, X-Served-By]
sub fb {
    my ($r) = @_;
    my $h = $r->{headers};
    return [ $r->{status}, $h->{'x-aigov-fallback'}, $h->{'x-aigov-fallback-rule'}, $h->{'x-fallback'},
             $h->{'x-fallback-rule'}, $h->{'x-aigov-variant'}, $h->{'x-served-by'} ];
}

$ng->mark;

# --- the kill switch answers from the rules ----------------------------------

{
    my $r = req('off');
    is_deeply fb($r), [ 503, 'kill_switch', 'off', 'kill_switch', 'off', undef, undef ],
        'kill switch + rules: rule "off" answers, marked as a fallback';
    is_deeply $r->{json}, { error => 'switched off', reason => 'kill_switch', model => 'off' },
        'kill switch + rules: the templated body';
    is $r->{headers}{'content-type'}, 'application/json', 'kill switch + rules: application/json';
    is $r->{headers}{'retry-after'}, 40, 'kill switch + rules: a 503 rule without Retry-After gets the kill switch\'s';
    is $r->{headers}{'x-decision'}, 'kill', 'kill switch + rules: decision kill';
}
{
    my $r = req('off', body => { task => 'echo', input => [1, 2] });
    is_deeply fb($r), [ 200, 'kill_switch', 'echo', 'kill_switch', 'echo', undef, undef ],
        'kill switch + rules over the request body: rule "echo"';
    is_deeply $r->{json}, { echo => [1, 2], reason => 'kill_switch' }, 'kill switch: "${$.input}" keeps its JSON type';
    is $r->{headers}{'retry-after'}, undef, 'kill switch: a 200 from a rule has no Retry-After';
}
{
    my $r = req('offnarrow');
    is_deeply [ $r->{status}, $r->{headers}{'content-type'}, $r->{json}{type}, $r->{headers}{'retry-after'},
                $r->{headers}{'x-aigov-fallback'}, $r->{headers}{'x-aigov-fallback-rule'} ],
        [ 503, 'application/problem+json', 'urn:aigov:problem:model-disabled', 30, 'kill_switch', undef ],
        'kill switch, no rule matches, no default: the problem response';
    is_deeply req('offnarrow', method => 'POST', body => '{}')->{json}, { posted => JSON::PP::true },
        'kill switch, the narrow rule matches a POST';
}

# --- an upstream that refuses the connection: replaced -------------------------

{
    my $r = req('down');
    is_deeply fb($r), [ 502, 'upstream_error', 'default', 'upstream_error', 'default', undef, undef ],
        'connection refused + rules: the default answers (upstream_error)';
    is_deeply $r->{json}, { fallback => JSON::PP::true, reason => 'upstream_error' },
        'connection refused: the rule\'s body, not nginx\'s error page';
    is $r->{headers}{'content-type'}, 'application/json', 'connection refused: application/json';
    is $r->{headers}{'retry-after'}, undef, 'connection refused: no Retry-After';
    is $r->{headers}{'content-length'}, length($r->{body}), 'connection refused: Content-Length of the rule\'s body';
}
{
    my $r = req('down', body => { task => 'echo', input => 'hello' });
    is_deeply [ $r->{status}, $r->{json}{echo}, $r->{json}{reason} ], [ 200, 'hello', 'upstream_error' ],
        'connection refused, POST: rule "echo" over the body';
}
{
    my $r = req('down', method => 'HEAD');
    is_deeply [ $r->{status}, $r->{headers}{'x-aigov-fallback'}, $r->{body} ], [ 502, 'upstream_error', '' ],
        'connection refused, HEAD: replaced, no body';
}

# --- reset and timeout before the header: replaced --------------------------------

{
    my $r = req('live', headers => [ 'X-Fixture-Reset' => 1 ]);
    is_deeply fb($r), [ 502, 'upstream_error', 'default', 'upstream_error', 'default', undef, undef ],
        'reset before the header + rules: replaced (upstream_error)';
}
{
    my $r = req('live', headers => [ 'X-Fixture-Delay' => 700 ]);
    is_deeply fb($r), [ 200, 'upstream_timeout', 'slow', 'upstream_timeout', 'slow', undef, undef ],
        'timeout before the header + rules: rule "slow" (upstream_timeout)';
    is_deeply $r->{json}, { fallback => JSON::PP::true, reason => 'upstream_timeout', variant => 'v1' },
        'timeout: the templated body names the variant that timed out';
    is $r->{headers}{'x-rule'}, 'timeout', 'timeout: the rule\'s header';
}

# --- left alone ----------------------------------------------------------------------

{
    my $r = req('live', headers => [ 'X-Fixture-Status' => 500 ]);
    is_deeply fb($r), [ 500, undef, undef, undef, undef, 'v1', 'stable' ],
        'the upstream\'s own 500 (a header arrived): passed through';
    is $r->{json}{error}{code}, 500, 'the upstream\'s own body';
}
{
    my $r = req('live', headers => [ 'X-Fixture-Stream' => 3, 'X-Fixture-Stream-Interval' => 200 ]);
    is $r->{status}, 200, 'a stream slower than proxy_read_timeout per chunk is fine while it flows';
}
{
    my $r = req('live');
    is_deeply fb($r), [ 200, undef, undef, undef, undef, 'v1', 'stable' ], 'a healthy upstream: untouched';
}
{
    my $r = req('norules');
    is_deeply [ $r->{status}, $r->{headers}{'x-aigov-fallback'}, $r->{headers}{'content-type'} ],
        [ 502, undef, 'text/html' ], 'no rules: nginx\'s own 502';
}

# --- rules over the body read it when they answer, not before the decision -----

sub static_req {
    my ($model, %o) = @_;
    return http_req(path => "/static/x?m=$model", method => 'GET', timeout => 5, %o);
}

# sends the request head and the body apart, $pause seconds between them
# (undef body: closes after the head); returns [status, body] or [] when
# the connection closed without a response
sub split_req {
    my (%o) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $ng->port, Proto => 'tcp',
                                  Timeout => 5) or die "connect: $!";
    my $len = $o{length} // length($o{body} // '');
    print {$s} "POST $o{path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
             . "Content-Type: application/json\r\nContent-Length: $len\r\n\r\n" . ($o{head_body} // '');
    sleep $o{pause} // 0.3;
    if (!defined $o{body}) {
        close $s;
        return [];
    }
    print {$s} $o{body};
    my ($res, $buf) = ('');
    my $deadline = time + 5;
    while (time < $deadline) {
        my $rin = '';
        vec($rin, fileno($s), 1) = 1;
        last unless select(my $r = $rin, undef, undef, $deadline - time);
        last unless sysread($s, $buf, 65536);
        $res .= $buf;
    }
    close $s;
    return [] unless $res =~ m{^HTTP/1\.1 (\d+).*?\r\n\r\n(.*)}s;
    return [ $1, $2 ];
}

my $workers = join ',', sort { $a <=> $b } $ng->worker_pids;

{
    my $r = static_req('live', body => { task => 'echo', input => 'hi' });
    is_deeply [ $r->{status}, $r->{body}, $r->{headers}{'x-request-body'} ], [ 200, "static\n", undef ],
        'rules over the body, model up: the body is not read before the decision ($request_body unset)';
}
{
    my $r = static_req('off', body => { task => 'echo', input => 'hi' });
    is_deeply [ $r->{status}, $r->{json}{echo}, $r->{headers}{'x-aigov-fallback-rule'} ], [ 200, 'hi', 'echo' ],
        'kill switch: the rules read the body when they answer';
    like $r->{headers}{'x-request-body'} // '', qr/"task":"echo"/, 'kill switch: $request_body is the body read';
}

# trip the breaker: the connect error is answered from the body nginx read
# for the upstream
{
    my $r = req('brk', body => { task => 'echo', input => 'first' });
    is_deeply [ @{ fb($r) }[0 .. 2], $r->{json}{echo} ], [ 200, 'upstream_error', 'echo', 'first' ],
        'breaker model, connect error: rule "echo" over the body the upstream was sent';
}

# per model: the reason, and what answers when no rule over the body does
my %NOBODY = (
    off => [ 503, 'off',     { error => 'switched off', reason => 'kill_switch', model => 'off' } ],
    brk => [ 502, 'default', { fallback => JSON::PP::true, reason => 'breaker_open' } ],
);
my %REASON = (off => 'kill_switch', brk => 'breaker_open');

for my $m (qw(off brk)) {
    my $why = $REASON{$m};
    my $nobody = sub {
        my ($r) = @_;
        return [ $r->{status}, $r->{headers}{'x-aigov-fallback'}, $r->{headers}{'x-aigov-fallback-rule'},
                 $r->{json} ];
    };
    my @NOBODY = ($NOBODY{$m}[0], $why, @{ $NOBODY{$m} }[1, 2]);
    {
        my $r = req($m, body => { task => 'echo', input => { a => [1, 2] } });
        is_deeply fb($r), [ 200, $why, 'echo', $why, 'echo', undef, undef ],
            "$m ($why): rule \"echo\" over the body";
        is_deeply $r->{json}, { echo => { a => [1, 2] }, reason => $why }, "$m: the request field in the template";
        is $r->{headers}{'x-decision'}, $m eq 'off' ? 'kill' : 'stable', "$m: \$aigov_decision";
    }
    is_deeply $nobody->(req($m)), \@NOBODY, "$m: a GET without a body: the rule not over the body";
    is_deeply $nobody->(req($m, method => 'POST', body => 'task=echo&input=1')), \@NOBODY,
        "$m: a body that is not JSON: every \$ path is missing";
    {
        my $r = req($m, chunks => [ '{"task":', '"echo","inp', 'ut":"chunked"}' ],
                    headers => [ 'Content-Type' => 'application/json' ]);
        is_deeply [ $r->{status}, $r->{json}{echo} ], [ 200, 'chunked' ], "$m: a chunked body";
    }
    is_deeply split_req(path => "/m/x?m=$m", body => '{"task":"echo","input":"late"}'),
        [ 200, qq({"echo":"late","reason":"$why"}\n) ], "$m: a body that arrives 300ms after the head";
    {
        my $big = { task => 'echo', input => 'big', pad => 'x' x 65536 };
        my $r = req($m, body => $big);
        is_deeply [ $r->{status}, $r->{json}{echo} ], [ 200, 'big' ],
            "$m: a 64 KiB body within client_body_buffer_size 64k: in memory, read";
        $r = http_req(path => "/small/x?m=$m", body => $big, timeout => 5);
        is_deeply $nobody->($r), \@NOBODY,
            "$m: a 64 KiB body over client_body_buffer_size 8k: in a temp file, the rules see none";
    }

    # errors reading the body: nginx's own handling
    $ng->mark;
    is_deeply split_req(path => "/m/x?m=$m", length => 100, head_body => '{"task":'), [],
        "$m: a client that closes before its body is in";
    ok $ng->wait_for_log(qr/\[info\].*client prematurely closed connection/),
        "$m: [info] client prematurely closed connection";
    {
        my $t0 = time;
        is_deeply split_req(path => "/short/x?m=$m", length => 100, head_body => '{"task":',
                            body => '', pause => 0),
            [], "$m: a body that stops coming: client_body_timeout closes the connection";
        ok time - $t0 < 3, sprintf('%s: closed after %.1fs (client_body_timeout 300ms)', $m, time - $t0);
    }
    {
        my $r = http_req(path => "/short/x?m=$m", chunks => [ '{"pad":"' . ('x' x 2000) . '"}' ],
                         keepalive => 0, timeout => 5);
        is $r->{status}, 413, "$m: a chunked body over client_max_body_size: 413";
    }
    is req($m, body => { task => 'echo', input => 'after' })->{json}{echo}, 'after', "$m: and the next request";
}

# a fallback variant takes the request: no rule, no body read
{
    my @C = ('X-Canary' => 'always');
    is req('brkfb', headers => [ @C ])->{headers}{'x-aigov-fallback'}, 'upstream_error',
        'brkfb: v2 refuses the connection, the rules answer, its breaker trips';
    my $r = req('brkfb', headers => [ @C ], body => { task => 'echo', input => 'x' });
    is_deeply fb($r), [ 200, 'breaker_open', undef, 'breaker_open', undef, 'v1', 'stable' ],
        'brkfb: v2 open: v1 answers, no rule';
    $r = static_req('brkfb', headers => [ @C ], body => { task => 'echo', input => 'x' });
    is_deeply [ $r->{status}, $r->{body}, $r->{headers}{'x-aigov-fallback'}, $r->{headers}{'x-request-body'} ],
        [ 200, "static\n", 'breaker_open', undef ], 'brkfb: v1 takes it: the body is not read';
}

is join(',', sort { $a <=> $b } $ng->worker_pids), $workers, 'the same workers as before: none crashed';

$ng->error_log_clean_ok('error log: only the upstream errors the test caused',
    allow => [ qr/connect\(\) failed \(111: Connection refused\)/,
               qr/upstream timed out/,
               qr/recv\(\) failed \(104: Connection reset by peer\)/,
               qr/upstream prematurely closed connection/,
               qr/client intended to send too large chunked body/ ]);

done_testing;
