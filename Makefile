# gridbell — see README.md. `make run` and `make test` are the two commands.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
GO      ?= go
# The toolchain go.mod names (a patched Go), fetched once through the module proxy.
export GOTOOLCHAIN ?= auto
BIN     := bin/gridbell
LDFLAGS := -s -w -X main.version=$(VERSION)
TESTFLAGS ?= -timeout 25m
BENCHFLAGS ?= -run '^$$' -bench . -benchmem -benchtime 1x
# The PostgreSQL the storm's PostgreSQL and distributed-mode runs use (a
# schema of their own each, dropped after).
BENCH_PG ?= $(or $(GRIDBELL_TEST_PG),postgres://postgres@127.0.0.1:5432/test?sslmode=disable)

.PHONY: all build run test test-faults soak lint bench bench-province bench-burst clean influxd

all: build

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/gridbell

# The embedded default: embedded MQTT broker, SQLite under ./data, the outbox
# file as SMS sender, and the demo fleet and scenario.
#
# The first build compiles about 450 packages from cold (README: how long on
# 2 cores), so run says so and counts them instead of sitting silent; a
# compiler error is printed as is. It builds with the installed Go when that
# is new enough for go.mod's go line: the patched toolchain go.mod names
# (fetched once, ~70 MB) is for binaries that are deployed, which `make
# build` and CI make. RUN_TOOLCHAIN=auto makes run fetch and use it too.
RUN_TOOLCHAIN ?= $(shell GOTOOLCHAIN=local $(GO) list -m >/dev/null 2>&1 && echo local || echo auto)
run:
	@echo "make run: building $(BIN) with $$(GOTOOLCHAIN=$(RUN_TOOLCHAIN) $(GO) env GOVERSION) ($(RUN_TOOLCHAIN) toolchain)." \
		"A first build compiles about 450 packages (the pure-Go SQLite driver, pgx, the Kafka and InfluxDB clients):" \
		"about 2 minutes on an idle 2-core machine (103 s measured), more on a busy one; later builds take seconds."
	@GOTOOLCHAIN=$(RUN_TOOLCHAIN) $(GO) build -v -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/gridbell 2>&1 | \
		awk '/^go: downloading / { print; fflush(); next } /^[A-Za-z0-9._~\/-]+$$/ { n++; if (n % 50 == 0) { printf "make run: %d packages compiled\n", n; fflush() }; next } { print; bad = 1 } END { exit bad }'
	./$(BIN) run --demo

test:
	$(GO) vet ./...
	$(GO) test $(TESTFLAGS) ./...

# Fault tests (build tag faults): each starts its own servers (a private
# PostgreSQL, Mosquitto, influxd, a small tmpfs), injects one fault and counts
# lost and duplicated SMS and readings. Needs root for pg_ctl as user postgres
# and for mount. A few minutes; docs/reliability.md has the figures.
FAULTFLAGS ?= -timeout 20m
# every test behind the faults tag: the TestFault cases and the three-process
# cluster stalls (SIGSTOP, a clock ahead, a holder that never comes back)
FAULTRUN ?= ^(TestFault|TestClusterSIGSTOP$$|TestClusterRulesHolderSIGSTOP$$|TestClusterClockAhead$$|TestClusterDeadSessionAdopted$$)
test-faults:
	PATH="$$PATH:$$($(GO) env GOPATH)/bin" $(GO) test -tags faults $(FAULTFLAGS) -run '$(FAULTRUN)' -count=1 -v ./...

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

# Benchmarks: package benchmarks once each, then the load programs in bench/,
# each printing one table. docs/benchmarks.md records the results with the
# machine and the date.
bench: influxd
	$(GO) test $(BENCHFLAGS) ./...
	PATH="$$PATH:$$($(GO) env GOPATH)/bin" $(GO) run ./bench/ingestload
	$(GO) run ./bench/smsload -n 20000 -steady-rate 2000 -rules-tx
	$(GO) run ./bench/storm
	# the storm in distributed mode (issue 9): single process on PostgreSQL,
	# then 1 and 2 forwarders through an in-process kfake meter topic to the
	# rules under the cluster-rules lease; the Kafka cost is the ratio of the two
	$(GO) run ./bench/storm -driver postgres -dsn '$(BENCH_PG)'
	$(GO) run ./bench/storm -driver postgres -dsn '$(BENCH_PG)' -cluster-forwarders 1
	$(GO) run ./bench/storm -driver postgres -dsn '$(BENCH_PG)' -cluster-forwarders 2
	# gridbell beside Telegraf on one workload (skipped, with the install
	# line, when no telegraf binary is found)
	$(GO) run ./bench/telegraf -mode batch -n 2000000
	$(GO) run ./bench/telegraf -mode single -n 500000

# Distributed mode at a province's scale (issue 19, not in `bench`): three
# gridbell processes on PostgreSQL and an in-process kfake broker, CUSTOMERS
# customers, a storm of CUSTOMERS/10 power_off, the rules' holder SIGKILLed
# half-way. Its last lines are one figure each (`name: value`).
CUSTOMERS ?= 2000000
bench-province:
	$(GO) run ./bench/province -customers $(CUSTOMERS) -dsn '$(BENCH_PG)'

# Issue 20's storm over MQTT on one process (SQLite, the outbox file, a
# private Mosquitto set as docs/deploy.md says): 60% of BURST_CUSTOMERS go
# dark, then their power_on burst at BURST_RATE messages/s while the outage
# SMS go out, beside a subscriber that discards everything on the same
# burst. Prints messages/s taken, Mosquitto's dropped count and the SMS
# latencies; fails if a restored SMS is missing or Mosquitto dropped any.
BURST_CUSTOMERS ?= 100000
BURST_RATE ?= 7300
bench-burst:
	GRIDBELL_BURST_CUSTOMERS=$(BURST_CUSTOMERS) GRIDBELL_BURST_RATE=$(BURST_RATE) $(GO) test -tags faults -run '^TestFaultBurst$$' -count=1 -timeout 30m -v ./internal/app/

# The soak (not in CI): gridbell under 5,000 readings/s with an outage every
# 3 minutes for 30 minutes, sampling RSS, goroutines, file descriptors and
# the store's size each minute; one table at the end (docs/reliability.md).
SOAKFLAGS ?= -duration 30m -rate 5000
soak: influxd
	PATH="$$PATH:$$($(GO) env GOPATH)/bin" $(GO) run ./bench/soak $(SOAKFLAGS)

# influxd 1.8.10 for the InfluxDB integration tests (built once, then cached).
influxd:
	@command -v influxd >/dev/null || [ -x "$$($(GO) env GOPATH)/bin/influxd" ] || $(GO) install github.com/influxdata/influxdb/cmd/influxd@v1.8.10

clean:
	rm -rf bin
