# dborch: PGXS build of the extension, its pg_regress suites and install scripts.
EXTENSION = dborch
EXTVERSION = $(shell sed -n "s/^default_version = '\(.*\)'/\1/p" $(EXTENSION).control)

MODULE_big = dborch
# src/<concern>/ (src/README.md maps them); src/guard is a library of its own.
SRC_DIRS = $(filter-out src/guard,$(patsubst %/,%,$(sort $(dir $(wildcard src/*/*.c)))))
OBJS = $(patsubst %.c,%.o,$(sort $(wildcard $(addsuffix /*.c,$(SRC_DIRS)))))

# Preloaded by every managed PostgreSQL instance (see src/guard/dborch_guard.c).
MODULES = src/guard/dborch_guard

DATA = $(wildcard sql/$(EXTENSION)--*.sql)

# pg_regress suites: the SQL surface, against a temporary instance that
# preloads pg_cron and dborch (see test/regress.conf).
REGRESS = catalog validation idempotency rls upgrade tenants readme
REGRESS_OPTS = --temp-instance=$(CURDIR)/tmp_check_regress \
	--temp-config=$(CURDIR)/test/regress.conf --load-extension=pg_cron

PG_CONFIG ?= /usr/lib/postgresql/15/bin/pg_config
PG_CPPFLAGS = -I$(shell $(PG_CONFIG) --includedir) $(addprefix -I,$(SRC_DIRS)) -DDBORCH_VERSION=\"$(EXTVERSION)\"
PG_CFLAGS = -Wall -Werror
SHLIB_LINK = -L$(shell $(PG_CONFIG) --libdir) -lpq -lhiredis -lcurl -lzstd -lcrypto

# No LLVM bitcode: the extension has no hot SQL expressions to JIT, and
# skipping it removes the clang dependency from the build.
override with_llvm = no

EXTRA_CLEAN = tmp_check_regress results regression.diffs regression.out

PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# DBORCH_VERSION comes from the control file: a new version rebuilds everything.
$(OBJS): $(wildcard src/*/*.h) $(EXTENSION).control
