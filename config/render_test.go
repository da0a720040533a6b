package config

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

type renderRig struct {
	t       *testing.T
	dir     string
	src     *fakeSource
	r       *Renderer
	results chan Result
	cancel  context.CancelFunc
	done    chan error
}

// newRig writes tmpl and returns a renderer of it into dir/out.
func newRig(t *testing.T, tmpl string) *renderRig {
	dir := t.TempDir()
	tp := filepath.Join(dir, "t.tmpl")
	if err := os.WriteFile(tp, []byte(tmpl), 0o644); err != nil {
		t.Fatal(err)
	}
	g := &renderRig{t: t, dir: dir, src: newFakeSource(), results: make(chan Result, 100)}
	g.r = &Renderer{Source: g.src, Template: tp, Out: filepath.Join(dir, "out"),
		OnRender: func(r Result) { g.results <- r }}
	return g
}

func (g *renderRig) start() {
	ctx, cancel := context.WithCancel(context.Background())
	g.cancel, g.done = cancel, make(chan error, 1)
	go func() { g.done <- g.r.Run(ctx) }()
	g.t.Cleanup(g.stop)
}

func (g *renderRig) stop() {
	if g.cancel != nil {
		g.cancel()
		<-g.done
		g.cancel = nil
	}
}

func (g *renderRig) next() Result {
	g.t.Helper()
	select {
	case r := <-g.results:
		return r
	case <-time.After(10 * time.Second):
		g.t.Fatal("no render")
		return Result{}
	}
}

func (g *renderRig) out() string {
	b, _ := os.ReadFile(g.r.Out)
	return string(b)
}

func (g *renderRig) lines(name string) int {
	b, _ := os.ReadFile(filepath.Join(g.dir, name))
	return strings.Count(string(b), "\n")
}

// TestRenderBurst: a burst of changes renders once, and exec runs once.
func TestRenderBurst(t *testing.T) {
	g := newRig(t, `port={{ key "app/port" }} n={{ keyOrDefault "app/n" "0" }}`)
	g.src.set("app/port", "80")
	g.r.WaitMin, g.r.WaitMax = 2*time.Second, time.Minute // far longer than 20 in-memory sets take
	g.r.Exec = "echo ran >> " + filepath.Join(g.dir, "execs")
	g.start()
	if r := g.next(); !r.Changed || r.Err != nil || g.out() != "port=80 n=0" {
		t.Fatalf("first render: %+v %q", r, g.out())
	}
	for i := 1; i <= 20; i++ {
		g.src.set("app/n", strings.Repeat("x", i))
	}
	r := g.next()
	if !r.Changed || r.Err != nil || g.out() != "port=80 n="+strings.Repeat("x", 20) {
		t.Fatalf("after the burst: %+v %q", r, g.out())
	}
	g.stop()
	if len(g.results) != 0 {
		t.Fatalf("more renders than one after the burst: %+v", <-g.results)
	}
	if n := g.lines("execs"); n != 2 {
		t.Fatalf("exec ran %d times, want 2 (first render, burst)", n)
	}
}

// TestRenderWaitMax: changes that never stop for WaitMin still render,
// WaitMax after the first: the render comes while the changes go on.
func TestRenderWaitMax(t *testing.T) {
	g := newRig(t, `{{ keyOrDefault "k" "none" }}`)
	g.r.WaitMin, g.r.WaitMax = 150*time.Millisecond, 300*time.Millisecond
	g.start()
	g.next()
	stop, expired := make(chan struct{}), make(chan struct{})
	go func() {
		for i, deadline := 0, time.Now().Add(8*time.Second); ; i++ {
			if time.Now().After(deadline) {
				close(expired)
				return
			}
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
				g.src.set("k", fmt.Sprint(i))
			}
		}
	}()
	r := g.next()
	select {
	case <-expired:
		t.Fatal("no render until the changes stopped")
	default:
		close(stop)
	}
	if !r.Changed || r.Err != nil {
		t.Fatalf("%+v", r)
	}
}

// TestRenderCheck: a failing check keeps the old file and no candidate
// lingers; exec runs only on change; the mode of the file is kept.
func TestRenderCheck(t *testing.T) {
	g := newRig(t, `{{ key "k" }}`)
	g.src.set("k", "good")
	g.r.Check = `grep -q good "$1" && grep -q good {{.}}`
	g.r.Exec = "echo ran >> " + filepath.Join(g.dir, "execs")
	if err := os.WriteFile(g.r.Out, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	g.start()
	if r := g.next(); !r.Changed || g.out() != "good" {
		t.Fatalf("first render: %+v %q", r, g.out())
	}
	if st, _ := os.Stat(g.r.Out); st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600 kept", st.Mode())
	}
	g.src.set("k", "bad")
	r := g.next()
	if r.Changed || !errors.Is(r.Err, ErrCheckFailed) || g.out() != "good" {
		t.Fatalf("failing check: %+v %q", r, g.out())
	}
	g.src.set("other", "x") // output unchanged: no exec
	if r := g.next(); r.Changed || r.Err == nil {
		t.Fatalf("still bad: %+v", r)
	}
	g.src.set("k", "good")
	if r := g.next(); r.Changed || r.Err != nil {
		t.Fatalf("back to the installed output: %+v, want unchanged", r)
	}
	g.src.set("k", "good2")
	if r := g.next(); !r.Changed || g.out() != "good2" {
		t.Fatalf("after the failure: %+v %q", r, g.out())
	}
	if n := g.lines("execs"); n != 2 {
		t.Fatalf("exec ran %d times, want 2", n)
	}
	files, _ := os.ReadDir(g.dir)
	for _, f := range files {
		if strings.Contains(f.Name(), ".beacon-") {
			t.Fatalf("candidate left behind: %s", f.Name())
		}
	}
}

// TestRenderOnce: a missing key fails and writes nothing; a present one
// writes.
func TestRenderOnce(t *testing.T) {
	g := newRig(t, `{{ key "k" }}`)
	if _, err := g.r.Once(context.Background()); err == nil || !strings.Contains(err.Error(), `key "k": not found`) {
		t.Fatalf("missing key: %v", err)
	}
	if _, err := os.Stat(g.r.Out); !os.IsNotExist(err) {
		t.Fatalf("out written on a failed render: %v", err)
	}
	g.src.set("k", "v")
	g.r.Exec = "exit 3"
	res, err := g.r.Once(context.Background())
	if !res.Changed || !errors.Is(err, ErrExecFailed) || g.out() != "v" {
		t.Fatalf("once: %+v %v %q", res, err, g.out())
	}
	if _, err := (&Renderer{Source: g.src, Template: filepath.Join(g.dir, "none"), Out: "x"}).Once(context.Background()); err == nil {
		t.Fatal("missing template: no error")
	}
}

func TestParseTemplateBlocks(t *testing.T) {
	dir := t.TempDir()
	tp := filepath.Join(dir, "t.tmpl")
	_ = os.WriteFile(tp, []byte(`{{ key "a" }}`), 0o644)
	bad := filepath.Join(dir, "bad.tmpl")
	_ = os.WriteFile(bad, []byte(`{{ if }}`), 0o644)
	blocks, err := ParseTemplateBlocks([]any{map[string]any{"template": tp, "out": "/tmp/x", "wait": "1s:5s", "perms": "0640", "exec": "true"}})
	if err != nil || len(blocks) != 1 || blocks[0].WaitMax != 5*time.Second || blocks[0].Perms != 0o640 {
		t.Fatalf("%+v %v", blocks, err)
	}
	for want, raw := range map[string]any{
		"templates[0].out: must not be empty": []any{map[string]any{"template": tp}},
		"templates[0].wait":                   []any{map[string]any{"template": tp, "out": "x", "wait": "soon"}},
		"templates[0].colour: unknown key":    []any{map[string]any{"template": tp, "out": "x", "colour": 1}},
		"templates[0].template":               []any{map[string]any{"template": bad, "out": "x"}},
		"templates[1].out":                    []any{map[string]any{"template": tp, "out": "x"}, map[string]any{"template": tp, "out": "x"}},
		"templates: must be a list":           "x",
		"templates[0].prefix":                 []any{map[string]any{"template": tp, "out": "x", "prefix": "/abs"}},
	} {
		if _, err := ParseTemplateBlocks(raw); err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("%v: %v, want %q", raw, err, want)
		}
	}
}

// TestTemplatesSync: a block renders; removing it stops its renderer.
func TestTemplatesSync(t *testing.T) {
	dir := t.TempDir()
	tp := filepath.Join(dir, "t.tmpl")
	_ = os.WriteFile(tp, []byte(`{{ keyOrDefault "k" "none" }}`), 0o644)
	src := newFakeSource()
	ts := NewTemplates(src)
	b := TemplateBlock{Template: tp, Out: filepath.Join(dir, "out")}
	ts.Sync([]TemplateBlock{b})
	waitFile(t, b.Out, "none")
	src.set("k", "v")
	waitFile(t, b.Out, "v")
	ts.Close()
	// A witness renderer on the same source: once it has rendered "w", a
	// renderer Close left running would have had the same change to render.
	witness := NewTemplates(src)
	defer witness.Close()
	wb := TemplateBlock{Template: tp, Out: filepath.Join(dir, "witness")}
	witness.Sync([]TemplateBlock{wb})
	waitFile(t, wb.Out, "v")
	src.set("k", "w")
	waitFile(t, wb.Out, "w")
	if got, _ := os.ReadFile(b.Out); string(got) != "v" {
		t.Fatalf("rendered after Close: %q", got)
	}
}

func waitFile(t *testing.T, path, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if got, _ := os.ReadFile(path); string(got) == want {
			return
		}
		if time.Now().After(deadline) {
			got, _ := os.ReadFile(path)
			t.Fatalf("%s: %q, want %q", path, got, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
