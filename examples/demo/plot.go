package main

import (
	"fmt"
	"image/color"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"

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
	palette := []color.Color{
		color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}, color.RGBA{R: 0xff, G: 0x7f, B: 0x0e, A: 0xff},
		color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff}, color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff},
		color.RGBA{R: 0x94, G: 0x67, B: 0xbd, A: 0xff}, color.RGBA{R: 0x8c, G: 0x56, B: 0x4b, A: 0xff},
	}
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
		line.Color = palette[i%len(palette)]
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
