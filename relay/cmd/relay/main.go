// Command relay runs a sparecycles community relay: NIP-90 jobs with relay-coordinated leases,
// an embedded LMDB store, NIP-11 and a read-only HTTP API on one port.
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
	"github.com/sparecycles/sparecycles/relay"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "relay:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("relay", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: relay [flags]\n\nA sparecycles community relay. Every flag also reads an env var.\n\n")
		fs.PrintDefaults()
	}
	var cfg relay.Config
	cfg.RegisterFlags(fs)
	if err := envflag.Parse(fs, "SPARECYCLES", args); err != nil {
		return err
	}
	return relay.Run(ctx, cfg, logging.New(os.Stderr, cfg.LogLevel.Level))
}
