package openfaas

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/openfaas/faas-provider/types"
	sdk "github.com/openfaas/go-sdk"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/dfaas-go/dfaas"
	"github.com/dfaas-go/dfaas/faas"
	"github.com/dfaas-go/dfaas/faas/local"
	"github.com/dfaas-go/dfaas/internal/gatewaytest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var quiet = slog.New(slog.DiscardHandler)

func TestConfigValidate(t *testing.T) {
	for _, c := range []Config{{}, {Gateway: "ftp://x"}, {Gateway: "http://"}, {Gateway: "http://x", Username: "u"},
		{Gateway: "http://x", DefaultCapacity: -1}, {Gateway: "http://x", Namespace: "a/b"}, {Gateway: "http://x", FunctionTimeout: -1}} {
		_, err := New(c)
		assert.ErrorIs(t, err, dfaas.ErrInvalidConfig, "%+v", c)
		assert.ErrorIs(t, c.Validate(), dfaas.ErrInvalidConfig, "%+v", c)
	}
	err := Config{Gateway: "ftp://user:secret@x"}.Validate()
	assert.NotContains(t, err.Error(), "secret", "the error names the gateway without its password")
	err = Config{Gateway: "http://user:secret@x:bad port"}.Validate()
	assert.NotContains(t, err.Error(), "secret")
	assert.NoError(t, Config{Gateway: "http://127.0.0.1:8080", Namespace: "team-a"}.Validate())
}

func TestInvokePath(t *testing.T) {
	b, err := New(Config{Gateway: "http://127.0.0.1:8080"})
	require.NoError(t, err)
	assert.Equal(t, "/function/hello.openfaas-fn", b.invokePath("/function/hello"))
	assert.Equal(t, "/function/hello.openfaas-fn/a/b", b.invokePath("/function/hello/a/b"))
	assert.Equal(t, "/other", b.invokePath("/other"))
}

// TestAgainstTheRealGateway deploys, lists, invokes and removes functions
// through the OpenFaaS gateway in front of faas/local, with go-sdk, and
// checks the backend through the gateway going down and coming back.
func TestAgainstTheRealGateway(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	provider, err := local.New(local.Config{Logger: quiet})
	require.NoError(t, err)
	defer provider.Close()
	require.NoError(t, provider.RegisterImage("dfaas/hello", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		_, _ = w.Write(append([]byte("hello "), b...))
	})))
	gw, err := gatewaytest.Start(ctx, provider.URL())
	require.NoError(t, err)
	stopped := false
	defer func() {
		if !stopped {
			_ = gw.Stop()
		}
	}()

	gwURL, _ := url.Parse(gatewaytest.URL)
	client := sdk.NewClient(gwURL, nil, http.DefaultClient)
	_, err = client.Deploy(ctx, types.FunctionDeployment{Service: "hello", Image: "dfaas/hello",
		Labels: &map[string]string{LabelMaxRate: "20", local.LabelMaxRTT: "20ms", "team": "edge"}, Annotations: &map[string]string{"owner": "ops"},
		EnvVars: map[string]string{local.EnvMaxInflight: "4"}})
	require.NoError(t, err)
	_, err = client.Deploy(ctx, types.FunctionDeployment{Service: "shout", Image: "classic", EnvProcess: "tr a-z A-Z"})
	require.NoError(t, err)

	// The gateway reports its version (OpenFaaS's certifier asks).
	resp, err := http.Get(gatewaytest.URL + "/system/info")
	require.NoError(t, err)
	var info struct {
		Version struct{ Release, SHA string } `json:"version"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&info))
	resp.Body.Close()
	assert.Equal(t, gatewaytest.Version, info.Version.Release)
	assert.NotEmpty(t, info.Version.SHA)

	// Secrets through the gateway's API, kept by faas/local.
	_, err = client.CreateSecret(ctx, types.Secret{Name: "api-key", Value: "s3cret"})
	require.NoError(t, err, gw.Output())
	secrets, err := client.GetSecrets(ctx, "")
	require.NoError(t, err)
	assert.Equal(t, []types.Secret{{Name: "api-key", Namespace: "openfaas-fn"}}, secrets)
	require.NoError(t, client.DeleteSecret(ctx, "api-key", ""))

	b, err := New(Config{Gateway: gatewaytest.URL, Logger: quiet})
	require.NoError(t, err)
	defer b.Close()
	fns, err := b.Functions(ctx)
	require.NoError(t, err, gw.Output())
	require.Len(t, fns, 2)
	assert.Equal(t, "hello", fns[0].Name)
	assert.Equal(t, "edge", fns[0].Labels["team"])
	assert.Equal(t, "ops", fns[0].Annotations["owner"])
	caps, err := b.Capacities(ctx)
	require.NoError(t, err)
	assert.Equal(t, map[string]dfaas.Rate{"hello": 20, "shout": faas.Undeclared}, caps, "a function without the label declares none")
	assert.Equal(t, 20*time.Millisecond, fns[0].MaxRTT)
	assert.Equal(t, map[string]time.Duration{"hello": 20 * time.Millisecond}, b.MaxRTTs(), "the RTT budget label")
	assert.Equal(t, map[string]int{"hello": 4}, b.MaxInFlight(), "max_inflight times one replica")

	srv := httptest.NewServer(b.Handler())
	defer srv.Close()
	post := func(path, body string) (int, string) {
		resp, err := http.Post(srv.URL+path, "text/plain", strings.NewReader(body))
		require.NoError(t, err)
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(out)
	}
	code, body := post("/function/hello", "edge")
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, "hello edge", body)
	code, body = post("/function/shout/x", "quiet")
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, "QUIET", body)
	code, _ = post("/function/nope", "")
	assert.NotEqual(t, http.StatusOK, code)

	// The gateway counts the invocations in its Prometheus metrics.
	resp, err = http.Get(gatewaytest.MetricsURL)
	require.NoError(t, err)
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Contains(t, string(metrics), `gateway_function_invocation_total{code="200",function_name="hello.openfaas-fn"} 1`)
	inv, err := b.ReadInvocations(ctx, gatewaytest.MetricsURL)
	require.NoError(t, err)
	assert.Equal(t, 1.0, inv["hello"].ByCode["200"])
	assert.Equal(t, 1.0, inv["shout"].ByCode["200"])
	assert.Positive(t, inv["hello"].Seconds)
	_, err = b.ReadInvocations(ctx, gatewaytest.URL+"/no-metrics-here")
	assert.Error(t, err)

	require.NoError(t, client.DeleteFunction(ctx, "shout", sdk.DefaultNamespace))
	caps, err = b.Capacities(ctx)
	require.NoError(t, err)
	assert.NotContains(t, caps, "shout")

	// Gateway down: a clear error, and a 502 for requests; back up: recovered.
	require.NoError(t, gw.Stop())
	stopped = true
	_, err = b.Capacities(ctx)
	assert.ErrorContains(t, err, "openfaas: list functions")
	code, _ = post("/function/hello", "edge")
	assert.Equal(t, http.StatusBadGateway, code)
	gw, err = gatewaytest.Start(ctx, provider.URL())
	require.NoError(t, err)
	stopped = false
	caps, err = b.Capacities(ctx)
	require.NoError(t, err)
	assert.Equal(t, map[string]dfaas.Rate{"hello": 20}, caps)
	http.DefaultClient.CloseIdleConnections()
}

// TestInvocationTimeout: a gateway that accepts an invocation and never
// answers costs FunctionTimeout, then a 502, not a request held forever.
func TestInvocationTimeout(t *testing.T) {
	hold := make(chan struct{})
	gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-hold }))
	defer gw.Close()
	defer close(hold)
	b, err := New(Config{Gateway: gw.URL, FunctionTimeout: 200 * time.Millisecond, Logger: quiet})
	require.NoError(t, err)
	defer b.Close()
	rec := httptest.NewRecorder()
	start := time.Now()
	b.Handler().ServeHTTP(rec, httptest.NewRequest("POST", "/function/hello", strings.NewReader("x")))
	assert.Equal(t, http.StatusBadGateway, rec.Code)
	assert.Less(t, time.Since(start), 5*time.Second)
	_, err = New(Config{Gateway: gw.URL, FunctionTimeout: -1})
	assert.ErrorIs(t, err, dfaas.ErrInvalidConfig)
}

// TestRequestBodies: bodies reach the gateway intact, read first (up to
// wholeBodyMax) or streamed (larger, or of unknown length); a body shorter
// than its Content-Length is the client's fault (400), not the gateway's.
func TestRequestBodies(t *testing.T) {
	gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("X-Length", strconv.Itoa(int(r.ContentLength)))
		_, _ = w.Write(b)
	}))
	defer gw.Close()
	b, err := New(Config{Gateway: gw.URL, Logger: quiet})
	require.NoError(t, err)
	defer b.Close()
	for _, n := range []int{0, 1, 4096, wholeBodyMax, wholeBodyMax + 1, 1 << 20} {
		body := strings.Repeat("ab", n/2+1)[:n]
		rec := httptest.NewRecorder()
		b.Handler().ServeHTTP(rec, httptest.NewRequest("POST", "/function/echo", strings.NewReader(body)))
		require.Equal(t, http.StatusOK, rec.Code, "%d bytes", n)
		assert.Equal(t, body, rec.Body.String(), "%d bytes", n)
		assert.Equal(t, strconv.Itoa(n), rec.Header().Get("X-Length"), "%d bytes: the length is kept", n)
	}
	// Unknown length: streamed as it comes.
	req := httptest.NewRequest("POST", "/function/echo", io.MultiReader(strings.NewReader("stream"), strings.NewReader("ed")))
	req.ContentLength = -1
	rec := httptest.NewRecorder()
	b.Handler().ServeHTTP(rec, req)
	assert.Equal(t, "streamed", rec.Body.String())
	// A client that promised more than it sent.
	req = httptest.NewRequest("POST", "/function/echo", strings.NewReader("short"))
	req.ContentLength = 100
	rec = httptest.NewRecorder()
	b.Handler().ServeHTTP(rec, req)
	assert.Equal(t, http.StatusBadRequest, rec.Code)
}

// TestInvocationRelay: an invocation reaches the gateway as the client
// sent it, less what applies to one connection only and the client's own
// claims about where it is; the answer comes back the same way, trailers
// included, and an answer of unknown length streams.
func TestInvocationRelay(t *testing.T) {
	firstSeen := make(chan struct{})
	gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/function/stream.openfaas-fn" {
			_, _ = io.WriteString(w, "first ")
			w.(http.Flusher).Flush()
			select { // the client has the first piece before the second exists
			case <-firstSeen:
				_, _ = io.WriteString(w, "second")
			case <-time.After(5 * time.Second):
				_, _ = io.WriteString(w, "never flushed")
			}
			return
		}
		if r.Header.Get("Te") != "trailers" {
			http.Error(w, "Te: trailers did not reach the gateway", http.StatusTeapot)
			return
		}
		for _, h := range []string{"X-Secret", "Keep-Alive", "X-Forwarded-For", "X-Forwarded-Host", "Forwarded", "User-Agent"} {
			if v, ok := r.Header[h]; ok {
				http.Error(w, h+" reached the gateway: "+strings.Join(v, ","), http.StatusTeapot)
				return
			}
		}
		w.Header().Set("Trailer", "X-Sum")
		w.Header().Set("Connection", "X-Private")
		w.Header().Set("X-Private", "hop")
		w.Header().Set("X-Kept", r.URL.RequestURI()+" "+r.Header.Get("X-Kept")+" "+r.Host)
		_, _ = io.WriteString(w, "body")
		w.Header().Set("X-Sum", "42")
	}))
	defer gw.Close()
	b, err := New(Config{Gateway: gw.URL, Logger: quiet})
	require.NoError(t, err)
	defer b.Close()
	front := httptest.NewServer(b.Handler())
	defer front.Close()
	gwHost := strings.TrimPrefix(gw.URL, "http://")

	req, err := http.NewRequest("POST", front.URL+"/function/echo/sub?q=1&r=%2F", strings.NewReader("x"))
	require.NoError(t, err)
	req.Header.Set("Connection", "X-Secret")
	req.Header.Set("X-Secret", "hop")
	req.Header.Set("Keep-Alive", "timeout=5")
	req.Header.Set("X-Forwarded-For", "10.0.0.1")
	req.Header.Set("X-Forwarded-Host", "spoofed")
	req.Header.Set("Forwarded", "for=10.0.0.1;host=admin.internal")
	req.Header.Set("Te", "trailers")
	req.Header.Set("X-Kept", "end-to-end")
	req.Header["User-Agent"] = nil // Go's client sends none: nor may the proxy
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	assert.Equal(t, "body", string(body))
	assert.Equal(t, "/function/echo.openfaas-fn/sub?q=1&r=%2F end-to-end "+gwHost, resp.Header.Get("X-Kept"))
	assert.Empty(t, resp.Header.Get("X-Private"), "a header the gateway's Connection names stays on its hop")
	assert.Equal(t, "42", resp.Trailer.Get("X-Sum"))

	resp, err = http.Post(front.URL+"/function/stream", "text/plain", nil)
	require.NoError(t, err)
	defer resp.Body.Close()
	first := make([]byte, len("first "))
	_, err = io.ReadFull(resp.Body, first)
	require.NoError(t, err)
	close(firstSeen)
	rest, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	assert.Equal(t, "first second", string(first)+string(rest))
}

// TestInvocationRefusesWhatTheGatewayWouldReadOtherwise: a path with a dot
// segment (the gateway would clean it into another path) is refused; a
// query that does not parse goes on as Go parses it; an answer with no
// valid status is a 502, not a crash.
func TestInvocationRefusesWhatTheGatewayWouldReadOtherwise(t *testing.T) {
	got := make(chan string, 10)
	gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.URL.RequestURI()
	}))
	defer gw.Close()
	b, err := New(Config{Gateway: gw.URL, Logger: quiet})
	require.NoError(t, err)
	defer b.Close()
	for _, path := range []string{"/function/echo/..%2f..%2fsystem%2ffunctions", "/function/echo/../x", "/function/echo/./x"} {
		rec := httptest.NewRecorder()
		b.Handler().ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		assert.Equal(t, http.StatusBadRequest, rec.Code, path)
	}
	rec := httptest.NewRecorder()
	b.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/function/echo/.well-known/x?user=alice;user=admin&x=%zz&ok=1", nil))
	assert.Equal(t, http.StatusOK, rec.Code)
	assert.Equal(t, "/function/echo.openfaas-fn/.well-known/x?ok=1", <-got)

	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			if _, err := http.ReadRequest(bufio.NewReader(c)); err == nil {
				_, _ = io.WriteString(c, "HTTP/1.1 099 Odd\r\nContent-Length: 0\r\n\r\n")
			}
			_ = c.Close()
		}
	}()
	odd, err := New(Config{Gateway: "http://" + l.Addr().String(), Logger: quiet})
	require.NoError(t, err)
	defer odd.Close()
	rec = httptest.NewRecorder()
	odd.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/function/echo", nil))
	assert.Equal(t, http.StatusBadGateway, rec.Code)
}

// TestInvocationLeavesTheBodyAlone: an invocation that fails before it is
// sent answers at once, without waiting for a body the client sends only
// after a 100 Continue; and once the handler returns, nothing reads the
// client's body any more.
func TestInvocationLeavesTheBodyAlone(t *testing.T) {
	down, err := New(Config{Gateway: "http://127.0.0.1:1", Logger: quiet})
	require.NoError(t, err)
	defer down.Close()
	front := httptest.NewServer(down.Handler())
	defer front.Close()
	c, err := net.Dial("tcp", strings.TrimPrefix(front.URL, "http://"))
	require.NoError(t, err)
	defer c.Close()
	_, err = io.WriteString(c, "POST /function/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10000\r\nExpect: 100-continue\r\n\r\n")
	require.NoError(t, err)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	require.NoError(t, err, "answered without the body")
	assert.Equal(t, http.StatusBadGateway, resp.StatusCode)

	// A gateway that answers before reading a streamed body.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		br := bufio.NewReader(c)
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		_, _ = io.Copy(io.Discard, br)
	}()
	early, err := New(Config{Gateway: "http://" + l.Addr().String(), Logger: quiet})
	require.NoError(t, err)
	defer early.Close()
	body := &endlessBody{}
	req := httptest.NewRequest("POST", "/function/echo", body)
	req.ContentLength = -1
	rec := httptest.NewRecorder()
	early.Handler().ServeHTTP(rec, req)
	returned := body.reads.Load()
	time.Sleep(200 * time.Millisecond)
	assert.Equal(t, "ok", rec.Body.String())
	assert.Equal(t, returned, body.reads.Load(), "the client's body was read after the handler returned")
}

// endlessBody yields a byte every 5 ms, forever, counting its reads.
type endlessBody struct{ reads atomic.Int64 }

func (e *endlessBody) Read(p []byte) (int, error) {
	e.reads.Add(1)
	time.Sleep(5 * time.Millisecond)
	p[0] = 'x'
	return 1, nil
}

func (e *endlessBody) Close() error { return nil }
