package faults

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// NSPrefix starts the name of every network namespace the harness
// creates: NSPrefix + run + "-" + harness number + "-" + host. The sweep
// at start removes only namespaces with this prefix whose run has ended.
const NSPrefix = "bfx-"

// netnsDir is where `ip netns add` mounts the namespaces.
const netnsDir = "/var/run/netns"

// run is this process's share of the namespace names; runLock, held
// (flock) for the life of the process, tells other runs it is alive.
var (
	runOnce sync.Once
	runID   string
	runLock *os.File
	runErr  error
)

// runDir holds one lock file per live run.
func runDir() string {
	if fi, err := os.Stat("/run"); err == nil && fi.IsDir() {
		return "/run/bfx-faults"
	}
	return filepath.Join(os.TempDir(), "bfx-faults")
}

// startRun picks this process's run id, takes its lock, and sweeps the
// namespaces that runs which are no longer alive left behind.
func startRun() (string, error) {
	runOnce.Do(func() {
		var b [3]byte
		_, _ = rand.Read(b[:])
		runID = fmt.Sprintf("%x", b)
		if err := os.MkdirAll(runDir(), 0o700); err != nil {
			runErr = err
			return
		}
		// Locked before it gets its name, so a sweep never sees it free.
		lock := filepath.Join(runDir(), runID+".lock")
		f, err := os.OpenFile(lock+".new", os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o600)
		if err != nil {
			runErr = err
			return
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
			runErr = fmt.Errorf("locking %s: %v", f.Name(), err)
			return
		}
		if err := os.Rename(lock+".new", lock); err != nil {
			runErr = err
			return
		}
		runLock = f // kept open: the lock ends with the process
		if _, err := Sweep(context.Background()); err != nil {
			runErr = err
		}
	})
	return runID, runErr
}

// runAlive says whether the run that owns a namespace still holds its lock.
func runAlive(run string) bool {
	if run == runID {
		return true
	}
	f, err := os.OpenFile(filepath.Join(runDir(), run+".lock"), os.O_RDWR, 0)
	if err != nil {
		return false // no lock file: its run is gone (or never locked)
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		return true
	}
	_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
	_ = os.Remove(f.Name())
	return false
}

// Sweep removes the namespaces (and so their links) that an earlier run of
// the harness left behind when it crashed or was killed: only names that
// start with NSPrefix and whose run no longer holds its lock. Processes
// still inside such a namespace (agents of the dead run) are killed first.
// It returns the namespaces removed.
func Sweep(ctx context.Context) ([]string, error) {
	names, err := listNetns(ctx)
	if err != nil {
		return nil, err
	}
	var removed []string
	var errs []error
	for _, name := range names {
		run, ok := runOf(name)
		if !ok || runAlive(run) {
			continue
		}
		if err := deleteNetns(ctx, name); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, name)
	}
	// Lock files of runs that ended (runAlive removes a free one).
	locks, _ := filepath.Glob(filepath.Join(runDir(), "*.lock"))
	for _, l := range locks {
		runAlive(strings.TrimSuffix(filepath.Base(l), ".lock"))
	}
	return removed, errors.Join(errs...)
}

// runOf extracts the run id from a harness namespace name.
func runOf(name string) (string, bool) {
	if !strings.HasPrefix(name, NSPrefix) {
		return "", false
	}
	run, _, ok := strings.Cut(strings.TrimPrefix(name, NSPrefix), "-")
	return run, ok && run != ""
}

func listNetns(ctx context.Context) ([]string, error) {
	out, err := command(ctx, nil, "ip", "netns", "list")
	if err != nil {
		return nil, err
	}
	var names []string
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			names = append(names, f[0])
		}
	}
	return names, nil
}

// netnsPids lists the processes inside a namespace.
func netnsPids(ctx context.Context, ns string) ([]int, error) {
	out, err := command(ctx, nil, "ip", "netns", "pids", ns)
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, f := range strings.Fields(out) {
		if pid, err := strconv.Atoi(f); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// deleteNetns kills what still runs inside a harness namespace and
// deletes it. Only names with NSPrefix are accepted.
func deleteNetns(ctx context.Context, ns string) error {
	if !strings.HasPrefix(ns, NSPrefix) {
		return fmt.Errorf("refusing to delete namespace %q: not the harness's", ns)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		pids, err := netnsPids(ctx, ns)
		if err != nil {
			if _, statErr := os.Stat(filepath.Join(netnsDir, ns)); os.IsNotExist(statErr) {
				return nil
			}
			return err
		}
		if len(pids) == 0 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("namespace %s: processes %v do not die", ns, pids)
		}
		for _, pid := range pids {
			killInNetns(pid, ns)
		}
		time.Sleep(50 * time.Millisecond)
	}
	_, err := command(ctx, nil, "ip", "netns", "del", ns)
	return err
}

// killInNetns sends SIGKILL to pid if it is still inside namespace ns,
// through a pidfd so that a reused pid is never hit.
func killInNetns(pid int, ns string) {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return
	}
	defer unix.Close(fd)
	if !pidInNetns(pid, ns) {
		return
	}
	_ = unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0)
}

// pidInNetns compares pid's network namespace with the named one.
func pidInNetns(pid int, ns string) bool {
	var a, b unix.Stat_t
	if unix.Stat(fmt.Sprintf("/proc/%d/ns/net", pid), &a) != nil {
		return false
	}
	if unix.Stat(filepath.Join(netnsDir, ns), &b) != nil {
		return false
	}
	return a.Ino == b.Ino && a.Dev == b.Dev
}

// command runs a short administrative command (ip, tc, iptables-restore)
// with stdin and a bound of its own, and returns its output.
func command(ctx context.Context, stdin []byte, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return out.String(), nil
}

// inNetns runs fn on an OS thread moved into the namespace at path, then
// moves the thread back. Sockets created by fn stay in that namespace for
// their whole life, whichever thread uses them later.
func inNetns(path string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		target, err := os.Open(path)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("setns %s: %v", path, err)
			return
		}
		ferr := fn()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			// The thread stays locked and ends with this goroutine, so
			// no other goroutine ever runs in the wrong namespace.
			errc <- errors.Join(ferr, fmt.Errorf("setns back: %v", err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// nsDialer dials and listens from inside one namespace.
type nsDialer struct{ path string }

func (d nsDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := inNetns(d.path, func() error {
		var err error
		c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

func (d nsDialer) Listen(network, addr string) (net.Listener, error) {
	var l net.Listener
	err := inNetns(d.path, func() error {
		var err error
		l, err = net.Listen(network, addr)
		return err
	})
	return l, err
}

func (d nsDialer) ListenPacket(network, addr string) (net.PacketConn, error) {
	var c net.PacketConn
	err := inNetns(d.path, func() error {
		var err error
		c, err = net.ListenPacket(network, addr)
		return err
	})
	return c, err
}

// writeSysctl writes a /proc/sys value as seen from inside a namespace
// and reads it back.
func writeSysctl(nsPath, key, value string) error {
	p := "/proc/sys/" + strings.ReplaceAll(key, ".", "/")
	return inNetns(nsPath, func() error {
		if err := os.WriteFile(p, []byte(value), 0o644); err != nil {
			return err
		}
		got, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if strings.TrimSpace(string(got)) != value {
			return fmt.Errorf("%s is %q after writing %q", key, strings.TrimSpace(string(got)), value)
		}
		return nil
	})
}

// spawner starts every long-lived child process from one OS thread that
// never exits, because PR_SET_PDEATHSIG fires when the creating *thread*
// ends: children die with the test process, and only then.
var (
	spawnOnce sync.Once
	spawnCh   chan spawnReq
)

type spawnReq struct {
	cmd  *exec.Cmd
	done chan error
}

func startOnSpawner(cmd *exec.Cmd) error {
	spawnOnce.Do(func() {
		spawnCh = make(chan spawnReq)
		go func() {
			runtime.LockOSThread() // never unlocked: this thread lives as long as the process
			for r := range spawnCh {
				r.done <- r.cmd.Start()
			}
		}()
	})
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	cmd.SysProcAttr.Setpgid = true
	done := make(chan error, 1)
	spawnCh <- spawnReq{cmd: cmd, done: done}
	return <-done
}
