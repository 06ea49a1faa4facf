#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "buf.h"
#include "error.h"
#include "log.h"
#include "results.h"
#include "shquote.h"
#include "ssh.h"
#include "strvec.h"
#include "util.h"

/* Deeper paths than this are refused (and never worth unpacking). */
#define MAX_DEPTH 256

struct extract {
	struct archive *out;
	const struct results_limits *lim;
	struct results_stats *st;
	uint64_t entries;
	struct buf path;		/* the entry's normalised path */
	struct strvec symlinks;		/* paths of the symlinks written */
};

/* Untrusted names go to a terminal: control bytes are shown as \xNN. */
static void add_printable(struct buf *b, const char *s)
{
	for (; s && *s; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch < 0x20 || ch == 0x7f)
			buf_addf(b, "\\x%02x", ch);
		else
			buf_addch(b, (char)ch);
	}
}

static void reject(struct extract *x, const char *name, const char *why)
{
	struct buf msg;
	buf_init(&msg, 8192);
	buf_addstr(&msg, "results: skipped '");
	add_printable(&msg, name ? name : "(no name)");
	buf_addf(&msg, "': %s", why);
	log_warn("%s", msg.ptr);
	event_emit("warning", "{s:s}", "message", msg.ptr);
	buf_release(&msg);
	x->st->rejected++;
}

/*
 * Normalises a relative archive path into out: "./" prefixes, "." and
 * empty components dropped. NULL, or why the path is refused. An empty
 * result (the archive's root) gives "" in out and NULL.
 */
static const char *normalise(const char *name, struct buf *out, size_t *depth)
{
	const char *p = name, *end;
	size_t n = 0;

	buf_reset(out);
	if (!name || !*name)
		return "empty name";
	if (*name == '/')
		return "absolute path";
	while (*p) {
		end = strchrnul(p, '/');
		size_t len = (size_t)(end - p);
		if (len == 2 && p[0] == '.' && p[1] == '.')
			return "path contains '..'";
		if (len && !(len == 1 && p[0] == '.')) {
			if (++n > MAX_DEPTH)
				return "path too deep";
			if ((out->len && buf_addch(out, '/') < 0) || buf_add(out, p, len) < 0)
				return "path too long";
		}
		p = *end ? end + 1 : end;
	}
	*depth = n;
	return NULL;
}

/*
 * A symlink at a path of `depth` components may point to "../"*k followed
 * by a path without "..", with k < depth: it then stays inside, whatever
 * the other symlinks it goes through (each obeys the same rule, from a
 * real directory). NULL, or why it is refused.
 */
static const char *check_symlink(const char *target, size_t depth)
{
	const char *p = target, *end;
	size_t up = 0;
	int seen_name = 0;

	if (!target || !*target)
		return "symlink without a target";
	if (*target == '/')
		return "symlink to an absolute path";
	while (*p) {
		end = strchrnul(p, '/');
		size_t len = (size_t)(end - p);
		if (len == 2 && p[0] == '.' && p[1] == '.') {
			if (seen_name)
				return "symlink with '..' after a name";
			up++;
		} else if (len && !(len == 1 && p[0] == '.')) {
			seen_name = 1;
		}
		p = *end ? end + 1 : end;
	}
	if (up >= depth)
		return "symlink pointing outside the results";
	return NULL;
}

static int is_symlink_of_stream(const struct extract *x, const char *path, size_t len)
{
	for (size_t i = 0; i < x->symlinks.nr; i++)
		if (strlen(x->symlinks.v[i]) == len && !memcmp(x->symlinks.v[i], path, len))
			return 1;
	return 0;
}

/*
 * Whether path, or a parent of it, is a symlink (on disk, relative to the
 * working directory, or written by this stream). `whole` includes path
 * itself. NULL or why.
 */
static const char *through_symlink(const struct extract *x, const char *path, int whole)
{
	struct stat st;
	size_t len = strlen(path);
	char *copy = xstrdup(path);
	const char *why = NULL;

	for (size_t i = 0; i <= len && !why; i++) {
		if (i < len && copy[i] != '/')
			continue;
		if (i == len && !whole)
			break;
		copy[i] = '\0';
		if (is_symlink_of_stream(x, copy, i) ||
		    (lstat(copy, &st) == 0 && S_ISLNK(st.st_mode)))
			why = "path goes through a symlink";
		copy[i] = i < len ? '/' : '\0';
	}
	free(copy);
	return why;
}

static const char *check_hardlink(const struct extract *x, const char *target)
{
	struct buf norm = BUF_INIT;
	struct stat st;
	const char *why;
	size_t depth;

	why = normalise(target, &norm, &depth);
	if (why)
		why = *target == '/' ? "hard link to an absolute path"
				     : "hard link target contains '..'";
	else if (!norm.len)
		why = "hard link to the results directory";
	else if (through_symlink(x, norm.ptr, 1))
		why = "hard link through a symlink";
	else if (lstat(norm.ptr, &st) < 0 || !S_ISREG(st.st_mode))
		why = "hard link to something that is not a file of the results";
	buf_release(&norm);
	return why;
}

static int too_large(const struct extract *x, const char *what)
{
	error_set(PS_EXIT_REMOTE, "results too large: more than %llu %s",
		  (unsigned long long)(strcmp(what, "entries") ? x->lim->max_bytes
							       : x->lim->max_entries), what);
	return error_hint("the job wrote more than pystrib fetches; fetch part of it with ssh, "
			  "or remove what is not needed from its results/");
}

/* Copies the entry's data; 0, 1 (entry failed, skipped) or -1 (fatal). */
static int copy_data(struct extract *x, struct archive *in, const char *name)
{
	const void *block;
	size_t size;
	la_int64_t offset;
	int r;

	for (;;) {
		if (interrupt_requested())
			return error_set(PS_EXIT_INTERRUPTED, "interrupted");
		r = archive_read_data_block(in, &block, &size, &offset);
		if (r == ARCHIVE_EOF)
			return 0;
		if (r < ARCHIVE_WARN)
			return error_set(PS_EXIT_REMOTE, "results stream is corrupt: %s",
					 archive_error_string(in));
		if (size > x->lim->max_bytes - x->st->bytes)
			return too_large(x, "bytes");
		x->st->bytes += size;
		if (archive_write_data_block(x->out, block, size, offset) < ARCHIVE_WARN) {
			reject(x, name, archive_error_string(x->out));
			return 1;
		}
	}
}

static const char *check_entry(struct extract *x, struct archive_entry *e, size_t *depth)
{
	const char *why = normalise(archive_entry_pathname(e), &x->path, depth);
	const char *link;
	mode_t type = archive_entry_filetype(e);

	if (why)
		return why;
	if (!x->path.len)
		return "";	/* the root itself: nothing to do */
	if ((link = archive_entry_hardlink(e)))
		return check_hardlink(x, link);
	switch (type) {
	case AE_IFREG:
	case AE_IFDIR:
		break;
	case AE_IFLNK:
		if ((why = check_symlink(archive_entry_symlink(e), *depth)))
			return why;
		break;
	case AE_IFCHR: return "character device";
	case AE_IFBLK: return "block device";
	case AE_IFIFO: return "fifo";
	case AE_IFSOCK: return "socket";
	default: return "unknown file type";
	}
	if ((why = through_symlink(x, x->path.ptr, 0)))
		return why;
	/* A directory or file over a symlink of this stream would follow it later. */
	if (is_symlink_of_stream(x, x->path.ptr, x->path.len))
		return "replaces a symlink of the results";
	return NULL;
}

/* One entry; 0 (written or skipped) or -1 (fatal). */
static int extract_entry(struct extract *x, struct archive *in, struct archive_entry *e)
{
	char *name = xstrdup(archive_entry_pathname(e) ? archive_entry_pathname(e) : "");
	const char *why;
	mode_t type = archive_entry_filetype(e);
	size_t depth = 0;
	int r, ret = -1;

	why = check_entry(x, e, &depth);
	if (why) {
		if (*why)
			reject(x, name, why);
		ret = 0;
		goto out;
	}
	if (archive_entry_size_is_set(e) && archive_entry_size(e) > 0 &&
	    (uint64_t)archive_entry_size(e) > x->lim->max_bytes - x->st->bytes) {
		too_large(x, "bytes");
		goto out;
	}
	archive_entry_set_pathname(e, x->path.ptr);
	if (archive_entry_hardlink(e)) {
		struct buf norm = BUF_INIT;
		size_t d;
		normalise(archive_entry_hardlink(e), &norm, &d);
		archive_entry_set_hardlink(e, norm.ptr);
		buf_release(&norm);
	}
	/* Never set-id, sticky or unreadable to the user who fetched it. */
	archive_entry_set_perm(e, (archive_entry_perm(e) & 0777) |
			       (type == AE_IFDIR ? 0700 : 0600));
	archive_entry_set_uid(e, getuid());
	archive_entry_set_gid(e, getgid());
	r = archive_write_header(x->out, e);
	if (r < ARCHIVE_WARN) {
		if (r == ARCHIVE_FATAL) {
			error_set(PS_EXIT_IO, "cannot unpack results: %s",
				  archive_error_string(x->out));
			goto out;
		}
		reject(x, name, archive_error_string(x->out));
		ret = 0;
		goto out;
	}
	if (type == AE_IFLNK && !archive_entry_hardlink(e)) {
		strvec_push(&x->symlinks, x->path.ptr);
		x->st->symlinks++;
	} else if (type == AE_IFDIR) {
		x->st->dirs++;
	} else {
		x->st->files++;
	}
	if (archive_entry_size(e) > 0 && (r = copy_data(x, in, name)) != 0) {
		ret = r > 0 ? 0 : -1;
		goto out;
	}
	if (archive_write_finish_entry(x->out) < ARCHIVE_WARN)
		reject(x, name, archive_error_string(x->out));
	ret = 0;
out:
	free(name);
	return ret;
}

/* Unpacks `in` (opened) into the working directory. 0 or -1. */
static int extract_here(struct archive *in, const struct results_limits *lim,
			struct results_stats *st)
{
	struct extract x = { 0 };
	struct archive_entry *e;
	int r, ret = -1;

	x.lim = lim;
	x.st = st;
	strvec_init(&x.symlinks);
	buf_init(&x.path, 64 << 10);
	x.out = archive_write_disk_new();
	archive_write_disk_set_options(x.out, ARCHIVE_EXTRACT_SECURE_SYMLINKS |
				       ARCHIVE_EXTRACT_SECURE_NODOTDOT |
				       ARCHIVE_EXTRACT_SECURE_NOABSOLUTEPATHS |
				       ARCHIVE_EXTRACT_TIME);
	for (;;) {
		if (interrupt_requested()) {
			error_set(PS_EXIT_INTERRUPTED, "interrupted");
			goto out;
		}
		r = archive_read_next_header(in, &e);
		if (r == ARCHIVE_EOF)
			break;
		if (r < ARCHIVE_WARN) {
			error_set(PS_EXIT_REMOTE, "results stream is corrupt: %s",
				  archive_error_string(in));
			goto out;
		}
		if (++x.entries > lim->max_entries) {
			too_large(&x, "entries");
			goto out;
		}
		if (extract_entry(&x, in, e) < 0)
			goto out;
	}
	ret = 0;
out:
	if (archive_write_close(x.out) < ARCHIVE_WARN && ret == 0)
		ret = error_set(PS_EXIT_IO, "cannot unpack results: %s",
				archive_error_string(x.out));
	archive_write_free(x.out);
	strvec_release(&x.symlinks);
	buf_release(&x.path);
	return ret;
}

/* Where the tar comes from: memory or a file descriptor, bytes counted. */
struct source {
	const char *mem;
	size_t len, off;
	int fd;
	uint64_t seen;
	char block[64 << 10];
};

static la_ssize_t read_source(struct archive *a, void *ctx, const void **out)
{
	struct source *s = ctx;
	ssize_t n;

	if (s->mem) {
		n = (ssize_t)(s->len - s->off < sizeof(s->block) ? s->len - s->off : sizeof(s->block));
		*out = s->mem + s->off;
		s->off += (size_t)n;
	} else {
		do
			n = read(s->fd, s->block, sizeof(s->block));
		while (n < 0 && errno == EINTR && !interrupt_requested());
		if (n < 0) {
			archive_set_error(a, errno, "read: %s", strerror(errno));
			return -1;
		}
		*out = s->block;
	}
	s->seen += (uint64_t)n;
	return n;
}

static int unpack_in(struct source *src, const char *dest,
		     const struct results_limits *lim, struct results_stats *stats)
{
	static const struct results_limits defaults = RESULTS_LIMITS_INIT;
	struct results_stats st = { 0 };
	struct archive *in = NULL;
	int cwd = -1, ret = -1;

	if (mkdir_p(dest, 0755) < 0) {
		error_set(PS_EXIT_IO, "cannot create results directory '%s': %s", dest,
			  strerror(errno));
		goto out;
	}
	cwd = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (cwd < 0) {
		error_set(PS_EXIT_IO, "cannot open the working directory: %s", strerror(errno));
		goto out;
	}
	if (chdir(dest) < 0) {
		error_set(PS_EXIT_IO, "cannot enter results directory '%s': %s", dest,
			  strerror(errno));
		goto out;
	}
	in = archive_read_new();
	archive_read_support_format_tar(in);
	archive_read_support_format_gnutar(in);
	if (archive_read_open(in, src, NULL, read_source, NULL) < ARCHIVE_WARN) {
		/* An empty stream fails to open: it holds nothing. */
		if (src->seen)
			error_set(PS_EXIT_REMOTE, "results stream is corrupt: %s",
				  archive_error_string(in));
		else
			ret = 0;
	} else {
		ret = extract_here(in, lim ? lim : &defaults, &st);
	}
	if (fchdir(cwd) < 0 && ret == 0)
		ret = error_set(PS_EXIT_IO, "cannot return to the working directory: %s",
				strerror(errno));
	if (ret == 0 && stats)
		*stats = st;
out:
	if (in)
		archive_read_free(in);
	if (cwd >= 0)
		close(cwd);
	return ret;
}

int results_unpack_mem(const void *data, size_t len, const char *dest,
		       const struct results_limits *lim, struct results_stats *stats)
{
	struct source *src = xcalloc(1, sizeof(*src));
	int ret;

	src->mem = data ? data : "";
	src->len = len;
	src->fd = -1;
	ret = unpack_in(src, dest, lim, stats);
	free(src);
	return ret;
}

int results_unpack_fd(int fd, const char *dest,
		      const struct results_limits *lim, struct results_stats *stats)
{
	struct source *src = xcalloc(1, sizeof(*src));
	int ret;

	src->fd = fd;
	ret = unpack_in(src, dest, lim, stats);
	free(src);
	return ret;
}

/* What the unpacking child sends back. */
struct report {
	int ret;
	int kind;
	struct results_stats stats;
	char message[2048];
	char hint[1024];
};

struct results_unpack {
	pid_t pid;
	int data;		/* our end of the stream socket */
	int report;		/* read end of the report pipe */
	int failed;
};

static void copy_text(char *dst, size_t size, const char *src)
{
	snprintf(dst, size, "%s", src ? src : "");
}

static void child(int data, int report, const char *dest, const struct results_limits *lim)
{
	struct report rep;
	size_t off = 0;

	memset(&rep, 0, sizeof(rep));
	rep.ret = results_unpack_fd(data, dest, lim, &rep.stats);
	if (rep.ret < 0) {
		rep.kind = error_kind();
		copy_text(rep.message, sizeof(rep.message), error_message());
		copy_text(rep.hint, sizeof(rep.hint), error_hint_text());
	}
	while (off < sizeof(rep)) {
		ssize_t n = write(report, (char *)&rep + off, sizeof(rep) - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		off += (size_t)n;
	}
	fflush(stdout);
	fflush(stderr);
	_exit(0);
}

/*
 * The unpacker: a process forked before this one read any credential (the
 * registry password, a token), which forks one worker per tar stream.
 * Untrusted bytes from the remote host are then parsed only by processes
 * whose memory never held a secret: acme-client keeps its parsers away
 * from its keys the same way. Each request carries the destination, the
 * limits and, as SCM_RIGHTS, the stream socket and the report pipe.
 */
struct unpack_request {
	struct results_limits lim;
	char dest[4096];
};

static int unpacker_fd = -1;
static pid_t unpacker_pid = -1;

/* The environment may hold a password (password_env): not in this copy. */
static void forget_environment(void)
{
	extern char **environ;
	for (char **e = environ; e && *e; e++)
		memset(*e, 0, strlen(*e));
	clearenv();
}

static int recv_request(int fd, struct unpack_request *req, int fds[2])
{
	char control[CMSG_SPACE(2 * sizeof(int))];
	struct iovec iov = { req, sizeof(*req) };
	struct msghdr msg = { 0 };
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	msg.msg_control = control;
	msg.msg_controllen = sizeof(control);
	ssize_t n;
	while ((n = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC)) < 0 && errno == EINTR)
		;
	struct cmsghdr *c = n > 0 ? CMSG_FIRSTHDR(&msg) : NULL;
	if (n != (ssize_t)sizeof(*req) || !c || c->cmsg_type != SCM_RIGHTS ||
	    c->cmsg_len != CMSG_LEN(2 * sizeof(int)))
		return -1;
	memcpy(fds, CMSG_DATA(c), 2 * sizeof(int));
	req->dest[sizeof(req->dest) - 1] = '\0';
	return 0;
}

static void unpacker_main(int fd)
{
	struct sigaction sa = { 0 };
	struct unpack_request req;
	int fds[2];

	forget_environment();
	/* Workers are reaped by the kernel; Ctrl-C is the parent's to handle. */
	sa.sa_handler = SIG_IGN;
	sa.sa_flags = SA_NOCLDWAIT;
	sigaction(SIGCHLD, &sa, NULL);
	signal(SIGINT, SIG_IGN);
	if (send(fd, "r", 1, MSG_NOSIGNAL) != 1)
		_exit(1);
	while (recv_request(fd, &req, fds) == 0) {
		pid_t pid = fork();
		if (pid == 0) {
			close(fd);
			signal(SIGINT, SIG_DFL);
			child(fds[0], fds[1], req.dest, &req.lim);
		}
		/* A failed fork: the closed pipe tells the parent so. */
		close(fds[0]);
		close(fds[1]);
	}
	_exit(0);
}

int results_unpacker_start(void)
{
	int sv[2];
	if (unpacker_fd >= 0)
		return 0;
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return error_set(PS_EXIT_IO, "cannot start the results unpacker: %s",
				 strerror(errno));
	fflush(stdout);
	fflush(stderr);
	pid_t pid = fork();
	if (pid < 0) {
		close(sv[0]);
		close(sv[1]);
		return error_set(PS_EXIT_IO, "cannot start the results unpacker: fork: %s",
				 strerror(errno));
	}
	if (pid == 0) {
		close(sv[0]);
		unpacker_main(sv[1]);
	}
	close(sv[1]);
	unpacker_fd = sv[0];
	unpacker_pid = pid;
	/* Ready once its copy of the environment is gone. */
	char ready;
	ssize_t n;
	while ((n = recv(unpacker_fd, &ready, 1, 0)) < 0 && errno == EINTR)
		;
	if (n != 1) {
		results_unpacker_stop();
		return error_set(PS_EXIT_IO, "cannot start the results unpacker: it ended at once");
	}
	return 0;
}

void results_unpacker_stop(void)
{
	if (unpacker_fd < 0)
		return;
	close(unpacker_fd);	/* its recvmsg sees the end: it exits */
	while (waitpid(unpacker_pid, NULL, 0) < 0 && errno == EINTR)
		;
	unpacker_fd = -1;
	unpacker_pid = -1;
}

int results_unpacker_pid(void)
{
	return (int)unpacker_pid;
}

/* Hands the stream's ends to the unpacker, which starts a worker on them. */
static int send_request(const char *dest, const struct results_limits *lim, int data,
			int report)
{
	struct unpack_request req;
	char control[CMSG_SPACE(2 * sizeof(int))];
	int fds[2] = { data, report };

	memset(&req, 0, sizeof(req));
	memset(control, 0, sizeof(control));
	req.lim = *lim;
	if (strlen(dest) >= sizeof(req.dest))
		return error_set(PS_EXIT_USAGE, "the results directory '%s' is too long", dest);
	memcpy(req.dest, dest, strlen(dest) + 1);
	struct iovec iov = { &req, sizeof(req) };
	struct msghdr msg = { 0 };
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	msg.msg_control = control;
	msg.msg_controllen = sizeof(control);
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(fds));
	memcpy(CMSG_DATA(c), fds, sizeof(fds));
	ssize_t n;
	while ((n = sendmsg(unpacker_fd, &msg, MSG_NOSIGNAL)) < 0 && errno == EINTR)
		;
	if (n != (ssize_t)sizeof(req))
		return error_set(PS_EXIT_IO, "cannot start unpacking results: the unpacker is gone");
	return 0;
}

int results_unpack_begin(struct results_unpack **out, const char *dest,
			 const struct results_limits *lim)
{
	static const struct results_limits defaults = RESULTS_LIMITS_INIT;
	int sv[2] = { -1, -1 }, rp[2] = { -1, -1 };
	struct results_unpack *u;
	pid_t pid;

	if (mkdir_p(dest, 0755) < 0)
		return error_set(PS_EXIT_IO, "cannot create results directory '%s': %s", dest,
				 strerror(errno));
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0 ||
	    pipe2(rp, O_CLOEXEC) < 0) {
		error_set(PS_EXIT_IO, "cannot start unpacking results: %s", strerror(errno));
		goto fail;
	}
	if (unpacker_fd >= 0) {
		if (send_request(dest, lim ? lim : &defaults, sv[1], rp[1]) < 0)
			goto fail;
		pid = -1;	/* the unpacker's worker, not a child of ours */
		goto started;
	}
	/* What is buffered must not be written twice, by both processes. */
	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid < 0) {
		error_set(PS_EXIT_IO, "cannot start unpacking results: fork: %s", strerror(errno));
		goto fail;
	}
	if (pid == 0) {
		close(sv[0]);
		close(rp[0]);
		child(sv[1], rp[1], dest, lim ? lim : &defaults);
	}
started:
	close(sv[1]);
	close(rp[1]);
	u = xcalloc(1, sizeof(*u));
	u->pid = pid;
	u->data = sv[0];
	u->report = rp[0];
	*out = u;
	return 0;
fail:
	for (int i = 0; i < 2; i++) {
		if (sv[i] >= 0)
			close(sv[i]);
		if (rp[i] >= 0)
			close(rp[i]);
	}
	return -1;
}

int results_unpack_write(struct results_unpack *u, const void *data, size_t len)
{
	const char *p = data;

	while (len && !u->failed) {
		ssize_t n = send(u->data, p, len, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR && !interrupt_requested())
			continue;
		if (n <= 0) {
			u->failed = 1;
			break;
		}
		p += n;
		len -= (size_t)n;
	}
	if (u->failed)
		return error_set(PS_EXIT_REMOTE, "unpacking the results stopped");
	return 0;
}

static void free_unpack(struct results_unpack *u)
{
	if (u->data >= 0)
		close(u->data);
	if (u->report >= 0)
		close(u->report);
	free(u);
}

int results_unpack_finish(struct results_unpack *u, struct results_stats *stats)
{
	struct report rep;
	size_t off = 0;
	int status = 0, ret = -1;

	if (!u)
		return error_set(PS_EXIT_USAGE, "internal error: no results unpacking to finish");
	close(u->data);		/* end of stream */
	u->data = -1;
	memset(&rep, 0, sizeof(rep));
	while (off < sizeof(rep)) {
		ssize_t n = read(u->report, (char *)&rep + off, sizeof(rep) - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		off += (size_t)n;
	}
	while (u->pid > 0 && waitpid(u->pid, &status, 0) < 0 && errno == EINTR)
		;
	if (off != sizeof(rep) && u->pid < 0) {
		error_set(PS_EXIT_IO, "unpacking the results failed (the unpacker ended early)");
	} else if (off != sizeof(rep)) {
		error_set(PS_EXIT_REMOTE, "unpacking the results failed (%s %d)",
			  WIFSIGNALED(status) ? "signal" : "exit status",
			  WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
	} else if (rep.ret < 0) {
		rep.message[sizeof(rep.message) - 1] = '\0';
		rep.hint[sizeof(rep.hint) - 1] = '\0';
		error_set((enum ps_exit)rep.kind, "%s", rep.message);
		if (rep.hint[0])
			error_hint("%s", rep.hint);
	} else {
		if (stats)
			*stats = rep.stats;
		ret = 0;
	}
	free_unpack(u);
	return ret;
}

void results_unpack_abort(struct results_unpack *u)
{
	if (!u)
		return;
	if (u->pid > 0) {
		kill(u->pid, SIGKILL);
		while (waitpid(u->pid, NULL, 0) < 0 && errno == EINTR)
			;
	} else {
		/* The worker sees its stream cut, reports a failure nobody reads
		 * and ends; the unpacker's kernel reaps it. */
		shutdown(u->data, SHUT_RDWR);
	}
	free_unpack(u);
}

static int write_chunk(void *ctx, const void *data, size_t len)
{
	return results_unpack_write(ctx, data, len);
}

/* After a failed download: is the job directory still there? 1, 0, or -1 (unknown). */
static int jobdir_exists(struct ssh_conn *c, const char *jobdir)
{
	struct buf cmd = BUF_INIT;
	int status = -1, r;

	buf_addstr(&cmd, "test -d ");
	shquote_path(&cmd, jobdir);
	r = ssh_conn_capture(c, cmd.ptr, NULL, 0, NULL, NULL, &status);
	buf_release(&cmd);
	if (r < 0) {
		error_clear();
		return -1;
	}
	return status == 0;
}

int results_fetch(struct ssh_conn *c, const char *jobdir, const char *dest,
		  const struct results_limits *lim, struct results_stats *stats)
{
	struct results_unpack *u = NULL;
	struct buf cmd = BUF_INIT;
	int r;

	/*
	 * --ignore-failed-read: a job that never made results/ still has its
	 * logs. Status 1 is GNU tar's "file changed as we read it": the logs
	 * of a running job grow, and what was read is still good.
	 */
	buf_addstr(&cmd, "tar -C ");
	shquote_path(&cmd, jobdir);
	buf_addstr(&cmd, " --ignore-failed-read -cf - results logs || [ $? -eq 1 ]");
	if (cmd.toobig) {
		buf_release(&cmd);
		return error_set(PS_EXIT_USAGE, "job directory name too long");
	}
	if (results_unpack_begin(&u, dest, lim) < 0) {
		buf_release(&cmd);
		return SSH_R_FAILED;
	}
	r = ssh_conn_download(c, cmd.ptr, "tar", write_chunk, u);
	buf_release(&cmd);
	if (r < 0) {
		if (u->failed) {
			/* The unpacking failed first: its error is the one to show. */
			results_unpack_finish(u, NULL);
			return SSH_R_FAILED;
		}
		results_unpack_abort(u);
		if (r != SSH_R_DROPPED && r != SSH_R_INTERRUPTED && r != SSH_R_TIMEOUT &&
		    jobdir_exists(c, jobdir) == 0) {
			error_set(PS_EXIT_REMOTE, "no job directory '%s' on '%s'", jobdir,
				  ssh_conn_name(c));
			error_hint("it was removed on the remote host; its results are gone");
		}
		return r;
	}
	if (results_unpack_finish(u, stats) < 0)
		return SSH_R_FAILED;
	event_emit("results", "{s:s}", "path", dest);
	return 0;
}

int results_fetch_retry(struct ssh_conn *c, const char *jobdir, const char *dest,
			const struct results_limits *lim, struct results_stats *stats,
			int reconnect_timeout)
{
	int limit = reconnect_timeout > 0 ? reconnect_timeout : 600;
	double until = 0, wait = 0.5;
	int r = results_fetch(c, jobdir, dest, lim, stats);

	while (r == SSH_R_DROPPED) {
		if (!until) {
			until = now_monotonic() + limit;
			fprintf(stderr, "pystrib: %s; reconnecting to '%s' (for up to %d s)\n",
				error_message(), ssh_conn_name(c), limit);
		}
		if (now_monotonic() + wait > until) {
			error_wrap("gave up reconnecting after %d s", limit);
			return SSH_R_DROPPED;
		}
		error_clear();
		if (sleep_interruptible(wait) < 0)
			return SSH_R_INTERRUPTED;
		wait = wait * 2 > 10 ? 10 : wait * 2;
		r = ssh_conn_reconnect(c);
		if (r == 0) {
			fprintf(stderr, "pystrib: reconnected to '%s'\n", ssh_conn_name(c));
			r = results_fetch(c, jobdir, dest, lim, stats);
		} else if (r == SSH_R_UNREACHABLE) {
			r = SSH_R_DROPPED;	/* not back yet: try again */
		}
	}
	return r;
}
