# mk/mbedtls.mk: where tls-echod gets mbedTLS 3.6 LTS from.  GNU make fragment,
# included by the top-level Makefile.
#
# Inputs
#   MBEDTLS_BUILDDIR  where the bundled copy is built (default: build; shared
#                   by sanitizer builds that use another BUILDDIR)
#   MBEDTLS_PREFIX  optional: a prefix with include/ and lib/lib*.a of an
#                   mbedTLS 3.6 built elsewhere (make MBEDTLS_PREFIX=/opt/mbedtls)
#
# Outputs
#   MBEDTLS_CFLAGS  preprocessor flags for every file that includes an mbedTLS
#                   header (contains shell quotes: use it in recipes only)
#   MBEDTLS_LDLIBS  libraries to link (static archives by full path, or the
#                   pkg-config flags of a system 3.6)
#   MBEDTLS_ORIGIN  short description for `tls-echod -V`, e.g.
#                   "built from Debian 13 source (mbedtls 3.6.6-0.1~deb13u1)";
#                   recursive, read when a recipe expands it
#   MBEDTLS_DEP     file the objects and the link must depend on (order-only is
#                   enough with -MMD, which records the headers under -I): the
#                   bundled prefix's .stamp, empty otherwise
#   update-mbedtls  phony target: refresh the bundled copy from Debian 13
#
# Choice, first match wins:
#   1. MBEDTLS_PREFIX given;
#   2. a system mbedTLS 3.6.x with pkg-config files (mbedtls, mbedx509, mbedcrypto);
#   3. bundled: scripts/build-mbedtls.sh builds Debian 13's 3.6 into
#      $(MBEDTLS_BUILDDIR)/mbedtls.
# Debian 12's own libmbedtls-dev (2.28, end of life, no pkg-config files) is
# never used, even when installed: the bundled -I comes first and its archives
# are linked by full path, never as -lmbedtls.

MBEDTLS_BUILDDIR ?= build

MBEDTLS_MK_TOP := $(abspath $(dir $(lastword $(MAKEFILE_LIST)))..)
MBEDTLS_BUILD_SCRIPT := $(MBEDTLS_MK_TOP)/scripts/build-mbedtls.sh
MBEDTLS_USER_CONFIG := $(MBEDTLS_MK_TOP)/scripts/mbedtls-user-config.h
# Name the build script installs the user config under, inside include/.
MBEDTLS_USER_CONFIG_NAME := tls_echod_mbedtls_config.h
MBEDTLS_ARCHIVES = $(addprefix $(1)/lib/,libmbedtls.a libmbedx509.a libmbedcrypto.a)
MBEDTLS_USER_CONFIG_DEFINE := '-DMBEDTLS_USER_CONFIG_FILE="$(MBEDTLS_USER_CONFIG_NAME)"'
# First word of a prefix's VERSION file, or of MBEDTLS_VERSION_STRING.
MBEDTLS_PREFIX_VERSION = $(or $(shell cut -d' ' -f1 $(1)/VERSION 2>/dev/null),$(shell \
  sed -n 's/^\#define[[:space:]]*MBEDTLS_VERSION_STRING[[:space:]]*"\([^"]*\)".*/\1/p' \
  $(1)/include/mbedtls/build_info.h 2>/dev/null),unknown)

ifneq ($(strip $(MBEDTLS_PREFIX)),)
  MBEDTLS_KIND := prefix
  MBEDTLS_CFLAGS := -I$(MBEDTLS_PREFIX)/include
  # A prefix made by scripts/build-mbedtls.sh must be used with its config.
  ifneq ($(wildcard $(MBEDTLS_PREFIX)/include/$(MBEDTLS_USER_CONFIG_NAME)),)
    MBEDTLS_CFLAGS += $(MBEDTLS_USER_CONFIG_DEFINE)
  endif
  MBEDTLS_LDLIBS := $(call MBEDTLS_ARCHIVES,$(MBEDTLS_PREFIX))
  MBEDTLS_ORIGIN = prefix $(MBEDTLS_PREFIX) ($(call MBEDTLS_PREFIX_VERSION,$(MBEDTLS_PREFIX)))
  MBEDTLS_DEP :=
else
  MBEDTLS_SYSTEM_VERSION := $(shell pkg-config --exists mbedtls mbedx509 mbedcrypto 2>/dev/null \
                              && pkg-config --modversion mbedtls 2>/dev/null)
  # 3.6.x only: 2.28 is end of life and 4.x has a different API.
  ifneq ($(filter 3.6 3.6.%,$(MBEDTLS_SYSTEM_VERSION)),)
    MBEDTLS_KIND := system
    MBEDTLS_CFLAGS := $(shell pkg-config --cflags mbedtls mbedx509 mbedcrypto)
    MBEDTLS_LDLIBS := $(shell pkg-config --libs mbedtls mbedx509 mbedcrypto)
    MBEDTLS_ORIGIN := system ($(MBEDTLS_SYSTEM_VERSION))
    MBEDTLS_DEP :=
  else
    MBEDTLS_KIND := bundled
    MBEDTLS_BUNDLED_PREFIX := $(MBEDTLS_BUILDDIR)/mbedtls
    MBEDTLS_CFLAGS := -I$(MBEDTLS_BUNDLED_PREFIX)/include $(MBEDTLS_USER_CONFIG_DEFINE)
    MBEDTLS_LDLIBS := $(call MBEDTLS_ARCHIVES,$(MBEDTLS_BUNDLED_PREFIX))
    # "3.6.6 (Debian 13 source package mbedtls 3.6.6-0.1~deb13u1)" -> "mbedtls 3.6.6-0.1~deb13u1"
    MBEDTLS_ORIGIN = built from Debian 13 source ($(or $(shell sed -n \
      's/.*(Debian 13 source package \(.*\))$$/\1/p' $(MBEDTLS_BUNDLED_PREFIX)/VERSION \
      2>/dev/null),mbedtls unknown version))
    MBEDTLS_DEP := $(MBEDTLS_BUNDLED_PREFIX)/.stamp

    # The script is a no-op when the prefix is current; make only asks when
    # the user config or the script changed.
    $(MBEDTLS_DEP): $(MBEDTLS_USER_CONFIG) $(MBEDTLS_BUILD_SCRIPT)
	$(MBEDTLS_BUILD_SCRIPT) $(MBEDTLS_BUNDLED_PREFIX)

    # The archives come with the stamp (a link rule may list them as inputs).
    $(MBEDTLS_LDLIBS): $(MBEDTLS_DEP) ;
  endif
endif

.PHONY: update-mbedtls
ifeq ($(MBEDTLS_KIND),bundled)
update-mbedtls:
	$(MBEDTLS_BUILD_SCRIPT) --update $(MBEDTLS_BUNDLED_PREFIX)
else ifeq ($(MBEDTLS_KIND),system)
update-mbedtls:
	@echo "mbedTLS: using the system library $(MBEDTLS_SYSTEM_VERSION) (pkg-config); updates come from apt"
else
update-mbedtls:
	@echo "mbedTLS: using MBEDTLS_PREFIX=$(MBEDTLS_PREFIX); it is updated outside this project"
endif
