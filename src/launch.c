#include "launch.h"

#include <ctype.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "context.h"
#include "embedded.h"
#include "error.h"
#include "shquote.h"

/* Appends "NAME=VALUE\n", the value quoted: one line of run.sh's header. */
static void var(struct buf *b, const char *name, const char *value)
{
	buf_addf(b, "%s=", name);
	shquote_arg(b, value ? value : "");
	buf_addch(b, '\n');
}

static void var_int(struct buf *b, const char *name, long v)
{
	char n[32];
	snprintf(n, sizeof(n), "%ld", v);
	var(b, name, n);
}

/*
 * A list of words as one value: each word quoted, the whole quoted again,
 * for run.sh's eval "set -- $NAME" to give back exactly these words.
 */
static void var_words(struct buf *b, const char *name, const char *const *w, size_t n)
{
	struct buf list = BUF_INIT;
	for (size_t i = 0; i < n; i++) {
		if (i)
			buf_addch(&list, ' ');
		shquote_arg(&list, w[i]);
	}
	var(b, name, list.ptr ? list.ptr : "");
	buf_release(&list);
}

int launch_env_name_ok(const char *name, size_t len)
{
	if (!len || !(isalpha((unsigned char)name[0]) || name[0] == '_'))
		return 0;
	for (size_t i = 1; i < len; i++)
		if (!(isalnum((unsigned char)name[i]) || name[i] == '_'))
			return 0;
	return 1;
}

/* "all", a count, or a list of indexes "0,1,3". */
static int gpus_ok(const char *g)
{
	if (!strcmp(g, "all"))
		return 1;
	if (!*g || *g == ',' || g[strlen(g) - 1] == ',' || strstr(g, ",,"))
		return 0;
	for (const char *p = g; *p; p++)
		if (!isdigit((unsigned char)*p) && *p != ',')
			return 0;
	return 1;
}

/* The words of mpirun_args, split on blanks, each quoted, as one value. */
static void var_mpirun_args(struct buf *b, const char *args)
{
	struct buf list = BUF_INIT;
	const char *p = args;
	while (p && *p) {
		p += strspn(p, " \t\n");
		size_t n = strcspn(p, " \t\n");
		if (!n)
			break;
		char *w = xstrndup(p, n);
		if (list.len)
			buf_addch(&list, ' ');
		shquote_arg(&list, w);
		free(w);
		p += n;
	}
	var(b, "ps_mpirun_args", list.ptr ? list.ptr : "");
	buf_release(&list);
}

/*
 * PYSTRIB_GPUS inside a container given the devices `gpus`: "all", or how
 * many it was given (count is the space for the number).
 */
static const char *container_gpus(const char *gpus, char *count, size_t size)
{
	size_t n = 1;
	if (!strcmp(gpus, "all") || !strchr(gpus, ','))
		return gpus;
	for (const char *p = gpus; *p; p++)
		n += *p == ',';
	snprintf(count, size, "%zu", n);
	return count;
}

static void env_add(json_t *env, const char *k, const char *v)
{
	char *kv = xstrfmt("%s%s", k, v);
	json_array_append_new(env, json_string(kv));
	free(kv);
}

/* docker's --gpus as the API has it: DeviceRequests. */
static json_t *device_requests(const char *gpus)
{
	json_t *req = json_pack("{s:s,s:[[s]]}", "Driver", "", "Capabilities", "gpu");
	if (!strcmp(gpus, "all")) {
		json_object_set_new(req, "Count", json_integer(-1));
	} else if (!strchr(gpus, ',')) {
		json_object_set_new(req, "Count", json_integer(atol(gpus)));
	} else {
		json_t *ids = json_array();
		for (const char *p = gpus; *p; ) {
			size_t n = strcspn(p, ",");
			char *idx = xstrndup(p, n);
			json_array_append_new(ids, json_string(idx));
			free(idx);
			p += n + (p[n] == ',');
		}
		json_object_set_new(req, "DeviceIDs", ids);
	}
	return json_pack("[o]", req);
}

json_t *launch_engine_config(const struct launch_spec *s, const char *host_dir,
			     const char *job_json, const char *script)
{
	char count[32];
	json_t *env = json_array();
	env_add(env, "PYSTRIB_JOB_DIR=", "/pystrib/job");
	env_add(env, "PYSTRIB_RESULTS=", "/pystrib/job/results");
	env_add(env, "PYSTRIB_JOB_ID=", s->id);
	if (s->gpus)
		env_add(env, "PYSTRIB_GPUS=", container_gpus(s->gpus, count, sizeof(count)));
	for (size_t i = 0; i < s->nenv; i++)
		env_add(env, s->env[i], "");
	char *bind = xstrfmt("%s:/pystrib/job", host_dir);
	/* Host network and IPC, as with `docker run` in run.sh; the
	 * container's own PIDs (a cell's `pkill` stays in it). */
	json_t *host = json_pack("{s:[s],s:s,s:s,s:b}", "Binds", bind, "NetworkMode", "host",
				 "IpcMode", "host", "AutoRemove", 1);
	if (s->gpus)
		json_object_set_new(host, "DeviceRequests", device_requests(s->gpus));
	free(bind);
	/* The container's own command is `jobctl.sh engine`: the start of
	 * `jobctl.sh start`, then it stays until the results were taken. */
	const struct embedded *jobctl = embedded_find("jobctl.sh");
	return json_pack("{s:s,s:[s,s,s,s,s,s,s,s],s:o,s:{s:s},s:o}", "Image", s->image,
			 "Cmd", "sh", "-c", jobctl ? (const char *)jobctl->data : "exit 127",
			 "jobctl.sh", "engine", "/pystrib/job", job_json, script,
			 "Env", env, "Labels", "pystrib.job", s->id, "HostConfig", host);
}

/* ps_mode: what run.sh does (its `case $ps_mode`). */
static const char *script_mode(const struct launch_spec *s)
{
	if (s->runtime == RUNTIME_NONE)
		return "none";
	if (s->in_engine)
		return "engine";
	return s->runtime == RUNTIME_DOCKER ? "docker" : "podman";
}

/* The image's Env for runtime none, those with a valid name. */
static void var_image_env(struct buf *b, const struct launch_spec *s)
{
	const char **w = xcalloc(s->nimage_env + 1, sizeof(*w));
	size_t n = 0;
	for (size_t i = 0; i < s->nimage_env; i++) {
		const char *e = s->image_env[i], *eq = strchr(e, '=');
		if (eq && launch_env_name_ok(e, (size_t)(eq - e)))
			w[n++] = e;
	}
	var_words(b, "ps_image_env", w, n);
	free(w);
}

/* run.sh's header: every value of the spec, quoted (src/remote/run.sh lists them). */
static void header(struct buf *b, const struct launch_spec *s)
{
	int none = s->runtime == RUNTIME_NONE;
	int login = !none && s->login_registry && s->login_user && !s->image_present;
	size_t nargs = 0;
	char *container = xstrfmt(LAUNCH_CONTAINER_PREFIX "%s", s->id);

	while (s->args && s->args[nargs])
		nargs++;
	buf_addstr(b, "#!/bin/sh\n# pystrib job ");
	shquote_arg(b, s->id);
	buf_addstr(b, ": written by pystrib (src/launch.c): its values, each shell-quoted,\n"
		   "# then src/remote/run.sh. Started in its job directory as `setsid sh run.sh`;\n"
		   "# the layout is described in docs/remote-job.md.\n");
	var(b, "ps_id", s->id);
	var(b, "ps_mode", script_mode(s));
	/* In the engine's container its pids are not the host's: cpid there,
	 * and pid (the host's) comes from `run` (launch_engine_config). */
	var(b, "ps_pidfile", s->in_engine ? "cpid" : s->srun ? "spid" : "pid");
	var_int(b, "ps_np", s->np);
	var_int(b, "ps_timeout", s->timeout > 0 ? s->timeout : 0);
	var(b, "ps_image", none ? "" : s->image);
	var(b, "ps_container", container);
	var(b, "ps_image_present", s->image_present ? "1" : "");
	var(b, "ps_login_registry", login ? s->login_registry : "");
	var(b, "ps_login_user", login ? s->login_user : "");
	var(b, "ps_tls_verify_off", s->tls_verify_off ? "1" : "");
	var(b, "ps_gpus", s->gpus);
	var_words(b, "ps_env", s->env, s->nenv);
	var(b, "ps_launcher", s->srun ? "srun" : "mpirun");
	var_mpirun_args(b, s->mpirun_args);
	var_words(b, "ps_args", s->args, nargs);
	var(b, "ps_python", none ? (s->python ? s->python : "python3") : context_cmd[0]);
	var(b, "ps_bootstrap", context_cmd[1]);
	var(b, "ps_cell", s->session ? "/pystrib/cell/session.py" : context_cmd[2]);
	var(b, "ps_workdir", s->workdir);
	var(b, "ps_cell_layer", none ? s->cell_layer : "");
	var(b, "ps_project_layer", none ? s->project_layer : "");
	if (none)
		var_image_env(b, s);
	else
		var(b, "ps_image_env", "");
	var(b, "ps_setup", none ? s->setup : "");
	var(b, "ps_session", s->session ? "1" : "");
	if (s->session && s->idle_timeout >= 0)
		var_int(b, "ps_idle_timeout", s->idle_timeout);
	else
		var(b, "ps_idle_timeout", "");
	var(b, "ps_hosts", s->hosts);
	var(b, "ps_master_addr", s->hosts ? s->master_addr : "");
	var_words(b, "ps_other_hosts", s->hosts ? s->other_hosts : NULL,
		  s->hosts ? s->nother_hosts : 0);
	free(container);
}

int launch_script(const struct launch_spec *s, struct buf *out)
{
	if (!s->id || !*s->id)
		return error_set(PS_EXIT_USAGE, "the job has no id");
	if (s->np < 1)
		return error_set(PS_EXIT_USAGE, "the number of ranks must be at least 1");
	if (s->gpus && !gpus_ok(s->gpus))
		return error_set(PS_EXIT_USAGE, "invalid GPU list '%s'", s->gpus),
		       error_hint("use 'all', a count (2) or device indexes (0,1)");
	for (size_t i = 0; i < s->nenv; i++) {
		const char *eq = strchr(s->env[i], '=');
		if (!eq || !launch_env_name_ok(s->env[i], (size_t)(eq - s->env[i])))
			return error_set(PS_EXIT_USAGE, "invalid environment setting '%s'",
					 s->env[i]),
			       error_hint("write --env KEY=VALUE, KEY made of letters, digits and _");
	}
	if (s->runtime != RUNTIME_NONE && (!s->image || !*s->image))
		return error_set(PS_EXIT_USAGE, "the job has no image to run");
	if (s->runtime == RUNTIME_NONE && (!s->cell_layer || !*s->cell_layer))
		return error_set(PS_EXIT_USAGE, "the job has no cell layer to unpack");

	const struct embedded *e = embedded_find("run.sh");
	if (!e)
		return error_set(PS_EXIT_USAGE, "the job script is not built in");
	header(out, s);
	buf_add(out, e->data, e->len);
	return out->toobig ? error_set(PS_EXIT_USAGE, "the job script is too large") : 0;
}
