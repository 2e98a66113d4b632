package onnx

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	ort "github.com/yalue/onnxruntime_go"
)

const (
	detModel = "ch_PP-OCRv4_det_infer.onnx"
	recModel = "ch_PP-OCRv4_rec_infer.onnx"
)

// library returns the ONNX Runtime library's path, failing (never skipping) when it is
// missing; the error says to run scripts/fetch-onnxruntime.
func library(t testing.TB) string {
	t.Helper()
	lib, err := FindLibrary("")
	if err != nil {
		t.Fatal(err)
	}
	return lib
}

// newRuntime opens a runtime on the library FindLibrary finds.
func newRuntime(t testing.TB, dev Device, threads int) *Runtime {
	t.Helper()
	lib := library(t)
	log := zerolog.Nop() // benchmarks print what tests log
	if t, ok := t.(*testing.T); ok {
		log = zerolog.New(zerolog.NewTestWriter(t))
	}
	rt, err := NewRuntime(RuntimeConfig{LibraryPath: lib, Device: dev, Threads: threads}, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close() })
	return rt
}

// modelPath returns the path of a fetched model: in $SPARECYCLES_MODELS, else the repo's
// models/ folder.
func modelPath(t testing.TB, name string) string {
	t.Helper()
	dir := os.Getenv("SPARECYCLES_MODELS")
	if dir == "" {
		dir = filepath.Join("..", "..", "models")
	}
	path := filepath.Join(dir, name)
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("model %s missing: %v\nfetch it first: scripts/fetch-models (or point SPARECYCLES_MODELS at a folder holding it)", name, err)
	}
	return path
}

func newSession(t testing.TB, rt *Runtime, name string) *Session {
	t.Helper()
	s, err := rt.NewSession(modelPath(t, name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// detInput is a fixed, image-like input for the det model: smooth gradients plus a few dark
// bars, so the output map is not all zeros.
func detInput(h, w int) Tensor {
	data := make([]float32, 3*h*w)
	for c := range 3 {
		for y := range h {
			for x := range w {
				v := float32(0.9) - 0.2*float32(c)/3 + 0.1*float32(math.Sin(float64(x*y)/97))
				if y > h/3 && y < h/2 && x%24 < 12 {
					v = -1.8
				}
				data[(c*h+y)*w+x] = v
			}
		}
	}
	return Tensor{Name: "x", DType: Float32, Shape: []int64{1, 3, int64(h), int64(w)}, Float32: data}
}

func TestParseDevice(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    Device
		wantErr error
	}{
		{"auto", "auto", Device{Kind: DeviceAuto}, nil},
		{"empty is auto", "", Device{Kind: DeviceAuto}, nil},
		{"cpu", "cpu", Device{Kind: DeviceCPU}, nil},
		{"cpu upper case", " CPU ", Device{Kind: DeviceCPU}, nil},
		{"cuda", "cuda", Device{Kind: DeviceCUDA}, nil},
		{"cuda:0", "cuda:0", Device{Kind: DeviceCUDA}, nil},
		{"cuda:1", "cuda:1", Device{Kind: DeviceCUDA, ID: 1}, nil},
		{"gpu", "gpu", Device{}, ErrBadDevice},
		{"cuda without id", "cuda:", Device{}, ErrBadDevice},
		{"cuda negative", "cuda:-1", Device{}, ErrBadDevice},
		{"cuda word", "cuda:one", Device{}, ErrBadDevice},
		{"cuda huge", "cuda:99999999", Device{}, ErrBadDevice},
		{"cpu with id", "cpu:0", Device{}, ErrBadDevice},
		{"auto with id", "auto:1", Device{}, ErrBadDevice},
		{"id only", ":1", Device{}, ErrBadDevice},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseDevice(tc.in)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("ParseDevice(%q) error = %v, want %v", tc.in, err, tc.wantErr)
			}
			if err != nil {
				if !strings.Contains(err.Error(), tc.in) {
					t.Errorf("error %q does not quote the input", err)
				}
				return
			}
			if got != tc.want {
				t.Fatalf("ParseDevice(%q) = %+v, want %+v", tc.in, got, tc.want)
			}
			if again, err := ParseDevice(got.String()); err != nil || again != got {
				t.Fatalf("round trip through %q gave %+v, %v", got.String(), again, err)
			}
		})
	}
}

func TestFindLibrary(t *testing.T) {
	dir := t.TempDir()
	lib := filepath.Join(dir, "libonnxruntime.so")
	if err := os.WriteFile(lib, []byte("not really"), 0o644); err != nil {
		t.Fatal(err)
	}
	cache := t.TempDir()
	cached := filepath.Join(cache, "onnxruntime", LibraryVersion, "libonnxruntime.so."+LibraryVersion)
	if err := os.MkdirAll(filepath.Dir(cached), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cached, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "nope.so")

	tests := []struct {
		name    string
		flag    string
		env     string
		cache   string
		want    string
		wantErr error
	}{
		{"flag wins", lib, missing, cache, lib, nil},
		{"env next", "", lib, cache, lib, nil},
		{"default cache path", "", "", cache, cached, nil},
		{"missing flag", missing, lib, cache, "", ErrNoLibrary},
		{"missing env", "", missing, cache, "", ErrNoLibrary},
		{"empty cache", "", "", t.TempDir(), "", ErrNoLibrary},
		{"directory", dir, "", cache, "", ErrNoLibrary},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("SPARECYCLES_ONNXRUNTIME_LIB", tc.env)
			t.Setenv("SPARECYCLES_CACHE", tc.cache)
			got, err := FindLibrary(tc.flag)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("FindLibrary(%q) error = %v, want %v", tc.flag, err, tc.wantErr)
			}
			if err != nil && !strings.Contains(err.Error(), "scripts/fetch-onnxruntime") {
				t.Errorf("error %q does not say how to get the library", err)
			}
			if got != tc.want {
				t.Fatalf("FindLibrary(%q) = %q, want %q", tc.flag, got, tc.want)
			}
		})
	}
}

func TestNewRuntimeMissingLibrary(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "libonnxruntime.so")
	_, err := NewRuntime(RuntimeConfig{LibraryPath: missing}, zerolog.Nop())
	if !errors.Is(err, ErrNoLibrary) || !strings.Contains(err.Error(), "scripts/fetch-onnxruntime") {
		t.Fatalf("NewRuntime with a missing library: %v, want ErrNoLibrary naming scripts/fetch-onnxruntime", err)
	}
	notLib := filepath.Join(t.TempDir(), "libonnxruntime.so")
	if err := os.WriteFile(notLib, []byte("not an ELF file"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := NewRuntime(RuntimeConfig{LibraryPath: notLib}, zerolog.Nop()); err == nil ||
		!strings.Contains(err.Error(), "scripts/fetch-onnxruntime") {
		t.Fatalf("NewRuntime with a broken library: %v, want an error naming scripts/fetch-onnxruntime", err)
	}
}

// TestDeviceFallback runs on the CPU-only library: auto stays on the CPU quietly, or, when a
// CUDA provider library sits beside the runtime but cannot be added, with one warning line;
// cuda fails with a one-line error.
func TestDeviceFallback(t *testing.T) {
	lib := library(t)
	// the same library in a folder that also holds a (broken) CUDA provider, as a GPU build would
	gpuDir := t.TempDir()
	gpuLib := filepath.Join(gpuDir, filepath.Base(lib))
	if err := os.Symlink(lib, gpuLib); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(gpuDir, cudaProviderLib), []byte("not a library"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		device   string
		lib      string
		wantErr  error
		wantWarn bool
	}{
		{"cpu", "cpu", lib, nil, false},
		{"auto on a CPU build stays quiet", "auto", lib, nil, false},
		{"auto falls back with one line", "auto", gpuLib, nil, true},
		{"cuda fails", "cuda", lib, ErrNoCUDA, false},
		{"cuda:1 fails", "cuda:1", lib, ErrNoCUDA, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dev, err := ParseDevice(tc.device)
			if err != nil {
				t.Fatal(err)
			}
			var logs bytes.Buffer
			rt, err := NewRuntime(RuntimeConfig{LibraryPath: tc.lib, Device: dev}, zerolog.New(&logs).Level(zerolog.InfoLevel))
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("NewRuntime(%s) error = %v, want %v", tc.device, err, tc.wantErr)
			}
			if err != nil {
				if strings.Contains(err.Error(), "\n") {
					t.Errorf("error spans lines: %q", err)
				}
				return
			}
			for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
				if strings.Contains(line, `"level":"warn"`) && strings.Contains(line, `\n`) {
					t.Errorf("warning holds a multi-line report: %s", line)
				}
			}
			defer rt.Close()
			if rt.Provider() != ProviderCPU {
				t.Errorf("Provider() = %s, want %s", rt.Provider(), ProviderCPU)
			}
			warned := strings.Contains(logs.String(), `"level":"warn"`) && strings.Contains(logs.String(), "running on cpu")
			if warned != tc.wantWarn {
				t.Errorf("warning logged = %v, want %v; logs:\n%s", warned, tc.wantWarn, logs.String())
			}
			s, err := rt.NewSession(modelPath(t, detModel))
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if s.Provider() != ProviderCPU {
				t.Errorf("session Provider() = %s, want %s", s.Provider(), ProviderCPU)
			}
			if _, err := s.Run(t.Context(), []Tensor{detInput(32, 32)}); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestSessionInfo(t *testing.T) {
	rt := newRuntime(t, Device{Kind: DeviceCPU}, 1)
	tests := []struct {
		model   string
		inputs  string
		outputs string
	}{
		{detModel, "[x float32[-1 3 -1 -1]]", "[sigmoid_0.tmp_0 float32[-1 1 -1 -1]]"},
		{recModel, "[x float32[-1 3 48 -1]]", "[softmax_11.tmp_0 float32[-1 -1 6625]]"},
	}
	for _, tc := range tests {
		t.Run(tc.model, func(t *testing.T) {
			s := newSession(t, rt, tc.model)
			if got := sprint(s.Inputs()); got != tc.inputs {
				t.Errorf("Inputs() = %s, want %s", got, tc.inputs)
			}
			if got := sprint(s.Outputs()); got != tc.outputs {
				t.Errorf("Outputs() = %s, want %s", got, tc.outputs)
			}
			data, err := os.ReadFile(modelPath(t, tc.model))
			if err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256(data)
			if want := hex.EncodeToString(sum[:]); s.SHA256() != want {
				t.Errorf("SHA256() = %s, want %s", s.SHA256(), want)
			}
			if s.Provider() != ProviderCPU {
				t.Errorf("Provider() = %s", s.Provider())
			}
		})
	}
}

func sprint(infos []TensorInfo) string {
	parts := make([]string, len(infos))
	for i, info := range infos {
		parts[i] = info.String()
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// TestRunMatchesReference runs the det model through Session.Run and through onnxruntime_go
// directly, on the same input with the same thread count, and wants the same numbers.
func TestRunMatchesReference(t *testing.T) {
	rt := newRuntime(t, Device{Kind: DeviceCPU}, 1)
	path := modelPath(t, detModel)
	s := newSession(t, rt, detModel)
	in := detInput(64, 96)

	got, err := s.Run(t.Context(), []Tensor{in})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Name != "sigmoid_0.tmp_0" || got[0].DType != Float32 ||
		fmt.Sprint(got[0].Shape) != "[1 1 64 96]" || len(got[0].Float32) != 64*96 {
		t.Fatalf("Run returned %d outputs, first %s %s %v with %d floats", len(got), got[0].Name, got[0].DType, got[0].Shape, len(got[0].Float32))
	}

	// The reference: onnxruntime_go's own session on the same file and input.
	opts, err := ort.NewSessionOptions()
	if err != nil {
		t.Fatal(err)
	}
	defer opts.Destroy()
	if err := opts.SetIntraOpNumThreads(1); err != nil {
		t.Fatal(err)
	}
	ref, err := ort.NewDynamicAdvancedSession(path, []string{"x"}, []string{"sigmoid_0.tmp_0"}, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Destroy()
	x, err := ort.NewTensor(ort.NewShape(in.Shape...), append([]float32(nil), in.Float32...))
	if err != nil {
		t.Fatal(err)
	}
	defer x.Destroy()
	y, err := ort.NewEmptyTensor[float32](ort.NewShape(1, 1, 64, 96))
	if err != nil {
		t.Fatal(err)
	}
	defer y.Destroy()
	if err := ref.Run([]ort.Value{x}, []ort.Value{y}); err != nil {
		t.Fatal(err)
	}
	want := y.GetData()

	var maxDiff float64
	var above int
	for i := range want {
		maxDiff = max(maxDiff, math.Abs(float64(got[0].Float32[i]-want[i])))
		if want[i] > 0.3 {
			above++
		}
	}
	if maxDiff > 1e-6 {
		t.Errorf("max |Run − reference| = %g, want ≤ 1e-6", maxDiff)
	}
	if above == 0 || above == len(want) {
		t.Errorf("%d of %d map values above 0.3: the input should light up some, not all", above, len(want))
	}
}

func TestRunInvalidInput(t *testing.T) {
	rt := newRuntime(t, Device{Kind: DeviceCPU}, 1)
	det := newSession(t, rt, detModel)
	rec := newSession(t, rt, recModel)
	good := detInput(32, 32)
	with := func(edit func(*Tensor)) []Tensor {
		t := good
		t.Shape = append([]int64(nil), good.Shape...)
		edit(&t)
		return []Tensor{t}
	}

	tests := []struct {
		name    string
		s       *Session
		in      []Tensor
		wantErr error
		wantMsg string
	}{
		{"unknown name", det, with(func(t *Tensor) { t.Name = "image" }), ErrUnknownInput, `"image"`},
		{"missing", det, nil, ErrMissingInput, `"x"`},
		{"duplicate", det, []Tensor{good, good}, ErrDuplicateInput, `"x"`},
		{"int64 for float32", det, with(func(t *Tensor) { t.DType, t.Float32, t.Int64 = Int64, nil, make([]int64, 3*32*32) }), ErrDType, "model wants float32"},
		{"unknown dtype", det, with(func(t *Tensor) { t.DType = "float16" }), ErrDType, `"float16"`},
		{"rank 3", det, with(func(t *Tensor) { t.Shape = []int64{3, 32, 32} }), ErrShape, "rank 3"},
		{"4 channels", det, with(func(t *Tensor) { t.Shape[1] = 4 }), ErrShape, "dimension 1 is 4, want 3"},
		{"zero width", det, with(func(t *Tensor) { t.Shape[3] = 0 }), ErrShape, "dimension 3 is 0"},
		{"negative batch", det, with(func(t *Tensor) { t.Shape[0] = -1 }), ErrShape, "dimension 0 is -1"},
		{"overflowing shape", det, with(func(t *Tensor) { t.Shape = []int64{1 << 20, 3, 1 << 20, 1 << 20} }), ErrShape, "more than"},
		{"short data", det, with(func(t *Tensor) { t.Float32 = t.Float32[1:] }), ErrData, "needs 3072 elements, has 3071"},
		{"no data", det, with(func(t *Tensor) { t.Float32 = nil }), ErrData, "carries no data"},
		{"data in the wrong slice", det, with(func(t *Tensor) { t.Float32, t.Int64 = nil, make([]int64, 3*32*32) }), ErrData, "carries int64 data"},
		{"two slices", det, with(func(t *Tensor) { t.Int32 = []int32{1} }), ErrData, "float32 and int32"},
		{"rec height 32", rec, with(func(t *Tensor) {}), ErrShape, "dimension 2 is 32, want 48"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, err := tc.s.Run(t.Context(), tc.in)
			if !errors.Is(err, tc.wantErr) || !errors.Is(err, ErrInvalidInput) {
				t.Fatalf("Run error = %v, want %v and ErrInvalidInput", err, tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.wantMsg) {
				t.Errorf("error %q does not say %q", err, tc.wantMsg)
			}
			if out != nil {
				t.Errorf("Run returned outputs with an error")
			}
		})
	}
}

func TestRunConcurrent(t *testing.T) {
	rt := newRuntime(t, Device{Kind: DeviceCPU}, 2)
	s := newSession(t, rt, detModel)
	in := detInput(32, 64)
	want, err := s.Run(t.Context(), []Tensor{in})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			for range 3 {
				got, err := s.Run(t.Context(), []Tensor{in})
				if err != nil {
					errs <- err
					return
				}
				for i := range want[0].Float32 {
					if math.Abs(float64(got[0].Float32[i]-want[0].Float32[i])) > 1e-5 {
						errs <- errors.New("concurrent runs disagree")
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestRunCanceled(t *testing.T) {
	rt := newRuntime(t, Device{Kind: DeviceCPU}, 1)
	s := newSession(t, rt, detModel)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := s.Run(ctx, []Tensor{detInput(32, 32)}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run on a canceled context: %v, want context.Canceled", err)
	}
}

// TestCloseOrder closes the runtime before its session: the session keeps ONNX Runtime loaded
// until it is closed itself, and refuses runs after.
func TestCloseOrder(t *testing.T) {
	lib := library(t)
	rt, err := NewRuntime(RuntimeConfig{LibraryPath: lib, Device: Device{Kind: DeviceCPU}}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	s, err := rt.NewSession(modelPath(t, detModel))
	if err != nil {
		t.Fatal(err)
	}
	if err := rt.Close(); err != nil {
		t.Fatal(err)
	}
	if err := rt.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := rt.NewSession(modelPath(t, detModel)); !errors.Is(err, ErrClosed) {
		t.Fatalf("NewSession after Close: %v, want ErrClosed", err)
	}
	if _, err := s.Run(t.Context(), []Tensor{detInput(32, 32)}); err != nil {
		t.Fatalf("Run on a session of a closed runtime: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Run(t.Context(), []Tensor{detInput(32, 32)}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Run after Close: %v, want ErrClosed", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestNewSessionErrors(t *testing.T) {
	rt := newRuntime(t, Device{Kind: DeviceCPU}, 1)
	if _, err := rt.NewSession(filepath.Join(t.TempDir(), "none.onnx")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("NewSession on a missing file: %v, want os.ErrNotExist", err)
	}
	junk := filepath.Join(t.TempDir(), "junk.onnx")
	if err := os.WriteFile(junk, []byte("not a model"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := rt.NewSession(junk); err == nil || !strings.Contains(err.Error(), "junk.onnx") {
		t.Errorf("NewSession on junk: %v, want an error naming the file", err)
	}
	errRewrite := errors.New("no thanks")
	if _, err := rt.NewSessionWith(modelPath(t, detModel), func([]byte) ([]byte, error) { return nil, errRewrite }); !errors.Is(err, errRewrite) {
		t.Errorf("NewSessionWith a failing rewrite: %v, want its error", err)
	}
}

func TestNewSessionWith(t *testing.T) {
	rt := newRuntime(t, Device{Kind: DeviceCPU}, 1)
	path := modelPath(t, detModel)
	plain := newSession(t, rt, detModel)
	var seen int
	s, err := rt.NewSessionWith(path, func(b []byte) ([]byte, error) { seen = len(b); return b, nil })
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if fi, err := os.Stat(path); err != nil || int64(seen) != fi.Size() {
		t.Errorf("rewrite saw %d bytes, want the file's (%v)", seen, err)
	}
	if s.SHA256() != plain.SHA256() {
		t.Errorf("SHA256 %s, want the file's %s", s.SHA256(), plain.SHA256())
	}
}

func BenchmarkRawRun(b *testing.B) {
	for _, threads := range []int{1, 2} {
		b.Run(fmt.Sprintf("threads=%d", threads), func(b *testing.B) {
			rt := newRuntime(b, Device{Kind: DeviceCPU}, threads)
			s := newSession(b, rt, detModel)
			in := []Tensor{detInput(96, 896)} // a one-line crop, as the OCR pipeline feeds it
			for b.Loop() {
				if _, err := s.Run(b.Context(), in); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed())/float64(time.Millisecond)/float64(b.N), "ms/op")
		})
	}
}
