package haproxy

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dfaas-go/dfaas"
	"github.com/dfaas-go/dfaas/proxy/proxytest"
)

// TestPickGoldenVectorsInLua: dfaas.lua, run by a real HAProxy on a clock
// the test sets per request, sends every golden vector's requests to the
// peers the pick rule names - the same sequences as the Go rule. Each
// vector has a function of its own, so buckets and round robin start
// fresh, and its replans are applied to the driver as the requests reach
// them; the peers are servers that answer with their letter.
func TestPickGoldenVectorsInLua(t *testing.T) {
	vs, err := proxytest.PickVectors()
	require.NoError(t, err)
	var fns []string
	most := 0
	for i, v := range vs {
		fns = append(fns, fmt.Sprintf("v%d", i))
		most = max(most, len(v.Peers))
	}
	peers := make([]*platform, most)
	for k := range peers {
		peers[k] = newPlatform(t, proxytest.PeerName(k))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	const clock = "x-dfaas-test-now"
	d, err := Start(ctx, Config{Node: "sender", UserAddr: freeAddr(t), PeerAddr: freeAddr(t), Platform: newPlatform(t, "local").addr,
		Functions: fns, Logger: slog.New(slog.DiscardHandler), testClock: clock})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, d.Close()) })

	plan := map[string]dfaas.FunctionPlan{} // no local capacity: every request is forwarded or refused
	planAt := func(i, r int) dfaas.FunctionPlan {
		shares := vs[i].SharesAt(r)
		for k := range shares {
			shares[k].Node = dfaas.NodeID(fns[i] + "-" + string(shares[k].Node))
			shares[k].Addr = peers[k].addr
		}
		return dfaas.FunctionPlan{Peers: shares}
	}
	for i := range vs {
		plan[fns[i]] = planAt(i, 0)
	}
	apply(t, d, plan)

	const t0 = int64(1e9) // µs
	for i, v := range vs {
		var got strings.Builder
		for r := range v.Count {
			if r > 0 && v.ReplanAt(r) {
				plan[fns[i]] = planAt(i, r)
				apply(t, d, plan)
			}
			at := t0 + v.Arrival(r).Microseconds()
			code, _, body := get(t, "http://"+d.UserAddr()+"/function/"+fns[i], map[string]string{clock: strconv.FormatInt(at, 10)})
			switch code {
			case http.StatusOK:
				got.WriteString(body)
			case http.StatusServiceUnavailable:
				got.WriteByte('-')
			default:
				t.Fatalf("%s: request %d: status %d %s", v.Name, r, code, body)
			}
		}
		assert.Equal(t, v.Want, got.String(), v.Name)
	}
}
