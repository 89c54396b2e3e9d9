package local

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/openfaas/faas-provider/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/dfaas-go/dfaas"
	"github.com/dfaas-go/dfaas/faas"
	"github.com/dfaas-go/dfaas/faas/capacity"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func start(t *testing.T) *Provider {
	t.Helper()
	p, err := New(Config{})
	require.NoError(t, err)
	t.Cleanup(func() {
		require.NoError(t, p.Close())
		http.DefaultClient.CloseIdleConnections()
	})
	require.NoError(t, p.RegisterImage("dfaas/echo", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		_, _ = w.Write(append([]byte("echo: "), b...))
	})))
	return p
}

func call(t *testing.T, method, url string, body any) (int, string) {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		require.NoError(t, err)
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, url, rd)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(out)
}

func labels(kv ...string) *map[string]string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return &m
}

func TestProviderLifecycle(t *testing.T) {
	p := start(t)
	base := strings.TrimSuffix(p.URL(), "/")
	code, _ := call(t, "POST", base+"/system/functions", types.FunctionDeployment{Service: "echo", Image: "dfaas/echo", Labels: labels(LabelMaxRate, "20"),
		Constraints: []string{"node.platform.os == linux"}, ReadOnlyRootFilesystem: true})
	require.Equal(t, http.StatusAccepted, code)
	code, _ = call(t, "POST", base+"/system/functions", types.FunctionDeployment{Service: "shout", Image: "any", EnvProcess: "tr a-z A-Z"})
	require.Equal(t, http.StatusAccepted, code)

	code, body := call(t, "POST", base+"/function/echo", "hi")
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, "echo: hi", body)
	code, body = call(t, "POST", base+"/function/shout.openfaas-fn/sub/path", "quiet please")
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, "QUIET PLEASE", body)

	code, body = call(t, "GET", base+"/system/functions", nil)
	require.Equal(t, http.StatusOK, code)
	var list []types.FunctionStatus
	require.NoError(t, json.Unmarshal([]byte(body), &list))
	require.Len(t, list, 2)
	assert.Equal(t, "echo", list[0].Name)
	assert.Equal(t, float64(1), list[0].InvocationCount)
	assert.Equal(t, "20", (*list[0].Labels)[LabelMaxRate])
	assert.Equal(t, "echo", (*list[0].Labels)[LabelFunction], "as OpenFaaS's providers label every function")
	assert.Equal(t, []string{"node.platform.os == linux"}, list[0].Constraints, "the deployment's fields, as it set them")
	assert.True(t, list[0].ReadOnlyRootFilesystem)

	caps, err := p.Capacities(context.Background())
	require.NoError(t, err)
	assert.Equal(t, map[string]dfaas.Rate{"echo": 20, "shout": faas.Undeclared}, caps, "a function without the label declares none")

	code, _ = call(t, "PUT", base+"/system/functions", types.FunctionDeployment{Service: "echo", Image: "dfaas/echo", Labels: labels(LabelMaxRate, "5")})
	assert.Equal(t, http.StatusAccepted, code)
	caps, _ = p.Capacities(context.Background())
	assert.Equal(t, dfaas.Rate(5), caps["echo"])
	code, _ = call(t, "GET", base+"/system/function/echo", nil)
	assert.Equal(t, http.StatusOK, code)

	code, _ = call(t, "DELETE", base+"/system/functions", types.DeleteFunctionRequest{FunctionName: "echo"})
	assert.Equal(t, http.StatusAccepted, code)
	code, _ = call(t, "POST", base+"/function/echo", "hi")
	assert.Equal(t, http.StatusNotFound, code)
	code, _ = call(t, "DELETE", base+"/system/functions", types.DeleteFunctionRequest{FunctionName: "echo"})
	assert.Equal(t, http.StatusNotFound, code)

	code, body = call(t, "GET", base+"/system/info", nil)
	assert.Equal(t, http.StatusOK, code)
	assert.Contains(t, body, "dfaas-local")
}

func TestProviderRejectsBadDeployments(t *testing.T) {
	p := start(t)
	base := strings.TrimSuffix(p.URL(), "/")
	for name, spec := range map[string]any{
		"not json":           "{",
		"bad name":           types.FunctionDeployment{Service: "Bad_Name", Image: "dfaas/echo"},
		"unknown image":      types.FunctionDeployment{Service: "x", Image: "nope"},
		"missing command":    types.FunctionDeployment{Service: "x", EnvProcess: "/no/such/command"},
		"bad maxrate":        types.FunctionDeployment{Service: "x", Image: "dfaas/echo", Labels: labels(LabelMaxRate, "lots")},
		"bad concurrency":    types.FunctionDeployment{Service: "x", Image: "dfaas/echo", Labels: labels(LabelConcurrency, "0")},
		"bad timeout":        types.FunctionDeployment{Service: "x", Image: "dfaas/echo", Labels: labels(LabelTimeout, "soon")},
		"bad maxrtt":         types.FunctionDeployment{Service: "x", Image: "dfaas/echo", Labels: labels(LabelMaxRTT, "-5ms")},
		"bad namespace":      types.FunctionDeployment{Service: "x", Image: "dfaas/echo", Namespace: "Else/Where"},
		"update of a ghost!": nil,
	} {
		method := "POST"
		if spec == nil {
			method, spec = "PUT", types.FunctionDeployment{Service: "ghost", Image: "dfaas/echo"}
		}
		code, body := call(t, method, base+"/system/functions", spec)
		assert.Contains(t, []int{http.StatusBadRequest, http.StatusNotFound}, code, "%s: %s", name, body)
	}
	code, body := call(t, "GET", base+"/system/functions?namespace=elsewhere", nil)
	assert.Equal(t, http.StatusOK, code)
	assert.JSONEq(t, "[]", body)
	assert.Empty(t, p.Functions())
}

func TestConcurrencyLimitAndTimeout(t *testing.T) {
	p := start(t)
	base := strings.TrimSuffix(p.URL(), "/")
	release := make(chan struct{})
	require.NoError(t, p.RegisterImage("dfaas/block", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
			http.Error(w, "timed out", http.StatusGatewayTimeout)
		}
	})))
	code, _ := call(t, "POST", base+"/system/functions", types.FunctionDeployment{Service: "block", Image: "dfaas/block", Labels: labels(LabelConcurrency, "1")})
	require.Equal(t, http.StatusAccepted, code)
	done := make(chan int)
	go func() {
		resp, err := http.Post(base+"/function/block", "text/plain", nil)
		if err == nil {
			resp.Body.Close()
			done <- resp.StatusCode
			return
		}
		done <- 0
	}()
	require.Eventually(t, func() bool {
		f, _ := p.lookup(key{"openfaas-fn", "block"})
		return f.inflight.Load() == 1
	}, 5*time.Second, 5*time.Millisecond)
	code, _ = call(t, "POST", base+"/function/block", "")
	assert.Equal(t, http.StatusTooManyRequests, code, "second request over the concurrency of one")
	close(release)
	assert.Equal(t, http.StatusOK, <-done)

	code, _ = call(t, "POST", base+"/system/functions", types.FunctionDeployment{Service: "sleepy", Image: "x", EnvProcess: "sleep 5", Labels: labels(LabelTimeout, "100ms")})
	require.Equal(t, http.StatusAccepted, code)
	code, _ = call(t, "POST", base+"/function/sleepy", "")
	assert.Equal(t, http.StatusGatewayTimeout, code)
}

func TestNamespaces(t *testing.T) {
	p := start(t)
	base := strings.TrimSuffix(p.URL(), "/")
	// A deletion may name its namespace in the query, as faas-cli does.
	code, _ := call(t, "POST", base+"/system/functions", types.FunctionDeployment{Service: "gone", Image: "dfaas/echo", Namespace: "node-3"})
	require.Equal(t, http.StatusAccepted, code)
	code, _ = call(t, "DELETE", base+"/system/functions?namespace=node-3", types.DeleteFunctionRequest{FunctionName: "gone"})
	assert.Equal(t, http.StatusAccepted, code)
	for i, ns := range []string{"node-1", "node-2"} {
		code, _ := call(t, "POST", base+"/system/functions", types.FunctionDeployment{Service: "echo", Image: "dfaas/echo", Namespace: ns,
			Labels: labels(LabelMaxRate, []string{"10", "20"}[i])})
		require.Equal(t, http.StatusAccepted, code)
	}
	code, body := call(t, "GET", base+"/system/functions?namespace=node-2", nil)
	require.Equal(t, http.StatusOK, code)
	var list []types.FunctionStatus
	require.NoError(t, json.Unmarshal([]byte(body), &list))
	require.Len(t, list, 1)
	assert.Equal(t, "node-2", list[0].Namespace)
	assert.Equal(t, "20", (*list[0].Labels)[LabelMaxRate])
	assert.Equal(t, "echo", (*list[0].Labels)[LabelFunction], "as OpenFaaS's providers label every function")
	code, body = call(t, "POST", base+"/function/echo.node-1", "x")
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, "echo: x", body)
	code, _ = call(t, "POST", base+"/function/echo", "x")
	assert.Equal(t, http.StatusNotFound, code, "not in the default namespace")
	code, body = call(t, "GET", base+"/system/namespaces", nil)
	assert.Equal(t, http.StatusOK, code)
	assert.JSONEq(t, `["node-1","node-2","openfaas-fn"]`, body)
	code, _ = call(t, "DELETE", base+"/system/functions", types.DeleteFunctionRequest{FunctionName: "echo", Namespace: "node-1"})
	assert.Equal(t, http.StatusAccepted, code)
	code, _ = call(t, "POST", base+"/function/echo.node-1", "x")
	assert.Equal(t, http.StatusNotFound, code)
}

func TestEnforcedMaxRate(t *testing.T) {
	p, err := New(Config{EnforceMaxRate: true})
	require.NoError(t, err)
	defer p.Close()
	require.NoError(t, p.RegisterImage("dfaas/echo", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {})))
	base := strings.TrimSuffix(p.URL(), "/")
	code, _ := call(t, "POST", base+"/system/functions", types.FunctionDeployment{Service: "echo", Image: "dfaas/echo", Labels: labels(LabelMaxRate, "10")})
	require.Equal(t, http.StatusAccepted, code)
	ok := 0
	for range 30 {
		if code, _ := call(t, "POST", base+"/function/echo", ""); code == http.StatusOK {
			ok++
		}
	}
	assert.InDelta(t, 10, ok, 1, "a burst admits one second of the rate")
	http.DefaultClient.CloseIdleConnections()
}

// TestTimeoutKillsTheFunctionsChildren: a process function that forks a
// child and waits for it is killed with the child when it times out.
func TestTimeoutKillsTheFunctionsChildren(t *testing.T) {
	p := start(t)
	base := strings.TrimSuffix(p.URL(), "/")
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "child.pid")
	script := filepath.Join(dir, "forker.sh")
	require.NoError(t, os.WriteFile(script, []byte("#!/bin/sh\nsleep 30 &\necho $! > "+pidFile+"\nwait\n"), 0o755))
	code, _ := call(t, "POST", base+"/system/functions", types.FunctionDeployment{Service: "forker", Image: "x", EnvProcess: script,
		Labels: labels(LabelTimeout, "300ms")})
	require.Equal(t, http.StatusAccepted, code)
	start := time.Now()
	code, _ = call(t, "POST", base+"/function/forker", "")
	assert.Equal(t, http.StatusGatewayTimeout, code)
	assert.Less(t, time.Since(start), 5*time.Second, "the answer waited for the child")
	raw, err := os.ReadFile(pidFile)
	require.NoError(t, err)
	pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	require.NoError(t, err)
	assert.Eventually(t, func() bool { return syscall.Kill(pid, 0) != nil }, 2*time.Second, 20*time.Millisecond,
		"the function's child %d survived its timeout", pid)
}

func TestConfigValidate(t *testing.T) {
	require.NoError(t, Config{Namespace: "team-a"}.Validate())
	_, err := New(Config{Namespace: "a/b"})
	assert.ErrorIs(t, err, dfaas.ErrInvalidConfig)
}

func TestMaxRTTLabel(t *testing.T) {
	p := start(t)
	base := strings.TrimSuffix(p.URL(), "/")
	code, body := call(t, "POST", base+"/system/functions", types.FunctionDeployment{Service: "near", Image: "dfaas/echo",
		Labels: labels(LabelMaxRTT, "20ms")})
	require.Equal(t, http.StatusAccepted, code, body)
	code, body = call(t, "POST", base+"/system/functions", types.FunctionDeployment{Service: "any", Image: "dfaas/echo"})
	require.Equal(t, http.StatusAccepted, code, body)
	assert.Equal(t, map[string]time.Duration{"near": 20 * time.Millisecond}, p.MaxRTTs())
	for _, bad := range []string{"", "soon", "0s", "-1ms", "2m"} {
		_, err := ParseMaxRTT(bad)
		assert.Error(t, err, bad)
	}
}

// TestBuiltinImagesHaveARealCost: dfaas/cpu and dfaas/cpu-per-kib need no
// registration, take their cost from the deployment's environment, and
// refuse a cost that does not parse; dfaas.slo is checked and listed.
func TestBuiltinImagesHaveARealCost(t *testing.T) {
	p := start(t)
	base := strings.TrimSuffix(p.URL(), "/")
	assert.Equal(t, []string{"dfaas/cpu", "dfaas/cpu-per-kib"}, BuiltinImages())
	code, body := call(t, "POST", base+"/system/functions", types.FunctionDeployment{Service: "cpu", Image: "dfaas/cpu",
		EnvVars: map[string]string{EnvCost: "5ms"}, Labels: labels(LabelSLO, "p95=50ms")})
	require.Equal(t, http.StatusAccepted, code, body)
	code, body = call(t, "POST", base+"/system/functions", types.FunctionDeployment{Service: "hash", Image: "dfaas/cpu-per-kib"})
	require.Equal(t, http.StatusAccepted, code, body)
	code, body = call(t, "POST", base+"/function/cpu", "x")
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, "worked 5ms: x", body)
	code, body = call(t, "POST", base+"/function/hash", strings.Repeat("y", 2048))
	assert.Equal(t, http.StatusOK, code)
	assert.True(t, strings.HasPrefix(body, "worked 20ms: "), "two KiB at the default 10 ms: %.20s", body)

	for _, bad := range []types.FunctionDeployment{
		{Service: "bad", Image: "dfaas/cpu", EnvVars: map[string]string{EnvCost: "lots"}},
		{Service: "bad", Image: "dfaas/cpu", EnvVars: map[string]string{EnvCost: "-1ms"}},
		{Service: "bad", Image: "dfaas/cpu", Labels: labels(LabelSLO, "fast")},
		{Service: "bad", Image: "dfaas/none"},
	} {
		code, body = call(t, "POST", base+"/system/functions", bad)
		assert.Equal(t, http.StatusBadRequest, code, "%+v: %s", bad, body)
	}
	assert.Equal(t, map[string]capacity.Objective{"cpu": {Quantile: 0.95, Latency: 50 * time.Millisecond}}, p.Objectives())
	caps, err := p.Capacities(context.Background())
	require.NoError(t, err)
	assert.Equal(t, map[string]dfaas.Rate{"cpu": faas.Undeclared, "hash": faas.Undeclared}, caps)
}

// TestAnswersCarryTheWatchdogsDuration: a function's answer says how long
// it took in X-Duration-Seconds, as OpenFaaS's watchdogs say it, for Go
// handlers and processes alike.
func TestAnswersCarryTheWatchdogsDuration(t *testing.T) {
	p := start(t)
	base := strings.TrimSuffix(p.URL(), "/")
	code, body := call(t, "POST", base+"/system/functions", types.FunctionDeployment{Service: "cpu", Image: "dfaas/cpu",
		EnvVars: map[string]string{EnvCost: "20ms"}})
	require.Equal(t, http.StatusAccepted, code, body)
	code, body = call(t, "POST", base+"/system/functions", types.FunctionDeployment{Service: "cat", Image: "any", EnvProcess: "cat"})
	require.Equal(t, http.StatusAccepted, code, body)
	for fn, least := range map[string]float64{"cpu": 0.02, "cat": 0} {
		resp, err := http.Post(base+"/function/"+fn, "text/plain", strings.NewReader("x"))
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode, fn)
		d, err := strconv.ParseFloat(resp.Header.Get("X-Duration-Seconds"), 64)
		require.NoError(t, err, "%s: %v", fn, resp.Header)
		assert.GreaterOrEqual(t, d, least, fn)
		assert.Less(t, d, 5.0, fn)
	}
}

func TestMiddlewareWrapsEveryFunction(t *testing.T) {
	var seen []string
	p, err := New(Config{Middleware: func(name, ns string, next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			seen = append(seen, name+"."+ns)
			next.ServeHTTP(w, r)
		})
	}})
	require.NoError(t, err)
	t.Cleanup(func() {
		require.NoError(t, p.Close())
		http.DefaultClient.CloseIdleConnections()
	})
	base := strings.TrimSuffix(p.URL(), "/")
	code, body := call(t, "POST", base+"/system/functions", types.FunctionDeployment{Service: "cpu", Image: "dfaas/cpu", EnvVars: map[string]string{EnvCost: "1ms"}})
	require.Equal(t, http.StatusAccepted, code, body)
	code, _ = call(t, "POST", base+"/function/cpu", "x")
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, []string{"cpu.openfaas-fn"}, seen)
}

// TestTrickledBodyIsCutOff: a call's body that trickles in, never silent
// for long, is cut off BodyTimeout after the call's headers: HAProxy
// streams a large body to the platform with no bound on its total time,
// so the platform holds one.
func TestTrickledBodyIsCutOff(t *testing.T) {
	p, err := New(Config{BodyTimeout: 500 * time.Millisecond})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, p.Close()) })
	read := make(chan error, 1)
	require.NoError(t, p.RegisterImage("dfaas/sink", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := io.Copy(io.Discard, r.Body)
		read <- err
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
		}
	})))
	base := strings.TrimSuffix(p.URL(), "/")
	code, body := call(t, "POST", base+"/system/functions", types.FunctionDeployment{Service: "sink", Image: "dfaas/sink"})
	require.Equal(t, http.StatusAccepted, code, body)
	http.DefaultClient.CloseIdleConnections()

	c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	require.NoError(t, err)
	defer c.Close()
	_, err = io.WriteString(c, "POST /function/sink HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n")
	require.NoError(t, err)
	stop := make(chan struct{})
	defer close(stop)
	go func() { // 100 bytes every 100 ms: 1000 s for the whole body
		for {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			if _, err := io.WriteString(c, strings.Repeat("x", 100)); err != nil {
				return
			}
		}
	}()
	select {
	case err := <-read:
		var ne net.Error
		assert.True(t, errors.As(err, &ne) && ne.Timeout(), "the function's read ends in a timeout, not %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("the trickled body still held the call after 5 s")
	}
}

// TestWatchdogSemantics: process functions get the classic watchdog's
// environment and answers: the method, the path without /function/<name>,
// the query and every header (Http_<Name>); stderr in the answer unless
// combine_output is false; content_type; 408 past exec_timeout; 429 beyond
// max_inflight.
func TestWatchdogSemantics(t *testing.T) {
	p := start(t)
	base := strings.TrimSuffix(p.URL(), "/")
	dir := t.TempDir()
	script := func(name, body string) string {
		path := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(path, []byte("#!/bin/sh\n"+body+"\n"), 0o700))
		return path
	}
	show := script("show", `echo "$Http_Method $Http_Path $Http_Query $Http_X_Custom"; echo oops >&2`)
	deploy := func(name, process string, env map[string]string) {
		t.Helper()
		code, body := call(t, "POST", base+"/system/functions", types.FunctionDeployment{Service: name, Image: "any", EnvProcess: process, EnvVars: env})
		require.Equal(t, http.StatusAccepted, code, body)
	}
	deploy("show", show, nil)
	deploy("quiet", show, map[string]string{EnvCombineOutput: "false", EnvContentType: "application/json"})
	deploy("slow", script("slow", "sleep 3"), map[string]string{EnvExecTimeout: "1s"})
	deploy("one", script("one", "sleep 1"), map[string]string{EnvMaxInflight: "1"})

	req, _ := http.NewRequest("PUT", base+"/function/show/sub/path?a=1", nil)
	req.Header.Set("X-Custom", "yes")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, "PUT /sub/path a=1 yes\noops\n", string(b), "the watchdog's environment; stderr combined")

	resp, err = http.Post(base+"/function/quiet", "text/plain", nil)
	require.NoError(t, err)
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, "POST /  \n", string(b), "stdout alone")
	assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))

	t0 := time.Now()
	code, _ := call(t, "POST", base+"/function/slow", "")
	assert.Equal(t, http.StatusRequestTimeout, code)
	assert.Less(t, time.Since(t0), 2500*time.Millisecond, "cut at exec_timeout")

	done := make(chan int)
	go func() { c, _ := call(t, "POST", base+"/function/one", ""); done <- c }()
	time.Sleep(300 * time.Millisecond)
	code, _ = call(t, "POST", base+"/function/one", "")
	assert.Equal(t, http.StatusTooManyRequests, code, "beyond max_inflight")
	assert.Equal(t, http.StatusOK, <-done)

	code, _ = call(t, "POST", base+"/system/functions", types.FunctionDeployment{Service: "bad", Image: "any", EnvProcess: show,
		EnvVars: map[string]string{EnvExecTimeout: "soon"}})
	assert.Equal(t, http.StatusBadRequest, code)
}

// TestScaling: replicas mean something: each runs the function's
// concurrency (max_inflight) at once, a scale request changes them within
// the scale labels, status reports them, and a function scaled to zero
// comes back at its next call.
func TestScaling(t *testing.T) {
	p := start(t)
	base := strings.TrimSuffix(p.URL(), "/")
	release := make(chan struct{})
	require.NoError(t, p.RegisterImage("dfaas/block", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})))
	code, _ := call(t, "POST", base+"/system/functions", types.FunctionDeployment{Service: "block", Image: "dfaas/block",
		EnvVars: map[string]string{EnvMaxInflight: "1"}, Labels: labels(LabelScaleMax, "3")})
	require.Equal(t, http.StatusAccepted, code)
	replicas := func() uint64 {
		t.Helper()
		code, body := call(t, "GET", base+"/system/function/block", nil)
		require.Equal(t, http.StatusOK, code)
		var st types.FunctionStatus
		require.NoError(t, json.Unmarshal([]byte(body), &st))
		assert.Equal(t, st.Replicas, st.AvailableReplicas)
		return st.Replicas
	}
	scale := func(n uint64) {
		t.Helper()
		code, _ := call(t, "POST", base+"/system/scale-function/block", types.ScaleServiceRequest{ServiceName: "block", Replicas: n})
		require.Equal(t, http.StatusAccepted, code)
	}
	assert.Equal(t, uint64(1), replicas(), "the minimum, 1")
	blocked := func() chan int {
		done := make(chan int, 1)
		go func() { c, _ := call(t, "POST", base+"/function/block", ""); done <- c }()
		return done
	}
	first := blocked()
	f, _ := p.lookup(key{"openfaas-fn", "block"})
	require.Eventually(t, func() bool { return f.inflight.Load() == 1 }, 5*time.Second, 5*time.Millisecond)
	code, _ = call(t, "POST", base+"/function/block", "")
	assert.Equal(t, http.StatusTooManyRequests, code, "one replica, one call at once")
	scale(2)
	assert.Equal(t, uint64(2), replicas())
	second := blocked()
	require.Eventually(t, func() bool { return f.inflight.Load() == 2 }, 5*time.Second, 5*time.Millisecond, "two replicas, two calls")
	close(release)
	assert.Equal(t, http.StatusOK, <-first)
	assert.Equal(t, http.StatusOK, <-second)

	scale(10)
	assert.Equal(t, uint64(3), replicas(), "at most com.openfaas.scale.max")
	assert.Equal(t, 3, p.MaxInFlight()["block"], "what a node's measured capacity stays within: replicas times max_inflight")
	scale(0)
	assert.Equal(t, uint64(0), replicas(), "scaled to zero")
	code, _ = call(t, "POST", base+"/function/block", "")
	assert.Equal(t, http.StatusOK, code, "back from zero at its next call")
	assert.Equal(t, uint64(1), replicas())

	code, _ = call(t, "POST", base+"/system/functions", types.FunctionDeployment{Service: "bad", Image: "dfaas/block", Labels: labels(LabelScaleMin, "5", LabelScaleMax, "2")})
	assert.Equal(t, http.StatusBadRequest, code)
}
