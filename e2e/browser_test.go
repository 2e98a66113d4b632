package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/nbd-wtf/go-nostr/nip19"

	"github.com/sparecycles/sparecycles/internal/testimage"
)

// The browser test drives the market page (relay/web) in a real headless Chromium: it needs
// the browser (scripts/fetch-chromium) and the page's npm bundle (scripts/web-bundle writes
// relay/web/static/nostr.js). SPARECYCLES_BROWSER=1 makes the test run and fail when either is
// missing; without it the test skips. SPARECYCLES_CHROMIUM names the browser (default
// /usr/bin/chromium).

// browserBundle is the page's npm bundle, relative to this package.
var browserBundle = filepath.Join("..", "relay", "web", "static", "nostr.js")

// browserPath is the Chromium to drive, after the gate: it skips without SPARECYCLES_BROWSER=1
// and fails when the browser or the bundle is missing with it.
func browserPath(t *testing.T) string {
	t.Helper()
	if os.Getenv("SPARECYCLES_BROWSER") != "1" {
		t.Skip("browser: set SPARECYCLES_BROWSER=1 to drive the market page in Chromium " +
			"(scripts/fetch-chromium installs it and prints its path for SPARECYCLES_CHROMIUM; " +
			"scripts/web-bundle builds relay/web/static/nostr.js)")
	}
	path := os.Getenv("SPARECYCLES_CHROMIUM")
	if path == "" {
		path = "/usr/bin/chromium"
	}
	if _, err := exec.LookPath(path); err != nil {
		t.Fatalf("browser: no Chromium at %s (%v): run scripts/fetch-chromium and set SPARECYCLES_CHROMIUM to the path it prints", path, err)
	}
	if _, err := os.Stat(browserBundle); err != nil {
		t.Fatalf("browser: the page's bundle is missing (%v): run scripts/web-bundle", err)
	}
	return path
}

// newBrowser starts a headless Chromium with a fresh profile and returns its tab's context
// (the browser stops when the test ends) and a function that returns every console error, uncaught exception and
// browser log error (failed loads, CSP violations) the page has had so far.
func newBrowser(t *testing.T, path string) (context.Context, func() []string) {
	t.Helper()
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.WithoutCancel(t.Context()),
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("password-store", "basic"),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	)
	tab, cancelTab := chromedp.NewContext(alloc, chromedp.WithLogf(t.Logf))
	t.Cleanup(func() { cancelTab(); cancelAlloc() })

	var mu sync.Mutex
	var problems []string
	note := func(format string, args ...any) {
		mu.Lock()
		problems = append(problems, fmt.Sprintf(format, args...))
		mu.Unlock()
	}
	err := chromedp.Listen(tab, func(ev any) {
		switch ev := ev.(type) {
		case *runtime.EventConsoleAPICalled:
			if ev.Type == runtime.ConsoleAPICalledTypeError || ev.Type == runtime.ConsoleAPICalledTypeAssert {
				var args []string
				for _, a := range ev.Args {
					switch {
					case len(a.Value) > 0:
						args = append(args, string(a.Value))
					case a.Description != "":
						args = append(args, a.Description)
					default:
						args = append(args, string(a.Type))
					}
				}
				note("console.%s: %s", ev.Type, strings.Join(args, " "))
			}
		case *runtime.EventExceptionThrown:
			d := ev.ExceptionDetails
			msg := d.Text
			if d.Exception != nil && d.Exception.Description != "" {
				msg += " " + d.Exception.Description
			}
			note("uncaught exception at %s:%d:%d: %s", d.URL, d.LineNumber, d.ColumnNumber, msg)
		case *log.EventEntryAdded:
			if e := ev.Entry; e.Level == log.EntryLevelError {
				note("browser log (%s) %s: %s", e.Source, e.URL, e.Text)
			}
		}
	})
	if err != nil {
		t.Fatalf("browser: start %s: %v", path, err)
	}
	return tab, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), problems...)
	}
}

// screenshot saves a full-page PNG of the tab as name in the test's artifact directory (kept
// with go test -artifacts) and logs its path.
func screenshot(t *testing.T, tab context.Context, name string) string {
	t.Helper()
	png, err := chromedp.Run(tab, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	path := filepath.Join(t.ArtifactDir(), name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	t.Logf("screenshot: %s", path)
	return path
}

// pageState is what the page shows of the job it posted.
type pageState struct {
	Conn   string `json:"conn"`
	Status string `json:"status"`
	Error  string `json:"error"`
	Result string `json:"result"`
	Amount string `json:"amount"`
	Job    string `json:"job"`
	Worker string `json:"worker"`
	Scheme string `json:"scheme"`
}

const pageStateJS = `(() => {
	const text = (sel) => { // "" for a missing element and for a placeholder dash
		const e = document.querySelector(sel), t = e ? e.innerText.trim() : "";
		return /^[-–—]$/.test(t) ? "" : t;
	};
	return {conn: text("#conn-status"), status: text("#post-status"), error: text("#post-error"),
		result: text("#post-result"), amount: text("#post-amount"), job: text("#post-job"),
		worker: text("#post-worker"), scheme: text("#post-scheme")};
})()`

// waitPage polls the page's state every 100 ms until done says it is reached, the page shows an
// error, or tab's deadline passes (then with a screenshot, timeout.png).
func waitPage(t *testing.T, tab context.Context, what string, done func(pageState) bool) pageState {
	t.Helper()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var s pageState
	for {
		var err error
		s, err = chromedp.Run(tab, chromedp.Evaluate[pageState](pageStateJS))
		if err != nil && tab.Err() == nil {
			t.Fatalf("waiting for %s: read the page: %v", what, err)
		}
		if err == nil && done(s) {
			return s
		}
		if s.Error != "" {
			screenshot(t, tab, "error.png")
			t.Fatalf("waiting for %s: the page shows an error: %q (page %+v)", what, s.Error, s)
		}
		select {
		case <-tab.Done():
			screenshot(t, context.WithoutCancel(tab), "timeout.png") // the tab outlives the deadline
			t.Fatalf("waiting for %s: %v; the page shows %+v", what, tab.Err(), s)
		case <-tick.C:
		}
	}
}

// evalJS evaluates expr in the tab and returns its value.
func evalJS[T any](t *testing.T, tab context.Context, expr string) T {
	t.Helper()
	v, err := chromedp.Run(tab, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// shortFor reports whether short is full shortened by the page: "head…tail", or full itself.
func shortFor(short, full string) bool {
	head, tail, ok := strings.Cut(short, "…")
	if !ok {
		return short == full
	}
	return head != "" && strings.HasPrefix(full, head) && strings.HasSuffix(full, tail)
}

// fill sets the value of the input with id as typing would: input and change events follow.
func fill(id, value string) chromedp.Action[chromedp.Void] {
	return chromedp.Steps(
		chromedp.SetValue(chromedp.ID(id), value),
		chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
			_, err := chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`(() => { const e = document.getElementById(%q);
				e.dispatchEvent(new Event("input", {bubbles: true})); e.dispatchEvent(new Event("change", {bubbles: true})); })()`, id))(ctx, t)
			return err
		}),
	)
}

// sats parses the page's "N sats" (N may have up to 3 decimals) into msat, with the precision
// it was written to (1000 msat for whole sats, 1 for three decimals).
func sats(s string) (msat, precision int64, err error) {
	n, ok := strings.CutSuffix(strings.TrimSpace(s), " sats")
	if !ok {
		n, ok = strings.CutSuffix(strings.TrimSpace(s), " sat")
	}
	if !ok {
		return 0, 0, fmt.Errorf("%q is not \"N sats\"", s)
	}
	n = strings.ReplaceAll(n, ",", "")
	f, err := strconv.ParseFloat(n, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("%q is not \"N sats\": %w", s, err)
	}
	precision = 1000
	if _, frac, ok := strings.Cut(n, "."); ok {
		for range min(len(frac), 3) {
			precision /= 10
		}
	}
	return int64(f*1000 + 0.5), precision, nil
}

// The market page, in a real Chromium, against a real relay, ledger wallet and OCR worker: the
// page goes live, a customer posts an image with a bid and pays through a Nostr Wallet Connect
// URI pasted into the form, the page shows the OCR text and the amount the wallet moved, and the
// board, workers panel and stats reflect the job; no console error on the way.
func TestBrowserMarket(t *testing.T) {
	path := browserPath(t)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()

	_, url := startRelay(t)
	data := startLedgerWallet(t, url)
	workerURI := connect(t, data, url, "worker", 0, 0)
	customerURI := connect(t, data, url, "customer", 1000, 500)
	const baseMsat, perMegapixelMsat = 20_000, 1000 // about 20 sats for the page below
	w := startPaidWorker(t, url, workerURI, pricedModels(t, baseMsat, perMegapixelMsat, ""))
	before := [2]int64{balance(t, workerURI), balance(t, customerURI)}

	const text = "paid in a browser"
	png, err := testimage.Render(28, text)
	if err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(t.TempDir(), "page.png")
	if err := os.WriteFile(img, png, 0o644); err != nil {
		t.Fatal(err)
	}

	browser, problems := newBrowser(t, path)
	deadline, _ := ctx.Deadline()
	tab, cancelTab := context.WithDeadline(browser, deadline) // every step below, bounded
	defer cancelTab()
	page := "http://" + strings.TrimPrefix(url, "ws://") + "/"
	if err := chromedp.Do(tab, chromedp.Navigate(page)); err != nil {
		t.Fatalf("open %s: %v", page, err)
	}
	waitPage(t, tab, "the page to go live", func(s pageState) bool { return s.Conn == "live" })
	screenshot(t, tab, "1-loaded.png")

	if off := evalJS[string](t, tab, `document.getElementById("post-submit").disabled ? (document.getElementById("post-unavailable")||{}).innerText||"disabled" : ""`); off != "" {
		t.Fatalf("the post form is disabled: %q", off)
	}
	const bidSats = 100
	err = chromedp.Do(tab,
		chromedp.SetUploadFiles(chromedp.ID("post-file"), []string{img}),
		fill("post-bid", strconv.Itoa(bidSats)),
		fill("nwc-uri", customerURI.Encode()),
		chromedp.Click(chromedp.ID("post-submit")),
	)
	if err != nil {
		t.Fatalf("fill in and submit the post form: %v", err)
	}
	waitPage(t, tab, "a quote or payment", func(s pageState) bool { return s.Amount != "" || s.Result != "" })
	screenshot(t, tab, "2-paying.png")
	s := waitPage(t, tab, "the result", func(s pageState) bool {
		return strings.Contains(strings.ToLower(s.Result), text)
	})

	// The amount shown is what the wallet moved from the customer to the worker.
	after := [2]int64{balance(t, workerURI), balance(t, customerURI)}
	paid := after[0] - before[0]
	if paid <= 0 || before[1]-after[1] != paid {
		t.Errorf("balances %v → %v: want the worker to gain what the customer lost", before, after)
	}
	shown, precision, err := sats(s.Amount)
	switch {
	case err != nil:
		t.Errorf("#post-amount: %v", err)
	case shown <= 0 || shown > bidSats*1000:
		t.Errorf("#post-amount %q: want more than 0 and at most the bid, %d sats", s.Amount, bidSats)
	case 2*max(shown-paid, paid-shown) > precision:
		t.Errorf("#post-amount %q, but the wallet moved %d msat", s.Amount, paid)
	}
	t.Logf("the page shows %q paid by %q; the ledger moved %d msat", s.Amount, s.Scheme, paid)
	if s.Scheme != "escrow" { // the ledger wallet holds invoices on both sides, and the page prefers escrow
		t.Errorf("#post-scheme %q, want escrow", s.Scheme)
	}
	if s.Job == "" {
		t.Fatalf("#post-job is empty; the page shows %+v", s)
	}
	npub, err := nip19.EncodePublicKey(w.PubKey())
	if err != nil {
		t.Fatal(err)
	}
	if !shortFor(s.Worker, npub) {
		t.Errorf("#post-worker %q: want the worker, %s", s.Worker, npub)
	}

	// The board, the workers panel and the stats have seen the job.
	row := fmt.Sprintf(`tr[data-job=%q]`, s.Job)
	waitPage(t, tab, "the board's row for the job to read done", func(pageState) bool {
		return evalJS[string](t, tab, fmt.Sprintf(`(document.querySelector('%s td.state')||{}).innerText||""`, row)) == "done"
	})
	// the cell shows the npub shortened and holds the hex pubkey in its title
	who := evalJS[string](t, tab, fmt.Sprintf(`document.querySelector('%s td.worker').innerText.trim()`, row))
	whoFull := evalJS[string](t, tab, fmt.Sprintf(`document.querySelector('%s td.worker').title`, row))
	if !shortFor(who, npub) || whoFull != w.PubKey() {
		t.Errorf("board row %s shows worker %q (title %q), want %s (%s)", row, who, whoFull, npub, w.PubKey())
	}
	wrow := fmt.Sprintf(`tr[data-worker=%q]`, w.PubKey())
	waitPage(t, tab, "the worker's row to count a job done", func(pageState) bool {
		n, _ := strconv.Atoi(evalJS[string](t, tab, fmt.Sprintf(`((document.querySelector('%s td.done')||{}).innerText||"").trim()`, wrow)))
		return n >= 1
	})
	waitPage(t, tab, "the posted-jobs chart to count the job", func(pageState) bool {
		n, _ := strconv.ParseFloat(evalJS[string](t, tab, `document.querySelector('#chart-posted').getAttribute('data-total')||""`), 64)
		return n >= 1
	})
	screenshot(t, tab, "3-done.png")

	// A stream from the same form: two images are two parts, each quoted and paid on its own;
	// the page shows "part k of n" as they come (recorded by a MutationObserver, since a part
	// may come and go between two polls), then both texts.
	texts := [2]string{"first part here", "second part there"}
	var imgs []string
	for i, txt := range texts {
		png, err := testimage.Render(28, txt)
		if err != nil {
			t.Fatal(err)
		}
		imgs = append(imgs, filepath.Join(t.TempDir(), fmt.Sprintf("part-%d.png", i+1)))
		if err := os.WriteFile(imgs[i], png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	evalJS[bool](t, tab, `(() => { window.__parts = [];
		const li = document.querySelector('#post-stages li[data-stage="parts"]');
		new MutationObserver(() => { if (!li.hidden) window.__parts.push(li.innerText.trim()); })
			.observe(li, {childList: true, characterData: true, subtree: true, attributes: true});
		return true; })()`)
	err = chromedp.Do(tab,
		chromedp.SetUploadFiles(chromedp.ID("post-file"), imgs),
		chromedp.Click(chromedp.ID("post-submit")),
	)
	if err != nil {
		t.Fatalf("submit a stream: %v", err)
	}
	s2 := waitPage(t, tab, "both parts' text", func(s2 pageState) bool {
		r := strings.ToLower(s2.Result)
		return s2.Job != s.Job && strings.Contains(r, texts[0]) && strings.Contains(r, texts[1])
	})
	seen := evalJS[[]string](t, tab, `window.__parts`)
	if !slices.Contains(seen, "part 2 of 2") {
		t.Errorf("the stages showed %q for the stream's parts, want \"part 2 of 2\" among them", seen)
	}
	waitPage(t, tab, "the board's row for the stream to read done", func(pageState) bool {
		return evalJS[string](t, tab, fmt.Sprintf(`(document.querySelector('tr[data-job=%q] td.state')||{}).innerText||""`, s2.Job)) == "done"
	})
	t.Logf("the stream: parts shown %q, paid %q by %q", seen, s2.Amount, s2.Scheme)
	screenshot(t, tab, "4-stream-done.png")

	for _, p := range problems() {
		t.Errorf("browser: %s", p)
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Errorf("the test ran out of time")
	}
}
