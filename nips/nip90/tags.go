package nip90

import (
	"net/url"
	"strconv"
	"strings"

	nostr "github.com/nbd-wtf/go-nostr"
)

// Input is one "i" tag: ["i", value, type, relay?, marker?].
type Input struct {
	Value  string // the data, a URL or an event id, depending on Type
	Type   string // one of InputURL, InputEvent, InputJob, InputText
	Relay  string // where the event or job was published; "" if not given
	Marker string // how the job should use this input; "" if not given
}

// Input types, the third element of an "i" tag.
const (
	InputURL   = "url"   // Value is a URL to fetch
	InputEvent = "event" // Value is a nostr event id
	InputJob   = "job"   // Value is the id of a job request whose result is the input
	InputText  = "text"  // Value is the input itself
)

// Param is one ["param", name, value...] tag.
type Param struct {
	Name   string
	Values []string
}

// Amount is an ["amount", msats, bolt11?] tag: what a service provider asks to be paid.
type Amount struct {
	Msat   int64
	Bolt11 string // "" if not given
}

// elem returns tag[i], or "" when the tag is shorter.
func elem(tag nostr.Tag, i int) string {
	if i < len(tag) {
		return tag[i]
	}
	return ""
}

// trimTag drops trailing empty optional elements, so an absent relay or marker is not written
// as "". Name and value stay.
func trimTag(tag nostr.Tag) nostr.Tag {
	for len(tag) > 2 && tag[len(tag)-1] == "" {
		tag = tag[:len(tag)-1]
	}
	return tag
}

// parseInput reads an "i" tag. Requests must give a type; results, whose spec example copies
// inputs as ["i", "<input-data>"], may leave it out.
func parseInput(tag nostr.Tag, index int, needType bool) (Input, error) {
	in := Input{Value: elem(tag, 1), Type: elem(tag, 2), Relay: elem(tag, 3), Marker: elem(tag, 4)}
	if in.Value == "" {
		return Input{}, badTag("i", index, "input has no value")
	}
	switch in.Type {
	case InputURL:
		if !isInputURL(in.Value) {
			return Input{}, badTag("i", index, "url input %q is not an absolute http, https or data URL", short(in.Value))
		}
	case InputEvent, InputJob:
		if !isHexID(in.Value) {
			return Input{}, badTag("i", index, "%s input %q is not 64 lowercase hex characters", in.Type, in.Value)
		}
	case InputText:
	case "":
		if needType {
			return Input{}, badTag("i", index, "input has no type (url, event, job or text)")
		}
	default:
		return Input{}, badTag("i", index, "input type %q is not one of url, event, job, text", in.Type)
	}
	if in.Relay != "" && !isRelayURL(in.Relay) {
		return Input{}, badTag("i", index, "input relay %q is not a ws:// or wss:// URL", in.Relay)
	}
	return in, nil
}

func inputTag(in Input) nostr.Tag {
	return trimTag(nostr.Tag{"i", in.Value, in.Type, in.Relay, in.Marker})
}

func parseAmount(tag nostr.Tag, index int) (*Amount, error) {
	msat, ok := parseCount(elem(tag, 1))
	if !ok {
		return nil, badTag("amount", index, "amount %q is not a non-negative integer of millisats", elem(tag, 1))
	}
	return &Amount{Msat: msat, Bolt11: elem(tag, 2)}, nil
}

func amountTag(a *Amount) nostr.Tag {
	return trimTag(nostr.Tag{"amount", strconv.FormatInt(a.Msat, 10), a.Bolt11})
}

// parseEvent reads an ["e", id, relay?] tag into its id and relay hint.
func parseEvent(tag nostr.Tag, index int) (id, relay string, err error) {
	id, relay = elem(tag, 1), elem(tag, 2)
	if !isHexID(id) {
		return "", "", badTag("e", index, "job id %q is not 64 lowercase hex characters", id)
	}
	if relay != "" && !isRelayURL(relay) {
		return "", "", badTag("e", index, "relay hint %q is not a ws:// or wss:// URL", relay)
	}
	return id, relay, nil
}

func eventTag(id, relay string) nostr.Tag { return trimTag(nostr.Tag{"e", id, relay}) }

func parsePubKey(tag nostr.Tag, index int) (string, error) {
	pk := elem(tag, 1)
	if !isHexID(pk) {
		return "", badTag("p", index, "pubkey %q is not 64 lowercase hex characters", pk)
	}
	return pk, nil
}

// parseCount parses a non-negative decimal integer that fits an int64. strconv alone would
// also take a sign.
func parseCount(s string) (int64, bool) {
	if s == "" {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil
}

// isHexID reports whether s is 32 bytes in lowercase hex, the form of event ids and pubkeys.
func isHexID(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// isInputURL accepts absolute http and https URLs, and data: URLs (RFC 2397) for customers
// that cannot host a file.
func isInputURL(s string) bool {
	if rest, ok := strings.CutPrefix(s, "data:"); ok {
		return strings.Contains(rest, ",")
	}
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

// short keeps error messages readable when a value is a whole data: URL.
func short(s string) string {
	if len(s) > 80 {
		return s[:77] + "..."
	}
	return s
}

func isRelayURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "ws" || u.Scheme == "wss") && u.Host != ""
}

// once remembers where each single-use tag first appeared.
type once map[string]int

// check returns a *TagError if name was seen before, and otherwise records it at index.
func (o once) check(name string, index int) error {
	if first, ok := o[name]; ok {
		return duplicate(name, index, first)
	}
	o[name] = index
	return nil
}
