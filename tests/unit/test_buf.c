/* Unit tests for buf.c: growth, caps, file reading, the NUL invariant. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "digest.h"
#include "util.h"

static void empty_buffer_is_a_valid_string(void **state)
{
	(void)state;
	struct buf b = BUF_INIT;
	assert_non_null(b.ptr);
	assert_string_equal(b.ptr, "");
	buf_setlen(&b, 0);	/* no-op on the shared empty string */
	buf_rtrim(&b);
	char *s = buf_detach(&b, NULL);
	assert_string_equal(s, "");
	free(s);
	buf_release(&b);
}

static void appends_grow_and_stay_terminated(void **state)
{
	(void)state;
	struct buf b = BUF_INIT;
	for (int i = 0; i < 1000; i++)
		assert_int_equal(buf_addf(&b, "%d,", i), 0);
	assert_int_equal(b.ptr[b.len], '\0');
	assert_true(b.len > 3000);
	assert_int_equal(strncmp(b.ptr, "0,1,2,", 6), 0);
	assert_int_equal(buf_addch(&b, 'x'), 0);
	assert_int_equal(b.ptr[b.len - 1], 'x');
	buf_reset(&b);
	assert_int_equal(b.len, 0);
	assert_string_equal(b.ptr, "");
	buf_addstr(&b, "text \t\n\r");
	buf_rtrim(&b);
	assert_string_equal(b.ptr, "text");
	size_t len;
	char *s = buf_detach(&b, &len);
	assert_int_equal(len, 4);
	assert_string_equal(s, "text");
	assert_int_equal(b.len, 0);
	free(s);
}

static void cap_refuses_and_marks_toobig(void **state)
{
	(void)state;
	struct buf b;
	buf_init(&b, 10);
	assert_int_equal(buf_add(&b, "0123456789", 10), 0);	/* exactly the cap */
	assert_int_equal(buf_addch(&b, 'x'), -1);
	assert_true(b.toobig);
	assert_int_equal(b.len, 10);				/* nothing was added */
	assert_string_equal(b.ptr, "0123456789");
	assert_int_equal(buf_addf(&b, "%s", "more"), -1);
	buf_release(&b);

	/* A huge length must not overflow the size arithmetic. */
	buf_init(&b, 100);
	assert_int_equal(buf_grow(&b, (size_t)-1), -1);
	buf_release(&b);
}

static void read_file_respects_the_cap(void **state)
{
	(void)state;
	char path[] = "/tmp/pystrib-test-buf-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	char data[20000];
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (char)('a' + i % 26);
	assert_int_equal(write(fd, data, sizeof(data)), (ssize_t)sizeof(data));
	close(fd);

	struct buf b;
	buf_init(&b, sizeof(data));		/* the whole file fits exactly */
	assert_int_equal(buf_read_file(&b, path), 0);
	assert_int_equal(b.len, sizeof(data));
	assert_memory_equal(b.ptr, data, sizeof(data));
	buf_release(&b);

	buf_init(&b, sizeof(data) - 1);		/* one byte too many */
	assert_int_equal(buf_read_file(&b, path), -1);
	assert_int_equal(errno, EFBIG);
	assert_true(b.toobig);
	buf_release(&b);

	buf_init(&b, 0);
	assert_int_equal(buf_read_file(&b, "/nonexistent/file"), -1);
	assert_int_equal(errno, ENOENT);
	buf_release(&b);
	unlink(path);
}

static void digests_match_known_values(void **state)
{
	(void)state;
	char d[DIGEST_LEN];
	digest_bytes("", 0, d);
	assert_string_equal(d, "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	digest_bytes("abc", 3, d);
	assert_string_equal(d, "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	assert_true(digest_valid(d));
	assert_false(digest_valid("sha256:BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD"));
	assert_false(digest_valid("sha256:ba78"));
	assert_false(digest_valid("md5:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
}

static void suggestions(void **state)
{
	(void)state;
	static const char *const words[] = { "build", "push", "run", "config", NULL };
	assert_int_equal(levenshtein("kitten", "sitting"), 3);
	assert_string_equal(closest_word("biuld", words, 5), "build");
	assert_string_equal(closest_word("conf", words, 5), "config");
	assert_null(closest_word("xyzzy", words, 5));
	long v;
	assert_int_equal(parse_long("42", 0, 100, &v), 0);
	assert_int_equal(v, 42);
	assert_int_equal(parse_long("42x", 0, 100, &v), -1);
	assert_int_equal(parse_long("", 0, 100, &v), -1);
	assert_int_equal(parse_long("101", 0, 100, &v), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(empty_buffer_is_a_valid_string),
		cmocka_unit_test(appends_grow_and_stay_terminated),
		cmocka_unit_test(cap_refuses_and_marks_toobig),
		cmocka_unit_test(read_file_respects_the_cap),
		cmocka_unit_test(digests_match_known_values),
		cmocka_unit_test(suggestions),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
