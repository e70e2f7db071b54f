# kill -9 of the job worker of a Redis deploy, at many stages.
#
# As 010 for PostgreSQL (see worker_crash_case and single_attempt_case in
# DborchTest.pm): each case pauses the deploy at a stage, kills the job
# worker with SIGKILL, lets the job resume, and checks that the deployment
# ends ready with exactly one redis-server, the one the catalog records,
# answering PING; that nothing is orphaned; and that the deployments made
# before kept their processes.  A job with a single attempt must end failed
# with its running redis-server, directory and port removed.
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;

use DborchTest;

my $node = new_control_plane(ports => '31100-31199');
my %adopted;

deploy($node, 'bystander', 'postgres');
is(wait_settled($node, 'bystander'), 'ready', 'a postgres bystander is ready');
$adopted{bystander} = check_ready($node, 'bystander', 'bystander');

my $n = 0;
foreach my $point (
	qw(
	deploy:quota_check
	deploy:prepare:after
	deploy:security:after
	deploy:start:after
	deploy:register
	deploy:health_validation
	deploy:finalize:after)
  )
{
	worker_crash_case($node, 'redis', 'rd' . ++$n, $point, \%adopted);
}

single_attempt_case($node, 'redis', 'rd_fail', 'deploy:start:after', \%adopted);
single_attempt_case($node, 'redis', 'rd_fail2', 'deploy:register', \%adopted);

cleanup_all($node);
done_testing();
