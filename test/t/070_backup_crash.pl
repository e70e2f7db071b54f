# kill -9 of the job worker of backups, verifications and restores.
#
# Each case holds a job at a stage (dborch.pause_at_stage) or catches it
# while pgBackRest runs, kills the job worker with SIGKILL (the postmaster
# then restarts every backend and worker), lets the job resume at its
# recorded stage, and checks the outcome:
#  - a second PostgreSQL backup killed while pgbackrest's two local
#    processes copy files, those held (SIGSTOP) while the job resumes: they
#    hold the stanza's lock, yet the resumed backup must succeed (by
#    removing them or waiting for them), and pgBackRest lists exactly the
#    backups the catalog records as succeeded;
#  - a verification (of the first backup) killed after its scratch instance
#    started: it succeeds, and no scratch process or directory is left;
#  - a restore into a new deployment killed while pgbackrest's local
#    processes restore: the deployment ends ready with the rows of the
#    backup, nothing orphaned;
#  - a Redis restore in place killed after the stop: the deployment ends
#    ready with the keys of the backup.
# At the end every deployment is destroyed with its backups, and no
# pgbackrest process of this control plane is left.
use strict;
use warnings;

use IPC::Run;
use JSON::PP;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);

use DborchTest;

my $node = new_control_plane(ports => '31900-31949');
my $backup_root = $node->{dborch_real_root} . '/backups';

# Live pgbackrest processes whose command line has every one of @words: a
# word starting with / is found anywhere in an argument, any other word is a
# whole argument ('backup', '--stanza=bk_pg').
sub pgbackrest_pids
{
	my (@words) = @_;
	my @pids;
	foreach my $p (glob('/proc/[0-9]*'))
	{
		open(my $fh, '<', "$p/cmdline") or next;
		my $cmd = do { local $/; <$fh> } // '';
		close $fh;
		my @argv = split /\0/, $cmd;
		next unless @argv && $argv[0] =~ m{(^|/)pgbackrest$};
		next if grep {
			my $w = $_;
			!grep { $w =~ m{^/} ? index($_, $w) >= 0 : $_ eq $w } @argv
		} @words;
		open($fh, '<', "$p/stat") or next;
		my $stat = <$fh> // '';
		close $fh;
		next if $stat =~ /\) [ZX] /;
		push @pids, substr($p, 6);
	}
	return @pids;
}

# Poll until pgbackrest_pids(@words) is non-empty; those pids (empty at the deadline).
sub wait_pgbackrest
{
	my ($timeout, @words) = @_;
	my $deadline = time + $timeout;
	my @pids;
	while (!(@pids = pgbackrest_pids(@words)) && time < $deadline)
	{
		usleep(2_000);
	}
	return @pids;
}

# Poll until at least $n pgbackrest processes have @words; those pids.
sub wait_pgbackrest_n
{
	my ($n, $timeout, @words) = @_;
	my $deadline = time + $timeout;
	my @pids;
	while ((@pids = pgbackrest_pids(@words)) < $n && time < $deadline)
	{
		usleep(2_000);
	}
	return @pids;
}

# Poll until no pgbackrest process has @words; true if so.
sub wait_no_pgbackrest
{
	my ($timeout, @words) = @_;
	my $deadline = time + $timeout;
	while (pgbackrest_pids(@words))
	{
		return 0 if time > $deadline;
		usleep(20_000);
	}
	return 1;
}

# The final state of a job (succeeded, failed, cancelled), or '(timeout)'.
sub job_end
{
	my ($job, $timeout) = @_;
	return wait_value($node,
		"SELECT state FROM dborch.jobs WHERE id = $job AND state IN ('succeeded', 'failed', 'cancelled')",
		$timeout // 120) // '(timeout)';
}

# Processes (any) whose working directory is under $dir.
sub processes_in
{
	my ($dir) = @_;
	my @pids;
	foreach my $p (glob('/proc/[0-9]*'))
	{
		my $cwd = readlink("$p/cwd");
		next unless defined $cwd && index("$cwd/", "$dir/") == 0;
		open(my $fh, '<', "$p/stat") or next;
		my $stat = <$fh> // '';
		close $fh;
		next if $stat =~ /\) [ZX] /;
		push @pids, substr($p, 6);
	}
	return @pids;
}

# pgbackrest info --output=json of a deployment's stanza, decoded.
sub pgbackrest_info
{
	my ($name, $dep_id) = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run([ 'pgbackrest', "--config=$backup_root/$name-$dep_id/pgbackrest.conf",
			"--stanza=$name", 'info', '--output=json' ],
		'<', \undef, '>', \$out, '2>', \$err, IPC::Run::timeout(30));
	my $info = eval { decode_json($out) };
	diag("pgbackrest info: $out $err") unless $info;
	return $info;
}

# A test that dies half-way leaves no pgbackrest process of this control
# plane behind (a stopped one least of all).  Runs before DborchTest's END.
END
{
	if ($node)
	{
		my @left = pgbackrest_pids($node->{dborch_root} . '/');
		kill('CONT', @left) if @left;
		kill('KILL', @left) if @left;
	}
}

# ---------------------------------------------------------------------------
# a PostgreSQL deployment with rows
# ---------------------------------------------------------------------------
my $pg_id = deploy($node, 'bk_pg', 'postgres');
is(wait_settled($node, 'bk_pg'), 'ready', 'a PostgreSQL deployment is ready');
my $pg_uri = sql($node, "SELECT dborch.connection_string('bk_pg')");
is(psql_uri($pg_uri,
		"CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 20000) g; SELECT count(*) FROM t"),
	'20000', '20000 rows are written');

# a first full backup, for the verification and restore cases below
my ($good, $good_job) = split /\|/, sql($node, "SELECT id, job_id FROM dborch.backup('bk_pg', 'full')");
is(job_end($good_job), 'succeeded', 'a first full backup succeeded');

# ---------------------------------------------------------------------------
# a second backup: worker killed while pgbackrest copies files
# ---------------------------------------------------------------------------
{
	my $label = 'backup, worker killed while pgbackrest runs';
	set_pause($node, 'backup:backup');
	my ($bid, $job) = split /\|/, sql($node, "SELECT id, job_id FROM dborch.backup('bk_pg', 'full')");
	my $worker = wait_paused($node, 'bk_pg', 'backup:backup');
	ok(defined $worker, "$label: the backup job is held before its backup stage");
	clear_pause($node);
	my @running = wait_pgbackrest(60, '--stanza=bk_pg', 'backup');
	ok(@running, "$label: pgbackrest backup runs");
	# its two local processes (process-max 2) copy the files; they hold
	# pgBackRest's lock on the stanza too.  Whether they outlive the killed
	# worker by a moment or by many seconds depends on what they are doing;
	# to make them outlast the resumption on any machine they are stopped
	# (SIGSTOP) while the job resumes, as 010 does with initdb, and
	# continued after 10 s or once the job has ended.
	my @locals = wait_pgbackrest_n(2, 60, '--stanza=bk_pg', 'backup:local');
	is(scalar @locals, 2, "$label: its two local processes copy files");
	kill('STOP', @locals) if @locals;
	kill9_pid($worker) if defined $worker;
	ok(wait_no_pgbackrest(5, '--stanza=bk_pg', 'backup'),
		"$label: the pgbackrest backup process dies with the worker");
	my $deadline = time + 10;
	my $state = '';
	while (time < $deadline)
	{
		my ($rc, $out) = try_psql($node, "SELECT state FROM dborch.jobs WHERE id = $job");
		$state = $out if $rc == 0;
		last if $state eq 'succeeded' || $state eq 'failed'
		  || !grep { my $p = $_; grep { $_ == $p } pgbackrest_pids('--stanza=bk_pg', 'backup:local') } @locals;
		usleep(100_000);
	}
	my @held = grep { my $p = $_; grep { $_ == $p } pgbackrest_pids('--stanza=bk_pg', 'backup:local') } @locals;
	note("the killed attempt's local processes " . (@held ? "(@held) were still there" : 'were gone')
		  . " when the job was $state");
	kill('CONT', @locals) if @locals;
	ok(wait_no_pgbackrest(30, '--stanza=bk_pg', 'backup:local'),
		"$label: the local processes of the killed attempt end once continued");

	is(job_end($job), 'succeeded', "$label: the backup job ends succeeded");
	is(sql_retry($node, "SELECT status || ' ' || kind FROM dborch.backups WHERE id = $bid"),
		'succeeded full', "$label: the backup is a succeeded full one");
	is(sql_retry($node, "SELECT attempts FROM dborch.jobs WHERE id = $job"),
		'2', "$label: it took a second attempt");
	is(first_stage_of_attempt($node, 'bk_pg', 2, 'backup'),
		'backup', "$label: the second attempt resumed at stage backup");
	my $info = pgbackrest_info('bk_pg', $pg_id);
	my @labels = $info ? map { $_->{label} } @{ $info->[0]{backup} } : ();
	is( join(',', sort @labels),
		sql_retry($node, "SELECT string_agg(label, ',' ORDER BY label) FROM dborch.backups"
			  . " WHERE deployment = 'bk_pg' AND status = 'succeeded'"),
		"$label: pgBackRest lists exactly the backups the catalog records as succeeded");
	is($info ? $info->[0]{status}{message} : undef, 'ok', "$label: the stanza is ok");
	check_ready($node, 'bk_pg', $label);
	check_no_orphans($node, $label);

	# ---------------------------------------------------------------------------
	# the verification: worker killed after its scratch instance started
	# ---------------------------------------------------------------------------
	$label = 'verify, worker killed after the scratch instance started';
	set_pause($node, 'verify:restore_and_check:after');
	my $vjob = sql($node, "SELECT id FROM dborch.verify_backup($good)");
	$worker = wait_paused($node, 'bk_pg', 'verify:restore_and_check:after');
	ok(defined $worker, "$label: the verification is held after restore_and_check");
	my $scratch = "$backup_root/verify-$vjob";
	my @scratch_servers = grep { $_->{cwd} eq "$scratch/data" } managed_processes($node);
	ok(@scratch_servers > 0, "$label: the scratch PostgreSQL runs");
	kill9_pid($worker) if defined $worker;
	clear_pause($node);
	is(job_end($vjob), 'succeeded', "$label: the verification ends succeeded");
	is(sql_retry($node, "SELECT verified_at IS NOT NULL AND verify_error IS NULL FROM dborch.backups WHERE id = $good"),
		't', "$label: verified_at is set");
	my @left = processes_in($scratch);
	is(scalar @left, 0, "$label: no process of the scratch instance is left") or diag("@left");
	ok(!-e $scratch, "$label: the scratch directory is removed");
	check_no_orphans($node, $label);

	# ---------------------------------------------------------------------------
	# a restore into a new deployment: worker killed while pgbackrest restores
	# ---------------------------------------------------------------------------
	$label = 'restore, worker killed while pgbackrest restores';
	psql_uri($pg_uri, "INSERT INTO t VALUES (0, 'after the backup')");
	set_pause($node, 'restore:restore_data');
	sql($node, "SELECT 1 FROM dborch.restore('bk_pg', backup => $good, new_name => 'bk_pg_r')");
	$worker = wait_paused($node, 'bk_pg_r', 'restore:restore_data');
	ok(defined $worker, "$label: the restore is held before restore_data");
	clear_pause($node);
	@running = wait_pgbackrest(60, '--stanza=bk_pg', 'restore', '/bk_pg_r-');
	ok(@running, "$label: pgbackrest restore runs");
	@locals = wait_pgbackrest_n(2, 60, '--stanza=bk_pg', 'restore:local');
	is(scalar @locals, 2, "$label: its two local processes copy files");
	kill9_pid($worker) if defined $worker;
	ok(wait_no_pgbackrest(5, '--stanza=bk_pg', 'restore'),
		"$label: the pgbackrest restore process dies with the worker");

	is(wait_settled($node, 'bk_pg_r', 120), 'ready', "$label: the restored deployment ends ready");
	is(first_stage_of_attempt($node, 'bk_pg_r', 2, 'restore'),
		'restore_data', "$label: the second attempt resumed at restore_data");
	check_ready($node, 'bk_pg_r', $label);
	my $r_uri = sql_retry($node, "SELECT dborch.connection_string('bk_pg_r')");
	is(psql_uri($r_uri, 'SELECT count(*), min(id), max(id) FROM t'),
		'20000|1|20000', "$label: it holds exactly the rows of the backup");
	check_no_orphans($node, $label);
}

# ---------------------------------------------------------------------------
# a Redis restore in place: worker killed after the stop
# ---------------------------------------------------------------------------
{
	my $label = 'redis restore in place, worker killed after the stop';
	deploy($node, 'bk_redis', 'redis');
	is(wait_settled($node, 'bk_redis'), 'ready', 'a Redis deployment is ready');
	my $uri = sql($node, "SELECT dborch.connection_string('bk_redis')");
	is(redis_cli($uri, 'MSET', 'a', '1', 'b', '2', 'c', '3'), 'OK', 'keys are written');
	my ($bid, $job) = split /\|/, sql($node, "SELECT id, job_id FROM dborch.backup('bk_redis')");
	is(job_end($job), 'succeeded', 'a Redis backup succeeded');
	is(redis_cli($uri, 'MSET', 'a', 'changed', 'd', '4'), 'OK', 'keys are changed after it');

	set_pause($node, 'restore_in_place:restore_data');
	sql($node, "SELECT 1 FROM dborch.restore('bk_redis', backup => $bid, in_place => true)");
	my $worker = wait_paused($node, 'bk_redis', 'restore_in_place:restore_data');
	ok(defined $worker, "$label: the restore is held before restore_data");
	my $inst = instance_of($node, 'bk_redis');
	is(scalar(server_processes($node, $inst->{real_directory})), 0,
		"$label: the redis-server is stopped at that point");
	kill9_pid($worker) if defined $worker;
	clear_pause($node);
	is(wait_settled($node, 'bk_redis', 120), 'ready', "$label: the deployment ends ready");
	is(first_stage_of_attempt($node, 'bk_redis', 2, 'restore_in_place'),
		'restore_data', "$label: the second attempt resumed at restore_data");
	check_ready($node, 'bk_redis', $label);
	is(join(',', map { redis_cli($uri, 'GET', $_) // 'undef' } qw(a b c)),
		'1,2,3', "$label: the keys have their values of the backup");
	is(redis_cli($uri, 'EXISTS', 'd'), '0', "$label: the key added after the backup is gone");
	check_no_orphans($node, $label);
}

# ---------------------------------------------------------------------------
# cleanup: destroy with drop_backups, then the usual checks
# ---------------------------------------------------------------------------
sql_retry($node,
	"SELECT count(dborch.destroy(name, drop_backups => true)) FROM dborch.deployments WHERE status <> 'destroyed'");
ok(wait_for($node, "SELECT count(*) FROM dborch.deployments WHERE status <> 'destroyed'", '0'),
	'cleanup: every deployment is destroyed, with its backups');
my @backup_dirs = glob("$backup_root/*");
is(scalar @backup_dirs, 0, 'cleanup: no backup directory is left') or diag("@backup_dirs");
wait_no_pgbackrest(60, $node->{dborch_root} . '/');
my @pgbackrest_left = pgbackrest_pids($node->{dborch_root} . '/');
is(scalar @pgbackrest_left, 0, 'cleanup: no pgbackrest process of this control plane is left');
kill('KILL', @pgbackrest_left) if @pgbackrest_left;
cleanup_all($node);
done_testing();
