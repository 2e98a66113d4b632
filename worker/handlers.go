package worker

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/sparecycles/sparecycles/nips/nip01"
	"github.com/sparecycles/sparecycles/nips/nip89"
	"github.com/sparecycles/sparecycles/nips/nip90"
	"github.com/sparecycles/sparecycles/nips/tensor"
	"github.com/sparecycles/sparecycles/worker/ocr"
	"github.com/sparecycles/sparecycles/worker/onnx"
)

// A model is one row of the worker's job table: a loaded model that serves one job kind.
// Adding a model kind means one new constructor here and a task name in manifests.
type model struct {
	manifest Manifest
	info     nip89.Model
	// prepare checks a request and fetches its input; a *nip01.Rejection error's reason goes
	// to the customer. It returns the run step and the input's size in the manifest's price
	// unit.
	prepare func(ctx context.Context, req *nip90.JobRequest) (run func(ctx context.Context) (string, error), units float64, err error)
	close   func() error
}

func reject(format string, args ...any) error {
	return nip01.Reject(nip01.PrefixError, fmt.Sprintf(format, args...))
}

// onlyInput returns the request's single input or rejects it.
func onlyInput(req *nip90.JobRequest, types ...string) (nip90.Input, error) {
	if len(req.Inputs) != 1 {
		return nip90.Input{}, reject("this job takes exactly one input, got %d", len(req.Inputs))
	}
	in := req.Inputs[0]
	for _, t := range types {
		if in.Type == t {
			return in, nil
		}
	}
	return nip90.Input{}, reject("input type %q not supported here; use %s", in.Type, strings.Join(types, " or "))
}

// newOCRModel serves kind 5000 (text extraction): an image URL in, text/plain out.
func newOCRModel(m Manifest, rt *onnx.Runtime, fetch *Fetcher) (*model, error) {
	dir := filepath.Dir(m.path)
	om, err := ocr.Load(rt, dir)
	if err != nil {
		return nil, fmt.Errorf("load model %s: %w", m.Name, err)
	}
	maxBytes := m.Limit("max_image_bytes", fetch.MaxBytes)
	maxPixels := int(m.Limit("max_pixels", 16_000_000))
	return &model{
		manifest: m,
		info:     announce(m, om.SHA256()),
		close:    om.Close,
		prepare: func(ctx context.Context, req *nip90.JobRequest) (func(context.Context) (string, error), float64, error) {
			if req.Output != "" && req.Output != "text/plain" {
				return nil, 0, reject("output %q not supported; this worker writes text/plain", req.Output)
			}
			in, err := onlyInput(req, nip90.InputURL)
			if err != nil {
				return nil, 0, err
			}
			data, _, err := fetch.Fetch(ctx, in.Value, []string{"image/png", "image/jpeg"})
			if err != nil {
				return nil, 0, err
			}
			if int64(len(data)) > maxBytes {
				return nil, 0, reject("image is %d bytes, more than the %d allowed", len(data), maxBytes)
			}
			img, _, err := ocr.Decode(data, maxPixels)
			if err != nil {
				return nil, 0, reject("%v", err)
			}
			megapixels := float64(img.Bounds().Dx()*img.Bounds().Dy()) / 1e6
			return func(ctx context.Context) (string, error) {
				res, err := om.Recognize(ctx, img)
				if err != nil {
					return "", err
				}
				return res.Text, nil
			}, megapixels, nil
		},
	}, nil
}

// newTensorModel serves kind 5800 (raw tensor inference, nips/tensor.md) on one model.
func newTensorModel(m Manifest, rt *onnx.Runtime, fetch *Fetcher) (*model, error) {
	s, err := rt.NewSession(filepath.Join(filepath.Dir(m.path), m.Files["model"]))
	if err != nil {
		return nil, fmt.Errorf("load model %s: %w", m.Name, err)
	}
	lim := tensor.Limits{MaxTensors: int(m.Limit("max_tensors", 8)), MaxElements: int(m.Limit("max_elements", 1<<22))}
	maxBytes := m.Limit("max_input_bytes", fetch.MaxBytes)
	sha := s.SHA256()
	return &model{
		manifest: m,
		info:     announce(m, map[string]string{"model": sha}),
		close:    s.Close,
		prepare: func(ctx context.Context, req *nip90.JobRequest) (func(context.Context) (string, error), float64, error) {
			in, err := onlyInput(req, nip90.InputText, nip90.InputURL)
			if err != nil {
				return nil, 0, err
			}
			doc := []byte(in.Value)
			if in.Type == nip90.InputURL {
				if doc, _, err = fetch.Fetch(ctx, in.Value, []string{"application/json", "text/plain"}); err != nil {
					return nil, 0, err
				}
			}
			if int64(len(doc)) > maxBytes {
				return nil, 0, reject("input document is %d bytes, more than the %d allowed", len(doc), maxBytes)
			}
			wire, err := tensor.ParseInputs(doc, lim)
			if err != nil {
				return nil, 0, reject("%v", err)
			}
			elements := 0
			for _, t := range wire {
				elements += t.Len()
			}
			return func(ctx context.Context) (string, error) {
				outs, err := s.Run(ctx, wire) // onnx.Tensor is the wire type: no copy
				if err != nil {
					if errors.Is(err, onnx.ErrInvalidInput) {
						return "", reject("%v", err)
					}
					return "", err
				}
				b, err := json.Marshal(tensor.Outputs{Model: sha, Provider: s.Provider(), Outputs: outs})
				return string(b), err
			}, float64(elements) / 1e6, nil
		},
	}, nil
}

// matches reports whether a tensor request's model param names this model.
func (m *model) matches(name string) bool {
	if m.manifest.Name == name {
		return true
	}
	_, err := hex.DecodeString(name)
	return err == nil && m.info.SHA256["model"] == strings.ToLower(name)
}

func announce(m Manifest, sha map[string]string) nip89.Model {
	return nip89.Model{Name: m.Name, Task: m.Task, Kind: m.Kind, SHA256: sha, Price: m.Price, Limits: m.Limits}
}

// runTime is how long a step took, for logs.
func since(t time.Time) time.Duration { return time.Since(t).Round(time.Microsecond) }
