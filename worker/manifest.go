package worker

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/sparecycles/sparecycles/nips/nip89"
	"github.com/sparecycles/sparecycles/nips/nip90"
)

// Manifest describes one model in the models folder: a small JSON file beside its .onnx files.
type Manifest struct {
	Name   string            `json:"name"`
	Task   string            `json:"task"` // "ocr" or "tensor"
	Kind   int               `json:"kind"`
	Files  map[string]string `json:"files"`
	Price  nip89.Price       `json:"price"`
	Limits map[string]int64  `json:"limits"`
	// Payment is how jobs on this model are paid, overriding the worker's --payment: "prepay"
	// (or its old name "before": quote, then run), "after" (run, then a result with an
	// invoice; each customer may owe at most --max-unpaid), "escrow" (a hold invoice, settled
	// once the sealed result is stored), or a comma-separated list of them in order of the
	// worker's preference.
	Payment string `json:"payment,omitempty"`

	path    string
	schemes []string // Payment, parsed
}

// Tasks the worker knows how to run.
const (
	TaskOCR    = "ocr"
	TaskTensor = "tensor"
)

// ErrManifest is wrapped by every manifest problem.
var ErrManifest = errors.New("bad model manifest")

// ErrNoModels is wrapped when the models folder is missing, holds no manifests, or lacks a
// file a manifest names: the models were not fetched.
var ErrNoModels = errors.New("no models")

func noModels(dir, detail string) error {
	if detail != "" {
		detail = ": " + detail
	}
	return fmt.Errorf("%w in %s%s: run scripts/fetch-models (or set --models)", ErrNoModels, dir, detail)
}

// LoadManifests reads every *.json manifest in dir, sorted by name. A manifest whose files
// are missing is an error naming scripts/fetch-models.
func LoadManifests(dir string) ([]Manifest, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, err
	}
	if len(paths) == 0 {
		return nil, noModels(dir, "")
	}
	var out []Manifest
	names := map[string]bool{}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		var m Manifest
		dec := json.NewDecoder(strings.NewReader(string(b)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&m); err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrManifest, p, err)
		}
		m.path = p
		if err := m.validate(dir); err != nil {
			return nil, err
		}
		if names[m.Name] {
			return nil, fmt.Errorf("%w: %s: model name %q used twice", ErrManifest, p, m.Name)
		}
		names[m.Name] = true
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b Manifest) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

func (m *Manifest) validate(dir string) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrManifest, m.path, fmt.Sprintf(format, args...))
	}
	switch {
	case m.Name == "":
		return bad("no name")
	case m.Task != TaskOCR && m.Task != TaskTensor:
		return bad("task %q is not %s or %s", m.Task, TaskOCR, TaskTensor)
	case !nip90.IsRequestKind(m.Kind):
		return bad("kind %d is not a job request kind (5000-5999)", m.Kind)
	case m.Price.BaseMsat < 0 || m.Price.PerUnitMsat < 0:
		return bad("negative price")
	case m.Task == TaskTensor && m.Files["model"] == "":
		return bad(`a tensor model needs files.model`)
	case m.Task == TaskOCR && (m.Files["det"] == "" || m.Files["rec"] == "" || m.Files["keys"] == ""):
		return bad("an OCR model needs files.det, files.rec and files.keys")
	}
	schemes, err := parseSchemes(m.Payment)
	if err != nil {
		return bad("%v", err)
	}
	m.schemes = schemes
	for role, f := range m.Files {
		if filepath.Base(f) != f {
			return bad("file %s for %s must be a plain file name in the models folder", f, role)
		}
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			return noModels(dir, fmt.Sprintf("%s names %s (%s), which is missing", filepath.Base(m.path), f, role))
		}
	}
	return nil
}

// Limit returns the named limit, or def when the manifest sets none.
func (m *Manifest) Limit(name string, def int64) int64 {
	if v, ok := m.Limits[name]; ok && v > 0 {
		return v
	}
	return def
}
