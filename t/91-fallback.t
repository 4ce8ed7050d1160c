#!/usr/bin/perl
# The fallback rules of the core, without a breaker: the kill switch answers
# from the rules; an upstream that refuses the connection, resets it or
# times out before its response header is replaced by the rules; an
# upstream's own error response, a model without rules and an answer the
# rules do not cover are left alone.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use AigovTest;
use Time::HiRes qw(sleep);

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

$ng->error_log_clean_ok('error log: only the upstream errors the test caused',
    allow => [ qr/connect\(\) failed \(111: Connection refused\)/,
               qr/upstream timed out/,
               qr/recv\(\) failed \(104: Connection reset by peer\)/,
               qr/upstream prematurely closed connection/ ]);

done_testing;
