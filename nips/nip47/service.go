package nip47

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nbd-wtf/go-nostr"
)

// Limits of a Service.
const (
	// MaxHandling is how many requests Handle runs at once; more are answered RATE_LIMITED.
	// Requests for Service.SlowMethods have their own bounds instead.
	MaxHandling = 16
	// MaxSlow is how many requests for Service.SlowMethods Handle runs at once (a pay_invoice
	// of a hold invoice waits, for hours maybe, until the invoice settles); more are answered
	// RATE_LIMITED.
	MaxSlow = 256
	// MaxSlowPerClient is how many of the MaxSlow one client may occupy: one connection
	// cannot hold them all.
	MaxSlowPerClient = 32
	// maxPending bounds the goroutines of a Serve: requests beyond it are dropped unanswered
	// (and reported to OnError), since even answering costs a publish.
	maxPending = 4 * MaxHandling
	// seenWindow is how long the in-memory Seen remembers a request id, and so how old a
	// request may be when Seen is nil.
	seenWindow = 10 * time.Minute
	// answerGrace lets an answer to a handled request go out after Serve's ctx ended: a
	// payment that was made should be reported.
	answerGrace = 5 * time.Second
	// FutureSkew is how far ahead of the service's clock a request may be dated when
	// Service.MaxAge is set.
	FutureSkew = 10 * time.Minute
	// sinceSlack is how far back Serve's subscription reaches, for requests sent while it
	// was (re)starting.
	sinceSlack = 60 * time.Second
)

// Connection is one NWC client a Service knows.
type Connection struct {
	ClientPubKey string
	Name         string
}

// Service serves NIP-47 for a wallet key over a Transport. Set the fields, then call Serve.
type Service struct {
	WalletKey Secret
	Transport Transport
	// Methods are advertised and accepted; requests for others are answered NOT_IMPLEMENTED.
	Methods []string
	// SlowMethods are methods whose Handle may wait a long time, such as pay_invoice, which
	// a hold invoice holds until it is settled or cancelled. They run outside the MaxHandling
	// pool and the pending requests, at most MaxSlow at once and MaxSlowPerClient per client,
	// so that held payments cannot starve other requests. Their answer goes out whenever
	// Handle returns, even after the request's NIP-40 expiration: a payment made is reported.
	SlowMethods []string
	// Notifications are the notification types advertised and sent by Notify.
	Notifications []string
	// Encryptions are advertised and accepted: none means both EncryptionNIP44 and
	// EncryptionNIP04. A request in another is answered UNSUPPORTED_ENCRYPTION.
	Encryptions []string
	// Lookup returns the connection for a client pubkey; ok=false → the request is answered
	// UNAUTHORIZED.
	Lookup func(ctx context.Context, clientPubKey string) (c Connection, ok bool, err error)
	// Handle runs one request. Return *Error for client-visible failures; any other error is
	// answered INTERNAL (and passed to OnError), unless Serve's ctx has ended meanwhile: then
	// the request stays unanswered, since its outcome is unknown.
	Handle func(ctx context.Context, c Connection, method string, params json.RawMessage) (result any, err error)
	// Seen records a request event id and reports whether it is new; a repeated id is not
	// handled again (the stored response is not required: answer OTHER "duplicate request").
	// nil = in-memory only, for 10 minutes, and older requests are dropped.
	Seen func(ctx context.Context, requestID string) (first bool, err error)
	// MaxAge, when set, drops requests created more than MaxAge ago, and also requests dated
	// more than FutureSkew ahead, unanswered: with it, a Seen that forgets ids recorded more
	// than MaxAge+FutureSkew ago cannot be fooled by a replay of an old request.
	MaxAge time.Duration
	// OnError, optional, receives internal errors for the caller's log: Lookup, Seen and
	// Handle failures, answers that could not be published, requests dropped under load.
	OnError func(err error)
	// OnReady, optional, is called once the service listens for requests and has published its
	// info event: requests sent after it are answered.
	OnReady func()

	now    func() time.Time                      // nil = time.Now; tests move it
	onDrop func(evt *nostr.Event, reason string) // tests: a request dropped unanswered
}

func (s *Service) clock() time.Time {
	if s.now != nil {
		return s.now()
	}
	return time.Now()
}

func (s *Service) report(err error) {
	if s.OnError != nil {
		s.OnError(err)
	}
}

func (s *Service) encryptions() []string {
	if len(s.Encryptions) == 0 {
		return []string{EncryptionNIP44, EncryptionNIP04}
	}
	return s.Encryptions
}

// walletKey returns the wallet's secret key, checked.
func (s *Service) walletKey() (string, error) {
	if why := validKey(s.WalletKey.Hex()); why != "" {
		return "", fmt.Errorf("nip47: wallet key %s", why)
	}
	return s.WalletKey.Hex(), nil
}

// Info is what the Service advertises.
func (s *Service) Info() Info {
	methods := slices.Clone(s.Methods)
	if len(s.Notifications) > 0 && !slices.Contains(methods, "notifications") {
		methods = append(methods, "notifications")
	}
	return Info{Methods: methods, Encryptions: s.encryptions(), Notifications: slices.Clone(s.Notifications)}
}

// InfoEvent returns the signed kind 13194 event advertising the Service: the methods as
// content, ["encryption", "nip44_v2 nip04"] and ["notifications", ...].
func (s *Service) InfoEvent() (nostr.Event, error) {
	sk, err := s.walletKey()
	if err != nil {
		return nostr.Event{}, err
	}
	for _, e := range s.encryptions() {
		if e != EncryptionNIP44 && e != EncryptionNIP04 {
			return nostr.Event{}, fmt.Errorf("%w %q in Service.Encryptions", errUnknownEnc, e)
		}
	}
	evt := s.Info().Event()
	evt.CreatedAt = nostr.Timestamp(s.clock().Unix())
	if err := sign(&evt, sk); err != nil {
		return nostr.Event{}, err
	}
	return evt, nil
}

// Serve subscribes to requests for the wallet (kind 23194, #p wallet, since a minute ago),
// then publishes the info event, and handles each request in its own goroutine, at most
// MaxHandling at once, answering in the request's encryption. When ctx ends, requests being
// handled are still answered, within a few seconds' grace. It returns nil when ctx has ended
// and its goroutines have exited, or an error when the info event cannot be published or the
// Transport ends the subscription early. Call it once at a time.
func (s *Service) Serve(ctx context.Context) error {
	switch {
	case s.Transport == nil:
		return errors.New("nip47: Service has no Transport")
	case s.Lookup == nil:
		return errors.New("nip47: Service has no Lookup")
	case s.Handle == nil:
		return errors.New("nip47: Service has no Handle")
	}
	info, err := s.InfoEvent()
	if err != nil {
		return err
	}
	sv := &server{
		Service:  s,
		sk:       s.WalletKey.Hex(),
		pk:       info.PubKey,
		pending:  make(chan struct{}, maxPending),
		handling: make(chan struct{}, MaxHandling),
		inFlight: map[string]*nostr.Event{},
		slowOf:   map[string]int{},
	}
	if s.Seen == nil {
		sv.mem = &memorySeen{ids: map[string]nostr.Timestamp{}}
	}

	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	since := nostr.Timestamp(s.clock().Add(-sinceSlack).Unix())
	events, err := s.Transport.Subscribe(sctx, nostr.Filter{
		Kinds: []int{KindRequest}, Tags: nostr.TagMap{"p": []string{sv.pk}}, Since: &since,
	})
	if err != nil {
		return fmt.Errorf("nip47: subscribe to requests: %w", err)
	}
	// advertise only once listening: a client that reads the info event may send at once
	if err := s.Transport.Publish(ctx, info); err != nil {
		return fmt.Errorf("nip47: publish info event: %w", err)
	}
	if s.OnReady != nil {
		s.OnReady()
	}

	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		var evt *nostr.Event
		select {
		case e, open := <-events:
			if !open {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("nip47: request %w", ErrSubscriptionEnded)
			}
			evt = e
		case <-ctx.Done():
			return nil
		}
		if evt == nil {
			continue
		}
		if reason := sv.screen(evt); reason != "" {
			sv.drop(evt, reason)
			continue
		}
		select {
		case sv.pending <- struct{}{}:
		default:
			sv.finish(evt.ID) // a copy that came meanwhile is dropped with it
			s.report(fmt.Errorf("nip47: request %s from %s dropped: %d requests pending", evt.ID, evt.PubKey, maxPending))
			sv.drop(evt, "overloaded")
			continue
		}
		wg.Go(func() {
			unpend := sync.OnceFunc(func() { <-sv.pending })
			defer unpend()
			sv.serve(ctx, evt, unpend)
			if again := sv.finish(evt.ID); again != nil {
				sv.serve(ctx, again, func() {}) // seen already: answered as a duplicate
			}
		})
	}
}

// server is the state of one Serve call.
type server struct {
	*Service
	sk, pk   string
	pending  chan struct{} // one per request goroutine, but for those of SlowMethods in Handle
	handling chan struct{} // one per running Handle, but for SlowMethods
	mem      *memorySeen   // when Seen is nil

	slowMu sync.Mutex
	slow   int            // Handles of SlowMethods running
	slowOf map[string]int // the same by client pubkey

	mu       sync.Mutex
	inFlight map[string]*nostr.Event // request ids being served, each with a copy that came meanwhile
}

func (sv *server) drop(evt *nostr.Event, reason string) {
	if sv.onDrop != nil {
		sv.onDrop(evt, reason)
	}
}

// screen returns why evt is dropped at once, or "" to serve it (then marked in flight). It
// runs in Serve's loop, so it does no I/O.
func (sv *server) screen(evt *nostr.Event) string {
	now := nostr.Timestamp(sv.clock().Unix())
	switch {
	case evt.Kind != KindRequest || evt.Tags.FindWithValue("p", sv.pk) == nil:
		return "not a request to us"
	case expired(evt, now):
		return "expired"
	case sv.mem != nil && evt.CreatedAt < now-nostr.Timestamp(seenWindow/time.Second):
		return "too old"
	case sv.MaxAge > 0 && evt.CreatedAt < now-nostr.Timestamp(sv.MaxAge/time.Second):
		return "too old"
	case sv.MaxAge > 0 && evt.CreatedAt > now+nostr.Timestamp(FutureSkew/time.Second):
		return "dated in the future"
	case !verified(evt):
		return "bad id or signature"
	}
	sv.mu.Lock()
	defer sv.mu.Unlock()
	if first, busy := sv.inFlight[evt.ID]; busy {
		// The same request again while it is served (sent twice, or from another relay): it is
		// answered once the first is, as a duplicate, so every copy gets one answer and none
		// races ahead of the real one. One such copy is kept; more add nothing.
		if first == nil {
			sv.inFlight[evt.ID] = evt
			return "in flight: answered after the first"
		}
		return "in flight"
	}
	sv.inFlight[evt.ID] = nil
	return ""
}

// finish ends a request's time in flight and returns a copy of it that arrived meanwhile, to
// be served (as a duplicate) now, or nil.
func (sv *server) finish(id string) *nostr.Event {
	sv.mu.Lock()
	defer sv.mu.Unlock()
	again := sv.inFlight[id]
	delete(sv.inFlight, id)
	return again
}

// serve answers one screened request. unpend frees the request's pending slot: a request for
// one of SlowMethods calls it once it holds a slow one instead.
func (sv *server) serve(ctx context.Context, evt *nostr.Event, unpend func()) {
	client := evt.PubKey
	scheme := requestEncryption(evt)
	if !slices.Contains(sv.encryptions(), scheme) {
		sv.answer(ctx, evt, EncryptionNIP04, "", nil, Errorf(CodeUnsupportedEncryption,
			"encryption %q is not supported; this wallet accepts %s", scheme, strings.Join(sv.encryptions(), ", ")))
		return
	}
	content, err := decrypt(scheme, sv.sk, client, evt.Content)
	if err != nil {
		sv.drop(evt, "undecryptable")
		return
	}
	req, err := decodeRequest(content)
	if err != nil {
		sv.answer(ctx, evt, scheme, "", nil, Errorf(CodeOther, "%s", strings.TrimPrefix(err.Error(), "nip47: ")))
		return
	}
	method := req.Method
	conn, ok, err := sv.Lookup(ctx, client)
	if err != nil {
		sv.internal(ctx, evt, scheme, method, fmt.Errorf("nip47: look up client %s: %w", client, err))
		return
	}
	if !ok {
		sv.answer(ctx, evt, scheme, method, nil, Errorf(CodeUnauthorized, "no wallet is connected for this key"))
		return
	}
	if !slices.Contains(sv.Methods, method) {
		sv.answer(ctx, evt, scheme, method, nil, Errorf(CodeNotImplemented, "method %.64q is not supported", method))
		return
	}
	first, err := sv.seen(ctx, evt)
	if err != nil {
		sv.internal(ctx, evt, scheme, method, fmt.Errorf("nip47: record request %s: %w", evt.ID, err))
		return
	}
	if !first {
		sv.answer(ctx, evt, scheme, method, nil, Errorf(CodeOther, "duplicate request"))
		return
	}
	if slices.Contains(sv.SlowMethods, method) {
		if !sv.enterSlow(client) {
			sv.answer(ctx, evt, scheme, method, nil, Errorf(CodeRateLimited, "too many %s requests in flight; retry later", method))
			return
		}
		defer sv.leaveSlow(client)
		unpend()
	} else {
		select {
		case sv.handling <- struct{}{}:
		default:
			sv.answer(ctx, evt, scheme, method, nil, Errorf(CodeRateLimited, "too many requests in flight; retry in a few seconds"))
			return
		}
		defer func() { <-sv.handling }()
	}
	result, err := sv.Handle(ctx, conn, method, req.Params)
	var werr *Error
	switch {
	case errors.As(err, &werr) && werr != nil:
		if werr.Code == "" {
			werr = &Error{Code: CodeOther, Message: werr.Message}
		}
		sv.answer(ctx, evt, scheme, method, nil, werr)
	case err != nil && ctx.Err() != nil:
		// Serve is stopping, which is likely why Handle failed: the outcome is unknown (a
		// held payment may yet settle), so no INTERNAL answer tells the client it failed. The
		// request stays unanswered; the client asks again, and the next run knows the outcome.
		sv.drop(evt, "stopping: unanswered")
	case err != nil:
		sv.internal(ctx, evt, scheme, method, fmt.Errorf("nip47: %s for %s (%s): %w", method, conn.Name, client, err))
	default:
		sv.answer(ctx, evt, scheme, method, result, nil)
	}
}

// enterSlow takes one of the MaxSlow slots for client, unless they or the client's
// MaxSlowPerClient are all taken.
func (sv *server) enterSlow(client string) bool {
	sv.slowMu.Lock()
	defer sv.slowMu.Unlock()
	if sv.slow >= MaxSlow || sv.slowOf[client] >= MaxSlowPerClient {
		return false
	}
	sv.slow++
	sv.slowOf[client]++
	return true
}

// leaveSlow gives back a slot enterSlow took.
func (sv *server) leaveSlow(client string) {
	sv.slowMu.Lock()
	defer sv.slowMu.Unlock()
	sv.slow--
	if sv.slowOf[client]--; sv.slowOf[client] <= 0 {
		delete(sv.slowOf, client)
	}
}

// seen reports whether a request is new, through Service.Seen or the in-memory record.
func (sv *server) seen(ctx context.Context, evt *nostr.Event) (bool, error) {
	if sv.Seen != nil {
		return sv.Seen(ctx, evt.ID)
	}
	return sv.mem.add(evt.ID, evt.CreatedAt, nostr.Timestamp(sv.clock().Unix())), nil
}

// internal answers INTERNAL and hands err, which the client doesn't see, to OnError.
func (sv *server) internal(ctx context.Context, evt *nostr.Event, scheme, method string, err error) {
	sv.report(err)
	sv.answer(ctx, evt, scheme, method, nil, Errorf(CodeInternal, "internal error"))
}

// answer publishes the response to req: result, or e when not nil.
func (sv *server) answer(ctx context.Context, req *nostr.Event, scheme, method string, result any, e *Error) {
	resp := Response{ResultType: method, Error: e}
	if e == nil {
		raw, err := json.Marshal(result)
		if err != nil {
			sv.internal(ctx, req, scheme, method, fmt.Errorf("nip47: encode %s result: %w", method, err))
			return
		}
		resp.Result = raw
	}
	content, err := json.Marshal(resp)
	if err != nil { // only an *Error's strings: cannot fail
		sv.report(fmt.Errorf("nip47: encode %s response: %w", method, err))
		return
	}
	out, err := sv.seal(KindResponse, scheme, sv.sk, req.PubKey, string(content), nostr.Tag{"e", req.ID})
	if err != nil {
		if e == nil { // too large for NIP-44, say: an error fits
			sv.internal(ctx, req, scheme, method, fmt.Errorf("nip47: seal %s response: %w", method, err))
		} else {
			sv.report(fmt.Errorf("nip47: seal %s response: %w", method, err))
		}
		return
	}
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), answerGrace)
	defer cancel()
	if err := sv.Transport.Publish(pctx, out); err != nil {
		sv.report(fmt.Errorf("nip47: answer %s request %s from %s: %w", method, req.ID, req.PubKey, err))
	}
}

// memorySeen is Seen when the Service has none: ids for seenWindow, pruned as it goes.
type memorySeen struct {
	mu        sync.Mutex
	ids       map[string]nostr.Timestamp // id → created_at
	lastPrune nostr.Timestamp
}

func (m *memorySeen) add(id string, createdAt, now nostr.Timestamp) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	window := nostr.Timestamp(seenWindow / time.Second)
	if now-m.lastPrune > window/10 {
		for k, at := range m.ids {
			if at < now-window {
				delete(m.ids, k)
			}
		}
		m.lastPrune = now
	}
	if _, ok := m.ids[id]; ok {
		return false
	}
	m.ids[id] = createdAt
	return true
}

// Notify publishes n to a client as kind 23197 (NIP-44 v2) and kind 23196 (NIP-04), one per
// encryption the Service accepts. It succeeds when a relay accepted at least one of them
// (a client reads one kind; a relay may refuse the other as nobody listens) and fails when
// none was accepted or n's type is not in Notifications.
func (s *Service) Notify(ctx context.Context, clientPubKey string, n Notification) error {
	sk, err := s.walletKey()
	if err != nil {
		return err
	}
	if !slices.Contains(s.Notifications, n.Type) {
		return fmt.Errorf("nip47: notification type %q is not advertised", n.Type)
	}
	if !nostr.IsValidPublicKey(clientPubKey) {
		return fmt.Errorf("nip47: notify: bad client pubkey %q", clientPubKey)
	}
	content, err := json.Marshal(n)
	if err != nil {
		return fmt.Errorf("nip47: encode notification: %w", err)
	}
	var errs []error
	sent := false
	for _, scheme := range s.encryptions() {
		kind := KindNotification
		if scheme == EncryptionNIP04 {
			kind = KindNotification04
		}
		if err := s.publishTo(ctx, sk, clientPubKey, kind, scheme, string(content)); err != nil {
			errs = append(errs, fmt.Errorf("kind %d: %w", kind, err))
			continue
		}
		sent = true
	}
	if !sent {
		return fmt.Errorf("nip47: notify %s: %w", clientPubKey, errors.Join(errs...))
	}
	return nil
}

// publishTo encrypts content to a client and publishes it as an event of kind.
func (s *Service) publishTo(ctx context.Context, sk, client string, kind int, scheme, content string) error {
	evt, err := s.seal(kind, scheme, sk, client, content)
	if err != nil {
		return err
	}
	return s.Transport.Publish(ctx, evt)
}

// seal returns a signed event of kind with content encrypted to peer, p-tagged to it, with
// more tags after that.
func (s *Service) seal(kind int, scheme, sk, peer, content string, more ...nostr.Tag) (nostr.Event, error) {
	ct, err := encrypt(scheme, sk, peer, content)
	if err != nil {
		return nostr.Event{}, err
	}
	evt := nostr.Event{
		Kind:      kind,
		CreatedAt: nostr.Timestamp(s.clock().Unix()),
		Tags:      append(nostr.Tags{{"p", peer}}, more...),
		Content:   ct,
	}
	if err := sign(&evt, sk); err != nil {
		return nostr.Event{}, err
	}
	return evt, nil
}
