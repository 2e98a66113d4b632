package main

import (
	"context"
	"fmt"
	"io"

	"github.com/sparecycles/sparecycles/client"
	"github.com/sparecycles/sparecycles/nips/nip90"
)

// follow runs the job: a request with two or more inputs is a stream (nips/stream.md), whose
// parts are reported on errOut as they arrive ("part 3/12 · 3.3 sat so far"), and a stop at
// --max-spend is said there too; anything else is one job.
func follow(ctx context.Context, cl *client.Client, req nip90.JobRequest, stage func(client.Stage), errOut io.Writer, terminal bool) (client.Outcome, error) {
	if !client.IsStream(req) {
		return cl.Do(ctx, req, stage)
	}
	clear := ""
	if terminal {
		clear = "\r\033[K" // over the progress line, which redraws itself below
	}
	out, err := cl.Stream(ctx, req, stage, func(p client.PartProgress) {
		fmt.Fprintf(errOut, "%spart %d/%d · %s sat so far\n", clear, p.Part.Index, p.Of, satsTenths(p.TotalMsat))
	})
	if err == nil && out.Status == client.StatusStopped {
		fmt.Fprintf(errOut, "%sstopped after %d of %d parts at --max-spend: %s sat paid; the request is deleted, so the worker stops\n",
			clear, len(out.Parts), len(req.Inputs), satsTenths(out.AmountMsat))
	}
	return out, err
}

// satsTenths is msat as sats with one decimal, rounded: 3300 → "3.3".
func satsTenths(msat int64) string {
	tenths := (msat + 50) / 100
	return fmt.Sprintf("%d.%d", tenths/10, tenths%10)
}
