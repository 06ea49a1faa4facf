#ifndef PYSTRIB_TESTUTIL_H
#define PYSTRIB_TESTUTIL_H

#include <sys/types.h>

#include "util.h"

/*
 * What the cmocka unit tests share (tests/unit/testutil.c, linked into
 * every test_*.c). Each helper fails the current test on error, so callers
 * need no checks of their own.
 */

/* git with a fixed identity and branch, for sh() command lines. */
#define TEST_GIT "git -c user.name=t -c user.email=t@example.com -c init.defaultBranch=main "

/*
 * Makes a fresh /tmp/pystrib-test-NAME-XXXXXX and points HOME and the XDG
 * directories into it, with GIT_CONFIG_NOSYSTEM set, so nothing of the
 * user's configuration, caches or state leaks into a test or out of it.
 * Returns the directory (free it with test_tmpdir_remove).
 */
char *test_tmpdir(const char *name);

/* Removes the directory and everything in it, and frees the string. */
void test_tmpdir_remove(char *dir);

/* Runs a shell command line in dir, output discarded; the test fails if it does. */
void test_sh(const char *dir, const char *fmt, ...) PRINTF_LIKE(2, 3);

/* Writes text to dir/name with the given mode; returns the path (caller frees). */
char *test_write_file(const char *dir, const char *name, const char *text, mode_t mode);

/* A TCP port on 127.0.0.1 that was free a moment ago (for a server the test starts). */
int test_free_port(void);

/* 1 when something accepts connections on 127.0.0.1:port. */
int test_port_open(int port);

#endif
