#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "config.h"
#include "error.h"
#include "gpucheck.h"
#include "shquote.h"
#include "ssh.h"

/*
 * One round trip: what is missing, else how many GPUs. The toolkit's hook
 * is what docker's --gpus runs (nvidia-ctk and nvidia-container-cli come
 * with it); podman hands devices over by their CDI spec.
 */
static const char script[] =
	"command -v nvidia-smi >/dev/null 2>&1 || { echo missing nvidia-smi; exit 0; }\n"
	"echo gpus $(nvidia-smi -L 2>/dev/null | grep -c '^GPU ')\n"
	"case $1 in\n"
	"docker)\n"
	"\tfor p in nvidia-container-runtime-hook nvidia-ctk nvidia-container-cli; do\n"
	"\t\tcommand -v $p >/dev/null 2>&1 && exit 0\n"
	"\tdone\n"
	"\techo missing toolkit ;;\n"
	"podman)\n"
	"\tgrep -qs nvidia.com/gpu /etc/cdi/*.yaml /etc/cdi/*.json /var/run/cdi/*.yaml"
	" /var/run/cdi/*.json || echo missing cdi ;;\n"
	"esac\n";

/* How many devices gpus asks for: "all" is 1 at least, "2" is 2, "0,3" needs index 3. */
static int wanted(const char *gpus)
{
	long n = 0;

	if (!strcmp(gpus, "all"))
		return 1;
	if (!strchr(gpus, ','))
		return atoi(gpus);
	/* Indexes: the highest one must exist. */
	for (const char *p = gpus; *p;) {
		char *end;
		long i = strtol(p, &end, 10);
		if (i + 1 > n)
			n = i + 1;
		p = *end == ',' ? end + 1 : end + strlen(end);
	}
	return (int)n;
}

static int missing(const char *what, const char *host)
{
	error_set(PS_EXIT_REMOTE, "'%s' cannot give GPUs: %s", host, what);
	return -1;
}

int gpu_check_answer(const char *out, const char *gpus, const char *host, int *count)
{
	const char *line = strstr(out, "gpus ");
	int n = line ? atoi(line + 5) : 0, want = wanted(gpus);

	if (strstr(out, "missing nvidia-smi"))
		return missing("it has no nvidia-smi (the NVIDIA driver)", host),
		       error_hint("install the NVIDIA driver on the host, or run without --gpus"
				  " ([remote] gpus)");
	if (strstr(out, "missing toolkit"))
		return missing("docker there has no NVIDIA container toolkit"
			       " (nvidia-container-runtime-hook, nvidia-ctk)", host),
		       error_hint("install nvidia-container-toolkit on the host and restart dockerd,"
				  " or use [remote] runtime podman (CDI) or none");
	if (strstr(out, "missing cdi"))
		return missing("podman there has no CDI spec for nvidia.com/gpu"
			       " (in /etc/cdi or /var/run/cdi)", host),
		       error_hint("run 'nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml' on the"
				  " host");
	if (!line)
		return error_set(PS_EXIT_REMOTE, "'%s' gave no answer about its GPUs", host);
	if (n == 0)
		return missing("nvidia-smi lists no GPU", host),
		       error_hint("check the driver with nvidia-smi on the host, or run without"
				  " --gpus");
	if (want > n)
		return error_set(PS_EXIT_REMOTE, "'%s' has %d GPU%s; '%s' asks for %d", host, n,
				 n == 1 ? "" : "s", gpus, want),
		       error_hint("ask for at most %d (--gpus all takes every one)", n);
	if (count)
		*count = n;
	return 0;
}

int host_gpu_check(struct ssh_conn *c, const struct config *cfg, int *count)
{
	const struct remote_config *r = &cfg->remote;
	const char *argv[] = { "sh", "-c", script, "sh", runtime_name(r->runtime), NULL };
	struct buf cmd = BUF_INIT, out;
	int ret;

	if (count)
		*count = 0;
	if (!r->gpus || !strcmp(r->gpus, "0"))
		return 0;
	buf_init(&out, 1 << 16);
	/* Runtime none runs the job after [remote] setup: its PATH is the job's.
	 * What the setup prints is not the answer (a group, so its exports stay). */
	if (r->runtime == RUNTIME_NONE && r->setup)
		buf_addf(&cmd, "{ %s\n} >/dev/null\n", r->setup);
	shquote_argv(&cmd, argv);
	ret = ssh_conn_run(c, cmd.ptr, "sh", &out);
	if (ret == 0)
		ret = gpu_check_answer(out.ptr, r->gpus, ssh_conn_name(c), count);
	buf_release(&cmd);
	buf_release(&out);
	return ret < 0 ? -1 : 0;
}
