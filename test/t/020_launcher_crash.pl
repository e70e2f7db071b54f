# kill -9 of the dborch launcher during deploys.
#
# Killing the launcher makes the postmaster restart every backend and
# worker, so the paused job worker dies with it.  The new launcher must
# requeue the job, which resumes at its recorded stage and ends ready; the
# deployments that were ready keep their server processes (adopted).
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;

use DborchTest;

my $node = new_control_plane(ports => '31200-31299');
my %adopted;

foreach my $d ([ 'base_pg', 'postgres' ], [ 'base_rd', 'redis' ])
{
	deploy($node, @$d);
	is(wait_settled($node, $d->[0]), 'ready', "$d->[0] is ready");
	$adopted{ $d->[0] } = check_ready($node, $d->[0], 'before the crashes');
}

# Kill the launcher while a deploy is paused at $point.
sub launcher_crash_case
{
	my ($engine, $name, $point) = @_;
	my $label = "$engine, launcher killed while the deploy is at $point";
	my (undef, $stage) = split /:/, $point;

	set_pause($node, $point);
	deploy($node, $name, $engine);
	my $worker = wait_paused($node, $name, $point);
	ok(defined $worker, "$label: the job worker paused there");
	my $launcher = launcher_pid($node);
	ok($launcher, "$label: the launcher runs");
	kill9_pid($launcher) if $launcher;
	ok( wait_value(
			$node, "SELECT pid FROM pg_stat_activity
			 WHERE backend_type = 'dborch launcher' AND pid <> $launcher"),
		"$label: a new launcher started");
	ok(!kill(0, $worker), "$label: the job worker died with the launcher")
	  if defined $worker;
	clear_pause($node);

	is(wait_settled($node, $name), 'ready', "$label: the deploy ends ready");
	is(first_stage_of_attempt($node, $name, 2),
		$stage, "$label: the next attempt resumed at $stage");
	my $pid = check_ready($node, $name, $label);
	check_no_orphans($node, $label);
	check_same_pids($node, \%adopted, $label);
	$adopted{$name} = $pid;
	return;
}

launcher_crash_case('postgres', 'pg_a', 'deploy:provision:after');
launcher_crash_case('postgres', 'pg_b', 'deploy:start:after');
launcher_crash_case('redis', 'rd_a', 'deploy:start:after');
launcher_crash_case('redis', 'rd_b', 'deploy:health_validation');

# The launcher killed right after deploy() commits, with no pause: the job
# is queued or just claimed, whichever the kill hits.
{
	my $label = 'redis, launcher killed right after deploy()';
	my $launcher = launcher_pid($node);
	deploy($node, 'rd_c', 'redis');
	kill9_pid($launcher);
	is(wait_settled($node, 'rd_c'), 'ready', "$label: the deploy ends ready");
	$adopted{rd_c} = check_ready($node, 'rd_c', $label);
	check_no_orphans($node, $label);
	check_same_pids($node, \%adopted, $label);
}

cleanup_all($node);
done_testing();
