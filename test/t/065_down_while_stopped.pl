# An instance that dies while the control plane is stopped, and the
# retention of probe samples.
#
# With the control plane stopped, a Redis deployment's server is killed.
# When the control plane starts again, the launcher adopts the PostgreSQL
# deployment that still runs (no event, same pid) and leaves the dead Redis
# to the prober, which finds it down and recovers it: one instance_down
# event, one recovered event, one firing and one resolved alert (pending:
# no webhook is set, so they wait in dborch.alerts), keys intact.
#
# Samples older than dborch.metrics_retention (1 hour) are deleted by the
# launcher's housekeeping, which runs when it starts: a sample inserted two
# hours in the past is gone after the restart, one from 30 minutes ago
# stays.
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

use DborchTest;

my $node = new_control_plane(ports => '31850-31899');

deploy($node, 'wr', 'redis');
deploy($node, 'wp', 'postgres');
is(wait_settled($node, 'wr'), 'ready', 'wr is ready');
is(wait_settled($node, 'wp'), 'ready', 'wp is ready');
my $wr_pid = check_ready($node, 'wr', 'before');
my $wp_pid = check_ready($node, 'wp', 'before');
my $wr = instance_of($node, 'wr');
my $uri = sql($node, "SELECT dborch.connection_string('wr')");
is(redis_cli($uri, 'SET', 'survivor', 'yes'), 'OK', 'wr: a key is written');
ok(wait_for($node, q{SELECT count(*) > 0 FROM dborch.metrics('wr', '1 minute') WHERE up AND keys = 1}, 't', 20),
	'wr: the prober saw the key');

# Old samples, by hand.
sql($node, qq{
	INSERT INTO dborch.probes (at, instance_id, deployment_id, up, latency_ms)
	SELECT now() - interval '2 hours', i.id, i.deployment_id, true, 12345.125 FROM dborch.instances i WHERE i.id = $wr->{id};
	INSERT INTO dborch.probes (at, instance_id, deployment_id, up, latency_ms)
	SELECT now() - interval '30 minutes', i.id, i.deployment_id, true, 23456.125 FROM dborch.instances i WHERE i.id = $wr->{id};});
is( sql($node, q{SELECT count(*) FROM dborch.probes WHERE at < now() - interval '10 minutes'}),
	'2', 'two old samples are in dborch.probes');

$node->stop('fast');
kill9_pid($wr_pid);
my $deadline = time + 30;
usleep(20_000) while port_free($wr->{port}) == 0 && time < $deadline;
ok(port_free($wr->{port}), "wr's port is free: its server is dead");
ok(kill(0, $wp_pid), 'wp still runs while the control plane is stopped');

my $t0 = time;
$node->start;

ok(wait_event_count($node, 'wr', 'instance_down', 1, 30), 'wr: found down after the restart');
ok(wait_event_count($node, 'wr', 'recovered', 1, 60), 'wr: recovered');
is(wait_settled($node, 'wr'), 'ready', 'wr: ready again');
diag(sprintf("wr: down %.3f s and ready %.3f s after the control plane started",
		sql($node, "SELECT extract(epoch FROM max(at)) FROM dborch.events WHERE deployment = 'wr' AND kind = 'instance_down'") - $t0,
		sql($node, "SELECT extract(epoch FROM max(at)) FROM dborch.events WHERE deployment = 'wr' AND kind = 'recovered'") - $t0));
my $new_pid = check_ready($node, 'wr', 'after the restart');
isnt($new_pid, $wr_pid, 'wr: a new server process');
is(redis_cli($uri, 'GET', 'survivor'), 'yes', 'wr: the key is still there');
is(event_count($node, 'wr', 'instance_down'), '1', 'wr: exactly one instance_down event');
is(event_count($node, 'wr', 'recovered'), '1', 'wr: exactly one recovered event');
is( sql($node, q{SELECT count(*) FROM dborch.jobs WHERE kind = 'recover' AND state = 'succeeded'
                   AND deployment_id = (SELECT id FROM dborch.deployments WHERE name = 'wr')}),
	'1', 'wr: one recover job, succeeded');
is(join(',', map { "$_->{status}/$_->{delivery}" } alert_rows($node, 'wr')),
	'firing/pending,resolved/pending', 'wr: one firing and one resolved alert, waiting for a webhook');

check_same_pids($node, { wp => $wp_pid }, 'after the restart');
is(event_count($node, 'wp', 'instance_down'), '0', 'wp: no instance_down event');
is(scalar(alert_rows($node, 'wp')), 0, 'wp: no alert');

is( sql($node, q{
	SELECT instances_up, instances_down, launcher_alive, prober_alive, alerts_pending,
	       last_probe_age < interval '5 seconds'
	  FROM dborch.health()}),
	'2|0|t|t|2|t', 'health() after the restart: 2 up, workers alive, 2 alerts pending, fresh probes');

# retention: the launcher's housekeeping ran when it started
ok( wait_for(
		$node, q{SELECT count(*) FROM dborch.probes WHERE at < now() - interval '90 minutes'}, '0', 20),
	'the sample older than metrics_retention (1h) is deleted');
is(sql($node, q{SELECT count(*) FROM dborch.probes WHERE at BETWEEN now() - interval '40 minutes' AND now() - interval '20 minutes'}),
	'1', 'the sample from 30 minutes ago is kept');
is(sql($node, q{SELECT count(*) FROM dborch.metrics('wr', '1 hour') WHERE latency_ms = 23456.125}),
	'1', "metrics('wr', '1 hour') includes it");
is(sql($node, q{SELECT count(*) FROM dborch.metrics('wr', '10 minutes') WHERE latency_ms = 23456.125}),
	'0', "metrics('wr', '10 minutes') does not");

cleanup_all($node);
done_testing();
