/*
 * Unit tests for jobrec.c: ids, save/load round trips (unknown fields
 * kept), listing newest first; jobarg.c: resolving JOB arguments with their
 * errors; jobremote.c: applying a remote's state, the job's target (the
 * config's, or the record's own from any directory and config);
 * and several processes writing records at once (fork): every record must
 * be complete and valid JSON afterwards, and read-modify-write updates of
 * one record must lose none of the changes.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "buf.h"
#include "config.h"
#include "error.h"
#include "jobarg.h"
#include "jobrec.h"
#include "jobremote.h"
#include "remote_job.h"
#include "ssh.h"
#include "testutil.h"

static char *tmp;

static int setup(void **state)
{
	(void)state;
	tmp = test_tmpdir("jobrec");
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	test_tmpdir_remove(tmp);
	return 0;
}

static int clean(void **state)
{
	(void)state;
	char *dir = jobrec_dir();
	test_sh(tmp, "rm -rf '%s'", dir);
	free(dir);
	error_clear();
	return 0;
}

static void make(struct jobrec *r, const char *id, const char *remote, int np)
{
	jobrec_init(r);
	jobrec_set(&r->id, id);
	jobrec_set(&r->remote, remote);
	jobrec_set(&r->jobdir, "~/.pystrib/jobs/x");
	jobrec_set(&r->state, "running");
	jobrec_set(&r->image, "127.0.0.1:5000/cells:abc@sha256:00");
	jobrec_set_np(r, np);
	r->created = 1700000000.25;
}

static void save(const char *id, const char *remote, int np)
{
	struct jobrec r;
	make(&r, id, remote, np);
	assert_int_equal(jobrec_save(&r), 0);
	jobrec_release(&r);
}

static void test_ids(void **state)
{
	(void)state;
	char a[JOBREC_ID_SIZE], b[JOBREC_ID_SIZE];

	assert_int_equal(jobrec_new_id(a), 0);
	assert_int_equal(jobrec_new_id(b), 0);
	assert_int_equal(strlen(a), JOBREC_ID_LEN);
	assert_true(jobrec_id_valid(a));
	assert_true(jobrec_id_valid(b));
	assert_string_not_equal(a, b);	/* 2^-24 to fail by chance */
	assert_true(jobrec_id_valid("20261123-090334-0a9fce"));
	assert_false(jobrec_id_valid("20261123-090334-0A9FCE"));
	assert_false(jobrec_id_valid("20261123-090334-0a9fc"));
	assert_false(jobrec_id_valid("20261123_090334-0a9fce"));
	assert_false(jobrec_id_valid("../../../etc/passwd"));
	assert_false(jobrec_id_valid(""));
	assert_false(jobrec_id_valid(NULL));
}

static void test_dir(void **state)
{
	(void)state;
	char *d;

	setenv("XDG_STATE_HOME", "/somewhere/state", 1);
	d = jobrec_dir();
	assert_string_equal(d, "/somewhere/state/pystrib/jobs");
	free(d);
	setenv("XDG_STATE_HOME", "relative", 1);	/* ignored, per the spec */
	d = jobrec_dir();
	char *want = xstrfmt("%s/.local/state/pystrib/jobs", getenv("HOME"));
	assert_string_equal(d, want);
	free(want);
	free(d);
	setenv("XDG_STATE_HOME", tmp, 1);
}

static void test_round_trip(void **state)
{
	(void)state;
	struct jobrec r, l;
	char *path;
	struct stat st;

	make(&r, "20261123-090334-0a9fce", "gpu1", 3);
	jobrec_set(&r.revision, "abc123-dirty");
	jobrec_set(&r.host, "me@host:2222");
	r.exit_code = 1;
	r.ranks[0].exit_code = 0;
	r.ranks[0].duration = 1.5;
	r.ranks[1].exit_code = 1;
	r.started = 1700000001;
	assert_int_equal(jobrec_save(&r), 0);

	path = jobrec_path(r.id);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);

	assert_int_equal(jobrec_load(&l, "20261123-090334-0a9fce"), 0);
	assert_string_equal(l.id, r.id);
	assert_string_equal(l.remote, "gpu1");
	assert_string_equal(l.host, "me@host:2222");
	assert_string_equal(l.revision, "abc123-dirty");
	assert_string_equal(l.state, "running");
	assert_null(l.digest);
	assert_int_equal(l.np, 3);
	assert_int_equal(l.exit_code, 1);
	assert_int_equal(l.ranks[0].exit_code, 0);
	assert_true(l.ranks[0].duration == 1.5);
	assert_int_equal(l.ranks[1].exit_code, 1);
	assert_int_equal(l.ranks[2].exit_code, -1);
	assert_true(l.ranks[2].duration < 0);
	assert_true(l.created == 1700000000.25);
	assert_true(l.started == 1700000001);
	assert_true(l.ended == 0);
	jobrec_release(&l);

	/* A field of a later version survives a rewrite by this one. */
	json_error_t err;
	json_t *o = json_load_file(path, 0, &err);
	assert_non_null(o);
	json_object_set_new(o, "future_field", json_string("keep me"));
	assert_int_equal(json_dump_file(o, path, 0), 0);
	json_decref(o);
	assert_int_equal(jobrec_load(&l, r.id), 0);
	jobrec_set(&l.state, "succeeded");
	assert_int_equal(jobrec_save(&l), 0);
	jobrec_release(&l);
	o = json_load_file(path, 0, &err);
	assert_string_equal(json_string_value(json_object_get(o, "future_field")), "keep me");
	assert_string_equal(json_string_value(json_object_get(o, "state")), "succeeded");
	json_decref(o);

	/* Corrupt and foreign records are errors, naming the file. */
	FILE *f = fopen(path, "w");
	fputs("{\"id\": \"20261123-090334-0a9f", f);
	fclose(f);
	assert_int_equal(jobrec_load(&l, r.id), -1);
	assert_non_null(strstr(error_message(), "corrupt"));
	assert_non_null(strstr(error_message(), path));
	assert_int_equal(error_kind(), PS_EXIT_IO);
	assert_int_equal(jobrec_load(&l, "20261123-090334-000000"), -1);
	assert_string_equal(error_message(), "no job '20261123-090334-000000'");
	assert_int_equal(error_kind(), PS_EXIT_USAGE);
	free(path);
	jobrec_release(&r);
}

/* Entries of dir other than "." and "..". */
static int count_entries(const char *dir)
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

/*
 * A record that cannot be written is a local I/O error (exit 6), whoever
 * runs the tests (root writes into any directory, so the obstacles are a
 * directory where the record goes and a file where the directory goes),
 * and leaves no temporary file behind.
 */
static void test_save_io_error(void **state)
{
	(void)state;
	struct jobrec r;
	char *dir = jobrec_dir(), *path;

	make(&r, "20261123-090334-0a9fce", "gpu1", 1);
	path = jobrec_path(r.id);
	test_sh(tmp, "mkdir -p '%s'", path);
	assert_int_equal(jobrec_save(&r), -1);
	assert_int_equal(error_kind(), PS_EXIT_IO);
	assert_non_null(strstr(error_message(), path));
	assert_int_equal(count_entries(dir), 2);	/* .lock and the directory */
	error_clear();

	test_sh(tmp, "rm -rf '%s' && touch '%s'", dir, dir);
	assert_int_equal(jobrec_save(&r), -1);
	assert_int_equal(error_kind(), PS_EXIT_IO);
	assert_non_null(strstr(error_message(), dir));
	error_clear();
	test_sh(tmp, "rm -f '%s'", dir);

	free(path);
	free(dir);
	jobrec_release(&r);
}

static void test_list_resolve(void **state)
{
	(void)state;
	struct jobrec *v = NULL, r;
	size_t n = 99;

	assert_int_equal(jobrec_list(&v, &n), 0);	/* no directory yet */
	assert_int_equal(n, 0);
	jobrec_list_free(v, n);
	assert_int_equal(jobrec_resolve(&r, "last"), -1);
	assert_int_equal(error_kind(), PS_EXIT_USAGE);

	save("20261120-100000-aaaaaa", NULL, 1);
	save("20261122-100000-bbbbbb", "gpu1", 2);
	save("20261122-100000-bbbccc", "gpu2", 4);
	save("20261121-100000-cccccc", NULL, 1);
	char *dir = jobrec_dir();
	test_sh(dir, "echo garbage > not-a-job.json && echo '{}' > 20261101-000000-000000.json");
	free(dir);

	assert_int_equal(jobrec_list(&v, &n), 0);
	assert_int_equal(n, 4);
	assert_string_equal(v[0].id, "20261122-100000-bbbccc");
	assert_string_equal(v[1].id, "20261122-100000-bbbbbb");
	assert_string_equal(v[2].id, "20261121-100000-cccccc");
	assert_string_equal(v[3].id, "20261120-100000-aaaaaa");
	jobrec_list_free(v, n);

	assert_int_equal(jobrec_resolve(&r, "last"), 0);
	assert_string_equal(r.id, "20261122-100000-bbbccc");
	jobrec_release(&r);
	assert_int_equal(jobrec_resolve(&r, "20261121"), 0);
	assert_string_equal(r.id, "20261121-100000-cccccc");
	jobrec_release(&r);
	assert_int_equal(jobrec_resolve(&r, "20261122-100000-bbbb"), 0);
	assert_string_equal(r.remote, "gpu1");
	jobrec_release(&r);

	/* Ambiguous: both candidates listed. */
	assert_int_equal(jobrec_resolve(&r, "20261122-100000-bbb"), -1);
	assert_int_equal(error_kind(), PS_EXIT_USAGE);
	assert_non_null(strstr(error_message(), "ambiguous"));
	assert_non_null(strstr(error_message(), "20261122-100000-bbbccc"));
	assert_non_null(strstr(error_message(), "20261122-100000-bbbbbb"));
	assert_null(strstr(error_message(), "cccccc,"));

	/* Unknown: the known ones are in the hint. */
	assert_int_equal(jobrec_resolve(&r, "2025"), -1);
	assert_string_equal(error_message(), "no job '2025'");
	assert_non_null(strstr(error_hint_text(), "20261120-100000-aaaaaa"));
	assert_int_equal(jobrec_resolve(&r, ""), -1);
	assert_int_equal(jobrec_resolve(&r, "../x"), -1);

	assert_int_equal(jobrec_remove("20261122-100000-bbbccc"), 0);
	assert_int_equal(jobrec_remove("20261122-100000-bbbccc"), 0);
	assert_int_equal(jobrec_resolve(&r, "20261122-100000-bbb"), 0);
	jobrec_release(&r);
}

/* Saves a record with the given creation time. */
static void save_created(const char *id, double created)
{
	struct jobrec r;
	make(&r, id, NULL, 1);
	r.created = created;
	assert_int_equal(jobrec_save(&r), 0);
	jobrec_release(&r);
}

/*
 * Submissions within one second: their ids say the same second, so the
 * records' creation times decide which is newest (not the random part).
 */
static void test_same_second(void **state)
{
	(void)state;
	struct jobrec *v = NULL, r;
	size_t n;

	save_created("20261123-120000-ffffff", 1795435200.10);
	save_created("20261123-120000-000001", 1795435200.90);
	save_created("20261123-120000-888888", 1795435200.50);
	save_created("20261123-115959-ffffff", 1795435199.99);
	save_created("20261123-120000-aaaaaa", 0);	/* an old record without it */

	assert_int_equal(jobrec_resolve(&r, "last"), 0);
	assert_string_equal(r.id, "20261123-120000-000001");
	jobrec_release(&r);
	assert_int_equal(jobrec_list(&v, &n), 0);
	assert_int_equal(n, 5);
	assert_string_equal(v[0].id, "20261123-120000-000001");
	assert_string_equal(v[1].id, "20261123-120000-888888");
	assert_string_equal(v[2].id, "20261123-120000-ffffff");
	assert_string_equal(v[3].id, "20261123-120000-aaaaaa");
	assert_string_equal(v[4].id, "20261123-115959-ffffff");
	jobrec_list_free(v, n);

	/* A record that cannot be read is passed over by 'last'. */
	char *path = jobrec_path("20261123-120000-000001");
	test_sh(tmp, "echo '{\"id\": ' > '%s'", path);
	free(path);
	assert_int_equal(jobrec_resolve(&r, "last"), 0);
	assert_string_equal(r.id, "20261123-120000-888888");
	jobrec_release(&r);
	error_clear();
}

/* Adds one rank's exit code, as concurrent followers would. */
static int bump(struct jobrec *r, void *ctx)
{
	int i = *(int *)ctx;
	r->ranks[i].exit_code = i;
	r->ranks[i].duration = i;
	return 0;
}

/*
 * Loads every record file in the directory, `rounds` times over: 0 when
 * each one present loaded whole, else 1 (and says which).
 */
static int read_all_records(int rounds)
{
	char *dir = jobrec_dir();
	int bad = 0, loaded = 0;

	for (int k = 0; k < rounds && !bad; k++) {
		DIR *d = opendir(dir);
		struct dirent *de;
		while (d && (de = readdir(d)) && !bad) {
			size_t len = strlen(de->d_name);
			if (de->d_name[0] == '.' || len != JOBREC_ID_LEN + 5)
				continue;
			char *id = xstrndup(de->d_name, JOBREC_ID_LEN);
			struct jobrec one;
			if (jobrec_load(&one, id) == 0) {
				loaded++;
				jobrec_release(&one);
			} else if (strncmp(error_message(), "no job", 6)) {
				fprintf(stderr, "reader: %s\n", error_message());
				bad = 1;
			}
			error_clear();
			free(id);
		}
		if (d)
			closedir(d);
	}
	free(dir);
	return bad || !loaded;
}

static void test_concurrent(void **state)
{
	(void)state;
	enum { WRITERS = 8, EACH = 10 };
	const char *shared = "20261123-000000-5ba7ed";
	pid_t pids[WRITERS];
	struct jobrec *v = NULL, r;
	size_t n;

	save(shared, NULL, WRITERS * EACH);
	/*
	 * A reader beside the writers (`pystrib jobs` while cells submit):
	 * every record it finds must load whole, never half-written.
	 */
	pid_t reader = fork();
	assert_true(reader >= 0);
	if (reader == 0) {
		_exit(read_all_records(40));
	}
	for (int w = 0; w < WRITERS; w++) {
		pids[w] = fork();
		assert_true(pids[w] >= 0);
		if (pids[w] == 0) {
			int bad = 0;
			for (int k = 0; k < EACH; k++) {
				char id[JOBREC_ID_SIZE];
				struct jobrec mine;
				int slot = w * EACH + k;
				/* New records, each with its own id... */
				if (jobrec_new_id(id) < 0)
					bad = 1;
				make(&mine, id, "gpu", w + 1);
				mine.exit_code = w;
				if (jobrec_save(&mine) < 0)
					bad = 1;
				jobrec_release(&mine);
				/* ...and updates of one shared record. */
				if (jobrec_update(shared, bump, &slot) < 0)
					bad = 1;
			}
			_exit(bad);
		}
	}
	for (int w = 0; w < WRITERS; w++) {
		int status;
		assert_int_equal(waitpid(pids[w], &status, 0), pids[w]);
		assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	}
	int rstatus;
	assert_int_equal(waitpid(reader, &rstatus, 0), reader);
	assert_true(WIFEXITED(rstatus));
	assert_int_equal(WEXITSTATUS(rstatus), 0);
	/* Every record complete; ids never collide (2^24 per second). */
	assert_int_equal(jobrec_list(&v, &n), 0);
	assert_int_equal(n, 1 + WRITERS * EACH);
	for (size_t i = 0; i < n; i++) {
		if (!strcmp(v[i].id, shared))
			continue;
		assert_string_equal(v[i].remote, "gpu");
		assert_int_equal(v[i].np, v[i].exit_code + 1);
	}
	jobrec_list_free(v, n);
	/* No update was lost. */
	assert_int_equal(jobrec_load(&r, shared), 0);
	for (int i = 0; i < WRITERS * EACH; i++)
		assert_int_equal(r.ranks[i].exit_code, i);
	jobrec_release(&r);
	/* No temporary file left behind. */
	char *dir = jobrec_dir();
	char *cmd = xstrfmt("test -z \"$(ls -A '%s' | grep -v -e '^.lock$' -e '.json$')\"", dir);
	test_sh(tmp, "%s", cmd);
	free(cmd);
	free(dir);
}

/*
 * What the remote said, applied to a record: a directory removed after
 * the job ended keeps its outcome (only the reason says so); one removed
 * before makes it lost. Either way the commands that need the directory
 * say so clearly.
 */
static void test_apply_gone(void **state)
{
	(void)state;
	struct jobrec r;
	int rank_exit[2] = { 0, 3 };
	double rank_ended[2] = { 1700000010.5, 1700000011.0 };
	struct remote_job_state st = { 0 };

	make(&r, "20261123-090334-0a9fce", NULL, 1);
	st.state = "failed";
	st.exit_code = 3;
	st.started = 1700000001.0;
	st.ended = 1700000012.0;
	st.np = 2;
	st.rank_exit = rank_exit;
	st.rank_ended = rank_ended;
	jobrec_apply_state(&r, &st);
	assert_string_equal(r.state, "failed");
	assert_int_equal(r.np, 2);
	assert_int_equal(r.ranks[1].exit_code, 3);
	assert_true(r.ranks[1].duration > 9.99 && r.ranks[1].duration < 10.01);
	assert_false(jobrec_dir_gone(&r));

	/* A stale read (begun before the end was recorded) changes nothing. */
	struct remote_job_state old = { 0 };
	old.state = "running";
	old.exit_code = -1;
	old.started = 1700000001.0;
	jobrec_apply_state(&r, &old);
	assert_string_equal(r.state, "failed");
	assert_int_equal(r.exit_code, 3);

	struct remote_job_state gone = { 0 };
	gone.state = "lost";
	gone.reason = "the job directory '/w/jobs/x' is gone";
	gone.code = REASON_DIR_GONE;
	gone.exit_code = -1;
	jobrec_apply_state(&r, &gone);
	assert_string_equal(r.state, "failed");	/* the outcome is kept */
	assert_int_equal(r.exit_code, 3);
	assert_int_equal(r.ranks[1].exit_code, 3);
	assert_true(jobrec_dir_gone(&r));
	jobrec_set(&r.results, "/tmp/res");
	assert_int_equal(jobrec_gone_error(&r), -1);
	assert_int_equal(error_kind(), PS_EXIT_REMOTE);
	assert_non_null(strstr(error_message(), "(failed) has no directory on the remote any more"));
	assert_non_null(strstr(error_hint_text(), "/tmp/res"));
	error_clear();
	jobrec_release(&r);

	/* Gone while it ran: lost. */
	make(&r, "20261123-090334-0a9fce", NULL, 1);
	jobrec_apply_state(&r, &gone);
	assert_string_equal(r.state, "lost");
	assert_true(jobrec_dir_gone(&r));
	jobrec_gone_error(&r);
	assert_string_equal(error_message(),
			    "job '20261123-090334-0a9fce' is lost: the job directory '/w/jobs/x' is gone");
	error_clear();

	/* The job script killed: lost, but its directory is there to fetch. */
	struct remote_job_state killed = { 0 };
	killed.state = "lost";
	killed.reason = "the job script ended without a final state (killed, or the host restarted)";
	killed.code = REASON_DIED;
	killed.exit_code = -1;
	jobrec_apply_state(&r, &killed);
	assert_string_equal(r.state, "lost");
	assert_false(jobrec_dir_gone(&r));
	jobrec_release(&r);
}

static void test_target(void **state)
{
	(void)state;
	struct jobrec r;
	struct config cfg;
	struct ssh_target t = SSH_TARGET_INIT;
	char *ini = test_write_file(tmp, "pystrib.ini",
				    "[remote]\nhost = 127.0.0.1\nport = 2222\nuser = me\n"
				    "[remote.gpu1]\nhost = gpu1.example\n", 0600);

	make(&r, "20261123-090334-0a9fce", "gpu1", 1);
	assert_int_equal(jobrec_target(&r, ini, &cfg, &t), 0);
	assert_string_equal(t.host, "gpu1.example");
	config_release(&cfg);
	ssh_target_release(&t);

	jobrec_set(&r.remote, "gone");
	jobrec_set(&r.host_name, "me@old:22");
	assert_int_equal(jobrec_target(&r, ini, &cfg, &t), -1);
	assert_int_equal(error_kind(), PS_EXIT_USAGE);
	assert_non_null(strstr(error_message(), "remote 'gone', which is no longer configured"));
	assert_non_null(strstr(error_hint_text(), "me@old:22"));
	config_release(&cfg);
	ssh_target_release(&t);

	jobrec_set(&r.remote, NULL);
	jobrec_set(&r.host, "you@10.0.0.1:23");
	assert_int_equal(jobrec_target(&r, ini, &cfg, &t), 0);
	assert_string_equal(t.host, "10.0.0.1");
	assert_string_equal(t.user, "you");
	assert_int_equal(t.port, 23);
	config_release(&cfg);
	ssh_target_release(&t);
	jobrec_release(&r);
	free(ini);
}

/*
 * A job whose record holds its target is reached with it from anywhere:
 * with a config that lacks its remote, with none at all, and from another
 * directory; a recorded file that is gone says so.
 */
static void test_recorded_target(void **state)
{
	(void)state;
	struct jobrec r, l;
	struct config cfg;
	struct ssh_target t = SSH_TARGET_INIT, sub = SSH_TARGET_INIT;
	char *dir = xstrfmt("%s/a", tmp), *cwd = getcwd(NULL, 0);
	char *key, *ini, *other, *dir_b = xstrfmt("%s/b", tmp), *want;

	test_sh(tmp, "mkdir -p a b");
	key = test_write_file(dir, "key", "not a key\n", 0600);
	ini = test_write_file(dir, "job.ini", "[remote.bed]\nhost = 127.0.0.1\nworkdir = /w\n", 0600);
	other = test_write_file(dir_b, "other.ini", "[remote]\nhost = elsewhere\nuser = bob\n"
				"identity = /nonexistent\n", 0600);

	/* At submit, from dir a, with relative paths. */
	assert_int_equal(chdir(dir), 0);
	make(&r, "20261123-090334-0a9fce", "bed", 1);
	sub.host = xstrdup("127.0.0.1");
	sub.port = 2222;
	sub.user = xstrdup("me");
	sub.identity = xstrdup("key");
	jobrec_set_target(&r, &sub, "job.ini", "/w");
	jobrec_set(&r.jobdir, NULL);
	assert_int_equal(jobrec_save(&r), 0);
	jobrec_release(&r);
	ssh_target_release(&sub);

	/* Later, from dir b: the record's own values, whatever the config says. */
	assert_int_equal(chdir(dir_b), 0);
	assert_int_equal(jobrec_load(&l, "20261123-090334-0a9fce"), 0);
	want = xstrfmt("%s/key", dir);
	assert_string_equal(l.identity, want);
	free(want);
	want = xstrfmt("%s/job.ini", dir);
	assert_string_equal(l.config_file, want);
	free(want);
	assert_string_equal(l.workdir, "/w");
	assert_int_equal(l.ssh_port, 2222);
	for (int i = 0; i < 3; i++) {
		const char *file = i == 0 ? NULL : i == 1 ? other : "/nonexistent.ini";
		int rc = jobrec_target(&l, file, &cfg, &t);
		if (i == 2) {
			/* An explicit -c that cannot be read is still an error. */
			assert_int_equal(rc, -1);
			config_release(&cfg);
			ssh_target_release(&t);
			error_clear();
			continue;
		}
		assert_int_equal(rc, 0);
		assert_string_equal(t.host, "127.0.0.1");
		assert_int_equal(t.port, 2222);
		assert_string_equal(t.user, "me");
		assert_non_null(strstr(t.identity, "/a/key"));
		assert_string_equal(t.label, "bed");
		char *jd = jobrec_remote_dir(&l, &cfg);
		assert_string_equal(jd, "/w/jobs/20261123-090334-0a9fce");
		free(jd);
		config_release(&cfg);
		ssh_target_release(&t);
	}

	/* The job's own config was read when no -c was given. */
	assert_int_equal(jobrec_config(&l, NULL, &cfg), 0);
	assert_non_null(cfg.file);
	assert_non_null(strstr(cfg.file, "/a/job.ini"));
	assert_string_equal(cfg.remote.name, "bed");
	config_release(&cfg);

	/* The identity removed: a clear error naming it. */
	assert_int_equal(unlink(key), 0);
	assert_int_equal(jobrec_target(&l, NULL, &cfg, &t), -1);
	assert_int_equal(error_kind(), PS_EXIT_USAGE);
	assert_non_null(strstr(error_message(), "its identity file '"));
	assert_non_null(strstr(error_message(), "/a/key' is gone"));
	assert_non_null(strstr(error_hint_text(), "20261123-090334-0a9fce.json"));
	config_release(&cfg);
	ssh_target_release(&t);
	error_clear();

	/* An unknown field of the record is kept when the target is rewritten. */
	jobrec_set(&l.workdir, "/v");
	assert_int_equal(jobrec_save(&l), 0);
	jobrec_release(&l);
	assert_int_equal(jobrec_load(&l, "20261123-090334-0a9fce"), 0);
	assert_string_equal(l.workdir, "/v");
	jobrec_release(&l);

	assert_int_equal(chdir(cwd), 0);
	free(cwd);
	free(key);
	free(ini);
	free(other);
	free(dir);
	free(dir_b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ids),
		cmocka_unit_test(test_dir),
		cmocka_unit_test_setup(test_round_trip, clean),
		cmocka_unit_test_setup(test_save_io_error, clean),
		cmocka_unit_test_setup(test_list_resolve, clean),
		cmocka_unit_test_setup(test_same_second, clean),
		cmocka_unit_test_setup(test_concurrent, clean),
		cmocka_unit_test_setup(test_apply_gone, clean),
		cmocka_unit_test_setup(test_target, clean),
		cmocka_unit_test_setup(test_recorded_target, clean),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
