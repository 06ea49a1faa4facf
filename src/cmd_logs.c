#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cmdctx.h"
#include "commands.h"
#include "error.h"
#include "follow.h"
#include "jobrec.h"
#include "jobremote.h"
#include "log.h"
#include "util.h"

const char cmd_logs_help[] =
	"usage: pystrib logs JOB [-f] [--rank N] [--stderr]\n"
	"\n"
	"Prints a job's output so far, from its remote host: each rank's lines\n"
	"prefixed with the rank ('[0] ...'), stdout to stdout and stderr to\n"
	"stderr. With -f, goes on following until the job ends; if the connection\n"
	"drops, pystrib reconnects and continues where it was, no line lost or\n"
	"shown twice. JOB is an id, a unique prefix of one, or 'last'.\n"
	"\n"
	"options:\n"
	"  -f, --follow        follow the output until the job ends\n"
	"  -r, --rank N        only rank N, without the prefix\n"
	"  -e, --stderr        only the ranks' stderr\n"
	"  -o, --stdout        only the ranks' stdout\n"
	"  -h, --help          show this help\n"
	"\n"
	"With the global --json, one {\"event\":\"output\"} line per line of output.\n"
	"\n"
	"examples:\n"
	"  pystrib logs last\n"
	"  pystrib logs -f 20261123-0903 --rank 1 --stderr\n";

int cmd_logs(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "follow", no_argument, 0, 'f' },
		{ "rank", required_argument, 0, 'r' },
		{ "stderr", no_argument, 0, 'e' },
		{ "stdout", no_argument, 0, 'o' },
		{ "help", no_argument, 0, 'h' },
		{ 0, 0, 0, 0 },
	};
	struct cmd_ctx *ctx = cli.ctx;
	struct jobrec *r = &ctx->rec;
	struct follow f;
	long rank = -1;
	int c, ret, follow = 0, streams = 0;

	while ((c = cli_getopt(argc, argv, "fr:eo", opts, cmd_logs_help)) != -1) {
		if (c == CLI_HELP || c == CLI_ERROR)
			return c == CLI_HELP ? 0 : PS_EXIT_USAGE;
		if (c == 'f')
			follow = 1;
		else if (c == 'r' && parse_long(optarg, 0, 1000000, &rank) < 0)
			return cli_usage_error(cmd_logs_help, "--rank wants a rank number, not '%s'", optarg);
		else if (c == 'e')
			streams |= FOLLOW_STDERR;
		else if (c == 'o')
			streams |= FOLLOW_STDOUT;
	}
	if (cmd_setup(ctx, argc, argv) < 0) {
		if (jobrec_dir_gone(r) && r->results)
			error_hint("the logs fetched before are in '%s/logs'", r->results);
		return cmd_report(ctx);
	}
	if (rank >= r->np && r->np > 0)
		return cli_usage_error(cmd_logs_help, "job '%s' has ranks 0 to %d, not %ld", r->id,
				       r->np - 1, rank);
	follow_init(&f, ctx->dir, r->np > 0 ? r->np : 1);
	f.once = !follow;
	f.only_rank = (int)rank;
	f.no_prefix = rank >= 0;
	f.streams = streams;
	f.reconnect_timeout = ctx->cfg.remote.reconnect_timeout;
	ret = follow_job(ctx->conn, &f) < 0 ? error_report() : 0;
	follow_release(&f);
	return ret;
}
