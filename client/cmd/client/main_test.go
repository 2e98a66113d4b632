package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/png"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcec/v2/ecdsa"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/lightningnetwork/lnd/lnwire"
	"github.com/lightningnetwork/lnd/zpay32"
	"github.com/nbd-wtf/go-nostr"

	"github.com/sparecycles/sparecycles/client"
	"github.com/sparecycles/sparecycles/internal/invoice"
	"github.com/sparecycles/sparecycles/internal/invoice/invoicetest"
	"github.com/sparecycles/sparecycles/internal/relayconn"
	"github.com/sparecycles/sparecycles/internal/testrelay"
	"github.com/sparecycles/sparecycles/nips/heartbeat"
	"github.com/sparecycles/sparecycles/nips/nip47"
	"github.com/sparecycles/sparecycles/nips/nip89"
	"github.com/sparecycles/sparecycles/nips/nip90"
)

// cli runs the command with args; stdin is empty unless given.
func cli(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(t.Context(), args, strings.NewReader(stdin), &out, &errOut)
	return code, out.String(), errOut.String()
}

// home returns --key-file and --data flags in a fresh folder, so no test touches ./.
func home(t *testing.T) []string {
	dir := t.TempDir()
	return []string{"--key-file", filepath.Join(dir, "client.nsec"), "--data", filepath.Join(dir, "data")}
}

func writeFile(t *testing.T, name string, b []byte) string {
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func pngBytes(t *testing.T) []byte {
	var b bytes.Buffer
	if err := png.Encode(&b, image.NewGray(image.Rect(0, 0, 4, 4))); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

const tensors = `{"inputs":[{"name":"x","dtype":"float32","shape":[2],"data":[1,2]}]}`

func TestFlagErrors(t *testing.T) {
	t.Parallel()
	nowhere := "ws://127.0.0.1:1" // never dialled: every case fails before
	png := writeFile(t, "page.png", pngBytes(t))
	tens := writeFile(t, "in.json", []byte(tensors))
	bad := writeFile(t, "bad.json", []byte(`{"inputs":[{"name":"x","dtype":"float32","shape":[3],"data":[1,2]}]}`))
	tests := []struct {
		name string
		args []string
		want string // in the error line
	}{
		{"unknown command", []string{"frobnicate"}, `unknown command "frobnicate"`},
		{"unknown flag", []string{"post", "--frob"}, "flag provided but not defined"},
		{"no relay", []string{"post", "--input", png}, "give at least one --relay"},
		{"http relay", []string{"post", "--relay", "http://x", "--input", png}, "not a ws:// or wss:// URL"},
		{"bad bid", []string{"post", "--relay", nowhere, "--input", png, "--bid", "5btc"}, "not an amount"},
		{"negative bid", []string{"post", "--relay", nowhere, "--input", png, "--bid", "-5"}, "not an amount"},
		{"bad param", []string{"post", "--relay", nowhere, "--input", png, "--param", "model"}, "not name=value"},
		{"bad to", []string{"post", "--relay", nowhere, "--input", png, "--to", "npub1xyz"}, "not a valid npub"},
		{"no input", []string{"post", "--relay", nowhere}, "give an --input"},
		{"missing file", []string{"post", "--relay", nowhere, "--input", filepath.Join(t.TempDir(), "none.png")}, "no such file"},
		{"ftp input", []string{"post", "--relay", nowhere, "--input", "ftp://x/y.png"}, "neither an http(s) or data: URL nor a file"},
		{"not a job kind", []string{"post", "--relay", nowhere, "--input", png, "--kind", "4000"}, "not a job kind"},
		{"bad output", []string{"post", "--relay", nowhere, "--input", png, "--output", "not a mime"}, "not a MIME type"},
		{"tensors of kind 5000", []string{"post", "--relay", nowhere, "--tensors", tens, "--kind", "5000", "--param", "model=m"}, "--tensors is for kind 5800"},
		{"tensors without model", []string{"post", "--relay", nowhere, "--tensors", tens}, "needs --param model="},
		{"invalid tensors", []string{"post", "--relay", nowhere, "--tensors", bad, "--param", "model=m"}, "tensor: invalid tensor document"},
		{"bad pay", []string{"post", "--relay", nowhere, "--input", png, "--pay", "later"}, `"later" is not a way to pay: want any, escrow or prepay`},
		{"worker without private", []string{"post", "--relay", nowhere, "--input", png, "--worker", strings.Repeat("ab", 32)}, "--worker names the worker of a --private job"},
		{"private with to", []string{"post", "--relay", nowhere, "--input", png, "--private", "--to", strings.Repeat("ab", 32)}, "name it with --worker, not --to"},
		{"bad worker", []string{"post", "--relay", nowhere, "--input", png, "--private", "--worker", "npub1xyz"}, "not a valid npub"},
		{"bad max spend", []string{"post", "--relay", nowhere, "--input", png, "--input", png, "--max-spend", "2btc"}, "not an amount"},
		{"zero timeout", []string{"post", "--relay", nowhere, "--input", png, "--timeout", "0s"}, "must be positive"},
		{"post argument", []string{"post", "--relay", nowhere, png}, "unexpected argument"},
		{"status without id", []string{"status", "--relay", nowhere}, "give one job id"},
		{"status bad id", []string{"status", "--relay", nowhere, "xyz"}, "not 64 hex characters"},
		{"workers bad kind", []string{"workers", "--relay", nowhere, "--kind", "42"}, "not a job kind"},
		{"review without id", []string{"review", "--relay", nowhere, "--rating", "4"}, "give one job id"},
		{"review without rating", []string{"review", "--relay", nowhere, strings.Repeat("ab", 32)}, "give a rating from 1 to 5"},
		{"review rating 6", []string{"review", "--relay", nowhere, strings.Repeat("ab", 32), "--rating", "6"}, "give a rating from 1 to 5"},
		{"review without key", []string{"review", "--relay", nowhere, strings.Repeat("ab", 32), "--rating", "4"}, "sign with the key that posted the job"},
		{"keygen argument", []string{"keygen", "x.nsec"}, "unexpected argument"},
		{"balance without wallet", []string{"balance"}, "no NWC wallet"},
		{"text file for OCR", []string{"post", "--relay", nowhere, "--input", writeFile(t, "note.txt", []byte("hello"))}, "invalid: input"},
		{"png named .txt still read", []string{"post", "--relay", nowhere, "--input", writeFile(t, "page.txt", []byte("\x89PNG\r\n\x1a\nbroken"))}, "not a readable png image"},
		{"data URL of text for OCR", []string{"post", "--relay", nowhere, "--input", "data:image/png;base64,aGVsbG8="}, "is text/plain, not a PNG or JPEG image"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := tc.args
			if args[0] == "post" || args[0] == "status" || args[0] == "review" {
				args = append(args, home(t)...)
			}
			code, stdout, stderr := cli(t, "", args...)
			want := exitOther
			if tc.name == "balance without wallet" {
				want = exitPayment
			}
			if code != want {
				t.Errorf("exit %d, want %d (stderr %q)", code, want, stderr)
			}
			if stdout != "" {
				t.Errorf("stdout %q, want nothing", stdout)
			}
			if !strings.HasPrefix(stderr, "client: ") || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, tc.want) {
				t.Errorf("stderr %q: want one line starting with client: and containing %q", stderr, tc.want)
			}
		})
	}
}

func TestHelp(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"--help"}, {"post", "--help"}} {
		code, stdout, _ := cli(t, "", args...)
		if code != exitOK || !strings.Contains(stdout, "Exit codes:") || !strings.Contains(stdout, "6  timed out") {
			t.Errorf("%v: exit %d, stdout %q", args, code, stdout)
		}
	}
	if code, _, stderr := cli(t, ""); code != exitOther || !strings.Contains(stderr, "Usage: client") {
		t.Errorf("no arguments: exit %d, stderr %q", code, stderr)
	}
	code, stdout, _ := cli(t, "", "status", "-h")
	if code != exitOK || !strings.Contains(stdout, "SPARECYCLES_CLIENT_RELAY") || !strings.Contains(stdout, "<job-id>") {
		t.Errorf("status -h: exit %d, stdout %q", code, stdout)
	}
}

func TestParseBid(t *testing.T) {
	tests := []struct {
		in      string
		want    int64
		wantErr bool
	}{
		{"500sat", 500_000, false},
		{"500sats", 500_000, false},
		{"500 sat", 500_000, false},
		{"500SAT", 500_000, false},
		{"500000msat", 500_000, false},
		{"1msats", 1, false},
		{"500", 500_000, false},
		{"0", 0, false},
		{"", 0, true},
		{"sat", 0, true},
		{"-5sat", 0, true},
		{"+5", 0, true},
		{"1.5sat", 0, true},
		{"5btc", 0, true},
		{"9223372036854775807msat", 9223372036854775807, false},
		{"9223372036854775807", 0, true}, // overflows in msat
		{"99999999999999999999msat", 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := parseBid(tc.in)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Fatalf("parseBid(%q) = %d, %v; want %d, error %v", tc.in, got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestInputFrom(t *testing.T) {
	pic := pngBytes(t)
	big := make([]byte, 50<<10) // 50 KiB raw is ~67 KiB as base64
	rand.Read(big)
	tests := []struct {
		name, arg, stdin string
		want             string // prefix of the i tag's value
		wantErr          string
	}{
		{"url", "https://example.com/page.png", "", "https://example.com/page.png", ""},
		{"data url", "data:image/png;base64,AAAA", "", "data:image/png;base64,AAAA", ""},
		{"png file", writeFile(t, "page.png", pic), "", "data:image/png;base64," + base64.StdEncoding.EncodeToString(pic), ""},
		{"sniffed", writeFile(t, "page", pic), "", "data:image/png;base64,", ""},
		{"text file", writeFile(t, "note.txt", []byte("hi")), "", "data:text/plain;base64,aGk=", ""},
		{"stdin", "-", string(pic), "data:image/png;base64,", ""},
		{"oversized file", writeFile(t, "big.png", big), "", "", "host the file"},
		{"oversized stdin", "-", string(big), "", "host the file"},
		{"oversized data url", "data:image/png;base64," + strings.Repeat("A", 61<<10), "", "", "host the file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in, err := inputFrom(tc.arg, strings.NewReader(tc.stdin))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if in.Type != nip90.InputURL || !strings.HasPrefix(in.Value, tc.want) || len(in.Value) > maxInline {
				t.Fatalf("input %q (%s), want a url starting %q", short(in.Value), in.Type, tc.want)
			}
		})
	}
}

func TestReorder(t *testing.T) {
	fs := newFlagSet(commands[1])
	o := newOptions()
	o.relayFlag(fs)
	o.outputFlags(fs, time.Second, "")
	flags, pos := reorder(fs, []string{"abc", "--json", "--relay", "ws://x", "--timeout=3s", "def", "--", "--ghi"})
	if want := []string{"--json", "--relay", "ws://x", "--timeout=3s"}; !slices.Equal(flags, want) {
		t.Errorf("flags %q, want %q", flags, want)
	}
	if want := []string{"abc", "def", "--ghi"}; !slices.Equal(pos, want) {
		t.Errorf("positional %q, want %q", pos, want)
	}
}

func TestExitCode(t *testing.T) {
	tests := []struct {
		err  error
		want int
	}{
		{nil, exitOK},
		{errors.New("bad flag"), exitOther},
		{fmt.Errorf("job x: %w: too dear", client.ErrNoOffer), exitNoOffer},
		{fmt.Errorf("pay: %w: %w", client.ErrRefusedInvoice, invoice.ErrOverBid), exitRefused},
		{client.ErrPaymentFailed, exitPayment},
		{client.ErrWalletDown, exitPayment},
		{client.ErrNoWallet, exitPayment},
		{client.ErrJobFailed, exitJobFailed},
		{fmt.Errorf("job x: %w: worker y", client.ErrUnreadable), exitJobFailed},
		{client.ErrTimeout, exitTimeout},
	}
	for _, tc := range tests {
		if got := exitCode(tc.err); got != tc.want {
			t.Errorf("exitCode(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
}

// worker is a fake worker on a relay: it answers each job request with what a test says.
type worker struct {
	t    *testing.T
	sk   string
	pk   string
	conn *relayconn.Conn
}

// startWorker answers every request of kind on relay with answer, until the test ends.
func startWorker(t *testing.T, relay string, kind int, answer func(ctx context.Context, w *worker, req *nostr.Event)) *worker {
	t.Helper()
	w := &worker{t: t, sk: nostr.GeneratePrivateKey(), conn: testrelay.Dial(t, relay)}
	w.pk, _ = nostr.GetPublicKey(w.sk)
	ctx, cancel := context.WithCancel(context.Background())
	sub, err := w.conn.Subscribe(ctx, nostr.Filter{Kinds: []int{kind}})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-sub.EOSE: // live from here on
	case <-t.Context().Done():
		t.Fatal("no EOSE from the relay")
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case req := <-sub.Events:
				answer(ctx, w, req)
			case <-sub.Done():
				return
			}
		}
	})
	t.Cleanup(func() { cancel(); wg.Wait() })
	return w
}

func (w *worker) publish(ctx context.Context, evt nostr.Event) {
	evt.CreatedAt = nostr.Now()
	if err := evt.Sign(w.sk); err != nil {
		w.t.Error(err)
		return
	}
	if ok, err := w.conn.Publish(ctx, evt); err != nil || !ok.Accepted {
		if ctx.Err() == nil {
			w.t.Errorf("publish kind %d: %v %s", evt.Kind, err, ok.Reason)
		}
	}
}

func (w *worker) feedback(ctx context.Context, req *nostr.Event, status nip90.Status, info string, amount *nip90.Amount) {
	fb := nip90.JobFeedback{JobID: req.ID, Customer: req.PubKey, Status: status, Info: info, Amount: amount}
	w.publish(ctx, fb.Event())
}

func (w *worker) result(ctx context.Context, req *nostr.Event, content string) {
	r := nip90.JobResult{Kind: nip90.ResultKind(req.Kind), JobID: req.ID, Customer: req.PubKey, Content: content}
	w.publish(ctx, r.Event())
}

// wallet is a fake NWC wallet on a relay that pays the invoices minted by invoiceFor.
type wallet struct {
	uri       nip47.URI
	mu        sync.Mutex
	preimages map[string]string // bolt11 → preimage
	paid      chan string       // bolt11s paid
}

func startWallet(t *testing.T, relay string) *wallet {
	t.Helper()
	w := &wallet{preimages: map[string]string{}, paid: make(chan string, 8)}
	key := nip47.NewSecret()
	w.uri = nip47.URI{WalletPubKey: key.PubKey(), Relays: []string{relay}, Secret: nip47.NewSecret()}
	pool := relayconn.NewPool([]string{relay})
	svc := &nip47.Service{
		WalletKey: key, Transport: pool,
		Methods: []string{nip47.MethodGetInfo, nip47.MethodPayInvoice, nip47.MethodGetBalance},
		Lookup: func(context.Context, string) (nip47.Connection, bool, error) {
			return nip47.Connection{Name: "test"}, true, nil
		},
		Handle: func(ctx context.Context, _ nip47.Connection, method string, params json.RawMessage) (any, error) {
			switch method {
			case nip47.MethodGetInfo:
				return nip47.GetInfoResult{Alias: "fake", Network: "regtest", Methods: []string{nip47.MethodPayInvoice}}, nil
			case nip47.MethodGetBalance:
				return nip47.GetBalanceResult{Balance: 21_500}, nil
			case nip47.MethodPayInvoice:
				var p nip47.PayInvoiceParams
				if err := json.Unmarshal(params, &p); err != nil {
					return nil, err
				}
				w.mu.Lock()
				pre, ok := w.preimages[p.Invoice]
				w.mu.Unlock()
				if !ok {
					return nil, nip47.Errorf(nip47.CodePaymentFailed, "unknown invoice")
				}
				w.paid <- p.Invoice
				return nip47.PayInvoiceResult{Preimage: pre, FeesPaid: 3}, nil
			}
			return nil, nip47.Errorf(nip47.CodeNotImplemented, "%s", method)
		},
	}
	serveWallet(t, svc, pool)
	return w
}

// invoiceFor mints a signed regtest invoice for job whose preimage the wallet knows (which
// invoicetest.Mint, drawing a random hash, cannot give).
func (w *wallet) invoiceFor(t *testing.T, job string, msat int64) string {
	var pre [32]byte
	rand.Read(pre[:])
	key, err := btcec.NewPrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	inv, err := zpay32.NewInvoice(&chaincfg.RegressionNetParams, sha256.Sum256(pre[:]), time.Now(),
		zpay32.Amount(lnwire.MilliSatoshi(msat)), zpay32.Description(invoice.Description(job)), zpay32.Expiry(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	bolt11, err := inv.Encode(zpay32.MessageSigner{SignCompact: func(msg []byte) ([]byte, error) {
		return ecdsa.SignCompact(key, msg, true), nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	w.mu.Lock()
	w.preimages[bolt11] = hex.EncodeToString(pre[:])
	w.mu.Unlock()
	return bolt11
}

func (w *wallet) file(t *testing.T) string { return writeFile(t, "nwc", []byte(w.uri.Encode()+"\n")) }

// fast keeps the quote window short; the timeout is never reached by a job that ends.
var fast = []string{"--quote-window", "300ms", "--timeout", "30s"}

func TestPostFreeResult(t *testing.T) {
	t.Parallel()
	relay := testrelay.Start(t)
	w := startWorker(t, relay, 5000, func(ctx context.Context, w *worker, req *nostr.Event) {
		w.result(ctx, req, "hello from the worker")
	})
	// two jobs, each its own input: the same request signed twice in one second is one event
	h := home(t)
	args := func(input string, more ...string) []string {
		return slices.Concat([]string{"post", "--relay", relay, "--input", input}, fast, h, more)
	}

	t.Run("text", func(t *testing.T) {
		code, stdout, stderr := cli(t, "", args(writeFile(t, "page.png", pngBytes(t)))...)
		if code != exitOK || stdout != "hello from the worker\n" {
			t.Fatalf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
		}
	})
	t.Run("json", func(t *testing.T) {
		code, stdout, stderr := cli(t, "", args("https://example.com/page.png", "--json")...)
		doc := decodeOne(t, stdout)
		wantKeys := []string{"amount_msat", "elapsed_ms", "fee_msat", "ignored_results", "job", "result", "scheme", "status", "worker"}
		if code != exitOK || !slices.Equal(slices.Sorted(maps.Keys(doc)), wantKeys) {
			t.Fatalf("exit %d, document %v (stderr %q), want keys %v", code, doc, stderr, wantKeys)
		}
		if doc["status"] != "success" || doc["result"] != "hello from the worker" || doc["scheme"] != "free" || doc["worker"] != w.pk || len(doc["job"].(string)) != 64 {
			t.Fatalf("document %v", doc)
		}
	})
}

// decodeOne decodes stdout as exactly one JSON object.
func decodeOne(t *testing.T, stdout string) map[string]any {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(stdout))
	var doc map[string]any
	if err := dec.Decode(&doc); err != nil {
		t.Fatalf("stdout %q: %v", stdout, err)
	}
	if dec.More() {
		t.Fatalf("stdout %q holds more than one document", stdout)
	}
	return doc
}

func TestPostQuoteAboveBid(t *testing.T) {
	t.Parallel()
	relay := testrelay.Start(t)
	startWorker(t, relay, 5000, func(ctx context.Context, w *worker, req *nostr.Event) {
		bolt11 := invoicetest.Mint(t, invoicetest.Spec{Msat: 900_000, Description: invoice.Description(req.ID)})
		w.feedback(ctx, req, nip90.StatusPaymentRequired, "", &nip90.Amount{Msat: 900_000, Bolt11: bolt11})
	})
	args := append([]string{"post", "--relay", relay, "--input", "https://example.com/page.png", "--bid", "500sat", "--json"}, fast...)
	code, stdout, stderr := cli(t, "", append(args, home(t)...)...)
	doc := decodeOne(t, stdout)
	if code != exitNoOffer || doc["status"] != "error" || !strings.Contains(doc["error"].(string), "above the bid") {
		t.Fatalf("exit %d, document %v, stderr %q", code, doc, stderr)
	}
	if !strings.HasPrefix(stderr, "client: ") || !strings.Contains(stderr, "no acceptable offer") {
		t.Fatalf("stderr %q", stderr)
	}
}

func TestPostWithoutWallet(t *testing.T) {
	t.Parallel()
	relay := testrelay.Start(t)
	startWorker(t, relay, 5000, func(ctx context.Context, w *worker, req *nostr.Event) {
		bolt11 := invoicetest.Mint(t, invoicetest.Spec{Msat: 400_000, Description: invoice.Description(req.ID)})
		w.feedback(ctx, req, nip90.StatusPaymentRequired, "", &nip90.Amount{Msat: 400_000, Bolt11: bolt11})
	})
	args := append([]string{"post", "--relay", relay, "--input", "https://example.com/page.png", "--bid", "500"}, fast...)
	code, stdout, stderr := cli(t, "", append(args, home(t)...)...)
	if code != exitPayment || stdout != "" || !strings.Contains(stderr, "no NWC wallet") {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}

func TestPostWorkerError(t *testing.T) {
	t.Parallel()
	relay := testrelay.Start(t)
	wal := startWallet(t, relay)
	startWorker(t, relay, 5000, func(ctx context.Context, w *worker, req *nostr.Event) {
		bolt11 := wal.invoiceFor(t, req.ID, 400_000)
		w.feedback(ctx, req, nip90.StatusPaymentRequired, "", &nip90.Amount{Msat: 400_000, Bolt11: bolt11})
		select { // fail only once paid, as a worker whose model crashed would
		case <-wal.paid:
			w.feedback(ctx, req, nip90.StatusError, "model crashed", nil)
		case <-ctx.Done():
		}
	})
	h := home(t)
	args := append([]string{"post", "--relay", relay, "--input", "https://example.com/page.png", "--bid", "500sat", "--nwc-file", wal.file(t), "--json"}, fast...)
	code, stdout, stderr := cli(t, "", append(args, h...)...)
	doc := decodeOne(t, stdout)
	if code != exitJobFailed || doc["status"] != "error" || !strings.Contains(doc["error"].(string), "model crashed") ||
		doc["amount_msat"] != float64(400_000) || doc["fee_msat"] != float64(3) {
		t.Fatalf("exit %d, document %v, stderr %q", code, doc, stderr)
	}

	// the payment is in the store: status shows it, and the worker's error
	code, stdout, stderr = cli(t, "", append([]string{"status", doc["job"].(string), "--relay", relay}, h...)...)
	for _, want := range []string{"state     error from npub1", "model crashed", "quote     400 sat from npub1", "payment   paid: 400 sat, fee 3 msat"} {
		if code != exitOK || !strings.Contains(stdout, want) {
			t.Errorf("status: exit %d, stdout %q lacks %q (stderr %q)", code, stdout, want, stderr)
		}
	}
}

func TestPostTimeoutWithLocalFile(t *testing.T) {
	t.Parallel()
	relay := testrelay.Start(t)
	pic := pngBytes(t)
	h := home(t)
	args := append([]string{"post", "--relay", relay, "--input", writeFile(t, "page.png", pic), "--quote-window", "200ms", "--timeout", "1s"}, h...)
	code, stdout, stderr := cli(t, "", args...)
	if code != exitTimeout || stdout != "" || !strings.Contains(stderr, "no worker answered within 1s") {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	// what was posted carries the file inline
	reqs := testrelay.Query(t, testrelay.Dial(t, relay), nostr.Filter{Kinds: []int{5000}})
	if len(reqs) != 1 {
		t.Fatalf("%d requests on the relay, want 1", len(reqs))
	}
	req, err := nip90.ParseJobRequest(reqs[0])
	if err != nil {
		t.Fatal(err)
	}
	want := dataURL("page.png", pic)
	if len(req.Inputs) != 1 || req.Inputs[0].Value != want || req.Inputs[0].Type != nip90.InputURL || !strings.HasPrefix(want, "data:image/png;base64,") {
		t.Fatalf("inputs %+v, want %s", req.Inputs, short(want))
	}
	if !strings.Contains(stderr, req.ID) {
		t.Errorf("stderr %q does not name job %s", stderr, req.ID)
	}
}

func TestPostRefusesOversizedFile(t *testing.T) {
	t.Parallel()
	relay := testrelay.Start(t)
	big := make([]byte, 50<<10)
	rand.Read(big)
	h := home(t)
	code, stdout, stderr := cli(t, "", append([]string{"post", "--relay", relay, "--input", writeFile(t, "scan.png", big)}, h...)...)
	if code != exitOther || stdout != "" || !strings.Contains(stderr, "host the file") {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if evs := testrelay.Query(t, testrelay.Dial(t, relay), nostr.Filter{}); len(evs) != 0 {
		t.Fatalf("%d events posted, want none", len(evs))
	}
	if _, err := os.Stat(h[1]); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("key file created for a refused job: %v", err)
	}
}

func TestPostTensors(t *testing.T) {
	t.Parallel()
	relay := testrelay.Start(t)
	startWorker(t, relay, 5800, func(ctx context.Context, w *worker, req *nostr.Event) {
		r, err := nip90.ParseJobRequest(req)
		if model, _ := r.Param("model"); err != nil || len(r.Inputs) != 1 || r.Inputs[0].Type != nip90.InputText || model != "tiny" {
			w.feedback(ctx, req, nip90.StatusError, fmt.Sprintf("bad request: %v %+v", err, r), nil)
			return
		}
		w.result(ctx, req, `{"outputs":[]}`)
	})
	args := append([]string{"post", "--relay", relay, "--tensors", "-", "--param", "model=tiny"}, fast...)
	code, stdout, stderr := cli(t, tensors, append(args, home(t)...)...)
	if code != exitOK || stdout != "{\"outputs\":[]}\n" {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}

// publishAs signs evt with sk and stores it on relay.
func publishAs(t *testing.T, relay, sk string, evt nostr.Event) nostr.Event {
	t.Helper()
	if evt.CreatedAt == 0 {
		evt.CreatedAt = nostr.Now()
	}
	if err := evt.Sign(sk); err != nil {
		t.Fatal(err)
	}
	ok, err := testrelay.Dial(t, relay).Publish(t.Context(), evt)
	if err != nil || !ok.Accepted {
		t.Fatalf("publish: %v %s", err, ok.Reason)
	}
	return evt
}

func TestStatusRecoversFinishedJob(t *testing.T) {
	t.Parallel()
	relay := testrelay.Start(t)
	customer, workerKey := nostr.GeneratePrivateKey(), nostr.GeneratePrivateKey()
	jr := nip90.JobRequest{Kind: 5000, Inputs: []nip90.Input{{Value: "https://example.com/a.png", Type: nip90.InputURL}}, BidMsat: 5000}
	req := publishAs(t, relay, customer, jr.Event())
	res := nip90.JobResult{Kind: 6000, JobID: req.ID, Customer: req.PubKey, Content: "recovered text"}
	worker := publishAs(t, relay, workerKey, res.Event())

	h := home(t)
	code, stdout, stderr := cli(t, "", append([]string{"status", req.ID, "--relay", relay}, h...)...)
	for _, want := range []string{"job       " + req.ID, "kind      5000, bid 5 sat", "state     done by " + npub(worker.PubKey), "result:\nrecovered text\n"} {
		if code != exitOK || !strings.Contains(stdout, want) {
			t.Errorf("exit %d, stdout %q lacks %q (stderr %q)", code, stdout, want, stderr)
		}
	}
	if _, err := os.Stat(h[1]); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("status created a key file: %v", err)
	}

	code, stdout, stderr = cli(t, "", append([]string{"status", "--json", "--relay", relay, req.ID}, h...)...)
	doc := decodeOne(t, stdout)
	if code != exitOK || doc["state"] != "done" || doc["result"] != "recovered text" || doc["worker"] != worker.PubKey || doc["customer"] != req.PubKey {
		t.Fatalf("exit %d, document %v, stderr %q", code, doc, stderr)
	}

	unknown := strings.Repeat("ab", 32)
	code, stdout, stderr = cli(t, "", append([]string{"status", unknown, "--relay", relay}, h...)...)
	if code != exitOther || stdout != "" || !strings.Contains(stderr, "no relay of") || !strings.HasPrefix(stderr, "client: job "+unknown) {
		t.Fatalf("unknown job: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}

func TestWorkers(t *testing.T) {
	t.Parallel()
	relay := testrelay.Start(t)
	ocrKey, tensorKey := nostr.GeneratePrivateKey(), nostr.GeneratePrivateKey()
	announce := func(sk, d, name string, at nostr.Timestamp, kinds []int, models []nip89.Model) {
		h := nip89.HandlerInfo{Identifier: d, Kinds: kinds, CreatedAt: at, Metadata: nip89.Metadata{Name: name, Worker: &nip89.Worker{
			Version: 1, Provider: "CPUExecutionProvider", Device: "auto", Payment: "lightning", Models: models}}}
		evt, err := h.Event()
		if err != nil {
			t.Fatal(err)
		}
		publishAs(t, relay, sk, evt)
	}
	ocr := []nip89.Model{{Name: "ocr-ppocrv4", Task: "ocr", Kind: 5000, SHA256: map[string]string{"det": strings.Repeat("d", 64), "rec": strings.Repeat("e", 64)},
		Price: nip89.Price{BaseMsat: 1000, PerUnitMsat: 10, Unit: "megapixel"}, Limits: map[string]int64{"max_pixels": 16_000_000}}}
	now := nostr.Now()
	announce(ocrKey, "old", "old name", now-600, []int{5000}, ocr)
	announce(ocrKey, "new", "ocr box", now-60, []int{5000}, ocr)
	announce(tensorKey, "t", "tensor box", now-30, []int{5800}, []nip89.Model{{Name: "tiny", Kind: 5800, Price: nip89.Price{}}})

	code, stdout, stderr := cli(t, "", "workers", "--relay", relay)
	for _, want := range []string{"ocr box", "last seen 1m ago", "kinds     5000", "provider  CPUExecutionProvider (device auto)", "payment   lightning",
		"model     ocr-ppocrv4, kind 5000, ocr", "sha256 det dddddddddddd, rec eeeeeeeeeeee", "price  1 sat + 10 msat per megapixel", "limits max_pixels 16000000",
		"tensor box", "price  free"} {
		if code != exitOK || !strings.Contains(stdout, want) {
			t.Errorf("exit %d, stdout %q lacks %q (stderr %q)", code, stdout, want, stderr)
		}
	}
	if strings.Contains(stdout, "old name") || strings.Index(stdout, "tensor box") > strings.Index(stdout, "ocr box") {
		t.Errorf("want the newest announcement per worker, newest first:\n%s", stdout)
	}

	code, stdout, _ = cli(t, "", "workers", "--relay", relay, "--kind", "5800", "--json")
	var docs []workerDoc
	if err := json.Unmarshal([]byte(stdout), &docs); err != nil || code != exitOK {
		t.Fatalf("exit %d, stdout %q: %v", code, stdout, err)
	}
	if len(docs) != 1 || docs[0].Name != "tensor box" || docs[0].Payment != "lightning" || len(docs[0].Models) != 1 || !strings.HasPrefix(docs[0].Npub, "npub1") {
		t.Fatalf("docs %+v", docs)
	}
}

func TestKeygenKeepsExistingKey(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "me.nsec")
	code, first, stderr := cli(t, "", "keygen", "--key-file", path)
	if code != exitOK || !strings.HasPrefix(first, "npub    npub1") || !strings.Contains(stderr, "created") {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, first, stderr)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", fi, err)
	}
	before, _ := os.ReadFile(path)
	code, again, stderr := cli(t, "", "keygen", "--key-file", path)
	after, _ := os.ReadFile(path)
	if code != exitOK || again != first || !strings.Contains(stderr, "exists") || !bytes.Equal(before, after) {
		t.Fatalf("second keygen: exit %d, stdout %q (first %q), stderr %q, file changed %v", code, again, first, stderr, !bytes.Equal(before, after))
	}

	// a hex key written by hand is read, not replaced
	sk := nostr.GeneratePrivateKey()
	pk, _ := nostr.GetPublicKey(sk)
	hexPath := writeFile(t, "hex.key", []byte(sk+"\n"))
	code, stdout, _ := cli(t, "", "keygen", "--key-file", hexPath)
	if got, _ := os.ReadFile(hexPath); code != exitOK || !strings.Contains(stdout, "pubkey  "+pk) || string(got) != sk+"\n" {
		t.Fatalf("exit %d, stdout %q", code, stdout)
	}
}

func TestSats(t *testing.T) {
	tests := []struct {
		msat int64
		want string
	}{
		{0, "0 sats"}, {1, "0.001 sats"}, {999, "0.999 sats"}, {1000, "1 sat"}, {21_500, "21.5 sats"},
		{98_944, "98.944 sats"}, {100_000, "100 sats"}, {-1_500, "-1.5 sats"},
	}
	for _, tc := range tests {
		if got := sats(tc.msat); got != tc.want {
			t.Errorf("sats(%d) = %q, want %q", tc.msat, got, tc.want)
		}
	}
}

func TestBalance(t *testing.T) {
	t.Parallel()
	relay := testrelay.Start(t)
	wal := startWallet(t, relay)
	nwc := wal.file(t)
	code, stdout, stderr := cli(t, "", "balance", "--nwc-file", nwc)
	if code != exitOK || stdout != "21.5 sats\n" {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	code, stdout, _ = cli(t, "", "balance", "--nwc-file", nwc, "--json")
	if doc := decodeOne(t, stdout); code != exitOK || doc["balance_msat"] != float64(21_500) || doc["balance_sat"] != float64(21) {
		t.Fatalf("exit %d, document %v", code, doc)
	}
}

// Variables are the client's own (SPARECYCLES_CLIENT_*): a shared name of before is ignored
// with a warning naming the new one, and an error about a value names the variable it came
// from.
func TestEnvNames(t *testing.T) {
	tests := []struct {
		name       string
		env        map[string]string
		want, warn string // in stderr
	}{
		{"error names the variable", map[string]string{"SPARECYCLES_CLIENT_NWC": "bogus"},
			"client: balance: SPARECYCLES_CLIENT_NWC: ", ""},
		{"shared name ignored with a warning", map[string]string{"SPARECYCLES_NWC": "bogus"},
			"no NWC wallet configured", "client: warning: SPARECYCLES_NWC is no longer read: set SPARECYCLES_CLIENT_NWC instead\n"},
		{"the worker's wallet is not the client's", map[string]string{"SPARECYCLES_WORKER_NWC": "bogus"},
			"no NWC wallet configured", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			code, _, stderr := cli(t, "", "balance")
			if code == exitOK || !strings.Contains(stderr, tc.want) || !strings.Contains(stderr, tc.warn) {
				t.Fatalf("exit %d, stderr %q; want %q and %q", code, stderr, tc.want, tc.warn)
			}
			if strings.Contains(stderr, "client: client:") {
				t.Fatalf("repeated prefix: %q", stderr)
			}
			if tc.warn == "" && strings.Contains(stderr, "warning") {
				t.Fatalf("unexpected warning: %q", stderr)
			}
		})
	}
}

// A sniper answers every request at once with a fake result carrying an invoice for the whole
// bid: the client pays only the worker whose quote it chose, prints that worker's text and
// counts the sniper's result as ignored. With the worker announced live (or named with --to),
// the choice is made as soon as it has quoted: the quote window, longer than the timeout here,
// would otherwise end the job first.
func TestPostIgnoresSniper(t *testing.T) {
	t.Parallel()
	relay := testrelay.Start(t)
	wal := startWallet(t, relay)
	const bid, price = 500_000, 1056
	var mu sync.Mutex
	var sniped []string                     // the sniper's invoices
	snipedJob := map[string]chan struct{}{} // closed once the sniper's result for a job is stored
	snipeDone := func(job string) chan struct{} {
		mu.Lock()
		defer mu.Unlock()
		if snipedJob[job] == nil {
			snipedJob[job] = make(chan struct{})
		}
		return snipedJob[job]
	}
	startWorker(t, relay, 5000, func(ctx context.Context, w *worker, req *nostr.Event) {
		bolt11 := wal.invoiceFor(t, req.ID, bid)
		mu.Lock()
		sniped = append(sniped, bolt11)
		mu.Unlock()
		r := nip90.JobResult{Kind: 6000, JobID: req.ID, Customer: req.PubKey, Content: "sniped", Amount: &nip90.Amount{Msat: bid, Bolt11: bolt11}}
		w.publish(ctx, r.Event())
		close(snipeDone(req.ID))
	})
	real := startWorker(t, relay, 5000, func(ctx context.Context, w *worker, req *nostr.Event) {
		bolt11 := wal.invoiceFor(t, req.ID, price)
		w.feedback(ctx, req, nip90.StatusPaymentRequired, "", &nip90.Amount{Msat: price, Bolt11: bolt11})
		for {
			select {
			case paid := <-wal.paid:
				if paid != bolt11 {
					t.Errorf("the client paid an invoice that is not the chosen worker's: %s", paid)
					continue
				}
				select { // the sniper's result is out first, whatever the scheduler did
				case <-snipeDone(req.ID):
				case <-ctx.Done():
					return
				}
				w.result(ctx, req, "the real text")
				return
			case <-ctx.Done():
				return
			}
		}
	})
	h := home(t)
	tests := []struct {
		name string
		args []string
	}{
		{"quote window", fast},
		{"first quote", []string{"--first-quote", "--quote-window", "1m", "--timeout", "30s"}},
		{"named worker", []string{"--to", real.pk, "--quote-window", "1m", "--timeout", "30s"}},
		{"live worker", []string{"--quote-window", "1m", "--timeout", "30s"}}, // announced below
	}
	for _, tc := range tests {
		if tc.name == "live worker" {
			h := nip89.HandlerInfo{Identifier: "w", Kinds: []int{5000}, CreatedAt: nostr.Now(), Metadata: nip89.Metadata{Name: "real", Worker: &nip89.Worker{Version: 1, Payment: "lightning"}}}
			evt, err := h.Event()
			if err != nil {
				t.Fatal(err)
			}
			publishAs(t, relay, real.sk, evt)
		}
		t.Run(tc.name, func(t *testing.T) {
			// each job its own: the same request signed twice in one second is one event
			args := slices.Concat([]string{"post", "--relay", relay, "--input", writeFile(t, "page.png", pngBytes(t)), "--param", "case=" + tc.name,
				"--bid", "500sat", "--nwc-file", wal.file(t), "--json"}, tc.args, h)
			code, stdout, stderr := cli(t, "", args...)
			doc := decodeOne(t, stdout)
			if code != exitOK || doc["result"] != "the real text" || doc["worker"] != real.pk || doc["amount_msat"] != float64(price) {
				t.Fatalf("exit %d, document %v, stderr %q", code, doc, stderr)
			}
			if n, _ := doc["ignored_results"].(float64); n < 1 {
				t.Fatalf("ignored_results %v, want the sniper's result counted", doc["ignored_results"])
			}
		})
	}
	mu.Lock()
	defer mu.Unlock()
	if len(sniped) < len(tests) {
		t.Fatalf("the sniper answered %d jobs of %d", len(sniped), len(tests))
	}
}

// serveWallet serves a fake wallet's Service until the test ends, once it is ready.
func serveWallet(t *testing.T, svc *nip47.Service, pool *relayconn.Pool) {
	t.Helper()
	ready := make(chan struct{})
	svc.OnReady = func() { close(ready) }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("wallet: %v", err)
		}
		pool.Close()
	})
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("wallet did not start: %v", err)
	}
}

// Workers whose heartbeat says alive come first, with what the beat says; on a relay without
// /api/workers nothing is said of a worker that sends no heartbeat.
func TestWorkersLiveFirst(t *testing.T) {
	t.Parallel()
	relay := testrelay.Start(t)
	beating, silent := nostr.GeneratePrivateKey(), nostr.GeneratePrivateKey()
	now := nostr.Now()
	for _, w := range []struct {
		sk, name string
		at       nostr.Timestamp
	}{{beating, "beating box", now - 120}, {silent, "silent box", now - 10}} {
		h := nip89.HandlerInfo{Identifier: "w", Kinds: []int{5000}, CreatedAt: w.at, Metadata: nip89.Metadata{Name: w.name}}
		evt, err := h.Event()
		if err != nil {
			t.Fatal(err)
		}
		publishAs(t, relay, w.sk, evt)
	}
	publishAs(t, relay, beating, heartbeat.Beat{Identifier: "w", Status: heartbeat.StatusBusy, Queue: 3, Kinds: []int{5000}}.Event())

	code, stdout, stderr := cli(t, "", "workers", "--relay", relay)
	if code != exitOK || !strings.Contains(stdout, "online    live: alive, busy, queue 3 (heartbeat ") ||
		strings.Index(stdout, "beating box") > strings.Index(stdout, "silent box") || strings.Count(stdout, "online ") != 1 {
		t.Fatalf("exit %d, stderr %q, stdout:\n%s", code, stderr, stdout)
	}
	code, stdout, _ = cli(t, "", "workers", "--relay", relay, "--json")
	var docs []workerDoc
	if err := json.Unmarshal([]byte(stdout), &docs); err != nil || code != exitOK || len(docs) != 2 {
		t.Fatalf("exit %d, stdout %q: %v", code, stdout, err)
	}
	if docs[0].Name != "beating box" || !docs[0].Live || docs[0].Presence == nil || docs[0].Presence.Status != "busy" || docs[1].Live || docs[1].Presence != nil {
		t.Fatalf("docs %+v", docs)
	}
}

// A worker's paid reviews, as a relay's /api/workers counts them, read as stars and a count.
func TestWritePresenceReviews(t *testing.T) {
	now := time.Now()
	for _, tc := range []struct {
		p    client.Presence
		want string
	}{
		{client.Presence{Vouched: true, Connected: true, Reviews: 12, Rating: 4.5}, "  reviews   ★4.5 (12 paid reviews)\n"},
		{client.Presence{Vouched: true, Reviews: 1, Rating: 5}, "  reviews   ★5.0 (1 paid review)\n"},
		{client.Presence{Vouched: true}, ""},
	} {
		var b bytes.Buffer
		writePresence(&b, tc.p, true, true, now)
		_, reviews, _ := strings.Cut(b.String(), "\n")
		if reviews != tc.want {
			t.Errorf("%+v: %q, want %q", tc.p, reviews, tc.want)
		}
	}
}
