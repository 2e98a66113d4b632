package deploy

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/sparecycles/sparecycles/internal/envflag"
	"github.com/sparecycles/sparecycles/relay"
	"github.com/sparecycles/sparecycles/wallet"
	"github.com/sparecycles/sparecycles/worker"
)

// root is the repository root: docker-compose.yml, .dockerignore and every build context.
const root = ".."

// envPrefix is the prefix of fs's variables, as the cmd/ mains pass it to envflag.Parse: the
// binary's, named by the flag set's first word ("wallet serve" -> SPARECYCLES_WALLET).
func envPrefix(fs *flag.FlagSet) string { return envflag.Prefix(strings.Fields(fs.Name())[0]) }

// stillShared are variables a binary reads besides its flags' twins, by the flag they stand
// in for: worker/onnx finds the library by SPARECYCLES_ONNXRUNTIME_LIB, which the images set.
var stillShared = map[string]string{"SPARECYCLES_ONNXRUNTIME_LIB": "onnxruntime-lib"}

// image is one service docker-compose.yml may hold, and what it must satisfy.
type image struct {
	service    string // its name in docker-compose.yml
	commented  bool   // shipped commented out: the test uncomments it (see uncomment)
	dockerfile string // build.dockerfile, relative to the repository root
	binary     string // what the Dockerfile's final stage runs
	// flags registers the binary's flags as its main does; it takes the command and returns
	// what is left to parse after a subcommand.
	flags    func(args []string) (fs *flag.FlagSet, rest []string, err error)
	state    []string // path flags whose files must outlive the container: on a writable volume
	inputs   []string // path flags read from a volume (read-only is fine)
	listen   string   // the flag of the address it serves on; "" when it serves nothing
	imageEnv []string // variables the final stage must set
	gpu      bool     // reserves GPUs and runs on --device cuda
}

var images = []image{
	{
		service: "relay", dockerfile: "docker/Dockerfile.relay", binary: "relay", flags: relayFlags,
		state: []string{"data"}, listen: "listen",
	},
	{
		service: "wallet", dockerfile: "docker/Dockerfile.wallet", binary: "wallet", flags: walletServeFlags,
		state: []string{"data"},
	},
	{
		service: "worker", dockerfile: "docker/Dockerfile.worker", binary: "worker", flags: workerFlags,
		state: []string{"data", "key-file"}, inputs: []string{"models"},
		imageEnv: []string{"SPARECYCLES_ONNXRUNTIME_LIB"},
	},
	{
		service: "worker-cuda", commented: true, dockerfile: "docker/Dockerfile.worker-cuda", binary: "worker", flags: workerFlags,
		state: []string{"data", "key-file"}, inputs: []string{"models"},
		imageEnv: []string{"SPARECYCLES_ONNXRUNTIME_LIB"}, gpu: true,
	},
}

// secretFlags would put a secret in the process list: secrets come from a file or a variable.
var secretFlags = map[string]string{"nwc": "SPARECYCLES_WORKER_NWC in an env file, or --nwc-file"}

func relayFlags(args []string) (*flag.FlagSet, []string, error) {
	fs := flag.NewFlagSet("relay", flag.ContinueOnError)
	new(relay.Config).RegisterFlags(fs)
	return fs, args, nil
}

func workerFlags(args []string) (*flag.FlagSet, []string, error) {
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	new(worker.Config).RegisterFlags(fs)
	return fs, args, nil
}

// walletServeFlags is `wallet serve`: the long-running subcommand. `wallet connect` is a one-off,
// for `docker compose run`.
func walletServeFlags(args []string) (*flag.FlagSet, []string, error) {
	if len(args) == 0 || args[0] != "serve" {
		return nil, nil, fmt.Errorf("command %q must start with the subcommand serve", args)
	}
	fs := flag.NewFlagSet("wallet serve", flag.ContinueOnError)
	new(wallet.Config).RegisterFlags(fs)
	return fs, args[1:], nil
}

// target is a service as the tests see it: its compose entry, its Dockerfile and its settings.
type target struct {
	image
	svc   service
	df    dockerfile
	fs    *flag.FlagSet       // the binary's flags, set from the command and the environment
	given map[string][]string // every value each flag received
}

func TestCompose(t *testing.T) {
	c, raw := loadCompose(t)
	for _, name := range slices.Sorted(maps.Keys(c.Services)) {
		if !slices.ContainsFunc(images, func(img image) bool { return img.service == name }) {
			t.Errorf("service %s: not in deploy's images table, so nothing checks it; add it there", name)
		}
	}
	checkNoSecrets(t, raw)

	targets := map[string]*target{}
	for _, img := range images {
		svc, ok := c.Services[img.service]
		if !ok {
			how := ""
			if img.commented {
				how = fmt.Sprintf(" (nor a commented one starting with the line %q)", "  # "+img.service+":")
			}
			t.Errorf("docker-compose.yml has no service %s%s", img.service, how)
			continue
		}
		tg, err := load(img, svc)
		if err != nil {
			t.Errorf("service %s: %v", img.service, err)
			continue
		}
		targets[img.service] = tg
	}

	for _, img := range images {
		tg := targets[img.service]
		if tg == nil {
			continue // reported above
		}
		t.Run(img.service, func(t *testing.T) {
			t.Run("image", func(t *testing.T) { checkImage(t, tg) })
			t.Run("env", func(t *testing.T) { checkEnvFiles(t, tg) })
			t.Run("volumes", func(t *testing.T) { checkVolumes(t, tg, c.Volumes) })
			t.Run("ports", func(t *testing.T) { checkPorts(t, tg) })
			t.Run("healthcheck", func(t *testing.T) { checkHealthcheck(t, tg) })
			t.Run("relays", func(t *testing.T) { checkRelays(t, tg, targets) })
			t.Run("gpu", func(t *testing.T) { checkGPU(t, tg) })
		})
	}

	// Comments hold the alternatives (lnd, a Docker secret): their flags must not rot either.
	t.Run("comments", func(t *testing.T) {
		for service, tokens := range commentTokens(string(raw)) {
			if service != "" && targets[service] == nil {
				continue // a service that didn't load: reported above
			}
			var sets []*flag.FlagSet
			for _, tg := range targets {
				if service == "" || tg.service == service {
					sets = append(sets, tg.fs)
				}
			}
			checkTokens(t, "docker-compose.yml comments of "+orElse(service, "the file"), tokens, sets)
		}
	})
}

// load finds the service's Dockerfile and runs its command and environment through the binary's flags.
func load(img image, svc service) (*target, error) {
	if svc.Build.Dockerfile != img.dockerfile {
		return nil, fmt.Errorf("build.dockerfile is %q, want %q", svc.Build.Dockerfile, img.dockerfile)
	}
	if c := path.Clean(svc.Build.Context); c != "." {
		return nil, fmt.Errorf("build.context is %q, want . (the Dockerfiles copy from the repository root)", svc.Build.Context)
	}
	if svc.Entrypoint != nil {
		return nil, errors.New("sets entrypoint: leave it to the image, whose ENTRYPOINT this test checks")
	}
	df, err := readDockerfile(filepath.Join(root, img.dockerfile))
	if err != nil {
		return nil, err
	}
	args := svc.Command
	if args == nil {
		args = df.cmd()
	}
	for _, a := range args {
		name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if strings.HasPrefix(a, "-") && secretFlags[name] != "" {
			return nil, fmt.Errorf("command passes --%s, whose value shows in ps: use %s", name, secretFlags[name])
		}
	}
	fs, given, err := configure(img, args, svc.Environment, df.env())
	if err != nil {
		return nil, err
	}
	return &target{image: img, svc: svc, df: df, fs: fs, given: given}, nil
}

// configure runs args and the environment layers (highest precedence first: compose's
// environment, then the image's ENV) through the binary's own flag set, the way
// internal/envflag.Parse does: a flag on the command line beats a variable.
func configure(img image, args []string, layers ...map[string]string) (*flag.FlagSet, map[string][]string, error) {
	fs, rest, err := img.flags(args)
	if err != nil {
		return nil, nil, err
	}
	fs.SetOutput(io.Discard)
	given := map[string][]string{}
	fs.VisitAll(func(f *flag.Flag) { f.Value = recorder{Value: f.Value, name: f.Name, given: given} })
	if err := fs.Parse(rest); err != nil {
		if strings.Contains(err.Error(), "not defined") {
			err = fmt.Errorf("%v; %s's flags are %s", err, fs.Name(), flagList(fs))
		}
		return nil, nil, fmt.Errorf("command %q: %v", rest, err)
	}
	if fs.NArg() > 0 {
		return nil, nil, fmt.Errorf("command: stray arguments %q (a value without its flag?)", fs.Args())
	}
	var errs []error
	names := envNames(fs)
	for _, layer := range layers {
		for _, k := range slices.Sorted(maps.Keys(layer)) {
			if strings.HasPrefix(k, envflag.Shared+"_") && names[k] == "" {
				errs = append(errs, fmt.Errorf("variable %s is no flag of %s, whose flags are %s", k, fs.Name(), flagList(fs)))
			}
		}
	}
	onCommandLine := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { onCommandLine[f.Name] = true })
	fs.VisitAll(func(f *flag.Flag) {
		if onCommandLine[f.Name] {
			return
		}
		env := envflag.Name(envPrefix(fs), f.Name)
		for _, layer := range layers {
			if v, ok := layer[env]; ok {
				if err := fs.Set(f.Name, v); err != nil {
					errs = append(errs, fmt.Errorf("variable %s=%s: %v", env, v, err))
				}
				return
			}
		}
	})
	return fs, given, errors.Join(errs...)
}

// recorder keeps every value a flag is given: Func flags (--relay) don't report theirs.
type recorder struct {
	flag.Value
	name  string
	given map[string][]string
}

func (r recorder) Set(s string) error {
	r.given[r.name] = append(r.given[r.name], s)
	return r.Value.Set(s)
}

// IsBoolFlag keeps --flag without a value working for bool flags.
func (r recorder) IsBoolFlag() bool {
	b, ok := r.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

func envNames(fs *flag.FlagSet) map[string]string {
	names := map[string]string{}
	fs.VisitAll(func(f *flag.Flag) { names[envflag.Name(envPrefix(fs), f.Name)] = f.Name })
	for env, name := range stillShared {
		if fs.Lookup(name) != nil {
			names[env] = name
		}
	}
	return names
}

func flagList(fs *flag.FlagSet) string {
	var names []string
	fs.VisitAll(func(f *flag.Flag) { names = append(names, "--"+f.Name) })
	return strings.Join(names, " ")
}

func value(fs *flag.FlagSet, name string) string { return fs.Lookup(name).Value.String() }

func checkImage(t *testing.T, tg *target) {
	final := tg.df.final()
	user, ok := final.last("USER")
	switch u, _, _ := strings.Cut(user, ":"); {
	case !ok:
		t.Errorf("%s: the final stage has no USER, so the %s runs as root", tg.dockerfile, tg.binary)
	case u == "" || u == "root" || u == "0":
		t.Errorf("%s: the final stage runs as USER %s; want a non-root user", tg.dockerfile, user)
	}
	if ep := tg.df.entrypoint(); len(ep) == 0 {
		t.Errorf("%s: the final stage has no exec-form ENTRYPOINT [\"%s\"] (exec form: the binary is PID 1 and gets SIGTERM)", tg.dockerfile, tg.binary)
	} else if path.Base(ep[0]) != tg.binary {
		t.Errorf("%s: ENTRYPOINT runs %q, want the %s binary", tg.dockerfile, ep[0], tg.binary)
	}
	if pkg := fmt.Sprintf("./%s/cmd/%s", tg.binary, tg.binary); !strings.Contains(tg.df.text, pkg) {
		t.Errorf("%s: builds no %s (want a go build of that package)", tg.dockerfile, pkg)
	}
	if !strings.Contains(tg.df.text, "CGO_ENABLED=1") {
		t.Errorf("%s: build with CGO_ENABLED=1 (LMDB and ONNX Runtime need cgo)", tg.dockerfile)
	}
	env := tg.df.env()
	for _, name := range tg.imageEnv {
		if env[name] == "" {
			t.Errorf("%s: the final stage sets no ENV %s", tg.dockerfile, name)
		}
	}
}

// checkEnvFiles checks the example of each env file the service reads: the files themselves hold
// secrets and stay on the user's machine.
func checkEnvFiles(t *testing.T, tg *target) {
	rules := loadDockerignore(t)
	for _, f := range tg.svc.EnvFile {
		if f.Required {
			t.Errorf("env_file %s is required, so compose refuses to start without it: set required: false and ship %s.example", f.Path, f.Path)
		}
		if !ignored(rules, path.Clean(f.Path)) {
			t.Errorf("env_file %s holds secrets but .dockerignore lets it into the build context", f.Path)
		}
		example := filepath.Join(root, f.Path+".example")
		b, err := os.ReadFile(example)
		if err != nil {
			t.Errorf("env_file %s: no example beside it: %v", f.Path, err)
			continue
		}
		checkTokens(t, f.Path+".example", tokensIn(string(b), false), []*flag.FlagSet{tg.fs})
	}
}

func checkVolumes(t *testing.T, tg *target, declared map[string]any) {
	mounts := make([]mount, 0, len(tg.svc.Volumes))
	for _, v := range tg.svc.Volumes {
		m, err := parseVolume(v)
		if err != nil {
			t.Error(err)
			continue
		}
		switch {
		case m.source == "":
			t.Errorf("volume %q is anonymous: name it, and declare it under the top-level volumes", v)
		case m.bind():
			if _, err := os.Stat(filepath.Join(root, m.source)); err != nil {
				t.Errorf("volume %q binds %s, which is not in the repository: %v", v, m.source, err)
			}
		default:
			if _, ok := declared[m.source]; !ok {
				t.Errorf("volume %q uses %s, which the top-level volumes don't declare", v, m.source)
			}
		}
		mounts = append(mounts, m)
	}
	used := map[string]bool{}
	check := func(name string, writable bool) {
		p := value(tg.fs, name)
		if !path.IsAbs(p) {
			t.Errorf("--%s %q is relative to the image's working directory: give an absolute path on a volume", name, p)
			return
		}
		for _, m := range mounts {
			if p == m.target || strings.HasPrefix(p, strings.TrimSuffix(m.target, "/")+"/") {
				used[m.target] = true
				if writable && m.readOnly {
					t.Errorf("--%s %s is on the read-only volume %s:%s", name, p, m.source, m.target)
				}
				return
			}
		}
		why := "what is written there goes with the container"
		if !writable {
			why = "the image holds none of it"
		}
		t.Errorf("--%s %s is on no volume, and %s: mount one there (volumes: %q)", name, p, why, tg.svc.Volumes)
	}
	for _, name := range tg.state {
		check(name, true)
	}
	for _, name := range tg.inputs {
		check(name, false)
	}
	for _, m := range mounts {
		if !used[m.target] {
			t.Errorf("volume %s:%s is mounted where no path flag (--%s) points", m.source, m.target, strings.Join(slices.Concat(tg.state, tg.inputs), ", --"))
		}
	}
}

func checkPorts(t *testing.T, tg *target) {
	if tg.listen == "" {
		if len(tg.svc.Ports) > 0 {
			t.Errorf("publishes %q but the %s serves nothing", tg.svc.Ports, tg.binary)
		}
		return
	}
	addr := value(tg.fs, tg.listen)
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("--%s %q: %v", tg.listen, addr, err)
	}
	if host != "" && host != "0.0.0.0" && host != "::" {
		t.Errorf("--%s %s: inside a container listen on 0.0.0.0, or neither other containers nor the published port reach it", tg.listen, addr)
	}
	if len(tg.svc.Ports) == 0 {
		t.Errorf("publishes no port: want %s, the port of --%s %s", port, tg.listen, addr)
	}
	for _, p := range tg.svc.Ports {
		if got := containerPort(p); got != port {
			t.Errorf("ports %q publishes container port %s, but --%s is %s", p, got, tg.listen, addr)
		}
	}
}

func checkHealthcheck(t *testing.T, tg *target) {
	hc := tg.svc.Healthcheck
	if hc == nil || len(hc.Test) == 0 {
		t.Fatalf("no healthcheck: depends_on conditions and restarts can't tell a stuck %s from a working one", tg.binary)
	}
	switch hc.Test[0] {
	case "CMD", "CMD-SHELL":
	default:
		t.Fatalf("healthcheck test %q: want [\"CMD\", program, args...] or [\"CMD-SHELL\", script]", hc.Test)
	}
	if len(hc.Test) < 2 {
		t.Fatalf("healthcheck test %q runs nothing", hc.Test)
	}
	prog := strings.Fields(hc.Test[1])[0]
	if hc.Test[0] == "CMD" && !strings.Contains(tg.df.final().text(), path.Base(prog)) {
		t.Errorf("healthcheck runs %s, which %s's final stage neither installs nor copies", prog, tg.dockerfile)
	}
	if tg.listen != "" {
		_, port, _ := net.SplitHostPort(value(tg.fs, tg.listen))
		if !strings.Contains(strings.Join(hc.Test, " "), ":"+port) {
			t.Errorf("healthcheck %q doesn't ask port %s, where --%s serves", hc.Test, port, tg.listen)
		}
	}
}

// checkRelays: a relay URL naming another service must reach it on its port, once it is healthy.
func checkRelays(t *testing.T, tg *target, targets map[string]*target) {
	for _, v := range tg.given["relay"] {
		for _, raw := range strings.Split(v, ",") {
			u, err := url.Parse(strings.TrimSpace(raw))
			if err != nil {
				t.Errorf("relay %q: %v", raw, err)
				continue
			}
			other := targets[u.Hostname()]
			if other == nil {
				continue // a relay outside this file
			}
			if other.listen == "" {
				t.Errorf("relay %s names the service %s, which serves nothing", raw, other.service)
				continue
			}
			_, port, _ := net.SplitHostPort(value(other.fs, other.listen))
			if u.Scheme != "ws" || u.Port() != port {
				t.Errorf("relay %s: service %s serves ws://%s:%s", raw, other.service, other.service, port)
			}
			if dep, ok := tg.svc.DependsOn[other.service]; !ok || dep.Condition != "service_healthy" {
				t.Errorf("relay %s: depend on %s with condition: service_healthy, or the first connection may find it down", raw, other.service)
			}
		}
	}
}

func checkGPU(t *testing.T, tg *target) {
	if !tg.gpu {
		return
	}
	if d := value(tg.fs, "device"); !strings.HasPrefix(d, "cuda") {
		t.Errorf("--device %s: want cuda (or cuda:N), which refuses to start without a GPU", d)
	}
	for _, dev := range tg.svc.Deploy.Resources.Reservations.Devices {
		if slices.Contains(dev.Capabilities, "gpu") {
			return
		}
	}
	t.Errorf("reserves no GPU: want deploy.resources.reservations.devices with capabilities: [gpu]")
}

var secretPattern = regexp.MustCompile(`nostr\+walletconnect:|\bnsec1[02-9ac-hj-np-z]{20,}|[?&]secret=`)

// checkNoSecrets fails on a secret written as a value anywhere in the compose file (comments
// may show the shape of one).
func checkNoSecrets(t *testing.T, raw []byte) {
	var doc yaml.Node
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	var walk func(n *yaml.Node)
	walk = func(n *yaml.Node) {
		if n.Kind == yaml.ScalarNode && secretPattern.MatchString(n.Value) {
			t.Errorf("docker-compose.yml line %d holds a secret (%.24s...): put it in docker/worker.env or a Docker secret", n.Line, n.Value)
		}
		for _, c := range n.Content {
			walk(c)
		}
	}
	walk(&doc)
}

var (
	quotedFlag = regexp.MustCompile(`"--([a-z0-9][a-z0-9-]*)"`)
	envVar     = regexp.MustCompile(`\bSPARECYCLES_[A-Z0-9_]+\b`)
)

// token is a flag or variable name found in text, with its line.
type token struct {
	line int
	flag string // without dashes, or ""
	env  string // or ""
}

// tokensIn finds SPARECYCLES_* variables in text and, with quotedFlags, quoted "--flags" (the
// form a command list takes; bare --words in prose may be docker's or another subcommand's).
func tokensIn(text string, quotedFlags bool) []token {
	var out []token
	for i, line := range strings.Split(text, "\n") {
		for _, m := range envVar.FindAllString(line, -1) {
			out = append(out, token{line: i + 1, env: m})
		}
		if quotedFlags {
			for _, m := range quotedFlag.FindAllStringSubmatch(line, -1) {
				out = append(out, token{line: i + 1, flag: m[1]})
			}
		}
	}
	return out
}

// commentTokens returns the flags and variables in docker-compose.yml's comments, by the service
// they sit in ("" for the rest of the file); line numbers are the file's.
func commentTokens(text string) map[string][]token {
	serviceLine := regexp.MustCompile(`^  (?:# )?([a-z0-9][a-z0-9_-]*):\s*$`)
	out := map[string][]token{}
	service, inServices := "", false
	for i, line := range strings.Split(text, "\n") {
		switch {
		case line == "services:":
			inServices = true
			continue
		case line != "" && line[0] != ' ' && line[0] != '#':
			service, inServices = "", false
		case inServices:
			if m := serviceLine.FindStringSubmatch(line); m != nil {
				service = m[1]
			}
		}
		_, comment, ok := strings.Cut(line, "#")
		if !ok {
			continue
		}
		for _, tok := range tokensIn(comment, true) {
			tok.line = i + 1
			out[service] = append(out[service], tok)
		}
	}
	return out
}

// checkTokens fails on a flag or variable that none of sets has.
func checkTokens(t *testing.T, where string, tokens []token, sets []*flag.FlagSet) {
	t.Helper()
	for _, tok := range tokens {
		found := slices.ContainsFunc(sets, func(fs *flag.FlagSet) bool {
			if tok.flag != "" {
				return fs.Lookup(tok.flag) != nil
			}
			return envNames(fs)[tok.env] != ""
		})
		if !found {
			name := orElse(tok.env, "--"+tok.flag)
			t.Errorf("%s, line %d: %s is no flag (or flag variable) of %s", where, tok.line, name, setNames(sets))
		}
	}
}

func setNames(sets []*flag.FlagSet) string {
	var names []string
	for _, fs := range sets {
		if !slices.Contains(names, fs.Name()) {
			names = append(names, fs.Name())
		}
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}

func orElse(s, otherwise string) string {
	if s != "" {
		return s
	}
	return otherwise
}

func TestDockerignore(t *testing.T) {
	rules := loadDockerignore(t)
	// Secrets, state and the models (a volume) stay out of every image and build cache.
	for _, p := range []string{
		"models/ch_PP-OCRv4_det_infer.onnx", "data/data.mdb", "worker-data/worker.sqlite",
		"wallet-data/wallet.sqlite", "worker.nsec", "e2e/keys/customer.nsec", "docker/worker.env",
		"docker/secrets/worker_nwc", ".git/config",
	} {
		if !ignored(rules, p) {
			t.Errorf(".dockerignore lets %s into the build context", p)
		}
	}
	// What the Dockerfiles copy, and every Go source, must stay in.
	for _, f := range []string{"docker/Dockerfile.relay", "docker/Dockerfile.worker", "docker/Dockerfile.worker-cuda", "docker/Dockerfile.wallet"} {
		df, err := readDockerfile(filepath.Join(root, f))
		if err != nil {
			t.Error(err)
			continue
		}
		for _, src := range df.copySources() {
			if _, err := os.Stat(filepath.Join(root, src)); err != nil {
				t.Errorf("%s copies %s: %v", f, src, err)
			}
			if src != "." && ignored(rules, path.Clean(src)) {
				t.Errorf("%s copies %s, which .dockerignore leaves out", f, src)
			}
		}
	}
	var needed []string
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		rel = filepath.ToSlash(rel)
		switch {
		case d.IsDir() && d.Name() == ".git":
			return filepath.SkipDir
		case d.IsDir():
			return nil
		case strings.HasSuffix(rel, ".go") || d.Name() == "go.mod" || d.Name() == "go.sum":
			if ignored(rules, rel) {
				needed = append(needed, rel)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(needed) > 0 {
		t.Errorf(".dockerignore leaves out %d files the build needs: %s", len(needed), strings.Join(needed[:min(len(needed), 5)], ", "))
	}
}
