package nip90

import (
	"mime"
	"slices"
	"strconv"

	nostr "github.com/nbd-wtf/go-nostr"
)

// JobRequest is a job request event (kind 5000-5999), published by a customer.
type JobRequest struct {
	ID, PubKey string
	Kind       int
	CreatedAt  nostr.Timestamp
	Inputs     []Input
	Output     string   // "output" MIME type, "" if absent
	Params     []Param  // "param" tags, in order
	BidMsat    int64    // "bid": the most the customer will pay; 0 when absent
	Relays     []string // "relays" tag values: where providers should publish responses
	Providers  []string // hex pubkeys from "p" tags: the providers the customer wants
	Topics     []string // "t"
	// Encrypted is set by an ["encrypted"] tag: the inputs and params are in the NIP-04/44
	// encrypted Content, and only the "p" tags are in the clear.
	Encrypted  bool
	Expiration nostr.Timestamp // NIP-40 "expiration", 0 when absent
	Content    string
}

// ParseJobRequest validates evt as a job request. It returns an error wrapping ErrWrongKind if
// the kind is not 5000-5999, a *TagError (ErrBadTag) naming the first malformed or duplicated
// tag, or ErrMissingTag if an encrypted request has no "p" tag. Unknown tags are ignored.
func ParseJobRequest(evt *nostr.Event) (*JobRequest, error) {
	if evt == nil {
		return nil, errNilEvent
	}
	if !IsRequestKind(evt.Kind) {
		return nil, wrongKind(evt.Kind, "a job request kind (5000-5999)")
	}
	r := &JobRequest{ID: evt.ID, PubKey: evt.PubKey, Kind: evt.Kind, CreatedAt: evt.CreatedAt, Content: evt.Content}
	single := once{}
	for i, tag := range evt.Tags {
		if len(tag) == 0 {
			continue
		}
		switch name := tag[0]; name {
		case "i":
			in, err := parseInput(tag, i, true)
			if err != nil {
				return nil, err
			}
			r.Inputs = append(r.Inputs, in)
		case "output":
			if err := single.check(name, i); err != nil {
				return nil, err
			}
			if _, _, err := mime.ParseMediaType(elem(tag, 1)); err != nil {
				return nil, badTag(name, i, "output %q is not a MIME type", elem(tag, 1))
			}
			r.Output = tag[1]
		case "param":
			if len(tag) < 3 || tag[1] == "" {
				return nil, badTag(name, i, "param needs a name and a value")
			}
			r.Params = append(r.Params, Param{Name: tag[1], Values: slices.Clone(tag[2:])})
		case "bid":
			if err := single.check(name, i); err != nil {
				return nil, err
			}
			bid, ok := parseCount(elem(tag, 1))
			if !ok {
				return nil, badTag(name, i, "bid %q is not a non-negative integer of millisats", elem(tag, 1))
			}
			r.BidMsat = bid
		case "relays":
			for _, relay := range tag[1:] {
				if !isRelayURL(relay) {
					return nil, badTag(name, i, "relay %q is not a ws:// or wss:// URL", relay)
				}
				r.Relays = append(r.Relays, relay)
			}
		case "p":
			pk, err := parsePubKey(tag, i)
			if err != nil {
				return nil, err
			}
			r.Providers = append(r.Providers, pk)
		case "t":
			if elem(tag, 1) == "" {
				return nil, badTag(name, i, "topic is empty")
			}
			r.Topics = append(r.Topics, tag[1])
		case "encrypted":
			r.Encrypted = true
		case "expiration":
			if err := single.check(name, i); err != nil {
				return nil, err
			}
			exp, ok := parseCount(elem(tag, 1))
			if !ok {
				return nil, badTag(name, i, "expiration %q is not a unix timestamp", elem(tag, 1))
			}
			r.Expiration = nostr.Timestamp(exp)
		}
	}
	if r.Encrypted && len(r.Providers) == 0 {
		return nil, missingTag("p")
	}
	return r, nil
}

// Tags returns r's tags in a fixed order: i, param, output, relays, bid, p, t, expiration,
// encrypted. Zero values (no output, a bid or expiration of 0) are left out.
func (r *JobRequest) Tags() nostr.Tags {
	tags := make(nostr.Tags, 0, len(r.Inputs)+len(r.Params)+len(r.Providers)+len(r.Topics)+5)
	for _, in := range r.Inputs {
		tags = append(tags, inputTag(in))
	}
	for _, p := range r.Params {
		tags = append(tags, append(nostr.Tag{"param", p.Name}, p.Values...))
	}
	if r.Output != "" {
		tags = append(tags, nostr.Tag{"output", r.Output})
	}
	if len(r.Relays) > 0 {
		tags = append(tags, append(nostr.Tag{"relays"}, r.Relays...))
	}
	if r.BidMsat != 0 {
		tags = append(tags, nostr.Tag{"bid", strconv.FormatInt(r.BidMsat, 10)})
	}
	for _, pk := range r.Providers {
		tags = append(tags, nostr.Tag{"p", pk})
	}
	for _, t := range r.Topics {
		tags = append(tags, nostr.Tag{"t", t})
	}
	if r.Expiration != 0 {
		tags = append(tags, nostr.Tag{"expiration", strconv.FormatInt(int64(r.Expiration), 10)})
	}
	if r.Encrypted {
		tags = append(tags, nostr.Tag{"encrypted"})
	}
	return tags
}

// Event returns r as an unsigned event (Kind, CreatedAt, Tags, Content), ready for Sign.
func (r *JobRequest) Event() nostr.Event {
	return nostr.Event{Kind: r.Kind, CreatedAt: r.CreatedAt, Tags: r.Tags(), Content: r.Content}
}

// Param returns the first value of the first param called name, and whether there was one.
func (r *JobRequest) Param(name string) (string, bool) {
	for _, p := range r.Params {
		if p.Name == name && len(p.Values) > 0 {
			return p.Values[0], true
		}
	}
	return "", false
}
