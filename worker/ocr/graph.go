package ocr

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"slices"

	"google.golang.org/protobuf/encoding/protowire"
)

// The PP-OCRv4 models, as Paddle2ONNX exported them, spell out every hard-swish as four ops
// (Add 3, Clip 0–6, Mul, Div 6) and put the constant of each scalar Mul and Add first. ONNX
// Runtime fuses neither: about half of a run went to these elementwise ops and to the layout
// reorders around them. simplifyGraph rewrites the graph, losslessly up to float rounding:
//
//   - Mul and Add with a constant first operand get their operands swapped, so ONNX
//     Runtime's Conv+Mul and Conv+Add fusions fold the scalar affine steps into the
//     convolutions;
//   - each hard-swish becomes x·HardSigmoid(x) with α = 1/6, β = 1/2: two ops, not four;
//     where x has a multiple of 16 channels, the HardSigmoid reads x through an identity
//     depthwise 1×1 Conv, which ONNX Runtime fuses it into: its blocked (NCHWc) layout takes
//     Conv with a fused activation and the Mul of two blocked tensors, not a HardSigmoid
//     alone, so without the Conv every hard-swish went back to NCHW and the next Conv reordered
//     it again (a fifth of the recogniser's time went to those reorders and elementwise ops);
//   - a scalar affine step (Mul c, Add d) that does not fold into the 1×1 Conv it feeds (it
//     feeds a padded one: the zero padding would not see d) becomes a depthwise 1×1 Conv with
//     weights c and bias d, for the same reason.
//
// It works on the protobuf wire format directly, through protowire (the few fields of
// ModelProto, GraphProto, NodeProto, AttributeProto and TensorProto it needs), and copies
// everything else verbatim.

// pbField is one protobuf field, as protowire reads and writes it: its number, wire type and
// value (v for a varint or a fixed-size field, data for a length-delimited one).
type pbField struct {
	num  protowire.Number
	typ  protowire.Type
	v    uint64
	data []byte
}

var errProto = errors.New("malformed protobuf")

// pbParse splits a message into its fields. Groups, which ONNX does not use, are malformed.
func pbParse(b []byte) ([]pbField, error) {
	var out []pbField
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, fmt.Errorf("%w: %w", errProto, protowire.ParseError(n))
		}
		b = b[n:]
		f := pbField{num: num, typ: typ}
		switch typ {
		case protowire.VarintType:
			f.v, n = protowire.ConsumeVarint(b)
		case protowire.Fixed32Type:
			var v uint32
			v, n = protowire.ConsumeFixed32(b)
			f.v = uint64(v)
		case protowire.Fixed64Type:
			f.v, n = protowire.ConsumeFixed64(b)
		case protowire.BytesType:
			f.data, n = protowire.ConsumeBytes(b)
		default:
			return nil, fmt.Errorf("%w: field %d has wire type %d", errProto, num, typ)
		}
		if n < 0 {
			return nil, fmt.Errorf("%w: field %d: %w", errProto, num, protowire.ParseError(n))
		}
		b = b[n:]
		out = append(out, f)
	}
	return out, nil
}

func pbAppend(dst []byte, fs ...pbField) []byte {
	for _, f := range fs {
		dst = protowire.AppendTag(dst, f.num, f.typ)
		switch f.typ {
		case protowire.VarintType:
			dst = protowire.AppendVarint(dst, f.v)
		case protowire.Fixed32Type:
			dst = protowire.AppendFixed32(dst, uint32(f.v))
		case protowire.Fixed64Type:
			dst = protowire.AppendFixed64(dst, f.v)
		case protowire.BytesType:
			dst = protowire.AppendBytes(dst, f.data)
		}
	}
	return dst
}

// pbVarints returns the values of one entry of a repeated integer field: a varint, or a packed
// run of them.
func pbVarints(f pbField) ([]uint64, bool) {
	if f.typ == protowire.VarintType {
		return []uint64{f.v}, true
	}
	if f.typ != protowire.BytesType {
		return nil, false
	}
	var vs []uint64
	for b := f.data; len(b) > 0; {
		v, n := protowire.ConsumeVarint(b)
		if n < 0 {
			return nil, false
		}
		vs, b = append(vs, v), b[n:]
	}
	return vs, true
}

// pbFloats returns the values of one entry of a repeated float field: a fixed32, or a packed
// run of them.
func pbFloats(f pbField) ([]float32, bool) {
	if f.typ == protowire.Fixed32Type {
		return []float32{math.Float32frombits(uint32(f.v))}, true
	}
	if f.typ != protowire.BytesType {
		return nil, false
	}
	var vs []float32
	for b := f.data; len(b) > 0; {
		v, n := protowire.ConsumeFixed32(b)
		if n < 0 {
			return nil, false
		}
		vs, b = append(vs, math.Float32frombits(v)), b[n:]
	}
	return vs, true
}

// rawFloats returns the values in a TensorProto's raw_data: float32s, little-endian.
func rawFloats(b []byte) []float32 {
	var vs []float32
	for i := 0; i+4 <= len(b); i += 4 {
		vs = append(vs, math.Float32frombits(binary.LittleEndian.Uint32(b[i:])))
	}
	return vs
}

func pbString(num protowire.Number, s string) pbField {
	return pbField{num: num, typ: protowire.BytesType, data: []byte(s)}
}

// Field numbers in onnx.proto.
const (
	modelGraph   = 7
	graphNode    = 1
	graphOutput  = 12
	nodeInput    = 1
	nodeOutput   = 2
	nodeName     = 3
	nodeOpType   = 4
	nodeAttr     = 5
	nodeDomain   = 7
	attrName     = 1
	attrF        = 2
	attrS        = 4
	attrT        = 5
	attrInts     = 8
	attrType     = 20
	attrTypeF    = 1
	tensorDims   = 1
	tensorType   = 2
	tensorFloats = 4
	tensorName   = 8
	tensorRaw    = 9
	tensorFloat  = 1 // TensorProto.FLOAT
	valueName    = 1
)

// onnxNode is a NodeProto: the fields the rewrite reads, and all of them to write it back.
type onnxNode struct {
	fields  []pbField
	op      string
	domain  string
	inputs  []string
	outputs []string
	attrs   map[string][]pbField // AttributeProto fields by attribute name
	removed bool
}

func parseNode(b []byte) (*onnxNode, error) {
	fs, err := pbParse(b)
	if err != nil {
		return nil, err
	}
	n := &onnxNode{fields: fs, attrs: map[string][]pbField{}}
	for _, f := range fs {
		switch {
		case f.typ != protowire.BytesType:
		case f.num == nodeInput:
			n.inputs = append(n.inputs, string(f.data))
		case f.num == nodeOutput:
			n.outputs = append(n.outputs, string(f.data))
		case f.num == nodeOpType:
			n.op = string(f.data)
		case f.num == nodeDomain:
			n.domain = string(f.data)
		case f.num == nodeAttr:
			afs, err := pbParse(f.data)
			if err != nil {
				return nil, err
			}
			for _, a := range afs {
				if a.num == attrName && a.typ == protowire.BytesType {
					n.attrs[string(a.data)] = afs
				}
			}
		}
	}
	return n, nil
}

// encode writes the node back, with its inputs as they are now.
func (n *onnxNode) encode() []byte {
	var out []byte
	for _, in := range n.inputs {
		out = pbAppend(out, pbString(nodeInput, in))
	}
	for _, f := range n.fields {
		if f.num != nodeInput || f.typ != protowire.BytesType {
			out = pbAppend(out, f)
		}
	}
	return out
}

// newNode builds a node in the default domain with float attributes.
func newNode(op, name string, inputs, outputs []string, floatAttrs map[string]float32) *onnxNode {
	var fs []pbField
	for _, s := range inputs {
		fs = append(fs, pbString(nodeInput, s))
	}
	for _, s := range outputs {
		fs = append(fs, pbString(nodeOutput, s))
	}
	fs = append(fs, pbString(nodeName, name), pbString(nodeOpType, op))
	for _, k := range []string{"alpha", "beta"} { // a fixed order: the output is deterministic
		v, ok := floatAttrs[k]
		if !ok {
			continue
		}
		f := pbField{num: attrF, typ: protowire.Fixed32Type, v: uint64(math.Float32bits(v))}
		attr := pbAppend(nil, pbString(attrName, k), f, pbField{num: attrType, typ: protowire.VarintType, v: attrTypeF})
		fs = append(fs, pbField{num: nodeAttr, typ: protowire.BytesType, data: attr})
	}
	return &onnxNode{fields: fs, op: op, inputs: inputs, outputs: outputs}
}

// feedsScalarStep says whether a Mul or Add of nodes applies a scalar to v.
func feedsScalarStep(nodes []*onnxNode, v string, scalars map[string]float32) bool {
	for _, n := range nodes {
		if (n.op == "Mul" || n.op == "Add") && n.domain == "" && !n.removed && len(n.inputs) == 2 && n.inputs[0] == v {
			if _, ok := scalars[n.inputs[1]]; ok {
				return true
			}
		}
	}
	return false
}

// depthwiseConv builds a 1×1 Conv node with one filter per channel: out = w·x (+ b), for x
// with c channels and the constant w of shape [c, 1, 1, 1] (b, of shape [c], may be "").
func depthwiseConv(out, x, w, b string, c int64) *onnxNode {
	inputs := []string{x, w}
	if b != "" {
		inputs = append(inputs, b)
	}
	const attrI, attrTypeInt = 3, 2
	group := pbAppend(nil, pbString(attrName, "group"), pbField{num: attrI, typ: protowire.VarintType, v: uint64(c)},
		pbField{num: attrType, typ: protowire.VarintType, v: attrTypeInt})
	n := newNode("Conv", out, inputs, []string{out}, nil)
	n.fields = append(n.fields, pbField{num: nodeAttr, typ: protowire.BytesType, data: group})
	return n
}

// scalarTensor returns the value of a TensorProto holding one float32.
func scalarTensor(b []byte) (float32, bool) {
	fs, err := pbParse(b)
	if err != nil {
		return 0, false
	}
	elems, dtype := 1, uint64(0)
	var vals []float32
	for _, f := range fs {
		switch {
		case f.num == tensorDims:
			ds, ok := pbVarints(f)
			if !ok {
				return 0, false
			}
			for _, d := range ds {
				elems *= int(d)
			}
		case f.num == tensorType && f.typ == protowire.VarintType:
			dtype = f.v
		case f.num == tensorRaw && f.typ == protowire.BytesType:
			vals = append(vals, rawFloats(f.data)...)
		case f.num == tensorFloats:
			vs, ok := pbFloats(f)
			if !ok {
				return 0, false
			}
			vals = append(vals, vs...)
		case f.num >= 3 && f.num <= 11 && f.num != tensorName:
			return 0, false // another data field, or segment etc.
		}
	}
	if dtype != tensorFloat || elems != 1 || len(vals) != 1 {
		return 0, false
	}
	return vals[0], true
}

// simplify is simplifyGraph as a session rewrite. Set SPARECYCLES_OCR_RAW_GRAPH=1 to load the
// models as they are (to compare).
func simplify(model []byte) ([]byte, error) {
	if os.Getenv("SPARECYCLES_OCR_RAW_GRAPH") == "1" {
		return model, nil
	}
	out, _, _, _, err := simplifyGraph(model)
	return out, err
}

// simplifyGraph applies the rewrites above to a serialised ModelProto and says how many of
// each it made. A model it does not understand comes back unchanged.
func simplifyGraph(model []byte) (out []byte, swapped, hardSwishes, folded int, err error) {
	mfs, err := pbParse(model)
	if err != nil {
		return nil, 0, 0, 0, fmt.Errorf("model: %w", err)
	}
	gi := -1
	for i, f := range mfs {
		if f.num == modelGraph && f.typ == protowire.BytesType {
			gi = i
		}
	}
	if gi < 0 {
		return model, 0, 0, 0, nil
	}
	gfs, err := pbParse(mfs[gi].data)
	if err != nil {
		return nil, 0, 0, 0, fmt.Errorf("graph: %w", err)
	}

	var nodes []*onnxNode
	uses := map[string]int{}      // how many node inputs and graph outputs read each value
	consts := map[string]string{} // outputs of Constant nodes, and their value if a float scalar
	scalars := map[string]float32{}
	dims := map[string][]int64{}
	floatTensors := map[string][]float32{}
	producer := map[string]*onnxNode{}
	for _, f := range gfs {
		switch {
		case f.num == graphNode && f.typ == protowire.BytesType:
			n, err := parseNode(f.data)
			if err != nil {
				return nil, 0, 0, 0, fmt.Errorf("node: %w", err)
			}
			nodes = append(nodes, n)
			for _, in := range n.inputs {
				uses[in]++
			}
			for _, o := range n.outputs {
				producer[o] = n
			}
			if n.op == "Constant" && n.domain == "" && len(n.outputs) == 1 {
				consts[n.outputs[0]] = ""
				for _, a := range n.attrs["value"] {
					if a.num == attrT && a.typ == protowire.BytesType {
						if v, ok := scalarTensor(a.data); ok {
							scalars[n.outputs[0]] = v
						}
						dims[n.outputs[0]] = tensorShape(a.data)
						floatTensors[n.outputs[0]] = tensorFloat32s(a.data)
					}
				}
			}
		case f.num == graphOutput && f.typ == protowire.BytesType:
			vfs, err := pbParse(f.data)
			if err != nil {
				return nil, 0, 0, 0, fmt.Errorf("graph output: %w", err)
			}
			for _, v := range vfs {
				if v.num == valueName && v.typ == protowire.BytesType {
					uses[string(v.data)] += 2 // never fold a graph output away
				}
			}
		}
	}
	isConst := func(name string) bool { _, ok := consts[name]; return ok }
	scalarIs := func(name string, want float32) bool { v, ok := scalars[name]; return ok && v == want }

	// Operands first, so the hard-swish match below sees Add(x, 3). A one-element constant
	// applied to a convolution's output (4-d) becomes a true scalar, the only shape besides
	// per-channel that ONNX Runtime folds into the convolution.
	var scalarNodes []*onnxNode
	made := map[string]string{}
	for _, n := range nodes {
		if (n.op != "Mul" && n.op != "Add") || n.domain != "" || len(n.inputs) != 2 {
			continue
		}
		if isConst(n.inputs[0]) && !isConst(n.inputs[1]) {
			n.inputs[0], n.inputs[1] = n.inputs[1], n.inputs[0]
			swapped++
		}
		v, ok := scalars[n.inputs[1]]
		p := producer[n.inputs[0]]
		if p != nil && n.op == "Add" && p.op == "Mul" && p.domain == "" && len(p.inputs) == 2 && uses[p.outputs[0]] == 1 {
			if _, ok := scalars[p.inputs[1]]; ok {
				p = producer[p.inputs[0]] // Conv, Mul(scalar), Add: the Mul folds first
			}
		}
		if !ok || p == nil || p.op != "Conv" || p.domain != "" || len(p.inputs) < 2 {
			continue
		}
		shape := []int64{} // Mul: a scalar
		if n.op == "Add" { // Add: per channel
			w := dims[p.inputs[1]]
			if len(w) != 4 || w[0] <= 0 || w[0] > int64(len(floatTensors[p.inputs[1]])) { // no more channels than weights
				continue
			}
			shape = []int64{w[0], 1, 1}
		}
		if d, ok := dims[n.inputs[1]]; ok && slices.Equal(d, shape) {
			continue // already that shape: a model this rewrote, say
		}
		key := fmt.Sprint(n.inputs[1], shape)
		name, ok := made[key]
		if !ok {
			name = fmt.Sprintf("%s/%v", n.inputs[1], shape)
			if producer[name] != nil {
				continue
			}
			made[key] = name
			scalars[name] = v
			scalarNodes = append(scalarNodes, filledConstant(name, v, shape))
		}
		n.inputs[1] = name
	}

	// Hard-swish: a = Add(x, 3); c = Clip(a, 0, 6); m = Mul(x, c) or Mul(c, x); y = Div(m, 6).
	consumer := map[string]*onnxNode{} // the only consumer of values read exactly once
	for _, n := range nodes {
		for _, in := range n.inputs {
			if uses[in] == 1 {
				consumer[in] = n
			}
		}
	}
	// channels returns the channel count of a value that a convolution made (through batch
	// norms, activations, scalar or hard-swish steps), 0 when unknown.
	var channels func(name string, depth int) int64
	channels = func(name string, depth int) int64 {
		p := producer[name]
		if p == nil || p.domain != "" || len(p.inputs) == 0 || depth > 16 {
			return 0
		}
		switch p.op {
		case "Conv":
			if w := dims[p.inputs[1]]; len(w) == 4 {
				return w[0]
			}
		case "BatchNormalization", "Relu", "HardSigmoid", "Sigmoid", "Clip":
			return channels(p.inputs[0], depth+1)
		case "Mul", "Add":
			if len(p.inputs) != 2 {
				return 0
			}
			if _, ok := scalars[p.inputs[1]]; ok {
				return channels(p.inputs[0], depth+1)
			}
			if c := channels(p.inputs[0], depth+1); c > 0 && c == channels(p.inputs[1], depth+1) {
				return c
			}
		}
		return 0
	}
	// nchwc says whether ONNX Runtime's blocked (NCHWc) layout takes c channels: a multiple of
	// the widest block, 16 floats (AVX-512; 8 on AVX2).
	nchwc := func(c int64) bool { return c > 0 && c%16 == 0 }

	var extra = map[*onnxNode][]*onnxNode{} // nodes to emit just before a node (a replaced Div's HardSigmoid)
	for _, add := range nodes {
		if add.op != "Add" || add.domain != "" || len(add.inputs) != 2 || len(add.outputs) != 1 || !scalarIs(add.inputs[1], 3) {
			continue
		}
		x := add.inputs[0]
		if isConst(x) {
			continue // ONNX Runtime folds a constant's hard-swish away
		}
		clip := consumer[add.outputs[0]]
		if clip == nil || clip.op != "Clip" || clip.domain != "" || len(clip.outputs) != 1 || !clipIs06(clip, scalarIs) {
			continue
		}
		mul := consumer[clip.outputs[0]]
		if mul == nil || mul.op != "Mul" || mul.domain != "" || len(mul.inputs) != 2 || len(mul.outputs) != 1 ||
			!(mul.inputs[0] == x && mul.inputs[1] == clip.outputs[0] || mul.inputs[1] == x && mul.inputs[0] == clip.outputs[0]) {
			continue
		}
		div := consumer[mul.outputs[0]]
		if div == nil || div.op != "Div" || div.domain != "" || len(div.inputs) != 2 || len(div.outputs) != 1 ||
			div.inputs[0] != mul.outputs[0] || !scalarIs(div.inputs[1], 6) {
			continue
		}
		y := div.outputs[0]
		hs := y + "/hardsigmoid"
		if producer[hs] != nil {
			continue
		}
		add.removed, clip.removed, mul.removed, div.removed = true, true, true, true
		if c := channels(x, 0); nchwc(c) {
			// HardSigmoid after an identity depthwise 1×1 convolution, which ONNX Runtime
			// fuses into one blocked-layout convolution: x, its hard sigmoid and their
			// product all stay in that layout, with no reorders around the activation.
			id, w := y+"/identity", y+"/identity_w"
			if producer[id] != nil || producer[w] != nil {
				continue
			}
			scalarNodes = append(scalarNodes, filledConstant(w, 1, []int64{c, 1, 1, 1}))
			dims[w] = []int64{c, 1, 1, 1}
			producer[id] = depthwiseConv(id, x, w, "", c)
			producer[hs] = newNode("HardSigmoid", hs, []string{id}, []string{hs}, map[string]float32{"alpha": 1.0 / 6, "beta": 0.5})
			extra[div] = []*onnxNode{producer[id], producer[hs]}
		} else {
			producer[hs] = newNode("HardSigmoid", hs, []string{x}, []string{hs}, map[string]float32{"alpha": 1.0 / 6, "beta": 0.5})
			extra[div] = []*onnxNode{producer[hs]}
		}
		*div = *newNode("Mul", y+"/hardswish", []string{x, hs}, []string{y}, nil)
		hardSwishes++
	}

	// affineStep reports whether add, with the Mul feeding it, is an affine step y = x·c + d of
	// scalars c and d whose Mul output nothing else reads, and returns that Mul, c and d.
	affineStep := func(add *onnxNode) (mul *onnxNode, c, d float32, ok bool) {
		if add == nil || add.op != "Add" || add.domain != "" || add.removed || len(add.inputs) != 2 || len(add.outputs) != 1 || uses[add.inputs[0]] != 1 {
			return nil, 0, 0, false
		}
		mul = producer[add.inputs[0]]
		if mul == nil || mul.op != "Mul" || mul.domain != "" || mul.removed || len(mul.inputs) != 2 {
			return nil, 0, 0, false
		}
		c, ok1 := scalars[mul.inputs[1]]
		d, ok2 := scalars[add.inputs[1]]
		return mul, c, d, ok1 && ok2
	}

	// An affine step (Mul c, Add d, scalars) feeding a 1×1 convolution without padding folds
	// into it: W' = c·W, b' = b + d·ΣW over each filter's inputs.
	for _, conv := range nodes {
		if conv.op != "Conv" || conv.domain != "" || conv.removed || len(conv.inputs) < 2 || len(conv.inputs) > 3 || len(conv.outputs) == 0 ||
			uses[conv.inputs[0]] != 1 {
			continue
		}
		add := producer[conv.inputs[0]]
		mul, c, d, ok := affineStep(add)
		w, wdims, ok3 := floatTensors[conv.inputs[1]], dims[conv.inputs[1]], len(floatTensors[conv.inputs[1]]) > 0
		if !ok || !ok3 || len(wdims) != 4 || wdims[2] != 1 || wdims[3] != 1 || !unpadded(conv) {
			continue
		}
		outC, inC := int(wdims[0]), int(wdims[1])
		if outC <= 0 || inC <= 0 || len(w)%outC != 0 || len(w)/outC != inC { // len(w) ≠ outC·inC, without overflow
			continue
		}
		b := make([]float32, outC)
		if len(conv.inputs) == 3 {
			if len(floatTensors[conv.inputs[2]]) != outC {
				continue
			}
			copy(b, floatTensors[conv.inputs[2]])
		}
		w2 := make([]float32, len(w))
		for o := range outC {
			var sum float64
			for i := range inC {
				sum += float64(w[o*inC+i])
				w2[o*inC+i] = c * w[o*inC+i]
			}
			b[o] = float32(float64(b[o]) + float64(d)*sum)
		}
		wName, bName := conv.outputs[0]+"/folded_w", conv.outputs[0]+"/folded_b"
		if producer[wName] != nil || producer[bName] != nil {
			continue
		}
		scalarNodes = append(scalarNodes, floatConstant(wName, w2, wdims), floatConstant(bName, b, []int64{int64(outC)}))
		dims[wName] = wdims
		conv.inputs = []string{mul.inputs[0], wName, bName}
		mul.removed, add.removed = true, true
		folded++
	}

	// An affine step (Mul c, Add d, scalars) on a convolution's output in blocked layout that
	// did not fold into a 1×1 convolution above (a padded one reads it: its zero padding
	// would not see d) becomes a depthwise 1×1 convolution with weights c and bias d: one
	// blocked-layout step where the Mul and Add each reordered the tensor back and forth.
	for _, add := range nodes {
		mul, c, d, ok := affineStep(add)
		if !ok {
			continue
		}
		ch := channels(mul.inputs[0], 0)
		if !nchwc(ch) {
			continue
		}
		if p := producer[mul.inputs[0]]; p == nil || p.op == "Conv" {
			continue // ONNX Runtime folds a convolution's own affine step into it
		}
		y := add.outputs[0]
		if feedsScalarStep(nodes, y, scalars) {
			continue // the operand pass above would fold it into the new Conv on a second run
		}
		wName, bName := y+"/affine_w", y+"/affine_b"
		if producer[wName] != nil || producer[bName] != nil {
			continue
		}
		scalarNodes = append(scalarNodes, filledConstant(wName, c, []int64{ch, 1, 1, 1}), filledConstant(bName, d, []int64{ch}))
		mul.removed = true
		*add = *depthwiseConv(y, mul.inputs[0], wName, bName, ch)
		folded++
	}

	// Write the graph back: nodes in their order (a HardSigmoid, and the identity
	// convolution feeding it, just before its Mul, which sits where the Div was, after x and
	// before every reader of y), the rest verbatim.
	var graph []byte
	ni := 0
	for _, f := range gfs {
		if f.num != graphNode || f.typ != protowire.BytesType {
			graph = pbAppend(graph, f)
			continue
		}
		if ni == 0 {
			for _, c := range scalarNodes {
				graph = pbAppend(graph, pbField{num: graphNode, typ: protowire.BytesType, data: c.encode()})
			}
		}
		n := nodes[ni]
		ni++
		for _, e := range extra[n] {
			graph = pbAppend(graph, pbField{num: graphNode, typ: protowire.BytesType, data: e.encode()})
		}
		if n.removed && extra[n] == nil {
			continue
		}
		graph = pbAppend(graph, pbField{num: graphNode, typ: protowire.BytesType, data: n.encode()})
	}
	for i := range mfs {
		if i == gi {
			out = pbAppend(out, pbField{num: modelGraph, typ: protowire.BytesType, data: graph})
		} else {
			out = pbAppend(out, mfs[i])
		}
	}
	return out, swapped, hardSwishes, folded, nil
}

// clipIs06 says whether a Clip node clips to [0, 6]: as attributes (opset < 11) or as
// constant inputs.
func clipIs06(n *onnxNode, scalarIs func(string, float32) bool) bool {
	if len(n.inputs) == 3 {
		return scalarIs(n.inputs[1], 0) && scalarIs(n.inputs[2], 6)
	}
	if len(n.inputs) != 1 {
		return false
	}
	attr := func(name string) (float32, bool) {
		for _, a := range n.attrs[name] {
			if a.num == attrF && a.typ == protowire.Fixed32Type {
				return math.Float32frombits(uint32(a.v)), true
			}
		}
		return 0, false
	}
	lo, ok1 := attr("min")
	hi, ok2 := attr("max")
	return ok1 && ok2 && lo == 0 && hi == 6
}

// filledConstant builds a Constant node: a float32 tensor of the shape, every element v.
func filledConstant(name string, v float32, shape []int64) *onnxNode {
	n := int64(1)
	for _, d := range shape {
		n *= d
	}
	vals := make([]float32, n)
	for i := range vals {
		vals[i] = v
	}
	return floatConstant(name, vals, shape)
}

// floatConstant builds a Constant node holding a float32 tensor.
func floatConstant(name string, vals []float32, shape []int64) *onnxNode {
	var t []byte
	for _, d := range shape {
		t = pbAppend(t, pbField{num: tensorDims, typ: protowire.VarintType, v: uint64(d)})
	}
	raw := make([]byte, 4*len(vals))
	for i, v := range vals {
		binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(v))
	}
	t = pbAppend(t, pbField{num: tensorType, typ: protowire.VarintType, v: tensorFloat}, pbField{num: tensorRaw, typ: protowire.BytesType, data: raw})
	const attrTypeTensor = 4
	attr := pbAppend(nil, pbString(attrName, "value"), pbField{num: attrT, typ: protowire.BytesType, data: t}, pbField{num: attrType, typ: protowire.VarintType, v: attrTypeTensor})
	fs := []pbField{pbString(nodeOutput, name), pbString(nodeName, name), pbString(nodeOpType, "Constant"), {num: nodeAttr, typ: protowire.BytesType, data: attr}}
	return &onnxNode{fields: fs, op: "Constant", outputs: []string{name}}
}

// tensorShape returns a TensorProto's dims.
func tensorShape(b []byte) []int64 {
	fs, err := pbParse(b)
	if err != nil {
		return nil
	}
	var shape []int64
	for _, f := range fs {
		if f.num != tensorDims {
			continue
		}
		ds, ok := pbVarints(f)
		if !ok {
			return nil
		}
		for _, d := range ds {
			shape = append(shape, int64(d))
		}
	}
	return shape
}

// tensorFloat32s returns the elements of a float32 TensorProto (raw or float_data), or nil.
func tensorFloat32s(b []byte) []float32 {
	fs, err := pbParse(b)
	if err != nil {
		return nil
	}
	var vals []float32
	for _, f := range fs {
		switch {
		case f.num == tensorType && f.typ == protowire.VarintType && f.v != tensorFloat:
			return nil
		case f.num == tensorRaw && f.typ == protowire.BytesType:
			vals = append(vals, rawFloats(f.data)...)
		case f.num == tensorFloats:
			vs, ok := pbFloats(f)
			if !ok {
				return nil
			}
			vals = append(vals, vs...)
		}
	}
	return vals
}

// unpadded says whether a Conv node pads nothing: no pads but zeros, auto_pad NOTSET or VALID.
func unpadded(n *onnxNode) bool {
	for _, a := range n.attrs["auto_pad"] {
		if a.num == attrS && a.typ == protowire.BytesType && string(a.data) != "NOTSET" && string(a.data) != "VALID" {
			return false
		}
	}
	for _, a := range n.attrs["pads"] {
		if a.num != attrInts {
			continue
		}
		pads, ok := pbVarints(a)
		if !ok {
			return false
		}
		for _, p := range pads {
			if p != 0 {
				return false
			}
		}
	}
	return true
}
