#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "config.h"
#include "error.h"
#include "jobarg.h"
#include "jobrec.h"
#include "jobremote.h"
#include "jobstate.h"
#include "log.h"
#include "remote_job.h"
#include "ssh.h"
#include "util.h"

const char cmd_cancel_help[] =
	"usage: pystrib cancel JOB\n"
	"\n"
	"Stops a job on its remote host: TERM to the job's process group (the job\n"
	"script stops its container), then, if it has not ended within 10 seconds,\n"
	"KILL and `docker|podman rm -f` of its container. Its state becomes\n"
	"'cancelled'. A job that has already ended is left as it is (and said so).\n"
	"JOB is an id, a unique prefix of one, or 'last'.\n"
	"\n"
	"options:\n"
	"  -h, --help          show this help\n"
	"\n"
	"With the global --json, a {\"event\":\"done\"} line with id and state.\n"
	"\n"
	"examples:\n"
	"  pystrib cancel last\n";

int cmd_cancel(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "help", no_argument, 0, 'h' },
		{ 0, 0, 0, 0 },
	};
	struct jobrec r;
	struct config cfg;
	struct ssh_conn *conn = NULL;
	char *dir = NULL, *final = NULL;
	const char *arg;
	int c, ret;

	jobrec_init(&r);
	memset(&cfg, 0, sizeof(cfg));
	while ((c = cli_getopt(argc, argv, "", opts, cmd_cancel_help)) != -1)
		if (c == CLI_HELP || c == CLI_ERROR)
			return c == CLI_HELP ? 0 : PS_EXIT_USAGE;
	if (!(arg = jobrec_job_arg(argc, argv, "cancel", cmd_cancel_help)))
		return PS_EXIT_USAGE;
	if (jobrec_resolve(&r, arg) < 0)
		return error_report();
	if (jobrec_connect(&r, cli.config_file, &cfg, &conn) < 0) {
		ret = error_report();
		goto out;
	}
	if (jobrec_check(conn, &cfg, &r) < 0) {
		ret = error_report();
		goto out;
	}
	if (job_state_final(r.state)) {
		if (!log_json)
			printf("job %s had already ended: %s%s%s%s\n", r.id, r.state,
			       r.state_reason ? " (" : "", r.state_reason ? r.state_reason : "",
			       r.state_reason ? ")" : "");
		event_emit("done", "{s:s,s:s,s:i}", "id", r.id, "state", r.state, "exit_code",
			   r.exit_code);
		ret = 0;
		goto out;
	}
	dir = jobrec_remote_dir(&r, &cfg);
	if (remote_job_cancel(conn, dir, "cancelled", &final) < 0) {
		ret = error_report();
		goto out;
	}
	/* The record gets the whole final picture: exit codes, times. */
	if (jobrec_check(conn, &cfg, &r) < 0) {
		log_warn("%s", error_message());
		error_clear();
	}
	if (!log_json && !strcmp(final, "cancelled"))
		printf("job %s cancelled\n", r.id);
	else if (!log_json)
		printf("job %s ended meanwhile: %s\n", r.id, final);
	event_emit("done", "{s:s,s:s,s:i}", "id", r.id, "state", final, "exit_code",
		   r.exit_code);
	ret = 0;
out:
	free(final);
	free(dir);
	ssh_conn_free(conn);
	config_release(&cfg);
	jobrec_release(&r);
	return ret;
}
