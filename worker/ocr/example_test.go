package ocr_test

import (
	"context"
	"fmt"
	"os"

	"github.com/rs/zerolog"

	"github.com/sparecycles/sparecycles/worker/ocr"
	"github.com/sparecycles/sparecycles/worker/onnx"
)

// A job's life in the OCR pipeline: one runtime and one model per process, then for each job
// the client's bytes are decoded (checked against the limits first) and read.
func Example() {
	lib, err := onnx.FindLibrary("") // $SPARECYCLES_ONNXRUNTIME_LIB, else where scripts/fetch-onnxruntime puts it
	if err != nil {
		fmt.Println(err)
		return
	}
	rt, err := onnx.NewRuntime(onnx.RuntimeConfig{LibraryPath: lib, Device: onnx.Device{Kind: onnx.DeviceCPU}, Threads: 2}, zerolog.Nop())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer rt.Close()
	m, err := ocr.Load(rt, "../../models") // as scripts/fetch-models lays it out
	if err != nil {
		fmt.Println(err)
		return
	}
	defer m.Close()

	data, err := os.ReadFile("testdata/receipt.png")
	if err != nil {
		fmt.Println(err)
		return
	}
	img, format, err := ocr.Decode(data, 16_000_000)
	if err != nil {
		fmt.Println(err) // errors.Is(err, ocr.ErrInvalidImage): the client's fault, safe to show
		return
	}
	res, err := m.Recognize(context.Background(), img)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(format, len(res.Lines), "lines:")
	fmt.Println(res.Text)
	// Output:
	// png 2 lines:
	// Receipt 0042
	// 2 x GPU hours 4200 sat
}
