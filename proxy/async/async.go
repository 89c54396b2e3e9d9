// Package async runs a node's asynchronous calls, as OpenFaaS's gateway
// and queue worker do: POST /async-function/<name>[/path] answers 202 with
// X-Call-Id at once; the call waits in a queue on disk; it runs later
// through the node's own user listener, so that a node's backlog goes where
// its synchronous calls would (locally within its capacity, to peers with
// room beyond it); and its result is POSTed to the caller's X-Callback-Url,
// with the function's headers, X-Function-Status and X-Call-Id.
//
// The queue is a bbolt file (go.etcd.io/bbolt, etcd's store: one file,
// transactions made durable by fsync, no server): a call accepted is on
// disk before its 202, and survives the node's restart.
//
// Runs are at least once, with the call's id on every run and callback so
// that a receiver can tell a repeat: a call runs again after a restart if
// the node stopped while it ran (or after its end, before the write of its
// result). A result is stored before its callback, which goes out apart
// from the runs (a slow receiver holds no run back), a few times while the
// receiver fails, and again after a restart if the node stopped before it
// was through. A call the node's data plane did not run (its own 503,
// marked proxy.HeaderRejected: no capacity anywhere now; or its listener
// unreachable) waits and goes again, without counting as an attempt. A call
// the platform refused (429: OpenFaaS's max_inflight) is tried again, up to
// Config.MaxAttempts, as OpenFaaS's queue worker does, and so is one the
// data plane answered 404 itself (its plan did not name the function then).
// The calls of a function Config.Known says no of (a node restarted with
// calls queued has no plan yet) wait for up to a minute before they go.
//
// Callbacks go where callers say, as the gateway's do, but not to this
// host's loopback addresses, link-local ones (cloud metadata services) or
// unspecified ones, unless Config.Callbacks allows them.
package async

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/google/uuid"
	bolt "go.etcd.io/bbolt"

	"github.com/dfaas-go/dfaas"
	"github.com/dfaas-go/dfaas/proxy"
)

// Headers of asynchronous calls, as OpenFaaS names them.
const (
	// HeaderCallback is where a call's result goes (an absolute http or
	// https URL); without it the result is dropped.
	HeaderCallback = "X-Callback-Url"
	// HeaderStatus carries the function's status on a callback.
	HeaderStatus = "X-Function-Status"
	// HeaderFunction names the function on a callback.
	HeaderFunction = "X-Function-Name"
	// HeaderDuration is how long the run took, in seconds, on a callback.
	HeaderDuration = "X-Duration-Seconds"
)

// Config configures a Queue. Path and Invoke are required; the zero value
// of the other fields means their default.
type Config struct {
	// Path is the queue's file (created 0600 if missing).
	Path string
	// Invoke is the node's user listener, host:port: where calls run, as
	// /function/<name>[/path].
	Invoke string
	// Known reports whether a function can be called now (the node's plan
	// names it): others are answered 404, as a synchronous call is.
	// Default: every valid name.
	Known func(function string) bool
	// MaxPerFunction bounds a function's calls waiting: beyond it a call
	// is answered 429. Default 10000.
	MaxPerFunction int
	// MaxBytes bounds the bodies waiting, over all functions (429 beyond).
	// Default 256 MiB.
	MaxBytes int64
	// MaxBody is the largest body a call takes (413 beyond). Default
	// proxy.DefaultMaxBody.
	MaxBody int64
	// Concurrency bounds the calls in progress. Default 64.
	Concurrency int
	// MaxAttempts bounds the runs of a call the platform refused (429).
	// Default 10.
	MaxAttempts int
	// RetryDelay is the wait before a call the platform refused (429) goes
	// again, doubled at every attempt up to 30 s. Default 1 s.
	RetryDelay time.Duration
	// Callbacks reports whether a callback may go to an address (checked
	// as it connects, whatever the URL's name resolved to). Default
	// PublicCallbacks.
	Callbacks func(netip.Addr) bool
	// CallbackConcurrency bounds the callbacks in progress (two at most
	// to one host). Default 16.
	CallbackConcurrency int
	// CloseGrace is how long Close lets the calls and callbacks in
	// progress finish before it cuts them. Default 10 s.
	CloseGrace time.Duration
	// Timeout bounds one run. Default 5 min.
	Timeout time.Duration
	// CallbackTimeout bounds one callback. Default 30 s.
	CallbackTimeout time.Duration
	// Logger receives the queue's logs. Default slog.Default().
	Logger *slog.Logger
}

// Defaults of Config.
const (
	DefaultMaxPerFunction  = 10000
	DefaultMaxBytes        = 256 << 20
	DefaultConcurrency     = 64
	DefaultMaxAttempts     = 10
	DefaultTimeout         = 5 * time.Minute
	DefaultCallbackTimeout = 30 * time.Second
)

func (c Config) withDefaults() Config {
	if c.MaxPerFunction == 0 {
		c.MaxPerFunction = DefaultMaxPerFunction
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = DefaultMaxBytes
	}
	if c.MaxBody == 0 {
		c.MaxBody = proxy.DefaultMaxBody
	}
	if c.Concurrency == 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = DefaultMaxAttempts
	}
	if c.RetryDelay == 0 {
		c.RetryDelay = time.Second
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.Callbacks == nil {
		c.Callbacks = PublicCallbacks
	}
	if c.CloseGrace == 0 {
		c.CloseGrace = 10 * time.Second
	}
	if c.CallbackConcurrency == 0 {
		c.CallbackConcurrency = 16
	}
	if c.CallbackTimeout == 0 {
		c.CallbackTimeout = DefaultCallbackTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Validate reports the first invalid field.
func (c Config) Validate() error {
	switch {
	case c.Path == "":
		return fmt.Errorf("%w: async: no queue file", dfaas.ErrInvalidConfig)
	case dfaas.ValidateAddr(c.Invoke) != nil:
		return fmt.Errorf("%w: async: user listener %q: want host:port", dfaas.ErrInvalidConfig, c.Invoke)
	case c.MaxPerFunction < 0 || c.MaxBytes < 0 || c.MaxBody < 0 || c.Concurrency < 0 || c.MaxAttempts < 0 || c.RetryDelay < 0 || c.CallbackConcurrency < 0 || c.CloseGrace < 0 || c.Timeout < 0 || c.CallbackTimeout < 0:
		return fmt.Errorf("%w: async: a negative bound", dfaas.ErrInvalidConfig)
	}
	return nil
}

// PublicCallbacks is the default Config.Callbacks: every address but
// loopback, link-local (a cloud's metadata service at 169.254.169.254) and
// unspecified ones, and multicast.
func PublicCallbacks(a netip.Addr) bool {
	a = a.Unmap()
	return a.IsValid() && !a.IsLoopback() && !a.IsLinkLocalUnicast() && !a.IsLinkLocalMulticast() && !a.IsUnspecified() && !a.IsMulticast()
}

// AnyCallbacks allows callbacks to any address (a lab's receivers on
// loopback).
func AnyCallbacks(netip.Addr) bool { return true }

// call is a queued call as stored.
type call struct {
	ID       string      `json:"id"`
	Function string      `json:"function"`
	Method   string      `json:"method"`
	Path     string      `json:"path,omitempty"` // after /async-function/<name>, escaped as it came
	Query    string      `json:"query,omitempty"`
	Header   http.Header `json:"header,omitempty"`
	Body     []byte      `json:"body,omitempty"`
	Callback string      `json:"callback,omitempty"`
	Accepted time.Time   `json:"accepted"`
	Attempts int         `json:"attempts,omitempty"`
	// Result is the run's answer, kept until its callback is sent.
	Result *result `json:"result,omitempty"`

	key uint64 // in the store
}

// result is a run's answer.
type result struct {
	Status   int           `json:"status"`
	Header   http.Header   `json:"header,omitempty"`
	Body     []byte        `json:"body,omitempty"`
	Duration time.Duration `json:"duration"`
}

// waiting is a call in memory: its key and what the bounds count (its
// stored size), and for a callback its host.
type waiting struct {
	key      uint64
	size     int64
	accepted time.Time
	host     string
}

// line is one function's calls waiting, oldest first, and how many it may
// have in progress (additive increase, multiplicative decrease: halved
// when the node had no capacity for one, one more for each that ran).
type line struct {
	calls    []waiting
	running  int
	reserved int // accepts under way
	limit    float64
	until    time.Time     // none start before
	backoff  time.Duration // the pause after a call the node had no capacity for, doubled each time
	// unknown is since when Config.Known has said no of the function:
	// its calls wait (a node restarting has no plan yet) for up to
	// unknownWait, then go, and the data plane's 404 counts as an attempt.
	unknown time.Time
}

// unknownWait is how long calls of a function no plan names wait before
// they go anyway.
const unknownWait = time.Minute

var bucket = []byte("calls")

// Queue is a node's queue of asynchronous calls. It is safe for
// concurrent use.
type Queue struct {
	cfg       Config
	log       *slog.Logger
	db        *bolt.DB
	client    *http.Client
	callbacks *http.Client

	mu      sync.Mutex
	lines   map[string]*line
	bytes   int64 // stored calls not yet done with
	running int
	wake    chan struct{}
	// outbox holds the results to call back, in order; sending the
	// callbacks in progress, by host.
	outbox  []waiting
	sending map[string]int
	sends   int
	mail    chan struct{}

	// stop ends the dispatch (Close); ctx, a grace period later, the
	// runs in progress.
	stop, ctx    context.Context
	halt, cancel context.CancelFunc
	done         chan struct{}
	wg           sync.WaitGroup

	accepted, completed, requeued, refused, callbacksFailed atomic.Uint64
}

// Open opens (or creates) the queue at cfg.Path and starts running its
// calls, and sending the callbacks a previous run left.
func Open(cfg Config) (*Queue, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	db, err := bolt.Open(cfg.Path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return nil, fmt.Errorf("async: open %s: %w", cfg.Path, err)
	}
	allowed := cfg.Callbacks
	dialer := &net.Dialer{Timeout: 10 * time.Second, Control: func(_, address string, _ syscall.RawConn) error {
		ap, err := netip.ParseAddrPort(address)
		if err != nil || !allowed(ap.Addr()) {
			return fmt.Errorf("%w: %s", errDenied, address)
		}
		return nil
	}}
	q := &Queue{cfg: cfg, log: cfg.Logger.With("component", "async"), db: db, lines: map[string]*line{}, wake: make(chan struct{}, 1), done: make(chan struct{}),
		sending: map[string]int{}, mail: make(chan struct{}, 1),
		client: &http.Client{Timeout: cfg.Timeout, Transport: &http.Transport{MaxIdleConnsPerHost: cfg.Concurrency, DisableCompression: true}},
		callbacks: &http.Client{Timeout: cfg.CallbackTimeout, Transport: &http.Transport{DialContext: dialer.DialContext, DisableCompression: true,
			MaxIdleConnsPerHost: 2},
			// A callback is not followed elsewhere: it goes where the caller said.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
	err = db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucket)
		if err != nil {
			return err
		}
		var bad [][]byte
		err = b.ForEach(func(k, v []byte) error {
			var c call
			if err := json.Unmarshal(v, &c); err != nil || len(k) != 8 {
				q.log.Warn("unreadable call dropped from the queue", "err", err)
				bad = append(bad, bytes.Clone(k))
				return nil
			}
			w := waiting{key: binary.BigEndian.Uint64(k), size: int64(len(v)), accepted: c.Accepted}
			if c.Result != nil { // run: its callback is due
				w.host = hostOf(c.Callback)
				q.outbox = append(q.outbox, w)
				q.bytes += w.size
				return nil
			}
			q.push(c.Function, w, false)
			return nil
		})
		for _, k := range bad {
			err = errors.Join(err, b.Delete(k))
		}
		return err
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("async: read %s: %w", cfg.Path, err)
	}
	q.stop, q.halt = context.WithCancel(context.Background())
	q.ctx, q.cancel = context.WithCancel(context.Background())
	go q.dispatch()
	return q, nil
}

// hostOf is a callback URL's host (its bound of callbacks at once).
func hostOf(callback string) string {
	u, err := url.Parse(callback)
	if err != nil {
		return ""
	}
	return u.Host
}

// push puts a call in its function's line: at the back, or at the front
// (a call that goes again keeps its turn).
func (q *Queue) push(fn string, w waiting, front bool) {
	l := q.lines[fn]
	if l == nil {
		l = &line{limit: 1}
		q.lines[fn] = l
	}
	if front {
		l.calls = append([]waiting{w}, l.calls...)
	} else {
		l.calls = append(l.calls, w)
	}
	q.bytes += w.size
}

// Close stops starting calls and callbacks, lets those in progress finish
// for up to Config.CloseGrace (then cuts them: cut runs go again after a restart,
// cut callbacks are sent again), and closes the file.
func (q *Queue) Close() error {
	q.halt()
	<-q.done
	finished := make(chan struct{})
	go func() {
		q.wg.Wait()
		close(finished)
	}()
	select {
	case <-finished:
	case <-time.After(q.cfg.CloseGrace):
		q.log.Warn("calls and callbacks in progress cut at close: they go again after a restart")
	}
	q.cancel()
	<-finished
	q.client.CloseIdleConnections()
	q.callbacks.CloseIdleConnections()
	return q.db.Close()
}

// headerAllowance is what a call's stored record is reckoned at beyond
// its body before the body is read: its headers, path and query, as the
// user listener bounds them (64 KiB).
const headerAllowance = 64 << 10

// ServeHTTP accepts an asynchronous call: POST /async-function/<name>[/path].
func (q *Queue) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	w.Header().Set(proxy.HeaderStartTime, strconv.FormatInt(start.UnixNano(), 10))
	w.Header().Set(proxy.HeaderServedBy, proxy.ServedBy)
	if proxy.HasDotSegment(r.URL.Path) {
		http.Error(w, "the path has a dot segment", http.StatusBadRequest)
		return
	}
	raw := r.URL.EscapedPath()
	rest, ok := strings.CutPrefix(raw, "/async-function/")
	name, path, _ := strings.Cut(rest, "/")
	if !ok || dfaas.ValidateFunctionName(name) != nil || (q.cfg.Known != nil && !q.cfg.Known(name)) {
		w.Header().Set(proxy.HeaderRejected, proxy.RefusedUnknown)
		http.Error(w, "function not found", http.StatusNotFound)
		return
	}
	if r.Method != http.MethodPost { // as the gateway routes them
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "asynchronous calls are POST", http.StatusMethodNotAllowed)
		return
	}
	if path != "" {
		path = "/" + path
	}
	c := call{ID: r.Header.Get(proxy.HeaderCallID), Function: name, Method: r.Method, Path: path, Query: r.URL.RawQuery, Accepted: start}
	if cb := r.Header.Get(HeaderCallback); cb != "" {
		u, err := url.Parse(cb)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			http.Error(w, "X-Callback-Url: want an absolute http or https URL", http.StatusBadRequest)
			return
		}
		c.Callback = u.String()
	}
	if len(c.ID) == 0 || len(c.ID) > 128 {
		c.ID = uuid.NewString()
	}
	if r.ContentLength > q.cfg.MaxBody {
		http.Error(w, "request body too large", http.StatusRequestEntityTooLarge)
		return
	}
	// Room first, before the body is read: a full queue costs a caller
	// nothing but its headers. A body of unknown length is reckoned at
	// MaxBody until it is read.
	reckoned := headerAllowance + q.cfg.MaxBody
	if r.ContentLength >= 0 {
		reckoned = headerAllowance + r.ContentLength*4/3 + 4 // stored in base64
	}
	if !q.reserve(name, reckoned) {
		q.refused.Add(1)
		w.Header().Set("Retry-After", "1")
		http.Error(w, errFull.Error(), http.StatusTooManyRequests)
		return
	}
	err := q.accept(w, r, c, reckoned)
	switch {
	case err == nil:
		w.Header().Set(proxy.HeaderCallID, c.ID)
		w.WriteHeader(http.StatusAccepted)
	case errors.As(err, new(*http.MaxBytesError)):
		http.Error(w, "request body too large", http.StatusRequestEntityTooLarge)
	case errors.Is(err, errRead):
		http.Error(w, err.Error(), http.StatusBadRequest)
	default:
		q.log.Error("call not queued", "function", name, "err", err)
		http.Error(w, "the queue could not take the call", http.StatusInternalServerError)
	}
}

var (
	errDenied = errors.New("async: callbacks to this address are not allowed (async.Config.Callbacks)")
	errFull   = errors.New("the function's queue is full")
	errRead   = errors.New("reading the body")
)

// reserve holds room for a call of fn of size bytes, if the bounds allow.
func (q *Queue) reserve(fn string, size int64) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	l := q.lines[fn]
	if l != nil && len(l.calls)+l.running+l.reserved >= q.cfg.MaxPerFunction || q.bytes+size > q.cfg.MaxBytes {
		return false
	}
	if l == nil {
		l = &line{limit: 1}
		q.lines[fn] = l
	}
	l.reserved++
	q.bytes += size
	return true
}

// accept reads c's body and stores c (durably), within the room reserved
// for it, and puts it in its line.
func (q *Queue) accept(w http.ResponseWriter, r *http.Request, c call, reserved int64) (err error) {
	size := int64(0)
	defer func() {
		q.mu.Lock()
		l := q.lines[c.Function]
		l.reserved--
		q.bytes -= reserved
		if err == nil {
			q.push(c.Function, waiting{key: c.key, size: size, accepted: c.Accepted}, false)
		}
		q.mu.Unlock()
		if err == nil {
			q.accepted.Add(1)
			q.poke()
		}
	}()
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, q.cfg.MaxBody))
	if err != nil {
		if errors.As(err, new(*http.MaxBytesError)) {
			return err
		}
		return fmt.Errorf("%w: %w", errRead, err)
	}
	c.Body = body
	c.Header = r.Header.Clone()
	proxy.RemoveHopByHop(c.Header)
	for _, h := range []string{HeaderCallback, proxy.HeaderHop, proxy.HeaderFrom, "Content-Length"} {
		c.Header.Del(h)
	}
	c.Header.Set(proxy.HeaderCallID, c.ID)
	v, err := json.Marshal(c)
	if err != nil {
		return err
	}
	size = int64(len(v))
	return q.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucket)
		key, err := b.NextSequence()
		if err != nil {
			return err
		}
		c.key = key
		return b.Put(keyBytes(key), v)
	})
}

func keyBytes(k uint64) []byte { return binary.BigEndian.AppendUint64(nil, k) }

func (q *Queue) poke() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// dispatch starts calls as their lines and the concurrency allow, the
// functions in turn, and callbacks as their bounds allow.
func (q *Queue) dispatch() {
	defer close(q.done)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		next := q.start()
		q.startCallbacks()
		timer.Reset(next)
		select {
		case <-q.stop.Done():
			return
		case <-q.wake:
		case <-q.mail:
		case <-timer.C:
		}
	}
}

// start starts what may start now and returns how long until a paused
// line may start again (an hour if none is paused).
func (q *Queue) start() time.Duration {
	q.mu.Lock()
	defer q.mu.Unlock()
	now := time.Now()
	next := time.Hour
	for progress := true; progress && q.running < q.cfg.Concurrency; {
		progress = false
		for fn, l := range q.lines {
			if q.running >= q.cfg.Concurrency {
				break
			}
			if len(l.calls) == 0 {
				if l.running == 0 && l.reserved == 0 {
					delete(q.lines, fn)
				}
				continue
			}
			if now.Before(l.until) {
				next = min(next, l.until.Sub(now))
				continue
			}
			if q.cfg.Known != nil && !q.cfg.Known(fn) {
				if l.unknown.IsZero() {
					l.unknown = now
				}
				if now.Sub(l.unknown) < unknownWait {
					next = min(next, 200*time.Millisecond)
					continue
				}
			} else {
				l.unknown = time.Time{}
			}
			if float64(l.running) >= l.limit {
				continue
			}
			w := l.calls[0]
			l.calls = l.calls[1:]
			l.running++
			q.running++
			progress = true
			q.wg.Add(1)
			go q.run(fn, w)
		}
	}
	return next
}

// startCallbacks starts the due callbacks the bounds allow, oldest first:
// CallbackConcurrency in all, two to one host.
func (q *Queue) startCallbacks() {
	q.mu.Lock()
	defer q.mu.Unlock()
	for i := 0; i < len(q.outbox) && q.sends < q.cfg.CallbackConcurrency; {
		w := q.outbox[i]
		if q.sending[w.host] >= 2 {
			i++
			continue
		}
		q.outbox = slices.Delete(q.outbox, i, i+1)
		q.sending[w.host]++
		q.sends++
		q.wg.Add(1)
		go q.callBack(w)
	}
}

// outcome is what became of a run.
type outcome int

const (
	ran      outcome = iota // a result, to deliver
	notRun                  // the node had no capacity, or was not reached: goes again
	tryAgain                // the platform refused (429), or the node's plan lacked the function: another attempt, later
)

// run runs one call, stores its result and hands it to the callbacks, or
// puts it back in its line if it goes again.
func (q *Queue) run(fn string, w waiting) {
	defer q.wg.Done()
	o := ran
	c, err := q.load(w.key)
	if err == nil {
		o = q.invoke(&c)
		if o == tryAgain {
			c.Attempts++
			if c.Attempts >= q.cfg.MaxAttempts {
				o = ran // its last answer is its result
			} else {
				c.Result = nil // stored without it: it runs again
			}
		}
		switch {
		case o == notRun:
		case o == ran && c.Callback == "":
			q.drop(w.key) // nobody to tell
		default:
			var size int64
			if size, err = q.save(w.key, c); err == nil {
				q.mu.Lock()
				q.bytes += size - w.size
				q.mu.Unlock()
				w.size = size
			}
		}
	}
	if err != nil && q.ctx.Err() == nil {
		q.log.Error("queued call lost", "function", fn, "err", err)
		q.drop(w.key)
		o, c.Callback = ran, ""
	}
	q.mu.Lock()
	l := q.lines[fn]
	if l == nil { // cannot happen: a line with a call running stays
		l = &line{limit: 1}
		q.lines[fn] = l
	}
	l.running--
	q.running--
	switch {
	case q.ctx.Err() != nil:
	case o == ran:
		l.limit = min(float64(q.cfg.Concurrency), l.limit+1)
		l.backoff = 0
		if c.Callback == "" {
			q.bytes -= w.size
			q.completed.Add(1)
		} else {
			w.host = hostOf(c.Callback)
			q.outbox = append(q.outbox, w)
		}
	default:
		// Not run now: again, first of its line, after a pause; fewer at
		// once for the function (halved once a pause).
		// A burst of them (calls in flight together) is one episode: one
		// halving, one pause, which doubles only if the calls after it are
		// turned away again.
		l.calls = append([]waiting{w}, l.calls...)
		now := time.Now()
		if !now.Before(l.until) {
			l.limit = max(1, l.limit/2)
			l.backoff = min(time.Second, max(notRunPause, 2*l.backoff))
			l.until = now.Add(l.backoff)
		}
		if o == tryAgain { // the platform's refusals wait longer, attempt by attempt
			l.until = later(l.until, now.Add(min(30*time.Second, q.cfg.RetryDelay<<min(c.Attempts-1, 10))))
		}
		q.requeued.Add(1)
	}
	q.mu.Unlock()
	q.poke()
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// notRunPause is the first pause of a line after a call the node had no
// capacity for; it doubles while they go on, up to a second.
const notRunPause = 50 * time.Millisecond

// invoke runs c through the node's user listener and records its result.
func (q *Queue) invoke(c *call) outcome {
	u := "http://" + q.cfg.Invoke + "/function/" + c.Function + c.Path
	if c.Query != "" {
		u += "?" + c.Query
	}
	ctx, cancel := context.WithTimeout(q.ctx, q.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, c.Method, u, bytes.NewReader(c.Body))
	if err != nil {
		c.Result = &result{Status: http.StatusBadRequest, Body: []byte(err.Error())}
		return ran
	}
	req.Header = c.Header.Clone()
	req.ContentLength = int64(len(c.Body))
	t0 := time.Now()
	resp, err := q.client.Do(req)
	if err != nil {
		var op *net.OpError
		if q.ctx.Err() != nil || errors.As(err, &op) && op.Op == "dial" {
			return notRun // the node is stopping (it runs again after the restart), or its listener is not up: never sent
		}
		// Sent, and then no answer: it may have run.
		c.Result = &result{Status: http.StatusBadGateway, Body: []byte(err.Error()), Duration: time.Since(t0)}
		return ran
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, q.cfg.MaxBody+1))
	if q.ctx.Err() != nil {
		return notRun
	}
	// The node's own answers to a call that ran nowhere say so.
	switch rejected := resp.Header.Get(proxy.HeaderRejected); {
	case resp.StatusCode == http.StatusServiceUnavailable && rejected == proxy.RefusedCapacity:
		return notRun
	case resp.StatusCode == http.StatusNotFound && rejected == proxy.RefusedUnknown:
		c.Result = &result{Status: resp.StatusCode, Header: resp.Header.Clone(), Body: body, Duration: time.Since(t0)}
		return tryAgain
	}
	c.Result = &result{Status: resp.StatusCode, Header: resp.Header.Clone(), Body: body, Duration: time.Since(t0)}
	switch {
	case err != nil: // it ran; its answer broke off
		c.Result = &result{Status: http.StatusBadGateway, Body: []byte("reading the result: " + err.Error()), Duration: time.Since(t0)}
	case int64(len(body)) > q.cfg.MaxBody:
		c.Result = &result{Status: http.StatusBadGateway, Body: []byte(fmt.Sprintf("the result is larger than %d bytes", q.cfg.MaxBody)),
			Duration: time.Since(t0)}
	case resp.StatusCode == http.StatusTooManyRequests:
		return tryAgain
	}
	return ran
}

// callBack sends a stored result to its callback and drops the call once
// through (delivered, or given up on); one cut by Close stays, for the
// next run.
func (q *Queue) callBack(w waiting) {
	defer q.wg.Done()
	done := true
	if c, err := q.load(w.key); err == nil {
		done = q.deliver(c)
	}
	if done {
		q.drop(w.key)
	}
	q.mu.Lock()
	q.sending[w.host]--
	if q.sending[w.host] == 0 {
		delete(q.sending, w.host)
	}
	q.sends--
	if done {
		q.bytes -= w.size
	}
	q.mu.Unlock()
	if done {
		q.completed.Add(1)
	}
	select {
	case q.mail <- struct{}{}:
	default:
	}
}

// callbackTries are the waits before each try of a callback whose
// receiver failed (5xx, 429, 408) or could not be reached.
var callbackTries = []time.Duration{0, time.Second, 4 * time.Second, 16 * time.Second, time.Minute}

// deliver POSTs c's result to its callback, trying again while the
// receiver fails; it reports false if Close cut it.
func (q *Queue) deliver(c call) bool {
	for try, wait := range callbackTries {
		select {
		case <-q.ctx.Done():
			return false
		case <-time.After(wait):
		}
		req, err := http.NewRequestWithContext(q.ctx, http.MethodPost, c.Callback, bytes.NewReader(c.Result.Body))
		if err != nil {
			break
		}
		for k, v := range c.Result.Header {
			req.Header[k] = v
		}
		proxy.RemoveHopByHop(req.Header)
		for _, h := range []string{"Content-Length", HeaderCallback, proxy.HeaderHop, proxy.HeaderFrom, proxy.HeaderRejected} {
			req.Header.Del(h)
		}
		req.Header.Set(HeaderStatus, strconv.Itoa(c.Result.Status))
		req.Header.Set(HeaderFunction, c.Function)
		req.Header.Set(HeaderDuration, strconv.FormatFloat(c.Result.Duration.Seconds(), 'f', 6, 64))
		req.Header.Set(proxy.HeaderCallID, c.ID)
		resp, err := q.callbacks.Do(req)
		if errors.Is(err, errDenied) {
			q.log.Warn("callback not allowed", "function", c.Function, "call", c.ID, "err", err)
			break // for good
		}
		if err == nil {
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
			resp.Body.Close()
			if resp.StatusCode < 500 && resp.StatusCode != http.StatusTooManyRequests && resp.StatusCode != http.StatusRequestTimeout {
				return true
			}
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		if q.ctx.Err() != nil {
			return false
		}
		q.log.Warn("callback failed", "function", c.Function, "call", c.ID, "try", try+1, "err", err)
	}
	q.callbacksFailed.Add(1)
	return true
}

func (q *Queue) load(key uint64) (call, error) {
	var c call
	err := q.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucket).Get(keyBytes(key))
		if v == nil {
			return fmt.Errorf("async: call %d not in the queue", key)
		}
		return json.Unmarshal(v, &c)
	})
	return c, err
}

// save stores c under key and returns its stored size.
func (q *Queue) save(key uint64, c call) (int64, error) {
	v, err := json.Marshal(c)
	if err != nil {
		return 0, err
	}
	return int64(len(v)), q.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucket).Put(keyBytes(key), v) })
}

func (q *Queue) drop(key uint64) {
	if err := q.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucket).Delete(keyBytes(key)) }); err != nil {
		q.log.Error("delivered call not removed from the queue", "err", err)
	}
}

// Backlog is a function's calls waiting or in progress, and how long the
// oldest waiting one has waited.
type Backlog struct {
	Calls  int
	Oldest time.Duration
}

// Backlogs reports every function's backlog.
func (q *Queue) Backlogs() map[string]Backlog {
	q.mu.Lock()
	defer q.mu.Unlock()
	now := time.Now()
	out := make(map[string]Backlog, len(q.lines))
	for fn, l := range q.lines {
		b := Backlog{Calls: len(l.calls) + l.running}
		if len(l.calls) > 0 {
			b.Oldest = now.Sub(l.calls[0].accepted)
		}
		out[fn] = b
	}
	return out
}

// Stats are the queue's counters since Open.
type Stats struct {
	// Accepted calls (answered 202), Completed (run, and their callbacks
	// sent or given up on), Requeued (went again: no capacity now, or
	// refused by the platform), Refused (429: the queue full),
	// CallbacksFailed (given up after their tries).
	Accepted, Completed, Requeued, Refused, CallbacksFailed uint64
}

// Stats returns the queue's counters.
func (q *Queue) Stats() Stats {
	return Stats{Accepted: q.accepted.Load(), Completed: q.completed.Load(), Requeued: q.requeued.Load(), Refused: q.refused.Load(),
		CallbacksFailed: q.callbacksFailed.Load()}
}
