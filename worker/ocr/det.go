package ocr

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"image"
	"math"

	"golang.org/x/image/draw"

	"github.com/sparecycles/sparecycles/worker/onnx"
)

// Detection settings, PaddleOCR's defaults for PP-OCRv4.
const (
	detMaxSide    = 960  // longest side fed to the detector
	detThreshold  = 0.3  // probability above which a map pixel is text
	boxThreshold  = 0.6  // a box's mean probability below which it is dropped
	minBoxSide    = 3    // map pixels; thinner regions are noise
	maxCandidates = 1000 // regions considered per image
)

// ImageNet statistics, applied to channels in BGR order as PaddleOCR's cv2 pipeline does.
var (
	detMean = [3]float32{0.485, 0.456, 0.406}
	detStd  = [3]float32{0.229, 0.224, 0.225}
)

// detLUT maps a byte to each plane's normalised value (planes B, G, R).
var detLUT = func() (lut [3][256]float32) {
	for k := range 3 {
		for v := range 256 {
			lut[k][v] = (float32(v)/255 - detMean[k]) / detStd[k]
		}
	}
	return lut
}()

// detect finds text boxes in img, in img's coordinates.
func (m *Model) detect(ctx context.Context, img image.Image, tr *trace, s *scratch) ([]image.Rectangle, error) {
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	rw, rh := detSize(w, h)
	plane := rw * rh
	in := grow(&s.det, 3*plane)
	m.detInput(img, rw, rh, in, s)
	tr.mark(stageDetInput)
	out, err := m.det.Run(ctx, []onnx.Tensor{{Name: "x", DType: onnx.Float32, Shape: []int64{1, 3, int64(rh), int64(rw)}, Float32: in}})
	if err != nil {
		return nil, fmt.Errorf("ocr: detect: %w", err)
	}
	tr.mark(stageDetRun)
	prob := out[0].Float32
	if len(prob) != plane {
		return nil, fmt.Errorf("ocr: detect: map has %d values for a %d×%d input", len(prob), rw, rh)
	}
	boxes := s.dbBoxes(prob, rw, rh, m.unclip, w, h)
	for i := range boxes {
		boxes[i] = boxes[i].Add(b.Min)
	}
	tr.mark(stageBoxes)
	return boxes, nil
}

// detInput scales img to rw×rh onto white (transparent pixels read as paper), with plain
// bilinear sampling (draw.ApproxBiLinear), and writes it into in as normalised BGR planes.
// An opaque *image.RGBA (what PNG decoding of an RGB image gives) is scaled straight into
// the tensor; other images are drawn onto a white canvas first, never copied at full size.
func (m *Model) detInput(img image.Image, rw, rh int, in []float32, s *scratch) {
	b := img.Bounds()
	p := &planes{out: in, stride: rw, plane: rw * rh, lut: &detLUT}
	if src, ok := img.(*image.RGBA); ok && opaqueIn(src, b) {
		xs, ys := ablAxes(rw, b.Dx()), ablAxes(rh, b.Dy())
		m.parallel(rh, func(y0, y1 int) { ablPlanes(p, src, b, xs, ys, y0, y1) })
		return
	}
	canvas := s.paper(rw, rh)
	draw.ApproxBiLinear.Scale(canvas, canvas.Rect, img, b, draw.Over, nil)
	m.parallel(rh, func(y0, y1 int) {
		for y := y0; y < y1; y++ {
			row := canvas.Pix[y*canvas.Stride:]
			for x := range rw {
				p.set(x, y, row[4*x], row[4*x+1], row[4*x+2])
			}
		}
	})
}

// detSize scales w×h so the longest side is at most detMaxSide and both are multiples of 32
// (at least 32), as PaddleOCR's DetResizeForTest does with limit_type "max".
func detSize(w, h int) (int, int) {
	ratio := 1.0
	if longest := max(w, h); longest > detMaxSide {
		ratio = float64(detMaxSide) / float64(longest)
	}
	round32 := func(v int) int { return max(int(math.Round(float64(v)*ratio/32))*32, 32) }
	return round32(w), round32(h)
}

// dbBoxes is DB post-processing on the probability map prob (mw×mh) with axis-aligned boxes:
// threshold, 8-connected regions, score, unclip, and scale to the w×h image.
func dbBoxes(prob []float32, mw, mh int, unclip float64, w, h int) []image.Rectangle {
	return new(scratch).dbBoxes(prob, mw, mh, unclip, w, h)
}

// dbBoxes is dbBoxes with s's label map and stack.
func (s *scratch) dbBoxes(prob []float32, mw, mh int, unclip float64, w, h int) []image.Rectangle {
	label := grow(&s.label, len(prob))
	clear(label)
	var boxes []image.Rectangle
	stack := s.stack[:0]
	defer func() { s.stack = stack[:0] }()
	var regions int32
	for start, p := range prob {
		if p <= detThreshold || label[start] != 0 {
			continue
		}
		regions++
		if regions > maxCandidates {
			break
		}
		// Flood fill the region, tracking its bounds.
		minX, minY, maxX, maxY := mw, mh, -1, -1
		label[start] = regions
		stack = append(stack[:0], start)
		for len(stack) > 0 {
			i := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			x, y := i%mw, i/mw
			minX, maxX, minY, maxY = min(minX, x), max(maxX, x), min(minY, y), max(maxY, y)
			for dy := -1; dy <= 1; dy++ {
				for dx := -1; dx <= 1; dx++ {
					nx, ny := x+dx, y+dy
					if nx < 0 || ny < 0 || nx >= mw || ny >= mh {
						continue
					}
					if j := ny*mw + nx; label[j] == 0 && prob[j] > detThreshold {
						label[j] = regions
						stack = append(stack, j)
					}
				}
			}
		}
		// Sides as PaddleOCR measures them: between the outermost pixel centres.
		bw, bh := float64(maxX-minX), float64(maxY-minY)
		if min(bw, bh) < minBoxSide {
			continue
		}
		var sum float64
		for y := minY; y <= maxY; y++ {
			for _, p := range prob[y*mw+minX : y*mw+maxX+1] {
				sum += float64(p)
			}
		}
		if sum/float64((maxX-minX+1)*(maxY-minY+1)) < boxThreshold {
			continue
		}
		d := bw * bh * unclip / (2 * (bw + bh))
		if min(bw, bh)+2*d < minBoxSide+2 {
			continue
		}
		sx, sy := float64(w)/float64(mw), float64(h)/float64(mh)
		clampRound := func(v float64, limit int) int { return min(max(int(math.Round(v)), 0), limit) }
		r := image.Rect(
			clampRound((float64(minX)-d)*sx, w), clampRound((float64(minY)-d)*sy, h),
			clampRound((float64(maxX)+d)*sx, w), clampRound((float64(maxY)+d)*sy, h))
		if r.Dx() <= 3 || r.Dy() <= 3 {
			continue
		}
		boxes = append(boxes, r)
	}
	return boxes
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
