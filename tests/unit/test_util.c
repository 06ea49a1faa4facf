/*
 * Unit tests for util.c and strvec.c: atomic file writes (whole, streamed,
 * failing), the cancel flag and the interruptible sleep, string vectors.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "error.h"
#include "strvec.h"
#include "testutil.h"
#include "util.h"

static char *tmp;

static int setup(void **state)
{
	(void)state;
	tmp = test_tmpdir("util");
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	test_tmpdir_remove(tmp);
	return 0;
}

/* How many entries dir has besides . and .. */
static int entries(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int n = 0;
	assert_non_null(d);
	while ((de = readdir(d)))
		n += strcmp(de->d_name, ".") && strcmp(de->d_name, "..");
	closedir(d);
	return n;
}

static char *slurp(const char *path)
{
	struct buf b;
	buf_init(&b, 1 << 20);
	assert_int_equal(buf_read_file(&b, path), 0);
	return buf_detach(&b, NULL);
}

static void write_file_atomic_writes_and_replaces(void **state)
{
	(void)state;
	char *dir = xstrfmt("%s/w", tmp);
	char *path = xstrfmt("%s/f.txt", dir);
	struct stat st;
	char *s;

	assert_int_equal(mkdir_p(dir, 0755), 0);
	assert_int_equal(write_file_atomic(path, "one\n", 4, 0640), 0);
	s = slurp(path);
	assert_string_equal(s, "one\n");
	free(s);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0640);	/* the mode, not mkstemp's 0600 */

	assert_int_equal(write_file_atomic(path, "two", 3, 0600), 0);
	s = slurp(path);
	assert_string_equal(s, "two");
	free(s);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(write_file_atomic(path, "", 0, 0600), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_size, 0);
	assert_int_equal(entries(dir), 1);	/* no temporary left */
	free(path);
	free(dir);
}

static void write_file_atomic_failures_leave_nothing(void **state)
{
	(void)state;
	char *dir = xstrfmt("%s/fail", tmp);
	char *missing = xstrfmt("%s/no/such/dir/f", tmp);
	char *over_dir = xstrfmt("%s/sub", dir);

	/* No directory to put the temporary in. */
	assert_int_equal(write_file_atomic(missing, "x", 1, 0644), -1);
	assert_int_equal(error_kind(), PS_EXIT_IO);
	assert_non_null(strstr(error_message(), missing));
	assert_non_null(strstr(error_message(), strerror(ENOENT)));
	error_clear();

	/* The rename fails (a non-empty directory is in the way): the temporary goes. */
	assert_int_equal(mkdir_p(over_dir, 0755), 0);
	test_sh(over_dir, "touch keep");
	assert_int_equal(write_file_atomic(over_dir, "x", 1, 0644), -1);
	assert_int_equal(error_kind(), PS_EXIT_IO);
	assert_non_null(strstr(error_message(), over_dir));
	error_clear();
	assert_int_equal(entries(dir), 1);	/* only sub/ */
	free(dir);
	free(missing);
	free(over_dir);
}

static void atomic_file_streams_commits_and_aborts(void **state)
{
	(void)state;
	char *dir = xstrfmt("%s/stream", tmp);
	char *path = xstrfmt("%s/out", dir);
	char *named = xstrfmt("%s/by-digest", dir);
	struct atomic_file f = ATOMIC_FILE_INIT;
	char *s;

	atomic_file_abort(&f);	/* nothing open: nothing to do */
	assert_int_equal(mkdir_p(dir, 0755), 0);

	assert_int_equal(atomic_file_open(&f, path, 0644), 0);
	assert_true(f.fd >= 0);
	assert_int_equal(write(f.fd, "abc", 3), 3);
	assert_int_equal(access(path, F_OK), -1);	/* not there until committed */
	assert_int_equal(entries(dir), 1);		/* the temporary */
	atomic_file_abort(&f);
	assert_int_equal(f.fd, -1);
	assert_int_equal(entries(dir), 0);

	assert_int_equal(atomic_file_open(&f, path, 0644), 0);
	assert_int_equal(write(f.fd, "abc", 3), 3);
	assert_int_equal(atomic_file_commit(&f), 0);
	assert_null(f.path);
	atomic_file_abort(&f);	/* after a commit, as under out: */
	s = slurp(path);
	assert_string_equal(s, "abc");
	free(s);

	/* Named once written. */
	assert_int_equal(atomic_file_open(&f, path, 0600), 0);
	assert_int_equal(write(f.fd, "def", 3), 3);
	assert_int_equal(atomic_file_commit_as(&f, named), 0);
	s = slurp(named);
	assert_string_equal(s, "def");
	free(s);
	s = slurp(path);
	assert_string_equal(s, "abc");	/* untouched */
	free(s);
	assert_int_equal(entries(dir), 2);

	/* Committing what is not open is an error, not a crash. */
	assert_int_equal(atomic_file_commit(&f), -1);
	error_clear();
	free(dir);
	free(path);
	free(named);
}

static void interrupt_flag_and_accessors(void **state)
{
	(void)state;
	assert_int_equal(interrupt_clear(), 0);
	assert_int_equal(interrupt_requested(), 0);
	interrupt_set();
	assert_int_equal(interrupt_requested(), 1);
	assert_int_equal(interrupt_clear(), 1);
	assert_int_equal(interrupt_requested(), 0);

	/* The handler main installs sets it. */
	install_interrupt_handler();
	raise(SIGINT);
	assert_int_equal(interrupt_requested(), 1);
	interrupt_clear();
	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
}

static void *interrupt_later(void *arg)
{
	(void)arg;
	struct timespec ts = { 0, 200 * 1000 * 1000 };
	nanosleep(&ts, NULL);
	interrupt_set();
	return NULL;
}

static void sleep_wakes_when_interrupted(void **state)
{
	(void)state;
	pthread_t t;
	double t0 = now_monotonic();

	assert_int_equal(sleep_interruptible(0.05), 0);
	assert_true(now_monotonic() - t0 >= 0.05);
	assert_int_equal(sleep_interruptible(0), 0);
	assert_int_equal(sleep_interruptible(-1), 0);

	interrupt_set();	/* already requested: no sleep at all */
	t0 = now_monotonic();
	assert_int_equal(sleep_interruptible(30), -1);
	assert_int_equal(error_kind(), PS_EXIT_INTERRUPTED);
	assert_string_equal(error_message(), "interrupted");
	assert_true(now_monotonic() - t0 < 1);
	error_clear();
	interrupt_clear();

	/* Requested by another thread, which sends no signal. */
	t0 = now_monotonic();
	assert_int_equal(pthread_create(&t, NULL, interrupt_later, NULL), 0);
	assert_int_equal(sleep_interruptible(30), -1);
	assert_true(now_monotonic() - t0 < 5);
	pthread_join(t, NULL);
	error_clear();
	interrupt_clear();
}

static void strvec_push_sort_detach(void **state)
{
	(void)state;
	struct strvec s = STRVEC_INIT;
	const char *word = "b";
	size_t n;

	assert_non_null(s.v);	/* empty, but walkable */
	assert_null(s.v[0]);
	strvec_sort_uniq(&s);
	strvec_release(&s);

	assert_string_equal(strvec_push(&s, word), "b");
	assert_ptr_not_equal(s.v[0], word);	/* a copy */
	strvec_push_nodup(&s, xstrdup("a"));
	strvec_pushf(&s, "%c", 'b');
	for (int i = 0; i < 40; i++)
		strvec_pushf(&s, "n%02d", i % 20);
	assert_int_equal(s.nr, 43);
	assert_null(s.v[s.nr]);
	strvec_sort_uniq(&s);
	assert_int_equal(s.nr, 22);	/* a, b, n00..n19 */
	assert_string_equal(s.v[0], "a");
	assert_string_equal(s.v[1], "b");
	assert_string_equal(s.v[21], "n19");
	assert_null(s.v[s.nr]);

	char **v = strvec_detach(&s, &n);
	assert_int_equal(n, 22);
	assert_null(v[22]);
	assert_int_equal(s.nr, 0);
	assert_null(s.v[0]);
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);

	v = strvec_detach(&s, &n);	/* empty: still an array of its own */
	assert_int_equal(n, 0);
	assert_null(v[0]);
	free(v);

	strvec_init(&s);
	strvec_push(&s, "x");
	strvec_release(&s);
	assert_int_equal(s.nr, 0);
	assert_null(s.v[0]);
	strvec_push(&s, "reused");
	assert_string_equal(s.v[0], "reused");
	strvec_release(&s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(write_file_atomic_writes_and_replaces),
		cmocka_unit_test(write_file_atomic_failures_leave_nothing),
		cmocka_unit_test(atomic_file_streams_commits_and_aborts),
		cmocka_unit_test(interrupt_flag_and_accessors),
		cmocka_unit_test(sleep_wakes_when_interrupted),
		cmocka_unit_test(strvec_push_sort_detach),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
