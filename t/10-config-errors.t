#!/usr/bin/perl
# Configuration errors: every bad config fails `nginx -t` with one precise
# [emerg] message that names the offending value (and the file:line where
# that makes sense); a few edge configs that look suspicious must pass.
#
# Data-driven: [name, http-level snippet, expected message regex].
#  - a snippet without "aigov_zone" (and without "# nozone") gets
#    "aigov_zone z:1m;" prepended;
#  - a snippet without "server {" gets a server that routes /v1/ (openai);
#  - a line marked "#<<" is where the error is: the message must point at
#    exactly that line of the generated config.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use AigovTest;

my $UPSTREAMS = <<'EOF';
    upstream u1 { server 127.0.0.1:9001; }
    upstream u2 { server 127.0.0.1:9002; }
    upstream u3 { server 127.0.0.1:9003; }
EOF

my $SERVER = <<'EOF';
    server {
        listen 127.0.0.1:%%PORT%%;
        location /v1/ {
            aigov_route openai;
            proxy_pass http://$aigov_upstream;
        }
    }
EOF

# the usual three-variant model, with extra lines
sub chat {
    my (@extra) = @_;
    return join "\n", '    aigov_model chat {',
        '        variant v1 u1 version=1.4.2 stable;',
        '        variant v2 u2 version=1.5.0;',
        '        variant v3 u3 version=1.6.0;',
        (map { "        $_" } @extra), '    }', '';
}

# a blue-green model, with extra lines
sub embed {
    my (@extra) = @_;
    return join "\n", '    aigov_model embed {',
        '        variant blue  u1 version=3.1 stable;',
        '        variant green u2 version=3.2;',
        (map { "        $_" } @extra), '    }', '';
}

sub server_with {
    my (@loc_lines) = @_;
    return join "\n", '    server {', '        listen 127.0.0.1:%%PORT%%;',
        (map { "        $_" } @loc_lines), '    }', '';
}

sub route_loc {
    my ($route) = @_;
    return ('location /r/ {', "    $route", '    proxy_pass http://$aigov_upstream;', '}');
}

sub build_conf {
    my ($snippet) = @_;
    my $body = $UPSTREAMS;
    $body .= "    aigov_zone z:1m;\n"
        unless $snippet =~ /aigov_zone/ || $snippet =~ /# nozone/;
    $body .= $snippet;
    $body .= $SERVER unless $snippet =~ /server \{/;
    my $conf = nginx_conf($body);
    my $line;
    my @lines = split /\n/, $conf;
    for my $i (0 .. $#lines) {
        if ($lines[$i] =~ /#<</) { $line = $i + 1; last }
    }
    return ($conf, $line);
}

my $W = qr/use a percentage from 0% to 100% with at most two decimals, e\.g\. "5%" or "0\.25%"/;
my $UNK = sub { qr/unknown variant "\Q$_[0]\E" in aigov_model "\Q$_[1]\E": declare it with "variant" first/ };

my @bad = (
    # --- canary weights
    ['weights over 100%', chat('canary v2 60%;', 'canary v3 50%; #<<'),
     qr/canary weights of aigov_model "chat" add up to 110%, more than 100%/],
    ['weights over 100% by 0.01%', chat('canary v2 99.99%;', 'canary v3 0.02%; #<<'),
     qr/canary weights of aigov_model "chat" add up to 100\.01%, more than 100%/],
    ['weights over 100% with fractions', chat('canary v2 50.5%;', 'canary v3 50.25%; #<<'),
     qr/canary weights of aigov_model "chat" add up to 100\.75%, more than 100%/],
    ['canary on the stable variant', chat('canary v1 5%; #<<'),
     qr/variant "v1" is the stable variant of aigov_model "chat": "canary" weights are for candidates, the stable one gets the rest/],
    ['canary weight without %', chat('canary v2 5; #<<'), qr/invalid canary weight "5": $W/],
    ['canary weight with 3 decimals', chat('canary v2 5.123%; #<<'), qr/invalid canary weight "5\.123%": $W/],
    ['canary weight 101%', chat('canary v2 101%; #<<'), qr/invalid canary weight "101%": $W/],
    ['canary weight 100.01%', chat('canary v2 100.01%; #<<'), qr/invalid canary weight "100\.01%": $W/],
    ['canary weight -1%', chat('canary v2 -1%; #<<'), qr/invalid canary weight "-1%": $W/],
    ['canary weight abc', chat('canary v2 abc; #<<'), qr/invalid canary weight "abc": $W/],
    ['canary weight "5.%"', chat('canary v2 5.%; #<<'), qr/invalid canary weight "5\.%": $W/],
    ['canary weight "%"', chat('canary v2 %; #<<'), qr/invalid canary weight "%": $W/],
    ['canary weight 1e2%', chat('canary v2 1e2%; #<<'), qr/invalid canary weight "1e2%": $W/],
    ['duplicate canary weight', chat('canary v2 5%;', 'canary v2 6%; #<<'),
     qr/duplicate "canary" weight for variant "v2"/],
    ['canary with one argument', chat('canary v2; #<<'),
     qr/invalid number of arguments in "canary" directive/],

    # --- unknown variants
    ['unknown variant in canary', chat('canary v9 5%; #<<'), $UNK->('v9', 'chat')],
    ['canary before its variant', join("\n", '    aigov_model chat {',
        '        variant v1 u1 stable;', '        canary v2 5%; #<<',
        '        variant v2 u2;', '    }', ''), $UNK->('v2', 'chat')],
    ['unknown variant in canary_header variant=', chat('canary_header X-Canary variant=v9; #<<'),
     $UNK->('v9', 'chat')],
    ['unknown variant in canary_cookie variant=', chat('canary_cookie cc variant=nope; #<<'),
     $UNK->('nope', 'chat')],
    ['unknown variant in active', embed('active purple; #<<'), $UNK->('purple', 'embed')],
    ['unknown variant in preview', embed('active blue;', 'preview purple; #<<'), $UNK->('purple', 'embed')],

    # --- overrides
    ['bad regex in canary_header pattern=', chat('canary_header X-Tenant pattern=^(team variant=v2; #<<'),
     qr/invalid pattern in "canary_header": pcre2?_compile\(\) failed: missing closing parenthesis in "\^\(team"/],
    ['canary_header with unknown parameter', chat('canary_header X-Canary foo=1; #<<'),
     qr/invalid parameter "foo=1" in "canary_header": use "value=V" or "pattern=REGEX", and "variant=NAME"/],
    ['canary_header with value= and pattern=', chat('canary_header X-Canary value=a pattern=^b; #<<'),
     qr/invalid parameter "pattern=\^b" in "canary_header"/],
    ['canary_header with an empty value=', chat('canary_header X-Canary value=; #<<'),
     qr/invalid parameter "value=" in "canary_header"/],
    ['canary_header without a candidate', join("\n", '    aigov_model solo {',
        '        variant only u1;', '        canary_header X-Canary;', '    } #<<', ''),
     qr/aigov_model "solo": "canary_header" needs a candidate variant/],
    ['canary_cookie bad parameter', chat('canary_cookie cc v2; #<<'),
     qr/invalid parameter "v2" in "canary_cookie": use "variant=NAME"/],
    ['canary_cookie twice', chat('canary_cookie a;', 'canary_cookie b; #<<'),
     qr/"canary_cookie" directive is duplicate/],
    ['canary_sticky with a constant', chat('canary_sticky fixed-key; #<<'),
     qr/"canary_sticky" needs a variable, e\.g\. \$http_x_api_key: "fixed-key" is the same for every request/],
    ['canary_sticky twice', chat('canary_sticky $http_a;', 'canary_sticky $http_b; #<<'),
     qr/"canary_sticky" directive is duplicate/],

    # --- variants and models
    ['duplicate variant', chat('variant v2 u3; #<<'), qr/duplicate variant "v2" in aigov_model "chat"/],
    ['duplicate model', chat() . "    aigov_model chat { #<<\n        variant x u1;\n    }\n",
     qr/duplicate aigov_model "chat"/],
    ['model named like an alias of another', "    aigov_model chat {\n        alias gpt;\n        variant a u1;\n    }\n"
        . "    aigov_model gpt { #<<\n        variant b u2;\n    }\n",
     qr/duplicate aigov_model "gpt"/],
    ['alias colliding with a model name', chat() . "    aigov_model embed {\n        alias chat; #<<\n        variant b u2;\n    }\n",
     qr/alias "chat" of aigov_model "embed" is already a model name or alias/],
    ['alias equal to its own model name', chat('alias chat; #<<'),
     qr/alias "chat" of aigov_model "chat" is already a model name or alias/],
    ['alias used by two models', chat('alias gpt;') . "    aigov_model embed {\n        alias gpt; #<<\n        variant b u2;\n    }\n",
     qr/alias "gpt" of aigov_model "embed" is already a model name or alias/],
    ['invalid alias', chat('alias "a/b"; #<<'), qr/invalid alias "a\/b" of aigov_model "chat"/],
    ['two stable variants', "    aigov_model chat {\n        variant v1 u1 stable;\n        variant v2 u2 stable;\n    } #<<\n",
     qr/aigov_model "chat" must have exactly one stable variant, it has 2: mark one "variant NAME UPSTREAM stable"/],
    ['no stable among several', "    aigov_model chat {\n        variant v1 u1;\n        variant v2 u2 candidate;\n    } #<<\n",
     qr/aigov_model "chat" must have exactly one stable variant, it has 0/],
    ['model with no variant', "    aigov_model chat {\n        alias gpt;\n    } #<<\n",
     qr/aigov_model "chat" has no variant/],
    ['model name with a space', "    aigov_model \"a b\" { #<<\n        variant v1 u1;\n    }\n",
     qr/invalid model name "a b": use 1 to 128 of A-Z a-z 0-9 \. _ : -/],
    ['model name with a slash', "    aigov_model a/b { #<<\n        variant v1 u1;\n    }\n",
     qr/invalid model name "a\/b": use 1 to 128 of/],
    ['model name of 129 characters', "    aigov_model " . ('m' x 129) . " { #<<\n        variant v1 u1;\n    }\n",
     qr/invalid model name "m{129}": use 1 to 128 of/],
    ['empty model name', "    aigov_model \"\" { #<<\n        variant v1 u1;\n    }\n",
     qr/invalid model name "": use 1 to 128 of/],
    ['variant name with a space', chat('variant "v 4" u1; #<<'), qr/invalid variant name "v 4" in aigov_model "chat"/],
    ['variant name with a slash', chat('variant v/4 u1; #<<'), qr/invalid variant name "v\/4" in aigov_model "chat"/],
    ['invalid version', chat('variant v4 u1 "version=1 0"; #<<'), qr/invalid version "version=1 0" of variant "v4"/],
    ['empty version', chat('variant v4 u1 version=; #<<'), qr/invalid version "version=" of variant "v4"/],
    ['unknown variant parameter', chat('variant v4 u1 primary; #<<'), qr/invalid parameter "primary" of variant "v4"/],
    ['variant both stable and candidate', "    aigov_model chat {\n        variant v1 u1 stable candidate; #<<\n    }\n",
     qr/invalid parameter "candidate" of variant "v1"/],
    ['variant without upstream', chat('variant v4; #<<'),
     qr/invalid number of arguments in "variant": use "variant NAME UPSTREAM \[version=V\] \[stable\|candidate\]"/],
    ['variant upstream is a variable', chat('variant v4 $upstream; #<<'),
     qr/invalid upstream "\$upstream" of variant "v4": name an upstream\{\} block or host:port/],
    ['17 variants', "    aigov_model big {\n        variant v0 u1 stable;\n"
        . join('', map { "        variant v$_ u2;\n" } 1 .. 15) . "        variant v16 u3; #<<\n    }\n",
     qr/too many variants in aigov_model "big", at most 16/],
    ['unknown directive inside aigov_model', chat('weight v2 5%; #<<'),
     qr/unknown directive "weight" in aigov_model "chat"/],
    ['proxy_pass inside aigov_model', chat('proxy_pass http://u1; #<<'),
     qr/unknown directive "proxy_pass" in aigov_model "chat"/],
    ['aigov_model inside server', "    server {\n        listen 127.0.0.1:%%PORT%%;\n"
        . "        aigov_model chat { #<<\n            variant v1 u1;\n        }\n    }\n",
     qr/"aigov_model" directive is not allowed here/],

    # --- blue-green
    ['canary and active in one model', chat('canary v2 5%;', 'active v1;') =~ s/    \}\n$/    } #<<\n/r,
     qr/aigov_model "chat": canary directives and blue-green "active"\/"preview" cannot be mixed in one model/],
    ['canary_header and preview in one model', chat('canary_header X-Canary;', 'active v1;', 'preview v2;') =~ s/    \}\n$/    } #<<\n/r,
     qr/aigov_model "chat": canary directives and blue-green "active"\/"preview" cannot be mixed in one model/],
    ['preview without active', embed('preview green;') =~ s/    \}\n$/    } #<<\n/r,
     qr/aigov_model "embed": "preview" needs "active": name the colour serving traffic/],
    ['preview equal to active', embed('active blue;', 'preview blue;') =~ s/    \}\n$/    } #<<\n/r,
     qr/aigov_model "embed": the "preview" variant is the "active" one/],
    ['active twice', embed('active blue;', 'active green; #<<'), qr/"active" directive is duplicate/],
    ['preview with a bad parameter', embed('active blue;', 'preview green hdr=X-P; #<<'),
     qr/invalid parameter "hdr=X-P" in "preview": use "header=NAME"/],
    ['preview with an empty header=', embed('active blue;', 'preview green header=; #<<'),
     qr/invalid parameter "header=" in "preview": use "header=NAME"/],

    # --- emergency switches
    ['kill_switch bad value', chat('kill_switch yes; #<<'), qr/invalid value "yes" in "kill_switch": use "on" or "off"/],
    ['kill_switch bad retry_after', chat('kill_switch on retry_after=soon; #<<'),
     qr/invalid retry_after "retry_after=soon" in "kill_switch": use seconds, at least 1s/],
    ['kill_switch retry_after=0', chat('kill_switch on retry_after=0; #<<'),
     qr/invalid retry_after "retry_after=0" in "kill_switch": use seconds, at least 1s/],
    ['kill_switch unknown parameter', chat('kill_switch on retry=5; #<<'),
     qr/invalid parameter "retry=5" in "kill_switch"/],
    ['kill_switch twice', chat('kill_switch on;', 'kill_switch off; #<<'), qr/"kill_switch" directive is duplicate/],
    ['rollback bad value', chat('rollback yes; #<<'),
     qr/invalid value "yes" in "rollback" directive, it must be "on" or "off"/],
    ['rollback twice', chat('rollback on;', 'rollback on; #<<'), qr/"rollback" directive is duplicate/],
    ['rollback without a value', chat('rollback; #<<'), qr/invalid number of arguments in "rollback" directive/],

    # --- zone
    ['missing zone', "    # nozone\n    aigov_model chat { #<<\n        variant v1 u1;\n    }\n",
     qr/aigov_model "chat" in \S+:(\d+) needs a shared zone: add "aigov_zone name:size;" to the http block/],
    ['duplicate aigov_zone', "    aigov_zone a:1m;\n    aigov_zone b:1m; #<<\n" . chat(),
     qr/"aigov_zone" directive is duplicate/],
    ['zone without size', "    aigov_zone z; #<<\n" . chat(), qr/invalid zone "z": use "name:size"/],
    ['zone without name', "    aigov_zone :1m; #<<\n" . chat(), qr/invalid zone ":1m": use "name:size"/],
    ['zone with empty size', "    aigov_zone z:; #<<\n" . chat(), qr/invalid zone size "z:"/],
    ['zone with a bad size', "    aigov_zone z:lots; #<<\n" . chat(), qr/invalid zone size "z:lots"/],
    ['zone with a negative size', "    aigov_zone z:-1m; #<<\n" . chat(), qr/invalid zone size "z:-1m"/],
    ['zone too small', "    aigov_zone z:16k; #<<\n" . chat(), qr/zone "z:16k" is too small: at least 32k/],
    ['zone name used by limit_req', "    limit_req_zone \$binary_remote_addr zone=shared:1m rate=1r/s;\n"
        . "    aigov_zone shared:1m; #<<\n" . chat(),
     qr/the shared memory zone "shared" is already declared for a different use/],

    # --- aigov_route
    ['aigov_route model=nope', chat() . server_with(route_loc('aigov_route model=nope; #<<')),
     qr/aigov_route names unknown model "nope" in \S+:(\d+)/],
    ['aigov_route kserve default=nope', chat() . server_with(route_loc('aigov_route kserve default=nope; #<<')),
     qr/aigov_route names unknown model "nope" in \S+:(\d+)/],
    ['aigov_route openai default=nope', chat() . server_with(route_loc('aigov_route openai default=nope; #<<')),
     qr/aigov_route names unknown model "nope" in \S+:(\d+)/],
    ['aigov_route with a bad source', chat() . server_with(route_loc('aigov_route http_body; #<<')),
     qr/invalid model source "http_body" in aigov_route: use "kserve", "openai" or "model=NAME"/],
    ['aigov_route with a bad parameter', chat() . server_with(route_loc('aigov_route kserve fallback=chat; #<<')),
     qr/invalid parameter "fallback=chat" in aigov_route/],
    ['aigov_route model= with default=', chat() . server_with(route_loc('aigov_route model=chat default=chat; #<<')),
     qr/invalid parameter "default=chat" in aigov_route/],
    ['aigov_route with an empty model=', chat() . server_with(route_loc('aigov_route model=; #<<')),
     qr/empty model name in "model="/],
    ['aigov_route with an invalid model name', chat() . server_with(route_loc('aigov_route model=a/b; #<<')),
     qr/invalid model name "a\/b" in aigov_route/],
    ['aigov_route with an invalid default', chat() . server_with(route_loc('aigov_route kserve default=a/b; #<<')),
     qr/invalid default model "default=a\/b" in aigov_route/],
    ['aigov_route duplicate', chat() . server_with('location /r/ {', '    aigov_route openai;',
        '    aigov_route kserve; #<<', '    proxy_pass http://$aigov_upstream;', '}'),
     qr/"aigov_route" directive is duplicate/],
    ['aigov_route at server level', chat() . "    server {\n        listen 127.0.0.1:%%PORT%%;\n"
        . "        aigov_route openai; #<<\n    }\n",
     qr/"aigov_route" directive is not allowed here/],
    ['aigov_status with an argument', chat() . server_with('location /s { aigov_status on; } #<<'),
     qr/invalid number of arguments in "aigov_status" directive/],

    # --- upstreams
    ['aigov_upstream name with a port', "    aigov_upstream a:1; #<<\n" . chat(),
     qr/invalid aigov_upstream name "a:1": use a plain name, as in upstream\{\}/],
    ['aigov_upstream name is a variable', "    aigov_upstream \$up; #<<\n" . chat(),
     qr/invalid aigov_upstream name "\$up": use a plain name, as in upstream\{\}/],
    ['aigov_upstream named like an upstream{}', "    aigov_upstream u1; #<<\n" . chat(),
     qr/duplicate upstream "u1"/],
    ['aigov_upstream declared twice', "    aigov_upstream ag;\n    aigov_upstream ag; #<<\n" . chat(),
     qr/duplicate upstream "ag"/],
    ['aigov_upstream inside server', chat() . "    server {\n        listen 127.0.0.1:%%PORT%%;\n"
        . "        aigov_upstream ag; #<<\n    }\n",
     qr/"aigov_upstream" directive is not allowed here/],
    ['variant pointing at the aigov_upstream itself', "    aigov_upstream ag;\n" . chat('variant v4 ag; #<<'),
     qr/variant "v4" of aigov_model "chat" in \S+:(\d+) names no upstream\{\} block "ag"/],
    ['variant naming an upstream that does not exist', chat('variant v4 nope_upstream; #<<'),
     qr/(?:variant "v4" of aigov_model "chat" in \S+:\d+ names no upstream\{\} block "nope_upstream"|host not found in upstream "nope_upstream")/],
);

for my $case (@bad) {
    my ($name, $snippet, $re) = @$case;
    my ($conf, $line) = build_conf($snippet);
    my ($ok, $out) = nginx_t($conf);
    ok !$ok, "$name: nginx -t fails" or diag $conf;
    my @emerg = grep { /\[emerg\]/ } split /\n/, $out;
    is scalar(@emerg), 1, "$name: exactly one [emerg] line" or diag $out;
    note "$name: nginx said: " . ($emerg[0] // "(nothing)");
    like $emerg[0] // '', $re, "$name: message" or diag "config:\n$conf\noutput:\n$out";
    like $out, qr/test failed/, "$name: nginx says the test failed";
    if (defined $line) {
        my ($got) = ($emerg[0] // '') =~ /\bin \S+\/nginx-t-\d+\.conf:(\d+)/;
        is $got, $line, "$name: message points at line $line";
    }
}

# An error in an included file points at that file and line.
{
    my $inc = tmp_dir() . "/conf/weights-bad.conf";
    open my $fh, '>', $inc or die "$inc: $!";
    print $fh "# written by the deployment pipeline\ncanary v2 70%;\ncanary v3 40%;\n";
    close $fh;
    my ($conf) = build_conf(chat("include $inc;"));
    my ($ok, $out) = nginx_t($conf);
    ok !$ok, 'include with bad weights: nginx -t fails';
    like $out, qr/\[emerg\] \d+#\d+: canary weights of aigov_model "chat" add up to 110%, more than 100% in \Q$inc\E:3/,
        'include with bad weights: message names the included file and line';
}

{
    my ($conf) = build_conf(chat('include /nonexistent/aigov-weights.conf;'));
    my ($ok, $out) = nginx_t($conf);
    ok !$ok, 'include of a missing file: nginx -t fails';
    like $out, qr/\[emerg\] \d+#\d+: open\(\) "\/nonexistent\/aigov-weights\.conf" failed/,
        'include of a missing file: message names the file';
}

# --- good edge configs ---------------------------------------------------

my $inc_ok = tmp_dir() . "/conf/weights-ok.conf";
{
    open my $fh, '>', $inc_ok or die "$inc_ok: $!";
    print $fh "canary v2 5%;\ncanary_header X-Canary;\n";
    close $fh;
}

my @good = (
    ['weights summing exactly to 100%', chat('canary v2 60%;', 'canary v3 40%;')],
    ['weights summing to 100% with fractions', chat('canary v2 99.99%;', 'canary v3 0.01%;')],
    ['a single candidate at 100%', chat('canary v2 100%;')],
    ['0% weight', chat('canary v2 0%;', 'canary v3 0%;')],
    ['0.01% weight', chat('canary v2 0.01%;')],
    ['weights with one decimal and leading zero', chat('canary v2 05.5%;', 'canary v3 0.5%;')],
    ['single-variant model without "stable"', "    aigov_model solo {\n        variant only u1 version=1;\n    }\n"],
    ['include of a file with canary lines', chat("include $inc_ok;")],
    ['include with a glob that matches nothing', chat('include /nonexistent-dir-aigov/*.conf;')],
    ['16 variants', "    aigov_model big {\n        variant v0 u1 stable;\n"
        . join('', map { "        variant v$_ u2;\n" } 1 .. 15) . "    }\n"],
    # README: names are 1-128 characters
    ['128-character model name', "    aigov_model " . ('m' x 128) . " {\n        variant v1 u1;\n    }\n"],
    ['128-character alias', "    aigov_model a {\n        alias " . ('a' x 128) . ";\n        variant v1 u1;\n    }\n"],
    ['128-character variant name and version', "    aigov_model a {\n        variant " . ('v' x 128)
        . " u1 version=" . ('1' x 128) . ";\n    }\n"],
    # README: "a single variant is stable on its own"
    ['single variant marked candidate', "    aigov_model solo {\n        variant v1 u1 candidate;\n    }\n"],
    ['upstream host:port without an upstream{} block', "    aigov_model solo {\n        variant v1 127.0.0.1:9009;\n    }\n"],
    ['upstream{} declared after the model', "    aigov_model late {\n        variant v1 late_up;\n    }\n"
        . "    upstream late_up { server 127.0.0.1:9010; }\n"],
    ['blue-green without preview', embed('active green;')],
    ['blue-green preview with a header', embed('active blue;', 'preview green header=X-Preview;')],
    ['canary overrides only, no weights', chat('canary_header X-Canary;', 'canary_header X-Beta value=yes variant=v3;',
        'canary_header X-Tenant pattern=^team- variant=v2;', 'canary_cookie cc variant=v3;', 'canary_sticky $http_x_api_key$cookie_uid;')],
    ['rollback and kill switch off', chat('rollback off;', 'kill_switch off retry_after=1m;')],
    ['aigov_route model=$variable', chat() . server_with(route_loc('aigov_route model=$http_x_model;'))],
    ['aigov_route with default= and an alias', chat('alias gpt;') . server_with(route_loc('aigov_route kserve default=gpt;'))],
    ['models without any route', chat()],
    ['zone of exactly 32k', "    aigov_zone small:32k;\n" . chat()],
    ['aigov_upstream with proxy_pass to it', "    aigov_upstream ag;\n" . chat()
        . server_with('location /r/ {', '    aigov_route openai;', '    proxy_pass http://ag;', '}')],
    ['names with every allowed character',
     "    aigov_model Az09._:- {\n        alias a-b.c_d:e;\n        variant v.1_a:b-c u1 version=1.0.0-rc.1;\n    }\n"],
);


for my $case (@good) {
    my ($name, $snippet) = @$case;
    my ($conf) = build_conf($snippet);
    my ($ok, $out) = nginx_t($conf);
    ok $ok, "good: $name: nginx -t passes" or diag "config:\n$conf\noutput:\n$out";
    like $out, qr/test is successful/, "good: $name: test is successful";
}

done_testing;
