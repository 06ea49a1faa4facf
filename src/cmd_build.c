#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "config.h"
#include "context.h"
#include "error.h"
#include "log.h"

const char cmd_build_help[] =
	"usage: pystrib build FILE [-o OUT.tar] [--project DIR | --no-project] [--input PATH]...\n"
	"\n"
	"Writes a Docker build context for the cell FILE: a Dockerfile (FROM the\n"
	"configured base image), project/ with the files of the git work tree\n"
	"holding FILE (tracked files and untracked ones git does not ignore,\n"
	"minus what .pystribignore lists; never .git), and cell/ with FILE as\n"
	"user_code.py, the rank bootstrap and the inputs. `docker build - < OUT.tar`\n"
	"gives an image that runs the cell exactly as the one `pystrib push` makes.\n"
	"The tarball is deterministic: the same files give the same bytes.\n"
	"\n"
	"options:\n"
	"  -o, --output OUT    where to write the tarball (default ./pystrib-context.tar;\n"
	"                      '-' for stdout)\n"
	CONTEXT_OPTIONS_HELP
	"      --base IMAGE    the base image for FROM (default: [image] base)\n"
	"  -h, --help          show this help\n"
	"\n"
	"With the global --json, a {\"event\":\"context\"} line reports the project's\n"
	"file count, size and git revision.\n"
	"\n"
	"examples:\n"
	"  pystrib build train.py -o ctx.tar && docker build -t train - < ctx.tar\n"
	"  pystrib build cell.py --no-project --input data.csv -o - | docker build -t cell -\n";

int cmd_build(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "output", required_argument, 0, 'o' },
		CONTEXT_LONG_OPTIONS,
		{ "base", required_argument, 0, 'B' },
		{ "help", no_argument, 0, 'h' },
		{ 0, 0, 0, 0 },
	};
	struct context_options copts = { 0 };
	struct config cfg;
	const char *out = "pystrib-context.tar";
	const char *base = NULL;
	int c, r, ret;

	memset(&cfg, 0, sizeof(cfg));
	while ((c = cli_getopt(argc, argv, "o:", opts, cmd_build_help)) != -1) {
		if (c == CLI_HELP || c == CLI_ERROR) {
			ret = c == CLI_HELP ? 0 : PS_EXIT_USAGE;
			goto out;
		}
		if ((r = context_option(&copts, c, optarg)) < 0) {
			ret = error_report();
			goto out;
		}
		if (r > 0)
			continue;
		if (c == 'o')
			out = optarg;
		else if (c == 'B')
			base = optarg;
	}
	if (optind + 1 != argc) {
		ret = cli_usage_error(cmd_build_help, optind < argc ? "build takes one FILE"
								   : "build needs the cell FILE");
		goto out;
	}
	if (!strcmp(out, "-") && log_json) {
		ret = cli_usage_error(cmd_build_help,
				      "--json and -o - both want stdout; write the tarball to a file");
		goto out;
	}
	if (config_load(&cfg, cli.config_file, NULL) < 0 ||
	    (base && config_set(&cfg, "image.base", base, "flag --base") < 0)) {
		ret = error_report();
		goto out;
	}
	copts.cell = argv[optind];
	copts.base = cfg.image.base;
	ret = context_write_build_tar(&copts, out) < 0 ? error_report() : 0;
out:
	config_release(&cfg);
	context_options_release(&copts);
	return ret;
}
