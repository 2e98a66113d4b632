// Package cli is the shared shape of our single-command binaries: flags with env twins
// (SPARECYCLES_*), a zerolog logger, SIGINT/SIGTERM cancelling the run, a one-line error and
// exit status 1.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/rs/zerolog"

	"github.com/sparecycles/sparecycles/internal/envflag"
	"github.com/sparecycles/sparecycles/internal/logging"
)

// EnvPrefix prefixes every flag's environment twin.
const EnvPrefix = "SPARECYCLES"

// Config is what a binary's config gives the runner: its flags and its log level.
type Config interface {
	RegisterFlags(fs *flag.FlagSet)
	Level() zerolog.Level
}

// Main parses os.Args into cfg and calls run with a context that SIGINT or SIGTERM cancel.
// usage heads --help. It exits 1 on an error, printing "name: error".
func Main(name, usage string, cfg Config, run func(ctx context.Context, log zerolog.Logger) error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "%s\nEvery flag also reads an env var.\n\n", usage)
		fs.PrintDefaults()
	}
	cfg.RegisterFlags(fs)
	err := envflag.Parse(fs, EnvPrefix, os.Args[1:])
	if err == nil {
		err = run(ctx, logging.New(os.Stderr, cfg.Level()))
	}
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		stop()
		fmt.Fprintln(os.Stderr, name+":", err)
		os.Exit(1)
	}
}
