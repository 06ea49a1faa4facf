#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "commands.h"
#include "error.h"
#include "launch.h"
#include "run.h"
#include "util.h"

const char cmd_run_help[] =
	"usage: pystrib run FILE [-n N] [--remote NAME | --host [USER@]HOST[:PORT]]\n"
	"                   [--hosts LIST]\n"
	"                   [--runtime docker|podman|none] [--gpus SPEC] [--timeout SECONDS]\n"
	"                   [--results DIR] [--env KEY=VALUE]... [--detach]\n"
	"                   [--accept-new-host-key] [--project DIR | --no-project]\n"
	"                   [--input PATH]... [-- ARGS...]\n"
	"\n"
	"Runs the Python file FILE (a saved notebook cell) as N MPI ranks on the\n"
	"remote host: builds the cell's image layers (the project, the cell), pushes\n"
	"only what the registry lacks, starts the job there detached over SSH (it\n"
	"survives a dropped connection), shows each rank's output as it arrives,\n"
	"prefixed with the rank ('[0] ...'; stdout to stdout, stderr to stderr), then\n"
	"fetches the job's results/ and logs and prints a summary per rank. ARGS reach\n"
	"the cell as sys.argv[1:]; the cell sees rank and world_size as globals, and\n"
	"RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT and PYSTRIB_RESULTS\n"
	"(write files there to get them back) in its environment.\n"
	"\n"
	"Defaults come from the configuration ([job], [remote]; see 'pystrib config\n"
	"show'). If the connection drops, pystrib reconnects for up to [remote]\n"
	"reconnect_timeout seconds and goes on where it was.\n"
	"\n"
	"options:\n"
	"  -n, --np N          number of ranks (default: [job] np)\n"
	"  -r, --remote NAME   run on the host of [remote.NAME]\n"
	"      --host DEST     run on [USER@]HOST[:PORT] (a ~/.ssh/config alias works)\n"
	"      --hosts LIST    one job over several hosts, runtime none or podman:\n"
	"                      [USER@]HOST[:PORT][*SLOTS], ... ([remote] hosts; the\n"
	"                      first is rank 0's)\n"
	"      --runtime RT    docker, podman, or none (the host's own mpirun and\n"
	"                      python, with the cell's files unpacked in the job dir)\n"
	"      --gpus SPEC     all, a count (2) or device indexes (0,1), dealt over\n"
	"                      the local ranks as CUDA_VISIBLE_DEVICES\n"
	"      --timeout SECONDS\n"
	"                      stop the job (container and every process) after\n"
	"                      SECONDS, counted from its start on the host; exit 5\n"
	"      --results DIR   where results/ and logs/ come back (default:\n"
	"                      [job] results/<job id>, ./pystrib-results/<job id>)\n"
	"  -e, --env KEY=VALUE\n"
	"                      set a variable for every rank (repeatable)\n"
	"  -d, --detach        submit, print the job id and return ('pystrib attach'\n"
	"                      follows it later)\n"
	"      --accept-new-host-key\n"
	"                      trust and record the key of a host not yet in\n"
	"                      known_hosts (a CHANGED key is always refused)\n"
	CONTEXT_OPTIONS_HELP
	"  -h, --help          show this help\n"
	"\n"
	"Ctrl-C stops the remote job and exits 130. With the global --json, stdout\n"
	"carries one event per line (job, status, output, rank_exit, results, done).\n"
	"\n"
	"exit codes:\n"
	"  0    every rank exited 0\n"
	"  1    a rank failed (its stderr's last lines are shown)\n"
	"  2    usage or configuration error\n"
	"  3    registry error (the push, or the host's pull of the image)\n"
	"  4    SSH or remote-host error: unreachable, host key, login, or the host\n"
	"       could not run the job (no runtime, too few slots, no GPU runtime, a\n"
	"       full disk; the summary says which, with the end of logs/job.err)\n"
	"  5    the job ran past --timeout and was stopped\n"
	"  6    local I/O error: a file, pipe or write on this machine failed\n"
	"  130  interrupted, or the job was cancelled (the remote job was stopped)\n"
	"\n"
	"'pystrib attach JOB' of the same job later exits with the same code and\n"
	"prints the same summary.\n"
	"\n"
	"examples:\n"
	"  pystrib run train.py -n 4 --gpus all\n"
	"  pystrib run sweep.py -n 2 --env LR=0.01 -- --epochs 3\n"
	"  pystrib run cell.py --host me@gpu1 --runtime none --timeout 600\n"
	"  pystrib run long.py -n 8 --detach && pystrib attach last\n";

enum {
	OPT_HOST = 0x400, OPT_RUNTIME, OPT_GPUS, OPT_TIMEOUT, OPT_RESULTS, OPT_ACCEPT,
	OPT_HOSTS,
};

static int parse(struct run *r, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "np", required_argument, 0, 'n' },
		{ "remote", required_argument, 0, 'r' },
		{ "host", required_argument, 0, OPT_HOST },
		{ "hosts", required_argument, 0, OPT_HOSTS },
		{ "runtime", required_argument, 0, OPT_RUNTIME },
		{ "gpus", required_argument, 0, OPT_GPUS },
		{ "timeout", required_argument, 0, OPT_TIMEOUT },
		{ "results", required_argument, 0, OPT_RESULTS },
		{ "env", required_argument, 0, 'e' },
		{ "detach", no_argument, 0, 'd' },
		{ "accept-new-host-key", no_argument, 0, OPT_ACCEPT },
		CONTEXT_LONG_OPTIONS,
		{ "help", no_argument, 0, 'h' },
		{ 0, 0, 0, 0 },
	};
	const char *np = NULL, *runtime = NULL, *gpus = NULL, *timeout = NULL, *hosts = NULL;
	int c, k;

	while ((c = cli_getopt(argc, argv, "n:r:e:d", opts, cmd_run_help)) != -1) {
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
		case OPT_HOSTS: hosts = optarg; break;
		case OPT_RUNTIME: runtime = optarg; break;
		case OPT_GPUS: gpus = optarg; break;
		case OPT_TIMEOUT: timeout = optarg; break;
		case OPT_RESULTS: r->opt.results = optarg; break;
		case 'e':
			if (run_add_env(r, optarg) < 0)
				return -1;
			break;
		case 'd': r->opt.detach = 1; break;
		case OPT_ACCEPT: r->opt.accept_new = 1; break;
		}
	}
	if (optind >= argc)
		return -(cli_usage_error(cmd_run_help, "run needs the cell FILE"));
	if (hosts && r->opt.host)
		return -(cli_usage_error(cmd_run_help, "--host and --hosts both say where; give one"));
	if (r->opt.remote && r->opt.host)
		return -(cli_usage_error(cmd_run_help, "--remote and --host both say where; give one"));
	r->copts.cell = argv[optind];
	r->opt.args = argv + optind + 1;
	const struct run_flag flags[] = {
		{ "job.np", np, "flag --np" }, { "remote.runtime", runtime, "flag --runtime" },
		{ "remote.hosts", hosts, "flag --hosts" }, { "remote.gpus", gpus, "flag --gpus" },
		{ "job.timeout", timeout, "flag --timeout" }, { NULL, NULL, NULL },
	};
	return run_load_config(r, flags);
}

int cmd_run(int argc, char **argv)
{
	struct run r;
	int ret, rc;

	run_init(&r);
	rc = parse(&r, argc, argv);
	if (rc == 1)
		ret = 0;
	else if (rc < 0)
		ret = rc == -1 ? error_report() : -rc;
	else if (access(r.copts.cell, R_OK) < 0)
		ret = error_set(PS_EXIT_USAGE, "cannot read '%s': %s", r.copts.cell,
				strerror(errno)), error_report();
	else
		ret = run_job(&r);
	run_release(&r);
	return ret;
}
