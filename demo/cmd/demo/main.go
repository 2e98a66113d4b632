// Command demo runs the whole market on this machine with the real binaries (see package
// demo): `make demo`. With --keep (`make demo KEEP=1`) relay, wallet and worker stay up after
// the scripted jobs, for the market page, until Ctrl-C.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/sparecycles/sparecycles/demo"
)

func main() {
	keep := flag.Bool("keep", false, "keep relay, wallet and worker running after the scripted jobs (for the market page) until Ctrl-C")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	repo, err := os.Getwd()
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
	if _, err := demo.Run(ctx, demo.Options{Repo: repo, Out: os.Stdout, Keep: *keep}); err != nil {
		os.Exit(1)
	}
}
