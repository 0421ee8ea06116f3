/* vmcryptd's background chores: the audit retention (at start, every minute, and early when a
 * tenth of --audit-max-rows arrived since the last pass, so a flood overshoots the cap by at
 * most that much) and the throttle's aggregated log lines. */
#include <errno.h>
#include <pthread.h>
#include <time.h>

#include "basic/log.h"
#include "vmcryptd.h"

#define PRUNE_INTERVAL 60 /* seconds */

static pthread_t thread;
static bool running, stopping;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;

static void *housekeeping_main(void *p)
{
	struct server *srv = p;
	time_t last_prune = 0;

	pthread_mutex_lock(&lock);
	while (!stopping) {
		struct timespec ts;
		uint64_t early = srv->retention.max_rows / 10;
		time_t now = time(NULL);

		if (now - last_prune >= PRUNE_INTERVAL || (early && audit_events_since_prune() >= early)) {
			pthread_mutex_unlock(&lock);
			(void)audit_apply_retention(srv);
			pthread_mutex_lock(&lock);
			last_prune = now;
		}
		pthread_mutex_unlock(&lock);
		throttle_flush(srv->throttle, false);
		pthread_mutex_lock(&lock);

		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += 1;
		if (!stopping)
			pthread_cond_timedwait(&wake, &lock, &ts);
	}
	pthread_mutex_unlock(&lock);
	return NULL;
}

int housekeeping_start(struct server *srv)
{
	int r = pthread_create(&thread, NULL, housekeeping_main, srv);
	if (r != 0)
		return log_error_errno(-r, "Could not start the housekeeping thread: %m");
	running = true;
	return 0;
}

void housekeeping_stop(void)
{
	if (!running)
		return;
	pthread_mutex_lock(&lock);
	stopping = true;
	pthread_cond_signal(&wake);
	pthread_mutex_unlock(&lock);
	pthread_join(thread, NULL);
	running = false;
}
