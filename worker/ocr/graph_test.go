package ocr

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/rs/zerolog"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/sparecycles/sparecycles/worker/onnx"
)

// TestSimplifyGraph rewrites both models and checks that the rewritten graphs give the same
// outputs as the files on a real input, up to float rounding.
func TestSimplifyGraph(t *testing.T) {
	rt, err := onnx.NewRuntime(onnx.RuntimeConfig{LibraryPath: library(t), Device: onnx.Device{Kind: onnx.DeviceCPU}}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	tests := []struct {
		file                   string
		shape                  []int64
		hardSwishes, minFolded int
	}{
		{DetFile, []int64{1, 3, 128, 864}, 24, 1},
		{RecFile, []int64{2, 3, 48, 400}, 28, 1},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			path := filepath.Join(modelsDir(t), tc.file)
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			_, swapped, hs, folded, err := simplifyGraph(data)
			if err != nil {
				t.Fatal(err)
			}
			if hs != tc.hardSwishes || folded < tc.minFolded || swapped == 0 {
				t.Errorf("rewrote %d hard-swishes (want %d), folded %d affine steps (want ≥ %d), swapped %d operands",
					hs, tc.hardSwishes, folded, tc.minFolded, swapped)
			}
			once := must(simplifyGraph(data))
			if again, swapped2, hs2, folded2, err := simplifyGraph(once); err != nil || swapped2 != 0 || hs2 != 0 || folded2 != 0 || !bytes.Equal(again, once) {
				t.Errorf("a second pass swapped %d operands, rewrote %d hard-swishes and folded %d steps (err %v; output unchanged: %t), want nothing",
					swapped2, hs2, folded2, err, bytes.Equal(again, once))
			}

			raw, err := rt.NewSession(path)
			if err != nil {
				t.Fatal(err)
			}
			defer raw.Close()
			simple, err := rt.NewSessionWith(path, simplify)
			if err != nil {
				t.Fatal(err)
			}
			defer simple.Close()
			if simple.SHA256() != raw.SHA256() {
				t.Errorf("SHA256 %s, want the file's %s", simple.SHA256(), raw.SHA256())
			}

			// A text-like input: dark strokes on light paper, normalised.
			n := int(tc.shape[0] * tc.shape[1] * tc.shape[2] * tc.shape[3])
			in := make([]float32, n)
			w := int(tc.shape[3])
			for i := range in {
				x, y := i%w, (i/w)%int(tc.shape[2])
				in[i] = 0.9
				if (x/7+y/5)%3 == 0 && y > 8 && y < int(tc.shape[2])-8 {
					in[i] = -0.9
				}
			}
			x := []onnx.Tensor{{Name: "x", DType: onnx.Float32, Shape: tc.shape, Float32: in}}
			want, err := raw.Run(t.Context(), x)
			if err != nil {
				t.Fatal(err)
			}
			got, err := simple.Run(t.Context(), x)
			if err != nil {
				t.Fatal(err)
			}
			a, b := want[0].Float32, got[0].Float32
			if len(a) != len(b) {
				t.Fatalf("output has %d values, want %d", len(b), len(a))
			}
			var maxDiff float64
			for i := range a {
				maxDiff = max(maxDiff, math.Abs(float64(a[i])-float64(b[i])))
			}
			t.Logf("max |difference| %.2g over %d outputs", maxDiff, len(a))
			if maxDiff > 1e-3 {
				t.Errorf("outputs differ by up to %.2g, want ≤ 1e-3", maxDiff)
			}
		})
	}
}

func must(b []byte, _, _, _ int, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

// testModel builds a small ModelProto with one of each rewrite: a Conv followed by Mul and Add
// with their constants first, a hard-swish, and an affine step feeding a 1×1 Conv.
func testModel() []byte {
	node := func(op string, out string, in ...string) *onnxNode {
		return newNode(op, out, in, []string{out}, nil)
	}
	nodes := []*onnxNode{
		filledConstant("three", 3, nil),
		filledConstant("zero", 0, nil),
		filledConstant("six", 6, nil),
		filledConstant("c", 2, []int64{1}),
		filledConstant("d", 0.5, []int64{1}),
		floatConstant("w", []float32{1, 2, 3, 4}, []int64{2, 2, 1, 1}),
		node("Conv", "conv0", "x", "w"),
		node("Mul", "m", "c", "conv0"),
		node("Add", "a", "d", "m"),
		node("Add", "h1", "a", "three"),
		node("Clip", "h2", "h1", "zero", "six"),
		node("Mul", "h3", "h2", "a"),
		node("Div", "y", "h3", "six"),
		node("Mul", "m2", "y", "c"),
		node("Add", "a2", "m2", "d"),
		node("Conv", "out", "a2", "w"),
	}
	var graph []byte
	for _, n := range nodes {
		graph = pbAppend(graph, pbField{num: graphNode, typ: protowire.BytesType, data: n.encode()})
	}
	output := pbAppend(nil, pbString(valueName, "out"))
	graph = pbAppend(graph, pbString(2, "test"), pbField{num: graphOutput, typ: protowire.BytesType, data: output})
	return pbAppend(nil, pbField{num: 1, typ: protowire.VarintType, v: 8}, pbField{num: modelGraph, typ: protowire.BytesType, data: graph})
}

// graphNodes lists a model's nodes as "op(inputs)" and its Constant nodes' values by output.
func graphNodes(t *testing.T, model []byte) ([]string, map[string][]float32) {
	t.Helper()
	mfs, err := pbParse(model)
	if err != nil {
		t.Fatal(err)
	}
	var ops []string
	consts := map[string][]float32{}
	for _, m := range mfs {
		if m.num != modelGraph {
			continue
		}
		gfs, err := pbParse(m.data)
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range gfs {
			if g.num != graphNode {
				continue
			}
			n, err := parseNode(g.data)
			if err != nil {
				t.Fatal(err)
			}
			if n.op == "Constant" {
				consts[n.outputs[0]] = tensorFloat32s(n.attrs["value"][1].data)
				continue
			}
			ops = append(ops, fmt.Sprintf("%s%v", n.op, n.inputs))
		}
	}
	return ops, consts
}

func TestSimplifyGraphSmall(t *testing.T) {
	out, swapped, hs, folded, err := simplifyGraph(testModel())
	if err != nil {
		t.Fatal(err)
	}
	if swapped != 2 || hs != 1 || folded != 1 {
		t.Errorf("swapped %d operands, rewrote %d hard-swishes, folded %d steps; want 2, 1, 1", swapped, hs, folded)
	}
	requireSimplified(t, out, []string{
		"Conv[x w]",
		"Mul[conv0 c/[]]",
		"Add[m d/[2 1 1]]",
		"HardSigmoid[a]",
		"Mul[a y/hardsigmoid]",
		"Conv[y out/folded_w out/folded_b]",
	}, map[string][]float32{
		"c/[]":         {2},
		"d/[2 1 1]":    {0.5, 0.5},
		"out/folded_w": {2, 4, 6, 8},
		"out/folded_b": {1.5, 3.5},
	})
}

// testModelBlocked is a hard-swish and an affine step on 16 channels, which ONNX Runtime's
// blocked layout takes, the affine step feeding a Relu rather than a 1×1 Conv.
func testModelBlocked() []byte {
	node := func(op string, out string, in ...string) *onnxNode {
		return newNode(op, out, in, []string{out}, nil)
	}
	w := make([]float32, 16*2)
	for i := range w {
		w[i] = float32(i%5) - 2
	}
	nodes := []*onnxNode{
		filledConstant("three", 3, nil),
		filledConstant("zero", 0, nil),
		filledConstant("six", 6, nil),
		filledConstant("c", 2, []int64{1}),
		filledConstant("d", 0.5, []int64{1}),
		floatConstant("w", w, []int64{16, 2, 1, 1}),
		node("Conv", "x1", "x", "w"),
		node("Relu", "a", "x1"),
		node("Add", "h1", "a", "three"),
		node("Clip", "h2", "h1", "zero", "six"),
		node("Mul", "h3", "a", "h2"),
		node("Div", "y", "h3", "six"),
		node("Mul", "m2", "y", "c"),
		node("Add", "a2", "m2", "d"),
		node("Relu", "out", "a2"),
	}
	var graph []byte
	for _, n := range nodes {
		graph = pbAppend(graph, pbField{num: graphNode, typ: protowire.BytesType, data: n.encode()})
	}
	output := pbAppend(nil, pbString(valueName, "out"))
	graph = pbAppend(graph, pbString(2, "test"), pbField{num: graphOutput, typ: protowire.BytesType, data: output})
	return pbAppend(nil, pbField{num: 1, typ: protowire.VarintType, v: 8}, pbField{num: modelGraph, typ: protowire.BytesType, data: graph})
}

func TestSimplifyGraphBlocked(t *testing.T) {
	out, _, hs, folded, err := simplifyGraph(testModelBlocked())
	if err != nil {
		t.Fatal(err)
	}
	if hs != 1 || folded != 1 {
		t.Errorf("rewrote %d hard-swishes, folded %d steps; want 1, 1", hs, folded)
	}
	fill := func(v float32) []float32 { return slices.Repeat([]float32{v}, 16) }
	requireSimplified(t, out, []string{
		"Conv[x w]",
		"Relu[x1]",
		"Conv[a y/identity_w]",
		"HardSigmoid[y/identity]",
		"Mul[a y/hardsigmoid]",
		"Conv[y a2/affine_w a2/affine_b]",
		"Relu[a2]",
	}, map[string][]float32{
		"y/identity_w": fill(1),
		"a2/affine_w":  fill(2),
		"a2/affine_b":  fill(0.5),
	})
}

// requireSimplified checks a simplified graph's nodes (in order) and the named constants, and
// that a second pass over it finds nothing to change.
func requireSimplified(t *testing.T, out []byte, wantOps []string, wantConsts map[string][]float32) {
	t.Helper()
	ops, consts := graphNodes(t, out)
	if !slices.Equal(ops, wantOps) {
		t.Errorf("nodes\n%q\nwant\n%q", ops, wantOps)
	}
	for name, want := range wantConsts {
		if got := consts[name]; !slices.Equal(got, want) {
			t.Errorf("constant %s = %v, want %v", name, got, want)
		}
	}
	if again, swapped2, hs2, folded2, err := simplifyGraph(out); err != nil || swapped2+hs2+folded2 != 0 || !bytes.Equal(again, out) {
		t.Errorf("a second pass swapped %d, rewrote %d, folded %d (err %v; output unchanged: %t), want nothing",
			swapped2, hs2, folded2, err, bytes.Equal(again, out))
	}
}

func TestSimplifyGraphMalformed(t *testing.T) {
	for _, b := range [][]byte{
		{0x3a, 0x05, 0x01},       // graph longer than the model
		{0xff},                   // truncated tag
		{0x3a, 0x02, 0x0a, 0x07}, // node longer than the graph
		{0x00},                   // field number 0
		{0x0b, 0x0c},             // a group
		{0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}, // varint overflow
		testModel()[:40],
	} {
		if _, _, _, _, err := simplifyGraph(b); !errors.Is(err, errProto) {
			t.Errorf("simplifyGraph(%x) = %v, want a malformed-protobuf error", b, err)
		}
	}
	if out, _, _, _, err := simplifyGraph(nil); err != nil || len(out) != 0 {
		t.Errorf("simplifyGraph(nil) = %x, %v; want it back unchanged", out, err)
	}
}

// FuzzSimplifyGraph checks that no input makes the rewrite panic, that what it cannot read is a
// malformed-protobuf error, and that a rewritten model is a fixed point: a second pass reads it
// and changes nothing.
func FuzzSimplifyGraph(f *testing.F) {
	model := testModel()
	f.Add(model)
	f.Add(testModelBlocked())
	for _, n := range []int{1, 2, 10, len(model) / 2, len(model) - 1} {
		f.Add(model[:n])
	}
	garbled := slices.Clone(model)
	garbled[len(garbled)/3] ^= 0xff
	f.Add(garbled)
	f.Add([]byte{})
	f.Add([]byte{0x3a, 0x05, 0x01})
	f.Add([]byte{0x3a, 0x02, 0x0a, 0x07})
	f.Fuzz(func(t *testing.T, b []byte) {
		out, _, _, _, err := simplifyGraph(b)
		if err != nil {
			if !errors.Is(err, errProto) {
				t.Fatalf("error %v is not a malformed-protobuf error", err)
			}
			return
		}
		again, swapped, hs, folded, err := simplifyGraph(out)
		if err != nil {
			t.Fatalf("the rewritten model does not read back: %v", err)
		}
		if swapped != 0 || hs != 0 || folded != 0 || !bytes.Equal(again, out) {
			t.Fatalf("a second pass swapped %d, rewrote %d, folded %d (output unchanged: %t), want nothing",
				swapped, hs, folded, bytes.Equal(again, out))
		}
	})
}
