#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "error.h"
#include "jobrec.h"
#include "jobremote.h"
#include "remote_job.h"
#include "log.h"
#include "outcome.h"
#include "util.h"

int outcome_exit_code(const char *state, enum job_reason code, int ranks_ran)
{
	if (!state || !strcmp(state, "lost"))
		return PS_EXIT_REMOTE;
	if (!strcmp(state, "succeeded"))
		return PS_EXIT_OK;
	if (!strcmp(state, "timeout"))
		return PS_EXIT_TIMEOUT;
	if (!strcmp(state, "cancelled"))
		return PS_EXIT_INTERRUPTED;
	if (code == REASON_REGISTRY)
		return PS_EXIT_REGISTRY;
	if (code != REASON_NONE || !ranks_ran)
		return PS_EXIT_REMOTE;
	return PS_EXIT_RANK;
}

const char *outcome_hint(enum job_reason code)
{
	switch (code) {
	case REASON_REGISTRY:
		return "check that the host reaches the registry ([remote] pull_registry) and that "
		       "[registry] username and password are right";
	case REASON_DISK_FULL:
		return "free some space on the host ('pystrib gc' removes old jobs' directories)";
	case REASON_NOT_INSTALLED:
		return "install it there, or choose another runtime (--runtime docker|podman|none, "
		       "[remote] runtime)";
	case REASON_NO_MPIRUN:
		return "base the image on one with Open MPI ([image] base)";
	case REASON_SLOTS:
		return "run fewer ranks (-n), or let mpirun put several on a core: "
		       "[remote] mpirun_args = --oversubscribe";
	case REASON_NO_GPU:
		return "install the host's GPU runtime (nvidia-smi and the NVIDIA container toolkit; "
		       "CDI for podman), or run without --gpus";
	case REASON_WORKDIR:
		return "rebuild the image: its working directory is not in it";
	case REASON_SETUP:
		return "check [remote] setup and [remote] python on that host";
	case REASON_DIR_GONE:
		return "the job's directory was removed on the host ('pystrib gc' elsewhere?)";
	default:
		return NULL;
	}
}

/* The rank to blame: the first that failed on its own (not a signal a stop
 * or mpirun sent), else the first with any other non-zero code; -1: none. */
static int failed_rank(const struct follow *f)
{
	int any = -1;
	for (int i = 0; i < f->np; i++) {
		int c = f->ranks[i].exit_code;
		if (c > 0 && c != 143 && c != 137 && c != 130)
			return i;
		if (c > 0 && any < 0)
			any = i;
	}
	return any;
}

static int ranks_ran(const struct follow *f)
{
	for (int i = 0; i < f->np; i++)
		if (f->ranks[i].exit_code >= 0)
			return 1;
	return 0;
}

const char *outcome_rank_text(char *out, size_t n, int code, const char *state)
{
	if (code < 0) {
		snprintf(out, n, "no exit code (it did not run, or was stopped with the job)");
	} else if (code > 128 && code < 128 + 65) {
		int sig = code - 128;
		const char *name = sigabbrev_np(sig);
		const char *why = "";
		if (sig == SIGTERM && state && !strcmp(state, "timeout"))
			why = " from pystrib at the timeout";
		else if (sig == SIGTERM && state && !strcmp(state, "cancelled"))
			why = " from pystrib when the job was cancelled";
		else if (sig == SIGKILL)
			why = " (the job was stopped, or the host ran out of memory)";
		if (name)
			snprintf(out, n, "killed by SIG%s%s (exit %d)", name, why, code);
		else
			snprintf(out, n, "killed by signal %d (exit %d)", sig, code);
	} else {
		snprintf(out, n, "exit %d", code);
	}
	return out;
}

/*
 * The last `lines` lines of logs/job.err, less the job script's own
 * "pystrib: " lines (their text is the reason, said already). Caller frees.
 */
static char *job_err_tail(const char *path, int lines)
{
	struct buf b, out;
	buf_init(&b, 8 << 20);
	buf_init(&out, 0);
	if (buf_read_file(&b, path) == 0) {
		for (const char *p = b.ptr; *p; ) {
			size_t n = strcspn(p, "\n");
			if (strncmp(p, "pystrib: ", 9))
				buf_addf(&out, "%.*s\n", (int)n, p);
			p += n + (p[n] == '\n');
		}
	}
	buf_rtrim(&out);
	size_t i = out.len;
	while (i > 0) {
		if (out.ptr[i - 1] == '\n' && --lines <= 0)
			break;
		i--;
	}
	char *s = xstrdup(out.ptr + i);
	buf_release(&b);
	buf_release(&out);
	return s;
}

/* What the outcome shows of a failure: a rank's stderr, else logs/job.err. */
static char *failure_tail(const struct outcome *o, int code, int bad)
{
	if (code == PS_EXIT_RANK && bad >= 0)
		return xstrdup(follow_err_tail(o->f, bad, 20));
	if ((code == PS_EXIT_REMOTE || code == PS_EXIT_REGISTRY) && o->results) {
		char *p = xstrfmt("%s/logs/job.err", o->results);
		char *t = job_err_tail(p, 10);
		free(p);
		return t;
	}
	return xstrdup("");
}

static void print_indented(const char *text)
{
	for (const char *p = text; *p; ) {
		size_t n = strcspn(p, "\n");
		fprintf(stderr, "    %.*s\n", (int)n, p);
		p += n + (p[n] == '\n');
	}
}

/* The summary's first line: the state, and why, in words that agree with code. */
static void print_headline(const struct outcome *o, const char *state, int code, int bad)
{
	const struct follow *f = o->f;
	char rank[96];

	fprintf(stderr, "\njob %s ", o->id);
	switch (code) {
	case PS_EXIT_OK:
		fprintf(stderr, "succeeded");
		break;
	case PS_EXIT_TIMEOUT:
		fprintf(stderr, "timed out: pystrib stopped it at its --timeout");
		break;
	case PS_EXIT_INTERRUPTED:
		fprintf(stderr, "cancelled: pystrib stopped it");
		break;
	case PS_EXIT_RANK:
		if (bad >= 0)
			fprintf(stderr, "failed: rank %d %s", bad,
				outcome_rank_text(rank, sizeof(rank), f->ranks[bad].exit_code, state));
		else
			fprintf(stderr, "failed (exit %d)", f->exit_code);
		break;
	default:
		if (!strcmp(state, "lost"))
			fprintf(stderr, "lost");
		else if (ranks_ran(f))
			fprintf(stderr, "failed");	/* the host's fault, after the ranks ran */
		else
			fprintf(stderr, "could not run");
		if (f->reason)
			fprintf(stderr, ": %s", f->reason);
		else if (!ranks_ran(f))
			fprintf(stderr, ": its job script failed (exit %d) before any rank ran",
				f->exit_code);
		break;
	}
	fputc('\n', stderr);
}

static void print_summary(const struct outcome *o, const char *state, int code, int bad,
			  const char *tail)
{
	const struct follow *f = o->f;
	char text[128];

	print_headline(o, state, code, bad);
	for (int i = 0; i < f->np; i++) {
		const struct follow_rank *fr = &f->ranks[i];
		outcome_rank_text(text, sizeof(text), fr->exit_code, state);
		if (fr->exit_code >= 0 && fr->duration >= 0)
			fprintf(stderr, "  rank %d: %s in %.2f s\n", i, text, fr->duration);
		else
			fprintf(stderr, "  rank %d: %s\n", i, text);
	}
	if (o->image && o->tag)
		fprintf(stderr, "  image:   %s (tag %s)\n", o->image, o->tag);
	else if (o->image)
		fprintf(stderr, "  image:   %s\n", o->image);
	if (o->results)
		fprintf(stderr, "  results: %s\n", o->results);
	if (code == PS_EXIT_RANK && bad >= 0)
		fprintf(stderr, "rank %d failed (%s)%s\n", bad,
			outcome_rank_text(text, sizeof(text), f->ranks[bad].exit_code, state),
			*tail ? "; the end of its stderr:" : "");
	else if (*tail)
		fprintf(stderr, "the end of logs/job.err:\n");
	if (*tail)
		print_indented(tail);
	const char *hint = code == PS_EXIT_REMOTE || code == PS_EXIT_REGISTRY
			   ? outcome_hint(f->code) : NULL;
	if (hint)
		fprintf(stderr, "hint: %s\n", hint);
}

static void emit_done(const struct outcome *o, const char *state, int code, int bad,
		      const char *tail)
{
	const struct follow *f = o->f;
	json_t *ranks = json_array();
	for (int i = 0; i < f->np; i++)
		json_array_append_new(ranks, json_pack("{s:i,s:i,s:f}", "rank", i, "exit_code",
			f->ranks[i].exit_code, "duration",
			f->ranks[i].duration >= 0 ? f->ranks[i].duration : 0.0));
	const char *hint = code == PS_EXIT_REMOTE || code == PS_EXIT_REGISTRY
			   ? outcome_hint(f->code) : NULL;
	event_emit("done", "{s:s,s:s,s:i,s:o,s:s?,s:s?,s:s?,s:i,s:s?,s:s?,s:s?,s:s?}",
		   "id", o->id, "state", state, "exit_code", code, "ranks", ranks,
		   "image", o->image, "tag", o->tag, "results", o->results, "failed_rank", bad,
		   "traceback", *tail ? tail : NULL, "reason", f->reason,
		   "code", f->code ? reason_name(f->code) : NULL, "hint", hint);
}

struct record_ctx {
	const struct outcome *o;
	const char *state;
};

/* What was followed, as remote_job_read would have said it, into the record. */
static int to_record(struct jobrec *r, void *ctx)
{
	const struct record_ctx *rc = ctx;
	const struct follow *f = rc->o->f;
	int n = f->np > 0 ? f->np : 1;
	struct remote_job_state st = {
		.state = (char *)rc->state, .reason = f->reason, .code = f->code,
		.exit_code = f->exit_code, .started = f->started, .ended = f->ended, .np = f->np,
		.rank_exit = xcalloc((size_t)n, sizeof(int)),
		.rank_ended = xcalloc((size_t)n, sizeof(double)),
	};

	for (int i = 0; i < f->np; i++) {
		st.rank_exit[i] = f->ranks[i].exit_code;
		st.rank_ended[i] = f->ranks[i].ended;
	}
	jobrec_apply_state(r, &st);
	/* The follower timed each rank from its launch, as the summary says. */
	for (int i = 0; i < f->np && i < r->np; i++)
		if (f->ranks[i].duration >= 0)
			r->ranks[i].duration = f->ranks[i].duration;
	if (rc->o->results)
		jobrec_set(&r->results, rc->o->results);
	free(st.rank_exit);
	free(st.rank_ended);
	return 0;
}

int outcome_report(const struct outcome *o)
{
	const struct follow *f = o->f;
	const char *state = o->state ? o->state : f->state ? f->state : "lost";
	int code = outcome_exit_code(state, f->code, ranks_ran(f));
	int bad = code == PS_EXIT_RANK ? failed_rank(f) : -1;
	char *tail = failure_tail(o, code, bad);
	struct record_ctx rc = { o, state };

	if (log_json)
		emit_done(o, state, code, bad, tail);
	else
		print_summary(o, state, code, bad, tail);
	if (jobrec_update(o->id, to_record, &rc) < 0) {
		log_warn("%s", error_message());
		error_clear();
	}
	free(tail);
	return code;
}
