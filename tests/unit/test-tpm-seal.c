/* Unit tests of sealing to a TPM 2.0 (shared/tpm/tpm-seal.h, tpm-blob.h) against two swtpm
 * processes the test starts itself (TPM A and TPM B: two state directories, so two owner seeds, as
 * two VMs have): round trips byte for byte up to the cap, a text sealed by A refused by B (a disk
 * copied to another VM), every kind of alteration and malformed text, and a TCTI where nothing
 * listens. The tests that need a TPM are skipped, and say so, when swtpm is not installed. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "basic/fileio.h"
#include "basic/log.h"
#include "basic/macro.h"
#include "shared/b64.h"
#include "shared/jansson-util.h"
#include "shared/secret.h"
#include "shared/tpm/tpm-blob.h"
#include "shared/tpm/tpm-seal.h"

struct swtpm {
	pid_t pid;
	char dir[64];
	char tcti[64];
};

static struct swtpm tpm_a = { .pid = -1 }, tpm_b = { .pid = -1 };
static bool have_swtpm;

#define SKIP_WITHOUT_SWTPM()                                                                      \
	do {                                                                                      \
		if (!have_swtpm) {                                                                \
			print_message("swtpm is not installed (Debian package swtpm): skipped\n"); \
			skip();                                                                   \
		}                                                                                 \
	} while (0)

static bool in_path(const char *prog)
{
	const char *path = getenv("PATH");
	char dirs[4096], file[4200], *save = NULL;

	snprintf(dirs, sizeof(dirs), "%s", path ? path : "/usr/bin:/bin");
	for (char *d = strtok_r(dirs, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
		snprintf(file, sizeof(file), "%s/%s", d, prog);
		if (access(file, X_OK) == 0)
			return true;
	}
	return false;
}

/* 0: bound and closed (free a moment ago); connect: the same port, connected instead. */
static int tcp_probe(int port, bool connect_to)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	_cleanup_close_ int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -errno;
	if ((connect_to ? connect(fd, (struct sockaddr *)&a, sizeof(a)) : bind(fd, (struct sockaddr *)&a, sizeof(a))) < 0)
		return -errno;
	return 0;
}

/* A port the kernel just handed out and nobody holds now: a TCTI to it finds nothing. */
static int closed_port(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	_cleanup_close_ int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	return ntohs(a.sin_port);
}

static void sleep_ms(long ms)
{
	struct timespec t = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L };

	nanosleep(&t, NULL);
}

/* Starts swtpm on ports P (TPM commands) and P + 1 (control) of 127.0.0.1, P picked at random
 * among the free ones; another program may take a port between our probe and swtpm's bind, so a
 * swtpm that dies is tried again on other ports. The child gets SIGKILL when the test dies
 * (PR_SET_PDEATHSIG), so no swtpm outlives a crash or a failed assertion. */
static int swtpm_start(struct swtpm *s)
{
	pid_t parent = getpid();

	snprintf(s->dir, sizeof(s->dir), "/tmp/test-tpm-seal-XXXXXX");
	if (!mkdtemp(s->dir))
		return -errno;
	srand((unsigned)time(NULL) ^ (unsigned)getpid() ^ (unsigned)(uintptr_t)s);
	for (int attempt = 0; attempt < 20; attempt++) {
		int port = 20000 + 2 * (rand() % 20000), status;
		char server[64], ctrl[64], state[96];

		if (tcp_probe(port, false) < 0 || tcp_probe(port + 1, false) < 0)
			continue;
		snprintf(server, sizeof(server), "type=tcp,port=%d,bindaddr=127.0.0.1", port);
		snprintf(ctrl, sizeof(ctrl), "type=tcp,port=%d,bindaddr=127.0.0.1", port + 1);
		snprintf(state, sizeof(state), "dir=%s", s->dir);
		s->pid = fork();
		if (s->pid < 0)
			return -errno;
		if (s->pid == 0) {
			int null = open("/dev/null", O_RDWR);

			(void)prctl(PR_SET_PDEATHSIG, SIGKILL);
			if (getppid() != parent)
				_exit(127);
			if (null >= 0) {
				dup2(null, STDIN_FILENO);
				dup2(null, STDOUT_FILENO);
				dup2(null, STDERR_FILENO);
			}
			execlp("swtpm", "swtpm", "socket", "--tpm2", "--server", server, "--ctrl", ctrl, "--tpmstate",
			       state, "--flags", "not-need-init,startup-clear", (char *)NULL);
			_exit(127);
		}
		/* Up when both ports answer; a swtpm that exited lost a port race. */
		for (int i = 0; i < 200; i++) {
			if (waitpid(s->pid, &status, WNOHANG) == s->pid) {
				s->pid = -1;
				break;
			}
			if (tcp_probe(port, true) == 0 && tcp_probe(port + 1, true) == 0) {
				snprintf(s->tcti, sizeof(s->tcti), "swtpm:host=127.0.0.1,port=%d", port);
				return 0;
			}
			sleep_ms(50);
		}
		if (s->pid > 0) {
			kill(s->pid, SIGKILL);
			waitpid(s->pid, NULL, 0);
			s->pid = -1;
		}
	}
	return -EADDRINUSE;
}

/* swtpm's state directory holds plain files only (tpm2-00.permall, .lock). */
static void remove_flat_dir(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *e;

	if (!d)
		return;
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
			(void)unlinkat(dirfd(d), e->d_name, 0);
	closedir(d);
	(void)rmdir(path);
}

static void swtpm_stop(struct swtpm *s)
{
	if (s->pid > 0) {
		kill(s->pid, SIGTERM);
		waitpid(s->pid, NULL, 0);
		s->pid = -1;
	}
	if (s->dir[0])
		remove_flat_dir(s->dir);
	s->dir[0] = 0;
}

static int group_setup(void **state)
{
	have_swtpm = in_path("swtpm");
	if (!have_swtpm)
		return 0;
	if (swtpm_start(&tpm_a) < 0 || swtpm_start(&tpm_b) < 0) {
		fprintf(stderr, "could not start swtpm on 127.0.0.1\n");
		swtpm_stop(&tpm_a);
		swtpm_stop(&tpm_b);
		return -1;
	}
	return 0;
}

static int group_teardown(void **state)
{
	swtpm_stop(&tpm_a);
	swtpm_stop(&tpm_b);
	return 0;
}

static uint8_t *random_secret(size_t size)
{
	uint8_t *s = malloc(size);

	assert_non_null(s);
	assert_int_equal(secret_random(s, size), 0);
	return s;
}

static void test_roundtrip(void **state)
{
	static const size_t sizes[] = { 1, 32, 128, 4096, TPM_SEAL_SECRET_MAX };

	SKIP_WITHOUT_SWTPM();
	assert_int_equal(tpm_seal_present(tpm_a.tcti), 1);
	for (size_t i = 0; i < ELEMENTSOF(sizes); i++) {
		_cleanup_free_ uint8_t *secret = random_secret(sizes[i]);
		_cleanup_free_ char *text = NULL, *again = NULL;
		_cleanup_secret_ void *out = NULL;
		size_t n = 0;

		assert_int_equal(tpm_seal(tpm_a.tcti, secret, sizes[i], &text), 0);
		assert_true(strlen(text) <= TPM_BLOB_TEXT_MAX);
		assert_int_equal(tpm_unseal(tpm_a.tcti, text, &out, &n), 0);
		assert_int_equal(n, sizes[i]);
		assert_memory_equal(out, secret, n);
		assert_true(secret_size(out) >= n); /* in secret memory */
		/* A fresh key and nonce each time: the same secret never gives the same text. */
		assert_int_equal(tpm_seal(tpm_a.tcti, secret, sizes[i], &again), 0);
		assert_string_not_equal(text, again);
	}
}

static void test_size_refused(void **state)
{
	_cleanup_free_ uint8_t *secret = random_secret(TPM_SEAL_SECRET_MAX + 1);
	char *text = NULL;

	/* Refused before any TPM is asked, so no swtpm is needed. */
	assert_int_equal(tpm_seal("swtpm:host=127.0.0.1,port=1", secret, TPM_SEAL_SECRET_MAX + 1, &text), -E2BIG);
	assert_int_equal(tpm_seal("swtpm:host=127.0.0.1,port=1", secret, 0, &text), -EINVAL);
	assert_null(text);
}

/* The copied-disk case: B derives another SRK from its own owner seed. */
static void test_other_tpm(void **state)
{
	static const char secret[] = "vm credential";
	_cleanup_free_ char *text = NULL, *text_b = NULL;
	_cleanup_secret_ void *out = NULL;
	size_t n = 0;

	SKIP_WITHOUT_SWTPM();
	assert_int_equal(tpm_seal(tpm_a.tcti, secret, sizeof(secret), &text), 0);
	assert_int_equal(tpm_unseal(tpm_b.tcti, text, &out, &n), -EKEYREJECTED);
	assert_null(out);
	/* B itself works: the refusal is about the text, not a broken TPM. */
	assert_int_equal(tpm_seal(tpm_b.tcti, secret, sizeof(secret), &text_b), 0);
	assert_int_equal(tpm_unseal(tpm_b.tcti, text_b, &out, &n), 0);
	secret_free(TAKE_PTR(out));
	assert_int_equal(tpm_unseal(tpm_a.tcti, text_b, &out, &n), -EKEYREJECTED);
	/* And A still opens its own, after all of that. */
	assert_int_equal(tpm_unseal(tpm_a.tcti, text, &out, &n), 0);
	assert_int_equal(n, sizeof(secret));
	assert_memory_equal(out, secret, n);
}

/* text with one bit of the base64 field key flipped (byte at, counted from the end when < 0). */
static char *flip(const char *text, const char *key, long at, uint8_t bit)
{
	_cleanup_(jansson_util_decrefp) json_t *root = json_loads(text, 0, NULL);
	_cleanup_secret_ uint8_t *bytes = NULL;
	_cleanup_secret_ char *b64 = NULL;
	json_t *v = json_object_get(root, key);
	size_t n = 0;

	assert_non_null(v);
	assert_int_equal(b64_decode_secret(json_string_value(v), json_string_length(v), &bytes, &n), 0);
	if (at < 0)
		at += (long)n;
	assert_true(at >= 0 && (size_t)at < n);
	bytes[at] ^= bit;
	b64 = b64_encode(bytes, n);
	assert_non_null(b64);
	assert_int_equal(json_object_set_new(root, key, json_string(b64)), 0);
	return json_dumps(root, JSON_INDENT(1));
}

static void expect_unseal(const char *text, int want)
{
	void *out = NULL;
	size_t n = 0;

	assert_int_equal(tpm_unseal(tpm_a.tcti, text, &out, &n), want);
	if (want < 0)
		assert_null(out);
	secret_free(out);
}

static void test_tampered(void **state)
{
	static const struct {
		const char *key;
		long at;
		uint8_t bit;
		int want;
	} cases[] = {
		{ "ciphertext", 0, 0x01, -EBADMSG },
		{ "ciphertext", -1, 0x80, -EBADMSG },
		{ "tag", 0, 0x01, -EBADMSG },
		{ "tag", -1, 0x80, -EBADMSG },
		{ "nonce", 5, 0x10, -EBADMSG },
		/* The TPM's own checks: the private area's integrity HMAC, and the public area's
		 * name that the private area is bound to. */
		{ "private", -1, 0x01, -EBADMSG },
		{ "private", 10, 0x01, -EBADMSG },
		{ "public", -1, 0x01, -EBADMSG },
		/* The parser's: the attributes, four bytes big-endian after the size, type and
		 * nameAlg (two bytes each): byte 9 holds userWithAuth (0x40). */
		{ "public", 9, 0x40, -EBADMSG },
		/* A recorded SRK that this TPM does not derive looks like another TPM. */
		{ "srk_name", -1, 0x01, -EKEYREJECTED },
	};
	static const char secret[] = "vm credential";
	_cleanup_free_ char *text = NULL;

	SKIP_WITHOUT_SWTPM();
	assert_int_equal(tpm_seal(tpm_a.tcti, secret, sizeof(secret), &text), 0);
	for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
		_cleanup_free_ char *bad = flip(text, cases[i].key, cases[i].at, cases[i].bit);

		print_message("%s[%ld] ^= 0x%02x\n", cases[i].key, cases[i].at, cases[i].bit);
		expect_unseal(bad, cases[i].want);
	}
	expect_unseal(text, 0);
}

/* A text that parses, made without a TPM: the parser's tests need none. */
static char *synthetic_text(void)
{
	_cleanup_(tpm_blob_done) struct tpm_blob b = { 0 };
	char *text = NULL;

	b.srk_name.size = 34;
	b.srk_name.name[1] = 0x0b; /* TPM2_ALG_SHA256 */
	tpm_blob_sealed_template(&b.public);
	b.public.publicArea.unique.keyedHash.size = 32;
	b.private.size = 64;
	b.ciphertext = secret_alloc(16);
	assert_non_null(b.ciphertext);
	b.ciphertext_size = 16;
	assert_int_equal(tpm_blob_format(&b, &text), 0);
	return text;
}

static char *with(const char *text, const char *key, json_t *value)
{
	_cleanup_(jansson_util_decrefp) json_t *root = json_loads(text, 0, NULL);

	assert_non_null(root);
	if (value)
		assert_int_equal(json_object_set_new(root, key, value), 0);
	else
		assert_int_equal(json_object_del(root, key), 0);
	return json_dumps(root, JSON_COMPACT);
}

static void test_malformed(void **state)
{
	_cleanup_free_ char *text = synthetic_text(), *half = NULL, *huge = NULL;
	_cleanup_(tpm_blob_done) struct tpm_blob b = { 0 };
	char *bad[16];
	size_t nbad = 0, len = strlen(text);

	assert_int_equal(tpm_blob_parse(text, &b), 0);
	assert_int_equal(b.ciphertext_size, 16);
	tpm_blob_done(&b);
	half = strndup(text, len / 2);
	bad[nbad++] = with(text, "version", json_integer(2));
	bad[nbad++] = with(text, "version", json_string("1"));
	bad[nbad++] = with(text, "format", json_string("vmcrypt-tpm2-sealed2"));
	bad[nbad++] = with(text, "primary", json_string("owner-srk-rsa-2048"));
	bad[nbad++] = with(text, "cipher", json_string("aes-128-gcm"));
	bad[nbad++] = with(text, "tag", NULL);
	bad[nbad++] = with(text, "comment", json_string("an unknown field"));
	bad[nbad++] = with(text, "nonce", json_string("AAAA"));              /* 3 bytes, not 12 */
	bad[nbad++] = with(text, "ciphertext", json_string("not base64!")); /* nor canonical */
	bad[nbad++] = with(text, "public", json_string("AAAA"));             /* does not unmarshal */
	bad[nbad++] = with(text, "private", json_integer(7));
	bad[nbad++] = with(text, "srk_name", json_string("AAAA"));
	for (size_t i = 0; i < nbad; i++) {
		assert_non_null(bad[i]);
		assert_int_equal(tpm_blob_parse(bad[i], &b), -EBADMSG);
		/* tpm_unseal() refuses before it looks for a TPM: no TCTI is needed. */
		expect_unseal(bad[i], -EBADMSG);
		free(bad[i]);
	}
	assert_int_equal(tpm_blob_parse(half, &b), -EBADMSG);
	assert_int_equal(tpm_blob_parse("", &b), -EBADMSG);
	assert_int_equal(tpm_blob_parse("garbage", &b), -EBADMSG);
	assert_int_equal(tpm_blob_parse("[]", &b), -EBADMSG);
	assert_int_equal(tpm_blob_parse("{}", &b), -EBADMSG);
	huge = malloc(TPM_BLOB_TEXT_MAX + 2);
	assert_non_null(huge);
	memset(huge, ' ', TPM_BLOB_TEXT_MAX + 1);
	huge[TPM_BLOB_TEXT_MAX + 1] = 0;
	memcpy(huge, text, len);
	assert_int_equal(tpm_blob_parse(huge, &b), -EBADMSG);
	huge[TPM_BLOB_TEXT_MAX] = 0;
	assert_int_equal(tpm_blob_parse(huge, &b), 0); /* white space up to the cap is still JSON */
}

static void test_file(void **state)
{
	static const char secret[] = "vm credential\nwith a newline and \0 a NUL";
	char dir[] = "/tmp/test-tpm-seal-file-XXXXXX", path[128], cut[128];
	_cleanup_free_ char *text = NULL;
	_cleanup_secret_ void *out = NULL;
	struct stat st;
	size_t n = 0, size = 0;

	SKIP_WITHOUT_SWTPM();
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/credential.tpm", dir);
	snprintf(cut, sizeof(cut), "%s/cut.tpm", dir);
	assert_int_equal(tpm_seal_file(tpm_a.tcti, secret, sizeof(secret), path), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	assert_int_equal(tpm_unseal_file(tpm_a.tcti, path, &out, &n), 0);
	assert_int_equal(n, sizeof(secret));
	assert_memory_equal(out, secret, n);
	/* A file cut short (a full /boot, a crash mid-copy), or of another size class. */
	assert_int_equal(read_full_file(path, TPM_BLOB_TEXT_MAX, &text, &size), 0);
	assert_int_equal(write_file_atomic(cut, text, size / 3, 0600), 0);
	secret_free(TAKE_PTR(out));
	assert_int_equal(tpm_unseal_file(tpm_a.tcti, cut, &out, &n), -EBADMSG);
	assert_int_equal(write_file_atomic(cut, text, 0, 0600), 0);
	assert_int_equal(tpm_unseal_file(tpm_a.tcti, cut, &out, &n), -EBADMSG);
	text[10] = 0;
	assert_int_equal(write_file_atomic(cut, text, size, 0600), 0);
	assert_int_equal(tpm_unseal_file(tpm_a.tcti, cut, &out, &n), -EBADMSG);
	unlink(cut);
	assert_int_equal(tpm_unseal_file(tpm_a.tcti, cut, &out, &n), -ENOENT);
	unlink(path);
	rmdir(dir);
}

static void test_no_tpm(void **state)
{
	_cleanup_free_ char *text = synthetic_text(), *sealed = NULL;
	char tcti[64];
	void *out = NULL;
	size_t n = 0;

	snprintf(tcti, sizeof(tcti), "swtpm:host=127.0.0.1,port=%d", closed_port());
	assert_int_equal(tpm_seal_present(tcti), 0);
	assert_int_equal(tpm_seal(tcti, "x", 1, &sealed), -ENODEV);
	assert_null(sealed);
	assert_int_equal(tpm_unseal(tcti, text, &out, &n), -ENODEV);
	assert_null(out);
	/* NULL is this machine's TPM: a build host without one has neither device node. */
	if (access("/dev/tpmrm0", F_OK) < 0 && access("/dev/tpm0", F_OK) < 0) {
		assert_int_equal(tpm_seal_present(NULL), 0);
		assert_int_equal(tpm_seal(NULL, "x", 1, &sealed), -ENODEV);
		assert_int_equal(tpm_unseal(NULL, text, &out, &n), -ENODEV);
	}
	/* A TCTI module that cannot be loaded (an initramfs without libtss2-tcti-device.so.0) is
	 * not "no TPM". */
	assert_int_equal(tpm_seal_present("vmcrypt-no-such-tcti"), -ELIBACC);
	assert_int_equal(tpm_seal("vmcrypt-no-such-tcti", "x", 1, &sealed), -ELIBACC);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_size_refused),
		cmocka_unit_test(test_other_tpm),
		cmocka_unit_test(test_tampered),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_file),
		cmocka_unit_test(test_no_tpm),
	};

	tpm_seal_setup_logging();
	/* The log says why each refusal happened (tpm2-tss's return codes), next to cmocka's lines. */
	log_set_max_level(LOG_LEVEL_DEBUG);
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
