# tls-echod: a mutual-TLS echo daemon.
#
#   make run      install build deps if missing, make dev certificates, run the
#                 daemon in the foreground on 127.0.0.1:8443 (conf/tls-echod.conf)
#   make check    install build deps if missing, build, run the whole test suite
#   make          build build/tls-echod
#   make install  PREFIX=/usr/local DESTDIR= SYSCONFDIR=/etc
#   make update-mbedtls   refetch and rebuild the bundled mbedTLS 3.6 LTS
#
# Warnings and hardening follow ../shared/STYLE.md; WERROR=1 (CI) makes
# warnings errors.

VERSION := 0.1.0

PREFIX ?= /usr/local
SBINDIR ?= $(PREFIX)/sbin
SYSCONFDIR ?= /etc
DESTDIR ?=
BUILDDIR ?= build

OBJDIR := $(BUILDDIR)/obj
TESTDIR := $(BUILDDIR)/test

.DEFAULT_GOAL := all

include mk/mbedtls.mk

CC ?= cc
IS_CLANG := $(shell $(CC) --version 2>/dev/null | grep -qi clang && echo 1)

WARNFLAGS := -std=c11 -Wall -Wextra -Wpedantic -Wformat=2 -Wshadow \
	-Wstrict-prototypes -Wmissing-prototypes -Wpointer-arith -Wcast-qual \
	-Wwrite-strings -Wvla -Wundef -Wimplicit-fallthrough -Wconversion
ifneq ($(IS_CLANG),1)
WARNFLAGS += -Wlogical-op -Wduplicated-cond -Wduplicated-branches
endif
# CI sets CI=true: there, any warning fails the build.
ifeq ($(CI),true)
WERROR ?= 1
endif
ifeq ($(WERROR),1)
WARNFLAGS += -Werror
endif

OPTFLAGS ?= -O2 -g
HARDEN_CFLAGS := -D_FORTIFY_SOURCE=3 -fstack-protector-strong \
	-fstack-clash-protection -fcf-protection -fPIE
HARDEN_LDFLAGS := -pie -Wl,-z,relro,-z,now -Wl,-z,noexecstack

# SAN=1: AddressSanitizer + UBSan build (use with its own BUILDDIR).
ifeq ($(SAN),1)
OPTFLAGS := -O1 -g -fno-omit-frame-pointer
HARDEN_CFLAGS := -fPIE
SANFLAGS := -fsanitize=address,undefined -fno-sanitize-recover=undefined
endif

DEPS_CFLAGS = $(shell pkg-config --cflags libconfig libsystemd)
DEPS_LIBS = $(shell pkg-config --libs libconfig libsystemd) -lm

ALL_CFLAGS = $(WARNFLAGS) $(OPTFLAGS) $(HARDEN_CFLAGS) $(SANFLAGS) \
	-D_GNU_SOURCE $(MBEDTLS_CFLAGS) $(DEPS_CFLAGS) \
	'-DTLS_ECHOD_VERSION="$(VERSION)"' \
	'-DTLS_ECHOD_MBEDTLS_ORIGIN="$(MBEDTLS_ORIGIN)"' $(CFLAGS)
ALL_LDFLAGS = $(HARDEN_LDFLAGS) $(SANFLAGS) $(LDFLAGS)

SRCS := $(wildcard src/*.c)
OBJS := $(patsubst src/%.c,$(OBJDIR)/%.o,$(SRCS))
LIB_OBJS := $(filter-out $(OBJDIR)/main.o,$(OBJS))
BIN := $(BUILDDIR)/tls-echod

.PHONY: all run check check-build check-run certs deps install uninstall clean

all: $(BIN)

# Objects depend on the flags too: a CI=true (-Werror) or SAN=1 build after a
# plain one recompiles instead of reusing objects built with other flags.
FLAGS_STAMP := $(OBJDIR)/.cflags
ifneq ($(file < $(FLAGS_STAMP)),$(ALL_CFLAGS))
$(shell mkdir -p $(OBJDIR))$(file > $(FLAGS_STAMP),$(ALL_CFLAGS))
endif

$(OBJDIR)/%.o: src/%.c $(FLAGS_STAMP) | $(MBEDTLS_DEP)
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -MMD -MP -c -o $@ $<

$(BIN): $(OBJS) $(MBEDTLS_LDLIBS)
	$(CC) $(ALL_LDFLAGS) -o $@ $(OBJS) $(MBEDTLS_LDLIBS) $(DEPS_LIBS)

-include $(OBJS:.o=.d)

# --- the two commands ------------------------------------------------------

deps:
	@scripts/install-deps.sh

certs:
	@scripts/gen-certs.sh

# Recursive so that pkg-config and the mbedTLS choice are evaluated after
# the dependencies exist.
run: deps
	@$(MAKE) --no-print-directory $(BIN)
	@scripts/gen-certs.sh
	@echo "tls-echod: serving mTLS echo on 127.0.0.1:8443 (Ctrl-C stops)."
	@echo "  try: openssl s_client -connect 127.0.0.1:8443 -cert certs/client.crt -key certs/client.key -CAfile certs/ca.crt -quiet"
	exec $(BIN) -c conf/tls-echod.conf

check: deps
	@$(MAKE) --no-print-directory check-run

# --- tests -----------------------------------------------------------------

TEST_LIBS = $(shell pkg-config --libs check)
TEST_CFLAGS = $(filter-out -Wconversion -Wmissing-prototypes,$(ALL_CFLAGS)) \
	$(shell pkg-config --cflags check) -Isrc

TEST_BINS := $(TESTDIR)/check_config $(TESTDIR)/check_daemon

$(TESTDIR)/check_config: test/check_config.c $(OBJDIR)/config.o
	@mkdir -p $(@D)
	$(CC) $(TEST_CFLAGS) $(ALL_LDFLAGS) -o $@ $^ $(TEST_LIBS) $(DEPS_LIBS)

$(TESTDIR)/check_daemon: test/check_daemon.c test/harness.c test/harness.h
	@mkdir -p $(@D)
	$(CC) $(TEST_CFLAGS) $(ALL_LDFLAGS) -o $@ test/check_daemon.c \
		test/harness.c $(TEST_LIBS) $(shell pkg-config --libs openssl) -lpthread

check-build: $(BIN) $(TEST_BINS)

check-run: check-build
	@rm -rf $(TESTDIR)/pki $(TESTDIR)/tmp
	@mkdir -p $(TESTDIR)/tmp
	@test/gen-test-pki.sh $(TESTDIR)/pki
	@TLS_ECHOD_BIN=$(abspath $(BIN)) TEST_PKI=$(abspath $(TESTDIR)/pki) \
	  TEST_TMPDIR=$(abspath $(TESTDIR)/tmp) \
	  test/run-tests.sh $(TEST_BINS)

# --- install ---------------------------------------------------------------

install: $(BIN)
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(SYSCONFDIR)/tls-echod
	install -m 0755 $(BIN) $(DESTDIR)$(SBINDIR)/tls-echod
	@if [ -e $(DESTDIR)$(SYSCONFDIR)/tls-echod/tls-echod.conf ]; then \
	  echo "keeping existing $(DESTDIR)$(SYSCONFDIR)/tls-echod/tls-echod.conf"; \
	else \
	  sed 's|"\.\./certs/|"$(SYSCONFDIR)/tls-echod/|' conf/tls-echod.conf \
	    > $(DESTDIR)$(SYSCONFDIR)/tls-echod/tls-echod.conf && \
	  chmod 0644 $(DESTDIR)$(SYSCONFDIR)/tls-echod/tls-echod.conf; \
	fi

uninstall:
	rm -f $(DESTDIR)$(SBINDIR)/tls-echod
	@echo "left $(DESTDIR)$(SYSCONFDIR)/tls-echod/ in place (configuration and keys)"

clean:
	rm -rf $(OBJDIR) $(TESTDIR) $(BIN)
