#ifndef PYSTRIB_LAUNCH_H
#define PYSTRIB_LAUNCH_H

#include <jansson.h>
#include <stddef.h>

#include "buf.h"
#include "config.h"

/*
 * The job script, run.sh: everything a remote job does, as one POSIX sh
 * script written into the job's directory (docs/remote-job.md) and started
 * there detached (`cd JOBDIR && setsid sh run.sh`, remote_job.h). It is a
 * header of the job's values, `ps_NAME='value'`, each quoted (shquote.h),
 * then the fixed text of src/remote/run.sh, built in; lists (the cell's
 * arguments, --env) are words quoted once more, which run.sh reads back
 * with eval. [remote] setup (runtime none) is the one value run.sh runs as
 * shell code: the user's own.
 *
 * What it does, in order: records `pid` (its process group) and `started`;
 * traps TERM/INT/HUP (stops the container or mpirun, state `cancelled`, or
 * `timeout` when its own --timeout watchdog fired); docker/podman: logs in
 * (the password read from the script's stdin, into a private auth file
 * removed right after the pull), state `pulling`, pulls the pinned image,
 * state `running`, runs it as container pystrib-<id> with logs/ and
 * results/ bind-mounted at /pystrib/job/, host network and IPC (so the
 * host's /dev/shm), the --env values, the GPUs; none: unpacks the layers into cell/
 * and project/, runs the setup lines, then the host's mpirun and python.
 * Then it writes `exit`, `ended` and the final state; when the job could
 * not run, `reason` (a code of reason.h) and `error` (a line of text).
 */

struct launch_spec {
	const char *id;			/* job id, also names the container pystrib-<id> */
	enum runtime runtime;
	int np;
	int timeout;			/* seconds, 0: none (the script's own watchdog) */

	/* docker / podman */
	const char *image;		/* what to pull and run: "REGISTRY/REPO@sha256:..." */
	const char *login_registry;	/* registry host to log in to; NULL: no login */
	const char *login_user;		/* the password comes as the first line of stdin */
	int tls_verify_off;		/* podman: --tls-verify=false (plain-HTTP registry) */
	int image_present;		/* already on the host: no login, no pull */
	int in_engine;			/* docker: the script runs in the job's container,
					 * which the engine started (launch_engine_config);
					 * workdir is the image's WorkingDir */

	/* none */
	const char *cell_layer;		/* layer files, relative to the job directory */
	const char *project_layer;	/* NULL: no project */
	const char *python;		/* NULL: "python3" */
	const char *setup;		/* shell lines, run as they are; NULL: none */
	const char *workdir;		/* the image's WorkingDir ("/pystrib/project/x") */
	const char *const *image_env;	/* the image's Env ("PYSTRIB_CELL=/pystrib/..."), may be NULL */
	size_t nimage_env;
	const char *hosts;		/* several hosts: mpirun's -H list, this host first;
					 * NULL: this host alone */
	const char *master_addr;	/* with hosts: rank 0's host as the others reach it */
	const char *const *other_hosts;	/* with hosts: the others' names in -H */
	size_t nother_hosts;

	/* both */
	const char *const *env;		/* --env "KEY=VALUE" values (KEY validated by the caller) */
	size_t nenv;
	const char *gpus;		/* NULL, "all", "N" or "0,1" */
	const char *mpirun_args;	/* words separated by blanks, each quoted on its own */
	int srun;			/* scheduler slurm: the ranks start with srun --mpi=pmix
					 * (in the allocation) instead of mpirun (slurm.h) */
	const char *const *args;	/* the cell's arguments, NULL-terminated; may be NULL */

	/*
	 * A session (docs/sessions.md): the job's process is session.py's
	 * hub, which runs mpirun of session.py's workers; no cell, no
	 * arguments. docker/podman mount the whole job directory at
	 * /pystrib/job (the hub's sockets and files are there).
	 */
	int session;
	int idle_timeout;		/* seconds; 0: none; < 0: session.py's default */
};

/*
 * Appends run.sh for s to out. 0, or -1 with the error set (PS_EXIT_USAGE
 * for a spec that cannot be written: no image, a bad GPU spec, ...).
 */
int launch_script(const struct launch_spec *s, struct buf *out);

/*
 * The body of the engine's container create for a job of runtime docker
 * that starts without a remote shell: s->image with the container's own
 * command, `jobctl.sh engine` (it writes job_json and script, run.sh for s
 * with in_engine, into the job directory and starts it as `jobctl.sh
 * start` does, then waits for the results to be taken), the
 * job directory host_dir (absolute, on the host) mounted at /pystrib/job,
 * the environment and GPUs of `docker run` in run.sh, host network, IPC
 * and PIDs, removed when it ends. Caller decrefs.
 */
json_t *launch_engine_config(const struct launch_spec *s, const char *host_dir,
			     const char *job_json, const char *script);

/*
 * The job script's name and the container's name prefix, for remote_job.c
 * and the jobs commands.
 */
#define LAUNCH_SCRIPT "run.sh"
#define LAUNCH_CONTAINER_PREFIX "pystrib-"

/* 1 if name is a valid environment variable name ([A-Za-z_][A-Za-z0-9_]*). */
int launch_env_name_ok(const char *name, size_t len);

#endif
