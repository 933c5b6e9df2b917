# tls-echod: a mutual-TLS echo daemon.
#
#   make run      install build deps if missing, make dev certificates, run the
#                 daemon in the foreground on 127.0.0.1:8443 (conf/tls-echod.conf)
#   make check    install build deps if missing, build, run every stage: the
#                 test suite, again under ASan+UBSan, the daemon under
#                 valgrind, lint (cppcheck, shellcheck), a fuzz smoke run
#                 (see "make check: the stages"; .ci/run is make check)
#   make check-quick  the test suite alone (normal build)
#   make lint     cppcheck over src/, shellcheck over the scripts
#   make fuzz     long fuzz runs (FUZZ_SECONDS each; see fuzz/fuzz.sh)
#   make soak     long hostile-peer runs (10,000 idle connections, 60 s soak)
#   make          build build/tls-echod and the client build/tls-echo
#   make install  PREFIX=/usr/local DESTDIR= SYSCONFDIR=/etc (BINDIR, SBINDIR,
#                 MANDIR, SYSTEMDUNITDIR, SYSUSERSDIR); make uninstall
#   make update-mbedtls   refetch and rebuild the bundled mbedTLS 3.6 LTS
#   make bench    install stunnel4 and haproxy if missing, build bench/, run
#                 bench/run.sh (BENCH_QUICK=1: a smoke run of about 75 s)
#
# Warnings and hardening follow docs/STYLE.md; WERROR=1 (CI) makes
# warnings errors.  How the code is organised: docs/DESIGN.md; the tests and
# stages: docs/TESTING.md.

VERSION := 0.1.0

PREFIX ?= /usr/local
SBINDIR ?= $(PREFIX)/sbin
BINDIR ?= $(PREFIX)/bin
SYSCONFDIR ?= /etc
SYSTEMDUNITDIR ?= $(PREFIX)/lib/systemd/system
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d
MANDIR ?= $(PREFIX)/share/man
DESTDIR ?=
BUILDDIR ?= build

OBJDIR := $(BUILDDIR)/obj
TESTDIR := $(BUILDDIR)/test
BENCHDIR := $(BUILDDIR)/bench

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

# (stderr: a missing pkg-config or module is reported once, below)
# libseccomp: the workers' system call filter (src/sandbox.c).
DEPS_CFLAGS = $(shell pkg-config --cflags libconfig libsystemd libseccomp 2>/dev/null)
DEPS_LIBS = $(shell pkg-config --libs libconfig libsystemd libseccomp 2>/dev/null) -lm

# Without the build dependencies, say in one line what to run instead of
# failing on a missing header after building mbedTLS.  Goals that install
# them first (deps, run, check, check-quick, bench) or need none skip this.
DEPS_FREE_GOALS := deps run check check-quick bench bench-deps clean uninstall \
	update-mbedtls certs
ifeq ($(filter $(DEPS_FREE_GOALS),$(MAKECMDGOALS)),)
DEPS_MISSING := $(shell command -v pkg-config >/dev/null 2>&1 || echo pkg-config; \
	for m in libconfig libsystemd libseccomp; do \
	  pkg-config --exists $$m 2>/dev/null || echo $$m; done)
ifneq ($(DEPS_MISSING),)
$(error missing build dependencies ($(strip $(DEPS_MISSING))): run `make deps` \
  (scripts/install-deps.sh), then make again)
endif
endif

ALL_CFLAGS = $(WARNFLAGS) $(OPTFLAGS) $(HARDEN_CFLAGS) $(SANFLAGS) \
	-D_GNU_SOURCE $(MBEDTLS_CFLAGS) $(DEPS_CFLAGS) \
	'-DTLS_ECHOD_VERSION="$(VERSION)"' \
	'-DTLS_ECHOD_MBEDTLS_ORIGIN="$(MBEDTLS_ORIGIN)"' $(CFLAGS)
ALL_LDFLAGS = $(HARDEN_LDFLAGS) $(SANFLAGS) $(LDFLAGS)

SRCS := $(wildcard src/*.c)
OBJS := $(patsubst src/%.c,$(OBJDIR)/%.o,$(SRCS))
LIB_OBJS := $(filter-out $(OBJDIR)/main.o,$(OBJS))
BIN := $(BUILDDIR)/tls-echod

# The client tool: its own directory, so the daemon's src/*.c wildcard does
# not link it; it uses the leaf module net and nothing else of the daemon.
CLIENT_SRCS := $(wildcard src/client/*.c)
CLIENT_OBJS := $(patsubst src/%.c,$(OBJDIR)/%.o,$(CLIENT_SRCS)) $(OBJDIR)/net.o \
	$(OBJDIR)/tlsclock.o
CLIENT_BIN := $(BUILDDIR)/tls-echo

.PHONY: all run check check-quick check-build check-run certs deps install uninstall \
	clean

all: $(BIN) $(CLIENT_BIN)

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

$(CLIENT_BIN): $(CLIENT_OBJS) $(MBEDTLS_LDLIBS)
	$(CC) $(ALL_LDFLAGS) -o $@ $(CLIENT_OBJS) $(MBEDTLS_LDLIBS)

-include $(OBJS:.o=.d) $(CLIENT_OBJS:.o=.d)

# --- the two commands ------------------------------------------------------

deps:
	@scripts/install-deps.sh

certs:
	@scripts/gen-certs.sh

# Recursive so that pkg-config and the mbedTLS choice are evaluated after
# the dependencies exist.
run: deps
	@$(MAKE) --no-print-directory $(BIN) $(CLIENT_BIN)
	@scripts/gen-certs.sh
	@echo "tls-echod: serving mTLS echo on 127.0.0.1:8443 (Ctrl-C stops)."
	@echo "  try: openssl s_client -connect 127.0.0.1:8443 -cert certs/client.crt -key certs/client.key -CAfile certs/ca.crt -quiet"
	@echo "   or: $(CLIENT_BIN) --cert certs/client.crt --key certs/client.key --ca certs/ca.crt --info -m hello 127.0.0.1:8443"
	exec $(BIN) -c conf/tls-echod.conf

# Every stage (see "make check: the stages" below); check-quick is the
# normal suite alone, for a quick run while working.
check: deps
	@MAKE="$(MAKE)" test/check-stages.sh $(CHECK_STAGES)

check-quick: deps
	@$(MAKE) --no-print-directory check-run

# --- tests -----------------------------------------------------------------

TEST_LIBS = $(shell pkg-config --libs check)
TEST_CFLAGS = $(filter-out -Wconversion -Wmissing-prototypes,$(ALL_CFLAGS)) \
	$(shell pkg-config --cflags check) -Isrc

TEST_BINS := $(TESTDIR)/check_config $(TESTDIR)/check_proxy \
	$(TESTDIR)/check_daemon $(TESTDIR)/check_relay $(TESTDIR)/check_lifecycle \
	$(TESTDIR)/check_resume

# check_sandbox: the workers' seccomp filter.  It needs a daemon that can be
# told to break the rules: $(HOOKS_BIN) is the daemon with the test-only
# trigger of src/sandbox.c (-DTLS_ECHOD_TEST_HOOKS: sigqueue(SIGUSR1, n)
# makes a worker try forbidden call n); only worker.c and sandbox.c differ.
# Never installed; the release binary has no such code.
HOOKS_BIN := $(TESTDIR)/tls-echod-hooks
HOOKS_OBJDIR := $(OBJDIR)/hooks
HOOKS_OBJS := $(filter-out $(OBJDIR)/worker.o $(OBJDIR)/sandbox.o,$(OBJS)) \
	$(HOOKS_OBJDIR)/worker.o $(HOOKS_OBJDIR)/sandbox.o
TEST_BINS += $(TESTDIR)/check_sandbox

$(HOOKS_OBJDIR)/%.o: src/%.c $(FLAGS_STAMP) | $(MBEDTLS_DEP)
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -DTLS_ECHOD_TEST_HOOKS -MMD -MP -c -o $@ $<

$(HOOKS_BIN): $(HOOKS_OBJS) $(MBEDTLS_LDLIBS)
	@mkdir -p $(@D)
	$(CC) $(ALL_LDFLAGS) -o $@ $(HOOKS_OBJS) $(MBEDTLS_LDLIBS) $(DEPS_LIBS)

$(TESTDIR)/check_sandbox: test/check_sandbox.c test/harness.c test/harness.h
	@mkdir -p $(@D)
	$(CC) $(TEST_CFLAGS) $(ALL_LDFLAGS) -o $@ test/check_sandbox.c \
		test/harness.c $(TEST_LIBS) $(shell pkg-config --libs openssl) -lpthread

-include $(HOOKS_OBJDIR)/worker.d $(HOOKS_OBJDIR)/sandbox.d

# check_client: the tls-echo client tool against the real daemon.
TEST_BINS += $(TESTDIR)/check_client

$(TESTDIR)/check_client: test/check_client.c test/harness.c test/harness.h
	@mkdir -p $(@D)
	$(CC) $(TEST_CFLAGS) $(ALL_LDFLAGS) -o $@ test/check_client.c \
		test/harness.c $(TEST_LIBS) $(shell pkg-config --libs openssl) -lpthread

# check_metrics: /metrics, /healthz and /readyz of the real daemon: counters
# against the traffic the test made, monotonic across reloads and killed
# workers, readiness transitions, HTTP garbage, promtool.
TEST_BINS += $(TESTDIR)/check_metrics

$(TESTDIR)/check_metrics: test/check_metrics.c test/harness.c test/harness.h
	@mkdir -p $(@D)
	$(CC) $(TEST_CFLAGS) $(ALL_LDFLAGS) -o $@ test/check_metrics.c \
		test/harness.c $(TEST_LIBS) $(shell pkg-config --libs openssl) -lpthread

$(TESTDIR)/check_resume: test/check_resume.c test/harness.c test/harness.h
	@mkdir -p $(@D)
	$(CC) $(TEST_CFLAGS) $(ALL_LDFLAGS) -o $@ test/check_resume.c \
		test/harness.c $(TEST_LIBS) $(shell pkg-config --libs openssl) -lpthread

# check_watch: certificates rotated on disk are served without a signal.
TEST_BINS += $(TESTDIR)/check_watch

$(TESTDIR)/check_watch: test/check_watch.c test/harness.c test/harness.h
	@mkdir -p $(@D)
	$(CC) $(TEST_CFLAGS) $(ALL_LDFLAGS) -o $@ test/check_watch.c \
		test/harness.c $(TEST_LIBS) $(shell pkg-config --libs openssl) -lpthread

# check_authn: an attacker's suite for session-ticket authentication: a
# ticket admits exactly what a full handshake would, or does not resume.
TEST_BINS += $(TESTDIR)/check_authn

$(TESTDIR)/check_authn: test/check_authn.c test/harness.c test/harness.h
	@mkdir -p $(@D)
	$(CC) $(TEST_CFLAGS) $(ALL_LDFLAGS) -o $@ test/check_authn.c \
		test/harness.c $(TEST_LIBS) $(shell pkg-config --libs openssl) -lpthread

$(TESTDIR)/check_relay: test/check_relay.c test/harness.c test/harness.h
	@mkdir -p $(@D)
	$(CC) $(TEST_CFLAGS) $(ALL_LDFLAGS) -o $@ test/check_relay.c \
		test/harness.c $(TEST_LIBS) $(shell pkg-config --libs openssl) -lpthread

$(TESTDIR)/check_lifecycle: test/check_lifecycle.c test/harness.c test/harness.h
	@mkdir -p $(@D)
	$(CC) $(TEST_CFLAGS) $(ALL_LDFLAGS) -o $@ test/check_lifecycle.c \
		test/harness.c $(TEST_LIBS) $(shell pkg-config --libs openssl) -lpthread

# check_units: the worker's deadline heap, the shared census, the metrics
# leaves (HTTP reader, stats regions, the master's monotonic totals and
# exposition).
TEST_BINS += $(TESTDIR)/check_units

$(TESTDIR)/check_units: test/check_units.c $(OBJDIR)/timerq.o $(OBJDIR)/census.o \
		$(OBJDIR)/http.o $(OBJDIR)/stats.o $(OBJDIR)/metrics.o
	@mkdir -p $(@D)
	$(CC) $(TEST_CFLAGS) $(ALL_LDFLAGS) -o $@ $^ $(TEST_LIBS)

# check_lograte: which refusals are logged one by one, and the counts of the
# rest (src/lograte.c).
TEST_BINS += $(TESTDIR)/check_lograte

$(TESTDIR)/check_lograte: test/check_lograte.c $(OBJDIR)/lograte.o
	@mkdir -p $(@D)
	$(CC) $(TEST_CFLAGS) $(ALL_LDFLAGS) -o $@ $^ $(TEST_LIBS)

$(TESTDIR)/check_proxy: test/check_proxy.c $(OBJDIR)/proxy.o
	@mkdir -p $(@D)
	$(CC) $(TEST_CFLAGS) $(ALL_LDFLAGS) -o $@ $^ $(TEST_LIBS)

$(TESTDIR)/check_config: test/check_config.c $(OBJDIR)/config.o
	@mkdir -p $(@D)
	$(CC) $(TEST_CFLAGS) $(ALL_LDFLAGS) -o $@ $^ $(TEST_LIBS) $(DEPS_LIBS)

$(TESTDIR)/check_daemon: test/check_daemon.c test/harness.c test/harness.h
	@mkdir -p $(@D)
	$(CC) $(TEST_CFLAGS) $(ALL_LDFLAGS) -o $@ test/check_daemon.c \
		test/harness.c $(TEST_LIBS) $(shell pkg-config --libs openssl) -lpthread

# --- hostile peers and load (check_hostile) ---
# Short forms run in check-run; `make soak` runs the long ones: 10,000 idle
# mTLS connections on one worker, a bigger slowloris, a 60 s mixed-traffic
# soak with a reload every 5 s (each tunable, see test/check_hostile.c).
TEST_BINS += $(TESTDIR)/check_hostile

$(TESTDIR)/check_hostile: test/check_hostile.c test/harness.c test/harness.h
	@mkdir -p $(@D)
	$(CC) $(TEST_CFLAGS) $(ALL_LDFLAGS) -o $@ test/check_hostile.c \
		test/harness.c $(TEST_LIBS) $(shell pkg-config --libs openssl) -lpthread

HOSTILE_IDLE_CONNS ?= 10000
HOSTILE_SLOW_CONNS ?= 2000
SOAK_SECONDS ?= 60
SOAK_RELOAD_SECONDS ?= 5

.PHONY: soak
soak: $(BIN) $(TESTDIR)/check_hostile
	@rm -rf $(TESTDIR)/soak
	@mkdir -p $(TESTDIR)/soak/tmp
	@test/gen-test-pki.sh $(TESTDIR)/soak/pki
	@BUILDDIR=$(BUILDDIR) TEST_SANITIZED=$(SAN) TLS_ECHOD_BIN=$(abspath $(BIN)) \
	  TEST_PKI=$(abspath $(TESTDIR)/soak/pki) \
	  TEST_TMPDIR=$(abspath $(TESTDIR)/soak/tmp) \
	  HOSTILE_IDLE_CONNS=$(HOSTILE_IDLE_CONNS) \
	  HOSTILE_SLOW_CONNS=$(HOSTILE_SLOW_CONNS) \
	  SOAK_SECONDS=$(SOAK_SECONDS) SOAK_RELOAD_SECONDS=$(SOAK_RELOAD_SECONDS) \
	  CK_DEFAULT_TIMEOUT=600 \
	  test/run-tests.sh $(TESTDIR)/check_hostile
# --- end hostile ---

# --- identity tests (check_identity) ---
# check_identity_unit: src/identity.c and tlssess_crt_identity() on the test
# PKI; check_identity: the real daemon (allow-lists, CRLs, TLS policy knobs,
# expiry signals, whoami).  Fuzz drivers in fuzz/ (libFuzzer, clang):
#   make fuzz-smoke               build and run each for FUZZ_SMOKE_SECONDS
#                                 (part of check-run when clang has libFuzzer)
#   make fuzz FUZZ_SECONDS=600    the long run; the corpus grows in
#                                 $(BUILDDIR)/fuzz/corpus, crashes land in
#                                 fuzz/crashes/
TEST_BINS += $(TESTDIR)/check_identity_unit $(TESTDIR)/check_identity

$(TESTDIR)/check_identity: test/check_identity.c test/harness.c test/harness.h
	@mkdir -p $(@D)
	$(CC) $(TEST_CFLAGS) $(ALL_LDFLAGS) -o $@ test/check_identity.c \
		test/harness.c $(TEST_LIBS) $(shell pkg-config --libs openssl) -lpthread

IDENTITY_UNIT_OBJS := $(OBJDIR)/identity.o $(OBJDIR)/tlssess.o $(OBJDIR)/tlsctx.o \
	$(OBJDIR)/tlsclock.o $(OBJDIR)/json.o

$(TESTDIR)/check_identity_unit: test/check_identity_unit.c $(IDENTITY_UNIT_OBJS) \
		$(MBEDTLS_LDLIBS)
	@mkdir -p $(@D)
	$(CC) $(TEST_CFLAGS) $(ALL_LDFLAGS) -o $@ test/check_identity_unit.c \
		$(IDENTITY_UNIT_OBJS) $(MBEDTLS_LDLIBS) $(TEST_LIBS) $(DEPS_LIBS)

FUZZ_CC ?= clang
# fuzz/fuzz.sh probes and runs with the same compiler (also under check-run).
export FUZZ_CC
FUZZ_SECONDS ?= 600
FUZZ_SMOKE_SECONDS ?= 10
FUZZDIR := $(BUILDDIR)/fuzz
FUZZ_TARGETS := fuzz_allow fuzz_san fuzz_config fuzz_proxy fuzz_http
export FUZZ_TARGETS
FUZZ_BINS := $(addprefix $(FUZZDIR)/,$(FUZZ_TARGETS))
# The drivers and our sources are instrumented; the bundled mbedTLS is not.
FUZZ_CFLAGS = -std=c11 -D_GNU_SOURCE -g -O1 -fno-omit-frame-pointer \
	-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
	-Wall -Wextra -Isrc $(MBEDTLS_CFLAGS)

$(FUZZDIR)/fuzz_allow: fuzz/fuzz_allow.c src/identity.c src/identity.h
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ fuzz/fuzz_allow.c src/identity.c

$(FUZZDIR)/fuzz_san: fuzz/fuzz_san.c src/identity.c src/tlssess.c src/tlsctx.c src/tlsclock.c \
		src/json.c \
		src/identity.h src/tlssess.h src/tlsctx.h src/tlsctx_int.h \
		$(MBEDTLS_LDLIBS) | $(MBEDTLS_DEP)
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ fuzz/fuzz_san.c src/identity.c \
		src/tlssess.c src/tlsctx.c src/tlsclock.c src/json.c $(MBEDTLS_LDLIBS)

$(FUZZDIR)/fuzz_config: fuzz/fuzz_config.c src/config.c src/config.h
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(DEPS_CFLAGS) -o $@ fuzz/fuzz_config.c \
		src/config.c $(DEPS_LIBS)

$(FUZZDIR)/fuzz_proxy: fuzz/fuzz_proxy.c src/proxy.c src/proxy.h
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ fuzz/fuzz_proxy.c src/proxy.c

# The metrics endpoint's request reader: what any local client may send.
$(FUZZDIR)/fuzz_http: fuzz/fuzz_http.c src/http.c src/http.h
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ fuzz/fuzz_http.c src/http.c

.PHONY: fuzz fuzz-build fuzz-build-maybe fuzz-smoke
fuzz-build: $(FUZZ_BINS)

# Builds the drivers only if $(FUZZ_CC) links libFuzzer (fuzz/fuzz.sh --probe
# says why not otherwise).
fuzz-build-maybe:
	@if FUZZ_CC=$(FUZZ_CC) fuzz/fuzz.sh --probe; then \
	  $(MAKE) -q --no-print-directory fuzz-build || \
	  $(MAKE) --no-print-directory fuzz-build; fi

# Each driver runs on a scratch copy of fuzz/corpus/NAME (the committed
# seeds never grow); crashing inputs are saved in fuzz/crashes/.
fuzz-smoke: fuzz-build-maybe
	@FUZZ_CC=$(FUZZ_CC) BUILDDIR=$(BUILDDIR) fuzz/fuzz.sh \
	  $(FUZZ_SMOKE_SECONDS) || [ $$? -eq 77 ]

fuzz: fuzz-build
	@FUZZ_CC=$(FUZZ_CC) BUILDDIR=$(BUILDDIR) FUZZ_KEEP_CORPUS=1 \
	  fuzz/fuzz.sh $(FUZZ_SECONDS)

# fuzz-smoke is a stage of make check; without libFuzzer it says why and
# counts as skipped.
# --- end identity tests (check_identity) ---

# check_limits: max_connections_per_identity across workers,
# worker_connections, tls.record_size on the wire, STATUS= connection
# counts and the deadline heap's timers, against the real daemon.
TEST_BINS += $(TESTDIR)/check_limits

$(TESTDIR)/check_limits: test/check_limits.c test/harness.c test/harness.h
	@mkdir -p $(@D)
	$(CC) $(TEST_CFLAGS) $(ALL_LDFLAGS) -o $@ test/check_limits.c \
		test/harness.c $(TEST_LIBS) $(shell pkg-config --libs openssl) -lpthread

# The systemd suite boots a container (root only; it skips itself
# otherwise); NO_SYSTEMD=1 leaves it out.
SYSTEMD_SUITE := $(if $(NO_SYSTEMD),,test/check-systemd.sh)

check-build: $(BIN) $(CLIENT_BIN) $(TEST_BINS) $(HOOKS_BIN) \
	$(BENCHDIR)/loadgen $(BENCHDIR)/echo-backend

# --- make check: the stages ------------------------------------------------
#
# make check runs test/check-stages.sh over CHECK_STAGES: each stage is a
# target of its own, ends with "N passed, N failed", and runs even when an
# earlier one failed; the end is a table of results and times, and the sum.
#   check-run       the normal build: unit and integration suites, man pages,
#                   the systemd suite (NO_SYSTEMD=1 leaves it out).  With
#                   SAN=1 (check-asan) the unit and integration suites only,
#                   then test/check-san-logs.sh.
#   check-asan      the same suites built with SAN=1 (ASan + UBSan) in
#                   $(BUILDDIR)/asan, sharing the bundled mbedTLS build; any
#                   sanitizer report, from a test or from a daemon it started,
#                   fails the stage (ASAN/UBSAN_OPTIONS log_path: reports are
#                   files, test/check-san-logs.sh looks for them)
#   check-valgrind  VALGRIND_SUITES with every daemon process under valgrind
#                   (test/harness.c puts TLS_ECHOD_WRAP before the daemon's
#                   command line); test/check-vg-logs.sh fails on errors,
#                   definite or indirect leaks, and fds a master left open
#   lint            cppcheck over src/, shellcheck over the shell scripts
#   fuzz-smoke      each fuzz driver for FUZZ_SMOKE_SECONDS
CHECK_STAGES := check-run check-asan check-valgrind lint fuzz-smoke
.PHONY: check-asan check-valgrind lint

# Runs the suites in $(CHECK_SUITES) on a fresh PKI in $(TESTDIR).
SAN_LOG_DIR = $(abspath $(TESTDIR)/san-logs)
ifeq ($(SAN),1)
CHECK_SUITES ?= $(TEST_BINS) test/check-san-logs.sh
# Reports go to files (the harness reads a daemon's stderr, and a report
# there would be lost); exitcode makes a leak fail the process as well.
CHECK_ENV = SAN_LOG_DIR=$(SAN_LOG_DIR) \
	ASAN_OPTIONS=log_path=$(SAN_LOG_DIR)/san:detect_leaks=1:exitcode=86:abort_on_error=0 \
	UBSAN_OPTIONS=log_path=$(SAN_LOG_DIR)/san:print_stacktrace=1:halt_on_error=1
else
CHECK_SUITES ?= $(TEST_BINS) test/check-man.sh test/check-readme.sh \
	test/check-bench.sh \
	test/check-gen-certs.sh test/check-install.sh test/check-walkthrough.sh \
	test/check-prometheus.sh $(SYSTEMD_SUITE)
CHECK_ENV =
endif

# SAN_LOG_DIR is world-writable (sticky, like /tmp): workers started as root
# drop to an unprivileged user and write their reports (an ASan or UBSan
# error while serving) there as that user; a directory they cannot write
# would lose them, with a word on the daemon's stderr at most.
check-run: check-build
	@rm -rf $(TESTDIR)/pki $(TESTDIR)/tmp $(SAN_LOG_DIR)
	@mkdir -p $(TESTDIR)/tmp $(SAN_LOG_DIR)
	@chmod 1777 $(SAN_LOG_DIR)
	@test/gen-test-pki.sh $(TESTDIR)/pki
	@$(CHECK_ENV) BUILDDIR=$(BUILDDIR) TEST_SANITIZED=$(SAN) \
	  TLS_ECHOD_BIN=$(abspath $(BIN)) \
	  TLS_ECHOD_HOOKS_BIN=$(abspath $(HOOKS_BIN)) \
	  TEST_PKI=$(abspath $(TESTDIR)/pki) \
	  TEST_TMPDIR=$(abspath $(TESTDIR)/tmp) \
	  test/run-tests.sh $(CHECK_SUITES)

# The sanitizer build lives in its own folder; mbedTLS (not instrumented)
# is shared with the normal build.
check-asan:
	@$(MAKE) --no-print-directory SAN=1 BUILDDIR=$(BUILDDIR)/asan \
	  MBEDTLS_BUILDDIR=$(MBEDTLS_BUILDDIR) check-run

# Valgrind runs the normal build's daemon.  Errors and definite or indirect
# leaks make valgrind exit 99 (the tests see a failed daemon) and are found
# again in the logs; test/valgrind.supp holds the suppressions, each with
# its reason.  Under TEST_VALGRIND=1 the few tests that measure speed or
# CPU time skip themselves (h_skip_under_valgrind); TEST_SANITIZED=1 turns
# off RSS checks, as under ASan.  TLS_ECHOD_SANDBOX=0: workers run without
# their seccomp filter here, which would kill valgrind's own system calls
# (every other stage, ASan's included, runs with it).
VALGRIND_SUITES ?= check_daemon check_relay check_lifecycle check_limits check_authn check_metrics
VG_LOG_DIR = $(abspath $(TESTDIR)/vg-logs)
# --vgdb=no: no gdbserver FIFOs in /tmp, which a worker (started as root,
# running as an unprivileged user) could not remove at exit.  Each log file
# is opened in the child at fork, before the worker drops privileges.
VALGRIND = valgrind --leak-check=full \
	--errors-for-leak-kinds=definite,indirect --track-fds=yes \
	--error-exitcode=99 --trace-children=yes --vgdb=no \
	--suppressions=$(abspath test/valgrind.supp) \
	--log-file=$(VG_LOG_DIR)/vg.%p

check-valgrind: $(BIN) $(addprefix $(TESTDIR)/,$(VALGRIND_SUITES))
	@rm -rf $(TESTDIR)/vg-pki $(TESTDIR)/vg-tmp $(VG_LOG_DIR)
	@mkdir -p $(TESTDIR)/vg-tmp $(VG_LOG_DIR)
	@test/gen-test-pki.sh $(TESTDIR)/vg-pki
	@VG_LOG_DIR=$(VG_LOG_DIR) TLS_ECHOD_WRAP="$(VALGRIND)" TEST_VALGRIND=1 \
	  TLS_ECHOD_SANDBOX=0 \
	  TEST_SANITIZED=1 BUILDDIR=$(BUILDDIR) TLS_ECHOD_BIN=$(abspath $(BIN)) \
	  TEST_PKI=$(abspath $(TESTDIR)/vg-pki) \
	  TEST_TMPDIR=$(abspath $(TESTDIR)/vg-tmp) \
	  test/run-tests.sh $(addprefix $(TESTDIR)/,$(VALGRIND_SUITES)) \
	  test/check-vg-logs.sh

# cppcheck sees the flags the compiler does (include paths, _GNU_SOURCE,
# the mbedTLS user config).  Suppressions, each with its reason: inline
# ("cppcheck-suppress") next to what they silence, or here:
#   variableScope  our style declares a function's variables at its top
#                  (docs/STYLE.md; spiped and OpenBSD do the same);
#                  cppcheck would move them into inner blocks.
#   constParameterPointer in src/census.c  the parts a census function
#                  writes share *c's shared-memory mapping (part()):
#                  a const census would say they are not written.
#   constParameterCallback  a callback's parameters are the library's
#                  prototype (mbedtls_ssl_conf_verify), not ours to change.
#   normalCheckLevelMaxBranches  cppcheck 2.11 and later (Debian 13) say
#                  they limited branch analysis: a note, not a finding
#                  (2.10, Debian 12, has no --check-level to raise it).
# CHAR_BIT: cppcheck does not read <limits.h>, and mbedTLS's
# check_config.h stops with #error without it.
CPPCHECK_FLAGS = --enable=warning,style,performance,portability \
	--error-exitcode=1 --inline-suppr --quiet --std=c11 -D_GNU_SOURCE \
	-DCHAR_BIT=8 -Isrc $(MBEDTLS_CFLAGS) $(DEPS_CFLAGS) \
	--suppress=variableScope --suppress=constParameterPointer:src/census.c \
	--suppress=constParameterCallback --suppress=normalCheckLevelMaxBranches
SHELL_SCRIPTS = $(wildcard scripts/*.sh test/*.sh fuzz/*.sh) .ci/run

# cppcheck does not search the system's include folder (all of libc: slow
# and noisy), where a system mbedTLS has its headers: it gets a folder of
# links to those headers alone (what it finds in them is mbedTLS's, not
# ours).  Debian's build turns on MBEDTLS_DEPRECATED_WARNING, which
# check_config.h allows only under GCC or Clang, and cppcheck defines
# neither: it is told it is GCC.
ifeq ($(MBEDTLS_KIND),system)
LINT_INCDIR := $(BUILDDIR)/lint-include
MBEDTLS_SYSTEM_INCDIR := $(shell pkg-config --variable=includedir mbedtls 2>/dev/null)
CPPCHECK_FLAGS += -I$(LINT_INCDIR) -D__GNUC__ --suppress="*:$(LINT_INCDIR)/*"
endif

lint: | $(MBEDTLS_DEP)
ifeq ($(MBEDTLS_KIND),system)
	@mkdir -p $(LINT_INCDIR) && for d in mbedtls psa everest; do \
	  [ ! -d $(MBEDTLS_SYSTEM_INCDIR)/$$d ] || \
	  ln -sfn $(MBEDTLS_SYSTEM_INCDIR)/$$d $(LINT_INCDIR)/$$d; done
endif
	@test/check-lint.sh $(SHELL_SCRIPTS) -- $(CPPCHECK_FLAGS) src

# Real systemd: boots Debian 12 under systemd-nspawn (root; cached root
# filesystem in $(BUILDDIR)/nspawn), installs there, drives the units.
.PHONY: check-systemd
check-systemd: $(BIN)
	@BUILDDIR=$(BUILDDIR) test/check-systemd.sh

# --- benchmarks (bench/) ---------------------------------------------------
# bench/run.sh: tls-echod, stunnel and haproxy side by side and the crypto
# bound of our mbedTLS (see the script's header; BENCH_ECHOD_REF=<an older
# tls-echod> measures that one too, in turn with ours, for before/after
# ratios from one run).  The peers are bench-only dependencies: `make bench`
# passes them to scripts/install-deps.sh, so `make check` never installs
# them; libssl-dev (the load generator's client library) is already a test
# dependency.
BENCH_BINS := $(BENCHDIR)/loadgen $(BENCHDIR)/cryptobench $(BENCHDIR)/echo-backend \
	$(BENCHDIR)/ipcbench
BENCH_DEPS := stunnel4 haproxy
BENCH_CFLAGS = $(filter-out -Wconversion -Wmissing-prototypes,$(WARNFLAGS)) \
	$(OPTFLAGS) -D_GNU_SOURCE $(CFLAGS)

.PHONY: bench bench-build bench-deps
bench-deps:
	@scripts/install-deps.sh $(BENCH_DEPS)

bench-build: $(BIN) $(BENCH_BINS)

$(BENCHDIR)/loadgen: bench/loadgen.c
	@mkdir -p $(@D)
	$(CC) $(BENCH_CFLAGS) -o $@ $< $(shell pkg-config --cflags --libs openssl)

# The transport cost of asking another process (a key holder) to sign.
$(BENCHDIR)/ipcbench: bench/ipcbench.c
	@mkdir -p $(@D)
	$(CC) $(BENCH_CFLAGS) -o $@ $<

$(BENCHDIR)/echo-backend: bench/echo-backend.c
	@mkdir -p $(@D)
	$(CC) $(BENCH_CFLAGS) -o $@ $<

# The same mbedTLS, headers and user config as the daemon, and its clock
# (tlsclock.o: the bundled mbedTLS calls mbedtls_ms_time() of the daemon's).
$(BENCHDIR)/cryptobench: bench/cryptobench.c $(OBJDIR)/tlsclock.o $(MBEDTLS_LDLIBS) \
		| $(MBEDTLS_DEP)
	@mkdir -p $(@D)
	$(CC) $(BENCH_CFLAGS) $(MBEDTLS_CFLAGS) -o $@ $< $(OBJDIR)/tlsclock.o $(MBEDTLS_LDLIBS)

# Recursive, like run: pkg-config and the mbedTLS choice after the deps.
bench: deps bench-deps
	@$(MAKE) --no-print-directory bench-build
	@BUILDDIR=$(BUILDDIR) bench/run.sh

# --- install ---------------------------------------------------------------

# Units get this install's paths; an existing configuration is never touched.
UNIT_SED = sed -e 's|/usr/local/sbin/tls-echod|$(SBINDIR)/tls-echod|g' \
	-e 's|/etc/tls-echod/|$(SYSCONFDIR)/tls-echod/|g'

install: $(BIN) $(CLIENT_BIN)
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(BINDIR) \
		$(DESTDIR)$(SYSCONFDIR)/tls-echod \
		$(DESTDIR)$(SYSTEMDUNITDIR) $(DESTDIR)$(SYSUSERSDIR)
	install -m 0755 $(BIN) $(DESTDIR)$(SBINDIR)/tls-echod
	install -m 0755 $(CLIENT_BIN) $(DESTDIR)$(BINDIR)/tls-echo
	$(UNIT_SED) systemd/tls-echod.service > $(DESTDIR)$(SYSTEMDUNITDIR)/tls-echod.service
	$(UNIT_SED) systemd/tls-echod.socket > $(DESTDIR)$(SYSTEMDUNITDIR)/tls-echod.socket
	chmod 0644 $(DESTDIR)$(SYSTEMDUNITDIR)/tls-echod.service \
		$(DESTDIR)$(SYSTEMDUNITDIR)/tls-echod.socket
	install -m 0644 systemd/tls-echod.sysusers $(DESTDIR)$(SYSUSERSDIR)/tls-echod.conf
	install -d $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(MANDIR)/man5 \
		$(DESTDIR)$(MANDIR)/man1
	install -m 0644 man/tls-echo.1 $(DESTDIR)$(MANDIR)/man1/tls-echo.1
	install -m 0644 man/tls-echod.8 $(DESTDIR)$(MANDIR)/man8/tls-echod.8
	install -m 0644 man/tls-echod.conf.5 $(DESTDIR)$(MANDIR)/man5/tls-echod.conf.5
	@if [ -e $(DESTDIR)$(SYSCONFDIR)/tls-echod/tls-echod.conf ]; then \
	  echo "keeping existing $(DESTDIR)$(SYSCONFDIR)/tls-echod/tls-echod.conf"; \
	else \
	  sed 's|"\.\./certs/|"$(SYSCONFDIR)/tls-echod/|g' conf/tls-echod.conf \
	    > $(DESTDIR)$(SYSCONFDIR)/tls-echod/tls-echod.conf && \
	  chmod 0644 $(DESTDIR)$(SYSCONFDIR)/tls-echod/tls-echod.conf; \
	fi

uninstall:
	rm -f $(DESTDIR)$(SBINDIR)/tls-echod $(DESTDIR)$(BINDIR)/tls-echo \
		$(DESTDIR)$(MANDIR)/man1/tls-echo.1 \
		$(DESTDIR)$(SYSTEMDUNITDIR)/tls-echod.service \
		$(DESTDIR)$(SYSTEMDUNITDIR)/tls-echod.socket \
		$(DESTDIR)$(SYSUSERSDIR)/tls-echod.conf \
		$(DESTDIR)$(MANDIR)/man8/tls-echod.8 \
		$(DESTDIR)$(MANDIR)/man5/tls-echod.conf.5
	@echo "left $(DESTDIR)$(SYSCONFDIR)/tls-echod/ in place (configuration and keys)"

clean:
	rm -rf $(OBJDIR) $(TESTDIR) $(BIN) $(CLIENT_BIN)
