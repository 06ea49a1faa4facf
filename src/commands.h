#ifndef PYSTRIB_COMMANDS_H
#define PYSTRIB_COMMANDS_H

/*
 * One line per subcommand: X(verb, summary). main.c builds the dispatch
 * table from it; each verb has src/cmd_<verb>.c defining cmd_<verb>() and
 * cmd_<verb>_help[]. Keep it sorted.
 */
#define PYSTRIB_COMMANDS(X) \
	X(attach, "follow a job like run does, then fetch its results; exit with its outcome") \
	X(build, "write a Docker build context (Dockerfile, project, cell) as a tarball") \
	X(cancel, "stop a job on its remote host (container and processes)") \
	X(config, "show the effective settings and where each comes from") \
	X(doctor, "check the config, registry, SSH host, runtime and GPUs, with fixes") \
	X(fetch, "fetch a job's results and logs again, to its results directory or another") \
	X(gc, "remove ended jobs' remote directories and local records") \
	X(jobs, "list the jobs, newest first, with their state asked from the remote") \
	X(logs, "print a job's output so far, or follow it (-f) until it ends") \
	X(push, "build the cell's image and push it to the registry, no Docker daemon needed") \
	X(run, "run a Python file as N MPI ranks on the remote host, stream it, fetch results") \
	X(status, "show one job in detail, per rank")

#define X(verb, summary) \
	int cmd_##verb(int argc, char **argv); \
	extern const char cmd_##verb##_help[];
PYSTRIB_COMMANDS(X)
#undef X

#endif
