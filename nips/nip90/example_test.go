package nip90_test

import (
	"encoding/json"
	"errors"
	"fmt"

	nostr "github.com/nbd-wtf/go-nostr"
	"github.com/sparecycles/sparecycles/nips/nip90"
)

// A customer builds and signs a text-generation request; a provider parses it.
func Example() {
	req := nip90.JobRequest{
		Kind:      5050,
		CreatedAt: 1700000000,
		Inputs:    []nip90.Input{{Value: "What is the capital of France?", Type: nip90.InputText}},
		Output:    "text/plain",
		Params:    []nip90.Param{{Name: "model", Values: []string{"LLaMA-2"}}},
		BidMsat:   50000,
	}
	evt := req.Event()
	if err := evt.Sign("c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1"); err != nil {
		fmt.Println(err)
		return
	}
	tags, _ := json.Marshal(evt.Tags)
	fmt.Println(string(tags))

	// The provider checks the signature first; parsing does not.
	if ok, _ := evt.CheckSignature(); !ok {
		fmt.Println("bad signature")
		return
	}
	got, err := nip90.ParseJobRequest(&evt)
	if err != nil {
		fmt.Println(err)
		return
	}
	model, _ := got.Param("model")
	fmt.Printf("kind %d (answer with %d): %q via %s, bid %d msat\n",
		got.Kind, nip90.ResultKind(got.Kind), got.Inputs[0].Value, model, got.BidMsat)
	// Output:
	// [["i","What is the capital of France?","text"],["param","model","LLaMA-2"],["output","text/plain"],["bid","50000"]]
	// kind 5050 (answer with 6050): "What is the capital of France?" via LLaMA-2, bid 50000 msat
}

// Errors name the tag, its position and the reason, and match the package's sentinels.
func ExampleParseJobRequest_error() {
	evt := nostr.Event{Kind: 5050, Tags: nostr.Tags{{"output", "text/plain"}, {"bid", "-5"}}}
	_, err := nip90.ParseJobRequest(&evt)
	fmt.Println(err)
	fmt.Println(errors.Is(err, nip90.ErrBadTag))
	// Output:
	// nip90: tag "bid" #1: bid "-5" is not a non-negative integer of millisats
	// true
}
