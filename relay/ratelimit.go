package relay

import (
	"sync"
	"time"
)

// tokenBucket is a per-key token-bucket limiter refilled lazily from an injected clock: no
// goroutine, and memory bounded by dropping full buckets once the map grows past maxKeys.
type tokenBucket struct {
	rate  float64 // tokens per second
	burst float64
	now   func() time.Time

	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	at     time.Time
}

const maxRateKeys = 100_000

func newTokenBucket(rate float64, burst int, now func() time.Time) *tokenBucket {
	return &tokenBucket{rate: rate, burst: float64(burst), now: now, buckets: map[string]*bucket{}}
}

// allow takes one token for key; false means the key is over its rate.
func (tb *tokenBucket) allow(key string) bool {
	now := tb.now()
	tb.mu.Lock()
	defer tb.mu.Unlock()
	b := tb.buckets[key]
	if b == nil {
		if len(tb.buckets) >= maxRateKeys {
			tb.prune(now)
		}
		b = &bucket{tokens: tb.burst, at: now}
		tb.buckets[key] = b
	}
	b.tokens = min(tb.burst, b.tokens+now.Sub(b.at).Seconds()*tb.rate)
	b.at = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// prune drops buckets that have refilled: forgetting them changes nothing.
func (tb *tokenBucket) prune(now time.Time) {
	for k, b := range tb.buckets {
		if b.tokens+now.Sub(b.at).Seconds()*tb.rate >= tb.burst {
			delete(tb.buckets, k)
		}
	}
}
