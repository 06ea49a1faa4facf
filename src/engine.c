/* The remote docker engine's API over an SSH stream: see engine.h. */
#include "engine.h"

#include <jansson.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "util.h"

#define LINE_MAX_BYTES (64u << 10)
#define WHY_MAX_BYTES 512

const char *engine_socket(const struct remote_config *r)
{
	return r->runtime == RUNTIME_DOCKER && r->docker_socket && *r->docker_socket
	       ? r->docker_socket : NULL;
}

/* Query-string escaping: unreserved characters stay, the rest is %XX. */
static void add_escaped(struct buf *out, const char *s)
{
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		    (ch >= '0' && ch <= '9') || strchr("-._~", ch))
			buf_addch(out, (char)ch);
		else
			buf_addf(out, "%%%02X", ch);
	}
}

/* X-Registry-Auth: base64url of {"username","password","serveraddress"}. */
static void add_auth_header(struct buf *out, const struct engine_auth *auth)
{
	json_t *j = json_pack("{s:s,s:s,s:s}", "username", auth->username, "password",
			      auth->password, "serveraddress", auth->server);
	char *js = j ? json_dumps(j, JSON_COMPACT) : NULL;
	json_decref(j);	/* frees its copy of the password unwiped: jansson has no hook */
	if (!js)
		return;
	size_t n = strlen(js);
	unsigned char *b64 = xmalloc(4 * ((n + 2) / 3) + 1);
	int len = EVP_EncodeBlock(b64, (const unsigned char *)js, (int)n);
	for (int i = 0; i < len; i++)
		b64[i] = b64[i] == '+' ? '-' : b64[i] == '/' ? '_' : b64[i];
	buf_addstr(out, "X-Registry-Auth: ");
	buf_add(out, b64, (size_t)len);
	buf_addstr(out, "\r\n");
	memset(b64, 0, (size_t)len);
	memset(js, 0, n);
	free(b64);
	free(js);
}

void engine_pull_request(struct buf *out, const char *image, const struct engine_auth *auth)
{
	buf_addstr(out, "POST /images/create?fromImage=");
	add_escaped(out, image);
	buf_addstr(out, " HTTP/1.0\r\nHost: docker\r\nUser-Agent: pystrib\r\n"
		   "Content-Length: 0\r\n");
	if (auth && auth->username && auth->password && auth->server)
		add_auth_header(out, auth);
	buf_addstr(out, "\r\n");
}

void engine_reply_init(struct engine_reply *r)
{
	memset(r, 0, sizeof(*r));
	buf_init(&r->line, LINE_MAX_BYTES);
	buf_init(&r->why, WHY_MAX_BYTES);
}

void engine_reply_release(struct engine_reply *r)
{
	buf_release(&r->line);
	buf_release(&r->why);
}

/* Keeps the first reason only, printable ASCII, cut at the buffer's cap. */
static void set_why(struct engine_reply *r, const char *msg)
{
	if (r->why.len || !msg || !*msg)
		return;
	for (; *msg && r->why.len + 1 < WHY_MAX_BYTES; msg++)
		buf_addch(&r->why, *msg >= ' ' && *msg < 0x7f ? *msg : '?');
}

/* "error", else errorDetail.message, else "message" (an HTTP error's body). */
static void body_line(struct engine_reply *r, const char *s, size_t len)
{
	json_t *j = json_loadb(s, len, 0, NULL);
	if (!json_is_object(j)) {
		json_decref(j);
		return;
	}
	const char *msg = json_string_value(json_object_get(j, "error"));
	if (!msg)
		msg = json_string_value(json_object_get(json_object_get(j, "errorDetail"),
							"message"));
	if (!msg && r->status != 200)
		msg = json_string_value(json_object_get(j, "message"));
	set_why(r, msg);
	json_decref(j);
}

static void one_line(struct engine_reply *r, const char *s, size_t len)
{
	if (len && s[len - 1] == '\r')
		len--;
	if (r->in_body) {
		if (len)
			body_line(r, s, len);
	} else if (!r->status) {
		/* "HTTP/1.x NNN Reason"; anything else leaves status at -1. */
		r->status = -1;
		if (len >= 12 && !strncmp(s, "HTTP/1.", 7) && s[8] == ' ') {
			int n = 0;
			for (size_t i = 9; i < 12; i++)
				n = s[i] >= '0' && s[i] <= '9' && n >= 0 ? n * 10 + (s[i] - '0') : -1;
			if (n >= 100)
				r->status = n;
		}
	} else if (!len) {
		r->in_body = 1;
	}
}

void engine_reply_feed(struct engine_reply *r, const char *data, size_t len)
{
	while (len) {
		const char *nl = memchr(data, '\n', len);
		size_t n = nl ? (size_t)(nl - data) : len;
		/* A line past the cap is dropped whole; its end still ends it. */
		if (!r->overlong && buf_add(&r->line, data, n) < 0) {
			buf_reset(&r->line);
			r->overlong = 1;
		}
		if (!nl)
			return;
		if (!r->overlong)
			one_line(r, r->line.ptr ? r->line.ptr : "", r->line.len);
		r->overlong = 0;
		buf_reset(&r->line);
		data += n + 1;
		len -= n + 1;
	}
}

int engine_reply_end(struct engine_reply *r)
{
	if (r->line.len && !r->overlong) {
		one_line(r, r->line.ptr, r->line.len);
		buf_reset(&r->line);
	}
	if (r->status == 200 && !r->why.len)
		return 0;
	if (!r->why.len)
		set_why(r, r->status > 0 ? "the engine answered with an error and no message"
			   : "no HTTP answer (is this a docker engine's socket?)");
	return -1;
}

struct pull {
	struct engine_reply reply;
	const atomic_int *stop;
};

static int on_output(void *ctx, int fd, const char *data, size_t len)
{
	struct pull *p = ctx;
	(void)fd;
	engine_reply_feed(&p->reply, data, len);
	return 0;
}

static int on_tick(void *ctx)
{
	struct pull *p = ctx;
	if (p->stop && atomic_load(p->stop))
		return error_set(PS_EXIT_REMOTE, "the pull through the engine's socket was "
				 "no longer needed");
	return 0;
}

/* Sends req over a stream to socket and reads the answer; what = for the error. */
static int exchange(struct ssh_conn *c, const char *socket, const struct buf *req,
		    double deadline, const atomic_int *stop, const char *what)
{
	struct ssh_exec_opts o = SSH_EXEC_OPTS_INIT;
	struct pull p;
	int ret;

	engine_reply_init(&p.reply);
	p.stop = stop;
	o.in = req->ptr;
	o.in_len = req->len;
	o.on_output = on_output;
	o.on_tick = on_tick;
	o.tick = 0.2;
	o.ctx = &p;
	o.deadline = deadline;
	ret = ssh_conn_unix_stream(c, socket, &o);
	if (ret == 0 && engine_reply_end(&p.reply) < 0) {
		ret = SSH_R_FAILED;
		error_set(PS_EXIT_REMOTE, "the docker engine at '%s' on '%s' %s: %s", socket,
			  ssh_conn_name(c), what, p.reply.why.ptr);
	}
	engine_reply_release(&p.reply);
	return ret;
}

int engine_pull(struct ssh_conn *c, const char *socket, const char *image,
		const struct engine_auth *auth, double deadline, const atomic_int *stop)
{
	struct buf req = BUF_INIT;
	engine_pull_request(&req, image, auth);
	int ret = exchange(c, socket, &req, deadline, stop, "did not pull the image");
	memset(req.ptr, 0, req.len);
	buf_release(&req);
	return ret;
}

int engine_ping(struct ssh_conn *c, const char *socket, double deadline)
{
	struct buf req = BUF_INIT;
	buf_addstr(&req, "GET /_ping HTTP/1.0\r\nHost: docker\r\nUser-Agent: pystrib\r\n\r\n");
	int ret = exchange(c, socket, &req, deadline, NULL, "did not answer a ping");
	buf_release(&req);
	return ret;
}
