/* The agent's engine: the loop of docs/agent.md "What the agent does".
 *
 * One thread (the caller's) owns the decisions: it polls the goal, starts each volume's steps,
 * reaps finished conversions and sends reports. The data conversions run in one thread per
 * volume (volumes on different disks convert in parallel); they only publish progress and their
 * result, under e->lock. Every step of a volume is saved to agent.json before the next begins,
 * so a kill -9 resumes from the last one. */
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "basic/fileio.h"
#include "basic/log.h"
#include "basic/macro.h"
#include "basic/process.h"
#include "basic/string-util.h"
#include "shared/ade.h"
#include "shared/agent/agent-state.h"
#include "shared/agent/cutover.h"
#include "shared/agent/engine.h"
#include "shared/agent/escrow.h"
#include "shared/agent/goal.h"
#include "shared/agent/os-volume.h"
#include "shared/agent/report.h"
#include "shared/agent/select.h"
#include "shared/agent/tabs.h"
#include "shared/agent/units.h"
#include "shared/client/agent-conf.h"
#include "shared/client/vault-client.h"
#include "shared/jansson-util.h"
#include "shared/luks/convert.h"
#include "shared/luks/convstate.h"
#include "shared/luks/luks-inspect.h"
#include "shared/luks/luks.h"
#include "shared/paths.h"
#include "shared/secret.h"
#include "shared/vm/journal.h"
#include "shared/vm/lock.h"
#include "shared/volume/device.h"
#include "shared/volume/volumes.h"

/* Vault calls from the agent: long enough for a slow link, short enough that the loop goes on. */
#define ENGINE_CONNECT_TIMEOUT 10
#define ENGINE_TOTAL_TIMEOUT 30
/* A header backup that failed is tried again after this long. */
#define ENGINE_HEADER_BACKUP_RETRY_S 600
#define ENGINE_BACKOFF_MAX 60
/* crypttab options of every volume the agent writes (docs/agent.md): the network first, never
 * block the boot, a bounded wait for the vault before systemd asks for the recovery passphrase. */
#define AGENT_CRYPTTAB_OPTIONS "_netdev,nofail,token-timeout=15,timeout=60"

enum worker_kind {
	WORKER_OFFLINE_ENCRYPT,
	WORKER_OFFLINE_DECRYPT,
	WORKER_OFFLINE_RESUME,
	WORKER_ONLINE_RUN,      /* the reencryption of an open, mounted volume */
};

struct worker {
	bool running;           /* the thread exists and has not been joined */
	bool finished;          /* the thread is done: the loop reaps it */
	pthread_t thread;
	struct agent_engine *e;
	enum worker_kind kind;
	char name[65];
	struct agent_keys keys;
	struct convert_request req;
	struct convert_result res;
	char target[PATH_MAX];
	char header[PATH_MAX];
	char active_name[80];
	char token[512];
	int result;
	/* Progress, under e->lock. */
	double percent;
	uint64_t rate;
	int64_t eta;
	struct timespec start;
	uint64_t start_done;
	bool have_start;
	double last_journal;
};

/* How many times in a row `vmcrypt agent --once` tries a refused step before it ends the run. */
#define ONCE_REFUSALS 3

/* What the loop knows of one volume between iterations (not saved: derived again on start). */
struct volume_runtime {
	char name[65];
	int64_t retry_at;       /* monotonic seconds before which a refused step is not retried */
	int64_t next_open_check; /* when ensure_open() looks at an encrypted volume again */
	int64_t next_header_backup; /* when backup_header() may try again after a failure */
	uint64_t refused_sequence;
	unsigned refusals;      /* refusals in a row, for --once (below) */
	char message[512];      /* the last refusal, reported until it changes */
};

struct agent_engine {
	const struct agent_conf *conf;
	struct vault_client *vc;
	const char *agent_version;
	bool once;
	pthread_mutex_t lock;
	struct agent_state *state;
	struct worker workers[AGENT_VOLUMES_MAX];
	struct volume_runtime rt[AGENT_VOLUMES_MAX];
	struct agent_goal goal;
	bool have_goal;
	bool stamped;           /* a new goal arrived and no step has run for it yet */
	bool resumed;
	volatile sig_atomic_t *stop;
	struct vm_lock *vm_lock;
	int64_t next_poll, next_report, poll_backoff, report_backoff;
	bool os_in_play;        /* the goal wants the OS volume, or the agent has a record of it */
	bool reboot_wanted;     /* RebootAfterOsPrepare=yes and the OS volume was just prepared */
	bool dirty;             /* a state change: report at once */
	bool kick;              /* a state change: look at the volumes again at once */
};

static void test_hook(struct agent_engine *e, const char *step);

/* Messages that name paths are cut to their buffer, never overrun. */
_printf_(3, 4) static void errf(char *err, size_t len, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, len, fmt, ap);
	va_end(ap);
}

static int64_t mono_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec;
}

static double mono_seconds(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static struct volume_runtime *runtime_for(struct agent_engine *e, const char *name)
{
	for (size_t i = 0; i < ELEMENTSOF(e->rt); i++)
		if (streq(e->rt[i].name, name))
			return &e->rt[i];
	for (size_t i = 0; i < ELEMENTSOF(e->rt); i++)
		if (!e->rt[i].name[0]) {
			snprintf(e->rt[i].name, sizeof(e->rt[i].name), "%s", name);
			return &e->rt[i];
		}
	return &e->rt[ELEMENTSOF(e->rt) - 1];
}

static struct worker *worker_for(struct agent_engine *e, const char *name)
{
	for (size_t i = 0; i < ELEMENTSOF(e->workers); i++)
		if ((e->workers[i].running) && streq(e->workers[i].name, name))
			return &e->workers[i];
	return NULL;
}

/* Saves the state; a state that cannot be saved stops every change (the next step could not be
 * resumed), so the caller treats failure as fatal for the step. */
static int save_state(struct agent_engine *e)
{
	int r;

	pthread_mutex_lock(&e->lock);
	r = agent_state_save(e->state);
	pthread_mutex_unlock(&e->lock);
	if (r < 0)
		log_error("cannot write %s/agent.json: %s; no volume changes until it can be written",
			  path_state_dir(), strerror(-r));
	e->dirty = e->kick = true;
	return r;
}

static void refuse(struct agent_engine *e, const char *name, const char *fmt, ...) _printf_(3, 4);
static void refuse(struct agent_engine *e, const char *name, const char *fmt, ...)
{
	struct volume_runtime *rt = runtime_for(e, name);
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (!streq(msg, rt->message))
		log_warning("%s", msg);
	snprintf(rt->message, sizeof(rt->message), "%s", msg);
	/* Looked at again at the next poll: a holder may have gone, the vault may be back. */
	rt->retry_at = mono_now() + e->conf->poll_interval;
	rt->refused_sequence = e->goal.sequence;
	rt->refusals++;
	e->dirty = e->kick = true;
}

static void clear_refusal(struct agent_engine *e, const char *name)
{
	struct volume_runtime *rt = runtime_for(e, name);

	if (rt->message[0])
		e->dirty = e->kick = true;
	rt->message[0] = '\0';
	rt->retry_at = 0;
	rt->refusals = 0;
}

/* ------------------------------------------------------------------ the VM lock */

/* Held while any step or conversion runs, released when the agent is idle, so that an
 * administrator's `vmcrypt encrypt` or `flock` is refused only while the agent works. */
static int take_vm_lock(struct agent_engine *e, const char *volume)
{
	const char *what = streq(volume, AGENT_OS_NAME) ? "the OS volume" : "data volumes";
	struct lock_holder h;
	char msg[512];
	int r;

	if (e->vm_lock)
		return 0;
	r = vm_lock_acquire("agent", what, &e->vm_lock, &h);
	if (r == -EAGAIN) {
		vm_lock_format_busy(&h, msg, sizeof(msg));
		refuse(e, volume, "%s; the agent waits for it", msg);
	}
	return r;
}

static void release_vm_lock_if_idle(struct agent_engine *e)
{
	for (size_t i = 0; i < ELEMENTSOF(e->workers); i++)
		if (e->workers[i].running)
			return;
	vm_lock_release(e->vm_lock);
	e->vm_lock = NULL;
}

/* ------------------------------------------------------------------ workers */

static int on_progress(enum convert_phase phase, uint64_t done, uint64_t total, void *userdata)
{
	struct worker *w = userdata;
	struct agent_engine *e = w->e;
	struct timespec now;
	double elapsed, t;

	if (phase != CONVERT_PHASE_DATA || total == 0)
		return *e->stop ? 1 : 0;
	clock_gettime(CLOCK_MONOTONIC, &now);
	pthread_mutex_lock(&e->lock);
	if (!w->have_start) {
		w->start = now;
		w->start_done = done;
		w->have_start = true;
	}
	elapsed = (double)(now.tv_sec - w->start.tv_sec) + (double)(now.tv_nsec - w->start.tv_nsec) / 1e9;
	w->percent = done >= total ? 100.0 : 100.0 * (double)done / (double)total;
	if (elapsed >= 1.0 && done > w->start_done) {
		/* The average since this run began: steadier than a window for an ETA. */
		w->rate = (uint64_t)((double)(done - w->start_done) / elapsed);
		w->eta = w->rate ? (int64_t)((total - done) / w->rate) : -1;
	}
	t = mono_seconds();
	if (t - w->last_journal >= 5.0) {
		w->last_journal = t;
		(void)journal_progress(w->target, NULL, w->percent, w->rate);
	}
	pthread_mutex_unlock(&e->lock);
	return *e->stop ? 1 : 0;
}

static void *worker_main(void *userdata)
{
	struct worker *w = userdata;
	int r;

	switch (w->kind) {
	case WORKER_OFFLINE_ENCRYPT:
		r = convert_encrypt(&w->req, &w->res);
		break;
	case WORKER_OFFLINE_DECRYPT:
		r = convert_decrypt(&w->req, &w->res);
		break;
	case WORKER_OFFLINE_RESUME:
		r = convert_resume(&w->req, &w->res);
		break;
	case WORKER_ONLINE_RUN:
		r = convert_online_run(&w->req, &w->res);
		break;
	default:
		r = -EINVAL;
	}
	pthread_mutex_lock(&w->e->lock);
	w->result = r;
	w->finished = true;
	pthread_mutex_unlock(&w->e->lock);
	return NULL;
}

/* Fills a worker's request from the volume's record and its keys (taken over by the worker). */
static struct worker *worker_prepare(struct agent_engine *e, const struct agent_volume_state *v,
				     enum worker_kind kind, struct agent_keys *keys)
{
	struct worker *w = NULL;

	for (size_t i = 0; i < ELEMENTSOF(e->workers); i++)
		if (!e->workers[i].running) {
			w = &e->workers[i];
			break;
		}
	if (!w)
		return NULL;
	memset(w, 0, sizeof(*w));
	w->e = e;
	w->kind = kind;
	w->percent = -1;
	w->eta = -1;
	snprintf(w->name, sizeof(w->name), "%s", v->name);
	snprintf(w->target, sizeof(w->target), "%s", v->device);
	snprintf(w->header, sizeof(w->header), "%s", v->header);
	(void)agent_volume_mapper_name(v->name, w->active_name, sizeof(w->active_name));
	w->keys = *keys;
	memset(keys, 0, sizeof(*keys));
	w->req = (struct convert_request){
		.target = w->target,
		.header = w->header[0] ? w->header : NULL,
		.key = w->keys.key,
		.key_size = w->keys.key_size,
		.recovery = w->keys.recovery,
		.recovery_size = w->keys.recovery_size,
		.active_name = w->active_name,
		.progress = on_progress,
		.userdata = w,
	};
	return w;
}

static int worker_start(struct agent_engine *e, struct worker *w, const char *command)
{
	int r;

	/* The journal has one writer at a time: the workers write progress under e->lock. */
	pthread_mutex_lock(&e->lock);
	(void)journal_begin(command, w->target, NULL);
	if (w->header[0])
		(void)journal_set_header(w->target, w->header);
	pthread_mutex_unlock(&e->lock);
	w->running = true;
	r = -pthread_create(&w->thread, NULL, worker_main, w);
	if (r < 0) {
		w->running = false;
		agent_keys_done(&w->keys);
		pthread_mutex_lock(&e->lock);
		(void)journal_end(w->target, JOURNAL_FAILED, r);
		pthread_mutex_unlock(&e->lock);
	}
	e->dirty = e->kick = true;
	return r;
}

/* ------------------------------------------------------------------ tabs */


/* A name for device that survives a reboot in which disks are found in another order: its
 * /dev/disk/by-id link (the disk's serial number), else its by-path link (where it is plugged),
 * else the kernel name. */
static void stable_device_path(const char *device, char *buf, size_t len)
{
	static const char *const dirs[] = { "/dev/disk/by-id", "/dev/disk/by-path" };
	char want[PATH_MAX], got[PATH_MAX], link[PATH_MAX];

	snprintf(buf, len, "%s", device);
	if (!realpath(device, want))
		return;
	for (size_t i = 0; i < ELEMENTSOF(dirs); i++) {
		_cleanup_(closedirp) DIR *d = opendir(dirs[i]);
		struct dirent *de;

		if (!d)
			continue;
		while ((de = readdir(d))) {
			if (de->d_name[0] == '.')
				continue;
			snprintf(link, sizeof(link), "%s/%s", dirs[i], de->d_name);
			if (realpath(link, got) && streq(got, want)) {
				snprintf(buf, len, "%s", link);
				return;
			}
		}
	}
}

/* systemd 252 orders the cryptsetup unit of a _netdev crypttab line only after
 * remote-fs-pre.target, not after the network: at boot it ran before DHCP, the token plugin
 * could not reach the vault and systemd asked for the passphrase (docs/testing-vm.md). Each
 * volume gets a drop-in that waits for network-online.target, as a _netdev mount does.
 * And for a nofail line the generator leaves out Before=remote-cryptsetup.target, so the
 * agent's After= that target does not wait for it: at boot the agent opened the volume while
 * systemd-cryptsetup was still fetching the key, systemd's activation failed (EBUSY) and it
 * asked for the passphrase. The drop-in orders the unit before the agent. */
static void unit_dropin_path(struct agent_engine *e, const char *volume, char *dir, size_t dlen,
			     char *file, size_t flen)
{
	char esc[3 * AGENT_NAME_MAX + 1];
	size_t o = 0;

	/* systemd's unit name escaping of "vmcrypt-<name>": our names are [A-Za-z0-9._-] starting
	 * alphanumeric, so only '-' needs it. */
	for (const char *p = volume; *p && o + 4 < sizeof(esc); p++) {
		if (*p == '-') {
			memcpy(esc + o, "\\x2d", 4);
			o += 4;
		} else
			esc[o++] = *p;
	}
	esc[o] = '\0';
	errf(dir, dlen, "%s/systemd-cryptsetup@vmcrypt\\x2d%s.service.d", e->conf->unit_dir, esc);
	errf(file, flen, "%s/50-vmcrypt-network.conf", dir);
}

static void systemd_reload(struct agent_engine *e)
{
	char *argv[] = { (char *)"systemctl", (char *)"daemon-reload", NULL };

	/* Only where systemd runs and reads this directory (not in the demo's or a test's). */
	if (access("/run/systemd/system", F_OK) < 0 || !startswith(e->conf->unit_dir, "/etc/systemd/"))
		return;
	if (process_run_timeout(argv, NULL, 0, 60) != 0)
		log_warning("systemctl daemon-reload failed: the cryptsetup units' drop-ins apply after the next reload");
}

/* before_agent: order the unit before the agent (above). Not while an online conversion is in
 * flight: libcryptsetup 2.6.1 refuses systemd-cryptsetup's token path for a volume marked for
 * reencryption ("Operation incompatible with device marked for LUKS2 reencryption"), so after a
 * power cut in the middle systemd asks for the passphrase until timeout= runs out, and an agent
 * ordered after it would open the volume only then (a minute late, seen in the guest). Then
 * the agent opens it with the vault's key as soon as it starts; there is no race to lose, since
 * systemd's token path cannot open it. */
static int write_unit_dropin(struct agent_engine *e, const char *volume, bool before_agent,
			     char *err, size_t errlen)
{
	static const char head[] =
		"# Written by vmcrypt agent: the key comes from the vault over the network.\n"
		"[Unit]\nWants=network-online.target\nAfter=network-online.target\n";
	static const char before[] = "Before=vmcrypt-agent.service\n";
	static const char in_flight[] =
		"# Not before vmcrypt-agent.service while the volume converts online: the agent opens it.\n";
	char dir[PATH_MAX], file[PATH_MAX], text[sizeof(head) + sizeof(in_flight)];
	int r;

	snprintf(text, sizeof(text), "%s%s", head, before_agent ? before : in_flight);
	unit_dropin_path(e, volume, dir, sizeof(dir), file, sizeof(file));
	r = mkdir_p(dir, 0755);
	if (r >= 0)
		r = write_file_atomic(file, text, strlen(text), 0644);
	if (r < 0) {
		errf(err, errlen, "cannot write %s: %s", file, strerror(-r));
		return r;
	}
	return 0;
}

static void remove_unit_dropin(struct agent_engine *e, const char *volume)
{
	char dir[PATH_MAX], file[PATH_MAX];

	unit_dropin_path(e, volume, dir, sizeof(dir), file, sizeof(file));
	if (unlink(file) == 0)
		(void)rmdir(dir);
}

/* by_path: name the device by its stable path even with the header on it (see step_decrypt()). */
static int write_tabs_files(struct agent_engine *e, struct agent_volume_state *v, bool by_path,
			    char *err, size_t errlen)
{
	_cleanup_tab_file_ struct tab_file *ct = NULL, *ft = NULL;
	char mapper_name[80], mapper[PATH_MAX], source[PATH_MAX + 8], options[PATH_MAX + 128];
	struct fstab_entry fe;
	int r;

	(void)agent_volume_mapper_name(v->name, mapper_name, sizeof(mapper_name));
	(void)agent_volume_mapper_path(v->name, mapper, sizeof(mapper));
	if (v->header[0]) {
		/* A detached header: the device has no LUKS UUID of its own to name it by. */
		stable_device_path(v->device, source, sizeof(source));
		snprintf(options, sizeof(options), "luks,header=%s,%s", v->header, AGENT_CRYPTTAB_OPTIONS);
	} else if (by_path) {
		stable_device_path(v->device, source, sizeof(source));
		snprintf(options, sizeof(options), "luks,%s", AGENT_CRYPTTAB_OPTIONS);
	} else {
		snprintf(source, sizeof(source), "UUID=%s", v->luks_uuid);
		snprintf(options, sizeof(options), "luks,%s", AGENT_CRYPTTAB_OPTIONS);
	}
	r = write_unit_dropin(e, v->name,
			      !(v->online && (v->phase == AGENT_PHASE_CUTOVER || v->phase == AGENT_PHASE_CONVERTING ||
					      v->phase == AGENT_PHASE_DECRYPTING)),
			      err, errlen);
	if (r < 0)
		return r;
	r = tab_file_load(e->conf->crypttab, &ct);
	if (r >= 0)
		r = crypttab_set(ct, mapper_name, source, "none", options);
	if (r >= 0)
		r = tab_file_save(ct, e->conf->crypttab);
	if (r < 0) {
		errf(err, errlen, "cannot update %s: %s", e->conf->crypttab, strerror(-r));
		return r;
	}
	if (!v->mountpoint[0])
		return 0;
	r = tab_file_load(e->conf->fstab, &ft);
	if (r < 0) {
		errf(err, errlen, "cannot read %s: %s", e->conf->fstab, strerror(-r));
		return r;
	}
	if (fstab_find(ft, v->mountpoint, &fe) == -ENOENT)
		/* Mounted by hand: nothing to redirect; the agent mounts it after each boot. */
		return 0;
	r = fstab_redirect(ft, v->mountpoint, mapper, "nofail,_netdev");
	if (r >= 0)
		r = tab_file_save(ft, e->conf->fstab);
	if (r < 0)
		errf(err, errlen, "cannot update %s: %s", e->conf->fstab, strerror(-r));
	return r;
}

/* systemd reads crypttab and fstab only through its generators, at boot and at daemon-reload:
 * the reload comes after both files are written, never before. (It once ran between the drop-in
 * and crypttab, so systemd always had the previous crypttab: the by-path line that an online
 * decryption writes before it wipes the signature never reached it, and systemd stopped the
 * unit bound to the vanished by-uuid device, closing the mapping under the start.) */
static int write_tabs(struct agent_engine *e, struct agent_volume_state *v, bool by_path, char *err,
		      size_t errlen)
{
	int r;

	if (v->os)
		return 0; /* the initramfs opens it (os.conf): no crypttab line, / stays as it is */
	r = write_tabs_files(e, v, by_path, err, errlen);
	systemd_reload(e);
	return r;
}

static int write_tabs_encrypted(struct agent_engine *e, struct agent_volume_state *v, char *err,
				size_t errlen)
{
	return write_tabs(e, v, false, err, errlen);
}

static int write_tabs_plain_files(struct agent_engine *e, struct agent_volume_state *v, char *err,
				  size_t errlen)
{
	_cleanup_tab_file_ struct tab_file *ct = NULL, *ft = NULL;
	char mapper_name[80];
	int r;

	(void)agent_volume_mapper_name(v->name, mapper_name, sizeof(mapper_name));
	r = tab_file_load(e->conf->crypttab, &ct);
	if (r >= 0 && crypttab_has(ct, mapper_name)) {
		r = crypttab_remove(ct, mapper_name);
		if (r >= 0)
			r = tab_file_save(ct, e->conf->crypttab);
	}
	if (r < 0) {
		errf(err, errlen, "cannot update %s: %s", e->conf->crypttab, strerror(-r));
		return r;
	}
	remove_unit_dropin(e, v->name);
	if (!v->mountpoint[0])
		return 0;
	r = tab_file_load(e->conf->fstab, &ft);
	if (r >= 0)
		r = fstab_restore(ft, v->mountpoint);
	if (r == -ENOENT)
		return 0;
	if (r >= 0)
		r = tab_file_save(ft, e->conf->fstab);
	if (r < 0)
		errf(err, errlen, "cannot update %s: %s", e->conf->fstab, strerror(-r));
	return r;
}

static int write_tabs_plain(struct agent_engine *e, struct agent_volume_state *v, char *err,
			    size_t errlen)
{
	int r;

	if (v->os)
		return 0;
	r = write_tabs_plain_files(e, v, err, errlen);
	systemd_reload(e);
	return r;
}

/* ------------------------------------------------------------------ steps */

static int token_json(struct agent_engine *e, const struct agent_volume_state *v, char *buf,
		      size_t len)
{
	int n = snprintf(buf, len,
			 "{\"type\":\"vmcrypt\",\"keyslots\":[\"0\"],\"server\":\"%s\",\"vm\":\"%s\","
			 "\"volume\":\"%s\",\"version\":%llu}",
			 e->conf->server, e->conf->vm, v->name, (unsigned long long)v->key_version);
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

/* Whether a volume is LUKS now: the disks are the truth. A decryption's start that was cut short
 * after it parked the header in the state directory and wiped the device's signature (before
 * the agent recorded the parked header) leaves a device that looks plain: the parked header
 * says it is still encrypted, and a report of NotEncrypted would be false. */
static bool volume_is_luks(const struct agent_volume_state *v, struct volume_info *ret)
{
	struct volume_info vi;
	char parked[PATH_MAX];
	const char *header = NULL;
	int r;

	if (v->header[0] && access(v->header, F_OK) == 0)
		header = v->header;
	else if (v->luks_uuid[0] && convstate_path(v->luks_uuid, "header.img", parked, sizeof(parked)) >= 0 &&
		 access(parked, F_OK) == 0)
		header = parked;
	r = luks_inspect(v->device, header, &vi);
	if (ret)
		*ret = vi;
	return r >= 0 && vi.state != VOLUME_PLAIN;
}

static int fetch_keys(struct agent_engine *e, const struct agent_volume_state *v,
		      struct agent_keys *ret, bool with_recovery)
{
	char err[512] = "", rname[80];
	struct agent_keys rec = { 0 };
	int r;

	r = agent_escrow_fetch(e->vc, v->name, ret, err, sizeof(err));
	if (r >= 0 && with_recovery) {
		snprintf(rname, sizeof(rname), "%s-recovery", v->name);
		r = agent_escrow_fetch(e->vc, rname, &rec, err, sizeof(err));
		if (r >= 0) {
			ret->recovery = TAKE_PTR(rec.key);
			ret->recovery_size = rec.key_size;
			ret->recovery_version = rec.key_version;
		}
	}
	if (r < 0) {
		agent_keys_done(ret);
		refuse(e, v->name, "%s: cannot fetch its key from the vault: %s; the agent retries",
		       v->mountpoint[0] ? v->mountpoint : v->device, err);
	}
	return r;
}

/* The keys of a volume about to be encrypted: escrowed in the vault and read back, recorded in
 * agent.json before the first byte changes. A volume escrowed before (its cut-over refused, or
 * an OS volume whose preparation was cut short) reuses its keys: a header may hold them. */
static int escrow_keys(struct agent_engine *e, struct agent_volume_state *v, const char *what,
		       struct agent_keys *keys)
{
	char err[512] = "";
	int r;

	if ((v->phase == AGENT_PHASE_ESCROWED || v->phase == AGENT_PHASE_CUTOVER) && v->key_version)
		return fetch_keys(e, v, keys, true);
	r = agent_escrow(e->vc, v->name, keys, err, sizeof(err));
	if (r < 0) {
		refuse(e, v->name, "%s: the key could not be escrowed in the vault, so nothing "
		       "was changed: %s", what, err);
		return r;
	}
	v->key_version = keys->key_version;
	v->recovery_version = keys->recovery_version;
	v->phase = AGENT_PHASE_ESCROWED;
	r = save_state(e);
	if (r < 0) {
		agent_keys_done(keys);
		return r;
	}
	test_hook(e, "escrowed");
	return 0;
}

/* Encrypt one volume: checks, escrow, then the cut-over (online) or the offline conversion. */
static void step_encrypt(struct agent_engine *e, struct agent_volume_state *v,
			 const struct agent_volume *sel)
{
	const char *what = v->mountpoint[0] ? v->mountpoint : v->device;
	struct agent_keys keys = { 0 };
	char err[512] = "", token[512];
	bool online = sel->mounted;
	struct worker *w;
	int r;

	/* 1. What can be known without changing anything. */
	if (online && !(e->conf->online && agent_have_dm())) {
		refuse(e, v->name, "%s: mounted, and this kernel has no device-mapper to convert it "
		       "online; run 'modprobe dm_crypt' (or unmount it to convert it offline)", what);
		return;
	}
	if (online) {
		_cleanup_free_ struct unit_holder *h = NULL;
		struct stat st;
		size_t n = 0;
		char why[512];

		if (stat(v->mountpoint, &st) < 0) {
			refuse(e, v->name, "%s: cannot stat it (%s)", what, strerror(errno));
			return;
		}
		r = units_for_mount(v->mountpoint, st.st_dev, &h, &n);
		if (r < 0) {
			refuse(e, v->name, "%s: cannot find who uses it (%s)", what, strerror(-r));
			return;
		}
		r = units_plan_stop(h, n, e->conf->stop_units_auto,
				    (char (*)[UNITS_NAME_MAX])e->conf->stop_units, e->conf->n_stop_units,
				    v->stopped_units, AGENT_UNITS_MAX, &v->n_stopped_units, why,
				    sizeof(why));
		if (r < 0) {
			refuse(e, v->name, "%s: %s", what, why);
			return;
		}
	}
	/* Only ext2/3/4 can shrink to make room for the header on the device; anything else keeps
	 * a detached header in the state directory, which stays (crypttab names it). */
	if (strcmp(sel->fstype, "ext4") && strcmp(sel->fstype, "ext3") && strcmp(sel->fstype, "ext2")) {
		char dir[PATH_MAX];

		snprintf(dir, sizeof(dir), "%s/headers", path_state_dir());
		r = mkdir_p(dir, 0700);
		if (r < 0) {
			refuse(e, v->name, "%s: cannot make %s for its detached header (%s)", what, dir,
			       strerror(-r));
			return;
		}
		errf(v->header, sizeof(v->header), "%s/%s.luks", dir, v->name);
	}
	if (take_vm_lock(e, v->name) < 0)
		return;

	/* 2. Escrow, read back, recorded: before the first byte changes. */
	if (escrow_keys(e, v, what, &keys) < 0)
		return;
	if (token_json(e, v, token, sizeof(token)) < 0) {
		agent_keys_done(&keys);
		refuse(e, v->name, "%s: the vault's URL is too long for the token", what);
		return;
	}

	if (!online) {
		/* 3b. Offline: the whole conversion in a worker. */
		w = worker_prepare(e, v, WORKER_OFFLINE_ENCRYPT, &keys);
		if (!w) {
			agent_keys_done(&keys);
			return;
		}
		snprintf(w->token, sizeof(w->token), "%s", token);
		w->req.token_json = w->token;
		w->req.active_name = NULL;
		v->phase = AGENT_PHASE_CONVERTING;
		v->online = false;
		if (save_state(e) < 0 || worker_start(e, w, "encrypt") < 0)
			agent_keys_done(&w->keys);
		clear_refusal(e, v->name);
		return;
	}

	/* 3a. Online: the cut-over, then the reencryption in a worker. */
	v->phase = AGENT_PHASE_CUTOVER;
	v->online = true;
	if (save_state(e) < 0) {
		agent_keys_done(&keys);
		return;
	}
	{
		char active[80];
		struct convert_request req = {
			.target = v->device,
			.header = v->header[0] ? v->header : NULL,
			.key = keys.key,
			.key_size = keys.key_size,
			.recovery = keys.recovery,
			.recovery_size = keys.recovery_size,
			.token_json = token,
			.active_name = active,
		};
		struct agent_cutover c = { .v = v, .req = &req, .op = VOLUME_OP_ENCRYPT };

		(void)agent_volume_mapper_name(v->name, active, sizeof(active));
		r = agent_cutover_encrypt(&c);
		if (r < 0 && !volume_is_luks(v, NULL)) {
			v->phase = AGENT_PHASE_ESCROWED;
			(void)save_state(e);
			agent_keys_done(&keys);
			refuse(e, v->name, "%s", c.message);
			return;
		}
		if (r < 0) {
			/* The header exists: the resume takes it from here. */
			v->phase = AGENT_PHASE_CONVERTING;
			(void)save_state(e);
			agent_keys_done(&keys);
			refuse(e, v->name, "%s", c.message);
			return;
		}
		v->downtime_ms = c.downtime_ms;
		log_info("%s: mounted from dm-crypt after %lld ms of downtime; converting online", what,
			 (long long)c.downtime_ms);
	}
	test_hook(e, "cutover");
	r = write_tabs_encrypted(e, v, err, sizeof(err));
	if (r < 0)
		refuse(e, v->name, "%s: %s (the volume converts; the agent retries the edit at its next poll)", what, err);
	v->phase = AGENT_PHASE_CONVERTING;
	if (save_state(e) < 0) {
		agent_keys_done(&keys);
		return;
	}
	w = worker_prepare(e, v, WORKER_ONLINE_RUN, &keys);
	if (w && worker_start(e, w, "encrypt") >= 0 && r >= 0)
		clear_refusal(e, v->name);
}

static void step_decrypt(struct agent_engine *e, struct agent_volume_state *v)
{
	const char *what = v->mountpoint[0] ? v->mountpoint : v->device;
	struct agent_keys keys = { 0 };
	bool online = v->online && agent_have_dm();
	char err[512];
	struct worker *w;
	int r;

	if (take_vm_lock(e, v->name) < 0)
		return;
	if (fetch_keys(e, v, &keys, false) < 0)
		return;
	w = worker_prepare(e, v, online ? WORKER_ONLINE_RUN : WORKER_OFFLINE_DECRYPT, &keys);
	if (!w) {
		agent_keys_done(&keys);
		return;
	}
	if (online) {
		/* The start parks a header on the device in a file and wipes the device's LUKS
		 * signature: systemd binds the volume's cryptsetup unit to the device crypttab names,
		 * and by UUID that device goes with the signature, so systemd stopped the unit, which
		 * unmounted the filesystem and closed the mapping in the middle of the start (seen in
		 * the guest). Named by its stable path first, the device stays. */
		if (!v->header[0] && write_tabs(e, v, true, err, sizeof(err)) < 0) {
			agent_keys_done(&w->keys);
			refuse(e, v->name, "%s: the decryption cannot start: %s", what, err);
			return;
		}
		/* The start is short (the header moves to a file) and runs here, so that crypttab
		 * names the parked header before the data starts to move: a reboot in the middle
		 * must still open the volume. */
		r = convert_online_start(&w->req, VOLUME_OP_DECRYPT, &w->res);
		if (r < 0) {
			agent_keys_done(&w->keys);
			refuse(e, v->name, "%s: the decryption cannot start: %s%s%s", what, w->res.message,
			       w->res.remedy[0] ? "; " : "", w->res.remedy);
			return;
		}
		if (w->res.header_detached && w->res.header_path[0]) {
			snprintf(v->header, sizeof(v->header), "%s", w->res.header_path);
			snprintf(w->header, sizeof(w->header), "%s", w->res.header_path);
			w->req.header = w->header;
		}
		v->phase = AGENT_PHASE_DECRYPTING;
		if (save_state(e) < 0) {
			agent_keys_done(&w->keys);
			return;
		}
		if (write_tabs_encrypted(e, v, err, sizeof(err)) < 0)
			refuse(e, v->name, "%s: %s", what, err);
	} else {
		w->req.active_name = NULL;
		v->phase = AGENT_PHASE_DECRYPTING;
		if (save_state(e) < 0) {
			agent_keys_done(&w->keys);
			return;
		}
	}
	if (worker_start(e, w, "decrypt") >= 0)
		clear_refusal(e, v->name);
}

/* Whether the volume's mapping is open, asked of the kernel through sysfs (the /dev/mapper node
 * can be missing without udev, or lag behind a rename). */
static bool mapping_active(const char *volume)
{
	char name[80];
	dev_t d;

	if (agent_volume_mapper_name(volume, name, sizeof(name)) < 0)
		return false;
	return device_dm_by_name(name, &d) == 0;
}

/* After a resume of an online volume the mapping is open: mount it where it belongs when systemd
 * did not (the vault was down at boot). */
static void mount_if_needed(struct agent_engine *e, struct agent_volume_state *v)
{
	char mapper[PATH_MAX], err[512];
	struct agent_mount m;

	if (!v->online || !v->mountpoint[0] || agent_mount_read(v->mountpoint, &m) == 0)
		return;
	(void)agent_volume_mapper_path(v->name, mapper, sizeof(mapper));
	if (!mapping_active(v->name))
		return;
	if (agent_mount_do(mapper, v->mountpoint, v->fstype, v->fs_options, err, sizeof(err)) < 0) {
		refuse(e, v->name, "%s", err);
		return;
	}
	log_info("%s: mounted from %s", v->mountpoint, mapper);
	/* systemd could not open it at boot (the vault was down, or libcryptsetup 2.6.1's token
	 * open of a volume in reencryption after a power cut), so the services that need the mount
	 * failed their dependency: start those the cut-over had stopped. */
	if (v->n_stopped_units > 0 && units_start(v->stopped_units, v->n_stopped_units, err, sizeof(err)) < 0)
		log_warning("%s: %s", v->mountpoint, err);
}

/* An online encryption that finished but the agent did not record it (a power cut between the
 * engine's last step and agent.json): a LUKS volume with no reencryption left is encrypted.
 * Returns true when it took the volume to that state. */
static bool settle_finished(struct agent_engine *e, struct agent_volume_state *v)
{
	struct volume_info vi;
	char err[512];
	bool luks = volume_is_luks(v, &vi);

	if (v->phase == AGENT_PHASE_CUTOVER || v->phase == AGENT_PHASE_CONVERTING) {
		if (!luks || vi.state != VOLUME_ENCRYPTED)
			return false;
		if (vi.uuid[0])
			snprintf(v->luks_uuid, sizeof(v->luks_uuid), "%s", vi.uuid);
		v->phase = AGENT_PHASE_ENCRYPTED;
		if (write_tabs_encrypted(e, v, err, sizeof(err)) < 0)
			refuse(e, v->name, "%s", err);
		(void)save_state(e);
		mount_if_needed(e, v);
		log_info("%s: its encryption had finished", v->mountpoint[0] ? v->mountpoint : v->device);
		return true;
	}
	/* Never for a decryption: a volume whose header is parked and whose data is partly
	 * decrypted can look plain to a probe, and calling it done would lose the rest. The
	 * refusal stays until someone looks (vmcrypt status, vmcrypt resume). */
	return false;
}

/* ------------------------------------------------------------------ the OS volume */

static void boot_id(char *buf, size_t len)
{
	_cleanup_free_ char *text = NULL;

	buf[0] = '\0';
	if (read_full_file("/proc/sys/kernel/random/boot_id", 64, &text, NULL) >= 0)
		snprintf(buf, len, "%.*s", (int)strcspn(text, "\n"), text);
}

/* The root filesystem (docs/os-volume.md): escrow, then the detached header on /boot and the
 * boot configuration while / stays mounted and written; the data moves after the reboot, when
 * the initramfs has opened / through dm-crypt. Every step here is repeatable: a cut-short
 * preparation (phase CUTOVER) runs again from the top with the same keys. */
static void step_encrypt_os(struct agent_engine *e, struct agent_volume_state *v)
{
	struct agent_keys keys = { 0 };
	struct convert_result res;
	struct agent_os os;
	char err[512] = "", token[512], active[80], stable[PATH_MAX];
	int r;

	/* 1. What can be known without changing anything. */
	if (!agent_have_dm()) {
		refuse(e, v->name, "/: this kernel has no device-mapper to open the OS volume through "
		       "dm-crypt; run 'modprobe dm_crypt'");
		return;
	}
	r = agent_os_probe(&os, err, sizeof(err));
	if (r >= 0 && os.on_mapping && v->phase == AGENT_PHASE_CUTOVER) {
		/* Cut short after the boot configuration was written but before that was recorded,
		 * and the reboot opened / already: the preparation is complete. */
		v->phase = AGENT_PHASE_RESTART_PENDING;
		(void)save_state(e);
		return;
	}
	if (r >= 0 && !os.on_mapping)
		r = agent_os_check(&os, err, sizeof(err));
	/* Whether the credential can be sealed as agent.conf asks: known before any change. */
	if (r >= 0 && !os.on_mapping)
		r = agent_os_seal_decide(e->conf, err, sizeof(err));
	if (r < 0) {
		refuse(e, v->name, "/: %s; nothing was changed", err);
		return;
	}
	if (v->phase == AGENT_PHASE_PLAIN || v->phase == AGENT_PHASE_ESCROWED) {
		snprintf(v->device, sizeof(v->device), "%s", os.device);
		snprintf(v->fstype, sizeof(v->fstype), "%s", os.fstype);
	}
	if (take_vm_lock(e, v->name) < 0)
		return;

	/* 2. Escrow. */
	if (escrow_keys(e, v, "/", &keys) < 0)
		return;
	/* 3. A /boot of its own, when / holds it (the cloud images): the header goes there. */
	if (!os.boot_device[0]) {
		r = agent_os_make_boot(&os, err, sizeof(err));
		if (r >= 0 && !os.boot_device[0]) {
			errf(err, sizeof(err), "/boot is still no filesystem of its own");
			r = -EIO;
		}
		if (r < 0) {
			agent_keys_done(&keys);
			refuse(e, v->name, "/: cannot make a /boot of its own: %s; the agent retries", err);
			return;
		}
		test_hook(e, "os-boot");
	}
	if (token_json(e, v, token, sizeof(token)) < 0) {
		agent_keys_done(&keys);
		refuse(e, v->name, "/: the vault's URL is too long for the token");
		return;
	}

	/* 4. The header and the boot configuration. Until the reboot nothing of / has changed: a
	 *    boot that does not open it (no vmcrypt.boot=, no os.conf) mounts it plain, intact. */
	v->phase = AGENT_PHASE_CUTOVER;
	v->online = true;
	if (save_state(e) < 0) {
		agent_keys_done(&keys);
		return;
	}
	(void)agent_volume_mapper_name(v->name, active, sizeof(active));
	r = agent_os_copy_credentials(e->conf, err, sizeof(err));
	if (r >= 0) {
		struct convert_request req = {
			.target = v->device,
			.header = v->header,
			.key = keys.key,
			.key_size = keys.key_size,
			.recovery = keys.recovery,
			.recovery_size = keys.recovery_size,
			.token_json = token,
			.active_name = active,
		};

		r = convert_online_prepare(&req, &res);
		if (r < 0)
			errf(err, sizeof(err), "%s%s%s", res.message, res.remedy[0] ? "; " : "", res.remedy);
		else if (res.uuid[0])
			snprintf(v->luks_uuid, sizeof(v->luks_uuid), "%s", res.uuid);
	}
	agent_keys_done(&keys);
	test_hook(e, "os-header");
	if (r >= 0) {
		stable_device_path(v->device, stable, sizeof(stable));
		r = agent_os_write_boot_conf(stable, active, v->name, err, sizeof(err));
	}
	if (r >= 0)
		r = agent_os_grub_enable(&os, err, sizeof(err));
	if (r < 0) {
		if (!volume_is_luks(v, NULL)) {
			v->phase = AGENT_PHASE_ESCROWED;
			(void)save_state(e);
		}
		refuse(e, v->name, "/: cannot prepare the OS volume for encryption: %s; the agent retries", err);
		return;
	}
	boot_id(v->prepared_boot_id, sizeof(v->prepared_boot_id));
	v->phase = AGENT_PHASE_RESTART_PENDING;
	if (save_state(e) < 0)
		return;
	clear_refusal(e, v->name);
	log_info("/: prepared for encryption (header %s, opened by the initramfs from the next boot "
		 "on); reboot the VM, the data is then encrypted online", v->header);
	test_hook(e, "os-prepared");
	if (e->conf->reboot_after_os_prepare)
		e->reboot_wanted = true;
}

/* An OS volume waiting for its reboot. Returns true while it waits (nothing the agent can do):
 * after a reboot that opened it, it goes on to CONVERTING and returns false. */
static bool os_restart_pending(struct agent_engine *e, struct agent_volume_state *v)
{
	char now[40];

	if (v->phase != AGENT_PHASE_RESTART_PENDING)
		return false;
	if (mapping_active(v->name)) {
		v->phase = AGENT_PHASE_CONVERTING;
		(void)save_state(e);
		log_info("/: opened by the initramfs; encrypting the OS volume online");
		return false;
	}
	boot_id(now, sizeof(now));
	if (now[0] && v->prepared_boot_id[0] && !streq(now, v->prepared_boot_id)) {
		struct volume_runtime *rt = runtime_for(e, v->name);
		char msg[sizeof(rt->message)];

		/* Said, not retried: a reboot loop would not help. Nothing moved: / is intact. */
		errf(msg, sizeof(msg),
		     "/: the VM restarted but the initramfs did not open the OS volume, so / is still the "
		     "plain %s (nothing was lost); look for 'vmcrypt:' lines on the boot console, check "
		     "'vmcrypt.boot=' in /proc/cmdline, then reboot again", v->device);
		if (!streq(msg, rt->message)) {
			log_warning("%s", msg);
			snprintf(rt->message, sizeof(rt->message), "%s", msg);
			e->dirty = true;
		}
	}
	return true;
}

/* The OS volume's decryption after its data is all plain: the state goes, then GRUB's command
 * line (read back: the plain device as the root), then os.conf and the rest of /boot/vmcrypt.
 * The mapping stays until the reboot, mapping the plain device one to one. */
static void os_finish_decrypt(struct agent_engine *e, struct agent_volume_state *v)
{
	struct agent_keys keys = { 0 };
	struct agent_os os;
	struct convert_result res;
	char active[80], err[512];
	int r;

	if (fetch_keys(e, v, &keys, false) < 0)
		return;
	(void)agent_volume_mapper_name(v->name, active, sizeof(active));
	{
		struct convert_request req = {
			.target = v->device,
			.header = v->header[0] ? v->header : NULL,
			.key = keys.key,
			.key_size = keys.key_size,
			.active_name = active,
		};

		r = convert_online_finish_in_place(&req, &res);
	}
	agent_keys_done(&keys);
	if (r < 0 && r != -EALREADY) { /* -EALREADY: its state was removed before a cut */
		refuse(e, v->name, "/: cannot finish the decryption: %s%s%s", res.message,
		       res.remedy[0] ? "; " : "", res.remedy);
		return;
	}
	/* GRUB first, read back: only a grub.cfg that boots the plain device lets os.conf go. */
	r = agent_os_probe(&os, err, sizeof(err));
	if (r >= 0)
		r = agent_os_grub_disable(&os, err, sizeof(err));
	if (r >= 0)
		r = agent_os_remove_boot_files(err, sizeof(err));
	if (r < 0) {
		refuse(e, v->name, "/: decrypted, but the boot configuration is not removed yet: %s; the agent retries", err);
		return;
	}
	v->phase = AGENT_PHASE_PLAIN;
	v->header[0] = '\0';
	v->prepared_boot_id[0] = '\0';
	(void)save_state(e);
	clear_refusal(e, v->name);
	log_info("/: decrypted; from the next boot on / is mounted from %s (until then through a mapping "
		 "of the plain data)", v->device);
}

/* DisableEncryption naming the OS volume: decrypted online like a data volume with a detached
 * header (no data shift), then os_finish_decrypt(). */
static void step_decrypt_os(struct agent_engine *e, struct agent_volume_state *v)
{
	if (!mapping_active(v->name)) {
		refuse(e, v->name, "/: not mounted through /dev/mapper/vmcrypt-os: cannot decrypt it online");
		return;
	}
	step_decrypt(e, v);
}

/* Continues whatever step the record says was cut short. */
static void step_resume(struct agent_engine *e, struct agent_volume_state *v)
{
	struct agent_keys keys = { 0 };
	struct worker *w;
	bool online = v->online;

	if (v->os && v->phase == AGENT_PHASE_CUTOVER) {
		step_encrypt_os(e, v); /* its preparation was cut short: every step repeats */
		return;
	}
	if (v->os && os_restart_pending(e, v))
		return;
	if (take_vm_lock(e, v->name) < 0)
		return;
	if (v->phase == AGENT_PHASE_FINISHING && v->os) {
		os_finish_decrypt(e, v);
		return;
	}
	if (v->phase == AGENT_PHASE_FINISHING) {
		/* Decrypted; only the way back to the plain device is left (the engine still wants
		 * the key: it checks it before it closes the mapping). */
		char active[80], err[512];
		struct convert_request req = { .target = v->device, .active_name = active };
		struct agent_cutover c = { .v = v, .req = &req, .op = VOLUME_OP_DECRYPT };
		int r;

		if (fetch_keys(e, v, &keys, false) < 0)
			return;
		(void)agent_volume_mapper_name(v->name, active, sizeof(active));
		req.key = keys.key;
		req.key_size = keys.key_size;
		r = agent_cutover_finish(&c);
		agent_keys_done(&keys);
		if (r < 0) {
			refuse(e, v->name, "%s", c.message);
			return;
		}
		if (write_tabs_plain(e, v, err, sizeof(err)) < 0) {
			refuse(e, v->name, "%s", err);
			return;
		}
		v->phase = AGENT_PHASE_PLAIN;
		v->downtime_ms = c.downtime_ms;
		(void)save_state(e);
		clear_refusal(e, v->name);
		return;
	}
	if (v->phase == AGENT_PHASE_CUTOVER && !volume_is_luks(v, NULL)) {
		/* Cut short before the header existed: the plain filesystem is unmounted, or was
		 * mounted again. Mount it back if needed and start over from the escrow. */
		char err[512];
		struct agent_mount m;

		if (v->mountpoint[0] && agent_mount_read(v->mountpoint, &m) < 0)
			(void)agent_mount_do(v->device, v->mountpoint, v->fstype, v->fs_options, err,
					     sizeof(err));
		if (v->n_stopped_units)
			(void)units_start(v->stopped_units, v->n_stopped_units, err, sizeof(err));
		v->phase = AGENT_PHASE_ESCROWED;
		(void)save_state(e);
		return;
	}
	if (fetch_keys(e, v, &keys, v->phase != AGENT_PHASE_DECRYPTING) < 0)
		return;
	if (online && !agent_have_dm()) {
		agent_keys_done(&keys);
		refuse(e, v->name, "%s: converting online, but this kernel has no device-mapper now; "
		       "run 'modprobe dm_crypt'", v->mountpoint);
		return;
	}
	w = worker_prepare(e, v, online ? WORKER_ONLINE_RUN : WORKER_OFFLINE_RESUME, &keys);
	if (!w) {
		agent_keys_done(&keys);
		return;
	}
	if (online) {
		int r;

		/* The mapping first (libcryptsetup recovers a cut hotzone as it activates), then
		 * the mount, so the applications have their data back before the long part. */
		r = convert_online_resume(&w->req, &w->res);
		if (r == -EALREADY && settle_finished(e, v)) {
			agent_keys_done(&w->keys);
			clear_refusal(e, v->name);
			return;
		}
		if (r < 0) {
			agent_keys_done(&w->keys);
			refuse(e, v->name, "%s: cannot resume the conversion: %s%s%s",
			       v->mountpoint[0] ? v->mountpoint : v->device, w->res.message,
			       w->res.remedy[0] ? "; " : "", w->res.remedy);
			return;
		}
		if (v->phase == AGENT_PHASE_DECRYPTING && !mapping_active(v->name)) {
			/* All the data was back: only the finish is left. */
			agent_keys_done(&w->keys);
			v->phase = AGENT_PHASE_FINISHING;
			(void)save_state(e);
			step_resume(e, v);
			return;
		}
		if (v->phase == AGENT_PHASE_CUTOVER) {
			v->phase = AGENT_PHASE_CONVERTING;
			(void)save_state(e);
		}
		mount_if_needed(e, v);
	} else
		w->req.active_name = NULL;
	e->resumed = v->phase != AGENT_PHASE_DECRYPTING;
	if (worker_start(e, w, "resume") >= 0)
		clear_refusal(e, v->name);
}

/* After an offline conversion that failed: true when it failed before the first byte of the
 * volume changed (a refusal of the engine's own checks: held open for a moment, no room), asked
 * of the disks and the engine's state directory, not of the error. The step then starts over
 * instead of resuming a conversion that never began ("no interrupted conversion found"). */
static bool offline_untouched(const struct agent_volume_state *v, bool encrypting)
{
	struct volume_info vi;
	bool luks;

	if (convert_in_flight(v->device) != 0)
		return false;
	luks = volume_is_luks(v, &vi);
	return encrypting ? !luks : luks && vi.state == VOLUME_ENCRYPTED;
}

/* Joins finished workers and takes each volume to its next step. */
static void reap(struct agent_engine *e)
{
	for (size_t i = 0; i < ELEMENTSOF(e->workers); i++) {
		struct worker *w = &e->workers[i];
		struct agent_volume_state *v;
		char err[512];
		bool finished;

		pthread_mutex_lock(&e->lock);
		finished = w->running && w->finished;
		pthread_mutex_unlock(&e->lock);
		if (!finished)
			continue;
		pthread_join(w->thread, NULL);
		w->running = false;
		agent_keys_done(&w->keys);
		pthread_mutex_lock(&e->lock);
		(void)journal_end(w->target, w->result == 0 ? JOURNAL_SUCCEEDED
				  : w->result == -EINTR ? JOURNAL_INTERRUPTED : JOURNAL_FAILED, w->result);
		pthread_mutex_unlock(&e->lock);
		e->dirty = e->kick = true;
		v = agent_state_find(e->state, w->name);
		if (!v)
			continue;
		if (w->result < 0) {
			bool decrypting = v->phase == AGENT_PHASE_DECRYPTING;

			if (w->result != -EINTR)
				refuse(e, v->name, "%s: the %s failed: %s%s%s; the agent retries",
				       v->mountpoint[0] ? v->mountpoint : v->device,
				       decrypting ? "decryption" : "encryption",
				       w->res.message, w->res.remedy[0] ? "; " : "", w->res.remedy);
			if (w->kind != WORKER_ONLINE_RUN && w->result != -EINTR &&
			    offline_untouched(v, !decrypting)) {
				/* Back to the step before (the keys stay escrowed). */
				v->phase = decrypting ? AGENT_PHASE_ENCRYPTED : AGENT_PHASE_ESCROWED;
				(void)save_state(e);
			}
			continue;
		}
		if (w->res.uuid[0])
			snprintf(v->luks_uuid, sizeof(v->luks_uuid), "%s", w->res.uuid);
		if (w->res.header_detached && w->res.header_path[0] && v->phase != AGENT_PHASE_DECRYPTING)
			snprintf(v->header, sizeof(v->header), "%s", w->res.header_path);
		if (v->phase == AGENT_PHASE_CONVERTING || (v->phase == AGENT_PHASE_CUTOVER)) {
			v->phase = AGENT_PHASE_ENCRYPTED;
			/* Offline: the lines appear now. Online: they exist; the drop-in gets its
			 * Before= back (write_unit_dropin()). */
			if (write_tabs_encrypted(e, v, err, sizeof(err)) < 0)
				refuse(e, v->name, "%s", err);
			if (v->online)
				mount_if_needed(e, v);
			log_info("%s: encrypted", v->mountpoint[0] ? v->mountpoint : v->device);
		} else if (v->phase == AGENT_PHASE_DECRYPTING) {
			if (v->online) {
				v->phase = AGENT_PHASE_FINISHING;
				(void)save_state(e);
				step_resume(e, v); /* the finish */
				continue;
			}
			if (write_tabs_plain(e, v, err, sizeof(err)) < 0)
				refuse(e, v->name, "%s", err);
			v->phase = AGENT_PHASE_PLAIN;
			v->header[0] = '\0';
			log_info("%s: decrypted", v->mountpoint[0] ? v->mountpoint : v->device);
		}
		(void)save_state(e);
	}
}

/* ------------------------------------------------------------------ test hooks */

/* Test-only (secure_getenv, so never from a privileged caller's environment):
 * VMCRYPT_TEST_AGENT_CRASH_AT=STEP kills the agent with SIGKILL right after STEP, and
 * VMCRYPT_TEST_AGENT_PAUSE_AT=STEP waits there until the file $VMCRYPT_TEST_AGENT_PAUSE_FILE
 * exists, so tests can cut or hold the agent at each step (tests/integration/test-agent.sh). */
static void test_hook(struct agent_engine *e, const char *step)
{
	const char *crash = secure_getenv("VMCRYPT_TEST_AGENT_CRASH_AT");
	const char *pause = secure_getenv("VMCRYPT_TEST_AGENT_PAUSE_AT");
	const char *file = secure_getenv("VMCRYPT_TEST_AGENT_PAUSE_FILE");

	if (crash && streq(crash, step)) {
		log_info("test hook: killed at %s", step);
		raise(SIGKILL);
	}
	if (pause && file && streq(pause, step)) {
		log_info("test hook: paused at %s until %s exists", step, file);
		while (access(file, F_OK) < 0 && !*e->stop)
			usleep(100 * 1000);
	}
}

/* ------------------------------------------------------------------ the loop */

struct selection {
	struct agent_volume *v;
	size_t n;
};

static void selection_done(struct selection *s)
{
	free(s->v);
	s->v = NULL;
	s->n = 0;
}

static int select_volumes(struct agent_engine *e, struct selection *ret)
{
	char err[512] = "";
	int r;

	r = agent_select_volumes(e->conf->fstab, (char (*)[PATH_MAX])e->conf->include,
				 e->conf->n_include, (char (*)[PATH_MAX])e->conf->exclude,
				 e->conf->n_exclude, &ret->v, &ret->n, err, sizeof(err));
	if (r < 0) {
		log_warning("cannot list the data volumes: %s", err[0] ? err : strerror(-r));
		ret->v = NULL;
		ret->n = 0;
	}
	return r;
}

static const struct agent_volume *selected(const struct selection *s, const char *name)
{
	for (size_t i = 0; i < s->n; i++)
		if (streq(s->v[i].name, name))
			return &s->v[i];
	return NULL;
}

/* A volume the agent encrypted online but nobody opened at boot (the vault was down): open it
 * with the key from the vault and mount it. */
static void ensure_open(struct agent_engine *e, struct agent_volume_state *v)
{
	char mapper[PATH_MAX], name[80];
	struct agent_keys keys = { 0 };
	int r;

	struct volume_runtime *rt = runtime_for(e, v->name);
	_cleanup_tab_file_ struct tab_file *ct = NULL;
	char err[512];

	if (v->os || v->phase != AGENT_PHASE_ENCRYPTED || rt->next_open_check > mono_now() ||
	    rt->retry_at > mono_now())
		return;
	rt->next_open_check = mono_now() + e->conf->poll_interval;
	/* crypttab lost our line (an edit that failed, or someone's): write it again, so the
	 * volume still opens at the next boot. */
	(void)agent_volume_mapper_name(v->name, name, sizeof(name));
	if (tab_file_load(e->conf->crypttab, &ct) >= 0 && !crypttab_has(ct, name)) {
		if (write_tabs_encrypted(e, v, err, sizeof(err)) < 0)
			refuse(e, v->name, "%s", err);
		else
			log_info("%s: crypttab line for %s written again", e->conf->crypttab, name);
	}
	if (!v->online || !agent_have_dm())
		return;
	(void)agent_volume_mapper_path(v->name, mapper, sizeof(mapper));
	if (!mapping_active(v->name)) {
		if (fetch_keys(e, v, &keys, false) < 0)
			return;
		(void)agent_volume_mapper_name(v->name, name, sizeof(name));
		r = luks_activate(v->header[0] ? v->header : NULL, v->device, name, keys.key,
				  keys.key_size);
		agent_keys_done(&keys);
		if (r < 0 && r != -EEXIST && r != -EBUSY) {
			/* Said, and tried again at the next check; not a refusal that would hold
			 * back a decryption the goal asks for. */
			struct volume_runtime *rt2 = runtime_for(e, v->name);
			errf(rt2->message, sizeof(rt2->message), "%s: cannot open it with the vault's key (%s)",
			     v->mountpoint[0] ? v->mountpoint : v->device, strerror(-r));
			e->dirty = true;
			return;
		}
		/* -EEXIST/-EBUSY: systemd-cryptsetup opened it meanwhile. */
		if (r == 0)
			log_info("%s: opened %s with the key from the vault", v->device, mapper);
	}
	clear_refusal(e, v->name);
	mount_if_needed(e, v);
}

/* The second home of an encrypted volume's LUKS2 header (docs/os-volume.md: the OS volume's
 * detached header lives only on /boot otherwise): once its encryption is complete, never while a
 * reencryption is in flight (luks_header_backup() says why), a backup goes to the vault, once
 * per LUKS UUID (a new encryption is backed up again). Not a step towards the goal: a failure is
 * said and tried again later, and holds nothing back. */
static void backup_header(struct agent_engine *e, struct agent_volume_state *v)
{
	struct volume_runtime *rt = runtime_for(e, v->name);
	const char *where = v->mountpoint[0] ? v->mountpoint : v->device;
	_cleanup_free_ void *data = NULL;
	char err[512] = "";
	uint64_t version = 0;
	size_t size = 0;
	int r;

	if (v->phase != AGENT_PHASE_ENCRYPTED || !v->luks_uuid[0] || streq(v->header_backup_uuid, v->luks_uuid) ||
	    rt->next_header_backup > mono_now())
		return;
	/* Not while another volume converts: the loop's progress reports would wait behind 16 MiB
	 * each way, up to the 30 s timeout on a slow link. */
	for (size_t i = 0; i < ELEMENTSOF(e->workers); i++)
		if (e->workers[i].running)
			return;
	rt->next_header_backup = mono_now() + ENGINE_HEADER_BACKUP_RETRY_S;
	r = mkdir_p(path_run_dir(), 0700);
	if (r >= 0)
		r = luks_header_backup(v->header[0] ? v->header : NULL, v->device, path_run_dir(), &data, &size);
	if (r < 0)
		snprintf(err, sizeof(err), "%s", r == -EBUSY ? "a reencryption is still in flight" : strerror(-r));
	else
		r = vault_client_header_put(e->vc, v->name, data, size, &version, NULL, err, sizeof(err));
	if (r >= 0) {
		/* Read back and compared, as the keys are (escrow.c): a copy only counts once the
		 * vault gives it back intact. */
		_cleanup_secret_ void *back = NULL;
		uint64_t back_version = 0;
		size_t back_size = 0;

		r = vault_client_header_get(e->vc, v->name, version, &back, &back_size, &back_version, err,
					    sizeof(err));
		if (r >= 0 && (back_size != size || memcmp(back, data, size) != 0)) {
			snprintf(err, sizeof(err), "version %llu read back differs from what was sent",
				 (unsigned long long)version);
			r = -EIO;
		}
	}
	if (r < 0) {
		log_warning("%s: cannot back up its LUKS2 header in the vault (%s); the agent tries again in %d min",
			    where, err, ENGINE_HEADER_BACKUP_RETRY_S / 60);
		return;
	}
	snprintf(v->header_backup_uuid, sizeof(v->header_backup_uuid), "%s", v->luks_uuid);
	v->header_backup_version = version;
	(void)save_state(e);
	log_info("%s: its LUKS2 header (%zu bytes) is backed up in the vault, version %llu", where, size,
		 (unsigned long long)version);
}

/* Whether a volume's refusal holds the goal back: a selected data volume, or the OS volume while
 * the goal or the record involves it. */
static bool in_play(struct agent_engine *e, const struct selection *s, const char *name)
{
	return selected(s, name) || (e->os_in_play && streq(name, AGENT_OS_NAME));
}

static void step_decrypt_os(struct agent_engine *e, struct agent_volume_state *v);

/* The OS volume's step towards the goal (VolumeType OS or All). Returns whether it is where the
 * goal wants it, or waits for a reboot. */
static bool apply_os(struct agent_engine *e)
{
	struct agent_volume_state *v = agent_state_find(e->state, AGENT_OS_NAME);
	struct agent_volume_state fresh = { .os = true, .phase = AGENT_PHASE_PLAIN };
	struct volume_runtime *rt;
	enum agent_action a;
	bool luks;

	e->os_in_play = agent_goal_wants_os(&e->goal) || (v && v->phase != AGENT_PHASE_PLAIN);
	if (!e->os_in_play)
		return true;
	if (v && worker_for(e, v->name))
		return false;
	rt = runtime_for(e, AGENT_OS_NAME);
	if (v && v->phase != AGENT_PHASE_PLAIN)
		luks = volume_is_luks(v, NULL);
	else {
		struct agent_os os;
		char err[256];

		/* Encrypted by the installer, say: not ours to touch either way. */
		luks = agent_os_probe(&os, err, sizeof(err)) >= 0 && (os.on_mapping || os.on_other_crypt);
	}
	a = agent_goal_decide(&e->goal, luks, v ? v : &fresh);
	if (a == AGENT_ACTION_NONE)
		return !rt->message[0];
	if (a == AGENT_ACTION_RESUME)
		return v->phase == AGENT_PHASE_RESTART_PENDING && !mapping_active(v->name);
	if (rt->retry_at > mono_now() || *e->stop)
		return false;
	if (a == AGENT_ACTION_ENCRYPT) {
		if (!v) {
			v = agent_state_add(e->state, AGENT_OS_NAME);
			if (!v) {
				refuse(e, AGENT_OS_NAME, "/: the agent manages at most %d volumes", AGENT_VOLUMES_MAX);
				return false;
			}
		}
		if (v->phase == AGENT_PHASE_PLAIN) {
			v->os = v->online = true;
			snprintf(v->mountpoint, sizeof(v->mountpoint), "/");
			(void)agent_os_header_path(v->header, sizeof(v->header));
			v->n_stopped_units = 0;
		}
		test_hook(e, "before-escrow");
		step_encrypt_os(e, v);
	} else if (a == AGENT_ACTION_DECRYPT)
		step_decrypt_os(e, v);
	return false;
}

/* Takes each volume one step towards the goal; returns whether everything is where the goal
 * wants it (nothing to do, nothing running, nothing refused). */
static bool apply(struct agent_engine *e, const struct selection *sel)
{
	bool settled = true;
	int64_t now = mono_now();

	/* Unfinished steps first, whatever the goal: they were promised before it changed. */
	for (size_t i = 0; i < e->state->n_volumes; i++) {
		struct agent_volume_state *v = &e->state->volumes[i];
		struct volume_runtime *rt = runtime_for(e, v->name);

		if (worker_for(e, v->name)) {
			settled = false;
			continue;
		}
		ensure_open(e, v);
		backup_header(e, v);
		if (agent_goal_decide(&e->goal, true, v) != AGENT_ACTION_RESUME)
			continue;
		if (v->os && os_restart_pending(e, v))
			continue; /* waits for the reboot: nothing to do until then */
		settled = false;
		if (rt->retry_at > now)
			continue;
		step_resume(e, v);
	}
	if (!e->have_goal)
		return false;
	for (size_t i = 0; i < sel->n; i++) {
		const struct agent_volume *s = &sel->v[i];
		struct agent_volume_state *v = agent_state_find(e->state, s->name);
		struct volume_runtime *rt = runtime_for(e, s->name);
		enum agent_action a;
		bool luks;

		if (worker_for(e, s->name)) {
			settled = false;
			continue;
		}
		luks = v ? volume_is_luks(v, NULL) : s->already_luks;
		a = agent_goal_decide(&e->goal, luks, v);
		if (a == AGENT_ACTION_NONE || a == AGENT_ACTION_RESUME) {
			if (a == AGENT_ACTION_RESUME)
				settled = false;
			continue;
		}
		settled = false;
		if (rt->retry_at > now || *e->stop)
			continue;
		if (a == AGENT_ACTION_ENCRYPT) {
			if (!v) {
				v = agent_state_add(e->state, s->name);
				if (!v) {
					refuse(e, s->name, "%s: the agent manages at most %d volumes",
					       s->mountpoint, AGENT_VOLUMES_MAX);
					continue;
				}
			}
			if (v->phase == AGENT_PHASE_PLAIN) {
				snprintf(v->device, sizeof(v->device), "%s", s->device);
				snprintf(v->mountpoint, sizeof(v->mountpoint), "%s", s->mountpoint);
				snprintf(v->fstype, sizeof(v->fstype), "%s", s->fstype);
				v->header[0] = '\0';
				v->n_stopped_units = 0;
			}
			test_hook(e, "before-escrow");
			step_encrypt(e, v, s);
		} else if (a == AGENT_ACTION_DECRYPT)
			step_decrypt(e, v);
	}
	if (!apply_os(e))
		settled = false;
	for (size_t i = 0; i < ELEMENTSOF(e->rt); i++)
		if (e->rt[i].name[0] && e->rt[i].message[0] && in_play(e, sel, e->rt[i].name))
			settled = false;
	return settled;
}

static enum ade_state row_state(struct agent_engine *e, const struct agent_volume_state *v,
				const struct agent_volume *s)
{
	switch (v ? v->phase : AGENT_PHASE_PLAIN) {
	case AGENT_PHASE_CUTOVER:
	case AGENT_PHASE_CONVERTING:
		return ADE_STATE_ENCRYPTION_IN_PROGRESS;
	case AGENT_PHASE_DECRYPTING:
	case AGENT_PHASE_FINISHING:
		return ADE_STATE_DECRYPTION_IN_PROGRESS;
	case AGENT_PHASE_RESTART_PENDING:
		return ADE_STATE_VM_RESTART_PENDING;
	default:
		break;
	}
	/* The disks say whether it is encrypted, whatever the agent remembers (someone may have
	 * decrypted it by hand). */
	if (v)
		return volume_is_luks(v, NULL) ? ADE_STATE_ENCRYPTED : ADE_STATE_NOT_ENCRYPTED;
	return s && s->already_luks ? ADE_STATE_ENCRYPTED : ADE_STATE_NOT_ENCRYPTED;
}

static enum ade_state os_state(void)
{
	_cleanup_volumes_ struct volume *vols = NULL;
	const struct volume *os;
	size_t n = 0;

	if (volumes_discover(&vols, &n) < 0)
		return ADE_STATE_UNKNOWN;
	os = volumes_os(vols, n);
	if (!os)
		return ADE_STATE_UNKNOWN;
	return os->kind == VOLUME_KIND_CRYPT ? ADE_STATE_ENCRYPTED : ADE_STATE_NOT_ENCRYPTED;
}

/* OsVolumeEncrypted: the agent's record while it works on the OS volume, else the disks. */
static enum ade_state os_report_state(struct agent_engine *e)
{
	const struct agent_volume_state *v = agent_state_find(e->state, AGENT_OS_NAME);

	if (v && v->phase != AGENT_PHASE_PLAIN && v->phase != AGENT_PHASE_ENCRYPTED &&
	    v->phase != AGENT_PHASE_ESCROWED)
		return row_state(e, v, NULL);
	/* Decrypted by the agent: / still runs through the mapping (a plain one now) until the
	 * reboot, so ask the device, not the mapping's kind. */
	if (v && v->phase == AGENT_PHASE_PLAIN && v->key_version && mapping_active(v->name))
		return volume_is_luks(v, NULL) ? ADE_STATE_ENCRYPTED : ADE_STATE_NOT_ENCRYPTED;
	return os_state();
}

static json_t *build_report(struct agent_engine *e, const struct selection *sel)
{
	struct agent_report_volume rows[AGENT_VOLUMES_MAX * 2];
	struct agent_report r = {
		.os = os_report_state(e),
		.os_wanted = e->have_goal && agent_goal_wants_os(&e->goal),
		.op = e->have_goal ? e->goal.op : AGENT_OP_NONE,
		.data_wanted = e->have_goal && agent_goal_wants_data(&e->goal),
		.stamped = e->stamped,
		.resumed = e->resumed,
		.sequence = e->state->applied_sequence,
		.agent_version = e->agent_version,
		.volumes = rows,
	};
	size_t n = 0;

	/* The selected volumes, then those the agent still has work or a record for. */
	for (size_t i = 0; i < sel->n + e->state->n_volumes && n < ELEMENTSOF(rows); i++) {
		const struct agent_volume *s = i < sel->n ? &sel->v[i] : NULL;
		const struct agent_volume_state *v;
		struct agent_report_volume *row = &rows[n];
		struct worker *w;

		if (s)
			v = agent_state_find(e->state, s->name);
		else {
			v = &e->state->volumes[i - sel->n];
			if (selected(sel, v->name) || v->phase == AGENT_PHASE_PLAIN)
				continue;
		}
		memset(row, 0, sizeof(*row));
		row->name = s ? s->name : v->name;
		row->os = v && v->os;
		row->device = v ? v->device : s->device;
		row->mountpoint = v ? v->mountpoint : s->mountpoint;
		row->state = row_state(e, v, s);
		row->percent = -1;
		row->eta = -1;
		row->downtime_ms = v ? v->downtime_ms : -1;
		row->message = runtime_for(e, row->name)->message;
		w = worker_for(e, row->name);
		pthread_mutex_lock(&e->lock);
		if (w) {
			row->percent = w->percent < 0 ? 0 : w->percent;
			row->rate = w->rate;
			row->eta = w->eta;
		}
		pthread_mutex_unlock(&e->lock);
		n++;
	}
	/* The OS volume before the agent has a record of it (its checks refused, say): the row
	 * carries the refusal. */
	if (e->os_in_play && n < ELEMENTSOF(rows)) {
		bool have = false;

		for (size_t i = 0; i < n; i++)
			have |= rows[i].os;
		if (!have) {
			rows[n] = (struct agent_report_volume){
				.name = AGENT_OS_NAME,
				.mountpoint = "/",
				.state = r.os,
				.percent = -1,
				.eta = -1,
				.downtime_ms = -1,
				.message = runtime_for(e, AGENT_OS_NAME)->message,
				.os = true,
			};
			n++;
		}
	}
	r.n_volumes = n;
	/* While a goal is being applied the report speaks for it. */
	if (e->have_goal && e->goal.sequence != e->state->applied_sequence)
		r.sequence = e->goal.sequence;
	return agent_report_build(&r);
}

static int64_t jittered(unsigned seconds)
{
	/* ±20%, so that a fleet rebooted at once does not poll in step. */
	double f = 0.8 + 0.4 * ((double)random() / (double)RAND_MAX);
	int64_t s = (int64_t)((double)seconds * f);
	return s > 0 ? s : 1;
}

static void poll_goal(struct agent_engine *e)
{
	_cleanup_(jansson_util_decrefp) json_t *j = NULL;
	struct agent_goal g;
	char err[512] = "";
	int r;

	r = vault_client_goal(e->vc, &j, err, sizeof(err));
	if (r >= 0)
		r = agent_goal_parse(j, &g, err, sizeof(err));
	if (r < 0) {
		e->poll_backoff = e->poll_backoff ? MIN(e->poll_backoff * 2, ENGINE_BACKOFF_MAX) : 1;
		e->next_poll = mono_now() + e->poll_backoff;
		log_warning("cannot read the goal from %s: %s; retrying in %lld s", e->conf->server, err,
			    (long long)e->poll_backoff);
		return;
	}
	e->poll_backoff = 0;
	e->next_poll = mono_now() + jittered(e->conf->poll_interval);
	if (e->have_goal && g.sequence == e->goal.sequence)
		return;
	log_info("goal: sequence %llu, %s %s", (unsigned long long)g.sequence,
		 agent_operation_to_string(g.op), ade_volume_type_to_string(g.volume_type));
	e->goal = g;
	e->have_goal = true;
	e->stamped = g.sequence != e->state->applied_sequence;
	/* A new goal looks at every refused volume again now. */
	for (size_t i = 0; i < ELEMENTSOF(e->rt); i++)
		e->rt[i].retry_at = 0;
	e->state->seen_sequence = g.sequence;
	snprintf(e->state->operation, sizeof(e->state->operation), "%s", agent_operation_to_string(g.op));
	(void)save_state(e);
}

static void send_report(struct agent_engine *e, const struct selection *sel)
{
	_cleanup_(jansson_util_decrefp) json_t *j = NULL;
	char err[512] = "";
	uint64_t sequence = 0;
	bool running = false;
	int r;

	for (size_t i = 0; i < ELEMENTSOF(e->workers); i++)
		running |= e->workers[i].running;
	j = build_report(e, sel);
	if (!j)
		return;
	r = vault_client_status(e->vc, j, &sequence, err, sizeof(err));
	if (r < 0) {
		/* Keep working; the next report is built fresh, so only the newest is sent. */
		e->report_backoff = e->report_backoff ? MIN(e->report_backoff * 2, ENGINE_BACKOFF_MAX) : 1;
		e->next_report = mono_now() + e->report_backoff;
		log_warning("cannot report status to %s: %s; retrying in %lld s", e->conf->server, err,
			    (long long)e->report_backoff);
		return;
	}
	e->report_backoff = 0;
	e->dirty = false;
	e->next_report = mono_now() + (running ? e->conf->progress_interval : e->conf->report_interval);
	/* The server's sequence moved on: look at the goal now rather than at the next poll. */
	if (sequence && (!e->have_goal || sequence != e->goal.sequence))
		e->next_poll = 0;
}

static bool any_running(struct agent_engine *e)
{
	for (size_t i = 0; i < ELEMENTSOF(e->workers); i++)
		if (e->workers[i].running)
			return true;
	return false;
}

int agent_engine_run(struct agent_engine *e, volatile sig_atomic_t *stop)
{
	struct selection sel = { 0 };
	int64_t next_select = 0, next_apply = 0;
	bool settled = false;

	e->stop = stop;
	while (!*stop) {
		int64_t now = mono_now();

		reap(e);
		if (now >= next_select || e->kick) {
			selection_done(&sel);
			(void)select_volumes(e, &sel);
			next_select = now + e->conf->poll_interval;
		}
		/* Resumes come before the first look at the goal. The disks are looked at once a
		 * second, or at once after a change. */
		if (e->kick || now >= next_apply) {
			e->kick = false;
			settled = apply(e, &sel);
			next_apply = now + 1;
		}
		if (now >= e->next_poll) {
			poll_goal(e);
			if (e->have_goal)
				settled = apply(e, &sel);
		}
		if (e->have_goal && settled && !any_running(e) &&
		    e->state->applied_sequence != e->goal.sequence) {
			e->state->applied_sequence = e->goal.sequence;
			e->stamped = false;
			e->resumed = false;
			(void)save_state(e);
			log_info("goal sequence %llu applied", (unsigned long long)e->goal.sequence);
		}
		if (!any_running(e))
			release_vm_lock_if_idle(e);
		if (e->stamped && any_running(e))
			e->stamped = false;
		if (e->dirty || mono_now() >= e->next_report)
			send_report(e, &sel);
		if (e->reboot_wanted && !e->dirty) {
			/* RebootAfterOsPrepare=yes: the report saying VMRestartPending is out. */
			char *argv[] = { (char *)"systemctl", (char *)"reboot", NULL };

			e->reboot_wanted = false;
			log_info("/: rebooting to open the OS volume through dm-crypt (RebootAfterOsPrepare=yes)");
			if (process_run_timeout(argv, NULL, 0, 60) != 0)
				log_warning("systemctl reboot failed: reboot the VM to go on encrypting /");
		}
		if (e->once && e->have_goal && settled && !any_running(e) && !e->dirty)
			break;
		if (e->once && e->have_goal && !any_running(e) && !settled) {
			/* --once: a refusal ends the run, reported, once it held for
			 * ONCE_REFUSALS tries in a row: a device that something opened for a
			 * moment (udev's probe after a change, another tool's scan) is "in use"
			 * only then, and the service would simply try again at the next poll. */
			bool refused = false, settling = false;
			for (size_t i = 0; i < ELEMENTSOF(e->rt); i++) {
				if (!e->rt[i].message[0] || !e->rt[i].retry_at || !in_play(e, &sel, e->rt[i].name))
					continue; /* none, or only said (ensure_open()) */
				/* (A step not tried again within two polls counts as refused.) */
				if (e->rt[i].refusals < ONCE_REFUSALS &&
				    mono_now() < e->rt[i].retry_at + 2 * (int64_t)e->conf->poll_interval)
					settling = true;
				else
					refused = true;
			}
			if (refused && !settling && !e->dirty)
				break;
		}
		usleep(200 * 1000);
	}
	/* Stopping: the conversions stop at their next safe point (they see *stop). */
	while (any_running(e)) {
		reap(e);
		usleep(100 * 1000);
	}
	(void)save_state(e);
	send_report(e, &sel);
	release_vm_lock_if_idle(e);
	selection_done(&sel);
	return 0;
}

int agent_engine_new(const struct agent_engine_options *o, struct agent_engine **ret, char *err,
		     size_t errlen)
{
	struct agent_engine *e;
	int r;

	e = calloc(1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	e->state = calloc(1, sizeof(*e->state));
	if (!e->state) {
		free(e);
		return -ENOMEM;
	}
	pthread_mutex_init(&e->lock, NULL);
	e->conf = o->conf;
	e->agent_version = o->agent_version;
	e->once = o->once;
	r = agent_state_load(e->state);
	if (r < 0) {
		errf(err, errlen, "cannot read %s/agent.json: %s", path_state_dir(), strerror(-r));
		agent_engine_free(e);
		return r;
	}
	snprintf(e->state->server, sizeof(e->state->server), "%s", o->conf->server);
	r = vault_client_new(o->conf, o->credential, o->credential_size, ENGINE_CONNECT_TIMEOUT,
			     ENGINE_TOTAL_TIMEOUT, &e->vc);
	if (r < 0) {
		errf(err, errlen, "cannot set up the client for %s: %s", o->conf->server, strerror(-r));
		agent_engine_free(e);
		return r;
	}
	srandom((unsigned)getpid() ^ (unsigned)time(NULL));
	*ret = e;
	return 0;
}

void agent_engine_free(struct agent_engine *e)
{
	if (!e)
		return;
	vault_client_free(e->vc);
	vm_lock_release(e->vm_lock);
	pthread_mutex_destroy(&e->lock);
	free(e->state);
	free(e);
}
