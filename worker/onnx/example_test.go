package onnx_test

import (
	"context"
	"fmt"

	"github.com/rs/zerolog"

	"github.com/sparecycles/sparecycles/worker/onnx"
)

// Open the runtime once, load a model once, and run it on plain Go tensors.
func Example() {
	lib, err := onnx.FindLibrary("") // $SPARECYCLES_ONNXRUNTIME_LIB, else where scripts/fetch-onnxruntime puts it
	if err != nil {
		fmt.Println(err)
		return
	}
	dev, err := onnx.ParseDevice("auto") // CUDA if it can be added, else the CPU with a warning
	if err != nil {
		fmt.Println(err)
		return
	}
	rt, err := onnx.NewRuntime(onnx.RuntimeConfig{LibraryPath: lib, Device: dev, Threads: 1}, zerolog.Nop())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer rt.Close()
	s, err := rt.NewSession("../../models/ch_PP-OCRv4_det_infer.onnx") // fetched by scripts/fetch-models
	if err != nil {
		fmt.Println(err)
		return
	}
	defer s.Close()
	fmt.Println("in:", s.Inputs(), "out:", s.Outputs())

	// A blank 32×64 page: the text probability map comes back at the input's size.
	page := onnx.Tensor{Name: "x", DType: onnx.Float32, Shape: []int64{1, 3, 32, 64}, Float32: make([]float32, 3*32*64)}
	out, err := s.Run(context.Background(), []onnx.Tensor{page})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(out[0].Name, out[0].DType, out[0].Shape)

	// Tensors that do not fit the model are refused before ONNX Runtime sees them.
	page.Shape = []int64{1, 4, 32, 48}
	_, err = s.Run(context.Background(), []onnx.Tensor{page})
	fmt.Println(err)
	// Output:
	// in: [x float32[-1 3 -1 -1]] out: [sigmoid_0.tmp_0 float32[-1 1 -1 -1]]
	// sigmoid_0.tmp_0 float32 [1 1 32 64]
	// onnx: shape mismatch: input "x" has shape [1 4 32 48], model wants [-1 3 -1 -1]: dimension 1 is 4, want 3
}
