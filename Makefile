# nscollect - see README.md. `make` builds ./nscollect; `make test` runs the suite.
CC      ?= cc
CFLAGS  ?= -O2 -g
WARN    := -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes \
           -Wno-missing-field-initializers
LIBS    := -lcurl -lsqlite3 -lconfig -lmicrohttpd -lssl -lcrypto -lz -lpthread
PYTHON  ?= python3

SRC      := $(wildcard src/*.c src/*/*.c)
HDR      := $(wildcard src/*/*.h)
LIB_SRC  := $(filter-out src/main.c,$(SRC))
MIGR     := $(sort $(wildcard migrations/*.sql))
UNIT_SRC := $(wildcard tests/unit/test_*.c)

# Each flavour builds into its own directory so a sanitizer build never
# mixes objects with the release build.
B        ?= build
OBJ      := $(LIB_SRC:src/%.c=$(B)/%.o) $(B)/migrations.o
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(B)/%) $(B)/test_records_evp

SAN_FLAGS  := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all
TSAN_FLAGS := -O1 -g -fsanitize=thread

.PHONY: all deps deps-extra test test-google test-shard unit e2e demo clean asan tsan valgrind bench bench-slowdisk bench-parser bench-events bench-sinks bench-scrape fuzz crashtest install

all: nscollect

# Copied by rename, so a running ./nscollect (a benchmark, a daemon) is not in the way.
nscollect: $(B)/nscollect
	cp $< $@.tmp && mv -f $@.tmp $@

$(B)/nscollect: $(B)/main.o $(B)/libnscollect.a
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LIBS)

# Tests link the parts they use from this archive.
$(B)/libnscollect.a: $(OBJ)
	rm -f $@
	ar rcs $@ $^

$(B)/%.o: src/%.c $(HDR) | $(B)
	@mkdir -p $(@D)
	$(CC) $(WARN) $(CFLAGS) -Isrc -c -o $@ $<

# Migrations are compiled in, so the binary always carries its own schema.
$(B)/migrations.c: $(MIGR) migrations/embed.sh | $(B)
	sh migrations/embed.sh $(MIGR) > $@

$(B)/migrations.o: $(B)/migrations.c
	$(CC) $(WARN) $(CFLAGS) -Isrc -c -o $@ $<

$(B)/test_%: tests/unit/test_%.c tests/unit/check.h $(B)/libnscollect.a
	$(CC) $(WARN) $(CFLAGS) $(LDFLAGS) -Isrc -Itests/unit -o $@ $< $(B)/libnscollect.a $(LIBS)

# The key tests again, on the EVP path that records_hash() takes where
# libcrypto has no deprecated calls: the same keys either way.
$(B)/records_evp.o: src/daemon/records.c $(HDR) | $(B)
	$(CC) $(WARN) $(CFLAGS) -DOPENSSL_NO_DEPRECATED -Isrc -c -o $@ $<

$(B)/test_records_evp: tests/unit/test_records.c tests/unit/check.h $(B)/records_evp.o $(B)/libnscollect.a
	$(CC) $(WARN) $(CFLAGS) $(LDFLAGS) -DTEST_KEYS_ONLY -Isrc -Itests/unit -o $@ $< $(B)/records_evp.o \
		$(B)/libnscollect.a $(LIBS)

$(B):
	mkdir -p $@

deps:
	@sh tests/deps.sh

# clang, valgrind, strace, GNU time: for tsan, fuzz, valgrind, crashtest, bench.
deps-extra:
	@sh tests/deps.sh extra

# `make test`: the whole suite under ASan+UBSan (unit tests, then the daemon
# end to end against the fake servers over loopback), then the end-to-end
# tests again, threads and all, under ThreadSanitizer: gcc's runtime (no
# extra package; `make tsan` adds the unit tests, with clang's), halting at
# the first race report, which fails the test that met it. Last, the
# ASan build against Google's own components (test-google, below: about
# 20 s, plus the first npm ci).
test: deps
	$(MAKE) B=build-asan CFLAGS="$(SAN_FLAGS)" LDFLAGS="-fsanitize=address,undefined" check
	$(MAKE) B=build-tsan-gcc CFLAGS="$(TSAN_FLAGS)" LDFLAGS="-fsanitize=thread" \
		build-tsan-gcc/nscollect
	TSAN_OPTIONS="halt_on_error=1" NSCOLLECT_BIN=$(CURDIR)/build-tsan-gcc/nscollect \
		$(PYTHON) tests/e2e/run.py
	$(MAKE) B=build-asan CFLAGS="$(SAN_FLAGS)" LDFLAGS="-fsanitize=address,undefined" test-google

# `make test-google`: nscollect against Google's own components
# (tests/google/): firebase-tools' Cloud Storage emulator through
# STORAGE_EMULATOR_HOST, and google-auth-library verifying the JWTs
# nscollect signs. tests/google/setup.sh installs them (npm ci, pinned by
# tests/google/package-lock.json; Java and node from Debian if missing).
test-google: deps $(B)/nscollect
	sh tests/google/setup.sh
	NSCOLLECT_BIN=$(CURDIR)/$(B)/nscollect \
		$(PYTHON) tests/google/run.py

# The suite with whatever flavour B/CFLAGS name.
check: $(B)/nscollect $(UNIT_BIN)
	@for t in $(UNIT_BIN); do echo "== $$t"; $$t || exit 1; done
	NSCOLLECT_BIN=$(CURDIR)/$(B)/nscollect $(PYTHON) tests/e2e/run.py

unit: $(UNIT_BIN)
	@for t in $(UNIT_BIN); do echo "== $$t"; $$t || exit 1; done

tsan: deps-extra
	$(MAKE) B=build-tsan CC=clang CFLAGS="$(TSAN_FLAGS)" LDFLAGS="-fsanitize=thread" check

demo: deps nscollect
	@$(PYTHON) tests/demo.py

clean:
	rm -rf build build-asan build-tsan build-tsan-gcc build-valgrind build-fuzz nscollect

# `make fuzz`: libFuzzer targets (tests/fuzz/) for the page parser and the
# config loader, FUZZ_SECONDS per target, everything built with clang into
# build-fuzz/ under ASan+UBSan. `make fuzz-smoke`: the same for 20 seconds.
# Not part of `make test`; see tests/fuzz/run.sh.
FUZZ_SECONDS ?= 600
FUZZ_TARGETS := records config
FUZZ_CFLAGS  := -O1 -g -fno-omit-frame-pointer -fsanitize=fuzzer-no-link,address,undefined \
                -fno-sanitize-recover=all

.PHONY: fuzz-smoke fuzz-build

fuzz: fuzz-build
	FUZZ_SECONDS=$(FUZZ_SECONDS) sh tests/fuzz/run.sh $(FUZZ_TARGETS)

fuzz-smoke: fuzz-build
	FUZZ_SECONDS=20 sh tests/fuzz/run.sh $(FUZZ_TARGETS)

fuzz-build: deps-extra
	$(MAKE) B=build-fuzz CC=clang CFLAGS="$(FUZZ_CFLAGS)" \
		$(FUZZ_TARGETS:%=build-fuzz/fuzz_%)

$(B)/fuzz_%: tests/fuzz/fuzz_%.c $(B)/libnscollect.a
	$(CC) $(WARN) $(CFLAGS) -Isrc -o $@ $< $(B)/libnscollect.a $(LIBS) \
		-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all

# `make install [DESTDIR=/staging] [PREFIX=/usr/local]`: the binary, the man
# page, the example config and the systemd unit, whose ExecStart (and the
# doc path in its comments) follow PREFIX.
PREFIX ?= /usr/local

install: nscollect
	install -D -m 0755 nscollect $(DESTDIR)$(PREFIX)/bin/nscollect
	install -D -m 0644 etc/nscollect.1 $(DESTDIR)$(PREFIX)/share/man/man1/nscollect.1
	install -D -m 0644 etc/nscollect.conf.example \
		$(DESTDIR)$(PREFIX)/share/doc/nscollect/nscollect.conf.example
	sed -e 's|/usr/local/bin/nscollect|$(PREFIX)/bin/nscollect|' \
		-e 's|/usr/local/share/doc/nscollect|$(PREFIX)/share/doc/nscollect|' \
		etc/nscollect.service > $(B)/nscollect.service
	install -D -m 0644 $(B)/nscollect.service $(DESTDIR)$(PREFIX)/lib/systemd/system/nscollect.service
	sed -e 's|/usr/local/bin/nscollect|$(PREFIX)/bin/nscollect|' \
		etc/nscollect@.service > $(B)/nscollect@.service
	install -D -m 0644 $(B)/nscollect@.service $(DESTDIR)$(PREFIX)/lib/systemd/system/nscollect@.service
	install -D -m 0644 etc/k8s/nscollect-statefulset.yaml \
		$(DESTDIR)$(PREFIX)/share/doc/nscollect/k8s/nscollect-statefulset.yaml

# `make crashtest`: tests/crash/crashtest.py against the ASan+UBSan build:
# 120 kill -9s at random moments (daemon and --once, faults on, alerts
# arriving), then a kill inside an fsync; every record delivered exactly
# once, no temp file left, the database intact. CRASH_ARGS="--seed N"
# replays a plan; the seed is printed first.
CRASH_ARGS ?=

# `make test-shard`: tests/e2e/test_shard.py at the issue's full size, 300
# tenants over three shards and a reshard to four (58 s on 2 cores;
# `make test` runs it with 30 tenants).
test-shard: deps $(B)/nscollect
	NSCOLLECT_SHARD_TENANTS=300 NSCOLLECT_BIN=$(CURDIR)/$(B)/nscollect \
		$(PYTHON) tests/e2e/test_shard.py

crashtest: deps-extra
	$(MAKE) B=build-asan CFLAGS="$(SAN_FLAGS)" LDFLAGS="-fsanitize=address,undefined" build-asan/nscollect
	NSCOLLECT_BIN=$(CURDIR)/build-asan/nscollect $(PYTHON) tests/crash/crashtest.py $(CRASH_ARGS)

# `make valgrind`: a plain -O1 -g build under valgrind (errors and definite
# leaks fail, exit 99) through the crash test's non-kill path: the daemon
# stopped by SIGTERM and `run --once` passes, threads and faults included.
valgrind: deps-extra
	@command -v valgrind >/dev/null || { echo "make valgrind needs valgrind: apt-get install valgrind"; exit 1; }
	$(MAKE) B=build-valgrind CFLAGS="-O1 -g" build-valgrind/nscollect
	NSCOLLECT_BIN=$(CURDIR)/tests/crash/valgrind-wrap.sh \
		VALGRIND_NSCOLLECT=$(CURDIR)/build-valgrind/nscollect \
		$(PYTHON) tests/crash/crashtest.py --graceful 6 --tenants 2 $(CRASH_ARGS)

# `make bench`: benchmarks against the fake Netskope over loopback
# (tests/bench/bench.py): one tenant's throughput beside curl and a Python
# baseline of Google's recipe, 10,000 tenants in one pass, memory against
# backlog, and the cost of re-reading the overlap. Medians of BENCH_RUNS
# runs (default 3); the table goes to tests/bench/results.md. Not part of
# `make test`: a missed target is reported, not failed.
bench: deps-extra nscollect
	NSCOLLECT_BIN=$(CURDIR)/nscollect $(PYTHON) tests/bench/bench.py $(BENCH_ARGS)

# `make bench-events`: issue 15's benchmark (tests/bench/events.py): one
# tenant's BENCH_EVENTS (1M) page events unpaced, data API and dataexport
# iterator, beside as many alerts; CPU per record and peak RSS.
bench-events: deps-extra nscollect
	NSCOLLECT_BIN=$(CURDIR)/nscollect $(PYTHON) tests/bench/events.py

# `make bench-sinks`: issue 18's benchmark (tests/bench/sinks.py): one
# tenant's BENCH_ALERTS (1M) alerts to the file, GCS and secops:// sinks
# (the Google fakes); wall, CPU per alert, peak RSS, requests.
bench-sinks: deps-extra nscollect
	NSCOLLECT_BIN=$(CURDIR)/nscollect $(PYTHON) tests/bench/sinks.py

# `make bench-scrape`: /metrics with BENCH_TENANTS (10,000) tenants: time,
# bytes and samples of a scrape, promtool on the text (tests/bench/scrape.py).
bench-scrape: deps-extra nscollect
	NSCOLLECT_BIN=$(CURDIR)/nscollect $(PYTHON) tests/bench/scrape.py

# `make bench-slowdisk`: BENCH_TENANTS (1,000) tenants' one-shot run with
# every fsync/fdatasync BENCH_SYNC_US (2000) us slower (tests/bench/
# slowsync.c, LD_PRELOAD): a disk whose flush is slow, as cloud disks'
# are. NSCOLLECT_OLD=path/to/old/nscollect runs it side by side.
bench-slowdisk: deps-extra nscollect $(B)/slowsync.so
	NSCOLLECT_BIN=$(CURDIR)/nscollect BENCH_SLOWSYNC=$(CURDIR)/$(B)/slowsync.so \
		$(PYTHON) tests/bench/slowdisk.py

$(B)/slowsync.so: tests/bench/slowsync.c
	@mkdir -p $(B)
	$(CC) $(WARN) -O2 -shared -fPIC -o $@ $< -ldl

# `make bench-parser`: the page parser alone (records.c), compact and pretty
# pages of the benchmark's alerts; the number to watch when changing it.
bench-parser: $(B)/parser_bench
	$(PYTHON) tests/bench/parser.py $(B)/parser_bench

$(B)/parser_bench: tests/bench/parser_bench.c $(B)/libnscollect.a
	$(CC) $(WARN) $(CFLAGS) -Isrc -o $@ $< $(B)/libnscollect.a $(LIBS)
