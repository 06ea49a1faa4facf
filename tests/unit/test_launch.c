/*
 * Unit tests for launch.c, the job script. The runtime-none script is run
 * for real: /bin/sh, the host's Open MPI mpirun and Debian's python3 run a
 * cell (through the real bootstrap.py) whose arguments, environment and
 * job id are hostile strings; the cell writes back its sys.argv and
 * environment, which must be exactly the original bytes, and no marker
 * file may appear. The docker and podman scripts are checked by the shell
 * itself (sh -n) and for what they must and must not contain.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "buf.h"
#include "embedded.h"
#include "error.h"
#include "launch.h"
#include "util.h"

static char tmpdir[] = "/tmp/pystrib-launch-XXXXXX";

static const char *const hostile_args[] = {
	"two words", "it's", "\"dq\"", "$(touch MARKER)", "`touch MARKER`", "; touch MARKER",
	"$HOME", "*", "-n", "line\nbreak", "", "~", NULL,
};

static int setup(void **state)
{
	(void)state;
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	char *cmd = xstrfmt("rm -rf '%s'", tmpdir);
	int r = system(cmd);
	free(cmd);
	return r == 0 ? 0 : -1;
}

static int write_file(const char *path, const void *data, size_t len)
{
	FILE *f = fopen(path, "wb");
	if (!f)
		return -1;
	size_t n = fwrite(data, 1, len, f);
	return fclose(f) == 0 && n == len ? 0 : -1;
}

static int sh_syntax_ok(const char *script, const char *dir)
{
	char *path = xstrfmt("%s/check.sh", dir);
	char *cmd = xstrfmt("sh -n '%s'", path);
	int r = write_file(path, script, strlen(script)) == 0 ? system(cmd) : -1;
	free(path);
	free(cmd);
	return r == 0;
}

static char *slurp(const char *path);

static int which(const char *prog)
{
	char *cmd = xstrfmt("command -v %s >/dev/null 2>&1", prog);
	int r = system(cmd);
	free(cmd);
	return r == 0;
}

static void test_rejects_bad_specs(void **state)
{
	(void)state;
	struct launch_spec s = { 0 };
	struct buf b = BUF_INIT;
	const char *bad_env[] = { "1X=2" };

	s.id = "20260101-000000-abcdef";
	s.np = 2;
	s.runtime = RUNTIME_DOCKER;
	assert_int_equal(launch_script(&s, &b), -1);	/* no image */
	s.image = "127.0.0.1:5000/x@sha256:00";
	s.gpus = "0,,1";
	assert_int_equal(launch_script(&s, &b), -1);
	s.gpus = "$(x)";
	assert_int_equal(launch_script(&s, &b), -1);
	s.gpus = NULL;
	s.env = bad_env;
	s.nenv = 1;
	assert_int_equal(launch_script(&s, &b), -1);
	assert_int_equal(error_kind(), PS_EXIT_USAGE);
	error_clear();
	s.nenv = 0;
	s.np = 0;
	assert_int_equal(launch_script(&s, &b), -1);
	s.np = 1;
	s.runtime = RUNTIME_NONE;
	assert_int_equal(launch_script(&s, &b), -1);	/* no cell layer */
	error_clear();
	buf_release(&b);
	assert_true(launch_env_name_ok("A_1", 3));
	assert_false(launch_env_name_ok("A-1", 3));
	assert_false(launch_env_name_ok("", 0));
}

/* Builds the cell layer (pystrib/cell/...) with tar, as context.c lays it out. */
static int make_cell_layer(const char *dir, const char *layer)
{
	const struct embedded *boot = embedded_find("bootstrap.py");
	static const char cell[] =
		"import json, os, sys\n"
		"out = {'argv': sys.argv[1:], 'env': os.environ.get('HOSTILE'), 'rank': rank,\n"
		"       'size': world_size, 'id': os.environ.get('PYSTRIB_JOB_ID'),\n"
		"       'results': os.environ.get('PYSTRIB_RESULTS'), 'cwd': os.getcwd()}\n"
		"with open(os.path.join(os.environ['PYSTRIB_RESULTS'], 'r%d.json' % rank), 'w') as f:\n"
		"    json.dump(out, f)\n"
		"print('hello from', rank)\n";
	char *cdir = xstrfmt("%s/src/pystrib/cell", dir);
	char *mk = xstrfmt("mkdir -p '%s'", cdir);
	char *p1 = xstrfmt("%s/bootstrap.py", cdir), *p2 = xstrfmt("%s/user_code.py", cdir);
	char *tar = xstrfmt("tar -C '%s/src' -czf '%s' pystrib", dir, layer);
	int r = -1;
	if (boot && system(mk) == 0 && write_file(p1, boot->data, boot->len) == 0 &&
	    write_file(p2, cell, strlen(cell)) == 0 && system(tar) == 0)
		r = 0;
	free(cdir);
	free(mk);
	free(p1);
	free(p2);
	free(tar);
	return r;
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

/*
 * A bin directory with what a job script needs from the host, and nothing
 * else (no docker, podman or mpirun): links to the real programs.
 */
static char *tool_dir(const char *name)
{
	static const char *const tools[] = { "sh", "mkdir", "mv", "date", "rm", "cat", "sleep",
					      "id", "tar", "gzip", "grep", "tail", "cut", "ls",
					      "env", "sed", "tr", "wc", "nproc", "chmod", NULL };
	char *dir = xstrfmt("%s/%s", tmpdir, name);
	assert_int_equal(mkdir_p(dir, 0755), 0);
	for (const char *const *t = tools; *t; t++) {
		char *cmd = xstrfmt("ln -sf \"$(command -v %s)\" '%s/%s'", *t, dir, *t);
		assert_int_equal(system(cmd), 0);
		free(cmd);
	}
	return dir;
}

static char *bare_path(void)
{
	return tool_dir("bare-bin");
}

/*
 * A bin directory like bare_path()'s, with a fake docker, podman and
 * mpirun: each appends its name and argv to $FAKE_LOG as "name[w1][w2]..."
 * (and, for login, what it read on stdin); $FAKE says how it fails:
 * "gpu" (docker run: no GPU runtime), "125" (the engine), "slots",
 * "mpirun" (mpirun fails before any rank ran), "rank" (a rank fails).
 */
static char *fake_path(void)
{
	static const char fake[] =
		"#!/bin/sh\n"
		"n=${0##*/}\n"
		"{ printf '%s' \"$n\"; for a; do printf '[%s]' \"$a\"; done; echo; } >> \"$FAKE_LOG\"\n"
		"case $n:$1:${FAKE:-} in\n"
		"docker:image:*|podman:image:*) exit 1 ;;\n"
		"*:login:*) IFS= read -r pw; printf 'stdin[%s]\\n' \"$pw\" >> \"$FAKE_LOG\" ;;\n"
		"docker:run:gpu) echo 'docker: Error response from daemon: could not select device driver \"\" with capabilities: [[gpu]].' >&2; exit 125 ;;\n"
		"*:run:125) echo 'Error: the engine is not well' >&2; exit 125 ;;\n"
		"mpirun:*:slots|*:run:slots) printf '%s\\n' '---' 'There are not enough slots available in the system to satisfy the 4' "
		"'slots that were requested by the application:' '' '  python3' >&2; exit 1 ;;\n"
		"mpirun:*:mpirun) printf '%s\\n' '---' 'mpirun was unable to launch the specified application' '---' >&2; exit 1 ;;\n"
		"mpirun:*:rank) : > \"$PYSTRIB_JOB_DIR/logs/rank.0.err\"; echo 1 > \"$PYSTRIB_JOB_DIR/logs/rank.0.exit\"; exit 1 ;;\n"
		"esac\n"
		"exit 0\n";
	char *dir = tool_dir("fake-bin");
	static const char *const names[] = { "docker", "podman", "mpirun", NULL };
	for (const char *const *n = names; *n; n++) {
		char *p = xstrfmt("%s/%s", dir, *n);
		assert_int_equal(write_file(p, fake, strlen(fake)), 0);
		assert_int_equal(chmod(p, 0755), 0);
		free(p);
	}
	return dir;
}

/* A fresh job directory under tmpdir with run.sh for s in it. Caller frees. */
static char *job_with_script(const char *name, const struct launch_spec *s)
{
	struct buf b = BUF_INIT;
	char *jobdir = xstrfmt("%s/%s/jobs/%s", tmpdir, name, s->id);
	char *cmd = xstrfmt("rm -rf '%s/%s'", tmpdir, name);
	assert_int_equal(system(cmd), 0);
	free(cmd);
	assert_int_equal(mkdir_p(jobdir, 0755), 0);
	assert_int_equal(launch_script(s, &b), 0);
	char *script = xstrfmt("%s/run.sh", jobdir);
	assert_int_equal(write_file(script, b.ptr, b.len), 0);
	free(script);
	buf_release(&b);
	return jobdir;
}

/* A file of the job directory ("" when missing). Caller frees. */
static char *job_file(const char *jobdir, const char *name)
{
	char *p = xstrfmt("%s/%s", jobdir, name);
	char *v = slurp(p);
	free(p);
	return v ? v : xstrdup("");
}

/*
 * Runs run.sh as remote_job.c starts it, stderr to logs/job.err, stdin
 * from the file `in` (NULL: inherited), FAKE=fake (may be NULL), the
 * fakes' log in jobdir/../fake.log; its exit status.
 */
static int run_job_with(const char *jobdir, const char *path, const char *in, const char *fake)
{
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		char *err = xstrfmt("%s/logs/job.err", jobdir);
		if (chdir(jobdir) < 0 || mkdir_p("logs", 0755) < 0 || !freopen(err, "a", stderr))
			_exit(126);
		if (path)
			setenv("PATH", path, 1);
		if (in && !freopen(in, "r", stdin))
			_exit(126);
		if (fake)
			setenv("FAKE", fake, 1);
		else
			unsetenv("FAKE");
		setenv("FAKE_LOG", xstrfmt("%s/../fake.log", jobdir), 1);
		setsid();
		execl("/bin/sh", "sh", "run.sh", (char *)NULL);
		_exit(127);
	}
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	return WEXITSTATUS(status);
}

static int run_job(const char *jobdir, const char *path)
{
	return run_job_with(jobdir, path, NULL, NULL);
}

/* A missing docker, podman or mpirun: exit 127, state failed, `error` says which. */
static void test_missing_commands(void **state)
{
	(void)state;
	char *path = bare_path();
	static const struct { int rt; const char *want; } cases[] = {
		{ RUNTIME_DOCKER, "'docker' is not installed on this host" },
		{ RUNTIME_PODMAN, "'podman' is not installed on this host" },
		{ RUNTIME_NONE, "'mpirun' is not installed on this host" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *top = xstrfmt("%s/missing%zu", tmpdir, i);
		char *jobdir = xstrfmt("%s/jobs/20260101-000000-abcdef", top);
		char *layers = xstrfmt("%s/layers", top);
		struct launch_spec s = { 0 };
		struct buf b = BUF_INIT;

		assert_int_equal(mkdir_p(jobdir, 0755), 0);
		assert_int_equal(mkdir_p(layers, 0755), 0);
		if (cases[i].rt == RUNTIME_NONE) {
			char *layer = xstrfmt("%s/cell.tar.gz", layers);
			char *work = xstrfmt("%s/src%zu", tmpdir, i);
			assert_int_equal(mkdir_p(work, 0755), 0);
			assert_int_equal(make_cell_layer(work, layer), 0);
			free(layer);
			free(work);
		}
		s.id = "20260101-000000-abcdef";
		s.runtime = (enum runtime)cases[i].rt;
		s.np = 2;
		s.image = "127.0.0.1:5000/cells@sha256:0123";
		s.cell_layer = "../../layers/cell.tar.gz";
		s.python = "/usr/bin/python3";
		s.workdir = "/pystrib/cell";
		assert_int_equal(launch_script(&s, &b), 0);
		char *script = xstrfmt("%s/run.sh", jobdir);
		assert_int_equal(write_file(script, b.ptr, b.len), 0);
		assert_int_equal(run_job(jobdir, path), 127);

		char *p = xstrfmt("%s/state", jobdir);
		char *st = slurp(p);
		free(p);
		assert_string_equal(st, "failed\n");
		free(st);
		p = xstrfmt("%s/error", jobdir);
		st = slurp(p);
		free(p);
		assert_non_null(st);
		if (!strstr(st, cases[i].want))
			fail_msg("case %zu: error '%s'", i, st);
		assert_non_null(strchr(st, '\n'));
		assert_ptr_equal(strchr(st, '\n'), st + strlen(st) - 1);	/* one line */
		free(st);
		p = xstrfmt("%s/exit", jobdir);
		st = slurp(p);
		free(p);
		assert_string_equal(st, "127\n");
		free(st);
		free(script);
		buf_release(&b);
		free(top);
		free(jobdir);
		free(layers);
	}
	free(path);
}

static void test_none_runs_for_real(void **state)
{
	(void)state;
	if (!which("mpirun") || access("/usr/bin/python3", X_OK) < 0) {
		skip();
		return;
	}
	/* A job directory whose own name is hostile, as a workdir may be. */
	char *top = xstrfmt("%s/work dir $(touch MARKER) 'q'", tmpdir);
	char *jobdir = xstrfmt("%s/jobs/20260101-000000-abcdef", top);
	char *layers = xstrfmt("%s/layers", top);
	char *layer = xstrfmt("%s/cell.tar.gz", layers);
	const char *env[] = { "HOSTILE=$(touch MARKER) `touch MARKER` it's \"x\"" };
	const char *image_env[] = { "PYSTRIB_CELL=/pystrib/cell/user_code.py",
				    "PYSTRIB_INPUTS=/pystrib/cell/inputs" };
	struct launch_spec s = { 0 };
	struct buf b = BUF_INIT;

	assert_int_equal(mkdir_p(jobdir, 0755), 0);
	assert_int_equal(mkdir_p(layers, 0755), 0);
	char *plain = xstrfmt("%s/cell.tar.gz", tmpdir);
	assert_int_equal(make_cell_layer(tmpdir, plain), 0);
	assert_int_equal(rename(plain, layer), 0);
	free(plain);
	s.id = "20260101-000000-abcdef";
	s.runtime = RUNTIME_NONE;
	s.np = 2;
	s.cell_layer = "../../layers/cell.tar.gz";
	s.python = "/usr/bin/python3";
	s.mpirun_args = "--oversubscribe";
	s.workdir = "/pystrib/cell";
	s.image_env = image_env;
	s.nimage_env = 2;
	s.env = env;
	s.nenv = 1;
	s.args = hostile_args;
	s.timeout = 120;
	assert_int_equal(launch_script(&s, &b), 0);
	char *script = xstrfmt("%s/run.sh", jobdir);
	assert_int_equal(write_file(script, b.ptr, b.len), 0);

	/* As remote_job.c starts it: in the job directory, its own session. */
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		if (chdir(jobdir) < 0)
			_exit(126);
		setsid();
		execl("/bin/sh", "sh", "run.sh", (char *)NULL);
		_exit(127);
	}
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));

	char *p = xstrfmt("%s/state", jobdir);
	char *st = slurp(p);
	free(p);
	p = xstrfmt("%s/logs/job.err", jobdir);
	char *jerr = slurp(p);
	free(p);
	if (WEXITSTATUS(status) != 0 || !st || strcmp(st, "succeeded\n"))
		fprintf(stderr, "run.sh exit %d, state %s\n", WEXITSTATUS(status), st ? st : "-");
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_string_equal(st, "succeeded\n");
	free(st);
	free(jerr);
	for (int r = 0; r < 2; r++) {
		p = xstrfmt("%s/results/r%d.json", jobdir, r);
		char *j = slurp(p);
		free(p);
		assert_non_null(j);
		/* Python's json.dumps of the exact strings. */
		assert_non_null(strstr(j, "\"argv\": [\"two words\", \"it's\", \"\\\"dq\\\"\", "
					 "\"$(touch MARKER)\", \"`touch MARKER`\", \"; touch MARKER\", "
					 "\"$HOME\", \"*\", \"-n\", \"line\\nbreak\", \"\", \"~\"]"));
		assert_non_null(strstr(j, "\"env\": \"$(touch MARKER) `touch MARKER` it's \\\"x\\\"\""));
		assert_non_null(strstr(j, "\"size\": 2"));
		assert_non_null(strstr(j, "\"id\": \"20260101-000000-abcdef\""));
		free(j);
		p = xstrfmt("%s/logs/rank.%d.exit", jobdir, r);
		j = slurp(p);
		free(p);
		assert_string_equal(j, "0\n");
		free(j);
		p = xstrfmt("%s/logs/rank.%d.out", jobdir, r);
		j = slurp(p);
		free(p);
		char want[32];
		snprintf(want, sizeof(want), "hello from %d\n", r);
		assert_string_equal(j, want);
		free(j);
	}
	p = xstrfmt("%s/exit", jobdir);
	st = slurp(p);
	free(p);
	assert_string_equal(st, "0\n");
	free(st);
	/* Nothing extra ran, anywhere the shell might have run it. */
	char *find = xstrfmt("test -z \"$(find '%s' -name MARKER)\"", tmpdir);
	assert_int_equal(system(find), 0);
	free(find);
	assert_int_equal(access("MARKER", F_OK), -1);

	free(script);
	buf_release(&b);
	free(top);
	free(jobdir);
	free(layers);
	free(layer);
}

/* The fakes' log of the job in jobdir ("" when none). Caller frees. */
static char *fake_log(const char *jobdir)
{
	return job_file(jobdir, "../fake.log");
}

static void want_in(const char *text, const char *want)
{
	if (!strstr(text, want))
		fail_msg("no '%s' in\n%s", want, text);
}

/*
 * Runtime none over several hosts: mpirun gets -H, the ssh launcher and
 * the job's environment (-x), MASTER_ADDR is rank 0's host, and the other
 * hosts' logs and results are asked for over ssh once mpirun ended; a
 * daemon Open MPI lost names its host.
 */
static void test_hosts_script(void **state)
{
	(void)state;
	char *top = xstrfmt("%s/hosts", tmpdir);
	char *jobdir = xstrfmt("%s/jobs/20260101-000000-abcdef", top);
	char *layers = xstrfmt("%s/layers", top);
	char *layer = xstrfmt("%s/cell.tar.gz", layers);
	char *work = xstrfmt("%s/hosts-src", tmpdir);
	const char *env[] = { "MYVAR=1" };
	const char *others[] = { "198.18.0.2" };
	struct launch_spec s = { 0 };
	struct buf b = BUF_INIT;

	assert_int_equal(mkdir_p(jobdir, 0755), 0);
	assert_int_equal(mkdir_p(layers, 0755), 0);
	assert_int_equal(mkdir_p(work, 0755), 0);
	assert_int_equal(make_cell_layer(work, layer), 0);
	s.id = "20260101-000000-abcdef";
	s.runtime = RUNTIME_NONE;
	s.np = 4;
	s.cell_layer = "../../layers/cell.tar.gz";
	s.python = "/usr/bin/python3";
	s.workdir = "/pystrib/cell";
	s.env = env;
	s.nenv = 1;
	s.hosts = "198.18.0.1:2,198.18.0.2:2";
	s.master_addr = "198.18.0.1";
	s.other_hosts = others;
	s.nother_hosts = 1;
	assert_int_equal(launch_script(&s, &b), 0);
	want_in(b.ptr, "ps_hosts=198.18.0.1:2,198.18.0.2:2\n");
	want_in(b.ptr, "ps_master_addr=198.18.0.1\n");
	char *script = xstrfmt("%s/run.sh", jobdir);
	assert_int_equal(write_file(script, b.ptr, b.len), 0);

	char *dir = fake_path();
	char *ssh = xstrfmt("%s/ssh", dir);
	char *mpirun = xstrfmt("%s/mpirun", dir);
	/* run.sh's output mirror (its loop names .mirror-PID) sends nothing
	 * here: only the gathering's ssh is logged, never amid mpirun's. */
	char *fake_ssh = xstrfmt("#!/bin/sh\ncase \"$*\" in *.mirror-*) exit 0 ;; esac\n"
				 "{ printf ssh; for a; do printf '[%%s]' \"$a\"; done; echo; } >> \"$FAKE_LOG\"\n");
	assert_int_equal(write_file(ssh, fake_ssh, strlen(fake_ssh)), 0);
	assert_int_equal(chmod(ssh, 0755), 0);
	/* Open MPI's words when it loses the daemon of a host. */
	static const char lost[] = "#!/bin/sh\n"
		"{ printf mpirun; for a; do printf '[%s]' \"$a\"; done; echo; } >> \"$FAKE_LOG\"\n"
		"echo \"PYSTRIB_MASTER_ADDR=$PYSTRIB_MASTER_ADDR\" >> \"$FAKE_LOG\"\n"
		"printf '%s\\n' 'ORTE has lost communication with a remote daemon.' '' "
		"'  HNP daemon   : [[1,0],0] on node h1' '  Remote daemon: [[1,0],1] on node 198.18.0.2' >&2\n"
		"exit 1\n";
	assert_int_equal(write_file(mpirun, lost, strlen(lost)), 0);
	char *path = xstrfmt("%s:/usr/bin:/bin", dir);
	run_job(jobdir, path);
	char *log = fake_log(jobdir);
	want_in(log, "[-np][4][-H][198.18.0.1:2,198.18.0.2:2][--mca][plm_rsh_agent][ssh]");
	want_in(log, "[-x][PYSTRIB_JOB_DIR]");
	want_in(log, "[-x][PYSTRIB_MASTER_ADDR][-x][PYSTRIB_MASTER_PORT]");
	want_in(log, "[-x][MYVAR]");
	want_in(log, "PYSTRIB_MASTER_ADDR=198.18.0.1\n");
	want_in(log, "ssh[-o][BatchMode=yes][-o][ConnectTimeout=10][198.18.0.2][cd '");
	want_in(log, "' && tar -cf - logs results]");
	char *st = job_file(jobdir, "state"), *why = job_file(jobdir, "reason");
	char *err = job_file(jobdir, "error");
	assert_string_equal(st, "failed\n");
	assert_string_equal(why, "host\n");
	want_in(err, "host '198.18.0.2' was lost while the job ran");
	free(st);
	free(why);
	free(err);
	free(log);
	free(path);
	free(fake_ssh);
	free(mpirun);
	free(ssh);
	free(dir);
	free(script);
	buf_release(&b);
	free(work);
	free(layer);
	free(layers);
	free(jobdir);
	free(top);
}

/* docker and podman, run with a fake engine: every word arrives as it was. */
static void test_container_scripts(void **state)
{
	(void)state;
	const char *env[] = { "LR=$(touch MARKER)", "NAME=it's" };
	struct launch_spec s = { 0 };
	char *path = fake_path();
	char *in = xstrfmt("%s/password", tmpdir);
	assert_int_equal(write_file(in, "s3cret'\n", 8), 0);

	s.id = "20260101-000000-abcdef";
	s.np = 3;
	s.timeout = 7;
	s.image = "127.0.0.1:5000/cells@sha256:0123";
	s.env = env;
	s.nenv = 2;
	s.args = hostile_args;
	s.mpirun_args = "--oversubscribe  --bind-to none";
	for (int rt = RUNTIME_DOCKER; rt <= RUNTIME_PODMAN; rt++) {
		struct buf b = BUF_INIT;
		const char *name = rt == RUNTIME_DOCKER ? "docker" : "podman";
		s.runtime = (enum runtime)rt;
		s.gpus = rt == RUNTIME_DOCKER ? "0,1" : "2";
		s.login_registry = "127.0.0.1:5000";
		s.login_user = "me; touch MARKER";
		s.tls_verify_off = 1;
		assert_int_equal(launch_script(&s, &b), 0);
		assert_true(sh_syntax_ok(b.ptr, tmpdir));
		assert_non_null(strstr(b.ptr, "\nps_timeout=7\n"));
		/* The password is never in the script: it arrives on stdin. */
		assert_null(strstr(b.ptr, "s3cret"));
		buf_release(&b);

		char *jobdir = job_with_script(name, &s);
		assert_int_equal(run_job_with(jobdir, path, in, NULL), 0);
		char *log = fake_log(jobdir), *st = job_file(jobdir, "state");
		assert_string_equal(st, "succeeded\n");
		free(st);
		/* An image not there yet: logged in (the password from stdin), pulled. */
		want_in(log, rt == RUNTIME_DOCKER
			? "docker[image][inspect][--format][.][127.0.0.1:5000/cells@sha256:0123]\n"
			: "podman[image][exists][127.0.0.1:5000/cells@sha256:0123]\n");
		want_in(log, rt == RUNTIME_DOCKER
			? "docker[login][--password-stdin][--username][me; touch MARKER][127.0.0.1:5000]\n"
			: "podman[login][--authfile]");
		want_in(log, "stdin[s3cret']\n");
		want_in(log, rt == RUNTIME_DOCKER ? "docker[pull][-q][127.0.0.1:5000/cells@sha256:0123]\n"
			: "podman[pull][-q][--tls-verify=false][--authfile]");
		if (rt == RUNTIME_DOCKER)
			assert_null(strstr(log, "--tls-verify"));
		want_in(log, "[run][--name][pystrib-20260101-000000-abcdef][--network][host][--ipc][host]");
		assert_null(strstr(log, "--shm-size"));	/* podman refuses it with host IPC */
		/* Concurrent jobs' Open MPI files apart in the shared /dev/shm. */
		want_in(log, "[-e][OMPI_MCA_btl_vader_backing_directory=/dev/shm/pystrib-20260101-000000-abcdef]");
		want_in(log, "[-e][LR=$(touch MARKER)][-e][NAME=it's][127.0.0.1:5000/cells@sha256:0123]"
			"[mpirun][--allow-run-as-root][-np][3][--oversubscribe][--bind-to][none][python3]"
			"[/pystrib/cell/bootstrap.py][/pystrib/cell/user_code.py][two words][it's][\"dq\"]"
			"[$(touch MARKER)][`touch MARKER`][; touch MARKER][$HOME][*][-n][line\nbreak][][~]\n");
		/* Inside the container the given devices are numbered from 0. */
		if (rt == RUNTIME_DOCKER)
			want_in(log, "[-e][PYSTRIB_GPUS=2][--gpus][\"device=0,1\"]");
		else
			want_in(log, "[-e][PYSTRIB_GPUS=2][--device][nvidia.com/gpu=0][--device][nvidia.com/gpu=1][-e]");
		want_in(log, rt == RUNTIME_DOCKER ? "docker[rm][-f][pystrib-20260101-000000-abcdef]\n"
			: "podman[rm][-f][-t][0][pystrib-20260101-000000-abcdef]\n");
		free(log);
		/* The registry login went with the pull. */
		char *auth = xstrfmt("%s/.auth", jobdir);
		assert_int_equal(access(auth, F_OK), -1);
		free(auth);
		free(jobdir);

		/* Pulled before the job (run, through the engine's socket): no
		 * check, no login, no pull, and no password read from stdin. */
		s.image_present = 1;
		jobdir = job_with_script(name, &s);
		assert_int_equal(run_job_with(jobdir, path, in, NULL), 0);
		log = fake_log(jobdir);
		assert_null(strstr(log, "[pull]"));
		assert_null(strstr(log, "[login]"));
		assert_null(strstr(log, "[image]"));
		assert_null(strstr(log, "stdin["));
		want_in(log, "[run][--name]");
		st = job_file(jobdir, "state");
		assert_string_equal(st, "succeeded\n");
		free(st);
		free(log);
		free(jobdir);
		s.image_present = 0;
	}
	/* Nothing ran that the words held. */
	char *find = xstrfmt("test -z \"$(find '%s' -name MARKER)\"", tmpdir);
	assert_int_equal(system(find), 0);
	free(find);
	free(in);
	free(path);
}

static void test_gpu_specs(void **state)
{
	(void)state;
	static const struct { int rt; const char *gpus, *want; } cases[] = {
		{ RUNTIME_DOCKER, "all", "[-e][PYSTRIB_GPUS=all][--gpus][all][" },
		{ RUNTIME_DOCKER, "3", "[-e][PYSTRIB_GPUS=3][--gpus][3][" },
		{ RUNTIME_DOCKER, "2,5,7", "[-e][PYSTRIB_GPUS=3][--gpus][\"device=2,5,7\"][" },
		{ RUNTIME_PODMAN, "all", "[-e][PYSTRIB_GPUS=all][--device][nvidia.com/gpu=all][" },
		{ RUNTIME_PODMAN, "2", "[-e][PYSTRIB_GPUS=2][--device][nvidia.com/gpu=0][--device][nvidia.com/gpu=1][" },
		{ RUNTIME_PODMAN, "5,7", "[-e][PYSTRIB_GPUS=2][--device][nvidia.com/gpu=5][--device][nvidia.com/gpu=7][" },
		/* runtime none: the host's own indexes, dealt by the bootstrap */
		{ RUNTIME_NONE, "5,7", "\nps_gpus=5,7\n" },
	};
	char *path = fake_path();
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct launch_spec s = { 0 };
		s.id = "20260101-000000-abcdef";
		s.np = 2;
		s.runtime = (enum runtime)cases[i].rt;
		s.image = "127.0.0.1:5000/cells@sha256:0123";
		s.image_present = 1;
		s.cell_layer = "../../layers/x.tar.gz";
		s.gpus = cases[i].gpus;
		for (int with = 1; with >= 0; with--) {
			s.gpus = with ? cases[i].gpus : NULL;
			if (s.runtime == RUNTIME_NONE) {
				struct buf b = BUF_INIT;
				assert_int_equal(launch_script(&s, &b), 0);
				if (with)
					want_in(b.ptr, cases[i].want);
				else
					assert_non_null(strstr(b.ptr, "\nps_gpus=''\n"));
				buf_release(&b);
				continue;
			}
			char *jobdir = job_with_script("gpus", &s);
			assert_int_equal(run_job_with(jobdir, path, NULL, NULL), 0);
			char *log = fake_log(jobdir);
			/* No GPU flag at all without --gpus. */
			if (with)
				want_in(log, cases[i].want);
			else
				assert_true(!strstr(log, "PYSTRIB_GPUS") && !strstr(log, "nvidia.com") &&
					    !strstr(log, "--gpus"));
			free(log);
			free(jobdir);
		}
	}
	free(path);
}

/* What a job that could not run leaves: reason code, one line of error, exit. */
static void test_failure_reasons(void **state)
{
	(void)state;
	static const struct {
		int rt;
		const char *fake, *python, *code, *error, *exit;
	} cases[] = {
		{ RUNTIME_DOCKER, "gpu", NULL, "no-gpu\n", "docker on this host cannot give the container "
		  "the GPUs asked for (all): docker: Error response from daemon: could not select device "
		  "driver \"\" with capabilities: [[gpu]].\n", "125\n" },
		{ RUNTIME_PODMAN, "125", NULL, "container\n", "podman could not start the container: "
		  "Error: the engine is not well\n", "125\n" },
		{ RUNTIME_NONE, "slots", NULL, "slots\n", "mpirun has not enough slots for 4 ranks (the host "
		  "has ", "1\n" },
		{ RUNTIME_NONE, "mpirun", NULL, "launch\n", "mpirun failed before any rank ran: mpirun was "
		  "unable to launch the specified application\n", "1\n" },
		{ RUNTIME_DOCKER, "slots", NULL, "slots\n", "cores; --oversubscribe allows more): There are not "
		  "enough slots available in the system to satisfy the 4 slots that were requested by the "
		  "application\n", "1\n" },
		{ RUNTIME_NONE, NULL, "/opt/no/such/python3", "not-installed\n",
		  "'/opt/no/such/python3' is not installed on this host", "127\n" },
		/* A rank's own failure: no reason, no error. */
		{ RUNTIME_NONE, "rank", NULL, "", "", "1\n" },
	};
	char *path = fake_path();
	char *layers = xstrfmt("%s/reasons-layers", tmpdir);
	char *layer = xstrfmt("%s/cell.tar.gz", layers);
	assert_int_equal(mkdir_p(layers, 0755), 0);
	assert_int_equal(make_cell_layer(layers, layer), 0);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct launch_spec s = { 0 };
		s.id = "20260101-000000-abcdef";
		s.np = 4;
		s.runtime = (enum runtime)cases[i].rt;
		s.image = "127.0.0.1:5000/cells@sha256:0123";
		s.image_present = 1;
		s.cell_layer = layer;
		s.python = cases[i].python ? cases[i].python : "/usr/bin/python3";
		s.gpus = cases[i].rt == RUNTIME_DOCKER ? "all" : NULL;
		char *jobdir = job_with_script("reasons", &s);
		int got = run_job_with(jobdir, path, NULL, cases[i].fake);
		if (got != atoi(cases[i].exit)) {
			char *jerr = job_file(jobdir, "logs/job.err");
			fail_msg("case %zu: exit %d, logs/job.err:\n%s", i, got, jerr);
		}
		char *code = job_file(jobdir, "reason"), *err = job_file(jobdir, "error");
		char *ex = job_file(jobdir, "exit"), *st = job_file(jobdir, "state");
		if (strcmp(code, cases[i].code) || !strstr(err, cases[i].error) ||
		    (*err && strchr(err, '\n') != err + strlen(err) - 1))
			fail_msg("case %zu: reason '%s', error '%s'", i, code, err);
		assert_string_equal(ex, cases[i].exit);
		assert_string_equal(st, "failed\n");
		free(code);
		free(err);
		free(ex);
		free(st);
		free(jobdir);
	}
	free(layer);
	free(layers);
	free(path);
}

/* The engine's container for a job that starts without a remote shell. */
static void test_engine_config(void **state)
{
	(void)state;
	const char *env[] = { "LR=0.01", "Q=$(touch MARKER) 'x'" };
	char *workdir = xstrfmt("%s/sub dir", tmpdir);
	struct launch_spec s = {
		.id = "20261123-000000-abcdef", .runtime = RUNTIME_DOCKER, .np = 3, .timeout = 9,
		.image = "127.0.0.1:5000/cells@sha256:abc", .image_present = 1, .in_engine = 1,
		.workdir = workdir, .env = env, .nenv = 2, .gpus = "0,2",
		.args = hostile_args,
	};
	struct buf script = BUF_INIT;
	assert_int_equal(mkdir_p(workdir, 0755), 0);
	assert_int_equal(launch_script(&s, &script), 0);
	assert_true(sh_syntax_ok(script.ptr, tmpdir));
	assert_non_null(strstr(script.ptr, "\nps_mode=engine\n"));
	/* In the container: mpirun itself, no engine, no login, no pull. */
	char *path = fake_path();
	char *jobdir = job_with_script("engine", &s);
	if (run_job_with(jobdir, path, NULL, NULL) != 0) {
		char *jerr = job_file(jobdir, "logs/job.err");
		fail_msg("logs/job.err:\n%s", jerr);
	}
	char *log = fake_log(jobdir);
	want_in(log, "mpirun[--allow-run-as-root][-np][3][python3][/pystrib/cell/bootstrap.py]"
		"[/pystrib/cell/user_code.py][two words][it's]");
	assert_null(strstr(log, "docker"));
	assert_null(strstr(log, "podman"));
	free(log);
	char *cpid = job_file(jobdir, "cpid"), *pid = job_file(jobdir, "pid");
	assert_true(atoi(cpid) > 0);	/* the container's pid, not the host's */
	assert_string_equal(pid, "");
	free(cpid);
	free(pid);
	free(jobdir);
	free(path);
	/* Its working directory missing: said so, with its code. */
	s.workdir = "/no/such/dir";
	path = fake_path();
	jobdir = job_with_script("engine", &s);
	assert_int_equal(run_job_with(jobdir, path, NULL, NULL), 125);
	char *code = job_file(jobdir, "reason");
	assert_string_equal(code, "workdir\n");
	free(code);
	free(jobdir);
	free(path);
	s.workdir = workdir;

	json_t *c = launch_engine_config(&s, "/work dir/jobs/20261123-000000-abcdef", "{\"id\":1}",
					 script.ptr);
	assert_non_null(c);
	assert_string_equal(json_string_value(json_object_get(c, "Image")), s.image);
	/* The container's own command is jobctl.sh's engine action: the
	 * start `jobctl.sh start` makes, from its arguments, never from text
	 * pasted into it. */
	json_t *cmd = json_object_get(c, "Cmd");
	const struct embedded *jobctl = embedded_find("jobctl.sh");
	assert_non_null(jobctl);
	assert_int_equal(json_array_size(cmd), 8);
	assert_string_equal(json_string_value(json_array_get(cmd, 0)), "sh");
	assert_string_equal(json_string_value(json_array_get(cmd, 1)), "-c");
	assert_string_equal(json_string_value(json_array_get(cmd, 2)), (const char *)jobctl->data);
	assert_string_equal(json_string_value(json_array_get(cmd, 4)), "engine");
	assert_string_equal(json_string_value(json_array_get(cmd, 5)), "/pystrib/job");
	assert_string_equal(json_string_value(json_array_get(cmd, 6)), "{\"id\":1}");
	assert_string_equal(json_string_value(json_array_get(cmd, 7)), script.ptr);

	json_t *host = json_object_get(c, "HostConfig");
	json_t *binds = json_object_get(host, "Binds");
	assert_int_equal(json_array_size(binds), 1);
	assert_string_equal(json_string_value(json_array_get(binds, 0)),
			    "/work dir/jobs/20261123-000000-abcdef:/pystrib/job");
	assert_string_equal(json_string_value(json_object_get(host, "NetworkMode")), "host");
	assert_string_equal(json_string_value(json_object_get(host, "IpcMode")), "host");
	/* Its own PIDs: a cell's kill or pkill reaches nothing of the host's. */
	assert_null(json_object_get(host, "PidMode"));
	assert_non_null(strstr(script.ptr, "\nps_pidfile=cpid\n"));
	assert_true(json_is_true(json_object_get(host, "AutoRemove")));
	/* --gpus "device=0,2": those two, and PYSTRIB_GPUS counts them. */
	json_t *dr = json_array_get(json_object_get(host, "DeviceRequests"), 0);
	assert_non_null(dr);
	assert_int_equal(json_array_size(json_object_get(dr, "DeviceIDs")), 2);
	assert_string_equal(json_string_value(json_array_get(json_object_get(dr, "DeviceIDs"), 1)), "2");
	assert_string_equal(json_string_value(json_array_get(json_array_get(
		json_object_get(dr, "Capabilities"), 0), 0)), "gpu");

	json_t *e = json_object_get(c, "Env");
	int seen = 0;
	for (size_t i = 0; i < json_array_size(e); i++) {
		const char *v = json_string_value(json_array_get(e, i));
		seen |= !strcmp(v, "PYSTRIB_JOB_DIR=/pystrib/job") << 0;
		seen |= !strcmp(v, "PYSTRIB_RESULTS=/pystrib/job/results") << 1;
		seen |= !strcmp(v, "PYSTRIB_JOB_ID=20261123-000000-abcdef") << 2;
		seen |= !strcmp(v, "PYSTRIB_GPUS=2") << 3;
		seen |= !strcmp(v, "Q=$(touch MARKER) 'x'") << 4;
	}
	assert_int_equal(seen, 31);
	assert_string_equal(json_string_value(json_object_get(json_object_get(c, "Labels"),
							      "pystrib.job")), s.id);
	json_decref(c);

	/* all, and a count. */
	s.gpus = "all";
	c = launch_engine_config(&s, "/j", "{}", "");
	dr = json_array_get(json_object_get(json_object_get(c, "HostConfig"), "DeviceRequests"), 0);
	assert_int_equal(json_integer_value(json_object_get(dr, "Count")), -1);
	json_decref(c);
	s.gpus = "2";
	c = launch_engine_config(&s, "/j", "{}", "");
	dr = json_array_get(json_object_get(json_object_get(c, "HostConfig"), "DeviceRequests"), 0);
	assert_int_equal(json_integer_value(json_object_get(dr, "Count")), 2);
	json_decref(c);
	s.gpus = NULL;
	c = launch_engine_config(&s, "/j", "{}", "");
	assert_null(json_object_get(json_object_get(c, "HostConfig"), "DeviceRequests"));
	json_decref(c);
	buf_release(&script);
	free(workdir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rejects_bad_specs),
		cmocka_unit_test(test_container_scripts),
		cmocka_unit_test(test_gpu_specs),
		cmocka_unit_test(test_missing_commands),
		cmocka_unit_test(test_none_runs_for_real),
		cmocka_unit_test(test_failure_reasons),
		cmocka_unit_test(test_engine_config),
		cmocka_unit_test(test_hosts_script),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
