#include <archive.h>
#include <curl/curl.h>
#include <getopt.h>
#include <git2.h>
#include <jansson.h>
#include <libssh/libssh.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cmdctx.h"
#include "commands.h"
#include "error.h"
#include "log.h"
#include "results.h"
#include "util.h"

static const struct cli_command commands[] = {
#define X(verb, needs, summary) { #verb, cmd_##verb, needs, summary, cmd_##verb##_help },
	PYSTRIB_COMMANDS(X)
#undef X
};

static const char usage[] =
	"usage: pystrib [-c FILE] [-v] [--json] COMMAND [ARGS]\n";

static const char exit_codes[] =
	"exit codes:\n"
	"  0    success\n"
	"  1    the job ran and a rank failed\n"
	"  2    usage or configuration error\n"
	"  3    registry error\n"
	"  4    SSH or remote-host error\n"
	"  5    timeout\n"
	"  6    local I/O error: a file, pipe or write on this machine failed\n"
	"  130  interrupted\n";

const struct cli_command *cli_find(const char *name)
{
	for (size_t i = 0; i < ARRAY_SIZE(commands); i++)
		if (!strcmp(commands[i].name, name))
			return &commands[i];
	return NULL;
}

static void print_help(void)
{
	printf("%s\n"
	       "Runs a Python file (a saved notebook cell) as N MPI ranks on a remote GPU\n"
	       "host inside a container image, streams each rank's output back, and\n"
	       "fetches the files it wrote. No Docker daemon is needed on this machine.\n"
	       "\n"
	       "global options (before or after the command, not after a '--'):\n"
	       "  -c, --config FILE   read settings from FILE\n"
	       "  -v, --verbose       say more (-vv: debug)\n"
	       "      --json          machine-readable output: one JSON event per line\n"
	       "      --version       print versions of pystrib and its libraries\n"
	       "  -h, --help          show this help\n"
	       "\n"
	       "commands:\n", usage);
	for (size_t i = 0; i < ARRAY_SIZE(commands); i++)
		printf("  %-10s %s\n", commands[i].name, commands[i].summary);
	printf("\n%s\n"
	       "'pystrib help COMMAND' or 'pystrib COMMAND --help' explains one command.\n",
	       exit_codes);
}

static void print_version(void)
{
	git_libgit2_init();
	int major, minor, rev;
	git_libgit2_version(&major, &minor, &rev);
	printf("pystrib %s\n", PYSTRIB_VERSION);
	printf("  libssh %s\n", ssh_version(0));
	printf("  libcurl %s\n", curl_version_info(CURLVERSION_NOW)->version);
	printf("  %s\n", archive_version_details());
	printf("  jansson %s\n", jansson_version_str());
	printf("  libgit2 %d.%d.%d\n", major, minor, rev);
	printf("  inih r%s\n", PYSTRIB_INIH_VERSION);
	printf("  %s\n", OpenSSL_version(OPENSSL_VERSION));
	git_libgit2_shutdown();
}

static int unknown_command(const char *name)
{
	const char *names[ARRAY_SIZE(commands) + 1];
	for (size_t i = 0; i < ARRAY_SIZE(commands); i++)
		names[i] = commands[i].name;
	names[ARRAY_SIZE(commands)] = "help";
	const char *near = closest_word(name, names, ARRAY_SIZE(names));
	if (near)
		fprintf(stderr, "pystrib: '%s' is not a pystrib command; did you mean '%s'?\n",
			name, near);
	else
		fprintf(stderr, "pystrib: '%s' is not a pystrib command\n", name);
	fprintf(stderr, "%sTry 'pystrib --help'.\n", usage);
	return PS_EXIT_USAGE;
}

static int cmd_help(int argc, char **argv)
{
	if (argc < 2) {
		print_help();
		return 0;
	}
	const struct cli_command *c = cli_find(argv[1]);
	if (!c)
		return unknown_command(argv[1]);
	fputs(c->help, stdout);
	return 0;
}

/* Runs the command with its context (cmdctx.h), released after it. */
static int run_command(const struct cli_command *cmd, int argc, char **argv)
{
	struct cmd_ctx ctx;
	int ret;

	/* Before the command reads any credential: see results.h. */
	if ((cmd->needs & NEED_UNPACKER) && results_unpacker_start() < 0) {
		log_warn("%s (results are unpacked by this process's own children)",
			 error_message());
		error_clear();
	}
	cmd_ctx_init(&ctx, cmd->name, cmd->help, cmd->needs);
	cli.ctx = &ctx;
	ret = cmd->fn(argc, argv);
	cli.ctx = NULL;
	cmd_ctx_release(&ctx);
	results_unpacker_stop();
	return ret;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "version", no_argument, 0, 'V' },
		{ "help", no_argument, 0, 'h' },
		{ 0, 0, 0, 0 },
	};
	struct cli_opts o;
	int c;

	/* '+': stop at the command; the global options may come again among its own. */
	if (cli_opts_merge(&o, "+:h", opts) < 0)
		return error_report();
	opterr = 0;
	while ((c = getopt_long(argc, argv, o.shorts, o.longs, NULL)) != -1) {
		if (cli_global(c, optarg))
			continue;
		switch (c) {
		case 'V': print_version(); return 0;
		case 'h': print_help(); return 0;
		case ':':
			fprintf(stderr, "pystrib: option '%s' needs a value\n%s", argv[optind - 1], usage);
			return PS_EXIT_USAGE;
		default: {
			const char *arg = argv[optind - 1];
			if (arg[0] == '-' && arg[1] == '-')
				fprintf(stderr, "pystrib: unknown option '%s'\n", arg);
			else
				fprintf(stderr, "pystrib: unknown option '-%c'\n", optopt);
			fprintf(stderr, "%sTry 'pystrib --help'.\n", usage);
			return PS_EXIT_USAGE;
		}
		}
	}
	if (optind >= argc) {
		print_help();
		return PS_EXIT_USAGE;
	}
	argc -= optind;
	argv += optind;
	optind = 0;	/* glibc: re-initialise getopt for the command */

	if (!strcmp(argv[0], "help"))
		return cmd_help(argc, argv);
	const struct cli_command *cmd = cli_find(argv[0]);
	if (!cmd)
		return unknown_command(argv[0]);
	install_interrupt_handler();
	return run_command(cmd, argc, argv);
}
