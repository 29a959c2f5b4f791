#!/usr/bin/env bash
# Installs versitygw, the S3-compatible server that the blob store's
# end-to-end tests (internal/blob/s3/s3_real_test.go) run on loopback; `make test` runs it.
# It is built from source with `go install` (the Go module proxy is the
# only source of binaries here). Idempotent: a binary of the pinned version
# already in place is kept. A cold build takes about 2.5 minutes on 2 cores.
set -euo pipefail

MODULE=github.com/versity/versitygw
VERSION=v1.8.0
BIN_DIR=${BIN_DIR:-/usr/local/bin}
BIN=$BIN_DIR/versitygw
export PATH="$PATH:/usr/local/go/bin"

# `go version -m` reads the module version recorded in the binary
# (versitygw --version prints only "git" for builds outside its Makefile).
if [ -x "$BIN" ] && go version -m "$BIN" 2>/dev/null |
	grep -Eq "^[[:space:]]+mod[[:space:]]+$MODULE[[:space:]]+$VERSION[[:space:]]"; then
	echo "install-s3: versitygw $VERSION already at $BIN"
	exit 0
fi

start=$(date +%s)
echo "install-s3: building versitygw $VERSION (go install)..."
GOBIN="$BIN_DIR" CGO_ENABLED=0 go install -trimpath -ldflags='-s -w' "$MODULE/cmd/versitygw@$VERSION"
echo "install-s3: installed $BIN in $(($(date +%s) - start))s"
