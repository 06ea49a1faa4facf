#ifndef PYSTRIB_CLI_H
#define PYSTRIB_CLI_H

#include <getopt.h>

struct cmd_ctx;

/*
 * The command table lives in main.c, built from commands.h. Each
 * subcommand is one file, src/cmd_<verb>.c, exporting `int
 * cmd_<verb>(int argc, char **argv)`, which returns an exit code (enum
 * ps_exit), and `cmd_<verb>_help`, its usage, options and an example,
 * shown by `pystrib help VERB` and `pystrib VERB --help`. argv[0] is the
 * verb.
 */
struct cli_command {
	const char *name;
	int (*fn)(int argc, char **argv);
	unsigned needs;		/* enum cmd_needs (cmdctx.h): what cmd_setup provides */
	const char *summary;	/* one line for `pystrib --help` */
	const char *help;	/* the full text */
};

/* Global options and the running command's context, set by main. */
struct cli_globals {
	const char *config_file;	/* -c FILE */
	struct cmd_ctx *ctx;		/* the running command's, from its needs */
};
extern struct cli_globals cli;

/*
 * The global options: -c/--config FILE, -v/--verbose (twice: debug),
 * --json. They are one list, accepted before the command (main) and among
 * any command's own options (cli_getopt), anywhere before a "--": after
 * it, words are the command's operands (a cell's arguments). No command
 * may define these letters or names for itself.
 */
enum { CLI_OPT_JSON = 0x100 };	/* the value of --json; commands' own start at 0x300 */

/* An option set with the global options added. */
struct cli_opts {
	char shorts[128];
	struct option longs[64];
};

/*
 * Fills o with shorts (getopt's string, leading '+' or ':' included) and
 * longopts (NULL-name terminated, or NULL), then the global options. 0, or
 * -1 when one of the given options hides a global one or o is too small
 * (an internal error, set).
 */
int cli_opts_merge(struct cli_opts *o, const char *shorts, const struct option *longopts);

/*
 * Applies c, a value getopt_long returned for the set cli_opts_merge
 * built, if it is a global option (arg: its optarg). 1 if it was, else 0.
 */
int cli_global(int c, const char *arg);

/* What cli_getopt returns besides option characters and -1. */
enum { CLI_HELP = -2, CLI_ERROR = -3 };

/*
 * getopt_long for a subcommand, with the project's conventions: -h/--help
 * prints `help` to stdout and returns CLI_HELP (the command returns 0);
 * an unknown option or a missing argument prints a one-line error naming
 * it, the nearest valid option, and a usage hint, then returns CLI_ERROR
 * (the command returns PS_EXIT_USAGE). The global options are applied
 * here (cli_global) and never returned. Options may follow operands (GNU
 * getopt's permutation) up to a "--". Leave optind at 0 before the first
 * call.
 */
int cli_getopt(int argc, char **argv, const char *shortopts,
	       const struct option *longopts, const char *help);

/*
 * Prints "pystrib: MSG", the usage line of `help` and "Try 'pystrib VERB
 * --help'."; returns PS_EXIT_USAGE.
 */
int cli_usage_error(const char *help, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The table, for `help` and suggestions. */
const struct cli_command *cli_find(const char *name);

#endif
