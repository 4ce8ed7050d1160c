#!/usr/bin/perl
# Blue-green: the active colour gets every request ("active"), the preview
# header sends a request to the preview colour ("preview"), and switching
# "active" by reload under load loses no request.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use AigovTest;
use JSON::PP ();
use POSIX ();
use Time::HiRes qw(time sleep);

start_fixture(name => 'stable',    version => '1.4.2');   # blue
start_fixture(name => 'candidate', version => '1.5.0');   # green

my %FIXTURE_OF = (blue => 'stable', green => 'candidate');
my %VERSION_OF = (blue => '1.4.2', green => '1.5.0');

sub http_conf {
    my (%o) = @_;
    my $active  = $o{active} // 'blue';
    my $preview = $active eq 'blue' ? 'green' : 'blue';
    return <<"EOF";
    upstream u_blue  { server 127.0.0.1:%%FIXTURE_stable%%;    keepalive 32; }
    upstream u_green { server 127.0.0.1:%%FIXTURE_candidate%%; keepalive 32; }

    aigov_zone aigov_bg:1m;

    aigov_model embed {
        variant blue  u_blue  version=1.4.2 stable;
        variant green u_green version=1.5.0;
        active  $active;
        preview $preview;
    }

    aigov_model embed2 {
        variant blue  u_blue  version=1.4.2 stable;
        variant green u_green version=1.5.0;
        active  green;
        preview blue header=X-Preview-Colour;
    }

    aigov_model solo {
        variant blue  u_blue  version=1.4.2 stable;
        variant green u_green version=1.5.0;
        active  blue;
    }

    server {
        listen 127.0.0.1:%%PORT%%;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        add_header X-Decision \$aigov_decision always;

        location /f/ {
            aigov_route model=\$arg_m;
            proxy_pass http://\$aigov_upstream;
        }

        location /v2/models/ {
            aigov_route kserve;
            proxy_pass http://\$aigov_upstream;
        }

        location = /status {
            aigov_status;
        }
    }
EOF
}

my $ng = start_nginx(nginx_conf(http_conf()));

# --- helpers ----------------------------------------------------------------

# Stop the file early, instead of looping for minutes, when nginx no longer
# answers at all (e.g. workers crashing).
my $NO_RESPONSE = 0;
sub req {
    my (%a) = @_;
    my $r = http_req(timeout => 5, %a);
    die "nginx stopped answering: 20 requests without a response (last: $r->{error})\n"
        if $r->{status} == 599 && ++$NO_RESPONSE >= 20;
    return $r;
}

sub f {
    my ($model, @h) = @_;
    my $r = req(path => "/f/x?m=$model", headers => [@h]);
    my $h = $r->{headers};
    return [ $r->{status}, $h->{'x-aigov-variant'}, $h->{'x-decision'}, $h->{'x-served-by'},
             $h->{'x-model-version'} ];
}

sub want { my ($colour, $decision) = @_; [ 200, $colour, $decision, $FIXTURE_OF{$colour}, $VERSION_OF{$colour} ] }

# N requests: "colour/decision" => count, plus fixture mismatches
sub sample {
    my ($n, $model, @h) = @_;
    my %c;
    for (1 .. $n) {
        my $x = f($model, @h);
        my $ok = $x->[0] == 200 && defined $x->[1]
              && ($x->[3] // '') eq $FIXTURE_OF{ $x->[1] } && ($x->[4] // '') eq $VERSION_OF{ $x->[1] };
        $c{ $ok ? "$x->[1]/$x->[2]" : "bad:$x->[0]:" . ($x->[1] // '') . ':' . ($x->[3] // '') }++;
    }
    return \%c;
}

sub status_variants {
    my ($model) = @_;
    my $s = req(path => '/status');
    my ($m) = grep { $_->{name} eq $model } @{ $s->{json}{models} // [] };
    return { map { $_->{name} => $_->{requests} } @{ $m->{variants} // [] } }, $m;
}

# Run wrk (one child per option set) while $during runs in this process
# (reloads must be sent by the process that started nginx).
sub wrk_during {
    my ($runs, $during) = @_;
    my @kids;
    for my $o (@$runs) {
        my $pid = open(my $fh, '-|');
        die "fork: $!" unless defined $pid;
        if (!$pid) {
            my $w = eval { run_wrk(%$o) } || { error => "$@" };
            print JSON::PP->new->canonical->encode($w);
            close STDOUT;
            POSIX::_exit(0);
        }
        push @kids, $fh;
    }
    $during->();
    my @res;
    for my $fh (@kids) {
        local $/;
        my $out = <$fh>;
        close $fh;
        push @res, eval { JSON::PP->new->decode($out // '') } // { error => "no wrk result: $@" };
        # wrk prints the "Socket errors" line only when there were some
        $res[-1]{$_} //= 0 for qw(requests non2xx socket_errors err_connect err_read err_write err_timeout);
    }
    return @res;
}

# --- the active colour gets everything ---------------------------------------

is_deeply sample(500, 'embed'), { 'blue/active' => 500 }, 'active blue: 500 of 500 requests to blue, decision active';
is_deeply sample(200, 'embed2'), { 'green/active' => 200 }, 'active green (embed2): every request to green';
is_deeply f('embed', 'X-Canary' => 'always'), want('blue', 'active'), 'canary headers mean nothing to a blue-green model';

{
    my $body = { inputs => [ { name => 'x', shape => [1], datatype => 'FP32', data => [1] } ] };
    my $r = req(path => '/v2/models/embed/infer', body => $body);
    is_deeply [ $r->{status}, $r->{headers}{'x-aigov-variant'}, $r->{headers}{'x-decision'}, $r->{json}{served_by} ],
              [ 200, 'blue', 'active', 'stable' ], 'KServe path: active colour';
    $r = req(path => '/v2/models/embed/versions/1.5.0/infer', body => $body);
    is_deeply [ $r->{status}, $r->{headers}{'x-aigov-variant'}, $r->{headers}{'x-decision'}, $r->{json}{served_by} ],
              [ 200, 'green', 'pinned', 'candidate' ], 'KServe path with the green version: pinned beats active';
}

# --- preview header ----------------------------------------------------------

for my $v ('1', 'true', 'yes', 'on', 'always', 'green', 'TRUE', 'anything at all') {
    is_deeply f('embed', 'X-Aigov-Preview' => $v), want('green', 'preview'),
        "X-Aigov-Preview: '$v' -> preview colour green";
}
for my $v ('0', 'false', 'no', 'off', 'never', '') {
    is_deeply f('embed', 'X-Aigov-Preview' => $v), want('blue', 'active'),
        "X-Aigov-Preview: '$v' -> active colour blue";
}
is_deeply f('embed', 'x-aigov-preview' => '1'), want('green', 'preview'), 'header name is case-insensitive';
is_deeply sample(200, 'embed', 'X-Aigov-Preview' => '1'), { 'green/preview' => 200 },
    'preview: 200 of 200 requests with the header to green';

# custom header=
is_deeply f('embed2', 'X-Preview-Colour' => '1'), want('blue', 'preview'), 'custom header=X-Preview-Colour: 1 -> preview blue';
is_deeply f('embed2', 'X-Preview-Colour' => 'yes'), want('blue', 'preview'), 'custom header: yes -> preview blue';
is_deeply f('embed2', 'X-Preview-Colour' => 'off'), want('green', 'active'), 'custom header: off -> active green';
is_deeply f('embed2', 'X-Preview-Colour' => ''), want('green', 'active'), 'custom header: empty -> active green';
is_deeply f('embed2', 'X-Aigov-Preview' => '1'), want('green', 'active'),
    'with a custom header, the default X-Aigov-Preview does nothing';

# no preview declared
is_deeply f('solo', 'X-Aigov-Preview' => '1'), want('blue', 'active'), 'no preview colour: the header is ignored';

# --- switch active blue -> green by reload under load -----------------------

{
    my ($before) = status_variants('embed');
    my @switches = qw(green blue green);
    my %common = (path => '/f/x?m=embed', seconds => 8, threads => 2, timeout => 5);
    my ($ka, $close) = wrk_during(
        [ { %common, connections => 16 },                                   # keep-alive
          { %common, connections => 4, headers => { Connection => 'close' } } ],  # a connection per request
        sub {
            sleep 1.5;
            for my $c (@switches) {
                my $t = time;
                ok $ng->reload(nginx_conf(http_conf(active => $c))), "reload under load: active $c";
                sleep 2 - (time - $t) if time - $t < 2;
            }
        });
    my ($after, $m) = status_variants('embed');

    for my $w ($ka, $close) {
        diag sprintf 'wrk %s: %d requests, %.0f rps, non-2xx %d, socket errors %d (connect %d, read %d, write %d, timeout %d), p99 %.1f ms',
            ($w->{cmd} // '') =~ /Connection: close/ ? 'Connection: close' : 'keep-alive',
            map { $_ // 0 } @$w{qw(requests rps non2xx socket_errors err_connect err_read err_write err_timeout p99_ms)};
    }
    ok !$ka->{error} && $ka->{requests} > 2000, "keep-alive wrk ran ($ka->{requests} requests)" or diag $ka->{error} // $ka->{raw};
    is $ka->{non2xx}, 0, 'keep-alive wrk: zero non-2xx across 3 colour switches';
    is $ka->{err_connect} + $ka->{err_write} + $ka->{err_timeout}, 0,
        'keep-alive wrk: zero connect / write / timeout errors';
    # nginx's graceful reload closes each keep-alive connection of the old
    # workers once (stock nginx 1.22 does this without the module too);
    # wrk counts that as a read error and reconnects.  More than one per
    # connection per reload would be something else.
    ok $ka->{err_read} <= 16 * @switches,
        "keep-alive wrk: read errors ($ka->{err_read}) no more than 16 connections x 3 reloads";
    ok !$close->{error} && $close->{requests} > 500, "Connection: close wrk ran ($close->{requests} requests)"
        or diag $close->{error} // $close->{raw};
    is_deeply [ $close->{non2xx}, $close->{socket_errors} ], [ 0, 0 ],
        'Connection: close wrk: zero non-2xx and zero socket errors across 3 colour switches';

    my $blue  = $after->{blue}  - $before->{blue};
    my $green = $after->{green} - $before->{green};
    diag "during the run: blue $blue, green $green requests";
    ok $blue > 500 && $green > 500, 'both colours served under load (the switches took effect)';
    ok $blue + $green >= $ka->{requests} + $close->{requests},
        'every request wrk completed was counted by aigov_status';
    is $m->{active}, 'green', 'aigov_status: active green';
}

is_deeply sample(500, 'embed'), { 'green/active' => 500 }, 'after the switch: 500 of 500 requests to green';
is_deeply f('embed', 'X-Aigov-Preview' => '1'), want('blue', 'preview'),
    'after the switch: the preview header now reaches blue';

error_log_clean_ok('error log clean');
done_testing;
