// Command relay runs a sparecycles community relay: NIP-90 jobs with relay-coordinated leases,
// an embedded LMDB store, NIP-11 and a read-only HTTP API on one port.
package main

import (
	"context"

	"github.com/rs/zerolog"

	"github.com/sparecycles/sparecycles/internal/cli"
	"github.com/sparecycles/sparecycles/relay"
)

func main() {
	var cfg relay.Config
	cli.Main("relay", "Usage: relay [flags]\n\nA sparecycles community relay.", &cfg, func(ctx context.Context, log zerolog.Logger) error {
		return relay.Run(ctx, cfg, log)
	})
}
