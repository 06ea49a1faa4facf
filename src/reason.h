#ifndef PYSTRIB_REASON_H
#define PYSTRIB_REASON_H

/*
 * Why a job could not run, as a code: the remote side (run.sh, jobctl.sh,
 * follow.sh) writes the code's name into the job directory's `reason` file
 * beside the human text in `error`, and the follower sends it on its `E`
 * line (docs/remote-job.md lists the codes). The C side decides on the
 * code, never on the text.
 */
enum job_reason {
	REASON_NONE = 0,	/* no reason recorded: a rank's own failure, if any */
	REASON_REGISTRY,	/* "registry": the host's login or pull was refused */
	REASON_DISK_FULL,	/* "disk-full": no space left on device */
	REASON_NOT_INSTALLED,	/* "not-installed": a command the job needs is missing on the host */
	REASON_NO_MPIRUN,	/* "no-mpirun": the image has no mpirun */
	REASON_SLOTS,		/* "slots": mpirun found fewer slots than ranks */
	REASON_NO_GPU,		/* "no-gpu": GPUs asked for, the host's runtime cannot give them */
	REASON_CONTAINER,	/* "container": the engine could not create or start the container */
	REASON_WORKDIR,		/* "workdir": the image's working directory is missing */
	REASON_SETUP,		/* "setup": [remote] setup or unpacking the cell's layers failed */
	REASON_LAUNCH,		/* "launch": mpirun failed before any rank ran */
	REASON_DIR_GONE,	/* "dir-gone": the job directory is gone (state lost) */
	REASON_DIED,		/* "died": the job script died without a final state (lost) */
	REASON_HOST,		/* "host": any other failure of the host, named by the text */
	REASON_COUNT
};

/* The code's name ("registry", ...); "" for REASON_NONE. */
const char *reason_name(enum job_reason r);

/*
 * The code of a name, the length n of it (a name read from a line need
 * not be NUL-terminated there). An unknown name (a newer remote script)
 * is REASON_HOST: some failure of the host. "" and "-" are REASON_NONE.
 */
enum job_reason reason_parse(const char *name, size_t n);

#endif
