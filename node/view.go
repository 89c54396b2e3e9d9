package node

import (
	"embed"
	"encoding/json"
	"io"
	"io/fs"
	"math"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/dfaas-go/dfaas"
)

// View is one picture of a federation: every node a node knows of, from its
// own latest advert and its peers' live ones, with what each function can
// do, is expected to get, and did over the last window.
type View struct {
	// From is the node that drew the view; empty for a merged one.
	From  dfaas.NodeID `json:"from,omitempty"`
	Time  time.Time    `json:"time"`
	Nodes []NodeView   `json:"nodes"`
}

// NodeView is one node in a View, in req/s.
type NodeView struct {
	ID dfaas.NodeID `json:"id"`
	// Name is what a page calls the node: the name it advertises (or one
	// the process that drew the view gives it: the demo numbers its nodes).
	Name string `json:"name,omitempty"`
	Addr string `json:"addr"`
	// Self marks the node that drew the view.
	Self bool `json:"self,omitempty"`
	// RTTms is the round-trip time from the node that drew the view, in
	// milliseconds; absent when none was measured.
	RTTms     *float64                `json:"rtt_ms,omitempty"`
	Functions map[string]FunctionView `json:"functions"`
}

// FunctionView is one function of one node, in req/s.
type FunctionView struct {
	Capacity float64 `json:"capacity"`
	Demand   float64 `json:"demand"`
	Served   float64 `json:"served"`
	Rejected float64 `json:"rejected"`
	// Forwarded is what each peer executed of this node's users' requests.
	Forwarded map[dfaas.NodeID]float64 `json:"forwarded,omitempty"`
	// Local is what the node that drew the view measured of its own
	// executions; set on its own entry only (adverts do not carry it).
	Local *LocalView `json:"local,omitempty"`
}

// LocalView is what a node measured of one function's local executions,
// and what its capacity estimator believes.
type LocalView struct {
	InFlight  int     `json:"in_flight"`
	ExecP50ms float64 `json:"exec_p50_ms"`
	ExecP95ms float64 `json:"exec_p95_ms"`
	// Phase is the estimator's ("start", "probe", "fill", "hold", "cut");
	// Objective its latency objective and Quantile its quantile; Learned
	// says the capacity is measured (false: declared).
	Phase       string  `json:"phase,omitempty"`
	ObjectiveMS float64 `json:"objective_ms,omitempty"`
	Quantile    float64 `json:"quantile,omitempty"`
	Learned     bool    `json:"learned"`
}

// ViewOf draws the view of self from adverts: self's own (which may be
// the zero Advert before its first tick) and its peers'; rtt gives the
// round-trip times self measured.
func ViewOf(self dfaas.Advert, peers []dfaas.Advert, rtt map[dfaas.NodeID]time.Duration, now time.Time) View {
	v := View{From: self.Node, Time: now, Nodes: make([]NodeView, 0, len(peers)+1)}
	if self.Node != "" {
		nv := nodeView(self)
		nv.Self = true
		v.Nodes = append(v.Nodes, nv)
	}
	for _, ad := range peers {
		nv := nodeView(ad)
		if d, ok := rtt[ad.Node]; ok {
			ms := float64(d) / float64(time.Millisecond)
			nv.RTTms = &ms
		}
		v.Nodes = append(v.Nodes, nv)
	}
	return sorted(v)
}

// sorted orders v's nodes by id and keeps only the flows to nodes in v:
// an advert may name any peer, the page draws the ones it knows.
func sorted(v View) View {
	slices.SortFunc(v.Nodes, func(a, b NodeView) int { return strings.Compare(string(a.ID), string(b.ID)) })
	known := func(id dfaas.NodeID) bool {
		_, ok := slices.BinarySearchFunc(v.Nodes, id, func(n NodeView, id dfaas.NodeID) int { return strings.Compare(string(n.ID), string(id)) })
		return ok
	}
	for _, n := range v.Nodes {
		for name, f := range n.Functions {
			for peer := range f.Forwarded {
				if !known(peer) {
					delete(f.Forwarded, peer)
				}
			}
			if len(f.Forwarded) == 0 {
				f.Forwarded = nil
			}
			n.Functions[name] = f
		}
	}
	return v
}

func nodeView(ad dfaas.Advert) NodeView {
	nv := NodeView{ID: ad.Node, Name: ad.Name, Addr: ad.Addr, Functions: make(map[string]FunctionView, len(ad.Functions))}
	for name, f := range ad.Functions {
		fv := nv.Functions[name]
		fv.Capacity, fv.Demand = round(f.Capacity), round(f.Demand)
		nv.Functions[name] = fv
	}
	for name, t := range ad.Traffic {
		fv := nv.Functions[name]
		fv.Served, fv.Rejected = round(t.Served), round(t.Rejected)
		for peer, r := range t.Forwarded {
			if fv.Forwarded == nil {
				fv.Forwarded = make(map[dfaas.NodeID]float64, len(t.Forwarded))
			}
			fv.Forwarded[peer] = round(r)
		}
		nv.Functions[name] = fv
	}
	return nv
}

// round keeps three decimals, the precision adverts carry, of a rate held
// to MaxRate (a node's own state is not bounded by the wire).
func round(r dfaas.Rate) float64 { return math.Round(float64(min(r, dfaas.MaxRate))*1000) / 1000 }

// View is the node's picture of its federation now, its own entry with
// what it measured of its executions.
func (n *Node) View() View {
	st := n.Agent.Status()
	v := ViewOf(st.LastAdvert, n.Overlay.Adverts(time.Now()), st.LastState.RTT, time.Now())
	observed, beliefs := n.Monitor.Observed(), n.Monitor.Estimates()
	ms := func(d time.Duration) float64 { return math.Round(float64(d)/float64(time.Millisecond)*10) / 10 }
	for i, nv := range v.Nodes {
		if !nv.Self {
			continue
		}
		for name, f := range nv.Functions {
			o, b := observed[name], beliefs[name]
			_, learned := beliefs[name]
			f.Local = &LocalView{InFlight: o.InFlight, ExecP50ms: ms(o.Executions.P50), ExecP95ms: ms(o.Executions.P95),
				Phase: b.Phase, ObjectiveMS: ms(b.Objective), Quantile: b.Quantile, Learned: learned}
			nv.Functions[name] = f
		}
		v.Nodes[i] = nv
	}
	return v
}

// MergeViews joins the nodes' own entries of several views into one, as a
// process running many nodes (the demo) sees its whole federation.
func MergeViews(views ...View) View {
	out := View{Time: time.Now(), Nodes: []NodeView{}}
	for _, v := range views {
		for _, nv := range v.Nodes {
			if nv.Self {
				nv.Self = false
				out.Nodes = append(out.Nodes, nv)
			}
		}
	}
	return sorted(out)
}

//go:embed ui
var ui embed.FS

// firstViewMark is where the page's first view goes in index.html.
const firstViewMark = "<!-- first view -->"

// FederationHandler serves the live federation page at / and the view it
// draws, refreshed every second, at /federation. The page comes with the
// view of the moment in a JSON data block, drawn before the page's load
// event (a one-shot screenshot has it); its assets are compiled in (no
// CDN: edge networks may be isolated) and it runs no inline script; names
// from adverts are shown as text, never as markup.
func FederationHandler(view func() View) http.Handler {
	assets, err := fs.Sub(ui, "ui")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	index, err := fs.ReadFile(assets, "index.html")
	before, after, ok := strings.Cut(string(index), firstViewMark)
	if err != nil || !ok {
		panic("node: ui/index.html has no " + firstViewMark) // fixed at build time too
	}
	mux := http.NewServeMux()
	files := http.FileServerFS(assets)
	mux.Handle("GET /ui/{file}", http.StripPrefix("/ui", files)) // files, no listing
	busy := make(chan struct{}, 2)                               // a few views at a time, as /metrics
	// current answers the view now as JSON, or an error already written.
	current := func(w http.ResponseWriter) ([]byte, bool) {
		select {
		case busy <- struct{}{}:
			defer func() { <-busy }()
		default:
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return nil, false
		}
		// json.Marshal escapes <, > and &: no name can close the data
		// block it goes into.
		b, err := json.Marshal(view())
		if err != nil {
			http.Error(w, "view: "+err.Error(), http.StatusInternalServerError)
			return nil, false
		}
		return b, true
	}
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		// Busy drawing views: the page without its first view (its first
		// refresh draws), never a 503 for the page itself.
		select {
		case busy <- struct{}{}:
		default:
			_, _ = io.WriteString(w, before+after)
			return
		}
		b, err := json.Marshal(view())
		<-busy
		if err != nil {
			_, _ = io.WriteString(w, before+after)
			return
		}
		_, _ = io.WriteString(w, before+`<script type="application/json" id="first-view">`)
		_, _ = w.Write(b)
		_, _ = io.WriteString(w, "</script>"+after)
	})
	mux.HandleFunc("GET /federation", func(w http.ResponseWriter, _ *http.Request) {
		b, ok := current(w)
		if !ok {
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write(b)
	})
	return secureHeaders(mux)
}

// secureHeaders confines the page: scripts, styles and fetches from this
// origin only, never framed, no referrer sent, no type sniffing.
func secureHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Referrer-Policy", "no-referrer")
		h.ServeHTTP(w, r)
	})
}
