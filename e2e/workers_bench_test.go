package e2e

import (
	"fmt"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/sparecycles/sparecycles/internal/testrelay"
	"github.com/sparecycles/sparecycles/nips/nip90"
	"github.com/sparecycles/sparecycles/relay"
	"github.com/sparecycles/sparecycles/worker"
)

// BenchmarkWorkers posts b.N OCR jobs (a 10-word line each, distinct requests) to our relay
// with 1, 2 and 4 workers on it (1 thread, 1 job at a time each, queues long enough that
// nobody answers busy) and waits for every result.
// It reports jobs/s from the first post to the last result, duplicate executions (the
// workers' Stats().Executed summed, minus b.N; must be 0) and the most results any job got
// (must be 1). The relay's lease table coordinates the workers.
func BenchmarkWorkers(b *testing.B) {
	for _, n := range []int{1, 2, 4} {
		b.Run(fmt.Sprintf("workers=%d", n), func(b *testing.B) {
			r, url := startRelay(b)
			var workers []interface{ Stats() worker.Stats }
			for range n {
				workers = append(workers, startWorkerWith(b, func(cfg *worker.Config) { cfg.Queue = max(cfg.Queue, 1024) }, url))
			}
			img := servePNG(b, "Pack my box with five dozen liquor jugs and sixty pens")
			c := testrelay.Dial(b, url)
			sk := nostr.GeneratePrivateKey()
			var ids []string
			start := time.Now()
			for b.Loop() {
				ids = append(ids, post(b, c, sk, nostr.Tags{{"i", img, "url"}, {"param", "n", fmt.Sprint(len(ids))}}).ID)
			}
			results(b, c, ids...)
			elapsed := time.Since(start)
			time.Sleep(500 * time.Millisecond) // let a late duplicate land
			var executed int64
			for _, w := range workers {
				executed += w.Stats().Executed
			}
			perJob := map[string]int{}
			for _, evt := range testrelay.Query(b, c, nostr.Filter{Kinds: []int{6000}, Tags: nostr.TagMap{"e": ids}}) {
				perJob[nip90.JobID(evt)]++
			}
			most := 0
			for _, id := range ids {
				most = max(most, perJob[id])
			}
			b.ReportMetric(float64(len(ids))/elapsed.Seconds(), "jobs/s")
			b.ReportMetric(float64(executed-int64(len(ids))), "duplicates")
			b.ReportMetric(float64(most), "max-results/job")
			if done := r.Stats().Jobs.ByState[relay.JobDone]; done != len(ids) {
				b.Logf("relay lease table: %d of %d jobs done (%v)", done, len(ids), r.Stats().Jobs.ByState)
			}
		})
	}
}
