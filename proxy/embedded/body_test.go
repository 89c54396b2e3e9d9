package embedded

import (
	"bufio"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dfaas-go/dfaas"
)

// digest is a platform that answers its name and the digest and size of
// the body it read whole (400 if it could not).
type digest struct{ name string }

func (d digest) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := sha256.New()
	n, err := io.Copy(h, r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	fmt.Fprintf(w, "%s %d %x", d.name, n, h.Sum(nil))
}

// digestProxy starts a proxy with cfg in front of a digest platform.
func digestProxy(t *testing.T, cfg Config) *Proxy {
	t.Helper()
	p, err := New(cfg, digest{string(cfg.Node)})
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })
	return p
}

func digestOf(name, body string) string {
	return fmt.Sprintf("%s %d %x", name, len(body), sha256.Sum256([]byte(body)))
}

// TestLargeBodiesStreamPastRefusals: a body larger than what a forward
// holds streams to the peer that admits it, and reaches it whole after
// others refused; when every peer refuses, it runs here whole. Chunked
// bodies of unknown length too.
func TestLargeBodiesStreamPastRefusals(t *testing.T) {
	a := digestProxy(t, Config{Node: "a"})
	full, efull := newTestProxy(t, "full")
	b := digestProxy(t, Config{Node: "b"})
	apply(t, full, map[string]dfaas.FunctionPlan{"figlet": {}, "other": {}}) // no capacity: refuses
	apply(t, b, map[string]dfaas.FunctionPlan{"figlet": {Capacity: 1000}})
	apply(t, a, map[string]dfaas.FunctionPlan{
		"figlet": {Peers: []dfaas.Share{
			{Node: "full", Addr: full.PeerAddr(), Weight: 0.9, Cap: 1000},
			{Node: "b", Addr: b.PeerAddr(), Weight: 0.1, Cap: 1000}}},
		"other": {Capacity: 1000, Peers: []dfaas.Share{{Node: "full", Addr: full.PeerAddr(), Weight: 1, Cap: 1000}}},
	})
	for _, body := range []string{
		strings.Repeat("h", holdBody),                       // held whole
		strings.Repeat("i", holdBody+1),                     // streamed, one byte past what is held
		strings.Repeat("0123456789abcdef", 3*holdBody/16+5), // three times what is held, and some
	} {
		streamBodyPastRefusals(t, a, body)
	}
	assert.Zero(t, efull.calls.Load(), "the refusing peer's platform saw nothing")
	assert.GreaterOrEqual(t, counts(t, full)["figlet"].Refused, uint64(1), "full was tried")
	assert.GreaterOrEqual(t, counts(t, full)["other"].Refused, uint64(2))
	require.Eventually(t, func() bool { return a.buffered.Load() == 0 }, 5*time.Second, time.Millisecond, "the held bytes were given back")
}

func streamBodyPastRefusals(t *testing.T, a *Proxy, body string) {
	t.Helper()
	for _, chunked := range []bool{false, true} {
		for _, fn := range []string{"figlet", "other"} {
			var r io.Reader = strings.NewReader(body)
			if chunked {
				r = io.MultiReader(r) // no length: sent chunked
			}
			resp, err := http.Post("http://"+a.UserAddr()+"/function/"+fn, "application/octet-stream", r)
			require.NoError(t, err)
			got, err := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			require.NoError(t, err)
			require.Equal(t, http.StatusOK, resp.StatusCode, "%s chunked %v: %s", fn, chunked, got)
			want := digestOf("b", body)
			if fn == "other" {
				want = digestOf("a", body) // full refused: run here, limit 0 but capacity left
			}
			assert.Equal(t, want, string(got), "%s chunked %v, %d bytes", fn, chunked, len(body))
		}
	}
}

// TestAPeerThatTakesPartOfABodyAndRefusesIt: a peer that does not answer
// the 100 Continue, takes part of a streamed body and then refuses the
// request leaves a body nobody can send again: the user gets 503 with
// Retry-After, and nothing ran anywhere (the local platform could have run
// it, had it the body).
func TestAPeerThatTakesPartOfABodyAndRefusesIt(t *testing.T) {
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
		req, err := http.ReadRequest(br) // no 100 Continue: the body comes after a second
		if err != nil {
			return
		}
		_, _ = io.CopyN(io.Discard, req.Body, holdBody+1000) // past what the forwarder holds
		_, _ = io.WriteString(c, "HTTP/1.1 425 Too Early\r\nX-Dfaas-Refused: capacity\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
		// Closed the way servers close on a body they leave (a FIN, then
		// what still comes is read for a while): a reset at once could
		// beat the answer to the forwarder, which would then have to take
		// the request as sent and failed (502).
		_ = c.(*net.TCPConn).CloseWrite()
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		_, _ = io.Copy(io.Discard, c)
	}()
	a, ea := newTestProxy(t, "a")
	apply(t, a, map[string]dfaas.FunctionPlan{"figlet": {Capacity: 1000, Peers: []dfaas.Share{{Node: "liar", Addr: l.Addr().String(), Weight: 1, Cap: 1000}}}})
	code, hdr, _ := do(t, "POST", "http://"+a.UserAddr()+"/function/figlet", nil, strings.Repeat("x", 4*holdBody))
	assert.Equal(t, http.StatusServiceUnavailable, code)
	assert.NotEmpty(t, hdr.Get("Retry-After"))
	assert.Zero(t, ea.calls.Load(), "no part of a body runs")
	assert.EqualValues(t, 1, counts(t, a)["figlet"].Rejected)
}

// TestAPeerThatAnswersBeforeTheBodyIsSent: a peer that answers while a
// streamed body is still on its way (here, 413: its MaxBody is smaller)
// gets its answer to the user; the forward's reader of the body is retired
// (the Transport may still be sending it), and the held bytes come back.
func TestAPeerThatAnswersBeforeTheBodyIsSent(t *testing.T) {
	a := digestProxy(t, Config{Node: "a"})
	b := digestProxy(t, Config{Node: "b", MaxBody: 100 << 10})
	apply(t, b, map[string]dfaas.FunctionPlan{"figlet": {Capacity: 1000}})
	apply(t, a, map[string]dfaas.FunctionPlan{"figlet": {Peers: []dfaas.Share{{Node: "b", Addr: b.PeerAddr(), Weight: 1, Cap: 1000}}}})
	resp, err := http.Post("http://"+a.UserAddr()+"/function/figlet", "application/octet-stream",
		io.MultiReader(strings.NewReader(strings.Repeat("x", 1<<20)))) // chunked: b finds out as it reads
	if err == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		assert.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode)
	} // else the client's write met the closed connection first
	c := counts(t, b)["figlet"]
	assert.Zero(t, c.Failed, "b's cut body is not its platform's failure")
	require.Eventually(t, func() bool { return a.buffered.Load() == 0 }, 5*time.Second, time.Millisecond, "the held bytes were given back")
}

// TestStalledLargeBodiesDoNotFillTheForwardBuffer: the third review's
// finding, scaled down. Clients that send nearly all of a large body and
// stop hold at most holdBody each of the forward buffer (the rest went on
// to the peer), so other forwards still go through; before, each held
// its whole body and two of them filled the buffer.
func TestStalledLargeBodiesDoNotFillTheForwardBuffer(t *testing.T) {
	const clients = 16
	a := digestProxy(t, Config{Node: "a", MaxBody: 1 << 20, MaxBuffered: 2 << 20})
	b := digestProxy(t, Config{Node: "b"})
	apply(t, b, map[string]dfaas.FunctionPlan{"figlet": {Capacity: 1000}})
	apply(t, a, map[string]dfaas.FunctionPlan{"figlet": {Peers: []dfaas.Share{{Node: "b", Addr: b.PeerAddr(), Weight: 1, Cap: 1000}}}})

	part := strings.Repeat("x", 1<<20-1)
	for range clients {
		c, err := net.Dial("tcp", a.UserAddr())
		require.NoError(t, err)
		t.Cleanup(func() { _ = c.Close() })
		_, err = fmt.Fprintf(c, "POST /function/figlet HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", 1<<20, part)
		require.NoError(t, err)
	}
	// Wait until every stalled body has been read as far as it goes: the
	// peer's platform holds them open.
	require.Eventually(t, func() bool {
		return counts(t, b)["figlet"].InFlight == clients
	}, 10*time.Second, 10*time.Millisecond, "every stalled request reached the peer")
	assert.LessOrEqual(t, a.buffered.Load(), int64(clients*holdBody))

	code, _, got := do(t, "POST", "http://"+a.UserAddr()+"/function/figlet", nil, strings.Repeat("y", 200<<10))
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, digestOf("b", strings.Repeat("y", 200<<10)), got)
}

// TestBodiesOverMaxBodyAre413: MaxBody bounds a body run here as well as
// one forwarded, on both listeners: a declared length over it is answered
// 413 before the platform sees anything; a chunked body is cut off once it
// passes it, and answered 413 too. A body of exactly MaxBody runs.
func TestBodiesOverMaxBodyAre413(t *testing.T) {
	a := digestProxy(t, Config{Node: "a", MaxBody: 100 << 10})
	apply(t, a, map[string]dfaas.FunctionPlan{"figlet": {Limit: 1000, Capacity: 1000}})
	exact := strings.Repeat("z", 100<<10)
	hop := map[string]string{"X-Dfaas-Hop": "1"}
	for _, addr := range []string{a.UserAddr(), a.PeerAddr()} {
		u := "http://" + addr + "/function/figlet"
		code, _, got := do(t, "POST", u, hop, exact)
		assert.Equal(t, http.StatusOK, code, addr)
		assert.Equal(t, digestOf("a", exact), got, addr)
		code, _, _ = do(t, "POST", u, hop, exact+"!")
		assert.Equal(t, http.StatusRequestEntityTooLarge, code, "%s: declared length", addr)

		req, err := http.NewRequest("POST", u, io.MultiReader(strings.NewReader(exact+"!")))
		require.NoError(t, err)
		req.Header.Set("X-Dfaas-Hop", "1")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		_ = resp.Body.Close()
		assert.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode, "%s: chunked", addr)
	}
	c := counts(t, a)["figlet"]
	assert.Zero(t, c.Failed, "the platform's error at a cut body is not its failure")
	assert.EqualValues(t, 2, c.Arrivals, "a declared length over the bound is answered before it counts")
	assert.Zero(t, c.Rejected)
}
