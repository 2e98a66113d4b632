package nip90

import nostr "github.com/nbd-wtf/go-nostr"

// Event kinds reserved by NIP-90.
const (
	KindRequestMin = 5000
	KindRequestMax = 5999
	KindResultMin  = 6000
	KindResultMax  = 6999
	KindFeedback   = 7000
)

// resultOffset is how far a result kind sits above its request kind.
const resultOffset = 1000

// IsRequestKind reports whether kind is a job request kind (5000-5999).
func IsRequestKind(kind int) bool { return kind >= KindRequestMin && kind <= KindRequestMax }

// IsResultKind reports whether kind is a job result kind (6000-6999).
func IsResultKind(kind int) bool { return kind >= KindResultMin && kind <= KindResultMax }

// ResultKind returns the result kind that answers requestKind (request + 1000).
// It does not check that requestKind is in range; see IsRequestKind.
func ResultKind(requestKind int) int { return requestKind + resultOffset }

// RequestKind returns the request kind that resultKind answers (result - 1000).
// It does not check that resultKind is in range; see IsResultKind.
func RequestKind(resultKind int) int { return resultKind - resultOffset }

// JobID returns the value of the first "e" tag of evt, the job a feedback or result event is
// about, or "" if there is none. It neither checks the kind nor validates the id: it is the
// relay's cheap routing key, and a full Parse still decides whether the event is acceptable.
func JobID(evt *nostr.Event) string {
	if evt == nil {
		return ""
	}
	for _, tag := range evt.Tags {
		if len(tag) >= 2 && tag[0] == "e" {
			return tag[1]
		}
	}
	return ""
}
