package ocr

import (
	"cmp"
	"context"
	"fmt"
	"image"
	"math"
	"slices"
	"strings"
	"sync"

	"github.com/sparecycles/sparecycles/worker/onnx"
)

// Recognition settings, PaddleOCR's defaults for PP-OCRv4.
const (
	recHeight   = 48  // the recogniser's input height
	recMinWidth = 320 // crops are padded to at least this width, as in training
	recBatch    = 6   // crops per recogniser run
	dropScore   = 0.5 // readings scoring below this are dropped
	tallRatio   = 1.5 // crops this much taller than wide are also read turned 90°
)

// crop is one image to read: the rect part of img (opaque), a box upright or turned.
type crop struct {
	box   int // index into the boxes
	img   *image.RGBA
	rect  image.Rectangle
	ratio float64 // width / height
}

// reading is what the recogniser made of one crop.
type reading struct {
	text  string
	score float32
}

// recLUT maps a byte to the recogniser's input value, x/127.5 − 1.
var recLUT = func() (lut [3][256]float32) {
	for v := range 256 {
		f := float32(v)/127.5 - 1
		lut[0][v], lut[1][v], lut[2][v] = f, f, f
	}
	return lut
}()

// read recognises the text in each box of img and returns the readings worth keeping, one
// Line per box.
func (m *Model) read(ctx context.Context, img image.Image, boxes []image.Rectangle, tr *trace, s *scratch) ([]Line, error) {
	var crops []crop
	src, direct := img.(*image.RGBA)
	for i, r := range boxes {
		// An opaque RGBA image is read in place; anything else is flattened onto white.
		c := crop{box: i, img: src, rect: r, ratio: float64(r.Dx()) / float64(r.Dy())}
		if !direct || !opaqueIn(src, r) {
			c.img = flatten(img, r)
			c.rect = c.img.Rect
		}
		crops = append(crops, c)
		if float64(r.Dy()) >= tallRatio*float64(r.Dx()) {
			// Vertical text reads as a turned line. A tall box can also be one upright
			// letter, so both are read and the better score wins.
			turned := rotate90(c.img.SubImage(c.rect).(*image.RGBA))
			crops = append(crops, crop{box: i, img: turned, rect: turned.Rect, ratio: float64(r.Dy()) / float64(r.Dx())})
		}
	}
	// Similar widths share a batch, so little of each batch is padding.
	slices.SortStableFunc(crops, func(a, b crop) int { return cmp.Compare(a.ratio, b.ratio) })
	tr.mark(stageCrops)

	best := make([]reading, len(boxes))
	for start := 0; start < len(crops); start += recBatch {
		batch := crops[start:min(start+recBatch, len(crops))]
		got, err := m.recognizeBatch(ctx, batch, tr, s)
		if err != nil {
			return nil, err
		}
		for i, c := range batch {
			if got[i].score > best[c.box].score {
				best[c.box] = got[i]
			}
		}
	}
	var lines []Line
	for i, r := range best {
		if r.score < dropScore || r.text == "" {
			continue
		}
		lines = append(lines, Line{Text: r.text, Box: boxes[i], Score: r.score})
	}
	return lines, nil
}

// recognizeBatch runs the recogniser once on up to recBatch crops, each scaled to height 48
// with Catmull-Rom (as draw.CatmullRom does) and padded with zeros (mid-grey after
// normalisation) to the batch's width.
func (m *Model) recognizeBatch(ctx context.Context, batch []crop, tr *trace, s *scratch) ([]reading, error) {
	maxRatio := float64(recMinWidth) / recHeight
	for _, c := range batch {
		maxRatio = max(maxRatio, c.ratio)
	}
	width := int(recHeight * maxRatio)
	plane := recHeight * width
	in := grow(&s.rec, len(batch)*3*plane)
	clear(in)
	workers := max(min(m.threads, len(batch)), 1)
	cr := grow(&s.cr, workers)
	scale := func(w, n int) {
		c := batch[n]
		cw := min(int(math.Ceil(recHeight*c.ratio)), width)
		p := &planes{out: in, off: n * 3 * plane, stride: width, plane: plane, lut: &recLUT}
		catmullRomPlanes(p, c.img, c.rect, max(cw, 1), recHeight, &cr[w])
	}
	if workers == 1 {
		for n := range batch {
			scale(0, n)
		}
	} else {
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() {
				for n := w; n < len(batch); n += workers {
					scale(w, n)
				}
			})
		}
		wg.Wait()
	}
	tr.mark(stageRecInput)
	out, err := m.rec.Run(ctx, []onnx.Tensor{{Name: "x", DType: onnx.Float32, Shape: []int64{int64(len(batch)), 3, recHeight, int64(width)}, Float32: in}})
	if err != nil {
		return nil, fmt.Errorf("ocr: recognise: %w", err)
	}
	tr.mark(stageRecRun)
	probs, shape := out[0].Float32, out[0].Shape
	if len(shape) != 3 || shape[0] != int64(len(batch)) || shape[2] != int64(len(m.classes)) {
		return nil, fmt.Errorf("ocr: recognise: output shape %v for %d crops and %d classes", shape, len(batch), len(m.classes))
	}
	steps := int(shape[1])
	readings := make([]reading, len(batch))
	for n := range batch {
		readings[n] = m.ctcDecode(probs[n*steps*len(m.classes) : (n+1)*steps*len(m.classes)])
	}
	tr.mark(stageDecode)
	return readings, nil
}

// ctcDecode is greedy CTC: the best class per step, repeats merged, blanks dropped. The
// score is the mean probability of the kept classes.
func (m *Model) ctcDecode(probs []float32) reading {
	classes := len(m.classes)
	var text strings.Builder
	var sum float64
	var kept int
	prev := 0
	for t := 0; t+classes <= len(probs); t += classes {
		step := probs[t : t+classes]
		best, bestP := 0, step[0]
		for c, p := range step {
			if p > bestP {
				best, bestP = c, p
			}
		}
		if best != 0 && best != prev {
			text.WriteString(m.classes[best])
			sum += float64(step[best])
			kept++
		}
		prev = best
	}
	if kept == 0 {
		return reading{}
	}
	return reading{text: strings.TrimSpace(text.String()), score: float32(sum / float64(kept))}
}

// rotate90 turns src a quarter turn counter-clockwise (numpy's rot90, which PaddleOCR uses).
func rotate90(src *image.RGBA) *image.RGBA {
	b := src.Rect
	w, h := b.Dx(), b.Dy()
	dst := image.NewRGBA(image.Rect(0, 0, h, w))
	for y := range h {
		for x := range w {
			// (x, y) goes to column y, row w-1-x.
			s := src.PixOffset(b.Min.X+x, b.Min.Y+y)
			d := dst.PixOffset(y, w-1-x)
			copy(dst.Pix[d:d+4], src.Pix[s:s+4])
		}
	}
	return dst
}
