# The two commands a newcomer needs:
#   go run ./cmd/cloakroom demo    the gateway in front of the demo app
#   make test                      everything the tests need, then all tests

GO ?= go

.PHONY: test test-deps vet unit multinode multinode-strict bench-smoke fuzz bench demo

# The multi-node tests measure revocation windows and outage recovery, so
# they run after the other packages, with the machine to themselves.
MULTINODE = ./test/multinode

test: test-deps vet unit multinode bench-smoke fuzz

test-deps:
	bash scripts/test-deps.sh

vet:
	$(GO) vet ./...

unit:
	$(GO) test -race -count=1 -timeout 20m $$($(GO) list ./... | grep -v /test/multinode)

multinode:
	$(GO) test -race -count=1 -timeout 10m -v $(MULTINODE)

# The same with the 10 ms revocation-window target enforced, for a quiet
# machine.
multinode-strict:
	CLOAKROOM_STRICT_TIMING=1 $(GO) test -count=1 -timeout 10m -v $(MULTINODE)

fuzz:
	bash scripts/fuzz.sh

# Every benchmark once, so a broken one fails the tests (each checks its
# warm-up response).
bench-smoke:
	$(GO) test -run '^$$' -bench . -benchtime 1x ./bench/...

bench:
	$(GO) run ./bench/report

demo:
	$(GO) run ./cmd/cloakroom demo
