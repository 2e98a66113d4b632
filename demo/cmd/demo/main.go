// Command demo runs the whole market on this machine with the real binaries (see package
// demo): `make demo`.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/sparecycles/sparecycles/demo"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	repo, err := os.Getwd()
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
	if _, err := demo.Run(ctx, demo.Options{Repo: repo, Out: os.Stdout}); err != nil {
		os.Exit(1)
	}
}
