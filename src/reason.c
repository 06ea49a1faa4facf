#include <string.h>

#include "reason.h"
#include "util.h"

static const char *const names[REASON_COUNT] = {
	[REASON_NONE] = "",
	[REASON_REGISTRY] = "registry",
	[REASON_DISK_FULL] = "disk-full",
	[REASON_NOT_INSTALLED] = "not-installed",
	[REASON_NO_MPIRUN] = "no-mpirun",
	[REASON_SLOTS] = "slots",
	[REASON_NO_GPU] = "no-gpu",
	[REASON_CONTAINER] = "container",
	[REASON_WORKDIR] = "workdir",
	[REASON_SETUP] = "setup",
	[REASON_LAUNCH] = "launch",
	[REASON_DIR_GONE] = "dir-gone",
	[REASON_DIED] = "died",
	[REASON_HOST] = "host",
};

const char *reason_name(enum job_reason r)
{
	return r >= 0 && r < REASON_COUNT ? names[r] : names[REASON_HOST];
}

enum job_reason reason_parse(const char *name, size_t n)
{
	if (!name || n == 0 || (n == 1 && name[0] == '-'))
		return REASON_NONE;
	for (int r = 1; r < REASON_COUNT; r++)
		if (strlen(names[r]) == n && !memcmp(names[r], name, n))
			return (enum job_reason)r;
	return REASON_HOST;
}
