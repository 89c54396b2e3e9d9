package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dfaas-go/dfaas/node"
)

// codeBlock returns the first fenced block of kind (sh, yaml) after the
// heading in the Markdown file at path.
func codeBlock(t *testing.T, path, heading, kind string) string {
	t.Helper()
	text, err := os.ReadFile(path)
	require.NoError(t, err)
	s := string(text)
	i := strings.Index(s, "\n"+heading+"\n")
	require.GreaterOrEqual(t, i, 0, "%s has no heading %q", path, heading)
	start := strings.Index(s[i:], "```"+kind+"\n")
	require.GreaterOrEqual(t, start, 0, "%s: no %s block after %q", path, kind, heading)
	start += i + len("```"+kind+"\n")
	end := strings.Index(s[start:], "```\n")
	require.GreaterOrEqual(t, end, 0)
	return s[start : start+end]
}

// TestTheSampleConfigIsTheDocumentedOne: docs/operators.md shows
// agent.yaml as it is.
func TestTheSampleConfigIsTheDocumentedOne(t *testing.T) {
	file, err := os.ReadFile("agent.yaml")
	require.NoError(t, err)
	assert.Equal(t, string(file), codeBlock(t, "../../docs/operators.md", "## Configure an agent", "yaml"))
}

// TestTheREADMEsThreeAgents runs the README's "Three agents on one
// machine" as it is written, in a directory of the test's own (the one
// change), then stops node a as the README says: every node answers some
// of the hundred calls made at node a, and a logs that it left.
func TestTheREADMEsThreeAgents(t *testing.T) {
	_, err := exec.LookPath("curl")
	require.NoError(t, err, "the README's recipe calls curl (scripts/test.sh installs it)")
	dir := t.TempDir()
	script := strings.ReplaceAll(codeBlock(t, "../../README.md", "## Three agents on one machine", "sh"), "/tmp/fed", dir)
	// What the page draws, read before the stop: the README says it names
	// the nodes.
	script += "\ncurl -s 127.0.0.1:9100/federation > view.json\nkill %1; wait %1\nsleep 1\nkill %2 %3; wait\n"
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-e", "-c", script)
	cmd.Dir = "../.."
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // the agents too, whatever happens
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	t.Cleanup(func() {
		if cmd.Process != nil {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		}
	})
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	for _, n := range []string{"a", "b", "c"} {
		served := 0
		for _, line := range strings.Split(string(out), "\n") {
			if count, rest, ok := strings.Cut(strings.TrimSpace(line), " "); ok && rest == "hello on node "+n+":" {
				served, _ = strconv.Atoi(count)
			}
		}
		assert.Positive(t, served, "node %s answered none of the calls:\n%s", n, out)
	}
	log, err := os.ReadFile(filepath.Join(dir, "a.log"))
	require.NoError(t, err)
	assert.Contains(t, string(log), "left the federation", "%s", log)
	for _, peer := range []string{"b", "c"} {
		log, err := os.ReadFile(filepath.Join(dir, peer+".log"))
		require.NoError(t, err)
		assert.Contains(t, string(log), `peer_name=a why="it left the federation"`, "%s logs a's leave:\n%s", peer, log)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "view.json"))
	require.NoError(t, err)
	var view node.View
	require.NoError(t, json.Unmarshal(raw, &view), "%s", raw)
	var names []string
	for _, n := range view.Nodes {
		names = append(names, n.Name)
	}
	slices.Sort(names)
	assert.Equal(t, []string{"a", "b", "c"}, names, "the live page names the nodes")
}
