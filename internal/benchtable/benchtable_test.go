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
		{"relay ingest, 8 connections, 16 events in flight on each", "4125 ev/s", "vanilla khatru + LMDB 2228 ev/s", "1.85×", "no"},
		{"relay ingest, 8 connections, 16 in flight, btcec", "6240 ev/s", "vanilla 1845 ev/s", "3.38×", "yes"},
		{"relay ingest, 8 connections, 16 in flight, libsecp256k1", "10779 ev/s", "vanilla 2300 ev/s", "4.69×", "no"},
		{"relay CPU per accepted event, 16 in flight, btcec", "292.0 µs", "signature floor 215.0 µs", "1.36×", "no"},
		{"relay CPU per accepted event, 16 in flight, libsecp256k1", "142.0 µs", "signature floor 49.0 µs", "2.90×", "no"},
		{"publish→delivery, 1 subscriber, p50", "465.0 µs", "vanilla 484.0 µs", "0.96×", "no"},
		{"publish→delivery, 100 subscribers, p50", "828.0 µs", "vanilla 1063 µs", "0.78×", "—"},
		{"publish→delivery, 100 subscribers, last subscriber p99", "7116 µs", "vanilla 4465 µs", "1.59×", "no"},
		{"publish→delivery, 1000 subscribers, last subscriber p99", "13099 µs", "vanilla 17270 µs", "0.76×", "no"},
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
	if l := got["relay ingest, 8 connections, 16 events in flight on each"]; l.Run || l.Ours != "not run" {
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
		"BenchmarkWorkerOCROverhead-2 20 110 job-ms 100 bare-ms 1.10 job/bare 0 duplicates",
		"BenchmarkWorkerOCROverhead-2 20 102 job-ms 100 bare-ms 1.02 job/bare 0 duplicates",
		"BenchmarkWorkerOCROverhead-2 20 104 job-ms 100 bare-ms 1.04 job/bare 0 duplicates",
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
	if l := got["worker OCR job (prepare+run) vs bare Decode+Recognize, 1 thread"]; l.Ratio != "+4.0% (+2.0% to +10.0%)" || l.Met != "yes" || l.Target != "≤ +5%, duplicates 0" {
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

// TestDiff: a row with Diff shows ours' range over the runs, the ratio and the difference per
// run, and judges the difference against its target.
func TestDiff(t *testing.T) {
	in := strings.Join([]string{
		"# section client-post",
		"BenchmarkClientPost/ledger-2 20 1 ns/op 300 p50-ms 200 inference-ms 260 max-ms",
		"BenchmarkClientPost/ledger-2 20 1 ns/op 420 p50-ms 210 inference-ms",
		"BenchmarkClientPost/ledger-2 20 1 ns/op 330 p50-ms 190 inference-ms",
	}, "\n")
	s, err := Read(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	what := "client post end to end (binary, default quote window), ledger wallet, p50"
	l := lines(t, Build(s, Rows))[what]
	// differences 100, 210, 140; ratios 1.50, 2.00, 1.74
	want := Line{What: what, Ours: "330.0 ms (300.0–420.0)", Baseline: "inference 200.0 ms",
		Ratio: "1.74× (1.50–2.00), +140.0 ms (+100.0 to +210.0)", Target: "≤ inference + 150 ms", Met: "yes", Run: true}
	if l != want {
		t.Errorf("row\n%+v, want\n%+v", l, want)
	}
	runs := s.Runs[Key{"", "BenchmarkClientPost/ledger"}]
	runs[0].Metrics[1].Value, runs[1].Metrics[1].Value = 400, 700 // differences 200, 490, 140
	if l := lines(t, Build(s, Rows))[what]; l.Met != "no" || l.Ratio != "2.00× (1.74–3.33), +200.0 ms (+140.0 to +490.0)" {
		t.Errorf("row %+v", l)
	}
	for _, tc := range []struct {
		runs []float64 // p50-ms with inference-ms 200
		met  string
	}{{[]float64{351}, "no"}, {[]float64{350}, "yes"}, {[]float64{100}, "yes"}} {
		s := &Set{}
		for _, v := range tc.runs {
			s.Add("", Result{Name: "BenchmarkClientPost/ledger", Iters: 1, Metrics: []Metric{{v, "p50-ms"}, {200, "inference-ms"}}})
		}
		if l := lines(t, Build(s, Rows))[what]; l.Met != tc.met {
			t.Errorf("p50 %v: met %q, want %q (%+v)", tc.runs, l.Met, tc.met, l)
		}
	}
}

// TestRowsReadTheirOwnBenchmark gives every benchmark a row names a distinct value for every
// metric, and checks that each row's figure is its own benchmark's under its own tag: no row
// can show another's figure (as docs/benchmarks.md once showed 15321 for both libsecp256k1
// ingest and idle-connection memory, a figure copied by hand from one row to the other).
func TestRowsReadTheirOwnBenchmark(t *testing.T) {
	s := &Set{}
	value := map[Key]float64{}
	next := 1000.0
	for _, r := range Rows {
		for _, k := range []Key{{r.Tag, r.Bench}, {r.Tag, r.Base.Bench}} {
			if k.Name == "" || value[k] != 0 {
				continue
			}
			value[k] = next
			var ms []Metric
			for _, u := range []string{r.Ours, r.Base.Metric, r.Ratio} {
				if u != "" {
					ms = append(ms, Metric{next, u})
				}
			}
			s.Add(k.Tag, Result{Name: k.Name, Iters: 1, Metrics: ms})
			next += 1000
		}
	}
	// a row's metrics may be another row's too (same benchmark): give each benchmark every unit
	for k, runs := range s.Runs {
		units := map[string]bool{}
		for _, r := range Rows {
			if r.Bench == k.Name && r.Tag == k.Tag {
				units[r.Ours], units[r.Base.Metric], units[r.Ratio] = true, true, true
			}
		}
		runs[0].Metrics = nil
		for u := range units {
			if u != "" {
				runs[0].Metrics = append(runs[0].Metrics, Metric{value[k], u})
			}
		}
	}
	got := lines(t, Build(s, Rows))
	for _, r := range Rows {
		want := num(value[Key{r.Tag, r.Bench}]) + " " + r.Unit
		if l := got[r.What]; !strings.HasPrefix(l.Ours, want) {
			t.Errorf("row %q shows %q, want its own benchmark's %q", r.What, l.Ours, want)
		}
	}
}

// TestDocsTablesMatchTheirRuns checks that every table docs/benchmarks.md introduces with a
// "<!-- benchtable: bench-runs/FILE -->" line is what benchtable makes of that raw run, cell for
// cell: a table is pasted as scripts/bench printed it, never edited by hand.
func TestDocsTablesMatchTheirRuns(t *testing.T) {
	docs := filepath.Join("..", "..", "docs")
	text, err := os.ReadFile(filepath.Join(docs, "benchmarks.md"))
	if err != nil {
		t.Fatal(err)
	}
	tables := docTables(string(text))
	if len(tables) == 0 {
		t.Skip("docs/benchmarks.md names no raw run (no <!-- benchtable: ... --> line)")
	}
	for run, got := range tables {
		f, err := os.Open(filepath.Join(docs, filepath.FromSlash(run)))
		if err != nil {
			t.Fatalf("docs/benchmarks.md names %s: %v", run, err)
		}
		s, err := Read(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		var out strings.Builder
		if err := Build(s, Rows).Write(&out); err != nil {
			t.Fatal(err)
		}
		if want := tableLines(out.String()); !slices.Equal(got, want) {
			t.Errorf("the table after <!-- benchtable: %s --> is not benchtable's output of that run; got\n%s\nwant\n%s",
				run, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
}

// docTables returns, for each "<!-- benchtable: FILE -->" line of a Markdown text, the lines of
// the table that follows it (from its first line starting with "|" to its last).
func docTables(text string) map[string][]string {
	tables := map[string][]string{}
	var run string
	for _, l := range strings.Split(text, "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(l), "<!-- benchtable:"); ok {
			run = strings.TrimSpace(strings.TrimSuffix(rest, "-->"))
			tables[run] = []string{}
			continue
		}
		if run == "" {
			continue
		}
		if strings.HasPrefix(l, "|") {
			tables[run] = append(tables[run], strings.TrimRight(l, " "))
		} else if len(tables[run]) > 0 {
			run = ""
		}
	}
	return tables
}

// tableLines is docTables for one table printed alone.
func tableLines(text string) []string {
	return docTables("<!-- benchtable: x -->\n" + text)["x"]
}

func TestDocTables(t *testing.T) {
	text := strings.Join([]string{
		"intro",
		"| not | this |",
		"<!-- benchtable: bench-runs/a.txt -->",
		"",
		"Figures are medians of 3 runs.",
		"",
		"| what | ours |   ",
		"| ---- | ---- |",
		"| x    | 1 B  |",
		"",
		"- a note",
		"| later | table |",
		"<!-- benchtable: bench-runs/b.txt-->",
		"| y | 2 |",
	}, "\n")
	got := docTables(text)
	want := map[string][]string{
		"bench-runs/a.txt": {"| what | ours |", "| ---- | ---- |", "| x    | 1 B  |"},
		"bench-runs/b.txt": {"| y | 2 |"},
	}
	if len(got) != len(want) {
		t.Fatalf("tables %q", got)
	}
	for k, v := range want {
		if !slices.Equal(got[k], v) {
			t.Errorf("table %s = %q, want %q", k, got[k], v)
		}
	}
}
