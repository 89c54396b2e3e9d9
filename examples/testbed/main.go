// Command testbed runs a federation of real agent processes, each in a
// network namespace of its own, on emulated links (latency, jitter, loss)
// with crashes, freezes and partitions, under open-loop load, and reports
// what the users saw (package internal/testbed). It needs root, ip and
// iptables (Debian's iproute2 and iptables), and builds the agent and the
// platform process with the go command unless -agent and -platform name
// them. Nodes given a CPU budget (cpu: 0.2) run their platform in a CPU
// cgroup of their own: cgroup v2's cpu.max, or v1's cpu controller.
//
//	sudo go run ./examples/testbed -scenario examples/testbed/scenarios/reference.yaml
//	sudo go run ./examples/testbed -scenario examples/testbed/scenarios/crash.yaml -json
//	sudo go run ./examples/testbed -scenario examples/testbed/scenarios/partition.yaml -plot partition.png
//	sudo go run ./examples/testbed -scenario examples/testbed/scenarios/degraded-loss.yaml -loss a-b=0,10,20,40 -runs 5
//
// A scenario is a YAML file: nodes with their CPU budgets and functions
// (with or without a dfaas.maxrate label), functions of real cost (work:
// CPU time per call), links (rtt, jitter, loss), load (node, function,
// rate, from, to) and events (kill, stop, freeze, thaw, start, partition,
// heal, loss, cpu, hog, unhog) at times. The files in
// examples/testbed/scenarios are commented examples.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/dfaas-go/dfaas/internal/testbed"
)

func main() {
	var scenarios []string
	flag.Func("scenario", "scenario file (YAML); several are run one after the other and compared", func(v string) error {
		scenarios = append(scenarios, v)
		return nil
	})
	asJSON := flag.Bool("json", false, "print the report as one JSON object")
	agent := flag.String("agent", "", "agent binary (default: build examples/agent)")
	platform := flag.String("platform", "", "platform binary (default: build internal/testbed/platformd)")
	keep := flag.String("keep", "", "keep keys and agent logs in this directory")
	plotFile := flag.String("plot", "", "draw the executions per node per second into this PNG file")
	loss := flag.String("loss", "", "sweep: run the scenario with each of a link's loss rates, as a-b=0,10,20,40 (percent), and print one table")
	proxies := flag.String("proxies", "embedded,haproxy", "sweep: the data planes to run it on")
	runs := flag.Int("runs", 5, "sweep: runs of each data plane and loss rate")
	flag.Parse()
	if len(scenarios) == 0 {
		fmt.Fprintln(os.Stderr, "testbed: -scenario FILE is required")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var sw *sweep
	if *loss != "" {
		s, err := parseSweep(*proxies, *loss, *runs)
		if err != nil {
			fmt.Fprintln(os.Stderr, "testbed:", err)
			os.Exit(2)
		}
		sw = &s
	}
	if err := run(ctx, scenarios, *agent, *platform, *keep, *plotFile, *asJSON, sw); err != nil {
		fmt.Fprintln(os.Stderr, "testbed:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, files []string, agent, platform, keep, plotFile string, asJSON bool, sw *sweep) error {
	var all []testbed.Scenario
	for _, f := range files {
		s, err := testbed.ReadFile(f)
		if err != nil {
			return err
		}
		all = append(all, s)
	}
	if len(all) > 1 && (plotFile != "" || keep != "" || sw != nil) {
		return fmt.Errorf("-plot, -keep and -loss take one scenario")
	}
	if err := testbed.Check(); err != nil {
		return err
	}
	if agent == "" || platform == "" {
		dir, err := os.MkdirTemp("", "dfaas-testbed-agent-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		fmt.Fprintln(os.Stderr, "testbed: building the agent and the platform ...")
		if agent == "" {
			if agent, err = testbed.BuildAgent(ctx, dir); err != nil {
				return err
			}
		}
		if platform == "" {
			if platform, err = testbed.BuildPlatform(ctx, dir); err != nil {
				return err
			}
		}
	}
	if keep != "" {
		if err := os.MkdirAll(keep, 0o700); err != nil {
			return err
		}
	}
	if sw != nil {
		return sw.run(ctx, all[0], testbed.Options{Agent: agent, Platform: platform, Dir: keep, Progress: os.Stderr}, os.Stdout, os.Stderr)
	}
	var reports []*testbed.Report
	for _, s := range all {
		r, err := testbed.Run(ctx, s, testbed.Options{Agent: agent, Platform: platform, Dir: keep, Progress: os.Stderr})
		if err != nil {
			return fmt.Errorf("%s: %w", s.Name, err)
		}
		reports = append(reports, r)
	}
	if len(reports) > 1 {
		for _, r := range reports {
			if asJSON {
				enc := json.NewEncoder(os.Stdout)
				enc.SetIndent("", "  ")
				if err := enc.Encode(r); err != nil {
					return err
				}
				continue
			}
			testbed.Print(os.Stdout, r)
			fmt.Println()
		}
		testbed.Compare(os.Stdout, reports)
		return nil
	}
	r, s := reports[0], all[0]
	if plotFile != "" {
		if err := plotRun(plotFile, s, r); err != nil {
			return err
		}
	}
	if asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	testbed.Print(os.Stdout, r)
	return nil
}
