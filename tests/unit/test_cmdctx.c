/*
 * Unit tests for cmdctx.c: what cmd_setup gives a command for each of its
 * needs, and how it fails: the JOB argument (usage errors), the job's
 * record, the configuration (of the job's remote, or of --remote), and a
 * host that cannot be reached, fatal or (CONN_MAY_FAIL) not. Reaching a
 * real job on a real host is the job scenarios' part (integration/t05*).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cmdctx.h"
#include "error.h"
#include "jobrec.h"
#include "testutil.h"

static const char help[] = "usage: pystrib verb JOB\n\nmore\n";
static char *tmp, *ini;
static int closed_port;

static int setup(void **state)
{
	(void)state;
	char *text;

	tmp = test_tmpdir("cmdctx");
	closed_port = test_free_port();
	text = xstrfmt("[remote]\nhost = 127.0.0.1\nport = %d\nuser = me\n"
		       "[remote.gpu1]\nhost = gpu1.example\n", closed_port);
	ini = test_write_file(tmp, "pystrib.ini", text, 0600);
	free(text);
	cli.config_file = ini;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	cli.config_file = NULL;
	free(ini);
	test_tmpdir_remove(tmp);
	return 0;
}

static void save(const char *id, const char *remote)
{
	struct jobrec r;
	jobrec_init(&r);
	jobrec_set(&r.id, id);
	jobrec_set(&r.remote, remote);
	jobrec_set(&r.state, "running");
	jobrec_set_np(&r, 2);
	assert_int_equal(jobrec_save(&r), 0);
	jobrec_release(&r);
}

/* cmd_setup as a command calls it, its options parsed: argv[1..] are operands. */
static int setup_with(struct cmd_ctx *ctx, unsigned needs, int argc, char **argv)
{
	cmd_ctx_init(ctx, argv[0], help, needs);
	optind = 1;
	error_clear();
	return cmd_setup(ctx, argc, argv);
}

static void test_needs_implied(void **state)
{
	(void)state;
	struct cmd_ctx ctx;

	cmd_ctx_init(&ctx, "verb", help, NEED_JOBDIR);
	assert_int_equal(ctx.needs, NEED_JOB | NEED_CONFIG | NEED_CONN | NEED_JOBDIR);
	cmd_ctx_release(&ctx);
	cmd_ctx_init(&ctx, "verb", help, NEED_CONN | CONN_MAY_FAIL);
	assert_int_equal(ctx.needs, NEED_JOB | NEED_CONFIG | NEED_CONN | CONN_MAY_FAIL);
	cmd_ctx_release(&ctx);
	cmd_ctx_init(&ctx, "verb", help, 0);
	assert_int_equal(ctx.needs, 0);
	cmd_ctx_release(&ctx);
}

static void test_job_argument(void **state)
{
	(void)state;
	struct cmd_ctx ctx;
	char *none[] = { "verb", NULL };
	char *two[] = { "verb", "a", "b", NULL };
	char *last[] = { "verb", "last", NULL };
	char *nosuch[] = { "verb", "2025", NULL };

	/* No JOB, or two: usage errors, printed by cmd_setup. */
	assert_int_equal(setup_with(&ctx, NEED_JOB, 1, none), -1);
	assert_int_equal(cmd_report(&ctx), PS_EXIT_USAGE);
	cmd_ctx_release(&ctx);
	assert_int_equal(setup_with(&ctx, NEED_JOB, 3, two), -1);
	assert_true(ctx.usage);
	cmd_ctx_release(&ctx);

	/* No records yet: an error left for the command to report. */
	assert_int_equal(setup_with(&ctx, NEED_JOB, 2, last), -1);
	assert_false(ctx.usage);
	assert_int_equal(error_kind(), PS_EXIT_USAGE);
	assert_non_null(strstr(error_message(), "no jobs yet"));
	cmd_ctx_release(&ctx);

	save("20261123-090334-0a9fce", NULL);
	save("20261124-090334-0b9fce", "gpu1");
	assert_int_equal(setup_with(&ctx, NEED_JOB, 2, last), 0);
	assert_string_equal(ctx.rec.id, "20261124-090334-0b9fce");
	assert_null(ctx.conn);
	cmd_ctx_release(&ctx);
	assert_int_equal(setup_with(&ctx, NEED_JOB, 2, nosuch), -1);
	assert_non_null(strstr(error_message(), "no job '2025'"));
	cmd_ctx_release(&ctx);
	error_clear();
}

static void test_config(void **state)
{
	(void)state;
	struct cmd_ctx ctx;
	char *argv[] = { "verb", NULL };
	char *job[] = { "verb", "20261124", NULL };

	/* Without a JOB: [remote.NAME] as the command's --remote said. */
	cmd_ctx_init(&ctx, "verb", help, NEED_CONFIG);
	ctx.remote = "gpu1";
	optind = 1;
	assert_int_equal(cmd_setup(&ctx, 1, argv), 0);
	assert_string_equal(ctx.cfg.remote.host, "gpu1.example");
	cmd_ctx_release(&ctx);

	/* With one: the job's remote; one no longer configured is an error. */
	save("20261124-090334-0b9fce", "gpu1");
	assert_int_equal(setup_with(&ctx, NEED_JOB | NEED_CONFIG, 2, job), 0);
	assert_string_equal(ctx.cfg.remote.host, "gpu1.example");
	cmd_ctx_release(&ctx);
	save("20261124-090334-0b9fce", "gone");
	assert_int_equal(setup_with(&ctx, NEED_JOB | NEED_CONFIG, 2, job), -1);
	assert_non_null(strstr(error_message(), "remote 'gone', which is no longer configured"));
	cmd_ctx_release(&ctx);
	error_clear();
}

static void test_unreachable(void **state)
{
	(void)state;
	struct cmd_ctx ctx;
	char *job[] = { "verb", "20261123", NULL };

	/* The default [remote]: a port nothing listens on. */
	save("20261123-090334-0a9fce", NULL);
	assert_int_equal(setup_with(&ctx, NEED_CONN, 2, job), -1);
	assert_int_equal(error_kind(), PS_EXIT_REMOTE);
	assert_null(ctx.conn);
	cmd_ctx_release(&ctx);

	/* May fail: the record as last known, and why. */
	assert_int_equal(setup_with(&ctx, NEED_CONN | CONN_MAY_FAIL, 2, job), 0);
	assert_non_null(ctx.stale);
	assert_string_equal(ctx.stale, error_message());
	assert_int_equal(error_kind(), PS_EXIT_REMOTE);
	assert_string_equal(ctx.rec.state, "running");
	assert_null(ctx.conn);
	assert_null(ctx.dir);
	cmd_ctx_release(&ctx);
	error_clear();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_needs_implied),
		cmocka_unit_test(test_job_argument),
		cmocka_unit_test(test_config),
		cmocka_unit_test(test_unreachable),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
