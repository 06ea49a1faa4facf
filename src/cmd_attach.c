#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "cmdctx.h"
#include "commands.h"
#include "config.h"
#include "error.h"
#include "follow.h"
#include "jobrec.h"
#include "jobremote.h"
#include "log.h"
#include "results.h"
#include "ssh.h"
#include "util.h"

const char cmd_attach_help[] =
	"usage: pystrib attach JOB [--results DIR]\n"
	"\n"
	"Follows a job as `pystrib run` does: every rank's output from the start,\n"
	"prefixed with the rank, until the job ends; then fetches its results and\n"
	"logs, prints a summary, and exits with the job's outcome. If the SSH\n"
	"connection drops, pystrib reconnects (for up to [remote] reconnect_timeout)\n"
	"and continues where it was. Ctrl-C detaches and leaves the job running\n"
	"(stop it with 'pystrib cancel JOB'). JOB is an id, a unique prefix of one,\n"
	"or 'last'.\n"
	"\n"
	"options:\n"
	"  -r, --results DIR   where to fetch the results (default: where the job's\n"
	"                      results went before, else [job] results/<id>)\n"
	"  -h, --help          show this help\n"
	"\n"
	"exit codes: 0 the job succeeded, 1 a rank failed (or it was cancelled),\n"
	"4 the job is lost or its host cannot be reached, 5 it timed out,\n"
	"130 detached with Ctrl-C.\n"
	"\n"
	"With the global --json: output, rank_exit, status, results and done events.\n"
	"\n"
	"examples:\n"
	"  pystrib run --detach train.py -n 4 && pystrib attach last\n";

static int exit_code_of(const char *state)
{
	if (!strcmp(state, "succeeded"))
		return 0;
	if (!strcmp(state, "timeout"))
		return PS_EXIT_TIMEOUT;
	if (!strcmp(state, "lost"))
		return PS_EXIT_REMOTE;
	return PS_EXIT_RANK;
}

struct outcome {
	const struct follow *f;
	const char *results;
};

static int record(struct jobrec *r, void *ctx)
{
	const struct outcome *o = ctx;
	const struct follow *f = o->f;

	/* An outcome known before is kept if the directory went away since. */
	if (!(jobrec_state_final(r->state) && strcmp(r->state, "lost") &&
	      f->state && !strcmp(f->state, "lost")))
		jobrec_set(&r->state, f->state);
	jobrec_set(&r->state_reason, f->reason);
	if (o->results)
		jobrec_set(&r->results, o->results);
	if (f->exit_code >= 0)
		r->exit_code = f->exit_code;
	if (f->started > 0)
		r->started = f->started;
	if (f->ended > 0)
		r->ended = f->ended;
	jobrec_set_np(r, f->np);
	for (int i = 0; i < f->np; i++) {
		if (f->ranks[i].exit_code >= 0)
			r->ranks[i].exit_code = f->ranks[i].exit_code;
		if (f->ranks[i].duration >= 0)
			r->ranks[i].duration = f->ranks[i].duration;
	}
	r->checked = now_wall();
	return 0;
}

static int summarize(const struct jobrec *r, struct follow *f, const char *results)
{
	const char *state = f->state ? f->state : "lost";
	int bad = follow_failed_rank(f), code = exit_code_of(state);
	const char *tail = bad >= 0 && code ? follow_err_tail(f, bad, 20) : NULL;

	follow_summary(f, r->id, code, bad, r->image, results, tail);
	return code;
}

static int fetch(struct ssh_conn *conn, const char *dir, const char *dest, int timeout)
{
	struct results_stats st;
	int ret = results_fetch_retry(conn, dir, dest, NULL, &st, timeout);
	if (ret < 0) {
		log_warn("could not fetch the results: %s", error_message());
		error_clear();
	}
	return ret;
}

int cmd_attach(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "results", required_argument, 0, 'r' },
		{ "help", no_argument, 0, 'h' },
		{ 0, 0, 0, 0 },
	};
	struct cmd_ctx *ctx = cli.ctx;
	struct jobrec *r = &ctx->rec;
	struct follow f;
	struct outcome o = { NULL, NULL };
	const char *want = NULL;
	char *dest = NULL;
	int c, ret;

	while ((c = cli_getopt(argc, argv, "r:", opts, cmd_attach_help)) != -1) {
		if (c == CLI_HELP || c == CLI_ERROR)
			return c == CLI_HELP ? 0 : PS_EXIT_USAGE;
		if (c == 'r')
			want = optarg;
	}
	if (cmd_setup(ctx, argc, argv) < 0)
		return cmd_report(ctx);
	dest = jobrec_results_dir(r, &ctx->cfg, want);
	follow_init(&f, ctx->dir, r->np > 0 ? r->np : 1);
	f.reconnect_timeout = ctx->cfg.remote.reconnect_timeout;
	if (follow_job(ctx->conn, &f) < 0) {
		if (error_kind() == PS_EXIT_INTERRUPTED) {
			error_clear();
			fprintf(stderr, "\npystrib: detached from job %s; it goes on "
				"(pystrib attach %s, pystrib cancel %s)\n", r->id, r->id, r->id);
			ret = PS_EXIT_INTERRUPTED;
		} else {
			ret = error_report();
		}
		goto out;
	}
	o.f = &f;
	/* A directory removed meanwhile has nothing left to fetch. */
	if (!(f.state && !strcmp(f.state, "lost") && f.reason && strstr(f.reason, "job directory")) &&
	    fetch(ctx->conn, ctx->dir, dest, ctx->cfg.remote.reconnect_timeout) == 0)
		o.results = dest;
	if (jobrec_update(r->id, record, &o) < 0) {
		log_warn("%s", error_message());
		error_clear();
	}
	ret = summarize(r, &f, o.results);
out:
	follow_release(&f);
	free(dest);
	return ret;
}
