package compose

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/heraldpush/herald/pkg/config"
	"github.com/heraldpush/herald/tools/internal/stackfile"
)

// undocumentedFlags are flags every binary has that the configuration tables do not list one by one
// (the README describes -version once, under Releases).
var undocumentedFlags = map[string]bool{"version": true}

// configTables reads the README's "### Configuration: <service>" tables: service → rows of cells.
func configTables(readme string) map[string][][]string {
	out := map[string][][]string{}
	var svc string
	for line := range strings.SplitSeq(readme, "\n") {
		if name, ok := strings.CutPrefix(line, "### Configuration: "); ok {
			svc = strings.TrimSpace(name)
			continue
		}
		if strings.HasPrefix(line, "#") {
			svc = ""
		}
		if svc == "" || !strings.HasPrefix(line, "| `-") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		out[svc] = append(out[svc], cells)
	}
	return out
}

// alternatives splits a cell that documents several flags at once ("`-a` / `-b`").
func alternatives(cell string) []string {
	parts := strings.Split(cell, " / ")
	for i, p := range parts {
		parts[i] = strings.TrimSpace(p)
	}
	return parts
}

var codeSpan = regexp.MustCompile("^`([^`]*)`$")

// testReadme checks the README's configuration tables against the binaries' real flags: every flag is
// listed under its service, with its environment variable and its default, and nothing is listed that
// the binary does not have.
func (st *stack) testReadme(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(st.root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	tables := configTables(string(b))
	for _, svc := range []string{"auth", "push-route", "push-server", "admin"} {
		bin := st.bins[svc]
		rows := tables[svc]
		if bin == nil || len(rows) == 0 {
			t.Errorf("README: no configuration table for %s (or no binary)", svc)
			continue
		}
		listed := map[string]bool{}
		for _, row := range rows {
			if len(row) < 4 {
				t.Errorf("README %s: row %q has %d cells, want flag, environment, default, meaning", svc, row, len(row))
				continue
			}
			flags, envs, defs := alternatives(row[0]), alternatives(row[1]), alternatives(row[2])
			for i, f := range flags {
				name := strings.TrimPrefix(strings.Trim(f, "`"), "-")
				listed[name] = true
				info, ok := bin.flags[name]
				if !ok {
					t.Errorf("README %s: -%s is listed but the binary has no such flag", svc, name)
					continue
				}
				if i < len(envs) && strings.Trim(envs[i], "`") != config.EnvName(name) {
					t.Errorf("README %s: -%s's variable is %s, want %s", svc, name, envs[i], config.EnvName(name))
				}
				if len(defs) != len(flags) {
					continue
				}
				checkDefault(t, svc, name, defs[i], info, bin.required[name] != "")
			}
		}
		for name := range bin.flags {
			if !listed[name] && !undocumentedFlags[name] {
				t.Errorf("README %s: -%s (%s) is missing from its configuration table", svc, name, bin.flags[name].usage)
			}
		}
	}
}

// checkDefault compares one default cell with the flag's real default. A literal in backticks must be
// the default; "(required)" a flag the binary refuses to start without; "(empty)" and "(any)" an empty
// default. Other cells describe a computed default (`ps-<hostname>`, "cores/2", "(generated …)") and
// are left to the reader.
func checkDefault(t *testing.T, svc, name, cell string, info flagInfo, required bool) {
	t.Helper()
	zero := info.def == "" || info.def == "0" || info.def == "false"
	switch m := codeSpan.FindStringSubmatch(cell); {
	case cell == "(required)":
		if !required {
			t.Errorf("README %s: -%s is documented as required, but the binary starts without it", svc, name)
		}
	case cell == "(empty)" || cell == "(any)":
		if info.def != "" {
			t.Errorf("README %s: -%s's default is documented as %s, but it is %q", svc, name, cell, info.def)
		}
	case m != nil && !strings.Contains(m[1], "<"):
		want := m[1]
		if info.typ == "duration" {
			// -h prints 24h as 24h0m0s.
			d1, err1 := time.ParseDuration(want)
			d2, err2 := time.ParseDuration(info.def)
			if err1 == nil && err2 == nil && d1 == d2 {
				return
			}
		}
		if info.def != want && !(zero && (want == "false" || want == "0")) {
			t.Errorf("README %s: -%s's default is documented as %q, but it is %q", svc, name, want, info.def)
		}
	}
}

// TestReadmeStackFields checks that the README names every field of .herald/stack.json, the local
// stack's description, which scripts and tools read.
func TestReadmeStackFields(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	typ := reflect.TypeFor[stackfile.Stack]()
	for i := range typ.NumField() {
		name, _, _ := strings.Cut(typ.Field(i).Tag.Get("json"), ",")
		if name == "" || name == "-" {
			continue
		}
		if !strings.Contains(readme, "`"+name+"`") {
			t.Errorf("README does not mention stack.json's field %s", name)
		}
	}
}

// TestReadmeCloseCodes checks that the README documents every WebSocket close code a push-server
// sends: the wire.Close constants its code names, and the close codes wsconn declares for protocol
// faults.
func TestReadmeCloseCodes(t *testing.T) {
	root := filepath.Join("..", "..")
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	wireCodes := closeConsts(t, filepath.Join(root, "pkg", "wire", "wire.go"), "Close")
	sent := map[string]int64{} // where it is named → code
	err = filepath.WalkDir(filepath.Join(root, "services", "push-server"), func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return err
		}
		for name, v := range closeConsts(t, path, "close") {
			sent[path+": "+name] = v
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, 0)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			if sel, ok := n.(*ast.SelectorExpr); ok {
				if x, ok := sel.X.(*ast.Ident); ok && x.Name == "wire" {
					if v, ok := wireCodes[sel.Sel.Name]; ok {
						sent[path+": wire."+sel.Sel.Name] = v
					}
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(sent) < 5 {
		t.Fatalf("found only %v: the walk is broken", sent)
	}
	for where, code := range sent {
		if code == 1005 {
			continue // "no status": how a close frame without a code is read, never sent (RFC 6455 7.4.1)
		}
		if !strings.Contains(string(readme), fmt.Sprintf("close `%d`", code)) {
			t.Errorf("README does not document close `%d` (%s)", code, where)
		}
	}
}

// closeConsts reads the integer constants of a Go file whose names start with prefix and whose values
// are WebSocket close codes (1000–4999).
func closeConsts(t *testing.T, path, prefix string) map[string]int64 {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), path, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, decl := range f.Decls {
		gd, ok := decl.(*ast.GenDecl)
		if !ok || gd.Tok != token.CONST {
			continue
		}
		for _, spec := range gd.Specs {
			vs := spec.(*ast.ValueSpec)
			for i, name := range vs.Names {
				if !strings.HasPrefix(name.Name, prefix) || i >= len(vs.Values) {
					continue
				}
				lit, ok := vs.Values[i].(*ast.BasicLit)
				if !ok || lit.Kind != token.INT {
					continue
				}
				if v, err := strconv.ParseInt(lit.Value, 0, 64); err == nil && v >= 1000 && v <= 4999 {
					out[name.Name] = v
				}
			}
		}
	}
	return out
}
