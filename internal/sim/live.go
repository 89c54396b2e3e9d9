package sim

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/dfaas-go/dfaas"
	"github.com/dfaas-go/dfaas/forecast"
	"github.com/dfaas-go/dfaas/internal/procstat"
	"github.com/dfaas-go/dfaas/overlay"
)

// LiveConfig is a run of a scenario's control plane for real: one agent
// per node, each on its own libp2p overlay, all in this process on
// loopback, ticking on the wall clock. The data plane is left out: each
// node's monitor reports the scenario's capacities and demand.
type LiveConfig struct {
	Scenario Scenario
	// Strategy makes each node's Balancer.
	Strategy func() dfaas.Balancer
	// Interval is the control tick. Default 1 s.
	Interval time.Duration
	// Duration is the measured run after the federation formed. Default
	// 30 s.
	Duration time.Duration
	// Neighbours is each overlay's Libp2pConfig.Neighbours (0: default).
	Neighbours int
	// MembershipEvery, if set, runs the federation under a signed
	// membership (overlay.Libp2pConfig.Admins) whose administrator
	// publishes a new version this often during the measured run (each
	// adds a spare id): its GossipSub bytes show in ByProtocol.
	MembershipEvery time.Duration
	// Logger receives the overlays' and agents' logs. Default: none.
	Logger *slog.Logger
}

// LiveResult is what a live run measured.
type LiveResult struct {
	Scenario string `json:"workload"`
	Agents   int    `json:"agents"`
	// FormedS is how long until every node followed as many peers as it
	// could.
	FormedS float64 `json:"formed_s"`
	// BytesPerNodeS is what a node's libp2p host sent per second over the
	// measured run, every protocol counted (adverts, probes, DHT,
	// identify); AdvertBytesPerNodeS the advert streams alone.
	BytesPerNodeS       float64 `json:"bytes_per_node_s"`
	AdvertBytesPerNodeS float64 `json:"advert_bytes_per_node_s"`
	// ByProtocol splits BytesPerNodeS by libp2p protocol.
	ByProtocol map[string]float64 `json:"bytes_per_node_s_by_protocol"`
	// PropagationMS are quantiles of the time from an agent's publishing an
	// advert until a follower holds it (polled every 5 ms).
	PropagationP50MS float64 `json:"propagation_p50_ms"`
	PropagationP99MS float64 `json:"propagation_p99_ms"`
	// CPUSeconds and RSSMB are the process's, for all the agents, over the
	// measured run and at its end.
	CPUSeconds float64 `json:"cpu_s"`
	RSSMB      float64 `json:"rss_mb"`
	// DetectionTicks is, after one node stopped, the most ticks any other
	// agent ran until the stopped node left its plan; DetectionS the time.
	DetectionTicks uint64  `json:"detection_ticks"`
	DetectionS     float64 `json:"detection_s"`
	// TicksPerS is the mean control ticks an agent ran per second (one per
	// interval, more when a peer came or went); ChurnPerS the mean
	// followees an agent lost per second (stream ended, suspect, dropped).
	TicksPerS float64 `json:"ticks_per_s"`
	ChurnPerS float64 `json:"churn_per_s"`
}

// liveOverlay records when its node published each advert.
type liveOverlay struct {
	*overlay.Libp2p
	mu        sync.Mutex
	published map[uint64]time.Time
}

func (o *liveOverlay) Publish(ctx context.Context, a dfaas.Advert) error {
	err := o.Libp2p.Publish(ctx, a)
	if err == nil {
		o.mu.Lock()
		o.published[a.Seq] = time.Now()
		o.mu.Unlock()
	}
	return err
}

func (o *liveOverlay) publishedAt(seq uint64) (time.Time, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	t, ok := o.published[seq]
	return t, ok
}

// liveMonitor reports the scenario's tick of the wall clock.
type liveMonitor struct {
	sc    Scenario
	i     int
	start time.Time
	tick  time.Duration
}

func (m liveMonitor) Sample(context.Context) (dfaas.Sample, error) {
	t := int(time.Since(m.start)/m.tick) % m.sc.Ticks
	s := dfaas.Sample{Time: time.Now(), Window: m.tick, Functions: map[string]dfaas.FunctionSample{}}
	for f, name := range m.sc.Functions {
		d := max(0, m.sc.Demand(t, m.i, f))
		c := m.sc.Capacity[m.i][f]
		s.Functions[name] = dfaas.FunctionSample{Capacity: dfaas.Rate(c), Arrivals: dfaas.Rate(d), ServedLocal: dfaas.Rate(min(c, d))}
	}
	return s, nil
}

type liveProxy struct{}

func (liveProxy) Apply(context.Context, dfaas.Plan) error { return nil }

type liveNode struct {
	ov     *liveOverlay
	agent  *dfaas.Agent
	cancel context.CancelFunc
	done   chan struct{}
}

// Live runs cfg. It needs the scenario's node count of libp2p hosts' worth
// of memory and CPU: a hundred run on a 2-core machine.
func Live(ctx context.Context, cfg LiveConfig) (LiveResult, error) {
	sc := cfg.Scenario
	if err := sc.Validate(); err != nil {
		return LiveResult{}, err
	}
	if cfg.Strategy == nil {
		return LiveResult{}, fmt.Errorf("%w: sim: live: no strategy", dfaas.ErrInvalidConfig)
	}
	if cfg.Interval == 0 {
		cfg.Interval = time.Second
	}
	if cfg.Duration == 0 {
		cfg.Duration = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	nn := len(sc.Nodes)
	secret := make([]byte, overlay.SecretBytes)
	copy(secret, "dfaas-sim-live")
	start := time.Now()
	nodes := make([]*liveNode, nn)
	defer func() {
		for _, n := range nodes {
			if n != nil {
				n.cancel()
				<-n.done
				_ = n.ov.Close()
			}
		}
	}()
	var admin crypto.PrivKey
	var admins []peer.ID
	if cfg.MembershipEvery > 0 {
		var err error
		if admin, _, err = crypto.GenerateEd25519Key(rand.Reader); err != nil {
			return LiveResult{}, err
		}
		id, err := peer.IDFromPrivateKey(admin)
		if err != nil {
			return LiveResult{}, err
		}
		admins = []peer.ID{id}
	}
	var bootstrap []string
	for i := range nn {
		lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		o, err := overlay.NewLibp2p(lctx, overlay.Libp2pConfig{Secret: secret, Bootstrap: bootstrap, Namespace: "dfaas-live",
			Neighbours: cfg.Neighbours, Logger: cfg.Logger, Admins: admins})
		cancel()
		if err != nil {
			return LiveResult{}, fmt.Errorf("sim: live: node %d: %w", i, err)
		}
		ov := &liveOverlay{Libp2p: o, published: map[uint64]time.Time{}}
		if i == 0 {
			bootstrap = o.Addrs()
		}
		agent, err := dfaas.NewAgent(dfaas.Config{Interval: cfg.Interval, Addr: fmt.Sprintf("127.0.0.1:%d", 20000+i), Logger: cfg.Logger},
			ov, liveMonitor{sc: sc, i: i, start: start, tick: cfg.Interval}, &forecast.LastValue{}, cfg.Strategy(), liveProxy{})
		if err != nil {
			_ = o.Close()
			return LiveResult{}, err
		}
		actx, stop := context.WithCancel(ctx)
		n := &liveNode{ov: ov, agent: agent, cancel: stop, done: make(chan struct{})}
		go func() { defer close(n.done); _ = agent.Run(actx) }()
		nodes[i] = n
	}

	// Formed: every node follows min(neighbours, nn-1) peers.
	want := min(nn-1, overlay.DefaultNeighbours)
	if cfg.Neighbours > 0 {
		want = min(nn-1, cfg.Neighbours)
	}
	for {
		formed := true
		for _, n := range nodes {
			if len(n.ov.Following()) < want {
				formed = false
				break
			}
		}
		if formed {
			break
		}
		if time.Since(start) > 30*time.Second {
			short := 0
			fewest := want
			for _, n := range nodes {
				if f := len(n.ov.Following()); f < want {
					short++
					fewest = min(fewest, f)
				}
			}
			return LiveResult{}, fmt.Errorf("sim: live: the federation did not form in 30 s: %d of %d nodes follow fewer than %d peers (the fewest %d)",
				short, nn, want, fewest)
		}
		select {
		case <-ctx.Done():
			return LiveResult{}, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	res := LiveResult{Scenario: sc.Name, Agents: nn, FormedS: time.Since(start).Seconds()}
	var publish func() error
	if admin != nil {
		var version uint64
		var members []overlay.Member
		for _, n := range nodes {
			id, err := peer.Decode(string(n.ov.Self()))
			if err != nil {
				return res, err
			}
			members = append(members, overlay.Member{ID: id})
		}
		publish = func() error {
			version++
			_, spare, err := crypto.GenerateEd25519Key(rand.Reader)
			if err != nil {
				return err
			}
			spareID, err := peer.IDFromPublicKey(spare)
			if err != nil {
				return err
			}
			m := &overlay.Membership{Format: overlay.MembershipVersion, Federation: "dfaas-live", Version: version,
				Issued: time.Now(), ValidUntil: time.Now().Add(time.Hour),
				Members: append(slices.Clone(members), overlay.Member{ID: spareID})}
			m.Normalize()
			s, err := overlay.SignMembership(m, admin)
			if err != nil {
				return err
			}
			return nodes[int(version)%nn].ov.PublishMembership(ctx, s)
		}
		if err := publish(); err != nil {
			return res, err
		}
		for deadline := time.Now().Add(30 * time.Second); ; {
			all := true
			for _, n := range nodes {
				if m, _ := n.ov.Membership(); m == nil || m.Version < version {
					all = false
				}
			}
			if all {
				break
			}
			if time.Now().After(deadline) {
				return res, errors.New("sim: live: the first membership did not reach every node in 30 s")
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	// Settle one tick, then measure.
	time.Sleep(cfg.Interval)
	outAt := func() (total, adverts int64, ticks, down uint64, by map[string]int64) {
		by = map[string]int64{}
		for _, n := range nodes {
			total += n.ov.Traffic().BytesOut
			for p, st := range n.ov.TrafficByProtocol() {
				by[p] += st.BytesOut
			}
			ticks += n.agent.Status().Ticks
			down += n.ov.Stats().PeersDown
		}
		return total, by["/dfaas-live/adverts/2"], ticks, down, by
	}
	pid := os.Getpid()
	cpu0 := procstat.CPU(pid)
	out0, adv0, ticks0, down0, by0 := outAt()
	t0 := time.Now()
	stopPublishing := make(chan struct{})
	published := make(chan error, 1)
	go func() {
		if publish == nil {
			published <- nil
			return
		}
		t := time.NewTicker(cfg.MembershipEvery)
		defer t.Stop()
		for {
			select {
			case <-stopPublishing:
				published <- nil
				return
			case <-t.C:
				if err := publish(); err != nil {
					published <- err
					return
				}
			}
		}
	}()
	delays := watchPropagation(ctx, nodes, cfg.Duration)
	close(stopPublishing)
	if err := <-published; err != nil {
		return res, err
	}
	secs := time.Since(t0).Seconds()
	out1, adv1, ticks1, down1, by1 := outAt()
	res.ByProtocol = map[string]float64{}
	for p, b := range by1 {
		if p == "" {
			p = "(negotiation)"
		}
		res.ByProtocol[p] = float64(b-by0[p]) / float64(nn) / secs
	}
	res.TicksPerS = float64(ticks1-ticks0) / float64(nn) / secs
	res.ChurnPerS = float64(down1-down0) / float64(nn) / secs
	res.CPUSeconds = (procstat.CPU(pid) - cpu0).Seconds()
	res.RSSMB = procstat.RSSMiB(pid)
	res.BytesPerNodeS = float64(out1-out0) / float64(nn) / secs
	res.AdvertBytesPerNodeS = float64(adv1-adv0) / float64(nn) / secs
	if len(delays) > 0 {
		sort.Slice(delays, func(a, b int) bool { return delays[a] < delays[b] })
		q := func(p float64) float64 {
			return float64(delays[min(len(delays)-1, int(p*float64(len(delays))))]) / float64(time.Millisecond)
		}
		res.PropagationP50MS, res.PropagationP99MS = q(0.5), q(0.99)
	}

	// Stop the last node: how many ticks until it left every plan?
	gone := nodes[nn-1]
	id := gone.ov.Self()
	since := make([]uint64, nn-1)
	for i, n := range nodes[:nn-1] {
		since[i] = n.agent.Status().Ticks
	}
	stoppedAt := time.Now()
	gone.cancel()
	<-gone.done
	_ = gone.ov.Close()
	nodes[nn-1] = nil
	left := make([]bool, nn-1)
	for remaining := nn - 1; remaining > 0; {
		if time.Since(stoppedAt) > 30*time.Second {
			return res, errors.New("sim: live: the stopped node stayed in some plan for 30 s")
		}
		for i, n := range nodes[:nn-1] {
			if left[i] {
				continue
			}
			st := n.agent.Status()
			if !inPlan(st.LastPlan, id) {
				left[i] = true
				remaining--
				res.DetectionTicks = max(res.DetectionTicks, st.Ticks-since[i])
				res.DetectionS = time.Since(stoppedAt).Seconds()
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	return res, nil
}

func inPlan(p dfaas.Plan, id dfaas.NodeID) bool {
	for _, fp := range p.Functions {
		if slices.ContainsFunc(fp.Peers, func(s dfaas.Share) bool { return s.Node == id }) {
			return true
		}
	}
	return false
}

// watchPropagation polls every node's table every 5 ms for d and returns,
// for each advert a node took, how long after its author published it.
func watchPropagation(ctx context.Context, nodes []*liveNode, d time.Duration) []time.Duration {
	byID := map[dfaas.NodeID]*liveOverlay{}
	for _, n := range nodes {
		byID[n.ov.Self()] = n.ov
	}
	seen := make([]map[dfaas.NodeID]uint64, len(nodes))
	for i := range seen {
		seen[i] = map[dfaas.NodeID]uint64{}
	}
	var delays []time.Duration
	end := time.Now().Add(d)
	for time.Now().Before(end) && ctx.Err() == nil {
		for i, n := range nodes {
			now := time.Now()
			for _, ad := range n.ov.Adverts(now) {
				if ad.Seq <= seen[i][ad.Node] {
					continue
				}
				first := seen[i][ad.Node] == 0
				seen[i][ad.Node] = ad.Seq
				if first {
					continue // the first one seen may be old
				}
				if author := byID[ad.Node]; author != nil {
					if at, ok := author.publishedAt(ad.Seq); ok {
						delays = append(delays, now.Sub(at))
					}
				}
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	return delays
}
