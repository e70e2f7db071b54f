# kill -9 of the control plane's postmaster during deploys.
#
# The whole control plane dies; its children exit on postmaster death.  The
# managed instances run in their own sessions and must survive.  After
# $node->start the launcher adopts the running instances and requeues the
# interrupted job, which resumes at its recorded stage and ends ready with
# the server process that survived (not a second copy).  The warm pool is
# on (size 1), so PostgreSQL deploys take a pre-initialized directory; every
# kill waits until no warm-pool job runs.
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;

use DborchTest;

my $node = new_control_plane(ports => '31300-31399', warm_pool_size => 1);
my %adopted;

# No warm-pool job is queued or running (and, with $filled, the pool has a
# ready entry).
sub wait_pool_idle
{
	my ($filled) = @_;
	my $ready =
	  $filled
	  ? "(SELECT count(*) FROM dborch.warm_pool WHERE status = 'ready') >= 1"
	  : 'true';
	return wait_for(
		$node, "SELECT $ready
		   AND NOT EXISTS (SELECT 1 FROM dborch.jobs WHERE kind = 'warm_pool'
		                   AND state IN ('queued', 'running'))", 't', 60);
}

# The first deploy wakes the launcher, which then fills the pool
# (CREATE EXTENSION cannot wake it).
deploy($node, 'base_rd', 'redis');
is(wait_settled($node, 'base_rd'), 'ready', 'base_rd is ready');
$adopted{base_rd} = check_ready($node, 'base_rd', 'before the crashes');
ok(wait_pool_idle(1), 'the warm pool is filled');

# A PostgreSQL deploy takes the pool's entry; the launcher must refill it.
deploy($node, 'base_pg', 'postgres');
is(wait_settled($node, 'base_pg'), 'ready', 'base_pg is ready');
$adopted{base_pg} = check_ready($node, 'base_pg', 'before the crashes');
is( sql($node,
		"SELECT count(*) FROM dborch.events WHERE deployment = 'base_pg' AND kind = 'warm_pool'"),
	'1',
	'base_pg took the warm-pool entry');
ok(wait_pool_idle(1), 'the warm pool is refilled after a deploy took its entry');
check_no_orphans($node, 'before the crashes');

sub postmaster_crash_case
{
	my ($engine, $name, $point) = @_;
	my $label = "$engine, postmaster killed while the deploy is at $point";
	my (undef, $stage) = split /:/, $point;

	set_pause($node, $point);
	deploy($node, $name, $engine);
	my $worker = wait_paused($node, $name, $point);
	ok(defined $worker, "$label: the job worker paused there");
	ok(wait_pool_idle(), "$label: no warm-pool job runs");
	my $inst = instance_of($node, $name);
	my @before = $inst ? server_processes($node, $inst->{real_directory}) : ();

	kill9_postmaster($node);
	my @survivors = map { $_->{pid} } managed_processes($node);
	foreach my $n (sort keys %adopted)
	{
		my $i = grep { $_ == $adopted{$n} } @survivors;
		ok($i, "$label: $n survived the control plane");
	}
	if (@before)
	{
		ok(kill(0, $before[0]{pid}), "$label: the new server of $name survived");
	}

	$node->start;
	clear_pause($node);
	is(wait_settled($node, $name), 'ready', "$label: the deploy ends ready");
	is(first_stage_of_attempt($node, $name, 2),
		$stage, "$label: the next attempt resumed at $stage");
	my $pid = check_ready($node, $name, $label);
	is($pid, $before[0]{pid}, "$label: $name kept the server that survived (no second copy)")
	  if @before;
	check_no_orphans($node, $label);
	check_same_pids($node, \%adopted, $label);
	$adopted{$name} = $pid;
	ok(wait_pool_idle(1), "$label: the warm pool is filled again");
	check_no_orphans($node, "$label, warm pool filled");
	return;
}

postmaster_crash_case('postgres', 'pg_a', 'deploy:provision:after');
postmaster_crash_case('postgres', 'pg_b', 'deploy:start:after');
postmaster_crash_case('redis', 'rd_a', 'deploy:register');
postmaster_crash_case('redis', 'rd_b', 'deploy:start:after');

cleanup_all($node);
done_testing();
