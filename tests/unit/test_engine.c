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

static void a_create_s_answer_is_kept(void **state)
{
	(void)state;
	struct engine_reply r;
	const char *created = "HTTP/1.0 201 Created\r\nContent-Type: application/json\r\n\r\n"
			      "{\"Id\":\"4f2a\",\"Warnings\":[]}\n";
	engine_reply_init(&r);
	engine_reply_feed(&r, created, strlen(created));
	assert_int_equal(engine_reply_end(&r), 0);
	assert_string_equal(json_string_value(json_object_get(r.json, "Id")), "4f2a");
	engine_reply_release(&r);
	/* 204, no body: fine. 409: its message. */
	char *why = NULL;
	assert_int_equal(read_reply("HTTP/1.0 204 No Content\r\n\r\n", 3, &why), 0);
	free(why);
	assert_int_equal(read_reply("HTTP/1.0 409 Conflict\r\n\r\n{\"message\":\"Conflict. The "
				    "container name is already in use\"}\n", 9, &why), -1);
	assert_non_null(strstr(why, "already in use"));
	free(why);
}

struct demuxed {
	struct buf out, err;
	int calls;
};

static int take_output(void *ctx, int fd, const char *data, size_t len)
{
	struct demuxed *d = ctx;
	d->calls++;
	buf_add(fd == 1 ? &d->out : &d->err, data, len);
	return 0;
}

static void frame(struct buf *b, int stream, const char *data, size_t len)
{
	unsigned char h[8] = { (unsigned char)stream, 0, 0, 0, (unsigned char)(len >> 24),
			       (unsigned char)(len >> 16), (unsigned char)(len >> 8),
			       (unsigned char)len };
	buf_add(b, h, 8);
	buf_add(b, data, len);
}

static void an_exec_stream_is_demultiplexed(void **state)
{
	(void)state;
	struct buf s = BUF_INIT;
	buf_addstr(&s, "HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.raw-stream"
		   "\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n");
	frame(&s, 1, "S running 1\n", 12);
	frame(&s, 2, "oops\r\n", 6);
	frame(&s, 1, "", 0);
	/* A frame whose bytes look like a header and like HTTP. */
	static const char odd[] = "\x01\0\0\0\0\0\0\x05HTTP/1.1 200\r\n\r\n";
	frame(&s, 1, odd, sizeof(odd) - 1);
	struct buf big = BUF_INIT;
	for (int i = 0; i < 70000; i++)
		buf_addch(&big, (char)('a' + i % 26));
	frame(&s, 1, big.ptr, big.len);

	/* However the stream is cut, the same bytes on each side. */
	for (size_t step = 1; step <= s.len; step = step < 16 ? step + 1 : step * 3) {
		struct demuxed d = { BUF_INIT, BUF_INIT, 0 };
		struct engine_mux m;
		engine_mux_init(&m, take_output, &d);
		for (size_t off = 0; off < s.len; off += step)
			assert_int_equal(engine_mux_feed(&m, s.ptr + off,
							 s.len - off < step ? s.len - off : step), 0);
		assert_true(m.raw);
		assert_int_equal(m.head.status, 101);
		assert_int_equal(d.out.len, 12 + sizeof(odd) - 1 + big.len);
		assert_memory_equal(d.out.ptr, "S running 1\n", 12);
		assert_memory_equal(d.out.ptr + 12, odd, sizeof(odd) - 1);
		assert_memory_equal(d.out.ptr + 12 + sizeof(odd) - 1, big.ptr, big.len);
		assert_int_equal(d.err.len, 6);
		assert_memory_equal(d.err.ptr, "oops\r\n", 6);
		engine_mux_release(&m);
		buf_release(&d.out);
		buf_release(&d.err);
	}
	buf_release(&big);
	buf_release(&s);

	/* Not a stream: the engine's reason, and nothing handed on. */
	struct demuxed d = { BUF_INIT, BUF_INIT, 0 };
	struct engine_mux m;
	const char *no = "HTTP/1.1 409 Conflict\r\n\r\n{\"message\":\"container 4f2a is not running\"}\n";
	engine_mux_init(&m, take_output, &d);
	assert_int_equal(engine_mux_feed(&m, no, strlen(no)), 0);
	assert_false(m.raw);
	assert_int_equal(d.calls, 0);
	assert_int_equal(engine_reply_end(&m.head), -1);
	assert_string_equal(m.head.why.ptr, "container 4f2a is not running");
	engine_mux_release(&m);
}

/*
 * A pull's answer as docker 20.10 gave it through its socket (captured on
 * the bed: an image whose base layer the engine had, and one new layer;
 * the "progress" strings shortened), then what engine_pull_event makes of
 * each message.
 */
static const char captured_pull[] =
	"HTTP/1.0 200 OK\r\nApi-Version: 1.41\r\nContent-Type: application/json\r\n"
	"Docker-Experimental: false\r\nOstype: linux\r\nServer: Docker/20.10.24+dfsg1 (linux)\r\n\r\n"
	"{\"status\":\"Pulling from cells\",\"id\":\"two\"}\r\n"
	"{\"status\":\"Already exists\",\"progressDetail\":{},\"id\":\"3e63eb97b22f\"}\r\n"
	"{\"status\":\"Pulling fs layer\",\"progressDetail\":{},\"id\":\"feee08c7ccec\"}\r\n"
	"{\"status\":\"Downloading\",\"progressDetail\":{\"current\":36445,\"total\":3001226},"
	"\"progress\":\"[\\u003e     ]  36.45kB/3.001MB\",\"id\":\"feee08c7ccec\"}\r\n"
	"{\"status\":\"Downloading\",\"progressDetail\":{\"current\":3001226,\"total\":3001226},"
	"\"progress\":\"[=====\\u003e]  3.001MB/3.001MB\",\"id\":\"feee08c7ccec\"}\r\n"
	"{\"status\":\"Verifying Checksum\",\"progressDetail\":{},\"id\":\"feee08c7ccec\"}\r\n"
	"{\"status\":\"Download complete\",\"progressDetail\":{},\"id\":\"feee08c7ccec\"}\r\n"
	"{\"status\":\"Extracting\",\"progressDetail\":{\"current\":32768,\"total\":3001226},"
	"\"progress\":\"[\\u003e     ]  32.77kB/3.001MB\",\"id\":\"feee08c7ccec\"}\r\n"
	"{\"status\":\"Pull complete\",\"progressDetail\":{},\"id\":\"feee08c7ccec\"}\r\n"
	"{\"status\":\"Digest: sha256:e63b17d096825027ffb17d2ecdd50d1837ede3408227429b633e7fc1eec5a8e1\"}\r\n"
	"{\"status\":\"Status: Downloaded newer image for 127.0.0.1:60603/cells:two\"}\r\n";

static void collect_event(void *ctx, const json_t *j)
{
	struct engine_pull_event ev;
	if (engine_pull_event(j, &ev) == 0)
		buf_addf(ctx, "%s %s %llu/%llu\n", ev.id, pull_state_name(ev.state),
			 (unsigned long long)ev.current, (unsigned long long)ev.total);
	else
		buf_addstr(ctx, "-\n");
}

static void pull_events_become_layer_progress(void **state)
{
	(void)state;
	static const char want[] =
		"-\n"
		"3e63eb97b22f exists 0/0\n"
		"feee08c7ccec waiting 0/0\n"
		"feee08c7ccec downloading 36445/3001226\n"
		"feee08c7ccec downloading 3001226/3001226\n"
		"feee08c7ccec downloaded 0/0\n"
		"feee08c7ccec downloaded 0/0\n"
		"feee08c7ccec extracting 32768/3001226\n"
		"feee08c7ccec done 0/0\n"
		"-\n"
		"-\n";
	/* However the stream is cut, the same events, and the pull still succeeds. */
	for (size_t step = 1; step <= sizeof(captured_pull); step += step < 8 ? 1 : 53) {
		struct engine_reply r;
		struct buf got = BUF_INIT;
		engine_reply_init(&r);
		r.on_json = collect_event;
		r.json_ctx = &got;
		for (size_t off = 0, len = strlen(captured_pull); off < len; off += step)
			engine_reply_feed(&r, captured_pull + off, len - off < step ? len - off : step);
		assert_int_equal(engine_reply_end(&r), 0);
		assert_string_equal(got.ptr, want);
		engine_reply_release(&r);
		buf_release(&got);
	}
}

/* One message, as engine_pull_event reads it: its id, or "-" when it is not a layer's. */
static char *event_of(const char *text)
{
	struct engine_pull_event ev;
	json_t *j = json_loads(text, 0, NULL);
	assert_non_null(j);
	char *id = xstrdup(engine_pull_event(j, &ev) == 0 ? ev.id : "-");
	json_decref(j);
	return id;
}

static void pull_events_that_are_not_a_layer_s(void **state)
{
	(void)state;
	static const char *const none[] = {
		/* an id that is not hex never reaches the terminal */
		"{\"status\":\"Downloading\",\"id\":\"\\u001b[2Jevil\"}",
		"{\"status\":\"Downloading\",\"id\":\"\"}",
		"{\"status\":\"Downloading\",\"id\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}",
		"{\"status\":\"Downloading\",\"id\":12}",
		"{\"status\":\"Retrying in 5 seconds\",\"id\":\"feee08c7ccec\"}",
		"{\"id\":\"feee08c7ccec\"}",
		"{\"error\":\"manifest unknown\"}",
		"[]",
	};
	for (size_t i = 0; i < ARRAY_SIZE(none); i++) {
		char *id = event_of(none[i]);
		assert_string_equal(id, "-");
		free(id);
	}
	/* Odd numbers are read as none, not as huge ones. */
	struct engine_pull_event ev;
	json_t *j = json_loads("{\"status\":\"Downloading\",\"id\":\"abc\",\"progressDetail\":"
			       "{\"current\":-5,\"total\":\"7\"}}", 0, NULL);
	assert_int_equal(engine_pull_event(j, &ev), 0);
	assert_int_equal(ev.current, 0);
	assert_int_equal(ev.total, 0);
	json_decref(j);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(request_names_the_image_escaped),
		cmocka_unit_test(credentials_go_in_x_registry_auth),
		cmocka_unit_test(a_pull_that_worked),
		cmocka_unit_test(the_engine_s_reasons_come_through),
		cmocka_unit_test(an_overlong_line_is_dropped_whole),
		cmocka_unit_test(a_create_s_answer_is_kept),
		cmocka_unit_test(an_exec_stream_is_demultiplexed),
		cmocka_unit_test(pull_events_become_layer_progress),
		cmocka_unit_test(pull_events_that_are_not_a_layer_s),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
