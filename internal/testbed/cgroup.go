package testbed

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// cpuGroups are the testbed's CPU cgroups: one per node that has a CPU
// budget, under a parent of the run's own. cgroup v2 (cpu.max) where a v2
// hierarchy has the cpu controller, else v1's cpu controller
// (cpu.cfs_period_us and cpu.cfs_quota_us).
type cpuGroups struct {
	v2     bool
	parent string // the run's own cgroup directory
	made   []string
}

// findCPUCgroups returns where the cpu controller is mounted and whether
// it is cgroup v2, or an error saying what is missing.
func findCPUCgroups() (root string, v2 bool, err error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", false, fmt.Errorf("testbed: cgroups: %w", err)
	}
	defer f.Close()
	var v2roots []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// ... mount-point ... - fstype source super-options
		fields := strings.Fields(sc.Text())
		sep := -1
		for i, x := range fields {
			if x == "-" {
				sep = i
				break
			}
		}
		if sep < 0 || sep+3 >= len(fields) || len(fields) < 5 {
			continue
		}
		mount, fstype, opts := fields[4], fields[sep+1], fields[sep+3]
		switch fstype {
		case "cgroup":
			for _, o := range strings.Split(opts, ",") {
				if o == "cpu" {
					return mount, false, nil
				}
			}
		case "cgroup2":
			v2roots = append(v2roots, mount)
		}
	}
	for _, r := range v2roots {
		if b, err := os.ReadFile(filepath.Join(r, "cgroup.controllers")); err == nil && hasWord(string(b), "cpu") {
			return r, true, nil
		}
	}
	return "", false, errors.New("testbed: no cgroup hierarchy with the cpu controller: mount cgroup v2 with cpu enabled, or v1's cpu controller, to give nodes CPU budgets")
}

func hasWord(s, w string) bool {
	for _, f := range strings.Fields(s) {
		if f == w {
			return true
		}
	}
	return false
}

// newCPUGroups makes the run's parent cgroup.
func newCPUGroups() (*cpuGroups, error) {
	root, v2, err := findCPUCgroups()
	if err != nil {
		return nil, err
	}
	g := &cpuGroups{v2: v2, parent: filepath.Join(root, fmt.Sprintf("dfaas-testbed-%d", os.Getpid()))}
	if err := os.Mkdir(g.parent, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("testbed: cgroup %s: %w", g.parent, err)
	}
	if v2 {
		// The children may use the cpu controller.
		if err := os.WriteFile(filepath.Join(g.parent, "cgroup.subtree_control"), []byte("+cpu"), 0); err != nil {
			_ = os.Remove(g.parent)
			return nil, fmt.Errorf("testbed: cgroup v2: enable cpu for %s: %w", g.parent, err)
		}
	}
	return g, nil
}

// make creates node's cgroup with a budget of cores.
func (g *cpuGroups) make(node string, cores float64, period time.Duration) (string, error) {
	dir := filepath.Join(g.parent, node)
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return "", fmt.Errorf("testbed: cgroup %s: %w", dir, err)
	}
	g.made = append(g.made, dir)
	return dir, g.setQuota(dir, cores, period)
}

// setQuota gives the cgroup at dir cores of CPU time per wall time, by
// periods of period.
func (g *cpuGroups) setQuota(dir string, cores float64, period time.Duration) error {
	p := period.Microseconds()
	q := max(1000, int64(cores*float64(p))) // the kernel's least quota is 1 ms
	if g.v2 {
		return writeFile(filepath.Join(dir, "cpu.max"), fmt.Sprintf("%d %d", q, p))
	}
	// v1 checks the quota against the period it holds: set the period
	// first only when it grows the room.
	if err := writeFile(filepath.Join(dir, "cpu.cfs_period_us"), strconv.FormatInt(p, 10)); err != nil {
		return err
	}
	return writeFile(filepath.Join(dir, "cpu.cfs_quota_us"), strconv.FormatInt(q, 10))
}

// add moves process pid into the cgroup at dir.
func (g *cpuGroups) add(dir string, pid int) error {
	return writeFile(filepath.Join(dir, "cgroup.procs"), strconv.Itoa(pid))
}

// throttled reads the time the cgroup at dir was throttled, in all.
func (g *cpuGroups) throttled(dir string) time.Duration {
	b, err := os.ReadFile(filepath.Join(dir, "cpu.stat"))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(line, " ")
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		switch {
		case err != nil:
		case k == "throttled_time": // v1: ns
			return time.Duration(n)
		case k == "throttled_usec": // v2
			return time.Duration(n) * time.Microsecond
		}
	}
	return 0
}

// close kills whatever still runs in the cgroups and removes them.
func (g *cpuGroups) close() {
	for _, dir := range append(g.made, g.parent) {
		for range 50 {
			b, _ := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
			pids := strings.Fields(string(b))
			if len(pids) == 0 {
				break
			}
			for _, p := range pids {
				if pid, err := strconv.Atoi(p); err == nil {
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	for i := len(g.made) - 1; i >= 0; i-- {
		_ = os.Remove(g.made[i])
	}
	_ = os.Remove(g.parent)
}

func writeFile(path, v string) error {
	if err := os.WriteFile(path, []byte(v), 0); err != nil {
		return fmt.Errorf("testbed: cgroup: write %q to %s: %w", v, path, err)
	}
	return nil
}
