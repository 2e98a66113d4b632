// Command worker sells spare CPU/GPU cycles: it serves NIP-90 jobs with ONNX Runtime models
// on the relays it is given.
package main

import (
	"context"

	"github.com/rs/zerolog"

	"github.com/sparecycles/sparecycles/internal/cli"
	"github.com/sparecycles/sparecycles/worker"
)

func main() {
	var cfg worker.Config
	cli.Main("worker", "Usage: worker --relay ws://127.0.0.1:7447 [--relay wss://...] [flags]\n\nServes NIP-90 jobs with ONNX Runtime.", &cfg, func(ctx context.Context, log zerolog.Logger) error {
		return worker.Run(ctx, cfg, log)
	})
}
