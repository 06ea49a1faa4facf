#ifndef PYSTRIB_COMMANDS_H
#define PYSTRIB_COMMANDS_H

/*
 * One line per subcommand: X(verb, summary). main.c builds the dispatch
 * table from it; each verb has src/cmd_<verb>.c defining cmd_<verb>() and
 * cmd_<verb>_help[]. Keep it sorted.
 */
#define PYSTRIB_COMMANDS(X) \
	X(build, "write a Docker build context (Dockerfile, project, cell) as a tarball") \
	X(config, "show the effective settings and where each comes from") \
	X(doctor, "check the config, registry, SSH host, runtime and GPUs, with fixes")

#define X(verb, summary) \
	int cmd_##verb(int argc, char **argv); \
	extern const char cmd_##verb##_help[];
PYSTRIB_COMMANDS(X)
#undef X

#endif
