package client

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/nbd-wtf/go-nostr"
	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"

	"github.com/sparecycles/sparecycles/internal/relayconn"
)

// queryFanout bounds the relays dialled at once by Query.
const queryFanout = 8

// Query asks every relay for the stored events matching filters (everything up to EOSE) and
// merges them, each event once, oldest first. Events come verified (id and signature). It
// succeeds when at least one relay answered, logging the others at warn level; when none
// answered, the error wraps relayconn.ErrNoRelay.
func Query(ctx context.Context, relays []string, log zerolog.Logger, filters ...nostr.Filter) ([]*nostr.Event, error) {
	if len(relays) == 0 {
		return nil, errors.New("client: no relays")
	}
	found := make([][]*nostr.Event, len(relays))
	errs := make([]error, len(relays))
	var g errgroup.Group // no WithContext: one relay failing must not cut the others short
	g.SetLimit(queryFanout)
	for i, url := range relays {
		g.Go(func() error {
			c, err := relayconn.Dial(ctx, url)
			if err != nil {
				errs[i] = err
				return nil
			}
			defer c.Close()
			found[i], errs[i] = c.Query(ctx, filters...)
			return nil
		})
	}
	g.Wait()
	seen := map[string]bool{}
	var out []*nostr.Event
	answered := false
	for i, evs := range found {
		if errs[i] != nil {
			continue
		}
		answered = true
		for _, evt := range evs {
			if !seen[evt.ID] {
				seen[evt.ID] = true
				out = append(out, evt)
			}
		}
	}
	if !answered {
		return nil, fmt.Errorf("%w: %w", relayconn.ErrNoRelay, errors.Join(errs...))
	}
	for i, err := range errs { // the others answered: say what may be missing, and go on
		if err != nil {
			log.Warn().Str("relay", relays[i]).Err(err).Msg("query failed")
		}
	}
	slices.SortStableFunc(out, func(a, b *nostr.Event) int { return cmp.Compare(a.CreatedAt, b.CreatedAt) })
	return out, nil
}
