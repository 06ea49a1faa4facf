#ifndef PYSTRIB_SHQUOTE_H
#define PYSTRIB_SHQUOTE_H

#include "buf.h"

/*
 * POSIX shell quoting, for every command line pystrib sends to a remote
 * host. A word made only of [A-Za-z0-9_@%+:,./-] is left bare; any other
 * word (including the empty one) is put in single quotes, each ' inside
 * written as '\''. The result, read by any POSIX sh, gives back exactly the
 * original bytes as one argument: nothing is expanded, split or run.
 *
 * Build every remote command from an argument vector with these; never
 * paste a string into a command line. All appenders return 0, or -1 when
 * the buffer's cap would be passed (the buffer is then unchanged).
 */

/* Appends one word, quoted. */
int shquote_arg(struct buf *out, const char *arg);

/*
 * Appends the NULL-terminated argv, each word quoted, separated by single
 * spaces. A leading space is added first when `out` is not empty.
 */
int shquote_argv(struct buf *out, const char *const *argv);

/*
 * Appends a remote path as one word. "~" and "~/rest" become "$HOME" and
 * "$HOME"/'rest' (the remote user's home, expanded by the remote shell,
 * nothing else expanded); any other path is quoted as shquote_arg does.
 * "~user/..." is not expanded (quoted literally).
 */
int shquote_path(struct buf *out, const char *path);

/* The NULL-terminated argv as one quoted command string; caller frees. */
char *shquote_command(const char *const *argv);

#endif
