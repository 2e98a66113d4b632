package main

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/nbd-wtf/go-nostr"
	"github.com/nbd-wtf/go-nostr/nip44"

	"github.com/sparecycles/sparecycles/internal/testrelay"
	"github.com/sparecycles/sparecycles/nips/nip90"
)

// `client post --private --worker <hex>` with a local file: the request on the relay carries
// the worker's p tag and ["encrypted"], and no input; the worker (here a plain one that reads
// the request with go-nostr's nip44 alone) finds the file as a data: URL; its encrypted
// result is printed in the clear. A second worker never sees an input it could read.
func TestPostPrivate(t *testing.T) {
	t.Parallel()
	relay := testrelay.Start(t)
	pic := pngBytes(t)
	answer := func(ctx context.Context, w *worker, req *nostr.Event) {
		reply := func(content string) {
			ck, err := nip44.GenerateConversationKey(req.PubKey, w.sk)
			if err != nil {
				w.t.Error(err)
				return
			}
			enc, _ := nip44.Encrypt(content, ck)
			r := nip90.JobResult{Kind: 6000, JobID: req.ID, Customer: req.PubKey, Content: enc, Extra: nostr.Tags{{"encrypted"}}}
			w.publish(ctx, r.Event())
		}
		if !slices.ContainsFunc(req.Tags, func(t nostr.Tag) bool { return len(t) >= 2 && t[0] == "p" && t[1] == w.pk }) {
			return // not ours
		}
		ck, _ := nip44.GenerateConversationKey(req.PubKey, w.sk)
		plain, err := nip44.Decrypt(req.Content, ck)
		var tags [][]string
		if err == nil {
			err = json.Unmarshal([]byte(plain), &tags)
		}
		if err != nil || len(tags) != 1 || tags[0][0] != "i" || tags[0][1] != dataURL("page.png", pic) || tags[0][2] != "url" {
			reply(fmt.Sprintf("bad request: %v %v", err, tags))
			return
		}
		reply("private text")
	}
	w := startWorker(t, relay, 5000, answer)
	startWorker(t, relay, 5000, answer) // another worker, not named

	code, stdout, stderr := cli(t, "", slices.Concat([]string{"post", "--relay", relay, "--private", "--worker", w.pk,
		"--input", writeFile(t, "page.png", pic), "--json"}, fast, home(t))...)
	doc := decodeOne(t, stdout)
	if code != exitOK || doc["result"] != "private text" || doc["worker"] != w.pk {
		t.Fatalf("exit %d, document %v, stderr %q", code, doc, stderr)
	}
	reqs := testrelay.Query(t, testrelay.Dial(t, relay), nostr.Filter{Kinds: []int{5000}})
	if len(reqs) != 1 {
		t.Fatalf("%d requests", len(reqs))
	}
	req, err := nip90.ParseJobRequest(reqs[0])
	if err != nil || !req.Encrypted || len(req.Inputs) != 0 || !slices.Equal(req.Providers, []string{w.pk}) || req.ID != doc["job"] {
		t.Fatalf("request on the relay: %+v (%v)", req, err)
	}
	if strings.Contains(reqs[0].String(), "data:") {
		t.Fatalf("the input is in the clear: %s", reqs[0].String())
	}
}

// --private without a live worker for the kind fails before posting, saying so.
func TestPostPrivateNoWorker(t *testing.T) {
	t.Parallel()
	relay := testrelay.Start(t)
	code, stdout, stderr := cli(t, "", slices.Concat([]string{"post", "--relay", relay, "--private", "--input", writeFile(t, "page.png", pngBytes(t))}, fast, home(t))...)
	if code == exitOK || stdout != "" || !strings.Contains(stderr, "no live worker for a private job") || !strings.Contains(stderr, "--worker") {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if evs := testrelay.Query(t, testrelay.Dial(t, relay), nostr.Filter{Kinds: []int{5000}}); len(evs) != 0 {
		t.Fatalf("%d requests posted", len(evs))
	}
}
