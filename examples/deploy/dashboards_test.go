package deploy_test

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/dfaas-go/dfaas"
	"github.com/dfaas-go/dfaas/node"
	"github.com/dfaas-go/dfaas/overlay"
)

// TestDashboardAndAlertsQueryExportedMetrics: every metric the Grafana
// dashboard and the Prometheus alerting rules query is one an agent
// exports, as its code says: the names the node's collector describes, and
// the families an agent's admin handler really serves (with their types,
// which tell a histogram's _bucket, _sum and _count apart, and Go's and the
// process's metrics).
func TestDashboardAndAlertsQueryExportedMetrics(t *testing.T) {
	exported := exportedMetrics(t)
	dashboard := dashboardExprs(t)
	alerts := alertExprs(t)
	assert.GreaterOrEqual(t, len(dashboard), 45, "the dashboard's queries, its variables' included")
	assert.GreaterOrEqual(t, len(alerts), 9, "one expression per alert")

	used := map[string]bool{}
	for _, q := range append(dashboard, alerts...) {
		names, err := metricNames(q.expr)
		if !assert.NoError(t, err, "%s: %s", q.where, q.expr) {
			continue
		}
		assert.NotEmpty(t, names, "%s queries no metric: %s", q.where, q.expr)
		for _, name := range names {
			family, err := resolve(name, exported)
			if assert.NoError(t, err, "%s: %s", q.where, q.expr) {
				used[family] = true
			}
		}
	}
	var dfaasUsed int
	for family := range used {
		if strings.HasPrefix(family, "dfaas_") {
			dfaasUsed++
		}
	}
	assert.GreaterOrEqual(t, dfaasUsed, 25, "distinct dfaas metrics queried")
	t.Logf("%d dashboard and %d alert expressions, %d distinct metrics (%d of dfaas's %d)",
		len(dashboard), len(alerts), len(used), dfaasUsed, countPrefix(exported, "dfaas_"))
}

// exportedMetrics is every metric family an agent exports, with its type:
// the names its collector describes (all of them, including those absent
// until something happens, such as capacity cuts), and the families a
// real node's admin handler serves once it has planned (which gives their
// types, and Go's and the process's metrics). Described but not yet served
// families have type UNTYPED.
func exportedMetrics(t *testing.T) map[string]dto.MetricType {
	t.Helper()
	out := map[string]dto.MetricType{}
	descs := make(chan *prometheus.Desc)
	go func() {
		// Describe sends package-level descriptors and reads nothing of
		// the node, so a zero one does.
		(&node.Node{}).Collector().Describe(descs)
		close(descs)
	}()
	fqName := regexp.MustCompile(`fqName: "([^"]+)"`)
	for d := range descs {
		m := fqName.FindStringSubmatch(d.String())
		require.NotNil(t, m, "a descriptor's name: %s", d)
		out[m[1]] = dto.MetricType_UNTYPED
	}
	described := len(out)
	require.GreaterOrEqual(t, described, 20, "the collector's descriptors")

	network := overlay.NewNetwork()
	mem, err := network.Join("a")
	require.NoError(t, err)
	quiet := slog.New(slog.DiscardHandler)
	pf, err := node.OpenPlatform(t.Context(), "runtime", node.PlatformSpec{Node: "a", Functions: map[string]dfaas.Rate{"hello": 10}, Logger: quiet})
	require.NoError(t, err)
	n, err := node.Build(t.Context(), node.Config{Overlay: mem, Platform: pf, Interval: 50 * time.Millisecond, Logger: quiet, PlainPeers: true})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, n.Close()) })
	srv := httptest.NewServer(n.AdminHandler())
	t.Cleanup(srv.Close)

	var fams map[string]*dto.MetricFamily
	require.Eventually(t, func() bool {
		resp, err := http.Get(srv.URL + "/metrics")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		p := expfmt.NewTextParser(model.UTF8Validation)
		fams, err = p.TextToMetricFamilies(resp.Body)
		return err == nil && fams["dfaas_request_duration_seconds"] != nil && fams["dfaas_execution_duration_seconds"] != nil
	}, 10*time.Second, 20*time.Millisecond, "the node serves its function's histograms once it has planned")
	for name, f := range fams {
		if strings.HasPrefix(name, "dfaas_") {
			_, ok := out[name]
			assert.True(t, ok, "%s is served but not described", name)
		}
		out[name] = f.GetType()
	}
	assert.Equal(t, dto.MetricType_HISTOGRAM, out["dfaas_request_duration_seconds"])
	assert.Contains(t, out, "go_goroutines", "the admin handler's Go collector")
	assert.Contains(t, out, "process_cpu_seconds_total", "the admin handler's process collector")
	return out
}

// resolve names the family a series name belongs to, or says why it is no
// series an agent exports. A histogram has only name_bucket, name_sum and
// name_count series; a summary has its own name's (quantiles), _sum and
// _count.
func resolve(name string, exported map[string]dto.MetricType) (string, error) {
	if typ, ok := exported[name]; ok {
		if typ == dto.MetricType_HISTOGRAM {
			return "", fmt.Errorf("%s is a histogram: query %[1]s_bucket, %[1]s_sum or %[1]s_count", name)
		}
		return name, nil
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		base, ok := strings.CutSuffix(name, suffix)
		if !ok {
			continue
		}
		switch exported[base] {
		case dto.MetricType_HISTOGRAM:
			return base, nil
		case dto.MetricType_SUMMARY:
			if suffix != "_bucket" {
				return base, nil
			}
		}
	}
	return "", fmt.Errorf("%s is no metric the agent exports", name)
}

func countPrefix(m map[string]dto.MetricType, prefix string) (n int) {
	for k := range m {
		if strings.HasPrefix(k, prefix) {
			n++
		}
	}
	return n
}

// query is a PromQL expression and where it was found.
type query struct{ where, expr string }

// labelValues is Grafana's label_values(selector, label) variable query.
var labelValues = regexp.MustCompile(`^\s*label_values\((.*),\s*[a-zA-Z_][a-zA-Z0-9_]*\s*\)\s*$`)

// dashboardExprs reads the dashboard, checks what Grafana needs to import
// it with any Prometheus data source, and returns every query: each
// panel's targets' (rows' nested panels included) and the query
// variables' selectors.
func dashboardExprs(t *testing.T) []query {
	t.Helper()
	raw, err := os.ReadFile("grafana/dfaas.json")
	require.NoError(t, err)
	var dash struct {
		Title         string            `json:"title"`
		UID           string            `json:"uid"`
		SchemaVersion int               `json:"schemaVersion"`
		Panels        []json.RawMessage `json:"panels"`
		Templating    struct {
			List []struct {
				Name  string          `json:"name"`
				Type  string          `json:"type"`
				Query json.RawMessage `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	require.NoError(t, json.Unmarshal(raw, &dash))
	assert.NotEmpty(t, dash.Title)
	assert.NotEmpty(t, dash.UID)
	assert.GreaterOrEqual(t, dash.SchemaVersion, 36, "data sources by uid in panels and targets")

	var out []query
	vars := map[string]string{}
	for _, v := range dash.Templating.List {
		vars[v.Name] = v.Type
		if v.Type != "query" {
			continue
		}
		var q string
		if json.Unmarshal(v.Query, &q) != nil { // the query editor's form: {"query": ..., "qryType": ...}
			var obj struct {
				Query string `json:"query"`
			}
			require.NoError(t, json.Unmarshal(v.Query, &obj), "variable %s", v.Name)
			q = obj.Query
		}
		m := labelValues.FindStringSubmatch(q)
		require.NotNil(t, m, "variable %s: label_values(metric, label), so its metric is checked: %q", v.Name, q)
		out = append(out, query{"variable " + v.Name, m[1]})
	}
	assert.Equal(t, "datasource", vars["datasource"], "a data source variable")
	assert.True(t, vars["instance"] == "query" || vars["job"] == "query", "an instance or job variable")

	type panel struct {
		ID         int               `json:"id"`
		Type       string            `json:"type"`
		Title      string            `json:"title"`
		Panels     []json.RawMessage `json:"panels"`
		Datasource struct {
			UID string `json:"uid"`
		} `json:"datasource"`
		Targets []struct {
			Expr       string `json:"expr"`
			RefID      string `json:"refId"`
			Datasource struct {
				UID string `json:"uid"`
			} `json:"datasource"`
		} `json:"targets"`
	}
	ids := map[int]string{}
	var walk func(where string, panels []json.RawMessage)
	walk = func(where string, panels []json.RawMessage) {
		for _, r := range panels {
			var p panel
			require.NoError(t, json.Unmarshal(r, &p))
			name := where + "/" + p.Title
			if other, ok := ids[p.ID]; ok || p.ID == 0 {
				t.Errorf("%s: id %d is not unique (also %s)", name, p.ID, other)
			}
			ids[p.ID] = name
			if p.Type == "row" {
				walk(name, p.Panels) // a collapsed row holds its panels
				continue
			}
			assert.NotEmpty(t, p.Targets, "%s has no query", name)
			assert.Equal(t, "${datasource}", p.Datasource.UID, "%s: the data source variable", name)
			for _, tg := range p.Targets {
				assert.NotEmpty(t, tg.Expr, "%s: target %s", name, tg.RefID)
				assert.Equal(t, "${datasource}", tg.Datasource.UID, "%s: target %s", name, tg.RefID)
				out = append(out, query{name + " " + tg.RefID, tg.Expr})
			}
		}
	}
	walk("", dash.Panels)
	// Nothing the walk missed: every "expr" anywhere in the file is one of
	// the targets'.
	var anything any
	require.NoError(t, json.Unmarshal(raw, &anything))
	var targets int
	for _, q := range out {
		if !strings.HasPrefix(q.where, "variable ") {
			targets++
		}
	}
	assert.Equal(t, countKey(anything, "expr"), targets, "every expr of the dashboard is a panel target's")
	return out
}

// countKey counts the object keys named key anywhere in v.
func countKey(v any, key string) (n int) {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			if k == key {
				n++
			}
			n += countKey(e, key)
		}
	case []any:
		for _, e := range v {
			n += countKey(e, key)
		}
	}
	return n
}

// alertExprs reads the alerting rules, checks that each alert is
// complete and documented, and returns their expressions.
func alertExprs(t *testing.T) []query {
	t.Helper()
	raw, err := os.ReadFile("prometheus/alerts.yaml")
	require.NoError(t, err)
	var file struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []struct {
				Alert       string            `yaml:"alert"`
				Record      string            `yaml:"record"`
				Expr        string            `yaml:"expr"`
				For         string            `yaml:"for"`
				Labels      map[string]string `yaml:"labels"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	dec := yaml.NewDecoder(strings.NewReader(string(raw)))
	dec.KnownFields(true) // a misspelt key is an error, not a rule without it
	require.NoError(t, dec.Decode(&file))
	doc, err := os.ReadFile("../../docs/operators.md")
	require.NoError(t, err)

	var out []query
	seen := map[string]bool{}
	require.NotEmpty(t, file.Groups)
	for _, g := range file.Groups {
		assert.NotEmpty(t, g.Name)
		for _, r := range g.Rules {
			require.NotEmpty(t, r.Alert, "group %s: alerts only (a recording rule's name would need checking too)", g.Name)
			assert.False(t, seen[r.Alert], "alert %s twice", r.Alert)
			seen[r.Alert] = true
			assert.NotEmpty(t, strings.TrimSpace(r.Expr), r.Alert)
			d, err := model.ParseDuration(r.For)
			if assert.NoError(t, err, "%s: for", r.Alert) {
				assert.Positive(t, d, "%s: for", r.Alert)
			}
			assert.Contains(t, []string{"critical", "warning", "info"}, r.Labels["severity"], r.Alert)
			assert.NotEmpty(t, r.Annotations["summary"], r.Alert)
			assert.NotEmpty(t, r.Annotations["description"], r.Alert)
			assert.True(t, strings.Contains(string(doc), "`"+r.Alert+"`"), "docs/operators.md says what %s means", r.Alert)
			out = append(out, query{"alert " + r.Alert, r.Expr})
		}
	}
	return out
}

// PromQL's functions and aggregations (and Grafana's query_result): an
// identifier before "(" must be one of them.
var promqlFunctions = strings.Fields(`
	abs absent absent_over_time acos acosh asin asinh atan atanh avg_over_time ceil changes clamp clamp_max clamp_min
	cos cosh count_over_time day_of_month day_of_week day_of_year days_in_month deg delta deriv
	double_exponential_smoothing end exp floor histogram_avg histogram_count histogram_fraction histogram_quantile
	histogram_stddev histogram_stdvar histogram_sum holt_winters hour idelta increase info irate label_join
	label_replace last_over_time ln log10 log2 mad_over_time max_over_time min_over_time minute month pi
	predict_linear present_over_time quantile_over_time rad rate resets round scalar sgn sin sinh sort sort_by_label
	sort_by_label_desc sort_desc sqrt start stddev_over_time stdvar_over_time sum_over_time tan tanh time timestamp
	vector year
	avg bottomk count count_values group limit_ratio limitk max min quantile stddev stdvar sum topk
	query_result`)

// Keywords that take a parenthesised list of labels, and those that stand
// alone.
var (
	labelListKeywords = []string{"by", "without", "on", "ignoring", "group_left", "group_right"}
	keywords          = []string{"and", "or", "unless", "bool", "offset", "inf", "nan", "group_left", "group_right"}
)

// metricNames lists the metric names a PromQL expression selects: the
// identifiers outside label matchers ({...}), ranges ([...]), strings,
// comments and label lists (by, without, on, ignoring, group_left,
// group_right) that are neither keywords nor functions. An identifier
// before "(" must be a known function; a metric named in braces
// (__name__) is refused, since it could not be checked.
func metricNames(expr string) ([]string, error) {
	var names []string
	s := expr
	i, depth := 0, 0
	// skipString skips the string literal at s[i], returning the index
	// after it.
	skipString := func(i int) (int, error) {
		quote := s[i]
		for j := i + 1; j < len(s); j++ {
			switch {
			case s[j] == '\\' && quote != '`':
				j++
			case s[j] == quote:
				return j + 1, nil
			}
		}
		return 0, fmt.Errorf("unterminated string at %d", i)
	}
	// skipTo skips to the close that balances s[i], over strings.
	skipTo := func(i int, open, close byte) (int, string, error) {
		depth := 0
		for j := i; j < len(s); j++ {
			switch c := s[j]; {
			case c == '"' || c == '\'' || c == '`':
				end, err := skipString(j)
				if err != nil {
					return 0, "", err
				}
				j = end - 1
			case c == open:
				depth++
			case c == close:
				depth--
				if depth == 0 {
					return j + 1, s[i+1 : j], nil
				}
			}
		}
		return 0, "", fmt.Errorf("unbalanced %c at %d", open, i)
	}
	isIdentStart := func(c byte) bool { return c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
	isIdent := func(c byte) bool { return isIdentStart(c) || c >= '0' && c <= '9' }
	for i < len(s) {
		c := s[i]
		switch {
		case c == '#': // a comment, to the end of the line
			for i < len(s) && s[i] != '\n' {
				i++
			}
		case c == '"' || c == '\'' || c == '`':
			end, err := skipString(i)
			if err != nil {
				return nil, err
			}
			i = end
		case c == '{' || c == '[':
			close := byte('}')
			if c == '[' {
				close = ']'
			}
			end, inside, err := skipTo(i, c, close)
			if err != nil {
				return nil, err
			}
			if c == '{' && strings.Contains(inside, "__name__") {
				return nil, fmt.Errorf("a metric named by __name__ cannot be checked: name it before the braces")
			}
			i = end
		case c == '$': // a Grafana variable: $name or ${name}
			i++
			if i < len(s) && s[i] == '{' {
				end, _, err := skipTo(i, '{', '}')
				if err != nil {
					return nil, err
				}
				i = end
				continue
			}
			for i < len(s) && isIdent(s[i]) {
				i++
			}
		case c >= '0' && c <= '9' || c == '.': // a number or a duration
			for i < len(s) && (isIdent(s[i]) || s[i] == '.') {
				i++
			}
		case isIdentStart(c):
			start := i
			for i < len(s) && isIdent(s[i]) {
				i++
			}
			word := s[start:i]
			next := i
			for next < len(s) && (s[next] == ' ' || s[next] == '\t' || s[next] == '\n' || s[next] == '\r') {
				next++
			}
			lower := strings.ToLower(word)
			switch {
			case next < len(s) && s[next] == '(' && slices.Contains(labelListKeywords, lower):
				end, _, err := skipTo(next, '(', ')')
				if err != nil {
					return nil, err
				}
				i = end
			case slices.Contains(keywords, lower):
			case next < len(s) && s[next] == '(':
				if !slices.Contains(promqlFunctions, lower) {
					return nil, fmt.Errorf("%s( is no PromQL function", word)
				}
			case slices.Contains(promqlFunctions, lower) && (hasWordAt(s, next, "by") || hasWordAt(s, next, "without")):
				// an aggregation with its labels first: sum by (x) (...)
			default:
				if !slices.Contains(names, word) {
					names = append(names, word)
				}
			}
		case c == '(':
			depth++
			i++
		case c == ')':
			if depth--; depth < 0 {
				return nil, fmt.Errorf("unbalanced ) at %d", i)
			}
			i++
		default:
			i++
		}
	}
	if depth != 0 {
		return nil, fmt.Errorf("unbalanced (")
	}
	return names, nil
}

// hasWordAt tells whether s has the keyword word (in any case) at i,
// followed by no more of an identifier.
func hasWordAt(s string, i int, word string) bool {
	end := i + len(word)
	if end > len(s) || !strings.EqualFold(s[i:end], word) {
		return false
	}
	return end == len(s) || !(s[end] == '_' || s[end] == ':' || s[end] >= 'a' && s[end] <= 'z' || s[end] >= 'A' && s[end] <= 'Z' || s[end] >= '0' && s[end] <= '9')
}

// TestMetricNames: the extractor finds the metrics of the forms the
// dashboard and the rules use, and nothing else.
func TestMetricNames(t *testing.T) {
	for expr, want := range map[string][]string{
		`dfaas_peers`: {"dfaas_peers"},
		`histogram_quantile(0.95, sum by (function, le) (rate(a_bucket{function=~"$function", x="}{(b)"}[$__rate_interval])))`: {"a_bucket"},
		`sum(rate(a_total[5m])) by (instance) / ignoring (reason) group_left (peer) b offset 1h`:                               {"a_total", "b"},
		`a > on (job) 2 * max without (quantile) (b) and on(job) c > bool 0.1 or (d unless (e))`:                               {"a", "b", "c", "d", "e"},
		"time() - max(a{x='y'}) # the age of b\n + label_replace(c, \"dst\", \"$1\", \"src\", `(.*)`)":                         {"a", "c"},
		`rate(a[5m:1m]) * 1e-3 + count(b) * inf + c[${__range}] @ end()`:                                                       {"a", "b", "c"},
		`SUM BY (le) (a)`: {"a"},
	} {
		got, err := metricNames(expr)
		if assert.NoError(t, err, expr) {
			assert.Equal(t, want, got, expr)
		}
	}
	for _, expr := range []string{`rat(a[5m])`, `{__name__="a"}`, `a{x="y}`, `sum(a`} {
		_, err := metricNames(expr)
		assert.Error(t, err, expr)
	}
}
