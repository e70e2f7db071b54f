# schedule_backups() where pg_cron could never run the job: without
# cron.use_background_workers, pg_cron connects to cron.host as the job's
# role, and here nothing answers there.  The call is refused (55000) with
# what pg_cron would meet and the way out, and writes nothing: no schedule
# row, no pg_cron job.  (With background workers, as scripts/run and the
# other tests configure pg_cron, pgTAP 72 waits for real runs.)
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;

use DborchTest;

my $node = new_control_plane(
	ports => '32200-32249',
	conf => [ 'cron.use_background_workers = off', "cron.host = '127.0.0.1'" ]);

deploy($node, 'cr_rd', 'redis');
is(wait_settled($node, 'cr_rd'), 'ready', 'cr_rd is ready');

my ($rc, $out, $err) = try_psql($node,
	"SELECT dborch.schedule_backups('cr_rd', '0 3 * * *')",
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
isnt($rc, 0, 'schedule_backups() is refused');
like($err, qr/ERROR:\s+55000: pg_cron cannot run scheduled jobs on this server/, 'with 55000 and why');
like($err, qr/DETAIL:\s+pg_cron connects to 127\.0\.0\.1:\d+ as "\w+" to run a job, and gets: .*(refused|could not connect)/s,
	'the detail says what pg_cron would meet');
like($err, qr/HINT:\s+Set cron\.use_background_workers = on/, 'the hint gives the way out');
is(sql($node, 'SELECT count(*) FROM dborch.backup_schedules'), '0', 'no schedule row is written');
is(sql($node, 'SELECT count(*) FROM cron.job'), '0', 'no pg_cron job is made');

cleanup_all($node);
done_testing();
