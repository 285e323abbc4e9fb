package compose

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/heraldpush/herald/pkg/config"
)

// What docker-compose.yml must describe.
var (
	infraServices = []string{"zookeeper", "redis", "kafka", "mysql"}
	// Herald's services in the compose file → their directory under services/.
	heraldServices = map[string]string{
		"auth":          "auth",
		"push-server-1": "push-server",
		"push-server-2": "push-server",
		"push-route":    "push-route",
		"admin":         "admin",
	}
	// The host port each Herald service's public listener is published on.
	publicHostPorts = map[string]int{"push-route": 8080, "auth": 8081, "push-server-1": 8082, "push-server-2": 8083, "admin": 8090}
	// The port each infrastructure image serves its clients on; Kafka's come from its advertised listeners.
	infraPorts = map[string]int{"zookeeper": 2181, "redis": 6379, "mysql": 3306}
	// Address flags that must reach one particular listener of the Herald service they name.
	targetListener = map[string]string{"push-route-url": "internal-addr", "push-api-url": "listen-addr"}
	// Variables a Go program reads besides its flags, allowed beside the HERALD_* ones.
	goRuntimeEnv = map[string]bool{"GOMAXPROCS": true, "GOMEMLIMIT": true, "GOGC": true, "GODEBUG": true, "GOTRACEBACK": true, "TZ": true}
)

type stack struct {
	root string
	c    *composeFile
	bins map[string]*binary // by directory under services/
}

func TestCompose(t *testing.T) {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.work")); err != nil {
		t.Fatalf("repository root %s: %v", root, err)
	}
	c, err := loadCompose(filepath.Join(root, "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	st := &stack{root: root, c: c}
	if !t.Run("services", st.testServices) {
		return // the other checks would only repeat that services are missing
	}

	var dirs []string
	for _, d := range heraldServices {
		if !slices.Contains(dirs, d) {
			dirs = append(dirs, d)
		}
	}
	slices.Sort(dirs)
	if st.bins, err = buildBinaries(root, t.TempDir(), dirs); err != nil {
		t.Fatal(err)
	}
	for _, d := range dirs {
		t.Logf("services/%s: %d flags, required: %v", d, len(st.bins[d].flags), sortedKeys(st.bins[d].required))
	}

	t.Run("builds", st.testBuilds)
	t.Run("env-names", st.testEnvNames)
	t.Run("required-flags", st.testRequired)
	t.Run("config-accepted", st.testAccepted)
	t.Run("ports", st.testPorts)
	t.Run("addresses", st.testAddresses)
	t.Run("depends-on", st.testDependsOn)
	t.Run("shutdown-grace", st.testShutdownGrace)
	t.Run("secrets", st.testSecrets)
	t.Run("kafka-topic", st.testKafkaTopic)
	t.Run("readme-tables", st.testReadme)
	t.Run("operators", st.testOperators)
}

func (st *stack) herald() []string { return sortedKeys(heraldServices) }

func (st *stack) bin(svc string) *binary { return st.bins[heraldServices[svc]] }

// value is a flag's value in the compose service svc: its HERALD_* variable when set and not empty
// (pkg/config ignores empty ones), else the flag's default.
func (st *stack) value(svc, flag string) (v string, set bool) {
	if v := st.c.services[svc].env[config.EnvName(flag)]; v != "" {
		return v, true
	}
	return st.bin(svc).flags[flag].def, false
}

// listenerPort is the port of a Herald service's -listen-addr or -internal-addr.
func (st *stack) listenerPort(svc, flag string) (int, error) {
	v, _ := st.value(svc, flag)
	_, port, err := hostPort(v)
	if err != nil {
		return 0, fmt.Errorf("%s: %s=%q: %v", svc, config.EnvName(flag), v, err)
	}
	return port, nil
}

// (a) Every service of the stack is there; Herald's are built, the others come from images.
func (st *stack) testServices(t *testing.T) {
	for _, name := range append(slices.Clone(infraServices), st.herald()...) {
		s := st.c.services[name]
		switch {
		case s == nil:
			t.Errorf("docker-compose.yml has no service %q", name)
		case heraldServices[name] != "" && s.build == nil:
			t.Errorf("%s has no build: it must be built from services/%s/Dockerfile", name, heraldServices[name])
		case heraldServices[name] == "" && s.image == "":
			t.Errorf("%s has no image", name)
		}
	}
}

// (b) Every Herald service is built from the repository root by services/<dir>/Dockerfile, and that
// Dockerfile builds ./services/<dir> statically, from everything the workspace needs, into a
// distroless image whose ENTRYPOINT is the binary and which EXPOSEs the ports compose uses.
func (st *stack) testBuilds(t *testing.T) {
	modules, err := workspaceModules(st.root)
	if err != nil {
		t.Fatal(err)
	}
	checked := map[string]*builtImage{}
	for _, name := range st.herald() {
		s, dir := st.c.services[name], heraldServices[name]
		ctx := filepath.Join(st.root, filepath.FromSlash(s.build["context"]))
		if ctx != st.root {
			t.Errorf("%s: build context %q is not the repository root: the go.work workspace needs every module", name, s.build["context"])
			continue
		}
		df := filepath.Join(ctx, filepath.FromSlash(s.build["dockerfile"]))
		want := filepath.Join(st.root, "services", dir, "Dockerfile")
		if df != want {
			t.Errorf("%s: builds from %s, want services/%s/Dockerfile", name, s.build["dockerfile"], dir)
			continue
		}
		img, ok := checked[dir]
		if !ok {
			img = st.checkDockerfile(t, dir, modules)
			checked[dir] = img
		}
		if img == nil {
			continue
		}
		for _, flag := range []string{"listen-addr", "internal-addr"} {
			port, err := st.listenerPort(name, flag)
			if err != nil {
				t.Error(err)
			} else if !img.exposed[port] {
				t.Errorf("%s listens on %d (-%s), but services/%s/Dockerfile EXPOSEs only %v", name, port, flag, dir, sortedPorts(img.exposed))
			}
		}
	}
}

type builtImage struct{ exposed map[int]bool }

func (st *stack) checkDockerfile(t *testing.T, dir string, modules []string) *builtImage {
	rel := "services/" + dir + "/Dockerfile"
	text, err := os.ReadFile(filepath.Join(st.root, filepath.FromSlash(rel)))
	if err != nil {
		t.Error(err)
		return nil
	}
	df := parseDockerfile(string(text))
	if len(df.stages) < 2 {
		t.Errorf("%s is not multi-stage (a Go build stage, then the runtime image)", rel)
		return nil
	}
	final := df.stages[len(df.stages)-1]
	if !strings.HasPrefix(final.base, "gcr.io/distroless/static") {
		t.Errorf("%s: the final stage is FROM %s, want gcr.io/distroless/static-debian12:nonroot", rel, final.base)
	}

	needed, err := moduleDirsOf(st.root, dir)
	if err != nil {
		t.Fatal(err)
	}
	var buildStage, out string
	for i, stg := range df.stages[:len(df.stages)-1] {
		workdir := "/"
		copied := map[string]bool{} // paths (files or directories) the stage has, mirrored from the context
		for _, in := range stg.instrs {
			switch in.cmd {
			case "WORKDIR":
				workdir = path.Join(workdir, in.args)
			case "COPY", "ADD":
				flags, srcs, dest := copyArgs(in.args)
				if flags["from"] != "" {
					continue
				}
				if !path.IsAbs(dest) {
					dest = path.Join(workdir, dest)
				}
				d, ok := relTo(workdir, path.Clean(dest))
				if !ok {
					continue // copied outside the tree the build runs in
				}
				for _, src := range srcs {
					src = path.Clean(src)
					fi, err := os.Stat(filepath.Join(st.root, filepath.FromSlash(src)))
					if err != nil {
						t.Errorf("%s: COPY %s: %v", rel, src, err)
						continue
					}
					if fi.IsDir() && d == src || !fi.IsDir() && (d == path.Dir(src) || d == src) {
						copied[src] = true
					}
				}
			case "RUN":
				f := strings.Fields(in.args)
				if !strings.Contains(in.args, "go build") || !slices.Contains(f, "./services/"+dir) {
					continue
				}
				if !strings.Contains(in.args, "CGO_ENABLED=0") {
					t.Errorf("%s: `%s` does not set CGO_ENABLED=0: distroless/static needs a static binary", rel, in.args)
				}
				for j, a := range f {
					if a == "-o" && j+1 < len(f) {
						out = f[j+1]
					} else if v, ok := strings.CutPrefix(a, "-o="); ok {
						out = v
					}
				}
				buildStage = stg.name
				if buildStage == "" {
					buildStage = strconv.Itoa(i)
				}
				has := func(p string) bool {
					for c := range copied {
						if c == "." || c == p || strings.HasPrefix(p, c+"/") {
							return true
						}
					}
					return false
				}
				if !has("go.work") {
					t.Errorf("%s does not copy go.work before `go build`", rel)
				}
				for _, m := range modules {
					if !has(m + "/go.mod") {
						t.Errorf("%s does not copy %s/go.mod before `go build`: the workspace loads only with the go.mod of every module in go.work", rel, m)
					}
				}
				for _, m := range needed {
					if !has(m) {
						t.Errorf("%s does not copy %s/ before `go build`, but ./services/%s is built from packages of that module", rel, m, dir)
					}
				}
			}
			if out != "" {
				break
			}
		}
		if out != "" {
			break
		}
	}
	if out == "" {
		t.Errorf("%s has no build stage running `go build -o <binary> ./services/%s`", rel, dir)
		return nil
	}

	img := &builtImage{exposed: map[int]bool{}}
	var bin string
	var entry []string
	for _, in := range final.instrs {
		switch in.cmd {
		case "COPY":
			flags, srcs, dest := copyArgs(in.args)
			if flags["from"] == buildStage && len(srcs) == 1 && srcs[0] == out {
				bin = dest
				if strings.HasSuffix(dest, "/") {
					bin = dest + path.Base(out)
				}
			}
		case "ENTRYPOINT":
			if err := json.Unmarshal([]byte(in.args), &entry); err != nil {
				t.Errorf("%s: ENTRYPOINT %s is not the exec (JSON) form: %v", rel, in.args, err)
			}
		case "EXPOSE":
			for _, p := range strings.Fields(in.args) {
				p, _, _ = strings.Cut(p, "/")
				if n, err := strconv.Atoi(p); err == nil {
					img.exposed[n] = true
				}
			}
		}
	}
	switch {
	case bin == "":
		t.Errorf("%s: the final stage does not COPY --from=%s %s (the binary go build wrote)", rel, buildStage, out)
	case len(entry) == 0 || entry[0] != bin:
		t.Errorf("%s: ENTRYPOINT %q does not run the binary %s", rel, entry, bin)
	}
	return img
}

// (c) Every HERALD_* variable a Herald service gets is the environment name of one of its real flags.
func (st *stack) testEnvNames(t *testing.T) {
	for _, name := range st.herald() {
		b := st.bin(name)
		for _, k := range sortedKeys(st.c.services[name].env) {
			switch {
			case strings.HasPrefix(k, config.EnvPrefix):
				if _, ok := b.byEnv[k]; !ok {
					guess := strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(k, config.EnvPrefix), "_", "-"))
					t.Errorf("%s sets %s, but services/%s has no flag -%s; its variables are %s", name, k, b.dir, guess, strings.Join(sortedKeys(b.byEnv), " "))
				}
			case !goRuntimeEnv[k]:
				t.Errorf("%s sets %s, which is neither a HERALD_* flag of services/%s nor a Go runtime variable", name, k, b.dir)
			}
		}
	}
}

// (d) Every flag a service refuses to start without is set, with a value even when .env sets nothing.
func (st *stack) testRequired(t *testing.T) {
	for _, name := range st.herald() {
		b := st.bin(name)
		for _, f := range sortedKeys(b.required) {
			env := config.EnvName(f)
			if _, set := st.value(name, f); !set {
				t.Errorf("%s does not set %s (or sets it empty), but services/%s refuses to start without -%s: %q", name, env, b.dir, f, b.required[f])
			}
		}
	}
}

// Each service, run with exactly the environment compose gives it, gets past all its configuration
// checks (URL forms, node id, session key length, …).
func (st *stack) testAccepted(t *testing.T) {
	for _, name := range st.herald() {
		b := st.bin(name)
		env := map[string]string{}
		for k, v := range st.c.services[name].env {
			env[k] = v
		}
		level := config.EnvName("log-level")
		if v, ok := env[level]; ok && v != "" {
			var l slog.Level
			if err := l.UnmarshalText([]byte(v)); err != nil {
				t.Errorf("%s: %s=%q is not a log level: %v", name, level, v, err)
			}
		}
		env[level] = stopLevel
		stderr, timedOut, err := runBinary(b.path, nil, env)
		switch {
		case err != nil:
			t.Error(err)
		case timedOut:
			t.Errorf("%s: services/%s with the compose environment did not stop after parsing its configuration; stderr:\n%s", name, b.dir, stderr)
		case !configAccepted(stderr):
			t.Errorf("%s: services/%s refuses the environment docker-compose.yml gives it: %s", name, b.dir, strings.TrimSpace(stderr))
		}
	}
}

// (e) Each Herald service publishes its public listener, and only that, on its own host port; what
// it advertises is what is published.
func (st *stack) testPorts(t *testing.T) {
	hostUsed := map[int]string{}
	for _, name := range sortedKeys(st.c.services) {
		for _, p := range st.c.services[name].ports {
			if other, dup := hostUsed[p.host]; dup && p.host != 0 {
				t.Errorf("%s and %s both publish host port %d", other, name, p.host)
			}
			hostUsed[p.host] = name
		}
	}
	for _, name := range st.herald() {
		s, b := st.c.services[name], st.bin(name)
		lport, err1 := st.listenerPort(name, "listen-addr")
		iport, err2 := st.listenerPort(name, "internal-addr")
		if err1 != nil || err2 != nil {
			t.Error(err1, err2)
			continue
		}
		if lport == iport {
			t.Errorf("%s: the public and the internal listener share port %d", name, lport)
		}
		var pub *portMapping
		for _, p := range s.ports {
			switch p.container {
			case lport:
				pub = &p
			case iport:
				t.Errorf("%s publishes its internal listener (%q, HERALD_INTERNAL_ADDR port %d): the internal API, /metrics and the probes must stay inside the compose network", name, p.raw, iport)
			default:
				t.Errorf("%s publishes container port %d (%q), but listens on %d (HERALD_LISTEN_ADDR) and %d (HERALD_INTERNAL_ADDR)", name, p.container, p.raw, lport, iport)
			}
		}
		if pub == nil {
			t.Errorf("%s does not publish its public listener: want ports: [\"%d:%d\"] (HERALD_LISTEN_ADDR port %d)", name, publicHostPorts[name], lport, lport)
			continue
		}
		if pub.host != publicHostPorts[name] {
			t.Errorf("%s publishes its public listener (container port %d) on host port %d, want %d", name, lport, pub.host, publicHostPorts[name])
		}

		for _, f := range sortedKeys(b.flags) {
			if !strings.HasPrefix(f, "advertise-") {
				continue
			}
			env := config.EnvName(f)
			v, set := st.value(name, f)
			if !set {
				t.Errorf("%s does not set %s: its default is made from the bind address, which no one else can dial", name, env)
				continue
			}
			u, err := url.Parse(v)
			if err != nil || u.Hostname() == "" {
				t.Errorf("%s: %s=%q is not a URL: %v", name, env, v, err)
				continue
			}
			port := urlPort(u)
			if strings.Contains(f, "internal") {
				// Other containers (push-route, admin) call it over the compose network.
				if u.Hostname() != name || port != iport {
					t.Errorf("%s: %s=%q, want http://%s:%d (its service name and HERALD_INTERNAL_ADDR port)", name, env, v, name, iport)
				}
				continue
			}
			// Devices dial it from outside: the published host port.
			if port != pub.host {
				t.Errorf("%s advertises %s=%q, but publishes its public listener on host port %d", name, env, v, pub.host)
			}
			if f == "advertise-ws-url" && (u.Scheme != "ws" && u.Scheme != "wss" || u.Path != "/ws") {
				t.Errorf("%s: %s=%q, want ws://<host>:%d/ws", name, env, v, pub.host)
			}
		}
	}
}

// (f) Every address a Herald service dials names a service of the stack, on a port that service
// serves, and the Herald service depends_on it; bind addresses listen beyond the container.
func (st *stack) testAddresses(t *testing.T) {
	for _, name := range st.herald() {
		b := st.bin(name)
		for _, f := range sortedKeys(b.flags) {
			env := config.EnvName(f)
			v, set := st.value(name, f)
			switch addressKind(f) {
			case "bind":
				host, _, err := hostPort(v)
				if err != nil {
					t.Errorf("%s: %s=%q: %v", name, env, v, err)
				} else if host != "" && host != "0.0.0.0" && host != "::" {
					t.Errorf("%s: %s=%q listens on %s only: other containers and the published ports cannot reach it; use 0.0.0.0:<port>", name, env, v, host)
				}
			case "target":
				if v == "" {
					continue // no default and not set: the feature is off
				}
				eps, err := endpoints(f, v)
				if err != nil {
					t.Errorf("%s: %s=%q: %v", name, env, v, err)
					continue
				}
				for _, ep := range eps {
					st.checkTarget(t, name, f, v, set, ep)
				}
				if strings.HasSuffix(f, "-dsn") {
					st.checkMySQLCredentials(t, name, env, v)
				}
			}
		}
	}
}

func (st *stack) checkTarget(t *testing.T, name, f, v string, set bool, ep endpoint) {
	s, env := st.c.services[name], config.EnvName(f)
	what := fmt.Sprintf("%s=%q", env, v)
	if !set {
		what = fmt.Sprintf("%s is not set, and the default of -%s, %q,", env, f, v)
	}
	switch ep.host {
	case "127.0.0.1", "localhost", "::1", "0.0.0.0", "":
		t.Errorf("%s: %s points at the container itself, not at a service of the stack", name, what)
		return
	case name:
		t.Errorf("%s: %s points at the service itself", name, what)
		return
	}
	if st.c.services[ep.host] == nil {
		t.Errorf("%s: %s names host %q, but docker-compose.yml has no such service", name, what, ep.host)
		return
	}
	if _, ok := s.dependsOn[ep.host]; !ok {
		t.Errorf("%s: %s points at %s, but %s does not depends_on %s", name, what, ep.host, name, ep.host)
	}
	ports, served := st.servedPorts(ep.host, f)
	if !slices.Contains(ports, ep.port) {
		t.Errorf("%s: %s dials %s on port %d, but %s serves %s on %v", name, what, ep.host, ep.port, ep.host, served, ports)
	}
}

// servedPorts lists the ports the service host serves the client of flag f on.
func (st *stack) servedPorts(host, f string) ([]int, string) {
	if _, ok := heraldServices[host]; ok {
		listeners := []string{"listen-addr", "internal-addr"}
		if l, ok := targetListener[f]; ok {
			listeners = []string{l}
		}
		var ports []int
		for _, l := range listeners {
			if p, err := st.listenerPort(host, l); err == nil {
				ports = append(ports, p)
			}
		}
		return ports, "-" + strings.Join(listeners, " and -")
	}
	if host == "kafka" {
		var ports []int
		for _, l := range strings.Split(st.c.services[host].env["KAFKA_ADVERTISED_LISTENERS"], ",") {
			if _, hp, ok := strings.Cut(l, "://"); ok {
				if h, p, err := hostPort(hp); err == nil && h == host {
					ports = append(ports, p)
				}
			}
		}
		return ports, "clients (KAFKA_ADVERTISED_LISTENERS with host kafka)"
	}
	if p, ok := infraPorts[host]; ok {
		return []int{p}, "clients"
	}
	return nil, "nothing this test knows"
}

var dsnRe = regexp.MustCompile(`^(?:([^:@]*)(?::([^@]*))?@)?tcp\(([^)]*)\)/([^?]*)`)

// checkMySQLCredentials compares a DSN's user, password and database with what the mysql image creates.
func (st *stack) checkMySQLCredentials(t *testing.T, name, env, dsn string) {
	m := dsnRe.FindStringSubmatch(dsn)
	mysql := st.c.services["mysql"]
	if m == nil || mysql == nil {
		return
	}
	user, pass, db := m[1], m[2], m[4]
	if db != mysql.env["MYSQL_DATABASE"] {
		t.Errorf("%s: %s names database %q, but mysql creates MYSQL_DATABASE=%q", name, env, db, mysql.env["MYSQL_DATABASE"])
	}
	switch {
	case user == "root":
		if pass != mysql.env["MYSQL_ROOT_PASSWORD"] {
			t.Errorf("%s: %s's root password is not mysql's MYSQL_ROOT_PASSWORD", name, env)
		}
	case user != mysql.env["MYSQL_USER"]:
		t.Errorf("%s: %s logs in as %q, but mysql creates MYSQL_USER=%q", name, env, user, mysql.env["MYSQL_USER"])
	case pass != mysql.env["MYSQL_PASSWORD"]:
		t.Errorf("%s: %s's password for %q is not mysql's MYSQL_PASSWORD", name, env, user)
	}
}

// addressKind sorts a flag: "bind" (an address to listen on), "advertise" (a URL handed to others,
// checked with the ports), "target" (an address dialled) or "".
func addressKind(f string) string {
	switch {
	case f == "listen-addr" || f == "internal-addr":
		return "bind"
	case strings.HasPrefix(f, "advertise-"):
		return "advertise"
	case f == "zookeeper" || strings.HasSuffix(f, "-addr") || strings.HasSuffix(f, "-url") ||
		strings.HasSuffix(f, "-urls") || strings.HasSuffix(f, "-dsn") || strings.HasSuffix(f, "-brokers"):
		return "target"
	}
	return ""
}

type endpoint struct {
	host string
	port int
}

// endpoints reads the hosts and ports an address flag's value names: a MySQL DSN, a URL, or a
// comma-separated host:port list (Redis, ZooKeeper, Kafka).
func endpoints(f, v string) ([]endpoint, error) {
	switch {
	case strings.HasSuffix(f, "-dsn"):
		m := dsnRe.FindStringSubmatch(v)
		if m == nil {
			return nil, fmt.Errorf("not a user:password@tcp(host:port)/database DSN")
		}
		h, p, err := hostPort(m[3])
		return []endpoint{{h, p}}, err
	case strings.HasSuffix(f, "-url"), strings.HasSuffix(f, "-urls"):
		var eps []endpoint
		for _, s := range strings.Split(v, ",") {
			u, err := url.Parse(strings.TrimSpace(s))
			if err != nil || u.Host == "" {
				return nil, fmt.Errorf("not a URL: %q", s)
			}
			eps = append(eps, endpoint{u.Hostname(), urlPort(u)})
		}
		return eps, nil
	}
	var eps []endpoint
	for _, s := range strings.Split(v, ",") {
		h, p, err := hostPort(s)
		if err != nil {
			return nil, err
		}
		eps = append(eps, endpoint{h, p})
	}
	return eps, nil
}

func urlPort(u *url.URL) int {
	if p, err := strconv.Atoi(u.Port()); err == nil {
		return p
	}
	switch u.Scheme {
	case "https", "wss":
		return 443
	}
	return 80
}

// Every depends_on names a service, and waits as long as the target allows: healthy when it has a
// healthcheck, completed for a one-shot job, started otherwise. The infrastructure has healthchecks.
func (st *stack) testDependsOn(t *testing.T) {
	for _, name := range infraServices {
		if !st.c.services[name].healthcheck {
			t.Errorf("%s has no healthcheck: the services depending on it would start before it answers", name)
		}
	}
	for _, name := range sortedKeys(st.c.services) {
		s := st.c.services[name]
		for _, dep := range sortedKeys(s.dependsOn) {
			tgt := st.c.services[dep]
			if tgt == nil {
				t.Errorf("%s depends_on %s, which is not a service", name, dep)
				continue
			}
			want, why := "service_started", "it has no healthcheck"
			switch {
			case tgt.healthcheck:
				want, why = "service_healthy", "it has a healthcheck"
			case tgt.restart == "no":
				want, why = "service_completed_successfully", "it is a one-shot job (restart: no)"
			}
			if s.dependsOn[dep] != want {
				t.Errorf("%s depends_on %s with condition %s, want %s: %s", name, dep, s.dependsOn[dep], want, why)
			}
		}
	}
}

// Compose lets a stopped service finish its own graceful shutdown before it kills it.
func (st *stack) testShutdownGrace(t *testing.T) {
	for _, name := range st.herald() {
		v, _ := st.value(name, "shutdown-timeout")
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Errorf("%s: -shutdown-timeout %q: %v", name, v, err)
			continue
		}
		if grace := st.c.services[name].stopGrace; grace <= d {
			t.Errorf("%s: stop_grace_period %s is not longer than its -shutdown-timeout %s: compose would SIGKILL it in the middle of its shutdown", name, grace, d)
		}
	}
}

var keygenRe = regexp.MustCompile(`go run \./tools/keygen -private (\S+) -public (\S+)`)

// Every /run/secrets/ path a service reads is a secret it mounts, defined from a file; the JWT keys
// come from secret files, and those are the files the keygen command in the file's comments writes.
func (st *stack) testSecrets(t *testing.T) {
	secretFile := func(name, env, p string) string {
		target := strings.TrimPrefix(p, "/run/secrets/")
		for _, ss := range st.c.services[name].secrets {
			if ss.target == target {
				file, ok := st.c.secrets[ss.source]
				if !ok || file == "" {
					t.Errorf("%s mounts secret %s, which is not defined with a file under the top-level secrets", name, ss.source)
				}
				return path.Clean(file)
			}
		}
		t.Errorf("%s: %s reads %s, but %s mounts no secret %q", name, env, p, name, target)
		return ""
	}
	m := keygenRe.FindStringSubmatch(st.c.text)
	if m == nil {
		t.Errorf("docker-compose.yml no longer says how to make the key files (go run ./tools/keygen -private … -public …)")
		m = []string{"", "", ""}
	}
	keyFiles := map[string]string{"jwt-private-key": path.Clean(m[1]), "jwt-public-keys": path.Clean(m[2])}
	for _, name := range st.herald() {
		for _, k := range sortedKeys(st.c.services[name].env) {
			flag := st.bin(name).byEnv[k]
			for p := range strings.SplitSeq(st.c.services[name].env[k], ",") {
				p = strings.TrimSpace(p)
				want, isKey := keyFiles[flag]
				switch {
				case p == "":
				case strings.HasPrefix(p, "/run/secrets/"):
					if file := secretFile(name, k, p); isKey && file != "" && file != want {
						t.Errorf("%s: %s reads the secret file %s, but the keygen command in docker-compose.yml writes %s", name, k, file, want)
					}
				case isKey:
					t.Errorf("%s: %s=%q: the JWT key must come from a secret file (/run/secrets/…), not inline or from the image", name, k, p)
				}
			}
		}
	}
}

// The upstream topic the push-servers write and admin archives exists with several partitions
// before they start: created by a one-shot job they wait for, or auto-created by the broker.
func (st *stack) testKafkaTopic(t *testing.T) {
	kafka := st.c.services["kafka"]
	autoCreate := !strings.EqualFold(kafka.env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"], "false")
	for _, name := range st.herald() {
		if _, ok := st.bin(name).flags["upstream-topic"]; !ok {
			continue
		}
		topic, _ := st.value(name, "upstream-topic")
		if autoCreate {
			if n, _ := strconv.Atoi(kafka.env["KAFKA_NUM_PARTITIONS"]); n < 2 {
				t.Errorf("kafka auto-creates %s (used by %s) with KAFKA_NUM_PARTITIONS=%q partitions; want several", topic, name, kafka.env["KAFKA_NUM_PARTITIONS"])
			}
			continue
		}
		creator := ""
		for _, other := range sortedKeys(st.c.services) {
			cmd := st.c.services[other].command
			if i := slices.Index(cmd, "--topic"); i >= 0 && i+1 < len(cmd) && cmd[i+1] == topic && slices.Contains(cmd, "--create") {
				creator = other
				if i := slices.Index(cmd, "--partitions"); i < 0 || i+1 >= len(cmd) {
					t.Errorf("%s creates %s without --partitions (the default is 1); want several", other, topic)
				} else if n, _ := strconv.Atoi(cmd[i+1]); n < 2 {
					t.Errorf("%s creates %s with %s partitions; want several", other, topic, cmd[i+1])
				}
			}
		}
		switch {
		case creator == "":
			t.Errorf("%s uses topic %s (-upstream-topic), but kafka does not auto-create topics and no service's command creates it (--create --topic %s)", name, topic, topic)
		case st.c.services[name].dependsOn[creator] != "service_completed_successfully":
			t.Errorf("%s uses topic %s, which %s creates, but does not depends_on %s with condition service_completed_successfully", name, topic, creator, creator)
		}
	}
}

// relTo makes the absolute path p relative to dir; ok is false when p is not inside dir.
func relTo(dir, p string) (rel string, ok bool) {
	switch {
	case p == dir:
		return ".", true
	case dir == "/":
		return strings.TrimPrefix(p, "/"), true
	case strings.HasPrefix(p, dir+"/"):
		return strings.TrimPrefix(p, dir+"/"), true
	}
	return "", false
}

func sortedPorts(m map[int]bool) []int {
	var ps []int
	for p := range m {
		ps = append(ps, p)
	}
	slices.Sort(ps)
	return ps
}
