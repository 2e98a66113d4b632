package worker

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"
	"github.com/rs/zerolog"

	"github.com/sparecycles/sparecycles/internal/relayconn"
	"github.com/sparecycles/sparecycles/internal/testimage"
	"github.com/sparecycles/sparecycles/internal/testrelay"
	"github.com/sparecycles/sparecycles/nips/nip89"
	"github.com/sparecycles/sparecycles/worker/ocr"
)

// jobTimes is a zerolog writer that keeps the durations (ms) of the worker's "job done" lines
// (logged as durations with their unit, logging.FineDur: to 10 µs below a second) and
// passes warnings and worse on to the test log.
type jobTimes struct {
	mu   sync.Mutex
	done chan jobTime
	t    testing.TB
}

// jobTime is one "job done" line: prepare+run is the job; claim (in prepare), infer and
// deliver (in run) break it down.
type jobTime struct{ prepare, run, claim, infer, deliver float64 }

func (j *jobTimes) Write(p []byte) (int, error) {
	var line struct {
		Level   string `json:"level"`
		Message string `json:"message"`
		Prepare string `json:"prepare"`
		Run     string `json:"run"`
		Claim   string `json:"claim"`
		Infer   string `json:"infer"`
		Deliver string `json:"deliver"`
	}
	err := json.Unmarshal(bytes.TrimSpace(p), &line)
	if err == nil && line.Message == "job done" {
		var bad bool
		ms := func(s string) float64 {
			d, err := time.ParseDuration(s)
			bad = bad || err != nil
			return float64(d.Microseconds()) / 1000
		}
		t := jobTime{ms(line.Prepare), ms(line.Run), ms(line.Claim), ms(line.Infer), ms(line.Deliver)}
		if bad {
			j.mu.Lock()
			j.t.Errorf("job done line with unreadable durations: %s", bytes.TrimSpace(p))
			j.mu.Unlock()
		}
		j.done <- t
	} else if line.Level == "warn" || line.Level == "error" {
		j.mu.Lock()
		j.t.Logf("worker: %s", bytes.TrimSpace(p))
		j.mu.Unlock()
	}
	return len(p), nil
}

func medianOf(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

// BenchmarkWorkerOCROverhead runs OCR jobs (a 10-word line at 32px, 1 thread) through a
// worker on a relay and, alternating with them in the same process, the bare pipeline on the
// same PNG bytes (Decode + Recognize, a model loaded on the worker's runtime). The worker's
// own time for a job is prepare+run from its "job done" log line: fetch, decode, claim
// (lease), Recognize, deliver. It reports medians: job-ms (worker side), e2e-ms (customer's
// request→result), bare-ms, claim-ms, infer-ms and deliver-ms (the job's parts), around-ms
// (the job's time but the model's: fetch, decode, claim wait, delivery, bookkeeping; not moved
// by the model's own run-to-run spread, which on this VM is ±10% between two sessions of the
// same model), and job/bare, the median over the jobs of each job's time over
// the bare run right after it (pairs taken back to back, so load that comes and goes on the
// machine falls on both), with overhead = job/bare − 1; the goal is ≤ 0.05. It also reports
// duplicate executions (Stats().Executed minus jobs; must be 0).
func BenchmarkWorkerOCROverhead(b *testing.B) {
	relayURL := testrelay.Start(b)
	cfg := testConfig(b, relayURL)
	cfg.Threads = 1
	times := &jobTimes{done: make(chan jobTime, 16), t: b}
	w, err := New(cfg, zerolog.New(times).Level(zerolog.InfoLevel))
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() { defer close(stopped); w.Run(ctx) }()
	b.Cleanup(func() { cancel(); <-stopped; w.Close() })
	conn := testrelay.Dial(b, relayURL)
	announced(b, conn, w.PubKey())

	png, err := testimage.Render(32, "Pack my box with five dozen liquor jugs and sixty pens")
	if err != nil {
		b.Fatal(err)
	}
	site := serveFiles(b, map[string][2]string{"/line.png": {"image/png", string(png)}})
	bare, err := ocr.Load(w.rt, cfg.Models)
	if err != nil {
		b.Fatal(err)
	}
	defer bare.Close()
	recognize := func() float64 {
		t0 := time.Now()
		img, _, err := ocr.Decode(png, 16_000_000)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := bare.Recognize(context.Background(), img); err != nil {
			b.Fatal(err)
		}
		return float64(time.Since(t0).Microseconds()) / 1000
	}
	cust := newCustomer()
	job := func(n int) (worker jobTime, e2eMs float64) {
		t0 := time.Now()
		evt := cust.post(b, 5000, nostr.Tags{{"i", site + "/line.png", "url"}, {"param", "n", fmt.Sprint(n)}}, conn)
		if res, info := testrelay.JobOutcome(b, conn, evt); res == nil {
			b.Fatalf("job failed: %s", info)
		}
		e2e := float64(time.Since(t0).Microseconds()) / 1000
		select {
		case d := <-times.done:
			return d, e2e
		case <-time.After(10 * time.Second):
			b.Fatal("no \"job done\" log line")
		}
		return jobTime{}, 0
	}
	job(-1) // warm up both
	recognize()
	before := w.Stats().Executed

	var jobs, e2es, bares, claims, infers, delivers, arounds []float64
	n := 0
	for b.Loop() {
		j, e := job(n)
		jobs, e2es = append(jobs, j.prepare+j.run), append(e2es, e)
		claims, infers, delivers = append(claims, j.claim), append(infers, j.infer), append(delivers, j.deliver)
		arounds = append(arounds, j.prepare+j.run-j.infer)
		bares = append(bares, recognize())
		n++
	}
	pairs := make([]float64, len(jobs))
	for i := range jobs {
		pairs[i] = jobs[i] / bares[i]
	}
	b.ReportMetric(medianOf(jobs), "job-ms")
	b.ReportMetric(medianOf(e2es), "e2e-ms")
	b.ReportMetric(medianOf(bares), "bare-ms")
	b.ReportMetric(medianOf(claims), "claim-ms")
	b.ReportMetric(medianOf(infers), "infer-ms")
	b.ReportMetric(medianOf(delivers), "deliver-ms")
	b.ReportMetric(medianOf(arounds), "around-ms")
	b.ReportMetric(medianOf(pairs), "job/bare")
	b.ReportMetric(medianOf(pairs)-1, "overhead")
	b.ReportMetric(float64(w.Stats().Executed-before-int64(n)), "duplicates")
}

// announced waits until the worker's handler info is on the relay: it has subscribed.
func announced(b *testing.B, conn *relayconn.Conn, pk string) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	sub, err := conn.Subscribe(ctx, nostr.Filter{Kinds: []int{nip89.KindHandlerInfo}, Authors: []string{pk}})
	if err != nil {
		b.Fatal(err)
	}
	defer sub.Close()
	select {
	case <-sub.Events:
	case <-ctx.Done():
		b.Fatal("worker never announced itself")
	}
}
