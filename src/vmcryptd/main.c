/* vmcryptd: the vmcrypt control plane and key vault. Initializes its data directory on first
 * start, serves the HTTPS API until SIGTERM/SIGINT, then stops cleanly. */
#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>

#include "basic/fileio.h"
#include "basic/log.h"
#include "basic/string-util.h"
#include "shared/exit-status.h"
#include "shared/secret.h"
#include "vmcryptd.h"

static void help(void)
{
	printf("Usage: vmcryptd --data-dir DIR [OPTIONS]\n\n"
	       "The vmcrypt control plane and key vault (HTTPS).\n\n"
	       "  --data-dir DIR         state: store, master key, TLS material, admin token\n"
	       "  --listen ADDR:PORT     where to listen (default 127.0.0.1:8443; port 0 picks one,\n"
	       "                         written to DIR/vmcryptd.listen once serving)\n"
	       "  --tls-cert FILE        PEM certificate (default DIR/tls.crt, self-signed on first start)\n"
	       "  --tls-key FILE         PEM private key (default DIR/tls.key)\n"
	       "  --store LOCATION       store backend (default sqlite:DIR/vmcryptd.db)\n"
	       "  --threads N            epoll worker threads; 0 = one thread per connection (default 2)\n"
	       "  --max-conns N          connections at once (default 1000)\n"
	       "  --max-conns-per-address N\n"
	       "                         connections at once from one client address; 0 = no limit\n"
	       "                         (default 64; raise it for many VMs behind one NAT address)\n"
	       "  --header-timeout SECONDS\n"
	       "                         a request's headers must be in this long after the connection\n"
	       "                         opened or its previous answer (default 10)\n"
	       "  --request-timeout SECONDS\n"
	       "                         a request must be in this long after the connection opened\n"
	       "                         or its previous answer, and its answer out this long after\n"
	       "                         it is ready (default 30)\n"
	       "  --idle-timeout SECONDS close a connection silent this long (default 10)\n"
	       "  --stale-after SECONDS  a VM without a report for this long is shown stale (default 900)\n"
	       "  --metrics-fleet-interval SECONDS\n"
	       "                         GET /metrics counts the fleet from the store at most once per\n"
	       "                         interval (default 10; 0 = at every scrape)\n"
	       "  --durable-read-audit   flush each secret-read audit event to disk before answering\n"
	       "                         (default: committed first, flushed with the next change)\n"
	       "  --audit-max-age DAYS   drop audit events older than this (default 365; 0 keeps all)\n"
	       "  --audit-max-rows N     keep at most the newest N audit events (default 1000000;\n"
	       "                         0 keeps all); what is dropped is recorded as audit.prune\n"
	       "  --auth-free-failures N failed authentications a source makes before it is slowed\n"
	       "                         down (default 10)\n"
	       "  --auth-lockout-max SECONDS  past those, lockouts of 1 s, 2 s, 4 s ... up to this\n"
	       "                         (default 300; 0 turns the throttle off); answered with 429\n"
	       "  --auth-log-interval SECONDS  at most one warning line per source per interval\n"
	       "                         about its failed authentications (default 60)\n"
	       "  --verbose              debug messages\n"
	       "  --list-routes          print every route and who may call it (the authorization\n"
	       "                         matrix: enroll, vm, or the least role: metrics, reader,\n"
	       "                         operator, admin), then exit\n"
	       "  --version, --help\n");
}

/* "METHOD PATH AUTH" per route, from the route table itself, and a line "METHOD PATH?ARG=true
 * AUTH" for a query argument that raises what the route needs: what the authorization matrix
 * test walks and docs/vmcryptd.md shows, so neither can miss a route. */
static void list_routes(void)
{
	size_t n;
	const struct api_route_def *routes = api_routes(&n);

	for (size_t i = 0; i < n; i++) {
		printf("%s %s %s\n", routes[i].method, routes[i].pattern, api_auth_to_string(routes[i].auth));
		if (routes[i].raise_arg)
			printf("%s %s?%s=true %s\n", routes[i].method, routes[i].pattern, routes[i].raise_arg,
			       api_auth_to_string(routes[i].raise_auth));
	}
}

/* Descriptors beyond the connections: listen and epoll sockets, SQLite files, the lock, logs. */
#define FDS_BESIDES_CONNECTIONS 256

/* Raises the soft descriptor limit far enough for --max-conns (a systemd service starts at
 * 1024), as far as the hard limit allows. */
static void raise_fd_limit(unsigned max_conns)
{
	rlim_t need = (rlim_t)max_conns + FDS_BESIDES_CONNECTIONS;
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= need)
		return;
	rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= need ? need : rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur < need)
		log_warning("Only %llu file descriptors allowed, while --max-conns %u needs about %llu; connections "
			    "beyond that are refused (raise LimitNOFILE= in the unit, or ulimit -n).",
			    (unsigned long long)rl.rlim_cur, max_conns, (unsigned long long)need);
}

#if defined(__SANITIZE_ADDRESS__)
#define BUILT_WITH_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define BUILT_WITH_ASAN 1
#endif
#endif

/* Locking everything needs RLIMIT_MEMLOCK out of the way: the kernel counts whole mappings
 * against it (every thread's 8 MiB stack, every 64 MiB malloc arena), touched or not, and with
 * MCL_FUTURE an mmap() beyond it fails, so a finite limit would make thread creation and
 * allocations fail under load. Hence: CAP_IPC_LOCK or an unlimited RLIMIT_MEMLOCK, or no
 * mlockall(). */
#ifndef BUILT_WITH_ASAN
static bool has_cap_ipc_lock(void)
{
	_cleanup_fclose_ FILE *f = fopen("/proc/self/status", "re");
	char line[256];
	unsigned long long caps;

	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "CapEff: %llx", &caps) == 1)
			return caps & (1ULL << 14); /* CAP_IPC_LOCK */
	return false;
}
#endif

/* Keeps all of vmcryptd's memory out of swap: decrypted requests, libmicrohttpd's and GnuTLS's
 * buffers and the heap hold tokens and secrets that secret_alloc() cannot reach. MCL_ONFAULT
 * locks pages as they are first touched, so reserved but unused memory (thread stacks, malloc
 * arenas) costs nothing. A failure is a warning: secret_alloc() buffers are still locked one by
 * one. */
static void lock_memory(void)
{
#ifdef BUILT_WITH_ASAN
	/* ASan reserves terabytes of shadow memory, which would all count as locked, and releases
	 * shadow pages with madvise(MADV_DONTNEED), which fails on locked mappings. */
	log_info("Built with AddressSanitizer: not locking memory with mlockall().");
#else
	struct rlimit rl = {};

	if (getrlimit(RLIMIT_MEMLOCK, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		(void)setrlimit(RLIMIT_MEMLOCK, &rl);
		(void)getrlimit(RLIMIT_MEMLOCK, &rl);
	}
	if (rl.rlim_cur != RLIM_INFINITY && !has_cap_ipc_lock()) {
		log_warning("RLIMIT_MEMLOCK is %llu KiB: not locking all memory, only secret buffers; memory "
			    "holding requests may be swapped out (set LimitMEMLOCK=infinity in the unit, or "
			    "give it CAP_IPC_LOCK).",
			    (unsigned long long)rl.rlim_cur / 1024);
		return;
	}
	if (mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT) < 0)
		log_warning("Could not lock memory (%m); memory holding requests may be swapped out (set "
			    "LimitMEMLOCK=infinity in the unit, or run with CAP_IPC_LOCK).");
#endif
}

static char *path_join(const char *dir, const char *name)
{
	char *p = NULL;
	if (asprintf(&p, "%s/%s", dir, name) < 0)
		return NULL;
	return p;
}

static void stderr_time_sink(enum log_level level, const char *message, void *userdata)
{
	static const char *const prefix[] = { "error: ", "warning: ", "", "debug: " };
	char when[32];

	fprintf(stderr, "%s vmcryptd: %s%s\n", api_format_time((int64_t)time(NULL), when, sizeof(when)), prefix[level],
		message);
}

/* The admin token is made once, on first start: its file first, then its hash in the store, so a
 * crash in between just makes a new one on the next start. */
static int admin_token_setup(struct server *srv)
{
	_cleanup_free_ char *hex = NULL;
	_cleanup_free_ char *path = NULL;
	_cleanup_secret_ char *token = NULL;
	char hash_hex[2 * TOKEN_HASH_SIZE + 1];
	int r;

	r = store_meta_get(srv->store, "admin_token_sha256", &hex);
	if (r >= 0)
		return token_unhex(hex, srv->admin_hash, TOKEN_HASH_SIZE) < 0
			       ? log_error_errno(-EBADMSG, "The stored admin token hash is damaged.")
			       : 0;
	if (r != -ENOENT)
		return log_error_errno(r, "Could not read the store: %m");

	path = path_join(srv->data_dir, "admin.token");
	if (!path)
		return -ENOMEM;
	r = token_generate(TOKEN_ADMIN, NULL, &token, srv->admin_hash);
	if (r < 0)
		return log_error_errno(r, "Could not generate the admin token: %m");
	r = write_file_atomic(path, token, strlen(token), 0600);
	if (r < 0)
		return log_error_errno(r, "Could not write %s: %m", path);
	token_hex(srv->admin_hash, TOKEN_HASH_SIZE, hash_hex);
	r = store_meta_set_once(srv->store, "admin_token_sha256", hash_hex, &hex);
	if (r < 0)
		return log_error_errno(r, "Could not store the admin token hash: %m");
	if (r > 0) {
		/* A replica starting at the same time on the same store made its token first. */
		(void)unlink(path);
		log_info("Another vmcryptd on this store made the admin token; copy its admin.token to %s.", path);
		return token_unhex(hex, srv->admin_hash, TOKEN_HASH_SIZE) < 0
			       ? log_error_errno(-EBADMSG, "The stored admin token hash is damaged.")
			       : 0;
	}
	log_info("Wrote the admin token to %s (mode 0600); give it to vmcrypt-admin with --token-file.", path);
	return 0;
}

int main(int argc, char **argv)
{
	enum { ARG_DATA_DIR = 0x100, ARG_LISTEN, ARG_TLS_CERT, ARG_TLS_KEY, ARG_STORE, ARG_THREADS, ARG_STALE,
	       ARG_VERBOSE, ARG_VERSION, ARG_HELP, ARG_DURABLE_READ_AUDIT, ARG_AUDIT_MAX_AGE, ARG_AUDIT_MAX_ROWS,
	       ARG_AUTH_FREE, ARG_AUTH_LOCKOUT, ARG_AUTH_LOG, ARG_MAX_CONNS, ARG_MAX_CONNS_PER_ADDRESS,
	       ARG_HEADER_TIMEOUT, ARG_REQUEST_TIMEOUT, ARG_IDLE_TIMEOUT, ARG_LIST_ROUTES, ARG_METRICS_FLEET_INTERVAL };
	static const struct option options[] = {
		{ "data-dir", required_argument, NULL, ARG_DATA_DIR },
		{ "listen", required_argument, NULL, ARG_LISTEN },
		{ "tls-cert", required_argument, NULL, ARG_TLS_CERT },
		{ "tls-key", required_argument, NULL, ARG_TLS_KEY },
		{ "store", required_argument, NULL, ARG_STORE },
		{ "threads", required_argument, NULL, ARG_THREADS },
		{ "stale-after", required_argument, NULL, ARG_STALE },
		{ "durable-read-audit", no_argument, NULL, ARG_DURABLE_READ_AUDIT },
		{ "audit-max-age", required_argument, NULL, ARG_AUDIT_MAX_AGE },
		{ "audit-max-rows", required_argument, NULL, ARG_AUDIT_MAX_ROWS },
		{ "auth-free-failures", required_argument, NULL, ARG_AUTH_FREE },
		{ "auth-lockout-max", required_argument, NULL, ARG_AUTH_LOCKOUT },
		{ "auth-log-interval", required_argument, NULL, ARG_AUTH_LOG },
		{ "max-conns", required_argument, NULL, ARG_MAX_CONNS },
		{ "max-conns-per-address", required_argument, NULL, ARG_MAX_CONNS_PER_ADDRESS },
		{ "header-timeout", required_argument, NULL, ARG_HEADER_TIMEOUT },
		{ "request-timeout", required_argument, NULL, ARG_REQUEST_TIMEOUT },
		{ "idle-timeout", required_argument, NULL, ARG_IDLE_TIMEOUT },
		{ "metrics-fleet-interval", required_argument, NULL, ARG_METRICS_FLEET_INTERVAL },
		{ "verbose", no_argument, NULL, ARG_VERBOSE },
		{ "list-routes", no_argument, NULL, ARG_LIST_ROUTES },
		{ "version", no_argument, NULL, ARG_VERSION },
		{ "help", no_argument, NULL, ARG_HELP },
		{},
	};
	/* An epoll pool of 2 threads by default: in bench/server its p99 beat a thread per
	 * connection in every case measured (status reports 3.6 against 26.8 ms on a quiet
	 * machine, 9.9 against 13.0 under load). */
	/* A trickling client holds a slot for header_timeout at most, and one address holds at most
	 * max_conns_per_address of them. */
	struct server srv = {
		.stale_after = 900,
		/* A count of the fleet is a store listing: at most one per 10 s, whoever scrapes. */
		.metrics_fleet_interval = 10,
		.threads = 2,
		/* About 150 MB of events at most, and a year of them. */
		.retention = { .max_age_days = 365, .max_rows = 1000000 },
		.max_conns = 1000,
		.max_conns_per_address = 64,
		.header_timeout = 10,
		.request_timeout = 30,
		.idle_timeout = 10,
	};
	/* Ten tries cover a mistyped token or a misconfigured agent; past them a guesser gets one
	 * try per 1, 2, 4 ... 300 s per address. */
	struct throttle_config throttle = { .free_failures = 10, .lockout_max = 300, .log_interval = 60 };
	const char *listen = "127.0.0.1:8443", *tls_cert = NULL, *tls_key = NULL, *store_loc = NULL;
	_cleanup_free_ char *cert_path = NULL, *key_path = NULL, *db_path = NULL, *master_path = NULL,
			    *listen_path = NULL, *cert = NULL;
	_cleanup_secret_ char *key = NULL;
	char listen_host[64] = "", port_text[80];
	uint16_t port = 0;
	sigset_t mask;
	uint64_t u;
	int c, r, sig;

	while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
		switch (c) {
		case ARG_DATA_DIR:
			srv.data_dir = optarg;
			break;
		case ARG_LISTEN:
			listen = optarg;
			break;
		case ARG_TLS_CERT:
			tls_cert = optarg;
			break;
		case ARG_TLS_KEY:
			tls_key = optarg;
			break;
		case ARG_STORE:
			store_loc = optarg;
			break;
		case ARG_THREADS:
			if (parse_u64(optarg, &u) < 0 || u > 64) {
				log_error("--threads must be 0 to 64");
				return EXIT_USAGE;
			}
			srv.threads = (unsigned)u;
			break;
		case ARG_STALE:
			if (parse_u64(optarg, &u) < 0 || u == 0 || u > INT32_MAX) {
				log_error("--stale-after must be a number of seconds");
				return EXIT_USAGE;
			}
			srv.stale_after = (int64_t)u;
			break;
		case ARG_METRICS_FLEET_INTERVAL:
			if (parse_u64(optarg, &u) < 0 || u > 86400) {
				log_error("--metrics-fleet-interval must be 0 to 86400 seconds");
				return EXIT_USAGE;
			}
			srv.metrics_fleet_interval = (unsigned)u;
			break;
		case ARG_DURABLE_READ_AUDIT:
			srv.durable_read_audit = true;
			break;
		case ARG_AUDIT_MAX_AGE:
			if (parse_u64(optarg, &u) < 0 || u > 100000) {
				log_error("--audit-max-age must be a number of days (0 keeps all)");
				return EXIT_USAGE;
			}
			srv.retention.max_age_days = (unsigned)u;
			break;
		case ARG_AUDIT_MAX_ROWS:
			if (parse_u64(optarg, &u) < 0 || u > INT64_MAX) {
				log_error("--audit-max-rows must be a number of events (0 keeps all)");
				return EXIT_USAGE;
			}
			srv.retention.max_rows = u;
			break;
		case ARG_AUTH_FREE:
			if (parse_u64(optarg, &u) < 0 || u > 1000000) {
				log_error("--auth-free-failures must be a number up to 1000000");
				return EXIT_USAGE;
			}
			throttle.free_failures = (unsigned)u;
			break;
		case ARG_AUTH_LOCKOUT:
			if (parse_u64(optarg, &u) < 0 || u > 86400) {
				log_error("--auth-lockout-max must be a number of seconds up to 86400 (0: no throttle)");
				return EXIT_USAGE;
			}
			throttle.lockout_max = (unsigned)u;
			break;
		case ARG_AUTH_LOG:
			if (parse_u64(optarg, &u) < 0 || u == 0 || u > 86400) {
				log_error("--auth-log-interval must be a number of seconds, 1 to 86400");
				return EXIT_USAGE;
			}
			throttle.log_interval = (unsigned)u;
			break;
		case ARG_MAX_CONNS:
			if (parse_u64(optarg, &u) < 0 || u == 0 || u > 100000) {
				log_error("--max-conns must be 1 to 100000");
				return EXIT_USAGE;
			}
			srv.max_conns = (unsigned)u;
			break;
		case ARG_MAX_CONNS_PER_ADDRESS:
			if (parse_u64(optarg, &u) < 0 || u > 100000) {
				log_error("--max-conns-per-address must be 0 (no limit) to 100000");
				return EXIT_USAGE;
			}
			srv.max_conns_per_address = (unsigned)u;
			break;
		case ARG_HEADER_TIMEOUT:
		case ARG_REQUEST_TIMEOUT:
		case ARG_IDLE_TIMEOUT:
			if (parse_u64(optarg, &u) < 0 || u == 0 || u > 3600) {
				log_error("--%s must be 1 to 3600 seconds", c == ARG_HEADER_TIMEOUT    ? "header-timeout"
									   : c == ARG_REQUEST_TIMEOUT ? "request-timeout"
												      : "idle-timeout");
				return EXIT_USAGE;
			}
			*(c == ARG_HEADER_TIMEOUT    ? &srv.header_timeout
			  : c == ARG_REQUEST_TIMEOUT ? &srv.request_timeout
						     : &srv.idle_timeout) = (unsigned)u;
			break;
		case ARG_VERBOSE:
			log_set_max_level(LOG_LEVEL_DEBUG);
			break;
		case ARG_VERSION:
			printf("vmcryptd %s\n", VMCRYPT_VERSION);
			return EXIT_OK;
		case ARG_LIST_ROUTES:
			list_routes();
			return EXIT_OK;
		case 'h':
		case ARG_HELP:
			help();
			return EXIT_OK;
		default:
			return EXIT_USAGE;
		}
	}
	if (optind < argc || !srv.data_dir) {
		log_error("%s; see vmcryptd --help", srv.data_dir ? "unexpected argument" : "--data-dir DIR is required");
		return EXIT_USAGE;
	}
	if (srv.header_timeout > srv.request_timeout) {
		log_error("--header-timeout cannot be longer than --request-timeout");
		return EXIT_USAGE;
	}
	if (srv.max_conns_per_address > srv.max_conns) {
		log_error("--max-conns-per-address cannot be more than --max-conns");
		return EXIT_USAGE;
	}
	if (!tls_cert != !tls_key) {
		log_error("--tls-cert and --tls-key go together");
		return EXIT_USAGE;
	}
	log_set_sink(stderr_time_sink, NULL);

	/* Key material lives in this process: no core dumps, no ptrace by non-root. */
	if (prctl(PR_SET_DUMPABLE, 0) < 0)
		log_warning("Could not make the process non-dumpable: %m");
	/* glibc overwrites each chunk as it is freed (M_PERTURB): GnuTLS frees its decrypted record
	 * buffers, which hold whole requests (bearer credential and body), without wiping them.
	 * Chunks of up to 1 KiB that glibc keeps in its per-thread cache (tcache) are the exception.
	 * ASan's allocator ignores it. */
	if (mallopt(M_PERTURB, 0x5a) != 1)
		log_debug("Could not make malloc wipe freed memory.");
	signal(SIGPIPE, SIG_IGN);
	secret_setup_json_allocator();
	umask(0077);

	r = mkdir_p(srv.data_dir, 0700);
	if (r < 0) {
		log_error_errno(r, "Could not create %s: %m", srv.data_dir);
		return EXIT_ERROR;
	}
	r = strict_modes_check(srv.data_dir, tls_key);
	if (r < 0)
		return r == -EPERM ? EXIT_STATE : EXIT_ERROR;
	/* Before the first secret is read (the master key, the TLS key), after the refusals that
	 * need no secret, so that a refusal stays one line. */
	lock_memory();
	raise_fd_limit(srv.max_conns);
	/* One vmcryptd per data directory: a second one would clobber vmcryptd.listen and race the
	 * first start's initialization. The lock dies with the process, kill -9 included. */
	{
		_cleanup_free_ char *lock_path = path_join(srv.data_dir, "vmcryptd.lock");
		int fd = lock_path ? open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600) : -1;

		if (fd < 0) {
			log_error_errno(negative_errno(), "Could not open %s: %m", lock_path ? lock_path : srv.data_dir);
			return EXIT_ERROR;
		}
		if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
			log_error("Another vmcryptd is serving %s.", srv.data_dir);
			return EXIT_LOCKED;
		}
		/* fd stays open (and locked) until exit. */
	}
	master_path = path_join(srv.data_dir, "master.key");
	db_path = path_join(srv.data_dir, "vmcryptd.db");
	listen_path = path_join(srv.data_dir, "vmcryptd.listen");
	cert_path = tls_cert ? strdup(tls_cert) : path_join(srv.data_dir, "tls.crt");
	key_path = tls_key ? strdup(tls_key) : path_join(srv.data_dir, "tls.key");
	if (!master_path || !db_path || !listen_path || !cert_path || !key_path)
		return EXIT_ERROR;
	(void)unlink(listen_path);

	r = vault_open(master_path, true, &srv.vault);
	if (r < 0) {
		log_error_errno(r, "Could not open the master key %s: %m", master_path);
		return EXIT_KEY;
	}
	if (!store_loc) {
		_cleanup_free_ char *loc = NULL;
		if (asprintf(&loc, "sqlite:%s", db_path) < 0)
			return EXIT_ERROR;
		r = store_open(loc, &srv.store);
	} else {
		r = store_open(store_loc, &srv.store);
	}
	if (r < 0) {
		log_error_errno(r, "Could not open the store: %m");
		vault_free(srv.vault);
		return EXIT_ERROR;
	}
	r = masterkey_check(&srv, master_path);
	if (r < 0) {
		store_close(srv.store);
		vault_free(srv.vault);
		return r == -EKEYREJECTED ? EXIT_KEY : EXIT_ERROR;
	}
	stats_init(VMCRYPT_VERSION);
	if (timed_store_wrap(srv.store) < 0)
		log_warning("Out of memory: store latencies are not measured.");
	r = throttle_new(&throttle, &srv.throttle);
	if (r < 0) {
		log_error_errno(r, "Could not set up the authentication throttle: %m");
		store_close(srv.store);
		vault_free(srv.vault);
		return EXIT_ERROR;
	}
	r = admin_token_setup(&srv);
	if (r >= 0) {
		const char *colon = strrchr(listen, ':');
		if (colon && (size_t)(colon - listen) < sizeof(listen_host))
			snprintf(listen_host, sizeof(listen_host), "%.*s", (int)(colon - listen), listen);
		r = tls_load_or_create(cert_path, key_path, !tls_cert, listen_host, &cert, &key);
	}

	/* Block the stop signals before any thread starts, so only sigwait() below sees them. */
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	pthread_sigmask(SIG_BLOCK, &mask, NULL);

	if (r >= 0)
		r = housekeeping_start(&srv);
	if (r >= 0)
		r = http_start(&srv, listen, cert, key, &port);
	if (r < 0) {
		housekeeping_stop();
		throttle_free(srv.throttle);
		store_close(srv.store);
		vault_free(srv.vault);
		return r == -EADDRNOTAVAIL ? EXIT_BUSY : r == -EINVAL ? EXIT_USAGE : EXIT_ERROR;
	}
	snprintf(port_text, sizeof(port_text), "%s:%u\n", listen_host, port);
	r = write_file_atomic(listen_path, port_text, strlen(port_text), 0644);
	if (r < 0)
		log_warning_errno(r, "Could not write %s: %m", listen_path);
	log_info("Serving HTTPS on %s:%u (data in %s, %s).", listen_host, port, srv.data_dir,
		 srv.threads ? "epoll thread pool" : "thread per connection");

	for (;;) {
		if (sigwait(&mask, &sig) == 0)
			break;
	}
	log_info("Stopping on %s.", strsignal(sig));
	http_stop(&srv);
	housekeeping_stop();
	throttle_free(srv.throttle);
	(void)unlink(listen_path);
	keycache_clear();
	store_close(srv.store);
	vault_free(srv.vault);
	log_info("Stopped.");
	return EXIT_OK;
}
