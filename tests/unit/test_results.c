/*
 * Unit tests for results.c: tar streams built here with libarchive, with
 * every kind of hostile entry a job could write (absolute paths, "..",
 * symlinks and hard links that escape, devices, fifos, oversized data),
 * are unpacked into DIR/dest; the files outside it are listed before and
 * after, and must be the same. Both the in-process entry points and the
 * streamed one (a child process) are driven.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "buf.h"
#include "error.h"
#include "results.h"
#include "testutil.h"

static char *tmp;
static char *dest;
static char *outside;	/* a directory beside dest, for escapes to aim at */

struct tarb {
	struct archive *a;
	char *mem;
	size_t size, used;
};

static void tar_begin(struct tarb *t)
{
	t->size = 1 << 20;
	t->mem = malloc(t->size);
	t->a = archive_write_new();
	archive_write_set_format_pax_restricted(t->a);
	assert_int_equal(archive_write_open_memory(t->a, t->mem, t->size, &t->used), ARCHIVE_OK);
}

static void tar_add(struct tarb *t, const char *path, mode_t type, unsigned perm,
		    const char *data, const char *link, const char *hardlink)
{
	struct archive_entry *e = archive_entry_new();
	archive_entry_set_pathname(e, path);
	archive_entry_set_filetype(e, type);
	archive_entry_set_perm(e, perm);
	archive_entry_set_mtime(e, 1700000000, 0);
	if (link)
		archive_entry_set_symlink(e, link);
	if (hardlink)
		archive_entry_set_hardlink(e, hardlink);
	if (type == AE_IFCHR || type == AE_IFBLK)
		archive_entry_set_rdev(e, makedev(1, 3));
	archive_entry_set_size(e, data ? (la_int64_t)strlen(data) : 0);
	assert_int_equal(archive_write_header(t->a, e), ARCHIVE_OK);
	if (data)
		assert_int_equal(archive_write_data(t->a, data, strlen(data)), (la_ssize_t)strlen(data));
	archive_entry_free(e);
}

#define FILE_(t, p, d) tar_add(t, p, AE_IFREG, 0644, d, NULL, NULL)
#define DIR_(t, p) tar_add(t, p, AE_IFDIR, 0755, NULL, NULL, NULL)
#define LINK_(t, p, l) tar_add(t, p, AE_IFLNK, 0777, NULL, l, NULL)
#define HARD_(t, p, h) tar_add(t, p, AE_IFREG, 0644, NULL, NULL, h)

static void tar_end(struct tarb *t)
{
	assert_int_equal(archive_write_close(t->a), ARCHIVE_OK);
	archive_write_free(t->a);
}

/* Every path under tmp but outside dest, one per line, into `list`. */
static struct buf *walk_list;
static int walk_one(const char *path, const struct stat *st, int type, struct FTW *f)
{
	(void)st; (void)type; (void)f;
	if (!strncmp(path, dest, strlen(dest)))
		return 0;
	buf_addf(walk_list, "%s\n", path);
	return 0;
}

static void list_outside(struct buf *out)
{
	buf_reset(out);
	walk_list = out;
	assert_int_equal(nftw(tmp, walk_one, 16, FTW_PHYS), 0);
}

static int setup(void **state)
{
	(void)state;
	tmp = test_tmpdir("results");
	dest = xstrfmt("%s/dest", tmp);
	outside = xstrfmt("%s/outside", tmp);
	test_sh(tmp, "mkdir -p outside && echo secret > outside/victim && echo secret > victim");
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	test_tmpdir_remove(tmp);
	free(dest);
	free(outside);
	return 0;
}

static int reset_dest(void **state)
{
	(void)state;
	test_sh(tmp, "rm -rf dest");
	error_clear();
	return 0;
}

static char *in_dest(const char *rel)
{
	static char path[4096];
	snprintf(path, sizeof(path), "%s/%s", dest, rel);
	return path;
}

static int exists(const char *rel)
{
	struct stat st;
	return lstat(in_dest(rel), &st) == 0;
}

static void assert_content(const char *rel, const char *want)
{
	struct buf b = BUF_INIT;
	assert_int_equal(buf_read_file(&b, in_dest(rel)), 0);
	assert_string_equal(b.ptr, want);
	buf_release(&b);
}

static void test_plain(void **state)
{
	(void)state;
	struct tarb t;
	struct results_stats st;

	tar_begin(&t);
	DIR_(&t, "results");
	FILE_(&t, "results/a.txt", "hello\n");
	DIR_(&t, "results/sub");
	FILE_(&t, "./results/sub/b.bin", "bb");
	LINK_(&t, "results/sub/to_a", "../a.txt");
	HARD_(&t, "results/a.hard", "results/a.txt");
	DIR_(&t, "logs");
	FILE_(&t, "logs/rank.0.out", "out0\n");
	tar_add(&t, "results/setuid", AE_IFREG, 04755, "x", NULL, NULL);
	tar_end(&t);
	assert_int_equal(results_unpack_mem(t.mem, t.used, dest, NULL, &st), 0);
	assert_content("results/a.txt", "hello\n");
	assert_content("results/sub/b.bin", "bb");
	assert_content("results/sub/to_a", "hello\n");
	assert_content("results/a.hard", "hello\n");
	assert_content("logs/rank.0.out", "out0\n");
	struct stat s;
	assert_int_equal(stat(in_dest("results/setuid"), &s), 0);
	assert_int_equal(s.st_mode & 07000, 0);
	assert_int_equal(st.rejected, 0);
	assert_int_equal(st.files, 5);
	assert_int_equal(st.symlinks, 1);
	assert_int_equal(st.dirs, 3);
	assert_int_equal(st.bytes, 6 + 2 + 5 + 1);
	free(t.mem);
}

/* The hostile stream: each entry names what it attempts. */
static void hostile_tar(struct tarb *t, int *nbad)
{
	char *abs_victim = xstrfmt("%s/abs-victim", outside);
	char *abs_dir = xstrfmt("%s", outside);
	int bad = 0;

	tar_begin(t);
	DIR_(t, "results");
	FILE_(t, abs_victim, "pwned"); bad++;
	FILE_(t, "../victim", "pwned"); bad++;
	FILE_(t, "results/../../victim", "pwned"); bad++;
	FILE_(t, "results/../../outside/victim", "pwned"); bad++;
	LINK_(t, "results/abs", abs_dir); bad++;
	FILE_(t, "results/abs/victim", "pwned");	/* abs was refused: a plain dir, inside */
	LINK_(t, "results/up", "../../outside"); bad++;
	FILE_(t, "results/up/victim", "pwned");		/* likewise inside */
	LINK_(t, "results/twisty", "sub/../../../outside"); bad++;
	/* A link that stays inside, then entries through it or over it. */
	DIR_(t, "results/x");
	DIR_(t, "results/x/y");
	LINK_(t, "results/x/y/L", "..");		/* results/x: allowed */
	LINK_(t, "results/M", "x/y/L/../../../outside"); bad++;
	FILE_(t, "results/x/y/L/y/evil", "through"); bad++;
	LINK_(t, "results/dot", "."); 			/* allowed */
	FILE_(t, "results/dot/through", "x"); bad++;
	FILE_(t, "results/dot", "replace"); bad++;
	/* Hard links out, or through a symlink. */
	HARD_(t, "results/h1", "/etc/passwd"); bad++;
	HARD_(t, "results/h2", "../victim"); bad++;
	HARD_(t, "results/h3", "outside/victim"); bad++;	/* no such file in dest */
	FILE_(t, "results/file", "f");
	HARD_(t, "results/h4", "results/dot/file"); bad++;
	HARD_(t, "results/h5", "results/file");		/* allowed */
	/* Special files. */
	tar_add(t, "results/null", AE_IFCHR, 0666, NULL, NULL, NULL); bad++;
	tar_add(t, "results/blk", AE_IFBLK, 0666, NULL, NULL, NULL); bad++;
	tar_add(t, "results/fifo", AE_IFIFO, 0666, NULL, NULL, NULL); bad++;
	FILE_(t, "results/ctl\x1b[31m", "name with a control byte");
	FILE_(t, "logs/rank.0.out", "still here\n");
	tar_end(t);
	free(abs_victim);
	free(abs_dir);
	*nbad = bad;
}

static void check_hostile_outcome(const struct results_stats *st, int nbad,
				  const struct buf *before)
{
	struct buf after = BUF_INIT;
	list_outside(&after);
	assert_string_equal(before->ptr, after.ptr);
	buf_release(&after);
	assert_int_equal(st->rejected, nbad);
	/* Nothing outside changed its content. */
	struct buf b = BUF_INIT;
	char *p = xstrfmt("%s/victim", tmp);
	assert_int_equal(buf_read_file(&b, p), 0);
	assert_string_equal(b.ptr, "secret\n");
	buf_reset(&b);
	free(p);
	p = xstrfmt("%s/victim", outside);
	assert_int_equal(buf_read_file(&b, p), 0);
	assert_string_equal(b.ptr, "secret\n");
	free(p);
	buf_release(&b);
	/* The allowed entries are there, the refused ones are not. */
	assert_content("logs/rank.0.out", "still here\n");
	assert_content("results/abs/victim", "pwned");
	assert_content("results/up/victim", "pwned");
	assert_content("results/h5", "f");
	assert_content("results/dot/file", "f");	/* through the allowed link */
	assert_true(exists("results/x/y/L"));
	assert_false(exists("results/M"));
	assert_false(exists("results/twisty"));
	assert_false(exists("results/null"));
	assert_false(exists("results/blk"));
	assert_false(exists("results/fifo"));
	assert_false(exists("results/h1"));
	assert_false(exists("results/h2"));
	assert_false(exists("results/h3"));
	assert_false(exists("results/h4"));
	assert_false(exists("results/x/evil"));
	assert_false(exists("results/through"));
	struct stat s;
	assert_int_equal(lstat(in_dest("results/dot"), &s), 0);
	assert_true(S_ISLNK(s.st_mode));
	assert_true(exists("results/ctl\x1b[31m"));
}

static void test_hostile_mem(void **state)
{
	(void)state;
	struct tarb t;
	struct results_stats st;
	struct buf before = BUF_INIT;
	int nbad;

	hostile_tar(&t, &nbad);
	list_outside(&before);
	assert_int_equal(results_unpack_mem(t.mem, t.used, dest, NULL, &st), 0);
	check_hostile_outcome(&st, nbad, &before);
	/* Unpacking again over the first copy: still nothing outside. */
	assert_int_equal(results_unpack_mem(t.mem, t.used, dest, NULL, &st), 0);
	check_hostile_outcome(&st, nbad, &before);
	buf_release(&before);
	free(t.mem);
}

static void test_hostile_streamed(void **state)
{
	(void)state;
	struct tarb t;
	struct results_stats st;
	struct results_unpack *u = NULL;
	struct buf before = BUF_INIT;
	char cwd_before[4096], cwd_after[4096];
	int nbad;

	hostile_tar(&t, &nbad);
	list_outside(&before);
	assert_non_null(getcwd(cwd_before, sizeof(cwd_before)));
	assert_int_equal(results_unpack_begin(&u, dest, NULL), 0);
	/* Odd-sized pieces, as a download delivers them. */
	for (size_t off = 0; off < t.used; off += 777) {
		size_t n = t.used - off < 777 ? t.used - off : 777;
		assert_int_equal(results_unpack_write(u, t.mem + off, n), 0);
	}
	assert_int_equal(results_unpack_finish(u, &st), 0);
	assert_non_null(getcwd(cwd_after, sizeof(cwd_after)));
	assert_string_equal(cwd_before, cwd_after);
	check_hostile_outcome(&st, nbad, &before);
	buf_release(&before);
	free(t.mem);
}

static void test_fd(void **state)
{
	(void)state;
	struct tarb t;
	struct results_stats st;
	char *path = xstrfmt("%s/stream.tar", tmp);
	int fd;

	tar_begin(&t);
	FILE_(&t, "results/via-fd", "fd\n");
	tar_end(&t);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, t.mem, t.used), (ssize_t)t.used);
	lseek(fd, 0, SEEK_SET);
	assert_int_equal(results_unpack_fd(fd, dest, NULL, &st), 0);
	close(fd);
	unlink(path);
	assert_content("results/via-fd", "fd\n");
	free(path);
	free(t.mem);
}

static void test_limits(void **state)
{
	(void)state;
	struct tarb t;
	struct results_limits lim = { 10, 100 };
	struct results_unpack *u = NULL;

	tar_begin(&t);
	FILE_(&t, "results/small", "12345");
	FILE_(&t, "results/big", "0123456789abcdef");
	tar_end(&t);
	assert_int_equal(results_unpack_mem(t.mem, t.used, dest, &lim, NULL), -1);
	assert_non_null(strstr(error_message(), "too large"));
	assert_int_equal(error_kind(), PS_EXIT_REMOTE);
	assert_false(exists("results/big"));

	/* The streamed form reports the child's error. */
	error_clear();
	assert_int_equal(results_unpack_begin(&u, dest, &lim), 0);
	results_unpack_write(u, t.mem, t.used);
	assert_int_equal(results_unpack_finish(u, NULL), -1);
	assert_non_null(strstr(error_message(), "too large"));

	/* Entry count. */
	lim.max_bytes = 1000;
	lim.max_entries = 1;
	error_clear();
	assert_int_equal(results_unpack_mem(t.mem, t.used, dest, &lim, NULL), -1);
	assert_non_null(strstr(error_message(), "more than 1 entries"));
	free(t.mem);
}

static void test_empty_and_corrupt(void **state)
{
	(void)state;
	struct results_stats st;
	char zeros[1024] = { 0 };
	static const char garbage[] = "this is not a tar archive, not at all, not even close..........";

	assert_int_equal(results_unpack_mem("", 0, dest, NULL, &st), 0);
	assert_int_equal(st.files + st.dirs + st.rejected, 0);
	assert_int_equal(results_unpack_mem(zeros, sizeof(zeros), dest, NULL, &st), 0);
	assert_int_equal(results_unpack_mem(garbage, sizeof(garbage), dest, NULL, &st), -1);
	assert_non_null(strstr(error_message(), "corrupt"));

	/* A tar cut in the middle of a file: an error, what came before stays. */
	struct tarb t;
	tar_begin(&t);
	FILE_(&t, "results/first", "1");
	FILE_(&t, "results/second", "a longer body that will be cut off in the middle");
	tar_end(&t);
	error_clear();
	assert_int_equal(results_unpack_mem(t.mem, 1024 + 512 + 20, dest, NULL, &st), -1);
	assert_true(exists("results/first"));
	free(t.mem);
}

/* The whole of /proc/PID/environ, NULs as they are. */
static void read_environ(int pid, struct buf *out)
{
	char *path = xstrfmt("/proc/%d/environ", pid);
	buf_reset(out);
	assert_int_equal(buf_read_file(out, path), 0);
	free(path);
}

/*
 * The unpacker forked first: a secret in the environment (password_env)
 * is not in its memory, and every streamed unpack, hostile or cut short,
 * runs in a worker of its and not in this process.
 */
static void test_unpacker(void **state)
{
	(void)state;
	struct tarb t;
	struct results_stats st;
	struct results_unpack *u = NULL;
	struct buf env = BUF_INIT, before = BUF_INIT;
	int nbad;

	assert_int_equal(results_unpacker_start(), 0);
	int pid = results_unpacker_pid();
	assert_true(pid > 0);
	read_environ(pid, &env);
	assert_null(memmem(env.ptr, env.len, "hunter2", 7));
	read_environ(getpid(), &env);
	assert_non_null(memmem(env.ptr, env.len, "hunter2", 7));

	hostile_tar(&t, &nbad);
	list_outside(&before);
	assert_int_equal(results_unpack_begin(&u, dest, NULL), 0);
	for (size_t off = 0; off < t.used; off += 777) {
		size_t n = t.used - off < 777 ? t.used - off : 777;
		assert_int_equal(results_unpack_write(u, t.mem + off, n), 0);
	}
	assert_int_equal(results_unpack_finish(u, &st), 0);
	check_hostile_outcome(&st, nbad, &before);

	/* Cut short: abandoned, then another unpack through the same unpacker. */
	assert_int_equal(results_unpack_begin(&u, dest, NULL), 0);
	assert_int_equal(results_unpack_write(u, t.mem, 700), 0);
	results_unpack_abort(u);
	struct results_limits lim = { 10, 100 };
	assert_int_equal(results_unpack_begin(&u, dest, &lim), 0);
	results_unpack_write(u, t.mem, t.used);
	assert_int_equal(results_unpack_finish(u, NULL), -1);
	assert_non_null(strstr(error_message(), "too large"));
	error_clear();

	results_unpacker_stop();
	assert_int_equal(results_unpacker_pid(), -1);
	assert_int_equal(kill(pid, 0), -1);	/* it exited, and was reaped */
	buf_release(&env);
	buf_release(&before);
	free(t.mem);
}

int main(int argc, char **argv)
{
	/* test_unpacker's secret: in the environment this process began with,
	 * as a password_env variable would be (setenv's are elsewhere). */
	if (!getenv("PYSTRIB_TEST_SECRET")) {
		setenv("PYSTRIB_TEST_SECRET", "hunter2-in-the-environment", 1);
		execv("/proc/self/exe", argv);
		return 1;
	}
	(void)argc;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_plain, reset_dest),
		cmocka_unit_test_setup(test_hostile_mem, reset_dest),
		cmocka_unit_test_setup(test_hostile_streamed, reset_dest),
		cmocka_unit_test_setup(test_fd, reset_dest),
		cmocka_unit_test_setup(test_limits, reset_dest),
		cmocka_unit_test_setup(test_empty_and_corrupt, reset_dest),
		cmocka_unit_test_setup(test_unpacker, reset_dest),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
