/*
 * Unit tests for shquote.c: every quoted vector is run through real shells
 * (/bin/sh, which is dash on Debian, and bash), and what they print back
 * must be the original bytes, with nothing extra run.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "buf.h"
#include "shquote.h"
#include "util.h"

static char tmpdir[] = "/tmp/pystrib-shquote-XXXXXX";
static char *marker;

static const char *const hostile[] = {
	"plain",
	"",
	"two words",
	"  leading and trailing  ",
	"it's",
	"'",
	"''",
	"\"double\"",
	"back\\slash",
	"$HOME",
	"${HOME}",
	"$(touch MARKER)",
	"`touch MARKER`",
	"; touch MARKER",
	"&& touch MARKER #",
	"| touch MARKER",
	"> MARKER",
	"line\nbreak\n",
	"tab\there",
	"*",
	"?",
	"[a-z]",
	"~",
	"~/x",
	"-n",
	"-e",
	"--",
	"A=1",
	"!",
	"#comment",
	"{a,b}",
	"h\xc3\xa9llo \xe2\x9c\x93 \xe6\x97\xa5\xe6\x9c\xac",
	"\xff\xfe\x80 raw bytes",
	"\x01\x02\x1b[31m",
	"'$(touch MARKER)'\"`touch MARKER`\"'",
	NULL,
};

static int setup(void **state)
{
	(void)state;
	assert_non_null(mkdtemp(tmpdir));
	marker = xstrfmt("%s/MARKER", tmpdir);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	unlink(marker);
	rmdir(tmpdir);
	free(marker);
	return 0;
}

/* Runs `shell -c cmd` in tmpdir and collects its stdout. Returns the exit status. */
static int run_shell(const char *shell, const char *cmd, struct buf *out)
{
	int fds[2], status;
	char chunk[4096];
	ssize_t n;

	assert_int_equal(pipe(fds), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		dup2(fds[1], 1);
		close(fds[0]);
		close(fds[1]);
		if (chdir(tmpdir) < 0)
			_exit(126);
		execl(shell, shell, "-c", cmd, (char *)NULL);
		_exit(127);
	}
	close(fds[1]);
	while ((n = read(fds[0], chunk, sizeof(chunk))) > 0)
		assert_int_equal(buf_add(out, chunk, (size_t)n), 0);
	close(fds[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* printf '%s\0' ARGS... must give back exactly ARGS, in every shell. */
static void check_roundtrip(const char *shell, const char *const *argv)
{
	static const char *const head[] = { "printf", "%s\\0", NULL };
	struct buf cmd = BUF_INIT, out = BUF_INIT;

	assert_int_equal(shquote_argv(&cmd, head), 0);
	assert_int_equal(shquote_argv(&cmd, argv), 0);
	assert_int_equal(run_shell(shell, cmd.ptr, &out), 0);

	size_t off = 0;
	for (size_t i = 0; argv[i]; i++) {
		size_t len = strlen(argv[i]);
		assert_true(off + len < out.len + 1);
		if (memcmp(out.ptr + off, argv[i], len) || out.ptr[off + len] != '\0')
			fail_msg("%s: argument %zu came back changed from [%s]", shell, i, argv[i]);
		off += len + 1;
	}
	assert_int_equal(off, out.len);
	assert_int_equal(access(marker, F_OK), -1);	/* nothing extra ran */
	buf_release(&cmd);
	buf_release(&out);
}

static void hostile_arguments_survive_sh(void **state)
{
	(void)state;
	check_roundtrip("/bin/sh", hostile);
	for (size_t i = 0; hostile[i]; i++) {
		const char *one[] = { hostile[i], NULL };
		check_roundtrip("/bin/sh", one);
	}
}

static void hostile_arguments_survive_bash(void **state)
{
	(void)state;
	if (access("/bin/bash", X_OK) < 0)
		skip();
	check_roundtrip("/bin/bash", hostile);
}

static void quoting_forms(void **state)
{
	(void)state;
	struct buf b = BUF_INIT;
	const struct { const char *in, *out; } cases[] = {
		{ "plain", "plain" },
		{ "a/b.c:d,e@f%g+h-i_j", "a/b.c:d,e@f%g+h-i_j" },
		{ "", "''" },
		{ "it's", "'it'\\''s'" },
		{ "A=1", "'A=1'" },		/* never an assignment */
		{ "~", "'~'" },
		{ "a b", "'a b'" },
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		buf_reset(&b);
		assert_int_equal(shquote_arg(&b, cases[i].in), 0);
		assert_string_equal(b.ptr, cases[i].out);
	}
	buf_release(&b);

	const char *argv[] = { "docker", "run", "--rm", "a b", NULL };
	char *s = shquote_command(argv);
	assert_string_equal(s, "docker run --rm 'a b'");
	free(s);
	const char *empty[] = { NULL };
	s = shquote_command(empty);
	assert_string_equal(s, "");
	free(s);
}

static void argv_appends_with_a_space(void **state)
{
	(void)state;
	struct buf b = BUF_INIT;
	const char *argv[] = { "x y", "z", NULL };
	buf_addstr(&b, "cd /tmp &&");
	assert_int_equal(shquote_argv(&b, argv), 0);
	assert_string_equal(b.ptr, "cd /tmp && 'x y' z");
	buf_release(&b);
}

static void caps_leave_the_buffer_unchanged(void **state)
{
	(void)state;
	struct buf b;
	buf_init(&b, 16);
	buf_addstr(&b, "echo");
	const char *argv[] = { "short", "a much longer argument", NULL };
	assert_int_equal(shquote_argv(&b, argv), -1);
	assert_string_equal(b.ptr, "echo");
	assert_int_equal(shquote_arg(&b, "it's quite long here"), -1);
	assert_string_equal(b.ptr, "echo");
	assert_int_equal(shquote_path(&b, "~/a rather long path"), -1);
	assert_string_equal(b.ptr, "echo");
	buf_release(&b);
}

/* "~/..." becomes the remote user's home, the rest stays literal. */
static void home_paths_expand_only_home(void **state)
{
	(void)state;
	const char *paths[] = {
		"~/jobs/a b/it's $(touch MARKER)/`touch MARKER`",
		"~",
		"~/",
		"~/x",
		"~other/x",
		"/abs/path with space",
		"rel/$HOME",
		NULL,
	};
	char *home = xstrfmt("%s/home dir $(touch MARKER)", tmpdir);
	char *old = getenv("HOME") ? xstrdup(getenv("HOME")) : NULL;
	setenv("HOME", home, 1);
	for (size_t i = 0; paths[i]; i++) {
		struct buf cmd = BUF_INIT, out = BUF_INIT;
		char *want;
		buf_addstr(&cmd, "printf '%s\\0'");
		buf_addch(&cmd, ' ');
		assert_int_equal(shquote_path(&cmd, paths[i]), 0);
		assert_int_equal(run_shell("/bin/sh", cmd.ptr, &out), 0);
		if (!strcmp(paths[i], "~"))
			want = xstrdup(home);
		else if (!strncmp(paths[i], "~/", 2))
			want = xstrfmt("%s/%s", home, paths[i] + 2);
		else
			want = xstrdup(paths[i]);
		assert_int_equal(out.len, strlen(want) + 1);
		assert_string_equal(out.ptr, want);
		assert_int_equal(access(marker, F_OK), -1);
		free(want);
		buf_release(&cmd);
		buf_release(&out);
	}
	if (old)
		setenv("HOME", old, 1);
	else
		unsetenv("HOME");
	free(old);
	free(home);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(quoting_forms),
		cmocka_unit_test(argv_appends_with_a_space),
		cmocka_unit_test(caps_leave_the_buffer_unchanged),
		cmocka_unit_test(hostile_arguments_survive_sh),
		cmocka_unit_test(hostile_arguments_survive_bash),
		cmocka_unit_test(home_paths_expand_only_home),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
