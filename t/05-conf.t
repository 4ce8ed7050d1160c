#!/usr/bin/perl
# Every example config in conf/ passes `nginx -t` with the built module,
# under the repository root as prefix (the layout tools/demo uses), and
# keeps to the conventions of the examples: the module from build/, logs
# and pid under build/demo/, 127.0.0.1 only, a port no other example uses.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use AigovTest;
use File::Path qw(make_path);

my $root = repo_root();
my @confs = sort glob("$root/conf/*.conf");

ok scalar(@confs) >= 5, 'conf/ has the example configs (' . scalar(@confs) . ')'
    or diag "found: @confs";
ok -f module_path(), 'module is built: ' . module_path()
    or BAIL_OUT('build the module first (make)');

# nginx -t opens the error log and creates the temp paths: under build/demo
make_path("$root/build/demo");

my %port_owner;
for my $path (@confs) {
    my ($file) = $path =~ m{([^/]+)$};
    my $rel = "conf/$file";

    my $out = `cd '$root' && '${\ nginx_bin()}' -t -p '$root/' -c '$rel' 2>&1`;
    my $rc = $? >> 8;
    is $rc, 0, "$rel: nginx -t exits 0" or diag $out;
    like $out, qr/configuration file \Q$root\E\/\Q$rel\E test is successful/,
        "$rel: nginx -t says the test is successful";
    unlike $out, qr/\[(?:emerg|alert|crit|error|warn)\]/, "$rel: no warnings from nginx -t"
        or diag $out;

    open my $fh, '<', $path or die "$path: $!";
    my $text = do { local $/; <$fh> };
    close $fh;
    (my $code = $text) =~ s/#[^\n]*//g;    # directives only

    like $code, qr/^\s*load_module\s+build\/ngx_http_aigov_module\.so;/m,
        "$rel: loads the module from build/ (relative to the prefix)";
    my @bad_paths = grep { !m{^build/demo/} }
        $code =~ /^\s*(?:error_log|pid|\w+_temp_path)\s+(\S+?)[\s;]/mg;
    is_deeply \@bad_paths, [], "$rel: error_log, pid and temp paths are under build/demo/";

    my @listen = $code =~ /^\s*listen\s+([^;]+);/mg;
    ok scalar(@listen), "$rel: has a listen directive";
    for my $l (@listen) {
        like $l, qr/^127\.0\.0\.1:\d+\b/, "$rel: listens on 127.0.0.1 only ($l)";
        my ($port) = $l =~ /:(\d+)/ or next;
        ok !exists $port_owner{$port},
            "$rel: port $port is not used by another example"
            or diag "port $port also used by $port_owner{$port}";
        $port_owner{$port} //= $rel;
    }
}

done_testing;
