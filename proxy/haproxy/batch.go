package haproxy

import (
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"time"
)

// maxBatch bounds the bytes of one batch of runtime commands: HAProxy's
// command line must fit its buffer (tune.bufsize, 16 KiB by default).
const maxBatch = 8 << 10

// mapBatch collects changes to the maps and sends them to the runtime API
// a batch of commands at a time (separated by ";" on one line): a command
// on a connection of its own costs about 150 µs through client-native, one
// in a batch about 5 µs, which is what lets a plan of a thousand functions
// apply within a tick.
type mapBatch struct {
	d    *Driver
	sets [][3]string // file, key, value
	dels [][2]string // file, key
}

// set asks for key=value in the map file, unless the driver set it so.
func (b *mapBatch) set(file, key, value string) {
	if old, ok := b.d.maps[file][key]; ok && old == value {
		return
	}
	b.sets = append(b.sets, [3]string{file, key, value})
}

// del asks for key's removal from the map file, if the driver set it.
func (b *mapBatch) del(file, key string) {
	if _, ok := b.d.maps[file][key]; ok {
		b.dels = append(b.dels, [2]string{file, key})
	}
}

// flush sends the changes: removals first, then "set map" for every entry
// and "add map" for those HAProxy did not have. Keys and values are
// function names, numbers and server names: never a ";" or a space.
func (b *mapBatch) flush() error {
	d := b.d
	var errs []error
	if len(b.dels) > 0 {
		cmds := make([]string, len(b.dels))
		for i, e := range b.dels {
			cmds[i] = "del map " + e[0] + " " + e[1]
		}
		outs, err := d.batch(cmds)
		errs = append(errs, err)
		for i, out := range outs {
			// Gone once HAProxy says so, or says it had it no more;
			// otherwise still held, and removed again next time.
			if failed(out) && !strings.Contains(out, "not found") {
				errs = append(errs, fmt.Errorf("haproxy: del map %s %s: %s", filepath.Base(b.dels[i][0]), b.dels[i][1], out))
				continue
			}
			delete(d.maps[b.dels[i][0]], b.dels[i][1])
		}
	}
	if len(b.sets) > 0 {
		cmds := make([]string, len(b.sets))
		for i, e := range b.sets {
			cmds[i] = "set map " + e[0] + " " + e[1] + " " + e[2]
		}
		outs, err := d.batch(cmds)
		errs = append(errs, err)
		var adds [][3]string
		for i, out := range outs {
			if failed(out) {
				adds = append(adds, b.sets[i])
				continue
			}
			d.remember(b.sets[i][0], b.sets[i][1], b.sets[i][2])
		}
		if len(adds) > 0 {
			cmds = cmds[:0]
			for _, e := range adds {
				cmds = append(cmds, "add map "+e[0]+" "+e[1]+" "+e[2])
			}
			outs, err := d.batch(cmds)
			errs = append(errs, err)
			for i, out := range outs {
				e := adds[i]
				if failed(out) {
					errs = append(errs, fmt.Errorf("haproxy: map %s %s=%s: %s", filepath.Base(e[0]), e[1], e[2], out))
					continue
				}
				d.remember(e[0], e[1], e[2])
			}
		}
	}
	b.sets, b.dels = nil, nil
	return errors.Join(errs...)
}

// failed reports whether a command's output is an error (client-native
// asks for numbered severities: "[3]: entry not found."; syslog's, 0-3 are
// errors, and "[6]: New server registered." is news).
func failed(out string) bool {
	return len(out) > 4 && out[0] == '[' && out[2] == ']' && out[3] == ':' && out[1] >= '0' && out[1] <= '3'
}

// batch runs commands on the runtime API, as few lines of commands as
// maxBatch allows, and returns each command's output in order. The
// outputs of commands that did not run (their line failed) are missing.
func (d *Driver) batch(cmds []string) ([]string, error) {
	var outs []string
	for len(cmds) > 0 {
		n, size := 0, 0
		for n < len(cmds) && (n == 0 || size+len(cmds[n])+1 <= maxBatch) {
			size += len(cmds[n]) + 1
			n++
		}
		raw, err := d.exchange("set severity-output number;" + strings.Join(cmds[:n], ";") + "\n")
		if err != nil {
			return outs, fmt.Errorf("haproxy: runtime API: %w", err)
		}
		got := splitOutputs(raw)
		// The first is "set severity-output number"'s.
		if len(got) != n+1 {
			return outs, fmt.Errorf("haproxy: runtime API: %d outputs for %d commands", len(got)-1, n)
		}
		outs = append(outs, got[1:]...)
		cmds = cmds[n:]
	}
	return outs, nil
}

// splitOutputs splits the answer to commands separated by ";": each
// command's output ends with an empty line (an output of nothing is the
// empty line alone).
func splitOutputs(raw string) []string {
	var outs, cur []string
	for _, line := range strings.Split(strings.TrimSuffix(raw, "\n"), "\n") {
		if line == "" {
			outs = append(outs, strings.Join(cur, "\n"))
			cur = nil
			continue
		}
		cur = append(cur, line)
	}
	return outs
}

// exchange sends a line of commands on a connection of its own to the
// runtime API and returns HAProxy's whole answer, as it came
// (client-native's ExecuteRaw trims the empty lines that tell the
// commands' outputs apart).
func (d *Driver) exchange(line string) (string, error) {
	c, err := net.DialTimeout("unix", d.layout.Socket, 5*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(30 * time.Second)); err != nil {
		return "", err
	}
	if _, err := io.WriteString(c, line); err != nil {
		return "", err
	}
	out, err := io.ReadAll(c)
	return string(out), err
}
