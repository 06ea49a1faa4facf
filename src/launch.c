#include "launch.h"

#include <ctype.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "context.h"
#include "error.h"
#include "shquote.h"

/* Appends " WORD" (quoted). */
static void word(struct buf *b, const char *w)
{
	buf_addch(b, ' ');
	shquote_arg(b, w);
}

/* Appends " A B C" joined as one word (quoted), e.g. KEY=VALUE. */
static void word3(struct buf *b, const char *a, const char *v, const char *c)
{
	char *s = xstrfmt("%s%s%s", a, v, c);
	word(b, s);
	free(s);
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

/* The words of mpirun_args, split on blanks, each quoted. */
static void mpirun_words(struct buf *b, const char *args)
{
	const char *p = args;
	while (p && *p) {
		p += strspn(p, " \t\n");
		size_t n = strcspn(p, " \t\n");
		if (!n)
			break;
		char *w = xstrndup(p, n);
		word(b, w);
		free(w);
		p += n;
	}
}

/*
 * "/pystrib/rest" as it lies in the job directory for runtime none:
 * "$J"/'rest' ("/pystrib/cell/x" -> "$J"/'cell/x').
 */
static void job_path(struct buf *b, const char *image_path)
{
	const char *rest = image_path;
	if (!strncmp(rest, "/pystrib/", 9))
		rest += 9;
	else if (!strcmp(rest, "/pystrib"))
		rest = "";
	while (*rest == '/')
		rest++;
	buf_addstr(b, "\"$J\"");
	if (*rest) {
		buf_addch(b, '/');
		shquote_arg(b, rest);
	}
}

static const char prologue[] =
	"J=$(pwd -P) || exit 1\n"
	"umask 022\n"
	"mkdir -p \"$J/logs\" \"$J/results\"\n"
	"set_state() { printf '%s\\n' \"$1\" > \"$J/state.tmp\" && mv -f \"$J/state.tmp\" \"$J/state\"; }\n"
	"now() { date +%s.%N; }\n"
	"printf '%s\\n' $$ > \"$J/$pidfile.tmp\" && mv -f \"$J/$pidfile.tmp\" \"$J/$pidfile\"\n"
	"now > \"$J/started\"\n"
	"stop=''\n"
	"child=''\n"
	"SHM=''\n"
	"stop_container() { :; }\n"
	"cleanup() { :; }\n"
	/* Why the job could not run, for pystrib's summary and exit code: one
	 * line in `error`, "registry: ..." for the registry's side, else the
	 * host's (a missing command, a full disk, an engine error). */
	"host_error() {\n"
	"\tm=$1\n"
	"\tif grep -qi 'no space left on device' \"$J/logs/job.err\" 2>/dev/null; then\n"
	"\t\tm=\"the disk is full (no space left on device): ${m#registry: }\"\n"
	"\tfi\n"
	"\tprintf 'pystrib: %s\\n' \"$m\" >&2\n"
	"\tprintf '%s\\n' \"$m\" > \"$J/error.tmp\" && mv -f \"$J/error.tmp\" \"$J/error\"\n"
	"\tfinish \"$2\"\n"
	"}\n"
	"need() {\n"
	"\tcommand -v \"$1\" >/dev/null 2>&1 ||"
	" host_error \"'$1' is not installed on this host (or not on the PATH of its SSH sessions: $PATH)\" 127\n"
	"}\n"
	"last_err() { tail -n 1 \"$J/logs/job.err\" 2>/dev/null | cut -c1-300; }\n"
	"step_failed() {\n"
	"\t[ -z \"$stop\" ] || finish \"$1\"\n"
	"\thost_error \"$2: $(last_err)\" \"$1\"\n"
	"}\n"
	/* A trapped signal interrupts `wait`, never a foreground command: every long
	 * step runs in the background and is waited for here. */
	"on_signal() {\n"
	"\t[ -n \"$stop\" ] || stop=cancelled\n"
	"\t[ -f \"$J/timedout\" ] && stop=timeout\n"
	"\t[ -z \"$child\" ] || kill -TERM \"$child\" 2>/dev/null\n"
	"\tstop_container\n"
	"}\n"
	"trap on_signal TERM INT HUP\n"
	"run_bg() {\n"
	"\t[ -z \"$stop\" ] || return 143\n"
	"\t\"$@\" &\n"
	"\tchild=$!\n"
	"\twhile :; do\n"
	"\t\twait \"$child\"\n"
	"\t\trc=$?\n"
	"\t\tkill -0 \"$child\" 2>/dev/null || break\n"
	"\tdone\n"
	"\tchild=''\n"
	"\treturn \"$rc\"\n"
	"}\n"
	"finish() {\n"
	"\trc=$1\n"
	"\tcleanup\n"
	"\t[ -z \"$SHM\" ] || [ \"$SHM\" = /dev/shm ] || rm -rf \"$SHM\"\n"
	"\tif [ \"$rc\" -ne 0 ] && [ -z \"$stop\" ] && [ ! -f \"$J/error\" ] &&"
	" grep -qi 'no space left on device' \"$J/logs/job.err\" 2>/dev/null; then\n"
	"\t\tprintf '%s\\n' 'the disk is full (no space left on device)' > \"$J/error\"\n"
	"\tfi\n"
	"\tprintf '%s\\n' \"$rc\" > \"$J/exit.tmp\" && mv -f \"$J/exit.tmp\" \"$J/exit\"\n"
	"\tnow > \"$J/ended\"\n"
	"\t[ ! -f \"$J/timedout\" ] || stop=timeout\n"
	"\tif [ -n \"$stop\" ]; then set_state \"$stop\"\n"
	"\telif [ \"$rc\" -eq 0 ]; then set_state succeeded\n"
	"\telse set_state failed; fi\n"
	/* The container goes after the final state, so that nobody waits for
	 * its removal to learn how the job ended. */
	"\tstop_container\n"
	/* Whatever is left of the job's process group (the watchdog, a rank
	 * mpirun left behind) goes with it. */
	"\ttrap '' TERM\n"
	"\tkill -TERM -$$ 2>/dev/null\n"
	"\texit \"$rc\"\n"
	"}\n";

static void add_timeout(struct buf *b, int timeout)
{
	if (timeout <= 0)
		return;
	buf_addf(b, "( trap - TERM; sleep %d; : > \"$J/timedout\"; kill -TERM $$ ) "
		 "</dev/null >/dev/null 2>&1 &\n", timeout);
}

/* The mpirun command line, after `run_bg`, for the image or the host. */
static void add_mpirun(struct buf *b, const struct launch_spec *s, int root_flag,
		       const char *python, int host_paths)
{
	buf_addstr(b, " mpirun");
	if (root_flag == 1)
		buf_addstr(b, " --allow-run-as-root");
	else if (root_flag == 2)
		buf_addstr(b, " $root_flag");
	buf_addf(b, " -np %d", s->np);
	mpirun_words(b, s->mpirun_args);
	word(b, python);
	if (host_paths) {
		buf_addch(b, ' ');
		job_path(b, "/pystrib/cell/bootstrap.py");
		buf_addch(b, ' ');
		job_path(b, "/pystrib/cell/user_code.py");
	} else {
		word(b, context_cmd[1]);
		word(b, context_cmd[2]);
	}
	for (const char *const *a = s->args; a && *a; a++)
		word(b, *a);
	buf_addch(b, '\n');
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

/* Logs in (login: the password is in $PW) and pulls, unless the image is there. */
static void add_pull(struct buf *b, const struct launch_spec *s, int login)
{
	if (s->runtime == RUNTIME_DOCKER)
		buf_addstr(b, "if ! docker image inspect --format . ");
	else
		buf_addstr(b, "if ! podman image exists ");
	shquote_arg(b, s->image);
	buf_addstr(b, " >/dev/null 2>&1; then\n");
	if (login) {
		buf_addstr(b, "(umask 077; mkdir -p \"$AUTH\")\n");
		if (s->runtime == RUNTIME_DOCKER) {
			buf_addstr(b, "printf '%s\\n' \"$PW\" | DOCKER_CONFIG=\"$AUTH\" docker login"
				   " --password-stdin --username");
			word(b, s->login_user);
			word(b, s->login_registry);
		} else {
			buf_addstr(b, "printf '%s\\n' \"$PW\" | podman login --authfile \"$AUTH/auth.json\"");
			if (s->tls_verify_off)
				buf_addstr(b, " --tls-verify=false");
			buf_addstr(b, " --password-stdin --username");
			word(b, s->login_user);
			word(b, s->login_registry);
		}
		buf_addstr(b, " >/dev/null || { PW=''; step_failed 125"
			   " \"registry: the registry refused the login of $RT on this host\"; }\n");
	}
	buf_addstr(b, "set_state pulling\n");
	if (s->runtime == RUNTIME_DOCKER) {
		buf_addstr(b, login ? "run_bg env DOCKER_CONFIG=\"$AUTH\" docker pull -q"
			   : "run_bg docker pull -q");
		word(b, s->image);
		buf_addstr(b, " >/dev/null || step_failed $? \"registry: docker could not pull the image\"\n");
	} else {
		buf_addf(b, "run_bg podman pull -q%s", s->tls_verify_off ? " --tls-verify=false" : "");
		if (login)
			buf_addstr(b, " --authfile \"$AUTH/auth.json\"");
		word(b, s->image);
		buf_addstr(b, " >/dev/null || step_failed $? \"registry: podman could not pull the image\"\n");
	}
	buf_addstr(b, "fi\n");
	if (login)
		buf_addstr(b, "PW=''\n");
}

static int add_container(struct buf *b, const struct launch_spec *s)
{
	char count[32];
	const char *rt = s->runtime == RUNTIME_DOCKER ? "docker" : "podman";
	char *name = xstrfmt(LAUNCH_CONTAINER_PREFIX "%s", s->id);

	buf_addf(b, "RT=%s\nC=", rt);
	shquote_arg(b, name);
	buf_addstr(b, "\nneed \"$RT\"\nprintf '%s\\n' \"$RT\" > \"$J/runtime\"\n"
		   "printf '%s\\n' \"$C\" > \"$J/container\"\n"
		   "stop_container() { \"$RT\" rm -f \"$C\" >/dev/null 2>&1; }\n");
	if (s->runtime == RUNTIME_PODMAN)
		buf_addstr(b, "stop_container() { podman rm -f -t 0 \"$C\" >/dev/null 2>&1; }\n");
	int login = s->login_registry && s->login_user && !s->image_present;
	if (login) {
		/* The password: first line of stdin, into a file of our own only
		 * for as long as the pull takes. */
		buf_addstr(b, "IFS= read -r PW || PW=''\nexec </dev/null\n"
			   "AUTH=\"$J/.auth\"\n"
			   "cleanup() { rm -rf \"$AUTH\"; }\n");
	} else {
		buf_addstr(b, "exec </dev/null\n");
	}
	/* Pinned by digest: an image already there (pulled through the
	 * engine's socket by `run`, or by an earlier job) is this one, and
	 * neither login nor pull is needed. */
	if (!s->image_present)
		add_pull(b, s, login);
	/* Host IPC: the ranks share the host's /dev/shm, as large as the host
	 * allows (podman refuses --shm-size with it; docker ignores it). */
	/*
	 * Host IPC puts every container's Open MPI shared-memory files in the
	 * host's /dev/shm, named after mpirun's pid: 1 in every container.
	 * Two jobs at once would unlink each other's files (and hang): each
	 * job gets a directory of its own there.
	 */
	buf_addstr(b, "SHM=/dev/shm/$C\nmkdir -p \"$SHM\" 2>/dev/null || SHM=/dev/shm\n");
	buf_addstr(b, "cleanup\nnow > \"$J/launched\"\nset_state running\nrun_bg \"$RT\" run --name \"$C\" --network host --ipc host");
	buf_addstr(b, " -v \"$J/logs:/pystrib/job/logs\" -v \"$J/results:/pystrib/job/results\"");
	buf_addstr(b, " -e PYSTRIB_JOB_DIR=/pystrib/job -e PYSTRIB_RESULTS=/pystrib/job/results");
	word(b, "-e");
	word3(b, "PYSTRIB_JOB_ID=", s->id, "");
	buf_addstr(b, " -e OMPI_ALLOW_RUN_AS_ROOT=1 -e OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1"
		   " -e \"OMPI_MCA_btl_vader_backing_directory=$SHM\"");
	if (s->gpus) {
		/* Inside, CUDA numbers the devices it was given from 0: the
		 * bootstrap deals out that many, not the host's indexes. */
		word(b, "-e");
		word3(b, "PYSTRIB_GPUS=", container_gpus(s->gpus, count, sizeof(count)), "");
		if (s->runtime == RUNTIME_DOCKER) {
			if (!strcmp(s->gpus, "all") || !strchr(s->gpus, ',')) {
				word(b, "--gpus");
				word(b, s->gpus);
			} else {
				word(b, "--gpus");
				word3(b, "\"device=", s->gpus, "\"");
			}
		} else {
			/* CDI devices: nvidia.com/gpu=all, =0, =1 ... */
			if (!strcmp(s->gpus, "all")) {
				word(b, "--device");
				word(b, "nvidia.com/gpu=all");
			} else if (!strchr(s->gpus, ',')) {
				long n = atol(s->gpus);
				for (long i = 0; i < n; i++) {
					char idx[32];
					snprintf(idx, sizeof(idx), "%ld", i);
					word(b, "--device");
					word3(b, "nvidia.com/gpu=", idx, "");
				}
			} else {
				const char *p = s->gpus;
				while (*p) {
					size_t n = strcspn(p, ",");
					char *idx = xstrndup(p, n);
					word(b, "--device");
					word3(b, "nvidia.com/gpu=", idx, "");
					free(idx);
					p += n + (p[n] == ',');
				}
			}
		}
	}
	for (size_t i = 0; i < s->nenv; i++) {
		word(b, "-e");
		word(b, s->env[i]);
	}
	word(b, s->image);
	add_mpirun(b, s, 1, context_cmd[0], 0);
	/* 125: the engine could not create or start the container; 127: no
	 * mpirun in the image (no rank ever started). */
	buf_addstr(b, "rc=$?\n"
		   "if [ -z \"$stop\" ] && [ \"$rc\" -eq 125 ]; then\n"
		   "\tstep_failed 125 \"$RT could not start the container\"\n"
		   "elif [ -z \"$stop\" ] && [ \"$rc\" -eq 127 ] && ! ls \"$J\"/logs/rank.*.exit >/dev/null 2>&1; then\n"
		   "\thost_error \"the image has no 'mpirun' (Open MPI) on its PATH\" 127\n"
		   "fi\n"
		   "finish \"$rc\"\n");
	free(name);
	return 0;
}

static int add_host(struct buf *b, const struct launch_spec *s)
{
	const char *python = s->python ? s->python : "python3";

	buf_addstr(b, "exec </dev/null\nprintf 'none\\n' > \"$J/runtime\"\nset_state running\n");
	buf_addstr(b, "tar -xzf");
	word(b, s->cell_layer);
	buf_addstr(b, " --strip-components=1 || finish 125\n");
	if (s->project_layer) {
		buf_addstr(b, "tar -xzf");
		word(b, s->project_layer);
		buf_addstr(b, " --strip-components=1 || finish 125\n");
	}
	buf_addstr(b, "export PYSTRIB_JOB_DIR=\"$J\" PYSTRIB_RESULTS=\"$J/results\"\nexport");
	word3(b, "PYSTRIB_JOB_ID=", s->id, "");
	buf_addch(b, '\n');
	for (size_t i = 0; i < s->nimage_env; i++) {
		const char *e = s->image_env[i], *eq = strchr(e, '=');
		if (!eq || !launch_env_name_ok(e, (size_t)(eq - e)))
			continue;
		buf_addf(b, "export %.*s=", (int)(eq - e), e);
		if (!strncmp(eq + 1, "/pystrib", 8))
			job_path(b, eq + 1);
		else
			shquote_arg(b, eq + 1);
		buf_addch(b, '\n');
	}
	if (s->gpus) {
		buf_addstr(b, "export");
		word3(b, "PYSTRIB_GPUS=", s->gpus, "");
		buf_addch(b, '\n');
	}
	for (size_t i = 0; i < s->nenv; i++) {
		buf_addstr(b, "export");
		word(b, s->env[i]);
		buf_addch(b, '\n');
	}
	buf_addstr(b, "root_flag=''\n"
		   "if [ \"$(id -u)\" = 0 ]; then root_flag=--allow-run-as-root;"
		   " export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi\n");
	if (s->setup && *s->setup) {
		buf_addstr(b, "# [remote] setup, as written in the configuration:\n");
		buf_addstr(b, s->setup);
		buf_addstr(b, "\n# end of [remote] setup\n");
	}
	buf_addstr(b, "cd ");
	job_path(b, s->workdir ? s->workdir : "/pystrib/cell");
	buf_addstr(b, " || finish 125\nneed mpirun\nneed");
	word(b, python);
	buf_addstr(b, "\nnow > \"$J/launched\"\nrun_bg");
	add_mpirun(b, s, 2, python, 1);
	buf_addstr(b, "finish $?\n");
	return 0;
}

/*
 * In the job's container, started by the engine (s->in_engine): the
 * environment and mounts are the container's own (launch_engine_config);
 * the script runs mpirun itself.
 */
static void add_inside(struct buf *b, const struct launch_spec *s)
{
	char *name = xstrfmt(LAUNCH_CONTAINER_PREFIX "%s", s->id);
	buf_addstr(b, "exec </dev/null\nprintf 'docker\\n' > \"$J/runtime\"\nC=");
	shquote_arg(b, name);
	buf_addstr(b, "\nprintf '%s\\n' \"$C\" > \"$J/container\"\n"
		   "SHM=/dev/shm/$C\nmkdir -p \"$SHM\" 2>/dev/null || SHM=/dev/shm\n"
		   "export OMPI_MCA_btl_vader_backing_directory=\"$SHM\"\n"
		   "root_flag=''\n"
		   "if [ \"$(id -u)\" = 0 ]; then root_flag=--allow-run-as-root;"
		   " export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi\n"
		   "cd ");
	shquote_arg(b, s->workdir && *s->workdir ? s->workdir : "/");
	buf_addstr(b, " || host_error \"the image's working directory is missing\" 125\n"
		   "command -v mpirun >/dev/null 2>&1 ||"
		   " host_error \"the image has no 'mpirun' (Open MPI) on its PATH\" 127\n"
		   "now > \"$J/launched\"\nset_state running\nrun_bg");
	add_mpirun(b, s, 2, context_cmd[0], 0);
	buf_addstr(b, "finish $?\n");
	free(name);
}

/*
 * The container's own command under the engine: makes the job directory
 * what `jobctl.sh start` makes of it ($1 job.json, $2 run.sh), starts
 * run.sh in a session of its own, and, once it ended, stays until the
 * results were taken: `run` kills the container once its follower (in
 * here) is done; a follower through a shell leaves .collected, so does a
 * cancel; else a minute. The container's end takes its processes with it.
 */
static const char engine_main[] =
	"cd /pystrib/job || exit 1\n"
	/* A cancel that came first claimed the job (jobctl.sh cancel). */
	"mkdir .claimed 2>/dev/null || exit 0\n"
	"umask 022\n"
	"mkdir -p logs results || exit 1\n"
	"printf '%s' \"$1\" > job.json.tmp && mv -f job.json.tmp job.json || exit 1\n"
	"printf '%s' \"$2\" > run.sh.tmp && chmod 755 run.sh.tmp && mv -f run.sh.tmp run.sh || exit 1\n"
	"printf 'submitted\\n' > state.tmp && mv -f state.tmp state\n"
	"if command -v setsid >/dev/null 2>&1; then\n"
	"\tsetsid sh run.sh </dev/null >> logs/job.err 2>&1 &\n"
	"else\n"
	"\tsh run.sh </dev/null >> logs/job.err 2>&1 &\n"
	"fi\n"
	"child=$!\n"
	/* The host's pid file names this process: a cancel's TERM goes on to
	 * the job script, which stops the ranks and writes the final state. */
	"trap 'kill -TERM \"$child\" 2>/dev/null' TERM INT HUP\n"
	"while kill -0 \"$child\" 2>/dev/null; do wait \"$child\"; done\n"
	"i=0\n"
	"while [ ! -f .collected ] && [ \"$i\" -lt 600 ]; do sleep 0.1; i=$((i + 1)); done\n";

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
	return json_pack("{s:s,s:[s,s,s,s,s,s],s:o,s:{s:s},s:o}", "Image", s->image,
			 "Cmd", "sh", "-c", engine_main, "pystrib-job", job_json, script,
			 "Env", env, "Labels", "pystrib.job", s->id, "HostConfig", host);
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

	buf_addstr(out, "#!/bin/sh\n# pystrib job");
	word(out, s->id);
	buf_addstr(out, ": written by pystrib (src/launch.c), every value shell-quoted.\n"
		   "# Started in its job directory as `setsid sh run.sh`; the layout is\n"
		   "# described in docs/remote-job.md.\n");
	/* In the engine's container its pids are not the host's: cpid there,
	 * and pid (the host's) comes from `run` (launch_engine_config). */
	buf_addstr(out, s->in_engine ? "pidfile=cpid\n" : "pidfile=pid\n");
	buf_addstr(out, prologue);
	add_timeout(out, s->timeout);
	if (s->runtime == RUNTIME_NONE)
		add_host(out, s);
	else if (s->in_engine)
		add_inside(out, s);
	else
		add_container(out, s);
	return out->toobig ? error_set(PS_EXIT_USAGE, "the job script is too large") : 0;
}
