/* Unit tests for the crypttab/fstab editor: real-world files in tests/data/tabs, byte-exact round
 * trips, atomic saves with the backup, and fstab source resolution in a fixture root. */
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "basic/fileio.h"
#include "basic/macro.h"
#include "basic/string-util.h"
#include "shared/agent/tabs.h"

#define DATA "tests/data/tabs/"

/* noinline: gcc 12 otherwise takes pointers into the result for pointers to the local (a false
 * -Wdangling-pointer). */
__attribute__((noinline)) static char *slurp(const char *path, size_t *ret_size)
{
	char *data = NULL;
	size_t size = 0;

	assert_int_equal(read_full_file(path, TAB_FILE_MAX, &data, &size), 0);
	if (ret_size)
		*ret_size = size;
	return data;
}

static struct tab_file *load(const char *path)
{
	struct tab_file *t = NULL;

	assert_int_equal(tab_file_load(path, &t), 0);
	return t;
}

/* The table's text equals the file's bytes. */
static void assert_text_is_file(struct tab_file *t, const char *path)
{
	_cleanup_free_ char *want = NULL;
	size_t want_size, size;
	const char *text;

	want = slurp(path, &want_size);
	text = tab_file_text(t, &size);
	assert_non_null(text);
	assert_int_equal(size, want_size);
	assert_memory_equal(text, want, size);
}

static void test_missing_file(void **state)
{
	_cleanup_tab_file_ struct tab_file *t = NULL;

	assert_int_equal(tab_file_load("/nonexistent-vmcrypt/crypttab", &t), 0);
	assert_string_equal(tab_file_text(t, NULL), "");
	assert_false(crypttab_has(t, "vmcrypt-data"));
	assert_false(tab_file_changed(t));
	assert_int_equal(crypttab_set(t, "vmcrypt-data", "UUID=L", NULL, "luks,nofail"), 1);
	assert_string_equal(tab_file_text(t, NULL), "vmcrypt-data UUID=L none luks,nofail\n");
	assert_true(tab_file_changed(t));
}

static void test_crypttab_set_remove(void **state)
{
	_cleanup_tab_file_ struct tab_file *t = load(DATA "crypttab-foreign");
	_cleanup_free_ char *orig = slurp(DATA "crypttab-foreign", NULL);
	const char *opts = "luks,_netdev,nofail,token-timeout=15,timeout=60,x-vmcrypt";
	_cleanup_free_ char *want = NULL;

	assert_true(crypttab_has(t, "swap_crypt"));
	assert_true(crypttab_has(t, "home_crypt"));
	assert_false(crypttab_has(t, "vmcrypt-data"));
	/* "# <target name>" is a comment, not an entry named "#". */
	assert_false(crypttab_has(t, "#"));

	assert_int_equal(crypttab_set(t, "vmcrypt-data", "UUID=L1", NULL, opts), 1);
	assert_int_equal(asprintf(&want, "%svmcrypt-data UUID=L1 none %s\n", orig, opts) > 0, 1);
	assert_string_equal(tab_file_text(t, NULL), want);
	/* Idempotent. */
	assert_int_equal(crypttab_set(t, "vmcrypt-data", "UUID=L1", NULL, opts), 0);
	assert_string_equal(tab_file_text(t, NULL), want);
	assert_true(crypttab_has(t, "vmcrypt-data"));

	/* A second volume, then a changed first one: replaced in place. */
	assert_int_equal(crypttab_set(t, "vmcrypt-srv", "PARTUUID=p2", NULL,
				      "luks,header=/var/lib/vmcrypt/headers/srv.luks,nofail"), 1);
	assert_int_equal(crypttab_set(t, "vmcrypt-data", "UUID=L2", "/etc/keys/data", "luks"), 1);
	free(want);
	assert_int_equal(asprintf(&want,
				  "%svmcrypt-data UUID=L2 /etc/keys/data luks\n"
				  "vmcrypt-srv PARTUUID=p2 none luks,header=/var/lib/vmcrypt/headers/srv.luks,nofail\n",
				  orig) > 0, 1);
	assert_string_equal(tab_file_text(t, NULL), want);

	/* Removing both gives back the original bytes; removing again changes nothing. */
	assert_int_equal(crypttab_remove(t, "vmcrypt-data"), 1);
	assert_int_equal(crypttab_remove(t, "vmcrypt-srv"), 1);
	assert_text_is_file(t, DATA "crypttab-foreign");
	assert_int_equal(crypttab_remove(t, "vmcrypt-srv"), 0);
	assert_text_is_file(t, DATA "crypttab-foreign");
	/* A foreign entry can be named too (the lead's code never does, but the editor is exact). */
	assert_int_equal(crypttab_remove(t, "home_crypt"), 1);
	assert_false(crypttab_has(t, "home_crypt"));
	assert_true(crypttab_has(t, "swap_crypt"));
}

static void test_crypttab_no_newline(void **state)
{
	_cleanup_tab_file_ struct tab_file *t = load(DATA "crypttab-no-newline");

	assert_int_equal(crypttab_set(t, "vmcrypt-data", "UUID=L", NULL, "luks"), 1);
	assert_string_equal(tab_file_text(t, NULL),
			    "home_crypt UUID=4e5f6a7b-8c9d-4e0f-a1b2-c3d4e5f6a7b8 none luks\n"
			    "vmcrypt-data UUID=L none luks");
	assert_int_equal(crypttab_remove(t, "vmcrypt-data"), 1);
	assert_text_is_file(t, DATA "crypttab-no-newline");
	/* The foreign last line itself can be replaced; its missing newline stays missing. */
	assert_int_equal(crypttab_set(t, "home_crypt", "UUID=x", NULL, NULL), 1);
	assert_string_equal(tab_file_text(t, NULL), "home_crypt UUID=x none");
}

static void test_crypttab_duplicates_and_invalid(void **state)
{
	static const char text[] = "vmcrypt-data UUID=A none luks\n# keep\n\tvmcrypt-data UUID=B none luks\n";
	_cleanup_tab_file_ struct tab_file *t = NULL;

	assert_int_equal(tab_file_from_text(text, strlen(text), &t), 0);
	assert_int_equal(crypttab_set(t, "vmcrypt-data", "UUID=A", NULL, "luks"), 1);
	assert_string_equal(tab_file_text(t, NULL), "vmcrypt-data UUID=A none luks\n# keep\n");
	assert_int_equal(crypttab_set(t, "vmcrypt-data", "UUID=A", NULL, "luks"), 0);

	assert_int_equal(crypttab_set(t, "vmcrypt data", "UUID=A", NULL, NULL), -EINVAL);
	assert_int_equal(crypttab_set(t, "#vmcrypt", "UUID=A", NULL, NULL), -EINVAL);
	assert_int_equal(crypttab_set(t, "x", "", NULL, NULL), -EINVAL);
	assert_int_equal(crypttab_set(t, "x", "UUID=A", "a\tb", NULL), -EINVAL);
	assert_int_equal(crypttab_set(t, "x", "UUID=A", NULL, "luks\n"), -EINVAL);
	assert_string_equal(tab_file_text(t, NULL), "vmcrypt-data UUID=A none luks\n# keep\n");
}

static void test_fstab_find(void **state)
{
	_cleanup_tab_file_ struct tab_file *deb = load(DATA "fstab-debian-cloud");
	_cleanup_tab_file_ struct tab_file *dock = load(DATA "fstab-docker");
	_cleanup_tab_file_ struct tab_file *pu = load(DATA "fstab-partuuid-no-newline");
	_cleanup_free_ struct fstab_entry *all = NULL;
	struct fstab_entry e;
	size_t n;

	assert_int_equal(fstab_find(deb, "/", &e), 0);
	assert_string_equal(e.source, "UUID=0b5c0b7e-5d4f-4a6e-9f5e-2f1e3c6b8a01");
	assert_string_equal(e.fstype, "ext4");
	assert_string_equal(e.options, "rw,discard,errors=remount-ro,x-systemd.growfs");
	assert_int_equal(e.passno, 1);
	assert_int_equal(fstab_find(deb, "/boot/efi", &e), 0);
	assert_string_equal(e.source, "UUID=7A3F-1C2D");
	/* Tabs between fields; a trailing slash in the question does not matter. */
	assert_int_equal(fstab_find(deb, "/data/", &e), 0);
	assert_string_equal(e.source, "UUID=22222222-2222-4222-8222-222222222222");
	assert_int_equal(e.freq, 0);
	assert_int_equal(e.passno, 2);
	/* Commented entries are not entries. */
	assert_int_equal(fstab_find(deb, "/old", &e), -ENOENT);
	assert_int_equal(fstab_find(deb, "/dat", &e), -ENOENT);

	assert_int_equal(fstab_find(dock, "/var/lib/docker", &e), 0);
	assert_string_equal(e.source, "LABEL=docker");
	assert_string_equal(e.fstype, "xfs");
	assert_string_equal(e.options, "defaults,pquota,nofail");
	/* \040 is a space, in the source and in the mount point. */
	assert_int_equal(fstab_find(dock, "/srv/my files", &e), 0);
	assert_string_equal(e.source, "PARTLABEL=srv files");
	assert_string_equal(e.target, "/srv/my files");
	assert_int_equal(fstab_find(dock, "/srv/my\\040files", &e), -ENOENT);
	/* A four-field line: freq and passno default to 0. */
	assert_int_equal(fstab_find(dock, "/scratch", &e), 0);
	assert_string_equal(e.source, "/dev/disk/by-id/virtio-scratch-part1");
	assert_int_equal(e.passno, 0);

	assert_int_equal(fstab_find(pu, "/srv", &e), 0);
	assert_string_equal(e.source, "PARTUUID=5f3e1a2b-02");
	assert_string_equal(e.options, "defaults,nofail");

	assert_int_equal(fstab_entries(dock, &all, &n), 0);
	assert_int_equal(n, 8);
	assert_string_equal(all[0].target, "/");
	assert_string_equal(all[4].source, "tmpfs");
	assert_string_equal(all[7].fstype, "none");
}

/* Redirect, check the exact text, redirect again (no change), restore (the original bytes). */
static void round_trip(const char *file, const char *mountpoint, const char *orig_line,
		       const char *new_line)
{
	_cleanup_tab_file_ struct tab_file *t = load(file);
	_cleanup_free_ char *orig = slurp(file, NULL);
	_cleanup_free_ char *want = NULL;
	_cleanup_free_ char *once = NULL;
	char *at;
	size_t off;
	int k;
	struct fstab_entry e;

	/* The expected text: the original line's bytes replaced by the comment and the new line. */
	at = strstr(orig, orig_line);
	assert_non_null(at);
	off = (size_t)(at - orig);
	k = asprintf(&want, "%.*s" TAB_ORIG_PREFIX "%s\n%s%s", (int)off, orig, orig_line, new_line,
		     orig + off + strlen(orig_line));
	assert_true(k > 0);

	assert_int_equal(fstab_redirect(t, mountpoint, "/dev/mapper/vmcrypt-x", "nofail,_netdev"), 1);
	assert_string_equal(tab_file_text(t, NULL), want);
	once = strdup(tab_file_text(t, NULL));
	assert_int_equal(fstab_redirect(t, mountpoint, "/dev/mapper/vmcrypt-x", "nofail,_netdev"), 0);
	assert_string_equal(tab_file_text(t, NULL), once);
	assert_int_equal(fstab_find(t, mountpoint, &e), 0);
	assert_string_equal(e.source, "/dev/mapper/vmcrypt-x");

	assert_int_equal(fstab_restore(t, mountpoint), 1);
	assert_text_is_file(t, file);
	assert_int_equal(fstab_restore(t, mountpoint), 0);
	assert_text_is_file(t, file);
}

static void test_fstab_round_trips(void **state)
{
	round_trip(DATA "fstab-debian-cloud", "/data",
		   "UUID=22222222-2222-4222-8222-222222222222\t/data\text4\tdefaults\t0\t2",
		   "/dev/mapper/vmcrypt-x /data ext4 defaults,nofail,_netdev 0 2");
	/* nofail already there: not added twice. */
	round_trip(DATA "fstab-docker", "/var/lib/docker",
		   "LABEL=docker  /var/lib/docker  xfs  defaults,pquota,nofail  0  0",
		   "/dev/mapper/vmcrypt-x /var/lib/docker xfs defaults,pquota,nofail,_netdev 0 0");
	/* The mount point's escape is kept as written. */
	round_trip(DATA "fstab-docker", "/srv/my files",
		   "PARTLABEL=srv\\040files /srv/my\\040files ext4 noatime,x-systemd.device-timeout=30s 0 2",
		   "/dev/mapper/vmcrypt-x /srv/my\\040files ext4 noatime,x-systemd.device-timeout=30s,nofail,_netdev 0 2");
	round_trip(DATA "fstab-docker", "/scratch", "/dev/disk/by-id/virtio-scratch-part1 /scratch ext4 defaults",
		   "/dev/mapper/vmcrypt-x /scratch ext4 defaults,nofail,_netdev 0 0");
	round_trip(DATA "fstab-partuuid-no-newline", "/", "PARTUUID=5f3e1a2b-01 / ext4 defaults 0 1",
		   "/dev/mapper/vmcrypt-x / ext4 defaults,nofail,_netdev 0 1");
}

static void test_fstab_last_line_no_newline(void **state)
{
	_cleanup_tab_file_ struct tab_file *t = load(DATA "fstab-partuuid-no-newline");

	assert_int_equal(fstab_redirect(t, "/srv", "/dev/mapper/vmcrypt-srv", "nofail,_netdev"), 1);
	assert_string_equal(tab_file_text(t, NULL),
			    "# generated by an installer, last line without newline\n"
			    "PARTUUID=5f3e1a2b-01 / ext4 defaults 0 1\n"
			    "#vmcrypt-orig: PARTUUID=5f3e1a2b-02 /srv xfs defaults,nofail 0 2\n"
			    "/dev/mapper/vmcrypt-srv /srv xfs defaults,nofail,_netdev 0 2");
	assert_int_equal(fstab_restore(t, "/srv"), 1);
	assert_text_is_file(t, DATA "fstab-partuuid-no-newline");
}

/* The /boot the agent makes for the OS volume: its line goes before /boot/efi's (mounts follow
 * the file's order), once. */
static void test_fstab_add(void **state)
{
	static const char text[] = "# cloud image\nUUID=r / ext4 rw,discard,errors=remount-ro 0 1\n"
				   "UUID=E /boot/efi vfat defaults 0 0";
	_cleanup_tab_file_ struct tab_file *t = NULL;
	(void)state;

	assert_int_equal(tab_file_from_text(text, strlen(text), &t), 0);
	assert_int_equal(fstab_add(t, "UUID=b", "/boot", "ext4", "defaults", 2, "/boot/efi"), 1);
	assert_string_equal(tab_file_text(t, NULL),
			    "# cloud image\nUUID=r / ext4 rw,discard,errors=remount-ro 0 1\n"
			    "UUID=b /boot ext4 defaults 0 2\nUUID=E /boot/efi vfat defaults 0 0");
	assert_int_equal(fstab_add(t, "UUID=c", "/boot", "ext4", "defaults", 2, "/boot/efi"), 0);
	assert_int_equal(fstab_add(t, "UUID=d", "/srv", "xfs", "defaults", 2, NULL), 1);
	assert_non_null(strstr(tab_file_text(t, NULL), "vfat defaults 0 0\nUUID=d /srv xfs defaults 0 2"));
	assert_int_equal(fstab_add(t, "UUID=x y", "/x", "ext4", "defaults", 2, NULL), -EINVAL);
	assert_int_equal(fstab_add(t, "UUID=x", "/x", "ext4", "defaults", 10, NULL), -EINVAL);
}

static void test_fstab_redirect_again_and_errors(void **state)
{
	_cleanup_tab_file_ struct tab_file *t = load(DATA "fstab-debian-cloud");
	_cleanup_free_ char *first = NULL;
	const char *text;

	assert_int_equal(fstab_redirect(t, "/nope", "/dev/mapper/vmcrypt-x", NULL), -ENOENT);
	assert_int_equal(fstab_redirect(t, "/data", "/dev/mapper/vmcrypt x", NULL), -EINVAL);
	assert_int_equal(fstab_redirect(t, "/data", "", NULL), -EINVAL);
	assert_int_equal(fstab_redirect(t, "/data", "/dev/mapper/vmcrypt-data", NULL), 1);
	first = strdup(tab_file_text(t, NULL));
	assert_non_null(strstr(first, "\n/dev/mapper/vmcrypt-data /data ext4 defaults 0 2\n"));
	/* Another source: our line is derived again from the kept original, one comment stays. */
	assert_int_equal(fstab_redirect(t, "/data", "/dev/mapper/vmcrypt-data2", "nofail"), 1);
	text = tab_file_text(t, NULL);
	assert_non_null(strstr(text, TAB_ORIG_PREFIX "UUID=2222"));
	assert_null(strstr(strstr(text, TAB_ORIG_PREFIX "UUID=2222") + 1, TAB_ORIG_PREFIX "UUID=2222"));
	assert_non_null(strstr(text, "\n/dev/mapper/vmcrypt-data2 /data ext4 defaults,nofail 0 2\n"));
	assert_null(strstr(text, "vmcrypt-data "));

	/* Someone added their own active line for /data: restoring would mount twice. */
	{
		_cleanup_tab_file_ struct tab_file *t2 = NULL;
		_cleanup_free_ char *more = NULL;

		assert_int_equal(asprintf(&more, "%s/dev/sdz /data xfs defaults 0 0\n", text) > 0, 1);
		assert_int_equal(tab_file_from_text(more, strlen(more), &t2), 0);
		assert_int_equal(fstab_restore(t2, "/data"), -EEXIST);
		assert_string_equal(tab_file_text(t2, NULL), more);
	}
	assert_int_equal(fstab_restore(t, "/data"), 1);
	assert_text_is_file(t, DATA "fstab-debian-cloud");
}

static void test_fstab_restore_moved_line(void **state)
{
	static const char text[] = "#vmcrypt-orig: UUID=F /data ext4 defaults 0 2\n"
				   "# an admin's note inserted between\n"
				   "/dev/mapper/vmcrypt-data /data ext4 defaults,nofail,_netdev 0 2\n"
				   "tmpfs /tmp tmpfs defaults 0 0\n";
	_cleanup_tab_file_ struct tab_file *t = NULL;

	assert_int_equal(tab_file_from_text(text, strlen(text), &t), 0);
	assert_int_equal(fstab_restore(t, "/data"), 1);
	assert_string_equal(tab_file_text(t, NULL), "UUID=F /data ext4 defaults 0 2\n"
						    "# an admin's note inserted between\n"
						    "tmpfs /tmp tmpfs defaults 0 0\n");
}

/* Lines libmount cannot parse are kept and never match; CRLF and a NUL byte survive too. */
static void test_fstab_junk_lines(void **state)
{
	static const char text[] = "foo\n  \n/dev/x /a ext4\r\nbroken\0 nul /a\n\t# /a comment\n"
				   "/dev/y /b ext4 defaults 0 0\n";
	_cleanup_tab_file_ struct tab_file *t = NULL;
	struct fstab_entry e;
	const char *got;
	size_t size;

	assert_int_equal(tab_file_from_text(text, sizeof(text) - 1, &t), 0);
	assert_int_equal(fstab_find(t, "foo", &e), -ENOENT);
	assert_int_equal(fstab_find(t, "/a", &e), 0);
	assert_string_equal(e.source, "/dev/x");
	assert_int_equal(fstab_redirect(t, "/b", "/dev/mapper/vmcrypt-b", "nofail"), 1);
	assert_int_equal(fstab_restore(t, "/b"), 1);
	got = tab_file_text(t, &size);
	assert_int_equal(size, sizeof(text) - 1);
	assert_memory_equal(got, text, size);
}

/* Options are copied as written: libmount unescapes \040 in them too, which would split our line. */
static void test_fstab_escaped_options(void **state)
{
	static const char text[] = "LABEL=x /m ext4 x-systemd.requires-mounts-for=/srv/my\\040dir,noatime 0 2\n";
	_cleanup_tab_file_ struct tab_file *t = NULL;
	struct fstab_entry e;

	assert_int_equal(tab_file_from_text(text, strlen(text), &t), 0);
	assert_int_equal(fstab_find(t, "/m", &e), 0);
	assert_string_equal(e.options, "x-systemd.requires-mounts-for=/srv/my dir,noatime");
	assert_int_equal(fstab_redirect(t, "/m", "/dev/mapper/vmcrypt-m", "nofail"), 1);
	assert_non_null(strstr(tab_file_text(t, NULL),
			       "\n/dev/mapper/vmcrypt-m /m ext4 x-systemd.requires-mounts-for=/srv/my\\040dir,noatime,nofail 0 2\n"));
	assert_int_equal(fstab_redirect(t, "/m", "/dev/mapper/vmcrypt-m", "nofail"), 0);
	assert_int_equal(fstab_redirect(t, "/m", "/dev/mapper/vmcrypt-m", "no fail"), -EINVAL);
	assert_int_equal(fstab_restore(t, "/m"), 1);
	assert_string_equal(tab_file_text(t, NULL), text);
}

/* The kept original is byte for byte even past a NUL (the parsers stop there). */
static void test_fstab_nul_in_redirected_line(void **state)
{
	static const char text[] = "/dev/y /b ext4 defaults 0 0\0after the NUL\n# end\n";
	_cleanup_tab_file_ struct tab_file *t = NULL;
	const char *got;
	size_t size;

	assert_int_equal(tab_file_from_text(text, sizeof(text) - 1, &t), 0);
	assert_int_equal(fstab_redirect(t, "/b", "/dev/mapper/vmcrypt-b", NULL), 1);
	got = tab_file_text(t, &size);
	assert_int_equal(size, sizeof(text) - 1 + strlen(TAB_ORIG_PREFIX) +
				       strlen("/dev/mapper/vmcrypt-b /b ext4 defaults 0 0\n"));
	assert_int_equal(fstab_restore(t, "/b"), 1);
	got = tab_file_text(t, &size);
	assert_int_equal(size, sizeof(text) - 1);
	assert_memory_equal(got, text, size);
}

static void make_tmpdir(char *dir)
{
	assert_non_null(mkdtemp(dir));
}

static void write_text(const char *path, const char *text, mode_t mode)
{
	unlink(path);
	assert_int_equal(write_file_atomic(path, text, strlen(text), mode), 0);
}

static void test_save(void **state)
{
	char dir[] = "/tmp/vmcrypt-tabs.XXXXXX", path[128], bak[160], newp[160], link[128];
	_cleanup_tab_file_ struct tab_file *t = NULL;
	_cleanup_tab_file_ struct tab_file *t2 = NULL;
	_cleanup_free_ char *got = NULL;
	struct stat st;

	make_tmpdir(dir);
	snprintf(path, sizeof(path), "%s/crypttab", dir);
	snprintf(bak, sizeof(bak), "%s.vmcrypt-bak", path);
	snprintf(newp, sizeof(newp), "%s.vmcrypt-new", path);
	write_text(path, "# old\nfoo /dev/sda none\n", 0600);

	assert_int_equal(tab_file_load(path, &t), 0);
	assert_int_equal(crypttab_set(t, "vmcrypt-data", "UUID=L", NULL, "luks"), 1);
	assert_int_equal(tab_file_save(t, path), 0);
	assert_false(tab_file_changed(t));
	got = slurp(path, NULL);
	assert_string_equal(got, "# old\nfoo /dev/sda none\nvmcrypt-data UUID=L none luks\n");
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	free(got);
	got = slurp(bak, NULL);
	assert_string_equal(got, "# old\nfoo /dev/sda none\n");
	assert_int_equal(stat(bak, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	assert_int_equal(access(newp, F_OK), -1);

	/* A second save keeps the first save's result as the backup. */
	assert_int_equal(crypttab_remove(t, "foo"), 1);
	assert_int_equal(tab_file_save(t, path), 0);
	free(got);
	got = slurp(bak, NULL);
	assert_string_equal(got, "# old\nfoo /dev/sda none\nvmcrypt-data UUID=L none luks\n");

	/* Changed on disk behind our back: -ESTALE, nothing written. */
	write_text(path, "# edited by a person\n", 0644);
	assert_int_equal(crypttab_set(t, "vmcrypt-srv", "UUID=S", NULL, "luks"), 1);
	assert_int_equal(tab_file_save(t, path), -ESTALE);
	free(got);
	got = slurp(path, NULL);
	assert_string_equal(got, "# edited by a person\n");
	assert_int_equal(access(newp, F_OK), -1);

	/* The owner is kept too (root editing a file it does not own; needs root to test). */
	if (geteuid() == 0) {
		_cleanup_tab_file_ struct tab_file *t3 = NULL;

		write_text(path, "# owned by 1234\n", 0640);
		assert_int_equal(chown(path, 1234, 4321), 0);
		assert_int_equal(tab_file_load(path, &t3), 0);
		assert_int_equal(crypttab_set(t3, "x", "y", NULL, NULL), 1);
		assert_int_equal(tab_file_save(t3, path), 0);
		assert_int_equal(stat(path, &st), 0);
		assert_int_equal(st.st_uid, 1234);
		assert_int_equal(st.st_gid, 4321);
		assert_int_equal(st.st_mode & 07777, 0640);
		assert_int_equal(stat(bak, &st), 0);
		assert_int_equal(st.st_uid, 1234);
		assert_int_equal(st.st_mode & 07777, 0640);
	}

	/* A missing file is created 0644 without a backup; a symlink's target is replaced. */
	snprintf(path, sizeof(path), "%s/fstab", dir);
	assert_int_equal(tab_file_load(path, &t2), 0);
	assert_int_equal(crypttab_set(t2, "a", "b", "c", NULL), 1);
	assert_int_equal(tab_file_save(t2, path), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0644);
	snprintf(bak, sizeof(bak), "%s.vmcrypt-bak", path);
	assert_int_equal(access(bak, F_OK), -1);
	snprintf(link, sizeof(link), "%s/fstab-link", dir);
	assert_int_equal(symlink("fstab", link), 0);
	assert_int_equal(crypttab_set(t2, "d", "e", "f", NULL), 1);
	assert_int_equal(tab_file_save(t2, link), 0);
	assert_int_equal(lstat(link, &st), 0);
	assert_true(S_ISLNK(st.st_mode));
	free(got);
	got = slurp(path, NULL);
	assert_string_equal(got, "a b c\nd e f\n");
	free(got);
	got = slurp(bak, NULL);
	assert_string_equal(got, "a b c\n");

	{
		char cmd[200];
		snprintf(cmd, sizeof(cmd), "rm -rf -- '%s'", dir);
		assert_int_equal(system(cmd), 0);
	}
}

static void test_source_resolve_fixture(void **state)
{
	char root[] = "/tmp/vmcrypt-tabs-root.XXXXXX", p[256], dev[64];

	make_tmpdir(root);
	snprintf(p, sizeof(p), "%s/dev/disk/by-uuid", root);
	assert_int_equal(mkdir_p(p, 0755), 0);
	snprintf(p, sizeof(p), "%s/dev/disk/by-label", root);
	assert_int_equal(mkdir_p(p, 0755), 0);
	snprintf(p, sizeof(p), "%s/dev/disk/by-partuuid", root);
	assert_int_equal(mkdir_p(p, 0755), 0);
	snprintf(p, sizeof(p), "%s/dev/disk/by-id", root);
	assert_int_equal(mkdir_p(p, 0755), 0);
	snprintf(p, sizeof(p), "%s/dev/disk/by-uuid/2222", root);
	assert_int_equal(symlink("../../sdb1", p), 0);
	snprintf(p, sizeof(p), "%s/dev/disk/by-label/my\\x20data", root);
	assert_int_equal(symlink("../../vdc", p), 0);
	snprintf(p, sizeof(p), "%s/dev/disk/by-partuuid/5f3e1a2b-02", root);
	assert_int_equal(symlink("../../nvme0n1p2", p), 0);
	snprintf(p, sizeof(p), "%s/dev/disk/by-id/virtio-scratch-part1", root);
	assert_int_equal(symlink("../../vdd1", p), 0);
	setenv("VMCRYPT_TEST_ROOT", root, 1);

	assert_int_equal(fstab_source_resolve("UUID=2222", dev, sizeof(dev)), 0);
	assert_string_equal(dev, "/dev/sdb1");
	assert_int_equal(fstab_source_resolve("LABEL=my data", dev, sizeof(dev)), 0);
	assert_string_equal(dev, "/dev/vdc");
	assert_int_equal(fstab_source_resolve("LABEL=\"my data\"", dev, sizeof(dev)), 0);
	assert_string_equal(dev, "/dev/vdc");
	assert_int_equal(fstab_source_resolve("PARTUUID=5f3e1a2b-02", dev, sizeof(dev)), 0);
	assert_string_equal(dev, "/dev/nvme0n1p2");
	assert_int_equal(fstab_source_resolve("/dev/disk/by-id/virtio-scratch-part1", dev, sizeof(dev)), 0);
	assert_string_equal(dev, "/dev/vdd1");
	assert_int_equal(fstab_source_resolve("/dev/vdb1", dev, sizeof(dev)), 0);
	assert_string_equal(dev, "/dev/vdb1");
	assert_int_equal(fstab_source_resolve("UUID=9999", dev, sizeof(dev)), -ENOENT);
	assert_int_equal(fstab_source_resolve("PARTLABEL=none", dev, sizeof(dev)), -ENOENT);
	assert_int_equal(fstab_source_resolve("tmpfs", dev, sizeof(dev)), -ENOENT);
	assert_int_equal(fstab_source_resolve("nas:/export", dev, sizeof(dev)), -ENOENT);
	assert_int_equal(fstab_source_resolve("UUID=2222", dev, 8), -ENAMETOOLONG);
	unsetenv("VMCRYPT_TEST_ROOT");

	/* The real root: libblkid; what names no block device is -ENOENT. */
	assert_int_equal(fstab_source_resolve("tmpfs", dev, sizeof(dev)), -ENOENT);
	assert_int_equal(fstab_source_resolve("/dev/null", dev, sizeof(dev)), -ENOENT);
	assert_int_equal(fstab_source_resolve("UUID=00000000-dead-beef-0000-000000000000", dev, sizeof(dev)),
			 -ENOENT);
	snprintf(p, sizeof(p), "rm -rf -- '%s'", root);
	assert_int_equal(system(p), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_missing_file),
		cmocka_unit_test(test_crypttab_set_remove),
		cmocka_unit_test(test_crypttab_no_newline),
		cmocka_unit_test(test_crypttab_duplicates_and_invalid),
		cmocka_unit_test(test_fstab_find),
		cmocka_unit_test(test_fstab_round_trips),
		cmocka_unit_test(test_fstab_last_line_no_newline),
		cmocka_unit_test(test_fstab_redirect_again_and_errors),
		cmocka_unit_test(test_fstab_add),
		cmocka_unit_test(test_fstab_restore_moved_line),
		cmocka_unit_test(test_fstab_junk_lines),
		cmocka_unit_test(test_fstab_nul_in_redirected_line),
		cmocka_unit_test(test_fstab_escaped_options),
		cmocka_unit_test(test_save),
		cmocka_unit_test(test_source_resolve_fixture),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
