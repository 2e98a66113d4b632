package ocr

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/image/draw"

	"github.com/sparecycles/sparecycles/internal/testimage"
	"github.com/sparecycles/sparecycles/worker/onnx"
)

const (
	sentence = "The quick brown fox jumps over the lazy dog"
	tenWords = "Pack my box with five dozen liquor jugs and sixty pens"
)

const invoice = "Invoice #4471: 12,500 sats due 2026-03-01 (net 30)."

var page = []string{
	"Spare cycles sell compute to strangers.",
	"Jobs are Nostr events; payment is Lightning.",
	"Receipts cost 2100 msat, paid in 3 seconds!",
}

// library returns the ONNX Runtime library's path, failing (never skipping) when it is
// missing; the error says to run scripts/fetch-onnxruntime.
func library(t testing.TB) string {
	t.Helper()
	lib, err := onnx.FindLibrary("")
	if err != nil {
		t.Fatal(err)
	}
	return lib
}

// modelsDir returns the folder holding the fetched models: $SPARECYCLES_MODELS, else the
// repo's models/. It fails (never skips) when they are missing.
func modelsDir(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("SPARECYCLES_MODELS")
	if dir == "" {
		dir = filepath.Join("..", "..", "models")
	}
	for _, f := range []string{DetFile, RecFile, KeysFile} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Fatalf("model file missing: %v\nfetch the models first: scripts/fetch-models (or point SPARECYCLES_MODELS at them)", err)
		}
	}
	return dir
}

// loadModel opens a CPU runtime with threads intra-op threads per session and loads the model.
func loadModel(t testing.TB, threads int) *Model {
	t.Helper()
	lib := library(t)
	rt, err := onnx.NewRuntime(onnx.RuntimeConfig{LibraryPath: lib, Device: onnx.Device{Kind: onnx.DeviceCPU}, Threads: threads}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close() })
	m, err := Load(rt, modelsDir(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// render draws lines of black Go Regular text at size px on white and returns the PNG.
func render(t testing.TB, size float64, lines ...string) []byte {
	t.Helper()
	png, err := testimage.Render(size, lines...)
	if err != nil {
		t.Fatal(err)
	}
	return png
}

func normalize(s string) string { return strings.ToLower(strings.Join(strings.Fields(s), " ")) }

// decoded renders lines at size px and decodes the PNG, as a job's input would arrive.
func decoded(t testing.TB, size float64, lines ...string) image.Image {
	t.Helper()
	img, format, err := Decode(render(t, size, lines...), 16_000_000)
	if err != nil || format != FormatPNG {
		t.Fatalf("Decode: %v, %q", err, format)
	}
	return img
}

// rotateCW turns img a quarter turn clockwise, so its lines run top to bottom.
func rotateCW(img image.Image) image.Image {
	b := img.Bounds()
	dst := image.NewRGBA(image.Rect(0, 0, b.Dy(), b.Dx()))
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			dst.Set(b.Max.Y-1-y, x-b.Min.X, img.At(x, y))
		}
	}
	return dst
}

// reencodeJPEG returns img after a JPEG round trip at quality 60: blocky edges, as phones send.
func reencodeJPEG(t testing.TB, img image.Image) image.Image {
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: 60}); err != nil {
		t.Fatal(err)
	}
	out, format, err := Decode(buf.Bytes(), 0)
	if err != nil || format != FormatJPEG {
		t.Fatalf("Decode: %v, %q", err, format)
	}
	return out
}

// inkOnTransparent turns black-on-white into black ink on a transparent background.
func inkOnTransparent(img image.Image) image.Image {
	b := img.Bounds()
	dst := image.NewNRGBA(b)
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, _, _, _ := img.At(x, y).RGBA()
			dst.Set(x, y, color.NRGBA{A: uint8(255 - r>>8)})
		}
	}
	return dst
}

// onCanvas places img at (dx, dy) on a larger white canvas whose origin is not (0, 0).
func onCanvas(img image.Image, w, h, dx, dy int) image.Image {
	canvas := image.NewRGBA(image.Rect(-7, -5, w-7, h-5))
	draw.Draw(canvas, canvas.Rect, image.White, image.Point{}, draw.Src)
	b := img.Bounds()
	draw.Draw(canvas, b.Sub(b.Min).Add(image.Pt(dx, dy)), img, b.Min, draw.Src)
	return canvas
}

func TestRecognize(t *testing.T) {
	m := loadModel(t, 2)
	tests := []struct {
		name  string
		img   func(t *testing.T) image.Image
		lines []string
	}{
		{"sentence 32px", func(t *testing.T) image.Image { return decoded(t, 32, sentence) }, []string{sentence}},
		{"ten words 32px", func(t *testing.T) image.Image { return decoded(t, 32, tenWords) }, []string{tenWords}},
		{"page 32px", func(t *testing.T) image.Image { return decoded(t, 32, page...) }, page},
		{"sentence 14px", func(t *testing.T) image.Image { return decoded(t, 14, sentence) }, []string{sentence}},
		{"page 20px", func(t *testing.T) image.Image { return decoded(t, 20, page...) }, page},
		{"page 64px", func(t *testing.T) image.Image { return decoded(t, 64, page...) }, page},
		{"nine lines 24px", func(t *testing.T) image.Image { return decoded(t, 24, slices.Concat(page, page, page)...) }, slices.Concat(page, page, page)},
		{"page as jpeg", func(t *testing.T) image.Image { return reencodeJPEG(t, decoded(t, 32, page...)) }, page},
		{"page on transparent", func(t *testing.T) image.Image { return inkOnTransparent(decoded(t, 32, page...)) }, page},
		{"page in a 3000×2000 canvas", func(t *testing.T) image.Image { return onCanvas(decoded(t, 48, page...), 3000, 2000, 900, 700) }, page},
		{"sentence turned clockwise", func(t *testing.T) image.Image { return rotateCW(decoded(t, 32, sentence)) }, []string{sentence}},
		{"digits and punctuation", func(t *testing.T) image.Image { return decoded(t, 32, invoice) }, []string{invoice}},
		{"blank page", func(t *testing.T) image.Image { return onCanvas(image.NewGray(image.Rect(0, 0, 1, 1)), 300, 200, 0, 0) }, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			img := tc.img(t)
			start := time.Now()
			res, err := m.Recognize(t.Context(), img)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%v: %q", time.Since(start).Round(time.Millisecond), res.Text)
			want := strings.Join(tc.lines, "\n")
			if normalize(res.Text) != normalize(want) {
				t.Fatalf("Recognize read\n%s\nwant\n%s", res.Text, want)
			}
			if res.Text != want {
				t.Errorf("Recognize read %q, want exactly %q", res.Text, want)
			}
			if len(res.Lines) != len(tc.lines) {
				t.Fatalf("%d lines, want %d", len(res.Lines), len(tc.lines))
			}
			for i, l := range res.Lines {
				if l.Score < 0.8 || l.Score > 1 {
					t.Errorf("line %d score %.3f, want 0.8–1", i, l.Score)
				}
				if !l.Box.In(img.Bounds()) || l.Box.Empty() {
					t.Errorf("line %d box %v outside the image %v", i, l.Box, img.Bounds())
				}
				if i > 0 && l.Box.Min.Y <= res.Lines[i-1].Box.Min.Y {
					t.Errorf("line %d box %v is not below line %d's %v", i, l.Box, i-1, res.Lines[i-1].Box)
				}
			}
		})
	}
}

// TestRecognizeBoxes checks that boxes land on the text, in the image's own coordinates.
func TestRecognizeBoxes(t *testing.T) {
	m := loadModel(t, 1)
	line := decoded(t, 32, sentence)
	img := onCanvas(line, 1400, 400, 300, 200) // the text starts near (-7+300+32, -5+200+32)
	res, err := m.Recognize(t.Context(), img)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Lines) != 1 {
		t.Fatalf("read %q, want one line", res.Text)
	}
	want := image.Rect(-7+300+32, -5+200+32, -7+300+line.Bounds().Dx()-32, -5+200+32+32) // the inked area, roughly
	got := res.Lines[0].Box
	if !want.Inset(8).In(got) || !got.In(want.Inset(-24)) {
		t.Errorf("box %v, want around %v", got, want)
	}
}

func TestRecognizeConcurrent(t *testing.T) {
	m := loadModel(t, 1)
	imgs := []image.Image{decoded(t, 32, sentence), decoded(t, 32, page...), decoded(t, 24, tenWords)}
	wants := []string{sentence, strings.Join(page, "\n"), tenWords}
	var wg sync.WaitGroup
	errs := make(chan error, len(imgs)*2)
	for range 2 {
		for i, img := range imgs {
			wg.Go(func() {
				res, err := m.Recognize(t.Context(), img)
				if err == nil && res.Text != wants[i] {
					err = fmt.Errorf("read %q, want %q", res.Text, wants[i])
				}
				errs <- err
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

func TestRecognizeCanceled(t *testing.T) {
	m := loadModel(t, 1)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := m.Recognize(ctx, decoded(t, 32, sentence)); !errors.Is(err, context.Canceled) {
		t.Fatalf("Recognize on a canceled context: %v, want context.Canceled", err)
	}
	if _, err := m.Recognize(t.Context(), image.NewGray(image.Rect(3, 3, 3, 9))); !errors.Is(err, ErrInvalidImage) {
		t.Fatalf("Recognize on an empty image: %v, want ErrInvalidImage", err)
	}
}

func TestLoad(t *testing.T) {
	lib := library(t)
	rt, err := onnx.NewRuntime(onnx.RuntimeConfig{LibraryPath: lib, Device: onnx.Device{Kind: onnx.DeviceCPU}}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	dir, err := filepath.Abs(modelsDir(t))
	if err != nil {
		t.Fatal(err)
	}

	m, err := Load(rt, dir)
	if err != nil {
		t.Fatal(err)
	}
	sums := m.SHA256()
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{DetFile, RecFile, KeysFile} {
		data, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if sums[f] != sha256Hex(data) {
			t.Errorf("SHA256()[%s] = %q, want %s", f, sums[f], sha256Hex(data))
		}
	}

	// A folder missing a file, and one whose key file does not fit the recogniser.
	link := func(dst string, files ...string) {
		for _, f := range files {
			if err := os.Symlink(filepath.Join(dir, f), filepath.Join(dst, f)); err != nil {
				t.Fatal(err)
			}
		}
	}
	noRec := t.TempDir()
	link(noRec, DetFile, KeysFile)
	if _, err := Load(rt, noRec); !errors.Is(err, ErrModel) || !strings.Contains(err.Error(), "scripts/fetch-models") {
		t.Errorf("Load without %s: %v, want ErrModel naming scripts/fetch-models", RecFile, err)
	}
	shortKeys := t.TempDir()
	link(shortKeys, DetFile, RecFile)
	if err := os.WriteFile(filepath.Join(shortKeys, KeysFile), []byte("a\nb\nc"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(rt, shortKeys); !errors.Is(err, ErrModel) || !strings.Contains(err.Error(), "5 classes") {
		t.Errorf("Load with 3 keys: %v, want ErrModel saying 5 classes", err)
	}
}

func TestDecodeRefusals(t *testing.T) {
	good := render(t, 16, "ok")
	var gif bytes.Buffer
	gif.WriteString("GIF89a")
	gif.Write([]byte{10, 0, 10, 0, 0, 0, 0})
	bigPNG := func(w, h int) []byte {
		var buf bytes.Buffer
		if err := png.Encode(&buf, image.NewGray(image.Rect(0, 0, w, h))); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	tests := []struct {
		name      string
		in        []byte
		maxPixels int
		wantErr   error
		wantMsg   string
	}{
		{"empty", nil, 100, ErrFormat, "not an image"},
		{"text", []byte("hello, world"), 100, ErrFormat, "not an image"},
		{"gif", gif.Bytes(), 1000, ErrFormat, "gif"},
		{"webp", []byte("RIFF\x00\x00\x00\x00WEBPVP8 "), 1000, ErrFormat, "webp"},
		{"over the pixel limit", bigPNG(200, 100), 19_999, ErrTooLarge, "200×100 is 20000 pixels, the limit is 19999"},
		{"truncated png", good[:len(good)/2], 1 << 20, ErrCorrupt, "png"},
		{"png header only", good[:20], 1 << 20, ErrCorrupt, "header"},
		{"truncated jpeg", []byte("\xff\xd8\xff\xe0\x00\x10JFIF"), 1 << 20, ErrCorrupt, "jpeg"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			img, format, err := Decode(tc.in, tc.maxPixels)
			if !errors.Is(err, tc.wantErr) || !errors.Is(err, ErrInvalidImage) {
				t.Fatalf("Decode error = %v, want %v and ErrInvalidImage", err, tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.wantMsg) {
				t.Errorf("error %q does not say %q", err, tc.wantMsg)
			}
			if img != nil || format != "" {
				t.Errorf("Decode returned an image with an error")
			}
		})
	}
	// Exactly at the limit is fine.
	if _, _, err := Decode(bigPNG(200, 100), 20_000); err != nil {
		t.Errorf("Decode at the limit: %v", err)
	}
}

func ExampleDecode() {
	_, _, err := Decode([]byte("GIF89a..."), 16_000_000)
	fmt.Println(err)
	fmt.Println(errors.Is(err, ErrFormat), errors.Is(err, ErrInvalidImage))
	// Output:
	// ocr: unsupported image format: gif, want png or jpeg
	// true true
}

func benchmarkRecognize(b *testing.B, lines ...string) {
	for _, threads := range []int{1, 2} {
		b.Run(fmt.Sprintf("threads=%d", threads), func(b *testing.B) {
			m := loadModel(b, threads)
			data := render(b, 32, lines...)
			want := strings.Join(lines, "\n")
			for b.Loop() {
				img, _, err := Decode(data, 16_000_000)
				if err != nil {
					b.Fatal(err)
				}
				res, err := m.Recognize(b.Context(), img)
				if err != nil {
					b.Fatal(err)
				}
				if res.Text != want {
					b.Fatalf("read %q, want %q", res.Text, want)
				}
			}
			b.ReportMetric(float64(b.Elapsed())/float64(time.Millisecond)/float64(b.N), "ms/op")
		})
	}
}

// BenchmarkRecognizeLine reads a 10-word line at 32px, PNG bytes to text.
func BenchmarkRecognizeLine(b *testing.B) { benchmarkRecognize(b, tenWords) }

// BenchmarkRecognizePage reads a 3-line page at 32px, PNG bytes to text.
func BenchmarkRecognizePage(b *testing.B) { benchmarkRecognize(b, page...) }
