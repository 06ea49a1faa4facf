/*
 * Unit tests for slurm.c's pure parts: the sbatch options (each word read
 * back by a real /bin/sh), the batch script, and the parsers of sbatch,
 * squeue and scontrol output, fed what Slurm 22.05 prints.
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

#include "buf.h"
#include "error.h"
#include "slurm.h"
#include "util.h"

/* The words of a quoted line as /bin/sh reads them, one per line. */
static char *sh_words(const char *line)
{
	struct buf cmd = BUF_INIT, out = BUF_INIT;
	buf_addf(&cmd, "for w in %s; do printf '%%s\\n' \"$w\"; done", line);
	FILE *p = NULL;
	char tmpl[] = "/tmp/pystrib-slurm-XXXXXX";
	int fd = mkstemp(tmpl);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, cmd.ptr, cmd.len), (ssize_t)cmd.len);
	close(fd);
	char *run = xstrfmt("sh %s", tmpl);
	p = popen(run, "r");
	assert_non_null(p);
	char chunk[4096];
	size_t n;
	while ((n = fread(chunk, 1, sizeof(chunk), p)) > 0)
		buf_add(&out, chunk, n);
	pclose(p);
	unlink(tmpl);
	free(run);
	buf_release(&cmd);
	return out.ptr ? buf_detach(&out, NULL) : xstrdup("");
}

static void options_of_a_full_config(void **state)
{
	(void)state;
	struct slurm_config sc = {
		.partition = "gpu", .account = "proj 1", .time = "1:00:00", .nodes = 2,
		.ntasks_per_node = 4, .gpus_per_node = 1,
		.extra = "--qos=debug --constraint='ib&v100' \"--comment=a b\" --x=\\$HOME",
	};
	struct buf b = BUF_INIT;
	assert_int_equal(slurm_sbatch_options(&sc, "20261201-000000-abcdef", 8, 0, &b), 0);
	char *w = sh_words(b.ptr);
	assert_string_equal(w, "--parsable\n--no-requeue\n--job-name=pystrib-20261201-000000-abcdef\n"
			       "--output=logs/slurm.out\n--ntasks=8\n--nodes=2\n--ntasks-per-node=4\n"
			       "--gpus-per-node=1\n--partition=gpu\n--account=proj 1\n--time=1:00:00\n"
			       "--qos=debug\n--constraint=ib&v100\n--comment=a b\n--x=$HOME\n");
	free(w);
	buf_release(&b);
}

static void timeout_sets_the_time_limit(void **state)
{
	(void)state;
	struct slurm_config sc = { .time = "1:00:00" };
	struct buf b = BUF_INIT;
	/* 90 s of pystrib's own, a minute more for Slurm's: 2:30. */
	assert_int_equal(slurm_sbatch_options(&sc, "id", 2, 90, &b), 0);
	assert_non_null(strstr(b.ptr, "'--time=2:30'"));
	assert_null(strstr(b.ptr, "1:00:00"));
	assert_null(strstr(b.ptr, "--nodes"));
	buf_release(&b);
}

static void extra_that_is_not_plain_words(void **state)
{
	(void)state;
	static const char *const bad[] = {
		"--a='open", "--a=\"open", "--a; rm -rf /", "$(id)", "`id`", "--a|b",
		"--a=\"$HOME\"", "a\\", "\"a\\",
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		struct buf b = BUF_INIT;
		assert_int_equal(slurm_split_words(bad[i], &b), -1);
		assert_int_equal(error_kind(), PS_EXIT_USAGE);
		assert_non_null(strstr(error_message(), "[slurm] extra"));
		error_clear();
		buf_release(&b);
	}
	struct buf b = BUF_INIT;
	assert_int_equal(slurm_split_words("   ", &b), 0);
	assert_int_equal(b.len, 0);
	assert_int_equal(slurm_split_words("''", &b), 0);
	assert_string_equal(b.ptr, " ''");
	buf_release(&b);
}

static void batch_script_runs_the_job_script(void **state)
{
	(void)state;
	struct buf b = BUF_INIT;
	slurm_batch_script("20261201-000000-abcdef", &b);
	assert_true(!strncmp(b.ptr, "#!/bin/sh\n", 10));
	assert_non_null(strstr(b.ptr, "exec sh ./run.sh < /dev/null >> logs/job.err 2>&1\n"));
	buf_release(&b);
}

static void sbatch_parsable_output(void **state)
{
	(void)state;
	char id[32];
	assert_int_equal(slurm_parse_sbatch("1234\n", id, sizeof(id)), 0);
	assert_string_equal(id, "1234");
	assert_int_equal(slurm_parse_sbatch("77;cluster2\n", id, sizeof(id)), 0);
	assert_string_equal(id, "77");
	assert_int_equal(slurm_parse_sbatch("Submitted batch job 5\n", id, sizeof(id)), -1);
	assert_int_equal(slurm_parse_sbatch("", id, sizeof(id)), -1);
	assert_int_equal(slurm_parse_sbatch(NULL, id, sizeof(id)), -1);
	assert_int_equal(slurm_parse_sbatch("12x\n", id, sizeof(id)), -1);
	assert_int_equal(slurm_parse_sbatch("123456", id, 4), -1);
}

static void squeue_lines(void **state)
{
	(void)state;
	struct slurm_state st;
	assert_int_equal(slurm_parse_state("PENDING Resources\n", &st), 0);
	assert_string_equal(st.state, "PENDING");
	assert_string_equal(st.reason, "Resources");
	assert_int_equal(slurm_parse_state("RUNNING None\n", &st), 0);
	assert_string_equal(st.state, "RUNNING");
	assert_string_equal(st.reason, "");
	assert_int_equal(slurm_parse_state("PENDING (ReqNodeNotAvail, UnavailableNodes:n2)\n", &st), 0);
	assert_string_equal(st.reason, "(ReqNodeNotAvail, UnavailableNodes:n2)");
	assert_int_equal(slurm_parse_state("", &st), -1);
	assert_int_equal(slurm_parse_state("slurm_load_jobs error: Invalid job id specified\n", &st), -1);
	assert_string_equal(st.state, "");
}

static void scontrol_lines(void **state)
{
	(void)state;
	struct slurm_state st;
	const char *cancelled =
		"JobId=12 JobName=pystrib-x UserId=root(0) GroupId=root(0) Priority=1 "
		"JobState=CANCELLED Reason=None Dependency=(null) Requeue=1 ExitCode=0:15 "
		"ReqNodeList=(null) NodeList=n[1-2] BatchHost=n1\n";
	assert_int_equal(slurm_parse_state(cancelled, &st), 0);
	assert_string_equal(st.state, "CANCELLED");
	assert_string_equal(st.reason, "");
	assert_string_equal(st.nodes, "n[1-2]");
	const char *failed = "JobId=13 JobState=NODE_FAIL Reason=NodeDown NodeList=n2 ReqNodeList=(null)";
	assert_int_equal(slurm_parse_state(failed, &st), 0);
	assert_string_equal(st.state, "NODE_FAIL");
	assert_string_equal(st.reason, "NodeDown");
	assert_string_equal(st.nodes, "n2");
	assert_int_equal(slurm_parse_state("JobId=14 NoState=here", &st), -1);
	assert_true(slurm_state_active("PENDING"));
	assert_true(slurm_state_active("COMPLETING"));
	assert_false(slurm_state_active("CANCELLED"));
	assert_false(slurm_state_active(NULL));
}

static void lost_reasons(void **state)
{
	(void)state;
	struct slurm_state st;
	struct buf why = BUF_INIT;

	assert_int_equal(slurm_parse_state("JobId=7 JobState=CANCELLED Reason=Resources "
					   "NodeList=(null)", &st), 0);
	assert_string_equal(slurm_lost_reason("7", &st, &why), "died");
	assert_string_equal(why.ptr, "Slurm job 7 was cancelled outside pystrib (scancel), before "
			    "its job script wrote a final state");
	buf_reset(&why);
	assert_int_equal(slurm_parse_state("JobId=8 JobState=NODE_FAIL Reason=NodeDown NodeList=n2",
					   &st), 0);
	assert_string_equal(slurm_lost_reason("8", &st, &why), "host");
	assert_string_equal(why.ptr, "Slurm job 8 ended NODE_FAIL on node n2 (NodeDown): a node of "
			    "its allocation failed");
	buf_reset(&why);
	assert_int_equal(slurm_parse_state("JobId=9 JobState=FAILED Reason=NonZeroExitCode "
					   "NodeList=n1", &st), 0);
	assert_string_equal(slurm_lost_reason("9", &st, &why), "died");
	assert_non_null(strstr(why.ptr, "ended FAILED on node n1 (NonZeroExitCode) without a final"));
	buf_reset(&why);
	memset(&st, 0, sizeof(st));
	assert_string_equal(slurm_lost_reason("10", &st, &why), "died");
	assert_non_null(strstr(why.ptr, "Slurm no longer knows it"));
	buf_release(&why);
}

static void node_failures_in_srun_errors(void **state)
{
	(void)state;
	struct buf why = BUF_INIT;

	/* What srun printed when the ranks of n2 were killed (t0801). */
	const char *killed =
		"srun: error: n2: tasks 2-3: Killed\n"
		"srun: launch/slurm: _step_signal: Terminating StepId=2.0\n"
		"slurmstepd-n1: error: *** STEP 2.0 ON n1 CANCELLED AT 2026-12-01T20:53:48 ***\n"
		"srun: error: n1: tasks 0-1: Exited with exit code 143\n";
	assert_int_equal(slurm_parse_node_failure(killed, &why), 1);
	assert_string_equal(why.ptr, "node 'n2' failed under the job: ranks 2-3 were killed there "
			    "(SIGKILL: the node failed, ran out of memory, or someone killed them)");
	buf_reset(&why);
	assert_int_equal(slurm_parse_node_failure("x\nsrun: error: n1: task 0: Killed", &why), 1);
	assert_non_null(strstr(why.ptr, "node 'n1' failed under the job: rank 0 was killed there"));
	buf_reset(&why);
	assert_int_equal(slurm_parse_node_failure("srun: error: Node failure on n2\n", &why), 1);
	assert_string_equal(why.ptr, "node 'n2' failed under the job (Slurm: Node failure on n2)");
	buf_reset(&why);
	/* A rank's own failure first: the ranks killed after it are not the node's. */
	assert_int_equal(slurm_parse_node_failure("srun: error: n1: task 0: Exited with exit code 1\n"
						  "srun: error: n2: tasks 2-3: Killed\n", &why), 0);
	assert_int_equal(slurm_parse_node_failure("srun: error: some other trouble: x: Killed\n",
						  &why), 0);
	assert_int_equal(slurm_parse_node_failure("srun: error: n2: task: Killed\n", &why), 0);
	assert_int_equal(slurm_parse_node_failure("srun: error: n2: task", &why), 0);
	assert_int_equal(slurm_parse_node_failure("", &why), 0);
	assert_int_equal(slurm_parse_node_failure(NULL, &why), 0);
	assert_int_equal(why.len, 0);
	buf_release(&why);
}

static void sbatch_errors_say_what_to_do(void **state)
{
	(void)state;
	slurm_submit_error("root@login:22", 1,
			   "sbatch: error: invalid partition specified: nope\n"
			   "sbatch: error: Batch job submission failed: Invalid partition name specified\n");
	assert_int_equal(error_kind(), PS_EXIT_USAGE);
	assert_string_equal(error_message(), "Slurm refused the job: invalid partition specified: nope");
	assert_non_null(strstr(error_hint_text(), "sinfo -s"));
	error_clear();
	slurm_submit_error("h", 1, "sbatch: unrecognized option '--bogus'\n"
			   "Try \"sbatch --help\" for more information\n");
	assert_int_equal(error_kind(), PS_EXIT_USAGE);
	assert_string_equal(error_message(), "sbatch rejected an option: unrecognized option '--bogus'");
	assert_non_null(strstr(error_hint_text(), "[slurm] extra"));
	error_clear();
	slurm_submit_error("h", 127, "sh: 1: sbatch: not found\n");
	assert_int_equal(error_kind(), PS_EXIT_REMOTE);
	assert_non_null(strstr(error_message(), "has no 'sbatch'"));
	error_clear();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(options_of_a_full_config),
		cmocka_unit_test(timeout_sets_the_time_limit),
		cmocka_unit_test(extra_that_is_not_plain_words),
		cmocka_unit_test(batch_script_runs_the_job_script),
		cmocka_unit_test(sbatch_parsable_output),
		cmocka_unit_test(squeue_lines),
		cmocka_unit_test(scontrol_lines),
		cmocka_unit_test(lost_reasons),
		cmocka_unit_test(node_failures_in_srun_errors),
		cmocka_unit_test(sbatch_errors_say_what_to_do),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
