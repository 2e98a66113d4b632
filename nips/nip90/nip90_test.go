package nip90

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	nostr "github.com/nbd-wtf/go-nostr"
)

// Fixed ids and keys for the tables. providerPK is the one in the spec's encrypted example.
var (
	requestID  = strings.Repeat("1", 64)
	feedbackID = strings.Repeat("2", 64)
	resultID   = strings.Repeat("3", 64)
	chainedID  = "b0c7fa3d4a7d6c5b4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d"
	customerPK = "c3b1e5f9a8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b1"
	providerPK = "04f74530a6ede6b24731b976b8e78fb449ea61f40ff10e3d869a3030c4edc91f"
)

const createdAt nostr.Timestamp = 1700000000

// event builds a test event with fixed id, author and time.
func event(id, pubkey string, kind int, content string, tags ...nostr.Tag) nostr.Event {
	return nostr.Event{ID: id, PubKey: pubkey, CreatedAt: createdAt, Kind: kind, Tags: tags, Content: content}
}

func request(kind int, content string, tags ...nostr.Tag) nostr.Event {
	return event(requestID, customerPK, kind, content, tags...)
}

func feedback(content string, tags ...nostr.Tag) nostr.Event {
	return event(feedbackID, providerPK, KindFeedback, content, tags...)
}

func result(kind int, content string, tags ...nostr.Tag) nostr.Event {
	return event(resultID, providerPK, kind, content, tags...)
}

// wantRequest fills in the fields every request in the table shares.
func wantRequest(kind int, r JobRequest) *JobRequest {
	r.ID, r.PubKey, r.Kind, r.CreatedAt = requestID, customerPK, kind, createdAt
	return &r
}

func wantFeedback(f JobFeedback) *JobFeedback {
	f.ID, f.PubKey, f.CreatedAt = feedbackID, providerPK, createdAt
	return &f
}

func wantResult(kind int, r JobResult) *JobResult {
	r.ID, r.PubKey, r.Kind, r.CreatedAt = resultID, providerPK, kind, createdAt
	return &r
}

type requestTest struct {
	name    string
	in      nostr.Event
	want    *JobRequest
	wantErr error
}

var requestTests = []requestTest{
	// The spec's examples, with its placeholders filled in.
	{
		name: "spec job request",
		in: request(5000, "",
			nostr.Tag{"i", "https://example.com/podcast.mp3", "url", "wss://relay.example.com", "audio"},
			nostr.Tag{"output", "text/plain"},
			nostr.Tag{"relays", "wss://relay.example.com"},
			nostr.Tag{"bid", "5000"},
			nostr.Tag{"t", "bitcoin"},
		),
		want: wantRequest(5000, JobRequest{
			Inputs:  []Input{{Value: "https://example.com/podcast.mp3", Type: InputURL, Relay: "wss://relay.example.com", Marker: "audio"}},
			Output:  "text/plain",
			BidMsat: 5000,
			Relays:  []string{"wss://relay.example.com"},
			Topics:  []string{"bitcoin"},
		}),
	},
	{
		name: "spec param example in the clear",
		in: request(5050, "",
			nostr.Tag{"i", "what is the capital of France? ", "text"},
			nostr.Tag{"param", "model", "LLaMA-2"},
			nostr.Tag{"param", "max_tokens", "512"},
			nostr.Tag{"param", "temperature", "0.5"},
			nostr.Tag{"param", "top-k", "50"},
			nostr.Tag{"param", "top-p", "0.7"},
			nostr.Tag{"param", "frequency_penalty", "1"},
		),
		want: wantRequest(5050, JobRequest{
			Inputs: []Input{{Value: "what is the capital of France? ", Type: InputText}},
			Params: []Param{
				{Name: "model", Values: []string{"LLaMA-2"}},
				{Name: "max_tokens", Values: []string{"512"}},
				{Name: "temperature", Values: []string{"0.5"}},
				{Name: "top-k", Values: []string{"50"}},
				{Name: "top-p", Values: []string{"0.7"}},
				{Name: "frequency_penalty", Values: []string{"1"}},
			},
		}),
	},
	{
		name: "spec encrypted params",
		in: request(5050, "BE2Y4xvS6HIY7TozIgbEl3sAHkdZoXyLRRkZv4fLPh3R7LtviLKAJM5qpkC7D6VtMbgIt4iNcMpLtpo...",
			nostr.Tag{"p", providerPK},
			nostr.Tag{"encrypted"},
		),
		want: wantRequest(5050, JobRequest{
			Providers: []string{providerPK},
			Encrypted: true,
			Content:   "BE2Y4xvS6HIY7TozIgbEl3sAHkdZoXyLRRkZv4fLPh3R7LtviLKAJM5qpkC7D6VtMbgIt4iNcMpLtpo...",
		}),
	},
	{
		name: "spec job chaining",
		in: request(5001, "",
			nostr.Tag{"i", chainedID, "job"},
			nostr.Tag{"param", "length", "3"},
		),
		want: wantRequest(5001, JobRequest{
			Inputs: []Input{{Value: chainedID, Type: InputJob}},
			Params: []Param{{Name: "length", Values: []string{"3"}}},
		}),
	},
	{
		name: "all tags optional",
		in:   request(5999, ""),
		want: wantRequest(5999, JobRequest{}),
	},
	{
		name: "event input with relay and marker, several providers",
		in: request(5002, "",
			nostr.Tag{"i", chainedID, "event", "wss://nos.lol", "source"},
			nostr.Tag{"i", "es", "text", "", "target"},
			nostr.Tag{"p", providerPK},
			nostr.Tag{"p", customerPK, "wss://relay.example.com"},
		),
		want: wantRequest(5002, JobRequest{
			Inputs: []Input{
				{Value: chainedID, Type: InputEvent, Relay: "wss://nos.lol", Marker: "source"},
				{Value: "es", Type: InputText, Marker: "target"},
			},
			Providers: []string{providerPK, customerPK},
		}),
	},
	{
		name: "relays across tags, multi-value param, expiration",
		in: request(5100, "",
			nostr.Tag{"relays", "wss://a.example", "ws://127.0.0.1:7447"},
			nostr.Tag{"relays", "wss://b.example/path"},
			nostr.Tag{"param", "range", "0", "10"},
			nostr.Tag{"expiration", "1700003600"},
			nostr.Tag{"output", "text/plain; charset=utf-8"},
		),
		want: wantRequest(5100, JobRequest{
			Relays:     []string{"wss://a.example", "ws://127.0.0.1:7447", "wss://b.example/path"},
			Params:     []Param{{Name: "range", Values: []string{"0", "10"}}},
			Expiration: 1700003600,
			Output:     "text/plain; charset=utf-8",
		}),
	},
	{
		name: "unknown and empty tags ignored",
		in: request(5000, "",
			nostr.Tag{},
			nostr.Tag{"client", "sparecycles"},
			nostr.Tag{"alt", "a job request"},
			nostr.Tag{"i", "hello", "text"},
		),
		want: wantRequest(5000, JobRequest{Inputs: []Input{{Value: "hello", Type: InputText}}}),
	},
	{
		name: "bid max int64",
		in:   request(5000, "", nostr.Tag{"bid", "9223372036854775807"}),
		want: wantRequest(5000, JobRequest{BidMsat: 9223372036854775807}),
	},
	{
		name: "bid zero reads as absent",
		in:   request(5000, "", nostr.Tag{"bid", "0"}),
		want: wantRequest(5000, JobRequest{}),
	},

	// Rejections.
	{name: "kind below range", in: request(4999, ""), wantErr: ErrWrongKind},
	{name: "result kind", in: request(6000, ""), wantErr: ErrWrongKind},
	{name: "feedback kind", in: request(7000, ""), wantErr: ErrWrongKind},
	{name: "input without value", in: request(5000, "", nostr.Tag{"i"}), wantErr: ErrBadTag},
	{name: "input with empty value", in: request(5000, "", nostr.Tag{"i", "", "text"}), wantErr: ErrBadTag},
	{name: "input without type", in: request(5000, "", nostr.Tag{"i", "hello"}), wantErr: ErrBadTag},
	{name: "input of unknown type", in: request(5000, "", nostr.Tag{"i", "hello", "foo"}), wantErr: ErrBadTag},
	{name: "url input not absolute", in: request(5000, "", nostr.Tag{"i", "example.com/a.mp3", "url"}), wantErr: ErrBadTag},
	{name: "url input not http", in: request(5000, "", nostr.Tag{"i", "ftp://example.com/a.mp3", "url"}), wantErr: ErrBadTag},
	{name: "url input without host", in: request(5000, "", nostr.Tag{"i", "https:///a.mp3", "url"}), wantErr: ErrBadTag},
	{name: "event input upper case", in: request(5000, "", nostr.Tag{"i", strings.ToUpper(chainedID), "event"}), wantErr: ErrBadTag},
	{name: "event input short", in: request(5000, "", nostr.Tag{"i", chainedID[:63], "event"}), wantErr: ErrBadTag},
	{name: "job input not hex", in: request(5000, "", nostr.Tag{"i", strings.Repeat("g", 64), "job"}), wantErr: ErrBadTag},
	{name: "input relay not a relay", in: request(5000, "", nostr.Tag{"i", chainedID, "event", "https://nos.lol"}), wantErr: ErrBadTag},
	{name: "output without value", in: request(5000, "", nostr.Tag{"output"}), wantErr: ErrBadTag},
	{name: "output not a MIME type", in: request(5000, "", nostr.Tag{"output", "text plain"}), wantErr: ErrBadTag},
	{name: "output twice", in: request(5000, "", nostr.Tag{"output", "text/plain"}, nostr.Tag{"output", "text/plain"}), wantErr: ErrBadTag},
	{name: "param without value", in: request(5000, "", nostr.Tag{"param", "model"}), wantErr: ErrBadTag},
	{name: "param without name", in: request(5000, "", nostr.Tag{"param", "", "x"}), wantErr: ErrBadTag},
	{name: "bid missing value", in: request(5000, "", nostr.Tag{"bid"}), wantErr: ErrBadTag},
	{name: "bid negative", in: request(5000, "", nostr.Tag{"bid", "-1"}), wantErr: ErrBadTag},
	{name: "bid with plus sign", in: request(5000, "", nostr.Tag{"bid", "+5"}), wantErr: ErrBadTag},
	{name: "bid fractional", in: request(5000, "", nostr.Tag{"bid", "1.5"}), wantErr: ErrBadTag},
	{name: "bid overflows int64", in: request(5000, "", nostr.Tag{"bid", "9223372036854775808"}), wantErr: ErrBadTag},
	{name: "bid twice", in: request(5000, "", nostr.Tag{"bid", "1"}, nostr.Tag{"bid", "1"}), wantErr: ErrBadTag},
	{name: "relays value http", in: request(5000, "", nostr.Tag{"relays", "wss://ok.example", "https://relay.example.com"}), wantErr: ErrBadTag},
	{name: "relays value empty", in: request(5000, "", nostr.Tag{"relays", ""}), wantErr: ErrBadTag},
	{name: "p not hex", in: request(5000, "", nostr.Tag{"p", "npub1xyz"}), wantErr: ErrBadTag},
	{name: "p upper case", in: request(5000, "", nostr.Tag{"p", strings.ToUpper(providerPK)}), wantErr: ErrBadTag},
	{name: "topic empty", in: request(5000, "", nostr.Tag{"t", ""}), wantErr: ErrBadTag},
	{name: "expiration not a number", in: request(5000, "", nostr.Tag{"expiration", "tomorrow"}), wantErr: ErrBadTag},
	{name: "expiration twice", in: request(5000, "", nostr.Tag{"expiration", "1"}, nostr.Tag{"expiration", "2"}), wantErr: ErrBadTag},
	{name: "encrypted without p", in: request(5000, "ciphertext", nostr.Tag{"encrypted"}), wantErr: ErrMissingTag},
}

type feedbackTest struct {
	name    string
	in      nostr.Event
	want    *JobFeedback
	wantErr error
}

var feedbackTests = []feedbackTest{
	{
		name: "spec job feedback",
		in: feedback("",
			nostr.Tag{"status", "payment-required", "pay to continue"},
			nostr.Tag{"amount", "21000", "lnbc210n1pexample"},
			nostr.Tag{"e", requestID, "wss://relay.example.com"},
			nostr.Tag{"p", customerPK},
		),
		want: wantFeedback(JobFeedback{
			JobID: requestID, JobRelay: "wss://relay.example.com", Customer: customerPK,
			Status: StatusPaymentRequired, Info: "pay to continue",
			Amount: &Amount{Msat: 21000, Bolt11: "lnbc210n1pexample"},
		}),
	},
	{
		name: "processing, e only",
		in:   feedback("", nostr.Tag{"e", requestID}, nostr.Tag{"status", "processing"}),
		want: wantFeedback(JobFeedback{JobID: requestID, Status: StatusProcessing}),
	},
	{
		name: "partial with a sample",
		in:   feedback("Paris is the", nostr.Tag{"status", "partial"}, nostr.Tag{"e", requestID}, nostr.Tag{"p", customerPK}),
		want: wantFeedback(JobFeedback{JobID: requestID, Customer: customerPK, Status: StatusPartial, Content: "Paris is the"}),
	},
	{
		name: "error with info, amount without bolt11",
		in:   feedback("", nostr.Tag{"status", "error", "model not loaded"}, nostr.Tag{"amount", "0"}, nostr.Tag{"e", requestID}),
		want: wantFeedback(JobFeedback{JobID: requestID, Status: StatusError, Info: "model not loaded", Amount: &Amount{}}),
	},
	{
		name: "success",
		in:   feedback("", nostr.Tag{"status", "success"}, nostr.Tag{"e", requestID}),
		want: wantFeedback(JobFeedback{JobID: requestID, Status: StatusSuccess}),
	},
	{
		name: "extension tags kept in order",
		in: feedback("",
			nostr.Tag{"lease", "1700000060"},
			nostr.Tag{"status", "processing"},
			nostr.Tag{},
			nostr.Tag{"e", requestID},
			nostr.Tag{"encrypted"},
			nostr.Tag{"alt", "job feedback"},
		),
		want: wantFeedback(JobFeedback{
			JobID: requestID, Status: StatusProcessing,
			Extra: nostr.Tags{{"lease", "1700000060"}, {}, {"encrypted"}, {"alt", "job feedback"}},
		}),
	},

	{name: "request kind", in: event(feedbackID, providerPK, 5000, "", nostr.Tag{"status", "success"}, nostr.Tag{"e", requestID}), wantErr: ErrWrongKind},
	{name: "result kind", in: event(feedbackID, providerPK, 6000, "", nostr.Tag{"status", "success"}, nostr.Tag{"e", requestID}), wantErr: ErrWrongKind},
	{name: "missing status", in: feedback("", nostr.Tag{"e", requestID}), wantErr: ErrMissingTag},
	{name: "missing e", in: feedback("", nostr.Tag{"status", "success"}), wantErr: ErrMissingTag},
	{name: "unknown status", in: feedback("", nostr.Tag{"status", "done"}, nostr.Tag{"e", requestID}), wantErr: ErrBadTag},
	{name: "status without value", in: feedback("", nostr.Tag{"status"}, nostr.Tag{"e", requestID}), wantErr: ErrBadTag},
	{name: "status twice", in: feedback("", nostr.Tag{"status", "processing"}, nostr.Tag{"status", "success"}, nostr.Tag{"e", requestID}), wantErr: ErrBadTag},
	{name: "amount negative", in: feedback("", nostr.Tag{"status", "payment-required"}, nostr.Tag{"amount", "-1000"}, nostr.Tag{"e", requestID}), wantErr: ErrBadTag},
	{name: "amount in sats with unit", in: feedback("", nostr.Tag{"status", "payment-required"}, nostr.Tag{"amount", "21 sats"}, nostr.Tag{"e", requestID}), wantErr: ErrBadTag},
	{name: "amount twice", in: feedback("", nostr.Tag{"status", "payment-required"}, nostr.Tag{"amount", "1"}, nostr.Tag{"amount", "2"}, nostr.Tag{"e", requestID}), wantErr: ErrBadTag},
	{name: "e not hex", in: feedback("", nostr.Tag{"status", "success"}, nostr.Tag{"e", "note1xyz"}), wantErr: ErrBadTag},
	{name: "e empty", in: feedback("", nostr.Tag{"status", "success"}, nostr.Tag{"e"}), wantErr: ErrBadTag},
	{name: "e relay hint not a relay", in: feedback("", nostr.Tag{"status", "success"}, nostr.Tag{"e", requestID, "relay.example.com"}), wantErr: ErrBadTag},
	{name: "e twice", in: feedback("", nostr.Tag{"status", "success"}, nostr.Tag{"e", requestID}, nostr.Tag{"e", chainedID}), wantErr: ErrBadTag},
	{name: "p not hex", in: feedback("", nostr.Tag{"status", "success"}, nostr.Tag{"e", requestID}, nostr.Tag{"p", "xyz"}), wantErr: ErrBadTag},
	{name: "p twice", in: feedback("", nostr.Tag{"status", "success"}, nostr.Tag{"e", requestID}, nostr.Tag{"p", customerPK}, nostr.Tag{"p", providerPK}), wantErr: ErrBadTag},
}

// specRequest is the request the result examples answer; its id is the e tag's.
var specRequest = request(5001, "", nostr.Tag{"i", chainedID, "event"}, nostr.Tag{"output", "text/plain"})

type resultTest struct {
	name    string
	in      nostr.Event
	want    *JobResult
	wantErr error
}

var resultTests = []resultTest{
	{
		name: "spec job result",
		in: result(6001, "A short summary.",
			nostr.Tag{"request", specRequest.String()},
			nostr.Tag{"e", requestID, "wss://relay.example.com"},
			nostr.Tag{"i", "the input data"},
			nostr.Tag{"p", customerPK},
			nostr.Tag{"amount", "2000", "lnbc20n1pexample"},
		),
		want: wantResult(6001, JobResult{
			Request: specRequest.String(), JobID: requestID, JobRelay: "wss://relay.example.com", Customer: customerPK,
			Inputs:  []Input{{Value: "the input data"}},
			Amount:  &Amount{Msat: 2000, Bolt11: "lnbc20n1pexample"},
			Content: "A short summary.",
		}),
	},
	{
		name: "spec encrypted output",
		in: result(6001, "encrypted payload",
			nostr.Tag{"request", specRequest.String()},
			nostr.Tag{"e", requestID, "wss://relay.example.com"},
			nostr.Tag{"p", customerPK},
			nostr.Tag{"amount", "2000", "lnbc20n1pexample"},
			nostr.Tag{"encrypted"},
		),
		want: wantResult(6001, JobResult{
			Request: specRequest.String(), JobID: requestID, JobRelay: "wss://relay.example.com", Customer: customerPK,
			Amount:  &Amount{Msat: 2000, Bolt11: "lnbc20n1pexample"},
			Content: "encrypted payload",
			Extra:   nostr.Tags{{"encrypted"}},
		}),
	},
	{
		name: "e only",
		in:   result(6999, "", nostr.Tag{"e", requestID}),
		want: wantResult(6999, JobResult{JobID: requestID}),
	},
	{
		name: "typed inputs copied, extension tags kept",
		in: result(6050, "Paris.",
			nostr.Tag{"e", requestID},
			nostr.Tag{"i", "what is the capital of France? ", "text"},
			nostr.Tag{"i", "https://example.com/a.txt", "url", "", "context"},
			nostr.Tag{"lease", "abc"},
		),
		want: wantResult(6050, JobResult{
			JobID: requestID,
			Inputs: []Input{
				{Value: "what is the capital of France? ", Type: InputText},
				{Value: "https://example.com/a.txt", Type: InputURL, Marker: "context"},
			},
			Content: "Paris.",
			Extra:   nostr.Tags{{"lease", "abc"}},
		}),
	},
	{
		name: "request without id",
		in:   result(6001, "", nostr.Tag{"request", `{"kind":5001,"tags":[],"content":""}`}, nostr.Tag{"e", requestID}),
		want: wantResult(6001, JobResult{Request: `{"kind":5001,"tags":[],"content":""}`, JobID: requestID}),
	},

	{name: "request kind", in: event(resultID, providerPK, 5001, "", nostr.Tag{"e", requestID}), wantErr: ErrWrongKind},
	{name: "feedback kind", in: event(resultID, providerPK, 7000, "", nostr.Tag{"e", requestID}), wantErr: ErrWrongKind},
	{name: "missing e", in: result(6001, "", nostr.Tag{"p", customerPK}), wantErr: ErrMissingTag},
	{name: "e not hex", in: result(6001, "", nostr.Tag{"e", "xyz"}), wantErr: ErrBadTag},
	{name: "e twice", in: result(6001, "", nostr.Tag{"e", requestID}, nostr.Tag{"e", chainedID}), wantErr: ErrBadTag},
	{name: "p twice", in: result(6001, "", nostr.Tag{"e", requestID}, nostr.Tag{"p", customerPK}, nostr.Tag{"p", customerPK}), wantErr: ErrBadTag},
	{name: "request not JSON", in: result(6001, "", nostr.Tag{"request", "{not json"}, nostr.Tag{"e", requestID}), wantErr: ErrBadTag},
	{name: "request empty", in: result(6001, "", nostr.Tag{"request", ""}, nostr.Tag{"e", requestID}), wantErr: ErrBadTag},
	{name: "request of another kind", in: result(6002, "", nostr.Tag{"request", specRequest.String()}, nostr.Tag{"e", requestID}), wantErr: ErrBadTag},
	{name: "request of another job", in: result(6001, "", nostr.Tag{"request", specRequest.String()}, nostr.Tag{"e", chainedID}), wantErr: ErrBadTag},
	{name: "request twice", in: result(6001, "", nostr.Tag{"request", specRequest.String()}, nostr.Tag{"request", specRequest.String()}, nostr.Tag{"e", requestID}), wantErr: ErrBadTag},
	{name: "input of unknown type", in: result(6001, "", nostr.Tag{"e", requestID}, nostr.Tag{"i", "x", "foo"}), wantErr: ErrBadTag},
	{name: "url input not a URL", in: result(6001, "", nostr.Tag{"e", requestID}, nostr.Tag{"i", "not a url", "url"}), wantErr: ErrBadTag},
	{name: "amount not a number", in: result(6001, "", nostr.Tag{"e", requestID}, nostr.Tag{"amount", "lots"}), wantErr: ErrBadTag},
	{name: "amount twice", in: result(6001, "", nostr.Tag{"e", requestID}, nostr.Tag{"amount", "1"}, nostr.Tag{"amount", "1"}), wantErr: ErrBadTag},
}

func TestParseJobRequest(t *testing.T) {
	for _, tc := range requestTests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseJobRequest(&tc.in)
			checkParse(t, got, err, tc.want, tc.wantErr)
			if err == nil {
				checkReparse(t, &tc.in, got, ParseJobRequest, (*JobRequest).Event)
			}
		})
	}
}

func TestParseJobFeedback(t *testing.T) {
	for _, tc := range feedbackTests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseJobFeedback(&tc.in)
			checkParse(t, got, err, tc.want, tc.wantErr)
			if err == nil {
				checkReparse(t, &tc.in, got, ParseJobFeedback, (*JobFeedback).Event)
			}
		})
	}
}

func TestParseJobResult(t *testing.T) {
	for _, tc := range resultTests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseJobResult(&tc.in)
			checkParse(t, got, err, tc.want, tc.wantErr)
			if err == nil {
				checkReparse(t, &tc.in, got, ParseJobResult, (*JobResult).Event)
			}
		})
	}
}

func checkParse[T any](t *testing.T, got T, err error, want T, wantErr error) {
	t.Helper()
	if wantErr != nil {
		if !errors.Is(err, wantErr) {
			t.Fatalf("err = %v, want %v", err, wantErr)
		}
		return
	}
	if err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got  %+v\nwant %+v", got, want)
	}
}

// checkReparse rebuilds first with its Event method, parses that and wants first back.
func checkReparse[T any](t testing.TB, orig *nostr.Event, first T, parse func(*nostr.Event) (T, error), rebuild func(T) nostr.Event) {
	t.Helper()
	again := rebuild(first)
	again.ID, again.PubKey, again.CreatedAt = orig.ID, orig.PubKey, orig.CreatedAt
	second, err := parse(&again)
	if err != nil {
		t.Fatalf("rebuilt event %v does not parse: %v", again, err)
	}
	if !reflect.DeepEqual(first, second) {
		t.Fatalf("round trip changed the value:\nfirst  %+v\nsecond %+v\nevent  %v", first, second, again)
	}
}

func TestNilEvent(t *testing.T) {
	if _, err := ParseJobRequest(nil); !errors.Is(err, ErrWrongKind) {
		t.Errorf("ParseJobRequest(nil) err = %v", err)
	}
	if _, err := ParseJobFeedback(nil); !errors.Is(err, ErrWrongKind) {
		t.Errorf("ParseJobFeedback(nil) err = %v", err)
	}
	if _, err := ParseJobResult(nil); !errors.Is(err, ErrWrongKind) {
		t.Errorf("ParseJobResult(nil) err = %v", err)
	}
	if id := JobID(nil); id != "" {
		t.Errorf("JobID(nil) = %q", id)
	}
}

func TestErrorText(t *testing.T) {
	tests := []struct {
		name    string
		parse   func() error
		want    string
		wantTag *TagError // nil when the error is not a *TagError
	}{
		{
			name: "bad input type",
			parse: func() error {
				evt := request(5000, "", nostr.Tag{"output", "text/plain"}, nostr.Tag{"bid", "1"}, nostr.Tag{"i", "x", "foo"})
				_, err := ParseJobRequest(&evt)
				return err
			},
			want:    `nip90: tag "i" #2: input type "foo" is not one of url, event, job, text`,
			wantTag: &TagError{Tag: "i", Index: 2, Reason: `input type "foo" is not one of url, event, job, text`},
		},
		{
			name: "duplicate status",
			parse: func() error {
				evt := feedback("", nostr.Tag{"status", "processing"}, nostr.Tag{"e", requestID}, nostr.Tag{"status", "success"})
				_, err := ParseJobFeedback(&evt)
				return err
			},
			want:    `nip90: tag "status" #2: appears more than once (first at #0)`,
			wantTag: &TagError{Tag: "status", Index: 2, Reason: "appears more than once (first at #0)"},
		},
		{
			name: "missing e",
			parse: func() error {
				evt := result(6001, "")
				_, err := ParseJobResult(&evt)
				return err
			},
			want: `nip90: missing tag "e"`,
		},
		{
			name: "wrong kind",
			parse: func() error {
				evt := request(1, "")
				_, err := ParseJobRequest(&evt)
				return err
			},
			want: "nip90: wrong kind: 1 is not a job request kind (5000-5999)",
		},
		{
			name: "undecodable request tag",
			parse: func() error {
				_, err := (&JobResult{Request: "[]"}).RequestEvent()
				return err
			},
			want:    "", // the decoder's words are its own; only the shape is ours
			wantTag: &TagError{Tag: "request", Index: -1},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.parse()
			if err == nil {
				t.Fatal("no error")
			}
			if tc.want != "" && err.Error() != tc.want {
				t.Errorf("err = %q, want %q", err, tc.want)
			}
			var te *TagError
			if isTag := errors.As(err, &te); isTag != (tc.wantTag != nil) {
				t.Fatalf("errors.As(%v, *TagError) = %v, want %v", err, isTag, !isTag)
			}
			if te == nil {
				return
			}
			if !errors.Is(err, ErrBadTag) {
				t.Errorf("errors.Is(%v, ErrBadTag) = false", err)
			}
			if te.Tag != tc.wantTag.Tag || te.Index != tc.wantTag.Index || (tc.wantTag.Reason != "" && te.Reason != tc.wantTag.Reason) {
				t.Errorf("TagError = %+v, want %+v", te, tc.wantTag)
			}
			if tc.wantTag.Index < 0 && !strings.HasPrefix(err.Error(), `nip90: tag "request": `) {
				t.Errorf("err = %q, want no index", err)
			}
		})
	}
}

func TestKinds(t *testing.T) {
	tests := []struct {
		name                string
		in                  int
		isRequest, isResult bool
	}{
		{"below", 4999, false, false},
		{"first request", 5000, true, false},
		{"last request", 5999, true, false},
		{"first result", 6000, false, true},
		{"last result", 6999, false, true},
		{"feedback", 7000, false, false},
		{"text note", 1, false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := IsRequestKind(tc.in); got != tc.isRequest {
				t.Errorf("IsRequestKind(%d) = %v", tc.in, got)
			}
			if got := IsResultKind(tc.in); got != tc.isResult {
				t.Errorf("IsResultKind(%d) = %v", tc.in, got)
			}
		})
	}
	// The spec's own example: kind:5001 gets a result of kind:6001.
	if got := ResultKind(5001); got != 6001 {
		t.Errorf("ResultKind(5001) = %d", got)
	}
	if got := RequestKind(6001); got != 5001 {
		t.Errorf("RequestKind(6001) = %d", got)
	}
}

func TestJobID(t *testing.T) {
	tests := []struct {
		name string
		in   nostr.Event
		want string
	}{
		{"feedback", feedbackTests[0].in, requestID},
		{"result", resultTests[0].in, requestID},
		{"first of several", feedback("", nostr.Tag{"e"}, nostr.Tag{"e", "x"}, nostr.Tag{"e", "y"}), "x"},
		{"none", feedback("", nostr.Tag{"status", "success"}), ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := JobID(&tc.in); got != tc.want {
				t.Errorf("JobID = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestJobRequestParam(t *testing.T) {
	r := requestTests[1].want
	tests := []struct {
		name   string
		in     string
		want   string
		wantOK bool
	}{
		{"present", "max_tokens", "512", true},
		{"absent", "seed", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := r.Param(tc.in)
			if got != tc.want || ok != tc.wantOK {
				t.Errorf("Param(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.wantOK)
			}
		})
	}
}

// TestTags pins the canonical order and the omission of empty optional elements.
func TestTags(t *testing.T) {
	tests := []struct {
		name string
		in   interface{ Tags() nostr.Tags }
		want nostr.Tags
	}{
		{
			name: "request",
			in: &JobRequest{
				Kind: 5000, Encrypted: true, Expiration: 5, Topics: []string{"t1"}, Providers: []string{providerPK},
				BidMsat: 7, Relays: []string{"wss://a", "wss://b"}, Output: "text/plain",
				Params: []Param{{Name: "n", Values: []string{"v"}}},
				Inputs: []Input{{Value: "x", Type: InputText, Marker: "m"}, {Value: "y", Type: InputText}},
			},
			want: nostr.Tags{
				{"i", "x", "text", "", "m"}, {"i", "y", "text"}, {"param", "n", "v"}, {"output", "text/plain"},
				{"relays", "wss://a", "wss://b"}, {"bid", "7"}, {"p", providerPK}, {"t", "t1"}, {"expiration", "5"}, {"encrypted"},
			},
		},
		{
			name: "feedback",
			in:   &JobFeedback{Extra: nostr.Tags{{"lease", "1"}}, Customer: customerPK, JobID: requestID, Amount: &Amount{Msat: 1}, Status: StatusSuccess},
			want: nostr.Tags{{"status", "success"}, {"amount", "1"}, {"e", requestID}, {"p", customerPK}, {"lease", "1"}},
		},
		{
			name: "result",
			in: &JobResult{
				Extra: nostr.Tags{{"encrypted"}}, Amount: &Amount{Msat: 1, Bolt11: "lnbc1"}, Customer: customerPK,
				Inputs: []Input{{Value: "x"}}, JobRelay: "wss://r", JobID: requestID, Request: "{}",
			},
			want: nostr.Tags{{"request", "{}"}, {"e", requestID, "wss://r"}, {"i", "x"}, {"p", customerPK}, {"amount", "1", "lnbc1"}, {"encrypted"}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.in.Tags(); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Tags() =\n%v\nwant\n%v", got, tc.want)
			}
		})
	}
}

func TestTagsDoNotAlias(t *testing.T) {
	f := &JobFeedback{JobID: requestID, Status: StatusSuccess, Extra: nostr.Tags{{"lease", "1"}}}
	evt := f.Event()
	evt.Tags[len(evt.Tags)-1][1] = "changed"
	if f.Extra[0][1] != "1" {
		t.Fatal("Event() shares Extra with the feedback it was built from")
	}
}

func TestRequestEvent(t *testing.T) {
	got, err := resultTests[0].want.RequestEvent()
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != requestID || got.Kind != 5001 || !reflect.DeepEqual(got.Tags, specRequest.Tags) {
		t.Errorf("RequestEvent() = %v, want %v", got, specRequest)
	}
	if _, err := (&JobResult{}).RequestEvent(); !errors.Is(err, ErrMissingTag) {
		t.Errorf("RequestEvent() without a request tag: err = %v, want ErrMissingTag", err)
	}
}
