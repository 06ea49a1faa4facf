#include "slurm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "jobrec.h"
#include "jobstate.h"
#include "launch.h"
#include "shquote.h"
#include "util.h"

/* Past this, job.json and run.sh are no job's: the remote command refuses. */
#define SUBMIT_FILES_MAX (8u << 20)

/* One word of a plain line, at *p, into w; *p moves past it. 0 or -1. */
static int next_word(const char **p, struct buf *w)
{
	const char *s = *p;
	while (*s && *s != ' ' && *s != '\t' && *s != '\n') {
		if (*s == '\'') {
			const char *e = strchr(s + 1, '\'');
			if (!e)
				return -1;
			buf_add(w, s + 1, (size_t)(e - s - 1));
			s = e + 1;
		} else if (*s == '"') {
			for (s++; *s != '"'; s++) {
				if (!*s || *s == '$' || *s == '`')
					return -1;
				if (*s == '\\' && s[1] && strchr("\"\\$`", s[1]))
					s++;
				buf_addch(w, *s);
			}
			s++;
		} else if (*s == '\\') {
			if (!s[1])
				return -1;
			buf_addch(w, s[1]);
			s += 2;
		} else if (strchr("$`;|&<>()", *s)) {
			return -1;
		} else {
			buf_addch(w, *s++);
		}
	}
	*p = s;
	return 0;
}

int slurm_split_words(const char *words, struct buf *out)
{
	const char *p = words ? words : "";
	struct buf w = BUF_INIT, q = BUF_INIT;
	int ret = 0;

	for (;;) {
		p += strspn(p, " \t\n");
		if (!*p)
			break;
		buf_reset(&w);
		if (next_word(&p, &w) < 0) {
			ret = error_set(PS_EXIT_USAGE, "[slurm] extra is not plain shell words: '%s'",
					words);
			error_hint("quote each option that has blanks or any of $ ` ; | & < > ( ), "
				   "and close every quote");
			goto out;
		}
		buf_addch(&q, ' ');
		shquote_arg(&q, w.ptr ? w.ptr : "");
	}
	buf_addstr(out, q.ptr ? q.ptr : "");
out:
	buf_release(&w);
	buf_release(&q);
	return ret;
}

/* " --NAME=VALUE", quoted, when value is set. */
static void opt(struct buf *out, const char *name, const char *value)
{
	if (!value || !*value)
		return;
	char *w = xstrfmt("--%s=%s", name, value);
	buf_addch(out, ' ');
	shquote_arg(out, w);
	free(w);
}

static void opt_int(struct buf *out, const char *name, long v)
{
	char n[32];
	if (v <= 0)
		return;
	snprintf(n, sizeof(n), "%ld", v);
	opt(out, name, n);
}

int slurm_sbatch_options(const struct slurm_config *sc, const char *id, int np, int timeout,
			 struct buf *out)
{
	char name[64], limit[32];

	snprintf(name, sizeof(name), LAUNCH_CONTAINER_PREFIX "%s", id);
	/* Never requeued (Slurm does so on a node failure): the job directory
	 * records one run, and a failed node fails the job, named. */
	buf_addstr(out, " --parsable --no-requeue");
	opt(out, "job-name", name);
	opt(out, "output", "logs/slurm.out");
	opt_int(out, "ntasks", np);
	opt_int(out, "nodes", sc->nodes);
	opt_int(out, "ntasks-per-node", sc->ntasks_per_node);
	opt_int(out, "gpus-per-node", sc->gpus_per_node);
	opt(out, "partition", sc->partition);
	opt(out, "account", sc->account);
	if (timeout > 0) {
		/* Slurm's "minutes:seconds"; a minute more than pystrib's own
		 * limit, so that the job's watchdog ends it as `timeout` first. */
		long t = (long)timeout + 60;
		snprintf(limit, sizeof(limit), "%ld:%02ld", t / 60, t % 60);
		opt(out, "time", limit);
	} else {
		opt(out, "time", sc->time);
	}
	return slurm_split_words(sc->extra, out);
}

void slurm_batch_script(const char *id, struct buf *out)
{
	buf_addstr(out, "#!/bin/sh\n# pystrib job ");
	shquote_arg(out, id);
	buf_addstr(out, ": submitted to Slurm by pystrib (src/slurm.c). It runs the job\n"
		   "# script in its job directory (sbatch's working directory), on the\n"
		   "# first node of the allocation; its ranks start with srun --mpi=pmix.\n"
		   "# The layout is described in docs/remote-job.md.\n"
		   "exec sh ./" LAUNCH_SCRIPT " < /dev/null >> logs/job.err 2>&1\n");
}

int slurm_parse_sbatch(const char *out, char *id, size_t size)
{
	size_t n = 0;
	if (!out)
		return -1;
	out += strspn(out, " \t\r\n");
	while (out[n] >= '0' && out[n] <= '9')
		n++;
	if (!n || n >= size || (out[n] && !strchr(";\r\n \t", out[n])))
		return -1;
	memcpy(id, out, n);
	id[n] = '\0';
	return 0;
}

/* The value of " KEY=" in an scontrol -o line, to the next blank, into v. */
static void field(const char *line, const char *key, char *v, size_t size)
{
	size_t klen = strlen(key);
	v[0] = '\0';
	for (const char *p = line; (p = strstr(p, key)); p += klen) {
		if ((p != line && p[-1] != ' ') || p[klen] != '=')
			continue;
		p += klen + 1;
		size_t n = strcspn(p, " \t\r\n");
		if (n >= size)
			n = size - 1;
		memcpy(v, p, n);
		v[n] = '\0';
		return;
	}
}

/* A state word: upper-case letters and _, as Slurm names them. */
static int state_word(const char *s)
{
	if (!*s)
		return 0;
	for (; *s; s++)
		if (!((*s >= 'A' && *s <= 'Z') || *s == '_'))
			return 0;
	return 1;
}

int slurm_parse_state(const char *text, struct slurm_state *st)
{
	memset(st, 0, sizeof(*st));
	if (!text)
		return -1;
	text += strspn(text, " \t\r\n");
	if (!strncmp(text, "JobId=", 6)) {
		field(text, "JobState", st->state, sizeof(st->state));
		field(text, "Reason", st->reason, sizeof(st->reason));
		field(text, "NodeList", st->nodes, sizeof(st->nodes));
	} else {
		size_t n = strcspn(text, " \t\r\n");
		if (n >= sizeof(st->state))
			return -1;
		memcpy(st->state, text, n);
		st->state[n] = '\0';
		const char *r = text + n;
		r += strspn(r, " \t");
		n = strcspn(r, "\r\n");
		if (n >= sizeof(st->reason))
			n = sizeof(st->reason) - 1;
		memcpy(st->reason, r, n);
		st->reason[n] = '\0';
	}
	/* "None" and "(null)" are Slurm's words for no reason, no nodes. */
	if (!strcmp(st->reason, "None") || !strcmp(st->reason, "(null)"))
		st->reason[0] = '\0';
	if (!strcmp(st->nodes, "(null)"))
		st->nodes[0] = '\0';
	if (!state_word(st->state)) {
		memset(st, 0, sizeof(*st));
		return -1;
	}
	return 0;
}

int slurm_state_active(const char *state)
{
	static const char *const active[] = {
		"PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "SUSPENDED",
		"REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESIZING", "SIGNALING",
		"STAGE_OUT", "RESV_DEL_HOLD", "STOPPED",
	};
	for (size_t i = 0; state && i < ARRAY_SIZE(active); i++)
		if (!strcmp(state, active[i]))
			return 1;
	return 0;
}

/* The last line of err that says something, without "sbatch: error: ". */
static char *last_line(const char *err)
{
	const char *best = NULL;
	size_t blen = 0;
	for (const char *p = err ? err : ""; *p; ) {
		size_t n = strcspn(p, "\n");
		size_t k = strspn(p, " \t\r");
		if (k < n) {
			best = p;
			blen = n;
		}
		p += n + (p[n] == '\n');
	}
	while (blen && (best[blen - 1] == '\r' || best[blen - 1] == ' '))
		blen--;
	return best ? xstrndup(best, blen) : xstrdup("");
}

int slurm_submit_error(const char *host, int status, const char *err)
{
	const char *e = err ? err : "";
	char *line = NULL;

	if (status == 127 || (strstr(e, "sbatch") && strstr(e, "not found"))) {
		error_set(PS_EXIT_REMOTE, "the login host '%s' has no 'sbatch'", host);
		return error_hint("install Slurm's client commands there, or put them on the PATH "
				  "of its SSH sessions ([remote] setup does not run before sbatch)");
	}
	/* sbatch says more than one line for a rejected job: the first
	 * error names what (the partition), the last is the verdict. */
	const char *first = strstr(e, "sbatch: error: ");
	if (first)
		first += strlen("sbatch: error: ");
	else if ((first = strstr(e, "sbatch: ")))
		first += strlen("sbatch: ");
	if (first) {
		line = xstrndup(first, strcspn(first, "\r\n"));
	} else {
		line = last_line(e);
	}
	if (strstr(e, "nvalid partition")) {
		error_set(PS_EXIT_USAGE, "Slurm refused the job: %s", line);
		error_hint("'sinfo -s' on '%s' lists the partitions: set [slurm] partition "
			   "to one of them (or leave it unset for the default)", host);
	} else if (strstr(e, "nvalid account")) {
		error_set(PS_EXIT_USAGE, "Slurm refused the job: %s", line);
		error_hint("'sacctmgr show assoc user=$USER' on '%s' lists your accounts: "
			   "set [slurm] account to one of them", host);
	} else if (strstr(e, "unrecognized option") || strstr(e, "invalid option") ||
		   strstr(e, "nvalid ") || strstr(e, "requires an argument")) {
		error_set(PS_EXIT_USAGE, "sbatch rejected an option: %s", line);
		error_hint("check [slurm] extra, time, nodes, ntasks_per_node and "
			   "gpus_per_node ('sbatch --help' on '%s')", host);
	} else {
		error_set(PS_EXIT_USAGE, "Slurm refused the job (sbatch exit %d): %s", status,
			  *line ? line : "no message");
		error_hint("the [slurm] settings are sbatch options: run 'sbatch --test-only' "
			   "with them on '%s' to see why", host);
	}
	free(line);
	return -1;
}

/*
 * The remote command of slurm_submit: the files from stdin (head -c reads
 * exactly so many bytes), then sbatch; its stderr through, the id on
 * stdout. A refused job leaves no directory behind.
 */
static int submit_command(struct buf *cmd, const struct slurm_config *sc, const char *id, int np,
			  int timeout, const char *dir, size_t n_json, size_t n_sh, size_t n_batch)
{
	buf_addstr(cmd, "umask 022; d=");
	shquote_path(cmd, dir);
	buf_addf(cmd, " && mkdir -p \"$d/logs\" \"$d/results\" && cd \"$d\" && "
		 "head -c %zu > job.json && head -c %zu > " LAUNCH_SCRIPT " && head -c %zu > slurm.sh && "
		 "chmod 755 " LAUNCH_SCRIPT " && mkdir -p .claimed && "
		 "printf 'submitted\\n' > state || exit 1; "
		 "sid=$(sbatch", n_json, n_sh, n_batch);
	if (slurm_sbatch_options(sc, id, np, timeout, cmd) < 0)
		return -1;
	buf_addstr(cmd, " slurm.sh 2>logs/sbatch.err) || { rc=$?; cat logs/sbatch.err >&2; "
		   "cd / && rm -rf \"$d\"; exit \"$rc\"; }; "
		   "printf '%s\\n' \"${sid%%;*}\" > slurm.tmp && mv -f slurm.tmp slurm; "
		   "printf '%s\\n' \"$sid\"");
	return 0;
}

int slurm_submit(struct ssh_conn *c, const struct slurm_config *sc, const char *id, int np,
		 int timeout, const char *dir, const char *job_json, const char *run_sh,
		 char **slurm_id)
{
	struct buf cmd = BUF_INIT, in = BUF_INIT, batch = BUF_INIT, out, err;
	char sid[32];
	int ret = -1, status = 0;

	buf_init(&out, 4096);
	buf_init(&err, 64 << 10);
	slurm_batch_script(id, &batch);
	if (strlen(job_json) + strlen(run_sh) > SUBMIT_FILES_MAX) {
		error_set(PS_EXIT_USAGE, "the job's files are too large to submit");
		goto out;
	}
	buf_addstr(&in, job_json);
	buf_addstr(&in, run_sh);
	buf_add(&in, batch.ptr, batch.len);
	if (submit_command(&cmd, sc, id, np, timeout, dir, strlen(job_json), strlen(run_sh),
			   batch.len) < 0)
		goto out;
	if ((ret = ssh_conn_capture(c, cmd.ptr, in.ptr, in.len, &out, &err, &status)) < 0) {
		error_wrap("cannot submit the job to Slurm on '%s'", ssh_conn_name(c));
		goto out;
	}
	ret = -1;
	if (status == 1 && !strstr(err.ptr ? err.ptr : "", "sbatch")) {
		ssh_command_failed(c, "sh", status, err.ptr);
		error_wrap("cannot write the job directory '%s'", dir);
	} else if (status != 0) {
		slurm_submit_error(ssh_conn_name(c), status, err.ptr);
	} else if (slurm_parse_sbatch(out.ptr, sid, sizeof(sid)) < 0) {
		error_set(PS_EXIT_REMOTE, "sbatch on '%s' printed no job id: '%.200s'",
			  ssh_conn_name(c), out.ptr ? out.ptr : "");
	} else {
		*slurm_id = xstrdup(sid);
		ret = 0;
	}
out:
	buf_release(&cmd);
	buf_release(&in);
	buf_release(&batch);
	buf_release(&out);
	buf_release(&err);
	return ret;
}

int slurm_query(struct ssh_conn *c, const char *slurm_id, struct slurm_state *st)
{
	struct buf cmd = BUF_INIT, out;
	int ret, status = 0;

	buf_init(&out, 64 << 10);
	/* squeue knows pending and running jobs; scontrol also those ended
	 * within MinJobAge (the default five minutes). */
	buf_addstr(&cmd, "j=");
	shquote_arg(&cmd, slurm_id);
	buf_addstr(&cmd, "; s=$(squeue -h -j \"$j\" -o '%T %r' 2>/dev/null); "
		   "if [ -n \"$s\" ]; then printf '%s\\n' \"$s\"; "
		   "else scontrol -o show job \"$j\" 2>/dev/null; fi; exit 0");
	ret = ssh_conn_capture(c, cmd.ptr, NULL, 0, &out, NULL, &status);
	if (ret == 0)
		ret = slurm_parse_state(out.ptr ? out.ptr : "", st) < 0 ? 1 : 0;
	buf_release(&cmd);
	buf_release(&out);
	return ret;
}

const char *slurm_lost_reason(const char *slurm_id, const struct slurm_state *st, struct buf *why)
{
	const char *on = st->nodes[0] ? " on node " : "";

	if (!st->state[0]) {
		buf_addf(why, "Slurm job %s ended without a final state, and Slurm no longer knows "
			 "it (scancel, or a node failure: its MinJobAge passed)", slurm_id);
		return "died";
	}
	if (!strcmp(st->state, "NODE_FAIL") || !strcmp(st->state, "BOOT_FAIL")) {
		buf_addf(why, "Slurm job %s ended %s%s%s", slurm_id, st->state, on, st->nodes);
		if (st->reason[0])
			buf_addf(why, " (%s)", st->reason);
		buf_addstr(why, ": a node of its allocation failed");
		return "host";
	}
	if (!strcmp(st->state, "CANCELLED")) {
		buf_addf(why, "Slurm job %s was cancelled outside pystrib (scancel)%s%s, before its "
			 "job script wrote a final state", slurm_id, on, st->nodes);
		return "died";
	}
	buf_addf(why, "Slurm job %s ended %s%s%s", slurm_id, st->state, on, st->nodes);
	if (st->reason[0])
		buf_addf(why, " (%s)", st->reason);
	buf_addstr(why, " without a final state (the job script was killed, or its node restarted)");
	return "died";
}

/* The first line of text that begins "srun: error: " and speaks of ranks
 * ("N: task(s) R: ...") or of a node failure; its length in *len. */
static const char *first_rank_error(const char *text, size_t *len)
{
	static const char pre[] = "srun: error: ";

	for (const char *l = text; *l; ) {
		size_t n = strcspn(l, "\n");
		const char *p = l + sizeof(pre) - 1;
		if (n >= sizeof(pre) - 1 && !strncmp(l, pre, sizeof(pre) - 1)) {
			const char *colon = memchr(p, ':', n - (size_t)(p - l));
			if (!strncmp(p, "Node failure on ", 16) ||
			    (colon && colon > p && !memchr(p, ' ', (size_t)(colon - p)) &&
			     !strncmp(colon, ": task", 6))) {
				*len = n;
				return l;
			}
		}
		l += n + (l[n] == '\n');
	}
	return NULL;
}

int slurm_parse_node_failure(const char *job_err, struct buf *why)
{
	static const char killed[] = ": Killed";
	size_t n = 0;
	const char *l = job_err ? first_rank_error(job_err, &n) : NULL;

	if (!l)
		return 0;
	const char *p = l + strlen("srun: error: ");
	size_t rest = n - (size_t)(p - l);
	if (!strncmp(p, "Node failure on ", 16)) {
		int w = (int)(rest - 16);
		buf_addf(why, "node '%.*s' failed under the job (Slurm: Node failure on %.*s)", w,
			 p + 16, w, p + 16);
		return 1;
	}
	if (rest < sizeof(killed) || strncmp(p + rest - (sizeof(killed) - 1), killed, sizeof(killed) - 1))
		return 0;
	size_t node = strcspn(p, ":");
	const char *t = p + node + 2;	/* "tasks 2-3" or "task 2" */
	size_t tn = (size_t)(p + rest - (sizeof(killed) - 1) - t);
	int many = !strncmp(t, "tasks ", 6);
	size_t skip = many ? 6 : 5;
	if (tn <= skip || (!many && strncmp(t, "task ", 5)))
		return 0;
	buf_addf(why, "node '%.*s' failed under the job: %s %.*s %s killed there (SIGKILL: the "
		 "node failed, ran out of memory, or someone killed them)", (int)node, p,
		 many ? "ranks" : "rank", (int)(tn - skip), t + skip, many ? "were" : "was");
	return 1;
}

void slurm_check_record(struct ssh_conn *c, struct jobrec *r)
{
	struct slurm_state st;
	struct buf why = BUF_INIT;

	if (!c || !r->slurm_id || !r->state ||
	    (job_state_final(r->state) && strcmp(r->state, JOB_STATE_LOST)))
		return;
	int q = slurm_query(c, r->slurm_id, &st);
	if (q < 0) {
		error_clear();
		return;
	}
	if (q == 0 && !strcmp(st.state, "PENDING")) {
		jobrec_set(&r->state, "pending");
		jobrec_set(&r->state_reason, st.reason[0] ? st.reason : NULL);
		return;
	}
	if (q == 0 && slurm_state_active(st.state))
		return;
	/* A job script that ended well just after its directory was read: its
	 * final state is being written, not lost. */
	if (q == 0 && !strcmp(st.state, "COMPLETED") && strcmp(r->state, "submitted") &&
	    strcmp(r->state, JOB_STATE_LOST))
		return;
	/* Ended in Slurm before its job script could say so (cancelled while
	 * pending, a node that failed): lost, as its follower says. */
	if (q == 1)
		memset(&st, 0, sizeof(st));
	const char *code = slurm_lost_reason(r->slurm_id, &st, &why);
	jobrec_set(&r->state, JOB_STATE_LOST);
	jobrec_set(&r->state_code, code);
	jobrec_set(&r->state_reason, why.ptr);
	buf_release(&why);
}

void slurm_check_failed(struct ssh_conn *c, struct jobrec *r)
{
	struct buf cmd = BUF_INIT, out, why = BUF_INIT;
	int status = 0;

	if (!c || !r->slurm_id || !r->jobdir || !r->state || strcmp(r->state, "failed") ||
	    r->state_reason)
		return;
	buf_init(&out, 64 << 10);
	/* Only srun's lines: job.err may be long. */
	buf_addstr(&cmd, "grep -E '^srun: error: ' ");
	shquote_path(&cmd, r->jobdir);
	buf_addstr(&cmd, "/logs/job.err 2>/dev/null | head -n 50; exit 0");
	if (ssh_conn_capture(c, cmd.ptr, NULL, 0, &out, NULL, &status) < 0)
		error_clear();
	else if (slurm_parse_node_failure(out.ptr ? out.ptr : "", &why)) {
		jobrec_set(&r->state_code, "host");
		jobrec_set(&r->state_reason, why.ptr);
	}
	buf_release(&cmd);
	buf_release(&out);
	buf_release(&why);
}
