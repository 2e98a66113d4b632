package deploy

import (
	"encoding/json"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// compose is the part of docker-compose.yml the tests read. Compose validates the rest itself.
type compose struct {
	Services map[string]service `yaml:"services"`
	Volumes  map[string]any     `yaml:"volumes"`
}

// service is one compose service in the forms this repository writes: command a list, ports and
// volumes in short syntax, build a mapping.
type service struct {
	Build struct {
		Context    string `yaml:"context"`
		Dockerfile string `yaml:"dockerfile"`
	} `yaml:"build"`
	Entrypoint  any      `yaml:"entrypoint"`
	Command     []string `yaml:"command"`
	Environment envVars  `yaml:"environment"`
	EnvFile     envFiles `yaml:"env_file"`
	Ports       []string `yaml:"ports"`
	Volumes     []string `yaml:"volumes"`
	DependsOn   map[string]struct {
		Condition string `yaml:"condition"`
	} `yaml:"depends_on"`
	Healthcheck *struct {
		Test []string `yaml:"test"`
	} `yaml:"healthcheck"`
	Deploy struct {
		Resources struct {
			Reservations struct {
				Devices []struct {
					Capabilities []string `yaml:"capabilities"`
				} `yaml:"devices"`
			} `yaml:"reservations"`
		} `yaml:"resources"`
	} `yaml:"deploy"`
}

// envVars is a service's environment, written as a mapping or as a list of KEY=VALUE. A key
// without a value (compose passes the host's through) reads as empty.
type envVars map[string]string

func (e *envVars) UnmarshalYAML(n *yaml.Node) error {
	*e = envVars{}
	switch n.Kind {
	case yaml.MappingNode:
		var m map[string]*string
		if err := n.Decode(&m); err != nil {
			return err
		}
		for k, v := range m {
			(*e)[k] = ""
			if v != nil {
				(*e)[k] = *v
			}
		}
	case yaml.SequenceNode:
		var l []string
		if err := n.Decode(&l); err != nil {
			return err
		}
		for _, kv := range l {
			k, v, _ := strings.Cut(kv, "=")
			(*e)[k] = v
		}
	default:
		return fmt.Errorf("line %d: environment is a mapping or a list of KEY=VALUE", n.Line)
	}
	return nil
}

type envFile struct {
	Path     string
	Required bool
}

// envFiles is env_file: a path, or a list of paths and {path, required} mappings.
type envFiles []envFile

func (e *envFiles) UnmarshalYAML(n *yaml.Node) error {
	items := []*yaml.Node{n}
	if n.Kind == yaml.SequenceNode {
		items = n.Content
	}
	for _, item := range items {
		f := envFile{Required: true}
		switch item.Kind {
		case yaml.ScalarNode:
			f.Path = item.Value
		case yaml.MappingNode:
			var m struct {
				Path     string `yaml:"path"`
				Required *bool  `yaml:"required"`
			}
			if err := item.Decode(&m); err != nil {
				return err
			}
			f.Path = m.Path
			if m.Required != nil {
				f.Required = *m.Required
			}
		default:
			return fmt.Errorf("line %d: an env_file entry is a path or {path, required}", item.Line)
		}
		*e = append(*e, f)
	}
	return nil
}

// loadCompose parses docker-compose.yml, with the commented-out services of the images table
// uncommented unless the file has them already.
func loadCompose(t *testing.T) (compose, []byte) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(root, "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var c compose
	if err := yaml.Unmarshal(raw, &c); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	for _, img := range images {
		if _, ok := c.Services[img.service]; ok || !img.commented {
			continue
		}
		block := uncomment(string(raw), img.service)
		if block == "" {
			continue // TestCompose reports it missing
		}
		var extra compose
		if err := yaml.Unmarshal([]byte("services:\n"+block), &extra); err != nil {
			t.Fatalf("docker-compose.yml: the commented-out service %s, uncommented:\n%s\n%v", img.service, block, err)
		}
		c.Services[img.service] = extra.Services[img.service]
	}
	return c, raw
}

// uncomment returns the service name that text holds commented out (the line "  # name:" and
// the commented lines right below it), each line without its first "# ": what a user gets by
// uncommenting it. It returns "" when there is no such service.
func uncomment(text, name string) string {
	var b strings.Builder
	in := false
	for _, line := range strings.Split(text, "\n") {
		if line == "  # "+name+":" {
			in = true
		}
		if !in {
			continue
		}
		if !strings.HasPrefix(line, "  #") {
			break
		}
		b.WriteString("  " + strings.TrimPrefix(line[2:], "# ") + "\n")
	}
	return b.String()
}

// mount is a short-syntax volume: source:target[:mode].
type mount struct {
	source, target string
	readOnly       bool
}

// bind reports whether the source is a host path rather than a named volume.
func (m mount) bind() bool {
	return strings.HasPrefix(m.source, ".") || strings.HasPrefix(m.source, "/")
}

func parseVolume(v string) (mount, error) {
	parts := strings.Split(v, ":")
	switch len(parts) {
	case 1:
		return mount{target: parts[0]}, nil
	case 2:
		return mount{source: parts[0], target: parts[1]}, nil
	case 3:
		return mount{source: parts[0], target: parts[1], readOnly: slices.Contains(strings.Split(parts[2], ","), "ro")}, nil
	}
	return mount{}, fmt.Errorf("volume %q: want source:target[:mode]", v)
}

// containerPort returns the container side of a short-syntax port: "8000:7447/tcp" is 7447.
func containerPort(p string) string {
	p, _, _ = strings.Cut(p, "/")
	return p[strings.LastIndex(p, ":")+1:]
}

type instruction struct{ cmd, args string }

type stage []instruction

// dockerfile is a Dockerfile split into stages of instructions, comments dropped and
// continuation lines joined.
type dockerfile struct {
	text   string
	stages []stage
}

func readDockerfile(name string) (dockerfile, error) {
	b, err := os.ReadFile(name)
	if err != nil {
		return dockerfile{}, err
	}
	d := parseDockerfile(string(b))
	if len(d.stages) == 0 {
		return d, fmt.Errorf("%s: no instructions", name)
	}
	return d, nil
}

func parseDockerfile(text string) dockerfile {
	d := dockerfile{text: text}
	var logical strings.Builder
	flush := func() {
		line := strings.TrimSpace(logical.String())
		logical.Reset()
		if line == "" {
			return
		}
		cmd, args, _ := strings.Cut(line, " ")
		in := instruction{strings.ToUpper(cmd), strings.TrimSpace(args)}
		if in.cmd == "FROM" || len(d.stages) == 0 {
			d.stages = append(d.stages, nil)
		}
		d.stages[len(d.stages)-1] = append(d.stages[len(d.stages)-1], in)
	}
	for _, raw := range strings.Split(text, "\n") {
		line := strings.TrimSpace(raw)
		if strings.HasPrefix(line, "#") {
			continue // a comment or parser directive, also inside a continuation
		}
		if rest, ok := strings.CutSuffix(line, `\`); ok {
			logical.WriteString(strings.TrimSpace(rest) + " ")
			continue
		}
		logical.WriteString(line)
		flush()
	}
	flush()
	return d
}

func (d dockerfile) final() stage {
	if len(d.stages) == 0 {
		return nil
	}
	return d.stages[len(d.stages)-1]
}

// last returns the arguments of the stage's last cmd instruction.
func (s stage) last(cmd string) (string, bool) {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i].cmd == cmd {
			return s[i].args, true
		}
	}
	return "", false
}

func (s stage) text() string {
	var b strings.Builder
	for _, in := range s {
		b.WriteString(in.cmd + " " + in.args + "\n")
	}
	return b.String()
}

// execForm returns the final stage's cmd (ENTRYPOINT, CMD) in exec form, or nil.
func (d dockerfile) execForm(cmd string) []string {
	args, ok := d.final().last(cmd)
	var out []string
	if !ok || json.Unmarshal([]byte(args), &out) != nil {
		return nil
	}
	return out
}

func (d dockerfile) entrypoint() []string { return d.execForm("ENTRYPOINT") }
func (d dockerfile) cmd() []string        { return d.execForm("CMD") }

// env returns what the final stage's ENV instructions set, ${...} left unexpanded.
func (d dockerfile) env() map[string]string {
	env := map[string]string{}
	for _, in := range d.final() {
		if in.cmd != "ENV" {
			continue
		}
		f := shellFields(in.args)
		if len(f) > 0 && !strings.Contains(f[0], "=") { // the old ENV KEY VALUE form
			env[f[0]] = strings.Join(f[1:], " ")
			continue
		}
		for _, kv := range f {
			k, v, _ := strings.Cut(kv, "=")
			env[k] = v
		}
	}
	return env
}

// copySources returns what COPY and ADD take from the build context, in every stage.
func (d dockerfile) copySources() []string {
	var out []string
	for _, s := range d.stages {
		for _, in := range s {
			if (in.cmd != "COPY" && in.cmd != "ADD") || strings.Contains(in.args, "--from=") {
				continue
			}
			var f []string
			for _, a := range strings.Fields(in.args) {
				if !strings.HasPrefix(a, "--") && !strings.Contains(a, "://") {
					f = append(f, a)
				}
			}
			if len(f) > 1 {
				out = append(out, f[:len(f)-1]...)
			}
		}
	}
	return out
}

// shellFields splits s at blanks outside quotes and drops the quotes.
func shellFields(s string) []string {
	var out []string
	var cur strings.Builder
	var quote rune
	inField := false
	for _, r := range s {
		switch {
		case quote != 0 && r == quote:
			quote = 0
		case quote != 0:
			cur.WriteRune(r)
		case r == '"' || r == '\'':
			quote, inField = r, true
		case r == ' ' || r == '\t':
			if inField {
				out = append(out, cur.String())
				cur.Reset()
				inField = false
			}
		default:
			cur.WriteRune(r)
			inField = true
		}
	}
	if inField {
		out = append(out, cur.String())
	}
	return out
}

// ignoreRule is one .dockerignore pattern, matched as Docker's patternmatcher does for the
// syntax we use: *, ?, ** and ! (no [classes]).
type ignoreRule struct {
	re     *regexp.Regexp
	negate bool
}

func loadDockerignore(t *testing.T) []ignoreRule {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	return parseDockerignore(string(b))
}

func parseDockerignore(text string) []ignoreRule {
	var rules []ignoreRule
	for _, line := range strings.Split(text, "\n") {
		p := strings.TrimSpace(line)
		if p == "" || strings.HasPrefix(p, "#") {
			continue
		}
		var r ignoreRule
		if rest, ok := strings.CutPrefix(p, "!"); ok {
			r.negate, p = true, strings.TrimSpace(rest)
		}
		p = strings.TrimPrefix(path.Clean(p), "/")
		var re strings.Builder
		re.WriteString("^")
		for i := 0; i < len(p); i++ {
			switch {
			case strings.HasPrefix(p[i:], "**/"):
				re.WriteString("(.*/)?")
				i += 2
			case strings.HasPrefix(p[i:], "**"):
				re.WriteString(".*")
				i++
			case p[i] == '*':
				re.WriteString("[^/]*")
			case p[i] == '?':
				re.WriteString("[^/]")
			default:
				re.WriteString(regexp.QuoteMeta(p[i : i+1]))
			}
		}
		re.WriteString("$")
		r.re = regexp.MustCompile(re.String())
		rules = append(rules, r)
	}
	return rules
}

// ignored reports whether the build context leaves out p (slash-separated, relative to the
// root): the last rule matching p or a folder above it decides.
func ignored(rules []ignoreRule, p string) bool {
	out := false
	for _, r := range rules {
		for q := p; q != "." && q != "/"; q = path.Dir(q) {
			if r.re.MatchString(q) {
				out = !r.negate
				break
			}
		}
	}
	return out
}

func TestIgnored(t *testing.T) {
	tests := []struct {
		name     string
		patterns string
		path     string
		want     bool
	}{
		{name: "root glob", patterns: "*.nsec", path: "worker.nsec", want: true},
		{name: "root glob misses a subfolder", patterns: "*.nsec", path: "keys/worker.nsec", want: false},
		{name: "double star reaches subfolders", patterns: "**/*.nsec", path: "a/b/worker.nsec", want: true},
		{name: "double star matches the root too", patterns: "**/*.nsec", path: "worker.nsec", want: true},
		{name: "folder drops its files", patterns: "data/", path: "data/lmdb/data.mdb", want: true},
		{name: "folder pattern is anchored", patterns: "data/", path: "relay/data/x.go", want: false},
		{name: "star stays in its folder", patterns: "models/*.onnx", path: "models/sub/x.onnx", want: false},
		{name: "negation keeps one back", patterns: "*.env\n!keep.env", path: "keep.env", want: false},
		{name: "last rule wins", patterns: "!keep.env\n*.env", path: "keep.env", want: true},
		{name: "comment is no rule", patterns: "# *.go", path: "main.go", want: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := ignored(parseDockerignore(tc.patterns), tc.path); got != tc.want {
				t.Errorf("ignored(%q, %s) = %v, want %v", tc.patterns, tc.path, got, tc.want)
			}
		})
	}
}

func TestParseDockerfile(t *testing.T) {
	d := parseDockerfile(`# syntax=docker/dockerfile:1
ARG V=1
FROM golang AS build
COPY go.mod go.sum ./
RUN go build \
    # a comment inside a continuation
    -o /out/x ./x/cmd/x
FROM debian
COPY --from=build /out/x /usr/local/bin/x
COPY --chmod=0755 docker/script /usr/local/bin/script
ENV A=1 B="two words" \
    C=${V}
ENV D old form
USER 10001:10001
ENTRYPOINT ["x"]
CMD ["serve"]
`)
	if len(d.stages) != 3 {
		t.Fatalf("got %d stages, want 3 (the ARG preamble, build, final)", len(d.stages))
	}
	if run, _ := d.stages[1].last("RUN"); run != "go build -o /out/x ./x/cmd/x" {
		t.Errorf("RUN = %q", run)
	}
	wantEnv := map[string]string{"A": "1", "B": "two words", "C": "${V}", "D": "old form"}
	if env := d.env(); !reflect.DeepEqual(env, wantEnv) {
		t.Errorf("env = %q, want %q", env, wantEnv)
	}
	if ep, cmd := d.entrypoint(), d.cmd(); !slices.Equal(ep, []string{"x"}) || !slices.Equal(cmd, []string{"serve"}) {
		t.Errorf("entrypoint %q, cmd %q", ep, cmd)
	}
	if src := d.copySources(); !slices.Equal(src, []string{"go.mod", "go.sum", "docker/script"}) {
		t.Errorf("copy sources = %q", src)
	}
}
