package sim

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dfaas-go/dfaas"
)

// TraceRow is one line of a demand trace: from TimeS on, node sees Rate
// req/s of function, until the next row for the same node and function.
type TraceRow struct {
	TimeS    float64
	Node     string
	Function string
	Rate     float64
}

// CapacityRow is one line of a capacities file.
type CapacityRow struct {
	Node     string
	Function string
	Capacity float64
}

// readCSV reads a CSV with exactly the given header and calls row for every
// record, with its line number for errors.
func readCSV(r io.Reader, header []string, row func(line int, rec []string) error) error {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = len(header)
	cr.TrimLeadingSpace = true
	first, err := cr.Read()
	if err != nil {
		return fmt.Errorf("header: %w", err)
	}
	if !slices.Equal(first, header) {
		return fmt.Errorf("header %q, want %q", strings.Join(first, ","), strings.Join(header, ","))
	}
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		line, _ := cr.FieldPos(0)
		if err := row(line, rec); err != nil {
			return fmt.Errorf("line %d: %w", line, err)
		}
	}
}

func parseRate(field, s string) (float64, error) {
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || v < 0 || math.IsInf(v, 0) || math.IsNaN(v) {
		return 0, fmt.Errorf("%s %q is not a non-negative number", field, s)
	}
	return v, nil
}

// ReadTrace parses a demand trace: CSV with header time_s,node,function,rate.
func ReadTrace(r io.Reader) ([]TraceRow, error) {
	var rows []TraceRow
	err := readCSV(r, []string{"time_s", "node", "function", "rate"}, func(_ int, rec []string) error {
		t, err := parseRate("time_s", rec[0])
		if err != nil {
			return err
		}
		rate, err := parseRate("rate", rec[3])
		if err != nil {
			return err
		}
		if rec[1] == "" {
			return errors.New("empty node")
		}
		if err := dfaas.ValidateFunctionName(rec[2]); err != nil {
			return err
		}
		rows = append(rows, TraceRow{TimeS: t, Node: rec[1], Function: rec[2], Rate: rate})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("sim: trace: %w", err)
	}
	return rows, nil
}

// ReadCapacities parses node capacities: CSV with header node,function,capacity.
func ReadCapacities(r io.Reader) ([]CapacityRow, error) {
	var rows []CapacityRow
	err := readCSV(r, []string{"node", "function", "capacity"}, func(_ int, rec []string) error {
		c, err := parseRate("capacity", rec[2])
		if err != nil {
			return err
		}
		if rec[0] == "" {
			return errors.New("empty node")
		}
		if err := dfaas.ValidateFunctionName(rec[1]); err != nil {
			return err
		}
		rows = append(rows, CapacityRow{Node: rec[0], Function: rec[1], Capacity: c})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("sim: capacities: %w", err)
	}
	return rows, nil
}

// MaxTraceCells bounds ticks × nodes × functions of a replayed trace.
const MaxTraceCells = 50_000_000

// TraceScenario replays a trace at the given tick interval. Nodes and
// functions are the union of both files, sorted; a node without a capacity
// row for a function has capacity 0 for it. The run lasts until the last
// trace row's time, plus one tick.
func TraceScenario(name string, trace []TraceRow, capacities []CapacityRow, interval time.Duration) (Scenario, error) {
	if len(trace) == 0 {
		return Scenario{}, fmt.Errorf("%w: sim: empty trace", dfaas.ErrInvalidConfig)
	}
	if interval <= 0 {
		return Scenario{}, fmt.Errorf("%w: sim: interval %v", dfaas.ErrInvalidConfig, interval)
	}
	var nodes, fns []string
	add := func(list []string, s string) []string {
		if i, ok := slices.BinarySearch(list, s); !ok {
			list = slices.Insert(list, i, s)
		}
		return list
	}
	var end float64
	for _, r := range trace {
		nodes, fns = add(nodes, r.Node), add(fns, r.Function)
		end = max(end, r.TimeS)
	}
	for _, c := range capacities {
		nodes, fns = add(nodes, c.Node), add(fns, c.Function)
	}
	ticks := int(end/interval.Seconds()) + 1
	nn, nf := len(nodes), len(fns)
	if cells := ticks * nn * nf; cells > MaxTraceCells || cells < 0 {
		return Scenario{}, fmt.Errorf("%w: sim: trace of %d ticks × %d nodes × %d functions is too large", dfaas.ErrInvalidConfig, ticks, nn, nf)
	}
	index := func(list []string, s string) int { i, _ := slices.BinarySearch(list, s); return i }
	capacity := make([][]float64, nn)
	for i := range capacity {
		capacity[i] = make([]float64, nf)
	}
	for _, c := range capacities {
		capacity[index(nodes, c.Node)][index(fns, c.Function)] = c.Capacity
	}
	// Rows in time order; each sets its cell from its tick on.
	sorted := slices.Clone(trace)
	slices.SortStableFunc(sorted, func(a, b TraceRow) int {
		switch {
		case a.TimeS < b.TimeS:
			return -1
		case a.TimeS > b.TimeS:
			return 1
		}
		return 0
	})
	demand := make([]float64, ticks*nn*nf)
	current := make([]float64, nn*nf)
	k := 0
	for t := range ticks {
		at := float64(t) * interval.Seconds()
		for k < len(sorted) && sorted[k].TimeS <= at+1e-9 {
			r := sorted[k]
			current[index(nodes, r.Node)*nf+index(fns, r.Function)] = r.Rate
			k++
		}
		copy(demand[t*nn*nf:], current)
	}
	return Scenario{Name: name, Nodes: nodes, Functions: fns, Capacity: capacity, Ticks: ticks,
		Demand: func(t, n, f int) float64 { return demand[(t*nn+n)*nf+f] }}, nil
}
