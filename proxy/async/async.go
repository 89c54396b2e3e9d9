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
// Delivery is at least once, with the call's id on every run and callback
// so that a receiver can tell a repeat: a call runs once and its callback
// is sent once unless the node stops between a run's end and the write of
// its result (the call runs again after the restart), or between a
// callback's arrival and the record's removal (the callback is sent
// again). A call the node's data plane did not run (no capacity anywhere
// now: its own 503; or its listener unreachable) waits and goes again,
// without counting as an attempt. A call the platform refused (429:
// OpenFaaS's max_inflight) is tried again, up to Config.MaxAttempts, as
// OpenFaaS's queue worker does, and so is one the data plane answered 404
// itself (its plan did not name the function then). The calls of a
// function Config.Known says no of (a node restarted with calls queued has
// no plan yet) wait for up to a minute before they go.
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
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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
	case c.MaxPerFunction < 0 || c.MaxBytes < 0 || c.MaxBody < 0 || c.Concurrency < 0 || c.MaxAttempts < 0 || c.RetryDelay < 0 || c.Timeout < 0 || c.CallbackTimeout < 0:
		return fmt.Errorf("%w: async: a negative bound", dfaas.ErrInvalidConfig)
	}
	return nil
}

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
}

// result is a run's answer.
type result struct {
	Status   int           `json:"status"`
	Header   http.Header   `json:"header,omitempty"`
	Body     []byte        `json:"body,omitempty"`
	Duration time.Duration `json:"duration"`
}

// waiting is a call in memory: its key and what the bounds count.
type waiting struct {
	key      uint64
	size     int64
	accepted time.Time
}

// line is one function's calls waiting, oldest first, and how many it may
// have in progress (additive increase, multiplicative decrease: halved
// when the node had no capacity for one, one more for each that ran).
type line struct {
	calls   []waiting
	running int
	limit   float64
	until   time.Time // none start before
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
	bytes   int64 // bodies waiting or in progress
	running int
	wake    chan struct{}

	// stop ends the dispatch (Close); ctx, a grace period later, the
	// runs in progress.
	stop, ctx    context.Context
	halt, cancel context.CancelFunc
	done         chan struct{}
	wg           sync.WaitGroup

	accepted, completed, requeued, refused, callbacksFailed atomic.Uint64
}

// Open opens (or creates) the queue at cfg.Path and starts running its
// calls, those a previous run left first.
func Open(cfg Config) (*Queue, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	db, err := bolt.Open(cfg.Path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return nil, fmt.Errorf("async: open %s: %w", cfg.Path, err)
	}
	q := &Queue{cfg: cfg, log: cfg.Logger.With("component", "async"), db: db, lines: map[string]*line{}, wake: make(chan struct{}, 1), done: make(chan struct{}),
		client: &http.Client{Timeout: cfg.Timeout, Transport: &http.Transport{MaxIdleConnsPerHost: cfg.Concurrency, DisableCompression: true}},
		callbacks: &http.Client{Timeout: cfg.CallbackTimeout, Transport: &http.Transport{Proxy: http.ProxyFromEnvironment, DisableCompression: true},
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
			q.push(c.Function, waiting{key: binary.BigEndian.Uint64(k), size: int64(len(c.Body)), accepted: c.Accepted}, false)
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

// closeGrace is how long Close lets the calls in progress finish.
const closeGrace = 10 * time.Second

// Close stops starting calls, lets those in progress finish for up to
// closeGrace (then cuts them: they run again after a restart, or their
// callbacks are sent), and closes the file.
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
	case <-time.After(closeGrace):
		q.log.Warn("calls in progress cut at close: they go again after a restart")
	}
	q.cancel()
	<-finished
	q.client.CloseIdleConnections()
	q.callbacks.CloseIdleConnections()
	return q.db.Close()
}

// ServeHTTP accepts an asynchronous call: /async-function/<name>[/path].
func (q *Queue) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	w.Header().Set(proxy.HeaderStartTime, strconv.FormatInt(start.UnixNano(), 10))
	if proxy.HasDotSegment(r.URL.Path) {
		http.Error(w, "the path has a dot segment", http.StatusBadRequest)
		return
	}
	raw := r.URL.EscapedPath()
	rest, ok := strings.CutPrefix(raw, "/async-function/")
	name, path, _ := strings.Cut(rest, "/")
	if !ok || dfaas.ValidateFunctionName(name) != nil || (q.cfg.Known != nil && !q.cfg.Known(name)) {
		http.Error(w, "function not found", http.StatusNotFound)
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
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, q.cfg.MaxBody))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			http.Error(w, "request body too large", http.StatusRequestEntityTooLarge)
			return
		}
		http.Error(w, "reading the body: "+err.Error(), http.StatusBadRequest)
		return
	}
	c.Body = body
	c.Header = r.Header.Clone()
	proxy.RemoveHopByHop(c.Header)
	for _, h := range []string{HeaderCallback, proxy.HeaderHop, proxy.HeaderFrom, "Content-Length"} {
		c.Header.Del(h)
	}
	c.Header.Set(proxy.HeaderCallID, c.ID)
	if err := q.enqueue(c); err != nil {
		if errors.Is(err, errFull) {
			w.Header().Set("Retry-After", "1")
			http.Error(w, err.Error(), http.StatusTooManyRequests)
			return
		}
		q.log.Error("call not queued", "function", name, "err", err)
		http.Error(w, "the queue could not take the call", http.StatusInternalServerError)
		return
	}
	w.Header().Set(proxy.HeaderCallID, c.ID)
	w.WriteHeader(http.StatusAccepted)
}

var errFull = errors.New("the function's queue is full")

// enqueue stores c (durably) and puts it in its line.
func (q *Queue) enqueue(c call) error {
	size := int64(len(c.Body))
	q.mu.Lock()
	l := q.lines[c.Function]
	if l != nil && len(l.calls)+l.running >= q.cfg.MaxPerFunction || q.bytes+size > q.cfg.MaxBytes {
		q.mu.Unlock()
		q.refused.Add(1)
		return errFull
	}
	q.bytes += size // held while it is written
	q.mu.Unlock()
	v, err := json.Marshal(c)
	var key uint64
	if err == nil {
		err = q.db.Update(func(tx *bolt.Tx) error {
			b := tx.Bucket(bucket)
			if key, err = b.NextSequence(); err != nil {
				return err
			}
			return b.Put(keyBytes(key), v)
		})
	}
	q.mu.Lock()
	q.bytes -= size
	if err == nil {
		q.push(c.Function, waiting{key: key, size: size, accepted: c.Accepted}, false)
	}
	q.mu.Unlock()
	if err != nil {
		return err
	}
	q.accepted.Add(1)
	q.poke()
	return nil
}

func keyBytes(k uint64) []byte { return binary.BigEndian.AppendUint64(nil, k) }

func (q *Queue) poke() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// dispatch starts calls as their lines and the concurrency allow, the
// functions in turn.
func (q *Queue) dispatch() {
	defer close(q.done)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		next := q.start()
		timer.Reset(next)
		select {
		case <-q.stop.Done():
			return
		case <-q.wake:
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
				if l.running == 0 {
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

// outcome is what became of a run.
type outcome int

const (
	ran      outcome = iota // a result, to deliver
	notRun                  // the node had no capacity, or was not reached: goes again
	tryAgain                // the platform refused (429): another attempt, later
)

// run runs one call (or delivers its result, if it has one) and puts it
// back in its line if it goes again.
func (q *Queue) run(fn string, w waiting) {
	defer q.wg.Done()
	o := ran
	c, err := q.load(w.key)
	if err == nil && c.Result == nil {
		o = q.invoke(&c)
		if o == tryAgain {
			c.Attempts++
			if c.Attempts >= q.cfg.MaxAttempts {
				o = ran // its last answer is its result
			} else {
				c.Result = nil // stored without it: it runs again
			}
		}
		if o != notRun {
			err = q.save(w.key, c) // the result (or the attempt) before anything else
		}
	}
	if err != nil && q.ctx.Err() == nil {
		q.log.Error("queued call lost", "function", fn, "err", err)
		q.drop(w.key)
		o = ran
	}
	if o == ran && err == nil && c.Result != nil && q.ctx.Err() == nil {
		q.deliver(c)
		q.drop(w.key)
		q.completed.Add(1)
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
		q.bytes -= w.size
	default:
		// Not run now: again, first of its line, after a pause; fewer at
		// once for the function.
		l.calls = append([]waiting{w}, l.calls...)
		l.limit = max(1, l.limit/2)
		pause := 50 * time.Millisecond
		if o == tryAgain {
			pause = min(30*time.Second, q.cfg.RetryDelay<<min(c.Attempts-1, 10))
		}
		l.until = time.Now().Add(pause)
		q.requeued.Add(1)
	}
	q.mu.Unlock()
	q.poke()
}

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
			return notRun // the node is stopping, or its listener is not up: never sent
		}
		// Sent, and then no answer: it may have run.
		c.Result = &result{Status: http.StatusBadGateway, Body: []byte(err.Error()), Duration: time.Since(t0)}
		return ran
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, q.cfg.MaxBody))
	if err != nil && q.ctx.Err() != nil {
		return notRun
	}
	// The node's own 503 (no X-Dfaas-Node: no platform answered): no
	// capacity anywhere now, and nothing ran.
	ownAnswer := resp.Header.Get(proxy.HeaderNode) == ""
	if resp.StatusCode == http.StatusServiceUnavailable && ownAnswer {
		return notRun
	}
	c.Result = &result{Status: resp.StatusCode, Header: resp.Header.Clone(), Body: body, Duration: time.Since(t0)}
	// The platform refused it (429), or the node's plan does not name the
	// function now (its own 404): again later, a few times.
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusNotFound && ownAnswer {
		return tryAgain
	}
	return ran
}

// deliver POSTs c's result to its callback, if it has one: a few tries
// while the receiver fails (5xx) or cannot be reached.
func (q *Queue) deliver(c call) {
	if c.Callback == "" {
		return
	}
	for try := range 3 {
		if try > 0 {
			select {
			case <-q.ctx.Done():
				return
			case <-time.After(time.Duration(try*try) * time.Second):
			}
		}
		req, err := http.NewRequestWithContext(q.ctx, http.MethodPost, c.Callback, bytes.NewReader(c.Result.Body))
		if err != nil {
			break
		}
		for k, v := range c.Result.Header {
			req.Header[k] = v
		}
		proxy.RemoveHopByHop(req.Header)
		req.Header.Del("Content-Length")
		req.Header.Set(HeaderStatus, strconv.Itoa(c.Result.Status))
		req.Header.Set(HeaderFunction, c.Function)
		req.Header.Set(HeaderDuration, strconv.FormatFloat(c.Result.Duration.Seconds(), 'f', 6, 64))
		req.Header.Set(proxy.HeaderCallID, c.ID)
		resp, err := q.callbacks.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
			resp.Body.Close()
			if resp.StatusCode < 500 {
				return
			}
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		if q.ctx.Err() != nil {
			return
		}
		q.log.Warn("callback failed", "function", c.Function, "call", c.ID, "try", try+1, "err", err)
	}
	q.callbacksFailed.Add(1)
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

func (q *Queue) save(key uint64, c call) error {
	v, err := json.Marshal(c)
	if err != nil {
		return err
	}
	return q.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucket).Put(keyBytes(key), v) })
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
	// Accepted calls (answered 202), Completed (run, their callbacks
	// sent or tried), Requeued (went again: no capacity now, or refused by
	// the platform), Refused (429: the queue full), CallbacksFailed (given
	// up after their tries).
	Accepted, Completed, Requeued, Refused, CallbacksFailed uint64
}

// Stats returns the queue's counters.
func (q *Queue) Stats() Stats {
	return Stats{Accepted: q.accepted.Load(), Completed: q.completed.Load(), Requeued: q.requeued.Load(), Refused: q.refused.Load(),
		CallbacksFailed: q.callbacksFailed.Load()}
}
