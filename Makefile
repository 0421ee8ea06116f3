# vmcrypt: one obvious build. `make` builds everything; `make test` runs every test under
# ASan+UBSan; `make demo` runs the main job on a demo image (`make demo-vm`: the agent end to end
# in a Debian 12 guest under QEMU, a few minutes); `make bench` runs the benchmarks;
# `make install` (PREFIX=/usr, DESTDIR=) and `make deb` install or package it (docs/install.md).
# Switches: V=1 (echo commands), SANITIZE=1 (ASan+UBSan, in build-asan/), CC=clang, FUZZ=1
# (libFuzzer harnesses, clang only).
#
# Layering (docs/hacking.md), checked by scripts/check-layers before anything compiles:
#   src/basic            libc only
#   src/shared           (secret, paths, exit-status, ade, jansson-util) may use basic
#   src/shared/volume    basic, shared
#   src/shared/luks      basic, shared, volume
#   src/shared/vm        basic, shared, volume, luks
#   src/shared/api       basic, shared
#   src/shared/vault     basic, shared, api
#   src/shared/client    basic, shared, api                    (the VM's side of the API)
#   src/shared/tpm       basic, shared                         (sealing to the VM's TPM 2.0)
#   src/shared/agent     basic, shared, volume, luks, vm, api, client, tpm
#   src/vmcrypt          basic, shared, volume, luks, vm, api, client, tpm, agent  (never the vault)
#   src/token-plugin     basic, shared, api, client            (libcryptsetup-token-vmcrypt.so)
#   src/vmcryptd         basic, shared, api, vault             (never a disk)
#   src/admin            basic, shared, api

CC ?= gcc
SANITIZE ?= 0
FUZZ ?= 0
# BASE_VERSION is the release this tree leads to. A build from git appends +git<commits>.<hash>
# (.dirty for uncommitted changes): a valid Debian version that grows with every commit on a
# branch, so the .deb of a newer commit upgrades the older one. The programs' --version and the
# package say the same.
BASE_VERSION := 0.9.0
GIT_REV := $(shell git describe --always --abbrev=7 --dirty=.dirty --exclude='*' 2>/dev/null)
VERSION := $(BASE_VERSION)$(if $(GIT_REV),+git$(shell git rev-list --count HEAD).$(GIT_REV))

ifeq ($(SANITIZE),1)
BUILD ?= build-asan
SAN_FLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
else
BUILD ?= build
SAN_FLAGS :=
endif

# tpm2-tss (src/shared/tpm): ESYS, MU, the TCTI loader and the return-code decoder; the loader
# dlopen()s the TCTI module (libtss2-tcti-device.so.0) at run time, so no link names it.
PKGS := libcryptsetup jansson blkid mount libcrypto libssl sqlite3 libpq libcurl libmicrohttpd \
	tss2-esys tss2-mu tss2-tctildr tss2-rc
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

CFLAGS ?= -O2 -g
CFLAGS += -std=gnu17 -Wall -Wextra -Wno-missing-field-initializers -Wno-unused-parameter -Wshadow -Wformat=2 \
	-Wno-format-nonliteral -fstack-protector-strong -fPIE -MMD -MP $(SAN_FLAGS)
CPPFLAGS += -Isrc -D_GNU_SOURCE -D_FORTIFY_SOURCE=2 -DVMCRYPT_VERSION='"$(VERSION)"' $(PKG_CFLAGS)
# --as-needed: every program gets all of PKG_LIBS on its command line, but records only the
# libraries it uses (readelf -d), so the package's Depends are each program's real needs.
LDFLAGS += -pie -Wl,-z,relro,-z,now -Wl,--as-needed $(SAN_FLAGS)
LDLIBS += $(PKG_LIBS) -lpthread

ifeq ($(V),1)
Q :=
else
Q := @
endif

LIB_SRC := $(wildcard src/basic/*.c src/shared/*.c src/shared/*/*.c)
LIB_OBJ := $(patsubst src/%.c,$(BUILD)/obj/%.o,$(LIB_SRC))
LIB := $(BUILD)/libvmcrypt.a

# Each program is every .c file in its folder.
PROG_DIRS := vmcrypt vmcryptd admin
prog_name = $(if $(filter admin,$(1)),vmcrypt-admin,$(1))
PROGS := $(foreach d,$(PROG_DIRS),$(if $(wildcard src/$(d)/*.c),$(BUILD)/$(call prog_name,$(d))))

UNIT_SRC := $(wildcard tests/unit/test-*.c)
UNIT_BIN := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRC))

FUZZ_SRC := $(wildcard fuzz/fuzz-*.c)
FUZZ_BIN := $(patsubst fuzz/%.c,$(BUILD)/fuzz/%,$(FUZZ_SRC))
ifeq ($(FUZZ),1)
FUZZ_MAIN :=
FUZZ_FLAGS := -fsanitize=fuzzer
# The library gets coverage instrumentation too, or libFuzzer is blind inside the parsers.
CFLAGS += -fsanitize=fuzzer-no-link
else
FUZZ_MAIN := $(BUILD)/obj/fuzz/replay-main.o
FUZZ_FLAGS :=
endif

# The LUKS2 token plugin (src/token-plugin, docs/agent.md "The LUKS2 token"): a shared object
# libcryptsetup dlopen()s into cryptsetup and systemd-cryptsetup. It carries its own position-
# independent copies of the library objects it needs (basic, shared, shared/api, shared/client,
# built again with -fPIC in $(BUILD)/pic/; the programs' objects are -fPIE, which a shared object
# cannot use), all hidden: only the five symbols of the version script are exported. Its jansson
# calls bind to libjansson.so.4's versioned symbols, so json-c's json_object_get, which the host's
# libcryptsetup brings into the process under the same name, is never called by mistake.
# It is never built with sanitizers, not even with SANITIZE=1: the ASan runtime must be the first
# library of a process, so an instrumented plugin dlopen()ed by the uninstrumented cryptsetup or
# systemd-cryptsetup aborts on load ("ASan runtime does not come first in initial library
# list"). Its parser runs under ASan+UBSan in the unit test and the fuzz harness instead, which
# link the normal objects.
PLUGIN := $(BUILD)/libcryptsetup-token-vmcrypt.so
PLUGIN_SYM := src/token-plugin/libcryptsetup-token-vmcrypt.sym
PLUGIN_SRC := $(wildcard src/token-plugin/*.c)
PIC_LIB_SRC := $(wildcard src/basic/*.c src/shared/*.c src/shared/api/*.c src/shared/client/*.c)
PIC_LIB := $(BUILD)/pic/libvmcrypt-pic.a
PIC_CFLAGS := $(filter-out -fPIE -fsanitize=fuzzer-no-link $(SAN_FLAGS),$(CFLAGS)) -fPIC -fvisibility=hidden
PLUGIN_LIBS := $(shell pkg-config --libs libcryptsetup jansson libcurl libcrypto libssl 2>/dev/null) -lpthread

.PHONY: all deps test demo demo-vm bench clean check-build
all: $(PROGS) $(PLUGIN) $(UNIT_BIN) $(FUZZ_BIN)

deps:
	$(Q)scripts/install-deps build

# Every include against the layering rule fails the build before the first compile.
LAYERS_STAMP := $(BUILD)/layers.ok
$(LAYERS_STAMP): scripts/check-layers $(shell find src -name '*.[ch]')
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LAYERS  src")
	$(Q)scripts/check-layers src
	@touch $@

$(BUILD)/obj/%.o: src/%.c | $(LAYERS_STAMP)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<

$(BUILD)/obj/tests/%.o: tests/%.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(CPPFLAGS) -Itests $(CFLAGS) -c -o $@ $<

$(BUILD)/obj/fuzz/%.o: fuzz/%.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) $(FUZZ_FLAGS) -c -o $@ $<

$(BUILD)/pic/%.o: src/%.c | $(LAYERS_STAMP)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC PIC  $<")
	$(Q)$(CC) $(CPPFLAGS) $(PIC_CFLAGS) -c -o $@ $<

$(PIC_LIB): $(patsubst src/%.c,$(BUILD)/pic/%.o,$(PIC_LIB_SRC))
	@$(if $(Q),echo "  AR      $@")
	$(Q)rm -f $@ && ar rcs $@ $^

# -z defs: every symbol the plugin needs is in its own objects or a library it names, so a
# missing one fails here and not at dlopen() time inside cryptsetup.
$(PLUGIN): $(patsubst src/%.c,$(BUILD)/pic/%.o,$(PLUGIN_SRC)) $(PIC_LIB) $(PLUGIN_SYM)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) -shared -Wl,--version-script=$(PLUGIN_SYM) -Wl,-z,defs -Wl,-z,relro,-z,now -Wl,--as-needed \
		-o $@ $(filter %.o %.a,$^) $(PLUGIN_LIBS)

# The plugin's token parser, in the ASan+UBSan unit test and fuzz harness (the link rules put
# objects before the library, so the extra object finds what it needs in it).
$(BUILD)/tests/test-token-ref $(BUILD)/fuzz/fuzz-token-ref: $(BUILD)/obj/token-plugin/token-ref.o

$(LIB): $(LIB_OBJ)
	@$(if $(Q),echo "  AR      $@")
	$(Q)rm -f $@ && ar rcs $@ $^

define prog_rule
$(BUILD)/$(call prog_name,$(1)): $(patsubst src/%.c,$(BUILD)/obj/%.o,$(wildcard src/$(1)/*.c)) $(LIB)
	@$$(if $(Q),echo "  LD      $$@")
	$(Q)$$(CC) $$(LDFLAGS) -o $$@ $$^ $$(LDLIBS)
endef
$(foreach d,$(PROG_DIRS),$(eval $(call prog_rule,$(d))))

$(BUILD)/tests/%: $(BUILD)/obj/tests/unit/%.o $(LIB)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $(filter-out %.a,$^) $(filter %.a,$^) $(LDLIBS) -lcmocka

$(BUILD)/fuzz/%: $(BUILD)/obj/fuzz/%.o $(FUZZ_MAIN) $(LIB)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) $(FUZZ_FLAGS) -o $@ $(filter-out %.a,$^) $(filter %.a,$^) $(LDLIBS)

# The version is compiled into the programs' main files: rebuild them when `git describe`
# changes, and only then.
VERSION_STAMP := $(BUILD)/version.stamp
$(VERSION_STAMP): FORCE
	@mkdir -p $(dir $@)
	@echo '$(VERSION)' | cmp -s - $@ || echo '$(VERSION)' >$@
$(BUILD)/obj/vmcrypt/vmcrypt.o $(BUILD)/obj/vmcryptd/main.o $(BUILD)/obj/admin/admin.o \
	$(BUILD)/pic/token-plugin/token-plugin.o: $(VERSION_STAMP)
.PHONY: FORCE
FORCE:

# Every test: unit (cmocka), fuzz corpus replay, integration on loop devices, QEMU end-to-end.
# All of them run against the ASan+UBSan build; the summary line is "N passed, N failed".
test:
	$(Q)scripts/install-deps test
	$(Q)$(MAKE) --no-print-directory SANITIZE=1 all
	$(Q)tests/run --build build-asan

# Compiles with both compilers, warnings as errors (CI runs this before the tests).
check-build:
	$(Q)scripts/install-deps build
	$(Q)$(MAKE) --no-print-directory BUILD=build-gcc CC=gcc CFLAGS="-O2 -g -Werror" all
	$(Q)$(MAKE) --no-print-directory BUILD=build-clang CC=clang CFLAGS="-O2 -g -Werror" all

demo:
	$(Q)scripts/install-deps test
	$(Q)$(MAKE) --no-print-directory all
	$(Q)scripts/demo --build $(BUILD)

# The test's host side (vmcryptd, vmcrypt-admin) runs from $(BUILD); the guest gets `make deb`'s
# package, built in build/ (no sanitizer runtime in the guest). Root, QEMU, about 5 minutes.
demo-vm:
	$(Q)scripts/install-deps test
	$(Q)$(MAKE) --no-print-directory $(PROGS) $(INSTALL_PLUGIN)
	$(Q)VMCRYPT_DEMO=1 VMCRYPT_BUILD=$(abspath $(BUILD)) bash tests/vm/test-vm-agent.sh

bench:
	$(Q)scripts/install-deps bench
	$(Q)$(MAKE) --no-print-directory all
	$(Q)for b in bench/*; do [ -x "$$b" ] && "$$b" --build $(BUILD) || exit 1; done

# Installation (docs/install.md). PREFIX=/usr is the package's layout; DESTDIR= stages it.
# tokendir is where libcryptsetup looks for token plugins, <its libdir>/cryptsetup (compiled into
# the library, not under PREFIX). Debian 12's pkg-config says /lib/x86_64-linux-gnu: with the
# merged /usr that is the directory systemd's own plugins use as /usr/lib/x86_64-linux-gnu, and
# the package uses that spelling so dpkg sees one path.
PREFIX ?= /usr
bindir ?= $(PREFIX)/bin
sbindir ?= $(PREFIX)/sbin
docdir ?= $(PREFIX)/share/doc/vmcrypt
# initramfs-tools' hooks and boot scripts (the OS volume: docs/os-volume.md).
initramfsdir ?= $(PREFIX)/share/initramfs-tools
# dracut's module (the RHEL family; Debian's dracut reads the same directory).
dracutdir ?= $(PREFIX)/lib/dracut/modules.d/90vmcrypt
sysconfdir ?= /etc
ifndef unitdir
unitdir := $(or $(shell pkg-config --variable=systemdsystemunitdir systemd 2>/dev/null),/lib/systemd/system)
endif
ifndef tokendir
CRYPTSETUP_LIBDIR := $(shell pkg-config --variable=libdir libcryptsetup 2>/dev/null)
ifeq ($(CRYPTSETUP_LIBDIR),)
CRYPTSETUP_LIBDIR := /usr/lib/$(shell $(CC) -print-multiarch 2>/dev/null)
endif
tokendir := $(if $(and $(filter /lib/%,$(CRYPTSETUP_LIBDIR)),$(shell test -L /lib && echo merged)),/usr)$(CRYPTSETUP_LIBDIR)/cryptsetup
endif

# The token plugin (src/token-plugin/, its rule is with the plugin's): installed when its sources
# exist, which makes install build it.
TOKEN_PLUGIN := $(BUILD)/libcryptsetup-token-vmcrypt.so
INSTALL_PLUGIN := $(if $(wildcard src/token-plugin/*.c),$(TOKEN_PLUGIN))
UNITS := $(wildcard dist/systemd/*.service.in)
DOCS := README.md $(wildcard docs/*.md)
INSTALL ?= install

.PHONY: install deb
install: $(PROGS) $(INSTALL_PLUGIN)
	$(Q)$(INSTALL) -d -m 0755 $(DESTDIR)$(sbindir) $(DESTDIR)$(bindir) $(DESTDIR)$(unitdir) \
		$(DESTDIR)$(sysconfdir)/vmcrypt $(DESTDIR)$(docdir)
	$(Q)$(INSTALL) -m 0755 $(BUILD)/vmcrypt $(BUILD)/vmcryptd $(DESTDIR)$(sbindir)/
	$(Q)$(INSTALL) -m 0755 $(BUILD)/vmcrypt-admin $(DESTDIR)$(bindir)/
	$(Q)if [ -f $(TOKEN_PLUGIN) ]; then \
		$(INSTALL) -d -m 0755 $(DESTDIR)$(tokendir) && \
		$(INSTALL) -m 0644 $(TOKEN_PLUGIN) $(DESTDIR)$(tokendir)/; \
	else \
		echo "install: $(TOKEN_PLUGIN) is not built (no src/token-plugin yet): boot-time unlock is missing" >&2; \
	fi
	@# The units name the installed paths (a PREFIX or sbindir of this install, not of the build).
	$(Q)for u in $(UNITS); do \
		sed -e 's|@sbindir@|$(sbindir)|g' -e 's|@bindir@|$(bindir)|g' -e 's|@sysconfdir@|$(sysconfdir)|g' \
			-e 's|@docdir@|$(docdir)|g' $$u >$(DESTDIR)$(unitdir)/$$(basename $$u .in) && \
		chmod 0644 $(DESTDIR)$(unitdir)/$$(basename $$u .in) || exit 1; \
	done
	$(Q)$(INSTALL) -d -m 0755 $(DESTDIR)$(initramfsdir)/hooks $(DESTDIR)$(initramfsdir)/scripts/local-top
	$(Q)sed -e 's|@sbindir@|$(sbindir)|g' dist/initramfs-tools/hook.in >$(DESTDIR)$(initramfsdir)/hooks/vmcrypt && \
		chmod 0755 $(DESTDIR)$(initramfsdir)/hooks/vmcrypt
	$(Q)$(INSTALL) -m 0755 dist/initramfs-tools/local-top $(DESTDIR)$(initramfsdir)/scripts/local-top/vmcrypt
	$(Q)$(INSTALL) -d -m 0755 $(DESTDIR)$(dracutdir)
	$(Q)sed -e 's|@sbindir@|$(sbindir)|g' dist/dracut/module-setup.sh.in >$(DESTDIR)$(dracutdir)/module-setup.sh && \
		chmod 0755 $(DESTDIR)$(dracutdir)/module-setup.sh
	$(Q)$(INSTALL) -m 0755 dist/dracut/vmcrypt-unlock.sh $(DESTDIR)$(dracutdir)/vmcrypt-unlock.sh
	$(Q)$(INSTALL) -m 0644 dist/dracut/vmcrypt-unlock.service dist/dracut/99-vmcrypt-initrd-dhcp.network \
		$(DESTDIR)$(dracutdir)/
	$(Q)$(INSTALL) -m 0644 dist/agent.conf.example $(DESTDIR)$(sysconfdir)/vmcrypt/
	$(Q)$(INSTALL) -m 0644 $(DOCS) $(DESTDIR)$(docdir)/
	$(if $(DESTDIR),@true,@echo "Installed. Then: systemctl daemon-reload; systemctl enable remote-cryptsetup.target vmcrypt-agent.service")

# The .deb, from a staged `make install` (scripts/mkdeb: dpkg-deb and dpkg-shlibdeps, no
# debhelper). Build it from the plain build: a SANITIZE=1 package would depend on libasan.
DEB_ARCH := $(shell dpkg --print-architecture 2>/dev/null || echo amd64)
DEB := $(BUILD)/vmcrypt_$(VERSION)_$(DEB_ARCH).deb
deb: $(PROGS) $(INSTALL_PLUGIN)
	$(Q)rm -rf $(BUILD)/deb-root $(BUILD)/vmcrypt_*.deb
	$(Q)$(MAKE) --no-print-directory install DESTDIR=$(abspath $(BUILD)/deb-root) PREFIX=/usr \
		sysconfdir=/etc
	$(Q)scripts/mkdeb --root $(BUILD)/deb-root --version $(VERSION) --out $(DEB)

clean:
	rm -rf build build-asan build-gcc build-clang

# -type f: a staged install tree under $(BUILD) holds directories named *.d (dracut's modules.d).
-include $(shell find $(BUILD) -name '*.d' -type f 2>/dev/null)
