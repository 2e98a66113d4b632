package benchtable

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

func TestParseLine(t *testing.T) {
	tests := []struct {
		line string
		ok   bool
		want Result
	}{
		{"BenchmarkIdleConn-2   \t       2\t 196888864 ns/op\t     15663 ours-B/conn\t         1.042 ratio", true,
			Result{Name: "BenchmarkIdleConn", Procs: 2, Iters: 2, Metrics: []Metric{
				{196888864, "ns/op"}, {15663, "ours-B/conn"}, {1.042, "ratio"}}}},
		{"BenchmarkFanout/subs=1-16 50 785.4 ours-p50-µs", true,
			Result{Name: "BenchmarkFanout/subs=1", Procs: 16, Iters: 50, Metrics: []Metric{{785.4, "ours-p50-µs"}}}},
		{"BenchmarkOCRPeer/threads=1/line 20 152 ours-ms", true, // GOMAXPROCS=1: no suffix
			Result{Name: "BenchmarkOCRPeer/threads=1/line", Iters: 20, Metrics: []Metric{{152, "ours-ms"}}}},
		{"BenchmarkX-0 1", true, Result{Name: "BenchmarkX-0", Iters: 1}},
		{"Benchmark 3 1e3 x NaN ratio", true, Result{Name: "Benchmark", Iters: 3, Metrics: []Metric{{1000, "x"}}}},
		{"BenchmarkX-2 1 2", false, Result{}},         // value without unit
		{"BenchmarkX-2 0 1 ns/op", false, Result{}},   // no iterations
		{"BenchmarkX-2 1.5 1 ns/op", false, Result{}}, // iterations not an integer
		{"BenchmarkX-2 1 abc ns/op", false, Result{}},
		{"Benchmarking 1 2 ns/op", false, Result{}}, // not a benchmark function name
		{"BenchmarkX-2", false, Result{}},           // name only (the result follows later)
		{"--- FAIL: BenchmarkJobOverhead/lnd", false, Result{}},
		{"ok  \tgithub.com/sparecycles/sparecycles/relay\t0.636s", false, Result{}},
		{"PASS", false, Result{}},
		{"", false, Result{}},
	}
	for _, tc := range tests {
		got, ok := ParseLine(tc.line)
		if ok != tc.ok {
			t.Errorf("ParseLine(%q) ok = %v, want %v", tc.line, ok, tc.ok)
			continue
		}
		if ok && !equal(got, tc.want) {
			t.Errorf("ParseLine(%q) = %+v, want %+v", tc.line, got, tc.want)
		}
	}
}

func equal(a, b Result) bool {
	return a.Name == b.Name && a.Procs == b.Procs && a.Iters == b.Iters && slices.Equal(a.Metrics, b.Metrics)
}

func FuzzParseLine(f *testing.F) {
	for _, s := range []string{
		"BenchmarkIdleConn-2   \t       2\t 196888864 ns/op\t     15663 ours-B/conn\t         1.042 ratio",
		"BenchmarkFanout/subs=1-2 50 2516484 ns/op 2.055 last-p99-ratio 785.4 ours-last-p50-µs",
		"BenchmarkX-0-3 1 -0 a +Inf b",
		"Benchmark 1",
		"tag: libsecp256k1",
		"# failed ocr-peer: node",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		r, ok := ParseLine(line)
		if !ok {
			return
		}
		if !strings.HasPrefix(r.Name, "Benchmark") || r.Iters < 1 || r.Procs < 0 {
			t.Fatalf("ParseLine(%q) = %+v", line, r)
		}
		for _, m := range r.Metrics {
			if m.Unit == "" || strings.ContainsFunc(m.Unit, isSpace) || m.Value != m.Value {
				t.Fatalf("ParseLine(%q): bad metric %+v", line, m)
			}
		}
		again, ok := ParseLine(r.Format())
		if !ok || !equal(again, r) {
			t.Fatalf("ParseLine(%q) = %+v; its Format %q reads back as %+v, %v", line, r, r.Format(), again, ok)
		}
		s := &Set{}
		s.Add("", r)
		Build(s, Rows) // must not panic on any values
	})
}

func isSpace(r rune) bool { return strings.TrimSpace(string(r)) == "" }

func read(t *testing.T, file string) *Set {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", file))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s, err := Read(f)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func lines(t *testing.T, tab Table) map[string]Line {
	t.Helper()
	m := map[string]Line{}
	for _, l := range tab.Lines {
		m[l.What] = l
	}
	if len(m) != len(Rows) {
		t.Fatalf("%d distinct rows, want %d", len(m), len(Rows))
	}
	return m
}

// TestDocs feeds output with the figures of docs/benchmarks.md, a section that found no results
// (node missing) and one that failed part-way (regtest binaries missing).
func TestDocs(t *testing.T) {
	s := read(t, "docs.txt")
	tab := Build(s, Rows)
	got := lines(t, tab)
	tests := []struct {
		what, ours, baseline, ratio, met string
	}{
		{"relay ingest, signed job requests, 8 connections", "4125 ev/s", "vanilla khatru + LMDB 2228 ev/s", "1.85×", "no"},
		{"relay ingest (CPU section, btcec verifier)", "6240 ev/s", "vanilla 1845 ev/s", "3.38×", "yes"},
		{"relay ingest, -tags libsecp256k1", "10779 ev/s", "vanilla 2300 ev/s", "4.69×", "yes"},
		{"relay CPU per accepted event, btcec verifier", "292.0 µs", "signature floor 215.0 µs", "1.36×", "yes"},
		{"relay CPU per accepted event, libsecp256k1", "142.0 µs", "floor 49.0 µs", "2.90×", "no"},
		{"publish→delivery, 1 subscriber, p50", "465.0 µs", "vanilla 484.0 µs", "0.96×", "no"},
		{"publish→delivery, 100 subscribers, p50", "828.0 µs", "vanilla 1063 µs", "0.78×", "—"},
		{"publish→delivery, 100 subscribers, last subscriber p99", "7116 µs", "vanilla 4465 µs", "1.59×", "no"},
		{"publish→delivery, 1000 subscribers, last subscriber p99", "13099 µs", "vanilla 17270 µs", "0.76×", "—"},
		{"memory per idle connection", "15401 B", "vanilla 15352 B", "1.00×", "—"},
		{"OCR, 3-line page, 2 threads", "not run", "—", "—", "—"},
		{"worker OCR job (prepare+run) vs bare Decode+Recognize, 1 thread", "148.3 ms", "bare 146.4 ms", "+1.3%", "yes"},
		{"kind 5800 job request→result vs bare session.Run", "12.9 ms", "session.Run 1.86 ms", "6.93×", "—"},
		{"OCR jobs/s, one worker, in process", "7.70 jobs/s", "—", "—", "—"},
		{"OCR jobs/s, 1 worker on one relay", "7.90 jobs/s", "—", "—", "yes"},
		{"OCR jobs/s, 2 workers on one relay", "16.9 jobs/s", "1 worker 7.90 jobs/s", "2.14×", "yes"},
		{"OCR jobs/s, 4 workers on one relay", "14.4 jobs/s", "1 worker 7.90 jobs/s", "1.82×", "no"}, // a duplicate
		{"NWC pay_invoice round trip (ledger wallet, our relay)", "6.60 ms", "—", "—", "—"},
		{"paid OCR job, request→result", "142.0 ms", "inference 112.3 ms", "1.26×", "—"},
		{"market overhead per OCR job, unpaid, p99", "28.5 ms", "inference 112.1 ms", "0.25×", "—"},
		{"market overhead per OCR job, paid over ledger wallet, p50", "32.5 ms", "unpaid 7.00 ms", "4.64×", "—"},
		{"market overhead per OCR job, paid over regtest lnd, p99", "not run", "—", "—", "—"},
	}
	for _, tc := range tests {
		l, ok := got[tc.what]
		if !ok {
			t.Errorf("no row %q", tc.what)
			continue
		}
		if l.Ours != tc.ours || l.Baseline != tc.baseline || l.Ratio != tc.ratio || l.Met != tc.met {
			t.Errorf("row %q = %q | %q | %q | met %q, want %q | %q | %q | met %q", tc.what,
				l.Ours, l.Baseline, l.Ratio, l.Met, tc.ours, tc.baseline, tc.ratio, tc.met)
		}
	}
	if tab.Runs != 1 {
		t.Errorf("Runs = %d, want 1", tab.Runs)
	}
	wantNotes := []string{
		"section failed: ocr-peer: skipped: peer_bench_test.go:97: node is not installed",
		"section failed: job-overhead: go test exited 1",
	}
	if !slices.Equal(tab.Notes, wantNotes) {
		t.Errorf("notes %q, want %q", tab.Notes, wantNotes)
	}
	if !slices.Equal(s.Sections, []string{"relay-ingest", "worker", "payments", "relay-fanout", "relay-ingest-cpu",
		"ocr-peer", "worker-ocr-overhead", "workers", "job-overhead"}) {
		t.Errorf("sections %q", s.Sections)
	}
	var out strings.Builder
	if err := tab.Write(&out); err != nil {
		t.Fatal(err)
	}
	text := out.String()
	if !strings.HasPrefix(text, "| what ") || strings.Count(text, "\n| ") != len(Rows)+1 || strings.Contains(text, "medians of") {
		t.Errorf("table:\n%s", text)
	}
	for _, l := range strings.Split(strings.TrimSpace(text), "\n") {
		if strings.HasPrefix(l, "|") && strings.Count(l, "|") != 7 {
			t.Errorf("line %q has %d cells", l, strings.Count(l, "|")-1)
		}
	}
}

// TestRuns aggregates -count 2 output captured from the relay (BenchmarkFanout/subs=1 and
// BenchmarkIdleConn): medians per metric, the ratio as a median of the runs' ratios, its range.
func TestRuns(t *testing.T) {
	tab := Build(read(t, "fanout-idle.txt"), Rows)
	got := lines(t, tab)
	l := got["publish→delivery, 1 subscriber, p50"]
	// ours 785.4 and 1189, vanilla 791.5 and 877.6; reported ratios 0.9923 and 1.354
	if l.Ours != "987.2 µs" || l.Baseline != "vanilla 834.5 µs" || l.Ratio != "1.17× (0.99–1.35)" || l.Met != "no" {
		t.Errorf("fan-out row %+v", l)
	}
	l = got["memory per idle connection"]
	if l.Ours != "15565 B" || l.Ratio != "1.02× (0.99–1.04)" || l.Met != "—" {
		t.Errorf("idle row %+v", l)
	}
	if l := got["relay ingest, signed job requests, 8 connections"]; l.Run || l.Ours != "not run" {
		t.Errorf("ingest row %+v", l)
	}
	if tab.Runs != 2 || len(tab.Notes) != 0 {
		t.Errorf("Runs %d, notes %q", tab.Runs, tab.Notes)
	}
}

func TestTagsAndUnknown(t *testing.T) {
	in := strings.Join([]string{
		"BenchmarkSomethingNew-2 10 5 ns/op 3 ratio",
		"tag: libsecp256k1",
		"BenchmarkIdleConn-2 2 100 ours-B/conn 200 vanilla-B/conn", // no ratio metric: the row shows none
		"# section next",
		"BenchmarkWorkerOCROverhead-2 20 130 job-ms 100 bare-ms 0 duplicates",
		"BenchmarkWorkerOCROverhead-2 20 110 job-ms 100 bare-ms 0 duplicates",
		"BenchmarkWorkerOCROverhead-2 20 115 job-ms 100 bare-ms 0 duplicates",
	}, "\n")
	s, err := Read(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Runs) != 3 || len(s.Runs[Key{"libsecp256k1", "BenchmarkIdleConn"}]) != 1 {
		t.Fatalf("runs %v", s.Runs)
	}
	got := lines(t, Build(s, Rows))
	if l := got["memory per idle connection"]; l.Run { // untagged row, tagged run
		t.Errorf("idle row %+v", l)
	}
	if l := got["worker OCR job (prepare+run) vs bare Decode+Recognize, 1 thread"]; l.Ratio != "+15.0% (+10.0% to +30.0%)" || l.Met != "yes" || l.Target != "≤ +20%, duplicates 0" {
		t.Errorf("overhead row %+v", l)
	}
}

// TestRowsMatchBenchmarks checks every row against the benchmarks' source: its benchmark
// function exists and each metric it reads is reported by a b.ReportMetric call somewhere. When
// a benchmark's metrics change, change Rows with it.
func TestRowsMatchBenchmarks(t *testing.T) {
	root := filepath.Join("..", "..")
	funcs, units := map[string]bool{}, map[string]bool{}
	funcRE := regexp.MustCompile(`(?m)^func (Benchmark\w*)\(`)
	unitRE := regexp.MustCompile(`ReportMetric\([^\n]*,\s*"([^"]+)"\)`)
	for _, dir := range []string{"relay", "worker", "e2e"} {
		err := filepath.WalkDir(filepath.Join(root, dir), func(path string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, "_test.go") {
				return err
			}
			src, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			for _, m := range funcRE.FindAllStringSubmatch(string(src), -1) {
				funcs[m[1]] = true
			}
			for _, m := range unitRE.FindAllStringSubmatch(string(src), -1) {
				units[m[1]] = true
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	seen := map[string]bool{}
	for _, r := range Rows {
		if seen[r.What] {
			t.Errorf("two rows %q", r.What)
		}
		seen[r.What] = true
		bench := func(name string) {
			if f, _, _ := strings.Cut(name, "/"); !funcs[f] {
				t.Errorf("row %q: no func %s in relay/, worker/ or e2e/", r.What, f)
			}
		}
		bench(r.Bench)
		if r.Base.Bench != "" {
			bench(r.Base.Bench)
		}
		metrics := []string{r.Ours, r.Base.Metric, r.Ratio}
		for _, c := range append(slices.Clone(r.Must), r.Notes...) {
			metrics = append(metrics, c.Metric)
		}
		for _, m := range metrics {
			if m != "" && !units[m] {
				t.Errorf("row %q: no b.ReportMetric(..., %q)", r.What, m)
			}
		}
		if r.Base.Metric == "" && (r.Ratio != "" || r.Target.Op != "") {
			t.Errorf("row %q has a ratio or target but no baseline", r.What)
		}
	}
}
