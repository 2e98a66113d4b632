package khatru

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/fasthttp/websocket"
	"github.com/nbd-wtf/go-nostr"
	"github.com/nbd-wtf/go-nostr/nip42"
	"github.com/nbd-wtf/go-nostr/nip45"
	"github.com/nbd-wtf/go-nostr/nip45/hyperloglog"
	"github.com/nbd-wtf/go-nostr/nip70"
	"github.com/rs/cors"
)

// ServeHTTP implements http.Handler interface.
func (rl *Relay) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	corsMiddleware := cors.New(cors.Options{
		AllowedOrigins: []string{"*"},
		AllowedMethods: []string{
			http.MethodHead,
			http.MethodGet,
			http.MethodPost,
			http.MethodPut,
			http.MethodPatch,
			http.MethodDelete,
		},
		AllowedHeaders: []string{"Authorization", "*"},
		MaxAge:         86400,
	})

	if r.Header.Get("Upgrade") == "websocket" {
		rl.HandleWebsocket(w, r)
	} else if r.Header.Get("Accept") == "application/nostr+json" {
		corsMiddleware.Handler(http.HandlerFunc(rl.HandleNIP11)).ServeHTTP(w, r)
	} else { // sparecycles patch: no NIP-86 management API (patch 16)
		corsMiddleware.Handler(rl.serveMux).ServeHTTP(w, r)
	}
}

func (rl *Relay) HandleWebsocket(w http.ResponseWriter, r *http.Request) {
	for _, reject := range rl.RejectConnection {
		if reject(r) {
			w.WriteHeader(429) // Too many requests
			return
		}
	}

	// sparecycles patch 20: with outboxes, every write to the connection goes through a
	// frameConn (see frameconn.go)
	var hj *hijacker
	if rl.MaxOutboundBytes > 0 {
		hj = &hijacker{ResponseWriter: w, wait: rl.WriteWait}
		w = hj
	}
	conn, err := rl.upgrader.Upgrade(w, r, nil)
	if err != nil {
		rl.Log.Printf("failed to upgrade websocket: %v\n", err)
		return
	}

	ticker := time.NewTicker(rl.PingPeriod)

	// NIP-42 challenge
	challenge := make([]byte, 8)
	rand.Read(challenge)

	ws := &WebSocket{
		conn:       conn,
		Request:    r,
		Challenge:  hex.EncodeToString(challenge),
		directJSON: rl.EncodeOnce, // sparecycles patch
	}
	if hj != nil && hj.conn != nil { // sparecycles patch: see outbox.go
		ws.out = newOutbox(ws, hj.conn, rl.MaxOutboundBytes)
	}
	ws.Context, ws.cancel = context.WithCancel(context.Background())

	rl.clientsMutex.Lock()
	rl.clients[ws] = make([]listenerSpec, 0, 2)
	rl.clientsMutex.Unlock()

	ctx, cancel := context.WithCancel(
		context.WithValue(
			context.Background(),
			wsKey, ws,
		),
	)

	// sparecycles patch: both goroutines below end in kill; upstream ran it twice, so every
	// OnDisconnect hook saw each disconnect twice. OnConnect runs before either can end.
	var killOnce sync.Once
	kill := func() {
		killOnce.Do(func() {
			for _, ondisconnect := range rl.OnDisconnect {
				ondisconnect(ctx)
			}

			ticker.Stop()
			cancel()
			ws.cancel()
			if ws.out != nil {
				ws.out.close()
			}
			ws.conn.Close()

			rl.removeClientAndListeners(ws)
		})
	}

	for _, onconnect := range rl.OnConnect {
		onconnect(ctx)
	}

	// sparecycles patch: see Relay.MaxMessagesInFlight
	var inFlight chan struct{}
	if rl.MaxMessagesInFlight > 0 {
		inFlight = make(chan struct{}, rl.MaxMessagesInFlight)
	}

	go func() {
		defer kill()

		ws.conn.SetReadLimit(rl.MaxMessageSize)
		ws.conn.SetReadDeadline(time.Now().Add(rl.PongWait))
		ws.conn.SetPongHandler(func(string) error {
			ws.conn.SetReadDeadline(time.Now().Add(rl.PongWait))
			return nil
		})

		smp := nostr.NewMessageParser()
		oversized := 0 // sparecycles patch: messages refused for Relay.MaxRequestSize

		for {
			// sparecycles patch: readMessage, not ReadMessage: see Relay.MaxRequestSize
			typ, msgb, size, tooLarge, err := readMessage(ws.conn, rl.MaxRequestSize)
			if err != nil {
				if websocket.IsUnexpectedCloseError(
					err,
					websocket.CloseNormalClosure,    // 1000
					websocket.CloseGoingAway,        // 1001
					websocket.CloseNoStatusReceived, // 1005
					websocket.CloseAbnormalClosure,  // 1006
					4537,                            // some client seems to send many of these
				) {
					rl.Log.Printf("unexpected close error from %s: %v\n", GetIPFromRequest(r), err)
				}
				ws.cancel()
				return
			}

			if typ == websocket.PingMessage {
				ws.WriteMessage(websocket.PongMessage, nil)
				continue
			}

			// sparecycles patch: see Relay.MaxRequestSize
			if tooLarge {
				ws.WriteJSON(requestTooLarge(msgb, size, rl.MaxRequestSize))
				if oversized++; oversized >= maxOversized {
					// a client that keeps sending what NIP-11 says is refused is not reading
					// the answers: stop reading what it sends
					ws.fail("invalid: too many oversized messages")
					ws.cancel()
					return
				}
				continue
			}

			// this is safe because readMessage always creates a new slice
			message := unsafe.String(unsafe.SliceData(msgb), len(msgb))

			// parse messages sequentially otherwise sonic breaks
			envelope, err := smp.ParseMessage(message)

			if inFlight != nil { // sparecycles patch: see Relay.MaxMessagesInFlight
				select {
				case inFlight <- struct{}{}:
				case <-ctx.Done():
					return
				}
			}

			// then delegate to the goroutine
			rl.handling.add(1) // sparecycles patch: see Relay.Drain
			rl.handle(func() { // sparecycles patch: see Relay.ReuseGoroutines
				defer rl.handling.add(-1)
				if inFlight != nil {
					defer func() { <-inFlight }()
				}
				if err != nil {
					if envelope == nil {
						ws.WriteJSON(nostr.NoticeEnvelope("failed to parse envelope: " + err.Error()))
						return
					}
				}

				switch env := envelope.(type) {
				case *nostr.EventEnvelope:
					// check id
					if !env.Event.CheckID() {
						ws.WriteJSON(nostr.OKEnvelope{EventID: env.Event.ID, OK: false, Reason: "invalid: id is computed incorrectly"})
						return
					}

					// check signature
					var sigOK bool
					var sigErr error
					if rl.CheckSignature != nil { // sparecycles patch: see Relay.CheckSignature
						sigOK, sigErr = rl.CheckSignature(&env.Event)
					} else {
						sigOK, sigErr = env.Event.CheckSignature()
					}
					if ok, err := sigOK, sigErr; err != nil {
						ws.WriteJSON(nostr.OKEnvelope{EventID: env.Event.ID, OK: false, Reason: "error: failed to verify signature"})
						return
					} else if !ok {
						ws.WriteJSON(nostr.OKEnvelope{EventID: env.Event.ID, OK: false, Reason: "invalid: signature is invalid"})
						return
					}

					// check NIP-70 protected
					if nip70.IsProtected(env.Event) {
						authed := GetAuthed(ctx)
						if authed == "" {
							RequestAuth(ctx)
							ws.WriteJSON(nostr.OKEnvelope{
								EventID: env.Event.ID,
								OK:      false,
								Reason:  "auth-required: must be published by authenticated event author",
							})
							return
						} else if authed != env.Event.PubKey {
							ws.WriteJSON(nostr.OKEnvelope{
								EventID: env.Event.ID,
								OK:      false,
								Reason:  "blocked: must be published by event author",
							})
							return
						}
					} else if nip70.HasEmbeddedProtected(env.Event) {
						ws.WriteJSON(nostr.OKEnvelope{
							EventID: env.Event.ID,
							OK:      false,
							Reason:  "blocked: can't repost nip70 protected",
						})
						return
					}

					srl := rl
					if rl.getSubRelayFromEvent != nil {
						srl = rl.getSubRelayFromEvent(&env.Event)
					}

					var ok bool
					var writeErr error
					var skipBroadcast bool

					if env.Event.Kind == 5 {
						// this always returns "blocked: " whenever it returns an error
						writeErr = srl.handleDeleteRequest(ctx, &env.Event)
					}

					if writeErr == nil {
						if nostr.IsEphemeralKind(env.Event.Kind) {
							// this will also always return a prefixed reason
							writeErr = srl.handleEphemeral(ctx, &env.Event)
						} else {
							// this will also always return a prefixed reason
							skipBroadcast, writeErr = srl.handleNormal(ctx, &env.Event)
						}
					}

					var reason string
					if writeErr == nil {
						ok = true
						for _, ovw := range srl.OverwriteResponseEvent {
							ovw(ctx, &env.Event)
						}
						if !skipBroadcast {
							n := srl.notifyListeners(&env.Event)

							// the number of notified listeners matters in ephemeral events
							if nostr.IsEphemeralKind(env.Event.Kind) {
								if n == 0 && len(rl.OnEphemeralEvent) == 0 {
									ok = false
									reason = "mute: no one was listening for this"
								} else {
									reason = "broadcasted to " + strconv.Itoa(n) + " listeners"
								}
							}
						}
					} else {
						ok = false
						reason = writeErr.Error()
						if strings.HasPrefix(reason, "auth-required:") {
							RequestAuth(ctx)
						}
					}
					ws.WriteJSON(nostr.OKEnvelope{EventID: env.Event.ID, OK: ok, Reason: reason})
				case *nostr.CountEnvelope:
					if rl.CountEvents == nil && rl.CountEventsHLL == nil {
						ws.WriteJSON(nostr.ClosedEnvelope{SubscriptionID: env.SubscriptionID, Reason: "unsupported: this relay does not support NIP-45"})
						return
					}

					var total int64
					var hll *hyperloglog.HyperLogLog
					var countErr error

					srl := rl
					if rl.getSubRelayFromFilter != nil {
						srl = rl.getSubRelayFromFilter(env.Filter)
					}

					if offset := nip45.HyperLogLogEventPubkeyOffsetForFilter(env.Filter); offset != -1 && len(srl.CountEventsHLL) > 0 {
						total, hll, countErr = srl.handleCountRequestWithHLL(ctx, env.Filter, offset)
					} else {
						total, countErr = srl.handleCountRequest(ctx, env.Filter)
					}
					if countErr != nil {
						// sparecycles patch: a refused or failed count is answered with CLOSED and
						// its reason; upstream sent a NOTICE and then a count of 0, a wrong answer
						ws.WriteJSON(nostr.ClosedEnvelope{SubscriptionID: env.SubscriptionID, Reason: countErr.Error()})
						return
					}

					resp := nostr.CountEnvelope{
						SubscriptionID: env.SubscriptionID,
						Count:          &total,
					}
					if hll != nil {
						resp.HyperLogLog = hll.GetRegisters()
					}

					ws.WriteJSON(resp)

				case *nostr.ReqEnvelope:
					rl.handleReq(ctx, ws, env) // sparecycles patch: moved to responding.go
				case *nostr.CloseEnvelope:
					id := string(*env)
					rl.removeListenerId(ws, id)
				case *nostr.AuthEnvelope:
					wsBaseUrl := strings.Replace(rl.getBaseURL(r), "http", "ws", 1)
					if pubkey, ok := nip42.ValidateAuthEvent(&env.Event, ws.Challenge, wsBaseUrl); ok {
						ws.authLock.Lock()
						ws.AuthedPublicKey = pubkey // sparecycles patch 19: written under authLock
						if ws.Authed != nil {
							close(ws.Authed)
							ws.Authed = nil
						}
						ws.authLock.Unlock()
						for _, onauth := range rl.OnAuth { // sparecycles patch
							onauth(ctx, pubkey)
						}
						ws.WriteJSON(nostr.OKEnvelope{EventID: env.Event.ID, OK: true})
					} else {
						ws.WriteJSON(nostr.OKEnvelope{EventID: env.Event.ID, OK: false, Reason: "error: failed to authenticate"})
					}
				}
			})
		}
	}()

	go func() {
		defer kill()

		for {
			select {
			case <-ctx.Done():
				return
			case <-ticker.C:
				// sparecycles patch: a control frame with its own deadline, beside the outbox
				err := ws.conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(rl.WriteWait))
				if err != nil {
					if !strings.HasSuffix(err.Error(), "use of closed network connection") {
						rl.Log.Printf("error writing ping: %v; closing websocket\n", err)
					}
					return
				}
			}
		}
	}()
}
