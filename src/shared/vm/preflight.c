/* The prerequisite checks' table and the machinery that runs them and reports. */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "basic/fileio.h"
#include "basic/string-util.h"
#include "shared/paths.h"
#include "shared/vm/preflight-internal.h"


/* The checks, in the order they run and are reported: one list, for the table and the ids. */
#define PREFLIGHT_CHECKS(X)                                                                        \
	X("open-files", pf_check_open_files)                                                       \
	X("concurrent-operation", pf_check_concurrent_operation)                                   \
	X("selinux", pf_check_selinux)                                                             \
	X("lvm", pf_check_lvm)                                                                     \
	X("memory", pf_check_memory)                                                               \
	X("nested-mounts", pf_check_nested_mounts)                                                 \
	X("filesystem", pf_check_filesystem)                                                       \
	X("free-space", pf_check_free_space)                                                       \
	X("kernel", pf_check_kernel)                                                               \
	X("distro", pf_check_distro)                                                               \
	X("boot-packages", pf_check_boot_packages)                                                 \
	X("boot-layout", pf_check_boot_layout)                                                     \
	X("tpm2", pf_check_tpm2)                                                                   \
	X("initramfs-network", pf_check_initramfs_network)                                         \
	X("device", pf_check_device)                                                               \
	X("vault", pf_check_vault)                                                                 \
	X("agent-version", pf_check_agent_version)

#define CHECK_ENTRY(id, fn) { id, fn },
#define CHECK_ID(id, fn) id,

static const struct preflight_check {
	const char *id;
	void (*run)(struct preflight_context *c, struct preflight_builder *b);
} checks[] = { PREFLIGHT_CHECKS(CHECK_ENTRY) };

const char *const preflight_check_ids[] = { PREFLIGHT_CHECKS(CHECK_ID) NULL };

const char *preflight_status_to_string(enum preflight_status s)
{
	static const char *const names[] = { "PASS", "WARN", "FAIL", "SKIP" };
	return (unsigned)s < ELEMENTSOF(names) ? names[s] : "?";
}

int preflight_scope_from_string(const char *s, enum preflight_scope *ret)
{
	enum ade_volume_type t = ade_volume_type_from_string(s);

	if (t < 0)
		return t;
	*ret = (enum preflight_scope)t;
	return 0;
}

void pf_status(struct preflight_builder *b, enum preflight_status s)
{
	if (s == PREFLIGHT_SKIP || b->status == PREFLIGHT_SKIP)
		b->status = s;
	else if (s > b->status)
		b->status = s;
}

static void append(FILE *f, const char *fmt, va_list ap)
{
	if (!f)
		return;
	if (ftell(f) > 0)
		fputc(' ', f);
	vfprintf(f, fmt, ap);
}

void pf_say(struct preflight_builder *b, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	append(b->message, fmt, ap);
	va_end(ap);
}

void pf_remedy(struct preflight_builder *b, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	append(b->remedy, fmt, ap);
	va_end(ap);
}

void pf_volume(struct preflight_builder *b, const struct volume *v)
{
	char buf[PATH_MAX * 2 + 8];
	size_t i;
	json_t *e;

	volumes_describe(v, buf, sizeof(buf));
	json_array_foreach(b->volumes, i, e)
		if (streq(json_string_value(e), buf))
			return;
	json_array_append_new(b->volumes, json_string(buf));
}

bool pf_in_scope(const struct preflight_context *c, const struct volume *v)
{
	switch (v->role) {
	case VOLUME_ROLE_OS:
		return c->scope & PREFLIGHT_SCOPE_OS;
	case VOLUME_ROLE_DATA:
	case VOLUME_ROLE_CANDIDATE:
		return c->scope & PREFLIGHT_SCOPE_DATA;
	default:
		return false;
	}
}

int pf_read_file(const struct preflight_context *c, const char *path, size_t max, char **ret)
{
	char full[PATH_MAX * 2];

	if (snprintf(full, sizeof(full), "%s%s", c->root, path) >= (int)sizeof(full))
		return -ENAMETOOLONG;
	return read_full_file(full, max, ret, NULL);
}

bool pf_exists(const struct preflight_context *c, const char *path)
{
	char full[PATH_MAX * 2];

	if (snprintf(full, sizeof(full), "%s%s", c->root, path) >= (int)sizeof(full))
		return false;
	return access(full, F_OK) == 0;
}

static void builder_done(struct preflight_builder *b)
{
	if (b->message)
		fclose(b->message);
	if (b->remedy)
		fclose(b->remedy);
	free(b->message_buf);
	free(b->remedy_buf);
	json_decref(b->volumes);
	json_decref(b->details);
}

static void result_done(struct preflight_result *r)
{
	free(r->message);
	free(r->remedy);
	json_decref(r->volumes);
	json_decref(r->details);
}

void preflight_report_done(struct preflight_report *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->n; i++)
		result_done(&r->results[i]);
	free(r->results);
	r->results = NULL;
	r->n = 0;
}

int preflight_run(enum preflight_scope scope, struct preflight_report *ret)
{
	return preflight_run_with(scope, NULL, ret);
}

int preflight_run_with(enum preflight_scope scope, const struct preflight_probes *probes,
		       struct preflight_report *ret)
{
	struct preflight_context c = { .scope = scope, .probes = probes };
	struct preflight_report rep = { .ok = true };
	int r = 0;

	c.root = path_test_root();
	c.fixture = *c.root != 0;
	c.volumes_error = volumes_discover(&c.volumes, &c.n_volumes);
	if (c.volumes_error == -ENOMEM)
		return -ENOMEM;

	rep.results = calloc(ELEMENTSOF(checks), sizeof(*rep.results));
	if (!rep.results) {
		volumes_free(c.volumes);
		return -ENOMEM;
	}
	for (size_t i = 0; i < ELEMENTSOF(checks); i++) {
		struct preflight_builder b = { .status = PREFLIGHT_PASS };
		struct preflight_result *res = &rep.results[i];

		b.message = open_memstream(&b.message_buf, &b.message_len);
		b.remedy = open_memstream(&b.remedy_buf, &b.remedy_len);
		b.volumes = json_array();
		b.details = json_object();
		if (!b.message || !b.remedy || !b.volumes || !b.details) {
			builder_done(&b);
			r = -ENOMEM;
			break;
		}
		checks[i].run(&c, &b);
		fclose(b.message);
		fclose(b.remedy);
		b.message = b.remedy = NULL;

		res->id = checks[i].id;
		res->status = b.status;
		res->message = TAKE_PTR(b.message_buf);
		res->remedy = TAKE_PTR(b.remedy_buf);
		res->volumes = TAKE_PTR(b.volumes);
		res->details = TAKE_PTR(b.details);
		rep.n++;
		if (!res->message || !res->remedy) {
			r = -ENOMEM;
			break;
		}
		if (res->status == PREFLIGHT_FAIL)
			rep.ok = false;
	}
	volumes_free(c.volumes);
	if (r < 0) {
		preflight_report_done(&rep);
		return r;
	}
	*ret = rep;
	return 0;
}

const struct preflight_result *preflight_report_find(const struct preflight_report *r,
						     const char *id)
{
	for (size_t i = 0; i < r->n; i++)
		if (streq(r->results[i].id, id))
			return &r->results[i];
	return NULL;
}

json_t *preflight_report_to_json(const struct preflight_report *r)
{
	json_t *list = json_array(), *o;

	if (!list)
		return NULL;
	for (size_t i = 0; i < r->n; i++) {
		const struct preflight_result *res = &r->results[i];
		json_t *e = json_pack("{s:s, s:s, s:O, s:s, s:s, s:O}", "id", res->id, "status",
				      preflight_status_to_string(res->status), "volumes", res->volumes,
				      "message", res->message, "remedy", res->remedy, "details",
				      res->details);
		if (!e || json_array_append_new(list, e) < 0) {
			json_decref(list);
			return NULL;
		}
	}
	o = json_pack("{s:o, s:b}", "checks", list, "ok", r->ok);
	return o;
}
