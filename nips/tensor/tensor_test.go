package tensor

import (
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"testing"
)

var parseTests = []struct {
	name    string
	in      string
	want    []Tensor
	wantErr error
}{
	{"float32", `{"inputs":[{"name":"x","dtype":"float32","shape":[2,2],"data":[1,2.5,-3,"NaN"]}]}`,
		[]Tensor{{Name: "x", DType: Float32, Shape: []int64{2, 2}, Float32: []float32{1, 2.5, -3, float32(math.NaN())}}}, nil},
	{"int64 exact", `{"inputs":[{"name":"ids","dtype":"int64","shape":[2],"data":[9007199254740993,-1]}]}`,
		[]Tensor{{Name: "ids", DType: Int64, Shape: []int64{2}, Int64: []int64{9007199254740993, -1}}}, nil},
	{"two tensors", `{"inputs":[{"name":"a","dtype":"uint8","shape":[1],"data":[255]},{"name":"b","dtype":"bool","shape":[],"data":[true]}]}`,
		[]Tensor{{Name: "a", DType: Uint8, Shape: []int64{1}, Uint8: []uint8{255}}, {Name: "b", DType: Bool, Shape: []int64{}, Bool: []bool{true}}}, nil},
	{"empty tensor", `{"inputs":[{"name":"e","dtype":"float64","shape":[0,3],"data":[]}]}`,
		[]Tensor{{Name: "e", DType: Float64, Shape: []int64{0, 3}, Float64: []float64{}}}, nil},
	{"not json", `{"inputs":`, nil, ErrInvalid},
	{"no inputs", `{"inputs":[]}`, nil, ErrInvalid},
	{"unknown field", `{"inputs":[{"name":"x","dtype":"float32","shape":[1],"data":[1],"scale":2}]}`, nil, ErrInvalid},
	{"short data", `{"inputs":[{"name":"x","dtype":"float32","shape":[2,2],"data":[1,2,3]}]}`, nil, ErrInvalid},
	{"negative dim", `{"inputs":[{"name":"x","dtype":"float32","shape":[-1],"data":[]}]}`, nil, ErrInvalid},
	{"no shape", `{"inputs":[{"name":"x","dtype":"float32","data":[1]}]}`, nil, ErrInvalid},
	{"unknown dtype", `{"inputs":[{"name":"x","dtype":"float16","shape":[1],"data":[1]}]}`, nil, ErrInvalid},
	{"uint8 overflow", `{"inputs":[{"name":"x","dtype":"uint8","shape":[1],"data":[256]}]}`, nil, ErrInvalid},
	{"int32 fraction", `{"inputs":[{"name":"x","dtype":"int32","shape":[1],"data":[1.5]}]}`, nil, ErrInvalid},
	{"float32 overflow", `{"inputs":[{"name":"x","dtype":"float32","shape":[1],"data":[1e39]}]}`, nil, ErrInvalid},
	{"string element", `{"inputs":[{"name":"x","dtype":"float32","shape":[1],"data":["1"]}]}`, nil, ErrInvalid},
	{"bool as number", `{"inputs":[{"name":"x","dtype":"bool","shape":[1],"data":[1]}]}`, nil, ErrInvalid},
	{"unnamed", `{"inputs":[{"dtype":"bool","shape":[1],"data":[true]}]}`, nil, ErrInvalid},
	{"duplicate name", `{"inputs":[{"name":"x","dtype":"bool","shape":[1],"data":[true]},{"name":"x","dtype":"bool","shape":[1],"data":[true]}]}`, nil, ErrInvalid},
	{"too many elements", `{"inputs":[{"name":"x","dtype":"uint8","shape":[5],"data":[1,2,3,4,5]}]}`, nil, ErrTooLarge},
	{"trailing", `{"inputs":[{"name":"x","dtype":"bool","shape":[1],"data":[true]}]} {}`, nil, ErrInvalid},
}

var testLimits = Limits{MaxTensors: 4, MaxElements: 4}

func TestParseInputs(t *testing.T) {
	for _, tc := range parseTests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseInputs([]byte(tc.in), testLimits)
			if !errors.Is(err, tc.wantErr) || (err == nil) != (tc.wantErr == nil) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if err != nil {
				return
			}
			if !equalNaN(got, tc.want) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestOutputsRoundTrip(t *testing.T) {
	out := Outputs{Model: "abc", Provider: "CPUExecutionProvider", Outputs: []Tensor{
		{Name: "y", DType: Float32, Shape: []int64{3}, Float32: []float32{0.1, float32(math.Inf(1)), 3e-40}},
		{Name: "k", DType: Int32, Shape: []int64{1}, Int32: []int32{-7}},
	}}
	b, err := json.Marshal(out)
	if err != nil {
		t.Fatal(err)
	}
	var back Outputs
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	if !reflect.DeepEqual(back, out) {
		t.Fatalf("round trip changed the outputs:\n%s\n%+v", b, back)
	}
}

func equalNaN(a, b []Tensor) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}

func FuzzParseInputs(f *testing.F) {
	for _, tc := range parseTests {
		f.Add([]byte(tc.in))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		ts, err := ParseInputs(raw, Limits{MaxTensors: 8, MaxElements: 1 << 16})
		if err != nil {
			return
		}
		b, err := json.Marshal(Inputs{Inputs: ts})
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		again, err := ParseInputs(b, Limits{MaxTensors: 8, MaxElements: 1 << 16})
		if err != nil || !equalNaN(again, ts) {
			t.Fatalf("round trip: %v\n%s", err, b)
		}
	})
}
