// Command testbed runs a federation of real agent processes, each in a
// network namespace of its own, on emulated links (latency, jitter, loss)
// with crashes, freezes and partitions, under open-loop load, and reports
// what the users saw (package internal/testbed). It needs root, ip and
// iptables (Debian's iproute2 and iptables), and builds the agent with the
// go command unless -agent names one.
//
//	sudo go run ./examples/testbed -scenario examples/testbed/scenarios/reference.yaml
//	sudo go run ./examples/testbed -scenario examples/testbed/scenarios/crash.yaml -json
//	sudo go run ./examples/testbed -scenario examples/testbed/scenarios/partition.yaml -plot partition.png
//
// A scenario is a YAML file: nodes with their functions' capacities, links
// (rtt, jitter, loss), load (node, function, rate, from, to) and events
// (kill, stop, freeze, thaw, start, partition, heal, loss) at times. The
// files in examples/testbed/scenarios are commented examples.
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
	scenario := flag.String("scenario", "", "scenario file (YAML)")
	asJSON := flag.Bool("json", false, "print the report as one JSON object")
	agent := flag.String("agent", "", "agent binary (default: build examples/agent)")
	keep := flag.String("keep", "", "keep keys and agent logs in this directory")
	plotFile := flag.String("plot", "", "draw the executions per node per second into this PNG file")
	flag.Parse()
	if *scenario == "" {
		fmt.Fprintln(os.Stderr, "testbed: -scenario FILE is required")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *scenario, *agent, *keep, *plotFile, *asJSON); err != nil {
		fmt.Fprintln(os.Stderr, "testbed:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, file, agent, keep, plotFile string, asJSON bool) error {
	s, err := testbed.ReadFile(file)
	if err != nil {
		return err
	}
	if err := testbed.Check(); err != nil {
		return err
	}
	if agent == "" {
		dir, err := os.MkdirTemp("", "dfaas-testbed-agent-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		fmt.Fprintln(os.Stderr, "testbed: building the agent ...")
		if agent, err = testbed.BuildAgent(ctx, dir); err != nil {
			return err
		}
	}
	if keep != "" {
		if err := os.MkdirAll(keep, 0o700); err != nil {
			return err
		}
	}
	r, err := testbed.Run(ctx, s, testbed.Options{Agent: agent, Dir: keep, Progress: os.Stderr})
	if err != nil {
		return err
	}
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
