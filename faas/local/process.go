package local

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"time"
)

// maxBody bounds a process function's request and response.
const maxBody = 16 << 20

// process runs a command per request, the classic OpenFaaS watchdog way:
// the request body on stdin, stdout as the response body, a non-zero exit
// as a 500 with stderr.
type process struct {
	argv []string
	env  []string
}

func newProcess(envProcess string, envVars map[string]string) (*process, error) {
	argv := strings.Fields(envProcess)
	if len(argv) == 0 {
		return nil, errors.New("empty envProcess")
	}
	if _, err := exec.LookPath(argv[0]); err != nil {
		return nil, fmt.Errorf("envProcess %q: %w", argv[0], err)
	}
	env := os.Environ()
	for k, v := range envVars {
		env = append(env, k+"="+v)
	}
	return &process{argv: argv, env: env}, nil
}

func (p *process) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil || len(body) > maxBody {
		http.Error(w, "request body unreadable or over 16 MiB", http.StatusRequestEntityTooLarge)
		return
	}
	ctx := r.Context()
	cmd := exec.CommandContext(ctx, p.argv[0], p.argv[1:]...)
	// The function runs in a process group of its own: on timeout the whole
	// group is killed, children it forked included, and Wait gives up on
	// pipes a leftover still holds after a second.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	cmd.Env = slices.Concat(p.env, []string{"Http_Method=" + r.Method, "Http_Path=" + r.URL.Path, "Http_Query=" + r.URL.RawQuery})
	cmd.Stdin = bytes.NewReader(body)
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &limited{w: &stdout, n: maxBody}
	cmd.Stderr = &limited{w: &stderr, n: 64 << 10}
	if err := cmd.Run(); err != nil {
		code := http.StatusInternalServerError
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			code = http.StatusGatewayTimeout
		}
		http.Error(w, fmt.Sprintf("%v: %s", err, strings.TrimSpace(stderr.String())), code)
		return
	}
	_, _ = w.Write(stdout.Bytes())
}

// limited writes at most n bytes and drops the rest.
type limited struct {
	w io.Writer
	n int
}

func (l *limited) Write(b []byte) (int, error) {
	if l.n <= 0 {
		return len(b), nil
	}
	k := min(len(b), l.n)
	l.n -= k
	if _, err := l.w.Write(b[:k]); err != nil {
		return 0, err
	}
	return len(b), nil
}
