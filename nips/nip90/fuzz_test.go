package nip90

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	nostr "github.com/nbd-wtf/go-nostr"
)

// The fuzz targets take raw event JSON, as a relay receives it. Properties: parsing never
// panics, and a parsed value rebuilt with Event and parsed again comes out the same.

func FuzzParseJobRequest(f *testing.F) {
	for _, tc := range requestTests {
		addSeed(f, tc.in)
	}
	addGoldenSeed(f, "request.golden.json")
	f.Fuzz(func(t *testing.T, raw []byte) {
		fuzzRoundTrip(t, raw, ParseJobRequest, (*JobRequest).Event)
	})
}

func FuzzParseJobFeedback(f *testing.F) {
	for _, tc := range feedbackTests {
		addSeed(f, tc.in)
	}
	addGoldenSeed(f, "feedback.golden.json")
	f.Fuzz(func(t *testing.T, raw []byte) {
		fuzzRoundTrip(t, raw, ParseJobFeedback, (*JobFeedback).Event)
	})
}

func FuzzParseJobResult(f *testing.F) {
	for _, tc := range resultTests {
		addSeed(f, tc.in)
	}
	addGoldenSeed(f, "result.golden.json")
	f.Fuzz(func(t *testing.T, raw []byte) {
		fuzzRoundTrip(t, raw, ParseJobResult, (*JobResult).Event)
	})
}

func fuzzRoundTrip[T any](t *testing.T, raw []byte, parse func(*nostr.Event) (T, error), rebuild func(T) nostr.Event) {
	var evt nostr.Event
	if err := json.Unmarshal(raw, &evt); err != nil {
		t.Skip("not event JSON")
	}
	first, err := parse(&evt)
	if err != nil {
		return // rejecting is fine; panicking is not
	}
	checkReparse(t, &evt, first, parse, rebuild)
}

func addSeed(f *testing.F, evt nostr.Event) {
	f.Add([]byte(evt.String()))
}

func addGoldenSeed(f *testing.F, file string) {
	data, err := os.ReadFile(filepath.Join("testdata", file))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
}
