package config

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/beaconhq/beacon/internal/rpcerr"
	"github.com/spf13/cast"
	"go.uber.org/zap"
)

// TemplateBlock is one block of the templates: list in the agent's config
// file; each is a Renderer the agent runs for as long as it runs:
//
//	templates:
//	  - template: /etc/beacon/haproxy.cfg.tmpl
//	    out: /etc/haproxy/haproxy.cfg
//	    prefix: haproxy/            # optional; default every key
//	    check: haproxy -c -f {{.}}  # optional
//	    exec: systemctl reload haproxy
//	    wait: 1s:5s                 # optional quiescence min:max
//	    perms: "0640"               # optional, for a new file
//	    timeout: 30s                # optional, for check and exec
type TemplateBlock struct {
	Template, Out, Prefix, Check, Exec string
	WaitMin, WaitMax, Timeout          time.Duration
	Perms                              os.FileMode
}

var templateKeys = map[string]bool{"template": true, "out": true, "prefix": true, "check": true, "exec": true,
	"wait": true, "perms": true, "timeout": true}

// ParseTemplateBlocks reads the templates: list of the agent's config
// file (as viper gives it). Errors name the block and field, e.g.
// "templates[1].out: must not be empty", and come first from the field's
// name, so that the agent can report the key. A template that cannot be
// read or does not parse is an error here, so that the agent does not
// start with it.
func ParseTemplateBlocks(raw any) ([]TemplateBlock, error) {
	if raw == nil {
		return nil, nil
	}
	list, ok := raw.([]any)
	if !ok {
		return nil, &FieldError{Field: "templates", Msg: "must be a list of template blocks"}
	}
	var out []TemplateBlock
	outs := map[string]int{}
	for i, item := range list {
		m, ok := item.(map[string]any)
		if !ok {
			return nil, &FieldError{Field: fmt.Sprintf("templates[%d]", i), Msg: "must be a mapping with template, out, ..."}
		}
		b, err := parseTemplateBlock(m)
		if err != nil {
			return nil, rpcerr.Within(fmt.Sprintf("templates[%d]", i), err)
		}
		abs, _ := filepath.Abs(b.Out)
		if j, dup := outs[abs]; dup {
			return nil, &FieldError{Field: fmt.Sprintf("templates[%d].out", i), Msg: fmt.Sprintf("%s is also the out of templates[%d]", b.Out, j)}
		}
		outs[abs] = i
		out = append(out, b)
	}
	return out, nil
}

func parseTemplateBlock(m map[string]any) (TemplateBlock, error) {
	var b TemplateBlock
	for k := range m {
		if !templateKeys[k] {
			return b, &FieldError{Field: k, Msg: "unknown key (known: template, out, prefix, check, exec, wait, perms, timeout)"}
		}
	}
	str := func(k string) string { return strings.TrimSpace(cast.ToString(m[k])) }
	b.Template, b.Out, b.Prefix, b.Check, b.Exec = str("template"), str("out"), str("prefix"), str("check"), str("exec")
	if b.Template == "" {
		return b, &FieldError{Field: "template", Msg: "must not be empty"}
	}
	if b.Out == "" {
		return b, &FieldError{Field: "out", Msg: "must not be empty"}
	}
	if err := ValidatePrefix("prefix", b.Prefix); err != nil {
		return b, err
	}
	var err error
	if w := str("wait"); w != "" {
		if b.WaitMin, b.WaitMax, err = ParseWait(w); err != nil {
			return b, rpcerr.Within("wait", err)
		}
	}
	if t := str("timeout"); t != "" {
		if b.Timeout, err = time.ParseDuration(t); err != nil || b.Timeout <= 0 {
			return b, &FieldError{Field: "timeout", Msg: fmt.Sprintf("%q is not a positive duration", t)}
		}
	}
	if p := str("perms"); p != "" {
		n, err := strconv.ParseUint(p, 8, 32)
		if err != nil || n == 0 || n > 0o777 {
			return b, &FieldError{Field: "perms", Msg: fmt.Sprintf("%q is not an octal file mode like \"0644\"", p)}
		}
		b.Perms = os.FileMode(n)
	}
	src, err := os.ReadFile(b.Template)
	if err != nil {
		return b, rpcerr.Within("template", err)
	}
	if err := Parse(b.Template, src); err != nil {
		return b, rpcerr.Within("template", err)
	}
	return b, nil
}

// ParseWait reads a quiescence "min:max" ("1s:5s"), or "min" alone, for
// which max is 4×min. "0" or "0s" means no waiting.
func ParseWait(s string) (min, max time.Duration, err error) {
	lo, hi, both := strings.Cut(strings.TrimSpace(s), ":")
	if min, err = time.ParseDuration(lo); err != nil || min < 0 {
		return 0, 0, fmt.Errorf("%q: want min:max durations, like 1s:5s", s)
	}
	max = 4 * min
	if both {
		if max, err = time.ParseDuration(hi); err != nil || max < min {
			return 0, 0, fmt.Errorf("%q: want min:max durations with max ≥ min, like 1s:5s", s)
		}
	}
	return min, max, nil
}

// Renderer returns the block's renderer over src.
func (b TemplateBlock) Renderer(src Source, lg *zap.Logger) *Renderer {
	return &Renderer{Source: src, Prefix: b.Prefix, Template: b.Template, Out: b.Out, Perms: b.Perms,
		Check: b.Check, Exec: b.Exec, WaitMin: b.WaitMin, WaitMax: b.WaitMax, Timeout: b.Timeout,
		Logger: lg.With(zap.String("template", b.Template))}
}

// Templates runs the agent's templates: blocks, one Renderer each.
type Templates struct {
	src Source
	lg  *zap.Logger

	mu      sync.Mutex
	running map[TemplateBlock]*runningRenderer
}

type runningRenderer struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// NewTemplates returns an empty set of renderers over src (on the agent, a
// *Store).
func NewTemplates(src Source, opts ...Option) *Templates {
	return &Templates{src: src, lg: loggerOf(opts), running: map[TemplateBlock]*runningRenderer{}}
}

// Sync runs exactly blocks: it stops the renderers of blocks no longer
// listed (or changed) and starts the new ones. Unchanged blocks keep
// running. Call it at start and on every config reload.
func (t *Templates) Sync(blocks []TemplateBlock) {
	want := map[TemplateBlock]bool{}
	for _, b := range blocks {
		want[b] = true
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for b, r := range t.running {
		if !want[b] {
			r.cancel()
			<-r.done
			delete(t.running, b)
		}
	}
	for b := range want {
		if _, ok := t.running[b]; ok {
			continue
		}
		ctx, cancel := context.WithCancel(context.Background())
		r := &runningRenderer{cancel: cancel, done: make(chan struct{})}
		t.running[b] = r
		go func(b TemplateBlock) {
			defer close(r.done)
			if err := b.Renderer(t.src, t.lg).Run(ctx); err != nil && ctx.Err() == nil {
				t.lg.Error("config template stopped", zap.String("template", b.Template), zap.String("out", b.Out), zap.Error(err))
			}
		}(b)
	}
}

// Close stops every renderer and waits for them.
func (t *Templates) Close() { t.Sync(nil) }
