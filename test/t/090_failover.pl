# Failover: kill -9 of the primary of a deployment with two replicas, for
# PostgreSQL and for Redis; and a blip shorter than dborch.failover_timeout.
#
# For each engine: rows (keys) are written and reach both replicas; the
# PostgreSQL deployment is synchronous, and a client commits row after row
# while its primary is killed: every commit it was told of must survive; the
# primary's server is killed; the test measures the time from the kill until
# dborch.connection_string(name) names a primary that accepts a write (a
# note, never a tight assertion: the bound is 60 s).  Then: the promoted
# instance is one of the former replicas, every committed row (key) is there,
# writes through the write connection string work, the other replica follows
# the new primary (rows written after the failover reach it), one failover
# event and one DborchFailover alert, and the old primary rejoins as a
# replica (role replica, running, in recovery, receiving new rows); exactly
# one instance takes writes.
#
# The blip: the primary's processes are stopped (SIGSTOP of the postmaster
# and its children) until the prober has marked it down, then continued, with
# dborch.failover_timeout raised to 30 s so the stop (a few seconds) is
# shorter than it: no failover, the same primary and process, writes work.
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

use DborchTest;

# probes of 1 s: the blip below is noticed by missed probes, not a refusal
my $node = new_control_plane(ports => '32100-32149', conf => ["dborch.probe_timeout = '1s'"]);

# The deadline in seconds from the kill to writes accepted again: generous,
# the figure itself is printed.
my $FAILOVER_BOUND = 60;

# psql against a URI: (ok, output and errors), a short connect timeout.
sub psql_try
{
	my ($uri, $query) = @_;
	my ($out, $err) = ('', '');
	local $ENV{PGCONNECT_TIMEOUT} = '2';
	my $ok = eval {
		IPC::Run::run([ 'psql', '-XAtq', '-v', 'ON_ERROR_STOP=1', '-d', $uri, '-c', $query ],
			'<', \undef, '>', \$out, '2>', \$err, IPC::Run::timeout(10));
	};
	chomp $out;
	return ($ok ? 1 : 0, $out . $err);
}

# redis-cli against a URI: its output and errors together.
sub redis_try
{
	my ($uri, @args) = @_;
	my $out = '';
	eval {
		IPC::Run::run([ 'redis-cli', '-u', $uri, '--no-auth-warning', @args ],
			'<', \undef, '>&', \$out, IPC::Run::timeout(10));
	};
	$out =~ s/\s+$//;
	return $out;
}

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

# Live instances of a deployment: id => {role, status, port, pid}.
sub instances
{
	my ($name) = @_;
	my %i;
	foreach my $line (split /\n/, sql_retry($node, qq{
		SELECT i.id, i.role, i.status, i.port, coalesce(i.pid, 0) FROM dborch.instances i
		 WHERE i.deployment_id = (SELECT max(id) FROM dborch.deployments WHERE name = '$name')
		   AND i.status <> 'destroyed' ORDER BY i.id}))
	{
		my ($id, $role, $status, $port, $pid) = split /\|/, $line;
		$i{$id} = { id => $id, role => $role, status => $status, port => $port, pid => $pid };
	}
	return %i;
}

sub uri_of
{
	my ($engine, $pw, $port) = @_;
	return $engine eq 'postgres'
	  ? "postgresql://owner:$pw\@127.0.0.1:$port/postgres"
	  : "redis://owner:$pw\@127.0.0.1:$port/0";
}

sub port_of { my ($uri) = @_; return ($uri =~ m{:(\d+)/})[0]; }

sub dep_count
{
	my ($name, $what) = @_;
	return sql_retry($node, qq{SELECT count(*) FROM $what
		   AND deployment_id = (SELECT max(id) FROM dborch.deployments WHERE name = '$name')});
}

# Both deployments with two replicas, made at the same time; their passwords.
# Each name maps to [engine, deploy options].
sub deploy_with_replicas
{
	my (%engines) = @_;
	my %pw;
	deploy($node, $_, @{ $engines{$_} }) foreach sort keys %engines;
	foreach my $name (sort keys %engines)
	{
		is(wait_settled($node, $name), 'ready', "$name: deployed");
		sql($node, "SELECT 1 FROM dborch.scale('$name', replicas => 2)");
	}
	foreach my $name (sort keys %engines)
	{
		is(sql($node, "SELECT status FROM dborch.wait('$name', '180s')"), 'ready', "$name: scaled to 2 replicas");
		my %inst = instances($name);
		is(join(',', map { "$inst{$_}{role}/$inst{$_}{status}" } sort { $a <=> $b } keys %inst),
			'primary/running,replica/running,replica/running', "$name: a primary and two running replicas");
		$pw{$name} = sql($node, qq{SELECT value FROM dborch.secrets WHERE name = 'password'
			AND deployment_id = (SELECT max(id) FROM dborch.deployments WHERE name = '$name')});
	}
	return %pw;
}

# kill -9 of the primary; returns (old primary, seconds until a write through
# the write connection string succeeds, or undef).
sub kill_primary_and_measure
{
	my ($name, $engine) = @_;
	my %inst = instances($name);
	my ($old) = grep { $_->{role} eq 'primary' } values %inst;
	my $t0 = time;
	kill9_pid($old->{pid});
	my $elapsed;
	my $n = 0;
	until_true(
		sub {
			my $uri = eval { sql($node, "SELECT dborch.connection_string('$name')") } // '';
			return 0 if $uri eq '';
			$n++;
			my $ok =
			  $engine eq 'postgres'
			  ? (psql_try($uri, "INSERT INTO f VALUES (-1, 'first write after the kill')"))[0]
			  : redis_try($uri, 'SET', 'f:first', 'first write after the kill') eq 'OK';
			$elapsed = time - $t0 if $ok;
			return $ok;
		},
		$FAILOVER_BOUND + 30);
	note(sprintf("%s (%s): kill -9 of the primary to a write accepted through connection_string(): %s",
			$name, $engine, defined $elapsed ? sprintf('%.2f s', $elapsed) : 'never'));
	return ($old, $elapsed);
}

# The pids whose parent is $pid.
sub children_of
{
	my ($pid) = @_;
	my @children;
	opendir(my $dh, '/proc') or die "opendir /proc: $!";
	foreach my $p (grep { /^\d+$/ } readdir $dh)
	{
		open(my $fh, '<', "/proc/$p/stat") or next;
		my $stat = <$fh>;
		close $fh;
		push @children, $p if defined $stat && $stat =~ /\) \S (\d+) / && $1 == $pid;
	}
	closedir $dh;
	return @children;
}

# What every failover must leave behind.
sub check_after_failover
{
	my ($name, $engine, $pw, $old, $elapsed, $old_replicas) = @_;
	ok(defined $elapsed && $elapsed < $FAILOVER_BOUND,
		"$name: writes are accepted again within $FAILOVER_BOUND s of the kill ("
		  . (defined $elapsed ? sprintf('%.1f s', $elapsed) : 'never') . ')');

	my %inst = instances($name);
	my ($new) = grep { $_->{role} eq 'primary' } values %inst;
	ok($new && grep({ $_ == $new->{id} } @$old_replicas), "$name: the new primary is one of the former replicas");
	return unless $new;
	my ($other) = grep { $_ != $new->{id} } @$old_replicas;
	my $write_uri = sql($node, "SELECT dborch.connection_string('$name')");
	is(port_of($write_uri), $new->{port}, "$name: the write connection string names the new primary");
	is(sql($node, qq{SELECT detail->>'failed_instance_id' || '>' || (detail->>'new_primary_instance_id') FROM dborch.events
		WHERE kind = 'failover' AND deployment_id = (SELECT max(id) FROM dborch.deployments WHERE name = '$name')}),
		"$old->{id}>$new->{id}", "$name: the failover event names the failed and the promoted instance");

	my $new_uri = uri_of($engine, $pw, $new->{port});
	my $other_uri = uri_of($engine, $pw, $inst{$other}{port});
	my $old_uri = uri_of($engine, $pw, $old->{port});
	if ($engine eq 'postgres')
	{
		is((psql_try($new_uri, 'SELECT count(*) FROM f WHERE id BETWEEN 1 AND 1000'))[1],
			'1000', "$name: the 1000 rows committed before the kill are on the new primary");
		is((psql_try($write_uri, "INSERT INTO f VALUES (-2, 'after the failover') RETURNING v"))[1],
			'after the failover', "$name: an INSERT through the write connection string works");
		ok(until_true(sub { (psql_try($other_uri, 'SELECT count(*) FROM f WHERE id = -2'))[1] eq '1' }, 30),
			"$name: the other replica follows the new primary (a row written after the failover reaches it)");
		is((psql_try($other_uri, 'SELECT pg_is_in_recovery()::text, sender_port FROM pg_stat_wal_receiver'))[1],
			"true|$new->{port}", "$name: the other replica streams from the new primary");
	}
	else
	{
		is(redis_try($new_uri, 'DBSIZE'), '202', "$name: the 200 keys written before the kill (and the two markers) are on the new primary");
		is(redis_try($new_uri, 'GET', 'f:k137'), 'v137', "$name: a key written before the kill has its value");
		is(redis_try($write_uri, 'SET', 'f:after', 'after the failover'), 'OK', "$name: a SET through the write connection string works");
		ok(until_true(sub { redis_try($other_uri, 'GET', 'f:after') eq 'after the failover' }, 30),
			"$name: the other replica follows the new primary (a key written after the failover reaches it)");
		is(join(' ', grep { /^(role|master_port|master_link_status):/ } split /\r?\n/, redis_try($other_uri, 'INFO', 'replication')),
			"role:slave master_port:$new->{port} master_link_status:up", "$name: the other replica replicates from the new primary");
	}

	# the old primary comes back as a replica of the new one
	ok( wait_for(
			$node, "SELECT role || '/' || status FROM dborch.instances WHERE id = $old->{id}",
			'replica/running', 90),
		"$name: the old primary rejoins as a running replica");
	if ($engine eq 'postgres')
	{
		is((psql_try($old_uri, 'SELECT pg_is_in_recovery()'))[1], 't', "$name: the old primary is in recovery");
		is((psql_try($write_uri, "INSERT INTO f VALUES (-3, 'after the rejoin')"))[0], 1,
			"$name: a row is written after the rejoin");
		ok(until_true(sub { (psql_try($old_uri, 'SELECT count(*) FROM f WHERE id IN (-2, -3)'))[1] eq '2' }, 30),
			"$name: the old primary receives the rows written after the failover");
		is((psql_try($old_uri, "INSERT INTO f VALUES (-4, 'on the old primary')"))[1] =~ /read-only transaction/ ? 1 : 0,
			1, "$name: the old primary refuses writes");
		ok( until_true(
				sub {
					(psql_try($write_uri,
							"SELECT string_agg(slot_name || ':' || active::text, ',' ORDER BY slot_name) FROM pg_replication_slots"))[1]
					  eq join(',', map { "dborch_r$_:true" } sort { $a cmp $b } ($old->{id}, $other));
				},
				30),
			"$name: the new primary has an active slot for each of its two replicas");
		my @recovery = map { (psql_try(uri_of($engine, $pw, $_->{port}), 'SELECT pg_is_in_recovery()'))[1] }
		  sort { $a->{id} <=> $b->{id} } values %{ { instances($name) } };
		is(scalar(grep { $_ eq 'f' } @recovery), 1, "$name: exactly one of the three instances takes writes (@recovery)");
	}
	else
	{
		ok( until_true(
				sub {
					join(' ', grep { /^(role|master_port|master_link_status):/ } split /\r?\n/, redis_try($old_uri, 'INFO', 'replication'))
					  eq "role:slave master_port:$new->{port} master_link_status:up";
				},
				30),
			"$name: the old primary replicates from the new primary");
		is(redis_try($write_uri, 'SET', 'f:rejoined', 'after the rejoin'), 'OK', "$name: a key is written after the rejoin");
		ok(until_true(sub { redis_try($old_uri, 'GET', 'f:rejoined') eq 'after the rejoin' }, 30),
			"$name: the old primary receives keys written after the failover");
		like(redis_try($old_uri, 'SET', 'f:x', 'y'), qr/^READONLY/, "$name: the old primary refuses writes");
		my @roles = map { (redis_try(uri_of($engine, $pw, $_->{port}), 'INFO', 'replication') =~ /^role:(\w+)/m)[0] // '?' }
		  sort { $a->{id} <=> $b->{id} } values %{ { instances($name) } };
		is(scalar(grep { $_ eq 'master' } @roles), 1, "$name: exactly one of the three instances is a master (@roles)");
	}

	ok(wait_for($node, "SELECT status FROM dborch.deployments WHERE name = '$name' AND status <> 'destroyed'", 'ready', 30),
		"$name: the deployment is ready again");
	is(dep_count($name, "dborch.events WHERE kind = 'failover'"), '1', "$name: exactly one failover event");
	is(dep_count($name, "dborch.alerts WHERE payload->'alerts'->0->'labels'->>'alertname' = 'DborchFailover'"),
		'1', "$name: exactly one DborchFailover alert");
	is(dep_count($name, "dborch.jobs WHERE kind = 'failover' AND state = 'succeeded'"), '1',
		"$name: one failover job, succeeded");
	return $new;
}

my %figures;
my %pw = deploy_with_replicas(
	fpg => [ 'postgres', '{"memory": "32MB", "synchronous": true}' ],
	frd => [ 'redis', '{"memory": "16MB"}' ]);

# ---------------------------------------------------------------------------
# PostgreSQL
# ---------------------------------------------------------------------------
{
	my $name = 'fpg';
	my $pw = $pw{$name};
	my %inst = instances($name);
	my @replicas = sort { $a <=> $b } grep { $inst{$_}{role} eq 'replica' } keys %inst;
	my $w = sql($node, "SELECT dborch.connection_string('$name')");
	is( (psql_try($w,
				"CREATE TABLE f (id int PRIMARY KEY, v text); INSERT INTO f SELECT g, 'before' FROM generate_series(1, 1000) g; SELECT count(*) FROM f"))[1],
		'1000', "$name: 1000 rows are committed on the primary");
	foreach my $r (@replicas)
	{
		ok(until_true(sub { (psql_try(uri_of('postgres', $pw, $inst{$r}{port}), 'SELECT count(*) FROM f'))[1] eq '1000' }, 30),
			"$name: replica $r has replayed the 1000 rows");
	}

	is((psql_try($w, 'SHOW synchronous_standby_names'))[1], 'ANY 1 (*)',
		"$name: the primary of the synchronous deployment waits for any one replica");
	# the walsenders take up the reloaded setting a moment after the primary does
	ok(until_true(sub { (psql_try($w, "SELECT string_agg(sync_state, ',') FROM pg_stat_replication"))[1] eq 'quorum,quorum' }, 10),
		"$name: both replicas are quorum standbys");

	# Commits right up to the kill: a client inserts row after row, each its
	# own transaction, while the primary is killed.  Every row it was told
	# had committed must be on the promoted replica.
	my $burst = PostgreSQL::Test::Utils::tempdir() . '/burst.sql';
	open(my $fh, '>', $burst) or die "open $burst: $!";
	print $fh "INSERT INTO f VALUES ($_, 'burst') RETURNING id;\n" foreach 2001 .. 200000;
	close $fh;
	my ($burst_out, $burst_err) = ('', '');
	my $writer = IPC::Run::start([ 'psql', '-XAtq', '-d', $w, '-f', $burst ],
		'<', \undef, '>', \$burst_out, '2>', \$burst_err);
	ok(until_true(sub { (psql_try($w, 'SELECT count(*) >= 100 FROM f WHERE id > 2000'))[1] eq 't' }, 30),
		"$name: a client commits row after row");

	my ($old, $elapsed) = kill_primary_and_measure($name, 'postgres');
	$figures{postgres} = $elapsed;
	eval { $writer->finish; };
	my @acked = grep { /^\d+$/ } split /\n/, $burst_out;
	my $last_acked = $acked[-1] // 2000;
	note("$name: the writer was told of " . scalar(@acked) . " commits, the last id $last_acked; it ended with: "
		  . ((split /\n/, $burst_err)[0] // ''));
	ok(@acked >= 100, "$name: the writer's commits were acknowledged up to the kill (" . scalar(@acked) . ')');
	my $new = check_after_failover($name, 'postgres', $pw, $old, $elapsed, \@replicas);
	is((psql_try(sql($node, "SELECT dborch.connection_string('$name')"),
				"SELECT count(*) FROM f WHERE id BETWEEN 2001 AND $last_acked"))[1],
		$last_acked - 2000, "$name: every acknowledged commit of the writer survived the failover (ids 2001 to $last_acked)");

	# A blip shorter than dborch.failover_timeout: no failover.
	set_guc($node, 'dborch.failover_timeout', '30s');
	%inst = instances($name);
	my ($p) = grep { $_->{role} eq 'primary' } values %inst;
	my $downs = dep_count($name, "dborch.events WHERE kind = 'instance_down'");
	# PostgreSQL's children are session leaders of their own: stop the
	# postmaster first (it forks no more), then every child
	my @stopped = ($p->{pid});
	kill('STOP', $p->{pid}) or die "kill -STOP $p->{pid}: $!";
	push @stopped, children_of($p->{pid});
	kill('STOP', @stopped[ 1 .. $#stopped ]);
	my $t0 = time;
	note("stopped the primary's processes: @stopped");
	my $seen = wait_for($node, qq{SELECT count(*) FROM dborch.events WHERE kind = 'instance_down'
		AND deployment_id = (SELECT max(id) FROM dborch.deployments WHERE name = '$name')}, $downs + 1, 20);
	my $stopped = time - $t0;
	kill('CONT', reverse @stopped);
	note(sprintf("%s: primary stopped for %.1f s (dborch.failover_timeout 30 s)", $name, $stopped));
	ok($seen, "$name: the stopped primary is noticed (instance_down)");
	ok($stopped < 30, "$name: it was stopped for less than the failover timeout");
	ok(wait_for($node, "SELECT status FROM dborch.instances WHERE id = $p->{id}", 'running', 30),
		"$name: the primary is running again");
	# the failover job queued for the blip (due 30 s after the down) must find
	# the primary back and do nothing
	ok( wait_for(
			$node, qq{SELECT count(*) FROM dborch.jobs WHERE kind = 'failover' AND state IN ('queued', 'running')
			AND deployment_id = (SELECT max(id) FROM dborch.deployments WHERE name = '$name')}, '0', 90),
		"$name: no failover job is left to run");
	is(dep_count($name, "dborch.events WHERE kind = 'failover'"), '1', "$name: the blip made no failover event");
	my %after = instances($name);
	is(join(',', map { "$_:$after{$_}{role}" } sort { $a <=> $b } keys %after),
		join(',', map { "$_:$inst{$_}{role}" } sort { $a <=> $b } keys %inst), "$name: no role changed");
	is($after{ $p->{id} }{pid}, $p->{pid}, "$name: the primary kept its process");
	is((psql_try(sql($node, "SELECT dborch.connection_string('$name')"), "INSERT INTO f VALUES (-5, 'after the blip') RETURNING id"))[1],
		'-5', "$name: writes work after the blip");
	reset_guc($node, 'dborch.failover_timeout', '2s');
}

# ---------------------------------------------------------------------------
# Redis
# ---------------------------------------------------------------------------
{
	my $name = 'frd';
	my $pw = $pw{$name};
	my %inst = instances($name);
	my @replicas = sort { $a <=> $b } grep { $inst{$_}{role} eq 'replica' } keys %inst;
	my $w = sql($node, "SELECT dborch.connection_string('$name')");
	my $out = '';
	IPC::Run::run([ 'redis-cli', '-u', $w, '--no-auth-warning', '--pipe' ],
		'<', \join('', map { "SET f:k$_ v$_\r\n" } 1 .. 200), '>&', \$out, IPC::Run::timeout(30));
	like($out, qr/errors: 0, replies: 200/, "$name: 200 keys are written on the primary");
	is(redis_try($w, 'SET', 'f:last', 'written last'), 'OK', "$name: a last key is written");
	foreach my $r (@replicas)
	{
		ok(until_true(sub { redis_try(uri_of('redis', $pw, $inst{$r}{port}), 'GET', 'f:last') eq 'written last' }, 30),
			"$name: replica $r has received every key");
	}

	my ($old, $elapsed) = kill_primary_and_measure($name, 'redis');
	$figures{redis} = $elapsed;
	check_after_failover($name, 'redis', $pw, $old, $elapsed, \@replicas);
}

diag(sprintf("failover, kill -9 of the primary to a write accepted: %s %s",
		$_, defined $figures{$_} ? sprintf('%.2f s', $figures{$_}) : 'never'))
  foreach sort keys %figures;

# destroys both (at once) and checks nothing is left
cleanup_all($node);
done_testing();
