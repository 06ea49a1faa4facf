#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "commands.h"
#include "config.h"
#include "context.h"
#include "error.h"
#include "log.h"
#include "push.h"
#include "ref.h"

const char cmd_push_help[] =
	"usage: pystrib push FILE [-t TAG] [--base IMAGE] [--platform P]\n"
	"                    [--project DIR | --no-project] [--input PATH]...\n"
	"\n"
	"Builds the image of the cell FILE and pushes it to [registry] url and\n"
	"repository, with no Docker daemon: the base image ([image] base; from a\n"
	"multi-platform index, the [image] platform one) with two layers on top, the\n"
	"project (the files of the git work tree holding FILE, as for 'pystrib\n"
	"build') and the cell (FILE as user_code.py, the rank bootstrap, the inputs).\n"
	"Only the blobs the registry lacks are sent; base layers are mounted from the\n"
	"base's repository when it is on the same registry. The manifest goes up\n"
	"after every blob and the tag after the manifest, so an interrupted push\n"
	"tags nothing. An unchanged cell pushed again sends no blob at all.\n"
	"\n"
	"Prints the image pinned by digest, REGISTRY/REPO@sha256:..., on stdout (the\n"
	"form docker, podman and skopeo all pull), and its tag on stderr. The default\n"
	"tag is FILE's name without .py and the first 12 hex digits of the manifest\n"
	"digest (train-1a2b3c4d5e6f): the same content always gets the same tag, and\n"
	"a changed cell a new one.\n"
	"\n"
	"options:\n"
	"  -t, --tag TAG       tag the image TAG instead\n"
	CONTEXT_OPTIONS_HELP
	"      --base IMAGE    the base image (default: [image] base)\n"
	"      --platform P    os/arch[/variant] to pick from a multi-platform base\n"
	"                      (default: [image] platform)\n"
	"  -h, --help          show this help\n"
	"\n"
	"A progress bar per blob on a terminal; -v says what was sent on a pipe. With\n"
	"the global --json, stdout has {\"event\":\"blob\"} lines and a last\n"
	"{\"event\":\"pushed\"} with the reference, the digest and what was uploaded.\n"
	"\n"
	"exit codes: 0 pushed, 2 usage or configuration error, 3 registry error,\n"
	"130 interrupted (nothing tagged)\n"
	"\n"
	"examples:\n"
	"  pystrib push train.py\n"
	"  pystrib push cell.py --no-project --input data.csv -t exp-42\n"
	"  docker run --rm \"$(pystrib push train.py)\"\n";

enum { OPT_BASE = 0x500, OPT_PLATFORM };

int cmd_push(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "tag", required_argument, 0, 't' },
		CONTEXT_LONG_OPTIONS,
		{ "base", required_argument, 0, OPT_BASE },
		{ "platform", required_argument, 0, OPT_PLATFORM },
		{ "help", no_argument, 0, 'h' },
		{ 0, 0, 0, 0 },
	};
	struct context_options copts = { 0 };
	struct context ctx;
	struct pushed_image img;
	struct config cfg;
	const char *tag = NULL, *base = NULL, *platform = NULL;
	char *cache = NULL;
	int c, r, ret, have_ctx = 0, have_img = 0;

	memset(&cfg, 0, sizeof(cfg));
	memset(&ctx, 0, sizeof(ctx));
	while ((c = cli_getopt(argc, argv, "t:", opts, cmd_push_help)) != -1) {
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
		if (c == 't')
			tag = optarg;
		else if (c == OPT_BASE)
			base = optarg;
		else if (c == OPT_PLATFORM)
			platform = optarg;
	}
	if (optind + 1 != argc) {
		ret = cli_usage_error(cmd_push_help, optind < argc ? "push takes one FILE"
								  : "push needs the cell FILE");
		goto out;
	}
	if (tag && !ref_tag_valid(tag)) {
		ret = cli_usage_error(cmd_push_help, "invalid tag '%s': up to 128 letters, digits, "
				      "'_', '.' and '-', not starting with '.' or '-'", tag);
		goto out;
	}
	if (config_load(&cfg, cli.config_file, NULL) < 0 ||
	    (base && config_set(&cfg, "image.base", base, "flag --base") < 0) ||
	    (platform && config_set(&cfg, "image.platform", platform, "flag --platform") < 0)) {
		ret = error_report();
		goto out;
	}
	copts.cell = argv[optind];
	copts.base = cfg.image.base;
	if (access(copts.cell, R_OK) < 0) {
		error_set(PS_EXIT_USAGE, "cannot read '%s': %s", copts.cell, strerror(errno));
		ret = error_report();
		goto out;
	}
	cache = context_cache_dir();
	if (context_build(&ctx, &copts, cache) < 0) {
		ret = error_report();
		goto out;
	}
	have_ctx = 1;
	if (push_image_as(&cfg, &ctx, tag, copts.cell, &img) < 0) {
		ret = error_report();
		goto out;
	}
	have_img = 1;
	if (!log_json) {
		printf("%s\n", img.pinned);
		fprintf(stderr, "pystrib: tagged %.*s\n", (int)strcspn(img.reference, "@"),
			img.reference);
	}
	ret = 0;
out:
	if (have_img)
		pushed_image_release(&img);
	if (have_ctx)
		context_release(&ctx);
	free(cache);
	config_release(&cfg);
	context_options_release(&copts);
	return ret;
}
