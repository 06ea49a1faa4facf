/*
 * Unit tests for session_wire.c: the framing of hub.sock and of `session
 * serve` (lines of JSON, each maybe followed by its raw bytes, fed in any
 * pieces) and the --ranks SPEC.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "session_wire.h"
#include "util.h"

/* Feeds text in pieces of n bytes and collects what comes out as a trace. */
static void trace(const char *text, size_t total, size_t n, struct buf *out)
{
	struct session_reader r;
	json_t *msg;
	const char *data;
	size_t len;
	int item;

	session_reader_init(&r);
	for (size_t at = 0; at < total; at += n) {
		session_reader_feed(&r, text + at, at + n > total ? total - at : n);
		while ((item = session_reader_next(&r, &msg, &data, &len)) != SESSION_NEED_MORE) {
			if (item < 0) {
				buf_addf(out, "error(%s)", error_message());
				error_clear();
			} else if (item == SESSION_MESSAGE) {
				char *s = json_dumps(msg, JSON_COMPACT | JSON_SORT_KEYS);
				buf_addf(out, "M%s", s);
				free(s);
				json_decref(msg);
			} else {
				buf_addch(out, '<');
				buf_add(out, data, len);
				buf_addch(out, '>');
			}
		}
	}
	session_reader_release(&r);
}

/* Joins adjacent payload chunks, so that traces of any piece size compare. */
static char *joined(const struct buf *b)
{
	struct buf o = BUF_INIT;
	for (size_t i = 0; i < b->len; i++) {
		if (b->ptr[i] == '>' && i + 1 < b->len && b->ptr[i + 1] == '<') {
			i++;
			continue;
		}
		buf_addch(&o, b->ptr[i]);
	}
	return buf_detach(&o, NULL);
}

static void messages_and_payloads_in_any_pieces(void **state)
{
	static const char text[] =
		"{\"op\":\"hello\",\"np\":2}\n"
		"{\"op\":\"value\",\"rank\":0,\"bytes\":7}\nab\ncd\n\n"
		"{\"op\":\"done\",\"bytes\":0}\n";
	const char *want = "M{\"np\":2,\"op\":\"hello\"}M{\"bytes\":7,\"op\":\"value\",\"rank\":0}"
			   "<ab\ncd\n\n>M{\"bytes\":0,\"op\":\"done\"}";
	(void)state;
	for (size_t n = 1; n <= sizeof(text); n++) {
		struct buf b = BUF_INIT;
		trace(text, sizeof(text) - 1, n, &b);
		char *j = joined(&b);
		assert_string_equal(j, want);
		free(j);
		buf_release(&b);
	}
}

static void bad_lines_are_errors_and_skipped(void **state)
{
	static const char text[] = "[1,2]\nnot json\n{\"bytes\":-1}\n{\"op\":\"ok\"}\n";
	struct buf b = BUF_INIT;
	(void)state;
	trace(text, sizeof(text) - 1, sizeof(text), &b);
	assert_non_null(strstr(b.ptr, "not a JSON object"));
	assert_non_null(strstr(b.ptr, "invalid 'bytes'"));
	assert_non_null(strstr(b.ptr, "M{\"op\":\"ok\"}"));
	buf_release(&b);
}

static void a_line_past_the_cap_is_too_large(void **state)
{
	size_t n = SESSION_LINE_MAX + 100;
	char *text = xmalloc(n);
	struct buf b = BUF_INIT;
	(void)state;
	memset(text, 'x', n);
	memcpy(text + n - 14, "\n{\"op\":\"ok\"}\n", 14);
	trace(text, n, 65536, &b);
	/* Said once, the rest of the line dropped, the next line read. */
	assert_string_equal(b.ptr, "error(a session message is too large (more than 1048576 bytes))"
			    "M{\"op\":\"ok\"}");
	free(text);
	buf_release(&b);
}

static void msg_line_is_one_line(void **state)
{
	struct buf b = BUF_INIT;
	json_t *m = json_pack("{s:s,s:s}", "op", "exec", "code", "a\nb\n");
	(void)state;
	assert_int_equal(session_msg_line(m, &b), 0);
	assert_string_equal(b.ptr, "{\"op\":\"exec\",\"code\":\"a\\nb\\n\"}\n");
	json_decref(m);
	buf_release(&b);
}

static char *ranks(const char *spec, int np)
{
	json_t *a = NULL;
	if (session_ranks_parse(spec, np, &a) < 0) {
		char *e = xstrfmt("error: %s", error_message());
		error_clear();
		return e;
	}
	char *s = json_dumps(a, JSON_COMPACT);
	json_decref(a);
	return s;
}

static void rank_specs(void **state)
{
	static const struct { const char *spec; int np; const char *want; } cases[] = {
		{ "0", 0, "[0]" },
		{ "0,2-3", 4, "[0,2,3]" },
		{ "3,1,1-2", 0, "[1,2,3]" },
		{ "2-2", 3, "[2]" },
		{ "", 0, "error: invalid rank list ''" },
		{ "1,", 0, "error: invalid rank list '1,'" },
		{ ",1", 0, "error: invalid rank list ',1'" },
		{ "3-1", 0, "error: invalid rank list '3-1'" },
		{ "a", 0, "error: invalid rank list 'a'" },
		{ "-1", 0, "error: invalid rank list '-1'" },
		{ "0 1", 0, "error: invalid rank list '0 1'" },
		{ "0,5", 4, "error: rank 5 is not in the session (ranks 0-3)" },
		{ "99999999999", 0, "error: invalid rank list '99999999999'" },
	};
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *got = ranks(cases[i].spec, cases[i].np);
		assert_string_equal(got, cases[i].want);
		free(got);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(messages_and_payloads_in_any_pieces),
		cmocka_unit_test(bad_lines_are_errors_and_skipped),
		cmocka_unit_test(a_line_past_the_cap_is_too_large),
		cmocka_unit_test(msg_line_is_one_line),
		cmocka_unit_test(rank_specs),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
