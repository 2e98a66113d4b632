// Package tensor is the wire format of sparecycles' raw tensor inference job (spec:
// nips/tensor.md): a NIP-90 request of kind 5800 names an ONNX model by sha256 or announced
// name and carries input tensors as JSON; the kind 6800 result carries the output tensors.
//
// A tensor on the wire is {"name", "dtype", "shape", "data"}: data is the flat row-major list of
// elements. Float elements that JSON cannot write are the strings "NaN", "Infinity" and
// "-Infinity".
package tensor

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
)

// Job kinds of the extension.
const (
	KindRequest = 5800
	KindResult  = 6800
)

// ParamModel is the request param naming the model: its sha256 (hex) or announced name.
const ParamModel = "model"

// Element types, named as in numpy.
const (
	Float32 = "float32"
	Float64 = "float64"
	Int8    = "int8"
	Uint8   = "uint8"
	Int32   = "int32"
	Int64   = "int64"
	Bool    = "bool"
)

// Sentinel errors; parse errors wrap ErrInvalid with the tensor and the reason.
var (
	ErrInvalid  = errors.New("tensor: invalid tensor document")
	ErrTooLarge = errors.New("tensor: over the size limit")
)

// Tensor is a named, typed, dense row-major array. Exactly one data slice is set: the one
// DType names.
type Tensor struct {
	Name  string
	DType string
	Shape []int64

	Float32 []float32
	Float64 []float64
	Int8    []int8
	Uint8   []uint8
	Int32   []int32
	Int64   []int64
	Bool    []bool
}

// Limits bound what ParseInputs accepts.
type Limits struct {
	MaxTensors  int // tensors in one document
	MaxElements int // elements across all tensors
}

// Inputs is the request's input document.
type Inputs struct {
	Inputs []Tensor `json:"inputs"`
}

// Outputs is the result's content.
type Outputs struct {
	Model    string   `json:"model"`    // sha256 of the model file that ran
	Provider string   `json:"provider"` // ONNX Runtime execution provider, e.g. CPUExecutionProvider
	Outputs  []Tensor `json:"outputs"`
}

// wire is a Tensor as JSON.
type wire struct {
	Name  string            `json:"name"`
	DType string            `json:"dtype"`
	Shape []int64           `json:"shape"`
	Data  []json.RawMessage `json:"data"`
}

// Elements is the product of the shape, or -1 when a dimension is negative or it overflows.
func Elements(shape []int64) int64 {
	n := int64(1)
	for _, d := range shape {
		if d < 0 || (d > 0 && n > math.MaxInt64/d) {
			return -1
		}
		n *= d
	}
	return n
}

// ParseInputs decodes and checks an input document: known dtypes, non-negative shapes, data
// length equal to the shape's product, values in range for their dtype, unique names, and the
// limits.
func ParseInputs(data []byte, lim Limits) ([]Tensor, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var doc struct {
		Inputs []json.RawMessage `json:"inputs"`
	}
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: trailing data after the document", ErrInvalid)
	}
	if len(doc.Inputs) == 0 {
		return nil, fmt.Errorf("%w: no inputs", ErrInvalid)
	}
	if lim.MaxTensors > 0 && len(doc.Inputs) > lim.MaxTensors {
		return nil, fmt.Errorf("%w: %d tensors, at most %d", ErrTooLarge, len(doc.Inputs), lim.MaxTensors)
	}
	out := make([]Tensor, 0, len(doc.Inputs))
	seen := map[string]bool{}
	total := 0
	for i, raw := range doc.Inputs {
		var t Tensor
		if err := t.UnmarshalJSON(raw); err != nil {
			return nil, fmt.Errorf("input #%d: %w", i, err)
		}
		if t.Name == "" {
			return nil, fmt.Errorf("%w: input #%d has no name", ErrInvalid, i)
		}
		if seen[t.Name] {
			return nil, fmt.Errorf("%w: input %q given twice", ErrInvalid, t.Name)
		}
		seen[t.Name] = true
		total += t.Len()
		if lim.MaxElements > 0 && total > lim.MaxElements {
			return nil, fmt.Errorf("%w: more than %d elements in all", ErrTooLarge, lim.MaxElements)
		}
		out = append(out, t)
	}
	return out, nil
}

// Len returns the number of elements in the slice DType names.
func (t *Tensor) Len() int {
	switch t.DType {
	case Float32:
		return len(t.Float32)
	case Float64:
		return len(t.Float64)
	case Int8:
		return len(t.Int8)
	case Uint8:
		return len(t.Uint8)
	case Int32:
		return len(t.Int32)
	case Int64:
		return len(t.Int64)
	case Bool:
		return len(t.Bool)
	}
	return 0
}

// UnmarshalJSON decodes and checks one tensor.
func (t *Tensor) UnmarshalJSON(b []byte) error {
	var w wire
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&w); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if w.Shape == nil {
		return fmt.Errorf("%w: tensor %q has no shape", ErrInvalid, w.Name)
	}
	n := Elements(w.Shape)
	if n < 0 {
		return fmt.Errorf("%w: tensor %q: shape %v has a negative dimension or is too large", ErrInvalid, w.Name, w.Shape)
	}
	if n != int64(len(w.Data)) {
		return fmt.Errorf("%w: tensor %q: shape %v holds %d elements, data has %d", ErrInvalid, w.Name, w.Shape, n, len(w.Data))
	}
	*t = Tensor{Name: w.Name, DType: w.DType, Shape: w.Shape}
	bad := func(i int, why string) error {
		return fmt.Errorf("%w: tensor %q: data[%d] %s is not %s", ErrInvalid, w.Name, i, w.Data[i], why)
	}
	var err error
	switch w.DType {
	case Float32:
		t.Float32 = make([]float32, n)
		for i, r := range w.Data {
			f, ok := parseFloat(r)
			if !ok || (!math.IsInf(f, 0) && math.Abs(f) > math.MaxFloat32) {
				return bad(i, "a float32")
			}
			t.Float32[i] = float32(f)
		}
	case Float64:
		t.Float64 = make([]float64, n)
		for i, r := range w.Data {
			f, ok := parseFloat(r)
			if !ok {
				return bad(i, "a float64")
			}
			t.Float64[i] = f
		}
	case Int8:
		t.Int8, err = parseInts(w.Data, math.MinInt8, math.MaxInt8, func(v int64) int8 { return int8(v) }, bad)
	case Uint8:
		t.Uint8, err = parseInts(w.Data, 0, math.MaxUint8, func(v int64) uint8 { return uint8(v) }, bad)
	case Int32:
		t.Int32, err = parseInts(w.Data, math.MinInt32, math.MaxInt32, func(v int64) int32 { return int32(v) }, bad)
	case Int64:
		t.Int64, err = parseInts(w.Data, math.MinInt64, math.MaxInt64, func(v int64) int64 { return v }, bad)
	case Bool:
		t.Bool = make([]bool, n)
		for i, r := range w.Data {
			switch string(r) {
			case "true":
				t.Bool[i] = true
			case "false":
			default:
				return bad(i, "true or false")
			}
		}
	default:
		return fmt.Errorf("%w: tensor %q: dtype %q is not one of float32, float64, int8, uint8, int32, int64, bool", ErrInvalid, w.Name, w.DType)
	}
	return err
}

func parseInts[T any](data []json.RawMessage, min, max int64, conv func(int64) T, bad func(int, string) error) ([]T, error) {
	out := make([]T, len(data))
	for i, r := range data {
		v, err := strconv.ParseInt(string(r), 10, 64)
		if err != nil || v < min || v > max {
			return nil, bad(i, fmt.Sprintf("an integer in %d..%d", min, max))
		}
		out[i] = conv(v)
	}
	return out, nil
}

func parseFloat(r json.RawMessage) (float64, bool) {
	switch string(r) {
	case `"NaN"`:
		return math.NaN(), true
	case `"Infinity"`:
		return math.Inf(1), true
	case `"-Infinity"`:
		return math.Inf(-1), true
	}
	if len(r) == 0 || r[0] == '"' {
		return 0, false
	}
	f, err := strconv.ParseFloat(string(r), 64)
	return f, err == nil
}

// MarshalJSON writes the tensor in wire form.
func (t Tensor) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(`{"name":`)
	name, _ := json.Marshal(t.Name)
	b.Write(name)
	fmt.Fprintf(&b, `,"dtype":%q,"shape":`, t.DType)
	shape := t.Shape
	if shape == nil {
		shape = []int64{}
	}
	sb, _ := json.Marshal(shape)
	b.Write(sb)
	b.WriteString(`,"data":[`)
	n := t.Len()
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		switch t.DType {
		case Float32:
			writeFloat(&b, float64(t.Float32[i]), 32)
		case Float64:
			writeFloat(&b, t.Float64[i], 64)
		case Int8:
			b.WriteString(strconv.FormatInt(int64(t.Int8[i]), 10))
		case Uint8:
			b.WriteString(strconv.FormatInt(int64(t.Uint8[i]), 10))
		case Int32:
			b.WriteString(strconv.FormatInt(int64(t.Int32[i]), 10))
		case Int64:
			b.WriteString(strconv.FormatInt(t.Int64[i], 10))
		case Bool:
			b.WriteString(strconv.FormatBool(t.Bool[i]))
		}
	}
	b.WriteString("]}")
	return b.Bytes(), nil
}

func writeFloat(b *bytes.Buffer, f float64, bits int) {
	switch {
	case math.IsNaN(f):
		b.WriteString(`"NaN"`)
	case math.IsInf(f, 1):
		b.WriteString(`"Infinity"`)
	case math.IsInf(f, -1):
		b.WriteString(`"-Infinity"`)
	default:
		b.WriteString(strconv.FormatFloat(f, 'g', -1, bits))
	}
}
