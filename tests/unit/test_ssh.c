/*
 * Tests for ssh.c against a real OpenSSH sshd, started here on a free
 * loopback port with keys generated in a temporary directory, and stopped
 * in teardown. $HOME points into that directory, so ~/.ssh is the test's
 * own. Skipped when /usr/sbin/sshd is not installed.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "buf.h"
#include "error.h"
#include "shquote.h"
#include "ssh.h"
#include "testutil.h"
#include "util.h"

static char dir[] = "/tmp/pystrib-ssh-XXXXXX";
static int port;
static pid_t sshd_pid, agent_pid;
static char *known_hosts, *user_key;

/* ---- the sshd fixture ---------------------------------------------- */

static void sh(const char *fmt, ...) PRINTF_LIKE(1, 2);
static void sh(const char *fmt, ...)
{
	struct buf cmd = BUF_INIT;
	va_list ap;
	va_start(ap, fmt);
	buf_vaddf(&cmd, fmt, ap);
	va_end(ap);
	if (system(cmd.ptr) != 0)
		fail_msg("command failed: %s", cmd.ptr);
	buf_release(&cmd);
}

static char *slurp(const char *path)
{
	struct buf b = BUF_INIT;
	if (buf_read_file(&b, path) < 0) {
		buf_release(&b);
		return NULL;
	}
	return buf_detach(&b, NULL);
}

static void start_sshd(void)
{
	sh("mkdir -p /run/sshd");
	char *cfg = xstrfmt("%s/sshd_config", dir);
	FILE *f = fopen(cfg, "w");
	assert_non_null(f);
	fprintf(f, "Port %d\nListenAddress 127.0.0.1\nHostKey %s/host_key\n"
		"AuthorizedKeysFile %s/authorized_keys\nPasswordAuthentication no\n"
		"KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n"
		"StrictModes no\nUsePAM no\nPidFile %s/sshd.pid\n"
		"SetEnv HOME=%s/rhome PATH=/usr/bin:/bin:/usr/sbin:/sbin\n",
		port, dir, dir, dir, dir);
	fclose(f);
	sshd_pid = fork();
	assert_true(sshd_pid >= 0);
	if (sshd_pid == 0) {
		char *log = xstrfmt("%s/sshd.log", dir);
		execl("/usr/sbin/sshd", "/usr/sbin/sshd", "-D", "-f", cfg, "-E", log, (char *)NULL);
		_exit(127);
	}
	free(cfg);
	for (int i = 0; i < 100 && !test_port_open(port); i++)
		usleep(50000);
	assert_true(test_port_open(port));
}

static void stop_sshd(void)
{
	if (sshd_pid > 0) {
		kill(sshd_pid, SIGTERM);
		waitpid(sshd_pid, NULL, 0);
		sshd_pid = 0;
	}
}

static void write_known_hosts(void)
{
	char *pub = xstrfmt("%s/host_key.pub", dir), *key = slurp(pub);
	assert_non_null(key);
	char *sp = strchr(key, ' ');
	sp = sp ? strchr(sp + 1, ' ') : NULL;	/* drop the comment */
	if (sp)
		*sp = '\0';
	FILE *f = fopen(known_hosts, "w");
	fprintf(f, "[127.0.0.1]:%d %s\n", port, key);
	fclose(f);
	free(key);
	free(pub);
}

static int setup(void **state)
{
	(void)state;
	if (access("/usr/sbin/sshd", X_OK) < 0)
		return 0;
	assert_non_null(mkdtemp(dir));
	sh("mkdir -p %s/home/.ssh %s/rhome %s/work", dir, dir, dir);
	sh("ssh-keygen -q -t ed25519 -N '' -C host -f %s/host_key", dir);
	sh("ssh-keygen -q -t ed25519 -N '' -C user -f %s/user_key", dir);
	sh("ssh-keygen -q -t ed25519 -N '' -C other -f %s/other_key", dir);
	sh("cp %s/user_key.pub %s/authorized_keys", dir, dir);
	known_hosts = xstrfmt("%s/known_hosts", dir);
	user_key = xstrfmt("%s/user_key", dir);
	port = test_free_port();
	write_known_hosts();
	char *home = xstrfmt("%s/home", dir);
	setenv("HOME", home, 1);
	free(home);
	unsetenv("SSH_AUTH_SOCK");
	start_sshd();
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	stop_sshd();
	if (agent_pid > 0)
		kill(agent_pid, SIGTERM);
	if (known_hosts)
		sh("umount %s/small 2>/dev/null; rm -rf %s", dir, dir);
	free(known_hosts);
	free(user_key);
	return 0;
}

static void need_sshd(void)
{
	if (!known_hosts)
		skip();
}

static void target(struct ssh_target *t)
{
	memset(t, 0, sizeof(*t));
	t->host = xstrdup("127.0.0.1");
	t->port = port;
	t->user = xstrdup("root");
	t->identity = xstrdup(user_key);
	t->known_hosts = xstrdup(known_hosts);
	t->connect_timeout = 5;
}

static struct ssh_conn *connect_ok(void)
{
	struct ssh_target t;
	struct ssh_conn *c = NULL;
	target(&t);
	int rc = ssh_conn_open(&c, &t, 0);
	if (rc < 0)
		fail_msg("connect: %s", error_message());
	ssh_target_release(&t);
	return c;
}

/* Descendants of sshd: the per-connection processes and their commands. */
static int children(pid_t parent, pid_t *out, int max)
{
	DIR *d = opendir("/proc");
	struct dirent *e;
	int n = 0;
	while (d && (e = readdir(d)) && n < max) {
		char path[64], line[512];
		int pid = atoi(e->d_name), ppid = 0;
		if (pid <= 0)
			continue;
		snprintf(path, sizeof(path), "/proc/%d/stat", pid);
		FILE *f = fopen(path, "r");
		if (!f)
			continue;
		if (fgets(line, sizeof(line), f)) {
			char *rp = strrchr(line, ')');
			if (rp)
				sscanf(rp + 2, "%*c %d", &ppid);
		}
		fclose(f);
		if (ppid == parent)
			out[n++] = pid;
	}
	if (d)
		closedir(d);
	return n;
}

/* SIGKILLs the sshd processes serving connections (not the listener). */
static int kill_sessions(void)
{
	pid_t kids[32];
	int n = children(sshd_pid, kids, 32);
	for (int i = 0; i < n; i++)
		kill(kids[i], SIGKILL);
	return n;
}

/* ---- output collection --------------------------------------------- */

struct seen {
	struct buf all;		/* "1:..." / "2:..." records in arrival order */
	struct buf out, err;
	double first;
};

static int collect(void *ctx, int fd, const char *data, size_t len)
{
	struct seen *s = ctx;
	if (!s->first)
		s->first = now_monotonic();
	buf_addf(&s->all, "%d:", fd);
	buf_add(&s->all, data, len);
	buf_add(fd == 1 ? &s->out : &s->err, data, len);
	return 0;
}

/* ---- tests --------------------------------------------------------- */

static void streams_interleaved_output_and_status(void **state)
{
	(void)state;
	need_sshd();
	struct ssh_conn *c = connect_ok();
	struct seen s = { BUF_INIT, BUF_INIT, BUF_INIT, 0 };
	struct ssh_exec_opts o = SSH_EXEC_OPTS_INIT;
	int status = -1;
	o.on_output = collect;
	o.ctx = &s;
	double t0 = now_monotonic();
	assert_int_equal(ssh_conn_exec(c, "echo o1; sleep 0.3; echo e1 >&2; sleep 0.3; "
				       "echo o2; sleep 0.3; echo e2 >&2; exit 3", &o, &status), 0);
	double t1 = now_monotonic();
	assert_int_equal(status, 3);
	assert_string_equal(s.all.ptr, "1:o1\n2:e1\n1:o2\n2:e2\n");
	/* The first line came as it was printed, not at the end. */
	assert_true(s.first - t0 < (t1 - t0) - 0.6);

	buf_reset(&s.all);
	assert_int_equal(ssh_conn_exec(c, "kill -KILL $$", &o, &status), 0);
	assert_int_equal(status, 128 + SIGKILL);
	assert_int_equal(ssh_conn_exec(c, "true", NULL, &status), 0);
	assert_int_equal(status, 0);
	buf_release(&s.all);
	buf_release(&s.out);
	buf_release(&s.err);
	ssh_conn_free(c);
}

static volatile sig_atomic_t alarms;
static void on_alarm(int sig)
{
	(void)sig;
	alarms++;
}

/*
 * Signals interrupting poll (SIGALRM here, SIGCHLD in real life) are not a
 * drop, nor are keepalives sent while a command runs.
 */
static void signals_are_not_a_dropped_connection(void **state)
{
	(void)state;
	need_sshd();
	struct ssh_target t;
	struct ssh_conn *c = NULL;
	target(&t);
	t.keepalive = 1;	/* and keepalives go out meanwhile */
	assert_int_equal(ssh_conn_open(&c, &t, 0), 0);
	ssh_target_release(&t);
	struct sigaction sa, old;
	struct itimerval every = { { 0, 20000 }, { 0, 20000 } }, off = { { 0, 0 }, { 0, 0 } };
	struct buf out = BUF_INIT;
	int status = -1;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_alarm;	/* no SA_RESTART: poll returns EINTR */
	sigaction(SIGALRM, &sa, &old);
	alarms = 0;
	setitimer(ITIMER_REAL, &every, NULL);
	int rc = ssh_conn_capture(c, "sleep 2.5; echo done", NULL, 0, &out, NULL, &status);
	setitimer(ITIMER_REAL, &off, NULL);
	sigaction(SIGALRM, &old, NULL);
	if (rc < 0)
		fail_msg("%s", error_message());
	assert_true(alarms > 10);
	assert_int_equal(status, 0);
	assert_string_equal(out.ptr, "done\n");
	buf_release(&out);
	ssh_conn_free(c);
}

static void hostile_arguments_reach_the_remote_intact(void **state)
{
	(void)state;
	need_sshd();
	static const char *const args[] = {
		"", "a b", "it's", "\"q\"", "$(touch MARKER)", "`touch MARKER`",
		"; touch MARKER", "| touch MARKER", "line\nbreak", "*", "~", "$HOME",
		"-n", "A=1", "h\xc3\xa9llo \xe2\x9c\x93", "\\", "'\"'\"'", NULL,
	};
	struct ssh_conn *c = connect_ok();
	struct buf cmd = BUF_INIT, out = BUF_INIT, err = BUF_INIT;
	char *work = xstrfmt("%s/work", dir), *marker = xstrfmt("%s/MARKER", work);
	const char *head[] = { "cd", work, NULL }, *pf[] = { "printf", "%s\\n", NULL };
	int status;

	shquote_argv(&cmd, head);
	buf_addstr(&cmd, " &&");
	shquote_argv(&cmd, pf);
	shquote_argv(&cmd, args);
	assert_int_equal(ssh_conn_capture(c, cmd.ptr, NULL, 0, &out, &err, &status), 0);
	assert_int_equal(status, 0);
	struct buf want = BUF_INIT;
	for (size_t i = 0; args[i]; i++)
		buf_addf(&want, "%s\n", args[i]);
	assert_string_equal(out.ptr, want.ptr);
	assert_string_equal(err.ptr, "");
	assert_int_equal(access(marker, F_OK), -1);
	buf_release(&want);
	buf_release(&cmd);
	buf_release(&out);
	buf_release(&err);
	free(work);
	free(marker);
	ssh_conn_free(c);
}

static void stdin_and_large_output_do_not_deadlock(void **state)
{
	(void)state;
	need_sshd();
	struct ssh_conn *c = connect_ok();
	size_t n = 6u << 20;
	char *data = xmalloc(n);
	for (size_t i = 0; i < n; i++)
		data[i] = (char)(i * 7 + i / 4096);
	struct buf out = BUF_INIT;
	int status = -1;
	/* cat writes back everything while we are still sending. */
	assert_int_equal(ssh_conn_capture(c, "cat", data, n, &out, NULL, &status), 0);
	assert_int_equal(status, 0);
	assert_int_equal(out.len, n);
	assert_memory_equal(out.ptr, data, n);
	buf_release(&out);

	/* Past SSH_CAPTURE_MAX only with a buffer whose own cap allows it. */
	buf_init(&out, 40u << 20);
	assert_int_equal(ssh_conn_capture(c, "head -c 30000000 /dev/zero", NULL, 0, &out,
					  NULL, &status), 0);
	assert_int_equal(status, 0);
	assert_int_equal(out.len, 30000000);
	buf_release(&out);
	buf_init(&out, 0);
	assert_int_equal(ssh_conn_capture(c, "head -c 30000000 /dev/zero", NULL, 0, &out,
					  NULL, &status), SSH_R_TOOBIG);
	buf_release(&out);

	struct buf small;
	buf_init(&small, 1000);
	assert_int_equal(ssh_conn_capture(c, "head -c 100000 /dev/zero", NULL, 0, &small,
					  NULL, &status), SSH_R_TOOBIG);
	assert_non_null(strstr(error_message(), "too large"));
	buf_release(&small);
	/* The connection is still good after a cancelled command. */
	assert_int_equal(ssh_conn_capture(c, "echo fine", NULL, 0, &out, NULL, &status), 0);
	buf_release(&out);
	free(data);
	ssh_conn_free(c);
}

static void missing_program_and_failures_are_named(void **state)
{
	(void)state;
	need_sshd();
	struct ssh_conn *c = connect_ok();
	struct buf out = BUF_INIT;
	assert_int_equal(ssh_conn_run(c, "nosuchprog-pystrib version", "nosuchprog-pystrib",
				      &out), SSH_R_FAILED);
	assert_int_equal(error_kind(), PS_EXIT_REMOTE);
	assert_non_null(strstr(error_message(), "has no 'nosuchprog-pystrib'"));
	assert_int_equal(ssh_conn_run(c, "echo boom >&2; exit 4", "thing", &out), SSH_R_FAILED);
	assert_non_null(strstr(error_message(), "exit 4"));
	assert_non_null(strstr(error_message(), "boom"));
	assert_int_equal(ssh_conn_run(c, "echo 'cat: x: No space left on device' >&2; exit 1",
				      "cat", &out), SSH_R_FAILED);
	assert_non_null(strstr(error_message(), "is full"));
	assert_int_equal(ssh_conn_run(c, "echo ok", "echo", &out), 0);
	assert_string_equal(out.ptr, "ok\n");
	error_clear();
	buf_release(&out);
	ssh_conn_free(c);
}

struct dl {
	struct buf b;
};

static int dl_write(void *ctx, const void *data, size_t len)
{
	return buf_add(&((struct dl *)ctx)->b, data, len);
}

static void upload_replaces_atomically_and_download_streams(void **state)
{
	(void)state;
	need_sshd();
	struct ssh_conn *c = connect_ok();
	char *path = xstrfmt("%s/work/up load's.bin", dir);
	struct stat st;

	sh("echo old > '%s/work/up load'\\''s.bin'", dir);
	size_t n = 3u << 20;
	char *data = xmalloc(n);
	memset(data, 'x', n);
	assert_int_equal(ssh_conn_upload(c, path, data, n, 0640), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal((size_t)st.st_size, n);
	assert_int_equal(st.st_mode & 0777, 0640);

	/* "~/" is the remote home; no temporary file is left behind. */
	assert_int_equal(ssh_conn_upload(c, "~/x y.txt", "hello\n", 6, 0600), 0);
	char *up = xstrfmt("%s/rhome/x y.txt", dir), *got = slurp(up);
	assert_string_equal(got, "hello\n");
	free(got);
	free(up);
	sh("test -z \"$(ls -A %s/rhome | grep pystrib-tmp)\"", dir);

	/* A missing directory fails, and says where. */
	assert_true(ssh_conn_upload(c, "/nonexistent-dir/x", "a", 1, 0644) < 0);
	assert_non_null(strstr(error_message(), "/nonexistent-dir/x"));

	/* download: the remote command's stdout, streamed. */
	struct dl d = { BUF_INIT };
	const char *cat[] = { "cat", path, NULL };
	char *cmd = shquote_command(cat);
	assert_int_equal(ssh_conn_download(c, cmd, "cat", dl_write, &d), 0);
	assert_int_equal(d.b.len, n);
	assert_memory_equal(d.b.ptr, data, n);
	buf_release(&d.b);
	free(cmd);

	/* Upload from a local file. */
	char *local = xstrfmt("%s/local.bin", dir), *remote = xstrfmt("%s/work/copy.bin", dir);
	sh("head -c 1000000 /dev/urandom > %s", local);
	assert_int_equal(ssh_conn_upload_file(c, remote, local, 0755), 0);
	sh("cmp %s %s", local, remote);
	assert_int_equal(stat(remote, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0755);
	free(local);
	free(remote);
	free(data);
	free(path);
	ssh_conn_free(c);
}

/* Kills the connections' sshd processes once a file named prefix* is in dir. */
static pid_t kill_when_exists(const char *in_dir, const char *prefix)
{
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid)
		return pid;
	for (int i = 0; i < 2000; i++) {
		DIR *d = opendir(in_dir);
		struct dirent *e;
		int found = 0;
		while (d && (e = readdir(d)))
			if (!strncmp(e->d_name, prefix, strlen(prefix)))
				found = 1;
		if (d)
			closedir(d);
		if (found) {
			_exit(kill_sessions() > 0 ? 0 : 1);
		}
		usleep(2000);
	}
	_exit(2);
}

static void dropped_upload_leaves_the_old_file(void **state)
{
	(void)state;
	need_sshd();
	struct ssh_conn *c = connect_ok();
	char *path = xstrfmt("%s/work/big.bin", dir), *local = xstrfmt("%s/sparse", dir);
	char *old;
	int status;

	sh("echo old > %s && truncate -s 300M %s", path, local);
	char *workdir = xstrfmt("%s/work", dir);
	pid_t killer = kill_when_exists(workdir, "big.bin.pystrib-tmp");
	int rc = ssh_conn_upload_file(c, path, local, 0644);
	waitpid(killer, &status, 0);
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_int_equal(rc, SSH_R_DROPPED);
	assert_non_null(strstr(error_message(), "lost the connection"));
	/*
	 * The remote side goes on after the connection is gone: its cat sees
	 * the end of its input and succeeds. Once the temporary file is gone,
	 * the target must still be the old file, not a truncated new one.
	 */
	sh("for i in $(seq 100); do ls %s | grep -q pystrib-tmp || exit 0; sleep 0.1; done; exit 1",
	   workdir);
	usleep(200000);
	old = slurp(path);
	assert_string_equal(old, "old\n");
	free(old);
	/* Reconnecting gives a working connection again. */
	assert_int_equal(ssh_conn_reconnect(c), 0);
	assert_int_equal(ssh_conn_exec(c, "exit 7", NULL, &status), 0);
	assert_int_equal(status, 7);
	unlink(local);
	free(workdir);
	free(local);
	free(path);
	ssh_conn_free(c);
}

static int kill_on_first_output(void *ctx, int fd, const char *data, size_t len)
{
	int *killed = ctx;
	if (!*killed)
		*killed = kill_sessions();
	return 0;
}

static void dropped_connection_is_its_own_condition(void **state)
{
	(void)state;
	need_sshd();
	struct ssh_conn *c = connect_ok();
	struct ssh_exec_opts o = SSH_EXEC_OPTS_INIT;
	int killed = 0, status;
	o.on_output = kill_on_first_output;
	o.ctx = &killed;
	o.deadline = now_monotonic() + 20;
	double t0 = now_monotonic();
	int rc = ssh_conn_exec(c, "i=0; while [ $i -lt 50 ]; do echo $i; i=$((i+1)); "
			       "sleep 0.1; done", &o, &status);
	assert_true(killed > 0);
	assert_int_equal(rc, SSH_R_DROPPED);
	assert_true(now_monotonic() - t0 < 4);
	assert_int_equal(error_kind(), PS_EXIT_REMOTE);
	/* Further commands say so too, until a reconnect. */
	assert_int_equal(ssh_conn_exec(c, "true", NULL, &status), SSH_R_DROPPED);
	assert_int_equal(ssh_conn_reconnect(c), 0);
	assert_int_equal(ssh_conn_exec(c, "true", NULL, &status), 0);
	ssh_conn_free(c);
}

static int set_interrupted(void *ctx)
{
	interrupt_set();
	return 0;
}

static void deadline_and_interrupt_cancel(void **state)
{
	(void)state;
	need_sshd();
	struct ssh_conn *c = connect_ok();
	struct ssh_exec_opts o = SSH_EXEC_OPTS_INIT;
	int status;
	o.deadline = now_monotonic() + 0.5;
	double t0 = now_monotonic();
	assert_int_equal(ssh_conn_exec(c, "sleep 10", &o, &status), SSH_R_TIMEOUT);
	assert_true(now_monotonic() - t0 < 3);
	assert_int_equal(error_kind(), PS_EXIT_TIMEOUT);

	o = (struct ssh_exec_opts)SSH_EXEC_OPTS_INIT;
	o.on_tick = set_interrupted;
	o.tick = 0.2;
	t0 = now_monotonic();
	assert_int_equal(ssh_conn_exec(c, "sleep 10", &o, &status), SSH_R_INTERRUPTED);
	assert_true(now_monotonic() - t0 < 3);
	assert_int_equal(error_kind(), PS_EXIT_INTERRUPTED);
	interrupt_clear();
	assert_int_equal(ssh_conn_exec(c, "exit 0", NULL, &status), 0);
	error_clear();
	ssh_conn_free(c);
}

/*
 * A UNIX socket server that answers each connection as an HTTP/1.0 server
 * does, after waiting a moment to see whether the client sent EOF, and
 * says in its answer whether it did.
 */
static const char unix_server[] =
	"import os, socket, sys\n"
	"s = socket.socket(socket.AF_UNIX)\n"
	"s.bind(sys.argv[1]); s.listen(4)\n"
	"while True:\n"
	"    c, _ = s.accept()\n"
	"    req = b''\n"
	"    while b'\\r\\n\\r\\n' not in req:\n"
	"        d = c.recv(4096)\n"
	"        if not d: break\n"
	"        req += d\n"
	"    c.settimeout(0.5)\n"
	"    try: eof = c.recv(1) == b''\n"
	"    except socket.timeout: eof = False\n"
	"    line = req.split(b'\\r\\n')[0].decode()\n"
	"    c.sendall(('HTTP/1.0 200 OK\\r\\n\\r\\n{\"got\": \"%s\", \"eof\": %d}\\n' % (line, eof)).encode())\n"
	"    c.close()\n";

static void unix_stream_reaches_a_socket_without_a_shell(void **state)
{
	(void)state;
	need_sshd();
	char *sock = xstrfmt("%s/api.sock", dir), *marker = xstrfmt("%s/rhome/shell-ran", dir);
	char *rc = xstrfmt("%s/rhome/.bashrc", dir);
	FILE *f = fopen(rc, "w");
	assert_non_null(f);
	fprintf(f, ": > '%s'\n", marker);
	fclose(f);
	pid_t srv = fork();
	assert_true(srv >= 0);
	if (srv == 0) {
		execl("/usr/bin/python3", "python3", "-c", unix_server, sock, (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 100 && access(sock, F_OK) < 0; i++)
		usleep(50000);
	assert_int_equal(access(sock, F_OK), 0);

	struct ssh_conn *c = connect_ok();
	int status;
	/* A command goes through the login shell (the marker shows it)... */
	assert_int_equal(ssh_conn_exec(c, "true", NULL, &status), 0);
	assert_int_equal(access(marker, F_OK), 0);
	unlink(marker);

	/* ... a stream does not; the server sees no EOF (which would read as
	 * a hang-up) and answers in full. */
	struct seen s = { BUF_INIT, BUF_INIT, BUF_INIT, 0 };
	struct ssh_exec_opts o = SSH_EXEC_OPTS_INIT;
	const char req[] = "GET /ping HTTP/1.0\r\n\r\n";
	o.in = req;
	o.in_len = sizeof(req) - 1;
	o.on_output = collect;
	o.ctx = &s;
	o.deadline = now_monotonic() + 20;
	assert_int_equal(ssh_conn_unix_stream(c, sock, &o), 0);
	buf_addch(&s.out, '\0');
	assert_string_equal(s.out.ptr, "HTTP/1.0 200 OK\r\n\r\n{\"got\": \"GET /ping HTTP/1.0\", \"eof\": 0}\n");
	assert_int_equal(access(marker, F_OK), -1);

	/* No such socket: refused, named; the connection stays usable. */
	char *none = xstrfmt("%s/no.sock", dir);
	assert_int_equal(ssh_conn_unix_stream(c, none, &o), SSH_R_FAILED);
	assert_int_equal(error_kind(), PS_EXIT_REMOTE);
	assert_non_null(strstr(error_message(), "no.sock"));
	assert_int_equal(ssh_conn_exec(c, "exit 3", NULL, &status), 0);
	assert_int_equal(status, 3);

	kill(srv, SIGTERM);
	waitpid(srv, NULL, 0);
	unlink(rc);
	unlink(marker);
	unlink(sock);
	ssh_conn_free(c);
	buf_release(&s.all);
	buf_release(&s.out);
	buf_release(&s.err);
	free(none);
	free(rc);
	free(marker);
	free(sock);
}

static char *host_fingerprint(void)
{
	char *out = xstrfmt("%s/fp", dir);
	sh("ssh-keygen -l -E sha256 -f %s/host_key.pub | cut -d' ' -f2 > %s", dir, out);
	char *fp = slurp(out);
	fp[strcspn(fp, "\n")] = '\0';
	free(out);
	return fp;
}

static void unknown_host_refused_then_trusted(void **state)
{
	(void)state;
	need_sshd();
	struct ssh_target t;
	struct ssh_conn *c = NULL;
	char *fp = host_fingerprint();
	target(&t);
	free(t.known_hosts);
	t.known_hosts = xstrfmt("%s/sub/dir/kh", dir);	/* does not exist yet */
	t.label = xstrdup("gpu1");

	assert_int_equal(ssh_conn_open(&c, &t, 0), SSH_R_HOSTKEY_UNKNOWN);
	assert_null(c);
	assert_int_equal(error_kind(), PS_EXIT_REMOTE);
	assert_non_null(strstr(error_message(), fp));
	assert_non_null(strstr(error_message(), "not known"));
	assert_non_null(strstr(error_hint_text(), "pystrib doctor --trust-host --remote gpu1"));
	assert_non_null(strstr(error_hint_text(), "--accept-new-host-key"));
	assert_int_equal(access(t.known_hosts, F_OK), -1);

	assert_int_equal(ssh_conn_open(&c, &t, SSH_ACCEPT_NEW_HOSTKEY), 0);
	assert_string_equal(ssh_conn_fingerprint(c), fp);
	ssh_conn_free(c);
	c = NULL;
	char *kh = slurp(t.known_hosts);
	assert_non_null(kh);
	char *want = xstrfmt("[127.0.0.1]:%d ", port);
	assert_non_null(strstr(kh, want));
	free(want);
	free(kh);
	/* Now known: a strict connection works. */
	assert_int_equal(ssh_conn_open(&c, &t, 0), 0);
	ssh_conn_free(c);
	free(fp);
	ssh_target_release(&t);
	error_clear();
}

static void changed_host_key_is_never_accepted(void **state)
{
	(void)state;
	need_sshd();
	struct ssh_target t;
	struct ssh_conn *c = NULL;
	char *before = slurp(known_hosts);

	stop_sshd();
	sh("rm -f %s/host_key %s/host_key.pub && ssh-keygen -q -t ed25519 -N '' -C new -f %s/host_key",
	   dir, dir, dir);
	start_sshd();
	char *fp = host_fingerprint();
	target(&t);
	assert_int_equal(ssh_conn_open(&c, &t, 0), SSH_R_HOSTKEY_CHANGED);
	assert_non_null(strstr(error_message(), "CHANGED"));
	assert_non_null(strstr(error_message(), fp));
	assert_int_equal(ssh_conn_open(&c, &t, SSH_ACCEPT_NEW_HOSTKEY), SSH_R_HOSTKEY_CHANGED);
	assert_null(c);
	char *after = slurp(known_hosts);
	assert_string_equal(before, after);	/* untouched */

	/* A different key type for the host is refused the same way. */
	stop_sshd();
	sh("rm -f %s/host_key %s/host_key.pub && ssh-keygen -q -t ecdsa -N '' -C new -f %s/host_key",
	   dir, dir, dir);
	start_sshd();
	assert_int_equal(ssh_conn_open(&c, &t, SSH_ACCEPT_NEW_HOSTKEY), SSH_R_HOSTKEY_CHANGED);
	free(after);
	after = slurp(known_hosts);
	assert_string_equal(before, after);

	write_known_hosts();	/* for the tests after */
	free(after);
	free(before);
	free(fp);
	ssh_target_release(&t);
	error_clear();
}

static void wrong_key_is_refused_and_lists_what_was_tried(void **state)
{
	(void)state;
	need_sshd();
	struct ssh_target t;
	struct ssh_conn *c = NULL;
	target(&t);
	free(t.identity);
	t.identity = xstrfmt("%s/other_key", dir);
	assert_int_equal(ssh_conn_open(&c, &t, 0), SSH_R_AUTH);
	assert_int_equal(error_kind(), PS_EXIT_REMOTE);
	assert_non_null(strstr(error_message(), "refused every key"));
	assert_non_null(strstr(error_message(), t.identity));
	assert_non_null(strstr(error_message(), "default keys"));

	/* An identity that does not exist is named with the reason. */
	free(t.identity);
	t.identity = xstrfmt("%s/missing_key", dir);
	assert_int_equal(ssh_conn_open(&c, &t, 0), SSH_R_AUTH);
	assert_non_null(strstr(error_message(), "No such file"));
	ssh_target_release(&t);
	error_clear();
}

static void unreachable_port_names_host_and_port(void **state)
{
	(void)state;
	need_sshd();
	struct ssh_target t;
	struct ssh_conn *c = NULL;
	target(&t);
	t.port = test_free_port();
	char *want = xstrfmt("127.0.0.1:%d", t.port);
	assert_int_equal(ssh_conn_open(&c, &t, 0), SSH_R_UNREACHABLE);
	assert_int_equal(error_kind(), PS_EXIT_REMOTE);
	assert_non_null(strstr(error_message(), want));
	assert_non_null(strstr(error_message(), "cannot reach"));
	free(want);
	ssh_target_release(&t);
	error_clear();
}

static void ssh_config_is_honoured(void **state)
{
	(void)state;
	need_sshd();
	char *cfg = xstrfmt("%s/home/.ssh/config", dir);
	FILE *f = fopen(cfg, "w");
	fprintf(f, "Host gpu-alias\n  HostName 127.0.0.1\n  Port %d\n  User root\n"
		"  IdentityFile %s\n  UserKnownHostsFile %s\n", port, user_key, known_hosts);
	fclose(f);
	struct ssh_target t = SSH_TARGET_INIT;
	struct ssh_conn *c = NULL;
	t.host = xstrdup("gpu-alias");
	t.connect_timeout = 5;
	int rc = ssh_conn_open(&c, &t, 0);
	if (rc < 0)
		fail_msg("%s", error_message());
	char *want = xstrfmt("root@127.0.0.1:%d", port);
	assert_string_equal(ssh_conn_name(c), want);
	free(want);
	ssh_conn_free(c);
	unlink(cfg);
	free(cfg);
	ssh_target_release(&t);
}

/*
 * ProxyJump: libssh 0.10 runs `ssh -W` through the jump host. The ssh
 * found first on PATH is a wrapper that gives OpenSSH this test's keys.
 */
static void proxy_jump_is_honoured(void **state)
{
	(void)state;
	need_sshd();
	char *cfg = xstrfmt("%s/home/.ssh/config", dir);
	FILE *f = fopen(cfg, "w");
	fprintf(f, "Host behind-jump\n  HostName 127.0.0.1\n  Port %d\n  User root\n"
		"  IdentityFile %s\n  UserKnownHostsFile %s\n  ProxyJump root@127.0.0.1:%d\n",
		port, user_key, known_hosts, port);
	fclose(f);
	sh("mkdir -p %s/bin && printf '#!/bin/sh\\nexec /usr/bin/ssh -F /dev/null -o BatchMode=yes "
	   "-o UserKnownHostsFile=%s -i %s \"$@\"\\n' > %s/bin/ssh && chmod +x %s/bin/ssh",
	   dir, known_hosts, user_key, dir, dir);
	char *old = xstrdup(getenv("PATH")), *path = xstrfmt("%s/bin:%s", dir, old);
	setenv("PATH", path, 1);
	struct ssh_target t = SSH_TARGET_INIT;
	struct ssh_conn *c = NULL;
	t.host = xstrdup("behind-jump");
	t.connect_timeout = 10;
	int rc = ssh_conn_open(&c, &t, 0), status = -1;
	if (rc < 0)
		fail_msg("%s", error_message());
	assert_int_equal(ssh_conn_exec(c, "exit 5", NULL, &status), 0);
	assert_int_equal(status, 5);
	ssh_conn_free(c);
	setenv("PATH", old, 1);
	unlink(cfg);
	free(cfg);
	free(old);
	free(path);
	ssh_target_release(&t);
}

/* The agent is tried first; an encrypted key outside it is named as such. */
static void agent_then_keys(void **state)
{
	(void)state;
	need_sshd();
	char *sock = xstrfmt("%s/agent.sock", dir), *envf = xstrfmt("%s/agent.env", dir);
	sh("ssh-agent -a %s > %s", sock, envf);
	char *env = slurp(envf), *p = strstr(env, "SSH_AGENT_PID=");
	assert_non_null(p);
	pid_t agent = agent_pid = atoi(p + 14);
	setenv("SSH_AUTH_SOCK", sock, 1);
	sh("ssh-add -q %s 2>/dev/null", user_key);

	struct ssh_target t;
	struct ssh_conn *c = NULL;
	target(&t);
	free(t.identity);
	t.identity = NULL;	/* only the agent has the key */
	int rc = ssh_conn_open(&c, &t, 0);
	if (rc < 0)
		fail_msg("%s", error_message());
	ssh_conn_free(c);
	c = NULL;

	/* Without the agent: an encrypted identity cannot be used, and we say why. */
	unsetenv("SSH_AUTH_SOCK");
	kill(agent, SIGTERM);
	agent_pid = 0;
	sh("cp %s/user_key %s/enc_key && ssh-keygen -q -p -N secret-pass -f %s/enc_key", dir, dir, dir);
	t.identity = xstrfmt("%s/enc_key", dir);
	assert_int_equal(ssh_conn_open(&c, &t, 0), SSH_R_AUTH);
	assert_non_null(strstr(error_message(), "encrypted"));
	assert_null(strstr(error_message(), "secret-pass"));
	ssh_target_release(&t);
	free(env);
	free(sock);
	free(envf);
	error_clear();
}

/* A real full disk: a tiny tmpfs (skipped where mounting is not allowed). */
static void full_remote_disk_is_reported(void **state)
{
	(void)state;
	need_sshd();
	char *small = xstrfmt("%s/small", dir), *cmd = xstrfmt("mkdir -p %s && mount -t tmpfs "
		"-o size=64k tmpfs %s 2>/dev/null", small, small);
	if (system(cmd) != 0) {
		free(cmd);
		free(small);
		skip();
	}
	struct ssh_conn *c = connect_ok();
	char *path = xstrfmt("%s/target", small);
	sh("echo old > %s", path);
	size_t n = 1u << 20;
	char *data = xcalloc(1, n);
	assert_int_equal(ssh_conn_upload(c, path, data, n, 0644), SSH_R_FAILED);
	assert_int_equal(error_kind(), PS_EXIT_REMOTE);
	assert_non_null(strstr(error_message(), "is full"));
	assert_non_null(strstr(error_hint_text(), "free space"));
	char *old = slurp(path);
	assert_string_equal(old, "old\n");
	sh("test -z \"$(ls -A %s | grep pystrib-tmp)\"", small);
	free(old);
	sh("umount %s", small);
	free(data);
	free(path);
	free(cmd);
	free(small);
	error_clear();
	ssh_conn_free(c);
}

/* A port that accepts but never speaks SSH: the connect timeout applies. */
static void silent_server_times_out(void **state)
{
	(void)state;
	need_sshd();
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(fd, 4), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	struct ssh_target t;
	struct ssh_conn *c = NULL;
	target(&t);
	t.port = ntohs(a.sin_port);
	t.connect_timeout = 1;
	double t0 = now_monotonic();
	assert_int_equal(ssh_conn_open(&c, &t, 0), SSH_R_UNREACHABLE);
	assert_true(now_monotonic() - t0 < 5);
	assert_non_null(strstr(error_message(), "cannot reach"));
	close(fd);
	ssh_target_release(&t);
	error_clear();
}

static void targets_parse(void **state)
{
	(void)state;
	struct ssh_target t = SSH_TARGET_INIT;
	assert_int_equal(ssh_target_parse(&t, "alice@gpu1.example.org:2222"), 0);
	assert_string_equal(t.user, "alice");
	assert_string_equal(t.host, "gpu1.example.org");
	assert_int_equal(t.port, 2222);
	assert_int_equal(ssh_target_parse(&t, "gpu2"), 0);
	assert_string_equal(t.host, "gpu2");
	assert_string_equal(t.user, "alice");	/* kept */
	assert_int_equal(ssh_target_parse(&t, "[::1]:22"), 0);
	assert_string_equal(t.host, "::1");
	assert_int_equal(t.port, 22);
	assert_int_equal(ssh_target_parse(&t, "fe80::1"), 0);
	assert_string_equal(t.host, "fe80::1");
	assert_int_equal(ssh_target_parse(&t, "host:0"), -1);
	assert_int_equal(ssh_target_parse(&t, "host:99999"), -1);
	assert_int_equal(ssh_target_parse(&t, "host:x"), -1);
	assert_int_equal(ssh_target_parse(&t, "[::1"), -1);
	assert_int_equal(ssh_target_parse(&t, "-oProxyCommand=x"), -1);
	assert_int_equal(ssh_target_parse(&t, "a;b"), -1);
	assert_int_equal(ssh_target_parse(&t, "$(x)@host"), -1);
	assert_int_equal(ssh_target_parse(&t, "@host"), -1);
	assert_int_equal(error_kind(), PS_EXIT_USAGE);
	ssh_target_release(&t);
	error_clear();
}

static void command_failures_without_a_connection(void **state)
{
	(void)state;
	assert_int_equal(ssh_command_failed(NULL, "docker", 127, "bash: line 1: docker: command not found\n"),
			 SSH_R_FAILED);
	assert_non_null(strstr(error_message(), "has no 'docker'"));
	ssh_command_failed(NULL, "job.sh", 2, "sh: 1: mpirun: not found\n");
	assert_non_null(strstr(error_message(), "has no 'mpirun'"));
	ssh_command_failed(NULL, "tar", 2, "tar: x: Cannot write: No space left on device\n");
	assert_non_null(strstr(error_message(), "is full"));
	ssh_command_failed(NULL, "x", 1, "first\nlast line\n\n");
	assert_non_null(strstr(error_message(), "last line"));
	assert_null(strstr(error_message(), "first"));
	assert_int_equal(error_kind(), PS_EXIT_REMOTE);
	error_clear();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(targets_parse),
		cmocka_unit_test(command_failures_without_a_connection),
		cmocka_unit_test(streams_interleaved_output_and_status),
		cmocka_unit_test(signals_are_not_a_dropped_connection),
		cmocka_unit_test(hostile_arguments_reach_the_remote_intact),
		cmocka_unit_test(stdin_and_large_output_do_not_deadlock),
		cmocka_unit_test(missing_program_and_failures_are_named),
		cmocka_unit_test(upload_replaces_atomically_and_download_streams),
		cmocka_unit_test(dropped_upload_leaves_the_old_file),
		cmocka_unit_test(dropped_connection_is_its_own_condition),
		cmocka_unit_test(deadline_and_interrupt_cancel),
		cmocka_unit_test(unix_stream_reaches_a_socket_without_a_shell),
		cmocka_unit_test(unknown_host_refused_then_trusted),
		cmocka_unit_test(wrong_key_is_refused_and_lists_what_was_tried),
		cmocka_unit_test(unreachable_port_names_host_and_port),
		cmocka_unit_test(ssh_config_is_honoured),
		cmocka_unit_test(proxy_jump_is_honoured),
		cmocka_unit_test(agent_then_keys),
		cmocka_unit_test(full_remote_disk_is_reported),
		cmocka_unit_test(silent_server_times_out),
		cmocka_unit_test(changed_host_key_is_never_accepted),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
