/* The VM-wide operation lock: flock(2) as the truth, a JSON holder record for the message. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include "basic/fileio.h"
#include "basic/macro.h"
#include "basic/string-util.h"
#include "shared/jansson-util.h"
#include "shared/paths.h"
#include "shared/vm/lock.h"

#define LOCK_RECORD_MAX 16384

struct vm_lock {
	int fd;
	struct lock_holder self;
	struct lock_holder stale;
	bool has_stale;
	char record[PATH_MAX];
};

static int lock_paths(char *lock, char *record)
{
	const char *dir = path_run_dir();

	if (strlen(dir) + sizeof("/operation.lock") > PATH_MAX)
		return -ENAMETOOLONG;
	snprintf(lock, PATH_MAX, "%s/operation.lock", dir);
	snprintf(record, PATH_MAX, "%s/operation.json", dir);
	return 0;
}

static bool pid_alive(pid_t pid)
{
	return pid > 0 && (kill(pid, 0) == 0 || errno == EPERM);
}

/* Reads operation.json. Returns 0, -ENOENT, or -EBADMSG for a record that does not parse. */
static int record_read(const char *path, struct lock_holder *ret)
{
	_cleanup_free_ char *text = NULL;
	_cleanup_(jansson_util_decrefp) json_t *j = NULL;
	struct lock_holder h = { .percent = -1 };
	json_int_t pid = 0, started = 0;
	const char *command = NULL, *target = NULL;
	double percent = -1;
	int r;

	r = read_full_file(path, LOCK_RECORD_MAX, &text, NULL);
	if (r < 0)
		return r;
	j = json_loads(text, 0, NULL);
	if (!j || json_unpack(j, "{s:I, s:s, s:s, s:I, s?F}", "pid", &pid, "command", &command,
			      "target", &target, "started", &started, "percent", &percent) < 0)
		return -EBADMSG;
	if (pid <= 0 || pid > INT32_MAX)
		return -EBADMSG;
	h.pid = (pid_t)pid;
	snprintf(h.command, sizeof(h.command), "%s", command);
	snprintf(h.target, sizeof(h.target), "%s", target);
	h.started = started;
	h.percent = percent;
	*ret = h;
	return 0;
}

static int record_write(const char *path, const struct lock_holder *h)
{
	_cleanup_(jansson_util_decrefp) json_t *j = NULL;
	_cleanup_free_ char *text = NULL;

	j = json_pack("{s:i, s:s, s:s, s:I, s:f}", "pid", (int)h->pid, "command", h->command,
		      "target", h->target, "started", (json_int_t)h->started, "percent", h->percent);
	if (!j)
		return -ENOMEM;
	text = json_dumps(j, JSON_COMPACT);
	if (!text)
		return -ENOMEM;
	return write_file_atomic(path, text, strlen(text), 0644);
}

/* The pid the kernel lists in /proc/locks as holding a flock on the lock file: the fallback
 * when the record is missing or belongs to a dead process (a holder that has not written it yet,
 * or flock(1)). Returns the pid, or 0 when none is found. */
static pid_t kernel_flock_holder(int fd)
{
	_cleanup_fclose_ FILE *f = NULL;
	_cleanup_free_ char *line = NULL;
	size_t len = 0;
	struct stat st;

	if (fstat(fd, &st) < 0)
		return 0;
	f = fopen("/proc/locks", "re");
	if (!f)
		return 0;
	while (getline(&line, &len, f) > 0) {
		char type[16], mode[16];
		unsigned maj, min;
		unsigned long long ino;
		int pid;

		/* "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF"; waiters carry "->" and are skipped. */
		if (strstr(line, "->"))
			continue;
		if (sscanf(line, "%*d: %15s %*s %15s %d %x:%x:%llu", type, mode, &pid, &maj, &min, &ino) != 6)
			continue;
		if (streq(type, "FLOCK") && makedev(maj, min) == st.st_dev && ino == st.st_ino && pid > 0)
			return pid;
	}
	return 0;
}

static void holder_from_pid(pid_t pid, struct lock_holder *ret)
{
	char path[64];
	_cleanup_fclose_ FILE *f = NULL;

	memset(ret, 0, sizeof(*ret));
	ret->pid = pid;
	ret->percent = -1;
	snprintf(path, sizeof(path), "/proc/%d/comm", (int)pid);
	f = fopen(path, "re");
	if (f && fgets(ret->command, sizeof(ret->command), f))
		ret->command[strcspn(ret->command, "\n")] = 0;
}

/* Describes whoever holds the lock on fd right now: the record when its process is alive and the
 * kernel does not name someone else (a reused pid), else what the kernel says. */
static void describe_holder(int fd, const char *record, struct lock_holder *ret)
{
	struct lock_holder h;
	bool have = record_read(record, &h) == 0 && pid_alive(h.pid);
	pid_t kpid = kernel_flock_holder(fd);

	if (have && (kpid == 0 || kpid == h.pid)) {
		*ret = h;
		return;
	}
	holder_from_pid(kpid, ret);
}

int vm_lock_acquire(const char *command, const char *target, struct vm_lock **ret,
		    struct lock_holder *ret_holder)
{
	char lock[PATH_MAX];
	_cleanup_free_ struct vm_lock *l = NULL;
	_cleanup_close_ int fd = -1;
	int r;

	l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	l->fd = -1;
	r = lock_paths(lock, l->record);
	if (r < 0)
		return r;
	r = mkdir_p(path_run_dir(), 0700);
	if (r < 0)
		return r;
	fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return negative_errno();

	/* vm_lock_peek() holds a shared lock for an instant; retry briefly so that a concurrent
	 * `vmcrypt status` never makes an operation fail as busy. */
	for (int attempt = 0;; attempt++) {
		if (flock(fd, LOCK_EX | LOCK_NB) == 0)
			break;
		if (errno != EWOULDBLOCK && errno != EINTR)
			return negative_errno();
		if (attempt >= 10) {
			if (ret_holder)
				describe_holder(fd, l->record, ret_holder);
			return -EAGAIN;
		}
		usleep(20 * 1000);
	}

	/* We hold the lock: any record left is from a holder that died without releasing. */
	if (record_read(l->record, &l->stale) == 0)
		l->has_stale = true;

	l->self.pid = getpid();
	snprintf(l->self.command, sizeof(l->self.command), "%s", command);
	snprintf(l->self.target, sizeof(l->self.target), "%s", target ? target : "");
	l->self.started = (int64_t)time(NULL);
	l->self.percent = -1;
	r = record_write(l->record, &l->self);
	if (r < 0)
		return r;
	l->fd = TAKE_FD(fd);
	*ret = TAKE_PTR(l);
	return 0;
}

int vm_lock_set_progress(struct vm_lock *l, double percent)
{
	if (!l || l->fd < 0)
		return -EINVAL;
	/* Rewriting the record for changes below a tenth of a percent is not worth the fsyncs. */
	if (l->self.percent >= 0 && percent >= 0 && percent - l->self.percent < 0.1 &&
	    l->self.percent - percent < 0.1)
		return 0;
	l->self.percent = percent;
	return record_write(l->record, &l->self);
}

const struct lock_holder *vm_lock_stale_holder(const struct vm_lock *l)
{
	return l && l->has_stale ? &l->stale : NULL;
}

void vm_lock_release(struct vm_lock *l)
{
	if (!l)
		return;
	/* Remove the record while still holding the lock, so nobody sees a record of a free lock.
	 * The lock file itself stays: unlinking a flock'ed file lets two processes lock two inodes. */
	if (l->fd >= 0) {
		(void)unlink(l->record);
		safe_close(l->fd);
	}
	free(l);
}

int vm_lock_peek(struct lock_holder *ret)
{
	char lock[PATH_MAX], record[PATH_MAX];
	_cleanup_close_ int fd = -1;
	int r;

	r = lock_paths(lock, record);
	if (r < 0)
		return r;
	fd = open(lock, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return errno == ENOENT ? 0 : negative_errno();
	if (flock(fd, LOCK_SH | LOCK_NB) == 0) {
		(void)flock(fd, LOCK_UN);
		return 0;
	}
	if (errno != EWOULDBLOCK)
		return negative_errno();
	if (ret)
		describe_holder(fd, record, ret);
	return 1;
}

int vm_lock_format_busy(const struct lock_holder *h, char *buf, size_t len)
{
	char when[64] = "at an unknown time", progress[48] = "progress unknown";
	int n;

	if (h->started > 0) {
		time_t t = (time_t)h->started;
		struct tm tm;

		if (gmtime_r(&t, &tm))
			strftime(when, sizeof(when), "at %Y-%m-%d %H:%M:%S UTC", &tm);
	}
	if (h->percent >= 0)
		snprintf(progress, sizeof(progress), "%.1f%% done", h->percent);

	if (h->pid > 0 && h->target[0])
		n = snprintf(buf, len,
			     "An operation is already in progress: 'vmcrypt %s %s' (pid %d), started %s, %s. "
			     "Please wait for it to complete: vmcrypt runs one volume-changing operation "
			     "at a time per VM; 'vmcrypt status' shows its progress.",
			     h->command, h->target, (int)h->pid, when, progress);
	else if (h->pid > 0)
		n = snprintf(buf, len,
			     "An operation is already in progress: the VM operation lock %s/operation.lock "
			     "is held by pid %d (%s), which is not a vmcrypt operation (for example "
			     "flock(1) during maintenance). Wait for it to end, or find out why it holds "
			     "the lock.",
			     path_run_dir(), (int)h->pid, h->command[0] ? h->command : "?");
	else
		n = snprintf(buf, len,
			     "An operation is already in progress: the VM operation lock %s/operation.lock "
			     "is held by a process that left no record and that /proc/locks does not "
			     "name. Wait for it to end; 'lslocks' shows the holder.",
			     path_run_dir());
	if (n < 0)
		return -EINVAL;
	return (size_t)n >= len ? -ENOBUFS : 0;
}
