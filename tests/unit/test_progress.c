/*
 * Unit tests for progress.c: the bar line (label, bar, bytes, rate, ETA)
 * fits its width; on a pipe only large blobs have a line unless -v; on a
 * terminal the bar, labelled by what the blob is, is redrawn in place and
 * ended with a newline; with --json the blob events (with their role) come
 * out on stdout in order. An engine's pull: one bar for all its layers on
 * a terminal, a line per layer pulled on a pipe, pull events with --json.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "log.h"
#include "progress.h"
#include "util.h"

#define DG "sha256:1a2b3c4d5e6f7a8b9c0d1a2b3c4d5e6f7a8b9c0d1a2b3c4d5e6f7a8b9c0d1a2b"

static void test_bytes(void **state)
{
	struct buf b = BUF_INIT;
	(void)state;
	progress_bytes(&b, 0);
	assert_string_equal(b.ptr, "0 B");
	buf_reset(&b);
	progress_bytes(&b, 1023);
	assert_string_equal(b.ptr, "1023 B");
	buf_reset(&b);
	progress_bytes(&b, 1536);
	assert_string_equal(b.ptr, "1.5 KiB");
	buf_reset(&b);
	progress_bytes(&b, 1ull << 30);
	assert_string_equal(b.ptr, "1.0 GiB");
	buf_release(&b);
}

static void test_format(void **state)
{
	struct buf b = BUF_INIT;
	(void)state;
	/* 25 MiB of 100 in 5 s: 5 MiB/s, 15 s left. */
	progress_format(&b, "project", 25u << 20, 100u << 20, 5.0, 79);
	assert_string_equal(b.ptr, "project          [###          ]"
				   "  25.0 MiB / 100.0 MiB   5.0 MiB/s  ETA 0:15");
	/* Room is kept for a longer ETA: the bar does not jump as it changes. */
	assert_true(b.len + 3 == 79);
	buf_reset(&b);
	/* Narrow: the bar goes, the numbers stay. */
	progress_format(&b, "base layer 3/7", 0, 2000, 0, 40);
	assert_string_equal(b.ptr, "base layer 3/7          0 B / 2.0 KiB         0 B/s  ETA --:--");
	buf_reset(&b);
	/* A label past its column is cut, so the bars of a push line up. */
	progress_format(&b, "base layer 123/4567", 0, 2000, 0, 40);
	assert_true(!strncmp(b.ptr, "base layer 123/4 ", 17));
	buf_reset(&b);
	/* Done; then more than an hour left. */
	progress_format(&b, "cell", 7, 7, 1.0, 80);
	assert_non_null(strstr(b.ptr, "[##########"));
	assert_non_null(strstr(b.ptr, "ETA 0:00"));
	buf_reset(&b);
	progress_format(&b, "cell", 1, 10000, 1.0, 100);
	assert_non_null(strstr(b.ptr, "ETA 2:46:39"));
	buf_release(&b);
}

static char *read_all(FILE *f)
{
	struct buf b = BUF_INIT;
	char chunk[4096];
	size_t n;
	fflush(f);
	rewind(f);
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		buf_add(&b, chunk, n);
	return buf_detach(&b, NULL);
}

/* A cell of `size` bytes sent in chunks, then the base's layer mounted. */
static char *run_upload_of(int tty, int verbosity, uint64_t size)
{
	struct progress p;
	FILE *f = tmpfile();
	assert_non_null(f);
	log_verbosity = verbosity;
	progress_init(&p, f);
	assert_int_equal(p.tty, 0);	/* a file is not a terminal */
	p.tty = tty;
	progress_begin(&p, "cell", "cell", DG, size);
	for (uint64_t sent = 0; sent < size; sent += size / 8 + 1)
		progress_update(&p, sent, size);
	progress_end(&p, 1);
	progress_skip(&p, "base layer 1/1", "base", DG, 1000, "mounted");
	assert_int_equal(p.kept_blobs, 1);
	assert_int_equal(p.kept_bytes, 1000);
	log_verbosity = 0;
	char *s = read_all(f);
	fclose(f);
	return s;
}

static char *run_upload(int tty, int verbosity)
{
	return run_upload_of(tty, verbosity, 1000);
}

static void test_pipe_small_blobs_quiet_unless_verbose(void **state)
{
	char *s;
	(void)state;
	s = run_upload(0, 0);
	assert_string_equal(s, "");
	free(s);
	s = run_upload(0, 1);
	assert_non_null(strstr(s, "pystrib: uploading cell " DG " (1000 B)\n"));
	assert_non_null(strstr(s, "pystrib: uploaded cell " DG ": 1000 B in "));
	assert_non_null(strstr(s, "pystrib: mounted base layer 1/1 " DG "\n"));
	assert_null(strchr(s, '\r'));
	free(s);
}

static void test_pipe_one_line_per_large_blob(void **state)
{
	char *s;
	(void)state;
	/* Just under PROGRESS_LARGE: nothing; at it: one line, however many chunks. */
	s = run_upload_of(0, 0, PROGRESS_LARGE - 1);
	assert_string_equal(s, "");
	free(s);
	s = run_upload_of(0, 0, 5u << 20);
	assert_true(!strncmp(s, "pystrib: uploaded cell: 5.0 MiB in ", 35));
	assert_non_null(strstr(s, " s ("));
	assert_non_null(strstr(s, "/s)\n"));
	assert_int_equal(strchr(s, '\n') - s + 1, strlen(s));
	free(s);
	/* Not with --json: the events say it. */
	log_json = 1;
	fflush(stdout);
	int saved = dup(1), null = open("/dev/null", O_WRONLY);
	dup2(null, 1);
	s = run_upload_of(0, 0, 5u << 20);
	fflush(stdout);
	dup2(saved, 1);
	close(saved);
	close(null);
	log_json = 0;
	assert_string_equal(s, "");
	free(s);
}

static void test_tty_bar(void **state)
{
	char *s;
	(void)state;
	s = run_upload(1, 0);
	assert_true(s[0] == '\r');
	assert_non_null(strstr(s, "\rcell             ["));
	assert_null(strstr(s, "1a2b3c4d5e6f"));
	assert_non_null(strstr(s, "1000 B / 1000 B"));
	assert_non_null(strstr(s, "\033[K\n"));
	assert_null(strstr(s, "mounted"));
	free(s);
}

static void test_stage_line(void **state)
{
	FILE *f = tmpfile();
	(void)state;
	assert_non_null(f);
	progress_stage(f, "image pushed: %u blobs sent", 2u);
	log_json = 1;
	progress_stage(f, "not with --json");
	log_json = 0;
	char *s = read_all(f);
	fclose(f);
	assert_string_equal(s, "pystrib: image pushed: 2 blobs sent\n");
	free(s);
}

static void test_json_events(void **state)
{
	char path[] = "/tmp/pystrib-test-progress-XXXXXX";
	int fd = mkstemp(path), saved = dup(1);
	json_error_t err;
	(void)state;
	assert_true(fd >= 0 && saved >= 0);
	fflush(stdout);
	dup2(fd, 1);
	log_json = 1;
	char *quiet = run_upload(0, 0);
	log_json = 0;
	fflush(stdout);
	dup2(saved, 1);
	close(saved);
	assert_string_equal(quiet, "");	/* nothing on stderr's side */
	free(quiet);

	FILE *f = fdopen(fd, "r");
	char *s = read_all(f);
	fclose(f);
	unlink(path);
	static const char *const states[] = { "uploading", "uploaded", "mounted" };
	char *line = s;
	for (size_t i = 0; i < 3; i++) {
		char *nl = strchr(line, '\n');
		assert_non_null(nl);
		json_t *j = json_loadb(line, (size_t)(nl - line), 0, &err);
		assert_non_null(j);
		assert_string_equal(json_string_value(json_object_get(j, "event")), "blob");
		assert_string_equal(json_string_value(json_object_get(j, "digest")), DG);
		assert_int_equal(json_integer_value(json_object_get(j, "size")), 1000);
		assert_string_equal(json_string_value(json_object_get(j, "state")), states[i]);
		assert_int_equal(json_integer_value(json_object_get(j, "sent")), i == 1 ? 1000 : 0);
		assert_string_equal(json_string_value(json_object_get(j, "role")),
				    i < 2 ? "cell" : "base");
		json_decref(j);
		line = nl + 1;
	}
	assert_string_equal(line, "");
	free(s);
}

#define L1 "3e63eb97b22f"
#define L2 "feee08c7ccec"

/* A pull as docker reports it: L1 on the host already, L2 in 100 chunks. */
static char *run_pull(int tty, int verbosity, int ok)
{
	struct pull_progress pp;
	FILE *f = tmpfile();
	assert_non_null(f);
	log_verbosity = verbosity;
	pull_progress_init(&pp, f);
	pp.tty = tty;
	pull_progress_layer(&pp, L1, PULL_EXISTS, 0, 0);
	pull_progress_layer(&pp, L2, PULL_WAITING, 0, 0);
	for (uint64_t c = 0; c < 3000000; c += 30000)
		pull_progress_layer(&pp, L2, PULL_DOWNLOADING, c, 3000000);
	pull_progress_layer(&pp, L2, PULL_DOWNLOADED, 0, 0);
	for (uint64_t c = 0; c < 3000000; c += 300000)
		pull_progress_layer(&pp, L2, PULL_EXTRACTING, c, 3000000);
	pull_progress_layer(&pp, L2, PULL_DONE, 0, 0);
	assert_int_equal(pp.nlayers, 2);
	pull_progress_end(&pp, ok);
	pull_progress_release(&pp);
	log_verbosity = 0;
	char *s = read_all(f);
	fclose(f);
	return s;
}

static void test_pull_pipe_a_line_per_layer(void **state)
{
	char *s;
	(void)state;
	s = run_pull(0, 0, 1);
	assert_true(!strncmp(s, "pystrib: pulled layer " L2 " (2.9 MiB) in ", 40));
	char *second = strchr(s, '\n') + 1;
	assert_true(!strncmp(second, "pystrib: image pulled by the host: 1 layer (2.9 MiB) in ",
			     56));
	assert_non_null(strstr(second, " s, 1 it had already\n"));
	assert_int_equal(strchr(second, '\n') - s + 1, strlen(s));
	assert_null(strchr(s, '\r'));
	free(s);
	s = run_pull(0, 1, 1);
	assert_non_null(strstr(s, "pystrib: the host has layer " L1 "\n"));
	free(s);
	/* A failed pull: the layers that came, and no line for the whole. */
	s = run_pull(0, 0, 0);
	assert_null(strstr(s, "image pulled"));
	free(s);
}

static void test_pull_tty_one_bar(void **state)
{
	char *s;
	(void)state;
	s = run_pull(1, 0, 1);
	assert_true(!strncmp(s, "\rpull 1/1 layers  ", 18));
	assert_non_null(strstr(s, "\rpull 1/2 layers  "));
	assert_non_null(strstr(s, "\rpull 2/2 layers  ["));
	assert_non_null(strstr(s, "2.9 MiB / 2.9 MiB"));
	/* Redrawn at most 10 times a second, plus at each change of state: not per chunk. */
	size_t draws = 0;
	for (const char *p = s; (p = strchr(p, '\r')); p++)
		draws++;
	assert_true(draws < 20);
	assert_null(strstr(s, "pystrib: pulled layer"));
	assert_non_null(strstr(s, "\033[K\npystrib: image pulled by the host: 1 layer"));
	free(s);
}

static void test_pull_json_events(void **state)
{
	char path[] = "/tmp/pystrib-test-progress-XXXXXX";
	int fd = mkstemp(path), saved = dup(1);
	(void)state;
	assert_true(fd >= 0 && saved >= 0);
	fflush(stdout);
	dup2(fd, 1);
	log_json = 1;
	char *quiet = run_pull(0, 0, 1);
	log_json = 0;
	fflush(stdout);
	dup2(saved, 1);
	close(saved);
	assert_string_equal(quiet, "");
	free(quiet);

	FILE *f = fdopen(fd, "r");
	char *s = read_all(f);
	fclose(f);
	unlink(path);
	/* Each change of state once; the chunks within a second, not at all. */
	static const char *const want[][2] = {
		{ L1, "exists" }, { L2, "waiting" }, { L2, "downloading" }, { L2, "downloaded" },
		{ L2, "extracting" }, { L2, "done" },
	};
	char *line = s;
	for (size_t i = 0; i < ARRAY_SIZE(want); i++) {
		char *nl = strchr(line, '\n');
		assert_non_null(nl);
		json_t *j = json_loadb(line, (size_t)(nl - line), 0, NULL);
		assert_non_null(j);
		assert_string_equal(json_string_value(json_object_get(j, "event")), "pull");
		assert_string_equal(json_string_value(json_object_get(j, "layer")), want[i][0]);
		assert_string_equal(json_string_value(json_object_get(j, "state")), want[i][1]);
		if (!strcmp(want[i][1], "done"))
			assert_int_equal(json_integer_value(json_object_get(j, "current")), 3000000);
		if (i >= 2)
			assert_int_equal(json_integer_value(json_object_get(j, "total")), 3000000);
		json_decref(j);
		line = nl + 1;
	}
	assert_string_equal(line, "");
	free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bytes),
		cmocka_unit_test(test_format),
		cmocka_unit_test(test_pipe_small_blobs_quiet_unless_verbose),
		cmocka_unit_test(test_pipe_one_line_per_large_blob),
		cmocka_unit_test(test_tty_bar),
		cmocka_unit_test(test_stage_line),
		cmocka_unit_test(test_json_events),
		cmocka_unit_test(test_pull_pipe_a_line_per_layer),
		cmocka_unit_test(test_pull_tty_one_bar),
		cmocka_unit_test(test_pull_json_events),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
