/* engine.c: the pull request it sends and its reading of the engine's answer. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "util.h"

static void request_names_the_image_escaped(void **state)
{
	(void)state;
	struct buf b = BUF_INIT;
	engine_pull_request(&b, "127.0.0.1:5000/team/cells@sha256:abc", NULL);
	assert_string_equal(b.ptr, "POST /images/create?fromImage=127.0.0.1%3A5000%2Fteam%2Fcells"
			    "%40sha256%3Aabc HTTP/1.0\r\nHost: docker\r\nUser-Agent: pystrib\r\n"
			    "Content-Length: 0\r\n\r\n");
	/* Nothing in a reference can end the request line or add a header. */
	buf_reset(&b);
	engine_pull_request(&b, "x y\r\nX-Evil: 1", NULL);
	assert_null(strstr(b.ptr, "X-Evil: 1"));
	assert_non_null(strstr(b.ptr, "fromImage=x%20y%0D%0AX-Evil%3A%201 HTTP/1.0\r\n"));
	buf_release(&b);
}

static void credentials_go_in_x_registry_auth(void **state)
{
	(void)state;
	struct buf b = BUF_INIT;
	const struct engine_auth auth = { "alice", "s3cret+/?", "reg.example:5000" };
	engine_pull_request(&b, "reg.example:5000/c@sha256:abc", &auth);
	assert_null(strstr(b.ptr, "s3cret"));
	const char *h = strstr(b.ptr, "\r\nX-Registry-Auth: ");
	assert_non_null(h);
	h += strlen("\r\nX-Registry-Auth: ");
	size_t n = strcspn(h, "\r");
	/* base64url, as the engine reads it: back to standard base64 to decode. */
	char *std = xstrndup(h, n);
	for (char *p = std; *p; p++) {
		assert_true(*p != '+' && *p != '/');
		*p = *p == '-' ? '+' : *p == '_' ? '/' : *p;
	}
	unsigned char dec[256];
	int len = EVP_DecodeBlock(dec, (unsigned char *)std, (int)n);
	assert_true(len > 0);
	while (len > 0 && dec[len - 1] == '\0')
		len--;
	json_t *j = json_loadb((char *)dec, (size_t)len, 0, NULL);
	assert_non_null(j);
	assert_string_equal(json_string_value(json_object_get(j, "username")), "alice");
	assert_string_equal(json_string_value(json_object_get(j, "password")), "s3cret+/?");
	assert_string_equal(json_string_value(json_object_get(j, "serveraddress")),
			    "reg.example:5000");
	json_decref(j);
	free(std);
	buf_release(&b);
}

/* Feeds text in pieces of `step` bytes; engine_reply_end's result. */
static int read_reply(const char *text, size_t step, char **why)
{
	struct engine_reply r;
	engine_reply_init(&r);
	for (size_t off = 0, len = strlen(text); off < len; off += step)
		engine_reply_feed(&r, text + off, len - off < step ? len - off : step);
	int ret = engine_reply_end(&r);
	*why = xstrdup(r.why.ptr ? r.why.ptr : "");
	engine_reply_release(&r);
	return ret;
}

static void a_pull_that_worked(void **state)
{
	(void)state;
	const char *ok =
		"HTTP/1.0 200 OK\r\nApi-Version: 1.43\r\nContent-Type: application/json\r\n\r\n"
		"{\"status\":\"Pulling from cells\",\"id\":\"sha256:abc\"}\r\n"
		"{\"status\":\"Downloading\",\"progressDetail\":{\"current\":10,\"total\":20}}\r\n"
		"{\"status\":\"Digest: sha256:abc\"}\r\n"
		"{\"status\":\"Status: Downloaded newer image for 127.0.0.1:5000/cells@sha256:abc\"}\r\n";
	/* However the stream is cut, the same answer. */
	for (size_t step = 1; step <= strlen(ok); step += step < 8 ? 1 : 37) {
		char *why = NULL;
		assert_int_equal(read_reply(ok, step, &why), 0);
		assert_string_equal(why, "");
		free(why);
	}
}

static void the_engine_s_reasons_come_through(void **state)
{
	(void)state;
	char *why = NULL;
	/* An error in the stream, after progress: the first reason, cleaned. */
	assert_int_equal(read_reply("HTTP/1.0 200 OK\r\n\r\n{\"status\":\"Pulling\"}\n"
				    "{\"errorDetail\":{\"message\":\"manifest unknown\"},"
				    "\"error\":\"manifest unknown\\u001b[31m\"}\n"
				    "{\"error\":\"second\"}\n", 5, &why), -1);
	assert_string_equal(why, "manifest unknown?[31m");
	free(why);
	/* An HTTP error: its message. */
	assert_int_equal(read_reply("HTTP/1.1 404 Not Found\r\nContent-Length: 60\r\n\r\n"
				    "{\"message\":\"pull access denied for cells\"}", 7, &why), -1);
	assert_string_equal(why, "pull access denied for cells");
	free(why);
	assert_int_equal(read_reply("HTTP/1.1 500 Internal Server Error\r\n\r\n", 3, &why), -1);
	assert_string_equal(why, "the engine answered with an error and no message");
	free(why);
	/* Not HTTP at all, or nothing. */
	assert_int_equal(read_reply("SSH-2.0-OpenSSH_9.2\r\n", 4, &why), -1);
	assert_non_null(strstr(why, "no HTTP answer"));
	free(why);
	assert_int_equal(read_reply("", 1, &why), -1);
	assert_non_null(strstr(why, "no HTTP answer"));
	free(why);
	/* A status line with letters for digits is no status. */
	assert_int_equal(read_reply("HTTP/1.1 2x0 OK\r\n\r\n", 64, &why), -1);
	free(why);
}

static void an_overlong_line_is_dropped_whole(void **state)
{
	(void)state;
	struct buf big = BUF_INIT;
	buf_addstr(&big, "HTTP/1.0 200 OK\r\n\r\n{\"error\":\"");
	for (int i = 0; i < 70000; i++)
		buf_addch(&big, 'x');
	buf_addstr(&big, "\"}\n{\"status\":\"done\"}\n");
	char *why = NULL;
	/* The overlong error line is not read (nor half read as another). */
	assert_int_equal(read_reply(big.ptr, 4096, &why), 0);
	free(why);
	buf_release(&big);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(request_names_the_image_escaped),
		cmocka_unit_test(credentials_go_in_x_registry_auth),
		cmocka_unit_test(a_pull_that_worked),
		cmocka_unit_test(the_engine_s_reasons_come_through),
		cmocka_unit_test(an_overlong_line_is_dropped_whole),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
