#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "cmdctx.h"
#include "commands.h"
#include "config.h"
#include "error.h"
#include "log.h"

const char cmd_config_help[] =
	"usage: pystrib config show [--remote NAME]\n"
	"       pystrib config get SECTION.KEY [--remote NAME]\n"
	"\n"
	"Shows the effective settings and where each comes from: the built-in\n"
	"default, FILE:LINE of the config file, an environment variable\n"
	"(PYSTRIB_<SECTION>_<KEY>) or a flag. Secrets are shown as ***.\n"
	"\n"
	"The config file is the first of: -c FILE, $PYSTRIB_CONFIG, ./pystrib.ini,\n"
	"$XDG_CONFIG_HOME/pystrib/config.ini (default ~/.config/pystrib/config.ini).\n"
	"config.ini.example documents every key.\n"
	"\n"
	"options:\n"
	"  -r, --remote NAME   resolve the [remote.NAME] section instead of [remote]\n"
	"      --json          print the settings as JSON (the global option)\n"
	"  -h, --help          show this help\n"
	"\n"
	"examples:\n"
	"  pystrib config show --remote gpu1\n"
	"  PYSTRIB_JOB_NP=4 pystrib config get job.np\n";

int cmd_config(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "remote", required_argument, 0, 'r' },
		{ "help", no_argument, 0, 'h' },
		{ 0, 0, 0, 0 },
	};
	struct cmd_ctx *ctx = cli.ctx;
	int c, ret = 0;

	while ((c = cli_getopt(argc, argv, "r:", opts, cmd_config_help)) != -1) {
		switch (c) {
		case CLI_HELP: return 0;
		case CLI_ERROR: return PS_EXIT_USAGE;
		case 'r': ctx->remote = optarg; break;
		}
	}
	const char *verb = optind < argc ? argv[optind] : NULL;
	if (!verb || (strcmp(verb, "show") && strcmp(verb, "get")))
		return cli_usage_error(cmd_config_help, verb ? "unknown config verb '%s'"
						     : "config needs a verb: show or get", verb);
	if (!strcmp(verb, "get") && optind + 2 != argc)
		return cli_usage_error(cmd_config_help, "config get takes one SECTION.KEY");
	if (cmd_setup(ctx, argc, argv) < 0)
		return cmd_report(ctx);
	if (!strcmp(verb, "show")) {
		config_show(&ctx->cfg, stdout, log_json);
	} else {
		const char *name = argv[optind + 1];
		if (!config_origin(&ctx->cfg, name)) {
			ret = cli_usage_error(cmd_config_help, "unknown setting '%s'", name);
		} else {
			const char *v = config_get(&ctx->cfg, name);
			/* Secrets are not printed here either: only whether one is set. */
			if (!strcmp(name, "registry.password") && v)
				v = "***";
			if (v)
				printf("%s\n", v);
			else
				ret = 1;
		}
	}
	return ret;
}
