/*
 * Unit tests for gpucheck.c: the judgement of a host's answer about its
 * GPUs (the command itself runs against the bed's sshd in t0301).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "error.h"
#include "gpucheck.h"

static void expect_missing(const char *out, const char *gpus, const char *piece,
			   const char *hint)
{
	int n = -1;
	assert_int_equal(gpu_check_answer(out, gpus, "me@gpu1:22", &n), -1);
	assert_int_equal(error_kind(), PS_EXIT_REMOTE);
	if (!strstr(error_message(), piece) || !strstr(error_message(), "'me@gpu1:22'"))
		fail_msg("for '%s': %s", out, error_message());
	assert_non_null(error_hint_text());
	assert_non_null(strstr(error_hint_text(), hint));
	assert_int_equal(n, -1);	/* untouched on failure */
	error_clear();
}

static void missing_pieces_are_named(void **state)
{
	(void)state;
	expect_missing("missing nvidia-smi\n", "all", "no nvidia-smi", "NVIDIA driver");
	expect_missing("gpus 2\nmissing toolkit\n", "all", "no NVIDIA container toolkit",
		       "nvidia-container-toolkit");
	expect_missing("gpus 2\nmissing cdi\n", "1", "no CDI spec for nvidia.com/gpu",
		       "nvidia-ctk cdi generate");
	expect_missing("gpus 0\n", "all", "nvidia-smi lists no GPU", "nvidia-smi");
	expect_missing("gpus 1\n", "2", "has 1 GPU; '2' asks for 2", "at most 1");
	expect_missing("gpus 2\n", "0,3", "has 2 GPUs; '0,3' asks for 4", "at most 2");
	assert_int_equal(gpu_check_answer("", "all", "h", NULL), -1);
	assert_non_null(strstr(error_message(), "no answer"));
	error_clear();
}

static void enough_gpus(void **state)
{
	(void)state;
	int n = -1;
	assert_int_equal(gpu_check_answer("gpus 4\n", "all", "h", &n), 0);
	assert_int_equal(n, 4);
	assert_int_equal(gpu_check_answer("gpus 4\n", "4", "h", &n), 0);
	assert_int_equal(gpu_check_answer("gpus 4\n", "1,3", "h", NULL), 0);
	assert_int_equal(error_kind(), PS_EXIT_OK);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(missing_pieces_are_named),
		cmocka_unit_test(enough_gpus),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
