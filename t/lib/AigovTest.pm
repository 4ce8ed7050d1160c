package AigovTest;

# Integration-test harness for ngx_aigov: runs real nginx instances, fixture
# model servers (t/fixtures/model_server.py) and redis-server, all private to
# one test file, and cleans every one of them up when the file ends.
# See t/README.md for the API.

use strict;
use warnings;

use Carp qw(croak);
use Cwd qw(abs_path);
use Exporter ();
use File::Basename qw(basename dirname);
use File::Path qw(make_path remove_tree);
use File::Temp qw(tempdir);
use IO::Socket::INET;
use JSON::PP ();
use POSIX qw(WNOHANG);
use Socket qw(IPPROTO_TCP TCP_NODELAY);
use Test::More ();
use Time::HiRes qw(time sleep);

our @ISA    = ('Exporter');
our @EXPORT = qw(
    repo_root tmp_dir module_path nginx_bin free_port
    nginx_conf expand_placeholders nginx_t
    start_nginx reload_nginx stop_nginx nginx_instance nginx_port
    start_fixture stop_fixture fixture_port fixture_pid
    fixture_sigstop fixture_sigcont
    start_redis stop_redis redis_port redis_cmd redis_sigstop redis_sigcont
    http_req http_get http_post_json http_parallel sse_events
    error_log_mark error_log_lines error_log_check error_log_clean_ok
    wait_for wait_for_log
    run_wrk wrk_async aigovctl
);

# `use AigovTest;` also turns on strict/warnings and imports Test::More.
sub import {
    my $class = shift;
    strict->import;
    warnings->import;
    Test::More->export_to_level(1, 'Test::More');
    $class->export_to_level(1, $class, @_);
}

# ---------------------------------------------------------------------------
# configuration & global state
# ---------------------------------------------------------------------------

my $ROOT = abs_path(dirname(__FILE__) . '/../..');
my $NGINX_BIN = $ENV{AIGOV_NGINX} || '/usr/sbin/nginx';
my $MODULE = $ENV{AIGOV_MODULE}
    ? (abs_path($ENV{AIGOV_MODULE}) // $ENV{AIGOV_MODULE})
    : "$ROOT/build/ngx_http_aigov_module.so";
my $PYTHON = $ENV{AIGOV_PYTHON} || 'python3';

our $REDIS_TIMEOUT = 5;      # seconds, for redis_cmd (localize to change)
our $START_TIMEOUT = 10;     # seconds, for every start_*/reload

my $OWNER = $$;              # only this process cleans up
my $TMP;                     # per-test-file temp dir (lazily created)
my %USED_PORT;               # ports handed out in this run
my %NGINX_PORT;              # instance name  => port
my %FIXTURE_PORT;            # fixture name   => port
my %REDIS_PORT;              # redis name     => port
my %NGINX;                   # instance name  => running AigovTest::Nginx
my @NGINX_ORDER;             # names in start order
my $LAST_DEFAULT;            # last default instance (stays after stop)
my %FIXTURE;                 # name => {pid, port, version}
my %REDIS;                   # name => {pid, port}
my %CHILD;                   # pid => description, every long-lived child
my %CONN;                    # "host:port" => keep-alive HTTP connection
my %LOG_MARK;                # error log path => byte offset
my $CLEANING = 0;
my $JSON = JSON::PP->new->utf8->canonical->allow_nonref;

# croak() from the harness reports the line of the test file
$Carp::Internal{$_}++ for qw(AigovTest AigovTest::Nginx);

$SIG{PIPE} = 'IGNORE';
for my $sig (qw(INT TERM HUP)) {
    $SIG{$sig} = sub {
        Test::More::diag("AigovTest: caught SIG$sig, cleaning up");
        cleanup_all();
        exit(128 + ($sig eq 'INT' ? 2 : $sig eq 'TERM' ? 15 : 1));
    };
}

END {
    local $?;   # keep Test::More's exit status
    _dump_logs_on_failure();
    cleanup_all();
}

sub repo_root   { $ROOT }
sub module_path { $MODULE }
sub nginx_bin   { $NGINX_BIN }

sub tmp_dir {
    return $TMP if $TMP;
    my $test = basename($0);
    $test =~ s/\W+/_/g;
    $TMP = tempdir("aigov-$test-XXXXXX", TMPDIR => 1, CLEANUP => 0);
    # nginx workers run as "nobody": they must be able to enter the dir.
    chmod 0755, $TMP;
    make_path("$TMP/logs", "$TMP/conf", { mode => 0755 });
    Test::More::diag("AigovTest: temp dir $TMP (kept)") if $ENV{AIGOV_KEEP};
    return $TMP;
}

sub _need_module {
    return if -f $MODULE;
    Test::More::BAIL_OUT("ngx_aigov module not found at $MODULE: "
        . "build it first (make) or set AIGOV_MODULE=/path/to/ngx_http_aigov_module.so");
}

# ---------------------------------------------------------------------------
# ports
# ---------------------------------------------------------------------------

# A free TCP port on 127.0.0.1, never the same twice in one run.  Ports are
# taken from 20000-32767, below Linux's ephemeral range (32768-60999), so
# that the outgoing connections of nginx/wrk can never occupy a port that a
# fixture is (re)started on later; falls back to a kernel-chosen port.
sub free_port {
    for my $try (1 .. 200) {
        my $want = $try < 150 ? 20000 + int(rand(12768)) : 0;
        next if $want && $USED_PORT{$want};
        my $s = IO::Socket::INET->new(
            LocalAddr => '127.0.0.1', LocalPort => $want,
            Proto => 'tcp', Listen => 1, ReuseAddr => 1,
        ) or next;
        my $port = $s->sockport;
        close $s;
        next if $USED_PORT{$port}++;
        return $port;
    }
    croak "free_port: could not find a free port";
}

sub nginx_port   { my $n = shift // 'main';    $NGINX_PORT{$n}   //= free_port() }
sub fixture_port { my $n = shift // 'stable';  $FIXTURE_PORT{$n} //= free_port() }
sub redis_port   { my $n = shift // 'default'; $REDIS_PORT{$n}   //= free_port() }

# ---------------------------------------------------------------------------
# child processes
# ---------------------------------------------------------------------------

sub _spawn {
    my ($desc, $log, @cmd) = @_;
    my $pid = fork;
    croak "fork: $!" unless defined $pid;
    if (!$pid) {
        $SIG{$_} = 'DEFAULT' for qw(PIPE INT TERM HUP);
        open STDIN,  '<',  '/dev/null';
        open STDOUT, '>>', $log or POSIX::_exit(126);
        open STDERR, '>&', \*STDOUT;
        { no warnings "exec"; exec { $cmd[0] } @cmd; }
        print STDERR "exec $cmd[0]: $!\n";
        POSIX::_exit(127);
    }
    $CHILD{$pid} = $desc;
    return $pid;
}

# True if the child $pid has exited (and reaps it); false while it runs.
sub _exited {
    my ($pid) = @_;
    my $r = waitpid($pid, WNOHANG);
    return $r == $pid || $r == -1;
}

sub _wait_exit {
    my ($pid, $timeout) = @_;
    my $end = time + $timeout;
    while (time < $end) {
        return 1 if _exited($pid);
        sleep 0.02;
    }
    return _exited($pid);
}

# Stop a child: SIGCONT (it may be stopped), $sig, then SIGKILL after $timeout.
sub _stop_pid {
    my ($pid, $sig, $timeout) = @_;
    return unless $pid;
    kill 'CONT', $pid;
    kill $sig, $pid;
    unless (_wait_exit($pid, $timeout)) {
        kill 'KILL', $pid;
        _wait_exit($pid, 5);
    }
    delete $CHILD{$pid};
}

# Run a command to completion; returns (exit code, stdout+stderr).
sub _capture {
    my (@cmd) = @_;
    my $pid = open(my $fh, '-|');
    croak "fork: $!" unless defined $pid;
    if (!$pid) {
        $SIG{$_} = 'DEFAULT' for qw(PIPE INT TERM HUP);
        open STDERR, '>&', \*STDOUT;
        open STDIN, '<', '/dev/null';
        { no warnings "exec"; exec { $cmd[0] } @cmd; }
        print "exec $cmd[0]: $!\n";
        POSIX::_exit(127);
    }
    local $/;
    my $out = <$fh> // '';
    close $fh;
    return ($? >> 8, $out);
}

# [pid, cmdline] of the live (non-zombie) children of $ppid, read from /proc.
sub _proc_children {
    my ($ppid) = @_;
    my @out;
    opendir(my $d, '/proc') or return;
    for my $p (grep { /^\d+$/ } readdir $d) {
        open(my $fh, '<', "/proc/$p/stat") or next;
        my $stat = <$fh>;
        close $fh;
        next unless defined $stat && $stat =~ /^\d+ \(.*\) (\S) (\d+)/s;
        next unless $2 == $ppid && $1 ne 'Z';
        my $cmd = '';
        if (open(my $c, '<', "/proc/$p/cmdline")) { local $/; $cmd = <$c> // ''; }
        $cmd =~ s/\0+/ /g;
        $cmd =~ s/\s+$//;
        push @out, [$p, $cmd];
    }
    closedir $d;
    return @out;
}

sub _slurp {
    my ($file, $offset) = @_;
    open(my $fh, '<', $file) or return '';
    binmode $fh;
    seek($fh, $offset, 0) if $offset;
    local $/;
    my $s = <$fh> // '';
    close $fh;
    return $s;
}

sub _tail {
    my ($file, $n) = @_;
    my @l = split /\n/, _slurp($file);
    @l = @l[-$n .. -1] if @l > $n;
    return join("\n", @l);
}

sub _spew {
    my ($file, $text) = @_;
    open(my $fh, '>', $file) or croak "write $file: $!";
    print {$fh} $text;
    close $fh or croak "write $file: $!";
}

# Poll $cond every $interval s until it returns true; returns its value, or
# false after $timeout seconds.
sub wait_for {
    my ($cond, %o) = @_;
    my $end = time + ($o{timeout} // 5);
    my $interval = $o{interval} // 0.02;
    while (1) {
        my $v = $cond->();
        return $v if $v;
        return 0 if time >= $end;
        sleep $interval;
    }
}

# ---------------------------------------------------------------------------
# cleanup
# ---------------------------------------------------------------------------

sub cleanup_all {
    return unless $$ == $OWNER;
    return if $CLEANING++;
    %CONN = ();
    for my $name (reverse @NGINX_ORDER) {
        my $n = $NGINX{$name} or next;
        eval { $n->stop(timeout => 5) };
    }
    stop_fixture($_) for keys %FIXTURE;
    _stop_pid($REDIS{$_}{pid}, 'TERM', 5) for keys %REDIS;
    %REDIS = ();
    _stop_pid($_, 'KILL', 5) for keys %CHILD;
    if ($TMP && !$ENV{AIGOV_KEEP}) {
        remove_tree($TMP);
        $TMP = undef;
    }
}

sub _dump_logs_on_failure {
    return unless $$ == $OWNER && $TMP;
    my $tb = Test::More->builder;
    return if $tb->is_passing;
    for my $log (sort(glob("$TMP/logs/*.log")), sort(glob("$TMP/nginx-*/logs/*.log"))) {
        my @l = grep { !/\[(?:info|debug)\]/ } split /\n/, _slurp($log);
        next unless @l;
        @l = @l[-25 .. -1] if @l > 25;
        Test::More::diag(join("\n", "---- last lines of $log (without info/debug) ----", @l));
    }
}

# ---------------------------------------------------------------------------
# nginx configuration
# ---------------------------------------------------------------------------

sub _prefix {
    my ($name) = @_;
    my $tmp = tmp_dir();
    return $name eq 'main' ? $tmp : "$tmp/nginx-$name";
}

sub _check_name {
    my ($what, $name) = @_;
    croak "$what name '$name' must match /^\\w+\$/" unless $name =~ /^\w+$/;
}

# Replace %%...%% placeholders; %%PORT%% is the port of instance $o{name}.
sub expand_placeholders {
    my ($text, %o) = @_;
    my $name = $o{name} // 'main';
    my %fixed = (
        PORT       => sub { nginx_port($name) },
        REDIS_PORT => sub { redis_port('default') },
        TMP        => sub { tmp_dir() },
        ROOT       => sub { $ROOT },
        PREFIX     => sub { _prefix($name) },
        MODULE     => sub { $MODULE },
    );
    $text =~ s{%%(\w+)%%}{
        my $k = $1;
          $fixed{$k}                   ? $fixed{$k}->()
        : $k =~ /^REDIS_PORT_(\w+)$/   ? redis_port($1)
        : $k =~ /^PORT_(\w+)$/         ? nginx_port($1)
        : $k =~ /^FIXTURE_(\w+)$/      ? fixture_port($1)
        : croak "unknown placeholder %%$k%%"
    }ge;
    return $text;
}

sub nginx_conf {
    my ($http_body, %o) = @_;
    my $name = $o{name} // 'main';
    _check_name('nginx instance', $name);
    _need_module() unless $o{no_module};
    my $p       = _prefix($name);
    my $workers = $o{workers} // 2;
    my $level   = $o{log_level} // 'info';
    my $conf = "# aigov-instance: $name\n";
    $conf .= "load_module $MODULE;\n" unless $o{no_module};
    $conf .= "user $o{user};\n" if $o{user};
    $conf .= <<"EOF";
worker_processes $workers;
pid $p/logs/nginx.pid;
lock_file $p/logs/nginx.lock;
error_log $p/logs/error.log $level;
EOF
    $conf .= "$o{main_extra}\n" if defined $o{main_extra};
    $conf .= "events { worker_connections " . ($o{worker_connections} // 1024) . "; }\n";
    my $access = $o{access_log} ? "access_log $p/logs/access.log;" : 'access_log off;';
    $conf .= <<"EOF";
http {
    $access
    client_body_temp_path $p/temp/client_body;
    proxy_temp_path       $p/temp/proxy;
    fastcgi_temp_path     $p/temp/fastcgi;
    uwsgi_temp_path       $p/temp/uwsgi;
    scgi_temp_path        $p/temp/scgi;

$http_body
}
EOF
    return expand_placeholders($conf, name => $name);
}

sub _conf_name {
    my ($conf, %o) = @_;
    return $o{name} if defined $o{name};
    return $1 if $conf =~ /^# aigov-instance: (\w+)$/m;
    return 'main';
}

sub _make_prefix {
    my ($p) = @_;
    make_path(map({ "$p/temp/$_" } qw(client_body proxy fastcgi uwsgi scgi)),
              "$p/logs", "$p/conf", { mode => 0755 });
}

# nginx -t on a config; returns ($ok, $output).
my $NGINX_T_SEQ = 0;
sub nginx_t {
    my ($conf, %o) = @_;
    my $name = _conf_name($conf, %o);
    my $p = _prefix($name);
    _make_prefix($p);
    my $file = "$p/conf/nginx-t-" . ++$NGINX_T_SEQ . ".conf";
    _spew($file, expand_placeholders($conf, name => $name));
    my ($rc, $out) = _capture($NGINX_BIN, '-t', '-p', "$p/", '-c', $file);
    return ($rc == 0 ? 1 : 0, $out);
}

# ---------------------------------------------------------------------------
# nginx instances
# ---------------------------------------------------------------------------

sub start_nginx {
    my ($conf, %o) = @_;
    my $name = _conf_name($conf, %o);
    _check_name('nginx instance', $name);
    croak "nginx instance '$name' is already running" if $NGINX{$name};
    my $n = AigovTest::Nginx->_new($name);
    $n->_start($conf, %o);
    $NGINX{$name} = $n;
    @NGINX_ORDER = ((grep { $_ ne $name } @NGINX_ORDER), $name);
    return $n;
}

# The instance called $name, or the default one: 'main' if running, else the
# first one started, else the last default that was used (maybe stopped).
sub nginx_instance {
    my ($name) = @_;
    return $NGINX{$name} if defined $name;
    my $d = $NGINX{main} // (map { $NGINX{$_} // () } @NGINX_ORDER)[0] // $LAST_DEFAULT;
    $LAST_DEFAULT = $d if $d;
    return $d;
}

sub _default_nginx {
    my $n = nginx_instance() or croak "no nginx instance has been started";
    return $n;
}

sub reload_nginx { _default_nginx()->reload(@_) }
sub stop_nginx   { _default_nginx()->stop(@_) }

# pids of every process this test started (masters, workers, fixtures, redis)
sub child_pids {
    my @p = sort { $a <=> $b } keys %CHILD;
    return @p, map { $_->[0] } map { _proc_children($_) } @p;
}

sub _default_port {
    my $n = nginx_instance();
    return $n ? $n->port : nginx_port('main');
}

# ---------------------------------------------------------------------------
# error log
# ---------------------------------------------------------------------------

sub _log_path {
    my (%o) = @_;
    return $o{log} if $o{log};
    return $o{nginx}->error_log_path if $o{nginx};
    my $n = nginx_instance();
    return $n ? $n->error_log_path : _prefix('main') . '/logs/error.log';
}

sub error_log_mark {
    my $path = _log_path(@_);
    $LOG_MARK{$path} = (-s $path) || 0;
    return $LOG_MARK{$path};
}

# Lines of the error log after the last mark (all => 1: whole log).
sub error_log_lines {
    my (%o) = @_;
    my $path = _log_path(%o);
    my $off = $o{all} ? 0 : ($LOG_MARK{$path} // 0);
    return split /\n/, _slurp($path, $off);
}

# [error]/[alert]/[crit]/[emerg] lines after the mark not matched by any allow.
sub error_log_check {
    my (%o) = @_;
    my @allow = @{ $o{allow} // [] };
    my @bad;
    LINE: for my $l (error_log_lines(%o)) {
        next unless $l =~ /\[(?:error|alert|crit|emerg)\]/;
        for my $re (@allow) { next LINE if $l =~ $re }
        push @bad, $l;
    }
    return @bad;
}

sub error_log_clean_ok {
    my ($name, %o) = @_;
    my @bad = error_log_check(%o);
    my $tb = Test::More->builder;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    my $ok = $tb->ok(!@bad, $name // 'error log has no unexpected errors');
    $tb->diag(join("\n", "unexpected error log lines:", @bad)) if @bad;
    return $ok;
}

# Wait until a line after the mark matches $re; returns that line or undef.
sub wait_for_log {
    my ($re, %o) = @_;
    my $found;
    wait_for(sub {
        ($found) = grep { $_ =~ $re } error_log_lines(%o);
        defined $found;
    }, timeout => $o{timeout} // 5);
    return $found;
}

# ---------------------------------------------------------------------------
# fixtures
# ---------------------------------------------------------------------------

sub start_fixture {
    my (%o) = @_;
    my $name = $o{name} // 'stable';
    _check_name('fixture', $name);
    croak "fixture '$name' is already running" if $FIXTURE{$name};
    my $version = $o{version} // '0.0.0';
    my $port = fixture_port($name);
    my $log = tmp_dir() . "/logs/fixture-$name.log";
    my $pid = _spawn("fixture $name", $log, $PYTHON, "$ROOT/t/fixtures/model_server.py",
                     '--port', $port, '--name', $name, '--version', $version,
                     '--host', '127.0.0.1', @{ $o{args} // [] });
    my $up = wait_for(sub {
        return -1 if _exited($pid);
        my $r = http_req(port => $port, path => '/health', fresh => 1, timeout => 1);
        return $r->{status} == 200 ? 1 : 0;
    }, timeout => $o{timeout} // $START_TIMEOUT, interval => 0.05);
    if ($up != 1) {
        _stop_pid($pid, 'KILL', 2);
        croak "fixture '$name' did not start on port $port:\n" . _tail($log, 20);
    }
    $FIXTURE{$name} = { pid => $pid, port => $port, version => $version };
    return $port;
}

sub stop_fixture {
    my ($name, %o) = @_;
    my $f = delete $FIXTURE{$name // 'stable'} or return;
    _drop_conns($f->{port});
    _stop_pid($f->{pid}, $o{signal} // 'TERM', $o{timeout} // 5);
    return 1;
}

sub fixture_pid     { my $f = $FIXTURE{ $_[0] // 'stable' }; $f ? $f->{pid} : undef }
sub fixture_sigstop { my $p = fixture_pid(@_) or croak "no such fixture"; kill 'STOP', $p }
sub fixture_sigcont { my $p = fixture_pid(@_) or croak "no such fixture"; kill 'CONT', $p }

# ---------------------------------------------------------------------------
# redis
# ---------------------------------------------------------------------------

sub start_redis {
    my (%o) = @_;
    my $name = $o{name} // 'default';
    _check_name('redis', $name);
    croak "redis '$name' is already running" if $REDIS{$name};
    my $port = redis_port($name);
    my $dir = tmp_dir() . "/redis-$name";
    make_path($dir);
    my $log = tmp_dir() . "/logs/redis-$name.log";
    my $pid = _spawn("redis $name", $log, 'redis-server',
        '--port', $port, '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
        '--daemonize', 'no', '--dir', $dir, @{ $o{args} // [] });
    my $up = wait_for(sub {
        return -1 if _exited($pid);
        my $r = eval { local $REDIS_TIMEOUT = 1; redis_cmd($port, 'PING') };
        return defined $r && !ref $r && $r eq 'PONG' ? 1 : 0;
    }, timeout => $o{timeout} // $START_TIMEOUT, interval => 0.05);
    if ($up != 1) {
        _stop_pid($pid, 'KILL', 2);
        croak "redis '$name' did not start on port $port:\n" . _tail($log, 20);
    }
    $REDIS{$name} = { pid => $pid, port => $port };
    return $port;
}

sub _redis_by_port {
    my ($port) = @_;
    $port //= redis_port('default');
    for my $name (keys %REDIS) {
        return ($name, $REDIS{$name}) if $REDIS{$name}{port} == $port;
    }
    croak "no redis started by this test on port $port";
}

sub stop_redis {
    my ($port) = @_;
    my ($name, $r) = _redis_by_port($port);
    delete $REDIS{$name};
    _stop_pid($r->{pid}, 'TERM', 5);
    return 1;
}

sub redis_sigstop { my (undef, $r) = _redis_by_port(@_); kill 'STOP', $r->{pid} }
sub redis_sigcont { my (undef, $r) = _redis_by_port(@_); kill 'CONT', $r->{pid} }

# One command over a fresh connection.  Reply: simple string / bulk string
# (undef for nil) / integer / arrayref (undef for nil array); an error reply
# comes back as { error => 'ERR ...' }.  Dies on timeout or connection error.
sub redis_cmd {
    my ($port, @args) = @_;
    croak "redis_cmd: no command" unless @args;
    my $deadline = time + $REDIS_TIMEOUT;
    my $c = _connect('127.0.0.1', $port, $REDIS_TIMEOUT)
        or croak "redis_cmd: connect to 127.0.0.1:$port: $!";
    my $wire = '*' . @args . "\r\n";
    for my $a (@args) {
        my $b = "$a";
        utf8::encode($b) if utf8::is_utf8($b);
        $wire .= '$' . length($b) . "\r\n$b\r\n";
    }
    my $err = _send_all($c, $wire, $deadline);
    croak "redis_cmd: send: $err" if $err;
    my $reply = _resp_read($c, $deadline);
    close $c->{sock};
    return $reply;
}

sub _resp_line {
    my ($c, $deadline) = @_;
    while ((my $i = index($c->{buf}, "\r\n")) < 0) {
        my ($n, $err) = _fill($c, $deadline);
        croak "redis_cmd: " . ($err // 'connection closed') unless $n;
    }
    my $i = index($c->{buf}, "\r\n");
    my $line = substr($c->{buf}, 0, $i);
    substr($c->{buf}, 0, $i + 2, '');
    return $line;
}

sub _resp_read {
    my ($c, $deadline) = @_;
    my $line = _resp_line($c, $deadline);
    my $type = substr($line, 0, 1, '');
    return $line                   if $type eq '+';
    return { error => $line }      if $type eq '-';
    return 0 + $line               if $type eq ':';
    if ($type eq '$') {
        return undef if $line < 0;
        while (length($c->{buf}) < $line + 2) {
            my ($n, $err) = _fill($c, $deadline);
            croak "redis_cmd: " . ($err // 'connection closed') unless $n;
        }
        my $s = substr($c->{buf}, 0, $line);
        substr($c->{buf}, 0, $line + 2, '');
        return $s;
    }
    if ($type eq '*') {
        return undef if $line < 0;
        return [ map { _resp_read($c, $deadline) } 1 .. $line ];
    }
    croak "redis_cmd: bad reply type '$type$line'";
}

# ---------------------------------------------------------------------------
# HTTP client (raw sockets, keep-alive cache per host:port)
# ---------------------------------------------------------------------------

sub _connect {
    my ($host, $port, $timeout) = @_;
    my $s = IO::Socket::INET->new(
        PeerAddr => $host, PeerPort => $port, Proto => 'tcp',
        Timeout => $timeout,
    ) or return;
    setsockopt($s, IPPROTO_TCP, TCP_NODELAY, 1);
    $s->blocking(0);
    binmode $s;
    return { sock => $s, buf => '', pid => $$ };
}

sub _drop_conns {
    my ($port) = @_;
    delete $CONN{$_} for grep { /:\Q$port\E$/ } keys %CONN;
}

# Read more bytes into $c->{buf}.  Returns (bytes) or (0, 'eof') or
# (undef, error).
sub _fill {
    my ($c, $deadline) = @_;
    while (1) {
        my $left = $deadline - time;
        return (undef, 'timeout') if $left <= 0;
        my $rin = '';
        vec($rin, fileno($c->{sock}), 1) = 1;
        my $nf = select(my $rout = $rin, undef, undef, $left);
        next if $nf < 0 && $!{EINTR};
        return (undef, 'timeout') if $nf == 0;
        my $n = sysread($c->{sock}, $c->{buf}, 65536, length $c->{buf});
        if (!defined $n) {
            next if $!{EINTR} || $!{EAGAIN} || $!{EWOULDBLOCK};
            return (undef, "read: $!");
        }
        return $n ? ($n) : (0, 'eof');
    }
}

# Returns undef on success, an error string otherwise.
sub _send_all {
    my ($c, $data, $deadline) = @_;
    my $off = 0;
    while ($off < length $data) {
        my $left = $deadline - time;
        return 'timeout while sending' if $left <= 0;
        my $win = '';
        vec($win, fileno($c->{sock}), 1) = 1;
        my $nf = select(undef, my $wout = $win, undef, $left);
        next if $nf < 0 && $!{EINTR};
        next if $nf == 0;
        my $n = syswrite($c->{sock}, $data, 262144, $off);
        if (!defined $n) {
            next if $!{EINTR} || $!{EAGAIN} || $!{EWOULDBLOCK};
            return "write: $!";
        }
        $off += $n;
    }
    return undef;
}

sub _build_request {
    my ($a, $host, $port) = @_;
    my $body = $a->{body};
    my $method = uc($a->{method} // (defined $body || $a->{chunks} ? 'POST' : 'GET'));
    my $path = $a->{path} // '/';
    my @hdr = ref $a->{headers} eq 'ARRAY' ? @{ $a->{headers} }
            : map { ($_, $a->{headers}{$_}) } sort keys %{ $a->{headers} // {} };
    my (%have, @lines);
    while (my ($k, $v) = splice(@hdr, 0, 2)) {
        $have{ lc $k } = 1;
        push @lines, "$k: $v" if defined $v;    # undef value: omit the header
    }
    if (ref $body) {
        $body = $JSON->encode($body);
        push @lines, 'Content-Type: application/json' unless $have{'content-type'};
    } elsif (defined $body && utf8::is_utf8($body)) {
        utf8::encode($body);
    }
    unshift @lines, "Host: $host:$port" unless $have{host};
    push @lines, 'User-Agent: aigov-test' unless $have{'user-agent'};
    push @lines, 'Connection: close'
        if defined $a->{keepalive} && !$a->{keepalive} && !$have{connection};
    my $payload = '';
    if ($a->{chunks}) {
        push @lines, 'Transfer-Encoding: chunked' unless $have{'transfer-encoding'};
        $payload = join('', map { sprintf("%x\r\n%s\r\n", length $_, $_) } @{ $a->{chunks} })
                 . "0\r\n\r\n";
    } else {
        $payload = $body // '';
        my $cl = $a->{content_length};
        $cl //= length $payload
            if defined $body || $method =~ /^(?:POST|PUT|PATCH)$/;
        push @lines, "Content-Length: $cl"
            if defined $cl && !$have{'content-length'} && !$have{'transfer-encoding'};
    }
    my $ver = $a->{http_version} // '1.1';
    return ($method, join("\r\n", "$method $path HTTP/$ver", @lines, '', '') . $payload);
}

sub _fail { return { status => 599, error => $_[0], headers => {}, header_lines => [], body => '' } }

sub http_req {
    my (%a) = @_;
    my $host    = $a{host} // '127.0.0.1';
    my $port    = $a{port} // _default_port();
    my $timeout = $a{timeout} // 10;
    my ($method, $wire);
    if (defined $a{raw}) {
        $wire = $a{raw};
        $method = $wire =~ /^(\w+)/ ? uc $1 : 'GET';
    } else {
        ($method, $wire) = _build_request(\%a, $host, $port);
    }
    my $oneshot = defined $a{raw} || $a{abort} || $a{half_close} || $a{fresh}
               || (defined $a{keepalive} && !$a{keepalive});
    my $key = "$host:$port";

    for my $attempt (1, 2) {
        my $c;
        my $reused = 0;
        if (!$oneshot && ($c = delete $CONN{$key})) {
            # a cached connection that is readable is closed or broken; one
            # inherited across fork() belongs to the parent
            my $rin = '';
            vec($rin, fileno($c->{sock}), 1) = 1;
            if ($c->{pid} != $$ || length $c->{buf}
                || select(my $r = $rin, undef, undef, 0) != 0) {
                undef $c;
            } else {
                $reused = 1;
            }
        }
        $c //= _connect($host, $port, $timeout) or return _fail("connect to $key: $!");
        my $t0 = time;
        my $deadline = $t0 + $timeout;
        my $send_err = _send_all($c, $wire, $deadline);
        if ($a{abort}) {
            close $c->{sock};
            return { status => 0, aborted => 1, error => $send_err, headers => {},
                     header_lines => [], body => '' };
        }
        shutdown($c->{sock}, 1) if $a{half_close};
        my $res = _read_response($c, $method, $deadline, $t0);
        $res->{send_error} = $send_err if $send_err;
        if ($res->{status} == 599 && $reused && !$res->{got_bytes} && $attempt == 1) {
            next;   # stale keep-alive connection: retry once on a new one
        }
        delete $res->{got_bytes};
        if (!$oneshot && $res->{keep}) {
            $CONN{$key} = $c;
        } else {
            close $c->{sock};
        }
        delete $res->{keep};
        return $res;
    }
}

sub _read_response {
    my ($c, $method, $deadline, $t0) = @_;
    my %res = (status => 599, headers => {}, header_lines => [], body => '', got_bytes => 0);
    my $err;
    my $fill = sub {
        my ($n, $e) = _fill($c, $deadline);
        $res{got_bytes} += $n if $n;
        $err = $e unless $n;
        return $n;
    };

    # status line and headers (skipping 1xx interim responses)
    my $head;
    while (1) {
        my $i = index($c->{buf}, "\r\n\r\n");
        if ($i >= 0) {
            $head = substr($c->{buf}, 0, $i);
            substr($c->{buf}, 0, $i + 4, '');
            if ($head =~ m{^HTTP/\d\.\d 1\d\d} && $head !~ m{^HTTP/\d\.\d 101}) {
                next;
            }
            last;
        }
        $fill->() or return { %res, error => ($err eq 'eof' ? 'connection closed before response' : $err) };
    }
    $res{header_ms} = (time - $t0) * 1000;
    my ($status_line, @hl) = split /\r\n/, $head;
    unless ($status_line =~ m{^(HTTP/(\d\.\d)) (\d{3})(?: (.*))?$}) {
        return { %res, error => "bad status line: $status_line" };
    }
    @res{qw(proto status reason)} = ($1, $3, $4 // '');
    my $http10 = $2 eq '1.0';
    for my $l (@hl) {
        my ($k, $v) = $l =~ /^([^:]+):\s*(.*?)\s*$/ or next;
        push @{ $res{header_lines} }, [$k, $v];
        my $lk = lc $k;
        $res{headers}{$lk} = exists $res{headers}{$lk} ? "$res{headers}{$lk}, $v" : $v;
    }
    my $h = $res{headers};
    my $conn_hdr = lc($h->{connection} // '');
    my $keep = $http10 ? $conn_hdr =~ /keep-alive/ : $conn_hdr !~ /close/;

    # body
    my $st = $res{status};
    if ($method eq 'HEAD' || $st == 204 || $st == 304 || $st < 200) {
        # no body
    } elsif (($h->{'transfer-encoding'} // '') =~ /chunked/i) {
        my (@chunks, @chunk_ms);
        while (1) {
            my $i;
            until (($i = index($c->{buf}, "\r\n")) >= 0) {
                $fill->() or return { %res, error => "chunked body: $err", body => join('', @chunks) };
            }
            my $size = hex((split /;/, substr($c->{buf}, 0, $i))[0] // '0');
            substr($c->{buf}, 0, $i + 2, '');
            if ($size == 0) {   # trailers up to an empty line
                while (1) {
                    until (($i = index($c->{buf}, "\r\n")) >= 0) {
                        $fill->() or return { %res, error => "chunked trailer: $err", body => join('', @chunks) };
                    }
                    my $t = substr($c->{buf}, 0, $i);
                    substr($c->{buf}, 0, $i + 2, '');
                    last if $t eq '';
                }
                last;
            }
            while (length($c->{buf}) < $size + 2) {
                $fill->() or return { %res, error => "chunked body: $err", body => join('', @chunks) };
            }
            push @chunks, substr($c->{buf}, 0, $size);
            push @chunk_ms, (time - $t0) * 1000;
            substr($c->{buf}, 0, $size + 2, '');
        }
        $res{body} = join '', @chunks;
        $res{chunks} = \@chunks;
        $res{chunk_ms} = \@chunk_ms;
    } elsif (defined $h->{'content-length'}) {
        my $len = $h->{'content-length'};
        while (length($c->{buf}) < $len) {
            $fill->() or return { %res, error => "body: $err", body => $c->{buf} };
        }
        $res{body} = substr($c->{buf}, 0, $len);
        substr($c->{buf}, 0, $len, '');
    } else {   # read until the connection is closed
        while ($fill->()) { }
        return { %res, error => "body: $err", body => $c->{buf} } if $err ne 'eof';
        $res{body} = $c->{buf};
        $c->{buf} = '';
        $keep = 0;
    }
    $res{elapsed_ms} = (time - $t0) * 1000;
    $res{keep} = $keep;
    if (($h->{'content-type'} // '') =~ /json/i && length $res{body}) {
        $res{json} = eval { $JSON->decode($res{body}) };
        $res{json_error} = $@ if $@;
    }
    return \%res;
}

sub http_get {
    my ($path, %headers) = @_;
    return http_req(method => 'GET', path => $path, headers => \%headers);
}

sub http_post_json {
    my ($path, $body, %headers) = @_;
    $body = $JSON->encode($body) if ref $body;
    $headers{'Content-Type'} //= 'application/json'
        unless grep { lc $_ eq 'content-type' } keys %headers;
    return http_req(method => 'POST', path => $path, headers => \%headers, body => $body);
}

# Run several http_req()s concurrently, one forked client each, all on fresh
# connections; returns the responses in the order of @reqs.
sub http_parallel {
    my (@reqs) = @_;
    @reqs = @{ $reqs[0] } if @reqs == 1 && ref $reqs[0] eq 'ARRAY';
    my @kids;
    for my $req (@reqs) {
        my $pid = open(my $fh, '-|');
        croak "fork: $!" unless defined $pid;
        if (!$pid) {
            my $res = eval { http_req(%$req, fresh => 1) } // _fail("http_req died: $@");
            binmode STDOUT;
            print $JSON->encode($res);
            close STDOUT;
            POSIX::_exit(0);
        }
        push @kids, $fh;
    }
    my @res;
    for my $fh (@kids) {
        binmode $fh;
        local $/;
        my $out = <$fh>;
        close $fh;
        push @res, (eval { $JSON->decode($out // '') } // _fail("parallel client failed"));
    }
    return @res;
}

# The "data:" payloads of a text/event-stream body, in order.
sub sse_events {
    my ($body) = @_;
    my @ev;
    for my $block (split /\r?\n\r?\n/, $body // '') {
        my @data = map { /^data: ?(.*)$/ ? $1 : () } split /\r?\n/, $block;
        push @ev, join("\n", @data) if @data;
    }
    return @ev;
}

# ---------------------------------------------------------------------------
# wrk
# ---------------------------------------------------------------------------

my $WRK_SEQ = 0;
sub run_wrk {
    my (%o) = @_;
    my $url = $o{url} // ('http://127.0.0.1:' . ($o{port} // _default_port()) . ($o{path} // '/'));
    my $secs  = $o{seconds} // 3;
    my $conns = $o{connections} // 10;
    my $thr   = $o{threads} // 2;
    $thr = $conns if $thr > $conns;
    my @cmd = ('wrk', '--latency', '-d', int($secs) . 's', '-c', $conns, '-t', $thr,
               '--timeout', ($o{timeout} // 5) . 's');
    my $h = $o{headers} // {};
    push @cmd, '-H', "$_: $h->{$_}" for sort keys %$h;
    if (defined $o{script} || defined $o{method} || defined $o{body}) {
        my $lua = $o{script} // '';
        if (!defined $o{script}) {
            $lua .= "wrk.method = \"" . uc($o{method} // 'POST') . "\"\n";
            if (defined $o{body}) {
                my $body = ref $o{body} ? $JSON->encode($o{body}) : $o{body};
                my $eq = '=';
                $eq .= '=' while $body =~ /\]$eq\]/;
                $lua .= "wrk.body = [$eq\[$body]$eq]\n";
            }
        }
        my $file = tmp_dir() . "/conf/wrk-" . ++$WRK_SEQ . ".lua";
        _spew($file, $lua);
        push @cmd, '-s', $file;
    }
    push @cmd, $url;
    my ($rc, $out) = _capture(@cmd);
    my %r = (requests => 0, rps => 0, non2xx => 0, socket_errors => 0,
             p50_ms => undef, p90_ms => undef, p99_ms => undef,
             raw => $out, exit => $rc, cmd => join(' ', @cmd));
    $r{requests} = $1 if $out =~ /^\s*(\d+) requests in /m;
    $r{rps}      = $1 if $out =~ /^Requests\/sec:\s+([\d.]+)/m;
    $r{non2xx}   = $1 if $out =~ /Non-2xx or 3xx responses:\s+(\d+)/;
    if ($out =~ /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/) {
        $r{socket_errors} = $1 + $2 + $3 + $4;
        @r{qw(err_connect err_read err_write err_timeout)} = ($1, $2, $3, $4);
    }
    my %unit = (us => 0.001, ms => 1, s => 1000, m => 60000);
    for my $pct (50, 90, 99) {
        $r{"p${pct}_ms"} = $1 * $unit{$2}
            if $out =~ /^\s+$pct(?:\.0+)?%\s+([\d.]+)(us|ms|s|m)\s*$/m;
    }
    return \%r;
}

# run_wrk in a child: returns a sub that waits for it and returns the result
sub wrk_async {
    my (%o) = @_;
    my $file = tmp_dir() . "/wrk-" . int(rand(1e9)) . ".json";
    my $pid = fork;
    croak "fork: $!" unless defined $pid;
    if (!$pid) {
        my $r = eval { run_wrk(%o) } // { error => "$@" };
        if (open(my $fh, '>', $file)) { print {$fh} $JSON->encode($r); close $fh; }
        POSIX::_exit(0);
    }
    return sub {
        waitpid($pid, 0);
        open(my $fh, '<', $file) or return { error => "no wrk result" };
        local $/;
        return $JSON->decode(<$fh>);
    };
}

# aigovctl($node, $token, @args): runs tools/aigovctl against $node's
# /aigov/ with AIGOV_TOKEN=$token (unset when undef); returns its exit
# status and what it printed, stderr included
sub aigovctl {
    my ($n, $token, @args) = @_;
    my $pid = open(my $fh, '-|');
    croak "fork: $!" unless defined $pid;
    if (!$pid) {
        open STDERR, '>&', \*STDOUT;
        $ENV{AIGOV_URL} = 'http://127.0.0.1:' . $n->port . '/aigov/';
        if (defined $token) { $ENV{AIGOV_TOKEN} = $token } else { delete $ENV{AIGOV_TOKEN} }
        exec('sh', repo_root() . '/tools/aigovctl', @args) or POSIX::_exit(127);
    }
    local $/;
    my $out = <$fh> // '';
    close $fh;
    return ($? >> 8, $out);
}

# ---------------------------------------------------------------------------
# AigovTest::Nginx -- one nginx master (daemon off) with its own prefix dir
# ---------------------------------------------------------------------------

package AigovTest::Nginx;

use strict;
use warnings;
use Carp qw(croak);
use Time::HiRes qw(time sleep);

sub _new {
    my ($class, $name) = @_;
    my $p = AigovTest::_prefix($name);
    return bless {
        name      => $name,
        prefix    => $p,
        port      => AigovTest::nginx_port($name),
        conf_file => "$p/conf/nginx.conf",
        error_log => "$p/logs/error.log",
        stderr    => "$p/logs/stderr.log",
        running   => 0,
    }, $class;
}

sub name           { $_[0]{name} }
sub port           { $_[0]{port} }
sub pid            { $_[0]{pid} }
sub prefix         { $_[0]{prefix} }
sub conf_file      { $_[0]{conf_file} }
sub error_log_path { $_[0]{error_log} }
sub running        { $_[0]{running} }
sub reload_error   { $_[0]{reload_error} }
sub stderr_output  { AigovTest::_slurp($_[0]{stderr}) }

sub _expected_workers {
    my ($conf) = @_;
    return 0 if $conf =~ /^\s*master_process\s+off\s*;/m;
    if ($conf =~ /^\s*worker_processes\s+(\w+)\s*;/m) {
        my $n = $1;
        return $n if $n =~ /^\d+$/;
        my $cpus = () = AigovTest::_slurp('/proc/cpuinfo') =~ /^processor\s*:/mg;
        return $cpus || 1;
    }
    return 1;
}

sub _write_conf {
    my ($self, $conf) = @_;
    $conf = AigovTest::expand_placeholders($conf, name => $self->{name});
    AigovTest::_make_prefix($self->{prefix});
    AigovTest::_spew($self->{conf_file}, $conf);
    $self->{conf} = $conf;
    $self->{workers} = _expected_workers($conf);
}

sub worker_pids {
    my ($self) = @_;
    return () unless $self->{running};
    return map { $_->[0] }
           grep { $_->[1] =~ /worker process/ && $_->[1] !~ /shutting down/ }
           AigovTest::_proc_children($self->{pid});
}

sub _listens_on_port {
    my ($self) = @_;
    return $self->{conf} =~ /^\s*listen\s+(?:[\d.]+:|\[[^\]]*\]:)?$self->{port}\b/m;
}

sub _start {
    my ($self, $conf, %o) = @_;
    $self->_write_conf($conf);
    $self->mark;
    my $pid = AigovTest::_spawn("nginx $self->{name}", $self->{stderr},
        AigovTest::nginx_bin(), '-p', "$self->{prefix}/", '-c', $self->{conf_file},
        '-g', 'daemon off;');
    $self->{pid} = $pid;
    $self->{running} = 1;
    my $need_port = $self->_listens_on_port;
    my $ok = AigovTest::wait_for(sub {
        return -1 if AigovTest::_exited($pid);
        my @workers = $self->worker_pids;
        return 0 if @workers < $self->{workers};
        return 1 unless $need_port;
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $self->{port},
                                      Proto => 'tcp', Timeout => 1);
        return $s ? 1 : 0;
    }, timeout => $o{timeout} // $AigovTest::START_TIMEOUT);
    return $self if $ok == 1;

    my $why = $ok == -1 ? "exited with status " . ($? >> 8) : "did not become ready";
    if ($ok != -1) {
        kill 'KILL', $pid, map { $_->[0] } AigovTest::_proc_children($pid);
        AigovTest::_wait_exit($pid, 5);
    }
    delete $CHILD{$pid};
    $self->{running} = 0;
    croak "nginx '$self->{name}' $why\n--- stderr:\n" . AigovTest::_tail($self->{stderr}, 20)
        . "\n--- error log:\n" . AigovTest::_tail($self->{error_log}, 20) . "\n";
}

# Reload with a new config (or the current one if $conf is undef).  Sends
# SIGHUP to the master (via => 'cli' runs `nginx -s reload` instead) and
# waits until all workers are new ones.  Returns 1, or 0 if nginx rejected
# the config (the [emerg] lines are in $n->reload_error; old workers stay).
sub reload {
    my ($self, $conf, %o) = @_;
    croak "nginx '$self->{name}' is not running" unless $self->{running};
    my $old_conf = $self->{conf};
    $self->_write_conf($conf) if defined $conf;
    my $log_off = (-s $self->{error_log}) || 0;
    my %old = map { $_ => 1 } $self->worker_pids;
    delete $self->{reload_error};

    if (($o{via} // 'signal') eq 'cli') {
        my ($rc, $out) = AigovTest::_capture(AigovTest::nginx_bin(), '-p', "$self->{prefix}/",
                                             '-c', $self->{conf_file}, '-s', 'reload');
        if ($rc != 0) {
            $self->{reload_error} = $out;
            $self->_restore_conf($old_conf);
            return 0;
        }
    } else {
        kill 'HUP', $self->{pid} or croak "kill HUP $self->{pid}: $!";
    }

    my $state = AigovTest::wait_for(sub {
        croak "nginx '$self->{name}' master died during reload" if AigovTest::_exited($self->{pid});
        my @emerg = grep { /\[emerg\]/ } split /\n/, AigovTest::_slurp($self->{error_log}, $log_off);
        if (@emerg) {
            $self->{reload_error} = join("\n", @emerg);
            return 'failed';
        }
        my @new = $self->worker_pids;
        return 0 if @new < $self->{workers} || grep { $old{$_} } @new;
        return 'ok';
    }, timeout => $o{timeout} // $AigovTest::START_TIMEOUT);

    AigovTest::_drop_conns($self->{port});
    if ($state ne 'ok') {
        $self->{reload_error} //= 'timeout waiting for new workers';
        $self->_restore_conf($old_conf);
        return 0;
    }
    sleep($o{settle} // 0.3);
    return 1;
}

# After a rejected reload, put the config nginx still runs back on disk.
sub _restore_conf {
    my ($self, $old_conf) = @_;
    AigovTest::_spew($self->{conf_file}, $old_conf);
    $self->{conf} = $old_conf;
    $self->{workers} = _expected_workers($old_conf);
}

# Graceful stop (SIGQUIT), SIGKILL to master and workers if still alive
# after $o{timeout} seconds (default 10).
sub stop {
    my ($self, %o) = @_;
    return 0 unless $self->{running};
    AigovTest::_drop_conns($self->{port});
    my $pid = $self->{pid};
    my @kids = map { $_->[0] } AigovTest::_proc_children($pid);
    kill($o{signal} // 'QUIT', $pid);
    unless (AigovTest::_wait_exit($pid, $o{timeout} // 10)) {
        push @kids, map { $_->[0] } AigovTest::_proc_children($pid);
        kill 'KILL', $pid, @kids;
        AigovTest::_wait_exit($pid, 5);
    }
    AigovTest::wait_for(sub { !grep { kill 0, $_ } @kids }, timeout => 5) if @kids;
    delete $CHILD{$pid};
    delete $NGINX{ $self->{name} } if ($NGINX{ $self->{name} } // 0) == $self;
    $self->{running} = 0;
    return 1;
}

sub alive {
    my ($self) = @_;
    return 0 unless $self->{running};
    return !AigovTest::_exited($self->{pid});
}

sub signal { my ($self, $sig) = @_; kill $sig, $self->{pid} }

# HTTP helpers bound to this instance's port
sub req       { my ($self, %a) = @_; AigovTest::http_req(port => $self->{port}, %a) }
sub get       { my ($self, $path, %h) = @_; $self->req(method => 'GET', path => $path, headers => \%h) }
sub post_json {
    my ($self, $path, $body, %h) = @_;
    $body = $JSON->encode($body) if ref $body;
    $h{'Content-Type'} //= 'application/json' unless grep { lc $_ eq 'content-type' } keys %h;
    $self->req(method => 'POST', path => $path, headers => \%h, body => $body);
}

# error log helpers bound to this instance
sub mark               { AigovTest::error_log_mark(nginx => $_[0]) }
sub error_log_lines    { my ($s, %o) = @_; AigovTest::error_log_lines(%o, nginx => $s) }
sub error_log_check    { my ($s, %o) = @_; AigovTest::error_log_check(%o, nginx => $s) }
sub error_log_clean_ok {
    my ($s, $name, %o) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    AigovTest::error_log_clean_ok($name, %o, nginx => $s);
}
sub wait_for_log       { my ($s, $re, %o) = @_; AigovTest::wait_for_log($re, %o, nginx => $s) }

1;
