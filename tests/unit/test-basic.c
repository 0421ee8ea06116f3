/* Unit tests for src/basic and the secret allocator. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "basic/fileio.h"
#include "basic/log.h"
#include "basic/process.h"
#include "basic/string-util.h"
#include "shared/exit-status.h"
#include "shared/secret.h"

static void test_parse_size(void **state)
{
	uint64_t v;

	assert_int_equal(parse_size("16M", &v), 0);
	assert_int_equal(v, 16 * 1024 * 1024);
	assert_int_equal(parse_size("4096", &v), 0);
	assert_int_equal(v, 4096);
	assert_int_equal(parse_size("1GiB", &v), 0);
	assert_int_equal(v, UINT64_C(1) << 30);
	assert_int_equal(parse_size("12Q", &v), -EINVAL);
	assert_int_equal(parse_size("-1", &v), -EINVAL);
	assert_int_equal(parse_size("99999999999999999999", &v), -ERANGE);
	assert_int_equal(parse_size("20000000000T", &v), -ERANGE);
}

static void test_format(void **state)
{
	char buf[32];

	assert_string_equal(format_bytes(buf, sizeof(buf), 512), "512 B");
	assert_string_equal(format_bytes(buf, sizeof(buf), 1536), "1.5 KiB");
	assert_string_equal(format_duration(buf, sizeof(buf), 59), "59s");
	assert_string_equal(format_duration(buf, sizeof(buf), 125), "2m05s");
	assert_string_equal(format_duration(buf, sizeof(buf), 3723), "1h02m");
}

static void test_text_escape(void **state)
{
	char buf[128];
	uint32_t c;

	assert_int_equal(utf8_decode("\xe2\x80\xae", 3, &c), 3);
	assert_int_equal(c, 0x202e);
	assert_int_equal(utf8_decode("\xe2\x80", 2, &c), -EILSEQ);
	assert_int_equal(utf8_decode("\xc0\xaf", 2, &c), -EILSEQ);         /* overlong '/' */
	assert_int_equal(utf8_decode("\xed\xa0\x80", 3, &c), -EILSEQ);     /* surrogate */
	assert_int_equal(utf8_decode("\xf4\x90\x80\x80", 4, &c), -EILSEQ); /* above U+10FFFF */
	assert_true(string_is_safe_text("h\xc3\xa9te-01 /mnt/d"));
	assert_false(string_is_safe_text("a\nb"));
	assert_false(string_is_safe_text("a\x7f"));
	assert_false(string_is_safe_text("a\xc2\x85"));          /* NEL, C1 */
	assert_false(string_is_safe_text("web\xe2\x80\xaegpj")); /* RLO */
	assert_false(string_is_safe_text("a\xe2\x81\xa6"));     /* LRI */
	assert_false(string_is_safe_text("a\xef\xbb\xbf"));     /* BOM */
	assert_false(string_is_safe_text("a\xf3\xa0\x80\x81")); /* tag U+E0001 */
	assert_false(string_is_safe_text("a\xff"));

	assert_string_equal(string_escape_hidden("plain h\xc3\xa9te", buf, sizeof(buf)), "plain h\xc3\xa9te");
	assert_string_equal(string_escape_hidden("web\xe2\x80\xaegpj.exe", buf, sizeof(buf)), "web\\u202egpj.exe");
	assert_string_equal(string_escape_hidden("a\nb\tc\x1b[2J\\", buf, sizeof(buf)), "a\\nb\\tc\\x1b[2J\\\\");
	assert_string_equal(string_escape_hidden("\xc2\x9b\xff\xf3\xa0\x80\x81", buf, sizeof(buf)),
			    "\\u009b\\xff\\U000e0001");
	/* Cut at a character boundary, never inside an escape. */
	assert_string_equal(string_escape_hidden("ab\xe2\x80\xae", buf, 6), "ab");
}

static char logged[4096];

static void capture_sink(enum log_level level, const char *message, void *userdata)
{
	snprintf(logged, sizeof(logged), "%s", message);
}

static void test_log_escape(void **state)
{
	log_set_sink(capture_sink, NULL);
	/* A hostname from an old store: a forged second line, a bidi override, a terminal escape. */
	log_info("VM '%s' enrolled from host '%s'.", "v1", "evil\xe2\x80\xaegpj\n2026-12-01 vmcryptd: forged\x1b[2J");
	assert_string_equal(logged, "VM 'v1' enrolled from host 'evil\\u202egpj\\n2026-12-01 vmcryptd: forged\\x1b[2J'.");
	log_info("plain h\xc3\xb4te and a \\ backslash");
	assert_string_equal(logged, "plain h\xc3\xb4te and a \\ backslash");
	log_set_sink(NULL, NULL);
}

static void test_secret_alloc(void **state)
{
	unsigned char *s = secret_alloc(64);

	assert_non_null(s);
	assert_int_equal(secret_size(s), 64);
	for (int i = 0; i < 64; i++)
		assert_int_equal(s[i], 0);
	memset(s, 0xaa, 64);
	secret_free(s);
	secret_free(NULL);
	assert_null(secret_alloc(0));
}

static void test_secret_grow(void **state)
{
	_cleanup_secret_ char *buf = NULL;
	size_t cap = 0;
	char *before;

	/* From nothing: exactly what was asked. */
	assert_int_equal(secret_grow(&buf, &cap, 0, 10), 0);
	assert_non_null(buf);
	assert_int_equal(cap, 10);
	assert_int_equal(secret_size(buf), 10);
	memcpy(buf, "0123456789", 10);

	/* Room enough: the same buffer. */
	before = buf;
	assert_int_equal(secret_grow(&buf, &cap, 10, 10), 0);
	assert_ptr_equal(buf, before);

	/* Too small: at least double, the used bytes carried over. */
	assert_int_equal(secret_grow(&buf, &cap, 10, 11), 0);
	assert_int_equal(cap, 20);
	assert_int_equal(secret_size(buf), 20);
	assert_memory_equal(buf, "0123456789", 10);
	assert_int_equal(secret_grow(&buf, &cap, 10, 100), 0);
	assert_int_equal(cap, 100);
	assert_memory_equal(buf, "0123456789", 10);

	/* No buffer yet, but the size expected is known (a Content-Length): that size, not twice. */
	{
		_cleanup_secret_ char *body = NULL;
		size_t expected = 4096;

		assert_int_equal(secret_grow(&body, &expected, 0, 11), 0);
		assert_int_equal(expected, 4096);
		assert_int_equal(secret_size(body), 4096);
	}
}

static void test_secret_files(void **state)
{
	char dir[] = "/tmp/vmcrypt-unit.XXXXXX", path[128], empty[128];
	void *key = NULL, *again = NULL;
	size_t size = 0;
	bool world = true;
	struct stat st;

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/key", dir);
	snprintf(empty, sizeof(empty), "%s/empty", dir);

	assert_int_equal(secret_generate_file(path, 64, &key), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(st.st_size, 64);
	/* Never overwrites. */
	assert_int_equal(secret_generate_file(path, 64, &again), -EEXIST);

	assert_int_equal(secret_read_file(path, &again, &size, &world), 0);
	assert_int_equal(size, 64);
	assert_false(world);
	assert_memory_equal(key, again, 64);
	secret_free(again);

	chmod(path, 0644);
	assert_int_equal(secret_read_file(path, &again, &size, &world), 0);
	assert_true(world);
	secret_free(again);

	close(open(empty, O_CREAT | O_WRONLY, 0600));
	assert_int_equal(secret_read_file(empty, &again, &size, NULL), -ENOKEY);
	assert_int_equal(secret_read_file(dir, &again, &size, NULL), -EISDIR);
	assert_int_equal(secret_read_file("/nonexistent/key", &again, &size, NULL), -ENOENT);

	secret_free(key);
	unlink(path);
	unlink(empty);
	rmdir(dir);
}

static void test_read_capped(void **state)
{
	struct timespec deadline;
	char buf[5];
	int p[2];

	/* Exactly the cap fits; one byte more is -EFBIG (pipes have no size to check first). */
	assert_int_equal(pipe(p), 0);
	assert_int_equal(write(p[1], "abcd", 4), 4);
	close(p[1]);
	assert_int_equal(read_capped(p[0], buf, 4, NULL), 4);
	assert_memory_equal(buf, "abcd", 4);
	close(p[0]);

	assert_int_equal(pipe(p), 0);
	assert_int_equal(write(p[1], "abcde", 5), 5);
	close(p[1]);
	assert_int_equal(read_capped(p[0], buf, 4, NULL), -EFBIG);
	close(p[0]);

	/* A writer that neither writes nor closes: the deadline ends the wait. */
	assert_int_equal(pipe2(p, O_NONBLOCK), 0);
	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_nsec += 100 * 1000 * 1000;
	if (deadline.tv_nsec >= 1000 * 1000 * 1000) {
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000 * 1000 * 1000;
	}
	assert_int_equal(read_capped(p[0], buf, 4, &deadline), -ETIMEDOUT);
	close(p[0]);
	close(p[1]);
}

static void test_hex(void **state)
{
	static const uint8_t data[] = { 0x00, 0xab, 0x10, 0xff };
	uint8_t back[4];
	char hex[9];

	assert_string_equal(hex_encode(data, sizeof(data), hex), "00ab10ff");
	assert_int_equal(hex_decode("00ab10ff", back, 4), 0);
	assert_memory_equal(back, data, 4);
	assert_int_equal(hex_decode("00AB10FF", back, 4), 0);
	assert_memory_equal(back, data, 4);
	assert_int_equal(hex_decode("00ab10f", back, 4), -EINVAL);
	assert_int_equal(hex_decode("00ab10ff0", back, 4), -EINVAL);
	assert_int_equal(hex_decode("00ab10fg", back, 4), -EINVAL);
	assert_int_equal(hex_decode(" 0ab10ff", back, 4), -EINVAL);
	assert_string_equal(hex_encode(data, 0, hex), "");
}

static void test_atomic_write(void **state)
{
	char dir[] = "/tmp/vmcrypt-unit.XXXXXX", path[128];
	char *buf = NULL;
	size_t size;
	struct stat st;

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/f", dir);
	assert_int_equal(write_file_atomic(path, "one", 3, 0600), 0);
	assert_int_equal(write_file_atomic(path, "two!", 4, 0640), 0);
	assert_int_equal(read_full_file(path, 100, &buf, &size), 0);
	assert_int_equal(size, 4);
	assert_string_equal(buf, "two!");
	free(buf);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0640);
	assert_int_equal(read_full_file(path, 3, &buf, &size), -EFBIG);

	/* A file that must be new: refused while path exists, nothing of it left behind. */
	assert_int_equal(write_file_new(path, "three", 5, 0600), -EEXIST);
	assert_int_equal(read_full_file(path, 100, &buf, &size), 0);
	assert_string_equal(buf, "two!");
	free(buf);
	unlink(path);
	assert_int_equal(write_file_new(path, "three", 5, 0600), 0);
	assert_int_equal(read_full_file(path, 100, &buf, &size), 0);
	assert_string_equal(buf, "three");
	free(buf);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	unlink(path);
	assert_int_equal(rmdir(dir), 0); /* no temp file left */
}

static void test_process_run_timeout(void **state)
{
	char out[64];
	struct timespec a, b;

	assert_int_equal(process_run((char *[]){ "sh", "-c", "echo hi; exit 3", NULL }, out, sizeof(out)), 3);
	assert_string_equal(out, "hi\n");
	assert_int_equal(process_run_timeout((char *[]){ "sh", "-c", "echo ok >&2", NULL }, out, sizeof(out), 5), 0);
	assert_string_equal(out, "ok\n");
	assert_int_equal(process_run_timeout((char *[]){ "/nonexistent-vmcrypt", NULL }, out, sizeof(out), 5), 127);
	/* A program past its time is killed and reaped: -ETIME after about a second, not five. */
	clock_gettime(CLOCK_MONOTONIC, &a);
	assert_int_equal(process_run_timeout((char *[]){ "sh", "-c", "echo started; exec sleep 5", NULL },
					     out, sizeof(out), 1), -ETIME);
	clock_gettime(CLOCK_MONOTONIC, &b);
	assert_true(b.tv_sec - a.tv_sec < 4);
	assert_string_equal(out, "started\n");
}

static void test_exit_status(void **state)
{
	assert_int_equal(exit_status_from_errno(0), EXIT_OK);
	assert_int_equal(exit_status_from_errno(-EBUSY), EXIT_BUSY);
	assert_int_equal(exit_status_from_errno(-EALREADY), EXIT_STATE);
	assert_int_equal(exit_status_from_errno(-EPERM), EXIT_KEY);
	assert_int_equal(exit_status_from_errno(-ENOSPC), EXIT_NOSPACE);
	assert_int_equal(exit_status_from_errno(-EINTR), EXIT_INTERRUPTED);
	assert_int_equal(exit_status_from_errno(-EAGAIN), EXIT_LOCKED);
	assert_int_equal(exit_status_from_errno(-EIO), EXIT_ERROR);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_size),
		cmocka_unit_test(test_format),
		cmocka_unit_test(test_text_escape),
		cmocka_unit_test(test_log_escape),
		cmocka_unit_test(test_secret_alloc),
		cmocka_unit_test(test_secret_grow),
		cmocka_unit_test(test_secret_files),
		cmocka_unit_test(test_read_capped),
		cmocka_unit_test(test_hex),
		cmocka_unit_test(test_atomic_write),
		cmocka_unit_test(test_process_run_timeout),
		cmocka_unit_test(test_exit_status),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
