#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cmdctx.h"
#include "commands.h"
#include "error.h"
#include "jobrec.h"
#include "jobremote.h"
#include "jobstate.h"
#include "log.h"
#include "remote_job.h"
#include "util.h"

const char cmd_cancel_help[] =
	"usage: pystrib cancel JOB\n"
	"\n"
	"Stops a job on its remote host: TERM to the job's process group (the job\n"
	"script stops its container), then, if it has not ended within 10 seconds,\n"
	"KILL and `docker|podman rm -f` of its container. Its state becomes\n"
	"'cancelled'. A job that has already ended is left as it is (and said so).\n"
	"A job under Slurm ([remote] scheduler = slurm) is stopped with scancel.\n"
	"JOB is an id, a unique prefix of one, or 'last'.\n"
	"\n"
	"options:\n"
	"  -h, --help          show this help\n"
	"\n"
	"With the global --json, a {\"event\":\"done\"} line with id and state.\n"
	"\n"
	"examples:\n"
	"  pystrib cancel last\n";

int cmd_cancel(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "help", no_argument, 0, 'h' },
		{ 0, 0, 0, 0 },
	};
	struct cmd_ctx *ctx = cli.ctx;
	struct jobrec *r = &ctx->rec;
	char *final = NULL;
	int c;

	while ((c = cli_getopt(argc, argv, "", opts, cmd_cancel_help)) != -1)
		if (c == CLI_HELP || c == CLI_ERROR)
			return c == CLI_HELP ? 0 : PS_EXIT_USAGE;
	/* A job whose directory is gone is `lost`: ended, said so below. */
	if (cmd_setup(ctx, argc, argv) < 0)
		return cmd_report(ctx);
	if (job_state_final(r->state)) {
		if (!log_json)
			printf("job %s had already ended: %s%s%s%s\n", r->id, r->state,
			       r->state_reason ? " (" : "", r->state_reason ? r->state_reason : "",
			       r->state_reason ? ")" : "");
		event_emit("done", "{s:s,s:s,s:i}", "id", r->id, "state", r->state, "exit_code",
			   r->exit_code);
		return 0;
	}
	if (remote_job_cancel(ctx->conn, ctx->dir, "cancelled", &final) < 0)
		return error_report();
	/* The record gets the whole final picture: exit codes, times. */
	if (jobrec_check(ctx->conn, &ctx->cfg, r) < 0) {
		log_warn("%s", error_message());
		error_clear();
	}
	if (!log_json && !strcmp(final, "cancelled"))
		printf("job %s cancelled\n", r->id);
	else if (!log_json)
		printf("job %s ended meanwhile: %s\n", r->id, final);
	event_emit("done", "{s:s,s:s,s:i}", "id", r->id, "state", final, "exit_code",
		   r->exit_code);
	free(final);
	return 0;
}
