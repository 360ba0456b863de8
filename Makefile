# fraiseql-observers — see README.md.
GO       ?= go
BIN      := bin/fraiseql-observers
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X main.version=$(VERSION)
PKGS     := ./...
FUZZTIME ?= 20s
# golangci-lint (v2 config format, .golangci.yml). make lint uses, in order: $(GOLANGCI_LINT)
# if set, ./bin/golangci-lint, golangci-lint on PATH, $(go env GOPATH)/bin/golangci-lint,
# provided it is a 2.x release; otherwise it installs this version into ./bin.
GOLANGCI_LINT_VERSION ?= v2.15.0
GOLANGCI_LINT ?=

.PHONY: build demo test bench fuzz lint clean

build:
	$(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/fraiseql-observers

demo: build
	./scripts/demo.sh

test:
	$(GO) vet $(PKGS)
	$(GO) test -race -count=1 -timeout 45m $(PKGS)

bench: build
	./scripts/bench.sh

fuzz:
	./scripts/fuzz.sh $(FUZZTIME) $(FUZZ)

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1)
	$(GO) vet $(PKGS)
	@lint="$$(GO='$(GO)' GOLANGCI_LINT='$(GOLANGCI_LINT)' GOLANGCI_LINT_VERSION='$(GOLANGCI_LINT_VERSION)' ./scripts/golangci-lint.sh)" && \
		echo "$$lint run $(PKGS)" && "$$lint" run $(PKGS)
	@if command -v staticcheck >/dev/null 2>&1; then staticcheck $(PKGS); else echo "staticcheck not installed: skipped (go install honnef.co/go/tools/cmd/staticcheck@latest)"; fi

clean:
	rm -rf bin
