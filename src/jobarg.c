#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "cli.h"
#include "error.h"
#include "jobarg.h"
#include "jobrec.h"

static void add_candidates(struct buf *msg, char **ids, size_t n, const char *prefix)
{
	size_t shown = 0;
	for (size_t i = 0; i < n && shown < 10; i++) {
		if (prefix && strncmp(ids[i], prefix, strlen(prefix)))
			continue;
		buf_addf(msg, "%s%s", shown ? ", " : "", ids[i]);
		shown++;
	}
}

/*
 * The newest record named arg (a session's --name), into r: 0; 1 when
 * none has that name; -1 with the error set.
 */
static int load_named(struct jobrec *r, const char *arg)
{
	struct jobrec *v = NULL;
	size_t n = 0;
	int ret = 1;

	if (jobrec_list(&v, &n) < 0)
		return -1;
	for (size_t i = 0; i < n && ret == 1; i++)
		if (v[i].name && !strcmp(v[i].name, arg))
			ret = jobrec_load(r, v[i].id);
	jobrec_list_free(v, n);
	return ret;
}

int jobrec_resolve(struct jobrec *r, const char *arg)
{
	char **ids = NULL;
	size_t n = 0, matches = 0, len, match = 0;
	struct buf msg = BUF_INIT;
	int ret = -1;

	jobrec_init(r);
	if (jobrec_ids(&ids, &n) < 0)
		goto out;
	if (!arg || !*arg) {
		error_set(PS_EXIT_USAGE, "an empty job id");
		goto hint;
	}
	if (!strcmp(arg, "last")) {
		if (!n) {
			error_set(PS_EXIT_USAGE, "no jobs yet: 'last' means nothing");
			error_hint("submit one with 'pystrib run FILE'");
			goto out;
		}
		ret = jobrec_load_newest(r);
		goto out;
	}
	len = strlen(arg);
	for (size_t i = 0; i < n; i++) {
		if (!strncmp(ids[i], arg, len)) {
			if (!strcmp(ids[i], arg)) {	/* exact wins */
				matches = 1;
				match = i;
				break;
			}
			if (!matches++)
				match = i;
		}
	}
	if (matches == 1) {
		ret = jobrec_load(r, ids[match]);
		goto out;
	}
	if (matches > 1) {
		add_candidates(&msg, ids, n, arg);
		error_set(PS_EXIT_USAGE, "job '%s' is ambiguous: %zu jobs match (%s%s)", arg,
			  matches, msg.ptr, matches > 10 ? ", ..." : "");
		error_hint("give more characters of the id");
		goto out;
	}
	if ((ret = load_named(r, arg)) != 1)
		goto out;
	ret = -1;
	error_set(PS_EXIT_USAGE, "no job '%s'", arg);
hint:
	if (n) {
		add_candidates(&msg, ids, n, NULL);
		error_hint("known jobs, newest first: %s%s; 'last' is the newest", msg.ptr,
			   n > 10 ? ", ..." : "");
	} else {
		char *dir = jobrec_dir();
		error_hint("there are no job records in '%s'", dir);
		free(dir);
	}
out:
	buf_release(&msg);
	jobrec_ids_free(ids, n);
	return ret;
}

const char *jobrec_job_arg(int argc, char **argv, const char *verb, const char *help)
{
	if (optind + 1 == argc)
		return argv[optind];
	if (optind < argc)
		cli_usage_error(help, "%s takes one JOB", verb);
	else
		cli_usage_error(help, "%s needs a JOB (an id, a prefix, or 'last')", verb);
	return NULL;
}
