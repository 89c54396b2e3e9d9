package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"flag"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"go.uber.org/goleak"
	"google.golang.org/protobuf/proto"

	"github.com/dfaas-go/dfaas"
	"github.com/dfaas-go/dfaas/balance"
	"github.com/dfaas-go/dfaas/faas"
	"github.com/dfaas-go/dfaas/faas/local"
	"github.com/dfaas-go/dfaas/node"
	"github.com/dfaas-go/dfaas/overlay"
	"github.com/dfaas-go/dfaas/proxy/haproxy"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestParseFlags(t *testing.T) {
	o, err := parseFlags([]string{"-functions", "hello=10, figlet=2.5", "-bootstrap", " a , b "}, io.Discard)
	require.NoError(t, err)
	assert.Len(t, o.functions, 2)
	assert.Equal(t, []string{"a", "b"}, o.bootstrap)
	for _, bad := range [][]string{{"-functions", "hello"}, {"-name", "edge 1"}, {"-name", "<b>x</b>"}, {"-functions", "Bad=1"}, {"-functions", "x=-1"}, {"-strategy", "nope"},
		{"-faas", "lambda"}, {"-faas", "openfaas", "-gateway", "not a url"}, {"-proxy", "nginx"}, {"-proxy", "haproxy"}} {
		_, err := parseFlags(bad, io.Discard)
		assert.Error(t, err, "%v", bad)
	}
}

// state adds -secret and -key files in a fresh directory to args.
func state(t *testing.T, args ...string) []string {
	dir := t.TempDir()
	return append(args, "-secret", filepath.Join(dir, "federation.key"), "-key", filepath.Join(dir, "node.key"))
}

// startAgent runs the agent's composition with args until stop or the test's
// end; it returns the node and stop (which returns run's result, once), or
// the error run returned at once.
func startAgent(t *testing.T, args []string) (_ *node.Node, stop func() error, _ error) {
	t.Helper()
	o, err := parseFlags(args, io.Discard)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan *node.Node, 1)
	done := make(chan error, 1)
	go func() { done <- run(ctx, o, slog.New(slog.DiscardHandler), func(p *node.Node) { ready <- p }) }()
	select {
	case n := <-ready:
		var once sync.Once
		var result error
		stop = func() error {
			once.Do(func() {
				cancel()
				result = <-done
			})
			return result
		}
		t.Cleanup(func() { assert.NoError(t, stop()) })
		return n, stop, nil
	case err := <-done:
		cancel()
		return nil, nil, err
	}
}

// TestAgentFederation: the first agent creates the federation secret and
// its key (0600); a second agent without the secret is refused at start, a
// second agent with a copy joins; a restarted agent keeps its node id; an
// agent holding another secret never joins.
func TestAgentFederation(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "federation.key")
	first, _, err := startAgent(t, []string{"-user", "127.0.0.1:0", "-peer", "127.0.0.1:0", "-interval", "100ms",
		"-secret", secret, "-key", filepath.Join(dir, "a.key")})
	require.NoError(t, err)
	for _, f := range []string{secret, filepath.Join(dir, "a.key"), filepath.Join(dir, "a.key.seq")} {
		st, err := os.Stat(f)
		require.NoError(t, err)
		assert.Equal(t, os.FileMode(0o600), st.Mode().Perm(), f)
	}
	boot := strings.Join(first.Overlay.(*overlay.Libp2p).Addrs(), ",")

	_, _, err = startAgent(t, []string{"-user", "127.0.0.1:0", "-peer", "127.0.0.1:0", "-bootstrap", boot,
		"-secret", filepath.Join(dir, "missing.key"), "-key", filepath.Join(dir, "b.key")})
	require.ErrorContains(t, err, "copy it from the federation's first agent")

	other := t.TempDir()
	_, err = overlay.GenerateSecret(filepath.Join(other, "x.key"))
	require.NoError(t, err)
	stranger, _, err := startAgent(t, []string{"-user", "127.0.0.1:0", "-peer", "127.0.0.1:0", "-interval", "100ms",
		"-bootstrap", boot, "-secret", filepath.Join(other, "x.key"), "-key", filepath.Join(other, "n.key")})
	require.NoError(t, err, "another federation's secret starts, but joins nothing")

	second, _, err := startAgent(t, []string{"-user", "127.0.0.1:0", "-peer", "127.0.0.1:0", "-interval", "100ms",
		"-bootstrap", boot, "-secret", secret, "-key", filepath.Join(dir, "b.key")})
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		return len(first.Overlay.Adverts(time.Now())) == 1 && len(second.Overlay.Adverts(time.Now())) == 1
	}, 10*time.Second, 50*time.Millisecond, "the member did not join")
	assert.Equal(t, second.Overlay.Self(), first.Overlay.Adverts(time.Now())[0].Node)
	assert.Empty(t, stranger.Overlay.Adverts(time.Now()))

	// The neighbourhood shows in the metrics: each follows the other.
	srv := httptest.NewServer(first.AdminHandler())
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/metrics")
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	assert.Contains(t, string(body), "\ndfaas_overlay_following 1\n")
	assert.Contains(t, string(body), "\ndfaas_overlay_followers 1\n")
	assert.Contains(t, string(body), "\ndfaas_overlay_followers_evicted_total 0\n")
	assert.Contains(t, string(body), "\ndfaas_overlay_redials_total ")
	assert.NotContains(t, first.Overlay.(*overlay.Libp2p).Members(), stranger.Overlay.Self())

	k, _, err := overlay.LoadOrCreateKey(filepath.Join(dir, "b.key"))
	require.NoError(t, err)
	id, err := peer.IDFromPrivateKey(k)
	require.NoError(t, err)
	assert.Equal(t, string(second.Overlay.Self()), id.String(), "the node id is the key file's")
}

// TestAgentServes starts the agent binary's composition and calls its
// function through the user port.
func TestAgentServes(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	admin := l.Addr().String()
	require.NoError(t, l.Close())
	px, stop, err := startAgent(t, state(t, "-user", "127.0.0.1:0", "-peer", "127.0.0.1:0", "-interval", "100ms", "-admin", admin, "-name", "edge-1"))
	require.NoError(t, err)
	url := "http://" + px.DataPlane.UserAddr() + "/function/hello"
	require.Eventually(t, func() bool { // until the first plan is applied
		resp, err := http.Post(url, "text/plain", strings.NewReader("world"))
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode == http.StatusOK && string(b) == "hello on node edge-1: world" // -name
	}, 5*time.Second, 20*time.Millisecond)
	resp, err := http.Get("http://" + admin + "/readyz")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	resp, err = http.Get("http://" + admin + "/status")
	require.NoError(t, err)
	var st node.Status
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&st))
	resp.Body.Close()
	assert.Equal(t, px.Overlay.Self(), st.Node)
	assert.Contains(t, st.State.Functions, "hello")
	require.NoError(t, stop())
	http.DefaultClient.CloseIdleConnections()
}

// helloProvider is a faas/local provider with the function hello deployed
// through its API, at 50 req/s, in namespace ns ("": the default).
func helloProvider(t *testing.T, ns string) *local.Provider {
	t.Helper()
	provider, err := local.New(local.Config{Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	t.Cleanup(func() { _ = provider.Close() })
	require.NoError(t, provider.RegisterImage("dfaas/hello", faas.HandlerFunc(func(_ context.Context, b []byte) ([]byte, error) {
		return append([]byte("hi "), b...), nil
	})))
	spec := `{"service":"hello","image":"dfaas/hello","namespace":"` + ns + `","labels":{"dfaas.maxrate":"50"}}`
	resp, err := http.Post(provider.URL()+"system/functions", "application/json", strings.NewReader(spec))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusAccepted, resp.StatusCode)
	return provider
}

// TestAgentOnOpenFaaSAPI runs the agent with -faas openfaas against
// faas/local, which serves the same function API as the gateway (the real
// gateway's tests live in faas/openfaas, which owns its fixed ports), and
// checks that the credentials never reach the log.
func TestAgentOnOpenFaaSAPI(t *testing.T) {
	provider := helloProvider(t, "")

	t.Setenv("OPENFAAS_USERNAME", "admin")
	t.Setenv("OPENFAAS_PASSWORD", "s3cret-pa55")
	o, err := parseFlags(state(t, "-faas", "openfaas", "-gateway", strings.TrimSuffix(provider.URL(), "/"),
		"-user", "127.0.0.1:0", "-peer", "127.0.0.1:0", "-interval", "100ms"), io.Discard)
	require.NoError(t, err)
	var logs bytes.Buffer
	var mu sync.Mutex
	log := slog.New(slog.NewTextHandler(lockedWriter{&mu, &logs}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan *node.Node, 1)
	done := make(chan error, 1)
	go func() { done <- run(ctx, o, log, func(p *node.Node) { ready <- p }) }()
	px := <-ready
	require.Eventually(t, func() bool {
		resp, err := http.Post("http://"+px.DataPlane.UserAddr()+"/function/hello", "text/plain", strings.NewReader("edge"))
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode == http.StatusOK && string(b) == "hi edge"
	}, 5*time.Second, 20*time.Millisecond)
	cancel()
	require.NoError(t, <-done)
	http.DefaultClient.CloseIdleConnections()
	mu.Lock()
	defer mu.Unlock()
	assert.Contains(t, logs.String(), "agent up")
	assert.NotContains(t, logs.String(), "s3cret-pa55")
}

// TestAgentOnHAProxy runs the agent with HAProxy as its data plane in front
// of faas/local.
func TestAgentOnHAProxy(t *testing.T) {
	provider := helloProvider(t, "team-a")
	free := func() string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		defer l.Close()
		return l.Addr().String()
	}
	o, err := parseFlags(state(t, "-proxy", "haproxy", "-faas", "openfaas", "-gateway", strings.TrimSuffix(provider.URL(), "/"),
		"-fn-namespace", "team-a", "-user", free(), "-peer", free(), "-interval", "100ms"), io.Discard)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan *node.Node, 1)
	done := make(chan error, 1)
	var logs bytes.Buffer
	var mu sync.Mutex
	log := slog.New(slog.NewTextHandler(lockedWriter{&mu, &logs}, nil))
	go func() { done <- run(ctx, o, log, func(p *node.Node) { ready <- p }) }()
	stopped := false
	defer func() { // stop the agent, and its HAProxy, even when the test fails
		if !stopped {
			cancel()
			<-done
		}
		if t.Failed() {
			mu.Lock()
			t.Log(logs.String())
			mu.Unlock()
		}
	}()
	var px *node.Node
	select {
	case px = <-ready:
	case err := <-done:
		stopped = true
		t.Fatal(err)
	}
	info, err := px.DataPlane.(*haproxy.Driver).Info()
	require.NoError(t, err)
	pid := info["Pid"]
	var last string
	served := assert.Eventually(t, func() bool {
		resp, err := http.Post("http://"+px.DataPlane.UserAddr()+"/function/hello", "text/plain", strings.NewReader("edge"))
		if err != nil {
			last = err.Error()
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		last = resp.Status + " " + string(b)
		return resp.StatusCode == http.StatusOK && string(b) == "hi edge"
	}, 10*time.Second, 20*time.Millisecond)
	if !served {
		t.Fatalf("last answer: %s", last)
	}
	counts, err := px.DataPlane.Counts(t.Context())
	require.NoError(t, err)
	assert.Positive(t, counts["hello"].ServedLocal)
	info, err = px.DataPlane.(*haproxy.Driver).Info()
	require.NoError(t, err)
	assert.Equal(t, pid, info["Pid"], "the deployed function had its backend from the start: no reload")
	cancel()
	stopped = true
	require.NoError(t, <-done)
	http.DefaultClient.CloseIdleConnections()
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

// TestConfigLayers: the file sets what nothing else does, the environment
// overrides the file, flags override both; a bad value or an unknown key is
// an error naming it.
func TestConfigLayers(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "agent.yaml")
	require.NoError(t, os.WriteFile(file, []byte("user: 127.0.0.1:7000\ninterval: 3s\nfunctions: {a: 1, b: 2.5}\n"+
		"bootstrap: [x, y]\nlog-format: json\nstrategy: proportional\n"), 0o600))
	env := map[string]string{"DFAAS_INTERVAL": "2s", "DFAAS_STRATEGY": "resilient"}
	o, err := parseConfig([]string{"-config", file, "-strategy", "nearest"}, io.Discard, func(k string) string { return env[k] })
	require.NoError(t, err)
	assert.Equal(t, "127.0.0.1:7000", o.user, "from the file")
	assert.Equal(t, map[string]dfaas.Rate{"a": 1, "b": 2.5}, o.functions)
	assert.Equal(t, []string{"x", "y"}, o.bootstrap)
	assert.Equal(t, "json", o.logFormat)
	assert.Equal(t, 2*time.Second, o.interval, "the environment over the file")
	assert.Equal(t, balance.Nearest{}, o.strategy, "a flag over both")

	for name, c := range map[string]struct {
		file, env, want string
	}{
		"bad value":   {"interval: soon\n", "", "interval"},
		"unknown key": {"colour: blue\n", "", `unknown key "colour"`},
		"nested":      {"user: {a: b}\n", "", "user"},
		"bad env":     {"", "DFAAS_INTERVAL", "DFAAS_INTERVAL"},
		"bad format":  {"log-format: xml\n", "", "log-format"},
		"bad level":   {"log-level: loud\n", "", "log-level"},
		// Values checked after the layers name their file and line, or
		// their environment variable, too.
		"bad strategy":  {"interval: 1s\nstrategy: nearst\n", "", "bad.yaml line 2"},
		"bad functions": {"functions: {hello: ten}\n", "", "bad.yaml line 1"},
		"level line":    {"\nlog-level: verbose\n", "", "bad.yaml line 2"},
		"env strategy":  {"", "DFAAS_STRATEGY", "environment DFAAS_STRATEGY"},
		"no unit":       {"interval: 1\n", "", "want a duration with its unit"},
		"no neighbours": {"neighbours: 0\n", "", "neighbours"},
		"no file":       {"-", "", "config"},
		"insecure":      {"insecure: true\n", "", "command-line flag only"},
		"env insecure":  {"", "DFAAS_INSECURE", "command-line flag only"},
	} {
		path := filepath.Join(dir, "bad.yaml")
		require.NoError(t, os.WriteFile(path, []byte(c.file), 0o600))
		if c.file == "-" {
			path = filepath.Join(dir, "missing.yaml")
		}
		_, err := parseConfig([]string{"-config", path}, io.Discard, func(k string) string {
			if k == c.env {
				return "later"
			}
			return ""
		})
		require.Error(t, err, name)
		assert.Contains(t, err.Error(), c.want, name)
	}
}

// TestUnknownEnvironment: DFAAS_ variables that set no flag are named
// (the agent warns of them at start); others and known ones are not.
func TestUnknownEnvironment(t *testing.T) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.Int("neighbours", 16, "")
	fs.String("fn-namespace", "", "")
	got := unknownEnv(fs, []string{"DFAAS_NEIGHBORS=3", "DFAAS_NEIGHBOURS=3", "DFAAS_FN_NAMESPACE=a", "HOME=/root", "DFAAS_=x", "PATH=/bin"})
	assert.Equal(t, []string{"DFAAS_", "DFAAS_NEIGHBORS"}, got)
}

// TestAgentFromTheSampleConfig: the sample configuration (docs/operators.md) runs an
// agent as it is, with only its paths and addresses moved by the
// environment (as a test must).
func TestAgentFromTheSampleConfig(t *testing.T) {
	dir := t.TempDir()
	env := map[string]string{"DFAAS_SECRET": filepath.Join(dir, "federation.key"), "DFAAS_KEY": filepath.Join(dir, "node.key"),
		"DFAAS_USER": "127.0.0.1:0", "DFAAS_PEER": "127.0.0.1:0", "DFAAS_ADVERTISE": "127.0.0.1:9", "DFAAS_ADMIN": "127.0.0.1:0",
		"DFAAS_LISTEN": "/ip4/127.0.0.1/tcp/0"}
	o, err := parseConfig([]string{"-config", "agent.yaml"}, io.Discard, func(k string) string { return env[k] })
	require.NoError(t, err)
	assert.Equal(t, map[string]dfaas.Rate{"hello": 10}, o.functions)
	assert.Equal(t, 10*time.Second, o.drain)
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan *node.Node, 1)
	done := make(chan error, 1)
	go func() { done <- run(ctx, o, slog.New(slog.DiscardHandler), func(n *node.Node) { ready <- n }) }()
	var n *node.Node
	select {
	case n = <-ready:
	case err := <-done:
		t.Fatal(err)
	}
	require.Eventually(t, func() bool { ok, _ := n.Ready(); return ok }, 5*time.Second, 20*time.Millisecond)
	cancel()
	require.NoError(t, <-done)
}

// TestAgentExportsTraces: with -otlp the agent sends its spans to the
// OTLP/HTTP endpoint, under the service dfaas-agent and its name; a call
// that arrives with a sampled trace context is traced whatever
// -trace-sample says, and the spans are flushed when the agent stops.
func TestAgentExportsTraces(t *testing.T) {
	var mu sync.Mutex
	var got []*coltrace.ExportTraceServiceRequest
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		req := &coltrace.ExportTraceServiceRequest{}
		if r.URL.Path != "/v1/traces" || err != nil || proto.Unmarshal(body, req) != nil {
			http.Error(w, "not an OTLP/HTTP trace export", http.StatusBadRequest)
			return
		}
		mu.Lock()
		got = append(got, req)
		mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
		b, _ := proto.Marshal(&coltrace.ExportTraceServiceResponse{})
		_, _ = w.Write(b)
	}))
	defer collector.Close()
	px, stop, err := startAgent(t, state(t, "-user", "127.0.0.1:0", "-peer", "127.0.0.1:0", "-interval", "100ms", "-name", "edge-1",
		"-otlp", collector.URL, "-trace-sample", "0"))
	require.NoError(t, err)
	const traceID, parent = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	call := func(sampled string) int {
		req, err := http.NewRequest(http.MethodGet, "http://"+px.DataPlane.UserAddr()+"/function/hello", nil)
		require.NoError(t, err)
		if sampled != "" {
			req.Header.Set("traceparent", "00-"+traceID+"-"+parent+"-"+sampled)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	require.Eventually(t, func() bool { return call("01") == http.StatusOK }, 5*time.Second, 20*time.Millisecond)
	assert.Equal(t, http.StatusOK, call(""), "not sampled: -trace-sample 0")
	require.NoError(t, stop())
	http.DefaultClient.CloseIdleConnections()

	mu.Lock()
	defer mu.Unlock()
	names := map[string]int{}
	for _, req := range got {
		for _, rs := range req.ResourceSpans {
			res := map[string]string{}
			for _, kv := range rs.Resource.Attributes {
				res[kv.Key] = kv.Value.GetStringValue()
			}
			assert.Equal(t, "dfaas-agent", res["service.name"])
			assert.Equal(t, "edge-1", res["dfaas.node.name"])
			for _, ss := range rs.ScopeSpans {
				for _, s := range ss.Spans {
					assert.Equal(t, traceID, hex.EncodeToString(s.TraceId), "only the sampled calls' trace")
					names[s.Name]++
				}
			}
		}
	}
	assert.Positive(t, names["dfaas.user"], "exported: %v", names)
	assert.Positive(t, names["dfaas.execute"], "exported: %v", names)
}
