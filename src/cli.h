#ifndef PYSTRIB_CLI_H
#define PYSTRIB_CLI_H

#include <getopt.h>

/*
 * The command table lives in main.c. Each subcommand is one file,
 * src/cmd_<verb>.c, exporting `int cmd_<verb>(int argc, char **argv)`,
 * which returns an exit code (enum ps_exit), and `cmd_<verb>_help`, its
 * usage, options and an example, shown by `pystrib help VERB` and
 * `pystrib VERB --help`. argv[0] is the verb.
 */
struct cli_command {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *summary;	/* one line for `pystrib --help` */
	const char *help;	/* the full text */
};

/* Global options, set by main before the command runs. */
struct cli_globals {
	const char *config_file;	/* -c FILE */
};
extern struct cli_globals cli;

/* What cli_getopt returns besides option characters and -1. */
enum { CLI_HELP = -2, CLI_ERROR = -3 };

/*
 * getopt_long for a subcommand, with the project's conventions: -h/--help
 * prints `help` to stdout and returns CLI_HELP (the command returns 0);
 * an unknown option or a missing argument prints a one-line error naming
 * it, the nearest valid option, and a usage hint, then returns CLI_ERROR
 * (the command returns PS_EXIT_USAGE). Leave optind at 0 before the first call.
 */
int cli_getopt(int argc, char **argv, const char *shortopts,
	       const struct option *longopts, const char *help);

/* Prints "pystrib: MSG" and the usage line of `help`, returns PS_EXIT_USAGE. */
int cli_usage_error(const char *help, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The table, for `help` and suggestions. */
const struct cli_command *cli_find(const char *name);

#endif
