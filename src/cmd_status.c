#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cmdctx.h"
#include "commands.h"
#include "error.h"
#include "jobfmt.h"
#include "jobrec.h"
#include "jobstate.h"
#include "outcome.h"
#include "log.h"
#include "slurm.h"
#include "util.h"

const char cmd_status_help[] =
	"usage: pystrib status JOB\n"
	"\n"
	"Shows one job in detail: where it runs, its state (asked from the remote\n"
	"host), image, git revision, times, and per rank the exit code, duration\n"
	"and state (running, exited N, killed by SIGNAME). JOB is an id, a unique\n"
	"prefix of one, or 'last'.\n"
	"\n"
	"When the remote host cannot be reached, the last known state is shown,\n"
	"marked as such, and the exit code is 4. A job whose directory was removed\n"
	"on the remote host is 'lost', with the reason. A job under Slurm shows its\n"
	"Slurm job id, and 'pending' with Slurm's reason while it waits; 'lost' with\n"
	"Slurm's state when Slurm ended it before its job script could say (scancel,\n"
	"a node failure), and the node when ranks were killed on one.\n"
	"\n"
	"options:\n"
	"  -h, --help          show this help\n"
	"\n"
	"With the global --json, one {\"event\":\"job\"} line with the record's fields\n"
	"and `ranks` (list of {rank, exit_code, duration, state}).\n"
	"\n"
	"examples:\n"
	"  pystrib status last\n"
	"  pystrib status 20261123-0903\n";

static void line(const char *key, const char *value)
{
	if (value && *value)
		printf("%-10s %s\n", key, value);
}

/*
 * How rank i stands: "running" (or "waiting" before the job started),
 * "exited N", "killed by SIGNAME ..." (outcome_rank_text's words), or
 * "no exit code" for a job that ended without one from the rank.
 */
static const char *rank_state(char *out, size_t n, const struct jobrec *r, int i)
{
	int code = r->ranks[i].exit_code;

	if (code > 128)
		return outcome_rank_text(out, n, code, r->state);
	if (code >= 0)
		snprintf(out, n, "exited %d", code);
	else if (r->state && !strcmp(r->state, "running"))
		snprintf(out, n, "running");
	else if (!r->state || !job_state_final(r->state))
		snprintf(out, n, "waiting");
	else
		snprintf(out, n, "no exit code");
	return out;
}

static void show(const struct jobrec *r, const char *stale)
{
	char t[64], state[512];
	char *where = NULL;

	line("job", r->id);
	where = xstrfmt("%s%s%s%s", jobrec_remote_label(r), r->host_name ? " (" : "",
			r->host_name ? r->host_name : "", r->host_name ? ")" : "");
	line("remote", where);
	line("directory", r->jobdir);
	line("slurm job", r->slurm_id);
	snprintf(state, sizeof(state), "%s%s%s%s", r->state ? r->state : "unknown",
		 r->state_reason ? " (" : "", r->state_reason ? r->state_reason : "",
		 r->state_reason ? ")" : "");
	line("state", state);
	if (stale) {
		char *checked = xstrfmt("last known%s%s; %s", r->checked > 0 ? ", checked " : "",
					r->checked > 0 ? jobrec_fmt_time(t, sizeof(t), r->checked) : "",
					stale);
		line("", checked);
		free(checked);
	}
	if (r->exit_code >= 0) {
		snprintf(t, sizeof(t), "%d", r->exit_code);
		line("exit", t);
	}
	line("runtime", r->runtime);
	line("image", r->image);
	line("revision", r->revision);
	line("cell", r->cell);
	line("submitted", r->created > 0 ? jobrec_fmt_time(t, sizeof(t), r->created) : NULL);
	line("started", r->started > 0 ? jobrec_fmt_time(t, sizeof(t), r->started) : NULL);
	line("ended", r->ended > 0 ? jobrec_fmt_time(t, sizeof(t), r->ended) : NULL);
	if (r->started > 0 && r->ended >= r->started)
		line("duration", jobrec_fmt_duration(t, sizeof(t), r->ended - r->started));
	line("results", r->results);
	if (r->np > 0) {
		printf("\n%-6s %-6s %-9s %s\n", "RANK", "EXIT", "DURATION", "STATE");
		for (int i = 0; i < r->np; i++) {
			char code[16], st[160];
			snprintf(code, sizeof(code), "%d", r->ranks[i].exit_code);
			printf("%-6d %-6s %-9s %s\n", i, r->ranks[i].exit_code >= 0 ? code : "-",
			       jobrec_fmt_duration(t, sizeof(t), r->ranks[i].duration),
			       rank_state(st, sizeof(st), r, i));
		}
	}
	free(where);
}

static void emit(const struct jobrec *r, const char *stale)
{
	json_t *ranks = json_array();
	char st[160];
	for (int i = 0; i < r->np; i++)
		json_array_append_new(ranks, json_pack("{s:i,s:o,s:o,s:s}", "rank", i, "exit_code",
			r->ranks[i].exit_code >= 0 ? json_integer(r->ranks[i].exit_code) : json_null(),
			"duration", r->ranks[i].duration >= 0 ? json_real(r->ranks[i].duration)
							      : json_null(),
			"state", rank_state(st, sizeof(st), r, i)));
	event_emit("job", "{s:s,s:s?,s:s?,s:s?,s:i,s:s?,s:s?,s:s?,s:s?,s:s?,s:s?,s:b,s:s?,s:o,"
		   "s:f,s:f,s:f,s:s?,s:o,s:s?}",
		   "id", r->id, "remote", r->remote, "host", r->host_name, "jobdir", r->jobdir,
		   "np", r->np, "image", r->image, "digest", r->digest, "runtime", r->runtime,
		   "revision", r->revision, "cell", r->cell, "state", r->state,
		   "stale", stale != NULL, "reason", stale ? stale : r->state_reason,
		   "exit_code", r->exit_code >= 0 ? json_integer(r->exit_code) : json_null(),
		   "created", r->created, "started", r->started, "ended", r->ended,
		   "results", r->results, "ranks", ranks, "slurm_id", r->slurm_id);
}

int cmd_status(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "help", no_argument, 0, 'h' },
		{ 0, 0, 0, 0 },
	};
	struct cmd_ctx *ctx = cli.ctx;
	int c, ret = 0;

	while ((c = cli_getopt(argc, argv, "", opts, cmd_status_help)) != -1)
		if (c == CLI_HELP || c == CLI_ERROR)
			return c == CLI_HELP ? 0 : PS_EXIT_USAGE;
	/* CONN_MAY_FAIL: a host not reached still shows the last known state. */
	if (cmd_setup(ctx, argc, argv) < 0)
		return cmd_report(ctx);
	if (ctx->stale)
		ret = error_report();
	else {
		slurm_check_record(ctx->conn, &ctx->rec);
		slurm_check_failed(ctx->conn, &ctx->rec);
	}
	if (log_json)
		emit(&ctx->rec, ctx->stale);
	else
		show(&ctx->rec, ctx->stale);
	return ret;
}
