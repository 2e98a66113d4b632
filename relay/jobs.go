package relay

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nbd-wtf/go-nostr"
	"github.com/nbd-wtf/go-nostr/nip40"

	"github.com/sparecycles/sparecycles/nips/lease"
	"github.com/sparecycles/sparecycles/nips/nip01"
	"github.com/sparecycles/sparecycles/nips/nip90"
)

// JobState is where a job stands in the relay's job table.
type JobState string

// Job states. A lapsed lease returns a job to open or quoted; done and expired are final.
// A job whose request is deleted by its author (NIP-09) leaves the table.
const (
	JobOpen    JobState = "open"
	JobQuoted  JobState = "quoted"
	JobLeased  JobState = "leased"
	JobDone    JobState = "done"
	JobExpired JobState = "expired"
)

// Job is one job request and what has happened to it, folded from stored events.
type Job struct {
	ID         string
	Kind       int
	Customer   string
	BidMsat    int64
	CreatedAt  nostr.Timestamp
	Expiration nostr.Timestamp // NIP-40; 0 when none
	Providers  []string        // p tags: only these may lease it

	// Quotes are the workers that sent payment-required feedback, one per pubkey with its
	// newest amount: when one of them delivers the result, its quote is the price /api/series
	// counts as delivered.
	Quotes []Quote
	// Lessees are the pubkeys that hold or have held a lease on the job (a stored claim). Once
	// the job is quoted, only they may deliver its result.
	Lessees []string

	Holder     string          // lease holder, "" when none
	LeaseUntil nostr.Timestamp // end of the holder's lease
	LeaseEvent string          // the feedback event that holds the lease
	// LeaseSince is when the holder's first claim of its current tenure was made (for the
	// ledger's lease-to-result time).
	LeaseSince nostr.Timestamp
	// lapseCounted: the ledger has counted the holder's current lease as lapsed (it ran out
	// with no result; see JobTable.countLapses), so taking the job over does not count it again.
	lapseCounted bool

	ResultBy string // author of the accepted result
	ResultID string
	ResultAt nostr.Timestamp // the accepted result's created_at
}

// State is the job's state at time now.
func (j *Job) State(now nostr.Timestamp) JobState {
	switch {
	case j.ResultID != "":
		return JobDone
	case j.Expiration != 0 && j.Expiration <= now:
		return JobExpired
	case j.leased(now):
		return JobLeased
	case len(j.Quotes) > 0:
		return JobQuoted
	}
	return JobOpen
}

func (j *Job) leased(now nostr.Timestamp) bool { return j.Holder != "" && j.LeaseUntil > now }

// JobTable is the relay's view of every job it stores: a fold over the stored requests,
// feedback, results and deletions, rebuilt from the store on start and updated as each event is
// stored. Lease decisions are made here, atomically with storing the claim.
type JobTable struct {
	maxLease time.Duration
	skew     time.Duration
	now      func() time.Time

	mu      sync.Mutex
	jobs    map[string]*Job
	inserts int
	ledger  ledger     // per worker: done, failed, lapsed, lease-to-result times (ledger.go)
	series  *jobSeries // per minute: posted, done, time to result, delivered msat (series.go)

	leasesGranted, leasesRefused, resultsRefused int64
}

// NewJobTable returns an empty table whose leases last at most maxLease and whose claims must
// be dated within skew of now.
func NewJobTable(maxLease, skew time.Duration, now func() time.Time) *JobTable {
	return &JobTable{maxLease: maxLease, skew: skew, now: now, jobs: map[string]*Job{}, ledger: newLedger(), series: newJobSeries(skew)}
}

// Concerns reports whether evt is one the table folds: a job request, feedback or result.
func Concerns(evt *nostr.Event) bool {
	return nip90.IsRequestKind(evt.Kind) || nip90.IsResultKind(evt.Kind) || evt.Kind == nip90.KindFeedback
}

// Store decides whether evt may be stored and, if so, calls save and folds evt in, all under
// one lock so that two competing claims cannot both win. It returns a *nip01.Rejection when the
// lease rules refuse evt, and save's error when saving fails (the table is then unchanged).
func (t *JobTable) Store(evt *nostr.Event, save func() error) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.check(evt); err != nil {
		return err
	}
	if err := save(); err != nil {
		return err
	}
	t.apply(evt)
	return nil
}

// check applies the lease rules of nips/lease.md to evt.
func (t *JobTable) check(evt *nostr.Event) error {
	switch {
	case evt.Kind == nip90.KindFeedback:
		return t.checkFeedback(evt)
	case nip90.IsResultKind(evt.Kind):
		return t.checkResult(evt)
	}
	return nil
}

func (t *JobTable) checkFeedback(evt *nostr.Event) error {
	d, claims, err := lease.Parse(evt.Tags)
	if err != nil {
		t.leasesRefused++
		return nip01.Reject(nip01.PrefixInvalid, err.Error())
	}
	status := feedbackStatus(evt)
	if claims && status != nip90.StatusProcessing {
		t.leasesRefused++
		return nip01.Reject(nip01.PrefixInvalid, "a lease tag belongs on processing feedback only")
	}
	job := t.jobs[nip90.JobID(evt)]
	if !claims {
		// Plain NIP-90 feedback passes, except "processing" from someone who does not hold a
		// live lease on the job: that worker would run it twice.
		if job != nil && status == nip90.StatusProcessing {
			if held := t.heldByOther(job, evt.PubKey); held != nil {
				return held
			}
		}
		return nil
	}
	now := nostr.Timestamp(t.now().Unix())
	refuse := func(prefix, reason string) error {
		t.leasesRefused++
		return nip01.Reject(prefix, reason)
	}
	switch {
	case job == nil:
		return refuse(nip01.PrefixInvalid, "unknown job: this relay does not hold the request (lease it on the relay that does)")
	case job.ResultID != "":
		return refuse(nip01.PrefixDuplicate, "job already has a result from "+job.ResultBy)
	case job.State(now) == JobExpired:
		return refuse(nip01.PrefixInvalid, fmt.Sprintf("job expired at %d", job.Expiration))
	case len(job.Providers) > 0 && !slices.Contains(job.Providers, evt.PubKey):
		return refuse(nip01.PrefixBlocked, "job is addressed to named providers only")
	case d > t.maxLease:
		return refuse(nip01.PrefixInvalid, fmt.Sprintf("lease of %s is longer than the %s allowed", d, t.maxLease))
	case absDiff(int64(evt.CreatedAt), int64(now)) > int64(t.skew.Seconds()):
		return refuse(nip01.PrefixInvalid, fmt.Sprintf("lease claim created_at %d is more than %s from the relay clock (%d)", evt.CreatedAt, t.skew, now))
	}
	if held := t.heldByOther(job, evt.PubKey); held != nil {
		t.leasesRefused++
		return held
	}
	t.leasesGranted++
	return nil
}

func (t *JobTable) checkResult(evt *nostr.Event) error {
	job := t.jobs[nip90.JobID(evt)]
	if job == nil {
		return nil // a job from elsewhere: plain NIP-90
	}
	refuse := func(prefix, reason string) error {
		t.resultsRefused++
		return nip01.Reject(prefix, reason)
	}
	switch {
	case nip90.RequestKind(evt.Kind) != job.Kind:
		return refuse(nip01.PrefixInvalid, fmt.Sprintf("result kind %d does not answer a kind %d request", evt.Kind, job.Kind))
	case job.ResultID != "" && job.ResultBy != evt.PubKey:
		return refuse(nip01.PrefixDuplicate, "job already has a result from "+job.ResultBy)
	case len(job.Providers) > 0 && !slices.Contains(job.Providers, evt.PubKey):
		return refuse(nip01.PrefixBlocked, "job is addressed to named providers only")
	}
	if held := t.heldByOther(job, evt.PubKey); held != nil {
		t.resultsRefused++
		return held
	}
	if job.ResultID == "" && (len(job.Quotes) > 0 || job.BidMsat > 0) && !slices.Contains(job.Lessees, evt.PubKey) {
		// the customer may have paid (or be about to pay) a quote: a stranger's result must not
		// end the job that the paid worker was about to claim. A bid says the customer expects
		// to pay, so a result racing ahead of the first quote is held to the same rule.
		what := "was quoted"
		if len(job.Quotes) == 0 {
			what = "carries a bid"
		}
		return refuse(nip01.PrefixBlocked, "job "+what+": only a worker that holds or held its lease may deliver the result; claim it first")
	}
	return nil
}

// heldByOther returns the duplicate: refusal when someone other than pubkey holds a live lease.
func (t *JobTable) heldByOther(job *Job, pubkey string) error {
	now := nostr.Timestamp(t.now().Unix())
	if !job.leased(now) || job.Holder == pubkey {
		return nil
	}
	return nip01.Reject(nip01.PrefixDuplicate, lease.Held{Holder: job.Holder, Until: job.LeaseUntil}.Reason())
}

// apply folds a stored event into the table. It never refuses: what is stored was accepted.
func (t *JobTable) apply(evt *nostr.Event) {
	switch {
	case nip90.IsRequestKind(evt.Kind):
		if _, ok := t.jobs[evt.ID]; ok {
			return
		}
		job := &Job{ID: evt.ID, Kind: evt.Kind, Customer: evt.PubKey, CreatedAt: evt.CreatedAt}
		if exp := nip40.GetExpiration(evt.Tags); exp > 0 {
			job.Expiration = exp
		}
		// only the bid and the providers: the request was validated before it was stored
		// (RejectMalformedJobs), so it is not parsed a second time here
		if bid := tagValues(evt.Tags, "bid"); len(bid) > 0 {
			if msat, err := strconv.ParseInt(bid[0], 10, 64); err == nil && msat >= 0 {
				job.BidMsat = msat
			}
		}
		job.Providers = tagValues(evt.Tags, "p")
		t.jobs[evt.ID] = job
		t.series.posted(evt.CreatedAt, t.now())
		if t.inserts++; t.inserts%pruneEvery == 0 {
			t.prune()
		}
	case evt.Kind == nip90.KindFeedback:
		job := t.jobs[nip90.JobID(evt)]
		if job == nil {
			return
		}
		switch feedbackStatus(evt) {
		case nip90.StatusPaymentRequired:
			q := Quote{PubKey: evt.PubKey, Msat: amountMsat(evt), At: evt.CreatedAt}
			switch i := quoteIndex(job.Quotes, evt.PubKey); {
			case i < 0:
				job.Quotes = append(job.Quotes, q)
			case q.At >= job.Quotes[i].At:
				job.Quotes[i] = q // the newest quote is the price
			}
		case nip90.StatusProcessing:
			d, claims, err := lease.Parse(evt.Tags)
			if !claims || err != nil {
				return
			}
			until := evt.CreatedAt + nostr.Timestamp(d/time.Second)
			if job.Holder == evt.PubKey && until < job.LeaseUntil {
				return // an older renewal, folded late
			}
			if job.Holder != evt.PubKey {
				if job.Holder != "" && job.LeaseUntil <= evt.CreatedAt && !job.lapseCounted {
					t.ledger.lapsed(job.Holder, job.LeaseUntil) // its lease ran out; another took the job
				}
				job.LeaseSince = evt.CreatedAt
			}
			job.Holder, job.LeaseUntil, job.LeaseEvent, job.lapseCounted = evt.PubKey, until, evt.ID, false
			if !slices.Contains(job.Lessees, evt.PubKey) {
				job.Lessees = append(job.Lessees, evt.PubKey)
			}
		case nip90.StatusError:
			if slices.Contains(job.Lessees, evt.PubKey) {
				t.ledger.failed(evt.PubKey, evt.CreatedAt) // a worker that leased it gave up
			}
			if evt.PubKey == job.Holder {
				// the holder gave up: the job is open again
				job.Holder, job.LeaseUntil, job.LeaseEvent, job.lapseCounted = "", 0, "", false
			}
		}
	case nip90.IsResultKind(evt.Kind):
		job := t.jobs[nip90.JobID(evt)]
		if job == nil || job.ResultID != "" {
			return
		}
		job.ResultBy, job.ResultID, job.ResultAt = evt.PubKey, evt.ID, evt.CreatedAt
		// delivered for the worker's quote, or (a post-pay worker that never quoted) the
		// amount on its result
		msat := amountMsat(evt)
		if i := quoteIndex(job.Quotes, evt.PubKey); i >= 0 {
			msat = job.Quotes[i].Msat
		}
		if job.BidMsat > 0 {
			msat = min(msat, job.BidMsat) // no customer of ours pays beyond its bid
		}
		t.series.done(evt.CreatedAt, int64(evt.CreatedAt-job.CreatedAt), msat, t.now())
		switch {
		case job.Holder == evt.PubKey && job.LeaseSince > 0 && evt.CreatedAt >= job.LeaseSince:
			t.ledger.done(evt.PubKey, evt.CreatedAt, time.Duration(evt.CreatedAt-job.LeaseSince)*time.Second, true)
		case job.Holder != "" && job.Holder != evt.PubKey:
			if !job.lapseCounted {
				t.ledger.lapsed(job.Holder, min(evt.CreatedAt, job.LeaseUntil)) // another delivered while its lease had run out
			}
			fallthrough
		default:
			t.ledger.done(evt.PubKey, evt.CreatedAt, 0, false)
		}
		job.Holder, job.LeaseUntil, job.LeaseEvent, job.LeaseSince, job.lapseCounted = "", 0, "", 0, false
	}
}

// countLapses counts, once, every lease that ran out before now with no result, no release
// and no other worker taking the job: a worker that died holding a lease nobody else wanted
// still shows it lapsed. Taking the job over or delivering it later does not count it again.
// Called with t.mu held.
func (t *JobTable) countLapses(now nostr.Timestamp) {
	for _, j := range t.jobs {
		if j.Holder != "" && j.ResultID == "" && !j.lapseCounted && j.LeaseUntil <= now {
			t.ledger.lapsed(j.Holder, j.LeaseUntil)
			j.lapseCounted = true
		}
	}
}

// Finished jobs (done or expired) older than finishedRetention leave the table, checked every
// pruneEvery new jobs, so its memory is bounded by the job rate, not the relay's age. Their
// events stay in the store; a late event for one is treated like one for a job held elsewhere.
const (
	finishedRetention = 24 * time.Hour
	pruneEvery        = 1024
)

func (t *JobTable) prune() {
	now := nostr.Timestamp(t.now().Unix())
	cutoff := now - nostr.Timestamp(finishedRetention/time.Second)
	for id, j := range t.jobs {
		if st := j.State(now); (st == JobDone || st == JobExpired) && j.CreatedAt < cutoff {
			delete(t.jobs, id)
		}
	}
}

// Forget drops what a deleted event contributed: a deleted request leaves the table, a deleted
// result re-opens its job, and a deleted lease claim (any of them, not only the newest)
// withdraws its author's lease on the job: the author no longer counts as having held it, and
// if it holds the lease, the lease is released. The relay deletes the author's other claims on
// the job with it (see IsClaim), so the table rebuilt after a restart agrees.
func (t *JobTable) Forget(evt *nostr.Event) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.jobs[evt.ID]; ok {
		delete(t.jobs, evt.ID)
		return
	}
	job := t.jobs[nip90.JobID(evt)]
	if job == nil {
		return
	}
	switch {
	case IsClaim(evt):
		job.Lessees = slices.DeleteFunc(job.Lessees, func(pk string) bool { return pk == evt.PubKey })
		if job.Holder == evt.PubKey {
			job.Holder, job.LeaseUntil, job.LeaseEvent = "", 0, ""
		}
	case evt.ID == job.ResultID:
		job.ResultBy, job.ResultID, job.ResultAt = "", "", 0
	}
}

// IsClaim reports whether evt is a lease claim: processing feedback with a valid lease tag.
func IsClaim(evt *nostr.Event) bool {
	if evt.Kind != nip90.KindFeedback || feedbackStatus(evt) != nip90.StatusProcessing {
		return false
	}
	_, ok, err := lease.Parse(evt.Tags)
	return ok && err == nil
}

// Rebuild folds events (all the stored job events) into an empty table in created_at order.
func (t *JobTable) Rebuild(events []*nostr.Event) {
	slices.SortFunc(events, func(a, b *nostr.Event) int {
		if a.CreatedAt != b.CreatedAt {
			return int(a.CreatedAt - b.CreatedAt)
		}
		return rebuildRank(a) - rebuildRank(b)
	})
	t.mu.Lock()
	defer t.mu.Unlock()
	clear(t.jobs)
	t.ledger = newLedger()
	t.series.reset()
	for _, evt := range events {
		t.apply(evt)
	}
}

// rebuildRank orders events of the same second: requests before feedback before results.
func rebuildRank(evt *nostr.Event) int {
	switch {
	case nip90.IsRequestKind(evt.Kind):
		return 0
	case evt.Kind == nip90.KindFeedback:
		return 1
	}
	return 2
}

// JobView is one row of /api/jobs.
type JobView struct {
	ID         string   `json:"id"`
	Kind       int      `json:"kind"`
	State      JobState `json:"state"`
	Customer   string   `json:"customer"`
	BidMsat    int64    `json:"bid_msat,omitempty"`
	CreatedAt  int64    `json:"created_at"`
	AgeSeconds int64    `json:"age_seconds"`
	Expiration int64    `json:"expiration,omitempty"`
	Providers  []string `json:"providers,omitempty"`
	Quotes     int      `json:"quotes"`
	Holder     string   `json:"holder,omitempty"`
	LeaseUntil int64    `json:"lease_until,omitempty"`
	ResultBy   string   `json:"result_by,omitempty"`
	ResultID   string   `json:"result_id,omitempty"`
	ResultAt   int64    `json:"result_at,omitempty"` // the result's created_at
}

// Views returns the jobs, newest first, as the API shows them.
func (t *JobTable) Views() []JobView {
	now := nostr.Timestamp(t.now().Unix())
	t.mu.Lock()
	views := make([]JobView, 0, len(t.jobs))
	for _, j := range t.jobs {
		v := JobView{
			ID: j.ID, Kind: j.Kind, State: j.State(now), Customer: j.Customer, BidMsat: j.BidMsat,
			CreatedAt: int64(j.CreatedAt), AgeSeconds: int64(now - j.CreatedAt), Expiration: int64(j.Expiration),
			Providers: j.Providers, Quotes: len(j.Quotes), ResultBy: j.ResultBy, ResultID: j.ResultID,
			ResultAt: int64(j.ResultAt),
		}
		if j.leased(now) {
			v.Holder, v.LeaseUntil = j.Holder, int64(j.LeaseUntil)
		}
		views = append(views, v)
	}
	t.mu.Unlock()
	slices.SortFunc(views, func(a, b JobView) int {
		if a.CreatedAt != b.CreatedAt {
			return int(b.CreatedAt - a.CreatedAt)
		}
		return strings.Compare(a.ID, b.ID)
	})
	return views
}

// JobCounts is the lease part of /api/stats.
type JobCounts struct {
	ByState        map[JobState]int `json:"by_state"`
	LeasesGranted  int64            `json:"leases_granted"`
	LeasesRefused  int64            `json:"leases_refused"`
	ResultsRefused int64            `json:"results_refused"`
}

// Counts returns how many jobs are in each state and the lease counters.
func (t *JobTable) Counts() JobCounts {
	now := nostr.Timestamp(t.now().Unix())
	t.mu.Lock()
	defer t.mu.Unlock()
	c := JobCounts{ByState: map[JobState]int{JobOpen: 0, JobQuoted: 0, JobLeased: 0, JobDone: 0, JobExpired: 0},
		LeasesGranted: t.leasesGranted, LeasesRefused: t.leasesRefused, ResultsRefused: t.resultsRefused}
	for _, j := range t.jobs {
		c.ByState[j.State(now)]++
	}
	return c
}

// Lookup returns a copy of the job with id.
func (t *JobTable) Lookup(id string) (Job, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	j, ok := t.jobs[id]
	if !ok {
		return Job{}, false
	}
	return *j, true
}

func feedbackStatus(evt *nostr.Event) nip90.Status {
	if t := evt.Tags.Find("status"); len(t) >= 2 {
		return nip90.Status(t[1])
	}
	return ""
}

func tagValues(tags nostr.Tags, name string) []string {
	var out []string
	for _, t := range tags {
		if len(t) >= 2 && t[0] == name {
			out = append(out, t[1])
		}
	}
	return out
}

func absDiff(a, b int64) int64 {
	if a > b {
		return a - b
	}
	return b - a
}

// errShuttingDown refuses writes that arrive while the relay closes.
var errDeleted = nip01.Reject(nip01.PrefixBlocked, "this event was deleted by its author")

var errShuttingDown = nip01.Reject(nip01.PrefixError, "relay is shutting down, try again shortly")
