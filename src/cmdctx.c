#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cmdctx.h"
#include "config.h"
#include "error.h"
#include "jobarg.h"
#include "jobrec.h"
#include "jobremote.h"
#include "ssh.h"
#include "util.h"

void cmd_ctx_init(struct cmd_ctx *ctx, const char *verb, const char *help, unsigned needs)
{
	memset(ctx, 0, sizeof(*ctx));
	ctx->verb = verb;
	ctx->help = help;
	if (needs & NEED_JOBDIR)
		needs |= NEED_CONN;
	if (needs & NEED_CONN)
		needs |= NEED_JOB | NEED_CONFIG;
	ctx->needs = needs;
	jobrec_init(&ctx->rec);
}

void cmd_ctx_release(struct cmd_ctx *ctx)
{
	free(ctx->stale);
	free(ctx->dir);
	ssh_conn_free(ctx->conn);
	config_release(&ctx->cfg);
	jobrec_release(&ctx->rec);
	cmd_ctx_init(ctx, ctx->verb, ctx->help, ctx->needs);
}

/* NEED_CONN: the connection, the job's state from its host, its directory. */
static int reach(struct cmd_ctx *ctx)
{
	struct jobrec *r = &ctx->rec;

	if (jobrec_connect(r, cli.config_file, &ctx->cfg, &ctx->conn) < 0 ||
	    jobrec_check(ctx->conn, &ctx->cfg, r) < 0) {
		if (!(ctx->needs & CONN_MAY_FAIL))
			return -1;
		/* The last known state is still worth showing. */
		ctx->stale = xstrdup(error_message());
		return 0;
	}
	ctx->dir = jobrec_remote_dir(r, &ctx->cfg);
	if ((ctx->needs & NEED_JOBDIR) && jobrec_dir_gone(r))
		return jobrec_gone_error(r);
	return 0;
}

int cmd_setup(struct cmd_ctx *ctx, int argc, char **argv)
{
	if (ctx->needs & NEED_JOB) {
		const char *arg = jobrec_job_arg(argc, argv, ctx->verb, ctx->help);
		if (!arg) {
			ctx->usage = 1;
			return -1;
		}
		if (jobrec_resolve(&ctx->rec, arg) < 0)
			return -1;
	}
	if (ctx->needs & NEED_CONN)
		return reach(ctx);
	if (ctx->needs & NEED_CONFIG) {
		if (ctx->needs & NEED_JOB)
			return jobrec_config(&ctx->rec, cli.config_file, &ctx->cfg);
		return config_load(&ctx->cfg, cli.config_file, ctx->remote);
	}
	return 0;
}

int cmd_report(const struct cmd_ctx *ctx)
{
	return ctx->usage ? PS_EXIT_USAGE : error_report();
}
