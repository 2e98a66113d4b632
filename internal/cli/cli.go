// Package cli is the shared shape of our single-command binaries: flags with env twins
// (SPARECYCLES_<NAME>_*, e.g. SPARECYCLES_WORKER_RELAY), a zerolog logger, SIGINT/SIGTERM cancelling the run, a one-line error and
// exit status 1.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/rs/zerolog"

	"github.com/sparecycles/sparecycles/internal/envflag"
	"github.com/sparecycles/sparecycles/internal/logging"
)

// Config is what a binary's config gives the runner: its flags and its log level.
type Config interface {
	RegisterFlags(fs *flag.FlagSet)
	Level() zerolog.Level
}

// Main parses os.Args into cfg and calls run with a context that SIGINT or SIGTERM cancel.
// usage heads --help. Flags read their environment twins under envflag.Prefix(name); a shared
// variable no longer read (SPARECYCLES_NWC) draws one warning naming the one to set. It exits
// 1 on an error, printing "name: error", with flags given by a variable named by it.
func Main(name, usage string, cfg Config, run func(ctx context.Context, log zerolog.Logger) error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "%s\nEvery flag also reads an env var.\n\n", usage)
		fs.PrintDefaults()
	}
	cfg.RegisterFlags(fs)
	parsed, err := envflag.Parse(fs, envflag.Prefix(name), os.Args[1:])
	if err == nil {
		log := logging.New(os.Stderr, cfg.Level())
		for _, s := range parsed.Stale {
			log.Warn().Str("ignored", s.Old).Str("set", s.New).Msg(s.String())
		}
		err = run(ctx, log)
	}
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		stop()
		fmt.Fprintln(os.Stderr, Line(name, parsed.Explain(err)))
		os.Exit(1)
	}
}

// Line is the one line a binary prints for err: "name: message", with the name said once
// even when a package's errors start with it too ("worker: worker: ..." reads "worker: ...").
func Line(name string, err error) string {
	parts := strings.Split(err.Error(), ": ")
	out := []string{name}
	for _, p := range parts {
		if p != name {
			out = append(out, p)
		}
	}
	return strings.Join(out, ": ")
}
