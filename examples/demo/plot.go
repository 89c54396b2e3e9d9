package main

import (
	"fmt"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"

	"github.com/dfaas-go/dfaas/internal/chart"
	"github.com/dfaas-go/dfaas/internal/scenario"
)

// plotServed draws each node's served rate over time, like Fig. 3 of the
// DFaaS paper.
func plotServed(path string, rep scenario.Report) error {
	p := plot.New()
	p.Title.Text = "Served rate per node (local + received)"
	p.X.Label.Text = "time since load start (s)"
	p.Y.Label.Text = "req/s"
	p.Add(plotter.NewGrid())
	top := 1.0
	for i, n := range rep.Nodes {
		for _, s := range n.Served {
			top = max(top, s)
		}
		pts := make(plotter.XYs, len(n.Served))
		for b, s := range n.Served {
			pts[b].X = float64(b+1) * rep.Bucket.Seconds()
			pts[b].Y = s
		}
		line, err := plotter.NewLine(pts)
		if err != nil {
			return fmt.Errorf("plot: %w", err)
		}
		line.Color = chart.Color(i)
		line.Width = vg.Points(2)
		p.Add(line)
		p.Legend.Add(fmt.Sprintf("node %s (capacity %g)", n.ID, n.Capacity), line)
	}
	p.Legend.Top = true
	p.Legend.Left = true
	p.Y.Min = 0
	p.Y.Max = top * (1.15 + 0.1*float64(len(rep.Nodes))) // room for the legend
	if err := p.Save(8*vg.Inch, 4*vg.Inch, path); err != nil {
		return fmt.Errorf("plot: %w", err)
	}
	return nil
}
