package nip90

import (
	"slices"

	nostr "github.com/nbd-wtf/go-nostr"
)

// Status is the second element of a feedback event's "status" tag.
type Status string

// The job feedback statuses of NIP-90.
const (
	StatusPaymentRequired Status = "payment-required" // pay before the provider goes on
	StatusProcessing      Status = "processing"
	StatusError           Status = "error" // the provider could not do the job
	StatusSuccess         Status = "success"
	StatusPartial         Status = "partial" // Content may hold a sample of the result
)

func (s Status) known() bool {
	switch s {
	case StatusPaymentRequired, StatusProcessing, StatusError, StatusSuccess, StatusPartial:
		return true
	}
	return false
}

// JobFeedback is a job feedback event (kind 7000), published by a service provider.
type JobFeedback struct {
	ID, PubKey string
	CreatedAt  nostr.Timestamp
	JobID      string // "e" tag: the job request (required)
	JobRelay   string // relay hint in the "e" tag
	Customer   string // "p" tag: the requester
	Status     Status
	Info       string // extra human-readable info in the status tag (3rd element)
	Amount     *Amount
	Content    string     // empty, or a partial result
	Extra      nostr.Tags // tags this package does not interpret (e.g. "lease"), in order
}

// ParseJobFeedback validates evt as job feedback. It returns an error wrapping ErrWrongKind if
// the kind is not 7000, a *TagError (ErrBadTag) naming the first malformed or duplicated tag,
// or ErrMissingTag if the "status" or "e" tag is absent.
func ParseJobFeedback(evt *nostr.Event) (*JobFeedback, error) {
	if evt == nil {
		return nil, errNilEvent
	}
	if evt.Kind != KindFeedback {
		return nil, wrongKind(evt.Kind, "job feedback (7000)")
	}
	f := &JobFeedback{ID: evt.ID, PubKey: evt.PubKey, CreatedAt: evt.CreatedAt, Content: evt.Content}
	single := once{}
	for i, tag := range evt.Tags {
		name := elem(tag, 0)
		switch name {
		case "status", "amount", "e", "p":
			if err := single.check(name, i); err != nil {
				return nil, err
			}
		}
		var err error
		switch name {
		case "status":
			f.Status, f.Info = Status(elem(tag, 1)), elem(tag, 2)
			if !f.Status.known() {
				err = badTag(name, i, "status %q is not one of payment-required, processing, error, success, partial", f.Status)
			}
		case "amount":
			f.Amount, err = parseAmount(tag, i)
		case "e":
			f.JobID, f.JobRelay, err = parseEvent(tag, i)
		case "p":
			f.Customer, err = parsePubKey(tag, i)
		default:
			f.Extra = append(f.Extra, slices.Clone(tag))
		}
		if err != nil {
			return nil, err
		}
	}
	if _, ok := single["status"]; !ok {
		return nil, missingTag("status")
	}
	if _, ok := single["e"]; !ok {
		return nil, missingTag("e")
	}
	return f, nil
}

// Tags returns f's tags in a fixed order: status, amount, e, p, then Extra.
func (f *JobFeedback) Tags() nostr.Tags {
	tags := make(nostr.Tags, 0, 4+len(f.Extra))
	tags = append(tags, trimTag(nostr.Tag{"status", string(f.Status), f.Info}))
	if f.Amount != nil {
		tags = append(tags, amountTag(f.Amount))
	}
	tags = append(tags, eventTag(f.JobID, f.JobRelay))
	if f.Customer != "" {
		tags = append(tags, nostr.Tag{"p", f.Customer})
	}
	return appendClones(tags, f.Extra)
}

// Event returns f as an unsigned kind 7000 event, ready for Sign.
func (f *JobFeedback) Event() nostr.Event {
	return nostr.Event{Kind: KindFeedback, CreatedAt: f.CreatedAt, Tags: f.Tags(), Content: f.Content}
}

// appendClones appends copies of extra, so the event built does not share arrays with the
// value it was built from.
func appendClones(tags, extra nostr.Tags) nostr.Tags {
	for _, tag := range extra {
		tags = append(tags, slices.Clone(tag))
	}
	return tags
}
