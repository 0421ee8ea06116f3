# vmcrypt: one obvious build. `make` builds everything; `make test` runs every test under
# ASan+UBSan; `make demo` runs the main job on a demo image; `make bench` runs the benchmarks.
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
#   src/shared/agent     basic, shared, volume, luks, vm, api, client
#   src/vmcrypt          basic, shared, volume, luks, vm, api, client, agent  (never the vault)
#   src/token-plugin     basic, shared, api, client            (libcryptsetup-token-vmcrypt.so)
#   src/vmcryptd         basic, shared, api, vault             (never a disk)
#   src/admin            basic, shared, api

CC ?= gcc
SANITIZE ?= 0
FUZZ ?= 0
VERSION := $(shell git describe --tags --always --dirty 2>/dev/null || echo 0.1)

ifeq ($(SANITIZE),1)
BUILD ?= build-asan
SAN_FLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
else
BUILD ?= build
SAN_FLAGS :=
endif

PKGS := libcryptsetup jansson blkid mount libcrypto libssl sqlite3 libpq libcurl libmicrohttpd
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

CFLAGS ?= -O2 -g
CFLAGS += -std=gnu17 -Wall -Wextra -Wno-missing-field-initializers -Wno-unused-parameter -Wshadow -Wformat=2 \
	-Wno-format-nonliteral -fstack-protector-strong -fPIE -MMD -MP $(SAN_FLAGS)
CPPFLAGS += -Isrc -D_GNU_SOURCE -D_FORTIFY_SOURCE=2 -DVMCRYPT_VERSION='"$(VERSION)"' $(PKG_CFLAGS)
LDFLAGS += -pie -Wl,-z,relro,-z,now $(SAN_FLAGS)
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

.PHONY: all deps test demo bench clean check-build
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

bench:
	$(Q)scripts/install-deps bench
	$(Q)$(MAKE) --no-print-directory all
	$(Q)for b in bench/*; do [ -x "$$b" ] && "$$b" --build $(BUILD) || exit 1; done

clean:
	rm -rf build build-asan build-gcc build-clang

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
