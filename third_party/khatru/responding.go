package khatru

import (
	"context"
	"errors"
	"strings"
	"sync"

	"github.com/nbd-wtf/go-nostr"
	"github.com/nbd-wtf/go-nostr/nip45/hyperloglog"
)

// handleReq answers a REQ: its stored events, then EOSE, then live events until CLOSE.
func (rl *Relay) handleReq(ctx context.Context, ws *WebSocket, env *nostr.ReqEnvelope) {
	// sparecycles patch: a REQ with the id of an open subscription replaces it
	// (NIP-01; upstream added to it), and the whole REQ and all its filters are
	// checked before any is queried or subscribed, so a refused REQ leaves nothing
	// behind (upstream kept the listeners of the filters before a refused one, and
	// never checked a filter with limit 0).
	rl.removeListenerId(ws, env.SubscriptionID)
	closed := func(reason string) {
		if strings.HasPrefix(reason, "auth-required:") {
			RequestAuth(ctx)
		}
		ws.WriteJSON(nostr.ClosedEnvelope{SubscriptionID: env.SubscriptionID, Reason: reason})
	}
	open := rl.subscriptionCount(ws)
	for _, reject := range rl.RejectRequest {
		if rejecting, msg := reject(ctx, env.SubscriptionID, env.Filters, open); rejecting {
			closed(nostr.NormalizeOKMessage(msg, "blocked"))
			return
		}
	}
	subrelays := make([]*Relay, len(env.Filters))
	for i := range env.Filters {
		srl := rl
		if rl.getSubRelayFromFilter != nil {
			srl = rl.getSubRelayFromFilter(env.Filters[i])
		}
		subrelays[i] = srl
		if err := srl.checkFilter(ctx, &env.Filters[i]); err != nil {
			closed(err.Error())
			return
		}
	}

	eose := sync.WaitGroup{}
	eose.Add(len(env.Filters))

	// a context just for the "stored events" request handler, cancelled when the subscription
	// closes (every listener holds the cancel function; a REQ without filters never opens one)
	reqCtx, cancelReqCtx := context.WithCancelCause(ctx)
	live := &sentLive{}
	subscribe := func(srl *Relay, filter nostr.Filter) {
		rl.addLiveListener(ws, env.SubscriptionID, srl, filter, cancelReqCtx, live)
	}
	if len(env.Filters) == 0 {
		cancelReqCtx(nil)
	}

	// expose subscription id in the context
	reqCtx = context.WithValue(reqCtx, subscriptionIdKey, env.SubscriptionID)

	// handle each filter separately -- dispatching events as they're loaded from databases.
	// sparecycles patch: each filter listens before its stored events are queried (upstream
	// queried first), so an event stored and broadcast in between is not lost to both; it may
	// come twice (live and stored), which clients handle (the event id is the same).
	for i, filter := range env.Filters {
		subscribe(subrelays[i], filter)
		subrelays[i].handleRequest(reqCtx, env.SubscriptionID, &eose, ws, filter, live)
	}

	go func() {
		// when all events have been loaded from databases and dispatched we can fire the EOSE message
		eose.Wait()
		live.finish()
		ws.WriteJSON(nostr.EOSEEnvelope(env.SubscriptionID))
	}()
}

// checkFilter applies the OverwriteFilter hooks to filter, then the RejectFilter hooks.
// sparecycles patch: split from handleRequest so a REQ's filters are all checked before any is
// queried; upstream skipped RejectFilter for filters with limit 0.
func (rl *Relay) checkFilter(ctx context.Context, filter *nostr.Filter) error {
	// overwrite the filter (for example, to eliminate some kinds or
	// that we know we don't support)
	for _, ovw := range rl.OverwriteFilter {
		ovw(ctx, filter)
	}

	// then check if we'll reject this filter (we apply this after overwriting
	// because we may, for example, remove some things from the incoming filters
	// that we know we don't support, and then if the end result is an empty
	// filter we can just reject it)
	for _, reject := range rl.RejectFilter {
		if reject, msg := reject(ctx, *filter); reject {
			return errors.New(nostr.NormalizeOKMessage(msg, "blocked"))
		}
	}
	return nil
}

// handleRequest queries the stored events for a filter checkFilter accepted and sends them.
func (rl *Relay) handleRequest(ctx context.Context, id string, eose *sync.WaitGroup, ws *WebSocket, filter nostr.Filter, live *sentLive) {
	defer eose.Done()

	if filter.LimitZero {
		// don't do any queries, just subscribe to future events
		return
	}

	// run the functions to query events (generally just one,
	// but we might be fetching stuff from multiple places)
	eose.Add(len(rl.QueryEvents))
	for _, query := range rl.QueryEvents {
		ch, err := query(ctx, filter)
		if err != nil {
			ws.WriteJSON(nostr.NoticeEnvelope(err.Error()))
			eose.Done()
			continue
		} else if ch == nil {
			eose.Done()
			continue
		}

		go func(ch chan *nostr.Event) {
			defer eose.Done()
			for event := range ch {
				if live.has(event.ID) {
					continue // sent live already (sparecycles patch: see sentLive)
				}
				for _, ovw := range rl.OverwriteResponseEvent {
					ovw(ctx, event)
				}
				if ws.out != nil {
					// sparecycles patch: stored events wait for room in the connection's outbox,
					// so a query moves at the reader's speed (see outbox.go); once the connection
					// is gone the rest is drained unsent.
					if err := ws.writeQueryEvent(id, event); err != nil {
						for range ch {
						}
						return
					}
					continue
				}
				ws.WriteJSON(nostr.EventEnvelope{SubscriptionID: &id, Event: *event})
			}
		}(ch)
	}
}

// writeQueryEvent queues a stored event for a subscription, waiting for room. sparecycles patch.
func (ws *WebSocket) writeQueryEvent(id string, event *nostr.Event) error {
	eventJSON, err := event.MarshalJSON()
	if err != nil {
		return err
	}
	return ws.writeText(sendQuery, appendEventPrefix(nil, id), eventJSON, []byte{']'})
}

// handleCountRequest counts with the CountEvents hooks. sparecycles patch: a rejection or a
// failed count is returned as an error with a NIP-01 prefix, which is answered with CLOSED.
func (rl *Relay) handleCountRequest(ctx context.Context, filter nostr.Filter) (int64, error) {
	// check if we'll reject this filter
	for _, reject := range rl.RejectCountFilter {
		if rejecting, msg := reject(ctx, filter); rejecting {
			return 0, errors.New(nostr.NormalizeOKMessage(msg, "blocked"))
		}
	}

	// run the functions to count (generally it will be just one)
	var subtotal int64 = 0
	for _, count := range rl.CountEvents {
		res, err := count(ctx, filter)
		if err != nil {
			return 0, errors.New(nostr.NormalizeOKMessage(err.Error(), "error"))
		}
		subtotal += res
	}

	return subtotal, nil
}

func (rl *Relay) handleCountRequestWithHLL(
	ctx context.Context,
	filter nostr.Filter,
	offset int,
) (int64, *hyperloglog.HyperLogLog, error) {
	// check if we'll reject this filter
	for _, reject := range rl.RejectCountFilter {
		if rejecting, msg := reject(ctx, filter); rejecting {
			return 0, nil, errors.New(nostr.NormalizeOKMessage(msg, "blocked"))
		}
	}

	// run the functions to count (generally it will be just one)
	var subtotal int64 = 0
	var hll *hyperloglog.HyperLogLog
	for _, countHLL := range rl.CountEventsHLL {
		res, fhll, err := countHLL(ctx, filter, offset)
		if err != nil {
			return 0, nil, errors.New(nostr.NormalizeOKMessage(err.Error(), "error"))
		}
		subtotal += res
		if fhll != nil {
			if hll == nil {
				hll = fhll
			} else {
				hll.Merge(fhll)
			}
		}
	}

	return subtotal, hll, nil
}
