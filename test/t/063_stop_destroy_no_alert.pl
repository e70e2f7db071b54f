# Stopping on purpose (dborch.stop) and destroying are not failures.
#
# A PostgreSQL and a Redis deployment are stopped with dborch.stop(): their
# processes exit, and for longer than failure_threshold probe periods there
# is no instance_down event, no alert, no recover job, no restart; the
# prober no longer probes them.  dborch.start() brings them back to ready
# with their data.  Destroying them makes no alert, event or restart
# either.  Last, a deployment whose recovery is under way (held at its
# restart stage) is stopped: the recover job is cancelled and restarts
# nothing, and start brings it back.  A webhook receiver runs all along and
# must receive only the alert of that one real failure.
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

use DborchTest;

my $node = new_control_plane(ports => '31750-31799');

my $hook_port = free_tcp_port();
my $hook_file = "$PostgreSQL::Test::Utils::tmp_check/webhook-063.jsonl";
my $receiver = start_webhook_receiver($hook_port, $hook_file);
set_webhook_url($node, "http://127.0.0.1:$hook_port/api/v1/alerts");

deploy($node, 'sp', 'postgres');
deploy($node, 'sr', 'redis');
is(wait_settled($node, 'sp'), 'ready', 'sp is ready');
is(wait_settled($node, 'sr'), 'ready', 'sr is ready');
my %uri = map { $_ => sql($node, "SELECT dborch.connection_string('$_')") } qw(sp sr);
my %inst;
foreach my $name (qw(sp sr))
{
	check_ready($node, $name, 'before');
	$inst{$name} = instance_of($node, $name);
}
is(psql_uri($uri{sp}, "CREATE TABLE t (v text); INSERT INTO t VALUES ('kept')"), '', 'sp: a row is committed');
is(redis_cli($uri{sr}, 'SET', 'k', 'kept'), 'OK', 'sr: a key is written');
ok(wait_for($node, q{SELECT probe_targets || '/' || probe_connections FROM dborch.health()}, '2/2', 20),
	'both are probed');

# Nothing that looks like a failure happened to $name: no event, alert or
# recover job.
sub no_failure
{
	my ($name, $label) = @_;
	is(event_count($node, $name, 'instance_down'), '0', "$label: no instance_down event for $name");
	is(event_count($node, $name, 'recovered'), '0', "$label: no recovered event for $name");
	is( sql($node, qq{SELECT count(*) FROM dborch.alerts
		  WHERE deployment_id = (SELECT max(id) FROM dborch.deployments WHERE name = '$name')}),
		'0', "$label: no alert for $name");
	is( sql($node, qq{SELECT count(*) FROM dborch.jobs WHERE kind = 'recover'
		  AND deployment_id = (SELECT max(id) FROM dborch.deployments WHERE name = '$name')}),
		'0', "$label: no recover job for $name");
	return;
}

# stop
sql($node, "SELECT 1 FROM dborch.stop('$_')") foreach qw(sp sr);
foreach my $name (qw(sp sr))
{
	ok(wait_for($node, "SELECT status FROM dborch.deployments WHERE name = '$name'", 'stopped', 60),
		"$name: stopped");
	is(sql($node, "SELECT status FROM dborch.instances WHERE id = $inst{$name}{id}"),
		'stopped', "$name: its instance is stopped");
	is(scalar(server_processes($node, $inst{$name}{real_directory})), 0, "$name: no server process");
}
ok(wait_for($node, q{SELECT probe_targets FROM dborch.health()}, '0', 10), 'stopped deployments are not probed');

# A refused instance that is probed is down within about 0.3 s (three
# misses, retried after 100, 200 ms) and restarted soon after: wait well
# beyond that.
usleep(2_500_000);
foreach my $name (qw(sp sr))
{
	is(sql($node, "SELECT status FROM dborch.deployments WHERE name = '$name'"),
		'stopped', "$name: still stopped 2.5 s later");
	is(scalar(server_processes($node, $inst{$name}{real_directory})), 0,
		"$name: still no server process (no restart)");
	ok(port_free($inst{$name}{port}), "$name: its port is free");
	no_failure($name, 'stopped');
}
is(sql($node, q{SELECT instances_up, instances_down, deployments->>'stopped' FROM dborch.health()}),
	'0|0|2', 'health(): nothing up, nothing down, 2 deployments stopped');

# start
sql($node, "SELECT 1 FROM dborch.start('$_')") foreach qw(sp sr);
foreach my $name (qw(sp sr))
{
	is(wait_settled($node, $name), 'ready', "$name: start brings it back to ready");
	check_ready($node, $name, 'started again');
}
is(psql_uri($uri{sp}, 'SELECT v FROM t'), 'kept', 'sp: the row is still there');
is(redis_cli($uri{sr}, 'GET', 'k'), 'kept', 'sr: the key is still there');
ok(wait_for($node, q{SELECT probe_targets || '/' || probe_connections FROM dborch.health()}, '2/2', 20),
	'both are probed again');
ok( wait_for(
		$node, q{SELECT count(DISTINCT deployment_id) FROM dborch.probes
		          WHERE up AND at > clock_timestamp() - interval '1 second'}, '2', 20),
	'both have fresh samples with up = true');
no_failure($_, 'stopped and started') foreach qw(sp sr);

# destroy
is(destroy_and_wait($node, $_), 'destroyed', "$_: destroyed") foreach qw(sp sr);
usleep(1_500_000);
foreach my $name (qw(sp sr))
{
	no_failure($name, 'destroyed');
	check_destroyed($node, $name, 'destroyed');
}
is(sql($node, q{SELECT probe_targets, instances_down FROM dborch.health()}), '0|0',
	'health(): no probe target, nothing down');

# A deployment whose recovery is under way is stopped on purpose: the
# recover job is cancelled and restarts nothing.
deploy($node, 'sx', 'redis');
is(wait_settled($node, 'sx'), 'ready', 'sx is ready');
my $sx = instance_of($node, 'sx');
check_ready($node, 'sx', 'sx before');
set_pause($node, 'recover:restart');
kill9_pid($sx->{pid});
ok(defined wait_paused($node, 'sx', 'recover:restart'), 'sx: down, its recover job held at restart');
is(deployment_status($node, 'sx'), 'down', 'sx is down');
sql($node, "SELECT 1 FROM dborch.stop('sx')");
is(deployment_status($node, 'sx'), 'stopping', 'sx: stopping');
# the stop job runs once the held recover job lets go of the deployment
clear_pause($node);
ok(wait_for($node, "SELECT status FROM dborch.deployments WHERE name = 'sx'", 'stopped', 60),
	'sx: stop of a down deployment ends stopped');
ok( wait_for(
		$node, q{SELECT string_agg(state, ',') FROM dborch.jobs WHERE kind = 'recover'
		          AND deployment_id = (SELECT max(id) FROM dborch.deployments WHERE name = 'sx')},
		'cancelled', 30),
	'sx: its recover job is cancelled');
usleep(1_500_000);
is(deployment_status($node, 'sx'), 'stopped', 'sx: still stopped');
is(scalar(server_processes($node, $sx->{real_directory})), 0, 'sx: the cancelled recovery started nothing');
is(event_count($node, 'sx', 'instance_down'), '1', 'sx: one instance_down event (the kill)');
is(event_count($node, 'sx', 'restarted'), '0', 'sx: no restarted event');
sql($node, "SELECT 1 FROM dborch.start('sx')");
is(wait_settled($node, 'sx'), 'ready', 'sx: start brings it back to ready');
check_ready($node, 'sx', 'sx started');
my @sx_alerts = alert_rows($node, 'sx');
diag("sx alerts after stop and start: " . join(', ', map { "$_->{status}/$_->{delivery}" } @sx_alerts));
is(scalar(grep { $_->{status} eq 'firing' } @sx_alerts), 1, 'sx: one firing alert (the kill)');

# The receiver got nothing about sp and sr (sx's alert is delivered by
# now: every alert of this test has been sent).
ok(wait_for($node, q{SELECT count(*) FROM dborch.alerts WHERE delivery <> 'sent'}, '0', 20),
	'every alert is delivered');
my @got = webhook_payloads($hook_file);
is(scalar(grep { my $d = $_->{alerts}[0]{labels}{deployment} // ''; $d eq 'sp' || $d eq 'sr' } @got),
	0, 'the webhook receiver got no alert about stopped or destroyed deployments');

stop_helper($receiver);
cleanup_all($node);
done_testing();
