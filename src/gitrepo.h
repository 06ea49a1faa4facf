#ifndef PYSTRIB_GITREPO_H
#define PYSTRIB_GITREPO_H

#include <stddef.h>
#include <stdint.h>

/*
 * The project: the files of a directory that go into the project layer,
 * and what git knows about them (libgit2).
 *
 * In a git work tree, the files are the tracked files (from the index, read
 * from the work tree as they are now) plus the untracked files that git does
 * not ignore (.gitignore, .git/info/exclude, core.excludesFile). Outside git,
 * the directory is walked, honouring any .gitignore files in it the same
 * way. In both cases .pystribignore files (gitignore syntax, patterns
 * relative to the file's directory, deeper files winning) then exclude
 * paths, tracked or not (only those in the project directory and below
 * count); .git is never included. Submodules and nested
 * repositories are left out with a warning. Symlinks are stored as symlinks
 * and never followed. Other special files (sockets, fifos) are skipped.
 *
 * The revision is HEAD's commit id with "-dirty" appended when the project
 * layer would not be exactly that commit's files: a tracked file modified,
 * staged or deleted, or an untracked (not ignored) file included. Paths
 * excluded by .pystribignore, and changes outside the project directory,
 * do not count. A repository without commits has no revision.
 */

enum project_file_kind { PROJECT_FILE, PROJECT_SYMLINK };

struct project_file {
	char *path;		/* relative to the project root, '/'-separated */
	enum project_file_kind kind;
	int executable;		/* any x bit set in the work tree */
	uint64_t size;		/* bytes (0 for a symlink) */
	char *link;		/* PROJECT_SYMLINK: the target as stored */
	/* From lstat, so an unchanged file can be recognised without reading it. */
	int64_t mtime_ns, ctime_ns;
	uint64_t ino, dev;
};

struct gitrepo {
	char *root;		/* the project directory: absolute, resolved, no trailing '/' */
	char *worktree;		/* the git work tree holding it; NULL outside git */
	struct project_file *files;	/* sorted by path (bytewise) */
	size_t nfiles, alloc_files;
	uint64_t bytes;		/* sum of file sizes */
	char *revision;		/* "<40 hex>" or "<40 hex>-dirty"; NULL without a commit */
	char *source;		/* origin's URL without credentials; NULL if none */
	long long commit_time;	/* HEAD's committer time; 0 without a commit */
	size_t nskipped;	/* submodules and nested repositories left out */
};

/*
 * The top of the git work tree containing path (a file or a directory),
 * absolute and resolved, in *root (caller frees); *root = NULL when path is
 * in no work tree (or only in a bare repository). 0, or -1 with the error
 * set when path does not exist or the repository cannot be opened.
 */
int gitrepo_find_worktree(const char *path, char **root);

/*
 * Lists the project rooted at the directory dir (see above) into r, which
 * the caller releases either way. When dir is inside a git work tree (its
 * top or a subdirectory), only files under dir are listed, with paths
 * relative to dir. 0, or -1 with the error set (PS_EXIT_USAGE).
 */
int gitrepo_scan(struct gitrepo *r, const char *dir);
void gitrepo_release(struct gitrepo *r);

/* Drops the file of that path from r, if listed (the cell, kept apart). */
void gitrepo_remove(struct gitrepo *r, const char *path);

/*
 * A remote URL fit for an image label: user info (user:password@, tokens)
 * removed from scheme URLs, query and fragment dropped; scp-like
 * "git@host:path" kept. Returns a new string (caller frees).
 */
char *gitrepo_public_url(const char *url);

/*
 * Gitignore syntax, for .pystribignore (and .gitignore outside git).
 * Rules keep the order git gives them: a rule from a deeper directory
 * beats one from above; within a file the last matching line wins; a path
 * under an excluded directory is excluded whatever comes after.
 */
struct ignore_rule {
	char *base;		/* directory of the rule's file, relative to the root; "" at the root */
	char *pattern;		/* without '!', leading '/', trailing '/' */
	int negate;		/* "!pattern" */
	int dir_only;		/* "pattern/" */
	int anchored;		/* had a '/' before its end: matched against the whole path */
	size_t depth;		/* components in base, for precedence */
};

struct ignore_rules {
	struct ignore_rule *v;
	size_t n, alloc;
};

#define IGNORE_RULES_INIT { NULL, 0, 0 }

/* Adds the rules in text (the contents of an ignore file in directory base). */
void ignore_rules_add_text(struct ignore_rules *r, const char *base, const char *text);
/* Reads the ignore file path (in directory base) if it exists. 0, or -1 with the error set. */
int ignore_rules_add_file(struct ignore_rules *r, const char *base, const char *path);
/* 1 if path (relative to the root; is_dir for a directory) or a parent is excluded, else 0. */
int ignore_rules_excluded(const struct ignore_rules *r, const char *path, int is_dir);
void ignore_rules_release(struct ignore_rules *r);

/*
 * Git's wildmatch with WM_PATHNAME: '*' and '?' do not match '/', "**"
 * between slashes matches any number of directories, [...] classes
 * (ranges, '!' or '^', [:alpha:] and friends), backslash escapes.
 * 1 if text matches pattern, else 0.
 */
int ignore_wildmatch(const char *pattern, const char *text);

#endif
