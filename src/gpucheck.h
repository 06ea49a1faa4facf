#ifndef PYSTRIB_GPUCHECK_H
#define PYSTRIB_GPUCHECK_H

struct config;
struct ssh_conn;

/*
 * Whether a host can give the GPUs a job asks for ([remote] gpus, which
 * `run --gpus` sets), asked before anything starts (run) or by `doctor`:
 * nvidia-smi and the GPUs it lists, and the piece the runtime needs to
 * hand them to a container: the NVIDIA container toolkit for docker, a CDI
 * spec of nvidia.com/gpu for podman (nothing more for runtime none).
 */

/*
 * Asks the host, in one command. 0 when the GPUs can be given (or none are
 * asked for); *count (may be NULL) gets how many nvidia-smi lists (0 when
 * none are asked for). -1 with PS_EXIT_REMOTE naming the missing piece
 * ("'HOST' has no nvidia-smi ...", "... no NVIDIA container toolkit ...",
 * "... no CDI spec ..."), or the error of the connection, and a hint.
 */
int host_gpu_check(struct ssh_conn *c, const struct config *cfg, int *count);

/*
 * The judgement of host_gpu_check on the host's answer `out` (the lines
 * its command prints: "gpus N", "missing nvidia-smi", "missing toolkit",
 * "missing cdi") for `gpus` ("all", a count, indexes "0,1"); host names
 * the host in messages. Same results as host_gpu_check.
 */
int gpu_check_answer(const char *out, const char *gpus, const char *host, int *count);

#endif
