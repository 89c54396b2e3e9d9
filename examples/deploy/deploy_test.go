// Package deploy holds deployment recipes for the agent: a systemd unit,
// a container image and a Kubernetes DaemonSet, and a Grafana dashboard and
// Prometheus alerting rules to watch it. Its tests check them with what a
// build machine has: systemd-analyze, the Go toolchain, a YAML parser and
// the agent's own metrics.
package deploy_test

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"
)

// buildAgent builds the agent, with env added to the go command's.
func buildAgent(t *testing.T, env []string, flags ...string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "dfaas-agent")
	cmd := exec.Command("go", append(append([]string{"build"}, flags...), "-o", out, "github.com/dfaas-go/dfaas/examples/agent")...)
	cmd.Env = append(os.Environ(), env...)
	b, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", b)
	return out
}

// TestSystemdUnit: systemd itself accepts the unit (with ExecStart pointing
// at a real agent binary), and the unit runs it as a dynamic user whose
// secrets come as credentials and files, never as values on the command
// line.
func TestSystemdUnit(t *testing.T) {
	raw, err := os.ReadFile("dfaas-agent.service")
	require.NoError(t, err)
	unit := string(raw)
	for _, want := range []string{"DynamicUser=yes", "StateDirectory=dfaas-agent", "LoadCredential=federation.key:",
		"-secret ${CREDENTIALS_DIRECTORY}/federation.key", "-key ${STATE_DIRECTORY}/node.key", "Restart=on-failure",
		"NoNewPrivileges=yes", "ProtectSystem=strict", "-admin 127.0.0.1:9100", "-advertise 192.0.2.2:8091", "AF_NETLINK"} {
		assert.Contains(t, unit, want)
	}
	for _, line := range strings.Split(unit, "\n") {
		if !strings.HasPrefix(line, "#") {
			assert.NotContains(t, line, "PASSWORD", "credentials come from an EnvironmentFile")
		}
	}
	agent := buildAgent(t, nil) // as the other tests build it: from the cache
	test := filepath.Join(t.TempDir(), "dfaas-agent.service")
	require.NoError(t, os.WriteFile(test, []byte(strings.ReplaceAll(unit, "/usr/local/bin/dfaas-agent", agent)), 0o600))
	out, err := exec.Command("systemd-analyze", "verify", "--man=no", test).CombinedOutput()
	assert.NoError(t, err, "%s", out)
	assert.Empty(t, strings.TrimSpace(string(out)), "systemd-analyze has no remark")
}

// TestDockerfileBuildsAStaticAgent: the image's build step makes a binary
// with no dynamic loader, which a distroless static base can run, and the
// image runs it as a non-root user.
func TestDockerfileBuildsAStaticAgent(t *testing.T) {
	raw, err := os.ReadFile("Dockerfile")
	require.NoError(t, err)
	df := string(raw)
	assert.Contains(t, df, "CGO_ENABLED=0 go build -trimpath -ldflags=\"-s -w\" -o /out/dfaas-agent ./examples/agent")
	assert.Contains(t, df, "FROM gcr.io/distroless/static-debian12:nonroot")
	assert.Contains(t, df, "USER nonroot:nonroot")
	f, err := elf.Open(buildAgent(t, []string{"CGO_ENABLED=0"}, "-trimpath", "-ldflags=-s -w"))
	require.NoError(t, err)
	defer f.Close()
	for _, p := range f.Progs {
		assert.NotEqual(t, elf.PT_INTERP, p.Type, "a static binary has no interpreter")
	}
}

// TestDaemonSet: the manifest parses, runs the agent without root and with
// a read-only root, probes readiness and liveness on the admin port, takes
// the secret from a Secret volume and the gateway's credentials from a
// Secret, and gives the agent time to drain.
func TestDaemonSet(t *testing.T) {
	raw, err := os.ReadFile("daemonset.yaml")
	require.NoError(t, err)
	var ds struct {
		Kind string `yaml:"kind"`
		Spec struct {
			Template struct {
				Spec struct {
					HostNetwork                   bool `yaml:"hostNetwork"`
					AutomountServiceAccountToken  bool `yaml:"automountServiceAccountToken"`
					TerminationGracePeriodSeconds int  `yaml:"terminationGracePeriodSeconds"`
					SecurityContext               struct {
						RunAsNonRoot bool `yaml:"runAsNonRoot"`
					} `yaml:"securityContext"`
					InitContainers []struct {
						Command []string `yaml:"command"`
					} `yaml:"initContainers"`
					Containers []struct {
						Args []string `yaml:"args"`
						Env  []struct {
							Name      string         `yaml:"name"`
							Value     string         `yaml:"value"`
							ValueFrom map[string]any `yaml:"valueFrom"`
						} `yaml:"env"`
						ReadinessProbe struct {
							HTTPGet struct {
								Host string `yaml:"host"`
								Path string `yaml:"path"`
								Port int    `yaml:"port"`
							} `yaml:"httpGet"`
						} `yaml:"readinessProbe"`
						LivenessProbe struct {
							HTTPGet struct {
								Path string `yaml:"path"`
							} `yaml:"httpGet"`
						} `yaml:"livenessProbe"`
						SecurityContext struct {
							ReadOnlyRootFilesystem   bool `yaml:"readOnlyRootFilesystem"`
							AllowPrivilegeEscalation bool `yaml:"allowPrivilegeEscalation"`
						} `yaml:"securityContext"`
					} `yaml:"containers"`
					Volumes []struct {
						Name   string `yaml:"name"`
						Secret *struct {
							SecretName string `yaml:"secretName"`
						} `yaml:"secret"`
					} `yaml:"volumes"`
				} `yaml:"spec"`
			} `yaml:"template"`
		} `yaml:"spec"`
	}
	require.NoError(t, yaml.Unmarshal(raw, &ds))
	assert.Equal(t, "DaemonSet", ds.Kind)
	pod := ds.Spec.Template.Spec
	assert.True(t, pod.HostNetwork)
	assert.True(t, pod.SecurityContext.RunAsNonRoot)
	assert.GreaterOrEqual(t, pod.TerminationGracePeriodSeconds, 15, "the agent drains for up to 10 s")
	require.Len(t, pod.Containers, 1)
	c := pod.Containers[0]
	assert.True(t, c.SecurityContext.ReadOnlyRootFilesystem)
	assert.False(t, c.SecurityContext.AllowPrivilegeEscalation)
	assert.Equal(t, "/readyz", c.ReadinessProbe.HTTPGet.Path)
	assert.Equal(t, 9100, c.ReadinessProbe.HTTPGet.Port)
	assert.Equal(t, "/healthz", c.LivenessProbe.HTTPGet.Path)
	assert.Contains(t, c.Args, "-secret=/run/dfaas/federation.key", "the 0600 copy")
	require.Len(t, pod.InitContainers, 2, "the state directory's owner, the secret copied with mode 0600")
	assert.Contains(t, strings.Join(pod.InitContainers[0].Command, " "), "chown 65532:65532 /var/lib/dfaas")
	assert.Contains(t, strings.Join(pod.InitContainers[1].Command, " "), "chmod 0600 /run/dfaas/federation.key")
	assert.Contains(t, c.Args, "-admin=127.0.0.1:9100", "the admin port stays on the node's loopback")
	assert.Equal(t, "127.0.0.1", c.ReadinessProbe.HTTPGet.Host)
	assert.Contains(t, c.Args, "-advertise=$(HOST_IP):8091", "peers cannot dial 0.0.0.0")
	assert.False(t, pod.AutomountServiceAccountToken)
	for _, e := range c.Env {
		assert.Empty(t, e.Value, "%s: secrets come from Secrets, not values", e.Name)
		assert.NotNil(t, e.ValueFrom, e.Name)
	}
	var secretVolume bool
	for _, v := range pod.Volumes {
		secretVolume = secretVolume || (v.Secret != nil && v.Secret.SecretName == "dfaas-federation")
	}
	assert.True(t, secretVolume, "the federation secret is a Secret volume")
}
