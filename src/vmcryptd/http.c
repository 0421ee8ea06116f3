/* vmcryptd's HTTPS front: libmicrohttpd glue, connection limits and deadlines, body collection
 * with a hard cap (and, for the raw bodies of header backups, authentication before the body),
 * dispatch through the route table, JSON and raw answers. */
#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "basic/log.h"
#include "basic/string-util.h"
#include "shared/metrics.h"
#include "shared/secret.h"
#include "vmcryptd.h"

static const handler_fn handlers[_API_ROUTE_MAX] = {
	[API_ENROLL] = handle_enroll,
	[API_VM_GOAL] = handle_vm_goal,
	[API_VM_SECRET_PUT] = handle_vm_secret_put,
	[API_VM_SECRET_GET] = handle_vm_secret_get,
	[API_VM_STATUS] = handle_vm_status,
	[API_ADMIN_VM_REGISTER] = handle_admin_vm_register,
	[API_ADMIN_VM_LIST] = handle_admin_vm_list,
	[API_ADMIN_VM_SHOW] = handle_admin_vm_show,
	[API_ADMIN_VM_REVOKE] = handle_admin_vm_revoke,
	[API_ADMIN_VM_DELETE] = handle_admin_vm_delete,
	[API_ADMIN_ENCRYPTION_ENABLE] = handle_admin_encryption_enable,
	[API_ADMIN_ENCRYPTION_DISABLE] = handle_admin_encryption_disable,
	[API_ADMIN_ENCRYPTION_SHOW] = handle_admin_encryption_show,
	[API_ADMIN_EXTENSION_REMOVE] = handle_admin_extension_remove,
	[API_ADMIN_KEY_CREATE] = handle_admin_key_create,
	[API_ADMIN_KEY_LIST] = handle_admin_key_list,
	[API_ADMIN_KEY_SHOW] = handle_admin_key_show,
	[API_ADMIN_KEY_ROTATE] = handle_admin_key_rotate,
	[API_ADMIN_KEY_DISABLE] = handle_admin_key_disable,
	[API_ADMIN_KEY_ENABLE] = handle_admin_key_enable,
	[API_ADMIN_SECRET_LIST] = handle_admin_secret_list,
	[API_ADMIN_SECRET_SHOW] = handle_admin_secret_show,
	[API_ADMIN_AUDIT] = handle_admin_audit,
	[API_VM_HEADER_PUT] = handle_vm_header_put,
	[API_VM_HEADER_GET] = handle_vm_header_get,
	[API_ADMIN_HEADER_LIST] = handle_admin_header_list,
	[API_ADMIN_HEADER_GET] = handle_admin_header_get,
	[API_ADMIN_TOKEN_CREATE] = handle_admin_token_create,
	[API_ADMIN_TOKEN_LIST] = handle_admin_token_list,
	[API_ADMIN_TOKEN_REVOKE] = handle_admin_token_revoke,
	[API_METRICS] = handle_metrics,
};

/* Transfers of raw bodies or answers (header backups, up to API_HEADER_MAX each) under way at
 * once, from everyone: each holds its bytes two or three times over (body, ciphertext, the
 * store's copy), so this bounds what callers with valid credentials can make vmcryptd hold
 * (about 400 MiB at 32 MiB each). A VM holds at most one of them, so that one VM cannot keep the
 * others' uploads out; the admin may hold all. One more is refused with 503 at once, never
 * queued. */
#define BULK_TRANSFERS_MAX 4

/* Per-request state, made by on_target() when the request line arrives. The body may carry a
 * secret: it lives in secret memory. */
struct conn_state {
	char *body;
	size_t size, cap;
	size_t max; /* largest body accepted: API_BODY_MAX, or the route's raw_max once admitted */
	bool too_big;
	bool authed;      /* a raw-body route, authenticated from its headers: who is the caller */
	int bulk;         /* the BULK_TRANSFERS_MAX slot it holds, or -1 */
	struct caller who;
	bool started;     /* on_request has seen the headers */
	bool refused;     /* answered from the headers alone; the body is dropped */
	int target_error; /* api_target_check() on the raw request target */
	char target_message[192];
	const char *target_end; /* where the raw request target's string ends (its NUL) */
	uint64_t start_ns;      /* the request line's arrival, for the latency histogram */
	int route;              /* enum api_route of the request, -1: none matched */
	char method[8];         /* the request's method, for a request no route matched */
};

/* Deadlines for the phases of a connection. libmicrohttpd 0.9.75 has only an idle timeout, which
 * every received byte resets, so a client trickling a byte every few seconds kept its connection
 * slot for as long as it liked. Each connection is tracked here from accept (NOTIFY_CONNECTION
 * started) to close, and a reaper thread shuts down the socket of one that has not delivered a
 * request's headers within header_timeout, or not sent its whole request within request_timeout,
 * both counted from accept or from the end of the connection's previous request (so the TLS
 * handshake and the keep-alive wait count too). Time in a handler does not count: the answer
 * gets request_timeout of its own from when the handler returns. libmicrohttpd then sees the connection fail and closes it in
 * its own thread; nothing here frees or closes what it owns.
 *
 * The fd is safe to shut down while its entry is in the table: libmicrohttpd 0.9.75 calls
 * NOTIFY_CLOSED, which removes the entry under the same mutex, before it closes the socket
 * (MHD_cleanup_connections() and the error path of new_connection_process_() in daemon.c), so
 * the number cannot have been reused by then. A timer thread rather than MHD's own loop because
 * 0.9.75 offers no hook into its event loop or way to close a connection from outside. */
struct conn_track {
	struct conn_track *prev, *next;
	int fd;
	uint64_t since_usec; /* accept, or the end of the previous request (CLOCK_MONOTONIC) */
	bool headers;        /* the current request's headers are in */
	bool busy;           /* in a handler: our time, not the client's */
	bool cut;            /* shut down by the reaper */
};

struct http_conns {
	pthread_mutex_t lock; /* guards everything below */
	pthread_cond_t wake;
	pthread_t reaper;
	struct conn_track *head;
	uint64_t header_usec, request_usec;
	unsigned cut;          /* cut since the last log line */
	/* Who holds each transfer slot: a VM's id, "admin", or "" when free. */
	char bulk[BULK_TRANSFERS_MAX][TOKEN_ID_LEN + 1];
	uint64_t logged_usec;  /* when that line was written */
	bool stop;
};

#define USEC_PER_SEC UINT64_C(1000000)

static uint64_t now_usec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * USEC_PER_SEC + (uint64_t)ts.tv_nsec / 1000;
}

static void *conns_reaper(void *p)
{
	struct http_conns *t = p;

	pthread_mutex_lock(&t->lock);
	while (!t->stop) {
		uint64_t now = now_usec(), next = now + USEC_PER_SEC;
		unsigned cut = 0;
		struct timespec ts;

		for (struct conn_track *e = t->head; e; e = e->next) {
			/* header_timeout <= request_timeout (main.c checks), so the header deadline
			 * comes first while headers are missing. */
			uint64_t deadline = e->since_usec + (e->headers ? t->request_usec : t->header_usec);

			if (e->cut || e->busy)
				continue;
			if (deadline <= now) {
				(void)shutdown(e->fd, SHUT_RDWR);
				e->cut = true;
				t->cut++;
			} else
				next = MIN(next, deadline);
		}
		/* One line a minute at most: an attack must not flood the log. */
		if (t->cut > 0 && now - t->logged_usec >= 60 * USEC_PER_SEC) {
			cut = t->cut;
			t->cut = 0;
			t->logged_usec = now;
		}
		if (cut > 0) {
			pthread_mutex_unlock(&t->lock);
			log_info("Closed %u connection(s) that missed the header (%" PRIu64 " s) or request (%" PRIu64
				 " s) deadline.", cut, t->header_usec / USEC_PER_SEC, t->request_usec / USEC_PER_SEC);
			pthread_mutex_lock(&t->lock);
			continue;
		}
		ts.tv_sec = (time_t)(next / USEC_PER_SEC);
		ts.tv_nsec = (long)(next % USEC_PER_SEC) * 1000;
		(void)pthread_cond_timedwait(&t->wake, &t->lock, &ts);
	}
	pthread_mutex_unlock(&t->lock);
	return NULL;
}

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
			  enum MHD_ConnectionNotificationCode code)
{
	struct http_conns *t = ((struct server *)cls)->conns;
	struct conn_track *e;

	if (code == MHD_CONNECTION_NOTIFY_STARTED) {
		const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);

		if (!ci)
			return;
		e = calloc(1, sizeof(*e));
		if (!e) {
			/* Never an untracked connection: without an entry no deadline applies. */
			(void)shutdown(ci->connect_fd, SHUT_RDWR);
			return;
		}
		e->fd = ci->connect_fd;
		e->since_usec = now_usec();
		pthread_mutex_lock(&t->lock);
		e->next = t->head;
		if (t->head)
			t->head->prev = e;
		t->head = e;
		pthread_mutex_unlock(&t->lock);
		*socket_context = e;
		return;
	}

	e = *socket_context;
	if (!e)
		return;
	pthread_mutex_lock(&t->lock);
	if (e->prev)
		e->prev->next = e->next;
	else
		t->head = e->next;
	if (e->next)
		e->next->prev = e->prev;
	pthread_mutex_unlock(&t->lock);
	free(e);
	*socket_context = NULL;
}

enum conn_event {
	CONN_HEADERS_IN,   /* on_request's first call */
	CONN_HANDLER_IN,   /* dispatch() starts */
	CONN_HANDLER_OUT,  /* dispatch() is done: the answer must go out within request_timeout */
	CONN_ANSWERED,     /* NOTIFY_COMPLETED: the next request's deadlines count from now */
};

static void conn_mark(struct server *srv, struct MHD_Connection *c, enum conn_event ev)
{
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	struct conn_track *e = ci ? ci->socket_context : NULL;

	if (!e)
		return;
	pthread_mutex_lock(&srv->conns->lock);
	switch (ev) {
	case CONN_HEADERS_IN:
		e->headers = true;
		break;
	case CONN_HANDLER_IN:
		e->busy = true;
		break;
	case CONN_HANDLER_OUT:
		e->busy = false;
		e->since_usec = now_usec();
		break;
	case CONN_ANSWERED:
		e->headers = e->busy = false;
		e->since_usec = now_usec();
		break;
	}
	pthread_mutex_unlock(&srv->conns->lock);
}

/* Takes one of the BULK_TRANSFERS_MAX slots for cs's caller, released by on_completed().
 * Returns 0, or -EBUSY with err saying why: all are taken, or the caller's VM holds one. */
static int bulk_take(struct server *srv, struct conn_state *cs, const struct caller *who, char *err, size_t len)
{
	struct http_conns *t = srv->conns;
	const char *owner = who->vm.id[0] ? who->vm.id : "admin";
	int free_slot = -1, r = 0;

	pthread_mutex_lock(&t->lock);
	for (int i = 0; i < BULK_TRANSFERS_MAX; i++) {
		if (!t->bulk[i][0])
			free_slot = free_slot < 0 ? i : free_slot;
		else if (who->vm.id[0] && streq(t->bulk[i], owner))
			r = -EBUSY;
	}
	if (r < 0)
		snprintf(err, len, "VM '%s' has a header backup transfer under way already; retry once it is done",
			 who->vm.name);
	else if (free_slot < 0) {
		r = -EBUSY;
		snprintf(err, len, "%d header backup transfers are under way; retry in a few seconds",
			 BULK_TRANSFERS_MAX);
	} else
		snprintf(t->bulk[free_slot], sizeof(t->bulk[free_slot]), "%s", owner);
	pthread_mutex_unlock(&t->lock);
	cs->bulk = r < 0 ? -1 : free_slot;
	return r;
}

static void bulk_release(struct server *srv, struct conn_state *cs)
{
	struct http_conns *t = srv->conns;

	if (cs->bulk < 0)
		return;
	pthread_mutex_lock(&t->lock);
	t->bulk[cs->bulk][0] = 0;
	pthread_mutex_unlock(&t->lock);
	cs->bulk = -1;
}

static int conns_start(struct server *srv)
{
	_cleanup_free_ struct http_conns *t = NULL;
	pthread_condattr_t attr;
	int r;

	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->header_usec = srv->header_timeout * USEC_PER_SEC;
	t->request_usec = srv->request_timeout * USEC_PER_SEC;
	pthread_mutex_init(&t->lock, NULL);
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&t->wake, &attr);
	pthread_condattr_destroy(&attr);
	r = -pthread_create(&t->reaper, NULL, conns_reaper, t);
	if (r < 0) {
		pthread_cond_destroy(&t->wake);
		pthread_mutex_destroy(&t->lock);
		return r;
	}
	srv->conns = TAKE_PTR(t);
	return 0;
}

/* After MHD_stop_daemon(): every connection is closed and its entry gone. */
static void conns_stop(struct server *srv)
{
	struct http_conns *t = srv->conns;

	if (!t)
		return;
	pthread_mutex_lock(&t->lock);
	t->stop = true;
	pthread_cond_signal(&t->wake);
	pthread_mutex_unlock(&t->lock);
	pthread_join(t->reaper, NULL);
	assert(!t->head);
	pthread_cond_destroy(&t->wake);
	pthread_mutex_destroy(&t->lock);
	free(t);
	srv->conns = NULL;
}

/* header, value: one more response header (a 401's WWW-Authenticate challenge, RFC 6750 3; a
 * 429's Retry-After, RFC 6585 4), or NULL. */
static enum MHD_Result send_json(struct MHD_Connection *c, unsigned status, json_t *body, const char *header,
				 const char *value)
{
	struct MHD_Response *resp;
	enum MHD_Result ret;
	char *text;

	/* json_dumps allocates through the wiping allocator, so a secret in the text is wiped when
	 * libmicrohttpd frees the response. */
	text = json_dumps(body, JSON_COMPACT);
	if (!text)
		return MHD_NO;
	resp = MHD_create_response_from_buffer_with_free_callback(strlen(text), text, model_text_free);
	if (!resp) {
		model_text_free(text);
		return MHD_NO;
	}
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	if (header)
		MHD_add_response_header(resp, header, value);
	ret = MHD_queue_response(c, status, resp);
	MHD_destroy_response(resp);
	return ret;
}

static enum MHD_Result send_error(struct MHD_Connection *c, int error, const char *message)
{
	unsigned status = reply_status_from_errno(error);
	json_t *body;
	enum MHD_Result ret;

	if (status == MHD_HTTP_INTERNAL_SERVER_ERROR && !message[0])
		message = "internal error; see the vmcryptd log";
	body = json_pack("{s:{s:i,s:s}}", "error", "code", (int)status, "message", message);
	if (!body)
		return MHD_NO;
	ret = send_json(c, status, body, status == MHD_HTTP_UNAUTHORIZED ? MHD_HTTP_HEADER_WWW_AUTHENTICATE : NULL,
			"Bearer realm=\"vmcryptd\"");
	json_decref(body);
	return ret;
}

/* A raw answer (a header backup): the bytes in secret memory pass to the response, which wipes
 * them once sent; the reply's fields go with them. */
static enum MHD_Result send_raw(struct MHD_Connection *c, unsigned status, struct reply *rep)
{
	struct MHD_Response *resp;
	enum MHD_Result ret;

	resp = MHD_create_response_from_buffer_with_free_callback(rep->raw_size, rep->raw, secret_free);
	if (!resp)
		return MHD_NO;
	rep->raw = NULL;
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/octet-stream");
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	for (size_t i = 0; i < REPLY_FIELDS_MAX && rep->fields[i].name; i++)
		MHD_add_response_header(resp, rep->fields[i].name, rep->fields[i].value);
	ret = MHD_queue_response(c, status, resp);
	MHD_destroy_response(resp);
	return ret;
}

/* A text answer (/metrics): malloc'd text, no secret in it, freed by libmicrohttpd once sent. */
static enum MHD_Result send_text(struct MHD_Connection *c, unsigned status, struct reply *rep)
{
	struct MHD_Response *resp;
	enum MHD_Result ret;

	resp = MHD_create_response_from_buffer_with_free_callback(rep->text_size, rep->text, free);
	if (!resp)
		return MHD_NO;
	rep->text = NULL;
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, rep->content_type);
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	ret = MHD_queue_response(c, status, resp);
	MHD_destroy_response(resp);
	return ret;
}

/* Makes a path printable and short for audit events and logs. */
static void sanitize(const char *in, char *out, size_t len)
{
	size_t i;

	for (i = 0; in[i] && i + 1 < len; i++)
		out[i] = (unsigned char)in[i] < 0x20 || (unsigned char)in[i] >= 0x7f ? '?' : in[i];
	out[i] = 0;
}

/* What a volume name in the path names: a header backup or (all other routes) a secret. */
static const char *volume_kind(const struct api_route_def *def)
{
	switch (def ? def->route : _API_ROUTE_MAX) {
	case API_VM_HEADER_PUT:
	case API_VM_HEADER_GET:
	case API_ADMIN_HEADER_GET:
		return "header";
	default:
		return "secret";
	}
}

static void object_for(const struct api_request *api, const char *url, char *out, size_t len)
{
	if (api->vm[0] && api->volume[0])
		snprintf(out, len, "vm/%s/%s/%s", api->vm, volume_kind(api->def), api->volume);
	else if (api->vm[0])
		snprintf(out, len, "vm/%s", api->vm);
	else if (api->key[0])
		snprintf(out, len, "key/%s", api->key);
	else if (api->token[0])
		snprintf(out, len, "token/%s", api->token);
	else
		sanitize(url, out, len);
}

/* 429 with Retry-After (RFC 6585 4): the lockout of a source after failed authentications. */
static enum MHD_Result send_locked_out(struct MHD_Connection *c, unsigned retry_after, const char *message)
{
	enum MHD_Result ret;
	char seconds[16];
	json_t *body;

	body = json_pack("{s:{s:i,s:s}}", "error", "code", MHD_HTTP_TOO_MANY_REQUESTS, "message", message);
	if (!body)
		return MHD_NO;
	snprintf(seconds, sizeof(seconds), "%u", retry_after);
	ret = send_json(c, MHD_HTTP_TOO_MANY_REQUESTS, body, MHD_HTTP_HEADER_RETRY_AFTER, seconds);
	json_decref(body);
	return ret;
}

static enum MHD_Result dispatch(struct server *srv, struct MHD_Connection *c, const char *url, const char *method,
				struct conn_state *cs)
{
	struct api_request api = {};
	struct caller who = {};
	struct reply rep = {};
	struct request rq = { .srv = srv, .connection = c, .api = &api, .who = &who };
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	struct client_addr src;
	char err[512] = "";
	enum MHD_Result ret;
	int r, auth;

	client_addr_from_sockaddr(ci ? ci->client_addr : NULL, &src);
	/* A source locked out after failed authentications: not even its path and body are parsed.
	 * (A raw body was admitted only after its caller authenticated.) */
	if (!cs->authed && auth_locked_out(srv, &src, &rep) < 0)
		return send_locked_out(c, rep.retry_after, rep.message);

	r = api_request_parse(method, url, cs->body ? cs->body : "", cs->size, &api, err, sizeof(err));
	if (r == -ENOENT || r == -ENOTSUP) {
		api_request_done(&api);
		return send_error(c, r, err);
	}

	object_for(&api, url, rq.object, sizeof(rq.object));
	/* Authenticate before saying anything about the body: an anonymous caller learns nothing
	 * beyond whether the route exists. A raw body's caller was authenticated from the headers
	 * (admit_raw_body()); who it is passes over from there. */
	if (cs->authed) {
		who = cs->who;
		memset(&cs->who, 0, sizeof(cs->who));
		auth = 0;
	} else {
		/* The one query argument that raises what a route needs (?reveal=true): read here, as
		 * the handler reads it, so the role is checked before the handler runs. */
		bool raise = api.def->raise_arg &&
			     api_flag_true(MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, api.def->raise_arg));

		auth = auth_check(srv, &src,
				  MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION), api.def,
				  raise, rq.object, &who, &rep);
	}
	if (auth < 0) {
		r = auth;
		snprintf(err, sizeof(err), "%s", rep.message);
	} else if (cs->too_big) {
		r = -EFBIG;
		snprintf(err, sizeof(err), "request body larger than %zu bytes", cs->max);
	} else if (r == 0 && api.def->raw_reply_max && cs->bulk < 0)
		r = bulk_take(srv, cs, &who, err, sizeof(err));
	if (r < 0) {
		api_request_done(&api);
		store_vm_done(&who.vm);
		return send_error(c, r, err);
	}

	/* A VM's actions are filed under that VM, so `audit --vm NAME` finds them. */
	if (who.vm.name[0]) {
		if (api.volume[0])
			snprintf(rq.object, sizeof(rq.object), "vm/%s/%s/%s", who.vm.name, volume_kind(api.def),
				 api.volume);
		else
			snprintf(rq.object, sizeof(rq.object), "vm/%s", who.vm.name);
	}
	if (api.def->raw_max) {
		rq.raw = (const uint8_t *)cs->body;
		rq.raw_size = cs->size;
	}

	r = handlers[api.def->route](&rq, &rep);
	if (r < 0) {
		if (reply_status_from_errno(r) == MHD_HTTP_INTERNAL_SERVER_ERROR)
			log_error_errno(r, "%s %s failed: %m", method, rq.object);
		ret = send_error(c, r, rep.message);
	} else if (rep.raw) {
		ret = send_raw(c, rep.status ? rep.status : MHD_HTTP_OK, &rep);
	} else if (rep.text) {
		ret = send_text(c, rep.status ? rep.status : MHD_HTTP_OK, &rep);
	} else {
		if (!rep.body)
			rep.body = json_object();
		ret = rep.body ? send_json(c, rep.status ? rep.status : MHD_HTTP_OK, rep.body, NULL, NULL) : MHD_NO;
	}
	secret_free(rep.raw);
	free(rep.text);
	json_decref(rep.body);
	api_request_done(&api);
	store_vm_done(&who.vm);
	return ret;
}

/* MHD_OPTION_URI_LOG_CALLBACK: the only place that sees the request target before
 * libmicrohttpd decodes it (a %00 would cut the path we route on). Its return value becomes
 * *con_cls. libmicrohttpd 0.9.75 itself ends the string at a raw NUL byte; 1.0 refuses those. */
static void *on_target(void *cls, const char *uri, struct MHD_Connection *c)
{
	struct conn_state *cs = calloc(1, sizeof(*cs));

	if (cs) {
		size_t n = uri ? strlen(uri) : 0;

		cs->target_error = api_target_check(uri ? uri : "", n, cs->target_message,
						    sizeof(cs->target_message));
		cs->target_end = uri ? uri + n : NULL;
		cs->max = API_BODY_MAX;
		cs->bulk = -1;
		cs->route = -1;
		cs->start_ns = metrics_now_ns();
	}
	return cs;
}

/* A raw NUL byte in the request target: libmicrohttpd 0.9.75 hands on the target as a C string,
 * so "DELETE /v1/admin/vms/vmC<NUL>/ignored HTTP/1.1" arrived as a request for vmC. It parses the
 * request line in place, in one buffer: the target, then the NUL it wrote over the space before
 * the version, then the version. A version that does not start right after the target's string
 * ends means the target held a NUL of its own. (libmicrohttpd 1.0 refuses such a line itself.) */
static bool target_was_cut(const struct conn_state *cs, const char *version)
{
#if MHD_VERSION < 0x01000000
	if (!version || !version[0])
		return true; /* no version: HTTP/0.9, or a line cut before it */
	return cs->target_end && version != cs->target_end + 1;
#else
	return false;
#endif
}

struct header_scan {
	unsigned content_length, transfer_encoding;
	bool chunked, bad_char;
};

static enum MHD_Result scan_header(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
	struct header_scan *h = cls;

	if (strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) == 0)
		h->content_length++;
	if (strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING) == 0) {
		h->transfer_encoding++;
		h->chunked = value && strcasecmp(value, "chunked") == 0;
	}
	/* RFC 9110 5.5: no CTL but HTAB in a field value. */
	for (const char *p = value ? value : ""; *p; p++)
		if (((unsigned char)*p < 0x20 && *p != '\t') || *p == 0x7f)
			h->bad_char = true;
	return MHD_YES;
}

/* The headers a proxy in front could read differently from libmicrohttpd, which takes the first
 * Content-Length and ignores it beside a Transfer-Encoding: refused whole (RFC 9112 6.1, 6.3),
 * an identical duplicate Content-Length too. Returns 0 or -EINVAL with err set. */
static int check_headers(struct MHD_Connection *c, char *err, size_t len)
{
	struct header_scan h = {};
	const char *why = NULL;

	MHD_get_connection_values(c, MHD_HEADER_KIND, scan_header, &h);
	if (h.content_length > 1)
		why = "Content-Length given more than once; send it once";
	else if (h.transfer_encoding > 1 || (h.transfer_encoding && !h.chunked))
		why = "Transfer-Encoding must be given once, as \"chunked\"";
	else if (h.content_length && h.transfer_encoding)
		why = "Content-Length and Transfer-Encoding together; send one of them";
	else if (h.bad_char)
		why = "a header value holds a control character";
	if (!why)
		return 0;
	snprintf(err, len, "%s", why);
	return -EINVAL;
}

/* A route whose body is raw bytes (a header backup, up to 32 MiB) is authenticated from the
 * request's headers, before a byte of its body is accepted, so an anonymous caller never makes
 * vmcryptd hold more than the 64 KiB any other body may have. Its caller must then announce the
 * body's length (Content-Length; not chunked) within the route's cap, and find one of
 * BULK_TRANSFERS_MAX free; the body then goes into one buffer of exactly that size.
 * Returns -1 for any other route (nothing done), 0 when admitted, 1 when answered (*ret). */
static int admit_raw_body(struct server *srv, struct MHD_Connection *c, struct conn_state *cs, const char *url,
			  const char *method, const char *content_length, enum MHD_Result *ret)
{
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	struct api_request api = {};
	struct client_addr src;
	struct reply rep = {};
	char err[192], object[160], result[STORE_TEXT_MAX];
	uint64_t n = 0;
	int r;

	(void)api_request_route(method, url, &api, err, sizeof(err));
	if (!api.def || !api.def->raw_max)
		return -1;
	client_addr_from_sockaddr(ci ? ci->client_addr : NULL, &src);
	if (auth_locked_out(srv, &src, &rep) < 0) {
		*ret = send_locked_out(c, rep.retry_after, rep.message);
		return 1;
	}
	object_for(&api, url, object, sizeof(object));
	r = auth_check(srv, &src, MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION),
		       api.def, false, object, &cs->who, &rep);
	if (r < 0) {
		*ret = send_error(c, r, rep.message);
		return 1;
	}
	cs->authed = true;
	if (cs->who.vm.name[0])
		snprintf(object, sizeof(object), "vm/%s/%s/%s", cs->who.vm.name, volume_kind(api.def), api.volume);
	if (!content_length) {
		*ret = send_error(c, -ENODATA, "a header backup must be sent with Content-Length, not chunked");
		return 1;
	}
	if (parse_u64(content_length, &n) < 0 || n > api.def->raw_max) {
		snprintf(result, sizeof(result), "denied: body of %.24s bytes, over the cap of %zu", content_length,
			 api.def->raw_max);
		(void)audit_read_event(srv, &cs->who, api.def->action, object, result);
		snprintf(err, sizeof(err), "a header backup has at most %zu bytes (%zu MiB); this request announces %.24s",
			 api.def->raw_max, api.def->raw_max >> 20, content_length);
		*ret = send_error(c, -EFBIG, err);
		return 1;
	}
	if (n > 0 && bulk_take(srv, cs, &cs->who, err, sizeof(err)) < 0) {
		*ret = send_error(c, -EBUSY, err);
		return 1;
	}
	/* An empty body is refused by dispatch() with the route's own message. The +1 is the NUL
	 * the collector keeps after the body: one allocation, never a doubling. */
	cs->max = api.def->raw_max;
	cs->cap = (size_t)n + 1;
	return 0;
}

/* The route a request is counted under in the metrics, found once from its headers: the route
 * table's entry (also for a name in the path that is then refused), or none. */
static void classify(struct conn_state *cs, const char *url, const char *method)
{
	struct api_request api = {};
	char err[192];

	(void)api_request_route(method, url, &api, err, sizeof(err));
	cs->route = api.def ? (int)api.def->route : -1;
	snprintf(cs->method, sizeof(cs->method), "%s", method ? method : "");
	api_request_done(&api);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
				  const char *version, const char *upload_data, size_t *upload_data_size,
				  void **con_cls)
{
	struct server *srv = cls;
	struct conn_state *cs = *con_cls;

	if (!cs)
		return MHD_NO; /* on_target() could not allocate */
	if (!cs->started) {
		const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
		enum MHD_Result ret;
		char err[192];
		uint64_t n = 0;
		int r;

		cs->started = true;
		conn_mark(srv, c, CONN_HEADERS_IN);
		classify(cs, url, method);
		/* Refused before authentication: these say nothing about the server's state. */
		if (cs->target_error == 0 && target_was_cut(cs, version)) {
			cs->target_error = -EINVAL;
			snprintf(cs->target_message, sizeof(cs->target_message),
				 "the request line holds a NUL byte or no HTTP version");
		}
		if (cs->target_error < 0) {
			cs->refused = true;
			return send_error(c, cs->target_error, cs->target_message);
		}
		r = check_headers(c, err, sizeof(err));
		if (r < 0) {
			cs->refused = true;
			return send_error(c, r, err);
		}
		r = admit_raw_body(srv, c, cs, url, method, cl, &ret);
		if (r > 0)
			cs->refused = true;
		if (r >= 0)
			return r > 0 ? ret : MHD_YES;
		/* Refuse an announced oversized body before reading it. */
		if (cl && (parse_u64(cl, &n) < 0 || n > API_BODY_MAX)) {
			char msg[64];

			cs->too_big = true;
			snprintf(msg, sizeof(msg), "request body larger than %d bytes", API_BODY_MAX);
			return send_error(c, -EFBIG, msg);
		}
		cs->cap = n > 0 ? (size_t)n : 0;
		return MHD_YES;
	}

	if (*upload_data_size > 0) {
		size_t n = *upload_data_size;

		*upload_data_size = 0;
		if (cs->too_big || cs->refused)
			return MHD_YES;
		if (cs->size + n > cs->max) {
			cs->too_big = true;
			secret_free(cs->body);
			cs->body = NULL;
			cs->size = 0;
			return MHD_YES;
		}
		/* Chunked bodies arrive in pieces; the NUL after them makes the body a string. */
		if (secret_grow(&cs->body, &cs->cap, cs->size, cs->size + n + 1) < 0)
			return MHD_NO;
		memcpy(cs->body + cs->size, upload_data, n);
		cs->size += n;
		cs->body[cs->size] = 0;
		return MHD_YES;
	}

	if (cs->refused)
		return MHD_YES;
	/* A slow handler (a key rotation re-wrapping many secrets) is not the client's fault. */
	enum MHD_Result ret;

	conn_mark(srv, c, CONN_HANDLER_IN);
	ret = dispatch(srv, c, url, method, cs);
	conn_mark(srv, c, CONN_HANDLER_OUT);
	return ret;
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe)
{
	struct conn_state *cs = *con_cls;

	conn_mark(cls, c, CONN_ANSWERED);
	if (!cs)
		return;
	/* Only requests that were answered: a client gone before its answer has no status. */
	if (cs->started) {
		const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_HTTP_STATUS);

		if (ci && ci->http_status)
			stats_http_observe(cs->route, cs->method, ci->http_status, metrics_now_ns() - cs->start_ns);
	}
	bulk_release(cls, cs);
	store_vm_done(&cs->who.vm);
	secret_free(cs->body);
	free(cs);
	*con_cls = NULL;
}

static void http_mhd_log(void *cls, const char *fmt, va_list ap)
{
	char buf[512];
	size_t n;

	vsnprintf(buf, sizeof(buf), fmt, ap);
	n = strlen(buf);
	while (n > 0 && buf[n - 1] == '\n')
		buf[--n] = 0;
	log_debug("libmicrohttpd: %s", buf);
}

static int parse_listen(const char *listen, struct sockaddr_storage *ss, socklen_t *len, bool *ipv6)
{
	char host[INET6_ADDRSTRLEN + 2];
	const char *colon, *h;
	uint64_t port;
	size_t hl;

	colon = strrchr(listen, ':');
	if (!colon)
		return -EINVAL;
	if (parse_u64(colon + 1, &port) < 0 || port > 65535)
		return -EINVAL;
	h = listen;
	hl = (size_t)(colon - listen);
	if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
		h++;
		hl -= 2;
	}
	if (hl == 0 || hl >= sizeof(host))
		return -EINVAL;
	memcpy(host, h, hl);
	host[hl] = 0;

	memset(ss, 0, sizeof(*ss));
	if (inet_pton(AF_INET, host, &((struct sockaddr_in *)ss)->sin_addr) == 1) {
		struct sockaddr_in *sin = (struct sockaddr_in *)ss;
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)port);
		*len = sizeof(*sin);
		*ipv6 = false;
		return 0;
	}
	if (inet_pton(AF_INET6, host, &((struct sockaddr_in6 *)ss)->sin6_addr) == 1) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)port);
		*len = sizeof(*sin6);
		*ipv6 = true;
		return 0;
	}
	return -EINVAL;
}

/* TLS 1.3 as GnuTLS offers it; TLS 1.2 only with ECDHE and AEAD ciphers (Mozilla's
 * "intermediate" profile without DHE): no CBC suites (Lucky 13 and other padding oracles), no
 * static RSA key exchange (no forward secrecy). The TLS 1.3 suites are all AEAD already. */
#define TLS_PRIORITIES                                                                                     \
	"NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2:-CIPHER-ALL:+AES-128-GCM:+AES-256-GCM:+CHACHA20-POLY1305:" \
	"-MAC-ALL:+AEAD:-KX-ALL:+ECDHE-ECDSA:+ECDHE-RSA"

/* Bigger than 32 KiB, so libmicrohttpd 0.9.75 mmap()s each connection's pool (memorypool.c)
 * instead of taking it from malloc(): the pool holds the decrypted request, bearer credential
 * and body included, and is not wiped when freed, but munmap() hands the pages back to the
 * kernel instead of leaving them in the heap until a later allocation reuses them. */
#define CONNECTION_POOL_SIZE ((size_t)64 * 1024)

int http_start(struct server *srv, const char *listen, const char *cert_pem, const char *key_pem,
	       uint16_t *ret_port)
{
	struct sockaddr_storage ss;
	const union MHD_DaemonInfo *info;
	unsigned flags = MHD_USE_TLS | MHD_USE_ERROR_LOG | MHD_USE_INTERNAL_POLLING_THREAD;
	socklen_t len;
	bool ipv6;
	int r;

	r = parse_listen(listen, &ss, &len, &ipv6);
	if (r < 0)
		return log_error_errno(r, "Invalid --listen '%s': expected ADDRESS:PORT, e.g. 127.0.0.1:8443", listen);
	if (!MHD_is_feature_supported(MHD_FEATURE_TLS))
		return log_error_errno(-EOPNOTSUPP, "libmicrohttpd was built without TLS support");
	if (ipv6)
		flags |= MHD_USE_IPv6;
	/* poll() for the connection threads: with select() libmicrohttpd drops every connection
	 * whose descriptor is 1024 or more (FD_SETSIZE), well below --max-conns. */
	if (srv->threads == 0)
		flags |= MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL;
	else
		flags |= MHD_USE_EPOLL;

	r = conns_start(srv);
	if (r < 0)
		return log_error_errno(r, "Could not start the connection reaper: %m");
	srv->daemon = MHD_start_daemon(
		flags, 0, NULL, NULL, on_request, srv, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
		MHD_OPTION_URI_LOG_CALLBACK, on_target, srv,
		MHD_OPTION_HTTPS_MEM_CERT, cert_pem, MHD_OPTION_HTTPS_MEM_KEY, key_pem,
		MHD_OPTION_HTTPS_PRIORITIES, TLS_PRIORITIES,
		MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv, MHD_OPTION_NOTIFY_CONNECTION, on_connection, srv,
		MHD_OPTION_EXTERNAL_LOGGER, http_mhd_log, srv,
		MHD_OPTION_CONNECTION_TIMEOUT, srv->idle_timeout, MHD_OPTION_CONNECTION_LIMIT, srv->max_conns,
		MHD_OPTION_PER_IP_CONNECTION_LIMIT, srv->max_conns_per_address,
		MHD_OPTION_CONNECTION_MEMORY_LIMIT, CONNECTION_POOL_SIZE,
		MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned)512,
		MHD_OPTION_THREAD_POOL_SIZE, (unsigned)(srv->threads > 1 ? srv->threads : 0), MHD_OPTION_END);
	if (!srv->daemon) {
		conns_stop(srv);
		return log_error_errno(-EADDRNOTAVAIL, "Could not listen on %s (address in use or not available)", listen);
	}

	info = MHD_get_daemon_info(srv->daemon, MHD_DAEMON_INFO_BIND_PORT);
	*ret_port = info ? info->port : 0;
	return 0;
}

void http_stop(struct server *srv)
{
	if (srv->daemon) {
		MHD_stop_daemon(srv->daemon);
		srv->daemon = NULL;
	}
	conns_stop(srv);
}
