package ocr

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"slices"
	"testing"
)

func TestDetSize(t *testing.T) {
	tests := []struct {
		w, h, wantW, wantH int
	}{
		{640, 480, 640, 480},
		{100, 20, 96, 32},      // rounded to 32, at least 32
		{10, 10, 32, 32},       // tiny images grow to 32
		{1920, 1080, 960, 544}, // longest side to 960: 1080/2 = 540 → 544
		{900, 3000, 288, 960},
		{961, 50, 960, 64},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%dx%d", tc.w, tc.h), func(t *testing.T) {
			if w, h := detSize(tc.w, tc.h); w != tc.wantW || h != tc.wantH {
				t.Fatalf("detSize(%d, %d) = %d, %d, want %d, %d", tc.w, tc.h, w, h, tc.wantW, tc.wantH)
			}
		})
	}
}

func TestDBBoxes(t *testing.T) {
	// A 64×32 map with a solid 40×8 region at (10, 12) and specks that must not become boxes.
	const mw, mh = 64, 32
	prob := make([]float32, mw*mh)
	fill := func(r image.Rectangle, p float32) {
		for y := r.Min.Y; y < r.Max.Y; y++ {
			for x := r.Min.X; x < r.Max.X; x++ {
				prob[y*mw+x] = p
			}
		}
	}
	fill(image.Rect(10, 12, 50, 20), 0.9)
	fill(image.Rect(2, 2, 4, 30), 0.9)   // 2 wide: thinner than minBoxSide
	fill(image.Rect(55, 2, 62, 10), 0.4) // above the threshold, below the box score

	// Sides between outermost pixel centres: 39×7; unclip d = 39·7·2 / (2·46) ≈ 5.93.
	// At scale 1 the box is (10−5.93, 12−5.93)–(49+5.93, 19+5.93), rounded.
	got := dbBoxes(prob, mw, mh, 2.0, mw, mh)
	want := []image.Rectangle{image.Rect(4, 6, 55, 25)}
	if !slices.Equal(got, want) {
		t.Fatalf("dbBoxes = %v, want %v", got, want)
	}
	// Scaled to a 640×320 image, and clamped at its edges.
	got = dbBoxes(prob, mw, mh, 2.0, 640, 320)
	if want := []image.Rectangle{image.Rect(41, 61, 549, 249)}; !slices.Equal(got, want) {
		t.Fatalf("dbBoxes scaled = %v, want %v", got, want)
	}
	fill(image.Rect(0, 0, mw, mh), 0.95)
	if got := dbBoxes(prob, mw, mh, 2.0, mw, mh); !slices.Equal(got, []image.Rectangle{image.Rect(0, 0, mw, mh)}) {
		t.Fatalf("dbBoxes on a full map = %v, want the whole image", got)
	}
}

func TestCTCDecode(t *testing.T) {
	m := &Model{classes: []string{"", "a", "b", "c", " "}}
	// step builds one time step whose best class is c with probability p.
	step := func(c int, p float32) []float32 {
		s := make([]float32, len(m.classes))
		for i := range s {
			s[i] = (1 - p) / float32(len(s)-1)
		}
		s[c] = p
		return s
	}
	tests := []struct {
		name      string
		steps     [][]float32
		want      string
		wantScore float32
	}{
		{"empty", nil, "", 0},
		{"all blank", [][]float32{step(0, 0.9), step(0, 0.9)}, "", 0},
		{"repeats merge", [][]float32{step(1, 0.8), step(1, 0.8), step(2, 0.6)}, "ab", 0.7},
		{"blank splits repeats", [][]float32{step(1, 0.5), step(0, 0.9), step(1, 0.7)}, "aa", 0.6},
		{"space is the last class", [][]float32{step(1, 1), step(4, 1), step(3, 1)}, "a c", 1},
		{"edge spaces trimmed", [][]float32{step(4, 1), step(2, 1), step(4, 1)}, "b", 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := m.ctcDecode(slices.Concat(tc.steps...))
			if got.text != tc.want || got.score < tc.wantScore-1e-6 || got.score > tc.wantScore+1e-6 {
				t.Fatalf("ctcDecode = %q %.3f, want %q %.3f", got.text, got.score, tc.want, tc.wantScore)
			}
		})
	}
}

func TestReadingOrder(t *testing.T) {
	box := func(text string, x0, y0, x1, y1 int) Line {
		return Line{Text: text, Box: image.Rect(x0, y0, x1, y1), Score: 1}
	}
	got := readingOrder([]Line{
		box("third", 10, 200, 300, 240),
		box("right", 400, 102, 600, 138), // same line as "left", a little lower
		box("first", 10, 0, 500, 40),
		box("left", 10, 100, 300, 140),
		box("sub", 620, 120, 700, 150), // overlaps "right" by 18 of its 30 rows: same line
	})
	want := []string{"first", "left right sub", "third"}
	var texts []string
	for _, l := range got {
		texts = append(texts, l.Text)
	}
	if !slices.Equal(texts, want) {
		t.Fatalf("readingOrder = %q, want %q", texts, want)
	}
	if got[1].Box != image.Rect(10, 100, 700, 150) {
		t.Errorf("merged line box %v, want the union (10,100)-(700,150)", got[1].Box)
	}
}

func TestRotate90(t *testing.T) {
	// 3×2 image, pixels numbered by their red value.
	src := image.NewRGBA(image.Rect(0, 0, 3, 2))
	for y := range 2 {
		for x := range 3 {
			src.Set(x, y, color.RGBA{R: uint8(10*y + x), A: 255})
		}
	}
	got := rotate90(src.SubImage(image.Rect(0, 0, 3, 2)).(*image.RGBA))
	// Counter-clockwise: the right column becomes the top row.
	want := [][]uint8{{2, 12}, {1, 11}, {0, 10}}
	if got.Rect != image.Rect(0, 0, 2, 3) {
		t.Fatalf("rotate90 size %v, want 2×3", got.Rect)
	}
	for y, row := range want {
		for x, r := range row {
			if got.RGBAAt(x, y).R != r {
				t.Errorf("pixel (%d, %d) = %d, want %d", x, y, got.RGBAAt(x, y).R, r)
			}
		}
	}
}

// decodeSeeds are the fuzz seeds: valid PNG and JPEG images, and prefixes of both.
func decodeSeeds(t testing.TB) [][]byte {
	img := image.NewGray(image.Rect(0, 0, 12, 7))
	for i := range img.Pix {
		img.Pix[i] = uint8(i * 17)
	}
	var p, j bytes.Buffer
	if err := png.Encode(&p, img); err != nil {
		t.Fatal(err)
	}
	if err := jpeg.Encode(&j, img, nil); err != nil {
		t.Fatal(err)
	}
	seeds := [][]byte{p.Bytes(), j.Bytes(), []byte("GIF89a\x01\x00\x01\x00"), []byte("RIFF\x00\x00\x00\x00WEBP"), nil}
	for _, b := range [][]byte{p.Bytes(), j.Bytes()} {
		seeds = append(seeds, b[:8], b[:len(b)/2], b[:len(b)-1])
	}
	return seeds
}

func FuzzDecode(f *testing.F) {
	for _, seed := range decodeSeeds(f) {
		f.Add(seed)
	}
	const maxPixels = 1 << 16
	f.Fuzz(func(t *testing.T, data []byte) {
		img, format, err := Decode(data, maxPixels)
		if err != nil {
			if img != nil || format != "" {
				t.Fatalf("Decode returned an image with error %v", err)
			}
			return // refusing is fine; panicking is not
		}
		if format != FormatPNG && format != FormatJPEG {
			t.Fatalf("Decode accepted format %q", format)
		}
		b := img.Bounds()
		if b.Empty() || b.Dx()*b.Dy() > maxPixels {
			t.Fatalf("Decode accepted a %v image (limit %d pixels)", b, maxPixels)
		}
	})
}
