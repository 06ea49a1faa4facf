/*
 * Unit tests for progress.c: the bar line (digest, bar, bytes, rate, ETA)
 * fits its width; on a pipe nothing is printed unless -v; on a terminal
 * the bar is redrawn in place and ended with a newline; with --json the
 * blob events come out on stdout in order.
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
#include "log.h"
#include "progress.h"

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
	progress_format(&b, DG, 25u << 20, 100u << 20, 5.0, 79);
	assert_string_equal(b.ptr, "1a2b3c4d5e6f [####             ]"
				   "  25.0 MiB / 100.0 MiB   5.0 MiB/s  ETA 0:15");
	/* Room is kept for a longer ETA: the bar does not jump as it changes. */
	assert_true(b.len + 3 == 79);
	buf_reset(&b);
	/* Narrow: the bar goes, the numbers stay. */
	progress_format(&b, DG, 0, 2000, 0, 40);
	assert_string_equal(b.ptr, "1a2b3c4d5e6f        0 B / 2.0 KiB         0 B/s  ETA --:--");
	buf_reset(&b);
	/* Done; then more than an hour left. */
	progress_format(&b, DG, 7, 7, 1.0, 80);
	assert_non_null(strstr(b.ptr, "[##########"));
	assert_non_null(strstr(b.ptr, "ETA 0:00"));
	buf_reset(&b);
	progress_format(&b, DG, 1, 10000, 1.0, 100);
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

static char *run_upload(int tty, int verbosity)
{
	struct progress p;
	FILE *f = tmpfile();
	assert_non_null(f);
	log_verbosity = verbosity;
	progress_init(&p, f);
	assert_int_equal(p.tty, 0);	/* a file is not a terminal */
	p.tty = tty;
	progress_begin(&p, DG, 1000);
	progress_update(&p, 500, 1000);
	progress_end(&p, 1);
	progress_skip(&p, DG, 1000, "mounted");
	log_verbosity = 0;
	char *s = read_all(f);
	fclose(f);
	return s;
}

static void test_pipe_quiet_unless_verbose(void **state)
{
	char *s;
	(void)state;
	s = run_upload(0, 0);
	assert_string_equal(s, "");
	free(s);
	s = run_upload(0, 1);
	assert_non_null(strstr(s, "pystrib: uploading " DG " (1000 B)\n"));
	assert_non_null(strstr(s, "pystrib: uploaded " DG ": 1000 B in "));
	assert_non_null(strstr(s, "pystrib: mounted " DG "\n"));
	assert_null(strchr(s, '\r'));
	free(s);
}

static void test_tty_bar(void **state)
{
	char *s;
	(void)state;
	s = run_upload(1, 0);
	assert_true(s[0] == '\r');
	assert_non_null(strstr(s, "1a2b3c4d5e6f ["));
	assert_non_null(strstr(s, "1000 B / 1000 B"));
	assert_non_null(strstr(s, "\033[K\n"));
	assert_null(strstr(s, "mounted"));
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
		cmocka_unit_test(test_pipe_quiet_unless_verbose),
		cmocka_unit_test(test_tty_bar),
		cmocka_unit_test(test_json_events),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
