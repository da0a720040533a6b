package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"text/template"
)

// Pair is one key as ls and tree return it.
type Pair struct {
	Key      string // relative to the prefix asked for: "port" for "app/port" in ls "app/"
	Path     string // the full config key: "app/port"
	Value    string
	Revision int64 // the key's mod revision
}

// String is the value, so that {{ . }} on a pair prints it.
func (p Pair) String() string { return p.Value }

// Execute renders a Go text/template over the keys of view. name is used
// in error messages. prefix is the watched prefix: reading a key outside
// it is an error, because a change to it would never cause a re-render.
//
// The data model (see README.md):
//
//	{{ key "app/port" }}                 the value; a missing key fails the render
//	{{ keyOrDefault "app/port" "8080" }} the value, or the default if missing
//	{{ exists "app/tls" }}               whether the key exists
//	{{ range ls "app/upstreams/" }}      direct children: .Key .Path .Value .Revision
//	{{ range tree "app/" }}              every key below, recursively (.Key relative)
//	{{ revision }}                       the store revision rendered
//	{{ index . "app/port" }}             dot is a map of every watched key to its value
//
// plus env, split, join, trimSpace, toLower, toUpper, replace, contains,
// hasPrefix, hasSuffix, parseJSON and toJSON.
func Execute(name string, src []byte, view *View, prefix string) ([]byte, error) {
	t, err := template.New(name).Option("missingkey=error").Funcs(funcMap(view, prefix)).Parse(string(src))
	if err != nil {
		return nil, err
	}
	dot := make(map[string]string, view.Len())
	for _, e := range view.Entries(prefix) {
		dot[e.Key] = string(e.Value)
	}
	var out bytes.Buffer
	if err := t.Execute(&out, dot); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// Parse checks a template's syntax without rendering it.
func Parse(name string, src []byte) error {
	_, err := template.New(name).Funcs(funcMap(NewView(0, nil), "")).Parse(string(src))
	return err
}

// funcMap is the template functions over view.
func funcMap(view *View, prefix string) template.FuncMap {
	inPrefix := func(fn, k string) error {
		if !strings.HasPrefix(k, prefix) {
			return fmt.Errorf("%s %q: outside the watched prefix %q", fn, k, prefix)
		}
		return nil
	}
	list := func(fn, p string, recursive bool) ([]Pair, error) {
		if err := inPrefix(fn, p); err != nil {
			return nil, err
		}
		var out []Pair
		for _, e := range view.Entries(p) {
			rel := strings.TrimPrefix(e.Key, p)
			if !recursive && strings.Contains(rel, "/") {
				continue
			}
			out = append(out, Pair{Key: rel, Path: e.Key, Value: string(e.Value), Revision: e.ModRevision})
		}
		return out, nil
	}
	funcs := template.FuncMap{
		"key": func(k string) (string, error) {
			if err := inPrefix("key", k); err != nil {
				return "", err
			}
			e, ok := view.Get(k)
			if !ok {
				return "", fmt.Errorf("key %q: not found (use keyOrDefault for an optional key)", k)
			}
			return string(e.Value), nil
		},
		"keyOrDefault": func(k, def string) (string, error) {
			if err := inPrefix("keyOrDefault", k); err != nil {
				return "", err
			}
			if e, ok := view.Get(k); ok {
				return string(e.Value), nil
			}
			return def, nil
		},
		"exists": func(k string) (bool, error) {
			if err := inPrefix("exists", k); err != nil {
				return false, err
			}
			_, ok := view.Get(k)
			return ok, nil
		},
		"ls":        func(p string) ([]Pair, error) { return list("ls", p, false) },
		"tree":      func(p string) ([]Pair, error) { return list("tree", p, true) },
		"revision":  func() int64 { return view.Revision },
		"env":       os.Getenv,
		"split":     func(sep, s string) []string { return strings.Split(s, sep) },
		"join":      func(sep string, a []string) string { return strings.Join(a, sep) },
		"trimSpace": strings.TrimSpace,
		"toLower":   strings.ToLower,
		"toUpper":   strings.ToUpper,
		"replace":   func(old, new, s string) string { return strings.ReplaceAll(s, old, new) },
		"contains":  func(sub, s string) bool { return strings.Contains(s, sub) },
		"hasPrefix": func(p, s string) bool { return strings.HasPrefix(s, p) },
		"hasSuffix": func(p, s string) bool { return strings.HasSuffix(s, p) },
		"parseJSON": func(s string) (any, error) {
			var v any
			if err := json.Unmarshal([]byte(s), &v); err != nil {
				return nil, fmt.Errorf("parseJSON: %v", err)
			}
			return v, nil
		},
		"toJSON": func(v any) (string, error) {
			b, err := json.Marshal(v)
			return string(b), err
		},
	}
	return funcs
}
