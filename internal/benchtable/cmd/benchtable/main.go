// Command benchtable reads concatenated `go test -bench` output on standard input (as
// scripts/bench writes it, with "# section", "# failed" and "tag:" lines between the runs) and
// prints one table: each figure against its baseline from the same run, as a ratio, with the
// target and whether it was met. Benchmarks that no row names are ignored.
//
//	go test -run '^$' -bench . ./relay/ | go run ./internal/benchtable/cmd/benchtable
package main

import (
	"fmt"
	"os"

	"github.com/sparecycles/sparecycles/internal/benchtable"
)

func main() {
	if len(os.Args) > 1 {
		fmt.Fprintln(os.Stderr, "usage: benchtable < go-test-bench-output")
		os.Exit(2)
	}
	s, err := benchtable.Read(os.Stdin)
	if err == nil {
		err = benchtable.Build(s, benchtable.Rows).Write(os.Stdout)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchtable:", err)
		os.Exit(1)
	}
}
