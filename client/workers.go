package client

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/nbd-wtf/go-nostr"
	"github.com/rs/zerolog"

	"github.com/sparecycles/sparecycles/nips/nip89"
)

// workersLimit caps the announcements asked of each relay.
const workersLimit = 1000

// Workers lists the workers announced on relays (NIP-89 kind 31990), only those serving kind
// when kind is not 0: each pubkey's newest announcement, newest first. Announcements that do
// not parse are skipped (logged at debug level). Errors: those of Query.
func Workers(ctx context.Context, relays []string, kind int, log zerolog.Logger) ([]*nip89.HandlerInfo, error) {
	f := nostr.Filter{Kinds: []int{nip89.KindHandlerInfo}, Limit: workersLimit}
	if kind != 0 {
		f.Tags = nostr.TagMap{"k": {strconv.Itoa(kind)}}
	}
	evs, err := Query(ctx, relays, log, f)
	if err != nil {
		return nil, fmt.Errorf("list workers: %w", err)
	}
	newest := map[string]*nip89.HandlerInfo{}
	for _, evt := range evs { // oldest first: a later one replaces an earlier one
		h, err := nip89.ParseHandlerInfo(evt)
		if err != nil {
			log.Debug().Str("pubkey", evt.PubKey).Err(err).Msg("skip announcement")
			continue
		}
		if old := newest[h.PubKey]; old == nil || h.CreatedAt >= old.CreatedAt {
			newest[h.PubKey] = h
		}
	}
	out := make([]*nip89.HandlerInfo, 0, len(newest))
	for _, h := range newest {
		out = append(out, h)
	}
	slices.SortFunc(out, func(a, b *nip89.HandlerInfo) int {
		return cmp.Or(cmp.Compare(b.CreatedAt, a.CreatedAt), strings.Compare(a.PubKey, b.PubKey))
	})
	return out, nil
}
