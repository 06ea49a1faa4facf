#include "remote_job.h"

#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "buf.h"
#include "embedded.h"
#include "error.h"
#include "jobstate.h"
#include "launch.h"
#include "log.h"
#include "reason.h"
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

void remote_job_jobctl(struct buf *cmd, const char *action, const char *dir)
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
	remote_job_jobctl(cmd, "start", dir);
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
		remote_job_jobctl(&cmd, "start", dir);
	if (stdin_line)
		buf_addf(&in, "%s\n", stdin_line);
	ret = ssh_conn_capture(c, cmd.ptr, in.len ? in.ptr : NULL, in.len, NULL, &err, &status);
	if (ret == 0 && status != 0)
		ret = ssh_command_failed(c, "sh", status, err.ptr);
	if (ret < 0)
		error_wrap("cannot start the job in '%s'", dir);
out:
	if (in.len)
		secret_wipe(in.ptr, in.len);
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

/* One "KEY VALUE" line of jobctl.sh read (line: NUL-terminated, no newline). */
/* A copy of the host's text that a record and an event can hold. */
static char *utf8_copy(const char *s)
{
	struct buf b = BUF_INIT;
	buf_add_utf8(&b, s, strlen(s));
	return buf_detach(&b, NULL);
}

static void parse_line(struct remote_job_state *st, const char *line, int *alive)
{
	const char *v = strchr(line, ' ');
	size_t k = v ? (size_t)(v - line) : strlen(line);
	v = v ? v + 1 : "";
	if (k == 5 && !memcmp(line, "alive", 5)) {
		*alive = *v ? atoi(v) : 1;
	} else if (k == 5 && !memcmp(line, "state", 5)) {
		free(st->state);
		st->state = *v ? utf8_copy(v) : NULL;
	} else if (k == 4 && !memcmp(line, "exit", 4)) {
		st->exit_code = *v ? (int)strtol(v, NULL, 10) : -1;
	} else if (k == 7 && !memcmp(line, "started", 7)) {
		st->started = strtod(v, NULL);
	} else if (k == 5 && !memcmp(line, "ended", 5)) {
		st->ended = strtod(v, NULL);
	} else if (k == 6 && !memcmp(line, "reason", 6)) {
		st->code = reason_parse(v, strlen(v));
	} else if (k == 5 && !memcmp(line, "error", 5)) {
		free(st->reason);
		st->reason = *v ? utf8_copy(v) : NULL;
	}
}

/* "rank N CODE MTIME" lines: each rank's exit, once np is known. */
static void parse_rank(struct remote_job_state *st, const char *line)
{
	char *end;
	long r = strtol(line, &end, 10);
	long code = strtol(end, &end, 10);
	double t = strtod(end, NULL);
	if (r >= 0 && r < st->np) {
		st->rank_exit[r] = code < -1 || code > 255 ? -1 : (int)code;
		st->rank_ended[r] = t;
	}
}

int remote_job_parse(const char *text, size_t len, struct remote_job_state *st)
{
	const char *p = text, *end = text + len, *json = NULL;
	int alive = 1;

	memset(st, 0, sizeof(*st));
	st->exit_code = -1;
	if (len >= 4 && !memcmp(text, "gone", 4) && (len == 4 || text[4] == '\n')) {
		st->state = xstrdup("lost");
		st->code = REASON_DIR_GONE;
		st->reason = xstrdup("the job directory is gone");
		st->job_json = xstrdup("");
		st->rank_exit = xcalloc(1, sizeof(int));
		st->rank_ended = xcalloc(1, sizeof(double));
		return 0;
	}
	/* First the files, up to the line "json"; job.json after it. */
	for (const char *q = p; q < end; ) {
		const char *nl = memchr(q, '\n', (size_t)(end - q));
		size_t n = nl ? (size_t)(nl - q) : (size_t)(end - q);
		if (n == 4 && !memcmp(q, "json", 4)) {
			json = nl ? nl + 1 : end;
			break;
		}
		char *line = xstrndup(q, n);
		parse_line(st, line, &alive);
		free(line);
		q = nl ? nl + 1 : end;
	}
	st->job_json = json ? xstrndup(json, (size_t)(end - json)) : xstrdup("");
	if (!st->state)
		st->state = xstrdup("submitted");
	st->np = json_np(st->job_json);
	st->rank_exit = xcalloc((size_t)st->np + 1, sizeof(int));
	st->rank_ended = xcalloc((size_t)st->np + 1, sizeof(double));
	for (int i = 0; i < st->np; i++)
		st->rank_exit[i] = -1;
	for (const char *q = p; q < (json ? json : end); ) {
		const char *nl = memchr(q, '\n', (size_t)(end - q));
		size_t n = nl ? (size_t)(nl - q) : (size_t)(end - q);
		if (n > 5 && !memcmp(q, "rank ", 5)) {
			char *line = xstrndup(q + 5, n - 5);
			parse_rank(st, line);
			free(line);
		}
		q = nl ? nl + 1 : end;
	}
	/* A job script writes its final state before it ends: dead and not
	 * final (and past submitted: it may not have started yet) is lost. */
	int dead = !job_state_final(st->state) && !alive && strcmp(st->state, "submitted");
	/* No remote script writes "lost" itself: one that is there is as good as dead. */
	if (dead || (!strcmp(st->state, "lost") && st->code != REASON_DIED &&
		     st->code != REASON_DIR_GONE)) {
		free(st->state);
		free(st->reason);
		st->state = xstrdup("lost");
		st->code = REASON_DIED;
		st->reason = xstrdup("the job script ended without a final state "
				     "(killed, or the host restarted)");
	} else if (st->reason && st->code == REASON_NONE) {
		/* An error without a code: a job script of an older pystrib. */
		st->code = strncmp(st->reason, "registry: ", 10) ? REASON_HOST : REASON_REGISTRY;
	}
	return 0;
}

int remote_job_read(struct ssh_conn *c, const char *dir, struct remote_job_state *st)
{
	struct buf cmd = BUF_INIT, out;
	int ret;

	memset(st, 0, sizeof(*st));
	buf_init(&out, 1 << 20);
	remote_job_jobctl(&cmd, "read", dir);
	if ((ret = ssh_conn_run(c, cmd.ptr, "sh", &out)) < 0)
		goto out;
	remote_job_parse(out.ptr, out.len, st);
	if (st->code == REASON_DIR_GONE) {
		free(st->reason);
		st->reason = xstrfmt("the job directory '%s' is gone", dir);
	}
out:
	buf_release(&cmd);
	buf_release(&out);
	return ret;
}

static int cancel(struct ssh_conn *c, const char *dir, const char *final, int unstarted,
		  char **final_state)
{
	struct buf cmd = BUF_INIT, out;
	int ret;

	buf_init(&out, 1 << 16);
	remote_job_jobctl(&cmd, "cancel", dir);
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
