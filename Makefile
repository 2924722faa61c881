# orders: PGXS build.  `make && make install`, then `make installcheck`
# (every suite starts its own throw-away cluster; see test/check).

EXTENSION = orders
MODULE_big = orders
OBJS = \
	src/api.o \
	src/catalog.o \
	src/changes.o \
	src/consumers.o \
	src/events.o \
	src/invariants.o \
	src/module.o \
	src/relay.o \
	src/storage.o \
	src/uuidv7.o
DATA = orders--1.0.sql orders--1.4.sql \
	orders--1.0--1.1.sql orders--1.1--1.2.sql orders--1.2--1.3.sql orders--1.3--1.4.sql orders--1.4--1.5.sql

# -Wextra, less the two warnings PostgreSQL's own headers raise
# (unused parameters and sign comparisons in their inline functions).
PG_CFLAGS = -Wall -Wextra -Wno-unused-parameter -Wno-sign-compare

# pg_regress and pg_isolation_regress each initdb and start a cluster of
# their own (--temp-instance); nothing needs to be running.
REGRESS = upgrade setup add invariants get_remove events save queries consumers hardening security
REGRESS_OPTS = --temp-instance=tmp_check_regress --temp-config=test/test.conf

ISOLATION = listen_notify save_races events_gap events_backlog ddl_races ddl_update key_races
ISOLATION_OPTS = --inputdir=test/isolation --temp-instance=tmp_check_iso --temp-config=test/test.conf

TAP_TESTS = 1
PROVE_TESTS = test/t/*.pl

EXTRA_CLEAN = tmp_check_regress tmp_check_iso

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# Only what PGDLLEXPORT marks is exported: PGXS hides the rest itself from
# 16 on; on 15 it is asked for here, and src/compat.h makes PGDLLEXPORT mark.
ifeq ($(MAJORVERSION),15)
override CFLAGS += -fvisibility=hidden
endif

# every source file shares the one header, and through it the compat header
$(OBJS): src/orders.h src/compat.h
