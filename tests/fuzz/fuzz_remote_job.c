/*
 * libFuzzer harness for remote_job_parse: any byte string as the output
 * of `jobctl.sh read`. Aborts if the state it gives is not one the
 * callers can take: no state, a rank table shorter than np, an exit code
 * outside what a shell can give, a code outside enum job_reason.
 *
 *   cmake -S . -B build-fuzz -DPYSTRIB_FUZZ=ON -DCMAKE_C_COMPILER=clang
 *   build-fuzz/fuzz_remote_job -max_total_time=60
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "reason.h"
#include "remote_job.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct remote_job_state st;

	/* Not NUL-terminated: the parser must stop at size on its own. */
	char *copy = malloc(size ? size : 1);
	if (!copy)
		abort();
	memcpy(copy, data, size);
	if (remote_job_parse(copy, size, &st) != 0)
		abort();
	if (!st.state || !*st.state || !st.job_json || !st.rank_exit || !st.rank_ended)
		abort();
	if (st.np < 0 || st.np > 65536 || st.code < REASON_NONE || st.code >= REASON_COUNT)
		abort();
	for (int i = 0; i < st.np; i++)
		if (st.rank_exit[i] < -1 || st.rank_exit[i] > 255)
			abort();
	if (!strcmp(st.state, "lost") && st.code != REASON_DIR_GONE && st.code != REASON_DIED)
		abort();
	(void)reason_name(st.code);
	remote_job_state_release(&st);
	free(copy);
	return 0;
}
