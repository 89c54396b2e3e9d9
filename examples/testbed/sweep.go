package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/dfaas-go/dfaas/internal/testbed"
)

// sweep is a -sweep run: one scenario on each data plane, with each of a
// link's loss rates, runs times each, reported as one table.
type sweep struct {
	proxies []string
	link    [2]string // the link whose loss varies
	losses  []float64
	runs    int
}

// parseSweep reads -proxies, -loss (a-b=0,10,20,40) and -runs.
func parseSweep(proxies, loss string, runs int) (sweep, error) {
	sw := sweep{proxies: strings.Split(proxies, ","), runs: runs}
	pair, values, ok := strings.Cut(loss, "=")
	a, b, ok2 := strings.Cut(pair, "-")
	if !ok || !ok2 || a == "" || b == "" {
		return sw, fmt.Errorf("-loss %q: want a-b=rate,rate,... (percent)", loss)
	}
	sw.link = [2]string{a, b}
	for _, v := range strings.Split(values, ",") {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f < 0 || f >= 100 {
			return sw, fmt.Errorf("-loss %q: %q is no loss rate (0 to under 100)", loss, v)
		}
		sw.losses = append(sw.losses, f)
	}
	if runs < 1 {
		return sw, fmt.Errorf("-runs %d: want at least 1", runs)
	}
	return sw, nil
}

// with returns s on proxy with the sweep's link at loss percent.
func (sw sweep) with(s testbed.Scenario, proxy string, loss float64) testbed.Scenario {
	s.Proxy = proxy
	s.Links = slices.Clone(s.Links)
	for i, l := range s.Links {
		if (l.Between[0] == sw.link[0] && l.Between[1] == sw.link[1]) || (l.Between[0] == sw.link[1] && l.Between[1] == sw.link[0]) {
			s.Links[i].Loss = loss
			return s
		}
	}
	l := s.DefaultLink
	l.Between, l.Loss = []string{sw.link[0], sw.link[1]}, loss
	s.Links = append(s.Links, l)
	return s
}

// sweepCell is what the runs of one data plane and loss rate saw.
type sweepCell struct {
	lost, duplicated, rejected []int
	p99, share                 []float64
}

// run runs the sweep and writes its table to w, with progress on log.
func (sw sweep) run(ctx context.Context, s testbed.Scenario, opt testbed.Options, w, log io.Writer) error {
	cells := map[string]map[float64]*sweepCell{}
	for _, proxy := range sw.proxies {
		cells[proxy] = map[float64]*sweepCell{}
		for _, loss := range sw.losses {
			c := &sweepCell{}
			cells[proxy][loss] = c
			for k := range sw.runs {
				fmt.Fprintf(log, "testbed: sweep: %s, %g%% loss on %s-%s, run %d of %d\n", proxy, loss, sw.link[0], sw.link[1], k+1, sw.runs)
				o := opt
				if opt.Dir != "" { // each run's keys and logs in a directory of its own
					o.Dir = filepath.Join(opt.Dir, fmt.Sprintf("%s-%g-%d", proxy, loss, k+1))
					if err := os.MkdirAll(o.Dir, 0o700); err != nil {
						return err
					}
				}
				r, err := testbed.Run(ctx, sw.with(s, proxy, loss), o)
				if err != nil {
					return fmt.Errorf("%s, %g%%: %w", proxy, loss, err)
				}
				rejected := 0
				for _, n := range r.Nodes {
					rejected += n.RejectedAfter
				}
				fmt.Fprintf(log, "testbed: sweep: %s, %g%%, run %d: forwarded p99 %.0f ms after %v, lost %d, duplicated %d, unanswered %d, retries %d\n",
					proxy, loss, k+1, r.ForwardLatencySettledMS.P99, s.Settle.D(), r.Lost, r.Duplicated, r.Unanswered, r.Retries)
				if r.Lost > 0 || r.Duplicated > 0 {
					fmt.Fprintf(log, "testbed: sweep: %s, %g%%, run %d: lost by second %v, failed by answer %v\n", proxy, loss, k+1, r.LostAt, r.FailedBy)
				}
				c.lost, c.duplicated, c.rejected = append(c.lost, r.Lost), append(c.duplicated, r.Duplicated), append(c.rejected, rejected)
				c.p99 = append(c.p99, r.ForwardLatencySettledMS.P99)
				c.share = append(c.share, r.Share(sw.link[1], int(r.SettleS), len(r.Timeline)))
			}
		}
	}
	fmt.Fprintf(w, "%s: %d run(s) each; forwarded p99 and %s's share of the forwards from the settle (%v) on; medians, [min-max]\n",
		s.Name, sw.runs, sw.link[1], s.Settle.D())
	fmt.Fprintf(w, "%-9s %6s %10s %12s %14s %22s %10s %18s\n", "proxy", "loss%", "lost", "duplicated", "rejected", "forwarded p99 ms", "x clean", "share at "+sw.link[1])
	for _, proxy := range sw.proxies {
		var clean float64
		for _, loss := range sw.losses {
			c := cells[proxy][loss]
			p99 := median(c.p99)
			if loss == 0 {
				clean = p99
			}
			ratio := "-"
			if clean > 0 {
				ratio = fmt.Sprintf("%.2f", p99/clean)
			}
			fmt.Fprintf(w, "%-9s %6g %10s %12s %14s %22s %10s %18s\n", proxy, loss, spanInts(c.lost), spanInts(c.duplicated), spanInts(c.rejected),
				fmt.Sprintf("%.0f [%.0f-%.0f]", p99, slices.Min(c.p99), slices.Max(c.p99)), ratio,
				fmt.Sprintf("%.0f%% [%.0f-%.0f]", 100*median(c.share), 100*slices.Min(c.share), 100*slices.Max(c.share)))
		}
	}
	return nil
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// spanInts is "n" when every run saw n, else "min-max".
func spanInts(v []int) string {
	lo, hi := slices.Min(v), slices.Max(v)
	if lo == hi {
		return strconv.Itoa(lo)
	}
	return fmt.Sprintf("%d-%d", lo, hi)
}
