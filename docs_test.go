package dfaas_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// mdLink finds a Markdown link or image's target: [text](target) or
// ![alt](target).
var mdLink = regexp.MustCompile(`\]\(([^)\s]+)\)`)

// TestDocsLinksResolve: every relative link and image in the README, the
// developers' guide and docs/ names a file of the repository, and every
// #anchor a heading of its page.
func TestDocsLinksResolve(t *testing.T) {
	pages, err := filepath.Glob("docs/*.md")
	require.NoError(t, err)
	pages = append(pages, "README.md", "DEVELOPERS.md")
	for _, page := range pages {
		text, err := os.ReadFile(page)
		require.NoError(t, err)
		for _, m := range mdLink.FindAllStringSubmatch(stripCode(string(text)), -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			file, anchor, _ := strings.Cut(target, "#")
			path := page
			if file != "" {
				path = filepath.Join(filepath.Dir(page), file)
				if _, err := os.Stat(path); !assert.NoError(t, err, "%s links to %s", page, target) {
					continue
				}
			}
			if anchor != "" {
				body, err := os.ReadFile(path)
				require.NoError(t, err)
				assert.Contains(t, anchors(string(body)), anchor, "%s links to %s: no such heading", page, target)
			}
		}
	}
}

// stripCode drops fenced code blocks, whose brackets are not links.
func stripCode(s string) string {
	var b strings.Builder
	in := false
	for _, line := range strings.Split(s, "\n") {
		if strings.HasPrefix(line, "```") {
			in = !in
			continue
		}
		if !in {
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}

// anchors lists a page's heading anchors as GitHub makes them: lower case,
// punctuation but hyphens dropped, spaces as hyphens.
func anchors(s string) []string {
	var out []string
	for _, line := range strings.Split(stripCode(s), "\n") {
		if !strings.HasPrefix(line, "#") {
			continue
		}
		h := strings.ToLower(strings.TrimSpace(strings.TrimLeft(line, "#")))
		var b strings.Builder
		for _, r := range h {
			switch {
			case r == ' ':
				b.WriteRune('-')
			case r == '-' || r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9':
				b.WriteRune(r)
			}
		}
		out = append(out, b.String())
	}
	return out
}

// TestNoBuiltBinariesAreTracked: nothing git tracks is an executable a
// build wrote (ELF) or larger than 2 MiB: `go build ./examples/x` in the
// repository's root writes ./x, and `git add -A` would take it.
func TestNoBuiltBinariesAreTracked(t *testing.T) {
	out, err := exec.Command("git", "ls-files", "-z").Output()
	if err != nil {
		t.Skipf("not a git checkout (%v): nothing tracked to check", err)
	}
	files := strings.Split(strings.TrimRight(string(out), "\x00"), "\x00")
	require.NotEmpty(t, files)
	for _, f := range files {
		st, err := os.Lstat(f)
		if err != nil || !st.Mode().IsRegular() {
			continue // deleted in the working tree, or a link
		}
		assert.LessOrEqual(t, st.Size(), int64(2<<20), "%s is tracked and over 2 MiB", f)
		head := make([]byte, 4)
		if fh, err := os.Open(f); err == nil {
			_, _ = fh.Read(head)
			_ = fh.Close()
		}
		for _, magic := range []string{"\x7fELF", "MZ", "\xcf\xfa\xed\xfe", "\xfe\xed\xfa\xcf"} { // ELF, PE, Mach-O
			assert.False(t, strings.HasPrefix(string(head), magic), "%s is a built executable, tracked", f)
		}
	}
}
