package node_test

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dfaas-go/dfaas"
	"github.com/dfaas-go/dfaas/overlay"
)

// scrape parses a node's /metrics with Prometheus's own text parser.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	require.NoError(t, err)
	return fams
}

// value is the value of the sample of fam with these labels.
func value(t *testing.T, fams map[string]*dto.MetricFamily, fam string, labels map[string]string) float64 {
	t.Helper()
	f, ok := fams[fam]
	require.True(t, ok, "no %s", fam)
	for _, m := range f.GetMetric() {
		match := true
		for k, v := range labels {
			found := false
			for _, l := range m.GetLabel() {
				if l.GetName() == k && l.GetValue() == v {
					found = true
				}
			}
			match = match && found
		}
		if !match {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue()
		case m.Gauge != nil:
			return m.GetGauge().GetValue()
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount())
		}
	}
	t.Fatalf("no %s%v", fam, labels)
	return 0
}

// TestMetricsMatchTheDataPlane: after load beyond a node's capacity with
// one helper, /metrics passes Prometheus's parser and its request counts
// are exactly the data plane's counters, on both data planes.
func TestMetricsMatchTheDataPlane(t *testing.T) {
	for _, dp := range []string{"embedded", "haproxy"} {
		t.Run(dp, func(t *testing.T) {
			ctx := t.Context()
			network := overlay.NewNetwork()
			a := startNode(t, network, dp, "a", 5, nil)
			startNode(t, network, dp, "b", 10, nil)
			require.Eventually(t, func() bool { return len(a.Agent.Status().LastPlan.Functions["hello"].Peers) == 1 },
				10*time.Second, 20*time.Millisecond)
			for range 60 {
				resp, err := http.Post("http://"+a.DataPlane.UserAddr()+"/function/hello", "text/plain", strings.NewReader("x"))
				require.NoError(t, err)
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			http.DefaultClient.CloseIdleConnections()
			// Every local execution measured (HAProxy's from its log, a
			// moment after the answer).
			require.Eventually(t, func() bool {
				counts, err := a.DataPlane.Counts(ctx)
				return err == nil && counts["hello"].Executions.Count() == counts["hello"].ServedLocal+counts["hello"].Busy
			}, 5*time.Second, 10*time.Millisecond)
			srv := httptest.NewServer(a.AdminHandler())
			defer srv.Close()
			fams := scrape(t, srv.URL+"/metrics")
			counts, err := a.DataPlane.Counts(ctx)
			require.NoError(t, err)
			c := counts["hello"]
			t.Logf("%s: local %d, forwarded %d, rejected %d", dp, c.ServedLocal, c.ForwardedOut, c.Rejected)
			require.Positive(t, c.ServedLocal)
			require.Positive(t, c.ForwardedOut)
			require.Positive(t, c.Rejected, "60 back-to-back requests are beyond a's and b's capacity")
			for outcome, want := range map[string]uint64{"local": c.ServedLocal, "forwarded": c.ForwardedOut, "rejected": c.Rejected} {
				assert.Equal(t, float64(want), value(t, fams, "dfaas_requests_total", map[string]string{"function": "hello", "outcome": outcome}), outcome)
			}
			assert.Equal(t, float64(c.ForwardedOut), value(t, fams, "dfaas_forwarded_total", map[string]string{"function": "hello", "peer": "b"}))
			assert.Equal(t, float64(60), value(t, fams, "dfaas_request_duration_seconds", map[string]string{"function": "hello"}), "one observation per user request")
			assert.LessOrEqual(t, value(t, fams, "dfaas_function_capacity_rps", map[string]string{"function": "hello"}), 5.0,
				"measured, within the declared 5")
			assert.Equal(t, float64(c.Executions.Count()), value(t, fams, "dfaas_execution_duration_seconds", map[string]string{"function": "hello"}))
			assert.Equal(t, float64(c.Busy), value(t, fams, "dfaas_platform_answers_total", map[string]string{"function": "hello", "answer": "busy"}))
			assert.GreaterOrEqual(t, value(t, fams, "dfaas_capacity_service_seconds", map[string]string{"function": "hello"}), 0.0,
				"what the estimator believes is there")
			// The gateway's names: every user request once, by its status.
			assert.Equal(t, 60.0, value(t, fams, "gateway_function_invocation_started", map[string]string{"function_name": "hello"}))
			byCode, timed := map[string]float64{}, 0.0
			for _, m := range fams["gateway_function_invocation_total"].GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "code" {
						byCode[l.GetValue()] += m.GetCounter().GetValue()
					}
				}
			}
			for _, m := range fams["gateway_functions_seconds"].GetMetric() {
				timed += float64(m.GetHistogram().GetSampleCount())
				assert.GreaterOrEqual(t, m.GetHistogram().GetSampleSum(), 0.0)
			}
			assert.Positive(t, seconds(fams, "200"), "the answers that ran took time (HAProxy's clock stands still within one of its loops: a refusal may take 0)")
			assert.Equal(t, float64(c.ServedLocal+c.ForwardedOut), byCode["200"], "%v", byCode)
			assert.Equal(t, float64(c.Rejected), byCode["503"]+byCode["429"], "%v", byCode)
			assert.Equal(t, 60.0, timed)
			assert.Equal(t, 1.0, value(t, fams, "dfaas_peers", nil))
			assert.Positive(t, value(t, fams, "dfaas_ticks_total", nil))
			assert.Equal(t, 1.0, value(t, fams, "dfaas_dataplane_up", nil))
			assert.Contains(t, fams, "go_goroutines", "the Go collector")
		})
	}
}

// seconds is gateway_functions_seconds' sum for the status code.
func seconds(fams map[string]*dto.MetricFamily, code string) float64 {
	var sum float64
	for _, m := range fams["gateway_functions_seconds"].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "code" && l.GetValue() == code {
				sum += m.GetHistogram().GetSampleSum()
			}
		}
	}
	return sum
}

// minter is a member that names 30 fresh functions in every advert.
type minter struct {
	*overlay.Memory
	n *atomic.Int64
}

func (m minter) Publish(ctx context.Context, a dfaas.Advert) error {
	a.Functions = maps.Clone(a.Functions)
	for range 30 {
		a.Functions[fmt.Sprintf("fresh-%d", m.n.Add(1))] = dfaas.FunctionState{Capacity: 10}
	}
	return m.Memory.Publish(ctx, a)
}

// TestMetricsStayBoundedUnderMintedNames: a member that names fresh
// functions in every advert does not grow the function label's values
// without end: a scrape carries only the functions the node serves or plans
// now.
func TestMetricsStayBoundedUnderMintedNames(t *testing.T) {
	network := overlay.NewNetwork()
	var minted atomic.Int64
	a := startNode(t, network, "embedded", "a", 5, nil)
	startNode(t, network, "embedded", "minter", 5, func(m *overlay.Memory) dfaas.Overlay { return minter{m, &minted} })
	require.Eventually(t, func() bool { return minted.Load() > 600 }, 20*time.Second, 50*time.Millisecond)
	srv := httptest.NewServer(a.AdminHandler())
	defer srv.Close()
	fams := scrape(t, srv.URL+"/metrics")
	names := map[string]bool{}
	for _, fam := range []string{"dfaas_requests_total", "dfaas_in_flight_requests", "dfaas_plan_limit_rps"} {
		for _, m := range fams[fam].GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "function" {
					names[l.GetValue()] = true
				}
			}
		}
	}
	t.Logf("%d names minted, %d function label values scraped", minted.Load(), len(names))
	assert.LessOrEqual(t, len(names), 1+64+30, "hello, and at most the plan's functions only peers run (a tick's worth more)")
}
