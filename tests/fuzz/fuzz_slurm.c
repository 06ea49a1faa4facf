/*
 * libFuzzer harness for slurm.c's parsers: any bytes as sbatch's, squeue's
 * or scontrol's output, as srun's lines of logs/job.err, and as [slurm]
 * extra. Aborts if a parse that
 * succeeded gives a state that is not a word of A-Z and _, an id that is
 * not digits, a node failure that does not name a node, or words that
 * /bin/sh would not read back as one word each (a quoted word is bare or
 * in single quotes).
 *
 *   cmake -S . -B build-fuzz -DPYSTRIB_FUZZ=ON -DCMAKE_C_COMPILER=clang
 *   build-fuzz/fuzz_slurm -max_total_time=60
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "error.h"
#include "slurm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct slurm_state st;
	struct buf b = BUF_INIT;
	char id[32];
	char *text = malloc(size + 1);

	if (!text)
		abort();
	memcpy(text, data, size);
	text[size] = '\0';
	if (slurm_parse_state(text, &st) == 0) {
		if (!st.state[0] || strspn(st.state, "ABCDEFGHIJKLMNOPQRSTUVWXYZ_") != strlen(st.state))
			abort();
		if (strlen(st.reason) >= sizeof(st.reason) || strlen(st.nodes) >= sizeof(st.nodes))
			abort();
	}
	if (slurm_parse_sbatch(text, id, sizeof(id)) == 0 &&
	    (!id[0] || strspn(id, "0123456789") != strlen(id)))
		abort();
	if (slurm_parse_node_failure(text, &b) == 1 ? strncmp(b.ptr, "node '", 6) != 0 : b.len != 0)
		abort();
	buf_reset(&b);
	if (slurm_split_words(text, &b) == 0 && b.len && b.ptr[0] != ' ')
		abort();
	error_clear();
	buf_release(&b);
	free(text);
	return 0;
}
