package relay

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/sparecycles/sparecycles/nips/nip01"
	"github.com/sparecycles/sparecycles/nips/review"
)

// FuzzPolicies feeds events decoded from arbitrary JSON through the policy chain of a relay
// with the default configuration (a 2 KiB size limit and a wide time window, plus proof of work, auth and both rate limits)
// and the paid-review check over an empty store, then through
// the job table. Nothing may panic; every refusal carries a NIP-01 prefix; an event the size
// policy lets through really is within the limit; the job table either refuses an event with
// a prefixed reason or folds it in.
func FuzzPolicies(f *testing.F) {
	k := newKey(f)
	now := time.Now()
	req := jobRequest(f, k, now)
	seeds := []nostr.Event{
		req,
		claim(f, k, req, now, time.Minute),
		result(f, k, req, now),
		k.sign(f, nostr.Event{Kind: 7000, CreatedAt: nostr.Now(), Tags: nostr.Tags{{"e", req.ID}, {"status", "payment-required"}, {"amount", "1000", "lnbc1"}}}),
		k.sign(f, nostr.Event{Kind: 5000, CreatedAt: nostr.Now(), Content: strings.Repeat("\x00", 100), Tags: nostr.Tags{{"expiration", "1"}}}),
		k.sign(f, nostr.Event{Kind: 1, CreatedAt: 1}),
		k.sign(f, review.Review{Job: req.ID, Worker: k.pk, JobKind: 5000, Rating: 3, Bolt11: "lnbc1", Preimage: strings.Repeat("00", 32)}.Event()),
	}
	for _, evt := range seeds {
		b, err := json.Marshal(evt)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(b))
	}
	f.Add(`{"kind":5000,"tags":[["i"],["param","a","b","c"],[]],"content":"\u2028<>&"}`)
	f.Fuzz(func(t *testing.T, raw string) {
		var evt nostr.Event
		if err := json.Unmarshal([]byte(raw), &evt); err != nil {
			return
		}
		cfg := DefaultConfig()
		cfg.MaxEventBytes = 2048
		cfg.MaxPast = 100 * 365 * 24 * time.Hour // so that fuzzed timestamps get past the window
		cfg.JobPoW, cfg.IPRate, cfg.IPBurst, cfg.PubkeyRate, cfg.PubkeyBurst = 1, 1, 1, 1, 1
		// the review check with a store that holds nothing: every review is refused, with a prefix
		nothing := func(context.Context, nostr.Filter, int, func(*nostr.Event) bool) error { return nil }
		for _, p := range append(Policies(cfg), RejectUnprovenReviews(nothing)) {
			reject, msg := p(context.Background(), &evt)
			if !reject {
				continue
			}
			if !hasPrefix(msg) {
				t.Fatalf("refusal without a NIP-01 prefix: %q", msg)
			}
			return
		}
		if b, err := evt.MarshalJSON(); err == nil && len(b) > cfg.MaxEventBytes {
			t.Fatalf("a %d-byte event passed the %d-byte limit", len(b), cfg.MaxEventBytes)
		}
		table := NewJobTable(time.Minute, time.Second, time.Now)
		if Concerns(&evt) {
			if err := table.Store(&evt, func() error { return nil }); err != nil && !hasPrefix(err.Error()) {
				t.Fatalf("job table refusal without a NIP-01 prefix: %q", err)
			}
		}
	})
}

func hasPrefix(msg string) bool {
	for _, p := range []string{nip01.PrefixInvalid, nip01.PrefixBlocked, nip01.PrefixRateLimited, nip01.PrefixRestricted, nip01.PrefixAuthRequired, nip01.PrefixError, nip01.PrefixPoW, nip01.PrefixDuplicate} {
		if strings.HasPrefix(msg, p+":") {
			return true
		}
	}
	return false
}
