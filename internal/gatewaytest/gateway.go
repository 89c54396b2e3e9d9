// Package gatewaytest builds and runs a real OpenFaaS gateway for
// integration tests: the community edition's gateway at a pinned version,
// compiled from the Go module proxy into the user's cache (never vendored),
// started on loopback in front of a provider, with a minimal Prometheus
// query API beside it, since the gateway's function list asks Prometheus for
// invocation counts.
//
// With Options.Async, the gateway's asynchronous path runs too, as OpenFaaS
// CE ships it: a NATS Streaming server and OpenFaaS's NATS queue worker,
// both compiled the same way, both on loopback; the worker runs queued
// calls through the gateway and posts their results to X-Callback-Url.
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
	"slices"
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

// The asynchronous path's parts, pinned: the NATS Streaming server and
// the queue worker the community edition's gateway speaks to (NATS
// Streaming is deprecated upstream, but it is what this gateway uses).
const (
	NATSModule        = "github.com/nats-io/nats-streaming-server"
	NATSVersion       = "v0.25.6"
	QueueWorkerModule = "github.com/openfaas/nats-queue-worker"
	QueueWorkerVer    = "v0.0.0-20250415083406-ed5414157b54"
)

var buildMu sync.Mutex

// Binary returns the path of the gateway binary, building it on first use
// into $DFAAS_CACHE or the user cache directory.
func Binary(ctx context.Context) (string, error) {
	// The gateway reports its version and commit (/system/info), as a
	// release build does: the pseudo-version's commit.
	sha := Version[strings.LastIndex(Version, "-")+1:]
	ldflags := "-X " + Module + "/version.Version=" + Version + " -X " + Module + "/version.GitCommitSHA=" + sha
	return build(ctx, "openfaas-gateway-"+Version+"-v2", Module, Version, ldflags) // -v2: built with its version (ldflags)
}

// build returns the path of module@version's main package built as name,
// building it on first use into $DFAAS_CACHE or the user cache directory.
func build(ctx context.Context, name, module, version, ldflags string) (string, error) {
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
	bin := filepath.Join(cache, name)
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return "", fmt.Errorf("gatewaytest: %w", err)
	}
	scratch, err := os.MkdirTemp(cache, "build-")
	if err != nil {
		return "", fmt.Errorf("gatewaytest: %w", err)
	}
	defer os.RemoveAll(scratch)
	if err := os.WriteFile(filepath.Join(scratch, "go.mod"), []byte("module scratch/build\n\ngo 1.26\n"), 0o644); err != nil {
		return "", err
	}
	tmp := filepath.Join(scratch, "bin")
	for _, args := range [][]string{{"get", module + "@" + version}, {"build", "-ldflags", ldflags, "-o", tmp, module}} {
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

// Gateway is a running gateway process, with its asynchronous path's
// processes if it was asked for.
type Gateway struct {
	cmd    *exec.Cmd
	prom   *http.Server
	out    *bytes.Buffer
	exited chan error
	async  []proc // the NATS Streaming server and the queue worker
}

// proc is a process started, and its end.
type proc struct {
	cmd    *exec.Cmd
	exited chan error
}

// start starts cmd and returns it with a channel its end is sent on.
func start(cmd *exec.Cmd) (proc, error) {
	if err := cmd.Start(); err != nil {
		return proc{}, err
	}
	p := proc{cmd: cmd, exited: make(chan error, 1)}
	go func() { p.exited <- cmd.Wait() }()
	return p, nil
}

// Options are what a gateway runs with beyond its defaults.
type Options struct {
	// Async starts the asynchronous path: /async-function/<name> answers
	// 202 and the queue worker runs the call through the gateway.
	Async bool
}

// Start runs the gateway in front of providerURL and waits until it answers.
func Start(ctx context.Context, providerURL string) (*Gateway, error) {
	return StartWith(ctx, providerURL, Options{})
}

// StartWith runs the gateway in front of providerURL with o and waits until
// it answers.
func StartWith(ctx context.Context, providerURL string, o Options) (g *Gateway, err error) {
	bin, err := Binary(ctx)
	if err != nil {
		return nil, err
	}
	var natsBin, workerBin string
	if o.Async {
		if natsBin, err = build(ctx, "nats-streaming-server-"+NATSVersion, NATSModule, NATSVersion, ""); err != nil {
			return nil, err
		}
		if workerBin, err = build(ctx, "nats-queue-worker-"+QueueWorkerVer, QueueWorkerModule, QueueWorkerVer, ""); err != nil {
			return nil, err
		}
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
	g = &Gateway{out: &bytes.Buffer{}, exited: make(chan error, 1)}
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
	var natsPort int
	if o.Async {
		if natsPort, err = g.startNATS(ctx, natsBin); err != nil {
			_ = g.prom.Close()
			return nil, err
		}
		g.cmd.Env = append(g.cmd.Env, "faas_nats_address=127.0.0.1", "faas_nats_port="+strconv.Itoa(natsPort))
	}
	g.cmd.Stdout, g.cmd.Stderr = syncWriter{g}, syncWriter{g}
	if err := g.cmd.Start(); err != nil {
		g.stopAsync()
		_ = g.prom.Close()
		return nil, fmt.Errorf("gatewaytest: start: %w", err)
	}
	if o.Async {
		// The worker connects once, at start, and panics if NATS is not
		// there: NATS answered before the gateway started.
		w := exec.Command(workerBin)
		w.Dir = os.TempDir()
		w.Env = []string{"PATH=" + os.Getenv("PATH"), "faas_nats_address=127.0.0.1", "faas_nats_port=" + strconv.Itoa(natsPort),
			"faas_gateway_address=127.0.0.1", "faas_gateway_port=8080", "faas_print_body=false", "ack_wait=30s", "max_inflight=4"}
		w.Stdout, w.Stderr = syncWriter{g}, syncWriter{g}
		p, err := start(w)
		if err != nil {
			_ = g.Stop()
			return nil, fmt.Errorf("gatewaytest: queue worker: %w", err)
		}
		g.async = append(g.async, p)
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

// Stop ends the gateway, its asynchronous path and its Prometheus stub,
// and waits for them.
func (g *Gateway) Stop() error {
	_ = g.cmd.Process.Kill()
	<-g.exited
	g.exited <- errors.New("stopped") // later Stops return at once
	g.stopAsync()
	return g.prom.Close()
}

// startNATS starts the NATS Streaming server on a free loopback port (a
// few tries: a port found free can be taken before the server binds it)
// and returns the port once it accepts connections.
func (g *Gateway) startNATS(ctx context.Context, bin string) (int, error) {
	var last error
	for range 5 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		_ = l.Close()
		// faas-cluster: the cluster id the gateway and the worker use by
		// default; the store in memory (a test's queue need not outlive it).
		cmd := exec.Command(bin, "-a", "127.0.0.1", "-p", strconv.Itoa(port), "-cid", "faas-cluster", "-m", "0")
		cmd.Dir = os.TempDir()
		cmd.Stdout, cmd.Stderr = syncWriter{g}, syncWriter{g}
		p, err := start(cmd)
		if err != nil {
			return 0, fmt.Errorf("gatewaytest: NATS Streaming: %w", err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			c, err := net.DialTimeout("tcp", l.Addr().String(), 200*time.Millisecond)
			if err == nil {
				c.Close()
				// Streaming is up a moment after its NATS port.
				time.Sleep(300 * time.Millisecond)
				g.async = append(g.async, p)
				return port, nil
			}
			select {
			case err := <-p.exited:
				last = fmt.Errorf("gatewaytest: NATS Streaming exited: %v\n%s", err, g.Output())
			case <-ctx.Done():
				_ = cmd.Process.Kill()
				<-p.exited
				return 0, ctx.Err()
			case <-time.After(50 * time.Millisecond):
				if time.Now().Before(deadline) {
					continue
				}
				_ = cmd.Process.Kill()
				<-p.exited
				last = fmt.Errorf("gatewaytest: NATS Streaming not ready after 10s\n%s", g.Output())
			}
			break
		}
	}
	return 0, last
}

// stopAsync ends the queue worker and the NATS Streaming server, and waits
// for them.
func (g *Gateway) stopAsync() {
	for _, p := range slices.Backward(g.async) {
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
	g.async = nil
}
