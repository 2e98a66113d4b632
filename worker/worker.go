// Package worker sells spare cycles: it serves NIP-90 jobs with ONNX Runtime models to any
// relays it is given. Each model in the models folder is one row of a job table (kind → check
// and fetch input → run); jobs wait in a bounded queue per model and run a fixed number at a
// time, and a full queue answers "busy" at once. On relays that coordinate leases
// (nips/lease.md) the worker claims a job before running it; elsewhere it speaks plain NIP-90.
// A job seen on several relays runs once.
package worker

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/nbd-wtf/go-nostr"
	"github.com/rs/zerolog"

	"github.com/sparecycles/sparecycles/internal/keyfile"
	"github.com/sparecycles/sparecycles/internal/logging"
	"github.com/sparecycles/sparecycles/nips/lease"
	"github.com/sparecycles/sparecycles/nips/nip01"
	"github.com/sparecycles/sparecycles/nips/nip89"
	"github.com/sparecycles/sparecycles/nips/nip90"
	"github.com/sparecycles/sparecycles/nips/tensor"
	"github.com/sparecycles/sparecycles/worker/onnx"
)

// Worker is one running worker.
type Worker struct {
	cfg     Config
	log     zerolog.Logger
	key     keyfile.Key
	rt      *onnx.Runtime
	fetch   *Fetcher
	models  []*model
	byKind  map[int][]*model
	lanes   map[*model]chan *job
	links   []*link
	seen    *seenSet
	started time.Time

	announcement nostr.Event

	wallet   walletAPI // nil: jobs are free
	closeNWC func()
	schemes  schemes  // how jobs are paid, by name
	payments []string // the schemes offered by default, in order of preference (nil: free)
	store    *jobStore
	awaiting awaiting
	holds    holdCalls            // escrow settles and cancels in flight, and settles refused
	offers   offers               // post-pay offers waiting for their customers
	paid     map[*model]chan *job // paid (or accepted post-pay) jobs, served before the queue
	later    laterSet             // backlog jobs leased by others, looked at when the lease ends
	streams  streamSet            // streamed jobs being served (stream.go)
	beatAt   atomic.Int64         // the last heartbeat's created_at (heartbeat.go)
	spare    *spareState          // paused for the owner (spare.go)

	annMu sync.Mutex // guards announcement

	executed atomic.Int64
	busy     atomic.Int64
	running  atomic.Int64   // jobs being handled now, for the heartbeat's status
	async    sync.WaitGroup // background publishes
}

// job is a request on its way through the worker.
type job struct {
	req   *nip90.JobRequest
	event *nostr.Event
	model *model

	mu        sync.Mutex
	seen      []*link // where it was seen, in arrival order
	retries   int     // claims retried after another worker's lease
	postPrice *int64  // an accepted post-pay offer: the result carries an invoice for it
	scheme    scheme  // how it is paid: set by handle or restore (nil reads as free)
	// deadline, when set, is when its run must end: escrow's settle window less the time
	// delivery and settling need. Set before the job is queued paid.
	deadline time.Time
	// private is set for an encrypted request: what the worker says of the job is encrypted
	// to the customer with it (private.go). Set before the job is queued.
	private *customerCipher
}

func (j *job) addRelay(l *link) {
	if l == nil {
		return
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if !slices.Contains(j.seen, l) {
		j.seen = append(j.seen, l)
	}
}

// relays returns where the job was seen so far.
func (j *job) relays() []*link {
	j.mu.Lock()
	defer j.mu.Unlock()
	return slices.Clone(j.seen)
}

// New loads the key, the runtime and the models. It starts nothing; Run serves, Close frees.
func New(cfg Config, log zerolog.Logger) (*Worker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	manifests, err := LoadManifests(cfg.Models) // first: without models, make no key
	if err != nil {
		return nil, err
	}
	key, created, err := keyfile.LoadOrCreate(cfg.KeyFile)
	if err != nil {
		return nil, err
	}
	if created {
		log.Info().Str("file", cfg.KeyFile).Str("pubkey", key.PubKey).Msg("generated a new worker key")
	}
	rt, err := onnx.NewRuntime(onnx.RuntimeConfig{LibraryPath: cfg.Library, Device: cfg.Device, Threads: cfg.Threads}, log)
	if err != nil {
		return nil, err
	}
	w := &Worker{
		cfg: cfg, log: log.With().Str("pubkey", key.PubKey).Logger(), key: key, rt: rt,
		fetch:  NewFetcher(cfg.FetchBytes, cfg.FetchTime, cfg.AllowPrivate),
		byKind: map[int][]*model{}, lanes: map[*model]chan *job{}, paid: map[*model]chan *job{},
		seen: newSeenSet(100_000), started: time.Now(), awaiting: awaiting{jobs: map[string]*job{}},
		spare: newSpareState(cfg.When == WhenIdle),
	}
	w.schemes = newSchemes(w)
	if w.store, err = openJobStore(context.Background(), cfg.Data); err != nil {
		w.Close()
		return nil, err
	}
	if cfg.NWC != "" {
		if err := w.connectWallet(cfg.NWC); err != nil {
			w.Close()
			return nil, err
		}
	}
	for _, m := range manifests {
		var md *model
		switch m.Task {
		case TaskOCR:
			md, err = newOCRModel(m, rt, w.fetch)
		case TaskTensor:
			md, err = newTensorModel(m, rt, w.fetch)
		}
		if err != nil {
			w.Close()
			return nil, err
		}
		w.models = append(w.models, md)
		w.byKind[m.Kind] = append(w.byKind[m.Kind], md)
		w.lanes[md] = make(chan *job, cfg.Queue)
		w.paid[md] = make(chan *job, 1024)
		w.log.Info().Str("model", m.Name).Int("kind", m.Kind).Interface("sha256", md.info.SHA256).Msg("model loaded")
	}
	if w.payments, err = w.chooseSchemes(context.Background()); err != nil {
		w.Close()
		return nil, err
	}
	if w.wallet != nil {
		w.log.Info().Strs("payment", w.payments).Str("settle_window", w.cfg.SettleWindow.String()).Msg("payment schemes offered")
	}
	for _, u := range cfg.Relays {
		w.links = append(w.links, newLink(w, u))
	}
	if w.announcement, err = w.announce(); err != nil {
		w.Close()
		return nil, err
	}
	return w, nil
}

// PubKey is the worker's public key.
func (w *Worker) PubKey() string { return w.key.PubKey }

// Provider is the execution provider every job runs on.
func (w *Worker) Provider() string { return w.rt.Provider() }

// Stats counts what the worker has done.
type Stats struct {
	Executed int64 // jobs whose model ran
	Busy     int64 // jobs answered busy
}

// Stats returns the counters.
func (w *Worker) Stats() Stats {
	return Stats{Executed: w.executed.Load(), Busy: w.busy.Load()}
}

// Close frees the models and the runtime. Call it after Run returns.
func (w *Worker) Close() error {
	var errs []error
	for _, m := range w.models {
		errs = append(errs, m.close())
	}
	if w.closeNWC != nil {
		w.closeNWC()
	}
	if w.store != nil {
		errs = append(errs, w.store.Close())
	}
	if w.rt != nil {
		errs = append(errs, w.rt.Close())
	}
	return errors.Join(errs...)
}

// Run serves until ctx ends: one goroutine per relay link and Parallel per model. It returns
// when all of them have stopped; a job in flight finishes or answers error feedback.
func (w *Worker) Run(ctx context.Context) error {
	w.limitResources()
	var wg sync.WaitGroup
	for _, l := range w.links {
		wg.Add(1)
		go func() { defer wg.Done(); l.run(ctx) }()
	}
	for m, lane := range w.lanes {
		for i := 0; i < w.cfg.Parallel; i++ {
			wg.Add(1)
			go func() { defer wg.Done(); w.serve(ctx, m, lane) }()
		}
	}
	if w.wallet != nil {
		wg.Add(1)
		go func() { defer wg.Done(); w.watchPayments(ctx) }()
	}
	wg.Add(1)
	go func() { defer wg.Done(); w.reannounce(ctx) }()
	wg.Add(1)
	go func() { defer wg.Done(); w.heartbeat(ctx) }()
	if w.cfg.governed() {
		wg.Add(1)
		go func() { defer wg.Done(); w.govern(ctx) }()
	}
	if err := w.resume(ctx); err != nil {
		w.log.Error().Err(err).Msg("resume stored jobs")
	}
	w.log.Info().Strs("relays", w.cfg.Relays).Str("provider", w.rt.Provider()).Ints("kinds", w.kinds()).Msg("worker serving")
	w.logDebts(ctx)
	wg.Wait()
	w.async.Wait()
	return nil
}

// limitResources applies --nice to every thread (the ONNX Runtime pools New started and any
// thread started later) and --max-memory as the Go heap's soft limit.
func (w *Worker) limitResources() {
	if w.cfg.Nice > 0 {
		if err := renice(w.cfg.Nice); err != nil {
			w.log.Warn().Err(err).Msg("inference runs at normal priority")
		}
	}
	if w.cfg.MaxMemory > 0 {
		debug.SetMemoryLimit(w.cfg.MaxMemory)
	}
}

func (w *Worker) kinds() []int {
	var ks []int
	for k := range w.byKind {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// announcementID is the "d" tag of the worker's NIP-89 announcement, which its heartbeats name.
const announcementID = "sparecycles-worker"

// announce builds the signed NIP-89 handler information.
func (w *Worker) announce() (nostr.Event, error) {
	info := nip89.HandlerInfo{
		Identifier: announcementID, Kinds: w.kinds(), CreatedAt: nostr.Now(),
		Metadata: nip89.Metadata{Name: w.cfg.Name, About: w.cfg.About, Worker: &nip89.Worker{
			Version: 1, Provider: w.rt.Provider(), Device: w.cfg.Device.String(), Relays: w.cfg.Relays, Payment: w.payment(),
		}},
	}
	info.Payment = slices.Clone(w.payments)
	for _, m := range w.models {
		mi := m.info
		if w.wallet == nil {
			mi.Price = nip89.Price{Unit: mi.Price.Unit} // no wallet: free
		} else if len(m.manifest.schemes) > 0 {
			mi.Payment = m.manifest.schemes
			for _, s := range mi.Payment {
				if !slices.Contains(info.Payment, s) {
					info.Payment = append(info.Payment, s)
				}
			}
		}
		info.Metadata.Worker.Models = append(info.Metadata.Worker.Models, mi)
	}
	evt, err := info.Event()
	if err != nil {
		return evt, err
	}
	return evt, w.key.Sign(&evt)
}

// currentAnnouncement is the newest signed announcement.
func (w *Worker) currentAnnouncement() nostr.Event {
	w.annMu.Lock()
	defer w.annMu.Unlock()
	return w.announcement
}

// reannounce refreshes the announcement every Reannounce and publishes it on every link, so
// clients can tell a live worker (announced within 15 minutes) from a gone one.
func (w *Worker) reannounce(ctx context.Context) {
	t := time.NewTicker(w.cfg.Reannounce)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		evt, err := w.announce()
		if err != nil {
			w.log.Error().Err(err).Msg("refresh announcement")
			continue
		}
		w.annMu.Lock()
		w.announcement = evt
		w.annMu.Unlock()
		for _, l := range w.links {
			l.publishAsync(ctx, evt)
		}
	}
}

// intake takes a request seen on link l. It runs on the link's goroutine, so it never blocks:
// a job either enters its model's queue or is answered at once.
func (w *Worker) intake(ctx context.Context, l *link, evt *nostr.Event) {
	if !nip90.IsRequestKind(evt.Kind) {
		return
	}
	first, j := w.seen.add(evt.ID, l)
	if !first {
		return // the same job from another relay, or again after a reconnect
	}
	log := w.log.With().Str("job", evt.ID).Int("kind", evt.Kind).Str("relay", l.url).Logger()
	if exp := expiration(evt); exp != 0 && exp <= nostr.Now() {
		return
	}
	req, private, err := w.parseRequest(evt)
	if err != nil {
		log.Debug().Str("err", loggable(&job{private: private}, err.Error())).Msg("malformed request")
		if addressedTo(evt, w.key.PubKey) && !errors.Is(err, errNotOurs) {
			w.feedback(ctx, &job{event: evt, seen: []*link{l}, private: private}, nip90.StatusError, "invalid request: "+err.Error())
		}
		return
	}
	if len(req.Providers) > 0 && !slices.Contains(req.Providers, w.key.PubKey) {
		return // addressed to other providers
	}
	j.req, j.event, j.private = req, evt, private
	m, err := w.route(req)
	if err != nil {
		if len(req.Providers) > 0 { // addressed to us: say why; otherwise another worker may serve it
			w.feedback(ctx, j, nip90.StatusError, strings.TrimPrefix(nip01.Reason(err), "error: "))
		}
		return
	}
	j.model = m
	select {
	case w.lanes[m] <- j:
		log.Debug().Str("model", m.manifest.Name).Msg("queued")
	default:
		if paused, _ := w.spare.gate(); paused {
			log.Debug().Msg("paused and queue full: job left to others")
			return
		}
		w.busy.Add(1)
		log.Info().Str("model", m.manifest.Name).Msg("queue full, answering busy")
		w.feedback(ctx, j, nip90.StatusError, "busy: queue full, try again shortly")
	}
}

// route picks the model for a request.
func (w *Worker) route(req *nip90.JobRequest) (*model, error) {
	ms := w.byKind[req.Kind]
	if len(ms) == 0 {
		return nil, reject("kind %d is not served by this worker (serves %v)", req.Kind, w.kinds())
	}
	if req.Kind != tensor.KindRequest {
		return ms[0], nil
	}
	name, ok := req.Param(tensor.ParamModel)
	if !ok {
		return nil, reject(`a kind %d job needs ["param", "model", <sha256 or name>]`, req.Kind)
	}
	for _, m := range ms {
		if m.matches(name) {
			return m, nil
		}
	}
	return nil, reject("unknown model %q", name)
}

// serve runs the jobs of one model, one at a time, until ctx ends.
func (w *Worker) serve(ctx context.Context, m *model, lane chan *job) {
	paid := w.paid[m]
	for {
		select { // paid work first
		case j := <-paid:
			w.running.Add(1)
			w.runPaid(ctx, j)
			w.running.Add(-1)
			continue
		default:
		}
		// while paused for the owner, new jobs wait in the queue (paid ones still run)
		in, wake := lane, (<-chan struct{})(nil)
		if paused, resumed := w.spare.gate(); paused {
			in, wake = nil, resumed
		}
		select {
		case <-ctx.Done():
			return
		case <-wake:
		case j := <-paid:
			w.running.Add(1)
			w.runPaid(ctx, j)
			w.running.Add(-1)
		case j := <-in:
			w.running.Add(1)
			if w.stillOpen(ctx, j) {
				w.handle(ctx, j)
			}
			w.running.Add(-1)
		}
	}
}

// handle takes a new job from the queue: free jobs are claimed, run and delivered at once;
// priced jobs are quoted (pay first) or run and delivered with an invoice (pay after).
func (w *Worker) handle(ctx context.Context, j *job) {
	log := w.log.With().Str("job", j.event.ID).Int("kind", j.event.Kind).Str("model", j.model.manifest.Name).Logger()
	if _, err := w.store.get(ctx, j.event.ID); err == nil {
		return // known from before a restart: resume handles it
	}
	if w.streamed(ctx, j, log) {
		return // several inputs: served part by part (stream.go)
	}
	t0 := time.Now()
	prepCtx := ctx
	var ahead *claimAhead
	if w.freeUpFront(j) {
		// the claim goes out now, beside the fetch; the model runs once it holds
		var stop context.CancelCauseFunc
		prepCtx, stop = context.WithCancelCause(ctx)
		defer stop(nil)
		ahead = w.claimAhead(ctx, j, log, stop)
	}
	run, units, err := j.model.prepare(prepCtx, j.req)
	if ahead != nil {
		if _, _, cerr := ahead.wait(); cerr != nil {
			w.notClaimed(ctx, j, log, w.schemes[schemeFree], cerr) // someone else's job: no error feedback
			return
		}
	}
	if err != nil {
		w.fail(ctx, j, log, err) // from the lease holder it also releases the lease
		return
	}
	if ahead != nil {
		if paused, _ := w.spare.gate(); paused {
			// claimed already: error feedback from the holder hands the job to others
			w.fail(ctx, j, log, reject("paused by owner"))
			return
		}
	} else if w.deferWhilePaused(j) {
		return // paused while fetching the input: neither quote nor claim
	}
	price := j.model.price(units)
	s := w.schemes[schemeFree]
	if w.wallet != nil && price > 0 {
		if j.req.BidMsat > 0 && j.req.BidMsat < price {
			w.fail(ctx, j, log, reject("bid %d msat is below the price of %d msat", j.req.BidMsat, price))
			return
		}
		if s, err = w.pick(j); err != nil {
			w.fail(ctx, j, log, err)
			return
		}
	}
	j.setScheme(s)
	if err := s.quote(ctx, j, log, quote{price: price, run: run, t0: t0, claim: ahead}); err != nil {
		w.fail(ctx, j, log, err)
	}
}

// runPaid runs a job whose invoice has settled or whose payment is held (it was recorded paid
// before it was queued), or a post-pay job whose offer its customer accepted.
func (w *Worker) runPaid(ctx context.Context, j *job) {
	log := w.log.With().Str("job", j.event.ID).Int("kind", j.event.Kind).Str("model", j.model.manifest.Name).Logger()
	if !j.deadline.IsZero() && time.Now().After(j.deadline) {
		w.fail(ctx, j, log, reject("the job could not start within the settle window"))
		return
	}
	t0 := time.Now()
	run, units, err := j.model.prepare(ctx, j.req)
	if err != nil {
		w.fail(ctx, j, log, err) // paid but the input is gone: the customer hears why
		return
	}
	j.mu.Lock()
	postPrice := j.postPrice
	j.mu.Unlock()
	if postPrice != nil && j.model.price(units) != *postPrice {
		// the input changed since the offer: the invoice must be what was offered
		w.fail(ctx, j, log, reject("the input changed since the offer of %d msat; post the job again", *postPrice))
		return
	}
	w.claimRunDeliver(ctx, j, log, run, t0, true, nil)
}

// claimRunDeliver claims the job, runs it, lets its scheme shape the result (plain, with an
// invoice, sealed), publishes it and lets the scheme settle. chosen is for a job the customer
// chose this worker for (paid, accepted or addressed to it alone): someone else's result does
// not stop it.
func (w *Worker) claimRunDeliver(ctx context.Context, j *job, log zerolog.Logger, run func(context.Context) (string, error), t0 time.Time, chosen bool, ahead *claimAhead) {
	pay := w.jobScheme(j)
	var (
		home      *link
		claimed   bool
		err       error
		claimTook time.Duration
	)
	if ahead != nil { // sent when the job was taken (handle): its outcome is known by now
		home, claimed, err = ahead.wait()
		claimTook = ahead.took
	} else {
		tc := time.Now()
		home, claimed, err = w.claimRetrying(ctx, j, chosen, log)
		claimTook = time.Since(tc)
	}
	if err != nil {
		w.notClaimed(ctx, j, log, pay, err)
		return
	}
	// from here on the job is ours: it ends in a result or in error feedback
	runCtx, cancelRun := context.WithCancelCause(ctx)
	stopRenew := func() { cancelRun(nil) }
	defer stopRenew()
	if !w.isPaid(ctx, j) { // the owner's pause may hand it back; a paid job runs on
		defer w.spare.track(j, cancelRun)()
	}
	if !j.deadline.IsZero() {
		var stop context.CancelFunc
		runCtx, stop = context.WithDeadline(runCtx, j.deadline)
		defer stop()
	}
	if claimed {
		go w.renew(runCtx, j, home)
	}
	w.store.advance(ctx, j.event.ID, StatePaid, StateRunning)
	w.executed.Add(1)
	t1 := time.Now()
	content, err := run(runCtx)
	t2 := time.Now()
	if err == nil && !j.deadline.IsZero() && time.Now().After(j.deadline) {
		err = reject("the job did not finish within the settle window")
	}
	if err != nil {
		switch {
		case ctx.Err() == nil && errors.Is(context.Cause(runCtx), errPausedByOwner):
			err = reject("paused by owner") // error feedback from the holder releases the lease
		case ctx.Err() == nil && errors.Is(runCtx.Err(), context.DeadlineExceeded):
			err = reject("the job did not finish within the settle window")
		}
		w.fail(ctx, j, log, err)
		return
	}
	stopRenew()
	res := w.result(j, home, content)
	if !pay.seal(ctx, j, log, home, &res) {
		return
	}
	d, err := w.deliver(ctx, j, home, res)
	if err != nil {
		w.fail(ctx, j, log, err)
		return
	}
	if len(d.accepted) == 0 {
		w.undeliverable(ctx, j, log, d.missed)
		return
	}
	if !pay.settle(ctx, j, log, home, d) {
		return
	}
	if len(d.missed) > 0 {
		w.partlyDelivered(ctx, j, log, d)
	}
	// prepare (fetch, decode, claim: a free job's claim runs beside the fetch) and run (the
	// model, delivery) add up to the job's time; claim, infer and deliver break them down
	log.Info().Str("prepare", logging.FineDur(t1.Sub(t0))).Str("run", logging.FineDur(since(t1))).
		Str("claim", logging.FineDur(claimTook)).Str("infer", logging.FineDur(t2.Sub(t1))).Str("deliver", logging.FineDur(since(t2))).
		Strs("delivered", urls(d.accepted)).Msg("job done")
}

// freeUpFront reports whether j is free whatever its input turns out to be (no wallet, or a
// model priced at 0) and the owner has not paused the worker: its claim can go out before the
// input is fetched.
func (w *Worker) freeUpFront(j *job) bool {
	p := j.model.manifest.Price
	if w.wallet != nil && (p.BaseMsat != 0 || p.PerUnitMsat != 0) {
		return false
	}
	paused, _ := w.spare.gate()
	return !paused
}

// notClaimed ends a job whose claim failed: a paid job is ours, so the customer hears so and
// its scheme refunds it or records the debt (while shutting down it stays paid and resumes on
// restart); a job another worker leased is looked at again when that lease lapses.
func (w *Worker) notClaimed(ctx context.Context, j *job, log zerolog.Logger, pay scheme, err error) {
	if ctx.Err() == nil && pay.refund(ctx, j, log, err.Error()) {
		return
	}
	log.Info().Err(err).Msg("not running job")
	var held *leaseHeld
	if errors.As(err, &held) {
		w.retryAfterLease(ctx, j, *held)
	}
}

// errClaimFailed stops fetching the input of a job whose claim, sent beside the fetch, failed.
var errClaimFailed = errors.New("claim failed")

// claimAhead is a free job's claim sent as the job is taken, so that its round trip to the
// relay (a synced write there) runs beside fetching and decoding the input instead of after
// it. The model runs only once the claim holds, as before; a claim that fails stops the
// fetch (stop) and leaves the job to the worker holding it.
type claimAhead struct {
	done    chan struct{}
	home    *link
	claimed bool
	err     error
	took    time.Duration
}

func (w *Worker) claimAhead(ctx context.Context, j *job, log zerolog.Logger, stop context.CancelCauseFunc) *claimAhead {
	a := &claimAhead{done: make(chan struct{})}
	go func() {
		defer close(a.done)
		t := time.Now()
		a.home, a.claimed, a.err = w.claimRetrying(ctx, j, false, log)
		a.took = time.Since(t)
		if a.err != nil {
			stop(errClaimFailed)
		}
	}()
	return a
}

// wait returns the claim's outcome (bounded: see claimRetrying).
func (a *claimAhead) wait() (*link, bool, error) {
	<-a.done
	return a.home, a.claimed, a.err
}

// fail answers error feedback: a rejection's reason, or "internal error" for the rest (logged).
func (w *Worker) fail(ctx context.Context, j *job, log zerolog.Logger, err error) {
	reason := nip01.Reason(err)
	if ctx.Err() != nil {
		if st, serr := w.store.get(context.WithoutCancel(ctx), j.event.ID); serr == nil && (st.State == StatePaid || st.State == StateRunning) {
			log.Info().Msg("shutting down: the paid job resumes on restart")
			return // paid: it is not failed, it waits in the store
		}
		reason = "error: worker shutting down, job not run"
	} else if w.jobScheme(j).refund(ctx, j, log, strings.TrimPrefix(reason, "error: ")) {
		if reason == "error: internal" {
			log.Error().Str("err", loggable(j, err.Error())).Msg("paid job failed")
		}
		return
	}
	if reason == "error: internal" {
		log.Error().Str("err", loggable(j, err.Error())).Msg("job failed")
	} else {
		log.Info().Str("reason", loggable(j, reason)).Msg("job refused")
	}
	// feedback goes out even when ctx has ended: the customer must hear why
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	w.feedback(fctx, j, nip90.StatusError, strings.TrimPrefix(reason, "error: "))
}

// claimRetrying is claim, tried again after 2, 4, ... 32 s while the claim did not reach the
// home relay or the relay answered with trouble of its own ("error: relay is shutting down"):
// the relay may be restarting, and giving up would drop a job the worker has in hand (a paid
// one would become a debt). Each try waits at most 10 s for the relay's OK (and 30 s for a
// resumed job's relays to connect).
func (w *Worker) claimRetrying(ctx context.Context, j *job, chosen bool, log zerolog.Logger) (home *link, claimed bool, err error) {
	home, claimed, err = w.claim(ctx, j, chosen)
	var unsent *claimUnsent
	for wait := 2 * time.Second; errors.As(err, &unsent) && wait <= 32*time.Second; wait *= 2 {
		log.Warn().Err(err).Str("retry_in", logging.Dur(wait)).Msg("claim not sent, trying again")
		select {
		case <-ctx.Done():
			return home, claimed, err
		case <-time.After(wait):
		}
		home, claimed, err = w.claim(ctx, j, chosen)
	}
	return home, claimed, err
}

// claim takes the job: a lease on its home relay when one coordinates leases, else plain
// processing feedback after checking that nobody has delivered it yet (unless the customer
// chose this worker: a stranger's result, fake or not, is not what it asked for). It returns
// the home relay (nil without one) and whether a lease is held.
func (w *Worker) claim(ctx context.Context, j *job, chosen bool) (*link, bool, error) {
	home := w.home(j)
	if home == nil {
		// a job resumed at start may come before its relays have connected: whether one of
		// them coordinates leases is known only then (bounded: a relay that stays down is
		// treated as plain NIP-90)
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		for _, l := range j.relays() {
			l.awaitUp(wctx)
		}
		cancel()
		home = w.home(j)
	}
	if home == nil {
		if !chosen && w.delivered(ctx, j) {
			return nil, false, errors.New("already has a result")
		}
		w.feedback(ctx, j, nip90.StatusProcessing, "")
		return nil, false, nil
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ok, err := home.publish(cctx, w.processing(j, true))
	switch {
	case err != nil:
		return nil, false, &claimUnsent{relay: home.url, err: err}
	case !ok.Accepted:
		if h, err := lease.ParseRefusal(ok.Reason); err == nil {
			return nil, false, &leaseHeld{Held: h, relay: home.url}
		}
		if strings.HasPrefix(ok.Reason, nip01.PrefixError+":") { // the relay's own trouble, not a refusal
			return nil, false, &claimUnsent{relay: home.url, err: fmt.Errorf("relay answered %q", ok.Reason)}
		}
		return nil, false, fmt.Errorf("claim refused by %s: %s", home.url, ok.Reason)
	}
	// tell the other relays too: plain NIP-90, or a claim where a relay coordinates leases as
	// well, since such a relay takes a quoted job's result only from a pubkey that claimed it
	// there (best effort: the home relay's lease is the one that counts)
	for _, l := range w.targets(j) {
		if l != home {
			l.publishAsync(ctx, w.processing(j, l.leases()))
		}
	}
	return home, true, nil
}

// claimUnsent is a claim the home relay never answered (not connected, timed out) or answered
// with an "error:" of its own (shutting down, a write that failed).
type claimUnsent struct {
	relay string
	err   error
}

func (e *claimUnsent) Error() string { return fmt.Sprintf("claim on %s: %v", e.relay, e.err) }
func (e *claimUnsent) Unwrap() error { return e.err }

// isPaid reports whether the job store holds j as paid (prepaid and not yet run).
func (w *Worker) isPaid(ctx context.Context, j *job) bool {
	st, err := w.store.get(ctx, j.event.ID)
	return err == nil && st.State == StatePaid
}

// leaseHeld is a claim refused because another worker holds the job's lease.
type leaseHeld struct {
	lease.Held
	relay string
}

func (e *leaseHeld) Error() string {
	return fmt.Sprintf("claim refused by %s: leased by %s until %d", e.relay, e.Holder, e.Until)
}

// maxLeaseRetries bounds how often a worker comes back for a job another worker leased.
const maxLeaseRetries = 3

// retryAfterLease looks at a job again when another worker's lease on it ends: if that worker
// died, the lease lapses without a result and this worker takes the job. When the lease's
// holder is known, its relay's link watches for it handing the job back (its error feedback
// releases the lease: handback.go), and the job is looked at again then, without waiting for
// the lease's end. Paid jobs are not retried this way: they are ours already.
func (w *Worker) retryAfterLease(ctx context.Context, j *job, held leaseHeld) {
	j.mu.Lock()
	j.retries++
	n := j.retries
	j.mu.Unlock()
	if n > maxLeaseRetries {
		return
	}
	wait := time.Until(time.Unix(int64(held.Until)+1, 0))
	back, stopWatch := (<-chan struct{})(nil), func() {}
	for _, l := range w.links {
		if l.url == held.relay {
			back, stopWatch = l.handbacks.watch(j.event.ID, held.Holder, nostr.Now())
		}
	}
	w.async.Add(1)
	go func() {
		defer w.async.Done()
		defer stopWatch()
		why := "lease lapsed without a result: trying again"
		select {
		case <-ctx.Done():
			return
		case <-time.After(max(wait, 0)):
		case <-back:
			why = "lease holder handed the job back: trying again"
		}
		if w.delivered(ctx, j) {
			return
		}
		select {
		case w.lanes[j.model] <- j:
			w.log.Info().Str("job", j.event.ID).Msg(why)
		default: // busy: another worker will take it
		}
	}()
}

// home is the job's home relay: the first relay that coordinates leases, in the order of the
// request's relays tag, then the order the job was seen in.
func (w *Worker) home(j *job) *link {
	for _, u := range j.req.Relays {
		for _, l := range w.links {
			if sameRelay(l.url, u) && l.leases() {
				return l
			}
		}
	}
	for _, l := range j.relays() {
		if l.leases() {
			return l
		}
	}
	return nil
}

// renew keeps the lease while the job runs.
func (w *Worker) renew(ctx context.Context, j *job, home *link) {
	t := time.NewTicker(w.cfg.Lease / 2)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if ok, err := home.publish(ctx, w.processing(j, true)); err != nil || !ok.Accepted {
				w.log.Warn().Str("job", j.event.ID).Err(err).Str("reason", ok.Reason).Msg("lease renewal failed")
			}
		}
	}
}

// delivered asks the relays that carry the job whether a result exists already.
func (w *Worker) delivered(ctx context.Context, j *job) bool {
	f := nostr.Filter{Kinds: []int{nip90.ResultKind(j.event.Kind)}, Tags: nostr.TagMap{"e": {j.event.ID}}, Limit: 1}
	for _, l := range j.relays() {
		if evs, err := l.query(ctx, f); err == nil && len(evs) > 0 {
			return true
		}
	}
	return false
}

// result builds the unsigned result event for content.
func (w *Worker) result(j *job, home *link, content string) nip90.JobResult {
	res := nip90.JobResult{
		Kind: nip90.ResultKind(j.event.Kind), CreatedAt: nostr.Now(), Request: j.event.String(),
		JobID: j.event.ID, Customer: j.event.PubKey, Inputs: copiedInputs(j.req.Inputs), Content: content,
		Extra: nostr.Tags{{"provider", w.rt.Provider()}},
	}
	if home != nil {
		res.JobRelay = home.url
	}
	return res
}

// maxCopiedInputs bounds the "i" tags a result repeats from its request, in bytes of values.
const maxCopiedInputs = 4096

// copiedInputs returns the inputs a result repeats: all of them when they are small (URLs,
// event ids), none otherwise. NIP-90 makes every tag optional, and the "request" tag carries
// the whole request, inputs included, verbatim: a second copy of an inline input (a data:
// URL, a tensor document) would only double the result's size against relay limits.
func copiedInputs(ins []nip90.Input) []nip90.Input {
	n := 0
	for _, in := range ins {
		n += len(in.Value) + len(in.Type) + len(in.Relay) + len(in.Marker)
	}
	if n > maxCopiedInputs {
		return nil
	}
	return ins
}

// delivery is where a result went.
type delivery struct {
	accepted []*link // relays that stored it
	missed   []miss  // relays that did not, each with why
}

// miss is a relay that did not store a result.
type miss struct {
	relay  *link
	reason string // for the customer: the advertised limit, the relay's own refusal, or no answer
}

// resultRelays are the relays a result goes to: the home relay first (it ends the lease),
// then the others.
func (w *Worker) resultRelays(j *job, home *link) []*link {
	out := w.targets(j)
	if home != nil {
		out = slices.DeleteFunc(out, func(l *link) bool { return l == home })
		out = slices.Insert(out, 0, home)
	}
	return out
}

// deliver signs the result and publishes it to every relay the job's events go to, home
// first. A relay whose NIP-11 limits the result exceeds is not sent it: it would refuse it,
// or drop the connection over a message larger than it reads. Each relay that stores the
// result counts, whatever the others did; the error is only for a result it cannot sign.
func (w *Worker) deliver(ctx context.Context, j *job, home *link, res nip90.JobResult) (delivery, error) {
	// a finished job is delivered even while shutting down, within a bound
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	evt := res.Event()
	if err := w.signFor(j, &evt); err != nil {
		return delivery{}, fmt.Errorf("sign result: %w", err)
	}
	var d delivery
	for _, l := range w.resultRelays(j, home) {
		if err := l.limits().check(&evt, l.url); err != nil {
			d.missed = append(d.missed, miss{l, err.Error()})
			continue
		}
		ok, err := l.publish(ctx, evt)
		switch {
		case err != nil:
			w.log.Warn().Err(err).Str("job", j.event.ID).Str("relay", l.url).Msg("result not confirmed")
			d.missed = append(d.missed, miss{l, fmt.Sprintf("relay %s did not confirm the result", l.url)})
		case !ok.Accepted:
			d.missed = append(d.missed, miss{l, fmt.Sprintf("relay %s refused the result: %s", l.url, clip(ok.Reason, 200))})
		default:
			d.accepted = append(d.accepted, l)
		}
	}
	return d, nil
}

// fitsNowhere reports, before an invoice is made for it, a result that exceeds the advertised
// limits of every relay it would go to: why for each, or nil when it fits one (or a relay
// advertises nothing, so only publishing will tell).
func (w *Worker) fitsNowhere(j *job, home *link, res nip90.JobResult) []miss {
	evt := res.Event()
	if err := w.signFor(j, &evt); err != nil {
		return nil // deliver will say so
	}
	var missed []miss
	for _, l := range w.resultRelays(j, home) {
		err := l.limits().check(&evt, l.url)
		if err == nil {
			return nil
		}
		missed = append(missed, miss{l, err.Error()})
	}
	return missed
}

// undeliverable ends a job whose result no relay stored: error feedback on every relay that
// carries the job, saying why (from the lease holder it also releases the lease on a relay
// that coordinates leases, so the job does not sit leased until it lapses), and the store
// marks it so a restart does not run it again and nobody owes for it.
func (w *Worker) undeliverable(ctx context.Context, j *job, log zerolog.Logger, missed []miss) {
	reasons := make([]string, len(missed))
	for i, m := range missed {
		reasons[i] = m.reason
	}
	info := strings.Join(reasons, "; ")
	if len(missed) == 0 {
		info = "the result went to no relay: the job names none this worker serves"
	}
	// the job is over even when ctx has ended: record it and tell the customer, within a bound
	if w.jobScheme(j).refund(ctx, j, log, "no relay took the result: "+info) {
		return
	}
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	st, err := w.store.markUndeliverable(fctx, j.event.ID)
	switch {
	case errors.Is(err, errNoJob): // free: nothing stored, nothing paid
	case err != nil:
		log.Error().Err(err).Msg("record undeliverable job")
	default:
		info += paymentNote(st)
	}
	log.Warn().Strs("reasons", reasons).Int64("msat", st.AmountMsat).Msg("result not delivered")
	w.feedback(fctx, j, nip90.StatusError, info)
}

// paymentNote is what error feedback for an undelivered result says about money, from the
// job's stored state before it was marked undeliverable. (A paid job is owed instead: see owe.)
func paymentNote(st storedJob) string {
	if st.State == StateUnpaid {
		return "; its invoice was never delivered and nothing is owed"
	}
	return ""
}

// owe ends a paid job that will not be delivered (its claim was refused, it failed, or no
// relay took its result): it records the debt in the job store (state owed, with the amount
// and reason) and tells the customer in error feedback that it paid, was not delivered, and is
// owed the amount. It reports false, doing nothing, for a job that was not paid.
func (w *Worker) owe(ctx context.Context, j *job, log zerolog.Logger, reason string) bool {
	// the job is over even when ctx has ended: record it and tell the customer, within a bound
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	st, owed, err := w.store.owe(fctx, j.event.ID, reason)
	if err != nil {
		log.Error().Err(err).Msg("record debt")
	}
	if !owed {
		return false
	}
	log.Warn().Str("customer", st.Customer).Int64("owed_msat", st.AmountMsat).Str("reason", loggable(j, reason)).Msg("paid job not delivered: debt recorded")
	w.feedback(fctx, j, nip90.StatusError, owedInfo(reason, st.AmountMsat))
	return true
}

// owedInfo is the error feedback a customer gets for a paid job that was not delivered.
func owedInfo(reason string, msat int64) string {
	return fmt.Sprintf("paid job not delivered: %s; %s msat owed to you, recorded by the worker", clip(reason, 500), thousands(msat))
}

// logDebts reports at start what the worker owes customers, so an operator sees it.
func (w *Worker) logDebts(ctx context.Context) {
	debts, err := w.store.debts(ctx)
	if err != nil {
		w.log.Error().Err(err).Msg("read debts")
		return
	}
	var total int64
	for _, d := range debts {
		total += d.AmountMsat
	}
	if len(debts) > 0 {
		w.log.Warn().Int("jobs", len(debts)).Int64("owed_msat", total).Msg("paid jobs not delivered: this worker owes their customers (state owed in the job store, table debts)")
	}
}

// Debts lists what this worker owes customers for paid jobs it did not deliver, oldest first.
func (w *Worker) Debts(ctx context.Context) ([]Debt, error) { return w.store.debts(ctx) }

// partlyDelivered tells each relay that did not store the result why, and where the result
// is: a customer reading only that relay would otherwise wait for nothing. On the home relay
// this error feedback also releases the lease.
func (w *Worker) partlyDelivered(ctx context.Context, j *job, log zerolog.Logger, d delivery) {
	where := strings.Join(urls(d.accepted), ", ")
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	for _, m := range d.missed {
		log.Warn().Str("relay", m.relay.url).Str("reason", m.reason).Msg("result not stored on one relay")
		fb := nip90.JobFeedback{CreatedAt: nostr.Now(), JobID: j.event.ID, Customer: j.event.PubKey, Status: nip90.StatusError,
			Info: m.reason + "; the result is on " + where}
		w.publishFeedback(fctx, j, fb, m.relay)
	}
}

// clip shortens a relay's text to n bytes: it goes into our feedback, and a relay's reason
// may be long.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// targets are the relays a job's events go to: where it was seen, and the connected relays
// its relays tag names.
func (w *Worker) targets(j *job) []*link {
	out := j.relays()
	if j.req != nil {
		for _, u := range j.req.Relays {
			for _, l := range w.links {
				if sameRelay(l.url, u) && !slices.Contains(out, l) {
					out = append(out, l)
				}
			}
		}
	}
	return out
}

func (w *Worker) processing(j *job, lease bool) nostr.Event {
	fb := nip90.JobFeedback{
		CreatedAt: nostr.Now(), JobID: j.event.ID, Customer: j.event.PubKey, Status: nip90.StatusProcessing,
		Extra: nostr.Tags{{"provider", w.rt.Provider()}},
	}
	if lease {
		fb.Extra = append(fb.Extra, leaseTag(w.cfg.Lease))
	}
	evt := fb.Event()
	_ = w.signFor(j, &evt)
	return evt
}

// feedback publishes status feedback to every relay carrying the job, without waiting.
func (w *Worker) feedback(ctx context.Context, j *job, status nip90.Status, info string) {
	w.publishFeedback(ctx, j, nip90.JobFeedback{CreatedAt: nostr.Now(), JobID: j.event.ID, Customer: j.event.PubKey, Status: status, Info: info})
}

// publishFeedback signs fb and publishes it, without waiting, to the relays given, or to
// every relay carrying the job when none are.
func (w *Worker) publishFeedback(ctx context.Context, j *job, fb nip90.JobFeedback, to ...*link) {
	evt := fb.Event()
	if err := w.signFor(j, &evt); err != nil {
		return
	}
	if len(to) == 0 {
		to = w.targets(j)
	}
	for _, l := range to {
		l.publishAsync(ctx, evt)
	}
}

func expiration(evt *nostr.Event) nostr.Timestamp {
	if t := evt.Tags.Find("expiration"); len(t) >= 2 {
		var v int64
		if _, err := fmt.Sscan(t[1], &v); err == nil {
			return nostr.Timestamp(v)
		}
	}
	return 0
}

func addressedTo(evt *nostr.Event, pubkey string) bool {
	for _, t := range evt.Tags {
		if len(t) >= 2 && t[0] == "p" && t[1] == pubkey {
			return true
		}
	}
	return false
}

func sameRelay(a, b string) bool { return nostr.NormalizeURL(a) == nostr.NormalizeURL(b) }

// Run builds a worker from cfg and serves until ctx ends.
func Run(ctx context.Context, cfg Config, log zerolog.Logger) error {
	w, err := New(cfg, log)
	if err != nil {
		return err
	}
	defer w.Close()
	return w.Run(ctx)
}
