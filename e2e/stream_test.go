package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sparecycles/sparecycles/client"
	"github.com/sparecycles/sparecycles/internal/sqlitedb"
	"github.com/sparecycles/sparecycles/nips/escrow"
	"github.com/sparecycles/sparecycles/nips/nip90"
	"github.com/sparecycles/sparecycles/nips/stream"
	"github.com/sparecycles/sparecycles/worker"
)

// pages are the texts of the three pages the stream tests send, one image each.
var pages = []string{"first page of three", "second page here", "the third page"}

// servePages serves one rendered image per text and returns their URLs, in order.
func servePages(t testing.TB, texts ...string) []string {
	var urls []string
	for _, p := range texts {
		urls = append(urls, servePNG(t, p))
	}
	return urls
}

func inputArgs(urls []string) []string {
	var args []string
	for _, u := range urls {
		args = append(args, "--input", u)
	}
	return args
}

func sameText(got, want string) bool {
	return strings.ToLower(strings.TrimSpace(got)) == want
}

// streamDoc is the CLI's --json document of a stream.
type streamDoc struct {
	Job        string `json:"job"`
	Worker     string `json:"worker"`
	Status     string `json:"status"`
	Result     string `json:"result"`
	Scheme     string `json:"scheme"`
	AmountMsat int64  `json:"amount_msat"`
	Parts      []struct {
		Index      int    `json:"index"`
		Text       string `json:"text"`
		AmountMsat int64  `json:"amount_msat"`
	} `json:"parts"`
}

func decodeStreamDoc(t *testing.T, doc map[string]any) streamDoc {
	t.Helper()
	raw, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	var d streamDoc
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("document %s: %v", raw, err)
	}
	return d
}

// partLines are the "part k/n · x sat so far" lines of the CLI's stderr, in order.
func partLines(stderr string) []string {
	var out []string
	for _, line := range strings.Split(stderr, "\n") {
		if i := strings.Index(line, "part "); i >= 0 && strings.Contains(line, "sat so far") {
			out = append(out, strings.TrimSpace(line[i:]))
		}
	}
	return out
}

// partStates reads the states of a stream's parts from a worker's store, by part index.
func partStates(t *testing.T, data, job string) []string {
	t.Helper()
	db, err := sqlitedb.Open(context.Background(), filepath.Join(data, "worker.sqlite"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(`SELECT state FROM parts WHERE job_id = ? ORDER BY k`, job)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	return out
}

// awaitPartStates polls a worker's store until the stream's parts are in the states want,
// for at most a minute.
func awaitPartStates(t *testing.T, data, job string, want ...string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for tick := time.NewTicker(100 * time.Millisecond); ; <-tick.C {
		got := partStates(t, data, job)
		if slices.Equal(got, want) {
			tick.Stop()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("parts of %s are %q, want %q", job, got, want)
		}
	}
}

// A three-page stream from the command line over the ledger wallet's hold invoices: each page
// is quoted, locked, run, delivered sealed and settled on its own; the CLI prints a line per
// part, in order, and --json holds the parts and their total; the balances move by exactly
// the sum of the parts, and the worker settled each part once.
func TestStreamThroughCLI(t *testing.T) {
	bin := buildClient(t)
	_, url := startRelay(t)
	data := startLedgerWallet(t, url)
	workerURI := connect(t, data, url, "worker", 0, 0)
	clientURI := connect(t, data, url, "client", 1000, 500)
	workerData := t.TempDir()
	w := startWorkerWith(t, func(cfg *worker.Config) {
		cfg.NWC, cfg.Models, cfg.PaymentPoll, cfg.Data = workerURI.Encode(), pricedModels(t, 1000, 1000, ""), time.Second, workerData
		cfg.Payment, cfg.SettleWindow = []string{escrow.SchemeEscrow}, time.Minute
	}, url)
	before := [2]int64{balance(t, workerURI), balance(t, clientURI)}
	cli := newCLI(t, bin, url, clientURI.Encode())

	args := append([]string{"post", "--bid", "50sat", "--pay", "escrow", "--quote-window", "1s", "--timeout", "90s"}, inputArgs(servePages(t, pages...))...)
	code, raw, stderr := cli.run(args...)
	doc := decodeStreamDoc(t, raw)
	if code != 0 || doc.Status != "success" || doc.Worker != w.PubKey() || doc.Scheme != "escrow" || len(doc.Parts) != 3 {
		t.Fatalf("exit %d, document %+v, stderr %q", code, doc, stderr)
	}
	var sum int64
	for i, p := range doc.Parts {
		if p.Index != i+1 || !sameText(p.Text, pages[i]) || p.AmountMsat <= 1000 || p.AmountMsat > 2000 {
			t.Errorf("part %d: %+v, want index %d, text %q, 1000 msat + 1000 per megapixel", i, p, i+1, pages[i])
		}
		sum += p.AmountMsat
	}
	if doc.AmountMsat != sum {
		t.Errorf("total %d msat, the parts sum to %d", doc.AmountMsat, sum)
	}
	texts := stream.Split(doc.Result)
	if len(texts) != 3 || !sameText(texts[0], pages[0]) || !sameText(texts[2], pages[2]) {
		t.Errorf("result %q: want the three pages joined by a form feed line", doc.Result)
	}
	lines := partLines(stderr)
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "part 1/3 · ") || !strings.HasPrefix(lines[1], "part 2/3 · ") || !strings.HasPrefix(lines[2], "part 3/3 · ") {
		t.Errorf("progress lines %q, want one per part in order", lines)
	}
	after := [2]int64{balance(t, workerURI), balance(t, clientURI)}
	if after[0]-before[0] != sum || before[1]-after[1] != sum {
		t.Fatalf("balances %v → %v, want both to move by the parts' sum %d", before, after, sum)
	}
	awaitPartStates(t, workerData, doc.Job, worker.StateSettled, worker.StateSettled, worker.StateSettled)
}

// --max-spend for two parts, paid by escrow and by prepay: the CLI pays two pages, does not pay
// the third, deletes the request and exits 0 with status "stopped"; the worker ends the
// stream, the balances move by exactly two parts, and `client status` gives the two parts back.
func TestStreamMaxSpendThroughCLI(t *testing.T) {
	for _, pay := range []string{escrow.SchemeEscrow, escrow.SchemePrepay} {
		t.Run(pay, func(t *testing.T) { testStreamMaxSpend(t, pay) })
	}
}

func testStreamMaxSpend(t *testing.T, pay string) {
	bin := buildClient(t)
	_, url := startRelay(t)
	data := startLedgerWallet(t, url)
	workerURI := connect(t, data, url, "worker", 0, 0)
	clientURI := connect(t, data, url, "client", 1000, 500)
	workerData := t.TempDir()
	startWorkerWith(t, func(cfg *worker.Config) {
		cfg.NWC, cfg.Models, cfg.PaymentPoll, cfg.Data = workerURI.Encode(), pricedModels(t, 2000, 0, ""), time.Second, workerData
		cfg.SettleWindow = time.Minute
	}, url)
	before := [2]int64{balance(t, workerURI), balance(t, clientURI)}
	cli := newCLI(t, bin, url, clientURI.Encode())

	args := append([]string{"post", "--bid", "50sat", "--pay", pay, "--max-spend", "4sat", "--quote-window", "1s", "--timeout", "90s"}, inputArgs(servePages(t, pages...))...)
	code, raw, stderr := cli.run(args...)
	doc := decodeStreamDoc(t, raw)
	if code != 0 || doc.Status != "stopped" || len(doc.Parts) != 2 || doc.AmountMsat != 4000 {
		t.Fatalf("exit %d, document %+v, stderr %q; want stopped after two parts of 2000 msat", code, doc, stderr)
	}
	if !sameText(doc.Parts[0].Text, pages[0]) || !sameText(doc.Parts[1].Text, pages[1]) {
		t.Errorf("parts %+v", doc.Parts)
	}
	if !strings.Contains(stderr, "stopped after 2 of 3 parts at --max-spend") {
		t.Errorf("stderr %q does not say where it stopped", stderr)
	}
	// the worker saw the deletion: the stream ends with part 3 never paid
	deadline := time.Now().Add(time.Minute)
	for tick := time.NewTicker(100 * time.Millisecond); storedWorkerState(t, workerData, doc.Job) != worker.StateStreamEnded; <-tick.C {
		if time.Now().After(deadline) {
			t.Fatalf("the worker's stream is %s, want %s", storedWorkerState(t, workerData, doc.Job), worker.StateStreamEnded)
		}
	}
	paid := worker.StateSettled // escrow: delivered and settled
	if pay == escrow.SchemePrepay {
		paid = worker.StateDelivered
	}
	if st := partStates(t, workerData, doc.Job); len(st) < 2 || st[0] != paid || st[1] != paid || (len(st) == 3 && st[2] == paid) {
		t.Fatalf("parts %q: want the first two %s and the third not", st, paid)
	}
	after := [2]int64{balance(t, workerURI), balance(t, clientURI)}
	if after[0]-before[0] != 4000 || before[1]-after[1] != 4000 {
		t.Fatalf("balances %v → %v, want both to move by two parts, 4000 msat", before, after)
	}

	// status reopens what was paid for: the request is deleted; the two parts paid for come
	// back (escrow: opened with their payments' preimages; prepay: by their invoices)
	code, raw, stderr = cli.run("status", "--json", doc.Job)
	st := decodeStreamDoc(t, raw)
	if code != 0 || len(st.Parts) != 2 || raw["parts_of"] != float64(3) || !sameText(st.Parts[0].Text, pages[0]) || !sameText(st.Parts[1].Text, pages[1]) ||
		st.Parts[0].AmountMsat+st.Parts[1].AmountMsat != 4000 {
		t.Fatalf("status: exit %d, %v, stderr %q; want parts 1 and 2 of 3 opened, 4000 msat", code, raw, stderr)
	}
}

// The customer stops mid-stream (ctrl-C: the CLI deletes the request) while the second page is
// locked and running: the worker cancels its hold invoice, the customer keeps the first page
// and pays for it alone.
func TestStreamStopByDeletionRefundsTheLockedPart(t *testing.T) {
	bin := buildClient(t)
	_, url := startRelay(t)
	data := startLedgerWallet(t, url)
	workerURI := connect(t, data, url, "worker", 0, 0)
	clientURI := connect(t, data, url, "client", 1000, 500)
	workerData := t.TempDir()
	startWorkerWith(t, func(cfg *worker.Config) {
		cfg.NWC, cfg.Models, cfg.PaymentPoll, cfg.Data = workerURI.Encode(), pricedModels(t, 2000, 0, ""), time.Second, workerData
		cfg.Payment, cfg.SettleWindow = []string{escrow.SchemeEscrow}, time.Minute
	}, url)
	before := [2]int64{balance(t, workerURI), balance(t, clientURI)}
	// page 2's second fetch (its paid run) waits until released: the part is locked meanwhile
	second, held, _ := heldInput(t, pages[1])
	urls := []string{servePNG(t, pages[0]), second, servePNG(t, pages[2])}
	cli := newCLI(t, bin, url, clientURI.Encode())

	cmd := cli.command(append([]string{"post", "--bid", "50sat", "--pay", "escrow", "--quote-window", "1s", "--timeout", "90s"}, inputArgs(urls)...)...)
	var stdout strings.Builder
	cmd.Stdout = &stdout
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	lines := make(chan string, 64)
	go func() {
		defer close(lines)
		for sc := bufio.NewScanner(stderr); sc.Scan(); {
			lines <- sc.Text()
		}
	}()
	awaitClosed(t, held, "page 2's paid run")
	for line := range lines { // part 1 was delivered before part 2 ran
		t.Log("client:", line)
		if strings.Contains(line, "part 1/3") {
			break
		}
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	said := false
	for line := range lines {
		t.Log("client:", line)
		said = said || strings.Contains(line, "interrupted after 1 of 3 parts: the request is deleted")
	}
	cmd.Wait()
	if !said {
		t.Error("the client did not say that it deleted the request")
	}
	var doc streamDoc
	if err := json.Unmarshal([]byte(stdout.String()), &doc); err != nil {
		t.Fatalf("stdout %q: %v", stdout.String(), err)
	}
	if len(doc.Parts) != 1 || !sameText(doc.Parts[0].Text, pages[0]) {
		t.Fatalf("document %+v: want page 1 alone", doc)
	}
	// the deletion reached the worker: part 2's hold is cancelled, part 3 never paid
	deadline := time.Now().Add(time.Minute)
	for tick := time.NewTicker(100 * time.Millisecond); storedWorkerState(t, workerData, doc.Job) != worker.StateStreamEnded; <-tick.C {
		if time.Now().After(deadline) {
			t.Fatalf("the worker's stream is %s, want %s", storedWorkerState(t, workerData, doc.Job), worker.StateStreamEnded)
		}
	}
	st := partStates(t, workerData, doc.Job)
	if len(st) < 2 || st[0] != worker.StateSettled || st[1] != worker.StateRefunded {
		t.Fatalf("parts %q: want part 1 settled and part 2 refunded", st)
	}
	after := [2]int64{balance(t, workerURI), balance(t, clientURI)}
	if after[0]-before[0] != 2000 || before[1]-after[1] != 2000 {
		t.Fatalf("balances %v → %v, want both to move by part 1 alone, 2000 msat", before, after)
	}
}

// The worker process is SIGKILLed while page 2 is locked and running; started again on the
// same store it resumes the stream at that part: the customer gets all three pages, the
// worker settled each part exactly once, and the balances move by exactly the three parts.
func TestStreamWorkerKilledResumes(t *testing.T) {
	_, url := startRelay(t)
	data := startLedgerWallet(t, url)
	e := regtestEscrow{url: url, models: pricedModels(t, 2000, 0, ""), workerBin: buildWorker(t)}
	e.workerURI = connect(t, data, url, "worker", 0, 0)
	e.customerURI = connect(t, data, url, "client", 1000, 500)
	home := e.newWorkerHome(t, 2*time.Minute)
	first := home.start(t, "worker")
	c := newClientPaying(t, url, e.customerURI, client.PayByEscrow)
	before := e.balances(t)
	second, held, _ := heldInput(t, pages[1])
	urls := []string{servePNG(t, pages[0]), second, servePNG(t, pages[2])}

	done := make(chan doResult, 1)
	go func() {
		req := nip90.JobRequest{Kind: 5000, Output: "text/plain", BidMsat: 50_000}
		for _, u := range urls {
			req.Inputs = append(req.Inputs, nip90.Input{Value: u, Type: nip90.InputURL})
		}
		out, err := c.Do(context.Background(), req, nil)
		done <- doResult{out, err}
	}()
	awaitClosed(t, held, "page 2's paid run")
	first.kill()

	home.start(t, "worker again")
	var r doResult
	select {
	case r = <-done:
	case <-time.After(2 * time.Minute):
		t.Fatal("the client never answered")
	}
	if r.err != nil || r.out.Status != "success" || len(r.out.Parts) != 3 {
		t.Fatalf("outcome %+v, %v", r.out, r.err)
	}
	for i, p := range r.out.Parts {
		if !sameText(p.Text, pages[i]) || p.AmountMsat != 2000 {
			t.Errorf("part %d: %+v", i+1, p)
		}
	}
	awaitPartStates(t, home.data, r.out.Job, worker.StateSettled, worker.StateSettled, worker.StateSettled)
	if got := e.balances(t); before[0]-got[0] != 6000 || got[1]-before[1] != 6000 {
		t.Fatalf("balances %v → %v, want both to move by three parts, 6000 msat", before, got)
	}
}

// awaitClosed waits for ch to close, for at most a minute.
func awaitClosed(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(time.Minute):
		t.Fatalf("%s never happened", what)
	}
}

// A three-page stream over regtest lnd (a subtest of TestRegtestEscrow): each page is its own
// hold invoice on bob's node, paid from alice's, settled once its sealed part is stored; the
// customer reads the three pages in order, and the balances move by exactly three prices.
func (e regtestEscrow) testStream(t *testing.T) {
	e.startWorker(t)
	c := newClientPaying(t, e.url, e.customerURI, client.PayByEscrow)
	before := e.balances(t)
	req := nip90.JobRequest{Kind: 5000, Output: "text/plain", BidMsat: 10 * regtestEscrowPrice}
	for _, u := range servePages(t, pages...) {
		req.Inputs = append(req.Inputs, nip90.Input{Value: u, Type: nip90.InputURL})
	}
	out, err := c.Do(context.Background(), req, nil)
	if err != nil || out.Status != "success" || out.Scheme != escrow.SchemeEscrow || len(out.Parts) != 3 {
		t.Fatalf("outcome %+v, %v", out, err)
	}
	for i, p := range out.Parts {
		if p.Index != i+1 || !sameText(p.Text, pages[i]) || p.AmountMsat != regtestEscrowPrice {
			t.Errorf("part %d: %+v", i+1, p)
		}
	}
	pays, err := c.Payments(context.Background(), out.Job)
	if err != nil || len(pays) != 3 {
		t.Fatalf("client payments %+v, %v: want one per part", pays, err)
	}
	for _, p := range pays {
		if p.State != client.PayPaid {
			t.Errorf("payment %+v not paid", p)
		}
	}
	if out.AmountMsat != 3*regtestEscrowPrice || out.FeeMsat != 0 {
		t.Fatalf("paid %d msat + %d fee, want %d and no fee on a direct channel", out.AmountMsat, out.FeeMsat, 3*regtestEscrowPrice)
	}
	awaitBalance(t, e.customerURI, "customer", before[0]-3*regtestEscrowPrice)
	awaitBalance(t, e.workerURI, "worker", before[1]+3*regtestEscrowPrice)
}
