// Package gatewaytest builds and runs a real OpenFaaS gateway for
// integration tests: the community edition's gateway at a pinned version,
// compiled from the Go module proxy into the user's cache (never vendored),
// started on loopback in front of a provider, with a minimal Prometheus
// query API beside it, since the gateway's function list asks Prometheus for
// invocation counts.
//
// The gateway binds :8080 and :8082 on all interfaces, as it always does:
// tests that use it must not run in parallel with each other.
package gatewaytest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Module and Version pin the gateway.
const (
	Module  = "github.com/openfaas/faas/gateway"
	Version = "v0.0.0-20260702090804-8d803bf9e265"
)

// URL is where the gateway listens: its port is fixed.
const URL = "http://127.0.0.1:8080"

// MetricsURL is the gateway's Prometheus metrics endpoint.
const MetricsURL = "http://127.0.0.1:8082/metrics"

var buildMu sync.Mutex

// Binary returns the path of the gateway binary, building it on first use
// into $DFAAS_CACHE or the user cache directory.
func Binary(ctx context.Context) (string, error) {
	buildMu.Lock()
	defer buildMu.Unlock()
	cache := os.Getenv("DFAAS_CACHE")
	if cache == "" {
		dir, err := os.UserCacheDir()
		if err != nil {
			dir = os.TempDir() // no home: build per machine boot instead
		}
		cache = filepath.Join(dir, "dfaas")
	}
	bin := filepath.Join(cache, "openfaas-gateway-"+Version+"-v2") // -v2: built with its version (ldflags)
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return "", fmt.Errorf("gatewaytest: %w", err)
	}
	scratch, err := os.MkdirTemp(cache, "gateway-build-")
	if err != nil {
		return "", fmt.Errorf("gatewaytest: %w", err)
	}
	defer os.RemoveAll(scratch)
	if err := os.WriteFile(filepath.Join(scratch, "go.mod"), []byte("module scratch/gateway\n\ngo 1.26\n"), 0o644); err != nil {
		return "", err
	}
	tmp := filepath.Join(scratch, "gateway")
	// The gateway reports its version and commit (/system/info), as a
	// release build does: the pseudo-version's commit.
	sha := Version[strings.LastIndex(Version, "-")+1:]
	ldflags := "-X " + Module + "/version.Version=" + Version + " -X " + Module + "/version.GitCommitSHA=" + sha
	for _, args := range [][]string{{"get", Module + "@" + Version}, {"build", "-ldflags", ldflags, "-o", tmp, Module}} {
		cmd := exec.CommandContext(ctx, "go", args...)
		cmd.Dir = scratch
		cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOWORK=off")
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			return "", fmt.Errorf("gatewaytest: go %v: %w\n%s", args, err, out.String())
		}
	}
	if err := os.Rename(tmp, bin); err != nil {
		return "", fmt.Errorf("gatewaytest: %w", err)
	}
	return bin, nil
}

// Gateway is a running gateway process.
type Gateway struct {
	cmd    *exec.Cmd
	prom   *http.Server
	out    *bytes.Buffer
	exited chan error
}

// Start runs the gateway in front of providerURL and waits until it answers.
func Start(ctx context.Context, providerURL string) (*Gateway, error) {
	bin, err := Binary(ctx)
	if err != nil {
		return nil, err
	}
	if c, err := net.DialTimeout("tcp", "127.0.0.1:8080", 200*time.Millisecond); err == nil {
		c.Close()
		return nil, errors.New("gatewaytest: port 8080 is taken; the gateway cannot start")
	}
	// A Prometheus that has seen no invocations yet.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	g := &Gateway{out: &bytes.Buffer{}, exited: make(chan error, 1)}
	g.prom = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"success","data":{"resultType":"vector","result":[]}}`))
	}), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = g.prom.Serve(l) }()
	port := l.Addr().(*net.TCPAddr).Port

	g.cmd = exec.Command(bin)
	g.cmd.Dir = os.TempDir()
	g.cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"),
		"functions_provider_url=" + providerURL,
		"faas_prometheus_host=127.0.0.1",
		"faas_prometheus_port=" + strconv.Itoa(port),
		"basic_auth=false",
		"read_timeout=30s", "write_timeout=30s", "upstream_timeout=25s",
	}
	g.cmd.Stdout, g.cmd.Stderr = syncWriter{g}, syncWriter{g}
	if err := g.cmd.Start(); err != nil {
		_ = g.prom.Close()
		return nil, fmt.Errorf("gatewaytest: start: %w", err)
	}
	go func() { g.exited <- g.cmd.Wait() }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(URL + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return g, nil
			}
		}
		select {
		case err := <-g.exited:
			_ = g.prom.Close()
			return nil, fmt.Errorf("gatewaytest: gateway exited: %v\n%s", err, g.Output())
		case <-ctx.Done():
			_ = g.Stop()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = g.Stop()
			return nil, fmt.Errorf("gatewaytest: gateway not ready after 20s\n%s", g.Output())
		}
	}
}

var outMu sync.Mutex

type syncWriter struct{ g *Gateway }

func (s syncWriter) Write(b []byte) (int, error) {
	outMu.Lock()
	defer outMu.Unlock()
	return s.g.out.Write(b)
}

// Output is what the gateway printed so far.
func (g *Gateway) Output() string {
	outMu.Lock()
	defer outMu.Unlock()
	return g.out.String()
}

// Stop ends the gateway and its Prometheus stub, and waits for both.
func (g *Gateway) Stop() error {
	_ = g.cmd.Process.Kill()
	<-g.exited
	g.exited <- errors.New("stopped") // later Stops return at once
	return g.prom.Close()
}
