#!/usr/bin/env bash
# Runs the whole test suite: formatting, vet, and every test with the race
# detector (the testbed's without: see below), including the end-to-end
# runs on real libp2p hosts on loopback.
# Installs what the tests need when it is missing: HAProxy, wrk, iproute2,
# iptables, systemd (for systemd-analyze), Chromium (for the live page's
# browser test) and curl (for the README's recipe) from Debian's packages. (The OpenFaaS gateway the tests run is compiled from the Go module
# proxy by the tests themselves, into the user cache.)
# Extra arguments go to `go test`, e.g. ./scripts/test.sh -run Reference -v
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v go >/dev/null 2>&1; then
  echo "test.sh: Go 1.26 or newer is required (https://go.dev/dl/)" >&2
  exit 1
fi

# HAProxy, the production data plane, runs in the proxy/haproxy tests; wrk
# loads the data planes in examples/hopbench's test; ip and iptables build
# internal/testbed's network.
sudo=""
[ "$(id -u)" = 0 ] || sudo=sudo
missing=()
command -v haproxy >/dev/null 2>&1 || missing+=(haproxy)
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
command -v iptables >/dev/null 2>&1 || missing+=(iptables)
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd) # checks examples/deploy's unit
command -v chromium >/dev/null 2>&1 || missing+=(chromium)       # drives node's live page
command -v curl >/dev/null 2>&1 || missing+=(curl)               # the README's three-agent recipe
if [ ${#missing[@]} -gt 0 ]; then
  $sudo apt-get update -qq && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
haproxy -v | sed -n 1p # sed reads it all: head could end haproxy with SIGPIPE, which pipefail turns into a failure

unformatted=$(gofmt -l $(find . -name '*.go' -not -path './.git/*'))
if [ -n "$unformatted" ]; then
  echo "test.sh: gofmt would change:" >&2
  echo "$unformatted" >&2
  exit 1
fi
go vet ./...
# gotestsum (pinned in tools/go.mod, a module of its own so that the
# library's users never see it) runs go test and prints each package as it
# finishes, with a failed test's output in full; go test alone prints
# packages in list order, so one slow package silenced all the others.
gotestsum_dir=$(mktemp -d)
trap 'rm -rf "$gotestsum_dir"' EXIT
(cd tools && go build -o "$gotestsum_dir/gotestsum" gotest.tools/gotestsum)
format=pkgname-and-test-fails
for a in "$@"; do [ "$a" = -v ] && format=standard-verbose; done
gotestsum() { "$gotestsum_dir/gotestsum" --format "$format" --format-icons text --format-hide-empty-pkg --hide-summary skipped -- "$@"; }
# The testbed runs real agents in network namespaces: it needs root, and
# runs on its own after the rest so that no other test shares its CPU. It
# runs without the race detector: the agents it measures are plain builds,
# but its own load generator and platform stubs would run slower, inside
# the latencies it reports (a local call's p50 0.8 ms plain, 1.3 ms raced;
# forwarded p50 12.0 ms plain, 12.8-13.0 ms raced, against the 13 ms its
# crash test allows).
gotestsum -race -count=1 -timeout 30m $(go list ./... | grep -v '/internal/testbed$') "$@"
$sudo env "PATH=$PATH" "HOME=$HOME" "GOCACHE=$(go env GOCACHE)" "GOMODCACHE=$(go env GOMODCACHE)" \
  "$gotestsum_dir/gotestsum" --format "$format" --format-icons text --format-hide-empty-pkg --hide-summary skipped -- -count=1 -timeout 10m ./internal/testbed "$@"
