/*
 * Unit tests for outcome.c: the exit code of every way a job can end, the
 * hint for every reason code, the words for a rank's end, and that the
 * summary and the record agree with the exit code. t0406 checks the same
 * against real jobs, through run and attach.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "error.h"
#include "follow.h"
#include "jobrec.h"
#include "outcome.h"
#include "testutil.h"

static void test_exit_codes(void **state)
{
	(void)state;
	assert_int_equal(outcome_exit_code("succeeded", REASON_NONE, 1), PS_EXIT_OK);
	assert_int_equal(outcome_exit_code("failed", REASON_NONE, 1), PS_EXIT_RANK);
	assert_int_equal(outcome_exit_code("timeout", REASON_NONE, 1), PS_EXIT_TIMEOUT);
	assert_int_equal(outcome_exit_code("cancelled", REASON_NONE, 1), PS_EXIT_INTERRUPTED);
	assert_int_equal(outcome_exit_code("lost", REASON_DIR_GONE, 0), PS_EXIT_REMOTE);
	assert_int_equal(outcome_exit_code("lost", REASON_DIED, 1), PS_EXIT_REMOTE);
	assert_int_equal(outcome_exit_code(NULL, REASON_NONE, 0), PS_EXIT_REMOTE);
	assert_int_equal(outcome_exit_code("failed", REASON_REGISTRY, 0), PS_EXIT_REGISTRY);
	/* Every other reason is the host's. */
	for (int r = REASON_DISK_FULL; r < REASON_COUNT; r++)
		assert_int_equal(outcome_exit_code("failed", (enum job_reason)r, 0), PS_EXIT_REMOTE);
	/* No reason and no rank ran: the job script's failure, not a rank's. */
	assert_int_equal(outcome_exit_code("failed", REASON_NONE, 0), PS_EXIT_REMOTE);
	/* A timeout or a cancel is that, whatever else was recorded. */
	assert_int_equal(outcome_exit_code("timeout", REASON_HOST, 0), PS_EXIT_TIMEOUT);
	assert_int_equal(outcome_exit_code("cancelled", REASON_SLOTS, 0), PS_EXIT_INTERRUPTED);
}

static void test_hints(void **state)
{
	(void)state;
	assert_null(outcome_hint(REASON_NONE));
	assert_non_null(strstr(outcome_hint(REASON_DISK_FULL), "pystrib gc"));
	assert_non_null(strstr(outcome_hint(REASON_SLOTS), "--oversubscribe"));
	assert_non_null(strstr(outcome_hint(REASON_NO_GPU), "without --gpus"));
	assert_non_null(strstr(outcome_hint(REASON_REGISTRY), "pull_registry"));
	assert_non_null(strstr(outcome_hint(REASON_NOT_INSTALLED), "--runtime"));
	assert_non_null(strstr(outcome_hint(REASON_NO_MPIRUN), "[image] base"));
}

static void test_rank_text(void **state)
{
	(void)state;
	char t[128];
	assert_string_equal(outcome_rank_text(t, sizeof(t), 0, "succeeded"), "exit 0");
	assert_string_equal(outcome_rank_text(t, sizeof(t), 3, "failed"), "exit 3");
	assert_string_equal(outcome_rank_text(t, sizeof(t), 143, "timeout"),
			    "killed by SIGTERM from pystrib at the timeout (exit 143)");
	assert_string_equal(outcome_rank_text(t, sizeof(t), 143, "cancelled"),
			    "killed by SIGTERM from pystrib when the job was cancelled (exit 143)");
	assert_string_equal(outcome_rank_text(t, sizeof(t), 143, "failed"),
			    "killed by SIGTERM (exit 143)");
	assert_non_null(strstr(outcome_rank_text(t, sizeof(t), 137, "failed"), "SIGKILL"));
	assert_non_null(strstr(outcome_rank_text(t, sizeof(t), 139, "failed"), "SIGSEGV"));
	assert_non_null(strstr(outcome_rank_text(t, sizeof(t), -1, "lost"), "no exit code"));
}

/* Runs outcome_report with stderr in a file; returns the exit code, *text what it said. */
static int report(const struct outcome *o, char **text)
{
	char path[] = "/tmp/pystrib-outcome-XXXXXX";
	int fd = mkstemp(path), saved = dup(2);
	assert_true(fd >= 0 && saved >= 0);
	fflush(stderr);
	dup2(fd, 2);
	int code = outcome_report(o);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	FILE *f = fdopen(fd, "r");
	rewind(f);
	char buf[8192];
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	fclose(f);
	unlink(path);
	*text = xstrdup(buf);
	return code;
}

static void test_report_and_record(void **state)
{
	(void)state;
	char *home = test_tmpdir("outcome");
	char id[JOBREC_ID_SIZE];
	struct follow f;
	struct jobrec rec;
	char *text;

	assert_int_equal(jobrec_new_id(id), 0);
	jobrec_init(&rec);
	jobrec_set(&rec.id, id);
	jobrec_set(&rec.state, "succeeded");
	assert_int_equal(jobrec_save(&rec), 0);
	jobrec_release(&rec);

	/* A disk that filled up: the host's (4), said with its hint. */
	follow_init(&f, "/w/jobs/x", 2);
	f.state = xstrdup("failed");
	f.reason = xstrdup("the disk is full (no space left on device)");
	f.code = REASON_DISK_FULL;
	f.exit_code = 1;
	struct outcome o = { .id = id, .f = &f, .image = "r/c@sha256:00", .tag = "c-00" };
	assert_int_equal(report(&o, &text), PS_EXIT_REMOTE);
	assert_non_null(strstr(text, "could not run: the disk is full"));
	assert_non_null(strstr(text, "hint: free some space on the host"));
	assert_non_null(strstr(text, "image:   r/c@sha256:00 (tag c-00)"));
	assert_null(strstr(text, "failed (exit"));
	free(text);
	/* The record says so, with the code; a known outcome is not made lost. */
	assert_int_equal(jobrec_load(&rec, id), 0);
	assert_string_equal(rec.state, "failed");
	assert_string_equal(rec.state_code, "disk-full");
	jobrec_release(&rec);
	free(f.state);
	f.state = xstrdup("lost");
	f.code = REASON_DIR_GONE;
	assert_int_equal(report(&o, &text), PS_EXIT_REMOTE);
	free(text);
	assert_int_equal(jobrec_load(&rec, id), 0);
	assert_string_equal(rec.state, "failed");
	jobrec_release(&rec);
	follow_release(&f);

	/* A rank's own failure: 1, blamed on the rank that failed of itself. */
	follow_init(&f, "/w/jobs/x", 3);
	f.state = xstrdup("failed");
	f.exit_code = 1;
	f.ranks[0].exit_code = 143;
	f.ranks[1].exit_code = 2;
	f.ranks[2].exit_code = 0;
	o.image = NULL;
	assert_int_equal(report(&o, &text), PS_EXIT_RANK);
	assert_non_null(strstr(text, "failed: rank 1 exit 2"));
	assert_non_null(strstr(text, "rank 1 failed (exit 2)"));
	assert_null(strstr(text, "hint:"));
	free(text);
	follow_release(&f);
	test_tmpdir_remove(home);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_exit_codes),
		cmocka_unit_test(test_hints),
		cmocka_unit_test(test_rank_text),
		cmocka_unit_test(test_report_and_record),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
