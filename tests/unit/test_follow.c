/*
 * Unit tests for follow.c and the follower it runs (src/remote/follow.sh):
 * the real script runs under /bin/sh over a job directory written here
 * (12 ranks, so rank 1's files must not be taken for rank 11's), and its
 * output goes through follow_feed, in pieces of every size, as it would
 * arrive over SSH.
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
#include <unistd.h>

#include "buf.h"
#include "embedded.h"
#include "error.h"
#include "follow.h"
#include "log.h"
#include "remote_job.h"
#include "testutil.h"

#define NP 12

/* Runs follow.sh over dir with MODE and every offset at 0; its stdout. */
/* follow.sh (written into script_dir) run over the job directory dir. */
static char *run_follower_in(const char *script_dir, const char *dir, const char *mode,
			     size_t *len)
{
	const struct embedded *e = embedded_find("follow.sh");
	struct buf cmd = BUF_INIT, out = BUF_INIT;
	char buf[4096];
	size_t n;

	assert_non_null(e);
	char *script = test_write_file(script_dir, "follow.sh", (const char *)e->data, 0644);
	buf_addf(&cmd, "sh '%s' '%s' %s %d", script, dir, mode, NP);
	for (int r = 0; r < NP; r++)
		buf_addstr(&cmd, " 0 0 0");
	FILE *p = popen(cmd.ptr, "r");
	assert_non_null(p);
	while ((n = fread(buf, 1, sizeof(buf), p)) > 0)
		buf_add(&out, buf, n);
	assert_int_equal(pclose(p), 0);
	free(script);
	buf_release(&cmd);
	return buf_detach(&out, len);
}

static char *run_follower(const char *dir, const char *mode, size_t *len)
{
	return run_follower_in(dir, dir, mode, len);
}

static char *slurp(FILE *f)
{
	struct buf b = BUF_INIT;
	char tmp[4096];
	size_t n;
	rewind(f);
	while ((n = fread(tmp, 1, sizeof(tmp), f)) > 0)
		buf_add(&b, tmp, n);
	return buf_detach(&b, NULL);
}

static void test_follower_over_a_job(void **state)
{
	(void)state;
	char *dir = test_tmpdir("follow");
	test_sh(dir, "mkdir logs results && echo '{\"np\": %d}' > job.json && echo failed > state"
		" && echo 1 > exit && echo 100.5 > started && echo 101.0 > launched && echo 103 > ended"
		" && echo 'registry: could not pull' > error && echo registry > reason", NP);
	/* Rank 1 and rank 11 both write; rank 1 fails without a final newline. */
	test_sh(dir, "printf 'one\\n' > logs/rank.1.out && printf 'eleven\\nmore\\n' > logs/rank.11.out"
		" && printf 'Traceback\\nValueError: x' > logs/rank.1.err && : > logs/rank.11.err"
		" && echo 1 > logs/rank.1.exit && echo 0 > logs/rank.11.exit");

	size_t len;
	char *proto = run_follower(dir, "f", &len);
	/* Fed in pieces of each size from 1 to 7 bytes, the result is the same. */
	for (size_t piece = 1; piece <= 7; piece++) {
		struct follow f;
		FILE *out = tmpfile(), *err = tmpfile();
		follow_init(&f, dir, NP);
		f.out = out;
		f.err = err;
		f.color = 0;
		for (size_t off = 0; off < len; off += piece)
			assert_int_equal(follow_feed(&f, proto + off, off + piece <= len ? piece : len - off), 0);
		fflush(out);
		fflush(err);
		char *o = slurp(out), *e = slurp(err);
		assert_string_equal(o, "[1] one\n[11] eleven\n[11] more\n");
		assert_string_equal(e, "[1] Traceback\n[1] ValueError: x\n");
		assert_true(f.done);
		assert_string_equal(f.state, "failed");
		assert_int_equal(f.exit_code, 1);
		assert_non_null(f.reason);
		assert_string_equal(f.reason, "registry: could not pull");
		assert_int_equal(f.code, REASON_REGISTRY);
		assert_int_equal(f.ranks[1].exit_code, 1);
		assert_int_equal(f.ranks[11].exit_code, 0);
		assert_int_equal(f.ranks[0].exit_code, -1);
		assert_true(f.launched > 100.9 && f.launched < 101.1);
		assert_string_equal(follow_err_tail(&f, 1, 1), "ValueError: x\n");
		assert_int_equal(f.ranks[1].off[0], 4);
		assert_int_equal(f.ranks[11].off[0], 12);
		free(o);
		free(e);
		fclose(out);
		fclose(err);
		follow_release(&f);
	}
	free(proto);
	test_tmpdir_remove(dir);
}

/* Results mode: after the end, a line "R" and a tar of results/ and logs/. */
static int count_tar(void *ctx, const void *data, size_t len)
{
	size_t *n = ctx;
	if (!data)
		*n = 0;
	else
		*n += len;
	return 0;
}

static void test_follower_sends_results(void **state)
{
	(void)state;
	char *dir = test_tmpdir("follow-tar");
	test_sh(dir, "mkdir logs results && echo '{}' > job.json && echo succeeded > state"
		" && echo 0 > exit && head -c 20000 /dev/zero > results/r.bin");
	size_t len, got = (size_t)-1;
	char *proto = run_follower(dir, "t", &len);
	struct follow f;
	follow_init(&f, dir, NP);
	f.on_tar = count_tar;
	f.ctx = &got;
	assert_int_equal(follow_feed(&f, proto, len), 0);
	assert_true(f.done);
	assert_null(f.reason);
	assert_int_equal(f.code, REASON_NONE);
	assert_true(got > 20000);	/* the tar, headers and all */
	assert_true(got % 512 == 0);
	follow_release(&f);
	free(proto);
	test_tmpdir_remove(dir);
}

/* The end line's reason code, from the job's files or the follower itself. */
static void test_reason_codes(void **state)
{
	(void)state;
	static const struct { const char *files; const char *code_name; enum job_reason code;
			      const char *why; } cases[] = {
		{ "echo failed > state && echo slots > reason && echo 'mpirun has not enough slots' > error",
		  "slots", REASON_SLOTS, "mpirun has not enough slots" },
		/* An older job script's error without a code. */
		{ "echo failed > state && echo 'registry: refused' > error", NULL, REASON_REGISTRY,
		  "registry: refused" },
		{ "echo failed > state && echo 'the host is sad' > error", NULL, REASON_HOST,
		  "the host is sad" },
		/* A code this pystrib does not know: some failure of the host. */
		{ "echo failed > state && echo newer-code > reason && echo 'what' > error", NULL,
		  REASON_HOST, "what" },
		{ "echo failed > state", NULL, REASON_NONE, NULL },
		/* Its job script gone without a final state. */
		{ "echo running > state && echo 999999 > pid", NULL, REASON_DIED,
		  "the job script ended without a final state (killed, or the host restarted)" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *dir = test_tmpdir("follow-code");
		test_sh(dir, "mkdir logs results && echo '{}' > job.json && echo 1 > exit && %s",
			cases[i].files);
		size_t len;
		char *proto = run_follower(dir, "f", &len);
		struct follow f;
		follow_init(&f, dir, NP);
		assert_int_equal(follow_feed(&f, proto, len), 0);
		assert_true(f.done);
		if (f.code != cases[i].code)
			fail_msg("case %zu: code %d in '%s'", i, f.code, proto);
		if (cases[i].why)
			assert_string_equal(f.reason, cases[i].why);
		else
			assert_null(f.reason);
		follow_release(&f);
		free(proto);
		test_tmpdir_remove(dir);
	}
	/* The directory gone. */
	size_t len;
	char *top = test_tmpdir("follow-gone");
	char *proto = run_follower_in(top, "/nonexistent/pystrib-job", "f", &len);
	test_tmpdir_remove(top);
	struct follow f;
	follow_init(&f, "/nonexistent/pystrib-job", NP);
	assert_int_equal(follow_feed(&f, proto, len), 0);
	assert_string_equal(f.state, "lost");
	assert_int_equal(f.code, REASON_DIR_GONE);
	assert_string_equal(f.reason, "the job directory is gone");
	follow_release(&f);
	free(proto);
	/* The line as parsed: a code without text, and no code at all. */
	follow_init(&f, "/nowhere", 1);
	assert_int_equal(follow_feed(&f, "E failed 4 1.5 2.5 launch\n", 26), 0);
	assert_int_equal(f.code, REASON_LAUNCH);
	assert_null(f.reason);
	assert_int_equal(f.exit_code, 4);
	follow_release(&f);
	follow_init(&f, "/nowhere", 1);
	assert_int_equal(follow_feed(&f, "E succeeded 0 1.5 2.5\n", 22), 0);
	assert_int_equal(f.code, REASON_NONE);
	assert_null(f.reason);
	follow_release(&f);
}

/* What `jobctl.sh read` prints, parsed (remote_job.c shares the codes). */
static void test_remote_job_parse(void **state)
{
	(void)state;
	static const char text[] =
		"alive 1\nstate failed\nexit 1\nstarted 1.5\nlaunched 2\nended 3.25\nruntime none\n"
		"container \nreason slots\nerror mpirun has not enough slots\n"
		"rank 0 143 2.5\nrank 7 1 1\njson\n{\"id\": \"x\", \"np\": 2}\n";
	struct remote_job_state st;
	assert_int_equal(remote_job_parse(text, strlen(text), &st), 0);
	assert_string_equal(st.state, "failed");
	assert_int_equal(st.code, REASON_SLOTS);
	assert_string_equal(st.reason, "mpirun has not enough slots");
	assert_int_equal(st.exit_code, 1);
	assert_true(st.ended > 3.2 && st.ended < 3.3);
	assert_int_equal(st.np, 2);
	assert_int_equal(st.rank_exit[0], 143);
	assert_int_equal(st.rank_exit[1], -1);	/* rank 7 is past np */
	assert_string_equal(st.job_json, "{\"id\": \"x\", \"np\": 2}\n");
	remote_job_state_release(&st);

	static const char dead[] = "alive 0\nstate running\nreason\nerror\njson\n{}";
	assert_int_equal(remote_job_parse(dead, strlen(dead), &st), 0);
	assert_string_equal(st.state, "lost");
	assert_int_equal(st.code, REASON_DIED);
	remote_job_state_release(&st);
	/* Not started yet: submitted, not lost. */
	assert_int_equal(remote_job_parse("alive 0\nstate submitted\njson\n", 29, &st), 0);
	assert_string_equal(st.state, "submitted");
	assert_int_equal(st.code, REASON_NONE);
	assert_null(st.reason);
	remote_job_state_release(&st);
	assert_int_equal(remote_job_parse("gone\n", 5, &st), 0);
	assert_string_equal(st.state, "lost");
	assert_int_equal(st.code, REASON_DIR_GONE);
	remote_job_state_release(&st);
	/* An older job script's error without a code. */
	static const char old[] = "alive 0\nstate failed\nerror registry: refused\njson\n{}";
	assert_int_equal(remote_job_parse(old, strlen(old), &st), 0);
	assert_int_equal(st.code, REASON_REGISTRY);
	remote_job_state_release(&st);
}

/* A protocol line the follower never sends is refused, not guessed at. */
static void test_bad_protocol(void **state)
{
	(void)state;
	struct follow f;
	follow_init(&f, "/nowhere", 2);
	assert_int_equal(follow_feed(&f, "D 5 o 0 3\nabc", 13), -1);	/* no rank 5 */
	error_clear();
	follow_release(&f);
	follow_init(&f, "/nowhere", 2);
	assert_int_equal(follow_feed(&f, "D 0 o 7 3\nabc", 13), -1);	/* not from offset 0 */
	error_clear();
	follow_release(&f);
	follow_init(&f, "/nowhere", 2);
	assert_int_equal(follow_feed(&f, "Q what\n", 7), -1);
	error_clear();
	follow_release(&f);
}

/*
 * Feeds proto to a follower of one rank with --json, as one piece; the
 * events it printed on stdout (which is a temporary file meanwhile).
 */
static char *feed_json(struct follow *f, const char *proto, size_t len)
{
	FILE *cap = tmpfile();
	int saved, rc;

	assert_non_null(cap);
	fflush(stdout);
	saved = dup(STDOUT_FILENO);
	assert_true(saved >= 0);
	assert_true(dup2(fileno(cap), STDOUT_FILENO) >= 0);
	log_json = 1;
	rc = follow_feed(f, proto, len);
	fflush(stdout);
	log_json = 0;
	dup2(saved, STDOUT_FILENO);
	close(saved);
	assert_int_equal(rc, 0);
	char *out = slurp(cap);
	fclose(cap);
	return out;
}

/* The one event in text (a line of JSON), whose field key is a string; caller frees. */
static char *event_field(const char *text, const char *event, const char *key)
{
	json_error_t jerr;
	json_t *o = json_loads(text, 0, &jerr);
	assert_non_null(o);
	assert_string_equal(json_string_value(json_object_get(o, "event")), event);
	const char *v = json_string_value(json_object_get(o, key));
	assert_non_null(v);
	char *copy = xstrdup(v);
	json_decref(o);
	return copy;
}

/*
 * With --json, a rank's line of any bytes still makes an "output" event:
 * what jansson would refuse (surrogates, overlong forms, past U+10FFFF,
 * cut short) becomes U+FFFD, one for each invalid sequence as Python's
 * decode(errors="replace") makes it, and valid UTF-8 passes unchanged.
 */
static void test_json_output_is_utf8(void **state)
{
	(void)state;
	static const struct {
		const char *in, *want;
	} cases[] = {
		{ "a\xed\xa0\x80" "b", "a\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd" "b" },
		{ "\xe0\x80\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd" },
		{ "\xc0\x80", "\xef\xbf\xbd\xef\xbf\xbd" },
		{ "\xf4\x90\x80\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd" },
		{ "\xf5\x80", "\xef\xbf\xbd\xef\xbf\xbd" },
		{ "\xe2\x82x", "\xef\xbf\xbdx" },
		{ "\xf0\x9f\x98", "\xef\xbf\xbd" },
		{ "\xff", "\xef\xbf\xbd" },
		{ "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80" },
		{ "\xed\x9f\xbf\xf4\x8f\xbf\xbf", "\xed\x9f\xbf\xf4\x8f\xbf\xbf" },
	};

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct follow f;
		struct buf proto = BUF_INIT, want = BUF_INIT;
		size_t n = strlen(cases[i].in);

		buf_addf(&proto, "D 0 o 0 %zu\n%s\n", n + 1, cases[i].in);
		buf_addf(&want, "%s\n", cases[i].want);
		follow_init(&f, "/nowhere", 1);
		char *out = feed_json(&f, proto.ptr, proto.len);
		char *text = event_field(out, "output", "text");
		assert_string_equal(text, want.ptr);
		free(text);
		free(out);
		follow_release(&f);
		buf_release(&proto);
		buf_release(&want);
	}
}

/* A state line that is not UTF-8 is cleaned too, for its event and for f->state. */
static void test_json_status_is_utf8(void **state)
{
	(void)state;
	static const char proto[] = "S run\xed\xa0\x80ning 100.5\n";
	struct follow f;

	follow_init(&f, "/nowhere", 1);
	char *out = feed_json(&f, proto, strlen(proto));
	char *st = event_field(out, "status", "state");
	assert_string_equal(st, "run\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbdning");
	assert_string_equal(f.state, st);
	assert_true(f.launched > 100.4 && f.launched < 100.6);
	free(st);
	free(out);
	follow_release(&f);
}

/* The message for start_fd: the length line, the command, then the stdin. */
static void test_start_message(void **state)
{
	(void)state;
	struct follow f;
	size_t len;
	follow_init(&f, "~/.pystrib/jobs/x", 2);
	char *m = follow_start_message(&f, "start it", "pw\n", 3, &len);
	char *nl = memchr(m, '\n', len);
	assert_non_null(nl);
	size_t n = strtoul(m, NULL, 10);
	assert_int_equal((size_t)(nl + 1 - m) + n + 3, len);
	assert_memory_equal(nl + 1, "start it && exec sh -c ", 23);
	assert_memory_equal(m + len - 3, "pw\n", 3);
	static const char follower[] = " follow.sh \"$HOME\"/.pystrib/jobs/x f 2 0 0 0 0 0 0";
	assert_non_null(memmem(nl + 1, n, follower, strlen(follower)));
	free(m);
	follow_release(&f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_follower_over_a_job),
		cmocka_unit_test(test_follower_sends_results),
		cmocka_unit_test(test_reason_codes),
		cmocka_unit_test(test_remote_job_parse),
		cmocka_unit_test(test_bad_protocol),
		cmocka_unit_test(test_start_message),
		cmocka_unit_test(test_json_output_is_utf8),
		cmocka_unit_test(test_json_status_is_utf8),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
