// Command certify runs faas/local behind the real OpenFaaS gateway (the
// one the tests build, internal/gatewaytest) on 127.0.0.1:8080, for
// OpenFaaS's own conformance suite, openfaas/certifier, to run against:
//
//	go run ./examples/certify &
//	cd certifier && go test -count=1 ./tests -gateway=http://127.0.0.1:8080
//
// It stops on SIGINT or SIGTERM. The gateway binds :8080 and :8082.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/dfaas-go/dfaas/faas/local"
	"github.com/dfaas-go/dfaas/internal/gatewaytest"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "certify:", err)
		os.Exit(1)
	}
}

func run() error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	p, err := local.New(local.Config{Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		return err
	}
	defer p.Close()
	gw, err := gatewaytest.Start(ctx, p.URL())
	if err != nil {
		return err
	}
	defer gw.Stop()
	fmt.Printf("the OpenFaaS gateway at %s, in front of faas/local at %s\n", gatewaytest.URL, p.URL())
	<-ctx.Done()
	return nil
}
