package nip90

import (
	"encoding/json"
	"slices"

	nostr "github.com/nbd-wtf/go-nostr"
)

// JobResult is a job result event (kind 6000-6999), published by a service provider. Its kind
// is the request's kind plus 1000.
type JobResult struct {
	ID, PubKey string
	Kind       int
	CreatedAt  nostr.Timestamp
	Request    string  // the "request" tag: the request event as stringified JSON ("" if absent)
	JobID      string  // "e" tag: the job request (required)
	JobRelay   string  // relay hint in the "e" tag
	Customer   string  // "p" tag: the requester
	Inputs     []Input // "i" tags copied from the request
	Amount     *Amount
	Content    string     // the payload
	Extra      nostr.Tags // tags this package does not interpret (e.g. ["encrypted"]), in order
}

// ParseJobResult validates evt as a job result. It returns an error wrapping ErrWrongKind if
// the kind is not 6000-6999, a *TagError (ErrBadTag) naming the first malformed or duplicated
// tag, or ErrMissingTag if the "e" tag is absent. A "request" tag must hold an event whose kind
// is evt's minus 1000 and whose id, if set, matches the "e" tag.
func ParseJobResult(evt *nostr.Event) (*JobResult, error) {
	if evt == nil {
		return nil, errNilEvent
	}
	if !IsResultKind(evt.Kind) {
		return nil, wrongKind(evt.Kind, "a job result kind (6000-6999)")
	}
	r := &JobResult{ID: evt.ID, PubKey: evt.PubKey, Kind: evt.Kind, CreatedAt: evt.CreatedAt, Content: evt.Content}
	var requestID string
	single := once{}
	for i, tag := range evt.Tags {
		name := elem(tag, 0)
		switch name {
		case "request", "amount", "e", "p":
			if err := single.check(name, i); err != nil {
				return nil, err
			}
		}
		var err error
		switch name {
		case "request":
			var req *nostr.Event
			r.Request = elem(tag, 1)
			if req, err = decodeRequest(r.Request, i); err == nil {
				requestID = req.ID
				if req.Kind != RequestKind(evt.Kind) {
					err = badTag(name, i, "request kind %d is not %d, the result kind minus 1000", req.Kind, RequestKind(evt.Kind))
				}
			}
		case "e":
			r.JobID, r.JobRelay, err = parseEvent(tag, i)
		case "p":
			r.Customer, err = parsePubKey(tag, i)
		case "i":
			var in Input
			if in, err = parseInput(tag, i, false); err == nil {
				r.Inputs = append(r.Inputs, in)
			}
		case "amount":
			r.Amount, err = parseAmount(tag, i)
		default:
			r.Extra = append(r.Extra, slices.Clone(tag))
		}
		if err != nil {
			return nil, err
		}
	}
	if _, ok := single["e"]; !ok {
		return nil, missingTag("e")
	}
	if requestID != "" && requestID != r.JobID {
		return nil, badTag("request", single["request"], "request id %q is not the e tag's %q", requestID, r.JobID)
	}
	return r, nil
}

func decodeRequest(s string, index int) (*nostr.Event, error) {
	var req nostr.Event
	if err := json.Unmarshal([]byte(s), &req); err != nil {
		return nil, badTag("request", index, "not a stringified event: %v", err)
	}
	return &req, nil
}

// Tags returns r's tags in a fixed order: request, e, i, p, amount, then Extra.
func (r *JobResult) Tags() nostr.Tags {
	tags := make(nostr.Tags, 0, 4+len(r.Inputs)+len(r.Extra))
	if r.Request != "" {
		tags = append(tags, nostr.Tag{"request", r.Request})
	}
	tags = append(tags, eventTag(r.JobID, r.JobRelay))
	for _, in := range r.Inputs {
		tags = append(tags, inputTag(in))
	}
	if r.Customer != "" {
		tags = append(tags, nostr.Tag{"p", r.Customer})
	}
	if r.Amount != nil {
		tags = append(tags, amountTag(r.Amount))
	}
	return appendClones(tags, r.Extra)
}

// Event returns r as an unsigned event (Kind, CreatedAt, Tags, Content), ready for Sign.
func (r *JobResult) Event() nostr.Event {
	return nostr.Event{Kind: r.Kind, CreatedAt: r.CreatedAt, Tags: r.Tags(), Content: r.Content}
}

// RequestEvent decodes the "request" tag. It returns an error wrapping ErrMissingTag if there
// is none, or a *TagError (ErrBadTag, Index -1) if it is not event JSON. It does not check the
// request's signature.
func (r *JobResult) RequestEvent() (*nostr.Event, error) {
	if r.Request == "" {
		return nil, missingTag("request")
	}
	return decodeRequest(r.Request, -1)
}
