//go:build linux

package e2e

import (
	"slices"
	"testing"
	"time"
)

// BenchmarkHostile reports the honest probe's p99 publish→OK and publish→delivery under each
// attack of the hostile suite that loads the relay, with the same probe's p99 unloaded on the
// same relay and their ratio (TestHostile asserts the ratio is at most 3, above floors). It
// runs the scenarios as TestHostile does but fails none of their checks, only logging them, so
// that a relay that fails the suite still gets its figures. A probe step that failed outright
// (no OK or no delivery within probeWait) counts as probeWait: the figure is then a lower
// bound, and probe-failures says so.
//
//	go test -run '^$' -bench '^BenchmarkHostile$' -benchtime 1x ./e2e/
func BenchmarkHostile(b *testing.B) {
	for _, sc := range hostileScenarios() {
		if !sc.load {
			continue
		}
		b.Run(sc.name, func(b *testing.B) {
			var okX, dlX, baseOK, loadOK, baseDL, loadDL, failures []float64
			for b.Loop() {
				h := runScenario(b, sc, false)
				bo, lo := p99WithFailures(h.base.ok, 0), p99WithFailures(h.loaded.ok, len(h.loaded.failures))
				bd, ld := p99WithFailures(h.base.delivery, 0), p99WithFailures(h.loaded.delivery, len(h.loaded.failures))
				baseOK, loadOK = append(baseOK, ms(bo)), append(loadOK, ms(lo))
				baseDL, loadDL = append(baseDL, ms(bd)), append(loadDL, ms(ld))
				okX, dlX = append(okX, float64(lo)/float64(bo)), append(dlX, float64(ld)/float64(bd))
				failures = append(failures, float64(len(h.loaded.failures)))
			}
			b.ReportMetric(medianOf(okX), "p99-ok-x")
			b.ReportMetric(medianOf(dlX), "p99-delivery-x")
			b.ReportMetric(medianOf(baseOK), "unloaded-p99-ok-ms")
			b.ReportMetric(medianOf(loadOK), "loaded-p99-ok-ms")
			b.ReportMetric(medianOf(baseDL), "unloaded-p99-delivery-ms")
			b.ReportMetric(medianOf(loadDL), "loaded-p99-delivery-ms")
			b.ReportMetric(medianOf(failures), "probe-failures")
		})
	}
}

// p99WithFailures is the p99 of ds with each of failed steps counted as probeWait.
func p99WithFailures(ds []time.Duration, failed int) time.Duration {
	all := slices.Clone(ds)
	for range failed {
		all = append(all, probeWait)
	}
	return max(percentile(all, 0.99), time.Microsecond) // never 0: it divides
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func medianOf(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}
