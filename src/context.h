#ifndef PYSTRIB_CONTEXT_H
#define PYSTRIB_CONTEXT_H

#include <stddef.h>

#include "layer.h"

/*
 * The context: what a cell needs in its image, laid out the same way in
 * both forms pystrib writes it in.
 *
 *   /pystrib/project/<path in the git work tree>   project layer (slow-changing)
 *   /pystrib/cell/user_code.py                     cell layer (fast-changing)
 *   /pystrib/cell/user_code.name                     the cell's name in tracebacks
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
 * in its header. The same inputs give the same digests, byte for byte
 * (tarball.h has the details).
 *
 * Which project (gitrepo.h says which files of it):
 *   --no-project         none;
 *   --project DIR        DIR: inside a git work tree, git's file list under
 *                        DIR; elsewhere, DIR walked (.gitignore honoured too);
 *   neither              the git work tree holding the cell; a cell outside
 *                        git gets no project (a stray cell in $HOME must not
 *                        pack up $HOME), said with -v.
 * The cell file itself is left out of the project layer (it is in the cell
 * layer), so editing the cell changes only the cell layer; so are the
 * layer cache and the `exclude` paths when they lie inside the project.
 *
 * Env is PYSTRIB_CELL, PYSTRIB_INPUTS, PYSTRIB_PROJECT (with a project) and
 * PYSTRIB_REVISION (with a commit), the same in both forms; the build
 * context's Dockerfile also carries the org.opencontainers.image.revision,
 * .created (commit time) and .source labels the pushed config should get.
 */

struct context_options {
	const char *cell;		/* the cell's .py file */
	const char *project_dir;	/* --project DIR; NULL: the work tree holding the cell */
	int no_project;			/* --no-project */
	const char *const *inputs;	/* --input files, copied to /pystrib/cell/inputs/ */
	int ninputs;
	const char *base;		/* base image reference, for the Dockerfile's FROM */
	/*
	 * A session's context (docs/sessions.md): no cell (cell is NULL); the
	 * cell layer holds bootstrap.py and session.py, and the project,
	 * without --project, is the git work tree holding the current
	 * directory. WorkingDir is the current directory's place in it.
	 */
	int session;
	/*
	 * Local paths never put into the project, files or directories (the
	 * build's output file, the results directory); may be NULL.
	 */
	const char *const *exclude;
	int nexclude;
	/* private: the array behind `inputs` when context_option() filled it */
	const char **input_list;
	int input_alloc;
};

struct context {
	struct layer project;		/* project.size == 0 when there is no project */
	struct layer cell;
	char *workdir;			/* the image's WorkingDir */
	char *revision;			/* git commit, "-dirty" appended; NULL without git */
	char *source;			/* the repository's origin URL; NULL if none */
	long long commit_time;		/* seconds since the epoch; 0 without git */
	char *project_root;		/* local path of the work tree; NULL without project */
	char **env;			/* "PYSTRIB_...=value" for the image config's Env */
	size_t nenv;
	char *created;			/* commit_time as RFC 3339 UTC ("1970-01-01T00:00:00Z" without git) */
	size_t project_files;		/* files in the project layer */
	unsigned long long project_bytes;	/* their total size */
};

/* The image's Cmd: python3 /pystrib/cell/bootstrap.py /pystrib/cell/user_code.py (NULL-terminated). */
extern const char *const context_cmd[];

/*
 * The options every command that builds a context takes (build, push, run),
 * for their getopt_long tables, help texts and option switches:
 *
 *	static const struct option opts[] = { CONTEXT_LONG_OPTIONS, ..., { 0, 0, 0, 0 } };
 *	...
 *	int r = context_option(&copts, c, optarg);
 *	if (r < 0) return error_report();
 *	if (r > 0) continue;
 *
 * context_option returns 1 when c was one of them (recorded in o), 0 when
 * not, -1 with the error set for a conflict (--project with --no-project).
 * context_options_release frees what it recorded.
 */
enum { CONTEXT_OPT_PROJECT = 0x300, CONTEXT_OPT_NO_PROJECT, CONTEXT_OPT_INPUT };
#define CONTEXT_LONG_OPTIONS \
	{ "project", required_argument, 0, CONTEXT_OPT_PROJECT }, \
	{ "no-project", no_argument, 0, CONTEXT_OPT_NO_PROJECT }, \
	{ "input", required_argument, 0, CONTEXT_OPT_INPUT }
#define CONTEXT_OPTIONS_HELP \
	"      --project DIR   put the files of DIR in the image (default: the git work\n" \
	"                      tree holding FILE; outside git, no project)\n" \
	"      --no-project    only the cell, its inputs and the bootstrap\n" \
	"      --input PATH    a file for the cell, in $PYSTRIB_INPUTS (repeatable)\n"
int context_option(struct context_options *o, int c, const char *arg);
void context_options_release(struct context_options *o);

/*
 * The default layer cache: $XDG_CACHE_HOME/pystrib/layers, else
 * ~/.cache/pystrib/layers. Returns a new string (caller frees).
 */
char *context_cache_dir(void);

/*
 * Removes from cache_dir the layers not used for unused_for seconds (by
 * their mtime, which context_build renews each time it reuses a layer),
 * never one used in the last CONTEXT_PRUNE_MIN_AGE seconds: a push may be
 * reading it. With dry_run, only counts them. Files of other names are
 * left alone. Failures to remove a file are warnings.
 */
#define CONTEXT_PRUNE_MIN_AGE 3600
struct context_pruned {
	unsigned files;
	unsigned long long bytes;
};
void context_cache_prune(const char *cache_dir, double unused_for, int dry_run,
			 struct context_pruned *out);

/*
 * Writes the two layers into cache_dir (created if needed; the layer files
 * are named by digest, so an unchanged layer is found again) and fills ctx.
 * A layer is written to a temporary file and renamed into place, so a
 * failure leaves nothing half-written. An index in cache_dir/index/ maps
 * the lstat identity of a layer's files (path, size, mtime, ctime, inode,
 * as git's index does) to its digest, so an unchanged project is not even
 * re-read; files changed in the last 2 s are never trusted to it.
 * Warns when the project is large (over 1,000 files or 100 MiB), naming the
 * largest directories. 0, or -1 with the error set (PS_EXIT_USAGE for a bad
 * path or git problem).
 */
int context_build(struct context *ctx, const struct context_options *opts,
		  const char *cache_dir);

/*
 * Writes the Docker build-context tarball (plain tar, deterministic) to
 * out_path through a temporary file and a rename, or streams it to stdout
 * when out_path is "-". opts->base is required. 0 or -1 with the error set.
 */
int context_write_build_tar(const struct context_options *opts, const char *out_path);

void context_release(struct context *ctx);

#endif
