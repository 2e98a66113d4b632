package relay

import (
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/nbd-wtf/go-nostr"
)

// The series are the per-minute numbers behind GET /api/series: jobs posted, results, the
// median time to result and the quoted price of delivered jobs, folded by the job table from
// the events' created_at (so a table rebuilt from the store agrees), and refusals by reason
// prefix, counted at the relay's wall-clock minute in memory only (they start again at zero
// when the relay restarts).
//
// Memory is bounded: seriesMinutes one-minute buckets in a ring (plus the few minutes ahead
// that the clock skew allows), each keeping at most seriesSamples times to result (the latest
// that minute: the median of a busier minute is the median of its last 64 results), and at
// most maxRefusalReasons distinct refusal prefixes (the rest count as "other").
//
// Like the ledger's, the counts record what happened: a request or result deleted later
// (NIP-09) stays counted until the relay restarts, when the table is rebuilt from what the
// store still holds.
const (
	seriesMinute      = time.Minute
	seriesMinutes     = int(24 * time.Hour / seriesMinute)
	seriesSamples     = 64
	maxSeriesAhead    = 60 // minutes of future skew a ring makes room for
	maxRefusalReasons = 16
	otherReason       = "other"
)

type seriesBucket struct {
	minute        int64 // unix time / 60; the bucket is stale when it is not the minute asked for
	posted, done  int32
	deliveredMsat int64
	nsample       int32                // results timed this minute, ever; samples is a ring
	samples       [seriesSamples]int32 // seconds from request to result
}

// jobSeries is the job table's ring of minute buckets. Called with the table's lock held.
type jobSeries struct {
	buckets []seriesBucket
	ahead   int64 // minutes ahead of the clock that are still counted (the table's skew)
}

func newJobSeries(skew time.Duration) *jobSeries {
	ahead := min(int64((skew+seriesMinute-1)/seriesMinute), maxSeriesAhead)
	return &jobSeries{buckets: make([]seriesBucket, seriesMinutes+int(ahead)), ahead: ahead}
}

func (s *jobSeries) reset() { clear(s.buckets) }

// bucket returns the bucket of the minute at falls in, reset if it held an older minute, or
// nil when at is a day or more before now or further ahead of it than the skew allows.
func (s *jobSeries) bucket(at nostr.Timestamp, now time.Time) *seriesBucket {
	m := int64(at) / int64(seriesMinute/time.Second)
	cur := now.Unix() / int64(seriesMinute/time.Second)
	if m <= cur-int64(seriesMinutes) || m > cur+s.ahead || m < 0 {
		return nil
	}
	b := &s.buckets[m%int64(len(s.buckets))]
	if b.minute != m {
		if b.minute > m {
			return nil // the slot holds a newer minute
		}
		*b = seriesBucket{minute: m}
	}
	return b
}

func (s *jobSeries) posted(at nostr.Timestamp, now time.Time) {
	if b := s.bucket(at, now); b != nil {
		b.posted++
	}
}

// done counts a job's accepted result made at at, toResult after its request, delivered for
// msat (the quoted price; 0 when none).
func (s *jobSeries) done(at nostr.Timestamp, toResult int64, msat int64, now time.Time) {
	b := s.bucket(at, now)
	if b == nil {
		return
	}
	b.done++
	b.deliveredMsat = min(b.deliveredMsat, math.MaxInt64-msat) + msat // saturates: amounts come from peers
	b.samples[b.nsample%seriesSamples] = int32(min(max(toResult, 0), 1<<30))
	b.nsample++
}

// JobSeries is the job table's part of /api/series: n minutes ending with the minute end
// (unix time / 60), oldest first.
type JobSeries struct {
	Posted                []int      `json:"posted"`
	Done                  []int      `json:"done"`
	MedianSecondsToResult []*float64 `json:"median_seconds_to_result"`
	DeliveredMsat         []int64    `json:"delivered_msat"`
}

func (s *jobSeries) view(end int64, n int) JobSeries {
	out := JobSeries{
		Posted: make([]int, n), Done: make([]int, n),
		MedianSecondsToResult: make([]*float64, n), DeliveredMsat: make([]int64, n),
	}
	for i := range n {
		m := end - int64(n-1-i)
		if m < 0 {
			continue
		}
		b := &s.buckets[m%int64(len(s.buckets))]
		if b.minute != m {
			continue
		}
		out.Posted[i], out.Done[i], out.DeliveredMsat[i] = int(b.posted), int(b.done), b.deliveredMsat
		if k := int(min(b.nsample, seriesSamples)); k > 0 {
			xs := slices.Clone(b.samples[:k])
			slices.Sort(xs)
			med := float64(xs[k/2])
			if k%2 == 0 {
				med = (float64(xs[k/2-1]) + float64(xs[k/2])) / 2
			}
			out.MedianSecondsToResult[i] = &med
		}
	}
	return out
}

// Series returns n minutes of the job series ending with the minute end (unix time / 60).
func (t *JobTable) Series(end int64, n int) JobSeries {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.series.view(end, n)
}

// Quote is a worker's payment-required feedback on a job: the newest one it sent.
type Quote struct {
	PubKey string
	Msat   int64 // the amount tag's value; 0 when it has none
	At     nostr.Timestamp
}

// quoteIndex is the index of pubkey's quote in quotes, or -1.
func quoteIndex(quotes []Quote, pubkey string) int {
	return slices.IndexFunc(quotes, func(q Quote) bool { return q.PubKey == pubkey })
}

// amountMsat is the first value of evt's amount tag in msat; 0 when it has none or it is not
// a non-negative integer.
func amountMsat(evt *nostr.Event) int64 {
	if v := tagValues(evt.Tags, "amount"); len(v) > 0 {
		if msat, err := strconv.ParseInt(v[0], 10, 64); err == nil && msat >= 0 {
			return msat
		}
	}
	return 0
}

// refusalSeries counts refusals per wall-clock minute by reason prefix, in memory only.
// Called with stats.mu held.
type refusalSeries struct {
	names   []string       // at most maxRefusalReasons; counts[len(names)...] is unused
	index   map[string]int // name → index in names
	buckets []refusalBucket
}

type refusalBucket struct {
	minute int64
	counts [maxRefusalReasons + 1]int32 // the last one is "other"
}

func (s *refusalSeries) add(prefix string, now time.Time) {
	if s.buckets == nil {
		s.buckets = make([]refusalBucket, seriesMinutes)
		s.index = map[string]int{}
	}
	i, ok := s.index[prefix]
	if !ok {
		i = maxRefusalReasons
		if len(s.names) < maxRefusalReasons && prefix != otherReason {
			i = len(s.names)
			s.names = append(s.names, prefix)
			s.index[prefix] = i
		}
	}
	m := now.Unix() / int64(seriesMinute/time.Second)
	b := &s.buckets[m%int64(seriesMinutes)]
	if b.minute != m {
		if b.minute > m {
			return // the clock went back a day or more
		}
		*b = refusalBucket{minute: m}
	}
	b.counts[i]++
}

// view returns, for each reason refused at least once in the n minutes ending with end, its
// counts oldest first.
func (s *refusalSeries) view(end int64, n int) map[string][]int {
	out := map[string][]int{}
	for i := range n {
		m := end - int64(n-1-i)
		if m < 0 || s.buckets == nil {
			continue
		}
		b := &s.buckets[m%int64(seriesMinutes)]
		if b.minute != m {
			continue
		}
		for r, c := range b.counts {
			if c == 0 {
				continue
			}
			name := otherReason
			if r < len(s.names) {
				name = s.names[r]
			}
			if out[name] == nil {
				out[name] = make([]int, n)
			}
			out[name][i] += int(c)
		}
	}
	return out
}
