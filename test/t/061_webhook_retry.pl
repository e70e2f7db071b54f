# Alerts survive a webhook receiver that is down.
#
# dborch.alert_webhook_url names a port where nothing listens yet.  A Redis
# deployment is killed and recovers: its firing and resolved alerts wait in
# dborch.alerts (pending, attempts counted, last_error set), retried with
# backoff.  Then something accepts connections on that port but never
# answers (test/bin/silent-server): each attempt ends at
# dborch.alert_timeout, and the alerts stay pending.  Then the real receiver
# starts there: both alerts arrive, delivery becomes sent with attempts > 1,
# and nothing is delivered twice.
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

use DborchTest;

my $node = new_control_plane(ports => '31650-31699');

my $hook_port = free_tcp_port();
my $hook_file = "$PostgreSQL::Test::Utils::tmp_check/webhook-061.jsonl";
ok(port_free($hook_port), "nothing listens on the webhook port $hook_port yet");
set_webhook_url($node, "http://127.0.0.1:$hook_port/api/v1/alerts");

deploy($node, 'hook_rd', 'redis');
is(wait_settled($node, 'hook_rd'), 'ready', 'hook_rd is ready');
my $inst = instance_of($node, 'hook_rd');
my $pid = check_ready($node, 'hook_rd', 'before the kill');

kill9_pid($pid);
ok(wait_event_count($node, 'hook_rd', 'instance_down', 1, 30), 'the kill is detected');
ok(wait_event_count($node, 'hook_rd', 'recovered', 1, 60), 'the instance recovers');
is(wait_settled($node, 'hook_rd'), 'ready', 'hook_rd is ready again');

# Both alerts are tried, fail, and are tried again.
ok( wait_for(
		$node, q{SELECT count(*) FROM dborch.alerts
		          WHERE delivery = 'pending' AND attempts >= 2 AND last_error IS NOT NULL},
		'2', 30),
	'both alerts stay pending, each tried at least twice, with the error recorded');
my @pending = alert_rows($node, 'hook_rd');
is(join(',', map { "$_->{status}/$_->{delivery}" } @pending),
	'firing/pending,resolved/pending', 'one firing and one resolved alert, both pending');
diag("while the receiver is down: " . join('; ', map { "$_->{status}: attempts $_->{attempts}, last_error \"$_->{last_error}\"" } @pending));
like($pending[0]{last_error} // '', qr/connect|refused/i, 'last_error says the receiver could not be reached');
is(sql($node, 'SELECT alerts_pending FROM dborch.health()'), '2', 'health() counts 2 alerts pending');
is( sql($node, q{SELECT count(*) FROM dborch.alerts WHERE delivery = 'pending'
                   AND next_attempt_at <= clock_timestamp() + interval '12.5 seconds'}),
	'2', 'each has its next attempt scheduled within the backoff cap (10 s, +25% jitter)');

# A receiver that accepts but never answers: attempts end at alert_timeout.
set_guc($node, 'dborch.alert_timeout', '1s');
my $silent = start_helper("silent-server-$hook_port",
	[ $^X, "$DborchTest::TEST_BIN/silent-server", $hook_port ], port => $hook_port);
ok( wait_for(
		$node, q{SELECT count(*) FROM dborch.alerts
		          WHERE delivery = 'pending' AND attempts >= 3 AND last_error ILIKE '%timeout%'},
		'2', 30),
	'with a receiver that never answers, each attempt times out and the alerts stay pending');
diag("while the receiver hangs: " . join('; ', map { "$_->{status}: attempts $_->{attempts}, last_error \"$_->{last_error}\"" } alert_rows($node, 'hook_rd')));
is(scalar(my @none = webhook_payloads($hook_file)), 0, 'nothing was received yet');
stop_helper($silent);

# The receiver comes up: the alerts are delivered, not lost.
my $receiver = start_webhook_receiver($hook_port, $hook_file);
ok(wait_for($node, q{SELECT count(*) FROM dborch.alerts WHERE delivery = 'sent'}, '2', 30),
	'both alerts are sent once the receiver is up');
my @sent = alert_rows($node, 'hook_rd');
is(join(',', map { "$_->{status}/$_->{delivery}" } @sent),
	'firing/sent,resolved/sent', 'delivery went from pending to sent');
foreach my $a (@sent)
{
	cmp_ok($a->{attempts}, '>', 3, "the $a->{status} alert took more than three attempts ($a->{attempts})");
	ok($a->{sent}, "the $a->{status} alert has sent_at");
}
diag("after delivery: " . join('; ', map { "$_->{status}: attempts $_->{attempts}, last_error " . ($_->{last_error} // 'NULL') } @sent));

my @got;
my $deadline = time + 10;
while ((@got = webhook_payloads($hook_file)) < 2 && time < $deadline)
{
	usleep(100_000);
}
is(scalar @got, 2, 'the receiver got exactly two alerts');
is(join(',', sort map { $_->{status} // '?' } @got), 'firing,resolved',
	'one firing and one resolved');
is(join(',', map { $_->{alerts}[0]{labels}{deployment} // '?' } @got), 'hook_rd,hook_rd',
	'both are about hook_rd');
is(join(',', map { $_->{alerts}[0]{labels}{instance} // '?' } @got),
	"127.0.0.1:$inst->{port},127.0.0.1:$inst->{port}", 'both name its instance');
is(sql($node, 'SELECT alerts_pending FROM dborch.health()'), '0', 'health() counts no alert pending');

# Nothing is delivered again later.
usleep(2_000_000);
is(scalar(my @again = webhook_payloads($hook_file)), 2, 'two seconds later, still exactly two deliveries');

stop_helper($receiver);
cleanup_all($node);
done_testing();
