# sockit — one Makefile, no configure step.
#   make            build/libsockit.a, build/libsockit.so, build/sockit
#   make test       every test suite (unit, library dependencies, examples, install, version,
#                   the docs' C blocks, the command's static state, end-to-end)
#   make check      the same suites again under AddressSanitizer + UndefinedBehaviorSanitizer
#   make valgrind   the unit and end-to-end tests under Valgrind (memcheck)
#   make demo       start a server, talk to it, stop it
#   make install    PREFIX=/usr/local DESTDIR= : headers, both libraries, sockit.pc, the command
# The version lives in one place, the public header (SOCKIT_VERSION, which sk_version() and
# `sockit --version` return); the shared library's name and sockit.pc take it from there, and
# tests/version_check holds the man page to it.
VERSION := $(shell sed -n 's/^\#define SOCKIT_VERSION "\(.*\)"$$/\1/p' include/sockit/sockit.h)
ifeq ($(VERSION),)
  $(error cannot read the version: include/sockit/sockit.h has no line defining SOCKIT_VERSION)
endif
SOVERSION := 0
CC ?= cc
BUILD ?= build
PREFIX ?= /usr/local
LIBDIR ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
BINDIR ?= $(PREFIX)/bin
MANDIR ?= $(PREFIX)/share/man

WARN := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wvla \
        -Wpointer-arith -Wformat=2 -Wundef -Wcast-align -Wwrite-strings -Wno-unused-parameter
OPT ?= -O2 -g
SAN ?=
SANFLAGS := -fsanitize=address,undefined
ifeq ($(SAN),1)
  OPT := -O1 -g -fno-omit-frame-pointer $(SANFLAGS) -fno-sanitize-recover=all
  LDFLAGS += $(SANFLAGS)
endif
# The command, the examples and the docs use the public headers only; the library's own
# headers (src/lib) are for the library and its unit tests (see the pattern rules below).
CPPFLAGS += -D_GNU_SOURCE -Iinclude
# Each object's header dependencies, as the compiler saw them (build/**/*.d, included below).
DEPFLAGS = -MMD -MP
CFLAGS += -std=c11 $(WARN) $(OPT) -fPIC -fvisibility=hidden
LDLIBS += -lssl -lcrypto -lpthread

LIB_SRC := $(sort $(wildcard src/lib/*.c))
CLI_SRC := $(sort $(wildcard src/cli/*.c src/cli/services/*.c))
UNIT_SRC := $(sort $(wildcard tests/unit/*.c))
EXAMPLE_SRC := $(sort $(wildcard examples/*.c))

LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/%.o)
CLI_OBJ := $(CLI_SRC:%.c=$(BUILD)/%.o)
UNIT_OBJ := $(UNIT_SRC:%.c=$(BUILD)/%.o)
EXAMPLES := $(EXAMPLE_SRC:examples/%.c=$(BUILD)/examples/%)

.PHONY: all test check valgrind unit e2e demo install uninstall clean fuzz examples fuzz-smoke bench
all: $(BUILD)/libsockit.a $(BUILD)/libsockit.so $(BUILD)/sockit examples

$(BUILD)/src/lib/%.o $(BUILD)/tests/unit/%.o: CPPFLAGS += -Isrc/lib
$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	@$(CC) $(CPPFLAGS) $(DEPFLAGS) $(CFLAGS) -c -o $@ $<

$(BUILD)/libsockit.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/libsockit.so: $(LIB_OBJ)
	$(CC) -shared -Wl,-soname,libsockit.so.$(SOVERSION) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/sockit: $(CLI_OBJ) $(BUILD)/libsockit.a
	$(CC) $(LDFLAGS) -o $@ $(CLI_OBJ) $(BUILD)/libsockit.a $(LDLIBS)

# The unit tests count and fail allocations (tests/unit/alloc_fail.h): --wrap sends the calls the
# static library and the tests make to the wrappers; libc's and OpenSSL's own stay untouched.
UNIT_WRAP := -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=strdup,--wrap=free
$(BUILD)/unit_tests: $(UNIT_OBJ) $(BUILD)/libsockit.a
	$(CC) $(LDFLAGS) $(UNIT_WRAP) -o $@ $(UNIT_OBJ) $(BUILD)/libsockit.a $(LDLIBS)

examples: $(EXAMPLES)
$(BUILD)/examples/%: examples/%.c $(BUILD)/libsockit.a
	@mkdir -p $(dir $@)
	@echo "  LINK    $@"
	@$(CC) $(CPPFLAGS) $(DEPFLAGS) -MF $@.d -MT $@ $(CFLAGS) $(LDFLAGS) -o $@ $< \
	    $(BUILD)/libsockit.a $(LDLIBS)

-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(UNIT_OBJ:.o=.d) $(EXAMPLES:=.d)

unit: $(BUILD)/unit_tests
	$(BUILD)/unit_tests

test: all $(BUILD)/unit_tests
	BUILD=$(BUILD) tests/run_all

check:
	$(MAKE) BUILD=build/san SAN=1 test

# The suites under Valgrind's memcheck: the unit tests, then the end-to-end tests with every
# sockit they start under it (SOCKIT_VALGRIND=1). A memory error or a definite leak fails.
VALGRIND := valgrind -q --error-exitcode=97 --leak-check=full --errors-for-leak-kinds=definite
valgrind: all $(BUILD)/unit_tests
	SOCKIT_VALGRIND=1 $(VALGRIND) $(BUILD)/unit_tests
	SOCKIT_VALGRIND=1 BUILD=$(BUILD) python3 tests/e2e/run.py

demo: all
	BUILD=$(BUILD) tests/demo

# sockit beside its peers (minimal epoll, libuv, libevent, socat, ncat, iperf3), ~6 minutes;
# installs missing Debian packages when root. Writes bench/results/ (see bench/run).
bench: all
	BUILD=$(BUILD) bench/run

# libFuzzer targets (fuzz/fuzz_*.c), built with clang and ASan + UBSan into build/fuzz/.
# fuzz-smoke runs each for FUZZ_TIME seconds on a copy of its seed corpus (fuzz/corpus/NAME).
FUZZ_CC ?= clang
FUZZ_TIME ?= 30
FUZZ_FLAGS := -std=c11 -g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined \
              -fno-sanitize-recover=undefined -D_GNU_SOURCE -Iinclude -Isrc/lib
FUZZ_BIN := $(patsubst fuzz/%.c,build/fuzz/%,$(sort $(wildcard fuzz/fuzz_*.c)))
fuzz: $(FUZZ_BIN)
build/fuzz/%: fuzz/%.c $(LIB_SRC) $(wildcard fuzz/*.h include/sockit/*.h src/lib/*.h)
	@mkdir -p $(dir $@)
	@echo "  FUZZ    $@"
	@$(FUZZ_CC) $(FUZZ_FLAGS) -o $@ $< $(LIB_SRC) $(LDLIBS)
fuzz-smoke: fuzz
	fuzz/smoke $(FUZZ_TIME) $(FUZZ_BIN)

install: $(BUILD)/libsockit.a $(BUILD)/libsockit.so $(BUILD)/sockit
	install -d $(DESTDIR)$(INCLUDEDIR)/sockit $(DESTDIR)$(LIBDIR)/pkgconfig $(DESTDIR)$(BINDIR) \
	    $(DESTDIR)$(MANDIR)/man1
	install -m 644 include/sockit/*.h $(DESTDIR)$(INCLUDEDIR)/sockit/
	install -m 644 $(BUILD)/libsockit.a $(DESTDIR)$(LIBDIR)/
	install -m 755 $(BUILD)/libsockit.so $(DESTDIR)$(LIBDIR)/libsockit.so.$(VERSION)
	ln -sf libsockit.so.$(VERSION) $(DESTDIR)$(LIBDIR)/libsockit.so.$(SOVERSION)
	ln -sf libsockit.so.$(SOVERSION) $(DESTDIR)$(LIBDIR)/libsockit.so
	install -m 755 $(BUILD)/sockit $(DESTDIR)$(BINDIR)/
	install -m 644 docs/sockit.1 $(DESTDIR)$(MANDIR)/man1/
	sed -e 's|@PREFIX@|$(PREFIX)|; s|@LIBDIR@|$(LIBDIR)|; s|@INCLUDEDIR@|$(INCLUDEDIR)|' \
	    -e 's|@VERSION@|$(VERSION)|' sockit.pc.in > $(DESTDIR)$(LIBDIR)/pkgconfig/sockit.pc

uninstall:
	rm -rf $(DESTDIR)$(INCLUDEDIR)/sockit $(DESTDIR)$(BINDIR)/sockit $(DESTDIR)$(MANDIR)/man1/sockit.1
	rm -f $(DESTDIR)$(LIBDIR)/libsockit.* $(DESTDIR)$(LIBDIR)/pkgconfig/sockit.pc

clean:
	rm -rf build
