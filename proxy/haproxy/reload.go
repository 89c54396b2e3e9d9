package haproxy

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/dfaas-go/dfaas/proxy"
)

// reload adds functions to the configuration with a seamless reload: the
// master starts a new worker, which takes over the listening sockets, and
// the old worker finishes its requests. The configuration and map files
// carry the runtime state over.
func (d *Driver) reload(ctx context.Context, added []string) error {
	// The new worker starts from the files: write the desired state into
	// them, so it serves the current plan from its first request.
	d.layout.Servers = map[string][]Server{}
	for fn, peers := range d.servers {
		for node, sv := range peers {
			if sv.draining {
				continue // the old worker finishes its requests; the new one never had it
			}
			if d.layout.TLS != nil {
				pem, err := proxy.AnchorsPEM(node)
				if err != nil {
					return err
				}
				if err := writeFile(d.layout.TLS.AnchorFile(sv.name), pem); err != nil {
					return err
				}
			}
			d.layout.Servers[fn] = append(d.layout.Servers[fn], Server{Name: sv.name, Addr: sv.addr, Weight: sv.weight})
		}
		slices.SortFunc(d.layout.Servers[fn], func(a, b Server) int { return strings.Compare(a.Name, b.Name) })
	}
	if err := d.writeConfig(); err != nil {
		return err
	}
	for file, entries := range d.maps {
		var b strings.Builder
		for k, v := range entries {
			fmt.Fprintf(&b, "%s %s\n", k, v)
		}
		if err := os.WriteFile(file, []byte(b.String()), 0o600); err != nil {
			return fmt.Errorf("haproxy: reload: %w", err)
		}
	}
	before, err := d.info()
	if err != nil {
		return err
	}
	// The new worker's statistics start at zero: keep the old worker's. Its
	// stick tables pass over through the local peer, unless it is younger
	// than HAProxy's resync period (5 s): keep their counts too then.
	preTables, tablesErr := d.readTables()
	preStats, statsErr := d.stats()
	deadline := time.Now().Add(10 * time.Second)
	var signalled time.Time
	for {
		// A master still starting up may miss the signal: repeat it.
		if time.Since(signalled) > 500*time.Millisecond {
			if err := d.cmd.Process.Signal(syscall.SIGUSR2); err != nil {
				return fmt.Errorf("haproxy: reload: %w", err)
			}
			signalled = time.Now()
		}
		if info, err := d.info(); err == nil && info["Pid"] != before["Pid"] {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("haproxy: reload: no new worker after 10s:\n%s", d.out.String())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	// Let the old worker finish, so that the next runtime commands reach
	// the new one only (it may take longer with slow requests in flight: the
	// files hold the state either way).
	if old, err := strconv.Atoi(before["Pid"]); err == nil {
		for end := time.Now().Add(2 * time.Second); time.Now().Before(end) && syscall.Kill(old, 0) == nil; {
			time.Sleep(10 * time.Millisecond)
		}
	}
	kept := map[string]bool{} // functions that left the configuration start again
	for _, fn := range d.layout.Functions {
		kept[fn] = true
	}
	if statsErr == nil {
		for fn, c := range d.statCounts(preStats) {
			if kept[fn] {
				d.base[fn] = c.Add(d.base[fn])
			}
		}
	}
	if tablesErr == nil && !d.learned() {
		d.log.Debug("haproxy: stick tables not taken over, counts carried by the driver")
		for fn, c := range d.tableCountsByFunction(preTables) {
			if kept[fn] {
				d.base[fn] = c.Add(d.base[fn])
			}
		}
	}
	d.log.Info("haproxy reloaded", "functions", added)
	return nil
}
