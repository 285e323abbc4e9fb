# Herald's two commands: `make run` (the local stack) and `make test` (the whole suite, race detector
# on). Both install what they need first.

GO       ?= go
ALL      := github.com/heraldpush/herald/...
BIN      := .herald/bin
SERVICES := admin auth push-route push-server

.PHONY: run test deps build vet fmt-check fuzz chaos

run: deps build
	$(GO) run ./tools/stack -bin $(BIN)

# The admin console's browser tests drive Debian's chromium, so the tests need it too.
test: deps fmt-check vet
	@scripts/install-deps.sh chromium
	$(GO) test -race -count=1 -timeout 15m $(ALL)
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
	$(GO) build -o $(BIN)/ $(addprefix ./services/,$(SERVICES))

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
