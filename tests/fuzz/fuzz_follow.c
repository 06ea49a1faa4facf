/*
 * libFuzzer harness for follow.c's protocol parser (follow_feed): what
 * src/remote/follow.sh prints, as it arrives over SSH. The input's first
 * byte is np (0 to 16 ranks), the second chooses the settings (--json, a
 * results tar asked for, one rank only, no prefix, colour) and seeds the
 * cuts; the rest is the stream, fed in pieces of 1 to 64 bytes until the
 * parser says it is wrong. It must not crash, overrun or leak.
 *
 *   cmake -S . -B build-fuzz -DPYSTRIB_FUZZ=ON -DCMAKE_C_COMPILER=clang -DBUILD_TESTING=OFF
 *   build-fuzz/fuzz_follow -max_total_time=60
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "follow.h"
#include "outcome.h"
#include "log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static FILE *null_out;

static int on_tar(void *ctx, const void *data, size_t len)
{
	size_t *got = ctx;
	*got += data ? len : 0;
	return 0;
}

static void on_state(void *ctx, const char *state)
{
	(void)ctx;
	if (!state || !*state)
		abort();	/* the parser never announces an empty state */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct follow f;
	size_t got = 0;

	if (!null_out) {
		null_out = fopen("/dev/null", "w");
		/* --json events go to stdout; stderr stays libFuzzer's, for its reports. */
		if (!null_out || !freopen("/dev/null", "w", stdout))
			abort();
	}
	if (size < 2)
		return 0;
	int np = data[0] % 17;
	unsigned opts = data[1];
	data += 2;
	size -= 2;

	follow_init(&f, "/nowhere", np);
	f.out = null_out;
	f.err = null_out;
	f.color = 0;
	f.ansi = (opts & 0x10) != 0;
	f.no_prefix = (opts & 0x08) != 0;
	f.only_rank = opts & 0x04 ? 0 : -1;
	if (opts & 0x02) {
		f.on_tar = on_tar;
		f.ctx = &got;
	}
	f.on_state = on_state;
	log_json = opts & 0x01;

	/* Cuts from a small generator seeded by opts: the same input, the same cuts. */
	uint32_t seed = opts * 2654435761u + 1;
	while (size) {
		seed = seed * 1103515245u + 12345u;
		size_t n = 1 + (seed >> 16) % 64;
		if (n > size)
			n = size;
		if (follow_feed(&f, (const char *)data, n) < 0)
			break;
		data += n;
		size -= n;
	}
	error_clear();
	for (int r = -1; r <= np; r++)
		(void)strlen(follow_err_tail(&f, r, 3));
	/* What the outcome makes of what was parsed: any state, code and exit. */
	char text[128];
	for (int r = 0; r < np; r++)
		if (!*outcome_rank_text(text, sizeof(text), f.ranks[r].exit_code, f.state))
			abort();
	int code = outcome_exit_code(f.state, f.code, np > 0 && f.ranks[0].exit_code >= 0);
	if (code < 0 || code > 130 || !reason_name(f.code))
		abort();
	log_json = 0;
	follow_release(&f);
	return 0;
}
