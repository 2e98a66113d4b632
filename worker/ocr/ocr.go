package ocr

import (
	"context"
	"errors"
	"fmt"
	"image"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"unicode/utf8"

	"golang.org/x/image/draw"

	"github.com/sparecycles/sparecycles/worker/onnx"
)

// The model files, as scripts/fetch-models names them.
const (
	DetFile  = "ch_PP-OCRv4_det_infer.onnx"
	RecFile  = "ch_PP-OCRv4_rec_infer.onnx"
	KeysFile = "ppocr_keys_v1.txt"
)

// ErrModel means the model files are missing or do not fit together.
var ErrModel = errors.New("ocr: bad model")

// Model is the PP-OCRv4 pipeline: a detection and a recognition session and the recogniser's
// character set. Load it once and share it: Recognize is safe for concurrent use.
type Model struct {
	det, rec *onnx.Session
	classes  []string // CTC classes: blank, the key file's lines, space
	sha256   map[string]string

	unclip  float64   // DB unclip ratio on axis-aligned boxes; fixed by Load, tests vary it
	threads int       // the runtime's intra-op threads: Go-side steps split into as many goroutines
	scratch sync.Pool // *scratch: buffers reused across calls, one set per call in flight
}

// scratch is one Recognize call's reusable memory: the model inputs, the detector's label
// map and stack, a canvas, and the crop resampler's tables. Nothing a Result holds points
// into it.
type scratch struct {
	det, rec []float32
	label    []int32
	stack    []int
	canvas   *image.RGBA
	cr       []crScratch // one per goroutine scaling crops
}

// grow returns (*buf)[:n], reallocating when its capacity is short; the contents are left.
func grow[T any](buf *[]T, n int) []T {
	if cap(*buf) < n {
		*buf = make([]T, n)
	}
	return (*buf)[:n]
}

// paper returns the scratch canvas as an opaque white w×h image.
func (s *scratch) paper(w, h int) *image.RGBA {
	if s.canvas == nil || cap(s.canvas.Pix) < 4*w*h {
		s.canvas = paper(w, h)
		return s.canvas
	}
	s.canvas = &image.RGBA{Pix: s.canvas.Pix[:4*w*h], Stride: 4 * w, Rect: image.Rect(0, 0, w, h)}
	for i := range s.canvas.Pix {
		s.canvas.Pix[i] = 0xff
	}
	return s.canvas
}

// parallel calls f on [0, n) split into m.threads contiguous ranges, each on its own
// goroutine (with one thread, or little work, directly).
func (m *Model) parallel(n int, f func(lo, hi int)) {
	k := min(m.threads, n/8)
	if k <= 1 {
		f(0, n)
		return
	}
	var wg sync.WaitGroup
	for i := range k {
		wg.Go(func() { f(i*n/k, (i+1)*n/k) })
	}
	wg.Wait()
}

// Line is one line of text, left to right, with its box in the image's coordinates and the
// recogniser's mean confidence over its characters (0–1).
type Line struct {
	Text  string
	Box   image.Rectangle
	Score float32
}

// Result is what Recognize read: Lines top to bottom, and their texts joined by "\n".
type Result struct {
	Lines []Line
	Text  string
}

// Load loads the models in dir (DetFile, RecFile, KeysFile, as scripts/fetch-models lays
// them out) on rt. Errors for missing or mismatched files wrap ErrModel.
func Load(rt *onnx.Runtime, dir string) (*Model, error) {
	for _, f := range []string{DetFile, RecFile, KeysFile} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			return nil, fmt.Errorf("%w: %v (run scripts/fetch-models)", ErrModel, err)
		}
	}
	keys, err := os.ReadFile(filepath.Join(dir, KeysFile))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrModel, err)
	}
	classes, err := parseClasses(keys)
	if err != nil {
		return nil, err
	}
	m := &Model{classes: classes, unclip: 2.0, threads: rt.Threads()}
	if m.det, err = rt.NewSessionWith(filepath.Join(dir, DetFile), simplify); err != nil {
		return nil, fmt.Errorf("ocr: load detector: %w", err)
	}
	if m.rec, err = rt.NewSessionWith(filepath.Join(dir, RecFile), simplify); err != nil {
		m.det.Close()
		return nil, fmt.Errorf("ocr: load recogniser: %w", err)
	}
	if err := m.check(); err != nil {
		m.Close()
		return nil, err
	}
	m.sha256 = map[string]string{
		DetFile:  m.det.SHA256(),
		RecFile:  m.rec.SHA256(),
		KeysFile: sha256Hex(keys),
	}
	return m, nil
}

// parseClasses turns the key file (one character per line, no trailing newline) into the
// recogniser's classes: the CTC blank, the keys, and a space.
func parseClasses(keys []byte) ([]string, error) {
	if !utf8.Valid(keys) {
		return nil, fmt.Errorf("%w: %s is not UTF-8", ErrModel, KeysFile)
	}
	lines := strings.Split(strings.TrimSuffix(strings.ReplaceAll(string(keys), "\r\n", "\n"), "\n"), "\n")
	return slices.Concat([]string{""}, lines, []string{" "}), nil
}

// check makes sure the sessions are the models the pipeline is written for.
func (m *Model) check() error {
	want := []struct {
		s       *onnx.Session
		in, out string
	}{
		{m.det, "float32[-1 3 -1 -1]", "float32[-1 1 -1 -1]"},
		{m.rec, "float32[-1 3 48 -1]", fmt.Sprintf("float32[-1 -1 %d]", len(m.classes))},
	}
	for _, w := range want {
		ins, outs := w.s.Inputs(), w.s.Outputs()
		if len(ins) != 1 || len(outs) != 1 ||
			fmt.Sprintf("%s%v", ins[0].DType, ins[0].Shape) != w.in ||
			fmt.Sprintf("%s%v", outs[0].DType, outs[0].Shape) != w.out {
			return fmt.Errorf("%w: %s has inputs %v and outputs %v, want one %s in and one %s out (keys give %d classes)",
				ErrModel, w.s.Name(), ins, outs, w.in, w.out, len(m.classes))
		}
	}
	return nil
}

// SHA256 returns the hex SHA-256 of each model file, by file name.
func (m *Model) SHA256() map[string]string {
	return maps.Clone(m.sha256)
}

// Close frees both sessions. It waits for Recognize calls in flight.
func (m *Model) Close() error {
	return errors.Join(m.det.Close(), m.rec.Close())
}

// Recognize reads the text in img. An image with no text gives an empty Result and no error.
// Cancelling ctx stops it between and during model runs; the error then wraps ctx's error.
func (m *Model) Recognize(ctx context.Context, img image.Image) (Result, error) {
	return m.recognize(ctx, img, nil)
}

// recognize is Recognize, timing its stages in tr (nil: not timed).
func (m *Model) recognize(ctx context.Context, img image.Image, tr *trace) (Result, error) {
	b := img.Bounds()
	if b.Empty() {
		return Result{}, fmt.Errorf("%w: empty image", ErrInvalidImage)
	}
	tr.begin()
	s, _ := m.scratch.Get().(*scratch)
	if s == nil {
		s = new(scratch)
	}
	defer m.scratch.Put(s)
	boxes, err := m.detect(ctx, img, tr, s)
	if err != nil {
		return Result{}, err
	}
	found, err := m.read(ctx, img, boxes, tr, s)
	if err != nil {
		return Result{}, err
	}
	lines := readingOrder(found)
	texts := make([]string, len(lines))
	for i := range lines {
		texts[i] = lines[i].Text
	}
	res := Result{Lines: lines, Text: strings.Join(texts, "\n")}
	tr.mark(stageDecode)
	return res, nil
}

// flatten copies the r part of img onto an opaque white RGBA canvas at the origin:
// transparent pixels read as paper, and later steps have one pixel layout to deal with.
// Only crops are flattened, never the whole image, which may be 16 megapixels.
func flatten(img image.Image, r image.Rectangle) *image.RGBA {
	dst := paper(r.Dx(), r.Dy())
	draw.Draw(dst, dst.Rect, img, r.Min, draw.Over)
	return dst
}

// paper returns a w×h opaque white image.
func paper(w, h int) *image.RGBA {
	dst := image.NewRGBA(image.Rect(0, 0, w, h))
	for i := range dst.Pix {
		dst.Pix[i] = 0xff
	}
	return dst
}

// readingOrder groups boxes into lines (boxes overlapping vertically by at least half the
// smaller height), top to bottom, and joins each line's boxes left to right.
func readingOrder(found []Line) []Line {
	slices.SortStableFunc(found, func(a, b Line) int {
		return (a.Box.Min.Y + a.Box.Max.Y) - (b.Box.Min.Y + b.Box.Max.Y)
	})
	var groups [][]Line
	var spans []image.Rectangle
	for _, l := range found {
		joined := false
		for i, span := range spans {
			overlap := min(span.Max.Y, l.Box.Max.Y) - max(span.Min.Y, l.Box.Min.Y)
			if 2*overlap >= min(span.Dy(), l.Box.Dy()) {
				groups[i] = append(groups[i], l)
				spans[i] = span.Union(l.Box)
				joined = true
				break
			}
		}
		if !joined {
			groups = append(groups, []Line{l})
			spans = append(spans, l.Box)
		}
	}
	lines := make([]Line, len(groups))
	for i, g := range groups {
		slices.SortStableFunc(g, func(a, b Line) int { return a.Box.Min.X - b.Box.Min.X })
		texts := make([]string, len(g))
		var score float64
		var runes int
		for j, l := range g {
			texts[j] = l.Text
			n := utf8.RuneCountInString(l.Text)
			score += float64(l.Score) * float64(n)
			runes += n
		}
		lines[i] = Line{Text: strings.Join(texts, " "), Box: spans[i], Score: float32(score / float64(max(runes, 1)))}
	}
	slices.SortStableFunc(lines, func(a, b Line) int { return a.Box.Min.Y - b.Box.Min.Y })
	return lines
}
