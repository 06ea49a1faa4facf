#include "remote_job.h"

#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "embedded.h"
#include "error.h"
#include "jobstate.h"
#include "launch.h"
#include "log.h"
#include "shquote.h"
#include "util.h"

/* Past this, job.json and run.sh are uploaded as files, not passed as arguments. */
#define INLINE_MAX (96u << 10)

char *remote_job_dir(const char *workdir, const char *id)
{
	const char *w = workdir && *workdir ? workdir : "~/.pystrib";
	size_t n = strlen(w);
	while (n > 1 && w[n - 1] == '/')
		n--;
	return xstrfmt("%.*s/jobs/%s", (int)n, w, id);
}

char *remote_job_layers_dir(const char *workdir)
{
	const char *w = workdir && *workdir ? workdir : "~/.pystrib";
	size_t n = strlen(w);
	while (n > 1 && w[n - 1] == '/')
		n--;
	return xstrfmt("%.*s/layers", (int)n, w);
}

/* "sh -c <jobctl.sh> jobctl.sh ACTION DIR" */
static void jobctl(struct buf *cmd, const char *action, const char *dir)
{
	const struct embedded *e = embedded_find("jobctl.sh");
	buf_addstr(cmd, "sh -c ");
	shquote_arg(cmd, e ? (const char *)e->data : "exit 127");
	buf_addstr(cmd, " jobctl.sh ");
	shquote_arg(cmd, action);
	buf_addch(cmd, ' ');
	shquote_path(cmd, dir);
}

int remote_job_put_layer(struct ssh_conn *c, const char *workdir, const char *digest,
			 const char *local_path)
{
	char *dir = remote_job_layers_dir(workdir);
	char *path = NULL;
	struct buf cmd = BUF_INIT;
	int ret, status;

	if (strncmp(digest, "sha256:", 7)) {
		ret = error_set(PS_EXIT_USAGE, "invalid layer digest '%s'", digest);
		goto out;
	}
	path = xstrfmt("%s/%s.tar.gz", dir, digest + 7);
	buf_addstr(&cmd, "mkdir -p ");
	shquote_path(&cmd, dir);
	buf_addstr(&cmd, " && test -s ");
	shquote_path(&cmd, path);
	ret = ssh_conn_capture(c, cmd.ptr, NULL, 0, NULL, NULL, &status);
	if (ret < 0 || status == 0)
		goto out;
	log_info("uploading the layer %.19s to '%s'", digest, ssh_conn_name(c));
	ret = ssh_conn_upload_file(c, path, local_path, 0644);
out:
	buf_release(&cmd);
	free(dir);
	free(path);
	return ret;
}

int remote_job_layer_from_stdin(struct buf *cmd, const char *workdir, const char *digest,
				unsigned long long size, const char *id)
{
	if (strncmp(digest, "sha256:", 7))
		return error_set(PS_EXIT_USAGE, "invalid layer digest '%s'", digest);
	char *dir = remote_job_layers_dir(workdir);
	char *path = xstrfmt("%s/%s.tar.gz", dir, digest + 7);
	char *tmp = xstrfmt("%s.%s.tmp", path, id);
	buf_addstr(cmd, "mkdir -p ");
	shquote_path(cmd, dir);
	buf_addf(cmd, " && head -c %llu > ", size);
	shquote_path(cmd, tmp);
	/* A short stdin must not leave a short layer under the full name. */
	buf_addstr(cmd, " && test \"$(wc -c < ");
	shquote_path(cmd, tmp);
	buf_addf(cmd, ")\" -eq %llu && mv -f ", size);
	shquote_path(cmd, tmp);
	buf_addch(cmd, ' ');
	shquote_path(cmd, path);
	buf_addstr(cmd, " && ");
	free(dir);
	free(path);
	free(tmp);
	return 0;
}

int remote_job_start_command(struct buf *cmd, const char *dir, const char *job_json,
			     const char *run_sh)
{
	if (strlen(job_json) + strlen(run_sh) >= INLINE_MAX)
		return -1;
	jobctl(cmd, "start", dir);
	buf_addch(cmd, ' ');
	shquote_arg(cmd, job_json);
	buf_addch(cmd, ' ');
	shquote_arg(cmd, run_sh);
	return 0;
}

int remote_job_submit(struct ssh_conn *c, const char *dir, const char *job_json,
		      const char *run_sh, const char *stdin_line)
{
	struct buf cmd = BUF_INIT, in = BUF_INIT, err;
	int ret, status, inline_files = strlen(job_json) + strlen(run_sh) < INLINE_MAX;

	buf_init(&err, 64 << 10);
	if (!inline_files) {
		char *p;
		buf_addstr(&cmd, "mkdir -p ");
		shquote_path(&cmd, dir);
		if ((ret = ssh_conn_run(c, cmd.ptr, "mkdir", NULL)) < 0)
			goto out;
		p = xstrfmt("%s/job.json", dir);
		ret = ssh_conn_upload(c, p, job_json, strlen(job_json), 0644);
		free(p);
		if (ret < 0)
			goto out;
		p = xstrfmt("%s/" LAUNCH_SCRIPT, dir);
		ret = ssh_conn_upload(c, p, run_sh, strlen(run_sh), 0755);
		free(p);
		if (ret < 0)
			goto out;
		buf_reset(&cmd);
	}
	if (!inline_files || remote_job_start_command(&cmd, dir, job_json, run_sh) < 0)
		jobctl(&cmd, "start", dir);
	if (stdin_line)
		buf_addf(&in, "%s\n", stdin_line);
	ret = ssh_conn_capture(c, cmd.ptr, in.len ? in.ptr : NULL, in.len, NULL, &err, &status);
	if (ret == 0 && status != 0)
		ret = ssh_command_failed(c, "sh", status, err.ptr);
	if (ret < 0)
		error_wrap("cannot start the job in '%s'", dir);
out:
	if (in.len)
		memset(in.ptr, 0, in.len);
	buf_release(&in);
	buf_release(&cmd);
	buf_release(&err);
	return ret;
}

void remote_job_state_release(struct remote_job_state *st)
{
	free(st->state);
	free(st->reason);
	free(st->rank_exit);
	free(st->rank_ended);
	free(st->job_json);
	memset(st, 0, sizeof(*st));
}

/* The value after "key " on its line of out, or NULL. */
static const char *field(const char *out, const char *key, size_t *len)
{
	size_t k = strlen(key);
	for (const char *p = out; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
		if (!strncmp(p, key, k) && p[k] == ' ') {
			*len = strcspn(p + k + 1, "\n");
			return p + k + 1;
		}
		if (!strncmp(p, "json\n", 5))
			break;
	}
	return NULL;
}

static char *field_str(const char *out, const char *key)
{
	size_t n;
	const char *v = field(out, key, &n);
	return v ? xstrndup(v, n) : NULL;
}

static double field_num(const char *out, const char *key, double def)
{
	char *v = field_str(out, key);
	double d = v && *v ? strtod(v, NULL) : def;
	free(v);
	return d;
}

/* np from job.json's "np": the reader needs no JSON library for one number. */
static int json_np(const char *json)
{
	const char *p = strstr(json, "\"np\"");
	if (!p)
		return 0;
	p += 4;
	while (*p == ' ' || *p == ':')
		p++;
	long n = strtol(p, NULL, 10);
	return n > 0 && n <= 65536 ? (int)n : 0;
}

int remote_job_read(struct ssh_conn *c, const char *dir, struct remote_job_state *st)
{
	struct buf cmd = BUF_INIT, out;
	const char *json;
	int ret;

	memset(st, 0, sizeof(*st));
	buf_init(&out, 1 << 20);
	jobctl(&cmd, "read", dir);
	if ((ret = ssh_conn_run(c, cmd.ptr, "sh", &out)) < 0)
		goto out;
	st->exit_code = -1;
	if (!strncmp(out.ptr, "gone", 4)) {
		st->state = xstrdup("lost");
		st->reason = xstrfmt("the job directory '%s' is gone", dir);
		st->job_json = xstrdup("");
		goto out;
	}
	json = strstr(out.ptr, "\njson\n");
	st->job_json = xstrdup(json ? json + 6 : "");
	st->state = field_str(out.ptr, "state");
	if (!st->state || !*st->state) {
		free(st->state);
		st->state = xstrdup("submitted");
	}
	st->exit_code = (int)field_num(out.ptr, "exit", -1);
	st->started = field_num(out.ptr, "started", 0);
	st->ended = field_num(out.ptr, "ended", 0);
	st->np = json_np(st->job_json);
	st->rank_exit = xcalloc((size_t)st->np + 1, sizeof(int));
	st->rank_ended = xcalloc((size_t)st->np + 1, sizeof(double));
	for (int i = 0; i < st->np; i++)
		st->rank_exit[i] = -1;
	for (const char *p = out.ptr; p < (json ? json : out.ptr + out.len); ) {
		long r, code;
		double t;
		char *end;
		if (!strncmp(p, "rank ", 5)) {
			r = strtol(p + 5, &end, 10);
			code = strtol(end, &end, 10);
			t = strtod(end, NULL);
			if (r >= 0 && r < st->np) {
				st->rank_exit[r] = (int)code;
				st->rank_ended[r] = t;
			}
		}
		const char *nl = strchr(p, '\n');
		if (!nl)
			break;
		p = nl + 1;
	}
	/* Why the job could not run, when its script knew (launch.c's `error`). */
	st->reason = field_str(out.ptr, "error");
	if (st->reason && !*st->reason) {
		free(st->reason);
		st->reason = NULL;
	}
	if (!job_state_final(st->state) && field_num(out.ptr, "alive", 1) == 0 &&
	    strcmp(st->state, "submitted")) {
		free(st->state);
		free(st->reason);
		st->state = xstrdup("lost");
		st->reason = xstrdup("the job script ended without a final state "
				     "(killed, or the host restarted)");
	}
out:
	buf_release(&cmd);
	buf_release(&out);
	if (ret < 0)
		remote_job_state_release(st);
	return ret;
}

static int cancel(struct ssh_conn *c, const char *dir, const char *final, int unstarted,
		  char **final_state)
{
	struct buf cmd = BUF_INIT, out;
	int ret;

	buf_init(&out, 1 << 16);
	jobctl(&cmd, "cancel", dir);
	buf_addch(&cmd, ' ');
	shquote_arg(&cmd, final);
	if (unstarted)
		buf_addstr(&cmd, " unstarted");
	ret = ssh_conn_run(c, cmd.ptr, "sh", &out);
	if (ret == 0) {
		buf_rtrim(&out);
		if (!strcmp(out.ptr, "gone")) {
			buf_reset(&out);
			buf_addstr(&out, "lost");
		}
		if (final_state)
			*final_state = xstrdup(out.ptr);
	} else {
		error_wrap("cannot stop the job in '%s'", dir);
	}
	buf_release(&cmd);
	buf_release(&out);
	return ret;
}

int remote_job_cancel(struct ssh_conn *c, const char *dir, const char *final,
		      char **final_state)
{
	return cancel(c, dir, final, 0, final_state);
}

int remote_job_cancel_unstarted(struct ssh_conn *c, const char *dir, const char *final,
				char **final_state)
{
	return cancel(c, dir, final, 1, final_state);
}
