package relay

import (
	"slices"
	"time"

	"github.com/nbd-wtf/go-nostr"
)

// The ledger keeps, per worker pubkey, what the job table saw it do: jobs done and failed and
// leases lapsed, counted in ledgerSlot-long buckets over the last day, and the times from lease
// to result of its latest results. Memory is bounded: at most maxLedgerWorkers pubkeys (the
// one idle longest is dropped for a new one), ledgerBuckets buckets and ledgerSamples samples
// each. Times are the events' created_at, so a ledger rebuilt from the store agrees.
const (
	ledgerSlot       = 10 * time.Minute
	ledgerBuckets    = int(24 * time.Hour / ledgerSlot)
	ledgerSamples    = 64
	maxLedgerWorkers = 1024
)

type ledgerBucket struct {
	slot                 int64 // unix time / ledgerSlot; the bucket is stale when it is not current
	done, failed, lapsed int32
}

type workerLedger struct {
	buckets [ledgerBuckets]ledgerBucket
	samples [ledgerSamples]int32 // seconds from lease to result, a ring
	nsample int                  // samples written, ever
	last    nostr.Timestamp      // newest event counted
}

type ledger struct {
	workers map[string]*workerLedger
}

func newLedger() ledger { return ledger{workers: map[string]*workerLedger{}} }

func (l *ledger) of(pubkey string, at nostr.Timestamp) *workerLedger {
	w := l.workers[pubkey]
	if w == nil {
		if len(l.workers) >= maxLedgerWorkers {
			l.evict()
		}
		w = &workerLedger{}
		l.workers[pubkey] = w
	}
	w.last = max(w.last, at)
	return w
}

// evict drops the worker whose newest counted event is oldest.
func (l *ledger) evict() {
	var oldest string
	var at nostr.Timestamp
	for pk, w := range l.workers {
		if oldest == "" || w.last < at || (w.last == at && pk < oldest) {
			oldest, at = pk, w.last
		}
	}
	delete(l.workers, oldest)
}

func (w *workerLedger) bucket(at nostr.Timestamp) *ledgerBucket {
	slot := int64(at) / int64(ledgerSlot/time.Second)
	b := &w.buckets[slot%int64(ledgerBuckets)]
	if b.slot != slot {
		if b.slot > slot {
			return nil // older than a day behind what the bucket holds: not counted
		}
		*b = ledgerBucket{slot: slot}
	}
	return b
}

func (l *ledger) done(pubkey string, at nostr.Timestamp, leaseToResult time.Duration, timed bool) {
	w := l.of(pubkey, at)
	if b := w.bucket(at); b != nil {
		b.done++
	}
	if timed {
		w.samples[w.nsample%ledgerSamples] = int32(min(leaseToResult/time.Second, 1<<30))
		w.nsample++
	}
}

func (l *ledger) failed(pubkey string, at nostr.Timestamp) {
	if b := l.of(pubkey, at).bucket(at); b != nil {
		b.failed++
	}
}

func (l *ledger) lapsed(pubkey string, at nostr.Timestamp) {
	if b := l.of(pubkey, at).bucket(at); b != nil {
		b.lapsed++
	}
}

// JobStats is a worker's record in /api/workers. Hours and days are counted in 10-minute
// buckets: "hour" is the current bucket and the five before it.
type JobStats struct {
	DoneHour   int `json:"done_hour"`
	DoneDay    int `json:"done_day"`
	FailedHour int `json:"failed_hour"`
	FailedDay  int `json:"failed_day"`
	LapsedHour int `json:"leases_lapsed_hour"`
	LapsedDay  int `json:"leases_lapsed_day"`
	// MedianLeaseToResult is the median, over the worker's latest (at most 64) results that
	// it leased first, of the seconds from its lease claim to its result; -1 with none.
	MedianLeaseToResult int `json:"median_lease_to_result_seconds"`
}

func (w *workerLedger) stats(now time.Time) JobStats {
	cur := now.Unix() / int64(ledgerSlot/time.Second)
	hour := int64(time.Hour / ledgerSlot)
	s := JobStats{MedianLeaseToResult: -1}
	for _, b := range w.buckets {
		age := cur - b.slot
		if age < 0 || age >= int64(ledgerBuckets) || b.slot == 0 {
			continue
		}
		s.DoneDay += int(b.done)
		s.FailedDay += int(b.failed)
		s.LapsedDay += int(b.lapsed)
		if age < hour {
			s.DoneHour += int(b.done)
			s.FailedHour += int(b.failed)
			s.LapsedHour += int(b.lapsed)
		}
	}
	if n := min(w.nsample, ledgerSamples); n > 0 {
		xs := slices.Clone(w.samples[:n])
		slices.Sort(xs)
		s.MedianLeaseToResult = int(xs[n/2])
		if n%2 == 0 {
			s.MedianLeaseToResult = int((xs[n/2-1] + xs[n/2]) / 2)
		}
	}
	return s
}

// WorkerStats returns the ledger's record of each worker it tracks.
func (t *JobTable) WorkerStats() map[string]JobStats {
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	t.countLapses(nostr.Timestamp(now.Unix()))
	out := make(map[string]JobStats, len(t.ledger.workers))
	for pk, w := range t.ledger.workers {
		out[pk] = w.stats(now)
	}
	return out
}
