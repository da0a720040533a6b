package config

import (
	"strings"
	"testing"
)

func TestExecute(t *testing.T) {
	view := NewView(42, []Entry{
		{Key: "app/port", Value: []byte("8080"), ModRevision: 40},
		{Key: "app/upstreams/a", Value: []byte("10.0.0.1:80")},
		{Key: "app/upstreams/b", Value: []byte("10.0.0.2:80")},
		{Key: "app/upstreams/deep/c", Value: []byte("nested")},
		{Key: "app/json", Value: []byte(`{"n": 3}`)},
	})
	cases := []struct{ tmpl, want string }{
		{`{{ key "app/port" }}`, "8080"},
		{`{{ keyOrDefault "app/missing" "x" }}/{{ keyOrDefault "app/port" "x" }}`, "x/8080"},
		{`{{ exists "app/port" }} {{ exists "app/nope" }}`, "true false"},
		{`{{ range ls "app/upstreams/" }}{{ .Key }}={{ .Value }};{{ end }}`, "a=10.0.0.1:80;b=10.0.0.2:80;"},
		{`{{ range tree "app/upstreams/" }}{{ .Key }} {{ end }}`, "a b deep/c "},
		{`{{ range ls "app/upstreams/" }}{{ .Path }} {{ end }}`, "app/upstreams/a app/upstreams/b "},
		{`{{ index . "app/port" }} {{ revision }}`, "8080 42"},
		{`{{ (parseJSON (key "app/json")).n }}`, "3"},
		{`{{ join "," (split ":" "a:b") }} {{ toUpper "x" }}`, "a,b X"},
	}
	for _, c := range cases {
		out, err := Execute("t", []byte(c.tmpl), view, "")
		if err != nil || string(out) != c.want {
			t.Errorf("%s: %q %v, want %q", c.tmpl, out, err, c.want)
		}
	}
	for tmpl, want := range map[string]string{
		`{{ key "app/missing" }}`:     `key "app/missing": not found`,
		`{{ key "db/host" }}`:         `outside the watched prefix "app/"`,
		`{{ range ls "db/" }}{{end}}`: `outside the watched prefix`,
		`{{ key "app/port" `:          `unclosed action`,
		`{{ nosuchfunc }}`:            `function "nosuchfunc" not defined`,
	} {
		_, err := Execute("t", []byte(tmpl), view, "app/")
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want an error with %q", tmpl, err, want)
		}
	}
	if err := Parse("t", []byte(`{{ range ls "x/" }}{{ .Value }}{{ end }}`)); err != nil {
		t.Errorf("Parse: %v", err)
	}
	if err := Parse("t", []byte(`{{ if }}`)); err == nil {
		t.Errorf("Parse of a bad template: no error")
	}
}

func TestParseWait(t *testing.T) {
	for in, want := range map[string][2]string{"1s:5s": {"1s", "5s"}, "500ms": {"500ms", "2s"}, "0": {"0s", "0s"}} {
		lo, hi, err := ParseWait(in)
		if err != nil || lo.String() != want[0] || hi.String() != want[1] {
			t.Errorf("ParseWait(%q) = %s, %s, %v", in, lo, hi, err)
		}
	}
	for _, in := range []string{"", "x", "5s:1s", "1s:x", "-1s"} {
		if _, _, err := ParseWait(in); err == nil {
			t.Errorf("ParseWait(%q): no error", in)
		}
	}
}
