package agent

import (
	"errors"
	"testing"
)

// TestBlockErrorsNameTheKey: a bad services: or templates: block is a
// ConfigError on the key the block parser names, whatever its message
// holds: a key that itself holds ": " is named whole.
func TestBlockErrorsNameTheKey(t *testing.T) {
	for body, key := range map[string]string{
		"services:\n  - {name: web, port: eighty}\n":                 "services[0].port",
		"services:\n  - {name: web, port: 80, 'a: b': 1}\n":          "services[0].a: b",
		"services:\n  - {name: web, port: 80, check: {ttl: soon}}\n": "services[0].check.ttl",
		"templates:\n  - {template: t, out: x, 'x: y': 1}\n":         "templates[0].x: y",
		"services: web\n": "services",
	} {
		_, err := load(t, writeFile(t, body))
		var ce *ConfigError
		if !errors.As(err, &ce) || ce.Key != key {
			t.Errorf("%q: %v; want a ConfigError on %q", body, err, key)
		}
	}
}
