/* vmcryptd's Prometheus metrics (docs/vmcryptd.md "Metrics"): request, authentication and secret
 * counters kept in process with lock-free atomics, the fleet's state counted from the store at
 * scrape time, and GET /metrics, which writes them all in the text exposition format.
 *
 * Label cardinality is bounded by construction: a route label is the route table's pattern
 * (never the raw URL), a method one of the table's or a few fixed words, a status its class, an
 * operation a store op's name, and no label ever holds a VM, volume, key or token name. */
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "basic/log.h"
#include "basic/string-util.h"
#include "shared/metrics.h"
#include "vmcryptd.h"

#define MS(x) ((uint64_t)(x) * UINT64_C(1000000))
#define SEC(x) ((uint64_t)(x) * UINT64_C(1000000000))

/* From half a millisecond (a goal poll on a warm connection) to 10 s (a key rotation re-wrapping
 * a fleet's secrets, a 32 MiB header over a slow link); an fsync sits around 3 to 20 ms here. */
const struct metrics_buckets stats_latency_buckets = {
	14, { MS(1) / 2, MS(1), MS(5) / 2, MS(5), MS(10), MS(25), MS(50), MS(100), MS(250), MS(500), SEC(1),
	      SEC(5) / 2, SEC(5), SEC(10) },
};

/* --- requests --- */

/* Status classes 1xx to 5xx; a status outside them (none was queued) is not counted. */
#define STATUS_CLASSES 5
/* Requests no route matched (404, 405): their method is one of these words, or "other", so a
 * client making up methods makes up no series. */
static const char *const unmatched_methods[] = { "GET", "HEAD", "POST", "PUT", "DELETE", "other" };
#define UNMATCHED_ROUTE "unmatched"

static struct metrics_histogram http_routes[_API_ROUTE_MAX][STATUS_CLASSES];
static struct metrics_histogram http_unmatched[ELEMENTSOF(unmatched_methods)][STATUS_CLASSES];

static size_t unmatched_slot(const char *method)
{
	for (size_t i = 0; i + 1 < ELEMENTSOF(unmatched_methods); i++)
		if (method && streq(method, unmatched_methods[i]))
			return i;
	return ELEMENTSOF(unmatched_methods) - 1;
}

void stats_http_observe(int route, const char *method, unsigned status, uint64_t ns)
{
	unsigned class = status / 100;

	if (class < 1 || class > STATUS_CLASSES)
		return;
	if (route >= 0 && route < _API_ROUTE_MAX)
		metrics_histogram_observe(&http_routes[route][class - 1], &stats_latency_buckets, ns);
	else
		metrics_histogram_observe(&http_unmatched[unmatched_slot(method)][class - 1], &stats_latency_buckets,
					  ns);
}

/* --- authentication --- */

enum auth_reason {
	AUTH_MISSING,   /* no credential (401) */
	AUTH_INVALID,   /* malformed, wrong, unknown, revoked named or used enrollment token (401) */
	AUTH_FORBIDDEN, /* the wrong kind of token, a role too low, a revoked VM (403) */
	_AUTH_REASON_MAX,
};
static const char *const auth_reason_names[_AUTH_REASON_MAX] = {
	[AUTH_MISSING] = "missing",
	[AUTH_INVALID] = "invalid",
	[AUTH_FORBIDDEN] = "forbidden",
};

static struct metrics_counter auth_failures[_API_ROUTE_MAX][_AUTH_REASON_MAX];
static struct metrics_counter lockouts_started, locked_out_requests;

void stats_auth_failure(const struct api_route_def *def, int error, bool lockout)
{
	enum auth_reason why = error == -ENOKEY ? AUTH_MISSING : error == -EKEYREJECTED ? AUTH_INVALID : AUTH_FORBIDDEN;

	if (def && def->route >= 0 && def->route < _API_ROUTE_MAX)
		metrics_counter_inc(&auth_failures[def->route][why]);
	if (lockout)
		metrics_counter_inc(&lockouts_started);
}

void stats_auth_locked_out(void)
{
	metrics_counter_inc(&locked_out_requests);
}

/* --- secrets and header backups --- */

static const char *const secret_op_names[_STATS_SECRET_MAX] = {
	[STATS_SECRET_READ] = "read",
	[STATS_SECRET_REVEAL] = "reveal",
	[STATS_SECRET_WRITE] = "write",
	[STATS_SECRET_REWRAP] = "rewrap",
	[STATS_HEADER_READ] = "read",
	[STATS_HEADER_WRITE] = "write",
};
static struct metrics_counter secret_ops[_STATS_SECRET_MAX];

void stats_secret(enum stats_secret op)
{
	if (op >= 0 && op < _STATS_SECRET_MAX)
		metrics_counter_inc(&secret_ops[op]);
}

/* --- the process --- */

static char build_version[64] = "unknown";
static int64_t start_time;

void stats_init(const char *version)
{
	snprintf(build_version, sizeof(build_version), "%s", version);
	start_time = (int64_t)time(NULL);
}

static void write_process(struct metrics_text *t)
{
	struct metrics_label v[] = { { "version", build_version } };
	struct rusage ru;
	struct rlimit rl;
	unsigned long long pages = 0, resident = 0;
	FILE *f;
	DIR *d;

	metrics_text_family(t, "vmcryptd_build_info", "gauge", "vmcryptd's version, as a label; always 1.");
	metrics_text_sample(t, "vmcryptd_build_info", v, 1, 1);
	/* The process collector's names, which every Prometheus client library exports: dashboards
	 * for uptime and restarts work as they are. */
	metrics_text_family(t, "process_start_time_seconds", "gauge", "When vmcryptd started, in seconds since the epoch.");
	metrics_text_sample(t, "process_start_time_seconds", NULL, 0, (double)start_time);
	if (getrusage(RUSAGE_SELF, &ru) == 0) {
		metrics_text_family(t, "process_cpu_seconds_total", "counter", "User and system CPU time spent, in seconds.");
		metrics_text_sample(t, "process_cpu_seconds_total", NULL, 0,
				    (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
					    (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6);
	}
	f = fopen("/proc/self/statm", "re");
	if (f && fscanf(f, "%llu %llu", &pages, &resident) == 2) {
		metrics_text_family(t, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
		metrics_text_sample(t, "process_resident_memory_bytes", NULL, 0,
				    (double)resident * (double)sysconf(_SC_PAGESIZE));
	}
	if (f)
		fclose(f);
	/* At most --max-conns and a few hundred more entries: cheap next to a TLS handshake. */
	d = opendir("/proc/self/fd");
	if (d) {
		uint64_t n = 0;
		struct dirent *de;

		while ((de = readdir(d)))
			if (de->d_name[0] != '.')
				n++;
		closedir(d);
		metrics_text_family(t, "process_open_fds", "gauge", "Open file descriptors.");
		metrics_text_sample_u64(t, "process_open_fds", NULL, 0, n > 0 ? n - 1 : 0); /* not opendir's own */
	}
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		metrics_text_family(t, "process_max_fds", "gauge", "The soft limit of open file descriptors.");
		metrics_text_sample(t, "process_max_fds", NULL, 0, rl.rlim_cur == RLIM_INFINITY ? -1 : (double)rl.rlim_cur);
	}
}

/* --- the fleet, from the store --- */

enum conversion {
	CONVERSION_ENCRYPT,
	CONVERSION_DECRYPT,
	_CONVERSION_MAX,
};
static const char *const conversion_names[_CONVERSION_MAX] = { "encrypt", "decrypt" };
static const char *const vm_state_names[] = { "registered", "enrolled", "revoked" };
#define DRIFT_STATES (API_DRIFT_NEVER + 1)

struct fleet {
	uint64_t vms[ELEMENTSOF(vm_state_names)];
	uint64_t drift[DRIFT_STATES];             /* enrolled VMs */
	uint64_t os[_ADE_STATE_MAX], data[_ADE_STATE_MAX]; /* enrolled VMs that have reported */
	uint64_t converting[_CONVERSION_MAX];     /* volumes */
	uint64_t done_bytes[_CONVERSION_MAX], size_bytes[_CONVERSION_MAX];
	uint64_t scan_ns;
	int64_t scanned_at; /* seconds since the epoch; 0: never */
	int error;          /* of the last scan; the counts are the last good scan's */
};

/* What the drift of an enrolled VM needs beyond its settings, taken out of the listing, so no
 * store call runs inside another's callback. */
struct fleet_vm {
	char name[API_NAME_MAX + 1];
	bool extension_removed, reported;
	enum ade_state os, data;
	uint64_t report_sequence;
	int64_t report_time;
};

struct fleet_scan {
	struct fleet *f;
	struct fleet_vm *vms;
	size_t n, cap;
};

static enum ade_state state_of(json_t *o, const char *field)
{
	enum ade_state s = ade_state_from_string(json_string_value(json_object_get(o, field)));
	return s < 0 ? ADE_STATE_UNKNOWN : s;
}

static uint64_t u64_of(json_t *o, const char *field)
{
	json_int_t v = json_integer_value(json_object_get(o, field));
	return v > 0 ? (uint64_t)v : 0;
}

static int fleet_vm_cb(const struct store_vm *vm, void *userdata)
{
	struct fleet_scan *sc = userdata;
	struct fleet_vm *e;
	json_t *report = NULL, *volumes, *vol;
	size_t i;

	if (vm->state >= 0 && (size_t)vm->state < ELEMENTSOF(vm_state_names))
		sc->f->vms[vm->state]++;
	if (vm->state != STORE_VM_ENROLLED)
		return 0;
	if (sc->n == sc->cap) {
		size_t cap = sc->cap ? sc->cap * 2 : 64;
		struct fleet_vm *p = reallocarray(sc->vms, cap, sizeof(*p));

		if (!p)
			return -ENOMEM;
		sc->vms = p;
		sc->cap = cap;
	}
	e = &sc->vms[sc->n++];
	*e = (struct fleet_vm){ .extension_removed = vm->extension_removed, .report_time = vm->last_report_time };
	snprintf(e->name, sizeof(e->name), "%s", vm->name);
	if (vm->last_report)
		report = json_loads(vm->last_report, 0, NULL);
	if (!report)
		return 0;
	e->reported = json_object_get(report, "OsVolumeEncrypted") && json_object_get(report, "DataVolumesEncrypted");
	e->os = state_of(report, "OsVolumeEncrypted");
	e->data = state_of(report, "DataVolumesEncrypted");
	e->report_sequence = u64_of(report, "SequenceVersion");
	volumes = json_object_get(report, "Volumes");
	json_array_foreach(volumes, i, vol) {
		enum ade_state s = state_of(vol, "state");
		enum conversion c = s == ADE_STATE_ENCRYPTION_IN_PROGRESS ? CONVERSION_ENCRYPT
				    : s == ADE_STATE_DECRYPTION_IN_PROGRESS ? CONVERSION_DECRYPT
									    : _CONVERSION_MAX;

		if (c == _CONVERSION_MAX)
			continue;
		sc->f->converting[c]++;
		sc->f->done_bytes[c] += u64_of(vol, "bytesDone");
		sc->f->size_bytes[c] += u64_of(vol, "bytesTotal");
	}
	json_decref(report);
	return 0;
}

static int fleet_scan(struct server *srv, struct fleet *ret)
{
	struct fleet f = {};
	struct fleet_scan sc = { .f = &f };
	uint64_t t0 = metrics_now_ns();
	int64_t now = (int64_t)time(NULL);
	int r;

	r = store_vm_list(srv->store, fleet_vm_cb, &sc);
	for (size_t i = 0; r >= 0 && i < sc.n; i++) {
		struct fleet_vm *e = &sc.vms[i];
		struct store_settings st = {};
		struct api_drift_input in;
		char message[512];
		enum api_drift d;

		r = store_settings_get(srv->store, e->name, &st);
		if (r == -ENOENT) /* deleted since the listing, or never configured */
			r = 0;
		if (r < 0)
			break;
		in = (struct api_drift_input){
			.enabled = e->extension_removed ? 0 : st.enabled,
			.sequence = st.sequence,
			.os_state = e->reported ? ade_state_to_string(e->os) : NULL,
			.data_state = e->reported ? ade_state_to_string(e->data) : NULL,
			.report_sequence = e->report_sequence,
			.report_time = e->report_time,
			.now = now,
			.stale_after = srv->stale_after,
		};
		d = api_drift_compute(&in, message, sizeof(message));
		if ((unsigned)d < DRIFT_STATES)
			f.drift[d]++;
		if (e->reported) {
			f.os[e->os]++;
			f.data[e->data]++;
		}
	}
	free(sc.vms);
	if (r < 0)
		return r;
	f.scan_ns = metrics_now_ns() - t0;
	f.scanned_at = now;
	*ret = f;
	return 0;
}

/* The last scan, shared by every scrape within --metrics-fleet-interval of it: however often
 * and from however many scrapers, the fleet costs one store listing per interval. One scan
 * runs at a time; scrapes arriving meanwhile wait for it and take its result. */
static pthread_mutex_t fleet_lock = PTHREAD_MUTEX_INITIALIZER;
static struct fleet fleet_last;
static uint64_t fleet_last_ns; /* CLOCK_MONOTONIC of fleet_last; 0: never */

static void fleet_get(struct server *srv, struct fleet *ret)
{
	uint64_t now = metrics_now_ns();

	pthread_mutex_lock(&fleet_lock);
	if (fleet_last_ns == 0 || now - fleet_last_ns >= SEC(srv->metrics_fleet_interval)) {
		struct fleet f;
		int r = fleet_scan(srv, &f);

		if (r < 0) {
			log_warning_errno(r, "Could not count the fleet for /metrics: %m");
			fleet_last.error = r;
		} else
			fleet_last = f;
		/* A failed scan is not retried by every scrape either: the store is in trouble. */
		fleet_last_ns = metrics_now_ns();
	}
	*ret = fleet_last;
	pthread_mutex_unlock(&fleet_lock);
}

static void write_fleet(struct server *srv, struct metrics_text *t)
{
	static const char *const drift_help =
		"Enrolled VMs by drift state (none, pending, drift, stale, never-reported), as "
		"vmcrypt-admin vm encryption show computes it.";
	struct fleet f;

	fleet_get(srv, &f);
	metrics_text_family(t, "vmcryptd_vms", "gauge", "VMs by state: registered (not enrolled yet), enrolled, revoked.");
	for (size_t i = 0; i < ELEMENTSOF(vm_state_names); i++)
		metrics_text_sample_u64(t, "vmcryptd_vms", &(struct metrics_label){ "state", vm_state_names[i] }, 1,
					f.vms[i]);
	metrics_text_family(t, "vmcryptd_vms_drift", "gauge", drift_help);
	for (enum api_drift d = 0; d < DRIFT_STATES; d++)
		metrics_text_sample_u64(t, "vmcryptd_vms_drift", &(struct metrics_label){ "drift", api_drift_to_string(d) },
					1, f.drift[d]);
	metrics_text_family(t, "vmcryptd_vms_encryption", "gauge",
			    "Enrolled VMs that have reported, by OsVolumeEncrypted (volume_type=\"os\") and "
			    "DataVolumesEncrypted (volume_type=\"data\") of their latest report.");
	for (enum ade_state s = 0; s < _ADE_STATE_MAX; s++) {
		struct metrics_label os[] = { { "volume_type", "os" }, { "status", ade_state_to_string(s) } };
		struct metrics_label data[] = { { "volume_type", "data" }, { "status", ade_state_to_string(s) } };

		metrics_text_sample_u64(t, "vmcryptd_vms_encryption", os, 2, f.os[s]);
		metrics_text_sample_u64(t, "vmcryptd_vms_encryption", data, 2, f.data[s]);
	}
	metrics_text_family(t, "vmcryptd_conversions_in_progress", "gauge",
			    "Volumes converting (EncryptionInProgress or DecryptionInProgress) in the enrolled VMs' "
			    "latest reports.");
	for (enum conversion c = 0; c < _CONVERSION_MAX; c++)
		metrics_text_sample_u64(t, "vmcryptd_conversions_in_progress",
					&(struct metrics_label){ "direction", conversion_names[c] }, 1, f.converting[c]);
	metrics_text_family(t, "vmcryptd_conversion_done_bytes", "gauge",
			    "Bytes converted so far by the volumes converting, as their latest reports say (bytesDone).");
	for (enum conversion c = 0; c < _CONVERSION_MAX; c++)
		metrics_text_sample_u64(t, "vmcryptd_conversion_done_bytes",
					&(struct metrics_label){ "direction", conversion_names[c] }, 1, f.done_bytes[c]);
	metrics_text_family(t, "vmcryptd_conversion_size_bytes", "gauge",
			    "Bytes to convert in all by the volumes converting, as their latest reports say (bytesTotal).");
	for (enum conversion c = 0; c < _CONVERSION_MAX; c++)
		metrics_text_sample_u64(t, "vmcryptd_conversion_size_bytes",
					&(struct metrics_label){ "direction", conversion_names[c] }, 1, f.size_bytes[c]);
	metrics_text_family(t, "vmcryptd_fleet_scan_timestamp_seconds", "gauge",
			    "When the fleet gauges above were counted from the store, in seconds since the epoch (0: never).");
	metrics_text_sample(t, "vmcryptd_fleet_scan_timestamp_seconds", NULL, 0, (double)f.scanned_at);
	metrics_text_family(t, "vmcryptd_fleet_scan_duration_seconds", "gauge", "How long that count took.");
	metrics_text_sample(t, "vmcryptd_fleet_scan_duration_seconds", NULL, 0, (double)f.scan_ns / 1e9);
	metrics_text_family(t, "vmcryptd_fleet_scan_ok", "gauge", "1 when the last count of the fleet succeeded, 0 when it failed.");
	metrics_text_sample(t, "vmcryptd_fleet_scan_ok", NULL, 0, f.error < 0 ? 0 : 1);
}

/* --- the exposition --- */

static const char *const status_class_names[STATUS_CLASSES] = { "1xx", "2xx", "3xx", "4xx", "5xx" };

static void write_http(struct metrics_text *t)
{
	size_t n;
	const struct api_route_def *routes = api_routes(&n);

	metrics_text_family(t, "vmcryptd_http_request_duration_seconds", "histogram",
			    "Requests answered, by route (the route table's pattern), method and status class: from the "
			    "request line to the last byte of the answer handed to the connection.");
	for (size_t i = 0; i < n; i++)
		for (size_t c = 0; c < STATUS_CLASSES; c++) {
			const struct metrics_histogram *h = &http_routes[routes[i].route][c];
			struct metrics_label l[] = { { "route", routes[i].pattern },
						     { "method", routes[i].method },
						     { "code", status_class_names[c] } };

			/* A series appears with its first request: 32 routes by 5 classes by 17
			 * lines would be mostly zeros. */
			if (metrics_histogram_count(h, &stats_latency_buckets) > 0)
				metrics_text_histogram(t, "vmcryptd_http_request_duration_seconds", l, 3, h,
						       &stats_latency_buckets);
		}
	for (size_t m = 0; m < ELEMENTSOF(unmatched_methods); m++)
		for (size_t c = 0; c < STATUS_CLASSES; c++) {
			const struct metrics_histogram *h = &http_unmatched[m][c];
			struct metrics_label l[] = { { "route", UNMATCHED_ROUTE },
						     { "method", unmatched_methods[m] },
						     { "code", status_class_names[c] } };

			if (metrics_histogram_count(h, &stats_latency_buckets) > 0)
				metrics_text_histogram(t, "vmcryptd_http_request_duration_seconds", l, 3, h,
						       &stats_latency_buckets);
		}

	metrics_text_family(t, "vmcryptd_auth_failures_total", "counter",
			    "Refused authentications, by route (the route table's pattern), method and reason: missing "
			    "(no credential, 401), invalid (malformed, wrong, unknown or revoked token, 401), forbidden "
			    "(the wrong kind of token, a role too low, a revoked VM, 403).");
	for (size_t i = 0; i < n; i++)
		for (size_t w = 0; w < _AUTH_REASON_MAX; w++) {
			uint64_t v = metrics_counter_get(&auth_failures[routes[i].route][w]);
			struct metrics_label l[] = { { "route", routes[i].pattern },
						     { "method", routes[i].method },
						     { "reason", auth_reason_names[w] } };

			/* A route's row appears with its first failure, like the histograms'. */
			if (v > 0)
				metrics_text_sample_u64(t, "vmcryptd_auth_failures_total", l, 3, v);
		}
	metrics_text_family(t, "vmcryptd_auth_lockouts_total", "counter",
			    "Lockouts of a source that the failed-authentication throttle started.");
	metrics_text_sample_u64(t, "vmcryptd_auth_lockouts_total", NULL, 0, metrics_counter_get(&lockouts_started));
	metrics_text_family(t, "vmcryptd_auth_locked_out_requests_total", "counter",
			    "Requests refused with 429 because their source was locked out, unread.");
	metrics_text_sample_u64(t, "vmcryptd_auth_locked_out_requests_total", NULL, 0,
				metrics_counter_get(&locked_out_requests));
}

static void write_secrets(struct metrics_text *t)
{
	metrics_text_family(t, "vmcryptd_secret_reads_total", "counter",
			    "Secret values handed out: read (a VM, its own) and reveal (an admin, ?reveal=true).");
	for (enum stats_secret op = STATS_SECRET_READ; op <= STATS_SECRET_REVEAL; op++)
		metrics_text_sample_u64(t, "vmcryptd_secret_reads_total",
					&(struct metrics_label){ "operation", secret_op_names[op] }, 1,
					metrics_counter_get(&secret_ops[op]));
	metrics_text_family(t, "vmcryptd_secret_writes_total", "counter",
			    "Secret versions stored: write (a VM's PUT) and rewrap (by a key rotation).");
	for (enum stats_secret op = STATS_SECRET_WRITE; op <= STATS_SECRET_REWRAP; op++)
		metrics_text_sample_u64(t, "vmcryptd_secret_writes_total",
					&(struct metrics_label){ "operation", secret_op_names[op] }, 1,
					metrics_counter_get(&secret_ops[op]));
	metrics_text_family(t, "vmcryptd_header_backup_reads_total", "counter",
			    "LUKS2 header backups handed out (to their VM or an admin).");
	metrics_text_sample_u64(t, "vmcryptd_header_backup_reads_total", NULL, 0,
				metrics_counter_get(&secret_ops[STATS_HEADER_READ]));
	metrics_text_family(t, "vmcryptd_header_backup_writes_total", "counter",
			    "LUKS2 header backup versions stored.");
	metrics_text_sample_u64(t, "vmcryptd_header_backup_writes_total", NULL, 0,
				metrics_counter_get(&secret_ops[STATS_HEADER_WRITE]));
}

int handle_metrics(struct request *rq, struct reply *rep)
{
	struct metrics_text t = {};
	int r;

	write_process(&t);
	write_http(&t);
	write_secrets(&t);
	timed_store_write(&t);
	write_fleet(rq->srv, &t);
	r = metrics_text_take(&t, &rep->text, &rep->text_size);
	if (r < 0)
		return reply_error(rep, r, "could not write the metrics");
	rep->content_type = METRICS_CONTENT_TYPE;
	return 0;
}
