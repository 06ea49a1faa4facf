#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/random.h>

#include "error.h"
#include "log.h"
#include "session.h"
#include "session_sync.h"
#include "ssh.h"
#include "util.h"

/*
 * `pystrib --json session serve`: a relay between stdin/stdout and the
 * hub, in the hub's own framing (docs/events.md), over one SSH connection.
 * It keeps what it needs to reconnect without losing or repeating a byte:
 * the cell it follows, and the offsets of what it passed on of each
 * rank's streams.
 */

/* The id of serve's own hello after a reconnection. */
#define SERVE_ID "pystrib-serve"

/* A request sent whose end (done, error, ...) has not come yet. */
struct pending {
	json_t *id;
	json_t *req;		/* kept to send again (NULL: it had bytes) */
	long long ref;		/* serve's number for it (`ref`), 0: not a request on the ranks */
	long long cell;		/* an exec the hub started unseen: the cell to replay */
	char op[16];
	int started;
};

struct serve {
	struct session_client c;
	struct session_reader in;	/* stdin */
	int in_eof;
	json_t *req;			/* the request whose bytes stdin is sending */
	int skip;			/* ... and they go nowhere: its forward failed */
	long long cell;			/* the cell followed, 0: none */
	json_t *cell_id;		/* the id of its exec */
	json_t *offsets;		/* {"R": [out, err]} passed on */
	struct pending *p;
	size_t np, alloc;
	char token[48];			/* the `client` of serve's hellos */
	long long refs;			/* the last ref given */
	long long req_ref;		/* the ref of s->req */
	int resuming;			/* reconnected: the hub's hello not read yet */
	int stopped;			/* the hub said stopped */
	struct session_sync sync;	/* the project files sent before each exec */
	char chunk[65536];
};

/* ---- stdout --------------------------------------------------------- */

static int out_bytes(const void *data, size_t len)
{
	if (fwrite(data, 1, len, stdout) != len)
		return error_set(PS_EXIT_IO, "cannot write to stdout: %s", strerror(errno));
	return 0;
}

static int out_msg(const json_t *msg)
{
	struct buf line = BUF_INIT;
	int ret = session_msg_line(msg, &line);
	if (ret == 0)
		ret = out_bytes(line.ptr, line.len);
	buf_release(&line);
	fflush(stdout);
	return ret;
}

/* serve's own message: {"op": "serve", "state": ..., "message": ...}. */
static void out_state(const char *state, const char *message)
{
	json_t *m = json_pack("{s:s,s:s,s:s?}", "op", "serve", "state", state, "message", message);
	out_msg(m);
	json_decref(m);
}

/* An `error` for request id (as the hub's own errors look). */
static void out_error(const json_t *id, const char *message)
{
	json_t *m = json_pack("{s:s,s:O?,s:s}", "op", "error", "id", id, "message", message);
	out_msg(m);
	json_decref(m);
}

/* ---- pending requests ----------------------------------------------- */

static struct pending *find(struct serve *s, const json_t *id)
{
	for (size_t i = 0; id && i < s->np; i++)
		if (json_equal(s->p[i].id, (json_t *)id))
			return &s->p[i];
	return NULL;
}

/* exec, push, pull, scatter, gather, files: they wait their turn on the hub. */
static int on_ranks(const char *op)
{
	static const char *const ops[] = { "exec", "push", "pull", "scatter", "gather", "files" };
	for (size_t i = 0; i < ARRAY_SIZE(ops); i++)
		if (!strcmp(op, ops[i]))
			return 1;
	return 0;
}

/*
 * Notes req as sent; one that waits its turn gets a `ref` (the hub says
 * after a reconnection whether it started), returned (else 0). Kept,
 * unless bytes follow it, to be sent again.
 */
static long long add_pending(struct serve *s, json_t *req, int bytes)
{
	json_t *id = json_object_get(req, "id");
	const char *op = json_string_value(json_object_get(req, "op"));
	int ranks = op && on_ranks(op);
	if (ranks)
		json_object_set_new(req, "ref", json_integer(++s->refs));
	if (!id || !op || !strcmp(op, "interrupt"))
		return ranks ? s->refs : 0;
	if (s->np == s->alloc)
		s->p = xrealloc(s->p, (s->alloc = s->alloc ? 2 * s->alloc : 8) * sizeof(*s->p));
	struct pending *p = &s->p[s->np++];
	memset(p, 0, sizeof(*p));
	p->id = json_incref(id);
	p->req = bytes ? NULL : json_incref(req);
	p->ref = ranks ? s->refs : 0;
	snprintf(p->op, sizeof(p->op), "%s", op);
	return p->ref;
}

/* Ends p; the others keep their order (they are sent again in it). */
static void end_pending(struct serve *s, struct pending *p)
{
	json_decref(p->id);
	json_decref(p->req);
	memmove(p, p + 1, (size_t)(s->p + s->np - (p + 1)) * sizeof(*p));
	s->np--;
}

static struct pending *find_ref(struct serve *s, long long ref)
{
	for (size_t i = 0; ref && i < s->np; i++)
		if (s->p[i].ref == ref)
			return &s->p[i];
	return NULL;
}

/* ---- what the hub sends --------------------------------------------- */

/* The offsets slot [out, err] of rank R, made if needed. */
static json_t *slot(struct serve *s, const json_t *rank)
{
	char key[32];
	snprintf(key, sizeof(key), "%lld", json_integer_value(rank));
	json_t *v = json_object_get(s->offsets, key);
	if (!v) {
		v = json_pack("[i,i]", 0, 0);
		json_object_set_new(s->offsets, key, v);
	}
	return v;
}

/* 1 when an output of the followed cell was passed on before (a replay's overlap). */
static int seen_output(struct serve *s, const json_t *msg)
{
	if (!s->cell || json_integer_value(json_object_get(msg, "cell")) != s->cell)
		return 0;
	const char *stream = json_string_value(json_object_get(msg, "stream"));
	json_t *v = slot(s, json_object_get(msg, "rank"));
	size_t k = stream && !strcmp(stream, "stderr");
	long long at = json_integer_value(json_object_get(msg, "offset"));
	long long len = (long long)json_string_length(json_object_get(msg, "text"));
	long long known = json_integer_value(json_array_get(v, k));
	if (at < known)
		return 1;
	json_array_set_new(v, k, json_integer(at + len));
	return 0;
}

/* Notes what msg says about the cell followed and the pending requests. */
static void track(struct serve *s, const json_t *msg)
{
	const char *op = json_string_value(json_object_get(msg, "op"));
	json_t *id = json_object_get(msg, "id");
	struct pending *p = find(s, id);

	if (!op)
		return;
	if (!strcmp(op, "started")) {
		s->cell = json_integer_value(json_object_get(msg, "cell"));
		json_decref(s->cell_id);
		s->cell_id = json_incref(id);
		json_object_clear(s->offsets);
		if (p)
			p->started = 1;
	} else if (!strcmp(op, "stopped")) {
		s->stopped = 1;
		for (size_t i = s->np; i-- > 0;)
			if (!strcmp(s->p[i].op, "stop"))
				end_pending(s, &s->p[i]);
	} else if (!strcmp(op, "done") || !strcmp(op, "error") ||
		   (p && (!strcmp(op, "hello") || !strcmp(op, "status")) && !strcmp(op, p->op))) {
		if (!strcmp(op, "done") && s->cell && id && json_equal(id, s->cell_id))
			s->cell = 0;
		if (p)
			end_pending(s, p);
	}
}

static void resumed(struct serve *s, const json_t *hello);
static void follow_next(struct serve *s);

/* One item from the hub: passed on (unless a replay repeats it). 0 or -1. */
static int from_hub(struct serve *s, int item, json_t *msg, const char *data, size_t len)
{
	if (item == SESSION_PAYLOAD)
		return out_bytes(data, len);
	const char *op = json_string_value(json_object_get(msg, "op"));
	const char *id = json_string_value(json_object_get(msg, "id"));
	if (op && !strcmp(op, "output") && seen_output(s, msg))
		return 0;
	if (op && !strcmp(op, "hello") && id && !strcmp(id, SERVE_ID)) {
		if (s->resuming)
			resumed(s, msg);
		return 0;
	}
	if (session_sync_answer(&s->sync, msg, s->c.rec.id))
		return 0;	/* serve's own request, not the client's */
	track(s, msg);
	int ret = out_msg(msg);
	if (ret == 0 && !s->cell)
		follow_next(s);
	return ret;
}

/* ---- reconnecting --------------------------------------------------- */

/*
 * serve's hello: its `client` token, on a reconnection the refs of the
 * requests not known to have started (the hub answers which did), and the
 * replay of the cell followed from where it was.
 */
static int resume(struct serve *s, int again)
{
	json_t *hello = json_pack("{s:s,s:s,s:s}", "op", "hello", "id", SERVE_ID, "client",
				  s->token);
	if (again) {
		json_t *refs = json_array();
		for (size_t i = 0; i < s->np; i++)
			if (s->p[i].ref && !s->p[i].started)
				json_array_append_new(refs, json_integer(s->p[i].ref));
		json_object_set_new(hello, "refs", refs);
	}
	if (again && s->cell)
		json_object_set_new(hello, "replay", json_pack("{s:I,s:O}", "cell",
				    (json_int_t)s->cell, "offsets", s->offsets));
	int ret = session_client_send(&s->c, hello);
	json_decref(hello);
	return ret;
}

/* The cell that the hub's hello says started, for p's ref; 0: it did not, -1: not an exec. */
static long long started_cell(const json_t *hello, const struct pending *p)
{
	json_t *e;
	size_t i;
	json_array_foreach(json_object_get(hello, "started"), i, e)
		if (json_integer_value(json_object_get(e, "ref")) == p->ref)
			return json_is_integer(json_object_get(e, "cell"))
				? json_integer_value(json_object_get(e, "cell")) : -1;
	return 0;
}

/*
 * The hub's answer to the hello after a reconnection: each request not
 * known to have started is sent again if the hub did not start it (once:
 * the hub ended the old connection first, so it cannot start now); one
 * it started is followed (an exec: its cell is replayed) or, its answer
 * lost, gets an error. One that had bytes cannot be sent again: an error.
 */
static void resumed(struct serve *s, const json_t *hello)
{
	s->resuming = 0;
	for (size_t i = 0; i < s->np;) {
		struct pending *p = &s->p[i];
		long long cell = p->started ? 0 : p->ref ? started_cell(hello, p) : 0;
		if (p->started) {
			i++;
		} else if (cell > 0) {
			p->cell = cell;
			i++;
		} else if (cell < 0) {
			out_error(p->id, "the connection to the session dropped while the request "
				  "ran: its answer is lost");
			end_pending(s, p);
		} else if (!p->req) {
			out_error(p->id, "the connection to the session dropped before the request "
				  "started: send it again (serve keeps no request's bytes)");
			end_pending(s, p);
		} else {
			log_info("session %s: request sent again after the reconnection", s->c.rec.id);
			if ((!strcmp(p->op, "exec") && session_sync_files(&s->c, &s->sync) < 0) ||
			    session_client_send(&s->c, p->req) < 0) {
				/* The next read fails too: the next reconnection asks again. */
				error_clear();
				return;
			}
			i++;
		}
	}
	follow_next(s);
}

/* No cell followed: the first exec the hub started unseen is, from its first byte. */
static void follow_next(struct serve *s)
{
	for (size_t i = 0; i < s->np && !s->cell; i++) {
		struct pending *p = &s->p[i];
		if (p->cell <= 0)
			continue;
		json_t *started = json_pack("{s:s,s:O,s:I}", "op", "started", "id", p->id, "cell",
					    (json_int_t)p->cell);
		p->cell = 0;
		track(s, started);
		out_msg(started);
		json_decref(started);
		json_t *hello = json_pack("{s:s,s:s,s:{s:I,s:{}}}", "op", "hello", "id", SERVE_ID,
					  "replay", "cell", (json_int_t)s->cell, "offsets");
		if (session_client_send(&s->c, hello) < 0)
			error_clear();
		json_decref(hello);
	}
}

/*
 * After the connection (or the stream) went: connects again for up to
 * [remote] reconnect_timeout, then (resumed) sends again what the hub
 * did not start. 0 or -1.
 */
static int reconnect(struct serve *s)
{
	double until = now_monotonic() + (s->c.cfg.remote.reconnect_timeout > 0
					  ? s->c.cfg.remote.reconnect_timeout : 60);
	out_state("reconnecting", error_message());
	error_clear();
	if (s->req) {
		struct pending *p = find_ref(s, s->req_ref);
		s->skip = 1;	/* its bytes still on stdin go nowhere */
		out_error(json_object_get(s->req, "id"), "the connection to the session dropped "
			  "while sending the request: send it again");
		if (p && !p->started)
			end_pending(s, p);
	}
	while (session_client_reopen(&s->c) < 0 || resume(s, 1) < 0) {
		if (interrupt_requested() || now_monotonic() > until)
			return -1;
		log_info("%s", error_message());
		error_clear();
		sleep_interruptible(1);
	}
	s->resuming = 1;
	out_state("reconnected", NULL);
	return 0;
}

/* ---- what stdin sends ----------------------------------------------- */

/* One item of stdin: a request line or its bytes, sent on. 0, or -1: the connection. */
static int to_hub(struct serve *s, int item, json_t *msg, const char *data, size_t len)
{
	if (item == SESSION_PAYLOAD) {
		if (!s->skip && session_client_write(&s->c, data, len) < 0)
			return -1;
		if (!s->in.payload_left) {
			json_decref(s->req);
			s->req = NULL;
			s->skip = 0;
		}
		return 0;
	}
	if (!json_is_string(json_object_get(msg, "op"))) {
		out_error(json_object_get(msg, "id"), "a request needs an 'op'");
		if (s->in.payload_left) {
			/* Its bytes follow: dropped with it, or they would reach the hub raw. */
			s->req = msg;
			s->skip = 1;
			return 0;
		}
		json_decref(msg);
		return 0;
	}
	s->req_ref = add_pending(s, msg, s->in.payload_left > 0);
	/* The files first: the hub runs requests in their order. */
	int ret = 0;
	if (!strcmp(json_string_value(json_object_get(msg, "op")), "exec"))
		ret = session_sync_files(&s->c, &s->sync);
	if (ret == 0)
		ret = session_client_send(&s->c, msg);
	if (s->in.payload_left) {
		s->req = msg;
		s->skip = 0;
	} else {
		json_decref(msg);
	}
	return ret;
}

/* Reads what stdin has (it is readable) and sends it on. 0, -1 the connection. */
static int read_stdin(struct serve *s)
{
	ssize_t n = read(0, s->chunk, sizeof(s->chunk));
	json_t *msg;
	const char *data;
	size_t len;
	int item;

	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return 0;
	if (n <= 0) {
		s->in_eof = 1;
		return 0;
	}
	session_reader_feed(&s->in, s->chunk, (size_t)n);
	while ((item = session_reader_next(&s->in, &msg, &data, &len)) != SESSION_NEED_MORE) {
		if (item < 0) {
			/* A bad line is the client's mistake: said, and skipped. */
			out_error(NULL, error_message());
			error_clear();
			continue;
		}
		if (to_hub(s, item, msg, data, len) < 0)
			return -1;
	}
	return 0;
}

static int stdin_ready(void)
{
	struct pollfd p = { .fd = 0, .events = POLLIN };
	return poll(&p, 1, 0) > 0;
}

/* ---- the loop ------------------------------------------------------- */

static int serve_loop(struct serve *s)
{
	json_t *msg = NULL;
	const char *data;
	size_t len;

	for (;;) {
		if (s->in_eof && !s->np && !s->req)
			return 0;
		if (interrupt_requested())
			return error_set(PS_EXIT_INTERRUPTED, "interrupted");
		/* Reconnected: what is sent again goes first, in its order. */
		if (!s->in_eof && !s->resuming && stdin_ready() && read_stdin(s) < 0) {
			if (reconnect(s) < 0)
				return -1;
			continue;
		}
		int item = session_client_next(&s->c, 1000, s->in_eof ? -1 : 0, &msg, &data, &len);
		if (item == SESSION_MESSAGE || item == SESSION_PAYLOAD) {
			int ret = from_hub(s, item, msg, data, len);
			json_decref(msg);
			msg = NULL;
			if (ret < 0)
				return -1;
			continue;
		}
		if (item == SESSION_NEED_MORE)
			continue;
		if (s->stopped)
			return 0;	/* the hub closed after its stop */
		if (reconnect(s) < 0)
			return -1;
	}
}

/* The `client` token: the hub knows serve's connections by it. */
static void new_token(struct serve *s)
{
	unsigned long long rnd = 0;
	if (getrandom(&rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
		rnd = (unsigned long long)now_wall() ^ (unsigned long long)getpid() << 32;
	snprintf(s->token, sizeof(s->token), "serve-%d-%016llx", (int)getpid(), rnd);
}

int session_serve(const char *arg)
{
	struct serve s;
	int ret = 0;

	memset(&s, 0, sizeof(s));
	session_client_init(&s.c);
	session_reader_init(&s.in);
	session_sync_init(&s.sync);
	s.offsets = json_object();
	new_token(&s);
	if (session_client_open(&s.c, arg) < 0 || resume(&s, 0) < 0 || serve_loop(&s) < 0)
		ret = error_report();
	fflush(stdout);
	for (size_t i = 0; i < s.np; i++) {
		json_decref(s.p[i].id);
		json_decref(s.p[i].req);
	}
	free(s.p);
	json_decref(s.req);
	json_decref(s.cell_id);
	json_decref(s.offsets);
	session_sync_release(&s.sync);
	session_reader_release(&s.in);
	session_client_release(&s.c);
	return ret;
}
