// Command platformd is a testbed node's FaaS platform as a process of its
// own, so that the testbed can give it a CPU budget (a cgroup) apart from
// the agent's: a faas/local provider whose functions record every
// execution on standard output, for the testbed's ledger.
//
// It prints "listening <host:port>" once it serves, then a line per
// execution that ended: "ran <unix ns of the end> <function> <µs> <status>
// <request id>", the id being the request body (at most 256 bytes, no
// spaces). Image dfaas/testbed answers "<node> <id>"; the provider's
// built-in images (dfaas/cpu, ...) do their work. With -hog it only burns
// CPU in that many threads, for ever: a noisy neighbour.
//
// It ends when its parent does (Linux: a parent-death signal) or on
// SIGTERM.
package main

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/dfaas-go/dfaas/faas"
	"github.com/dfaas-go/dfaas/faas/local"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "listen address")
	node := flag.String("node", "node", "this node's name, in the echo function's answers")
	hog := flag.Int("hog", 0, "only burn CPU in this many threads")
	enforce := flag.Bool("enforce", true, "make each function's dfaas.maxrate label its physical capacity (for echoes, which have no cost of their own)")
	flag.Parse()
	if *hog > 0 {
		burn(*hog)
		return
	}
	if err := serve(*listen, *node, *enforce); err != nil {
		fmt.Fprintln(os.Stderr, "platformd:", err)
		os.Exit(1)
	}
}

// burn keeps n threads busy until the process is killed.
func burn(n int) {
	for range n {
		go func() {
			_ = faas.Burn(context.Background(), time.Duration(1<<62), []byte("hog"))
		}()
	}
	select {}
}

// ledger writes a line per execution to out.
type ledger struct {
	mu  sync.Mutex
	out *bufio.Writer
}

func (l *ledger) ran(fn string, took time.Duration, status int, id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(l.out, "ran %d %s %d %d %s\n", time.Now().UnixNano(), fn, took.Microseconds(), status, id)
	_ = l.out.Flush()
}

// statusRecorder remembers the status a handler wrote.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// record is the provider's middleware: it reads the request id (the body),
// gives the function the same body, and records the execution when it
// ends.
func (l *ledger) record(fn, _ string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 256))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		id := strings.Join(strings.Fields(string(body)), "_")
		if id == "" {
			id = "-"
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		if rec.status == 0 {
			rec.status = http.StatusOK
		}
		l.ran(fn, time.Since(start), rec.status, id)
	})
}

func serve(addr, node string, enforce bool) error {
	l := &ledger{out: bufio.NewWriter(os.Stdout)}
	p, err := local.New(local.Config{Addr: addr, EnforceMaxRate: enforce, Logger: slog.New(slog.DiscardHandler), Middleware: l.record})
	if err != nil {
		return err
	}
	defer p.Close()
	echo := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 256))
		_, _ = fmt.Fprintf(w, "%s %s", node, bytes.TrimSpace(body))
	})
	if err := p.RegisterImage("dfaas/testbed", echo); err != nil {
		return err
	}
	l.mu.Lock()
	fmt.Fprintf(l.out, "listening %s\n", strings.TrimSuffix(strings.TrimPrefix(p.URL(), "http://"), "/"))
	_ = l.out.Flush()
	l.mu.Unlock()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	<-ctx.Done()
	return nil
}
