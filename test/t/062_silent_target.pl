# A probe target that accepts TCP but never answers.
#
# Two fake deployments (one postgres, one redis; status ready) each with a
# running instance on the port of test/bin/silent-server (accepts, never
# reads nor replies) and a password secret are inserted by hand into the
# catalog as superuser.  The prober must mark each down after
# dborch.failure_threshold (3) probes that each hit dborch.probe_timeout
# (2 s here, to make a stalled prober obvious), and meanwhile keep probing
# a real Redis and a real PostgreSQL: fresh samples with up = true all
# along, no gap a blocking probe would leave.
#
# The recover job of a fake cannot restart it (its data directory does not
# exist): it fails fast, three attempts, and the fake deployment ends
# failed, which takes it off the prober's list.  The test then deletes the
# fake rows (alerts, jobs, secrets, instances, deployments, samples).
#
# Last, the prober reconnects to the real ones with a wrong password: an
# authentication failure means the server is up, not a missed probe.
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

use DborchTest;

my $timeout_ms = 2000;
my $node = new_control_plane(
	ports => '31700-31749',
	conf => ["dborch.probe_timeout = '${timeout_ms}ms'"]);

deploy($node, 'live_rd', 'redis');
deploy($node, 'live_pg', 'postgres');
is(wait_settled($node, 'live_rd'), 'ready', 'live_rd is ready');
is(wait_settled($node, 'live_pg'), 'ready', 'live_pg is ready');
check_ready($node, 'live_rd', 'before');
check_ready($node, 'live_pg', 'before');
ok(wait_for($node, q{SELECT probe_targets || '/' || probe_connections FROM dborch.health()}, '2/2', 20),
	'the prober has the two real instances connected');

my %fake;
foreach my $engine (qw(postgres redis))
{
	my $port = free_tcp_port();
	my $pid = start_helper("silent-server-$port", [ $^X, "$DborchTest::TEST_BIN/silent-server", $port ],
		port => $port);
	$fake{$engine} = { port => $port, pid => $pid, name => "fake_$engine" };
}

# Insert both fakes in one transaction; the prober learns of them at
# commit.  Their data directories do not exist: a recovery fails fast.
my $missing = "$PostgreSQL::Test::Utils::tmp_check/no-such-directory";
my $t_insert = sql(
	$node, qq{
	BEGIN;
	WITH d AS (
	  INSERT INTO dborch.deployments (name, engine, owner, spec, memory_bytes, status, node, ready_at)
	  VALUES ('fake_postgres', 'postgres', current_user, '{"memory": "32MB", "version": "15"}', 33554432, 'ready', 'local', now()),
	         ('fake_redis', 'redis', current_user, '{"memory": "16MB", "version": "7"}', 16777216, 'ready', 'local', now())
	  RETURNING id, name, engine),
	i AS (
	  INSERT INTO dborch.instances (deployment_id, host, port, data_directory, status)
	  SELECT id, '127.0.0.1', CASE engine WHEN 'postgres' THEN $fake{postgres}{port} ELSE $fake{redis}{port} END,
	         '$missing/' || name, 'running' FROM d)
	INSERT INTO dborch.secrets (deployment_id, name, owner, value)
	SELECT id, 'password', current_user, 'not-a-real-password' FROM d;
	SELECT extract(epoch FROM clock_timestamp());
	COMMIT;});
ok($t_insert, 'the fake deployments are in the catalog');

ok(wait_for($node, q{SELECT probe_targets FROM dborch.health()}, '4', 10),
	'the prober probes 4 instances');

foreach my $f (values %fake)
{
	ok(wait_event_count($node, $f->{name}, 'instance_down', 1, 30),
		"$f->{name} is marked down");
}
my $t_down = time;

foreach my $f (sort { $a->{name} cmp $b->{name} } values %fake)
{
	my $name = $f->{name};
	my ($down_at, $message, $failures) = split /\|/, sql(
		$node, qq{
		SELECT extract(epoch FROM at), message, detail->>'failures' FROM dborch.events
		 WHERE kind = 'instance_down' AND deployment = '$name'});
	my $took = $down_at - $t_insert;
	diag(sprintf("%s: down %.3f s after the insert (3 deadlines of %d ms are %.1f s)",
			$name, $took, $timeout_ms, 3 * $timeout_ms / 1000));
	is($failures, '3', "$name: down after failure_threshold (3) missed probes");
	like($message, qr/no answer within $timeout_ms ms/, "$name: each miss was the probe deadline");
	cmp_ok($took, '>=', 3 * $timeout_ms / 1000,
		"$name: not marked down before three deadlines have passed");
	is(sql($node, "SELECT count(*) FROM dborch.probes p JOIN dborch.deployments d ON d.id = p.deployment_id
	                WHERE d.name = '$name' AND p.up"),
		'0', "$name: never a sample with up = true");
}

# The real instances were probed all along: samples every period, all up.
foreach my $name (qw(live_rd live_pg))
{
	my @at = split /\n/, sql(
		$node, qq{
		SELECT extract(epoch FROM at) || '|' || up::int FROM dborch.metrics('$name', '5 minutes')
		 WHERE at BETWEEN to_timestamp($t_insert) AND to_timestamp($t_down) ORDER BY at});
	my @not_up = grep { !/\|1$/ } @at;
	is(scalar @not_up, 0, "$name: every sample while the fakes hung is up");
	my @times = ($t_insert, (map { (split /\|/)[0] } @at), $t_down);
	my $gap = 0;
	foreach my $i (1 .. $#times)
	{
		$gap = $times[$i] - $times[ $i - 1 ] if $times[$i] - $times[ $i - 1 ] > $gap;
	}
	my $window = $t_down - $t_insert;
	diag(sprintf("%s: %d samples in %.1f s while the fakes hung, largest gap %.3f s",
			$name, scalar @at, $window, $gap));
	# bounds with room for a busy machine; a prober that waited on the fakes
	# would miss a period per fake and deadline
	cmp_ok(scalar @at, '>=', int($window / 2), "$name: a sample about every period (1 s)");
	cmp_ok($gap, '<', 1.75 * $timeout_ms / 1000,
		"$name: no gap between its samples as long as both fakes' deadlines (the prober never blocked)");
	is(event_count($node, $name, 'instance_down'), '0', "$name: never marked down");
}
is(sql($node, q{SELECT instances_up, instances_down FROM dborch.health()}),
	'2|2', 'health(): the two real instances up, the two fakes down');

# The fakes' recover jobs cannot start anything: they fail, and the fake
# deployments end failed (no longer probed).
foreach my $f (values %fake)
{
	my $name = $f->{name};
	is(wait_settled($node, $name, 60), 'failed', "$name: its recovery fails, the deployment is failed");
	my $job = sql($node, qq{SELECT state || '|' || attempts || '|' || coalesce(error, '') FROM dborch.jobs
	                        WHERE kind = 'recover' AND deployment_id = (SELECT id FROM dborch.deployments WHERE name = '$name')});
	like($job, qr/^failed\|3\|/, "$name: one recover job, failed after 3 attempts");
	diag("$name: recover job: $job");
	diag("$name: last_error: " . sql($node, "SELECT last_error FROM dborch.deployments WHERE name = '$name'"));
	is(event_count($node, $name, 'recovered'), '0', "$name: never recovered");
}
ok(wait_for($node, q{SELECT probe_targets FROM dborch.health()}, '2', 10),
	'failed fakes are no longer probed');

# Remove the fakes from the catalog.
sql($node, q{
	BEGIN;
	CREATE TEMP TABLE fakes AS SELECT id FROM dborch.deployments WHERE name LIKE 'fake\_%';
	DELETE FROM dborch.alerts WHERE deployment_id IN (SELECT id FROM fakes);
	DELETE FROM dborch.jobs WHERE deployment_id IN (SELECT id FROM fakes);
	DELETE FROM dborch.secrets WHERE deployment_id IN (SELECT id FROM fakes);
	DELETE FROM dborch.probes WHERE deployment_id IN (SELECT id FROM fakes);
	DELETE FROM dborch.instances WHERE deployment_id IN (SELECT id FROM fakes);
	DELETE FROM dborch.deployments WHERE id IN (SELECT id FROM fakes);
	COMMIT;});
is(sql($node, q{SELECT count(*) FROM dborch.deployments WHERE name LIKE 'fake\_%'}), '0',
	'the fake rows are gone');
stop_helper($_->{pid}) foreach values %fake;

# An authentication failure means the server answered: up, not a miss
# (as PQping reads it).  The prober is made to reconnect with a wrong
# password for its own login, the secret named dborch (an UPDATE of
# instances.status wakes it to reload its targets).
my %password = map {
	$_ => sql($node, "SELECT s.value FROM dborch.secrets s JOIN dborch.deployments d ON d.id = s.deployment_id
	                  WHERE d.name = '$_' AND s.name = 'dborch'")
} qw(live_rd live_pg);
my $t_wrong = sql($node, q{
	BEGIN;
	UPDATE dborch.secrets SET value = 'wrong-password' WHERE name = 'dborch';
	UPDATE dborch.instances SET status = status;
	SELECT extract(epoch FROM clock_timestamp());
	COMMIT;});
foreach my $name (qw(live_rd live_pg))
{
	ok( wait_for(
			$node, qq{SELECT count(*) >= 3 FROM dborch.metrics('$name', '1 minute')
			          WHERE at > to_timestamp($t_wrong) AND up AND error IS NOT NULL}, 't', 20),
		"$name: with a wrong password, samples say up = true with the error");
	my @errors = split /\n/, sql($node, qq{SELECT DISTINCT error FROM dborch.metrics('$name', '1 minute')
	                                      WHERE at > to_timestamp($t_wrong) AND error IS NOT NULL});
	diag("$name: errors recorded with a wrong password: " . join(' | ', map { "\"$_\"" } @errors));
	my $want = $name eq 'live_rd' ? qr/WRONGPASS|invalid username-password/ : qr/password authentication failed/;
	is(scalar(grep { $_ !~ $want } @errors), 0,
		"$name: every error recorded is the authentication failure ($want)");
	is(event_count($node, $name, 'instance_down'), '0', "$name: an authentication failure is not a miss");
	is(deployment_status($node, $name), 'ready', "$name: still ready");
}
sql($node, qq{
	BEGIN;
	UPDATE dborch.secrets s SET value = CASE d.name WHEN 'live_rd' THEN '$password{live_rd}' ELSE '$password{live_pg}' END
	  FROM dborch.deployments d WHERE d.id = s.deployment_id AND s.name = 'dborch';
	UPDATE dborch.instances SET status = status;
	COMMIT;});
my $t_right = sql($node, q{SELECT extract(epoch FROM clock_timestamp())});
foreach my $name (qw(live_rd live_pg))
{
	ok( wait_for(
			$node, qq{SELECT count(*) > 0 FROM dborch.metrics('$name', '1 minute')
			          WHERE at > to_timestamp($t_right) AND up AND error IS NULL AND connections IS NOT NULL}, 't', 20),
		"$name: with the right password again, full samples");
}

# The real ones are still fine.
check_ready($node, 'live_rd', 'after');
check_ready($node, 'live_pg', 'after');
is(sql($node, q{SELECT instances_up, instances_down, probe_targets FROM dborch.health()}),
	'2|0|2', 'health(): 2 up, 0 down, 2 targets');

cleanup_all($node);
done_testing();
