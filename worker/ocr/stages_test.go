package ocr

import (
	"fmt"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"
)

// threadCPU returns the calling OS thread's CPU time (clock_gettime's
// CLOCK_THREAD_CPUTIME_ID, Linux).
func threadCPU() time.Duration {
	const clockThreadCPUTime = 3
	var ts syscall.Timespec
	if _, _, errno := syscall.Syscall(syscall.SYS_CLOCK_GETTIME, clockThreadCPUTime, uintptr(unsafe.Pointer(&ts)), 0); errno != 0 {
		return 0
	}
	return time.Duration(ts.Nano())
}

// BenchmarkRecognizeStages splits one Decode+Recognize of the images BenchmarkOCRPeer reads (a
// 10-word line and a 3-line page, 32px PNGs) into its stages, at 1 and 2 intra-op threads, and
// reports the median of each per call in µs: png (PNG bytes → image), then Recognize's stages
// (see stage), total, and beyond-run (all but the two session.Run stages). At 1 thread, where
// ONNX Runtime computes on the calling thread, it also reports each stage's CPU time on that
// thread (cpu-...-µs), which other load on the machine barely moves. docs/ocr-cpu.md shows the
// split. Run it with -benchtime 40x or so.
func BenchmarkRecognizeStages(b *testing.B) {
	cases := []struct {
		name  string
		lines []string
	}{
		{"line", []string{tenWords}},
		{"page", page},
	}
	for _, threads := range []int{1, 2} {
		b.Run(fmt.Sprintf("threads=%d", threads), func(b *testing.B) {
			m := loadModel(b, threads)
			for _, c := range cases {
				b.Run(c.name, func(b *testing.B) {
					runtime.LockOSThread()
					defer runtime.UnlockOSThread()
					data := render(b, 32, c.lines...)
					want := strings.Join(c.lines, "\n")
					var wall, cpu [numStages + 3][]float64 // stages, png, total, beyond-run
					read := func(record bool) {
						tr := &trace{}
						if threads == 1 {
							tr.cpu = threadCPU
						}
						t0, c0 := time.Now(), threadCPU()
						img, _, err := Decode(data, 16_000_000)
						if err != nil {
							b.Fatal(err)
						}
						png, pngCPU := time.Since(t0), threadCPU()-c0
						res, err := m.recognize(b.Context(), img, tr)
						if err != nil {
							b.Fatal(err)
						}
						if res.Text != want {
							b.Fatalf("read %q, want %q", res.Text, want)
						}
						if !record {
							return
						}
						add := func(to *[numStages + 3][]float64, d [numStages]time.Duration, png time.Duration) {
							us := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }
							sum := png
							for s := range numStages {
								to[s] = append(to[s], us(d[s]))
								sum += d[s]
							}
							to[numStages] = append(to[numStages], us(png))
							to[numStages+1] = append(to[numStages+1], us(sum))
							to[numStages+2] = append(to[numStages+2], us(sum-d[stageDetRun]-d[stageRecRun]))
						}
						add(&wall, tr.d, png)
						if threads == 1 {
							add(&cpu, tr.dCPU, pngCPU)
						}
					}
					read(false)
					read(false)
					for b.Loop() {
						read(true)
					}
					median := func(xs []float64) float64 {
						s := slices.Clone(xs)
						slices.Sort(s)
						return s[len(s)/2]
					}
					names := append(stageNames[:], "png", "total", "beyond-run")
					for i, name := range names {
						b.ReportMetric(median(wall[i]), name+"-µs")
						if threads == 1 {
							b.ReportMetric(median(cpu[i]), "cpu-"+name+"-µs")
						}
					}
				})
			}
		})
	}
}
