#!/usr/bin/env bash
# Runs the whole test suite: formatting, vet, and every test with the race
# detector, including the end-to-end runs on real libp2p hosts on loopback.
# Installs what the tests need when it is missing (nothing beyond Go yet).
# Extra arguments go to `go test`, e.g. ./scripts/test.sh -run Reference -v
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v go >/dev/null 2>&1; then
  echo "test.sh: Go 1.26 or newer is required (https://go.dev/dl/)" >&2
  exit 1
fi

unformatted=$(gofmt -l $(find . -name '*.go' -not -path './.git/*'))
if [ -n "$unformatted" ]; then
  echo "test.sh: gofmt would change:" >&2
  echo "$unformatted" >&2
  exit 1
fi
go vet ./...
go test -race -count=1 -timeout 30m ./... "$@"
