#!/usr/bin/perl
# A real client: the official OpenAI Node SDK (npm package "openai", pinned
# in tools/openai-sdk) pointed at nginx (baseURL http://127.0.0.1:PORT/v1,
# the fixture model behind it).  On a 429 from aigov_limit it waits as
# retry-after-ms says (measured between its attempts in nginx's access log)
# and then succeeds; x-should-retry: false stops it at once; a streamed
# completion with stream_options.include_usage is charged its usage.
# Skipped only when npm cannot fetch the SDK from the registry.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use AigovTest;
use JSON::PP ();
use Time::HiRes qw(time sleep);

my $JSON = JSON::PP->new->utf8->canonical;
my $ROOT = repo_root();

my $out = `'$ROOT/tools/openai-sdk' 2>&1`;
my $rc = $? >> 8;
if ($rc == 3) {
    plan skip_all => "npm could not install the openai SDK (registry unreachable?): "
        . join(' ', grep { /ERR|error/i } split /\n/, $out);
}
is $rc, 0, 'tools/openai-sdk: the SDK is installed' or BAIL_OUT("tools/openai-sdk failed: $out");
my ($NODE_PATH) = grep { m{/node_modules$} } split /\n/, $out;
ok -d "$NODE_PATH/openai", "openai SDK in $NODE_PATH";

start_fixture(name => 'stable', version => '1.4.2');

my $ng = start_nginx(nginx_conf(<<'EOF', workers => 1));
    upstream u_stable { server 127.0.0.1:%%FIXTURE_stable%%; keepalive 8; }

    aigov_zone        az:1m;
    aigov_limit_zone  rl:1m;

    aigov_model chat { variant v1 u_stable version=1.4.2 stable; }

    log_format sdk '$msec $status $request_uri "$http_x_stainless_retry_count" '
                   '"$sent_http_retry_after_ms" "$sent_http_x_should_retry" '
                   '"$aigov_limit_tokens"';

    server {
        listen 127.0.0.1:%%PORT%%;
        access_log %%TMP%%/logs/sdk.log sdk;
        client_body_buffer_size 64k;
        proxy_http_version 1.1;
        proxy_set_header Connection "";

        # one request per 3 seconds per API key: the SDK's own backoff
        # (0.5s x jitter) could not pass it, only retry-after-ms can
        location /v1/ {
            aigov_route openai;
            aigov_limit per-key zone=rl key=$http_authorization rate=1r/3s;
            proxy_pass http://$aigov_upstream;
        }

        location /never/v1/ {
            aigov_route openai;
            aigov_limit tpm zone=rl key=$http_authorization rate=1000t/m
                        estimate=max_tokens;
            proxy_pass http://$aigov_upstream/v1/chat/completions;
        }

        location /stream/v1/ {
            aigov_route openai;
            aigov_limit tpm-stream zone=rl key=$http_authorization
                        rate=100000t/m;
            proxy_pass http://$aigov_upstream/v1/chat/completions;
        }

        location = /status {
            aigov_status;
        }
    }
EOF

my $BASE = 'http://127.0.0.1:' . $ng->port;

# Runs a Node script with the SDK; it prints one JSON document.
sub node_run {
    my ($name, $js) = @_;
    my $file = tmp_dir() . "/conf/$name.js";
    open(my $fh, '>', $file) or die "$file: $!";
    print {$fh} "const OpenAI = require('openai');\n$js";
    close $fh;
    local $ENV{NODE_PATH} = $NODE_PATH;
    my $t0 = time;
    my $o = `node '$file' 2>&1`;
    my $res = eval { $JSON->decode((grep { /^\{/ } split /\n/, $o)[-1] // '') };
    return $res // { error => "node: $o" }, time - $t0;
}

sub log_lines {
    open(my $fh, '<', tmp_dir() . '/logs/sdk.log') or return ();
    return map { chomp; [/^(\S+) (\d+) (\S+) "([^"]*)" "([^"]*)" "([^"]*)" "([^"]*)"/] } <$fh>;
}

# --- a 429, then a wait of retry-after-ms, then success -----------------------

{
    my ($res, $took) = node_run('backoff', <<"EOF");
const client = new OpenAI({ baseURL: '$BASE/v1', apiKey: 'sk-backoff', maxRetries: 2 });
(async () => {
    const calls = [];
    for (let i = 0; i < 2; i++) {
        const t0 = Date.now();
        const r = await client.chat.completions.create({
            model: 'chat', messages: [{ role: 'user', content: 'hello' }] });
        calls.push({ ms: Date.now() - t0, content: r.choices[0].message.content });
    }
    console.log(JSON.stringify({ calls }));
})().catch(e => { console.log(JSON.stringify({ error: String(e), status: e.status })); });
EOF
    ok !$res->{error}, 'SDK: both calls succeed' or diag explain $res;
    is scalar(@{ $res->{calls} // [] }), 2, 'SDK: two completions';
    is $res->{calls}[0]{content}, 'Hello from stable 1.4.2', 'SDK: the model answered';

    my @l = grep { $_->[2] eq '/v1/chat/completions' } log_lines();
    is_deeply [map { $_->[1] } @l], [200, 429, 200], 'access log: 200, then 429, then the retried 200';
    is_deeply [map { $_->[3] } @l], [0, 0, 1], 'access log: the third is the SDK\'s retry (x-stainless-retry-count 1)';
    my $ms = $l[1][4];
    ok $ms =~ /^\d+$/ && $ms > 2500 && $ms <= 3000, "429 said retry-after-ms: $ms";
    my $gap = ($l[2][0] - $l[1][0]) * 1000;
    diag sprintf("SDK backoff: retry-after-ms %d, gap between its attempts %.0f ms", $ms, $gap);
    ok $gap >= $ms - 30, sprintf('the SDK waited at least retry-after-ms (%.0f >= %d ms)', $gap, $ms);
    ok $gap <= $ms + 1000, sprintf('... and not much longer (%.0f ms)', $gap);
    ok $res->{calls}[1]{ms} >= $ms - 30, "the second call took the wait ($res->{calls}[1]{ms} ms)";
}

# --- maxRetries 0: the error carries the headers ------------------------------

{
    my ($res) = node_run('noretry', <<"EOF");
const client = new OpenAI({ baseURL: '$BASE/v1', apiKey: 'sk-noretry', maxRetries: 0 });
(async () => {
    await client.chat.completions.create({ model: 'chat', messages: [] });
    try {
        await client.chat.completions.create({ model: 'chat', messages: [] });
        console.log(JSON.stringify({ error: 'no 429' }));
    } catch (e) {
        console.log(JSON.stringify({ status: e.status, name: e.constructor.name,
            retry_after: e.headers['retry-after'], retry_after_ms: e.headers['retry-after-ms'],
            ratelimit: e.headers['ratelimit'], policy: e.headers['ratelimit-policy'],
            remaining: e.headers['x-ratelimit-remaining-requests'] }));
    }
})().catch(e => { console.log(JSON.stringify({ error: String(e) })); });
EOF
    is $res->{status}, 429, 'SDK without retries: APIError status 429';
    is $res->{name}, 'RateLimitError', 'SDK: a RateLimitError';
    is $res->{retry_after}, '3', 'SDK sees Retry-After';
    like $res->{retry_after_ms}, qr/^\d+$/, 'SDK sees retry-after-ms';
    is $res->{policy}, '"per-key";q=1;w=3', 'SDK sees RateLimit-Policy';
    like $res->{ratelimit}, qr/^"per-key";r=0;t=3$/, 'SDK sees RateLimit';
    is $res->{remaining}, '0', 'SDK sees x-ratelimit-remaining-requests';
}

# --- x-should-retry: false -----------------------------------------------------

{
    my ($res, $took) = node_run('never', <<"EOF");
const client = new OpenAI({ baseURL: '$BASE/never/v1', apiKey: 'sk-never', maxRetries: 3 });
(async () => {
    try {
        await client.chat.completions.create({ model: 'chat', max_tokens: 5000, messages: [] });
        console.log(JSON.stringify({ error: 'no 429' }));
    } catch (e) {
        console.log(JSON.stringify({ status: e.status, should_retry: e.headers['x-should-retry'] }));
    }
})().catch(e => { console.log(JSON.stringify({ error: String(e) })); });
EOF
    is $res->{status}, 429, 'max_tokens over the limit: 429';
    is $res->{should_retry}, 'false', 'x-should-retry: false';
    my @l = grep { $_->[2] =~ m{^/never/} } log_lines();
    is scalar(@l), 1, 'the SDK did not retry (one attempt in the access log)';
    is $l[0][5], 'false', 'access log: x-should-retry false was sent';
    ok $took < 5, sprintf('the SDK gave up at once (%.1f s including node start)', $took);
}

# --- a stream with usage in its final chunk -----------------------------------

{
    my ($res) = node_run('stream', <<"EOF");
const client = new OpenAI({ baseURL: '$BASE/stream/v1', apiKey: 'sk-stream' });
(async () => {
    const stream = await client.chat.completions.create({ model: 'chat', stream: true,
        stream_options: { include_usage: true }, messages: [{ role: 'user', content: 'hi' }] });
    let chunks = 0, usage = null, text = '';
    for await (const c of stream) {
        chunks++;
        if (c.usage) usage = c.usage;
        if (c.choices && c.choices[0] && c.choices[0].delta.content) text += c.choices[0].delta.content;
    }
    console.log(JSON.stringify({ chunks, usage, text }));
})().catch(e => { console.log(JSON.stringify({ error: String(e) })); });
EOF
    ok !$res->{error}, 'SDK stream: no error' or diag explain $res;
    is $res->{chunks}, 3, 'SDK stream: 3 chunks';
    is $res->{text}, 'tok0 tok1 tok2 ', 'SDK stream: the content, unchanged';
    my $total = $res->{usage}{total_tokens};
    ok $total && $total > 0, "SDK stream: usage in the final chunk ($total tokens)";

    my $st = $ng->get('/status');
    my ($l) = grep { $_->{name} eq 'tpm-stream' } @{ $st->{json}{models}[0]{rate_limits} };
    is $l->{tokens}, $total, 'the stream was charged its usage';
    my @log = grep { $_->[2] =~ m{^/stream/} } log_lines();
    is $log[-1][6], $total, 'access log: $aigov_limit_tokens';
}

$ng->error_log_clean_ok('no unexpected errors in the error log');

done_testing;
