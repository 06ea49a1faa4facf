#include "session.h"
#include "session_sync.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "error.h"
#include "jobarg.h"
#include "jobfmt.h"
#include "jobremote.h"
#include "jobstate.h"
#include "log.h"
#include "remote_job.h"
#include "run.h"
#include "ssh.h"
#include "util.h"

/* How long start waits for every rank to say ready. */
#define START_WAIT 300
/* A cell's file, sent whole in one line: the line's cap, less the rest. */
#define CODE_MAX (SESSION_LINE_MAX - 4096)
/* The id of the interrupts exec and attach send. */
#define INTERRUPT_ID "pystrib-interrupt"

/* ---- start ---------------------------------------------------------- */

/* "sh -c <jobctl.sh> jobctl.sh session-wait DIR SECONDS" */
static void wait_command(struct buf *cmd, const char *dir)
{
	remote_job_jobctl(cmd, "session-wait", dir);
	buf_addf(cmd, " %d", START_WAIT);
}

/* jobctl.sh session-wait's answer: the absolute dir, the job's state, session.json. */
static int parse_wait(const char *out, char **dir, char **state, json_t **status)
{
	const char *json = strstr(out, "\njson\n");
	if (strncmp(out, "dir ", 4) || !json)
		return error_set(PS_EXIT_REMOTE, "the session's host gave no answer about its start%s%s",
				 !strncmp(out, "gone", 4) ? ": its directory is gone" : "", "");
	const char *nl = strchr(out, '\n');
	*dir = xstrndup(out + 4, (size_t)(nl - out - 4));
	const char *st = nl + 1;
	*state = !strncmp(st, "state ", 6) ? xstrndup(st + 6, strcspn(st + 6, "\n")) : xstrdup("");
	*status = json_loads(json + 6, 0, NULL);
	return 0;
}

static int set_started(struct jobrec *r, void *ctx)
{
	jobrec_set(&r->jobdir, ctx);
	jobrec_set(&r->state, "running");
	return 0;
}

/* Why a session did not come up, from its session.json (may be NULL). */
static char *start_failure(const json_t *status, const char *state)
{
	const char *err = json_string_value(json_object_get(status, "error"));
	json_t *broken = json_object_get(status, "broken");
	const char *why = json_string_value(json_object_get(broken, "reason"));
	if (err)
		return xstrdup(err);
	if (why && json_is_integer(json_object_get(broken, "rank")))
		return xstrfmt("rank %d %s", (int)json_integer_value(json_object_get(broken, "rank")),
			       why);
	if (why)
		return xstrdup(why);
	if (job_state_final(state))
		return xstrfmt("its job ended (%s) before the hub was ready", state);
	return xstrfmt("its ranks were not ready after %d s", START_WAIT);
}

int session_wait_started(struct run *r)
{
	struct buf cmd = BUF_INIT, out;
	char *dir = NULL, *state = NULL, *why = NULL, *final = NULL;
	json_t *status = NULL;
	int ret, code;

	/* The remote side caps it at 1 MiB; this side does not trust that. */
	buf_init(&out, 2 << 20);
	wait_command(&cmd, r->dir);
	ret = ssh_conn_capture(r->conn, cmd.ptr, NULL, 0, &out, NULL, &code);
	if (ret < 0 || parse_wait(out.ptr, &dir, &state, &status) < 0) {
		ret = error_report();
		goto out;
	}
	const char *hub = json_string_value(json_object_get(status, "state"));
	if (!hub || strcmp(hub, "idle")) {
		why = start_failure(status, state);
		if (!job_state_final(state))
			remote_job_cancel(r->conn, r->dir, "cancelled", &final);
		error_clear();
		error_set(PS_EXIT_REMOTE, "session %s did not start: %s", r->id, why);
		error_hint("its hub's log: 'pystrib logs %s'", r->id);
		ret = error_report();
		goto out;
	}
	/* direct-streamlocal needs the socket's absolute path: learnt here once. */
	if (jobrec_update(r->id, set_started, dir) < 0) {
		log_warn("%s", error_message());
		error_clear();
	}
	/* What the project layer holds: the files later cells are compared with. */
	if (session_sync_start(r->id, r->ctx.project_root, r->created) < 0) {
		log_warn("session %s: its project files will not be kept in step: %s", r->id,
			 error_message());
		error_clear();
	}
	run_stage("session ready");
	event_emit("session", "{s:s,s:s,s:s,s:i,s:s}", "id", r->id, "host", ssh_conn_name(r->conn),
		   "dir", dir, "np", r->cfg.job.np, "state", "idle");
	if (!log_json)
		printf("%s\n", r->id);
	ret = 0;
out:
	json_decref(status);
	free(dir);
	free(state);
	free(why);
	free(final);
	buf_release(&cmd);
	buf_release(&out);
	return ret;
}

/* ---- the connection ------------------------------------------------- */

void session_client_init(struct session_client *c)
{
	memset(c, 0, sizeof(*c));
	jobrec_init(&c->rec);
	session_reader_init(&c->rd);
}

void session_client_release(struct session_client *c)
{
	ssh_stream_free(c->st);
	ssh_conn_free(c->conn);
	if (c->have_cfg)
		config_release(&c->cfg);
	jobrec_release(&c->rec);
	session_reader_release(&c->rd);
	free(c->sock);
	memset(c, 0, sizeof(*c));
}

/* The stream to hub.sock, on a connection that is up. */
static int open_stream(struct session_client *c)
{
	if (ssh_stream_open(c->conn, c->sock, &c->st) == 0)
		return 0;
	error_wrap("session %s cannot be reached", c->rec.id);
	error_hint("it may have stopped: 'pystrib jobs' shows whether its job still runs");
	return -1;
}

/* The record of a session that arg names: 'last' is the newest session. */
static int resolve(struct jobrec *r, const char *arg)
{
	if (!strcmp(arg, "last")) {
		struct jobrec *v = NULL;
		size_t n = 0;
		int found = -1;
		if (jobrec_list(&v, &n) < 0)
			return -1;
		for (size_t i = 0; i < n && found < 0; i++)
			if (v[i].kind && !strcmp(v[i].kind, "session"))
				found = (int)i;
		if (found >= 0)
			found = jobrec_load(r, v[found].id);
		else
			error_set(PS_EXIT_USAGE, "there is no session"),
			error_hint("start one with 'pystrib session start'");
		jobrec_list_free(v, n);
		return found < 0 ? -1 : 0;
	}
	if (jobrec_resolve(r, arg) < 0)
		return -1;
	if (!r->kind || strcmp(r->kind, "session"))
		return error_set(PS_EXIT_USAGE, "'%s' is a job, not a session", r->id),
		       error_hint("'pystrib session list' lists the sessions");
	if (!r->jobdir || r->jobdir[0] != '/')
		return error_set(PS_EXIT_REMOTE, "session %s never started", r->id);
	return 0;
}

int session_client_open(struct session_client *c, const char *arg)
{
	if (resolve(&c->rec, arg) < 0)
		return -1;
	c->have_cfg = 1;
	if (jobrec_connect(&c->rec, cli.config_file, &c->cfg, &c->conn) < 0)
		return -1;
	c->sock = xstrfmt("%s/hub.sock", c->rec.jobdir);
	return open_stream(c);
}

int session_client_reopen(struct session_client *c)
{
	ssh_stream_free(c->st);
	c->st = NULL;
	session_reader_release(&c->rd);
	session_reader_init(&c->rd);
	if (ssh_conn_reconnect(c->conn) < 0)
		return -1;
	return open_stream(c);
}

int session_client_write(struct session_client *c, const void *data, size_t len)
{
	return ssh_stream_write(c->st, data, len) < 0 ? -1 : 0;
}

int session_client_send(struct session_client *c, const json_t *msg)
{
	struct buf line = BUF_INIT;
	int ret = session_msg_line(msg, &line);
	if (ret == 0)
		ret = session_client_write(c, line.ptr, line.len);
	buf_release(&line);
	return ret;
}

int session_client_next(struct session_client *c, int timeout_ms, int wake_fd, json_t **msg,
			const char **data, size_t *len)
{
	for (;;) {
		int item = session_reader_next(&c->rd, msg, data, len);
		if (item != SESSION_NEED_MORE)
			return item;
		int n = ssh_stream_read(c->st, c->chunk, sizeof(c->chunk), timeout_ms, wake_fd);
		if (n <= 0) {
			if (n < 0 && ssh_stream_eof(c->st))
				error_set(PS_EXIT_REMOTE, "session %s closed the connection (it stopped)",
					  c->rec.id);
			return n;
		}
		session_reader_feed(&c->rd, c->chunk, (size_t)n);
		timeout_ms = 0;
	}
}

/* ---- a cell's output and end ---------------------------------------- */

/* Where each rank's streams are: at a line's start or in its middle. */
struct view {
	unsigned char *mid;	/* 2 per rank */
	int n;
};

static void view_release(struct view *v)
{
	free(v->mid);
	memset(v, 0, sizeof(*v));
}

/* Shows one `output`: "[rank] " before each line, as run does. */
static void show_output(struct view *v, const json_t *msg)
{
	int rank = (int)json_integer_value(json_object_get(msg, "rank"));
	const char *stream = json_string_value(json_object_get(msg, "stream"));
	json_t *t = json_object_get(msg, "text");
	const char *text = json_string_value(t);
	size_t len = json_string_length(t);
	int err = stream && !strcmp(stream, "stderr");

	if (!text || rank < 0 || rank > 1000000)
		return;
	if (log_json) {
		event_emit("output", "{s:i,s:s,s:s%,s:O?,s:O?}", "rank", rank,
			   "stream", err ? "stderr" : "stdout", "text", text, len,
			   "cell", json_object_get(msg, "cell"), "offset", json_object_get(msg, "offset"));
		return;
	}
	if (rank >= v->n) {
		v->mid = xrealloc(v->mid, (size_t)(rank + 1) * 2);
		memset(v->mid + 2 * v->n, 0, (size_t)(rank + 1 - v->n) * 2);
		v->n = rank + 1;
	}
	FILE *fp = err ? stderr : stdout;
	unsigned char *mid = &v->mid[2 * rank + err];
	while (len) {
		const char *nl = memchr(text, '\n', len);
		size_t n = nl ? (size_t)(nl - text) + 1 : len;
		if (!*mid)
			fprintf(fp, "[%d] ", rank);
		fwrite(text, 1, n, fp);
		*mid = !nl;
		text += n;
		len -= n;
	}
	fflush(fp);
}

/* The exit code of a cell's `done` (docs/sessions.md). */
static int done_code(const char *status)
{
	if (!status || !strcmp(status, "ok"))
		return 0;
	if (!strcmp(status, "error"))
		return PS_EXIT_RANK;
	if (!strcmp(status, "timeout"))
		return PS_EXIT_TIMEOUT;
	if (!strcmp(status, "interrupted"))
		return PS_EXIT_INTERRUPTED;
	return PS_EXIT_REMOTE;	/* broken, stopped */
}

/* A raising rank's traceback, "[rank] " before each line as its stderr has:
 * the worker sends it in `done` only, so that a notebook shows it once. */
static void show_traceback(int rank, const char *tb)
{
	while (tb && *tb) {
		size_t n = strcspn(tb, "\n");
		fprintf(stderr, "[%d] %.*s\n", rank, (int)n, tb);
		tb += n + (tb[n] == '\n');
	}
}

/* The summary of a cell's `done`, on stderr, and its event. The exit code. */
static int show_done(const char *id, const json_t *msg, double took)
{
	const char *status = json_string_value(json_object_get(msg, "status"));
	const char *why = json_string_value(json_object_get(msg, "message"));
	json_t *ranks = json_object_get(msg, "ranks"), *rk;
	int code = done_code(status);
	size_t i;

	event_emit("done", "{s:s,s:O?,s:s?,s:i,s:O?,s:s?,s:f}", "id", id,
		   "cell", json_object_get(msg, "cell"), "status", status, "exit_code", code,
		   "ranks", ranks, "message", why, "duration", took);
	if (log_json)
		return code;
	json_array_foreach(ranks, i, rk) {
		json_t *e = json_object_get(rk, "error");
		const char *rs = json_string_value(json_object_get(rk, "status"));
		/* A broken or stopped cell's ranks carry the hub's reason, said below. */
		if (!json_is_object(e) || (rs && (!strcmp(rs, "broken") || !strcmp(rs, "stopped"))))
			continue;
		show_traceback((int)json_integer_value(json_object_get(rk, "rank")),
			       json_string_value(json_object_get(e, "traceback")));
		fprintf(stderr, "pystrib: rank %d raised %s: %s\n",
			(int)json_integer_value(json_object_get(rk, "rank")),
			json_string_value(json_object_get(e, "type")) ?: "an exception",
			json_string_value(json_object_get(e, "message")) ?: "");
	}
	if (code == 0)
		fprintf(stderr, "pystrib: cell %lld ok on %zu rank%s in %.3f s\n",
			json_integer_value(json_object_get(msg, "cell")), json_array_size(ranks),
			json_array_size(ranks) == 1 ? "" : "s", took);
	else
		fprintf(stderr, "pystrib: cell %lld %s%s%s\n",
			json_integer_value(json_object_get(msg, "cell")), status ? status : "ended",
			why ? ": " : "", why ? why : "");
	return code;
}

/* A cell followed: what is shown of it, and how it went. */
struct follow_state {
	struct session_client *c;
	struct session_sync *sync;
	struct view v;
	long long cell;		/* its number, 0 until `started` says */
	int interrupts;		/* sent */
	double t0;
	int code;		/* its exit code once it ended, else -1 */
};

static void show_broken(const struct follow_state *f, const json_t *msg)
{
	json_t *rk = json_object_get(msg, "rank");
	const char *why = json_string_value(json_object_get(msg, "reason"));
	if (log_json)
		return;
	if (json_is_integer(rk))
		fprintf(stderr, "pystrib: session %s is broken: rank %d %s\n", f->c->rec.id,
			(int)json_integer_value(rk), why ? why : "died");
	else
		fprintf(stderr, "pystrib: session %s is broken: %s\n", f->c->rec.id,
			why ? why : "its ranks died");
}

/* One message while following: 1 the cell ended (f->code, or an error set), else 0. */
static int on_message(struct follow_state *f, const json_t *msg)
{
	const char *op = json_string_value(json_object_get(msg, "op"));
	const char *id = json_string_value(json_object_get(msg, "id"));
	json_t *seq = json_object_get(msg, "cell");
	/* The interrupt's own `done` names the cell too. */
	int ours = id && !strcmp(id, INTERRUPT_ID) ? 0
		: (id && !strcmp(id, "cell")) || (f->cell > 0 && json_integer_value(seq) == f->cell);

	if (!op || (f->sync && session_sync_answer(f->sync, msg, f->c->rec.id)))
		return 0;
	if (!strcmp(op, "started") && ours) {
		f->cell = json_integer_value(seq);
	} else if (!strcmp(op, "output")) {
		show_output(&f->v, msg);
	} else if (!strcmp(op, "broken")) {
		show_broken(f, msg);
	} else if (!strcmp(op, "done") && ours) {
		f->code = show_done(f->c->rec.id, msg, now_monotonic() - f->t0);
		return 1;
	} else if (!strcmp(op, "error") && id && !strcmp(id, "cell")) {
		error_set(PS_EXIT_REMOTE, "session %s: %s", f->c->rec.id,
			  json_string_value(json_object_get(msg, "message")) ?: "refused the cell");
		return 1;
	} else if (!strcmp(op, "stopped")) {
		error_set(PS_EXIT_REMOTE, "session %s stopped (%s)", f->c->rec.id,
			  json_string_value(json_object_get(msg, "reason")) ?: "?");
		return 1;
	}
	return 0;
}

/* Ctrl-C: an interrupt sent on (a second one stops the session, the hub's rule). */
static int send_interrupt(struct follow_state *f)
{
	if (!log_json)
		fprintf(stderr, "pystrib: interrupting the cell%s\n",
			f->interrupts ? " again: the session stops" : "");
	json_t *req = json_pack("{s:s,s:s}", "op", "interrupt", "id", INTERRUPT_ID);
	int ret = session_client_send(f->c, req);
	json_decref(req);
	f->interrupts++;
	return ret;
}

/*
 * Follows a cell (cell: its number, or 0 for the exec just sent) to its
 * `done`: output shown, Ctrl-C sent on as an interrupt, `broken` and
 * `stopped` said. The exit code.
 */
static int follow_cell(struct session_client *c, struct session_sync *sync, long long cell,
		       double t0)
{
	struct follow_state f = { .c = c, .sync = sync, .cell = cell, .t0 = t0, .code = -1 };
	json_t *msg;
	const char *data;
	size_t len;
	int item, end = 0;

	while (!end) {
		if (interrupt_clear() && send_interrupt(&f) < 0)
			break;
		if ((item = session_client_next(c, 1000, -1, &msg, &data, &len)) < 0)
			break;
		if (item == SESSION_MESSAGE) {
			end = on_message(&f, msg);
			json_decref(msg);
		}
	}
	view_release(&f.v);
	if (f.code >= 0)
		return f.code;
	if (!error_message()[0])
		error_set(PS_EXIT_REMOTE, "session %s: the connection ended", c->rec.id);
	if (f.interrupts > 1 && !log_json)
		fprintf(stderr, "pystrib: the session stopped on the second interrupt\n");
	return error_report();
}

/* ---- exec, attach --------------------------------------------------- */

static const char *base_name(const char *p)
{
	const char *s = strrchr(p, '/');
	return s ? s + 1 : p;
}

/* The exec request for e (caller decrefs). 0 or -1. */
static int exec_request(const struct session_exec *e, int np, json_t **out)
{
	struct buf code = BUF_INIT;
	json_t *ranks = NULL, *argv = json_array();

	buf_init(&code, CODE_MAX);
	if (buf_read_file(&code, e->file) < 0) {
		buf_release(&code);
		json_decref(argv);
		return error_set(PS_EXIT_USAGE, "cannot read '%s': %s", e->file,
				 errno == EFBIG ? "too large for a cell (over 1 MiB)" : strerror(errno));
	}
	if (e->ranks && session_ranks_parse(e->ranks, np, &ranks) < 0) {
		buf_release(&code);
		json_decref(argv);
		return -1;
	}
	for (char **a = e->args; a && *a; a++)
		json_array_append_new(argv, json_string(*a));
	*out = json_pack("{s:s,s:s,s:s%,s:s,s:f,s:o,s:o?}", "op", "exec", "id", "cell",
			 "code", code.ptr, code.len, "name", base_name(e->file), "timeout", e->timeout,
			 "argv", argv, "ranks", ranks);
	buf_release(&code);
	if (!*out)
		return error_set(PS_EXIT_USAGE, "the cell '%s' is not UTF-8 text", e->file);
	return 0;
}

int session_sync_files(struct session_client *c, struct session_sync *s)
{
	int sent;
	if (session_sync_send(c, s, &sent) < 0)
		return -1;
	if (sent)
		log_info("session %s: %d project change%s sent", c->rec.id, sent,
			 sent == 1 ? "" : "s");
	return 0;
}

int session_exec(const char *arg, const struct session_exec *e)
{
	struct session_sync sync;
	struct session_client c;
	json_t *req = NULL;
	int ret;
	double t0 = now_monotonic();

	session_sync_init(&sync);
	session_client_init(&c);
	if (resolve(&c.rec, arg) < 0 || exec_request(e, c.rec.np, &req) < 0) {
		ret = error_report();
		goto out;
	}
	jobrec_release(&c.rec);
	jobrec_init(&c.rec);
	if (session_client_open(&c, arg) < 0 || session_sync_files(&c, &sync) < 0 ||
	    session_client_send(&c, req) < 0) {
		ret = error_report();
		goto out;
	}
	ret = follow_cell(&c, &sync, 0, t0);
out:
	session_sync_release(&sync);
	json_decref(req);
	session_client_release(&c);
	return ret;
}

/* A request of its own and its one answer (`hello`, `status`): *out. 0 or -1. */
static int ask(struct session_client *c, json_t *req, const char *want, json_t **out)
{
	const char *data;
	size_t len;
	json_t *msg = NULL;
	int ret = session_client_send(c, req);
	json_decref(req);
	while (ret == 0) {
		int item = session_client_next(c, 1000, -1, &msg, &data, &len);
		if (item < 0 || interrupt_requested()) {
			if (item >= 0)
				error_set(PS_EXIT_INTERRUPTED, "interrupted");
			return -1;
		}
		if (item != SESSION_MESSAGE)
			continue;
		const char *op = json_string_value(json_object_get(msg, "op"));
		if (op && (!strcmp(op, want) || !strcmp(op, "error"))) {
			if (!strcmp(op, "error")) {
				error_set(PS_EXIT_REMOTE, "session %s: %s", c->rec.id,
					  json_string_value(json_object_get(msg, "message")) ?: "error");
				json_decref(msg);
				return -1;
			}
			*out = msg;
			return 0;
		}
		json_decref(msg);
	}
	return -1;
}

int session_attach(const char *arg)
{
	struct session_client c;
	json_t *hello = NULL;
	int ret;

	session_client_init(&c);
	if (session_client_open(&c, arg) < 0 ||
	    ask(&c, json_pack("{s:s,s:s}", "op", "hello", "id", "attach"), "hello", &hello) < 0) {
		ret = error_report();
		goto out;
	}
	json_t *cell = json_object_get(hello, "cell");
	if (!json_is_integer(cell)) {
		if (!log_json)
			fprintf(stderr, "pystrib: session %s runs no cell (%s, last cell %lld)\n",
				c.rec.id, json_string_value(json_object_get(hello, "state")) ?: "?",
				json_integer_value(json_object_get(hello, "last_cell")));
		event_emit("done", "{s:s,s:O?,s:s?,s:i}", "id", c.rec.id, "cell", cell,
			   "status", json_string_value(json_object_get(hello, "state")), "exit_code", 0);
		ret = 0;
		goto out;
	}
	/* The replay of the cell from its start: its id is the exec's own, so
	 * the cell is followed by its cell number instead. */
	json_t *req = json_pack("{s:s,s:s,s:{s:O,s:{}}}", "op", "hello", "id", "replay",
				"replay", "cell", cell, "offsets");
	ret = session_client_send(&c, req);
	json_decref(req);
	ret = ret < 0 ? error_report()
		      : follow_cell(&c, NULL, json_integer_value(cell), now_monotonic());
out:
	json_decref(hello);
	session_client_release(&c);
	return ret;
}

/* ---- stop, status, list --------------------------------------------- */

/*
 * Waits (one remote command, up to 30 s) for the session's job to end once
 * its hub stopped: its final state, its job script gone with its container.
 * Then the record is brought up to date.
 */
static void wait_ended(struct session_client *c)
{
	struct buf cmd = BUF_INIT;
	int code;

	remote_job_jobctl(&cmd, "session-ended", c->rec.jobdir);
	buf_addstr(&cmd, " 30");
	if (ssh_conn_capture(c->conn, cmd.ptr, NULL, 0, NULL, NULL, &code) < 0 ||
	    jobrec_check(c->conn, &c->cfg, &c->rec) < 0) {
		log_warn("%s", error_message());
		error_clear();
	}
	buf_release(&cmd);
}

int session_stop(const char *arg)
{
	struct session_client c;
	json_t *msg = NULL;
	char *final = NULL;
	int ret = 0;

	session_client_init(&c);
	if (session_client_open(&c, arg) < 0) {
		/* No hub to ask (it died, or never listened): stopped as a job. */
		if (!c.conn || !c.rec.id) {
			ret = error_report();
			goto out;
		}
		error_clear();
		ssh_stream_free(c.st);
		c.st = NULL;
		if (remote_job_cancel(c.conn, c.rec.jobdir, "cancelled", &final) < 0) {
			ret = error_report();
			goto out;
		}
	} else if (ask(&c, json_pack("{s:s,s:s}", "op", "stop", "id", "stop"), "stopped", &msg) < 0 &&
		   !ssh_stream_eof(c.st)) {
		ret = error_report();
		goto out;
	}
	error_clear();
	ssh_stream_free(c.st);
	c.st = NULL;
	wait_ended(&c);
	session_sync_forget(c.rec.id);
	if (!log_json)
		printf("session %s stopped\n", c.rec.id);
	event_emit("done", "{s:s,s:s?,s:i}", "id", c.rec.id, "state", c.rec.state, "exit_code", 0);
out:
	free(final);
	json_decref(msg);
	session_client_release(&c);
	return ret;
}

/* status's text: the session, then a line per rank. */
static void show_status(const struct jobrec *r, const json_t *st)
{
	const char *state = json_string_value(json_object_get(st, "state"));
	json_t *cell = json_object_get(st, "cell"), *ranks = json_object_get(st, "ranks"), *rk;
	json_t *broken = json_object_get(st, "broken");
	double idle = json_number_value(json_object_get(st, "idle_since"));
	size_t i;

	printf("session %s on '%s': %s, %d rank%s\n", r->id, jobrec_remote_label(r),
	       state ? state : "?", r->np, r->np == 1 ? "" : "s");
	if (json_is_integer(cell))
		printf("  running cell %lld\n", json_integer_value(cell));
	else if (idle > 0)
		printf("  idle for %.0f s (last cell %lld)\n", now_wall() - idle,
		       json_integer_value(json_object_get(st, "last_cell")));
	if (json_is_object(broken) && json_is_integer(json_object_get(broken, "rank")))
		printf("  broken: rank %lld %s\n", json_integer_value(json_object_get(broken, "rank")),
		       json_string_value(json_object_get(broken, "reason")) ?: "?");
	else if (json_is_object(broken))
		printf("  broken: %s\n", json_string_value(json_object_get(broken, "reason")) ?: "?");
	json_array_foreach(ranks, i, rk) {
		json_t *g = json_object_get(rk, "gpus");
		char *gpus = json_is_null(g) || !g ? xstrdup("-") : json_dumps(g, JSON_COMPACT | JSON_ENCODE_ANY);
		printf("  rank %lld  pid %lld  %-8s  host %s  gpus %s\n",
		       json_integer_value(json_object_get(rk, "rank")),
		       json_integer_value(json_object_get(rk, "pid")),
		       json_string_value(json_object_get(rk, "state")) ?: "?",
		       json_string_value(json_object_get(rk, "host")) ?: "?", gpus);
		free(gpus);
	}
}

int session_status(const char *arg)
{
	struct session_client c;
	json_t *st = NULL;
	int ret = 0;

	session_client_init(&c);
	if (session_client_open(&c, arg) < 0 ||
	    ask(&c, json_pack("{s:s,s:s}", "op", "status", "id", "status"), "status", &st) < 0) {
		ret = error_report();
		goto out;
	}
	if (log_json)
		event_emit("session", "{s:s,s:s,s:O}", "id", c.rec.id, "dir", c.rec.jobdir, "status", st);
	else
		show_status(&c.rec, st);
out:
	json_decref(st);
	session_client_release(&c);
	return ret;
}

int session_list(void)
{
	struct jobrec *v = NULL;
	size_t n = 0, shown = 0;
	char created[32];

	if (jobrec_list(&v, &n) < 0)
		return error_report();
	for (size_t i = 0; i < n; i++) {
		const struct jobrec *r = &v[i];
		if (!r->kind || strcmp(r->kind, "session"))
			continue;
		if (!shown++ && !log_json)
			printf("%-22s  %-12s  %-12s  %-10s  %5s  %s\n", "SESSION", "NAME", "REMOTE",
			       "STATE", "RANKS", "STARTED");
		jobrec_fmt_time(created, sizeof(created), r->created);
		if (!log_json)
			printf("%-22s  %-12s  %-12s  %-10s  %5d  %s\n", r->id, r->name ? r->name : "-",
			       jobrec_remote_label(r), r->state ? r->state : "unknown", r->np, created);
		event_emit("session", "{s:s,s:s?,s:s?,s:s?,s:s?,s:i,s:f}", "id", r->id, "name",
			   r->name, "host", r->host_name, "dir", r->jobdir, "state", r->state, "np",
			   r->np, "created", r->created);
	}
	jobrec_list_free(v, n);
	return 0;
}
