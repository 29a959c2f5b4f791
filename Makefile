# sbx build and test entry points. Every target that needs root says so.

GO        ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
BIN       := bin
IMAGES    ?= /var/lib/sbx/images
VERSION   ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X main.version=$(VERSION)
# Debian packages sbx needs at run time and in tests.
DEB_PKGS  := runc crun debootstrap iproute2 nftables ca-certificates procps curl e2fsprogs util-linux

.PHONY: all build deps s3 image up test test-unit bench clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/sbxd ./cmd/sbxd
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/sbx ./cmd/sbx
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/sbx-agent ./cmd/sbx-agent

# deps installs the Debian packages (root).
deps:
	@missing=""; for p in $(DEB_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

# image builds the default and python images (cached; no-ops when up to date).
image: build
	$(BIN)/sbxd image build default --images-dir $(IMAGES)
	$(BIN)/sbxd image build python --images-dir $(IMAGES)

# up installs, builds and starts sbxd on 127.0.0.1:7070 in the foreground
# (root). The default image is built on first start.
up: deps build
	$(BIN)/sbxd --listen 127.0.0.1:7070

# s3 installs versitygw, the S3-compatible server of the blob store's
# end-to-end tests.
s3:
	bash hack/install-s3.sh

# test runs the whole suite (root: sandboxes are real).
test: deps s3 image
	$(GO) vet ./...
	SBX_TEST_IMAGES=$(IMAGES) $(GO) test -count=1 -timeout 60m ./...

test-unit:
	$(GO) test -short ./api/... ./client/... ./internal/errdefs/... ./internal/store/... ./internal/sandbox/... ./internal/server/...

# bench runs the benchmarks in bench/ and prints figures beside their
# same-run baselines (root).
bench: deps image
	SBX_TEST_IMAGES=$(IMAGES) $(GO) test -run '^$$' -bench . -benchtime 60x -timeout 30m ./bench/

clean:
	rm -rf $(BIN)
