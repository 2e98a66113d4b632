package worker

import (
	"errors"
	"strings"
	"testing"

	"github.com/nbd-wtf/go-nostr"

	"github.com/sparecycles/sparecycles/nips/nip90"
)

func TestParseInfo(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want relayInfo
	}{
		{"sparecycles relay",
			`{"name":"r","limitation":{"max_message_length":524288,"max_content_length":262144,"max_limit":500},
			  "job_leases":{"version":1,"max_seconds":600,"skew_seconds":60},"max_event_bytes":262144}`,
			relayInfo{leases: true, limits: sizeLimits{event: 262144, content: 262144, message: 524288}}},
		{"plain relay says nothing", `{"name":"khatru","supported_nips":[1,11]}`, relayInfo{}},
		{"standard limitation only", `{"limitation":{"max_content_length":65535}}`, relayInfo{limits: sizeLimits{content: 65535}}},
		{"written as a float", `{"limitation":{"max_message_length":65535.0}}`, relayInfo{limits: sizeLimits{message: 65535}}},
		{"zero is unknown", `{"limitation":{"max_message_length":0},"max_event_bytes":0}`, relayInfo{}},
		{"negative is unknown", `{"limitation":{"max_content_length":-1}}`, relayInfo{}},
		{"fraction is unknown", `{"max_event_bytes":1000.5}`, relayInfo{}},
		{"string is unknown", `{"max_event_bytes":"1000"}`, relayInfo{}},
		{"huge is unknown", `{"max_event_bytes":1e300}`, relayInfo{}},
		{"limitation not an object", `{"limitation":[1,2],"max_event_bytes":4096}`, relayInfo{limits: sizeLimits{event: 4096}}},
		{"lease without max_seconds", `{"job_leases":{"version":1}}`, relayInfo{}},
		{"not json", `<html>hello</html>`, relayInfo{}},
		{"empty", ``, relayInfo{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := parseInfo([]byte(tc.doc)); got != tc.want {
				t.Fatalf("parseInfo = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestSizeCheck(t *testing.T) {
	sk := nostr.GeneratePrivateKey()
	result := func(content string, tags ...nostr.Tag) *nostr.Event {
		evt := &nostr.Event{Kind: 6800, CreatedAt: 1700000000, Content: content, Tags: nostr.Tags(tags)}
		if err := evt.Sign(sk); err != nil {
			t.Fatal(err)
		}
		return evt
	}
	size := func(evt *nostr.Event) int {
		b, err := evt.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		return len(b)
	}
	small := result("hello")
	big := result(strings.Repeat("x", 70_000))
	bigTags := result("tiny", nostr.Tag{"request", strings.Repeat("y", 70_000)})
	quoted := result(strings.Repeat(`"`, 1000)) // 1000 content bytes, 2000 escaped

	tests := []struct {
		name   string
		limits sizeLimits
		evt    *nostr.Event
		want   string // "" fits; else the feedback text
	}{
		{"nothing advertised", sizeLimits{}, big, ""},
		{"fits every limit", sizeLimits{event: 1000, content: 1000, message: 1000}, small, ""},
		{"event exactly at the limit", sizeLimits{event: size(small)}, small, ""},
		{"event one byte over", sizeLimits{event: size(small) - 1}, small,
			"result is " + thousands(int64(size(small))) + " bytes, more than the " + thousands(int64(size(small)-1)) + " bytes relay wss://r accepts"},
		{"content over", sizeLimits{content: 65535}, big, "result content is 70,000 bytes, more than the 65,535 bytes relay wss://r accepts"},
		{"event limit reported before content", sizeLimits{event: 65535, content: 65535}, big,
			"result is " + thousands(int64(size(big))) + " bytes, more than the 65,535 bytes relay wss://r accepts"},
		{"tags count toward the event, not the content", sizeLimits{content: 65535}, bigTags, ""},
		{"tags over the event limit", sizeLimits{event: 65535}, bigTags,
			"result is " + thousands(int64(size(bigTags))) + " bytes, more than the 65,535 bytes relay wss://r accepts"},
		{"envelope tips the message over", sizeLimits{message: size(small) + 5}, small,
			"result message is " + thousands(int64(size(small)+10)) + " bytes, more than the " + thousands(int64(size(small)+5)) + " bytes relay wss://r accepts"},
		{"message with room for the envelope", sizeLimits{message: size(small) + 10}, small, ""},
		{"escaping counts toward the event", sizeLimits{event: 1500, content: 1500}, quoted,
			"result is " + thousands(int64(size(quoted))) + " bytes, more than the 1,500 bytes relay wss://r accepts"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.limits.check(tc.evt, "wss://r")
			if tc.want == "" {
				if err != nil {
					t.Fatalf("check: %v, want it to fit", err)
				}
				return
			}
			var tl *tooLarge
			if !errors.As(err, &tl) || err.Error() != tc.want {
				t.Fatalf("check: %v\nwant: %s", err, tc.want)
			}
		})
	}
}

func TestThousands(t *testing.T) {
	tests := []struct {
		in   int64
		want string
	}{
		{0, "0"}, {7, "7"}, {999, "999"}, {1000, "1,000"}, {65535, "65,535"}, {312004, "312,004"},
		{262144, "262,144"}, {1234567, "1,234,567"}, {-1234, "-1,234"},
	}
	for _, tc := range tests {
		if got := thousands(tc.in); got != tc.want {
			t.Errorf("thousands(%d) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestCopiedInputs(t *testing.T) {
	url := nip90.Input{Value: "https://example.com/page.png", Type: nip90.InputURL}
	event := nip90.Input{Value: strings.Repeat("ab", 32), Type: nip90.InputEvent, Relay: "wss://r", Marker: "source"}
	inline := nip90.Input{Value: "data:image/png;base64," + strings.Repeat("A", 40_000), Type: nip90.InputURL}
	tensorDoc := nip90.Input{Value: `{"inputs":[` + strings.Repeat("0,", 3000) + `]}`, Type: nip90.InputText}
	tests := []struct {
		name string
		in   []nip90.Input
		want int // inputs copied
	}{
		{"none", nil, 0},
		{"a url", []nip90.Input{url}, 1},
		{"several small", []nip90.Input{url, event, url}, 3},
		{"an inline image", []nip90.Input{inline}, 0},
		{"a tensor document", []nip90.Input{tensorDoc}, 0},
		{"all or none", []nip90.Input{url, inline}, 0},
		{"at the bound", []nip90.Input{{Value: strings.Repeat("x", maxCopiedInputs-len(nip90.InputText)), Type: nip90.InputText}}, 1},
		{"one byte over", []nip90.Input{{Value: strings.Repeat("x", maxCopiedInputs+1-len(nip90.InputText)), Type: nip90.InputText}}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := copiedInputs(tc.in); len(got) != tc.want {
				t.Fatalf("copied %d inputs, want %d", len(got), tc.want)
			}
		})
	}
}
