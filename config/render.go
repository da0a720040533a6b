package config

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"go.uber.org/zap"
)

// DefaultCommandTimeout bounds a check or exec command.
const DefaultCommandTimeout = time.Minute

// Renderer writes a file from a template over config keys, and keeps it
// current: after a change it waits for quiet (WaitMin, at most WaitMax
// after the first change), renders, writes a candidate next to Out, runs
// Check on it, renames it over Out, and runs Exec — the last three only
// when the output changed. A failing check keeps the old file. The zero
// Wait renders after every change.
type Renderer struct {
	Source   Source // where the keys come from (a *Store, or a *Remote)
	Prefix   string // the keys watched; the template may read only these ("" = all)
	Template string // path of the template file, re-read at every render
	Out      string // path of the rendered file
	// Perms is the mode of a new Out (default 0644); an existing Out
	// keeps its own mode.
	Perms os.FileMode
	// Check runs with sh -c before install; the candidate's path is $1 and
	// replaces every {{.}} (shell-quoted). A non-zero exit keeps the old
	// file.
	Check string
	// Exec runs with sh -c after Out changed, with BEACON_RENDER_OUT and
	// BEACON_RENDER_REVISION in its environment.
	Exec string
	// Quiescence: render once no change came for WaitMin, or WaitMax after
	// the first change of a burst, whichever is first. WaitMax 0 with a
	// WaitMin means 4×WaitMin.
	WaitMin, WaitMax time.Duration
	// Timeout bounds Check and Exec (default DefaultCommandTimeout).
	Timeout time.Duration
	Logger  *zap.Logger
	// OnRender, if set, is called after every render attempt.
	OnRender func(Result)
}

// Result is what one render did.
type Result struct {
	Revision int64 // of the keys rendered
	Changed  bool  // Out was replaced (and Exec run)
	Err      error // why the render, the check, the write or Exec failed
}

// Named errors of a render; the Result's error wraps one of them.
var (
	ErrCheckFailed = errors.New("config: check failed; the old file is kept")
	ErrExecFailed  = errors.New("config: exec failed")
)

func (r *Renderer) validate() error {
	switch {
	case r.Source == nil:
		return errors.New("config: Renderer needs a Source")
	case r.Template == "":
		return &FieldError{Field: "template", Msg: "must not be empty"}
	case r.Out == "":
		return &FieldError{Field: "out", Msg: "must not be empty"}
	case r.WaitMin < 0 || r.WaitMax < 0:
		return &FieldError{Field: "wait", Msg: "must not be negative"}
	case r.WaitMax > 0 && r.WaitMax < r.WaitMin:
		return &FieldError{Field: "wait", Msg: fmt.Sprintf("max %s is below min %s", r.WaitMax, r.WaitMin)}
	}
	if err := ValidatePrefix("prefix", r.Prefix); err != nil {
		return err
	}
	src, err := os.ReadFile(r.Template)
	if err != nil {
		return &FieldError{Field: "template", Msg: err.Error()}
	}
	if err := Parse(r.Template, src); err != nil {
		return &FieldError{Field: "template", Msg: err.Error()}
	}
	return nil
}

func (r *Renderer) logger() *zap.Logger {
	if r.Logger == nil {
		return zap.NewNop()
	}
	return r.Logger
}

// Run renders now and after every burst of changes until ctx ends; then it
// returns ctx's error. It returns early only for what no retry can fix: a
// bad Renderer, an unreadable or invalid template at the start, or a watch
// the source refuses (bad prefix). A render that fails later (a missing
// key, a failing check) is logged and reported to OnRender, and the next
// change tries again.
func (r *Renderer) Run(ctx context.Context) error {
	if err := r.validate(); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	m := NewMirror(r.Source, r.Prefix, WithLogger(r.logger()))
	watchErr := make(chan error, 1)
	go func() { watchErr <- m.Run(ctx) }()
	select {
	case <-m.Ready():
	case err := <-watchErr:
		return err
	}
	for {
		select {
		case <-m.Changed(): // drain the kick of what this render includes
		default:
		}
		r.report(r.render(ctx, m.View()))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-watchErr:
			return err
		case <-m.Changed():
		}
		if !r.quiesce(ctx, m) {
			return ctx.Err()
		}
	}
}

// quiesce waits until no change came for WaitMin, but no longer than
// WaitMax since the first change. It reports false if ctx ended.
func (r *Renderer) quiesce(ctx context.Context, m *Mirror) bool {
	if r.WaitMin <= 0 {
		return ctx.Err() == nil
	}
	max := r.WaitMax
	if max == 0 {
		max = 4 * r.WaitMin
	}
	deadline := time.NewTimer(max)
	defer deadline.Stop()
	quiet := time.NewTimer(r.WaitMin)
	defer quiet.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-m.Changed():
			quiet.Reset(r.WaitMin)
		case <-quiet.C:
			return true
		case <-deadline.C:
			return true
		}
	}
}

// Once renders the current keys one time (no waiting), and returns what
// it did; err is Result.Err or why the keys could not be read.
func (r *Renderer) Once(ctx context.Context) (Result, error) {
	if err := r.validate(); err != nil {
		return Result{Err: err}, err
	}
	var view *View
	stop := errors.New("snapshot taken")
	err := r.Source.Watch(ctx, r.Prefix, 0, func(u Update) error {
		if u.Snapshot {
			view = NewView(u.Revision, u.Entries)
			return stop
		}
		return nil
	})
	if view == nil {
		if errors.Is(err, stop) || err == nil {
			err = errors.New("config: the watch ended before its snapshot")
		}
		return Result{Err: err}, err
	}
	res := r.render(ctx, view)
	r.report(res)
	return res, res.Err
}

func (r *Renderer) report(res Result) {
	lg := r.logger().With(zap.String("out", r.Out), zap.Int64("revision", res.Revision))
	switch {
	case res.Err != nil:
		lg.Warn("config render", zap.Bool("changed", res.Changed), zap.Error(res.Err))
	case res.Changed:
		lg.Info("config rendered; file replaced")
	default:
		lg.Debug("config rendered; unchanged")
	}
	if r.OnRender != nil {
		r.OnRender(res)
	}
}

// render executes the template on view and installs the output if it
// differs from Out.
func (r *Renderer) render(ctx context.Context, view *View) Result {
	res := Result{Revision: view.Revision}
	src, err := os.ReadFile(r.Template)
	if err != nil {
		res.Err = fmt.Errorf("reading the template: %w", err)
		return res
	}
	out, err := Execute(r.Template, src, view, r.Prefix)
	if err != nil {
		res.Err = fmt.Errorf("rendering: %w", err)
		return res
	}
	if old, err := os.ReadFile(r.Out); err == nil && bytes.Equal(old, out) {
		return res
	}
	if err := r.install(ctx, out); err != nil {
		res.Err = err
		return res
	}
	res.Changed = true
	if r.Exec != "" {
		env := []string{"BEACON_RENDER_OUT=" + r.Out, fmt.Sprintf("BEACON_RENDER_REVISION=%d", view.Revision)}
		if msg, err := runShell(ctx, r.timeout(), r.Exec, "", env); err != nil {
			res.Err = fmt.Errorf("%w: %s: %v%s", ErrExecFailed, r.Exec, err, msg)
		}
	}
	return res
}

func (r *Renderer) timeout() time.Duration {
	if r.Timeout > 0 {
		return r.Timeout
	}
	return DefaultCommandTimeout
}
