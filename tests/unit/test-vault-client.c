/* Unit tests for the VM's vault client and the HTTPS client's hop diagnosis
 * (src/shared/client/vault-client.c, src/shared/api/http-client.c) without vmcryptd: closed ports
 * on loopback and a fake proxy that refuses CONNECT or never answers tell which hop failed.
 * With $VMCRYPT_TEST_LIVE=1 (tests/integration/test-vault-client.sh: a private vmcryptd and an
 * enrolled $VMCRYPT_CONF_DIR) the live cases run the VM routes against it; otherwise they skip. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include "basic/string-util.h"
#include "shared/api/api.h"
#include "shared/client/vault-client.h"
#include "shared/jansson-util.h"
#include "shared/secret.h"

/* A listening socket on 127.0.0.1 with a kernel-chosen port. */
static int listener(uint16_t *ret_port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(fd, 8), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	*ret_port = ntohs(a.sin_port);
	return fd;
}

/* A port nobody listens on (bound, then closed: the kernel does not hand it out again at once). */
static uint16_t closed_port(void)
{
	uint16_t port;

	close(listener(&port));
	return port;
}

static void conf_for(struct agent_conf *c, uint16_t server_port, const char *proxy)
{
	agent_conf_init(c);
	snprintf(c->server, sizeof(c->server), "https://127.0.0.1:%u", server_port);
	snprintf(c->proxy, sizeof(c->proxy), "%s", proxy);
}

static const char cred[] = "vmc-vm-0123456789abcdef0123456789abcdef-00";

static int goal_error(const struct agent_conf *c, char *err, size_t len)
{
	struct vault_client *vc = NULL;
	json_t *goal = NULL;
	int r;

	assert_int_equal(vault_client_new(c, cred, strlen(cred), 2, 3, &vc), 0);
	r = vault_client_goal(vc, &goal, err, len);
	assert_null(goal);
	vault_client_free(vc);
	return r;
}

static void test_errno_from_status(void **state)
{
	assert_int_equal(vault_client_errno_from_status(200), 0);
	assert_int_equal(vault_client_errno_from_status(201), 0);
	assert_int_equal(vault_client_errno_from_status(400), -EINVAL);
	assert_int_equal(vault_client_errno_from_status(401), -EACCES);
	assert_int_equal(vault_client_errno_from_status(403), -EACCES);
	assert_int_equal(vault_client_errno_from_status(404), -ENOENT);
	assert_int_equal(vault_client_errno_from_status(409), -EBUSY);
	assert_int_equal(vault_client_errno_from_status(429), -EAGAIN);
	assert_int_equal(vault_client_errno_from_status(503), -EAGAIN);
	assert_int_equal(vault_client_errno_from_status(500), -EIO);
	assert_int_equal(vault_client_errno_from_status(413), -EIO);
}

static void test_new_refuses(void **state)
{
	struct agent_conf c;
	struct vault_client *vc = NULL;

	agent_conf_init(&c);
	strcpy(c.server, "http://127.0.0.1:1");
	assert_int_equal(vault_client_new(&c, cred, strlen(cred), 0, 0, &vc), -EINVAL);
	strcpy(c.server, "https://127.0.0.1:1");
	assert_int_equal(vault_client_new(&c, "vmc-vm-a\0b", 10, 0, 0, &vc), -EINVAL);
	assert_int_equal(vault_client_new(&c, cred, 0, 0, 0, &vc), -EINVAL);
	assert_null(vc);
}

/* Bad arguments are refused before anything is sent: the server port is closed, so a request that
 * went out would fail with -ECONNREFUSED instead. */
static void test_bad_arguments_send_nothing(void **state)
{
	struct agent_conf c;
	struct vault_client *vc = NULL;
	char err[512] = "", big[API_SECRET_MAX + 1] = "";
	uint64_t version = 0;
	void *value = NULL;
	size_t n = 0;

	conf_for(&c, closed_port(), "none");
	assert_int_equal(vault_client_new(&c, cred, strlen(cred), 1, 2, &vc), 0);
	assert_int_equal(vault_client_secret_put(vc, "../admin", "k", 1, &version, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "not a valid volume name"));
	assert_int_equal(vault_client_secret_get(vc, "a/b", &value, &n, &version, err, sizeof(err)), -EINVAL);
	assert_int_equal(vault_client_secret_put(vc, "data", big, sizeof(big), &version, err, sizeof(err)), -EINVAL);
	assert_int_equal(vault_client_secret_put(vc, "data", big, 0, &version, err, sizeof(err)), -EINVAL);
	assert_int_equal(vault_client_header_put(vc, "../os", "k", 1, &version, NULL, err, sizeof(err)), -EINVAL);
	assert_int_equal(vault_client_header_put(vc, "os", "k", 0, &version, NULL, err, sizeof(err)), -EINVAL);
	/* The size is checked before a byte is read or sent. */
	assert_int_equal(vault_client_header_put(vc, "os", "k", (size_t)API_HEADER_MAX + 1, &version, NULL, err,
						 sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "1 to 33554432 bytes"));
	assert_int_equal(vault_client_header_get(vc, "a/b", 0, &value, &n, &version, err, sizeof(err)), -EINVAL);
	/* and a good one does go out */
	assert_int_equal(vault_client_header_put(vc, "os", "k", 1, &version, NULL, err, sizeof(err)), -ECONNREFUSED);
	assert_int_equal(vault_client_secret_put(vc, "data", "k", 1, &version, err, sizeof(err)), -ECONNREFUSED);
	assert_null(value);
	vault_client_free(vc);
}

static void test_server_unreachable(void **state)
{
	struct agent_conf c;
	char err[1024] = "", want[64];
	uint16_t port = closed_port();

	conf_for(&c, port, "none");
	setenv("https_proxy", "http://127.0.0.1:9", 1); /* Proxy=none ignores it */
	assert_int_equal(goal_error(&c, err, sizeof(err)), -ECONNREFUSED);
	unsetenv("https_proxy");
	snprintf(want, sizeof(want), "server 127.0.0.1:%u unreachable", port);
	if (!strstr(err, want))
		fail_msg("[%s] not in [%s]", want, err);
	assert_null(strstr(err, "proxy"));
}

static void test_proxy_unreachable(void **state)
{
	struct agent_conf c;
	char err[1024] = "", proxy[64], want[96];

	snprintf(proxy, sizeof(proxy), "http://127.0.0.1:%u", closed_port());
	conf_for(&c, 8443, proxy);
	assert_int_equal(goal_error(&c, err, sizeof(err)), -ECONNREFUSED);
	snprintf(want, sizeof(want), "proxy %s unreachable", proxy);
	if (!strstr(err, want))
		fail_msg("[%s] not in [%s]", want, err);

	/* a proxy password never reaches a message */
	snprintf(c.proxy, sizeof(c.proxy), "http://user:s3cret@127.0.0.1:%u", closed_port());
	assert_int_equal(goal_error(&c, err, sizeof(err)), -ECONNREFUSED);
	assert_null(strstr(err, "s3cret"));
	assert_non_null(strstr(err, "proxy http://***@127.0.0.1:"));

	/* Proxy= empty: $https_proxy, named the same way */
	conf_for(&c, 8443, "");
	setenv("https_proxy", proxy, 1);
	assert_int_equal(goal_error(&c, err, sizeof(err)), -ECONNREFUSED);
	unsetenv("https_proxy");
	if (!strstr(err, want))
		fail_msg("[%s] not in [%s]", want, err);
}

/* A fake proxy: answers the first connection's CONNECT with `answer`, or never when NULL. */
struct fake_proxy {
	int fd;
	const char *answer;
	char request[1024];
};

static void *fake_proxy_run(void *p)
{
	struct fake_proxy *f = p;
	size_t got = 0;
	ssize_t n;
	int c = accept(f->fd, NULL, NULL);

	if (c < 0)
		return NULL;
	while (got + 1 < sizeof(f->request) && !strstr(f->request, "\r\n\r\n") &&
	       (n = read(c, f->request + got, sizeof(f->request) - 1 - got)) > 0) {
		got += (size_t)n;
		f->request[got] = 0;
	}
	if (f->answer)
		(void)!write(c, f->answer, strlen(f->answer));
	else
		sleep(4); /* past the client's total timeout */
	close(c);
	return NULL;
}

static void run_fake_proxy(const char *answer, int expect, const char *needle_fmt)
{
	struct fake_proxy f = { .answer = answer };
	struct agent_conf c;
	char err[1024] = "", proxy[64], want[160];
	uint16_t port, server_port = closed_port();
	pthread_t t;

	f.fd = listener(&port);
	assert_int_equal(pthread_create(&t, NULL, fake_proxy_run, &f), 0);
	snprintf(proxy, sizeof(proxy), "http://127.0.0.1:%u", port);
	conf_for(&c, server_port, proxy);
	assert_int_equal(goal_error(&c, err, sizeof(err)), expect);
	pthread_join(t, NULL);
	close(f.fd);
	snprintf(want, sizeof(want), needle_fmt, proxy, server_port);
	if (!strstr(err, want))
		fail_msg("[%s] not in [%s]", want, err);
	/* it went through the proxy: a CONNECT for the server */
	snprintf(want, sizeof(want), "CONNECT 127.0.0.1:%u ", server_port);
	assert_non_null(strstr(f.request, want));
	/* the credential never goes to the proxy in clear */
	assert_null(strstr(f.request, cred));
}

static void test_proxy_refuses_connect(void **state)
{
	run_fake_proxy("HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n", -ECONNREFUSED,
		       "proxy %s refused CONNECT to 127.0.0.1:%u (HTTP 403)");
}

static void test_proxy_silent(void **state)
{
	run_fake_proxy(NULL, -ETIMEDOUT, "proxy %s did not open a tunnel to 127.0.0.1:%u in time");
}

/* --- live: against the vmcryptd named by the enrolled $VMCRYPT_CONF_DIR */

static struct vault_client *live_client(void)
{
	static struct agent_conf c;
	struct vault_client *vc = NULL;
	char err[1024] = "";
	void *live_cred = NULL;
	size_t n = 0;

	if (!getenv("VMCRYPT_TEST_LIVE"))
		return NULL;
	assert_int_equal(agent_conf_load(NULL, &c, err, sizeof(err)), 0);
	assert_int_equal(agent_credential_read(NULL, &live_cred, &n, err, sizeof(err)), 0);
	assert_int_equal(vault_client_new(&c, live_cred, n, 5, 15, &vc), 0);
	secret_free(live_cred);
	return vc;
}

static void test_live_secrets(void **state)
{
	struct vault_client *vc = live_client();
	uint8_t key[64], big[API_SECRET_MAX];
	char err[1024] = "";
	uint64_t v1 = 0, v2 = 0, got_version = 0;
	void *value = NULL;
	size_t n = 0;

	if (!vc) {
		skip();
		return;
	}
	assert_int_equal(secret_random(key, sizeof(key)), 0);
	key[3] = 0; /* binary: a NUL inside travels too */
	assert_int_equal(vault_client_secret_put(vc, "data", key, sizeof(key), &v1, err, sizeof(err)), 0);
	assert_int_equal(vault_client_secret_get(vc, "data", &value, &n, &got_version, err, sizeof(err)), 0);
	assert_int_equal(n, sizeof(key));
	assert_memory_equal(value, key, n);
	assert_int_equal(got_version, v1);
	assert_true(secret_size(value) >= n); /* decoded into secret memory */
	secret_free(value);
	value = NULL;

	/* a new version, and the newest comes back */
	memset(big, 0xa5, sizeof(big));
	assert_int_equal(vault_client_secret_put(vc, "data", big, sizeof(big), &v2, err, sizeof(err)), 0);
	assert_int_equal(v2, v1 + 1);
	assert_int_equal(vault_client_secret_get(vc, "data", &value, &n, &got_version, err, sizeof(err)), 0);
	assert_int_equal(n, sizeof(big));
	assert_memory_equal(value, big, n);
	assert_int_equal(got_version, v2);
	secret_free(value);
	value = NULL;

	/* no such secret: -ENOENT with the server's word */
	assert_int_equal(vault_client_secret_get(vc, "nothing", &value, &n, &got_version, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "HTTP 404"));
	assert_null(value);
	vault_client_free(vc);
}

static void test_live_headers(void **state)
{
	struct vault_client *vc = live_client();
	const size_t size = 16 * 1024 * 1024;
	uint64_t v1 = 0, v2 = 0, again = 0, got_version = 0;
	uint8_t *header = malloc(size);
	char err[1024] = "";
	bool unchanged = true;
	void *data = NULL;
	size_t n = 0;

	if (!vc) {
		free(header);
		skip();
		return;
	}
	assert_non_null(header);
	assert_int_equal(secret_random(header, size), 0);
	/* vmcryptd keeps only what starts with a LUKS2 binary header (api_header_check()): magic,
	 * version 2, a 16 KiB header area at offset 0; the rest stays random. */
	memcpy(header, "LUKS\xba\xbe\x00\x02\x00\x00\x00\x00\x00\x00\x40\x00", 16);
	memset(header + 256, 0, 8);
	/* cryptsetup's default header size, there and back byte for byte, into secret memory. */
	assert_int_equal(vault_client_header_put(vc, "os", header, size, &v1, &unchanged, err, sizeof(err)), 0);
	assert_false(unchanged);
	assert_int_equal(vault_client_header_get(vc, "os", 0, &data, &n, &got_version, err, sizeof(err)), 0);
	assert_int_equal(n, size);
	assert_memory_equal(data, header, size);
	assert_int_equal(got_version, v1);
	assert_true(secret_size(data) >= n);
	secret_free(data);
	data = NULL;

	/* The same bytes again make no new version. */
	assert_int_equal(vault_client_header_put(vc, "os", header, size, &again, &unchanged, err, sizeof(err)), 0);
	assert_true(unchanged);
	assert_int_equal(again, v1);

	/* A new version, and the previous one stays readable. */
	header[12345] ^= 0xff;
	assert_int_equal(vault_client_header_put(vc, "os", header, 16384, &v2, &unchanged, err, sizeof(err)), 0);
	assert_false(unchanged);
	assert_int_equal(v2, v1 + 1);
	assert_int_equal(vault_client_header_get(vc, "os", 0, &data, &n, &got_version, err, sizeof(err)), 0);
	assert_int_equal(n, 16384);
	assert_int_equal(got_version, v2);
	secret_free(data);
	data = NULL;
	assert_int_equal(vault_client_header_get(vc, "os", v1, &data, &n, &got_version, err, sizeof(err)), 0);
	assert_int_equal(n, size);
	header[12345] ^= 0xff;
	assert_memory_equal(data, header, size);
	assert_int_equal(got_version, v1);
	secret_free(data);
	data = NULL;

	/* No such header backup, no such version: -ENOENT with the server's word. */
	assert_int_equal(vault_client_header_get(vc, "nothing", 0, &data, &n, &got_version, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "HTTP 404"));
	assert_int_equal(vault_client_header_get(vc, "os", 99, &data, &n, &got_version, err, sizeof(err)), -ENOENT);
	assert_null(data);
	free(header);
	vault_client_free(vc);
}

static void test_live_goal_and_status(void **state)
{
	struct vault_client *vc = live_client();
	const char *want = getenv("VMCRYPT_TEST_LIVE_SEQUENCE");
	_cleanup_(jansson_util_decrefp) json_t *goal = NULL, *report = NULL, *bad = NULL;
	char err[1024] = "";
	uint64_t seq = 99, want_seq = 0;

	if (!vc) {
		skip();
		return;
	}
	if (want)
		assert_int_equal(parse_u64(want, &want_seq), 0);
	assert_int_equal(vault_client_goal(vc, &goal, err, sizeof(err)), 0);
	assert_int_equal(json_integer_value(json_object_get(goal, "sequence")), (json_int_t)want_seq);
	assert_string_equal(json_string_value(json_object_get(json_object_get(goal, "settings"),
							      "EncryptionOperation")),
			    want_seq ? "EnableEncryption" : "None");

	report = json_pack("{s:s, s:s, s:s, s:I}", "OsVolumeEncrypted", "NotEncrypted", "DataVolumesEncrypted",
			   "EncryptionInProgress", "ProgressMessage", "Encrypting data volume 1/1: 5%",
			   "SequenceVersion", (json_int_t)want_seq);
	assert_int_equal(vault_client_status(vc, report, &seq, err, sizeof(err)), 0);
	assert_int_equal(seq, want_seq);

	/* the server's refusal: -EINVAL and its message */
	bad = json_pack("{s:s, s:s}", "OsVolumeEncrypted", "Bogus", "DataVolumesEncrypted", "NotEncrypted");
	assert_int_equal(vault_client_status(vc, bad, &seq, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "HTTP 400"));
	assert_non_null(strstr(err, "OsVolumeEncrypted"));
	vault_client_free(vc);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_errno_from_status),
		cmocka_unit_test(test_new_refuses),
		cmocka_unit_test(test_bad_arguments_send_nothing),
		cmocka_unit_test(test_server_unreachable),
		cmocka_unit_test(test_proxy_unreachable),
		cmocka_unit_test(test_proxy_refuses_connect),
		cmocka_unit_test(test_proxy_silent),
		cmocka_unit_test(test_live_secrets),
		cmocka_unit_test(test_live_headers),
		cmocka_unit_test(test_live_goal_and_status),
	};
	secret_setup_json_allocator();
	unsetenv("https_proxy");
	unsetenv("HTTPS_PROXY");
	unsetenv("all_proxy");
	unsetenv("ALL_PROXY");
	return cmocka_run_group_tests(tests, NULL, NULL);
}
