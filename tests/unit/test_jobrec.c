/*
 * Unit tests for jobrec.c: ids, save/load round trips (unknown fields
 * kept), listing newest first, resolving JOB arguments with their errors,
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
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "buf.h"
#include "config.h"
#include "error.h"
#include "jobrec.h"
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
	assert_int_equal(jobrec_load(&l, "20261123-090334-000000"), -1);
	assert_string_equal(error_message(), "no job '20261123-090334-000000'");
	assert_int_equal(error_kind(), PS_EXIT_USAGE);
	free(path);
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

/* Adds one rank's exit code, as concurrent followers would. */
static int bump(struct jobrec *r, void *ctx)
{
	int i = *(int *)ctx;
	r->ranks[i].exit_code = i;
	r->ranks[i].duration = i;
	return 0;
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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ids),
		cmocka_unit_test(test_dir),
		cmocka_unit_test_setup(test_round_trip, clean),
		cmocka_unit_test_setup(test_list_resolve, clean),
		cmocka_unit_test_setup(test_concurrent, clean),
		cmocka_unit_test_setup(test_target, clean),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
