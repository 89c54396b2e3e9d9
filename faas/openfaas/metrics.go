package openfaas

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Invocations is what a gateway counted for one function since it started.
type Invocations struct {
	// ByCode counts invocations by HTTP status code.
	ByCode map[string]float64
	// Seconds is the total time the gateway spent in the function's calls.
	Seconds float64
}

// ReadInvocations reads a gateway's Prometheus metrics (the gateway serves
// them on its separate metrics port, :8082/metrics) and returns the
// invocation counts and times of the functions of the backend's namespace,
// by function name. It complements the proxy's counters with what the
// gateway saw, such as calls that reached it by another way.
func (b *Backend) ReadInvocations(ctx context.Context, metricsURL string) (map[string]Invocations, error) {
	ctx, cancel := context.WithTimeout(ctx, b.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, metricsURL, nil)
	if err != nil {
		return nil, fmt.Errorf("openfaas: metrics: %w", err)
	}
	resp, err := (&http.Client{Transport: b.apiTr}).Do(req)
	if err != nil {
		return nil, fmt.Errorf("openfaas: metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("openfaas: metrics: %s", resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("openfaas: metrics: %w", err)
	}
	out := map[string]Invocations{}
	entry := func(labels map[string]string) (string, Invocations, bool) {
		name, ns, _ := strings.Cut(labels["function_name"], ".")
		if name == "" || (ns != "" && ns != b.cfg.Namespace) {
			return "", Invocations{}, false
		}
		inv := out[name]
		if inv.ByCode == nil {
			inv.ByCode = map[string]float64{}
		}
		return name, inv, true
	}
	if f := families["gateway_function_invocation_total"]; f != nil {
		for _, m := range f.GetMetric() {
			labels := labelMap(m.GetLabel())
			if name, inv, ok := entry(labels); ok {
				inv.ByCode[labels["code"]] += m.GetCounter().GetValue()
				out[name] = inv
			}
		}
	}
	if f := families["gateway_functions_seconds"]; f != nil {
		for _, m := range f.GetMetric() {
			if name, inv, ok := entry(labelMap(m.GetLabel())); ok {
				inv.Seconds += m.GetHistogram().GetSampleSum()
				out[name] = inv
			}
		}
	}
	return out, nil
}

func labelMap[L interface {
	GetName() string
	GetValue() string
}](pairs []L) map[string]string {
	out := make(map[string]string, len(pairs))
	for _, p := range pairs {
		out[p.GetName()] = p.GetValue()
	}
	return out
}
