# prometheus-postgres-exporter with prometheus/queries.yaml against the
# control plane.
#
# The test starts the exporter (Debian package prometheus-postgres-exporter)
# with --extend.query-path pointing at the repository's queries.yaml, on a
# free loopback port, connected to the node's socket as its superuser, and
# reads /metrics: dborch_instance_up{deployment=...} 1 for a live Redis and
# PostgreSQL deployment with their metrics, dborch_health_*; while the Redis
# is down (its recovery held) up is 0 and instances_down 1; after the
# recovery up is 1 again.  The exporter is stopped by its pid.
use strict;
use warnings;

use IO::Socket::INET;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

use DborchTest;

my $exporter_bin = '/usr/bin/prometheus-postgres-exporter';
my $queries = "$DborchTest::REPO_ROOT/prometheus/queries.yaml";
ok(-f $queries, "queries.yaml is at $queries");
if (!-x $exporter_bin)
{
	fail("$exporter_bin is installed (package prometheus-postgres-exporter)");
	done_testing();
	exit 1;
}

my $node = new_control_plane(ports => '31800-31849');
deploy($node, 'prom_rd', 'redis');
deploy($node, 'prom_pg', 'postgres');
is(wait_settled($node, 'prom_rd'), 'ready', 'prom_rd is ready');
is(wait_settled($node, 'prom_pg'), 'ready', 'prom_pg is ready');
my $rd = instance_of($node, 'prom_rd');
my $pg = instance_of($node, 'prom_pg');
check_ready($node, 'prom_rd', 'before');
my $uri = sql($node, "SELECT dborch.connection_string('prom_rd')");
is(redis_cli($uri, 'MSET', 'a', '1', 'b', '2'), 'OK', 'prom_rd: two keys written');
ok(wait_for($node, q{SELECT count(*) FROM dborch.prometheus_metrics WHERE up = 1}, '2', 20),
	'prometheus_metrics: both instances up');
ok(wait_for($node, q{SELECT keys FROM dborch.prometheus_metrics WHERE deployment = 'prom_rd'}, '2', 20),
	'prometheus_metrics: prom_rd has 2 keys');

my $superuser = sql($node, 'SELECT current_user');
my $port = free_tcp_port();
my $exporter = start_helper(
	"postgres-exporter-$port",
	[
		$exporter_bin, "--extend.query-path=$queries",
		"--web.listen-address=127.0.0.1:$port", '--disable-default-metrics',
		'--disable-settings-metrics'
	],
	env => {
		DATA_SOURCE_NAME => 'host=' . $node->host . ' port=' . $node->port
		  . " user=$superuser dbname=postgres sslmode=disable"
	});
ok(wait_tcp_port($port, 30), "the exporter listens on 127.0.0.1:$port");

# GET /metrics; the body, or '' on failure.
sub scrape
{
	my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Timeout => 10)
	  or return '';
	print $s "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
	local $/;
	my $response = <$s> // '';
	close $s;
	my ($head, $body) = split /\r?\n\r?\n/, $response, 2;
	return ($head // '') =~ m{^HTTP/1\.\d 200} ? $body // '' : '';
}

# The value of a metric line whose name is $name and whose labels include
# every pair of %$labels; undef if there is none.
sub metric
{
	my ($text, $name, $labels) = @_;
	foreach my $line (split /\n/, $text)
	{
		next unless $line =~ /^\Q$name\E(?:\{(.*)\})? (\S+)$/;
		my ($l, $v) = ($1 // '', $2);
		my %have = $l =~ /(\w+)="((?:[^"\\]|\\.)*)"/g;
		next if grep { ($have{$_} // "\0") ne $labels->{$_} } keys %$labels;
		return $v;
	}
	return undef;
}

# Scrape until $cond->($text) holds; the last text.
sub scrape_until
{
	my ($cond, $timeout) = @_;
	my $deadline = time + ($timeout // 30);
	my $text = '';
	for (;;)
	{
		$text = scrape();
		return $text if $cond->($text);
		last if time > $deadline;
		usleep(200_000);
	}
	diag("last scrape:\n" . join("\n", grep { /^dborch_|^pg_up/ } split /\n/, $text));
	return $text;
}

my %rd_labels = (deployment => 'prom_rd', engine => 'redis', role => 'primary',
	instance => "127.0.0.1:$rd->{port}");
my %pg_labels = (deployment => 'prom_pg', engine => 'postgres', role => 'primary',
	instance => "127.0.0.1:$pg->{port}");

my $m = scrape_until(
	sub {
		(metric($_[0], 'dborch_instance_up', \%rd_labels) // '') eq '1'
		  && (metric($_[0], 'dborch_instance_up', \%pg_labels) // '') eq '1';
	});
is(metric($m, 'dborch_instance_up', \%rd_labels), '1',
	'dborch_instance_up{deployment="prom_rd",engine="redis",role,instance} 1');
is(metric($m, 'dborch_instance_up', \%pg_labels), '1',
	'dborch_instance_up{deployment="prom_pg",engine="postgres",role,instance} 1');
is(metric($m, 'dborch_instance_keys', \%rd_labels), '2', 'dborch_instance_keys of prom_rd is 2');
cmp_ok(metric($m, 'dborch_instance_used_memory_bytes', \%rd_labels) // 0, '>', 0,
	'dborch_instance_used_memory_bytes of prom_rd');
cmp_ok(metric($m, 'dborch_instance_database_size_bytes', \%pg_labels) // 0, '>', 0,
	'dborch_instance_database_size_bytes of prom_pg');
cmp_ok(metric($m, 'dborch_instance_xact_commit', \%pg_labels) // 0, '>', 0,
	'dborch_instance_xact_commit of prom_pg');
cmp_ok(metric($m, 'dborch_instance_connections', \%pg_labels) // 0, '>=', 1,
	'dborch_instance_connections of prom_pg');
cmp_ok(metric($m, 'dborch_instance_resident_memory_bytes', \%pg_labels) // 0, '>', 0,
	'dborch_instance_resident_memory_bytes of prom_pg');
ok(defined metric($m, 'dborch_instance_latency_seconds', \%rd_labels), 'dborch_instance_latency_seconds');
cmp_ok(metric($m, 'dborch_instance_sample_age_seconds', \%rd_labels) // 99, '<', 5,
	'dborch_instance_sample_age_seconds is small');
is(metric($m, 'dborch_health_instances_up', {}), '2', 'dborch_health_instances_up 2');
is(metric($m, 'dborch_health_instances_down', {}), '0', 'dborch_health_instances_down 0');
is(metric($m, 'dborch_health_prober_up', {}), '1', 'dborch_health_prober_up 1');
is(metric($m, 'dborch_health_launcher_up', {}), '1', 'dborch_health_launcher_up 1');
cmp_ok(metric($m, 'dborch_health_last_probe_age_seconds', {}) // 99, '<', 5,
	'dborch_health_last_probe_age_seconds is small');
ok(defined metric($m, 'dborch_health_alerts_pending', {}), 'dborch_health_alerts_pending');
is(scalar(grep { /^# HELP dborch_instance_up / } split /\n/, $m), 1, 'dborch_instance_up has its HELP line');

# prom_rd down, its recovery held: up 0 while prom_pg stays 1.
set_pause($node, 'recover:restart');
kill9_pid($rd->{pid});
ok(defined wait_paused($node, 'prom_rd', 'recover:restart'), 'prom_rd is down, its recovery held');
$m = scrape_until(sub { (metric($_[0], 'dborch_instance_up', \%rd_labels) // '') eq '0' });
is(metric($m, 'dborch_instance_up', \%rd_labels), '0', 'while down: dborch_instance_up of prom_rd is 0');
is(metric($m, 'dborch_instance_up', \%pg_labels), '1', 'while down: prom_pg stays 1');
is(metric($m, 'dborch_health_instances_down', {}), '1', 'while down: dborch_health_instances_down 1');
is(metric($m, 'dborch_health_instances_up', {}), '1', 'while down: dborch_health_instances_up 1');
clear_pause($node);
is(wait_settled($node, 'prom_rd'), 'ready', 'prom_rd recovers');
$m = scrape_until(sub { (metric($_[0], 'dborch_instance_up', \%rd_labels) // '') eq '1' });
is(metric($m, 'dborch_instance_up', \%rd_labels), '1', 'after the recovery: dborch_instance_up of prom_rd is 1');
is(metric($m, 'dborch_health_instances_up', {}), '2', 'after the recovery: dborch_health_instances_up 2');

# The README says to connect the exporter as a member of dborch_admin (all
# deployments) or dborch_user (its own): run the queries of queries.yaml as
# such roles.
my @yaml_queries;
{
	open(my $fh, '<', $queries) or die "$queries: $!";
	my $text = do { local $/; <$fh> };
	close $fh;
	while ($text =~ /^(\w+):\n  query: \|\n((?:    .*\n)+)/mg)
	{
		push @yaml_queries, [ $1, $2 ];
	}
}
is(join(',', map { $_->[0] } @yaml_queries), 'dborch_instance,dborch_health', 'queries.yaml has two queries');
sql($node, q{CREATE ROLE prom_admin LOGIN IN ROLE dborch_admin; CREATE ROLE prom_user LOGIN IN ROLE dborch_user});
foreach my $q (@yaml_queries)
{
	my ($qname, $query) = @$q;
	my ($rc, $out, $err) = $node->psql('postgres', $query, extra_params => [ '-U', 'prom_admin' ]);
	is($rc, 0, "$qname runs as a member of dborch_admin") or diag($err);
	if ($qname eq 'dborch_instance')
	{
		is(scalar(split /\n/, $out), 2, "$qname as a member of dborch_admin: both instances");
	}
	($rc, $out, $err) = $node->psql('postgres', $query, extra_params => [ '-U', 'prom_user' ]);
	is($rc, 0, "$qname runs as a member of dborch_user") or diag($err);
	if ($qname eq 'dborch_instance')
	{
		is($out, '', "$qname as a member of dborch_user who owns nothing: no instance");
	}
}

stop_helper($exporter);
ok(!kill(0, $exporter), 'the exporter is stopped');
cleanup_all($node);
done_testing();
