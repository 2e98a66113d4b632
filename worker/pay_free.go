package worker

import (
	"context"

	"github.com/rs/zerolog"

	"github.com/sparecycles/sparecycles/nips/nip47"
	"github.com/sparecycles/sparecycles/nips/nip90"
)

// freeScheme serves jobs that cost nothing (no wallet, or a price of 0): nothing is stored,
// the job is claimed, run and delivered at once, and a failure is only error feedback.
type freeScheme struct{ w *Worker }

func (freeScheme) name() string { return schemeFree }

func (s freeScheme) quote(ctx context.Context, j *job, log zerolog.Logger, q quote) error {
	s.w.claimRunDeliver(ctx, j, log, q.run, q.t0, false, q.claim)
	return nil
}

func (freeScheme) funded(context.Context, storedJob, nip47.Transaction) {}

func (freeScheme) seal(context.Context, *job, zerolog.Logger, *link, *nip90.JobResult) bool {
	return true
}

func (freeScheme) settle(context.Context, *job, zerolog.Logger, *link, delivery) bool { return true }

func (freeScheme) refund(context.Context, *job, zerolog.Logger, string) bool { return false }

func (freeScheme) resume(context.Context, storedJob, *job) {}
