#include <stdio.h>
#include <stdlib.h>
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
	"       pystrib config init [--remote NAME] [--force]\n"
	"\n"
	"Shows the effective settings and where each comes from: the built-in\n"
	"default, FILE:LINE of the config file, an environment variable\n"
	"(PYSTRIB_<SECTION>_<KEY>) or a flag. Secrets are shown as ***. With no\n"
	"config file, show lists the files it looked for.\n"
	"\n"
	"init writes a commented starter config to -c FILE, else to\n"
	"$XDG_CONFIG_HOME/pystrib/config.ini, with what it can find out: the user,\n"
	"a key in ~/.ssh, and the hosts of ~/.ssh/config (as commented\n"
	"[remote.NAME] sections). It never replaces a file without --force.\n"
	"\n"
	"The config file is the first of: -c FILE, $PYSTRIB_CONFIG, ./pystrib.ini,\n"
	"$XDG_CONFIG_HOME/pystrib/config.ini (default ~/.config/pystrib/config.ini).\n"
	"config.ini.example documents every key.\n"
	"\n"
	"options:\n"
	"  -r, --remote NAME   resolve the [remote.NAME] section instead of [remote]\n"
	"                      (init: write [remote.NAME])\n"
	"  -f, --force         init: replace an existing config file\n"
	"      --json          print the settings as JSON (the global option)\n"
	"  -h, --help          show this help\n"
	"\n"
	"examples:\n"
	"  pystrib config show --remote gpu1\n"
	"  pystrib config init --remote gpu1\n"
	"  PYSTRIB_JOB_NP=4 pystrib config get job.np\n";

static int init(const char *remote, int force)
{
	char *path = config_init_path(cli.config_file);
	int ret = config_init(path, remote, force);

	if (ret == 0)
		fprintf(stderr, "pystrib: wrote '%s': fill in what it leaves commented (the"
			" remote host, the registry, the base image), then run 'pystrib%s%s doctor%s%s'\n",
			path, cli.config_file ? " -c " : "", cli.config_file ? cli.config_file : "",
			remote ? " --remote " : "", remote ? remote : "");
	free(path);
	return ret < 0 ? error_report() : 0;
}

int cmd_config(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "remote", required_argument, 0, 'r' },
		{ "force", no_argument, 0, 'f' },
		{ "help", no_argument, 0, 'h' },
		{ 0, 0, 0, 0 },
	};
	struct cmd_ctx *ctx = cli.ctx;
	int c, ret = 0, force = 0;

	while ((c = cli_getopt(argc, argv, "r:f", opts, cmd_config_help)) != -1) {
		switch (c) {
		case CLI_HELP: return 0;
		case CLI_ERROR: return PS_EXIT_USAGE;
		case 'r': ctx->remote = optarg; break;
		case 'f': force = 1; break;
		}
	}
	const char *verb = optind < argc ? argv[optind] : NULL;
	if (!verb || (strcmp(verb, "show") && strcmp(verb, "get") && strcmp(verb, "init")))
		return cli_usage_error(cmd_config_help, verb ? "unknown config verb '%s'"
						     : "config needs a verb: show, get or init", verb);
	if (!strcmp(verb, "init")) {
		if (optind + 1 != argc)
			return cli_usage_error(cmd_config_help, "config init takes no arguments");
		/* The config there may be broken or absent: init reads none. */
		return init(ctx->remote, force);
	}
	if (force)
		return cli_usage_error(cmd_config_help, "--force is for config init");
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
