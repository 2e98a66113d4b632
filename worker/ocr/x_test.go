package ocr

import (
	"context"
	"encoding/json"
	"fmt"
	"image"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	ort "github.com/yalue/onnxruntime_go"
	"golang.org/x/image/draw"
)

func xRecInput(m *Model, img image.Image, boxes []image.Rectangle) ([]float32, []int64) {
	var batch []crop
	for i, r := range boxes {
		batch = append(batch, crop{box: i, img: flatten(img, r), ratio: float64(r.Dx()) / float64(r.Dy())})
	}
	maxRatio := float64(recMinWidth) / recHeight
	for _, c := range batch {
		maxRatio = max(maxRatio, c.ratio)
	}
	width := int(recHeight * maxRatio)
	plane := recHeight * width
	in := make([]float32, len(batch)*3*plane)
	for n, c := range batch {
		cw := min(int(math.Ceil(recHeight*c.ratio)), width)
		resized := image.NewRGBA(image.Rect(0, 0, max(cw, 1), recHeight))
		draw.CatmullRom.Scale(resized, resized.Rect, c.img, c.img.Rect, draw.Src, nil)
		base := n * 3 * plane
		for y := range recHeight {
			row := resized.Pix[y*resized.Stride:]
			for x := range resized.Rect.Dx() {
				p := row[4*x:]
				i := base + y*width + x
				in[i] = float32(p[2])/127.5 - 1
				in[plane+i] = float32(p[1])/127.5 - 1
				in[2*plane+i] = float32(p[0])/127.5 - 1
			}
		}
	}
	return in, []int64{int64(len(batch)), 3, recHeight, int64(width)}
}

func TestXProfile(t *testing.T) {
	m := loadModel(t, 1)
	img := decoded(t, 32, page...)
	boxes, _ := m.detect(context.Background(), img, nil, new(scratch))
	in, shape := xRecInput(m, img, boxes)
	data, _ := os.ReadFile(filepath.Join(modelsDir(t), RecFile))
	data, _ = simplify(data)
	opts, _ := ort.NewSessionOptions()
	opts.SetIntraOpNumThreads(1)
	opts.SetInterOpNumThreads(1)
	prefix := filepath.Join(t.TempDir(), "prof")
	opts.EnableProfiling(prefix)
	sess, err := ort.NewDynamicAdvancedSessionWithONNXData(data, []string{"x"}, []string{"softmax_11.tmp_0"}, opts)
	if err != nil {
		t.Fatal(err)
	}
	x, _ := ort.NewTensor(ort.NewShape(shape...), in)
	for range 10 {
		out := []ort.Value{nil}
		if err := sess.Run([]ort.Value{x}, out); err != nil {
			t.Fatal(err)
		}
		out[0].Destroy()
	}
	sess.Destroy()
	files, _ := filepath.Glob(prefix + "*")
	raw, _ := os.ReadFile(files[0])
	var evs []struct {
		Cat, Name string
		Dur       float64
		Args      map[string]any
	}
	json.Unmarshal(raw, &evs)
	byOp := map[string]float64{}
	var total float64
	for _, e := range evs {
		if e.Cat != "Node" || !strings.HasSuffix(e.Name, "_kernel_time") {
			continue
		}
		op, _ := e.Args["op_name"].(string)
		byOp[op] += e.Dur / 10
		total += e.Dur / 10
	}
	type kv struct {
		k string
		v float64
	}
	var kvs []kv
	for k, v := range byOp {
		kvs = append(kvs, kv{k, v})
	}
	sort.Slice(kvs, func(i, j int) bool { return kvs[i].v > kvs[j].v })
	fmt.Println("shape", shape, "total µs per run", total)
	byNode := map[string]float64{}
	info := map[string]string{}
	var order []string
	for _, e := range evs {
		if e.Cat != "Node" || !strings.HasSuffix(e.Name, "_kernel_time") {
			continue
		}
		if _, ok := byNode[e.Name]; !ok {
			order = append(order, e.Name)
		}
		byNode[e.Name] += e.Dur / 10
		info[e.Name] = fmt.Sprint(e.Args["op_name"], " ", e.Args["input_type_shape"], " -> ", e.Args["output_type_shape"])
	}
	if os.Getenv("XNODES") != "" {
		for _, n := range order {
			fmt.Printf("%7.0f %s %s\n", byNode[n], n, info[n])
		}
	}
	for _, e := range kvs {
		fmt.Printf("%-28s %8.0f µs %5.1f%%\n", e.k, e.v, 100*e.v/total)
	}
}

func TestXAB(t *testing.T) {
	m := loadModel(t, 1)
	img := decoded(t, 32, page...)
	boxes, _ := m.detect(context.Background(), img, nil, new(scratch))
	in, shape := xRecInput(m, img, boxes)
	raw, _ := os.ReadFile(filepath.Join(modelsDir(t), RecFile))
	mk := func(old bool) *ort.DynamicAdvancedSession {
		data, _ := simplify(raw)
		opts, _ := ort.NewSessionOptions()
		opts.SetIntraOpNumThreads(1)
		opts.SetInterOpNumThreads(1)
		opts.AddSessionConfigEntry("session.intra_op.allow_spinning", "0")
		sess, err := ort.NewDynamicAdvancedSessionWithONNXData(data, []string{"x"}, []string{"softmax_11.tmp_0"}, opts)
		if err != nil {
			t.Fatal(err)
		}
		return sess
	}
	a, b := mk(true), mk(false)
	x, _ := ort.NewTensor(ort.NewShape(shape...), in)
	run := func(s *ort.DynamicAdvancedSession) float64 {
		out := []ort.Value{nil}
		t0 := time.Now()
		if err := s.Run([]ort.Value{x}, out); err != nil {
			t.Fatal(err)
		}
		d := time.Since(t0)
		out[0].Destroy()
		return float64(d.Microseconds())
	}
	var ta, tb []float64
	for i := range 24 {
		x1, x2 := run(a), run(b)
		if i >= 4 {
			ta, tb = append(ta, x1), append(tb, x2)
		}
	}
	sort.Float64s(ta)
	sort.Float64s(tb)
	fmt.Println("old", ta[len(ta)/2], "new", tb[len(tb)/2], "ratio", tb[len(tb)/2]/ta[len(ta)/2])
}

func TestXABDet(t *testing.T) {
	rw, rh := 704, 224
	in := make([]float32, 3*rw*rh)
	for i := range in {
		x, y := i%rw, (i/rw)%rh
		in[i] = 2.0
		if (x/7+y/5)%3 == 0 && y%60 > 20 && y%60 < 50 {
			in[i] = -2
		}
	}
	raw, _ := os.ReadFile(filepath.Join(modelsDir(t), DetFile))
	loadModel(t, 1)
	mk := func(old bool) *ort.DynamicAdvancedSession {
		data, _ := simplify(raw)
		opts, _ := ort.NewSessionOptions()
		opts.SetIntraOpNumThreads(1)
		opts.SetInterOpNumThreads(1)
		opts.AddSessionConfigEntry("session.intra_op.allow_spinning", "0")
		sess, err := ort.NewDynamicAdvancedSessionWithONNXData(data, []string{"x"}, []string{"sigmoid_0.tmp_0"}, opts)
		if err != nil {
			t.Fatal(err)
		}
		return sess
	}
	a, b := mk(true), mk(false)
	x, _ := ort.NewTensor(ort.NewShape(1, 3, int64(rh), int64(rw)), in)
	run := func(s *ort.DynamicAdvancedSession) float64 {
		out := []ort.Value{nil}
		t0 := time.Now()
		if err := s.Run([]ort.Value{x}, out); err != nil {
			t.Fatal(err)
		}
		d := time.Since(t0)
		out[0].Destroy()
		return float64(d.Microseconds())
	}
	var ta, tb []float64
	for i := range 44 {
		x1, x2 := run(a), run(b)
		if i >= 4 {
			ta, tb = append(ta, x1), append(tb, x2)
		}
	}
	sort.Float64s(ta)
	sort.Float64s(tb)
	fmt.Println("det old", ta[len(ta)/2], "new", tb[len(tb)/2], "ratio", tb[len(tb)/2]/ta[len(ta)/2])
}

func TestXThreads(t *testing.T) {
	m := loadModel(t, 1)
	img := decoded(t, 32, page...)
	boxes, _ := m.detect(context.Background(), img, nil, new(scratch))
	in, shape := xRecInput(m, img, boxes)
	raw, _ := os.ReadFile(filepath.Join(modelsDir(t), RecFile))
	data, _ := simplify(raw)
	mk := func(threads int, spin string) *ort.DynamicAdvancedSession {
		opts, _ := ort.NewSessionOptions()
		opts.SetIntraOpNumThreads(threads)
		opts.SetInterOpNumThreads(1)
		opts.AddSessionConfigEntry("session.intra_op.allow_spinning", spin)
		sess, err := ort.NewDynamicAdvancedSessionWithONNXData(data, []string{"x"}, []string{"softmax_11.tmp_0"}, opts)
		if err != nil {
			t.Fatal(err)
		}
		return sess
	}
	ss := []*ort.DynamicAdvancedSession{mk(1, "0"), mk(2, "0"), mk(2, "1")}
	x, _ := ort.NewTensor(ort.NewShape(shape...), in)
	run := func(s *ort.DynamicAdvancedSession) float64 {
		out := []ort.Value{nil}
		t0 := time.Now()
		if err := s.Run([]ort.Value{x}, out); err != nil {
			t.Fatal(err)
		}
		d := time.Since(t0)
		out[0].Destroy()
		return float64(d.Microseconds())
	}
	ts := make([][]float64, len(ss))
	for i := range 24 {
		for j, s := range ss {
			d := run(s)
			if i >= 4 {
				ts[j] = append(ts[j], d)
			}
		}
	}
	for j := range ss {
		sort.Float64s(ts[j])
		fmt.Println(j, ts[j][len(ts[j])/2], ts[j][0])
	}
}

func TestXSplit(t *testing.T) {
	m := loadModel(t, 1)
	img := decoded(t, 32, page...)
	boxes, _ := m.detect(context.Background(), img, nil, new(scratch))
	in, shape := xRecInput(m, img, boxes)
	in2, shape2 := xRecInput(m, img, boxes[:2])
	in1, shape1 := xRecInput(m, img, boxes[2:])
	raw, _ := os.ReadFile(filepath.Join(modelsDir(t), RecFile))
	data, _ := simplify(raw)
	mk := func(threads int) *ort.DynamicAdvancedSession {
		opts, _ := ort.NewSessionOptions()
		opts.SetIntraOpNumThreads(threads)
		opts.SetInterOpNumThreads(1)
		opts.AddSessionConfigEntry("session.intra_op.allow_spinning", "0")
		sess, err := ort.NewDynamicAdvancedSessionWithONNXData(data, []string{"x"}, []string{"softmax_11.tmp_0"}, opts)
		if err != nil {
			t.Fatal(err)
		}
		return sess
	}
	s1, s2 := mk(1), mk(2)
	x, _ := ort.NewTensor(ort.NewShape(shape...), in)
	x2, _ := ort.NewTensor(ort.NewShape(shape2...), in2)
	x1, _ := ort.NewTensor(ort.NewShape(shape1...), in1)
	run1 := func(s *ort.DynamicAdvancedSession, x ort.Value) {
		out := []ort.Value{nil}
		if err := s.Run([]ort.Value{x}, out); err != nil {
			t.Fatal(err)
		}
		out[0].Destroy()
	}
	modes := []func(){
		func() { run1(s1, x) },
		func() { run1(s2, x) },
		func() { var wg sync.WaitGroup; wg.Go(func() { run1(s1, x2) }); run1(s1, x1); wg.Wait() },
		func() { var wg sync.WaitGroup; wg.Go(func() { run1(s2, x2) }); run1(s2, x1); wg.Wait() },
	}
	ts := make([][]float64, len(modes))
	for i := range 24 {
		for j, f := range modes {
			t0 := time.Now()
			f()
			d := float64(time.Since(t0).Microseconds())
			if i >= 4 {
				ts[j] = append(ts[j], d)
			}
		}
	}
	for j := range modes {
		sort.Float64s(ts[j])
		fmt.Println(j, ts[j][len(ts[j])/2], ts[j][0])
	}
}

func TestXProfileDet(t *testing.T) {
	loadModel(t, 1)
	rw, rh := 704, 224
	in := make([]float32, 3*rw*rh)
	for i := range in {
		x, y := i%rw, (i/rw)%rh
		in[i] = 2.0
		if (x/7+y/5)%3 == 0 && y%60 > 20 && y%60 < 50 {
			in[i] = -2
		}
	}
	shape := []int64{1, 3, int64(rh), int64(rw)}
	data, _ := os.ReadFile(filepath.Join(modelsDir(t), DetFile))
	data, _ = simplify(data)
	opts, _ := ort.NewSessionOptions()
	opts.SetIntraOpNumThreads(1)
	opts.SetInterOpNumThreads(1)
	prefix := filepath.Join(t.TempDir(), "prof")
	opts.EnableProfiling(prefix)
	sess, err := ort.NewDynamicAdvancedSessionWithONNXData(data, []string{"x"}, []string{"sigmoid_0.tmp_0"}, opts)
	if err != nil {
		t.Fatal(err)
	}
	x, _ := ort.NewTensor(ort.NewShape(shape...), in)
	for range 10 {
		out := []ort.Value{nil}
		if err := sess.Run([]ort.Value{x}, out); err != nil {
			t.Fatal(err)
		}
		out[0].Destroy()
	}
	sess.Destroy()
	files, _ := filepath.Glob(prefix + "*")
	raw, _ := os.ReadFile(files[0])
	var evs []struct {
		Cat, Name string
		Dur       float64
		Args      map[string]any
	}
	json.Unmarshal(raw, &evs)
	byOp := map[string]float64{}
	var total float64
	for _, e := range evs {
		if e.Cat != "Node" || !strings.HasSuffix(e.Name, "_kernel_time") {
			continue
		}
		op, _ := e.Args["op_name"].(string)
		byOp[op] += e.Dur / 10
		total += e.Dur / 10
	}
	type kv struct {
		k string
		v float64
	}
	var kvs []kv
	for k, v := range byOp {
		kvs = append(kvs, kv{k, v})
	}
	sort.Slice(kvs, func(i, j int) bool { return kvs[i].v > kvs[j].v })
	fmt.Println("shape", shape, "total µs per run", total)
	byNode := map[string]float64{}
	info := map[string]string{}
	var order []string
	for _, e := range evs {
		if e.Cat != "Node" || !strings.HasSuffix(e.Name, "_kernel_time") {
			continue
		}
		if _, ok := byNode[e.Name]; !ok {
			order = append(order, e.Name)
		}
		byNode[e.Name] += e.Dur / 10
		info[e.Name] = fmt.Sprint(e.Args["op_name"], " ", e.Args["input_type_shape"], " -> ", e.Args["output_type_shape"])
	}
	if os.Getenv("XNODES") != "" {
		for _, n := range order {
			fmt.Printf("%7.0f %s %s\n", byNode[n], n, info[n])
		}
	}
	for _, e := range kvs {
		fmt.Printf("%-28s %8.0f µs %5.1f%%\n", e.k, e.v, 100*e.v/total)
	}
}

func TestXSpin(t *testing.T) {
	m := loadModel(t, 1)
	img := decoded(t, 32, page...)
	boxes, _ := m.detect(context.Background(), img, nil, new(scratch))
	in, shape := xRecInput(m, img, boxes)
	rw, rh := 704, 224
	din := make([]float32, 3*rw*rh)
	for i := range din {
		x, y := i%rw, (i/rw)%rh
		din[i] = 2.0
		if (x/7+y/5)%3 == 0 && y%60 > 20 && y%60 < 50 {
			din[i] = -2
		}
	}
	rawRec, _ := os.ReadFile(filepath.Join(modelsDir(t), RecFile))
	rawDet, _ := os.ReadFile(filepath.Join(modelsDir(t), DetFile))
	recData, _ := simplify(rawRec)
	detData, _ := simplify(rawDet)
	mk := func(data []byte, out string, threads int, spin, stop string) *ort.DynamicAdvancedSession {
		opts, _ := ort.NewSessionOptions()
		opts.SetIntraOpNumThreads(threads)
		opts.SetInterOpNumThreads(1)
		opts.AddSessionConfigEntry("session.intra_op.allow_spinning", spin)
		opts.AddSessionConfigEntry("session.inter_op.allow_spinning", "0")
		if stop != "" {
			opts.AddSessionConfigEntry("session.force_spinning_stop", stop)
		}
		sess, err := ort.NewDynamicAdvancedSessionWithONNXData(data, []string{"x"}, []string{out}, opts)
		if err != nil {
			t.Fatal(err)
		}
		return sess
	}
	type pair struct{ det, rec *ort.DynamicAdvancedSession }
	threads := 2
	if os.Getenv("XT") == "1" {
		threads = 1
	}
	var cfgs []pair
	if os.Getenv("XDAZ") != "" {
		cfgs = []pair{
			{mk(detData, "sigmoid_0.tmp_0", threads, "1", "1"), mk(recData, "softmax_11.tmp_0", threads, "1", "1")},
			{mk(detData, "sigmoid_0.tmp_0", threads, "1", "daz"), mk(recData, "softmax_11.tmp_0", threads, "1", "daz")},
		}
	} else {
		cfgs = []pair{
			{mk(detData, "sigmoid_0.tmp_0", threads, "0", ""), mk(recData, "softmax_11.tmp_0", threads, "0", "")},
			{mk(detData, "sigmoid_0.tmp_0", threads, "1", "1"), mk(recData, "softmax_11.tmp_0", threads, "1", "1")},
		}
	}
	x, _ := ort.NewTensor(ort.NewShape(shape...), in)
	dx, _ := ort.NewTensor(ort.NewShape(1, 3, int64(rh), int64(rw)), din)
	run1 := func(s *ort.DynamicAdvancedSession, x ort.Value) {
		out := []ort.Value{nil}
		if err := s.Run([]ort.Value{x}, out); err != nil {
			t.Fatal(err)
		}
		out[0].Destroy()
	}
	ts := make([][]float64, len(cfgs))
	for i := range 24 {
		for j, c := range cfgs {
			t0 := time.Now()
			run1(c.det, dx)
			time.Sleep(2 * time.Millisecond)
			run1(c.rec, x)
			d := float64(time.Since(t0).Microseconds())
			if i >= 4 {
				ts[j] = append(ts[j], d)
			}
		}
	}
	for j := range cfgs {
		sort.Float64s(ts[j])
		fmt.Println(j, ts[j][len(ts[j])/2], ts[j][0], ts[j][len(ts[j])-1])
	}
}
