#include "cli.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "util.h"

struct cli_globals cli;

/* The first line of a help text, which is its usage line. */
static void print_usage_line(const char *help)
{
	size_t n = strcspn(help, "\n");
	fprintf(stderr, "%.*s\n", (int)n, help);
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
	char shorts[128];
	/* Leading ':' makes getopt report a missing argument as ':'; '+' stops at the first operand only after "--". */
	snprintf(shorts, sizeof(shorts), ":%sh", shortopts);
	const struct option *lo = longopts ? longopts : help_only;

	opterr = 0;
	int idx = -1;
	int c = getopt_long(argc, argv, shorts, lo, &idx);
	if (c == 'h' || (c == 0 && idx >= 0 && !strcmp(lo[idx].name, "help"))) {
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
			const char *near = nearest_option(arg, lo);
			if (near)
				cli_usage_error(help, "unknown option '%s'; did you mean '--%s'?", arg, near);
			else
				cli_usage_error(help, "unknown option '%s'", arg);
		} else {
			cli_usage_error(help, "unknown option '-%c'", optopt);
		}
		fprintf(stderr, "Try 'pystrib %s --help'.\n", argv[0]);
		return CLI_ERROR;
	}
	return c;
}
