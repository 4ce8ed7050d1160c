#!/usr/bin/perl
# Redis over a unix socket, with AUTH (password= inline) and SELECT (db=):
# a kill switch written into db 2 reaches the node, a change made through
# the admin API lands in db 2 and not in db 0, and a wrong password is a
# handshake refusal logged as [error], with the node serving on regardless.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use AigovTest;
use Time::HiRes qw(time sleep);

start_fixture(name => 'stable',    version => '1.4.2');
start_fixture(name => 'candidate', version => '1.5.0');

my $SOCK = tmp_dir() . '/redis.sock';
my $PASS = 'unix-secret-0123456789';
my $rport = start_redis(args => ['--unixsocket', $SOCK, '--unixsocketperm', '777']);
redis_cmd($rport, 'CONFIG', 'SET', 'requirepass', $PASS);

my $TOKENS = tmp_dir() . '/tokens';
{
    open(my $fh, '>', $TOKENS) or die;
    print {$fh} "ops write w-unix-0123456789abcdef\n";
    close $fh;
    chmod 0644, $TOKENS;
}

sub conf {
    my ($password) = @_;
    return <<"EOF";
upstream chat_v1 { server 127.0.0.1:%%FIXTURE_stable%%; }
upstream chat_v2 { server 127.0.0.1:%%FIXTURE_candidate%%; }
aigov_zone aigov:1m;
aigov_redis unix:$SOCK password=$password db=2 sync_interval=200ms;
aigov_model chat {
    variant v1 chat_v1 version=1.4.2 stable;
    variant v2 chat_v2 version=1.5.0;
    canary  v2 0%;
}
server {
    listen 127.0.0.1:%%PORT%%;
    location /v2/models/ { aigov_route kserve; proxy_pass http://\$aigov_upstream; }
    location = /status { aigov_status; }
    location /aigov/ { aigov_admin tokens=$TOKENS; }
}
EOF
}

my $n = start_nginx(nginx_conf(conf($PASS)));

sub status { my $r = http_get('/status'); return $r->{json} }

ok wait_for(sub { my $s = status(); $s && $s->{redis}{connected} }, timeout => 5),
    'connected over the unix socket with AUTH and SELECT';

my $infer = sub { http_req(method => 'POST', path => '/v2/models/chat/infer', body => '{}') };
is $infer->()->{status}, 200, 'routed before the flip';

# the harness's redis_cmd opens one connection per call and cannot AUTH:
# send AUTH, SELECT 2 and the commands on one connection, return the replies
sub raw_redis {
    my (@cmds) = @_;
    require IO::Socket::INET;
    require IO::Select;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $rport, Timeout => 3)
        or die "redis: $!";
    my $out = '';
    for my $c (['AUTH', $PASS], ['SELECT', '2'], @cmds) {
        $out .= '*' . scalar(@$c) . "\r\n" . join('', map { '$' . length($_) . "\r\n$_\r\n" } @$c);
    }
    print {$s} $out;
    my $sel = IO::Select->new($s);
    my $buf = '';
    my $deadline = time + 3;
    # read until the server has been quiet for 200 ms after answering
    while (time < $deadline && $sel->can_read(length($buf) ? 0.2 : 3)) {
        my $got = '';
        last unless $s->sysread($got, 65536);
        $buf .= $got;
    }
    close $s;
    return $buf;
}

my $t0 = time;
raw_redis(['HSET', 'aigov:model:chat', 'kill', '1'],
          ['HINCRBY', 'aigov:model:chat', 'version', '1'],
          ['PUBLISH', 'aigov:control', 'chat']);

ok wait_for(sub { $infer->()->{status} == 503 }, timeout => 2), 'a kill switch written into db 2 reaches the node';
diag sprintf('kill over the unix socket seen after %.0f ms', (time - $t0) * 1000);

# an admin change lands in db 2, not in db 0
my $c = http_req(method => 'POST', path => '/aigov/models/chat/unkill',
                 headers => { Authorization => 'Bearer w-unix-0123456789abcdef' }, fresh => 1);
is $c->{status}, 200, 'unkill through the admin API';
is $c->{json}{propagated}, JSON::PP::true(), 'propagated through the unix socket';
like raw_redis(['HGET', 'aigov:model:chat', 'kill']), qr/\$1\r\n0\r\n/, 'db 2 has kill 0';
like raw_redis(['SELECT', '0'], ['EXISTS', 'aigov:model:chat']), qr/:0\r\n/, 'db 0 has no aigov key';
is $infer->()->{status}, 200, 'routed again';

error_log_clean_ok('no errors with the right password');

# a wrong password: [error] handshake refused, traffic unaffected
my $mark = error_log_mark();
ok reload_nginx(nginx_conf(conf('wrong-password-000000'))), 'reload with a wrong password';
ok wait_for(sub { grep { /handshake refused/ } error_log_lines() }, timeout => 5),
    'a wrong password is logged as a refused handshake';
is $infer->()->{status}, 200, 'requests are served while Redis refuses us';
my $s = status();
ok !$s->{redis}{connected}, 'status: not connected';
ok $s->{redis}{degraded}, 'status: degraded';
my @crash = grep { /exited on signal/ } error_log_lines(all => 1);
is_deeply \@crash, [], 'no worker crashed';

stop_nginx();
done_testing;
