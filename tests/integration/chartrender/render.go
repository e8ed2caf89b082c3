// chartrender renders a Helm chart the way `helm template` does, without Helm (not in Debian): Go's
// text/template with Sprig's TxtFuncMap (the template language Helm uses) and the few functions Helm adds
// that the chart uses: include, tpl, toYaml, fromYaml, toJson, required (and Sprig's fail), plus the objects
// .Values, .Release, .Chart, .Capabilities, .Template and .Files (Get and GetBytes).
//
//	chartrender -chart charts/prescale [-f extra.yaml ...] [-name R] [-namespace N] [-notes] [-strict]
//
// Values are merged as Helm merges them: values.yaml, then each -f file in order; a later file wins, maps
// are merged key by key at every depth, and a key set to null removes the default. Numbers become float64
// as in Helm (which reads values through JSON), so a template comparing numbers behaves the same here.
// Output: each non-empty template as "---\n# Source: <chart>/templates/<file>\n<text>", like helm
// template; -notes prints the rendered NOTES.txt instead. A template error (required, fail, a missing key
// under -strict, a parse error) prints it and exits 1.
//
// Built by tests/integration/test_chart.py in GOPATH mode from Debian's golang-github-masterminds-sprig-dev
// and golang-gopkg-yaml.v3-dev (no module download), as grpcgo_client.py builds the grpc-go client.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/template"

	"github.com/Masterminds/sprig"
	"gopkg.in/yaml.v3"
)

// Helm's bound on nested include/tpl calls (a template including itself would otherwise never end).
const maxIncludeDepth = 1000

type valueFiles []string

func (v *valueFiles) String() string     { return strings.Join(*v, ",") }
func (v *valueFiles) Set(s string) error { *v = append(*v, s); return nil }

// Files is .Files: the chart's files outside templates/, by path relative to the chart.
type Files map[string][]byte

func (f Files) Get(name string) string      { return string(f[name]) }
func (f Files) GetBytes(name string) []byte { return f[name] }

// APIVersions is .Capabilities.APIVersions; Has answers as Helm does offline (`helm template` without
// --api-versions): only the built-in groups are known, so optional CRD objects stay off unless enabled.
type APIVersions []string

func (a APIVersions) Has(v string) bool {
	for _, x := range a {
		if x == v {
			return true
		}
	}
	return false
}

type kubeVersion struct{ Version, Major, Minor, GitVersion string }

func (k kubeVersion) String() string { return k.Version }

type capabilities struct {
	KubeVersion kubeVersion
	APIVersions APIVersions
}

type release struct {
	Name, Namespace, Service string
	IsInstall, IsUpgrade     bool
	Revision                 int
}

type tmplInfo struct{ Name, BasePath string }

// toFloats turns every number into float64 (Helm reads values through JSON) and every map into
// map[string]interface{}.
func toFloats(v interface{}) interface{} {
	switch x := v.(type) {
	case map[string]interface{}:
		for k, e := range x {
			x[k] = toFloats(e)
		}
		return x
	case []interface{}:
		for i, e := range x {
			x[i] = toFloats(e)
		}
		return x
	case int:
		return float64(x)
	case int64:
		return float64(x)
	case uint64:
		return float64(x)
	}
	return v
}

func readYAMLMap(path string) (map[string]interface{}, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	m := map[string]interface{}{}
	if err := yaml.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	if m == nil {
		m = map[string]interface{}{}
	}
	return toFloats(m).(map[string]interface{}), nil
}

// merge lays over onto base (Helm's coalescing of user values over the chart's): maps merge at every depth,
// anything else replaces, and null deletes the key.
func merge(base, over map[string]interface{}) map[string]interface{} {
	for k, ov := range over {
		if ov == nil {
			delete(base, k)
			continue
		}
		om, oIsMap := ov.(map[string]interface{})
		bm, bIsMap := base[k].(map[string]interface{})
		if oIsMap && bIsMap {
			base[k] = merge(bm, om)
		} else {
			base[k] = ov
		}
	}
	return base
}

// toYAML is Helm's toYaml: block YAML with 2-space indents, no trailing newline; an error renders as "".
func toYAML(v interface{}) string {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(v); err != nil {
		return ""
	}
	enc.Close()
	return strings.TrimSuffix(buf.String(), "\n")
}

func fromYAML(s string) map[string]interface{} {
	m := map[string]interface{}{}
	if err := yaml.Unmarshal([]byte(s), &m); err != nil {
		m["Error"] = err.Error()
	}
	return m
}

func toJSON(v interface{}) string {
	b, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	return string(b)
}

// required is Helm's: nil, or an empty string, is an error carrying the chart's message.
func required(msg string, v interface{}) (interface{}, error) {
	if v == nil {
		return v, errors.New(msg)
	}
	if s, ok := v.(string); ok && s == "" {
		return v, errors.New(msg)
	}
	return v, nil
}

type renderer struct {
	root    *template.Template
	depth   int
	missing string
}

func (r *renderer) funcs() template.FuncMap {
	f := sprig.TxtFuncMap()
	// Helm removes these two: a chart must not depend on the environment of whoever renders it.
	delete(f, "env")
	delete(f, "expandenv")
	f["toYaml"] = toYAML
	f["fromYaml"] = fromYAML
	f["toJson"] = toJSON
	f["required"] = required
	f["include"] = func(name string, data interface{}) (string, error) {
		if r.depth >= maxIncludeDepth {
			return "", fmt.Errorf("include of %q nested over %d deep", name, maxIncludeDepth)
		}
		r.depth++
		defer func() { r.depth-- }()
		var buf bytes.Buffer
		if err := r.root.ExecuteTemplate(&buf, name, data); err != nil {
			return "", err
		}
		return buf.String(), nil
	}
	f["tpl"] = func(text string, data interface{}) (string, error) {
		if r.depth >= maxIncludeDepth {
			return "", fmt.Errorf("tpl nested over %d deep", maxIncludeDepth)
		}
		r.depth++
		defer func() { r.depth-- }()
		// As Helm: the text sees the chart's defines, in a clone so that it cannot redefine them.
		t, err := r.root.Clone()
		if err != nil {
			return "", err
		}
		t, err = t.New("tpl").Option("missingkey=" + r.missing).Parse(text)
		if err != nil {
			return "", err
		}
		var buf bytes.Buffer
		if err := t.Execute(&buf, data); err != nil {
			return "", err
		}
		return strings.ReplaceAll(buf.String(), "<no value>", ""), nil
	}
	return f
}

// helmOwn are the chart's files that Helm keeps out of .Files (with templates/ and charts/).
var helmOwn = map[string]bool{"Chart.yaml": true, "values.yaml": true, "values.schema.json": true,
	"Chart.lock": true, "requirements.yaml": true}

// readFiles collects the chart's other files for .Files, by path relative to the chart, as Helm does.
func readFiles(chart string) (Files, error) {
	files := Files{}
	err := filepath.Walk(chart, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(chart, p)
		if info.IsDir() {
			if rel == "templates" || rel == "charts" {
				return filepath.SkipDir
			}
			return nil
		}
		if helmOwn[rel] {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		files[filepath.ToSlash(rel)] = data
		return nil
	})
	return files, err
}

func run() error {
	var (
		chart, name, namespace string
		extra                  valueFiles
		notes, strict          bool
	)
	flag.StringVar(&chart, "chart", "", "the chart's directory")
	flag.StringVar(&name, "name", "release-name", "release name (helm template's default)")
	flag.StringVar(&namespace, "namespace", "default", "release namespace")
	flag.Var(&extra, "f", "values file merged over values.yaml (repeatable; later wins)")
	flag.BoolVar(&notes, "notes", false, "print the rendered NOTES.txt instead of the manifests")
	flag.BoolVar(&strict, "strict", false, "a missing map key is an error (as helm lint --strict)")
	flag.Parse()
	if chart == "" || flag.NArg() != 0 {
		flag.Usage()
		os.Exit(2)
	}

	var meta map[string]interface{}
	data, err := os.ReadFile(filepath.Join(chart, "Chart.yaml"))
	if err != nil {
		return err
	}
	if err := yaml.Unmarshal(data, &meta); err != nil {
		return fmt.Errorf("Chart.yaml: %v", err)
	}
	// .Chart's fields are the Chart.yaml keys with a capital first letter (Name, Version, AppVersion...).
	chartObj := map[string]interface{}{}
	for k, v := range meta {
		chartObj[strings.ToUpper(k[:1])+k[1:]] = v
	}
	chartName, _ := meta["name"].(string)

	values, err := readYAMLMap(filepath.Join(chart, "values.yaml"))
	if err != nil {
		return err
	}
	for _, p := range extra {
		over, err := readYAMLMap(p)
		if err != nil {
			return err
		}
		values = merge(values, over)
	}
	files, err := readFiles(chart)
	if err != nil {
		return err
	}

	missing := "zero"
	if strict {
		missing = "error"
	}
	r := &renderer{missing: missing}
	r.root = template.New("").Option("missingkey=" + missing).Funcs(r.funcs())

	tdir := filepath.Join(chart, "templates")
	entries, err := os.ReadDir(tdir)
	if err != nil {
		return err
	}
	var names []string
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		n := e.Name()
		src, err := os.ReadFile(filepath.Join(tdir, n))
		if err != nil {
			return err
		}
		tname := chartName + "/templates/" + n
		if _, err := r.root.New(tname).Parse(string(src)); err != nil {
			return err
		}
		names = append(names, n)
	}
	sort.Strings(names)

	top := map[string]interface{}{
		"Values": values,
		"Chart":  chartObj,
		"Release": release{Name: name, Namespace: namespace, Service: "Helm", IsInstall: true,
			Revision: 1},
		"Capabilities": capabilities{
			KubeVersion: kubeVersion{Version: "v1.30.0", Major: "1", Minor: "30", GitVersion: "v1.30.0"},
			APIVersions: APIVersions{"v1", "apps/v1", "policy/v1", "batch/v1", "autoscaling/v2",
				"networking.k8s.io/v1", "rbac.authorization.k8s.io/v1"},
		},
		"Files": files,
	}

	var out bytes.Buffer
	for _, n := range names {
		// Helm renders templates/*.yaml, *.yml, *.tpl and NOTES.txt; files starting with "_" only define.
		if strings.HasPrefix(n, "_") {
			continue
		}
		isNotes := n == "NOTES.txt"
		if isNotes != notes {
			continue
		}
		tname := chartName + "/templates/" + n
		top["Template"] = tmplInfo{Name: tname, BasePath: chartName + "/templates"}
		var buf bytes.Buffer
		if err := r.root.ExecuteTemplate(&buf, tname, top); err != nil {
			return err
		}
		text := strings.ReplaceAll(buf.String(), "<no value>", "")
		if strings.TrimSpace(text) == "" {
			continue
		}
		if notes {
			out.WriteString(text)
			continue
		}
		fmt.Fprintf(&out, "---\n# Source: %s\n%s\n", tname, strings.TrimRight(text, "\n"))
	}
	_, err = os.Stdout.Write(out.Bytes())
	return err
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "Error:", err)
		os.Exit(1)
	}
}
