#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "error.h"
#include "launch.h"
#include "log.h"
#include "run.h"
#include "jobremote.h"
#include "jobstate.h"
#include "session.h"
#include "ssh.h"
#include "util.h"

const char cmd_session_help[] =
	"usage: pystrib session start [-n N] [--remote NAME | --host [USER@]HOST[:PORT]]\n"
	"                             [--runtime docker|podman|none] [--gpus SPEC]\n"
	"                             [--env KEY=VALUE]... [--project DIR | --no-project]\n"
	"                             [--idle-timeout SECONDS] [--name NAME]\n"
	"                             [--accept-new-host-key]\n"
	"       pystrib session exec SESSION FILE [--ranks SPEC] [--timeout SECONDS] [-- ARGS]\n"
	"       pystrib session attach|status|stop SESSION\n"
	"       pystrib session list\n"
	"       pystrib --json session serve SESSION\n"
	"\n"
	"A session is N ranks that stay up on the remote host between cells: what a\n"
	"cell defines (variables, a model on the GPU, a process group) is there for\n"
	"the next one, and a cell runs in milliseconds. 'start' pushes the image (the\n"
	"project and the session's bootstrap) and starts the ranks as a job (kind\n"
	"session: 'pystrib jobs' lists it, 'cancel' stops it), waits until every rank\n"
	"is ready and prints the session's id. 'exec' runs FILE's code in every\n"
	"selected rank's __main__, streaming its output as run does ('[0] ...');\n"
	"Ctrl-C interrupts the cell (KeyboardInterrupt) and the session goes on.\n"
	"'attach' shows the running cell's output from its start, then live.\n"
	"'status' shows each rank's state, the cell running, the idle time, the GPUs.\n"
	"'serve' relays requests from stdin to the session and its answers to stdout\n"
	"over one SSH connection, reconnecting without losing or repeating output\n"
	"(docs/events.md). 'stop' ends the ranks and the job. SESSION is an id, a\n"
	"unique prefix of one, 'last' (the newest session), or the session's --name.\n"
	"\n"
	"The session is reached only through SSH (a Unix socket in its job\n"
	"directory, 0700, through sshd's direct-streamlocal): no TCP port.\n"
	"\n"
	"options:\n"
	"  -n, --np N            number of ranks (default: [job] np)\n"
	"  -r, --remote NAME     the host of [remote.NAME]\n"
	"      --host DEST       [USER@]HOST[:PORT] (a ~/.ssh/config alias works)\n"
	"      --runtime RT      docker, podman, or none\n"
	"      --gpus SPEC       all, a count (2) or device indexes (0,1)\n"
	"  -e, --env KEY=VALUE   set a variable for every rank (repeatable)\n"
	"      --idle-timeout S  stop after S seconds without a cell (default 7200;\n"
	"                        0: never)\n"
	"      --name NAME       a name to call the session by instead of its id\n"
	"                        (letters, digits, '.', '_', '-'); one live session each\n"
	"      --accept-new-host-key\n"
	"                        trust and record the key of a host not yet known\n"
	"      --project DIR     put the files of DIR in the image (default: the git\n"
	"                        work tree holding the current directory; outside git,\n"
	"                        no project); the ranks start in the current directory\n"
	"      --no-project      only the session's bootstrap and its inputs\n"
	"      --input PATH      a file for the cells, in $PYSTRIB_INPUTS (repeatable)\n"
	"      --ranks SPEC      exec: the ranks that run the cell, e.g. 0,2-3 (default:\n"
	"                        all)\n"
	"      --timeout S       exec: interrupt the cell after S seconds; exit 5\n"
	"  -h, --help            show this help\n"
	"\n"
	"exit codes of exec (and attach):\n"
	"  0    every selected rank ran the cell\n"
	"  1    a rank raised (its traceback is shown; the session stays up)\n"
	"  2    usage error\n"
	"  4    the session is broken (a rank died) or cannot be reached\n"
	"  5    --timeout: the cell was interrupted (the session stays up)\n"
	"  130  Ctrl-C: the cell was interrupted (the session stays up)\n"
	"\n"
	"examples:\n"
	"  s=$(pystrib session start -n 4 --gpus all)\n"
	"  pystrib session exec $s load_model.py\n"
	"  pystrib session exec $s step.py --ranks 0\n"
	"  pystrib session stop $s\n";

enum { OPT_HOST = 0x400, OPT_RUNTIME, OPT_GPUS, OPT_IDLE, OPT_ACCEPT, OPT_RANKS, OPT_TIMEOUT,
       OPT_NAME };

static int name_ok(const char *s)
{
	if (!*s || strlen(s) > 64 || !strcmp(s, "last") || jobrec_id_valid(s))
		return 0;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && !strchr("._-", *s))
			return 0;
	return 1;
}

/* start's options into r. 1: --help shown; 0; -1 error set; < -1: -exit code. */
static int parse_start(struct run *r, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "np", required_argument, 0, 'n' },
		{ "remote", required_argument, 0, 'r' },
		{ "host", required_argument, 0, OPT_HOST },
		{ "runtime", required_argument, 0, OPT_RUNTIME },
		{ "gpus", required_argument, 0, OPT_GPUS },
		{ "env", required_argument, 0, 'e' },
		{ "idle-timeout", required_argument, 0, OPT_IDLE },
		{ "name", required_argument, 0, OPT_NAME },
		{ "accept-new-host-key", no_argument, 0, OPT_ACCEPT },
		CONTEXT_LONG_OPTIONS,
		{ "help", no_argument, 0, 'h' },
		{ 0, 0, 0, 0 },
	};
	const char *np = NULL, *runtime = NULL, *gpus = NULL;
	long idle;
	int c, k;

	r->opt.idle_timeout = -1;
	while ((c = cli_getopt(argc, argv, "n:r:e:", opts, cmd_session_help)) != -1) {
		if (c == CLI_HELP)
			return 1;
		if (c == CLI_ERROR)
			return -PS_EXIT_USAGE;
		if ((k = context_option(&r->copts, c, optarg)) < 0)
			return -1;
		if (k > 0)
			continue;
		switch (c) {
		case 'n': np = optarg; break;
		case 'r': r->opt.remote = optarg; break;
		case OPT_HOST: r->opt.host = optarg; break;
		case OPT_RUNTIME: runtime = optarg; break;
		case OPT_GPUS: gpus = optarg; break;
		case OPT_ACCEPT: r->opt.accept_new = 1; break;
		case OPT_NAME:
			if (!name_ok(optarg))
				return -(cli_usage_error(cmd_session_help, "invalid --name '%s': letters, "
							 "digits, '.', '_' and '-', not a job id or 'last'",
							 optarg));
			r->opt.name = optarg;
			break;
		case 'e':
			if (run_add_env(r, optarg) < 0)
				return -1;
			break;
		case OPT_IDLE:
			if (parse_long(optarg, 0, 1L << 30, &idle) < 0)
				return -(cli_usage_error(cmd_session_help,
							 "--idle-timeout needs seconds, not '%s'", optarg));
			r->opt.idle_timeout = (int)idle;
			break;
		}
	}
	if (optind < argc)
		return -(cli_usage_error(cmd_session_help, "session start takes no operand ('%s')",
					 argv[optind]));
	if (r->opt.remote && r->opt.host)
		return -(cli_usage_error(cmd_session_help, "--remote and --host both say where; give one"));
	const struct run_flag flags[] = {
		{ "job.np", np, "flag --np" }, { "remote.runtime", runtime, "flag --runtime" },
		{ "remote.gpus", gpus, "flag --gpus" }, { NULL, NULL, NULL },
	};
	return run_load_config(r, flags);
}

/*
 * 1 when the record r (not final) is still live: its remote is asked, as
 * `pystrib jobs` does, since a session may have ended on its own (idle
 * timeout) with its record still saying running. Unreachable: live.
 */
static int still_live(struct jobrec *r)
{
	struct config cfg;
	struct ssh_conn *conn = NULL;

	memset(&cfg, 0, sizeof(cfg));
	if (jobrec_connect(r, cli.config_file, &cfg, &conn) < 0 || jobrec_check(conn, &cfg, r) < 0) {
		log_info("session %s: its state could not be asked: %s", r->id, error_message());
		error_clear();
	}
	ssh_conn_free(conn);
	config_release(&cfg);
	return !job_state_final(r->state);
}

/* A name that a live session has already is refused (one session per name). */
static int name_free(const char *name)
{
	struct jobrec *v = NULL;
	size_t n = 0;
	int ret = 0;

	if (!name)
		return 0;
	if (jobrec_list(&v, &n) < 0)
		return -1;
	for (size_t i = 0; i < n && ret == 0; i++) {
		if (v[i].name && !strcmp(v[i].name, name) && !job_state_final(v[i].state) &&
		    still_live(&v[i])) {
			error_set(PS_EXIT_USAGE, "session '%s' is %s already (%s)", name,
				  v[i].state ? v[i].state : "running", v[i].id);
			ret = error_hint("stop it first ('pystrib session stop %s'), or choose "
					 "another --name", name);
		}
	}
	jobrec_list_free(v, n);
	return ret;
}

static int start(int argc, char **argv)
{
	struct run r;
	int ret, rc;

	run_init(&r);
	rc = parse_start(&r, argc, argv);
	if (rc == 1)
		ret = 0;
	else if (rc < 0)
		ret = rc == -1 ? error_report() : -rc;
	else if (name_free(r.opt.name) < 0)
		ret = error_report();
	else
		ret = run_session(&r);
	run_release(&r);
	return ret;
}

static int exec(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "ranks", required_argument, 0, OPT_RANKS },
		{ "timeout", required_argument, 0, OPT_TIMEOUT },
		{ "help", no_argument, 0, 'h' },
		{ 0, 0, 0, 0 },
	};
	struct session_exec e = { 0 };
	long t;
	int c;

	while ((c = cli_getopt(argc, argv, "", opts, cmd_session_help)) != -1) {
		if (c == CLI_HELP || c == CLI_ERROR)
			return c == CLI_HELP ? 0 : PS_EXIT_USAGE;
		if (c == OPT_RANKS) {
			e.ranks = optarg;
		} else if (c == OPT_TIMEOUT) {
			if (parse_long(optarg, 0, 1L << 30, &t) < 0)
				return cli_usage_error(cmd_session_help,
						       "--timeout needs seconds, not '%s'", optarg);
			e.timeout = (double)t;
		}
	}
	if (argc - optind < 2)
		return cli_usage_error(cmd_session_help, "session exec needs SESSION and FILE");
	e.file = argv[optind + 1];
	e.args = argv + optind + 2;
	return session_exec(argv[optind], &e);
}

/* attach, status, stop, serve: SESSION and nothing else. */
static int one(int argc, char **argv, int (*fn)(const char *))
{
	int c;
	while ((c = cli_getopt(argc, argv, "", NULL, cmd_session_help)) != -1)
		if (c == CLI_HELP || c == CLI_ERROR)
			return c == CLI_HELP ? 0 : PS_EXIT_USAGE;
	if (argc - optind != 1)
		return cli_usage_error(cmd_session_help, "session %s needs one SESSION", argv[0]);
	return fn(argv[optind]);
}

static int is_verb(const char *a)
{
	static const char *const verbs[] = {
		"start", "exec", "list", "attach", "status", "stop", "serve",
	};
	for (size_t i = 0; i < ARRAY_SIZE(verbs); i++)
		if (!strcmp(a, verbs[i]))
			return 1;
	return 0;
}

int cmd_session(int argc, char **argv)
{
	static const struct {
		const char *name;
		int (*fn)(const char *);
	} ones[] = {
		{ "attach", session_attach }, { "status", session_status },
		{ "stop", session_stop }, { "serve", session_serve },
	};
	int i = 1, c;

	/* Before the subcommand: the global options and --help. */
	while (i < argc && !is_verb(argv[i]))
		i++;
	while ((c = cli_getopt(i, argv, "", NULL, cmd_session_help)) != -1)
		if (c == CLI_HELP || c == CLI_ERROR)
			return c == CLI_HELP ? 0 : PS_EXIT_USAGE;
	if (optind < i)
		return cli_usage_error(cmd_session_help, "unknown session command '%s'", argv[optind]);
	if (i == argc)
		return cli_usage_error(cmd_session_help, "session needs a command (start, exec, ...)");
	argc -= i;
	argv += i;
	optind = 0;	/* glibc: re-initialise getopt for the subcommand */
	if (!strcmp(argv[0], "start"))
		return start(argc, argv);
	if (!strcmp(argv[0], "exec"))
		return exec(argc, argv);
	for (size_t k = 0; k < ARRAY_SIZE(ones); k++)
		if (!strcmp(argv[0], ones[k].name))
			return one(argc, argv, ones[k].fn);
	while ((c = cli_getopt(argc, argv, "", NULL, cmd_session_help)) != -1)
		if (c == CLI_HELP || c == CLI_ERROR)
			return c == CLI_HELP ? 0 : PS_EXIT_USAGE;
	if (optind < argc)
		return cli_usage_error(cmd_session_help, "session list takes no operand");
	return session_list();
}
