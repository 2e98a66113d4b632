package worker

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/sparecycles/sparecycles/internal/testimage"
	"github.com/sparecycles/sparecycles/internal/testrelay"
	"github.com/sparecycles/sparecycles/nips/tensor"
	"github.com/sparecycles/sparecycles/worker/onnx"
)

// BenchmarkWorkerOverhead runs the same detection-model input as a kind 5800 job through a
// worker and a relay, and as a bare session.Run, side by side, at 1 thread. It reports the
// job's request→result time, the bare Run time and their ratio.
func BenchmarkWorkerOverhead(b *testing.B) {
	relayURL := testrelay.Start(b)
	cfg := testConfig(b, relayURL)
	w := startWorker(b, cfg)
	conn := testrelay.Dial(b, relayURL)
	in := detInput(32, 32) // its JSON must fit a 64 KiB tag value
	doc := tensorDoc(b, in)

	ref, err := w.rt.NewSession(filepath.Join(cfg.Models, "ch_PP-OCRv4_det_infer.onnx"))
	if err != nil {
		b.Fatal(err)
	}
	defer ref.Close()
	inputs := []onnx.Tensor{in}
	cust := newCustomer()

	var jobTime, runTime time.Duration
	n := 0
	for b.Loop() {
		t0 := time.Now()
		job := cust.post(b, tensor.KindRequest, nostr.Tags{{"i", doc, "text"}, {"param", "model", "ppocrv4-det"}, {"param", "n", fmt.Sprint(n)}}, conn)
		if res, info := testrelay.JobOutcome(b, conn, job); res == nil {
			b.Fatalf("job failed: %s", info)
		}
		jobTime += time.Since(t0)
		t1 := time.Now()
		if _, err := ref.Run(context.Background(), inputs); err != nil {
			b.Fatal(err)
		}
		runTime += time.Since(t1)
		n++
	}
	job, run := float64(jobTime.Microseconds())/float64(n)/1000, float64(runTime.Microseconds())/float64(n)/1000
	b.ReportMetric(job, "job-ms")
	b.ReportMetric(run, "run-ms")
	b.ReportMetric(job/run, "ratio")
}

// BenchmarkOCRJobs posts OCR jobs (a 10-word line each) to one worker on one relay and
// reports jobs/s, request to result.
func BenchmarkOCRJobs(b *testing.B) {
	relayURL := testrelay.Start(b)
	w := startWorker(b, testConfig(b, relayURL))
	_ = w
	png, err := testimage.Render(32, "Pack my box with five dozen liquor jugs and sixty pens")
	if err != nil {
		b.Fatal(err)
	}
	site := serveFiles(b, map[string][2]string{"/line.png": {"image/png", string(png)}})
	conn := testrelay.Dial(b, relayURL)
	cust := newCustomer()
	n := 0
	start := time.Now()
	for b.Loop() {
		job := cust.post(b, 5000, nostr.Tags{{"i", site + "/line.png", "url"}, {"param", "n", fmt.Sprint(n)}}, conn)
		if res, info := testrelay.JobOutcome(b, conn, job); res == nil {
			b.Fatalf("job failed: %s", info)
		}
		n++
	}
	b.ReportMetric(float64(n)/time.Since(start).Seconds(), "jobs/s")
}
