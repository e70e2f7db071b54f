# A server that is busy, not dead: the prober's probe is answered late.
#
# A session on a PostgreSQL deployment holds pg_database locked for 2.5 s,
# which stalls the probe query (it reads pg_database); a Lua script keeps
# a Redis deployment busy for 2.5 s.  dborch.probe_timeout is 1 s and
# dborch.failure_threshold 5, so each stall costs two misses and no more.
# The prober keeps its connection through the stall (the same backend pid,
# the same Redis client id before and after), records the late answer as a
# good probe whose latency is the whole wait, and the instance is never
# down: no instance_down event, no alert, no recover job.
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

use DborchTest;

my $node = new_control_plane(
	ports => '32200-32249',
	conf => [ "dborch.probe_timeout = '1s'", 'dborch.failure_threshold = 5' ]);

deploy($node, 'busy_pg', 'postgres');
deploy($node, 'busy_rd', 'redis');
is(wait_settled($node, 'busy_pg'), 'ready', 'busy_pg is ready');
is(wait_settled($node, 'busy_rd'), 'ready', 'busy_rd is ready');
my %uri = map { $_ => sql($node, "SELECT dborch.connection_string('$_')") } qw(busy_pg busy_rd);

# The prober's connection on each instance: its backend pid, its client id.
sub prober_connection
{
	my ($name) = @_;
	return psql_uri($uri{$name},
		q{SELECT string_agg(pid::text, ',') FROM pg_stat_activity WHERE application_name = 'dborch prober'})
	  if $name eq 'busy_pg';
	my $list = redis_cli($uri{$name}, 'CLIENT', 'LIST') // '';
	return join(',', map { /\bid=(\d+)/ ? $1 : () } grep { /\bcmd=info\b/ } split /\n/, $list);
}

my %stall = (
	busy_pg => sub {
		# (a superuser's lock: the owner may not lock pg_database)
		psql_uri(dborch_uri($node, 'busy_pg'),
			'BEGIN; LOCK pg_database IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(2.5); COMMIT');
	},
	busy_rd => sub {
		redis_cli($uri{busy_rd}, 'EVAL',
			q{local t0 = redis.call('TIME')
			  local start = t0[1] * 1000000 + t0[2]
			  repeat
			    local t = redis.call('TIME')
			  until t[1] * 1000000 + t[2] - start > 2500000
			  return 1}, '0');
	});

foreach my $name (qw(busy_pg busy_rd))
{
	ok( wait_for(
			$node,
			"SELECT count(*) >= 2 FROM dborch.metrics('$name', '1 minute') WHERE up AND error IS NULL",
			't', 20),
		"$name: the prober has probed it");
	my $before = prober_connection($name);
	like($before, qr/^\d+$/, "$name: one prober connection ($before)");
	my $t0 = sql($node, 'SELECT clock_timestamp()');

	$stall{$name}->();
	ok( wait_for(
			$node, qq{SELECT count(*) > 0 FROM dborch.metrics('$name', '1 minute')
			           WHERE at > '$t0' AND up AND latency_ms > 1000}, 't', 20),
		"$name: the late answer is a good probe with a latency over the 1 s timeout");
	diag("$name: latest latencies (ms) since the stall: "
		  . join(' ', split /\n/, sql($node, qq{
			SELECT coalesce(round(latency_ms)::text, error) FROM dborch.metrics('$name', '1 minute')
			 WHERE at > '$t0' ORDER BY at})));
	is(prober_connection($name), $before, "$name: the prober kept its connection through the stall");
	is(event_count($node, $name, 'instance_down'), '0', "$name: no instance_down event");
	is(scalar(alert_rows($node, $name)), 0, "$name: no alert");
	is( sql($node, qq{SELECT count(*) FROM dborch.jobs WHERE kind = 'recover'
	                    AND deployment_id = (SELECT id FROM dborch.deployments WHERE name = '$name')}),
		'0', "$name: no recover job");
	is(instance_of($node, $name)->{status}, 'running', "$name: its instance is running");
}

cleanup_all($node);
done_testing();
