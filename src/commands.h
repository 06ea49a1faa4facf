#ifndef PYSTRIB_COMMANDS_H
#define PYSTRIB_COMMANDS_H

#include "cmdctx.h"

/*
 * One line per subcommand: X(verb, needs, summary). main.c builds the
 * dispatch table from it; each verb has src/cmd_<verb>.c defining
 * cmd_<verb>() and cmd_<verb>_help[]. `needs` (enum cmd_needs, cmdctx.h)
 * says what cmd_setup gives the command once its options are parsed:
 * its JOB's record, the configuration, a connection to the job's host.
 * Keep it sorted.
 */
#define PYSTRIB_COMMANDS(X) \
	X(attach, NEED_CONN | NEED_JOBDIR | NEED_UNPACKER, "follow a job like run does, then fetch its results; exit with its outcome") \
	X(build, 0, "write a Docker build context (Dockerfile, project, cell) as a tarball") \
	X(cancel, NEED_CONN, "stop a job on its remote host (container and processes)") \
	X(config, NEED_CONFIG, "show the effective settings and where each comes from") \
	X(doctor, 0, "check the config, registry, SSH host, runtime and GPUs, with fixes") \
	X(fetch, NEED_CONN | NEED_JOBDIR | NEED_UNPACKER, "fetch a job's results and logs again, to its results directory or another") \
	X(gc, 0, "remove ended jobs' remote directories and local records") \
	X(jobs, 0, "list the jobs, newest first, with their state asked from the remote") \
	X(logs, NEED_CONN | NEED_JOBDIR, "print a job's output so far, or follow it (-f) until it ends") \
	X(push, 0, "build the cell's image and push it to the registry, no Docker daemon needed") \
	X(run, NEED_UNPACKER, "run a Python file as N MPI ranks on the remote host, stream it, fetch results") \
	X(session, 0, "keep N ranks up between cells: start, exec, attach, status, serve, stop, list") \
	X(status, NEED_CONN | CONN_MAY_FAIL, "show one job in detail, per rank")

#define X(verb, needs, summary) \
	int cmd_##verb(int argc, char **argv); \
	extern const char cmd_##verb##_help[];
PYSTRIB_COMMANDS(X)
#undef X

#endif
