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
#include "jobfmt.h"
#include "jobrec.h"
#include "jobremote.h"
#include "log.h"
#include "outcome.h"
#include "ref.h"
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
	"exit codes, as run's for the same job: 0 the job succeeded, 1 a rank\n"
	"failed, 3 the host's pull was refused by the registry, 4 the host could\n"
	"not run it, the job is lost or its host cannot be reached, 5 it timed out,\n"
	"130 it was cancelled, or Ctrl-C detached from it.\n"
	"\n"
	"With the global --json: output, rank_exit, status, results and done events.\n"
	"\n"
	"examples:\n"
	"  pystrib run --detach train.py -n 4 && pystrib attach last\n";

/* The job's outcome, as run tells it. */
static int report(const struct jobrec *r, struct follow *f, const char *results)
{
	char tag[256];
	char *pinned = r->image ? ref_pinned(r->image) : NULL;
	struct outcome o = {
		.id = r->id, .f = f, .image = pinned,
		.tag = r->image ? jobrec_image_tag(tag, sizeof(tag), r->image) : NULL,
		.results = results,
	};
	int code = outcome_report(&o);
	free(pinned);
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
	const char *want = NULL, *results = NULL;
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
	/* A directory removed meanwhile has nothing left to fetch. */
	if (f.code != REASON_DIR_GONE &&
	    fetch(ctx->conn, ctx->dir, dest, ctx->cfg.remote.reconnect_timeout) == 0)
		results = dest;
	ret = report(r, &f, results);
out:
	follow_release(&f);
	free(dest);
	return ret;
}
