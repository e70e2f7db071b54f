# Auto-scaling on connections.
#
# A PostgreSQL deployment with max_connections 20 gets the policy
# {"metric": "connections", "scale_up_at": 0.8, "scale_down_at": 0.3,
#  "min_replicas": 0, "max_replicas": 1, "cooldown": "40 seconds"}.
# The test holds 17 sessions open on it (with the prober's, 18 of 20: 0.9):
# the launcher adds a replica, with an 'autoscale' event holding the metric,
# its value (at least 0.8) and the replica counts.  The sessions are closed at
# once; the metric (an average over the last minute of probes) falls below
# 0.3 while the cooldown still runs, yet the replica stays until the cooldown
# is over, and is removed only then ('autoscale' event, replicas 1 to 0, value
# at most 0.3; replica, slot and process gone).  No other decision is made:
# no flapping.  Then a scale-up that the memory quota does not allow is held
# back with an event, and made once the quota allows it.  The cooldown is 40 s rather than less so that the metric
# falls below the threshold well inside it (the one-minute average takes
# about 20 s to fall after the sessions close), which is what makes the
# cooldown, and not the metric, hold the replica.
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

use DborchTest;

my $node = new_control_plane(ports => '32150-32199');
my $name = 'asp';
my $COOLDOWN = 40;
my $HELD = 17;

# The error of a statement, as "SQLSTATE: message", or 'no error'.
sub sql_error
{
	my ($query) = @_;
	my ($rc, $out, $err) = $node->psql('postgres', "\\set VERBOSITY verbose\n$query");
	return 'no error' if $rc == 0;
	my ($msg) = $err =~ /ERROR:\s+(\S+: .*)/;
	return $msg // $err;
}

# psql against a URI: its output and errors together.
sub psql_out
{
	my ($uri, $query) = @_;
	my ($out, $err) = ('', '');
	local $ENV{PGCONNECT_TIMEOUT} = '5';
	eval {
		IPC::Run::run([ 'psql', '-XAtq', '-d', $uri, '-c', $query ],
			'<', \undef, '>', \$out, '2>', \$err, IPC::Run::timeout(20));
	};
	chomp $out;
	return $out . $err;
}

# Decisions so far: hashes of at (epoch), message and the detail's figures.
sub decisions
{
	my $out = sql($node, qq{
		SELECT extract(epoch FROM at), message, detail->>'metric', detail->>'value',
		       detail->>'replicas', detail->>'want'
		  FROM dborch.events
		 WHERE kind = 'autoscale' AND detail ? 'want'
		   AND deployment_id = (SELECT max(id) FROM dborch.deployments WHERE name = '$name')
		 ORDER BY id});
	return map {
		my @f = split /\|/;
		{ at => $f[0], message => $f[1], metric => $f[2], value => $f[3], replicas => $f[4], want => $f[5] }
	} grep { $_ ne '' } split /\n/, $out;
}

sub live_replicas
{
	return sql($node, qq{SELECT count(*) FROM dborch.instances
		WHERE role = 'replica' AND status <> 'destroyed'
		  AND deployment_id = (SELECT max(id) FROM dborch.deployments WHERE name = '$name')});
}

# The metric as the launcher computes it: connections over max_connections,
# averaged over the running instances' probes of the last minute.
sub metric_now
{
	return sql($node, qq{
		SELECT coalesce(round(avg(s.connections::float8 / 20)::numeric, 3)::text, '')
		  FROM dborch.probes s JOIN dborch.instances i ON i.id = s.instance_id
		 WHERE i.status = 'running' AND s.up AND s.at > clock_timestamp() - interval '1 minute'
		   AND i.deployment_id = (SELECT max(id) FROM dborch.deployments WHERE name = '$name')});
}

deploy($node, $name, 'postgres', '{"memory": "32MB", "max_connections": 20}');
is(wait_settled($node, $name), 'ready', 'the deployment is ready');
my $uri = sql($node, "SELECT dborch.connection_string('$name')");
is(psql_out($uri, 'SHOW max_connections'), '20', 'it runs with max_connections 20');

# Hold sessions open at once (the metric is an average over the last minute
# of probes: the fewer samples before, the sooner it passes scale_up_at).
# They are dborch's (superuser) sessions: 17 of max_connections 20 leave
# no slot for anyone but a superuser, the owner included, so the test
# counts and ends them as dborch too.
my $dborch_uri = dborch_uri($node, $name);
my @held;
my $t_open = time;
foreach (1 .. $HELD)
{
	my ($o, $e) = ('', '');
	push @held,
	  IPC::Run::start([ 'psql', '-XAtq', '-d', $dborch_uri . ($dborch_uri =~ /\?/ ? '&' : '?') . 'application_name=tap_hold', '-c', 'SELECT pg_sleep(600)' ],
		'<', \undef, '>', \$o, '2>', \$e);
}
ok( until_count(
		sub { psql_out($dborch_uri, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'tap_hold'") }, $HELD, 30),
	"$HELD sessions are held open on the primary");


# refusals of set_autoscale()
is(sql_error(qq{SELECT dborch.set_autoscale('$name', '{"metric": "disk", "scale_up_at": 0.8, "scale_down_at": 0.3, "max_replicas": 1}')}),
	'22023: autoscale needs a metric: cpu, memory or connections', 'an unknown metric is refused (22023)');
is(sql_error(qq{SELECT dborch.set_autoscale('$name', '{"metric": "cpu", "scale_up_at": 0.3, "scale_down_at": 0.8, "max_replicas": 1}')}),
	'22023: autoscale needs scale_up_at above scale_down_at', 'scale_up_at below scale_down_at is refused (22023)');
is(sql_error(qq{SELECT dborch.set_autoscale('$name', '{"metric": "cpu", "scale_up_at": 0.8, "scale_down_at": 0.3, "min_replicas": 2, "max_replicas": 1}')}),
	'22023: autoscale needs max_replicas at least min_replicas', 'max_replicas below min_replicas is refused (22023)');
is(sql_error(qq{SELECT dborch.set_autoscale('$name', '{"metric": "cpu", "scale_up_at": 0.8, "scale_down_at": 0.3, "max_replicas": 1, "often": true}')}),
	'22023: invalid autoscale option "often"', 'an unknown option is refused (22023)');
is(sql_error(qq{SELECT dborch.set_autoscale('$name', '{"metric": "cpu", "scale_up_at": 0.8, "scale_down_at": 0.3, "max_replicas": 11}')}),
	'22023: autoscale "max_replicas" must be between 0 and 10', 'more than 10 replicas is refused (22023)');
is(sql_error(qq{SELECT dborch.set_autoscale('as_nosuch', '{"metric": "cpu", "scale_up_at": 0.8, "scale_down_at": 0.3, "max_replicas": 1}')}),
	'42704: deployment "as_nosuch" does not exist', 'an unknown deployment is refused (42704)');
is(sql($node, "SELECT count(*) FROM dborch.autoscale_policies"), '0', 'the refused calls stored no policy');

my $policy = qq{{"metric": "connections", "scale_up_at": 0.8, "scale_down_at": 0.3, "min_replicas": 0, "max_replicas": 1, "cooldown": "$COOLDOWN seconds"}};
is( sql($node, qq{SELECT metric || ' ' || scale_up_at || ' ' || scale_down_at || ' ' || min_replicas || ' ' || max_replicas
		|| ' ' || extract(epoch FROM cooldown)::int FROM dborch.set_autoscale('$name', '$policy')}),
	"connections 0.8 0.3 0 1 $COOLDOWN", 'set_autoscale() stores the policy');
is(sql($node, qq{SELECT count(*) FROM dborch.events WHERE kind = 'autoscale' AND deployment = '$name' AND NOT detail ? 'want'}),
	'1', 'an event records the policy');

# Wait for the decision, watching the metric as the launcher computes it: it
# evaluates every 5 s, so the decision must follow the metric reaching
# scale_up_at (with the policy set) by about that; 20 s is allowed.
my ($t_high, @d);
ok( until_true(
		sub {
			my $m = metric_now();
			$t_high //= time if $m ne '' && $m >= 0.8;
			@d = decisions();
			return @d >= 1;
		},
		120),
	'the launcher makes a decision');
my $up = $d[0] // {};
note(sprintf("metric at or above 0.8 %s s after the sessions opened; scale-up decision %.1f s after: %s",
		defined $t_high ? sprintf('%.1f', $t_high - $t_open) : 'never',
		($up->{at} // 0) - $t_open, $up->{message} // ''));
note('connections at each probe of the deployment so far: ' . sql($node, qq{
	SELECT string_agg(s.connections::text, ' ' ORDER BY s.at) FROM dborch.probes s JOIN dborch.instances i ON i.id = s.instance_id
	 WHERE s.up AND i.deployment_id = (SELECT max(id) FROM dborch.deployments WHERE name = '$name')}));
ok(defined $t_high && defined $up->{at} && $up->{at} - $t_high < 20,
	'the decision follows the metric reaching scale_up_at within 20 s ('
	  . (defined $t_high && defined $up->{at} ? sprintf('%.1f s', $up->{at} - $t_high) : '-') . ')');
is(join(' ', map { $_ // '' } @{$up}{qw(metric replicas want)}), 'connections 0 1',
	'the decision adds a replica: its event names the metric and 0 to 1 replicas');
ok(defined $up->{value} && $up->{value} >= 0.8, "the event holds the value that led to it, at least 0.8 (" . ($up->{value} // 'none') . ')');
like($up->{message} // '', qr/^connections at 0\.\d+: 0 to 1 replicas$/, 'the event message gives the figures');

# Close the sessions at once: from now on only the cooldown keeps the replica.
is(psql_out($dborch_uri, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'tap_hold'"),
	$HELD, 'the held sessions are ended');
foreach my $h (@held)
{
	eval { $h->finish; };
	eval { $h->kill_kill; };
}

ok( wait_for(
		$node, qq{SELECT count(*) FROM dborch.instances WHERE role = 'replica' AND status = 'running'
		AND deployment_id = (SELECT max(id) FROM dborch.deployments WHERE name = '$name')}, '1', 90),
	'a replica is added and runs');
is(event_count($node, $name, 'replica_added'), '1', 'a replica_added event');

# Watch until the replica is removed: the replica count, the metric, and the
# decisions, twice a second.
my ($t_low, $gone_at, $early_removal);
until_true(
	sub {
		my $now = time;
		my $m = metric_now();
		$t_low //= $now if $m ne '' && $m <= 0.3;
		my $n = live_replicas();
		$early_removal = $now if $n eq '0' && $now < $up->{at} + $COOLDOWN - 1 && !defined $early_removal;
		$gone_at = $now if $n eq '0';
		usleep(400_000);
		return defined $gone_at;
	},
	$COOLDOWN + 90);
@d = decisions();
my $down = $d[1] // {};
note(sprintf("metric at or below 0.3 %s s after the scale-up decision; scale-down decision %.1f s after it; replica gone %.1f s after it",
		defined $t_low ? sprintf('%.1f', $t_low - $up->{at}) : 'never',
		($down->{at} // 0) - $up->{at}, ($gone_at // 0) - $up->{at}));
# Whether this run exercised the cooldown: the metric was low enough before
# the cooldown was over (a machine too slow for it is reported, not failed).
diag('the metric stayed above scale_down_at for the whole cooldown: this run did not exercise the cooldown')
  unless defined $t_low && $t_low < $up->{at} + $COOLDOWN;
ok(!defined $early_removal, 'the replica was not removed inside the cooldown');
ok(defined $gone_at, 'the replica is removed after the cooldown');
is(join(' ', map { $_ // '' } @{$down}{qw(metric replicas want)}), 'connections 1 0',
	'the second decision removes the replica: 1 to 0 replicas');
ok(defined $down->{at} && $down->{at} >= $up->{at} + $COOLDOWN - 1,
	"the second decision comes no sooner than the cooldown ($COOLDOWN s) after the first ("
	  . (defined $down->{at} ? sprintf('%.1f s', $down->{at} - $up->{at}) : 'none') . ')');
ok(defined $down->{value} && $down->{value} <= 0.3, 'its event holds a value at most 0.3 (' . ($down->{value} // 'none') . ')');

my ($replica_id) = split /\n/, sql($node, qq{SELECT id FROM dborch.instances WHERE role = 'replica'
	AND deployment_id = (SELECT max(id) FROM dborch.deployments WHERE name = '$name')});
is(sql($node, "SELECT status FROM dborch.instances WHERE id = $replica_id"), 'destroyed', 'the replica is destroyed');
is(psql_out($uri, 'SELECT count(*) FROM pg_replication_slots'), '0', 'its slot is dropped on the primary');
is(event_count($node, $name, 'replica_removed'), '1', 'a replica_removed event');

# No flapping: two more evaluations (every 5 s) make no decision.
sleep(11);
is(scalar(decisions()), 2, 'exactly two decisions: one up, one down');
is(live_replicas(), '0', 'no replica came back');
is(sql($node, "SELECT count(*) FROM dborch.jobs j JOIN dborch.deployments d ON d.id = j.deployment_id
	WHERE d.name = '$name' AND j.kind = 'scale' AND j.state <> 'succeeded'"), '0', 'every scale job succeeded');
is(psql_out($uri, 'CREATE TABLE t (i int); INSERT INTO t VALUES (1); SELECT count(*) FROM t'), '1',
	'the primary accepts writes');

# Removing the policy.
is(sql($node, "SELECT dborch.set_autoscale('$name', NULL) IS NULL"), 't', 'set_autoscale(NULL) removes the policy');
is(sql($node, 'SELECT count(*) FROM dborch.autoscale_policies'), '0', 'no policy is left');

# The memory quota holds a scale-up back.  A policy with min_replicas 1 asks
# for a replica at the next evaluation; with the owner's quota at the
# deployment's own 32 MB there is no room for it: an 'autoscale' event says
# so (held: quota, with the figures), no scale job is queued, and the next
# evaluations (every 5 s) inside the cooldown neither retry nor repeat the
# event.  With the quota lifted and the policy set anew, the replica comes.
my $owner = sql($node, "SELECT owner FROM dborch.deployments WHERE name = '$name'");
sql($node, qq{INSERT INTO dborch.quotas (owner, max_deployments, max_memory_bytes) VALUES ('$owner', 10, 32 * 1024 * 1024)});
my $floor = qq{{"metric": "connections", "scale_up_at": 0.8, "scale_down_at": 0.3, "min_replicas": 1, "max_replicas": 1, "cooldown": "60 seconds"}};
my $last_job = sql($node, 'SELECT coalesce(max(id), 0) FROM dborch.jobs');
sql($node, qq{SELECT dborch.set_autoscale('$name', '$floor')});
my $held = qq{SELECT count(*) FROM dborch.events WHERE kind = 'autoscale' AND deployment = '$name' AND detail->>'held' = 'quota'};
ok(wait_for($node, $held, '1', 30), 'a scale-up over the memory quota is held back, with an event');
like(sql($node, qq{SELECT message FROM dborch.events WHERE kind = 'autoscale' AND deployment = '$name' AND detail ? 'held'}),
	qr/^connections at 0\.\d+: 0 to 1 replicas held back by the memory quota of role "\Q$owner\E" \(32 of 32 MB used\)$/,
	'its message gives the figures and the quota');
sleep(11);
is(sql($node, $held), '1', 'the evaluations inside the cooldown do not repeat it');
is(sql($node, "SELECT count(*) FROM dborch.jobs j JOIN dborch.deployments d ON d.id = j.deployment_id
	WHERE d.name = '$name' AND j.kind = 'scale' AND j.id > $last_job"), '0', 'no scale job is queued');
is(live_replicas(), '0', 'no replica is added');
sql($node, "DELETE FROM dborch.quotas WHERE owner = '$owner'");
sql($node, "SELECT dborch.set_autoscale('$name', NULL)");
sql($node, qq{SELECT dborch.set_autoscale('$name', '$floor')});
ok(wait_for($node, qq{SELECT count(*) FROM dborch.instances WHERE role = 'replica' AND status = 'running'
		AND deployment_id = (SELECT max(id) FROM dborch.deployments WHERE name = '$name')}, '1', 90),
	'with the quota lifted, the replica is added');

cleanup_all($node);
done_testing();

sub until_true
{
	my ($cond, $timeout) = @_;
	my $deadline = time + ($timeout // 60);
	until ($cond->())
	{
		return 0 if time > $deadline;
		usleep(100_000);
	}
	return 1;
}

sub until_count
{
	my ($get, $want, $timeout) = @_;
	my $last;
	my $ok = until_true(sub { $last = $get->(); return $last eq $want }, $timeout);
	diag("last: $last") unless $ok;
	return $ok;
}
