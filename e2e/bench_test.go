package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/sparecycles/sparecycles/client"
	"github.com/sparecycles/sparecycles/internal/regtest"
	"github.com/sparecycles/sparecycles/internal/relayconn"
	"github.com/sparecycles/sparecycles/internal/testimage"
	"github.com/sparecycles/sparecycles/nips/nip47"
	"github.com/sparecycles/sparecycles/nips/nip90"
	"github.com/sparecycles/sparecycles/worker/ocr"
	"github.com/sparecycles/sparecycles/worker/onnx"
)

// BenchmarkNWC times one NWC round trip per method: client → relay → wallet service (ledger
// backend) → relay → client, over our relay on 127.0.0.1.
func BenchmarkNWC(b *testing.B) {
	_, url := startRelay(b)
	data := startLedgerWallet(b, url)
	payee := connect(b, data, url, "payee", 0, 0)
	payer := connect(b, data, url, "payer", 1_000_000, 0)
	pool := relayconn.NewPool([]string{url})
	defer pool.Close()
	payeeW, payerW := nip47.NewClient(payee, pool), nip47.NewClient(payer, pool)
	ctx := context.Background()
	tx, err := payeeW.MakeInvoice(ctx, nip47.MakeInvoiceParams{Amount: 1000, Description: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	methods := []struct {
		name string
		call func(i int) error
		prep func(n int) []string
	}{
		{"get_info", func(int) error { _, err := payerW.GetInfo(ctx); return err }, nil},
		{"get_balance", func(int) error { _, err := payerW.GetBalance(ctx); return err }, nil},
		{"make_invoice", func(int) error {
			_, err := payeeW.MakeInvoice(ctx, nip47.MakeInvoiceParams{Amount: 1000, Description: "bench"})
			return err
		}, nil},
		{"lookup_invoice", func(int) error {
			_, err := payeeW.LookupInvoice(ctx, nip47.LookupInvoiceParams{PaymentHash: tx.PaymentHash})
			return err
		}, nil},
		{"list_transactions", func(int) error {
			_, err := payeeW.ListTransactions(ctx, nip47.ListTransactionsParams{Limit: 10})
			return err
		}, nil},
	}
	for _, m := range methods {
		b.Run(m.name, func(b *testing.B) {
			i := 0
			for b.Loop() {
				if err := m.call(i); err != nil {
					b.Fatal(err)
				}
				i++
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(i)/1000, "ms/call")
		})
	}
	b.Run("pay_invoice", func(b *testing.B) {
		var invoices []string
		for i := 0; i < 200; i++ {
			tx, err := payeeW.MakeInvoice(ctx, nip47.MakeInvoiceParams{Amount: 1000, Description: fmt.Sprint("bench ", i)})
			if err != nil {
				b.Fatal(err)
			}
			invoices = append(invoices, tx.Invoice)
		}
		i := 0
		for b.Loop() {
			if i == len(invoices) {
				b.Fatal("out of invoices: run with -benchtime at most 200x")
			}
			if _, err := payerW.PayInvoice(ctx, invoices[i], 0); err != nil {
				b.Fatal(err)
			}
			i++
		}
		b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(i)/1000, "ms/call")
	})
}

// BenchmarkPaidJob runs paid OCR jobs end to end (post, quote, pay through the ledger wallet,
// lease, run, result) and reports the request→result time, the OCR time of the same image
// measured directly, and their difference: what the market adds to a job.
func BenchmarkPaidJob(b *testing.B) {
	_, url := startRelay(b)
	data := startLedgerWallet(b, url)
	workerURI := connect(b, data, url, "worker", 0, 0)
	clientURI := connect(b, data, url, "client", 1_000_000, 0)
	startPaidWorker(b, url, workerURI, pricedModels(b, 1000, 0, ""))
	c, err := client.Open(context.Background(), client.Config{
		Relays: []string{url}, NWC: clientURI.Encode(), Data: b.TempDir(), SecretKey: strings.Repeat("1", 64),
		QuoteWindow: time.Second, FirstQuote: true, Timeout: time.Minute,
	}, zerolog.Nop())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	line := "Pack my box with five dozen liquor jugs and sixty pens"
	img := servePNG(b, line)
	inference := directOCR(b, line)

	var total time.Duration
	n := 0
	for b.Loop() {
		t0 := time.Now()
		req := ocrJob(img, 5000)
		req.Params = append(req.Params, nip90Param("n", fmt.Sprint(n)))
		out, err := c.Do(context.Background(), req, nil)
		if err != nil {
			b.Fatal(err)
		}
		if out.AmountMsat != 1000 {
			b.Fatalf("paid %d", out.AmountMsat)
		}
		total += time.Since(t0)
		n++
	}
	job := float64(total.Microseconds()) / float64(n) / 1000
	inf := float64(inference.Microseconds()) / 1000
	b.ReportMetric(job, "job-ms")
	b.ReportMetric(inf, "inference-ms")
	b.ReportMetric(job-inf, "overhead-ms")
}

// directOCR times Recognize on the same rendered line (median of 5), as the worker's model runs it.
func directOCR(b *testing.B, line string) time.Duration {
	bare := newBareOCR(b, line)
	var times []time.Duration
	for i := 0; i < 5; i++ {
		times = append(times, bare())
	}
	return median(times)
}

// newBareOCR loads the OCR model as the worker does (CPU, 1 thread) and returns a function that
// times one Decode+Recognize of the rendered line; the model is closed when the benchmark ends.
func newBareOCR(b *testing.B, line string) func() time.Duration {
	png, err := testimage.Render(28, line)
	if err != nil {
		b.Fatal(err)
	}
	rt, err := onnx.NewRuntime(onnx.RuntimeConfig{Device: onnx.Device{Kind: onnx.DeviceCPU}, Threads: 1}, zerolog.Nop())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { rt.Close() })
	m, err := ocr.Load(rt, modelsDir())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { m.Close() })
	return func() time.Duration {
		t0 := time.Now()
		im, _, err := ocr.Decode(png, 1<<24)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := m.Recognize(context.Background(), im); err != nil {
			b.Fatal(err)
		}
		return time.Since(t0)
	}
}

func nip90Param(name, value string) nip90.Param {
	return nip90.Param{Name: name, Values: []string{value}}
}

func median(ds []time.Duration) time.Duration {
	slices.Sort(ds)
	return ds[len(ds)/2]
}

// BenchmarkJobOverhead reports what the market adds to an OCR job, request→result minus the
// same image's inference time measured directly, as p50 and p99 over the jobs: (a) unpaid,
// (b) paid through the ledger wallet, (c) paid over regtest lnd (with SPARECYCLES_REGTEST=1).
// Each job comes right after a bare inference of the same image in this process, and the job's
// overhead is counted against that one, so that the machine getting faster or slower during
// the run falls on both.
func BenchmarkJobOverhead(b *testing.B) {
	line := "Pack my box with five dozen liquor jugs and sixty pens"
	bare := newBareOCR(b, line)
	run := func(b *testing.B, url string, clientURI *nip47.URI, pay client.PayBy) {
		img := servePNG(b, line)
		cfg := client.Config{Relays: []string{url}, Data: b.TempDir(), SecretKey: strings.Repeat("2", 64),
			QuoteWindow: time.Second, FirstQuote: true, Timeout: time.Minute, Pay: pay}
		if clientURI != nil {
			cfg.NWC = clientURI.Encode()
		}
		c, err := client.Open(context.Background(), cfg, zerolog.Nop())
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		var over, inference []time.Duration
		n := 0
		for b.Loop() {
			req := ocrJob(img, 5000)
			req.Params = append(req.Params, nip90Param("n", fmt.Sprint(n)))
			inf := bare()
			t0 := time.Now()
			if _, err := c.Do(context.Background(), req, nil); err != nil {
				b.Fatal(err)
			}
			over = append(over, time.Since(t0)-inf)
			inference = append(inference, inf)
			n++
		}
		slices.Sort(over)
		b.ReportMetric(float64(over[len(over)/2].Microseconds())/1000, "p50-overhead-ms")
		b.ReportMetric(float64(over[len(over)*99/100].Microseconds())/1000, "p99-overhead-ms")
		b.ReportMetric(float64(median(inference).Microseconds())/1000, "inference-ms")
	}
	b.Run("unpaid", func(b *testing.B) {
		_, url := startRelay(b)
		startWorker(b, url)
		run(b, url, nil, client.PayByAny)
	})
	// the worker's wallet holds invoices, so it offers escrow and prepay; the client picks
	for _, sc := range []struct {
		name string
		pay  client.PayBy
	}{{"ledger", client.PayByPrepay}, {"ledger-escrow", client.PayByEscrow}} {
		b.Run(sc.name, func(b *testing.B) {
			url, clientURI := ledgerMarket(b)
			run(b, url, &clientURI, sc.pay)
		})
	}
	for _, sc := range []struct {
		name string
		pay  client.PayBy
	}{{"lnd", client.PayByPrepay}, {"lnd-escrow", client.PayByEscrow}} {
		b.Run(sc.name, func(b *testing.B) {
			net := regtest.Start(b) // skips unless SPARECYCLES_REGTEST=1
			_, url := startRelay(b)
			clientURI := lndConnect(b, startLNDWallet(b, url, net.Alice), url, "customer")
			workerURI := lndConnect(b, startLNDWallet(b, url, net.Bob), url, "worker")
			startPaidWorker(b, url, workerURI, pricedModels(b, 1000, 0, ""))
			run(b, url, &clientURI, sc.pay)
		})
	}
}

// ledgerMarket starts a relay, a ledger wallet service and an OCR worker paid through it at
// 1 sat a job (or part), and returns the relay's URL and a customer's funded connection.
func ledgerMarket(b *testing.B) (url string, customer nip47.URI) {
	_, url = startRelay(b)
	data := startLedgerWallet(b, url)
	workerURI := connect(b, data, url, "worker", 0, 0)
	customer = connect(b, data, url, "client", 1_000_000, 0)
	startPaidWorker(b, url, workerURI, pricedModels(b, 1000, 0, ""))
	return url, customer
}

// BenchmarkStream runs streams of 4 OCR pages (the same rendered line on each, so each part's
// inference is the same) through the client library against a worker paid through the ledger
// wallet, by escrow (a hold invoice, a sealed part and a settle per page) and by prepay (an
// invoice per page, paid before the page runs). It reports the time from posting to the first
// part read, and the time between parts after the first, against a bare Decode+Recognize of
// the same image measured in this process right before each stream.
func BenchmarkStream(b *testing.B) {
	const pages = 4
	line := "Pack my box with five dozen liquor jugs and sixty pens"
	bare := newBareOCR(b, line)
	for _, sc := range []struct {
		name string
		pay  client.PayBy
	}{{"ledger-escrow", client.PayByEscrow}, {"ledger-prepay", client.PayByPrepay}} {
		b.Run(sc.name, func(b *testing.B) {
			url, clientURI := ledgerMarket(b)
			c, err := client.Open(context.Background(), client.Config{
				Relays: []string{url}, NWC: clientURI.Encode(), Data: b.TempDir(), SecretKey: strings.Repeat("3", 64),
				QuoteWindow: time.Second, FirstQuote: true, Timeout: time.Minute, Pay: sc.pay,
			}, zerolog.Nop())
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			img := servePNG(b, line)
			var first, per, inference, firstOver, perOver []time.Duration
			n := 0
			for b.Loop() {
				req := ocrJob(img, 100_000)
				for len(req.Inputs) < pages {
					req.Inputs = append(req.Inputs, req.Inputs[0])
				}
				req.Params = append(req.Params, nip90Param("n", fmt.Sprint(n)))
				inf := bare()
				var at []time.Duration
				t0 := time.Now()
				out, err := c.Stream(context.Background(), req, nil, func(client.PartProgress) { at = append(at, time.Since(t0)) })
				if err != nil || len(out.Parts) != pages || len(at) != pages {
					b.Fatalf("stream: %d parts (%d reported), %v", len(out.Parts), len(at), err)
				}
				f, p := at[0], (at[pages-1]-at[0])/(pages-1)
				first, per, inference = append(first, f), append(per, p), append(inference, inf)
				firstOver, perOver = append(firstOver, f-inf), append(perOver, p-inf)
				n++
			}
			ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
			b.ReportMetric(ms(median(first)), "first-part-ms")
			b.ReportMetric(ms(median(per)), "per-part-ms")
			b.ReportMetric(ms(median(inference)), "bare-part-ms")
			b.ReportMetric(ms(median(firstOver)), "first-part-overhead-ms")
			b.ReportMetric(ms(median(perOver)), "per-part-overhead-ms")
		})
	}
}
