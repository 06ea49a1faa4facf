#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "config.h"
#include "error.h"
#include "jobfmt.h"
#include "jobrec.h"
#include "jobremote.h"
#include "jobstate.h"
#include "buf.h"
#include "log.h"
#include "slurm.h"
#include "util.h"

/* Without --all, the newest this many. */
#define JOBS_SHOWN 20

const char cmd_jobs_help[] =
	"usage: pystrib jobs [--remote NAME] [--all]\n"
	"\n"
	"Lists the jobs submitted from this machine, newest first: id, remote,\n"
	"state, ranks, start time, duration and image tag. The state of every job\n"
	"not yet ended is asked from its remote host (one connection per remote);\n"
	"when a host cannot be reached, the last known state is shown with a '?'\n"
	"and the reason is printed below the table. A job whose directory was\n"
	"removed on the remote host shows as 'lost'. A job under Slurm ends its line\n"
	"with its Slurm job id, and, while pending, Slurm's reason.\n"
	"\n"
	"The records are in $XDG_STATE_HOME/pystrib/jobs/ (~/.local/state/...).\n"
	"\n"
	"options:\n"
	"      --remote NAME   only the jobs of [remote.NAME] ('default' for [remote])\n"
	"  -a, --all           every job (default: the newest 20)\n"
	"  -h, --help          show this help\n"
	"\n"
	"With the global --json, one {\"event\":\"job\"} line per job, with id, remote,\n"
	"host, np, image, runtime, state, stale (true when the remote was not\n"
	"reached), reason, exit_code, created, started, ended, duration, slurm_id.\n"
	"\n"
	"examples:\n"
	"  pystrib jobs\n"
	"  pystrib jobs --remote gpu1 --all\n";

static double duration_of(const struct jobrec *r)
{
	if (r->started <= 0)
		return -1;
	if (r->ended > 0)
		return r->ended - r->started;
	if (job_state_final(r->state))
		return -1;
	return now_wall() - r->started;
}

static void emit(const struct jobrec *r, int stale, const char *why)
{
	event_emit("job", "{s:s,s:s?,s:s?,s:s?,s:i,s:s?,s:s?,s:s?,s:b,s:s?,s:o,s:f,s:f,s:f,s:f,s:s?}",
		   "id", r->id, "kind", r->kind, "remote", r->remote, "host", r->host_name, "np", r->np,
		   "image", r->image, "runtime", r->runtime, "state", r->state, "stale", stale,
		   "reason", stale ? why : r->state_reason,
		   "exit_code", r->exit_code >= 0 ? json_integer(r->exit_code) : json_null(),
		   "created", r->created, "started", r->started, "ended", r->ended,
		   "duration", duration_of(r), "slurm_id", r->slurm_id);
}

static void row(const struct jobrec *r, int stale)
{
	char state[64], started[32], dur[32], tag[64], kind[80];

	snprintf(state, sizeof(state), "%s%s", r->state ? r->state : "unknown", stale ? "?" : "");
	jobrec_fmt_time(started, sizeof(started), r->started > 0 ? r->started : r->created);
	jobrec_fmt_duration(dur, sizeof(dur), duration_of(r));
	jobrec_image_tag(tag, sizeof(tag), r->image);
	/* A session says so where a job names its image. */
	snprintf(kind, sizeof(kind), "%s%s", r->kind && !strcmp(r->kind, "session") ? "session " : "",
		 tag);
	if (!strcmp(kind, "session -"))
		kind[7] = '\0';
	printf("%-22s  %-12s  %-10s  %5d  %-19s  %8s  %s", r->id, jobrec_remote_label(r),
	       state, r->np, started, dur, kind);
	/* Slurm's job id, and why a pending job waits. */
	int why = r->state_reason && r->state && !strcmp(r->state, "pending");
	if (r->slurm_id)
		printf("  slurm %s%s%s%s", r->slurm_id, why ? " (" : "", why ? r->state_reason : "",
		       why ? ")" : "");
	printf("\n");
}

int cmd_jobs(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "remote", required_argument, 0, 'r' },
		{ "all", no_argument, 0, 'a' },
		{ "help", no_argument, 0, 'h' },
		{ 0, 0, 0, 0 },
	};
	struct jobrec *v = NULL;
	struct jobrec_conns *cc = NULL;
	struct buf notes = BUF_INIT;
	const char *remote = NULL;
	size_t n = 0, shown = 0, hidden = 0;
	int all = 0, c, ret = 0, header = 0;

	while ((c = cli_getopt(argc, argv, "a", opts, cmd_jobs_help)) != -1) {
		if (c == CLI_HELP || c == CLI_ERROR)
			return c == CLI_HELP ? 0 : PS_EXIT_USAGE;
		if (c == 'r')
			remote = optarg;
		else if (c == 'a')
			all = 1;
	}
	if (optind != argc)
		return cli_usage_error(cmd_jobs_help, "jobs takes no arguments");
	if (jobrec_list(&v, &n) < 0)
		return error_report();
	cc = jobrec_conns_new(cli.config_file);
	for (size_t i = 0; i < n; i++) {
		struct jobrec *r = &v[i];
		const struct config *cfg;
		const char *why = NULL;
		struct ssh_conn *conn;
		int stale = 0, kind;

		if (remote && strcmp(remote, r->remote ? r->remote : "default"))
			continue;
		if (!all && shown == JOBS_SHOWN) {
			hidden++;
			continue;
		}
		shown++;
		if (!job_state_final(r->state)) {
			conn = jobrec_conns_get(cc, r, &cfg, &why, &kind);
			if (conn && jobrec_check(conn, cfg, r) < 0) {
				why = error_message();
				stale = 1;
				/* Kept, as this connection may serve the next job. */
				buf_addf(&notes, "%s: %s\n", r->id, why);
				error_clear();
			} else if (conn) {
				slurm_check_record(conn, r);
			} else {
				stale = 1;
				if (!strstr(notes.ptr, why))
					buf_addf(&notes, "%s: %s\n", jobrec_remote_label(r), why);
			}
		}
		if (log_json) {
			emit(r, stale, why);
			continue;
		}
		if (!header++)
			printf("%-22s  %-12s  %-10s  %5s  %-19s  %8s  %s\n", "ID", "REMOTE", "STATE",
			       "RANKS", "STARTED", "DURATION", "IMAGE");
		row(r, stale);
	}
	if (!log_json) {
		if (!shown && remote)
			printf("no jobs on remote '%s'\n", remote);
		else if (!shown)
			printf("no jobs\n");
		if (hidden)
			printf("(%zu older job%s not shown: pystrib jobs --all)\n", hidden,
			       hidden == 1 ? "" : "s");
	}
	if (notes.len) {
		/* Each line names the remote or job the '?' states belong to. */
		fprintf(stderr, "? last known state; not reached:\n");
		fputs(notes.ptr, stderr);
	}
	buf_release(&notes);
	jobrec_conns_free(cc);
	jobrec_list_free(v, n);
	return ret;
}
