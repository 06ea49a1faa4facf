#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "cli.h"
#include "commands.h"
#include "config.h"
#include "context.h"
#include "error.h"
#include "jobfmt.h"
#include "jobrec.h"
#include "jobremote.h"
#include "jobstate.h"
#include "log.h"
#include "shquote.h"
#include "ssh.h"
#include "util.h"

#define GC_DEFAULT_DAYS 7

const char cmd_gc_help[] =
	"usage: pystrib gc [--older-than DAYS] [--remote NAME]\n"
	"\n"
	"Removes the jobs that have ended (succeeded, failed, timeout, cancelled,\n"
	"lost) more than DAYS days ago: their directory on the remote host, with\n"
	"its results and logs, and their local record. A job that has not ended is\n"
	"never removed: its state is asked from its remote host first, and a job\n"
	"whose host cannot be reached is kept. Results already fetched to this\n"
	"machine are not touched.\n"
	"\n"
	"Without --remote it also removes the cell and project layers in the local\n"
	"layer cache ($XDG_CACHE_HOME/pystrib/layers) that no build has used for\n"
	"DAYS days (never one used in the last hour); a later build writes them\n"
	"again when needed.\n"
	"\n"
	"options:\n"
	"      --older-than DAYS  only jobs that ended at least DAYS days ago\n"
	"                         (default 7; 0: every job that has ended)\n"
	"      --remote NAME      only the jobs of [remote.NAME] ('default' for [remote]),\n"
	"                         and not the layer cache\n"
	"  -n, --dry-run          say what would be removed, remove nothing\n"
	"  -h, --help             show this help\n"
	"\n"
	"A job whose remote is no longer configured loses only its local record.\n"
	"Exit code 4 when some jobs were kept because their host was not reached.\n"
	"\n"
	"examples:\n"
	"  pystrib gc\n"
	"  pystrib gc --older-than 0 --remote gpu1\n";

/* Only a job directory of pystrib's is ever removed: ".../jobs/<id>". */
static int jobdir_ok(const char *dir, const char *id)
{
	size_t n = strlen(dir), m = strlen(id);
	return n > m + 6 && !strcmp(dir + n - m, id) && !strncmp(dir + n - m - 6, "/jobs/", 6);
}

static int remove_remote(struct ssh_conn *conn, const char *dir, const char *id)
{
	struct buf cmd = BUF_INIT, out = BUF_INIT;
	int ret;

	if (!jobdir_ok(dir, id))
		return error_set(PS_EXIT_USAGE, "job '%s' has an unexpected directory '%s': not removed",
				 id, dir);
	/* A job over several hosts has a directory of the same path on each
	 * of the others (their names in `peers`, run.sh's): the first host
	 * reaches them as the job did. One that cannot be reached keeps its. */
	buf_addstr(&cmd, "d=");
	shquote_path(&cmd, dir);
	buf_addstr(&cmd, "; if [ -f \"$d/peers\" ]; then q=$(printf '%s' \"$d\" | sed \"s/'/'\\\\\\\\''/g\"); "
		   "while IFS= read -r h; do ssh -o BatchMode=yes -o ConnectTimeout=10 \"$h\" "
		   "\"rm -rf -- '$q'\" </dev/null >/dev/null 2>&1; done < \"$d/peers\"; fi; rm -rf -- \"$d\"");
	ret = ssh_conn_run(conn, cmd.ptr, "rm", &out);
	buf_release(&cmd);
	buf_release(&out);
	return ret;
}

static double ended_at(const struct jobrec *r)
{
	if (r->ended > 0)
		return r->ended;
	if (r->checked > 0 && r->state && !strcmp(r->state, "lost"))
		return r->checked;
	return r->created;
}

struct gc {
	struct jobrec_conns *cc;
	double cutoff;
	int dry_run;
	size_t removed, kept_running, kept_unreachable, kept_unconfigured;
};

/* One job: removed, kept, or an error. 0 or -1. */
static int gc_one(struct gc *g, struct jobrec *r)
{
	const struct config *cfg;
	const char *why;
	struct ssh_conn *conn;
	char *dir = NULL;
	char t[64];
	int kind, ret = -1;

	/* Ended recently: not a candidate, and no connection needed. */
	if (job_state_final(r->state) && ended_at(r) > g->cutoff)
		return 0;
	conn = jobrec_conns_get(g->cc, r, &cfg, &why, &kind);
	if (conn && !job_state_final(r->state) && jobrec_check(conn, cfg, r) < 0) {
		log_warn("kept job '%s': %s", r->id, error_message());
		error_clear();
		g->kept_unreachable++;
		return 0;
	}
	if (!job_state_final(r->state)) {
		if (!conn) {
			log_warn("kept job '%s' (last known %s): %s", r->id,
				 r->state ? r->state : "unknown", why);
			if (kind == PS_EXIT_USAGE)
				g->kept_unconfigured++;
			else
				g->kept_unreachable++;
		} else {
			g->kept_running++;
		}
		return 0;
	}
	if (ended_at(r) > g->cutoff)
		return 0;
	if (!conn && kind != PS_EXIT_USAGE) {
		log_warn("kept job '%s': %s", r->id, why);
		g->kept_unreachable++;
		return 0;
	}
	dir = jobrec_remote_dir(r, cfg);
	if (!conn)
		log_warn("job '%s': %s; only its local record is removed (its directory '%s' stays)",
			 r->id, why, dir);
	else if (!g->dry_run && remove_remote(conn, dir, r->id) < 0)
		goto out;
	if (!g->dry_run && jobrec_remove(r->id) < 0)
		goto out;
	g->removed++;
	if (!log_json)
		printf("%s %s (%s, ended %s)\n", g->dry_run ? "would remove" : "removed", r->id,
		       r->state, jobrec_fmt_time(t, sizeof(t), ended_at(r)));
	event_emit("removed", "{s:s,s:s,s:b}", "id", r->id, "state", r->state,
		   "dry_run", g->dry_run);
	ret = 0;
out:
	free(dir);
	return ret;
}

int cmd_gc(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "older-than", required_argument, 0, 'o' },
		{ "remote", required_argument, 0, 'r' },
		{ "dry-run", no_argument, 0, 'n' },
		{ "help", no_argument, 0, 'h' },
		{ 0, 0, 0, 0 },
	};
	struct gc g = { 0 };
	struct jobrec *v = NULL;
	const char *remote = NULL;
	long days = GC_DEFAULT_DAYS;
	size_t n = 0;
	int c, ret = 0;

	while ((c = cli_getopt(argc, argv, "n", opts, cmd_gc_help)) != -1) {
		if (c == CLI_HELP || c == CLI_ERROR)
			return c == CLI_HELP ? 0 : PS_EXIT_USAGE;
		if (c == 'o' && parse_long(optarg, 0, 100000, &days) < 0)
			return cli_usage_error(cmd_gc_help, "--older-than wants a number of days, not '%s'",
					       optarg);
		if (c == 'r')
			remote = optarg;
		if (c == 'n')
			g.dry_run = 1;
	}
	if (optind != argc)
		return cli_usage_error(cmd_gc_help, "gc takes no arguments");
	if (jobrec_list(&v, &n) < 0)
		return error_report();
	g.cc = jobrec_conns_new(cli.config_file);
	g.cutoff = now_wall() - (double)days * 86400;
	for (size_t i = 0; i < n; i++) {
		if (remote && strcmp(remote, v[i].remote ? v[i].remote : "default"))
			continue;
		if (gc_one(&g, &v[i]) < 0) {
			ret = error_report();
			error_clear();
		}
	}
	if (!log_json)
		printf("%zu job%s %s; kept: %zu not ended, %zu on hosts not reached, "
		       "%zu on remotes no longer configured\n", g.removed,
		       g.removed == 1 ? "" : "s", g.dry_run ? "would be removed" : "removed",
		       g.kept_running, g.kept_unreachable, g.kept_unconfigured);
	if (!remote) {
		char *cache = context_cache_dir();
		struct context_pruned pr;
		context_cache_prune(cache, (double)days * 86400, g.dry_run, &pr);
		if (!log_json)
			printf("%u cached layer%s (%.1f MiB) %s from '%s'\n", pr.files,
			       pr.files == 1 ? "" : "s", (double)pr.bytes / (1 << 20),
			       g.dry_run ? "would be removed" : "removed", cache);
		event_emit("pruned", "{s:s,s:i,s:I,s:b}", "cache", cache, "layers", (int)pr.files,
			   "bytes", (json_int_t)pr.bytes, "dry_run", g.dry_run);
		free(cache);
	}
	if (!ret && g.kept_unreachable)
		ret = PS_EXIT_REMOTE;
	jobrec_conns_free(g.cc);
	jobrec_list_free(v, n);
	return ret;
}
