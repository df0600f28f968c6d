# The two commands a newcomer needs:
#   go run ./cmd/cloakroom demo    the gateway in front of the demo app
#   make test                      everything the tests need, then all tests

GO ?= go

.PHONY: test test-deps vet unit fuzz bench demo

test: test-deps vet unit fuzz

test-deps:
	bash scripts/test-deps.sh

vet:
	$(GO) vet ./...

unit:
	$(GO) test -race -count=1 -timeout 20m ./...

fuzz:
	bash scripts/fuzz.sh

bench:
	$(GO) run ./bench/report

demo:
	$(GO) run ./cmd/cloakroom demo
