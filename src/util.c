#include "util.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "error.h"

/* Only a lock-free atomic may be touched by a signal handler (C11 7.14.1.1). */
_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "atomic_int is not lock-free here");
static atomic_int interrupted;

static void oom(size_t n)
{
	fprintf(stderr, "pystrib: out of memory (allocating %zu bytes)\n", n);
	abort();
}

void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p)
		oom(n);
	return p;
}

void *xcalloc(size_t nmemb, size_t size)
{
	void *p = calloc(nmemb ? nmemb : 1, size ? size : 1);
	if (!p)
		oom(nmemb * size);
	return p;
}

void *xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);
	if (!q)
		oom(n);
	return q;
}

char *xstrdup(const char *s)
{
	return xstrndup(s, strlen(s));
}

char *xstrndup(const char *s, size_t n)
{
	char *p = xmalloc(n + 1);
	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

char *xstrvfmt(const char *fmt, va_list ap)
{
	va_list ap2;
	va_copy(ap2, ap);
	int n = vsnprintf(NULL, 0, fmt, ap2);
	va_end(ap2);
	if (n < 0)
		oom(0);
	char *p = xmalloc((size_t)n + 1);
	vsnprintf(p, (size_t)n + 1, fmt, ap);
	return p;
}

char *xstrfmt(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *p = xstrvfmt(fmt, ap);
	va_end(ap);
	return p;
}

size_t levenshtein(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	size_t *row = xmalloc((lb + 1) * sizeof(*row));
	for (size_t j = 0; j <= lb; j++)
		row[j] = j;
	for (size_t i = 1; i <= la; i++) {
		size_t diag = row[0];
		row[0] = i;
		for (size_t j = 1; j <= lb; j++) {
			size_t up = row[j];
			size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
			size_t best = diag + cost;
			if (up + 1 < best)
				best = up + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			row[j] = best;
			diag = up;
		}
	}
	size_t d = row[lb];
	free(row);
	return d;
}

const char *closest_word(const char *word, const char *const *cands, size_t n)
{
	const char *best = NULL;
	size_t best_d = (size_t)-1;
	for (size_t i = 0; i < n; i++) {
		if (!cands[i])
			continue;
		size_t d = levenshtein(word, cands[i]);
		/* A prefix is a strong hint too ("conf" for "config"). */
		if (strncmp(cands[i], word, strlen(word)) == 0 && strlen(word) >= 3)
			d = d < 2 ? d : 2;
		if (d < best_d) {
			best_d = d;
			best = cands[i];
		}
	}
	size_t limit = strlen(word) / 3 + 1;
	if (limit > 3)
		limit = 3;
	return best_d <= limit ? best : NULL;
}

char *expand_home(const char *path)
{
	if (path[0] == '~' && (path[1] == '/' || path[1] == '\0')) {
		const char *home = getenv("HOME");
		if (!home || !*home)
			home = "/";
		return xstrfmt("%s%s", home, path + 1);
	}
	return xstrdup(path);
}

int parse_long(const char *s, long min, long max, long *out)
{
	char *end;
	if (!s || !*s)
		return -1;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || *end || v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

double now_monotonic(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

double now_wall(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int mkdir_p(const char *dir, unsigned mode)
{
	char *p = xstrdup(dir);
	int ret = -1;
	for (char *s = p + 1; *s; s++) {
		if (*s != '/')
			continue;
		*s = '\0';
		if (mkdir(p, mode) < 0 && errno != EEXIST)
			goto out;
		*s = '/';
	}
	if (mkdir(p, mode) < 0 && errno != EEXIST)
		goto out;
	ret = 0;
out:
	free(p);
	return ret;
}

int interrupt_requested(void)
{
	return atomic_load(&interrupted) != 0;
}

void interrupt_set(void)
{
	atomic_store(&interrupted, 1);
}

int interrupt_clear(void)
{
	return atomic_exchange(&interrupted, 0) != 0;
}

static void on_interrupt(int sig)
{
	(void)sig;
	interrupt_set();
}

void install_interrupt_handler(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_interrupt;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
}

int sleep_interruptible(double secs)
{
	double until = now_monotonic() + secs;

	for (;;) {
		if (interrupt_requested())
			return error_set(PS_EXIT_INTERRUPTED, "interrupted");
		double left = until - now_monotonic();
		if (left <= 0)
			return 0;
		/*
		 * In slices, not one nanosleep: the signal may be delivered to
		 * another thread, and interrupt_set() from a thread sends none.
		 */
		if (left > 0.1)
			left = 0.1;
		struct timespec ts = { 0, (long)(left * 1e9) };
		nanosleep(&ts, NULL);
	}
}

/* ---- atomic file writes ------------------------------------------------- */

static int write_all(int fd, const void *data, size_t len)
{
	const char *p = data;
	while (len) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n == 0) {
			errno = EIO;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

void atomic_file_abort(struct atomic_file *f)
{
	if (f->fd >= 0)
		close(f->fd);
	if (f->tmp)
		unlink(f->tmp);
	free(f->tmp);
	free(f->path);
	f->fd = -1;
	f->tmp = NULL;
	f->path = NULL;
}

int atomic_file_open(struct atomic_file *f, const char *path, unsigned mode)
{
	f->path = xstrdup(path);
	f->tmp = xstrfmt("%s.tmp-XXXXXX", path);
	f->fd = mkstemp(f->tmp);
	if (f->fd < 0) {
		int e = errno;
		free(f->tmp);
		f->tmp = NULL;	/* not ours to remove */
		atomic_file_abort(f);
		return error_set(PS_EXIT_IO, "cannot create '%s.tmp-XXXXXX': %s", path, strerror(e));
	}
	/* mkstemp makes it 0600, whatever the umask. */
	if (fchmod(f->fd, (mode_t)mode) < 0) {
		int e = errno;
		atomic_file_abort(f);
		return error_set(PS_EXIT_IO, "cannot write '%s': %s", path, strerror(e));
	}
	return 0;
}

int atomic_file_commit_as(struct atomic_file *f, const char *path)
{
	int e = 0;

	if (f->fd < 0 || !f->tmp) {
		atomic_file_abort(f);
		return error_set(PS_EXIT_IO, "internal error: committing '%s', which is not open",
				 path);
	}
	/* Without the fsync, a crash after the rename can leave the new name
	 * on empty or partial contents. */
	if (fsync(f->fd) < 0)
		e = errno;
	if (close(f->fd) < 0 && !e)
		e = errno;
	f->fd = -1;
	if (e) {
		error_set(PS_EXIT_IO, "cannot write '%s': %s", path, strerror(e));
		atomic_file_abort(f);
		return -1;
	}
	if (rename(f->tmp, path) < 0) {
		error_set(PS_EXIT_IO, "cannot rename '%s' to '%s': %s", f->tmp, path,
			  strerror(errno));
		atomic_file_abort(f);
		return -1;
	}
	free(f->tmp);
	f->tmp = NULL;
	atomic_file_abort(f);
	return 0;
}

int atomic_file_commit(struct atomic_file *f)
{
	if (!f->path)
		return error_set(PS_EXIT_IO, "internal error: committing a file that is not open");
	char *path = xstrdup(f->path);
	int ret = atomic_file_commit_as(f, path);
	free(path);
	return ret;
}

int write_file_atomic(const char *path, const void *data, size_t len, unsigned mode)
{
	struct atomic_file f = ATOMIC_FILE_INIT;

	if (atomic_file_open(&f, path, mode) < 0)
		return -1;
	if (write_all(f.fd, data, len) < 0) {
		error_set(PS_EXIT_IO, "cannot write '%s': %s", path, strerror(errno));
		atomic_file_abort(&f);
		return -1;
	}
	return atomic_file_commit(&f);
}
