package local

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/openfaas/faas-provider/logs"
)

// logLines is how many of a function's latest log lines the provider keeps.
const logLines = 1000

// logsTimeout bounds one logs request (a follower's too).
const logsTimeout = 30 * time.Minute

// logBook is a function's log: its latest lines, and who follows it.
type logBook struct {
	name, ns string
	mu       sync.Mutex
	lines    []logs.Message // oldest first, at most logLines
	follow   map[chan logs.Message]struct{}
}

func newLogBook(k key) *logBook {
	return &logBook{name: k.name, ns: k.ns, follow: map[chan logs.Message]struct{}{}}
}

// add records one line of text (a trailing newline is dropped), stamped
// now, and hands it to the followers (one too slow misses it).
func (b *logBook) add(text string) {
	if b == nil {
		return
	}
	m := logs.Message{Name: b.name, Namespace: b.ns, Instance: b.name, Timestamp: time.Now().UTC(), Text: strings.TrimRight(text, "\n")}
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.lines) == logLines {
		b.lines = append(b.lines[:0], b.lines[1:]...)
	}
	b.lines = append(b.lines, m)
	for c := range b.follow {
		select {
		case c <- m:
		default:
		}
	}
}

// addLines records each line of out.
func (b *logBook) addLines(out string) {
	for _, line := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
		if line != "" {
			b.add(line)
		}
	}
}

// logKey is the context key of a Go handler's log.
type logKey struct{}

// Logf writes a line to the log of the function serving r, as a Go handler
// of faas/local does (the provider's logs API serves it; faas-cli logs
// reads it). Outside a function it does nothing.
func Logf(r *http.Request, format string, args ...any) {
	b, _ := r.Context().Value(logKey{}).(*logBook)
	b.add(fmt.Sprintf(format, args...))
}

// withLog hands a Go handler its log.
func withLog(h http.Handler, b *logBook) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), logKey{}, b)))
	})
}

// Query implements the logs.Requester of faas-provider's logs handler: the
// function's lines since req.Since, the last req.Tail of them, then, with
// req.Follow, each new one until ctx ends.
func (p *Provider) Query(ctx context.Context, req logs.Request) (<-chan logs.Message, error) {
	ns := req.Namespace
	if ns == "" {
		ns = p.cfg.Namespace
	}
	p.mu.RLock()
	f, ok := p.fns[key{ns, req.Name}]
	p.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("function %q not found in namespace %q", req.Name, ns)
	}
	b := f.log
	b.mu.Lock()
	var past []logs.Message
	for _, m := range b.lines {
		if req.Since == nil || !m.Timestamp.Before(*req.Since) {
			past = append(past, m)
		}
	}
	if req.Tail > 0 && len(past) > req.Tail {
		past = past[len(past)-req.Tail:]
	}
	var live chan logs.Message
	if req.Follow {
		live = make(chan logs.Message, 256)
		b.follow[live] = struct{}{}
	}
	b.mu.Unlock()
	out := make(chan logs.Message)
	go func() {
		defer close(out)
		if live != nil {
			defer func() {
				b.mu.Lock()
				delete(b.follow, live)
				b.mu.Unlock()
			}()
		}
		for _, m := range past {
			select {
			case out <- m:
			case <-ctx.Done():
				return
			}
		}
		for live != nil {
			select {
			case m := <-live:
				select {
				case out <- m:
				case <-ctx.Done():
					return
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}
