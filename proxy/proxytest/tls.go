package proxytest

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dfaas-go/dfaas"
	"github.com/dfaas-go/dfaas/proxy"
)

// member is a node identity for the TLS cases: its overlay key and its TLS
// identity.
type member struct {
	key ed25519.PrivateKey
	id  *proxy.Identity
}

func newMember(t *testing.T) member { return newMemberWith(t, proxy.DefaultLeafLifetime) }

// newMemberWith is newMember with leaves valid for lifetime.
func newMemberWith(t *testing.T, lifetime time.Duration) member {
	t.Helper()
	_, sk, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	k, _, err := crypto.KeyPairFromStdKey(&sk)
	require.NoError(t, err)
	id, err := proxy.NewIdentityWith(k, lifetime, time.Now)
	require.NoError(t, err)
	return member{key: sk, id: id}
}

func (m member) node() dfaas.NodeID { return m.id.Node() }

// Members is a federation's member list that tests change.
type Members struct {
	mu  sync.Mutex
	ids []dfaas.NodeID
}

// Set replaces the members.
func (m *Members) Set(ids ...dfaas.NodeID) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.ids = slices.Clone(ids)
	slices.Sort(m.ids)
}

// Get returns the members, sorted.
func (m *Members) Get() []dfaas.NodeID {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.ids)
}

// tlsNode starts a data plane with TLS bound to m's identity, admitting
// members.
func (s *suite) tlsNode(m member, members *Members) (proxy.DataPlane, *Platform) {
	s.t.Helper()
	pf := newPlatform(s.t, string(m.node()))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	dp, err := proxy.Open(ctx, s.name, proxy.Spec{Node: m.node(), Platform: proxy.Platform{Handler: pf, Addr: pf.addr},
		Functions: Functions, TLS: &proxy.TLS{Identity: m.id, Members: members.Get}, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(s.t, err)
	s.t.Cleanup(func() { assert.NoError(s.t, dp.Close()) })
	return dp, pf
}

// PeerCall sends one hop-marked POST for path to a peer listener over TLS
// with the given client configuration, on a fresh connection (a new
// handshake every time); it returns the status, or 0 and the error.
func PeerCall(addr, path string, tc *tls.Config) (int, error) {
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: tc, DisableKeepAlives: true}}
	req, err := http.NewRequest("POST", "https://"+addr+path, strings.NewReader("x"))
	if err != nil {
		return 0, err
	}
	req.Header.Set(proxy.HeaderHop, "1")
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

// peerCall is PeerCall for the suite's function echo.
func peerCall(addr string, tc *tls.Config) (int, error) { return PeerCall(addr, "/function/echo", tc) }

// testTLSForward: members forward to each other over TLS; the receiving
// platform runs the request once.
func testTLSForward(t *testing.T, s *suite) {
	ma, mb := newMember(t), newMember(t)
	members := &Members{}
	members.Set(ma.node(), mb.node())
	a, pa := s.tlsNode(ma, members)
	b, pb := s.tlsNode(mb, members)
	s.apply(b, map[string]dfaas.FunctionPlan{"echo": unlimited})
	s.apply(a, map[string]dfaas.FunctionPlan{"echo": {Peers: []dfaas.Share{{Node: mb.node(), Addr: b.PeerAddr(), Weight: 1, Cap: 1e6}}}})
	for range 3 {
		got := s.do(a.UserAddr(), "/function/echo", nil)
		require.Equal(t, http.StatusOK, got.code, got.body)
		assert.Equal(t, string(mb.node()), got.body)
	}
	assert.Equal(t, int64(3), pb.Calls.Load())
	assert.Zero(t, pa.Calls.Load())
	assert.Equal(t, uint64(3), s.counts(b, "echo").ReceivedIn)
	assert.Equal(t, uint64(3), s.counts(a, "echo").Forwarded[mb.node()])
}

// testTLSPeerPortAdmitsMembersOnly: the peer listener executes nothing for
// a client in clear text, without a certificate, with a non-member's
// certificate, or with a certificate that claims a member but was signed
// by someone else; a member's certificate works until the member leaves
// the list (new connections, resumed sessions included).
func testTLSPeerPortAdmitsMembersOnly(t *testing.T, s *suite) {
	ma, mb, stranger := newMember(t), newMember(t), newMember(t)
	members := &Members{}
	members.Set(ma.node(), mb.node())
	b, pb := s.tlsNode(mb, members)
	s.apply(b, map[string]dfaas.FunctionPlan{"echo": unlimited})
	asA := clientConfig(t, ma, mb)
	asA.ClientSessionCache = tls.NewLRUClientSessionCache(8) // tries to resume below

	code, err := peerCall(b.PeerAddr(), asA)
	require.NoError(t, err, "a member is admitted")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, int64(1), pb.Calls.Load())

	// In clear text.
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	req, _ := http.NewRequest("POST", "http://"+b.PeerAddr()+"/function/echo", strings.NewReader("x"))
	req.Header.Set(proxy.HeaderHop, "1")
	if resp, err := c.Do(req); err == nil {
		assert.NotEqual(t, http.StatusOK, resp.StatusCode, "clear text")
		resp.Body.Close()
	}
	noCert := asA.Clone()
	noCert.Certificates, noCert.GetClientCertificate, noCert.ClientSessionCache = nil, nil, nil
	forged := asA.Clone()
	forged.Certificates, forged.GetClientCertificate, forged.ClientSessionCache = []tls.Certificate{forgedCert(t, ma.node(), stranger.key)}, nil, nil
	for name, tc := range map[string]*tls.Config{
		"no certificate":   noCert,
		"a non-member":     clientConfig(t, stranger, mb),
		"a forged member":  forged,
		"a self-made leaf": selfSigned(t, asA),
	} {
		code, err := peerCall(b.PeerAddr(), tc)
		assert.True(t, err != nil || code != http.StatusOK, "%s got %d", name, code)
	}
	assert.Equal(t, int64(1), pb.Calls.Load(), "a non-member's request was executed")

	members.Set(mb.node())
	s.apply(b, map[string]dfaas.FunctionPlan{"echo": unlimited}) // data planes may read the list per plan
	code, err = peerCall(b.PeerAddr(), asA)                      // with its session cache: no resuming either
	assert.True(t, err != nil || code != http.StatusOK, "a former member got %d", code)
	assert.Equal(t, int64(1), pb.Calls.Load(), "a former member's request was executed")
}

// testTLSForwardsOnlyToTheNamedNode: a plan that names node b at an
// address served by someone else (a member c, or a stranger) sends them
// nothing: the request is answered 503, as when no peer can take it.
func testTLSForwardsOnlyToTheNamedNode(t *testing.T, s *suite) {
	ma, mb, mc, stranger := newMember(t), newMember(t), newMember(t), newMember(t)
	members := &Members{}
	members.Set(ma.node(), mb.node(), mc.node())
	a, pa := s.tlsNode(ma, members)
	c, pc := s.tlsNode(mc, members)
	x, px := s.tlsNode(stranger, &Members{}) // admits no one; counts what reaches it
	for _, dp := range []proxy.DataPlane{c, x} {
		s.apply(dp, map[string]dfaas.FunctionPlan{"echo": unlimited})
	}
	for _, addr := range []string{c.PeerAddr(), x.PeerAddr()} {
		s.apply(a, map[string]dfaas.FunctionPlan{"echo": {Peers: []dfaas.Share{{Node: mb.node(), Addr: addr, Weight: 1, Cap: 1e6}}}})
		got := s.do(a.UserAddr(), "/function/echo", nil)
		assert.Equal(t, http.StatusServiceUnavailable, got.code, "to %s: %s", addr, got.body)
	}
	assert.Zero(t, pc.Calls.Load(), "a member impersonating b got the request")
	assert.Zero(t, px.Calls.Load(), "a stranger at b's address got the request")
	assert.Zero(t, pa.Calls.Load())
	assert.Zero(t, s.counts(c, "echo").ReceivedIn)
}

// clientConfig is from's TLS client configuration towards to.
func clientConfig(t *testing.T, from, to member) *tls.Config {
	t.Helper()
	tc, err := (&proxy.TLS{Identity: from.id, Members: func() []dfaas.NodeID { return nil }}).ClientConfig(to.node())
	require.NoError(t, err)
	return tc
}

// forgedCert is a leaf that names claimed's anchor as its issuer but is
// signed with another key.
func forgedCert(t *testing.T, claimed dfaas.NodeID, signer ed25519.PrivateKey) tls.Certificate {
	t.Helper()
	anchor, err := proxy.Anchor(claimed)
	require.NoError(t, err)
	return leafUnder(t, anchor, signer)
}

// selfSigned is cfg with a self-signed client certificate instead.
func selfSigned(t *testing.T, cfg *tls.Config) *tls.Config {
	t.Helper()
	_, sk, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(9), Subject: pkix.Name{CommonName: "self"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, sk.Public(), sk)
	require.NoError(t, err)
	out := cfg.Clone()
	out.Certificates, out.GetClientCertificate, out.ClientSessionCache = []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: sk}}, nil, nil
	return out
}

func leafUnder(t *testing.T, parent *x509.Certificate, signer ed25519.PrivateKey) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "forged"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		DNSNames: []string{proxy.ServerName}}
	// CreateCertificate refuses a signer that does not match the parent:
	// sign under a copy of the parent holding the signer's public key, so
	// the leaf names the claimed issuer but carries the wrong signature.
	fake := *parent
	fake.PublicKey = signer.Public()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, &fake, &key.PublicKey, signer)
	require.NoError(t, err)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// testBrokenPeerIsEjected: a member whose address resets every connection
// (the TLS handshake fails: nothing was sent) costs retries, never a failed
// request, and is ejected within a second: the data plane reports it
// (dfaas.PeerHealth) and stops trying it.
func testBrokenPeerIsEjected(t *testing.T, s *suite) {
	ma, mok, mbad := newMember(t), newMember(t), newMember(t)
	members := &Members{}
	members.Set(ma.node(), mok.node(), mbad.node())
	a, _ := s.tlsNode(ma, members)
	ok, pok := s.tlsNode(mok, members)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = l.Close() })
	var accepted atomic.Int64
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			if tc, ok := c.(*net.TCPConn); ok {
				_ = tc.SetLinger(0)
			}
			_ = c.Close()
		}
	}()
	s.apply(ok, map[string]dfaas.FunctionPlan{"echo": unlimited})
	s.apply(a, map[string]dfaas.FunctionPlan{"echo": {Peers: []dfaas.Share{
		{Node: mbad.node(), Addr: l.Addr().String(), Weight: 0.9, Cap: 1e6},
		{Node: mok.node(), Addr: ok.PeerAddr(), Weight: 0.1, Cap: 1e6}}}})
	ph, isHealth := a.(dfaas.PeerHealth)
	require.True(t, isHealth, "a data plane reports the peers it ejected (dfaas.PeerHealth)")
	start := time.Now()
	ejected := make(chan time.Duration, 1)
	stop := make(chan struct{})
	go func() { // as an agent would ask, but more often
		defer close(ejected)
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			if slices.Contains(ph.Ejected(), mbad.node()) {
				ejected <- time.Since(start)
				return
			}
		}
	}()
	n := 0
	for time.Since(start) < 1500*time.Millisecond {
		got := s.do(a.UserAddr(), "/function/echo", nil)
		require.Equal(t, http.StatusOK, got.code, "request %d: %s", n, got.body)
		n++
		time.Sleep(10 * time.Millisecond)
	}
	close(stop)
	ejectedAfter := <-ejected
	require.NotZero(t, ejectedAfter, "the broken peer was not ejected")
	assert.Less(t, ejectedAfter, time.Second)
	assert.Equal(t, int64(n), pok.Calls.Load(), "every request served by the healthy peer")
	before := accepted.Load()
	for range 20 {
		require.Equal(t, http.StatusOK, s.do(a.UserAddr(), "/function/echo", nil).code)
	}
	assert.LessOrEqual(t, accepted.Load()-before, int64(2), "the ejected peer is still tried (health probes aside)")
	t.Logf("%d requests, all served; ejected after %v; %d connections to the broken peer", n, ejectedAfter, accepted.Load())
}

// testNotYetAMemberIsRetried: a peer that does not (yet) count the
// forwarder as a member refuses its TLS handshake, which proves the
// request was not run: it goes to the next peer (see
// proxy.PeerTLSVersion for why that needs TLS 1.2).
func testNotYetAMemberIsRetried(t *testing.T, s *suite) {
	ma, mb, mok := newMember(t), newMember(t), newMember(t)
	all, withoutA := &Members{}, &Members{}
	all.Set(ma.node(), mb.node(), mok.node())
	withoutA.Set(mb.node(), mok.node())
	a, _ := s.tlsNode(ma, all)
	b, pb := s.tlsNode(mb, withoutA)
	ok, pok := s.tlsNode(mok, all)
	s.apply(b, map[string]dfaas.FunctionPlan{"echo": unlimited})
	s.apply(ok, map[string]dfaas.FunctionPlan{"echo": unlimited})
	s.apply(a, map[string]dfaas.FunctionPlan{"echo": {Peers: []dfaas.Share{
		{Node: mb.node(), Addr: b.PeerAddr(), Weight: 0.9, Cap: 1e6},
		{Node: mok.node(), Addr: ok.PeerAddr(), Weight: 0.1, Cap: 1e6}}}})
	for i := range 8 {
		got := s.do(a.UserAddr(), "/function/echo", nil)
		assert.Equal(t, http.StatusOK, got.code, "request %d: %s", i, got.body)
	}
	assert.Zero(t, pb.Calls.Load())
	assert.Equal(t, int64(8), pok.Calls.Load())
}

// testTLSRemovedMemberIsCutOff: a member removed from the list loses what
// it holds at the peer port from the peer's next Apply: a request it has
// in flight finishes, but nothing it sends afterwards runs, on the
// connection it kept alive (refused, proxy.RefusedMember, and closed) or on
// a new one (its handshake fails).
func testTLSRemovedMemberIsCutOff(t *testing.T, s *suite) {
	ma, mb := newMember(t), newMember(t)
	members := &Members{}
	members.Set(ma.node(), mb.node())
	b, pb := s.tlsNode(mb, members)
	plan := map[string]dfaas.FunctionPlan{"echo": unlimited}
	s.apply(b, plan)
	var dials atomic.Int64
	d := &net.Dialer{Timeout: 5 * time.Second}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: clientConfig(t, ma, mb),
		MaxIdleConnsPerHost: 1, MaxConnsPerHost: 1,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			dials.Add(1)
			return d.DialContext(ctx, network, addr)
		}}}
	defer client.CloseIdleConnections()
	type result struct {
		code    int
		refused string
		err     error
	}
	call := func() result {
		req, err := http.NewRequest("POST", "https://"+b.PeerAddr()+"/function/echo", strings.NewReader("x"))
		require.NoError(t, err)
		req.Header.Set(proxy.HeaderHop, "1")
		resp, err := client.Do(req)
		if err != nil {
			return result{err: err}
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		return result{code: resp.StatusCode, refused: resp.Header.Get(proxy.HeaderRefused)}
	}
	for range 3 {
		r := call()
		require.NoError(t, r.err)
		require.Equal(t, http.StatusOK, r.code)
	}
	require.Equal(t, int64(1), dials.Load(), "kept alive")

	// Removed while a request of its runs.
	pb.Delay.Store(int64(500 * time.Millisecond))
	done := make(chan result, 1)
	go func() { done <- call() }()
	require.Eventually(t, func() bool { return pb.Calls.Load() == 4 }, 5*time.Second, 5*time.Millisecond)
	members.Set(mb.node())
	s.apply(b, plan)
	r := <-done
	require.NoError(t, r.err, "the request in flight finishes")
	assert.Equal(t, http.StatusOK, r.code)
	pb.Delay.Store(0)

	for range 3 {
		r := call()
		if r.err == nil {
			assert.Equal(t, proxy.StatusRefused, r.code, "on the connection it kept alive")
			assert.Equal(t, proxy.RefusedMember, r.refused)
		}
	}
	assert.Equal(t, int64(4), pb.Calls.Load(), "nothing it sent after its removal ran")
	assert.Greater(t, dials.Load(), int64(1), "its kept-alive connection was closed")
}

// testTLSLeavesRenewed: with leaves valid for 3 s (renewed every 1.5 s),
// forwards and fresh handshakes go on for 7 s, past the first leaves'
// expiry, without a failed request: each side presents its current leaf
// to new handshakes (HAProxy takes it at Apply, the Agent's tick), and
// connections made before go on.
func testTLSLeavesRenewed(t *testing.T, s *suite) {
	const lifetime = 3 * time.Second
	ma, mb := newMemberWith(t, lifetime), newMemberWith(t, lifetime)
	members := &Members{}
	members.Set(ma.node(), mb.node())
	a, _ := s.tlsNode(ma, members)
	b, pb := s.tlsNode(mb, members)
	toB := map[string]dfaas.FunctionPlan{"echo": {Peers: []dfaas.Share{{Node: mb.node(), Addr: b.PeerAddr(), Weight: 1, Cap: 1e6}}}}
	s.apply(b, map[string]dfaas.FunctionPlan{"echo": unlimited})
	s.apply(a, toB)
	first := ma.id.Certificate().Leaf.SerialNumber
	fresh := clientConfig(t, ma, mb) // a's identity, a new handshake every call
	var forwards, handshakes int
	for start := time.Now(); time.Since(start) < 7*time.Second; {
		s.apply(b, map[string]dfaas.FunctionPlan{"echo": unlimited}) // the ticks
		s.apply(a, toB)
		for range 5 {
			got := s.do(a.UserAddr(), "/function/echo", nil)
			require.Equal(t, http.StatusOK, got.code, "a forward at %v: %s", time.Since(start), got.body)
			forwards++
			time.Sleep(40 * time.Millisecond)
		}
		code, err := PeerCall(b.PeerAddr(), "/function/echo", fresh)
		require.NoError(t, err, "a new handshake at %v", time.Since(start))
		require.Equal(t, http.StatusOK, code)
		handshakes++
	}
	assert.NotEqual(t, first, ma.id.Certificate().Leaf.SerialNumber, "a's leaf was renewed")
	assert.Equal(t, int64(forwards+handshakes), pb.Calls.Load())
	t.Logf("%d forwards, %d new handshakes over 7 s of 3-second leaves", forwards, handshakes)
}

// testRefusedWhileLeavingThePlanIsRetried: a peer c stops admitting this
// node a moment before this node's plan drops it (c adopted a membership
// change first: it refuses, and closes, the connections a keeps alive to
// it, and fails a's new handshakes). The forwards c refuses while the plan
// changes go to b, which had room all along: every user, on a connection
// of its own kept alive, gets an answer from b, and c runs nothing more.
// (On HAProxy a failed connection waits up to a second before the next
// server is tried, in the route backend the plan change has just freed.)
func testRefusedWhileLeavingThePlanIsRetried(t *testing.T, s *suite) {
	ma, mb, mc := newMember(t), newMember(t), newMember(t)
	all, atC := &Members{}, &Members{}
	all.Set(ma.node(), mb.node(), mc.node())
	a, _ := s.tlsNode(ma, all)
	b, _ := s.tlsNode(mb, all)
	c, pc := s.tlsNode(mc, atC)
	fn := map[string]dfaas.FunctionPlan{"echo": unlimited}
	s.apply(b, fn)
	toB := dfaas.Share{Node: mb.node(), Addr: b.PeerAddr(), Weight: 1, Cap: 1e6}
	toC := dfaas.Share{Node: mc.node(), Addr: c.PeerAddr(), Weight: 1, Cap: 1e6}
	users := make([]*http.Client, 4)
	for i := range users {
		users[i] = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
		defer users[i].CloseIdleConnections()
	}
	// round has each user send n requests, one after the other.
	round := func(n int) (codes map[int]int, errs []error) {
		codes = map[int]int{}
		var mu sync.Mutex
		var wg sync.WaitGroup
		for _, u := range users {
			wg.Go(func() {
				for range n {
					code, err := func() (int, error) {
						resp, err := u.Post("http://"+a.UserAddr()+"/function/echo", "text/plain", strings.NewReader("x"))
						if err != nil {
							return 0, err
						}
						defer resp.Body.Close()
						_, _ = io.Copy(io.Discard, resp.Body)
						return resp.StatusCode, nil
					}()
					mu.Lock()
					if err != nil {
						errs = append(errs, err)
					} else {
						codes[code]++
					}
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		return codes, errs
	}
	for k := range 3 {
		// c is a member, a forwards to b and c.
		atC.Set(ma.node(), mb.node(), mc.node())
		s.apply(c, fn)
		s.apply(a, map[string]dfaas.FunctionPlan{"echo": {Peers: []dfaas.Share{toB, toC}}})
		codes, errs := round(10)
		require.Empty(t, errs)
		require.Equal(t, map[int]int{http.StatusOK: 40}, codes)
		ran := pc.Calls.Load()
		require.Positive(t, ran, "c took its part")

		// c adopts its removal, a a moment later.
		atC.Set(mc.node())
		s.apply(c, fn)
		type result struct {
			codes map[int]int
			errs  []error
		}
		done := make(chan result, 1)
		go func() {
			codes, errs := round(20)
			done <- result{codes, errs}
		}()
		time.Sleep(time.Duration(k*10) * time.Millisecond)
		s.apply(a, map[string]dfaas.FunctionPlan{"echo": {Peers: []dfaas.Share{toB}}})
		r := <-done
		assert.Empty(t, r.errs, "round %d: users got no answer", k)
		assert.Equal(t, map[int]int{http.StatusOK: 80}, r.codes, "round %d: b had room for every request", k)
		assert.Equal(t, ran, pc.Calls.Load(), "round %d: c ran something after it stopped admitting a", k)
	}
}
