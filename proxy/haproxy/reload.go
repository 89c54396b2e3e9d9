package haproxy

import (
	"context"
	"fmt"
	"maps"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/dfaas-go/dfaas"
	"github.com/dfaas-go/dfaas/proxy"
)

// reload makes HAProxy read its files again with a seamless reload: the
// master starts a new worker, which takes over the listening sockets, and
// the old worker finishes its requests. The configuration and map files
// carry the runtime state over. Only what the runtime API cannot take
// needs one (a members list too large for its buffer): functions and
// peers never do. why is logged.
func (d *Driver) reload(ctx context.Context, why string) error {
	// The new worker starts from the files: write the desired state into
	// them, so it serves the current plan from its first request.
	d.layout.Servers = nil
	for node, sv := range d.servers {
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
		d.layout.Servers = append(d.layout.Servers, Server{Name: sv.name, Addr: sv.addr, Weight: serverWeight})
	}
	d.layout.Slots = d.slotServers()
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
	// The stick tables pass over to the new worker through the local peer,
	// unless the old one is younger than HAProxy's resync period (5 s):
	// keep their counts then.
	preTables, tablesErr := d.readTables()
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
	maps.DeleteFunc(d.servers, func(_ dfaas.NodeID, s server) bool { return s.draining }) // the new worker never had them
	for _, s := range d.slots {
		maps.DeleteFunc(s.servers, func(_ string, sv slotServer) bool { return sv.draining })
	}
	if tablesErr == nil && !d.learned() {
		d.log.Debug("haproxy: stick tables not taken over, counts carried by the driver")
		for fn, c := range d.tableCountsByFunction(preTables) {
			d.base[fn] = c.Add(d.base[fn])
		}
	}
	d.reloads++
	d.log.Info("haproxy reloaded", "why", why)
	return nil
}
