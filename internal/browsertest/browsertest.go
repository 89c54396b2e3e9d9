// Package browsertest starts the headless Chromium that the tests of the
// live federation page drive (through chromedp).
package browsertest

import (
	"context"
	"os/exec"
	"testing"

	"github.com/chromedp/chromedp"
)

// Path finds Chromium on $PATH, or fails the test saying how to install it.
func Path(t testing.TB) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("the live page's tests need Chromium: apt-get install chromium (scripts/test.sh installs it)")
	return ""
}

// Start starts a headless Chromium for the test, stopped at its end, and
// returns the chromedp context of its first tab. It runs without the
// sandbox (the suite runs as root) and without the background traffic a
// closed network refuses. The first chromedp.Run on the context starts the
// browser: give that one no timeout of its own, which would stop the browser
// with it.
func Start(t testing.TB) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(Path(t)), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true), chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	return ctx
}

// Eval evaluates js in the page and returns its value as a string, or
// fails the test.
func Eval(t testing.TB, ctx context.Context, js string) string {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[string](`String(`+js+`)`))
	if err != nil {
		t.Fatalf("evaluate %s: %v", js, err)
	}
	return v
}
