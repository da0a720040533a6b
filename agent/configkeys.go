package agent

import (
	"fmt"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

// keyAliases are the other spellings of a key that the public contract
// writes (DESIGN.md: `leave_on_terminate`). No other spelling is taken: a
// key is written as `beacon agent --help` lists it, lowercase with
// hyphens, so that `client_url:` or `Client-URL:` is not silently read as
// client-url, and no file can set one key twice under two spellings.
var keyAliases = map[string]string{"leave_on_terminate": "leave-on-terminate"}

// fileKey is a key as written at the top of a config file.
type fileKey struct {
	raw  string
	line int
}

// checkFileKeys refuses, in data (a YAML config file named file), a
// top-level key that is not one of known as written (or an alias), and a
// key set twice. It returns the settings with aliases replaced by their
// keys, for viper.
func checkFileKeys(file string, data []byte, known map[string]bool) (map[string]any, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, &ConfigError{Key: "config file", Err: fmt.Errorf("%s is not valid YAML: %v", file, err)}
	}
	settings := map[string]any{}
	if len(doc.Content) == 0 { // an empty file
		return settings, nil
	}
	top := doc.Content[0]
	if top.Kind != yaml.MappingNode {
		return nil, &ConfigError{Key: "config file", Err: fmt.Errorf("%s (line %d) is not a mapping of keys to values", file, top.Line)}
	}
	seen := map[string]fileKey{}
	var unknown []fileKey
	for i := 0; i+1 < len(top.Content); i += 2 {
		kn, vn := top.Content[i], top.Content[i+1]
		raw := kn.Value
		key := raw
		if alias, ok := keyAliases[raw]; ok {
			key = alias
		}
		if !known[key] {
			unknown = append(unknown, fileKey{raw, kn.Line})
			continue
		}
		if prev, ok := seen[key]; ok {
			return nil, &ConfigError{Key: key, Err: fmt.Errorf("set twice in %s, as %q (line %d) and %q (line %d); keep one",
				file, prev.raw, prev.line, raw, kn.Line)}
		}
		seen[key] = fileKey{raw, kn.Line}
		var val any
		if err := vn.Decode(&val); err != nil {
			return nil, &ConfigError{Key: key, Err: fmt.Errorf("in %s (line %d): %v", file, vn.Line, err)}
		}
		settings[key] = val
	}
	if len(unknown) > 0 {
		sort.Slice(unknown, func(i, j int) bool { return unknown[i].line < unknown[j].line })
		k := unknown[0]
		hint := "see beacon agent --help for the keys"
		if canon := strings.ReplaceAll(strings.ToLower(k.raw), "_", "-"); known[canon] {
			hint = fmt.Sprintf("did you mean %q? keys are written lowercase, with hyphens", canon)
		}
		return nil, &ConfigError{Key: k.raw, Err: fmt.Errorf("unknown key in %s (line %d): %s", file, k.line, hint)}
	}
	return settings, nil
}
