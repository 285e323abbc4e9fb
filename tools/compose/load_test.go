package compose

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/heraldpush/herald/pkg/config"
)

// composeFile is docker-compose.yml, decoded with YAML anchors and merge keys resolved and every
// ${VAR} interpolated as if no variable were set: what `docker compose up` does with the development
// defaults (a .env file is deliberately ignored).
type composeFile struct {
	text     string // the raw file, for checks against its comments
	services map[string]*service
	secrets  map[string]string // top-level secret name → file (relative to the compose file)
}

type service struct {
	name        string
	image       string
	build       map[string]string // context, dockerfile; nil without build
	env         map[string]string // only variables with a value; `KEY:` with no value passes the host's through
	dependsOn   map[string]string // service → condition
	ports       []portMapping
	healthcheck bool
	secrets     []serviceSecret
	stopGrace   time.Duration // compose's default, 10s, when not given
	restart     string
	command     []string
	volumes     []string // short syntax: source:target[:mode]
}

type portMapping struct {
	hostIP    string
	host      int // 0: not published on a fixed host port
	container int
	raw       string
}

type serviceSecret struct{ source, target string }

// loadCompose reads and interpolates path.
func loadCompose(path string) (*composeFile, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var doc map[string]any
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	v, err := interpolateTree(doc, "")
	if err != nil {
		return nil, err
	}
	doc = v.(map[string]any)

	c := &composeFile{text: string(raw), services: map[string]*service{}, secrets: map[string]string{}}
	services, ok := doc["services"].(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%s: no services", path)
	}
	for name, v := range services {
		m, ok := v.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("service %s: not a mapping", name)
		}
		s, err := parseService(name, m)
		if err != nil {
			return nil, fmt.Errorf("service %s: %w", name, err)
		}
		c.services[name] = s
	}
	if secrets, ok := doc["secrets"].(map[string]any); ok {
		for name, v := range secrets {
			m, _ := v.(map[string]any)
			file, _ := scalar(m["file"])
			c.secrets[name] = file
		}
	}
	return c, nil
}

func parseService(name string, m map[string]any) (*service, error) {
	s := &service{name: name, env: map[string]string{}, dependsOn: map[string]string{}, stopGrace: 10 * time.Second}
	s.image, _ = scalar(m["image"])
	s.restart, _ = scalar(m["restart"])
	if vs, ok := m["volumes"].([]any); ok {
		for _, v := range vs {
			if str, ok := scalar(v); ok {
				s.volumes = append(s.volumes, str)
			}
		}
	}

	switch b := m["build"].(type) {
	case nil:
	case string:
		s.build = map[string]string{"context": b, "dockerfile": "Dockerfile"}
	case map[string]any:
		s.build = map[string]string{"context": ".", "dockerfile": "Dockerfile"}
		if v, ok := scalar(b["context"]); ok {
			s.build["context"] = v
		}
		if v, ok := scalar(b["dockerfile"]); ok {
			s.build["dockerfile"] = v
		}
	default:
		return nil, fmt.Errorf("build: unexpected %T", b)
	}

	switch e := m["environment"].(type) {
	case nil:
	case map[string]any:
		for k, v := range e {
			if val, ok := scalar(v); ok {
				s.env[k] = val
			}
		}
	case []any:
		for _, item := range e {
			kv, _ := scalar(item)
			if k, v, ok := strings.Cut(kv, "="); ok {
				s.env[k] = v
			}
		}
	default:
		return nil, fmt.Errorf("environment: unexpected %T", e)
	}

	switch d := m["depends_on"].(type) {
	case nil:
	case []any:
		for _, item := range d {
			n, _ := scalar(item)
			s.dependsOn[n] = "service_started"
		}
	case map[string]any:
		for n, v := range d {
			cond := "service_started"
			if vm, ok := v.(map[string]any); ok {
				if c, ok := scalar(vm["condition"]); ok {
					cond = c
				}
			}
			s.dependsOn[n] = cond
		}
	default:
		return nil, fmt.Errorf("depends_on: unexpected %T", d)
	}

	if ports, ok := m["ports"].([]any); ok {
		for _, p := range ports {
			pm, err := parsePort(p)
			if err != nil {
				return nil, err
			}
			s.ports = append(s.ports, pm)
		}
	}

	if hc, ok := m["healthcheck"].(map[string]any); ok {
		s.healthcheck = true
		if d, _ := hc["disable"].(bool); d {
			s.healthcheck = false
		}
		if test, ok := hc["test"].([]any); ok && len(test) > 0 {
			if first, _ := scalar(test[0]); first == "NONE" {
				s.healthcheck = false
			}
		}
	}

	if secrets, ok := m["secrets"].([]any); ok {
		for _, item := range secrets {
			switch v := item.(type) {
			case string:
				s.secrets = append(s.secrets, serviceSecret{source: v, target: v})
			case map[string]any:
				src, _ := scalar(v["source"])
				tgt, ok := scalar(v["target"])
				if !ok {
					tgt = src
				}
				s.secrets = append(s.secrets, serviceSecret{source: src, target: tgt})
			}
		}
	}

	if g, ok := scalar(m["stop_grace_period"]); ok {
		d, err := time.ParseDuration(g)
		if err != nil {
			return nil, fmt.Errorf("stop_grace_period: %w", err)
		}
		s.stopGrace = d
	}

	switch c := m["command"].(type) {
	case string:
		s.command = strings.Fields(c)
	case []any:
		for _, item := range c {
			v, _ := scalar(item)
			s.command = append(s.command, v)
		}
	}
	return s, nil
}

// parsePort reads one entry of ports:, short ("[ip:]host:container[/proto]") or long syntax.
func parsePort(p any) (portMapping, error) {
	if m, ok := p.(map[string]any); ok {
		pm := portMapping{raw: fmt.Sprint(m)}
		t, _ := scalar(m["target"])
		pub, _ := scalar(m["published"])
		pm.hostIP, _ = scalar(m["host_ip"])
		var err error
		if pm.container, err = strconv.Atoi(t); err != nil {
			return pm, fmt.Errorf("ports: target %q: %w", t, err)
		}
		if pub != "" {
			if pm.host, err = strconv.Atoi(pub); err != nil {
				return pm, fmt.Errorf("ports: published %q (ranges are not supported here): %w", pub, err)
			}
		}
		return pm, nil
	}
	s, _ := scalar(p)
	pm := portMapping{raw: s}
	spec, _, _ := strings.Cut(s, "/")
	i := strings.LastIndex(spec, ":")
	cport, rest := spec[i+1:], ""
	if i >= 0 {
		rest = spec[:i]
	}
	var err error
	if pm.container, err = strconv.Atoi(cport); err != nil {
		return pm, fmt.Errorf("ports: %q: container port (ranges are not supported here): %w", s, err)
	}
	if rest != "" {
		hport := rest
		if j := strings.LastIndex(rest, ":"); j >= 0 {
			pm.hostIP, hport = strings.Trim(rest[:j], "[]"), rest[j+1:]
		}
		if hport != "" {
			if pm.host, err = strconv.Atoi(hport); err != nil {
				return pm, fmt.Errorf("ports: %q: host port (ranges are not supported here): %w", s, err)
			}
		}
	}
	return pm, nil
}

// scalar renders a YAML scalar as compose would pass it on; ok is false for null or a collection.
func scalar(v any) (string, bool) {
	switch x := v.(type) {
	case nil:
		return "", false
	case string:
		return x, true
	case int, int64, uint64, float64, bool:
		return fmt.Sprint(x), true
	default:
		return "", false
	}
}

func interpolateTree(v any, path string) (any, error) {
	switch x := v.(type) {
	case string:
		s, err := interpolate(x)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return s, nil
	case map[string]any:
		for k, item := range x {
			r, err := interpolateTree(item, path+"."+k)
			if err != nil {
				return nil, err
			}
			x[k] = r
		}
		return x, nil
	case []any:
		for i, item := range x {
			r, err := interpolateTree(item, fmt.Sprintf("%s[%d]", path, i))
			if err != nil {
				return nil, err
			}
			x[i] = r
		}
		return x, nil
	default:
		return v, nil
	}
}

// interpolate applies compose's variable syntax with every variable unset: $$ is a $, ${V:-d} and
// ${V-d} are d, ${V:?msg} is an error (the file would not start without V), anything else is empty.
func interpolate(s string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); {
		if s[i] != '$' {
			b.WriteByte(s[i])
			i++
			continue
		}
		if i+1 < len(s) && s[i+1] == '$' {
			b.WriteByte('$')
			i += 2
			continue
		}
		if i+1 < len(s) && s[i+1] == '{' {
			depth, j := 0, i+1
			for ; j < len(s); j++ {
				if s[j] == '{' {
					depth++
				} else if s[j] == '}' {
					if depth--; depth == 0 {
						break
					}
				}
			}
			if j == len(s) {
				return "", fmt.Errorf("unclosed ${ in %q", s)
			}
			v, err := expand(s[i+2 : j])
			if err != nil {
				return "", err
			}
			b.WriteString(v)
			i = j + 1
			continue
		}
		j := i + 1
		for j < len(s) && isNameByte(s[j]) {
			j++
		}
		if j == i+1 {
			b.WriteByte('$')
		}
		i = j
	}
	return b.String(), nil
}

func expand(expr string) (string, error) {
	n := 0
	for n < len(expr) && isNameByte(expr[n]) {
		n++
	}
	name, op := expr[:n], expr[n:]
	switch {
	case op == "":
		return "", nil
	case strings.HasPrefix(op, ":-"):
		return interpolate(op[2:])
	case strings.HasPrefix(op, "-"):
		return interpolate(op[1:])
	case strings.HasPrefix(op, ":?"), strings.HasPrefix(op, "?"):
		return "", fmt.Errorf("${%s} has no default: the stack does not start until %s is set", expr, name)
	case strings.HasPrefix(op, ":+"), strings.HasPrefix(op, "+"):
		return "", nil
	}
	return "", fmt.Errorf("${%s}: unknown syntax", expr)
}

func isNameByte(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// binary is one built Herald service and what running it taught.
type binary struct {
	dir      string // services/<dir>
	path     string
	flags    map[string]flagInfo // by flag name
	byEnv    map[string]string   // HERALD_* → flag name
	required map[string]string   // flag name → the error the binary refused to start with
}

type flagInfo struct {
	name, typ, usage, def string
}

// buildBinaries builds every services/<dir> into out, lists its flags from -h and finds the flags it
// refuses to start without.
func buildBinaries(root, out string, dirs []string) (map[string]*binary, error) {
	args := []string{"build", "-o", out + string(filepath.Separator)}
	for _, d := range dirs {
		args = append(args, "./services/"+d)
	}
	cmd := exec.Command("go", args...)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, b)
	}
	bins := map[string]*binary{}
	for _, d := range dirs {
		b := &binary{dir: d, path: filepath.Join(out, d), byEnv: map[string]string{}, required: map[string]string{}}
		help, _, err := runBinary(b.path, []string{"-h"}, nil)
		if err != nil {
			return nil, err
		}
		if b.flags, err = parseFlags(help); err != nil {
			return nil, fmt.Errorf("%s -h: %w\n%s", d, err, help)
		}
		for name := range b.flags {
			b.byEnv[config.EnvName(name)] = name
		}
		if err := b.findRequired(); err != nil {
			return nil, err
		}
		bins[d] = b
	}
	return bins, nil
}

// stopLevel is an invalid log level. Every service builds its logger right after its configuration is
// parsed and checked, so a run that fails on this level got past every configuration check and
// stopped before touching the network.
const stopLevel = "compose-drift-test-stop"

var requiredRe = regexp.MustCompile(`-([a-z0-9-]+) \((HERALD_[A-Z0-9_]+)\) is required`)

// findRequired runs the binary with an empty environment; while it refuses to start because a flag is
// required, that flag gets a placeholder and it runs again.
func (b *binary) findRequired() error {
	env := map[string]string{config.EnvName("log-level"): stopLevel}
	for range len(b.flags) + 1 {
		stderr, timedOut, err := runBinary(b.path, nil, env)
		if err != nil {
			return err
		}
		if configAccepted(stderr) {
			return nil
		}
		m := requiredRe.FindStringSubmatch(stderr)
		switch {
		case timedOut:
			return fmt.Errorf("%s with only its required flags set did not stop on -log-level %q; stderr:\n%s", b.dir, stopLevel, stderr)
		case m == nil:
			return fmt.Errorf("%s with only its required flags set (%v) refused to start with an error this test does not understand (teach findRequired): %s", b.dir, sortedKeys(b.required), stderr)
		case config.EnvName(m[1]) != m[2]:
			return fmt.Errorf("%s names the environment variable of -%s %s, but pkg/config reads %s", b.dir, m[1], m[2], config.EnvName(m[1]))
		case b.flags[m[1]].name == "":
			return fmt.Errorf("%s says -%s is required, but -h lists no such flag", b.dir, m[1])
		case b.required[m[1]] != "":
			return fmt.Errorf("%s still says -%s is required with %s=%q set", b.dir, m[1], m[2], env[m[2]])
		}
		b.required[m[1]] = strings.TrimSpace(stderr)
		env[m[2]] = "placeholder-of-the-compose-drift-test"
	}
	return fmt.Errorf("%s: more required flags than flags", b.dir)
}

func configAccepted(stderr string) bool {
	return strings.Contains(stderr, fmt.Sprintf("log level %q", stopLevel))
}

// runBinary runs path with exactly env (nothing inherited) and returns its stderr; a run still going
// after 20s is killed and reported as timed out.
func runBinary(path string, args []string, env map[string]string) (stderr string, timedOut bool, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Env = []string{}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var out bytes.Buffer
	cmd.Stderr = &out
	cmd.WaitDelay = 2 * time.Second
	err = cmd.Run()
	if ctx.Err() != nil {
		return out.String(), true, nil
	}
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		return "", false, fmt.Errorf("run %s: %w", path, err)
	}
	return out.String(), false, nil
}

var (
	flagLineRe     = regexp.MustCompile(`^  -([^\s=]+)(?: ([^\t]+))?(?:\t(.*))?$`)
	quotedDefRe    = regexp.MustCompile(`\(default ("(?:[^"\\]|\\.)*")\)$`)
	unquotedDefRe  = regexp.MustCompile(`\(default ([^\s()]+)\)$`)
	usageLineStart = "    \t"
)

// parseFlags reads the flag list flag.PrintDefaults writes: "  -name type" then the usage on lines
// starting with four spaces and a tab, ending in (default …) when the default is not the zero value
// (quoted for string flags).
func parseFlags(help string) (map[string]flagInfo, error) {
	flags := map[string]flagInfo{}
	var cur *flagInfo
	done := func() {
		if cur == nil {
			return
		}
		if cur.typ == "string" {
			if m := quotedDefRe.FindStringSubmatch(cur.usage); m != nil {
				cur.def, _ = strconv.Unquote(m[1])
			}
		} else if m := unquotedDefRe.FindStringSubmatch(cur.usage); m != nil {
			cur.def = m[1]
		}
		flags[cur.name] = *cur
	}
	for line := range strings.SplitSeq(help, "\n") {
		if m := flagLineRe.FindStringSubmatch(line); m != nil {
			done()
			cur = &flagInfo{name: m[1], typ: m[2], usage: m[3]}
			continue
		}
		if cur != nil && strings.HasPrefix(line, usageLineStart) {
			cur.usage = strings.TrimSpace(cur.usage + " " + strings.TrimPrefix(line, usageLineStart))
		}
	}
	done()
	if len(flags) == 0 {
		return nil, errors.New("no flags in the output")
	}
	return flags, nil
}

// workspaceModules lists the directories of go.work's modules, relative to root.
func workspaceModules(root string) ([]string, error) {
	cmd := exec.Command("go", "work", "edit", "-json")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go work edit -json: %w", err)
	}
	var w struct{ Use []struct{ DiskPath string } }
	if err := json.Unmarshal(out, &w); err != nil {
		return nil, err
	}
	var dirs []string
	for _, u := range w.Use {
		dirs = append(dirs, filepath.ToSlash(filepath.Clean(u.DiskPath)))
	}
	return dirs, nil
}

// moduleDirsOf lists the workspace directories whose packages ./services/<dir> is built from.
func moduleDirsOf(root, dir string) ([]string, error) {
	cmd := exec.Command("go", "list", "-deps", "-f", "{{with .Module}}{{.Dir}}{{end}}", "./services/"+dir)
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go list -deps ./services/%s: %w", dir, err)
	}
	seen := map[string]bool{}
	for line := range strings.SplitSeq(string(out), "\n") {
		rel, err := filepath.Rel(root, strings.TrimSpace(line))
		if line == "" || err != nil || strings.HasPrefix(rel, "..") {
			continue
		}
		seen[filepath.ToSlash(rel)] = true
	}
	return sortedKeys(seen), nil
}

// dockerfile is the little of a Dockerfile the checks need.
type dockerfile struct{ stages []stage }

type stage struct {
	name, base string
	instrs     []instr
}

type instr struct {
	cmd, args string
}

func parseDockerfile(text string) dockerfile {
	var df dockerfile
	var logical []string
	var cur strings.Builder
	for line := range strings.SplitSeq(text, "\n") {
		t := strings.TrimSpace(line)
		if strings.HasPrefix(t, "#") || (t == "" && cur.Len() == 0) {
			continue
		}
		if strings.HasSuffix(t, "\\") {
			cur.WriteString(strings.TrimSuffix(t, "\\") + " ")
			continue
		}
		cur.WriteString(t)
		logical = append(logical, cur.String())
		cur.Reset()
	}
	for _, l := range logical {
		cmd, args, _ := strings.Cut(l, " ")
		cmd = strings.ToUpper(cmd)
		args = strings.TrimSpace(args)
		if cmd == "FROM" {
			f := strings.Fields(args)
			var st stage
			for i := 0; i < len(f); i++ {
				switch {
				case strings.HasPrefix(f[i], "--"):
				case strings.EqualFold(f[i], "AS") && i+1 < len(f):
					st.name = f[i+1]
					i++
				default:
					st.base = f[i]
				}
			}
			df.stages = append(df.stages, st)
			continue
		}
		if len(df.stages) > 0 {
			s := &df.stages[len(df.stages)-1]
			s.instrs = append(s.instrs, instr{cmd: cmd, args: args})
		}
	}
	return df
}

// copyArgs splits COPY's arguments into its --flags, sources and destination (shell form only).
func copyArgs(args string) (flags map[string]string, sources []string, dest string) {
	flags = map[string]string{}
	var rest []string
	for _, f := range strings.Fields(args) {
		if strings.HasPrefix(f, "--") && len(rest) == 0 {
			k, v, _ := strings.Cut(strings.TrimPrefix(f, "--"), "=")
			flags[k] = v
			continue
		}
		rest = append(rest, f)
	}
	if len(rest) < 2 {
		return flags, nil, ""
	}
	return flags, rest[:len(rest)-1], rest[len(rest)-1]
}

// hostPort splits an address list entry; a ZooKeeper connect string may end in a chroot path.
func hostPort(s string) (host string, port int, err error) {
	s, _, _ = strings.Cut(s, "/")
	h, p, err := net.SplitHostPort(strings.TrimSpace(s))
	if err != nil {
		return "", 0, err
	}
	port, err = strconv.Atoi(p)
	return h, port, err
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
