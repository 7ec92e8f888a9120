# scanfleet — run "make help" for the targets.
GO ?= go
SHELL := bash
PKGS ?= ./...

.PHONY: help
help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: test
test: ## run every test; prints each package's result and every skipped test with its reason (full log: test.log)
	@$(GO) test -count=1 -v $(PKGS) > test.log 2>&1; rc=$$?; \
	if [ $$rc -ne 0 ]; then cat test.log; fi; \
	awk '/^(ok|FAIL|panic:|\?)/ {print; next} /--- SKIP/ {print; skip=1; next} skip && /^ +[a-z_]+\.go:[0-9]+:/ {print; skip=0; next} {skip=0}' test.log; \
	echo "skipped tests: $$(grep -c -- '--- SKIP' test.log)"; exit $$rc

.PHONY: race
race: ## run the tests with the race detector
	$(GO) test -race -count=1 $(PKGS)

.PHONY: server
server: ## run the server on its embedded defaults (SQLite in ./scanfleet-data)
	$(GO) run ./cmd/scanfleet server

.PHONY: build
build: ## build bin/scanfleet
	$(GO) build -o bin/scanfleet ./cmd/scanfleet

.PHONY: lint
lint: ## gofmt, go vet and golangci-lint (when installed)
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	@if command -v golangci-lint >/dev/null; then golangci-lint run; else echo "golangci-lint not installed; skipped"; fi

.PHONY: bench
bench: ## run the ingest benchmarks (SQLite, and PostgreSQL when TEST_DATABASE_URL is set)
	$(GO) test -run '^$$' -bench Ingest -benchtime 3x ./sqlite ./postgres

.PHONY: fuzz
fuzz: ## fuzz each parser of outside input for 30 s
	$(GO) test -run '^$$' -fuzz FuzzParseRecords -fuzztime 30s .
	$(GO) test -run '^$$' -fuzz FuzzScope -fuzztime 30s .
	$(GO) test -run '^$$' -fuzz FuzzParsePortList -fuzztime 30s .
