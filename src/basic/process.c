/* Running helper programs with their output captured. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fileio.h"
#include "macro.h"
#include "process.h"

int process_run(char *const argv[], char *out, size_t out_len)
{
	return process_run_timeout(argv, out, out_len, 0);
}

/* Milliseconds left until deadline (CLOCK_MONOTONIC), at least 0. */
static int ms_left(const struct timespec *deadline)
{
	struct timespec now;
	long long ms;

	clock_gettime(CLOCK_MONOTONIC, &now);
	ms = (long long)(deadline->tv_sec - now.tv_sec) * 1000 + (deadline->tv_nsec - now.tv_nsec) / 1000000;
	return ms < 0 ? 0 : ms > 1000000 ? 1000000 : (int)ms;
}

int process_run_timeout(char *const argv[], char *out, size_t out_len, unsigned timeout_sec)
{
	int pipefd[2], status;
	size_t used = 0;
	struct timespec deadline;
	bool timed_out = false;
	pid_t pid;

	if (pipe2(pipefd, O_CLOEXEC) < 0)
		return negative_errno();
	pid = fork();
	if (pid < 0) {
		int r = negative_errno();
		close(pipefd[0]);
		close(pipefd[1]);
		return r;
	}
	if (pid == 0) {
		int null = open("/dev/null", O_RDONLY);

		/* The child must not die with us on SIGINT half way through a resize: vmcrypt
		 * decides when to stop, at a safe point. */
		signal(SIGINT, SIG_IGN);
		/* ...but it must die with us: a resize2fs left running after vmcrypt was killed
		 * would race the `vmcrypt resume` that undoes its work. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() == 1)
			_exit(127);
		if (null >= 0)
			dup2(null, STDIN_FILENO);
		dup2(pipefd[1], STDOUT_FILENO);
		dup2(pipefd[1], STDERR_FILENO);
		execvp(argv[0], argv);
		_exit(127);
	}
	close(pipefd[1]);
	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += timeout_sec;
	for (;;) {
		char buf[4096];
		ssize_t n;

		if (timeout_sec > 0) {
			struct pollfd p = { .fd = pipefd[0], .events = POLLIN };
			int k = poll(&p, 1, ms_left(&deadline));

			if (k < 0 && errno == EINTR)
				continue;
			if (k == 0) {
				/* Killed, not asked: a helper past its time may be stuck for good. */
				kill(pid, SIGKILL);
				timed_out = true;
				break;
			}
		}
		n = read(pipefd[0], buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		if (out && used + 1 < out_len) {
			size_t k = MIN((size_t)n, out_len - 1 - used);
			memcpy(out + used, buf, k);
			used += k;
		}
	}
	close(pipefd[0]);
	if (out && out_len)
		out[used] = 0;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return negative_errno();
	if (timed_out)
		return -ETIME;
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	return 128 + WTERMSIG(status);
}
