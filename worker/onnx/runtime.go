package onnx

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/rs/zerolog"
	ort "github.com/yalue/onnxruntime_go"
)

// LibraryVersion is the ONNX Runtime release this package is built and tested against.
const LibraryVersion = "1.24.1"

// Execution providers, as ONNX Runtime names them.
const (
	ProviderCPU  = "CPUExecutionProvider"
	ProviderCUDA = "CUDAExecutionProvider"
)

var (
	// ErrNoLibrary means the ONNX Runtime shared library is not where we looked.
	ErrNoLibrary = errors.New("onnx: ONNX Runtime library not found")
	// ErrNoCUDA means device "cuda" was asked for and the CUDA execution provider cannot be added.
	ErrNoCUDA = errors.New("onnx: CUDA execution provider unavailable")
	// ErrOtherLibrary means a runtime is already open in this process with a different library.
	ErrOtherLibrary = errors.New("onnx: a runtime with another library is open")
	// ErrClosed is returned when using a closed Runtime or Session.
	ErrClosed = errors.New("onnx: closed")
)

const fetchHint = "run scripts/fetch-onnxruntime, or set SPARECYCLES_ONNXRUNTIME_LIB to libonnxruntime.so " + LibraryVersion

// env is ONNX Runtime's environment, which is process-wide in the C library and in
// onnxruntime_go: runtimes count references to it, the last Close destroys it.
var env struct {
	sync.Mutex
	refs int
	lib  string
}

// RuntimeConfig configures NewRuntime.
type RuntimeConfig struct {
	LibraryPath string // libonnxruntime.so; "" means FindLibrary("")
	Device      Device // the zero value means auto
	Threads     int    // intra-op threads per session; 0 means 1
}

// Runtime is an open ONNX Runtime: the library, the execution provider sessions use and their
// thread count. Open one per process and share it; it is safe for concurrent use.
type Runtime struct {
	log      zerolog.Logger
	lib      string
	device   Device
	provider string
	threads  int

	mu     sync.Mutex
	closed bool
}

// DefaultLibraryPath is where scripts/fetch-onnxruntime puts the library:
// $SPARECYCLES_CACHE (default ~/.cache/sparecycles)/onnxruntime/1.24.1/libonnxruntime.so.1.24.1.
func DefaultLibraryPath() string {
	cache := os.Getenv("SPARECYCLES_CACHE")
	if cache == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			home = "."
		}
		cache = filepath.Join(home, ".cache", "sparecycles")
	}
	return filepath.Join(cache, "onnxruntime", LibraryVersion, "libonnxruntime.so."+LibraryVersion)
}

// FindLibrary returns the path of the ONNX Runtime library: flagValue when set, else
// $SPARECYCLES_ONNXRUNTIME_LIB, else DefaultLibraryPath. The file must exist; if it does not,
// the error wraps ErrNoLibrary and says how to get it.
func FindLibrary(flagValue string) (string, error) {
	path, from := flagValue, "flag"
	if path == "" {
		path, from = os.Getenv("SPARECYCLES_ONNXRUNTIME_LIB"), "SPARECYCLES_ONNXRUNTIME_LIB"
	}
	if path == "" {
		path, from = DefaultLibraryPath(), "default path"
	}
	fi, err := os.Stat(path)
	switch {
	case err != nil:
		return "", fmt.Errorf("%w at %s (%s): %s", ErrNoLibrary, path, from, fetchHint)
	case !fi.Mode().IsRegular():
		return "", fmt.Errorf("%w at %s (%s): not a regular file; %s", ErrNoLibrary, path, from, fetchHint)
	}
	return path, nil
}

// NewRuntime loads the ONNX Runtime library and resolves cfg.Device to an execution provider.
// For "cuda" it fails with ErrNoCUDA when the CUDA provider cannot be added. "auto" tries
// CUDA only when the CUDA provider library sits beside the runtime (a GPU build): without it
// the CPU is used quietly, and when it fails one warning line says so (the runtime's own
// report is logged at debug level). It returns ErrNoLibrary when the library is missing and
// ErrOtherLibrary when another open runtime loaded a different one.
func NewRuntime(cfg RuntimeConfig, log zerolog.Logger) (*Runtime, error) {
	lib, err := FindLibrary(cfg.LibraryPath)
	if err != nil {
		return nil, err
	}
	if abs, err := filepath.Abs(lib); err == nil {
		lib = abs
	}
	device := cfg.Device
	switch device.Kind {
	case "":
		device.Kind = DeviceAuto
	case DeviceAuto, DeviceCPU, DeviceCUDA:
	default:
		return nil, fmt.Errorf("%w %q: want auto, cpu or cuda", ErrBadDevice, device.Kind)
	}
	threads := max(cfg.Threads, 1)

	env.Lock()
	defer env.Unlock()
	if env.refs > 0 && env.lib != lib {
		return nil, fmt.Errorf("%w: %s is loaded, not %s", ErrOtherLibrary, env.lib, lib)
	}
	if env.refs == 0 {
		ort.SetSharedLibraryPath(lib)
		if err := ort.InitializeEnvironment(ort.WithLogLevelError()); err != nil {
			return nil, fmt.Errorf("onnx: load %s: %w (%s)", lib, err, fetchHint)
		}
		env.lib = lib
	}
	env.refs++
	rt := &Runtime{log: log, lib: lib, device: device, provider: ProviderCPU, threads: threads}

	switch {
	case device.Kind == DeviceCPU:
	case device.Kind == DeviceAuto && !cudaBeside(lib):
		log.Debug().Str("lib", lib).Msg("no CUDA provider beside the runtime (a CPU build): running on cpu")
	default:
		switch err := probeCUDA(device.ID); {
		case err == nil:
			rt.provider = ProviderCUDA
		case device.Kind == DeviceCUDA:
			releaseEnv()
			log.Debug().Err(err).Msg("cuda provider")
			return nil, fmt.Errorf("%w on device %d: %s (it needs a GPU build of ONNX Runtime %s with %s beside the library, CUDA 12 and cuDNN 9)",
				ErrNoCUDA, device.ID, firstLine(err.Error()), LibraryVersion, cudaProviderLib)
		default:
			log.Debug().Err(err).Msg("cuda provider")
			log.Warn().Str("error", firstLine(err.Error())).Msg("cuda unavailable, running on cpu (details at log level debug)")
		}
	}
	log.Info().Str("lib", lib).Str("version", ort.GetVersion()).Str("device", device.String()).
		Str("provider", rt.provider).Int("threads", threads).Msg("onnx runtime ready")
	return rt, nil
}

// probeCUDA adds the CUDA execution provider to throwaway session options: the same step
// NewSession takes, done once up front so a missing provider shows at start-up. Called with
// env locked.
func probeCUDA(id int) error {
	// ONNX Runtime logs its own copy of this failure to stderr; ours says it better.
	if err := ort.SetEnvironmentLogLevel(ort.LoggingLevelFatal); err == nil {
		defer ort.SetEnvironmentLogLevel(ort.LoggingLevelError)
	}
	opts, err := ort.NewSessionOptions()
	if err != nil {
		return fmt.Errorf("onnx: session options: %w", err)
	}
	defer opts.Destroy()
	return appendCUDA(opts, id)
}

func appendCUDA(opts *ort.SessionOptions, id int) error {
	err := func() error {
		cuda, err := ort.NewCUDAProviderOptions()
		if err != nil {
			return err
		}
		defer cuda.Destroy()
		if err := cuda.Update(map[string]string{"device_id": strconv.Itoa(id)}); err != nil {
			return err
		}
		return opts.AppendExecutionProviderCUDA(cuda)
	}()
	return err
}

// cudaProviderLib is the library a GPU build of ONNX Runtime keeps beside libonnxruntime.
const cudaProviderLib = "libonnxruntime_providers_cuda.so"

// cudaBeside reports whether the CUDA provider library sits beside lib, or beside the file a
// symlinked lib points to.
func cudaBeside(lib string) bool {
	dirs := []string{filepath.Dir(lib)}
	if real, err := filepath.EvalSymlinks(lib); err == nil {
		dirs = append(dirs, filepath.Dir(real))
	}
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, cudaProviderLib)); err == nil {
			return true
		}
	}
	return false
}

// firstLine keeps the first non-empty line of a multi-line runtime report.
func firstLine(s string) string {
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			return l
		}
	}
	return s
}

// releaseEnv drops one reference to the environment and destroys it with the last. Called
// with env locked.
func releaseEnv() error {
	env.refs--
	if env.refs > 0 {
		return nil
	}
	env.lib = ""
	if err := ort.DestroyEnvironment(); err != nil {
		return fmt.Errorf("onnx: destroy environment: %w", err)
	}
	return nil
}

// Provider returns the execution provider new sessions use: ProviderCUDA or ProviderCPU.
func (rt *Runtime) Provider() string { return rt.provider }

// Device returns the device the runtime was configured with.
func (rt *Runtime) Device() Device { return rt.device }

// Threads returns the number of intra-op threads each session gets.
func (rt *Runtime) Threads() int { return rt.threads }

// LibraryPath returns the absolute path of the loaded library.
func (rt *Runtime) LibraryPath() string { return rt.lib }

// Close releases the runtime; NewSession then returns ErrClosed. Open sessions keep ONNX
// Runtime loaded until they are closed too, so the order of Close calls does not matter.
// Closing twice is a no-op.
func (rt *Runtime) Close() error {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if rt.closed {
		return nil
	}
	rt.closed = true
	env.Lock()
	defer env.Unlock()
	return releaseEnv()
}
