/*
 * libFuzzer harness for results.c: any byte string as a results tar,
 * unpacked into a fresh DIR/dest. Aborts if anything appears in DIR
 * outside dest (an escape), or if the unpacking left the working
 * directory changed.
 *
 *   cmake -S . -B build-fuzz -DPYSTRIB_FUZZ=ON -DCMAKE_C_COMPILER=clang
 *   build-fuzz/fuzz_results -max_total_time=60
 */
#include <dirent.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "error.h"
#include "log.h"
#include "results.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char base[] = "/tmp/pystrib-fuzz-results-XXXXXX";
static char dest[sizeof(base) + 8];
static char cwd[4096];

static int remove_one(const char *path, const struct stat *st, int type, struct FTW *f)
{
	(void)st; (void)type; (void)f;
	return remove(path);
}

static void only_dest_in_base(void)
{
	DIR *d = opendir(base);
	struct dirent *de;
	if (!d)
		abort();
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..") && strcmp(de->d_name, "dest")) {
			fprintf(stderr, "escape: '%s' appeared beside the results\n", de->d_name);
			abort();
		}
	closedir(d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int ready;
	struct results_limits lim = { 1 << 20, 1000 };
	char now[4096];

	if (!ready) {
		if (!mkdtemp(base) || !getcwd(cwd, sizeof(cwd)))
			abort();
		snprintf(dest, sizeof(dest), "%s/dest", base);
		/* The warnings of rejected entries are expected: keep stderr quiet. */
		if (!freopen("/dev/null", "w", stderr))
			abort();
		ready = 1;
	}
	results_unpack_mem(data, size, dest, &lim, NULL);
	error_clear();
	if (!getcwd(now, sizeof(now)) || strcmp(now, cwd))
		abort();
	only_dest_in_base();
	nftw(dest, remove_one, 16, FTW_DEPTH | FTW_PHYS);
	return 0;
}
