/* The failed-authentication throttle: per client address and per token id, with exponential
 * backoff into a temporary lockout, and warning lines aggregated per address.
 *
 * Rules (docs/vmcryptd.md, "Failed authentication"):
 *  - A source (an IPv4 address, or an IPv6 /64) makes free_failures failed authentications
 *    unhindered. From then on every further failure locks it out for 1 s, 2 s, 4 s, ... up to
 *    lockout_max; while locked out its requests get 429 with Retry-After before anything is
 *    parsed, looked up or audited, so a flood costs a table lookup per request. Its failures are
 *    forgotten after it has made none for max(10 min, 2 * lockout_max).
 *  - A token id (a VM's id, or "admin") counts wrong secrets presented for it from any source.
 *    Past free_failures a wrong secret for it locks the presenting source out at once, for the
 *    id's backoff: a guess spread over many addresses gets one try per address and lockout.
 *    The id itself is never locked: a correct token for it is still checked and passes, so
 *    knowing a VM's id does not let anyone lock that VM out.
 *  - Every refusal counts for its source (no, malformed, wrong, wrong-kind or revoked
 *    credential): each costs an audit row, and an unthrottled kind would let one source flood
 *    the audit trail until the retention drops the real events.
 *  - Successes never reset a source's count: a caller holding one valid credential must not
 *    be able to guess another one at full speed by mixing in good requests.
 * The tables have a fixed size (set-associative, evicting the stalest entry of a set), so a
 * flood of addresses costs no memory; the set is picked by a hash with a random seed, so an
 * outsider cannot aim at the entry of a given address. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "basic/log.h"
#include "basic/string-util.h"
#include "shared/secret.h"
#include "vmcryptd.h"

#define SOURCE_SETS 512
#define ID_SETS 128
#define WAYS 8
#define REASON_MAX 96

struct source_slot {
	bool used;
	uint8_t key[16];
	char text[STORE_SOURCE_MAX];
	unsigned failures;       /* counted toward the lockout, since the last forgetting */
	int64_t last_failure;    /* ms, monotonic */
	int64_t locked_until;    /* ms */
	/* For the aggregated log line: */
	unsigned pending_failed; /* refused authentications not yet logged */
	unsigned pending_locked; /* requests refused while locked out, not yet logged */
	int64_t logged_at;       /* ms of the last line; 0: none yet */
	int64_t pending_since;   /* ms of the first event not yet logged */
	char reason[REASON_MAX]; /* of the last failure */
};

struct id_slot {
	bool used;
	char id[TOKEN_ID_LEN + 1];
	unsigned failures;
	int64_t last_failure;
};

struct throttle {
	struct throttle_config cfg;
	pthread_mutex_t lock;
	uint64_t seed;
	struct source_slot sources[SOURCE_SETS][WAYS];
	struct id_slot ids[ID_SETS][WAYS];
};

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* FNV-1a over the seed and the key. */
static size_t hash(const struct throttle *t, const void *key, size_t size, size_t sets)
{
	const uint8_t *p = key;
	uint64_t h = 1469598103934665603ULL ^ t->seed;

	for (size_t i = 0; i < size; i++)
		h = (h ^ p[i]) * 1099511628211ULL;
	h ^= h >> 29;
	return (size_t)(h % sets);
}

static int64_t forget_ms(const struct throttle *t)
{
	return 1000LL * MAX(600u, 2u * t->cfg.lockout_max);
}

/* The lockout after the given number of failures: none for the free ones, then 1 s doubling
 * per failure up to lockout_max. */
static int64_t backoff_ms(const struct throttle *t, unsigned failures)
{
	unsigned over;

	if (failures < t->cfg.free_failures || t->cfg.lockout_max == 0)
		return 0;
	over = MIN(failures - t->cfg.free_failures, 20u);
	return MIN(1000LL << over, 1000LL * t->cfg.lockout_max);
}

int throttle_new(const struct throttle_config *cfg, struct throttle **ret)
{
	struct throttle *t = calloc(1, sizeof(*t));
	int r;

	if (!t)
		return -ENOMEM;
	t->cfg = *cfg;
	r = secret_random(&t->seed, sizeof(t->seed));
	if (r < 0) {
		free(t);
		return r;
	}
	pthread_mutex_init(&t->lock, NULL);
	*ret = t;
	return 0;
}

/* Writes the aggregated line of a slot and resets its counters. Called with the lock held. */
static void slot_log(const struct throttle *t, struct source_slot *s, int64_t now)
{
	char failed[160] = "", locked[64] = "", span[32] = "", left[48] = "";

	if (s->pending_failed == 0 && s->pending_locked == 0)
		return;
	if (s->pending_failed > 0)
		snprintf(failed, sizeof(failed), "%u refused (last: %s)", s->pending_failed, s->reason);
	if (s->pending_locked > 0)
		snprintf(locked, sizeof(locked), "%s%u refused unchecked while locked out", failed[0] ? ", " : "",
			 s->pending_locked);
	if (now - s->pending_since >= 1000)
		snprintf(span, sizeof(span), " in %lld s", (long long)((now - s->pending_since + 999) / 1000));
	if (s->locked_until > now)
		snprintf(left, sizeof(left), "; locked out for %lld s more", (long long)((s->locked_until - now + 999) / 1000));
	log_warning("Failed authentication from %s: %s%s%s%s.", s->text[0] ? s->text : "an unknown address", failed,
		    locked, span, left);
	s->pending_failed = s->pending_locked = 0;
	s->logged_at = now;
}

/* Logs now if the source had no line in the last interval; otherwise the line waits for
 * throttle_flush(). So the first failure shows at once, and a flood makes one line per
 * interval. */
static void slot_maybe_log(const struct throttle *t, struct source_slot *s, int64_t now)
{
	if (s->logged_at == 0 || now - s->logged_at >= 1000LL * t->cfg.log_interval)
		slot_log(t, s, now);
}

/* Whether a is a better slot to evict than b: one not locked out before one that is; among
 * those not locked out the one with the oldest failure, among locked ones the one whose lockout
 * ends first. */
static bool evicts_before(const struct source_slot *a, const struct source_slot *b, int64_t now)
{
	bool a_free = a->locked_until <= now, b_free = b->locked_until <= now;

	if (a_free != b_free)
		return a_free;
	return a_free ? a->last_failure < b->last_failure : a->locked_until < b->locked_until;
}

/* Finds the slot of src, or with create a free or evicted one. Lock held. */
static struct source_slot *source_slot(struct throttle *t, const struct client_addr *src, bool create, int64_t now)
{
	struct source_slot *set = t->sources[hash(t, src->key, sizeof(src->key), SOURCE_SETS)], *victim = NULL;

	for (size_t i = 0; i < WAYS; i++)
		if (set[i].used && memcmp(set[i].key, src->key, sizeof(src->key)) == 0)
			return &set[i];
	if (!create)
		return NULL;
	for (size_t i = 0; i < WAYS; i++) {
		if (!set[i].used) {
			victim = &set[i];
			break;
		}
		if (!victim || evicts_before(&set[i], victim, now))
			victim = &set[i];
	}
	if (victim->used)
		slot_log(t, victim, now);
	memset(victim, 0, sizeof(*victim));
	victim->used = true;
	memcpy(victim->key, src->key, sizeof(src->key));
	snprintf(victim->text, sizeof(victim->text), "%s", src->text);
	return victim;
}

static struct id_slot *id_slot(struct throttle *t, const char *id, int64_t now)
{
	struct id_slot *set = t->ids[hash(t, id, strlen(id), ID_SETS)], *victim = NULL;

	for (size_t i = 0; i < WAYS; i++)
		if (set[i].used && streq(set[i].id, id))
			return &set[i];
	for (size_t i = 0; i < WAYS; i++)
		if (!victim || !set[i].used || (victim->used && set[i].last_failure < victim->last_failure))
			victim = &set[i];
	memset(victim, 0, sizeof(*victim));
	victim->used = true;
	snprintf(victim->id, sizeof(victim->id), "%s", id);
	return victim;
}

unsigned throttle_check(struct throttle *t, const struct client_addr *src)
{
	struct source_slot *s;
	int64_t now = now_ms();
	unsigned left = 0;

	pthread_mutex_lock(&t->lock);
	s = source_slot(t, src, false, now);
	if (s && s->locked_until > now) {
		left = (unsigned)((s->locked_until - now + 999) / 1000);
		if (s->pending_failed == 0 && s->pending_locked == 0)
			s->pending_since = now;
		s->pending_locked++;
		slot_maybe_log(t, s, now);
	}
	pthread_mutex_unlock(&t->lock);
	return left;
}

unsigned throttle_failure(struct throttle *t, const struct client_addr *src, const char *id, const char *reason)
{
	struct source_slot *s;
	int64_t now = now_ms(), lock;

	pthread_mutex_lock(&t->lock);
	s = source_slot(t, src, true, now);
	if (s->failures > 0 && now - s->last_failure > forget_ms(t))
		s->failures = 0;
	s->failures++;
	s->last_failure = now;
	lock = backoff_ms(t, s->failures);
	if (id) {
		struct id_slot *d = id_slot(t, id, now);

		if (d->failures > 0 && now - d->last_failure > forget_ms(t))
			d->failures = 0;
		d->failures++;
		d->last_failure = now;
		lock = MAX(lock, backoff_ms(t, d->failures));
	}
	if (lock > 0 && now + lock > s->locked_until)
		s->locked_until = now + lock;
	else
		lock = 0;
	if (s->pending_failed == 0 && s->pending_locked == 0)
		s->pending_since = now;
	s->pending_failed++;
	snprintf(s->reason, sizeof(s->reason), "%s", reason);
	slot_maybe_log(t, s, now);
	pthread_mutex_unlock(&t->lock);
	return (unsigned)((lock + 999) / 1000);
}

void throttle_flush(struct throttle *t, bool all)
{
	int64_t now = now_ms();

	pthread_mutex_lock(&t->lock);
	for (size_t i = 0; i < SOURCE_SETS; i++)
		for (size_t j = 0; j < WAYS; j++) {
			struct source_slot *s = &t->sources[i][j];

			if (s->used && (all || now - s->logged_at >= 1000LL * t->cfg.log_interval))
				slot_log(t, s, now);
		}
	pthread_mutex_unlock(&t->lock);
}

void throttle_free(struct throttle *t)
{
	if (!t)
		return;
	throttle_flush(t, true);
	pthread_mutex_destroy(&t->lock);
	free(t);
}

void client_addr_from_sockaddr(const struct sockaddr *sa, struct client_addr *ret)
{
	memset(ret, 0, sizeof(*ret));
	if (sa && sa->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;

		ret->key[10] = ret->key[11] = 0xff;
		memcpy(ret->key + 12, &sin->sin_addr, 4);
		inet_ntop(AF_INET, &sin->sin_addr, ret->text, sizeof(ret->text));
	} else if (sa && sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;

		if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr)) {
			memcpy(ret->key, &sin6->sin6_addr, 16);
			inet_ntop(AF_INET, sin6->sin6_addr.s6_addr + 12, ret->text, sizeof(ret->text));
		} else {
			/* One party usually holds a whole /64: count it as one source. */
			memcpy(ret->key, &sin6->sin6_addr, 8);
			inet_ntop(AF_INET6, &sin6->sin6_addr, ret->text, sizeof(ret->text));
		}
	}
}
