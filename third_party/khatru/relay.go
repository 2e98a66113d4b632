package khatru

import (
	"context"
	"log"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/nbd-wtf/go-nostr"
	"github.com/nbd-wtf/go-nostr/nip11"
	"github.com/nbd-wtf/go-nostr/nip45/hyperloglog"
)

func NewRelay() *Relay {
	ctx := context.Background()

	rl := &Relay{
		Log: log.New(os.Stderr, "[khatru-relay] ", log.LstdFlags),

		Info: &nip11.RelayInformationDocument{
			Software:      "https://github.com/fiatjaf/khatru",
			Version:       "n/a",
			SupportedNIPs: []any{1, 11, 40, 42, 70}, // sparecycles patch 16: no NIP-86
		},

		upgrader: websocket.Upgrader{
			ReadBufferSize:  1024,
			WriteBufferSize: 1024,
			CheckOrigin:     func(r *http.Request) bool { return true },
		},

		clients:   make(map[*WebSocket][]listenerSpec, 100),
		listeners: make([]listener, 0, 100),

		serveMux: &http.ServeMux{},

		WriteWait:      10 * time.Second,
		PongWait:       60 * time.Second,
		PingPeriod:     30 * time.Second,
		MaxMessageSize: 512000,
	}

	rl.expirationManager = newExpirationManager(rl)
	go rl.expirationManager.start(ctx)

	return rl
}

type Relay struct {
	// setting this variable overwrites the hackish workaround we do to try to figure out our own base URL
	ServiceURL string

	// hooks that will be called at various times
	RejectEvent              []func(ctx context.Context, event *nostr.Event) (reject bool, msg string)
	OverwriteDeletionOutcome []func(ctx context.Context, target *nostr.Event, deletion *nostr.Event) (acceptDeletion bool, msg string)
	StoreEvent               []func(ctx context.Context, event *nostr.Event) error
	ReplaceEvent             []func(ctx context.Context, event *nostr.Event) error
	DeleteEvent              []func(ctx context.Context, event *nostr.Event) error
	OnEventSaved             []func(ctx context.Context, event *nostr.Event)
	OnEphemeralEvent         []func(ctx context.Context, event *nostr.Event)
	RejectFilter             []func(ctx context.Context, filter nostr.Filter) (reject bool, msg string)
	RejectCountFilter        []func(ctx context.Context, filter nostr.Filter) (reject bool, msg string)
	OverwriteFilter          []func(ctx context.Context, filter *nostr.Filter)
	QueryEvents              []func(ctx context.Context, filter nostr.Filter) (chan *nostr.Event, error)
	CountEvents              []func(ctx context.Context, filter nostr.Filter) (int64, error)
	CountEventsHLL           []func(ctx context.Context, filter nostr.Filter, offset int) (int64, *hyperloglog.HyperLogLog, error)
	RejectConnection         []func(r *http.Request) bool
	OnConnect                []func(ctx context.Context)
	OnDisconnect             []func(ctx context.Context)
	// OnAuth runs after a connection authenticated (NIP-42) as pubkey, before its OK is
	// written. sparecycles patch: see PATCHES.md.
	OnAuth                    []func(ctx context.Context, pubkey string)
	OverwriteRelayInformation []func(ctx context.Context, r *http.Request, info nip11.RelayInformationDocument) nip11.RelayInformationDocument
	OverwriteResponseEvent    []func(ctx context.Context, event *nostr.Event)
	PreventBroadcast          []func(ws *WebSocket, event *nostr.Event) bool

	// these are used when this relays acts as a router
	routes                []Route
	getSubRelayFromEvent  func(*nostr.Event) *Relay // used for handling EVENTs
	getSubRelayFromFilter func(nostr.Filter) *Relay // used for handling REQs

	// editing info will affect the NIP-11 responses
	Info *nip11.RelayInformationDocument

	// Default logger, as set by NewServer, is a stdlib logger prefixed with "[khatru-relay] ",
	// outputting to stderr.
	Log *log.Logger

	// for establishing websockets
	upgrader websocket.Upgrader

	// keep a connection reference to all connected clients for Server.Shutdown
	// also used for keeping track of who is listening to what
	clients      map[*WebSocket][]listenerSpec
	listeners    []listener
	clientsMutex sync.Mutex

	// EncodeOnce makes a broadcast encode each event's JSON once and write it to every matching
	// listener with only the subscription id around it, instead of encoding the whole EVENT
	// envelope once per listener as upstream does. Set it before serving. sparecycles patch.
	EncodeOnce bool

	// sparecycles patch: StoreBroadcasts means the StoreEvent hooks broadcast the regular events
	// they accept themselves (with BroadcastEvent), so that live subscribers can get an event
	// while its write is still syncing; khatru then does not broadcast a stored regular event
	// again. Replaceable, addressable and ephemeral events are broadcast by khatru as usual.
	StoreBroadcasts bool

	// sparecycles patch: ReuseGoroutines runs each incoming message's handler on an idle
	// goroutine left from an earlier message when there is one, instead of on a new goroutine.
	// A new goroutine starts with a small stack and grows it (a copy) on every message that
	// checks a signature and stores an event; a reused one has grown it already. Idle
	// goroutines exit after a while. Set it before serving.
	ReuseGoroutines bool
	idleHandlers    chan func()
	idleOnce        sync.Once

	// sparecycles patch: CheckSignature, when set, verifies the signature of each incoming
	// event in place of nostr.Event.CheckSignature, with the same results. khatru calls it only
	// after the event's id has been checked.
	CheckSignature func(*nostr.Event) (bool, error)

	// sparecycles patch: MaxOutboundBytes, when set, gives every connection a queue of
	// outgoing messages of at most this many bytes, written by one goroutine with a deadline of
	// WriteWait per message; a connection that falls that far behind is closed rather than
	// allowed to hold up anyone else (see outbox.go). 0 keeps upstream's direct writes.
	MaxOutboundBytes int

	// sparecycles patch: MaxMessagesInFlight, when set, bounds how many of one connection's
	// messages are handled at once; the connection's reader waits for a slot, so a client that
	// sends faster than it is served is slowed down rather than given a goroutine per message.
	MaxMessagesInFlight int

	// sparecycles patch: handling counts messages being handled, for Drain.
	handling handlerCount

	// sparecycles patch: MaxRequestSize, when set, bounds every message other than an EVENT
	// (REQ, COUNT, CLOSE, AUTH...). A larger one is refused (CLOSED for a REQ or COUNT, else
	// NOTICE) before it is parsed: a REQ of 7,000 ids costs far more to parse than any cap on
	// its filters can save afterwards. EVENTs stay bounded by MaxMessageSize.
	MaxRequestSize int

	// sparecycles patch: RejectRequest hooks see a whole REQ before any of its filters is
	// queried or subscribed: its id, its filters and how many other subscriptions the connection
	// has open. A rejection is answered with CLOSED and the reason.
	RejectRequest []func(ctx context.Context, id string, filters nostr.Filters, open int) (reject bool, msg string)

	// in case you call Server.Start
	Addr       string
	serveMux   *http.ServeMux
	httpServer *http.Server

	// websocket options
	WriteWait      time.Duration // Time allowed to write a message to the peer.
	PongWait       time.Duration // Time allowed to read the next pong message from the peer.
	PingPeriod     time.Duration // Send pings to peer with this period. Must be less than pongWait.
	MaxMessageSize int64         // Maximum message size allowed from peer.

	// NIP-40 expiration manager
	expirationManager *expirationManager
}

func (rl *Relay) getBaseURL(r *http.Request) string {
	if rl.ServiceURL != "" {
		return rl.ServiceURL
	}

	host := r.Header.Get("X-Forwarded-Host")
	if host == "" {
		host = r.Host
	}
	proto := r.Header.Get("X-Forwarded-Proto")
	if proto == "" {
		if host == "localhost" {
			proto = "http"
		} else if strings.Contains(host, ":") {
			// has a port number
			proto = "http"
		} else if _, err := strconv.Atoi(strings.ReplaceAll(host, ".", "")); err == nil {
			// it's a naked IP
			proto = "http"
		} else {
			proto = "https"
		}
	}
	return proto + "://" + host
}
