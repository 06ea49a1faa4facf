/*
 * The command line as users meet it: runs the built binary, $PYSTRIB_BIN
 * (set by CTest), else the `pystrib` beside this test's executable (run by
 * hand from the build directory).
 */
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
#include "cli.h"
#include "commands.h"
#include "error.h"

static char *bin;

static int find_bin(void **state)
{
	(void)state;
	const char *env = getenv("PYSTRIB_BIN");
	char self[4096];
	ssize_t n;

	if (env && *env) {
		bin = xstrdup(env);
		return 0;
	}
	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	assert_true(n > 0);
	self[n] = 0;
	*strrchr(self, '/') = 0;
	bin = xstrfmt("%s/pystrib", self);
	if (access(bin, X_OK) < 0)
		fail_msg("no pystrib binary at '%s': set PYSTRIB_BIN", bin);
	return 0;
}

static int free_bin(void **state)
{
	(void)state;
	free(bin);
	return 0;
}

/*
 * Runs `pystrib ARGS` through sh, capturing stdout and stderr; returns the
 * exit code. No config file and no job records are found.
 */
static int run(const char *args, struct buf *out, struct buf *err)
{
	char outp[] = "/tmp/pystrib-cli-out-XXXXXX", errp[] = "/tmp/pystrib-cli-err-XXXXXX";
	int fo = mkstemp(outp), fe = mkstemp(errp);
	assert_true(fo >= 0 && fe >= 0);
	char *cmd = xstrfmt("cd /tmp && env -u PYSTRIB_CONFIG XDG_CONFIG_HOME=/nonexistent "
			    "XDG_STATE_HOME=/nonexistent '%s' %s >%s 2>%s", bin, args, outp, errp);
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

/* -c, -v and --json after the command, where people type them, as before it. */
static void global_options_after_the_command(void **state)
{
	(void)state;
	struct buf out = BUF_INIT, err = BUF_INIT;
	char ini[] = "/tmp/pystrib-cli-ini-XXXXXX";
	int fd = mkstemp(ini);
	char *args;

	assert_true(fd >= 0);
	assert_int_equal(write(fd, "[job]\nnp = 3\n", 13), 13);
	close(fd);
	args = xstrfmt("config get job.np -c %s", ini);
	assert_int_equal(run(args, &out, &err), 0);
	assert_string_equal(out.ptr, "3\n");
	free(args);
	args = xstrfmt("config get --config=%s job.np -v", ini);
	assert_int_equal(run(args, &out, &err), 0);
	assert_string_equal(out.ptr, "3\n");
	free(args);
	args = xstrfmt("-c /nonexistent.ini config get job.np --config %s", ini);
	assert_int_equal(run(args, &out, &err), 0);	/* the last one given */
	assert_string_equal(out.ptr, "3\n");
	free(args);
	unlink(ini);

	assert_int_equal(run("config show --json", &out, &err), 0);
	assert_non_null(strstr(out.ptr, "\"settings\""));
	assert_int_equal(run("jobs --json", &out, &err), 0);
	assert_string_equal(out.ptr, "");	/* no jobs: no event, not the table's "no jobs" */
	assert_int_equal(run("jobs -v", &out, &err), 0);
	assert_string_equal(out.ptr, "no jobs\n");
	assert_int_equal(run("jobs -vv --json", &out, &err), 0);
	assert_int_equal(run("status last -v", &out, &err), 2);
	assert_non_null(strstr(err.ptr, "no jobs yet"));
	assert_null(strstr(err.ptr, "unknown option"));
	assert_int_equal(run("run cell.py -c /nonexistent.ini", &out, &err), 2);
	assert_non_null(strstr(err.ptr, "cannot read config file '/nonexistent.ini'"));
	assert_int_equal(run("jobs --jsn", &out, &err), 2);
	assert_non_null(strstr(err.ptr, "did you mean '--json'?"));
	assert_int_equal(run("jobs -c", &out, &err), 2);
	assert_non_null(strstr(err.ptr, "option '-c' needs a value"));
	buf_release(&out);
	buf_release(&err);
}

/* After "--" the words are operands: the command's (a cell's arguments), never global options. */
static void after_double_dash_words_are_operands(void **state)
{
	(void)state;
	struct buf out = BUF_INIT, err = BUF_INIT;

	assert_int_equal(run("jobs -- -v", &out, &err), 2);
	assert_non_null(strstr(err.ptr, "jobs takes no arguments"));
	assert_int_equal(run("config get job.np -- -c /nonexistent.ini", &out, &err), 2);
	assert_non_null(strstr(err.ptr, "config get takes one SECTION.KEY"));
	/* run passes them to the cell: not options, so the config is what fails. */
	assert_int_equal(run("run cell.py -c /nonexistent.ini -- -v --bogus", &out, &err), 2);
	assert_non_null(strstr(err.ptr, "cannot read config file '/nonexistent.ini'"));
	assert_null(strstr(err.ptr, "unknown option"));
	buf_release(&out);
	buf_release(&err);
}

/* No command can define a global option's letter or name for itself. */
static void globals_cannot_be_hidden(void **state)
{
	(void)state;
	static const struct option mine[] = { { "results", required_argument, 0, 'r' }, { 0, 0, 0, 0 } };
	static const struct option named[] = { { "verbose", no_argument, 0, 'V' }, { 0, 0, 0, 0 } };
	static const struct option valued[] = { { "cell", required_argument, 0, 'c' }, { 0, 0, 0, 0 } };
	struct cli_opts o;

	assert_int_equal(cli_opts_merge(&o, ":n:r:e:dh", mine), 0);
	assert_string_equal(o.shorts, ":n:r:e:dhc:v");
	assert_string_equal(o.longs[0].name, "results");
	assert_non_null(o.longs[3].name);	/* results config verbose json */
	assert_null(o.longs[4].name);
	assert_int_equal(cli_opts_merge(&o, ":c:h", NULL), -1);
	assert_non_null(strstr(error_message(), "option '-c' hides the global '--config'"));
	assert_int_equal(cli_opts_merge(&o, ":vh", NULL), -1);
	assert_int_equal(cli_opts_merge(&o, ":h", named), -1);
	assert_int_equal(cli_opts_merge(&o, ":h", valued), -1);
	error_clear();
}

/* Every command's --help works with no config file and no job, global options around it. */
static void every_command_help_needs_nothing(void **state)
{
	(void)state;
#define X(verb, needs, summary) #verb,
	static const char *const verbs[] = { PYSTRIB_COMMANDS(X) };
#undef X
	struct buf out = BUF_INIT, err = BUF_INIT;

	for (size_t i = 0; i < ARRAY_SIZE(verbs); i++) {
		char *args = xstrfmt("%s -v --help --json -c /nonexistent.ini", verbs[i]);
		char *usage = xstrfmt("usage: pystrib %s", verbs[i]);
		if (run(args, &out, &err) != 0 || strncmp(out.ptr, usage, strlen(usage)))
			fail_msg("'pystrib %s': %s%s", args, out.ptr, err.ptr);
		free(usage);
		free(args);
	}
	buf_release(&out);
	buf_release(&err);
}

/* The JOB argument of the commands that need one: usage errors, before any config. */
static void job_argument_errors_exit_2(void **state)
{
	(void)state;
	struct buf out = BUF_INIT, err = BUF_INIT;

	assert_int_equal(run("status", &out, &err), 2);
	assert_non_null(strstr(err.ptr, "pystrib: status needs a JOB (an id, a prefix, or 'last')\n"
				   "usage: pystrib status JOB\n"));
	assert_int_equal(run("fetch a b", &out, &err), 2);
	assert_non_null(strstr(err.ptr, "pystrib: fetch takes one JOB"));
	assert_int_equal(run("cancel 2026", &out, &err), 2);
	assert_non_null(strstr(err.ptr, "no job '2026'"));
	assert_int_equal(run("--json attach last", &out, &err), 2);
	assert_non_null(strstr(out.ptr, "\"event\""));	/* the error as an event */
	buf_release(&out);
	buf_release(&err);
}

/* Every usage error ends with where the help is, whatever the command. */
static void usage_errors_say_try_help(void **state)
{
	(void)state;
	struct buf out = BUF_INIT, err = BUF_INIT;
	static const char *const cases[][2] = {
		{ "run", "run" }, { "run --bogus x.py", "run" }, { "status", "status" },
		{ "attach", "attach" }, { "config", "config" }, { "config get", "config" },
		{ "doctor extra", "doctor" }, { "jobs extra", "jobs" }, { "push", "push" },
	};

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		char *want = xstrfmt("\nTry 'pystrib %s --help'.\n", cases[i][1]);
		assert_int_equal(run(cases[i][0], &out, &err), 2);
		const char *try = strstr(err.ptr, "Try '");
		if (!strstr(err.ptr, want) || strstr(try + 1, "Try '"))
			fail_msg("'pystrib %s' said:\n%s", cases[i][0], err.ptr);
		assert_true(err.len >= strlen(want) && !strcmp(err.ptr + err.len - strlen(want), want));
		free(want);
	}
	buf_release(&out);
	buf_release(&err);
}

/*
 * With no config file, `config show` and `doctor` say where they looked
 * and what to do; `config init` writes a starter that loads, and never
 * over a file without --force.
 */
static void no_config_says_where_it_looked(void **state)
{
	(void)state;
	struct buf out = BUF_INIT, err = BUF_INIT;
	char dir[] = "/tmp/pystrib-cli-init-XXXXXX";
	char *args;

	assert_int_equal(run("config show", &out, &err), 0);
	assert_non_null(strstr(out.ptr, "# config file: (none)\n"));
	assert_non_null(strstr(out.ptr, "#   ./pystrib.ini\n#   /nonexistent/pystrib/config.ini\n"));
	assert_non_null(strstr(out.ptr, "'pystrib config init'"));
	assert_non_null(strstr(out.ptr, "config.ini.example"));

	assert_int_equal(run("doctor", &out, &err), 2);
	assert_non_null(strstr(out.ptr, "FAIL  config      no config file; looked for ./pystrib.ini, "
			       "then /nonexistent/pystrib/config.ini\n"));
	assert_non_null(strstr(out.ptr, "fix: run 'pystrib config init'"));
	assert_null(strstr(out.ptr, "(none)"));
	assert_null(strstr(out.ptr, "ok    config"));

	assert_non_null(mkdtemp(dir));
	args = xstrfmt("-c %s/p.ini config init --remote gpu1", dir);
	assert_int_equal(run(args, &out, &err), 0);
	assert_non_null(strstr(err.ptr, "wrote '"));
	assert_int_equal(run(args, &out, &err), 2);
	assert_non_null(strstr(err.ptr, "exists already"));
	free(args);
	args = xstrfmt("-c %s/p.ini config init --force", dir);
	assert_int_equal(run(args, &out, &err), 0);
	free(args);
	args = xstrfmt("-c %s/p.ini config show", dir);
	assert_int_equal(run(args, &out, &err), 0);
	assert_string_equal(err.ptr, "");
	free(args);
	assert_int_equal(run("config show --force", &out, &err), 2);

	/* A config with warnings is no "ok" in doctor. */
	args = xstrfmt("%s/p.ini", dir);
	FILE *f = fopen(args, "a");
	fputs("[job]\nnpp = 2\n", f);
	fclose(f);
	free(args);
	args = xstrfmt("-c %s/p.ini doctor", dir);
	assert_int_equal(run(args, &out, &err), 2);	/* no registry, no host */
	assert_non_null(strstr(err.ptr, "unknown key 'npp'"));
	assert_int_equal(strncmp(out.ptr, "warn  config ", 13), 0);
	assert_non_null(strstr(out.ptr, "with 1 warning"));
	free(args);
	args = xstrfmt("rm -rf %s", dir);
	assert_int_equal(system(args), 0);
	free(args);
	buf_release(&out);
	buf_release(&err);
}

/*
 * The column where an option's description starts in help text (that of
 * "-h, --help"), or -1. Every option line either has its description there
 * after at least two spaces, or ends before it (the description follows on
 * the next line); continuation lines start there too.
 */
static int help_column(const char *help)
{
	const char *h = strstr(help, "\n  -h, --help");
	if (!h)
		return -1;
	h += 1 + strlen("  -h, --help");
	return (int)(strlen("  -h, --help") + strspn(h, " "));
}

static void check_help_columns(const char *verb, const char *help)
{
	int col = help_column(help);
	const char *p = strstr(help, "\noptions:\n");

	if (!p)
		return;
	if (col < 0)
		fail_msg("'%s --help' has no '-h, --help' line", verb);
	for (p += strlen("\noptions:\n"); *p && *p != '\n'; p = strchr(p, '\n') + 1) {
		int len = (int)strcspn(p, "\n"), lead = (int)strspn(p, " ");
		int ok = lead == col;
		if (p[lead] == '-') {	/* an option: its description at col, or on the next line */
			char *line = xstrndup(p, (size_t)len);
			char *gap = strstr(line + lead, "  ");
			int words = 1;
			for (const char *w = line + lead; (w = strchr(w, ' ')); w++)
				words++;
			/* Alone: "-e, --env KEY=VALUE" at most, no description after one space. */
			ok = gap ? gap + strspn(gap, " ") - line == col : words <= 3;
			free(line);
		}
		if (!ok)
			fail_msg("'%s --help': the description column is %d, not so here:\n%.*s",
				 verb, col, len, p);
		if (!p[len])
			break;
	}
}

/* In every command's help the option descriptions start at one column. */
static void help_columns_line_up(void **state)
{
	(void)state;
#define X(verb, needs, summary) check_help_columns(#verb, cmd_##verb##_help);
	PYSTRIB_COMMANDS(X)
#undef X
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
		cmocka_unit_test(global_options_after_the_command),
		cmocka_unit_test(after_double_dash_words_are_operands),
		cmocka_unit_test(globals_cannot_be_hidden),
		cmocka_unit_test(every_command_help_needs_nothing),
		cmocka_unit_test(job_argument_errors_exit_2),
		cmocka_unit_test(usage_errors_say_try_help),
		cmocka_unit_test(help_columns_line_up),
		cmocka_unit_test(no_config_says_where_it_looked),
	};
	return cmocka_run_group_tests(tests, find_bin, free_bin);
}
