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
	"strconv"
	"strings"
	"syscall"
	"time"
)

// maxBody bounds a process function's request and response.
const maxBody = 16 << 20

// process runs a command per request, the classic OpenFaaS watchdog way:
// the request body on stdin, stdout as the response body (and stderr with
// it, unless combine_output is false), a non-zero exit as a 500 with
// stderr; the request's method, path (without /function/<name>), query and
// headers in the environment (Http_Method, Http_Path, Http_Query,
// Http_<Header> with "-" as "_"); exec_timeout bounds a run (408 past it),
// content_type sets the answer's Content-Type.
type process struct {
	argv        []string
	env         []string
	combine     bool          // combine_output: stderr in the answer
	timeout     time.Duration // exec_timeout; 0: the function's own bound only
	contentType string        // content_type
	log         *logBook      // stderr (when not combined) and failures
}

// The classic watchdog's environment variables a deployment may set.
const (
	EnvCombineOutput = "combine_output"
	EnvExecTimeout   = "exec_timeout"
	EnvContentType   = "content_type"
	EnvMaxInflight   = "max_inflight"
)

// watchdogDuration parses a watchdog's duration: Go's ("1s", "500ms") or
// whole seconds ("10").
func watchdogDuration(name, v string) (time.Duration, error) {
	if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && n >= 0 {
		return time.Duration(n) * time.Second, nil
	}
	d, err := time.ParseDuration(strings.TrimSpace(v))
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%s=%q: want a duration (10s) or whole seconds", name, v)
	}
	return d, nil
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
	p := &process{argv: argv, env: env, combine: true, contentType: envVars[EnvContentType]}
	if v, ok := envVars[EnvCombineOutput]; ok {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return nil, fmt.Errorf("%s=%q: want true or false", EnvCombineOutput, v)
		}
		p.combine = b
	}
	if v, ok := envVars[EnvExecTimeout]; ok {
		d, err := watchdogDuration(EnvExecTimeout, v)
		if err != nil {
			return nil, err
		}
		p.timeout = d
	}
	return p, nil
}

// requestEnv is the classic watchdog's environment of a request: its
// method, path (as the function sees it, without /function/<name>), query,
// and each header as Http_<Name>, "-" as "_".
func requestEnv(r *http.Request) []string {
	path := r.URL.Path
	if rest, ok := strings.CutPrefix(path, "/function/"); ok {
		_, sub, _ := strings.Cut(rest, "/")
		path = "/" + sub
	}
	env := []string{"Http_Method=" + r.Method, "Http_Path=" + path, "Http_Query=" + r.URL.RawQuery}
	if r.ContentLength >= 0 {
		env = append(env, "Http_ContentLength="+strconv.FormatInt(r.ContentLength, 10))
	}
	for k, vv := range r.Header {
		if len(vv) == 0 || strings.ContainsAny(k, "=\x00") {
			continue
		}
		env = append(env, "Http_"+strings.ReplaceAll(k, "-", "_")+"="+strings.Join(vv, ", "))
	}
	return env
}

func (p *process) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil || len(body) > maxBody {
		http.Error(w, "request body unreadable or over 16 MiB", http.StatusRequestEntityTooLarge)
		return
	}
	ctx := r.Context()
	if p.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, p.timeout, errExecTimeout)
		defer cancel()
	}
	cmd := exec.CommandContext(ctx, p.argv[0], p.argv[1:]...)
	// The function runs in a process group of its own: on timeout the whole
	// group is killed, children it forked included, and Wait gives up on
	// pipes a leftover still holds after a second.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	cmd.Env = slices.Concat(p.env, requestEnv(r))
	p.log.add("Forking fprocess.") // as the classic watchdog logs each call
	start := time.Now()
	cmd.Stdin = bytes.NewReader(body)
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &limited{w: &stdout, n: maxBody}
	cmd.Stderr = &limited{w: &stderr, n: 64 << 10}
	if p.combine {
		// One buffer, in the order the function wrote (as the classic
		// watchdog's CombinedOutput).
		out := &limited{w: &stdout, n: maxBody}
		cmd.Stdout, cmd.Stderr = out, out
	}
	err = cmd.Run()
	if !p.combine {
		p.log.addLines(stderr.String())
	}
	if err != nil {
		p.log.add("the function failed: " + err.Error())
		code := http.StatusInternalServerError
		switch {
		case errors.Is(context.Cause(ctx), errExecTimeout):
			code = http.StatusRequestTimeout // the watchdog's answer past exec_timeout
		case errors.Is(ctx.Err(), context.DeadlineExceeded):
			code = http.StatusGatewayTimeout
		}
		msg := stderr.String()
		if p.combine {
			msg = stdout.String()
		}
		http.Error(w, fmt.Sprintf("%v: %s", err, strings.TrimSpace(msg)), code)
		return
	}
	if p.contentType != "" {
		w.Header().Set("Content-Type", p.contentType)
	}
	_, _ = w.Write(stdout.Bytes())
	p.log.add(fmt.Sprintf("Wrote %d Bytes - Duration: %f seconds", stdout.Len(), time.Since(start).Seconds()))
}

var errExecTimeout = errors.New("exec_timeout")

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
