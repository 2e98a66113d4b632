package benchtable

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Row says how one line of the table comes from the results.
type Row struct {
	What  string // first column
	Bench string // benchmark name without the "-N" suffix
	Tag   string // the "tag:" its runs were under; "" for untagged runs

	Ours     string // metric unit of our figure
	Base     Ref    // the baseline's figure, measured in the same run; zero for none
	BaseName string // shown before the baseline's figure
	Unit     string // shown after both figures

	// Ratio is the metric in which the benchmark reports ours/baseline per run; if "", the ratio
	// is computed per run from Ours and Base (runs paired in order when Base is another
	// benchmark).
	Ratio   string
	Percent bool // show the ratio as +x% (ratio − 1)
	// Diff adds ours − baseline (the median of the per-run differences, with their range) to
	// the ratio column, and ours' range over the runs to its column; Target then applies to the
	// difference, in Unit, rather than to the ratio.
	Diff   bool
	Target Cmp     // what the ratio (or with Diff, the difference) should be; zero for none
	Must   []Check // other metrics of our benchmark that must hold for the target to be met
	Notes  []Check // checks that, when they fail, add a note under the table
}

// Ref names a metric of a benchmark; Bench "" means the row's own.
type Ref struct {
	Bench, Metric string
}

// Cmp is a comparison with a fixed value; the zero Cmp is no comparison.
type Cmp struct {
	Op    string // "<=", ">=" or "=="
	Value float64
}

// AtMost, AtLeast and Equal build a Cmp.
func AtMost(v float64) Cmp  { return Cmp{"<=", v} }
func AtLeast(v float64) Cmp { return Cmp{">=", v} }
func Equal(v float64) Cmp   { return Cmp{"==", v} }

// Holds reports whether v satisfies c.
func (c Cmp) Holds(v float64) bool {
	switch c.Op {
	case "<=":
		return v <= c.Value
	case ">=":
		return v >= c.Value
	case "==":
		return v == c.Value
	}
	return true
}

// Check is a condition on the median of one of a benchmark's metrics.
type Check struct {
	Metric string
	Cmp    Cmp
	Text   string // shown in the target column (Must) or as the note (Notes)
}

// Line is one formatted row of the table.
type Line struct {
	What, Ours, Baseline, Ratio, Target, Met string
	Run                                      bool // our figure was measured
}

// Table is the table with what goes under it.
type Table struct {
	Runs  int // the most runs of any benchmark in a row
	Lines []Line
	Notes []string
}

// Build evaluates rows against the results in s.
func Build(s *Set, rows []Row) Table {
	var t Table
	for _, r := range rows {
		l, notes, n := r.eval(s)
		t.Lines = append(t.Lines, l)
		t.Notes = append(t.Notes, notes...)
		t.Runs = max(t.Runs, n)
	}
	for _, f := range s.Failed {
		t.Notes = append(t.Notes, "section failed: "+f)
	}
	return t
}

func (r Row) eval(s *Set) (l Line, notes []string, runs int) {
	l = Line{What: r.What, Ours: "not run", Baseline: "—", Ratio: "—", Target: r.targetText(), Met: "—"}
	ours := s.Runs[Key{r.Tag, r.Bench}]
	ov := values(ours, r.Ours)
	if len(ov) == 0 {
		return l, nil, 0
	}
	l.Run = true
	l.Ours = num(median(ov)) + " " + r.Unit
	if lo, hi := slices.Min(ov), slices.Max(ov); r.Diff && len(ov) > 1 {
		l.Ours += " (" + num(lo) + "–" + num(hi) + ")"
	}
	var base []Result
	if r.Base.Metric != "" {
		base = ours
		if r.Base.Bench != "" {
			base = s.Runs[Key{r.Tag, r.Base.Bench}]
		}
		l.Baseline = strings.TrimSpace(r.BaseName + " not run")
		if bv := values(base, r.Base.Metric); len(bv) > 0 {
			l.Baseline = strings.TrimSpace(r.BaseName + " " + num(median(bv)) + " " + r.Unit)
		}
	}
	var ratios, diffs []float64
	if r.Base.Metric != "" {
		for i := 0; i < len(ours) && i < len(base); i++ {
			o, ok1 := ours[i].Metric(r.Ours)
			b, ok2 := base[i].Metric(r.Base.Metric)
			if ok1 && ok2 {
				diffs = append(diffs, o-b)
				if b != 0 && r.Ratio == "" {
					ratios = append(ratios, o/b)
				}
			}
		}
	}
	if r.Ratio != "" {
		ratios = values(ours, r.Ratio)
	}
	ratio := math.NaN()
	if len(ratios) > 0 {
		ratio = median(ratios)
		l.Ratio = r.ratioText(ratio)
		if lo, hi := slices.Min(ratios), slices.Max(ratios); len(ratios) > 1 {
			if r.Percent {
				l.Ratio += " (" + r.ratioText(lo) + " to " + r.ratioText(hi) + ")"
			} else {
				l.Ratio += " (" + strconv.FormatFloat(lo, 'f', 2, 64) + "–" + strconv.FormatFloat(hi, 'f', 2, 64) + ")"
			}
		}
	}
	judged := ratio // what Target applies to
	if r.Diff {
		judged = math.NaN()
		if len(diffs) > 0 {
			judged = median(diffs)
			d := signed(judged) + " " + r.Unit
			if lo, hi := slices.Min(diffs), slices.Max(diffs); len(diffs) > 1 {
				d += " (" + signed(lo) + " to " + signed(hi) + ")"
			}
			if l.Ratio == "—" {
				l.Ratio = d
			} else {
				l.Ratio += ", " + d
			}
		}
	}
	if r.Target.Op != "" || len(r.Must) > 0 {
		met := r.Target.Op == "" || (!math.IsNaN(judged) && r.Target.Holds(judged))
		for _, c := range r.Must {
			met = met && c.holds(ours)
		}
		l.Met = "no"
		if met {
			l.Met = "yes"
		}
		if r.Target.Op != "" && math.IsNaN(judged) {
			l.Met = "—"
		}
	}
	for _, c := range r.Notes {
		if !c.holds(ours) {
			notes = append(notes, r.What+": "+c.Text)
		}
	}
	return l, notes, len(ours)
}

func (c Check) holds(runs []Result) bool {
	v := values(runs, c.Metric)
	return len(v) > 0 && c.Cmp.Holds(median(v))
}

func (r Row) ratioText(v float64) string {
	if r.Percent {
		return fmt.Sprintf("%+.1f%%", 100*(v-1))
	}
	return strconv.FormatFloat(v, 'f', 2, 64) + "×"
}

func (r Row) targetText() string {
	var parts []string
	if c := r.Target; c.Op != "" {
		op := map[string]string{"<=": "≤", ">=": "≥", "==": "="}[c.Op]
		if r.Diff {
			parts = append(parts, strings.TrimSpace(op+" "+r.BaseName+" "+signedSpaced(c.Value)+" "+r.Unit))
		} else if r.Percent {
			parts = append(parts, fmt.Sprintf("%s %+.4g%%", op, 100*(c.Value-1)))
		} else {
			parts = append(parts, op+" "+strconv.FormatFloat(c.Value, 'g', -1, 64)+"×")
		}
	}
	for _, c := range r.Must {
		parts = append(parts, c.Text)
	}
	if len(parts) == 0 {
		return "—"
	}
	return strings.Join(parts, ", ")
}

// signed shows a difference with its sign.
func signed(v float64) string {
	if v >= 0 {
		return "+" + num(v)
	}
	return num(v)
}

// signedSpaced is signed with a space after the sign: "+ 150", "− 20".
func signedSpaced(v float64) string {
	if v < 0 {
		return "− " + strconv.FormatFloat(-v, 'g', -1, 64)
	}
	return "+ " + strconv.FormatFloat(v, 'g', -1, 64)
}

// values returns metric u of every run that has it, in order.
func values(runs []Result, u string) []float64 {
	var v []float64
	for _, r := range runs {
		if x, ok := r.Metric(u); ok {
			v = append(v, x)
		}
	}
	return v
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if n := len(s); n%2 == 1 {
		return s[n/2]
	} else {
		return (s[n/2-1] + s[n/2]) / 2
	}
}

// num shows a figure with three or more significant digits and no exponent.
func num(v float64) string {
	switch a := math.Abs(v); {
	case a >= 1000:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case a >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	default:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
}

// Write prints t as a Markdown table with padded columns, then its notes.
func (t Table) Write(w io.Writer) error {
	head := Line{What: "what", Ours: "ours", Baseline: "baseline", Ratio: "ratio", Target: "target", Met: "met"}
	cells := func(l Line) []string { return []string{l.What, l.Ours, l.Baseline, l.Ratio, l.Target, l.Met} }
	width := make([]int, 6)
	for _, l := range append([]Line{head}, t.Lines...) {
		for i, c := range cells(l) {
			width[i] = max(width[i], utf8.RuneCountInString(c))
		}
	}
	var b strings.Builder
	row := func(c []string) {
		for i, s := range c {
			b.WriteString("| " + s + strings.Repeat(" ", width[i]-utf8.RuneCountInString(s)) + " ")
		}
		b.WriteString("|\n")
	}
	if t.Runs > 1 {
		fmt.Fprintf(&b, "Figures are medians of %d runs; ratios are medians of the per-run ratios, with their range.\n\n", t.Runs)
	}
	row(cells(head))
	sep := make([]string, 6)
	for i := range sep {
		sep[i] = strings.Repeat("-", width[i])
	}
	row(sep)
	for _, l := range t.Lines {
		row(cells(l))
	}
	if len(t.Notes) > 0 {
		b.WriteString("\n")
		for _, n := range t.Notes {
			b.WriteString("- " + n + "\n")
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}
