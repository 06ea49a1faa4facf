#ifndef PYSTRIB_CMDCTX_H
#define PYSTRIB_CMDCTX_H

#include "config.h"
#include "jobrec.h"

struct ssh_conn;

/*
 * What a command needs before it acts, declared once per command in
 * commands.h (as git's `{ "add", cmd_add, RUN_SETUP }` or tmux's
 * cmd_entry), and the context that holds it.
 *
 * main() makes the running command's context from its table entry
 * (cli.ctx, cli.h) and releases it after the command returns. The command
 * parses its own options with cli_getopt (so --help needs nothing else),
 * then calls cmd_setup, which does what the needs say:
 *
 *	struct cmd_ctx *ctx = cli.ctx;
 *	while ((c = cli_getopt(argc, argv, ...)) != -1) { ... }
 *	if (cmd_setup(ctx, argc, argv) < 0)
 *		return cmd_report(ctx);
 *	... ctx->rec, ctx->cfg, ctx->conn, ctx->dir ...
 *	return 0;	(no release: main does it)
 */
enum cmd_needs {
	/* One JOB argument after the options (an id, a prefix, or 'last'),
	 * resolved to its record in ctx->rec. */
	NEED_JOB = 1 << 0,
	/* The configuration in ctx->cfg: with NEED_JOB that of the job's
	 * remote (an error if no longer configured), else that of
	 * ctx->remote (NULL: [remote]). */
	NEED_CONFIG = 1 << 1,
	/* Implies NEED_JOB and NEED_CONFIG. A connection to the job's host
	 * in ctx->conn, the job's state read from there into ctx->rec (and
	 * its record), its remote directory in ctx->dir. */
	NEED_CONN = 1 << 2,
	/* Implies NEED_CONN. The job's directory must still be on its host
	 * (to follow or fetch it): a gone one is jobrec_gone_error's error. */
	NEED_JOBDIR = 1 << 3,
	/* With NEED_CONN: a host that cannot be reached (or a remote no
	 * longer configured) is no failure of cmd_setup; ctx->stale then
	 * says why, the error is left set for the command to report, and
	 * ctx->rec has the last known state. */
	CONN_MAY_FAIL = 1 << 4,
	/* The command unpacks results from a remote host: main starts the
	 * unpacker (results.h) before the command runs, so the bytes are
	 * parsed by processes that never held a credential. */
	NEED_UNPACKER = 1 << 5,
};

struct cmd_ctx {
	const char *verb;	/* argv[0] of the command, for messages */
	const char *help;	/* its help text, for the usage line */
	unsigned needs;		/* enum cmd_needs, implications added */
	const char *remote;	/* in, set by the command before cmd_setup: for
				 * NEED_CONFIG without NEED_JOB, [remote.NAME] */

	struct jobrec rec;	/* NEED_JOB */
	struct config cfg;	/* NEED_CONFIG */
	struct ssh_conn *conn;	/* NEED_CONN (NULL when stale) */
	char *dir;		/* NEED_CONN: the job's remote directory (NULL when stale) */
	char *stale;		/* CONN_MAY_FAIL: why the host was not reached, or NULL */

	int usage;		/* private: cmd_setup printed a usage error */
};

void cmd_ctx_init(struct cmd_ctx *ctx, const char *verb, const char *help, unsigned needs);
void cmd_ctx_release(struct cmd_ctx *ctx);

/*
 * Does what ctx->needs say, after the command's options (cli_getopt has
 * returned -1, so argv[optind] is the first operand), with the global -c
 * FILE (cli.config_file). 0, or -1: a usage error about the JOB argument
 * (printed already), or any other error (set, not yet printed: the
 * command may add a hint). Either way the command returns cmd_report().
 */
int cmd_setup(struct cmd_ctx *ctx, int argc, char **argv);

/*
 * After cmd_setup failed: prints its error (unless it was a usage error,
 * printed already) and returns the command's exit code.
 */
int cmd_report(const struct cmd_ctx *ctx);

#endif
