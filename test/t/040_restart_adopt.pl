# Clean restarts of the control plane with running deployments.
#
# With one PostgreSQL and one Redis deployment ready: $node->restart, and a
# stop and a later start, must leave the instances running; the launcher
# adopts them (same pids in dborch.instances, one server process each,
# still answering), it never starts a second copy.  A restart while a
# deploy is paused ends the job worker (SIGTERM); after the restart the job
# resumes at its stage and ends ready.  Finally everything is destroyed
# and no process is left.
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;

use DborchTest;

my $node = new_control_plane(ports => '31400-31499');
my %adopted;

foreach my $d ([ 'app_pg', 'postgres' ], [ 'app_rd', 'redis' ])
{
	deploy($node, @$d);
	is(wait_settled($node, $d->[0]), 'ready', "$d->[0] is ready");
	$adopted{ $d->[0] } = check_ready($node, $d->[0], 'before the restart');
}

# restart: adopted, not restarted
{
	my $label = 'after a restart';
	my $offset = -s $node->logfile;
	$node->restart;
	ok($node->wait_for_log(qr/dborch: adopted 2 running instances/, $offset),
		"$label: the launcher adopted both instances");
	check_same_pids($node, \%adopted, $label);
	check_ready($node, $_, $label) foreach sort keys %adopted;
	check_no_orphans($node, $label);
}

# stop, then start: the instances run on while the control plane is down
{
	my $label = 'after a stop and a start';
	my %uri = map { $_ => sql($node, "SELECT dborch.connection_string('$_')") }
	  keys %adopted;
	$node->stop('fast');
	my %running = map { $_->{pid} => 1 } managed_processes($node);
	foreach my $name (sort keys %adopted)
	{
		ok($running{ $adopted{$name} }, "while the control plane is down, $name runs on");
		ok(answers_uri($uri{$name}, $name),
			"while the control plane is down, $name answers");
	}
	my $offset = -s $node->logfile;
	$node->start;
	ok($node->wait_for_log(qr/dborch: adopted 2 running instances/, $offset),
		"$label: the launcher adopted both instances");
	check_same_pids($node, \%adopted, $label);
	check_no_orphans($node, $label);
}

# a restart while deploys are paused: the job workers get SIGTERM at the
# shutdown; the jobs resume after the restart
{
	my $label = 'restart during deploys';
	set_pause($node, 'deploy:start:after');
	deploy($node, 'mid_pg', 'postgres');
	deploy($node, 'mid_rd', 'redis');
	my @workers = grep { defined } map { wait_paused($node, $_, 'deploy:start:after') }
	  qw(mid_pg mid_rd);
	is(scalar @workers, 2, "$label: both job workers paused after start");
	# (the pid is not recorded yet: the stage has not committed)
	my %started = map {
		my @s = server_processes($node, instance_of($node, $_)->{real_directory});
		$_ => (@s == 1 ? $s[0]{pid} : -1)
	} qw(mid_pg mid_rd);
	$node->restart;
	clear_pause($node);
	foreach my $name (qw(mid_pg mid_rd))
	{
		is(wait_settled($node, $name), 'ready', "$label: $name ends ready");
		is(first_stage_of_attempt($node, $name, 2),
			'start', "$label: the job of $name resumed at start");
		my $pid = check_ready($node, $name, "$label, $name");
		is($pid, $started{$name}, "$label: $name kept the server started before the restart");
		$adopted{$name} = $pid;
	}
	check_same_pids($node, \%adopted, $label);
	check_no_orphans($node, $label);
}

cleanup_all($node);
done_testing();
