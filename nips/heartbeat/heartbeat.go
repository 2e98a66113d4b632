// Package heartbeat reads and writes worker heartbeats (spec: nips/heartbeat.md): kind 11998,
// a replaceable event a data vending machine publishes every few minutes so customers can tell
// a live machine from a stale NIP-89 announcement. The base format is the one nostrdvm emits
// and Amethyst reads (open proposal nostr-protocol/nips#2465): a "d" tag naming the NIP-89
// announcement, a NIP-40 "expiration" one interval ahead, a free-text content; a reader counts
// the machine alive while its latest beat is at most MaxAge old.
//
// sparecycles adds tags that other readers may ignore: "status" (one of ready, busy, paused,
// offline), "queue" (jobs waiting), "k" (job kinds served) and "provider" (the execution
// provider, e.g. ONNX Runtime's CPUExecutionProvider).
package heartbeat

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/nbd-wtf/go-nostr"
)

// Kind is the heartbeat event kind (replaceable: a relay keeps the latest per pubkey).
const Kind = 11998

// MaxAge is how old the latest beat may be for its author to count as alive (Amethyst's
// threshold: three missed 300 s beats).
const MaxAge = 900 * time.Second

// Statuses. A reader treats an unknown status (e.g. nostrdvm's free text) as StatusUnknown.
const (
	StatusReady   = "ready"   // taking jobs
	StatusBusy    = "busy"    // running at capacity; new jobs wait in the queue or are refused
	StatusPaused  = "paused"  // its owner needs the machine: takes no new jobs
	StatusOffline = "offline" // the last beat of a clean stop
	StatusUnknown = ""
)

// Bounds a parser enforces so a hostile event cannot make a reader hold much.
const (
	MaxKinds       = 64
	maxProviderLen = 32
	maxDLen        = 256
)

// Sentinel errors; ErrInvalid is wrapped with the reason.
var (
	ErrWrongKind = errors.New("heartbeat: not a kind 11998 event")
	ErrInvalid   = errors.New("heartbeat: invalid heartbeat")
)

// Beat is one heartbeat.
type Beat struct {
	PubKey     string
	CreatedAt  nostr.Timestamp
	Identifier string          // "d": the NIP-89 announcement's identifier
	Expiration nostr.Timestamp // NIP-40; 0: none
	Content    string
	Status     string // one of the Status constants
	Queue      int    // jobs waiting; -1: not stated
	Kinds      []int  // job kinds served
	Provider   string // execution provider; "": not stated
}

// Alive reports whether b, read at now, counts as alive: at most MaxAge old (maxAge when
// positive) and not an offline beat.
func (b Beat) Alive(now time.Time, maxAge time.Duration) bool {
	if maxAge <= 0 {
		maxAge = MaxAge
	}
	if b.Status == StatusOffline {
		return false
	}
	return now.Sub(b.CreatedAt.Time()) <= maxAge
}

// Event builds the unsigned event for b. It expires (NIP-40) MaxAge after its creation: as long
// as a reader may count it, so a relay that drops expired events keeps it exactly that long.
func (b Beat) Event() nostr.Event {
	created := b.CreatedAt
	if created == 0 {
		created = nostr.Now()
	}
	tags := nostr.Tags{
		{"d", b.Identifier},
		{"expiration", strconv.FormatInt(int64(created)+int64(MaxAge/time.Second), 10)},
	}
	if b.Status != StatusUnknown {
		tags = append(tags, nostr.Tag{"status", b.Status})
	}
	if b.Queue >= 0 {
		tags = append(tags, nostr.Tag{"queue", strconv.Itoa(b.Queue)})
	}
	for _, k := range b.Kinds {
		tags = append(tags, nostr.Tag{"k", strconv.Itoa(k)})
	}
	if b.Provider != "" {
		tags = append(tags, nostr.Tag{"provider", b.Provider})
	}
	return nostr.Event{Kind: Kind, CreatedAt: created, Tags: tags, Content: b.Content}
}

// Parse reads a heartbeat. It accepts nostrdvm's beats (free-text status, no queue) as well as
// ours; a malformed tag of ours is an error wrapping ErrInvalid. The signature is not checked.
func Parse(evt *nostr.Event) (Beat, error) {
	if evt == nil || evt.Kind != Kind {
		return Beat{}, ErrWrongKind
	}
	b := Beat{PubKey: evt.PubKey, CreatedAt: evt.CreatedAt, Content: evt.Content, Queue: -1}
	seen := map[string]bool{}
	for _, t := range evt.Tags {
		if len(t) < 2 {
			continue
		}
		name, v := t[0], t[1]
		switch name {
		case "d", "expiration", "status", "queue", "provider":
			if seen[name] {
				return Beat{}, fmt.Errorf("%w: more than one %q tag", ErrInvalid, name)
			}
			seen[name] = true
		}
		switch name {
		case "d":
			if len(v) > maxDLen {
				return Beat{}, fmt.Errorf("%w: d tag longer than %d", ErrInvalid, maxDLen)
			}
			b.Identifier = v
		case "expiration":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n <= 0 {
				return Beat{}, fmt.Errorf("%w: expiration %q", ErrInvalid, v)
			}
			b.Expiration = nostr.Timestamp(n)
		case "status":
			switch v {
			case StatusReady, StatusBusy, StatusPaused, StatusOffline:
				b.Status = v
			default: // nostrdvm writes free text here
				b.Status = StatusUnknown
			}
		case "queue":
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 || n > 1<<20 {
				return Beat{}, fmt.Errorf("%w: queue %q", ErrInvalid, v)
			}
			b.Queue = n
		case "k":
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 || n > 65535 {
				return Beat{}, fmt.Errorf("%w: kind %q", ErrInvalid, v)
			}
			if len(b.Kinds) >= MaxKinds {
				return Beat{}, fmt.Errorf("%w: more than %d k tags", ErrInvalid, MaxKinds)
			}
			if !slices.Contains(b.Kinds, n) {
				b.Kinds = append(b.Kinds, n)
			}
		case "provider":
			if v == "" || len(v) > maxProviderLen {
				return Beat{}, fmt.Errorf("%w: provider %q", ErrInvalid, v)
			}
			b.Provider = v
		}
	}
	return b, nil
}
