#!/usr/bin/perl
# Model identity end to end: which model a request is for (KServe v2 path,
# OpenAI body, a variable), version pins, and every problem response the
# identity step can give, against real fixture model servers.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use AigovTest;
use JSON::PP ();

my $JSON = JSON::PP->new->utf8->canonical;

start_fixture(name => 'stable',    version => '1.4.2');
start_fixture(name => 'candidate', version => '1.5.0');

my $ADD_HEADERS = <<'EOF';
        add_header X-Decision $aigov_decision always;
        add_header X-Upstream $aigov_upstream always;
        add_header X-Variant  $aigov_variant always;
        add_header X-Version  $aigov_model_version always;
        add_header X-Model    $aigov_model always;
EOF

my $n = start_nginx(nginx_conf(<<"EOF"));
    upstream stable_up    { server 127.0.0.1:%%FIXTURE_stable%%;    keepalive 8; }
    upstream candidate_up { server 127.0.0.1:%%FIXTURE_candidate%%; keepalive 8; }

    aigov_zone aigov:1m;

    aigov_model chat {
        alias   gpt-4o-mini;
        variant v1 stable_up    version=1.4.2 stable;
        variant v2 candidate_up version=1.5.0;
    }

    aigov_model embed {
        variant e1 candidate_up version=3.1;
    }

    # main server: no default model anywhere
    server {
        listen 127.0.0.1:%%PORT%%;
        client_body_buffer_size 1m;
        client_max_body_size    8m;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
$ADD_HEADERS
        location /v2/ {
            aigov_route kserve;
            proxy_pass http://\$aigov_upstream;
        }
        location /v1/ {
            aigov_route openai;
            proxy_pass http://\$aigov_upstream;
        }
        location /small/ {
            client_body_buffer_size 16k;
            aigov_route openai;
            proxy_pass http://\$aigov_upstream;
        }
        location /hdr/ {
            aigov_route model=\$http_x_model;
            proxy_pass http://\$aigov_upstream;
        }
    }

    # second server: the same routes with default=embed, and
    # merge_slashes off so that the module sees "//" in a path
    server {
        listen 127.0.0.1:%%PORT_dflt%%;
        merge_slashes off;
        client_body_buffer_size 1m;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
$ADD_HEADERS
        location / {
            aigov_route kserve default=embed;
            proxy_pass http://\$aigov_upstream;
        }
        location /v1/ {
            aigov_route openai default=embed;
            proxy_pass http://\$aigov_upstream;
        }
    }
EOF

my $DPORT = nginx_port('dflt');
my @workers = sort { $a <=> $b } $n->worker_pids;
is scalar(@workers), 2, 'two workers';

# README "Errors clients see": type => [status, title]
my %PROBLEM = (
    'invalid-request-body' => [400, 'Invalid request body'],
    'bad-model-path'       => [400, 'Bad model path'],
    'missing-model'        => [400, 'Missing model'],
    'unknown-model'        => [404, 'Unknown model'],
    'unknown-version'      => [404, 'Unknown model version'],
    'body-too-large'       => [413, 'Request body too large'],
    'model-disabled'       => [503, 'Model disabled'],
);

# A problem response: status, content type, the four RFC 9457 fields, the
# documented status for its type, and no variant headers.
sub problem_ok {
    my ($r, $status, $type, $detail, $name, %o) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    is $r->{status}, $status, "$name: status $status";
    is $r->{headers}{'content-type'}, 'application/problem+json', "$name: Content-Type";
    my $j = $r->{json};
    ok ref $j eq 'HASH', "$name: body is a JSON object" or diag "body: $r->{body} $r->{json_error}";
    $j = {} unless ref $j eq 'HASH';
    is $j->{type}, "urn:aigov:problem:$type", "$name: type";
    is $j->{title}, $PROBLEM{$type}[1], "$name: title";
    is $j->{status}, $status, "$name: status field";
    if (ref $detail) {
        like $j->{detail}, $detail, "$name: detail";
    } else {
        is $j->{detail}, $detail, "$name: detail";
    }
    is $status, $PROBLEM{$type}[0], "$name: $type has the status the README documents";
    if (exists $o{model}) {
        is $j->{model}, $o{model}, "$name: model field";
    }
    ok !exists $r->{headers}{'x-aigov-variant'}, "$name: no X-Aigov-Variant";
    ok !exists $r->{headers}{'x-served-by'}, "$name: no upstream answered";
    # no variant was chosen: $aigov_variant/_upstream/_model_version are
    # empty, and so is $aigov_decision (README: "All are empty where no
    # decision was made"; "none" is not one of its documented values)
    ok !exists $r->{headers}{"x-$_"}, "$name: \$aigov_$_ is empty"
        for qw(variant upstream version);
    is $r->{headers}{'x-decision'}, undef, "$name: \$aigov_decision is empty";
}

# A routed answer: the fixture that served it and the $aigov_* variables.
sub routed_ok {
    my ($r, $name, %e) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    is $r->{status}, 200, "$name: 200" or diag explain $r;
    my $h = $r->{headers};
    is $h->{'x-served-by'}, $e{served_by}, "$name: served by $e{served_by}";
    is $h->{'x-decision'}, $e{decision}, "$name: \$aigov_decision";
    is $h->{'x-model'}, $e{model}, "$name: \$aigov_model";
    is $h->{'x-variant'}, $e{variant}, "$name: \$aigov_variant";
    is $h->{'x-version'}, $e{version}, "$name: \$aigov_model_version";
    is $h->{'x-upstream'}, $e{upstream}, "$name: \$aigov_upstream";
    is $h->{'x-aigov-variant'}, $e{variant}, "$name: X-Aigov-Variant";
    is $h->{'x-aigov-model-version'}, $e{version}, "$name: X-Aigov-Model-Version";
}

sub group_done {
    my ($name) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    error_log_clean_ok("$name: no [error]/[crit]/[alert]/[emerg] in the error log");
    error_log_mark();
}

my %V1 = (served_by => 'stable', model => 'chat', variant => 'v1', version => '1.4.2', upstream => 'stable_up');
my %V2 = (served_by => 'candidate', model => 'chat', variant => 'v2', version => '1.5.0', upstream => 'candidate_up');
my %E1 = (served_by => 'candidate', model => 'embed', variant => 'e1', version => '3.1', upstream => 'candidate_up');

my $INFER = { id => 'r1', inputs => [{ name => 'in', shape => [2], datatype => 'FP32', data => [1, 2] }] };

# --- KServe v2 paths ---------------------------------------------------------
error_log_mark();
{
    my $r = http_req(path => '/v2/models/chat/infer', body => $INFER);
    routed_ok($r, 'kserve /v2/models/chat/infer', %V1, decision => 'stable');
    is $r->{json}{model_name}, 'chat', 'kserve: the path reaches the model server unchanged';
    is_deeply $r->{json}{outputs}[0]{data}, [1, 2], 'kserve: the body reaches the model server';

    $r = http_req(path => '/v2/models/gpt-4o-mini/infer', body => $INFER);
    routed_ok($r, 'kserve by alias', %V1, decision => 'stable');
    is $r->{json}{model_name}, 'gpt-4o-mini', 'kserve by alias: path unchanged';

    $r = http_req(path => '/v2/models/chat/versions/1.5.0/infer', body => $INFER);
    routed_ok($r, 'kserve version 1.5.0', %V2, decision => 'pinned');
    is $r->{json}{model_version}, '1.5.0', 'kserve version 1.5.0: the candidate got the versioned path';

    $r = http_req(path => '/v2/models/chat/versions/1.4.2/infer', body => $INFER);
    routed_ok($r, 'kserve version 1.4.2', %V1, decision => 'pinned');

    $r = http_req(path => '/v2/models/gpt-4o-mini/versions/1.5.0/infer', body => $INFER);
    routed_ok($r, 'kserve alias + version', %V2, decision => 'pinned');

    $r = http_get('/v2/models/chat/ready');
    routed_ok($r, 'kserve GET /v2/models/chat/ready', %V1, decision => 'stable');
    is $r->{json}{path}, '/v2/models/chat/ready', 'kserve ready: path echoed';

    $r = http_get('/v2/models/chat');
    routed_ok($r, 'kserve GET /v2/models/chat (metadata)', %V1, decision => 'stable');

    $r = http_get('/v2/models/chat/versions/1.5.0');
    routed_ok($r, 'kserve GET /v2/models/chat/versions/1.5.0', %V2, decision => 'pinned');

    $r = http_req(path => '/v2/models/chat/versions/9.9/infer', body => $INFER);
    problem_ok($r, 404, 'unknown-version', 'model "chat" has no version "9.9"', 'kserve unknown version',
               model => 'chat');

    $r = http_req(path => '/v2/models/gpt-4o-mini/versions/2.0/infer', body => $INFER);
    problem_ok($r, 404, 'unknown-version', 'model "chat" has no version "2.0"',
               'kserve unknown version by alias (canonical name in detail)', model => 'chat');

    $r = http_req(path => '/v2/models/nope/infer', body => $INFER);
    problem_ok($r, 404, 'unknown-model', 'model "nope" is not served here', 'kserve unknown model');
    ok !exists $r->{json}{model}, 'kserve unknown model: no "model" member';

    $r = http_req(path => '/v2/models/nope/versions/1.4.2/infer', body => $INFER);
    problem_ok($r, 404, 'unknown-model', 'model "nope" is not served here', 'kserve unknown model with version');

    my $bad = 'the model path is malformed: expected /v2/models/{name}[/versions/{version}]/infer';
    for my $p ('/v2/models/', '/v2/models/a%20b/infer',
               '/v2/models/' . ('m' x 129) . '/infer', '/v2/models/chat/versions/1%205/infer') {
        $r = http_req(path => $p, body => $INFER);
        problem_ok($r, 400, 'bad-model-path', $bad, "kserve malformed path " . substr($p, 0, 40));
    }

    # With merge_slashes off (second server) the module sees the empty
    # segment and says so, default= or not.
    for my $p ('/v2/models//infer', '/v2/models/chat/versions//infer') {
        $r = http_req(port => $DPORT, path => $p, body => $INFER);
        problem_ok($r, 400, 'bad-model-path', $bad, "kserve malformed path $p (merge_slashes off)");
    }

    # With nginx's defaults (merge_slashes on) nginx turns
    # "/v2/models//infer" into "/v2/models/infer" before any module sees
    # it: the README documents that this names the model "infer".
    $r = http_req(path => '/v2/models//infer', body => $INFER);
    problem_ok($r, 404, 'unknown-model', 'model "infer" is not served here',
               'kserve /v2/models//infer with merge_slashes on');
    $r = http_req(path => '/v2/models/chat/versions//infer', body => $INFER);
    problem_ok($r, 404, 'unknown-version', 'model "chat" has no version "infer"',
               'kserve /v2/models/chat/versions//infer with merge_slashes on',
               model => 'chat');

    # a model name of exactly 128 characters is valid: unknown, not malformed
    $r = http_req(path => '/v2/models/' . ('m' x 128) . '/infer', body => $INFER);
    problem_ok($r, 404, 'unknown-model', 'model "' . ('m' x 128) . '" is not served here',
               'kserve 128-character unknown model');

    # paths that name no model
    $r = http_get('/v2/health/ready');
    problem_ok($r, 404, 'unknown-model',
               'no model named: expected /v2/models/{name}[/versions/{version}]/infer',
               'kserve non-model path without default=');

    $r = http_req(port => $DPORT, path => '/v2/health/ready');
    routed_ok($r, 'kserve non-model path with default=embed', %E1, decision => 'stable');
    is $r->{json}{path}, '/v2/health/ready', 'kserve default: path echoed';

    $r = http_req(port => $DPORT, path => '/v2/models/chat/infer', body => $INFER);
    routed_ok($r, 'kserve model path with default= still uses the path', %V1, decision => 'stable');

    $r = http_req(port => $DPORT, path => '/v2/models/a%20b/infer', body => $INFER);
    problem_ok($r, 400, 'bad-model-path', $bad, 'kserve malformed path with default=');

    $r = http_req(port => $DPORT, path => '/v2/models/nope/infer', body => $INFER);
    problem_ok($r, 404, 'unknown-model', 'model "nope" is not served here', 'kserve unknown model with default=');
}
group_done('kserve');

# --- OpenAI body ---------------------------------------------------------------
my $CHAT = { model => 'chat', messages => [{ role => 'user', content => 'hi' }] };

sub post_raw {
    my ($path, $body, %o) = @_;
    return http_req(method => 'POST', path => $path, body => $body,
                    headers => { 'Content-Type' => 'application/json' }, %o);
}

{
    my $body = $JSON->encode($CHAT);
    my $r = post_raw('/v1/chat/completions', $body);
    routed_ok($r, 'openai model "chat"', %V1, decision => 'stable');
    is $r->{json}{object}, 'chat.completion', 'openai: a chat completion';
    is $r->{json}{model}, 'chat', 'openai: the body reached the model server (model field)';
    is $r->{json}{body_bytes}, length($body), 'openai: the body reached the model server (length)';

    $body = $JSON->encode({ %$CHAT, model => 'gpt-4o-mini' });
    $r = post_raw('/v1/chat/completions', $body);
    routed_ok($r, 'openai alias', %V1, decision => 'stable');
    is $r->{json}{model}, 'gpt-4o-mini', 'openai alias: body unchanged';

    $r = post_raw('/v1/embeddings', '{"model":"embed","input":"x"}');
    routed_ok($r, 'openai model "embed"', %E1, decision => 'stable');
    is $r->{json}{path}, '/v1/embeddings', 'openai embed: path echoed';

    $r = post_raw('/v1/chat/completions', $JSON->encode({ %$CHAT, model => 'nope' }));
    problem_ok($r, 404, 'unknown-model', 'model "nope" is not served here', 'openai unknown model');

    $r = post_raw('/v1/chat/completions', '{"messages":[]}');
    problem_ok($r, 400, 'invalid-request-body', 'the request body has no "model" field', 'openai missing model');

    $r = http_req(port => $DPORT, method => 'POST', path => '/v1/chat/completions', body => '{"messages":[]}',
                  headers => { 'Content-Type' => 'application/json' });
    routed_ok($r, 'openai missing model with default=embed', %E1, decision => 'stable');
    is $r->{json}{body_bytes}, length('{"messages":[]}'), 'openai default: body passed on';

    $r = http_req(port => $DPORT, method => 'POST', path => '/v1/chat/completions',
                  body => '{"model":"chat"}', headers => { 'Content-Type' => 'application/json' });
    routed_ok($r, 'openai model with default= uses the body', %V1, decision => 'stable');

    for my $c (['model is a number', '{"model":5}'], ['model is null', '{"model":null}'],
               ['model is an object', '{"model":{"name":"chat"}}'], ['model is an array', '{"model":["chat"]}'],
               ['model is true', '{"model":true}']) {
        $r = post_raw('/v1/chat/completions', $c->[1]);
        problem_ok($r, 400, 'invalid-request-body', 'the "model" field is not a string', "openai $c->[0]");
    }

    $r = http_req(port => $DPORT, method => 'POST', path => '/v1/chat/completions', body => '{"model":5}',
                  headers => { 'Content-Type' => 'application/json' });
    problem_ok($r, 400, 'invalid-request-body', 'the "model" field is not a string',
               'openai model not a string, default= does not apply');

    for my $c (['model with a space', '{"model":"a b"}'], ['model with a slash', '{"model":"org/chat"}'],
               ['empty model', '{"model":""}'], ['model of 129 chars', '{"model":"' . ('m' x 129) . '"}']) {
        $r = post_raw('/v1/chat/completions', $c->[1]);
        problem_ok($r, 400, 'invalid-request-body', 'the "model" field is not a valid model name', "openai $c->[0]");
    }

    $r = post_raw('/v1/chat/completions', '');
    problem_ok($r, 400, 'invalid-request-body', 'the request body is empty', 'openai empty body');

    # a request without a body (OpenAI's GET /v1/models) uses default=
    $r = http_req(port => $DPORT, path => '/v1/models');
    is $r->{status}, 200, 'openai GET /v1/models with default= goes to the default model';
    is $r->{headers}{'x-model'}, 'embed', 'openai GET /v1/models with default=: model embed';

    $r = http_req(method => 'POST', path => '/v1/chat/completions', content_length => 0);
    problem_ok($r, 400, 'invalid-request-body', 'the request body is empty', 'openai POST without a body');

    for my $c (['array', '[{"model":"chat"}]'], ['string', '"chat"'], ['number', '42'], ['null', 'null'],
               ['true', 'true']) {
        $r = post_raw('/v1/chat/completions', $c->[1]);
        problem_ok($r, 400, 'invalid-request-body', 'the request body is not a JSON object',
                   "openai body is a JSON $c->[0]");
    }

    for my $c (['malformed JSON', '{"model":'],
               ['not JSON at all', 'model=chat'],
               ['truncated JSON', '{"model":"chat","messages":[{"role":"user","content":"hel'],
               ['trailing garbage', '{"model":"chat"} {"model":"x"}'],
               ['trailing text', '{"model":"chat"}xyz'],
               ['single quotes', "{'model':'chat'}"],
               ['duplicate keys', '{"model":"chat","model":"nope"}'],
               ['invalid UTF-8', "{\"model\":\"chat\",\"x\":\"\xff\xfe\"}"]) {
        $r = post_raw('/v1/chat/completions', $c->[1]);
        problem_ok($r, 400, 'invalid-request-body', qr/^invalid JSON at byte \d+: \S/, "openai $c->[0]");
    }

    $r = post_raw('/v1/chat/completions', '{"model":"chat","model":"chat"}');
    like $r->{json}{detail} // '', qr/duplicate/i, 'openai duplicate keys: detail says "duplicate"';

    # whitespace around a valid document is fine
    $r = post_raw('/v1/chat/completions', "\n  {\"model\" : \"chat\"}  \r\n");
    routed_ok($r, 'openai JSON with surrounding whitespace', %V1, decision => 'stable');
}
group_done('openai body');

# --- body sizes and transfer encodings ----------------------------------------------
{
    # 500 KB: fits in client_body_buffer_size 1m
    my $filler = 'x' x (500 * 1024);
    my $body = '{"model":"chat","input":"' . $filler . '"}';
    my $r = post_raw('/v1/embeddings', $body);
    routed_ok($r, 'openai 500 KB body', %V1, decision => 'stable');
    is $r->{json}{body_bytes}, length($body), 'openai 500 KB body: the model server got every byte';
    is $r->{json}{model}, 'chat', 'openai 500 KB body: and could parse it';

    # model field at the end of a large body
    $body = '{"input":"' . $filler . '","model":"gpt-4o-mini"}';
    $r = post_raw('/v1/embeddings', $body);
    routed_ok($r, 'openai 500 KB body, model last', %V1, decision => 'stable');
    is $r->{json}{body_bytes}, length($body), 'openai 500 KB body, model last: every byte';

    # 1.5 MB: larger than client_body_buffer_size (but allowed by client_max_body_size)
    $body = '{"model":"chat","input":"' . ('y' x (1536 * 1024)) . '"}';
    $r = post_raw('/v1/embeddings', $body);
    problem_ok($r, 413, 'body-too-large',
        "the request body is larger than this location's client_body_buffer_size; the model cannot be read from it",
        'openai 1.5 MB body');

    # the same in a location with a 16k buffer (nginx keeps bodies up to
    # 1.25 x client_body_buffer_size in memory: 30000 bytes is well over)
    $body = '{"model":"chat","input":"' . ('z' x 30000) . '"}';
    $r = post_raw('/small/x', $body);
    problem_ok($r, 413, 'body-too-large', qr/larger than this location's client_body_buffer_size/,
               'openai 30 KB body with a 16k buffer');
    $r = post_raw('/small/x', '{"model":"chat","input":"' . ('z' x 10000) . '"}');
    routed_ok($r, 'openai 10 KB body with a 16k buffer', %V1, decision => 'stable');

    # connection still usable after a 413
    $r = post_raw('/v1/chat/completions', '{"model":"chat"}');
    is $r->{status}, 200, 'a request after the 413s works';
}
group_done('body sizes');

{
    my @chunks = ('{"mod', 'el":"gpt-4o', '-mini","messages":', '[{"role":"user","content":"hi"}]}');
    my $r = http_req(method => 'POST', path => '/v1/chat/completions', chunks => \@chunks,
                     headers => { 'Content-Type' => 'application/json' });
    routed_ok($r, 'openai chunked body (4 chunks)', %V1, decision => 'stable');
    is $r->{json}{body_bytes}, length(join '', @chunks), 'openai chunked: the model server got every byte';
    is $r->{json}{model}, 'gpt-4o-mini', 'openai chunked: model as sent';

    # many small chunks
    my $doc = $JSON->encode({ model => 'chat', input => 'q' x 5000 });
    @chunks = unpack('(A7)*', $doc);
    $r = http_req(method => 'POST', path => '/v1/embeddings', chunks => \@chunks,
                  headers => { 'Content-Type' => 'application/json' });
    routed_ok($r, 'openai chunked body (' . scalar(@chunks) . ' chunks)', %V1, decision => 'stable');
    is $r->{json}{body_bytes}, length($doc), 'openai many chunks: every byte';

    # a large chunked body (300 KB in 64 KB chunks)
    $doc = $JSON->encode({ model => 'chat', input => 'c' x (300 * 1024) });
    @chunks = unpack('(a65536)*', $doc);
    $r = http_req(method => 'POST', path => '/v1/embeddings', chunks => \@chunks,
                  headers => { 'Content-Type' => 'application/json' });
    routed_ok($r, 'openai chunked 300 KB body', %V1, decision => 'stable');
    is $r->{json}{body_bytes}, length($doc), 'openai chunked 300 KB: every byte';

    # chunked and larger than the buffer
    $doc = $JSON->encode({ model => 'chat', input => 'c' x 20000 });
    @chunks = unpack('(a4096)*', $doc);
    $r = http_req(method => 'POST', path => '/small/x', chunks => \@chunks,
                  headers => { 'Content-Type' => 'application/json' });
    problem_ok($r, 413, 'body-too-large', qr/client_body_buffer_size/, 'openai chunked body over a 16k buffer');

    # chunked, invalid JSON split over chunks
    $r = http_req(method => 'POST', path => '/v1/chat/completions', chunks => ['{"model"', ':"chat"', ',}'],
                  headers => { 'Content-Type' => 'application/json' });
    problem_ok($r, 400, 'invalid-request-body', qr/^invalid JSON at byte \d+: /, 'openai chunked invalid JSON');

    # chunked, empty
    $r = http_req(method => 'POST', path => '/v1/chat/completions', chunks => [],
                  headers => { 'Content-Type' => 'application/json' });
    problem_ok($r, 400, 'invalid-request-body', 'the request body is empty', 'openai chunked empty body');
}
group_done('chunked bodies');

# --- clients that go away ---------------------------------------------------------------
{
    # Content-Length larger than what is sent, then close
    for my $i (1 .. 3) {
        my $r = http_req(method => 'POST', path => '/v1/chat/completions', body => '{"model":"chat","mess',
                         content_length => 5000, abort => 1,
                         headers => { 'Content-Type' => 'application/json' });
        ok $r->{aborted}, "short body + close #$i: sent";
    }
    ok wait_for_log(qr/client prematurely closed connection/, timeout => 5),
        'short body + close: nginx noticed the client going away';

    # the same with a half-close (EOF while reading the body, still reading the answer)
    my $r = http_req(method => 'POST', path => '/v1/chat/completions', body => '{"model":"chat"',
                     content_length => 5000, half_close => 1, timeout => 5,
                     headers => { 'Content-Type' => 'application/json' });
    ok $r->{status} == 400 || $r->{status} == 599, "short body + half-close: 400 or no answer (got $r->{status})";

    # a large body cut short
    $r = http_req(method => 'POST', path => '/v1/embeddings', body => '{"model":"chat","input":"' . ('a' x 200000),
                  content_length => 900000, abort => 1, headers => { 'Content-Type' => 'application/json' });
    ok $r->{aborted}, 'large short body + close: sent';
    select(undef, undef, undef, 0.5);

    my @loud = grep { /\[(?:warn|error|crit|alert|emerg)\]/ } error_log_lines();
    is_deeply \@loud, [], 'clients that go away: nginx logs them at info at most';

    $r = post_raw('/v1/chat/completions', '{"model":"chat"}');
    is $r->{status}, 200, 'clients that go away: nginx still answers';
    ok $n->alive, 'clients that go away: nginx is alive';
}
group_done('clients that go away');

# --- model=$http_x_model ---------------------------------------------------------------
{
    my $r = http_req(path => '/hdr/anything', headers => { 'X-Model' => 'chat' });
    routed_ok($r, 'model=$http_x_model: chat', %V1, decision => 'stable');
    is $r->{json}{path}, '/hdr/anything', 'model=$var: path echoed';

    $r = http_req(path => '/hdr/anything', headers => { 'X-Model' => 'gpt-4o-mini' });
    routed_ok($r, 'model=$http_x_model: alias', %V1, decision => 'stable');

    $r = http_req(path => '/hdr/anything', headers => { 'X-Model' => 'embed' });
    routed_ok($r, 'model=$http_x_model: embed', %E1, decision => 'stable');

    $r = http_req(path => '/hdr/anything', headers => { 'X-Model' => 'nope' });
    problem_ok($r, 404, 'unknown-model', 'model "nope" is not served here', 'model=$http_x_model: unknown');

    $r = http_req(path => '/hdr/anything', headers => { 'X-Model' => 'CHAT' });
    problem_ok($r, 404, 'unknown-model', 'model "CHAT" is not served here',
               'model=$http_x_model: names are case-sensitive');

    $r = http_req(path => '/hdr/anything', headers => { 'X-Model' => 'a"b\\c' });
    problem_ok($r, 404, 'unknown-model', 'model "a"b\\c" is not served here',
               'model=$http_x_model: quotes and backslashes are escaped in the JSON');

    $r = http_req(path => '/hdr/anything', headers => { 'X-Model' => 'x' x 300 });
    problem_ok($r, 404, 'unknown-model', 'model "' . ('x' x 128) . '" is not served here',
               'model=$http_x_model: a 300-byte name is cut to 128 in the detail');

    $r = http_req(path => '/hdr/anything', headers => { 'X-Model' => '' });
    ok $r->{status} >= 400, 'model=$http_x_model: empty header is refused';

    # no header: the request names no model
    $r = http_req(path => '/hdr/anything');
    problem_ok($r, 400, 'missing-model', 'the request names no model',
               'model=$http_x_model: header missing');
}
group_done('model=$http_x_model');

# --- no worker crashed ---------------------------------------------------------------------
{
    my @now = sort { $a <=> $b } $n->worker_pids;
    is_deeply \@now, \@workers, 'the same workers as at the start (none crashed or respawned)';
    my @crash = grep { /exited on signal|worker process \d+ exited/ } error_log_lines(all => 1);
    is_deeply \@crash, [], 'no "exited on signal" in the error log';
    ok $n->alive, 'nginx master alive';
}

done_testing;
