package e2e

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/nbd-wtf/go-nostr"
	"github.com/nbd-wtf/go-nostr/nip44"

	"github.com/sparecycles/sparecycles/internal/keyfile"
	"github.com/sparecycles/sparecycles/internal/testimage"
	"github.com/sparecycles/sparecycles/nips/escrow"
	"github.com/sparecycles/sparecycles/nips/heartbeat"
	"github.com/sparecycles/sparecycles/relay"
	"github.com/sparecycles/sparecycles/worker"
)

// A private (NIP-90 encrypted) OCR request written by a plain Nostr client — raw JSON signed
// with go-nostr, the inputs encrypted with go-nostr's nip44 alone, sent over a bare websocket —
// to one of two workers. The named worker serves it: its result decrypts to the image's text
// and copies no input; the other worker cannot decrypt the request and does not serve it;
// nothing the relay holds shows the image or the text; the relay's job table and lease follow
// the job from its clear tags.
func TestPrivateJobFromRawClient(t *testing.T) {
	r, url := startRelay(t)
	keyA, keyB := filepath.Join(t.TempDir(), "a.nsec"), filepath.Join(t.TempDir(), "b.nsec")
	named := startWorkerWith(t, func(cfg *worker.Config) { cfg.KeyFile = keyA }, url)
	other := startWorkerWith(t, func(cfg *worker.Config) { cfg.KeyFile = keyB }, url)
	const text = "private pages"
	png, err := testimage.Render(28, text)
	if err != nil {
		t.Fatal(err)
	}
	image := "data:image/png;base64," + base64.StdEncoding.EncodeToString(png)

	sk := nostr.GeneratePrivateKey()
	pk, _ := nostr.GetPublicKey(sk)
	ck, err := nip44.GenerateConversationKey(named.PubKey(), sk)
	if err != nil {
		t.Fatal(err)
	}
	content, err := nip44.Encrypt(fmt.Sprintf(`[["i",%q,"url"],["param","lang","en"]]`, image), ck)
	if err != nil {
		t.Fatal(err)
	}
	raw := fmt.Sprintf(`{"kind":5000,"created_at":%d,"content":%q,"tags":[["p",%q],["encrypted"],["output","text/plain"],["bid","0"]]}`,
		time.Now().Unix(), content, named.PubKey())
	var evt nostr.Event
	if err := json.Unmarshal([]byte(raw), &evt); err != nil {
		t.Fatal(err)
	}
	if err := evt.Sign(sk); err != nil {
		t.Fatal(err)
	}

	conn, _, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	send := func(v ...any) {
		if err := conn.WriteJSON(v); err != nil {
			t.Fatal(err)
		}
	}
	send("REQ", "job", map[string]any{"kinds": []int{6000, 7000}, "#e": []string{evt.ID}})
	send("EVENT", evt)
	conn.SetReadDeadline(time.Now().Add(90 * time.Second))
	var res nostr.Event
	for res.ID == "" {
		_, msg, err := conn.ReadMessage()
		if err != nil {
			t.Fatalf("no result: %v", err)
		}
		var frame []json.RawMessage
		if json.Unmarshal(msg, &frame) != nil || len(frame) < 3 {
			continue
		}
		switch string(frame[0]) {
		case `"OK"`:
			if string(frame[2]) != "true" {
				t.Fatalf("relay refused the encrypted job: %s", msg)
			}
		case `"EVENT"`:
			var got nostr.Event
			if err := json.Unmarshal(frame[2], &got); err != nil {
				t.Fatal(err)
			}
			if got.Kind == 6000 {
				res = got
			}
		}
	}

	// the result: from the named worker, encrypted to us, no input copied, the request as posted
	if res.PubKey != named.PubKey() || !slices.ContainsFunc(res.Tags, func(t nostr.Tag) bool { return len(t) == 1 && t[0] == "encrypted" }) {
		t.Fatalf("result %s", res.String())
	}
	if i := res.Tags.Find("i"); i != nil {
		t.Errorf("the result copies an input: %v", i)
	}
	if req := res.Tags.Find("request"); len(req) < 2 || req[1] != evt.String() {
		t.Errorf("request tag %v, want the encrypted request as posted", req)
	}
	plain, err := nip44.Decrypt(res.Content, ck)
	if err != nil || strings.ToLower(strings.TrimSpace(plain)) != text {
		t.Fatalf("result decrypts to %q (%v), want %q", plain, err, text)
	}

	// the other worker cannot read the request, and did not serve it
	keyB2, _, err := keyfile.LoadOrCreate(keyB)
	if err != nil || keyB2.PubKey != other.PubKey() {
		t.Fatalf("other worker's key: %v", err)
	}
	ckB, _ := nip44.GenerateConversationKey(pk, keyB2.Secret())
	if _, err := nip44.Decrypt(evt.Content, ckB); err == nil {
		t.Fatal("the other worker's key decrypts the request")
	}
	if n := other.Stats().Executed; n != 0 {
		t.Errorf("the other worker ran %d jobs", n)
	}

	// nothing on the relay in the clear: not the image, not its text
	stored := queryRaw(t, conn, map[string]any{"limit": 500})
	if len(stored) == 0 {
		t.Fatal("nothing stored")
	}
	chunk := image[len(image)-40:] // any piece of the image's base64
	for _, e := range stored {
		s := strings.ToLower(e.String())
		if strings.Contains(s, strings.ToLower(chunk)) || strings.Contains(s, text) || strings.Contains(s, "data:image") {
			t.Errorf("kind %d event from %s shows the input or the text: %.200s", e.Kind, e.PubKey, e.String())
		}
		if e.PubKey == other.PubKey() && e.Kind != 31990 && e.Kind != heartbeat.Kind {
			t.Errorf("the other worker answered: kind %d", e.Kind)
		}
	}

	// the relay's job table and lease worked from the clear tags
	var body struct{ Jobs []relay.JobView }
	resp, err := http.Get("http" + strings.TrimPrefix(url, "ws") + "/api/jobs")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(body.Jobs, func(j relay.JobView) bool { return j.ID == evt.ID })
	if i < 0 {
		t.Fatalf("/api/jobs lacks the private job: %+v", body.Jobs)
	}
	if j := body.Jobs[i]; j.State != relay.JobDone || j.ResultBy != named.PubKey() || !slices.Equal(j.Providers, []string{named.PubKey()}) || j.Customer != pk {
		t.Fatalf("job row %+v", j)
	}
	if s := r.Stats(); s.Jobs.LeasesGranted != 1 {
		t.Fatalf("leases granted %d, want 1 (the named worker's)", s.Jobs.LeasesGranted)
	}
}

// queryRaw asks the relay over conn for the stored events matching filter, up to EOSE.
func queryRaw(t *testing.T, conn *websocket.Conn, filter map[string]any) []nostr.Event {
	t.Helper()
	if err := conn.WriteJSON([]any{"REQ", "all", filter}); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	var out []nostr.Event
	for {
		_, msg, err := conn.ReadMessage()
		if err != nil {
			t.Fatalf("query: %v", err)
		}
		var frame []json.RawMessage
		if json.Unmarshal(msg, &frame) != nil || len(frame) < 2 {
			continue
		}
		var sub string
		json.Unmarshal(frame[1], &sub)
		switch {
		case string(frame[0]) == `"EOSE"` && sub == "all":
			return out
		case string(frame[0]) == `"EVENT"` && sub == "all" && len(frame) >= 3:
			var e nostr.Event
			if err := json.Unmarshal(frame[2], &e); err != nil {
				t.Fatal(err)
			}
			out = append(out, e)
		}
	}
}

// Private jobs from the command line, paid over the ledger wallet. `client post --private`
// with no worker named picks the live worker offering escrow over a free one, encrypts a local
// file to it and pays by escrow: the result, sealed and then encrypted, is decrypted and
// opened, the balances move by exactly the amount, nothing on the relay shows the input, and
// `client status` reads the result again. `--private --worker <hex>` names the free worker.
func TestPrivateJobThroughCLI(t *testing.T) {
	bin := buildClient(t)
	_, url := startRelay(t)
	data := startLedgerWallet(t, url)
	workerURI := connect(t, data, url, "worker", 0, 0)
	clientURI := connect(t, data, url, "client", 1000, 500)
	paid := startWorkerWith(t, func(cfg *worker.Config) {
		cfg.NWC, cfg.Models, cfg.PaymentPoll = workerURI.Encode(), pricedModels(t, 2000, 1000, ""), time.Second
		cfg.Payment, cfg.SettleWindow = []string{escrow.SchemeEscrow}, time.Minute
	}, url)
	free := startWorker(t, url)
	before := [2]int64{balance(t, workerURI), balance(t, clientURI)}
	const text = "sealed and hidden"
	png, err := testimage.Render(28, text)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "page.png")
	if err := os.WriteFile(file, png, 0o600); err != nil {
		t.Fatal(err)
	}
	cli := newCLI(t, bin, url, clientURI.Encode())

	code, doc, stderr := cli.run("post", "--private", "--input", file, "--bid", "50sat", "--pay", "escrow", "--quote-window", "1s", "--timeout", "90s")
	if code != 0 || strings.ToLower(strings.TrimSpace(doc["result"].(string))) != text || doc["worker"] != paid.PubKey() || doc["scheme"] != "escrow" {
		t.Fatalf("exit %d, document %v, stderr %q", code, doc, stderr)
	}
	amount := int64(doc["amount_msat"].(float64))
	after := [2]int64{balance(t, workerURI), balance(t, clientURI)}
	if amount <= 2000 || after[0]-before[0] != amount || before[1]-after[1] != amount {
		t.Fatalf("paid %d msat; balances %v → %v, want both to move by it", amount, before, after)
	}
	job := doc["job"].(string)
	code, st, stderr := cli.run("status", job, "--timeout", "20s")
	if code != 0 || st["state"] != "done" || st["opened"] != true || st["result"] != doc["result"] {
		t.Fatalf("status: exit %d, %v, stderr %q", code, st, stderr)
	}

	code, doc, stderr = cli.run("post", "--private", "--worker", free.PubKey(), "--input", file, "--quote-window", "1s", "--timeout", "90s")
	if code != 0 || strings.ToLower(strings.TrimSpace(doc["result"].(string))) != text || doc["worker"] != free.PubKey() || doc["scheme"] != "free" {
		t.Fatalf("--worker: exit %d, document %v, stderr %q", code, doc, stderr)
	}

	// a private stream: three pages, each part sealed and encrypted to the customer
	pageURLs := servePages(t, pages...)
	code, raw, stderr := cli.run(append([]string{"post", "--private", "--worker", paid.PubKey(), "--bid", "50sat", "--pay", "escrow", "--quote-window", "1s", "--timeout", "90s"}, inputArgs(pageURLs)...)...)
	sd := decodeStreamDoc(t, raw)
	if code != 0 || sd.Status != "success" || len(sd.Parts) != 3 || !sameText(sd.Parts[0].Text, pages[0]) || !sameText(sd.Parts[2].Text, pages[2]) {
		t.Fatalf("private stream: exit %d, document %+v, stderr %q", code, sd, stderr)
	}

	conn, _, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	chunk := base64.StdEncoding.EncodeToString(png)[100:140]
	secrets := append([]string{strings.ToLower(chunk), text}, pages...)
	secrets = append(secrets, pageURLs...)
	for _, e := range queryRaw(t, conn, map[string]any{"kinds": []int{5000, 6000, 7000}, "limit": 500}) {
		s := strings.ToLower(e.String())
		for _, secret := range secrets {
			if strings.Contains(s, strings.ToLower(secret)) {
				t.Errorf("kind %d event shows %q: %.200s", e.Kind, secret, e.String())
			}
		}
	}
}
