package khatru

import (
	"context"
	"encoding/json"
	"errors"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	"github.com/nbd-wtf/go-nostr"
)

var ErrSubscriptionClosedByClient = errors.New("subscription closed by client")

type listenerSpec struct {
	id       string // kept here so we can easily match against it removeListenerId
	cancel   context.CancelCauseFunc
	index    int
	subrelay *Relay // this is important when we're dealing with routing, otherwise it will be always the same
}

type listener struct {
	id     string // duplicated here so we can easily send it on notifyListeners
	filter nostr.Filter
	ws     *WebSocket
	live   *sentLive // sparecycles patch: see sentLive; nil for listeners added by addListener
}

// sentLive remembers the ids of the events a subscription was sent live before its EOSE, so
// that its stored events do not repeat them. sparecycles patch: a subscription now listens
// before it queries (see handleReq), so an event broadcast while its query runs would
// otherwise come twice. An event is broadcast before anyone can find it stored, so it is
// recorded here before the query can meet it. At most maxSentLive ids are kept (past that, a
// repeat is possible, and harmless).
type sentLive struct {
	mu   sync.Mutex
	ids  map[string]struct{}
	done bool
}

const maxSentLive = 4096

func (s *sentLive) add(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done || len(s.ids) >= maxSentLive {
		return
	}
	if s.ids == nil {
		s.ids = map[string]struct{}{}
	}
	s.ids[id] = struct{}{}
}

func (s *sentLive) has(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.ids[id]
	return ok
}

// finish forgets the ids: the stored events are all sent.
func (s *sentLive) finish() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.done, s.ids = true, nil
}

func (rl *Relay) GetListeningFilters() []nostr.Filter {
	rl.clientsMutex.Lock() // sparecycles patch: see notifyListeners
	defer rl.clientsMutex.Unlock()
	respfilters := make([]nostr.Filter, len(rl.listeners))
	for i, l := range rl.listeners {
		respfilters[i] = l.filter
	}
	return respfilters
}

// addListener may be called multiple times for each id and ws -- in which case each filter will
// be added as an independent listener
func (rl *Relay) addListener(
	ws *WebSocket,
	id string,
	subrelay *Relay,
	filter nostr.Filter,
	cancel context.CancelCauseFunc,
) {
	rl.addLiveListener(ws, id, subrelay, filter, cancel, nil)
}

// addLiveListener is addListener for a subscription whose stored events are still being sent:
// live records what it is sent meanwhile. sparecycles patch: see sentLive.
func (rl *Relay) addLiveListener(
	ws *WebSocket,
	id string,
	subrelay *Relay,
	filter nostr.Filter,
	cancel context.CancelCauseFunc,
	live *sentLive,
) {
	rl.clientsMutex.Lock()
	defer rl.clientsMutex.Unlock()

	if specs, ok := rl.clients[ws]; ok /* this will always be true unless client has disconnected very rapidly */ {
		idx := len(subrelay.listeners)
		rl.clients[ws] = append(specs, listenerSpec{
			id:       id,
			cancel:   cancel,
			subrelay: subrelay,
			index:    idx,
		})
		subrelay.listeners = append(subrelay.listeners, listener{
			ws:     ws,
			id:     id,
			filter: filter,
			live:   live,
		})
	}
}

// remove a specific subscription id from listeners for a given ws client
// and cancel its specific context
func (rl *Relay) removeListenerId(ws *WebSocket, id string) {
	rl.clientsMutex.Lock()
	defer rl.clientsMutex.Unlock()

	if specs, ok := rl.clients[ws]; ok {
		// swap delete specs that match this id
		for s := len(specs) - 1; s >= 0; s-- {
			spec := specs[s]
			if spec.id == id {
				spec.cancel(ErrSubscriptionClosedByClient)
				specs[s] = specs[len(specs)-1]
				specs = specs[0 : len(specs)-1]
				rl.clients[ws] = specs

				// swap delete listeners one at a time, as they may be each in a different subrelay
				srl := spec.subrelay // == rl in normal cases, but different when this came from a route

				if spec.index != len(srl.listeners)-1 {
					movedFromIndex := len(srl.listeners) - 1
					moved := srl.listeners[movedFromIndex] // this wasn't removed, but will be moved
					srl.listeners[spec.index] = moved

					// now we must update the the listener we just moved
					// so its .index reflects its new position on srl.listeners
					movedSpecs := rl.clients[moved.ws]
					idx := slices.IndexFunc(movedSpecs, func(ls listenerSpec) bool {
						return ls.index == movedFromIndex && ls.subrelay == srl
					})
					movedSpecs[idx].index = spec.index
					rl.clients[moved.ws] = movedSpecs
				}
				srl.listeners = srl.listeners[0 : len(srl.listeners)-1] // finally reduce the slice length
			}
		}
	}
}

func (rl *Relay) removeClientAndListeners(ws *WebSocket) {
	rl.clientsMutex.Lock()
	defer rl.clientsMutex.Unlock()
	if specs, ok := rl.clients[ws]; ok {
		// swap delete listeners and delete client (all specs will be deleted)
		for s, spec := range specs {
			// no need to cancel contexts since they inherit from the main connection context
			// just delete the listeners (swap-delete)
			srl := spec.subrelay

			if spec.index != len(srl.listeners)-1 {
				movedFromIndex := len(srl.listeners) - 1
				moved := srl.listeners[movedFromIndex] // this wasn't removed, but will be moved
				srl.listeners[spec.index] = moved

				// temporarily update the spec of the listener being removed to have index == -1
				// (since it was removed) so it doesn't match in the search below
				rl.clients[ws][s].index = -1

				// now we must update the the listener we just moved
				// so its .index reflects its new position on srl.listeners
				movedSpecs := rl.clients[moved.ws]
				idx := slices.IndexFunc(movedSpecs, func(ls listenerSpec) bool {
					return ls.index == movedFromIndex && ls.subrelay == srl
				})
				movedSpecs[idx].index = spec.index
				rl.clients[moved.ws] = movedSpecs
			}
			srl.listeners = srl.listeners[0 : len(srl.listeners)-1] // finally reduce the slice length
		}
	}
	delete(rl.clients, ws)
}

// returns how many listeners were notified
func (rl *Relay) notifyListeners(event *nostr.Event) int {
	// sparecycles patch: read the listeners under clientsMutex. Upstream ranges over
	// rl.listeners unlocked while addListener/removeListenerId swap-delete it under the lock: a
	// data race that can skip a listener or deliver to the wrong one. The matching ones are
	// collected under the lock (matching is cheap), into a pooled slice, rather than copying
	// every listener with its filter for each event.
	tp := targetPool.Get().(*[]target)
	defer func() {
		clear(*tp)
		*tp = (*tp)[:0]
		targetPool.Put(tp)
	}()
	rl.clientsMutex.Lock()
	for _, listener := range rl.listeners {
		if listener.filter.Matches(event) {
			*tp = append(*tp, target{id: listener.id, ws: listener.ws, live: listener.live})
		}
	}
	rl.clientsMutex.Unlock()

	matched := (*tp)[:0] // the targets no PreventBroadcast hook stops, in place
targetsloop:
	for _, t := range *tp {
		for _, pb := range rl.PreventBroadcast {
			if pb(t.ws, event) {
				continue targetsloop
			}
		}
		if t.live != nil {
			t.live.add(event.ID)
		}
		matched = append(matched, t)
	}
	if !rl.EncodeOnce {
		for _, t := range matched {
			t.ws.WriteJSON(nostr.EventEnvelope{SubscriptionID: &t.id, Event: *event})
		}
		return len(matched)
	}
	if len(matched) > 0 {
		// sparecycles patch: encode the event once per broadcast, not once per listener. With
		// an outbox (MaxOutboundBytes) each listener's copy is written without waiting, or
		// queued: a connection that does not read cannot hold up the publisher or the
		// listeners after it.
		eventJSON, _ := event.MarshalJSON()
		writeEvent(matched, eventJSON)
	}
	return len(matched)
}

// A broadcast runs one goroutine per fanOutShare listeners, and each takes fanOutClaim of them
// at a time (sparecycles patch 20): waking a goroutine on another core costs about as much as
// writing to a few dozen sockets.
const (
	fanOutShare = 32
	fanOutClaim = 16
)

// writeEvent writes `["EVENT",<sub id>,` + eventJSON + `]` to every target. It spreads them over
// up to GOMAXPROCS goroutines, one per fanOutShare targets (the calling one among them), which
// take fanOutClaim targets at a time until none are left, so that one which starts late (a
// wake-up can take a few hundred µs on a busy machine) takes fewer; it returns once all are
// written. A write to a connection with an outbox never waits (what the socket does not take at
// once is queued), so the whole takes as long as the sockets' sends. sparecycles patch.
func writeEvent(targets []target, eventJSON []byte) {
	helpers := min(runtime.GOMAXPROCS(0), len(targets)/fanOutShare) - 1
	if helpers <= 0 {
		writeTargets(targets, eventJSON)
		return
	}
	var next atomic.Int64
	work := func() {
		for {
			end := int(next.Add(fanOutClaim))
			start := end - fanOutClaim
			if start >= len(targets) {
				return
			}
			writeTargets(targets[start:min(end, len(targets))], eventJSON)
		}
	}
	var wg sync.WaitGroup
	wg.Add(helpers)
	for range helpers {
		go func() {
			defer wg.Done()
			work()
		}()
	}
	work()
	wg.Wait()
}

func writeTargets(targets []target, eventJSON []byte) {
	// every target's `["EVENT","<sub id>",` in one buffer (one allocation, not one per target);
	// a prefix may outlive this call in a queue, and keeps the buffer with it
	size := 0
	for _, t := range targets {
		size += len(`["EVENT","",`) + len(t.id)
	}
	buf := make([]byte, 0, size)
	for _, t := range targets {
		start := len(buf)
		buf = appendEventPrefix(buf, t.id)
		t.ws.writeText(sendBroadcast, buf[start:len(buf):len(buf)], eventJSON, closeBracket)
	}
}

var closeBracket = []byte{']'}

// target is a listener an event goes to. sparecycles patch: see notifyListeners.
type target struct {
	id   string
	ws   *WebSocket
	live *sentLive
}

var targetPool = sync.Pool{New: func() any { return new([]target) }}

// appendEventPrefix appends `["EVENT",<subID as a JSON string>,` to dst. sparecycles patch: for
// EncodeOnce. Upstream writes the id unquoted, so an id that needs escaping makes its envelope
// invalid JSON, which encoding/json refuses to send; here it is escaped instead.
func appendEventPrefix(dst []byte, subID string) []byte {
	dst = append(dst, `["EVENT",`...)
	if plainJSONString(subID) {
		dst = append(dst, '"')
		dst = append(dst, subID...)
		dst = append(dst, '"')
	} else {
		q, _ := json.Marshal(subID) // a string always marshals
		dst = append(dst, q...)
	}
	return append(dst, ',')
}

// plainJSONString reports whether s can sit between quotes in JSON as it is.
func plainJSONString(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// subscriptionCount is the number of distinct subscription ids ws has open. sparecycles patch:
// see Relay.RejectRequest.
func (rl *Relay) subscriptionCount(ws *WebSocket) int {
	rl.clientsMutex.Lock()
	defer rl.clientsMutex.Unlock()
	specs := rl.clients[ws]
	n := 0
	for i, s := range specs {
		if !slices.ContainsFunc(specs[:i], func(o listenerSpec) bool { return o.id == s.id }) {
			n++
		}
	}
	return n
}
