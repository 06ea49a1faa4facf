#include "cli.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "log.h"
#include "util.h"

struct cli_globals cli;

static const char global_shorts[] = "c:v";
static const struct option global_longs[] = {
	{ "config", required_argument, 0, 'c' },
	{ "verbose", no_argument, 0, 'v' },
	{ "json", no_argument, 0, CLI_OPT_JSON },
};

int cli_global(int c, const char *arg)
{
	switch (c) {
	case 'c': cli.config_file = arg; return 1;
	case 'v': log_verbosity++; return 1;
	case CLI_OPT_JSON: log_json = 1; return 1;
	}
	return 0;
}

/* The global option that the option letter or long option hides, or NULL. */
static const char *hidden_global(int letter, const struct option *lo)
{
	for (size_t i = 0; i < ARRAY_SIZE(global_longs); i++) {
		const struct option *g = &global_longs[i];
		if (letter ? letter == g->val
			   : lo->val == g->val || !strcmp(lo->name, g->name))
			return g->name;
	}
	return NULL;
}

int cli_opts_merge(struct cli_opts *o, const char *shorts, const struct option *longopts)
{
	size_t n = 0;
	const char *g;

	for (const char *p = shorts; *p; p++)
		if (*p != ':' && *p != '+' && (g = hidden_global((unsigned char)*p, NULL)))
			return error_set(PS_EXIT_USAGE, "internal error: option '-%c' hides the "
					 "global '--%s'", *p, g);
	if ((size_t)snprintf(o->shorts, sizeof(o->shorts), "%s%s", shorts, global_shorts) >=
	    sizeof(o->shorts))
		return error_set(PS_EXIT_USAGE, "internal error: too many options");
	for (const struct option *lo = longopts; lo && lo->name; lo++) {
		if ((g = hidden_global(0, lo)))
			return error_set(PS_EXIT_USAGE, "internal error: option '--%s' hides the "
					 "global '--%s'", lo->name, g);
		if (n + ARRAY_SIZE(global_longs) + 1 >= ARRAY_SIZE(o->longs))
			return error_set(PS_EXIT_USAGE, "internal error: too many options");
		o->longs[n++] = *lo;
	}
	for (size_t i = 0; i < ARRAY_SIZE(global_longs); i++)
		o->longs[n++] = global_longs[i];
	memset(&o->longs[n], 0, sizeof(o->longs[n]));
	return 0;
}

/*
 * The first line of a help text, which is its usage line, and where to
 * read the rest: "Try 'pystrib VERB --help'." (VERB from that line).
 */
static void print_usage_line(const char *help)
{
	static const char lead[] = "usage: pystrib ";
	size_t n = strcspn(help, "\n");

	fprintf(stderr, "%.*s\n", (int)n, help);
	if (!strncmp(help, lead, sizeof(lead) - 1) && help[sizeof(lead) - 1] >= 'a' &&
	    help[sizeof(lead) - 1] <= 'z') {
		const char *verb = help + sizeof(lead) - 1;
		fprintf(stderr, "Try 'pystrib %.*s --help'.\n", (int)strcspn(verb, " \n"), verb);
	}
}

int cli_usage_error(const char *help, const char *fmt, ...)
{
	va_list ap;
	fputs("pystrib: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	if (help)
		print_usage_line(help);
	return PS_EXIT_USAGE;
}

static const char *nearest_option(const char *arg, const struct option *longopts)
{
	const char *cands[64];
	size_t n = 0;
	for (const struct option *o = longopts; o && o->name && n < ARRAY_SIZE(cands); o++)
		cands[n++] = o->name;
	const char *word = arg;
	while (*word == '-')
		word++;
	char *name = xstrndup(word, strcspn(word, "="));
	const char *near = closest_word(name, cands, n);
	free(name);
	return near;
}

int cli_getopt(int argc, char **argv, const char *shortopts,
	       const struct option *longopts, const char *help)
{
	static const struct option help_only[] = { { "help", no_argument, 0, 'h' }, { 0, 0, 0, 0 } };
	struct cli_opts o;
	char shorts[128];
	int c, idx;

	/* Leading ':' makes getopt report a missing argument as ':'. */
	snprintf(shorts, sizeof(shorts), ":%sh", shortopts);
	if (cli_opts_merge(&o, shorts, longopts ? longopts : help_only) < 0) {
		error_report();
		return CLI_ERROR;
	}
	opterr = 0;
	do {
		idx = -1;
		c = getopt_long(argc, argv, o.shorts, o.longs, &idx);
	} while (cli_global(c, optarg));
	if (c == 'h' || (c == 0 && idx >= 0 && !strcmp(o.longs[idx].name, "help"))) {
		fputs(help, stdout);
		return CLI_HELP;
	}
	if (c == '?' || c == ':') {
		const char *arg = argv[optind - 1];
		int is_long = arg && arg[0] == '-' && arg[1] == '-';
		if (c == ':') {
			if (is_long)
				cli_usage_error(help, "option '%s' needs a value", arg);
			else
				cli_usage_error(help, "option '-%c' needs a value", optopt);
		} else if (is_long) {
			const char *near = nearest_option(arg, o.longs);
			if (near)
				cli_usage_error(help, "unknown option '%s'; did you mean '--%s'?", arg, near);
			else
				cli_usage_error(help, "unknown option '%s'", arg);
		} else {
			cli_usage_error(help, "unknown option '-%c'", optopt);
		}
		return CLI_ERROR;
	}
	return c;
}
