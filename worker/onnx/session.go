package onnx

import (
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
	"time"

	ort "github.com/yalue/onnxruntime_go"
)

// inputError is a problem with the tensors handed to Run: the caller's fault, so a worker may
// pass its text on to whoever sent them. Every one matches ErrInvalidInput.
type inputError struct{ msg string }

func (e *inputError) Error() string        { return e.msg }
func (e *inputError) Is(target error) bool { return target == ErrInvalidInput }

var (
	// ErrInvalidInput matches every error Run returns for inputs that do not fit the model
	// (all the sentinels below). Its text is safe to show a client.
	ErrInvalidInput = errors.New("onnx: invalid input")

	ErrUnknownInput   error = &inputError{"onnx: unknown input"}   // a name the model does not declare
	ErrMissingInput   error = &inputError{"onnx: missing input"}   // a declared input not given
	ErrDuplicateInput error = &inputError{"onnx: duplicate input"} // one name given twice
	ErrDType          error = &inputError{"onnx: dtype mismatch"}  // DType differs from the model's
	ErrShape          error = &inputError{"onnx: shape mismatch"}  // rank, a fixed dimension, or a dimension < 1
	ErrData           error = &inputError{"onnx: bad data"}        // the data slice does not match DType and Shape

	// ErrUnsupportedModel means a model has inputs or outputs that are not tensors.
	ErrUnsupportedModel = errors.New("onnx: unsupported model")
)

// Session is one loaded model. Create it once with Runtime.NewSession and reuse it: Run is
// safe to call from several goroutines at once (ONNX Runtime's Run is thread-safe; concurrent
// calls share the session's intra-op thread pool).
type Session struct {
	name     string // the model file's base name, for errors and logs
	sha256   string
	provider string
	inputs   []TensorInfo
	outputs  []TensorInfo

	mu     sync.RWMutex // Run holds it shared, Close exclusively: Close waits for runs in flight
	sess   *ort.DynamicAdvancedSession
	closed bool
}

// NewSession loads the model at modelPath with the runtime's provider and thread count. With
// device "auto", a model the CUDA provider cannot take is loaded on the CPU with a warning.
// It returns ErrClosed after rt.Close, ErrNoCUDA for device "cuda" when CUDA fails, and
// ErrUnsupportedModel for models with non-tensor inputs or outputs.
func (rt *Runtime) NewSession(modelPath string) (*Session, error) {
	return rt.NewSessionWith(modelPath, nil)
}

// NewSessionWith is NewSession with a rewrite of the model's bytes before ONNX Runtime loads
// them (nil: none), e.g. a graph simplification the runtime's optimiser misses. SHA256 stays
// that of the file; errors from rewrite are returned wrapped.
func (rt *Runtime) NewSessionWith(modelPath string, rewrite func([]byte) ([]byte, error)) (*Session, error) {
	start := time.Now()
	name := filepath.Base(modelPath)
	data, err := os.ReadFile(modelPath)
	if err != nil {
		return nil, fmt.Errorf("onnx: load model: %w", err)
	}
	sum := sha256.Sum256(data)
	s := &Session{name: name, sha256: hex.EncodeToString(sum[:]), provider: rt.provider}
	if rewrite != nil {
		if data, err = rewrite(data); err != nil {
			return nil, fmt.Errorf("onnx: load model %s: rewrite: %w", name, err)
		}
	}

	// Hold a reference to the environment for the session's whole life, so closing the
	// runtime first cannot pull the library out from under it.
	rt.mu.Lock() // before env, as in Runtime.Close
	if rt.closed {
		rt.mu.Unlock()
		return nil, ErrClosed
	}
	env.Lock()
	env.refs++
	env.Unlock()
	rt.mu.Unlock()
	ok := false
	defer func() {
		if !ok {
			env.Lock()
			releaseEnv()
			env.Unlock()
		}
	}()

	ins, outs, err := ort.GetInputOutputInfoWithONNXData(data)
	if err != nil {
		return nil, fmt.Errorf("onnx: load model %s: %w", name, err)
	}
	if s.inputs, err = tensorInfos(ins); err != nil {
		return nil, fmt.Errorf("%w %s: %w", ErrUnsupportedModel, name, err)
	}
	if s.outputs, err = tensorInfos(outs); err != nil {
		return nil, fmt.Errorf("%w %s: %w", ErrUnsupportedModel, name, err)
	}

	s.sess, err = rt.newORTSession(data, s.inputs, s.outputs, rt.provider == ProviderCUDA)
	if err != nil && rt.provider == ProviderCUDA && rt.device.Kind == DeviceAuto {
		rt.log.Warn().Err(err).Str("model", name).Msg("cuda cannot take this model, running it on cpu")
		s.provider = ProviderCPU
		s.sess, err = rt.newORTSession(data, s.inputs, s.outputs, false)
	}
	if err != nil {
		return nil, fmt.Errorf("onnx: load model %s: %w", name, err)
	}
	ok = true
	rt.log.Info().Str("model", name).Str("sha256", s.sha256).Str("provider", s.provider).
		Stringer("took", time.Since(start).Round(time.Millisecond)).Msg("model loaded")
	return s, nil
}

func (rt *Runtime) newORTSession(data []byte, ins, outs []TensorInfo, cuda bool) (*ort.DynamicAdvancedSession, error) {
	opts, err := ort.NewSessionOptions()
	if err != nil {
		return nil, err
	}
	defer opts.Destroy()
	if err := opts.SetIntraOpNumThreads(rt.threads); err != nil {
		return nil, err
	}
	if err := opts.SetInterOpNumThreads(1); err != nil {
		return nil, err
	}
	// An idle pool that spins steals the core the next session needs (see the package doc).
	for _, key := range []string{"session.intra_op.allow_spinning", "session.inter_op.allow_spinning"} {
		if err := opts.AddSessionConfigEntry(key, "0"); err != nil {
			return nil, err
		}
	}
	if cuda {
		if err := appendCUDA(opts, rt.device.ID); err != nil {
			return nil, fmt.Errorf("%w on device %d: %s", ErrNoCUDA, rt.device.ID, firstLine(err.Error()))
		}
	}
	return ort.NewDynamicAdvancedSessionWithONNXData(data, names(ins), names(outs), opts)
}

func tensorInfos(infos []ort.InputOutputInfo) ([]TensorInfo, error) {
	out := make([]TensorInfo, len(infos))
	for i, info := range infos {
		if info.OrtValueType != ort.ONNXTypeTensor {
			return nil, fmt.Errorf("%q is a %s, not a tensor", info.Name, info.OrtValueType)
		}
		out[i] = TensorInfo{Name: info.Name, DType: dtypeName(info.DataType), Shape: []int64(info.Dimensions.Clone())}
	}
	return out, nil
}

func names(infos []TensorInfo) []string {
	out := make([]string, len(infos))
	for i, info := range infos {
		out[i] = info.Name
	}
	return out
}

// Inputs returns the model's declared inputs, in the model's order.
func (s *Session) Inputs() []TensorInfo { return cloneInfos(s.inputs) }

// Outputs returns the model's declared outputs, in the model's order; Run returns them so.
func (s *Session) Outputs() []TensorInfo { return cloneInfos(s.outputs) }

func cloneInfos(infos []TensorInfo) []TensorInfo {
	out := make([]TensorInfo, len(infos))
	for i, info := range infos {
		out[i] = TensorInfo{Name: info.Name, DType: info.DType, Shape: append([]int64(nil), info.Shape...)}
	}
	return out
}

// SHA256 returns the hex SHA-256 of the model file's bytes, the very bytes the session loaded.
func (s *Session) SHA256() string { return s.sha256 }

// Provider returns the execution provider this session runs on.
func (s *Session) Provider() string { return s.provider }

// Name returns the model file's base name.
func (s *Session) Name() string { return s.name }

// Run runs the model on inputs, one per declared input in any order, and returns every
// declared output in the model's order. Inputs are checked first: errors for tensors that do
// not fit the model match ErrInvalidInput and one of ErrUnknownInput, ErrMissingInput,
// ErrDuplicateInput, ErrDType, ErrShape or ErrData, and name the input and what was wanted.
// Cancelling ctx stops a run in flight; the error then wraps ctx's error. After Close, Run
// returns ErrClosed.
func (s *Session) Run(ctx context.Context, inputs []Tensor) ([]Tensor, error) {
	ordered, err := s.check(inputs)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("onnx: run %s: %w", s.name, err)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, ErrClosed
	}

	in := make([]ort.Value, len(ordered))
	defer destroyAll(in)
	for i, t := range ordered {
		if in[i], err = valueOf(t); err != nil {
			return nil, fmt.Errorf("onnx: input %q: %w", t.Name, err)
		}
	}
	out := make([]ort.Value, len(s.outputs)) // nil: ONNX Runtime allocates them
	defer destroyAll(out)

	opts, err := ort.NewRunOptions()
	if err != nil {
		return nil, fmt.Errorf("onnx: run %s: %w", s.name, err)
	}
	defer opts.Destroy()
	terminated := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(terminated)
		opts.Terminate()
	})
	err = s.sess.RunWithOptions(in, out, opts)
	if !stop() {
		<-terminated // Terminate is running or ran: let it finish before opts.Destroy
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("onnx: run %s: %w", s.name, context.Cause(ctx))
		}
		return nil, fmt.Errorf("onnx: run %s: %w", s.name, err)
	}

	results := make([]Tensor, len(out))
	for i, v := range out {
		if results[i], err = tensorFrom(s.outputs[i].Name, v); err != nil {
			return nil, err
		}
	}
	return results, nil
}

func destroyAll(values []ort.Value) {
	for _, v := range values {
		if v != nil {
			v.Destroy()
		}
	}
}

// check matches inputs to the model's declared inputs and returns them in the model's order.
func (s *Session) check(inputs []Tensor) ([]*Tensor, error) {
	ordered := make([]*Tensor, len(s.inputs))
	for i := range inputs {
		t := &inputs[i]
		j := indexOf(s.inputs, t.Name)
		switch {
		case j < 0:
			return nil, fmt.Errorf("%w %q: %s takes %s", ErrUnknownInput, t.Name, s.name, strings.Join(names(s.inputs), ", "))
		case ordered[j] != nil:
			return nil, fmt.Errorf("%w %q", ErrDuplicateInput, t.Name)
		}
		if err := checkTensor(t, s.inputs[j]); err != nil {
			return nil, err
		}
		ordered[j] = t
	}
	for j, t := range ordered {
		if t == nil {
			return nil, fmt.Errorf("%w %q: %s needs %s", ErrMissingInput, s.inputs[j].Name, s.name, s.inputs[j])
		}
	}
	return ordered, nil
}

func indexOf(infos []TensorInfo, name string) int {
	for i, info := range infos {
		if info.Name == name {
			return i
		}
	}
	return -1
}

// checkTensor checks t against the declared input want: dtype, then shape, then data.
func checkTensor(t *Tensor, want TensorInfo) error {
	if t.DType != want.DType {
		return fmt.Errorf("%w: input %q is %q, model wants %s", ErrDType, t.Name, t.DType, want.DType)
	}
	if len(t.Shape) != len(want.Shape) {
		return fmt.Errorf("%w: input %q has shape %v (rank %d), model wants %v (rank %d)",
			ErrShape, t.Name, t.Shape, len(t.Shape), want.Shape, len(want.Shape))
	}
	n := int64(1)
	for i, d := range t.Shape {
		switch w := want.Shape[i]; {
		case d < 1:
			return fmt.Errorf("%w: input %q has shape %v: dimension %d is %d, want ≥ 1", ErrShape, t.Name, t.Shape, i, d)
		case w >= 0 && d != w:
			return fmt.Errorf("%w: input %q has shape %v, model wants %v: dimension %d is %d, want %d",
				ErrShape, t.Name, t.Shape, want.Shape, i, d, w)
		case n > math.MaxInt32/d:
			return fmt.Errorf("%w: input %q has shape %v: more than %d elements", ErrShape, t.Name, t.Shape, math.MaxInt32)
		}
		n *= d
	}
	switch have := carried(t); {
	case len(have) == 0:
		return fmt.Errorf("%w: input %q has DType %s but carries no data", ErrData, t.Name, t.DType)
	case len(have) > 1 || have[0] != t.DType:
		return fmt.Errorf("%w: input %q has DType %s but carries %s data", ErrData, t.Name, t.DType, strings.Join(have, " and "))
	}
	if got := t.Len(); int64(got) != n {
		return fmt.Errorf("%w: input %q with shape %v needs %d elements, has %d", ErrData, t.Name, t.Shape, n, got)
	}
	return nil
}

// Close waits for runs in flight and frees the session. Closing twice is a no-op.
func (s *Session) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	err := s.sess.Destroy()
	env.Lock()
	defer env.Unlock()
	return errors.Join(err, releaseEnv())
}
