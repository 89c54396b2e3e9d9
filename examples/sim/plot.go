package main

import (
	"fmt"
	"image/color"
	"os"
	"path/filepath"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"

	"github.com/dfaas-go/dfaas/internal/chart"
)

// plotAll writes one PNG per workload: the optimum and each strategy's
// served rate per tick.
func plotAll(dir string, rows []Row) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	byWorkload := map[string][]Row{}
	var order []string
	for _, r := range rows {
		if _, ok := byWorkload[r.Workload]; !ok {
			order = append(order, r.Workload)
		}
		byWorkload[r.Workload] = append(byWorkload[r.Workload], r)
	}
	for _, wl := range order {
		p := plot.New()
		p.Title.Text = "Served rate per tick: " + wl
		p.X.Label.Text = "tick"
		p.Y.Label.Text = "req/s (all nodes)"
		p.Add(plotter.NewGrid())
		rs := byWorkload[wl]
		series := func(get func(i int) float64, n int) plotter.XYs {
			pts := make(plotter.XYs, n)
			for i := range pts {
				pts[i].X, pts[i].Y = float64(i), get(i)
			}
			return pts
		}
		opt, err := plotter.NewLine(series(func(i int) float64 { return rs[0].ticks[i].Optimum }, len(rs[0].ticks)))
		if err != nil {
			return err
		}
		opt.Color = color.Black
		opt.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
		p.Add(opt)
		p.Legend.Add("optimum", opt)
		for k, r := range rs {
			line, err := plotter.NewLine(series(func(i int) float64 { return r.ticks[i].Served }, len(r.ticks)))
			if err != nil {
				return err
			}
			line.Color = chart.Color(k)
			p.Add(line)
			p.Legend.Add(r.Strategy+"/"+r.Forecaster, line)
		}
		var top float64
		for _, t := range rs[0].ticks {
			top = max(top, t.Optimum)
		}
		p.Legend.Top = true
		p.Legend.Left = true
		p.Y.Min = 0
		p.Y.Max = 1.6 * max(top, 1) // room for the legend
		path := filepath.Join(dir, wl+".png")
		if err := p.Save(10*vg.Inch, 4*vg.Inch, path); err != nil {
			return fmt.Errorf("plot %s: %w", path, err)
		}
	}
	return nil
}
