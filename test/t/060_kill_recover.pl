# kill -9 of a deployed PostgreSQL's postmaster and of a Redis: failure
# detection, automatic recovery, events, notifications and alerts.
#
# Each deployment is killed three times.  The first time the recover job is
# held at its restart stage (dborch.pause_at_stage) for several missed
# probes, so the test can look at the failure itself: instance and
# deployment down, dborch.health() counting it, samples with up = false,
# still one event.  The second time nothing is held, and the test prints how
# long detection and recovery took (never asserted).  The third time both
# are killed at once.  After each kill: the deployment is ready again with one new server process; the row
# committed (PostgreSQL) and the keys written (Redis, appendonly) before are
# there; exactly one instance_down and one recovered event, one recover job,
# one firing and one resolved alert, both delivered to the webhook receiver
# this test runs on loopback in Alertmanager's shape; and a LISTEN
# dborch_events session receives the down and recovered payloads.
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

use DborchTest;

my $node = new_control_plane(ports => '31600-31649');

my $hook_port = free_tcp_port();
my $hook_file = "$PostgreSQL::Test::Utils::tmp_check/webhook-060.jsonl";
my $receiver = start_webhook_receiver($hook_port, $hook_file);
set_webhook_url($node, "http://127.0.0.1:$hook_port/api/v1/alerts");
my $listener = listen_session($node);

deploy($node, 'kpg', 'postgres');
deploy($node, 'krd', 'redis');
is(wait_settled($node, 'kpg'), 'ready', 'kpg is ready');
is(wait_settled($node, 'krd'), 'ready', 'krd is ready');
check_ready($node, 'kpg', 'before the kills');
check_ready($node, 'krd', 'before the kills');

my %engine = (kpg => 'postgres', krd => 'redis');
my %uri = map { $_ => sql($node, "SELECT dborch.connection_string('$_')") } qw(kpg krd);

# Data written before the kills.
is(psql_uri($uri{kpg}, "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('committed before the kills')"),
	'', 'kpg: a row is committed');
is(redis_cli($uri{krd}, 'SET', 'k1', 'v1'), 'OK', 'krd: k1 is written');
is(redis_cli($uri{krd}, 'SET', 'k2', 'v2'), 'OK', 'krd: k2 is written');
is(redis_cli($uri{krd}, 'RPUSH', 'list', 'a', 'b', 'c'), '3', 'krd: a list is written');

# The metrics of both, with the keys the prober must see before a kill.
ok( wait_for(
		$node, q{SELECT count(*) > 0 FROM dborch.metrics('krd', '1 minute')
		          WHERE up AND keys = 3}, 't', 20),
	'krd: the prober sees its 3 keys');
ok(wait_for($node, q{SELECT count(*) >= 3 FROM dborch.metrics('kpg', '1 minute') WHERE up}, 't', 20),
	'kpg: several samples in the last minute');
is( sql($node, q{
	SELECT up, latency_ms >= 0, connections >= 1, xact_commit > 0, db_size_bytes > 0,
	       in_recovery, error IS NULL, rss_bytes > 0, cpu_percent IS NOT NULL, role
	  FROM dborch.metrics('kpg', '1 minute') ORDER BY at DESC LIMIT 1}),
	't|t|t|t|t|f|t|t|t|primary',
	'kpg: its latest sample has up, latency, connections, xact_commit, db size, in_recovery false, cpu, rss');
is( sql($node, q{
	SELECT up, latency_ms >= 0, connections >= 1, used_memory_bytes > 0, keys, error IS NULL,
	       xact_commit IS NULL, rss_bytes > 0, cpu_percent IS NOT NULL
	  FROM dborch.metrics('krd', '1 minute') ORDER BY at DESC LIMIT 1}),
	't|t|t|t|3|t|t|t|t',
	'krd: its latest sample has up, latency, connections, used memory, keys, cpu, rss');
is( sql($node, q{
	SELECT instances_up, instances_down, instances_total, deployments->>'ready',
	       launcher_alive, prober_alive, last_probe_age < interval '5 seconds',
	       probe_targets, probe_connections, probe_descriptors_exhausted
	  FROM dborch.health()}),
	'2|0|2|2|t|t|t|2|2|f',
	'health() before the kills: 2 up, 0 down, workers alive, fresh probes, 2 targets connected');
is(scalar(listen_notifications($listener)), 0, 'no notification before the kills');

my %kills;    # name => number of kills so far
my %payloads_seen;    # name => webhook payloads seen so far
my @timings;

sub latest_epoch
{
	my ($name, $kind) = @_;
	return sql($node, qq{
		SELECT extract(epoch FROM max(at)) FROM dborch.events
		 WHERE kind = '$kind' AND deployment = '$name'});
}

sub count_of
{
	my ($name, $what) = @_;
	return sql($node, qq{
		SELECT count(*) FROM $what
		   AND deployment_id = (SELECT id FROM dborch.deployments WHERE name = '$name')});
}

# kill -9 of the server of each deployment in @$names at once; with
# $paused, their recover jobs are held at restart while the failure is
# looked at.  Then every check of a recovery, per deployment.
sub kill_case
{
	my ($names, $paused) = @_;
	my %c;
	foreach my $name (@$names)
	{
		my $inst = instance_of($node, $name);
		my $n = ++$kills{$name};
		$c{$name} = {
			n => $n,
			inst => $inst,
			engine => $engine{$name},
			label => "$name ($engine{$name}) kill $n"
			  . (@$names > 1 ? ' (' . join(' and ', @$names) . ' at once)' : '')
			  . ($paused ? ', recovery held' : ''),
			recover_jobs => count_of($name, "dborch.jobs WHERE kind = 'recover'"),
		};
	}

	set_pause($node, 'recover:restart') if $paused;
	my $t0 = time;
	kill9_pid($c{$_}{inst}{pid}) foreach @$names;

	if ($paused)
	{
		my $k = scalar @$names;
		foreach my $name (@$names)
		{
			my ($label, $inst, $n) = @{ $c{$name} }{qw(label inst n)};
			my $worker = wait_paused($node, $name, 'recover:restart');
			ok(defined $worker, "$label: a recover job is queued and held at restart");
			is(sql($node, "SELECT status FROM dborch.instances WHERE id = $inst->{id}"),
				'down', "$label: instances.status is down");
			is(deployment_status($node, $name), 'down', "$label: deployments.status is down");
			# hold the recovery while the prober keeps missing: it must
			# not count the failure again
			ok( wait_for(
					$node, qq{SELECT count(*) >= 3 FROM dborch.metrics('$name', '1 minute')
					          WHERE NOT up AND error IS NOT NULL AND at > to_timestamp($t0)}, 't', 15),
				"$label: metrics() has several samples with up = false and the error");
			is(event_count($node, $name, 'instance_down'), $n,
				"$label: still one instance_down event after several missed probes");
			is(sql($node, "SELECT up FROM dborch.prometheus_metrics WHERE deployment = '$name'"),
				'0', "$label: prometheus_metrics says up = 0");
			is( sql($node, qq{SELECT count(*) FROM dborch.jobs j WHERE kind = 'recover'
				  AND state IN ('queued', 'running')
				  AND deployment_id = (SELECT id FROM dborch.deployments WHERE name = '$name')}),
				'1', "$label: exactly one recover job is under way");
		}
		my $up = 2 - $k;
		is( sql($node, q{
			SELECT instances_up, instances_down, instances_total, deployments->>'down',
			       coalesce(deployments->>'ready', '0'), launcher_alive, prober_alive,
			       last_probe_age < interval '5 seconds'
			  FROM dborch.health()}),
			"$up|$k|2|$k|$up|t|t|t",
			"@$names down: health() counts $up up and $k down, workers alive, probes fresh");
		clear_pause($node);
	}

	my %notes;
	foreach my $name (@$names)
	{
		my ($label, $inst, $n, $engine) = @{ $c{$name} }{qw(label inst n engine)};
		my $old_pid = $inst->{pid};

		# the kill is noticed, then repaired (an unheld recovery can be
		# over before a poll would see the down status)
		ok(wait_event_count($node, $name, 'instance_down', $n, 30), "$label: the kill is detected");
		ok(wait_event_count($node, $name, 'recovered', $n, 60), "$label: the instance is recovered");
		ok( wait_for(
				$node, qq{SELECT d.status || '/' || i.status FROM dborch.deployments d
				  JOIN dborch.instances i ON i.deployment_id = d.id WHERE d.name = '$name'},
				'ready/running', 60),
			"$label: ready again");
		ok( wait_for(
				$node, count_query($name, "dborch.jobs WHERE kind = 'recover' AND state = 'succeeded'"),
				$c{$name}{recover_jobs} + 1, 30),
			"$label: its recover job succeeded");
		is(count_of($name, "dborch.jobs WHERE kind = 'recover'"),
			$c{$name}{recover_jobs} + 1, "$label: exactly one recover job for this kill");
		is(event_count($node, $name, 'instance_down'), $n, "$label: exactly one instance_down event");
		is(event_count($node, $name, 'recovered'), $n, "$label: exactly one recovered event");
		my $pid = check_ready($node, $name, $label);
		isnt($pid, $old_pid, "$label: a new server process");

		my $down_at = latest_epoch($name, 'instance_down');
		my $recovered_at = latest_epoch($name, 'recovered');
		my %t = (
			label => $label,
			detection => $down_at - $t0,
			ready => $recovered_at - $t0);
		push @timings, \%t;
		diag(sprintf("%s: down after %.3f s, ready again after %.3f s (from the kill, by the events' times)",
				$label, $t{detection}, $t{ready}));

		# the data written before
		if ($engine eq 'postgres')
		{
			is(psql_uri($uri{$name}, 'SELECT v FROM kept'),
				'committed before the kills', "$label: the committed row is there");
		}
		else
		{
			is(redis_cli($uri{$name}, 'MGET', 'k1', 'k2'), "v1\nv2", "$label: k1 and k2 are there");
			is(redis_cli($uri{$name}, 'LRANGE', 'list', '0', '-1'), "a\nb\nc", "$label: the list is there");
		}

		# alerts: one firing, one resolved, both delivered
		ok( wait_for(
				$node, count_query($name, "dborch.alerts WHERE delivery = 'sent'"), 2 * $n, 30),
			"$label: both alerts are delivered");
		my @alerts = alert_rows($node, $name);
		is(scalar @alerts, 2 * $n, "$label: exactly two alerts for this kill");
		my ($firing, $resolved) = @alerts[ -2, -1 ];
		is($firing->{status}, 'firing', "$label: the first is firing");
		is($resolved->{status}, 'resolved', "$label: the second is resolved");
		is($firing->{instance_id}, $inst->{id}, "$label: the firing alert names the instance");
		is(join(',', map { "$_->{delivery}/$_->{attempts}" } $firing, $resolved),
			'sent/1,sent/1', "$label: each was sent at the first attempt");

		# what the receiver got
		my @mine;
		ok( wait_until(
				sub {
					@mine = grep { ($_->{alerts}[0]{labels}{deployment} // '') eq $name }
					  webhook_payloads($hook_file);
					return @mine >= 2 * $n;
				}),
			"$label: the receiver got both alerts");
		is(scalar @mine, 2 * $n, "$label: the receiver got exactly two alerts for this kill");
		my ($wf, $wr) = @mine[ -2, -1 ];
		check_webhook_payload($wf, 'firing', $name, $engine, $inst, "$label, firing");
		check_webhook_payload($wr, 'resolved', $name, $engine, $inst, "$label, resolved");
		is($wr->{alerts}[0]{startsAt}, $wf->{alerts}[0]{startsAt},
			"$label: the resolved alert starts when the firing one did");
		ok($wr->{alerts}[0]{endsAt} ge $wr->{alerts}[0]{startsAt},
			"$label: the resolved alert ends after it started");
		is_deeply($wr->{alerts}[0]{labels}, $wf->{alerts}[0]{labels},
			"$label: both alerts carry the same labels");
	}

	# LISTEN dborch_events: every notification since the last look.  Any
	# role may listen, so a payload is an event's id and nothing else; the
	# event row (row-level security) tells the rest.
	my @payloads = listen_notifications($listener);
	is(join(',', map { join('+', sort keys %$_) } @payloads), join(',', ('event_id') x scalar @payloads),
		"@$names: each notification carries an event id and nothing else");
	foreach my $p (@payloads)
	{
		my ($dep, $kind, $inst_id, $endpoint) = split /\|/, sql($node,
			"SELECT deployment, kind, detail ->> 'instance_id', detail ->> 'endpoint' FROM dborch.events"
			  . " WHERE id = " . ($p->{event_id} // 0));
		push @{ $notes{ $dep // '?' } }, { event => $kind, instance_id => $inst_id, endpoint => $endpoint };
	}
	is(join(',', sort keys %notes), join(',', sort @$names),
		"@$names: notifications about these deployments only");
	foreach my $name (@$names)
	{
		my ($label, $inst) = @{ $c{$name} }{qw(label inst)};
		my @notes = @{ $notes{$name} // [] };
		is(join(',', map { $_->{event} // '?' } @notes), 'instance_down,recovered',
			"$label: LISTEN got the ids of its instance_down and recovered events");
		foreach my $p (@notes)
		{
			is($p->{instance_id}, $inst->{id}, "$label: the $p->{event} event names the instance");
			is($p->{endpoint}, "127.0.0.1:$inst->{port}", "$label: the $p->{event} event has the endpoint");
		}
	}
	return;
}

sub count_query
{
	my ($name, $what) = @_;
	return qq{SELECT count(*) FROM $what
	   AND deployment_id = (SELECT id FROM dborch.deployments WHERE name = '$name')};
}

sub wait_until
{
	my ($cond, $timeout) = @_;
	my $deadline = time + ($timeout // 30);
	while (!$cond->())
	{
		return 0 if time > $deadline;
		usleep(100_000);
	}
	return 1;
}

sub check_webhook_payload
{
	my ($p, $status, $name, $engine, $inst, $label) = @_;
	my $a = $p->{alerts}[0] // {};
	is($p->{version}, '4', "$label: version 4");
	is($p->{status}, $status, "$label: status $status");
	is($a->{status}, $status, "$label: alerts[0].status $status");
	is($a->{labels}{alertname}, 'DborchInstanceDown', "$label: alertname");
	is($a->{labels}{deployment}, $name, "$label: label deployment");
	is($a->{labels}{engine}, $engine, "$label: label engine");
	is($a->{labels}{instance}, "127.0.0.1:$inst->{port}", "$label: label instance is host:port");
	like($a->{annotations}{summary} // '', qr/\Q$name\E/, "$label: annotations.summary names the deployment");
	like($a->{startsAt} // '', qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/, "$label: startsAt is RFC 3339");
	if ($status eq 'firing')
	{
		like($a->{endsAt} // '', qr/^0001-01-01T00:00:00Z$/, "$label: a firing alert has no end");
	}
	else
	{
		like($a->{endsAt} // '', qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/, "$label: endsAt is RFC 3339");
	}
	return;
}

kill_case(['kpg'], 1);
kill_case(['krd'], 1);
kill_case(['kpg'], 0);
kill_case(['krd'], 0);
kill_case([ 'kpg', 'krd' ], 0);

is( sql($node, q{
	SELECT instances_up, instances_down, alerts_pending, launcher_alive, prober_alive
	  FROM dborch.health()}),
	'2|0|0|t|t', 'health() after the recoveries: 2 up, 0 down, no alert pending');

diag(sprintf("%-55s %10s %10s", 'kill', 'detection', 'ready'));
diag(sprintf("%-55s %9.3fs %9.3fs", $_->{label}, $_->{detection}, $_->{ready})) foreach @timings;

$listener->quit;
stop_helper($receiver);
cleanup_all($node);
done_testing();
