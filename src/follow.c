#include "follow.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "embedded.h"
#include "engine.h"
#include "error.h"
#include "log.h"
#include "reason.h"
#include "shquote.h"
#include "util.h"

enum { M_HEADER, M_DATA, M_TAR };

#define ERR_TAIL_MAX 8192
#define LINE_MAX_SHOWN (1u << 20)	/* a "line" longer than this is shown in pieces */

static const char *const rank_colors[] = {
	"\033[36m", "\033[33m", "\033[35m", "\033[32m", "\033[34m", "\033[96m", "\033[93m", "\033[95m",
};

void follow_init(struct follow *f, const char *dir, int np)
{
	memset(f, 0, sizeof(*f));
	f->dir = dir;
	f->np = np;
	f->only_rank = -1;
	f->color = -1;
	f->exit_code = -1;
	f->start_fd = -1;
	f->ranks = xcalloc((size_t)(np > 0 ? np : 1), sizeof(*f->ranks));
	for (int i = 0; i < np; i++) {
		f->ranks[i].exit_code = -1;
		f->ranks[i].duration = -1;
		buf_init(&f->ranks[i].partial[0], 0);
		buf_init(&f->ranks[i].partial[1], 0);
		buf_init(&f->ranks[i].err_tail, 0);
	}
	buf_init(&f->hdr, 512);
	buf_init(&f->ferr, 16 << 10);
}

void follow_release(struct follow *f)
{
	for (int i = 0; f->ranks && i < f->np; i++) {
		buf_release(&f->ranks[i].partial[0]);
		buf_release(&f->ranks[i].partial[1]);
		buf_release(&f->ranks[i].err_tail);
	}
	free(f->ranks);
	free(f->state);
	free(f->reason);
	buf_release(&f->hdr);
	buf_release(&f->ferr);
	memset(f, 0, sizeof(*f));
}

static void keep_err_tail(struct follow_rank *r, const char *line, size_t n)
{
	struct buf *t = &r->err_tail;
	if (n > ERR_TAIL_MAX)
		return;
	if (t->len + n > ERR_TAIL_MAX) {
		size_t drop = t->len + n - ERR_TAIL_MAX;
		const char *nl = memchr(t->ptr + drop, '\n', t->len - drop);
		drop = nl ? (size_t)(nl + 1 - t->ptr) : t->len;
		memmove(t->ptr, t->ptr + drop, t->len - drop);
		buf_setlen(t, t->len - drop);
	}
	buf_add(t, line, n);
}

/* Shows one whole line (with its newline) of rank r's stream s. */
static void show_line(struct follow *f, int r, int s, const char *line, size_t n)
{
	if (s == 1)
		keep_err_tail(&f->ranks[r], line, n);
	if (log_json) {
		struct buf clean = BUF_INIT;
		buf_add_utf8(&clean, line, n);
		event_emit("output", "{s:i,s:s,s:s}", "rank", r, "stream", s ? "stderr" : "stdout",
			   "text", clean.ptr);
		buf_release(&clean);
		return;
	}
	FILE *fp = s ? f->err : f->out;
	if (!f->no_prefix) {
		if (f->ansi)
			fprintf(fp, "%s[%d]\033[0m ", rank_colors[r % ARRAY_SIZE(rank_colors)], r);
		else
			fprintf(fp, "[%d] ", r);
	}
	fwrite(line, 1, n, fp);
}

/* Received bytes of rank r's stream s: shows each line once it is whole. */
static void take(struct follow *f, int r, int s, const char *data, size_t len)
{
	struct buf *p = &f->ranks[r].partial[s];
	f->ranks[r].off[s] += len;
	while (len) {
		const char *nl = memchr(data, '\n', len);
		size_t n = nl ? (size_t)(nl - data) + 1 : len;
		if (!nl) {
			buf_add(p, data, n);
			if (p->len >= LINE_MAX_SHOWN) {
				buf_addch(p, '\n');
				show_line(f, r, s, p->ptr, p->len);
				buf_reset(p);
			}
		} else if (p->len) {
			buf_add(p, data, n);
			show_line(f, r, s, p->ptr, p->len);
			buf_reset(p);
		} else {
			show_line(f, r, s, data, n);
		}
		data += n;
		len -= n;
	}
}

/* At the end: unfinished last lines are shown with a newline added. */
static void flush_partials(struct follow *f)
{
	for (int r = 0; r < f->np; r++)
		for (int s = 0; s < 2; s++) {
			struct buf *p = &f->ranks[r].partial[s];
			if (p->len) {
				buf_addch(p, '\n');
				show_line(f, r, s, p->ptr, p->len);
				buf_reset(p);
			}
		}
}

static int protocol_error(struct follow *f)
{
	return error_set(PS_EXIT_REMOTE, "unexpected output from the log follower: '%.60s'",
			 f->hdr.ptr);
}

/*
 * "STATE EXIT STARTED ENDED [CODE [WHY]]": the job's end. CODE "-" (or
 * none, from a follower that sends no code) is REASON_NONE.
 */
static int end_line(struct follow *f, const char *p)
{
	char st[32] = "";
	int n = 0;
	long code = -1;
	double t0 = 0, t1 = 0;
	if (sscanf(p, "%31s %ld %lf %lf %n", st, &code, &t0, &t1, &n) < 4)
		return -1;
	struct buf clean = BUF_INIT;
	buf_add_utf8(&clean, st, strlen(st));
	free(f->state);
	f->state = buf_detach(&clean, NULL);
	f->exit_code = (int)code;
	if (t0 > 0)
		f->started = t0;
	if (t1 > 0)
		f->ended = t1;
	p += n;
	size_t w = strcspn(p, " ");
	f->code = reason_parse(p, w);
	p += w;
	p += strspn(p, " ");
	if (*p) {
		/* The host's words (an error line cut at 300 bytes): any bytes. */
		buf_add_utf8(&clean, p, strlen(p));
		free(f->reason);
		f->reason = buf_detach(&clean, NULL);
	}
	return 0;
}

/*
 * An "S STATE [LAUNCHED]" line: a new state is kept and announced. The
 * state comes from the host: cleaned to UTF-8 first, or jansson would
 * refuse the event (and a record could not hold it).
 */
static void state_line(struct follow *f, char *p)
{
	struct buf st = BUF_INIT;
	char *sp = strchr(p, ' ');

	if (sp) {
		*sp = '\0';
		double l = strtod(sp + 1, NULL);
		if (l > 0)
			f->launched = l;
	}
	buf_add_utf8(&st, p, strlen(p));
	if (st.len && (!f->state || strcmp(f->state, st.ptr))) {
		free(f->state);
		f->state = xstrdup(st.ptr);
		/* First: run announces the job (its "job" event) on the first state. */
		if (f->on_state)
			f->on_state(f->ctx, f->state);
		event_emit("status", "{s:s,s:s}", "message", f->state, "state", f->state);
	}
	buf_release(&st);
}

static int header(struct follow *f)
{
	char *line = f->hdr.ptr, *end;
	char kind = line[0];

	if (kind && line[1] != ' ' && !(kind == 'R' && !line[1]))
		return protocol_error(f);
	if (kind == 'D') {
		long r = strtol(line + 2, &end, 10);
		char s = end[0] == ' ' ? end[1] : 0;
		unsigned long long off = s ? strtoull(end + 2, &end, 10) : 0;
		unsigned long long n = strtoull(end, &end, 10);
		if (r < 0 || r >= f->np || (s != 'o' && s != 'e'))
			return protocol_error(f);
		int si = s == 'e';
		if (off != f->ranks[r].off[si])
			return error_set(PS_EXIT_REMOTE, "the log follower sent rank %ld's %s from "
					 "byte %llu, not %llu", r, si ? "stderr" : "stdout", off,
					 (unsigned long long)f->ranks[r].off[si]);
		f->cur_rank = (int)r;
		f->cur_stream = si;
		f->remaining = n;
		f->mode = n ? M_DATA : M_HEADER;
	} else if (kind == 'X') {
		long r = strtol(line + 2, &end, 10);
		long code = strtol(end, &end, 10);
		double t = strtod(end, NULL);
		if (r < 0 || r >= f->np)
			return protocol_error(f);
		struct follow_rank *fr = &f->ranks[r];
		if (fr->exit_code >= 0)
			return 0;
		fr->exit_code = (int)code;
		fr->ended = t;
		fr->duration = f->launched > 0 && t >= f->launched ? t - f->launched : -1;
		if (f->only_rank < 0 || f->only_rank == r)
			event_emit("rank_exit", "{s:i,s:i,s:f}", "rank", (int)r, "exit_code", (int)code,
				   "duration", fr->duration >= 0 ? fr->duration : 0.0);
	} else if (kind == 'S') {
		state_line(f, line + 2);
	} else if (kind == 'E') {
		if (end_line(f, line + 2) < 0)
			return protocol_error(f);
		flush_partials(f);
		f->done = 1;
	} else if (kind == 'R' && !line[1] && f->done && f->on_tar) {
		f->mode = M_TAR;
		if (f->on_tar(f->ctx, NULL, 0) < 0)
			return -1;
	} else {
		return protocol_error(f);
	}
	return 0;
}

int follow_feed(struct follow *f, const char *data, size_t len)
{
	while (len) {
		if (f->mode == M_TAR) {
			if (!f->on_tar)
				return error_set(PS_EXIT_REMOTE, "the log follower sent results unasked");
			return f->on_tar(f->ctx, data, len);
		}
		if (f->mode == M_DATA) {
			size_t n = len < f->remaining ? len : (size_t)f->remaining;
			take(f, f->cur_rank, f->cur_stream, data, n);
			f->remaining -= n;
			data += n;
			len -= n;
			if (!f->remaining)
				f->mode = M_HEADER;
			continue;
		}
		const char *nl = memchr(data, '\n', len);
		size_t n = nl ? (size_t)(nl - data) : len;
		if (buf_add(&f->hdr, data, n) < 0)
			return protocol_error(f);
		data += n;
		len -= n;
		if (!nl)
			break;
		data++;
		len--;
		int r = header(f);
		buf_reset(&f->hdr);
		if (r < 0)
			return -1;
	}
	return 0;
}

const char *follow_err_tail(struct follow *f, int rank, int lines)
{
	if (rank < 0 || rank >= f->np)
		return "";
	struct buf *t = &f->ranks[rank].err_tail;
	if (!t->len)
		return "";
	size_t i = t->len;
	if (i && t->ptr[i - 1] == '\n')
		i--;
	while (i > 0) {
		if (t->ptr[i - 1] == '\n' && --lines <= 0)
			break;
		i--;
	}
	return t->ptr + i;
}

static int on_output(void *ctx, int fd, const char *data, size_t len)
{
	struct follow *f = ctx;
	if (fd == 2) {
		if (f->ferr.len + len < 16 << 10)
			buf_add(&f->ferr, data, len);
		return 0;
	}
	int r = follow_feed(f, data, len);
	fflush(f->out);
	fflush(f->err);
	return r;
}

/* The follower's mode (follow.sh) and what to follow of rank r, from its offsets. */
static const char *follower_mode(const struct follow *f)
{
	return f->once ? "o" : f->on_tar ? "t" : "f";
}

static void rank_offsets(const struct follow *f, int r, long long *o, long long *e, int *seen)
{
	const struct follow_rank *fr = &f->ranks[r];
	int want = f->only_rank < 0 || f->only_rank == r;
	int streams = f->streams ? f->streams : FOLLOW_STDOUT | FOLLOW_STDERR;
	*o = want && (streams & FOLLOW_STDOUT) ? (long long)fr->off[0] : -1;
	*e = want && (streams & FOLLOW_STDERR) ? (long long)fr->off[1] : -1;
	*seen = fr->exit_code >= 0;
}

/* The follower command, from every file's offset. */
static void follower_command(struct follow *f, struct buf *cmd)
{
	const struct embedded *e = embedded_find("follow.sh");
	buf_addstr(cmd, "sh -c ");
	shquote_arg(cmd, e ? (const char *)e->data : "exit 127");
	buf_addstr(cmd, " follow.sh ");
	shquote_path(cmd, f->dir);
	buf_addf(cmd, " %s %d", follower_mode(f), f->np);
	for (int r = 0; r < f->np; r++) {
		long long o, e2;
		int seen;
		rank_offsets(f, r, &o, &e2, &seen);
		buf_addf(cmd, " %lld %lld %d", o, e2, seen);
	}
}

/*
 * The remote command that waits for the real one on its stdin: a line with
 * its length, then the command (head -c reads no further: the rest of
 * stdin is the job script's). Nothing written: exit 3, nothing run.
 */
static const char start_reader[] =
	"sh -c 'IFS= read -r n || exit 3; c=$(head -c \"$n\") || exit 3; eval \"$c\"'";

char *follow_start_message(struct follow *f, const char *start_cmd, const void *in,
			   size_t in_len, size_t *len)
{
	struct buf cmd = BUF_INIT, msg = BUF_INIT;
	buf_addf(&cmd, "%s && exec ", start_cmd);
	follower_command(f, &cmd);
	buf_addf(&msg, "%zu\n", cmd.len);
	buf_add(&msg, cmd.ptr, cmd.len);
	buf_add(&msg, in, in_len);
	buf_release(&cmd);
	return buf_detach(&msg, len);
}

static int reconnect(struct ssh_conn *c, struct follow *f)
{
	int limit = f->reconnect_timeout > 0 ? f->reconnect_timeout : 600;
	double until = now_monotonic() + limit, wait = 0.5;
	int r, named;

	if (log_json) {
		/* The error may quote the host's stderr: any bytes. */
		struct buf why = BUF_INIT;
		buf_add_utf8(&why, error_message(), strlen(error_message()));
		event_emit("status", "{s:s,s:s}", "message", "reconnecting", "reason", why.ptr);
		buf_release(&why);
	}
	/* The host once: the reason ("lost the connection to 'H' ...") names it mostly. */
	named = strstr(error_message(), ssh_conn_name(c)) != NULL;
	fprintf(stderr, "pystrib: %s; reconnecting%s%s%s (for up to %d s)\n", error_message(),
		named ? "" : " to '", named ? "" : ssh_conn_name(c), named ? "" : "'", limit);
	error_clear();
	for (;;) {
		if (interrupt_requested())
			return error_set(PS_EXIT_INTERRUPTED, "interrupted"), SSH_R_INTERRUPTED;
		r = ssh_conn_reconnect(c);
		if (r == 0) {
			f->reconnects++;
			fprintf(stderr, "pystrib: reconnected to '%s'\n", ssh_conn_name(c));
			if (log_json)
				event_emit("status", "{s:s}", "message", "reconnected");
			return 0;
		}
		if (r == SSH_R_HOSTKEY_CHANGED || r == SSH_R_AUTH || r == SSH_R_HOSTKEY_UNKNOWN ||
		    r == SSH_R_INTERRUPTED)
			return r;
		if (now_monotonic() + wait > until) {
			error_wrap("gave up reconnecting after %d s", limit);
			error_hint("the job goes on running there: 'pystrib attach' follows it again");
			return SSH_R_DROPPED;
		}
		log_info("reconnecting: %s", error_message());
		error_clear();
		if (sleep_interruptible(wait) < 0)
			return SSH_R_INTERRUPTED;
		wait = wait * 2 > 10 ? 10 : wait * 2;
	}
}

static void outputs(struct follow *f)
{
	if (!f->out)
		f->out = stdout;
	if (!f->err)
		f->err = stderr;
	f->ansi = f->color < 0 ? isatty(fileno(f->out)) && getenv("NO_COLOR") == NULL : f->color;
}

int follow_job(struct ssh_conn *c, struct follow *f)
{
	struct ssh_exec_opts o = SSH_EXEC_OPTS_INIT;
	struct buf cmd = BUF_INIT;
	int ret, status;

	outputs(f);
	o.on_output = on_output;
	o.ctx = f;
	o.deadline = f->deadline;
	for (;;) {
		f->mode = M_HEADER;
		buf_reset(&f->hdr);
		buf_reset(&f->ferr);
		buf_reset(&cmd);
		o.in = NULL;
		o.in_len = 0;
		o.in_fd = -1;
		if (f->start_fd >= 0 && !f->started_cmd) {
			f->started_cmd = 1;
			buf_addstr(&cmd, start_reader);
			o.in_fd = f->start_fd;
		} else {
			if (f->start_cmd && !f->started_cmd) {
				f->started_cmd = 1;
				buf_addf(&cmd, "%s && exec ", f->start_cmd);
				o.in = f->stdin_data;
				o.in_len = f->stdin_len;
			}
			follower_command(f, &cmd);
		}
		if (f->on_tar)
			f->tar_done = 0;
		ret = ssh_conn_exec(c, cmd.ptr, &o, &status);
		if (ret == 0 && f->done) {
			f->tar_done = f->mode == M_TAR && status == 0;
			break;
		}
		if (ret == 0) {
			buf_rtrim(&f->ferr);
			ret = ssh_command_failed(c, "sh", status ? status : 1, f->ferr.ptr);
			if ((f->start_cmd || f->start_fd >= 0) && !f->state)
				error_wrap("cannot start the job in '%s'", f->dir);
			else
				error_wrap("cannot follow the job's output in '%s'", f->dir);
			break;
		}
		if (ret != SSH_R_DROPPED)
			break;
		if ((ret = reconnect(c, f)) < 0)
			break;
	}
	fflush(f->out);
	fflush(f->err);
	buf_release(&cmd);
	return ret;
}

/*
 * The follower as the container runs it (docker exec): it writes the
 * host's pid file (the container's main process as the host numbers it:
 * jobctl.sh signals that one), waits for the job's files, which the
 * container's own command writes as it starts, and runs follow.sh.
 */
static const char engine_follower[] =
	"hp=$1\n"
	"shift\n"
	"case $hp in ''|*[!0-9]*) ;; *) printf '%s\\n' \"$hp\" > \"$1/pid.tmp\" && mv -f \"$1/pid.tmp\" \"$1/pid\";; esac\n"
	"i=0\n"
	"while [ ! -f \"$1/job.json\" ] && [ \"$i\" -lt 1000 ]; do sleep 0.01; i=$((i + 1)); done\n"
	"exec sh -c \"$0\" follow.sh \"$@\"\n";

static json_t *engine_follower_cmd(struct follow *f, const char *dir, long host_pid)
{
	const struct embedded *e = embedded_find("follow.sh");
	char n[32], hp[32] = "";
	snprintf(n, sizeof(n), "%d", f->np);
	if (host_pid > 0)
		snprintf(hp, sizeof(hp), "%ld", host_pid);
	/* T: no .collected mark from in here; the container's end follows
	 * the end of this exec (engine_kill), never the other way round. */
	const char *mode = follower_mode(f);
	json_t *cmd = json_pack("[s,s,s,s,s,s,s,s]", "sh", "-c", engine_follower,
				e ? (const char *)e->data : "exit 127", hp, dir,
				!strcmp(mode, "t") ? "T" : mode, n);
	for (int r = 0; r < f->np; r++) {
		long long o, e2;
		int seen;
		rank_offsets(f, r, &o, &e2, &seen);
		snprintf(n, sizeof(n), "%lld", o);
		json_array_append_new(cmd, json_string(n));
		snprintf(n, sizeof(n), "%lld", e2);
		json_array_append_new(cmd, json_string(n));
		json_array_append_new(cmd, json_string(seen ? "1" : "0"));
	}
	return cmd;
}

int follow_job_engine(struct ssh_conn *c, struct follow *f, const char *socket,
		      const char *container, const char *dir, long host_pid)
{
	struct ssh_exec_opts o = SSH_EXEC_OPTS_INIT;
	int ret, code = -1;

	outputs(f);
	f->mode = M_HEADER;
	buf_reset(&f->hdr);
	buf_reset(&f->ferr);
	f->tar_done = 0;
	o.on_output = on_output;
	o.ctx = f;
	o.deadline = f->deadline;
	json_t *cmd = engine_follower_cmd(f, dir, host_pid);
	ret = engine_exec(c, socket, container, cmd, &o, &code);
	json_decref(cmd);
	fflush(f->out);
	fflush(f->err);
	if (ret == 0 && f->done) {
		f->tar_done = f->mode == M_TAR && code == 0;
		return 0;
	}
	if (ret == SSH_R_INTERRUPTED || ret == SSH_R_TIMEOUT)
		return ret;
	/* Gone, or no longer reachable this way: the job's files are on the
	 * host, and a shell follows them from where this left off. */
	if (ret == 0)
		error_set(PS_EXIT_REMOTE, "the follower in the job's container ended early (%d)", code);
	log_info("following job in the container stopped (%s): going on through a shell",
		 error_message());
	error_clear();
	return follow_job(c, f);
}

