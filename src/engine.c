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
	json_decref(r->json);
	r->json = NULL;
}

static int status_ok(int status)
{
	return status >= 200 && status < 300;
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
	if (!msg && !status_ok(r->status))
		msg = json_string_value(json_object_get(j, "message"));
	set_why(r, msg);
	if (r->on_json)
		r->on_json(r->json_ctx, j);
	if (!r->json)
		r->json = j;	/* the answer of a create: {"Id": ...} */
	else
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
	if (status_ok(r->status) && !r->why.len)
		return 0;
	if (!r->why.len)
		set_why(r, r->status > 0 ? "the engine answered with an error and no message"
			   : "no HTTP answer (is this a docker engine's socket?)");
	return -1;
}

int engine_pull_event(const json_t *j, struct engine_pull_event *ev)
{
	static const struct {
		const char *status;
		enum pull_state state;
	} states[] = {
		{ "Pulling fs layer", PULL_WAITING }, { "Waiting", PULL_WAITING },
		{ "Downloading", PULL_DOWNLOADING }, { "Verifying Checksum", PULL_DOWNLOADED },
		{ "Download complete", PULL_DOWNLOADED }, { "Extracting", PULL_EXTRACTING },
		{ "Pull complete", PULL_DONE }, { "Already exists", PULL_EXISTS },
	};
	const char *status = json_string_value(json_object_get(j, "status"));
	const char *id = json_string_value(json_object_get(j, "id"));
	const json_t *detail = json_object_get(j, "progressDetail");
	size_t n = id ? strlen(id) : 0;

	/* The id reaches the terminal: hex digits only, as the engine names layers. */
	if (!status || !n || n > 64 || strspn(id, "0123456789abcdef") != n)
		return -1;
	for (size_t i = 0; i < ARRAY_SIZE(states); i++) {
		if (strcmp(status, states[i].status))
			continue;
		json_int_t cur = json_integer_value(json_object_get(detail, "current"));
		json_int_t tot = json_integer_value(json_object_get(detail, "total"));
		ev->id = id;
		ev->state = states[i].state;
		ev->current = cur > 0 ? (uint64_t)cur : 0;
		ev->total = tot > 0 ? (uint64_t)tot : 0;
		return 0;
	}
	return -1;
}

struct pull {
	struct engine_reply reply;
	const atomic_int *stop;
};

static void pull_json(void *ctx, const json_t *j)
{
	struct engine_pull_event ev;
	if (engine_pull_event(j, &ev) == 0)
		pull_progress_layer(ctx, ev.id, ev.state, ev.current, ev.total);
}

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

/*
 * Sends req over a stream to socket and reads the answer; what = for the
 * error. json: when not NULL, the answer's first JSON object (or NULL).
 * pp: when not NULL, the answer is a pull's and shown there.
 */
static int exchange(struct ssh_conn *c, const char *socket, const struct buf *req,
		    double deadline, const atomic_int *stop, const char *what, json_t **json,
		    struct pull_progress *pp)
{
	struct ssh_exec_opts o = SSH_EXEC_OPTS_INIT;
	struct pull p;
	int ret;

	engine_reply_init(&p.reply);
	p.stop = stop;
	if (pp) {
		p.reply.on_json = pull_json;
		p.reply.json_ctx = pp;
	}
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
	if (pp)
		pull_progress_end(pp, ret == 0);
	if (json) {
		*json = ret == 0 ? p.reply.json : NULL;
		if (ret == 0)
			p.reply.json = NULL;
	}
	engine_reply_release(&p.reply);
	return ret;
}

int engine_pull(struct ssh_conn *c, const char *socket, const char *image,
		const struct engine_auth *auth, double deadline, const atomic_int *stop)
{
	struct buf req = BUF_INIT;
	struct pull_progress pp;

	pull_progress_init(&pp, stderr);
	engine_pull_request(&req, image, auth);
	int ret = exchange(c, socket, &req, deadline, stop, "did not pull the image", NULL, &pp);
	memset(req.ptr, 0, req.len);
	buf_release(&req);
	pull_progress_release(&pp);
	return ret;
}

int engine_ping(struct ssh_conn *c, const char *socket, double deadline)
{
	struct buf req = BUF_INIT;
	buf_addstr(&req, "GET /_ping HTTP/1.0\r\nHost: docker\r\nUser-Agent: pystrib\r\n\r\n");
	int ret = exchange(c, socket, &req, deadline, NULL, "did not answer a ping", NULL, NULL);
	buf_release(&req);
	return ret;
}

/* ---- containers and their processes -------------------------------- */

/*
 * "METHOD PATH HTTP/1.x" with the usual headers and body (JSON, may be
 * NULL) appended to out. Container and exec ids are hex, names pystrib-ID:
 * path is built from them and needs no escaping.
 */
static void request(struct buf *out, const char *method, const char *path, const json_t *body,
		    int upgrade)
{
	char *js = body ? json_dumps(body, JSON_COMPACT) : NULL;
	buf_addf(out, "%s %s HTTP/1.%d\r\nHost: docker\r\nUser-Agent: pystrib\r\n", method, path,
		 upgrade ? 1 : 0);
	if (upgrade)
		buf_addstr(out, "Connection: Upgrade\r\nUpgrade: tcp\r\n");
	if (js)
		buf_addstr(out, "Content-Type: application/json\r\n");
	buf_addf(out, "Content-Length: %zu\r\n\r\n", js ? strlen(js) : (size_t)0);
	if (js)
		buf_addstr(out, js);
	free(js);
}

/* One request and its answer's JSON (when json is not NULL). */
static int call(struct ssh_conn *c, const char *socket, const char *method, const char *path,
		const json_t *body, const char *what, json_t **json)
{
	struct buf req = BUF_INIT;
	request(&req, method, path, body, 0);
	int ret = exchange(c, socket, &req, 0, NULL, what, json, NULL);
	buf_release(&req);
	return ret;
}

/* An id as the engine gives them (hex); anything else is refused. */
static char *take_id(json_t *j, struct ssh_conn *c, const char *what)
{
	const char *id = json_string_value(json_object_get(j, "Id"));
	size_t n = id ? strlen(id) : 0;
	if (!n || n > 128 || strspn(id, "0123456789abcdef") != n) {
		error_set(PS_EXIT_REMOTE, "the docker engine on '%s' %s but gave no id", ssh_conn_name(c),
			  what);
		return NULL;
	}
	return xstrdup(id);
}

int engine_create(struct ssh_conn *c, const char *socket, const char *name,
		  const json_t *config, char **id)
{
	json_t *j = NULL;
	char *path = xstrfmt("/containers/create?name=%s", name);
	int ret = call(c, socket, "POST", path, config, "did not create the job's container", &j);
	free(path);
	*id = NULL;
	if (ret == 0 && !(*id = take_id(j, c, "created the job's container")))
		ret = SSH_R_FAILED;
	json_decref(j);
	return ret;
}

/* A request about container id: METHOD /containers/ID<rest>, no answer kept. */
static int container_call(struct ssh_conn *c, const char *socket, const char *method,
			  const char *id, const char *rest, const char *what)
{
	char *path = xstrfmt("/containers/%s%s", id, rest);
	int ret = call(c, socket, method, path, NULL, what, NULL);
	free(path);
	return ret;
}

int engine_start(struct ssh_conn *c, const char *socket, const char *id)
{
	return container_call(c, socket, "POST", id, "/start", "did not start the job's container");
}

int engine_pid(struct ssh_conn *c, const char *socket, const char *id, long *pid)
{
	json_t *j = NULL;
	char *path = xstrfmt("/containers/%s/json", id);
	int ret = call(c, socket, "GET", path, NULL, "did not describe the job's container", &j);
	json_t *p = json_object_get(json_object_get(j, "State"), "Pid");
	*pid = ret == 0 && json_is_integer(p) ? (long)json_integer_value(p) : 0;
	json_decref(j);
	free(path);
	return ret;
}

int engine_kill(struct ssh_conn *c, const char *socket, const char *id)
{
	return container_call(c, socket, "POST", id, "/kill", "did not stop the job's container");
}

int engine_remove(struct ssh_conn *c, const char *socket, const char *id)
{
	return container_call(c, socket, "DELETE", id, "?force=1",
			      "did not remove the job's container");
}

void engine_mux_init(struct engine_mux *m, ssh_output_fn out, void *ctx)
{
	memset(m, 0, sizeof(*m));
	engine_reply_init(&m->head);
	m->out = out;
	m->ctx = ctx;
}

void engine_mux_release(struct engine_mux *m)
{
	engine_reply_release(&m->head);
}

int engine_mux_feed(struct engine_mux *m, const char *data, size_t len)
{
	/* The answer's head, a line at a time, until the stream proper. */
	while (len && !m->raw) {
		if (m->head.in_body) {
			engine_reply_feed(&m->head, data, len);	/* an error's body */
			return 0;
		}
		const char *nl = memchr(data, '\n', len);
		size_t n = nl ? (size_t)(nl - data) + 1 : len;
		engine_reply_feed(&m->head, data, n);
		data += n;
		len -= n;
		if (m->head.in_body && (m->head.status == 101 || m->head.status == 200))
			m->raw = 1;
	}
	/* Frames: 1 byte stream (1 stdout, 2 stderr), 3 zero, 4 bytes length. */
	while (len) {
		if (m->hlen < sizeof(m->hdr)) {
			size_t n = sizeof(m->hdr) - m->hlen;
			if (n > len)
				n = len;
			memcpy(m->hdr + m->hlen, data, n);
			m->hlen += n;
			data += n;
			len -= n;
			if (m->hlen == sizeof(m->hdr)) {
				m->fd = m->hdr[0] == 1 ? 1 : 2;
				m->left = (uint32_t)m->hdr[4] << 24 | (uint32_t)m->hdr[5] << 16 |
					  (uint32_t)m->hdr[6] << 8 | m->hdr[7];
				if (!m->left)
					m->hlen = 0;
			}
			continue;
		}
		size_t n = len < m->left ? len : m->left;
		if (m->out(m->ctx, m->fd, data, n) < 0)
			return -1;
		data += n;
		len -= n;
		m->left -= (uint32_t)n;
		if (!m->left)
			m->hlen = 0;
	}
	return 0;
}

static int mux_output(void *ctx, int fd, const char *data, size_t len)
{
	(void)fd;
	return engine_mux_feed(ctx, data, len);
}

int engine_exec(struct ssh_conn *c, const char *socket, const char *id, const json_t *cmd,
		const struct ssh_exec_opts *o, int *exit_code)
{
	struct ssh_exec_opts so = *o;
	struct engine_mux m;
	struct buf req = BUF_INIT;
	json_t *j = NULL;
	char *exec_id = NULL, *path = xstrfmt("/containers/%s/exec", id);
	json_t *body = json_pack("{s:O,s:b,s:b}", "Cmd", cmd, "AttachStdout", 1, "AttachStderr", 1);
	int ret = call(c, socket, "POST", path, body, "did not run the follower in the job's container",
		       &j);

	json_decref(body);
	free(path);
	path = NULL;
	if (ret == 0 && !(exec_id = take_id(j, c, "ran the follower in the job's container")))
		ret = SSH_R_FAILED;
	json_decref(j);
	j = NULL;
	if (ret < 0)
		goto out;

	path = xstrfmt("/exec/%s/start", exec_id);
	body = json_pack("{s:b,s:b}", "Detach", 0, "Tty", 0);
	request(&req, "POST", path, body, 1);
	json_decref(body);
	free(path);
	path = NULL;
	engine_mux_init(&m, o->on_output, o->ctx);
	so.in = req.ptr;
	so.in_len = req.len;
	so.in_fd = -1;
	so.on_output = mux_output;
	so.ctx = &m;
	ret = ssh_conn_unix_stream(c, socket, &so);
	if (ret == 0 && !m.raw) {
		engine_reply_end(&m.head);
		error_set(PS_EXIT_REMOTE, "the docker engine at '%s' on '%s' did not run the "
			  "follower in the job's container: %s", socket, ssh_conn_name(c),
			  m.head.why.ptr ? m.head.why.ptr : "no stream");
		ret = SSH_R_FAILED;
	}
	engine_mux_release(&m);
	if (ret < 0)
		goto out;

	/* How it ended: the stream only says that it did. */
	path = xstrfmt("/exec/%s/json", exec_id);
	ret = call(c, socket, "GET", path, NULL, "did not say how the follower ended", &j);
	if (ret == 0) {
		json_t *code = json_object_get(j, "ExitCode");
		*exit_code = json_is_integer(code) && !json_is_true(json_object_get(j, "Running"))
			     ? (int)json_integer_value(code) : -1;
	}
	json_decref(j);
out:
	buf_release(&req);
	free(path);
	free(exec_id);
	return ret;
}
