#ifndef PYSTRIB_CONTEXT_H
#define PYSTRIB_CONTEXT_H

#include "layer.h"

/*
 * The context: what a cell needs in its image, laid out the same way in
 * both forms pystrib writes it in.
 *
 *   /pystrib/project/<path in the git work tree>   project layer (slow-changing)
 *   /pystrib/cell/user_code.py                     cell layer (fast-changing)
 *   /pystrib/cell/bootstrap.py                       (src/remote/bootstrap.py)
 *   /pystrib/cell/inputs/<name>                      (--input files)
 *
 * WorkingDir is /pystrib/project/<the cell's directory in the work tree>
 * with a project, else /pystrib/cell. The command is
 *   python3 /pystrib/cell/bootstrap.py /pystrib/cell/user_code.py
 *
 * The Docker build-context tarball (`pystrib build -o`) holds a Dockerfile
 * (from dockerfiles/cell.Dockerfile) plus project/ and cell/ with the same
 * files, so `docker build - < OUT.tar` gives an image that runs the same way.
 *
 * Layers are deterministic: entries sorted by path, mtime 0, uid/gid 0, no
 * user or group names, modes normalised (0755 for executables and
 * directories, 0644 otherwise), gzip at a fixed level with no name or time
 * in its header. The same inputs give the same digests, byte for byte.
 */

struct context_options {
	const char *cell;		/* the cell's .py file */
	const char *project_dir;	/* --project DIR; NULL: the work tree holding the cell */
	int no_project;			/* --no-project */
	const char *const *inputs;	/* --input files, copied to /pystrib/cell/inputs/ */
	int ninputs;
	const char *base;		/* base image reference, for the Dockerfile's FROM */
};

struct context {
	struct layer project;		/* project.size == 0 when there is no project */
	struct layer cell;
	char *workdir;			/* the image's WorkingDir */
	char *revision;			/* git commit, "-dirty" appended; NULL without git */
	char *source;			/* the repository's origin URL; NULL if none */
	long long commit_time;		/* seconds since the epoch; 0 without git */
	char *project_root;		/* local path of the work tree; NULL without project */
};

/*
 * Writes the two layers into cache_dir (created if needed; the layer files
 * are named by digest, so an unchanged layer is found again) and fills ctx.
 * Warns when the project is large (over 1,000 files or 100 MiB), naming the
 * largest directories. 0, or -1 with the error set (PS_EXIT_USAGE for a bad
 * path or git problem).
 */
int context_build(struct context *ctx, const struct context_options *opts,
		  const char *cache_dir);

/* Writes the Docker build-context tarball to out_path. 0 or -1. */
int context_write_build_tar(const struct context_options *opts, const char *out_path);

void context_release(struct context *ctx);

#endif
