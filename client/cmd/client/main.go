// Command client is the customer's side of sparecycles: it posts a NIP-90 job and pays for it
// over NWC (post), reattaches to a job by its id (status), lists the workers announced on the
// relays (workers), reviews the worker a job was paid to, with the payment as proof (review),
// makes the customer's key (keygen) and reads the wallet's balance (balance). The work lives in package client; this folder turns flags into calls and
// results into text or JSON.
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

	"github.com/sparecycles/sparecycles/client"
	bin "github.com/sparecycles/sparecycles/internal/cli"
	"github.com/sparecycles/sparecycles/internal/envflag"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// Exit codes. post uses them all; the other commands exit 0 or 1 (balance 4 when the wallet
// is missing or silent).
const (
	exitOK        = 0
	exitOther     = 1
	exitNoOffer   = 2
	exitRefused   = 3
	exitPayment   = 4
	exitJobFailed = 5
	exitTimeout   = 6
)

const exitCodesHelp = `Exit codes:
  0  done; also a stream (several --input) stopped at --max-spend: status "stopped", the
     parts received printed
  1  anything else: bad flags, no relay reachable, unknown job, ...
  2  no acceptable offer: every quote was above the bid or invalid, or every worker refused
  3  the chosen invoice was refused (amount, network, expiry or description not as agreed)
  4  payment failed, the wallet did not answer, or a paid job without a wallet (--nwc)
  5  the worker reported an error (an escrow payment is refunded), or an escrow settled for a
     result its key does not open
  6  timed out waiting for the result (or for any worker to answer)
`

// stdio is one invocation's standard streams.
type stdio struct {
	in          io.Reader
	out, errOut io.Writer
	parsed      **envflag.Parsed // set by parse: where the flags came from
}

type command struct {
	name, args, summary string
	run                 func(ctx context.Context, std stdio, c command, args []string) error
}

var commands = []command{
	{"post", "--relay URL --input URL|FILE [--bid 500sat] [flags]", "post a job, pay the best quote and print the result", post},
	{"status", "<job-id> [flags]", "reattach to a job: its state, quotes, payment and result", status},
	{"workers", "[--kind N] [flags]", "list the workers announced on the relays (NIP-89)", workers},
	{"review", "<job-id> --rating 1..5 [--text TEXT] [flags]", "publish a paid review of the worker a job was paid to", review},
	{"keygen", "[--key-file FILE]", "create the customer's key if missing and print its public key", keygen},
	{"balance", "[flags]", "print the NWC wallet's balance", balance},
}

// run is the whole command: it returns the exit code.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return exitOther
	}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		usage(stdout)
		return exitOK
	}
	for _, c := range commands {
		if c.name != args[0] {
			continue
		}
		var parsed *envflag.Parsed
		err := c.run(ctx, stdio{stdin, stdout, stderr, &parsed}, c, args[1:])
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		if err != nil {
			fmt.Fprintln(stderr, bin.Line("client", parsed.Explain(err)))
		}
		return exitCode(err)
	}
	fmt.Fprintf(stderr, "client: unknown command %q (see client --help)\n", args[0])
	return exitOther
}

// exitCode maps the client package's sentinels to the documented codes.
func exitCode(err error) int {
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, client.ErrNoOffer):
		return exitNoOffer
	case errors.Is(err, client.ErrRefusedInvoice):
		return exitRefused
	case errors.Is(err, client.ErrPaymentFailed), errors.Is(err, client.ErrWalletDown), errors.Is(err, client.ErrNoWallet):
		return exitPayment
	case errors.Is(err, client.ErrJobFailed), errors.Is(err, client.ErrUnreadable):
		return exitJobFailed
	case errors.Is(err, client.ErrTimeout):
		return exitTimeout
	}
	return exitOther
}

func usage(w io.Writer) {
	fmt.Fprint(w, "Usage: client <command> [flags]\n\nThe customer's side of sparecycles: post NIP-90 jobs, pay workers over NWC.\n\nCommands:\n")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, "\n`client <command> --help` lists a command's flags; each also reads an env var (SPARECYCLES_CLIENT_...).\n\n", exitCodesHelp)
}
