// Command wallet is a Nostr Wallet Connect (NIP-47) wallet service.
//
//	wallet serve   --relay ws://… --data DIR --backend ledger|lnd [--lnd-rest … --lnd-macaroon … --lnd-tlscert …]
//	wallet connect --relay ws://… --data DIR --name NAME [--budget SATS] [--fund SATS] [--backend ledger|lnd]
//
// serve answers NWC requests for every connection in DIR; connect adds a connection and
// prints its nostr+walletconnect:// URI (and nothing else) on stdout. The ledger backend is
// play money for demos and tests; lnd is a real node.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/sparecycles/sparecycles/internal/cli"
	"github.com/sparecycles/sparecycles/internal/envflag"
	"github.com/sparecycles/sparecycles/internal/logging"
	"github.com/sparecycles/sparecycles/wallet"
	"github.com/sparecycles/sparecycles/wallet/lnd"
)

// envPrefix names every flag's environment twin: --data is SPARECYCLES_WALLET_DATA.
var envPrefix = envflag.Prefix("wallet")

const usage = `Usage:
  wallet serve   [flags]   answer NWC requests (wallet serve -h for flags)
  wallet connect [flags]   add a connection and print its URI (wallet connect -h for flags)
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, cli.Line("wallet", err))
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("give a subcommand: serve or connect")
	}
	switch cmd, args := args[0], args[1:]; cmd {
	case "serve":
		return serve(ctx, args, stderr)
	case "connect":
		return connect(ctx, args, stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stderr, usage)
		return flag.ErrHelp
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("unknown subcommand %q", cmd)
	}
}

func serve(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("wallet serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: wallet serve [flags]\n\nServe NWC for the connections in --data. Every flag also reads an env var.\n\n")
		fs.PrintDefaults()
	}
	var cfg wallet.Config
	cfg.RegisterFlags(fs)
	parsed, err := envflag.Parse(fs, envPrefix, args)
	if err != nil {
		return err
	}
	log := logging.New(os.Stderr, cfg.LogLevel.Level)
	for _, s := range parsed.Stale {
		log.Warn().Str("ignored", s.Old).Str("set", s.New).Msg(s.String())
	}
	cfg.OpenLND = lnd.Open
	return parsed.Explain(wallet.Serve(ctx, cfg, log))
}

func connect(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("wallet connect", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: wallet connect [flags]\n\nAdd an NWC connection and print its URI, which holds the connection's secret.\nEvery flag also reads an env var.\n\n")
		fs.PrintDefaults()
	}
	var cfg wallet.ConnectConfig
	cfg.RegisterFlags(fs)
	parsed, err := envflag.Parse(fs, envPrefix, args)
	if err != nil {
		return err
	}
	for _, s := range parsed.Stale {
		fmt.Fprintln(stderr, "wallet: warning:", s)
	}
	uri, err := wallet.Connect(ctx, cfg)
	if err != nil {
		return parsed.Explain(err)
	}
	_, err = fmt.Fprintln(stdout, uri.Encode())
	return err
}
