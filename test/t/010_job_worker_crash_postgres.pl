# kill -9 of the job worker of a PostgreSQL deploy, at many stages.
#
# Each case pauses the deploy at a stage (dborch.pause_at_stage), kills the
# job worker with SIGKILL (the postmaster then restarts every backend and
# worker, the launcher too), lets the job resume at its recorded stage, and
# checks the outcome (worker_crash_case in DborchTest.pm): ready, with one
# server process, the one the catalog records, answering its connection
# string; nothing orphaned; the deployments made before kept their
# processes (adopted, not restarted).  One more case kills the worker while
# initdb runs, and one gives the job a single attempt so that the crash
# makes it fail: then everything it made must be gone.
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);

use DborchTest;

my $node = new_control_plane(ports => '31000-31099');
my %adopted;    # name => pid of deployments that must keep their process

deploy($node, 'bystander', 'redis');
is(wait_settled($node, 'bystander'), 'ready', 'a redis bystander is ready');
$adopted{bystander} = check_ready($node, 'bystander', 'bystander');

my $n = 0;
foreach my $point (
	qw(
	deploy:prepare:after
	deploy:provision:after
	deploy:start
	deploy:start:after
	deploy:register
	deploy:health_validation:after
	deploy:finalize:after)
  )
{
	worker_crash_case($node, 'postgres', 'pg' . ++$n, $point, \%adopted);
}

# The worker killed while initdb runs (no pause: the initdb process of the
# deployment is the sign).  initdb runs in its own session, so it outlives
# the worker; the resumed attempt must not run a second initdb on the same
# directory beside it.  To make the old initdb outlast the resumption on
# any machine, its process group is stopped (SIGSTOP) while the job
# resumes and continued afterwards.
sub initdb_pids
{
	my ($name) = @_;
	my @pids;
	foreach my $p (glob('/proc/[0-9]*'))
	{
		open(my $fh, '<', "$p/cmdline") or next;
		my $cmd = do { local $/; <$fh> } // '';
		close $fh;
		next unless $cmd =~ m{^[^\0]*/initdb\0} && $cmd =~ m{/instances/\Q$name\E-\d+/data\0};
		open($fh, '<', "$p/stat") or next;
		my $stat = <$fh> // '';
		close $fh;
		next if $stat =~ /\) [ZX] /;
		push @pids, substr($p, 6);
	}
	return @pids;
}

{
	my $name = 'pg_initdb';
	my $label = 'postgres, worker killed during initdb';
	deploy($node, $name, 'postgres');
	my $deadline = time + 60;
	my @initdb;
	while (!@initdb && time < $deadline)
	{
		@initdb = initdb_pids($name);
		usleep(2_000) unless @initdb;
	}
	is(scalar @initdb, 1, "$label: initdb runs");
	my $worker = sql($node,
		"SELECT worker_pid FROM dborch.jobs WHERE kind = 'deploy' AND state = 'running'"
		  . " AND deployment_id = (SELECT max(id) FROM dborch.deployments WHERE name = '$name')");
	ok($worker, "$label: its job worker is known");
	my $pgid = @initdb ? getpgrp($initdb[0]) : 0;
	kill('STOP', -$pgid) if $pgid > 1;
	kill9_pid($worker) if $worker;

	# watch for 5 s whether the resumed attempt starts an initdb while the
	# old one is still there
	my @both;
	$deadline = time + 5;
	while (@initdb && time < $deadline)
	{
		my @now = initdb_pids($name);
		if (grep { $_ != $initdb[0] } @now)
		{
			@both = @now if grep { $_ == $initdb[0] } @now;
			last;
		}
		usleep(5_000);
	}
	kill('CONT', -$pgid) if $pgid > 1;
	is(scalar @both, 0,
		"$label: the resumed attempt's initdb does not run beside the killed worker's")
	  or diag("initdb processes at once: @both");

	is(wait_settled($node, $name), 'ready', "$label: the deploy ends ready");
	is(first_stage_of_attempt($node, $name, 2),
		'provision', "$label: the next attempt resumed at provision");
	my $retries = sql($node,
		"SELECT string_agg(message, '; ') FROM dborch.events WHERE kind = 'retry'"
		  . " AND deployment = '$name'");
	diag("$label: $retries") if $retries ne '';
	$adopted{$name} = check_ready($node, $name, $label);
	check_no_orphans($node, $label);
	check_same_pids($node, \%adopted, $label);
}

single_attempt_case($node, 'postgres', 'pg_fail', 'deploy:start:after', \%adopted);

cleanup_all($node);
done_testing();
