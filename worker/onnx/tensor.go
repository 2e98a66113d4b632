package onnx

import (
	"fmt"
	"strings"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/sparecycles/sparecycles/nips/tensor"
)

// Element types a Tensor can carry, named as in numpy: those of the wire format.
const (
	Float32 = tensor.Float32
	Float64 = tensor.Float64
	Int8    = tensor.Int8
	Uint8   = tensor.Uint8
	Int32   = tensor.Int32
	Int64   = tensor.Int64
	Bool    = tensor.Bool
)

// TensorInfo describes one model input or output as the model declares it. DType is an
// element type name ("float32", "int64", ...; types a Tensor cannot carry show as their ONNX
// name, e.g. "float16"); Shape has -1 for each dynamic dimension.
type TensorInfo struct {
	Name  string
	DType string
	Shape []int64
}

// String returns e.g. `x float32[-1 3 -1 -1]`.
func (ti TensorInfo) String() string { return fmt.Sprintf("%s %s%v", ti.Name, ti.DType, ti.Shape) }

// Tensor is a named, typed, dense row-major array: the type of the kind 5800 wire format
// (nips/tensor), so job inputs run without copying. Exactly one data slice is set: the one
// DType names, holding the product of Shape elements. Run does not keep or modify the slices
// of its inputs; its outputs are fresh Go memory.
type Tensor = tensor.Tensor

// carried lists the element types whose slices are non-nil.
func carried(t *Tensor) []string {
	var have []string
	for _, s := range []struct {
		dtype string
		set   bool
	}{
		{Float32, t.Float32 != nil}, {Float64, t.Float64 != nil}, {Int8, t.Int8 != nil},
		{Uint8, t.Uint8 != nil}, {Int32, t.Int32 != nil}, {Int64, t.Int64 != nil}, {Bool, t.Bool != nil},
	} {
		if s.set {
			have = append(have, s.dtype)
		}
	}
	return have
}

// value wraps t's data, without copying, in an ONNX Runtime tensor that the caller destroys.
func valueOf(t *Tensor) (ort.Value, error) {
	shape := ort.NewShape(t.Shape...)
	switch t.DType {
	case Float32:
		return ort.NewTensor(shape, t.Float32)
	case Float64:
		return ort.NewTensor(shape, t.Float64)
	case Int8:
		return ort.NewTensor(shape, t.Int8)
	case Uint8:
		return ort.NewTensor(shape, t.Uint8)
	case Int32:
		return ort.NewTensor(shape, t.Int32)
	case Int64:
		return ort.NewTensor(shape, t.Int64)
	case Bool:
		return ort.NewTensor(shape, t.Bool)
	}
	return nil, fmt.Errorf("%w: %q is not an element type a Tensor carries", ErrDType, t.DType)
}

// tensorFrom turns an output that ONNX Runtime allocated into a Tensor. onnxruntime_go has
// already copied the data into Go memory, so the slice outlives v.Destroy.
func tensorFrom(name string, v ort.Value) (Tensor, error) {
	t := Tensor{Name: name, Shape: []int64(v.GetShape().Clone())}
	switch v := v.(type) {
	case *ort.Tensor[float32]:
		t.DType, t.Float32 = Float32, v.GetData()
	case *ort.Tensor[float64]:
		t.DType, t.Float64 = Float64, v.GetData()
	case *ort.Tensor[int8]:
		t.DType, t.Int8 = Int8, v.GetData()
	case *ort.Tensor[uint8]:
		t.DType, t.Uint8 = Uint8, v.GetData()
	case *ort.Tensor[int32]:
		t.DType, t.Int32 = Int32, v.GetData()
	case *ort.Tensor[int64]:
		t.DType, t.Int64 = Int64, v.GetData()
	case *ort.Tensor[bool]:
		t.DType, t.Bool = Bool, v.GetData()
	default:
		return Tensor{}, fmt.Errorf("onnx: output %q: unsupported value type %T", name, v)
	}
	return t, nil
}

// dtypeName names an ONNX element type the way TensorInfo.DType does.
func dtypeName(dt ort.TensorElementDataType) string {
	switch dt {
	case ort.TensorElementDataTypeFloat:
		return Float32
	case ort.TensorElementDataTypeDouble:
		return Float64
	case ort.TensorElementDataTypeInt8:
		return Int8
	case ort.TensorElementDataTypeUint8:
		return Uint8
	case ort.TensorElementDataTypeInt32:
		return Int32
	case ort.TensorElementDataTypeInt64:
		return Int64
	case ort.TensorElementDataTypeBool:
		return Bool
	}
	return strings.ToLower(strings.TrimPrefix(dt.String(), "ONNX_TENSOR_ELEMENT_DATA_TYPE_"))
}
