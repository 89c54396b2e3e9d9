package main

import (
	"fmt"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"

	"github.com/dfaas-go/dfaas/internal/chart"
	"github.com/dfaas-go/dfaas/internal/testbed"
)

// plotRun draws each node's executions per second, the federation's
// rejected and failed requests per second, and the events as vertical
// lines.
func plotRun(path string, s testbed.Scenario, r *testbed.Report) error {
	p := plot.New()
	p.Title.Text = "Testbed " + r.Scenario + ": executions per node"
	p.X.Label.Text = "time since load start (s)"
	p.Y.Label.Text = "req/s"
	p.Add(plotter.NewGrid())
	top := 1.0
	// Whole seconds of the run only: the last one is a sliver.
	var secs []testbed.Second
	for _, sec := range r.Timeline {
		if float64(sec.T) < s.Duration.D().Seconds() {
			secs = append(secs, sec)
		}
	}
	for i, n := range s.Nodes {
		pts := make(plotter.XYs, len(secs))
		for k, sec := range secs {
			pts[k].X, pts[k].Y = float64(sec.T)+0.5, float64(sec.Nodes[n.Name].Executed)
			top = max(top, pts[k].Y)
		}
		line, err := plotter.NewLine(pts)
		if err != nil {
			return fmt.Errorf("plot: %w", err)
		}
		line.Color, line.Width = chart.Color(i), vg.Points(2)
		p.Add(line)
		p.Legend.Add(fmt.Sprintf("%s executed", n.Name), line)
	}
	unserved := make(plotter.XYs, len(secs))
	for k, sec := range secs {
		var c int
		for _, n := range sec.Nodes {
			c += n.Rejected + n.Failed
		}
		unserved[k].X, unserved[k].Y = float64(sec.T)+0.5, float64(c)
		top = max(top, unserved[k].Y)
	}
	line, err := plotter.NewLine(unserved)
	if err != nil {
		return fmt.Errorf("plot: %w", err)
	}
	line.Color, line.Width, line.Dashes = chart.Color(len(s.Nodes)), vg.Points(1.5), []vg.Length{vg.Points(4), vg.Points(3)}
	p.Add(line)
	p.Legend.Add("rejected + failed", line)
	for _, e := range s.Events {
		at := e.At.D().Seconds()
		mark, err := plotter.NewLine(plotter.XYs{{X: at, Y: 0}, {X: at, Y: top * 1.05}})
		if err != nil {
			return fmt.Errorf("plot: %w", err)
		}
		mark.Color, mark.Dashes = chart.Color(7), []vg.Length{vg.Points(1), vg.Points(2)}
		p.Add(mark)
		label, err := plotter.NewLabels(plotter.XYLabels{XYs: plotter.XYs{{X: at, Y: top * 1.05}}, Labels: []string{e.Name()}})
		if err != nil {
			return fmt.Errorf("plot: %w", err)
		}
		p.Add(label)
	}
	p.Legend.Top, p.Legend.Left = true, false
	p.Y.Min, p.Y.Max = 0, top*(1.2+0.08*float64(len(s.Nodes)+1))
	if err := p.Save(9*vg.Inch, 4.5*vg.Inch, path); err != nil {
		return fmt.Errorf("plot: %w", err)
	}
	return nil
}
