# The two commands a newcomer needs:
#   make demo    builds bin/cloakroom (with progress), then runs the gateway in front of the demo app
#   make test    everything the tests need, then all tests, step by step

GO ?= go
export GO

.PHONY: build demo test test-deps vet unit multinode multinode-cluster multinode-strict bench-smoke fuzz bench bench-forward-auth test-traefik scale

# Go decides what is stale; the script says how long a first build takes
# and shows its progress.
build:
	@bash scripts/build.sh bin/cloakroom

demo: build
	bin/cloakroom demo

# The multi-node tests measure revocation windows and outage recovery, so
# they run after the other packages, with the machine to themselves.
MULTINODE = ./test/multinode

# Each step is announced with its number and the time it took when it last
# passed here (scripts/step.sh). Measured on a busy 2-core machine: 27 min
# in all, go vet 148 s.
STEP = MAKE='$(MAKE)' bash scripts/step.sh
test:
	@echo "make test: 7 steps, about half an hour on 2 cores (27 min measured on a busy 2-core machine)"
	@$(STEP) 1 7 test-deps "services the tests need: Chromium, Redis, PostgreSQL (installed once, then seconds)"
	@$(STEP) 2 7 vet "go vet ./... (silent; 148 s measured on a busy 2-core machine)"
	@$(STEP) 3 7 unit "go test -race of every package except test/multinode (the race build comes first, silent for minutes)"
	@$(STEP) 4 7 multinode "multi-node tests: three gateways per store"
	@$(STEP) 5 7 multinode-cluster "multi-node Redis cases on a six-node Redis Cluster"
	@$(STEP) 6 7 bench-smoke "every benchmark once"
	@$(STEP) 7 7 fuzz "every fuzz target on 5000 inputs"
	@echo "make test: all 7 steps passed"

test-deps:
	bash scripts/test-deps.sh

vet:
	$(GO) vet ./...

unit:
	$(GO) test -race -count=1 -timeout 20m $$($(GO) list ./... | grep -v /test/multinode)

multinode:
	$(GO) test -race -count=1 -timeout 10m -v $(MULTINODE)

# The Redis cases of the multi-node tests again on a six-node Redis Cluster
# (three masters, three replicas) that the test helpers start from
# redis-server on loopback; the redisstore suite runs on one in unit.
multinode-cluster:
	CLOAKROOM_TEST_REDIS_CLUSTER=1 $(GO) test -race -count=1 -timeout 10m -v -run 'TestSessionAcrossNodes/^redis$$|TestRevocationWindow/^redis$$|TestRevokedAtOnceOnEveryNode/^redis$$|TestRevokeEveryoneOnEveryNode/^redis$$' $(MULTINODE)

# The same with the timing targets enforced (the 10 ms revocation window,
# no stream event a second after its session ended), for a quiet machine.
multinode-strict:
	CLOAKROOM_STRICT_TIMING=1 $(GO) test -count=1 -timeout 10m -v $(MULTINODE)

fuzz:
	bash scripts/fuzz.sh

# Every benchmark once, so a broken one fails the tests (each checks its
# warm-up response).
bench-smoke:
	$(GO) test -run '^$$' -bench . -benchtime 1x ./bench/...

# The lowest of three full rounds per benchmark: single rounds on a shared
# VM swing by a fifth.
bench:
	$(GO) run ./bench/report -rounds 3

# nginx auth_request asking cloakroom against asking oauth2-proxy's
# /oauth2/auth (cookie and Redis session stores): CPU per decision of each
# auth process, req/s, p50/p99, in one run; then the same with nginx
# keeping its connections to the auth service open. Needs nginx and Redis
# (scripts/test-deps.sh); builds oauth2-proxy once into ~/.cache (about two
# minutes), then about a minute and a half.
FWD_REQUESTS ?= 30000
bench-forward-auth:
	@peer="$$(bash bench/forwardauth/build-oauth2-proxy.sh)" && \
	$(GO) test -count=1 -timeout 15m -v -run '^TestForwardAuthPeers$$' ./bench/forwardauth -fwd.requests=$(FWD_REQUESTS) -fwd.oauth2-proxy="$$peer"

# Forward auth through a real Traefik (outside CI): builds Traefik into
# ~/.cache/cloakroom-bench/ the first time (minutes, about 245 MB).
test-traefik:
	@traefik="$$(bash forwardauth/build-traefik.sh)" && \
	$(GO) test -count=1 -v -run '^TestThroughTraefik$$' ./forwardauth -traefik="$$traefik"

# Redis at scale: memory per session, session checks, revocation and
# listing costs with millions of sessions in a throwaway Redis
# (SCALE_SESSIONS, default 2,000,000; bounded to a few minutes).
SCALE_SESSIONS ?= 2000000
scale:
	$(GO) test -count=1 -timeout 30m -v -run 'TestScale' ./redisstore -redis.scale=$(SCALE_SESSIONS)
