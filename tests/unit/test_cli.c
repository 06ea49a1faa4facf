/* The command line as users meet it: runs the built binary ($PYSTRIB_BIN). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "buf.h"

/* Runs `pystrib ARGS` through sh, capturing stdout and stderr; returns the exit code. */
static int run(const char *args, struct buf *out, struct buf *err)
{
	const char *bin = getenv("PYSTRIB_BIN");
	assert_non_null(bin);
	char outp[] = "/tmp/pystrib-cli-out-XXXXXX", errp[] = "/tmp/pystrib-cli-err-XXXXXX";
	int fo = mkstemp(outp), fe = mkstemp(errp);
	assert_true(fo >= 0 && fe >= 0);
	char *cmd = xstrfmt("cd /tmp && env -u PYSTRIB_CONFIG XDG_CONFIG_HOME=/nonexistent '%s' %s >%s 2>%s",
			    bin, args, outp, errp);
	int status = system(cmd);
	free(cmd);
	buf_reset(out);
	buf_reset(err);
	assert_int_equal(buf_read_file(out, outp), 0);
	assert_int_equal(buf_read_file(err, errp), 0);
	unlink(outp);
	unlink(errp);
	close(fo);
	close(fe);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void help_lists_commands_and_exit_codes(void **state)
{
	(void)state;
	struct buf out = BUF_INIT, err = BUF_INIT;
	assert_int_equal(run("--help", &out, &err), 0);
	assert_non_null(strstr(out.ptr, "usage: pystrib"));
	assert_non_null(strstr(out.ptr, "  config "));
	assert_non_null(strstr(out.ptr, "130  interrupted"));
	assert_non_null(strstr(out.ptr, "3    registry error"));
	buf_release(&out);
	buf_release(&err);
}

static void help_for_one_command(void **state)
{
	(void)state;
	struct buf out = BUF_INIT, err = BUF_INIT, out2 = BUF_INIT;
	assert_int_equal(run("help config", &out, &err), 0);
	assert_non_null(strstr(out.ptr, "usage: pystrib config show"));
	assert_non_null(strstr(out.ptr, "example"));
	assert_int_equal(run("config --help", &out2, &err), 0);
	assert_string_equal(out.ptr, out2.ptr);
	buf_release(&out);
	buf_release(&out2);
	buf_release(&err);
}

static void version_names_libraries(void **state)
{
	(void)state;
	struct buf out = BUF_INIT, err = BUF_INIT;
	assert_int_equal(run("--version", &out, &err), 0);
	static const char *const libs[] = { "pystrib ", "libssh", "libcurl", "libarchive",
					    "jansson", "libgit2", "inih", "OpenSSL" };
	for (size_t i = 0; i < ARRAY_SIZE(libs); i++)
		if (!strstr(out.ptr, libs[i]))
			fail_msg("--version lacks %s", libs[i]);
	buf_release(&out);
	buf_release(&err);
}

static void unknown_command_suggests_and_exits_2(void **state)
{
	(void)state;
	struct buf out = BUF_INIT, err = BUF_INIT;
	assert_int_equal(run("confg show", &out, &err), 2);
	assert_non_null(strstr(err.ptr, "'confg' is not a pystrib command; did you mean 'config'?"));
	assert_non_null(strstr(err.ptr, "usage:"));
	assert_int_equal(run("frobnicate", &out, &err), 2);
	assert_null(strstr(err.ptr, "did you mean"));
	assert_int_equal(run("help nosuch", &out, &err), 2);
	buf_release(&out);
	buf_release(&err);
}

static void unknown_option_suggests_and_exits_2(void **state)
{
	(void)state;
	struct buf out = BUF_INIT, err = BUF_INIT;
	assert_int_equal(run("config show --rmote x", &out, &err), 2);
	assert_non_null(strstr(err.ptr, "unknown option '--rmote'; did you mean '--remote'?"));
	assert_non_null(strstr(err.ptr, "usage: pystrib config"));
	assert_int_equal(run("config show -Q", &out, &err), 2);
	assert_non_null(strstr(err.ptr, "unknown option '-Q'"));
	assert_int_equal(run("config show --remote", &out, &err), 2);
	assert_non_null(strstr(err.ptr, "needs a value"));
	assert_int_equal(run("--bogus config show", &out, &err), 2);
	assert_non_null(strstr(err.ptr, "unknown option '--bogus'"));
	assert_int_equal(run("", &out, &err), 2);
	buf_release(&out);
	buf_release(&err);
}

static void config_errors_exit_2(void **state)
{
	(void)state;
	struct buf out = BUF_INIT, err = BUF_INIT;
	assert_int_equal(run("-c /nonexistent.ini config show", &out, &err), 2);
	assert_non_null(strstr(err.ptr, "pystrib: cannot read config file '/nonexistent.ini'"));
	assert_non_null(strstr(err.ptr, "hint: "));
	assert_int_equal(run("config show --remote nosuch", &out, &err), 2);
	assert_int_equal(run("config get job.nope", &out, &err), 2);
	assert_int_equal(run("config get job.np", &out, &err), 0);
	assert_string_equal(out.ptr, "1\n");
	assert_int_equal(run("--json config show", &out, &err), 0);
	assert_non_null(strstr(out.ptr, "\"settings\""));
	buf_release(&out);
	buf_release(&err);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(help_lists_commands_and_exit_codes),
		cmocka_unit_test(help_for_one_command),
		cmocka_unit_test(version_names_libraries),
		cmocka_unit_test(unknown_command_suggests_and_exits_2),
		cmocka_unit_test(unknown_option_suggests_and_exits_2),
		cmocka_unit_test(config_errors_exit_2),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
