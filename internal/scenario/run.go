package scenario

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"sync"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/dfaas-go/dfaas"
	"github.com/dfaas-go/dfaas/proxy"
)

// LoadConfig describes the offered load.
type LoadConfig struct {
	// Rates holds the open-loop rate offered to each node's user port.
	Rates []dfaas.Rate
	// Duration of the load.
	Duration time.Duration
	// Bucket is the resolution of the served-rate series. Default 1 s.
	Bucket time.Duration
	// Timeout of one request. Default 5 s.
	Timeout time.Duration
	// Progress, if set, is called after every bucket with its index and each
	// node's served rate (local + received) in it.
	Progress func(bucket int, served []float64)
}

// NodeReport is one node's part of a Report. Counts are totals for the run.
type NodeReport struct {
	ID           string  `json:"id"`
	Capacity     float64 `json:"capacity"`
	Offered      float64 `json:"offered"`
	ServedLocal  uint64  `json:"served_local"`
	ForwardedOut uint64  `json:"forwarded_out"`
	Received     uint64  `json:"received"`
	// Rejected counts requests sent to this node that did not get a 200,
	// and ClientOK those that did, as the load generator saw them.
	Rejected uint64 `json:"rejected"`
	ClientOK uint64 `json:"client_ok"`
	// CountedRejected is what the node's own counters say it rejected: a
	// test holds them to Rejected.
	CountedRejected uint64 `json:"counted_rejected"`
	// SteadyServedRPS is the mean served rate (local + received) after
	// convergence.
	SteadyServedRPS float64 `json:"steady_served_rps"`
	// Served is the served rate (local + received) in every bucket, per
	// second of the time between the reads of the node's counters that
	// bound it.
	Served []float64 `json:"-"`
}

// LatencyMS holds client-side latency quantiles in milliseconds.
type LatencyMS struct {
	P50 float64 `json:"p50"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

// Report is what a run measured.
type Report struct {
	Nodes   []NodeReport `json:"nodes"`
	Latency LatencyMS    `json:"latency_ms"`
	// ConvergenceS is the time from the start of load until every node's
	// served rate stays within 10% (at least 1 req/s) of its final share.
	ConvergenceS float64 `json:"convergence_s"`
	// RejectedAfterConvergence counts failed requests sent after ConvergenceS.
	RejectedAfterConvergence uint64 `json:"rejected_after_convergence"`
	// Requests is the number of requests sent.
	Requests uint64 `json:"requests"`
	// Bucket is the resolution of NodeReport.Served.
	Bucket time.Duration `json:"-"`
}

type outcome struct {
	at time.Time
	ok bool
}

// Run offers load to the cluster and reports what it served.
func Run(ctx context.Context, c *Cluster, lc LoadConfig) (Report, error) {
	if len(lc.Rates) != len(c.Nodes) {
		return Report{}, fmt.Errorf("%w: %d rates for %d nodes", dfaas.ErrInvalidConfig, len(lc.Rates), len(c.Nodes))
	}
	if lc.Duration <= 0 {
		return Report{}, fmt.Errorf("%w: duration %v", dfaas.ErrInvalidConfig, lc.Duration)
	}
	if lc.Bucket <= 0 {
		lc.Bucket = time.Second
	}
	if lc.Timeout <= 0 {
		lc.Timeout = 5 * time.Second
	}
	client := &http.Client{Timeout: lc.Timeout, Transport: &http.Transport{
		MaxIdleConnsPerHost: 1024, IdleConnTimeout: 30 * time.Second, DisableCompression: true}}
	defer client.CloseIdleConnections()

	n := len(c.Nodes)
	rep := Report{Nodes: make([]NodeReport, n), Bucket: lc.Bucket}
	start, prevAt, err := counts(ctx, c)
	if err != nil {
		return Report{}, err
	}
	prev := start
	var (
		mu       sync.Mutex
		outcomes = make([][]outcome, n)
		metrics  vegeta.Metrics
		wg       sync.WaitGroup
	)
	t0 := time.Now()
	var attackers []*vegeta.Attacker
	for i, r := range lc.Rates {
		rep.Nodes[i].Offered = float64(r)
		if r <= 0 {
			continue
		}
		atk := vegeta.NewAttacker(vegeta.Client(client))
		attackers = append(attackers, atk)
		tgt := vegeta.NewStaticTargeter(vegeta.Target{Method: "POST", URL: "http://" + c.Nodes[i].DataPlane.UserAddr() + "/function/" + c.Function,
			Body: []byte("dfaas")})
		// Freq per Per keeps fractional rates exact.
		pacer := vegeta.Rate{Freq: int(math.Round(float64(r) * 1000)), Per: 1000 * time.Second}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for res := range atk.Attack(tgt, pacer, lc.Duration, c.Nodes[i].Name) {
				mu.Lock()
				metrics.Add(res)
				outcomes[i] = append(outcomes[i], outcome{at: res.Timestamp, ok: res.Code == http.StatusOK})
				mu.Unlock()
			}
		}()
	}
	stop := context.AfterFunc(ctx, func() {
		for _, a := range attackers {
			a.Stop()
		}
	})
	defer stop()

	buckets := int(lc.Duration / lc.Bucket)
	for b := range buckets {
		select {
		case <-ctx.Done():
		case <-time.After(time.Until(t0.Add(time.Duration(b+1) * lc.Bucket))):
		}
		if ctx.Err() != nil {
			break
		}
		cur, at, err := counts(ctx, c)
		if err != nil {
			return Report{}, err
		}
		served := make([]float64, n)
		for i := range n {
			// Per second of the time between this node's two reads, not
			// of the nominal bucket: a read that comes late (a busy
			// machine) would otherwise move requests from one bucket to
			// the next, and show a steady node as unsteady.
			d := cur[i].Sub(prev[i])
			served[i] = float64(d.ServedLocal+d.ReceivedIn) / at[i].Sub(prevAt[i]).Seconds()
			rep.Nodes[i].Served = append(rep.Nodes[i].Served, served[i])
		}
		prev, prevAt = cur, at
		if lc.Progress != nil {
			lc.Progress(b, served)
		}
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return Report{}, err
	}
	metrics.Close()

	end, _, err := counts(context.WithoutCancel(ctx), c)
	if err != nil {
		return Report{}, err
	}
	series := make([][]float64, n)
	for i, node := range c.Nodes {
		d := end[i].Sub(start[i])
		nr := &rep.Nodes[i]
		nr.ID = node.Name
		caps, _ := node.Platform.Capacities.Capacities(ctx)
		nr.Capacity = float64(caps[c.Function])
		nr.ServedLocal, nr.ForwardedOut, nr.Received, nr.CountedRejected = d.ServedLocal, d.ForwardedOut, d.ReceivedIn, d.Rejected
		for _, o := range outcomes[i] {
			if o.ok {
				nr.ClientOK++
			} else {
				nr.Rejected++
			}
		}
		series[i] = nr.Served
	}
	k := Convergence(series)
	rep.ConvergenceS = float64(k) * lc.Bucket.Seconds()
	for i := range rep.Nodes {
		rep.Nodes[i].SteadyServedRPS = mean(series[i][min(k, len(series[i])):])
		for _, o := range outcomes[i] {
			if !o.ok && o.at.Sub(t0) >= time.Duration(k)*lc.Bucket {
				rep.RejectedAfterConvergence++
			}
		}
	}
	rep.Requests = metrics.Requests
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	rep.Latency = LatencyMS{P50: ms(metrics.Latencies.P50), P99: ms(metrics.Latencies.P99), Max: ms(metrics.Latencies.Max)}
	return rep, nil
}

// counts reads every node's counters of the cluster's function.
// counts reads every node's counters of the cluster's function, and when:
// the middle of each node's read, which for HAProxy takes several socket
// round trips.
func counts(ctx context.Context, c *Cluster) ([]proxy.Counts, []time.Time, error) {
	out, at := make([]proxy.Counts, len(c.Nodes)), make([]time.Time, len(c.Nodes))
	for i, n := range c.Nodes {
		before := time.Now()
		all, err := n.Counts(ctx)
		if err != nil {
			return nil, nil, fmt.Errorf("scenario: node %s: %w", n.Name, err)
		}
		out[i], at[i] = all[c.Function], before.Add(time.Since(before)/2)
	}
	return out, at, nil
}

// ConvergedAt is the time from the start of load from which every node's
// served rate stays within 10% (at least 1 req/s) of its expected share
// (the run's length if it never does).
func (r Report) ConvergedAt(expected []float64) float64 {
	if len(r.Nodes) == 0 || len(r.Nodes[0].Served) == 0 {
		return 0
	}
	k := 0
	for i, nr := range r.Nodes {
		tol := max(0.1*expected[i], 1)
		for b := len(nr.Served) - 1; b >= 0; b-- {
			if math.Abs(nr.Served[b]-expected[i]) > tol {
				k = max(k, b+1)
				break
			}
		}
	}
	return float64(k) * r.Bucket.Seconds()
}

// Convergence returns the first bucket from which every node's served rate
// stays within 10% (at least 1 req/s) of its final share: the mean of its
// last third of buckets. It returns len(series[0]) if the last bucket is
// itself out of range.
func Convergence(series [][]float64) int {
	if len(series) == 0 || len(series[0]) == 0 {
		return 0
	}
	length := len(series[0])
	k := 0
	for _, s := range series {
		final := mean(s[length-max(1, length/3):])
		tol := max(0.1*final, 1)
		for b := length - 1; b >= 0; b-- {
			if math.Abs(s[b]-final) > tol {
				k = max(k, b+1)
				break
			}
		}
	}
	return k
}

func mean(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	var s float64
	for _, x := range xs {
		s += x
	}
	return s / float64(len(xs))
}
