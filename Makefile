# Herald's two commands: `make run` (the local stack) and `make test` (the whole suite, race detector
# on). Both install what they need first.

GO       ?= go
ALL      := github.com/heraldpush/herald/...
BIN      := .herald/bin
SERVICES := admin auth push-route push-server
# The version stamped into the binaries (-version, /healthz): the tag on this commit, or how far past
# the last tag it is; "devel" outside a git checkout.
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
LDFLAGS  := -X github.com/heraldpush/herald/pkg/buildinfo.stamped=$(VERSION)

.PHONY: run run-cluster test deps build vet fmt-check fuzz chaos release

# PROMETHEUS=1 make run also runs Prometheus (Debian's package) scraping the stack, with the alert rules.
run: deps build
	@if [ -n "$(PROMETHEUS)" ]; then scripts/install-deps.sh prometheus; fi
	$(GO) run ./tools/stack -bin $(BIN) $(if $(PROMETHEUS),-prometheus)

# The same at production shape: a ZooKeeper ensemble of 3, a Redis Cluster of 3 masters with a replica
# each, 3 Kafka-protocol brokers, 2 push-routes, 3 push-servers, 2 auths and admin.
run-cluster: deps build
	@if [ -n "$(PROMETHEUS)" ]; then scripts/install-deps.sh prometheus; fi
	$(GO) run ./tools/stack -bin $(BIN) -cluster $(if $(PROMETHEUS),-prometheus)

# The admin console's browser tests drive Debian's chromium, and the alert rules are checked with
# Prometheus's promtool, so the tests need both.
test: deps fmt-check vet
	@scripts/install-deps.sh chromium prometheus
	$(GO) test -race -count=1 -timeout 15m $(ALL)
	$(GO) test -count=1 -run 'TestWatchEmptiesWhenZooKeeperIsGone' ./pkg/discovery
	@scripts/fuzz.sh 3s

# Every fuzz target for longer (FUZZTIME each).
FUZZTIME ?= 60s
fuzz: deps
	@scripts/fuzz.sh $(FUZZTIME)

# The fault suite: every fault of tools/chaos, each on a fresh stack (FAULTS="redis-down kill-auth" for some).
chaos: deps
	@scripts/chaos.sh $(FAULTS)

deps:
	@scripts/install-deps.sh

build:
	@mkdir -p $(BIN)
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/ $(addprefix ./services/,$(SERVICES))

# A release: static binaries of every service for linux/amd64 and linux/arm64, stamped with VERSION,
# in dist/VERSION/ with their SHA-256 sums. Tag first (git tag -a vX.Y.Z), then make release.
release:
	@rm -rf dist/$(VERSION) && mkdir -p dist/$(VERSION)
	@for arch in amd64 arm64; do for svc in $(SERVICES); do \
		echo "build herald-$$svc linux/$$arch $(VERSION)"; \
		CGO_ENABLED=0 GOOS=linux GOARCH=$$arch $(GO) build -trimpath -ldflags "-s -w $(LDFLAGS)" \
			-o dist/$(VERSION)/herald-$$svc-linux-$$arch ./services/$$svc || exit 1; \
	done; done
	@cd dist/$(VERSION) && sha256sum herald-* > SHA256SUMS && cat SHA256SUMS

vet:
	$(GO) vet $(ALL)

fmt-check:
	@out=$$(gofmt -l pkg services tools migrations lua); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# Load test against a running local stack (make run in another terminal), e.g.
#   make loadgen LOADGEN_ARGS="-conns 18000 -node ps-1 -procs 3 -sources 4"
.PHONY: loadgen
loadgen:
	$(GO) run ./tools/loadgen -stack .herald/stack.json $(LOADGEN_ARGS)
