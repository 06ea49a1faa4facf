/*
 * Unit tests for hosts.c: the [remote] hosts list, "[USER@]HOST[:PORT][*SLOTS], ...".
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "buf.h"
#include "error.h"
#include "hosts.h"

static void the_bed_pair(void **state)
{
	(void)state;
	struct host_list l = HOST_LIST_INIT;
	struct buf b = BUF_INIT;
	assert_int_equal(hosts_parse(&l, "root@198.18.0.1:22*2, root@198.18.0.2:22*2"), 0);
	assert_int_equal(l.nr, 2);
	assert_string_equal(l.v[0].user, "root");
	assert_string_equal(l.v[0].host, "198.18.0.1");
	assert_int_equal(l.v[0].port, 22);
	assert_int_equal(l.v[1].slots, 2);
	assert_int_equal(hosts_slots(&l), 4);
	hosts_mpirun_list(&l, &b);
	assert_string_equal(b.ptr, "198.18.0.1:2,198.18.0.2:2");
	buf_reset(&b);
	hosts_dest(&l.v[1], &b);
	assert_string_equal(b.ptr, "root@198.18.0.2:22");
	buf_release(&b);
	hosts_release(&l);
}

static void bare_names_and_ipv6(void **state)
{
	(void)state;
	struct host_list l = HOST_LIST_INIT;
	struct buf b = BUF_INIT;
	assert_int_equal(hosts_parse(&l, " gpu1,gpu2*4 [::1]:2222*1\n"), 0);
	assert_int_equal(l.nr, 3);
	assert_null(l.v[0].user);
	assert_int_equal(l.v[0].port, 0);
	assert_int_equal(l.v[0].slots, 0);
	assert_int_equal(l.v[1].slots, 4);
	assert_string_equal(l.v[2].host, "[::1]");
	assert_int_equal(l.v[2].port, 2222);
	/* One host without slots: mpirun counts them. */
	assert_int_equal(hosts_slots(&l), 0);
	hosts_mpirun_list(&l, &b);
	assert_string_equal(b.ptr, "gpu1,gpu2:4,::1:1");
	buf_release(&b);
	hosts_release(&l);
}

static void refused(const char *text, const char *says)
{
	struct host_list l = HOST_LIST_INIT;
	assert_int_equal(hosts_parse(&l, text), -1);
	assert_int_equal(error_kind(), PS_EXIT_USAGE);
	assert_non_null(strstr(error_message(), says));
	assert_int_equal(l.nr, 0);
	assert_null(l.v);
	error_clear();
}

static void bad_lists(void **state)
{
	(void)state;
	refused("", "empty");
	refused(" , ", "empty");
	refused("a:0", "'a:0'");
	refused("a:65536", "not valid");
	refused("a*0", "'a*0'");
	refused("a*x", "not valid");
	refused("@a", "'@a'");
	refused("a@", "'a@'");
	refused("-oProxyCommand=x", "not valid");
	refused("a;b", "'a;b'");
	refused("u$x@a", "not valid");
	refused("[::1", "not valid");
	refused("ok1, a:22*2, a*1", "twice");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(the_bed_pair),
		cmocka_unit_test(bare_names_and_ipv6),
		cmocka_unit_test(bad_lists),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
