# kill -9 of the job worker of a destroy, at its stages.
#
# A destroy that crashes resumes at its stage and still ends destroyed:
# no process, directory, port or credential of the deployment is left, and
# the other deployments keep their server processes.
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;

use DborchTest;

my $node = new_control_plane(ports => '31500-31599');
my %adopted;

deploy($node, 'bystander', 'redis');
is(wait_settled($node, 'bystander'), 'ready', 'the bystander is ready');
$adopted{bystander} = check_ready($node, 'bystander', 'bystander');

my $n = 0;
foreach my $case (
	[ 'postgres', 'destroy:stop' ],
	[ 'postgres', 'destroy:stop:after' ],
	[ 'postgres', 'destroy:remove_data:after' ],
	[ 'redis', 'destroy:stop:after' ],
	[ 'redis', 'destroy:remove_data' ],
	[ 'redis', 'destroy:release:after' ])
{
	my ($engine, $point) = @$case;
	my $name = 'd' . ++$n;
	my $label = "$engine, worker killed at $point";
	my (undef, $stage) = split /:/, $point;

	deploy($node, $name, $engine);
	is(wait_settled($node, $name), 'ready', "$label: $name is ready first");
	set_pause($node, $point);
	sql($node, "SELECT 1 FROM dborch.destroy('$name')");
	my $pid = wait_paused($node, $name, $point);
	ok(defined $pid, "$label: the destroy's job worker paused there");
	kill9_pid($pid) if defined $pid;
	clear_pause($node);

	is(wait_settled($node, $name), 'destroyed', "$label: the destroy ends destroyed");
	is(first_stage_of_attempt($node, $name, 2, 'destroy'),
		$stage, "$label: the next attempt resumed at $stage");
	check_destroyed($node, $name, $label);
	check_no_orphans($node, $label);
	check_same_pids($node, \%adopted, $label);
}

cleanup_all($node);
done_testing();
