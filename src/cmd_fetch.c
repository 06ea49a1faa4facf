#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "cmdctx.h"
#include "commands.h"
#include "config.h"
#include "error.h"
#include "jobrec.h"
#include "jobremote.h"
#include "jobstate.h"
#include "log.h"
#include "results.h"
#include "util.h"

const char cmd_fetch_help[] =
	"usage: pystrib fetch JOB [--results DIR]\n"
	"\n"
	"Fetches a job's results/ and per-rank logs/ from the remote host again:\n"
	"after a detached run, or to another place. JOB is an id, a unique prefix\n"
	"of one, or 'last'. A job still running gives what it has written so far.\n"
	"\n"
	"The files come as one tar stream over SSH and are unpacked with\n"
	"libarchive's secure-extraction checks and pystrib's own: no absolute\n"
	"path, no '..', no link pointing outside DIR, no device or fifo; each\n"
	"refused entry is named in a warning and skipped.\n"
	"\n"
	"options:\n"
	"  -r, --results DIR   where to put them (default: where the job's results\n"
	"                      went before, else [job] results/<id>, that is\n"
	"                      ./pystrib-results/<id>)\n"
	"  -h, --help          show this help\n"
	"\n"
	"With the global --json, a {\"event\":\"results\"} line gives the path.\n"
	"\n"
	"examples:\n"
	"  pystrib fetch last\n"
	"  pystrib fetch 20261123-0903 --results /data/run42\n";

static int set_results(struct jobrec *r, void *ctx)
{
	jobrec_set(&r->results, ctx);
	return 0;
}

int cmd_fetch(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "results", required_argument, 0, 'r' },
		{ "help", no_argument, 0, 'h' },
		{ 0, 0, 0, 0 },
	};
	struct cmd_ctx *ctx = cli.ctx;
	struct jobrec *r = &ctx->rec;
	struct results_stats st = { 0 };
	const char *want = NULL;
	char *dest = NULL;
	int c, ret;

	while ((c = cli_getopt(argc, argv, "r:", opts, cmd_fetch_help)) != -1) {
		if (c == CLI_HELP || c == CLI_ERROR)
			return c == CLI_HELP ? 0 : PS_EXIT_USAGE;
		if (c == 'r')
			want = optarg;
	}
	/* A job lost otherwise (its script killed) still has files to fetch. */
	if (cmd_setup(ctx, argc, argv) < 0)
		return cmd_report(ctx);
	if (!job_state_final(r->state))
		log_warn("job '%s' is still %s: fetching what it has written so far", r->id,
			 r->state ? r->state : "running");
	dest = jobrec_results_dir(r, &ctx->cfg, want);
	if (results_fetch_retry(ctx->conn, ctx->dir, dest, NULL, &st,
				ctx->cfg.remote.reconnect_timeout) < 0) {
		ret = error_report();
		goto out;
	}
	if (jobrec_update(r->id, set_results, dest) < 0) {
		log_warn("%s", error_message());
		error_clear();
	}
	if (!log_json)
		printf("results of job %s in %s (%llu file%s, %llu bytes%s)\n", r->id, dest,
		       (unsigned long long)st.files, st.files == 1 ? "" : "s",
		       (unsigned long long)st.bytes,
		       st.rejected ? ", some entries refused: see the warnings" : "");
	ret = 0;
out:
	free(dest);
	return ret;
}
