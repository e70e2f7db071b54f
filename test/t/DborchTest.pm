# DborchTest.pm: what the TAP tests of dborch share.
#
# A control-plane node (PostgreSQL::Test::Cluster) with pg_cron and dborch
# preloaded and the extension created; catalog queries; waits with
# deadlines; the testing GUC dborch.pause_at_stage; a look at the managed
# instances from outside (their processes by working directory, their
# directories, their ports, their connection strings); the checks of the
# outcome of a crash; and a teardown that destroys every deployment and
# kills whatever is left, also when a test dies half-way (END block).
# For the health and alert tests: helper processes (a webhook receiver,
# an exporter, a silent TCP server) started and stopped by pid, a LISTEN
# session, redis-cli/psql against a connection string, events and alerts.
#
# Managed instances live in <node data dir>_dborch/instances/<name>-<id>/.
# That path is too long for a PostgreSQL instance's Unix socket (at most
# 107 bytes), so dborch.data_directory names a short symbolic link in /tmp
# to it: processes still have their working directory under the test
# directory, where scripts/test looks for leftovers.

package DborchTest;

use strict;
use warnings;

use Cwd qw(realpath);
use Exporter 'import';
use File::Basename qw(dirname basename);
use File::Spec;
use IO::Socket::INET;
use IPC::Run;
use JSON::PP;
use POSIX ();
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

our @EXPORT = qw(
  new_control_plane sql try_psql sql_retry wait_for wait_value
  set_guc reset_guc set_pause clear_pause
  deploy wait_paused wait_settled destroy_and_wait
  deployment_status instance_of instances_of live_instances
  managed_processes server_processes node_processes
  port_free answers answers_uri launcher_pid kill9_pid kill9_postmaster
  check_ready check_failed_clean check_destroyed check_no_orphans
  check_same_pids cleanup_all
  worker_crash_case single_attempt_case first_stage_of_attempt
  free_tcp_port start_helper stop_helper wait_tcp_port
  start_webhook_receiver webhook_payloads set_webhook_url
  listen_session listen_notifications redis_cli psql_uri dborch_uri
  event_count alert_rows wait_event_count
);

# Deadline of every wait, in seconds.
our $TIMEOUT = 60;

# pg_regress --config-auth is what PostgreSQL::Test::Cluster->init uses to
# write pg_hba.conf; PGXS ships it beside the Perl modules.
if (!defined $ENV{PG_REGRESS})
{
	my $pgxs = `pg_config --pgxs`;
	chomp $pgxs;
	$ENV{PG_REGRESS} = dirname($pgxs) . '/../test/regress/pg_regress';
}

my @nodes;    # every control plane made here, for the END block

=pod

new_control_plane(name => 'cp', ports => '31000-31099', warm_pool_size => 0,
conf => [lines]): a started node with dborch created.  Each test file
passes its own port range so files never collide.

=cut

sub new_control_plane
{
	my (%o) = @_;
	my $name = $o{name} // 'cp';
	my $ports = $o{ports} or die "new_control_plane needs ports";
	my $pool = $o{warm_pool_size} // 0;

	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init;

	my $real_root = $node->data_dir . '_dborch';
	mkdir $real_root, 0700 or die "mkdir $real_root: $!";
	my $root = PostgreSQL::Test::Utils::tempdir_short() . '/dborch';
	symlink($real_root, $root) or die "symlink $root: $!";
	$node->{dborch_root} = $root;
	$node->{dborch_real_root} = realpath($real_root);
	push @nodes, $node;

	my $conf = <<"EOF";
shared_preload_libraries = 'pg_cron,dborch'
cron.database_name = 'postgres'
cron.use_background_workers = on
max_worker_processes = 24
restart_after_crash = on
log_statement = 'ddl'
dborch.data_directory = '$root'
dborch.port_range = '$ports'
dborch.warm_pool_size = $pool
dborch.start_timeout = '30s'
# a probe answered late on a busy machine is no miss (a refused or closed
# connection still is one at once); tests that time probes set their own
dborch.probe_timeout = '3s'
EOF
	$conf .= join('', map { "$_\n" } @{ $o{conf} // [] });
	$node->append_conf('postgresql.conf', $conf);
	$node->start;
	$node->safe_psql('postgres',
		"SET client_min_messages = warning; CREATE EXTENSION dborch CASCADE");
	return $node;
}

# Run SQL once: ($rc, $stdout, $stderr).  A psql that exits before it has
# read its input (the server is in a crash restart) makes IPC::Run die with
# a broken pipe; that is a failed attempt here, not the end of the test.
sub try_psql
{
	my ($node, $query, %o) = @_;
	my @r = eval { $node->psql('postgres', $query, timeout => $TIMEOUT, %o) };
	return @r ? @r : (1, '', "psql: $@");
}

# Run SQL; dies on error.
sub sql
{
	my ($node, $query) = @_;
	return $node->safe_psql('postgres', $query);
}

# Run SQL until it succeeds (the server may be in a crash restart); dies at
# the deadline.
sub sql_retry
{
	my ($node, $query, $timeout) = @_;
	my $deadline = time + ($timeout // $TIMEOUT);
	for (;;)
	{
		my ($rc, $out, $err) =
		  try_psql($node, $query);
		return $out if $rc == 0;
		die "gave up running \"$query\": $err" if time > $deadline;
		usleep(100_000);
	}
}

# Poll a query until its output equals $expected; false at the deadline
# (with a diagnostic).
sub wait_for
{
	my ($node, $query, $expected, $timeout) = @_;
	my $deadline = time + ($timeout // $TIMEOUT);
	my ($out, $err) = ('', '');
	for (;;)
	{
		my $rc;
		($rc, $out, $err) =
		  try_psql($node, $query);
		return 1 if $rc == 0 && $out eq $expected;
		last if time > $deadline;
		usleep(100_000);
	}
	diag("timed out waiting for\n$query\nto return \"$expected\"; last: \"$out\" $err");
	return 0;
}

# Poll a query until it returns a non-empty value; that value, or undef at
# the deadline.
sub wait_value
{
	my ($node, $query, $timeout) = @_;
	my $deadline = time + ($timeout // $TIMEOUT);
	my ($out, $err) = ('', '');
	for (;;)
	{
		my $rc;
		($rc, $out, $err) =
		  try_psql($node, $query);
		return $out if $rc == 0 && $out ne '';
		last if time > $deadline;
		usleep(100_000);
	}
	diag("timed out waiting for a value from\n$query\nlast error: $err");
	return undef;
}

# ALTER SYSTEM SET and reload; returns once a new session sees the value
# (new workers start with the postmaster's settings).
sub set_guc
{
	my ($node, $guc, $value) = @_;
	sql_retry($node, "ALTER SYSTEM SET $guc = '$value'");
	sql_retry($node, "SELECT pg_reload_conf()");
	wait_for($node, "SHOW $guc", $value)
	  or die "$guc did not become $value";
	return;
}

sub reset_guc
{
	my ($node, $guc, $default) = @_;
	sql_retry($node, "ALTER SYSTEM RESET $guc");
	sql_retry($node, "SELECT pg_reload_conf()");
	wait_for($node, "SHOW $guc", $default)
	  or die "$guc did not go back to $default";
	return;
}

# dborch.pause_at_stage: 'kind:stage' pauses a job worker before the
# stage's side effect, 'kind:stage:after' after it, before it is recorded.
sub set_pause { set_guc($_[0], 'dborch.pause_at_stage', $_[1]); return; }
sub clear_pause { reset_guc($_[0], 'dborch.pause_at_stage', ''); return; }

# dborch.deploy(); the deployment's id.
sub deploy
{
	my ($node, $name, $engine, $options) = @_;
	$options //= $engine eq 'postgres' ? '{"memory": "32MB"}' : '{"memory": "16MB"}';
	return sql($node, "SELECT id FROM dborch.deploy('$name', '$engine', '$options')");
}

# Wait until the job of a deployment is paused at $point ('deploy:start' or
# 'deploy:start:after'): its recorded stage is the point's stage and its
# worker reports the pause.  Returns the worker's pid (undef at the deadline).
sub wait_paused
{
	my ($node, $name, $point) = @_;
	my ($kind, $stage) = split /:/, $point;
	return wait_value(
		$node, qq{
		SELECT j.worker_pid FROM dborch.jobs j
		  JOIN dborch.deployments d ON d.id = j.deployment_id
		  JOIN pg_stat_activity a ON a.pid = j.worker_pid
		 WHERE d.name = '$name' AND d.status <> 'destroyed'
		   AND j.kind = '$kind' AND j.state = 'running' AND j.stage = '$stage'
		   AND a.backend_type = 'dborch job' AND a.query = 'paused at $point'});
}

# Wait until the deployment's status is final (ready, failed, destroyed,
# down) and none of its jobs is queued or running; returns the status.
sub wait_settled
{
	my ($node, $name, $timeout) = @_;
	my $status = wait_value(
		$node, qq{
		SELECT d.status FROM dborch.deployments d
		 WHERE d.name = '$name'
		   AND d.id = (SELECT max(id) FROM dborch.deployments WHERE name = '$name')
		   AND d.status IN ('ready', 'failed', 'destroyed', 'down', 'degraded')
		   AND NOT EXISTS (SELECT 1 FROM dborch.jobs j WHERE j.deployment_id = d.id
		                   AND j.state IN ('queued', 'running'))},
		$timeout);
	if (!defined $status)
	{
		diag(sql_retry($node, qq{
			SELECT d.name, d.status, d.last_error, j.kind, j.state, j.stage, j.attempts, j.error
			  FROM dborch.deployments d LEFT JOIN dborch.jobs j ON j.deployment_id = d.id
			 WHERE d.name = '$name' ORDER BY j.id}));
		return '(not settled)';
	}
	return $status;
}

# dborch.destroy() and wait for the outcome; the final status.
sub destroy_and_wait
{
	my ($node, $name) = @_;
	sql_retry($node, "SELECT 1 FROM dborch.destroy('$name')");
	return wait_settled($node, $name);
}

sub deployment_status
{
	my ($node, $name) = @_;
	return sql_retry($node,
		"SELECT status FROM dborch.deployments WHERE name = '$name' ORDER BY id DESC LIMIT 1");
}

# Instance rows of the latest deployment of that name, as hashes.
sub _instances
{
	my ($node, $where) = @_;
	my $out = sql_retry(
		$node, qq{
		SELECT i.id, d.name, d.engine, i.status, i.port, coalesce(i.pid, 0),
		       i.data_directory
		  FROM dborch.instances i JOIN dborch.deployments d ON d.id = i.deployment_id
		 WHERE $where ORDER BY i.id});
	my @rows;
	foreach my $line (split /\n/, $out)
	{
		my @f = split /\|/, $line, 7;
		push @rows,
		  {
			id => $f[0],
			deployment => $f[1],
			engine => $f[2],
			status => $f[3],
			port => $f[4],
			pid => $f[5],
			directory => $f[6],
			real_directory => real_path($node, $f[6]),
		  };
	}
	return @rows;
}

# Every instance ever made for the latest deployment called $name.
sub instances_of
{
	my ($node, $name) = @_;
	return _instances($node,
		"d.id = (SELECT max(id) FROM dborch.deployments WHERE name = '$name')");
}

# The live (not destroyed) instance of deployment $name, or undef.
sub instance_of
{
	my ($node, $name) = @_;
	my @live = grep { $_->{status} ne 'destroyed' } instances_of($node, $name);
	return $live[0];
}

# Every live instance of the control plane.
sub live_instances
{
	my ($node) = @_;
	return _instances($node, "i.status <> 'destroyed'");
}

# A path under dborch.data_directory as the kernel reports it (through the
# symbolic link).
sub real_path
{
	my ($node, $path) = @_;
	my $root = $node->{dborch_root};
	return $path unless defined $path && index($path, "$root/") == 0;
	return $node->{dborch_real_root} . substr($path, length $root);
}

# Live (not zombie) postgres and redis-server processes on this host:
# hashes of pid, ppid, comm, cwd.
sub _processes
{
	my @procs;
	opendir(my $dh, '/proc') or die "opendir /proc: $!";
	foreach my $pid (grep { /^\d+$/ } readdir $dh)
	{
		open(my $fh, '<', "/proc/$pid/stat") or next;
		my $stat = <$fh>;
		close $fh;
		next unless defined $stat && $stat =~ /^\d+ \((.*)\) (\S) (\d+)/s;
		my ($comm, $state, $ppid) = ($1, $2, $3);
		next unless $comm eq 'postgres' || $comm eq 'redis-server';
		next if $state eq 'Z' || $state eq 'X';
		my $cwd = readlink("/proc/$pid/cwd");
		next unless defined $cwd;
		push @procs, { pid => $pid, ppid => $ppid, comm => $comm, cwd => $cwd };
	}
	closedir $dh;
	return @procs;
}

# Processes of managed instances: working directory under the dborch root.
sub managed_processes
{
	my ($node) = @_;
	my $root = $node->{dborch_real_root};
	return grep { index($_->{cwd} . '/', "$root/") == 0 } _processes();
}

# Processes of the control plane itself (working directory its data dir).
sub node_processes
{
	my ($node) = @_;
	my $dir = realpath($node->data_dir);
	return grep { $_->{cwd} eq $dir } _processes();
}

# Server processes (postmasters) of an instance directory: processes whose
# working directory is its data/ and whose parent is not one of them.
sub server_processes
{
	my ($node, $real_directory) = @_;
	my @in = grep { $_->{cwd} eq "$real_directory/data" } managed_processes($node);
	my %pids = map { $_->{pid} => 1 } @in;
	return grep { !$pids{ $_->{ppid} } } @in;
}

# Nothing listens on 127.0.0.1:$port.
sub port_free
{
	my ($port) = @_;
	my $s = IO::Socket::INET->new(
		LocalAddr => '127.0.0.1',
		LocalPort => $port,
		Proto => 'tcp',
		Listen => 1,
		ReuseAddr => 1);
	return 0 unless $s;
	close $s;
	return 1;
}

# Does the deployment answer its connection string?  psql SELECT 1, or
# redis-cli PING.
sub answers
{
	my ($node, $name) = @_;
	my $uri = sql_retry($node, "SELECT dborch.connection_string('$name')");
	return answers_uri($uri, $name);
}

sub answers_uri
{
	my ($uri, $name) = @_;
	my ($engine) = $uri =~ m{^(\w+)://};
	my ($out, $err) = ('', '');
	my @cmd =
	  $engine eq 'redis'
	  ? ('redis-cli', '-u', $uri, '--no-auth-warning', 'PING')
	  : ('psql', '-XAtq', '-d', $uri, '-c', 'SELECT 1');
	my $ok = eval {
		IPC::Run::run(\@cmd, '<', \undef, '>', \$out, '2>', \$err,
			IPC::Run::timeout(20));
	};
	chomp $out;
	my $want = $engine eq 'redis' ? 'PONG' : '1';
	return 1 if $ok && $out eq $want;
	diag("$name did not answer: \"$out\" $err");
	return 0;
}

sub launcher_pid
{
	my ($node) = @_;
	return wait_value($node,
		"SELECT pid FROM pg_stat_activity WHERE backend_type = 'dborch launcher'");
}

sub kill9_pid
{
	my ($pid) = @_;
	note("kill -9 $pid");
	kill('KILL', $pid) or die "kill -9 $pid: $!";
	return;
}

# kill -9 of the postmaster; returns when every process of the old server
# is gone (its shared memory would keep a new postmaster from starting).
sub kill9_postmaster
{
	my ($node) = @_;
	my $pid = $node->{_pid};
	$node->kill9;
	my $deadline = time + $TIMEOUT;
	# the killed postmaster stays a zombie until PID 1 reaps it, and a new
	# one refuses to start while its pid answers kill 0
	while (node_processes($node) || kill(0, $pid))
	{
		die "processes of the killed control plane still run" if time > $deadline;
		usleep(50_000);
	}
	return;
}

=pod

check_ready($node, $name, $label): the deployment is ready, with exactly
one live instance, running, whose one server process is the pid in
dborch.instances, answering its connection string.  Returns the pid.

=cut

sub check_ready
{
	my ($node, $name, $label) = @_;
	is(deployment_status($node, $name), 'ready', "$label: $name is ready");
	my @live = grep { $_->{status} ne 'destroyed' } instances_of($node, $name);
	is(scalar @live, 1, "$label: $name has one live instance");
	my $inst = $live[0] or return 0;
	is($inst->{status}, 'running', "$label: its instance is running");
	my @servers = server_processes($node, $inst->{real_directory});
	is(scalar @servers, 1, "$label: exactly one server process of $name")
	  or diag(explain(\@servers));
	is($inst->{pid}, $servers[0] ? $servers[0]{pid} : -1,
		"$label: dborch.instances.pid is the live server of $name");
	ok(answers($node, $name), "$label: $name answers its connection string");
	return $inst->{pid};
}

=pod

check_failed_clean($node, $name, $label): the deployment failed and
everything it made is gone: no live instance row, no directory, no process,
its ports free, no credentials.

=cut

sub check_failed_clean
{
	my ($node, $name, $label) = @_;
	is(deployment_status($node, $name), 'failed', "$label: $name failed");
	_check_removed($node, $name, $label);
	return;
}

sub check_destroyed
{
	my ($node, $name, $label) = @_;
	is(deployment_status($node, $name), 'destroyed', "$label: $name is destroyed");
	_check_removed($node, $name, $label);
	return;
}

sub _check_removed
{
	my ($node, $name, $label) = @_;
	my @all = instances_of($node, $name);
	is(scalar(grep { $_->{status} ne 'destroyed' } @all),
		0, "$label: $name has no live instance row");
	is(scalar(grep { -e $_->{real_directory} } @all),
		0, "$label: no instance directory of $name is left");
	my @procs = map {
		my $d = $_->{real_directory};
		grep { index($_->{cwd} . '/', "$d/") == 0 } managed_processes($node)
	} @all;
	is(scalar @procs, 0, "$label: no process of $name is left")
	  or diag(explain(\@procs));
	is(scalar(grep { !port_free($_->{port}) } @all),
		0, "$label: the ports of $name are free");
	is( sql_retry(
			$node, qq{SELECT count(*) FROM dborch.secrets s
			 WHERE s.deployment_id = (SELECT max(id) FROM dborch.deployments WHERE name = '$name')}
		),
		'0',
		"$label: no credentials of $name are left");
	return;
}

=pod

check_no_orphans($node, $label): the control plane as a whole.  Every
directory under instances/ (and pool/) is one the catalog knows; every
server process under the root belongs to a live instance; every running
instance has exactly one server process, the one dborch.instances records;
no deploy or destroy job is left queued or running.

=cut

sub check_no_orphans
{
	my ($node, $label) = @_;
	my $real_root = $node->{dborch_real_root};
	my @live = live_instances($node);
	my %known = map { $_->{real_directory} => $_ } @live;

	# a directory reported by an earlier case is not reported again here
	# (cleanup_all still finds it)
	my $reported = $node->{dborch_reported_dirs} //= {};
	my @dirs = grep { -d $_ } glob("$real_root/instances/*");
	my @unknown = grep { !$known{$_} && !$reported->{$_} } @dirs;
	is(scalar @unknown, 0, "$label: every instance directory is in the catalog")
	  or diag("not in the catalog: @unknown");
	$reported->{$_} = 1 foreach @unknown;

	my %pool = map { real_path($node, $_) => 1 } split /\n/,
	  sql_retry($node, "SELECT directory FROM dborch.warm_pool");
	my @stray_pool = grep { !$pool{$_} } grep { -d $_ } glob("$real_root/pool/*");
	is(scalar @stray_pool, 0, "$label: every warm-pool directory is in the catalog")
	  or diag("unknown: @stray_pool");

	# server processes: cwd an instance's data/, parent not a sibling
	my @procs = managed_processes($node);
	my %by_pid = map { $_->{pid} => $_ } @procs;
	my @servers = grep {
		my $p = $by_pid{ $_->{ppid} };
		!($p && $p->{cwd} eq $_->{cwd})
	} @procs;
	my %count;
	my @strays;
	foreach my $s (@servers)
	{
		(my $dir = $s->{cwd}) =~ s{/data$}{};
		if ($known{$dir}) { push @{ $count{$dir} }, $s->{pid}; }
		elsif ($pool{$dir}) { }    # initdb of a warm-pool entry
		else { push @strays, $s; }
	}
	is(scalar @strays, 0,
		"$label: every server process belongs to a live instance (or a warm-pool initdb)")
	  or diag(explain(\@strays));
	my @bad;
	foreach my $inst (grep { $_->{status} eq 'running' } @live)
	{
		my $pids = $count{ $inst->{real_directory} } // [];
		push @bad, "$inst->{deployment}: catalog pid $inst->{pid}, servers @$pids"
		  unless @$pids == 1 && $pids->[0] == $inst->{pid};
	}
	is(scalar @bad, 0,
		"$label: each running instance has one server process, the recorded one")
	  or diag(join("\n", @bad));

	is( sql_retry(
			$node, "SELECT count(*) FROM dborch.jobs
			 WHERE kind IN ('deploy', 'destroy') AND state IN ('queued', 'running')"),
		'0',
		"$label: no deploy or destroy job is left unfinished");
	return;
}

# Deployments keep their server process: %$before maps names to pids.
sub check_same_pids
{
	my ($node, $before, $label) = @_;
	my @names = sort keys %$before;
	return unless @names;
	my $list = join(', ', map { "'$_'" } @names);
	my %now;
	foreach my $line (split /\n/, sql_retry($node, qq{
		SELECT d.name, coalesce(i.pid, 0), i.data_directory
		  FROM dborch.deployments d
		  LEFT JOIN dborch.instances i ON i.deployment_id = d.id AND i.status <> 'destroyed'
		 WHERE d.name IN ($list) AND d.status <> 'destroyed'}))
	{
		my ($name, $pid, $dir) = split /\|/, $line, 3;
		$now{$name} = { pid => $pid, dir => real_path($node, $dir) };
	}
	foreach my $name (@names)
	{
		my $inst = $now{$name};
		is($inst ? $inst->{pid} : undef,
			$before->{$name}, "$label: $name kept its server process (adopted)");
		my @servers = $inst ? server_processes($node, $inst->{dir}) : ();
		is(join(',', map { $_->{pid} } @servers),
			$before->{$name}, "$label: $name has exactly that one server process");
		ok(answers($node, $name), "$label: $name still answers");
	}
	return;
}

# The first stage the job (of kind $kind, default deploy) of deployment
# $name entered in attempt $attempt, from its events.
sub first_stage_of_attempt
{
	my ($node, $name, $attempt, $kind) = @_;
	$kind //= 'deploy';
	return sql_retry(
		$node, qq{
		SELECT e.detail->>'stage' FROM dborch.events e JOIN dborch.jobs j ON j.id = e.job_id
		 WHERE e.kind = 'stage' AND j.kind = '$kind' AND (e.detail->>'attempt')::int = $attempt
		   AND e.deployment_id = (SELECT max(id) FROM dborch.deployments WHERE name = '$name')
		 ORDER BY e.id LIMIT 1});
}

=pod

worker_crash_case($node, $engine, $name, $point, \%adopted): deploy $name
paused at $point, kill -9 its job worker, let the job resume.  Checks: the
deploy ends ready (check_ready), it resumed at the paused stage rather than
starting over, nothing is orphaned, and the deployments in %adopted kept
their server processes.  Adds $name to %adopted.

=cut

sub worker_crash_case
{
	my ($node, $engine, $name, $point, $adopted) = @_;
	my $label = "$engine, worker killed at $point";
	my (undef, $stage) = split /:/, $point;

	set_pause($node, $point);
	deploy($node, $name, $engine);
	my $pid = wait_paused($node, $name, $point);
	ok(defined $pid, "$label: the job worker paused there");
	# a server already started (its pid may not be recorded yet)
	my $inst = instance_of($node, $name);
	my @before = $inst ? server_processes($node, $inst->{real_directory}) : ();
	kill9_pid($pid) if defined $pid;
	clear_pause($node);

	is(wait_settled($node, $name), 'ready', "$label: the deploy ends ready");
	my $server = check_ready($node, $name, $label);
	is($server, $before[0]{pid},
		"$label: the server started before the crash is the one kept (not a second copy)")
	  if @before;
	check_no_orphans($node, $label);
	check_same_pids($node, $adopted, $label);
	is(first_stage_of_attempt($node, $name, 2),
		$stage, "$label: the next attempt resumed at $stage");
	$adopted->{$name} = $server;
	return $server;
}

=pod

single_attempt_case($node, $engine, $name, $point, \%adopted): the same
with dborch.job_max_attempts = 1: the crash uses up the only attempt, so the
deploy must end failed with everything it made removed.  Then deploying it
again retries it, and it ends ready.

=cut

sub single_attempt_case
{
	my ($node, $engine, $name, $point, $adopted) = @_;
	my $label = "$engine, single attempt, worker killed at $point";

	set_guc($node, 'dborch.job_max_attempts', '1');
	set_pause($node, $point);
	deploy($node, $name, $engine);
	my $pid = wait_paused($node, $name, $point);
	ok(defined $pid, "$label: the job worker paused there");
	my $inst = instance_of($node, $name);
	ok($inst && -d $inst->{real_directory}, "$label: its directory exists");
	is(scalar(server_processes($node, $inst->{real_directory})),
		1, "$label: its server runs when the worker dies")
	  if $inst && $point =~ /^deploy:(start:after|register|health_validation|finalize)/;
	kill9_pid($pid) if defined $pid;
	clear_pause($node);
	reset_guc($node, 'dborch.job_max_attempts', '3');

	is(wait_settled($node, $name), 'failed', "$label: the deploy ends failed");
	check_failed_clean($node, $name, $label);
	check_no_orphans($node, $label);
	check_same_pids($node, $adopted, $label);

	deploy($node, $name, $engine);
	is(wait_settled($node, $name), 'ready', "$label: deploying it again ends ready");
	$adopted->{$name} = check_ready($node, $name, "$label, deployed again");
	check_no_orphans($node, "$label, deployed again");
	return;
}

=pod

cleanup_all($node): destroy every deployment, wait, and check that no
process, directory or port is left; then stop the node.  Kills (and
reports) anything left behind.

=cut

sub cleanup_all
{
	my ($node) = @_;
	sql_retry($node, "ALTER SYSTEM RESET dborch.pause_at_stage");
	sql_retry($node, "SELECT pg_reload_conf()");
	my @names = split /\n/,
	  sql_retry($node, "SELECT name FROM dborch.deployments WHERE status <> 'destroyed'");
	my @ports = map { $_->{port} } live_instances($node);
	sql_retry($node, "SELECT 1 FROM dborch.destroy('$_')") foreach @names;
	ok( wait_for(
			$node,
			"SELECT count(*) FROM dborch.deployments WHERE status <> 'destroyed'", '0'),
		"cleanup: every deployment is destroyed");
	my @left = managed_processes($node);
	is(scalar @left, 0, "cleanup: no managed process is left") or diag(explain(\@left));
	my @dirs = glob($node->{dborch_real_root} . '/instances/*');
	is(scalar @dirs, 0, "cleanup: no instance directory is left") or diag("@dirs");
	is(scalar(grep { !port_free($_) } @ports), 0, "cleanup: every port is free");
	_kill_managed($node);
	$node->stop('fast');
	$node->{dborch_cleaned} = 1;
	return;
}

sub _kill_managed
{
	my ($node) = @_;
	my @left = managed_processes($node);
	kill('KILL', map { $_->{pid} } @left) if @left;
	return scalar @left;
}

=pod

Helpers of the health, metrics and alert tests (060-069).

free_tcp_port(): a free TCP port on loopback for a helper process (a
webhook receiver, an exporter, a fake server), reserved like the nodes'
ports so parallel test files do not collide.

start_helper($name, [argv], env => {...}, port => N): start a helper
program in the background, its output in <log dir>/$name.log; its pid.
With port, it returns once the helper listens on that port, and dies with
the helper's log if it exits first or does not listen within 20 s (timeout
=> seconds).  wait_tcp_port($port, $timeout): wait until something
listens on that port; false at the deadline.  stop_helper($pid)
stops it (SIGTERM, then SIGKILL after 10 s).  The END block kills the ones
a test left running.

=cut

# test/bin and the root of the repository, relative to this file.
our $TEST_BIN = File::Spec->rel2abs(dirname(__FILE__) . '/../bin');
our $REPO_ROOT = File::Spec->rel2abs(dirname(__FILE__) . '/../..');

my %helpers;    # pid => name of helper processes started here

sub free_tcp_port
{
	return PostgreSQL::Test::Cluster::get_free_port();
}

sub start_helper
{
	my ($name, $argv, %o) = @_;
	my $log = "$PostgreSQL::Test::Utils::log_path/$name.log";
	my $pid = fork();
	die "fork: $!" unless defined $pid;
	if ($pid == 0)
	{
		open(STDIN, '<', '/dev/null');
		open(STDOUT, '>>', $log);
		open(STDERR, '>&', \*STDOUT);
		$ENV{$_} = $o{env}{$_} foreach keys %{ $o{env} // {} };
		exec(@$argv) or POSIX::_exit(127);
	}
	$helpers{$pid} = $name;
	note("started $name: pid $pid, log $log");
	return $pid unless defined $o{port};

	# Wait until it listens; if it exits or does not listen, die with its log.
	my $deadline = time + ($o{timeout} // 20);
	until (tcp_listening($o{port}))
	{
		my $gone = waitpid($pid, POSIX::WNOHANG()) == $pid;
		if ($gone || time > $deadline)
		{
			delete $helpers{$pid} if $gone;
			my $said = slurp_file($log);
			die "$name " . ($gone ? "exited ($?)" : 'does not listen')
			  . " on port $o{port}; its log:\n$said";
		}
		usleep(20_000);
	}
	return $pid;
}

sub stop_helper
{
	my ($pid) = @_;
	return unless defined $pid && $helpers{$pid};
	kill('TERM', $pid);
	my $deadline = time + 10;
	while (waitpid($pid, POSIX::WNOHANG()) == 0)
	{
		if (time > $deadline)
		{
			kill('KILL', $pid);
			waitpid($pid, 0);
			last;
		}
		usleep(20_000);
	}
	note("stopped $helpers{$pid} (pid $pid)");
	delete $helpers{$pid};
	return;
}

# Is a TCP socket listening on $port?  Read from /proc/net/tcp and tcp6:
# neither a connection (it would be a request to the helper) nor a trial
# bind (a helper binding the port at that instant would fail).
sub tcp_listening
{
	my ($port) = @_;
	my $hex = sprintf('%04X', $port);
	foreach my $table ('/proc/net/tcp', '/proc/net/tcp6')
	{
		open(my $fh, '<', $table) or next;
		while (my $line = <$fh>)
		{
			my @f = split ' ', $line;
			return 1 if @f > 3 && $f[1] =~ /:$hex$/ && $f[3] eq '0A';
		}
	}
	return 0;
}

# Wait until something listens on $port; false at the deadline.
sub wait_tcp_port
{
	my ($port, $timeout) = @_;
	my $deadline = time + ($timeout // $TIMEOUT);
	until (tcp_listening($port))
	{
		return 0 if time > $deadline;
		usleep(20_000);
	}
	return 1;
}

=pod

start_webhook_receiver($port, $file): test/bin/webhook-receiver on
127.0.0.1:$port, appending each POST body as one line to $file; its pid,
once it listens.  webhook_payloads($file): the decoded JSON bodies
received so far.  set_webhook_url($node, $url): dborch.alert_webhook_url
with ALTER SYSTEM and a reload.

=cut

sub start_webhook_receiver
{
	my ($port, $file) = @_;
	return start_helper("webhook-receiver-$port",
		[ $^X, "$TEST_BIN/webhook-receiver", $port, $file ], port => $port);
}

sub webhook_payloads
{
	my ($file) = @_;
	open(my $fh, '<', $file) or return ();
	my @payloads;
	while (my $line = <$fh>)
	{
		chomp $line;
		next if $line eq '';
		my $p = eval { decode_json($line) };
		push @payloads, $p // { undecodable => $line };
	}
	close $fh;
	return @payloads;
}

sub set_webhook_url
{
	my ($node, $url) = @_;
	set_guc($node, 'dborch.alert_webhook_url', $url);
	return;
}

=pod

listen_session($node): a background psql session that ran LISTEN
dborch_events.  listen_notifications($session): the JSON payloads of the
notifications it received since the last call, decoded (psql prints them
after each command it runs).

=cut

sub listen_session
{
	my ($node) = @_;
	my $s = $node->background_psql('postgres', on_error_stop => 0);
	$s->set_query_timer_restart();
	$s->query_safe('LISTEN dborch_events');
	return $s;
}

sub listen_notifications
{
	my ($s) = @_;
	my $out = $s->query_safe('SELECT 1');
	my @payloads;
	foreach my $line (split /\n/, $out)
	{
		next
		  unless $line =~
		  /^Asynchronous notification "dborch_events" with payload "(.*)" received from server process with PID \d+\.$/;
		my $p = eval { decode_json($1) };
		push @payloads, $p // { undecodable => $1 };
	}
	return @payloads;
}

# redis-cli against a connection string; its output (chomped), undef on
# failure.
sub redis_cli
{
	my ($uri, @args) = @_;
	my ($out, $err) = ('', '');
	my $ok = eval {
		IPC::Run::run([ 'redis-cli', '-u', $uri, '--no-auth-warning', @args ],
			'<', \undef, '>', \$out, '2>', \$err, IPC::Run::timeout(20));
	};
	chomp $out;
	return $out if $ok;
	diag("redis-cli @args failed: $out $err");
	return undef;
}

# psql against a connection string; its output (chomped), undef on failure.
# The connection string of deployment $name with dborch's own login (the
# superuser, Redis' user dborch) instead of the owner's: for what only dborch
# may do (LOCK pg_database, ACL USERS, CONFIG GET).
sub dborch_uri
{
	my ($node, $name) = @_;
	my ($uri, $pw) = split /\|/, sql($node, qq{
		SELECT dborch.connection_string('$name'),
		       (SELECT s.value FROM dborch.secrets s JOIN dborch.deployments d ON d.id = s.deployment_id
		         WHERE d.name = '$name' AND d.status <> 'destroyed' AND s.name = 'dborch')});
	my $user = $uri =~ /^redis/ ? 'dborch' : 'postgres';
	$uri =~ s{//[^@]*\@}{//$user:$pw\@};
	return $uri;
}

sub psql_uri
{
	my ($uri, $query) = @_;
	my ($out, $err) = ('', '');
	my $ok = eval {
		IPC::Run::run([ 'psql', '-XAtq', '-v', 'ON_ERROR_STOP=1', '-d', $uri, '-c', $query ],
			'<', \undef, '>', \$out, '2>', \$err, IPC::Run::timeout(20));
	};
	chomp $out;
	return $out if $ok;
	diag("psql \"$query\" failed: $out $err");
	return undef;
}

# Events of kind $kind of the latest deployment called $name.
sub event_count
{
	my ($node, $name, $kind) = @_;
	return sql_retry(
		$node, qq{
		SELECT count(*) FROM dborch.events
		 WHERE kind = '$kind'
		   AND deployment_id = (SELECT max(id) FROM dborch.deployments WHERE name = '$name')});
}

# Wait until there are $n events of kind $kind for $name; true if so.
sub wait_event_count
{
	my ($node, $name, $kind, $n, $timeout) = @_;
	return wait_for(
		$node, qq{
		SELECT count(*) FROM dborch.events
		 WHERE kind = '$kind'
		   AND deployment_id = (SELECT max(id) FROM dborch.deployments WHERE name = '$name')},
		$n, $timeout);
}

# Rows of dborch.alerts of the latest deployment called $name, oldest first,
# as hashes (id, status, delivery, attempts, last_error, payload decoded).
sub alert_rows
{
	my ($node, $name) = @_;
	my $out = sql_retry(
		$node, qq{
		SELECT json_build_object('id', id, 'status', status, 'delivery', delivery,
		         'attempts', attempts, 'last_error', last_error, 'payload', payload,
		         'instance_id', instance_id, 'sent', sent_at IS NOT NULL)
		  FROM dborch.alerts
		 WHERE deployment_id = (SELECT max(id) FROM dborch.deployments WHERE name = '$name')
		 ORDER BY id});
	return map { decode_json($_) } grep { $_ ne '' } split /\n/, $out;
}

# When a test dies half-way: destroy what can be destroyed, then kill every
# managed process and every process of a control plane whose postmaster is
# gone.  PostgreSQL::Test::Cluster's own END block (which runs after this
# one) stops the nodes.
END
{
	my $exit_code = $?;
	foreach my $pid (keys %helpers)
	{
		kill('KILL', $pid);
		waitpid($pid, 0);
		diag("killed helper $helpers{$pid} (pid $pid) left running");
	}
	foreach my $node (@nodes)
	{
		next if $node->{dborch_cleaned};
		eval {
			if (defined $node->{_pid} && kill(0, $node->{_pid}))
			{
				my ($rc) = $node->psql('postgres',
					"ALTER SYSTEM RESET dborch.pause_at_stage; SELECT pg_reload_conf();"
					  . " SELECT dborch.destroy(name) FROM dborch.deployments WHERE status <> 'destroyed'",
					timeout => 10);
				my $deadline = time + 20;
				while ($rc == 0 && managed_processes($node) && time < $deadline)
				{
					usleep(200_000);
				}
			}
			1;
		} or diag("cleanup of $node->{_name} failed: $@");
		my $killed = _kill_managed($node);
		diag("killed $killed managed processes left by $node->{_name}") if $killed;
		if (!(defined $node->{_pid} && kill(0, $node->{_pid})))
		{
			$node->{_pid} = undef;
			kill('KILL', map { $_->{pid} } node_processes($node));
		}
	}
	$? = $exit_code;
}

1;
