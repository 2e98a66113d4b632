// Command worker sells spare CPU/GPU cycles: it serves NIP-90 jobs with ONNX Runtime models
// on the relays it is given.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/sparecycles/sparecycles/internal/envflag"
	"github.com/sparecycles/sparecycles/internal/logging"
	"github.com/sparecycles/sparecycles/worker"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "worker:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: worker --relay ws://127.0.0.1:7447 [--relay wss://...] [flags]\n\nServes NIP-90 jobs with ONNX Runtime. Every flag also reads an env var.\n\n")
		fs.PrintDefaults()
	}
	var cfg worker.Config
	cfg.RegisterFlags(fs)
	if err := envflag.Parse(fs, "SPARECYCLES", args); err != nil {
		return err
	}
	return worker.Run(ctx, cfg, logging.New(os.Stderr, cfg.LogLevel.Level))
}
