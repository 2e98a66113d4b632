// Package benchtable turns the output of `go test -bench` runs (scripts/bench concatenates them)
// into one table of ratios against baselines measured side by side, with targets. The rows are
// a slice of specs (rows.go); benchmarks no row names are ignored.
package benchtable

import (
	"bufio"
	"io"
	"math"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Result is one benchmark result line.
type Result struct {
	Name    string // "BenchmarkFanout/subs=1", without the GOMAXPROCS suffix
	Procs   int    // the "-N" suffix, 0 if there was none
	Iters   int64
	Metrics []Metric // in line order; non-finite values are dropped
}

// Metric is one "value unit" pair of a result line.
type Metric struct {
	Value float64
	Unit  string
}

// ParseLine parses a result line in the standard format:
//
//	BenchmarkName/sub-N  iters  value unit  value unit ...
//
// It reports false for any other line (test logs, "PASS", "ok ...", config lines).
func ParseLine(line string) (Result, bool) {
	f := strings.Fields(line)
	if len(f) < 2 || len(f)%2 != 0 || !isBenchName(f[0]) {
		return Result{}, false
	}
	iters, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil || iters < 1 {
		return Result{}, false
	}
	r := Result{Name: f[0], Iters: iters}
	if i := strings.LastIndexByte(r.Name, '-'); i > 0 {
		if n, err := strconv.Atoi(r.Name[i+1:]); err == nil && n > 0 && isDigits(r.Name[i+1:]) {
			r.Name, r.Procs = r.Name[:i], n
		}
	}
	for i := 2; i < len(f); i += 2 {
		v, err := strconv.ParseFloat(f[i], 64)
		if err != nil {
			return Result{}, false
		}
		if math.IsNaN(v) || math.IsInf(v, 0) {
			continue
		}
		r.Metrics = append(r.Metrics, Metric{Value: v, Unit: f[i+1]})
	}
	return r, true
}

// Format writes r back as a result line that ParseLine reads as r.
func (r Result) Format() string {
	var b strings.Builder
	b.WriteString(r.Name)
	if r.Procs > 0 {
		b.WriteString("-" + strconv.Itoa(r.Procs))
	}
	b.WriteString("\t" + strconv.FormatInt(r.Iters, 10))
	for _, m := range r.Metrics {
		b.WriteString("\t" + strconv.FormatFloat(m.Value, 'g', -1, 64) + " " + m.Unit)
	}
	return b.String()
}

// Metric returns the value of the first metric with unit u.
func (r Result) Metric(u string) (float64, bool) {
	for _, m := range r.Metrics {
		if m.Unit == u {
			return m.Value, true
		}
	}
	return 0, false
}

// isBenchName reports whether s names a benchmark: "Benchmark" followed by the end or by a
// character that is not a lower-case letter (as go test requires of benchmark functions).
func isBenchName(s string) bool {
	rest, ok := strings.CutPrefix(s, "Benchmark")
	if !ok {
		return false
	}
	if rest == "" {
		return true
	}
	c, _ := utf8.DecodeRuneInString(rest)
	return !unicode.IsLower(c)
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// Key names one benchmark within a set: its tag (see Read) and its name.
type Key struct {
	Tag, Name string
}

// Set is every result read, grouped per benchmark, with the sections the input reported.
type Set struct {
	Runs     map[Key][]Result // in input order
	Sections []string         // from "# section NAME" lines
	Failed   []string         // from "# failed NAME[: why]" lines, as written
	Procs    int              // the highest GOMAXPROCS suffix seen
}

// Add records r as a run of the benchmark r.Name under tag.
func (s *Set) Add(tag string, r Result) {
	if s.Runs == nil {
		s.Runs = map[Key][]Result{}
	}
	k := Key{Tag: tag, Name: r.Name}
	s.Runs[k] = append(s.Runs[k], r)
	s.Procs = max(s.Procs, r.Procs)
}

// Read reads concatenated `go test -bench` output. Besides result lines it understands
//
//	# section NAME      a new section starts; the tag is cleared
//	# failed NAME: WHY  a section failed (its rows show "not run")
//	tag: VALUE          results up to the next tag or section line are under this tag
//
// Every other line is ignored.
func Read(r io.Reader) (*Set, error) {
	s := &Set{}
	tag := ""
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 4*1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, "#"); ok {
			word, arg, _ := strings.Cut(strings.TrimSpace(rest), " ")
			switch word {
			case "section":
				s.Sections = append(s.Sections, strings.TrimSpace(arg))
				tag = ""
			case "failed":
				s.Failed = append(s.Failed, strings.TrimSpace(arg))
			}
			continue
		}
		if v, ok := strings.CutPrefix(line, "tag:"); ok {
			tag = strings.TrimSpace(v)
			continue
		}
		if res, ok := ParseLine(line); ok {
			s.Add(tag, res)
		}
	}
	return s, sc.Err()
}
