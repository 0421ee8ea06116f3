/* The state of a conversion in flight, kept where `vmcrypt resume TARGET` finds it after a crash:
 * path_state_dir()/volumes/<LUKS UUID>/ holds state.json (written atomically), the LUKS2 header
 * while it is off the device (header.img) and resize2fs's undo file (undo.e2undo). */
#pragma once

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>

#include "shared/luks/luks.h"
#include "shared/volume/device.h"

/* The steps of a conversion, in order; each is recorded before it starts, so that resume knows
 * which step may have been cut short. */
enum convstate_phase {
	/* encrypt, header on the device */
	PHASE_SHRINKING,      /* resize2fs running with an undo file: resume undoes it, restarts */
	PHASE_SHRUNK,         /* filesystem ends before the room for the header: restartable */
	PHASE_INIT,           /* header.img being made, first segment copied to the tail; device
			       * start untouched: restartable from PHASE_SHRUNK */
	PHASE_PLACING_HEADER, /* header.img complete, being written to the device: redo the write */
	/* decrypt, header on the device */
	PHASE_BACKUP,         /* header being copied to header.img; device untouched */
	PHASE_WIPING,         /* header.img complete; the device's LUKS signatures being wiped */
	/* both */
	PHASE_CONVERTING,     /* libcryptsetup reencryption owns the state (LUKS2 metadata) */
	PHASE_GROWING,        /* decrypt done, filesystem being grown back */
	/* encrypt, header on the device, when libcryptsetup cannot finish (see convert.c) */
	PHASE_FINALIZING,     /* data all encrypted; a clean header.img being written: redo it */
};

struct convstate {
	char uuid[40];
	enum volume_op op;
	enum convstate_phase phase;
	char target[PATH_MAX];
	char identity[64];     /* device_identity() */
	uint64_t device_size;
	char fs_type[32];
	uint64_t fs_size;      /* filesystem size before the conversion, bytes (ext*) */
	uint64_t data_shift;   /* bytes; 0 for a detached header */
	uint32_t sector_size;
	bool detached;
	char header[PATH_MAX]; /* the user's detached header file, when detached */
	char active_name[128]; /* online: the dm-crypt mapping the data moves under; "" offline */
	int64_t started;
};

const char *convstate_phase_to_string(enum convstate_phase p);

/* path_state_dir()/volumes/<uuid>[/name] into buf. Returns 0 or -ENAMETOOLONG. */
int convstate_path(const char *uuid, const char *name, char *buf, size_t len);

/* Creates the directory (0700) and writes state.json atomically. Returns 0 or -errno. */
int convstate_save(const struct convstate *s);

/* Parses state.json's text (NUL-terminated) of the entry uuid; the parser convstate_load()
 * uses, separate for the fuzz harness. Returns 0 or -EINVAL when it is not a valid entry of uuid. */
int convstate_parse(const char *text, const char *uuid, struct convstate *ret);

/* Returns 0, -ENOENT when there is no entry, -EINVAL when it is unreadable, or -errno. */
int convstate_load(const char *uuid, struct convstate *ret);

/* Finds the entry for target: same identity and size, or, failing that, the same path and size.
 * Returns 0, -ENOENT, or -errno. */
int convstate_find(const struct device_info *d, struct convstate *ret);

/* Removes the entry's files and directory. Returns 0 or -errno. */
int convstate_remove(const char *uuid);
