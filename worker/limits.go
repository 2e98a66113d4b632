package worker

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"

	"github.com/nbd-wtf/go-nostr"

	"github.com/sparecycles/sparecycles/nips/lease"
)

// relayInfo is what the worker takes from a relay's NIP-11 document. Whatever is missing or
// malformed reads as unknown: plain relays often advertise nothing, and a worker that cannot
// read the document still speaks plain NIP-90 there.
type relayInfo struct {
	leases bool // job_leases (nips/lease.md): the relay coordinates leases
	limits sizeLimits
}

// sizeLimits are the largest events a relay says it takes, in bytes; 0 means it did not say.
type sizeLimits struct {
	event   int // max_event_bytes, sparecycles relays: the serialized event (NIP-11 has no field for it)
	content int // limitation.max_content_length: the event's content
	message int // limitation.max_message_length: the whole ["EVENT", …] websocket message
}

// known reports whether the relay advertised any size limit.
func (s sizeLimits) known() bool { return s.event > 0 || s.content > 0 || s.message > 0 }

// parseInfo reads a NIP-11 document. It never fails: what it cannot read is unknown.
func parseInfo(doc []byte) relayInfo {
	var top map[string]json.RawMessage
	if json.Unmarshal(doc, &top) != nil {
		return relayInfo{}
	}
	var info relayInfo
	var li lease.Info
	info.leases = json.Unmarshal(top[lease.InfoKey], &li) == nil && li.Version >= 1 && li.MaxSeconds > 0
	info.limits.event = positiveInt(top["max_event_bytes"])
	var limitation map[string]json.RawMessage
	if json.Unmarshal(top["limitation"], &limitation) == nil {
		info.limits.content = positiveInt(limitation["max_content_length"])
		info.limits.message = positiveInt(limitation["max_message_length"])
	}
	return info
}

// positiveInt reads a JSON number that is a positive whole number (65535.0 counts: relay
// operators write these documents by hand), else 0 (unknown).
func positiveInt(raw json.RawMessage) int {
	var v float64
	if json.Unmarshal(raw, &v) != nil || v < 1 || v != math.Trunc(v) || v > math.MaxInt32 {
		return 0
	}
	return int(v)
}

// eventEnvelope is what ["EVENT",] adds to an event's JSON on the wire.
const eventEnvelope = len(`["EVENT",]`)

// check returns a *tooLarge error, whose text is for the customer, naming the first limit
// evt exceeds (event, content, message), or nil when it is within every limit the relay
// advertised. The content is counted in bytes, as our relay and eventstore's LMDB count it;
// NIP-11 says characters, which are never more, so a result that passes here passes there.
func (s sizeLimits) check(evt *nostr.Event, relay string) error {
	if !s.known() {
		return nil
	}
	b, err := evt.MarshalJSON()
	if err != nil {
		return nil // not ours to judge: publishing it will fail and say why
	}
	if s.event > 0 && len(b) > s.event {
		return &tooLarge{Relay: relay, What: "result", Size: len(b), Limit: s.event}
	}
	if s.content > 0 && len(evt.Content) > s.content {
		return &tooLarge{Relay: relay, What: "result content", Size: len(evt.Content), Limit: s.content}
	}
	if n := len(b) + eventEnvelope; s.message > 0 && n > s.message {
		return &tooLarge{Relay: relay, What: "result message", Size: n, Limit: s.message}
	}
	return nil
}

// tooLarge is a result bigger than a relay says it takes. Its text goes to the customer.
type tooLarge struct {
	Relay       string
	What        string // "result", "result content" or "result message"
	Size, Limit int
}

func (e *tooLarge) Error() string {
	return fmt.Sprintf("%s is %s bytes, more than the %s bytes relay %s accepts", e.What, thousands(int64(e.Size)), thousands(int64(e.Limit)), e.Relay)
}

// thousands writes n with comma separators (312004 → "312,004"), so sizes and amounts in
// feedback read at a glance.
func thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := n < 0
	if neg {
		s = s[1:]
	}
	out := make([]byte, 0, len(s)+len(s)/3+1)
	if neg {
		out = append(out, '-')
	}
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	return string(out)
}
