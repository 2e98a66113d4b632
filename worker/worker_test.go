package worker

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"
	"github.com/rs/zerolog"

	"github.com/sparecycles/sparecycles/internal/relayconn"
	"github.com/sparecycles/sparecycles/internal/testimage"
	"github.com/sparecycles/sparecycles/internal/testrelay"
	"github.com/sparecycles/sparecycles/nips/nip89"
	"github.com/sparecycles/sparecycles/nips/nip90"
	"github.com/sparecycles/sparecycles/nips/tensor"
	"github.com/sparecycles/sparecycles/worker/onnx"
)

const sentence = "The quick brown fox jumps over the lazy dog"

// modelsDir is the folder with the fetched models and their manifests: $SPARECYCLES_MODELS,
// else the repo's models/. Missing models fail the test, naming the script that fetches them.
func modelsDir(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("SPARECYCLES_MODELS")
	if dir == "" {
		dir = filepath.Join("..", "models")
	}
	if _, err := LoadManifests(dir); err != nil {
		t.Fatalf("%v\nfetch the models first: scripts/fetch-models", err)
	}
	return dir
}

func testConfig(t testing.TB, relays ...string) Config {
	cfg := DefaultConfig()
	cfg.Relays = relays
	cfg.Models = modelsDir(t)
	cfg.KeyFile = filepath.Join(t.TempDir(), "worker.nsec")
	cfg.Data = t.TempDir()
	cfg.Device = onnx.Device{Kind: onnx.DeviceCPU}
	cfg.AllowPrivate = true
	cfg.FetchTime = 5 * time.Second
	return cfg
}

// startWorker runs a worker until the test ends and waits until it has announced itself on
// every relay, so it is subscribed.
func startWorker(t testing.TB, cfg Config) *Worker {
	t.Helper()
	w, err := New(cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done; w.Close() })
	for _, u := range cfg.Relays {
		c := testrelay.Dial(t, u)
		wctx, wcancel := context.WithTimeout(context.Background(), 20*time.Second)
		sub, err := c.Subscribe(wctx, nostr.Filter{Kinds: []int{nip89.KindHandlerInfo}, Authors: []string{w.PubKey()}})
		if err != nil {
			t.Fatal(err)
		}
		select {
		case <-sub.Events:
		case <-wctx.Done():
			t.Fatalf("worker never announced itself on %s", u)
		}
		sub.Close()
		wcancel()
	}
	return w
}

// testLogger logs warnings into the test's output; SPARECYCLES_TEST_LOG=debug shows everything.
func testLogger(t testing.TB) zerolog.Logger {
	level := zerolog.WarnLevel
	if os.Getenv("SPARECYCLES_TEST_LOG") == "debug" {
		level = zerolog.DebugLevel
	}
	return zerolog.New(zerolog.NewTestWriter(t)).Level(level).With().Timestamp().Logger()
}

type customer struct{ sk, pk string }

func newCustomer() customer {
	sk := nostr.GeneratePrivateKey()
	pk, _ := nostr.GetPublicKey(sk)
	return customer{sk, pk}
}

// post signs and publishes a job request to every conn.
func (c customer) post(t testing.TB, kind int, tags nostr.Tags, conns ...*relayconn.Conn) nostr.Event {
	t.Helper()
	evt := nostr.Event{Kind: kind, CreatedAt: nostr.Now(), Tags: tags}
	if err := evt.Sign(c.sk); err != nil {
		t.Fatal(err)
	}
	for _, conn := range conns {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		ok, err := conn.Publish(ctx, evt)
		cancel()
		if err != nil || !ok.Accepted {
			t.Fatalf("post job: %+v %v", ok, err)
		}
	}
	return evt
}

func normalize(s string) string { return strings.ToLower(strings.Join(strings.Fields(s), " ")) }

// serveFiles serves path → (content type, body) on 127.0.0.1.
func serveFiles(t testing.TB, files map[string][2]string) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f, ok := files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", f[0])
		w.Write([]byte(f[1]))
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestOCRJob(t *testing.T) {
	relayURL := testrelay.Start(t)
	w := startWorker(t, testConfig(t, relayURL))
	png, err := testimage.Render(32, sentence)
	if err != nil {
		t.Fatal(err)
	}
	site := serveFiles(t, map[string][2]string{"/page.png": {"image/png", string(png)}})
	conn := testrelay.Dial(t, relayURL)
	cust := newCustomer()

	for _, input := range []struct{ name, url string }{
		{"http url", site + "/page.png"},
		{"data url", "data:image/png;base64," + base64.StdEncoding.EncodeToString(png)},
	} {
		t.Run(input.name, func(t *testing.T) {
			job := cust.post(t, 5000, nostr.Tags{{"i", input.url, "url"}, {"output", "text/plain"}}, conn)
			res, errInfo := testrelay.JobOutcome(t, conn, job)
			if res == nil {
				t.Fatalf("job failed: %s", errInfo)
			}
			if got := normalize(res.Content); got != normalize(sentence) {
				t.Fatalf("OCR read %q, want %q", res.Content, sentence)
			}
			r, err := nip90.ParseJobResult(res)
			if err != nil {
				t.Fatalf("result does not parse: %v", err)
			}
			if r.JobID != job.ID || r.Customer != cust.pk || res.PubKey != w.PubKey() {
				t.Fatalf("result tags: %+v", r)
			}
			if p := res.Tags.Find("provider"); len(p) < 2 || p[1] != onnx.ProviderCPU {
				t.Fatalf("result provider tag %v, want %s", p, onnx.ProviderCPU)
			}
		})
	}
}

func detInput(h, w int) tensor.Tensor {
	t := tensor.Tensor{Name: "x", DType: tensor.Float32, Shape: []int64{1, 3, int64(h), int64(w)}, Float32: make([]float32, 3*h*w)}
	for i := range t.Float32 {
		t.Float32[i] = float32(i%97)/97 - 0.5
	}
	return t
}

func tensorDoc(t testing.TB, ts ...tensor.Tensor) string {
	b, err := json.Marshal(tensor.Inputs{Inputs: ts})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// The result of a raw tensor job equals what onnxruntime_go computes on the same model and
// inputs, and names the model's sha256 and the provider.
func TestTensorJobMatchesReference(t *testing.T) {
	relayURL := testrelay.Start(t)
	w := startWorker(t, testConfig(t, relayURL))
	conn := testrelay.Dial(t, relayURL)
	in := detInput(32, 32)

	var manifest Manifest
	for _, m := range w.models {
		if m.manifest.Task == TaskTensor {
			manifest = m.manifest
		}
	}
	ref, err := w.rt.NewSession(filepath.Join(w.cfg.Models, manifest.Files["model"]))
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Close()
	want, err := ref.Run(context.Background(), []onnx.Tensor{in})
	if err != nil {
		t.Fatal(err)
	}

	for _, name := range []string{manifest.Name, ref.SHA256()} {
		job := newCustomer().post(t, tensor.KindRequest, nostr.Tags{{"i", tensorDoc(t, in), "text"}, {"param", "model", name}}, conn)
		res, errInfo := testrelay.JobOutcome(t, conn, job)
		if res == nil {
			t.Fatalf("model %s: job failed: %s", name, errInfo)
		}
		// the inline tensor document is in the request tag once, not copied again as an "i" tag
		r, err := nip90.ParseJobResult(res)
		if err != nil {
			t.Fatal(err)
		}
		if req, err := r.RequestEvent(); err != nil || req.ID != job.ID || len(r.Inputs) != 0 {
			t.Fatalf("result carries request %v (%v) and %d input copies; want the request only", req, err, len(r.Inputs))
		}
		var out tensor.Outputs
		if err := json.Unmarshal([]byte(res.Content), &out); err != nil {
			t.Fatal(err)
		}
		if out.Model != ref.SHA256() || out.Provider != onnx.ProviderCPU || len(out.Outputs) != len(want) {
			t.Fatalf("result header %s %s with %d outputs", out.Model, out.Provider, len(out.Outputs))
		}
		for i := range want {
			got, exp := out.Outputs[i], want[i]
			if got.Name != exp.Name || fmt.Sprint(got.Shape) != fmt.Sprint(exp.Shape) || len(got.Float32) != len(exp.Float32) {
				t.Fatalf("output %d: %s %v, want %s %v", i, got.Name, got.Shape, exp.Name, exp.Shape)
			}
			for k := range exp.Float32 {
				if got.Float32[k] != exp.Float32[k] {
					t.Fatalf("output %d element %d: %v, want %v", i, k, got.Float32[k], exp.Float32[k])
				}
			}
		}
	}
}

// Every kind of bad input gets error feedback with a clear reason, and the worker keeps serving.
func TestBadInput(t *testing.T) {
	relayURL := testrelay.Start(t)
	cfg := testConfig(t, relayURL)
	cfg.FetchBytes = 64 << 10
	w := startWorker(t, cfg)
	strict := testConfig(t, relayURL) // refuses private addresses, as in production
	strict.AllowPrivate = false
	ws := startWorker(t, strict)
	conn := testrelay.Dial(t, relayURL)

	png, _ := testimage.Render(24, "hello")
	site := serveFiles(t, map[string][2]string{
		"/page.png":  {"image/png", string(png)},
		"/notes.txt": {"text/plain", "just words"},
		"/huge.png":  {"image/png", string(png) + strings.Repeat("x", 70<<10)},
		"/fake.png":  {"image/png", "not a png at all"},
	})
	det := detInput(32, 32)
	wrongDType := tensor.Tensor{Name: "x", DType: tensor.Int64, Shape: []int64{1, 3, 32, 32}, Int64: make([]int64, 3*32*32)}
	wrongShape := tensor.Tensor{Name: "x", DType: tensor.Float32, Shape: []int64{1, 4, 32, 32}, Float32: make([]float32, 4*32*32)}
	wrongName := det
	wrongName.Name = "y"

	tests := []struct {
		name   string
		worker *Worker
		kind   int
		tags   nostr.Tags
		want   string // in the error feedback
	}{
		{"unreachable url", w, 5000, nostr.Tags{{"i", "http://127.0.0.1:1/page.png", "url"}}, "unreachable: connection refused"},
		{"missing file", w, 5000, nostr.Tags{{"i", site + "/nothing.png", "url"}}, "answered 404"},
		{"not an image", w, 5000, nostr.Tags{{"i", site + "/notes.txt", "url"}}, "input is text/plain, want image/png or image/jpeg"},
		{"oversized image", w, 5000, nostr.Tags{{"i", site + "/huge.png", "url"}}, "more than the 65536 bytes allowed"},
		{"image that is not one", w, 5000, nostr.Tags{{"i", site + "/fake.png", "url"}}, "image"},
		{"private address", ws, 5000, nostr.Tags{{"i", site + "/page.png", "url"}}, "private, loopback, link-local or reserved"},
		{"text input to ocr", w, 5000, nostr.Tags{{"i", "hello", "text"}}, `input type "text" not supported`},
		{"malformed tensor json", w, 5800, nostr.Tags{{"i", `{"inputs":[{"name":"x"`, "text"}, {"param", "model", "ppocrv4-det"}}, "tensor: invalid tensor document"},
		{"wrong data length", w, 5800, nostr.Tags{{"i", `{"inputs":[{"name":"x","dtype":"float32","shape":[1,3,2,2],"data":[1]}]}`, "text"}, {"param", "model", "ppocrv4-det"}}, "holds 12 elements, data has 1"},
		{"wrong dtype", w, 5800, nostr.Tags{{"i", tensorDoc(t, wrongDType), "text"}, {"param", "model", "ppocrv4-det"}}, "int64"},
		{"wrong shape", w, 5800, nostr.Tags{{"i", tensorDoc(t, wrongShape), "text"}, {"param", "model", "ppocrv4-det"}}, "shape"},
		{"wrong input name", w, 5800, nostr.Tags{{"i", tensorDoc(t, wrongName), "text"}, {"param", "model", "ppocrv4-det"}}, `"y"`},
		{"unknown model", w, 5800, nostr.Tags{{"i", tensorDoc(t, det), "text"}, {"param", "model", "gpt-17"}}, `unknown model "gpt-17"`},
		{"no model param", w, 5800, nostr.Tags{{"i", tensorDoc(t, det), "text"}}, `needs ["param", "model"`},
		{"kind not served", w, 5050, nostr.Tags{{"i", "write a poem", "text"}}, "kind 5050 is not served"},
	}
	cust := newCustomer()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tags := append(nostr.Tags{{"p", tc.worker.PubKey()}}, tc.tags...)
			job := cust.post(t, tc.kind, tags, conn)
			res, info := testrelay.JobOutcome(t, conn, job)
			if res != nil {
				t.Fatalf("job succeeded with %q", res.Content)
			}
			if !strings.Contains(info, tc.want) {
				t.Fatalf("error feedback %q, want it to mention %q", info, tc.want)
			}
		})
	}
	// and the worker still serves
	job := cust.post(t, 5000, nostr.Tags{{"i", site + "/page.png", "url"}, {"p", w.PubKey()}}, conn)
	if res, info := testrelay.JobOutcome(t, conn, job); res == nil || normalize(res.Content) != "hello" {
		t.Fatalf("after bad input the worker answered %v %q", res, info)
	}
}

// With one job running and the queue full, the next job is answered "busy" at once.
func TestQueueFullAnswersBusy(t *testing.T) {
	relayURL := testrelay.Start(t)
	cfg := testConfig(t, relayURL)
	cfg.Parallel, cfg.Queue = 1, 1
	w := startWorker(t, cfg)
	conn := testrelay.Dial(t, relayURL)

	png, _ := testimage.Render(24, "slow")
	fetched := make(chan struct{}, 4)
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		fetched <- struct{}{}
		if r.URL.Path == "/hold.png" {
			<-release // keep the first job running until the test lets go
		}
		rw.Header().Set("Content-Type", "image/png")
		rw.Write(png)
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })

	cust := newCustomer()
	running := cust.post(t, 5000, nostr.Tags{{"i", srv.URL + "/hold.png", "url"}}, conn)
	<-fetched // the worker is inside the first job
	queued := cust.post(t, 5000, nostr.Tags{{"i", srv.URL + "/a.png", "url"}, {"param", "n", "2"}}, conn)
	refused := cust.post(t, 5000, nostr.Tags{{"i", srv.URL + "/b.png", "url"}, {"param", "n", "3"}}, conn)

	if res, info := testrelay.JobOutcome(t, conn, refused); res != nil || !strings.HasPrefix(info, "busy") {
		t.Fatalf("third job: result %v, feedback %q; want busy", res, info)
	}
	release <- struct{}{}
	for _, job := range []nostr.Event{running, queued} {
		if res, info := testrelay.JobOutcome(t, conn, job); res == nil {
			t.Fatalf("job %s failed: %s", job.ID, info)
		}
	}
	if s := w.Stats(); s.Busy != 1 || s.Executed != 2 {
		t.Fatalf("stats %+v, want 1 busy and 2 executed", s)
	}
}

// A job posted to two relays the worker serves runs once.
func TestSameJobOnTwoRelaysRunsOnce(t *testing.T) {
	a, b := testrelay.Start(t), testrelay.Start(t)
	w := startWorker(t, testConfig(t, a, b))
	ca, cb := testrelay.Dial(t, a), testrelay.Dial(t, b)
	png, _ := testimage.Render(24, "once")
	site := serveFiles(t, map[string][2]string{"/p.png": {"image/png", string(png)}})
	job := newCustomer().post(t, 5000, nostr.Tags{{"i", site + "/p.png", "url"}, {"relays", a, b}}, ca, cb)
	for _, c := range []*relayconn.Conn{ca, cb} {
		if res, info := testrelay.JobOutcome(t, c, job); res == nil {
			t.Fatalf("no result on %s: %s", c.URL, info)
		}
	}
	if got := w.Stats().Executed; got != 1 {
		t.Fatalf("executed %d times, want once", got)
	}
}
