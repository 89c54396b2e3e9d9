package local

import (
	"context"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/openfaas/faas-provider/logs"
	"github.com/openfaas/faas-provider/types"
	sdk "github.com/openfaas/go-sdk"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestLogs: the provider's logs API, read with OpenFaaS's own client: a
// process function's stderr (when not combined into its answers) and its
// failures, a Go handler's Logf lines, each stamped; tail keeps the last;
// follow streams what comes next.
func TestLogs(t *testing.T) {
	p := start(t)
	require.NoError(t, p.RegisterImage("dfaas/logger", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		Logf(r, "handled %s", r.URL.Query().Get("n"))
	})))
	base := strings.TrimSuffix(p.URL(), "/")
	script := filepath.Join(t.TempDir(), "noisy")
	require.NoError(t, os.WriteFile(script, []byte("#!/bin/sh\necho answer; echo \"to the log\" >&2; exit ${FAIL:-0}\n"), 0o700))
	for _, d := range []types.FunctionDeployment{
		{Service: "noisy", Image: "any", EnvProcess: script, EnvVars: map[string]string{EnvCombineOutput: "false"}},
		{Service: "go", Image: "dfaas/logger"},
	} {
		code, body := call(t, "POST", base+"/system/functions", d)
		require.Equal(t, http.StatusAccepted, code, body)
	}
	before := time.Now().UTC()
	code, body := call(t, "POST", base+"/function/noisy", "")
	require.Equal(t, http.StatusOK, code)
	assert.Equal(t, "answer\n", body, "stderr is the log's, not the answer's")
	for _, n := range []string{"1", "2", "3"} {
		code, _ = call(t, "GET", base+"/function/go?n="+n, nil)
		require.Equal(t, http.StatusOK, code)
	}

	u, _ := url.Parse(p.URL())
	c := sdk.NewClient(u, nil, http.DefaultClient)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	read := func(fn string, tail int) []logs.Message {
		t.Helper()
		ch, err := c.GetLogs(ctx, fn, "", false, tail, nil)
		require.NoError(t, err)
		var out []logs.Message
		for m := range ch {
			out = append(out, m)
		}
		return out
	}
	got := read("noisy", 0)
	require.Len(t, got, 3)
	assert.Equal(t, "Forking fprocess.", got[0].Text, "as the classic watchdog logs a call")
	assert.Equal(t, "to the log", got[1].Text)
	assert.True(t, strings.HasPrefix(got[2].Text, "Wrote 7 Bytes"), got[2].Text)
	assert.Equal(t, "noisy", got[1].Name)
	assert.False(t, got[1].Timestamp.Before(before.Add(-time.Second)))
	got = read("go", 2)
	require.Len(t, got, 2, "the last two")
	assert.Equal(t, "handled 2", got[0].Text)
	assert.Equal(t, "handled 3", got[1].Text)

	// Follow: a new line arrives as it is written.
	fctx, fcancel := context.WithCancel(ctx)
	defer fcancel()
	ch, err := c.GetLogs(fctx, "go", "", true, 1, nil)
	require.NoError(t, err)
	assert.Equal(t, "handled 3", (<-ch).Text)
	code, _ = call(t, "GET", base+"/function/go?n=4", nil)
	require.Equal(t, http.StatusOK, code)
	select {
	case m := <-ch:
		assert.Equal(t, "handled 4", m.Text)
	case <-time.After(5 * time.Second):
		t.Fatal("no line followed")
	}
	fcancel()
	for range ch { // drained as the stream ends
	}

	code, _ = call(t, "GET", base+"/system/logs?name=absent", nil)
	assert.NotEqual(t, http.StatusOK, code)
}
