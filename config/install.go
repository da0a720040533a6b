package config

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// install writes out atomically over r.Out: a candidate in the same
// directory (so that the rename cannot cross file systems), with Out's
// mode, synced, checked, then renamed. Readers of Out see the old file or
// the new one, never a part. A failing check removes the candidate.
func (r *Renderer) install(ctx context.Context, out []byte) (err error) {
	dir, base := filepath.Split(r.Out)
	if dir == "" {
		dir = "."
	}
	mode := r.Perms
	if mode == 0 {
		mode = 0o644
	}
	if st, err := os.Stat(r.Out); err == nil {
		mode = st.Mode().Perm()
	}
	f, err := os.CreateTemp(dir, "."+base+".beacon-*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", r.Out, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = os.Remove(tmp)
		}
	}()
	_, err = f.Write(out)
	if err == nil {
		err = f.Chmod(mode)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("writing %s: %w", tmp, err)
	}
	if r.Check != "" {
		cmd := strings.ReplaceAll(r.Check, "{{.}}", shellQuote(tmp))
		if msg, err := runShell(ctx, r.timeout(), cmd, tmp, nil); err != nil {
			return fmt.Errorf("%w: %s: %v%s", ErrCheckFailed, r.Check, err, msg)
		}
	}
	if err := os.Rename(tmp, r.Out); err != nil {
		return fmt.Errorf("installing %s: %w", r.Out, err)
	}
	// The rename is durable once the directory is synced.
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}

// runShell runs cmd with sh -c (arg as $1 if not empty), bounded by
// timeout, in a process group of its own so that a timeout kills what it
// started too. On failure it returns the tail of its output as ": ...".
func runShell(ctx context.Context, timeout time.Duration, cmd, arg string, env []string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	args := []string{"-c", cmd, "sh"}
	if arg != "" {
		args = append(args, arg)
	}
	c := exec.CommandContext(ctx, "/bin/sh", args...)
	c.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	c.Stdout, c.Stderr = &out, &out
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	c.Cancel = func() error { return syscall.Kill(-c.Process.Pid, syscall.SIGKILL) }
	c.WaitDelay = time.Second
	err := c.Run()
	if err == nil {
		return "", nil
	}
	if ctx.Err() != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		err = fmt.Errorf("timed out after %s", timeout)
	}
	msg := strings.Join(strings.Fields(lastBytes(out.String(), 300)), " ")
	if msg != "" {
		msg = ": " + msg
	}
	return msg, err
}

func lastBytes(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// shellQuote quotes s for sh.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
